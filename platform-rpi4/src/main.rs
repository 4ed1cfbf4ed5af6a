//! The SPMC core at non-secure EL2 on the Raspberry Pi 4: TF-A's `rpi4`
//! platform (BL31 from the armstub) enters this image as BL33 at 0x80000.
//! The Cortex-A72 has no Secure EL2 and the board no secure memory: the
//! core keeps users apart with stage 2 alone (docs/rpi4.md).
//!
//! Like `platform-qemu`, this crate only knows the board (`layout`); the
//! work is done by `spmc` (the core) and `arch-aarch64` (registers).

#![no_std]
#![no_main]

extern crate alloc;

/// The board code is QEMU's (memory access, normal-world mappings, stage-2
/// maintenance): one file, read with this image's `layout::BOARD`.
#[path = "../../platform-qemu/src/board.rs"]
mod board;
mod checks;
mod gic;
mod guests;
mod layout;
mod platform;
mod psci;
mod share;
mod share_checks;
mod smp;
mod users;
mod vgic;

use core::panic::PanicInfo;

use arch_aarch64::{console, cpu};

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    console::emergency_line(format_args!(
        "rpi4 panic on core {}: {info}",
        cpu::core_index()
    ));
    cpu::halt()
}

/// Primary cold boot: BL31 enters with x0 = the DTB address (0 when no GPU
/// firmware gave one, as under QEMU).
#[unsafe(no_mangle)]
extern "C" fn spmc_primary_main(dtb: u64, core: usize) -> ! {
    platform::primary(dtb, core)
}

/// A secondary core, turned on by this image through TF-A's PSCI CPU_ON
/// at `arch_aarch64::entry`'s secondary entry (`smp.rs`).
#[unsafe(no_mangle)]
extern "C" fn spmc_secondary_main(core: usize) -> ! {
    smp::secondary(core)
}
