//! Host tests of the binding policy and the per-VM trusted environments
//! (instances of a template partition), with the QEMU image's shipped policy:
//! 0x8003 shared, VM 1 bound to 0x8001, template 0x8010 with instances
//! 0x8100.. (64 of them, 40 pages quota each).

mod common;

use spmc::ids::{PartId, SlotId, VmId};
use std::collections::{HashMap, HashSet};

use common::world::*;
use proptest::prelude::*;
use spmc::Next;
use spmc::Spmc;
use spmc::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use spmc::ffa::{FfaError, Regs, func, fwk};
use spmc::manifest::MemRange;
use spmc::partition::PartitionState;
use spmc::policy::Kind;
use spmc::testing::{FakePlatform, NS_BASE, sp_fault};
use spmc::vcpu::{VcpuRef, VcpuState};

const SP1: u16 = 0x8001;
const SP2: u16 = 0x8002;
const TPM: u16 = 0x8003;

fn code(e: FfaError) -> i32 {
    e.code()
}

/// A direct request from `vm` to `to`: the vCPU it runs, or the error code.
fn request(s: &mut Spmc<FakePlatform>, vm: u16, to: u16) -> Result<(VcpuRef, Regs), i32> {
    vm_request(s, vm, to, 7)
}

/// IPA -> PA of a partition's secure page.
fn pa_of(s: &Spmc<FakePlatform>, slot: SlotId, ipa: u64) -> Pa {
    s.partition(slot)
        .stage2
        .lookup(IpaSpace::Secure, Ipa(ipa))
        .expect("mapped")
        .pa
}

#[test]
fn each_vm_gets_its_own_instance_with_its_own_memory() {
    let mut s = policy_world(None);
    assert!(
        s.slot_of(PartId::new(TEMPLATE)).is_none(),
        "the template itself never runs"
    );
    let free0 = s.pool().unwrap().free_pages();
    for vm in 1..=4 {
        assert_eq!(create_vm(&mut s, vm), 0, "VM {vm} created");
    }
    let ids: Vec<u16> = (1..=4).map(|vm| instance_id(&s, vm).unwrap()).collect();
    assert_eq!(ids, [0x8100, 0x8101, 0x8102, 0x8103]);
    let mut pages = HashSet::new();
    let mut vmids = HashSet::new();
    for vm in 1..=4 {
        let slot = s.instance_of(0, VmId::new(vm)).unwrap();
        let p = &s.partition(slot);
        assert_eq!(
            p.kind,
            Kind::Instance {
                owner: VmId::new(vm)
            }
        );
        assert_eq!(p.state, PartitionState::Running);
        assert_eq!(s.vcpu_states(slot)[0], VcpuState::Waiting);
        assert!(vmids.insert(p.stage2.vmid()), "own VMID");
        for (ipa, a) in &p.memory {
            for i in 0..a.pages {
                let t = p
                    .stage2
                    .lookup(IpaSpace::Secure, Ipa(ipa.0 + i * PAGE_SIZE))
                    .unwrap();
                assert!(s.pool().unwrap().contains(t.pa), "from the pool");
                assert!(pages.insert(t.pa), "page {:?} in two instances", t.pa);
            }
        }
        // The image is the template's, copied from the pristine package.
        let img = s
            .platform()
            .secure_read(pa_of(&s, slot, IMAGE_IPA), image().len());
        assert_eq!(img, image());
    }
    let used = free0 - s.pool().unwrap().free_pages();
    assert!(used <= 4 * 40, "within the quota: {used} pages for 4");
}

#[test]
fn the_template_id_reaches_the_callers_own_instance() {
    let mut s = policy_world(None);
    for vm in 1..=3 {
        assert_eq!(create_vm(&mut s, vm), 0);
    }
    for vm in 1..=3 {
        let (v, regs) = request(&mut s, vm, TEMPLATE).expect("routed");
        assert_eq!(
            Some(v.slot),
            s.instance_of(0, VmId::new(vm)),
            "VM {vm}'s own instance"
        );
        let ctx = s.vcpu_context_mut(v).x;
        assert_eq!(ctx[1] >> 16, vm as u64, "the sender is the VM");
        assert_eq!(ctx[3..8], [7, 1, 2, 3, 4]);
        let r = vm_answer(&mut s, v, vm, regs);
        assert_eq!(r.x(3), 0x600D);
        assert_eq!(
            r.x(1),
            (instance_id(&s, vm).unwrap() as u64) << 16 | vm as u64
        );
        // And its own instance ID works as well.
        let own = instance_id(&s, vm).unwrap();
        let (v2, regs) = request(&mut s, vm, own).unwrap();
        assert_eq!(v2, v);
        vm_answer(&mut s, v2, vm, regs);
    }
}

#[test]
fn the_policy_denies_what_a_vm_may_not_reach() {
    let mut s = policy_world(None);
    assert_eq!(create_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 2), 0);
    let (i1, i2) = (instance_id(&s, 1).unwrap(), instance_id(&s, 2).unwrap());
    let denied = code(FfaError::Denied);
    // Another VM's instance.
    assert_eq!(request(&mut s, 2, i1).unwrap_err(), denied);
    assert_eq!(request(&mut s, 1, i2).unwrap_err(), denied);
    // Not even the hypervisor reaches an instance.
    assert_eq!(request(&mut s, 0, i1).unwrap_err(), denied);
    // A VM without an instance, to the template.
    assert_eq!(request(&mut s, 3, TEMPLATE).unwrap_err(), denied);
    assert_eq!(request(&mut s, 0, TEMPLATE).unwrap_err(), denied);
    // A partition bound to another VM, and an unbound one.
    assert_eq!(request(&mut s, 2, SP1).unwrap_err(), denied);
    assert_eq!(request(&mut s, 2, SP2).unwrap_err(), denied);
    // What is allowed: VM 1's binding, the shared partition, everything static for endpoint 0.
    for (vm, to) in [(1, SP1), (1, TPM), (2, TPM), (7, TPM), (0, SP1), (0, SP2)] {
        let (v, regs) = request(&mut s, vm, to).unwrap_or_else(|e| panic!("{vm}->{to:#x}: {e}"));
        vm_answer(&mut s, v, vm, regs);
    }
    // Nothing changed state on the way: every partition waits (an MP
    // partition's contexts for cores that never came on stay off).
    for (slot, p) in s
        .partitions()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.state == PartitionState::Running)
    {
        let states = s.vcpu_states(SlotId::new(slot as u16));
        assert!(
            states[0] == VcpuState::Waiting && states[1..].iter().all(|v| *v == VcpuState::Off),
            "{:#x}",
            p.id()
        );
    }
}

