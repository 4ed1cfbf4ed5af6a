//! Secure interrupts owned by partitions (DEN0077 v1.2 chapter 9,
//! "Interrupt management"; docs/interrupts.md).
//!
//! A partition claims interrupts in its manifest (device regions'
//! `interrupts`, [`crate::sp_manifest::InterruptClaim`]); each secure
//! interrupt has at most one owner, recorded here when the partition is
//! created, and the platform configures it as Group 1 Secure, routed to
//! the core of the owning context ([`Platform::configure_secure_interrupt`]).
//!
//! A secure interrupt reaches the SPMC in one of two ways: it stops a
//! running partition (an IRQ exit at S-EL2), or it arrives while the normal
//! world runs and the SPMD forwards it as FFA_INTERRUPT (§9.4, TF-A's
//! `spmd_secure_interrupt_handler`). The SPMC acknowledges it at EL2 and
//! hands it to the owner's context for this core as a virtual interrupt
//! (a list register linked to the physical INTID, [`VirtualGic`]): the
//! partition acknowledges and ends it with its own GIC code, and its end
//! deactivates the physical interrupt. What happens to the owner's context
//! follows the spec's actions (§9.3, Table 9.1 for S-EL1 partitions):
//!
//! - **running** (it is the context the interrupt stopped): the virtual
//!   interrupt is pending when it resumes, and it takes it at once;
//! - **waiting** (in FFA_MSG_WAIT): it is resumed with FFA_INTERRUPT
//!   (w2 carries the INTID, as in v1.0; the partition reads it from
//!   ICC_IAR1_EL1 anyway); a partition the interrupt stopped is held
//!   (`Blocked`, so FFA_RUN cannot take it) and resumed once the owner's
//!   FFA_MSG_WAIT ends the handling; when the normal world was running, that
//!   FFA_MSG_WAIT gives the core back with FFA_NORMAL_WORLD_RESUME to the
//!   SPMD;
//! - **blocked or preempted**: the virtual interrupt waits in its list
//!   registers and it takes it when it next runs;
//! - **running on another core** (a UP partition): queued here and put in
//!   its list registers when it next runs ([`Spmc::run`]).
//!
//! An interrupt whose owner is aborted (or that nobody owns) is
//! deactivated and disabled by the SPMC and logged at debug level.
//!
//! **Answers held back.** A partition that runs with interrupts masked may
//! answer (FFA_MSG_SEND_DIRECT_RESP(2), or FFA_MSG_WAIT after FFA_RUN)
//! while a virtual interrupt it owns is still pending in its list
//! registers (or queued for it here). The answer makes it *waiting*, and a
//! virtual interrupt for a waiting partition is signalled by resuming it
//! with FFA_INTERRUPT (§9.3, Table 9.1 case 1; it then runs under the
//! runtime model for secure interrupt handling, §8.3, which its
//! FFA_MSG_WAIT ends). So the SPMC intercepts the answer, as Hafnium does
//! (`ffa_interrupts_intercept_call`): it holds it in the vCPU
//! ([`HeldAnswer`]), resumes the partition with FFA_INTERRUPT (w2 = the
//! INTID) and delivers the held answer, unchanged and once, to its
//! recipient at the partition's FFA_MSG_WAIT. A direct response in between
//! is DENIED (nothing to answer: the request was answered), as in Hafnium.
//! If it aborts in between, the recipient gets what an abort gives it
//! (FFA_ERROR(ABORTED)). Bounded: at that FFA_MSG_WAIT the SPMC intercepts
//! again only if the partition took the interrupt it was signalled and
//! another is pending; one it ignored stays in its list registers, and the
//! answer goes.
//!
//! Bounded by construction: a claimed interrupt is active from its
//! acknowledgement until the partition ends it, so the GIC signals it
//! again only after that; a partition that never ends an interrupt only
//! silences that interrupt, and at most one entry per claimed interrupt is
//! ever queued (the queue's room is reserved when the partition is created).

use alloc::vec::Vec;

use log::{debug, warn};

