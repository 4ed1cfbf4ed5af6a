//! Host tests of execution contexts on several cores (DEN0077 v1.2 chapter
//! 8), secondary boot, FFA_SECONDARY_EP_REGISTER and the power management
//! messages, with the shipped manifests: sp2 is an MP partition (4
//! contexts, subscribed to CPU_OFF), sp1 a UP partition.

mod common;

use common::world::*;
use spmc::contexts::Fast;
use spmc::ffa::{self, FfaError, Regs, func, fwk, psci};
use spmc::ids::PartId;
use spmc::testing::{FakePlatform, sp_call};
use spmc::vcpu::{PowerOp, RunReason, VcpuRef, VcpuState};
use spmc::{Next, Spmc};

/// The fatal-error gate of the fast path's calls, never failed here.
static NO_FAILURE: spmc::fatal::FailGate = spmc::fatal::FailGate::new();
const SP1: u16 = 0x8001;
const SP2: u16 = 0x8002;
const SPMC: u16 = 0x8000;
const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;
const RESP32: u64 = func::MSG_SEND_DIRECT_RESP_32 as u64;

fn on_core(s: &mut Spmc<FakePlatform>, core: usize) {
    s.platform_mut().core = core;
}

fn request(s: &mut Spmc<FakePlatform>, to: u16, x4: u64) -> (Next, Regs) {
    nwd(s, &[REQ64, ffa::endpoints(0, to), 0, 0, x4])
}

