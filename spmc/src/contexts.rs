//! The execution contexts, each behind its own lock, and the direct-message
//! fast path that takes no other lock.
//!
//! The manager ([`crate::Spmc`]) sits behind the platform's *manager lock*;
//! the vCPUs do not. Every vCPU (its state, its registers, whether a core
//! holds it) lives in a [`VcpuCell`] of its own in a fixed table,
//! [`Contexts`], which the manager and the platform share (`Arc`). A slot's
//! cells are made once, the first time a partition is put in that slot,
//! and never move or go away: a partition's vCPUs are put into them when it
//! is made and taken out when an instance is destroyed.
//!
//! **The fast path.** A 64-bit direct request from the normal world to a
//! partition's context for the calling core (context n of an MP partition
//! on core n, or a UP partition's one context) and the partition's direct
//! response back to the normal world touch only that context's lock:
//! [`Contexts::direct_request`] and [`Contexts::direct_response`]. The
//! platform tries them before it takes the manager lock; anything they do
//! not handle exactly as the manager would ([`Fast::Slow`]: another
//! function, a framework message, a VM that needs the binding policy, a
//! partition booting or aborted, a context not waiting) goes to the manager
//! unchanged, which answers it (and every error) as before. Four cores
//! doing direct requests to their own contexts of an MP partition share no
//! lock at all.
//!
//! **Lock order** (the one order; docs/architecture.md "Locks"): the
//! manager lock, then vCPU locks. A core holding a vCPU lock takes no
//! other lock, with one exception: destroying an instance takes all of its
//! vCPU locks in index order (under the manager lock). No lock is held
//! while a partition runs.
//!
//! **Who may run a vCPU.** A vCPU that a core runs, or whose EL1 and
//! FP/SIMD state a core may still hold lazily (`arch_aarch64::vcpu`), is
//! *on a core* ([`Vcpu::on_core`]): set when a core is handed the vCPU
//! ([`crate::Next::Run`]), cleared by that core only after the vCPU's state
//! is back in its context ([`Contexts::release`], after the platform acted
//! on [`crate::LazyState`]). The fast path picks only a vCPU that is on no
//! core, so no core ever loads a state that another core has not saved; and
//! the manager never frees a vCPU that is on a core: the instance destroy
//! refuses (RETRY) while one runs, and leaves the context of the vCPU that
//! exits on its own core to [`Contexts::release`] to drop. Host tests
//! check this protocol across every interleaving of cores
//! (`spmc/tests/interleavings.rs`) and, with loom's locks and atomics
//! (`crate::sync`), of their lock and atomic operations
//! (`spmc/tests/loom_contexts.rs`).

use alloc::boxed::Box;
use alloc::vec::Vec;
use spin::Once;

use crate::sync::{AtomicBool, AtomicU8, AtomicU16, Ordering, SpinMutex, SpinMutexGuard};

use crate::fatal::FailGate;
use crate::ffa::{Regs, func};
use crate::ids::{PartId, SlotId, VmId};
use crate::manager::{LazyState, Next};
use crate::partition::Vcpu;
use crate::sp_manifest::MAX_EXECUTION_CONTEXTS;
use crate::vcpu::{Caller, RunReason, VcpuRef, VcpuState};

/// Most partitions and instances at once (static ones included; sbsa-ref
/// holds 1,000 TEEs at once, `MIN_LIVE_TEES`): one slot
/// each. An instance beyond that is refused with NO_MEMORY.
pub const MAX_SLOTS: usize = 1024;
/// IDs 0x8000 up to 0x8000 + `ID_INDEX` are found through an index.
pub(crate) const ID_INDEX: usize = 1024;
/// An index entry naming no slot.
const NO_SLOT: u16 = u16::MAX;
/// Index entry bit: the partition is MP (the fast path picks the core's context).
const MP: u16 = 0x8000;

/// One vCPU's lock; `None` while no partition's vCPU is in it.
pub type VcpuCell = SpinMutex<Option<Box<Vcpu>>>;

/// A gate that never fails: the host tests', until a platform sets its own.
static NEVER_FAILS: FailGate = FailGate::new();

/// What the fast path needs to know about a vCPU's partition, kept in each
/// vCPU (under its lock, [`Vcpu::fast`]) while the partition is booted, not
/// aborted and takes FFA_MSG_SEND_DIRECT_REQ: its endpoint ID `id`, whether
/// it is MP, and the one normal-world endpoint the fast path serves for it
/// (`reach`: 0 for a static partition, as every other VM goes through the
/// binding policy; the owning VM for an instance), in one word, so that a
/// request is checked against all three with one comparison. Never 0 (a
/// partition ID is not 0).
pub fn fast_key(id: PartId, mp: bool, reach: VmId) -> u64 {
    id.raw() as u64 | (mp as u64) << 16 | (reach.raw() as u64) << 32
}

