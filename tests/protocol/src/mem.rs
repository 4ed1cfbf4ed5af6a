//! FF-A memory management descriptors, written from the specification for the
//! tests: a writer of transaction descriptors (send and retrieve request) and
//! relinquish descriptors, a reader of transaction descriptors (the retrieve
//! response). It shares no code with the SPMC (`spmc/src/mem/`), so that the
//! end-to-end checks compare two independent readings of the specification.
//!
//! Layouts (DEN0077 v1.2 §10.11 and DEN0140 v1.2 chapter 2, summarised in
//! docs/memory-sharing.md; offsets in bytes, little-endian):
//!
//! - v1.0 transaction descriptor (DEN0077 v1.0 Table 5.19), 32 bytes: sender
//!   u16 @0, attributes u8 @2, reserved u8 @3, flags u32 @4, handle u64 @8,
//!   tag u64 @16, reserved u32 @24, access descriptor count u32 @28; the
//!   16-byte access descriptors follow at 32.
//! - v1.1+ transaction descriptor (DEN0140 Table 2.x "Memory transaction
//!   descriptor"), 48 bytes: sender u16 @0, attributes u16 @2, flags u32 @4,
//!   handle u64 @8, tag u64 @16, access descriptor size u32 @24, count u32
//!   @28, offset u32 @32, 12 reserved bytes @36.
//! - Endpoint memory access descriptor (EMAD), 16 bytes (v1.0, v1.1) or 32
//!   (v1.2): endpoint u16 @0, permissions u8 @2, flags u8 @3, composite
//!   offset u32 @4, then for 32 bytes a 16-byte implementation-defined value
//!   @8 and a reserved u64 @24; for 16 bytes a reserved u64 @8.
//! - Composite memory region descriptor: total pages u32 @0, range count u32
//!   @4, reserved u64 @8, ranges @16 of 16 bytes each (address u64 @0, pages
//!   u32 @8, reserved u32 @12).
//! - Relinquish descriptor (DEN0140 "Descriptor to relinquish a memory
//!   region"): handle u64 @0, flags u32 @8, endpoint count u32 @12, endpoint
//!   IDs u16 from 16.
//!
//! Nothing here allocates or panics: every write and read is bounds-checked
//! and reports an [`Error`].

/// Function IDs of the memory management ABIs (DEN0077 v1.2 Table 13.1),
/// arm-ffa's values.
pub mod func {
    use arm_ffa::FuncId as F;

    /// FFA_MEM_DONATE (32-bit).
    pub const DONATE_32: u64 = F::MemDonate32 as u64;
    /// FFA_MEM_DONATE (64-bit).
    pub const DONATE_64: u64 = F::MemDonate64 as u64;
    /// FFA_MEM_LEND (32-bit).
    pub const LEND_32: u64 = F::MemLend32 as u64;
    /// FFA_MEM_LEND (64-bit).
    pub const LEND_64: u64 = F::MemLend64 as u64;
    /// FFA_MEM_SHARE (32-bit).
    pub const SHARE_32: u64 = F::MemShare32 as u64;
    /// FFA_MEM_SHARE (64-bit).
    pub const SHARE_64: u64 = F::MemShare64 as u64;
    /// FFA_MEM_RETRIEVE_REQ (32-bit).
    pub const RETRIEVE_REQ_32: u64 = F::MemRetrieveReq32 as u64;
    /// FFA_MEM_RETRIEVE_REQ (64-bit).
    pub const RETRIEVE_REQ_64: u64 = F::MemRetrieveReq64 as u64;
    /// FFA_MEM_RETRIEVE_RESP.
    pub const RETRIEVE_RESP: u64 = F::MemRetrieveResp as u64;
    /// FFA_MEM_RELINQUISH.
    pub const RELINQUISH: u64 = F::MemRelinquish as u64;
    /// FFA_MEM_RECLAIM.
    pub const RECLAIM: u64 = F::MemReclaim as u64;
    /// FFA_MEM_FRAG_RX.
    pub const FRAG_RX: u64 = F::MemFragRx as u64;
    /// FFA_MEM_FRAG_TX.
    pub const FRAG_TX: u64 = F::MemFragTx as u64;
}

/// Access permissions of an EMAD (DEN0140 "Memory access permissions").
pub mod perm {
    /// Data access read-only (bits 1:0 = 1).
    pub const RO: u8 = 0b01;
    /// Data access read-write (bits 1:0 = 2).
    pub const RW: u8 = 0b10;
    /// Data access mask.
    pub const DATA_MASK: u8 = 0b11;
    /// Instruction access: not executable (bits 3:2 = 1).
    pub const NX: u8 = 0b01 << 2;
    /// Instruction access: executable (bits 3:2 = 2).
    pub const X: u8 = 0b10 << 2;
    /// Instruction access mask.
    pub const INSTR_MASK: u8 = 0b11 << 2;
}

/// Memory region attributes (DEN0140 "Memory region attributes").
pub mod attr {
    /// Normal memory, write-back cacheable, inner shareable: type 0b10 (bits
    /// 5:4), cacheability 0b11 (bits 3:2), shareability 0b11 (bits 1:0).
    pub const NORMAL_WB_INNER: u16 = 0x2F;
    /// Memory type field (bits 5:4).
    pub const TYPE_MASK: u16 = 0b11 << 4;
    /// Memory type 0b11: reserved (a malformed descriptor).
    pub const TYPE_RESERVED: u16 = 0b11 << 4;
    /// Device-nGnRE: type 0b01 (bits 5:4), device attributes 0b01 (bits 3:2).
    pub const DEVICE_NGNRE: u16 = 0x14;
    /// Normal memory, non-cacheable, inner shareable.
    pub const NORMAL_NC_INNER: u16 = 0x27;
    /// Security attribute (v1.1+, bit 6): set by the SPMC in a retrieve
    /// response for normal-world memory.
    pub const NS: u16 = 1 << 6;
}

