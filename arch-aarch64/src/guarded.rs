//! Copies to and from memory that may not answer: normal-world memory the
//! SPMC touches on a caller's behalf.
//!
//! The SPMC only maps normal-world ranges that the manifest names as
//! normal-world RAM, but a manifest can overstate the machine's RAM (QEMU
//! started with less `-m` than the manifest says, say). An access to an address
//! no memory answers is a synchronous external abort at EL2. Taken in these
//! routines it is not fatal: the vector code sees that the faulting
//! instruction lies between `spmc_guarded_start` and `spmc_guarded_end`, moves
//! ELR_EL2 to `spmc_guarded_fault` and returns there, and the routine answers
//! "aborted" to its caller, which turns it into an FF-A error for the caller
//! of the FF-A call (see `exceptions.rs`).
//!
//! Anywhere else an abort at EL2 stays fatal (an SPMC bug).

use core::arch::global_asm;

global_asm!(
    r#"
.section .text.guarded, "ax"
.balign 8
.global spmc_guarded_start
spmc_guarded_start:

// u64 spmc_guarded_copy(u8 *dst, const u8 *src, u64 len): 0, or 1 if an access aborted.
// Leaf: touches x0-x4 only, never the stack.
.global spmc_guarded_copy
spmc_guarded_copy:
    cbz x2, 3f
    orr x3, x0, x1
    orr x3, x3, x2
    tst x3, #7
    b.ne 2f
1:  ldr x4, [x1], #8
    str x4, [x0], #8
    subs x2, x2, #8
    b.ne 1b
    b 3f
2:  ldrb w4, [x1], #1
    strb w4, [x0], #1
    subs x2, x2, #1
    b.ne 2b
3:  mov x0, #0
    ret

// u64 spmc_guarded_zero(u8 *dst, u64 len): 0, or 1 if an access aborted.
.global spmc_guarded_zero
spmc_guarded_zero:
    cbz x1, 3f
    orr x3, x0, x1
    tst x3, #7
    b.ne 2f
1:  str xzr, [x0], #8
    subs x1, x1, #8
    b.ne 1b
    b 3f
2:  strb wzr, [x0], #1
    subs x1, x1, #1
    b.ne 2b
3:  mov x0, #0
    ret

.global spmc_guarded_end
spmc_guarded_end:

// Where an abort inside the routines above resumes (x30 is still the caller's).
.global spmc_guarded_fault
spmc_guarded_fault:
    mov x0, #1
    ret
"#
);

unsafe extern "C" {
    fn spmc_guarded_copy(dst: *mut u8, src: *const u8, len: u64) -> u64;
    fn spmc_guarded_zero(dst: *mut u8, len: u64) -> u64;
    static spmc_guarded_start: u8;
    static spmc_guarded_end: u8;
    static spmc_guarded_fault: u8;
}

/// An access in a guarded copy took an external abort: no memory answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aborted;

/// Copies `len` bytes from `src` to `dst`; an abort on either side ends the
/// copy early with [`Aborted`] (the bytes before it may have been written).
///
/// # Safety
///
/// Both ranges must be mapped for the SPMC (an address no memory answers is
/// allowed: that is what this is for) and must not overlap memory that Rust
/// code holds a reference to, except `dst`/`src` being a buffer the caller
/// owns exclusively.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> Result<(), Aborted> {
    // SAFETY: the caller guarantees the ranges; the routine only touches them
    // and x0-x4, and an abort inside it comes back here as 1.
    match unsafe { spmc_guarded_copy(dst, src, len as u64) } {
        0 => Ok(()),
        _ => Err(Aborted),
    }
}

/// Writes `len` zero bytes at `dst`; an abort ends it early with [`Aborted`].
///
/// # Safety
///
/// As for [`copy`].
pub unsafe fn zero(dst: *mut u8, len: usize) -> Result<(), Aborted> {
    // SAFETY: as in `copy`.
    match unsafe { spmc_guarded_zero(dst, len as u64) } {
        0 => Ok(()),
        _ => Err(Aborted),
    }
}

/// If `elr` lies in a guarded routine, where it must resume after an abort.
pub(crate) fn fixup(elr: u64) -> Option<u64> {
    let start = &raw const spmc_guarded_start as u64;
    let end = &raw const spmc_guarded_end as u64;
    (start..end)
        .contains(&elr)
        .then_some(&raw const spmc_guarded_fault as u64)
}
