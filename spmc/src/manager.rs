//! The partition manager: what the SPMC keeps and the entry points through
//! which every event reaches it.
//!
//! - [`Spmc::handle_spmd`]: a call from the SPMD (the normal world, or the
//!   SPMD's own framework messages), with its registers.
//! - [`Spmc::handle_exit`]: a partition's vCPU stopped (an FF-A call, an
//!   interrupt or a fault).
//! - [`Spmc::boot`]: start the partitions in boot order.
//!
//! Each returns a [`Next`]: go back to the normal world with the answer in
//! the caller's register block, or run a vCPU. Handlers return
//! `Result<Regs, FfaError>`; errors become registers in one place per
//! instance ([`Spmc::finish_nwd`], [`Spmc::finish_sp`]).
//!
//! Locks (the one order, also in docs/architecture.md "Locks"): the
//! platform keeps the `Spmc` behind one *manager lock*, and every vCPU
//! behind a lock of its own in [`crate::contexts::Contexts`], which the
//! manager shares with the platform. Order: the manager lock, then vCPU
//! locks; a core that holds a vCPU lock takes no other lock (destroying an
//! instance takes all of its vCPU locks, in index order). A normal-world
//! direct request to the core's own context and that context's direct
//! response take only that vCPU's lock ([`crate::contexts::Contexts::direct_request`]);
//! every other call takes the manager lock. No lock is held while a
//! partition runs: a vCPU a core runs is *on that core*
//! ([`crate::partition::Vcpu::on_core`]) and nobody else touches its
//! context until the core releases it after its exit.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use log::{debug, info, warn};

use crate::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa, round_up_pages};
use crate::contexts::{Contexts, VcpuGuard};
use crate::features::Instance;
use crate::ffa::{self, FfaError, PartitionId, Regs, Version, func, fwk};
use crate::ids::{PartId, SlotId, VmId};
use crate::manifest::SpmcConfig;
use crate::partition::{NwdEndpoint, Partition, PartitionState, Partitions, Vcpu};
use crate::platform::Platform;
use crate::pool::{Allocation, Pool};
use crate::sp_manifest::{self, Access, PACKAGE_HEADER_SIZE, PartitionConfig, SpError};
use crate::stage2::{Kind, Stage2};
use crate::text::{Hex, Text, hex};
use crate::vcpu::{Context, Exit, Fault, RunReason, VcpuRef, VcpuState, injection};

/// What the platform layer does next.
#[derive(Debug)]
pub enum Next {
    /// Return to the SPMD: the answer is in the register block it passed in.
    NormalWorld,
    /// Run this vCPU. The context stays valid and untouched by the manager
    /// until the platform reports the exit with [`Spmc::handle_exit`].
    Run {
        /// Which vCPU.
        vcpu: VcpuRef,
        /// Its context.
        ctx: *mut Context,
    },
}

/// What a core does with the EL1 and FP/SIMD registers it may hold lazily
/// for a vCPU (`arch_aarch64::vcpu`), after [`Spmc::handle_exit`] of that
/// vCPU returned a [`Next`]: the state hand-off between cores
/// (docs/architecture.md, "State hand-off between cores"). The platform
/// acts on it before it releases the core lock, so whenever the lock is
/// free every vCPU that is not running has its complete state in its
/// context. One function decides it, [`Next::lazy_state_after`], used by
/// the firmware and by the host tests that check the protocol across
/// interleavings of cores (`spmc/tests/interleavings.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LazyState {
    /// The same vCPU goes on running on this core: its state may stay live.
    KeepLive,
    /// Another vCPU runs next on this core: the exited one's state goes
    /// into its context now (`arch_aarch64::vcpu::hand_off`), since another
    /// core may pick it (or the manager free it) once the lock is free.
    HandOff,
    /// The core answers the normal world: the normal world's state goes
    /// back into the hardware, every partition's into its context
    /// (`arch_aarch64::vcpu::return_to_normal_world`).
    ToNormalWorld,
}

impl Next {
    /// What happens to `exited`'s lazily held state when the core goes on
    /// with `self` (see [`LazyState`]).
    #[inline(always)]
    pub fn lazy_state_after(&self, exited: VcpuRef) -> LazyState {
        match self {
            Next::Run { vcpu, .. } if *vcpu == exited => LazyState::KeepLive,
            Next::Run { .. } => LazyState::HandOff,
            Next::NormalWorld => LazyState::ToNormalWorld,
        }
    }
}

/// Who made a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A normal-world endpoint with this ID.
    NormalWorld(VmId),
    /// The partition in this slot.
    Partition(SlotId),
}

/// What a partition package turned out to be.
enum Loaded {
    /// A partition, in this slot.
    Partition(SlotId),
    /// A template, at this index.
    Template(usize),
}

/// Most bytes a partition manifest may have.
const MAX_MANIFEST: u32 = 64 * 1024;
/// Heap a partition's bookkeeping may take (stage-2 tables, contexts): a new
/// partition is refused, not half built, when the heap has less.
pub(crate) const HEAP_PER_PARTITION: usize = 32 * 1024;
/// Size of the boot information header and its one descriptor (§5.4.1).
const BOOT_INFO_HEADER: u64 = 64;

/// The SPMC core.
#[derive(Debug)]
pub struct Spmc<P: Platform> {
    pub(crate) platform: P,
    config: SpmcConfig,
    pub(crate) pool: Option<Pool>,
    /// The partition table (slots, `crate::partition::Partitions`).
    pub(crate) partitions: Partitions,
    pub(crate) nwd: Vec<NwdEndpoint>,
    /// Templates instances are made from (`policy.templates`, once loaded).
    pub(crate) templates: Vec<crate::vtee::Template>,
    /// The stage-2 VMIDs, given out and taken back (`stage2::Vmids`).
    pub(crate) vmids: crate::stage2::Vmids,
    /// Memory sharing: transactions, donations, fragments in flight.
    pub(crate) mem: crate::mem::MemState,
    /// Notification bitmaps of partitions and VMs (spmc::notifications).
    pub(crate) notifications: crate::notifications::Notifications,
    /// Secure interrupts and their owners (spmc::interrupts).
    pub(crate) interrupts: crate::interrupts::Interrupts,
    pub(crate) boot_order: Vec<SlotId>,
    /// The vCPUs, each behind its own lock, shared with the platform's
    /// fast path (and the index from IDs to slots).
    pub(crate) contexts: Arc<Contexts>,
    boot_pos: usize,
    pub(crate) booted: bool,
}

