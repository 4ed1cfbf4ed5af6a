//! The AArch64 EL2 layer: everything that touches a register.
//!
//! This crate holds all the `unsafe` code and assembly of the SPMC: the entry
//! points BL31 jumps to, the exception vectors, the stage-1 MMU set-up, the SMC
//! conduit to the SPMD, the console and the heap. The same layer serves the
//! SPMC at Secure EL2 and the manager at non-secure EL2; nothing here assumes
//! the security state except [`sysreg::read_vstcr_el2`], which only a
//! platform that knows it runs at S-EL2 calls.
//!
//! What it assumes of the platform crate that links it:
//! - a linker script that defines `__text_start`, `__text_end`,
//!   `__rodata_start`, `__rodata_end`, `__data_start`, `__bss_start`,
//!   `__bss_end` and `__image_end`, places `.text.entry` first and keeps the
//!   `.stacks` section NOLOAD; and, for the entry code that moves `.rodata`
//!   and `.data` from where the file packs them to their pages,
//!   `__rodata_load`, `__rodata_used_end`, `__data_load`, `__data_end` and
//!   `__image_file_end` (platform-qemu's `spmc-sections.ld`);
//! - `extern "C" fn spmc_primary_main(arg0: u64, core: usize, entry_count: u64) -> !`
//!   (`entry_count`: CNTVCT_EL0 read at the entry's first instruction;
//!   a board may leave it out) and
//!   `extern "C" fn spmc_secondary_main(core: usize) -> !`, called by the
//!   entry code with a valid stack, the vectors installed and `.bss` zeroed.

#![no_std]
#![cfg_attr(spmc_hot, feature(optimize_attribute))]

extern crate alloc;

pub mod cache;
pub mod console;
pub mod cpu;
pub mod entry;
pub mod exceptions;
pub mod gic;
pub mod gich;
pub mod guarded;
pub mod heap;
pub mod mmu;
pub mod smc;
pub mod sri;
pub mod stage2;
pub mod sysreg;
pub mod vcpu;

/// Most cores the platform layer supports (TF-A's QEMU port has at most 8).
pub const MAX_CPUS: usize = 8;
/// Stack bytes per core.
pub const STACK_SIZE: usize = 32 * 1024;
