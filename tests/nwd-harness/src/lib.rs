//! The normal-world test harness (BL33 at NS-EL2 on QEMU): FF-A checks
//! against the SPMC through the SPMD (`nwd-harness`: the `e2e` checks, then
//! the memory-sharing checks of [`mem`]), the benchmarks (`nwd-bench`)
//! and the hostile normal world (`nwd-hostile`, the `hostile` stage, see
//! [`hostile`]). All three images are built from this library.

#![no_std]

pub mod board;
pub mod capacity;
pub mod checks;
pub mod ffa;
pub mod hostile;
pub mod irq;
pub mod legacy;
pub mod mem;
pub mod multicore;
pub mod notify;
pub mod nsirq;
pub mod partitions;
pub mod report;
pub mod sri;

pub use baremetal::{ensure, ensure_eq, say};

use baremetal::{Block, BootTable};

/// The harness's boot map (NS-EL2): devices in the first GiB (the UART), then
/// normal-world RAM, where the harness and its RX/TX buffers live.
#[cfg(not(feature = "sbsa"))]
#[unsafe(no_mangle)]
static BAREMETAL_L1: BootTable = BootTable::new(
    &[Block::Device, Block::Memory, Block::Memory, Block::Memory],
    true,
);
/// sbsa-ref: devices in the second GiB (the UART at 0x6000_0000); the RAM at
/// 1 TiB is the runtime's own table (`baremetal`, feature `sbsa`).
#[cfg(feature = "sbsa")]
#[unsafe(no_mangle)]
static BAREMETAL_L1: BootTable = BootTable::new(&[Block::None, Block::Device], true);
