//! A secure partition as the SPMC keeps it: configuration, state, memory,
//! stage-2 tables, vCPUs, mailbox.

use alloc::string::String;
use alloc::vec::Vec;

use crate::addr::{Ipa, Pa};
use crate::ffa::{PartitionId, Version};
use crate::ids::{PartId, SlotId};
use crate::pool::Allocation;
use crate::sp_manifest::PartitionConfig;
use crate::stage2::Stage2;
use crate::vcpu::{Context, VcpuState};

/// Partition states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionState {
    /// Loaded, not yet booted.
    Created,
    /// Booted (or booting): takes messages once its vCPUs wait.
    Running,
    /// Stopped for good after a fault; every call to it gets ABORTED.
    Aborted,
    /// An unused slot (a destroyed instance's): no ID, no memory, no vCPU.
    Free,
}

/// One execution context. It lives boxed in its own lock
/// ([`crate::contexts::VcpuCell`]), so the address the arch layer runs it
/// from never moves.
#[derive(Debug)]
pub struct Vcpu {
    /// Its state.
    pub state: VcpuState,
    /// Its registers.
    pub ctx: Context,
    /// A core runs it or may hold its EL1 and FP/SIMD state lazily: no
    /// other core may pick it, the manager may not free it
    /// (`spmc::contexts`, "Who may run a vCPU").
    pub on_core: bool,
    /// What the fast path needs ([`crate::contexts::fast_key`]), while its
    /// partition is booted, not aborted and takes direct requests (0: every
    /// call for it goes to the manager).
    pub fast: u64,
    /// Whether a direct request from the normal world runs it with the
    /// normal world's interrupts queued (its manifest's
    /// `ns-interrupts-action`, `spmc::ns_interrupts`): what the fast path
    /// sets, as the manager does.
    pub request_queued: bool,
    /// Its instance was destroyed while it was on this core: the context
    /// goes when the core releases it.
    pub freed: bool,
    /// The answer the SPMC holds back while the vCPU handles a secure
    /// interrupt that was pending when it answered
    /// ([`crate::interrupts::HeldAnswer`]): delivered at its FFA_MSG_WAIT.
    pub held: Option<crate::interrupts::HeldAnswer>,
    /// The secure interrupt the SPMC last resumed it with FFA_INTERRUPT
    /// for, while it handles it (`RunReason::SecureInterrupt`): its
    /// FFA_MSG_WAIT is not held back again for that one.
    pub signalled: Option<u32>,
}

impl Vcpu {
    /// A context that is off, with these registers.
    pub fn new(ctx: Context) -> Self {
        Self {
            state: VcpuState::Off,
            ctx,
            on_core: false,
            fast: 0,
            request_queued: false,
            freed: false,
            held: None,
            signalled: None,
        }
    }
}

/// Who owns an RX buffer (FF-A v1.2 §7.2.2.4 "buffer states").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxState {
    /// Empty: the producer (the SPMC) may write to it.
    Empty,
    /// Full: the consumer (its endpoint) owns it until FFA_RX_RELEASE.
    Full,
    /// Acquired by the hypervisor with FFA_RX_ACQUIRE until FFA_RX_RELEASE.
    Acquired,
}

/// A mapped pair of RX/TX buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffers {
    /// TX as the endpoint named it (IPA for a partition, PA for the normal world).
    pub tx_addr: u64,
    /// RX as the endpoint named it.
    pub rx_addr: u64,
    /// TX physical address.
    pub tx: Pa,
    /// RX physical address.
    pub rx: Pa,
    /// Size of each buffer in bytes.
    pub size: u64,
    /// RX ownership.
    pub rx_state: RxState,
}

/// A partition.
#[derive(Debug)]
pub struct Partition {
    /// Its validated manifest.
    pub config: PartitionConfig,
    /// Its state.
    pub state: PartitionState,
    /// How many vCPUs (execution contexts) it has; they live in the
    /// manager's [`crate::contexts::Contexts`], in its slot.
    pub vcpu_count: u16,
    /// Its stage-2 tables.
    pub stage2: Stage2,
    /// The memory backing it and where it sees each piece.
    pub memory: Vec<(Ipa, Allocation)>,
    /// Bytes from `config.load_ipa` that hold what was loaded (the image, or
    /// the whole package run in place): its code, which it may not lend,
    /// share or donate. The rest of `mem-size` is its own RAM.
    pub code_len: u32,
    /// Version it negotiated (its manifest's until it calls FFA_VERSION).
    pub version: Version,
    /// Set by its first FF-A call other than FFA_VERSION (at the latest its
    /// FFA_MSG_WAIT): `version` is then fixed (DEN0077 v1.2 §13.2).
    pub version_fixed: bool,
    /// RX/TX buffers, once mapped.
    pub buffers: Option<Buffers>,
    /// Console output not yet ended by a newline.
    pub console: String,
    /// Static partition, or an instance made for a VM.
    pub kind: crate::policy::Kind,
    /// The template an instance was made from (index into the manager's templates).
    pub template: Option<u16>,
    /// Where its secondary contexts start (FFA_SECONDARY_EP_REGISTER during
    /// its initialisation); the primary entry point when `None`.
    pub secondary_ep: Option<u64>,
    /// The register and value of its boot information (DEN0077 v1.2 §5.4),
    /// given to every context it starts.
    pub boot_info_arg: Option<(u8, u64)>,
}

