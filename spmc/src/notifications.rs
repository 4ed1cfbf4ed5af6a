//! FF-A notifications (DEN0077 v1.2 chapter 10; the ABIs in §13.12-§13.17
//! of the v1.2 ABI chapter: FFA_NOTIFICATION_BITMAP_CREATE/DESTROY, BIND,
//! UNBIND, SET, GET, INFO_GET).
//!
//! The SPMC keeps one bitmap set per receiver: for each partition that
//! declares `notification-support` (made when it is created), and for each
//! VM whose bitmap the normal world created (§10.2: the hypervisor for each
//! VM, or endpoint 0 for itself when there is none). A set holds, for each of
//! the 64 notification bits, the sender it is bound to and whether it is
//! per-vCPU (§10.4), the pending bits (global, and per vCPU), which of them
//! FFA_NOTIFICATION_INFO_GET already reported (§10.6), and the SPM framework
//! notifications pending (§10.5.1: bit 0, RX buffer full).
//!
//! The per-user rule (design §"The contract", 2): a VM's notifications can
//! only be bound to and set by partitions that VM may reach (its own TEE
//! instance, partitions statically bound to it, shared services; endpoint 0
//! reaches every static partition), and an instance's notifications only by
//! its own VM and partitions of its VM or shared ones. When a VM's TEE
//! instance is destroyed, the VM's bitmap goes with it and every binding of
//! the instance (and of the VM) is dropped with its pending bits.
//!
//! The schedule receiver interrupt (SRI, DEN0077 v1.2 chapter 10): when a notification (or the
//! SPM framework notification "RX buffer full") becomes pending for a
//! normal-world receiver, the core asks the platform to raise the SRI on the
//! core the sender runs on ([`Platform::send_sri`]), at once, or, when the
//! sender set the "delay SRI" flag, when that core next returns to the normal
//! world ([`Spmc::sri_on_return`]), as Hafnium does. Not implemented: the
//! notification pending interrupt is not injected into partitions (it needs
//! the GIC's virtual interface, issue 12 item 2); partitions poll with
//! FFA_NOTIFICATION_GET. See docs/notifications.md.

use log::debug;

use crate::ffa::{FfaError, PartitionId, Regs, func, is_secure_id};
use crate::ids::{PartId, VmId};
use crate::manager::{Endpoint, Spmc};
use crate::mem::store::ChunkVec;
use crate::partition::PartitionState;
use crate::platform::Platform;

/// Most vCPUs a bitmap tracks per-vCPU notifications for (a partition's
/// execution contexts are bounded the same way).
pub const MAX_VCPUS: usize = crate::sp_manifest::MAX_EXECUTION_CONTEXTS as usize;
/// Most bitmaps the normal world may create (one per VM): what it controls
/// is bounded, and each is allocated fallibly.
pub const MAX_VM_BITMAPS: usize = 64;

/// The schedule receiver interrupt (feature ID 2, §13.3.2): a non-secure
/// SGI, the number Hafnium uses (`HF_SCHEDULE_RECEIVER_INTID`, 8).
pub const SRI_INTID: u32 = 8;

/// SPM framework notification bit 0: the receiver's RX buffer is full (§10.5.1).
pub const FWK_RX_FULL: u32 = 1 << 0;

/// FFA_NOTIFICATION_BIND/SET flag bit 0: per-vCPU notifications.
const PER_VCPU: u32 = 1 << 0;
/// FFA_NOTIFICATION_SET flag bit 1: delay the schedule receiver interrupt.
const DELAY_SRI: u32 = 1 << 1;
/// FFA_NOTIFICATION_GET flags (§13.16): which bitmaps to get.
const GET_SP: u32 = 1 << 0;
const GET_VM: u32 = 1 << 1;
const GET_SPM: u32 = 1 << 2;
const GET_HYP: u32 = 1 << 3;

