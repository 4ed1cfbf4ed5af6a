//! The binding policy: which normal-world VM may reach which partition.
//!
//! Declared in the SPMC manifest's `policy` node:
//!
//! ```dts
//! policy {
//!     shared = <0x8003>;                   // every VM may reach these
//!     bindings = <1 0x8001>, <2 0x8002>;   // static: VM 1 -> 0x8001, VM 2 -> 0x8002
//!     templates {
//!         vtee {
//!             partition = <0x8010>;        // the template: its ID routes to the caller's instance
//!             instance-ids = <0x8100 64>;  // IDs the instances get: first, how many
//!             pages = <40>;                // memory quota of one instance (4 KiB pages)
//!         };
//!     };
//! };
//! ```
//!
//! The rules (design §"The contract", 2):
//! - a shared partition: every normal-world endpoint;
//! - a statically bound partition: the VMs bound to it, and endpoint 0;
//! - any other static partition: endpoint 0 only (the hypervisor, or the OS
//!   when there is none);
//! - a template's ID (or UUID): the caller's own instance of it;
//! - an instance: the VM it was made for, nobody else (not even endpoint 0).
//!
//! Everything else is FFA_ERROR(DENIED).

use alloc::string::String;
use alloc::vec::Vec;

use dtoolkit::fdt::FdtNode;
use dtoolkit::{Node, Property};

use crate::ffa::PartitionId;
use crate::manifest::ManifestError;

/// A normal-world endpoint ID (a VM's, or 0 for the hypervisor itself).
pub use crate::ids::VmId;

/// A template partition: one instance per VM is made from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateConfig {
    /// Node name.
    pub name: String,
    /// The template partition's ID (from its manifest; the routing key).
    pub partition: PartitionId,
    /// First instance ID.
    pub first_id: PartitionId,
    /// How many instance IDs (and so instances at most).
    pub count: u16,
    /// Memory quota of one instance, in 4 KiB pages.
    pub pages: u64,
}

/// The policy as the manifest declares it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Partitions every normal-world endpoint may reach.
    pub shared: Vec<PartitionId>,
    /// Static bindings (VM, partition).
    pub bindings: Vec<(VmId, PartitionId)>,
    /// Templates.
    pub templates: Vec<TemplateConfig>,
}

fn cells(node: &FdtNode<'_>, name: &'static str) -> Result<Vec<u32>, ManifestError> {
    match node.property(name) {
        None => Ok(Vec::new()),
        Some(p) => {
            let v = p.value();
            if !v.len().is_multiple_of(4) {
                return Err(ManifestError::BadProperty {
                    node: "policy",
                    property: name,
                });
            }
            Ok(v.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }
    }
}

fn secure_id(v: u32, property: &'static str) -> Result<PartitionId, ManifestError> {
    if v & 0x8000 == 0 || v > 0xFFFF {
        return Err(ManifestError::BadProperty {
            node: "policy",
            property,
        });
    }
    Ok(v as PartitionId)
}

/// Parses the `policy` node.
#[inline(never)]
pub fn parse(node: &FdtNode<'_>) -> Result<Policy, ManifestError> {
    let mut shared = Vec::new();
    for v in cells(node, "shared")? {
        shared.push(secure_id(v, "shared")?);
    }
    let raw = cells(node, "bindings")?;
    if !raw.len().is_multiple_of(2) {
        return Err(ManifestError::BadProperty {
            node: "policy",
            property: "bindings",
        });
    }
    let mut bindings = Vec::new();
    for pair in raw.chunks_exact(2) {
        if pair[0] == 0 || pair[0] > 0x7FFF {
            return Err(ManifestError::BadProperty {
                node: "policy",
                property: "bindings",
            });
        }
        bindings.push((VmId::new(pair[0] as u16), secure_id(pair[1], "bindings")?));
    }
    let mut templates = Vec::new();
    if let Some(t) = node.child("templates") {
        for n in t.children() {
            let one = |p: &'static str| -> Result<Vec<u32>, ManifestError> {
                let v = cells(&n, p)?;
                if v.is_empty() {
                    return Err(ManifestError::MissingProperty {
                        node: "policy/templates",
                        property: p,
                    });
                }
                Ok(v)
            };
            let partition = secure_id(one("partition")?[0], "templates/partition")?;
            let ids = one("instance-ids")?;
            let pages = one("pages")?[0] as u64;
            if ids.len() != 2 || ids[1] == 0 || pages == 0 {
                return Err(ManifestError::BadProperty {
                    node: "policy/templates",
                    property: "instance-ids",
                });
            }
            let first_id = secure_id(ids[0], "templates/instance-ids")?;
            // The last ID, first + count - 1, must stay below 0xFFFF: computed
            // in 64 bits so that no count wraps it (a count cut to 16 bits, or
            // a sum that wraps, would hand out normal-world IDs).
            if first_id as u64 + ids[1] as u64 > 0xFFFF {
                return Err(ManifestError::BadProperty {
                    node: "policy/templates",
                    property: "instance-ids",
                });
            }
            templates.push(TemplateConfig {
                name: n.name().into(),
                partition,
                first_id,
                count: ids[1] as u16,
                pages,
            });
        }
    }
    // No ID may mean two things: a template's instance range must not cover
    // a template or a shared/bound partition, and ranges must not overlap.
    for (i, t) in templates.iter().enumerate() {
        let range = t.first_id..t.first_id + t.count;
        let clash = shared
            .iter()
            .chain(bindings.iter().map(|(_, p)| p))
            .any(|p| range.contains(p))
            || templates.iter().any(|o| range.contains(&o.partition))
            || templates[i + 1..]
                .iter()
                .any(|o| o.first_id < range.end && range.start < o.first_id + o.count);
        if clash {
            return Err(ManifestError::BadProperty {
                node: "policy/templates",
                property: "instance-ids",
            });
        }
    }
    Ok(Policy {
        shared,
        bindings,
        templates,
    })
}

