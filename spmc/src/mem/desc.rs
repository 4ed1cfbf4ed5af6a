//! FF-A memory transaction descriptors: parsing what senders and retrievers
//! write, encoding what borrowers read.
//!
//! Layouts (DEN0140 v1.2 §1.11 "Memory region descriptors"; DEN0077 v1.0
//! Table 5.19 for the v1.0 form):
//!
//! - v1.0 transaction descriptor, 32 bytes: sender u16 @0, attributes u8 @2,
//!   reserved u8 @3, flags u32 @4, handle u64 @8, tag u64 @16, reserved u32
//!   @24, access descriptor count u32 @28; access descriptors (16 bytes) @32.
//! - v1.1+ transaction descriptor, 48 bytes: sender u16 @0, attributes u16 @2,
//!   flags u32 @4, handle u64 @8, tag u64 @16, access descriptor size u32 @24,
//!   count u32 @28, offset u32 @32, 12 reserved bytes @36.
//! - Endpoint memory access descriptor (Table 1.16): endpoint u16 @0,
//!   permissions u8 @2, flags u8 @3, composite offset u32 @4; then in the
//!   16-byte form a reserved u64 @8, in the 32-byte form (v1.2) a 16-byte
//!   implementation-defined value @8 and a reserved u64 @24.
//! - Composite memory region descriptor (Table 1.13): total pages u32 @0,
//!   range count u32 @4, reserved u64 @8, ranges @16.
//! - Constituent memory region descriptor (Table 1.14): address u64 @0,
//!   pages u32 @8, reserved u32 @12.
//! - Relinquish descriptor (Table 1.19): handle u64 @0, flags u32 @8,
//!   endpoint count u32 @12, endpoint IDs (u16) @16.
//!
//! Parsing checks everything the SPMC later relies on; nothing here can panic
//! on any input (every read is bounds-checked, every sum overflow-checked).
//!
//! Why not `arm_ffa::memory_management::MemTransactionDesc::{pack, unpack}`
//! (arm-ffa 0.5; docs/arm-ffa.md): `unpack` takes one contiguous slice (a
//! fragmented transaction lives in page chunks here, `store::Bytes`), refuses
//! every access descriptor size but 16 (v1.2 callers may send 32-byte ones,
//! §1.11 Table 1.16), knows no v1.0 layout, and `pack` panics when the buffer
//! is too small. The flag values below are arm-ffa's.

use alloc::vec::Vec;

use super::store::Bytes;
use crate::addr::PAGE_SIZE;
use crate::ffa::{FfaError, PartitionId};

/// Most receivers in one transaction.
pub const MAX_RECEIVERS: usize = 8;
/// Most pages in one transaction.
pub const MAX_PAGES: u64 = 32768;

/// Which descriptor layout a caller uses (its negotiated version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// FF-A v1.0.
    V1_0,
    /// FF-A v1.1 and later.
    V1_1,
}

/// The three kinds of transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// FFA_MEM_SHARE: the owner keeps access.
    Share,
    /// FFA_MEM_LEND: the owner gives access away until it reclaims.
    Lend,
    /// FFA_MEM_DONATE: ownership moves to the receiver.
    Donate,
}

impl Op {
    /// The transaction type in flags bits [4:3] of retrieve requests and responses.
    pub fn type_bits(self) -> u32 {
        (match self {
            Op::Share => 1,
            Op::Lend => 2,
            Op::Donate => 3,
        }) << 3
    }
}

/// Memory access permissions (Table 1.15).
pub mod perm {
    /// Data access bits [1:0].
    pub const DATA_MASK: u8 = 0b11;
    /// Data access: not specified.
    pub const DATA_NONE: u8 = 0;
    /// Data access: read-only.
    pub const RO: u8 = 1;
    /// Data access: read-write.
    pub const RW: u8 = 2;
    /// Instruction access bits [3:2].
    pub const INSTR_MASK: u8 = 0b1100;
    /// Instruction access: not specified.
    pub const INSTR_NONE: u8 = 0;
    /// Instruction access: not executable.
    pub const NX: u8 = 1 << 2;
    /// Instruction access: executable.
    pub const X: u8 = 2 << 2;
}

