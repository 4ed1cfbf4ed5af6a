//! Cores 1-3 of the BCM2711: brought up through TF-A's PSCI CPU_ON at this
//! image's own secondary entry (`arch_aarch64::entry`, the one platform-qemu
//! registers with the SPMD: its own stack, the final stage-1 map, the
//! vectors), each then initialises its context of every MP trusted VM
//! through the core's multicore code (`Spmc::secondary_boot`, as after a
//! CPU_ON on QEMU virt) and waits for work in its mailbox:
//!
//! - a call of the VM layer's own (endpoint 0) to make on that core (the
//!   checks use it: an MP trusted VM's context n answers on core n);
//! - a general VM's vCPU to run (the VM's PSCI CPU_ON, `psci.rs`).
//!
//! A core stays on once up: a general VM's CPU_OFF stops its vCPU, not the
//! physical core, whose MP trusted-VM contexts stay ready.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use log::{debug, info, warn};
use spin::mutex::SpinMutex;

use spmc::Next;
use spmc::ffa::Regs;

use crate::layout;
use crate::platform;
use crate::psci;
use crate::users::{self, Answer};

/// The BCM2711's cores (4 Cortex-A72, MPIDR Aff0 0-3, Aff1-3 zero).
pub const CORES: usize = 4;

/// PSCI CPU_ON, SMC64 (DEN0022 §5.1.4).
const PSCI_CPU_ON_64: u64 = 0xC400_0003;
/// PSCI return codes that mean "that core is on, or coming" (SUCCESS,
/// ALREADY_ON, ON_PENDING).
const ON_OR_COMING: [i64; 3] = [0, -4, -5];

/// Set by a core once its secondary boot is over and it serves its mailbox.
static UP: [AtomicBool; CORES] = [const { AtomicBool::new(false) }; CORES];

/// How many calls of the layer each core answered (the checks' proof that
/// an answer came from that core).
static SERVED: [AtomicU64; CORES] = [const { AtomicU64::new(0) }; CORES];

/// One core's work.
struct Mailbox {
    /// A call of the VM layer's to make on this core.
    call: SpinMutex<Option<[u64; 8]>>,
    /// Its answer.
    answer: SpinMutex<Option<Answer>>,
    /// General VM `vm`'s vCPU (index = this core) to start (index `vm - 1`).
    start: [SpinMutex<Option<psci::Start>>; layout::GUESTS as usize],
}

static MAIL: [Mailbox; CORES] = [const {
    Mailbox {
        call: SpinMutex::new(None),
        answer: SpinMutex::new(None),
        start: [const { SpinMutex::new(None) }; layout::GUESTS as usize],
    }
}; CORES];

/// How a core waits for a lock another core holds: YIELD, the
/// architecture's hint that it only spins (Arm ARM C6.2 YIELD; a NOP on the
/// Cortex-A72, but QEMU's TCG moves on to the next core, instead of
/// spinning through its time slice while the holder does not run).
pub struct Yield;

impl spin::relax::RelaxStrategy for Yield {
    fn relax() {
        // SAFETY: a hint instruction without any effect on memory or registers.
        unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
    }
}

/// Wakes the cores waiting in [`wait_for_event`].
fn send_event() {
    // SAFETY: a barrier so that the mailbox write is visible, then SEV; no
    // memory or register effect beyond that.
    unsafe { core::arch::asm!("dsb ish", "sev", options(nostack, preserves_flags)) };
}

/// Waits for an event (a SEV of another core, or any of the architecture's
/// wake-ups: WFE may return early, callers re-check).
fn wait_for_event() {
    // SAFETY: WFE only waits.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack, preserves_flags)) };
}

/// True once core `core` serves its mailbox.
pub fn is_up(core: usize) -> bool {
    UP.get(core).is_some_and(|u| u.load(Ordering::Acquire))
}

/// How many layer calls core `core` answered.
pub fn served(core: usize) -> u64 {
    SERVED.get(core).map_or(0, |s| s.load(Ordering::Acquire))
}

