//! A normal-world interrupt that is pending while the secure world runs: the
//! EL2 physical timer (CNTHP, PPI 26 on QEMU virt) set to fire at once, its
//! PPI enabled at the GICv3 redistributor of core 0 and Group 1 enabled at
//! the CPU interface, while the hypervisor keeps PSTATE.I masked. The level
//! stays asserted until [`stop`], so every entry into the secure world meets
//! it (the moment the `vtee` check needs: an instance's creation).
//!
//! TF-A has already set the distributor up (affinity routing) and made every
//! PPI Group 1 non-secure with a default priority; Group 1 NS is enabled at
//! the distributor here in case it is not yet.

use core::arch::asm;

/// Core 0's redistributor SGI/PPI frame (the GICR base plus the 64 KiB RD
/// frame).
const GICR_SGI_BASE: usize = crate::board::GICR + 0x1_0000;
/// GICD_CTLR (non-secure view: bit 1 EnableGrp1A, bit 4 ARE_NS).
const GICD_CTLR: usize = crate::board::GICD;
/// GICR_ISENABLER0 / GICR_ICENABLER0 (one bit per SGI/PPI).
const ISENABLER0: usize = 0x100;
const ICENABLER0: usize = 0x180;
/// CNTHP's PPI (INTID 26).
const HYP_TIMER_PPI: u32 = 26;

/// Makes the hypervisor timer's interrupt pending, now and until [`stop`].
pub fn start() {
    // SAFETY: ICC_SRE_EL2.SRE (system-register access to the CPU interface,
    // which TF-A allows), the priority mask and the Group 1 enable only
    // decide whether this core's interrupts are signalled; PSTATE.I stays
    // masked, so none is taken here.
    unsafe {
        asm!(
            "mrs {t}, S3_4_C12_C9_5",
            "orr {t}, {t}, #1",
            "msr S3_4_C12_C9_5, {t}",
            "isb",
            "mov {t}, #0xff",
            "msr S3_0_C4_C6_0, {t}",
            "mov {t}, #1",
            "msr S3_0_C12_C12_7, {t}",
            "isb",
            t = out(reg) _,
            options(nostack),
        )
    };
    // SAFETY: the distributor is device memory in the first GiB, which the
    // boot map maps as Device; setting EnableGrp1A only lets Group 1 NS
    // interrupts be forwarded.
    let ctlr = unsafe { core::ptr::read_volatile(GICD_CTLR as *const u32) };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(GICD_CTLR as *mut u32, ctlr | (1 << 1)) };
    // SAFETY: the redistributor frame is device memory in the first GiB,
    // which the boot map maps as Device; the write enables one PPI.
    unsafe {
        core::ptr::write_volatile((GICR_SGI_BASE + ISENABLER0) as *mut u32, 1 << HYP_TIMER_PPI)
    };
    // SAFETY: CNTHP belongs to EL2, where we run; compare value 0 and the
    // timer enabled, unmasked: its condition holds at once.
    unsafe {
        asm!(
            "msr cnthp_cval_el2, xzr",
            "mov {t}, #1",
            "msr cnthp_ctl_el2, {t}",
            "isb",
            t = out(reg) _,
            options(nostack),
        )
    };
}

/// True if the timer's condition holds (CNTHP_CTL_EL2.ISTATUS).
pub fn firing() -> bool {
    let ctl: u64;
    // SAFETY: reading CNTHP_CTL_EL2 has no side effect.
    unsafe { asm!("mrs {}, cnthp_ctl_el2", out(reg) ctl, options(nomem, nostack)) };
    ctl & 0b101 == 0b101
}

/// Stops the timer and disables its PPI again.
pub fn stop() {
    // SAFETY: disabling our own timer.
    unsafe { asm!("msr cnthp_ctl_el2, xzr", "isb", options(nostack)) };
    // SAFETY: as in `start`; the write disables one PPI.
    unsafe {
        core::ptr::write_volatile((GICR_SGI_BASE + ICENABLER0) as *mut u32, 1 << HYP_TIMER_PPI)
    };
}

/// GICR_ISPENDR0 / GICR_ICPENDR0.
const ISPENDR0: usize = 0x200;
const ICPENDR0: usize = 0x280;
/// The schedule receiver interrupt's SGI (FFA_FEATURES feature ID 2).
const SRI_INTID: u32 = 8;

/// The schedule receiver interrupt is pending at core 0 (where the
/// hypervisor runs). It stays disabled here, so it is never signalled: the
/// pending bit reads as 1 only if the SPMC gave the SGI to the normal world
/// (Group 1 non-secure) and raised it.
pub fn sri_pending() -> bool {
    // SAFETY: as in `start`; reading the set-pending register has no side
    // effect.
    let p = unsafe { core::ptr::read_volatile((GICR_SGI_BASE + ISPENDR0) as *const u32) };
    p & (1 << SRI_INTID) != 0
}

/// Clears the schedule receiver interrupt's pending state at core 0.
pub fn sri_clear() {
    // SAFETY: as in `start`; the write clears one SGI's pending state.
    unsafe { core::ptr::write_volatile((GICR_SGI_BASE + ICPENDR0) as *mut u32, 1 << SRI_INTID) };
}