impl<P: Platform> Spmc<P> {
    /// Builds the manager from a validated configuration. Zeroes the secure pool.
    #[inline(never)]
    pub fn new(config: SpmcConfig, mut platform: P) -> Self {
        info!(
            "SPMC id {:#06x}, FF-A v{}, {} partition package(s) declared",
            config.spmc_id,
            config.version,
            config.partitions.len()
        );
        let pool = config
            .secure_memory
            .and_then(|r| match Pool::new(r, &mut platform) {
                Ok(p) => Some(p),
                Err(e) => {
                    log::error!(
                        "secure pool {}+{} unusable: {e:?}",
                        Hex(r.base),
                        Hex(r.size)
                    );
                    None
                }
            });
        Self {
            platform,
            config,
            pool,
            partitions: Partitions::new(),
            nwd: Vec::new(),
            templates: Vec::new(),
            vmids: Default::default(),
            mem: Default::default(),
            notifications: Default::default(),
            interrupts: Default::default(),
            boot_order: Vec::new(),
            contexts: Arc::new(Contexts::new()),
            boot_pos: 0,
            booted: false,
        }
    }

    /// The vCPUs and the fast path, for the platform to share (the fast
    /// path runs without the manager lock).
    pub fn contexts(&self) -> &Arc<Contexts> {
        &self.contexts
    }

    /// The configuration.
    pub fn config(&self) -> &SpmcConfig {
        &self.config
    }

    /// The SPMC's endpoint ID.
    pub fn id(&self) -> PartitionId {
        self.config.spmc_id
    }

    /// The platform (for tests and diagnostics).
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The platform, mutably (tests use it to play the normal world's memory).
    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// The partitions.
    pub fn partitions(&self) -> &[Partition] {
        self.partitions.as_slice()
    }

    /// The partition in `slot`.
    pub fn partition(&self, slot: SlotId) -> &Partition {
        &self.partitions[slot]
    }

    /// The secure pool.
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref()
    }

    /// The normal-world endpoint `id`, if it ever called.
    pub fn normal_world(&self, id: PartitionId) -> Option<&NwdEndpoint> {
        self.nwd.iter().find(|e| e.id == id)
    }

    pub(crate) fn nwd_mut(&mut self, id: PartitionId) -> &mut NwdEndpoint {
        match self.nwd.iter().position(|e| e.id == id) {
            Some(i) => &mut self.nwd[i],
            None => {
                self.nwd.push(NwdEndpoint::new(id));
                let last = self.nwd.len() - 1;
                &mut self.nwd[last]
            }
        }
    }

