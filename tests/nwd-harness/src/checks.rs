//! The end-to-end checks, one function each.

use crate::ensure_eq;
use crate::ffa::{self, call, code};
use crate::report::{Outcome, Report};

/// Runs every check in order.
pub fn run(r: &mut Report) {
    // DEN0077 v1.2 §13.2: FFA_VERSION.
    r.check("version-1.2", version_1_2);
    r.check("version-1.1-answered-with-1.2", version_1_1);
    r.check(
        "version-newer-minor-answered-with-ours",
        version_newer_minor,
    );
    r.check("version-major-2-not-supported", || {
        version_rejected(0x2_0000)
    });
    r.check("version-major-0-not-supported", || {
        version_rejected(0x0_0001)
    });
    r.check("version-bit31-not-supported", || {
        version_rejected(0x8001_0002)
    });
    // (The checks above call only FFA_VERSION; the v1.0 and v1.1 views of
    // the normal world are checked in boots of their own, `legacy`.)
    // §13.9 / §13.10: IDs.
    r.check("id-get", id_get);
    r.check("spm-id-get", spm_id_get);
    // §13.3: FFA_FEATURES.
    r.check("features-version", || feature_ok(ffa::VERSION));
    r.check("features-features", || feature_ok(ffa::FEATURES));
    r.check("features-id-get", || feature_ok(ffa::ID_GET));
    r.check("features-spm-id-get", || feature_ok(ffa::SPM_ID_GET));
    r.check("features-unknown-function", || {
        feature_not_supported(0x8400_00FF)
    });
    r.check("features-msg-wait-not-for-normal-world", || {
        feature_not_supported(ffa::MSG_WAIT)
    });
    r.check("features-feature-id-npi", || feature_not_supported(0x1));
    r.check("features-feature-id-reserved-bits", || {
        feature_not_supported(0x0000_0100)
    });
    // Unknown or unimplemented function IDs get FFA_ERROR(NOT_SUPPORTED).
    r.check("unknown-function-not-supported", || {
        not_supported(0x8400_0088)
    });
    r.check("unimplemented-64bit-function-not-supported", || {
        not_supported(0xC400_0088)
    });
    r.check("msg-wait-from-normal-world-refused", || {
        not_supported(ffa::MSG_WAIT)
    });
    // §15.2: a direct request to nobody.
    r.check("direct-req-to-unknown-partition", direct_req_unknown);
    // §13.2: the version is fixed once another call was made (the FFA_FEATURES
    // calls above: TF-A's SPMD answers FFA_ID_GET and FFA_SPM_ID_GET itself,
    // so those never reach the SPMC).
    r.check("version-renegotiation-refused-after-use", || {
        version_refused(&[ffa::V1_1, ffa::V1_0])
    });
    r.check("version-same-accepted-after-use", version_same_after_use);
    r.check("version-refused-changes-nothing", version_refused_no_change);
    r.check("version-bit31-after-use-not-supported", || {
        version_rejected(0x8001_0002)
    });
    // SMCCC v1.2: x8-x17 survive a call that does not use them.
    r.check("x8-x17-preserved", upper_registers_preserved);
}

fn version_1_2() -> Outcome {
    ensure_eq!(ffa::version(ffa::V1_2), ffa::V1_2, "FFA_VERSION(1.2)");
    Ok(())
}

fn version_1_1() -> Outcome {
    let got = ffa::version(ffa::V1_1);
    let back = ffa::version(ffa::V1_2);
    ensure_eq!(got, ffa::V1_2, "FFA_VERSION(1.1)");
    ensure_eq!(back, ffa::V1_2, "FFA_VERSION(1.2) again");
    Ok(())
}

fn version_newer_minor() -> Outcome {
    let got = ffa::version(0x1_0009);
    let back = ffa::version(ffa::V1_2);
    ensure_eq!(got, ffa::V1_2, "FFA_VERSION(1.9)");
    ensure_eq!(back, ffa::V1_2, "FFA_VERSION(1.2) again");
    Ok(())
}