/// The implementation-defined value the checks put in EMADs (v1.2).
pub const IMPDEF: [u8; 16] = *b"conformance-mem!";

/// The memory region attributes a sender writes for `f` (a send
/// function, 32 or 64 bit) to `receivers` borrowers (DEN0140 §1.10): a
/// donor, or a lender to a single borrower, leaves them "not specified"
/// (0), the borrower naming them when it retrieves; a sharer, or a lender
/// to several, names normal write-back inner shareable memory.
pub fn sender_attributes(f: u64, receivers: usize) -> u16 {
    let base = f & !0x4000_0000;
    if base == func::DONATE_32 || (base == func::LEND_32 && receivers == 1) {
        0
    } else {
        attr::NORMAL_WB_INNER
    }
}

/// Transaction flags (DEN0140 "Flags usage in ..." tables).
pub mod flags {
    /// Send: zero memory before the first borrower maps it (lend, donate).
    /// Retrieve request: zero memory before retrieval. Relinquish: zero
    /// after relinquish. Reclaim (w3): zero before the owner gets it back.
    pub const ZERO: u32 = 1 << 0;
    /// Operation time slicing.
    pub const TIME_SLICE: u32 = 1 << 1;
    /// Retrieve request: zero memory after relinquish.
    pub const ZERO_AFTER_RELINQUISH: u32 = 1 << 2;
    /// Retrieve request/response: transaction type share (bits 4:3 = 1).
    pub const TYPE_SHARE: u32 = 1 << 3;
    /// Transaction type lend (bits 4:3 = 2).
    pub const TYPE_LEND: u32 = 2 << 3;
    /// Transaction type donate (bits 4:3 = 3).
    pub const TYPE_DONATE: u32 = 3 << 3;
    /// Transaction type mask.
    pub const TYPE_MASK: u32 = 3 << 3;
}

/// Size of a page (every address and size in a descriptor counts 4 KiB pages).
pub const PAGE: u64 = 4096;
/// Size of the v1.0 transaction descriptor header.
pub const HEADER_V1_0: usize = 32;
/// Size of the v1.1+ transaction descriptor header.
pub const HEADER_V1_1: usize = 48;
/// Size of the composite memory region descriptor header.
pub const COMPOSITE_HEADER: usize = 16;
/// Size of a constituent (address range) descriptor.
pub const RANGE_SIZE: usize = 16;
/// Size of the relinquish descriptor before its endpoint list.
pub const RELINQUISH_HEADER: usize = 16;

/// Byte offsets of the fields tests patch to make malformed descriptors.
pub mod off {
    /// Sender ID (both layouts).
    pub const SENDER: usize = 0;
    /// Attributes (u8 in v1.0, u16 in v1.1+).
    pub const ATTRIBUTES: usize = 2;
    /// v1.0: reserved byte after the attributes.
    pub const V1_0_RESERVED_BYTE: usize = 3;
    /// Flags.
    pub const FLAGS: usize = 4;
    /// Handle.
    pub const HANDLE: usize = 8;
    /// Tag.
    pub const TAG: usize = 16;
    /// v1.0: reserved u32.
    pub const V1_0_RESERVED_WORD: usize = 24;
    /// v1.1+: size of each EMAD.
    pub const EMAD_SIZE: usize = 24;
    /// Number of EMADs (both layouts).
    pub const EMAD_COUNT: usize = 28;
    /// v1.1+: offset of the first EMAD.
    pub const EMAD_OFFSET: usize = 32;
    /// v1.1+: the 12 reserved bytes.
    pub const V1_1_RESERVED: usize = 36;
    /// Inside an EMAD: endpoint ID.
    pub const EMAD_ENDPOINT: usize = 0;
    /// Inside an EMAD: permissions.
    pub const EMAD_PERMS: usize = 2;
    /// Inside an EMAD: flags.
    pub const EMAD_FLAGS: usize = 3;
    /// Inside an EMAD: composite offset.
    pub const EMAD_COMPOSITE: usize = 4;
    /// Inside a 16-byte EMAD: reserved u64.
    pub const EMAD16_RESERVED: usize = 8;
    /// Inside a 32-byte EMAD: implementation-defined value (16 bytes).
    pub const EMAD32_IMPDEF: usize = 8;
    /// Inside a 32-byte EMAD: reserved u64.
    pub const EMAD32_RESERVED: usize = 24;
    /// Inside the composite: total page count.
    pub const COMPOSITE_PAGES: usize = 0;
    /// Inside the composite: range count.
    pub const COMPOSITE_RANGES: usize = 4;
    /// Inside the composite: reserved u64.
    pub const COMPOSITE_RESERVED: usize = 8;
    /// Inside a range: address.
    pub const RANGE_ADDR: usize = 0;
    /// Inside a range: page count.
    pub const RANGE_PAGES: usize = 8;
    /// Inside a range: reserved u32.
    pub const RANGE_RESERVED: usize = 12;
}

/// What went wrong writing or reading a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The output buffer is too small for what must be written.
    TooSmall,
    /// The input ends before a field it must hold.
    Truncated,
    /// A value does not fit its field in this layout (for example v1.0
    /// attributes above 0xFF or an EMAD size other than 16 or 32).
    Field,
    /// An offset or count in the input is impossible (not aligned, inside
    /// the header, overflowing).
    Malformed,
}