/// The notification state of one receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bitmap {
    /// The receiver.
    pub owner: PartitionId,
    /// Its vCPU count (per-vCPU notifications name a vCPU below it).
    pub vcpus: u16,
    /// Bound bits.
    bound: u64,
    /// Of the bound bits, the per-vCPU ones.
    per_vcpu: u64,
    /// The sender each bound bit is bound to.
    senders: [PartitionId; 64],
    /// Pending global notifications.
    pending: u64,
    /// Pending per-vCPU notifications, by vCPU.
    pending_vcpu: [u64; MAX_VCPUS],
    /// Pending bits FFA_NOTIFICATION_INFO_GET already reported (global).
    reported: u64,
    /// The same, per vCPU.
    reported_vcpu: [u64; MAX_VCPUS],
    /// Pending SPM framework notifications.
    framework: u32,
    /// The framework notifications were reported by INFO_GET.
    framework_reported: bool,
}

impl Bitmap {
    /// A fresh, empty bitmap set for `owner` with `vcpus` vCPUs.
    pub fn new(owner: PartitionId, vcpus: u16) -> Self {
        Self {
            owner,
            vcpus,
            bound: 0,
            per_vcpu: 0,
            senders: [0; 64],
            pending: 0,
            pending_vcpu: [0; MAX_VCPUS],
            reported: 0,
            reported_vcpu: [0; MAX_VCPUS],
            framework: 0,
            framework_reported: false,
        }
    }

    /// Bits of `mask` bound to `sender`.
    fn bound_to(&self, sender: PartitionId, mask: u64) -> u64 {
        let mut out = 0;
        for bit in 0..64 {
            if mask & self.bound & (1 << bit) != 0 && self.senders[bit] == sender {
                out |= 1 << bit;
            }
        }
        out
    }

    /// Any notification (or framework notification) pending.
    pub fn any_pending(&self) -> bool {
        self.pending != 0 || self.pending_vcpu.iter().any(|p| *p != 0) || self.framework != 0
    }

    /// Drops the bindings (and pending bits) of `mask`.
    fn unbind(&mut self, mask: u64) {
        self.bound &= !mask;
        self.per_vcpu &= !mask;
        self.pending &= !mask;
        self.reported &= !mask;
        for v in 0..MAX_VCPUS {
            self.pending_vcpu[v] &= !mask;
            self.reported_vcpu[v] &= !mask;
        }
        for bit in 0..64 {
            if mask & (1 << bit) != 0 {
                self.senders[bit] = 0;
            }
        }
    }

    /// Drops every binding of `sender` with its pending bits.
    pub fn drop_sender(&mut self, sender: PartitionId) {
        let mask = self.bound_to(sender, !0);
        self.unbind(mask);
    }

    /// Of `mask`, the bits whose sender is a partition.
    fn sent_by_partitions(&self, mask: u64) -> u64 {
        let mut out = 0;
        for bit in 0..64 {
            if mask & (1 << bit) != 0 && is_secure_id(self.senders[bit]) {
                out |= 1 << bit;
            }
        }
        out
    }
}

/// The notification bitmaps the SPMC keeps.
#[derive(Debug, Default)]
pub struct Notifications {
    bitmaps: ChunkVec<Bitmap>,
    /// Cores (bit n: core n) owing the normal world a delayed schedule
    /// receiver interrupt, sent when the core returns to it.
    sri_delayed: u64,
}

impl Notifications {
    fn find(&self, owner: PartitionId) -> Option<usize> {
        self.bitmaps.iter().position(|b| b.owner == owner)
    }

    /// The bitmap of `owner`, if any.
    pub fn get(&self, owner: PartitionId) -> Option<Bitmap> {
        self.find(owner).and_then(|i| self.bitmaps.get(i))
    }

    fn get_mut(&mut self, owner: PartitionId) -> Option<&mut Bitmap> {
        let i = self.find(owner)?;
        self.bitmaps.get_mut(i)
    }

    /// Number of normal-world bitmaps.
    fn vm_count(&self) -> usize {
        self.bitmaps
            .iter()
            .filter(|b| !is_secure_id(b.owner))
            .count()
    }

