//! An exhaustive interleaving checker for the state hand-off between cores
//! (docs/architecture.md, "State hand-off between cores"; issue 11 items 4
//! and 5), over the real [`Spmc`] on the fake platform.
//!
//! The firmware has two kinds of locks (`spmc::contexts`): the manager
//! lock around the `Spmc`, and one lock per vCPU. What cores interleave is
//! (a) the direct-message fast path (`Contexts::direct_request` and
//! `Contexts::direct_response`, under one vCPU's lock only), which runs
//! while another core holds the manager lock, and (b) whole manager calls
//! (`Spmc::handle_spmd`, `Spmc::handle_exit`) under the manager lock, split
//! where the platform acts after an exit: the manager call, then the lazy
//! save ([`Next::lazy_state_after`]), then `Contexts::release` and the
//! manager lock's release, each a step of its own so that other cores' fast
//! paths come in between. A core that needs the manager lock while another
//! holds it spins (a step that changes nothing). The checker plays each
//! core's script (normal-world requests, and the partitions' answers) and
//! explores *every* order of those steps between cores, replaying the real
//! `Spmc` from its boot for each order (it is deterministic). Partitions
//! are played as the other host tests play them ([`sp_call`]). What it
//! does not split: the inside of one manager call or one fast path (each
//! runs whole, as under its lock).
//!
//! What the hardware holds is modelled per core, as `arch_aarch64::vcpu`
//! keeps it: the vCPU whose EL1 and FP/SIMD registers are live on the core
//! (`CpuState.el1` / `CpuState.fp`), loaded by `vcpu::run` when a different
//! vCPU runs there (after saving the one that was live into its context),
//! and saved back into the context by `vcpu::hand_off` or
//! `vcpu::return_to_normal_world` as the platform decides after each exit
//! from the one function the firmware uses, [`Next::lazy_state_after`]
//! (`platform-qemu`'s `run_vcpu`).
//!
//! Checked after every call, in every interleaving:
//! - a core never loads a vCPU whose state is live on another core (it
//!   would run it with stale registers), nor saves into a context that
//!   another core runs or that the manager freed;
//! - a core that is not between an exit and its release holds the live
//!   state of the vCPU it runs or of none (the invariant the hand-off
//!   keeps), and every vCPU whose state a core holds is on a core
//!   (`Contexts::is_on_core`: nobody else may pick it);
//! - no vCPU runs on two cores, and every vCPU a core runs is `Running`;
//! - every normal-world request gets the right answer (or BUSY; a VM
//!   destroyed while its instance is on a core gets RETRY);
//! - a destroyed instance's context is never saved into or run again.
//!
//! The checker is shown to find the bug: with the hand-off removed from the
//! platform's decision (a partition's state left live on the core when
//! another vCPU runs next there, as before issue 11 item 4) it finds an
//! order in which a second core picks the partition with stale state; and
//! with the platform's steps after an exit in the wrong order (the vCPU
//! released before its state is saved) it finds a second core's fast path
//! taking it in between.

mod common;

use common::world::*;
use spmc::contexts::Fast;
use spmc::ffa::fwk;
use spmc::ffa::{self, FfaError, Regs, func};
use spmc::ids::SlotId;
use spmc::testing::{FakePlatform, sp_call};
use spmc::vcpu::{RunReason, VcpuRef, VcpuState};
use spmc::{LazyState, Next, Spmc};

/// The fatal-error gate of the fast path's calls, never failed here.
static NO_FAILURE: spmc::fatal::FailGate = spmc::fatal::FailGate::new();
const SP1: u16 = 0x8001;
const SP2: u16 = 0x8002;
const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;
/// What sp2 answers the normal world when sp1 was BUSY for it.
const SP1_WAS_BUSY: u64 = 0xB05;

/// One normal-world request a core's script makes.
#[derive(Clone, Copy, Debug)]
enum Request {
    /// A direct request to sp1 (UP: it migrates to this core) with x4 = k;
    /// sp1 answers k + 1.
    Sp1(u64),
    /// A direct request to this core's context of sp2 (MP) with x4 = k,
    /// which asks sp1 (partition to partition) and answers k + 2: the path
    /// where a core runs another vCPU after an exit (sp2 -> sp1 -> sp2), so
    /// the one that needs the hand-off.
    Chain(u64),
    /// The hypervisor's VM created message for VM `vm` (DEN0077 v1.2
    /// §18.3): the vTEE template's instance for it boots on this core.
    Create(u16),
    /// The VM destroyed message: the instance is freed, or RETRY while one
    /// of its vCPUs is on a core (`Spmc::destroy_instance`).
    Destroy(u16),
    /// A direct request from VM `vm` to the template's ID (its own
    /// instance) with x4 = k; the instance answers k + 1.
    Vm(u16, u64),
    /// A direct request to this core's context of sp2 (MP) with x4 = k and
    /// x5 = 1, which sp2 answers itself with k + 3: the fast path both ways.
    Own(u64),
}