#[test]
fn discovery_shows_each_vm_what_it_may_reach() {
    let mut s = policy_world(None);
    assert_eq!(create_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 2), 0);
    let seen = |s: &mut Spmc<FakePlatform>, vm: u16| -> Vec<u16> {
        let mut out = Vec::new();
        let mut start = 0u64;
        loop {
            s.reopen_nwd_version_for_tests();
            let r = nwd_now(s, &[func::VERSION as u64, 0x1_0002]);
            assert_eq!(r.0[0], 0x1_0002);
            let r = nwd_now(
                s,
                &[
                    func::PARTITION_INFO_GET_REGS_64 as u64,
                    0,
                    0,
                    start,
                    0,
                    0,
                    0,
                    vm as u64,
                ],
            );
            assert_eq!(r.func(), func::SUCCESS_64, "{r:?}");
            // x2: last index [15:0], index of the last descriptor returned [31:16].
            let (last, cur) = (r.x(2) & 0xFFFF, (r.x(2) >> 16) & 0xFFFF);
            for i in 0..(cur - start + 1) as usize {
                out.push(r.x(3 + 3 * i) as u16);
            }
            if cur == last {
                break;
            }
            start = cur + 1;
        }
        out.sort_unstable();
        out.dedup();
        out
    };
    let (i1, i2) = (instance_id(&s, 1).unwrap(), instance_id(&s, 2).unwrap());
    assert_eq!(seen(&mut s, 1), [SP1, TPM, i1]);
    assert_eq!(seen(&mut s, 2), [TPM, i2]);
    assert_eq!(seen(&mut s, 9), [TPM]);
    let host = seen(&mut s, 0);
    assert!(host.contains(&SP1) && host.contains(&SP2) && host.contains(&TPM));
    assert!(
        !host.contains(&i1) && !host.contains(&i2),
        "no instance for the host"
    );
    // Count-only discovery of the template's UUID: exactly the caller's own instance.
    let uuid = s.templates()[0].partition.uuids[0].0;
    for (vm, want) in [(1u16, 1u64), (2, 1), (3, 0)] {
        let r = nwd_now(
            &mut s,
            &[
                func::PARTITION_INFO_GET as u64,
                uuid[0] as u64,
                uuid[1] as u64,
                uuid[2] as u64,
                uuid[3] as u64,
                1,
                0,
                vm as u64,
            ],
        );
        if want == 0 {
            assert_eq!(r.error_code(), Some(code(FfaError::InvalidParameters)));
        } else {
            assert_eq!(r.func(), func::SUCCESS_32);
            assert_eq!(r.x(2), want);
        }
    }
}

#[test]
fn vm_availability_messages_are_checked() {
    let mut s = policy_world(None);
    // Only the hypervisor (endpoint 0) sends them.
    for sender in [1u16, 5, 0x7FFF] {
        let r = nwd_now(
            &mut s,
            &vm_message(sender, TEMPLATE, fwk::VM_CREATED, sender),
        );
        assert_eq!(
            r.error_code(),
            Some(code(FfaError::Denied)),
            "sender {sender}"
        );
        let r = nwd_now(&mut s, &vm_message(sender, TEMPLATE, fwk::VM_DESTROYED, 1));
        assert_eq!(r.error_code(), Some(code(FfaError::Denied)));
    }
    assert!(instance_id(&s, 1).is_none() && instance_id(&s, 5).is_none());
    // To something that is not a template.
    let r = nwd_now(&mut s, &vm_message(0, SP1, fwk::VM_CREATED, 1));
    assert_eq!(r.error_code(), Some(code(FfaError::InvalidParameters)));
    // VM ID 0 (the hypervisor itself) and out-of-range IDs.
    assert_eq!(create_vm(&mut s, 0), code(FfaError::InvalidParameters));
    assert_eq!(create_vm(&mut s, 0x8001), code(FfaError::InvalidParameters));
    // Created twice.
    assert_eq!(create_vm(&mut s, 1), 0);
    let free = s.pool().unwrap().free_pages();
    assert_eq!(create_vm(&mut s, 1), code(FfaError::InvalidParameters));
    assert_eq!(s.pool().unwrap().free_pages(), free);
    // Destroying what does not exist.
    assert_eq!(destroy_vm(&mut s, 2), code(FfaError::InvalidParameters));
    assert_eq!(destroy_vm(&mut s, 1), 0);
    assert_eq!(destroy_vm(&mut s, 1), code(FfaError::InvalidParameters));
    // An unknown framework message type to the template.
    let r = nwd_now(&mut s, &vm_message(0, TEMPLATE, 0x3F, 1));
    assert_eq!(r.error_code(), Some(code(FfaError::InvalidParameters)));
}

