//! Per-partition stage-2 translation, built with aarch64-paging.
//!
//! A secure partition at S-EL1 has two IPA spaces (Arm ARM, Secure EL2):
//! the secure one, translated by the table in VSTTBR_EL2 into secure physical
//! memory, and the non-secure one (reached through the stage-1 NS bit),
//! translated by the table in VTTBR_EL2 into normal-world memory. Each
//! partition gets one table per space and a VMID that tags its TLB entries.
//!
//! The tables are only *built* with aarch64-paging; they are never activated
//! through it (its `Stage2` regime writes VTTBR_EL2 and invalidates without
//! the NS bit, which is wrong for a secure partition). The arch layer loads
//! VSTTBR_EL2 and VTTBR_EL2 from [`Stage2::vsttbr`] and [`Stage2::vttbr`] in
//! the world switch, and every change to a table here is followed by a TLB
//! invalidation through [`Platform::invalidate_stage2`] for the VMID and the
//! IPA space the change was made in. Mappings use pages only (no blocks), so
//! no change ever splits a live block.

use alloc::vec::Vec;

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes as S2};
use aarch64_paging::idmap::IdTranslation;
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2 as Stage2Format};
use aarch64_paging::{MapError, Mapping};

/// Why a stage-2 change failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum S2Error {
    /// The range is unaligned, empty or beyond the IPA space.
    BadRange,
    /// Part of the range is mapped already.
    AlreadyMapped,
    /// aarch64-paging refused the change.
    Map(MapError),
}

impl From<MapError> for S2Error {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

use crate::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use crate::platform::Platform;
use crate::sp_manifest::Access;

/// Root level of the stage-2 tables: level 1 gives a 39-bit IPA space
/// (VSTCR_EL2/VTCR_EL2.T0SZ = 25, SL0 = 1); with feature `ipa48`, level 0
/// gives 48 bits (T0SZ = 16, SL0 = 2), for a board whose normal-world RAM
/// lies above 512 GiB (sbsa-ref's at 1 TiB: shares map at IPA = PA).
pub const ROOT_LEVEL: usize = if cfg!(feature = "ipa48") { 0 } else { 1 };
/// Size of the IPA space.
pub const IPA_LIMIT: u64 = if cfg!(feature = "ipa48") {
    1 << 48
} else {
    1 << 39
};

type Table = Mapping<IdTranslation<S2>, Stage2Format>;

/// What a stage-2 page maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Normal write-back memory with the given access.
    Memory(Access),
    /// Device-nGnRE memory, never executable.
    Device {
        /// Writable.
        write: bool,
    },
}

/// The stage-2 VMIDs (the hardware's, in VTTBR_EL2/VSTTBR_EL2; not an
/// FF-A ID): every partition and instance has its own, from 1 up to the
/// platform's `vmid_limit()`, and a destroyed instance's goes back for reuse.
#[derive(Debug)]
pub struct Vmids {
    /// VMIDs given back, for reuse.
    free: Vec<u16>,
    /// The lowest VMID never used yet.
    next: u16,
}

impl Default for Vmids {
    fn default() -> Self {
        Self {
            free: Vec::new(),
            next: 1,
        }
    }
}

impl Vmids {
    /// A VMID for a new partition, below `limit` (none left: `None`). It
    /// is the partition's once [`Vmids::keep`]; until then
    /// [`Vmids::give_back`] undoes the take.
    pub fn take(&mut self, limit: u16) -> Option<u16> {
        match self.free.pop() {
            Some(v) => Some(v),
            None if self.next < limit => Some(self.next),
            None => None,
        }
    }

    /// The partition `vmid` was taken for was made: a fresh VMID is used up.
    pub fn keep(&mut self, vmid: u16) {
        if vmid == self.next {
            self.next += 1;
        }
    }

    /// `vmid` is free again: its partition was destroyed, or never made.
    pub fn give_back(&mut self, vmid: u16) {
        if vmid != self.next {
            self.free.push(vmid);
        }
    }
}