/// A violation of the protocol, with what the checker saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Violation {
    /// `core` loaded `vcpu`'s state while it was live on `live_on`.
    StaleLoad {
        core: usize,
        vcpu: VcpuRef,
        live_on: usize,
    },
    /// `core` saved `vcpu`'s state into its context while `running_on` ran it.
    SaveIntoHandedOn {
        core: usize,
        vcpu: VcpuRef,
        running_on: usize,
    },
    /// `core` saved `vcpu`'s state into a context the manager freed.
    SaveIntoFreed { core: usize, vcpu: VcpuRef },
    /// With the lock free, `core` held `vcpu`'s state but ran something else.
    LiveButNotRunning { core: usize, vcpu: VcpuRef },
    /// `core` held `vcpu`'s state while `vcpu` was on no core (released:
    /// any core may pick it).
    LiveButReleased { core: usize, vcpu: VcpuRef },
    /// Anything else: two cores in one vCPU, a wrong answer, a bad state.
    Other(String),
}

/// What the platform does with the decision: the firmware's, or one with
/// the hand-off removed.
type Policy = fn(LazyState) -> LazyState;

/// The order of the platform's steps after a manager call that handled an
/// exit (`platform-qemu` `run_vcpu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// The firmware's: the lazy save, then `Contexts::release`.
    SaveThenRelease,
    /// Broken on purpose: the vCPU released before its state is saved.
    ReleaseThenSave,
}

/// Where a core is between a manager call that handled an exit and the
/// release of the manager lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Not holding the manager lock.
    #[default]
    Idle,
    /// The manager call returned; `exited`'s lazy state and release to do.
    Exited { exited: VcpuRef, d: LazyState },
    /// One of the two done (which: [`Order`]); the other, then unlock.
    Half { exited: VcpuRef, d: LazyState },
}

fn firmware(d: LazyState) -> LazyState {
    d
}

/// The platform before issue 11 item 4: a partition's state stays live on
/// the core when another vCPU runs next (no `hand_off`).
fn without_hand_off(d: LazyState) -> LazyState {
    match d {
        LazyState::HandOff => LazyState::KeepLive,
        d => d,
    }
}

/// A platform that leaves a partition's state live in the core when it
/// answers the normal world (no `return_to_normal_world` before the lock
/// is released).
fn without_save_on_return(d: LazyState) -> LazyState {
    match d {
        LazyState::ToNormalWorld => LazyState::KeepLive,
        d => d,
    }
}

#[derive(Debug, Default)]
struct Core {
    script: Vec<Request>,
    next_request: usize,
    /// The request the normal world on this core waits on.
    pending: Option<Request>,
    /// The vCPU this core runs (between `Next::Run` and its exit).
    running: Option<VcpuRef>,
    /// Whether `running` has entered (`vcpu::run` switched its state in):
    /// the platform enters it after the lock is released, so other cores'
    /// calls may come in between.
    entered: bool,
    /// Whose EL1 and FP/SIMD state is live in this core's registers
    /// (`arch_aarch64::vcpu` `CpuState`); `None`: the normal world's.
    live: Option<VcpuRef>,
    /// Calls an instance booting on this core has made.
    init_calls: u8,
    /// The call the vCPU `running` makes at its exit, once decided (so a
    /// core that spins for the manager lock makes the same call again).
    call: Option<Vec<u64>>,
    /// Between an exit's manager call and the manager lock's release.
    phase: Phase,
}

struct World {
    s: Spmc<FakePlatform>,
    cores: Vec<Core>,
    policy: Policy,
    order: Order,
    /// The core that holds the manager lock.
    manager: Option<usize>,
    /// What the normal world's answers were, as labels ("Destroy freed").
    outcomes: std::collections::BTreeSet<&'static str>,
    /// What the current call broke (the call itself goes on, as the
    /// hardware would).
    broken: Vec<Violation>,
}

