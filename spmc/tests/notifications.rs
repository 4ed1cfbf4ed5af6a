//! FF-A notifications (DEN0077 v1.2 chapter 10): every ABI's success paths
//! and the errors the spec lists, over the real QEMU partition manifests
//! (sp1 UP, sp2 MP with 4 contexts, tpm: all declare `notification-support`).

mod common;

use common::world::*;
use spmc::ffa::{FfaError, Regs, func};
use spmc::ids::PartId;
use spmc::testing::{FakePlatform, sp_call};
use spmc::{Next, Spmc};

const SP1: u16 = 0x8001;
const SP2: u16 = 0x8002;
const TPM: u16 = 0x8003;
const CRASH: u16 = 0x8004;
const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;

const CREATE: u64 = func::NOTIFICATION_BITMAP_CREATE as u64;
const DESTROY: u64 = func::NOTIFICATION_BITMAP_DESTROY as u64;
const BIND: u64 = func::NOTIFICATION_BIND as u64;
const UNBIND: u64 = func::NOTIFICATION_UNBIND as u64;
const SET: u64 = func::NOTIFICATION_SET as u64;
const GET: u64 = func::NOTIFICATION_GET as u64;
const INFO32: u64 = func::NOTIFICATION_INFO_GET_32 as u64;
const INFO64: u64 = func::NOTIFICATION_INFO_GET_64 as u64;

fn err(r: &Regs) -> Option<FfaError> {
    let code = r.error_code()?;
    [
        FfaError::NotSupported,
        FfaError::InvalidParameters,
        FfaError::NoMemory,
        FfaError::Busy,
        FfaError::Interrupted,
        FfaError::Denied,
        FfaError::Retry,
        FfaError::Aborted,
        FfaError::NoData,
    ]
    .into_iter()
    .find(|e| e.code() == code)
}

fn ok(r: &Regs) -> bool {
    r.func() == func::SUCCESS_32 || r.func() == func::SUCCESS_64
}

fn ids(sender: u16, receiver: u16) -> u64 {
    (sender as u64) << 16 | receiver as u64
}

/// Partition `id` makes `call` while handling a direct request from `vm`;
/// returns its answer (x0-x17), then the partition responds.
fn as_sp(s: &mut Spmc<FakePlatform>, vm: u16, id: u16, call: &[u64]) -> Regs {
    let (next, mut regs) = nwd(s, &[REQ64, ids(vm, id), 0, 0]);
    let v = running(&next);
    sp_call(s, v, call, &mut regs);
    let r = Regs::from_slice(&s.vcpu_context_mut(v).x[..18]);
    let n = sp_call(s, v, &[RESP64, ids(id, vm), 0, 0], &mut regs);
    assert!(matches!(n, Next::NormalWorld));
    r
}

/// Booted, the normal world at v1.2 (notifications are v1.1+ ABIs).
fn fresh() -> Spmc<FakePlatform> {
    let mut s = booted();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    s
}

fn world() -> Spmc<FakePlatform> {
    let mut s = fresh();
    let r = nwd_now(&mut s, &[CREATE, 0, 4]);
    assert!(ok(&r), "{r:?}");
    s
}

#[test]
fn bitmap_create_and_destroy() {
    let mut s = fresh();
    assert!(ok(&nwd_now(&mut s, &[CREATE, 0, 4])));
    // Twice: DENIED (Hafnium).
    assert_eq!(
        err(&nwd_now(&mut s, &[CREATE, 0, 4])),
        Some(FfaError::Denied)
    );
    // A secure ID, a vCPU count of 0 or too many: INVALID_PARAMETERS.
    for (vm, n) in [(0x8001, 1), (5, 0), (5, 9), (0x1_0005, 1)] {
        assert_eq!(
            err(&nwd_now(&mut s, &[CREATE, vm, n])),
            Some(FfaError::InvalidParameters),
            "{vm:#x} {n}"
        );
    }
    assert!(ok(&nwd_now(&mut s, &[CREATE, 5, 1])));
    assert!(ok(&nwd_now(&mut s, &[DESTROY, 5])));
    assert_eq!(err(&nwd_now(&mut s, &[DESTROY, 5])), Some(FfaError::Denied));
    assert_eq!(
        err(&nwd_now(&mut s, &[DESTROY, 0x8001])),
        Some(FfaError::InvalidParameters)
    );
    // Partitions do not create or destroy bitmaps.
    assert_eq!(
        err(&as_sp(&mut s, 0, SP1, &[CREATE, 7, 1])),
        Some(FfaError::NotSupported)
    );
    assert_eq!(
        err(&as_sp(&mut s, 0, SP1, &[DESTROY, 0])),
        Some(FfaError::NotSupported)
    );
}

