//! FF-A memory management: share, lend and donate, retrieve, relinquish and
//! reclaim, with fragmentation both ways (DEN0077 v1.2 chapter 11 for the
//! ABIs, DEN0140 v1.2 for the descriptors and the ownership rules).
//!
//! The contract, the choices the specification leaves open and the error
//! table are in `docs/memory-sharing.md`; the rules in short:
//!
//! - the normal world sends normal-world RAM to the partitions its VM may
//!   reach (the binding policy); a static partition sends its own memory to
//!   other static partitions, and normal-world memory it owns to one
//!   normal-world borrower that may reach it; a vTEE instance sends only
//!   normal-world memory its VM donated to it, to that VM; the normal world
//!   borrows (retrieve, relinquish, FFA_MEM_FRAG_RX, the hypervisor retrieve
//!   request) but gets no secure memory;
//! - the SPMC keeps, per handle, the owner, the physical runs, the borrowers
//!   and their state, and changes the stage-2 tables at each step: lend and
//!   donate unmap a partition owner's pages when the send completes, retrieve
//!   maps them for the borrower (at IPA = PA, in the IPA space of the memory's
//!   security state), relinquish unmaps them, reclaim gives the owner its
//!   access back; every unmap invalidates the TLB for that VMID and space;
//! - every check runs before anything changes, so an error leaves no trace;
//! - everything a caller sizes is allocated fallibly, in page-sized blocks
//!   ([`store`]), within per-owner quotas ([`OWNER_RUNS`] and the others):
//!   a full heap or quota is `NO_MEMORY` with nothing changed, never a panic.

pub mod desc;
pub mod ownership;
pub mod store;

use alloc::vec::Vec;

use log::debug;

use crate::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use crate::ffa::{FfaError, PartitionId, Regs, Version, func, is_secure_id};
use crate::ids::{PartId, SlotId, VmId};
use crate::manager::{Endpoint, Spmc};
use crate::partition::{PartitionState, RxState};
use crate::platform::Platform;
use crate::policy::Kind as PolicyKind;
use crate::sp_manifest::Access;
use crate::stage2::Kind as S2Kind;
use desc::{Layout, Op, Purpose, Range, Receiver, attr, flags, perm};
use ownership::PhysRange;
use store::{Bytes, ChunkVec};

/// Longest transaction descriptor accepted (in fragments if need be).
pub const MAX_DESCRIPTOR: u32 = 256 * 1024;
/// Most transactions in flight, sends still being fragmented included, of
/// all owners together.
pub const MAX_IN_FLIGHT: usize = 128;

// Per-owner quotas (docs/memory-sharing.md, "Heap"). An owner is a
// normal-world VM (the descriptor's sender; endpoint 0 without a
// hypervisor) or a partition. Each bounds what one owner can make the SPMC
// keep on its heap, so that one VM (or partition) that exhausts its quota
// gets NO_MEMORY while the others still share; the totals bound them all
// together, below the heap (1.5 MiB on QEMU, shared with stage-2 tables).

/// Most transactions (sends still being fragmented included) one owner may
/// have in flight.
pub const OWNER_TRANSACTIONS: usize = 64;
/// Most bytes of descriptors one owner may have being assembled in
/// fragments (their declared total lengths): one descriptor of the largest size.
pub const OWNER_DESCRIPTOR_BYTES: u64 = MAX_DESCRIPTOR as u64;
/// Most bytes of descriptors being assembled, all owners together.
pub const ALL_DESCRIPTOR_BYTES: u64 = 2 * MAX_DESCRIPTOR as u64;
/// Most runs (physically contiguous pieces, 32 bytes each; adjacent ranges
/// in a descriptor make one) the SPMC records for one owner: in its
/// transactions, and for a partition, in the memory donated to it.
pub const OWNER_RUNS: usize = 4096;
/// Most runs recorded, all owners together (512 KiB).
pub const ALL_RUNS: usize = 16384;
/// Most bytes of retrieve responses still leaving in fragments, all
/// borrowers together.
pub const ALL_RESPONSE_BYTES: usize = 256 * 1024;
/// Heap memory sharing leaves to the rest of the SPMC: a send, a fragment
/// or a retrieve that would leave less free (by its estimate, checked
/// through [`Platform::heap_available`] before it allocates) is NO_MEMORY,
/// so that no owner's sharing exhausts the heap the guarded infallible
/// allocations of the SPMC (stage-2 tables of a new instance) rely on.
pub const HEAP_FLOOR: usize = 64 * 1024;
/// Pages zeroed per temporary mapping of normal-world memory.
const ZERO_CHUNK_PAGES: u64 = 64;

/// Who owns memory in a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A normal-world endpoint (the descriptor's sender: the OS, or a VM a
    /// hypervisor acts for).
    NormalWorld(PartitionId),
    /// A partition, by ID.
    Partition(PartitionId),
}

impl Owner {
    /// The owner's endpoint ID.
    pub fn id(self) -> PartitionId {
        match self {
            Owner::NormalWorld(id) | Owner::Partition(id) => id,
        }
    }
}

/// A physically contiguous run of a transaction's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First byte.
    pub pa: u64,
    /// Pages.
    pub pages: u64,
    /// Where a partition owner sees it (the PA for a normal-world owner).
    pub owner_ipa: u64,
    /// The access a partition owner had (restored on reclaim).
    pub owner_access: Access,
}

impl Run {
    /// Bytes.
    pub fn len(&self) -> u64 {
        self.pages * PAGE_SIZE
    }

    /// True if the run has no pages (never the case for a recorded run).
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// True if `next` continues this run: the next pages, at the next
    /// IPAs, with the same access.
    fn follows(&self, next: &Run) -> bool {
        self.pa + self.len() == next.pa
            && self.owner_ipa + self.len() == next.owner_ipa
            && self.owner_access == next.owner_access
    }
}

/// True if `[pa, pa + len)` overlaps a run of `runs` (sorted by address,
/// none overlapping): one binary search.
fn overlaps_any(runs: &ChunkVec<Run>, pa: u64, len: u64) -> bool {
    // The first run that ends past `pa` (run ends increase with the index).
    let (mut lo, mut hi) = (0, runs.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match runs.get(mid) {
            Some(r) if r.pa + r.len() <= pa => lo = mid + 1,
            _ => hi = mid,
        }
    }
    runs.get(lo).is_some_and(|r| r.pa < pa.saturating_add(len))
}

/// Where a borrower is in the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BorrowerState {
    /// Named by the sender, has not retrieved.
    NotRetrieved,
    /// Has the memory mapped.
    Retrieved,
    /// Retrieved and gave it back (as many times as it retrieved).
    Relinquished,
}

/// Most times one borrower may hold one transaction retrieved at once
/// (DEN0140 §1.12: a borrower may retrieve a region again before it
/// relinquishes it; each retrieve is relinquished once). Past it a retrieve
/// is NO_MEMORY: the count is the SPMC's resource.
pub const MAX_RETRIEVES: u32 = 0xFFFF;

/// One borrower of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Borrower {
    /// Its endpoint ID.
    pub id: PartitionId,
    /// The permissions the sender gave it (see [`desc::perm`]).
    pub perms: u8,
    /// The v1.2 implementation-defined value the sender gave it.
    pub impdef: [u8; 16],
    /// Its state.
    pub state: BorrowerState,
    /// Retrieves not yet relinquished (non-zero exactly when `Retrieved`).
    pub retrieves: u32,
    /// The access it has while it holds the memory.
    pub granted: Access,
    /// It asked for the memory to be zeroed when it relinquishes.
    pub zero_after: bool,
}

/// A transaction in progress, by handle.
#[derive(Debug)]
pub struct Transaction {
    /// Its handle.
    pub handle: u64,
    /// Share, lend or donate.
    pub op: Op,
    /// The owner.
    pub owner: Owner,
    /// Secure memory (else normal-world memory).
    pub secure: bool,
    /// Device memory (a partition's device region, DEN0140 §1.10.1):
    /// mapped as device, never executable, never zeroed.
    pub device: bool,
    /// Memory region attributes the sender gave.
    pub attributes: u16,
    /// The sender's tag.
    pub tag: u64,
    /// The memory, sorted by physical address (no two runs overlap).
    pub runs: ChunkVec<Run>,
    /// The sender asked for zeroing before the first retrieval, not yet done.
    pub zero_pending: bool,
    /// The borrowers.
    pub borrowers: Vec<Borrower>,
}

impl Transaction {
    /// Total pages.
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|r| r.pages).sum()
    }

    fn space(&self) -> IpaSpace {
        if self.secure {
            IpaSpace::Secure
        } else {
            IpaSpace::NonSecure
        }
    }
}

/// Memory a partition owns because it was donated to it: mapped at IPA = PA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Donated {
    /// The new owner.
    pub owner: PartitionId,
    /// First byte.
    pub pa: u64,
    /// Pages.
    pub pages: u64,
    /// Secure memory.
    pub secure: bool,
    /// The owner's access.
    pub access: Access,
}

/// How donation records are kept sorted: by security state, then address.
fn donation_key(d: &Donated) -> (bool, u64) {
    (d.secure, d.pa)
}

/// Where a descriptor or a response travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Buf {
    /// The caller's RX/TX buffers.
    Mailbox,
    /// A buffer the caller named (w3/w4), at this physical address.
    Caller {
        /// Physical address.
        pa: Pa,
        /// Bytes.
        len: u64,
        /// Normal-world memory (mapped for the SPMC only while it is used).
        ns: bool,
    },
}

