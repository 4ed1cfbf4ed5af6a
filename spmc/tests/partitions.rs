//! Host tests of partition loading, stage 2, boot, messaging, discovery and
//! faults against the fake platform, with the shipped partition manifests.

mod common;

use common::world::*;
use common::{dtb, repo_root};
use spmc::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use spmc::ffa::{FfaError, Regs, func};
use spmc::ids::{PartId, SlotId};
use spmc::partition::PartitionState;
use spmc::sp_manifest::{self, SpError, Uuid};
use spmc::testing::FakePlatform;
use spmc::testing::{sp_call, sp_fault, sp_interrupt};
use spmc::vcpu::{Preemption, RunReason, VcpuState};
use spmc::{Next, Spmc};

const SP1: u16 = 0x8001;
const SP2: u16 = 0x8002;
const TPM: u16 = 0x8003;
const CRASH: u16 = 0x8004;
const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;

fn err(r: &Regs) -> Option<i32> {
    r.error_code()
}

#[test]
fn loads_the_valid_partitions_and_refuses_the_invalid_one() {
    let s = loaded();
    let ids: Vec<u16> = s.partitions().iter().map(|p| p.id().raw()).collect();
    assert_eq!(ids, [0x8001, 0x8002, 0x8003, 0x8004, 0x8005, 0x8006]);
    assert!(
        s.slot_of(PartId::new(0x8007)).is_none(),
        "the S-EL0 partition is refused"
    );
    assert_eq!(s.partitions()[1].config.uuids.len(), 2);
}

#[test]
fn partition_manifest_errors_are_specific() {
    let good = String::from_utf8(
        std::fs::read(repo_root().join("tf-a-integration/qemu/partitions/sp1.dts")).unwrap(),
    )
    .unwrap();
    let bad = |from: &str, to: &str| {
        let dts = good.replace(from, to);
        assert_ne!(dts, good, "replacement `{from}` did not apply");
        let path = std::env::temp_dir().join(format!(
            "spmc-test-{}.dts",
            std::process::id() ^ from.len() as u32 ^ to.len() as u32
        ));
        std::fs::write(&path, dts).unwrap();
        let blob = dtb(&path);
        std::fs::remove_file(&path).ok();
        sp_manifest::parse_manifest(&blob, "x").unwrap_err()
    };
    assert_eq!(
        bad("exception-level = <2>", "exception-level = <1>"),
        SpError::UnsupportedExceptionLevel(1)
    );
    assert_eq!(
        bad("execution-state = <0>", "execution-state = <1>"),
        SpError::UnsupportedExecutionState(1)
    );
    assert_eq!(bad("id = <0x8001>", "id = <0x0001>"), SpError::BadId(1));
    assert_eq!(
        bad("id = <0x8001>", "id = <0x8000>"),
        SpError::BadId(0x8000)
    );
    assert_eq!(
        bad("ffa-version = <0x00010002>", "ffa-version = <0x00020000>"),
        SpError::UnsupportedVersion(0x2_0000)
    );
    assert_eq!(
        bad("execution-ctx-count = <1>", "execution-ctx-count = <0>"),
        SpError::ExecutionContexts(0)
    );
    // One more than the cores of QEMU virt (8): refused with one clear line.
    let nine = bad("execution-ctx-count = <1>", "execution-ctx-count = <9>");
    assert_eq!(nine, SpError::ExecutionContexts(9));
    assert_eq!(
        nine.to_string(),
        "execution-ctx-count 0x9: a partition has 1 to 0x8 execution contexts (one per core at most)"
    );
    assert_eq!(
        bad(
            "execution-ctx-count = <1>",
            "execution-ctx-count = <1>;\n\tpower-management-messages = <0x8>"
        ),
        SpError::Bad("power-management-messages")
    );
    assert_eq!(
        bad("messaging-method = <0x607>", "messaging-method = <0x8607>"),
        SpError::Bad("messaging-method")
    );
    assert_eq!(
        bad(
            "load-address = <0x0 0x10000000>",
            "load-address = <0x0 0x10000010>"
        ),
        SpError::Bad("load-address")
    );
    assert_eq!(
        bad("arm,ffa-manifest-1.0", "arm,something"),
        SpError::NotPartitionManifest
    );
    assert_eq!(
        bad("pages-count = <32>", "pages-count = <0>"),
        SpError::Bad("memory-regions")
    );
    assert_eq!(
        bad(
            "\tuuid = <0x3a5e7c0b 0x8e4e2e6d 0x2d1c0a9f 0x615a4f3e>;\n",
            ""
        ),
        SpError::Missing("uuid")
    );
    assert_eq!(bad("\tid = <0x8001>;\n", ""), SpError::Missing("id"));
    // Memory and device regions: each required property named with its
    // region kind, and only a memory region refuses unknown attribute bits.
    assert_eq!(
        bad("pages-count = <32>;", ""),
        SpError::Missing("memory-regions/pages-count")
    );
    assert_eq!(
        bad("base-address = <0x0 0x10040000>;", ""),
        SpError::Missing("memory-regions/base-address")
    );
    assert_eq!(
        bad("attributes = <0x3>;\t/* read-write */\n\t\t};", "};"),
        SpError::Missing("memory-regions/attributes")
    );
    assert_eq!(
        bad(
            "attributes = <0x3>;\t/* read-write */\n\t\t};",
            "attributes = <0xb>;\n\t\t};"
        ),
        SpError::Bad("memory-regions")
    );
    assert_eq!(
        bad("pages-count = <1>;", ""),
        SpError::Missing("device-regions/pages-count")
    );
    assert_eq!(
        bad(
            "base-address = <0x0 0x090b0000>;",
            "base-address = <0x0 0x090b0010>;"
        ),
        SpError::Bad("device-regions")
    );
    assert_eq!(
        bad("attributes = <0x3>;\t/* read-write */\n\t\t\t/*", "/*"),
        SpError::Missing("device-regions/attributes")
    );
}

#[test]
fn a_device_region_ignores_attribute_bits_past_write() {
    let good = String::from_utf8(
        std::fs::read(repo_root().join("tf-a-integration/qemu/partitions/sp1.dts")).unwrap(),
    )
    .unwrap();
    let from = "attributes = <0x3>;\t/* read-write */\n\t\t\t/*";
    let dts = good.replace(from, "attributes = <0xb>;\n\t\t\t/*");
    assert_ne!(dts, good);
    let path = std::env::temp_dir().join(format!("spmc-test-dev-attr-{}.dts", std::process::id()));
    std::fs::write(&path, dts).unwrap();
    let blob = dtb(&path);
    std::fs::remove_file(&path).ok();
    let config = sp_manifest::parse_manifest(&blob, "x").unwrap();
    assert!(config.devices[0].write);
    assert_eq!(config.devices[0].pages, 1);
}

#[test]
fn overlapping_regions_and_duplicate_ids_are_refused() {
    let mut s = loaded();
    let mut cfg = s.partitions()[0].config.clone();
    cfg.id = 0x8010;
    cfg.memory[0].ipa = Ipa(IMAGE_IPA + PAGE_SIZE);
    let before = s.pool().unwrap().free_pages();
    let e = s
        .create_partition(
            cfg.clone(),
            Pa(PACKAGES + 0x4000),
            8200,
            &manifest("sp1"),
            spmc::policy::Kind::Static,
            None,
        )
        .unwrap_err();
    assert!(matches!(e, SpError::OverlappingRegions(_)));
    cfg.memory[0].ipa = Ipa(RAM_IPA);
    cfg.id = SP1;
    assert_eq!(
        s.create_partition(
            cfg,
            Pa(PACKAGES + 0x4000),
            8200,
            &manifest("sp1"),
            spmc::policy::Kind::Static,
            None
        ),
        Err(SpError::DuplicateId(SP1))
    );
    assert_eq!(s.pool().unwrap().free_pages(), before, "nothing leaked");
}

