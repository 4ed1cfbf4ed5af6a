//! Decodes a fuzz input into a sequence of calls on two cores: on a core with
//! no partition running, a call from the normal world (`handle_spmd`); on a
//! core running a vCPU, that partition's next exit (an FF-A call, a fault, an
//! interrupt) through `handle_exit`. Function IDs, endpoint IDs, addresses
//! and descriptors are drawn mostly from values the SPMC accepts, so that
//! sequences get deep; the rest is raw input.
//!
//! After every step [`Driver::check`] verifies the contract:
//! `spmc::testing::contract::check` (stage 2 equals the ownership record, no
//! secure page in two partitions without a transaction naming both, no free
//! pool page mapped), every page freed to the pool in this step is zero, the
//! same vCPU never runs on two cores, and the SPMC's heap stays within what
//! the firmware has. At the end every free page of the pool must be zero.
//! Also `contract::check_buffers`: a page backing a live RX/TX buffer belongs
//! to its endpoint alone.

use spmc::addr::{IpaSpace, PAGE_SIZE, Pa};
use spmc::ffa::{Regs, func, fwk};
use spmc::mem::Owner;
use spmc::mem::desc::{attr, flags, perm};
use spmc::testing::{self, FakePlatform, Invalidation, NS_BASE, contract};
use spmc::vcpu::VcpuRef;
use spmc::{Next, Spmc};

use crate::heap::Meter;
use crate::input::Input;
use crate::world::{self, NS_MEM, NWD_RX, NWD_TX, RAM_IPA};

/// Most steps one input runs.
pub const MAX_STEPS: usize = 48;

/// The firmware's heap: 512 KiB in the image and 1 MiB from the pool
/// (arch-aarch64/src/heap.rs). The SPMC must never need more.
pub const HEAP_LIMIT: isize = 1536 * 1024;

/// FF-A function IDs the driver calls, most of them often.
const FUNCS: &[u32] = &[
    func::VERSION,
    func::FEATURES,
    func::RX_RELEASE,
    func::RXTX_MAP_32,
    func::RXTX_MAP_64,
    func::RXTX_UNMAP,
    func::PARTITION_INFO_GET,
    func::ID_GET,
    func::MSG_WAIT,
    func::YIELD,
    func::RUN,
    func::MSG_SEND_DIRECT_REQ_32,
    func::MSG_SEND_DIRECT_REQ_64,
    func::MSG_SEND_DIRECT_RESP_32,
    func::MSG_SEND_DIRECT_RESP_64,
    func::MEM_DONATE_32,
    func::MEM_DONATE_64,
    func::MEM_LEND_32,
    func::MEM_LEND_64,
    func::MEM_SHARE_32,
    func::MEM_SHARE_64,
    func::MEM_RETRIEVE_REQ_32,
    func::MEM_RETRIEVE_REQ_64,
    func::MEM_RELINQUISH,
    func::MEM_RECLAIM,
    func::MEM_FRAG_RX,
    func::MEM_FRAG_TX,
    func::NORMAL_WORLD_RESUME,
    func::RX_ACQUIRE,
    func::SPM_ID_GET,
    func::MSG_SEND2,
    func::MEM_PERM_GET_32,
    func::MEM_PERM_SET_32,
    func::CONSOLE_LOG_32,
    func::CONSOLE_LOG_64,
    func::PARTITION_INFO_GET_REGS_64,
    func::MSG_SEND_DIRECT_REQ2_64,
    func::MSG_SEND_DIRECT_RESP2_64,
    func::ERROR_32,
    func::SUCCESS_32,
    func::INTERRUPT_32,
    func::EL3_INTR_HANDLE,
    func::SECONDARY_EP_REGISTER_64,
    func::NOTIFICATION_BITMAP_CREATE,
    func::NOTIFICATION_SET,
    func::NOTIFICATION_GET,
];

const SEND_FUNCS: &[u32] = &[
    func::MEM_SHARE_64,
    func::MEM_LEND_64,
    func::MEM_DONATE_64,
    func::MEM_SHARE_32,
    func::MEM_LEND_32,
    func::MEM_DONATE_32,
];

#[derive(Clone, Copy, Debug, Default)]
struct Core {
    /// The register block of the normal-world call in flight on this core.
    regs: Regs,
    /// The vCPU this core runs, if any.
    running: Option<VcpuRef>,
}

/// A send still arriving in fragments: who sends, and the rest of its bytes.
#[derive(Debug)]
struct Pending {
    handle: u64,
    rest: Vec<u8>,
}

