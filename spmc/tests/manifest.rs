//! Fixture tests of the SPMC manifest parser: the good manifest, the one
//! shipped for QEMU, and one malformed manifest per error.

mod common;

use common::{dtb, manifest_fixture, repo_root};
use spmc::ffa::Version;
use spmc::manifest::{self, ManifestError, MemRange};

#[test]
fn good_manifest_parses_into_config() {
    let cfg = manifest::parse(&manifest_fixture("good.dts")).expect("good manifest");
    assert_eq!(cfg.spmc_id, 0x8000);
    assert_eq!(cfg.version, Version::V1_2);
    assert_eq!(cfg.load_address, 0x0e10_0000);
    assert_eq!(cfg.entrypoint, 0x0e10_0000);
    assert_eq!(cfg.binary_size, 0x10_0000);
    assert_eq!(
        cfg.secure_memory,
        Some(MemRange {
            base: 0x0e20_0000,
            size: 0x00e0_0000
        })
    );
    let names: Vec<_> = cfg
        .partitions
        .iter()
        .map(|p| (p.name.as_str(), p.package))
        .collect();
    assert_eq!(names, [("sp1", 0x0e30_0000), ("sp2", 0x0e40_0000)]);
    // Only the ns-memory node counts, every `reg` entry of it; the
    // `device_type = "memory"` node (secure memory) is not the normal world's.
    assert_eq!(
        cfg.ns_memory,
        [
            MemRange {
                base: 0x4000_0000,
                size: 0x4000_0000
            },
            MemRange {
                base: 0x8_8000_0000,
                size: 0x100_0000
            }
        ]
    );
}

#[test]
fn shipped_qemu_manifest_parses() {
    let blob = dtb(&repo_root().join("tf-a-integration/qemu/spmc_manifest.dts"));
    assert!(
        blob.len() <= 4096,
        "TOS_FW_CONFIG must fit in 4 KiB, is {}",
        blob.len()
    );
    let cfg = manifest::parse(&blob).expect("shipped manifest");
    assert_eq!(cfg.spmc_id, 0x8000);
    assert_eq!(cfg.load_address, 0x0e10_0000);
    // The RAM QEMU gives the normal world (`-m 2G` from 0x4000_0000, every
    // stage: xtask/src/qemu.rs MEMORY, checked against this manifest there).
    assert_eq!(
        cfg.ns_memory,
        [MemRange {
            base: 0x4000_0000,
            size: 0x8000_0000
        }]
    );
}

#[test]
fn ns_memory_errors() {
    assert_eq!(
        err("ns-memory-overlaps-pool.dts"),
        ManifestError::BadNsMemory(MemRange {
            base: 0x0e80_0000,
            size: 0x1000_0000
        })
    );
    assert_eq!(
        err("ns-memory-unaligned.dts"),
        ManifestError::BadNsMemory(MemRange {
            base: 0x4000_0800,
            size: 0x4000_0000
        })
    );
    assert_eq!(
        err("ns-memory-overlapping.dts"),
        ManifestError::BadNsMemory(MemRange {
            base: 0x7fff_f000,
            size: 0x2000
        })
    );
    assert_eq!(
        err("ns-memory-over-spmc-image.dts"),
        ManifestError::BadNsMemory(MemRange {
            base: 0x0e10_0000,
            size: 0x1000
        })
    );
    assert_eq!(
        err("ns-memory-bad-reg.dts"),
        ManifestError::BadProperty {
            node: "memory",
            property: "reg"
        }
    );
}

#[test]
fn no_ns_memory_node_means_no_normal_world_memory() {
    let cfg = manifest::parse(&manifest_fixture("no-ns-memory.dts")).expect("parses");
    assert!(cfg.ns_memory.is_empty());
}

#[test]
fn trailing_window_bytes_are_ignored() {
    let mut blob = manifest_fixture("good.dts");
    blob.resize(4096, 0xAA);
    assert!(manifest::parse(&blob).is_ok());
}