/// Answers the request `v` handles with its x4 and returns the normal
/// world's registers.
fn answer(s: &mut Spmc<FakePlatform>, v: VcpuRef, id: u16) -> Regs {
    let x4 = s.vcpu_context_mut(v).x[4];
    let mut regs = Regs::default();
    let next = sp_call(s, v, &[RESP64, ffa::endpoints(id, 0), 0, 0, x4], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    regs
}

/// The SPMD's power management framework message for `f` (TF-A's
/// `spmd_build_spmc_message`).
fn psci_message(f: u32) -> [u64; 8] {
    [
        func::MSG_SEND_DIRECT_REQ_32 as u64,
        ffa::endpoints(ffa::SPMD_ID, SPMC),
        (fwk::FLAG | fwk::PSCI_REQ) as u64,
        f as u64,
        0,
        0,
        0,
        0,
    ]
}

/// Plays `core`'s cold boot: every MP context it starts waits at once.
/// Returns the contexts started, in order.
fn cold_boot(s: &mut Spmc<FakePlatform>, core: usize) -> Vec<VcpuRef> {
    cold_boot_at(s, core).into_iter().map(|(v, _)| v).collect()
}

/// [`cold_boot`], with the PC each context started at.
fn cold_boot_at(s: &mut Spmc<FakePlatform>, core: usize) -> Vec<(VcpuRef, u64)> {
    on_core(s, core);
    let mut regs = Regs::default();
    let mut next = s.secondary_boot(&mut regs);
    let mut started = Vec::new();
    while let Next::Run { vcpu, .. } = next {
        started.push((vcpu, s.vcpu_context_mut(vcpu).pc));
        next = sp_call(s, vcpu, &[func::MSG_WAIT as u64], &mut regs);
    }
    assert_eq!(
        regs.func(),
        func::MSG_WAIT,
        "the core's boot ends with MSG_WAIT"
    );
    started
}

#[test]
fn an_mp_partition_has_one_context_per_core_and_a_up_partition_one() {
    let s = booted();
    let slot = s.slot_of(PartId::new(SP2)).unwrap();
    let sp2 = &s.partition(slot);
    assert_eq!(sp2.vcpu_count, 4);
    assert!(sp2.is_mp());
    // The primary boot started the primary core's context only.
    let states = s.vcpu_states(slot);
    assert_eq!(states[0], VcpuState::Waiting);
    assert!(states[1..].iter().all(|v| *v == VcpuState::Off));
    let sp1 = &s.partition(s.slot_of(PartId::new(SP1)).unwrap());
    assert!(!sp1.is_mp());
}

#[test]
fn secondary_boot_starts_the_cores_context_of_each_mp_partition() {
    let mut s = booted();
    let slot = s.slot_of(PartId::new(SP2)).unwrap();
    let v = VcpuRef { slot, index: 2 };
    // No secondary entry registered: the primary entry point.
    assert_eq!(cold_boot_at(&mut s, 2), [(v, 0x1000_0000 + 0x4000)]);
    assert_eq!(s.vcpu_context_mut(v).x[4], 2, "x4 = the context's index");
    assert_eq!(s.vcpu_state(v), VcpuState::Waiting);
    // A second cold boot of a core that is on starts nothing.
    assert!(cold_boot(&mut s, 2).is_empty());
}

#[test]
fn each_context_of_an_mp_partition_reads_its_own_mpidr() {
    // What a vCPU reads as MPIDR_EL1 (VMPIDR_EL2): RES1 bit 31 and its
    // index in Aff0. An MP partition such as OP-TEE finds its per-core
    // state by it: with one value for all, every core's context would
    // share core 0's stacks.
    let mut s = booted();
    let slot = s.slot_of(PartId::new(SP2)).unwrap();
    for core in 1..4 {
        cold_boot(&mut s, core);
    }
    for index in 0..4u16 {
        let v = VcpuRef { slot, index };
        assert_eq!(
            s.vcpu_context_mut(v).vmpidr,
            0x8000_0000 | index as u64,
            "context {index}"
        );
    }
}

#[test]
fn a_request_on_core_n_goes_to_context_n() {
    let mut s = booted();
    let slot = s.slot_of(PartId::new(SP2)).unwrap();
    // Core 1 has not come on: sp2 has no running context there.
    on_core(&mut s, 1);
    let (next, r) = request(&mut s, SP2, 5);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(r.error_code(), Some(FfaError::Denied.code()));
    for core in 1..4 {
        cold_boot(&mut s, core);
    }
    for core in 0..4 {
        on_core(&mut s, core);
        let (next, _) = request(&mut s, SP2, core as u64 + 10);
        let v = running(&next);
        assert_eq!(
            v,
            VcpuRef {
                slot,
                index: core as u16
            }
        );
        // Contexts of the other cores are not touched.
        for other in (0..4).filter(|o| *o != core) {
            assert_eq!(
                s.vcpu_state(VcpuRef {
                    slot,
                    index: other as u16
                }),
                VcpuState::Waiting
            );
        }
        let r = answer(&mut s, v, SP2);
        assert_eq!(r.func(), func::MSG_SEND_DIRECT_RESP_64);
        assert_eq!(r.0[4], core as u64 + 10);
    }
    // Core 5: sp2 has no context for it.
    on_core(&mut s, 5);
    let (_, r) = request(&mut s, SP2, 1);
    assert_eq!(r.error_code(), Some(FfaError::Denied.code()));
}

#[test]
fn the_contexts_of_an_mp_partition_run_on_their_cores_at_once() {
    let mut s = booted();
    for core in 1..4 {
        cold_boot(&mut s, core);
    }
    // All four cores in sp2 at the same time: each in its own context.
    let mut running_now = Vec::new();
    for core in 0..4 {
        on_core(&mut s, core);
        let (next, _) = request(&mut s, SP2, core as u64);
        running_now.push((core, running(&next)));
    }
    for (core, v) in running_now {
        on_core(&mut s, core);
        assert_eq!(answer(&mut s, v, SP2).0[4], core as u64);
    }
}

#[test]
fn a_up_partition_migrates_but_never_runs_on_two_cores() {
    let mut s = booted();
    on_core(&mut s, 1);
    let (next, _) = request(&mut s, SP1, 7);
    let v = running(&next);
    assert_eq!(v.index, 0);
    // Core 2 calls while core 1 runs it: BUSY, nothing changes.
    on_core(&mut s, 2);
    let (next, r) = request(&mut s, SP1, 8);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(r.error_code(), Some(FfaError::Busy.code()));
    on_core(&mut s, 1);
    assert_eq!(answer(&mut s, v, SP1).0[4], 7);
    // Now core 2 gets it: the same context, migrated.
    on_core(&mut s, 2);
    let (next, _) = request(&mut s, SP1, 8);
    assert_eq!(running(&next), v);
    assert_eq!(answer(&mut s, v, SP1).0[4], 8);
}

#[test]
fn ffa_run_of_an_mp_context_from_another_core_is_invalid() {
    let mut s = booted();
    cold_boot(&mut s, 1);
    on_core(&mut s, 0);
    let r = nwd_now(&mut s, &[func::RUN as u64, ffa::endpoints(SP2, 1)]);
    assert_eq!(r.error_code(), Some(FfaError::InvalidParameters.code()));
    // On its own core it runs.
    on_core(&mut s, 1);
    let (next, _) = nwd(&mut s, &[func::RUN as u64, ffa::endpoints(SP2, 1)]);
    assert_eq!(running(&next).index, 1);
}

/// Boots the partitions; `during` plays extra calls of each booting vCPU
/// before its FFA_MSG_WAIT.
fn boot_with(during: impl Fn(&mut Spmc<FakePlatform>, VcpuRef, &mut Regs)) -> Spmc<FakePlatform> {
    let mut s = loaded();
    let mut regs = Regs::default();
    let mut next = s.boot(&mut regs);
    while let Next::Run { vcpu, .. } = next {
        during(&mut s, vcpu, &mut regs);
        next = sp_call(&mut s, vcpu, &[func::MSG_WAIT as u64], &mut regs);
    }
    assert!(s.is_booted());
    s
}

const EP64: u64 = func::SECONDARY_EP_REGISTER_64 as u64;
const EP32: u64 = func::SECONDARY_EP_REGISTER_32 as u64;

#[test]
fn secondary_ep_register_during_init_sets_where_secondary_contexts_start() {
    let mut s = boot_with(|s, v, regs| {
        let id = s.partition(v.slot).id();
        if id != SP2 {
            return;
        }
        // sp2 runs in place at 0x1000_0000 with mem-size 0x60000.
        for (f, bad) in [
            (EP64, 0x2000_0000u64),
            (EP64, 0x1006_0000),
            (EP32, 0x1000_0002),
        ] {
            sp_call(s, v, &[f, bad], regs);
            let x = &s.vcpu_context_mut(v).x;
            assert_eq!(x[0], func::ERROR_32 as u64, "entry {bad:#x}");
            assert_eq!(x[2] as u32 as i32, FfaError::InvalidParameters.code());
        }
        sp_call(s, v, &[EP32, 0xFFFF_FFFF_1000_4100], regs);
        assert_eq!(
            s.vcpu_context_mut(v).x[0],
            func::SUCCESS_32 as u64,
            "w1 only"
        );
        sp_call(s, v, &[EP64, 0x1000_4200], regs);
        assert_eq!(s.vcpu_context_mut(v).x[0], func::SUCCESS_32 as u64);
    });
    let slot = s.slot_of(PartId::new(SP2)).unwrap();
    assert_eq!(
        cold_boot_at(&mut s, 3),
        [(VcpuRef { slot, index: 3 }, 0x1000_4200)]
    );
}

#[test]
fn secondary_ep_register_after_init_or_from_the_normal_world_is_refused() {
    let mut s = booted();
    let v = vcpu_of(&s, SP2);
    // Running a request, after its initialisation: DENIED, nothing changes.
    let (next, _) = request(&mut s, SP2, 1);
    assert_eq!(running(&next), v);
    let mut regs = Regs::default();
    sp_call(&mut s, v, &[EP64, 0x1000_4200], &mut regs);
    let x = &s.vcpu_context_mut(v).x;
    assert_eq!(x[0], func::ERROR_32 as u64);
    assert_eq!(x[2] as u32 as i32, FfaError::Denied.code());
    assert_eq!(s.partition(v.slot).secondary_ep, None);
    answer(&mut s, v, SP2);
    // The normal world: NOT_SUPPORTED (the SPMD answers it on hardware).
    for f in [EP32, EP64] {
        let r = nwd_now(&mut s, &[f, 0x1000_4200]);
        assert_eq!(r.error_code(), Some(FfaError::NotSupported.code()));
    }
}

#[test]
fn cpu_off_reaches_subscribers_then_the_core_boots_again() {
    let mut s = booted();
    let slot = s.slot_of(PartId::new(SP2)).unwrap();
    cold_boot(&mut s, 1);
    on_core(&mut s, 1);
    let mut regs = Regs::from_slice(&psci_message(psci::CPU_OFF));
    let next = s.handle_spmd(&mut regs);
    // sp2 (MP, subscribed) gets it in its context for core 1; sp1 (UP) not.
    let v = running(&next);
    assert_eq!(v, VcpuRef { slot, index: 1 });
    assert_eq!(
        s.vcpu_state(v),
        VcpuState::Running(RunReason::Power {
            op: PowerOp::CpuOff
        })
    );
    let x = s.vcpu_context_mut(v).x;
    assert_eq!(x[0], func::MSG_SEND_DIRECT_REQ_32 as u64);
    assert_eq!(x[1], ffa::endpoints(SPMC, SP2));
    assert_eq!(x[2], (fwk::FLAG | fwk::PSCI_REQ) as u64);
    assert_eq!(x[3], psci::CPU_OFF as u64);
    // A response that is not the framework response is refused.
    let next = sp_call(
        &mut s,
        v,
        &[RESP64, ffa::endpoints(SP2, SPMC), 0, 0],
        &mut regs,
    );
    assert_eq!(running(&next), v);
    assert_eq!(s.vcpu_context_mut(v).x[0], func::ERROR_32 as u64);
    // The framework response: the SPMD gets its answer.
    let next = sp_call(
        &mut s,
        v,
        &[
            RESP32,
            ffa::endpoints(SP2, SPMC),
            (fwk::FLAG | fwk::PSCI_RESP) as u64,
            psci::SUCCESS as u64,
        ],
        &mut regs,
    );
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[0], RESP32);
    assert_eq!(regs.0[1], ffa::endpoints(SPMC, ffa::SPMD_ID));
    assert_eq!(regs.0[2], (fwk::FLAG | fwk::PSCI_RESP) as u64);
    assert_eq!(regs.0[3], psci::SUCCESS as u64);
    // The core's context is off: no requests there until the core is on again.
    assert_eq!(s.vcpu_state(v), VcpuState::Off);
    let (_, r) = request(&mut s, SP2, 1);
    assert_eq!(r.error_code(), Some(FfaError::Denied.code()));
    // Core 0's context did not change.
    assert_eq!(s.vcpu_state(VcpuRef { slot, index: 0 }), VcpuState::Waiting);
    // CPU_ON again: initialised afresh, and it serves requests.
    assert_eq!(cold_boot(&mut s, 1), [v]);
    on_core(&mut s, 1);
    let (next, _) = request(&mut s, SP2, 9);
    assert_eq!(running(&next), v);
    assert_eq!(answer(&mut s, v, SP2).0[4], 9);
}

