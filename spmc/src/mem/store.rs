//! Storage for what callers size: a vector kept in blocks of at most one
//! page, grown only fallibly.
//!
//! Descriptors being assembled, retrieve responses being sent and the runs
//! of every transaction live in [`ChunkVec`]s. Two properties follow, and the
//! memory-sharing code relies on both (docs/memory-sharing.md, "Heap"):
//!
//! - every growth is `try_reserve`: when the heap has no room the caller gets
//!   `NO_MEMORY` and the vector is as it was;
//! - no block is larger than a page, so a descriptor of 256 KiB needs 64 free
//!   pages anywhere in the heap, not one free 256 KiB block: the heap's
//!   fragmentation (made by partitions and instances coming and going) cannot
//!   refuse it while the bytes are there.

use alloc::vec::Vec;
use core::mem::size_of;

use crate::ffa::FfaError;

/// Largest block a [`ChunkVec`] allocates.
pub const CHUNK_BYTES: usize = 4096;

/// A vector of `T` in blocks of at most [`CHUNK_BYTES`].
///
/// The first block is kept in place, so a vector of one block (a
/// descriptor of a page or less, the runs of most transactions) costs one
/// allocation, as a `Vec` does; only the blocks after it are listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkVec<T> {
    /// The first block (empty, and unallocated, while the vector is empty).
    first: Vec<T>,
    /// The blocks after the first; each block but the last is full.
    rest: Vec<Vec<T>>,
    len: usize,
}

