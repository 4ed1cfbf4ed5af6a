//! The SPMC manifest (TOS_FW_CONFIG), parsed into a validated [`SpmcConfig`].
//!
//! BL2 loads the manifest and BL31 passes its address in x0 when it first
//! enters the SPMC. The `attribute` node is the one TF-A's SPMD also reads
//! (FF-A core manifest binding, `arm,ffa-core-manifest-1.0`); the nodes after
//! it are ours:
//!
//! ```dts
//! / {
//!     compatible = "arm,ffa-core-manifest-1.0";
//!     attribute {
//!         spmc_id = <0x8000>;              // bit 15 set: a secure-world ID
//!         maj_ver = <1>; min_ver = <2>;    // FF-A version the SPMC speaks
//!         exec_state = <0>;                // 0: AArch64
//!         load_address = <0x0 0x0e100000>;
//!         entrypoint = <0x0 0x0e100000>;
//!         binary_size = <0x100000>;
//!     };
//!     spmc {
//!         secure-memory = <0x0 0x0e200000 0x0 0x00e00000>; // pool: base, size
//!     };
//!     memory@40000000 {                      // normal-world RAM, as in
//!         device_type = "ns-memory";         // Hafnium's SPMC manifests;
//!         reg = <0x0 0x40000000 0x40000000>; // in the root's #address-cells
//!     };                                     // and #size-cells
//!     partitions {
//!         sp1 { package = <0x0 0x0e300000>; };             // where BL2 put the SP package
//!     };
//! };
//! ```
//!
//! Every defect is reported as its own [`ManifestError`] variant so that the
//! boot log names the problem in one line.

use alloc::vec::Vec;
use core::fmt;

use dtoolkit::fdt::{Fdt, FdtNode};
use dtoolkit::{Node, Property};

use crate::ffa::{PartitionId, Version};
use crate::text::{Hex, Text, hex};

/// The size of the FDT header (DTSpec §5.2).
const FDT_HEADER_SIZE: usize = 40;
/// FDT magic, big-endian (DTSpec §5.2).
const FDT_MAGIC: u32 = 0xd00d_feed;

/// Where a memory range lies, as a physical base and a size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRange {
    /// Physical base address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl MemRange {
    /// One past the last byte, or `None` if the range wraps.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// True if the two ranges share a byte.
    pub fn overlaps(&self, other: &MemRange) -> bool {
        let (Some(a_end), Some(b_end)) = (self.end(), other.end()) else {
            return true;
        };
        self.base < b_end && other.base < a_end
    }

    /// True if `other` lies wholly inside `self`.
    pub fn contains(&self, other: &MemRange) -> bool {
        match (self.end(), other.end()) {
            (Some(a_end), Some(b_end)) => other.base >= self.base && b_end <= a_end,
            _ => false,
        }
    }
}

/// One secure partition package BL2 placed in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionEntry {
    /// Node name, used in log lines.
    pub name: alloc::string::String,
    /// Physical address of the SP package header.
    pub package: u64,
}

/// The validated SPMC configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpmcConfig {
    /// The SPMC's own endpoint ID (bit 15 set).
    pub spmc_id: PartitionId,
    /// The FF-A version the manifest says the SPMC speaks.
    pub version: Version,
    /// Where BL2 loaded the SPMC image.
    pub load_address: u64,
    /// The SPMC entry point.
    pub entrypoint: u64,
    /// Size reserved for the SPMC image.
    pub binary_size: u32,
    /// Secure memory the SPMC hands out to partitions, if the manifest gives it.
    pub secure_memory: Option<MemRange>,
    /// The machine's normal-world RAM (`memory` nodes with `device_type =
    /// "ns-memory"`): the only memory the normal world may name for its
    /// RX/TX buffers, its buffers and its memory shares. None in the
    /// manifest: every normal-world buffer and share is refused.
    pub ns_memory: Vec<MemRange>,
    /// Partition packages in manifest order.
    pub partitions: Vec<PartitionEntry>,
    /// Which VM may reach which partition, and the templates.
    pub policy: crate::policy::Policy,
}

