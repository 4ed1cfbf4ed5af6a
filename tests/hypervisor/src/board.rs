//! The board's addresses the hypervisor and its checks use: QEMU virt, or
//! QEMU sbsa-ref with feature `sbsa` (the same code; only where things are
//! differs).

const SBSA: bool = cfg!(feature = "sbsa");

/// The secure pool (SPMC manifest `secure-memory`): instances' memory is
/// carved from it.
pub const POOL_BASE: u64 = if SBSA { 0x2050_0000 } else { 0x0e50_0000 };
/// Its pages, less the SPMC's heap share (platform-qemu layout.rs) on
/// sbsa-ref, where it is large.
pub const POOL_PAGES: u64 = if SBSA {
    (0x1eb0_0000 - (64 << 20)) / 4096
} else {
    0x00b0_0000 / 4096
};
/// Instance IDs the SPMC manifest gives the `vtee` template.
pub const VTEE_INSTANCES: u16 = if SBSA { 8192 } else { 64 };
/// At most this many rounds of `scale_again` (40 TEEs each): enough to pass
/// the whole of virt's pool (2,816 pages) through TEEs, 71 rounds; on
/// sbsa-ref, whose pool would take 2,733 rounds, as many as on virt.
pub const SCALE_ROUNDS_MAX: u64 = (0x00b0_0000 / 4096u64).div_ceil(40);
/// GICv3: the distributor and core 0's redistributor.
pub const GICD: usize = if SBSA { 0x4006_0000 } else { 0x0800_0000 };
pub const GICR: usize = if SBSA { 0x4008_0000 } else { 0x080a_0000 };