#[test]
fn vm_bitmaps_are_bounded_and_answer_no_memory() {
    let mut s = fresh();
    let mut made = 0;
    for vm in 1..200u64 {
        let r = nwd_now(&mut s, &[CREATE, vm, 1]);
        if ok(&r) {
            made += 1;
        } else {
            assert_eq!(err(&r), Some(FfaError::NoMemory));
            break;
        }
    }
    assert_eq!(made, spmc::notifications::MAX_VM_BITMAPS);
    // One destroyed makes room for one more.
    assert!(ok(&nwd_now(&mut s, &[DESTROY, 1])));
    assert!(ok(&nwd_now(&mut s, &[CREATE, 300, 1])));
}

#[test]
fn partition_to_vm_bind_set_info_get_get() {
    let mut s = world();
    // The VM (endpoint 0) binds bits 0 and 33 of sp1.
    let r = nwd_now(&mut s, &[BIND, ids(SP1, 0), 0, 1, 2]);
    assert!(ok(&r), "{r:?}");
    // sp1 sets bit 0.
    assert!(ok(&as_sp(&mut s, 0, SP1, &[SET, ids(SP1, 0), 0, 1, 0])));
    // INFO_GET: one list, endpoint 0, no vCPU IDs.
    let r = nwd_now(&mut s, &[INFO64]);
    assert_eq!(r.func(), func::SUCCESS_64);
    assert_eq!(r.x(2), 1 << 7, "one list, no vCPUs, nothing more");
    assert_eq!(r.x(3) & 0xFFFF, 0);
    // Reported once: the next INFO_GET has nothing new.
    assert_eq!(err(&nwd_now(&mut s, &[INFO64])), Some(FfaError::NoData));
    // GET from partitions: bit 0, then cleared.
    let r = nwd_now(&mut s, &[GET, 0, 1]);
    assert!(ok(&r));
    assert_eq!((r.w(2), r.w(3), r.w(4), r.w(6)), (1, 0, 0, 0));
    let r = nwd_now(&mut s, &[GET, 0, 1]);
    assert_eq!((r.w(2), r.w(3)), (0, 0), "cleared on get");
    // The high word.
    assert!(ok(&as_sp(&mut s, 0, SP1, &[SET, ids(SP1, 0), 0, 0, 2])));
    let r = nwd_now(&mut s, &[GET, 0, 0xF]);
    assert_eq!((r.w(2), r.w(3)), (0, 2));
}

#[test]
fn vm_to_partition_and_partition_to_partition() {
    let mut s = world();
    // sp1 binds bit 4 of VM 0 and bit 5 of sp2.
    assert!(ok(&as_sp(
        &mut s,
        0,
        SP1,
        &[BIND, ids(0, SP1), 0, 1 << 4, 0]
    )));
    assert!(ok(&as_sp(
        &mut s,
        0,
        SP1,
        &[BIND, ids(SP2, SP1), 0, 1 << 5, 0]
    )));
    // The VM sets bit 4, sp2 sets bit 5.
    assert!(ok(&nwd_now(&mut s, &[SET, ids(0, SP1), 0, 1 << 4, 0])));
    assert!(ok(&as_sp(
        &mut s,
        0,
        SP2,
        &[SET, ids(SP2, SP1), 0, 1 << 5, 0]
    )));
    // The normal world learns sp1 has something pending.
    let r = nwd_now(&mut s, &[INFO32]);
    assert_eq!(r.func(), func::SUCCESS_32);
    assert_eq!(r.w(2), 1 << 7);
    assert_eq!(r.w(3) & 0xFFFF, SP1 as u32);
    // sp1 gets them: from partitions in w2, from VMs in w4.
    let r = as_sp(&mut s, 0, SP1, &[GET, SP1 as u64, 0b11]);
    assert!(ok(&r), "{r:?}");
    assert_eq!((r.w(2), r.w(4)), (1 << 5, 1 << 4));
    let r = as_sp(&mut s, 0, SP1, &[GET, SP1 as u64, 0b11]);
    assert_eq!((r.w(2), r.w(4)), (0, 0));
    // Only the bitmaps asked for are cleared.
    assert!(ok(&nwd_now(&mut s, &[SET, ids(0, SP1), 0, 1 << 4, 0])));
    assert!(ok(&as_sp(
        &mut s,
        0,
        SP2,
        &[SET, ids(SP2, SP1), 0, 1 << 5, 0]
    )));
    let r = as_sp(&mut s, 0, SP1, &[GET, SP1 as u64, 0b01]);
    assert_eq!((r.w(2), r.w(4)), (1 << 5, 0));
    let r = as_sp(&mut s, 0, SP1, &[GET, SP1 as u64, 0b10]);
    assert_eq!((r.w(2), r.w(4)), (0, 1 << 4));
}