/// What a partition is, for the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A partition from the manifest.
    Static,
    /// An instance made from a template for `owner`.
    Instance {
        /// The VM it belongs to.
        owner: VmId,
    },
}

impl Policy {
    /// The template whose routing ID is `id`, if any.
    pub fn template_of(&self, id: PartitionId) -> Option<usize> {
        self.templates.iter().position(|t| t.partition == id)
    }

    /// May normal-world endpoint `vm` reach the partition `target` of kind `kind`?
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub fn may_reach(&self, vm: VmId, target: PartitionId, kind: Kind) -> bool {
        match kind {
            Kind::Instance { owner } => owner == vm,
            Kind::Static => {
                if self.shared.contains(&target) {
                    return true;
                }
                if vm == 0 {
                    // The hypervisor (or the OS without one) manages the static
                    // partitions; it never reaches another VM's instance.
                    return true;
                }
                self.bindings.iter().any(|&(v, p)| v == vm && p == target)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            shared: alloc::vec![0x8003],
            bindings: alloc::vec![(VmId::new(1), 0x8001), (VmId::new(2), 0x8002)],
            templates: alloc::vec![TemplateConfig {
                name: "vtee".into(),
                partition: 0x8010,
                first_id: 0x8100,
                count: 64,
                pages: 40,
            }],
        }
    }

    #[test]
    fn shared_partitions_reach_everyone() {
        let p = policy();
        for vm in [0, 1, 2, 7, 0x7FFF] {
            assert!(p.may_reach(VmId::new(vm), 0x8003, Kind::Static));
        }
    }

    #[test]
    fn bound_partitions_reach_their_vm_and_the_host_only() {
        let p = policy();
        assert!(p.may_reach(VmId::new(1), 0x8001, Kind::Static));
        assert!(!p.may_reach(VmId::new(2), 0x8001, Kind::Static));
        assert!(!p.may_reach(VmId::new(1), 0x8002, Kind::Static));
        assert!(p.may_reach(VmId::new(0), 0x8001, Kind::Static));
    }

    #[test]
    fn unbound_partitions_reach_the_host_only() {
        let p = policy();
        assert!(p.may_reach(VmId::new(0), 0x8004, Kind::Static));
        assert!(!p.may_reach(VmId::new(3), 0x8004, Kind::Static));
    }

    #[test]
    fn instances_reach_their_owner_only() {
        let p = policy();
        assert!(p.may_reach(
            VmId::new(3),
            0x8100,
            Kind::Instance {
                owner: VmId::new(3)
            }
        ));
        assert!(!p.may_reach(
            VmId::new(4),
            0x8100,
            Kind::Instance {
                owner: VmId::new(3)
            }
        ));
        assert!(
            !p.may_reach(
                VmId::new(0),
                0x8100,
                Kind::Instance {
                    owner: VmId::new(3)
                }
            ),
            "not even the host"
        );
    }

    #[test]
    fn template_routing_ids() {
        let p = policy();
        assert_eq!(p.template_of(0x8010), Some(0));
        assert_eq!(p.template_of(0x8001), None);
    }
}