/// The layout of a transaction descriptor, chosen by the negotiated version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// FF-A v1.0: 32-byte header, 16-byte EMADs right after it.
    V1_0,
    /// FF-A v1.1 and later: 48-byte header, EMADs of `emad_size` bytes (16,
    /// or 32 with the v1.2 implementation-defined field) at offset 48.
    V1_1 {
        /// 16 or 32.
        emad_size: usize,
    },
}

impl Layout {
    /// What a v1.1 endpoint uses: 16-byte EMADs.
    pub const V1_1_16: Layout = Layout::V1_1 { emad_size: 16 };
    /// What a v1.2 endpoint uses: 32-byte EMADs.
    pub const V1_2: Layout = Layout::V1_1 { emad_size: 32 };

    /// The layout an endpoint that negotiated `version` (0x1_0000 = 1.0)
    /// uses for its descriptors.
    pub fn for_version(version: u32) -> Layout {
        match version {
            0x1_0000 => Layout::V1_0,
            0x1_0001 => Layout::V1_1_16,
            _ => Layout::V1_2,
        }
    }

    /// Size of the transaction descriptor header.
    pub fn header_len(self) -> usize {
        match self {
            Layout::V1_0 => HEADER_V1_0,
            Layout::V1_1 { .. } => HEADER_V1_1,
        }
    }

    /// Size of one EMAD.
    pub fn emad_size(self) -> usize {
        match self {
            Layout::V1_0 => 16,
            Layout::V1_1 { emad_size } => emad_size,
        }
    }

    fn check(self) -> Result<(), Error> {
        match self.emad_size() {
            16 | 32 => Ok(()),
            _ => Err(Error::Field),
        }
    }
}

/// A receiver (borrower) and the access it is given or asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receiver {
    /// Endpoint ID.
    pub id: u16,
    /// Permissions ([`perm`]).
    pub perms: u8,
    /// EMAD flags (bit 0: non-retrieval borrower; normally 0).
    pub flags: u8,
}

impl Receiver {
    /// A receiver with permissions `perms` and no flags.
    pub const fn new(id: u16, perms: u8) -> Self {
        Self {
            id,
            perms,
            flags: 0,
        }
    }
}

/// One constituent: `pages` 4 KiB pages from `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Address (physical for the normal world, IPA for a partition).
    pub addr: u64,
    /// Number of pages.
    pub pages: u32,
}

/// The constituents of a descriptor, by index (so that long lists need not
/// exist in memory).
pub trait Ranges {
    /// How many there are.
    fn count(&self) -> usize;
    /// Constituent `i` (`i < count()`).
    fn get(&self, i: usize) -> Range;
}

impl<const N: usize> Ranges for [Range; N] {
    fn count(&self) -> usize {
        N
    }
    fn get(&self, i: usize) -> Range {
        self.as_slice()
            .get(i)
            .copied()
            .unwrap_or(Range { addr: 0, pages: 0 })
    }
}

/// A slice of constituents as [`Ranges`].
#[derive(Clone, Copy, Debug)]
pub struct List<'a>(pub &'a [Range]);

impl Ranges for List<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> Range {
        self.0
            .get(i)
            .copied()
            .unwrap_or(Range { addr: 0, pages: 0 })
    }
}

/// `count` ranges of `pages` pages each, the first at `base`, each `stride`
/// bytes after the previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strided {
    /// Address of the first range.
    pub base: u64,
    /// Pages per range.
    pub pages: u32,
    /// Distance between the starts of two ranges, in bytes.
    pub stride: u64,
    /// Number of ranges.
    pub count: usize,
}

impl Ranges for Strided {
    fn count(&self) -> usize {
        self.count
    }
    fn get(&self, i: usize) -> Range {
        Range {
            addr: self.base.wrapping_add(self.stride.wrapping_mul(i as u64)),
            pages: self.pages,
        }
    }
}

/// A transaction descriptor: a send (share, lend, donate: with ranges) or a
/// retrieve request (normally without ranges: composite offset 0).
#[derive(Clone, Copy)]
pub struct Transaction<'a> {
    /// The layout to write.
    pub layout: Layout,
    /// The owner's endpoint ID.
    pub sender: u16,
    /// Memory region attributes ([`attr`]).
    pub attributes: u16,
    /// Flags ([`flags`]).
    pub flags: u32,
    /// 0 in a send; the handle in a retrieve request.
    pub handle: u64,
    /// The tag.
    pub tag: u64,
    /// Receivers, one EMAD each.
    pub receivers: &'a [Receiver],
    /// Constituents; `None` writes no composite (every EMAD's composite
    /// offset is 0), as a retrieve request normally does.
    pub ranges: Option<&'a dyn Ranges>,
}

impl core::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Transaction")
            .field("layout", &self.layout)
            .field("sender", &self.sender)
            .field("flags", &self.flags)
            .field("handle", &self.handle)
            .field("receivers", &self.receivers.len())
            .field("ranges", &self.ranges.map(|r| r.count()))
            .finish()
    }
}

impl<'a> Transaction<'a> {
    /// A send of `ranges` from `sender` to `receivers` with normal
    /// write-back memory attributes, no flags, handle 0 and tag 0.
    pub fn send(
        layout: Layout,
        sender: u16,
        receivers: &'a [Receiver],
        ranges: &'a dyn Ranges,
    ) -> Self {
        Self {
            layout,
            sender,
            attributes: attr::NORMAL_WB_INNER,
            flags: 0,
            handle: 0,
            tag: 0,
            receivers,
            ranges: Some(ranges),
        }
    }

    /// A retrieve request for `handle` sent by `sender`, asking the access
    /// in `receivers` (the caller's own EMAD first), with transaction flags
    /// `flags`, the send's attributes and tag 0.
    pub fn retrieve(
        layout: Layout,
        sender: u16,
        handle: u64,
        flags: u32,
        receivers: &'a [Receiver],
    ) -> Self {
        Self {
            layout,
            sender,
            attributes: attr::NORMAL_WB_INNER,
            flags,
            handle,
            tag: 0,
            receivers,
            ranges: None,
        }
    }