/// Why a manifest was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// The manifest address is not where BL2 puts it.
    BadAddress(u64),
    /// Fewer bytes than an FDT header, or `totalsize` past the end of the window.
    Truncated {
        /// Bytes the header claims.
        claimed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The FDT magic is wrong.
    BadMagic(u32),
    /// The FDT structure does not parse.
    Malformed(&'static str),
    /// The root `compatible` is not `arm,ffa-core-manifest-1.0`.
    NotCoreManifest,
    /// A required node is missing.
    MissingNode(&'static str),
    /// A required property is missing.
    MissingProperty {
        /// Node path.
        node: &'static str,
        /// Property name.
        property: &'static str,
    },
    /// A property has the wrong size or type.
    BadProperty {
        /// Node path.
        node: &'static str,
        /// Property name.
        property: &'static str,
    },
    /// `spmc_id` does not have bit 15 set, or has bits above 15.
    BadSpmcId(u32),
    /// The FF-A version is not one this SPMC implements.
    UnsupportedVersion {
        /// Major version in the manifest.
        major: u32,
        /// Minor version in the manifest.
        minor: u32,
    },
    /// `exec_state` is not AArch64.
    BadExecState(u32),
    /// The secure memory pool is empty, unaligned or wraps.
    BadSecureMemory(MemRange),
    /// A partition node lacks a package address.
    BadPartition(alloc::string::String),
    /// A normal-world memory range is empty, unaligned, wraps, or overlaps
    /// the secure pool, the SPMC's image or another normal-world range.
    BadNsMemory(MemRange),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAddress(a) => {
                write!(f, "manifest address {} is outside secure memory", Hex(*a))
            }
            Self::Truncated { claimed, available } => write!(
                f,
                "manifest truncated: header claims {} bytes, {} available",
                Hex(*claimed as u64),
                Hex(*available as u64)
            ),
            Self::BadMagic(m) => write!(f, "manifest is not an FDT (magic {})", hex(*m)),
            Self::Malformed(why) => write!(f, "manifest FDT is malformed: {}", Text(why)),
            Self::NotCoreManifest => {
                write!(
                    f,
                    "manifest root is not compatible with arm,ffa-core-manifest-1.0"
                )
            }
            Self::MissingNode(n) => write!(f, "manifest has no `{}` node", Text(n)),
            Self::MissingProperty { node, property } => {
                write!(
                    f,
                    "manifest node `{}` has no `{}` property",
                    Text(node),
                    Text(property)
                )
            }
            Self::BadProperty { node, property } => {
                write!(
                    f,
                    "manifest property `{}/{}` has a bad value",
                    Text(node),
                    Text(property)
                )
            }
            Self::BadSpmcId(id) => {
                write!(
                    f,
                    "manifest spmc_id {} is not a secure ID (bit 15 must be set)",
                    hex(*id)
                )
            }
            Self::UnsupportedVersion { major, minor } => write!(
                f,
                "manifest maj_ver {}, min_ver {} is not an FF-A version this SPMC implements ({} at most)",
                hex(*major),
                hex(*minor),
                hex(Version::IMPLEMENTED.bits())
            ),
            Self::BadExecState(s) => {
                write!(f, "manifest exec_state {} is not AArch64 (0)", hex(*s))
            }
            Self::BadSecureMemory(r) => write!(
                f,
                "manifest secure-memory {}+{} is empty, unaligned or wraps",
                Hex(r.base),
                Hex(r.size)
            ),
            Self::BadNsMemory(r) => write!(
                f,
                "manifest ns-memory {}+{} is empty, unaligned, wraps or overlaps",
                Hex(r.base),
                Hex(r.size)
            ),
            Self::BadPartition(name) => {
                write!(
                    f,
                    "manifest partition `{}` has no valid `package` address",
                    Text(name)
                )
            }
        }
    }
}

/// The size the FDT header at the start of `window` claims, checked against the window.
///
/// The platform calls this first to learn how many bytes to hand to [`parse`].
pub fn fdt_total_size(window: &[u8]) -> Result<usize, ManifestError> {
    if window.len() < FDT_HEADER_SIZE {
        return Err(ManifestError::Truncated {
            claimed: FDT_HEADER_SIZE,
            available: window.len(),
        });
    }
    let be32 =
        |o: usize| u32::from_be_bytes([window[o], window[o + 1], window[o + 2], window[o + 3]]);
    let magic = be32(0);
    if magic != FDT_MAGIC {
        return Err(ManifestError::BadMagic(magic));
    }
    let total = be32(4) as usize;
    if total < FDT_HEADER_SIZE || total > window.len() {
        return Err(ManifestError::Truncated {
            claimed: total,
            available: window.len(),
        });
    }
    Ok(total)
}

/// Reads a `u32` property.
fn prop_u32(
    node: &FdtNode<'_>,
    path: &'static str,
    name: &'static str,
) -> Result<Option<u32>, ManifestError> {
    match node.property(name) {
        None => Ok(None),
        Some(p) => p
            .value_as::<u32>()
            .map(Some)
            .map_err(|_| ManifestError::BadProperty {
                node: path,
                property: name,
            }),
    }
}