/// Transaction flags (Table 1.17 for senders, Table 1.18 for retrievers):
/// the values of `arm_ffa::memory_management::MemTransactionFlags`.
pub mod flags {
    use arm_ffa::memory_management::MemTransactionFlags as F;
    /// Zero the memory (before retrieval; for a relinquish or reclaim, on the way).
    pub const ZERO: u32 = F::ZERO_MEMORY;
    /// The operation may be time-sliced (the SPMC never needs to).
    pub const TIME_SLICE: u32 = F::TIME_SLICING;
    /// Retrieve: zero the memory after the retriever relinquishes it.
    pub const ZERO_AFTER_RELINQUISH: u32 = F::ZERO_AFTER_RELINQ;
    /// Retrieve: transaction type, bits [4:3] (arm-ffa names no mask; donate,
    /// 0b11, sets both bits).
    pub const TYPE_MASK: u32 = F::TYPE_DONATE;
    /// Retrieve: address range alignment hint, bits [8:5].
    pub const ALIGN_HINT_MASK: u32 = F::ALIGN_HINT_MASK;
    /// Retrieve: the alignment hint is valid.
    pub const ALIGN_HINT_VALID: u32 = F::HINT_VALID;
}

/// Memory region attributes (Table 1.9 / 1.10).
pub mod attr {
    /// Memory type bits [5:4].
    pub const TYPE_MASK: u16 = 0b11 << 4;
    /// Memory type: not specified.
    pub const TYPE_NONE: u16 = 0;
    /// Memory type: device.
    pub const TYPE_DEVICE: u16 = 1 << 4;
    /// Memory type: normal.
    pub const TYPE_NORMAL: u16 = 2 << 4;
    /// Cacheability bits [3:2] (normal memory).
    pub const CACHE_MASK: u16 = 0b11 << 2;
    /// Non-cacheable.
    pub const CACHE_NC: u16 = 1 << 2;
    /// Write-back.
    pub const CACHE_WB: u16 = 3 << 2;
    /// Shareability bits [1:0] (normal memory).
    pub const SHARE_MASK: u16 = 0b11;
    /// Reserved shareability value.
    pub const SHARE_RESERVED: u16 = 1;
    /// Normal, write-back, inner shareable: what the SPMC maps.
    pub const NORMAL_WB_INNER: u16 = TYPE_NORMAL | CACHE_WB | 3;
    /// Device-nGnRE (bits [3:2] = 0b01): what the SPMC maps device memory as.
    pub const DEVICE_NGNRE: u16 = TYPE_DEVICE | (1 << 2);
    /// Bit 6 (v1.1+): the memory is non-secure (set by the SPMC in responses).
    pub const NS: u16 = 1 << 6;
}

/// One receiver of a transaction (an endpoint memory access descriptor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receiver {
    /// Its endpoint ID.
    pub id: PartitionId,
    /// Its permissions (see [`perm`]).
    pub perms: u8,
    /// Its flags byte.
    pub flags: u8,
    /// The v1.2 implementation-defined value (zero in 16-byte descriptors).
    pub impdef: [u8; 16],
}

/// One constituent range: an address (PA from the normal world, IPA from a
/// partition) and a page count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub addr: u64,
    /// 4 KiB pages.
    pub pages: u64,
}

impl Range {
    /// One past the last byte (never overflows for a parsed range).
    pub fn end(&self) -> u64 {
        self.addr + self.pages * PAGE_SIZE
    }

    /// True if the two ranges share a byte.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.addr < other.end() && other.addr < self.end()
    }
}

/// A parsed transaction descriptor (a send, a retrieve request or a response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Sender (the owner).
    pub sender: PartitionId,
    /// Memory region attributes (v1.0's byte widened).
    pub attributes: u16,
    /// Flags.
    pub flags: u32,
    /// Handle (0 in a send).
    pub handle: u64,
    /// Tag.
    pub tag: u64,
    /// Size of each access descriptor (16, or 32 with the v1.2 field).
    pub emad_size: u32,
    /// The receivers.
    pub receivers: Vec<Receiver>,
    /// The constituents (empty for a retrieve request, which names a handle).
    pub ranges: Vec<Range>,
    /// Their total page count.
    pub total_pages: u64,
}