#[test]
fn a_power_message_nobody_subscribes_to_is_answered_at_once() {
    let mut s = booted();
    cold_boot(&mut s, 1);
    on_core(&mut s, 1);
    // CPU_SUSPEND: sp2 subscribes to CPU_OFF only.
    let mut regs = Regs::from_slice(&psci_message(psci::CPU_SUSPEND_64));
    let next = s.handle_spmd(&mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[2], (fwk::FLAG | fwk::PSCI_RESP) as u64);
    assert_eq!(regs.0[3], psci::SUCCESS as u64);
    // Not an off: the context still serves.
    let slot = s.slot_of(PartId::new(SP2)).unwrap();
    assert_eq!(s.vcpu_state(VcpuRef { slot, index: 1 }), VcpuState::Waiting);
}

/// The fast path (`spmc::contexts`): the normal world's direct request to
/// its core's context of an MP partition, and the response, under that
/// vCPU's lock only; the manager's path gives the same answer.
#[test]
fn the_fast_path_serves_a_core_s_own_context_both_ways() {
    let mut s = booted();
    cold_boot(&mut s, 2);
    let c = s.contexts().clone();
    let slot = s.slot_of(PartId::new(SP2)).unwrap();
    let v = VcpuRef { slot, index: 2 };
    let req = Regs::from_slice(&[REQ64, ffa::endpoints(0, SP2), 0, 0, 42]);
    let Fast::Done(Next::Run { vcpu, .. }) = c.direct_request(&NO_FAILURE, &req, || 2) else {
        panic!("not taken by the fast path");
    };
    assert_eq!(vcpu, v);
    assert!(c.is_on_core(v));
    assert!(
        matches!(s.vcpu_state(v), VcpuState::Running(RunReason::Request(_))),
        "{:?}",
        s.vcpu_state(v)
    );
    assert_eq!(s.vcpu_context(v).x[4], 42);
    assert!(
        s.nwd_version_fixed(),
        "the request fixed the version (§13.2)"
    );
    // Taken: a second request to it on the same core is the manager's (BUSY).
    assert!(matches!(
        c.direct_request(&NO_FAILURE, &req, || 2),
        Fast::Slow
    ));
    // The partition answers; the platform's lazy save runs inside the lock.
    let mut ctx = s.vcpu_context(v);
    ctx.x[..5].copy_from_slice(&[RESP64, ffa::endpoints(SP2, 0), 0, 0, 43]);
    ctx.exit.esr = spmc::vcpu::ec::SMC64 << 26;
    let pc = ctx.pc;
    drop(c);
    *s.vcpu_context_mut(v) = ctx;
    let c = s.contexts().clone();
    let mut regs = Regs::default();
    let mut saved = Vec::new();
    let r = c.direct_response(&NO_FAILURE, v, &mut regs, |d| saved.push(d));
    assert!(matches!(r, Fast::Done(Next::NormalWorld)), "{r:?}");
    assert_eq!(saved, [spmc::LazyState::ToNormalWorld], "saved in the lock");
    assert_eq!(regs.func(), func::MSG_SEND_DIRECT_RESP_64);
    assert_eq!((regs.x(1), regs.x(4)), (ffa::endpoints(SP2, 0), 43));
    assert_eq!(s.vcpu_state(v), VcpuState::Waiting);
    assert!(!c.is_on_core(v));
    drop(c);
    assert_eq!(s.vcpu_context_mut(v).pc, pc + 4, "past the SMC");
}

