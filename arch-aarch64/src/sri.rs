//! The one GIC register the SPMC writes to signal the normal world: the
//! schedule receiver interrupt (DEN0077 v1.2 chapter 10) as a Group 1
//! non-secure SGI, generated from Secure state with ICC_ASGI1R_EL1 (GICv3,
//! "alias" SGI: Group 1 for the other Security state), as Hafnium's SPMC
//! sends it. The interrupt must be configured Group 1 non-secure at the
//! target's redistributor (the platform does that at each core's boot);
//! otherwise the GIC sets nothing pending.

use crate::sysreg;

/// Sends SGI `intid` (0-15) as a Group 1 non-secure interrupt to the running
/// core only.
pub fn send_ns_sgi_to_self(intid: u32) {
    // At non-secure EL2 (GICv2, no ICC_ASGI1R_EL1) the receivers are this
    // image's own VMs: there is no other world to signal.
    if cfg!(feature = "ns-el2") {
        return;
    }
    let mpidr = sysreg::read_mpidr_el1();
    let aff0 = mpidr & 0xff;
    // ICC_ASGI1R_EL1: Aff3 [55:48], RS [47:44] (Aff0 / 16), IRM [40] = 0
    // (the listed targets), Aff2 [39:32], INTID [27:24], Aff1 [23:16],
    // TargetList [15:0] (one bit per Aff0 % 16).
    let value = ((mpidr >> 32) & 0xff) << 48
        | (aff0 >> 4) << 44
        | ((mpidr >> 16) & 0xff) << 32
        | ((intid as u64) & 0xf) << 24
        | ((mpidr >> 8) & 0xff) << 16
        | 1 << (aff0 & 0xf);
    // SAFETY: writing ICC_ASGI1R_EL1 only makes an SGI pending for the
    // normal world at this core's redistributor (system-register access to
    // the CPU interface is enabled at S-EL2 by TF-A, ICC_SRE_EL2.SRE); it
    // touches no memory. The ISB makes the write take effect before the
    // caller goes on (the SGI is generated in order with later exits).
    unsafe {
        core::arch::asm!(
            "msr S3_0_C12_C11_6, {v}",
            "isb",
            v = in(reg) value,
            options(nostack, preserves_flags),
        )
    };
}
