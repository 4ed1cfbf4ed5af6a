//! Counts the heap: every fuzz target allocates through [`Counting`], and
//! [`Meter`] attributes to the SPMC what its calls allocate and keep, so the
//! driver can check the SPMC stays within the heap the firmware gives it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes and their peak.
#[derive(Debug)]
pub struct Counting;

fn grew(n: usize) {
    let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrank(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; the counting touches only
// two atomics and never the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout contract passes through to `System`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller gives back a block this allocator (that is,
        // `System`) handed out with this layout.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

/// Live bytes now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// What the SPMC holds on the heap, counted over the calls made into it.
#[derive(Debug, Default)]
pub struct Meter {
    /// Bytes the SPMC's calls allocated and kept.
    pub held: isize,
    /// The most it held at any moment of any call.
    pub peak: isize,
    start: usize,
}

impl Meter {
    /// Call before a call into the SPMC.
    pub fn enter(&mut self) {
        self.start = live();
        PEAK.store(self.start, Ordering::Relaxed);
    }

    /// Call after it.
    pub fn leave(&mut self) {
        let (now, peak) = (live(), PEAK.load(Ordering::Relaxed));
        self.peak = self.peak.max(self.held + (peak - self.start) as isize);
        self.held += now as isize - self.start as isize;
    }

    /// `bytes` the SPMC's calls allocated were freed outside them (records of
    /// the fake platform the driver drops).
    pub fn forget(&mut self, bytes: usize) {
        self.held -= bytes as isize;
    }
}