fn err(name: &str) -> ManifestError {
    manifest::parse(&manifest_fixture(name)).expect_err(name)
}

#[test]
fn missing_attribute_node() {
    assert_eq!(
        err("missing-attribute.dts"),
        ManifestError::MissingNode("attribute")
    );
}

#[test]
fn spmc_id_without_bit_15() {
    assert_eq!(
        err("spmc-id-without-bit15.dts"),
        ManifestError::BadSpmcId(1)
    );
}

#[test]
fn spmc_id_of_wrong_type() {
    assert_eq!(
        err("spmc-id-string.dts"),
        ManifestError::BadProperty {
            node: "attribute",
            property: "spmc_id"
        }
    );
}

#[test]
fn unsupported_versions() {
    assert_eq!(
        err("unsupported-minor.dts"),
        ManifestError::UnsupportedVersion { major: 1, minor: 3 }
    );
    assert_eq!(
        err("unsupported-major.dts"),
        ManifestError::UnsupportedVersion { major: 2, minor: 2 }
    );
}

#[test]
fn aarch32_exec_state() {
    assert_eq!(err("aarch32.dts"), ManifestError::BadExecState(1));
}

#[test]
fn wrong_compatible() {
    assert_eq!(err("not-core-manifest.dts"), ManifestError::NotCoreManifest);
}

#[test]
fn missing_binary_size() {
    assert_eq!(
        err("missing-binary-size.dts"),
        ManifestError::MissingProperty {
            node: "attribute",
            property: "binary_size"
        }
    );
}

#[test]
fn unaligned_pool() {
    assert!(matches!(
        err("unaligned-pool.dts"),
        ManifestError::BadSecureMemory(_)
    ));
}

#[test]
fn partition_without_package() {
    assert_eq!(
        err("partition-without-package.dts"),
        ManifestError::BadPartition("sp2".into())
    );
}

#[test]
fn bad_magic() {
    let mut blob = manifest_fixture("good.dts");
    blob[0] = 0;
    assert_eq!(
        manifest::parse(&blob),
        Err(ManifestError::BadMagic(0x000d_feed))
    );
}

#[test]
fn truncated_header_and_body() {
    let blob = manifest_fixture("good.dts");
    assert!(matches!(
        manifest::parse(&blob[..20]),
        Err(ManifestError::Truncated {
            claimed: 40,
            available: 20
        })
    ));
    let cut = blob.len() - 16;
    assert!(matches!(
        manifest::parse(&blob[..cut]),
        Err(ManifestError::Truncated { available, .. }) if available == cut
    ));
}

#[test]
fn empty_window() {
    assert!(matches!(
        manifest::parse(&[]),
        Err(ManifestError::Truncated { .. })
    ));
}

#[test]
fn corrupted_structure_is_an_error_not_a_panic() {
    let blob = manifest_fixture("good.dts");
    // Flip every byte after the header in turn: the parser must never panic.
    for i in 40..blob.len() {
        let mut b = blob.clone();
        b[i] ^= 0xFF;
        let _ = manifest::parse(&b);
    }
}

#[test]
fn every_error_has_a_one_line_message() {
    for name in [
        "missing-attribute.dts",
        "spmc-id-without-bit15.dts",
        "unsupported-minor.dts",
        "aarch32.dts",
        "not-core-manifest.dts",
        "missing-binary-size.dts",
        "unaligned-pool.dts",
        "partition-without-package.dts",
        "ns-memory-overlaps-pool.dts",
        "ns-memory-bad-reg.dts",
    ] {
        let msg = err(name).to_string();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{name}: {msg:?}");
    }
}

