//! Model tests of the lock and hand-off protocol between cores with
//! [loom] (issue 11 item 5; docs/architecture.md "Locks" and "State
//! hand-off between cores"), over the real `spmc::contexts` and the real
//! [`Spmc`] on the fake platform.
//!
//! `spmc/tests/interleavings.rs` runs whole steps (a fast path, a manager
//! call) in every order, as if memory were sequentially consistent. Here
//! the core is built with `--cfg loom`: its vCPU locks and atomics
//! (`spmc::sync`) are loom's, so loom explores every interleaving of the
//! individual lock and atomic operations of the threads below (each a
//! core), and every value the memory model lets each atomic load return.
//! The manager lock is a loom mutex around the `Spmc` here, as
//! `platform-qemu` keeps a spin lock around it. Each thread does what
//! `platform-qemu`'s message loop does (`fast_request`, `run_vcpu`): the
//! fast path first, the manager under its lock otherwise, and after a
//! manager call the lazy save ([`Next::lazy_state_after`]) then
//! `Contexts::release`, still under the manager lock.
//!
//! What the hardware holds is modelled with one loom cell per vCPU (its
//! register file, [`Hw`]): a core writes it when it enters the vCPU (it
//! loads the state) and when it saves the state back (the lazy save), and
//! the manager writes it when it frees the vCPU (the memory is reused).
//! loom fails a test when two of those writes are not ordered by the
//! protocol's locks and atomics (a vCPU on two cores, a save into a freed
//! or handed-on context), beside the tests' own assertions.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test
//! -p spmc --test loom_contexts` (`cargo xtask test` runs it so in its
//! host step; a target directory of its own keeps the other builds'). The state space is bounded by a preemption
//! bound ([`PREEMPTIONS`], or `LOOM_MAX_PREEMPTIONS`).
//!
//! [loom]: https://docs.rs/loom
#![cfg(loom)]

mod common;

use std::sync::Arc;

use common::world::*;
use loom::cell::UnsafeCell;
use loom::sync::Mutex;
use loom::thread;
use spmc::contexts::{Attention, Contexts, Fast};
use spmc::ffa::{self, Regs, func};
use spmc::testing::FakePlatform;
use spmc::vcpu::{Context, VcpuRef, ec};
use spmc::{Next, Spmc};

/// The fatal-error gate of the fast path's calls, never failed here.
static NO_FAILURE: spmc::fatal::FailGate = spmc::fatal::FailGate::new();
/// Preemptions loom explores per execution unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise. The tests' state spaces stop growing at 6 (measured:
/// 17, 138 and 170 executions, about 3 s in all in a debug build), so 8
/// explores them completely; a test that grows past that stays bounded.
const PREEMPTIONS: usize = 8;
const SP1: u16 = 0x8001;
const SP2: u16 = 0x8002;
const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;
const ERROR32: u64 = func::ERROR_32 as u64;
const ERROR64: u64 = func::ERROR_64 as u64;
/// What sp2 answers the normal world when sp1 was busy for it.
const SP1_WAS_BUSY: u64 = 0xB05;
/// What a freed context's register file holds once its memory is reused.
const FREED: usize = usize::MAX;

/// The modelled hardware: each vCPU's register file, as the cores load it
/// on entry and save it back, as one loom cell whose value is the core that
/// last touched it (or [`FREED`]).
struct Hw(Vec<(VcpuRef, UnsafeCell<usize>)>);

impl Hw {
    fn new(vcpus: &[VcpuRef]) -> Self {
        Self(vcpus.iter().map(|&v| (v, UnsafeCell::new(0))).collect())
    }

    fn cell(&self, v: VcpuRef) -> &UnsafeCell<usize> {
        let (_, c) = self
            .0
            .iter()
            .find(|(w, _)| *w == v)
            .expect("a modelled vCPU");
        c
    }

