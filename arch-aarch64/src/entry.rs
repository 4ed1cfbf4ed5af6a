//! Entry points from BL31: the primary cold boot and the secondary (CPU_ON) entry.
//!
//! BL31 enters the primary entry at EL2 with the MMU off, x0 = the SPMC
//! manifest address and the other registers zero. Every data access is then a
//! Device access, so the code up to the MMU switch is built with `strict-align`.
//! The secondary entry is registered with FFA_SECONDARY_EP_REGISTER and used
//! when the normal world turns a core on.

use core::arch::global_asm;

use crate::{MAX_CPUS, STACK_SIZE};

/// One stack per core, in a NOLOAD section so it costs nothing in the image.
#[repr(C, align(4096))]
struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);

#[unsafe(link_section = ".stacks")]
#[used]
static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

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
    mov x19, x0
    core_index x20, x1
    cmp x20, #{max_cpus}
    b.hs 9f
    set_stack x20, x1, x2

    /* Zero .bss; the linker script aligns both ends to 16 bytes. */
    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
1:  cmp x1, x2
    b.hs 2f
    stp xzr, xzr, [x1], #16
    b 1b
2:
    adrp x1, spmc_vectors
    add x1, x1, :lo12:spmc_vectors
    msr vbar_el2, x1
    isb
    mov x0, x19
    mov x1, x20
    bl spmc_primary_main
9:  wfe
    b 9b

.global spmc_secondary_entry
spmc_secondary_entry:
    core_index x20, x1
    cmp x20, #{max_cpus}
    b.hs 9b
    set_stack x20, x1, x2
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
);

unsafe extern "C" {
    /// The secondary entry point, to register with the SPMD.
    fn spmc_secondary_entry();
}

/// The physical address of the secondary-core entry point (the image is identity mapped).
pub fn secondary_entry_address() -> u64 {
    spmc_secondary_entry as *const () as usize as u64
}
