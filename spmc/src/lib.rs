//! Portable core of the SPMC.
//!
//! Everything here is plain data and logic: it never touches a register, never
//! uses `unsafe`, and runs on the host under `cargo test`. The arch layer
//! (`arch-aarch64`) moves registers in and out; the platform crates supply
//! memory access and TLB maintenance through [`platform::Platform`]. What this
//! crate may assume:
//!
//! - each call reaches it as a [`ffa::Regs`] block (x0-x17) or as a vCPU exit
//!   recorded in the vCPU's [`vcpu::Context`], and it answers in place;
//! - a vCPU it hands out to run ([`manager::Next::Run`]) is not touched by
//!   anyone else until the platform reports its exit;
//! - the manifest bytes it is given are the whole manifest window, which it
//!   checks itself (magic, size, structure) before trusting anything in it.
//!
//! The FF-A specification (DEN0077 v1.2) is the reference for every ABI;
//! each handler cites its section.

#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(spmc_hot, feature(optimize_attribute))]

extern crate alloc;
// loom's lock and atomic models (`sync`) are std's.
#[cfg(loom)]
extern crate std;

pub mod abi;
pub mod addr;
pub mod contexts;
pub mod fatal;
pub mod features;
pub mod ffa;
pub mod gicv2;
pub mod ids;
pub mod interrupts;
pub mod manager;
pub mod manifest;
pub mod mem;
pub mod memmap;
pub mod messaging;
pub mod multicore;
pub mod notifications;
pub mod ns_interrupts;
pub mod partition;
pub mod platform;
pub mod policy;
pub mod pool;
pub mod sp_manifest;
pub mod stage2;
pub mod sync;
pub mod text;
pub mod vcpu;
pub mod vtee;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use manager::{LazyState, Next, Spmc};
