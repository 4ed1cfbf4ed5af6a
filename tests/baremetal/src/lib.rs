//! A tiny runtime for the test images: the entry code, a PL011 console, the
//! SMC and HVC conduits and PSCI power-off.
//!
//! The images run with their MMU off, so every access is a Device access:
//! they are built with `strict-align` and use no atomics.
//!
//! An image provides `extern "C" fn baremetal_main(x0: u64, x1: u64, x2: u64, x3: u64) -> !`
//! and links with `image.ld` plus a `memory.ld` that defines the `image` region
//! (or with a linker script of its own that defines the same symbols).
//! The entry code touches only x9 and x10 before it calls `baremetal_main`, so
//! x0-x7 arrive as the image was entered with: an image that needs x4 (a
//! partition's vCPU index) declares a fifth argument.

#![no_std]

use core::arch::global_asm;
use core::fmt::{self, Write};

global_asm!(
    r#"
.section .text.entry, "ax"
.global _start
_start:
    adrp x9, __stack_top
    add x9, x9, :lo12:__stack_top
    mov sp, x9
    adrp x9, __bss_start
    add x9, x9, :lo12:__bss_start
    adrp x10, __bss_end
    add x10, x10, :lo12:__bss_end
1:  cmp x9, x10
    b.hs 2f
    stp xzr, xzr, [x9], #16
    b 1b
2:  bl baremetal_main
3:  wfe
    b 3b
"#
);

/// A PL011 transmitter at a fixed address.
#[derive(Debug)]
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// The UART at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the address of a PL011 that this image may write.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    fn putc(&mut self, c: u8) {
        let dr = self.base as *mut u32;
        let fr = (self.base + 0x18) as *const u32;
        // FR bit 5 is TXFF: wait while the transmit FIFO is full.
        // SAFETY: the constructor's caller vouched for the register block.
        while unsafe { core::ptr::read_volatile(fr) } & (1 << 5) != 0 {}
        // SAFETY: as above; DR takes one character.
        unsafe { core::ptr::write_volatile(dr, c as u32) };
    }
}

impl Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.putc(b'\r');
            }
            self.putc(b);
        }
        Ok(())
    }
}

/// An SMCCC v1.2 call with x0-x17 in and out, through SMC.
#[inline]
pub fn smc(r: &mut [u64; 18]) {
    // SAFETY: the call reads and writes only x0-x17 (SMCCC v1.2); the callee
    // preserves the other registers and does not write our memory.
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
            inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
            inout("x8") r[8], inout("x9") r[9], inout("x10") r[10], inout("x11") r[11],
            inout("x12") r[12], inout("x13") r[13], inout("x14") r[14], inout("x15") r[15],
            inout("x16") r[16], inout("x17") r[17],
            options(nostack),
        );
    }
}

/// An SMCCC v1.2 call with x0-x17 in and out, through HVC.
#[inline]
pub fn hvc(r: &mut [u64; 18]) {
    // SAFETY: as for `smc`.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
            inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
            inout("x8") r[8], inout("x9") r[9], inout("x10") r[10], inout("x11") r[11],
            inout("x12") r[12], inout("x13") r[13], inout("x14") r[14], inout("x15") r[15],
            inout("x16") r[16], inout("x17") r[17],
            options(nostack),
        );
    }
}

/// Reads CNTVCT_EL0 (on QEMU 10 with `-icount shift=0`, one tick per instruction).
#[inline]
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading the virtual counter has no side effect; ISB orders it
    // after the instructions before it.
    unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// The exception level the image runs at.
pub fn current_el() -> u64 {
    let v: u64;
    // SAFETY: reading CurrentEL has no side effect.
    unsafe { core::arch::asm!("mrs {}, CurrentEL", out(reg) v, options(nomem, nostack)) };
    (v >> 2) & 3
}

/// PSCI SYSTEM_OFF through SMC: QEMU exits.
pub fn system_off() -> ! {
    let mut r = [0u64; 18];
    r[0] = 0x8400_0008;
    smc(&mut r);
    loop {
        // SAFETY: WFE only waits.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
}