/// A send still arriving in fragments.
#[derive(Debug)]
struct Incoming {
    handle: u64,
    from: Endpoint,
    /// Whose quota it counts against (from the first fragment's header).
    owner: Owner,
    op: Op,
    total: u32,
    data: Bytes,
    buf: Buf,
}

/// A retrieve response still leaving in fragments.
#[derive(Debug)]
struct Outgoing {
    handle: u64,
    to: Endpoint,
    data: Bytes,
    sent: usize,
    buf: Buf,
}

/// Encodes a retrieve response (`FFA_MEM_RETRIEVE_RESP`, the access
/// descriptor size of the caller's `version`) for a buffer with `room`
/// bytes, and, when it does not fit in one fragment, reserves the place of
/// its rest in `outgoing` (bounded by [`ALL_RESPONSE_BYTES`]) before
/// anything changes. Returns the bytes and the length of the first
/// fragment.
fn encode_reserved(
    outgoing: &mut Vec<Outgoing>,
    response: &desc::Response<'_>,
    runs: &ChunkVec<Run>,
    layout: Layout,
    version: Version,
    room: usize,
) -> Result<(Bytes, usize), FfaError> {
    let emad = if version >= Version::V1_2 { 32 } else { 16 };
    let ranges = runs.iter().map(|r| Range {
        addr: r.pa,
        pages: r.pages,
    });
    let bytes = desc::encode_response(response, ranges, layout, emad)?;
    let total = bytes.len();
    let first = total.min(room);
    if first < total {
        let queued: usize = outgoing.iter().map(|o| o.data.len()).sum();
        if queued + total > ALL_RESPONSE_BYTES {
            return Err(FfaError::NoMemory);
        }
        outgoing.try_reserve(1).map_err(|_| FfaError::NoMemory)?;
    }
    Ok((bytes, first))
}

/// What an owner (or everyone) holds on the heap, against the quotas.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    transactions: usize,
    runs: usize,
    descriptor_bytes: u64,
}

/// Everything the SPMC keeps about memory management.
#[derive(Debug, Default)]
pub struct MemState {
    /// Transactions by handle.
    transactions: Vec<Transaction>,
    /// Donated memory and its new owners, sorted by (security state, address).
    donated: ChunkVec<Donated>,
    incoming: Vec<Incoming>,
    outgoing: Vec<Outgoing>,
    next_handle: u64,
}

impl MemState {
    /// The transactions, by handle.
    pub fn transactions(&self) -> &[Transaction] {
        &self.transactions
    }

    /// Donated memory and its new owners, sorted by (security state, address).
    pub fn donated(&self) -> &ChunkVec<Donated> {
        &self.donated
    }

    /// The transaction with `handle`.
    pub fn transaction(&self, handle: u64) -> Option<&Transaction> {
        self.transactions.iter().find(|t| t.handle == handle)
    }

    /// Sends still arriving in fragments.
    pub fn incoming_count(&self) -> usize {
        self.incoming.len()
    }

    /// Retrieve responses still leaving in fragments.
    pub fn outgoing_count(&self) -> usize {
        self.outgoing.len()
    }

    fn in_flight(&self) -> usize {
        self.transactions.len() + self.incoming.len()
    }

    /// The donation holding the page at `pa` (donations are kept sorted by
    /// security state and address and never overlap in one state): one
    /// binary search.
    fn donation_at(&self, secure: bool, pa: u64) -> Option<Donated> {
        let key = |d: &Donated| (d.secure, d.pa);
        let (mut lo, mut hi) = (0, self.donated.len());
        // The first donation past (secure, pa); the one before may hold it.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.donated.get(mid) {
                Some(d) if key(&d) <= (secure, pa) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let d = self.donated.get(lo.checked_sub(1)?)?;
        (d.secure == secure && pa >= d.pa && pa < d.pa + d.pages * PAGE_SIZE).then_some(d)
    }

    /// The donation records once `owner` owns `runs` (one donation's memory,
    /// in `secure` memory, with `access`; `None`: the normal world, which
    /// has no records): earlier records of the same pages
    /// (a previous owner's, who donated them on) are cut away, so records
    /// never overlap and stay sorted by security state and address, as
    /// `donation_at` needs. Built aside (NO_MEMORY changes nothing).
    fn donations_with(
        &self,
        owner: Option<PartitionId>,
        secure: bool,
        access: Access,
        runs: &ChunkVec<Run>,
    ) -> Result<ChunkVec<Donated>, FfaError> {
        // The new runs, sorted (a transaction's runs never overlap). With no
        // new owner (donated to the normal world) they are only cut away.
        let mut new: ChunkVec<Donated> = ChunkVec::new();
        for r in runs {
            new.try_push(Donated {
                owner: owner.unwrap_or(0),
                pa: r.pa,
                pages: r.pages,
                secure,
                access,
            })?;
        }
        // (One key for both sorts: one instance of the sort in the image.)
        new.sort_by_key(donation_key);
        let mut out: ChunkVec<Donated> = ChunkVec::new();
        for d in self.donated.iter() {
            let end = d.pa + d.pages * PAGE_SIZE;
            if d.secure != secure {
                out.try_push(*d)?;
                continue;
            }
            // The first new run that ends after d starts, then every one
            // that starts before d ends: cut each out of d.
            let (mut lo, mut hi) = (0, new.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match new.get(mid) {
                    Some(n) if n.pa + n.pages * PAGE_SIZE <= d.pa => lo = mid + 1,
                    _ => hi = mid,
                }
            }
            let mut cur = d.pa;
            let mut j = lo;
            while let Some(n) = new.get(j) {
                if n.pa >= end {
                    break;
                }
                if n.pa > cur {
                    out.try_push(Donated {
                        pa: cur,
                        pages: (n.pa - cur) / PAGE_SIZE,
                        ..*d
                    })?;
                }
                cur = cur.max(n.pa + n.pages * PAGE_SIZE);
                j += 1;
            }
            if cur < end {
                out.try_push(Donated {
                    pa: cur,
                    pages: (end - cur) / PAGE_SIZE,
                    ..*d
                })?;
            }
        }
        if owner.is_some() {
            for d in new.iter() {
                out.try_push(*d)?;
            }
        }
        out.sort_by_key(donation_key);
        Ok(out)
    }

    /// What `owner` holds, and what everyone holds together: one pass over
    /// the records (the total of donated runs is their count).
    fn usage(&self, owner: Owner) -> (Usage, Usage) {
        let (mut mine, mut all) = (Usage::default(), Usage::default());
        for t in &self.transactions {
            all.transactions += 1;
            all.runs += t.runs.len();
            if t.owner == owner {
                mine.transactions += 1;
                mine.runs += t.runs.len();
            }
        }
        for m in &self.incoming {
            all.transactions += 1;
            all.descriptor_bytes += m.total as u64;
            if m.owner == owner {
                mine.transactions += 1;
                mine.descriptor_bytes += m.total as u64;
            }
        }
        all.runs += self.donated.len();
        if let Owner::Partition(id) = owner {
            mine.runs += self.donated.iter().filter(|d| d.owner == id).count();
        }
        (mine, all)
    }

    /// Runs `owner` may still have recorded (its quota and the total's).
    fn runs_left(&self, owner: Owner) -> usize {
        let (mine, all) = self.usage(owner);
        OWNER_RUNS
            .saturating_sub(mine.runs)
            .min(ALL_RUNS.saturating_sub(all.runs))
    }

    /// NO_MEMORY unless `owner` may start one more transaction, holding
    /// `bytes` of descriptor while it is assembled.
    fn admit(&self, owner: Owner, bytes: u64) -> Result<(), FfaError> {
        let (mine, all) = self.usage(owner);
        if self.in_flight() >= MAX_IN_FLIGHT
            || mine.transactions >= OWNER_TRANSACTIONS
            || mine.descriptor_bytes + bytes > OWNER_DESCRIPTOR_BYTES
            || all.descriptor_bytes + bytes > ALL_DESCRIPTOR_BYTES
        {
            return Err(FfaError::NoMemory);
        }
        Ok(())
    }
}

fn layout_of(v: Version) -> Layout {
    if v >= Version::V1_1 {
        Layout::V1_1
    } else {
        Layout::V1_0
    }
}

fn handle_regs(r: &mut Regs, handle: u64, at: usize) {
    r.0[at] = handle & 0xFFFF_FFFF;
    r.0[at + 1] = handle >> 32;
}

fn handle_of(args: &Regs) -> u64 {
    args.w(1) as u64 | (args.w(2) as u64) << 32
}

fn success_with_handle(handle: u64) -> Regs {
    let mut r = Regs::with_func(func::SUCCESS_32);
    handle_regs(&mut r, handle, 2);
    r
}

fn op_of(f: u32) -> Option<Op> {
    match f {
        func::MEM_SHARE_32 | func::MEM_SHARE_64 => Some(Op::Share),
        func::MEM_LEND_32 | func::MEM_LEND_64 => Some(Op::Lend),
        func::MEM_DONATE_32 | func::MEM_DONATE_64 => Some(Op::Donate),
        _ => None,
    }
}

/// True if the sender of `op` to `receivers` borrowers leaves memory
/// attributes and instruction access to the borrower: a donation, or a lend
/// to a single borrower (DEN0140 §1.10 and §1.11, the usage tables of the
/// memory region attributes and of the instruction access permission; the
/// borrower names its own in the retrieve request).
fn borrower_chooses(op: Op, receivers: usize) -> bool {
    op == Op::Donate || (op == Op::Lend && receivers == 1)
}