/// Sorts a slice by `key` in place: a heapsort, O(n log n), no allocation,
/// and a few hundred bytes of code where `sort_unstable` brings in kilobytes
/// (the image is built for size; docs/benchmarks.md).
pub fn heapsort_by_key<T, K: Ord>(v: &mut [T], key: impl Fn(&T) -> K) {
    let sift = |v: &mut [T], mut root: usize, end: usize| {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && key(&v[child]) < key(&v[child + 1]) {
                child += 1;
            }
            if key(&v[root]) >= key(&v[child]) {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    };
    let n = v.len();
    for i in (0..n / 2).rev() {
        sift(v, i, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift(v, 0, end);
    }
}

impl<T> Default for ChunkVec<T> {
    fn default() -> Self {
        Self {
            first: Vec::new(),
            rest: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ChunkVec<T> {
    /// Block `b`.
    fn block(&self, b: usize) -> Option<&Vec<T>> {
        match b {
            0 => Some(&self.first),
            _ => self.rest.get(b - 1),
        }
    }

    /// Block `b`, mutably.
    fn block_mut(&mut self, b: usize) -> Option<&mut Vec<T>> {
        match b {
            0 => Some(&mut self.first),
            _ => self.rest.get_mut(b - 1),
        }
    }

    /// The last block.
    fn last_block(&self) -> &Vec<T> {
        self.rest.last().unwrap_or(&self.first)
    }

    /// The last block, mutably.
    fn last_block_mut(&mut self) -> &mut Vec<T> {
        match self.rest.last_mut() {
            Some(c) => c,
            None => &mut self.first,
        }
    }

    /// Every block, in order (the tests check their sizes).
    #[cfg(test)]
    fn blocks(
        &self,
    ) -> core::iter::Chain<core::iter::Once<&Vec<T>>, core::slice::Iter<'_, Vec<T>>> {
        core::iter::once(&self.first).chain(self.rest.iter())
    }
}

impl<T: Copy> ChunkVec<T> {
    /// Elements per block.
    const PER: usize = if size_of::<T>() == 0 || size_of::<T>() > CHUNK_BYTES {
        1
    } else {
        CHUNK_BYTES / size_of::<T>()
    };

    /// An empty vector (allocates nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The element at `i`.
    pub fn get(&self, i: usize) -> Option<T> {
        self.block(i / Self::PER)?.get(i % Self::PER).copied()
    }

    /// A mutable reference to the element at `i`.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.block_mut(i / Self::PER)?.get_mut(i % Self::PER)
    }

    /// The last element, mutably.
    pub fn last_mut(&mut self) -> Option<&mut T> {
        self.last_block_mut().last_mut()
    }

    /// Swaps two elements (nothing if either is out of range).
    pub fn swap(&mut self, a: usize, b: usize) {
        if let (Some(x), Some(y)) = (self.get(a), self.get(b)) {
            if let Some(p) = self.get_mut(a) {
                *p = y;
            }
            if let Some(p) = self.get_mut(b) {
                *p = x;
            }
        }
    }

    /// Appends `v`, or NO_MEMORY with the vector unchanged.
    pub fn try_push(&mut self, v: T) -> Result<(), FfaError> {
        if self.last_block().len() == Self::PER {
            self.rest.try_reserve(1).map_err(|_| FfaError::NoMemory)?;
            let mut c = Vec::new();
            c.try_reserve_exact(4.min(Self::PER))
                .map_err(|_| FfaError::NoMemory)?;
            c.push(v);
            self.rest.push(c);
        } else {
            let c = self.last_block_mut();
            if c.len() == c.capacity() {
                // Doubling (from 4), never past one block.
                let want = (c.capacity() * 2).max(4).min(Self::PER) - c.len();
                c.try_reserve_exact(want).map_err(|_| FfaError::NoMemory)?;
            }
            c.push(v);
        }
        self.len += 1;
        Ok(())
    }

    /// Shortens the vector to `len` elements (freeing emptied blocks).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let keep = len.div_ceil(Self::PER);
        if keep == 0 {
            self.first = Vec::new();
            self.rest = Vec::new();
        } else {
            self.rest.truncate(keep - 1);
            self.last_block_mut().truncate(len - (keep - 1) * Self::PER);
        }
        self.len = len;
    }

    /// Keeps the elements for which `f` is true (in order).
    pub fn retain(&mut self, mut f: impl FnMut(&T) -> bool) {
        let mut w = 0;
        for r in 0..self.len {
            if let Some(v) = self.get(r)
                && f(&v)
            {
                if let Some(slot) = self.get_mut(w) {
                    *slot = v;
                }
                w += 1;
            }
        }
        self.truncate(w);
    }

    /// A copy, or NO_MEMORY.
    pub fn try_clone(&self) -> Result<Self, FfaError> {
        let mut out = Self::new();
        for v in self.iter() {
            out.try_push(*v)?;
        }
        Ok(out)
    }

    /// The elements in order.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            v: self,
            at: 0,
            end: self.len,
        }
    }

    /// Sorts by `key` in place: a heapsort, O(n log n) and no allocation
    /// (its body is [`heapsort_indexed`], one instance for every type).
    pub fn sort_by_key<K: Ord>(&mut self, key: impl Fn(&T) -> K) {
        let n = self.len;
        heapsort_indexed(&mut Keyed { v: self, key }, n);
    }
}

/// What [`heapsort_indexed`] sorts: elements compared and swapped by index.
trait Indexed {
    /// True if element `a` sorts before element `b`.
    fn less(&self, a: usize, b: usize) -> bool;
    /// Swaps elements `a` and `b`.
    fn swap(&mut self, a: usize, b: usize);
}

/// A [`ChunkVec`] sorted by a key.
struct Keyed<'a, T, F> {
    v: &'a mut ChunkVec<T>,
    key: F,
}

impl<T: Copy, K: Ord, F: Fn(&T) -> K> Indexed for Keyed<'_, T, F> {
    fn less(&self, a: usize, b: usize) -> bool {
        let k = |i: usize| self.v.get(i).map(|x| (self.key)(&x));
        k(a) < k(b)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.v.swap(a, b);
    }
}