    /// Adds an empty bitmap for `owner` (NO_MEMORY, nothing changed, when
    /// the heap has no room).
    pub fn create(&mut self, owner: PartitionId, vcpus: u16) -> Result<(), FfaError> {
        self.bitmaps.try_push(Bitmap::new(owner, vcpus))
    }

    /// Removes `owner`'s bitmap and every binding `owner` has as a sender.
    pub fn forget(&mut self, owner: PartitionId) {
        self.bitmaps.retain(|b| b.owner != owner);
        for i in 0..self.bitmaps.len() {
            if let Some(b) = self.bitmaps.get_mut(i) {
                b.drop_sender(owner);
            }
        }
    }

    /// Sets the SPM framework notification `bits` for `owner`, if it has a
    /// bitmap (§10.5.1); says whether it has one.
    pub fn set_framework(&mut self, owner: PartitionId, bits: u32) -> bool {
        match self.get_mut(owner) {
            Some(b) => {
                b.framework |= bits;
                b.framework_reported = false;
                true
            }
            None => false,
        }
    }
}

impl<P: Platform> Spmc<P> {
    /// A notification became pending for the normal-world receiver
    /// `receiver`: the schedule receiver interrupt goes to the normal world
    /// on this core (chapter 10; Hafnium sends it to the core the sender runs
    /// on), now, or when this core returns to the normal world if `delay`
    /// (FFA_NOTIFICATION_SET and FFA_MSG_SEND2 flag bit 1). Receivers in the
    /// secure world get none: their scheduler is the normal world's caller,
    /// who learns of them through FFA_NOTIFICATION_INFO_GET.
    pub(crate) fn notify_scheduler(&mut self, receiver: PartitionId, delay: bool) {
        if is_secure_id(receiver) {
            return;
        }
        let core = self.platform.core_index();
        if delay && core < 64 {
            self.notifications.sri_delayed |= 1 << core;
            // The fast path would return to the normal world without it.
            self.contexts
                .set_attention(crate::contexts::Attention::SriDelayed, true);
        } else {
            self.platform.send_sri();
        }
    }

    /// The platform calls this when this core's next step is the normal
    /// world (`Next::NormalWorld`): a schedule receiver interrupt delayed on
    /// this core is sent now (the "delay SRI" flag of §13.16 and §15.6). Costs one bit
    /// test when there is none.
    #[inline(always)]
    pub fn sri_on_return(&mut self) {
        if self.notifications.sri_delayed != 0 {
            let bit = 1u64
                .checked_shl(self.platform.core_index() as u32)
                .unwrap_or(0);
            if self.notifications.sri_delayed & bit != 0 {
                self.notifications.sri_delayed &= !bit;
                self.platform.send_sri();
                if self.notifications.sri_delayed == 0 {
                    self.contexts
                        .set_attention(crate::contexts::Attention::SriDelayed, false);
                }
            }
        }
    }
}

impl<P: Platform> Spmc<P> {
    /// Calls of the notification ABIs (chapter 10), from either instance.
    pub(crate) fn notification_call(
        &mut self,
        from: Endpoint,
        args: &Regs,
    ) -> Result<Regs, FfaError> {
        match args.func() {
            func::NOTIFICATION_BITMAP_CREATE => self.ntf_bitmap_create(from, args),
            func::NOTIFICATION_BITMAP_DESTROY => self.ntf_bitmap_destroy(from, args),
            func::NOTIFICATION_BIND => self.ntf_bind(from, args),
            func::NOTIFICATION_UNBIND => self.ntf_unbind(from, args),
            func::NOTIFICATION_SET => self.ntf_set(from, args),
            func::NOTIFICATION_GET => self.ntf_get(from, args),
            func::NOTIFICATION_INFO_GET_32 | func::NOTIFICATION_INFO_GET_64 => {
                self.ntf_info_get(from, args)
            }
            _ => Err(FfaError::NotSupported),
        }
    }