/// What a descriptor is parsed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// FFA_MEM_SHARE/LEND/DONATE: the composite must be there and valid.
    Send,
    /// FFA_MEM_RETRIEVE_REQ: the composite, if any, is ignored.
    Retrieve,
}

const INVALID: FfaError = FfaError::InvalidParameters;

/// Where a descriptor is read from: one slice, or the page-sized blocks a
/// fragmented send was assembled in ([`Bytes`]).
pub trait Source {
    /// Bytes in all.
    fn size(&self) -> usize;
    /// Copies `out.len()` bytes at `off`; false if past the end.
    fn read(&self, off: usize, out: &mut [u8]) -> bool;
    /// The `N` bytes at `off`, if there (a field: fixed-size loads where the
    /// source allows them).
    fn array<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        self.read(off, &mut out).then_some(out)
    }
}

impl Source for [u8] {
    fn size(&self) -> usize {
        self.len()
    }

    fn read(&self, off: usize, out: &mut [u8]) -> bool {
        match off.checked_add(out.len()).and_then(|e| self.get(off..e)) {
            Some(s) => {
                out.copy_from_slice(s);
                true
            }
            None => false,
        }
    }
}

impl Source for Vec<u8> {
    fn size(&self) -> usize {
        self.len()
    }

    fn read(&self, off: usize, out: &mut [u8]) -> bool {
        self.as_slice().read(off, out)
    }
}

impl Source for Bytes {
    fn size(&self) -> usize {
        self.len()
    }

    fn read(&self, off: usize, out: &mut [u8]) -> bool {
        self.read_at(off, out)
    }

    fn array<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.array_at(off)
    }
}

fn bytes_at<const N: usize, S: Source + ?Sized>(b: &S, off: usize) -> Result<[u8; N], FfaError> {
    b.array(off).ok_or(INVALID)
}

fn u8_at<S: Source + ?Sized>(b: &S, off: usize) -> Result<u8, FfaError> {
    Ok(bytes_at::<1, S>(b, off)?[0])
}

fn u16_at<S: Source + ?Sized>(b: &S, off: usize) -> Result<u16, FfaError> {
    Ok(u16::from_le_bytes(bytes_at(b, off)?))
}

fn u32_at<S: Source + ?Sized>(b: &S, off: usize) -> Result<u32, FfaError> {
    Ok(u32::from_le_bytes(bytes_at(b, off)?))
}

fn u64_at<S: Source + ?Sized>(b: &S, off: usize) -> Result<u64, FfaError> {
    Ok(u64::from_le_bytes(bytes_at(b, off)?))
}

fn zero_at<S: Source + ?Sized>(b: &S, off: usize, len: usize) -> Result<(), FfaError> {
    let mut at = off;
    let end = off.checked_add(len).ok_or(INVALID)?;
    while at < end {
        let n = (end - at).min(16);
        let chunk = if n == 16 {
            b.array::<16>(at)
        } else {
            let mut c = [0u8; 16];
            b.read(at, &mut c[..n]).then_some(c)
        };
        // Sixteen bytes compared at once.
        if chunk.is_none_or(|c| u128::from_ne_bytes(c) != 0) {
            return Err(INVALID);
        }
        at += n;
    }
    Ok(())
}

/// Size of the transaction descriptor header.
pub fn header_size(layout: Layout) -> usize {
    match layout {
        Layout::V1_0 => 32,
        Layout::V1_1 => 48,
    }
}

/// Where a send's constituents are, once [`parse_header`] checked them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Composite {
    /// Offset of the composite memory region descriptor.
    pub offset: usize,
    /// Constituents.
    pub count: usize,
    /// Their total page count.
    pub total_pages: u64,
}

impl Composite {
    /// The constituents, read from `buf` (the source [`parse_header`]
    /// checked: every one is there and valid).
    pub fn ranges<'a, S: Source + ?Sized>(&self, buf: &'a S) -> impl Iterator<Item = Range> + 'a {
        let at = self.offset + 16;
        (0..self.count).filter_map(move |i| {
            let at = at + i * 16;
            Some(Range {
                addr: u64_at(buf, at).ok()?,
                pages: u32_at(buf, at + 8).ok()? as u64,
            })
        })
    }
}

