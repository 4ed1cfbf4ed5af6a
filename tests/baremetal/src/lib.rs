//! A tiny runtime for the test images: the entry code, a PL011 console, the
//! SMC and HVC conduits and PSCI power-off (those two from the `smccc` crate).
//!
//! The entry code turns the MMU on (at EL1 or EL2, whichever the image is
//! entered at) with an identity map of 1 GiB blocks that the image provides as
//! `#[unsafe(no_mangle)] static BAREMETAL_L1: BootTable` (see [`BootTable`]),
//! before any Rust code runs, so no access is ever a Device access by accident.
//!
//! An image provides `extern "C" fn baremetal_main(x0: u64, x1: u64, x2: u64, x3: u64) -> !`
//! and links with `image.ld` plus a `memory.ld` that defines the `image` region
//! (or with a linker script of its own that defines the same symbols).
//! x0-x7 arrive as the image was entered with: an image that needs x4 (a
//! partition's vCPU index) declares a fifth argument.

#![no_std]

pub mod report;

use core::arch::global_asm;
use core::fmt::{self, Write};

/// A level-1 identity map of 1 GiB blocks (39-bit VA space): entry `i` maps
/// `[i GiB, i+1 GiB)`. Built at compile time with [`BootTable::block`].
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct BootTable(pub [u64; 512]);

/// What a 1 GiB block of the boot map holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// Nothing: accesses fault.
    None,
    /// Device-nGnRE, never executable.
    Device,
    /// Normal write-back memory, read-write-execute.
    Memory,
    /// Normal write-back memory in the non-secure physical space (the NS bit:
    /// how a secure partition reaches memory the normal world shares).
    NonSecureMemory,
}

impl BootTable {
    /// The descriptor of block `index` (a 1 GiB block) for `kind`. At EL2 the
    /// AP[1] bit is RES1; at EL1 it would give EL0 access, so it stays clear.
    pub const fn block(index: u64, kind: Block, el2: bool) -> u64 {
        let base = index << 30;
        let ap1 = if el2 { 1 << 6 } else { 0 };
        // Valid block, AF; attribute 0 = Device-nGnRE, 1 = Normal WB; inner shareable.
        match kind {
            Block::None => 0,
            Block::Device => base | 0x1 | ap1 | (1 << 10) | (1 << 54) | (1 << 53),
            Block::Memory => base | 0x1 | (1 << 2) | ap1 | (3 << 8) | (1 << 10),
            Block::NonSecureMemory => base | 0x1 | (1 << 2) | (1 << 5) | ap1 | (3 << 8) | (1 << 10),
        }
    }

    /// A table from the kinds of its first blocks; the rest are unmapped.
    pub const fn new(blocks: &[Block], el2: bool) -> Self {
        Self::new_from(0, blocks, el2)
    }

    /// A level-1 table of the 512 GiB whose first is GiB `first` (a multiple
    /// of 512), from the kinds of its first blocks; the rest are unmapped.
    pub const fn new_from(first: u64, blocks: &[Block], el2: bool) -> Self {
        let mut t = [0u64; 512];
        let mut i = 0;
        while i < blocks.len() {
            t[i] = Self::block(first + i as u64, blocks[i], el2);
            i += 1;
        }
        Self(t)
    }
}

/// A level-0 table (48-bit VA space, 512 GiB per entry) whose entries are
/// [`BootTable`]s, built at compile time: a table descriptor is the table's
/// address plus 3 (valid, table), which the linker writes.
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct TableOfTables([*const u8; 512]);

// SAFETY: the table is never written after the link; its entries are only
// read by the MMU's table walks, never dereferenced by code.
unsafe impl Sync for TableOfTables {}

impl TableOfTables {
    /// Entry `i` points at `tables[i]` (null: unmapped).
    pub const fn new(tables: &[*const BootTable]) -> Self {
        let mut t = [core::ptr::null::<u8>(); 512];
        let mut i = 0;
        while i < tables.len() {
            if !tables[i].is_null() {
                // Within the 4 KiB table: 3 is the descriptor's type bits.
                t[i] = tables[i].cast::<u8>().wrapping_add(3);
            }
            i += 1;
        }
        Self(t)
    }
}

