//! The normal-world test harness: BL33 at NS-EL2 on QEMU.
//!
//! It runs FF-A checks against the SPMC through the SPMD, prints `PASS <name>`
//! or `FAIL <name>: <why>` for each, closes with `e2e: N passed, M failed` and
//! powers the machine off with PSCI SYSTEM_OFF.

#![no_std]
#![no_main]

use core::fmt::Write;
use core::panic::PanicInfo;

use nwd_harness::report::{self, console};
use nwd_harness::{checks, partitions};

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let _ = writeln!(console(), "FAIL harness-panic: {info}");
    let _ = writeln!(console(), "e2e: 0 passed, 1 failed");
    baremetal::system_off()
}

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    let _ = writeln!(
        console(),
        "nwd-harness: FF-A checks from NS-EL{}",
        baremetal::current_el()
    );
    let mut r = report::Report::default();
    checks::run(&mut r);
    partitions::run(&mut r);
    let _ = writeln!(console(), "e2e: {} passed, {} failed", r.passed, r.failed);
    baremetal::system_off()
}