/// The SPMC and what the driver remembers about it.
#[derive(Debug)]
pub struct Driver {
    pub s: Spmc<FakePlatform>,
    cores: [Core; 2],
    /// Handles the SPMC returned (it may have retired them since).
    handles: Vec<u64>,
    pending: Option<Pending>,
    meter: Meter,
    steps: usize,
}

impl Driver {
    /// A booted SPMC.
    pub fn new() -> Self {
        let mut meter = Meter::default();
        let s = world::booted(&mut meter);
        let mut d = Self {
            s,
            cores: [Core::default(); 2],
            handles: Vec::new(),
            pending: None,
            meter,
            steps: 0,
        };
        d.drop_records();
        let free = contract::free_map(&d.s);
        d.check(&free);
        d
    }

    /// Runs the input's steps, checking the contract after each; then checks
    /// that every free page of the pool is zero.
    pub fn run(mut self, data: &[u8]) {
        let mut inp = Input::new(data);
        while !inp.is_empty() && self.steps < MAX_STEPS {
            let before = contract::free_map(&self.s);
            self.step(&mut inp);
            self.steps += 1;
            self.drop_records();
            self.check(&before);
        }
        trace(|| {
            format!(
                "end: {} steps, SPMC heap held {} bytes, peak {}",
                self.steps, self.meter.held, self.meter.peak
            )
        });
        if let Some(pa) = contract::dirty_free_page(&self.s, |_| true) {
            panic!("free pool page {:#x} is not zero at the end", pa.0);
        }
    }

    /// The fake platform keeps every TLB invalidation; the driver drops them
    /// (they are the test's record, not the SPMC's heap).
    fn drop_records(&mut self) {
        let inv = std::mem::take(&mut self.s.platform_mut().invalidations);
        self.meter
            .forget(inv.capacity() * size_of::<Invalidation>());
    }

    fn check(&mut self, free_before: &[bool]) {
        if let Err(e) = contract::check(&self.s) {
            panic!("contract broken after step {}: {e}", self.steps);
        }
        if let Err(e) = contract::check_buffers(&self.s) {
            panic!("buffer rule broken after step {}: {e}", self.steps);
        }
        // Pages freed in this step are zero.
        if let Some(pool) = self.s.pool() {
            let base = pool.range().base;
            if let Some(pa) = contract::dirty_free_page(&self.s, |pa| {
                let i = ((pa.0 - base) / PAGE_SIZE) as usize;
                !free_before.get(i).copied().unwrap_or(false)
            }) {
                panic!("page {:#x} went back to the pool with data in it", pa.0);
            }
        }
        // One vCPU on one core at a time.
        if let [
            Core {
                running: Some(a), ..
            },
            Core {
                running: Some(b), ..
            },
        ] = self.cores
        {
            assert_ne!(a, b, "the SPMC runs one vCPU on two cores");
        }
        assert!(
            self.meter.peak <= HEAP_LIMIT,
            "the SPMC needed {} bytes of heap (limit {HEAP_LIMIT})",
            self.meter.peak
        );
    }

    fn ids(&self) -> Vec<u16> {
        self.s
            .partitions()
            .iter()
            .filter(|p| p.id() != 0)
            .map(|p| p.id().raw())
            .collect()
    }

    /// An endpoint ID: mostly a partition's, sometimes the normal world's, a
    /// VM's, the SPMC's or anything.
    fn pick_id(&self, inp: &mut Input) -> u16 {
        let ids = self.ids();
        match inp.u8() % 8 {
            0..=5 if !ids.is_empty() => ids[inp.u8() as usize % ids.len()],
            6 if inp.bool() => inp.u8() as u16 % 4,
            6 => inp.pick(&[0x8000, 0xFFFF, 0x8010, 0x8100, 0x8101, 0x7FFF]),
            _ => inp.u16(),
        }
    }

    fn pick_handle(&self, inp: &mut Input) -> u64 {
        let live: Vec<u64> = self
            .s
            .mem()
            .transactions()
            .iter()
            .map(|t| t.handle)
            .collect();
        match inp.u8() % 4 {
            0 | 1 if !live.is_empty() => live[inp.u8() as usize % live.len()],
            2 if !self.handles.is_empty() => self.handles[inp.u8() as usize % self.handles.len()],
            _ => inp.u64(),
        }
    }

