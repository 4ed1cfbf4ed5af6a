//! FF-A notifications end to end (issue 12 item 4; DEN0077 v1.2 chapter
//! 10; spmc/src/notifications.rs, docs/notifications.md). The normal world
//! (endpoint 0, no hypervisor) creates its bitmap, binds and gets; the test
//! partitions bind, set and get with `cmd::NOTIFY`. sp1 is UP, sp2 MP (its
//! context 0 runs for core 0, where these checks run); crash-data has no
//! `notification-support`.
//!
//! Each check leaves nothing pending; the last one destroys the bitmap.

use crate::ffa::{self, Regs, call, code};
use crate::report::{Fail, Outcome, Report};
use crate::{ensure, ensure_eq};
use test_protocol::{cmd, ids, status};

const PER_VCPU: u64 = 1;
/// FFA_NOTIFICATION_GET flags: from partitions, from VMs, SPM framework.
const FROM_SP: u64 = 1;
const FROM_VM: u64 = 2;
const SPM_FWK: u64 = 4;
/// The normal world's vCPU count (QEMU `-smp 4`).
const VCPUS: u64 = 4;

fn ids(sender: u16, receiver: u16) -> u64 {
    (sender as u64) << 16 | receiver as u64
}

/// Partition `sp` makes the notification call `f` (cmd::NOTIFY): returns
/// [w0, w2|w3<<32, w4|w5<<32, w6].
fn sp(sp: u16, f: u64, w1: u64, w2: u64, bits: u64) -> Result<[u64; 4], Fail> {
    let r = ffa::cmd(sp, cmd::NOTIFY, [f, w1, w2, bits]);
    ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "partition response");
    ensure_eq!(r[3], status::OK, "command status");
    Ok([r[4], r[5], r[6], r[7]])
}

/// The partition's call succeeded.
fn sp_ok(s: u16, f: u64, w1: u64, w2: u64, bits: u64) -> Outcome {
    let [w0, ..] = sp(s, f, w1, w2, bits)?;
    ensure_eq!(w0, ffa::SUCCESS_32, "answer in the partition");
    Ok(())
}

/// The partition's call failed with `want`.
fn sp_err(s: u16, f: u64, w1: u64, w2: u64, bits: u64, want: i32) -> Outcome {
    let [w0, e, ..] = sp(s, f, w1, w2, bits)?;
    ensure_eq!(w0, ffa::ERROR_32, "answer in the partition");
    ensure_eq!(
        e as u32 as i32 as i64,
        want as i64,
        "error code in the partition"
    );
    Ok(())
}

fn nwd(f: u64, w1: u64, w2: u64, bits: u64) -> Regs {
    call(f, &[w1, w2, bits & 0xFFFF_FFFF, bits >> 32])
}

fn nwd_ok(f: u64, w1: u64, w2: u64, bits: u64) -> Outcome {
    let r = nwd(f, w1, w2, bits);
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    Ok(())
}

fn nwd_err(f: u64, w1: u64, w2: u64, bits: u64, want: i32) -> Outcome {
    let r = nwd(f, w1, w2, bits);
    ensure_eq!(code(&r) as i64, want as i64, "error code");
    Ok(())
}

/// FFA_NOTIFICATION_GET for endpoint 0's vCPU `vcpu`: w2 | w3 << 32, w6.
fn nwd_get(vcpu: u64, flags: u64) -> Result<(u64, u64), Fail> {
    let r = call(ffa::NOTIFICATION_GET, &[vcpu << 16, flags]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "FFA_NOTIFICATION_GET");
    Ok((
        r[2] & 0xFFFF_FFFF | (r[3] & 0xFFFF_FFFF) << 32,
        r[6] & 0xFFFF_FFFF,
    ))
}

