//! Interrupts at awkward moments: the normal world's EL2 physical timer
//! (CNTHP, PPI 26, a non-secure Group 1 interrupt) armed to fire during a
//! call. While a partition runs, the SPMC takes it (a non-secure interrupt
//! reaches S-EL2 as an FIQ) and must hand the core back with FFA_INTERRUPT
//! (DEN0077 v1.2 §9.2 "Non-secure interrupt handling", §13.x FFA_INTERRUPT);
//! the normal world then handles it (here: turns the timer off, which
//! lowers the level-sensitive line) and resumes the preempted vCPU with
//! FFA_RUN (§13.x), until the original call's answer arrives. While the
//! SPMC itself runs at S-EL2 the interrupt waits. The harness runs with
//! PSTATE.I set, so it never takes the interrupt itself.
//!
//! When the interrupt arrives is up to QEMU's clock: a check never depends
//! on it. Each scenario runs with the timer at several delays (one of them
//! 0, pending before the call starts) and asserts only the final answer.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use test_protocol::mem::{Range, func, perm};
use test_protocol::{cmd, ids};

use super::{Hostile, expect_error, expect_success, fail_eq, word};
use crate::ffa::{self, Regs, call};
use crate::mem::kit;
use crate::report::Outcome;

/// GICD_CTLR on QEMU virt; in the non-secure view (ARE_NS = 1) bit 1 is
/// EnableGrp1A
/// (non-secure Group 1) and bit 31 RWP (a write is still in progress).
const GICD_CTLR: usize = 0x0800_0000;
/// GICR of core 0 on QEMU virt: its SGI/PPI frame is 64 KiB after RD_base.
const GICR_SGI: usize = 0x080A_0000 + 0x1_0000;
/// GICR_ISENABLER0 (set-enable of SGIs and PPIs).
const GICR_ISENABLER0: usize = GICR_SGI + 0x100;
/// GICR_IPRIORITYR<n> (one byte per INTID).
const GICR_IPRIORITYR: usize = GICR_SGI + 0x400;
/// The non-secure EL2 physical timer's PPI on QEMU virt.
const CNTHP_INTID: usize = 26;

/// FFA_INTERRUPT answers seen so far.
static TAKEN: AtomicU64 = AtomicU64::new(0);
/// How many more times [`finish`] arms the timer again after an interrupt
/// (an interrupt storm inside one call).
static REARM: AtomicU64 = AtomicU64::new(0);
/// The delay used when re-arming, in counter ticks.
static REARM_TICKS: AtomicU64 = AtomicU64::new(0);

/// FFA_INTERRUPT answers taken so far.
pub fn interrupts_taken() -> u64 {
    TAKEN.load(Ordering::Relaxed)
}

/// Enables non-secure Group 1 at the distributor (TF-A enables only the
/// secure groups; the normal world enables its own, as Linux does), the
/// timer's PPI at the redistributor (priority 0x80, Group 1 non-secure as
/// TF-A left it) and non-secure Group 1 at the CPU interface.
pub fn init() {
    // SAFETY: QEMU virt's GICv3 distributor, mapped Device by the harness's
    // boot map; a non-secure write changes only the non-secure bits, and
    // only EnableGrp1A is added to what is there.
    let ctlr = unsafe { core::ptr::read_volatile(GICD_CTLR as *const u32) };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(GICD_CTLR as *mut u32, ctlr | 1 << 1) };
    // SAFETY: as above; reading GICD_CTLR has no side effect.
    while unsafe { core::ptr::read_volatile(GICD_CTLR as *const u32) } & (1 << 31) != 0 {}
    // SAFETY: QEMU virt's GICv3 redistributor of core 0 (the only core the
    // harness runs on), mapped Device by the harness's boot map; the byte
    // write sets only the timer PPI's priority.
    unsafe { core::ptr::write_volatile((GICR_IPRIORITYR + CNTHP_INTID) as *mut u8, 0x80) };
    // SAFETY: as above; a 1 in ISENABLER0 enables only the timer PPI.
    unsafe { core::ptr::write_volatile(GICR_ISENABLER0 as *mut u32, 1 << CNTHP_INTID) };
    // SAFETY: the GIC CPU interface's system registers at NS-EL2: system
    // register access (ICC_SRE_EL2.SRE, with Enable so EL1 keeps it), a
    // priority mask that lets every priority through, and non-secure Group 1
    // on. PSTATE.I stays set: the harness never takes the interrupt.
    unsafe {
        asm!(
            "mrs {t}, icc_sre_el2",
            "orr {t}, {t}, #0x1",
            "orr {t}, {t}, #0x8",
            "msr icc_sre_el2, {t}",
            "isb",
            "mov {t}, #0xff",
            "msr icc_pmr_el1, {t}",
            "mov {t}, #1",
            "msr icc_igrpen1_el1, {t}",
            "isb",
            t = out(reg) _,
            options(nostack),
        )
    }
}