#[test]
fn per_vcpu_notifications() {
    let mut s = world();
    // sp2 has 4 contexts: VM 0 binds bit 1 per-vCPU.
    assert!(ok(&nwd_now(&mut s, &[BIND, ids(SP2, 0), 1, 2, 0])));
    // Set for vCPU 2 (and the delay-SRI flag, accepted).
    assert!(ok(&as_sp(
        &mut s,
        0,
        SP2,
        &[SET, ids(SP2, 0), 1 | 2 | 2 << 16, 2, 0]
    )));
    // As a global notification: DENIED (bound per-vCPU).
    assert_eq!(
        err(&as_sp(&mut s, 0, SP2, &[SET, ids(SP2, 0), 0, 2, 0])),
        Some(FfaError::Denied)
    );
    // vCPU out of range.
    assert_eq!(
        err(&as_sp(
            &mut s,
            0,
            SP2,
            &[SET, ids(SP2, 0), 1 | 4 << 16, 2, 0]
        )),
        Some(FfaError::InvalidParameters)
    );
    // A vCPU ID without the per-vCPU flag.
    assert_eq!(
        err(&as_sp(&mut s, 0, SP2, &[SET, ids(SP2, 0), 1 << 16, 2, 0])),
        Some(FfaError::InvalidParameters)
    );
    // INFO_GET: endpoint 0 with vCPU 2.
    let r = nwd_now(&mut s, &[INFO64]);
    assert_eq!(r.x(2), 1 << 7 | 1 << 12, "one list of one vCPU ID");
    assert_eq!(r.x(3) & 0xFFFF_FFFF, 2 << 16);
    // Get on vCPU 0: nothing; on vCPU 2: bit 1.
    assert_eq!(nwd_now(&mut s, &[GET, 0, 1]).w(2), 0);
    assert_eq!(nwd_now(&mut s, &[GET, 2 << 16, 1]).w(2), 2);
    assert_eq!(nwd_now(&mut s, &[GET, 2 << 16, 1]).w(2), 0);
    // A vCPU out of the bitmap's range.
    assert_eq!(
        err(&nwd_now(&mut s, &[GET, 4 << 16, 1])),
        Some(FfaError::InvalidParameters)
    );
    // Per-vCPU on a UP receiver (sp1 has one context).
    assert_eq!(
        err(&as_sp(&mut s, 0, SP1, &[BIND, ids(0, SP1), 1, 1, 0])),
        Some(FfaError::InvalidParameters)
    );
    // A partition gets for its own context only.
    assert_eq!(
        err(&as_sp(&mut s, 0, SP2, &[GET, 1 << 16 | SP2 as u64, 1])),
        Some(FfaError::InvalidParameters)
    );
}

