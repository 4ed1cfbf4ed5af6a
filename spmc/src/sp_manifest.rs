//! Secure partition packages and partition manifests.
//!
//! A package (TF-A `sptool` format) is a header, the partition manifest (an
//! FDT following the FF-A manifest binding 1.0, `arm,ffa-manifest-1.0`) and
//! the image. [`parse_manifest`] turns a manifest into a validated
//! [`PartitionConfig`]; every defect is its own [`SpError`], so the boot log
//! names it in one line and only that partition is refused.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use dtoolkit::fdt::{Fdt, FdtNode};
use dtoolkit::{Node, Property};

use crate::addr::{Ipa, PAGE_SIZE};
use crate::ffa::{PartitionId, Version, is_secure_id};
use crate::manifest::{fdt_error_str, fdt_total_size};
use crate::text::{Hex, Text, hex};

/// `SPKG` little-endian: the package magic.
pub const PACKAGE_MAGIC: u32 = 0x474b_5053;
/// Bytes of the package header we read.
pub const PACKAGE_HEADER_SIZE: usize = 24;

/// The header of an SP package (TF-A `tools/sptool/sptool.py`, version 1 and 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackageHeader {
    /// Format version.
    pub version: u32,
    /// Offset of the partition manifest.
    pub pm_offset: u32,
    /// Size of the partition manifest.
    pub pm_size: u32,
    /// Offset of the image.
    pub img_offset: u32,
    /// Size of the image.
    pub img_size: u32,
}

/// A partition's UUID as the four little-endian 32-bit words FF-A registers use (§5.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uuid(pub [u32; 4]);

impl Uuid {
    /// The nil UUID (matches every partition where the spec says so).
    pub const NIL: Self = Self([0; 4]);

    /// True for the nil UUID.
    pub fn is_nil(&self) -> bool {
        *self == Self::NIL
    }

    /// From w1-w4 (PARTITION_INFO_GET) style registers.
    pub fn from_words(w: [u32; 4]) -> Self {
        Self(w)
    }

    /// From two 64-bit registers (REQ2 x2/x3, PARTITION_INFO_GET_REGS x1/x2).
    pub fn from_u64_pair(lo: u64, hi: u64) -> Self {
        Self([lo as u32, (lo >> 32) as u32, hi as u32, (hi >> 32) as u32])
    }

    /// To two 64-bit registers.
    pub fn to_u64_pair(self) -> (u64, u64) {
        (
            self.0[0] as u64 | (self.0[1] as u64) << 32,
            self.0[2] as u64 | (self.0[3] as u64) << 32,
        )
    }

    /// The 16 bytes as they sit in memory descriptors (the words little-endian).
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        for (i, w) in self.0.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        b
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6],
            b[7],
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

/// Messaging methods a partition declares (manifest `messaging-method`, and the
/// properties of its partition information descriptor, Table 6.1 of DEN0077 v1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Messaging(pub u32);

impl Messaging {
    /// Receives FFA_MSG_SEND_DIRECT_REQ.
    pub const DIRECT_RECV: u32 = 1 << 0;
    /// Sends FFA_MSG_SEND_DIRECT_REQ.
    pub const DIRECT_SEND: u32 = 1 << 1;
    /// Sends and receives indirect messages.
    pub const INDIRECT: u32 = 1 << 2;
    /// Receives FFA_MSG_SEND_DIRECT_REQ2.
    pub const DIRECT2_RECV: u32 = 1 << 9;
    /// Sends FFA_MSG_SEND_DIRECT_REQ2.
    pub const DIRECT2_SEND: u32 = 1 << 10;
    const KNOWN: u32 = Self::DIRECT_RECV
        | Self::DIRECT_SEND
        | Self::INDIRECT
        | Self::DIRECT2_RECV
        | Self::DIRECT2_SEND;

    /// True if every bit of `m` is declared.
    pub fn has(self, m: u32) -> bool {
        self.0 & m == m
    }
}

