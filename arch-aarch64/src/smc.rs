//! The SMC conduit to EL3 (SMCCC v1.2: arguments and results in x0-x17),
//! through the `smccc` crate.

use spmc::ffa::Regs;

/// Issues `smc #0` with `regs` as x0-x17 and writes back what EL3 returns.
///
/// For the SPMC this is also how it waits: an FF-A call to the SPMD returns
/// only when the next message for the SPMC arrives.
///
/// `smccc::smc64` takes x1-x17 and returns x0-x17 by value; inlined, the
/// copies vanish: it compiles to the same 22 instructions (11 loads, `smc`,
/// 9 stores, the block's address kept in x18) as the in-place `asm!` this
/// replaced (compared at opt-level s for aarch64-unknown-none-softfloat;
/// docs/arm-ffa.md). w0 carries the function ID: FF-A IDs are 32 bits.
#[inline]
pub fn smc(regs: &mut Regs) {
    let mut args = [0; 17];
    args.copy_from_slice(&regs.0[1..]);
    regs.0 = smccc::smc64(regs.0[0] as u32, args);
}