impl World {
    fn new(scripts: &[Vec<Request>], policy: Policy, order: Order, packages: &SmallWorld) -> Self {
        let mut s = packages.boot(1);
        // Every core after the first comes on (sp2's context there boots).
        for core in 1..scripts.len() {
            s.platform_mut().core = core;
            let mut regs = Regs::default();
            let mut next = s.secondary_boot(&mut regs);
            while let Next::Run { vcpu, .. } = next {
                next = sp_call(&mut s, vcpu, &[func::MSG_WAIT as u64], &mut regs);
            }
        }
        let cores = scripts
            .iter()
            .map(|script| Core {
                script: script.clone(),
                ..Core::default()
            })
            .collect();
        Self {
            s,
            cores,
            policy,
            order,
            manager: None,
            outcomes: Default::default(),
            broken: Vec::new(),
        }
    }

    /// The cores that have a call to make.
    fn enabled(&self) -> Vec<usize> {
        (0..self.cores.len())
            .filter(|&c| {
                let k = &self.cores[c];
                k.running.is_some() || k.next_request < k.script.len() || k.phase != Phase::Idle
            })
            .collect()
    }

    /// What the partition `v` does with what it was just given (its x0..):
    /// sp1 answers a request with x4 + 1; sp2 passes the normal world's
    /// request on to sp1 and answers it with sp1's answer + 1.
    /// An instance of the template plays `play_init` while it boots, and
    /// answers requests with x4 + 1.
    fn partition_call(&mut self, core: usize, v: VcpuRef) -> Vec<u64> {
        let x = self.s.vcpu_context_mut(v).x;
        let me = self.s.partition(v.slot).id();
        if let VcpuState::Running(RunReason::Create { .. }) = self.s.vcpu_state(v) {
            let k = &mut self.cores[core];
            k.init_calls += 1;
            return match k.init_calls {
                1 => vec![func::VERSION as u64, 0x1_0002],
                2 => vec![
                    func::RXTX_MAP_64 as u64,
                    RAM_IPA + 0xE000,
                    RAM_IPA + 0xF000,
                    1,
                ],
                _ => vec![func::MSG_WAIT as u64],
            };
        }
        match x[0] {
            REQ64 if me == SP2 && (x[1] >> 16) as u16 == 0 && x[5] == 1 => {
                vec![RESP64, ffa::endpoints(SP2, 0), 0, 0, x[4] + 3]
            }
            REQ64 if me == SP2 && (x[1] >> 16) as u16 == 0 => {
                vec![REQ64, ffa::endpoints(SP2, SP1), 0, 0, x[4]]
            }
            REQ64 => vec![
                RESP64,
                ffa::endpoints(me.raw(), (x[1] >> 16) as u16),
                0,
                0,
                x[4] + 1,
            ],
            RESP64 if me == SP2 => vec![RESP64, ffa::endpoints(SP2, 0), 0, 0, x[4] + 1],
            f if f == func::ERROR_32 as u64 && me == SP2 => {
                assert_eq!(x[2] as u32 as i32, FfaError::Busy.code(), "sp2 got {x:x?}");
                vec![RESP64, ffa::endpoints(SP2, 0), 0, 0, SP1_WAS_BUSY]
            }
            _ => panic!("partition {me:#x} given {x:x?}"),
        }
    }

