//! `nwd-hypervisor-bench`: benchmarks of the hypervisor path, BL33 at NS-EL2.
//!
//! Run under QEMU with `-icount shift=0` (one instruction per virtual
//! nanosecond, at every exception level): counter ticks converted to
//! nanoseconds with CNTFRQ_EL0 are instructions. Each figure is an average,
//! minus the cost of the same loop with a NOP in place of the call. Prints
//! `bench: <name>: <value> instructions` and powers off. A figure that
//! cannot be measured says so; nothing here fails a run.
//!
//! - `vm_to_own_tee_round_trip`: a VM's FFA_MSG_SEND_DIRECT_REQ_64 (ECHO) from
//!   NS-EL1 to 0x8010, timed in the VM: the SMC trap to the hypervisor, its
//!   proxy (sender stamped), its SMC to EL3, the SPMC, the VM's instance, and
//!   all the way back.
//! - `vm_hypervisor_trap_round_trip`: FFA_ID_GET from the VM, which the
//!   hypervisor answers itself: the cost of the trap and the world switch alone.
//! - `vm_to_own_tee_share_cycle_1page`: from VM 1, one page shared with
//!   its own TEE (FFA_MEM_SHARE_64 through the hypervisor, which copies and
//!   translates the descriptor), a direct request in which the TEE
//!   retrieves and relinquishes it (MEM_CYCLE), FFA_MEM_RECLAIM; averaged
//!   over SHARE_CYCLES cycles, timed in the VM.
//! - `vtee_create`: the hypervisor's VM created message to the SPMC until the
//!   acknowledgement (the instance made and booted).
//! - `vtee_destroy`: the VM destroyed message until the acknowledgement (the
//!   instance's memory zeroed and freed).

#![no_std]
#![no_main]

use baremetal::bench_call;
use nwd_hypervisor::ffa::{self, fwk};
use nwd_hypervisor::guest::op;
use nwd_hypervisor::{arch, say};
use test_protocol::ids;

const ITERATIONS: u64 = 2000;
const WARM_UP: u64 = 20;
/// Share cycles (as the harness's `mem_share_cycle_1page`).
const SHARE_CYCLES: u64 = 1000;
/// Create/destroy cycles.
const LIFE_CYCLES: u64 = 1000;
/// The VM ID the create/destroy cycles use (no VM behind it).
const BENCH_VM: u16 = 0x200;

fn report(name: &str, value: Option<u64>) {
    match value {
        Some(v) => say!("bench: {name}: {v} instructions"),
        None => say!("bench: {name}: failed (a call returned an unexpected answer)"),
    }
}

fn per_tick_ns() -> u64 {
    1_000_000_000 / arch::counter_frequency().max(1)
}

/// A round trip measured in VM 1 (task `op`): instructions per call.
fn in_vm(hyp: &mut nwd_hypervisor::vm::Hypervisor, op: u64) -> Option<u64> {
    let mut a = [0u64; 18];
    a[0] = ITERATIONS;
    a[1] = WARM_UP;
    let r = hyp.task(1, op, a).ok()?;
    (r[2] == 1).then(|| r[0].saturating_sub(r[1]) * per_tick_ns() / ITERATIONS)
}

/// x0-x7 of a VM availability message for BENCH_VM.
fn message(kind: u32) -> [u64; 8] {
    [
        ffa::MSG_SEND_DIRECT_REQ_32,
        ids::VTEE_TEMPLATE as u64,
        (fwk::FLAG | kind) as u64,
        0xFFFF_FFFF,
        0xFFFF_FFFF,
        BENCH_VM as u64,
        0,
        0,
    ]
}

/// `n` create/destroy cycles: ticks spent in creates and in destroys.
#[inline(never)]
fn cycles(n: u64, real: bool) -> Option<(u64, u64)> {
    let (mut create, mut destroy) = (0, 0);
    let mut good = true;
    for _ in 0..n {
        let mut c = message(fwk::VM_CREATED);
        let mut d = message(fwk::VM_DESTROYED);
        let t0 = baremetal::counter();
        bench_call(&mut c, real);
        let t1 = baremetal::counter();
        bench_call(&mut d, real);
        let t2 = baremetal::counter();
        create += t1 - t0;
        destroy += t2 - t1;
        good &= !real || (c[0] == ffa::MSG_SEND_DIRECT_RESP_32 && c[3] == 0 && d[3] == 0);
    }
    good.then_some((create, destroy))
}

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    let mut hyp = nwd_hypervisor::start("nwd-hypervisor-bench");
    say!(
        "nwd-hypervisor-bench: {ITERATIONS} round trips per figure, {LIFE_CYCLES} create/destroy cycles, counter at {} Hz",
        arch::counter_frequency()
    );
    if let Err(e) = hyp.create_vm(1) {
        say!("bench: vm_to_own_tee_round_trip: failed (VM 1 not created: {e:?})");
    } else {
        report("vm_to_own_tee_round_trip", in_vm(&mut hyp, op::BENCH_TEE));
        report(
            "vm_hypervisor_trap_round_trip",
            in_vm(&mut hyp, op::BENCH_TRAP),
        );
        let mut a = [0u64; 18];
        a[0] = SHARE_CYCLES;
        a[1] = WARM_UP;
        let share = hyp.task(1, op::BENCH_SHARE, a).ok().and_then(|r| {
            (r[2] == 1).then(|| r[0].saturating_sub(r[1]) * per_tick_ns() / SHARE_CYCLES)
        });
        report("vm_to_own_tee_share_cycle_1page", share);
    }
    let life = cycles(LIFE_CYCLES, true).zip(cycles(LIFE_CYCLES, false));
    let per = |real: u64, empty: u64| real.saturating_sub(empty) * per_tick_ns() / LIFE_CYCLES;
    report("vtee_create", life.map(|((c, _), (ec, _))| per(c, ec)));
    report("vtee_destroy", life.map(|((_, d), (_, ed))| per(d, ed)));
    baremetal::system_off()
}
