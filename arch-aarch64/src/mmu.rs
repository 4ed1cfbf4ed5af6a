//! The EL2 stage-1 translation: an identity map built with aarch64-paging,
//! with W^X enforced (text RX, rodata R, everything writable XN).

pub use aarch64_paging::MapError;
use aarch64_paging::descriptor::El23Attributes as A;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El2, MemoryRegion};
use spin::mutex::SpinMutex;

use aarch64_cpu::registers::{MAIR_EL2, SCTLR_EL2, TCR_EL2};

use crate::sysreg;

/// What a region of the map holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Code: read-only, executable.
    Text,
    /// Constants: read-only, never executable.
    ReadOnly,
    /// Data, stacks, heap, secure memory the SPMC manages: read-write, never executable.
    ReadWrite,
    /// Device registers: Device-nGnRE, never executable.
    Device,
    /// Normal-world memory (NS bit set): read-write, never executable.
    NonSecure,
}

/// One range to identity-map.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// What it holds.
    pub kind: Kind,
}

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __image_end: u8;
}

/// The image's own ranges, from the linker script's symbols (crate docs):
/// its code, its constants, and its data, `.bss`, heap and stacks up to
/// `__image_end`. Every platform maps these first, then its devices and
/// the memory it manages.
pub fn image_regions() -> [Region; 3] {
    [
        Region {
            start: &raw const __text_start as usize,
            end: &raw const __text_end as usize,
            kind: Kind::Text,
        },
        Region {
            start: &raw const __rodata_start as usize,
            end: &raw const __rodata_end as usize,
            kind: Kind::ReadOnly,
        },
        Region {
            start: &raw const __data_start as usize,
            end: &raw const __image_end as usize,
            kind: Kind::ReadWrite,
        },
    ]
}

/// MAIR_EL2: index 0 Device-nGnRE, index 1 Normal write-back RA/WA.
pub const MAIR: u64 = MAIR_EL2::Attr0_Device::nonGathering_nonReordering_EarlyWriteAck.value
    | MAIR_EL2::Attr1_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc.value
    | MAIR_EL2::Attr1_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc.value;
/// TCR_EL2 (E2H=0): T0SZ=25 (39-bit VA, root level 1), IRGN0=ORGN0=WB RA/WA,
/// SH0 inner shareable, TG0 4K, PS 40 bits, RES1 bits 23 and 31 (which
/// aarch64-cpu does not name). With feature `va48`: T0SZ=16 (48-bit VA, root
/// level 0), PS 48 bits.
pub const TCR: u64 = SPACE
    | TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable.value
    | TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable.value
    | TCR_EL2::SH0::Inner.value
    | TCR_EL2::TG0::KiB_4.value
    | TCR_RES1;
/// TCR_EL2 bits 23 and 31: RES1 when E2H is 0.
const TCR_RES1: u64 = (1 << 23) | (1 << 31);
#[cfg(not(feature = "va48"))]
const SPACE: u64 = TCR_EL2::T0SZ.val(25).value | TCR_EL2::PS::Bits_40.value;
#[cfg(feature = "va48")]
const SPACE: u64 = TCR_EL2::T0SZ.val(16).value | TCR_EL2::PS::Bits_48.value;
/// The root level of the map ([`TCR`]'s T0SZ decides it).
pub const ROOT_LEVEL: usize = if cfg!(feature = "va48") { 0 } else { 1 };
/// RES1 bits of SCTLR_EL2 in the non-VHE layout (aarch64-cpu does not name them).
const SCTLR_RES1: u64 = (1 << 4)
    | (1 << 5)
    | (1 << 11)
    | (1 << 16)
    | (1 << 18)
    | (1 << 22)
    | (1 << 23)
    | (1 << 28)
    | (1 << 29);
/// SCTLR_EL2 with the boot map: M, C, SA, I.
pub const SCTLR_BOOT: u64 = SCTLR_RES1
    | SCTLR_EL2::M::Enable.value
    | SCTLR_EL2::C::Cacheable.value
    | SCTLR_EL2::SA::Enable.value
    | SCTLR_EL2::I::Cacheable.value;
/// SCTLR_EL2 with the final map: also WXN (writable memory is never executable).
pub const SCTLR: u64 = SCTLR_BOOT | SCTLR_EL2::WXN::Enable.value;

// The named fields spell the same values as the architecture's bit numbers.
const _: () = assert!(MAIR == 0x04 | (0xff << 8));
#[cfg(not(feature = "va48"))]
const _: () = assert!(SPACE == 25 | (2 << 16));
#[cfg(feature = "va48")]
const _: () = assert!(SPACE == 16 | (5 << 16));
const _: () = assert!(TCR == SPACE | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (1 << 31));
const _: () = assert!(SCTLR_BOOT == SCTLR_RES1 | 1 | (1 << 2) | (1 << 3) | (1 << 12));
const _: () = assert!(SCTLR == SCTLR_BOOT | (1 << 19));

/// The final map's root, read by the secondary cores' entry code.
pub static mut FINAL_ROOT: u64 = 0;

static MAP: SpinMutex<Option<IdMap<El2>>> = SpinMutex::new(None);