    /// The slot of the partition with endpoint ID `id`.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub fn slot_of(&self, id: PartId) -> Option<SlotId> {
        // Fast path: IDs 0x8000-0x83FF through the index (checked, so a stale
        // entry can only miss, never name the wrong partition).
        if let Some(slot) = self.contexts.indexed_slot(id)
            && self.partitions.get(slot).is_some_and(|p| p.id() == id)
        {
            return Some(slot);
        }
        self.partitions.find(id)
    }

    /// The FF-A version an endpoint's calls are answered in.
    pub(crate) fn version_of(&self, ep: Endpoint) -> Version {
        match ep {
            Endpoint::NormalWorld(id) => self.nwd_version(id.raw()),
            Endpoint::Partition(s) => self.partitions[s].version,
        }
    }

    /// The version normal-world endpoint `id` is answered in: its own
    /// negotiated one; for a VM that never negotiated (FFA_VERSION reaches the
    /// SPMC only from the hypervisor, through the SPMD), the hypervisor's
    /// (endpoint 0); v1.0 when nobody negotiated.
    pub(crate) fn nwd_version(&self, id: PartitionId) -> Version {
        let own = |id| self.normal_world(id).and_then(|e: &NwdEndpoint| e.version);
        own(id).or_else(|| own(0)).unwrap_or(Version::V1_0)
    }

    /// The endpoint ID of a caller.
    pub(crate) fn id_of(&self, ep: Endpoint) -> PartitionId {
        match ep {
            Endpoint::NormalWorld(id) => id.raw(),
            Endpoint::Partition(s) => self.partitions[s].id().raw(),
        }
    }

    // ------------------------------------------------------------------
    // Loading and booting
    // ------------------------------------------------------------------

    /// Loads every partition package the manifest lists. A partition that
    /// cannot be loaded is refused with one log line; the others load.
    #[inline(never)]
    pub fn load_partitions(&mut self) {
        let entries = self.config.partitions.clone();
        for entry in &entries {
            match self.load_package(Pa(entry.package), &entry.name) {
                Ok(Loaded::Template(t)) => {
                    let t = &self.templates[t];
                    info!(
                        "template {:#06x} `{}` kept: instances {:#06x}.., up to {}, {} pages each",
                        t.config.partition,
                        t.partition.name,
                        t.config.first_id,
                        t.config.count,
                        t.config.pages
                    );
                }
                Ok(Loaded::Partition(slot)) => {
                    let p = &self.partitions[slot];
                    info!(
                        "partition {:#06x} `{}` loaded: {} UUID(s), {} vCPU(s), {} KiB",
                        p.id(),
                        p.config.name,
                        p.config.uuids.len(),
                        p.vcpu_count,
                        p.memory.iter().map(|(_, a)| a.len()).sum::<u64>() / 1024
                    );
                }
                Err(e) => warn!("partition `{}` refused: {e}", Text(&entry.name)),
            }
        }
        let key = |s: SlotId| (self.partitions[s].config.boot_order.unwrap_or(u32::MAX), s);
        // Ties (and partitions without boot-order) keep manifest order. An
        // insertion sort: a handful of partitions, and no generic sort code
        // in the image.
        let mut order: Vec<SlotId> = Vec::with_capacity(self.partitions.len());
        for s in (0..self.partitions.len() as u16).map(SlotId::new) {
            let at = order.partition_point(|&o| key(o) < key(s));
            order.insert(at, s);
        }
        self.boot_order = order;
    }

    #[inline(never)]
    fn load_package(&mut self, package: Pa, name: &str) -> Result<Loaded, SpError> {
        let mut hdr = [0u8; PACKAGE_HEADER_SIZE];
        self.platform
            .read(package, &mut hdr)
            .map_err(|_| SpError::BadPackageAddress(package.0))?;
        let header = sp_manifest::parse_package_header(&hdr, u32::MAX as u64)?;
        if header.pm_size > MAX_MANIFEST {
            return Err(SpError::BadPackageLayout);
        }
        let mut manifest = alloc::vec![0u8; header.pm_size as usize];
        self.platform
            .read(Pa(package.0 + header.pm_offset as u64), &mut manifest)
            .map_err(|_| SpError::BadPackageLayout)?;
        let mut config = sp_manifest::parse_manifest(&manifest, name)?;
        // Run in place (the whole package at `load-address`, the entry
        // offset into it, as Hafnium does) or the image alone: see
        // `PackageHeader::runs_in_place`.
        let (image, image_len) = if header.runs_in_place(config.entry_offset) {
            config.in_package = Some(header.pm_offset);
            (package, header.extent())
        } else {
            (
                Pa(package.0 + header.img_offset as u64),
                header.img_size as u64,
            )
        };
        if let Some(t) = self.config.policy.template_of(config.id) {
            return self
                .add_template(t, config, image, image_len, manifest)
                .map(Loaded::Template);
        }
        self.create_partition(
            config,
            image,
            image_len,
            &manifest,
            crate::policy::Kind::Static,
            None,
        )
        .map(Loaded::Partition)
    }

    /// Creates a partition from a validated manifest and an image at `image`
    /// (`image_len` bytes): allocates and zeroes its memory, copies the image,
    /// builds its stage 2 and its vCPUs. Nothing is left allocated on failure.
    pub fn create_partition(
        &mut self,
        config: PartitionConfig,
        image: Pa,
        image_len: u64,
        manifest: &[u8],
        kind: crate::policy::Kind,
        template: Option<u16>,
    ) -> Result<SlotId, SpError> {
        if self.slot_of(PartId::new(config.id)).is_some()
            || config.id == self.id()
            || self
                .templates
                .iter()
                .any(|t| t.config.partition == config.id)
        {
            return Err(SpError::DuplicateId(config.id));
        }
        if !self.platform.heap_available(HEAP_PER_PARTITION) {
            return Err(SpError::OutOfMemory);
        }
        let layout = MainLayout::of(&config, image_len, manifest.len()).ok_or(SpError::BadImage)?;
        let main_len = layout.len;
        // The image (and boot information) and each memory region must not overlap.
        let mut spans: Vec<(u64, u64, &str)> = alloc::vec![(config.load_ipa.0, main_len, "image")];
        for r in &config.memory {
            let len = r
                .pages
                .checked_mul(PAGE_SIZE)
                .ok_or(SpError::Bad("memory-regions"))?;
            spans.push((r.ipa.0, len, &r.name));
        }
        for (i, a) in spans.iter().enumerate() {
            if a.0
                .checked_add(a.1)
                .is_none_or(|e| e > crate::stage2::IPA_LIMIT)
            {
                return Err(SpError::OverlappingRegions(a.2.into()));
            }
            for b in &spans[i + 1..] {
                if a.0 < b.0 + b.1 && b.0 < a.0 + a.1 {
                    return Err(SpError::OverlappingRegions(b.2.into()));
                }
            }
        }

        // Its interrupts must be free (DEN0077 v1.2 §9.1: one owner each).
        self.check_interrupt_claims(&config, kind)?;
        // Its notification bitmaps exist from creation (§10.2), when its
        // manifest declares `notification-support`.
        if config.notification_support {
            self.notifications
                .create(config.id, config.vcpu_count)
                .map_err(|_| SpError::OutOfMemory)?;
        }
        let vmid = match self.vmids.take(self.platform.vmid_limit()) {
            Some(v) => v,
            None => {
                self.notifications.forget(config.id);
                return Err(SpError::OutOfMemory);
            }
        };
        let mut memory: Vec<(Ipa, Allocation)> = Vec::new();
        let mut stage2 = Stage2::new(vmid);
        let result = self.populate(
            &config,
            image,
            image_len,
            manifest,
            &layout,
            &mut memory,
            &mut stage2,
        );
        if let Err(e) = result {
            self.release_partition_parts(memory, vmid, config.id);
            return Err(e);
        }
        self.vmids.keep(vmid);

        let entry = config.load_ipa.0 + config.entry_offset;
        let boot_info_arg = match (config.boot_info_reg, layout.boot_info) {
            (Some(reg), Some(at)) => Some((reg, config.load_ipa.0 + at)),
            _ => None,
        };
        let version = config.version;
        let slot = self.partitions.free_slot();
        if !self.contexts.open_slot(slot) {
            // More partitions than slots (`contexts::MAX_SLOTS`).
            self.release_partition_parts(memory, vmid, config.id);
            return Err(SpError::OutOfMemory);
        }
        for i in 0..config.vcpu_count {
            let ctx = crate::multicore::first_context(entry, &stage2, boot_info_arg, i);
            *self.contexts.lock(VcpuRef { slot, index: i }) = Some(Box::new(Vcpu::new(ctx)));
        }
        self.contexts
            .set_index(PartId::new(config.id), slot, config.vcpu_count > 1);
        let vcpu_count = config.vcpu_count;
        let partition = Partition {
            config,
            state: PartitionState::Created,
            vcpu_count,
            stage2,
            memory,
            code_len: round_up_pages(image_len).map_or(u32::MAX, |l| l.min(u32::MAX as u64) as u32),
            version,
            version_fixed: false,
            buffers: None,
            console: alloc::string::String::new(),
            kind,
            template,
            secondary_ep: None,
            boot_info_arg,
        };
        self.partitions.put(slot, partition);
        self.commit_interrupt_claims(slot);
        Ok(slot)
    }

    /// Gives back what a partition that could not be made had taken: its
    /// memory, its VMID (unless it was the next fresh one) and its bitmaps.
    fn release_partition_parts(&mut self, memory: Vec<(Ipa, Allocation)>, vmid: u16, id: u16) {
        if let Some(pool) = self.pool.as_mut() {
            for (_, a) in memory {
                pool.free(a, &mut self.platform);
            }
        }
        self.vmids.give_back(vmid);
        self.notifications.forget(id);
    }

    /// The partition in `slot` becomes `state`; what the fast path knows
    /// of it follows in every vCPU (only a booted partition that is not
    /// aborted takes the fast path).
    pub(crate) fn set_partition_state(&mut self, slot: SlotId, state: PartitionState) {
        let p = &mut self.partitions[slot];
        p.state = state;
        let fast = if state == PartitionState::Running
            && p.config.messaging.has(sp_manifest::Messaging::DIRECT_RECV)
        {
            // Endpoint 0 reaches every static partition without the
            // binding policy; an instance, its own VM.
            let reach = match p.kind {
                crate::policy::Kind::Instance { owner } => owner,
                crate::policy::Kind::Static => VmId::HYPERVISOR,
            };
            crate::contexts::fast_key(p.id(), p.vcpu_count > 1, reach)
        } else {
            0
        };
        let queued = p.config.ns_interrupts.queues();
        for index in 0..p.vcpu_count {
            if let Some(v) = self.contexts.lock(VcpuRef { slot, index }).as_mut() {
                v.fast = fast;
                v.request_queued = queued;
            }
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call site, all parts of one partition"
    )]
    fn populate(
        &mut self,
        config: &PartitionConfig,
        image: Pa,
        image_len: u64,
        manifest: &[u8],
        layout: &MainLayout,
        memory: &mut Vec<(Ipa, Allocation)>,
        stage2: &mut Stage2,
    ) -> Result<(), SpError> {
        let pool = self.pool.as_mut().ok_or(SpError::OutOfMemory)?;
        // The image (or the whole package), the rest of `mem-size` and the
        // boot information: one allocation, zeroed by the pool, mapped RWX
        // (the partition's own stage 1 enforces W^X inside it).
        let main = pool
            .alloc(layout.len / PAGE_SIZE)
            .ok_or(SpError::OutOfMemory)?;
        let main_pa = main.base;
        memory.push((config.load_ipa, main));
        self.platform
            .copy_code(main_pa, image, image_len)
            .map_err(|_| SpError::BadImage)?;
        if let Some(at) = layout.boot_info {
            let blob = boot_info_blob(
                config.load_ipa.0 + layout.manifest_at,
                manifest.len() as u32,
                config.version,
            );
            self.platform
                .write(Pa(main_pa.0 + at), &blob)
                .map_err(|_| SpError::BadImage)?;
            if config.in_package.is_none() {
                self.platform
                    .write(Pa(main_pa.0 + layout.manifest_at), manifest)
                    .map_err(|_| SpError::BadImage)?;
            }
        }
        stage2
            .map(
                IpaSpace::Secure,
                config.load_ipa,
                main_pa,
                layout.len,
                Kind::Memory(Access::RWX),
            )
            .map_err(|_| SpError::Stage2)?;
        for r in &config.memory {
            let pool = self.pool.as_mut().ok_or(SpError::OutOfMemory)?;
            let a = pool.alloc(r.pages).ok_or(SpError::OutOfMemory)?;
            let (pa, len) = (a.base, a.len());
            memory.push((r.ipa, a));
            stage2
                .map(IpaSpace::Secure, r.ipa, pa, len, Kind::Memory(r.access))
                .map_err(|_| SpError::Stage2)?;
        }
        for d in &config.devices {
            let len = d.pages * PAGE_SIZE;
            // A device region may not reach secure memory the SPMC knows.
            if let Some(what) = self.secure_memory_in(d.base, len) {
                return Err(SpError::DeviceOverSecureMemory {
                    region: d.name.clone(),
                    what,
                });
            }
            stage2
                .map(
                    IpaSpace::Secure,
                    Ipa(d.base),
                    Pa(d.base),
                    len,
                    Kind::Device { write: d.write },
                )
                .map_err(|_| SpError::Stage2)?;
        }
        Ok(())
    }

    /// The secure memory the SPMC knows that `[base, base + len)` reaches,
    /// if any (a range that wraps reaches everything): the SPMC's own image
    /// (`load_address`, `binary_size` of its manifest), a partition package
    /// as its header describes it (a template's pristine image among them),
    /// the secure pool, or any other secure RAM of the platform (trusted
    /// SRAM with the SPMC manifest).
    fn secure_memory_in(&mut self, base: u64, len: u64) -> Option<&'static str> {
        use crate::manifest::MemRange;
        let r = MemRange { base, size: len };
        let image = MemRange {
            base: self.config.load_address,
            size: self.config.binary_size as u64,
        };
        if r.overlaps(&image) {
            return Some("the SPMC image");
        }
        for e in &self.config.partitions {
            let mut hdr = [0u8; PACKAGE_HEADER_SIZE];
            let size = match self.platform.read(Pa(e.package), &mut hdr) {
                Ok(()) => sp_manifest::parse_package_header(&hdr, u32::MAX as u64)
                    .map(|h| {
                        let pm = h.pm_offset as u64 + h.pm_size as u64;
                        let img = h.img_offset as u64 + h.img_size as u64;
                        pm.max(img)
                    })
                    .unwrap_or(0),
                Err(_) => 0,
            };
            // At least the header's page: BL2 named that address.
            let package = MemRange {
                base: e.package,
                size: size.max(PAGE_SIZE),
            };
            if r.overlaps(&package) {
                return Some("a partition package");
            }
        }
        if self.pool.as_ref().is_some_and(|p| p.range().overlaps(&r)) {
            return Some("the secure pool");
        }
        if self.platform.overlaps_secure_ram(Pa(base), len) {
            return Some("secure RAM");
        }
        None
    }

    /// Starts booting the partitions in boot order. The platform runs what
    /// this returns until a [`Next::NormalWorld`], whose registers (in `regs`)
    /// end the SPMC's initialisation (FFA_MSG_WAIT to the SPMD).
    pub fn boot(&mut self, regs: &mut Regs) -> Next {
        self.boot_pos = 0;
        self.boot_continue(regs)
    }

    /// True once every partition has booted (or been refused).
    pub fn is_booted(&self) -> bool {
        self.booted
    }

    /// Boots the next partition in boot order, or ends the boot.
    pub(crate) fn boot_continue(&mut self, regs: &mut Regs) -> Next {
        while self.boot_pos < self.boot_order.len() {
            let slot = self.boot_order[self.boot_pos];
            self.boot_pos += 1;
            if self.partitions[slot].state != PartitionState::Created {
                continue;
            }
            self.set_partition_state(slot, PartitionState::Running);
            debug!("booting partition {:#06x}", self.partitions[slot].id());
            // An MP partition starts with this (the primary) core's context;
            // the others start when their cores come on.
            let core = self.platform.core_index();
            let p = &self.partitions[slot];
            let index = p.context_for(core);
            if index >= p.vcpu_count as usize {
                warn!(
                    "partition {} has no context for boot core {}",
                    hex(p.id().raw()),
                    Hex(core as u64)
                );
                continue;
            }
            let v = VcpuRef {
                slot,
                index: index as u16,
            };
            if self
                .set_state(v, VcpuState::Running(RunReason::Boot))
                .is_ok()
            {
                return self.run_cold(v);
            }
        }
        self.booted = true;
        let alive = self.partitions.iter().filter(|p| p.is_alive()).count();
        info!("{alive} of {} partition(s) booted", self.partitions.len());
        *regs = Regs::with_func(func::MSG_WAIT);
        Next::NormalWorld
    }

    // ------------------------------------------------------------------
    // Helpers on vCPUs
    // ------------------------------------------------------------------

    /// A vCPU's context, for the host tests that play the partition (the
    /// table of contexts must not be shared then: no lock is taken).
    #[cfg(any(test, feature = "testing"))]
    pub fn vcpu_context_mut(&mut self, v: VcpuRef) -> &mut Context {
        let contexts = Arc::get_mut(&mut self.contexts).expect("contexts not shared");
        &mut contexts.vcpu_mut(v).ctx
    }

    /// The partitions, mutably (host tests poke at stage 2 directly).
    #[cfg(any(test, feature = "testing"))]
    pub fn partitions_mut_for_tests(&mut self) -> &mut [Partition] {
        self.partitions.as_mut_slice()
    }

    /// Lets the normal world negotiate its version again, as after a
    /// reboot: host tests of version-dependent layouts use it to try several
    /// versions on one world (the rule itself: tests/version.rs).
    #[cfg(any(test, feature = "testing"))]
    pub fn reopen_nwd_version_for_tests(&mut self) {
        self.contexts.set_nwd_version_open(true);
    }

    /// Whether the normal world's version is fixed (§13.2).
    pub fn nwd_version_fixed(&self) -> bool {
        !self.contexts.nwd_version_open()
    }

    /// A copy of a vCPU's context (tests and diagnostics).
    pub fn vcpu_context(&self, v: VcpuRef) -> Context {
        self.vcpu(v).ctx.clone()
    }

    /// The states of the vCPUs of the partition in `slot`, in index order.
    pub fn vcpu_states(&self, slot: SlotId) -> Vec<VcpuState> {
        let n = self.partitions.get(slot).map_or(0, |p| p.vcpu_count);
        (0..n)
            .map(|index| self.vcpu_state(VcpuRef { slot, index }))
            .collect()
    }

    /// A vCPU's state.
    pub fn vcpu_state(&self, v: VcpuRef) -> VcpuState {
        self.vcpu(v).state
    }

    /// The vCPU `v`, locked (see the module's lock order: never held while
    /// taking another lock).
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub(crate) fn vcpu(&self, v: VcpuRef) -> VcpuGuard<'_> {
        self.contexts.vcpu(v)
    }

    /// Moves `v` to state `to` if that is legal from its state now (checked
    /// and changed under its lock). From `Waiting` it may race with the
    /// fast path of another core, which may just have taken it: that is
    /// BUSY, as for any vCPU that runs.
    pub(crate) fn set_state(&mut self, v: VcpuRef, to: VcpuState) -> Result<(), FfaError> {
        // Initialisation runs with normal-world interrupts queued (see
        // `Context::ns_interrupts_queued`); other states as the manifest's
        // `ns-interrupts-action` and the call chain say (`ns_interrupts`).
        let queued = self.runs_queued(v, to);
        let mut vcpu = self.vcpu(v);
        if matches!(vcpu.state, VcpuState::Running(_)) && matches!(to, VcpuState::Running(_)) {
            debug!("vCPU {v:?} is running already");
            return Err(FfaError::Busy);
        }
        vcpu.state.become_(to).map_err(|e| {
            log::error!("vCPU {v}: illegal transition {} -> {}", e.from, e.to);
            FfaError::Denied
        })?;
        if !matches!(
            to,
            VcpuState::Running(_) | VcpuState::Blocked(_) | VcpuState::Preempted(..)
        ) {
            // No request left to answer: a pending managed exit ends.
            Self::end_managed_exit(&mut vcpu.ctx);
        }
        vcpu.ctx.ns_interrupts_queued = queued;
        Ok(())
    }

    /// Hands the vCPU to the platform to run.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub(crate) fn run(&mut self, v: VcpuRef) -> Next {
        if self.interrupts.has_pending() {
            self.pending_interrupts_to(v);
        }
        let mut vcpu = self.vcpu(v);
        vcpu.on_core = true;
        let ctx: *mut Context = &mut vcpu.ctx;
        Next::Run { vcpu: v, ctx }
    }

    /// [`Self::run`] out of line, for the paths off the message path (one
    /// copy instead of one inlined at each).
    #[inline(never)]
    pub(crate) fn run_cold(&mut self, v: VcpuRef) -> Next {
        self.run(v)
    }

    /// Writes an answer into a partition's x0-x7 and resumes it.
    pub(crate) fn resume_with(&mut self, v: VcpuRef, answer: &Regs) -> Next {
        self.vcpu(v).ctx.x[..8].copy_from_slice(&answer.0[..8]);
        self.run_cold(v)
    }

    // ------------------------------------------------------------------
    // Entry points
    // ------------------------------------------------------------------

    /// Handles one call that arrived from the SPMD and says what comes next.
    /// An answer for the normal world is written into `regs` (x0-x7; x8-x17
    /// are kept unless the answer uses them, as SMCCC v1.2 asks).
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub fn handle_spmd(&mut self, regs: &mut Regs) -> Next {
        // The hot path first: a 64-bit direct request that is not a framework
        // message. (Compared on all of x0, so that the compiler keeps it out of
        // the dispatch tree below; a call with junk in x0[63:32] takes the
        // general path and gets the same answer.)
        if regs.0[0] == func::MSG_SEND_DIRECT_REQ_64 as u64 && regs.w(2) & fwk::FLAG == 0 {
            // Any call but FFA_VERSION fixes the normal world's version (§13.2).
            self.contexts.set_nwd_version_open(false);
            return self.nwd_direct_request(regs);
        }
        self.spmd_call(regs)
    }

    /// Every call from the SPMD but a 64-bit direct request: out of line
    /// (one copy instead of one inlined into each caller), still built for
    /// speed: built for size, FFA_VERSION, notifications and memory calls
    /// from the normal world measured slower.
    #[inline(never)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    fn spmd_call(&mut self, regs: &mut Regs) -> Next {
        let f = regs.func();
        if (f == func::MSG_SEND_DIRECT_REQ_32 || f == func::MSG_SEND_DIRECT_REQ_64)
            && regs.w(2) & fwk::FLAG != 0
        {
            // The SPMD's own messages (FFA_VERSION, PSCI) are not the normal
            // world's FF-A calls; a hypervisor's VM messages are.
            if ffa::sender(regs) == ffa::SPMD_ID {
                return self.framework_message(regs);
            }
            self.contexts.set_nwd_version_open(false);
            return self.vm_availability(regs);
        }
        if f != func::VERSION {
            self.contexts.set_nwd_version_open(false);
        }
        match f {
            func::MSG_SEND_DIRECT_REQ_32
            | func::MSG_SEND_DIRECT_REQ_64
            | func::MSG_SEND_DIRECT_REQ2_64 => self.nwd_direct_request(regs),
            func::RUN => self.run_from_nwd(regs),
            func::INTERRUPT_32 => self.secure_interrupt_from_spmd(regs),
            _ => {
                let from = match self.nwd_caller_id(regs) {
                    Ok(id) => Endpoint::NormalWorld(VmId::new(id)),
                    Err(e) => return self.refuse_nwd(regs, e),
                };
                let r = self.common_call(from, regs);
                if uses_upper_registers(f) && r.is_ok() {
                    // The answer is in x0-x17 (FFA_PARTITION_INFO_GET_REGS).
                    if let Ok(answer) = r {
                        *regs = answer;
                    }
                    return Next::NormalWorld;
                }
                self.finish_nwd(regs, r)
            }
        }
    }

    /// A direct request from the normal world, on the manager's path: the
    /// platform's fast path (`Contexts::direct_request`) declined it, or it
    /// is a 32-bit or REQ2 one. Out of line: one copy for both call sites,
    /// off the fast round trip.
    #[inline(never)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    fn nwd_direct_request(&mut self, regs: &mut Regs) -> Next {
        self.direct_request_from_nwd(regs)
    }

    /// Which normal-world endpoint a call is for. Without a hypervisor the
    /// normal world is one endpoint, ID 0. A hypervisor acting for a VM names
    /// it where the ABI has a field for it (FFA_MSG_SEND2 w1[31:16],
    /// FFA_RXTX_UNMAP w1[31:16], FFA_RX_RELEASE w1[15:0], per DEN0077 v1.2)
    /// and, for discovery, in w7[15:0] (FFA_PARTITION_INFO_GET, where w7 is
    /// otherwise zero) or x7[15:0] (FFA_PARTITION_INFO_GET_REGS): an
    /// extension of this SPMC so that each VM discovers only what it may reach.
    ///
    /// A VM ID has bit 15 clear: a field naming an ID with bit 15 set (a
    /// secure endpoint) is refused with INVALID_PARAMETERS, as are bits set
    /// in w7[31:16] / x7[63:16], which this extension leaves reserved (MBZ).
    fn nwd_caller_id(&self, regs: &Regs) -> Result<PartitionId, FfaError> {
        let id = match regs.func() {
            func::MSG_SEND2 | func::RXTX_UNMAP => (regs.w(1) >> 16) as u64,
            func::RX_RELEASE => (regs.w(1) & 0xFFFF) as u64,
            func::PARTITION_INFO_GET => regs.w(7) as u64,
            func::PARTITION_INFO_GET_REGS_64 => regs.x(7),
            _ => 0,
        };
        if id > 0x7FFF {
            debug!("a call names {id:#x} as its VM: not a VM ID");
            return Err(FfaError::InvalidParameters);
        }
        Ok(id as PartitionId)
    }

    /// Writes a handler's result for the normal world into `regs`.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub(crate) fn finish_nwd(&mut self, regs: &mut Regs, r: Result<Regs, FfaError>) -> Next {
        let answer = r.unwrap_or_else(Regs::error);
        regs.0[..8].copy_from_slice(&answer.0[..8]);
        Next::NormalWorld
    }

    /// Answers the normal world FFA_ERROR(`e`) in `regs`: the refusals,
    /// out of line (one copy instead of one per refusal).
    #[cold]
    #[inline(never)]
    pub(crate) fn refuse_nwd(&mut self, regs: &mut Regs, e: FfaError) -> Next {
        self.finish_nwd(regs, Err(e))
    }

    /// Resumes a partition with FFA_ERROR(`e`): the refusals, out of line.
    #[cold]
    #[inline(never)]
    pub(crate) fn refuse_sp(&mut self, v: VcpuRef, e: FfaError) -> Next {
        self.finish_sp(v, Err(e))
    }

    /// [`Self::finish_sp`] out of line, for the calls off the message path.
    #[inline(never)]
    pub(crate) fn answer_sp(&mut self, v: VcpuRef, r: Result<Regs, FfaError>) -> Next {
        self.finish_sp(v, r)
    }

    /// Writes a handler's result into a partition and resumes it.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub(crate) fn finish_sp(&mut self, v: VcpuRef, r: Result<Regs, FfaError>) -> Next {
        let answer = r.unwrap_or_else(Regs::error);
        self.resume_with(v, &answer)
    }

    /// Handles a vCPU's exit (its context holds the exit information) and
    /// says what comes next; `regs` is the register block of the normal-world
    /// call in flight on this core, if any.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub fn handle_exit(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        // The hot path: a running partition's FF-A call through SMC, most
        // often the response to a direct request.
        if self.partitions[v.slot].state != PartitionState::Aborted {
            let mut vcpu = self.vcpu(v);
            let ctx = &mut vcpu.ctx;
            if ctx.exit.vector == 0 && ctx.exit.esr >> 26 == crate::vcpu::ec::SMC64 {
                // A trapped SMC returns to the instruction after it.
                ctx.pc += 4;
                // Faults injected before an FF-A call were handled.
                ctx.injected_faults = 0;
                let managed_exit = ctx.managed_exit != 0;
                drop(vcpu);
                if managed_exit {
                    return self.call_during_managed_exit(v, regs);
                }
                return self.call_exit(v, regs);
            }
        }
        self.handle_other_exit(v, regs)
    }

    /// A partition's FF-A call (its registers are in its context): the
    /// response to a direct request, or any other call.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub(crate) fn call_exit(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let x0 = self.vcpu(v).ctx.x[0];
        // The 64-bit response first (compared on all of x0 so that the
        // compiler keeps it apart from the other tests).
        if x0 == func::MSG_SEND_DIRECT_RESP_64 as u64 {
            return self.direct_response(v, regs);
        }
        let f = x0 as u32;
        if f == func::MSG_SEND_DIRECT_RESP_64
            || f == func::MSG_SEND_DIRECT_RESP_32
            || f == func::MSG_SEND_DIRECT_RESP2_64
        {
            return self.direct_response(v, regs);
        }
        self.partition_call(v, regs)
    }

    /// [`Self::call_exit`] for the exits off the message path (an HVC call,
    /// a call during a managed exit): one copy, out of line and built for
    /// size, instead of one inlined in each.
    #[inline(never)]
    pub(crate) fn call_exit_cold(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        self.call_exit(v, regs)
    }

    /// Every exit but an SMC from a running partition: HVC calls,
    /// interrupts, faults, and exits of a partition aborted meanwhile.
    #[inline(never)]
    fn handle_other_exit(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let aborted = self.partitions[v.slot].state == PartitionState::Aborted;
        let exit = crate::vcpu::classify(&self.vcpu(v).ctx.exit);
        if aborted {
            // Aborted by another core while this vCPU ran.
            return self.abort(v, regs);
        }
        match exit {
            Exit::Call { smc } => {
                let mut vcpu = self.vcpu(v);
                if smc {
                    // A trapped SMC returns to the instruction after it.
                    vcpu.ctx.pc += 4;
                }
                vcpu.ctx.injected_faults = 0;
                let managed_exit = vcpu.ctx.managed_exit != 0;
                drop(vcpu);
                if managed_exit {
                    return self.call_during_managed_exit(v, regs);
                }
                self.call_exit_cold(v, regs)
            }
            Exit::Interrupt => self.interrupt_exit(v, regs),
            Exit::Fault(fault) => {
                // Injection reads and writes the vCPU's EL1 registers.
                self.platform.vcpu_el1_to_context();
                let mut vcpu = self.vcpu(v);
                let pc = vcpu.ctx.pc;
                // A stage-2 abort goes to the partition first (Hafnium's
                // choice; docs/architecture.md "Faults").
                let why = match fault {
                    Fault::DataAbort { .. } | Fault::InstructionAbort { .. } => {
                        match injection::inject(&mut vcpu.ctx) {
                            Ok(()) => {
                                debug!("vCPU {v:?}: {fault:x?} at pc {pc:#x} injected at EL1");
                                drop(vcpu);
                                return self.run_cold(v);
                            }
                            Err(refusal) => refusal.name(),
                        }
                    }
                    _ => "not injected",
                };
                drop(vcpu);
                let id = self.partitions[v.slot].id();
                // Once per partition: it is aborted.
                warn!(
                    "partition {} aborted: {fault} at pc {} ({})",
                    hex(id.raw()),
                    Hex(pc),
                    Text(why)
                );
                self.abort(v, regs)
            }
        }
    }

    /// A call from a partition, dispatched by function ID.
    #[inline(never)]
    fn partition_call(&mut self, v: VcpuRef, regs: &mut Regs) -> Next {
        let f = self.vcpu(v).ctx.x[0] as u32;
        if f != func::VERSION {
            // Its first call other than FFA_VERSION fixes its version (§13.2).
            self.partitions[v.slot].version_fixed = true;
        }
        match f {
            func::MSG_SEND_DIRECT_REQ_32
            | func::MSG_SEND_DIRECT_REQ_64
            | func::MSG_SEND_DIRECT_REQ2_64 => self.direct_request_from_sp(v),
            func::MSG_WAIT => self.msg_wait(v, regs),
            func::YIELD => self.yield_(v, regs),
            func::SECONDARY_EP_REGISTER_32 | func::SECONDARY_EP_REGISTER_64 => {
                let r = self.secondary_ep_register(v);
                self.answer_sp(v, r)
            }
            func::ERROR_32 | func::ERROR_64
                if matches!(
                    self.vcpu(v).state,
                    VcpuState::Running(RunReason::Boot | RunReason::Create { .. })
                ) =>
            {
                let id = self.partitions[v.slot].id();
                warn!(
                    "partition {} reported an initialisation error; aborted",
                    hex(id.raw())
                );
                self.abort(v, regs)
            }
            _ => {
                let args = Regs::from_slice(&self.vcpu(v).ctx.x[..18]);
                let r = self.common_call(Endpoint::Partition(v.slot), &args);
                if uses_upper_registers(f)
                    && let Ok(answer) = &r
                {
                    self.vcpu(v).ctx.x[..18].copy_from_slice(&answer.0);
                    return self.run_cold(v);
                }
                self.answer_sp(v, r)
            }
        }
    }

    /// Calls that answer at once, from either instance.
    pub(crate) fn common_call(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let version = self.version_of(from);
        let instance = match from {
            Endpoint::NormalWorld(_) => Instance::NormalWorld,
            Endpoint::Partition(_) => Instance::Partition,
        };
        match args.func() {
            func::VERSION => Ok(self.version_call(from, args.w(1))),
            func::FEATURES => {
                crate::features::query(instance, version, args.w(1), args.w(2)).map(Regs::success32)
            }
            func::ID_GET => Ok(Regs::success32(self.id_of(from) as u32)),
            func::SPM_ID_GET if version >= Version::V1_1 => Ok(Regs::success32(self.id() as u32)),
            func::RXTX_MAP_32 | func::RXTX_MAP_64 => self.rxtx_map(from, args),
            func::RXTX_UNMAP => self.rxtx_unmap(from, args),
            func::RX_RELEASE => self.rx_release(from, args),
            func::RX_ACQUIRE if version >= Version::V1_1 => self.rx_acquire(from, args),
            func::PARTITION_INFO_GET => self.partition_info_get(from, args),
            func::PARTITION_INFO_GET_REGS_64 if version >= Version::V1_2 => {
                self.partition_info_get_regs(from, args)
            }
            func::MSG_SEND2 if version >= Version::V1_1 => self.msg_send2(from, args),
            func::CONSOLE_LOG_32 | func::CONSOLE_LOG_64 if version >= Version::V1_2 => {
                self.console_log(from, args)
            }
            func::MEM_SHARE_32
            | func::MEM_SHARE_64
            | func::MEM_LEND_32
            | func::MEM_LEND_64
            | func::MEM_DONATE_32
            | func::MEM_DONATE_64
            | func::MEM_RETRIEVE_REQ_32
            | func::MEM_RETRIEVE_REQ_64
            | func::MEM_RELINQUISH
            | func::MEM_RECLAIM
            | func::MEM_FRAG_RX
            | func::MEM_FRAG_TX => self.mem_call(from, args),
            func::NOTIFICATION_BITMAP_CREATE
            | func::NOTIFICATION_BITMAP_DESTROY
            | func::NOTIFICATION_BIND
            | func::NOTIFICATION_UNBIND
            | func::NOTIFICATION_SET
            | func::NOTIFICATION_GET
            | func::NOTIFICATION_INFO_GET_32
            | func::NOTIFICATION_INFO_GET_64
                if version >= Version::V1_1 =>
            {
                self.notification_call(from, args)
            }
            other => {
                debug!("unsupported call {other:#010x} from {from:?}");
                Err(FfaError::NotSupported)
            }
        }
    }

    /// FFA_VERSION (§13.2): w0 is the version or NOT_SUPPORTED.
    fn version_call(&mut self, from: Endpoint, requested: u32) -> Regs {
        let mut r = Regs::default();
        r.0[0] = self.negotiate(from, requested) as u64;
        r
    }

    /// Negotiates `from`'s version; returns what FFA_VERSION answers.
    ///
    /// DEN0077 v1.2 §13.2: an endpoint's version is fixed once it has made
    /// another FF-A call. Then a request that would negotiate a different
    /// version is refused with NOT_SUPPORTED and changes nothing; one that
    /// negotiates the same version is answered as before (Hafnium's
    /// `api_ffa_version`, and the FF-A ACS `ffa_version_negotiation`). An
    /// invalid request (bit 31 set, another major) is NOT_SUPPORTED either way.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    fn negotiate(&mut self, from: Endpoint, requested: u32) -> u32 {
        let v = match ffa::negotiate(requested) {
            Ok(v) => v,
            Err(e) => return e.as_u32(),
        };
        let fixed = match from {
            Endpoint::NormalWorld(_) => !self.contexts.nwd_version_open(),
            Endpoint::Partition(s) => self.partitions[s].version_fixed,
        };
        if fixed {
            if v != self.version_of(from) {
                debug!("{from:?}: FFA_VERSION({requested:#x}) after other calls: version is fixed");
                return FfaError::NotSupported.as_u32();
            }
        } else {
            match from {
                Endpoint::NormalWorld(id) => self.nwd_mut(id.raw()).version = Some(v),
                Endpoint::Partition(s) => self.partitions[s].version = v,
            }
        }
        Version::IMPLEMENTED.bits()
    }

    /// Framework messages from the SPMD (TF-A SPMD; FF-A v1.2 §18), answered
    /// in place with a 32-bit direct response.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    fn framework_message(&mut self, regs: &mut Regs) -> Next {
        let w2 = regs.w(2);
        let (kind, value) = match (w2 & fwk::FLAG != 0).then_some(w2 & fwk::TYPE_MASK) {
            Some(fwk::VERSION_REQ) => (
                fwk::VERSION_RESP,
                self.negotiate(Endpoint::NormalWorld(VmId::HYPERVISOR), regs.w(3)),
            ),
            Some(fwk::PSCI_REQ) => return self.power_message(regs),
            other => {
                debug!("unknown framework message {other:x?} from the SPMD");
                return self.refuse_nwd(regs, FfaError::InvalidParameters);
            }
        };
        regs.0[..8].copy_from_slice(&[
            func::MSG_SEND_DIRECT_RESP_32 as u64,
            ffa::endpoints(self.id(), ffa::SPMD_ID),
            (fwk::FLAG | kind) as u64,
            value as u64,
            0,
            0,
            0,
            0,
        ]);
        Next::NormalWorld
    }
}