    /// FFA_NOTIFICATION_BITMAP_CREATE (§13.12): w1[15:0] the VM, w2 its vCPU
    /// count. Only the normal world calls it (a partition: NOT_SUPPORTED);
    /// a bitmap that exists already is DENIED (as Hafnium answers).
    fn ntf_bitmap_create(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        if !matches!(from, Endpoint::NormalWorld(_)) {
            return Err(FfaError::NotSupported);
        }
        let (w1, vcpus) = (args.w(1), args.w(2));
        if w1 > 0x7FFF || vcpus == 0 || vcpus as usize > MAX_VCPUS {
            debug!("NOTIFICATION_BITMAP_CREATE({w1:#x}, {vcpus}): not a VM ID or vCPU count");
            return Err(FfaError::InvalidParameters);
        }
        let vm = w1 as PartitionId;
        if self.notifications.find(vm).is_some() {
            return Err(FfaError::Denied);
        }
        if self.notifications.vm_count() >= MAX_VM_BITMAPS {
            return Err(FfaError::NoMemory);
        }
        self.notifications.create(vm, vcpus as u16)?;
        Ok(Regs::success32(0))
    }

    /// FFA_NOTIFICATION_BITMAP_DESTROY (§13.13): w1[15:0] the VM. A bitmap
    /// that does not exist, or that has notifications pending, is DENIED
    /// (Hafnium's answers); bindings the VM has as a sender go too.
    fn ntf_bitmap_destroy(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        if !matches!(from, Endpoint::NormalWorld(_)) {
            return Err(FfaError::NotSupported);
        }
        let w1 = args.w(1);
        if w1 > 0x7FFF {
            return Err(FfaError::InvalidParameters);
        }
        let vm = w1 as PartitionId;
        match self.notifications.get(vm) {
            None => Err(FfaError::Denied),
            Some(b) if b.any_pending() => Err(FfaError::Denied),
            Some(_) => {
                self.notifications.forget(vm);
                Ok(Regs::success32(0))
            }
        }
    }

    /// May `a` and `b` (a sender and a receiver, either way round) notify
    /// each other under the per-user rule? `None` when an ID names nothing.
    fn ntf_may_pair(&self, a: PartitionId, b: PartitionId) -> Result<(), FfaError> {
        let kind = |id: PartitionId| -> Result<Option<crate::policy::Kind>, FfaError> {
            if !is_secure_id(id) {
                return Ok(None);
            }
            let slot = self
                .slot_of(PartId::new(id))
                .ok_or(FfaError::InvalidParameters)?;
            Ok(Some(self.partitions[slot].kind))
        };
        let (ka, kb) = (kind(a)?, kind(b)?);
        let ok = match (ka, kb) {
            // Between VMs the hypervisor delivers, not the SPMC.
            (None, None) => return Err(FfaError::InvalidParameters),
            (None, Some(_)) => self.vm_may_notify(a, b),
            (Some(_), None) => self.vm_may_notify(b, a),
            (Some(x), Some(y)) => {
                let shared = |id| self.config().policy.shared.contains(&id);
                use crate::policy::Kind::Instance;
                let fits = |k, other_k, other| match k {
                    Instance { owner } => {
                        other_k == (Instance { owner })
                            || (other_k == crate::policy::Kind::Static && shared(other))
                    }
                    crate::policy::Kind::Static => true,
                };
                fits(x, y, b) && fits(y, x, a)
            }
        };
        if ok { Ok(()) } else { Err(FfaError::Denied) }
    }

    /// May VM `vm` and partition `sp` notify each other: `vm` may reach `sp`.
    fn vm_may_notify(&self, vm: PartitionId, sp: PartitionId) -> bool {
        self.slot_of(PartId::new(sp))
            .is_some_and(|s| self.vm_may_reach(VmId::new(vm), &self.partitions[s]))
    }