/// Runs the checks.
pub fn run(r: &mut Report) {
    // Earlier checks sent indirect messages to the partitions: their "RX
    // buffer full" framework notifications are pending. Get them, and let
    // one INFO_GET report what is left, so that each check below sees only
    // what it made pending.
    for p in [ids::SP1, ids::SP2, ids::TPM] {
        let _ = sp(p, ffa::NOTIFICATION_GET, p as u64, SPM_FWK, 0);
    }
    let _ = call(ffa::NOTIFICATION_INFO_GET_64, &[]);
    r.check("ntf-features-report-the-abis", features);
    r.check("ntf-features-schedule-receiver-interrupt-id", || {
        let f = call(ffa::FEATURES, &[2]);
        ensure_eq!(f[0], ffa::SUCCESS_32, "FFA_FEATURES(SRI)");
        ensure_eq!(f[2], 8, "the SRI's SGI (Hafnium's number)");
        Ok(())
    });
    r.check("ntf-bitmap-create", || {
        nwd_ok(ffa::NOTIFICATION_BITMAP_CREATE, 0, VCPUS, 0)
    });
    r.check("ntf-bitmap-create-twice-denied", || {
        nwd_err(ffa::NOTIFICATION_BITMAP_CREATE, 0, VCPUS, 0, ffa::DENIED)
    });
    r.check("ntf-bitmap-create-bad-vcpu-count", || {
        nwd_err(
            ffa::NOTIFICATION_BITMAP_CREATE,
            5,
            0,
            0,
            ffa::INVALID_PARAMETERS,
        )?;
        nwd_err(
            ffa::NOTIFICATION_BITMAP_CREATE,
            0x8001,
            1,
            0,
            ffa::INVALID_PARAMETERS,
        )
    });
    r.check("ntf-bind-sp1-to-nwd", || {
        nwd_ok(ffa::NOTIFICATION_BIND, ids(ids::SP1, 0), 0, 1)
    });
    r.check("ntf-double-bind-denied", || {
        nwd_err(ffa::NOTIFICATION_BIND, ids(ids::SP2, 0), 0, 1, ffa::DENIED)
    });
    r.check("ntf-bind-reserved-flag-bits", || {
        nwd_err(
            ffa::NOTIFICATION_BIND,
            ids(ids::SP2, 0),
            2,
            2,
            ffa::INVALID_PARAMETERS,
        )
    });
    r.check("ntf-sp-sets-nwd-info-get-then-get", sp_to_nwd);
    r.check("ntf-sri-given-to-the-normal-world", || {
        ensure!(
            crate::sri::enable(),
            "SGI 8 cannot be enabled from the normal world: it is not Group 1 non-secure"
        );
        Ok(())
    });
    r.check("ntf-sri-raised-when-a-partition-sets", || sri_on_set(0));
    r.check("ntf-sri-delayed-raised-on-return", || sri_on_set(2));
    r.check("ntf-unbound-sender-denied", || {
        sp_err(
            ids::SP2,
            ffa::NOTIFICATION_SET,
            ids(ids::SP2, 0),
            0,
            1,
            ffa::DENIED,
        )
    });
    r.check("ntf-set-sender-not-the-caller", || {
        sp_err(
            ids::SP1,
            ffa::NOTIFICATION_SET,
            ids(ids::SP2, 0),
            0,
            1,
            ffa::INVALID_PARAMETERS,
        )
    });
    r.check("ntf-nwd-sets-partition-partition-gets", nwd_to_sp);
    r.check("ntf-partition-to-partition", sp_to_sp);
    r.check("ntf-per-vcpu-sp2-to-nwd", per_vcpu);
    r.check("ntf-per-vcpu-on-up-partition-refused", || {
        sp_err(
            ids::SP1,
            ffa::NOTIFICATION_BIND,
            ids(0, ids::SP1),
            PER_VCPU,
            1 << 6,
            ffa::INVALID_PARAMETERS,
        )
    });
    r.check("ntf-per-vcpu-id-out-of-range", || {
        sp_err(
            ids::SP2,
            ffa::NOTIFICATION_SET,
            ids(ids::SP2, 0),
            PER_VCPU | 4 << 16,
            2,
            ffa::INVALID_PARAMETERS,
        )?;
        let g = call(ffa::NOTIFICATION_GET, &[VCPUS << 16, FROM_SP]);
        ensure_eq!(code(&g), ffa::INVALID_PARAMETERS, "GET for vCPU 4");
        Ok(())
    });
    r.check("ntf-get-reserved-flag-bits", || {
        let g = call(ffa::NOTIFICATION_GET, &[0, 1 << 4]);
        ensure_eq!(code(&g), ffa::INVALID_PARAMETERS, "GET flags bit 4");
        Ok(())
    });
    r.check("ntf-bitmap-missing", || {
        nwd_err(
            ffa::NOTIFICATION_BIND,
            ids(ids::SP1, 9),
            0,
            1,
            ffa::INVALID_PARAMETERS,
        )?;
        sp_err(
            ids::SP1,
            ffa::NOTIFICATION_SET,
            ids(ids::SP1, 9),
            0,
            1,
            ffa::INVALID_PARAMETERS,
        )
    });
    r.check("ntf-partition-without-notification-support", || {
        // FFA_NOTIFICATION_SET is implemented, but crash-data has no bitmaps.
        let f = call(ffa::FEATURES, &[ffa::NOTIFICATION_SET]);
        ensure_eq!(f[0], ffa::SUCCESS_32, "FFA_FEATURES(SET)");
        nwd_err(
            ffa::NOTIFICATION_SET,
            ids(0, ids::CRASH_DATA),
            0,
            1,
            ffa::NOT_SUPPORTED,
        )
    });
    r.check("ntf-ids-not-owned", || {
        // The normal world binds for a partition, sets as a partition.
        nwd_err(
            ffa::NOTIFICATION_BIND,
            ids(0, ids::SP1),
            0,
            1,
            ffa::INVALID_PARAMETERS,
        )?;
        nwd_err(
            ffa::NOTIFICATION_SET,
            ids(ids::SP1, 0),
            0,
            1,
            ffa::INVALID_PARAMETERS,
        )?;
        // A partition binds or gets for another.
        sp_err(
            ids::SP1,
            ffa::NOTIFICATION_BIND,
            ids(0, ids::SP2),
            0,
            1,
            ffa::INVALID_PARAMETERS,
        )?;
        sp_err(
            ids::SP1,
            ffa::NOTIFICATION_GET,
            ids::SP2 as u64,
            FROM_SP,
            0,
            ffa::INVALID_PARAMETERS,
        )
    });
    r.check("ntf-partition-cannot-create-or-info-get", || {
        // A partition binds (FFA_FEATURES says so at its instance), but
        // neither creates bitmaps nor asks INFO_GET.
        let f = ffa::cmd(
            ids::SP1,
            cmd::CALL,
            [ffa::FEATURES, ffa::NOTIFICATION_BIND, 0, 0],
        );
        ensure_eq!(f[3], status::OK, "command status");
        ensure_eq!(f[4], ffa::SUCCESS_32, "FFA_FEATURES(BIND) in the partition");
        let f = ffa::cmd(
            ids::SP1,
            cmd::CALL,
            [ffa::FEATURES, ffa::NOTIFICATION_BITMAP_CREATE, 0, 0],
        );
        ensure_eq!(
            f[4],
            ffa::ERROR_32,
            "FFA_FEATURES(BITMAP_CREATE) in the partition"
        );
        sp_err(
            ids::SP1,
            ffa::NOTIFICATION_BITMAP_CREATE,
            7,
            1,
            0,
            ffa::NOT_SUPPORTED,
        )?;
        let r = ffa::cmd(
            ids::SP1,
            cmd::CALL,
            [ffa::NOTIFICATION_INFO_GET_64, 0, 0, 0],
        );
        ensure_eq!(r[3], status::OK, "command status");
        ensure_eq!(r[4], ffa::ERROR_32, "INFO_GET in the partition");
        ensure_eq!(
            r[5] as u32 as i32 as i64,
            ffa::NOT_SUPPORTED as i64,
            "error code"
        );
        Ok(())
    });
    r.check("ntf-info-get-32-no-data", || {
        let g = call(ffa::NOTIFICATION_INFO_GET_32, &[]);
        ensure_eq!(code(&g), ffa::NO_DATA, "nothing pending");
        Ok(())
    });
    r.check("ntf-rx-buffer-full-framework-notification", rx_full);
    r.check("ntf-tpm-greeting-rx-full-with-delayed-sri", tpm_greeting);
    r.check("ntf-unbind", unbind);
    r.check("ntf-destroy-with-pending-denied-then-destroy", destroy);
}