#[test]
fn exhausted_pool_refuses_without_leaking() {
    let mut s = loaded();
    let mut cfg = s.partitions()[0].config.clone();
    cfg.memory[0].pages = 1 << 20;
    cfg.id = 0x8011;
    // sp1's interrupt is sp1's: this copy claims none.
    cfg.devices.iter_mut().for_each(|d| d.interrupts.clear());
    let before = s.pool().unwrap().free_pages();
    let e = s
        .create_partition(
            cfg,
            Pa(PACKAGES + 0x4000),
            8200,
            &manifest("sp1"),
            spmc::policy::Kind::Static,
            None,
        )
        .unwrap_err();
    assert_eq!(e, SpError::OutOfMemory);
    assert_eq!(s.pool().unwrap().free_pages(), before);
}

#[test]
fn stage2_maps_each_partition_to_its_own_zeroed_memory() {
    let s = loaded();
    let mut all_pages = std::collections::HashSet::new();
    for p in s.partitions() {
        let img = p
            .stage2
            .lookup(IpaSpace::Secure, Ipa(IMAGE_IPA))
            .expect("image mapped");
        assert!(img.read && img.write && img.exec && !img.device);
        let ram = p
            .stage2
            .lookup(IpaSpace::Secure, Ipa(RAM_IPA))
            .expect("RAM mapped");
        // Under mem-size (sp2) the RAM is part of the RWX main mapping.
        assert!(ram.read && ram.write && (p.config.mem_size != 0 || !ram.exec));
        assert!(
            p.stage2
                .lookup(IpaSpace::Secure, Ipa(0x2000_0000))
                .is_none()
        );
        assert!(
            p.stage2.lookup(IpaSpace::Secure, Ipa(0)).is_none(),
            "no exception vectors at IPA 0"
        );
        assert!(
            p.stage2
                .lookup(IpaSpace::NonSecure, Ipa(IMAGE_IPA))
                .is_none(),
            "nothing in the NS IPA space"
        );
        // The image was copied, the RAM is zero.
        // (At 0x4000 into the package when it runs in place, sp2.)
        let at = if p.config.in_package.is_some() {
            0x4000
        } else {
            0
        };
        assert_eq!(s.platform().secure_read(Pa(img.pa.0 + at), 8200), image());
        assert!(
            s.platform()
                .secure_read(ram.pa, 32 * 4096)
                .iter()
                .all(|b| *b == 0)
        );
        for (ipa, a) in &p.memory {
            for i in 0..a.pages {
                let t = p
                    .stage2
                    .lookup(IpaSpace::Secure, Ipa(ipa.0 + i * PAGE_SIZE))
                    .unwrap();
                assert_eq!(t.pa.0, a.base.0 + i * PAGE_SIZE);
                assert!(
                    all_pages.insert(t.pa),
                    "page {:?} mapped in two partitions",
                    t.pa
                );
                assert!(POOL.contains(&spmc::manifest::MemRange {
                    base: t.pa.0,
                    size: PAGE_SIZE
                }));
            }
        }
    }
}

#[test]
fn vmids_differ_and_roots_are_in_the_contexts() {
    let mut s = loaded();
    let mut vmids: Vec<u16> = s.partitions().iter().map(|p| p.stage2.vmid()).collect();
    vmids.dedup();
    assert_eq!(vmids.len(), 6);
    let (vsttbr, vttbr) = (
        s.partitions()[0].stage2.vsttbr(),
        s.partitions()[0].stage2.vttbr(),
    );
    let ctx = s.vcpu_context_mut(vcpu_of(&s, SP1));
    assert_eq!((ctx.vsttbr, ctx.vttbr), (vsttbr, vttbr));
    assert_eq!(ctx.vttbr >> 48, 1, "VMID in VTTBR_EL2");
    assert_eq!(ctx.pc, IMAGE_IPA);
}

#[test]
fn unmapping_invalidates_the_right_ipa_space_and_vmid() {
    let mut s = loaded();
    let mut p = spmc::testing::FakePlatform::default();
    let s2 = &mut s.partitions_mut_for_tests()[0].stage2;
    s2.map(
        IpaSpace::NonSecure,
        Ipa(0x8000_0000),
        Pa(0x4000_0000),
        2 * PAGE_SIZE,
        spmc::stage2::Kind::Memory(sp_manifest::Access::RW),
    )
    .unwrap();
    assert!(s2.lookup(IpaSpace::NonSecure, Ipa(0x8000_1000)).is_some());
    assert!(s2.lookup(IpaSpace::Secure, Ipa(0x8000_1000)).is_none());
    s2.unmap(IpaSpace::NonSecure, Ipa(0x8000_0000), 2 * PAGE_SIZE, &mut p)
        .unwrap();
    assert!(s2.lookup(IpaSpace::NonSecure, Ipa(0x8000_0000)).is_none());
    let inv = p.invalidations.last().unwrap();
    assert_eq!(
        (inv.vmid, inv.space, inv.ipa, inv.len),
        (
            s2.vmid(),
            IpaSpace::NonSecure,
            Ipa(0x8000_0000),
            2 * PAGE_SIZE
        )
    );
    // Mapping twice is refused (no silent remap of a live entry).
    s2.map(
        IpaSpace::Secure,
        Ipa(0x3000_0000),
        Pa(0x0e60_0000),
        PAGE_SIZE,
        spmc::stage2::Kind::Device { write: false },
    )
    .unwrap();
    assert!(
        s2.map(
            IpaSpace::Secure,
            Ipa(0x3000_0000),
            Pa(0x0e61_0000),
            PAGE_SIZE,
            spmc::stage2::Kind::Device { write: true }
        )
        .is_err()
    );
    let dev = s2.lookup(IpaSpace::Secure, Ipa(0x3000_0000)).unwrap();
    assert!(dev.device && !dev.write && !dev.exec);
}

#[test]
fn boot_runs_partitions_in_order_with_boot_information() {
    let mut s = loaded();
    let mut regs = Regs::default();
    let next = s.boot(&mut regs);
    let first = running(&next);
    assert_eq!(s.partition(first.slot).id(), SP1);
    assert_eq!(
        s.vcpu_context_mut(first).x[0],
        0,
        "sp1 asks for no boot information"
    );
    let next = sp_call(&mut s, first, &[func::MSG_WAIT as u64], &mut regs);
    let second = running(&next);
    assert_eq!(s.partition(second.slot).id(), SP2);
    assert_eq!(s.vcpu_state(first), VcpuState::Waiting);
    let bi = s.vcpu_context_mut(second).x[0];
    // sp2 is packaged the Hafnium way: the package runs in place, so the
    // boot information is where its header was and points at the manifest
    // inside the package (sptool: 0x1000).
    assert_eq!(bi, IMAGE_IPA, "boot information over the package header");
    let p = &s.partition(second.slot);
    let pa = p.stage2.lookup(IpaSpace::Secure, Ipa(bi)).unwrap().pa;
    let blob = s.platform().secure_read(pa, 64);
    assert_eq!(&blob[0..4], &0x0FFAu32.to_le_bytes(), "signature");
    assert_eq!(&blob[16..20], &1u32.to_le_bytes(), "one descriptor");
    let content = u64::from_le_bytes(blob[56..64].try_into().unwrap());
    assert_eq!(content, IMAGE_IPA + 0x1000, "the manifest in the package");
    let m = p.stage2.lookup(IpaSpace::Secure, Ipa(content)).unwrap().pa;
    assert_eq!(
        s.platform().secure_read(m, 4),
        [0xd0, 0x0d, 0xfe, 0xed],
        "the manifest, as an FDT"
    );
}

#[test]
fn a_partition_that_faults_at_boot_is_aborted_and_boot_goes_on() {
    let mut s = loaded();
    let mut regs = Regs::default();
    let first = running(&s.boot(&mut regs));
    let next = sp_fault(&mut s, first, 0x2000_0000, &mut regs);
    let second = running(&next);
    assert_eq!(s.partition(first.slot).state, PartitionState::Aborted);
    assert_ne!(second, first);
    let next = sp_call(
        &mut s,
        second,
        &[func::ERROR_32 as u64, 0, (-2i32) as u32 as u64],
        &mut regs,
    );
    assert_eq!(
        s.partition(second.slot).state,
        PartitionState::Aborted,
        "FFA_ERROR at boot aborts"
    );
    assert!(matches!(next, Next::Run { .. }));
}