/// Parses a transaction descriptor of `buf.len()` bytes, its constituents
/// in a vector (host tests and tools; the SPMC reads them with
/// [`parse_header`] and [`Composite::ranges`], which allocate nothing per range).
pub fn parse(buf: &[u8], layout: Layout, purpose: Purpose) -> Result<Descriptor, FfaError> {
    let (mut d, comp) = parse_header(buf, layout, purpose)?;
    if let Some(c) = comp {
        let mut ranges: Vec<Range> = Vec::new();
        let mut sorted: Vec<Range> = Vec::new();
        ranges
            .try_reserve_exact(c.count)
            .and_then(|_| sorted.try_reserve_exact(c.count))
            .map_err(|_| FfaError::NoMemory)?;
        ranges.extend(c.ranges(buf));
        // No two constituents may overlap (sort a copy by address, compare neighbours).
        sorted.extend_from_slice(&ranges);
        heapsort_by_addr(&mut sorted);
        if sorted.windows(2).any(|w| w[0].overlaps(&w[1])) {
            return Err(INVALID);
        }
        d.ranges = core::mem::take(&mut ranges);
    }
    Ok(d)
}

/// Parses a transaction descriptor of `buf.size()` bytes and, for a send,
/// checks its composite and every constituent (page aligned, non-empty, no
/// overflow, the page count their sum) without keeping them: the result's
/// `ranges` is empty and the [`Composite`] says where they are. Overlap
/// between constituents is left to the caller (it sorts what it keeps).
///
/// A send descriptor must end where its last constituent ends: the total
/// length the sender declared (w1) is the descriptor's length (DEN0077 v1.2
/// §11.1.1, FFA_MEM_SHARE w1 "Total length of the memory transaction
/// descriptor in bytes"; DEN0140 §1.11 lays the composite and its
/// constituents out to the end), so bytes past it are INVALID_PARAMETERS.
pub fn parse_header<S: Source + ?Sized>(
    buf: &S,
    layout: Layout,
    purpose: Purpose,
) -> Result<(Descriptor, Option<Composite>), FfaError> {
    let size = buf.size();
    if size < header_size(layout) {
        return Err(INVALID);
    }
    let sender = u16_at(buf, 0)?;
    let flags = u32_at(buf, 4)?;
    let handle = u64_at(buf, 8)?;
    let tag = u64_at(buf, 16)?;
    let count = u32_at(buf, 28)? as usize;
    let (attributes, emad_size, emad_offset) = match layout {
        Layout::V1_0 => {
            zero_at(buf, 3, 1)?;
            zero_at(buf, 24, 4)?;
            (u8_at(buf, 2)? as u16, 16u32, 32usize)
        }
        Layout::V1_1 => {
            zero_at(buf, 36, 12)?;
            let size = u32_at(buf, 24)?;
            let offset = u32_at(buf, 32)? as usize;
            if size != 16 && size != 32 {
                return Err(INVALID);
            }
            if offset < 48 || !offset.is_multiple_of(16) {
                return Err(INVALID);
            }
            (u16_at(buf, 2)?, size, offset)
        }
    };
    // A retrieve request may name no receiver: the hypervisor retrieve
    // request (DEN0140, "hypervisor retrieve request": the handle alone,
    // answered with the whole transaction descriptor); the caller decides
    // who may send it.
    if count == 0 && purpose == Purpose::Send {
        return Err(INVALID);
    }
    if count > MAX_RECEIVERS {
        return Err(FfaError::NoMemory);
    }
    let emads_end = (emad_size as usize)
        .checked_mul(count)
        .and_then(|n| n.checked_add(emad_offset))
        .filter(|e| *e <= size)
        .ok_or(INVALID)?;
    let mut receivers = Vec::new();
    receivers
        .try_reserve_exact(count)
        .map_err(|_| FfaError::NoMemory)?;
    let mut composite = None;
    let mut any_composite = false;
    for i in 0..count {
        let at = emad_offset + i * emad_size as usize;
        let id = u16_at(buf, at)?;
        let perms = u8_at(buf, at + 2)?;
        let eflags = u8_at(buf, at + 3)?;
        let comp = u32_at(buf, at + 4)? as usize;
        let mut impdef = [0u8; 16];
        if emad_size == 32 {
            impdef = bytes_at(buf, at + 8)?;
            zero_at(buf, at + 24, 8)?;
        } else {
            zero_at(buf, at + 8, 8)?;
        }
        any_composite |= comp != 0;
        match composite {
            None => composite = Some(comp),
            // Every receiver describes the same memory (one composite).
            Some(c) if c != comp && purpose == Purpose::Send => return Err(INVALID),
            Some(_) => {}
        }
        receivers.push(Receiver {
            id,
            perms,
            flags: eflags,
            impdef,
        });
    }
    let mut d = Descriptor {
        sender,
        attributes,
        flags,
        handle,
        tag,
        emad_size,
        receivers,
        ranges: Vec::new(),
        total_pages: 0,
    };
    if purpose == Purpose::Retrieve {
        // A retrieve request without a composite (every EMAD's offset 0)
        // ends with its last access descriptor: the length the borrower
        // declared (w1) is the descriptor's (DEN0077 v1.2 §11.5,
        // FFA_MEM_RETRIEVE_REQ w1; Hafnium refuses any other length too).
        if !any_composite && size != emads_end {
            return Err(INVALID);
        }
        return Ok((d, None));
    }
    let comp = composite.unwrap_or(0);
    if comp < emads_end || !comp.is_multiple_of(8) {
        return Err(INVALID);
    }
    let total = u32_at(buf, comp)? as u64;
    let n = u32_at(buf, comp + 4)? as usize;
    zero_at(buf, comp + 8, 8)?;
    if n == 0 || total == 0 {
        return Err(INVALID);
    }
    if total > MAX_PAGES {
        return Err(FfaError::NoMemory);
    }
    let end = n
        .checked_mul(16)
        .and_then(|l| l.checked_add(comp + 16))
        .filter(|e| *e <= size)
        .ok_or(INVALID)?;
    if end != size {
        // More bytes declared than the descriptor describes.
        return Err(INVALID);
    }
    let mut sum = 0u64;
    for i in 0..n {
        let at = comp + 16 + i * 16;
        let addr = u64_at(buf, at)?;
        let pages = u32_at(buf, at + 8)? as u64;
        zero_at(buf, at + 12, 4)?;
        if pages == 0 || !addr.is_multiple_of(PAGE_SIZE) {
            return Err(INVALID);
        }
        addr.checked_add(pages * PAGE_SIZE).ok_or(INVALID)?;
        sum += pages;
        if sum > total {
            return Err(INVALID);
        }
    }
    if sum != total {
        return Err(INVALID);
    }
    d.total_pages = total;
    Ok((
        d,
        Some(Composite {
            offset: comp,
            count: n,
            total_pages: total,
        }),
    ))
}