    /// One step of `core`: the platform's next step after an exit's
    /// manager call, or entering the vCPU it runs, or that vCPU's exit, or
    /// the next normal-world request. An exit or a request tries the fast
    /// path first; if that is not for it, it needs the manager lock (and
    /// spins, changing nothing, while another core holds it).
    fn step(&mut self, core: usize) -> Vec<Violation> {
        self.s.platform_mut().core = core;
        match self.cores[core].phase {
            Phase::Exited { exited, d } => {
                match self.order {
                    Order::SaveThenRelease => self.lazy(core, d),
                    Order::ReleaseThenSave => self.s.contexts().release(exited),
                }
                self.cores[core].phase = Phase::Half { exited, d };
                self.check_invariants();
                return std::mem::take(&mut self.broken);
            }
            Phase::Half { exited, d } => {
                match self.order {
                    Order::SaveThenRelease => self.s.contexts().release(exited),
                    Order::ReleaseThenSave => self.lazy(core, d),
                }
                self.cores[core].phase = Phase::Idle;
                self.manager = None;
                self.check_invariants();
                return std::mem::take(&mut self.broken);
            }
            Phase::Idle => {}
        }
        let manager_free = self.manager.is_none();
        let mut regs = Regs::default();
        let next = match self.cores[core].running {
            Some(v) if !self.cores[core].entered => {
                // platform-qemu `run_vcpu` -> `arch_aarch64::vcpu::run`,
                // with no lock held.
                self.load(core, v);
                self.cores[core].entered = true;
                self.check_invariants();
                return std::mem::take(&mut self.broken);
            }
            Some(v) => {
                let call = match self.cores[core].call.clone() {
                    Some(c) => c,
                    None => {
                        let c = self.partition_call(core, v);
                        self.cores[core].call = Some(c.clone());
                        c
                    }
                };
                // The partition's call, in its context (as `sp_call` puts it).
                let mut ctx = self.s.vcpu_context(v);
                ctx.x[..call.len()].copy_from_slice(&call);
                ctx.exit = spmc::vcpu::ExitInfo {
                    vector: 0,
                    esr: spmc::vcpu::ec::SMC64 << 26,
                    far: 0,
                    hpfar: 0,
                };
                *self.s.vcpu_context_mut(v) = ctx;
                // The fast path, under the vCPU's lock only; its lazy
                // save happens inside that lock.
                let World {
                    s,
                    cores,
                    broken,
                    policy,
                    ..
                } = self;
                let fast = s
                    .contexts()
                    .direct_response(&NO_FAILURE, v, &mut regs, |d| {
                        apply_lazy(s, cores, broken, core, (*policy)(d))
                    });
                match fast {
                    Fast::Done(next) => {
                        self.cores[core].call = None;
                        next
                    }
                    Fast::Failed => panic!("no failure in this model"),
                    Fast::Slow if !manager_free => {
                        // Spins for the manager lock.
                        self.check_invariants();
                        return std::mem::take(&mut self.broken);
                    }
                    Fast::Slow => {
                        self.cores[core].call = None;
                        self.manager = Some(core);
                        // The call is in its context already; the release is the
                        // platform's step below.
                        let next = self.s.handle_exit(v, &mut regs);
                        let d = (self.policy)(next.lazy_state_after(v));
                        if d != LazyState::KeepLive {
                            self.cores[core].phase = Phase::Exited { exited: v, d };
                        } else {
                            self.manager = None;
                        }
                        next
                    }
                }
            }
            None => {
                let k = &self.cores[core];
                let r = k.script[k.next_request];
                let call = match r {
                    Request::Sp1(x4) => [REQ64, ffa::endpoints(0, SP1), 0, 0, x4, 0, 0, 0],
                    Request::Chain(x4) => [REQ64, ffa::endpoints(0, SP2), 0, 0, x4, 0, 0, 0],
                    Request::Own(x4) => [REQ64, ffa::endpoints(0, SP2), 0, 0, x4, 1, 0, 0],
                    Request::Create(vm) => vm_message(0, TEMPLATE, fwk::VM_CREATED, vm),
                    Request::Destroy(vm) => vm_message(0, TEMPLATE, fwk::VM_DESTROYED, vm),
                    Request::Vm(vm, x4) => [REQ64, ffa::endpoints(vm, TEMPLATE), 0, 0, x4, 0, 0, 0],
                };
                regs = Regs::from_slice(&call);
                let next = match self
                    .s
                    .contexts()
                    .direct_request(&NO_FAILURE, &regs, || core)
                {
                    Fast::Done(next) => next,
                    Fast::Failed => panic!("no failure in this model"),
                    Fast::Slow if !manager_free => {
                        self.check_invariants();
                        return std::mem::take(&mut self.broken);
                    }
                    Fast::Slow => {
                        // A whole manager call: no exited vCPU to release.
                        let (next, r) = nwd(&mut self.s, &call);
                        regs = r;
                        next
                    }
                };
                let k = &mut self.cores[core];
                k.next_request += 1;
                k.pending = Some(r);
                k.init_calls = 0;
                next
            }
        };
        match next {
            Next::Run { vcpu, .. } => {
                self.cores[core].running = Some(vcpu);
                self.cores[core].entered = false;
            }
            Next::NormalWorld => {
                self.cores[core].running = None;
                let r = self.cores[core]
                    .pending
                    .take()
                    .expect("an answer to a request");
                self.check_answer(r, &regs);
            }
        }
        self.check_invariants();
        std::mem::take(&mut self.broken)
    }