#[test]
fn destroy_zeroes_the_memory_and_a_successor_reads_only_zeros() {
    let mut s = policy_world(None);
    assert_eq!(create_vm(&mut s, 3), 0);
    let slot = s.instance_of(0, VmId::new(3)).unwrap();
    let old_id = instance_id(&s, 3).unwrap();
    let old_vmid = s.partition(slot).stage2.vmid();
    // The instance writes a secret in its RAM (as the guest's service would).
    let secret = b"the key of user 3: 0123456789abcdef";
    let secret_pa = pa_of(&s, slot, RAM_IPA + 0x2000);
    s.platform_mut().secure_write(secret_pa, secret);
    let all: Vec<(Pa, u64)> = s
        .partition(slot)
        .memory
        .iter()
        .map(|(_, a)| (a.base, a.len()))
        .collect();
    let free = s.pool().unwrap().free_pages();
    s.platform_mut().invalidations.clear();

    assert_eq!(destroy_vm(&mut s, 3), 0);
    assert!(instance_id(&s, 3).is_none());
    assert!(
        s.slot_of(PartId::new(old_id)).is_none(),
        "the ID is retired"
    );
    assert_eq!(s.partition(slot).state, PartitionState::Free);
    assert!(
        s.pool().unwrap().free_pages() > free,
        "memory back in the pool"
    );
    for (pa, len) in &all {
        assert!(
            s.platform()
                .secure_read(*pa, *len as usize)
                .iter()
                .all(|b| *b == 0),
            "freed memory is zero"
        );
    }
    // Both IPA spaces of the old VMID were invalidated.
    let inv = &s.platform().invalidations;
    for space in [IpaSpace::Secure, IpaSpace::NonSecure] {
        assert!(
            inv.iter().any(|i| i.vmid == old_vmid && i.space == space),
            "{space:?} TLB entries of VMID {old_vmid} invalidated"
        );
    }
    // Messages to the old ID fail; the VM has no TEE until it is re-created.
    assert_eq!(
        request(&mut s, 3, old_id).unwrap_err(),
        code(FfaError::InvalidParameters)
    );
    assert_eq!(
        request(&mut s, 3, TEMPLATE).unwrap_err(),
        code(FfaError::Denied)
    );

    // Re-created: a fresh ID (not the retired one), fresh memory, no secret.
    assert_eq!(create_vm(&mut s, 3), 0);
    let new_id = instance_id(&s, 3).unwrap();
    assert_ne!(new_id, old_id, "a retired ID is not handed out next");
    let slot = s.instance_of(0, VmId::new(3)).unwrap();
    let p = &s.partition(slot);
    for (ipa, a) in &p.memory {
        if ipa.0 == IMAGE_IPA {
            continue;
        }
        let bytes = s.platform().secure_read(a.base, a.len() as usize);
        assert!(bytes.iter().all(|b| *b == 0), "the successor's RAM is zero");
    }
    let new_secret_pa = pa_of(&s, slot, RAM_IPA + 0x2000);
    assert_eq!(
        s.platform().secure_read(new_secret_pa, secret.len()),
        vec![0; secret.len()]
    );
    // And wherever the old secret was, it is gone.
    assert_eq!(
        s.platform().secure_read(secret_pa, secret.len()),
        vec![0; secret.len()]
    );
}

#[test]
fn instance_ids_are_retired_round_robin() {
    let mut s = policy_world(None);
    assert_eq!(create_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 2), 0);
    assert_eq!(instance_id(&s, 1), Some(0x8100));
    assert_eq!(destroy_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 1), 0);
    assert_eq!(instance_id(&s, 1), Some(0x8102));
    assert_eq!(create_vm(&mut s, 4), 0);
    assert_eq!(instance_id(&s, 4), Some(0x8103));
}

#[test]
fn at_least_32_live_instances_then_ids_run_out_with_nothing_leaked() {
    let mut s = policy_world(None);
    for vm in 1..=64u16 {
        assert_eq!(create_vm(&mut s, vm), 0, "VM {vm}");
    }
    let live = s
        .partitions()
        .iter()
        .filter(|p| matches!(p.kind, Kind::Instance { .. }) && p.state == PartitionState::Running)
        .count();
    assert_eq!(live, 64);
    let free = s.pool().unwrap().free_pages();
    assert_eq!(
        create_vm(&mut s, 65),
        code(FfaError::NoMemory),
        "IDs exhausted"
    );
    assert_eq!(s.pool().unwrap().free_pages(), free, "nothing leaked");
    // Every instance still answers its own VM.
    for vm in [1u16, 32, 64] {
        let (v, regs) = request(&mut s, vm, TEMPLATE).unwrap();
        vm_answer(&mut s, v, vm, regs);
    }
    // Freeing one makes room for one.
    assert_eq!(destroy_vm(&mut s, 17), 0);
    assert_eq!(create_vm(&mut s, 65), 0);
}

/// How many instances live at once over a platform with `vmid_limit`.
fn live_instances_with_vmids(vmid_limit: u16) -> (u16, Spmc<FakePlatform>) {
    let config = shipped_config(None);
    let p = FakePlatform {
        vmid_limit,
        ..FakePlatform::default()
    };
    let mut s = policy_boot(config.clone(), policy_platform(&config, p));
    let mut made = 0;
    for vm in 1..=64u16 {
        match create_vm(&mut s, vm) {
            0 => made += 1,
            e => {
                assert_eq!(e, code(FfaError::NoMemory), "VM {vm}");
                break;
            }
        }
    }
    (made, s)
}

