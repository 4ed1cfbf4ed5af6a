//! Direct messaging, scheduling (FFA_RUN, FFA_MSG_WAIT, FFA_YIELD,
//! FFA_INTERRUPT) and aborting a partition.
//!
//! DEN0077 v1.2: direct messages §15.2-15.5 (REQ/RESP, REQ2/RESP2), CPU
//! cycle management §13.x (FFA_RUN, FFA_MSG_WAIT, FFA_YIELD,
//! FFA_INTERRUPT). The request path is the hot path: it decodes only the
//! registers it needs and never builds an `arm_ffa::Interface`.

use log::{debug, info};

use crate::contexts::Contexts;
use crate::ffa::{self, FfaError, Regs, Version, func, is_secure_id};
use crate::ids::{PartId, SlotId, VmId};
use crate::interrupts::{HeldAnswer, HeldFor};
use crate::manager::{Next, Spmc};
use crate::partition::{Partition, PartitionState};
use crate::platform::Platform;
use crate::sp_manifest::{Messaging, Uuid};
use crate::vcpu::{Caller, Preemption, RunReason, VcpuRef, VcpuState};

impl<P: Platform> Spmc<P> {
    /// Checks a direct request from the normal world; returns the target vCPU.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    fn check_nwd_request(&self, regs: &Regs, req2: bool) -> Result<VcpuRef, FfaError> {
        let sender = ffa::sender(regs);
        if is_secure_id(sender) {
            return Err(FfaError::InvalidParameters);
        }
        if req2 {
            let v = self.nwd_version(sender);
            if v < Version::V1_2 {
                return Err(FfaError::NotSupported);
            }
        } else if regs.x(2) != 0 {
            // w2 MBZ for partition messages (Table 15.3).
            return Err(FfaError::InvalidParameters);
        }
        // The policy check and the target checks on one lookup of the partition.
        let receiver = ffa::receiver(regs);
        let (slot, p) = match self.slot_of(PartId::new(receiver)) {
            Some(slot) => {
                let p = &self.partitions[slot];
                if !self.vm_may_reach(VmId::new(sender), p) {
                    return Err(FfaError::Denied);
                }
                (slot, p)
            }
            None => {
                let slot = self.route_template(VmId::new(sender), receiver)?;
                (slot, &self.partitions[slot])
            }
        };
        pick_vcpu(
            p,
            &self.contexts,
            slot,
            req2,
            (regs.x(2), regs.x(3)),
            || self.platform.core_index(),
        )
    }

    /// Applies the binding policy to a message from normal-world endpoint `vm`
    /// to `receiver` and returns the slot of the partition it reaches: a
    /// template's ID reaches `vm`'s own instance; a partition `vm` may not
    /// reach is DENIED (design §"The contract", 2); an ID that is neither a
    /// partition nor a template is INVALID_PARAMETERS.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub(crate) fn route_for_vm(&self, vm: VmId, receiver: u16) -> Result<SlotId, FfaError> {
        if let Some(slot) = self.slot_of(PartId::new(receiver)) {
            return if self.vm_may_reach(vm, &self.partitions[slot]) {
                Ok(slot)
            } else {
                Err(FfaError::Denied)
            };
        }
        self.route_template(vm, receiver)
    }

    /// May normal-world endpoint `vm` reach the partition `p`?
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub(crate) fn vm_may_reach(&self, vm: VmId, p: &Partition) -> bool {
        match p.kind {
            crate::policy::Kind::Instance { owner } => owner == vm,
            // Endpoint 0 (the hypervisor, or the OS without one) reaches
            // every static partition: the common case needs no table walk.
            crate::policy::Kind::Static => {
                vm == 0 || self.config().policy.may_reach(vm, p.id().raw(), p.kind)
            }
        }
    }

    /// The slot of `vm`'s instance of the template `receiver` names.
    #[inline(never)]
    fn route_template(&self, vm: VmId, receiver: u16) -> Result<SlotId, FfaError> {
        match self
            .templates
            .iter()
            .position(|t| t.config.partition == receiver)
        {
            Some(t) => self.instance_of(t, vm).ok_or(FfaError::Denied),
            None => Err(FfaError::InvalidParameters),
        }
    }

    /// FFA_MSG_SEND_DIRECT_REQ(2) from the normal world (§15.2, §15.4). The
    /// hot path: the message goes straight from the caller's registers into
    /// the target vCPU's.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub(crate) fn direct_request_from_nwd(&mut self, regs: &mut Regs) -> Next {
        let f = regs.func();
        let req2 = f == func::MSG_SEND_DIRECT_REQ2_64;
        let v = match self.check_nwd_request(regs, req2) {
            Ok(v) => v,
            Err(e) => return self.refuse_nwd(regs, e),
        };
        let reason = RunReason::Request(Caller::NormalWorld {
            id: ffa::sender(regs),
            req2,
        });
        // A secure interrupt pended for it while it ran on another core
        // goes into its list registers now, as in `Spmc::run`.
        if self.interrupts.has_pending() {
            self.pending_interrupts_to(v);
        }
        // The manifest's `ns-interrupts-action` (`ns_interrupts`): a request
        // from the normal world heads its call chain.
        let queued = self.partitions[v.slot].config.ns_interrupts.queues();
        let mut vcpu = self.vcpu(v);
        // `pick_vcpu` saw it waiting, but the fast path of another core
        // may have taken it since (a UP partition's context): checked
        // again under its lock.
        if vcpu.state != VcpuState::Waiting {
            drop(vcpu);
            return self.refuse_nwd(regs, FfaError::Busy);
        }
        vcpu.ctx.ns_interrupts_queued = queued;
        vcpu.state = VcpuState::Running(reason);
        vcpu.on_core = true;
        let ctx = &mut vcpu.ctx;
        if f == func::MSG_SEND_DIRECT_REQ_32 {
            for i in 0..8 {
                ctx.x[i] = regs.0[i] & 0xFFFF_FFFF;
            }
        } else if req2 {
            ctx.x[..18].copy_from_slice(&regs.0);
        } else {
            ctx.x[..8].copy_from_slice(&regs.0[..8]);
        }
        Next::Run { vcpu: v, ctx }
    }

    /// FFA_MSG_SEND_DIRECT_REQ(2) from a partition to another partition.
    pub(crate) fn direct_request_from_sp(&mut self, v: VcpuRef) -> Next {
        let (f, w1, x2, x3) = {
            let x = &self.vcpu(v).ctx.x;
            (x[0] as u32, x[1], x[2], x[3])
        };
        let req2 = f == func::MSG_SEND_DIRECT_REQ2_64;
        let me = &self.partitions[v.slot];
        let my_id = me.id();
        let checked = (|| {
            let (sender, receiver) = ((w1 >> 16) as u16, w1 as u16);
            if sender != my_id.raw() || receiver == my_id.raw() {
                return Err(FfaError::InvalidParameters);
            }
            let can_send = if req2 {
                Messaging::DIRECT2_SEND
            } else {
                Messaging::DIRECT_SEND
            };
            if !me.config.messaging.has(can_send) {
                return Err(FfaError::Denied);
            }
            if req2 && me.version < Version::V1_2 {
                return Err(FfaError::NotSupported);
            }
            if !req2 && x2 != 0 {
                return Err(FfaError::InvalidParameters);
            }
            if !is_secure_id(receiver) {
                // Partitions send direct requests only to partitions (§15.2.1).
                return Err(FfaError::Denied);
            }
            let t = self
                .slot_of(PartId::new(receiver))
                .ok_or(FfaError::InvalidParameters)?;
            // An instance belongs to its VM: only that VM's partitions reach it.
            if let crate::policy::Kind::Instance { owner } = self.partitions[t].kind
                && me.kind != (crate::policy::Kind::Instance { owner })
            {
                return Err(FfaError::Denied);
            }
            pick_vcpu(
                &self.partitions[t],
                &self.contexts,
                t,
                req2,
                (x2, x3),
                || self.platform.core_index(),
            )
        })();
        let target = match checked {
            Ok(t) => t,
            Err(e) => return self.refuse_sp(v, e),
        };
        let reason = match self.vcpu_state(v) {
            VcpuState::Running(r) => r,
            _ => return self.refuse_sp(v, FfaError::Denied),
        };
        if let Err(e) = self.set_state(v, VcpuState::Blocked(reason)) {
            return self.refuse_sp(v, e);
        }
        let caller = Caller::Vcpu {
            vcpu: v,
            id: my_id.raw(),
            req2,
        };
        if let Err(e) = self.set_state(target, VcpuState::Running(RunReason::Request(caller))) {
            let _ = self.set_state(v, VcpuState::Running(reason));
            return self.refuse_sp(v, e);
        }
        let n = if req2 { 18 } else { 8 };
        let mut msg = [0u64; 18];
        msg[..n].copy_from_slice(&self.vcpu(v).ctx.x[..n]);
        if f == func::MSG_SEND_DIRECT_REQ_32 {
            msg[..8].iter_mut().for_each(|r| *r &= 0xFFFF_FFFF);
        }
        self.vcpu(target).ctx.x[..n].copy_from_slice(&msg[..n]);
        self.run(target)
    }

    /// FFA_MSG_SEND_DIRECT_RESP(2) from a partition (§15.3, §15.5). The hot
    /// path back: the answer goes straight from the vCPU's registers into the
    /// caller's.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub(crate) fn direct_response(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let my_id = self.partitions[v.slot].config.id;
        let mut vcpu = self.vcpu(v);
        let caller = match vcpu.state {
            VcpuState::Running(RunReason::Request(c)) => c,
            _ => {
                drop(vcpu);
                return self.response_without_request(v, regs);
            }
        };
        let ctx = &vcpu.ctx;
        let f = ctx.x[0] as u32;
        let resp2 = f == func::MSG_SEND_DIRECT_RESP2_64;
        let w1 = ctx.x[1];
        let refused = if (w1 >> 16) as u16 != my_id || w1 as u16 != caller.id() {
            Some(FfaError::InvalidParameters)
        } else if resp2 != caller.req2() {
            // A REQ2 is answered with RESP2, a REQ with RESP.
            Some(FfaError::Denied)
        } else if !resp2 && ctx.x[2] != 0 {
            Some(FfaError::InvalidParameters)
        } else {
            None
        };
        if let Some(e) = refused {
            drop(vcpu);
            return self.refuse_sp(v, e);
        }
        // A secure interrupt it has not taken: the answer waits until it
        // has handled it (`crate::interrupts`, "Answers held back").
        if vcpu.ctx.vgic.has_pending() || self.interrupts.has_pending() {
            let to = match caller {
                Caller::NormalWorld { .. } => HeldFor::NormalWorld,
                Caller::Vcpu { vcpu: w, .. } => HeldFor::Vcpu(w),
            };
            // Its context does not change meanwhile: the vCPU is on this core.
            let answer = HeldAnswer::response(&vcpu.ctx, to);
            drop(vcpu);
            if let Some(next) = self.intercept_answer(v, &answer) {
                return next;
            }
            vcpu = self.vcpu(v);
        }
        // Running(Request) -> Waiting is always legal; `become_` checks it anyway.
        let _ = vcpu.state.become_(VcpuState::Waiting);
        // This response ends a pending managed exit (`ns_interrupts`): the
        // virtual line goes down and the normal world's interrupt is taken.
        Self::end_managed_exit(&mut vcpu.ctx);
        vcpu.ctx.ns_interrupts_queued = false;
        let ctx = &vcpu.ctx;
        match caller {
            Caller::NormalWorld { .. } => {
                if f == func::MSG_SEND_DIRECT_RESP_32 {
                    for i in 0..8 {
                        regs.0[i] = ctx.x[i] & 0xFFFF_FFFF;
                    }
                } else if resp2 {
                    regs.0.copy_from_slice(&ctx.x[..18]);
                } else {
                    regs.0[..8].copy_from_slice(&ctx.x[..8]);
                }
                Next::NormalWorld
            }
            Caller::Vcpu { vcpu: w, .. } => {
                let n = if resp2 { 18 } else { 8 };
                let mut msg = [0u64; 18];
                msg[..n].copy_from_slice(&ctx.x[..n]);
                if f == func::MSG_SEND_DIRECT_RESP_32 {
                    msg[..8].iter_mut().for_each(|r| *r &= 0xFFFF_FFFF);
                }
                drop(vcpu);
                self.unblock(w, &msg[..n])
            }
        }
    }

    /// A direct response from a vCPU that handles no direct request: the
    /// answer to a power management message (`spmc::multicore`), or DENIED
    /// (there is nobody to answer, §15.3.2).
    #[inline(never)]
    fn response_without_request(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        match self.vcpu_state(v) {
            VcpuState::Running(RunReason::Power { op }) => self.power_response(v, op, regs),
            // Not handling a request: there is nobody to answer (§15.3.2).
            // A call all the same: it fixes the version (§13.2; one handling
            // a request or a power message has waited, which fixed it).
            _ => {
                self.partitions[v.slot].version_fixed = true;
                self.refuse_sp(v, FfaError::Denied)
            }
        }
    }

    /// Resumes a vCPU blocked on a direct request with the answer `msg` in its x0..
    pub(crate) fn unblock(&mut self, w: VcpuRef, msg: &[u64]) -> Next {
        let reason = match self.vcpu_state(w) {
            VcpuState::Blocked(r) => r,
            other => {
                log::error!("vCPU {w} expected blocked, is {other}");
                return self.run(w);
            }
        };
        let _ = self.set_state(w, VcpuState::Running(reason));
        self.vcpu(w).ctx.x[..msg.len()].copy_from_slice(msg);
        self.run(w)
    }

    /// FFA_MSG_WAIT from a partition.
    pub(crate) fn msg_wait(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let id = self.partitions[v.slot].id();
        match self.vcpu_state(v) {
            VcpuState::Running(RunReason::Boot) => {
                let _ = self.set_state(v, VcpuState::Waiting);
                info!("partition {id:#06x} initialised (context {})", v.index);
                self.boot_next(regs)
            }
            VcpuState::Running(RunReason::Create { template_id, wide }) => {
                let _ = self.set_state(v, VcpuState::Waiting);
                self.instance_ready(template_id, wide, regs)
            }
            VcpuState::Running(RunReason::Scheduled) => {
                // A secure interrupt it has not taken: handled first
                // (`crate::interrupts`, "Answers held back").
                if let Some(next) =
                    self.intercept_answer(v, &HeldAnswer::msg_wait(id.raw(), v.index))
                {
                    return next;
                }
                let _ = self.set_state(v, VcpuState::Waiting);
                *regs = Regs::with_func(func::MSG_WAIT);
                regs.0[1] = ffa::endpoints(id.raw(), v.index);
                Next::NormalWorld
            }
            // The secure interrupt it was resumed for is handled (§9.3).
            VcpuState::Running(RunReason::SecureInterrupt) => self.secure_interrupt_done(v, regs),
            // It owes a direct response: waiting now would leave its caller hanging.
            _ => self.refuse_sp(v, FfaError::Denied),
        }
    }

    /// FFA_YIELD from a partition: give the CPU back to the normal world,
    /// which resumes the partition later with FFA_RUN.
    pub(crate) fn yield_(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let reason = match self.vcpu_state(v) {
            VcpuState::Running(
                r @ (RunReason::Scheduled | RunReason::Request(Caller::NormalWorld { .. })),
            ) => r,
            // Yielding in a chain of partitions, or at boot, has no scheduler to return to.
            _ => return self.refuse_sp(v, FfaError::Denied),
        };
        let (t_lo, t_hi) = {
            let x = &self.vcpu(v).ctx.x;
            (x[2], x[3])
        };
        let _ = self.set_state(v, VcpuState::Preempted(reason, Preemption::Yield));
        let id = self.partitions[v.slot].id();
        *regs = Regs::with_func(func::YIELD);
        regs.0[1] = ffa::endpoints(id.raw(), v.index);
        regs.0[2] = t_lo & 0xFFFF_FFFF;
        regs.0[3] = t_hi & 0xFFFF_FFFF;
        Next::NormalWorld
    }

    /// A physical interrupt arrived while a partition ran: it belongs to the
    /// normal world, so preempt the partition and tell the normal world with
    /// FFA_INTERRUPT; it resumes the vCPU with FFA_RUN.
    pub(crate) fn preempt_for_interrupt(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let reason = match self.vcpu_state(v) {
            VcpuState::Running(
                RunReason::Boot
                | RunReason::Create { .. }
                | RunReason::Power { .. }
                | RunReason::SecureInterrupt,
            ) => return self.run_cold(v),
            VcpuState::Running(r) => r,
            _ => return self.run_cold(v),
        };
        let _ = self.set_state(v, VcpuState::Preempted(reason, Preemption::Interrupt));
        let id = self.partitions[v.slot].id();
        *regs = Regs::with_func(func::INTERRUPT_32);
        regs.0[1] = ffa::endpoints(id.raw(), v.index);
        Next::NormalWorld
    }

    /// FFA_RUN from the normal world (§13.x): resume a preempted vCPU, or give
    /// a waiting one CPU cycles (it sees FFA_RUN as the return of its FFA_MSG_WAIT).
    pub(crate) fn run_from_nwd(&mut self, regs: &mut Regs) -> Next {
        let w1 = regs.x(1);
        let (id, index) = ((w1 >> 16) as u16, w1 as u16);
        let Some(slot) = self.slot_of(PartId::new(id)) else {
            return self.refuse_nwd(regs, FfaError::InvalidParameters);
        };
        let p = &self.partitions[slot];
        // An MP partition's context runs on its own core only (DEN0077
        // v1.2 §8.1; Hafnium answers INVALID_PARAMETERS too).
        if index >= p.vcpu_count || (p.is_mp() && index as usize != self.platform.core_index()) {
            return self.refuse_nwd(regs, FfaError::InvalidParameters);
        }
        let v = VcpuRef { slot, index };
        if self.partitions[slot].state == PartitionState::Aborted {
            return self.refuse_nwd(regs, FfaError::Aborted);
        }
        match self.vcpu_state(v) {
            VcpuState::Preempted(r, how) => {
                let _ = self.set_state(v, VcpuState::Running(r));
                if how == Preemption::Yield {
                    let mut ok = Regs::with_func(func::SUCCESS_32);
                    ok.0[1] = 0;
                    return self.resume_with(v, &ok);
                }
                self.run_cold(v)
            }
            VcpuState::Waiting => {
                // The fast path of another core may have taken it meanwhile.
                if let Err(e) = self.set_state(v, VcpuState::Running(RunReason::Scheduled)) {
                    return self.refuse_nwd(regs, e);
                }
                let mut msg = Regs::with_func(func::RUN);
                msg.0[1] = w1 & 0xFFFF_FFFF;
                self.resume_with(v, &msg)
            }
            VcpuState::Aborted => self.refuse_nwd(regs, FfaError::Aborted),
            _ => self.refuse_nwd(regs, FfaError::Busy),
        }
    }

    /// Aborts the partition that `v` belongs to after a fault: its caller gets
    /// FFA_ERROR(ABORTED) and every other partition goes on.
    pub(crate) fn abort(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let (state, held) = {
            let mut vcpu = self.vcpu(v);
            vcpu.signalled = None;
            (vcpu.state, vcpu.held.take())
        };
        self.set_partition_state(v.slot, PartitionState::Aborted);
        // vCPUs running on other cores are aborted at their next exit.
        for index in 0..self.partitions[v.slot].vcpu_count {
            let mut other = self.vcpu(VcpuRef {
                slot: v.slot,
                index,
            });
            if !matches!(other.state, VcpuState::Running(_) | VcpuState::Blocked(_)) {
                other.state = VcpuState::Aborted;
            }
        }
        self.vcpu(v).state = VcpuState::Aborted;
        self.release_interrupts_of_aborted(v.slot);
        debug!("partition {:#06x} is aborted", self.partitions[v.slot].id());
        let reason = match state {
            VcpuState::Running(r) | VcpuState::Blocked(r) | VcpuState::Preempted(r, _) => r,
            _ => RunReason::Boot,
        };
        match reason {
            RunReason::Boot => self.boot_next(regs),
            RunReason::Power { op } => self.power_continue(op, v.slot, regs),
            RunReason::Create { template_id, wide } => {
                self.instance_failed(v, template_id, wide, regs)
            }
            RunReason::Scheduled | RunReason::Request(Caller::NormalWorld { .. }) => {
                self.refuse_nwd(regs, FfaError::Aborted)
            }
            RunReason::Request(Caller::Vcpu { vcpu: w, .. }) => {
                let err = Regs::error(FfaError::Aborted);
                self.unblock(w, &err.0[..8])
            }
            RunReason::SecureInterrupt => self.abort_during_secure_interrupt(held, regs),
        }
    }
}

