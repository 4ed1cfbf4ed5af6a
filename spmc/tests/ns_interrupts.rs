//! Normal-world interrupts while a partition runs, per its manifest's
//! `ns-interrupts-action` (DEN0077 v1.2 §9; docs/interrupts.md
//! "Normal-world interrupts"): manifest parsing, and queued / signalled /
//! managed exit against the fake platform with the shipped manifests
//! (sp1 signalled, crash-data queued, crash-undef managed exit by vFIQ,
//! crash-steal managed exit by vIRQ).

mod common;

use common::world::*;
use common::{dtb, repo_root};
use spmc::Next;
use spmc::ffa::{FfaError, Regs, func};
use spmc::ns_interrupts::MANAGED_EXIT_CALLS;
use spmc::sp_manifest::{self, NsInterruptAction, SpError};
use spmc::testing::{sp_call, sp_interrupt};
use spmc::vcpu::{Preemption, VIRTUAL_FIQ, VIRTUAL_IRQ, VcpuState};

const SP1: u64 = 0x8001;
const QUEUED: u64 = 0x8004;
const ME_FIQ: u64 = 0x8005;
const ME_IRQ: u64 = 0x8006;
const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;

/// sp1's manifest with `edit` applied, parsed.
fn parse(edit: &[(&str, &str)]) -> Result<sp_manifest::PartitionConfig, SpError> {
    let mut text =
        std::fs::read_to_string(repo_root().join("tf-a-integration/qemu/partitions/sp1.dts"))
            .unwrap();
    for (from, to) in edit {
        let t = text.replace(from, to);
        assert_ne!(t, text, "replacement `{from}` did not apply");
        text = t;
    }
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("spmc-nsirq-{}-{n}.dts", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let blob = dtb(&path);
    std::fs::remove_file(&path).ok();
    sp_manifest::parse_manifest(&blob, "x")
}

const ACTION: &str = "ns-interrupts-action = <2>;";

#[test]
fn the_action_and_its_signal_are_parsed() {
    let action = |edit: &[(&str, &str)]| parse(edit).unwrap().ns_interrupts;
    assert_eq!(action(&[]), NsInterruptAction::Signalled);
    assert_eq!(
        action(&[(ACTION, "ns-interrupts-action = <0>;")]),
        NsInterruptAction::Queued
    );
    assert_eq!(
        action(&[(ACTION, "ns-interrupts-action = <1>;")]),
        NsInterruptAction::ManagedExit { virq: false }
    );
    assert_eq!(
        action(&[(ACTION, "ns-interrupts-action = <1>;\n\tmanaged-exit-virq;")]),
        NsInterruptAction::ManagedExit { virq: true }
    );
    // Absent: signalled (Hafnium's default).
    assert_eq!(action(&[(ACTION, "")]), NsInterruptAction::Signalled);
    // The FF-A v1.0 `managed-exit` flag it supersedes.
    assert_eq!(
        action(&[(ACTION, "managed-exit;")]),
        NsInterruptAction::ManagedExit { virq: false }
    );
    // `managed-exit-virq` means nothing without a managed exit (as Hafnium).
    assert_eq!(
        action(&[(ACTION, "ns-interrupts-action = <2>;\n\tmanaged-exit-virq;")]),
        NsInterruptAction::Signalled
    );
    // The shipped partitions.
    let shipped = |name: &str| {
        sp_manifest::parse_manifest(&manifest(name), name)
            .unwrap()
            .ns_interrupts
    };
    assert_eq!(shipped("sp1"), NsInterruptAction::Signalled);
    assert_eq!(shipped("crash-data"), NsInterruptAction::Queued);
    assert_eq!(
        shipped("crash-undef"),
        NsInterruptAction::ManagedExit { virq: false }
    );
    assert_eq!(
        shipped("crash-steal"),
        NsInterruptAction::ManagedExit { virq: true }
    );
}

#[test]
fn invalid_values_are_refused_with_one_line() {
    let e = parse(&[(ACTION, "ns-interrupts-action = <3>;")]).unwrap_err();
    assert_eq!(e, SpError::NsInterruptsAction(3));
    assert_eq!(
        e.to_string(),
        "ns-interrupts-action 0x3 is not 0 (queued), 1 (managed exit) or 2 (signalled)"
    );
    assert_eq!(
        parse(&[(ACTION, "ns-interrupts-action = \"queued\";")]).unwrap_err(),
        SpError::Bad("ns-interrupts-action")
    );
    assert_eq!(
        parse(&[(
            ACTION,
            "ns-interrupts-action = <1>;\n\tmanaged-exit-virq = <1>;"
        )])
        .unwrap_err(),
        SpError::Bad("managed-exit-virq")
    );
    assert_eq!(
        parse(&[(ACTION, "managed-exit = <0>;")]).unwrap_err(),
        SpError::Bad("managed-exit")
    );
}

#[test]
fn queued_runs_masked_and_the_response_comes_back() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, QUEUED, 0, 0x10]);
    let v = running(&next);
    assert!(s.vcpu_context_mut(v).ns_interrupts_queued, "runs queued");
    // An interrupt that slipped in as the mask went up: it goes on.
    assert_eq!(running(&sp_interrupt(&mut s, v, &mut regs)), v);
    let next = sp_call(&mut s, v, &[RESP64, QUEUED << 16, 0, 0, 7], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.func(), func::MSG_SEND_DIRECT_RESP_64);
    assert_eq!(regs.0[4], 7);
    assert!(!s.vcpu_context_mut(v).ns_interrupts_queued);
    // Another request runs masked again.
    let (next, _) = nwd(&mut s, &[REQ64, QUEUED, 0, 0x10]);
    assert!(s.vcpu_context_mut(running(&next)).ns_interrupts_queued);
}