/// True for the ABIs whose success answer uses x8-x17 too (so they must not
/// be kept from the caller, as they are for every other call).
fn uses_upper_registers(f: u32) -> bool {
    f == func::PARTITION_INFO_GET_REGS_64
}

/// Where things lie in a partition's main allocation (mapped at `load_ipa`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MainLayout {
    /// Bytes in all (whole pages).
    pub len: u64,
    /// Offset of the boot information blob (§5.4), if the manifest asks for it.
    pub boot_info: Option<u64>,
    /// Offset of the partition manifest the boot information points at.
    pub manifest_at: u64,
}

impl MainLayout {
    /// The layout for `config` with `image_len` bytes of image (or of the
    /// whole package, when it runs in place) and a `manifest_len`-byte manifest.
    ///
    /// The memory spans the image and `mem-size` (FF-A manifest binding:
    /// the partition's memory, `.bss` and stack included, needs no region of
    /// its own). Boot information for a package run in place goes into the
    /// package's space before the manifest (where its header was, offset 0:
    /// sptool's v2 layout leaves that room for it and Hafnium writes it
    /// into the package too, to keep it out of the image) and points at the
    /// manifest inside the package; for an image alone it goes after the
    /// whole of `mem-size`, never over the image's `.bss`, with a copy of
    /// the manifest behind it.
    pub(crate) fn of(
        config: &PartitionConfig,
        image_len: u64,
        manifest_len: usize,
    ) -> Option<Self> {
        let image = round_up_pages(image_len).filter(|l| *l > 0)?;
        let mem = image.max(round_up_pages(config.mem_size)?);
        let wants = config.boot_info_reg.is_some();
        match config.in_package {
            // The blob must fit between the header's start and the manifest.
            Some(pm) if !wants || pm as u64 >= BOOT_INFO_HEADER => Some(Self {
                len: mem,
                boot_info: wants.then_some(0),
                manifest_at: pm as u64,
            }),
            Some(_) => None,
            None if wants => Some(Self {
                len: mem.checked_add(round_up_pages(BOOT_INFO_HEADER + manifest_len as u64)?)?,
                boot_info: Some(mem),
                manifest_at: mem + BOOT_INFO_HEADER,
            }),
            None => Some(Self {
                len: mem,
                boot_info: None,
                manifest_at: 0,
            }),
        }
    }
}

