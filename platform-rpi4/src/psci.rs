//! A general VM's PSCI calls (DEN0022, PSCI 1.1), answered as a hypervisor
//! must: a VM powers its own vCPUs, never a physical core or the board.
//!
//! General VM `vm` has [`smp::CORES`] vCPUs, MPIDR affinity 0-3 (its
//! vCPU n runs on physical core n, with the VM's own stage 2): vCPU 0 is
//! the one the VM layer drives on core 0 (`guests.rs`), the others are off
//! until the VM turns them on.
//!
//! | call | answer |
//! |---|---|
//! | PSCI_VERSION, PSCI_FEATURES, MIGRATE_INFO_TYPE | TF-A's (an SMC from EL2) |
//! | CPU_ON(target, entry, ctx) | vCPU `target` starts on core `target` at EL1 at `entry`, x0 = `ctx`: SUCCESS; entry outside the VM's RAM (or unaligned): INVALID_ADDRESS; no such vCPU: INVALID_PARAMETERS; on: ALREADY_ON; starting: ON_PENDING; core unavailable: INTERNAL_FAILURE |
//! | CPU_OFF | the calling vCPU stops (never returns); from vCPU 0: DENIED |
//! | AFFINITY_INFO(target, 0) | ON / OFF / ON_PENDING from our own state; bad target or level: INVALID_PARAMETERS |
//! | SYSTEM_OFF, SYSTEM_RESET, CPU_SUSPEND, the rest | DENIED |
//!
//! A CPU_ON is never forwarded to TF-A with the VM's entry: TF-A would
//! start the physical core at EL2 there. The physical cores are this
//! image's (`smp.rs`: TF-A CPU_ON at our own secondary entry).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};

use arch_aarch64::vcpu;
use log::debug;
use spmc::ffa::Regs;
use spmc::vcpu::{Context, SCTLR_EL1_RESET, SPSR_EL1H_MASKED};
use test_protocol::ffa as f;
use test_protocol::{cmd, ids};

use crate::guests::{self, EC_HVC64, EC_SMC64};
use crate::layout;
use crate::smp::{self, CORES};
use crate::users::{self, Answer, Layer};

/// PSCI function IDs (DEN0022 §5).
pub mod id {
    pub const VERSION: u64 = 0x8400_0000;
    pub const CPU_OFF: u64 = 0x8400_0002;
    pub const CPU_ON_32: u64 = 0x8400_0003;
    pub const CPU_ON_64: u64 = 0xC400_0003;
    pub const AFFINITY_INFO_32: u64 = 0x8400_0004;
    pub const AFFINITY_INFO_64: u64 = 0xC400_0004;
    pub const MIGRATE_INFO_TYPE: u64 = 0x8400_0006;
    pub const SYSTEM_OFF: u64 = 0x8400_0008;
    pub const SYSTEM_RESET: u64 = 0x8400_0009;
    pub const FEATURES: u64 = 0x8400_000A;
}

/// PSCI return codes (DEN0022 §5.2.2) and AFFINITY_INFO's states.
pub mod ret {
    pub const SUCCESS: i64 = 0;
    pub const INVALID_PARAMETERS: i64 = -2;
    pub const DENIED: i64 = -3;
    pub const ALREADY_ON: i64 = -4;
    pub const ON_PENDING: i64 = -5;
    pub const INTERNAL_FAILURE: i64 = -6;
    pub const INVALID_ADDRESS: i64 = -9;
    /// AFFINITY_INFO: on.
    pub const ON: i64 = 0;
    /// AFFINITY_INFO: off.
    pub const OFF: i64 = 1;
    /// AFFINITY_INFO: a CPU_ON is under way.
    pub const STATE_ON_PENDING: i64 = 2;
}

/// A vCPU's power state, as PSCI sees it.
const OFF: u8 = 0;
const PENDING: u8 = 1;
const ON: u8 = 2;