/// One partition's stage-2 tables.
#[derive(Debug)]
pub struct Stage2 {
    vmid: u16,
    secure: Table,
    ns: Table,
}

/// A page's translation, as read back from the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Output address.
    pub pa: Pa,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Device memory.
    pub device: bool,
}

fn attributes(kind: Kind) -> S2 {
    let (mem, read, write, exec) = match kind {
        Kind::Memory(a) => (
            S2::MEMATTR_NORMAL_INNER_WB | S2::MEMATTR_NORMAL_OUTER_WB,
            a.read,
            a.write,
            a.exec,
        ),
        Kind::Device { write } => (S2::MEMATTR_DEVICE_nGnRE, true, write, false),
    };
    let ap = match (read, write) {
        (true, true) => S2::S2AP_ACCESS_RW,
        (true, false) => S2::S2AP_ACCESS_RO,
        (false, true) => S2::S2AP_ACCESS_WO,
        (false, false) => S2::S2AP_ACCESS_NONE,
    };
    let mut a = S2::VALID | S2::ACCESS_FLAG | S2::SH_INNER | mem | ap;
    if !exec {
        a |= S2::XN;
    }
    a
}

/// What a valid page descriptor with `flags` grants, mapping to `pa`.
fn translation(flags: S2, pa: Pa) -> Translation {
    let ap = flags & S2::S2AP_ACCESS_RW;
    Translation {
        pa,
        read: ap.contains(S2::S2AP_ACCESS_RO),
        write: ap.contains(S2::S2AP_ACCESS_WO),
        exec: !flags.contains(S2::XN),
        device: flags & S2::MEMATTR_NORMAL_OUTER_WB == S2::empty(),
    }
}

fn region(ipa: Ipa, len: u64) -> Result<MemoryRegion, S2Error> {
    let end = ipa
        .0
        .checked_add(len)
        .filter(|e| {
            *e <= IPA_LIMIT && ipa.is_page_aligned() && len.is_multiple_of(PAGE_SIZE) && len > 0
        })
        .ok_or(S2Error::BadRange)?;
    Ok(MemoryRegion::new(ipa.0 as usize, end as usize))
}

impl Stage2 {
    /// Empty tables for the partition with `vmid`.
    pub fn new(vmid: u16) -> Self {
        Self {
            vmid,
            secure: Table::new(IdTranslation::new(), ROOT_LEVEL, Stage2Format),
            ns: Table::new(IdTranslation::new(), ROOT_LEVEL, Stage2Format),
        }
    }

    /// The VMID.
    pub fn vmid(&self) -> u16 {
        self.vmid
    }

    /// VSTTBR_EL2 value: the secure table's root.
    pub fn vsttbr(&self) -> u64 {
        self.secure.root_address().0 as u64
    }

    /// VTTBR_EL2 value: the non-secure table's root and the VMID (with
    /// feature `one-ipa-space`, the one table's).
    pub fn vttbr(&self) -> u64 {
        self.table_ref(IpaSpace::NonSecure).root_address().0 as u64 | (self.vmid as u64) << 48
    }

    /// The table of `space`. With feature `one-ipa-space` (non-secure EL2,
    /// where a partition has one IPA space) both spaces are the one table:
    /// the non-secure IPAs (shares, at IPA = PA of the general VMs' RAM)
    /// never overlap the partition's own memory, and a clash is refused as
    /// `AlreadyMapped` like any other.
    fn table(&mut self, space: IpaSpace) -> &mut Table {
        match space {
            IpaSpace::NonSecure if !cfg!(feature = "one-ipa-space") => &mut self.ns,
            _ => &mut self.secure,
        }
    }

    fn table_ref(&self, space: IpaSpace) -> &Table {
        match space {
            IpaSpace::NonSecure if !cfg!(feature = "one-ipa-space") => &self.ns,
            _ => &self.secure,
        }
    }

