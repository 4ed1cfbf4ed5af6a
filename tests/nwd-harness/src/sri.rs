//! The schedule receiver interrupt as the normal world sees it (DEN0077
//! v1.2 chapter 10; docs/notifications.md): SGI 8 at the redistributor of
//! the core these checks run on (core 0, QEMU's first redistributor).
//!
//! The checks enable the SGI (GICR_ISENABLER0, a non-secure write: it only
//! sticks when the SPMC gave the SGI to the normal world, Group 1
//! non-secure) and read its pending bit (GICR_ISPENDR0), with Group 1
//! disabled at this core's CPU interface: the interrupt is never signalled,
//! so no partition is preempted by it and nothing here takes an exception.

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};

/// The SGI the SPMC reports for FFA_FEATURES feature ID 2.
pub const SRI_INTID: u32 = 8;
const GICR: usize = if cfg!(feature = "sbsa") {
    0x4008_0000
} else {
    0x080a_0000
};
/// Core 0's SGI frame (after its 64 KiB RD frame).
const SGI: usize = GICR + 0x1_0000;
const ISENABLER0: usize = 0x100;
const ISPENDR0: usize = 0x200;
const ICPENDR0: usize = 0x280;

fn read(off: usize) -> u32 {
    // SAFETY: core 0's SGI frame, device memory in the first GiB that the
    // boot map maps as Device; reading a set-enable or set-pending register
    // has no side effect.
    unsafe { read_volatile((SGI + off) as *const u32) }
}

fn write(off: usize, v: u32) {
    // SAFETY: as in `read`; the writes set or clear one bit of the SGI's
    // enable or pending state, which only this module uses.
    unsafe { write_volatile((SGI + off) as *mut u32, v) }
}

/// Enables the SRI at this core's redistributor, with Group 1 interrupts
/// disabled at the CPU interface; says whether the enable stuck (the SGI
/// is the normal world's).
pub fn enable() -> bool {
    // SAFETY: ICC_SRE_EL2.SRE (system-register access to the CPU interface,
    // which TF-A allows) and ICC_IGRPEN1_EL1 = 0: Group 1 interrupts are not
    // signalled to this core, whatever is pending; PSTATE.I stays masked.
    unsafe {
        asm!(
            "mrs {t}, S3_4_C12_C9_5",
            "orr {t}, {t}, #1",
            "msr S3_4_C12_C9_5, {t}",
            "isb",
            "msr S3_0_C12_C12_7, xzr",
            "isb",
            t = out(reg) _,
            options(nostack),
        )
    };
    write(ISENABLER0, 1 << SRI_INTID);
    read(ISENABLER0) & (1 << SRI_INTID) != 0
}

/// The SRI is pending at this core.
pub fn pending() -> bool {
    read(ISPENDR0) & (1 << SRI_INTID) != 0
}

/// Clears the SRI's pending state at this core.
pub fn clear() {
    write(ICPENDR0, 1 << SRI_INTID);
}
