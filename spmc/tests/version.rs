//! Host tests of FFA_VERSION once an endpoint's version is fixed (DEN0077
//! v1.2 §13.2; issue 10 item 9, docs/conformance.md): a call other than
//! FFA_VERSION fixes the caller's version; a later FFA_VERSION that would
//! negotiate another version is NOT_SUPPORTED and changes nothing, the same
//! version is still answered with the SPMC's.

mod common;

use common::world::*;
use spmc::ffa::{Regs, Version, func, fwk};
use spmc::ids::PartId;
use spmc::testing::{FakePlatform, sp_call};
use spmc::vcpu::VcpuRef;
use spmc::{Next, Spmc};

const SP1: u16 = 0x8001;
const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;
const V1_0: u64 = 0x1_0000;
const V1_1: u64 = 0x1_0001;
const V1_2: u64 = 0x1_0002;
const NOT_SUPPORTED: u64 = -1i32 as u32 as u64;

/// FFA_VERSION(`v`) from the normal world as a raw call: w0 of the answer.
fn version(s: &mut Spmc<FakePlatform>, v: u64) -> u64 {
    nwd_now(s, &[func::VERSION as u64, v]).0[0] as u32 as u64
}

/// FFA_VERSION(`v`) as TF-A's SPMD forwards it (framework message): w3 of
/// the framework response.
fn version_message(s: &mut Spmc<FakePlatform>, v: u64) -> u64 {
    let r = nwd_now(
        s,
        &[
            func::MSG_SEND_DIRECT_REQ_32 as u64,
            0xFFFF << 16 | 0x8000,
            (fwk::FLAG | fwk::VERSION_REQ) as u64,
            v,
        ],
    );
    assert_eq!(r.func(), func::MSG_SEND_DIRECT_RESP_32);
    assert_eq!(r.w(2), fwk::FLAG | fwk::VERSION_RESP);
    r.w(3) as u64
}

/// The normal world's negotiated version.
fn nwd_version(s: &Spmc<FakePlatform>) -> Option<Version> {
    s.normal_world(0).and_then(|e| e.version)
}

/// A direct request from the normal world to SP1, answered by SP1.
fn round_trip(s: &mut Spmc<FakePlatform>) {
    let (next, mut regs) = nwd(s, &[REQ64, SP1 as u64, 0, 7]);
    let v = running(&next);
    let n = sp_call(s, v, &[RESP64, (SP1 as u64) << 16, 0, 8], &mut regs);
    assert!(matches!(n, Next::NormalWorld));
    assert_eq!((regs.0[0], regs.0[3]), (RESP64, 8));
}

/// FFA_FEATURES(FFA_MEM_SHARE_64) w2 for the normal world: 1 up to v1.1, 0
/// from v1.2 (the version its answers use).
fn share_features_w2(s: &mut Spmc<FakePlatform>) -> u64 {
    let r = nwd_now(s, &[func::FEATURES as u64, func::MEM_SHARE_64 as u64, 0]);
    assert_eq!(r.func(), func::SUCCESS_32);
    r.0[2]
}

#[test]
fn nwd_version_may_change_until_another_call_then_is_fixed() {
    let mut s = booted();
    assert_eq!(version(&mut s, V1_0), V1_2);
    assert_eq!(version(&mut s, V1_2), V1_2);
    assert_eq!(version(&mut s, V1_1), V1_2);
    assert!(!s.nwd_version_fixed(), "only FFA_VERSION so far");
    assert_eq!(nwd_version(&s), Some(Version::V1_1));
    // FFA_ID_GET fixes it.
    assert_eq!(
        nwd_now(&mut s, &[func::ID_GET as u64]).func(),
        func::SUCCESS_32
    );
    assert!(s.nwd_version_fixed());
    assert_eq!(version(&mut s, V1_2), NOT_SUPPORTED, "renegotiation");
    assert_eq!(version(&mut s, V1_0), NOT_SUPPORTED, "renegotiation");
    // The refused answers changed nothing: still answered as v1.1.
    assert_eq!(nwd_version(&s), Some(Version::V1_1));
    assert_eq!(share_features_w2(&mut s), 1, "v1.1 answer");
    // The same version is still answered with the SPMC's.
    assert_eq!(version(&mut s, V1_1), V1_2);
    assert_eq!(nwd_version(&s), Some(Version::V1_1));
}

