//! Entry points from BL31: the primary cold boot and the secondary (CPU_ON) entry.
//!
//! BL31 enters the primary entry at EL2 with the MMU off, x0 = the SPMC
//! manifest address and the other registers zero. The assembly turns the MMU
//! on before any Rust code runs, with a boot map that the board's linker
//! script describes: in the first GiB, 2 MiB blocks of devices from
//! `__boot_device_start` and of secure memory (read-write-execute) from
//! `__boot_normal_start` to `__boot_normal_end`; if `__boot_device_gib` is
//! not 0, that GiB as one device block (QEMU virt: devices
//! 0x0800_0000-0x0e00_0000, secure memory 0x0e00_0000-0x1000_0000; sbsa-ref:
//! secure memory 0x2000_0000-0x4000_0000, devices in GiB 1). Rust then
//! replaces it with the final W^X map (`mmu::enable`).
//! The secondary entry is registered with FFA_SECONDARY_EP_REGISTER and used
//! when the normal world turns a core on: it goes straight to the final map.

use core::arch::global_asm;

use crate::{MAX_CPUS, STACK_SIZE};

/// One stack per core, in a NOLOAD section so it costs nothing in the image.
#[repr(C, align(4096))]
struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);

#[unsafe(link_section = ".stacks")]
#[used]
static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

/// One translation table page.
#[repr(C, align(4096))]
struct Table([u64; 512]);

/// The boot map: a level-1 table whose first entry points at a level-2 table
/// of 2 MiB blocks (with feature `va48`, under a level-0 table). Filled in
/// by the entry code after `.bss` is zeroed.
static mut BOOT_L0: Table = Table([0; 512]);
static mut BOOT_L1: Table = Table([0; 512]);
static mut BOOT_L2: Table = Table([0; 512]);

// Block descriptors of the boot map (EL2 stage 1, non-VHE): valid block, AF,
// AP[1] (RES1 at EL2); normal memory is attribute 1, inner shareable,
// executable; device memory is attribute 0, execute-never.
const BOOT_NORMAL: u64 = 0x1 | (1 << 2) | (1 << 6) | (3 << 8) | (1 << 10);
const BOOT_DEVICE: u64 = 0x1 | (1 << 6) | (1 << 10) | (1 << 54);

