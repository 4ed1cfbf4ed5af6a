//! How many per-VM TEEs (instances of the `vtee` template) the SPMC keeps
//! alive at once on this board. The harness announces VMs the way a
//! hypervisor does (the VM availability messages, FF-A v1.2 §18.2), with no
//! VM behind them, until the SPMC answers NO_MEMORY, prints how many it
//! made, takes them all down again and checks that everything came back.
//! The count is the board's figure (docs/boards.md): the instance IDs the
//! SPMC manifest gives the template bound it, and below that the secure
//! pool and the SPMC's heap.

use crate::board;
use crate::ensure;
use crate::ffa::fwk::{VM_CREATED, VM_DESTROYED};
use crate::hostile::irq::{check_ack, vm_message};
use crate::report::{Outcome, Report};

/// The first VM ID announced (none of the other checks uses it).
const FIRST_VM: u64 = 0x100;

pub fn run(r: &mut Report) {
    r.check("vtee-live-instances-until-no-memory", capacity);
}

fn capacity() -> Outcome {
    let mut made = 0u64;
    let mut last = None;
    // One more than there are instance IDs: the last must be refused.
    for vm in FIRST_VM..=FIRST_VM + board::VTEE_INSTANCES {
        let r = vm_message(VM_CREATED, vm);
        if check_ack(&r, VM_CREATED, 0, "VM created ack").is_err() {
            last = Some(r);
            break;
        }
        made += 1;
    }
    let mut destroyed = true;
    for vm in FIRST_VM..FIRST_VM + made {
        destroyed &= check_ack(&vm_message(VM_DESTROYED, vm), VM_DESTROYED, 0, "ack").is_ok();
    }
    crate::say!(
        "    ({made} live per-VM TEEs, of {} instance IDs, before NO_MEMORY)",
        board::VTEE_INSTANCES
    );
    ensure!(destroyed, "every TEE destroyed");
    let Some(last) = last else {
        return Err(baremetal::report::fail("more TEEs than instance IDs"));
    };
    check_ack(
        &last,
        VM_CREATED,
        crate::ffa::NO_MEMORY,
        "when TEEs run out",
    )?;
    ensure!(made >= board::MIN_LIVE_TEES, "at least MIN_LIVE_TEES TEEs");
    ensure!(
        made <= board::VTEE_INSTANCES,
        "no more TEEs than instance IDs"
    );
    // Everything came back: one more TEE, and its destruction.
    check_ack(
        &vm_message(VM_CREATED, FIRST_VM),
        VM_CREATED,
        0,
        "a TEE after all were freed",
    )?;
    check_ack(
        &vm_message(VM_DESTROYED, FIRST_VM),
        VM_DESTROYED,
        0,
        "and its destruction",
    )
}