    /// The platform acts on the decision `d` for the state live on `core`.
    fn lazy(&mut self, core: usize, d: LazyState) {
        let World {
            s, cores, broken, ..
        } = self;
        apply_lazy(s, cores, broken, core, d);
    }

    /// `arch_aarch64::vcpu::run` of `v` on `core`: if another vCPU's state
    /// is live there, it is saved into its context first; then `v`'s is
    /// loaded from its context (unless it is already live here).
    fn load(&mut self, core: usize, v: VcpuRef) {
        for (d, k) in self.cores.iter().enumerate() {
            if d != core && k.live == Some(v) {
                self.broken.push(Violation::StaleLoad {
                    core,
                    vcpu: v,
                    live_on: d,
                });
            }
        }
        if self.cores[core].live.is_some_and(|u| u != v) {
            self.save(core);
        }
        self.cores[core].live = Some(v);
    }

    /// `core` saves the state live in its registers into that vCPU's context.
    fn save(&mut self, core: usize) {
        save(&self.s, &self.cores, &mut self.broken, core);
    }

    fn check_answer(&mut self, r: Request, regs: &Regs) {
        let ok = match r {
            Request::Sp1(k) => {
                (regs.func() == func::MSG_SEND_DIRECT_RESP_64
                    && regs.x(1) == ffa::endpoints(SP1, 0)
                    && regs.x(4) == k + 1)
                    || regs.error_code() == Some(FfaError::Busy.code())
            }
            Request::Chain(k) => {
                regs.func() == func::MSG_SEND_DIRECT_RESP_64
                    && regs.x(1) == ffa::endpoints(SP2, 0)
                    && (regs.x(4) == k + 2 || regs.x(4) == SP1_WAS_BUSY)
            }
            Request::Create(_) => {
                regs.func() == func::MSG_SEND_DIRECT_RESP_32
                    && regs.w(2) == fwk::FLAG | fwk::VM_CREATED_ACK
                    && regs.w(3) == 0
            }
            Request::Destroy(_) => {
                regs.func() == func::MSG_SEND_DIRECT_RESP_32
                    && regs.w(2) == fwk::FLAG | fwk::VM_DESTROYED_ACK
                    && (regs.w(3) == 0 || regs.w(3) as i32 == FfaError::Retry.code())
            }
            Request::Own(k) => {
                regs.func() == func::MSG_SEND_DIRECT_RESP_64
                    && regs.x(1) == ffa::endpoints(SP2, 0)
                    && regs.x(4) == k + 3
            }
            Request::Vm(vm, k) => {
                (regs.func() == func::MSG_SEND_DIRECT_RESP_64
                    && regs.x(1) as u16 == vm
                    && regs.x(4) == k + 1)
                    // Before the instance exists, after it is gone, or
                    // while it boots on another core.
                    || regs.error_code() == Some(FfaError::Denied.code())
                    || regs.error_code() == Some(FfaError::Busy.code())
            }
        };
        let label = match (r, regs.error_code()) {
            (Request::Destroy(_), _) if regs.w(3) == 0 => "Destroy freed",
            (Request::Destroy(_), _) => "Destroy RETRY",
            (Request::Vm(..), None) => "Vm answered",
            (Request::Vm(..), Some(_)) => "Vm refused",
            (Request::Sp1(_), Some(_)) => "Sp1 BUSY",
            (Request::Chain(_), _) if regs.x(4) == SP1_WAS_BUSY => "Chain: sp1 BUSY",
            _ => "other",
        };
        self.outcomes.insert(label);
        if !ok {
            self.broken
                .push(Violation::Other(format!("{r:?} answered {regs:x?}")));
        }
    }

    /// What identifies this point of the search: each core's progress and
    /// model, and every vCPU's state and registers x0-x7 (what the played
    /// partitions react to). Two orders that reach the same point have the
    /// same futures, so the search explores them once.
    fn key(&mut self) -> String {
        let cores: Vec<_> = self
            .cores
            .iter()
            .map(|k| {
                (
                    k.next_request,
                    k.pending,
                    k.running,
                    k.entered,
                    k.live,
                    k.init_calls,
                    k.call.clone(),
                    k.phase,
                )
            })
            .collect();
        let mut vcpus = Vec::new();
        for slot in (0..self.s.partitions().len() as u16).map(SlotId::new) {
            vcpus.push(format!("{slot}:{:#x}", self.s.partition(slot).id()));
            for index in 0..self.s.partition(slot).vcpu_count {
                let v = VcpuRef { slot, index };
                let x = self.s.vcpu_context_mut(v).x;
                let on = self.s.contexts().is_on_core(v);
                vcpus.push(format!(
                    "{index}:{:?} {on} {:x?}",
                    self.s.vcpu_state(v),
                    &x[..8]
                ));
            }
        }
        format!("{:?} {cores:?} {vcpus:?}", self.manager)
    }