// The core's linear index is Aff1 * 4 + Aff0, as TF-A's QEMU port numbers
// cores (plat_qemu_calc_core_pos). A core past MAX_CPUS parks in WFE: it has
// no stack to run on.
global_asm!(
    r#"
.macro core_index reg, tmp
    mrs \reg, mpidr_el1
    ubfx \tmp, \reg, #8, #8
    and \reg, \reg, #0xff
    add \reg, \reg, \tmp, lsl #2
.endm

/* Zero [start, end), both 16-byte aligned. */
.macro zero16 start, end
1:  cmp \start, \end
    b.hs 2f
    stp xzr, xzr, [\start], #16
    b 1b
2:
.endm

/* Copy [src, src_end) to the bytes below dst_end, from the ends down (the
 * destination is at or above the source); all three 16-byte aligned. */
.macro move_down_from_end src, src_end, dst_end, t0, t1
1:  cmp \src_end, \src
    b.ls 2f
    ldp \t0, \t1, [\src_end, #-16]!
    stp \t0, \t1, [\dst_end, #-16]!
    b 1b
2:
.endm

.macro set_stack core, tmp, tmp2
    adrp \tmp, {stacks}
    add \tmp, \tmp, :lo12:{stacks}
    add \tmp2, \core, #1
    mov x17, #{stack_size}
    madd \tmp, \tmp2, x17, \tmp
    mov sp, \tmp
.endm

.section .text.entry, "ax"
.global spmc_entry
spmc_entry:
    /* The virtual count at entry, for the boot-time figure (x2 of
     * spmc_primary_main; `optee_boot`, docs/benchmarks.md). */
    isb
    mrs x21, cntvct_el0
    mov x19, x0
    core_index x20, x1
    cmp x20, #{max_cpus}
    b.hs 9f
    set_stack x20, x1, x2

    /* The file packs .rodata right after the code and .data right after
     * .rodata (the linker script's load addresses); move each to its pages,
     * .data first and both from their ends: each moves up, onto bytes that
     * are read after they are written. Then zero what they leave in the
     * code's last page and the rest of .rodata's last page. Every bound is
     * 16-byte aligned, and 16-byte aligned accesses are fine with the MMU off. */
    ldr x1, =__data_load
    ldr x2, =__image_file_end
    ldr x3, =__data_end
    move_down_from_end x1, x2, x3, x4, x5
    ldr x1, =__rodata_load
    ldr x2, =__data_load
    ldr x3, =__rodata_used_end
    move_down_from_end x1, x2, x3, x4, x5
    ldr x1, =__rodata_load
    ldr x2, =__text_end
    zero16 x1, x2
    ldr x1, =__rodata_used_end
    ldr x2, =__rodata_end
    zero16 x1, x2

    /* Zero .bss; the linker script aligns both ends to 16 bytes. */
    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
    zero16 x1, x2
    /* Boot map (the linker script's symbols): L2 blocks from
     * __boot_device_start device, from __boot_normal_start normal, up to
     * __boot_normal_end; L1 entry __boot_device_gib (unless 0) a 1 GiB
     * device block. */
    adrp x3, {l2}
    add x3, x3, :lo12:{l2}
    ldr x4, =__boot_device_start
    lsr x4, x4, #21
    ldr x8, =__boot_normal_start
    lsr x8, x8, #21
    ldr x9, =__boot_normal_end
    lsr x9, x9, #21
    mov x6, #{device_lo}
    movk x6, #{device_hi}, lsl #48
    mov x7, #{normal}
3:  lsl x5, x4, #21
    cmp x4, x8
    csel x10, x6, x7, lo
    orr x5, x5, x10
    str x5, [x3, x4, lsl #3]
    add x4, x4, #1
    cmp x4, x9
    b.lo 3b
    adrp x2, {l1}
    add x2, x2, :lo12:{l1}
    orr x4, x3, #3
    str x4, [x2]
    ldr x4, =__boot_device_gib
    cbz x4, 4f
    lsl x5, x4, #30
    orr x5, x5, x6
    str x5, [x2, x4, lsl #3]
4:
.if {va48}
    adrp x3, {l0}
    add x3, x3, :lo12:{l0}
    orr x4, x2, #3
    str x4, [x3]
    mov x2, x3
.endif
    dsb sy
    bl spmc_mmu_on

    adrp x1, spmc_vectors
    add x1, x1, :lo12:spmc_vectors
    msr vbar_el2, x1
    isb
    mov x0, x19
    mov x1, x20
    mov x2, x21
    bl spmc_primary_main
9:  wfe
    b 9b

.global spmc_secondary_entry
spmc_secondary_entry:
    core_index x20, x1
    cmp x20, #{max_cpus}
    b.hs 9b
    set_stack x20, x1, x2
    /* The final map the primary built (published before any CPU_ON). */
    adrp x2, {final_root}
    ldr x2, [x2, :lo12:{final_root}]
    bl spmc_mmu_on
    mov x1, #{sctlr_final_lo}
    movk x1, #{sctlr_final_hi}, lsl #16
    msr sctlr_el2, x1
    isb
    adrp x1, spmc_vectors
    add x1, x1, :lo12:spmc_vectors
    msr vbar_el2, x1
    isb
    mov x0, x20
    bl spmc_secondary_main
    b 9b
"#,
    stacks = sym STACKS,
    stack_size = const STACK_SIZE,
    max_cpus = const MAX_CPUS,
    l0 = sym BOOT_L0,
    l1 = sym BOOT_L1,
    va48 = const cfg!(feature = "va48") as u32,
    l2 = sym BOOT_L2,
    device_lo = const BOOT_DEVICE & 0xFFFF,
    device_hi = const BOOT_DEVICE >> 48,
    normal = const BOOT_NORMAL,
    final_root = sym crate::mmu::FINAL_ROOT,
    sctlr_final_lo = const crate::mmu::SCTLR & 0xFFFF,
    sctlr_final_hi = const crate::mmu::SCTLR >> 16,
);

// void spmc_mmu_on(u64 ttbr0): MAIR, TCR and TTBR0 for EL2, then the MMU and
// caches on (without WXN: the boot map is read-write-execute).
global_asm!(
    r#"
.section .text.entry, "ax"
spmc_mmu_on:
    mov x1, #{mair}
    msr mair_el2, x1
    ldr x1, ={tcr}
    msr tcr_el2, x1
    msr ttbr0_el2, x2
    isb
    tlbi alle2
    dsb nsh
    isb
    ldr x1, ={sctlr_boot}
    msr sctlr_el2, x1
    isb
    ret
"#,
    mair = const crate::mmu::MAIR,
    tcr = const crate::mmu::TCR,
    sctlr_boot = const crate::mmu::SCTLR_BOOT,
);

unsafe extern "C" {
    /// The secondary entry point, to register with the SPMD.
    fn spmc_secondary_entry();
}

/// The physical address of the secondary-core entry point (the image is identity mapped).
pub fn secondary_entry_address() -> u64 {
    spmc_secondary_entry as *const () as usize as u64
}