/// The FF-A boot information blob (DEN0077 v1.2 §5.4.1, Tables 5.8 and 5.9):
/// a header and one descriptor pointing at the partition manifest, at IPA
/// `manifest_ipa` (behind the blob, or inside a package run in place).
///
/// The header's version (DEN0077 v1.2 §5.4.1, Table 5.8: "encoded as in
/// FFA_VERSION") is the version the partition's manifest states, from 1.1
/// (the first with this layout) up to the 1.2 we implement: the layout is the
/// same in both, and a partition written for 1.1 checks for exactly 1.1
/// (OP-TEE 4.5 panics on anything else; Hafnium always writes 1.1;
/// docs/optee.md).
fn boot_info_blob(
    manifest_ipa: u64,
    manifest_len: u32,
    partition: Version,
) -> [u8; BOOT_INFO_HEADER as usize] {
    let version = partition.clamp(Version::V1_1, Version::V1_2);
    let mut b = [0u8; BOOT_INFO_HEADER as usize];
    b[0..4].copy_from_slice(&0x0FFAu32.to_le_bytes()); // signature
    b[4..8].copy_from_slice(&version.bits().to_le_bytes()); // version
    b[8..12].copy_from_slice(&(BOOT_INFO_HEADER as u32).to_le_bytes()); // blob size
    b[12..16].copy_from_slice(&32u32.to_le_bytes()); // descriptor size
    b[16..20].copy_from_slice(&1u32.to_le_bytes()); // descriptor count
    b[20..24].copy_from_slice(&32u32.to_le_bytes()); // offset of the descriptors
    // Descriptor: name, type (standard, FDT), flags (name is a string,
    // content is an address), size, content.
    b[32..44].copy_from_slice(b"ffa_manifest");
    b[48] = 0; // standard type 0: flattened device tree
    b[50..52].copy_from_slice(&0u16.to_le_bytes());
    b[52..56].copy_from_slice(&manifest_len.to_le_bytes());
    b[56..64].copy_from_slice(&manifest_ipa.to_le_bytes());
    b
}