    /// The receiver a bind, unbind or get names, checked against the
    /// caller: a partition names itself; the normal world names a VM.
    fn ntf_receiver(&self, from: Endpoint, receiver: PartitionId) -> Result<(), FfaError> {
        let ok = match from {
            Endpoint::Partition(s) => self.partitions[s].id() == receiver,
            Endpoint::NormalWorld(_) => !is_secure_id(receiver),
        };
        if ok {
            Ok(())
        } else {
            Err(FfaError::InvalidParameters)
        }
    }

    /// The bitmap of `receiver`: a partition without `notification-support`
    /// is NOT_SUPPORTED, a VM without a bitmap INVALID_PARAMETERS (Hafnium's
    /// answers).
    fn ntf_bitmap(&self, receiver: PartitionId) -> Result<Bitmap, FfaError> {
        self.notifications
            .get(receiver)
            .ok_or(if is_secure_id(receiver) {
                FfaError::NotSupported
            } else {
                FfaError::InvalidParameters
            })
    }

    /// FFA_NOTIFICATION_BIND (§13.14): the receiver (w1[15:0]) lets the
    /// sender (w1[31:16]) signal the notifications in w3 (low) and w4
    /// (high); w2 bit 0: they are per-vCPU, bits [31:1] MBZ. A bit bound
    /// already (to any sender) is DENIED; per-vCPU notifications on a
    /// receiver with one vCPU are INVALID_PARAMETERS.
    fn ntf_bind(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let (sender, receiver) = ((args.w(1) >> 16) as u16, args.w(1) as u16);
        let flags = args.w(2);
        let mask = args.w(3) as u64 | (args.w(4) as u64) << 32;
        self.ntf_receiver(from, receiver)?;
        if flags & !PER_VCPU != 0 || mask == 0 || sender == receiver {
            return Err(FfaError::InvalidParameters);
        }
        let b = self.ntf_bitmap(receiver)?;
        self.ntf_may_pair(sender, receiver)?;
        let per_vcpu = flags & PER_VCPU != 0;
        if per_vcpu && b.vcpus <= 1 {
            return Err(FfaError::InvalidParameters);
        }
        if b.bound & mask != 0 {
            debug!("NOTIFICATION_BIND {mask:#x} for {receiver:#x}: bound already");
            return Err(FfaError::Denied);
        }
        let b = self
            .notifications
            .get_mut(receiver)
            .ok_or(FfaError::InvalidParameters)?;
        b.bound |= mask;
        if per_vcpu {
            b.per_vcpu |= mask;
        }
        for bit in 0..64 {
            if mask & (1 << bit) != 0 {
                b.senders[bit] = sender;
            }
        }
        Ok(Regs::success32(0))
    }

    /// FFA_NOTIFICATION_UNBIND (§13.15): w2 MBZ; every bit must be bound to
    /// the sender named (else DENIED). Pending bits of what is unbound are
    /// dropped.
    fn ntf_unbind(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let (sender, receiver) = ((args.w(1) >> 16) as u16, args.w(1) as u16);
        let mask = args.w(3) as u64 | (args.w(4) as u64) << 32;
        self.ntf_receiver(from, receiver)?;
        if args.w(2) != 0 || mask == 0 || sender == receiver {
            return Err(FfaError::InvalidParameters);
        }
        let b = self.ntf_bitmap(receiver)?;
        if b.bound_to(sender, mask) != mask {
            return Err(FfaError::Denied);
        }
        if let Some(b) = self.notifications.get_mut(receiver) {
            b.unbind(mask);
        }
        Ok(Regs::success32(0))
    }