    /// A register value: small numbers, IDs, addresses the SPMC knows, or raw.
    fn pick_arg(&self, inp: &mut Input) -> u64 {
        match inp.u8() % 10 {
            0 => 0,
            1 => inp.u8() as u64,
            2 => (self.pick_id(inp) as u64) << 16 | self.pick_id(inp) as u64,
            3 => inp.pick(&[NWD_TX, NWD_RX, NS_MEM, NS_BASE, RAM_IPA, world::SP_TX_IPA]),
            4 => NS_MEM + (inp.u8() as u64 % 32) * PAGE_SIZE,
            5 => RAM_IPA + (inp.u8() as u64 % 32) * PAGE_SIZE,
            6 => {
                let h = self.pick_handle(inp);
                if inp.bool() { h & 0xFFFF_FFFF } else { h >> 32 }
            }
            7 => inp.u32() as u64,
            8 => 0x1_0000 | (inp.u8() as u64 % 3),
            _ => inp.u64(),
        }
    }

    fn step(&mut self, inp: &mut Input) {
        let b = inp.u8();
        let core = (b & 1) as usize;
        let op = b >> 1;
        match self.cores[core].running {
            None => self.nwd_step(core, op, inp),
            Some(v) => self.sp_step(core, v, op, inp),
        }
    }

    /// Records what the SPMC does next on `core`.
    fn next(&mut self, core: usize, next: Next) {
        self.cores[core].running = match next {
            Next::Run { vcpu, .. } => Some(vcpu),
            Next::NormalWorld => None,
        };
        // A handle in the answer (x2/x3 of SUCCESS after a send, x1/x2 of FRAG_RX).
        let r = self.cores[core].regs;
        if r.func() == func::SUCCESS_32 {
            self.note_handle(r.x(2) & 0xFFFF_FFFF | (r.x(3) & 0xFFFF_FFFF) << 32);
        }
    }

    fn note_handle(&mut self, h: u64) {
        if self.s.mem().transaction(h).is_some() && !self.handles.contains(&h) {
            if self.handles.len() >= 32 {
                self.handles.remove(0);
            }
            self.handles.push(h);
        }
    }

    fn spmd(&mut self, core: usize, call: &[u64]) {
        self.cores[core].regs = Regs::from_slice(call);
        let mut regs = self.cores[core].regs;
        self.meter.enter();
        let next = self.s.handle_spmd(&mut regs);
        self.meter.leave();
        trace(|| format!("core {core} nwd {call:x?} -> {:x?} {next:?}", &regs.0[..4]));
        self.cores[core].regs = regs;
        self.next(core, next);
    }

    fn exit(&mut self, core: usize, v: VcpuRef, call: Option<&[u64]>) {
        let mut regs = self.cores[core].regs;
        self.meter.enter();
        let next = match call {
            Some(c) => testing::sp_call(&mut self.s, v, c, &mut regs),
            None => testing::exit(&mut self.s, v, &mut regs),
        };
        self.meter.leave();
        self.cores[core].regs = regs;
        // What the partition was told (a handle from its send). A partition
        // can be gone by now: an instance that fails its initialisation is
        // destroyed, vCPUs and all.
        let x = self.regs_of(v);
        trace(|| format!("core {core} {v:?} {call:x?} -> {x:x?} {next:?}"));
        if x[0] as u32 == func::SUCCESS_32 {
            self.note_handle(x[2] & 0xFFFF_FFFF | (x[3] & 0xFFFF_FFFF) << 32);
        }
        self.next(core, next);
    }

    // ------------------------------------------------------------------
    // The normal world
    // ------------------------------------------------------------------