#[test]
fn direct_request_round_trip() {
    let mut s = booted();
    let (next, mut regs) = nwd(
        &mut s,
        &[REQ64, SP1 as u64, 0, 0x10, 1, 2, 3, 4, 0xAA, 0xBB],
    );
    let v = running(&next);
    assert_eq!(
        s.vcpu_context_mut(v).x[..8],
        [REQ64, SP1 as u64, 0, 0x10, 1, 2, 3, 4]
    );
    assert_ne!(
        s.vcpu_context_mut(v).x[8],
        0xAA,
        "x8-x17 of a REQ are not passed on"
    );
    let next = sp_call(
        &mut s,
        v,
        &[RESP64, (SP1 as u64) << 16, 0, 0, 9, 8, 7, 6],
        &mut regs,
    );
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[..8], [RESP64, (SP1 as u64) << 16, 0, 0, 9, 8, 7, 6]);
    assert_eq!(regs.0[8..10], [0xAA, 0xBB], "the caller's x8-x17 come back");
    assert_eq!(s.vcpu_state(v), VcpuState::Waiting);
}

#[test]
fn direct_request_errors() {
    let mut s = booted();
    let cases: &[(&[u64], FfaError)] = &[
        (&[REQ64, 0x8123, 0], FfaError::InvalidParameters),
        (&[REQ64, 0x8000, 0], FfaError::InvalidParameters),
        (&[REQ64, SP1 as u64, 5], FfaError::InvalidParameters),
        (
            &[REQ64, (0x8001 << 16) | SP2 as u64, 0],
            FfaError::InvalidParameters,
        ),
        (
            &[func::MSG_SEND_DIRECT_REQ2_64 as u64, SP1 as u64, 0, 0],
            FfaError::NotSupported,
        ),
    ];
    for (call, want) in cases {
        let r = nwd_now(&mut s, call);
        assert_eq!(err(&r), Some(want.code()), "{call:x?}");
    }
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    let r = nwd_now(
        &mut s,
        &[func::MSG_SEND_DIRECT_REQ2_64 as u64, CRASH as u64, 0, 0],
    );
    assert_eq!(
        err(&r),
        Some(FfaError::Denied.code()),
        "REQ2 to a partition that takes only REQ"
    );
    let u = Uuid([1, 2, 3, 4]).to_u64_pair();
    let r = nwd_now(
        &mut s,
        &[func::MSG_SEND_DIRECT_REQ2_64 as u64, SP2 as u64, u.0, u.1],
    );
    assert_eq!(
        err(&r),
        Some(FfaError::InvalidParameters.code()),
        "REQ2 to a UUID the partition lacks"
    );
}

#[test]
fn bad_responses_are_refused_to_the_partition() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x10]);
    let v = running(&next);
    let n = sp_call(
        &mut s,
        v,
        &[RESP64, (SP1 as u64) << 16 | 0x44, 0],
        &mut regs,
    );
    assert_eq!(running(&n), v);
    assert_eq!(
        s.vcpu_context_mut(v).x[2] as u32 as i32,
        FfaError::InvalidParameters.code()
    );
    let n = sp_call(
        &mut s,
        v,
        &[func::MSG_SEND_DIRECT_RESP2_64 as u64, (SP1 as u64) << 16, 0],
        &mut regs,
    );
    assert_eq!(running(&n), v);
    assert_eq!(
        s.vcpu_context_mut(v).x[2] as u32 as i32,
        FfaError::Denied.code(),
        "RESP2 to a REQ"
    );
    let n = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    assert_eq!(running(&n), v);
    assert_eq!(
        s.vcpu_context_mut(v).x[2] as u32 as i32,
        FfaError::Denied.code(),
        "MSG_WAIT while owing a response"
    );
    let n = sp_call(&mut s, v, &[RESP64, (SP1 as u64) << 16, 0, 0, 1], &mut regs);
    assert!(matches!(n, Next::NormalWorld));
    assert_eq!(regs.0[4], 1);
}

#[test]
fn partition_to_partition_chain_and_busy() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x13]);
    let a = running(&next);
    let next = sp_call(
        &mut s,
        a,
        &[REQ64, (SP1 as u64) << 16 | SP2 as u64, 0, 0x10, 5],
        &mut regs,
    );
    let b = running(&next);
    assert_eq!(s.partition(b.slot).id(), SP2);
    assert!(matches!(s.vcpu_state(a), VcpuState::Blocked(_)));
    // While sp2 runs for sp1, the normal world cannot reach either.
    let r = nwd_now(&mut s, &[REQ64, SP1 as u64, 0, 0x10]);
    assert_eq!(err(&r), Some(FfaError::Busy.code()));
    // sp2 cannot call back into the blocked sp1 (no cycles).
    let n = sp_call(
        &mut s,
        b,
        &[REQ64, (SP2 as u64) << 16 | SP1 as u64, 0, 0x10],
        &mut regs,
    );
    assert_eq!(running(&n), b);
    assert_eq!(
        s.vcpu_context_mut(b).x[2] as u32 as i32,
        FfaError::Busy.code()
    );
    let next = sp_call(
        &mut s,
        b,
        &[RESP64, (SP2 as u64) << 16 | SP1 as u64, 0, 0, 5],
        &mut regs,
    );
    assert_eq!(running(&next), a);
    assert_eq!(s.vcpu_context_mut(a).x[4], 5, "sp1 gets sp2's answer");
    let next = sp_call(&mut s, a, &[RESP64, (SP1 as u64) << 16, 0, 0, 6], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[4], 6);
}

#[test]
fn fault_aborts_and_callers_get_aborted() {
    let mut s = booted();
    // A partition blocked on one that faults gets ABORTED and goes on.
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x13]);
    let a = running(&next);
    let b = running(&sp_call(
        &mut s,
        a,
        &[REQ64, (SP1 as u64) << 16 | CRASH as u64, 0, 0x14],
        &mut regs,
    ));
    let next = sp_fault(&mut s, b, 0x2000_0000, &mut regs);
    assert_eq!(running(&next), a);
    assert_eq!(
        s.vcpu_context_mut(a).x[2] as u32 as i32,
        FfaError::Aborted.code()
    );
    assert_eq!(s.partition(b.slot).state, PartitionState::Aborted);
    let next = sp_call(&mut s, a, &[RESP64, (SP1 as u64) << 16, 0, 0], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    // The normal world's own request to a faulting partition.
    let (next, mut regs) = nwd(&mut s, &[REQ64, TPM as u64, 0, 0x16]);
    let t = running(&next);
    let next = sp_fault(&mut s, t, 0x200, &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(err(&regs), Some(FfaError::Aborted.code()));
    let r = nwd_now(&mut s, &[REQ64, TPM as u64, 0, 0x10]);
    assert_eq!(
        err(&r),
        Some(FfaError::Aborted.code()),
        "an aborted partition stays aborted"
    );
    let r = nwd_now(&mut s, &[func::RUN as u64, (TPM as u64) << 16]);
    assert_eq!(err(&r), Some(FfaError::Aborted.code()));
    // The others still answer.
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP2 as u64, 0, 0x10]);
    let v = running(&next);
    assert!(matches!(
        sp_call(&mut s, v, &[RESP64, (SP2 as u64) << 16, 0, 0], &mut regs),
        Next::NormalWorld
    ));
}

