//! The hostile stage (`nwd-hostile`): every call malformed on purpose.
//!
//! A normal world that attacks the SPMC with single hostile calls
//! ([`calls`]: garbage registers, reserved bits, bad versions, buffers over
//! memory that is not the caller's, descriptors built to wrap or exhaust,
//! forged IDs, calls out of turn, storms), a partition that attacks it from
//! S-EL1 on command ([`partition`]: the test partition's `CALL`, `REMAP`,
//! `MEM_SEND`, `STORM` and `AARCH32` commands), and interrupts that
//! arrive in the middle of calls ([`irq`]: the normal world's EL2 physical
//! timer). Each check asserts the exact answer DEN0077 v1.2 / DEN0140 v1.2
//! (or the contract of docs/memory-sharing.md) names, and then that the
//! normal world and every partition still work ([`live`]). One boot
//! runs them all; the summary is `hostile: N passed, M failed`.
//!
//! The order matters only at the end: the check that aborts a partition
//! (AArch32 EL0) and the interrupt during an instance's boot, which hangs
//! an SPMC that re-enters the boot with the interrupt pending, run last.

pub mod calls;
pub mod dtb;
pub mod irq;
pub mod partition;

use core::sync::atomic::{AtomicU32, Ordering};

use test_protocol::{cmd, ids};

use crate::ffa::{self, Regs};
use crate::report::{Fail, Outcome, Report};

/// The partitions that answer in every check (and are used by them).
pub const HEALTHY: [u16; 3] = [ids::SP1, ids::SP2, ids::TPM];

/// Every partition of the boot, each of which must keep answering after
/// every check until a check aborts it on purpose ([`given_up`]).
const ALL: [u16; 6] = [
    ids::SP1,
    ids::SP2,
    ids::TPM,
    ids::CRASH_DATA,
    ids::CRASH_UNDEF,
    ids::CRASH_STEAL,
];

/// Bit `i` set: `ALL[i]` was aborted on purpose and is no longer checked.
static GIVEN_UP: AtomicU32 = AtomicU32::new(0);

/// A check is about to abort `id` on purpose: liveness stops asking it.
pub fn given_up(id: u16) {
    if let Some(i) = ALL.iter().position(|p| *p == id) {
        GIVEN_UP.fetch_or(1 << i, Ordering::Relaxed);
    }
}

/// A report whose checks are each followed by the liveness check.
#[derive(Debug)]
pub struct Hostile<'a> {
    r: &'a mut Report,
}

impl<'a> Hostile<'a> {
    /// Wraps the stage's report.
    pub fn new(r: &'a mut Report) -> Self {
        Self { r }
    }

    /// Runs `f`, then [`live`]; one `PASS`/`FAIL` line for both.
    pub fn check(&mut self, name: &str, f: impl FnOnce() -> Outcome) {
        self.r.check(name, || {
            f()?;
            live()
        });
    }
}

/// A failure with the value found and the one wanted.
pub fn fail_eq(what: &'static str, got: u64, want: u64) -> Fail {
    Fail {
        what,
        values: Some((got, want)),
    }
}

/// The normal world still negotiates 1.2 and every partition (but those a
/// check aborted on purpose) still echoes a direct request (answered after any interrupt, [`irq::finish`]).
pub fn live() -> Outcome {
    let v = ffa::version(ffa::V1_2);
    if v != ffa::V1_2 {
        return Err(fail_eq(
            "liveness: FFA_VERSION(1.2)",
            v as u64,
            ffa::V1_2 as u64,
        ));
    }
    let given_up = GIVEN_UP.load(Ordering::Relaxed);
    for (i, sp) in ALL.into_iter().enumerate() {
        if given_up & (1 << i) != 0 {
            continue;
        }
        let r = irq::finish(ffa::cmd(sp, cmd::ECHO, [0x11FE, sp as u64, 0, 0]));
        if r[0] != ffa::MSG_SEND_DIRECT_RESP_64 || r[4] != 0x11FE || r[5] != sp as u64 {
            let what = match sp {
                ids::SP1 => "liveness: sp1 does not echo (w0 | w2 << 32)",
                ids::SP2 => "liveness: sp2 does not echo (w0 | w2 << 32)",
                ids::TPM => "liveness: tpm does not echo (w0 | w2 << 32)",
                ids::CRASH_DATA => "liveness: crash-data does not echo (w0 | w2 << 32)",
                ids::CRASH_UNDEF => "liveness: crash-undef does not echo (w0 | w2 << 32)",
                _ => "liveness: crash-steal does not echo (w0 | w2 << 32)",
            };
            return Err(fail_eq(
                what,
                r[0] as u32 as u64 | (r[2] as u32 as u64) << 32,
                ffa::MSG_SEND_DIRECT_RESP_64,
            ));
        }
    }
    Ok(())
}

/// `w0 | w2 << 32` of an answer: one number that shows both the function
/// and, for FFA_ERROR, the error code.
pub fn word(r: &Regs) -> u64 {
    r[0] as u32 as u64 | (r[2] as u32 as u64) << 32
}

/// The answer word of FFA_ERROR(`code`).
pub fn error_word(code: i32) -> u64 {
    ffa::ERROR_32 | (code as u32 as u64) << 32
}

/// Fails unless `r` is FFA_ERROR(`want`).
pub fn expect_error(r: &Regs, want: i32, what: &'static str) -> Outcome {
    if word(r) == error_word(want) {
        Ok(())
    } else {
        Err(fail_eq(what, word(r), error_word(want)))
    }
}

/// Fails unless `r` is FFA_SUCCESS (32- or 64-bit).
pub fn expect_success(r: &Regs, what: &'static str) -> Outcome {
    if r[0] as u32 as u64 | 0x4000_0000 == ffa::SUCCESS_64 & 0xFFFF_FFFF {
        Ok(())
    } else {
        Err(fail_eq(what, word(r), ffa::SUCCESS_32))
    }
}

/// Runs every hostile check in order.
pub fn run(r: &mut Report) {
    let mut h = Hostile::new(r);
    // v1.2 first: any other call fixes the version (§13.2), and the
    // liveness check asks for 1.2 after every check.
    let v = ffa::version(ffa::V1_2);
    if v != ffa::V1_2 {
        crate::say!("hostile: FFA_VERSION(1.2) answered {v:#x}");
    }
    let setup = ffa::map_buffers();
    if setup[0] != ffa::SUCCESS_32 {
        crate::say!(
            "hostile: mapping the harness's RX/TX failed: {:#x}",
            word(&setup)
        );
    }
    irq::init();
    calls::run(&mut h);
    partition::run(&mut h);
    irq::run(&mut h);
    partition::run_last(&mut h);
    crate::say!(
        "hostile: {} FFA_INTERRUPT answers taken and resumed with FFA_RUN so far",
        irq::interrupts_taken()
    );
    crate::say!(
        "hostile: next, an interrupt during a vTEE instance's boot (an SPMC that \
         re-enters the boot with the interrupt pending livelocks here, issue 9 item 7)"
    );
    irq::run_last(&mut h);
}