    fn nwd_step(&mut self, core: usize, op: u8, inp: &mut Input) {
        match op % 12 {
            // Any call.
            0 | 1 => {
                let f = if inp.u8() < 240 {
                    inp.pick(FUNCS)
                } else {
                    inp.u32()
                };
                let mut call = [f as u64, 0, 0, 0, 0, 0, 0, 0];
                for x in &mut call[1..] {
                    *x = self.pick_arg(inp);
                }
                self.spmd(core, &call);
            }
            // A memory send built from a valid descriptor.
            2 | 3 => {
                let sender = if inp.one_in(4) {
                    inp.u8() as u16 % 4
                } else {
                    0
                };
                let ranges = ns_ranges(inp);
                let bytes = self.descriptor(inp, sender, &ranges);
                self.send(core, inp, NWD_TX, &bytes, true);
                // Mostly, then a direct request to the first receiver, which
                // then runs (and may retrieve) in the next steps.
                let r = self.cores[core].regs;
                if r.func() == func::SUCCESS_32 && !inp.one_in(3) && bytes.len() > 50 {
                    let to = u16::from_le_bytes([bytes[48], bytes[49]]);
                    let call = [
                        func::MSG_SEND_DIRECT_REQ_64 as u64,
                        (sender as u64) << 16 | to as u64,
                    ];
                    self.spmd(core, &call);
                }
            }
            // The next fragment of a send.
            4 => self.frag_tx(core, inp, None),
            // Reclaim.
            5 => {
                let h = self.pick_handle(inp);
                let fl = if inp.bool() { flags::ZERO as u64 } else { 0 };
                self.spmd(
                    core,
                    &[func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, fl],
                );
            }
            // A direct request to a partition.
            6 | 7 => {
                let to = self.pick_id(inp);
                let from = if inp.one_in(4) {
                    inp.u8() as u16 % 4
                } else {
                    0
                };
                let f = inp.pick(&[
                    func::MSG_SEND_DIRECT_REQ_64,
                    func::MSG_SEND_DIRECT_REQ_32,
                    func::MSG_SEND_DIRECT_REQ2_64,
                ]);
                let mut call = [f as u64, (from as u64) << 16 | to as u64, 0, 0, 0, 0, 0, 0];
                for x in &mut call[3..] {
                    *x = inp.u8() as u64;
                }
                self.spmd(core, &call);
            }
            // FFA_RUN of a vCPU (resumes a preempted one).
            8 => {
                let id = self.pick_id(inp);
                let idx = (inp.u8() % 2) as u64;
                self.spmd(core, &[func::RUN as u64, (id as u64) << 16 | idx]);
            }
            // VM created / destroyed (the hypervisor).
            9 => {
                let vm = inp.u8() as u64 % 5;
                let kind = if inp.bool() {
                    fwk::VM_CREATED
                } else {
                    fwk::VM_DESTROYED
                };
                let to = if inp.one_in(8) {
                    self.pick_id(inp)
                } else {
                    0x8010
                };
                let f = if inp.bool() {
                    func::MSG_SEND_DIRECT_REQ_32
                } else {
                    func::MSG_SEND_DIRECT_REQ_64
                };
                let call = [
                    f as u64,
                    to as u64,
                    (fwk::FLAG | kind) as u64,
                    0,
                    0,
                    vm,
                    0,
                    0,
                ];
                self.spmd(core, &call);
                // Usually the new instance boots as a good partition does.
                if !inp.one_in(4)
                    && let Some(v) = self.cores[core].running
                {
                    let mut regs = self.cores[core].regs;
                    self.meter.enter();
                    let n = world::play_boot(&mut self.s, Some(v), &mut regs);
                    self.meter.leave();
                    self.cores[core].regs = regs;
                    self.next(core, n);
                }
            }
            // The normal world writes its buffers.
            10 => {
                let at = inp.u8() as u64 * 16;
                let data = inp.bytes(64).to_vec();
                let base = if inp.bool() { NWD_TX } else { NWD_RX };
                self.s.platform_mut().nwd_write(base + at, &data);
            }
            // FFA_RX_RELEASE, FFA_PARTITION_INFO_GET and friends, as a VM.
            _ => {
                let vm = inp.u8() as u64 % 4;
                let f = inp.pick(&[
                    func::RX_RELEASE,
                    func::PARTITION_INFO_GET,
                    func::RXTX_UNMAP,
                    func::MSG_SEND2,
                ]);
                let call = match f {
                    func::RX_RELEASE => [f as u64, vm, 0, 0, 0, 0, 0, 0],
                    func::PARTITION_INFO_GET => [f as u64, 0, 0, 0, 0, inp.u8() as u64 % 2, 0, vm],
                    _ => [f as u64, vm << 16, 0, 0, 0, 0, 0, 0],
                };
                self.spmd(core, &call);
            }
        }
    }