/// Access a memory region grants (manifest `attributes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Access {
    /// Read-write, not executable.
    pub const RW: Self = Self {
        read: true,
        write: true,
        exec: false,
    };
    /// Read-write-execute (the image: the partition's own stage 1 enforces W^X).
    pub const RWX: Self = Self {
        read: true,
        write: true,
        exec: true,
    };
    /// Read-only.
    pub const RO: Self = Self {
        read: true,
        write: false,
        exec: false,
    };
}

/// A memory region a partition asks for (manifest `memory-regions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Node name.
    pub name: String,
    /// IPA where the partition sees it.
    pub ipa: Ipa,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// Access granted.
    pub access: Access,
}

/// A device region (manifest `device-regions`): identity-mapped device memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRegion {
    /// Node name.
    pub name: String,
    /// Physical (and IPA) base.
    pub base: u64,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// Writable.
    pub write: bool,
    /// The interrupts of the device the partition owns (`interrupts`:
    /// pairs of <id attributes>), all secure SPIs or PPIs.
    pub interrupts: Vec<InterruptClaim>,
}

/// One interrupt a device region claims (FF-A manifest binding 1.0,
/// `device-regions` `interrupts`: a pair of <id attributes> with priority in
/// bits [7:0], security state in bit 8 (1: secure), configuration in bit 9
/// (1: level), type in bits [11:10] (0b10 SPI, 0b01 PPI, 0b00 SGI)).
/// Only secure SPIs and PPIs may be claimed: an SGI is a software
/// interrupt the SPMC does not hand out, a non-secure one belongs to the
/// normal world (DEN0077 v1.2 §9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptClaim {
    /// The GIC INTID (16-31 PPI, 32-1019 SPI).
    pub id: u32,
    /// Priority (bits [7:0] of the attributes).
    pub priority: u8,
    /// Level triggered (otherwise edge).
    pub level: bool,
}

impl InterruptClaim {
    /// First PPI INTID.
    pub const FIRST_PPI: u32 = 16;
    /// First SPI INTID.
    pub const FIRST_SPI: u32 = 32;
    /// One past the last SPI INTID (1020-1023 are special).
    pub const SPI_END: u32 = 1020;
    const ATTR_SECURE: u32 = 1 << 8;
    const ATTR_LEVEL: u32 = 1 << 9;
    const ATTR_TYPE_SHIFT: u32 = 10;
    const ATTR_KNOWN: u32 = 0xFFF;

    /// Validates one <id attributes> pair.
    pub fn parse(id: u32, attributes: u32) -> Result<Self, SpError> {
        let kind = (attributes >> Self::ATTR_TYPE_SHIFT) & 3;
        let range = match kind {
            0b01 => Self::FIRST_PPI..Self::FIRST_SPI,
            0b10 => Self::FIRST_SPI..Self::SPI_END,
            _ => {
                return Err(SpError::BadInterrupt {
                    id,
                    why: "not an SPI or a PPI",
                });
            }
        };
        if !range.contains(&id) {
            return Err(SpError::BadInterrupt {
                id,
                why: "outside the range of its type",
            });
        }
        if attributes & Self::ATTR_SECURE == 0 {
            return Err(SpError::BadInterrupt {
                id,
                why: "not secure (a normal-world interrupt)",
            });
        }
        if attributes & !Self::ATTR_KNOWN != 0 {
            return Err(SpError::BadInterrupt {
                id,
                why: "reserved attribute bits set",
            });
        }
        Ok(Self {
            id,
            priority: attributes as u8,
            level: attributes & Self::ATTR_LEVEL != 0,
        })
    }

    /// True for a PPI (private to each core).
    pub fn is_ppi(&self) -> bool {
        self.id < Self::FIRST_SPI
    }
}

/// Most interrupts one partition may claim.
pub const MAX_INTERRUPTS_PER_PARTITION: usize = 64;