#[test]
fn bind_errors() {
    let mut s = world();
    assert!(ok(&nwd_now(&mut s, &[BIND, ids(SP1, 0), 0, 1, 0])));
    // Double bind of a bit to another sender, or to the same one: DENIED.
    assert_eq!(
        err(&nwd_now(&mut s, &[BIND, ids(SP2, 0), 0, 1, 0])),
        Some(FfaError::Denied)
    );
    assert_eq!(
        err(&nwd_now(&mut s, &[BIND, ids(SP1, 0), 0, 3, 0])),
        Some(FfaError::Denied)
    );
    // Reserved flag bits, an empty bitmap, a sender that does not exist,
    // VM to VM, the receiver as its own sender.
    for call in [
        [BIND, ids(SP1, 0), 2, 2, 0],
        [BIND, ids(SP1, 0), 1 << 31, 2, 0],
        [BIND, ids(SP1, 0), 0, 0, 0],
        [BIND, ids(0x8077, 0), 0, 2, 0],
        [BIND, ids(3, 0), 0, 2, 0],
    ] {
        assert_eq!(
            err(&nwd_now(&mut s, &call)),
            Some(FfaError::InvalidParameters),
            "{call:x?}"
        );
    }
    // A VM's bitmap missing.
    assert_eq!(
        err(&nwd_now(&mut s, &[BIND, ids(SP1, 9), 0, 2, 0])),
        Some(FfaError::InvalidParameters)
    );
    // The normal world names a partition as receiver: not its to bind.
    assert_eq!(
        err(&nwd_now(&mut s, &[BIND, ids(0, SP1), 0, 2, 0])),
        Some(FfaError::InvalidParameters)
    );
    // A partition binds for another receiver: INVALID_PARAMETERS.
    assert_eq!(
        err(&as_sp(&mut s, 0, SP1, &[BIND, ids(0, SP2), 0, 2, 0])),
        Some(FfaError::InvalidParameters)
    );
    // A partition without notification-support has no bitmaps:
    // NOT_SUPPORTED (Hafnium's answer).
    assert_eq!(
        err(&nwd_now(&mut s, &[SET, ids(0, CRASH), 0, 1, 0])),
        Some(FfaError::NotSupported)
    );
    // Unbind: bits not bound to that sender are DENIED; w2 is MBZ.
    assert_eq!(
        err(&nwd_now(&mut s, &[UNBIND, ids(SP2, 0), 0, 1, 0])),
        Some(FfaError::Denied)
    );
    assert_eq!(
        err(&nwd_now(&mut s, &[UNBIND, ids(SP1, 0), 0, 3, 0])),
        Some(FfaError::Denied)
    );
    assert_eq!(
        err(&nwd_now(&mut s, &[UNBIND, ids(SP1, 0), 1, 1, 0])),
        Some(FfaError::InvalidParameters)
    );
    // Unbinding drops the pending bits; the bit may be bound anew.
    assert!(ok(&as_sp(&mut s, 0, SP1, &[SET, ids(SP1, 0), 0, 1, 0])));
    assert!(ok(&nwd_now(&mut s, &[UNBIND, ids(SP1, 0), 0, 1, 0])));
    assert_eq!(nwd_now(&mut s, &[GET, 0, 1]).w(2), 0);
    assert!(ok(&nwd_now(&mut s, &[BIND, ids(SP2, 0), 0, 1, 0])));
}

#[test]
fn set_and_get_errors() {
    let mut s = world();
    assert!(ok(&nwd_now(&mut s, &[BIND, ids(SP1, 0), 0, 1, 0])));
    // An unbound sender, or bits not bound: DENIED.
    assert_eq!(
        err(&as_sp(&mut s, 0, SP2, &[SET, ids(SP2, 0), 0, 1, 0])),
        Some(FfaError::Denied)
    );
    assert_eq!(
        err(&as_sp(&mut s, 0, SP1, &[SET, ids(SP1, 0), 0, 3, 0])),
        Some(FfaError::Denied)
    );
    // A sender ID not the caller's; reserved flag bits; an empty bitmap.
    for call in [
        [SET, ids(SP2, 0), 0, 1, 0],
        [SET, ids(SP1, 0), 1 << 2, 1, 0],
        [SET, ids(SP1, 0), 1 << 15, 1, 0],
        [SET, ids(SP1, 0), 0, 0, 0],
    ] {
        assert_eq!(
            err(&as_sp(&mut s, 0, SP1, &call)),
            Some(FfaError::InvalidParameters),
            "{call:x?}"
        );
    }
    // The normal world sets only for a VM, only to a partition.
    assert_eq!(
        err(&nwd_now(&mut s, &[SET, ids(SP1, 0), 0, 1, 0])),
        Some(FfaError::InvalidParameters)
    );
    // To a VM without a bitmap.
    assert_eq!(
        err(&as_sp(&mut s, 0, SP1, &[SET, ids(SP1, 9), 0, 1, 0])),
        Some(FfaError::InvalidParameters)
    );
    // GET: reserved flag bits; another receiver; a missing bitmap.
    assert_eq!(
        err(&nwd_now(&mut s, &[GET, 0, 1 << 4])),
        Some(FfaError::InvalidParameters)
    );
    assert_eq!(
        err(&nwd_now(&mut s, &[GET, SP1 as u64, 1])),
        Some(FfaError::InvalidParameters)
    );
    assert_eq!(
        err(&nwd_now(&mut s, &[GET, 9, 1])),
        Some(FfaError::InvalidParameters)
    );
    assert_eq!(
        err(&as_sp(&mut s, 0, SP1, &[GET, SP2 as u64, 1])),
        Some(FfaError::InvalidParameters)
    );
    // INFO_GET: partitions may not; nothing pending is NO_DATA.
    assert_eq!(
        err(&as_sp(&mut s, 0, SP1, &[INFO64])),
        Some(FfaError::NotSupported)
    );
    assert_eq!(err(&nwd_now(&mut s, &[INFO64])), Some(FfaError::NoData));
    // DESTROY with notifications pending: DENIED; after the get, fine.
    assert!(ok(&as_sp(&mut s, 0, SP1, &[SET, ids(SP1, 0), 0, 1, 0])));
    assert_eq!(err(&nwd_now(&mut s, &[DESTROY, 0])), Some(FfaError::Denied));
    nwd_now(&mut s, &[GET, 0, 1]);
    assert!(ok(&nwd_now(&mut s, &[DESTROY, 0])));
    // ... and the bindings went with it: a new bitmap is unbound.
    assert!(ok(&nwd_now(&mut s, &[CREATE, 0, 4])));
    assert_eq!(
        err(&as_sp(&mut s, 0, SP1, &[SET, ids(SP1, 0), 0, 1, 0])),
        Some(FfaError::Denied)
    );
}

