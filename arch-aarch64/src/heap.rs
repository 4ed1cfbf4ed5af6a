//! The SPMC heap: a buddy allocator over a static array in `.bss`, to which
//! the platform adds a slice of secure memory once its MMU maps it.
//!
//! It holds page tables, partition records and other bookkeeping. When it has
//! no block of the size asked for, the allocator returns null: a fallible
//! allocation (`Vec::try_reserve` and friends) then gets an error, which the
//! core answers with `NO_MEMORY` and nothing changed; an infallible one ends
//! in the allocation error handler, a panic (the SPMC then answers
//! `ABORTED`). So the core allocates fallibly, in blocks of at most a page
//! and within per-owner quotas, everything a caller sizes: memory-sharing
//! descriptors, runs and responses (`spmc/src/mem/store.rs`,
//! docs/memory-sharing.md "Heap"). What stays infallible is of a size the
//! SPMC chooses and is checked against [`free`] first (through the
//! platform's `heap_available`): stage-2 tables, which aarch64-paging
//! allocates without a way to fail, before a partition or instance is built
//! and before a retrieve maps memory; partition records and vCPU contexts.

use buddy_system_allocator::LockedHeap;

/// Size of the static part in bytes: enough to boot (manifest, page tables)
/// before the platform adds more with [`add_region`].
pub const HEAP_SIZE: usize = 512 * 1024;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);

static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the heap area to the allocator. Call once, on the primary core, first.
pub fn init() {
    let start = (&raw mut HEAP_AREA) as usize;
    // SAFETY: HEAP_AREA is used by nothing else; this runs once before any
    // allocation, on one core, so handing the range to the allocator is sound.
    unsafe { HEAP.lock().init(start, HEAP_SIZE) };
}

/// Adds `[start, start + len)` to the heap.
///
/// # Safety
///
/// The range must be RAM mapped read-write for the SPMC, used by nothing
/// else from now on, and not already part of the heap.
pub unsafe fn add_region(start: usize, len: usize) {
    // SAFETY: the caller hands the range over for good.
    unsafe { HEAP.lock().add_to_heap(start, start + len) };
}

/// Bytes not allocated (an upper bound on what one allocation can get).
pub fn free() -> usize {
    let h = HEAP.lock();
    h.stats_total_bytes() - h.stats_alloc_actual()
}

/// Bytes currently allocated, for diagnostics.
pub fn used() -> usize {
    HEAP.lock().stats_alloc_actual()
}
