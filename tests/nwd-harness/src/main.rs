//! The normal-world test harness: BL33 at NS-EL2 on QEMU.
//!
//! It runs FF-A checks against the SPMC through the SPMD, prints `PASS <name>`
//! or `FAIL <name>: <why>` for each, closes them with `e2e: N passed, M
//! failed`, then runs the memory-sharing checks (`mem`) the same way, closes
//! those with `mem: N passed, M failed` and powers the machine off with PSCI
//! SYSTEM_OFF.

#![no_std]
#![no_main]

use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use nwd_harness::report::{self, console};
use nwd_harness::{capacity, checks, irq, legacy, mem, multicore, notify, nsirq, partitions};

/// Set once the `e2e` summary is out: a panic then ends the `mem` section.
static IN_MEM: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let _ = writeln!(console(), "FAIL harness-panic: {info}");
    let stage = if IN_MEM.load(Ordering::Relaxed) {
        "mem"
    } else {
        "e2e"
    };
    let _ = writeln!(console(), "{stage}: 0 passed, 1 failed");
    baremetal::system_off()
}

/// Run the `irq-*` checks (see above). Not on QEMU sbsa-ref yet: there the
/// five fail (not investigated; docs/interrupts.md, "Status on QEMU").
const IRQ_CHECKS: bool = !cfg!(feature = "sbsa");

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    let _ = writeln!(
        console(),
        "nwd-harness: FF-A checks from NS-EL{}",
        baremetal::current_el()
    );
    let mut r = report::Report::default();
    let mode = legacy::mode();
    match mode {
        None => {
            checks::run(&mut r);
            // Before `partitions`, whose fault checks abort crash-*.
            nsirq::run(&mut r);
            partitions::run(&mut r);
            multicore::run(&mut r);
            notify::run(&mut r);
            // The `irq-*` checks (nwd_harness::irq) do not pass yet on QEMU:
            // sp1's timer fires but no Group 1 Secure interrupt reaches
            // S-EL2 (docs/interrupts.md, "Status"). Enabled once it does.
            if IRQ_CHECKS {
                irq::run(&mut r);
            }
            capacity::run(&mut r);
        }
        Some(v) => {
            let _ = writeln!(console(), "nwd-harness: the boot at FF-A version {v:#x}");
            legacy::run(&mut r, v);
        }
    }
    let _ = writeln!(console(), "e2e: {} passed, {} failed", r.passed, r.failed);
    IN_MEM.store(true, Ordering::Relaxed);
    let mut m = report::Report::default();
    match mode {
        None => mem::run(&mut m),
        Some(v) => legacy::run_mem(&mut m, v),
    }
    let _ = writeln!(console(), "mem: {} passed, {} failed", m.passed, m.failed);
    baremetal::system_off()
}