    /// The invariants after every step.
    fn check_invariants(&mut self) {
        for (c, k) in self.cores.iter().enumerate() {
            if let Some(v) = k.live
                && k.running != Some(v)
                && k.phase == Phase::Idle
            {
                self.broken
                    .push(Violation::LiveButNotRunning { core: c, vcpu: v });
            }
            if let Some(v) = k.live
                && !self.s.contexts().is_on_core(v)
            {
                self.broken
                    .push(Violation::LiveButReleased { core: c, vcpu: v });
            }
            if let Some(v) = k.running {
                let p = &self.s.partition(v.slot);
                if !p.is_alive() || v.index >= p.vcpu_count {
                    self.broken.push(Violation::Other(format!(
                        "core {c} runs {v:?}, which was freed"
                    )));
                    continue;
                }
                if self.cores[c + 1..].iter().any(|o| o.running == Some(v)) {
                    self.broken
                        .push(Violation::Other(format!("{v:?} runs on two cores")));
                }
                if !matches!(self.s.vcpu_state(v), VcpuState::Running(_)) {
                    self.broken.push(Violation::Other(format!(
                        "core {c} runs {v:?}, which is {:?}",
                        self.s.vcpu_state(v)
                    )));
                }
            }
        }
    }
}

/// The platform acts on the decision `d` for the state live on `core`:
/// for a hand-off or a return to the normal world, the state goes back
/// into its context.
fn apply_lazy(
    s: &Spmc<FakePlatform>,
    cores: &mut [Core],
    broken: &mut Vec<Violation>,
    core: usize,
    d: LazyState,
) {
    match d {
        LazyState::KeepLive => {}
        LazyState::HandOff | LazyState::ToNormalWorld => {
            save(s, cores, broken, core);
            cores[core].live = None;
        }
    }
}

/// `core` saves the state live in its registers into that vCPU's context.
fn save(s: &Spmc<FakePlatform>, cores: &[Core], broken: &mut Vec<Violation>, core: usize) {
    let Some(u) = cores[core].live else {
        return;
    };
    if let Some(d) = (0..cores.len()).find(|&d| d != core && cores[d].running == Some(u)) {
        broken.push(Violation::SaveIntoHandedOn {
            core,
            vcpu: u,
            running_on: d,
        });
    }
    let freed = s
        .partitions()
        .get(u.slot.index())
        .is_none_or(|p| !p.is_alive() || u.index >= p.vcpu_count);
    // A context the destroy left to the release (`Vcpu::freed`) is still there.
    if freed && !s.contexts().is_on_core(u) {
        broken.push(Violation::SaveIntoFreed { core, vcpu: u });
    }
}

/// What exploring every interleaving found.
#[derive(Debug)]
struct Explored {
    /// Runs from boot (each ends complete or at a point already explored).
    orders: usize,
    /// Distinct points of the search reached.
    points: usize,
    /// Every answer label seen ([`World::outcomes`]).
    outcomes: std::collections::BTreeSet<&'static str>,
    /// The first violation and the order of cores that led to it.
    violation: Option<(Violation, Vec<usize>)>,
}

/// Runs every interleaving of the cores' scripts: a depth-first search
/// over the order of the cores' calls, each order replayed from boot (the
/// `Spmc` cannot be copied); at each step every core with a call to make
/// is tried, and a point reached before (see [`World::key`]) is not
/// explored again. Stops at the first violation `wanted` accepts.
fn explore(scripts: &[Vec<Request>], policy: Policy, wanted: fn(&Violation) -> bool) -> Explored {
    explore_with(scripts, policy, Order::SaveThenRelease, wanted)
}