/// Reads an address-sized property written as one or two cells.
pub(crate) fn prop_addr(
    node: &FdtNode<'_>,
    path: &'static str,
    name: &'static str,
) -> Result<Option<u64>, ManifestError> {
    match node.property(name) {
        None => Ok(None),
        Some(p) => match p.value().len() {
            4 => p.value_as::<u32>().map(|v| Some(v as u64)),
            8 => p.value_as::<u64>().map(Some),
            _ => {
                return Err(ManifestError::BadProperty {
                    node: path,
                    property: name,
                });
            }
        }
        .map_err(|_| ManifestError::BadProperty {
            node: path,
            property: name,
        }),
    }
}

/// A required `u32` property (`MissingProperty` when absent): one helper,
/// so no call site builds an error it then drops.
#[inline(never)]
fn req_u32(
    node: &FdtNode<'_>,
    path: &'static str,
    name: &'static str,
) -> Result<u32, ManifestError> {
    match prop_u32(node, path, name)? {
        Some(v) => Ok(v),
        None => Err(ManifestError::MissingProperty {
            node: path,
            property: name,
        }),
    }
}

fn required<T>(
    v: Option<T>,
    node: &'static str,
    property: &'static str,
) -> Result<T, ManifestError> {
    v.ok_or(ManifestError::MissingProperty { node, property })
}

/// Parses and validates the SPMC manifest in `blob` (exactly the FDT's `totalsize` bytes,
/// or more: trailing bytes are ignored).
#[inline(never)]
pub fn parse(blob: &[u8]) -> Result<SpmcConfig, ManifestError> {
    let total = fdt_total_size(blob)?;
    let fdt =
        Fdt::new(&blob[..total]).map_err(|e| ManifestError::Malformed(fdt_error_str(&e.kind)))?;
    let root = fdt.root();

    let compatible_ok = root
        .property("compatible")
        .and_then(|p| p.value_as::<&str>().ok())
        .is_some_and(|c| c == "arm,ffa-core-manifest-1.0");
    if !compatible_ok {
        return Err(ManifestError::NotCoreManifest);
    }

    let Some(attr) = root.child("attribute") else {
        return Err(ManifestError::MissingNode("attribute"));
    };
    const A: &str = "attribute";
    let spmc_id = req_u32(&attr, A, "spmc_id")?;
    if spmc_id & 0x8000 == 0 || spmc_id > 0xFFFF {
        return Err(ManifestError::BadSpmcId(spmc_id));
    }
    let major = req_u32(&attr, A, "maj_ver")?;
    let minor = req_u32(&attr, A, "min_ver")?;
    if major != Version::IMPLEMENTED.major() as u32 || minor > Version::IMPLEMENTED.minor() as u32 {
        return Err(ManifestError::UnsupportedVersion { major, minor });
    }
    let exec_state = prop_u32(&attr, A, "exec_state")?.unwrap_or(0);
    if exec_state != 0 {
        return Err(ManifestError::BadExecState(exec_state));
    }
    let load_address = required(prop_addr(&attr, A, "load_address")?, A, "load_address")?;
    let entrypoint = prop_addr(&attr, A, "entrypoint")?.unwrap_or(load_address);
    let binary_size = req_u32(&attr, A, "binary_size")?;

    let secure_memory = match root.child("spmc") {
        None => None,
        Some(spmc) => match spmc.property("secure-memory") {
            None => None,
            Some(p) => {
                let v = p.value();
                if v.len() != 16 {
                    return Err(ManifestError::BadProperty {
                        node: "spmc",
                        property: "secure-memory",
                    });
                }
                let be64 = |o: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&v[o..o + 8]);
                    u64::from_be_bytes(b)
                };
                let r = MemRange {
                    base: be64(0),
                    size: be64(8),
                };
                if r.size == 0
                    || !r.base.is_multiple_of(4096)
                    || !r.size.is_multiple_of(4096)
                    || r.end().is_none()
                {
                    return Err(ManifestError::BadSecureMemory(r));
                }
                Some(r)
            }
        },
    };

    let image = MemRange {
        base: load_address,
        size: binary_size as u64,
    };
    let ns_memory = ns_memory(&root, &[secure_memory, Some(image)])?;

    let mut partitions = Vec::new();
    if let Some(parts) = root.child("partitions") {
        for node in parts.children() {
            let name: alloc::string::String = node.name().into();
            let package = prop_addr(&node, "partitions", "package")
                .ok()
                .flatten()
                .ok_or_else(|| ManifestError::BadPartition(name.clone()))?;
            partitions.push(PartitionEntry { name, package });
        }
    }

    let policy = match root.child("policy") {
        Some(node) => crate::policy::parse(&node)?,
        None => crate::policy::Policy::default(),
    };

    Ok(SpmcConfig {
        spmc_id: spmc_id as PartitionId,
        version: Version::new(major as u16, minor as u16),
        load_address,
        entrypoint,
        binary_size,
        secure_memory,
        ns_memory,
        partitions,
        policy,
    })
}

