//! Normal-world interrupts while a partition initialises (issue 9, defect
//! 7): the vCPU runs with them queued (`Context::ns_interrupts_queued`, which
//! the platform turns into a GIC priority mask) from the start of its boot
//! or its instance's creation until its FFA_MSG_WAIT, and with them taken
//! (preemption, FFA_INTERRUPT) at every other time. The e2e proof is the
//! vtee stage's `tee-created-while-an-interrupt-is-pending`.

mod common;

use common::world::*;
use spmc::Next;
use spmc::ffa::{Regs, func, fwk};
use spmc::testing::{sp_call, sp_interrupt};

#[test]
fn static_partitions_boot_with_interrupts_queued() {
    let mut s = loaded();
    let mut regs = Regs::default();
    let mut next = s.boot(&mut regs);
    let mut booted = 0;
    while let Next::Run { vcpu, .. } = next {
        assert!(
            s.vcpu_context_mut(vcpu).ns_interrupts_queued,
            "boot of {vcpu:?} runs with interrupts queued"
        );
        next = play_init(&mut s, vcpu, &mut regs);
        assert!(
            !s.vcpu_context_mut(vcpu).ns_interrupts_queued,
            "after its FFA_MSG_WAIT it takes them"
        );
        booted += 1;
    }
    assert!(booted >= 3);
}

#[test]
fn an_instance_initialises_with_interrupts_queued_then_takes_them() {
    let mut s = policy_world(None);
    let (next, mut regs) = nwd(&mut s, &vm_message(0, TEMPLATE, fwk::VM_CREATED, 5));
    let v = running(&next);
    assert!(s.vcpu_context_mut(v).ns_interrupts_queued, "creation");
    assert!(matches!(play_init(&mut s, v, &mut regs), Next::NormalWorld));
    assert_eq!(regs.func(), func::MSG_SEND_DIRECT_RESP_32, "acknowledged");
    assert!(!s.vcpu_context_mut(v).ns_interrupts_queued, "initialised");

    // A request from VM 5 to its instance: an interrupt now preempts it.
    let id = instance_id(&s, 5).unwrap();
    let (next, mut regs) = nwd(
        &mut s,
        &[
            func::MSG_SEND_DIRECT_REQ_64 as u64,
            5 << 16 | TEMPLATE as u64,
            0,
            0x10,
        ],
    );
    let v = running(&next);
    assert!(!s.vcpu_context_mut(v).ns_interrupts_queued, "a request");
    assert!(matches!(
        sp_interrupt(&mut s, v, &mut regs),
        Next::NormalWorld
    ));
    assert_eq!(regs.func(), func::INTERRUPT_32);
    assert_eq!(regs.x(1) >> 16, id as u64);
    // Resumed with FFA_RUN, it still takes interrupts.
    let (next, _) = nwd(&mut s, &[func::RUN as u64, (id as u64) << 16]);
    let v = running(&next);
    assert!(!s.vcpu_context_mut(v).ns_interrupts_queued, "resumed");
    let mut regs = Regs::default();
    sp_call(
        &mut s,
        v,
        &[func::MSG_SEND_DIRECT_RESP_64 as u64, (id as u64) << 16 | 5],
        &mut regs,
    );
}
