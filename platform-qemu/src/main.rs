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

use arch_aarch64::{cpu, exceptions};

/// A panic in a dev image: the SPMC stops for good, but every core keeps
/// answering the normal world with FFA_ERROR(ABORTED)
/// (`platform::fail_boot_if_booting`, set as `exceptions::on_fatal` at boot).
/// A fatal exception at EL2 goes the same way, and so does a release image's
/// panic: built with `-Cpanic=immediate-abort`, it is a trap at the panic
/// site that `exceptions` reports with its address, and this handler is
/// never called.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    exceptions::fatal(format_args!(
        "SPMC panic on core {}: {info}",
        cpu::core_index()
    ))
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