/// Counter ticks per microsecond (CNTFRQ_EL0; at least 1).
fn ticks_per_us() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effect.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    (f / 1_000_000).max(1)
}

/// Arms the timer to fire `ticks` counter ticks from now (0: at once).
pub fn arm(ticks: u64) {
    // SAFETY: CNTHP_TVAL_EL2 and CNTHP_CTL_EL2 belong to the normal world's
    // EL2 (the harness): ENABLE = 1, IMASK = 0.
    unsafe {
        asm!(
            "msr cnthp_tval_el2, {t}",
            "msr cnthp_ctl_el2, {on}",
            "isb",
            t = in(reg) ticks,
            on = in(reg) 1u64,
            options(nostack),
        )
    }
}

/// Turns the timer off: its interrupt line goes low, so the interrupt is no
/// longer pending (it is level-sensitive and was never acknowledged).
pub fn disarm() {
    // SAFETY: as in `arm`: ENABLE = 0.
    unsafe { asm!("msr cnthp_ctl_el2, xzr", "isb", options(nostack)) }
}

/// Follows an answer to its end: while it is FFA_INTERRUPT, handle the
/// interrupt (turn the timer off, or arm it again while a storm lasts) and
/// resume the named vCPU with FFA_RUN. Gives up after 100,000 rounds.
pub fn finish(mut r: Regs) -> Regs {
    for _ in 0..100_000 {
        if r[0] != ffa::INTERRUPT_32 {
            break;
        }
        TAKEN.fetch_add(1, Ordering::Relaxed);
        let more = REARM.load(Ordering::Relaxed);
        if more > 0 {
            REARM.store(more - 1, Ordering::Relaxed);
            arm(REARM_TICKS.load(Ordering::Relaxed));
        } else {
            disarm();
        }
        r = call(ffa::RUN, &[r[1] & 0xFFFF_FFFF]);
    }
    r
}

/// Runs `f` with the timer armed `us` microseconds ahead (0: pending
/// before `f` starts), then turns it off.
pub fn with_timer<T>(us: u64, f: impl FnOnce() -> T) -> T {
    arm(us * ticks_per_us());
    let out = f();
    disarm();
    REARM.store(0, Ordering::Relaxed);
    out
}

/// A test-partition command, followed through interrupts.
fn cmd(dst: u16, c: u64, args: [u64; 4]) -> Regs {
    finish(ffa::cmd(dst, c, args))
}

/// Fails unless `r` is `dst`'s RESP_64 with status OK; returns x4-x7.
fn resp(r: &Regs, dst: u16) -> Result<[u64; 4], crate::report::Fail> {
    if r[0] != ffa::MSG_SEND_DIRECT_RESP_64 || r[1] != (dst as u64) << 16 {
        return Err(fail_eq(
            "direct response after the interrupts (w0 | w2 << 32)",
            word(r),
            ffa::MSG_SEND_DIRECT_RESP_64,
        ));
    }
    if r[3] != test_protocol::status::OK {
        return Err(fail_eq("command status", r[3], 0));
    }
    Ok([r[4], r[5], r[6], r[7]])
}