/// What the fast path did.
#[derive(Debug)]
pub enum Fast {
    /// Handled: go on with this.
    Done(Next),
    /// Not a call the fast path handles; nothing changed: ask the manager.
    Slow,
    /// The SPMC has failed (see [`FailGate`]): answer ABORTED, touch nothing.
    Failed,
}

/// The vCPUs of every slot, and the little the fast path shares with the
/// manager. `Sync`: every part is an atomic or behind a lock.
#[derive(Debug)]
pub struct Contexts {
    /// Slot (and [`MP`]) of the partition with ID 0x8000 + n at index n.
    /// Written under the manager lock; the fast path reads it and checks
    /// the ID in the vCPU it locks, so a stale entry only misses.
    index: Box<[AtomicU16]>,
    /// Each slot's vCPU cells, made on the slot's first use.
    slots: Box<[Once<Box<[VcpuCell]>>]>,
    /// True until the normal world makes an FF-A call other than
    /// FFA_VERSION (DEN0077 v1.2 §13.2): the fast path fixes it too.
    nwd_version_open: AtomicBool,
    /// The platform's "SPMC failed" switch.
    gate: Once<&'static FailGate>,
    /// Work only the manager does that a fast path would skip
    /// ([`Attention`] bits, set and cleared under the manager lock): while
    /// any is set, both fast paths leave every call to the manager. They
    /// read it under the vCPU's lock, so a manager that sets it and then
    /// looks at a vCPU under its lock is never overtaken on that vCPU.
    attention: AtomicU8,
}

/// Bits of [`Contexts`]' attention word: why the fast path must not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Attention {
    /// A secure interrupt waits to be given to a vCPU when it next runs.
    InterruptPending = 1 << 0,
    /// A core owes the normal world a delayed schedule receiver interrupt
    /// when it next returns there.
    SriDelayed = 1 << 1,
}

impl Default for Contexts {
    fn default() -> Self {
        Self::new()
    }
}