    /// `core` loads or saves `v`'s state: loom fails the test unless every
    /// earlier access to it happens before this one.
    fn touch(&self, v: VcpuRef, core: usize) {
        self.cell(v).with_mut(|r| {
            // SAFETY: loom checks that no other thread accesses the cell
            // at the same time (it fails the test if one can).
            let r = unsafe { &mut *r };
            assert_ne!(*r, FREED, "vCPU {v:?}: core {core} uses a freed context");
            *r = core;
        });
    }

    /// The manager frees `v`: its memory is reused.
    fn free(&self, v: VcpuRef) {
        self.cell(v)
            // SAFETY: as in `touch`.
            .with_mut(|r| unsafe { *r = FREED });
    }
}

/// What the threads share: the manager lock around the `Spmc`, the vCPU
/// table, the hardware.
struct World {
    manager: Mutex<Spmc<FakePlatform>>,
    contexts: Arc<Contexts>,
    hw: Hw,
}

impl World {
    #[allow(
        clippy::arc_with_non_send_sync,
        reason = "loom's cells (`Hw`) are not Sync: loom checks every access \
                  to them itself, and its threads need no Send"
    )]
    fn new(s: Spmc<FakePlatform>, vcpus: &[VcpuRef]) -> Arc<Self> {
        Arc::new(Self {
            contexts: s.contexts().clone(),
            manager: Mutex::new(s),
            hw: Hw::new(vcpus),
        })
    }

    /// A normal-world direct request on `core`, played as the platform
    /// does (`fast_request`, else the manager), and every partition it
    /// runs until the core goes back to the normal world: its answer, or
    /// `None` when the fast path could not take it (`only_fast`).
    fn request(&self, core: usize, call: [u64; 8], only_fast: bool) -> Option<Regs> {
        let mut regs = Regs::from_slice(&call);
        let mut next = match self.contexts.direct_request(&NO_FAILURE, &regs, || core) {
            Fast::Done(next) => next,
            Fast::Slow if only_fast => return None,
            Fast::Slow => {
                let mut s = self.manager.lock().unwrap();
                s.platform_mut().core = core;
                s.handle_spmd(&mut regs)
            }
            Fast::Failed => unreachable!("the gate never fails here"),
        };
        while let Next::Run { vcpu, ctx } = next {
            next = self.run(core, vcpu, ctx, &mut regs);
        }
        Some(regs)
    }

    /// `platform-qemu`'s `run_vcpu`: enters `v` (its state loaded into the
    /// core), plays the partition's call, then the exit: the fast path,
    /// else the manager under its lock, the lazy save and the release.
    fn run(&self, core: usize, v: VcpuRef, ctx: *mut Context, regs: &mut Regs) -> Next {
        self.hw.touch(v, core);
        // SAFETY: the core handed this context to this core alone until its
        // exit (`Next::Run`'s contract, what the test checks); it lives in
        // a Box the core does not free while the vCPU runs.
        let ctx = unsafe { &mut *ctx };
        let call = partition_call(v, &ctx.x[..8]);
        ctx.x[..call.len()].copy_from_slice(&call);
        ctx.exit.vector = 0;
        ctx.exit.esr = ec::SMC64 << 26;
        match self
            .contexts
            .direct_response(&NO_FAILURE, v, regs, |_| self.hw.touch(v, core))
        {
            Fast::Done(next) => return next,
            Fast::Slow => {}
            Fast::Failed => unreachable!("the gate never fails here"),
        }
        let mut s = self.manager.lock().unwrap();
        s.platform_mut().core = core;
        let next = s.handle_exit(v, regs);
        let d = next.lazy_state_after(v);
        if d != spmc::LazyState::KeepLive {
            self.hw.touch(v, core);
            self.contexts.release(v);
        }
        drop(s);
        next
    }
}