    /// Writes `bytes` (or its first fragment) to the TX buffer at `tx` and
    /// sends it; the rest waits for FFA_MEM_FRAG_TX steps.
    fn send(&mut self, core: usize, inp: &mut Input, tx: u64, bytes: &[u8], nwd: bool) {
        let f = inp.pick(SEND_FUNCS);
        let total = bytes.len();
        let frag = if inp.one_in(6) && total > 16 {
            (inp.u16() as usize % total).max(1)
        } else {
            total
        };
        let mut total_reg = total as u64;
        if inp.one_in(16) {
            total_reg = inp.u32() as u64;
        }
        self.write_tx(tx, &bytes[..frag], nwd);
        let call = [f as u64, total_reg, frag as u64, 0, 0];
        let who = self.current_sp(core, nwd);
        match who {
            None => self.spmd(core, &call),
            Some(v) => self.exit(core, v, Some(&call)),
        }
        // A fragmented send: the answer is FFA_MEM_FRAG_RX with the handle.
        let x = self.answer(core, who);
        if x[0] as u32 == func::MEM_FRAG_RX {
            self.pending = Some(Pending {
                handle: x[1] & 0xFFFF_FFFF | (x[2] & 0xFFFF_FFFF) << 32,
                rest: bytes[frag..].to_vec(),
            });
        }
    }

    fn current_sp(&self, core: usize, nwd: bool) -> Option<VcpuRef> {
        if nwd { None } else { self.cores[core].running }
    }

    /// x0-x7 of vCPU `v` (zero if its partition is gone).
    fn regs_of(&mut self, v: VcpuRef) -> [u64; 8] {
        let mut out = [0u64; 8];
        let p = &self.s.partition(v.slot);
        if v.index < p.vcpu_count {
            out.copy_from_slice(&self.s.vcpu_context_mut(v).x[..8]);
        }
        out
    }

    /// x0-x7 of the last answer to partition `who`, or to the normal world on `core`.
    fn answer(&mut self, core: usize, who: Option<VcpuRef>) -> [u64; 8] {
        let mut out = [0u64; 8];
        match who {
            Some(v) => out = self.regs_of(v),
            None => out.copy_from_slice(&self.cores[core].regs.0[..8]),
        }
        out
    }

    fn write_tx(&mut self, tx: u64, bytes: &[u8], nwd: bool) {
        let n = bytes.len().min(PAGE_SIZE as usize);
        if nwd {
            self.s.platform_mut().nwd_write(tx, &bytes[..n]);
        } else {
            self.s.platform_mut().secure_write(Pa(tx), &bytes[..n]);
        }
    }

    /// The next fragment of the pending send (or raw bytes), from the normal
    /// world (`v` None) or a partition.
    fn frag_tx(&mut self, core: usize, inp: &mut Input, v: Option<VcpuRef>) {
        let (handle, chunk) = match self.pending.as_mut() {
            Some(p) if !inp.one_in(4) => {
                let n = if inp.bool() {
                    p.rest.len()
                } else {
                    (inp.u16() as usize).min(p.rest.len())
                };
                let chunk: Vec<u8> = p.rest.drain(..n).collect();
                (p.handle, chunk)
            }
            _ => (self.pick_handle(inp), inp.bytes(64).to_vec()),
        };
        let call = [
            func::MEM_FRAG_TX as u64,
            handle & 0xFFFF_FFFF,
            handle >> 32,
            chunk.len() as u64,
            (inp.u8() as u64 % 4) << 16,
        ];
        match v {
            None => {
                self.write_tx(NWD_TX, &chunk, true);
                self.spmd(core, &call);
            }
            Some(v) => {
                if let Some(tx) = self.sp_tx(v) {
                    self.write_tx(tx, &chunk, false);
                }
                self.exit(core, v, Some(&call));
            }
        }
        if self.pending.as_ref().is_some_and(|p| p.rest.is_empty()) {
            self.pending = None;
        }
    }

    /// A transaction descriptor for `ranges` from `sender`: valid in the
    /// layout for FF-A v1.1+, then perhaps mutated.
    fn descriptor(&self, inp: &mut Input, sender: u16, ranges: &[(u64, u32)]) -> Vec<u8> {
        let v1_0 = inp.one_in(8);
        let esz = if v1_0 || inp.one_in(8) { 16 } else { 32 };
        let n_recv = 1 + inp.u8() as usize % 3;
        let mut receivers: Vec<(u16, u8)> = Vec::new();
        for _ in 0..n_recv {
            let p = inp.pick(&[perm::RW, perm::RO, 0, perm::RW | perm::X]);
            let id = self.pick_id(inp);
            // The same receiver twice only sometimes.
            if !receivers.iter().any(|r| r.0 == id) || inp.one_in(8) {
                receivers.push((id, p));
            }
        }
        let hdr = if v1_0 { 32 } else { 48 };
        let comp = hdr + esz * receivers.len();
        let mut b = vec![0u8; comp + 16 + 16 * ranges.len()];
        b[0..2].copy_from_slice(&sender.to_le_bytes());
        let attrs = if inp.one_in(8) {
            inp.u16()
        } else {
            attr::NORMAL_WB_INNER
        };
        if v1_0 {
            b[2] = attrs as u8;
        } else {
            b[2..4].copy_from_slice(&attrs.to_le_bytes());
            b[24..28].copy_from_slice(&(esz as u32).to_le_bytes());
            b[32..36].copy_from_slice(&(hdr as u32).to_le_bytes());
        }
        let fl = match inp.u8() % 8 {
            6 => flags::ZERO,
            7 => inp.u32(),
            _ => 0,
        };
        b[4..8].copy_from_slice(&fl.to_le_bytes());
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
        mutate(inp, &mut b);
        b
    }