/// Heapsorts the first `n` elements of `v`.
fn heapsort_indexed(v: &mut dyn Indexed, n: usize) {
    let sift = |v: &mut dyn Indexed, mut root: usize, end: usize| {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v.less(child, child + 1) {
                child += 1;
            }
            if !v.less(root, child) {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    };
    for i in (0..n / 2).rev() {
        sift(v, i, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift(v, 0, end);
    }
}

impl<T: Copy> core::ops::Index<usize> for ChunkVec<T> {
    type Output = T;

    /// The element at `i` (host tests; the SPMC uses [`ChunkVec::get`]).
    fn index(&self, i: usize) -> &T {
        match self.block(i / Self::PER) {
            Some(b) => &b[i % Self::PER],
            None => panic!("index {i} out of range"),
        }
    }
}

impl<'a, T: Copy> IntoIterator for &'a ChunkVec<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The elements of a [`ChunkVec`] in order, by index (smaller code than a
/// flattening of the blocks, and as fast: the block of an index is a shift
/// or a multiplication).
#[derive(Clone, Debug)]
pub struct Iter<'a, T> {
    v: &'a ChunkVec<T>,
    at: usize,
    end: usize,
}

impl<'a, T: Copy> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        if self.at >= self.end {
            return None;
        }
        let i = self.at;
        self.at += 1;
        self.v
            .block(i / ChunkVec::<T>::PER)?
            .get(i % ChunkVec::<T>::PER)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end.saturating_sub(self.at);
        (n, Some(n))
    }
}

impl<T: Copy> DoubleEndedIterator for Iter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.at >= self.end {
            return None;
        }
        self.end -= 1;
        let i = self.end;
        self.v
            .block(i / ChunkVec::<T>::PER)?
            .get(i % ChunkVec::<T>::PER)
    }
}

impl<T: Copy> ExactSizeIterator for Iter<'_, T> {}

/// Bytes in blocks of a page: descriptors and responses.
pub type Bytes = ChunkVec<u8>;

/// What [`Bytes::try_extend_zeroed`] copies new bytes from.
static ZEROS: [u8; 256] = [0; 256];

impl ChunkVec<u8> {
    /// Appends `n` zero bytes, or NO_MEMORY with the vector unchanged.
    pub fn try_extend_zeroed(&mut self, n: usize) -> Result<(), FfaError> {
        let old = self.len;
        let mut left = n;
        while left > 0 {
            if self.last_block().len() >= CHUNK_BYTES {
                if self.rest.try_reserve(1).is_err() {
                    self.truncate(old);
                    return Err(FfaError::NoMemory);
                }
                self.rest.push(Vec::new());
            }
            let c = self.last_block_mut();
            let take = (CHUNK_BYTES - c.len()).min(left);
            // Exactly what is needed in a partial block; whole blocks are one page.
            if c.try_reserve_exact(take).is_err() {
                if c.is_empty() && !self.rest.is_empty() {
                    self.rest.pop();
                }
                self.truncate(old);
                return Err(FfaError::NoMemory);
            }
            // Copied from a block of zeros (a word at a time): `resize`
            // stores one byte at a time in the size-optimised image.
            let mut fill = take;
            while fill > 0 {
                let k = fill.min(ZEROS.len());
                c.extend_from_slice(&ZEROS[..k]);
                fill -= k;
            }
            self.len += take;
            left -= take;
        }
        Ok(())
    }