/// A validated partition manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionConfig {
    /// `description`, or the package node name.
    pub name: String,
    /// FF-A version the partition implements.
    pub version: Version,
    /// UUIDs (at least one, none nil).
    pub uuids: Vec<Uuid>,
    /// Endpoint ID (bit 15 set).
    pub id: PartitionId,
    /// Execution contexts.
    pub vcpu_count: u16,
    /// IPA of the partition's memory: where the package runs in place, or
    /// where the image alone is put (see [`PartitionConfig::in_package`]).
    pub load_ipa: Ipa,
    /// Entry point offset from `load_ipa` (into the package when it runs in
    /// place, into the image otherwise).
    pub entry_offset: u64,
    /// `mem-size`: bytes the partition's memory at `load_ipa` spans (the
    /// image's `.bss` and stack among them), mapped even where the image is
    /// shorter. FF-A manifest binding 1.0 (TF-A's
    /// `docs/components/ffa-manifest-binding.rst`, "Partition Properties");
    /// 0 when absent: just the image.
    pub mem_size: u64,
    /// Set by the loader, not the manifest: the package runs in place (it is
    /// copied whole to `load_ipa`, as Hafnium maps it) and the manifest lies
    /// at this offset in it. `None`: the image alone is copied to `load_ipa`.
    pub in_package: Option<u32>,
    /// Boot order (lower first; partitions without one come last, in manifest order).
    pub boot_order: Option<u32>,
    /// Messaging methods.
    pub messaging: Messaging,
    /// Memory regions besides the image.
    pub memory: Vec<MemoryRegion>,
    /// Device regions.
    pub devices: Vec<DeviceRegion>,
    /// Pass boot information in this general-purpose register (x0-x3).
    pub boot_info_reg: Option<u8>,
    /// Subscribes to VM created / VM destroyed framework messages (bit 0 / bit 1).
    pub vm_availability: u32,
    /// Power management messages it subscribes to (`power-management-messages`,
    /// FF-A manifest binding 1.0): bit 0 CPU_OFF, bit 1 CPU_SUSPEND, bit 2
    /// CPU_SUSPEND_RESUME. Delivered to an MP partition's context on the
    /// core concerned ([`PowerMessages`]).
    pub power_messages: PowerMessages,
    /// `notification-support`: the partition receives notifications
    /// (its bitmaps exist from creation; DEN0077 v1.2 §10.2).
    pub notification_support: bool,
    /// `ns-interrupts-action` (and `managed-exit-virq`): what the SPMC does
    /// with a normal-world interrupt that arrives while the partition runs
    /// (DEN0077 v1.2 §9, docs/interrupts.md "Normal-world interrupts").
    pub ns_interrupts: NsInterruptAction,
}

/// What the SPMC does with a normal-world (non-secure) physical interrupt
/// that arrives while the partition runs: the partition manifest's
/// `ns-interrupts-action` (FF-A manifest binding; DEN0077 v1.2 §9 "Non-secure
/// interrupt signaling"). The order is from least to most permissive: in a
/// call chain a less permissive action of a caller takes precedence
/// ([`NsInterruptAction::Queued`] anywhere in the chain queues it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum NsInterruptAction {
    /// 0: the interrupt stays pending until the partition gives the core
    /// back (its response, FFA_MSG_WAIT, FFA_YIELD); then the normal world
    /// takes it.
    Queued,
    /// 1: signalled after a managed exit: the SPMC injects a virtual
    /// interrupt (vFIQ, or vIRQ with `managed-exit-virq`), the partition
    /// answers its current direct request, and the normal world then takes
    /// the interrupt.
    ManagedExit {
        /// `managed-exit-virq`: signal it as a virtual IRQ, not a virtual FIQ.
        virq: bool,
    },
    /// 2: signalled: the partition is preempted at once (FFA_INTERRUPT to the
    /// normal world, resumed with FFA_RUN). The default when the manifest
    /// names no action (as Hafnium does).
    #[default]
    Signalled,
}

impl NsInterruptAction {
    /// The manifest's `ns-interrupts-action` value, the legacy FF-A v1.0
    /// `managed-exit` flag and `managed-exit-virq` (read only for a managed
    /// exit, as Hafnium does). `None` for a value the binding does not define.
    pub fn from_manifest(
        action: Option<u32>,
        legacy_managed_exit: bool,
        virq: bool,
    ) -> Option<Self> {
        if legacy_managed_exit {
            return Some(Self::ManagedExit { virq });
        }
        match action {
            Some(0) => Some(Self::Queued),
            Some(1) => Some(Self::ManagedExit { virq }),
            None | Some(2) => Some(Self::Signalled),
            Some(_) => None,
        }
    }
}