use crate::ffa::{Regs, func};
use crate::ids::SlotId;
use crate::manager::{Next, Spmc};
use crate::partition::PartitionState;
use crate::platform::Platform;
use crate::sp_manifest::{PartitionConfig, SpError};
use crate::vcpu::{Context, RunReason, VcpuRef, VcpuState};

#[cfg(doc)]
use crate::vcpu::VirtualGic;

/// One claimed interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owned {
    /// The GIC INTID.
    pub intid: u32,
    /// Slot of the owning partition.
    pub slot: SlotId,
    /// Its priority (the manifest's).
    pub priority: u8,
}

/// Who gets an answer the SPMC held back ([`HeldAnswer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldFor {
    /// The normal world: the registers of the call in flight on the core
    /// (the partition is resumed and answers on the core it answered on).
    NormalWorld,
    /// A partition's vCPU, blocked on the direct request that was answered.
    Vcpu(VcpuRef),
}

/// A partition's answer held back while it handles a secure interrupt
/// that was pending when it answered (the module's "Answers held back").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldAnswer {
    /// Its recipient.
    pub to: HeldFor,
    /// x0-x17 as the recipient gets them.
    pub msg: [u64; 18],
    /// How many of them it gets (8; 18 for RESP2, and for FFA_MSG_WAIT to
    /// the normal world, whose whole block is the answer).
    pub len: u8,
}

impl HeldAnswer {
    /// The direct response in `ctx` (checked already) as its recipient
    /// gets it: eight registers (a 32-bit response's low halves), or 18
    /// for FFA_MSG_SEND_DIRECT_RESP2.
    pub(crate) fn response(ctx: &Context, to: HeldFor) -> Self {
        let f = ctx.x[0] as u32;
        let len = if f == func::MSG_SEND_DIRECT_RESP2_64 {
            18
        } else {
            8
        };
        let mut msg = [0u64; 18];
        msg[..len].copy_from_slice(&ctx.x[..len]);
        if f == func::MSG_SEND_DIRECT_RESP_32 {
            msg[..8].iter_mut().for_each(|r| *r &= 0xFFFF_FFFF);
        }
        Self {
            to,
            msg,
            len: len as u8,
        }
    }

    /// FFA_MSG_WAIT of context `index` of partition `id` that ran for
    /// FFA_RUN, as the normal world gets it.
    pub(crate) fn msg_wait(id: crate::ffa::PartitionId, index: u16) -> Self {
        let mut msg = [0u64; 18];
        msg[0] = func::MSG_WAIT as u64;
        msg[1] = crate::ffa::endpoints(id, index);
        Self {
            to: HeldFor::NormalWorld,
            msg,
            len: 18,
        }
    }
}

/// Who owns which secure interrupt, and what waits for delivery.
#[derive(Debug, Default)]
pub struct Interrupts {
    owned: Vec<Owned>,
    /// Virtual interrupts for a context that was running on another core
    /// when they arrived: put in its list registers when it next runs here.
    pending: Vec<(VcpuRef, u32)>,
    /// A context stopped (held `Blocked`) on a core so that a waiting owner
    /// could handle a secure interrupt there: resumed when the owner's
    /// FFA_MSG_WAIT ends the handling.
    interrupted: Vec<(usize, VcpuRef)>,
    /// Secure interrupts handed to their owners (diagnostics, tests).
    pub delivered: u64,
    /// Secure interrupts the SPMC ended itself (no live owner).
    pub dropped: u64,
}

impl Interrupts {
    /// The owner of `intid`.
    pub fn owner(&self, intid: u32) -> Option<Owned> {
        self.owned.iter().copied().find(|o| o.intid == intid)
    }

    /// Every owned interrupt.
    pub fn owned(&self) -> &[Owned] {
        &self.owned
    }

    /// True if something waits for a context to run (checked on the run path).
    #[inline(always)]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

impl<P: Platform> Spmc<P> {
    /// The interrupt bookkeeping (for tests and diagnostics).
    pub fn interrupts(&self) -> &Interrupts {
        &self.interrupts
    }