/// General VM `vm`'s vCPU n's state (index `[vm - 1][n]`; vCPU 0 is on
/// whenever its VM runs and is not kept here).
static STATE: [[AtomicU8; CORES]; layout::GUESTS as usize] =
    [const { [const { AtomicU8::new(OFF) }; CORES] }; layout::GUESTS as usize];

fn state(vm: u16, index: usize) -> Option<&'static AtomicU8> {
    STATE.get((vm as usize).checked_sub(1)?)?.get(index)
}

/// True when any of VM `vm`'s vCPUs 1-3 is on or starting (it still uses
/// the VM's stage 2 and RAM on another core).
pub fn any_secondary_on(vm: u16) -> bool {
    (1..CORES).any(|n| state(vm, n).is_some_and(|s| s.load(Ordering::Acquire) != OFF))
}

/// A vCPU to start on its core.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    /// Its VM.
    pub vm: u16,
    /// The VM's stage-2 root (VTTBR_EL2 with its VMID).
    pub vttbr: u64,
    /// Where it starts (an IPA in the VM's RAM).
    pub entry: u64,
    /// Its x0.
    pub arg: u64,
}

fn answer(code: i64) -> Answer {
    [code as u64, 0, 0, 0, 0, 0, 0, 0]
}

/// The vCPU index a PSCI target MPIDR names (DEN0022 §5.1.4: the affinity
/// fields; ours are Aff0 = the index, Aff1-3 zero), if the VM has it.
fn target_index(target: u64) -> Option<usize> {
    (target & !0xff == 0 && (target as usize) < CORES).then_some(target as usize)
}

/// General VM `vm`'s PSCI call `x` from its vCPU `caller` (whose stage-2
/// root is `vttbr`): the answer in x0 (x0-x7).
pub fn call(vm: u16, caller: usize, vttbr: u64, x: [u64; 8]) -> Answer {
    let fid = x[0] & 0xFFFF_FFFF;
    // SMC32 calls take 32-bit arguments (DEN0028 §2.5).
    let arg = |i: usize| {
        if fid >> 30 & 1 == 0 {
            x[i] & 0xFFFF_FFFF
        } else {
            x[i]
        }
    };
    match fid {
        id::VERSION | id::FEATURES | id::MIGRATE_INFO_TYPE => {
            let mut r = Regs::default();
            r.0[..4].copy_from_slice(&x[..4]);
            arch_aarch64::smc::smc(&mut r);
            let mut a = [0; 8];
            a[..4].copy_from_slice(&r.0[..4]);
            a
        }
        id::CPU_ON_32 | id::CPU_ON_64 => answer(cpu_on(vm, vttbr, arg(1), arg(2), arg(3))),
        id::AFFINITY_INFO_32 | id::AFFINITY_INFO_64 => answer(affinity_info(vm, arg(1), arg(2))),
        // vCPU 0 is the layer's to run; the others stop in `run_vcpu`.
        id::CPU_OFF => answer(ret::DENIED),
        // Powering the board or a physical core is not one user's to
        // decide; suspending would idle a core other users' vCPUs run on.
        _ => {
            debug!("rpi4: VM {vm} vCPU {caller}: PSCI {fid:#x} denied");
            answer(ret::DENIED)
        }
    }
}

/// CPU_ON (DEN0022 §5.1.4) of VM `vm`'s vCPU `target` at `entry`.
fn cpu_on(vm: u16, vttbr: u64, target: u64, entry: u64, arg: u64) -> i64 {
    let Some(n) = target_index(target) else {
        return ret::INVALID_PARAMETERS;
    };
    let ram = guests::ram(vm);
    if !entry.is_multiple_of(4) || !(ram..ram + layout::GUEST_RAM_SIZE).contains(&entry) {
        return ret::INVALID_ADDRESS;
    }
    if n == 0 {
        return ret::ALREADY_ON;
    }
    let Some(s) = state(vm, n) else {
        return ret::INVALID_PARAMETERS;
    };
    match s.compare_exchange(OFF, PENDING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(PENDING) => return ret::ON_PENDING,
        Err(_) => return ret::ALREADY_ON,
    }
    let start = Start {
        vm,
        vttbr,
        entry,
        arg,
    };
    if smp::start_on(n, start) {
        ret::SUCCESS
    } else {
        s.store(OFF, Ordering::Release);
        ret::INTERNAL_FAILURE
    }
}

