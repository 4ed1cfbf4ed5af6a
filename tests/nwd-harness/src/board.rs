//! The board's addresses the checks use: QEMU virt, or QEMU sbsa-ref with
//! feature `sbsa` (the same checks; only where things are differs).

pub use baremetal::board::{NS_RAM, NS_UART};

const SBSA: bool = cfg!(feature = "sbsa");

/// The first address past the normal world's RAM: QEMU `-m 2G` (the SPMC
/// manifest's ns-memory node).
pub const RAM_END: u64 = NS_RAM + 0x8000_0000;
/// A page of the secure pool (tf-a-integration/<board>/spmc_manifest.dts).
pub const SECURE_POOL: u64 = if SBSA { 0x2050_0000 } else { 0x0e50_0000 };
/// sp1's device region (its manifest's `device-regions`), a secure PL0x1
/// PrimeCell: virt's secure PL061 GPIO, sbsa-ref's secure PL011 for the
/// standalone MM partition (unused here). Both answer the same PrimeCell ID.
pub const SP1_DEVICE: u64 = if SBSA { 0x6004_0000 } else { 0x090b_0000 };
/// How many instance IDs the SPMC manifest gives the `vtee` template
/// (`instance-ids`): virt's 16 MiB of secure memory holds 64 TEEs; sbsa-ref's
/// 490 MiB pool is given more IDs than its memory holds, so that memory is
/// what ends the `capacity` check there.
pub const VTEE_INSTANCES: u64 = if SBSA { 8192 } else { 64 };
/// At least this many must live at once: virt's 16 MiB hold at least 32
/// (the `vtee` stage's figure); sbsa-ref's pool holds thousands, more than
/// 8-bit VMIDs number (255: the SPMC uses 16-bit VMIDs where the CPU has
/// them, FEAT_VMID16).
pub const MIN_LIVE_TEES: u64 = if SBSA { 1000 } else { 32 };