#[cfg(test)]
mod boot_info_tests {
    use super::*;
    use arm_ffa::boot_info::{
        BootInfoContents, BootInfoIterator, BootInfoName, BootInfoStdId, BootInfoType,
    };

    /// The blob is written here (arm-ffa's `BootInfo::pack` copies what a
    /// descriptor points at behind the blob, where the SPMC points at the
    /// manifest wherever it lies, inside a package run in place too), but
    /// arm-ffa's parser is the judge of its layout (§5.4.1, Tables 5.8/5.9).
    #[test]
    fn boot_info_blob_parses_with_arm_ffa() {
        let manifest = b"a manifest, as bytes";
        let mut buf = alloc::vec![0u8; BOOT_INFO_HEADER as usize + manifest.len()];
        buf[BOOT_INFO_HEADER as usize..].copy_from_slice(manifest);
        let at = buf.as_ptr() as u64 + BOOT_INFO_HEADER;
        let blob = boot_info_blob(at, manifest.len() as u32, Version::V1_2);
        buf[..blob.len()].copy_from_slice(&blob);
        let descs: Vec<_> = BootInfoIterator::new(arm_ffa::Version(1, 2), &buf)
            .expect("header")
            .collect::<Result<_, _>>()
            .expect("descriptors");
        assert_eq!(descs.len(), 1);
        let d = &descs[0];
        assert!(
            matches!(d.name, BootInfoName::NullTermString(n) if n.to_bytes() == b"ffa_manifest")
        );
        assert_eq!(d.typ, BootInfoType::Std(BootInfoStdId::Fdt));
        assert!(
            matches!(d.contents, BootInfoContents::Address { content_buf } if content_buf == manifest)
        );
    }
}