#[test]
fn interrupt_preempts_and_run_resumes() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x10]);
    let v = running(&next);
    let next = sp_interrupt(&mut s, v, &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.func(), func::INTERRUPT_32);
    assert_eq!(regs.0[1], (SP1 as u64) << 16);
    assert!(matches!(
        s.vcpu_state(v),
        VcpuState::Preempted(_, Preemption::Interrupt)
    ));
    let r = nwd_now(&mut s, &[REQ64, SP1 as u64, 0, 0x10]);
    assert_eq!(err(&r), Some(FfaError::Busy.code()));
    let pc = s.vcpu_context_mut(v).pc;
    let (next, mut regs) = nwd(&mut s, &[func::RUN as u64, (SP1 as u64) << 16]);
    assert_eq!(running(&next), v);
    assert_eq!(s.vcpu_context_mut(v).pc, pc, "resumed exactly where it was");
    let next = sp_call(&mut s, v, &[RESP64, (SP1 as u64) << 16, 0, 0, 3], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[4], 3, "the answer comes back on the FFA_RUN");
}

#[test]
fn yield_and_run() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP2 as u64, 0, 0x1B]);
    let v = running(&next);
    let next = sp_call(&mut s, v, &[func::YIELD as u64], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.func(), func::YIELD);
    let (next, _) = nwd(&mut s, &[func::RUN as u64, (SP2 as u64) << 16]);
    assert_eq!(running(&next), v);
    assert_eq!(
        s.vcpu_context_mut(v).x[0],
        func::SUCCESS_32 as u64,
        "FFA_YIELD returns SUCCESS"
    );
    // FFA_RUN of a waiting partition: it sees FFA_RUN; its FFA_MSG_WAIT returns to the caller.
    let (next, mut regs) = nwd(&mut s, &[func::RUN as u64, (SP1 as u64) << 16]);
    let w = running(&next);
    assert_eq!(s.vcpu_context_mut(w).x[0], func::RUN as u64);
    assert_eq!(s.vcpu_state(w), VcpuState::Running(RunReason::Scheduled));
    let next = sp_call(&mut s, w, &[func::MSG_WAIT as u64], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.func(), func::MSG_WAIT);
    let r = nwd_now(&mut s, &[func::RUN as u64, (SP1 as u64) << 16 | 3]);
    assert_eq!(
        err(&r),
        Some(FfaError::InvalidParameters.code()),
        "no vCPU 3"
    );
}

#[test]
fn rxtx_map_checks_normal_world_memory() {
    let mut s = booted();
    let cases: &[(&[u64], FfaError)] = &[
        (
            &[func::RXTX_MAP_64 as u64, 0x0e50_0000, 0x0e50_1000, 1],
            FfaError::InvalidParameters,
        ),
        (
            &[func::RXTX_MAP_64 as u64, NWD_TX + 8, NWD_RX, 1],
            FfaError::InvalidParameters,
        ),
        (
            &[func::RXTX_MAP_64 as u64, NWD_TX, NWD_TX, 1],
            FfaError::InvalidParameters,
        ),
        (
            &[func::RXTX_MAP_64 as u64, NWD_TX, NWD_RX, 0],
            FfaError::InvalidParameters,
        ),
        (
            &[func::RXTX_MAP_64 as u64, NWD_TX, NWD_RX, 17],
            FfaError::InvalidParameters,
        ),
        (
            &[func::RXTX_MAP_64 as u64, NWD_TX, !0xfffu64, 1],
            FfaError::InvalidParameters,
        ),
    ];
    for (call, want) in cases {
        assert_eq!(err(&nwd_now(&mut s, call)), Some(want.code()), "{call:x?}");
    }
    assert!(
        s.platform().ns_mapped.is_empty(),
        "nothing mapped after refusals"
    );
    map_nwd_buffers(&mut s);
    assert_eq!(s.platform().ns_mapped.len(), 2);
    assert_eq!(
        err(&nwd_now(
            &mut s,
            &[func::RXTX_MAP_64 as u64, NWD_TX, NWD_RX, 1]
        )),
        Some(FfaError::Denied.code())
    );
    assert_eq!(
        nwd_now(&mut s, &[func::RXTX_UNMAP as u64, 0]).func(),
        func::SUCCESS_32
    );
    assert!(
        s.platform().ns_mapped.is_empty(),
        "unmapped for the SPMC too"
    );
    assert_eq!(
        err(&nwd_now(&mut s, &[func::RXTX_UNMAP as u64, 0])),
        Some(FfaError::InvalidParameters.code())
    );
}

#[test]
fn partition_rxtx_map_must_name_its_own_memory() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x22]);
    let v = running(&next);
    sp_call(&mut s, v, &[func::RXTX_UNMAP as u64, 0], &mut regs);
    assert_eq!(s.vcpu_context_mut(v).x[0], func::SUCCESS_32 as u64);
    for (tx, rx) in [
        (0x2000_0000, RAM_IPA),
        (RAM_IPA, NWD_RX),
        (IMAGE_IPA + 0x10_0000, RAM_IPA),
    ] {
        sp_call(&mut s, v, &[func::RXTX_MAP_64 as u64, tx, rx, 1], &mut regs);
        assert_eq!(
            s.vcpu_context_mut(v).x[2] as u32 as i32,
            FfaError::InvalidParameters.code(),
            "{tx:#x} {rx:#x}"
        );
    }
}

#[test]
fn partition_info_in_both_layouts() {
    let mut s = booted();
    map_nwd_buffers(&mut s);
    // Unnegotiated callers are v1.0: no count-only flag, 8-byte descriptors.
    let r = nwd_now(&mut s, &[func::PARTITION_INFO_GET as u64, 0, 0, 0, 0, 1]);
    assert_eq!(
        err(&r),
        Some(FfaError::InvalidParameters.code()),
        "count-only flag at v1.0"
    );
    let r = nwd_now(&mut s, &[func::PARTITION_INFO_GET as u64, 0, 0, 0, 0, 0]);
    assert_eq!((r.func(), r.0[2], r.0[3]), (func::SUCCESS_32, 7, 0));
    let rx = s.platform().nwd_read(NWD_RX, 16);
    assert_eq!(u16::from_le_bytes([rx[0], rx[1]]), SP1);
    assert_eq!(u16::from_le_bytes([rx[8], rx[9]]), SP2);
    assert_eq!(
        err(&nwd_now(
            &mut s,
            &[func::PARTITION_INFO_GET as u64, 0, 0, 0, 0, 0]
        )),
        Some(FfaError::Busy.code())
    );
    assert_eq!(
        nwd_now(&mut s, &[func::RX_RELEASE as u64]).func(),
        func::SUCCESS_32
    );
    assert_eq!(
        err(&nwd_now(&mut s, &[func::RX_RELEASE as u64])),
        Some(FfaError::Denied.code())
    );
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    let r = nwd_now(&mut s, &[func::PARTITION_INFO_GET as u64, 0, 0, 0, 0, 1]);
    // Count only: w3 is reserved (MBZ) with flag bit 0 set (§13.8).
    assert_eq!(
        (r.func(), r.0[2], r.0[3]),
        (func::SUCCESS_32, 7, 0),
        "count only (v1.1+)"
    );
    let u = [0xa462_b817u64, 0xaf4f_0618, 0x9a08_b386, 0x6138_3558];
    let r = nwd_now(
        &mut s,
        &[func::PARTITION_INFO_GET as u64, u[0], u[1], u[2], u[3], 0],
    );
    assert_eq!((r.0[2], r.0[3]), (1, 24));
    let rx = s.platform().nwd_read(NWD_RX, 24);
    assert_eq!(u16::from_le_bytes([rx[0], rx[1]]), TPM);
    // Table 6.2 for a normal-world caller: direct receive, REQ2 receive,
    // AArch64; no send bits (a partition never sends a direct request to
    // the normal world).
    assert_eq!(
        u32::from_le_bytes(rx[4..8].try_into().unwrap()),
        0x209 | 1 << 8
    );
    // Table 6.1: the UUID field is MBZ when the caller named a UUID.
    assert_eq!(&rx[8..24], &[0u8; 16]);
    nwd_now(&mut s, &[func::RX_RELEASE as u64]);
    assert_eq!(
        err(&nwd_now(
            &mut s,
            &[func::PARTITION_INFO_GET as u64, 1, 2, 3, 4, 0]
        )),
        Some(FfaError::InvalidParameters.code())
    );
    assert_eq!(
        err(&nwd_now(
            &mut s,
            &[func::PARTITION_INFO_GET as u64, 0, 0, 0, 0, 2]
        )),
        Some(FfaError::InvalidParameters.code())
    );
}

