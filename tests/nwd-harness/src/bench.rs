//! The benchmark image: BL33 at NS-EL2 that times FF-A round trips through
//! the SPMD and the SPMC.
//!
//! Run under QEMU with `-icount shift=0`: guest time then advances one
//! nanosecond per instruction, at every exception level, so the virtual
//! counter converted to nanoseconds counts the instructions executed between
//! two reads. Each figure is the average over `ITERATIONS` calls, minus the
//! cost of an identical loop whose call instruction is a NOP. It prints
//! `bench: <name>: <value> instructions` and powers off.
//!
//! The memory-sharing figures (`mem_share_cycle_<n>pages`) time one whole
//! cycle from the normal world to sp1: FFA_MEM_SHARE_64 of n pages (the
//! descriptor stays in TX), one direct request that makes sp1 retrieve and
//! relinquish them (`cmd::MEM_CYCLE`), FFA_MEM_RECLAIM; averaged over
//! `MEM_ITERATIONS` cycles, minus the same loop with NOPs for the calls.

#![no_std]
#![no_main]

use core::fmt::Write;
use core::panic::PanicInfo;

use nwd_harness::ffa;
use nwd_harness::mem::kit;
use nwd_harness::report::console;
use test_protocol::mem::{Layout, Range, Receiver, Transaction, flags, func, perm};
use test_protocol::{cmd, ids, status};

const ITERATIONS: u64 = 2000;
const WARM_UP: u64 = 20;
/// Cycles per memory-sharing figure.
const MEM_ITERATIONS: u64 = 1000;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let _ = writeln!(console(), "bench: panic: {info}");
    baremetal::system_off()
}

/// Counter frequency (CNTFRQ_EL0).
fn frequency() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effect.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f
}

/// Runs `n` calls of `make()` and returns the elapsed counter ticks.
#[inline(never)]
fn timed(
    n: u64,
    real: bool,
    make: impl Fn() -> [u64; 8],
    check: impl Fn(&[u64; 8]) -> bool,
) -> Option<u64> {
    let t0 = baremetal::counter();
    let mut ok = true;
    for _ in 0..n {
        let mut r = make();
        baremetal::bench_call(&mut r, real);
        ok &= !real || check(&r);
    }
    let t1 = baremetal::counter();
    ok.then_some(t1 - t0)
}

/// Average instructions per call, loop overhead subtracted.
fn measure(
    make: impl Fn() -> [u64; 8] + Copy,
    check: impl Fn(&[u64; 8]) -> bool + Copy,
) -> Option<u64> {
    timed(WARM_UP, true, make, check)?;
    let real = timed(ITERATIONS, true, make, check)?;
    let empty = timed(ITERATIONS, false, make, check)?;
    let per_tick_ns = 1_000_000_000 / frequency().max(1);
    Some(real.saturating_sub(empty) * per_tick_ns / ITERATIONS)
}

/// One share / retrieve+relinquish / reclaim cycle with the descriptor of
/// `len` bytes already in TX; `real` false replaces each SMC with a NOP.
/// Returns whether every answer was the expected one.
#[inline(always)]
fn mem_cycle_once(len: u64, real: bool) -> bool {
    let mut r = [func::SHARE_64, len, len, 0, 0, 0, 0, 0];
    baremetal::bench_call(&mut r, real);
    let h = if real {
        r[2] & 0xFFFF_FFFF | (r[3] & 0xFFFF_FFFF) << 32
    } else {
        0
    };
    let shared = !real || r[0] as u32 as u64 | 0x4000_0000 == ffa::SUCCESS_64 & 0xFFFF_FFFF;
    let mut q = [
        ffa::MSG_SEND_DIRECT_REQ_64,
        ids::SP1 as u64,
        0,
        cmd::MEM_CYCLE,
        h,
        0,
        flags::TYPE_SHARE as u64,
        0,
    ];
    baremetal::bench_call(&mut q, real);
    let cycled = !real || (q[0] == ffa::MSG_SEND_DIRECT_RESP_64 && q[3] == status::OK && q[4] == 0);
    let mut c = [func::RECLAIM, h & 0xFFFF_FFFF, h >> 32, 0, 0, 0, 0, 0];
    baremetal::bench_call(&mut c, real);
    let reclaimed = !real || c[0] as u32 as u64 | 0x4000_0000 == ffa::SUCCESS_64 & 0xFFFF_FFFF;
    shared && cycled && reclaimed
}

/// Runs `n` cycles; the elapsed ticks, or `None` at the first failed one.
#[inline(never)]
fn mem_timed(n: u64, len: u64, real: bool) -> Option<u64> {
    let t0 = baremetal::counter();
    for _ in 0..n {
        if !mem_cycle_once(len, real) {
            return None;
        }
    }
    Some(baremetal::counter() - t0)
}