/// Without a policy, a VM other than endpoint 0 reaches no partition: it
/// cannot bind their notifications (the per-user rule); partitions with
/// notifications pending are listed by INFO_GET, in creation order.
#[test]
fn vms_reaching_nothing_cannot_bind_and_partitions_are_listed() {
    let mut s = fresh();
    for vm in 1..=3u64 {
        assert!(ok(&nwd_now(&mut s, &[CREATE, vm, 1])));
        let r = nwd_now(&mut s, &[BIND, ids(SP1, vm as u16), 0, 1, 0]);
        assert_eq!(
            err(&r),
            Some(FfaError::Denied),
            "VM {vm} does not reach sp1"
        );
    }
    assert!(ok(&nwd_now(&mut s, &[CREATE, 0, 1])));
    for sp in [SP1, SP2, TPM] {
        assert!(ok(&as_sp(&mut s, 0, sp, &[BIND, ids(0, sp), 0, 1, 0])));
        assert!(ok(&nwd_now(&mut s, &[SET, ids(0, sp), 0, 1, 0])));
    }
    let r = nwd_now(&mut s, &[INFO32]);
    assert_eq!(r.w(2), 3 << 7);
    let listed = [r.w(3) as u16, (r.w(3) >> 16) as u16, r.w(4) as u16];
    assert_eq!(listed, [SP1, SP2, TPM]);
    assert_eq!(err(&nwd_now(&mut s, &[INFO32])), Some(FfaError::NoData));
}

/// Lists of at most three vCPU IDs; what does not fit (10 IDs in the
/// 32-bit form) comes with the next call, flagged "more pending" (w2 bit 0).
#[test]
fn info_get_vcpu_lists_and_more_pending() {
    let mut s = world();
    // Endpoint 0 (4 vCPUs): bit 1 per-vCPU from sp2, bit 0 global.
    assert!(ok(&nwd_now(&mut s, &[BIND, ids(SP2, 0), 1, 2, 0])));
    assert!(ok(&nwd_now(&mut s, &[BIND, ids(SP2, 0), 0, 1, 0])));
    let set_all = |s: &mut Spmc<FakePlatform>| {
        assert!(ok(&as_sp(s, 0, SP2, &[SET, ids(SP2, 0), 0, 1, 0])));
        for v in 0..4u64 {
            assert!(ok(&as_sp(
                s,
                0,
                SP2,
                &[SET, ids(SP2, 0), 1 | v << 16, 2, 0]
            )));
        }
    };
    set_all(&mut s);
    let r = nwd_now(&mut s, &[INFO64]);
    // Two lists: endpoint 0 with vCPUs 0, 1, 2; then with vCPU 3.
    assert_eq!(r.x(2), 2 << 7 | 3 << 12 | 1 << 14);
    assert_eq!(r.x(3), 1 << 32 | 2 << 48);
    assert_eq!(r.x(4) & 0xFFFF_FFFF, 3 << 16);
    assert_eq!(err(&nwd_now(&mut s, &[INFO64])), Some(FfaError::NoData));
    // sp2 too: per-vCPU bit 3 from endpoint 0 on its 4 contexts.
    assert!(ok(&as_sp(&mut s, 0, SP2, &[BIND, ids(0, SP2), 1, 8, 0])));
    for v in 0..4u64 {
        assert!(ok(&nwd_now(&mut s, &[SET, ids(0, SP2), 1 | v << 16, 8, 0])));
    }
    set_all(&mut s);
    // 32-bit: sp2 [0 1 2] [3] (6 IDs), endpoint 0 [0 1 2] (4 IDs) fit;
    // endpoint 0 [3] does not.
    let r = nwd_now(&mut s, &[INFO32]);
    assert_eq!(r.w(2), 1 | 3 << 7 | 3 << 12 | 1 << 14 | 3 << 16);
    assert_eq!((r.w(3), r.w(4)), (SP2 as u32, 1 | 2 << 16));
    assert_eq!(
        (r.w(5), r.w(6), r.w(7)),
        (SP2 as u32 | 3 << 16, 0, 1 | 2 << 16)
    );
    let r = nwd_now(&mut s, &[INFO32]);
    assert_eq!(r.w(2), 1 << 7 | 1 << 12, "the rest, nothing more");
    assert_eq!(r.w(3), 3 << 16);
    assert_eq!(err(&nwd_now(&mut s, &[INFO32])), Some(FfaError::NoData));
}