/// True if `a` (bits [5:0]) are valid attributes of a memory type the
/// sender specified: normal memory (non-cacheable or write-back, a
/// shareability that is not reserved) or device memory (any of the four
/// device types, bits [1:0] zero) (DEN0140 §1.10, Table 1.9/1.10).
fn valid_type(a: u16) -> bool {
    match a & attr::TYPE_MASK {
        attr::TYPE_NORMAL => {
            let cache = a & attr::CACHE_MASK;
            (cache == attr::CACHE_NC || cache == attr::CACHE_WB)
                && a & attr::SHARE_MASK != attr::SHARE_RESERVED
        }
        attr::TYPE_DEVICE => a & attr::SHARE_MASK == 0,
        _ => false,
    }
}

/// Checks a send descriptor's flags, attributes and permissions for `op`
/// against DEN0140's tables of what each field may hold (all
/// INVALID_PARAMETERS):
///
/// - flags (§1.12, Table 1.17): only time-slicing on a share; zeroing too
///   on a lend or donation;
/// - memory region attributes (§1.10): a donor, or a lender to a single
///   borrower, must leave them "not specified" (all zero: the borrower
///   names them when it retrieves); a sharer, or a lender to several
///   borrowers, must specify a valid memory type; bits [15:6] are reserved
///   (bit 6, NS, is the SPMC's to set in a response);
/// - data access (§1.11): read-only or read-write for a share or lend,
///   "not specified" for a donation;
/// - instruction access (§1.11): "not specified" for a share, a lend to
///   several borrowers and a donation (the first two are never
///   executable; the donee chooses); a lender to a single borrower may
///   name NX or X;
/// - reserved encodings and EMAD flags (non-retrieval borrowers are not
///   supported: the flag is refused).
fn validate_send(op: Op, d: &desc::Descriptor) -> Result<(), FfaError> {
    let bad = FfaError::InvalidParameters;
    let allowed = match op {
        Op::Share => flags::TIME_SLICE,
        Op::Lend | Op::Donate => flags::ZERO | flags::TIME_SLICE,
    };
    if d.flags & !allowed != 0 {
        return Err(bad);
    }
    let many = d.receivers.len() > 1;
    if op == Op::Donate && many {
        return Err(bad);
    }
    let chooses = borrower_chooses(op, d.receivers.len());
    let a = d.attributes;
    if chooses {
        if a != 0 {
            return Err(bad);
        }
    } else if a & !0x3F != 0 || !valid_type(a) {
        return Err(bad);
    }
    for r in &d.receivers {
        let (data, instr) = (r.perms & perm::DATA_MASK, r.perms & perm::INSTR_MASK);
        if r.flags != 0 || r.perms & 0xF0 != 0 || data == 3 || instr == 0xC {
            return Err(bad);
        }
        match op {
            Op::Share | Op::Lend if data == perm::DATA_NONE => return Err(bad),
            Op::Donate if data != perm::DATA_NONE => return Err(bad),
            _ => {}
        }
        if (op != Op::Lend || many) && instr != perm::INSTR_NONE {
            return Err(bad);
        }
    }
    Ok(())
}

impl<P: Platform> Spmc<P> {
    /// The memory-management state (host tests check it against the tables).
    pub fn mem(&self) -> &MemState {
        &self.mem
    }

    /// Dispatches a memory-management ABI (`f`) from `from`.
    pub(crate) fn mem_call(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let f = args.func();
        // The borrower ABIs are the normal world's too: partitions share,
        // lend and donate to it (docs/memory-sharing.md, "The normal
        // world as a borrower").
        match f {
            _ if op_of(f).is_some() => self.mem_send(from, args),
            func::MEM_FRAG_TX => self.mem_frag_tx(from, args),
            func::MEM_RECLAIM => self.mem_reclaim(from, args),
            func::MEM_RETRIEVE_REQ_32 | func::MEM_RETRIEVE_REQ_64 => self.mem_retrieve(from, args),
            func::MEM_FRAG_RX => self.mem_frag_rx(from, args),
            func::MEM_RELINQUISH => self.mem_relinquish(from, args),
            _ => Err(FfaError::NotSupported),
        }
    }

    fn new_handle(&mut self) -> u64 {
        // Bit 63 clear: allocated by the SPMC (DEN0140 §1.8). Never reused.
        self.mem.next_handle += 1;
        self.mem.next_handle & !(1 << 63)
    }

    /// The buffer a call names (w3/x3 address, w4 page count), or the mailbox.
    /// A fragmented operation keeps it between calls, so it must be memory the
    /// caller owns exclusively (`ownership`): DENIED otherwise.
    fn mem_buffer(&mut self, from: Endpoint, args: &Regs, write: bool) -> Result<Buf, FfaError> {
        let wide = args.func() & 0x4000_0000 != 0;
        let addr = if wide { args.x(3) } else { args.w(3) as u64 };
        let pages = args.w(4) as u64;
        if addr == 0 && pages == 0 {
            return match self.buffers(from) {
                Some(_) => Ok(Buf::Mailbox),
                None => Err(FfaError::InvalidParameters),
            };
        }
        if addr == 0 || pages == 0 || !addr.is_multiple_of(PAGE_SIZE) || pages > 64 {
            return Err(FfaError::InvalidParameters);
        }
        let len = pages * PAGE_SIZE;
        match from {
            Endpoint::NormalWorld(_) => {
                if !self.platform.is_ns_ram(Pa(addr), len) {
                    return Err(FfaError::InvalidParameters);
                }
                self.check_buffer_owned(from, PhysRange::ns(Pa(addr), len))?;
                Ok(Buf::Caller {
                    pa: Pa(addr),
                    len,
                    ns: true,
                })
            }
            Endpoint::Partition(s) => {
                let pa = self.partitions[s]
                    .stage2
                    .translate_range(IpaSpace::Secure, Ipa(addr), len, write)
                    .ok_or(FfaError::InvalidParameters)?;
                self.check_buffer_owned(from, PhysRange::secure(pa, len))?;
                Ok(Buf::Caller { pa, len, ns: false })
            }
        }
    }

    fn buf_size(&self, from: Endpoint, buf: Buf) -> u64 {
        match buf {
            Buf::Mailbox => self.buffers(from).map_or(0, |b| b.size),
            Buf::Caller { len, .. } => len,
        }
    }

    /// Appends `len` bytes at the start of the caller's TX (or its buffer)
    /// to `out`, in page-sized blocks: NO_MEMORY (or the access error) with
    /// `out` as it was.
    fn buf_read(
        &mut self,
        from: Endpoint,
        buf: Buf,
        len: usize,
        out: &mut Bytes,
    ) -> Result<(), FfaError> {
        let old = out.len();
        self.buf_copy(from, buf, out, old, len, false)
    }

    /// Writes `len` bytes of `data` from `off` at the start of the caller's
    /// RX (or its buffer).
    fn buf_write(
        &mut self,
        to: Endpoint,
        buf: Buf,
        data: &mut Bytes,
        off: usize,
        len: usize,
    ) -> Result<(), FfaError> {
        self.buf_copy(to, buf, data, off, len, true)?;
        if buf == Buf::Mailbox {
            self.set_rx_state(to, RxState::Full);
        }
        Ok(())
    }

    /// Copies bytes `[off, off + len)` of `data` between the start of the
    /// caller's buffer and `data` (RX, or its buffer, when `write`; else
    /// TX, or its buffer, appending `len` bytes to `data`, which is as it
    /// was on an error). Normal-world memory is mapped for the copy alone.
    fn buf_copy(
        &mut self,
        ep: Endpoint,
        buf: Buf,
        data: &mut Bytes,
        off: usize,
        len: usize,
        write: bool,
    ) -> Result<(), FfaError> {
        let (pa, map) = match buf {
            Buf::Mailbox => {
                let b = self.buffers(ep).ok_or(FfaError::InvalidParameters)?;
                (if write { b.rx } else { b.tx }, None)
            }
            Buf::Caller { pa, len, ns } => (pa, ns.then_some(len)),
        };
        if !write {
            data.try_extend_zeroed(len)?;
        }
        let mut r = match map {
            Some(size) => self
                .platform
                .map_ns(pa, size)
                .map_err(|_| FfaError::NoMemory),
            None => Ok(()),
        };
        if r.is_ok() {
            let mut at = pa.0;
            for seg in data.segments_mut(off, len) {
                let n = seg.len() as u64;
                let done = if write {
                    self.platform.write(Pa(at), seg)
                } else {
                    self.platform.read(Pa(at), seg)
                };
                if done.is_err() {
                    r = Err(FfaError::Aborted);
                    break;
                }
                at += n;
            }
            if let Some(size) = map {
                self.platform.unmap_ns(pa, size);
            }
        }
        if r.is_err() && !write {
            data.truncate(off);
        }
        r
    }

    // ------------------------------------------------------------------
    // Sending: FFA_MEM_SHARE / LEND / DONATE and FFA_MEM_FRAG_TX
    // ------------------------------------------------------------------

