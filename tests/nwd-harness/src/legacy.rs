//! The harness's boots at an older normal-world version.
//!
//! FF-A v1.2 fixes an endpoint's version once it has made a call other than
//! FFA_VERSION (DEN0077 v1.2 §13.2; the SPMC refuses a different version
//! afterwards with NOT_SUPPORTED, as Hafnium does). One boot can therefore
//! check one normal-world version. The `e2e` stage boots the same image
//! again with [`MODE_WORD`] set (by QEMU's generic loader device) to
//! 0x10000 or 0x10001: the harness then negotiates that version first and
//! runs only the checks that need the normal world at v1.0 or v1.1, each
//! section closed by the same `e2e:` and `mem:` summary lines.

use crate::ffa;
use crate::report::Report;
use crate::{checks, ensure_eq, mem, partitions};
use test_protocol::ids;

/// Physical address of the boot mode word: 0 (QEMU's RAM starts zeroed)
/// for the main boot at v1.2, else the version to negotiate. Between the
/// harness image (0x6000_0000, 16 MiB) and the memory-sharing arena
/// (0x7000_0000); xtask's `qemu::HARNESS_MODE_WORD` is the same address.
pub const MODE_WORD: u64 = 0x6FF0_0000;

/// The version this boot is to negotiate, or `None` for the main boot.
pub fn mode() -> Option<u32> {
    // The older-version boots are virt's (xtask's `e2e` stage); sbsa-ref's
    // RAM starts at 1 TiB, where MODE_WORD is not RAM: its one boot is the
    // main one.
    if cfg!(feature = "sbsa") {
        return None;
    }
    // SAFETY: MODE_WORD is normal-world RAM in the harness's identity map
    // (BAREMETAL_L1: normal memory from 1 GiB), 4-byte aligned, and nothing
    // but QEMU's loader writes it: a plain read of it cannot fault.
    let v = unsafe { (MODE_WORD as *const u32).read_volatile() };
    (v != 0).then_some(v)
}

/// The `e2e` checks of a boot at version `v` (v1.0 or v1.1).
pub fn run(r: &mut Report, v: u32) {
    // First of all: FFA_VERSION(v), answered with the SPMC's version.
    r.check(
        if v == ffa::V1_0 {
            "version-1.0-negotiated-first"
        } else {
            "version-1.1-negotiated-first"
        },
        || {
            ensure_eq!(ffa::negotiate(v), ffa::V1_2, "FFA_VERSION answer");
            Ok(())
        },
    );
    let _ = ffa::map_buffers();
    if v == ffa::V1_0 {
        r.check(
            "version-1.0-hides-1.1-interfaces",
            checks::version_remembered,
        );
        r.check(
            "partition-info-v1.0-descriptors",
            partitions::partition_info_v1_0,
        );
        r.check(
            "sp-features-retrieve-req-v1.0-no-input-properties",
            partitions::sp_retrieve_features_v1_0,
        );
        r.check("sp-version-1.0-fixed-by-its-boot", || {
            partitions::sp_version_fixed_by_manifest(ids::CRASH_UNDEF, ffa::V1_0)
        });
    } else {
        r.check(
            "direct-req2-needs-v1.2",
            partitions::direct_req2_old_version,
        );
        r.check(
            "partition-version-per-endpoint",
            partitions::partition_version,
        );
        r.check("sp-version-1.1-fixed-by-its-boot", || {
            partitions::sp_version_fixed_by_manifest(ids::CRASH_STEAL, ffa::V1_1)
        });
    }
    // §13.2: fixed at `v`; asking for 1.2 is refused and changes nothing.
    r.check(
        if v == ffa::V1_0 {
            "version-fixed-at-1.0-refuses-1.2"
        } else {
            "version-fixed-at-1.1-refuses-1.2"
        },
        || fixed_at(v),
    );
}

/// The normal world, fixed at `v`, asks for 1.2 (and the other old
/// version): NOT_SUPPORTED; `v` itself is still answered; the answers keep
/// `v`'s form (at v1.0 FFA_FEATURES hides FFA_SPM_ID_GET; at v1.1 w2 of
/// FFA_FEATURES(FFA_MEM_SHARE_64) has bit 0, which v1.2 reserves).
fn fixed_at(v: u32) -> crate::report::Outcome {
    let other = if v == ffa::V1_0 { ffa::V1_1 } else { ffa::V1_0 };
    checks::version_refused(&[ffa::V1_2, other])?;
    ensure_eq!(
        ffa::version(v),
        ffa::V1_2,
        "FFA_VERSION of the fixed version"
    );
    let r = ffa::call(ffa::FEATURES, &[ffa::MEM_SHARE_64]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "FEATURES(MEM_SHARE_64)");
    ensure_eq!(r[2], 1, "w2 of FEATURES(MEM_SHARE_64) below v1.2");
    if v == ffa::V1_0 {
        checks::version_remembered()?;
    }
    Ok(())
}

/// The `mem` checks of a boot at version `v`.
pub fn run_mem(r: &mut Report, v: u32) {
    mem::run_legacy(r, v);
}