#[test]
fn per_user_rule_and_vm_destroyed() {
    let mut s = policy_world(None);
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    assert_eq!(create_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 2), 0);
    let t1 = instance_id(&s, 1).unwrap();
    let t2 = instance_id(&s, 2).unwrap();
    for vm in [1u64, 2] {
        assert!(ok(&nwd_now(&mut s, &[CREATE, vm, 1])));
    }
    // VM 1 reaches its TEE, sp1 (bound) and tpm (shared), not VM 2's TEE
    // nor sp2.
    for (sender, bit) in [(t1, 0), (SP1, 1), (TPM, 2)] {
        let r = nwd_now(&mut s, &[BIND, ids(sender, 1), 0, 1 << bit, 0]);
        assert!(ok(&r), "{sender:#x}: {r:?}");
    }
    for sender in [t2, SP2] {
        assert_eq!(
            err(&nwd_now(&mut s, &[BIND, ids(sender, 1), 0, 1 << 8, 0])),
            Some(FfaError::Denied),
            "{sender:#x}"
        );
    }
    // VM 2's TEE cannot bind VM 1 as a sender, nor VM 1's TEE.
    assert_eq!(
        err(&as_sp(&mut s, 2, t2, &[BIND, ids(1, t2), 0, 1, 0])),
        Some(FfaError::Denied)
    );
    assert_eq!(
        err(&as_sp(&mut s, 2, t2, &[BIND, ids(t1, t2), 0, 1, 0])),
        Some(FfaError::Denied)
    );
    // ...but its own VM and the shared TPM.
    assert!(ok(&as_sp(&mut s, 2, t2, &[BIND, ids(2, t2), 0, 1, 0])));
    assert!(ok(&as_sp(&mut s, 2, t2, &[BIND, ids(TPM, t2), 0, 2, 0])));
    // VM 1's TEE notifies VM 1.
    assert!(ok(&as_sp(&mut s, 1, t1, &[SET, ids(t1, 1), 0, 1, 0])));
    // VM 1 goes: its bitmap and its TEE's bindings go with it.
    assert_eq!(destroy_vm(&mut s, 1), 0);
    assert_eq!(
        err(&nwd_now(&mut s, &[GET, 1, 1])),
        Some(FfaError::InvalidParameters)
    );
    // VM 2 is untouched.
    assert!(ok(&nwd_now(&mut s, &[GET, 2, 1])));
    assert!(ok(&as_sp(&mut s, 2, t2, &[GET, t2 as u64, 1])));
}

#[test]
fn rx_buffer_full_framework_notification() {
    let mut s = world();
    map_nwd_buffers(&mut s);
    // sp1 sends an indirect message to endpoint 0: its RX buffer is full.
    let slot = s.slot_of(PartId::new(SP1)).unwrap();
    let tx = s.partition(slot).buffers.expect("buffers mapped").tx;
    // The header (v1.2: 40 bytes) and 4 bytes of payload in sp1's TX.
    let mut hdr = [0u8; 44];
    hdr[8..12].copy_from_slice(&40u32.to_le_bytes());
    hdr[14..16].copy_from_slice(&SP1.to_le_bytes());
    hdr[16..20].copy_from_slice(&4u32.to_le_bytes());
    s.platform_mut().secure_write(tx, &hdr);
    assert_eq!(err(&nwd_now(&mut s, &[INFO64])), Some(FfaError::NoData));
    let r = as_sp(&mut s, 0, SP1, &[func::MSG_SEND2 as u64, 0, 0]);
    assert!(ok(&r), "{r:?}");
    let r = nwd_now(&mut s, &[INFO64]);
    assert_eq!(r.x(2), 1 << 7);
    let r = nwd_now(&mut s, &[GET, 0, 1 << 2]);
    assert_eq!(r.w(6), 1, "RX buffer full");
    assert_eq!(nwd_now(&mut s, &[GET, 0, 1 << 2]).w(6), 0);
}