    /// FFA_MEM_SHARE, FFA_MEM_LEND, FFA_MEM_DONATE (§11.1-11.3 of DEN0077
    /// v1.2 chapter 11, 32 and 64 bit): w1 total length, w2 fragment length.
    ///
    /// The first fragment holds at least the transaction descriptor header
    /// (this SPMC's rule: the header names the sender, whose quota a send in
    /// fragments counts against from its first fragment on).
    fn mem_send(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let op = op_of(args.func()).ok_or(FfaError::NotSupported)?;
        let (total, frag) = (args.w(1), args.w(2));
        let buf = self.mem_buffer(from, args, false)?;
        if total == 0 || frag == 0 || frag > total || frag as u64 > self.buf_size(from, buf) {
            return Err(FfaError::InvalidParameters);
        }
        if total > MAX_DESCRIPTOR {
            return Err(FfaError::NoMemory);
        }
        let layout = layout_of(self.version_of(from));
        if (frag as usize) < desc::header_size(layout) {
            return Err(FfaError::InvalidParameters);
        }
        if !self.platform.heap_available(HEAP_FLOOR + frag as usize) {
            return Err(FfaError::NoMemory);
        }
        let mut data = Bytes::new();
        self.buf_read(from, buf, frag as usize, &mut data)?;
        let owner = match from {
            Endpoint::NormalWorld(_) => {
                let mut sender = [0u8; 2];
                data.read_at(0, &mut sender);
                Owner::NormalWorld(u16::from_le_bytes(sender))
            }
            Endpoint::Partition(s) => Owner::Partition(self.partitions[s].id().raw()),
        };
        let assembling = if frag == total { 0 } else { total as u64 };
        self.mem.admit(owner, assembling)?;
        if frag == total {
            let handle = self.new_handle();
            self.mem_commit(from, op, &data, handle)?;
            return Ok(success_with_handle(handle));
        }
        self.mem
            .incoming
            .try_reserve(1)
            .map_err(|_| FfaError::NoMemory)?;
        let handle = self.new_handle();
        self.mem.incoming.push(Incoming {
            handle,
            from,
            owner,
            op,
            total,
            data,
            buf,
        });
        Ok(frag_rx_answer(handle, frag))
    }

    /// FFA_MEM_FRAG_TX from a sender (w1/w2 handle, w3 fragment length). A
    /// fragment refused (NO_MEMORY included) leaves the earlier ones in place.
    fn mem_frag_tx(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let handle = handle_of(args);
        let len = args.w(3);
        let i = self
            .mem
            .incoming
            .iter()
            .position(|m| m.handle == handle && m.from == from)
            .ok_or(FfaError::InvalidParameters)?;
        let (buf, have, total) = {
            let m = &self.mem.incoming[i];
            (m.buf, m.data.len() as u64, m.total as u64)
        };
        if len == 0 || len as u64 > self.buf_size(from, buf) || have + len as u64 > total {
            return Err(FfaError::InvalidParameters);
        }
        if !self.platform.heap_available(HEAP_FLOOR + len as usize) {
            return Err(FfaError::NoMemory);
        }
        let mut data = core::mem::take(&mut self.mem.incoming[i].data);
        let r = self.buf_read(from, buf, len as usize, &mut data);
        let received = data.len() as u32;
        self.mem.incoming[i].data = data;
        r?;
        if (received as u64) < total {
            return Ok(frag_rx_answer(handle, received));
        }
        // The last fragment: the send stays as it was (the fragments before
        // this one) unless the transaction is recorded.
        let (op, data) = {
            let m = &mut self.mem.incoming[i];
            (m.op, core::mem::take(&mut m.data))
        };
        if let Err(e) = self.mem_commit(from, op, &data, handle) {
            let m = &mut self.mem.incoming[i];
            m.data = data;
            m.data.truncate(have as usize);
            return Err(e);
        }
        self.mem.incoming.swap_remove(i);
        Ok(success_with_handle(handle))
    }

    /// Checks a complete send descriptor and, if every check passes, records
    /// the transaction and removes a partition owner's access for lend and donate.
    fn mem_commit(
        &mut self,
        from: Endpoint,
        op: Op,
        data: &Bytes,
        handle: u64,
    ) -> Result<(), FfaError> {
        let layout = layout_of(self.version_of(from));
        let (d, comp) = desc::parse_header(data, layout, Purpose::Send)?;
        let comp = comp.ok_or(FfaError::InvalidParameters)?;
        if d.handle != 0 {
            return Err(FfaError::InvalidParameters);
        }
        validate_send(op, &d)?;
        let owner = match from {
            Endpoint::NormalWorld(_) => {
                if is_secure_id(d.sender) {
                    return Err(FfaError::InvalidParameters);
                }
                Owner::NormalWorld(d.sender)
            }
            Endpoint::Partition(s) => {
                let p = &self.partitions[s];
                if d.sender != p.id().raw() {
                    return Err(FfaError::InvalidParameters);
                }
                if let PolicyKind::Instance { owner } = p.kind
                    && d.receivers.iter().any(|r| r.id != owner.raw())
                {
                    // An instance's memory lives and dies with its VM: it
                    // sends only to its own VM (and only normal-world
                    // memory the VM donated to it, below).
                    return Err(FfaError::Denied);
                }
                Owner::Partition(d.sender)
            }
        };
        let borrowers = self.resolve_receivers(owner, &d.receivers)?;
        let (secure, device, runs) = self.resolve_memory(from, owner, data, &comp)?;
        // The normal world cannot access secure memory: a partition may
        // give it only normal-world memory it owns (memory the normal world
        // donated to it). Secure memory (its own regions, a device) to a
        // normal-world borrower is DENIED, as Hafnium denies any
        // partition-to-normal-world send (docs/memory-sharing.md).
        if secure && borrowers.iter().any(|b| !is_secure_id(b.id)) {
            return Err(FfaError::Denied);
        }
        if device {
            // Device memory (a partition's device region, DEN0140 §1.10):
            // shared or lent, as device memory, never donated (ownership
            // of a device stays with the partition its manifest names),
            // never zeroed.
            if op == Op::Donate {
                return Err(FfaError::Denied);
            }
            if d.flags & flags::ZERO != 0 {
                return Err(FfaError::InvalidParameters);
            }
        }
        // A memory type the sender names is the type the memory has.
        let named = d.attributes & attr::TYPE_MASK;
        if named != attr::TYPE_NONE && (named == attr::TYPE_DEVICE) != device {
            return Err(FfaError::Denied);
        }
        // A partition cannot give more access than it has.
        for b in &borrowers {
            let write = b.perms & perm::DATA_MASK == perm::RW || op == Op::Donate;
            let exec = b.perms & perm::INSTR_MASK == perm::X;
            if runs
                .iter()
                .any(|r| (write && !r.owner_access.write) || (exec && !r.owner_access.exec))
            {
                return Err(FfaError::Denied);
            }
        }
        // Nothing already in a transaction, or donated away: each recorded
        // run is looked up in the new runs (sorted), O((n + m) log n).
        let busy = self.mem.transactions.iter().any(|t| {
            t.secure == secure && t.runs.iter().any(|x| overlaps_any(&runs, x.pa, x.len()))
        }) || self.mem.donated.iter().any(|x| {
            x.secure == secure
                && !matches!(owner, Owner::Partition(id) if id == x.owner)
                && overlaps_any(&runs, x.pa, x.pages * PAGE_SIZE)
        });
        if busy {
            return Err(FfaError::Denied);
        }
        // Nothing that backs a buffer the SPMC keeps (ownership.rs).
        self.check_unpinned(secure, &runs, false)?;
        // The record's place, before anything changes.
        self.mem
            .transactions
            .try_reserve(1)
            .map_err(|_| FfaError::NoMemory)?;
        // Lend and donate: the owner's access goes now (§1.5 of DEN0140),
        // in the IPA space of the memory's security state.
        if op != Op::Share
            && let Owner::Partition(id) = owner
        {
            let slot = self.slot_of(PartId::new(id)).ok_or(FfaError::Aborted)?;
            let space = if secure {
                IpaSpace::Secure
            } else {
                IpaSpace::NonSecure
            };
            for r in &runs {
                self.partitions[slot]
                    .stage2
                    .unmap(space, Ipa(r.owner_ipa), r.len(), &mut self.platform)
                    .map_err(|_| FfaError::Aborted)?;
            }
        }
        debug!(
            "mem {op:?} {handle:#x} from {:#x}: {} page(s) in {} run(s) to {} borrower(s)",
            owner.id(),
            comp.total_pages,
            runs.len(),
            borrowers.len()
        );
        self.mem.transactions.push(Transaction {
            handle,
            op,
            owner,
            secure,
            device,
            attributes: d.attributes,
            tag: d.tag,
            runs,
            zero_pending: d.flags & flags::ZERO != 0,
            borrowers,
        });
        Ok(())
    }

    /// The borrowers a sender named, after the per-user rule.
    fn resolve_receivers(
        &self,
        owner: Owner,
        receivers: &[Receiver],
    ) -> Result<Vec<Borrower>, FfaError> {
        let mut out: Vec<Borrower> = Vec::new();
        out.try_reserve_exact(receivers.len())
            .map_err(|_| FfaError::NoMemory)?;
        for r in receivers {
            if r.id == owner.id() {
                return Err(FfaError::InvalidParameters);
            }
            if !is_secure_id(r.id) {
                out.push(self.nwd_borrower(owner, r, receivers.len())?);
                continue;
            }
            let slot = match owner {
                // A VM's message to a template reaches its own instance; the
                // same routing (and the same DENIED) applies to its memory.
                Owner::NormalWorld(vm) => self.route_for_vm(VmId::new(vm), r.id)?,
                Owner::Partition(_) => {
                    if self.config().policy.template_of(r.id).is_some() {
                        return Err(FfaError::Denied);
                    }
                    let slot = self
                        .slot_of(PartId::new(r.id))
                        .ok_or(FfaError::InvalidParameters)?;
                    if self.partitions[slot].kind != PolicyKind::Static {
                        return Err(FfaError::Denied);
                    }
                    slot
                }
            };
            let p = &self.partitions[slot];
            if p.state != PartitionState::Running {
                return Err(FfaError::Denied);
            }
            let id = p.id();
            if out.iter().any(|b| b.id == id.raw()) {
                return Err(FfaError::InvalidParameters);
            }
            out.push(Borrower {
                id: id.raw(),
                perms: r.perms,
                impdef: r.impdef,
                state: BorrowerState::NotRetrieved,
                retrieves: 0,
                granted: Access::RO,
                zero_after: false,
            });
        }
        Ok(out)
    }

