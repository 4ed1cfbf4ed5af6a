//! Issue 13 item 4: OP-TEE as a shared service under the reference
//! hypervisor, next to a per-VM template (docs/optee.md "Per-user angle").
//!
//! The world: the `optee` stage's SPMC manifest (OP-TEE's package at
//! 0x0e30_0000, run in place, the 12 MiB pool from 0x0e40_0000) with OP-TEE's
//! own partition manifest, plus the `vtee` template's package after it and a
//! policy that makes OP-TEE shared (`shared = <0x8001>`) and `vtee` a
//! template. The image is a fake (the SPMC does not read it), the manifests
//! are the shipped ones.

mod common;

use common::world::*;
use spmc::Next;
use spmc::Spmc;
use spmc::addr::{PAGE_SIZE, Pa};
use spmc::ffa::{FfaError, Regs, func};
use spmc::ids::{PartId, VmId};
use spmc::manifest::{PartitionEntry, SpmcConfig};
use spmc::policy::{Kind, Policy, TemplateConfig};
use spmc::testing::{FakePlatform, sp_call};
use spmc::vcpu::{VcpuRef, VcpuState};

const OPTEE: u16 = 0x8001;
/// Where the vtee package goes: after OP-TEE's 0x7c000-byte package.
const VTEE_PACKAGE: u64 = 0x0e3c_0000;

/// The `optee` stage's SPMC manifest with the vtee template and the policy.
fn config() -> SpmcConfig {
    let blob =
        common::dtb(&common::repo_root().join("tf-a-integration/qemu-optee/spmc_manifest.dts"));
    let mut c = spmc::manifest::parse(&blob).expect("the optee stage's SPMC manifest");
    c.partitions.push(PartitionEntry {
        name: "vtee".into(),
        package: VTEE_PACKAGE,
    });
    c.policy = Policy {
        shared: vec![OPTEE],
        bindings: vec![],
        templates: vec![TemplateConfig {
            name: "vtee".into(),
            partition: TEMPLATE,
            first_id: FIRST_INSTANCE,
            count: 64,
            pages: 40,
        }],
    };
    c
}

fn world() -> Spmc<FakePlatform> {
    let config = config();
    let mut p = FakePlatform::default();
    for e in &config.partitions {
        let manifest = if e.name == "optee" {
            common::dtb(
                &common::repo_root().join("tf-a-integration/qemu-optee/partitions/optee.dts"),
            )
        } else {
            manifest(&e.name)
        };
        p.put_package(Pa(e.package), &manifest, &image());
    }
    let mut s = Spmc::new(config, p);
    s.load_partitions();
    // OP-TEE's boot as far as the SPMC sees it: FF-A v1.1, FFA_MSG_WAIT.
    let mut regs = Regs::default();
    let next = s.boot(&mut regs);
    let v = running(&next);
    assert_eq!(s.partition(v.slot).id(), OPTEE);
    sp_call(&mut s, v, &[func::VERSION as u64, 0x1_0001], &mut regs);
    let next = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    assert!(
        matches!(next, Next::NormalWorld),
        "the template never boots"
    );
    assert_eq!(regs.func(), func::MSG_WAIT);
    s
}

/// A direct request from `vm` to `to`: the vCPU it runs, or the error code.
fn request(s: &mut Spmc<FakePlatform>, vm: u16, to: u16) -> Result<(VcpuRef, Regs), i32> {
    vm_request(s, vm, to, 0x13)
}

#[test]
fn every_vm_reaches_the_shared_optee_and_only_its_own_tee() {
    let mut s = world();
    for vm in 1..=4 {
        assert_eq!(create_vm(&mut s, vm), 0, "VM {vm} created");
    }
    let inst: Vec<u16> = (1..=4).map(|vm| instance_id(&s, vm).unwrap()).collect();
    for vm in 1..=4u16 {
        // The shared half: OP-TEE, one partition for everyone; the request
        // carries the VM's own ID (which OP-TEE's CFG_NS_VIRTUALIZATION
        // keys its per-guest state on).
        let (v, regs) = request(&mut s, vm, OPTEE).unwrap_or_else(|e| panic!("VM {vm}: {e}"));
        assert_eq!(s.partition(v.slot).id(), OPTEE);
        assert_eq!(s.partition(v.slot).kind, Kind::Static);
        assert_eq!(s.vcpu_context_mut(v).x[1] >> 16, vm as u64, "sender");
        let r = vm_answer(&mut s, v, vm, regs);
        assert_eq!((r.x(1), r.x(3)), ((OPTEE as u64) << 16 | vm as u64, 0x600D));
        // The private half: the template's ID is the VM's own instance ...
        let (v, regs) = request(&mut s, vm, TEMPLATE).unwrap();
        assert_eq!(
            s.partition(v.slot).kind,
            Kind::Instance {
                owner: VmId::new(vm)
            }
        );
        vm_answer(&mut s, v, vm, regs);
        // ... and every other VM's instance is denied, by ID.
        for (other, &id) in (1..=4u16).zip(&inst) {
            if other != vm {
                assert_eq!(
                    request(&mut s, vm, id).unwrap_err(),
                    FfaError::Denied.code(),
                    "VM {vm} -> VM {other}'s TEE {id:#x}"
                );
            }
        }
    }
    // Not even the hypervisor reaches an instance; it reaches OP-TEE.
    assert_eq!(
        request(&mut s, 0, inst[0]).unwrap_err(),
        FfaError::Denied.code()
    );
    let (v, regs) = request(&mut s, 0, OPTEE).unwrap();
    vm_answer(&mut s, v, 0, regs);
    assert_eq!(
        s.vcpu_states(s.slot_of(PartId::new(OPTEE)).unwrap())[0],
        VcpuState::Waiting
    );
}

/// The figures of docs/optee.md "Per-user angle": OP-TEE's 4 MiB
/// (`mem-size`, copied into the pool with its package) out of the 12 MiB
/// pool, four per-VM TEEs within their 40-page quota next to it, and what
/// is left holds one more OP-TEE of that size, not two: OP-TEE per VM would
/// stop at two VMs (the firmware's 1 MiB heap, which the fake platform does
/// not take from the pool, comes on top).
#[test]
fn the_pool_holds_the_shared_optee_and_the_per_vm_tees() {
    let mut s = world();
    let pool = s.pool().unwrap();
    assert_eq!(
        pool.total_pages() * PAGE_SIZE,
        12 << 20,
        "the optee stage's pool"
    );
    let optee = s.slot_of(PartId::new(OPTEE)).unwrap().index();
    let optee_pages: u64 = s.partitions()[optee]
        .memory
        .iter()
        .filter(|(_, a)| pool.contains(a.base))
        .map(|(_, a)| a.pages)
        .sum();
    assert_eq!(
        optee_pages * PAGE_SIZE,
        4 << 20,
        "OP-TEE's mem-size, all from the pool"
    );
    let before = s.pool().unwrap().free_pages();
    for vm in 1..=4 {
        assert_eq!(create_vm(&mut s, vm), 0);
    }
    let per_vm = (before - s.pool().unwrap().free_pages()) / 4;
    assert!(per_vm <= 40, "a TEE within its quota: {per_vm} pages");
    // What a per-VM OP-TEE would need: one more mem-size per VM.
    let left = s.pool().unwrap().free_pages();
    assert!(
        left < 2 * optee_pages,
        "not two more OP-TEEs: {left} pages left"
    );
}
