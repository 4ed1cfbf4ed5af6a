//! Execution contexts on several cores: secondary cold boot, the partitions'
//! secondary entry points and the power management messages.
//!
//! DEN0077 v1.2 chapter 8: a partition has one execution context (UP,
//! migrated to whichever core calls it, never on two at once) or one per
//! core (MP, context n pinned to core n). This module holds what that adds
//! to the manager:
//!
//! - **Secondary cold boot**: when the normal world turns a core on (PSCI
//!   CPU_ON through the SPMD), TF-A's SPMD enters the SPMC at the entry it
//!   registered; [`Spmc::secondary_boot`] then initialises that core's
//!   context of every MP partition, in boot order, from the partition's
//!   secondary entry point (or its primary one) up to its FFA_MSG_WAIT, and
//!   ends with FFA_MSG_WAIT to the SPMD.
//! - **FFA_SECONDARY_EP_REGISTER** (§18.3.2.1) from a partition during its
//!   initialisation.
//! - **Power management messages** (§18.2): the SPMD's CPU_OFF (and
//!   CPU_SUSPEND, if sent) framework message goes, as a framework direct
//!   request from the SPMC, to that core's context of every MP partition
//!   whose manifest subscribes (`power-management-messages`), one after the
//!   other in boot order; then the core's MP contexts are turned off (the
//!   next CPU_ON initialises them again) and the SPMD gets its answer.

use log::{debug, info};

use crate::ffa::{self, FfaError, Regs, Version, func, fwk};
use crate::ids::SlotId;
use crate::manager::{Next, Spmc};
use crate::partition::PartitionState;
use crate::platform::Platform;
use crate::stage2::Stage2;
use crate::vcpu::{Context, PowerOp, RunReason, VcpuRef, VcpuState};

/// A context as it starts (its first boot on its core, or again after the
/// core went off): at `entry`, with the boot information in its register
/// and x4 = its index (this SPMC's convention, which the test partition reads).
pub(crate) fn first_context(
    entry: u64,
    stage2: &Stage2,
    boot_info: Option<(u8, u64)>,
    index: u16,
) -> Context {
    let mut ctx = Context::new(entry, stage2.vsttbr(), stage2.vttbr());
    if let Some((reg, at)) = boot_info {
        ctx.x[reg as usize] = at;
    }
    ctx.x[4] = index as u64;
    ctx.vmpidr = crate::vcpu::vmpidr(index);
    ctx
}

impl<P: Platform> Spmc<P> {
    /// A context finished (or failed) its initialisation: go on with the
    /// primary boot, or with this core's secondary boot once the primary
    /// boot is over.
    pub(crate) fn boot_next(&mut self, regs: &mut Regs) -> Next {
        if self.booted {
            self.secondary_boot(regs)
        } else {
            self.boot_continue(regs)
        }
    }

    /// A core's cold boot after PSCI CPU_ON: starts the next MP partition
    /// (in boot order) whose context for this core is off, from its
    /// secondary entry point (or its primary one). When none is left, the
    /// answer for the SPMD is FFA_MSG_WAIT in `regs`: the core is ready.
    /// The platform runs what this returns as it runs the primary boot.
    pub fn secondary_boot(&mut self, regs: &mut Regs) -> Next {
        let core = self.platform.core_index();
        for pos in 0..self.boot_order.len() {
            let slot = self.boot_order[pos];
            let p = &self.partitions[slot];
            if !p.is_alive() || !p.is_mp() || core >= p.vcpu_count as usize {
                continue;
            }
            let v = VcpuRef {
                slot,
                index: core as u16,
            };
            let mut vcpu = self.contexts.vcpu(v);
            if vcpu.state != VcpuState::Off {
                continue;
            }
            let entry = p
                .secondary_ep
                .unwrap_or(p.config.load_ipa.0 + p.config.entry_offset);
            vcpu.ctx = first_context(entry, &p.stage2, p.boot_info_arg, core as u16);
            drop(vcpu);
            debug!(
                "core {core}: starting context {core} of partition {:#06x} at {entry:#x}",
                p.id()
            );
            if self
                .set_state(v, VcpuState::Running(RunReason::Boot))
                .is_ok()
            {
                return self.run_cold(v);
            }
        }
        info!("core {core} on");
        *regs = Regs::with_func(func::MSG_WAIT);
        Next::NormalWorld
    }

    /// FFA_SECONDARY_EP_REGISTER (DEN0077 v1.2 §18.3.2.1) from the vCPU `v`:
    /// where the partition's other contexts start when their cores come on.
    /// Only during its initialisation (its boot, or an instance's creation;
    /// DENIED afterwards), only an address
    /// inside its own memory (its image and `mem-size`, the part that is
    /// mapped executable; INVALID_PARAMETERS otherwise), and not from a
    /// v1.0 partition (NOT_SUPPORTED, as Hafnium). The normal world never
    /// gets here: the SPMD answers it, and `common_call` answers
    /// NOT_SUPPORTED if one arrives.
    pub(crate) fn secondary_ep_register(&mut self, v: VcpuRef) -> Result<Regs, FfaError> {
        let state = self.vcpu_state(v);
        let (x0, x1) = {
            let x = &self.vcpu(v).ctx.x;
            (x[0], x[1])
        };
        let p = &mut self.partitions[v.slot];
        let entry = if x0 as u32 == func::SECONDARY_EP_REGISTER_32 {
            x1 & 0xFFFF_FFFF
        } else {
            x1
        };
        if p.version < Version::V1_1 {
            return Err(FfaError::NotSupported);
        }
        if !matches!(
            state,
            VcpuState::Running(RunReason::Boot | RunReason::Create { .. })
        ) {
            debug!(
                "partition {:#06x}: FFA_SECONDARY_EP_REGISTER after its initialisation",
                p.id()
            );
            return Err(FfaError::Denied);
        }
        let inside = p.memory.first().is_some_and(|(ipa, a)| {
            entry >= ipa.0 && entry - ipa.0 < a.len() && entry.is_multiple_of(4)
        });
        if !inside {
            debug!(
                "partition {:#06x}: secondary entry {entry:#x} outside its memory",
                p.id()
            );
            return Err(FfaError::InvalidParameters);
        }
        p.secondary_ep = Some(entry);
        Ok(Regs::success32(0))
    }