    // ------------------------------------------------------------------
    // A partition
    // ------------------------------------------------------------------

    fn sp_tx(&self, v: VcpuRef) -> Option<u64> {
        self.s.partition(v.slot).buffers.map(|b| b.tx.0)
    }

    fn sp_step(&mut self, core: usize, v: VcpuRef, op: u8, inp: &mut Input) {
        let me = self.s.partition(v.slot).id().raw();
        // The request this vCPU handles: x1 holds sender << 16 | receiver.
        let req = self.s.vcpu_context_mut(v).x[1];
        match op % 16 {
            // Any call.
            0 | 1 => {
                let f = if inp.u8() < 240 {
                    inp.pick(FUNCS)
                } else {
                    inp.u32()
                };
                let mut call = [f as u64, 0, 0, 0, 0, 0, 0, 0];
                for x in &mut call[1..] {
                    *x = self.pick_arg(inp);
                }
                self.exit(core, v, Some(&call));
            }
            // Answer the request (usually correctly).
            2..=4 => {
                let (from, to) = ((req >> 16) as u16, req as u16);
                let ids = if inp.one_in(8) {
                    (self.pick_id(inp) as u64) << 16 | self.pick_id(inp) as u64
                } else {
                    (to as u64) << 16 | from as u64
                };
                let f = inp.pick(&[
                    func::MSG_SEND_DIRECT_RESP_64,
                    func::MSG_SEND_DIRECT_RESP_32,
                    func::MSG_SEND_DIRECT_RESP2_64,
                ]);
                let call = [f as u64, ids, 0, inp.u8() as u64, 0, 0, 0, 0];
                self.exit(core, v, Some(&call));
            }
            // FFA_MSG_WAIT, FFA_YIELD, FFA_RX_RELEASE, an initialisation.
            5 => {
                let f = inp.pick(&[func::MSG_WAIT, func::YIELD, func::RX_RELEASE, func::ID_GET]);
                self.exit(core, v, Some(&[f as u64]));
            }
            6 => {
                let mut regs = self.cores[core].regs;
                self.meter.enter();
                let n = world::play_boot(&mut self.s, Some(v), &mut regs);
                self.meter.leave();
                self.cores[core].regs = regs;
                self.next(core, n);
            }
            // A memory send of its own memory (or of memory it was given).
            7 | 8 => {
                let ranges = self.sp_ranges(v, inp);
                let sender = if inp.one_in(8) { self.pick_id(inp) } else { me };
                let bytes = self.descriptor(inp, sender, &ranges);
                if let Some(tx) = self.sp_tx(v) {
                    self.send(core, inp, tx, &bytes, false);
                } else {
                    self.exit(core, v, Some(&[func::MEM_SHARE_64 as u64, 64, 64]));
                }
            }
            // Retrieve.
            9 | 10 => self.retrieve(core, v, me, inp),
            // Relinquish.
            11 => {
                let h = self.my_handle(inp, me);
                let mut b = vec![0u8; 18];
                b[0..8].copy_from_slice(&h.to_le_bytes());
                let fl = if inp.one_in(4) { flags::ZERO } else { 0 };
                b[8..12].copy_from_slice(&fl.to_le_bytes());
                b[12..16].copy_from_slice(&1u32.to_le_bytes());
                let who = if inp.one_in(8) { self.pick_id(inp) } else { me };
                b[16..18].copy_from_slice(&who.to_le_bytes());
                mutate(inp, &mut b);
                if let Some(tx) = self.sp_tx(v) {
                    self.write_tx(tx, &b, false);
                }
                self.exit(core, v, Some(&[func::MEM_RELINQUISH as u64]));
            }
            // Reclaim, fragments.
            12 => {
                if inp.bool() {
                    let h = self.pick_handle(inp);
                    let fl = if inp.bool() { flags::ZERO as u64 } else { 0 };
                    let call = [func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, fl];
                    self.exit(core, v, Some(&call));
                } else if inp.bool() {
                    self.frag_tx(core, inp, Some(v));
                } else {
                    let h = self.pick_handle(inp);
                    let off = inp.u16() as u64;
                    let call = [func::MEM_FRAG_RX as u64, h & 0xFFFF_FFFF, h >> 32, off];
                    self.exit(core, v, Some(&call));
                }
            }
            // A direct request to another partition.
            13 => {
                let to = self.pick_id(inp);
                let f = inp.pick(&[func::MSG_SEND_DIRECT_REQ_64, func::MSG_SEND_DIRECT_REQ_32]);
                let call = [f as u64, (me as u64) << 16 | to as u64, 0, inp.u8() as u64];
                self.exit(core, v, Some(&call));
            }
            // It writes memory it can write (data the SPMC must zero later).
            14 => self.sp_write(v, inp),
            // A fault or an interrupt.
            _ => {
                let mut regs = self.cores[core].regs;
                self.meter.enter();
                let n = if inp.bool() {
                    let ipa = match inp.u8() % 3 {
                        0 => RAM_IPA + (inp.u8() as u64) * PAGE_SIZE,
                        1 => NS_MEM,
                        _ => inp.u64(),
                    };
                    testing::sp_fault(&mut self.s, v, ipa, &mut regs)
                } else {
                    testing::sp_interrupt(&mut self.s, v, &mut regs)
                };
                self.meter.leave();
                self.cores[core].regs = regs;
                self.next(core, n);
            }
        }
    }

