//! The hardware side of secure partitions' stage-2 translation.
//!
//! At Secure EL2 a secure EL1&0 regime has two IPA spaces: VSTTBR_EL2/VSTCR_EL2
//! translate the secure one into secure physical memory, VTTBR_EL2/VTCR_EL2
//! the non-secure one (selected by the stage-1 NS bit) into normal-world
//! memory. Both use 39-bit IPAs with tables starting at level 1 (48 bits
//! from level 0 with feature `va48`), matching `spmc::stage2::ROOT_LEVEL`. TLB entries are tagged by VTTBR_EL2.VMID.

use spmc::addr::{IpaSpace, PAGE_SIZE};

use aarch64_cpu::registers::{HCR_EL2, ID_AA64MMFR1_EL1, Readable, VTCR_EL2};

use crate::sysreg;

// VTCR_EL2: T0SZ=25, SL0=1 (start at level 1), inner/outer write-back,
// inner shareable, 4K granule, PS=40 bits, NSW=0 (walks of the non-secure
// table are in secure memory: the tables are the SPMC's), NSA=1 (non-secure
// IPA output is normal-world memory), RES1 bit 31. With `va48`: T0SZ=16,
// SL0=2 (start at level 0), PS=48 bits. Field names are aarch64-cpu's.
#[cfg(not(feature = "va48"))]
const SPACE: u64 = VTCR_EL2::T0SZ.val(25).value
    | VTCR_EL2::SL0::Granule4KBLevel1.value
    | VTCR_EL2::PS::PA_40B_1TB.value;
#[cfg(feature = "va48")]
const SPACE: u64 = VTCR_EL2::T0SZ.val(16).value
    | VTCR_EL2::SL0::Granule4KBLevel0.value
    | VTCR_EL2::PS::PA_48B_256TB.value;
const VTCR_COMMON: u64 = SPACE
    | VTCR_EL2::IRGN0::NormalWBRAWA.value
    | VTCR_EL2::ORGN0::NormalWBRAWA.value
    | VTCR_EL2::SH0::Inner.value
    | VTCR_EL2::TG0::Granule4KB.value
    | VTCR_EL2::RES1.val(1).value;
#[cfg(not(feature = "ns-el2"))]
const VTCR: u64 = VTCR_COMMON | VTCR_EL2::NSA::NonSecurePASpace.value;
// Non-secure EL2: NSW and NSA are RES0 without FEAT_SEL2.
#[cfg(feature = "ns-el2")]
const VTCR: u64 = VTCR_COMMON;
// VSTCR_EL2: T0SZ and SL0 as VTCR_EL2, 4K granule, SW=0 and SA=0 (secure
// walks, secure output). aarch64-cpu has no VSTCR_EL2 (a Secure EL2
// register): its T0SZ and SL0 sit where VTCR_EL2's do.
const VSTCR: u64 = SPACE
    & ((VTCR_EL2::T0SZ.mask << VTCR_EL2::T0SZ.shift) | (VTCR_EL2::SL0.mask << VTCR_EL2::SL0.shift));
// HCR_EL2 while partitions run: VM (stage 2 on), SWIO, FMO/IMO/AMO (physical
// FIQ/IRQ/SError to EL2), TSC (trap SMC: the partitions' FF-A conduit), RW
// (EL1 is AArch64). RW is what keeps a partition out of AArch32 EL1: an ERET
// to it is an illegal exception return, which the partition takes at its own
// EL1. AArch32 EL0 stays possible (the CPU may implement it); its exceptions
// to EL2 come through the AArch64 lower-EL vectors because RW is set (Arm
// ARM D1.3.1), and are that partition's calls, interrupts and faults.
const HCR: u64 = HCR_EL2::VM::Enable.value
    | HCR_EL2::SWIO.val(1).value
    | HCR_EL2::FMO::EnableVirtualFIQ.value
    | HCR_EL2::IMO::EnableVirtualIRQ.value
    | HCR_EL2::AMO.val(1).value
    | HCR_EL2::TSC::EnableTrapEl1SmcToEl2.value
    | HCR_EL2::RW::EL1IsAarch64.value;

/// VTCR_EL2.VS: VMIDs are 16 bits wide (FEAT_VMID16).
const VS: u64 = VTCR_EL2::VS::Bits16.value;

// The named fields spell the same values as the architecture's bit numbers.
#[cfg(not(feature = "va48"))]
const _: () = assert!(SPACE == 25 | (1 << 6) | (2 << 16));
#[cfg(feature = "va48")]
const _: () = assert!(SPACE == 16 | (2 << 6) | (5 << 16));
#[cfg(not(feature = "ns-el2"))]
const _: () = assert!(VTCR == SPACE | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 30) | (1 << 31));
#[cfg(feature = "ns-el2")]
const _: () = assert!(VTCR == SPACE | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 31));
const _: () = assert!(VSTCR == SPACE & 0xFF);
const _: () = assert!(HCR == 1 | (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 19) | (1 << 31));
const _: () = assert!(VS == 1 << 19);

/// True if the CPU tags stage-2 translations with 16-bit VMIDs
/// (FEAT_VMID16: ID_AA64MMFR1_EL1.VMIDBits = 0b0010), which [`configure`]
/// then turns on; otherwise they are 8 bits wide.
pub fn vmid16() -> bool {
    ID_AA64MMFR1_EL1.matches_all(ID_AA64MMFR1_EL1::VMIDBits::Bits16)
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