    /// FFA_NOTIFICATION_SET (§13.16): the sender (w1[31:16], the caller or
    /// a VM the normal world names) signals w3/w4 to the receiver
    /// (w1[15:0]). w2: bit 0 per-vCPU, bit 1 delay the schedule receiver
    /// interrupt, bits [15:2] MBZ, bits [31:16] the vCPU (0 unless
    /// per-vCPU). Each bit must be bound to this sender with the same
    /// per-vCPU type (else DENIED).
    fn ntf_set(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let (sender, receiver) = ((args.w(1) >> 16) as u16, args.w(1) as u16);
        let flags = args.w(2);
        let vcpu = (flags >> 16) as usize;
        let mask = args.w(3) as u64 | (args.w(4) as u64) << 32;
        let sender_ok = match from {
            Endpoint::Partition(s) => self.partitions[s].id() == sender,
            // The normal world signals partitions, for a VM.
            Endpoint::NormalWorld(_) => !is_secure_id(sender) && is_secure_id(receiver),
        };
        let per_vcpu = flags & PER_VCPU != 0;
        if !sender_ok
            || flags & 0xFFFF & !(PER_VCPU | DELAY_SRI) != 0
            || (!per_vcpu && vcpu != 0)
            || mask == 0
            || sender == receiver
        {
            return Err(FfaError::InvalidParameters);
        }
        let b = self.ntf_bitmap(receiver)?;
        self.ntf_may_pair(sender, receiver)?;
        if is_secure_id(receiver) {
            let slot = self
                .slot_of(PartId::new(receiver))
                .ok_or(FfaError::InvalidParameters)?;
            if self.partitions[slot].state == PartitionState::Aborted {
                return Err(FfaError::Aborted);
            }
        }
        if per_vcpu && vcpu >= b.vcpus as usize {
            return Err(FfaError::InvalidParameters);
        }
        let type_mask = if per_vcpu { b.per_vcpu } else { !b.per_vcpu };
        if b.bound_to(sender, mask) & type_mask != mask {
            debug!("NOTIFICATION_SET {mask:#x} {sender:#x} -> {receiver:#x}: not bound so");
            return Err(FfaError::Denied);
        }
        let b = self
            .notifications
            .get_mut(receiver)
            .ok_or(FfaError::InvalidParameters)?;
        if per_vcpu {
            b.pending_vcpu[vcpu] |= mask;
            b.reported_vcpu[vcpu] &= !mask;
        } else {
            b.pending |= mask;
            b.reported &= !mask;
        }
        self.notify_scheduler(receiver, flags & DELAY_SRI != 0);
        Ok(Regs::success32(0))
    }

    /// FFA_NOTIFICATION_GET (§13.17): w1[15:0] the receiver, w1[31:16] its
    /// vCPU; w2 which bitmaps (bit 0 from partitions, bit 1 from VMs, bit 2
    /// SPM framework, bit 3 hypervisor framework; bits [31:4] MBZ). Returns
    /// them (w2/w3 from partitions, w4/w5 from VMs, w6 SPM framework, w7
    /// hypervisor framework) and clears what it returns: the global bits
    /// and the vCPU's per-vCPU bits. A partition's vCPU is the context of
    /// the core it runs on. VM-to-VM and hypervisor framework notifications
    /// are the hypervisor's: their bitmaps are 0 here.
    fn ntf_get(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let (vcpu, receiver) = ((args.w(1) >> 16) as usize, args.w(1) as u16);
        let flags = args.w(2);
        self.ntf_receiver(from, receiver)?;
        if flags & !(GET_SP | GET_VM | GET_SPM | GET_HYP) != 0 {
            return Err(FfaError::InvalidParameters);
        }
        let b = self.ntf_bitmap(receiver)?;
        if vcpu >= b.vcpus as usize {
            return Err(FfaError::InvalidParameters);
        }
        if let Endpoint::Partition(s) = from {
            let own = self.partitions[s].context_for(self.platform.core_index());
            if vcpu != own {
                return Err(FfaError::InvalidParameters);
            }
        }
        let b = self
            .notifications
            .get_mut(receiver)
            .ok_or(FfaError::InvalidParameters)?;
        let pending = b.pending | b.pending_vcpu[vcpu];
        let from_sp = b.sent_by_partitions(pending);
        let from_vm = if is_secure_id(receiver) {
            pending & !from_sp
        } else {
            0
        };
        let mut take = 0;
        let mut out = Regs::success32(0);
        if flags & GET_SP != 0 {
            take |= from_sp;
            out.0[2] = from_sp & 0xFFFF_FFFF;
            out.0[3] = from_sp >> 32;
        }
        if flags & GET_VM != 0 {
            take |= from_vm;
            out.0[4] = from_vm & 0xFFFF_FFFF;
            out.0[5] = from_vm >> 32;
        }
        if flags & GET_SPM != 0 {
            out.0[6] = b.framework as u64;
            b.framework = 0;
        }
        b.pending &= !take;
        b.pending_vcpu[vcpu] &= !take;
        Ok(out)
    }