#[test]
fn instance_id_ranges_that_wrap_are_refused() {
    // A count that does not fit 16 bits (0xFFFFFFFF: 0xFFFF once cut) would
    // wrap the instance IDs into the normal-world range; a range running
    // past 0xFFFF likewise. Each is refused, never a panic.
    for name in ["instance-ids-wrap.dts", "instance-ids-past-ffff.dts"] {
        assert_eq!(
            err(name),
            ManifestError::BadProperty {
                node: "policy/templates",
                property: "instance-ids"
            },
            "{name}"
        );
    }
}

/// A partition manifest from `tests/fixtures/partitions`, loaded as
/// partition 0x8011 of the fake QEMU world: the error, if refused.
fn load_partition_fixture(name: &str) -> Result<spmc::addr::Pa, spmc::sp_manifest::SpError> {
    use common::world;
    use spmc::addr::Pa;
    let blob = common::dtb(&repo_root().join("tests/fixtures/partitions").join(name));
    let mut config = spmc::sp_manifest::parse_manifest(&blob, name).expect(name);
    config.id = 0x8011;
    let mut s = world::loaded();
    let before = s.pool().unwrap().free_pages();
    let r = s.create_partition(
        config,
        Pa(world::PACKAGES + 0x4000),
        8200,
        &blob,
        spmc::policy::Kind::Static,
        None,
    );
    match r {
        Ok(slot) => {
            let p = &s.partition(slot);
            let dev = p.config.devices[0].base;
            let t = p
                .stage2
                .lookup(spmc::addr::IpaSpace::Secure, spmc::addr::Ipa(dev))
                .expect("device mapped");
            assert!(t.device);
            Ok(t.pa)
        }
        Err(e) => {
            assert_eq!(
                s.pool().unwrap().free_pages(),
                before,
                "{name}: nothing leaked"
            );
            Err(e)
        }
    }
}

/// A device region in a partition manifest may not reach secure memory
/// the SPMC knows: its own image (load_address + binary_size of the SPMC
/// manifest), the partition packages (templates' pristine images among
/// them), the secure pool, or the rest of secure RAM the platform names
/// (trusted SRAM with the SPMC manifest). Each refusal names what it hit.
#[test]
fn device_regions_over_secure_memory_are_refused() {
    use spmc::sp_manifest::SpError;
    for (name, what) in [
        ("device-over-spmc.dts", "the SPMC image"),
        ("device-over-package.dts", "a partition package"),
        ("device-over-pool.dts", "the secure pool"),
        ("device-over-trusted-sram.dts", "secure RAM"),
    ] {
        let e = load_partition_fixture(name).expect_err(name);
        assert_eq!(
            e,
            SpError::DeviceOverSecureMemory {
                region: "dev".into(),
                what
            },
            "{name}"
        );
        let line = e.to_string();
        assert!(line.contains(what) && !line.contains('\n'), "{line}");
    }
    assert_eq!(
        load_partition_fixture("device-uart.dts"),
        Ok(spmc::addr::Pa(0x0904_0000)),
        "a real device is mapped"
    );
}
/// Found by the `manifests` fuzz target: an instance count near 2^32 made
/// `first_id + count` overflow (a panic with overflow checks, a wrapped and
/// accepted range without). It is refused like any range past 0xFFFF.
#[test]
fn instance_count_that_overflows_is_refused() {
    let text = std::fs::read_to_string(repo_root().join("tf-a-integration/qemu/spmc_manifest.dts"))
        .unwrap();
    assert!(text.contains("instance-ids = <0x8100 64>"));
    for count in ["0xffffff00", "0xffffffff", "0xff00"] {
        let path = std::env::temp_dir().join(format!("spmc-instance-count-{count}.dts"));
        std::fs::write(
            &path,
            text.replace(
                "instance-ids = <0x8100 64>",
                &format!("instance-ids = <0x8100 {count}>"),
            ),
        )
        .unwrap();
        assert_eq!(
            manifest::parse(&dtb(&path)),
            Err(ManifestError::BadProperty {
                node: "policy/templates",
                property: "instance-ids"
            }),
            "count {count}"
        );
    }
}