    /// A normal-world borrower a partition names (endpoint 0, the OS or the
    /// hypervisor; or a VM): to one normal-world borrower alone, and to a
    /// VM only if that VM may reach the partition under the binding policy
    /// (the per-user rule both ways: a static partition's bound VMs, every
    /// VM for a shared service, its own VM alone for an instance). The
    /// normal world as a sender never names a normal-world borrower
    /// (between VMs the hypervisor shares, not the SPMC): INVALID_PARAMETERS. Mixing worlds, or several VMs, in one
    /// transaction is DENIED (Hafnium, which lets no partition send to the
    /// normal world at all, answers DENIED too).
    fn nwd_borrower(
        &self,
        owner: Owner,
        r: &Receiver,
        receivers: usize,
    ) -> Result<Borrower, FfaError> {
        let Owner::Partition(sender) = owner else {
            return Err(FfaError::InvalidParameters);
        };
        if receivers != 1 {
            return Err(FfaError::Denied);
        }
        let kind = self
            .slot_of(PartId::new(sender))
            .map_or(PolicyKind::Static, |s| self.partitions[s].kind);
        if !self
            .config()
            .policy
            .may_reach(VmId::new(r.id), sender, kind)
        {
            return Err(FfaError::Denied);
        }
        Ok(Borrower {
            id: r.id,
            perms: r.perms,
            impdef: r.impdef,
            state: BorrowerState::NotRetrieved,
            retrieves: 0,
            granted: Access::RO,
            zero_after: false,
        })
    }

    /// The physical runs of the constituents of `comp` in `data`, if the
    /// sender owns them all: adjacent pages with the same access make one
    /// run; sorted by physical address, no two overlapping (else
    /// INVALID_PARAMETERS: the descriptor names a page twice); NO_MEMORY past
    /// the owner's run quota or when the heap has no room.
    fn resolve_memory(
        &self,
        from: Endpoint,
        owner: Owner,
        data: &Bytes,
        comp: &desc::Composite,
    ) -> Result<(bool, bool, ChunkVec<Run>), FfaError> {
        let left = self.mem.runs_left(owner);
        let most = comp.count.min(left) * core::mem::size_of::<Run>();
        if !self.platform.heap_available(HEAP_FLOOR + most) {
            return Err(FfaError::NoMemory);
        }
        let mut runs: ChunkVec<Run> = ChunkVec::new();
        let add = |runs: &mut ChunkVec<Run>, run: Run| -> Result<(), FfaError> {
            let n = runs.len();
            match runs.last_mut() {
                Some(last) if last.follows(&run) => last.pages += run.pages,
                _ if n >= left => return Err(FfaError::NoMemory),
                _ => runs.try_push(run)?,
            }
            Ok(())
        };
        let mut device = false;
        let secure = match from {
            Endpoint::NormalWorld(_) => {
                for r in comp.ranges(data) {
                    // Normal-world senders own normal-world RAM only.
                    if !self.platform.is_ns_ram(Pa(r.addr), r.pages * PAGE_SIZE) {
                        return Err(FfaError::Denied);
                    }
                    add(
                        &mut runs,
                        Run {
                            pa: r.addr,
                            pages: r.pages,
                            owner_ipa: r.addr,
                            owner_access: Access::RWX,
                        },
                    )?;
                }
                false
            }
            Endpoint::Partition(s) => {
                let p = &self.partitions[s];
                let me = owner.id();
                let mut first = true;
                let mut secure = true;
                for r in comp.ranges(data) {
                    for i in 0..r.pages {
                        let ipa = r.addr + i * PAGE_SIZE;
                        // Its secure IPA space first; else normal-world
                        // memory it owns, mapped at IPA = PA in its
                        // non-secure IPA space (memory the normal world
                        // donated to it): the partition names addresses,
                        // the SPMC knows their security state.
                        let (t, ns) = match p.stage2.lookup(IpaSpace::Secure, Ipa(ipa)) {
                            Some(t) => (t, false),
                            None => (
                                p.stage2
                                    .lookup(IpaSpace::NonSecure, Ipa(ipa))
                                    .ok_or(FfaError::Denied)?,
                                true,
                            ),
                        };
                        if !t.read {
                            return Err(FfaError::Denied);
                        }
                        // One transaction is of one memory type and one
                        // security state.
                        if first {
                            device = t.device;
                            secure = !ns;
                            first = false;
                        } else if t.device != device || secure == ns {
                            return Err(FfaError::InvalidParameters);
                        }
                        if ns {
                            if self
                                .mem
                                .donation_at(false, t.pa.0)
                                .is_none_or(|d| d.owner != me)
                                || t.device
                            {
                                return Err(FfaError::Denied);
                            }
                            add(
                                &mut runs,
                                Run {
                                    pa: t.pa.0,
                                    pages: 1,
                                    owner_ipa: ipa,
                                    owner_access: Access {
                                        read: t.read,
                                        write: t.write,
                                        exec: t.exec,
                                    },
                                },
                            )?;
                            continue;
                        }
                        // Device memory: its own device regions
                        // (identity-mapped). Normal memory: its memory
                        // (regions and the rest of mem-size), not what was
                        // loaded: a partition never gives its code away.
                        let own = if t.device {
                            t.pa.0 == ipa
                                && p.config
                                    .devices
                                    .iter()
                                    .any(|d| ipa >= d.base && ipa - d.base < d.pages * PAGE_SIZE)
                        } else {
                            let code = p.config.load_ipa.0
                                ..p.config.load_ipa.0.saturating_add(p.code_len.into());
                            !code.contains(&ipa)
                                && p.memory.iter().any(|(_, a)| a.contains(t.pa, PAGE_SIZE))
                                || self
                                    .mem
                                    .donation_at(true, t.pa.0)
                                    .is_some_and(|d| d.owner == me)
                        };
                        if !own {
                            return Err(FfaError::Denied);
                        }
                        let access = Access {
                            read: t.read,
                            write: t.write,
                            exec: t.exec,
                        };
                        add(
                            &mut runs,
                            Run {
                                pa: t.pa.0,
                                pages: 1,
                                owner_ipa: ipa,
                                owner_access: access,
                            },
                        )?;
                    }
                }
                secure
            }
        };
        // Sorted by address, neighbours checked (O(n log n), no allocation);
        // runs that touch after sorting are merged.
        runs.sort_by_key(|r| r.pa);
        let mut w = 0usize;
        for i in 0..runs.len() {
            let Some(r) = runs.get(i) else { break };
            match w.checked_sub(1).and_then(|k| runs.get(k)) {
                Some(prev) if prev.pa + prev.len() > r.pa => {
                    return Err(FfaError::InvalidParameters);
                }
                Some(prev) if prev.follows(&r) => {
                    if let Some(p) = runs.get_mut(w - 1) {
                        p.pages += r.pages;
                    }
                }
                _ => {
                    if let Some(slot) = runs.get_mut(w) {
                        *slot = r;
                    }
                    w += 1;
                }
            }
        }
        runs.truncate(w);
        Ok((secure, device, runs))
    }

    // ------------------------------------------------------------------
    // Retrieving: FFA_MEM_RETRIEVE_REQ and FFA_MEM_FRAG_RX
    // ------------------------------------------------------------------