    /// Checks that `config`'s claims can be granted: none owned by another
    /// partition, none claimed twice, none by an instance template (whose
    /// every instance would claim the same interrupt); reserves the room the
    /// bookkeeping needs. Changes nothing else.
    pub(crate) fn check_interrupt_claims(
        &mut self,
        config: &PartitionConfig,
        kind: crate::policy::Kind,
    ) -> Result<(), SpError> {
        let mut count = 0;
        for (i, c) in config.interrupts().enumerate() {
            count += 1;
            if kind != crate::policy::Kind::Static {
                return Err(SpError::BadInterrupt {
                    id: c.id,
                    why: "an instance made for a VM cannot own interrupts",
                });
            }
            if let Some(o) = self.interrupts.owner(c.id) {
                let owner = self.partitions[o.slot].id();
                return Err(SpError::InterruptOwned {
                    id: c.id,
                    owner: owner.raw(),
                });
            }
            if config.interrupts().take(i).any(|d| d.id == c.id) {
                return Err(SpError::InterruptOwned {
                    id: c.id,
                    owner: config.id,
                });
            }
        }
        let i = &mut self.interrupts;
        i.owned
            .try_reserve(count)
            .and_then(|()| i.pending.try_reserve(i.owned.len() + count))
            .map_err(|_| SpError::OutOfMemory)
    }

    /// Records the claims of the partition just created in `slot` (checked
    /// by [`Spmc::check_interrupt_claims`]) and configures them at the
    /// interrupt controller: Group 1 Secure, routed to the core of the
    /// owning context (context 0's core 0 for an MP partition's SPI, the
    /// creating core for a UP partition's).
    pub(crate) fn commit_interrupt_claims(&mut self, slot: SlotId) {
        let core = self.platform.core_index();
        let p = &self.partitions[slot];
        let id = p.id();
        let target = if p.is_mp() { 0 } else { core };
        let claims: Vec<_> = p.config.interrupts().copied().collect();
        if !claims.is_empty() {
            // Its virtual GIC interface is its own from the start (its GIC
            // set-up at boot writes ICH_VMCR_EL2 through ICC_*).
            for index in 0..self.partitions[slot].vcpu_count {
                self.vcpu(VcpuRef { slot, index }).ctx.vgic.live = true;
            }
        }
        for c in claims {
            self.interrupts.owned.push(Owned {
                intid: c.id,
                slot,
                priority: c.priority,
            });
            if !self
                .platform
                .configure_secure_interrupt(c.id, c.priority, c.level, target)
            {
                warn!(
                    "partition {}: interrupt {} could not be configured",
                    crate::text::hex(id.raw()),
                    crate::text::hex(c.id)
                );
            } else {
                debug!(
                    "partition {id:#06x} owns interrupt {} (core {target})",
                    c.id
                );
            }
        }
    }

    /// An interrupt stopped running context `v`: a secure one goes to its
    /// owner, the normal world's preempts `v` as before.
    pub(crate) fn interrupt_exit(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        match self.platform.acknowledge_secure_interrupt() {
            Some(intid) => self.deliver(intid, Some(v), regs),
            // Nothing secure pending: the normal world's interrupt, handled
            // as the partition's `ns-interrupts-action` says.
            None => self.ns_interrupt(v, regs),
        }
    }

    /// FFA_INTERRUPT from the SPMD: a secure interrupt arrived while the
    /// normal world ran (DEN0077 v1.2 §9.4). Answered, once handled, with
    /// FFA_NORMAL_WORLD_RESUME.
    pub(crate) fn secure_interrupt_from_spmd(&mut self, regs: &mut Regs) -> Next {
        match self.platform.acknowledge_secure_interrupt() {
            Some(intid) => self.deliver(intid, None, regs),
            None => {
                debug!("FFA_INTERRUPT from the SPMD with no secure interrupt pending");
                normal_world_resume(regs)
            }
        }
    }