#[test]
fn nwd_version_fixed_by_a_direct_request() {
    let mut s = booted();
    assert_eq!(version_message(&mut s, V1_2), V1_2);
    assert_eq!(version_message(&mut s, V1_0), V1_2, "still open");
    assert_eq!(version_message(&mut s, V1_2), V1_2, "still open");
    round_trip(&mut s);
    assert!(s.nwd_version_fixed());
    assert_eq!(version_message(&mut s, V1_0), NOT_SUPPORTED);
    assert_eq!(version_message(&mut s, V1_1), NOT_SUPPORTED);
    assert_eq!(version_message(&mut s, V1_2), V1_2);
    assert_eq!(nwd_version(&s), Some(Version::V1_2));
    assert_eq!(share_features_w2(&mut s), 0, "v1.2 answer");
}

#[test]
fn nwd_version_fixed_by_a_32_bit_direct_request_too() {
    let mut s = booted();
    assert_eq!(version_message(&mut s, V1_2), V1_2);
    let (next, mut regs) = nwd(
        &mut s,
        &[func::MSG_SEND_DIRECT_REQ_32 as u64, SP1 as u64, 0, 7],
    );
    let v = running(&next);
    sp_call(
        &mut s,
        v,
        &[
            func::MSG_SEND_DIRECT_RESP_32 as u64,
            (SP1 as u64) << 16,
            0,
            8,
        ],
        &mut regs,
    );
    assert_eq!(version_message(&mut s, V1_1), NOT_SUPPORTED);
}

#[test]
fn invalid_versions_stay_not_supported_once_fixed() {
    let mut s = booted();
    assert_eq!(version(&mut s, V1_2), V1_2);
    round_trip(&mut s);
    for bad in [0x8001_0002u64, 0x8000_0000, 0x2_0000, 0x0_0001, 0xFFFF_FFFF] {
        assert_eq!(version(&mut s, bad), NOT_SUPPORTED, "{bad:#x}");
        assert_eq!(version_message(&mut s, bad), NOT_SUPPORTED, "{bad:#x}");
    }
    assert_eq!(nwd_version(&s), Some(Version::V1_2));
    // A newer minor negotiates v1.2, the version already fixed.
    assert_eq!(version(&mut s, 0x1_0009), V1_2);
    assert_eq!(nwd_version(&s), Some(Version::V1_2));
}

#[test]
fn nwd_that_never_negotiated_is_fixed_at_v1_0() {
    let mut s = booted();
    assert_eq!(
        nwd_now(&mut s, &[func::ID_GET as u64]).func(),
        func::SUCCESS_32
    );
    assert_eq!(version(&mut s, V1_2), NOT_SUPPORTED);
    assert_eq!(
        version(&mut s, V1_0),
        V1_2,
        "v1.0, the version it is answered in"
    );
    assert_eq!(share_features_w2(&mut s), 1, "v1.0 answer");
}

#[test]
fn spmd_psci_message_does_not_fix_the_nwd_version() {
    let mut s = booted();
    assert_eq!(version_message(&mut s, V1_2), V1_2);
    // A PSCI framework message is the SPMD's, not a normal-world call.
    let r = nwd_now(
        &mut s,
        &[
            func::MSG_SEND_DIRECT_REQ_32 as u64,
            0xFFFF << 16 | 0x8000,
            (fwk::FLAG | fwk::PSCI_REQ) as u64,
            0x8400_0000,
        ],
    );
    assert_eq!(r.w(2), fwk::FLAG | fwk::PSCI_RESP);
    assert!(!s.nwd_version_fixed());
    assert_eq!(version_message(&mut s, V1_1), V1_2);
    assert_eq!(nwd_version(&s), Some(Version::V1_1));
}

#[test]
fn a_vm_availability_message_fixes_the_nwd_version() {
    let mut s = policy_world(None);
    assert_eq!(version_message(&mut s, V1_2), V1_2);
    assert_eq!(create_vm(&mut s, 5), 0);
    assert!(s.nwd_version_fixed());
    assert_eq!(version_message(&mut s, V1_1), NOT_SUPPORTED);
}

/// Boots the partitions of `loaded()`; for SP1's vCPU plays `sp1` (returning
/// what comes next), the others boot as in `booted()`.
fn boot_with(
    sp1: impl Fn(&mut Spmc<FakePlatform>, VcpuRef, &mut Regs) -> Next,
) -> Spmc<FakePlatform> {
    let mut s = loaded();
    let mut regs = Regs::default();
    let mut next = s.boot(&mut regs);
    while let Next::Run { vcpu, .. } = next {
        let id = s.partition(vcpu.slot).id();
        next = if id == SP1 {
            sp1(&mut s, vcpu, &mut regs)
        } else {
            sp_call(&mut s, vcpu, &[func::VERSION as u64, V1_2], &mut regs);
            sp_call(&mut s, vcpu, &[func::MSG_WAIT as u64], &mut regs)
        };
    }
    assert!(s.is_booted());
    s
}

