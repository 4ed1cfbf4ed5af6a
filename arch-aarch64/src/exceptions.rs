//! The EL2 exception vector table.
//!
//! An exception taken from EL2 itself is an SPMC bug, with one exception: an
//! external abort inside a guarded copy of normal-world memory
//! ([`crate::guarded`]) resumes that copy's error path. Any other one is
//! reported with the syndrome and goes to [`fatal`], which stops the SPMC for
//! good while every core still answers its callers (never silently, never a
//! halt that leaves a caller waiting). A release image's panics come here
//! too: it is built with `-Cpanic=immediate-abort`, so a panic is a `BRK #1`
//! at the panic site, reported with its address. Exceptions from a lower EL are the
//! partitions' calls, interrupts and faults: the vCPU module routes them, from
//! AArch64 and AArch32 alike.
//!
//! Which lower-EL vector is used depends on the state of EL1, not of the
//! level that took the exception (Arm ARM D1.3.1, "Exception vectors"): with
//! HCR_EL2.RW set (EL1 is AArch64, see `stage2.rs`) an exception from AArch32
//! EL0 comes through the AArch64 entries. The AArch32 entries are therefore
//! unreachable while RW is set; they still lead to the vCPU exit, so if EL1
//! ever ran AArch32 its exceptions would be that partition's (a fault aborts
//! it, an interrupt preempts it), never the core's.

use core::arch::global_asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cpu;

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
.balign 0x80
    b spmc_lower_sync
.balign 0x80
    b spmc_lower_irq
.balign 0x80
    b spmc_lower_fiq
.balign 0x80
    b spmc_lower_serror

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
    // The handler returns only for an abort it fixed up: resume at the
    // (possibly moved) ELR with every register as it was.
    ldp x1, x2, [sp, #256]
    msr elr_el2, x1
    ldr x1, [sp, #272]
    msr spsr_el2, x1
    ldp x0, x1, [sp, #0]
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    ldr x30, [sp, #240]
    add sp, sp, #{frame}
    eret
"#,
    frame = const FRAME_SIZE,
    handler = sym exception_handler,
);

/// ESR_EL2 exception class of a data abort taken without a change of EL.
const EC_DABT_CURRENT: u64 = 0x25;

/// ESR_EL2 exception class of a `BRK` instruction in AArch64 state: what a
/// panic is in an image built with `-Cpanic=immediate-abort` (`BRK #1`).
const EC_BRK64: u64 = 0x3c;

/// Per core: set once that core entered [`fatal`].
static FATAL_ON: [AtomicBool; crate::MAX_CPUS] =
    [const { AtomicBool::new(false) }; crate::MAX_CPUS];

/// What the platform does after a fatal error has been reported.
static AFTER_FATAL: spin::Once<fn() -> !> = spin::Once::new();

/// Sets what [`fatal`] does after its report (once, at boot): the SPMC
/// answers every caller with an error from then on. Without it, the core halts.
pub fn on_fatal(f: fn() -> !) {
    AFTER_FATAL.call_once(|| f);
}

/// A fatal error on this core (a panic, an exception at EL2): one `FATAL`
/// line on the console, then what [`on_fatal`] set. A second fatal error on
/// the same core while it does that (a broken stack, say) halts the core:
/// there is nothing left it could do safely.
pub fn fatal(what: fmt::Arguments<'_>) -> ! {
    let core = cpu::core_index();
    if FATAL_ON[core % crate::MAX_CPUS].swap(true, Ordering::AcqRel) {
        cpu::halt()
    }
    crate::console::emergency_line(what);
    match AFTER_FATAL.get() {
        Some(f) => f(),
        None => cpu::halt(),
    }
}

/// Called by the vector code for every exception that is not a vCPU exit.
///
/// Returns only after fixing up an abort in a guarded copy (the vector code
/// then resumes at `frame.elr`); anything else is fatal and never returns.
extern "C" fn exception_handler(kind: u64, frame: &mut Frame) {
    let kind = match kind {
        1 => Kind::CurrentSync,
        2 => Kind::CurrentIrq,
        3 => Kind::CurrentFiq,
        4 => Kind::CurrentSError,
        _ => Kind::CurrentSp0,
    };
    if kind == Kind::CurrentSync
        && (frame.esr >> 26) & 0x3f == EC_DABT_CURRENT
        && let Some(resume) = crate::guarded::fixup(frame.elr)
    {
        frame.elr = resume;
        return;
    }
    let core = cpu::core_index();
    if kind == Kind::CurrentSync && (frame.esr >> 26) & 0x3f == EC_BRK64 {
        // A release image's panic: the site's address is all there is
        // (`aarch64-linux-gnu-addr2line -e spmc-qemu <address>`, or a dev
        // build for the message).
        fatal(format_args!(
            "SPMC panic on core {core} at {:#x} (release image: no message)",
            frame.elr
        ))
    }
    fatal(format_args!(
        "SPMC fatal exception on core {core}, {kind:?}: {frame:?}"
    ))
}