fn version_rejected(v: u32) -> Outcome {
    ensure_eq!(
        ffa::version(v) as i32,
        ffa::NOT_SUPPORTED,
        "FFA_VERSION answer"
    );
    Ok(())
}

/// FFA_VERSION(`v`) is refused for each of `vs`: the version is fixed.
pub(crate) fn version_refused(vs: &[u32]) -> Outcome {
    for v in vs {
        ensure_eq!(
            ffa::version(*v) as i32,
            ffa::NOT_SUPPORTED,
            "FFA_VERSION of another version after other calls"
        );
    }
    Ok(())
}

fn version_same_after_use() -> Outcome {
    ensure_eq!(ffa::version(ffa::V1_2), ffa::V1_2, "FFA_VERSION(1.2) again");
    // A newer minor negotiates 1.2 too: the same version.
    ensure_eq!(ffa::version(0x1_0009), ffa::V1_2, "FFA_VERSION(1.9)");
    Ok(())
}

/// A refused FFA_VERSION(1.0) leaves the normal world at v1.2: the v1.1
/// interfaces stay visible and FFA_FEATURES answers in the v1.2 form.
fn version_refused_no_change() -> Outcome {
    version_refused(&[ffa::V1_0])?;
    let r = call(ffa::FEATURES, &[ffa::SPM_ID_GET]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "FEATURES(SPM_ID_GET) still at v1.2");
    let r = call(ffa::FEATURES, &[ffa::MEM_SHARE_64]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "FEATURES(MEM_SHARE_64)");
    ensure_eq!(r[2], 0, "w2 of FEATURES(MEM_SHARE_64) at v1.2");
    Ok(())
}

/// At v1.0 (the `legacy` boot) FFA_FEATURES hides the v1.1 interfaces.
pub(crate) fn version_remembered() -> Outcome {
    let at_1_0 = call(ffa::FEATURES, &[ffa::SPM_ID_GET]);
    ensure_eq!(
        code(&at_1_0),
        ffa::NOT_SUPPORTED,
        "FEATURES(SPM_ID_GET) at v1.0"
    );
    Ok(())
}

fn id_get() -> Outcome {
    let r = call(ffa::ID_GET, &[]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "w0");
    ensure_eq!(r[2] & 0xFFFF, 0, "normal-world ID");
    Ok(())
}

fn spm_id_get() -> Outcome {
    let r = call(ffa::SPM_ID_GET, &[]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "w0");
    ensure_eq!(r[2] & 0xFFFF, 0x8000, "SPMC ID");
    Ok(())
}

fn feature_ok(func: u64) -> Outcome {
    let r = call(ffa::FEATURES, &[func]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "FEATURES answer");
    Ok(())
}

fn feature_not_supported(id: u64) -> Outcome {
    let r = call(ffa::FEATURES, &[id]);
    ensure_eq!(code(&r), ffa::NOT_SUPPORTED, "FEATURES answer");
    Ok(())
}

fn not_supported(func: u64) -> Outcome {
    let r = call(func, &[]);
    ensure_eq!(code(&r), ffa::NOT_SUPPORTED, "answer");
    Ok(())
}

fn direct_req_unknown() -> Outcome {
    // Sender 0 (the normal world), receiver 0x8123 (no such partition).
    let r = call(ffa::MSG_SEND_DIRECT_REQ_64, &[0x8123, 0, 1, 2, 3, 4, 5]);
    ensure_eq!(code(&r), ffa::INVALID_PARAMETERS, "answer");
    Ok(())
}

fn upper_registers_preserved() -> Outcome {
    let mut r = [0u64; 18];
    r[0] = ffa::FEATURES;
    r[1] = ffa::VERSION;
    for (i, v) in r.iter_mut().enumerate().skip(8) {
        *v = 0x1111_0000 + i as u64;
    }
    baremetal::smc(&mut r);
    ensure_eq!(r[0], ffa::SUCCESS_32, "w0");
    for (i, v) in r.iter().enumerate().skip(8) {
        ensure_eq!(*v, 0x1111_0000 + i as u64, "x8-x17 after the call");
    }
    Ok(())
}