fn attributes(kind: Kind) -> A {
    let normal = A::VALID | A::ATTRIBUTE_INDEX_1 | A::INNER_SHAREABLE | A::ACCESSED | A::USER_RES1;
    match kind {
        Kind::Text => normal | A::READ_ONLY,
        Kind::ReadOnly => normal | A::READ_ONLY | A::XN,
        Kind::ReadWrite => normal | A::XN,
        Kind::NonSecure => normal | A::XN | A::NS,
        Kind::Device => A::VALID | A::ATTRIBUTE_INDEX_0 | A::ACCESSED | A::USER_RES1 | A::XN,
    }
}

/// Builds the map from `regions` and turns the MMU on for this core.
///
/// # Safety
///
/// `regions` must map every byte the running program touches (its image,
/// stacks, heap and devices) with the right kind, and must not map memory
/// that another agent may change the attributes of.
pub unsafe fn enable(regions: &[Region]) -> Result<(), MapError> {
    let mut map = IdMap::new(ROOT_LEVEL, El2);
    for r in regions {
        map.map_range(&MemoryRegion::new(r.start, r.end), attributes(r.kind))?;
    }
    let mut slot = MAP.lock();
    let map = slot.insert(map);
    // The boot map is live: MAIR and TCR already hold these values. Switch
    // TTBR0_EL2 to the final map; both map the running code to the same
    // physical memory with the same memory type.
    // SAFETY: the caller guarantees that the map covers everything in use.
    let _ = unsafe { map.activate() };
    let root = map.root_address().0 as u64;
    drop(slot);
    // SAFETY: written once, here, before any secondary core can start.
    unsafe { FINAL_ROOT = root };
    // SAFETY: as above; drops the boot map's TLB entries and sets WXN.
    unsafe { turn_on() };
    Ok(())
}

/// Invalidates the EL2 TLB and sets SCTLR_EL2.
///
/// # Safety
///
/// TTBR0_EL2, TCR_EL2 and MAIR_EL2 must describe a map of the running program.
unsafe fn turn_on() {
    // SAFETY: invalidating the EL2 TLB has no effect but refetching translations.
    unsafe {
        core::arch::asm!(
            "tlbi alle2",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
    // SAFETY: the caller guarantees the translation registers are ready.
    unsafe { sysreg::write_sctlr_el2(SCTLR) };
    sysreg::isb();
}

/// Why a late mapping failed.
#[derive(Debug)]
pub enum MmuError {
    /// The MMU has not been enabled yet.
    NotEnabled,
    /// aarch64-paging refused the range.
    Map(MapError),
}

/// What went wrong and where, for log lines: a name and the address (or
/// flags, or descriptor) aarch64-paging reported, printed in hex, instead
/// of its derived `Debug` or its `Display` (cheaper in the image).
pub fn describe(e: &MapError) -> (&'static str, usize) {
    match e {
        MapError::AddressRange(va) => ("virtual address out of range", va.0),
        MapError::InvalidVirtualAddress(va) => ("invalid virtual address", va.0),
        MapError::RegionBackwards(r) => ("region ends before its start", r.start().0),
        MapError::PteUpdateFault(d) => ("page table entry update failed", *d),
        MapError::InvalidFlags(flags) => ("unsupported flags", *flags),
        MapError::BreakBeforeMakeViolation(r) => ("break-before-make violation", r.start().0),
    }
}

impl core::fmt::Display for MmuError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (what, n) = match self {
            Self::NotEnabled => return f.write_str("MMU not enabled"),
            Self::Map(e) => describe(e),
        };
        write!(
            f,
            "{} {}",
            spmc::text::Text(what),
            spmc::text::Hex(n as u64)
        )
    }
}

/// Maps a further range while the MMU is on (for example a normal-world buffer).
pub fn map(region: Region) -> Result<(), MmuError> {
    let mut slot = MAP.lock();
    let map = slot.as_mut().ok_or(MmuError::NotEnabled)?;
    map.map_range(
        &MemoryRegion::new(region.start, region.end),
        attributes(region.kind),
    )
    .map_err(MmuError::Map)
}

/// True if `va` has a valid EL2 stage-1 translation now (AT S1E2R): a
/// page something else mapped (the core's normal-world buffers) that a
/// temporary mapping must leave alone.
pub fn is_mapped(va: usize) -> bool {
    let par: u64;
    // SAFETY: an address translation and PAR_EL1's save and restore: no
    // memory is touched, and PAR_EL1 (which may hold a vCPU's EL1 state)
    // is put back as it was.
    unsafe {
        core::arch::asm!(
            "mrs {saved}, par_el1",
            "at s1e2r, {va}",
            "isb",
            "mrs {par}, par_el1",
            "msr par_el1, {saved}",
            "isb",
            va = in(reg) va,
            saved = out(reg) _,
            par = out(reg) par,
            options(nostack, preserves_flags)
        )
    };
    // PAR_EL1.F: the translation faulted.
    par & 1 == 0
}

/// Removes a mapping made with [`map`] (and invalidates the EL2 TLB for it).
pub fn unmap(start: usize, end: usize) -> Result<(), MmuError> {
    let mut slot = MAP.lock();
    let map = slot.as_mut().ok_or(MmuError::NotEnabled)?;
    map.map_range(&MemoryRegion::new(start, end), A::empty())
        .map_err(MmuError::Map)
}