/// One notification round trip: sp1 sets bit 0 of endpoint 0 (a direct
/// request with `cmd::NOTIFY`, FFA_NOTIFICATION_SET inside; the SPMC raises
/// the schedule receiver interrupt, left pending and disabled here), then
/// the normal world gets it with FFA_NOTIFICATION_GET. `real` false
/// replaces each SMC with a NOP. Returns whether both answers were right.
#[inline(always)]
fn notification_once(real: bool) -> bool {
    let mut set = [
        ffa::MSG_SEND_DIRECT_REQ_64,
        ids::SP1 as u64,
        0,
        cmd::NOTIFY,
        ffa::NOTIFICATION_SET,
        (ids::SP1 as u64) << 16,
        0,
        1,
    ];
    baremetal::bench_call(&mut set, real);
    let sent = !real
        || (set[0] == ffa::MSG_SEND_DIRECT_RESP_64
            && set[3] == status::OK
            && set[4] == ffa::SUCCESS_32);
    let mut get = [ffa::NOTIFICATION_GET, 0, 1, 0, 0, 0, 0, 0];
    baremetal::bench_call(&mut get, real);
    let got = !real || (get[0] == ffa::SUCCESS_32 && get[2] & 0xFFFF_FFFF == 1);
    sent && got
}

/// Runs `n` notification round trips; the elapsed ticks, or `None` at the
/// first failed one.
#[inline(never)]
fn notification_timed(n: u64, real: bool) -> Option<u64> {
    let t0 = baremetal::counter();
    for _ in 0..n {
        if !notification_once(real) {
            return None;
        }
    }
    Some(baremetal::counter() - t0)
}

/// Average instructions of a notification round trip (sp1 sets, the normal
/// world gets), after endpoint 0 made its bitmap and bound bit 0 to sp1.
fn notification_set_get() -> Option<u64> {
    let c = ffa::call(ffa::NOTIFICATION_BITMAP_CREATE, &[0, 4]);
    let b = ffa::call(ffa::NOTIFICATION_BIND, &[(ids::SP1 as u64) << 16, 0, 1, 0]);
    if c[0] != ffa::SUCCESS_32 || b[0] != ffa::SUCCESS_32 {
        return None;
    }
    notification_timed(WARM_UP, true)?;
    let real = notification_timed(ITERATIONS, true)?;
    let empty = notification_timed(ITERATIONS, false)?;
    let per_tick_ns = 1_000_000_000 / frequency().max(1);
    Some(real.saturating_sub(empty) * per_tick_ns / ITERATIONS)
}

/// Average instructions of a share cycle of `pages` pages to sp1.
fn mem_share_cycle(pages: u32) -> Option<u64> {
    let to = [Receiver::new(ids::SP1, perm::RW)];
    let ranges = [Range {
        addr: kit::ARENA,
        pages,
    }];
    let t = Transaction::send(Layout::V1_2, 0, &to, &ranges);
    let len = t.len();
    if kit::part_to_tx(&t, 0, len) != len {
        return None;
    }
    let len = len as u64;
    mem_timed(WARM_UP, len, true)?;
    let real = mem_timed(MEM_ITERATIONS, len, true)?;
    let empty = mem_timed(MEM_ITERATIONS, len, false)?;
    let per_tick_ns = 1_000_000_000 / frequency().max(1);
    Some(real.saturating_sub(empty) * per_tick_ns / MEM_ITERATIONS)
}

/// sp2 (MP) from core 0 (context 0): the request the 4-core figure times.
fn sp2_echo() -> [u64; 8] {
    [
        ffa::MSG_SEND_DIRECT_REQ_64,
        ids::SP2 as u64,
        0,
        cmd::ECHO,
        1,
        2,
        3,
        4,
    ]
}

/// Direct round trips on four cores at once, each core to its own context
/// of the MP partition sp2 (cores 1-3 through the MMU-off mailboxes of
/// `nwd_harness::multicore`): instructions per round trip. Under `-icount`
/// the cores run in turn, so the counter's advance is the work of all four;
/// divided by all the round trips. Core 0's own loop overhead is taken off
/// as in the other figures; the secondary cores' mailbox loop (about 25
/// instructions per call) stays in.
fn four_cores() -> Option<u64> {
    use nwd_harness::multicore::{self as mc, CORES};
    for core in 1..CORES {
        mc::power_on(core).ok()?;
    }
    let post_all = |n| {
        for core in 1..CORES {
            mc::post(
                core,
                mc::req64(ids::SP2, cmd::ECHO, core as u64, 0),
                n,
                ffa::MSG_SEND_DIRECT_RESP_64,
            );
        }
    };
    let wait_all = || (1..CORES).all(|core| mc::wait(core).bad == 0);
    let check = |r: &[u64; 8]| r[0] == ffa::MSG_SEND_DIRECT_RESP_64 && r[4] == 1;
    post_all(WARM_UP);
    timed(WARM_UP, true, sp2_echo, check)?;
    if !wait_all() {
        return None;
    }
    let t0 = baremetal::counter();
    post_all(ITERATIONS);
    timed(ITERATIONS, true, sp2_echo, check)?;
    let ok = wait_all();
    let real = baremetal::counter() - t0;
    let empty = timed(ITERATIONS, false, sp2_echo, check)?;
    let per_tick_ns = 1_000_000_000 / frequency().max(1);
    ok.then(|| real.saturating_sub(empty) * per_tick_ns / (CORES as u64 * ITERATIONS))
}

