//! The hardware side of secure partitions' stage-2 translation.
//!
//! At Secure EL2 a secure EL1&0 regime has two IPA spaces: VSTTBR_EL2/VSTCR_EL2
//! translate the secure one into secure physical memory, VTTBR_EL2/VTCR_EL2
//! the non-secure one (selected by the stage-1 NS bit) into normal-world
//! memory. Both use 39-bit IPAs with tables starting at level 1 (48 bits
//! from level 0 with feature `va48`), matching `spmc::stage2::ROOT_LEVEL`. TLB entries are tagged by VTTBR_EL2.VMID.

use spmc::addr::{IpaSpace, PAGE_SIZE};

use crate::sysreg;

// VTCR_EL2: T0SZ=25, SL0=1 (start at level 1), inner/outer write-back,
// inner shareable, 4K granule, PS=40 bits, NSW=0 (walks of the non-secure
// table are in secure memory: the tables are the SPMC's), NSA=1 (non-secure
// IPA output is normal-world memory), RES1 bit 31. With `va48`: T0SZ=16,
// SL0=2 (start at level 0), PS=48 bits.
#[cfg(not(feature = "va48"))]
const SPACE: u64 = 25 | (1 << 6) | (2 << 16);
#[cfg(feature = "va48")]
const SPACE: u64 = 16 | (2 << 6) | (5 << 16);
#[cfg(not(feature = "ns-el2"))]
const VTCR: u64 = SPACE | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 30) | (1 << 31);
// Non-secure EL2: NSW and NSA are RES0 without FEAT_SEL2.
#[cfg(feature = "ns-el2")]
const VTCR: u64 = SPACE | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 31);
// VSTCR_EL2: T0SZ and SL0 as VTCR_EL2, 4K granule, SW=0 and SA=0 (secure
// walks, secure output).
const VSTCR: u64 = SPACE & 0xFF;
// HCR_EL2 while partitions run: VM (stage 2 on), SWIO, FMO/IMO/AMO (physical
// FIQ/IRQ/SError to EL2), TSC (trap SMC: the partitions' FF-A conduit), RW
// (EL1 is AArch64). RW is what keeps a partition out of AArch32 EL1: an ERET
// to it is an illegal exception return, which the partition takes at its own
// EL1. AArch32 EL0 stays possible (the CPU may implement it); its exceptions
// to EL2 come through the AArch64 lower-EL vectors because RW is set (Arm
// ARM D1.3.1), and are that partition's calls, interrupts and faults.
const HCR: u64 = 1 | (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 19) | (1 << 31);

/// VTCR_EL2.VS: VMIDs are 16 bits wide (FEAT_VMID16).
const VS: u64 = 1 << 19;

/// True if the CPU tags stage-2 translations with 16-bit VMIDs
/// (FEAT_VMID16: ID_AA64MMFR1_EL1.VMIDBits = 0b0010), which [`configure`]
/// then turns on; otherwise they are 8 bits wide.
pub fn vmid16() -> bool {
    (sysreg::read_id_aa64mmfr1_el1() >> 4) & 0xF == 2
}

/// Programs the stage-2 controls on this core (at boot and on each core's first entry).
pub fn configure() {
    let vtcr = if vmid16() { VTCR | VS } else { VTCR };
    // SAFETY: these registers only affect the EL1&0 regimes, which run only
    // when the SPMC enters a partition with tables it built.
    unsafe { sysreg::write_vtcr_el2(vtcr) };
    if !cfg!(feature = "ns-el2") {
        // SAFETY: as above.
        unsafe { sysreg::write_vstcr_el2(VSTCR) };
    }
    // SAFETY: as above.
    unsafe { sysreg::write_hcr_el2(HCR) };
    sysreg::isb();
}

/// Loads a partition's stage-2 roots.
///
/// # Safety
///
/// Both roots must be stage-2 tables that map only memory the partition may use.
pub unsafe fn load(vsttbr: u64, vttbr: u64) {
    if !cfg!(feature = "ns-el2") {
        // SAFETY: the caller vouches for the tables; no EL1 code runs until ERET.
        unsafe { sysreg::write_vsttbr_el2(vsttbr) };
    }
    // SAFETY: as above.
    unsafe { sysreg::write_vttbr_el2(vttbr) };
    sysreg::isb();
}

/// Invalidates the TLB entries of `vmid`'s stage-2 translations for
/// `[ipa, ipa + len)` in `space`, and the combined stage-1 entries that may
/// hold them, on every core (inner shareable).
pub fn invalidate(vmid: u16, space: IpaSpace, ipa: u64, len: u64) {
    let saved = sysreg::read_vttbr_el2();
    // TLBI by IPA acts on the VMID in VTTBR_EL2; the table address is unused here.
    // SAFETY: no EL1 code runs while VTTBR_EL2 is borrowed; it is restored below.
    unsafe { sysreg::write_vttbr_el2((vmid as u64) << 48) };
    sysreg::isb();
    let pages = len.div_ceil(PAGE_SIZE);
    // Bit 63 of the TLBI IPAS2E1IS operand selects the non-secure IPA space.
    // At non-secure EL2 (feature `ns-el2`) there is one space and the bit is RES0.
    let ns = match space {
        IpaSpace::NonSecure if !cfg!(feature = "ns-el2") => 1 << 63,
        _ => 0,
    };
    // SAFETY: barriers and TLB maintenance only drop cached translations.
    unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
    if pages > 64 {
        // SAFETY: as above: all stage 1 and 2 entries of this VMID.
        unsafe { core::arch::asm!("tlbi vmalls12e1is", options(nostack, preserves_flags)) };
    } else {
        for i in 0..pages {
            let arg = ns | ((ipa + i * PAGE_SIZE) >> 12) & 0xF_FFFF_FFFF;
            // SAFETY: as above.
            unsafe {
                core::arch::asm!("tlbi ipas2e1is, {}", in(reg) arg, options(nostack, preserves_flags))
            };
        }
        // SAFETY: as above: the stage-1 entries combined with the old stage 2.
        unsafe {
            core::arch::asm!(
                "dsb ish",
                "tlbi vmalle1is",
                options(nostack, preserves_flags)
            )
        };
    }
    // SAFETY: as above.
    unsafe { core::arch::asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
    // SAFETY: restores the value read above.
    unsafe { sysreg::write_vttbr_el2(saved) };
    sysreg::isb();
}