#[test]
fn features_report_notifications_and_the_sri() {
    let mut s = fresh();
    let r = nwd_now(&mut s, &[func::FEATURES as u64, 2]);
    assert_eq!((r.func(), r.w(2)), (func::SUCCESS_32, 8));
    for f in [CREATE, BIND, SET, GET, INFO64] {
        assert!(ok(&nwd_now(&mut s, &[func::FEATURES as u64, f])), "{f:#x}");
    }
}

/// Partition `id` makes `call` while handling a direct request from `vm`;
/// returns its answer and the schedule receiver interrupts raised by the
/// time the call returned to the partition (before it responds), then the
/// partition responds and the core goes back to the normal world, calling
/// `sri_on_return` as the platform does.
fn as_sp_sris(s: &mut Spmc<FakePlatform>, vm: u16, id: u16, call: &[u64]) -> (Regs, Vec<usize>) {
    let (next, mut regs) = nwd(s, &[REQ64, ids(vm, id), 0, 0]);
    let v = running(&next);
    sp_call(s, v, call, &mut regs);
    let during = s.platform().sris.clone();
    let r = Regs::from_slice(&s.vcpu_context_mut(v).x[..18]);
    let n = sp_call(s, v, &[RESP64, ids(id, vm), 0, 0], &mut regs);
    assert!(matches!(n, Next::NormalWorld));
    s.sri_on_return();
    (r, during)
}

#[test]
fn sri_raised_at_once_for_a_vm_receiver_on_the_senders_core() {
    let mut s = world();
    assert!(ok(&nwd_now(&mut s, &[BIND, ids(SP1, 0), 0, 1, 0])));
    let (r, during) = as_sp_sris(&mut s, 0, SP1, &[SET, ids(SP1, 0), 0, 1, 0]);
    assert!(ok(&r), "{r:?}");
    assert_eq!(during, vec![0], "raised during the SET, on core 0");
    assert_eq!(s.platform().sris, vec![0], "and only once");
    // Nothing delayed is owed: returning again sends nothing.
    s.sri_on_return();
    assert_eq!(s.platform().sris, vec![0]);
    assert!(ok(&nwd_now(&mut s, &[GET, 0, 1])));
}

#[test]
fn delayed_sri_waits_for_the_return_to_the_normal_world() {
    let mut s = world();
    assert!(ok(&nwd_now(&mut s, &[BIND, ids(SP1, 0), 0, 1, 0])));
    s.platform_mut().core = 0;
    let (r, during) = as_sp_sris(&mut s, 0, SP1, &[SET, ids(SP1, 0), 2, 1, 0]);
    assert!(ok(&r), "{r:?}");
    assert!(during.is_empty(), "not while the sender runs: {during:?}");
    assert_eq!(s.platform().sris, vec![0], "sent when the core returned");
    s.sri_on_return();
    assert_eq!(s.platform().sris, vec![0], "once");
    // A delayed SRI owed on core 0 is not sent by another core's return.
    assert!(ok(&nwd_now(&mut s, &[GET, 0, 1])));
    let (next, mut regs) = nwd(&mut s, &[REQ64, ids(0, SP1), 0, 0]);
    let v = running(&next);
    sp_call(&mut s, v, &[SET, ids(SP1, 0), 2, 1, 0], &mut regs);
    sp_call(&mut s, v, &[RESP64, ids(SP1, 0), 0, 0], &mut regs);
    s.platform_mut().core = 1;
    s.sri_on_return();
    assert_eq!(s.platform().sris, vec![0]);
    s.platform_mut().core = 0;
    s.sri_on_return();
    assert_eq!(s.platform().sris, vec![0, 0]);
}

