//! What the core needs from the machine, as one trait.
//!
//! The platform layer implements it with raw memory and system registers;
//! the host tests implement it with vectors that record what the core asked
//! for ([`crate::testing::FakePlatform`], feature `testing`).

use crate::addr::{Ipa, IpaSpace, Pa};

/// A memory access the platform refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// The range is not memory the SPMC can reach (or not mapped for it).
    NotAccessible,
    /// The range could not be mapped (no memory for tables, or a bad range).
    MapFailed,
    /// The access took an external abort: no memory answered there (a
    /// normal-world range the manifest names but the machine lacks). The
    /// access may have stopped part-way.
    Aborted,
}

/// Where the SPMC reads and writes memory, and the hardware side of stage 2.
///
/// Contract for implementors: `read`/`write`/`zero`/`copy` touch exactly
/// the bytes named and nothing else; secure ranges are only those of the
/// SPMC's own memory (the pool and the partition packages); non-secure ranges
/// only those mapped with [`Platform::map_ns`].
pub trait Platform {
    /// Copies `out.len()` bytes at `pa` into `out`.
    fn read(&mut self, pa: Pa, out: &mut [u8]) -> Result<(), MemError>;
    /// Copies `data` to `pa`.
    fn write(&mut self, pa: Pa, data: &[u8]) -> Result<(), MemError>;
    /// Writes `len` zero bytes at `pa`.
    fn zero(&mut self, pa: Pa, len: u64) -> Result<(), MemError>;
    /// Copies `len` bytes from `src` to `dst` (the ranges do not overlap).
    fn copy(&mut self, dst: Pa, src: Pa, len: u64) -> Result<(), MemError>;
    /// [`Platform::copy`] of what a partition will execute (its image, a
    /// template's instance), then made visible to instruction fetches (on
    /// hardware, the I-caches invalidated). Data (a message's payload) goes
    /// through `copy`, which leaves the I-caches alone.
    fn copy_code(&mut self, dst: Pa, src: Pa, len: u64) -> Result<(), MemError> {
        self.copy(dst, src, len)
    }

    /// True if `[pa, pa + len)` is wholly normal-world RAM (never secure
    /// memory): on hardware, inside the SPMC manifest's `ns-memory` ranges.
    fn is_ns_ram(&self, pa: Pa, len: u64) -> bool;
    /// True if `[pa, pa + len)` touches secure RAM (trusted SRAM with the
    /// SPMC manifest, the SPMC's own region, the packages, the pool): a
    /// partition's device region must never reach it.
    fn overlaps_secure_ram(&self, pa: Pa, len: u64) -> bool;
    /// Maps normal-world memory for the SPMC's own access (NS bit set).
    fn map_ns(&mut self, pa: Pa, len: u64) -> Result<(), MemError>;
    /// Removes a mapping made by [`Platform::map_ns`].
    fn unmap_ns(&mut self, pa: Pa, len: u64);

    /// True if the SPMC's heap has at least `bytes` free (checked before
    /// building a partition, so a full heap refuses it instead of aborting).
    fn heap_available(&self, bytes: usize) -> bool;

    /// Invalidates the TLB entries of stage-2 translations of `vmid` for
    /// `[ipa, ipa + len)` in `space`, and the combined stage-1 entries that
    /// may cache them, on every core; returns when done.
    fn invalidate_stage2(&mut self, vmid: u16, space: IpaSpace, ipa: Ipa, len: u64);

    /// Puts the EL1 system registers of the vCPU whose exit is being
    /// handled on this core into its [`crate::vcpu::Context`] (the hardware
    /// may hold them lazily), so the core can read and change them there;
    /// the next run of that vCPU loads them back. Called on fault exits only.
    fn vcpu_el1_to_context(&mut self);

    /// How many VMIDs the hardware tags stage-2 translations with: every
    /// partition and instance has its own, from 1 to `vmid_limit() - 1`
    /// (0 is never used). 8-bit VMIDs unless the platform says otherwise
    /// (FEAT_VMID16 gives 16 bits).
    fn vmid_limit(&self) -> u16 {
        0xFF
    }

    /// Raises the schedule receiver interrupt (DEN0077 v1.2 chapter 10, the SGI
    /// [`crate::notifications::SRI_INTID`]) for the normal world on this
    /// core: on a GICv3, a Group 1 non-secure SGI to the core itself. The
    /// default does nothing (a platform whose normal world has no such
    /// interrupt; its receivers poll FFA_NOTIFICATION_INFO_GET).
    fn send_sri(&mut self) {}

    /// The linear index of the core this call runs on (0 for the primary
    /// core on QEMU virt): context n of an MP partition runs on core n only.
    fn core_index(&self) -> usize;

    // ------------------------------------------------------------------
    // Secure interrupts (spmc::interrupts; DEN0077 v1.2 chapter 9). The
    // defaults are a platform without an interrupt controller driver: it
    // configures nothing and never reports a secure interrupt.
    // ------------------------------------------------------------------

    /// Configures interrupt `intid` as Group 1 Secure, with `priority` and
    /// the trigger `level` (else edge), enabled and routed to core
    /// `core` (an SPI; a PPI is configured on every core, as each core's
    /// redistributor has its own). False if the controller refused it.
    fn configure_secure_interrupt(
        &mut self,
        _intid: u32,
        _priority: u8,
        _level: bool,
        _core: usize,
    ) -> bool {
        false
    }

    /// Disables interrupt `intid` at the controller (its owner is gone).
    fn disable_interrupt(&mut self, _intid: u32) {}

    /// Acknowledges the highest-priority pending secure interrupt of this
    /// core (at EL2, ICC_IAR1_EL1 in Secure state) and drops the running
    /// priority; `None` if none is pending (the interrupt that stopped the
    /// partition was the normal world's). The interrupt stays active until
    /// [`Platform::deactivate_interrupt`] or the owning partition's end of
    /// the virtual interrupt linked to it.
    fn acknowledge_secure_interrupt(&mut self) -> Option<u32> {
        None
    }

    /// Deactivates interrupt `intid` at the SPMC's own hand (one that no
    /// partition will end: its owner is gone, or it has no owner).
    fn deactivate_interrupt(&mut self, _intid: u32) {}
}