#[test]
fn the_platforms_vmids_bound_the_live_instances() {
    // Every partition and instance has its own VMID, below the platform's
    // limit (8 bits unless the CPU has FEAT_VMID16).
    let (few, mut s) = live_instances_with_vmids(16);
    let (more, _) = live_instances_with_vmids(21);
    assert!(few > 0 && few < 16, "{few}");
    assert_eq!(more, few + 5, "five more VMIDs, five more instances");
    // The VMID of a destroyed instance is free again.
    let free = s.pool().unwrap().free_pages();
    assert_eq!(destroy_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 60), 0);
    assert_eq!(create_vm(&mut s, 61), code(FfaError::NoMemory));
    assert_eq!(s.pool().unwrap().free_pages(), free, "nothing leaked");
}

#[test]
fn an_exhausted_pool_answers_no_memory_with_nothing_leaked() {
    // Measure what the static partitions use, then give the pool room for two instances.
    let probe = policy_world(None);
    let static_pages = probe.pool().unwrap().total_pages() - probe.pool().unwrap().free_pages();
    let pool = MemRange {
        base: 0x0e50_0000,
        size: (static_pages + 45) * PAGE_SIZE,
    };
    let mut s = policy_world(Some(pool));
    assert_eq!(create_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 2), 0);
    let free = s.pool().unwrap().free_pages();
    let parts = s.partitions().len();
    assert_eq!(create_vm(&mut s, 3), code(FfaError::NoMemory));
    assert_eq!(s.pool().unwrap().free_pages(), free, "no page leaked");
    assert_eq!(s.partitions().len(), parts, "no slot taken");
    assert!(instance_id(&s, 3).is_none());
    assert_eq!(
        request(&mut s, 3, TEMPLATE).unwrap_err(),
        code(FfaError::Denied)
    );
    // After a destroy the next create fits, and reuses the freed slot.
    assert_eq!(destroy_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 3), 0);
    assert_eq!(s.partitions().len(), parts);
}

#[test]
fn a_faulting_instance_is_aborted_and_the_others_go_on() {
    let mut s = policy_world(None);
    for vm in 1..=3 {
        assert_eq!(create_vm(&mut s, vm), 0);
    }
    // VM 2's instance reads VM 1's memory: outside its stage 2, a fault.
    let s1 = s.instance_of(0, VmId::new(1)).unwrap();
    let victim = pa_of(&s, s1, RAM_IPA);
    let (v, mut regs) = request(&mut s, 2, TEMPLATE).unwrap();
    let n = sp_fault(&mut s, v, victim.0, &mut regs);
    assert!(matches!(n, Next::NormalWorld));
    assert_eq!(
        regs.error_code(),
        Some(code(FfaError::Aborted)),
        "its caller gets ABORTED"
    );
    let s2 = s.instance_of(0, VmId::new(2)).unwrap();
    assert_eq!(s.partition(s2).state, PartitionState::Aborted);
    assert_eq!(
        request(&mut s, 2, TEMPLATE).unwrap_err(),
        code(FfaError::Aborted)
    );
    for vm in [1u16, 3] {
        let (v, regs) = request(&mut s, vm, TEMPLATE).unwrap();
        assert_eq!(vm_answer(&mut s, v, vm, regs).x(3), 0x600D);
    }
    // Destroying the VM frees the aborted instance; re-creating gives a working one.
    assert_eq!(destroy_vm(&mut s, 2), 0);
    assert_eq!(create_vm(&mut s, 2), 0);
    let (v, regs) = request(&mut s, 2, TEMPLATE).unwrap();
    vm_answer(&mut s, v, 2, regs);
}

#[test]
fn an_instance_that_fails_to_boot_is_freed_and_the_create_fails() {
    let mut s = policy_world(None);
    let free = s.pool().unwrap().free_pages();
    let (next, mut regs) = nwd(&mut s, &vm_message(0, TEMPLATE, fwk::VM_CREATED, 5));
    let v = running(&next);
    let n = sp_fault(&mut s, v, 0xdead_0000, &mut regs);
    assert!(matches!(n, Next::NormalWorld));
    assert_eq!(regs.w(2), fwk::FLAG | fwk::VM_CREATED_ACK);
    assert_eq!(regs.w(3) as i32, code(FfaError::Aborted));
    assert!(instance_id(&s, 5).is_none());
    assert_eq!(s.pool().unwrap().free_pages(), free, "nothing kept");
    assert_eq!(create_vm(&mut s, 5), 0, "a later create works");
}

#[test]
fn destroy_while_busy_is_retried_and_a_preempted_call_fails_cleanly() {
    let mut s = policy_world(None);
    assert_eq!(create_vm(&mut s, 1), 0);
    // The instance is handling VM 1's request when an interrupt preempts it.
    let (v, mut regs) = request(&mut s, 1, TEMPLATE).unwrap();
    let id = instance_id(&s, 1).unwrap();
    // Running: the destroy must wait.
    assert_eq!(destroy_vm(&mut s, 1), code(FfaError::Retry));
    let n = spmc::testing::sp_interrupt(&mut s, v, &mut regs);
    assert!(matches!(n, Next::NormalWorld));
    assert_eq!(regs.func(), func::INTERRUPT_32);
    // Preempted in a normal-world request: it is dropped, and the VM's FFA_RUN fails cleanly.
    assert_eq!(destroy_vm(&mut s, 1), 0);
    let r = nwd_now(&mut s, &[func::RUN as u64, (id as u64) << 16]);
    assert_eq!(r.error_code(), Some(code(FfaError::InvalidParameters)));
}

// ----------------------------------------------------------------------
// Property test: random create, destroy, message, secret and fault steps
// ----------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Create(u16),
    Destroy(u16),
    /// VM sends to a target (index into a list of interesting IDs).
    Message(u16, u8),
    /// VM's instance writes a secret in its RAM.
    Secret(u16),
    /// VM's instance, while handling a request, touches an IPA (which may be
    /// another instance's physical address, an unmapped IPA or its own).
    Fault(u16, u64),
}