/// Checks a direct request to partition `p` (in `slot`) arriving on core
/// `core` and picks the vCPU to deliver it to: a UP partition's only
/// context, an MP partition's context `core` (DEN0077 v1.2 §8.1: an MP
/// partition's execution context n is pinned to core n). It saw the vCPU
/// waiting; the caller changes its state under its lock again.
#[inline(always)]
#[cfg_attr(spmc_hot, optimize(speed))]
fn pick_vcpu(
    p: &Partition,
    contexts: &Contexts,
    slot: SlotId,
    req2: bool,
    uuid: (u64, u64),
    core: impl FnOnce() -> usize,
) -> Result<VcpuRef, FfaError> {
    match p.state {
        PartitionState::Aborted => return Err(FfaError::Aborted),
        PartitionState::Created => return Err(FfaError::Busy),
        PartitionState::Free => return Err(FfaError::InvalidParameters),
        PartitionState::Running => {}
    }
    let wanted = if req2 {
        Messaging::DIRECT2_RECV
    } else {
        Messaging::DIRECT_RECV
    };
    if !p.config.messaging.has(wanted) {
        return Err(FfaError::Denied);
    }
    if req2 {
        let u = Uuid::from_u64_pair(uuid.0, uuid.1);
        if !u.is_nil() && !p.config.uuids.contains(&u) {
            return Err(FfaError::InvalidParameters);
        }
    }
    // The core is read only for an MP partition.
    let index = if p.is_mp() { core() } else { 0 };
    // An MP partition's context on a core that has not come on (or went
    // off): it cannot run there (the partition has no context for a core
    // past its count either).
    if index >= p.vcpu_count as usize {
        return Err(FfaError::Denied);
    }
    let v = VcpuRef {
        slot,
        index: index as u16,
    };
    match contexts.vcpu(v).state {
        VcpuState::Waiting => Ok(v),
        VcpuState::Aborted => Err(FfaError::Aborted),
        VcpuState::Off => Err(FfaError::Denied),
        _ => Err(FfaError::Busy),
    }
}