fn features() -> Outcome {
    for f in [
        ffa::NOTIFICATION_BITMAP_CREATE,
        ffa::NOTIFICATION_BITMAP_DESTROY,
        ffa::NOTIFICATION_BIND,
        ffa::NOTIFICATION_UNBIND,
        ffa::NOTIFICATION_SET,
        ffa::NOTIFICATION_GET,
        ffa::NOTIFICATION_INFO_GET_32,
        ffa::NOTIFICATION_INFO_GET_64,
    ] {
        let r = call(ffa::FEATURES, &[f]);
        ensure_eq!(r[0], ffa::SUCCESS_32, "FFA_FEATURES of a notification ABI");
    }
    Ok(())
}

/// sp1 sets bit 0 of endpoint 0; INFO_GET lists endpoint 0 once; GET returns
/// and clears it.
fn sp_to_nwd() -> Outcome {
    sp_ok(ids::SP1, ffa::NOTIFICATION_SET, ids(ids::SP1, 0), 0, 1)?;
    let i = call(ffa::NOTIFICATION_INFO_GET_64, &[]);
    ensure_eq!(i[0], ffa::SUCCESS_64, "INFO_GET_64");
    ensure_eq!(i[2], 1 << 7, "one list, no vCPU IDs, nothing more");
    ensure_eq!(i[3] & 0xFFFF, 0, "endpoint 0 listed");
    let again = call(ffa::NOTIFICATION_INFO_GET_64, &[]);
    ensure_eq!(code(&again), ffa::NO_DATA, "reported once");
    ensure_eq!(nwd_get(0, FROM_SP)?.0, 1, "bitmap from partitions");
    ensure_eq!(nwd_get(0, FROM_SP)?.0, 0, "cleared by the get");
    Ok(())
}