    /// FFA_MEM_RETRIEVE_REQ from a borrower (w1 total length = w2 fragment
    /// length: a retrieve request is never fragmented): a partition, or the
    /// normal world for the normal-world borrower its request names
    /// (endpoint 0, or the VM a hypervisor retrieves for: the hypervisor's
    /// word, as the sender of its sends is). The normal world's retrieve
    /// maps nothing here (its stage 2 is the hypervisor's); it records the
    /// retrieve and answers the descriptor. A request from the normal world
    /// that names no receiver is the hypervisor retrieve request
    /// ([`Self::hypervisor_retrieve`]).
    fn mem_retrieve(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let (total, frag) = (args.w(1), args.w(2));
        let buf = self.mem_buffer(from, args, true)?;
        if total == 0 || frag != total || total as u64 > self.buf_size(from, buf) {
            return Err(FfaError::InvalidParameters);
        }
        let version = self.version_of(from);
        let layout = layout_of(version);
        let mut data = Bytes::new();
        self.buf_read(from, buf, total as usize, &mut data)?;
        let (req, _) = desc::parse_header(&data, layout, Purpose::Retrieve)?;
        let me = match from {
            Endpoint::Partition(slot) if !req.receivers.is_empty() => {
                self.partitions[slot].id().raw()
            }
            Endpoint::Partition(_) => return Err(FfaError::InvalidParameters),
            Endpoint::NormalWorld(_) => match req.receivers.first() {
                None => return self.hypervisor_retrieve(from, buf, &req, layout, version),
                Some(r) if !is_secure_id(r.id) => r.id,
                Some(_) => return Err(FfaError::InvalidParameters),
            },
        };
        let i = self
            .mem
            .transactions
            .iter()
            .position(|t| t.handle == req.handle)
            .ok_or(FfaError::InvalidParameters)?;
        let t = &self.mem.transactions[i];
        if req.sender != t.owner.id() || req.tag != t.tag {
            return Err(FfaError::InvalidParameters);
        }
        let known = flags::ZERO
            | flags::TIME_SLICE
            | flags::ZERO_AFTER_RELINQUISH
            | flags::TYPE_MASK
            | flags::ALIGN_HINT_MASK
            | flags::ALIGN_HINT_VALID;
        let ty = req.flags & flags::TYPE_MASK;
        if req.flags & !known != 0
            || (ty != 0 && ty != t.op.type_bits())
            || (req.flags & flags::ALIGN_HINT_VALID == 0 && req.flags & flags::ALIGN_HINT_MASK != 0)
            || (t.op == Op::Share && req.flags & (flags::ZERO | flags::ZERO_AFTER_RELINQUISH) != 0)
        {
            return Err(FfaError::InvalidParameters);
        }
        // Memory region attributes (DEN0140 §1.10): where the sender left
        // them "not specified" (a donation, a lend to one borrower) the
        // borrower names its own, a valid type that is the memory's type
        // (0: the SPMC's default for it); where the sender specified them,
        // the request names the same or leaves them 0. Bit 6 (NS) is the
        // SPMC's to report and ignored here.
        let a = req.attributes & !attr::NS;
        let sender_chose = t.attributes & attr::TYPE_MASK != attr::TYPE_NONE;
        if a & !0x3F != 0 {
            return Err(FfaError::InvalidParameters);
        }
        if sender_chose {
            if a != 0 && a != t.attributes {
                return Err(FfaError::InvalidParameters);
            }
        } else if a != 0 {
            if !valid_type(a) {
                return Err(FfaError::InvalidParameters);
            }
            if (a & attr::TYPE_MASK == attr::TYPE_DEVICE) != t.device {
                // Normal memory cannot be had as device memory, nor a
                // device as normal memory.
                return Err(FfaError::Denied);
            }
        }
        let bi = t
            .borrowers
            .iter()
            .position(|b| b.id == me)
            .ok_or(FfaError::Denied)?;
        if !is_secure_id(me) && t.secure {
            // Never the case (a send of secure memory to the normal world
            // is refused): secure memory never reaches the normal world.
            log::error!(
                "mem {}: secure memory with a normal-world borrower",
                crate::text::Hex(t.handle)
            );
            return Err(FfaError::Denied);
        }
        // The normal world is one instance: one response to it in
        // fragments per handle (the hypervisor's, or its VM's).
        if matches!(from, Endpoint::NormalWorld(_))
            && self
                .mem
                .outgoing
                .iter()
                .any(|o| o.handle == t.handle && o.to == from)
        {
            return Err(FfaError::Denied);
        }
        let mine = req
            .receivers
            .iter()
            .find(|r| r.id == me)
            .ok_or(FfaError::InvalidParameters)?;
        // Every receiver the request names is a borrower, and in the
        // 32-byte form carries the implementation-defined value the sender
        // gave that borrower (DEN0140 §1.11: the retrieve request's
        // endpoint memory access descriptors match the transaction's).
        for r in &req.receivers {
            let b = t
                .borrowers
                .iter()
                .find(|b| b.id == r.id)
                .ok_or(FfaError::InvalidParameters)?;
            if req.emad_size == 32 && r.impdef != b.impdef {
                return Err(FfaError::InvalidParameters);
            }
        }
        let b = &t.borrowers[bi];
        // Permissions: what the sender gave, narrowed by the request.
        let (rd, ri) = (mine.perms & perm::DATA_MASK, mine.perms & perm::INSTR_MASK);
        if rd == 3 || ri == 0xC || mine.perms & 0xF0 != 0 {
            return Err(FfaError::InvalidParameters);
        }
        let single = t.borrowers.len() == 1;
        // Instruction access (DEN0140 §1.11): a borrower of a share or of a
        // lend to several borrowers leaves it "not specified" (such memory
        // is never executable); asking for any is INVALID_PARAMETERS.
        if (t.op == Op::Share || !single) && ri != perm::INSTR_NONE {
            return Err(FfaError::InvalidParameters);
        }
        let (sd, si) = match t.op {
            // The receiver of a donation becomes the owner: full access.
            Op::Donate => (perm::RW, perm::X),
            _ => (b.perms & perm::DATA_MASK, b.perms & perm::INSTR_MASK),
        };
        if rd == perm::RW && sd != perm::RW {
            return Err(FfaError::Denied);
        }
        let write = if rd == perm::DATA_NONE {
            sd == perm::RW
        } else {
            rd == perm::RW
        };
        let exec = if ri == perm::X {
            // Device memory is never executable.
            if si == perm::NX || t.device {
                return Err(FfaError::Denied);
            }
            true
        } else {
            false
        };
        let access = Access {
            read: true,
            write,
            exec,
        };
        // A borrower that holds the memory may retrieve it again (DEN0140
        // §1.12: each retrieve counts, and is relinquished once): with the
        // same access (it is mapped once), no zeroing (the memory is in
        // its use), and not while a response to it is still in fragments.
        let again = b.state == BorrowerState::Retrieved;
        if again {
            if access != b.granted {
                return Err(FfaError::Denied);
            }
            if req.flags & (flags::ZERO | flags::ZERO_AFTER_RELINQUISH) != 0 {
                return Err(FfaError::InvalidParameters);
            }
            if b.retrieves >= MAX_RETRIEVES {
                return Err(FfaError::NoMemory);
            }
            if self
                .mem
                .outgoing
                .iter()
                .any(|o| o.handle == t.handle && o.to == from)
            {
                return Err(FfaError::Denied);
            }
        }
        // Zeroing device memory means nothing: refused as on a share.
        if t.device && req.flags & (flags::ZERO | flags::ZERO_AFTER_RELINQUISH) != 0 {
            return Err(FfaError::InvalidParameters);
        }
        // No buffer can be in memory that is in a transaction (ownership.rs).
        self.check_unpinned(t.secure, &t.runs, true)?;
        if buf == Buf::Mailbox
            && self
                .buffers(from)
                .is_some_and(|b| b.rx_state != RxState::Empty)
        {
            return Err(FfaError::Busy);
        }
        // The response: the header and 16 bytes a run.
        let response_bytes = 128 + 16 * t.runs.len();
        if !self
            .platform
            .heap_available(HEAP_FLOOR + table_bytes(&t.runs) + response_bytes + 16 * 1024)
        {
            return Err(FfaError::NoMemory);
        }
        // Every check passed. What can fail for want of memory comes first
        // (the response, the records of a donation, the place of a response
        // in fragments), then the tables change, then the state.
        let zero = t.op != Op::Share && (t.zero_pending || req.flags & flags::ZERO != 0);
        let (secure, space, op, handle) = (t.secure, t.space(), t.op, t.handle);
        let perms = if write { perm::RW } else { perm::RO } | if exec { perm::X } else { perm::NX };
        // The attributes the memory is retrieved with: the sender's, else
        // the borrower's, else the SPMC's default for the memory's type.
        let mut attributes = if sender_chose {
            t.attributes
        } else if a != 0 {
            a
        } else if t.device {
            attr::DEVICE_NGNRE
        } else {
            attr::NORMAL_WB_INNER
        };
        if !secure && layout == Layout::V1_1 {
            attributes |= attr::NS;
        }
        let response = desc::Response {
            sender: t.owner.id(),
            attributes,
            flags: op.type_bits() | if zero { flags::ZERO } else { 0 },
            handle,
            tag: t.tag,
            receivers: &[Receiver {
                id: me,
                perms,
                flags: 0,
                impdef: b.impdef,
            }],
        };
        let room = self.buf_size(from, buf) as usize;
        let (mut bytes, first) = encode_reserved(
            &mut self.mem.outgoing,
            &response,
            &t.runs,
            layout,
            version,
            room,
        )?;
        let total = bytes.len();
        // A donation: the borrower becomes the owner of each run, recorded
        // against its quota; the records are built aside and take effect
        // only once the retrieve succeeds. Donated to the normal world, the
        // memory is the normal world's again (the records of the partition
        // that owned it are cut away).
        let donations = if op == Op::Donate {
            let t = &self.mem.transactions[i];
            let new_owner = is_secure_id(me).then_some(me);
            if new_owner.is_some() && self.mem.runs_left(Owner::Partition(me)) < t.runs.len() {
                return Err(FfaError::NoMemory);
            }
            Some(
                self.mem
                    .donations_with(new_owner, secure, access, &t.runs)?,
            )
        } else {
            None
        };
        let runs = &self.mem.transactions[i].runs;
        let kind = if self.mem.transactions[i].device {
            S2Kind::Device { write }
        } else {
            S2Kind::Memory(access)
        };
        // The normal world has no stage 2 here (its mapping is its
        // hypervisor's, or its own): nothing to map.
        let mut s2 = match from {
            Endpoint::Partition(slot) => Some(&mut self.partitions[slot].stage2),
            Endpoint::NormalWorld(_) => None,
        };
        let mut mapped = 0;
        // A retrieve again finds the memory mapped already.
        if let Some(s2) = s2.as_deref_mut() {
            for r in runs.iter().filter(|_| !again) {
                if s2.map(space, Ipa(r.pa), Pa(r.pa), r.len(), kind).is_err() {
                    break;
                }
                mapped += 1;
            }
        }
        let mapped_all = again || s2.is_none() || mapped == runs.len();
        let mut failed = (!mapped_all).then_some(FfaError::NoMemory);
        if failed.is_none()
            && zero
            && let Err(e) = zero_runs(&mut self.platform, secure, runs)
        {
            failed = Some(e);
        }
        if let Some(e) = failed {
            // Nothing may stay mapped, or recorded, for a retrieve that failed.
            if let Some(s2) = s2 {
                for r in runs.iter().take(mapped) {
                    let _ = s2.unmap(space, Ipa(r.pa), r.len(), &mut self.platform);
                }
            }
            return Err(e);
        }
        let t = &mut self.mem.transactions[i];
        t.zero_pending = false;
        let b = &mut t.borrowers[bi];
        b.state = BorrowerState::Retrieved;
        b.retrieves += 1;
        if !again {
            b.granted = access;
            b.zero_after = req.flags & flags::ZERO_AFTER_RELINQUISH != 0;
        }
        if op == Op::Donate {
            // The borrower is the owner now; the handle is retired.
            if let Some(d) = donations {
                self.mem.donated = d;
            }
            self.mem.transactions.swap_remove(i);
        }
        self.buf_write(from, buf, &mut bytes, 0, first)?;
        if first < total {
            self.mem.outgoing.push(Outgoing {
                handle,
                to: from,
                data: bytes,
                sent: first,
                buf,
            });
        }
        let mut r = Regs::with_func(func::MEM_RETRIEVE_RESP);
        r.0[1] = total as u64;
        r.0[2] = first as u64;
        Ok(r)
    }