    /// FFA_NOTIFICATION_INFO_GET (§13.18, 32 and 64-bit): the endpoints
    /// (and, for per-vCPU notifications, their vCPUs) with notifications
    /// pending that no earlier call reported, for the normal world to run
    /// or get. w2: bit 0 more pending (they did not fit), bits [11:7] the
    /// number of lists, then two bits per list from bit 12: how many vCPU
    /// IDs follow the endpoint ID. The IDs are 16-bit, packed from x3/w3
    /// (at most 20 in the 64-bit form, 10 in the 32-bit one). Nothing to
    /// report: NO_DATA. Only the normal world calls it.
    fn ntf_info_get(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        if !matches!(from, Endpoint::NormalWorld(_)) {
            return Err(FfaError::NotSupported);
        }
        let wide = args.func() == func::NOTIFICATION_INFO_GET_64;
        let max_ids = if wide { 20 } else { 10 };
        let mut ids = [0u16; 20];
        let mut n_ids = 0;
        let mut lists = 0usize;
        let mut counts: u64 = 0;
        let mut more = false;
        for i in 0..self.notifications.bitmaps.len() {
            let Some(b) = self.notifications.bitmaps.get_mut(i) else {
                break;
            };
            let global =
                b.pending & !b.reported != 0 || (b.framework != 0 && !b.framework_reported);
            let vcpus = (0..b.vcpus as usize)
                .filter(|&v| b.pending_vcpu[v] & !b.reported_vcpu[v] != 0)
                .count();
            if !global && vcpus == 0 {
                continue;
            }
            let mut next_vcpu = 0usize;
            let mut global_left = global;
            // One list for the endpoint, up to three vCPUs each, as many
            // lists as its per-vCPU notifications need.
            while global_left || next_vcpu < b.vcpus as usize {
                let mut list = [0u16; 3];
                let mut in_list = 0;
                let mut v = next_vcpu;
                while v < b.vcpus as usize && in_list < 3 {
                    if b.pending_vcpu[v] & !b.reported_vcpu[v] != 0 {
                        list[in_list] = v as u16;
                        in_list += 1;
                    }
                    v += 1;
                }
                if in_list == 0 && !global_left {
                    break;
                }
                if lists == 31 || n_ids + 1 + in_list > max_ids || (!wide && lists == 10) {
                    more = true;
                    break;
                }
                ids[n_ids] = b.owner;
                ids[n_ids + 1..n_ids + 1 + in_list].copy_from_slice(&list[..in_list]);
                n_ids += 1 + in_list;
                counts |= (in_list as u64) << (2 * lists);
                lists += 1;
                for &vc in &list[..in_list] {
                    b.reported_vcpu[vc as usize] |= b.pending_vcpu[vc as usize];
                }
                if global_left {
                    b.reported |= b.pending;
                    if b.framework != 0 {
                        b.framework_reported = true;
                    }
                    global_left = false;
                }
                next_vcpu = v;
            }
            if more {
                break;
            }
        }
        if lists == 0 {
            return Err(FfaError::NoData);
        }
        let mut out = Regs::with_func(if wide {
            func::SUCCESS_64
        } else {
            func::SUCCESS_32
        });
        out.0[2] = more as u64 | (lists as u64) << 7 | counts << 12;
        let per_reg = if wide { 4 } else { 2 };
        for (k, id) in ids[..n_ids].iter().enumerate() {
            out.0[3 + k / per_reg] |= (*id as u64) << (16 * (k % per_reg));
        }
        Ok(out)
    }
}
