//! FF-A memory management: share, lend and donate, retrieve, relinquish and
//! reclaim, with fragmentation both ways (DEN0077 v1.2 chapter 11 for the
//! ABIs, DEN0140 v1.2 for the descriptors and the ownership rules).
//!
//! The contract, the choices the specification leaves open and the error
//! table are in `docs/memory-sharing.md`; the rules in short:
//!
//! - the normal world sends normal-world RAM to the partitions its VM may
//!   reach (the binding policy); a static partition sends its own memory to
//!   other static partitions; a vTEE instance sends nothing;
//! - the SPMC keeps, per handle, the owner, the physical runs, the borrowers
//!   and their state, and changes the stage-2 tables at each step: lend and
//!   donate unmap a partition owner's pages when the send completes, retrieve
//!   maps them for the borrower (at IPA = PA, in the IPA space of the memory's
//!   security state), relinquish unmaps them, reclaim gives the owner its
//!   access back; every unmap invalidates the TLB for that VMID and space;
//! - every check runs before anything changes, so an error leaves no trace.

pub mod desc;
pub mod ownership;

use alloc::vec::Vec;

use log::debug;

use crate::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use crate::ffa::{FfaError, PartitionId, Regs, Version, func, is_secure_id};
use crate::manager::{Endpoint, Spmc};
use crate::partition::{PartitionState, RxState};
use crate::platform::Platform;
use crate::policy::Kind as PolicyKind;
use crate::sp_manifest::Access;
use crate::stage2::Kind as S2Kind;
use desc::{Layout, Op, Purpose, Range, Receiver, attr, flags, perm};
use ownership::PhysRange;

/// Longest transaction descriptor accepted (in fragments if need be).
pub const MAX_DESCRIPTOR: u32 = 256 * 1024;
/// Most transactions in flight, sends still being fragmented included.
pub const MAX_IN_FLIGHT: usize = 64;
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

    fn overlaps(&self, pa: u64, len: u64) -> bool {
        self.pa < pa + len && pa < self.pa + self.len()
    }
}

/// Where a borrower is in the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BorrowerState {
    /// Named by the sender, has not retrieved.
    NotRetrieved,
    /// Has the memory mapped.
    Retrieved,
    /// Retrieved and gave it back.
    Relinquished,
}

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
    /// The access it has while it holds the memory.
    pub granted: Access,
    /// It asked for the memory to be zeroed when it relinquishes.
    pub zero_after: bool,
}

/// A transaction in progress, by handle.
#[derive(Clone, Debug)]
pub struct Transaction {
    /// Its handle.
    pub handle: u64,
    /// Share, lend or donate.
    pub op: Op,
    /// The owner.
    pub owner: Owner,
    /// Secure memory (else normal-world memory).
    pub secure: bool,
    /// Memory region attributes the sender gave.
    pub attributes: u16,
    /// The sender's tag.
    pub tag: u64,
    /// The memory.
    pub runs: Vec<Run>,
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
    op: Op,
    total: u32,
    data: Vec<u8>,
    buf: Buf,
}

/// A retrieve response still leaving in fragments.
#[derive(Debug)]
struct Outgoing {
    handle: u64,
    to: Endpoint,
    data: Vec<u8>,
    sent: usize,
    buf: Buf,
}

/// Everything the SPMC keeps about memory management.
#[derive(Debug, Default)]
pub struct MemState {
    /// Transactions by handle.
    pub transactions: Vec<Transaction>,
    /// Donated memory and its new owners.
    pub donated: Vec<Donated>,
    incoming: Vec<Incoming>,
    outgoing: Vec<Outgoing>,
    next_handle: u64,
}

