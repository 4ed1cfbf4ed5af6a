//! Multicore checks (issue 11; DEN0077 v1.2 chapter 8): QEMU runs with
//! `-smp 4` and core 0 turns cores 1-3 on with PSCI CPU_ON. Each secondary
//! core runs a few instructions of assembly with its MMU off (no Rust, no
//! stack): it waits for work in its [`Slot`], makes one call (x0-x7 from the
//! slot) `repeat` times, retrying any answer FFA_ERROR(BUSY) (a UP
//! partition runs on one core at a time), counts the answers whose w0 is
//! not the expected one, stores the last answer and says it is done. Core 0
//! posts work to several cores before it waits for any, so the cores call
//! the SPMC at the same time.
//!
//! What the checks prove: each core's direct requests reach its own context
//! of the MP partition sp2 (its secondary contexts answer with their index,
//! tests/test-sp/src/secondary.rs); all cores call the UP partition sp1 at
//! once and every call is answered; a core turned off (PSCI CPU_OFF, which
//! the SPMD turns into a power management message that sp2's context on
//! that core receives) and on again is served again; FP/SIMD values a UP
//! partition holds survive its migration from core to core; FFA_RUN of an
//! MP context from another core is refused.
//!
//! Nothing here waits on a timing: a core that never answers is the stage's
//! time-out.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::ffa::{self, call, code};
use crate::report::{Outcome, Report};
use crate::{ensure, ensure_eq};
use test_protocol::{cmd, ids, status};

/// PSCI CPU_ON (SMC64).
const PSCI_CPU_ON: u64 = ffa::PSCI_CPU_ON_64;
/// PSCI CPU_OFF.
const PSCI_CPU_OFF: u64 = 0x8400_0002;
/// PSCI AFFINITY_INFO (SMC64): 0 on, 1 off, 2 on pending.
const PSCI_AFFINITY_INFO: u64 = 0xC400_0004;
/// Cores the checks use (QEMU `-smp 4`; `cargo xtask` passes it by default).
pub const CORES: usize = 4;
/// Round trips each core makes in the concurrent checks.
const ROUNDS: u64 = 40;

/// One secondary core's mailbox, shared with its MMU-off assembly (offsets
/// in the assembly below): words 0 go, 1 entries, 2 repeat, 3 expected w0,
/// 4 done, 5 bad answers, 6 BUSY retries, 8-15 the call's x0-x7, 16-23 the
/// last answer's x0-x7.
#[derive(Debug)]
#[repr(C, align(256))]
pub struct Slot([AtomicU64; 24]);

const GO: usize = 0;
const ENTRIES: usize = 1;
const REPEAT: usize = 2;
const EXPECT: usize = 3;
const DONE: usize = 4;
const BAD: usize = 5;
const BUSY: usize = 6;
const CALL: usize = 8;
const OUT: usize = 16;

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "only used to initialise SLOTS"
)]
const EMPTY: Slot = Slot([const { AtomicU64::new(0) }; 24]);
/// The mailboxes of cores 0-3 (0 unused).
pub static SLOTS: [Slot; CORES] = [EMPTY; CORES];