/// sp1 sets bit 0 of endpoint 0 with FFA_NOTIFICATION_SET flags `flags`
/// (bit 1: delay the SRI): the SRI is pending at this core when the
/// partition's response comes back; INFO_GET lists endpoint 0 and GET
/// returns the bit, and neither raises another SRI. Before that, a set for
/// a partition (endpoint 0 to sp1) raises none.
fn sri_on_set(flags: u64) -> Outcome {
    crate::sri::clear();
    ensure!(
        !crate::sri::pending(),
        "the SRI stays pending after a clear"
    );
    sp_ok(
        ids::SP1,
        ffa::NOTIFICATION_BIND,
        ids(0, ids::SP1),
        0,
        1 << 7,
    )?;
    nwd_ok(ffa::NOTIFICATION_SET, ids(0, ids::SP1), 0, 1 << 7)?;
    let _ = sp(ids::SP1, ffa::NOTIFICATION_GET, ids::SP1 as u64, FROM_VM, 0)?;
    sp_ok(
        ids::SP1,
        ffa::NOTIFICATION_UNBIND,
        ids(0, ids::SP1),
        0,
        1 << 7,
    )?;
    let _ = call(ffa::NOTIFICATION_INFO_GET_64, &[]);
    ensure!(
        !crate::sri::pending(),
        "an SRI for a notification to a partition"
    );
    sp_ok(ids::SP1, ffa::NOTIFICATION_SET, ids(ids::SP1, 0), flags, 1)?;
    // Read, then consume what is pending before judging, so that a failure
    // here leaves nothing behind for the checks after.
    let raised = crate::sri::pending();
    crate::sri::clear();
    let i = call(ffa::NOTIFICATION_INFO_GET_64, &[]);
    let got = nwd_get(0, FROM_SP)?.0;
    ensure!(
        raised,
        "no SRI pending after sp1 set a notification for endpoint 0"
    );
    ensure_eq!(i[0], ffa::SUCCESS_64, "INFO_GET_64");
    ensure_eq!(i[3] & 0xFFFF, 0, "endpoint 0 listed");
    ensure_eq!(got, 1, "bitmap from partitions");
    ensure!(!crate::sri::pending(), "INFO_GET or GET raised an SRI");
    Ok(())
}