    /// Offset of EMAD `i`.
    pub fn emad_offset(&self, i: usize) -> usize {
        self.layout.header_len() + i * self.layout.emad_size()
    }

    /// Offset of the composite (0 when there is none).
    pub fn composite_offset(&self) -> usize {
        match self.ranges {
            Some(_) => self.emad_offset(self.receivers.len()),
            None => 0,
        }
    }

    /// Offset of constituent `i` (meaningful only with ranges).
    pub fn range_offset(&self, i: usize) -> usize {
        self.emad_offset(self.receivers.len()) + COMPOSITE_HEADER + i * RANGE_SIZE
    }

    /// Total length of the descriptor.
    pub fn len(&self) -> usize {
        match self.ranges {
            Some(r) => self.range_offset(r.count()),
            None => self.emad_offset(self.receivers.len()),
        }
    }

    /// Whether the descriptor is empty (never: it always has a header).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Sum of the constituents' pages.
    pub fn total_pages(&self) -> u64 {
        self.ranges
            .map_or(0, |r| (0..r.count()).map(|i| r.get(i).pages as u64).sum())
    }

    /// The length of the fragment that starts at `offset` and holds at most
    /// `max` bytes: the first fragment ends after the composite header or a
    /// whole constituent, later ones hold whole constituents (no fragment
    /// splits a constituent). 0 if `offset` is at or past the end or not
    /// on such a boundary, or `max` is too small for one piece.
    pub fn fragment_len(&self, offset: usize, max: usize) -> usize {
        let len = self.len();
        if offset >= len {
            return 0;
        }
        let first_range = self.range_offset(0);
        if offset == 0 {
            if self.ranges.is_none() || len <= max {
                return if len <= max { len } else { 0 };
            }
            if first_range > max {
                return 0;
            }
            let whole = (max - first_range) / RANGE_SIZE * RANGE_SIZE;
            return (first_range + whole).min(len);
        }
        if offset < first_range || !(offset - first_range).is_multiple_of(RANGE_SIZE) {
            return 0;
        }
        (max / RANGE_SIZE * RANGE_SIZE).min(len - offset)
    }

    /// Writes the whole descriptor to the start of `out`; returns its length.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, Error> {
        let len = self.len();
        if out.len() < len {
            return Err(Error::TooSmall);
        }
        self.write_part(0, &mut out[..len])
    }

    /// Writes bytes `[offset, offset + out.len())` of the descriptor into
    /// `out` (bytes past its end are left alone); returns how many bytes were
    /// written. This is how a long descriptor is cut into fragments without
    /// ever existing in full.
    pub fn write_part(&self, offset: usize, out: &mut [u8]) -> Result<usize, Error> {
        self.layout.check()?;
        if let Layout::V1_0 = self.layout
            && self.attributes > 0xFF
        {
            return Err(Error::Field);
        }
        let len = self.len();
        if offset >= len {
            return Ok(0);
        }
        let end = len.min(offset + out.len());
        let mut w = Window {
            out,
            start: offset,
            end,
        };
        // Header.
        let mut h = [0u8; HEADER_V1_1];
        put16(&mut h, off::SENDER, self.sender);
        put32(&mut h, off::FLAGS, self.flags);
        put64(&mut h, off::HANDLE, self.handle);
        put64(&mut h, off::TAG, self.tag);
        put32(&mut h, off::EMAD_COUNT, self.receivers.len() as u32);
        match self.layout {
            Layout::V1_0 => h[off::ATTRIBUTES] = self.attributes as u8,
            Layout::V1_1 { emad_size } => {
                put16(&mut h, off::ATTRIBUTES, self.attributes);
                put32(&mut h, off::EMAD_SIZE, emad_size as u32);
                put32(&mut h, off::EMAD_OFFSET, HEADER_V1_1 as u32);
            }
        }
        w.put(0, &h[..self.layout.header_len()]);
        // EMADs.
        let composite = self.composite_offset() as u32;
        for (i, r) in self.receivers.iter().enumerate() {
            let at = self.emad_offset(i);
            if at >= end {
                break;
            }
            let mut e = [0u8; 32];
            put16(&mut e, off::EMAD_ENDPOINT, r.id);
            e[off::EMAD_PERMS] = r.perms;
            e[off::EMAD_FLAGS] = r.flags;
            put32(&mut e, off::EMAD_COMPOSITE, composite);
            w.put(at, &e[..self.layout.emad_size()]);
        }
        // Composite and constituents.
        if let Some(ranges) = self.ranges {
            let at = self.composite_offset();
            let mut c = [0u8; COMPOSITE_HEADER];
            put32(&mut c, off::COMPOSITE_PAGES, self.total_pages() as u32);
            put32(&mut c, off::COMPOSITE_RANGES, ranges.count() as u32);
            w.put(at, &c);
            let first = self.range_offset(0);
            let skip = offset.saturating_sub(first) / RANGE_SIZE;
            for i in skip..ranges.count() {
                let at = self.range_offset(i);
                if at >= end {
                    break;
                }
                let r = ranges.get(i);
                let mut b = [0u8; RANGE_SIZE];
                put64(&mut b, off::RANGE_ADDR, r.addr);
                put32(&mut b, off::RANGE_PAGES, r.pages);
                w.put(at, &b);
            }
        }
        Ok(end - offset)
    }
}

/// The part of a descriptor being written: bytes `[start, end)` go to `out`.
struct Window<'o> {
    out: &'o mut [u8],
    start: usize,
    end: usize,
}