/// What the partitions answer: sp1 and an instance answer a request with
/// x4 + 1; sp2 asks sp1 (partition to partition) and answers the normal
/// world with sp1's answer + 1, or [`SP1_WAS_BUSY`].
fn partition_call(v: VcpuRef, x: &[u64]) -> Vec<u64> {
    let (from, to) = ((x[1] >> 16) as u16, x[1] as u16);
    match x[0] {
        REQ64 if to == SP2 && from == 0 => vec![REQ64, ffa::endpoints(SP2, SP1), 0, 0, x[4]],
        REQ64 => vec![RESP64, ffa::endpoints(to, from), 0, 0, x[4] + 1],
        RESP64 if from == SP1 => vec![RESP64, ffa::endpoints(SP2, 0), 0, 0, x[4] + 1],
        // sp1 was busy (on another core): sp2 says so.
        ERROR32 | ERROR64 => vec![RESP64, ffa::endpoints(SP2, 0), 0, 0, SP1_WAS_BUSY],
        _ => panic!("vCPU {v:?}: unexpected {x:x?}"),
    }
}

fn request(from: u16, to: u16, k: u64) -> [u64; 8] {
    [REQ64, ffa::endpoints(from, to), 0, 0, k, 0, 0, 0]
}

/// Runs `f` under loom with the preemption bound; `f` names what each
/// execution's cores saw, and every one of `expected` must come up in
/// some execution (so that no test passes without exploring the races it
/// is about).
fn model(
    name: &str,
    expected: &[&'static str],
    f: impl Fn() -> &'static str + Sync + Send + 'static,
) {
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(PREEMPTIONS);
    }
    let s = seen.clone();
    b.check(move || {
        let outcome = f();
        *s.lock().unwrap().entry(outcome).or_insert(0usize) += 1;
    });
    let seen = seen.lock().unwrap();
    println!(
        "{name}: {} executions: {seen:?}",
        seen.values().sum::<usize>()
    );
    for e in expected {
        assert!(seen.contains_key(e), "{name}: no execution where {e}");
    }
}

fn packages() -> Arc<SmallWorld> {
    static P: std::sync::OnceLock<Arc<SmallWorld>> = std::sync::OnceLock::new();
    P.get_or_init(|| Arc::new(SmallWorld::new())).clone()
}

/// A VM's instance is destroyed on one core while the VM's direct
/// request and the instance's response take the fast path on another:
/// the manager frees the context only when no core holds it (else the
/// destroy answers RETRY), so no core enters a freed context or saves the
/// partition's state into one, and a request after the free does not
/// reach it.
///
/// Shown to fail: with `Contexts::direct_response` dropping the vCPU's
/// lock (and clearing "on a core") before the lazy save, loom reports the
/// save racing the free ("Causality violation: Concurrent write accesses
/// to `UnsafeCell`", the destroy having freed the context between the two).
#[test]
fn destroy_vs_fast_round_trip() {
    let p = packages();
    let expected = [
        "freed before the requests",
        "freed between the requests",
        "freed after the requests",
        "RETRY",
    ];
    model("destroy_vs_fast_round_trip", &expected, move || {
        let mut s = p.boot(2);
        assert_eq!(create_vm(&mut s, 1), 0);
        let id = instance_id(&s, 1).expect("VM 1's instance");
        let v = vcpu_of(&s, id);
        let w = World::new(s, &[v]);
        let core = {
            let w = w.clone();
            thread::spawn(move || {
                let first = w.request(0, request(1, id, 7), true);
                let second = w.request(0, request(1, id, 9), true);
                (first.map(|r| r.x(4)), second.map(|r| r.x(4)))
            })
        };
        let freed = {
            let mut s = w.manager.lock().unwrap();
            s.platform_mut().core = 1;
            let status = destroy_vm(&mut s, 1);
            if status == 0 {
                // Freed: no core may touch the context from here on.
                w.hw.free(v);
            }
            status == 0
        };
        let (first, second) = core.join().unwrap();
        for (k, got) in [(7, first), (9, second)] {
            if let Some(x4) = got {
                assert_eq!(x4, k + 1, "the instance's answer");
            }
        }
        match (freed, first.is_some(), second.is_some()) {
            (true, false, false) => "freed before the requests",
            (true, true, false) => "freed between the requests",
            (true, true, true) => "freed after the requests",
            // RETRY: only while the instance was on the other core.
            (false, true, _) | (false, _, true) => "RETRY",
            o => panic!("{o:?}: the fast path refused a live instance"),
        }
    });
}

