//! Normal-world interrupts while a partition is busy, per its manifest's
//! `ns-interrupts-action` (DEN0077 v1.2 §9; docs/interrupts.md
//! "Normal-world interrupts"): the normal world's EL2 physical timer
//! (CNTHP, PPI 26) is armed to fire at once, so it is pending before the
//! call and the SPMC meets it as soon as it enters the partition (no check
//! depends on when QEMU's clock fires it). The partition runs `cmd::BUSY`
//! (tests/test-sp `busy`), with vectors that answer a managed exit.
//!
//! - crash-data, queued: the answer comes with no FFA_INTERRUPT and the
//!   interrupt is still pending at the GIC for the normal world;
//! - sp1, signalled: FFA_INTERRUPT, FFA_RUN, then the answer;
//! - crash-undef (vFIQ) and crash-steal (vIRQ), managed exit: the
//!   managed-exit response comes back as the direct response, the interrupt
//!   is pending for the normal world, and a new direct request lets the
//!   partition finish its work;
//! - bad input: a wrong response first (refused, the managed exit stays
//!   pending), and a partition that never answers (preempted after the
//!   SPMC's bound).
//!
//! Runs before `partitions`, whose fault checks abort the crash partitions.

use core::arch::asm;

use test_protocol::cmd::busy;
use test_protocol::{cmd, ids, status};

use crate::ffa::{self, Regs, call};
use crate::hostile::irq;
use crate::report::{Fail, Outcome, Report};
use crate::{ensure, ensure_eq};

/// GICR_ISPENDR0 of core 0 on QEMU virt (SGI/PPI set-pending, read: pending).
const GICR_ISPENDR0: usize = 0x080A_0000 + 0x1_0000 + 0x200;
/// The normal world's EL2 physical timer's PPI.
const CNTHP_INTID: u32 = 26;

/// Runs the checks (on QEMU virt: the timer's GIC addresses are virt's, as
/// in the hostile stage's [`irq`]).
pub fn run(r: &mut Report) {
    if cfg!(feature = "sbsa") {
        return;
    }
    irq::init();
    r.check(
        "nsirq-queued-busy-partition-finishes-interrupt-waits",
        queued,
    );
    r.check(
        "nsirq-signalled-busy-partition-preempted-then-run",
        signalled,
    );
    r.check("nsirq-managed-exit-vfiq-response-then-finishes", || {
        managed_exit(ids::CRASH_UNDEF, 2)
    });
    r.check("nsirq-managed-exit-virq-response-then-finishes", || {
        managed_exit(ids::CRASH_STEAL, 1)
    });
    r.check("nsirq-managed-exit-wrong-response-refused", wrong_response);
    r.check("nsirq-managed-exit-unanswered-is-bounded", unanswered);
    r.check("nsirq-busy-without-interrupt-no-managed-exit", quiet);
}

/// Two milliseconds of counter ticks.
fn two_ms() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effect.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f / 500
}

/// Whether the timer's interrupt is pending at the GIC (for the normal
/// world, which runs with PSTATE.I set and so never takes it itself).
fn timer_pending() -> bool {
    // SAFETY: QEMU virt's redistributor of core 0, mapped Device by the
    // harness's boot map; reading ISPENDR0 has no side effect.
    let p = unsafe { core::ptr::read_volatile(GICR_ISPENDR0 as *const u32) };
    p & (1 << CNTHP_INTID) != 0
}

fn busy(dst: u16, mode: u64) -> Regs {
    ffa::cmd(dst, cmd::BUSY, [two_ms(), mode, 0, 0])
}

/// Fails unless `r` is `dst`'s RESP_64 with `want` status; returns x4-x7.
fn resp(r: &Regs, dst: u16, want: u64) -> Result<[u64; 4], Fail> {
    ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "a direct response (w0)");
    ensure_eq!(r[1], (dst as u64) << 16, "from the partition to us (w1)");
    ensure_eq!(r[3], want, "status");
    Ok([r[4], r[5], r[6], r[7]])
}

fn queued() -> Outcome {
    irq::arm(0);
    let r = busy(ids::CRASH_DATA, busy::ANSWER);
    let pending = timer_pending();
    irq::disarm();
    let [taken, ..] = resp(&r, ids::CRASH_DATA, status::OK)?;
    ensure_eq!(taken, 0, "managed exits the queued partition took");
    ensure!(
        pending,
        "the interrupt is left pending for the normal world"
    );
    Ok(())
}