#[test]
fn partition_info_regs_pages_through_descriptors() {
    let mut s = booted();
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    let f = func::PARTITION_INFO_GET_REGS_64 as u64;
    let r = nwd_now(&mut s, &[f, 0, 0, 0]);
    assert_eq!(r.func(), func::SUCCESS_64);
    assert_eq!(r.0[2] & 0xFFFF, 6, "last index");
    assert_eq!((r.0[2] >> 16) & 0xFFFF, 4, "five descriptors in this call");
    assert_eq!(r.0[2] >> 48, 24);
    assert_eq!(r.0[3] & 0xFFFF, SP1 as u64);
    assert_eq!((r.0[3] >> 32) as u32, 0x20D | 1 << 8);
    assert_eq!(
        r.0[15] & 0xFFFF,
        0x8004,
        "the fifth descriptor comes back in x15"
    );
    assert_eq!(
        r.0[17] >> 32,
        0x948d_7c6b,
        "and its UUID's last word in x17"
    );
    let r = nwd_now(&mut s, &[f, 0, 0, 5]);
    assert_eq!((r.0[2] >> 16) & 0xFFFF, 6);
    assert_eq!(r.0[9], 0);
    assert_eq!(
        err(&nwd_now(&mut s, &[f, 0, 0, 7])),
        Some(FfaError::InvalidParameters.code())
    );
    assert_eq!(
        err(&nwd_now(&mut s, &[f, 0, 0, 1 << 16])),
        Some(FfaError::Retry.code())
    );
}

#[test]
fn indirect_message_from_normal_world_to_partition() {
    let mut s = booted();
    let images = s.platform_mut().code_copies;
    assert!(images >= 2, "each partition's image is copied as code");
    map_nwd_buffers(&mut s);
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    let mut msg = vec![0u8; 48];
    msg[8..12].copy_from_slice(&40u32.to_le_bytes());
    msg[12..14].copy_from_slice(&SP1.to_le_bytes());
    msg[14..16].copy_from_slice(&0u16.to_le_bytes());
    msg[16..20].copy_from_slice(&8u32.to_le_bytes());
    msg[40..48].copy_from_slice(&0x1122_3344u64.to_le_bytes());
    s.platform_mut().nwd_write(NWD_TX, &msg);
    assert_eq!(
        nwd_now(&mut s, &[func::MSG_SEND2 as u64, 0, 0]).func(),
        func::SUCCESS_32
    );
    assert_eq!(
        s.platform_mut().code_copies,
        images,
        "a message's payload is data: no I-cache invalidation"
    );
    assert_eq!(
        err(&nwd_now(&mut s, &[func::MSG_SEND2 as u64, 0, 0])),
        Some(FfaError::Busy.code()),
        "receiver RX full"
    );
    // The message sits in sp1's RX (its second RAM page + 0x1000).
    let p = &s.partitions()[0];
    let rx = p
        .stage2
        .lookup(IpaSpace::Secure, Ipa(RAM_IPA + 0x1_1000))
        .unwrap()
        .pa;
    let got = s.platform().secure_read(rx, 48);
    assert_eq!(&got[12..16], &msg[12..16]);
    assert_eq!(&got[40..48], &msg[40..48]);
    // Bad headers.
    let mut bad = msg.clone();
    bad[8..12].copy_from_slice(&8u32.to_le_bytes());
    bad[12..14].copy_from_slice(&SP2.to_le_bytes());
    s.platform_mut().nwd_write(NWD_TX, &bad);
    assert_eq!(
        err(&nwd_now(&mut s, &[func::MSG_SEND2 as u64, 0, 0])),
        Some(FfaError::InvalidParameters.code())
    );
    bad[8..12].copy_from_slice(&40u32.to_le_bytes());
    bad[16..20].copy_from_slice(&5000u32.to_le_bytes());
    s.platform_mut().nwd_write(NWD_TX, &bad);
    assert_eq!(
        err(&nwd_now(&mut s, &[func::MSG_SEND2 as u64, 0, 0])),
        Some(FfaError::InvalidParameters.code())
    );
    bad[16..20].copy_from_slice(&8u32.to_le_bytes());
    bad[12..14].copy_from_slice(&TPM.to_le_bytes());
    s.platform_mut().nwd_write(NWD_TX, &bad);
    assert_eq!(
        err(&nwd_now(&mut s, &[func::MSG_SEND2 as u64, 0, 0])),
        Some(FfaError::Denied.code())
    );
    assert_eq!(
        err(&nwd_now(&mut s, &[func::MSG_SEND2 as u64, 0, 4])),
        Some(FfaError::InvalidParameters.code()),
        "unknown flag"
    );
}

#[test]
fn console_log_counts() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x19]);
    let v = running(&next);
    for (f, count, want) in [
        (func::CONSOLE_LOG_32, 0u64, Some(-2)),
        (func::CONSOLE_LOG_32, 25, Some(-2)),
        (func::CONSOLE_LOG_64, 129, Some(-2)),
        (func::CONSOLE_LOG_64, 3, None),
        (func::CONSOLE_LOG_32, 24, None),
    ] {
        sp_call(
            &mut s,
            v,
            &[f as u64, count, u64::from_le_bytes(*b"hi there"), 0x0a],
            &mut regs,
        );
        let r = Regs::from_slice(&s.vcpu_context_mut(v).x[..8]);
        assert_eq!(r.error_code(), want, "{f:#x} count {count}");
    }
    assert_eq!(
        err(&nwd_now(&mut s, &[func::CONSOLE_LOG_64 as u64, 1, 0x41])),
        Some(FfaError::NotSupported.code())
    );
}

#[test]
fn partition_features_and_ids() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP2 as u64, 0, 0x22]);
    let v = running(&next);
    let mut ask = |s: &mut spmc::Spmc<_>, call: &[u64]| {
        sp_call(s, v, call, &mut regs);
        Regs::from_slice(&s.vcpu_context_mut(v).x[..8])
    };
    assert_eq!(ask(&mut s, &[func::ID_GET as u64]).0[2], SP2 as u64);
    assert_eq!(ask(&mut s, &[func::SPM_ID_GET as u64]).0[2], 0x8000);
    assert_eq!(
        ask(&mut s, &[func::FEATURES as u64, func::MSG_WAIT as u64, 0]).func(),
        func::SUCCESS_32
    );
    assert_eq!(
        ask(&mut s, &[func::FEATURES as u64, func::RUN as u64, 0]).error_code(),
        Some(-1)
    );
    assert_eq!(
        ask(&mut s, &[func::RX_ACQUIRE as u64, 0]).error_code(),
        Some(-1)
    );
    assert_eq!(ask(&mut s, &[0x8400_00FF]).error_code(), Some(-1));
    assert_eq!(
        ask(&mut s, &[func::VERSION as u64, 0x8000_0000]).0[0] as u32 as i32,
        -1
    );
}