impl PartitionConfig {
    /// Every interrupt its device regions claim.
    pub fn interrupts(&self) -> impl Iterator<Item = &InterruptClaim> {
        self.devices.iter().flat_map(|d| d.interrupts.iter())
    }
}

/// The power management messages a partition subscribes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerMessages(pub u32);

impl PowerMessages {
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 1 << 0;
    /// CPU_SUSPEND.
    pub const CPU_SUSPEND: u32 = 1 << 1;
    /// CPU_SUSPEND_RESUME (warm boot after a suspend).
    pub const CPU_SUSPEND_RESUME: u32 = 1 << 2;

    /// True if it subscribes to the PSCI function `psci` (a PSCI function
    /// ID: CPU_OFF, or CPU_SUSPEND in its 32- or 64-bit form).
    pub fn wants(self, psci: u32) -> bool {
        let bit = match psci {
            crate::ffa::psci::CPU_OFF => Self::CPU_OFF,
            crate::ffa::psci::CPU_SUSPEND_32 | crate::ffa::psci::CPU_SUSPEND_64 => {
                Self::CPU_SUSPEND
            }
            _ => 0,
        };
        self.0 & bit != 0
    }
}

/// Most execution contexts a partition may declare: the cores of the
/// largest platform this SPMC runs on (8 on QEMU virt, the arch layer's
/// `MAX_CPUS`). An MP partition's context n runs on core n only.
pub const MAX_EXECUTION_CONTEXTS: u32 = 8;