    /// A power management framework message from the SPMD (§18.2: PSCI
    /// CPU_OFF, which TF-A 2.12.1 sends from `spmd_cpu_off_handler`, or
    /// CPU_SUSPEND), on the core it concerns.
    pub(crate) fn power_message(&mut self, regs: &mut Regs) -> Next {
        let psci = regs.w(3);
        debug!(
            "core {}: PSCI framework message {psci:#x}",
            self.platform.core_index()
        );
        match PowerOp::from_psci(psci) {
            Some(op) => self.power_deliver(op, 0, regs),
            // Nothing a partition subscribes to: answered at once.
            None => self.power_done(regs),
        }
    }

    /// Goes on with the power message `op` after the partition in `slot`
    /// answered it (or was aborted meanwhile).
    pub(crate) fn power_continue(&mut self, op: PowerOp, slot: SlotId, regs: &mut Regs) -> Next {
        let after = self
            .boot_order
            .iter()
            .position(|&s| s == slot)
            .map_or(self.boot_order.len(), |p| p + 1);
        self.power_deliver(op, after, regs)
    }

    /// Delivers `op` to the next subscriber from boot-order position
    /// `from`, or, when none is left, finishes: on CPU_OFF this core's MP
    /// contexts go off, and the SPMD gets its framework response.
    fn power_deliver(&mut self, op: PowerOp, from: usize, regs: &mut Regs) -> Next {
        let core = self.platform.core_index();
        let spmc_id = self.id();
        for pos in from..self.boot_order.len() {
            let slot = self.boot_order[pos];
            let p = &self.partitions[slot];
            if !p.is_alive()
                || !p.is_mp()
                || core >= p.vcpu_count as usize
                || !p.config.power_messages.wants(op.psci())
            {
                continue;
            }
            let id = p.id();
            let v = VcpuRef {
                slot,
                index: core as u16,
            };
            if self.vcpu_state(v) != VcpuState::Waiting {
                continue;
            }
            if self
                .set_state(v, VcpuState::Running(RunReason::Power { op }))
                .is_err()
            {
                continue;
            }
            let msg = [
                func::MSG_SEND_DIRECT_REQ_32 as u64,
                ffa::endpoints(spmc_id, id.raw()),
                (fwk::FLAG | fwk::PSCI_REQ) as u64,
                op.psci() as u64,
                0,
                0,
                0,
                0,
            ];
            self.vcpu(v).ctx.x[..8].copy_from_slice(&msg);
            return self.run_cold(v);
        }
        if op == PowerOp::CpuOff {
            for (slot, p) in self.partitions.slots() {
                if !p.is_mp() || p.state == PartitionState::Free || core >= p.vcpu_count as usize {
                    continue;
                }
                let v = VcpuRef {
                    slot,
                    index: core as u16,
                };
                // Waiting or preempted: over; anything else stays.
                let _ = self.contexts.vcpu(v).state.become_(VcpuState::Off);
            }
            info!("core {core} off");
        }
        self.power_done(regs)
    }

    /// The SPMC's framework response to the SPMD's power message: PSCI SUCCESS.
    fn power_done(&mut self, regs: &mut Regs) -> Next {
        let spmc_id = self.id();
        regs.0[..8].copy_from_slice(&[
            func::MSG_SEND_DIRECT_RESP_32 as u64,
            ffa::endpoints(spmc_id, ffa::SPMD_ID),
            (fwk::FLAG | fwk::PSCI_RESP) as u64,
            ffa::psci::SUCCESS as u64,
            0,
            0,
            0,
            0,
        ]);
        Next::NormalWorld
    }

    /// A direct response from a context handling the power message `op`:
    /// it must be the framework response (32-bit, from the partition to
    /// the SPMC, w2 = framework bit | PSCI response); anything else is
    /// answered INVALID_PARAMETERS and the context still owes it.
    #[inline(never)]
    pub(crate) fn power_response(&mut self, v: VcpuRef, op: PowerOp, regs: &mut Regs) -> Next {
        let id = self.partitions[v.slot].id();
        let spmc_id = self.id();
        let x = self.vcpu(v).ctx.x;
        let ok = x[0] as u32 == func::MSG_SEND_DIRECT_RESP_32
            && x[1] as u32 == ffa::endpoints(id.raw(), spmc_id) as u32
            && x[2] as u32 == fwk::FLAG | fwk::PSCI_RESP;
        if !ok {
            return self.refuse_sp(v, FfaError::InvalidParameters);
        }
        let status = x[3] as u32;
        if status != ffa::psci::SUCCESS {
            debug!("partition {id:#06x} answered {op:?} with {status:#x}");
        }
        let _ = self.set_state(v, VcpuState::Waiting);
        self.power_continue(op, v.slot, regs)
    }
}
