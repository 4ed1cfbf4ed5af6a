//! The secure memory map: one row per range of secure memory the SPMC
//! manages, with its base, size and owner, for the boot log and for anyone
//! who edits a manifest (issue 16; `cargo xtask map` prints the same layout
//! from the manifests without booting).
//!
//! The core knows its own image (the manifest's `load_address` and
//! `binary_size`), the partition packages BL2 loaded (static partitions'
//! are copied into the pool at load and then idle; a template's stays as
//! the pristine image every instance is copied from), and the pool: each
//! partition's and each live instance's memory, and the free runs (BL2's
//! copy of a static partition's package stays where it was loaded; the
//! partition runs from its copy in the pool). The
//! platform adds what only it knows (its heap outside the image, the
//! firmware's own secure RAM) as extra rows, and prints the table.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::Spmc;
use crate::addr::{PAGE_SIZE, Pa};
use crate::ffa::PartitionId;
use crate::partition::PartitionState;
use crate::platform::Platform;
use crate::policy::{Kind, VmId};
use crate::sp_manifest::{self, PACKAGE_HEADER_SIZE};

/// Who a range of secure memory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The firmware below the SPMC (TF-A's BL1, BL2, BL31 and their data).
    Firmware,
    /// The SPMC itself.
    Spmc,
    /// A partition of the manifest.
    Partition(PartitionId),
    /// A template: its pristine image, never mapped to anyone.
    Template(PartitionId),
    /// A template's instance made for a VM.
    Instance {
        /// Its endpoint ID.
        id: PartitionId,
        /// The VM it belongs to.
        vm: VmId,
    },
    /// Nobody: free pages of the pool.
    Free,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Firmware => String::from("TF-A"),
            Self::Spmc => String::from("SPMC"),
            Self::Partition(id) => format!("SP {id:#06x}"),
            Self::Template(id) => format!("template {id:#06x}"),
            Self::Instance { id, vm } => format!("SP {id:#06x} VM {vm}"),
            Self::Free => String::from("free"),
        };
        f.pad(&s)
    }
}

/// One range of the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// First byte (physical).
    pub base: u64,
    /// Bytes.
    pub size: u64,
    /// Who owns it.
    pub owner: Owner,
    /// What it holds.
    pub what: String,
}

impl Row {
    /// One past the last byte (saturating: a row never wraps in the table).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// The table's heading, aligned with [`Row`]'s `Display`.
pub const HEADER: &str = "base       end          size      owner            what";

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#010x} {:#010x} {:>6} KiB  {:<16} {}",
            self.base,
            self.end(),
            self.size / 1024,
            self.owner,
            self.what
        )
    }
}

/// The first two rows of `rows` (sorted by base) that overlap, if any.
pub fn first_overlap(rows: &[Row]) -> Option<(&Row, &Row)> {
    rows.windows(2)
        .find(|w| w[1].base < w[0].end())
        .map(|w| (&w[0], &w[1]))
}

impl<P: Platform> Spmc<P> {
    /// The secure memory map now: the SPMC's image, each package (static
    /// partitions' as loaded by BL2, templates' pristine images), every
    /// partition's and live instance's memory in the pool with the IPA it is
    /// seen at, the pool's free runs, and `extra` (the platform's own rows),
    /// sorted by base. Called at boot for the log, and by tests.
    pub fn memory_map(&mut self, extra: &[Row]) -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::new();
        for r in extra {
            insert_sorted(&mut rows, r.clone());
        }
        let config = self.config();
        insert_sorted(
            &mut rows,
            Row {
                base: config.load_address,
                size: config.binary_size as u64,
                owner: Owner::Spmc,
                what: String::from("image: code, data, stacks, static heap"),
            },
        );
        let entries = config.partitions.clone();
        for e in &entries {
            let mut hdr = [0u8; PACKAGE_HEADER_SIZE];
            let extent = match self.platform.read(Pa(e.package), &mut hdr) {
                Ok(()) => sp_manifest::parse_package_header(&hdr, u32::MAX as u64)
                    .map(|h| h.extent())
                    .ok(),
                Err(_) => None,
            };
            let size = extent
                .map_or(PAGE_SIZE, |x| x.div_ceil(PAGE_SIZE) * PAGE_SIZE)
                .max(PAGE_SIZE);
            let template = self
                .templates
                .iter()
                .find(|t| t.image.0 >= e.package && t.image.0 < e.package + size);
            let (owner, what) = match (template, extent) {
                (Some(t), _) => (
                    Owner::Template(t.config.partition),
                    format!("package `{}`: pristine image of every instance", e.name),
                ),
                (None, Some(_)) => (
                    Owner::Spmc,
                    format!("package `{}` as BL2 loaded it", e.name),
                ),
                (None, None) => (
                    Owner::Spmc,
                    format!("package `{}`: no valid header", e.name),
                ),
            };
            insert_sorted(
                &mut rows,
                Row {
                    base: e.package,
                    size,
                    owner,
                    what,
                },
            );
        }
        for p in &self.partitions {
            if p.state == PartitionState::Free {
                continue;
            }
            let owner = match p.kind {
                Kind::Static => Owner::Partition(p.id().raw()),
                Kind::Instance { owner } => Owner::Instance {
                    id: p.id().raw(),
                    vm: owner,
                },
            };
            for (i, (ipa, a)) in p.memory.iter().enumerate() {
                // `create_partition` allocates the image first, then each
                // memory region in manifest order.
                let what = match i.checked_sub(1).and_then(|r| p.config.memory.get(r)) {
                    None => format!("`{}` image and RAM at IPA {:#x}", p.config.name, ipa.0),
                    Some(r) => format!(
                        "`{}` region `{}` at IPA {:#x}",
                        p.config.name, r.name, ipa.0
                    ),
                };
                insert_sorted(
                    &mut rows,
                    Row {
                        base: a.base.0,
                        size: a.len(),
                        owner,
                        what,
                    },
                );
            }
        }
        if let Some(pool) = &self.pool {
            for (base, pages) in pool.free_runs() {
                insert_sorted(
                    &mut rows,
                    Row {
                        base: base.0,
                        size: pages * PAGE_SIZE,
                        owner: Owner::Free,
                        what: String::from("pool: free"),
                    },
                );
            }
        }
        rows
    }
}

/// Inserts `row` in base order (a few dozen rows, once at boot: an
/// insertion keeps generic sort code out of the image).
fn insert_sorted(rows: &mut Vec<Row>, row: Row) {
    let at = rows.partition_point(|r| (r.base, r.size) <= (row.base, row.size));
    rows.insert(at, row);
}