/// Sorts ranges by address: O(n log n) for descriptors of thousands of
/// ranges, in a few instructions of code (no generic sort in the image).
pub(crate) fn heapsort_by_addr(v: &mut [Range]) {
    super::store::heapsort_by_key(v, |r| r.addr);
}

/// The fields of a retrieve response (one receiver, the retriever; or every
/// borrower, for the hypervisor retrieve request); the ranges are passed to
/// [`encode_response`] beside it.
#[derive(Clone, Debug)]
pub struct Response<'a> {
    /// The owner.
    pub sender: PartitionId,
    /// Attributes (bit 6 set for normal-world memory, v1.1+ only).
    pub attributes: u16,
    /// Flags: the transaction type, and ZERO if the memory was zeroed.
    pub flags: u32,
    /// The handle.
    pub handle: u64,
    /// The tag.
    pub tag: u64,
    /// The retriever with the permissions it was granted (or each borrower
    /// with the permissions the sender gave it).
    pub receivers: &'a [Receiver],
}

/// Encodes a retrieve response with `ranges` (where the retriever sees the
/// memory) in the retriever's layout (`emad_size` 16 or 32 for v1.1+; v1.0
/// is always 16), in page-sized blocks; NO_MEMORY if the heap has no room.
pub fn encode_response<I>(
    r: &Response<'_>,
    ranges: I,
    layout: Layout,
    emad_size: u32,
) -> Result<Bytes, FfaError>
where
    I: Iterator<Item = Range> + Clone,
{
    let emad_size = if layout == Layout::V1_0 {
        16
    } else {
        emad_size
    };
    let hdr = header_size(layout);
    let n = r.receivers.len();
    if n > MAX_RECEIVERS {
        return Err(INVALID);
    }
    let comp = hdr + emad_size as usize * n;
    let (count, total_pages) = ranges
        .clone()
        .fold((0usize, 0u64), |(n, p), x| (n + 1, p + x.pages));
    let mut b = Bytes::new();
    b.try_extend_zeroed(comp + 16 + 16 * count)?;
    // The header, each EMAD and the composite's header written in turn
    // (the bytes are zero already): a small buffer on the stack.
    let mut head = [0u8; 48];
    head[0..2].copy_from_slice(&r.sender.to_le_bytes());
    match layout {
        Layout::V1_0 => {
            head[2] = (r.attributes & 0xFF & !attr::NS) as u8;
        }
        Layout::V1_1 => {
            head[2..4].copy_from_slice(&r.attributes.to_le_bytes());
            head[24..28].copy_from_slice(&emad_size.to_le_bytes());
            head[32..36].copy_from_slice(&(hdr as u32).to_le_bytes());
        }
    }
    head[28..32].copy_from_slice(&(n as u32).to_le_bytes());
    head[4..8].copy_from_slice(&r.flags.to_le_bytes());
    head[8..16].copy_from_slice(&r.handle.to_le_bytes());
    head[16..24].copy_from_slice(&r.tag.to_le_bytes());
    b.write_at(0, &head[..hdr]);
    for (i, x) in r.receivers.iter().enumerate() {
        let mut e = [0u8; 24];
        e[0..2].copy_from_slice(&x.id.to_le_bytes());
        e[2] = x.perms;
        e[4..8].copy_from_slice(&(comp as u32).to_le_bytes());
        let len = if emad_size == 32 {
            e[8..24].copy_from_slice(&x.impdef);
            24
        } else {
            8
        };
        b.write_at(hdr + i * emad_size as usize, &e[..len]);
    }
    let mut c = [0u8; 8];
    c[0..4].copy_from_slice(&(total_pages as u32).to_le_bytes());
    c[4..8].copy_from_slice(&(count as u32).to_le_bytes());
    b.write_at(comp, &c);
    for (i, x) in ranges.enumerate() {
        let mut c = [0u8; 16];
        c[0..8].copy_from_slice(&x.addr.to_le_bytes());
        c[8..12].copy_from_slice(&(x.pages as u32).to_le_bytes());
        b.write_at(comp + 16 + 16 * i, &c);
    }
    Ok(b)
}

