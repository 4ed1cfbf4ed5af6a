//! Per-user virtual TEEs: instances of a template partition, made when a VM
//! is created and destroyed with it.
//!
//! The normal-world hypervisor sends the FF-A VM availability messages
//! (DEN0077 v1.2 §18.3: a framework direct request, w2 = VM created 0x8000_0004
//! or VM destroyed 0x8000_0006, w3/w4 a memory handle, w5 the VM ID) to the
//! template's ID. The SPMC answers them itself:
//!
//! - VM created: take the instance's pages from the secure pool (within the
//!   template's quota), copy the image from the pristine copy BL2 loaded (the
//!   package, never mapped to anyone), build a fresh stage 2, give it the next
//!   free instance ID and boot it; when it reaches FFA_MSG_WAIT the SPMC
//!   acknowledges (w2 = 0x8000_0005, w3 = 0). Failures are acknowledged with
//!   an FF-A error code in w3 and leave nothing allocated.
//! - VM destroyed: stop the instance, zero and return its pages, drop its
//!   stage 2 and TLB entries, retire its ID (IDs are handed out round-robin,
//!   so a retired one comes back last), acknowledge (w2 = 0x8000_0007).
//!
//! Only endpoint 0 (the hypervisor) may send these messages: a VM can never
//! create or destroy a TEE, its own or another's.

use alloc::vec::Vec;

use log::debug;

use crate::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use crate::ffa::{self, FfaError, PartitionId, Regs, func, fwk};
use crate::ids::{PartId, SlotId};
use crate::manager::{HEAP_PER_PARTITION, Next, Spmc};
use crate::partition::PartitionState;
use crate::platform::Platform;
use crate::policy::{Kind, TemplateConfig, VmId};
use crate::sp_manifest::{PartitionConfig, SpError};
use crate::stage2::{IPA_LIMIT, Stage2};
use crate::vcpu::{Caller, RunReason, VcpuRef, VcpuState};

/// A template: the manifest, where its pristine image lies, and the next instance ID.
#[derive(Debug)]
pub struct Template {
    /// From the SPMC manifest's policy.
    pub config: TemplateConfig,
    /// The template's own partition manifest (instances take its ID range instead).
    pub partition: PartitionConfig,
    /// The pristine image (in the package BL2 loaded).
    pub image: Pa,
    /// Its length.
    pub image_len: u64,
    /// The manifest blob, for instances' boot information.
    pub manifest: Vec<u8>,
    /// Index of the next instance ID to try.
    next: u16,
}

/// Pages an instance of `config` needs (image or package, `mem-size`, boot
/// information, memory regions).
pub fn instance_pages(
    config: &PartitionConfig,
    image_len: u64,
    manifest_len: usize,
) -> Option<u64> {
    let bytes = crate::manager::MainLayout::of(config, image_len, manifest_len)?.len;
    let regions: u64 = config.memory.iter().map(|r| r.pages).sum();
    Some(bytes / PAGE_SIZE + regions)
}

impl<P: Platform> Spmc<P> {
    /// Keeps a template's package (index `t` of the policy's templates).
    #[inline(never)]
    pub(crate) fn add_template(
        &mut self,
        t: usize,
        partition: PartitionConfig,
        image: Pa,
        image_len: u64,
        manifest: Vec<u8>,
    ) -> Result<usize, SpError> {
        let config = self.config().policy.templates[t].clone();
        // The manifest parser checks the instance-ID range; a hand-built
        // policy is checked here: secure IDs only, not empty, last ID below
        // 0xFFFF, so the ID arithmetic of `create_instance` cannot wrap.
        if config.first_id & 0x8000 == 0
            || config.count == 0
            || config.first_id as u32 + config.count as u32 > 0xFFFF
        {
            return Err(SpError::Bad("instance-ids"));
        }
        let need =
            instance_pages(&partition, image_len, manifest.len()).ok_or(SpError::BadImage)?;
        if need > config.pages {
            return Err(SpError::OutOfMemory);
        }
        self.templates.push(Template {
            config,
            partition,
            image,
            image_len,
            manifest,
            next: 0,
        });
        Ok(self.templates.len() - 1)
    }

    /// The templates kept.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// The slot of `vm`'s instance of template `t`.
    pub fn instance_of(&self, t: usize, vm: VmId) -> Option<SlotId> {
        self.partitions
            .iter()
            .position(|p| {
                p.state != PartitionState::Free
                    && p.template == Some(t as u16)
                    && p.kind == Kind::Instance { owner: vm }
            })
            .map(|s| SlotId::new(s as u16))
    }