/// The delays each scenario runs with, in microseconds.
const DELAYS: [(u64, &str); 4] = [(0, "0us"), (3, "3us"), (30, "30us"), (300, "300us")];

/// Runs the interrupt checks (all but the instance boot, [`run_last`]).
pub fn run(h: &mut Hostile<'_>) {
    // Without this the other checks could pass with no interrupt ever
    // arriving: pending before the call, the interrupt is there when the
    // SPMC enters sp1, and this SPMC preempts the partition for it
    // (spmc/src/messaging.rs, `preempt_for_interrupt`).
    h.check("irq-pending-interrupt-preempts", pending_preempts);
    for (us, label) in DELAYS {
        let mut name = Name::new();
        name.set("irq-direct-echo-", label);
        h.check(name.as_str(), || echo(us));
        name.set("irq-long-request-", label);
        h.check(name.as_str(), || long_request(us));
        name.set("irq-sp-to-sp-chain-", label);
        h.check(name.as_str(), || chain(us));
        name.set("irq-run-waiting-", label);
        h.check(name.as_str(), || run_waiting(us));
        name.set("irq-indirect-message-run-", label);
        h.check(name.as_str(), || send2_run(us));
        name.set("irq-yield-then-run-", label);
        h.check(name.as_str(), || yield_run(us));
        name.set("irq-during-fragmented-share-", label);
        h.check(name.as_str(), || fragmented_share(us));
        name.set("irq-during-retrieve-relinquish-", label);
        h.check(name.as_str(), || retrieve_cycle(us));
    }
    h.check("irq-storm-inside-one-request", storm_inside_request);
}

/// Runs the check whose failure mode is a livelock: an interrupt pending
/// while the SPMC boots a new vTEE instance (VM created, §18.3).
pub fn run_last(h: &mut Hostile<'_>) {
    h.check("irq-during-instance-boot-3us", || instance_boot(3));
    h.check("irq-during-instance-boot-0us", || instance_boot(0));
}

fn pending_preempts() -> Outcome {
    let before = interrupts_taken();
    echo(0)?;
    let taken = interrupts_taken() - before;
    if taken == 0 {
        return Err(fail_eq(
            "FFA_INTERRUPTs taken for a pending interrupt",
            0,
            1,
        ));
    }
    Ok(())
}

fn echo(us: u64) -> Outcome {
    let r = with_timer(us, || cmd(ids::SP1, cmd::ECHO, [1, 2, 3, 4]));
    let got = resp(&r, ids::SP1)?;
    if got != [1, 2, 3, 4] {
        return Err(fail_eq("echoed x4", got[0], 1));
    }
    Ok(())
}

fn long_request(us: u64) -> Outcome {
    let r = with_timer(us, || cmd(ids::SP2, cmd::STORM, [ffa::ID_GET, 3000, 0, 0]));
    let [same, w0, w2, _] = resp(&r, ids::SP2)?;
    if same != 3000 || w0 != ffa::SUCCESS_32 || w2 != ids::SP2 as u64 {
        return Err(fail_eq("FFA_ID_GET answers in the storm", same, 3000));
    }
    Ok(())
}

fn chain(us: u64) -> Outcome {
    let r = with_timer(us, || {
        cmd(ids::SP1, cmd::FORWARD, [ids::SP2 as u64, 0xF00D, 0xBEEF, 0])
    });
    let [f, x2, x5, _] = resp(&r, ids::SP1)?;
    if f != ffa::MSG_SEND_DIRECT_RESP_64 || x2 != 0xF00D || x5 != 0xBEEF {
        return Err(fail_eq(
            "what sp1 got from sp2",
            f,
            ffa::MSG_SEND_DIRECT_RESP_64,
        ));
    }
    Ok(())
}