/// sp1 binds bit 4 of endpoint 0; endpoint 0 sets it; INFO_GET lists sp1;
/// sp1 gets it in its bitmap from VMs.
fn nwd_to_sp() -> Outcome {
    sp_ok(
        ids::SP1,
        ffa::NOTIFICATION_BIND,
        ids(0, ids::SP1),
        0,
        1 << 4,
    )?;
    nwd_ok(ffa::NOTIFICATION_SET, ids(0, ids::SP1), 0, 1 << 4)?;
    let i = call(ffa::NOTIFICATION_INFO_GET_64, &[]);
    ensure_eq!(i[0], ffa::SUCCESS_64, "INFO_GET_64");
    ensure_eq!(i[2], 1 << 7, "one list");
    ensure_eq!(i[3] & 0xFFFF, ids::SP1, "sp1 listed");
    let [w0, from_sp, from_vm, _] = sp(
        ids::SP1,
        ffa::NOTIFICATION_GET,
        ids::SP1 as u64,
        FROM_SP | FROM_VM,
        0,
    )?;
    ensure_eq!(w0, ffa::SUCCESS_32, "GET in sp1");
    ensure_eq!(from_vm, 1 << 4, "bitmap from VMs");
    ensure_eq!(from_sp, 0, "bitmap from partitions");
    Ok(())
}

/// sp1 binds bit 5 of sp2; sp2 sets it; sp1 gets it.
fn sp_to_sp() -> Outcome {
    sp_ok(
        ids::SP1,
        ffa::NOTIFICATION_BIND,
        ids(ids::SP2, ids::SP1),
        0,
        1 << 5,
    )?;
    sp_ok(
        ids::SP2,
        ffa::NOTIFICATION_SET,
        ids(ids::SP2, ids::SP1),
        0,
        1 << 5,
    )?;
    let [w0, from_sp, from_vm, _] = sp(
        ids::SP1,
        ffa::NOTIFICATION_GET,
        ids::SP1 as u64,
        FROM_SP | FROM_VM,
        0,
    )?;
    ensure_eq!(w0, ffa::SUCCESS_32, "GET in sp1");
    ensure_eq!(from_sp, 1 << 5, "bitmap from partitions");
    ensure_eq!(from_vm, 0, "bitmap from VMs");
    // Consume the INFO_GET report of sp1, for the checks after.
    let _ = call(ffa::NOTIFICATION_INFO_GET_64, &[]);
    Ok(())
}

/// Endpoint 0 binds bit 1 of sp2 per-vCPU; sp2 sets it for vCPU 2;
/// INFO_GET lists endpoint 0 with vCPU 2; GET on vCPU 2 returns it.
fn per_vcpu() -> Outcome {
    nwd_ok(ffa::NOTIFICATION_BIND, ids(ids::SP2, 0), PER_VCPU, 2)?;
    // As a global notification: DENIED.
    sp_err(
        ids::SP2,
        ffa::NOTIFICATION_SET,
        ids(ids::SP2, 0),
        0,
        2,
        ffa::DENIED,
    )?;
    sp_ok(
        ids::SP2,
        ffa::NOTIFICATION_SET,
        ids(ids::SP2, 0),
        PER_VCPU | 2 << 16,
        2,
    )?;
    let i = call(ffa::NOTIFICATION_INFO_GET_64, &[]);
    ensure_eq!(i[0], ffa::SUCCESS_64, "INFO_GET_64");
    ensure_eq!(i[2], 1 << 7 | 1 << 12, "one list with one vCPU ID");
    ensure_eq!(i[3] & 0xFFFF_FFFF, 2 << 16, "endpoint 0, vCPU 2");
    ensure_eq!(nwd_get(0, FROM_SP)?.0, 0, "nothing for vCPU 0");
    ensure_eq!(nwd_get(2, FROM_SP)?.0, 2, "bit 1 for vCPU 2");
    ensure_eq!(nwd_get(2, FROM_SP)?.0, 0, "cleared");
    Ok(())
}

