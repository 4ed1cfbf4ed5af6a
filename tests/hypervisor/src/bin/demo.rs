//! `nwd-hypervisor-demo`: the four-user demo alone (what `cargo xtask run`
//! boots): four users, each with a VM at NS-EL1 and its own virtual TEE;
//! one VM is destroyed and created again and finds a fresh TEE. Then PSCI
//! SYSTEM_OFF.

#![no_std]
#![no_main]

use nwd_hypervisor::{demo, say};

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    let mut hyp = nwd_hypervisor::start("nwd-hypervisor");
    let seen = demo::run(&mut hyp);
    for u in demo::USERS {
        let _ = hyp.destroy_vm(u);
    }
    if seen.problem.is_none() {
        say!("hypervisor: every VM destroyed; powering off");
    }
    baremetal::system_off()
}