/// Why a partition was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpError {
    /// The package address is not in the secure package area.
    BadPackageAddress(u64),
    /// The package magic is wrong.
    BadPackageMagic(u32),
    /// Offsets or sizes in the package header do not fit.
    BadPackageLayout,
    /// The manifest does not parse as an FDT.
    Malformed(&'static str),
    /// The root `compatible` is not `arm,ffa-manifest-1.0`.
    NotPartitionManifest,
    /// A required property is missing.
    Missing(&'static str),
    /// A property has the wrong size, type or value.
    Bad(&'static str),
    /// Only S-EL1 partitions are supported.
    UnsupportedExceptionLevel(u32),
    /// Only AArch64 partitions are supported.
    UnsupportedExecutionState(u32),
    /// The partition's FF-A version is not one the SPMC implements.
    UnsupportedVersion(u32),
    /// The ID is not a secure partition ID, or the SPMC's own.
    BadId(u32),
    /// The ID is already taken by another partition.
    DuplicateId(PartitionId),
    /// `execution-ctx-count` is 0 or more than the platform's cores.
    ExecutionContexts(u32),
    /// A memory region overlaps the image or another region.
    OverlappingRegions(String),
    /// The image does not fit the package or is empty.
    BadImage,
    /// The secure pool has no room for this partition.
    OutOfMemory,
    /// Building the stage-2 tables failed.
    Stage2,
    /// The partition faulted or gave up during its initialisation.
    BootFailed,
    /// A claimed interrupt is not a secure SPI or PPI in range, or its
    /// attributes are malformed.
    BadInterrupt {
        /// The INTID.
        id: u32,
        /// Why it is refused.
        why: &'static str,
    },
    /// A claimed interrupt is already owned by another partition (or
    /// claimed twice by this one).
    InterruptOwned {
        /// The INTID.
        id: u32,
        /// Its owner.
        owner: PartitionId,
    },
    /// `ns-interrupts-action` is not 0, 1 or 2.
    NsInterruptsAction(u32),
    /// A device region reaches secure memory the SPMC knows (its image, a
    /// package, the pool, or other secure RAM of the platform).
    DeviceOverSecureMemory {
        /// The device region's node name.
        region: String,
        /// What it reaches.
        what: &'static str,
    },
}

impl fmt::Display for SpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPackageAddress(a) => {
                write!(f, "package address {} is outside the package area", Hex(*a))
            }
            Self::BadPackageMagic(m) => write!(f, "not an SP package (magic {})", hex(*m)),
            Self::BadPackageLayout => write!(f, "package header offsets/sizes do not fit"),
            Self::Malformed(why) => write!(f, "manifest FDT is malformed: {}", Text(why)),
            Self::NotPartitionManifest => {
                write!(f, "manifest is not compatible with arm,ffa-manifest-1.0")
            }
            Self::Missing(p) => write!(f, "manifest lacks `{}`", Text(p)),
            Self::Bad(p) => write!(f, "manifest property `{}` has a bad value", Text(p)),
            Self::UnsupportedExceptionLevel(el) => {
                write!(
                    f,
                    "exception-level {} is not supported (only 2, S-EL1)",
                    hex(*el)
                )
            }
            Self::UnsupportedExecutionState(s) => {
                write!(f, "execution-state {} is not AArch64 (0)", hex(*s))
            }
            Self::UnsupportedVersion(v) => write!(f, "ffa-version {} is not supported", hex(*v)),
            Self::BadId(id) => write!(f, "id {} is not a secure partition ID", hex(*id)),
            Self::DuplicateId(id) => {
                write!(f, "id {} is already used by another partition", hex(*id))
            }
            Self::ExecutionContexts(n) => write!(
                f,
                "execution-ctx-count {}: a partition has 1 to {} execution contexts (one per core at most)",
                hex(*n),
                hex(MAX_EXECUTION_CONTEXTS)
            ),
            Self::OverlappingRegions(n) => write!(
                f,
                "memory region `{}` overlaps the image or another region",
                Text(n)
            ),
            Self::BadImage => write!(f, "the image is empty or larger than the package"),
            Self::OutOfMemory => write!(f, "the secure memory pool has no room for it"),
            Self::Stage2 => write!(f, "its stage-2 tables could not be built"),
            Self::BootFailed => write!(f, "it faulted during initialisation"),
            Self::BadInterrupt { id, why } => {
                write!(f, "interrupt {} cannot be claimed: {}", hex(*id), Text(why))
            }
            Self::InterruptOwned { id, owner } => {
                write!(
                    f,
                    "interrupt {} is already owned by partition {}",
                    hex(*id),
                    hex(*owner)
                )
            }
            Self::NsInterruptsAction(v) => write!(
                f,
                "ns-interrupts-action {} is not 0 (queued), 1 (managed exit) or 2 (signalled)",
                hex(*v)
            ),
            Self::DeviceOverSecureMemory { region, what } => {
                write!(
                    f,
                    "device region `{}` overlaps {}",
                    Text(region),
                    Text(what)
                )
            }
        }
    }
}

impl PackageHeader {
    /// Bytes from the package's start to the end of its manifest or image,
    /// whichever lies further.
    pub fn extent(&self) -> u64 {
        let pm = self.pm_offset as u64 + self.pm_size as u64;
        let img = self.img_offset as u64 + self.img_size as u64;
        pm.max(img)
    }

    /// True if the partition runs in place in this package: its entry point
    /// (`entrypoint-offset` from the package's start, as Hafnium reads it:
    /// sptool's layout puts the header at 0, the manifest at 0x1000 and the
    /// image at 0x4000, with an entry offset of 0x4000) lies inside the
    /// package's image. An entry offset below the image's offset would start
    /// the partition in the header or manifest, so such a package is taken
    /// the older way: the image alone at `load-address`, entry offset into it.
    pub fn runs_in_place(&self, entry_offset: u64) -> bool {
        let img = self.img_offset as u64;
        entry_offset >= img && entry_offset < img + self.img_size as u64
    }
}

