//! Normal-world interrupts that arrive while a partition runs (DEN0077 v1.2
//! chapter 9, "Non-secure interrupt signaling"), per the partition
//! manifest's `ns-interrupts-action` ([`NsInterruptAction`]):
//!
//! - **Queued**: the vCPU runs with the normal world's interrupts masked at
//!   the interrupt controller (`Context::ns_interrupts_queued`, the platform's
//!   priority mask): the interrupt stays pending until the partition gives the
//!   core back (its direct response, FFA_MSG_WAIT, FFA_YIELD), then the normal
//!   world takes it. In a call chain a caller's Queued takes precedence over
//!   the actions of the partitions it calls (the less permissive action wins,
//!   FF-A v1.1 §8.3.1 / v1.2 §9; Hafnium keeps the caller's priority mask
//!   while the callee runs, to the same effect).
//! - **Signalled**: the vCPU is preempted at once, the normal world gets
//!   FFA_INTERRUPT and resumes it with FFA_RUN
//!   (`Spmc::preempt_for_interrupt`).
//! - **Managed exit**: the SPMC raises a virtual FIQ (or a virtual IRQ with
//!   `managed-exit-virq`) in the vCPU and resumes it with the normal world's
//!   interrupts masked; the partition answers the direct request it handles
//!   with a direct response (the managed-exit response: an ordinary
//!   FFA_MSG_SEND_DIRECT_RESP(2) to its caller; the spec gives it no flag of
//!   its own, so the SPMC knows it by the pending managed exit). That ends
//!   the managed exit: the virtual line is lowered, the mask goes, and the
//!   response goes to the caller as any response does. The normal world then
//!   takes its interrupt and, to let the partition finish, sends it a new
//!   direct request (as Hafnium and its tests do; the text described
//!   FFA_INTERRUPT + FFA_RUN, which is the signalled action, see
//!   docs/interrupts.md). A managed exit is signalled only to a vCPU that
//!   handles a direct request: one that runs for FFA_RUN has nobody to
//!   answer, so it is preempted (signalled).
//!
//! A partition that does not answer: while the managed exit is pending, each
//! FF-A call it makes counts; after [`MANAGED_EXIT_CALLS`] the SPMC stops
//! waiting and preempts it (signalled) once that call is answered, so the
//! normal world gets its interrupt. A partition that keeps virtual
//! interrupts masked and makes no call at all holds the core (and keeps the
//! normal world's interrupts on it pending) as it does under the Queued
//! action; bounding that needs an SPMC watchdog timer (docs/interrupts.md).

use crate::manager::Spmc;
use crate::platform::Platform;
use crate::sp_manifest::NsInterruptAction;
use crate::vcpu::{Caller, RunReason, VIRTUAL_FIQ, VIRTUAL_IRQ, VcpuRef, VcpuState};
use crate::{Next, ffa::Regs};

/// FF-A calls a vCPU may make while a managed exit is pending before the
/// SPMC stops waiting for its response and preempts it.
pub const MANAGED_EXIT_CALLS: u8 = 32;

impl NsInterruptAction {
    /// True for [`NsInterruptAction::Queued`].
    #[inline(always)]
    pub fn queues(self) -> bool {
        self == NsInterruptAction::Queued
    }
}

impl<P: Platform> Spmc<P> {
    /// Whether vCPU `v`, about to be in state `to`, runs with the normal
    /// world's interrupts queued: while it initialises (see
    /// `Context::ns_interrupts_queued`), when its own manifest queues them,
    /// when the partition that called it runs with them queued (the caller's
    /// less permissive action takes precedence in a call chain), or while a
    /// managed exit is pending (the interrupt was signalled already).
    pub(crate) fn runs_queued(&self, v: VcpuRef, to: VcpuState) -> bool {
        let p = &self.partitions[v.slot];
        match to {
            VcpuState::Running(
                RunReason::Boot
                | RunReason::Create { .. }
                | RunReason::Power { .. }
                | RunReason::SecureInterrupt,
            ) => true,
            VcpuState::Running(r) | VcpuState::Blocked(r) => {
                // Each vCPU's lock on its own, one after the other.
                p.config.ns_interrupts.queues()
                    || self.vcpu(v).ctx.managed_exit != 0
                    || match r {
                        RunReason::Request(Caller::Vcpu { vcpu: c, .. }) => {
                            self.vcpu(c).ctx.ns_interrupts_queued
                        }
                        _ => false,
                    }
            }
            _ => false,
        }
    }

    /// A physical interrupt for the normal world arrived while `v` ran.
    pub(crate) fn ns_interrupt(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let action = self.partitions[v.slot].config.ns_interrupts;
        let mut vcpu = self.vcpu(v);
        if vcpu.ctx.ns_interrupts_queued {
            // Masked by now (it arrived as the mask went up, or it was
            // signalled already): the partition goes on.
            drop(vcpu);
            return self.run_cold(v);
        }
        match (action, vcpu.state) {
            (
                NsInterruptAction::ManagedExit { virq },
                VcpuState::Running(RunReason::Request(_)),
            ) => {
                let ctx = &mut vcpu.ctx;
                ctx.virtual_lines |= if virq { VIRTUAL_IRQ } else { VIRTUAL_FIQ };
                ctx.managed_exit = 1;
                ctx.ns_interrupts_queued = true;
                drop(vcpu);
                log::trace!("vCPU {v:?}: managed exit signalled");
                self.run_cold(v)
            }
            _ => {
                drop(vcpu);
                self.preempt_for_interrupt(v, regs)
            }
        }
    }

    /// An FF-A call from `v` while its managed exit is pending: handled as
    /// any call; after [`MANAGED_EXIT_CALLS`] of them the SPMC stops
    /// waiting and preempts the vCPU once the call is answered.
    #[cold]
    #[inline(never)]
    pub(crate) fn call_during_managed_exit(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let over = {
            let ctx = &mut self.vcpu(v).ctx;
            ctx.managed_exit = ctx.managed_exit.saturating_add(1);
            ctx.managed_exit > MANAGED_EXIT_CALLS
        };
        let next = self.call_exit_cold(v, regs);
        let still = matches!(next, Next::Run { vcpu, .. } if vcpu == v)
            && self.vcpu(v).ctx.managed_exit != 0
            && matches!(
                self.vcpu(v).state,
                VcpuState::Running(RunReason::Request(_))
            );
        if over && still {
            log::debug!("vCPU {v:?}: no managed-exit response; preempted");
            {
                let ctx = &mut self.vcpu(v).ctx;
                ctx.managed_exit = 0;
                ctx.ns_interrupts_queued = false;
            }
            return self.preempt_for_interrupt(v, regs);
        }
        next
    }

    /// Ends a managed exit (its response was sent, or the vCPU stops
    /// running its request): the virtual line goes down, the mask with it.
    #[inline(always)]
    pub(crate) fn end_managed_exit(ctx: &mut crate::vcpu::Context) {
        ctx.managed_exit = 0;
        ctx.virtual_lines = 0;
    }
}
