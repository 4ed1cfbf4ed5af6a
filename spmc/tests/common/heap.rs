//! A finite heap for host tests: the firmware's allocator (a buddy allocator,
//! `buddy_system_allocator`, as `arch-aarch64/src/heap.rs` uses) over a
//! fixed-size region, per test thread.
//!
//! A test binary installs [`ModelHeap`] as its `#[global_allocator]`. Outside
//! [`ModelHeap::scope`] every allocation goes to the system allocator as
//! usual; inside it, the allocations of that thread come from the thread's
//! model heap, which returns null when it has no block of the size asked for,
//! exactly as the firmware heap does (so `try_reserve` fails and an
//! infallible allocation aborts the test process). A block is freed to the
//! heap it came from, whatever the scope, by its address.
//!
//! The model heap has the firmware's shape by default ([`FIRMWARE_REGIONS`]):
//! the 512 KiB static heap and the 1 MiB added from the secure pool at boot,
//! each aligned to its size (the best case for a buddy allocator).

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::ptr::{NonNull, null_mut};

use buddy_system_allocator::Heap;

/// The firmware heap's regions: 512 KiB in the image, 1 MiB from the pool.
pub const FIRMWARE_REGIONS: [usize; 2] = [512 * 1024, 1024 * 1024];

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static LARGEST_ASKED: Cell<usize> = const { Cell::new(0) };
    static REGIONS: Cell<[(usize, usize); 2]> = const { Cell::new([(0, 0); 2]) };
    static HEAP: RefCell<Heap<32>> = const { RefCell::new(Heap::empty()) };
}

/// The global allocator of a test binary that models a finite heap.
#[derive(Debug)]
pub struct ModelHeap;

fn in_model(p: *mut u8) -> bool {
    let a = p as usize;
    REGIONS.with(|r| r.get().iter().any(|&(s, e)| a >= s && a < e))
}

// SAFETY: allocations are served either by `System` or by this thread's
// buddy heap, which owns regions that nothing else uses (leaked from
// `System` in `ModelHeap::install`); a block goes back to the allocator whose
// region contains it, so each free matches its allocation.
unsafe impl GlobalAlloc for ModelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ACTIVE.with(Cell::get) {
            LARGEST_ASKED.with(|m| m.set(m.get().max(layout.size())));
            HEAP.with(|h| {
                h.borrow_mut()
                    .alloc(layout)
                    .map_or(null_mut(), NonNull::as_ptr)
            })
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ACTIVE.with(Cell::get) {
            // SAFETY: as `alloc`; the block is then zeroed in full.
            let p = unsafe { self.alloc(layout) };
            if !p.is_null() {
                // SAFETY: `p` is a fresh block of `layout.size()` bytes.
                unsafe { p.write_bytes(0, layout.size()) };
            }
            p
        } else {
            // SAFETY: forwarded with the caller's layout (the system
            // allocator zeroes large blocks lazily: the fake platform's
            // memory costs nothing until touched).
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr).filter(|_| in_model(ptr)) {
            HEAP.with(|h| {
                // SAFETY: `p` came from this thread's model heap (its
                // regions are this thread's alone) with `layout`.
                unsafe { h.borrow_mut().dealloc(p, layout) }
            });
        } else {
            // SAFETY: `ptr` came from `System` with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

impl ModelHeap {
    /// Gives this thread a model heap of `regions` (bytes each; powers of
    /// two), once per thread.
    pub fn install(regions: [usize; 2]) {
        assert_eq!(REGIONS.with(Cell::get)[0].1, 0, "one model heap per thread");
        let mut r = [(0, 0); 2];
        for (i, len) in regions.into_iter().enumerate() {
            let layout = Layout::from_size_align(len, len).unwrap();
            // SAFETY: a non-zero size; the block is leaked to the model heap.
            let start = unsafe { System.alloc(layout) } as usize;
            assert_ne!(start, 0);
            // SAFETY: the block is fresh, writable, and used by nothing else.
            HEAP.with(|h| unsafe { h.borrow_mut().init(start, len) });
            r[i] = (start, start + len);
        }
        REGIONS.with(|c| c.set(r));
    }

    /// Runs `f` with this thread's allocations served by its model heap.
    pub fn scope<R>(f: impl FnOnce() -> R) -> R {
        struct Reset(bool);
        impl Drop for Reset {
            fn drop(&mut self) {
                ACTIVE.with(|a| a.set(self.0));
            }
        }
        let _reset = Reset(ACTIVE.with(|a| a.replace(true)));
        f()
    }

    /// The largest block asked of the model heap since the last call.
    pub fn take_largest_asked() -> usize {
        LARGEST_ASKED.with(|m| m.replace(0))
    }

    /// Bytes of the model heap not allocated.
    pub fn free() -> usize {
        HEAP.with(|h| {
            let h = h.borrow();
            h.stats_total_bytes() - h.stats_alloc_actual()
        })
    }

    /// Bytes of the model heap allocated.
    pub fn used() -> usize {
        HEAP.with(|h| h.borrow().stats_alloc_actual())
    }

    /// The largest block the model heap can give now (a power of two).
    pub fn largest_block() -> usize {
        let mut size = 1usize << 21;
        while size >= 8 {
            let layout = Layout::from_size_align(size, 8).unwrap();
            let got = HEAP.with(|h| h.borrow_mut().alloc(layout));
            if let Ok(p) = got {
                // SAFETY: just allocated from this heap with `layout`.
                HEAP.with(|h| unsafe { h.borrow_mut().dealloc(p, layout) });
                return size;
            }
            size /= 2;
        }
        0
    }
}