    /// A VM availability framework message from the normal world (§18.3).
    pub(crate) fn vm_availability(&mut self, regs: &mut Regs) -> Next {
        let (sender, receiver) = (ffa::sender(regs), ffa::receiver(regs));
        let kind = regs.w(2) & fwk::TYPE_MASK;
        // The acknowledgement has the width of the request.
        let wide = regs.func() == func::MSG_SEND_DIRECT_REQ_64;
        // w5[15:0] (x5[15:0] in the 64-bit form) is the VM ID; the rest of
        // the register is reserved (MBZ). A 32-bit message's x5[63:32] is
        // not part of it (SMCCC: ignored).
        let raw_vm = if wide { regs.x(5) } else { regs.w(5) as u64 };
        let vm = raw_vm as u16;
        let vm_id_ok = vm != 0 && raw_vm <= 0x7FFF;
        let ack = move |regs: &mut Regs, kind: u32, status: Result<(), FfaError>| {
            write_ack(regs, receiver, sender, kind, status, wide)
        };
        if sender != 0 {
            debug!(
                "VM availability message from endpoint {sender:#x}: only the hypervisor sends them"
            );
            return self.refuse_nwd(regs, FfaError::Denied);
        }
        let Some(t) = self
            .templates
            .iter()
            .position(|t| t.config.partition == receiver)
        else {
            return self.refuse_nwd(regs, FfaError::InvalidParameters);
        };
        match kind {
            fwk::VM_CREATED => {
                if !vm_id_ok {
                    return ack(regs, fwk::VM_CREATED_ACK, Err(FfaError::InvalidParameters));
                }
                match self.create_instance(t, VmId::new(vm), wide) {
                    Ok(v) => self.run_cold(v),
                    Err(e) => ack(regs, fwk::VM_CREATED_ACK, Err(e)),
                }
            }
            fwk::VM_DESTROYED => {
                if !vm_id_ok {
                    return ack(
                        regs,
                        fwk::VM_DESTROYED_ACK,
                        Err(FfaError::InvalidParameters),
                    );
                }
                let r = match self.instance_of(t, VmId::new(vm)) {
                    None => Err(FfaError::InvalidParameters),
                    Some(slot) => self.destroy_instance(slot),
                };
                if r.is_ok() {
                    // What the VM borrowed from static partitions goes back.
                    self.mem_vm_gone(vm);
                    // Its notification bitmaps and bindings go with its TEE.
                    self.notifications.forget(vm);
                }
                ack(regs, fwk::VM_DESTROYED_ACK, r)
            }
            _ => self.refuse_nwd(regs, FfaError::InvalidParameters),
        }
    }

    /// Makes `vm`'s instance of template `t` and returns its vCPU, ready to boot.
    fn create_instance(&mut self, t: usize, vm: VmId, wide: bool) -> Result<VcpuRef, FfaError> {
        if self.instance_of(t, vm).is_some() {
            return Err(FfaError::InvalidParameters);
        }
        let tpl = &self.templates[t];
        let count = tpl.config.count;
        let id = (0..count)
            .map(|i| tpl.config.first_id + (tpl.next + i) % count)
            .find(|id| self.slot_of(PartId::new(*id)).is_none())
            .ok_or(FfaError::NoMemory)?;
        // What an instance takes from the heap has a size the SPMC chose
        // (its template's manifest); checked before the first allocation, so
        // a full heap is NO_MEMORY, never a failed allocation.
        if !self
            .platform
            .heap_available(HEAP_PER_PARTITION + 2 * tpl.manifest.len())
        {
            return Err(FfaError::NoMemory);
        }
        let tpl = &mut self.templates[t];
        tpl.next = (id - tpl.config.first_id + 1) % count;
        let mut config = tpl.partition.clone();
        config.id = id;
        let (image, image_len, manifest) = (tpl.image, tpl.image_len, tpl.manifest.clone());
        let template_id = tpl.config.partition;
        let slot = self
            .create_partition(
                config,
                image,
                image_len,
                &manifest,
                Kind::Instance { owner: vm },
                Some(t as u16),
            )
            .map_err(|e| match e {
                SpError::OutOfMemory => FfaError::NoMemory,
                _ => FfaError::Aborted,
            })?;
        self.set_partition_state(slot, PartitionState::Running);
        let v = VcpuRef { slot, index: 0 };
        self.set_state(
            v,
            VcpuState::Running(RunReason::Create { template_id, wide }),
        )?;
        debug!("VM {vm}: instance {id:#06x} of template {template_id:#06x} made");
        Ok(v)
    }