/// [`explore`] with the platform's steps after an exit in `order`.
fn explore_with(
    scripts: &[Vec<Request>],
    policy: Policy,
    order: Order,
    wanted: fn(&Violation) -> bool,
) -> Explored {
    // The choice points of the current order: the enabled cores, and which
    // of them this order takes.
    let mut choices: Vec<(Vec<usize>, usize)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut orders = 0;
    let mut outcomes = std::collections::BTreeSet::new();
    let packages = SmallWorld::new();
    loop {
        let mut w = World::new(scripts, policy, order, &packages);
        // The steps before `fresh` replay points already explored.
        let fresh = choices.len().saturating_sub(1);
        if choices.is_empty() {
            seen.insert(w.key());
        }
        let mut order = Vec::new();
        let mut depth = 0;
        loop {
            let en = w.enabled();
            if en.is_empty() {
                break;
            }
            if depth == choices.len() {
                choices.push((en.clone(), 0));
            }
            assert_eq!(choices[depth].0, en, "the SPMC replays deterministically");
            let core = en[choices[depth].1];
            order.push(core);
            if let Some(v) = w.step(core).into_iter().find(wanted) {
                return Explored {
                    orders,
                    outcomes,
                    points: seen.len(),
                    violation: Some((v, order)),
                };
            }
            if depth >= fresh && !seen.insert(w.key()) {
                choices.truncate(depth + 1);
                break;
            }
            depth += 1;
        }
        orders += 1;
        outcomes.append(&mut w.outcomes);
        // The next order: the deepest choice with an untried core.
        while let Some((en, i)) = choices.last_mut() {
            if *i + 1 < en.len() {
                *i += 1;
                break;
            }
            choices.pop();
        }
        if choices.is_empty() {
            return Explored {
                orders,
                outcomes,
                points: seen.len(),
                violation: None,
            };
        }
    }
}

fn any(_: &Violation) -> bool {
    true
}

fn stale(v: &Violation) -> bool {
    matches!(v, Violation::StaleLoad { .. })
}

/// Two cores: core 0 runs sp2 -> sp1 -> sp2 chains, core 1 calls the UP
/// partition sp1 (which migrates between the cores).
fn two_cores() -> Vec<Vec<Request>> {
    vec![
        vec![Request::Chain(10)],
        vec![Request::Sp1(30), Request::Sp1(40)],
    ]
}

/// Three cores: chains on cores 0 and 1 (each through its own context of
/// sp2, both through sp1), core 2 calling sp1.
fn three_cores() -> Vec<Vec<Request>> {
    vec![
        vec![Request::Chain(10)],
        vec![Request::Chain(20)],
        vec![Request::Sp1(30)],
    ]
}

/// Three cores: a VM's instance of the vTEE template created and then
/// destroyed on core 2, while VM 5 calls it on core 1 and core 0 runs a
/// chain: the destroy must never free a context a core still records.
fn destroy_while_others_run() -> Vec<Vec<Request>> {
    vec![
        vec![Request::Chain(10)],
        vec![Request::Vm(5, 20)],
        vec![Request::Create(5), Request::Destroy(5)],
    ]
}

#[test]
fn every_interleaving_of_a_destroy_keeps_the_hand_off_invariants() {
    let e = explore(&destroy_while_others_run(), firmware, any);
    assert_eq!(e.violation, None);
    // 200 distinct points (measured); the orders cover each outcome.
    assert!(e.points > 150, "{e:?}");
    for o in [
        "Destroy freed",
        "Destroy RETRY",
        "Vm answered",
        "Vm refused",
    ] {
        assert!(e.outcomes.contains(o), "{o}: {e:?}");
    }
}

#[test]
fn every_interleaving_of_two_cores_keeps_the_hand_off_invariants() {
    let e = explore(&two_cores(), firmware, any);
    assert_eq!(e.violation, None);
    // 82 distinct points, 51 runs from boot (measured).
    assert!(e.points > 50 && e.orders > 40, "{e:?}");
}

#[test]
fn every_interleaving_of_three_cores_keeps_the_hand_off_invariants() {
    let e = explore(&three_cores(), firmware, any);
    assert_eq!(e.violation, None);
    assert!(e.outcomes.contains("Chain: sp1 BUSY"), "{e:?}");
    // 522 distinct points, 574 runs from boot (measured).
    assert!(e.points > 400 && e.orders > 400, "{e:?}");
}