    /// Maps `[ipa, ipa + len)` to `[pa, pa + len)`. The range must not be mapped
    /// already (call [`Stage2::unmap`] first): a new mapping needs no TLB maintenance.
    pub fn map(
        &mut self,
        space: IpaSpace,
        ipa: Ipa,
        pa: Pa,
        len: u64,
        kind: Kind,
    ) -> Result<(), S2Error> {
        if !pa.is_page_aligned() {
            return Err(S2Error::BadRange);
        }
        let r = region(ipa, len)?;
        if self.is_mapped_any(space, ipa, len) {
            return Err(S2Error::AlreadyMapped);
        }
        self.table(space).map_range(
            &r,
            PhysicalAddress(pa.0 as usize),
            attributes(kind),
            Constraints::NO_BLOCK_MAPPINGS,
        )?;
        Ok(())
    }

    /// Unmaps `[ipa, ipa + len)` and invalidates the TLB for it.
    pub fn unmap<P: Platform>(
        &mut self,
        space: IpaSpace,
        ipa: Ipa,
        len: u64,
        platform: &mut P,
    ) -> Result<(), S2Error> {
        let r = region(ipa, len)?;
        self.table(space).map_range(
            &r,
            PhysicalAddress(0),
            S2::empty(),
            Constraints::NO_BLOCK_MAPPINGS,
        )?;
        platform.invalidate_stage2(self.vmid, space, ipa, len);
        Ok(())
    }

    /// The translation of the page holding `ipa`, if it is mapped.
    pub fn lookup(&self, space: IpaSpace, ipa: Ipa) -> Option<Translation> {
        let page = ipa.0 & !(PAGE_SIZE - 1);
        let r = region(Ipa(page), PAGE_SIZE).ok()?;
        let mut found = None;
        let _ = self
            .table_ref(space)
            .walk_range(&r, &mut |mr, desc, _level| {
                if desc.is_valid() {
                    let base = desc.output_address().0 as u64;
                    let off = page - mr.start().0 as u64;
                    found = Some(translation(
                        desc.flags(),
                        Pa(base + off + (ipa.0 & (PAGE_SIZE - 1))),
                    ));
                }
                Ok(())
            });
        found
    }

    /// Every mapped page of `space`, in IPA order, with its translation: the
    /// whole table as the hardware would see it (for the contract checks of
    /// the host tests and the fuzzer, which compare it with the ownership record).
    pub fn mappings(&self, space: IpaSpace) -> Vec<(Ipa, Translation)> {
        let mut out = Vec::new();
        let Ok(all) = region(Ipa(0), IPA_LIMIT) else {
            return out;
        };
        let _ = self
            .table_ref(space)
            .walk_range(&all, &mut |mr, desc, _level| {
                if desc.is_valid() {
                    // Pages only (no block mappings), but a block would be
                    // reported page by page.
                    let (start, end) = (mr.start().0 as u64, mr.end().0 as u64);
                    let base = desc.output_address().0 as u64;
                    let mut ipa = start;
                    while ipa < end {
                        let pa = Pa(base + (ipa - start));
                        out.push((Ipa(ipa), translation(desc.flags(), pa)));
                        ipa += PAGE_SIZE;
                    }
                }
                Ok(())
            });
        out
    }

    /// True if any page of the range is mapped.
    pub fn is_mapped_any(&self, space: IpaSpace, ipa: Ipa, len: u64) -> bool {
        let mut off = 0;
        while off < len {
            if self.lookup(space, Ipa(ipa.0 + off)).is_some() {
                return true;
            }
            off += PAGE_SIZE;
        }
        false
    }

    /// Translates a range that must be mapped, physically contiguous, and
    /// allow `write` if asked; returns its physical base.
    pub fn translate_range(&self, space: IpaSpace, ipa: Ipa, len: u64, write: bool) -> Option<Pa> {
        let first = self.lookup(space, ipa)?;
        let mut off = 0;
        while off < len {
            let t = self.lookup(space, Ipa(ipa.0 + off))?;
            if t.pa.0 != first.pa.0 + off || !t.read || (write && !t.write) || t.device {
                return None;
            }
            off += PAGE_SIZE;
        }
        Some(first.pa)
    }
}