/// AFFINITY_INFO (DEN0022 §5.1.5) from our own state: only level 0.
fn affinity_info(vm: u16, target: u64, level: u64) -> i64 {
    let Some(n) = target_index(target) else {
        return ret::INVALID_PARAMETERS;
    };
    if level != 0 {
        return ret::INVALID_PARAMETERS;
    }
    if n == 0 {
        return ret::ON;
    }
    match state(vm, n).map(|s| s.load(Ordering::Acquire)) {
        Some(ON) => ret::ON,
        Some(PENDING) => ret::STATE_ON_PENDING,
        Some(_) => ret::OFF,
        None => ret::INVALID_PARAMETERS,
    }
}

/// The FF-A and PSCI calls of a VM's vCPU 1-3 (on its own core): the
/// layer's stamping for direct requests (`users::vm_request`), its own ID
/// for FFA_ID_GET, PSCI as above. Memory sharing and RX/TX buffers are
/// vCPU 0's (the layer keeps them on core 0): NOT_SUPPORTED here.
fn trapped(vm: u16, index: usize, vttbr: u64, x: [u64; 8]) -> Answer {
    let fid = x[0] & 0xFFFF_FFFF;
    match fid {
        f::ID_GET => [f::SUCCESS_32, 0, vm as u64, 0, 0, 0, 0, 0],
        f::VERSION | f::FEATURES => users::raw(x),
        f::MSG_SEND_DIRECT_REQ_32 | f::MSG_SEND_DIRECT_REQ_64 => {
            let mut x = x;
            x[0] = fid;
            users::vm_request(vm, x)
        }
        0x8400_0000..=0x8400_001F | 0xC400_0000..=0xC400_001F => call(vm, index, vttbr, x),
        fid if fid >> 24 == 0x84 || fid >> 24 == 0xC4 => [
            f::ERROR_32,
            0,
            f::NOT_SUPPORTED as u32 as u64,
            0,
            0,
            0,
            0,
            0,
        ],
        _ => [0xFFFF_FFFF, 0, 0, 0, 0, 0, 0, 0],
    }
}

/// Runs VM `s.vm`'s vCPU `index` on this core (`index`) until it turns
/// itself off or takes a fault (then it is off; the VM may turn it on
/// again). Its own context, the VM's stage 2.
pub fn run_vcpu(index: usize, s: Start) {
    let Some(st) = state(s.vm, index) else {
        return;
    };
    let mut ctx = Box::new(Context::default());
    ctx.vttbr = s.vttbr;
    ctx.el1.sctlr = SCTLR_EL1_RESET;
    ctx.vmpidr = spmc::vcpu::vmpidr(index as u16);
    ctx.pc = s.entry;
    ctx.pstate = SPSR_EL1H_MASKED;
    ctx.x[0] = s.arg;
    st.store(ON, Ordering::Release);
    loop {
        vcpu::return_to_normal_world();
        // SAFETY: the context is this vCPU's alone (boxed, not moved or
        // freed while it runs, on this core only: its state is PENDING/ON
        // so no other CPU_ON starts it); its stage-2 root is the VM's,
        // which maps only the VM's RAM and stays alive while any of its
        // vCPUs is on (`Guest::destroy` refuses otherwise).
        unsafe { vcpu::run(&mut ctx) };
        vcpu::return_to_normal_world();
        if ctx.exit.vector != 0 {
            continue;
        }
        let esr = ctx.exit.esr;
        let ec = (esr >> 26) & 0x3f;
        if ec != EC_HVC64 && ec != EC_SMC64 {
            debug!(
                "rpi4: VM {} vCPU {index}: exit ESR {esr:#x} at {:#x}: off",
                s.vm, ctx.pc
            );
            break;
        }
        let mut x = [0; 8];
        x.copy_from_slice(&ctx.x[..8]);
        if x[0] & 0xFFFF_FFFF == id::CPU_OFF {
            debug!("rpi4: VM {} vCPU {index}: CPU_OFF", s.vm);
            break;
        }
        let a = trapped(s.vm, index, s.vttbr, x);
        ctx.x[..8].copy_from_slice(&a);
        if ec == EC_SMC64 {
            // A trapped SMC returns to the SMC itself (Arm ARM D1.11.2).
            ctx.pc += 4;
        }
    }
    drop(ctx);
    st.store(OFF, Ordering::Release);
}