impl Window<'_> {
    /// Copies the piece `bytes`, which sits at `at` in the descriptor, as far
    /// as it overlaps the window.
    fn put(&mut self, at: usize, bytes: &[u8]) {
        let lo = at.max(self.start);
        let hi = (at + bytes.len()).min(self.end);
        if lo >= hi {
            return;
        }
        self.out[lo - self.start..hi - self.start].copy_from_slice(&bytes[lo - at..hi - at]);
    }
}

/// A relinquish descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Relinquish<'a> {
    /// The handle.
    pub handle: u64,
    /// Flags (bit 0: zero memory after relinquish; bit 1: time slicing).
    pub flags: u32,
    /// The endpoints that relinquish (the caller).
    pub endpoints: &'a [u16],
}

impl Relinquish<'_> {
    /// Its length.
    pub fn len(&self) -> usize {
        RELINQUISH_HEADER + 2 * self.endpoints.len()
    }

    /// Whether it is empty (never).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes it to the start of `out`; returns its length.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, Error> {
        let len = self.len();
        let out = out.get_mut(..len).ok_or(Error::TooSmall)?;
        out.fill(0);
        put64(out, 0, self.handle);
        put32(out, 8, self.flags);
        put32(out, 12, self.endpoints.len() as u32);
        for (i, id) in self.endpoints.iter().enumerate() {
            put16(out, RELINQUISH_HEADER + 2 * i, *id);
        }
        Ok(len)
    }
}

/// An endpoint memory access descriptor, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emad {
    /// Endpoint ID.
    pub endpoint: u16,
    /// Permissions.
    pub perms: u8,
    /// Flags.
    pub flags: u8,
    /// Offset of the composite it points at.
    pub composite_offset: u32,
    /// The reserved u64 (must be 0).
    pub reserved: u64,
    /// The implementation-defined value (32-byte EMADs; else zero).
    pub impdef: [u8; 16],
}

/// A composite memory region descriptor header, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Composite {
    /// Where it starts.
    pub offset: usize,
    /// Total page count.
    pub total_pages: u32,
    /// Number of constituents.
    pub range_count: u32,
    /// The reserved u64 (must be 0).
    pub reserved: u64,
}

/// A transaction descriptor (a retrieve response, or any descriptor this
/// module wrote), read from a buffer that holds at least its header and
/// EMADs. Constituents past the end of the buffer read as
/// [`Error::Truncated`]: a fragmented response is read piece by piece or
/// reassembled first.
#[derive(Clone, Copy, Debug)]
pub struct Descriptor<'a> {
    buf: &'a [u8],
    v1_0: bool,
}

impl<'a> Descriptor<'a> {
    /// Reads `buf` as a v1.0 descriptor (`v1_0`) or a v1.1+ one; checks that
    /// the header and the EMAD table lie inside `buf` and that the v1.1+
    /// EMAD size and offset are sane (16 or 32; 16-byte aligned, after the header).
    pub fn parse(buf: &'a [u8], v1_0: bool) -> Result<Self, Error> {
        let d = Self { buf, v1_0 };
        let header = if v1_0 { HEADER_V1_0 } else { HEADER_V1_1 };
        if buf.len() < header {
            return Err(Error::Truncated);
        }
        if !v1_0 {
            let size = d.emad_size();
            if size != 16 && size != 32 {
                return Err(Error::Field);
            }
            let o = d.emad_offset();
            if o < HEADER_V1_1 || !o.is_multiple_of(16) {
                return Err(Error::Malformed);
            }
        }
        let end = (d.emad_count() as usize)
            .checked_mul(d.emad_size())
            .and_then(|n| n.checked_add(d.emad_offset()))
            .ok_or(Error::Malformed)?;
        if end > buf.len() {
            return Err(Error::Truncated);
        }
        Ok(d)
    }

    /// Whether this is a v1.0 descriptor.
    pub fn is_v1_0(&self) -> bool {
        self.v1_0
    }

    /// Sender (owner) ID.
    pub fn sender(&self) -> u16 {
        get16(self.buf, off::SENDER)
    }

    /// Memory region attributes (8 bits in v1.0).
    pub fn attributes(&self) -> u16 {
        if self.v1_0 {
            self.buf[off::ATTRIBUTES] as u16
        } else {
            get16(self.buf, off::ATTRIBUTES)
        }
    }

    /// Flags.
    pub fn flags(&self) -> u32 {
        get32(self.buf, off::FLAGS)
    }

    /// Handle.
    pub fn handle(&self) -> u64 {
        get64(self.buf, off::HANDLE)
    }

    /// Tag.
    pub fn tag(&self) -> u64 {
        get64(self.buf, off::TAG)
    }

    /// Whether every reserved byte of the header is zero.
    pub fn header_reserved_zero(&self) -> bool {
        if self.v1_0 {
            self.buf[off::V1_0_RESERVED_BYTE] == 0 && get32(self.buf, off::V1_0_RESERVED_WORD) == 0
        } else {
            self.buf[off::V1_1_RESERVED..HEADER_V1_1]
                .iter()
                .all(|b| *b == 0)
        }
    }

    /// Size of each EMAD.
    pub fn emad_size(&self) -> usize {
        if self.v1_0 {
            16
        } else {
            get32(self.buf, off::EMAD_SIZE) as usize
        }
    }

    /// Number of EMADs.
    pub fn emad_count(&self) -> u32 {
        get32(self.buf, off::EMAD_COUNT)
    }

    /// Offset of the first EMAD.
    pub fn emad_offset(&self) -> usize {
        if self.v1_0 {
            HEADER_V1_0
        } else {
            get32(self.buf, off::EMAD_OFFSET) as usize
        }
    }

