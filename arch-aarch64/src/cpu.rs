//! Core identity and stopping a core.

use aarch64_cpu::registers::{CurrentEL, MPIDR_EL1, Readable};

/// The linear index of the running core (Aff1 * 4 + Aff0, as TF-A's QEMU port counts).
pub fn core_index() -> usize {
    let mpidr = MPIDR_EL1.extract();
    mpidr.read(MPIDR_EL1::Aff1) as usize * 4 + mpidr.read(MPIDR_EL1::Aff0) as usize
}

/// The exception level the core runs at.
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// Stops the core for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: WFE only waits for an event.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack, preserves_flags)) }
    }
}
