//! EL1 exception vectors for `cmd::FAULT`: the partition handles its own
//! stage-2 aborts, which the SPMC injects at its EL1 (docs/architecture.md
//! "Faults").
//!
//! The vectors are installed only for the duration of the command (VBAR_EL1
//! is 0 otherwise), so every other command's fault still ends at the SPMC
//! with no vector table, and the partition is aborted as before.
//!
//! Every entry runs the same handler, written into the entry for a
//! synchronous exception from the current EL with SP_EL1 (offset 0x200, where
//! a fault of our EL1 code lands) and branched to from the others. It records
//! ESR_EL1 and FAR_EL1 and returns past the faulting instruction. With
//! `AGAIN` set it first reads FAR_EL1's address itself: a fault in the vector
//! code, which the SPMC must answer by aborting the partition.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

/// ESR_EL1 the handler saw (0: it did not run).
#[unsafe(no_mangle)]
static TEST_SP_FAULT_ESR: AtomicU64 = AtomicU64::new(0);
/// FAR_EL1 the handler saw.
#[unsafe(no_mangle)]
static TEST_SP_FAULT_FAR: AtomicU64 = AtomicU64::new(0);
/// Non-zero: the handler faults on FAR_EL1's address itself.
#[unsafe(no_mangle)]
static TEST_SP_FAULT_AGAIN: AtomicU64 = AtomicU64::new(0);

global_asm!(
    ".section .text.vectors, \"ax\"",
    ".balign 2048",
    ".global test_sp_vectors",
    "test_sp_vectors:",
    // 0x000-0x180: current EL with SP_EL0.
    ".rept 4",
    "b test_sp_fault_handler",
    ".balign 0x80",
    ".endr",
    // 0x200: current EL with SP_ELx, synchronous.
    "test_sp_fault_handler:",
    "stp x0, x1, [sp, #-16]!",
    "mrs x0, esr_el1",
    "adrp x1, TEST_SP_FAULT_ESR",
    "add x1, x1, :lo12:TEST_SP_FAULT_ESR",
    "str x0, [x1]",
    "mrs x0, far_el1",
    "adrp x1, TEST_SP_FAULT_FAR",
    "add x1, x1, :lo12:TEST_SP_FAULT_FAR",
    "str x0, [x1]",
    "adrp x1, TEST_SP_FAULT_AGAIN",
    "add x1, x1, :lo12:TEST_SP_FAULT_AGAIN",
    "ldr x1, [x1]",
    "cbz x1, 1f",
    "ldr x1, [x0]",
    "1:",
    "mrs x0, elr_el1",
    "add x0, x0, #4",
    "msr elr_el1, x0",
    "ldp x0, x1, [sp], #16",
    "eret",
    ".balign 0x80",
    // 0x280-0x780: the rest.
    ".rept 11",
    "b test_sp_fault_handler",
    ".balign 0x80",
    ".endr",
);

/// What `cmd::FAULT` reports.
pub struct Outcome {
    /// ESR_EL1 the handler saw, 0 if no exception was taken.
    pub esr: u64,
    /// FAR_EL1 the handler saw.
    pub far: u64,
    /// The word read (when no exception was taken).
    pub value: u64,
}

/// Installs the vectors, reads the word at `addr`, removes the vectors.
pub fn read_with_vectors(addr: u64, again: bool) -> Outcome {
    TEST_SP_FAULT_ESR.store(0, Ordering::Relaxed);
    TEST_SP_FAULT_FAR.store(0, Ordering::Relaxed);
    TEST_SP_FAULT_AGAIN.store(again as u64, Ordering::Relaxed);
    let value: u64;
    // SAFETY: the vector table is ours, 2 KiB aligned and mapped; its
    // handler saves the two registers it uses and returns past the faulting
    // load, whose destination then keeps the 0 written before it. The read
    // may fault on purpose (the SPMC injects the abort here, or aborts us).
    // VBAR_EL1 goes back to 0 before anything else runs.
    unsafe {
        asm!(
            "adrp {t}, test_sp_vectors",
            "add {t}, {t}, :lo12:test_sp_vectors",
            "msr vbar_el1, {t}",
            "isb",
            "mov {v}, #0",
            "ldr {v}, [{a}]",
            "msr vbar_el1, xzr",
            "isb",
            t = out(reg) _,
            v = out(reg) value,
            a = in(reg) addr,
            options(nostack),
        )
    }
    Outcome {
        esr: TEST_SP_FAULT_ESR.load(Ordering::Relaxed),
        far: TEST_SP_FAULT_FAR.load(Ordering::Relaxed),
        value,
    }
}
