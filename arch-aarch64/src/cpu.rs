//! Core identity and stopping a core.

use crate::sysreg;

/// The linear index of the running core (Aff1 * 4 + Aff0, as TF-A's QEMU port counts).
pub fn core_index() -> usize {
    let mpidr = sysreg::read_mpidr_el1();
    ((mpidr >> 8) & 0xff) as usize * 4 + (mpidr & 0xff) as usize
}

/// The exception level the core runs at.
pub fn current_el() -> u64 {
    (sysreg::read_current_el() >> 2) & 3
}

/// Stops the core for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: WFE only waits for an event.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack, preserves_flags)) }
    }
}