/// The board's normal-world addresses the test images use (feature `sbsa`:
/// QEMU sbsa-ref; otherwise QEMU virt).
pub mod board {
    /// The normal world's PL011 (UART0).
    pub const NS_UART: usize = if cfg!(feature = "sbsa") {
        0x6000_0000
    } else {
        0x0900_0000
    };
    /// Where normal-world RAM starts.
    pub const NS_RAM: u64 = if cfg!(feature = "sbsa") {
        0x100_0000_0000
    } else {
        0x4000_0000
    };
}

/// sbsa-ref's normal-world RAM (at 1 TiB): four 1 GiB blocks of a level-1
/// table that level-0 entry 2 points at (feature `sbsa`, where the boot map
/// is a 48-bit one). In the non-secure physical space for a partition (the
/// memory the normal world shares with it); the NS bit is ignored in the
/// normal world. One table per EL (AP[1]).
#[cfg(feature = "sbsa")]
static HIGH_L1_EL1: BootTable = BootTable::high(false);
#[cfg(feature = "sbsa")]
static HIGH_L1_EL2: BootTable = BootTable::high(true);
#[cfg(feature = "sbsa")]
unsafe extern "C" {
    /// The image's own level-1 table (see the crate's documentation).
    static BAREMETAL_L1: BootTable;
}
/// The level-0 tables of the 48-bit boot map, one per EL: entry 0 is the
/// image's `BAREMETAL_L1`, entry 2 `HIGH_L1_EL*`. Built at link time and
/// read-only: no image memory holds them at run time (a partition's RAM
/// region stays as small as on virt).
#[cfg(feature = "sbsa")]
#[unsafe(link_section = ".rodata.baremetal_l0")]
static BOOT_L0_EL1: TableOfTables = TableOfTables::new(&[
    &raw const BAREMETAL_L1,
    core::ptr::null(),
    &raw const HIGH_L1_EL1,
]);
#[cfg(feature = "sbsa")]
#[unsafe(link_section = ".rodata.baremetal_l0")]
static BOOT_L0_EL2: TableOfTables = TableOfTables::new(&[
    &raw const BAREMETAL_L1,
    core::ptr::null(),
    &raw const HIGH_L1_EL2,
]);

#[cfg(feature = "sbsa")]
impl BootTable {
    /// A level-1 table for the 512 GiB from 1 TiB: the first four GiB normal
    /// memory (NS bit set).
    const fn high(el2: bool) -> Self {
        let mut t = [0u64; 512];
        let mut i = 0;
        while i < 4 {
            t[i] = Self::block(i as u64 + 1024, Block::NonSecureMemory, el2);
            i += 1;
        }
        Self(t)
    }
}

// MAIR: attribute 0 Device-nGnRE, 1 Normal write-back. TCR: T0SZ=25 (39-bit
// VA, level 1 root), write-back walks, inner shareable, 4 KiB granule, 40-bit
// PA; at EL1 EPD1 (no TTBR1 walks), at EL2 the RES1 bits 23 and 31. With
// feature `sbsa`: T0SZ=16 (48-bit VA, level 0 root), 48-bit PA.
const MAIR: u64 = 0xff04;
#[cfg(not(feature = "sbsa"))]
const T0SZ: u64 = 25;
#[cfg(feature = "sbsa")]
const T0SZ: u64 = 16;
#[cfg(not(feature = "sbsa"))]
const PS: u64 = 2;
#[cfg(feature = "sbsa")]
const PS: u64 = 5;
const TCR_EL1: u64 = T0SZ | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (PS << 32);
const TCR_EL2: u64 = T0SZ | (1 << 8) | (1 << 10) | (3 << 12) | (PS << 16) | (1 << 23) | (1 << 31);
// SCTLR: M, C, I, SA and the RES1 bits (EL1: 29, 28, 23, 22, 20, 11; EL2
// non-VHE: 29, 28, 23, 22, 18, 16, 11, 5, 4).
const SCTLR_EL1: u64 = 0x30d0_0800 | 1 | (1 << 2) | (1 << 3) | (1 << 12);
const SCTLR_EL2: u64 = 0x30c5_0830 | 1 | (1 << 2) | (1 << 3) | (1 << 12);