    /// EMAD `i`.
    pub fn emad(&self, i: usize) -> Result<Emad, Error> {
        if i >= self.emad_count() as usize {
            return Err(Error::Truncated);
        }
        let size = self.emad_size();
        let at = self.emad_offset() + i * size;
        let e = self.buf.get(at..at + size).ok_or(Error::Truncated)?;
        let mut impdef = [0u8; 16];
        let reserved = if size == 32 {
            impdef.copy_from_slice(&e[off::EMAD32_IMPDEF..off::EMAD32_IMPDEF + 16]);
            get64(e, off::EMAD32_RESERVED)
        } else {
            get64(e, off::EMAD16_RESERVED)
        };
        Ok(Emad {
            endpoint: get16(e, off::EMAD_ENDPOINT),
            perms: e[off::EMAD_PERMS],
            flags: e[off::EMAD_FLAGS],
            composite_offset: get32(e, off::EMAD_COMPOSITE),
            reserved,
            impdef,
        })
    }

    /// The EMAD of endpoint `id`, if there is one.
    pub fn emad_of(&self, id: u16) -> Option<Emad> {
        (0..self.emad_count() as usize)
            .filter_map(|i| self.emad(i).ok())
            .find(|e| e.endpoint == id)
    }

    /// The composite that `emad` points at.
    pub fn composite(&self, emad: &Emad) -> Result<Composite, Error> {
        let at = emad.composite_offset as usize;
        if at == 0 || !at.is_multiple_of(8) {
            return Err(Error::Malformed);
        }
        let c = self
            .buf
            .get(at..at + COMPOSITE_HEADER)
            .ok_or(Error::Truncated)?;
        Ok(Composite {
            offset: at,
            total_pages: get32(c, off::COMPOSITE_PAGES),
            range_count: get32(c, off::COMPOSITE_RANGES),
            reserved: get64(c, off::COMPOSITE_RESERVED),
        })
    }

    /// Constituent `i` of `composite` (with its reserved word).
    pub fn range(&self, composite: &Composite, i: usize) -> Result<(Range, u32), Error> {
        if i >= composite.range_count as usize {
            return Err(Error::Malformed);
        }
        let at = composite.offset + COMPOSITE_HEADER + i * RANGE_SIZE;
        let b = self.buf.get(at..at + RANGE_SIZE).ok_or(Error::Truncated)?;
        Ok((
            Range {
                addr: get64(b, off::RANGE_ADDR),
                pages: get32(b, off::RANGE_PAGES),
            },
            get32(b, off::RANGE_RESERVED),
        ))
    }
}

/// Reads the constituent at byte offset `at` of `buf` (for fragments that
/// hold only constituents).
pub fn range_at(buf: &[u8], at: usize) -> Result<Range, Error> {
    let b = buf.get(at..at + RANGE_SIZE).ok_or(Error::Truncated)?;
    Ok(Range {
        addr: get64(b, off::RANGE_ADDR),
        pages: get32(b, off::RANGE_PAGES),
    })
}