#[test]
fn signalled_preempts() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1, 0, 0x10]);
    let v = running(&next);
    assert!(!s.vcpu_context_mut(v).ns_interrupts_queued);
    assert!(matches!(
        sp_interrupt(&mut s, v, &mut regs),
        Next::NormalWorld
    ));
    assert_eq!(regs.func(), func::INTERRUPT_32);
    assert!(matches!(
        s.vcpu_state(v),
        VcpuState::Preempted(_, Preemption::Interrupt)
    ));
}

fn managed_exit(id: u64, line: u8) {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, id, 0, 0x10]);
    let v = running(&next);
    assert!(!s.vcpu_context_mut(v).ns_interrupts_queued, "takes them");
    assert_eq!(s.vcpu_context_mut(v).virtual_lines, 0);
    // The interrupt: the vCPU goes on with the virtual line up and the
    // normal world's interrupts masked.
    assert_eq!(running(&sp_interrupt(&mut s, v, &mut regs)), v);
    let ctx = s.vcpu_context_mut(v);
    assert_eq!(ctx.virtual_lines, line);
    assert!(ctx.ns_interrupts_queued);
    // A call meanwhile is answered and keeps it pending.
    let next = sp_call(&mut s, v, &[func::ID_GET as u64], &mut regs);
    assert_eq!(running(&next), v);
    assert_eq!(s.vcpu_context_mut(v).x[2], id);
    assert_eq!(s.vcpu_context_mut(v).virtual_lines, line);
    // The managed-exit response goes to the normal world as the response.
    let next = sp_call(&mut s, v, &[RESP64, id << 16, 0, 0, 0xE1], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.func(), func::MSG_SEND_DIRECT_RESP_64);
    assert_eq!(regs.0[1], id << 16);
    assert_eq!(regs.0[4], 0xE1);
    let ctx = s.vcpu_context_mut(v);
    assert_eq!(ctx.virtual_lines, 0, "line lowered");
    assert_eq!(ctx.managed_exit, 0);
    assert!(!ctx.ns_interrupts_queued);
    assert_eq!(s.vcpu_state(v), VcpuState::Waiting);
    // A new request lets it finish; another interrupt signals it again.
    let (next, mut regs) = nwd(&mut s, &[REQ64, id, 0, 0x10]);
    assert_eq!(running(&next), v);
    assert_eq!(running(&sp_interrupt(&mut s, v, &mut regs)), v);
    assert_eq!(s.vcpu_context_mut(v).virtual_lines, line);
}

#[test]
fn managed_exit_by_virtual_fiq() {
    managed_exit(ME_FIQ, VIRTUAL_FIQ);
}

#[test]
fn managed_exit_by_virtual_irq() {
    managed_exit(ME_IRQ, VIRTUAL_IRQ);
}

#[test]
fn a_wrong_managed_exit_response_is_refused_and_it_stays_pending() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, ME_FIQ, 0, 0x10]);
    let v = running(&next);
    sp_interrupt(&mut s, v, &mut regs);
    // To another endpoint than its caller.
    let next = sp_call(&mut s, v, &[RESP64, ME_FIQ << 16 | 5, 0, 0], &mut regs);
    assert_eq!(running(&next), v);
    let ctx = s.vcpu_context_mut(v);
    assert_eq!(ctx.x[0], func::ERROR_32 as u64);
    assert_eq!(ctx.x[2] as u32 as i32, FfaError::InvalidParameters.code());
    assert_eq!(ctx.virtual_lines, VIRTUAL_FIQ, "still pending");
    // RESP2 to a REQ.
    let next = sp_call(
        &mut s,
        v,
        &[func::MSG_SEND_DIRECT_RESP2_64 as u64, ME_FIQ << 16, 0, 0],
        &mut regs,
    );
    assert_eq!(running(&next), v);
    assert_eq!(s.vcpu_context_mut(v).x[0], func::ERROR_32 as u64);
    assert_eq!(s.vcpu_context_mut(v).virtual_lines, VIRTUAL_FIQ);
    // The right one ends it.
    let next = sp_call(&mut s, v, &[RESP64, ME_FIQ << 16, 0, 0], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(s.vcpu_context_mut(v).virtual_lines, 0);
}

