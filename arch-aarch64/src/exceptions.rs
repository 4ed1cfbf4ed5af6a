//! The EL2 exception vector table.
//!
//! An exception taken from EL2 itself is an SPMC bug: the handler logs the
//! syndrome and stops the core (never silently). Exceptions from a lower EL
//! are the partitions' calls and faults: the vCPU module routes them.

use core::arch::global_asm;
use core::fmt;

/// Which vector an exception came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Kind {
    /// Current EL with SP_EL0 (never used by the SPMC).
    CurrentSp0 = 0,
    /// Current EL, synchronous.
    CurrentSync = 1,
    /// Current EL, IRQ.
    CurrentIrq = 2,
    /// Current EL, FIQ.
    CurrentFiq = 3,
    /// Current EL, SError.
    CurrentSError = 4,
    /// Lower EL in AArch32 (never allowed).
    LowerAArch32 = 5,
    /// Lower EL, anything not routed to a vCPU exit (unused: every lower-EL
    /// AArch64 exception is a vCPU exit, see `vcpu.rs`).
    LowerUnexpected = 6,
}

/// Registers saved on an EL2 exception, as the vector code lays them out.
#[repr(C)]
pub struct Frame {
    /// x0-x30.
    pub x: [u64; 31],
    /// ESR_EL2.
    pub esr: u64,
    /// ELR_EL2.
    pub elr: u64,
    /// FAR_EL2.
    pub far: u64,
    /// SPSR_EL2.
    pub spsr: u64,
    _pad: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<Frame>();
const _: () = assert!(FRAME_SIZE == 36 * 8);
const _: () = assert!(FRAME_SIZE.is_multiple_of(16));
const _: () = assert!(core::mem::offset_of!(Frame, esr) == 31 * 8);

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ESR_EL2={:#x} ELR_EL2={:#x} FAR_EL2={:#x} SPSR_EL2={:#x} x0={:#x} x1={:#x} lr={:#x}",
            self.esr, self.elr, self.far, self.spsr, self.x[0], self.x[1], self.x[30]
        )
    }
}

global_asm!(
    r#"
.macro to_common kind
    sub sp, sp, #{frame}
    stp x0, x1, [sp, #0]
    mov x0, #\kind
    b spmc_exception_common
.endm

.macro ventry kind
.balign 0x80
    to_common \kind
.endm

.section .text.vectors, "ax"
.balign 0x800
.global spmc_vectors
spmc_vectors:
    ventry 0
    ventry 0
    ventry 0
    ventry 0
    ventry 1
    ventry 2
    ventry 3
    ventry 4
.balign 0x80
    b spmc_lower_sync
.balign 0x80
    b spmc_lower_irq
.balign 0x80
    b spmc_lower_fiq
.balign 0x80
    b spmc_lower_serror
    ventry 5
    ventry 5
    ventry 5
    ventry 5

spmc_exception_common:
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    mrs x1, esr_el2
    stp x30, x1, [sp, #240]
    mrs x1, elr_el2
    mrs x2, far_el2
    stp x1, x2, [sp, #256]
    mrs x1, spsr_el2
    str x1, [sp, #272]
    mov x1, sp
    bl {handler}
1:  wfe
    b 1b
"#,
    frame = const FRAME_SIZE,
    handler = sym exception_handler,
);

/// Called by the vector code for every exception that is not a vCPU exit.
extern "C" fn exception_handler(kind: u64, frame: &Frame) -> ! {
    let kind = match kind {
        1 => Kind::CurrentSync,
        2 => Kind::CurrentIrq,
        3 => Kind::CurrentFiq,
        4 => Kind::CurrentSError,
        5 => Kind::LowerAArch32,
        6 => Kind::LowerUnexpected,
        _ => Kind::CurrentSp0,
    };
    crate::console::emergency_line(format_args!("SPMC fatal exception {kind:?}: {frame:?}"));
    crate::cpu::halt()
}