impl Contexts {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            index: (0..ID_INDEX).map(|_| AtomicU16::new(NO_SLOT)).collect(),
            slots: (0..MAX_SLOTS).map(|_| Once::new()).collect(),
            nwd_version_open: AtomicBool::new(true),
            gate: Once::new(),
            attention: AtomicU8::new(0),
        }
    }

    /// Sets or clears one reason the fast path must leave calls to the
    /// manager (the manager calls it, under its lock).
    pub fn set_attention(&self, why: Attention, on: bool) {
        if on {
            self.attention.fetch_or(why as u8, Ordering::AcqRel);
        } else {
            self.attention.fetch_and(!(why as u8), Ordering::AcqRel);
        }
    }

    /// Uses the platform's fatal-error gate: once it has failed, the fast
    /// path answers [`Fast::Failed`] and no core waits for a vCPU lock a
    /// failed core may hold.
    pub fn set_fail_gate(&self, gate: &'static FailGate) {
        self.gate.call_once(|| gate);
    }

    #[inline(always)]
    fn gate(&self) -> &'static FailGate {
        self.gate.get().copied().unwrap_or(&NEVER_FAILS)
    }

    /// The cell of `v`, if its slot was ever used.
    #[inline(always)]
    fn cell(&self, v: VcpuRef) -> Option<&VcpuCell> {
        self.slots.get(v.slot.index())?.get()?.get(v.index as usize)
    }

    /// Locks `v`'s cell for the manager (which holds the manager lock). If
    /// the SPMC fails on another core meanwhile, this core stops here (a
    /// panic: the platform's fatal path answers ABORTED from then on).
    pub(crate) fn lock(&self, v: VcpuRef) -> SpinMutexGuard<'_, Option<Box<Vcpu>>> {
        let cell = self
            .cell(v)
            .unwrap_or_else(|| panic!("vCPU {v:?}: no such context"));
        match self.gate().lock(|| cell.try_lock()) {
            Some(g) => g,
            None => panic!("the SPMC failed on another core"),
        }
    }

    /// The vCPU `v`, locked, for the manager (which made it).
    #[inline(always)]
    pub(crate) fn vcpu(&self, v: VcpuRef) -> VcpuGuard<'_> {
        VcpuGuard(self.lock(v))
    }

    /// The vCPU `v` without locking (`&mut self`: nobody else has the table).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn vcpu_mut(&mut self, v: VcpuRef) -> &mut Vcpu {
        self.slots[v.slot.index()]
            .get_mut()
            .and_then(|s| s.get_mut(v.index as usize))
            .and_then(|c| c.get_mut().as_deref_mut())
            .expect("a vCPU the manager made")
    }

    /// Makes slot `slot`'s cells, if that is its first use; false if there
    /// is no such slot ([`MAX_SLOTS`]).
    pub(crate) fn open_slot(&self, slot: SlotId) -> bool {
        let Some(s) = self.slots.get(slot.index()) else {
            return false;
        };
        s.call_once(|| {
            (0..MAX_EXECUTION_CONTEXTS)
                .map(|_| SpinMutex::new(None))
                .collect::<Vec<_>>()
                .into_boxed_slice()
        });
        true
    }

    /// The slot of the partition with ID `id` through the index, if it is
    /// in the index range and named there (the caller checks the ID).
    #[inline(always)]
    pub(crate) fn indexed_slot(&self, id: PartId) -> Option<SlotId> {
        let e = self.index.get(id.raw().wrapping_sub(0x8000) as usize)?;
        match e.load(Ordering::Acquire) {
            NO_SLOT => None,
            s => Some(SlotId::new(s & !MP)),
        }
    }

    /// Names `slot` as the one of ID `id` (an MP partition if `mp`).
    pub(crate) fn set_index(&self, id: PartId, slot: SlotId, mp: bool) {
        if let Some(e) = self.index.get(id.raw().wrapping_sub(0x8000) as usize) {
            e.store(
                if mp { slot.raw() | MP } else { slot.raw() },
                Ordering::Release,
            );
        }
    }

    /// Forgets the index entry of `id`.
    pub(crate) fn clear_index(&self, id: PartId) {
        if let Some(e) = self.index.get(id.raw().wrapping_sub(0x8000) as usize) {
            e.store(NO_SLOT, Ordering::Release);
        }
    }

    /// True until the normal world's version is fixed (§13.2).
    #[inline(always)]
    pub(crate) fn nwd_version_open(&self) -> bool {
        self.nwd_version_open.load(Ordering::Relaxed)
    }

    /// Fixes (`false`) or reopens the normal world's version.
    #[inline(always)]
    pub(crate) fn set_nwd_version_open(&self, open: bool) {
        self.nwd_version_open.store(open, Ordering::Relaxed);
    }

    /// The fast path of FFA_MSG_SEND_DIRECT_REQ_64 from the normal world
    /// (DEN0077 v1.2 §15.2) on core `core`: to a booted partition that
    /// takes direct requests, from endpoint 0 (a static partition) or the
    /// owning VM (an instance), with w2 zero (not a framework message), to
    /// the context for this core that waits and is on no core. The message
    /// goes from `regs` into the context's x0-x7 and the context is this
    /// core's to run. Anything else is [`Fast::Slow`], nothing changed.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub fn direct_request(
        &self,
        gate: &FailGate,
        regs: &Regs,
        core: impl FnOnce() -> usize,
    ) -> Fast {
        if regs.0[0] != func::MSG_SEND_DIRECT_REQ_64 as u64 || regs.0[2] != 0 {
            return Fast::Slow;
        }
        let (sender, receiver) = ((regs.0[1] >> 16) as u16, regs.0[1] as u16);
        if sender & 0x8000 != 0 {
            return Fast::Slow;
        }
        let Some(entry) = self.index.get(receiver.wrapping_sub(0x8000) as usize) else {
            return Fast::Slow;
        };
        let e = entry.load(Ordering::Acquire);
        if e == NO_SLOT {
            return Fast::Slow;
        }
        let mp = e & MP != 0;
        let v = VcpuRef {
            slot: SlotId::new(e & !MP),
            index: if mp { core() as u16 } else { 0 },
        };
        let Some(cell) = self.cell(v) else {
            return Fast::Slow;
        };
        let Some(mut g) = gate.lock(|| cell.try_lock()) else {
            return Fast::Failed;
        };
        let Some(vcpu) = g.as_deref_mut() else {
            return Fast::Slow;
        };
        // The attention word is read under the vCPU's lock: a manager that
        // set it and then looked at this vCPU under its lock is seen
        // (spmc/tests/loom_contexts.rs).
        if vcpu.fast != fast_key(PartId::new(receiver), mp, VmId::new(sender))
            || vcpu.state != VcpuState::Waiting
            || vcpu.on_core
            || self.attention.load(Ordering::Acquire) != 0
        {
            return Fast::Slow;
        }
        // Any call but FFA_VERSION fixes the normal world's version (§13.2).
        self.nwd_version_open.store(false, Ordering::Relaxed);
        vcpu.state = VcpuState::Running(RunReason::Request(Caller::NormalWorld {
            id: sender,
            req2: false,
        }));
        vcpu.on_core = true;
        // The manifest's `ns-interrupts-action` (`spmc::ns_interrupts`): a
        // request from the normal world heads its call chain.
        vcpu.ctx.ns_interrupts_queued = vcpu.request_queued;
        vcpu.ctx.x[..8].copy_from_slice(&regs.0[..8]);
        Fast::Done(Next::Run {
            vcpu: v,
            ctx: &mut vcpu.ctx,
        })
    }

    /// The fast path of a vCPU's exit: its FFA_MSG_SEND_DIRECT_RESP_64
    /// (§15.3) through SMC to the normal-world endpoint whose request it
    /// handles, from its own ID, w2 zero. The answer goes from the context
    /// into `regs`, the vCPU waits again, and `lazy` (the platform's
    /// [`LazyState::ToNormalWorld`]) puts the partition's state back into
    /// its context before the lock is released and the vCPU leaves this
    /// core. Anything else is [`Fast::Slow`], nothing changed.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub fn direct_response(
        &self,
        gate: &FailGate,
        v: VcpuRef,
        regs: &mut Regs,
        lazy: impl FnOnce(LazyState),
    ) -> Fast {
        let Some(cell) = self.cell(v) else {
            return Fast::Slow;
        };
        let Some(mut g) = gate.lock(|| cell.try_lock()) else {
            return Fast::Failed;
        };
        {
            let Some(vcpu) = g.as_deref_mut() else {
                return Fast::Slow;
            };
            // Under the lock, as in `direct_request`.
            if vcpu.fast == 0 || self.attention.load(Ordering::Acquire) != 0 {
                return Fast::Slow;
            }
            let ctx = &vcpu.ctx;
            // A call during a managed exit is the manager's
            // (`Spmc::call_during_managed_exit`), as is an answer with a
            // secure interrupt pending in its list registers (it handles
            // that first: `crate::interrupts`, "Answers held back").
            if ctx.exit.vector != 0
                || ctx.exit.esr >> 26 != crate::vcpu::ec::SMC64
                || ctx.x[0] != func::MSG_SEND_DIRECT_RESP_64 as u64
                || ctx.x[2] != 0
                || ctx.managed_exit != 0
                || (ctx.vgic.live && ctx.vgic.has_pending())
            {
                return Fast::Slow;
            }
            let VcpuState::Running(RunReason::Request(Caller::NormalWorld { id, req2: false })) =
                vcpu.state
            else {
                return Fast::Slow;
            };
            let w1 = ctx.x[1];
            if (w1 >> 16) as u16 != vcpu.fast as u16 || w1 as u16 != id {
                return Fast::Slow;
            }
            let ctx = &mut vcpu.ctx;
            // A trapped SMC returns to the instruction after it; faults
            // injected before an FF-A call were handled.
            ctx.pc += 4;
            ctx.injected_faults = 0;
            // The response ends its request: no managed exit is pending,
            // and the normal world's interrupts are taken again.
            ctx.virtual_lines = 0;
            ctx.ns_interrupts_queued = false;
            regs.0[..8].copy_from_slice(&ctx.x[..8]);
            vcpu.state = VcpuState::Waiting;
        }
        // No reference into the context is held while the platform saves
        // the partition's state into it.
        lazy(LazyState::ToNormalWorld);
        if let Some(vcpu) = g.as_mut() {
            vcpu.on_core = false;
        }
        Fast::Done(Next::NormalWorld)
    }

    /// The platform has put `v`'s state back into its context after the
    /// manager handled its exit ([`LazyState::HandOff`] or
    /// [`LazyState::ToNormalWorld`]): it is on no core any more, and if its
    /// instance was destroyed meanwhile (on this core), its context goes now.
    pub fn release(&self, v: VcpuRef) {
        let Some(cell) = self.cell(v) else {
            return;
        };
        let Some(mut g) = self.gate().lock(|| cell.try_lock()) else {
            return;
        };
        let freed = match g.as_mut() {
            Some(vcpu) => {
                vcpu.on_core = false;
                vcpu.freed
            }
            None => false,
        };
        if freed {
            *g = None;
        }
    }

    /// Whether `v` is on a core (for the host tests' model).
    pub fn is_on_core(&self, v: VcpuRef) -> bool {
        self.cell(v)
            .and_then(|c| c.lock().as_ref().map(|v| v.on_core))
            .unwrap_or(false)
    }
}

/// A locked vCPU that the manager knows exists (it made the partition and
/// has not freed it): a vCPU the manager asks for and does not find is a
/// bug of the SPMC's, and stops the core (the platform's fatal path).
#[allow(missing_debug_implementations, reason = "a lock guard")]
pub struct VcpuGuard<'a>(pub(crate) SpinMutexGuard<'a, Option<Box<Vcpu>>>);

impl core::ops::Deref for VcpuGuard<'_> {
    type Target = Vcpu;
    #[inline(always)]
    fn deref(&self) -> &Vcpu {
        self.0.as_deref().expect("a vCPU the manager made")
    }
}

impl core::ops::DerefMut for VcpuGuard<'_> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Vcpu {
        self.0.as_deref_mut().expect("a vCPU the manager made")
    }
}
