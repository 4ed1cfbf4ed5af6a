//! `nwd-hypervisor`: the reference hypervisor as BL33 at NS-EL2 for the
//! `vtee` stage of `cargo xtask test`: the four-user demo, then the checks
//! (`PASS <name>` / `FAIL <name>: <why>`), `vtee: N passed, M failed` and
//! PSCI SYSTEM_OFF.

#![no_std]
#![no_main]

use nwd_hypervisor::report::Report;
use nwd_hypervisor::{checks, demo, say};

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    let mut hyp = nwd_hypervisor::start("nwd-hypervisor (demo, then the vtee checks)");
    let seen = demo::run(&mut hyp);
    let mut r = Report::default();
    checks::run(&mut hyp, &mut r, &seen);
    say!("vtee: {} passed, {} failed", r.passed, r.failed);
    baremetal::system_off()
}
