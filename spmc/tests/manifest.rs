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
    ] {
        let msg = err(name).to_string();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{name}: {msg:?}");
    }
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