global_asm!(
    r#"
.section .text.entry, "ax"
.global _start
_start:
    mov x19, x0
    mov x20, x1
    mov x21, x2
    mov x22, x3
    mov x23, x4
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
2:  adrp x9, BAREMETAL_L1
    add x9, x9, :lo12:BAREMETAL_L1
    bl baremetal_boot_root
    ldr x10, ={mair}
    mrs x11, CurrentEL
    cmp x11, #(2 << 2)
    b.eq 4f
    msr mair_el1, x10
    ldr x10, ={tcr_el1}
    msr tcr_el1, x10
    msr ttbr0_el1, x9
    isb
    tlbi vmalle1
    dsb nsh
    isb
    ldr x10, ={sctlr_el1}
    msr sctlr_el1, x10
    isb
    b 5f
4:  msr mair_el2, x10
    ldr x10, ={tcr_el2}
    msr tcr_el2, x10
    msr ttbr0_el2, x9
    isb
    tlbi alle2
    dsb nsh
    isb
    ldr x10, ={sctlr_el2}
    msr sctlr_el2, x10
    isb
5:  mov x0, x19
    mov x1, x20
    mov x2, x21
    mov x3, x22
    mov x4, x23
    bl baremetal_main
3:  wfe
    b 3b
"#,
    mair = const MAIR,
    tcr_el1 = const TCR_EL1,
    tcr_el2 = const TCR_EL2,
    sctlr_el1 = const SCTLR_EL1,
    sctlr_el2 = const SCTLR_EL2,
);

// baremetal_boot_root: x9 = the image's level-1 table in, the root of the
// boot map out (the level-1 table itself with a 39-bit space). Uses x11.
#[cfg(not(feature = "sbsa"))]
global_asm!(
    r#"
.section .text.baremetal_boot_root, "ax"
baremetal_boot_root:
    ret
"#
);

// With the 48-bit space (sbsa): the level-0 table for this EL.
#[cfg(feature = "sbsa")]
global_asm!(
    r#"
.section .text.baremetal_boot_root, "ax"
baremetal_boot_root:
    adrp x9, {l0_el1}
    add x9, x9, :lo12:{l0_el1}
    mrs x11, CurrentEL
    cmp x11, #(2 << 2)
    b.ne 1f
    adrp x9, {l0_el2}
    add x9, x9, :lo12:{l0_el2}
1:  ret
"#,
    l0_el1 = sym BOOT_L0_EL1,
    l0_el2 = sym BOOT_L0_EL2,
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

/// An SMCCC v1.2 call with x0-x17 in and out, through SMC: the `smccc`
/// crate's conduit (x0 carries the function ID, 32 bits in SMCCC).
#[inline]
pub fn smc(r: &mut [u64; 18]) {
    *r = smccc::smc64(r[0] as u32, args(r));
}

/// x1-x17 of a register block, as `smccc` takes them.
#[inline(always)]
fn args(r: &[u64; 18]) -> [u64; 17] {
    let mut a = [0; 17];
    a.copy_from_slice(&r[1..]);
    a
}

/// Issues the call in `r` (x0-x7) with SMC, or with a NOP in place of the SMC:
/// the benchmarks time both and subtract the second. Not `smccc`'s conduit:
/// the NOP twin must have exactly the same register constraints.
#[inline(always)]
pub fn bench_call(r: &mut [u64; 8], real: bool) {
    if real {
        // SAFETY: SMCCC v1.2 call: x0-x7 in and out, x8-x17 may be written by
        // the callee and are declared clobbered.
        unsafe {
            core::arch::asm!(
                "smc #0",
                inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
                inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
                out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                options(nostack),
            );
        }
    } else {
        // SAFETY: a NOP with the same register constraints.
        unsafe {
            core::arch::asm!(
                "nop",
                inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
                inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
                out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                options(nostack),
            );
        }
    }
}

/// An SMCCC v1.2 call with x0-x17 in and out, through HVC (`smccc`'s conduit).
#[inline]
pub fn hvc(r: &mut [u64; 18]) {
    *r = smccc::hvc64(r[0] as u32, args(r));
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

/// PSCI SYSTEM_OFF through SMC (`smccc::psci`): QEMU exits.
pub fn system_off() -> ! {
    let _ = smccc::psci::system_off::<smccc::Smc>();
    loop {
        // SAFETY: WFE only waits.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
}