/// Parses a package header from its first bytes.
pub fn parse_package_header(
    bytes: &[u8; PACKAGE_HEADER_SIZE],
    max_len: u64,
) -> Result<PackageHeader, SpError> {
    let w = |i: usize| {
        u32::from_le_bytes([
            bytes[i * 4],
            bytes[i * 4 + 1],
            bytes[i * 4 + 2],
            bytes[i * 4 + 3],
        ])
    };
    if w(0) != PACKAGE_MAGIC {
        return Err(SpError::BadPackageMagic(w(0)));
    }
    let h = PackageHeader {
        version: w(1),
        pm_offset: w(2),
        pm_size: w(3),
        img_offset: w(4),
        img_size: w(5),
    };
    let fits = |off: u32, size: u32| {
        (off as u64)
            .checked_add(size as u64)
            .is_some_and(|e| e <= max_len)
    };
    if h.pm_offset < PACKAGE_HEADER_SIZE as u32
        || h.pm_size < 40
        || !fits(h.pm_offset, h.pm_size)
        || !fits(h.img_offset, h.img_size)
        || (h.pm_offset as u64) < (h.img_offset as u64)
            && (h.pm_offset as u64 + h.pm_size as u64) > h.img_offset as u64
    {
        return Err(SpError::BadPackageLayout);
    }
    if h.img_size == 0 {
        return Err(SpError::BadImage);
    }
    Ok(h)
}

fn u32_prop(node: &FdtNode<'_>, name: &'static str) -> Result<Option<u32>, SpError> {
    match node.property(name) {
        None => Ok(None),
        Some(p) => p
            .value_as::<u32>()
            .map(Some)
            .map_err(|_| SpError::Bad(name)),
    }
}

/// A required `u32` property: `Missing(name)` when absent. (One helper,
/// so no call site builds an error it then drops.)
#[inline(never)]
fn u32_req(node: &FdtNode<'_>, name: &'static str) -> Result<u32, SpError> {
    match u32_prop(node, name)? {
        Some(v) => Ok(v),
        None => Err(SpError::Missing(name)),
    }
}

