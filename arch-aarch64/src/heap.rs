//! The SPMC heap: a buddy allocator over a static array in `.bss`.
//!
//! It holds page tables, partition records and other bookkeeping. Anything
//! sized by input from outside is allocated fallibly by the core.

use buddy_system_allocator::LockedHeap;

/// Heap size in bytes.
pub const HEAP_SIZE: usize = 1536 * 1024;

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

/// Bytes not allocated (an upper bound on what one allocation can get).
pub fn free() -> usize {
    let h = HEAP.lock();
    h.stats_total_bytes() - h.stats_alloc_actual()
}

/// Bytes currently allocated, for diagnostics.
pub fn used() -> usize {
    HEAP.lock().stats_alloc_actual()
}