    /// Hands `intid` to its owner; `running` is the context it stopped
    /// (`None`: the normal world was running).
    fn deliver(&mut self, intid: u32, running: Option<VcpuRef>, regs: &mut Regs) -> Next {
        let go_on = |s: &mut Self, regs: &mut Regs| match running {
            Some(v) => s.run(v),
            None => normal_world_resume(regs),
        };
        let Some(o) = self.interrupts.owner(intid) else {
            debug!("secure interrupt {intid} has no owner: ended");
            self.platform.deactivate_interrupt(intid);
            self.interrupts.dropped += 1;
            return go_on(self, regs);
        };
        let core = self.platform.core_index();
        let p = &self.partitions[o.slot];
        let index = p.context_for(core);
        if p.state != PartitionState::Running || index >= p.vcpu_count as usize {
            debug!(
                "secure interrupt {intid}: owner {:#06x} cannot take it on core {core}: ended",
                p.id()
            );
            self.platform.deactivate_interrupt(intid);
            if p.state == PartitionState::Aborted {
                self.platform.disable_interrupt(intid);
            }
            self.interrupts.dropped += 1;
            return go_on(self, regs);
        }
        let target = VcpuRef {
            slot: o.slot,
            index: index as u16,
        };
        self.interrupts.delivered += 1;
        let state = self.vcpu(target).state;
        match state {
            // It was the one running: it takes the interrupt on resuming.
            _ if running == Some(target) => {
                self.queue_virtual(target, intid, o.priority);
                self.run_cold(target)
            }
            VcpuState::Waiting => {
                if let Some(other) = running {
                    // Hold the context the interrupt stopped until the owner is done.
                    let r = match self.vcpu_state(other) {
                        VcpuState::Running(r) => r,
                        _ => return go_on(self, regs),
                    };
                    let _ = self.set_state(other, VcpuState::Blocked(r));
                    self.interrupts.interrupted.push((core, other));
                }
                if self
                    .set_state(target, VcpuState::Running(RunReason::SecureInterrupt))
                    .is_err()
                {
                    // Another core's fast path took it meanwhile (a UP
                    // owner): queued until it runs, as for a running one.
                    self.pend_interrupt(target, intid);
                    return go_on(self, regs);
                }
                self.queue_virtual(target, intid, o.priority);
                self.resume_for_interrupt(target, intid)
            }
            // Running on another core: queued until it runs here or there.
            VcpuState::Running(_) => {
                self.pend_interrupt(target, intid);
                go_on(self, regs)
            }
            // Blocked or preempted: pending in its list registers until it runs.
            VcpuState::Blocked(_) | VcpuState::Preempted(..) => {
                self.queue_virtual(target, intid, o.priority);
                go_on(self, regs)
            }
            VcpuState::Off | VcpuState::Aborted => {
                self.platform.deactivate_interrupt(intid);
                self.interrupts.dropped += 1;
                go_on(self, regs)
            }
        }
    }

    /// Puts `intid` in `v`'s list registers (`v` is not running); if they
    /// are all in use (it never ends what it was given), the SPMC ends the
    /// interrupt itself so that it does not stay active for ever.
    fn queue_virtual(&mut self, v: VcpuRef, intid: u32, priority: u8) {
        let mut vcpu = self.vcpu(v);
        // The interrupt it was signalled with FFA_INTERRUPT, again: it
        // took and ended that one, this one is new (`secure_interrupt_done`).
        if vcpu.signalled == Some(intid) && !vcpu.ctx.vgic.holds(intid) {
            vcpu.signalled = None;
        }
        let full = vcpu.ctx.vgic.inject(intid, Some(intid), priority).is_err();
        drop(vcpu);
        if full {
            debug!("vCPU {v:?}: every list register in use; interrupt {intid} ended");
            self.platform.deactivate_interrupt(intid);
            self.interrupts.dropped += 1;
        }
    }

    /// Queues `intid` for `v`, which runs on another core, until it next
    /// runs (`pending_interrupts_to`); the fast path leaves every call to
    /// the manager meanwhile (`contexts::Attention::InterruptPending`), so
    /// that no run skips the hand-over.
    fn pend_interrupt(&mut self, v: VcpuRef, intid: u32) {
        if self.interrupts.pending.len() < self.interrupts.pending.capacity() {
            self.interrupts.pending.push((v, intid));
            self.contexts
                .set_attention(crate::contexts::Attention::InterruptPending, true);
        } else {
            // Cannot happen (one entry per claimed interrupt, whose
            // room is reserved): end it rather than lose it active.
            self.platform.deactivate_interrupt(intid);
        }
    }