fn run_waiting(us: u64) -> Outcome {
    let r = with_timer(us, || finish(call(ffa::RUN, &[(ids::SP1 as u64) << 16])));
    if r[0] != ffa::MSG_WAIT {
        return Err(fail_eq(
            "FFA_RUN of a waiting partition",
            word(&r),
            ffa::MSG_WAIT,
        ));
    }
    Ok(())
}

/// The harness's indirect message to sp2, which takes it when run.
fn send2_run(us: u64) -> Outcome {
    let before = resp(&cmd(ids::SP2, cmd::LAST_MSG, [0; 4]), ids::SP2)?[3];
    let payload = 0x5EED_0000_u64 + us;
    ffa::tx_message(0, ids::SP2, &payload.to_le_bytes());
    let sent = call(ffa::MSG_SEND2, &[0, 0]);
    expect_success(&sent, "FFA_MSG_SEND2")?;
    let r = with_timer(us, || finish(call(ffa::RUN, &[(ids::SP2 as u64) << 16])));
    if r[0] != ffa::MSG_WAIT {
        return Err(fail_eq(
            "FFA_RUN of sp2 with a message",
            word(&r),
            ffa::MSG_WAIT,
        ));
    }
    let [_, first, size, count] = resp(&cmd(ids::SP2, cmd::LAST_MSG, [0; 4]), ids::SP2)?;
    if count != before + 1 || first != payload || size != 8 {
        return Err(fail_eq("the message sp2 took", first, payload));
    }
    Ok(())
}

fn yield_run(us: u64) -> Outcome {
    let r = with_timer(us, || {
        let y = cmd(ids::SP2, cmd::YIELD, [0; 4]);
        if y[0] != ffa::YIELD {
            return y;
        }
        finish(call(ffa::RUN, &[y[1] & 0xFFFF_FFFF]))
    });
    let [w0, ..] = resp(&r, ids::SP2)?;
    if w0 != ffa::SUCCESS_32 {
        return Err(fail_eq(
            "FFA_YIELD's return in the partition",
            w0,
            ffa::SUCCESS_32,
        ));
    }
    Ok(())
}

/// A fragmented share of 400 one-page ranges from the normal world: the
/// SPMC works at S-EL2 while the interrupt is pending.
fn fragmented_share(us: u64) -> Outcome {
    static BASE: AtomicU64 = AtomicU64::new(0);
    let mut base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        base = kit::alloc(800)?;
        BASE.store(base, Ordering::Relaxed);
    }
    let ranges = test_protocol::mem::Strided {
        base,
        pages: 1,
        stride: 2 * kit::PAGE,
        count: 400,
    };
    let to = kit::receivers([ids::SP1], perm::RW);
    let t = kit::nwd_send(test_protocol::mem::Layout::V1_2, &to, &ranges);
    let s = with_timer(us, || kit::send(func::SHARE_64, &t));
    expect_success(&s.r, "fragmented FFA_MEM_SHARE_64")?;
    let back = kit::reclaim(s.handle, 0);
    expect_success(&back, "FFA_MEM_RECLAIM")
}

/// sp1 retrieves, releases and relinquishes a page the normal world shared,
/// with the interrupt arriving somewhere in it.
fn retrieve_cycle(us: u64) -> Outcome {
    let page = kit::alloc(1)?;
    let to = kit::receivers([ids::SP1], perm::RW);
    let ranges = [Range {
        addr: page,
        pages: 1,
    }];
    let t = kit::nwd_send(test_protocol::mem::Layout::V1_2, &to, &ranges);
    let handle = kit::send_ok(func::SHARE_64, &t)?;
    let r = with_timer(us, || cmd(ids::SP1, cmd::MEM_CYCLE, [handle, 0, 1 << 3, 0]));
    let res = resp(&r, ids::SP1);
    let back = kit::reclaim(handle, 0);
    let [status, ..] = res?;
    if status != 0 {
        return Err(fail_eq("retrieve, release, relinquish in sp1", status, 0));
    }
    expect_success(&back, "FFA_MEM_RECLAIM")
}

