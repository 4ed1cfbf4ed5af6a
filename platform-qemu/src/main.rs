//! The SPMC for QEMU virt (`-M virt,secure=on,virtualization=on`) or, with
//! feature `sbsa`, QEMU sbsa-ref, loaded by TF-A as BL32 and entered at
//! Secure EL2.
//!
//! This crate only knows the board: where the console, the manifest and the
//! secure memory are (`layout`). The work is done by `spmc` (the core) and
//! `arch-aarch64` (registers).

#![no_std]
#![no_main]
#![cfg_attr(spmc_hot, feature(optimize_attribute))]

extern crate alloc;

mod board;
mod gic;
mod layout;
mod platform;
mod sri;

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use arch_aarch64::{console, cpu};

/// Per core: set once that core entered the panic handler.
static PANICKING: [AtomicBool; arch_aarch64::MAX_CPUS] =
    [const { AtomicBool::new(false) }; arch_aarch64::MAX_CPUS];

/// A panic, or a fatal exception at EL2 (the vector code panics for it): the
/// SPMC stops for good, but every core keeps answering the normal world with
/// FFA_ERROR(ABORTED) (`platform::fail_boot_if_booting`). A second fault on
/// the same core while it does that (a broken stack, say) halts that core:
/// there is nothing left it could do safely.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let core = cpu::core_index();
    if PANICKING[core % arch_aarch64::MAX_CPUS].swap(true, Ordering::AcqRel) {
        cpu::halt()
    }
    console::emergency_line(format_args!("SPMC panic on core {core}: {info}"));
    platform::fail_boot_if_booting()
}

/// Primary cold boot: called by the entry code with x0 = manifest address,
/// x2 = the virtual count at its first instruction.
#[unsafe(no_mangle)]
extern "C" fn spmc_primary_main(manifest: u64, core: usize, entry_count: u64) -> ! {
    platform::primary(manifest, core, entry_count)
}

/// A secondary core the normal world turned on.
#[unsafe(no_mangle)]
extern "C" fn spmc_secondary_main(core: usize) -> ! {
    platform::secondary(core)
}