/// The checker finds the bug issue 11 item 4 fixed: without the hand-off,
/// sp1 answers sp2 on core 0 and stays live there while core 1 picks it.
#[test]
fn without_the_hand_off_a_core_runs_a_partition_whose_state_is_live_elsewhere() {
    // The invariant itself breaks at once...
    let e = explore(&two_cores(), without_hand_off, any);
    assert!(
        matches!(
            e.violation,
            Some((Violation::LiveButNotRunning { core: 0, .. }, _))
        ),
        "{e:?}"
    );
    // ... and some order makes a second core load sp1's stale state.
    let e = explore(&two_cores(), without_hand_off, stale);
    let Some((
        Violation::StaleLoad {
            core,
            vcpu,
            live_on,
        },
        order,
    )) = e.violation
    else {
        panic!("no stale load found in {} orders", e.orders);
    };
    assert_eq!((core, live_on), (1, 0), "order {order:?}");
    assert_eq!(vcpu.index, 0, "sp1's one context");
    // Not every order shows it: the first ones (core 0's chain run to the
    // end before core 1 calls) ran clean; the search had to find it.
    assert!(e.orders > 0, "order {order:?}");
    assert!(order.contains(&1), "order {order:?}");
}

/// The checker finds a destroy that frees a context a core still records:
/// with the instance's state left live on core 0 after it answered its VM,
/// core 1 destroys the VM, and core 0's next partition run (sp1) saves the
/// instance's registers into the freed context. With the firmware's
/// decision the same scripts run clean in every order.
#[test]
fn without_the_save_on_return_a_destroy_frees_a_context_a_core_records() {
    let scripts = vec![
        vec![Request::Vm(5, 20), Request::Sp1(30)],
        vec![Request::Create(5), Request::Destroy(5)],
    ];
    let e = explore(&scripts, firmware, any);
    assert_eq!(e.violation, None);
    let e = explore(&scripts, without_save_on_return, |v| {
        matches!(v, Violation::SaveIntoFreed { .. })
    });
    let Some((Violation::SaveIntoFreed { core, .. }, order)) = e.violation else {
        panic!("no save into a freed context in {e:?}");
    };
    assert_eq!(core, 0, "order {order:?}");
}

/// Three cores: cores 0 and 1 do direct requests to their own contexts of
/// sp2 (the fast path, no manager lock), core 1 then calls the UP sp1,
/// while core 2 creates and destroys VM 5's instance (the manager lock,
/// all of the instance's vCPU locks).
fn own_contexts_while_a_third_destroys() -> Vec<Vec<Request>> {
    vec![
        vec![Request::Own(10)],
        vec![Request::Own(20), Request::Sp1(21)],
        vec![Request::Create(5), Request::Destroy(5)],
    ]
}

#[test]
fn every_interleaving_of_fast_paths_and_a_destroy_keeps_the_lock_protocol() {
    let e = explore(&own_contexts_while_a_third_destroys(), firmware, any);
    assert_eq!(e.violation, None);
    assert!(e.outcomes.contains("Destroy freed"), "{e:?}");
    // 308 distinct points, 469 runs from boot (measured).
    assert!(e.points > 250 && e.orders > 400, "{e:?}");
}

/// Two cores: core 0's chain (sp2 -> sp1 -> sp2, through the manager),
/// core 1's direct requests to the UP sp1 (the fast path).
fn chain_and_fast_path() -> Vec<Vec<Request>> {
    vec![
        vec![Request::Chain(10)],
        vec![Request::Sp1(30), Request::Own(31)],
    ]
}

#[test]
fn every_interleaving_of_a_chain_and_the_fast_path_keeps_the_lock_protocol() {
    let e = explore(&chain_and_fast_path(), firmware, any);
    assert_eq!(e.violation, None);
    assert!(e.outcomes.contains("Sp1 BUSY"), "{e:?}");
    // 109 distinct points, 77 runs from boot (measured).
    assert!(e.points > 80 && e.orders > 60, "{e:?}");
}

/// The checker finds a broken order of the platform's steps: with sp1
/// released (`Contexts::release`) before its state is saved after it
/// answered sp2 on core 0, core 1's fast path may take sp1 in between and
/// run it with the state still live on core 0.
#[test]
fn releasing_before_the_save_lets_another_core_run_stale_state() {
    let e = explore_with(
        &chain_and_fast_path(),
        firmware,
        Order::ReleaseThenSave,
        any,
    );
    assert!(
        matches!(
            e.violation,
            Some((Violation::LiveButReleased { core: 0, .. }, _))
        ),
        "{e:?}"
    );
    let e = explore_with(
        &chain_and_fast_path(),
        firmware,
        Order::ReleaseThenSave,
        stale,
    );
    let Some((Violation::StaleLoad { core, live_on, .. }, order)) = e.violation else {
        panic!("no stale load in {e:?}");
    };
    assert_eq!((core, live_on), (1, 0), "order {order:?}");
}