/// Fifty interrupts, one after another, inside one long request.
fn storm_inside_request() -> Outcome {
    let tick = ticks_per_us() * 2;
    REARM_TICKS.store(tick, Ordering::Relaxed);
    REARM.store(50, Ordering::Relaxed);
    let r = with_timer(2, || cmd(ids::SP2, cmd::STORM, [ffa::ID_GET, 20_000, 0, 0]));
    let [same, ..] = resp(&r, ids::SP2)?;
    if same != 20_000 {
        return Err(fail_eq("FFA_ID_GET answers in the storm", same, 20_000));
    }
    Ok(())
}

/// VM 9 created with the interrupt pending (or arriving) while the SPMC
/// boots its instance: the boot completes or the normal world gets the core
/// back with FFA_INTERRUPT and resumes it; the acknowledgement follows.
fn instance_boot(us: u64) -> Outcome {
    let r = with_timer(us, || finish(vm_message(ffa::fwk::VM_CREATED, 9)));
    let ack = r;
    let destroyed = vm_message(ffa::fwk::VM_DESTROYED, 9);
    check_ack(&ack, ffa::fwk::VM_CREATED, 0, "VM_CREATED acknowledgement")?;
    check_ack(
        &destroyed,
        ffa::fwk::VM_DESTROYED,
        0,
        "VM_DESTROYED acknowledgement",
    )
}

/// A VM availability message (§18.3) to the vTEE template, REQ_32, from
/// endpoint 0, for `vm` in w5.
pub fn vm_message(kind: u32, vm: u64) -> Regs {
    let mut r = [0u64; 18];
    r[0] = ffa::MSG_SEND_DIRECT_REQ_32;
    r[1] = ids::VTEE_TEMPLATE as u64;
    r[2] = (ffa::fwk::FLAG | kind) as u64;
    r[3] = 0xFFFF_FFFF;
    r[4] = 0xFFFF_FFFF;
    r[5] = vm;
    baremetal::smc(&mut r);
    r
}

/// Fails unless `r` acknowledges a VM availability message of `kind` with
/// status `code` (0: success).
pub fn check_ack(r: &Regs, kind: u32, code: i32, what: &'static str) -> Outcome {
    let want_w2 = (ffa::fwk::FLAG | (kind + 1)) as u64;
    if r[0] as u32 as u64 == ffa::ERROR_32 {
        return expect_error(r, code, what);
    }
    if r[0] as u32 as u64 != ffa::MSG_SEND_DIRECT_RESP_32 & 0xFFFF_FFFF
        && r[0] as u32 as u64 != ffa::MSG_SEND_DIRECT_RESP_64 & 0xFFFF_FFFF
        || r[2] as u32 as u64 != want_w2
    {
        return Err(fail_eq(what, word(r), ffa::MSG_SEND_DIRECT_RESP_32));
    }
    if r[3] as u32 as i32 != code {
        return Err(fail_eq(what, r[3] as u32 as u64, code as u32 as u64));
    }
    Ok(())
}

/// A check name built from a prefix and a suffix, on the stack.
#[derive(Debug)]
pub struct Name {
    buf: [u8; 64],
    len: usize,
}

impl Name {
    /// An empty name.
    pub const fn new() -> Self {
        Self {
            buf: [0; 64],
            len: 0,
        }
    }

    /// `prefix` then `suffix` (cut at 64 bytes).
    pub fn set(&mut self, prefix: &str, suffix: &str) {
        self.len = 0;
        for b in prefix.bytes().chain(suffix.bytes()) {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Default for Name {
    fn default() -> Self {
        Self::new()
    }
}