fn sp_version(s: &mut Spmc<FakePlatform>, v: VcpuRef, want: u64, regs: &mut Regs) -> u64 {
    sp_call(s, v, &[func::VERSION as u64, want], regs);
    s.vcpu_context_mut(v).x[0] as u32 as u64
}

fn partition_version(s: &Spmc<FakePlatform>, id: u16) -> Version {
    s.partition(s.slot_of(PartId::new(id)).unwrap()).version
}

#[test]
fn partition_version_fixed_by_its_first_other_call() {
    let s = boot_with(|s, v, regs| {
        assert_eq!(sp_version(s, v, V1_0, regs), V1_2);
        assert_eq!(sp_version(s, v, V1_1, regs), V1_2);
        assert!(!s.partition(v.slot).version_fixed);
        sp_call(s, v, &[func::ID_GET as u64], regs);
        assert!(s.partition(v.slot).version_fixed);
        assert_eq!(sp_version(s, v, V1_2, regs), NOT_SUPPORTED);
        assert_eq!(sp_version(s, v, 0x8001_0001, regs), NOT_SUPPORTED);
        assert_eq!(sp_version(s, v, V1_1, regs), V1_2, "the same version");
        sp_call(s, v, &[func::MSG_WAIT as u64], regs)
    });
    assert_eq!(partition_version(&s, SP1), Version::V1_1);
    assert_eq!(partition_version(&s, 0x8002), Version::V1_2);
}

#[test]
fn partition_that_never_negotiated_keeps_its_manifest_version() {
    let s = boot_with(|s, v, regs| {
        let n = sp_call(s, v, &[func::MSG_WAIT as u64], regs);
        // The manifest says v1.2; MSG_WAIT fixed it.
        assert!(s.partition(v.slot).version_fixed);
        n
    });
    assert_eq!(partition_version(&s, SP1), Version::V1_2);
}

#[test]
fn partition_version_fixed_after_boot() {
    let mut s = booted();
    assert_eq!(version(&mut s, V1_2), V1_2);
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 7]);
    let v = running(&next);
    assert_eq!(sp_version(&mut s, v, V1_0, &mut regs), NOT_SUPPORTED);
    assert_eq!(sp_version(&mut s, v, V1_1, &mut regs), NOT_SUPPORTED);
    assert_eq!(sp_version(&mut s, v, V1_2, &mut regs), V1_2);
    assert_eq!(partition_version(&s, SP1), Version::V1_2);
    let n = sp_call(&mut s, v, &[RESP64, (SP1 as u64) << 16, 0, 8], &mut regs);
    assert!(matches!(n, Next::NormalWorld));
}

#[test]
fn a_response_out_of_turn_fixes_a_partition_version_too() {
    let s = boot_with(|s, v, regs| {
        // Nobody asked: DENIED, but it was a call.
        sp_call(s, v, &[RESP64, (SP1 as u64) << 16, 0, 8], regs);
        assert!(s.partition(v.slot).version_fixed);
        assert_eq!(sp_version(s, v, V1_1, regs), NOT_SUPPORTED);
        sp_call(s, v, &[func::MSG_WAIT as u64], regs)
    });
    assert_eq!(partition_version(&s, SP1), Version::V1_2);
}

/// Each vTEE instance is a partition of its own: its version starts open
/// when it is made, also in a slot a destroyed instance left.
#[test]
fn vtee_instances_negotiate_their_own_version() {
    let mut s = policy_world(None);
    assert_eq!(version_message(&mut s, V1_2), V1_2);
    for round in 0..2 {
        let (next, mut regs) = nwd(&mut s, &vm_message(0, TEMPLATE, fwk::VM_CREATED, 5));
        let v = running(&next);
        assert!(!s.partition(v.slot).version_fixed, "round {round}");
        let want = if round == 0 { V1_1 } else { V1_0 };
        assert_eq!(sp_version(&mut s, v, want, &mut regs), V1_2);
        assert_eq!(sp_version(&mut s, v, V1_2, &mut regs), V1_2, "still open");
        assert_eq!(sp_version(&mut s, v, want, &mut regs), V1_2);
        let n = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
        assert!(matches!(n, Next::NormalWorld));
        assert_eq!(regs.w(3), 0, "created");
        let p = &s.partition(v.slot);
        assert!(p.version_fixed);
        assert_eq!(p.version.bits() as u64, want);
        assert_eq!(destroy_vm(&mut s, 5), 0);
    }
}