/// A parsed relinquish descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relinquish {
    /// The handle.
    pub handle: u64,
    /// Flags (ZERO, TIME_SLICE).
    pub flags: u32,
    /// The endpoints that relinquish (the first `count`; a fixed array, so
    /// parsing allocates nothing).
    endpoints: [PartitionId; MAX_RECEIVERS],
    /// How many.
    count: usize,
}

impl Relinquish {
    /// The endpoints that relinquish.
    pub fn endpoints(&self) -> &[PartitionId] {
        &self.endpoints[..self.count]
    }
}

/// Parses a relinquish descriptor.
pub fn parse_relinquish<S: Source + ?Sized>(buf: &S) -> Result<Relinquish, FfaError> {
    let handle = u64_at(buf, 0)?;
    let flags = u32_at(buf, 8)?;
    let count = u32_at(buf, 12)? as usize;
    if count == 0 || count > MAX_RECEIVERS {
        return Err(INVALID);
    }
    let mut endpoints = [0; MAX_RECEIVERS];
    for (i, e) in endpoints.iter_mut().enumerate().take(count) {
        *e = u16_at(buf, 16 + 2 * i)?;
    }
    Ok(Relinquish {
        handle,
        flags,
        endpoints,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v1.1 send descriptor with the given receivers and ranges.
    pub(crate) fn build(
        layout: Layout,
        emad_size: u32,
        sender: u16,
        receivers: &[(u16, u8)],
        ranges: &[(u64, u32)],
    ) -> Vec<u8> {
        let hdr = header_size(layout);
        let esz = if layout == Layout::V1_0 {
            16
        } else {
            emad_size as usize
        };
        let comp = hdr + esz * receivers.len();
        let mut b = alloc::vec![0u8; comp + 16 + 16 * ranges.len()];
        b[0..2].copy_from_slice(&sender.to_le_bytes());
        match layout {
            Layout::V1_0 => b[2] = attr::NORMAL_WB_INNER as u8,
            Layout::V1_1 => {
                b[2..4].copy_from_slice(&attr::NORMAL_WB_INNER.to_le_bytes());
                b[24..28].copy_from_slice(&(esz as u32).to_le_bytes());
                b[32..36].copy_from_slice(&(hdr as u32).to_le_bytes());
            }
        }
        b[28..32].copy_from_slice(&(receivers.len() as u32).to_le_bytes());
        for (i, (id, p)) in receivers.iter().enumerate() {
            let at = hdr + i * esz;
            b[at..at + 2].copy_from_slice(&id.to_le_bytes());
            b[at + 2] = *p;
            b[at + 4..at + 8].copy_from_slice(&(comp as u32).to_le_bytes());
        }
        let total: u32 = ranges.iter().map(|r| r.1).sum();
        b[comp..comp + 4].copy_from_slice(&total.to_le_bytes());
        b[comp + 4..comp + 8].copy_from_slice(&(ranges.len() as u32).to_le_bytes());
        for (i, (a, n)) in ranges.iter().enumerate() {
            let at = comp + 16 + 16 * i;
            b[at..at + 8].copy_from_slice(&a.to_le_bytes());
            b[at + 8..at + 12].copy_from_slice(&n.to_le_bytes());
        }
        b
    }

    #[test]
    fn parses_both_layouts() {
        for (layout, esz) in [(Layout::V1_0, 16), (Layout::V1_1, 16), (Layout::V1_1, 32)] {
            let b = build(
                layout,
                esz,
                0,
                &[(0x8001, perm::RW), (0x8002, perm::RO)],
                &[(0x4000_0000, 2), (0x4001_0000, 1)],
            );
            let d = parse(&b, layout, Purpose::Send).unwrap();
            assert_eq!(d.receivers.len(), 2);
            assert_eq!(d.receivers[1].id, 0x8002);
            assert_eq!(d.total_pages, 3);
            assert_eq!(
                d.ranges[1],
                Range {
                    addr: 0x4001_0000,
                    pages: 1
                }
            );
            assert_eq!(d.attributes, attr::NORMAL_WB_INNER);
        }
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let b = build(
            Layout::V1_1,
            32,
            0,
            &[(0x8001, perm::RW)],
            &[(0x4000_0000, 2)],
        );
        for len in 0..b.len() {
            assert!(
                parse(&b[..len], Layout::V1_1, Purpose::Send).is_err(),
                "{len}"
            );
        }
    }

    #[test]
    fn bad_counts_offsets_and_ranges() {
        let good = build(
            Layout::V1_1,
            16,
            0,
            &[(0x8001, perm::RW)],
            &[(0x4000_0000, 2)],
        );
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            parse(&b, Layout::V1_1, Purpose::Send).unwrap_err()
        };
        assert_eq!(bad(&|b| b[28] = 0), INVALID, "no receiver");
        assert_eq!(
            bad(&|b| b[28] = 9),
            FfaError::NoMemory,
            "too many receivers"
        );
        assert_eq!(bad(&|b| b[24] = 24), INVALID, "emad size");
        assert_eq!(bad(&|b| b[32] = 40), INVALID, "emad offset unaligned");
        assert_eq!(bad(&|b| b[40] = 1), INVALID, "reserved header byte");
        assert_eq!(bad(&|b| b[48 + 8] = 1), INVALID, "reserved emad byte");
        // In the 32-byte form the implementation-defined value is at 8..24
        // and the reserved field at 24..32.
        let wide = build(
            Layout::V1_1,
            32,
            0,
            &[(0x8001, perm::RW)],
            &[(0x4000_0000, 2)],
        );
        let mut b = wide.clone();
        b[48 + 8] = 0xAB;
        let d = parse(&b, Layout::V1_1, Purpose::Send).unwrap();
        assert_eq!(d.receivers[0].impdef[0], 0xAB);
        let mut b = wide;
        b[48 + 24] = 1;
        assert_eq!(parse(&b, Layout::V1_1, Purpose::Send), Err(INVALID));
        assert_eq!(bad(&|b| b[64] = 3), INVALID, "page count mismatch");
        assert_eq!(bad(&|b| b[64 + 4] = 0), INVALID, "no ranges");
        assert_eq!(bad(&|b| b[64 + 4] = 2), INVALID, "range count past the end");
        assert_eq!(bad(&|b| b[80] = 1), INVALID, "unaligned range");
        assert_eq!(
            bad(&|b| b.extend_from_slice(&[0; 16])),
            INVALID,
            "bytes past the last constituent"
        );
        assert_eq!(
            bad(&|b| b[48 + 4] = 0),
            INVALID,
            "composite inside the header"
        );
        let overlap = build(
            Layout::V1_1,
            16,
            0,
            &[(0x8001, perm::RW)],
            &[(0x4000_0000, 2), (0x4000_1000, 1)],
        );
        assert_eq!(parse(&overlap, Layout::V1_1, Purpose::Send), Err(INVALID));
        let wraps = build(Layout::V1_1, 16, 0, &[(0x8001, perm::RW)], &[(!0xFFF, 2)]);
        assert_eq!(parse(&wraps, Layout::V1_1, Purpose::Send), Err(INVALID));
        let empty = build(
            Layout::V1_1,
            16,
            0,
            &[(0x8001, perm::RW)],
            &[(0x4000_0000, 0)],
        );
        assert_eq!(parse(&empty, Layout::V1_1, Purpose::Send), Err(INVALID));
    }

    #[test]
    fn response_round_trips_through_the_parser() {
        let ranges = [Range {
            addr: 0x4000_0000,
            pages: 3,
        }];
        for (layout, esz) in [(Layout::V1_0, 16), (Layout::V1_1, 16), (Layout::V1_1, 32)] {
            let r = Response {
                sender: 7,
                attributes: attr::NORMAL_WB_INNER,
                flags: Op::Lend.type_bits(),
                handle: 0x55,
                tag: 9,
                receivers: &[Receiver {
                    id: 0x8001,
                    perms: perm::RW | perm::NX,
                    flags: 0,
                    impdef: [0; 16],
                }],
            };
            let b = encode_response(&r, ranges.iter().copied(), layout, esz)
                .unwrap()
                .to_vec();
            let d = parse(&b, layout, Purpose::Send).unwrap();
            assert_eq!((d.sender, d.handle, d.tag), (7, 0x55, 9));
            assert_eq!(d.ranges, ranges);
            assert_eq!(d.receivers[0].perms, perm::RW | perm::NX);
        }
    }

    #[test]
    fn heapsort_sorts() {
        let mut v: Vec<Range> = [5u64, 1, 9, 3, 3, 0, 7, 2, 8]
            .iter()
            .map(|a| Range { addr: *a, pages: 1 })
            .collect();
        heapsort_by_addr(&mut v);
        let a: Vec<u64> = v.iter().map(|r| r.addr).collect();
        assert_eq!(a, [0, 1, 2, 3, 3, 5, 7, 8, 9]);
        heapsort_by_addr(&mut []);
    }

    #[test]
    fn relinquish_descriptor() {
        let mut b = [0u8; 18];
        b[0..8].copy_from_slice(&0x1234u64.to_le_bytes());
        b[12] = 1;
        b[16..18].copy_from_slice(&0x8002u16.to_le_bytes());
        let r = parse_relinquish(&b[..]).unwrap();
        assert_eq!((r.handle, r.endpoints()), (0x1234, &[0x8002][..]));
        assert!(parse_relinquish(&b[..17]).is_err());
        b[12] = 0;
        assert!(parse_relinquish(&b[..]).is_err());
    }
}
