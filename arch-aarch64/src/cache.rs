//! Data- and instruction-cache maintenance for memory the SPMC writes and
//! a lower exception level then reads with its MMU off.
//!
//! A partition (or an rpi4 general VM) starts at EL1 with SCTLR_EL1.M = 0:
//! its data accesses are Device-nGnRnE and its instruction fetches
//! non-cacheable, so they go to memory and never look in the caches
//! (Arm ARM D8.2.11, "The effects of disabling an address translation
//! stage"). What EL2 wrote through its own cacheable mapping may still be
//! only in a dirty line: it must reach the point of coherency before the
//! vCPU runs, and the line must go (clean *and* invalidate) so that a line
//! written back later cannot overwrite what the vCPU wrote to memory with
//! its caches off. QEMU models no caches, so no test here can see a
//! missing clean; real hardware (the Raspberry Pi 4) does.

use core::arch::asm;

/// The smallest data-cache line of this PE, in bytes (CTR_EL0.DminLine:
/// log2 of the number of 4-byte words).
fn dcache_line() -> usize {
    let ctr: u64;
    // SAFETY: reads an ID register; no memory access, no side effect.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Cleans and invalidates `[start, start + len)` to the point of coherency
/// (DC CIVAC by VA), then waits for it (DSB SY).
///
/// # Safety
///
/// The whole range must be mapped in the current translation regime (a
/// DC by VA to an unmapped VA takes a translation fault at EL2). The
/// operation itself changes no byte of memory as software sees it.
pub unsafe fn clean_invalidate_to_poc(start: usize, len: usize) {
    if len == 0 {
        return;
    }
    let line = dcache_line();
    let mut va = start & !(line - 1);
    let end = start.saturating_add(len);
    while va < end {
        // SAFETY: the caller keeps the range mapped; DC CIVAC only writes
        // dirty lines back and drops them.
        unsafe { asm!("dc civac, {}", in(reg) va, options(nostack, preserves_flags)) };
        va += line;
    }
    // SAFETY: a barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Invalidates every instruction cache of the Inner Shareable domain to
/// the point of unification (IC IALLUIS): code EL2 just wrote (a trusted
/// VM's image, a guest's program) is fetched afresh, not from a line a
/// previous occupant of those pages left.
pub fn invalidate_icache() {
    // SAFETY: cache maintenance and barriers only; no memory is changed.
    unsafe {
        asm!(
            "dsb ish",
            "ic ialluis",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}