/// Two cores call sp1 (a UP partition) at once; one of them through sp2
/// (an MP partition), which asks sp1 on its core: sp1 is handed from the
/// manager's call chain on core 0 to core 1's fast path and back. No core
/// enters sp1 while another holds its state (loom's cell), and every
/// request that ran gets its answer.
///
/// Shown to fail: without the "on a core" check in
/// `Contexts::direct_request` (`|| vcpu.on_core` removed), loom reports
/// core 1 entering sp1 after the manager set it `Waiting` on core 0 but
/// before core 0 saved its state and released it ("Causality violation:
/// Concurrent write accesses to `UnsafeCell`").
#[test]
fn up_partition_handed_between_cores() {
    let p = packages();
    let expected = [
        "sp1 answered both",
        "sp1 busy for sp2",
        "core 1's request left to the manager",
    ];
    model("up_partition_handed_between_cores", &expected, move || {
        let s = p.boot(2);
        let sp1 = vcpu_of(&s, SP1);
        let sp2 = VcpuRef {
            slot: vcpu_of(&s, SP2).slot,
            index: 0,
        };
        let w = World::new(s, &[sp1, sp2]);
        let other = {
            let w = w.clone();
            thread::spawn(move || w.request(1, request(0, SP1, 20), true).map(|r| r.x(4)))
        };
        let chain = w
            .request(0, request(0, SP2, 10), false)
            .expect("the manager answers");
        let direct = other.join().unwrap();
        assert_eq!(chain.func(), func::MSG_SEND_DIRECT_RESP_64);
        assert!(
            [12, SP1_WAS_BUSY].contains(&chain.x(4)),
            "sp2's answer through sp1: {chain:x?}"
        );
        if let Some(x4) = direct {
            assert_eq!(x4, 21);
        }
        assert!(!w.contexts.is_on_core(sp1) && !w.contexts.is_on_core(sp2));
        match (chain.x(4), direct) {
            (12, Some(_)) => "sp1 answered both",
            (_, Some(_)) => "sp1 busy for sp2",
            (_, None) => "core 1's request left to the manager",
        }
    });
}

/// The attention word: the manager sets a reason the fast path must leave
/// calls to it (a secure interrupt queued for a vCPU, a delayed SRI), then
/// looks at the vCPU under its lock, while a core's fast path takes the
/// same vCPU. Either the core took the vCPU first (the manager sees it on
/// a core), or the core sees the attention and leaves the call to the
/// manager: a core that runs the vCPU after the manager looked never
/// skips the manager's work.
///
/// Shown to fail: with the fast path checking the attention word only
/// before it takes the vCPU's lock (as it did before this test), loom
/// reports an execution where the core read the word before the manager
/// set it and took the lock after the manager looked ("the core ran the
/// vCPU after the manager set the attention").
#[test]
fn attention_seen_by_the_next_runner() {
    let p = packages();
    let expected = ["the core ran the vCPU first", "the manager came first"];
    model("attention_seen_by_the_next_runner", &expected, move || {
        let s = p.boot(2);
        let v = VcpuRef {
            slot: vcpu_of(&s, SP2).slot,
            index: 0,
        };
        let w = World::new(s, &[v]);
        let core = {
            let w = w.clone();
            thread::spawn(move || {
                let regs = Regs::from_slice(&request(0, SP2, 1));
                match w.contexts.direct_request(&NO_FAILURE, &regs, || 0) {
                    // The vCPU runs on this core (and stays there).
                    Fast::Done(Next::Run { vcpu, .. }) => {
                        w.hw.touch(vcpu, 0);
                        true
                    }
                    Fast::Slow => false,
                    other => panic!("{other:?}"),
                }
            })
        };
        let saw_free = {
            let _m = w.manager.lock().unwrap();
            w.contexts.set_attention(Attention::InterruptPending, true);
            !w.contexts.is_on_core(v)
        };
        let ran = core.join().unwrap();
        assert!(
            !(saw_free && ran),
            "the core ran the vCPU after the manager set the attention"
        );
        if ran {
            "the core ran the vCPU first"
        } else {
            "the manager came first"
        }
    });
}