    /// Called on the way to running `v`: moves what was queued for it
    /// while it ran elsewhere into its list registers.
    #[inline(never)]
    pub(crate) fn pending_interrupts_to(&mut self, v: VcpuRef) {
        let mut i = 0;
        while i < self.interrupts.pending.len() {
            let (w, intid) = self.interrupts.pending[i];
            if w == v {
                self.interrupts.pending.swap_remove(i);
                let priority = self.interrupts.owner(intid).map_or(0, |o| o.priority);
                self.queue_virtual(v, intid, priority);
            } else {
                i += 1;
            }
        }
        self.contexts.set_attention(
            crate::contexts::Attention::InterruptPending,
            self.interrupts.has_pending(),
        );
    }

    /// FFA_MSG_WAIT from a context handling a secure interrupt: if another
    /// one is pending and it did not ignore the one it was signalled (that
    /// one still pending), it is resumed for that one; else the answer held back for it goes to its recipient,
    /// or the context it stopped on this core resumes, or the core goes
    /// back to the normal world.
    pub(crate) fn secure_interrupt_done(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let signalled = self.vcpu(v).signalled;
        let ignored = signalled.is_some_and(|i| self.vcpu(v).ctx.vgic.is_pending(i));
        if !ignored && let Some(intid) = self.untaken_interrupt(v) {
            debug!("vCPU {v:?}: FFA_MSG_WAIT with interrupt {intid} pending: resumed for it");
            return self.resume_for_interrupt(v, intid);
        }
        let held = {
            let mut vcpu = self.vcpu(v);
            vcpu.signalled = None;
            vcpu.held.take()
        };
        let _ = self.set_state(v, VcpuState::Waiting);
        match held {
            Some(h) => self.deliver_held(h, regs),
            None => self.resume_after_secure_interrupt(regs),
        }
    }

    /// The highest-priority virtual interrupt `v` (on this core, its state
    /// in its context) has not taken: in its list registers, after what
    /// was queued for it while it ran is handed over.
    fn untaken_interrupt(&mut self, v: VcpuRef) -> Option<u32> {
        if self.interrupts.has_pending() {
            self.pending_interrupts_to(v);
        }
        self.vcpu(v).ctx.vgic.pending_intid()
    }

    /// `v` answers (`answer` is what the recipient would get) while a
    /// virtual interrupt it owns is pending: the answer is held back and
    /// `v` resumed with FFA_INTERRUPT to handle it (the module's "Answers
    /// held back"). `None`, with nothing changed, if nothing is pending.
    /// (The answer is a plain value, not a closure: one copy of this code.)
    #[inline(never)]
    pub(crate) fn intercept_answer(&mut self, v: VcpuRef, answer: &HeldAnswer) -> Option<Next> {
        let intid = self.untaken_interrupt(v)?;
        let to = VcpuState::Running(RunReason::SecureInterrupt);
        let queued = self.runs_queued(v, to);
        {
            let mut vcpu = self.vcpu(v);
            // Answered (waiting), then resumed for the interrupt, under one
            // lock: no other core sees it waiting (it is on this core).
            let _ = vcpu.state.become_(VcpuState::Waiting);
            if vcpu.state.become_(to).is_err() {
                log::error!(
                    "vCPU {v}: cannot handle interrupt {} after its answer",
                    crate::text::hex(intid)
                );
            }
            // The answer ended its request: a pending managed exit ends too.
            Self::end_managed_exit(&mut vcpu.ctx);
            vcpu.ctx.ns_interrupts_queued = queued;
            vcpu.held = Some(*answer);
        }
        debug!("vCPU {v:?} answered with interrupt {intid} pending: answer held, FFA_INTERRUPT");
        Some(self.resume_for_interrupt(v, intid))
    }

    /// Resumes `v` with FFA_INTERRUPT for `intid` (w2, §9.3; Hafnium passes
    /// it there too), which it was signalled with (one lock for both).
    fn resume_for_interrupt(&mut self, v: VcpuRef, intid: u32) -> Next {
        {
            let mut vcpu = self.vcpu(v);
            vcpu.ctx.x[..8].copy_from_slice(&[
                func::INTERRUPT_32 as u64,
                0,
                intid as u64,
                0,
                0,
                0,
                0,
                0,
            ]);
            vcpu.signalled = Some(intid);
        }
        self.run_cold(v)
    }