// The program a VM's vCPU 1-3 runs in the checks, entered by CPU_ON with
// x0 = a block in the VM's RAM: `rounds` times the request in the block's
// x0-x7 (HVC), retried on FFA_ERROR(BUSY) (the VM's UP trusted VM may be
// busy with vCPU 0 on core 0); it counts the answers that are a direct
// response to the VM (its ID in w1[15:0]) echoing x4, marks the block
// done, waits for `go`, then turns itself off (PSCI CPU_OFF).
core::arch::global_asm!(
    r#"
.section .rodata.rpi4_vcpu_code, "a"
.balign 8
.global rpi4_vcpu_code
rpi4_vcpu_code:
    mov x19, x0
    ldr x20, [x19, #{rounds}]
    mov x21, #0
    mov x22, #0
1:  cbz x20, 5f
    ldp x0, x1, [x19]
    ldp x2, x3, [x19, #16]
    ldp x4, x5, [x19, #32]
    ldp x6, x7, [x19, #48]
    hvc #0
    stp x0, x1, [x19, #{last}]
    stp x2, x3, [x19, #{last} + 16]
    stp x4, x5, [x19, #{last} + 32]
    stp x6, x7, [x19, #{last} + 48]
    movz x9, #0x0060
    movk x9, #0x8400, lsl #16
    cmp x0, x9
    b.ne 2f
    cmn w2, #4
    b.ne 2f
    add x22, x22, #1
    b 1b
2:  movz x9, #0x0070
    movk x9, #0xC400, lsl #16
    cmp x0, x9
    b.ne 3f
    ldr x10, [x19, #{vm}]
    and x11, x1, #0xffff
    cmp x11, x10
    b.ne 3f
    ldr x10, [x19, #32]
    cmp x4, x10
    b.ne 3f
    add x21, x21, #1
3:  sub x20, x20, #1
    b 1b
5:  str x21, [x19, #{good}]
    str x22, [x19, #{busy}]
    mov x9, #1
    str x9, [x19, #{done}]
6:  ldr x9, [x19, #{go}]
    cbz x9, 6b
    movz x0, #0x0002
    movk x0, #0x8400, lsl #16
    hvc #0
    b 6b
.balign 8
.global rpi4_vcpu_code_end
rpi4_vcpu_code_end:
"#,
    rounds = const block::ROUNDS,
    vm = const block::VM,
    good = const block::GOOD,
    busy = const block::BUSY,
    done = const block::DONE,
    go = const block::GO,
    last = const block::LAST,
);

unsafe extern "C" {
    static rpi4_vcpu_code: u8;
    static rpi4_vcpu_code_end: u8;
}

/// The vCPU program's bytes.
fn vcpu_code() -> &'static [u8] {
    let start = &raw const rpi4_vcpu_code;
    let end = &raw const rpi4_vcpu_code_end;
    // SAFETY: both symbols are in the same rodata section, defined above,
    // start before end; the bytes are never written.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// The vCPU program's block (byte offsets).
mod block {
    /// x0-x7 of the request: offset 0.
    pub const ROUNDS: usize = 64;
    /// The VM's ID, which the answers must name as their receiver.
    pub const VM: usize = 72;
    pub const GOOD: usize = 80;
    pub const BUSY: usize = 88;
    pub const DONE: usize = 96;
    pub const GO: usize = 104;
    /// x0-x7 of the last answer.
    pub const LAST: usize = 112;
}

/// Where the checks put the vCPU program and its block in a VM's first
/// page (after the layer's puppet program, before anything the VM shares:
/// its first page is never lent or shared).
const CODE_AT: u64 = 0x800;
const BLOCK_AT: u64 = 0xC00;

/// Rounds each side makes in the concurrency check.
const ROUNDS: u64 = 32;

fn rd(m: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&m[at..at + 8]);
    u64::from_le_bytes(b)
}

fn wr(m: &mut [u8], at: usize, v: u64) {
    m[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Reads (and with `go`, sets `go` in) VM `vm`'s block.
fn block_of(vm: u16, f: impl FnOnce(&mut [u8]) -> u64) -> Result<u64, String> {
    guests::with_ram(guests::ram(vm), 0x1000, |m| f(&mut m[BLOCK_AT as usize..]))
}

fn psci_code(a: &Answer) -> i64 {
    a[0] as i64
}

fn expect(what: &str, a: &Answer, code: i64) -> Result<(), String> {
    if psci_code(a) == code {
        Ok(())
    } else {
        Err(format!("{what}: expected {code}, got {}", psci_code(a)))
    }
}

/// The checks of this file and `smp.rs` (name, outcome), run by the
/// per-user checks once the VMs are created (`users::run`).
pub fn checks(l: &mut Layer) -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::new();
    out.push((
        String::from("rpi4-cores-1-3-up"),
        (1..CORES).all(smp::is_up).then_some(()).ok_or_else(|| {
            format!(
                "cores 1-3 up: {:?}",
                (1..CORES).map(smp::is_up).collect::<Vec<_>>()
            )
        }),
    ));
    for core in 0..CORES {
        out.push((
            format!("rpi4-sp2-vcpu{core}-answers-on-core{core}"),
            mp_context_answers(core),
        ));
    }
    out.push((
        String::from("rpi4-vm2-cpu-on-bad-target"),
        (|| {
            let ram = guests::ram(2);
            for t in [CORES as u64, 0x100, 0x1_0000, 0x1_0000_0000, 0x8000_0001] {
                let a = l.vm_call(2, [id::CPU_ON_64, t, ram, 0, 0, 0, 0, 0]);
                expect(&format!("target {t:#x}"), &a, ret::INVALID_PARAMETERS)?;
            }
            let a = l.vm_call(2, [id::AFFINITY_INFO_64, 7, 0, 0, 0, 0, 0, 0]);
            expect("AFFINITY_INFO(7)", &a, ret::INVALID_PARAMETERS)
        })(),
    ));
    out.push((
        String::from("rpi4-vm2-cpu-on-entry-outside-ram"),
        (|| {
            let ram = guests::ram(2);
            for e in [
                guests::ram(1),
                ram + layout::GUEST_RAM_SIZE,
                ram - 4,
                0x8_0000,
                layout::BOARD.secure_managed.0,
                ram + 2,
            ] {
                let a = l.vm_call(2, [id::CPU_ON_32, 1, e, 0, 0, 0, 0, 0]);
                expect(&format!("entry {e:#x}"), &a, ret::INVALID_ADDRESS)?;
            }
            Ok(())
        })(),
    ));
    out.push((
        String::from("rpi4-vm2-cpu-on-self-already-on"),
        (|| {
            let a = l.vm_call(2, [id::CPU_ON_64, 0, guests::ram(2), 0, 0, 0, 0, 0]);
            expect("CPU_ON(0)", &a, ret::ALREADY_ON)?;
            let a = l.vm_call(2, [id::CPU_OFF, 0, 0, 0, 0, 0, 0, 0]);
            expect("CPU_OFF of vCPU 0", &a, ret::DENIED)
        })(),
    ));
    out.push((
        String::from("rpi4-vm2-system-off-reset-denied"),
        (|| {
            for fid in [id::SYSTEM_OFF, id::SYSTEM_RESET] {
                let a = l.vm_call(2, [fid, 0, 0, 0, 0, 0, 0, 0]);
                expect(&format!("{fid:#x}"), &a, ret::DENIED)?;
            }
            Ok(())
        })(),
    ));
    out.extend(second_vcpu(l));
    out
}

/// Endpoint 0's WHOAMI to sp2 (MP) made on core `core`: its context
/// `core` answers (with the index it was started with on that core, as
/// `Spmc::secondary_boot` started it there).
fn mp_context_answers(core: usize) -> Result<(), String> {
    let x = [
        f::MSG_SEND_DIRECT_REQ_64,
        ids::SP2 as u64,
        0,
        cmd::WHOAMI,
        0,
        0,
        0,
        0,
    ];
    let before = smp::served(core);
    let a = if core == 0 {
        users::raw(x)
    } else {
        let a = smp::call_on(core, x).ok_or_else(|| format!("core {core} did not answer"))?;
        if smp::served(core) <= before {
            return Err(format!("core {core} did not serve it"));
        }
        a
    };
    // Context 0 runs test-sp's Rust (WHOAMI: x7 = the index it was told);
    // the others answer any request with x5 = their index
    // (tests/test-sp/src/secondary.rs).
    let index = if core == 0 { a[7] } else { a[5] };
    if a[0] == f::MSG_SEND_DIRECT_RESP_64
        && a[1] >> 16 & 0xFFFF == ids::SP2 as u64
        && a[3] == test_protocol::status::OK
        && index == core as u64
    {
        Ok(())
    } else {
        Err(format!("answer {:#x?}", &a[..8]))
    }
}

/// Puts the vCPU program and its block (`rounds` ECHO requests to the
/// VM's own trusted VM; with `go`, CPU_OFF right after them) into VM
/// `vm`'s first page.
fn prepare(vm: u16, rounds: u64, go: bool) -> Result<(), String> {
    guests::with_ram(guests::ram(vm), 0x1000, |m| {
        let code = vcpu_code();
        m[CODE_AT as usize..CODE_AT as usize + code.len()].copy_from_slice(code);
        let b = &mut m[BLOCK_AT as usize..];
        b[..0x100].fill(0);
        let req = [
            f::MSG_SEND_DIRECT_REQ_64,
            ids::VTEE_TEMPLATE as u64,
            0,
            cmd::ECHO,
            0x5ec0_0000 | vm as u64,
            2,
            3,
            4,
        ];
        for (i, v) in req.iter().enumerate() {
            wr(b, i * 8, *v);
        }
        wr(b, block::ROUNDS, rounds);
        wr(b, block::VM, vm as u64);
        wr(b, block::GO, go as u64);
    })
}

/// VM `vm`'s vCPU 0 turns its vCPU `index` on at the vCPU program.
fn turn_on(l: &mut Layer, vm: u16, index: u64) -> Result<(), String> {
    let ram = guests::ram(vm);
    let a = l.vm_call(
        vm,
        [
            id::CPU_ON_64,
            index,
            ram + CODE_AT,
            ram + BLOCK_AT,
            0,
            0,
            0,
            0,
        ],
    );
    expect(&format!("CPU_ON({index})"), &a, ret::SUCCESS)
}

/// Waits until VM `vm`'s vCPU program marked its block done (bounded by
/// [`smp::wait`]'s hang guard).
fn wait_done(vm: u16) -> Result<(), String> {
    smp::wait(|| {
        block_of(vm, |b| rd(b, block::DONE))
            .ok()
            .filter(|d| *d == 1)
    })
    .map(|_| ())
    .ok_or_else(|| format!("VM {vm}'s vCPU did not finish its rounds"))
}

/// (answers addressed to the VM, BUSY retries, x0 and x2 of the last
/// answer).
fn results(vm: u16) -> Result<(u64, u64, [u64; 2]), String> {
    guests::with_ram(guests::ram(vm), 0x1000, |m| {
        let b = &m[BLOCK_AT as usize..];
        (
            rd(b, block::GOOD),
            rd(b, block::BUSY),
            [rd(b, block::LAST), rd(b, block::LAST + 16)],
        )
    })
}

/// Lets VM `vm`'s vCPU program go on to its CPU_OFF and waits until its
/// vCPUs 1-3 are off.
fn turn_off(vm: u16) -> Result<(), String> {
    block_of(vm, |b| {
        wr(b, block::GO, 1);
        0
    })?;
    smp::wait(|| (!any_secondary_on(vm)).then_some(()))
        .ok_or_else(|| format!("VM {vm}'s vCPU did not turn off"))
}

/// VM `vm`'s vCPU 0 (core 0) makes `rounds` ECHO requests to its own
/// trusted VM, retried on BUSY; each answer must be addressed to `vm`.
fn rounds_on_core0(l: &mut Layer, vm: u16, rounds: u64) -> Result<(), String> {
    for i in 0..rounds {
        let a = loop {
            let a = l.vm_call(
                vm,
                [
                    f::MSG_SEND_DIRECT_REQ_64,
                    ids::VTEE_TEMPLATE as u64,
                    0,
                    cmd::ECHO,
                    i,
                    0,
                    0,
                    0,
                ],
            );
            if !(a[0] == f::ERROR_32 && a[2] as u32 as i32 == f::BUSY) {
                break a;
            }
        };
        if !(a[0] == f::MSG_SEND_DIRECT_RESP_64 && a[1] & 0xFFFF == vm as u64 && a[4] == i) {
            return Err(format!("vCPU 0, round {i}: {:#x?}", &a[..5]));
        }
    }
    Ok(())
}

/// VM 1 turns its vCPU 1 on (core 1); vCPU 1 and vCPU 0 (core 0) each make
/// [`ROUNDS`] ECHO requests to the VM's own trusted VM, every answer
/// addressed to VM 1 (the ID the layer stamps on both cores); then
/// ALREADY_ON, AFFINITY_INFO ON, CPU_OFF and AFFINITY_INFO OFF.
fn second_vcpu(l: &mut Layer) -> Vec<(String, Result<(), String>)> {
    let vm = 1u16;
    let mut out = Vec::new();
    let on = prepare(vm, ROUNDS, false).and_then(|()| turn_on(l, vm, 1));
    let started = on.is_ok();
    out.push((String::from("rpi4-vm1-cpu-on-vcpu1"), on));
    if !started {
        return out;
    }
    // vCPU 0 does the same on core 0 meanwhile.
    let core0 = rounds_on_core0(l, vm, ROUNDS);
    out.push((
        String::from("rpi4-vm1-vcpus-on-cores-0-1-reach-own-tee"),
        core0.and_then(|()| {
            wait_done(vm)?;
            let (good, busy, last) = results(vm)?;
            debug!("rpi4: VM 1 vCPU 1: {good} answers, {busy} BUSY retried");
            if good == ROUNDS {
                Ok(())
            } else {
                Err(format!(
                    "vCPU 1: {good} of {ROUNDS} answers to VM 1 (last x0, x2 {last:x?})"
                ))
            }
        }),
    ));
    out.push((
        String::from("rpi4-vm1-cpu-on-already-on"),
        (|| {
            let ram = guests::ram(vm);
            let a = l.vm_call(vm, [id::CPU_ON_64, 1, ram + CODE_AT, 0, 0, 0, 0, 0]);
            expect("CPU_ON(1) again", &a, ret::ALREADY_ON)?;
            let a = l.vm_call(vm, [id::AFFINITY_INFO_64, 1, 0, 0, 0, 0, 0, 0]);
            expect("AFFINITY_INFO(1)", &a, ret::ON)?;
            let a = l.vm_call(vm, [id::AFFINITY_INFO_32, 0, 0, 0, 0, 0, 0, 0]);
            expect("AFFINITY_INFO(0)", &a, ret::ON)
        })(),
    ));
    out.push((
        String::from("rpi4-vm1-cpu-off-vcpu1"),
        turn_off(vm).and_then(|()| {
            let a = l.vm_call(vm, [id::AFFINITY_INFO_64, 1, 0, 0, 0, 0, 0, 0]);
            expect("AFFINITY_INFO(1) after CPU_OFF", &a, ret::OFF)
        }),
    ));
    out
}

/// Round trips in the four-core figure, per core.
const BENCH_ROUNDS: u64 = 200;

/// The VM-to-own-trusted-VM round trip from four cores at once: VM 1's
/// vCPU 0 on core 0 and VM n's vCPU n-1 on core n-1 (n = 2-4), each
/// [`BENCH_ROUNDS`] ECHOs to its own trusted VM, on the generic counter
/// from the first CPU_ON to the last vCPU's CPU_OFF, per round. Under
/// `-icount shift=0` QEMU runs the cores one after the other on one
/// instruction clock, so the figure is the instructions all four cores
/// spend per round (`cargo xtask bench`). A figure, never a check.
pub fn bench_4cores(l: &mut Layer) {
    let freq = arch_aarch64::sysreg::read_cntfrq_el0().max(1);
    let others = [2u16, 3, 4];
    for vm in others {
        // Each turns itself off after its rounds: core 0 then waits on
        // the vCPUs' power state, without touching their RAM (each look
        // into it is a stage-1 map and unmap, a TLB invalidation every
        // core would pay for in the figure).
        if let Err(why) = prepare(vm, BENCH_ROUNDS, true) {
            log::warn!("rpi4: bench: VM {vm}: {why}");
            return;
        }
    }
    let start = arch_aarch64::sysreg::read_cntvct_el0();
    let mut fine = true;
    for vm in others {
        if let Err(why) = turn_on(l, vm, vm as u64 - 1) {
            log::warn!("rpi4: bench: VM {vm}: {why}");
            fine = false;
        }
    }
    if let Err(why) = rounds_on_core0(l, 1, BENCH_ROUNDS) {
        log::warn!("rpi4: bench: VM 1: {why}");
        fine = false;
    }
    if smp::wait(|| others.iter().all(|vm| !any_secondary_on(*vm)).then_some(())).is_none() {
        log::warn!("rpi4: bench: a vCPU did not finish");
        fine = false;
    }
    let ticks = arch_aarch64::sysreg::read_cntvct_el0() - start;
    for vm in others {
        match results(vm) {
            Ok((good, busy, _)) if good == BENCH_ROUNDS => {
                log::info!("rpi4: bench: VM {vm}: {good} answers, {busy} BUSY retried");
            }
            other => {
                log::warn!("rpi4: bench: VM {vm}: {other:?}");
                fine = false;
            }
        }
    }
    if !fine {
        return;
    }
    let per = ticks * 1_000_000_000 / freq / BENCH_ROUNDS;
    log::info!(
        "rpi4: {ticks} counter ticks at {freq} Hz for {BENCH_ROUNDS} round trips on each of 4 cores"
    );
    arch_aarch64::console::line(format_args!(
        "bench: rpi4_vm_to_own_tee_round_trip_4cores: {per} instructions"
    ));
}
