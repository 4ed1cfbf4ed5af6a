//! `cmd::BUSY`: a busy partition that answers a managed exit (DEN0077 v1.2
//! §9, docs/interrupts.md "Normal-world interrupts").
//!
//! For the duration of the command the partition installs EL1 vectors whose
//! IRQ and FIQ entries save the caller-saved registers and call
//! [`test_sp_managed_exit`], and unmasks IRQ and FIQ; every synchronous
//! entry removes the vectors and raises an undefined instruction, so a fault
//! still ends at the SPMC, which aborts the partition. The SPMC signals a
//! managed exit as a virtual IRQ or FIQ (HCR_EL2.VI/VF, no interrupt ID):
//! the handler answers with the managed-exit response (a direct response to
//! the request it handles, status `MANAGED_EXIT`), and the SMC returns the
//! next direct request; the handler then returns to the loop, which answers
//! that request when it is done. Afterwards the vectors go (VBAR_EL1 = 0, as
//! every other command expects) and IRQ and FIQ are masked again.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use test_protocol::{cmd::busy, status};

use crate::commands::Answer;
use crate::ffa::{self, Kind, NARGS, Request};

/// The request being answered: its sender, kind (0 REQ_32, 1 REQ_64, 2
/// REQ2) and our own ID.
static SENDER: AtomicU64 = AtomicU64::new(0);
static KIND: AtomicU64 = AtomicU64::new(0);
static OWN: AtomicU64 = AtomicU64::new(0);
/// BUSY's arg1.
static MODE: AtomicU64 = AtomicU64::new(0);
/// Managed exits taken, the kind of the last (1 vIRQ, 2 vFIQ), the error
/// code of the wrong response.
static TAKEN: AtomicU64 = AtomicU64::new(0);
static LAST: AtomicU64 = AtomicU64::new(0);
static WRONG: AtomicU64 = AtomicU64::new(0);

global_asm!(
    ".section .text.vectors, \"ax\"",
    ".balign 2048",
    ".global test_sp_busy_vectors",
    "test_sp_busy_vectors:",
    // Current EL with SP_EL0, then with SP_ELx: sync, IRQ, FIQ, SError.
    ".rept 2",
    "b test_sp_busy_sync",
    ".balign 0x80",
    "sub sp, sp, #192",
    "stp x0, x1, [sp]",
    "mov x0, #1",
    "b test_sp_busy_irq",
    ".balign 0x80",
    "sub sp, sp, #192",
    "stp x0, x1, [sp]",
    "mov x0, #2",
    "b test_sp_busy_irq",
    ".balign 0x80",
    "b test_sp_busy_sync",
    ".balign 0x80",
    ".endr",
    // Lower ELs (never used here).
    ".rept 8",
    "b test_sp_busy_sync",
    ".balign 0x80",
    ".endr",
    // A synchronous exception: vectors off, then an undefined instruction
    // that ends at the SPMC (no vectors), which aborts the partition.
    "test_sp_busy_sync:",
    "msr vbar_el1, xzr",
    "isb",
    "udf #0",
    // IRQ/FIQ: x0 = 1 or 2, x0/x1 saved at [sp]; save the rest of the
    // caller-saved registers, call the handler, restore, return.
    "test_sp_busy_irq:",
    "stp x2, x3, [sp, #16]",
    "stp x4, x5, [sp, #32]",
    "stp x6, x7, [sp, #48]",
    "stp x8, x9, [sp, #64]",
    "stp x10, x11, [sp, #80]",
    "stp x12, x13, [sp, #96]",
    "stp x14, x15, [sp, #112]",
    "stp x16, x17, [sp, #128]",
    "stp x18, x29, [sp, #144]",
    "str x30, [sp, #160]",
    "bl test_sp_managed_exit",
    "ldp x2, x3, [sp, #16]",
    "ldp x4, x5, [sp, #32]",
    "ldp x6, x7, [sp, #48]",
    "ldp x8, x9, [sp, #64]",
    "ldp x10, x11, [sp, #80]",
    "ldp x12, x13, [sp, #96]",
    "ldp x14, x15, [sp, #112]",
    "ldp x16, x17, [sp, #128]",
    "ldp x18, x29, [sp, #144]",
    "ldr x30, [sp, #160]",
    "ldp x0, x1, [sp]",
    "add sp, sp, #192",
    "eret",
);

fn kind_of(k: u64) -> Kind {
    match k {
        0 => Kind::Req32,
        2 => Kind::Req2,
        _ => Kind::Req64,
    }
}