    /// Ranges a partition sends: pages of its RAM, or memory it was given.
    fn sp_ranges(&self, v: VcpuRef, inp: &mut Input) -> Vec<(u64, u32)> {
        let id = self.s.partition(v.slot).id().raw();
        let mut out = Vec::new();
        for _ in 0..1 + inp.u8() % 2 {
            match inp.u8() % 8 {
                6 => {
                    let given: Vec<u64> = self
                        .s
                        .mem()
                        .donated()
                        .iter()
                        .filter(|d| d.owner == id)
                        .map(|d| d.pa)
                        .chain(self.s.mem().transactions().iter().flat_map(|t| {
                            t.borrowers
                                .iter()
                                .filter(|b| b.id == id)
                                .flat_map(|_| t.runs.iter().map(|r| r.pa))
                                .collect::<Vec<_>>()
                        }))
                        .collect();
                    if let Some(pa) = given.get(inp.u8() as usize % given.len().max(1)) {
                        out.push((*pa, 1));
                    }
                }
                7 => out.push((inp.u64() & !0xFFF, 1 + inp.u8() as u32 % 4)),
                _ => out.push((
                    RAM_IPA + (inp.u8() as u64 % 14) * PAGE_SIZE,
                    1 + inp.u8() as u32 % 3,
                )),
            }
        }
        if out.is_empty() {
            out.push((RAM_IPA, 1));
        }
        out
    }

    /// Mostly the handle of a transaction that names partition `me`.
    fn my_handle(&self, inp: &mut Input, me: u16) -> u64 {
        let mine: Vec<u64> = self
            .s
            .mem()
            .transactions()
            .iter()
            .filter(|t| t.borrowers.iter().any(|b| b.id == me))
            .map(|t| t.handle)
            .collect();
        match mine.get(inp.u8() as usize % mine.len().max(1)) {
            Some(h) if !inp.one_in(8) => *h,
            _ => self.pick_handle(inp),
        }
    }