    /// The hypervisor retrieve request (DEN0140, "hypervisor retrieve
    /// request"; DEN0077 v1.2 §11.5): a retrieve request from the normal
    /// world that names a handle and no receiver (sender, attributes, flags
    /// and tag zero, else INVALID_PARAMETERS). It is answered, in the
    /// caller's RX buffer (or its buffer) and in fragments if need be, with
    /// the whole transaction descriptor: the owner, the sender's attributes
    /// (with the NS bit for normal-world memory, v1.1+), the type, every
    /// borrower with the access the sender gave it, and the memory, so that
    /// a hypervisor learns what one of its VMs is given before it maps it.
    /// It changes nothing: it is not the VM's retrieve. Only transactions
    /// of the normal world (a normal-world owner or borrower) are
    /// described; any other handle is answered as an unknown one,
    /// INVALID_PARAMETERS, so that the normal world learns nothing of the
    /// secure world's own transactions.
    fn hypervisor_retrieve(
        &mut self,
        from: Endpoint,
        buf: Buf,
        req: &desc::Descriptor,
        layout: Layout,
        version: Version,
    ) -> Result<Regs, FfaError> {
        if req.sender != 0 || req.attributes != 0 || req.flags != 0 || req.tag != 0 {
            return Err(FfaError::InvalidParameters);
        }
        let t = self
            .mem
            .transactions
            .iter()
            .find(|t| t.handle == req.handle)
            .ok_or(FfaError::InvalidParameters)?;
        let of_nwd = matches!(t.owner, Owner::NormalWorld(_))
            || t.borrowers.iter().any(|b| !is_secure_id(b.id));
        if !of_nwd {
            return Err(FfaError::InvalidParameters);
        }
        if self
            .mem
            .outgoing
            .iter()
            .any(|o| o.handle == t.handle && o.to == from)
        {
            return Err(FfaError::Denied);
        }
        if buf == Buf::Mailbox
            && self
                .buffers(from)
                .is_some_and(|b| b.rx_state != RxState::Empty)
        {
            return Err(FfaError::Busy);
        }
        let response_bytes = 128 + 32 * t.borrowers.len() + 16 * t.runs.len();
        if !self
            .platform
            .heap_available(HEAP_FLOOR + response_bytes + 16 * 1024)
        {
            return Err(FfaError::NoMemory);
        }
        let mut receivers = [Receiver {
            id: 0,
            perms: 0,
            flags: 0,
            impdef: [0; 16],
        }; desc::MAX_RECEIVERS];
        let n = t.borrowers.len().min(desc::MAX_RECEIVERS);
        for (r, b) in receivers.iter_mut().zip(&t.borrowers) {
            r.id = b.id;
            r.perms = b.perms;
            r.impdef = b.impdef;
        }
        let mut attributes = t.attributes;
        if !t.secure && layout == Layout::V1_1 {
            attributes |= attr::NS;
        }
        let response = desc::Response {
            sender: t.owner.id(),
            attributes,
            flags: t.op.type_bits() | if t.zero_pending { flags::ZERO } else { 0 },
            handle: t.handle,
            tag: t.tag,
            receivers: &receivers[..n],
        };
        let handle = t.handle;
        let room = self.buf_size(from, buf) as usize;
        let (mut bytes, first) = encode_reserved(
            &mut self.mem.outgoing,
            &response,
            &t.runs,
            layout,
            version,
            room,
        )?;
        let total = bytes.len();
        self.buf_write(from, buf, &mut bytes, 0, first)?;
        if first < total {
            self.mem.outgoing.push(Outgoing {
                handle,
                to: from,
                data: bytes,
                sent: first,
                buf,
            });
        }
        debug!("mem {handle:#x}: hypervisor retrieve request answered");
        let mut r = Regs::with_func(func::MEM_RETRIEVE_RESP);
        r.0[1] = total as u64;
        r.0[2] = first as u64;
        Ok(r)
    }

    /// FFA_MEM_FRAG_RX from a borrower reading a long retrieve response
    /// (w1/w2 handle, w3 offset of the fragment it wants next).
    fn mem_frag_rx(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let handle = handle_of(args);
        let offset = args.w(3) as usize;
        let i = self
            .mem
            .outgoing
            .iter()
            .position(|o| o.handle == handle && o.to == from)
            .ok_or(FfaError::InvalidParameters)?;
        let (sent, len, buf) = {
            let o = &self.mem.outgoing[i];
            (o.sent, o.data.len(), o.buf)
        };
        if offset != sent {
            return Err(FfaError::InvalidParameters);
        }
        // The borrower gives its RX buffer back (FFA_RX_RELEASE) before it
        // asks for the next fragment, as for any message (DEN0077 v1.2 §7.2.2.4).
        if buf == Buf::Mailbox
            && self
                .buffers(from)
                .is_some_and(|b| b.rx_state != RxState::Empty)
        {
            return Err(FfaError::Busy);
        }
        let n = (len - sent).min(self.buf_size(from, buf) as usize);
        let mut data = core::mem::take(&mut self.mem.outgoing[i].data);
        let r = self.buf_write(from, buf, &mut data, sent, n);
        self.mem.outgoing[i].data = data;
        r?;
        let o = &mut self.mem.outgoing[i];
        o.sent += n;
        if o.sent == len {
            self.mem.outgoing.swap_remove(i);
        }
        let mut r = Regs::with_func(func::MEM_FRAG_TX);
        handle_regs(&mut r, handle, 1);
        r.0[3] = n as u64;
        Ok(r)
    }

    // ------------------------------------------------------------------
    // Giving back: FFA_MEM_RELINQUISH and FFA_MEM_RECLAIM
    // ------------------------------------------------------------------

    /// FFA_MEM_RELINQUISH from a borrower (descriptor in its TX buffer): a
    /// partition, naming itself; or the normal world, naming the one
    /// normal-world borrower it relinquishes for (endpoint 0, or a VM of a
    /// hypervisor), which has nothing mapped here to take away.
    fn mem_relinquish(&mut self, from: Endpoint, _args: &Regs) -> Result<Regs, FfaError> {
        let b = self.buffers(from).ok_or(FfaError::InvalidParameters)?;
        // A relinquish descriptor is small: read on the stack, nothing allocated.
        let mut buf = [0u8; 16 + 2 * desc::MAX_RECEIVERS];
        let size = (b.size as usize).min(buf.len());
        let (tx, data) = (b.tx, &mut buf[..size]);
        self.platform
            .read(tx, data)
            .map_err(|_| FfaError::Aborted)?;
        let rq = desc::parse_relinquish(&*data)?;
        let me = match (from, rq.endpoints()) {
            (Endpoint::Partition(slot), _) => self.partitions[slot].id().raw(),
            (Endpoint::NormalWorld(_), &[id]) if !is_secure_id(id) => id,
            (Endpoint::NormalWorld(_), _) => return Err(FfaError::InvalidParameters),
        };
        if rq.flags & !(flags::ZERO | flags::TIME_SLICE) != 0 || rq.endpoints() != [me] {
            return Err(FfaError::InvalidParameters);
        }
        let i = self
            .mem
            .transactions
            .iter()
            .position(|t| t.handle == rq.handle)
            .ok_or(FfaError::InvalidParameters)?;
        let t = &self.mem.transactions[i];
        let bi = t
            .borrowers
            .iter()
            .position(|b| b.id == me)
            .ok_or(FfaError::Denied)?;
        if t.borrowers[bi].state != BorrowerState::Retrieved {
            return Err(FfaError::Denied);
        }
        if (t.op == Op::Share || t.device) && rq.flags & flags::ZERO != 0 {
            return Err(FfaError::InvalidParameters);
        }
        // Each retrieve is relinquished once (DEN0140 §1.12); the memory
        // leaves the borrower with the last. A zero flag on an earlier
        // one is kept for the last (the memory is still in its use).
        if t.borrowers[bi].retrieves > 1 {
            let b = &mut self.mem.transactions[i].borrowers[bi];
            b.retrieves -= 1;
            b.zero_after |= rq.flags & flags::ZERO != 0;
            return Ok(Regs::with_func(func::SUCCESS_32));
        }
        let zero = t.op != Op::Share && (rq.flags & flags::ZERO != 0 || t.borrowers[bi].zero_after);
        let (secure, space) = (t.secure, t.space());
        self.check_unpinned(secure, &t.runs, true)?;
        if let Endpoint::Partition(slot) = from {
            for r in &self.mem.transactions[i].runs {
                self.partitions[slot]
                    .stage2
                    .unmap(space, Ipa(r.pa), r.len(), &mut self.platform)
                    .map_err(|_| FfaError::Aborted)?;
            }
        }
        // The borrower has let go whatever the zeroing does: a failure to
        // zero is logged, the state follows the tables.
        let t = &mut self.mem.transactions[i];
        t.borrowers[bi].state = BorrowerState::Relinquished;
        t.borrowers[bi].retrieves = 0;
        if zero && zero_runs(&mut self.platform, secure, &t.runs).is_err() {
            log::error!(
                "relinquish {}: memory could not be zeroed",
                crate::text::Hex(rq.handle)
            );
            return Err(FfaError::Aborted);
        }
        Ok(Regs::with_func(func::SUCCESS_32))
    }

