//! The hostile normal world: BL33 at NS-EL2 on QEMU for the `hostile` stage.
//!
//! Every call it makes is malformed on purpose, or comes at the wrong time,
//! or comes in a storm, or has an interrupt arrive in the middle of it; each
//! check asserts the SPMC's exact answer and then that the normal world and
//! every healthy partition still work (`nwd_harness::hostile`). It prints
//! `PASS <check>` / `FAIL <check>: <why>`, closes with `hostile: N passed,
//! M failed` and powers the machine off with PSCI SYSTEM_OFF.

#![no_std]
#![no_main]

use core::fmt::Write;
use core::panic::PanicInfo;

use nwd_harness::hostile;
use nwd_harness::report::{self, console};

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let _ = writeln!(console(), "FAIL hostile-panic: {info}");
    let _ = writeln!(console(), "hostile: 0 passed, 1 failed");
    baremetal::system_off()
}

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    let _ = writeln!(
        console(),
        "nwd-hostile: hostile FF-A calls from NS-EL{} and from a partition at S-EL1",
        baremetal::current_el()
    );
    let mut r = report::Report::default();
    hostile::run(&mut r);
    let _ = writeln!(
        console(),
        "hostile: {} passed, {} failed",
        r.passed,
        r.failed
    );
    baremetal::system_off()
}