/// Writes a little-endian u16 at `at` (the caller keeps `at` inside `b`).
pub fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Writes a little-endian u32 at `at`.
pub fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Writes a little-endian u64 at `at`.
pub fn put64(b: &mut [u8], at: usize, v: u64) {
    if let Some(s) = b.get_mut(at..at + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Reads a little-endian u16 at `at` (0 outside `b`).
pub fn get16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

/// Reads a little-endian u32 at `at` (0 outside `b`).
pub fn get32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// Reads a little-endian u64 at `at` (0 outside `b`).
pub fn get64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    const RANGES: [Range; 2] = [
        Range {
            addr: 0x7000_0000,
            pages: 2,
        },
        Range {
            addr: 0x7001_0000,
            pages: 1,
        },
    ];

    fn full(t: &Transaction<'_>) -> Vec<u8> {
        let mut b = vec![0xEEu8; t.len()];
        assert_eq!(t.write(&mut b), Ok(t.len()));
        b
    }

    /// The v1.2 layout byte by byte, from DEN0140's tables.
    #[test]
    fn v1_2_share_bytes() {
        let rx = [Receiver::new(0x8001, perm::RW | perm::NX)];
        let mut t = Transaction::send(Layout::V1_2, 0, &rx, &RANGES);
        t.tag = 0x1122_3344_5566_7788;
        t.flags = flags::ZERO;
        let b = full(&t);
        assert_eq!(b.len(), 48 + 32 + 16 + 32);
        let mut want = vec![0u8; 128];
        want[2] = 0x2F; // attributes
        want[4] = 1; // flags
        want[16..24].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        want[24] = 32; // EMAD size
        want[28] = 1; // EMAD count
        want[32] = 48; // EMAD offset
        want[48..50].copy_from_slice(&0x8001u16.to_le_bytes());
        want[50] = 0b0110; // RW, NX
        want[52] = 80; // composite offset
        want[80] = 3; // total pages
        want[84] = 2; // range count
        want[96..104].copy_from_slice(&0x7000_0000u64.to_le_bytes());
        want[104] = 2;
        want[112..120].copy_from_slice(&0x7001_0000u64.to_le_bytes());
        want[120] = 1;
        assert_eq!(b, want);
    }

    #[test]
    fn v1_0_layout_bytes() {
        let rx = [
            Receiver::new(0x8002, perm::RO),
            Receiver::new(0x8003, perm::RO),
        ];
        let one = [RANGES[0]];
        let t = Transaction::send(Layout::V1_0, 0x8001, &rx, &one);
        let b = full(&t);
        assert_eq!(b.len(), 32 + 2 * 16 + 16 + 16);
        assert_eq!(&b[0..4], &[0x01, 0x80, 0x2F, 0]);
        assert_eq!(get32(&b, 24), 0, "reserved word");
        assert_eq!(get32(&b, 28), 2, "EMAD count");
        assert_eq!(get16(&b, 32), 0x8002);
        assert_eq!(get32(&b, 36), 64, "composite offset of the first EMAD");
        assert_eq!(get16(&b, 48), 0x8003);
        assert_eq!(get32(&b, 52), 64, "same composite for the second");
        assert_eq!(get32(&b, 64), 2, "total pages");
        assert_eq!(get64(&b, 80), 0x7000_0000);
    }

    #[test]
    fn v1_1_with_16_byte_emads() {
        let rx = [Receiver::new(0x8001, perm::RW)];
        let t = Transaction::send(Layout::V1_1_16, 0, &rx, &RANGES);
        let b = full(&t);
        assert_eq!(b.len(), 48 + 16 + 16 + 32);
        assert_eq!(get32(&b, off::EMAD_SIZE), 16);
        assert_eq!(get32(&b, 48 + off::EMAD_COMPOSITE), 64);
    }

    #[test]
    fn v1_0_refuses_wide_attributes_and_odd_emad_sizes() {
        let rx = [Receiver::new(0x8001, perm::RW)];
        let mut t = Transaction::send(Layout::V1_0, 0, &rx, &RANGES);
        t.attributes = 0x12F;
        assert_eq!(t.write(&mut [0; 256]), Err(Error::Field));
        let t = Transaction::send(Layout::V1_1 { emad_size: 24 }, 0, &rx, &RANGES);
        assert_eq!(t.write(&mut [0; 256]), Err(Error::Field));
        let t = Transaction::send(Layout::V1_2, 0, &rx, &RANGES);
        assert_eq!(t.write(&mut [0; 16]), Err(Error::TooSmall));
    }

    #[test]
    fn retrieve_request_has_no_composite() {
        let rx = [Receiver::new(0x8001, perm::RO)];
        let t = Transaction::retrieve(Layout::V1_2, 0, 0xAB_0000_0001, flags::TYPE_SHARE, &rx);
        let b = full(&t);
        assert_eq!(b.len(), 80);
        assert_eq!(get64(&b, off::HANDLE), 0xAB_0000_0001);
        assert_eq!(get32(&b, off::FLAGS), flags::TYPE_SHARE);
        assert_eq!(get32(&b, 48 + off::EMAD_COMPOSITE), 0);
    }

    /// Parts written separately join into the whole, for any cut.
    #[test]
    fn parts_make_the_whole() {
        let rx = [
            Receiver::new(0x8001, perm::RW),
            Receiver::new(0x8002, perm::RW),
        ];
        let ranges = Strided {
            base: 0x7000_0000,
            pages: 1,
            stride: 0x2000,
            count: 40,
        };
        for layout in [Layout::V1_0, Layout::V1_1_16, Layout::V1_2] {
            let t = Transaction::send(layout, 0, &rx, &ranges);
            let whole = full(&t);
            for cut in [1, 7, 16, 33, 100, 4096] {
                let mut joined = Vec::new();
                let mut at = 0;
                while at < t.len() {
                    let mut part = vec![0u8; cut];
                    let n = t.write_part(at, &mut part).unwrap();
                    joined.extend_from_slice(&part[..n]);
                    at += n;
                }
                assert_eq!(joined, whole, "{layout:?} cut {cut}");
            }
        }
    }

    #[test]
    fn fragments_hold_whole_constituents() {
        let rx = [Receiver::new(0x8001, perm::RW)];
        let ranges = Strided {
            base: 0x7000_0000,
            pages: 1,
            stride: 0x2000,
            count: 300,
        };
        let t = Transaction::send(Layout::V1_2, 0, &rx, &ranges);
        assert_eq!(t.len(), 48 + 32 + 16 + 300 * 16);
        let first = t.fragment_len(0, 4096);
        assert_eq!(first, 96 + 250 * 16);
        let second = t.fragment_len(first, 4096);
        assert_eq!(second, 50 * 16);
        assert_eq!(first + second, t.len());
        assert_eq!(t.fragment_len(first + 8, 4096), 0, "inside a constituent");
        assert_eq!(t.fragment_len(t.len(), 4096), 0, "past the end");
        let small = Transaction::send(Layout::V1_2, 0, &rx, &RANGES);
        assert_eq!(small.fragment_len(0, 4096), small.len());
    }

    #[test]
    fn reader_reads_what_the_writer_wrote() {
        let rx = [
            Receiver::new(0x8001, perm::RW | perm::NX),
            Receiver::new(0x8002, perm::RO),
        ];
        for layout in [Layout::V1_0, Layout::V1_1_16, Layout::V1_2] {
            let mut t = Transaction::send(layout, 0x8003, &rx, &RANGES);
            t.tag = 77;
            t.handle = 0x55;
            t.flags = flags::TYPE_LEND;
            let b = full(&t);
            let d = Descriptor::parse(&b, layout == Layout::V1_0).unwrap();
            assert_eq!(d.sender(), 0x8003);
            assert_eq!(d.attributes(), attr::NORMAL_WB_INNER);
            assert_eq!(d.flags(), flags::TYPE_LEND);
            assert_eq!(d.handle(), 0x55);
            assert_eq!(d.tag(), 77);
            assert!(d.header_reserved_zero());
            assert_eq!(d.emad_count(), 2);
            assert_eq!(d.emad_size(), layout.emad_size());
            let e = d.emad_of(0x8002).unwrap();
            assert_eq!(e.perms, perm::RO);
            assert_eq!(e.reserved, 0);
            let c = d.composite(&e).unwrap();
            assert_eq!((c.total_pages, c.range_count), (3, 2));
            assert_eq!(d.range(&c, 1), Ok((RANGES[1], 0)));
            assert_eq!(d.range(&c, 2), Err(Error::Malformed));
            // A buffer that ends inside the constituents.
            let cut = Descriptor::parse(&b[..b.len() - 8], layout == Layout::V1_0).unwrap();
            assert_eq!(cut.range(&c, 0), Ok((RANGES[0], 0)));
            assert_eq!(cut.range(&c, 1), Err(Error::Truncated));
        }
    }

    /// A retrieve response as the SPMC writes it for a v1.2 caller: the NS
    /// attribute, the 32-byte EMAD with its implementation-defined field.
    #[test]
    fn reads_a_hand_made_response() {
        let mut b = vec![0u8; 48 + 32 + 16 + 16];
        put16(&mut b, 0, 0);
        put16(&mut b, 2, attr::NORMAL_WB_INNER | attr::NS);
        put32(&mut b, 4, flags::TYPE_SHARE);
        put64(&mut b, 8, 0x1234);
        put32(&mut b, 24, 32);
        put32(&mut b, 28, 1);
        put32(&mut b, 32, 48);
        put16(&mut b, 48, 0x8001);
        b[50] = perm::RW | perm::NX;
        put32(&mut b, 52, 80);
        b[56] = 0xA5; // implementation-defined value
        put32(&mut b, 80, 4);
        put32(&mut b, 84, 1);
        put64(&mut b, 96, 0x7000_0000);
        put32(&mut b, 104, 4);
        let d = Descriptor::parse(&b, false).unwrap();
        assert_eq!(d.attributes() & attr::NS, attr::NS);
        let e = d.emad(0).unwrap();
        assert_eq!(e.impdef[0], 0xA5);
        assert_eq!(e.reserved, 0);
        let c = d.composite(&e).unwrap();
        assert_eq!(
            d.range(&c, 0).unwrap().0,
            Range {
                addr: 0x7000_0000,
                pages: 4
            }
        );
        assert_eq!(range_at(&b, 96).unwrap().pages, 4);
    }

    #[test]
    fn parse_refuses_impossible_headers() {
        assert_eq!(
            Descriptor::parse(&[0u8; 40], false).unwrap_err(),
            Error::Truncated
        );
        let mut b = vec![0u8; 96];
        put32(&mut b, off::EMAD_SIZE, 24);
        assert_eq!(Descriptor::parse(&b, false).unwrap_err(), Error::Field);
        put32(&mut b, off::EMAD_SIZE, 16);
        put32(&mut b, off::EMAD_OFFSET, 40);
        assert_eq!(Descriptor::parse(&b, false).unwrap_err(), Error::Malformed);
        put32(&mut b, off::EMAD_OFFSET, 48);
        put32(&mut b, off::EMAD_COUNT, 4);
        assert_eq!(Descriptor::parse(&b, false).unwrap_err(), Error::Truncated);
        put32(&mut b, off::EMAD_COUNT, u32::MAX);
        assert!(Descriptor::parse(&b, false).is_err());
    }

    #[test]
    fn relinquish_bytes() {
        let r = Relinquish {
            handle: 0x0102_0304_0506_0708,
            flags: flags::ZERO,
            endpoints: &[0x8002],
        };
        let mut b = [0xEEu8; 20];
        assert_eq!(r.write(&mut b), Ok(18));
        assert_eq!(
            &b[..18],
            &[8, 7, 6, 5, 4, 3, 2, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0x02, 0x80]
        );
        assert_eq!(r.write(&mut [0u8; 17]), Err(Error::TooSmall));
    }

    #[test]
    fn layout_per_version() {
        assert_eq!(Layout::for_version(0x1_0000), Layout::V1_0);
        assert_eq!(Layout::for_version(0x1_0001).emad_size(), 16);
        assert_eq!(Layout::for_version(0x1_0002).emad_size(), 32);
        assert_eq!(Layout::V1_0.header_len(), 32);
    }
}

/// What a general VM's memory-management calls are refused with by the
/// layer that acts for it, in both modes: the reference hypervisor on QEMU
/// virt (`tests/hypervisor/src/share.rs`, the vtee stage's `vm-mem-*`
/// checks) and the rpi4 image's VM layer (`platform-rpi4/src/share.rs`,
/// the `rpi4-*` share checks). Both modes' checks assert these, so the
/// answers stay the same (issue 14, "Bad input"); where the spec leaves
/// room, Hafnium's choice (docs/hypervisor.md).
pub mod vm_refusal {
    use crate::ffa::{DENIED, INVALID_PARAMETERS};

    /// A constituent outside the VM's own RAM, unaligned or empty.
    pub const NOT_OWN_RAM: i32 = INVALID_PARAMETERS;
    /// A constituent in the VM's first page (the reference hypervisor's
    /// mailbox, the rpi4 guest's program).
    pub const FIRST_PAGE: i32 = DENIED;
    /// A descriptor whose sender is not the VM.
    pub const FORGED_SENDER: i32 = INVALID_PARAMETERS;
    /// Another user's trusted VM, or a partition not bound to the VM, as
    /// borrower (the core's per-user rule).
    pub const NOT_ITS_TEE: i32 = DENIED;
    /// FFA_MEM_RECLAIM of a handle the VM does not own.
    pub const NOT_OWN_HANDLE: i32 = INVALID_PARAMETERS;
    /// A second RX/TX pair.
    pub const SECOND_RXTX: i32 = DENIED;
    /// An RX/TX pair outside its RAM, unaligned, the same page twice, or
    /// not one page each; FFA_RXTX_UNMAP naming an ID or without a pair.
    pub const BAD_RXTX: i32 = INVALID_PARAMETERS;
    /// A send without an RX/TX pair.
    pub const NO_TX: i32 = INVALID_PARAMETERS;
}