impl Partition {
    /// True if it has one execution context per core (an MP partition):
    /// context n runs on core n only. A UP partition's one context runs on
    /// whichever core calls it, on one core at a time.
    #[inline(always)]
    pub fn is_mp(&self) -> bool {
        self.vcpu_count > 1
    }

    /// The context that serves core `core`: context `core` of an MP
    /// partition, the only one of a UP partition.
    #[inline(always)]
    pub fn context_for(&self, core: usize) -> usize {
        if self.is_mp() { core } else { 0 }
    }
}

impl Partition {
    /// Its endpoint ID.
    pub fn id(&self) -> PartId {
        PartId::new(self.config.id)
    }

    /// True if it answers messages (booted and not aborted).
    pub fn is_alive(&self) -> bool {
        self.state == PartitionState::Running
    }
}

/// State kept for one normal-world endpoint (the OS or one VM).
#[derive(Clone, Debug)]
pub struct NwdEndpoint {
    /// Its ID.
    pub id: PartitionId,
    /// The version it negotiated, if it did.
    pub version: Option<Version>,
    /// RX/TX buffers it mapped.
    pub buffers: Option<Buffers>,
}

impl NwdEndpoint {
    /// A fresh endpoint.
    pub fn new(id: PartitionId) -> Self {
        Self {
            id,
            version: None,
            buffers: None,
        }
    }

    /// The version its calls are answered in: the negotiated one, else v1.0.
    pub fn effective_version(&self) -> Version {
        self.version.unwrap_or(Version::V1_0)
    }
}

/// The partition table: every partition and instance the manager keeps,
/// each in its [`SlotId`]. It owns the table; the manager and the ABI
/// handlers reach a partition through its slot (`table[slot]`), never
/// through a bare index, and a slot is reused only once its partition is
/// [`PartitionState::Free`].
#[derive(Debug, Default)]
pub struct Partitions {
    list: Vec<Partition>,
}

impl Partitions {
    /// An empty table.
    pub const fn new() -> Self {
        Self { list: Vec::new() }
    }

    /// Every slot's partition, in slot order.
    #[inline(always)]
    pub fn as_slice(&self) -> &[Partition] {
        &self.list
    }

    /// Every slot's partition, mutably (host tests poke at them).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [Partition] {
        &mut self.list
    }

    /// How many slots are in use or were (a freed slot counts).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True before the first partition is made.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The partitions, in slot order.
    #[inline(always)]
    pub fn iter(&self) -> core::slice::Iter<'_, Partition> {
        self.list.iter()
    }

    /// The partitions with their slots.
    pub fn slots(&self) -> impl Iterator<Item = (SlotId, &Partition)> {
        self.list
            .iter()
            .enumerate()
            .map(|(s, p)| (SlotId::new(s as u16), p))
    }

    /// The partition in `slot`, if there is such a slot.
    #[inline(always)]
    pub fn get(&self, slot: SlotId) -> Option<&Partition> {
        self.list.get(slot.index())
    }

    /// The slot of the partition with ID `id`, by a walk of the table (the
    /// manager tries the context table's index first).
    pub fn find(&self, id: PartId) -> Option<SlotId> {
        self.list
            .iter()
            .position(|p| p.id() == id)
            .map(|s| SlotId::new(s as u16))
    }

    /// The slot a new partition goes into: the first freed one, else a new one.
    pub fn free_slot(&self) -> SlotId {
        let free = self
            .list
            .iter()
            .position(|p| p.state == PartitionState::Free);
        SlotId::new(free.unwrap_or(self.list.len()) as u16)
    }

    /// Puts `p` into `slot` (one [`Partitions::free_slot`] named).
    pub fn put(&mut self, slot: SlotId, p: Partition) {
        match self.list.get_mut(slot.index()) {
            Some(old) => *old = p,
            None => self.list.push(p),
        }
    }
}

impl core::ops::Index<SlotId> for Partitions {
    type Output = Partition;
    #[inline(always)]
    fn index(&self, slot: SlotId) -> &Partition {
        &self.list[slot.index()]
    }
}

impl core::ops::IndexMut<SlotId> for Partitions {
    #[inline(always)]
    fn index_mut(&mut self, slot: SlotId) -> &mut Partition {
        &mut self.list[slot.index()]
    }
}

impl<'a> IntoIterator for &'a Partitions {
    type Item = &'a Partition;
    type IntoIter = core::slice::Iter<'a, Partition>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}