/// Instructions from sp1's timer interrupt firing (while the normal
/// world runs) to sp1's handler (docs/interrupts.md): sp1 arms its EL1
/// virtual timer `SOON` ticks ahead and reads the counter right after
/// (`armed`); its handler reads the counter first thing (`at`) after the
/// SPMD forwarded FFA_INTERRUPT and the SPMC resumed it. The figure is
/// `at - (armed + SOON)`, averaged (an underestimate by the two
/// instructions between the timer write and the read of `armed`).
fn secure_interrupt_latency() -> Option<u64> {
    const SOON: u64 = 20_000;
    const RUNS: u64 = 16;
    let status = || ffa::cmd(ids::SP1, cmd::IRQ_STATUS, [0; 4]);
    let mut total = 0;
    for _ in 0..RUNS {
        let before = status()[4];
        let a = ffa::cmd(ids::SP1, cmd::IRQ_ARM, [SOON, 0, 0, 0]);
        if a[0] != ffa::MSG_SEND_DIRECT_RESP_64 || a[3] != 0 {
            return None;
        }
        let armed = a[6];
        let start = baremetal::counter();
        while baremetal::counter().wrapping_sub(start) < SOON * 20 {}
        let s = status();
        if s[4] != before + 1 || s[5] != 27 {
            return None;
        }
        total += s[7].checked_sub(armed + SOON)?;
    }
    let per_tick_ns = 1_000_000_000 / frequency().max(1);
    Some(total * per_tick_ns / RUNS)
}

fn report(name: &str, value: Option<u64>) {
    match value {
        Some(v) => {
            let _ = writeln!(console(), "bench: {name}: {v} instructions");
        }
        None => {
            let _ = writeln!(
                console(),
                "bench: {name}: failed (a call returned an unexpected answer)"
            );
        }
    }
}

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    let _ = writeln!(
        console(),
        "nwd-bench: {ITERATIONS} iterations per figure, counter at {} Hz",
        frequency()
    );
    // v1.2 before any other call: that fixes the version (§13.2).
    ffa::version(ffa::V1_2);
    // The message path: sp2 owns no secure interrupt (the figure the
    // 4-core one is compared with, and the one compared across sessions).
    let direct = measure(sp2_echo, |r| {
        r[0] == ffa::MSG_SEND_DIRECT_RESP_64 && r[4] == 1
    });
    report("direct_req_round_trip", direct);
    // The same to sp1, which owns a secure interrupt: the arch layer
    // switches its virtual GIC interface state on every run
    // (docs/interrupts.md), and this figure shows what that costs.
    let owner = measure(
        || {
            [
                ffa::MSG_SEND_DIRECT_REQ_64,
                ids::SP1 as u64,
                0,
                cmd::ECHO,
                1,
                2,
                3,
                4,
            ]
        },
        |r| r[0] == ffa::MSG_SEND_DIRECT_RESP_64 && r[4] == 1,
    );
    report("direct_req_round_trip_irq_owner", owner);
    let version = measure(
        || [ffa::VERSION, ffa::V1_2 as u64, 0, 0, 0, 0, 0, 0],
        |r| r[0] == ffa::V1_2 as u64,
    );
    report("spmc_version_round_trip", version);
    // The memory-sharing cycles need the RX/TX buffers (TX holds the descriptor).
    let mapped = ffa::map_buffers();
    if mapped[0] != ffa::SUCCESS_32 {
        let _ = writeln!(
            console(),
            "bench: mem: FFA_RXTX_MAP_64 answered {:#x} {:#x}",
            mapped[0],
            mapped[2]
        );
    }
    report("mem_share_cycle_1page", mem_share_cycle(1));
    report("mem_share_cycle_64pages", mem_share_cycle(64));
    report("secure_interrupt_latency", secure_interrupt_latency());
    report("notification_set_get_round_trip", notification_set_get());
    // Last: it turns cores 1-3 on, which the figures above must not see.
    report("direct_req_round_trip_4cores", four_cores());
    baremetal::system_off()
}
