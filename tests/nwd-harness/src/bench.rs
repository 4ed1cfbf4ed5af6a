//! The benchmark image: BL33 at NS-EL2 that times FF-A round trips through
//! the SPMD and the SPMC.
//!
//! Run under QEMU with `-icount shift=0`: guest time then advances one
//! nanosecond per instruction, at every exception level, so the virtual
//! counter converted to nanoseconds counts the instructions executed between
//! two reads. Each figure is the average over `ITERATIONS` calls, minus the
//! cost of an identical loop whose call instruction is a NOP. It prints
//! `bench: <name>: <value> instructions` and powers off.

#![no_std]
#![no_main]

use core::fmt::Write;
use core::panic::PanicInfo;

use nwd_harness::ffa;
use nwd_harness::report::console;
use test_protocol::{cmd, ids};

const ITERATIONS: u64 = 2000;
const WARM_UP: u64 = 20;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let _ = writeln!(console(), "bench: panic: {info}");
    baremetal::system_off()
}

/// Issues the call in `r` (x0-x7) with SMC, or with a NOP in place of the SMC.
#[inline(always)]
fn call(r: &mut [u64; 8], real: bool) {
    if real {
        // SAFETY: SMCCC v1.2 call: x0-x7 in and out, x8-x17 may be written by
        // the callee and are declared clobbered.
        unsafe {
            core::arch::asm!(
                "smc #0",
                inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
                inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
                out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                options(nostack),
            );
        }
    } else {
        // SAFETY: a NOP with the same register constraints.
        unsafe {
            core::arch::asm!(
                "nop",
                inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
                inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
                out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                options(nostack),
            );
        }
    }
}

/// Counter frequency (CNTFRQ_EL0).
fn frequency() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effect.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f
}

/// Runs `n` calls of `make()` and returns the elapsed counter ticks.
#[inline(never)]
fn timed(
    n: u64,
    real: bool,
    make: impl Fn() -> [u64; 8],
    check: impl Fn(&[u64; 8]) -> bool,
) -> Option<u64> {
    let t0 = baremetal::counter();
    let mut ok = true;
    for _ in 0..n {
        let mut r = make();
        call(&mut r, real);
        ok &= !real || check(&r);
    }
    let t1 = baremetal::counter();
    ok.then_some(t1 - t0)
}

/// Average instructions per call, loop overhead subtracted.
fn measure(
    make: impl Fn() -> [u64; 8] + Copy,
    check: impl Fn(&[u64; 8]) -> bool + Copy,
) -> Option<u64> {
    timed(WARM_UP, true, make, check)?;
    let real = timed(ITERATIONS, true, make, check)?;
    let empty = timed(ITERATIONS, false, make, check)?;
    let per_tick_ns = 1_000_000_000 / frequency().max(1);
    Some(real.saturating_sub(empty) * per_tick_ns / ITERATIONS)
}

fn report(name: &str, value: Option<u64>) {
    match value {
        Some(v) => {
            let _ = writeln!(console(), "bench: {name}: {v} instructions");
        }
        None => {
            let _ = writeln!(
                console(),
                "bench: {name}: failed (a call returned an unexpected answer)"
            );
        }
    }
}

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    let _ = writeln!(
        console(),
        "nwd-bench: {ITERATIONS} iterations per figure, counter at {} Hz",
        frequency()
    );
    let direct = measure(
        || {
            [
                ffa::MSG_SEND_DIRECT_REQ_64,
                ids::SP1 as u64,
                0,
                cmd::ECHO,
                1,
                2,
                3,
                4,
            ]
        },
        |r| r[0] == ffa::MSG_SEND_DIRECT_RESP_64 && r[4] == 1,
    );
    report("direct_req_round_trip", direct);
    let version = measure(
        || [ffa::VERSION, ffa::V1_2 as u64, 0, 0, 0, 0, 0, 0],
        |r| r[0] == ffa::V1_2 as u64,
    );
    report("spmc_version_round_trip", version);
    baremetal::system_off()
}