impl MemState {
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

/// Checks a send descriptor's flags, attributes and permissions for `op`
/// (DEN0140 §1.11-1.12; all INVALID_PARAMETERS).
fn validate_send(op: Op, d: &desc::Descriptor) -> Result<(), FfaError> {
    let bad = FfaError::InvalidParameters;
    let allowed = match op {
        Op::Share => flags::TIME_SLICE,
        Op::Lend | Op::Donate => flags::ZERO | flags::TIME_SLICE,
    };
    if d.flags & !allowed != 0 {
        return Err(bad);
    }
    let a = d.attributes;
    if a & !0x3F != 0 {
        // Bits [15:6] are reserved for senders (bit 6, NS, is the SPMC's to set).
        return Err(bad);
    }
    match a & attr::TYPE_MASK {
        attr::TYPE_NONE if op == Op::Share || a & 0xF != 0 => return Err(bad),
        attr::TYPE_NONE => {}
        attr::TYPE_NORMAL => {
            let cache = a & attr::CACHE_MASK;
            if (cache != attr::CACHE_NC && cache != attr::CACHE_WB)
                || a & attr::SHARE_MASK == attr::SHARE_RESERVED
            {
                return Err(bad);
            }
        }
        // Device memory is never shared through the SPMC; 0b11 is reserved.
        _ => return Err(bad),
    }
    let many = d.receivers.len() > 1;
    if op == Op::Donate && many {
        return Err(bad);
    }
    for r in &d.receivers {
        let (data, instr) = (r.perms & perm::DATA_MASK, r.perms & perm::INSTR_MASK);
        if r.flags != 0 || r.perms & 0xF0 != 0 || data == 3 || instr == 0xC {
            return Err(bad);
        }
        match op {
            Op::Share | Op::Lend if data == perm::DATA_NONE => return Err(bad),
            Op::Donate if data != perm::DATA_NONE || instr != perm::INSTR_NONE => {
                return Err(bad);
            }
            _ => {}
        }
        if (op == Op::Share || many) && instr == perm::X {
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
        let sp = matches!(from, Endpoint::Partition(_));
        match f {
            _ if op_of(f).is_some() => self.mem_send(from, args),
            func::MEM_FRAG_TX => self.mem_frag_tx(from, args),
            func::MEM_RECLAIM => self.mem_reclaim(from, args),
            func::MEM_RETRIEVE_REQ_32 | func::MEM_RETRIEVE_REQ_64 if sp => {
                self.mem_retrieve(from, args)
            }
            func::MEM_FRAG_RX if sp => self.mem_frag_rx(from, args),
            func::MEM_RELINQUISH if sp => self.mem_relinquish(from, args),
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
                let pa = self.partitions[s as usize]
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

    /// Reads `len` bytes at the start of the caller's TX (or its buffer).
    fn buf_read(&mut self, from: Endpoint, buf: Buf, len: usize) -> Result<Vec<u8>, FfaError> {
        let mut out = alloc::vec![0u8; len];
        match buf {
            Buf::Mailbox => {
                let b = self.buffers(from).ok_or(FfaError::InvalidParameters)?;
                self.platform
                    .read(b.tx, &mut out)
                    .map_err(|_| FfaError::Aborted)?;
            }
            Buf::Caller { pa, len: size, ns } => {
                if ns {
                    self.platform
                        .map_ns(pa, size)
                        .map_err(|_| FfaError::NoMemory)?;
                }
                let r = self.platform.read(pa, &mut out);
                if ns {
                    self.platform.unmap_ns(pa, size);
                }
                r.map_err(|_| FfaError::Aborted)?;
            }
        }
        Ok(out)
    }

    /// Writes `data` at the start of the caller's RX (or its buffer).
    fn buf_write(&mut self, to: Endpoint, buf: Buf, data: &[u8]) -> Result<(), FfaError> {
        match buf {
            Buf::Mailbox => {
                let b = self.buffers(to).ok_or(FfaError::InvalidParameters)?;
                self.platform
                    .write(b.rx, data)
                    .map_err(|_| FfaError::Aborted)?;
                self.set_rx_state(to, RxState::Full);
            }
            Buf::Caller { pa, len, ns } => {
                if ns {
                    self.platform
                        .map_ns(pa, len)
                        .map_err(|_| FfaError::NoMemory)?;
                }
                let r = self.platform.write(pa, data);
                if ns {
                    self.platform.unmap_ns(pa, len);
                }
                r.map_err(|_| FfaError::Aborted)?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // Sending: FFA_MEM_SHARE / LEND / DONATE and FFA_MEM_FRAG_TX
    // ------------------------------------------------------------------

    /// FFA_MEM_SHARE, FFA_MEM_LEND, FFA_MEM_DONATE (§11.1-11.3 of DEN0077
    /// v1.2 chapter 11, 32 and 64 bit): w1 total length, w2 fragment length.
    fn mem_send(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let op = op_of(args.func()).ok_or(FfaError::NotSupported)?;
        let (total, frag) = (args.w(1), args.w(2));
        let buf = self.mem_buffer(from, args, false)?;
        if total == 0 || frag == 0 || frag > total || frag as u64 > self.buf_size(from, buf) {
            return Err(FfaError::InvalidParameters);
        }
        if total > MAX_DESCRIPTOR || self.mem.in_flight() >= MAX_IN_FLIGHT {
            return Err(FfaError::NoMemory);
        }
        if !self.platform.heap_available(total as usize * 2 + 64 * 1024) {
            return Err(FfaError::NoMemory);
        }
        let data = self.buf_read(from, buf, frag as usize)?;
        if frag == total {
            let handle = self.new_handle();
            self.mem_commit(from, op, &data, handle)?;
            return Ok(success_with_handle(handle));
        }
        let handle = self.new_handle();
        self.mem.incoming.push(Incoming {
            handle,
            from,
            op,
            total,
            data,
            buf,
        });
        Ok(frag_rx_answer(handle, frag))
    }

    /// FFA_MEM_FRAG_TX from a sender (w1/w2 handle, w3 fragment length).
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
        let more = self.buf_read(from, buf, len as usize)?;
        let m = &mut self.mem.incoming[i];
        m.data.extend_from_slice(&more);
        let received = m.data.len() as u32;
        if (received as u64) < total {
            return Ok(frag_rx_answer(handle, received));
        }
        let m = self.mem.incoming.swap_remove(i);
        self.mem_commit(from, m.op, &m.data, handle)?;
        Ok(success_with_handle(handle))
    }

    /// Checks a complete send descriptor and, if every check passes, records
    /// the transaction and removes a partition owner's access for lend and donate.
    fn mem_commit(
        &mut self,
        from: Endpoint,
        op: Op,
        data: &[u8],
        handle: u64,
    ) -> Result<(), FfaError> {
        let layout = layout_of(self.version_of(from));
        let d = desc::parse(data, layout, Purpose::Send)?;
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
                let p = &self.partitions[s as usize];
                if d.sender != p.id() {
                    return Err(FfaError::InvalidParameters);
                }
                if p.kind != PolicyKind::Static {
                    // An instance's memory lives and dies with its VM.
                    return Err(FfaError::Denied);
                }
                Owner::Partition(d.sender)
            }
        };
        let borrowers = self.resolve_receivers(owner, &d.receivers)?;
        let (secure, runs) = self.resolve_memory(from, owner, &d.ranges)?;
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
        // Nothing already in a transaction, or donated away.
        for r in &runs {
            let busy =
                self.mem.transactions.iter().any(|t| {
                    t.secure == secure && t.runs.iter().any(|x| x.overlaps(r.pa, r.len()))
                }) || self.mem.donated.iter().any(|x| {
                    x.secure == secure
                        && x.pa < r.pa + r.len()
                        && r.pa < x.pa + x.pages * PAGE_SIZE
                        && !matches!(owner, Owner::Partition(id) if id == x.owner)
                });
            if busy {
                return Err(FfaError::Denied);
            }
        }
        // Nothing that backs a buffer the SPMC keeps (ownership.rs).
        self.check_unpinned(secure, &runs, false)?;
        // Lend and donate: the owner's access goes now (§1.5 of DEN0140).
        if op != Op::Share
            && let Owner::Partition(id) = owner
        {
            let slot = self.slot_of(id).ok_or(FfaError::Aborted)?;
            for r in &runs {
                self.partitions[slot as usize]
                    .stage2
                    .unmap(
                        IpaSpace::Secure,
                        Ipa(r.owner_ipa),
                        r.len(),
                        &mut self.platform,
                    )
                    .map_err(|_| FfaError::Aborted)?;
            }
        }
        debug!(
            "mem {op:?} {handle:#x} from {:#x}: {} page(s) to {:?}",
            owner.id(),
            runs.iter().map(|r| r.pages).sum::<u64>(),
            borrowers.iter().map(|b| b.id).collect::<Vec<_>>()
        );
        self.mem.transactions.push(Transaction {
            handle,
            op,
            owner,
            secure,
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
        let mut out: Vec<Borrower> = Vec::with_capacity(receivers.len());
        for r in receivers {
            if !is_secure_id(r.id) || r.id == owner.id() {
                return Err(FfaError::InvalidParameters);
            }
            let slot = match owner {
                // A VM's message to a template reaches its own instance; the
                // same routing (and the same DENIED) applies to its memory.
                Owner::NormalWorld(vm) => self.route_for_vm(vm, r.id)?,
                Owner::Partition(_) => {
                    if self.config().policy.template_of(r.id).is_some() {
                        return Err(FfaError::Denied);
                    }
                    let slot = self.slot_of(r.id).ok_or(FfaError::InvalidParameters)?;
                    if self.partitions[slot as usize].kind != PolicyKind::Static {
                        return Err(FfaError::Denied);
                    }
                    slot
                }
            };
            let p = &self.partitions[slot as usize];
            if p.state != PartitionState::Running {
                return Err(FfaError::Denied);
            }
            let id = p.id();
            if out.iter().any(|b| b.id == id) {
                return Err(FfaError::InvalidParameters);
            }
            out.push(Borrower {
                id,
                perms: r.perms,
                impdef: r.impdef,
                state: BorrowerState::NotRetrieved,
                granted: Access::RO,
                zero_after: false,
            });
        }
        Ok(out)
    }

    /// The physical runs of the ranges a sender named, if it owns them all.
    fn resolve_memory(
        &self,
        from: Endpoint,
        owner: Owner,
        ranges: &[Range],
    ) -> Result<(bool, Vec<Run>), FfaError> {
        let mut runs: Vec<Run> = Vec::new();
        match from {
            Endpoint::NormalWorld(_) => {
                for r in ranges {
                    // Normal-world senders own normal-world RAM only.
                    if !self.platform.is_ns_ram(Pa(r.addr), r.pages * PAGE_SIZE) {
                        return Err(FfaError::Denied);
                    }
                    runs.push(Run {
                        pa: r.addr,
                        pages: r.pages,
                        owner_ipa: r.addr,
                        owner_access: Access::RWX,
                    });
                }
                Ok((false, runs))
            }
            Endpoint::Partition(s) => {
                let p = &self.partitions[s as usize];
                let me = owner.id();
                for r in ranges {
                    for i in 0..r.pages {
                        let ipa = r.addr + i * PAGE_SIZE;
                        let t = p
                            .stage2
                            .lookup(IpaSpace::Secure, Ipa(ipa))
                            .filter(|t| !t.device && t.read)
                            .ok_or(FfaError::Denied)?;
                        // Its memory regions, not its image (nor the boot
                        // information after it): a partition never gives its code away.
                        let own = p.memory.iter().any(|(ipa, a)| {
                            *ipa != p.config.load_ipa && a.contains(t.pa, PAGE_SIZE)
                        }) || self.mem.donated.iter().any(|d| {
                            d.owner == me
                                && d.secure
                                && t.pa.0 >= d.pa
                                && t.pa.0 < d.pa + d.pages * PAGE_SIZE
                        });
                        if !own {
                            return Err(FfaError::Denied);
                        }
                        let access = Access {
                            read: t.read,
                            write: t.write,
                            exec: t.exec,
                        };
                        match runs.last_mut() {
                            Some(last)
                                if last.pa + last.len() == t.pa.0
                                    && last.owner_ipa + last.len() == ipa
                                    && last.owner_access == access =>
                            {
                                last.pages += 1;
                            }
                            _ => runs.push(Run {
                                pa: t.pa.0,
                                pages: 1,
                                owner_ipa: ipa,
                                owner_access: access,
                            }),
                        }
                    }
                }
                Ok((true, runs))
            }
        }
    }

    // ------------------------------------------------------------------
    // Retrieving: FFA_MEM_RETRIEVE_REQ and FFA_MEM_FRAG_RX
    // ------------------------------------------------------------------

    /// FFA_MEM_RETRIEVE_REQ from a partition (w1 total length = w2 fragment
    /// length: a retrieve request is never fragmented).
    fn mem_retrieve(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let Endpoint::Partition(slot) = from else {
            return Err(FfaError::NotSupported);
        };
        let (total, frag) = (args.w(1), args.w(2));
        let buf = self.mem_buffer(from, args, true)?;
        if total == 0 || frag != total || total as u64 > self.buf_size(from, buf) {
            return Err(FfaError::InvalidParameters);
        }
        let version = self.version_of(from);
        let layout = layout_of(version);
        let data = self.buf_read(from, buf, total as usize)?;
        let req = desc::parse(&data, layout, Purpose::Retrieve)?;
        let me = self.partitions[slot as usize].id();
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
        let a = req.attributes & !attr::NS;
        if a != 0 && a != t.attributes {
            return Err(FfaError::InvalidParameters);
        }
        let bi = t
            .borrowers
            .iter()
            .position(|b| b.id == me)
            .ok_or(FfaError::Denied)?;
        let mine = req
            .receivers
            .iter()
            .find(|r| r.id == me)
            .ok_or(FfaError::InvalidParameters)?;
        if req
            .receivers
            .iter()
            .any(|r| !t.borrowers.iter().any(|b| b.id == r.id))
        {
            return Err(FfaError::InvalidParameters);
        }
        let b = &t.borrowers[bi];
        if b.state == BorrowerState::Retrieved {
            return Err(FfaError::Denied);
        }
        // Permissions: what the sender gave, narrowed by the request.
        let (rd, ri) = (mine.perms & perm::DATA_MASK, mine.perms & perm::INSTR_MASK);
        if rd == 3 || ri == 0xC || mine.perms & 0xF0 != 0 {
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
        let single = t.borrowers.len() == 1;
        let exec = if ri == perm::X {
            if t.op == Op::Share || !single || si == perm::NX {
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
        // No buffer can be in memory that is in a transaction (ownership.rs).
        self.check_unpinned(t.secure, &t.runs, true)?;
        if buf == Buf::Mailbox
            && self
                .buffers(from)
                .is_some_and(|b| b.rx_state != RxState::Empty)
        {
            return Err(FfaError::Busy);
        }
        if !self
            .platform
            .heap_available(table_bytes(&t.runs) + 16 * 1024)
        {
            return Err(FfaError::NoMemory);
        }
        // Every check passed: zero if asked, map, answer.
        let zero = t.op != Op::Share && (t.zero_pending || req.flags & flags::ZERO != 0);
        let (secure, space, op) = (t.secure, t.space(), t.op);
        let runs = t.runs.clone();
        let s2 = &mut self.partitions[slot as usize].stage2;
        for (k, r) in runs.iter().enumerate() {
            if s2
                .map(space, Ipa(r.pa), Pa(r.pa), r.len(), S2Kind::Memory(access))
                .is_err()
            {
                for done in &runs[..k] {
                    let _ = s2.unmap(space, Ipa(done.pa), done.len(), &mut self.platform);
                }
                return Err(FfaError::NoMemory);
            }
        }
        if zero && let Err(e) = self.zero_runs(secure, &runs) {
            // Nothing may stay mapped for a retrieve that failed.
            let s2 = &mut self.partitions[slot as usize].stage2;
            for r in &runs {
                let _ = s2.unmap(space, Ipa(r.pa), r.len(), &mut self.platform);
            }
            return Err(e);
        }
        let t = &mut self.mem.transactions[i];
        t.zero_pending = false;
        let b = &mut t.borrowers[bi];
        b.state = BorrowerState::Retrieved;
        b.granted = access;
        b.zero_after = req.flags & flags::ZERO_AFTER_RELINQUISH != 0;
        let perms = if write { perm::RW } else { perm::RO } | if exec { perm::X } else { perm::NX };
        let ranges: Vec<Range> = runs
            .iter()
            .map(|r| Range {
                addr: r.pa,
                pages: r.pages,
            })
            .collect();
        let mut attributes = if t.attributes & attr::TYPE_MASK == attr::TYPE_NONE {
            attr::NORMAL_WB_INNER
        } else {
            t.attributes
        };
        if !secure && layout == Layout::V1_1 {
            attributes |= attr::NS;
        }
        let response = desc::Response {
            sender: t.owner.id(),
            attributes,
            flags: op.type_bits() | if zero { flags::ZERO } else { 0 },
            handle: t.handle,
            tag: t.tag,
            receiver: Receiver {
                id: me,
                perms,
                flags: 0,
                impdef: b.impdef,
            },
            ranges: &ranges,
        };
        let emad = if version >= Version::V1_2 { 32 } else { 16 };
        let bytes = desc::encode_response(&response, layout, emad);
        let handle = t.handle;
        if op == Op::Donate {
            // The borrower is the owner now; the handle is retired.
            let t = self.mem.transactions.swap_remove(i);
            for r in &t.runs {
                self.mem.donated.push(Donated {
                    owner: me,
                    pa: r.pa,
                    pages: r.pages,
                    secure: t.secure,
                    access,
                });
            }
        }
        let first = bytes.len().min(self.buf_size(from, buf) as usize);
        self.buf_write(from, buf, &bytes[..first])?;
        let total = bytes.len();
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
        let chunk = self.mem.outgoing[i].data[sent..sent + n].to_vec();
        self.buf_write(from, buf, &chunk)?;
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

    /// FFA_MEM_RELINQUISH from a borrower (descriptor in its TX buffer).
    fn mem_relinquish(&mut self, from: Endpoint, _args: &Regs) -> Result<Regs, FfaError> {
        let Endpoint::Partition(slot) = from else {
            return Err(FfaError::NotSupported);
        };
        let size = self
            .buffers(from)
            .ok_or(FfaError::InvalidParameters)?
            .size
            .min(16 + 2 * desc::MAX_RECEIVERS as u64);
        let data = self.buf_read(from, Buf::Mailbox, size as usize)?;
        let rq = desc::parse_relinquish(&data)?;
        let me = self.partitions[slot as usize].id();
        if rq.flags & !(flags::ZERO | flags::TIME_SLICE) != 0 || rq.endpoints != [me] {
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
        if t.op == Op::Share && rq.flags & flags::ZERO != 0 {
            return Err(FfaError::InvalidParameters);
        }
        let zero = t.op != Op::Share && (rq.flags & flags::ZERO != 0 || t.borrowers[bi].zero_after);
        let (secure, space, runs) = (t.secure, t.space(), t.runs.clone());
        self.check_unpinned(secure, &runs, true)?;
        for r in &runs {
            self.partitions[slot as usize]
                .stage2
                .unmap(space, Ipa(r.pa), r.len(), &mut self.platform)
                .map_err(|_| FfaError::Aborted)?;
        }
        // The borrower has let go whatever the zeroing does: a failure to
        // zero is logged, the state follows the tables.
        self.mem.transactions[i].borrowers[bi].state = BorrowerState::Relinquished;
        if zero && self.zero_runs(secure, &runs).is_err() {
            log::error!("relinquish {:#x}: memory could not be zeroed", rq.handle);
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
            (Owner::Partition(id), Endpoint::Partition(s)) => {
                self.partitions[s as usize].id() == id
            }
            _ => false,
        };
        if !owner_ok {
            return Err(FfaError::Denied);
        }
        if fl & flags::ZERO != 0 && t.op == Op::Share {
            return Err(FfaError::InvalidParameters);
        }
        // A borrower that still holds the memory blocks the reclaim, unless it
        // is gone (aborted): then the SPMC takes the memory back from it.
        let mut gone = Vec::new();
        for b in &t.borrowers {
            if b.state != BorrowerState::Retrieved {
                continue;
            }
            match self.slot_of(b.id) {
                Some(s) if self.partitions[s as usize].state == PartitionState::Running => {
                    return Err(FfaError::Denied);
                }
                Some(s) => gone.push(s),
                None => {}
            }
        }
        self.check_unpinned(t.secure, &t.runs, true)?;
        if fl & flags::ZERO != 0 {
            let (secure, runs) = (t.secure, t.runs.clone());
            self.zero_runs(secure, &runs)?;
        }
        let t = self.mem.transactions.swap_remove(i);
        let space = t.space();
        for s in gone {
            for r in &t.runs {
                let _ = self.partitions[s as usize].stage2.unmap(
                    space,
                    Ipa(r.pa),
                    r.len(),
                    &mut self.platform,
                );
            }
        }
        if t.op != Op::Share
            && let Owner::Partition(id) = t.owner
            && let Some(slot) = self.slot_of(id)
        {
            for r in &t.runs {
                let _ = self.partitions[slot as usize].stage2.map(
                    IpaSpace::Secure,
                    Ipa(r.owner_ipa),
                    Pa(r.pa),
                    r.len(),
                    S2Kind::Memory(r.owner_access),
                );
            }
        }
        debug!("mem {handle:#x} reclaimed by {:#x}", t.owner.id());
        Ok(Regs::with_func(func::SUCCESS_32))
    }

    /// Zeroes the memory of `runs` (normal-world memory through temporary mappings).
    fn zero_runs(&mut self, secure: bool, runs: &[Run]) -> Result<(), FfaError> {
        for r in runs {
            if secure {
                self.platform
                    .zero(Pa(r.pa), r.len())
                    .map_err(|_| FfaError::Aborted)?;
                continue;
            }
            let mut off = 0;
            while off < r.pages {
                let n = (r.pages - off).min(ZERO_CHUNK_PAGES);
                let (pa, len) = (Pa(r.pa + off * PAGE_SIZE), n * PAGE_SIZE);
                self.platform
                    .map_ns(pa, len)
                    .map_err(|_| FfaError::NoMemory)?;
                let z = self.platform.zero(pa, len);
                self.platform.unmap_ns(pa, len);
                z.map_err(|_| FfaError::Aborted)?;
                off += n;
            }
        }
        Ok(())
    }

    /// A partition goes away (a destroyed instance in `slot` with ID `id`):
    /// it holds nothing any more, memory donated to it is zeroed and
    /// forgotten, and its fragments in flight are dropped.
    pub(crate) fn mem_forget(&mut self, slot: u16, id: PartitionId) {
        for t in &mut self.mem.transactions {
            for b in &mut t.borrowers {
                if b.id == id && b.state == BorrowerState::Retrieved {
                    b.state = BorrowerState::Relinquished;
                }
            }
        }
        let mine: Vec<Donated> = self
            .mem
            .donated
            .iter()
            .filter(|d| d.owner == id)
            .copied()
            .collect();
        self.mem.donated.retain(|d| d.owner != id);
        for d in mine {
            let run = Run {
                pa: d.pa,
                pages: d.pages,
                owner_ipa: d.pa,
                owner_access: d.access,
            };
            if self.zero_runs(d.secure, &[run]).is_err() {
                log::error!("cannot zero memory donated to {id:#x} at {:#x}", d.pa);
            }
        }
        let ep = Endpoint::Partition(slot);
        self.mem.incoming.retain(|m| m.from != ep);
        self.mem.outgoing.retain(|o| o.to != ep);
    }
}

/// Most heap the stage-2 tables for `runs` can take in a borrower's tables:
/// one last-level table per 2 MiB block touched, one per 1 GiB block, the root.
fn table_bytes(runs: &[Run]) -> usize {
    let mut blocks: Vec<Range> = Vec::new();
    for r in runs {
        let (first, last) = (r.pa >> 21, (r.pa + r.len() - 1) >> 21);
        for b in first..=last.min(first + MAX_BLOCKS_PER_RUN) {
            blocks.push(Range { addr: b, pages: 1 });
        }
    }
    desc::heapsort_by_addr(&mut blocks);
    let mut l3 = 0usize;
    let mut l2 = 0usize;
    let (mut prev3, mut prev2) = (u64::MAX, u64::MAX);
    for b in &blocks {
        if b.addr != prev3 {
            l3 += 1;
            prev3 = b.addr;
        }
        if b.addr >> 9 != prev2 {
            l2 += 1;
            prev2 = b.addr >> 9;
        }
    }
    (l3 + l2 + 1) * PAGE_SIZE as usize
}

/// 2 MiB blocks counted per run (a run of 32768 pages spans 64).
const MAX_BLOCKS_PER_RUN: u64 = 65;

/// FFA_MEM_FRAG_RX as the answer to a sender: more fragments expected from `offset`.
fn frag_rx_answer(handle: u64, offset: u32) -> Regs {
    let mut r = Regs::with_func(func::MEM_FRAG_RX);
    handle_regs(&mut r, handle, 1);
    r.0[3] = offset as u64;
    r
}