/// FFA_RXTX_MAP (DEN0077 v1.2 §13.5): w3[5:0] is the page count and
/// w3[31:6] is reserved (MBZ) in every version; a v1.2 caller that sets a
/// reserved bit is refused, not mapped with the bit masked off.
#[test]
fn rxtx_map_reserved_bits_of_w3_are_refused() {
    let mut s = booted();
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    for w3 in [0x41u64, 1 << 6 | 1, 1 << 31 | 1, 0x8000_0040] {
        for f in [func::RXTX_MAP_64, func::RXTX_MAP_32] {
            let r = nwd_now(&mut s, &[f as u64, NWD_TX, NWD_RX, w3]);
            assert_eq!(
                err(&r),
                Some(FfaError::InvalidParameters.code()),
                "{f:#x} w3 = {w3:#x}"
            );
        }
    }
    assert!(s.platform().ns_mapped.is_empty(), "nothing mapped");
    // A partition (at v1.2) likewise.
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x22]);
    let v = running(&next);
    sp_call(&mut s, v, &[func::RXTX_UNMAP as u64, 0], &mut regs);
    sp_call(
        &mut s,
        v,
        &[
            func::RXTX_MAP_64 as u64,
            RAM_IPA + 0x1_0000,
            RAM_IPA + 0x1_1000,
            0x41,
        ],
        &mut regs,
    );
    assert_eq!(
        s.vcpu_context_mut(v).x[2] as u32 as i32,
        FfaError::InvalidParameters.code()
    );
    // x3[63:32] is not part of w3: ignored.
    let r = nwd_now(
        &mut s,
        &[func::RXTX_MAP_64 as u64, NWD_TX, NWD_RX, 1 << 32 | 1],
    );
    assert_eq!(r.func(), func::SUCCESS_32);
}

/// FFA_FEATURES (DEN0077 v1.2 §13.3): the input properties in w2 mean
/// something only for FFA_MEM_RETRIEVE_REQ (bit 1: the caller handles the
/// NS bit; the other bits MBZ); for every other function ID and for
/// feature IDs w2 is MBZ. A query with reserved bits set is answered
/// NOT_SUPPORTED, the one error FFA_FEATURES has.
#[test]
fn features_input_properties_are_checked() {
    let mut s = booted();
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    let f = func::FEATURES as u64;
    assert_eq!(
        nwd_now(&mut s, &[f, func::VERSION as u64, 0]).func(),
        func::SUCCESS_32
    );
    for w2 in [1u64, 2, 1 << 31] {
        for id in [func::VERSION, func::RXTX_MAP_64, func::MEM_SHARE_64] {
            let r = nwd_now(&mut s, &[f, id as u64, w2]);
            assert_eq!(
                err(&r),
                Some(FfaError::NotSupported.code()),
                "{id:#x} w2 = {w2:#x}"
            );
        }
    }
    // x2[63:32] is not part of w2 (FFA_FEATURES is an SMC32 call).
    let r = nwd_now(&mut s, &[f, func::VERSION as u64, 1 << 32]);
    assert_eq!(r.func(), func::SUCCESS_32);
    // A partition asks about FFA_MEM_RETRIEVE_REQ: bit 1 may be set, no other.
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP2 as u64, 0, 0x22]);
    let v = running(&next);
    let mut ask = |s: &mut spmc::Spmc<_>, w2: u64| {
        sp_call(s, v, &[f, func::MEM_RETRIEVE_REQ_64 as u64, w2], &mut regs);
        Regs::from_slice(&s.vcpu_context_mut(v).x[..8])
    };
    // A v1.2 partition must say it handles the NS bit (bit 1).
    assert_eq!(
        ask(&mut s, 0).error_code(),
        Some(FfaError::NotSupported.code())
    );
    assert_eq!(ask(&mut s, 2).func(), func::SUCCESS_32);
    for w2 in [1u64, 3, 4, 1 << 31] {
        assert_eq!(
            ask(&mut s, w2).error_code(),
            Some(FfaError::NotSupported.code()),
            "w2 = {w2:#x}"
        );
    }
}

/// The VM a hypervisor names for discovery (w7/x7[15:0] of
/// FFA_PARTITION_INFO_GET(_REGS)) or in the ID fields of FFA_MSG_SEND2,
/// FFA_RXTX_UNMAP and FFA_RX_RELEASE is a VM ID: bit 15 set names a
/// secure endpoint, which is refused with INVALID_PARAMETERS, never taken
/// for the VM with bit 15 cleared.
#[test]
fn a_named_vm_id_with_bit_15_set_is_refused() {
    let mut s = booted();
    map_nwd_buffers(&mut s);
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    let inval = Some(FfaError::InvalidParameters.code());
    let get = func::PARTITION_INFO_GET as u64;
    let regs = func::PARTITION_INFO_GET_REGS_64 as u64;
    for named in [0x8000u64, 0x8001, 0xFFFF, 0x1_0001] {
        let r = nwd_now(&mut s, &[get, 0, 0, 0, 0, 1, 0, named]);
        assert_eq!(err(&r), inval, "PARTITION_INFO_GET w7 = {named:#x}");
        let r = nwd_now(&mut s, &[regs, 0, 0, 0, 0, 0, 0, named]);
        assert_eq!(err(&r), inval, "PARTITION_INFO_GET_REGS x7 = {named:#x}");
    }
    let r = nwd_now(&mut s, &[regs, 0, 0, 0, 0, 0, 0, 1 << 32]);
    assert_eq!(err(&r), inval, "PARTITION_INFO_GET_REGS x7[63:32]");
    // The 32-bit call's x7[63:32] is not part of w7: ignored. (Without a
    // policy a VM reaches nothing, so VM 1's discovery finds nothing.)
    let r = nwd_now(&mut s, &[get, 0, 0, 0, 0, 1, 0, 1 << 32]);
    assert_eq!((r.func(), r.0[2]), (func::SUCCESS_32, 7));
    let r = nwd_now(&mut s, &[regs, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(err(&r), inval, "VM 1 discovers nothing here");
    // The other fields that name a VM.
    let r = nwd_now(&mut s, &[func::MSG_SEND2 as u64, 0x8001 << 16]);
    assert_eq!(err(&r), inval, "MSG_SEND2 w1[31:16]");
    let r = nwd_now(&mut s, &[func::RX_RELEASE as u64, 0x8000]);
    assert_eq!(err(&r), inval, "RX_RELEASE w1[15:0]");
    let r = nwd_now(&mut s, &[func::RXTX_UNMAP as u64, 0x8000 << 16]);
    assert_eq!(err(&r), inval, "RXTX_UNMAP w1[31:16]");
    assert_eq!(s.platform().ns_mapped.len(), 2, "the buffers stay mapped");
}

/// The properties word of the `i`th descriptor of a nil-UUID
/// FFA_PARTITION_INFO_GET_REGS answer.
fn regs_props(r: &Regs, i: usize) -> (u16, u32) {
    let x = r.0[3 + i * 3];
    (x as u16, (x >> 32) as u32)
}

/// Partition properties (DEN0077 v1.2 §6.2, Table 6.2) depend on who asks:
/// a normal-world caller sees no send bits (bits 1 and 10: a partition
/// never sends a direct request to the normal world) and, only for a
/// partition that receives direct requests, the VM created / destroyed
/// bits 6 and 7; a partition caller sees the send bits and never bits 6
/// and 7 (reserved at a secure instance). Bit 8 (AArch64) is always set,
/// bit 3 (notifications) for partitions whose manifest declares
/// `notification-support` (sp1, sp2, tpm).
#[test]
fn discovery_properties_depend_on_the_caller() {
    let mut s = booted();
    let sp2 = s.slot_of(PartId::new(SP2)).unwrap().index();
    s.partitions_mut_for_tests()[sp2].config.vm_availability = 3;
    let crash = s.slot_of(PartId::new(CRASH)).unwrap().index();
    s.partitions_mut_for_tests()[crash].config.vm_availability = 3;
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    let f = func::PARTITION_INFO_GET_REGS_64 as u64;
    let r = nwd_now(&mut s, &[f, 0, 0, 0]);
    assert_eq!(r.func(), func::SUCCESS_64);
    // SP1 0x607, SP2 0x607 + VM messages, TPM 0x603, crash-data 0x3 + VM messages.
    assert_eq!(regs_props(&r, 0), (SP1, 0x30D));
    assert_eq!(regs_props(&r, 1), (SP2, 0x3CD));
    assert_eq!(regs_props(&r, 2), (SP2, 0x3CD));
    assert_eq!(regs_props(&r, 3), (TPM, 0x309));
    assert_eq!(regs_props(&r, 4), (CRASH, 0x1C1));
    // A partition asks.
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x22]);
    let v = running(&next);
    sp_call(&mut s, v, &[f, 0, 0, 0], &mut regs);
    let r = Regs::from_slice(&s.vcpu_context_mut(v).x);
    assert_eq!(r.func(), func::SUCCESS_64);
    assert_eq!(regs_props(&r, 0), (SP1, 0x70F));
    assert_eq!(regs_props(&r, 1), (SP2, 0x70F), "no VM message bits");
    assert_eq!(regs_props(&r, 3), (TPM, 0x70B));
    assert_eq!(regs_props(&r, 4), (CRASH, 0x103), "no VM message bits");
}

