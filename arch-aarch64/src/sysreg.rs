//! System register access.
//!
//! Registers aarch64-cpu names are read through it; the rest of the crate
//! uses its register and field names directly where it decodes a value
//! (`cpu.rs`, `stage2.rs`, `mmu.rs`).

use aarch64_cpu::registers::{
    CNTFRQ_EL0, CNTVCT_EL0, CPTR_EL2, CurrentEL, HCR_EL2, ID_AA64MMFR1_EL1, ID_AA64PFR0_EL1,
    MIDR_EL1, MPIDR_EL1, Readable, SCTLR_EL2, VTTBR_EL2,
};

/// Generates a read accessor for an EL2 (or EL1) system register that
/// aarch64-cpu names (its `get` is an `mrs` with no memory effect, as ours was).
macro_rules! read_sysreg {
    ($(#[$doc:meta])* $name:ident, $reg:ident) => {
        $(#[$doc])*
        #[inline]
        pub fn $name() -> u64 {
            $reg.get()
        }
    };
}

/// Generates a read accessor for a register aarch64-cpu does not name (the
/// Secure EL2 ones), by its encoding.
macro_rules! read_sysreg_raw {
    ($(#[$doc:meta])* $name:ident, $reg:literal) => {
        $(#[$doc])*
        #[inline]
        pub fn $name() -> u64 {
            let value: u64;
            // SAFETY: reading this system register has no side effect; the
            // caller runs at EL2 where it is accessible.
            unsafe {
                core::arch::asm!(concat!("mrs {}, ", $reg), out(reg) value, options(nomem, nostack, preserves_flags));
            }
            value
        }
    };
}

/// Generates a write accessor; writing is unsafe because it changes how the
/// core translates, traps or executes. These stay ours rather than
/// aarch64-cpu's `set`: that one is a safe function and its `msr` is marked
/// `nomem`, so the compiler may move memory accesses across a write that
/// changes translation (SCTLR_EL2, TTBR0_EL2, VTTBR_EL2...); ours is a
/// compiler barrier and `unsafe`, with the contract below.
macro_rules! write_sysreg {
    ($(#[$doc:meta])* $name:ident, $reg:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// The caller must make sure the new value keeps the running code's
        /// memory mapped and its invariants intact.
        #[inline]
        pub unsafe fn $name(value: u64) {
            // SAFETY: the caller upholds this function's contract.
            unsafe {
                core::arch::asm!(concat!("msr ", $reg, ", {}"), in(reg) value, options(nostack, preserves_flags));
            }
        }
    };
}

read_sysreg!(
    /// CurrentEL.
    read_current_el, CurrentEL);
read_sysreg!(
    /// MIDR_EL1.
    read_midr_el1, MIDR_EL1);
read_sysreg!(
    /// MPIDR_EL1.
    read_mpidr_el1, MPIDR_EL1);
read_sysreg_raw!(
    /// VSTCR_EL2: exists only at Secure EL2 (reading it elsewhere is UNDEFINED).
    read_vstcr_el2, "S3_4_C2_C6_2");
read_sysreg!(
    /// ID_AA64PFR0_EL1.
    read_id_aa64pfr0_el1, ID_AA64PFR0_EL1);
read_sysreg!(
    /// VTTBR_EL2.
    read_vttbr_el2, VTTBR_EL2);
read_sysreg!(
    /// CNTFRQ_EL0.
    read_cntfrq_el0, CNTFRQ_EL0);
read_sysreg!(
    /// CNTVCT_EL0.
    read_cntvct_el0, CNTVCT_EL0);
read_sysreg!(
    /// HCR_EL2.
    read_hcr_el2, HCR_EL2);
read_sysreg!(
    /// SCTLR_EL2.
    read_sctlr_el2, SCTLR_EL2);
read_sysreg!(
    /// ID_AA64MMFR1_EL1.
    read_id_aa64mmfr1_el1, ID_AA64MMFR1_EL1);
read_sysreg!(
    /// CPTR_EL2.
    read_cptr_el2, CPTR_EL2);

write_sysreg!(
    /// SCTLR_EL2.
    write_sctlr_el2, "sctlr_el2");
write_sysreg!(
    /// TCR_EL2.
    write_tcr_el2, "tcr_el2");
write_sysreg!(
    /// MAIR_EL2.
    write_mair_el2, "mair_el2");
write_sysreg!(
    /// TTBR0_EL2.
    write_ttbr0_el2, "ttbr0_el2");
write_sysreg!(
    /// HCR_EL2.
    write_hcr_el2, "hcr_el2");
write_sysreg!(
    /// CPTR_EL2.
    write_cptr_el2, "cptr_el2");
write_sysreg!(
    /// VTCR_EL2.
    write_vtcr_el2, "vtcr_el2");
write_sysreg!(
    /// VSTCR_EL2 (Secure EL2 only; encoded, the assembler may not know it).
    write_vstcr_el2, "S3_4_C2_C6_2");
write_sysreg!(
    /// VTTBR_EL2.
    write_vttbr_el2, "vttbr_el2");
write_sysreg!(
    /// VSTTBR_EL2 (Secure EL2 only).
    write_vsttbr_el2, "S3_4_C2_C6_0");

/// Instruction synchronization barrier.
#[inline]
pub fn isb() {
    // SAFETY: a barrier has no effect on memory safety.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) }
}

/// Full-system data synchronization barrier.
#[inline]
pub fn dsb_sy() {
    // SAFETY: a barrier has no effect on memory safety.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) }
}