    /// FFA_MEM_RECLAIM from the owner (w1/w2 handle, w3 flags).
    fn mem_reclaim(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let handle = handle_of(args);
        let fl = args.w(3);
        if fl & !(flags::ZERO | flags::TIME_SLICE) != 0 {
            return Err(FfaError::InvalidParameters);
        }
        // Reclaiming a send still arriving in fragments cancels it.
        if let Some(i) = self
            .mem
            .incoming
            .iter()
            .position(|m| m.handle == handle && m.from == from)
        {
            self.mem.incoming.swap_remove(i);
            return Ok(Regs::with_func(func::SUCCESS_32));
        }
        let i = self
            .mem
            .transactions
            .iter()
            .position(|t| t.handle == handle)
            .ok_or(FfaError::InvalidParameters)?;
        let t = &self.mem.transactions[i];
        let owner_ok = match (t.owner, from) {
            // The normal world is one instance; a hypervisor reclaims for its VMs.
            (Owner::NormalWorld(_), Endpoint::NormalWorld(_)) => true,
            (Owner::Partition(id), Endpoint::Partition(s)) => self.partitions[s].id() == id,
            _ => false,
        };
        if !owner_ok {
            return Err(FfaError::Denied);
        }
        // Reclaim flags (DEN0077 v1.2 §11.4, DEN0140 §1.12): zeroing on
        // the way back only for memory the borrowers may have written
        // alone (lent), never for a share or device memory.
        if fl & flags::ZERO != 0 && (t.op == Op::Share || t.device) {
            return Err(FfaError::InvalidParameters);
        }
        // A borrower that still holds the memory blocks the reclaim, unless it
        // is gone (aborted): then the SPMC takes the memory back from it.
        // (At most one per borrower: a fixed array, nothing allocated.)
        let mut gone = [SlotId::default(); desc::MAX_RECEIVERS];
        let mut n_gone = 0;
        for b in &t.borrowers {
            if b.state != BorrowerState::Retrieved {
                continue;
            }
            if !is_secure_id(b.id) {
                // A normal-world borrower gives the memory back only by
                // relinquishing it (nothing here can take it from it).
                return Err(FfaError::Denied);
            }
            match self.slot_of(PartId::new(b.id)) {
                Some(s) if self.partitions[s].state == PartitionState::Running => {
                    return Err(FfaError::Denied);
                }
                Some(s) if n_gone < gone.len() => {
                    gone[n_gone] = s;
                    n_gone += 1;
                }
                _ => {}
            }
        }
        self.check_unpinned(t.secure, &t.runs, true)?;
        if fl & flags::ZERO != 0 {
            let t = &self.mem.transactions[i];
            zero_runs(&mut self.platform, t.secure, &t.runs)?;
        }
        let t = self.mem.transactions.swap_remove(i);
        let space = t.space();
        for &s in &gone[..n_gone] {
            for r in &t.runs {
                let _ =
                    self.partitions[s]
                        .stage2
                        .unmap(space, Ipa(r.pa), r.len(), &mut self.platform);
            }
        }
        if t.op != Op::Share
            && let Owner::Partition(id) = t.owner
            && let Some(slot) = self.slot_of(PartId::new(id))
        {
            for r in &t.runs {
                let kind = if t.device {
                    S2Kind::Device {
                        write: r.owner_access.write,
                    }
                } else {
                    S2Kind::Memory(r.owner_access)
                };
                let _ = self.partitions[slot].stage2.map(
                    space,
                    Ipa(r.owner_ipa),
                    Pa(r.pa),
                    r.len(),
                    kind,
                );
            }
        }
        debug!("mem {handle:#x} reclaimed by {:#x}", t.owner.id());
        Ok(Regs::with_func(func::SUCCESS_32))
    }

    /// A VM is gone (VM_DESTROYED, its TEE destroyed): it holds nothing
    /// any more. What it had retrieved as a borrower (a static partition's
    /// normal-world memory lent or shared to it) counts as relinquished, so
    /// that the owner can reclaim it (its hypervisor can no longer
    /// relinquish for it), and is zeroed if the VM asked for that when it
    /// retrieved (the flags decide, as for a relinquish).
    pub(crate) fn mem_vm_gone(&mut self, vm: PartitionId) {
        for t in &mut self.mem.transactions {
            let mut zero = false;
            for b in t.borrowers.iter_mut() {
                if b.id == vm && b.state == BorrowerState::Retrieved {
                    b.state = BorrowerState::Relinquished;
                    b.retrieves = 0;
                    zero |= b.zero_after && t.op != Op::Share && !t.device;
                }
            }
            if zero && zero_runs(&mut self.platform, t.secure, &t.runs).is_err() {
                log::error!(
                    "mem {}: memory VM {} held could not be zeroed",
                    crate::text::Hex(t.handle),
                    crate::text::hex(vm)
                );
            }
        }
    }

    /// A partition goes away (a destroyed instance in `slot` with ID `id`):
    /// it holds nothing any more, what it sent its VM is taken back,
    /// memory donated to it is zeroed and forgotten, and its fragments in
    /// flight are dropped.
    pub(crate) fn mem_forget(&mut self, slot: SlotId, id: PartitionId) {
        // What it sent its VM (normal-world memory the VM had donated to
        // it) goes back to the normal world with the rest of its donations
        // below, zeroed: the transaction is dissolved, whoever holds it.
        let mut i = 0;
        while i < self.mem.transactions.len() {
            if self.mem.transactions[i].owner == Owner::Partition(id) {
                let h = self.mem.transactions.remove(i).handle;
                self.mem.outgoing.retain(|o| o.handle != h);
            } else {
                i += 1;
            }
        }
        for t in &mut self.mem.transactions {
            for b in &mut t.borrowers {
                if b.id == id && b.state == BorrowerState::Retrieved {
                    b.state = BorrowerState::Relinquished;
                    b.retrieves = 0;
                }
            }
        }
        for d in self.mem.donated.iter().filter(|d| d.owner == id) {
            if zero_pages(&mut self.platform, d.secure, d.pa, d.pages).is_err() {
                log::error!(
                    "cannot zero memory donated to {} at {}",
                    crate::text::hex(id),
                    crate::text::Hex(d.pa)
                );
            }
        }
        self.mem.donated.retain(|d| d.owner != id);
        let ep = Endpoint::Partition(slot);
        self.mem.incoming.retain(|m| m.from != ep);
        self.mem.outgoing.retain(|o| o.to != ep);
    }
}

/// Zeroes the memory of `runs` (normal-world memory through temporary mappings).
fn zero_runs<P: Platform>(
    platform: &mut P,
    secure: bool,
    runs: &ChunkVec<Run>,
) -> Result<(), FfaError> {
    for r in runs {
        zero_pages(platform, secure, r.pa, r.pages)?;
    }
    Ok(())
}

/// Zeroes `pages` pages at `pa` (normal-world memory through temporary
/// mappings of at most [`ZERO_CHUNK_PAGES`]).
fn zero_pages<P: Platform>(
    platform: &mut P,
    secure: bool,
    pa: u64,
    pages: u64,
) -> Result<(), FfaError> {
    if secure {
        return platform
            .zero(Pa(pa), pages * PAGE_SIZE)
            .map_err(|_| FfaError::Aborted);
    }
    let mut off = 0;
    while off < pages {
        let n = (pages - off).min(ZERO_CHUNK_PAGES);
        let (pa, len) = (Pa(pa + off * PAGE_SIZE), n * PAGE_SIZE);
        platform.map_ns(pa, len).map_err(|_| FfaError::NoMemory)?;
        let z = platform.zero(pa, len);
        platform.unmap_ns(pa, len);
        z.map_err(|_| FfaError::Aborted)?;
        off += n;
    }
    Ok(())
}

/// Most heap the stage-2 tables for `runs` (sorted by address) can take in
/// a borrower's tables: one last-level table per 2 MiB block touched, one
/// per 1 GiB block, the root. One pass, nothing allocated.
fn table_bytes(runs: &ChunkVec<Run>) -> usize {
    let (mut l3, mut l2) = (0usize, 0usize);
    let (mut prev3, mut prev2) = (u64::MAX, u64::MAX);
    for r in runs {
        let (first, last) = (r.pa >> 21, (r.pa + r.len() - 1) >> 21);
        let new3 = last - first + 1 - u64::from(first == prev3);
        l3 = l3.saturating_add(new3 as usize);
        let (first2, last2) = (first >> 9, last >> 9);
        l2 = l2.saturating_add((last2 - first2 + 1 - u64::from(first2 == prev2)) as usize);
        (prev3, prev2) = (last, last2);
    }
    l3.saturating_add(l2)
        .saturating_add(1)
        .saturating_mul(PAGE_SIZE as usize)
}

/// FFA_MEM_FRAG_RX as the answer to a sender: more fragments expected from `offset`.
fn frag_rx_answer(handle: u64, offset: u32) -> Regs {
    let mut r = Regs::with_func(func::MEM_FRAG_RX);
    handle_regs(&mut r, handle, 1);
    r.0[3] = offset as u64;
    r
}