core::arch::global_asm!(
    r#"
.section .text.mc_secondary, "ax"
.balign 4
.global mc_secondary
// Entered by PSCI CPU_ON at NS-EL2, MMU off, x0 = this core's Slot.
mc_secondary:
    mov x19, x0
    ldr x9, [x19, #8]
    add x9, x9, #1
    str x9, [x19, #8]
    ldr x20, [x19]
    dsb sy
    sev
1:  ldr x9, [x19]
    cmp x9, x20
    b.ne 2f
    wfe
    b 1b
2:  mov x20, x9
    ldr x21, [x19, #16]
    ldr x22, [x19, #24]
    mov x23, #0
    mov x24, #0
3:  ldp x0, x1, [x19, #64]
    ldp x2, x3, [x19, #80]
    ldp x4, x5, [x19, #96]
    ldp x6, x7, [x19, #112]
    smc #0
    stp x0, x1, [x19, #128]
    stp x2, x3, [x19, #144]
    stp x4, x5, [x19, #160]
    stp x6, x7, [x19, #176]
    ldr x9, ={error32}
    cmp x0, x9
    b.ne 4f
    movn w9, #3
    cmp w2, w9
    b.ne 4f
    add x24, x24, #1
    b 3b
4:  cmp x0, x22
    cinc x23, x23, ne
    subs x21, x21, #1
    b.hi 3b
    stp x23, x24, [x19, #40]
    dsb sy
    str x20, [x19, #32]
    dsb sy
    sev
    b 1b
"#,
    error32 = const ffa::ERROR_32,
);

unsafe extern "C" {
    fn mc_secondary();
}

/// Cleans and invalidates `slot`'s cache lines: the secondary core reads
/// and writes it with its MMU off, straight to memory.
fn flush(slot: &Slot) {
    for line in 0..3 {
        let p = slot.0[line * 8].as_ptr();
        // SAFETY: DC CIVAC on our own static's address only cleans and
        // invalidates its cache line.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) p, options(nostack)) };
    }
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb sy", options(nostack)) };
}

fn read(core: usize, word: usize) -> u64 {
    flush(&SLOTS[core]);
    SLOTS[core].0[word].load(Ordering::Acquire)
}

/// Posts a call to `core`: `regs` as x0-x7, made `repeat` times, each
/// answer's w0 compared with `expect`. Returns at once.
pub fn post(core: usize, regs: [u64; 8], repeat: u64, expect: u64) {
    let s = &SLOTS[core];
    for (i, r) in regs.iter().enumerate() {
        s.0[CALL + i].store(*r, Ordering::Relaxed);
    }
    s.0[REPEAT].store(repeat, Ordering::Relaxed);
    s.0[EXPECT].store(expect, Ordering::Relaxed);
    flush(s);
    let go = s.0[GO].load(Ordering::Relaxed) + 1;
    s.0[GO].store(go, Ordering::Release);
    flush(s);
    // SAFETY: wakes the cores waiting in WFE.
    unsafe { core::arch::asm!("sev", options(nostack)) };
}

/// What a core's posted work gave: the last answer, the bad answers, the
/// BUSY retries.
#[derive(Debug)]
pub struct Done {
    /// The last answer's x0-x7.
    pub out: [u64; 8],
    /// Answers whose w0 was not the expected one.
    pub bad: u64,
    /// FFA_ERROR(BUSY) answers retried.
    pub busy: u64,
}

/// Waits for `core` to finish what was posted last (no time limit: a core
/// that never answers is the stage's time-out).
pub fn wait(core: usize) -> Done {
    let go = SLOTS[core].0[GO].load(Ordering::Relaxed);
    while read(core, DONE) != go {
        // The secondary core signals with SEV when done: under `-icount`
        // (the benchmarks) WFE hands the turn to the other cores instead of
        // counting a spin loop's instructions.
        // SAFETY: WFE only waits for an event (or returns at once).
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
    let mut out = [0; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = read(core, OUT + i);
    }
    Done {
        out,
        bad: read(core, BAD),
        busy: read(core, BUSY),
    }
}

pub fn req64(to: u16, x3: u64, x4: u64, x5: u64) -> [u64; 8] {
    [ffa::MSG_SEND_DIRECT_REQ_64, to as u64, 0, x3, x4, x5, 0, 0]
}

/// Turns `core` on at [`mc_secondary`] and waits until it runs.
pub fn power_on(core: usize) -> Outcome {
    let entries = read(core, ENTRIES);
    let slot = &SLOTS[core] as *const Slot as u64;
    let a = call(
        PSCI_CPU_ON,
        &[core as u64, mc_secondary as *const () as u64, slot],
    );
    ensure_eq!(a[0], 0, "PSCI CPU_ON (the e2e stage needs -smp 4)");
    while read(core, ENTRIES) == entries {
        core::hint::spin_loop();
    }
    Ok(())
}

/// Makes `core` call PSCI CPU_OFF and waits until PSCI says it is off.
fn power_off(core: usize) -> Outcome {
    post(core, [PSCI_CPU_OFF, 0, 0, 0, 0, 0, 0, 0], 1, 0);
    loop {
        let a = call(PSCI_AFFINITY_INFO, &[core as u64, 0]);
        ensure!(a[0] <= 2, "PSCI AFFINITY_INFO failed");
        if a[0] == 1 {
            return Ok(());
        }
        core::hint::spin_loop();
    }
}

/// Each secondary core, all at once, makes ROUNDS direct requests to sp2:
/// its own context answers (x5 = the context's index).
fn mp_own_context() -> Outcome {
    for core in 1..CORES {
        post(
            core,
            req64(ids::SP2, cmd::ECHO, 0x5000 + core as u64, 0),
            ROUNDS,
            ffa::MSG_SEND_DIRECT_RESP_64,
        );
    }
    // Core 0 meanwhile: context 0, the partition's Rust code.
    for i in 0..ROUNDS {
        let a = ffa::cmd(ids::SP2, cmd::ECHO, [i, 0, 0, 0]);
        ensure_eq!(a[0], ffa::MSG_SEND_DIRECT_RESP_64, "core 0's answer");
        ensure_eq!(a[4], i, "core 0's echo");
    }
    for core in 1..CORES {
        let d = wait(core);
        ensure_eq!(d.bad, 0, "answers that were not DIRECT_RESP_64");
        ensure_eq!(d.busy, 0, "BUSY from an MP partition's own context");
        ensure_eq!(d.out[1], (ids::SP2 as u64) << 16, "endpoints");
        ensure_eq!(d.out[3], status::OK, "status");
        ensure_eq!(d.out[4], 0x5000 + core as u64, "echo");
        ensure_eq!(d.out[5], core, "the context that answered (its index)");
    }
    Ok(())
}

/// All four cores call the UP partition sp1 at once; every call is
/// answered (BUSY while it runs on another core is retried).
fn up_all_cores() -> Outcome {
    for core in 1..CORES {
        post(
            core,
            req64(ids::SP1, cmd::ECHO, 0x6000 + core as u64, 0),
            ROUNDS,
            ffa::MSG_SEND_DIRECT_RESP_64,
        );
    }
    let mut i = 0;
    while i < ROUNDS {
        let a = ffa::cmd(ids::SP1, cmd::ECHO, [i, 0, 0, 0]);
        if code(&a) == ffa::BUSY {
            continue;
        }
        ensure_eq!(a[0], ffa::MSG_SEND_DIRECT_RESP_64, "core 0's answer");
        ensure_eq!(a[4], i, "core 0's echo");
        i += 1;
    }
    for core in 1..CORES {
        let d = wait(core);
        ensure_eq!(d.bad, 0, "answers that were not DIRECT_RESP_64");
        ensure_eq!(d.out[4], 0x6000 + core as u64, "echo");
    }
    Ok(())
}

/// sp1 (UP) gets FP/SIMD values on one core and reads them on another.
fn fp_migrates() -> Outcome {
    let mut value = 0x0123_4567_89AB_CDEFu64;
    for (set, get) in [(1usize, 3usize), (3, 2), (2, 0), (0, 1)] {
        value = value.rotate_left(8) ^ set as u64;
        if set == 0 {
            let a = ffa::cmd(ids::SP1, cmd::FP_SET, [value, 0, 0, 0]);
            ensure_eq!(a[3], status::OK, "FP_SET on core 0");
        } else {
            post(
                set,
                req64(ids::SP1, cmd::FP_SET, value, 0),
                1,
                ffa::MSG_SEND_DIRECT_RESP_64,
            );
            let d = wait(set);
            ensure_eq!(d.bad, 0, "FP_SET answer");
            ensure_eq!(d.out[3], status::OK, "FP_SET status");
        }
        let (lo, hi) = if get == 0 {
            let a = ffa::cmd(ids::SP1, cmd::FP_GET, [0; 4]);
            (a[4], a[5])
        } else {
            post(
                get,
                req64(ids::SP1, cmd::FP_GET, 0, 0),
                1,
                ffa::MSG_SEND_DIRECT_RESP_64,
            );
            let d = wait(get);
            ensure_eq!(d.bad, 0, "FP_GET answer");
            (d.out[4], d.out[5])
        };
        ensure_eq!(lo, value, "d8 after migrating");
        ensure_eq!(hi, !value, "v8's upper half after migrating");
    }
    Ok(())
}

/// Core 2 goes off (sp2's context there gets CPU_OFF) and on again, and is
/// served again: its context was initialised afresh, and it counted one
/// power message.
fn off_and_on() -> Outcome {
    power_off(2)?;
    // Meanwhile the other cores go on.
    let a = ffa::cmd(ids::SP2, cmd::ECHO, [7, 0, 0, 0]);
    ensure_eq!(a[4], 7, "core 0 while core 2 is off");
    power_on(2)?;
    post(
        2,
        req64(ids::SP2, cmd::ECHO, 0x7002, 0),
        ROUNDS,
        ffa::MSG_SEND_DIRECT_RESP_64,
    );
    post(
        3,
        req64(ids::SP1, cmd::ECHO, 0x7003, 0),
        ROUNDS,
        ffa::MSG_SEND_DIRECT_RESP_64,
    );
    let d = wait(2);
    ensure_eq!(d.bad, 0, "core 2's answers after CPU_ON");
    ensure_eq!(d.out[4], 0x7002, "echo");
    ensure_eq!(d.out[5], 2, "the context that answered");
    ensure_eq!(d.out[6], 1, "CPU_OFF messages sp2's context 2 received");
    let d = wait(3);
    ensure_eq!(d.bad, 0, "core 3's answers");
    // And once more, with a UP partition on it right after.
    power_off(2)?;
    power_on(2)?;
    post(
        2,
        req64(ids::SP1, cmd::ECHO, 0x7102, 0),
        1,
        ffa::MSG_SEND_DIRECT_RESP_64,
    );
    let d = wait(2);
    ensure_eq!(d.bad, 0, "sp1 from core 2 after its second CPU_ON");
    post(
        2,
        req64(ids::SP2, cmd::ECHO, 0x7202, 0),
        1,
        ffa::MSG_SEND_DIRECT_RESP_64,
    );
    let d = wait(2);
    ensure_eq!(d.out[6], 2, "CPU_OFF messages after two offs");
    Ok(())
}

/// FFA_RUN of sp2's context 1 from core 0 (§8.1: an MP context runs on its
/// own core only): INVALID_PARAMETERS.
fn run_wrong_core() -> Outcome {
    let a = call(ffa::RUN, &[((ids::SP2 as u64) << 16) | 1]);
    ensure_eq!(
        code(&a),
        ffa::INVALID_PARAMETERS,
        "FFA_RUN(sp2, 1) on core 0"
    );
    // On core 1 it is accepted (the context waits: it runs and waits again).
    post(
        1,
        [ffa::RUN, ((ids::SP2 as u64) << 16) | 1, 0, 0, 0, 0, 0, 0],
        1,
        ffa::MSG_WAIT,
    );
    let d = wait(1);
    ensure_eq!(
        d.bad,
        0,
        "FFA_RUN(sp2, 1) on core 1 ends in its FFA_MSG_WAIT"
    );
    Ok(())
}

/// A VM's trusted environment created and destroyed on core 0 (three
/// times) while cores 1-3 message sp2 (their own contexts), sp1 and the
/// TPM partition; then partition-to-partition chains on two cores at once
/// (sp1 -> TPM on core 1 and sp2 -> TPM on core 0) while core 2 calls the
/// TPM partition directly: the UP partition TPM migrates between cores in
/// the middle of chains (the hand-off of its state, docs/architecture.md).
fn vtee_and_chains_while_others_message() -> Outcome {
    use crate::hostile::irq::{check_ack, vm_message};
    use ffa::fwk::{VM_CREATED, VM_DESTROYED};
    let targets = [ids::SP2, ids::SP1, ids::TPM];
    for (core, to) in (1..CORES).zip(targets) {
        post(
            core,
            req64(to, cmd::ECHO, 0x8000 + core as u64, 0),
            ROUNDS,
            ffa::MSG_SEND_DIRECT_RESP_64,
        );
    }
    for _ in 0..3 {
        check_ack(&vm_message(VM_CREATED, 0x31), VM_CREATED, 0, "VM created")?;
        check_ack(
            &vm_message(VM_DESTROYED, 0x31),
            VM_DESTROYED,
            0,
            "VM destroyed",
        )?;
    }
    for core in 1..CORES {
        let d = wait(core);
        ensure_eq!(d.bad, 0, "answers while a VM came and went");
        ensure_eq!(d.out[4], 0x8000 + core as u64, "echo");
    }
    // Chains: sp1 forwards to TPM from core 1, TPM straight from core 2.
    post(
        1,
        req64(ids::SP1, cmd::FORWARD, ids::TPM as u64, 0x91),
        ROUNDS,
        ffa::MSG_SEND_DIRECT_RESP_64,
    );
    post(
        2,
        req64(ids::TPM, cmd::ECHO, 0x92, 0),
        ROUNDS,
        ffa::MSG_SEND_DIRECT_RESP_64,
    );
    for _ in 0..ROUNDS {
        let a = ffa::cmd(ids::SP2, cmd::FORWARD, [ids::TPM as u64, 0x90, 0, 0]);
        ensure_eq!(a[0], ffa::MSG_SEND_DIRECT_RESP_64, "sp2's answer on core 0");
        // The TPM partition answered, or was busy on another core.
        if a[4] == ffa::MSG_SEND_DIRECT_RESP_64 {
            ensure_eq!(a[5], 0x90, "TPM's echo through sp2");
        } else {
            ensure_eq!(a[4], ffa::ERROR_32, "sp2's call to TPM");
            ensure_eq!(a[5] as u32 as i32, ffa::BUSY, "its error");
        }
    }
    for core in [1, 2] {
        let d = wait(core);
        ensure_eq!(d.bad, 0, "answers during the chains");
    }
    // With the other cores done, the chain goes through.
    let a = ffa::cmd(ids::SP2, cmd::FORWARD, [ids::TPM as u64, 0x93, 0, 0]);
    ensure_eq!(
        a[4],
        ffa::MSG_SEND_DIRECT_RESP_64,
        "TPM through sp2 afterwards"
    );
    ensure_eq!(a[5], 0x93, "its echo");
    Ok(())
}

/// Rounds of [`mem_share_from_four_cores`].
const MEM_ROUNDS: usize = 16;

/// Memory sharing from four cores at once (issue 11 item 5). Each core has
/// its own page and, for the descriptor, its own buffer: FFA_MEM_SHARE_64
/// with x3/x4 = the address and page count of a caller-supplied buffer
/// (DEN0077 v1.2 §7.2.2; docs/memory-sharing.md "ABIs"), because the
/// normal world has one TX buffer for all its cores and four cores writing
/// it at once would race by construction. In each of [`MEM_ROUNDS`] rounds
/// the four cores share their pages with sp1 at the same time (core 0
/// while cores 1-3 run their posted call), then reclaim them at the same
/// time; so the SPMC's memory-sharing record (handles, transactions, page
/// ownership) takes sends and reclaims from four cores interleaved in
/// whatever order the lock gives. Every share and reclaim must succeed,
/// every handle must be new (the SPMC counts them), and afterwards nothing
/// is left: a reclaim of any handle, and sp1's retrieve of the last
/// round's, is INVALID_PARAMETERS, and each page can be shared again (it
/// is in no transaction).
fn mem_share_from_four_cores() -> Outcome {
    use crate::mem::kit::{
        Ask, alloc, expect_answer_error, expect_error, expect_success, handle_of, nwd_send,
        receivers, reclaim, retrieve, send_raw, still_shareable,
    };
    use test_protocol::mem::{Layout, Range, flags, func, perm};
    let mut page = [0u64; CORES];
    let mut buf = [0u64; CORES];
    let mut len = [0u64; CORES];
    for c in 0..CORES {
        page[c] = alloc(1)?;
        buf[c] = alloc(1)?;
        let to = receivers([ids::SP1], perm::RW);
        let ranges = [Range {
            addr: page[c],
            pages: 1,
        }];
        let t = nwd_send(Layout::V1_2, &to, &ranges);
        crate::mem::to_memory(&t, buf[c]);
        len[c] = t.len() as u64;
    }
    let mut all = [[0u64; CORES]; MEM_ROUNDS];
    for round in all.iter_mut() {
        for c in 1..CORES {
            post(
                c,
                [func::SHARE_64, len[c], len[c], buf[c], 1, 0, 0, 0],
                1,
                ffa::SUCCESS_32,
            );
        }
        let a = send_raw(func::SHARE_64, len[0], len[0], buf[0], 1);
        expect_success(&a, "core 0's share")?;
        round[0] = handle_of(&a);
        for (c, h) in round.iter_mut().enumerate().skip(1) {
            let d = wait(c);
            ensure_eq!(d.bad, 0, "a secondary core's share was not FFA_SUCCESS_32");
            *h = d.out[2] & 0xFFFF_FFFF | (d.out[3] & 0xFFFF_FFFF) << 32;
        }
        for (c, &h) in round.iter().enumerate().skip(1) {
            post(
                c,
                [func::RECLAIM, h & 0xFFFF_FFFF, h >> 32, 0, 0, 0, 0, 0],
                1,
                ffa::SUCCESS_32,
            );
        }
        expect_success(&reclaim(round[0], 0), "core 0's reclaim")?;
        for c in 1..CORES {
            ensure_eq!(
                wait(c).bad,
                0,
                "a secondary core's reclaim was not FFA_SUCCESS_32"
            );
        }
    }
    let flat = all.as_flattened();
    for (i, h) in flat.iter().enumerate() {
        ensure!(!flat[i + 1..].contains(h), "two shares got the same handle");
        expect_error(
            &reclaim(*h, 0),
            ffa::INVALID_PARAMETERS,
            "a reclaimed handle reclaimed again",
        )?;
    }
    // The last round's handles, asked for by the receiver: gone.
    for &h in &all[MEM_ROUNDS - 1] {
        let g = retrieve(ids::SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?;
        expect_answer_error(
            g.answer,
            ffa::INVALID_PARAMETERS,
            "sp1's retrieve of a reclaimed handle",
        )?;
    }
    for p in page {
        still_shareable(p, 1)?;
    }
    Ok(())
}

/// The multicore checks.
pub fn run(r: &mut Report) {
    r.check("mc-cores-1-3-on", || {
        for core in 1..CORES {
            power_on(core)?;
        }
        Ok(())
    });
    r.check("mc-mp-each-core-its-own-context", mp_own_context);
    r.check("mc-up-all-cores-at-once", up_all_cores);
    r.check("mc-fp-simd-survives-migration", fp_migrates);
    r.check("mc-run-mp-context-from-wrong-core", run_wrong_core);
    r.check("mc-cpu-off-then-on-served-again", off_and_on);
    r.check(
        "mc-vtee-and-chains-while-other-cores-message",
        vtee_and_chains_while_others_message,
    );
    r.check(
        "mc-mem-share-from-four-cores-at-once",
        mem_share_from_four_cores,
    );
}