    /// The bytes `[off, off + len)` as slices, one per block they touch.
    pub fn segments(&self, off: usize, len: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let end = off.saturating_add(len).min(self.len);
        let mut at = off;
        core::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let c = self.block(at / CHUNK_BYTES)?;
            let start = at % CHUNK_BYTES;
            let n = (c.len() - start).min(end - at);
            at += n;
            c.get(start..start + n)
        })
    }

    /// The bytes `[off, off + len)` as mutable slices, one per block.
    pub fn segments_mut(&mut self, off: usize, len: usize) -> impl Iterator<Item = &mut [u8]> {
        let end = off.saturating_add(len).min(self.len);
        let skip = off / CHUNK_BYTES;
        let mut at = off;
        let blocks = core::iter::once(&mut self.first).chain(self.rest.iter_mut());
        blocks.skip(skip).map_while(move |c| {
            if at >= end {
                return None;
            }
            let start = at % CHUNK_BYTES;
            let n = (c.len() - start).min(end - at);
            at += n;
            c.get_mut(start..start + n)
        })
    }

    /// The `N` bytes at `off`, if in range: a descriptor's fields, read
    /// with fixed-size loads when they lie in one block (all but those
    /// across a page boundary).
    #[inline(always)]
    pub fn array_at<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let start = off % CHUNK_BYTES;
        let one = self
            .block(off / CHUNK_BYTES)
            .and_then(|c| c.get(start..start.checked_add(N)?))
            .and_then(|s| <[u8; N]>::try_from(s).ok());
        if one.is_some() {
            return one;
        }
        let mut out = [0u8; N];
        self.read_at(off, &mut out).then_some(out)
    }

    /// Copies `out.len()` bytes at `off` into `out`; false if out of range.
    pub fn read_at(&self, off: usize, out: &mut [u8]) -> bool {
        if off.checked_add(out.len()).is_none_or(|e| e > self.len) {
            return false;
        }
        // Within one block: one copy.
        let start = off % CHUNK_BYTES;
        if let Some(s) = self
            .block(off / CHUNK_BYTES)
            .and_then(|c| c.get(start..start + out.len()))
        {
            out.copy_from_slice(s);
            return true;
        }
        let mut o = 0;
        for s in self.segments(off, out.len()) {
            out[o..o + s.len()].copy_from_slice(s);
            o += s.len();
        }
        true
    }

    /// Copies `data` to `off`; false (nothing written) if out of range.
    pub fn write_at(&mut self, off: usize, data: &[u8]) -> bool {
        if off.checked_add(data.len()).is_none_or(|e| e > self.len) {
            return false;
        }
        // Within one block: one copy.
        let start = off % CHUNK_BYTES;
        if let Some(s) = self
            .block_mut(off / CHUNK_BYTES)
            .and_then(|c| c.get_mut(start..start + data.len()))
        {
            s.copy_from_slice(data);
            return true;
        }
        let mut o = 0;
        for s in self.segments_mut(off, data.len()) {
            let n = s.len();
            s.copy_from_slice(&data[o..o + n]);
            o += n;
        }
        true
    }

    /// A copy in one vector (host tests and small reads).
    pub fn to_vec(&self) -> Vec<u8> {
        self.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_sort_retain_truncate() {
        let mut v: ChunkVec<u64> = ChunkVec::new();
        for i in 0..2000u64 {
            v.try_push((i * 7919) % 2003).unwrap();
        }
        assert_eq!(v.len(), 2000);
        assert!(v.blocks().all(|c| c.capacity() * 8 <= CHUNK_BYTES));
        v.sort_by_key(|x| *x);
        let all: Vec<u64> = v.iter().copied().collect();
        assert!(all.windows(2).all(|w| w[0] <= w[1]));
        v.retain(|x| x % 2 == 0);
        assert!(v.iter().all(|x| x % 2 == 0));
        let n = v.len();
        assert_eq!(v.get(n - 1), all.iter().rev().copied().find(|x| x % 2 == 0));
        let back: Vec<u64> = v.iter().rev().copied().collect();
        assert!(back.iter().rev().eq(v.iter()), "both ends, across blocks");
        assert_eq!(v.iter().len(), n);
        v.truncate(3);
        assert_eq!(v.len(), 3);
        assert_eq!(v.iter().count(), 3);
        assert_eq!(v.get(3), None);
        v.truncate(0);
        assert!(v.is_empty() && v.iter().next().is_none());
        v.try_push(7).unwrap();
        assert_eq!((v.len(), v.get(0)), (1, Some(7)));
    }

    #[test]
    fn bytes_across_blocks() {
        let mut b = Bytes::new();
        b.try_extend_zeroed(10).unwrap();
        b.try_extend_zeroed(3 * CHUNK_BYTES).unwrap();
        assert_eq!(b.len(), 3 * CHUNK_BYTES + 10);
        assert!(b.blocks().all(|c| c.capacity() <= CHUNK_BYTES));
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        assert!(b.write_at(4000, &data));
        let mut out = alloc::vec![0u8; 5000];
        assert!(b.read_at(4000, &mut out));
        assert_eq!(out, data);
        assert!(!b.read_at(b.len() - 1, &mut [0, 0]));
        assert!(!b.write_at(usize::MAX, &[1]));
        let joined: Vec<u8> = b.segments(4000, 5000).flatten().copied().collect();
        assert_eq!(joined, data);
        assert_eq!(b.to_vec()[4000..9000], data[..]);
    }
}