/// Reads a big-endian number of `cells` 32-bit cells (1 or 2) at `v[*at..]`.
fn cells(v: &[u8], at: &mut usize, cells: u32) -> Option<u64> {
    let mut n: u64 = 0;
    for _ in 0..cells {
        let b = v.get(*at..*at + 4)?;
        n = (n << 32) | u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64;
        *at += 4;
    }
    Some(n)
}

/// The normal-world RAM: every root child with `device_type = "ns-memory"`
/// (the binding Hafnium's SPMC manifests use; `device_type = "memory"`
/// nodes describe secure memory there and are ignored here), each `reg`
/// entry a range in the root's `#address-cells` and `#size-cells` (DTSpec
/// §2.3.5: 2 and 1 when absent). Ranges must be page-aligned, non-empty, not
/// wrap, and overlap neither the secure ranges given (the pool, the SPMC's
/// own image) nor each other.
#[inline(never)]
fn ns_memory(
    root: &FdtNode<'_>,
    secure: &[Option<MemRange>],
) -> Result<Vec<MemRange>, ManifestError> {
    const R: &str = "/";
    let addr_cells = prop_u32(root, R, "#address-cells")?.unwrap_or(2);
    let size_cells = prop_u32(root, R, "#size-cells")?.unwrap_or(1);
    if !(1..=2).contains(&addr_cells) || !(1..=2).contains(&size_cells) {
        return Err(ManifestError::BadProperty {
            node: R,
            property: "#address-cells",
        });
    }
    let bad_reg = ManifestError::BadProperty {
        node: "memory",
        property: "reg",
    };
    let entry = 4 * (addr_cells + size_cells) as usize;
    let mut out: Vec<MemRange> = Vec::new();
    for node in root.children() {
        let is_ns = node
            .property("device_type")
            .and_then(|p| p.value_as::<&str>().ok())
            .is_some_and(|t| t == "ns-memory");
        if !is_ns {
            continue;
        }
        let Some(reg) = node.property("reg") else {
            return Err(ManifestError::MissingProperty {
                node: "memory",
                property: "reg",
            });
        };
        let v = reg.value();
        if v.is_empty() || !v.len().is_multiple_of(entry) {
            return Err(bad_reg);
        }
        let mut at = 0;
        while at < v.len() {
            let base = cells(v, &mut at, addr_cells).ok_or_else(|| bad_reg.clone())?;
            let size = cells(v, &mut at, size_cells).ok_or_else(|| bad_reg.clone())?;
            let r = MemRange { base, size };
            let clash = secure.iter().flatten().any(|s| s.overlaps(&r))
                || out.iter().any(|o| o.overlaps(&r));
            if size == 0
                || !base.is_multiple_of(4096)
                || !size.is_multiple_of(4096)
                || r.end().is_none()
                || clash
            {
                return Err(ManifestError::BadNsMemory(r));
            }
            out.try_reserve(1)
                .map_err(|_| ManifestError::Malformed("no memory for the ns-memory ranges"))?;
            out.push(r);
        }
    }
    Ok(out)
}

/// A short, stable description of an FDT parse error for the boot log.
pub(crate) fn fdt_error_str(kind: &dtoolkit::error::FdtErrorKind) -> &'static str {
    use dtoolkit::error::FdtErrorKind as K;
    match kind {
        K::InvalidMagic => "bad magic",
        K::UnsupportedVersion(_) => "unsupported FDT version",
        K::InvalidLength => "bad length",
        K::InvalidHeader(_) => "bad header",
        K::BadToken(_) => "bad structure token",
        K::InvalidOffset => "offset out of bounds",
        K::InvalidString => "bad string",
        K::InvalidNodeName => "bad node name",
        K::InvalidPropertyName => "bad property name",
        K::MemReserveNotTerminated | K::MemReserveInvalid => "bad memory reservation block",
        _ => "unknown defect",
    }
}