/// Bits 6 and 7 are "used only if the partition supports receipt of
/// direct requests" (Table 6.2): a partition that does not receive direct
/// requests shows neither, whatever its manifest subscribes to.
#[test]
fn vm_message_bits_need_direct_receive() {
    let mut s = booted();
    let sp2 = s.slot_of(PartId::new(SP2)).unwrap().index();
    let p = &mut s.partitions_mut_for_tests()[sp2];
    p.config.vm_availability = 3;
    p.config.messaging = sp_manifest::Messaging(sp_manifest::Messaging::INDIRECT);
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    let r = nwd_now(&mut s, &[func::PARTITION_INFO_GET_REGS_64 as u64, 0, 0, 0]);
    assert_eq!(regs_props(&r, 1), (SP2, 0x10C));
}

/// A partition's own version bounds its properties (as Hafnium does): no
/// REQ2 bits before v1.2 (FFA_MSG_SEND_DIRECT_REQ2 is a v1.2 ABI), no
/// indirect messages before v1.1 (FFA_MSG_SEND2 is a v1.1 ABI); and the
/// caller's version hides the bits it does not know (v1.1: bits [31:9]
/// reserved; v1.0: bits [31:3]).
#[test]
fn properties_follow_both_versions() {
    let mut s = booted();
    map_nwd_buffers(&mut s);
    let sp1 = s.slot_of(PartId::new(SP1)).unwrap().index();
    s.partitions_mut_for_tests()[sp1].version = spmc::ffa::Version::V1_1;
    let sp2 = s.slot_of(PartId::new(SP2)).unwrap().index();
    s.partitions_mut_for_tests()[sp2].version = spmc::ffa::Version::V1_0;
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    let r = nwd_now(&mut s, &[func::PARTITION_INFO_GET_REGS_64 as u64, 0, 0, 0]);
    assert_eq!(regs_props(&r, 0), (SP1, 0x10D), "v1.1 partition: no REQ2");
    assert_eq!(
        regs_props(&r, 1),
        (SP2, 0x101),
        "v1.0 partition: no indirect"
    );
    assert_eq!(regs_props(&r, 3), (TPM, 0x309));
    // A v1.1 caller: bits 9 and 10 are reserved.
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0001]);
    let r = nwd_now(&mut s, &[func::PARTITION_INFO_GET as u64, 0, 0, 0, 0, 0]);
    assert_eq!((r.func(), r.0[2], r.0[3]), (func::SUCCESS_32, 7, 24));
    let rx = s.platform().nwd_read(NWD_RX, 7 * 24);
    let props = |i: usize| u32::from_le_bytes(rx[i * 24 + 4..i * 24 + 8].try_into().unwrap());
    assert_eq!(props(3), 0x109, "TPM at v1.1");
    nwd_now(&mut s, &[func::RX_RELEASE as u64]);
    // A v1.0 caller: bits [31:3] are reserved.
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0000]);
    let r = nwd_now(&mut s, &[func::PARTITION_INFO_GET as u64, 0, 0, 0, 0, 0]);
    assert_eq!(r.func(), func::SUCCESS_32);
    let rx = s.platform().nwd_read(NWD_RX, 7 * 8);
    let props = |i: usize| u32::from_le_bytes(rx[i * 8 + 4..i * 8 + 8].try_into().unwrap());
    assert_eq!(props(0), 0x5, "SP1 at v1.0: direct receive, indirect");
    nwd_now(&mut s, &[func::RX_RELEASE as u64]);
}

/// FFA_PARTITION_INFO_GET (§13.8): count only puts the count in w2 and
/// leaves w3 reserved (0) whether or not a UUID is named; descriptors for a
/// named UUID carry a zero UUID field (Table 6.1), for the nil UUID each
/// carries its UUID.
#[test]
fn partition_info_count_only_and_uuid_field() {
    let mut s = booted();
    map_nwd_buffers(&mut s);
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    let get = func::PARTITION_INFO_GET as u64;
    let sp1 = [0x3a5e_7c0bu64, 0x8e4e_2e6d, 0x2d1c_0a9f, 0x615a_4f3e];
    let r = nwd_now(&mut s, &[get, sp1[0], sp1[1], sp1[2], sp1[3], 1]);
    assert_eq!((r.func(), r.0[2], r.0[3]), (func::SUCCESS_32, 1, 0));
    let r = nwd_now(&mut s, &[get, sp1[0], sp1[1], sp1[2], sp1[3], 0]);
    assert_eq!((r.func(), r.0[2], r.0[3]), (func::SUCCESS_32, 1, 24));
    assert_eq!(s.platform().nwd_read(NWD_RX + 8, 16), [0u8; 16]);
    nwd_now(&mut s, &[func::RX_RELEASE as u64]);
    let r = nwd_now(&mut s, &[get, 0, 0, 0, 0, 0]);
    assert_eq!(r.func(), func::SUCCESS_32);
    assert_eq!(
        s.platform().nwd_read(NWD_RX + 8, 4),
        0x3a5e_7c0bu32.to_le_bytes()
    );
    nwd_now(&mut s, &[func::RX_RELEASE as u64]);
}

/// FFA_FEATURES of the memory-sending ABIs (§13.3): w2 bit 0 (a buffer the
/// caller allocates) up to v1.1, w2 reserved (0) from v1.2, at both
/// instances; FFA_MEM_RETRIEVE_REQ from a v1.2 partition needs the NS-bit
/// input property and then reports bits 0 and 1.
#[test]
fn features_of_memory_abis_follow_the_version() {
    let mut s = booted();
    let f = func::FEATURES as u64;
    let sends = [
        func::MEM_SHARE_32,
        func::MEM_SHARE_64,
        func::MEM_LEND_32,
        func::MEM_LEND_64,
        func::MEM_DONATE_32,
        func::MEM_DONATE_64,
    ];
    for (v, want) in [(0x1_0002u64, 0u64), (0x1_0001, 1), (0x1_0000, 1)] {
        s.reopen_nwd_version_for_tests();
        nwd_now(&mut s, &[func::VERSION as u64, v]);
        for id in sends {
            let r = nwd_now(&mut s, &[f, id as u64, 0]);
            assert_eq!(
                (r.func(), r.0[2]),
                (func::SUCCESS_32, want),
                "{v:#x} {id:#x}"
            );
        }
    }
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x22]);
    let v = running(&next);
    for id in sends {
        sp_call(&mut s, v, &[f, id as u64, 0], &mut regs);
        let x = &s.vcpu_context_mut(v).x;
        assert_eq!((x[0] as u32, x[2]), (func::SUCCESS_32, 0), "{id:#x}");
    }
    for id in [func::MEM_RETRIEVE_REQ_32, func::MEM_RETRIEVE_REQ_64] {
        sp_call(&mut s, v, &[f, id as u64, 0], &mut regs);
        assert_eq!(
            Regs::from_slice(&s.vcpu_context_mut(v).x[..8]).error_code(),
            Some(FfaError::NotSupported.code())
        );
        sp_call(&mut s, v, &[f, id as u64, 2], &mut regs);
        let x = &s.vcpu_context_mut(v).x;
        assert_eq!((x[0] as u32, x[2], x[3]), (func::SUCCESS_32, 0b11, 0));
    }
}

