//! Host tests of stage-2 faults injected into the partition's own EL1
//! (spmc::vcpu::injection) and of the cases that abort it instead.

mod common;

use common::world::*;
use spmc::ffa::{FfaError, func};
use spmc::partition::PartitionState;
use spmc::testing::{FakePlatform, sp_call, sp_fault};
use spmc::vcpu::{ExitInfo, VcpuRef, ec};
use spmc::{Next, Spmc};

const SP1: u16 = 0x8001;
const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;
const VBAR: u64 = 0x1000_2000;
const PC: u64 = 0x1000_1234;
/// EL1h, D, A, I, F masked.
const EL1H: u64 = 0x3c5;

/// SP1 handling a direct request from the normal world, with vectors at
/// `vbar`, at `pc` in `pstate`.
fn in_request(vbar: u64, pc: u64, pstate: u64) -> (Spmc<FakePlatform>, VcpuRef, spmc::ffa::Regs) {
    let mut s = booted();
    let (next, regs) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x10]);
    let v = running(&next);
    let ctx = s.vcpu_context_mut(v);
    ctx.el1.vbar = vbar;
    ctx.pc = pc;
    ctx.pstate = pstate;
    (s, v, regs)
}

#[test]
fn a_data_abort_is_injected_at_the_partitions_el1() {
    let (mut s, v, mut regs) = in_request(VBAR, PC, EL1H);
    let next = sp_fault(&mut s, v, 0x2000_0010, &mut regs);
    assert_eq!(running(&next), v, "the partition runs on, in its handler");
    let ctx = s.vcpu_context_mut(v);
    assert_eq!(ctx.pc, VBAR + 0x200, "current EL with SP_ELx, synchronous");
    assert_eq!(ctx.pstate, EL1H, "EL1h with D, A, I, F masked");
    assert_eq!(ctx.el1.esr >> 26, ec::DABT_SAME, "data abort, same EL");
    assert_eq!(ctx.el1.far, 0x10, "FAR_EL2 as it was");
    assert_eq!(ctx.el1.elr, PC);
    assert_eq!(ctx.el1.spsr, EL1H);
    assert_eq!(s.partition(v.slot).state, PartitionState::Running);
    assert_eq!(
        s.platform().el1_syncs,
        1,
        "EL1 registers fetched into the context"
    );
    // The handler answers the request: the normal world gets it.
    let next = sp_call(
        &mut s,
        v,
        &[RESP64, (SP1 as u64) << 16, 0, 0, 0xF00D],
        &mut regs,
    );
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[4], 0xF00D);
}

#[test]
fn the_vector_and_class_follow_where_the_fault_came_from() {
    // EL0 (AArch64): lower EL, offset 0x400, class 0x24.
    let (mut s, v, mut regs) = in_request(VBAR, PC, 0x0);
    running(&sp_fault(&mut s, v, 0x2000_0000, &mut regs));
    let ctx = s.vcpu_context_mut(v);
    assert_eq!(ctx.pc, VBAR + 0x400);
    assert_eq!(ctx.el1.esr >> 26, ec::DABT_LOWER);
    // EL1t: current EL with SP_EL0, offset 0.
    let (mut s, v, mut regs) = in_request(VBAR, PC, 0x3c4);
    running(&sp_fault(&mut s, v, 0x2000_0000, &mut regs));
    assert_eq!(s.vcpu_context_mut(v).pc, VBAR);
    // AArch32 EL0 (M[4] set): offset 0x600.
    let (mut s, v, mut regs) = in_request(VBAR, PC, 0x10);
    running(&sp_fault(&mut s, v, 0x2000_0000, &mut regs));
    assert_eq!(s.vcpu_context_mut(v).pc, VBAR + 0x600);
    // An instruction abort from EL1: class 0x21, IL and ISS kept.
    let (mut s, v, mut regs) = in_request(VBAR, PC, EL1H);
    s.vcpu_context_mut(v).exit = ExitInfo {
        vector: 0,
        esr: ec::IABT_LOWER << 26 | 1 << 25 | 0x07,
        far: 0x2000_0000,
        hpfar: 0x2000_0000 >> 8,
    };
    running(&s.handle_exit(v, &mut regs));
    assert_eq!(
        s.vcpu_context_mut(v).el1.esr,
        ec::IABT_SAME << 26 | 1 << 25 | 0x07
    );
}

fn assert_aborted(s: &Spmc<FakePlatform>, v: VcpuRef, next: &Next, regs: &spmc::ffa::Regs) {
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.error_code(), Some(FfaError::Aborted.code()));
    assert_eq!(s.partition(v.slot).state, PartitionState::Aborted);
}

#[test]
fn without_vectors_the_partition_is_aborted() {
    let (mut s, v, mut regs) = in_request(0, PC, EL1H);
    let next = sp_fault(&mut s, v, 0x2000_0000, &mut regs);
    assert_aborted(&s, v, &next, &regs);
}

#[test]
fn a_fault_in_the_vector_code_aborts() {
    let (mut s, v, mut regs) = in_request(VBAR, VBAR + 0x204, EL1H);
    let next = sp_fault(&mut s, v, 0x2000_0000, &mut regs);
    assert_aborted(&s, v, &next, &regs);
}

#[test]
fn the_same_instruction_faulting_again_aborts() {
    let (mut s, v, mut regs) = in_request(VBAR, PC, EL1H);
    running(&sp_fault(&mut s, v, 0x2000_0000, &mut regs));
    // The handler returns to the faulting instruction, which faults again.
    let ctx = s.vcpu_context_mut(v);
    ctx.pc = ctx.el1.elr;
    ctx.pstate = ctx.el1.spsr;
    let next = sp_fault(&mut s, v, 0x2000_0000, &mut regs);
    assert_aborted(&s, v, &next, &regs);
}

#[test]
fn repeated_faults_abort_but_an_ffa_call_forgives_them() {
    let (mut s, v, mut regs) = in_request(VBAR, PC, EL1H);
    for i in 0..8 {
        s.vcpu_context_mut(v).pc = PC + 4 * i;
        let next = sp_fault(&mut s, v, 0x2000_0000, &mut regs);
        assert!(matches!(next, Next::Run { .. }), "fault {i}");
    }
    s.vcpu_context_mut(v).pc = PC + 0x100;
    let next = sp_fault(&mut s, v, 0x2000_0000, &mut regs);
    assert_aborted(&s, v, &next, &regs);

    // Faults spread over requests are each injected.
    let (mut s, v, mut regs) = in_request(VBAR, PC, EL1H);
    for i in 0..12 {
        s.vcpu_context_mut(v).pc = PC;
        let next = sp_fault(&mut s, v, 0x2000_0000, &mut regs);
        assert!(matches!(next, Next::Run { .. }), "request {i}");
        let next = sp_call(&mut s, v, &[RESP64, (SP1 as u64) << 16, 0, 0], &mut regs);
        assert!(matches!(next, Next::NormalWorld));
        let (next, r) = nwd(&mut s, &[REQ64, SP1 as u64, 0, 0x10]);
        regs = r;
        assert_eq!(running(&next), v);
    }
}

#[test]
fn other_exceptions_still_abort() {
    let (mut s, v, mut regs) = in_request(VBAR, PC, EL1H);
    s.vcpu_context_mut(v).exit = ExitInfo {
        vector: 3,
        esr: 0,
        far: 0,
        hpfar: 0,
    };
    let next = s.handle_exit(v, &mut regs);
    assert_aborted(&s, v, &next, &regs);
}
