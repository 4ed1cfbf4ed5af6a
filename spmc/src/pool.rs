//! The secure memory pool: page-granular, first-fit, contiguous allocations.
//!
//! Every page the pool hands out is zero: pages are zeroed when they are
//! freed (so a partition's data never reaches the next owner) and the pool
//! starts zeroed. The contract (design §4, "memory leaves a partition
//! zeroed") is enforced here and nowhere else.

use alloc::vec;
use alloc::vec::Vec;

use crate::addr::{PAGE_SIZE, Pa};
use crate::manifest::MemRange;
use crate::platform::{MemError, Platform};
use crate::text::Hex;

/// A run of pages the pool handed out. Deliberately not `Clone`: it must
/// come back to [`Pool::free`] exactly once.
#[derive(Debug, PartialEq, Eq)]
pub struct Allocation {
    /// First byte.
    pub base: Pa,
    /// Number of 4 KiB pages.
    pub pages: u64,
}

impl Allocation {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.pages * PAGE_SIZE
    }

    /// True if the allocation has no pages (never handed out by the pool).
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// True if `pa..pa+len` lies inside this allocation.
    pub fn contains(&self, pa: Pa, len: u64) -> bool {
        pa.0 >= self.base.0
            && pa
                .0
                .checked_add(len)
                .is_some_and(|e| e <= self.base.0 + self.len())
    }
}

/// The pool.
#[derive(Debug)]
pub struct Pool {
    base: Pa,
    used: Vec<bool>,
    free_pages: u64,
}

impl Pool {
    /// A pool over `range`, which must be page aligned. Zeroes it all first.
    pub fn new<P: Platform>(range: MemRange, platform: &mut P) -> Result<Self, MemError> {
        let pages = range.size / PAGE_SIZE;
        platform.zero(Pa(range.base), range.size)?;
        Ok(Self {
            base: Pa(range.base),
            used: vec![false; pages as usize],
            free_pages: pages,
        })
    }

    /// Pages not handed out.
    pub fn free_pages(&self) -> u64 {
        self.free_pages
    }

    /// Total pages.
    pub fn total_pages(&self) -> u64 {
        self.used.len() as u64
    }

    /// The range the pool covers.
    pub fn range(&self) -> MemRange {
        MemRange {
            base: self.base.0,
            size: self.total_pages() * PAGE_SIZE,
        }
    }

    /// Allocates `pages` contiguous zeroed pages, or `None` if no run is long enough.
    pub fn alloc(&mut self, pages: u64) -> Option<Allocation> {
        if pages == 0 || pages > self.free_pages {
            return None;
        }
        let want = pages as usize;
        let mut run = 0usize;
        for i in 0..self.used.len() {
            if self.used[i] {
                run = 0;
                continue;
            }
            run += 1;
            if run == want {
                let first = i + 1 - want;
                self.used[first..=i].iter_mut().for_each(|u| *u = true);
                self.free_pages -= pages;
                return Some(Allocation {
                    base: Pa(self.base.0 + first as u64 * PAGE_SIZE),
                    pages,
                });
            }
        }
        None
    }

    /// Zeroes and returns an allocation.
    pub fn free<P: Platform>(&mut self, a: Allocation, platform: &mut P) {
        // A failed zeroing would leak data to the next owner: keep the pages
        // out of circulation instead.
        if platform.zero(a.base, a.len()).is_err() {
            log::error!(
                "cannot zero {}+{}; pages withheld from the pool",
                Hex(a.base.0),
                Hex(a.len())
            );
            return;
        }
        let first = ((a.base.0 - self.base.0) / PAGE_SIZE) as usize;
        for u in &mut self.used[first..first + a.pages as usize] {
            debug_assert!(*u, "double free of pool page");
            *u = false;
        }
        self.free_pages += a.pages;
    }

    /// The runs of free pages, in address order: (first page, pages).
    pub fn free_runs(&self) -> impl Iterator<Item = (Pa, u64)> + '_ {
        let mut i = 0;
        core::iter::from_fn(move || {
            while i < self.used.len() && self.used[i] {
                i += 1;
            }
            let first = i;
            while i < self.used.len() && !self.used[i] {
                i += 1;
            }
            (i > first).then(|| {
                (
                    Pa(self.base.0 + first as u64 * PAGE_SIZE),
                    (i - first) as u64,
                )
            })
        })
    }

    /// True if the page holding `pa` lies in the pool and is not handed out.
    pub fn is_free(&self, pa: Pa) -> bool {
        self.contains(pa) && !self.used[((pa.0 - self.base.0) / PAGE_SIZE) as usize]
    }

    /// True if `pa` lies in the pool.
    pub fn contains(&self, pa: Pa) -> bool {
        pa.0 >= self.base.0 && pa.0 < self.base.0 + self.total_pages() * PAGE_SIZE
    }
}