/// sp1's indirect message to endpoint 0 sets its "RX buffer full" SPM
/// framework notification (§10.5.1).
fn rx_full() -> Outcome {
    let [f, ..] = {
        let r = ffa::cmd(ids::SP1, cmd::SEND2, [0, 0x7E57, 0, 0]);
        ensure_eq!(r[3], status::OK, "command status");
        [r[4], r[5]]
    };
    let release = call(ffa::RX_RELEASE, &[]);
    ensure_eq!(f, ffa::SUCCESS_32, "FFA_MSG_SEND2 in sp1");
    ensure_eq!(release[0], ffa::SUCCESS_32, "RX_RELEASE");
    let i = call(ffa::NOTIFICATION_INFO_GET_32, &[]);
    ensure_eq!(i[0], ffa::SUCCESS_32, "INFO_GET_32");
    ensure_eq!(i[2] & 0xFFFF_FFFF, 1 << 7, "endpoint 0 listed");
    ensure_eq!(nwd_get(0, SPM_FWK)?.1, 1, "RX buffer full");
    ensure_eq!(nwd_get(0, SPM_FWK)?.1, 0, "cleared");
    Ok(())
}

/// The TPM partition answers a normal-world endpoint that has a bitmap
/// (ours, now) with an indirect message first, "delay SRI" set
/// (test_protocol::TPM_GREETING; the `linux` stage's notification): the
/// SRI is pending when the answer is back, INFO_GET lists endpoint 0, GET
/// returns "RX buffer full" and RX holds the greeting (sent by sp1 for
/// the TPM partition, which has no indirect messaging).
fn tpm_greeting() -> Outcome {
    crate::sri::clear();
    let r = ffa::req64(
        ids::TPM,
        [0, test_protocol::TPM_GET_INTERFACE_VERSION, 0, 0, 0],
    );
    ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "TPM answer");
    ensure_eq!(r[4], test_protocol::TPM_OK, "TPM status");
    // Read, then consume what is pending before judging (a failure leaves
    // nothing behind for the checks after).
    let raised = crate::sri::pending();
    crate::sri::clear();
    let i = call(ffa::NOTIFICATION_INFO_GET_64, &[]);
    let fwk = nwd_get(0, SPM_FWK)?.1;
    let sender = ffa::rx_u16(14);
    let greeting = u64::from_le_bytes(ffa::rx_bytes::<8>(40));
    let release = call(ffa::RX_RELEASE, &[]);
    ensure!(raised, "no SRI pending after the TPM's answer");
    ensure_eq!(i[0], ffa::SUCCESS_64, "INFO_GET_64");
    ensure_eq!(i[3] & 0xFFFF, 0, "endpoint 0 listed");
    ensure_eq!(fwk, 1, "RX buffer full");
    ensure_eq!(sender, ids::SP1, "the message's sender (sp1, for the TPM)");
    ensure_eq!(greeting, test_protocol::TPM_GREETING, "the greeting");
    ensure_eq!(release[0], ffa::SUCCESS_32, "RX_RELEASE");
    Ok(())
}

fn unbind() -> Outcome {
    nwd_err(
        ffa::NOTIFICATION_UNBIND,
        ids(ids::SP2, 0),
        0,
        1,
        ffa::DENIED,
    )?;
    nwd_err(
        ffa::NOTIFICATION_UNBIND,
        ids(ids::SP1, 0),
        1,
        1,
        ffa::INVALID_PARAMETERS,
    )?;
    nwd_ok(ffa::NOTIFICATION_UNBIND, ids(ids::SP1, 0), 0, 1)?;
    sp_err(
        ids::SP1,
        ffa::NOTIFICATION_SET,
        ids(ids::SP1, 0),
        0,
        1,
        ffa::DENIED,
    )
}

fn destroy() -> Outcome {
    nwd_ok(ffa::NOTIFICATION_BIND, ids(ids::SP1, 0), 0, 1 << 9)?;
    sp_ok(ids::SP1, ffa::NOTIFICATION_SET, ids(ids::SP1, 0), 0, 1 << 9)?;
    nwd_err(ffa::NOTIFICATION_BITMAP_DESTROY, 0, 0, 0, ffa::DENIED)?;
    ensure!(nwd_get(0, FROM_SP)?.0 == 1 << 9, "pending bit 9");
    nwd_ok(ffa::NOTIFICATION_BITMAP_DESTROY, 0, 0, 0)?;
    nwd_err(ffa::NOTIFICATION_BITMAP_DESTROY, 0, 0, 0, ffa::DENIED)?;
    // sp1's own bindings stay; its pending bits are none.
    let _ = call(ffa::NOTIFICATION_INFO_GET_64, &[]);
    Ok(())
}
