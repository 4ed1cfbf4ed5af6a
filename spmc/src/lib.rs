//! Portable core of the SPMC.
//!
//! Everything here is plain data and logic: it never touches a register, never
//! uses `unsafe`, and runs on the host under `cargo test`. The arch layer
//! (`arch-aarch64`) moves registers in and out; the platform crates supply
//! addresses. What this crate may assume:
//!
//! - each call reaches it as a [`ffa::Regs`] block (x0-x17) together with who
//!   made it, and it answers in place;
//! - the manifest bytes it is given are the whole manifest window, which it
//!   checks itself (magic, size, structure) before trusting anything in it.
//!
//! The FF-A specification (DEN0077 v1.2) is the reference for every ABI;
//! each handler cites its section.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod features;
pub mod ffa;
pub mod manager;
pub mod manifest;

pub use manager::Spmc;
