//! The SMC conduit to EL3 (SMCCC v1.2: arguments and results in x0-x17).

use spmc::ffa::Regs;

/// Issues `smc #0` with `regs` as x0-x17 and writes back what EL3 returns.
///
/// For the SPMC this is also how it waits: an FF-A call to the SPMD returns
/// only when the next message for the SPMC arrives.
#[inline]
pub fn smc(regs: &mut Regs) {
    let r = &mut regs.0;
    // SAFETY: an SMC to EL3 under SMCCC v1.2 reads x0-x17 and writes x0-x17;
    // EL3 preserves every other register and our memory.
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
            inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
            inout("x8") r[8], inout("x9") r[9], inout("x10") r[10], inout("x11") r[11],
            inout("x12") r[12], inout("x13") r[13], inout("x14") r[14], inout("x15") r[15],
            inout("x16") r[16], inout("x17") r[17],
            options(nostack),
        );
    }
}