#[test]
fn a_partition_that_never_answers_is_preempted_after_the_bound() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[REQ64, ME_FIQ, 0, 0x10]);
    let v = running(&next);
    sp_interrupt(&mut s, v, &mut regs);
    let mut calls = 0;
    loop {
        let next = sp_call(&mut s, v, &[func::ID_GET as u64], &mut regs);
        calls += 1;
        if matches!(next, Next::NormalWorld) {
            break;
        }
        assert!(calls <= MANAGED_EXIT_CALLS as usize + 1, "unbounded");
    }
    assert_eq!(calls, MANAGED_EXIT_CALLS as usize);
    assert_eq!(regs.func(), func::INTERRUPT_32);
    assert_eq!(regs.0[1], ME_FIQ << 16);
    assert!(!s.vcpu_context_mut(v).ns_interrupts_queued);
    // FFA_RUN resumes it with its call's answer; its late response still
    // reaches the normal world.
    let (next, mut regs) = nwd(&mut s, &[func::RUN as u64, ME_FIQ << 16]);
    assert_eq!(running(&next), v);
    assert_eq!(s.vcpu_context_mut(v).x[2], ME_FIQ, "FFA_ID_GET answered");
    let next = sp_call(&mut s, v, &[RESP64, ME_FIQ << 16, 0, 0, 9], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[4], 9);
    assert_eq!(s.vcpu_context_mut(v).virtual_lines, 0);
}

#[test]
fn a_partition_run_for_ffa_run_is_preempted_not_managed() {
    let mut s = booted();
    let (next, mut regs) = nwd(&mut s, &[func::RUN as u64, ME_FIQ << 16]);
    let v = running(&next);
    assert!(matches!(
        sp_interrupt(&mut s, v, &mut regs),
        Next::NormalWorld
    ));
    assert_eq!(regs.func(), func::INTERRUPT_32);
    assert_eq!(s.vcpu_context_mut(v).virtual_lines, 0);
}

#[test]
fn a_queued_caller_queues_for_the_partitions_it_calls() {
    let mut s = booted();
    // crash-data (queued) calls sp1 (signalled): sp1 runs queued.
    let (next, mut regs) = nwd(&mut s, &[REQ64, QUEUED, 0, 0x13]);
    let caller = running(&next);
    let next = sp_call(
        &mut s,
        caller,
        &[REQ64, QUEUED << 16 | SP1, 0, 0x10],
        &mut regs,
    );
    let callee = running(&next);
    assert_ne!(callee, caller);
    assert!(s.vcpu_context_mut(callee).ns_interrupts_queued, "inherits");
    assert_eq!(running(&sp_interrupt(&mut s, callee, &mut regs)), callee);
    let next = sp_call(
        &mut s,
        callee,
        &[RESP64, SP1 << 16 | QUEUED, 0, 0],
        &mut regs,
    );
    assert_eq!(running(&next), caller);
    assert!(s.vcpu_context_mut(caller).ns_interrupts_queued);
    // Called by the normal world, sp1 takes them again.
    let next = sp_call(&mut s, caller, &[RESP64, QUEUED << 16, 0, 0], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    let (next, _) = nwd(&mut s, &[REQ64, SP1, 0, 0x10]);
    assert!(!s.vcpu_context_mut(running(&next)).ns_interrupts_queued);
}

#[test]
fn a_managed_exit_in_a_chain_unwinds_to_the_callers_action() {
    let mut s = booted();
    // sp1 (signalled) calls crash-undef (managed exit).
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP1, 0, 0x13]);
    let caller = running(&next);
    let next = sp_call(
        &mut s,
        caller,
        &[REQ64, SP1 << 16 | ME_FIQ, 0, 0x10],
        &mut regs,
    );
    let callee = running(&next);
    assert!(!s.vcpu_context_mut(callee).ns_interrupts_queued);
    assert_eq!(running(&sp_interrupt(&mut s, callee, &mut regs)), callee);
    assert_eq!(s.vcpu_context_mut(callee).virtual_lines, VIRTUAL_FIQ);
    // Its managed-exit response goes to sp1, which takes the still pending
    // interrupt as its own action says: preempted.
    let next = sp_call(
        &mut s,
        callee,
        &[RESP64, ME_FIQ << 16 | SP1, 0, 0],
        &mut regs,
    );
    assert_eq!(running(&next), caller);
    assert!(!s.vcpu_context_mut(caller).ns_interrupts_queued);
    assert!(matches!(
        sp_interrupt(&mut s, caller, &mut regs),
        Next::NormalWorld
    ));
    assert_eq!(regs.func(), func::INTERRUPT_32);
    assert_eq!(regs.0[1], SP1 << 16);
    let _: Regs = regs;
}