    /// Delivers an answer held back to its recipient.
    fn deliver_held(&mut self, h: HeldAnswer, regs: &mut Regs) -> Next {
        let n = h.len as usize;
        match h.to {
            HeldFor::NormalWorld => {
                regs.0[..n].copy_from_slice(&h.msg[..n]);
                Next::NormalWorld
            }
            HeldFor::Vcpu(w) => self.unblock(w, &h.msg[..n]),
        }
    }

    /// `v`, handling a secure interrupt, is aborted: the recipient of an
    /// answer held back for it gets FFA_ERROR(ABORTED), as it would have
    /// had the partition aborted before answering; else what the
    /// interrupt stopped on this core resumes.
    pub(crate) fn abort_during_secure_interrupt(
        &mut self,
        held: Option<HeldAnswer>,
        regs: &mut Regs,
    ) -> Next {
        match held.map(|h| h.to) {
            Some(HeldFor::NormalWorld) => self.refuse_nwd(regs, crate::ffa::FfaError::Aborted),
            Some(HeldFor::Vcpu(w)) => {
                let err = Regs::error(crate::ffa::FfaError::Aborted);
                self.unblock(w, &err.0[..8])
            }
            None => self.resume_after_secure_interrupt(regs),
        }
    }

    /// Partition `slot` is aborted: its interrupts are disabled, and those
    /// it was given but not yet ended (in the list registers of its
    /// contexts that are not running) are ended by the SPMC, so that none
    /// stays active for ever. Contexts running on other cores still hold
    /// theirs until their exit aborts them, which comes here again.
    pub(crate) fn release_interrupts_of_aborted(&mut self, slot: SlotId) {
        for o in self.interrupts.owned.iter().filter(|o| o.slot == slot) {
            self.platform.disable_interrupt(o.intid);
        }
        for index in 0..self.partitions[slot].vcpu_count {
            let held: Vec<u32> = {
                let mut vcpu = self.vcpu(VcpuRef { slot, index });
                if matches!(vcpu.state, VcpuState::Running(_)) {
                    continue;
                }
                let held: Vec<u32> = vcpu.ctx.vgic.in_flight().collect();
                for intid in &held {
                    vcpu.ctx.vgic.withdraw(*intid);
                }
                held
            };
            for intid in held {
                self.platform.deactivate_interrupt(intid);
            }
        }
        let mut i = 0;
        while i < self.interrupts.pending.len() {
            let (w, intid) = self.interrupts.pending[i];
            if w.slot == slot {
                self.interrupts.pending.swap_remove(i);
                self.platform.deactivate_interrupt(intid);
            } else {
                i += 1;
            }
        }
        self.contexts.set_attention(
            crate::contexts::Attention::InterruptPending,
            self.interrupts.has_pending(),
        );
    }

    /// The owner's context ended (or aborted) its handling of a secure
    /// interrupt: resume what it stopped on this core, or give the core
    /// back to the normal world.
    pub(crate) fn resume_after_secure_interrupt(&mut self, regs: &mut Regs) -> Next {
        let core = self.platform.core_index();
        if let Some(at) = self
            .interrupts
            .interrupted
            .iter()
            .position(|(c, _)| *c == core)
        {
            let (_, w) = self.interrupts.interrupted.swap_remove(at);
            if let VcpuState::Blocked(r) = self.vcpu_state(w) {
                let _ = self.set_state(w, VcpuState::Running(r));
                return self.run_cold(w);
            }
        }
        normal_world_resume(regs)
    }
}

/// FFA_NORMAL_WORLD_RESUME to the SPMD: the secure interrupt it forwarded
/// is handled; it resumes the normal world where it was (TF-A SPMD).
fn normal_world_resume(regs: &mut Regs) -> Next {
    *regs = Regs::with_func(func::NORMAL_WORLD_RESUME);
    Next::NormalWorld
}