/// What the fast path does not handle exactly as the manager would, it
/// leaves to the manager with nothing changed.
#[test]
fn the_fast_path_leaves_everything_else_to_the_manager() {
    let mut s = booted();
    cold_boot(&mut s, 1);
    let c = s.contexts().clone();
    let slot = s.slot_of(PartId::new(SP2)).unwrap();
    let v1 = VcpuRef { slot, index: 1 };
    let slow = |regs: &[u64], core: usize| {
        matches!(
            c.direct_request(&NO_FAILURE, &Regs::from_slice(regs), || core),
            Fast::Slow
        )
    };
    // A VM other than endpoint 0 (the binding policy decides), w2 not zero
    // (a framework message, or INVALID_PARAMETERS), a 32-bit request, a
    // secure sender, an unknown ID, a core whose context is off.
    assert!(slow(&[REQ64, ffa::endpoints(3, SP2), 0, 0, 1], 1));
    assert!(slow(&[REQ64, ffa::endpoints(0, SP2), 1, 0, 1], 1));
    assert!(slow(
        &[func::MSG_SEND_DIRECT_REQ_32 as u64, ffa::endpoints(0, SP2)],
        1
    ));
    assert!(slow(&[REQ64, ffa::endpoints(SP1, SP2), 0, 0, 1], 1));
    assert!(slow(&[REQ64, ffa::endpoints(0, 0x8077), 0, 0, 1], 1));
    assert!(slow(&[REQ64, ffa::endpoints(0, SP2), 0, 0, 1], 3));
    // While the manager has work the fast path would skip.
    c.set_attention(spmc::contexts::Attention::InterruptPending, true);
    assert!(slow(&[REQ64, ffa::endpoints(0, SP2), 0, 0, 1], 1));
    c.set_attention(spmc::contexts::Attention::InterruptPending, false);
    assert_eq!(s.vcpu_state(v1), VcpuState::Waiting);
    assert!(!s.nwd_version_fixed(), "nothing changed");
    drop(c);
    // The manager answers each of them as before, e.g. the off context.
    on_core(&mut s, 3);
    let (_, r) = request(&mut s, SP2, 1);
    assert_eq!(r.error_code(), Some(FfaError::Denied.code()));
}

/// Once the SPMC has failed on any core, the fast path touches nothing
/// and the platform answers ABORTED (`spmc::fatal`).
#[test]
fn the_fast_path_stops_once_the_spmc_failed() {
    static GATE: spmc::fatal::FailGate = spmc::fatal::FailGate::new();
    let s = booted();
    let c = s.contexts().clone();
    c.set_fail_gate(&GATE);
    let v = VcpuRef {
        slot: s.slot_of(PartId::new(SP2)).unwrap(),
        index: 0,
    };
    let req = Regs::from_slice(&[REQ64, ffa::endpoints(0, SP2), 0, 0, 1]);
    assert_eq!(s.vcpu_state(v), VcpuState::Waiting);
    GATE.fail();
    assert!(matches!(c.direct_request(&GATE, &req, || 0), Fast::Failed));
    assert!(!c.is_on_core(v), "not taken");
}