/// The properties every memory and device region has (FF-A manifest
/// binding 1.0): `base-address`, `pages-count` and `attributes`, all
/// required (`names[0..3]` name them when missing), at least one page,
/// page-aligned, readable (bit 0) and no attribute bit outside `known`
/// (`Bad(names[3])` otherwise).
#[inline(never)]
fn region_props(
    node: &FdtNode<'_>,
    names: &[&'static str; 4],
    known: u32,
) -> Result<(u64, u32, u32), SpError> {
    let Some(base) = addr_prop(node, "base-address")? else {
        return Err(SpError::Missing(names[0]));
    };
    let Some(pages) = u32_prop(node, "pages-count")? else {
        return Err(SpError::Missing(names[1]));
    };
    let Some(attr) = u32_prop(node, "attributes")? else {
        return Err(SpError::Missing(names[2]));
    };
    if pages == 0 || !base.is_multiple_of(PAGE_SIZE) || attr & 1 == 0 || attr & !known != 0 {
        return Err(SpError::Bad(names[3]));
    }
    Ok((base, pages, attr))
}

fn addr_prop(node: &FdtNode<'_>, name: &'static str) -> Result<Option<u64>, SpError> {
    match node.property(name) {
        None => Ok(None),
        Some(p) => match p.value().len() {
            4 => p
                .value_as::<u32>()
                .map(|v| Some(v as u64))
                .map_err(|_| SpError::Bad(name)),
            8 => p
                .value_as::<u64>()
                .map(Some)
                .map_err(|_| SpError::Bad(name)),
            _ => Err(SpError::Bad(name)),
        },
    }
}

/// A device region's `interrupts` (pairs of <id attributes>), each a
/// secure SPI or PPI claimed once; `before` were claimed by the regions
/// before this one.
fn parse_interrupts(node: &FdtNode<'_>, before: usize) -> Result<Vec<InterruptClaim>, SpError> {
    let Some(p) = node.property("interrupts") else {
        return Ok(Vec::new());
    };
    let raw = p.value();
    if raw.is_empty() || raw.len() % 8 != 0 {
        return Err(SpError::Bad("device-regions/interrupts"));
    }
    if before + raw.len() / 8 > MAX_INTERRUPTS_PER_PARTITION {
        return Err(SpError::Bad("device-regions/interrupts"));
    }
    let mut out = Vec::with_capacity(raw.len() / 8);
    for pair in raw.chunks_exact(8) {
        let id = u32::from_be_bytes([pair[0], pair[1], pair[2], pair[3]]);
        let attr = u32::from_be_bytes([pair[4], pair[5], pair[6], pair[7]]);
        let claim = InterruptClaim::parse(id, attr)?;
        if out.iter().any(|c: &InterruptClaim| c.id == id) {
            return Err(SpError::Bad("device-regions/interrupts"));
        }
        out.push(claim);
    }
    Ok(out)
}

/// Parses and validates a partition manifest. `fallback_name` names the
/// partition in log lines when the manifest has no `description`.
#[inline(never)]
pub fn parse_manifest(blob: &[u8], fallback_name: &str) -> Result<PartitionConfig, SpError> {
    let total = fdt_total_size(blob).map_err(|_| SpError::Malformed("bad header"))?;
    let fdt = Fdt::new(&blob[..total]).map_err(|e| SpError::Malformed(fdt_error_str(&e.kind)))?;
    let root = fdt.root();
    let compatible = root
        .property("compatible")
        .and_then(|p| p.value_as::<&str>().ok());
    if compatible != Some("arm,ffa-manifest-1.0") {
        return Err(SpError::NotPartitionManifest);
    }
    let name = root
        .property("description")
        .and_then(|p| p.value_as::<&str>().ok())
        .unwrap_or(fallback_name)
        .into();

    let version_raw = u32_req(&root, "ffa-version")?;
    let Some(version) =
        Version::from_reg(version_raw).filter(|v| v.major() == 1 && *v <= Version::IMPLEMENTED)
    else {
        return Err(SpError::UnsupportedVersion(version_raw));
    };

    let Some(uuid_prop) = root.property("uuid") else {
        return Err(SpError::Missing("uuid"));
    };
    let raw = uuid_prop.value();
    if raw.is_empty() || raw.len() % 16 != 0 {
        return Err(SpError::Bad("uuid"));
    }
    let uuids: Vec<Uuid> = raw
        .chunks_exact(16)
        .map(|c| {
            let w =
                |i: usize| u32::from_be_bytes([c[i * 4], c[i * 4 + 1], c[i * 4 + 2], c[i * 4 + 3]]);
            Uuid([w(0), w(1), w(2), w(3)])
        })
        .collect();
    if uuids.iter().any(Uuid::is_nil) {
        return Err(SpError::Bad("uuid"));
    }

    let id_raw = u32_req(&root, "id")?;
    if id_raw > 0xFFFF || !is_secure_id(id_raw as u16) || id_raw == 0x8000 || id_raw == 0xFFFF {
        return Err(SpError::BadId(id_raw));
    }

    let vcpu_count = u32_req(&root, "execution-ctx-count")?;
    if vcpu_count == 0 || vcpu_count > MAX_EXECUTION_CONTEXTS {
        return Err(SpError::ExecutionContexts(vcpu_count));
    }
    let el = u32_req(&root, "exception-level")?;
    if el != 2 {
        return Err(SpError::UnsupportedExceptionLevel(el));
    }
    let state = u32_req(&root, "execution-state")?;
    if state != 0 {
        return Err(SpError::UnsupportedExecutionState(state));
    }
    if u32_prop(&root, "xlat-granule")?.is_some_and(|g| g != 0) {
        return Err(SpError::Bad("xlat-granule"));
    }
    let Some(load) = addr_prop(&root, "load-address")? else {
        return Err(SpError::Missing("load-address"));
    };
    if !load.is_multiple_of(PAGE_SIZE) {
        return Err(SpError::Bad("load-address"));
    }
    let entry_offset = addr_prop(&root, "entrypoint-offset")?.unwrap_or(0);
    if !entry_offset.is_multiple_of(4) {
        return Err(SpError::Bad("entrypoint-offset"));
    }
    let mem_size = match addr_prop(&root, "mem-size")? {
        None => 0,
        Some(m) if m == 0 || m > crate::stage2::IPA_LIMIT => return Err(SpError::Bad("mem-size")),
        Some(m) => m,
    };
    let boot_order = u32_prop(&root, "boot-order")?;
    let mm = u32_req(&root, "messaging-method")?;
    if mm & !Messaging::KNOWN != 0 {
        return Err(SpError::Bad("messaging-method"));
    }
    let boot_info_reg = match u32_prop(&root, "gp-register-num")? {
        None => None,
        Some(r) if r <= 3 => Some(r as u8),
        Some(_) => return Err(SpError::Bad("gp-register-num")),
    };
    let power_messages = u32_prop(&root, "power-management-messages")?.unwrap_or(0);
    if power_messages & !7 != 0 {
        return Err(SpError::Bad("power-management-messages"));
    }
    let vm_availability = u32_prop(&root, "vm-availability-messages")?.unwrap_or(0);
    if vm_availability & !3 != 0 {
        return Err(SpError::Bad("vm-availability-messages"));
    }

    // DEN0077 v1.2 §9 / FF-A manifest binding: `ns-interrupts-action`
    // (0 queued, 1 managed exit, 2 signalled), the v1.0 `managed-exit` flag
    // it supersedes, and `managed-exit-virq` (empty). Managed exit is for
    // S-EL1 partitions only (an S-EL0 one has no virtual interrupt to take;
    // Hafnium refuses it too): every partition accepted here is S-EL1.
    let ns_raw = u32_prop(&root, "ns-interrupts-action")?;
    let legacy_me = empty_flag(&root, "managed-exit")?;
    let virq = empty_flag(&root, "managed-exit-virq")?;
    let Some(ns_interrupts) = NsInterruptAction::from_manifest(ns_raw, legacy_me, virq) else {
        return Err(SpError::NsInterruptsAction(ns_raw.unwrap_or(0)));
    };

    let mut memory = Vec::new();
    if let Some(regions) = root.child("memory-regions") {
        for node in regions.children() {
            const NAMES: [&str; 4] = [
                "memory-regions/base-address",
                "memory-regions/pages-count",
                "memory-regions/attributes",
                "memory-regions",
            ];
            let (base, pages, attr) = region_props(&node, &NAMES, 0x7)?;
            memory.push(MemoryRegion {
                name: node.name().into(),
                ipa: Ipa(base),
                pages: pages as u64,
                access: Access {
                    read: true,
                    write: attr & 2 != 0,
                    exec: attr & 4 != 0,
                },
            });
        }
    }
    let mut devices = Vec::new();
    let mut claimed = 0;
    if let Some(regions) = root.child("device-regions") {
        for node in regions.children() {
            const NAMES: [&str; 4] = [
                "device-regions/base-address",
                "device-regions/pages-count",
                "device-regions/attributes",
                "device-regions",
            ];
            // Bits other than read (0) and write (1) are ignored here.
            let (base, pages, attr) = region_props(&node, &NAMES, u32::MAX)?;
            let interrupts = parse_interrupts(&node, claimed)?;
            claimed += interrupts.len();
            devices.push(DeviceRegion {
                name: node.name().into(),
                base,
                pages: pages as u64,
                write: attr & 2 != 0,
                interrupts,
            });
        }
    }

    Ok(PartitionConfig {
        name,
        version,
        uuids,
        id: id_raw as PartitionId,
        vcpu_count: vcpu_count as u16,
        load_ipa: Ipa(load),
        entry_offset,
        mem_size,
        in_package: None,
        boot_order,
        messaging: Messaging(mm),
        memory,
        devices,
        boot_info_reg,
        vm_availability,
        power_messages: PowerMessages(power_messages),
        notification_support: root.property("notification-support").is_some(),
        ns_interrupts,
    })
}

/// An empty (flag) property: present or not; a value is refused.
fn empty_flag(node: &FdtNode<'_>, name: &'static str) -> Result<bool, SpError> {
    match node.property(name) {
        None => Ok(false),
        Some(p) if p.value().is_empty() => Ok(true),
        Some(_) => Err(SpError::Bad(name)),
    }
}