fn remember(kind: Kind, sender: u16) {
    let k = match kind {
        Kind::Req32 => 0,
        Kind::Req64 => 1,
        Kind::Req2 => 2,
    };
    KIND.store(k, Ordering::Relaxed);
    SENDER.store(sender as u64, Ordering::Relaxed);
}

/// Who the final answer goes to: the request BUSY started with, or the one
/// that came back after the last managed-exit response.
pub fn caller() -> (Kind, u16) {
    (
        kind_of(KIND.load(Ordering::Relaxed)),
        SENDER.load(Ordering::Relaxed) as u16,
    )
}

/// The virtual IRQ (`line` 1) or FIQ (2) handler: the managed exit.
#[unsafe(no_mangle)]
extern "C" fn test_sp_managed_exit(line: u64) {
    let taken = TAKEN.fetch_add(1, Ordering::Relaxed) + 1;
    LAST.store(line, Ordering::Relaxed);
    let own = OWN.load(Ordering::Relaxed) as u16;
    let (kind, sender) = caller();
    let mode = MODE.load(Ordering::Relaxed);
    if mode == busy::NEVER {
        // Return with IRQ and FIQ masked (SPSR_EL1.I and F): the loop goes
        // on without answering.
        // SAFETY: only the interrupted context's I and F bits change.
        unsafe {
            asm!(
                "mrs {t}, spsr_el1",
                "orr {t}, {t}, #0xC0",
                "msr spsr_el1, {t}",
                t = out(reg) _,
                options(nomem, nostack),
            )
        }
        return;
    }
    if mode == busy::WRONG_FIRST && WRONG.load(Ordering::Relaxed) == 0 {
        let mut wrong = ffa::response(kind, own, 0x7FFF, status::MANAGED_EXIT, &[0; NARGS]);
        baremetal::smc(&mut wrong);
        WRONG.store(wrong[2] as u32 as u64, Ordering::Relaxed);
    }
    let mut results = [0; NARGS];
    results[..3].copy_from_slice(&[line, taken, WRONG.load(Ordering::Relaxed)]);
    let mut r = ffa::response(kind, own, sender, status::MANAGED_EXIT, &results);
    baremetal::smc(&mut r);
    // The next direct request: the loop answers it when it is done.
    if let Some(next) = Request::decode(&r) {
        remember(next.kind, next.sender);
    }
}

/// Counter ticks now.
fn now() -> u64 {
    let t: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effect.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) t, options(nomem, nostack)) };
    t
}

/// BUSY (tests/protocol): busy for `ticks` counter ticks.
pub fn run(own: u16, req: &Request) -> Answer {
    let (ticks, mode) = (req.args[0], req.args[1]);
    if mode > busy::NEVER {
        return (status::BAD_ARG, [0; NARGS]);
    }
    remember(req.kind, req.sender);
    OWN.store(own as u64, Ordering::Relaxed);
    MODE.store(mode, Ordering::Relaxed);
    TAKEN.store(0, Ordering::Relaxed);
    LAST.store(0, Ordering::Relaxed);
    WRONG.store(0, Ordering::Relaxed);
    // At most about a second of QEMU's 62.5 MHz counter.
    let end = now().saturating_add(ticks.min(1 << 26));
    let mut iterations = 0u64;
    // NEVER: calls made after the managed exit was taken. The loop makes at
    // least twice the SPMC's bound (32) of them whatever the clock says, so
    // the bound is reached before the loop can end.
    let mut calls = 0u64;
    // SAFETY: the vectors are ours, 2 KiB aligned and mapped; their handler
    // saves what it uses. IRQ and FIQ are unmasked only until the loop ends.
    unsafe {
        asm!(
            "adrp {t}, test_sp_busy_vectors",
            "add {t}, {t}, :lo12:test_sp_busy_vectors",
            "msr vbar_el1, {t}",
            "isb",
            "msr daifclr, #3",
            t = out(reg) _,
            options(nostack),
        )
    }
    loop {
        iterations += 1;
        let never = mode == busy::NEVER && TAKEN.load(Ordering::Relaxed) > 0;
        if never {
            ffa::call(ffa::ID_GET, &[]);
            calls += 1;
        }
        if now() >= end && (!never || calls >= 64) {
            break;
        }
    }
    // SAFETY: masks IRQ and FIQ again and removes the vectors, as before
    // the command.
    unsafe {
        asm!(
            "msr daifset, #3",
            "msr vbar_el1, xzr",
            "isb",
            options(nomem, nostack),
        )
    }
    let mut out = [0; NARGS];
    out[..4].copy_from_slice(&[
        TAKEN.load(Ordering::Relaxed),
        LAST.load(Ordering::Relaxed),
        iterations,
        WRONG.load(Ordering::Relaxed),
    ]);
    (status::OK, out)
}