#[test]
fn no_sri_for_secure_receivers_or_refused_sets() {
    let mut s = world();
    // sp2 lets sp1 signal it; the VM lets sp1 signal it.
    assert!(ok(&as_sp(&mut s, 0, SP2, &[BIND, ids(SP1, SP2), 0, 1, 0])));
    assert!(ok(&as_sp(&mut s, 0, SP1, &[BIND, ids(0, SP1), 0, 1, 0])));
    // Partition to partition and VM to partition: no SRI.
    assert!(ok(&as_sp(&mut s, 0, SP1, &[SET, ids(SP1, SP2), 0, 1, 0])));
    assert!(ok(&nwd_now(&mut s, &[SET, ids(0, SP1), 0, 1, 0])));
    // A refused set (not bound) raises none either.
    let (r, _) = as_sp_sris(&mut s, 0, SP1, &[SET, ids(SP1, 0), 0, 1, 0]);
    assert_eq!(err(&r), Some(FfaError::Denied));
    assert!(s.platform().sris.is_empty(), "{:?}", s.platform().sris);
}

#[test]
fn rx_buffer_full_for_a_vm_raises_the_sri_delayed_or_not() {
    let mut s = world();
    map_nwd_buffers(&mut s);
    let slot = s.slot_of(PartId::new(SP1)).unwrap();
    let tx = s.partition(slot).buffers.expect("buffers mapped").tx;
    let mut hdr = [0u8; 44];
    hdr[8..12].copy_from_slice(&40u32.to_le_bytes());
    hdr[14..16].copy_from_slice(&SP1.to_le_bytes());
    hdr[16..20].copy_from_slice(&4u32.to_le_bytes());
    s.platform_mut().secure_write(tx, &hdr);
    let (r, during) = as_sp_sris(&mut s, 0, SP1, &[func::MSG_SEND2 as u64, 0, 0]);
    assert!(ok(&r), "{r:?}");
    assert_eq!(during, vec![0]);
    assert_eq!(nwd_now(&mut s, &[GET, 0, 1 << 2]).w(6), 1);
    assert!(ok(&nwd_now(&mut s, &[func::RX_RELEASE as u64])));
    // Flag bit 1: delayed to the return.
    let (r, during) = as_sp_sris(&mut s, 0, SP1, &[func::MSG_SEND2 as u64, 0, 2]);
    assert!(ok(&r), "{r:?}");
    assert_eq!(during, vec![0]);
    assert_eq!(s.platform().sris, vec![0, 0]);
}

/// The direct-message fast path (`spmc::contexts`) returns to the normal
/// world without the manager, so without `sri_on_return`: while a delayed
/// SRI is owed, the partition's response goes to the manager, whose
/// return sends it; afterwards the fast path serves again.
#[test]
fn a_delayed_sri_keeps_the_fast_response_off_until_it_is_sent() {
    static NO_FAILURE: spmc::fatal::FailGate = spmc::fatal::FailGate::new();
    let mut s = world();
    assert!(ok(&nwd_now(&mut s, &[BIND, ids(SP1, 0), 0, 1, 0])));
    s.platform_mut().core = 0;
    let (next, mut regs) = nwd(&mut s, &[REQ64, ids(0, SP1), 0, 0]);
    let v = running(&next);
    sp_call(&mut s, v, &[SET, ids(SP1, 0), 2, 1, 0], &mut regs);
    // The partition responds: the call is in its context.
    let mut ctx = s.vcpu_context(v);
    ctx.x[..4].copy_from_slice(&[RESP64, ids(SP1, 0), 0, 0]);
    ctx.exit.esr = spmc::vcpu::ec::SMC64 << 26;
    *s.vcpu_context_mut(v) = ctx;
    let c = s.contexts().clone();
    let fast = c.direct_response(&NO_FAILURE, v, &mut regs, |_| {});
    assert!(
        matches!(fast, spmc::contexts::Fast::Slow),
        "the fast path would return without the SRI: {fast:?}"
    );
    drop(c);
    let n = spmc::testing::exit(&mut s, v, &mut regs);
    assert!(matches!(n, Next::NormalWorld));
    s.sri_on_return();
    assert_eq!(s.platform().sris, vec![0], "sent by the manager's return");
    // Nothing owed any more: the fast path serves both ways again.
    let c = s.contexts().clone();
    let req = Regs::from_slice(&[REQ64, ids(0, SP1), 0, 0]);
    let fast = c.direct_request(&NO_FAILURE, &req, || 0);
    assert!(matches!(fast, spmc::contexts::Fast::Done(_)), "{fast:?}");
}