fn step() -> impl Strategy<Value = Step> {
    let vm = 0u16..6;
    prop_oneof![
        3 => vm.clone().prop_map(Step::Create),
        2 => vm.clone().prop_map(Step::Destroy),
        4 => (vm.clone(), any::<u8>()).prop_map(|(v, t)| Step::Message(v, t)),
        2 => vm.clone().prop_map(Step::Secret),
        1 => (vm, prop_oneof![Just(0x0e50_0000u64), Just(0x2000_0000), any::<u64>()])
            .prop_map(|(v, a)| Step::Fault(v, a)),
    ]
}

/// The model: which pages each VM's instance had, so freed ones can be checked.
#[derive(Default)]
struct Model {
    /// Every physical page an instance ever held.
    ever: HashSet<u64>,
}

fn targets(s: &Spmc<FakePlatform>) -> Vec<u16> {
    let mut t = vec![
        SP1, SP2, TPM, 0x8004, TEMPLATE, 0x8100, 0x8101, 0x8102, 0x8103, 0x8104, 0x9999,
    ];
    t.extend(
        s.partitions()
            .iter()
            .map(|p| p.id().raw())
            .filter(|id| *id != 0),
    );
    t
}

/// The contract, checked after every step.
fn check(s: &Spmc<FakePlatform>, model: &mut Model) {
    // No page in two partitions; every page of an instance comes from the pool.
    let mut owner: HashMap<u64, u16> = HashMap::new();
    for p in s.partitions() {
        if p.state == PartitionState::Free {
            assert!(p.memory.is_empty() && p.vcpu_count == 0);
            continue;
        }
        for (ipa, a) in &p.memory {
            for i in 0..a.pages {
                let t = p
                    .stage2
                    .lookup(IpaSpace::Secure, Ipa(ipa.0 + i * PAGE_SIZE))
                    .expect("memory stays mapped");
                if let Some(o) = owner.insert(t.pa.0, p.id().raw()) {
                    panic!("page {:#x} in {o:#x} and {:#x}", t.pa.0, p.id());
                }
                if matches!(p.kind, Kind::Instance { .. }) {
                    model.ever.insert(t.pa.0);
                }
            }
        }
        // At most one instance per VM.
        if let Kind::Instance { owner } = p.kind {
            let n = s
                .partitions()
                .iter()
                .filter(|q| q.state != PartitionState::Free && q.kind == Kind::Instance { owner })
                .count();
            assert_eq!(n, 1, "VM {owner} has {n} instances");
        }
    }
    // Every page an instance had and nobody holds now is zero.
    for pa in &model.ever {
        if !owner.contains_key(pa) {
            let bytes = s.platform().secure_read(Pa(*pa), PAGE_SIZE as usize);
            assert!(bytes.iter().all(|b| *b == 0), "freed page {pa:#x} not zero");
        }
    }
    // Nothing is left running while the normal world has the core.
    for (slot, p) in s.partitions().iter().enumerate() {
        for v in s.vcpu_states(SlotId::new(slot as u16)) {
            assert!(
                !matches!(v, VcpuState::Running(_)),
                "{:#x} left running",
                p.id()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn random_lifecycles_keep_the_contract(steps in prop::collection::vec(step(), 1..40)) {
        let mut s = policy_world(None);
        let mut model = Model::default();
        for st in steps {
            match st {
                Step::Create(vm) => {
                    let had = instance_id(&s, vm).is_some();
                    let r = create_vm(&mut s, vm);
                    if vm == 0 || had {
                        prop_assert_eq!(r, code(FfaError::InvalidParameters));
                    } else {
                        prop_assert_eq!(r, 0);
                    }
                }
                Step::Destroy(vm) => {
                    let had = instance_id(&s, vm).is_some();
                    let r = destroy_vm(&mut s, vm);
                    prop_assert_eq!(r == 0, had);
                    prop_assert!(instance_id(&s, vm).is_none());
                }
                Step::Message(vm, t) => {
                    let ts = targets(&s);
                    let to = ts[t as usize % ts.len()];
                    match request(&mut s, vm, to) {
                        Ok((v, regs)) => {
                            // Whatever ran is a partition VM `vm` may reach.
                            let p = &s.partition(v.slot);
                            match p.kind {
                                Kind::Instance { owner } => prop_assert_eq!(owner, vm),
                                Kind::Static => prop_assert!(s.config().policy.may_reach(VmId::new(vm), p.id().raw(), Kind::Static)),
                            }
                            vm_answer(&mut s, v, vm, regs);
                        }
                        Err(e) => {
                            // Never a silent success for a foreign TEE: if `to`
                            // is a live instance of another VM, it is DENIED.
                            if let Some(slot) = s.slot_of(PartId::new(to))
                                && let Kind::Instance { owner } = s.partition(slot).kind
                                && owner != vm
                            {
                                prop_assert_eq!(e, code(FfaError::Denied));
                            }
                        }
                    }
                }
                Step::Secret(vm) => {
                    if let Some(slot) = s.instance_of(0, VmId::new(vm))
                        && s.partition(slot).state == PartitionState::Running
                    {
                        let pa = pa_of(&s, slot, RAM_IPA + 0x3000);
                        s.platform_mut().secure_write(pa, &[0xA5; 64]);
                    }
                }
                Step::Fault(vm, ipa) => {
                    if let Ok((v, mut regs)) = request(&mut s, vm, TEMPLATE) {
                        let n = sp_fault(&mut s, v, ipa, &mut regs);
                        prop_assert!(matches!(n, Next::NormalWorld));
                        prop_assert_eq!(regs.error_code(), Some(code(FfaError::Aborted)));
                    }
                }
            }
            check(&s, &mut model);
        }
    }
}

#[test]
fn vm_availability_acknowledgements_match_the_request() {
    let mut s = policy_world(None);
    // w5[31:16] is reserved: a VM ID with high bits set is refused, nothing made.
    let mut m = vm_message(0, TEMPLATE, fwk::VM_CREATED, 0x305);
    m[5] |= 0x1_0000;
    let r = nwd_now(&mut s, &m);
    assert_eq!(r.func(), func::MSG_SEND_DIRECT_RESP_32);
    assert_eq!(r.w(3) as i32, code(FfaError::InvalidParameters));
    assert!(instance_id(&s, 0x305).is_none());
    // A 64-bit message gets a 64-bit acknowledgement, on create and destroy.
    let mut m = vm_message(0, TEMPLATE, fwk::VM_CREATED, 6);
    m[0] = func::MSG_SEND_DIRECT_REQ_64 as u64;
    let (next, mut regs) = nwd(&mut s, &m);
    let n = play_init(&mut s, running(&next), &mut regs);
    assert!(matches!(n, Next::NormalWorld));
    assert_eq!(regs.func(), func::MSG_SEND_DIRECT_RESP_64);
    assert_eq!(regs.w(2), fwk::FLAG | fwk::VM_CREATED_ACK);
    assert_eq!(regs.w(3), 0);
    let mut m = vm_message(0, TEMPLATE, fwk::VM_DESTROYED, 6);
    m[0] = func::MSG_SEND_DIRECT_REQ_64 as u64;
    let r = nwd_now(&mut s, &m);
    assert_eq!(r.func(), func::MSG_SEND_DIRECT_RESP_64);
    assert_eq!((r.w(2), r.w(3)), (fwk::FLAG | fwk::VM_DESTROYED_ACK, 0));
}

/// The VM ID field of a VM availability message (DEN0077 v1.2 §18.3): w5
/// (32-bit) or x5 (64-bit) carries the ID in bits [15:0], the rest is
/// reserved (MBZ). Destroy checks it as create does, and a 64-bit message's
/// upper half counts: w5 = 0x1_0001 must not destroy VM 1's TEE.
#[test]
fn vm_id_field_reserved_bits_are_refused_on_create_and_destroy() {
    let mut s = policy_world(None);
    assert_eq!(create_vm(&mut s, 1), 0);
    let tee = instance_id(&s, 1).unwrap();
    let ack = |s: &mut Spmc<FakePlatform>, m: [u64; 8]| {
        let r = nwd_now(s, &m);
        assert_eq!(r.w(2) & !fwk::FLAG, {
            if m[2] as u32 & fwk::TYPE_MASK == fwk::VM_CREATED {
                fwk::VM_CREATED_ACK
            } else {
                fwk::VM_DESTROYED_ACK
            }
        });
        r.w(3) as i32
    };
    // 32-bit destroy with w5[31:16] set.
    let mut m = vm_message(0, TEMPLATE, fwk::VM_DESTROYED, 1);
    m[5] = 0x1_0001;
    assert_eq!(ack(&mut s, m), code(FfaError::InvalidParameters));
    assert_eq!(instance_id(&s, 1), Some(tee), "VM 1's TEE lives on");
    // 64-bit destroy and create with x5[63:32] set.
    for kind in [fwk::VM_DESTROYED, fwk::VM_CREATED] {
        let mut m = vm_message(
            0,
            TEMPLATE,
            kind,
            if kind == fwk::VM_CREATED { 2 } else { 1 },
        );
        m[0] = func::MSG_SEND_DIRECT_REQ_64 as u64;
        m[5] |= 1 << 32;
        assert_eq!(
            ack(&mut s, m),
            code(FfaError::InvalidParameters),
            "kind {kind:#x}"
        );
    }
    assert_eq!(instance_id(&s, 1), Some(tee), "VM 1's TEE lives on");
    assert!(instance_id(&s, 2).is_none(), "nothing made for VM 2");
    // A 32-bit message's x5[63:32] is not part of it (SMC32): ignored.
    let mut m = vm_message(0, TEMPLATE, fwk::VM_DESTROYED, 1);
    m[5] |= 0xFFFF_FFFF << 32;
    assert_eq!(ack(&mut s, m), 0);
    assert!(instance_id(&s, 1).is_none(), "destroyed");
}

/// Isolation read back from the tables themselves: after creates and
/// destroys have recycled the pool, every live instance's stage 2 (both IPA
/// spaces, walked entry by entry) maps exactly the pages the instance owns,
/// so no IPA of instance A maps a page that instance B (or a static
/// partition) owns.
#[test]
fn walked_stage2_tables_map_no_page_of_another_partition() {
    let mut s = policy_world(None);
    for vm in 1..=12 {
        assert_eq!(create_vm(&mut s, vm), 0);
    }
    for vm in (1..=12).step_by(3) {
        assert_eq!(destroy_vm(&mut s, vm), 0);
    }
    for vm in 20..=26 {
        assert_eq!(create_vm(&mut s, vm), 0);
    }
    // Who owns each secure page, from the partitions' records.
    let mut owner: HashMap<u64, u16> = HashMap::new();
    for (slot, p) in s.partitions().iter().enumerate() {
        if p.state == PartitionState::Free {
            continue;
        }
        for (_, a) in &p.memory {
            for i in 0..a.pages {
                let pa = a.base.0 + i * PAGE_SIZE;
                assert_eq!(
                    owner.insert(pa, slot as u16),
                    None,
                    "page {pa:#x} owned twice"
                );
            }
        }
    }
    let mut instances = 0;
    for (slot, p) in s.partitions().iter().enumerate() {
        if p.state == PartitionState::Free || !matches!(p.kind, Kind::Instance { .. }) {
            continue;
        }
        instances += 1;
        let mut mapped = HashSet::new();
        for space in [IpaSpace::Secure, IpaSpace::NonSecure] {
            for (ipa, t) in p.stage2.mappings(space) {
                let page = t.pa.0 & !(PAGE_SIZE - 1);
                let who = owner.get(&page).copied();
                assert_eq!(
                    who,
                    Some(slot as u16),
                    "instance {:#06x}: {space:?} IPA {:#x} maps {page:#x}, owned by slot {who:?}",
                    p.id(),
                    ipa.0
                );
                mapped.insert(page);
            }
        }
        let own = owner.values().filter(|o| **o == slot as u16).count();
        assert_eq!(
            mapped.len(),
            own,
            "instance {:#06x} maps all it owns",
            p.id()
        );
    }
    assert_eq!(instances, 12 - 4 + 7);
}

/// The host side of the QEMU check `scale-memory-comes-back`: 40 more
/// instances beside four VMs, all destroyed, twice over. Each instance
/// takes the same number of pages every time, and after each round the
/// pool's free-page count is exactly what it was before, with every free
/// page zero.
#[test]
fn scale_rounds_give_every_pool_page_back() {
    let mut s = policy_world(None);
    for vm in 1..=4 {
        assert_eq!(create_vm(&mut s, vm), 0);
    }
    let pool = |s: &Spmc<FakePlatform>| s.pool().unwrap().free_pages();
    let before = pool(&s);
    let mut per_instance = None;
    for round in 0..3 {
        for vm in 0x100..0x128u16 {
            let free = pool(&s);
            assert_eq!(create_vm(&mut s, vm), 0, "round {round}, VM {vm:#x}");
            let took = free - pool(&s);
            assert_eq!(
                *per_instance.get_or_insert(took),
                took,
                "the same quota each time"
            );
        }
        for vm in 0x100..0x128u16 {
            assert_eq!(destroy_vm(&mut s, vm), 0);
        }
        assert_eq!(pool(&s), before, "round {round}: every page came back");
    }
    // The free pages are zero: read back every page the pool holds free.
    let p = s.pool().unwrap();
    let range = p.range();
    let mut zero_free = 0;
    for page in (range.base..range.base + range.size).step_by(PAGE_SIZE as usize) {
        if s.partitions().iter().any(|q| {
            q.state != PartitionState::Free
                && q.memory
                    .iter()
                    .any(|(_, a)| page >= a.base.0 && page < a.base.0 + a.pages * PAGE_SIZE)
        }) {
            continue;
        }
        let bytes = s.platform().secure_read(Pa(page), PAGE_SIZE as usize);
        if bytes.iter().all(|b| *b == 0) {
            zero_free += 1;
        }
    }
    assert!(zero_free >= before, "{zero_free} zero pages, {before} free");
}

/// A policy built by hand (not parsed) with an instance-ID range that is
/// empty, wraps or leaves the secure range is refused when the template
/// loads: the instance-ID arithmetic never divides by zero, overflows or
/// hands out a normal-world ID.
#[test]
fn hand_built_template_ranges_are_checked_when_the_template_loads() {
    for (first, count) in [
        (0x8100u16, 0u16),
        (0xFFF0, 0x20),
        (0x0100, 4),
        (0x8000, 0x8000),
    ] {
        let mut config = shipped_config(None);
        config.policy.templates[0].first_id = first;
        config.policy.templates[0].count = count;
        let mut p = FakePlatform::default();
        for e in &config.partitions {
            p.put_package(Pa(e.package), &manifest(&e.name), &image());
        }
        let mut s = Spmc::new(config, p);
        s.load_partitions();
        assert!(s.templates().is_empty(), "{first:#x}+{count:#x} refused");
    }
}

#[test]
fn a_template_packaged_the_hafnium_way_makes_instances_that_run_in_place() {
    // The vtee template as an sptool package run in place: entry 0x4000 into
    // the package, mem-size 16 pages (package and .bss), its ram region kept.
    let config = shipped_config(None);
    let mut p = FakePlatform::default();
    for e in &config.partitions {
        let blob = if e.name == "vtee" {
            let text = std::fs::read_to_string(
                common::repo_root().join("tf-a-integration/qemu/partitions/vtee.dts"),
            )
            .unwrap();
            let edited = text.replace(
                "entrypoint-offset = <0x0>;",
                "entrypoint-offset = <0x4000>; mem-size = <0x10000>;",
            );
            assert_ne!(edited, text);
            let path =
                std::env::temp_dir().join(format!("spmc-vtee-pkg-{}.dts", std::process::id()));
            std::fs::write(&path, edited).unwrap();
            let blob = common::dtb(&path);
            std::fs::remove_file(&path).ok();
            blob
        } else {
            manifest(&e.name)
        };
        p.put_package(Pa(e.package), &blob, &image());
    }
    let mut s = policy_boot(config, p);
    assert_eq!(create_vm(&mut s, 7), 0);
    let id = instance_id(&s, 7).expect("an instance for VM 7");
    let slot = s.slot_of(PartId::new(id)).unwrap().index();
    let inst = &s.partitions()[slot];
    assert_eq!(inst.config.in_package, Some(0x1000));
    let pa_of = |ipa: u64| inst.stage2.lookup(IpaSpace::Secure, Ipa(ipa)).map(|t| t.pa);
    let image_pa = pa_of(IMAGE_IPA + 0x4000).expect("the image mapped");
    assert_eq!(s.platform().secure_read(image_pa, 8200), image());
    let last = pa_of(IMAGE_IPA + 0xF000).expect("mem-size mapped");
    assert_eq!(s.platform().secure_read(last, 8), [0; 8]);
    assert!(
        pa_of(IMAGE_IPA + 0x10000).is_none(),
        "nothing past mem-size"
    );
    assert!(pa_of(RAM_IPA).is_some(), "its ram region");
}

// ----------------------------------------------------------------------
// A VM's own RX/TX buffers, mapped by its hypervisor (issue 18)
// ----------------------------------------------------------------------

/// An Endpoint RX/TX descriptor (DEN0077 v1.2 §13.5) for `vm`: RX and TX
/// composites of one constituent each.
fn endpoint_rxtx(vm: u16, rx: u64, tx: u64, rx_pages: u32, tx_pages: u32) -> Vec<u8> {
    let mut d = vec![0u8; 16 + 64];
    d[0..2].copy_from_slice(&vm.to_le_bytes());
    d[4..8].copy_from_slice(&16u32.to_le_bytes());
    d[8..12].copy_from_slice(&48u32.to_le_bytes());
    for (at, addr, pages) in [(16, rx, rx_pages), (48, tx, tx_pages)] {
        d[at..at + 4].copy_from_slice(&pages.to_le_bytes());
        d[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
        d[at + 16..at + 24].copy_from_slice(&addr.to_le_bytes());
        d[at + 24..at + 28].copy_from_slice(&pages.to_le_bytes());
    }
    d
}

/// An indirect message (v1.2 header) from `from` to `to` in the buffer at `tx`.
fn message(s: &mut Spmc<FakePlatform>, tx: u64, from: u16, to: u16, payload: u64) {
    let mut m = vec![0u8; 48];
    m[8..12].copy_from_slice(&40u32.to_le_bytes());
    m[12..14].copy_from_slice(&to.to_le_bytes());
    m[14..16].copy_from_slice(&from.to_le_bytes());
    m[16..20].copy_from_slice(&8u32.to_le_bytes());
    m[40..48].copy_from_slice(&payload.to_le_bytes());
    s.platform_mut().nwd_write(tx, &m);
}

/// A hypervisor maps a VM's buffers with FFA_RXTX_MAP(0, 0, 0) and an
/// Endpoint RX/TX descriptor in its own TX (Hafnium's forwarding); the VM's
/// FFA_MSG_SEND2 (w1[31:16] = the VM) then travels from the VM's own TX to
/// its own TEE, and the per-user rule refuses another VM's TEE.
#[test]
fn a_hypervisor_maps_a_vms_buffers_and_the_vm_messages_its_own_tee() {
    let mut s = policy_world(None);
    // The version first: any other call fixes it (DEN0077 v1.2 §13.2).
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    map_nwd_buffers(&mut s);
    assert_eq!(create_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 2), 0);
    let i1 = instance_id(&s, 1).unwrap();
    let map = func::RXTX_MAP_64 as u64;
    let (vm_tx, vm_rx) = (NS_BASE + 0x20_0000, NS_BASE + 0x20_1000);
    let inval = Some(code(FfaError::InvalidParameters));
    // Descriptors this SPMC refuses: not a VM's ID, RX and TX of different
    // sizes, two constituents, a reserved field set.
    let mut two = endpoint_rxtx(2, vm_rx, vm_tx, 1, 1);
    two[20..24].copy_from_slice(&2u32.to_le_bytes());
    let mut reserved = endpoint_rxtx(2, vm_rx, vm_tx, 1, 1);
    reserved[2] = 1;
    for bad in [
        endpoint_rxtx(0, vm_rx, vm_tx, 1, 1),
        endpoint_rxtx(0x8001, vm_rx, vm_tx, 1, 1),
        endpoint_rxtx(2, vm_rx, vm_tx, 1, 2),
        endpoint_rxtx(2, vm_rx, 0x1000, 1, 1),
        two,
        reserved,
    ] {
        s.platform_mut().nwd_write(NWD_TX, &bad);
        assert_eq!(nwd_now(&mut s, &[map, 0, 0, 0]).error_code(), inval);
    }
    // VM 2's pair, then a second one for it is DENIED.
    s.platform_mut()
        .nwd_write(NWD_TX, &endpoint_rxtx(2, vm_rx, vm_tx, 1, 1));
    assert_eq!(nwd_now(&mut s, &[map, 0, 0, 0]).func(), func::SUCCESS_32);
    assert_eq!(
        nwd_now(&mut s, &[map, 0, 0, 0]).error_code(),
        Some(code(FfaError::Denied))
    );
    let send2 =
        |s: &mut Spmc<FakePlatform>, vm: u64| nwd_now(s, &[func::MSG_SEND2 as u64, vm << 16, 0]);
    // VM 2 to VM 1's TEE: DENIED; posing as VM 1 in the header: INVALID.
    message(&mut s, vm_tx, 2, i1, 7);
    assert_eq!(send2(&mut s, 2).error_code(), Some(code(FfaError::Denied)));
    message(&mut s, vm_tx, 1, TEMPLATE, 7);
    assert_eq!(send2(&mut s, 2).error_code(), inval);
    // VM 1 has no buffers of its own at the SPMC.
    assert_eq!(send2(&mut s, 1).error_code(), inval);
    // To its own TEE through the template's ID: delivered (the TEE's RX is
    // then full: BUSY).
    message(&mut s, vm_tx, 2, TEMPLATE, 0x5ea1);
    assert_eq!(send2(&mut s, 2).func(), func::SUCCESS_32);
    assert_eq!(send2(&mut s, 2).error_code(), Some(code(FfaError::Busy)));
    // Unmapped by the hypervisor in VM 2's name.
    let unmap = func::RXTX_UNMAP as u64;
    assert_eq!(nwd_now(&mut s, &[unmap, 2 << 16]).func(), func::SUCCESS_32);
    assert_eq!(send2(&mut s, 2).error_code(), inval);
    // The hypervisor's own buffers are still its own.
    assert_eq!(nwd_now(&mut s, &[unmap, 0]).func(), func::SUCCESS_32);
    assert_eq!(nwd_now(&mut s, &[map, 0, 0, 0]).error_code(), inval);
}