/// An SPMC with one package holding `dts` (a shipped manifest's text after
/// `edit`) and the fake image, loaded.
fn one_package(name: &str, edit: &[(&str, &str)]) -> Spmc<FakePlatform> {
    let mut text = String::from_utf8(
        std::fs::read(repo_root().join(format!("tf-a-integration/qemu/partitions/{name}.dts")))
            .unwrap(),
    )
    .unwrap();
    for (from, to) in edit {
        let t = text.replace(from, to);
        assert_ne!(t, text, "replacement `{from}` did not apply");
        text = t;
    }
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("spmc-pkg-{}-{n}.dts", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let blob = dtb(&path);
    std::fs::remove_file(&path).ok();
    let mut p = FakePlatform::default();
    p.put_package(Pa(PACKAGES), &blob, &image());
    let mut config = config();
    config.partitions.truncate(1);
    let mut s = Spmc::new(config, p);
    s.load_partitions();
    s
}

/// The bytes partition `slot` sees at `ipa` (`len` bytes, one page at most).
fn sp_read(s: &Spmc<FakePlatform>, slot: usize, ipa: u64, len: usize) -> Option<Vec<u8>> {
    let pa = s.partitions()[slot]
        .stage2
        .lookup(IpaSpace::Secure, Ipa(ipa))?
        .pa;
    Some(s.platform().secure_read(pa, len))
}

#[test]
fn a_package_built_the_hafnium_way_runs_in_place() {
    // sp2 as shipped: entrypoint-offset 0x4000, mem-size 0x60000, no region.
    let s = one_package("sp2", &[]);
    let p = &s.partitions()[0];
    assert_eq!(p.config.in_package, Some(0x1000));
    assert_eq!(
        s.vcpu_context(spmc::vcpu::VcpuRef {
            slot: SlotId::new(0),
            index: 0
        })
        .pc,
        IMAGE_IPA + 0x4000,
        "entry 0x4000 into the package"
    );
    // The image sits at its offset in the package, so the entry point is its first byte.
    assert_eq!(
        sp_read(&s, 0, IMAGE_IPA + 0x4000, 16).unwrap(),
        image()[..16]
    );
    assert_eq!(
        sp_read(&s, 0, IMAGE_IPA + 0x1000, 4).unwrap(),
        [0xd0, 0x0d, 0xfe, 0xed],
        "the manifest at 0x1000"
    );
    // mem-size is mapped (read-write), zeroed beyond the image, and nothing past it.
    let last = IMAGE_IPA + 0x60000 - PAGE_SIZE;
    let m = p.stage2.lookup(IpaSpace::Secure, Ipa(last)).unwrap();
    assert!(m.write, "mem-size is writable: .bss and stack live there");
    assert_eq!(sp_read(&s, 0, RAM_IPA, 64).unwrap(), [0; 64]);
    assert!(sp_read(&s, 0, IMAGE_IPA + 0x60000, 1).is_none());
    // One allocation for the package and mem-size (no RAM region of its
    // own); the only other is sp2's read-only page for the sharing checks.
    let ipas: Vec<u64> = p.memory.iter().map(|(ipa, _)| ipa.0).collect();
    assert_eq!(ipas, [IMAGE_IPA, 0x1008_0000], "no RAM region of its own");
}

#[test]
fn an_image_loaded_alone_maps_mem_size_and_keeps_boot_information_after_it() {
    // The older layout (entry offset 0: the image alone at load-address)
    // with mem-size and boot information: the blob goes after mem-size, not
    // over what would be the image's .bss.
    let s = one_package(
        "crash-data",
        &[(
            "entrypoint-offset = <0x0>;",
            "entrypoint-offset = <0x0>; mem-size = <0x30000>; gp-register-num = <1>;",
        )],
    );
    let p = &s.partitions()[0];
    assert_eq!(p.config.in_package, None);
    assert_eq!(
        s.vcpu_context(spmc::vcpu::VcpuRef {
            slot: SlotId::new(0),
            index: 0
        })
        .pc,
        IMAGE_IPA
    );
    assert_eq!(sp_read(&s, 0, IMAGE_IPA, 16).unwrap(), image()[..16]);
    assert_eq!(sp_read(&s, 0, IMAGE_IPA + 0x2f000, 8).unwrap(), [0; 8]);
    let bi = s
        .vcpu_context(spmc::vcpu::VcpuRef {
            slot: SlotId::new(0),
            index: 0,
        })
        .x[1];
    assert_eq!(bi, IMAGE_IPA + 0x30000, "boot information after mem-size");
    let blob = sp_read(&s, 0, bi, 64).unwrap();
    let content = u64::from_le_bytes(blob[56..64].try_into().unwrap());
    assert_eq!(content, bi + 64);
    assert_eq!(
        sp_read(&s, 0, content, 4).unwrap(),
        [0xd0, 0x0d, 0xfe, 0xed]
    );
}

#[test]
fn boot_information_carries_the_version_the_partition_states() {
    // DEN0077 v1.2 §5.4.1: the header's version is encoded as in
    // FFA_VERSION. A v1.1 partition (OP-TEE 4.5 checks for exactly 0x10001)
    // gets a v1.1 blob, a v1.2 one a v1.2 blob; the layout is the same.
    // crash-data's manifest states 1.2; the first round edits it to 1.1.
    for (version, want) in [(0x0001_0001u32, 0x0001_0001u32), (0x0001_0002, 0x0001_0002)] {
        let stated = if version == 0x0001_0002 {
            "ffa-version = <0x00010002>; /* as it is */".to_string()
        } else {
            format!("ffa-version = <{version:#010x}>;")
        };
        let s = one_package(
            "crash-data",
            &[
                (
                    "entrypoint-offset = <0x0>;",
                    "entrypoint-offset = <0x0>; mem-size = <0x30000>; gp-register-num = <1>;",
                ),
                ("ffa-version = <0x00010002>;", stated.as_str()),
            ],
        );
        let bi = s
            .vcpu_context(spmc::vcpu::VcpuRef {
                slot: SlotId::new(0),
                index: 0,
            })
            .x[1];
        let blob = sp_read(&s, 0, bi, 64).unwrap();
        assert_eq!(&blob[0..4], &0x0FFAu32.to_le_bytes(), "signature");
        assert_eq!(
            u32::from_le_bytes(blob[4..8].try_into().unwrap()),
            want,
            "boot information version for a partition of version {version:#x}"
        );
    }
}

#[test]
fn mem_size_that_reaches_a_region_or_is_zero_is_refused() {
    let s = one_package(
        "crash-data",
        &[(
            "entrypoint-offset = <0x0>;",
            "entrypoint-offset = <0x0>; mem-size = <0x41000>;",
        )],
    );
    assert!(s.partitions().is_empty(), "mem-size over the ram region");
    let s = one_package(
        "crash-data",
        &[(
            "entrypoint-offset = <0x0>;",
            "entrypoint-offset = <0x0>; mem-size = <0>;",
        )],
    );
    assert!(s.partitions().is_empty(), "mem-size 0");
}

#[test]
fn an_entry_offset_inside_the_package_image_runs_the_package_in_place() {
    // Entry 0x4008: inside the image (0x4000..) of the package.
    let s = one_package(
        "crash-data",
        &[(
            "entrypoint-offset = <0x0>;",
            "entrypoint-offset = <0x4008>;",
        )],
    );
    assert_eq!(
        s.vcpu_context(spmc::vcpu::VcpuRef {
            slot: SlotId::new(0),
            index: 0
        })
        .pc,
        IMAGE_IPA + 0x4008
    );
    assert_eq!(sp_read(&s, 0, IMAGE_IPA + 0x4000, 8).unwrap(), image()[..8]);
    let hdr = sp_read(&s, 0, IMAGE_IPA, 4).unwrap();
    assert_eq!(
        hdr,
        0x474b_5053u32.to_le_bytes(),
        "the package header, as loaded"
    );
}