fn signalled() -> Outcome {
    irq::arm(0);
    let r = busy(ids::SP1, busy::ANSWER);
    irq::disarm();
    ensure_eq!(r[0], ffa::INTERRUPT_32, "FFA_INTERRUPT first");
    ensure_eq!(r[1], (ids::SP1 as u64) << 16, "naming sp1's vCPU 0");
    let r = call(ffa::RUN, &[(ids::SP1 as u64) << 16]);
    let [taken, ..] = resp(&r, ids::SP1, status::OK)?;
    ensure_eq!(taken, 0, "managed exits sp1 took");
    Ok(())
}

fn managed_exit(dst: u16, line: u64) -> Outcome {
    irq::arm(0);
    let r = busy(dst, busy::ANSWER);
    let pending = timer_pending();
    irq::disarm();
    let [kind, taken, wrong, _] = resp(&r, dst, status::MANAGED_EXIT)?;
    ensure_eq!(kind, line, "signalled as (1 vIRQ, 2 vFIQ)");
    ensure_eq!(taken, 1, "managed exits taken");
    ensure_eq!(wrong, 0, "no wrong response");
    ensure!(pending, "the interrupt is pending for the normal world");
    // A new request lets the partition finish; it answers that one.
    let r = ffa::cmd(dst, cmd::ECHO, [0; 4]);
    let [taken, last, iterations, _] = resp(&r, dst, status::OK)?;
    ensure_eq!(taken, 1, "managed exits taken in all");
    ensure_eq!(last, line, "the last one's line");
    ensure!(iterations > 0, "the loop ran");
    // And it is ready for the next one.
    let r = ffa::cmd(dst, cmd::ADD, [2, 3, 0, 0]);
    let [sum, ..] = resp(&r, dst, status::OK)?;
    ensure_eq!(sum, 5, "a plain command after the managed exit");
    Ok(())
}

fn wrong_response() -> Outcome {
    irq::arm(0);
    let r = busy(ids::CRASH_UNDEF, busy::WRONG_FIRST);
    irq::disarm();
    let [kind, taken, wrong, _] = resp(&r, ids::CRASH_UNDEF, status::MANAGED_EXIT)?;
    ensure_eq!(kind, 2, "vFIQ");
    ensure_eq!(
        taken,
        1,
        "one managed exit: the wrong response did not end it"
    );
    ensure_eq!(
        wrong,
        ffa::INVALID_PARAMETERS as u32,
        "the wrong response's answer (§15.3: not to its caller)"
    );
    let r = ffa::cmd(ids::CRASH_UNDEF, cmd::ECHO, [0; 4]);
    let [taken, ..] = resp(&r, ids::CRASH_UNDEF, status::OK)?;
    ensure_eq!(taken, 1, "managed exits taken in all");
    Ok(())
}

fn unanswered() -> Outcome {
    irq::arm(0);
    let r = busy(ids::CRASH_UNDEF, busy::NEVER);
    irq::disarm();
    // After the SPMC's bound (spmc::ns_interrupts::MANAGED_EXIT_CALLS
    // calls with no response) the normal world gets its interrupt.
    ensure_eq!(r[0], ffa::INTERRUPT_32, "FFA_INTERRUPT after the bound");
    ensure_eq!(r[1], (ids::CRASH_UNDEF as u64) << 16, "naming its vCPU 0");
    let r = call(ffa::RUN, &[(ids::CRASH_UNDEF as u64) << 16]);
    let [taken, ..] = resp(&r, ids::CRASH_UNDEF, status::OK)?;
    ensure_eq!(
        taken,
        1,
        "the managed exit was signalled (and not answered)"
    );
    Ok(())
}

fn quiet() -> Outcome {
    for dst in [ids::CRASH_UNDEF, ids::CRASH_STEAL, ids::CRASH_DATA] {
        let r = busy(dst, busy::ANSWER);
        let [taken, ..] = resp(&r, dst, status::OK)?;
        ensure_eq!(taken, 0, "no managed exit without an interrupt");
    }
    Ok(())
}