    fn retrieve(&mut self, core: usize, v: VcpuRef, me: u16, inp: &mut Input) {
        let h = self.my_handle(inp, me);
        let owner = match self.s.mem().transaction(h).map(|t| t.owner) {
            Some(Owner::NormalWorld(id) | Owner::Partition(id)) if !inp.one_in(8) => id,
            _ => self.pick_id(inp),
        };
        let v1_0 = inp.one_in(8);
        let hdr = if v1_0 { 32 } else { 48 };
        let esz = if v1_0 || inp.one_in(8) { 16 } else { 32 };
        let mut b = vec![0u8; hdr + esz];
        b[0..2].copy_from_slice(&owner.to_le_bytes());
        if !v1_0 {
            b[24..28].copy_from_slice(&(esz as u32).to_le_bytes());
            b[32..36].copy_from_slice(&(hdr as u32).to_le_bytes());
        }
        let fl = if inp.one_in(4) { inp.u32() & 0x1F } else { 0 };
        b[4..8].copy_from_slice(&fl.to_le_bytes());
        b[8..16].copy_from_slice(&h.to_le_bytes());
        b[28..32].copy_from_slice(&1u32.to_le_bytes());
        b[hdr..hdr + 2].copy_from_slice(&me.to_le_bytes());
        b[hdr + 2] = inp.pick(&[perm::RW, perm::RO, 0, perm::X | perm::RO]);
        mutate(inp, &mut b);
        if let Some(tx) = self.sp_tx(v) {
            self.write_tx(tx, &b, false);
        }
        let f = if inp.bool() {
            func::MEM_RETRIEVE_REQ_64
        } else {
            func::MEM_RETRIEVE_REQ_32
        };
        let len = b.len() as u64;
        self.exit(core, v, Some(&[f as u64, len, len, 0, 0]));
        // A long response: fetch the rest sometimes.
        if self.cores[core].running == Some(v) {
            let x = self.s.vcpu_context_mut(v).x;
            if x[0] as u32 == func::MEM_RETRIEVE_RESP && x[2] < x[1] && inp.bool() {
                self.exit(core, v, Some(&[func::RX_RELEASE as u64]));
                let call = [func::MEM_FRAG_RX as u64, h & 0xFFFF_FFFF, h >> 32, x[2]];
                if self.cores[core].running == Some(v) {
                    self.exit(core, v, Some(&call));
                }
            }
        }
    }

    /// The partition writes a nonzero pattern into a page its tables let it
    /// write (its RAM or memory it retrieved).
    fn sp_write(&mut self, v: VcpuRef, inp: &mut Input) {
        let p = &self.s.partition(v.slot);
        let maps = p.stage2.mappings(IpaSpace::Secure);
        let writable: Vec<Pa> = maps
            .iter()
            .filter(|(_, t)| t.write && !t.device)
            .map(|(_, t)| t.pa)
            .collect();
        if writable.is_empty() {
            return;
        }
        let pa = writable[inp.u8() as usize % writable.len()];
        let off = (inp.u8() as u64 % 255) * 16;
        let byte = inp.u8() | 1;
        self.s
            .platform_mut()
            .secure_write(Pa(pa.0 + off), &[byte; 16]);
    }
}

impl Default for Driver {
    fn default() -> Self {
        Self::new()
    }
}

/// With `SPMC_FUZZ_TRACE` set, prints each call and its answer (to see what
/// an input does when it is replayed).
fn trace(line: impl FnOnce() -> String) {
    if env_flag("SPMC_FUZZ_TRACE") {
        eprintln!("{}", line());
    }
}

/// True if the environment variable `name` is set (read once per name).
fn env_flag(name: &'static str) -> bool {
    static FLAGS: std::sync::Mutex<Vec<(&str, bool)>> = std::sync::Mutex::new(Vec::new());
    let mut flags = FLAGS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, on)) = flags.iter().find(|(n, _)| *n == name) {
        return *on;
    }
    let on = std::env::var_os(name).is_some();
    flags.push((name, on));
    on
}

/// Normal-world ranges: pages of NS_MEM in address order without overlap,
/// sometimes anything.
fn ns_ranges(inp: &mut Input) -> Vec<(u64, u32)> {
    let n = 1 + inp.u8() as usize % 3;
    let mut page = inp.u8() as u64 % 12;
    (0..n)
        .map(|_| match inp.u8() % 8 {
            7 => (inp.u64() & !0xFFF, 1 + inp.u8() as u32 % 4),
            6 => (NWD_TX, 1),
            _ => {
                let pages = 1 + inp.u8() as u32 % 3;
                let r = (NS_MEM + page * PAGE_SIZE, pages);
                page += pages as u64 + inp.u8() as u64 % 2;
                r
            }
        })
        .collect()
}

/// Flips a few bytes (none most of the time).
fn mutate(inp: &mut Input, b: &mut [u8]) {
    let n = match inp.u8() % 8 {
        6 => 1,
        7 => 1 + inp.u8() as usize % 4,
        _ => 0,
    };
    for _ in 0..n {
        let at = inp.u16() as usize;
        let len = b.len();
        if len > 0 {
            b[at % len] = inp.u8();
        }
    }
}
