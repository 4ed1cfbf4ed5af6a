//! FFA_CONSOLE_LOG (DEN0077 v1.2 §13.11) under the one lock: what a
//! partition's call makes the SPMC print is bounded, whatever the
//! characters. The log lines are captured per thread, so that the tests of
//! this binary do not see each other's.

mod common;

use std::cell::RefCell;

use common::world::*;
use spmc::ffa::{Regs, func};
use spmc::testing::sp_call;

thread_local! {
    static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LINES.with(|l| l.borrow_mut().push(record.args().to_string()));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

fn capture() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
    LINES.with(|l| l.borrow_mut().clear());
}

/// The console lines partition `id` printed since [`capture`].
fn console_lines(id: u16) -> Vec<String> {
    let prefix = format!("[{id:#06x}] ");
    LINES.with(|l| {
        l.borrow()
            .iter()
            .filter_map(|s| s.strip_prefix(&prefix).map(str::to_string))
            .collect()
    })
}

/// x2-x17 of a 64-bit FFA_CONSOLE_LOG carrying `text` (at most 128 bytes).
fn console_call(text: &[u8]) -> Vec<u64> {
    assert!(text.len() <= 128);
    let mut call = vec![func::CONSOLE_LOG_64 as u64, text.len() as u64];
    for chunk in text.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        call.push(u64::from_le_bytes(w));
    }
    call
}

/// One call prints at most one line: 64 one-character lines in a call are
/// not 64 lines printed under the lock. The characters are kept (the line
/// breaks after the first become spaces) and come out with the next line.
#[test]
fn one_console_call_prints_at_most_one_line() {
    let mut s = booted();
    capture();
    let (next, mut regs) = nwd(&mut s, &[func::MSG_SEND_DIRECT_REQ_64 as u64, 0x8001, 0, 1]);
    let v = running(&next);
    let storm: Vec<u8> = b"a\n".repeat(64);
    sp_call(&mut s, v, &console_call(&storm), &mut regs);
    assert_eq!(
        Regs::from_slice(&s.vcpu_context_mut(v).x[..8]).func(),
        func::SUCCESS_32
    );
    assert_eq!(console_lines(0x8001), ["a"], "one line for the whole call");
    // The next call's line break prints what was held, on one line.
    sp_call(&mut s, v, &console_call(b"end\n"), &mut regs);
    let lines = console_lines(0x8001);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1], format!("{}end", "a ".repeat(63)));
    // Empty lines print nothing at all.
    sp_call(&mut s, v, &console_call(b"\n\n\n"), &mut regs);
    assert_eq!(console_lines(0x8001).len(), 2);
}

/// A long line is cut at 256 characters; a call never prints more than one
/// line even when the cut and a line break fall in the same call.
#[test]
fn long_lines_are_cut_and_still_one_line_per_call() {
    let mut s = booted();
    capture();
    let (next, mut regs) = nwd(&mut s, &[func::MSG_SEND_DIRECT_REQ_64 as u64, 0x8002, 0, 1]);
    let v = running(&next);
    let x = [b'x'; 128];
    sp_call(&mut s, v, &console_call(&x), &mut regs);
    sp_call(&mut s, v, &console_call(&x), &mut regs);
    assert!(console_lines(0x8002).is_empty(), "256 characters held");
    let mut tail = b"yy\nzz".to_vec();
    tail.extend_from_slice(b"\n");
    sp_call(&mut s, v, &console_call(&tail), &mut regs);
    let lines = console_lines(0x8002);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0], "x".repeat(256));
    sp_call(&mut s, v, &console_call(b"\n"), &mut regs);
    assert_eq!(console_lines(0x8002)[1], "yy zz");
}