/// Asks TF-A to turn core `core` on at this image's secondary entry
/// (DEN0022 §5.1.4 CPU_ON: target = its MPIDR affinity, entry, context 0).
/// True when the core is on or coming.
pub fn power_on(core: usize) -> bool {
    if is_up(core) {
        return true;
    }
    let mut r = Regs::default();
    r.0[0] = PSCI_CPU_ON_64;
    r.0[1] = core as u64;
    r.0[2] = arch_aarch64::entry::secondary_entry_address();
    r.0[3] = 0;
    arch_aarch64::smc::smc(&mut r);
    let code = r.0[0] as i64;
    if !ON_OR_COMING.contains(&code) {
        warn!("rpi4: TF-A CPU_ON of core {core}: {code}");
        return false;
    }
    true
}

/// The primary core, after the core booted: turns cores 1-3 on and waits
/// until each has initialised its MP trusted-VM contexts (or gives up on
/// one after [`patience`]: a hang guard, the checks then report it).
pub fn start_secondaries() {
    for core in 1..CORES {
        if power_on(core) && wait(|| is_up(core).then_some(())).is_none() {
            warn!("rpi4: core {core} did not come up");
        }
    }
}

/// Polls `f` until it gives a value, for at most about ten seconds of the
/// generic counter. Not a timing check: only a guard so that a core that
/// never answers turns into a FAIL line instead of a hang.
pub fn wait<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let freq = arch_aarch64::sysreg::read_cntfrq_el0().max(1);
    let end = arch_aarch64::sysreg::read_cntvct_el0() + 10 * freq;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if arch_aarch64::sysreg::read_cntvct_el0() > end {
            return None;
        }
        <Yield as spin::relax::RelaxStrategy>::relax();
    }
}

/// The VM layer's call `x` (endpoint 0) made on core `core`; its answer,
/// or `None` if that core is not up or does not answer.
pub fn call_on(core: usize, x: [u64; 8]) -> Option<Answer> {
    let mail = MAIL.get(core)?;
    if !is_up(core) {
        return None;
    }
    *mail.answer.lock() = None;
    *mail.call.lock() = Some(x);
    send_event();
    wait(|| mail.answer.lock().take())
}

/// Hands general VM `vm`'s vCPU (index `core`) to core `core`; false when
/// that core is neither up nor could be turned on.
pub fn start_on(core: usize, start: psci::Start) -> bool {
    let (Some(mail), Some(slot)) = (MAIL.get(core), (start.vm as usize).checked_sub(1)) else {
        return false;
    };
    let Some(cell) = mail.start.get(slot) else {
        return false;
    };
    if !power_on(core) {
        return false;
    }
    *cell.lock() = Some(start);
    send_event();
    true
}

/// A secondary core's cold boot (TF-A entered `spmc_secondary_entry` after
/// the primary's CPU_ON): its EL2 state, its MP trusted-VM contexts, then
/// its mailbox for good.
pub fn secondary(core: usize) -> ! {
    arch_aarch64::stage2::configure();
    arch_aarch64::vcpu::init_cpu();
    if core >= CORES {
        arch_aarch64::cpu::halt()
    }
    let mut regs = Regs::with_func(spmc::ffa::func::MSG_WAIT);
    let next = platform::with_core(|c| c.secondary_boot(&mut regs)).unwrap_or(Next::NormalWorld);
    platform::run(&mut regs, next);
    info!("rpi4: core {core} on: its MP trusted-VM contexts initialised");
    UP[core].store(true, Ordering::Release);
    send_event();
    serve(core)
}

/// A secondary core's mailbox loop.
fn serve(core: usize) -> ! {
    let mail = &MAIL[core];
    loop {
        let mut worked = false;
        let call = mail.call.lock().take();
        if let Some(x) = call {
            let a = users::raw(x);
            SERVED[core].fetch_add(1, Ordering::AcqRel);
            *mail.answer.lock() = Some(a);
            send_event();
            worked = true;
        }
        for cell in &mail.start {
            let start = cell.lock().take();
            if let Some(s) = start {
                debug!("rpi4: core {core}: VM {}'s vCPU {core} on", s.vm);
                psci::run_vcpu(core, s);
                worked = true;
            }
        }
        if !worked {
            wait_for_event();
        }
    }
}