    /// Stops and frees an instance; its memory goes back zeroed, its ID is retired.
    /// Refused with RETRY while one of its vCPUs is on a core.
    ///
    /// All of its vCPU locks are held (in index order) from the check to
    /// their removal, so no core's fast path takes one in between; the
    /// context of a vCPU this core still holds (the one whose exit led
    /// here: an instance that failed its creation) goes when the core
    /// releases it (`Contexts::release`), after its state is saved.
    pub(crate) fn destroy_instance(&mut self, slot: SlotId) -> Result<(), FfaError> {
        let p = &self.partitions[slot];
        let mut vcpus: Vec<_> = (0..p.vcpu_count)
            .map(|index| self.contexts.vcpu(VcpuRef { slot, index }))
            .collect();
        // A vCPU on a core, blocked on a call of its own, or preempted while
        // it owed another partition a response would leave someone waiting
        // for an answer from a partition that no longer exists: the
        // hypervisor retries once it is back in FFA_MSG_WAIT. A vCPU
        // preempted in a normal-world request is simply dropped; that
        // caller's FFA_RUN then gets INVALID_PARAMETERS.
        if vcpus.iter().any(|v| {
            matches!(
                v.state,
                VcpuState::Running(_)
                    | VcpuState::Blocked(_)
                    | VcpuState::Preempted(RunReason::Request(Caller::Vcpu { .. }), _)
            )
        }) {
            return Err(FfaError::Retry);
        }
        for g in &mut vcpus {
            if g.on_core {
                g.fast = 0;
                g.state = VcpuState::Aborted;
                g.freed = true;
            } else {
                *g.0 = None;
            }
        }
        drop(vcpus);
        let (id, vmid) = (p.id(), p.stage2.vmid());
        self.contexts.clear_index(id);
        self.mem_forget(slot, id.raw());
        self.notifications.forget(id.raw());
        let p = &mut self.partitions[slot];
        p.state = PartitionState::Free;
        p.vcpu_count = 0;
        p.buffers = None;
        p.console.clear();
        let memory = core::mem::take(&mut p.memory);
        // Dropping the tables frees them; then nothing of this VMID may stay cached.
        p.stage2 = Stage2::new(0);
        self.platform
            .invalidate_stage2(vmid, IpaSpace::Secure, Ipa(0), IPA_LIMIT);
        self.platform
            .invalidate_stage2(vmid, IpaSpace::NonSecure, Ipa(0), IPA_LIMIT);
        self.vmids.give_back(vmid);
        if let Some(pool) = self.pool.as_mut() {
            for (_, a) in memory {
                pool.free(a, &mut self.platform);
            }
        }
        self.partitions[slot].config.id = 0;
        debug!("instance {id:#06x} destroyed, memory zeroed");
        Ok(())
    }

    /// An instance finished booting (FFA_MSG_WAIT): acknowledge its VM created message.
    pub(crate) fn instance_ready(
        &mut self,
        template_id: PartitionId,
        wide: bool,
        regs: &mut Regs,
    ) -> Next {
        write_ack(regs, template_id, 0, fwk::VM_CREATED_ACK, Ok(()), wide)
    }

    /// An instance failed while booting: free it and acknowledge with ABORTED.
    pub(crate) fn instance_failed(
        &mut self,
        v: VcpuRef,
        template_id: PartitionId,
        wide: bool,
        regs: &mut Regs,
    ) -> Next {
        self.vcpu(v).state = VcpuState::Aborted;
        let _ = self.destroy_instance(v.slot);
        let status = Err(FfaError::Aborted);
        write_ack(regs, template_id, 0, fwk::VM_CREATED_ACK, status, wide)
    }
}

/// Writes the acknowledgement of a VM availability message (§18.3): a direct
/// response of the request's width from `from` to `to`, w2 the framework
/// message type `kind`, w3 0 or the FF-A error code.
fn write_ack(
    regs: &mut Regs,
    from: PartitionId,
    to: PartitionId,
    kind: u32,
    status: Result<(), FfaError>,
    wide: bool,
) -> Next {
    let f = if wide {
        func::MSG_SEND_DIRECT_RESP_64
    } else {
        func::MSG_SEND_DIRECT_RESP_32
    };
    let code = status.err().map_or(0, FfaError::as_u32);
    regs.0[..8].copy_from_slice(&[
        f as u64,
        ffa::endpoints(from, to),
        (fwk::FLAG | kind) as u64,
        code as u64,
        0,
        0,
        0,
        0,
    ]);
    Next::NormalWorld
}
