//! The `vtee` stage: checks of the per-VM virtual TEEs, end to end, from VMs
//! at NS-EL1 through this hypervisor, TF-A's SPMD and the SPMC.
//!
//! Every call a check makes "from VM n" is made by VM n's program at NS-EL1
//! (a task, [`crate::guest`]) and goes through the hypervisor's trap and
//! proxy path. Calls "from the hypervisor" are its own (endpoint 0), and for
//! the scale checks it speaks for VM IDs that have no VM behind them.

mod mem;

use alloc::vec::Vec;

use test_protocol::{
    TPM_GET_INTERFACE_VERSION, TPM_INTERFACE_VERSION, TPM_OK, cmd, ids, layout, status, uuids,
};

use crate::ffa::{self, Ack, Regs, code, fwk};
use crate::guest::{self, RAM_IPA, op};
use crate::report::{Fail, Outcome, Report, fail};
use crate::vm::{Fault, Hypervisor};
use crate::{demo, ensure, ensure_eq, say};

/// The general VMs the checks run.
const VMS: [u16; 4] = [1, 2, 3, 4];
/// Extra VM IDs for the scale checks (no VM behind them).
const SCALE_FIRST: u16 = 0x100;
const SCALE_COUNT: u16 = 40;
/// Where the checks write a pattern in a TEE's RAM: the upper part of its
/// 64 KiB (16 pages at RAM_IPA), which the test partition's image never uses
/// (tests/test-sp/sp.ld: the stack, then .bss, end near RAM_IPA + 0xB000).
const TEE_RAM_OFFSETS: [u64; 4] = [0xD000, 0xE000, 0xF000, 0xFFF8];
/// Where the checks write in a VM's own RAM (above its mailbox, below its stack).
const VM_RAM_PATTERN: u64 = RAM_IPA + 0x8000;
/// The secure pool (SPMC manifest `secure-memory`): instances' memory is
/// carved from it.
const POOL_BASE: u64 = crate::board::POOL_BASE;
const POOL_PAGES: u64 = crate::board::POOL_PAGES;
/// Pages of a TEE's RAM region (the template's manifest: 16 at RAM_IPA).
const TEE_RAM_PAGES: u64 = 16;

/// What the checks share: the hypervisor and each VM's instance ID.
struct T<'a> {
    hyp: &'a mut Hypervisor,
    /// Instance ID of VM v's TEE at `inst[v]`, as WHOAMI reported it.
    inst: [u16; 5],
}

/// Runs every check; `demo` is what the demo saw before.
pub fn run(hyp: &mut Hypervisor, r: &mut Report, demo: &demo::Outcome) {
    r.check("demo-four-users-own-tees", || match demo.problem {
        None => Ok(()),
        Some(p) => Err(Fail {
            what: p,
            values: None,
        }),
    });
    // A known state: the demo's VMs go, four fresh ones come.
    let old: Vec<u16> = hyp.vm_ids().collect();
    for id in old {
        let _ = hyp.destroy_vm(id);
    }
    let mut t = T { hyp, inst: [0; 5] };
    r.check("four-vms-created-with-tees", || t.create_all());

    // The hypervisor and its VMs.
    check(r, &mut t, "vms-run-at-ns-el1-with-own-ids", |t| {
        t.vms_at_el1()
    });
    check(r, &mut t, "vm-ffa-version-answered-by-hypervisor", |t| {
        t.vm_version()
    });
    check(r, &mut t, "vm-memory-private", |t| t.vm_memory_private());
    check(r, &mut t, "vm-cannot-read-other-vm-memory", |t| {
        let other = t.hyp.ram_of(2).ok_or(fail("no VM 2"))?;
        t.vm_fault(1, op::PEEK, other, false)
    });
    check(r, &mut t, "vm-cannot-write-its-program", |t| {
        // An aligned word of the program (the entry point is only 4-byte aligned).
        let entry = (&raw const guest::guest_entry) as u64 & !7;
        t.vm_fault(3, op::POKE, entry, true)
    });
    check(r, &mut t, "vm-ipa-is-not-pa", |t| {
        let own = t.hyp.ram_of(4).ok_or(fail("no VM 4"))?;
        t.vm_fault(4, op::PEEK, own, false)
    });
    check(r, &mut t, "vm-el1-exceptions-stop-that-vm", |t| {
        t.el1_exceptions()
    });
    check(r, &mut t, "other-vms-survive-a-vm-fault", |t| {
        t.vm_memory_kept()
    });
    check(r, &mut t, "vm-el1-state-kept-per-vm", |t| t.el1_state());

    // Routing and policy, from the VMs.
    check(r, &mut t, "vm-reaches-own-tee", |t| t.own_tee());
    check(r, &mut t, "vm-tees-distinct", |t| t.tees_distinct());
    check(r, &mut t, "vm-tee-state-private", |t| t.tee_state_private());
    check(r, &mut t, "vm-other-vm-instance-denied", |t| {
        t.other_instance_denied()
    });
    check(r, &mut t, "vm-unbound-static-partitions-denied", |t| {
        t.unbound_denied()
    });
    check(r, &mut t, "vm-shared-tpm-reachable-by-all", |t| {
        t.tpm_shared()
    });
    check(r, &mut t, "vm-sp1-bound-to-vm1-only", |t| t.sp1_bound());
    check(r, &mut t, "vm-forged-sender-reaches-own-tee", |t| {
        t.forged_own()
    });
    check(r, &mut t, "vm-forged-sender-gains-nothing", |t| {
        t.forged_nothing()
    });
    check(r, &mut t, "vm-hvc-conduit", |t| t.hvc_conduit());
    check(r, &mut t, "vm-tee-yield-resumed-by-hypervisor", |t| {
        t.tee_yield()
    });
    check(r, &mut t, "vm-direct-req-32", |t| t.req32());
    check(r, &mut t, "vm-x8-x17-preserved", |t| t.upper_preserved());
    check(r, &mut t, "vm-req2-own-tee", |t| t.req2_own());
    check(r, &mut t, "vm-req2-needs-version-1.2", |t| {
        t.req2_needs_version()
    });
    check(r, &mut t, "vm-discovery-regs-per-vm", |t| t.discovery());
    check(r, &mut t, "vm-discovery-regs-forged-vm-id", |t| {
        t.discovery_forged()
    });
    check(r, &mut t, "vm-discovery-regs-vtee-uuid", |t| {
        t.discovery_vtee_uuid()
    });
    check(r, &mut t, "vm-discovery-count-per-vm", |t| {
        t.discovery_count()
    });
    check(r, &mut t, "vm-availability-messages-refused", |t| {
        t.vm_availability()
    });
    check(r, &mut t, "vm-unforwarded-abis-not-supported", |t| {
        t.unforwarded()
    });
    check(r, &mut t, "vm-to-vm-direct-request-refused", |t| {
        t.vm_to_vm()
    });
    check(r, &mut t, "vm-notifications-from-own-tee-only", |t| {
        t.notifications_per_user()
    });
    check(r, &mut t, "vm-notification-bitmap-goes-with-its-tee", |t| {
        t.bitmap_with_tee()
    });

    // Memory sharing and indirect messages through the hypervisor (issue 18).
    r.check("demo-documents-sealed-by-own-tees", || {
        ensure!(
            demo.sealed.iter().all(|&s| s),
            "every user's document sealed"
        );
        Ok(())
    });
    check(r, &mut t, "vm-mem-features-forwarded", |t| t.mem_features());
    check(r, &mut t, "vm-rxtx-map-own-pages", |t| t.mem_rxtx_map());
    check(r, &mut t, "vm-rxtx-map-outside-vm-refused", |t| {
        t.mem_rxtx_refused()
    });
    check(r, &mut t, "vm-rxtx-unmap", |t| t.mem_rxtx_unmap());
    check(r, &mut t, "vm-mem-share-64-own-tee-seals", |t| {
        t.mem_share_cycle(1, test_protocol::mem::func::SHARE_64)
    });
    check(r, &mut t, "vm-mem-share-32-own-tee-seals", |t| {
        t.mem_share_cycle(2, test_protocol::mem::func::SHARE_32)
    });
    check(r, &mut t, "vm-mem-lend-64-own-tee-seals", |t| {
        t.mem_share_cycle(3, test_protocol::mem::func::LEND_64)
    });
    check(r, &mut t, "vm-mem-lend-32-own-tee-seals", |t| {
        t.mem_share_cycle(4, test_protocol::mem::func::LEND_32)
    });
    check(r, &mut t, "vm-mem-share-keeps-vm-access", |t| {
        t.mem_share_keeps_access()
    });
    check(r, &mut t, "vm-mem-lent-page-unmapped-from-vm", |t| {
        t.mem_lent_page_faults()
    });
    check(r, &mut t, "vm-mem-lend-reclaim-zeroes", |t| {
        t.mem_lend_reclaim_zero()
    });
    check(r, &mut t, "vm-mem-donate-64-gone-for-good", |t| {
        t.mem_donate(test_protocol::mem::func::DONATE_64)
    });
    check(r, &mut t, "vm-mem-donate-32-gone-for-good", |t| {
        t.mem_donate(test_protocol::mem::func::DONATE_32)
    });
    check(r, &mut t, "vm-mem-donate-reclaimed-before-retrieve", |t| {
        t.mem_donate_reclaim_early()
    });
    check(r, &mut t, "vm-mem-frag-tx-lend-three-pages", |t| {
        t.mem_fragments()
    });
    check(r, &mut t, "vm-mem-frag-tx-refused-and-cancelled", |t| {
        t.mem_fragments_refused()
    });
    check(r, &mut t, "vm-mem-buffers-pinned", |t| {
        t.mem_buffers_pinned()
    });
    check(r, &mut t, "vm-mem-other-vm-tee-denied", |t| t.mem_policy());
    check(r, &mut t, "vm-mem-donate-beyond-own-tee-denied", |t| {
        t.mem_donate_beyond_own_tee()
    });
    check(r, &mut t, "vm-mem-range-outside-vm-refused", |t| {
        t.mem_outside()
    });
    check(r, &mut t, "vm-mem-forged-sender-refused", |t| {
        t.mem_forged_sender()
    });
    check(r, &mut t, "vm-mem-reclaim-only-own", |t| {
        t.mem_reclaim_others()
    });
    check(r, &mut t, "vm-mem-lent-page-not-sent-twice", |t| {
        t.mem_lent_twice()
    });
    check(r, &mut t, "vm-mem-tee-destroyed-vm-reclaims", |t| {
        t.mem_tee_destroyed()
    });
    check(r, &mut t, "vm-mem-vm-destroyed-memory-comes-back", |t| {
        t.mem_vm_destroyed()
    });
    check(r, &mut t, "vm-mem-version-1.0-not-supported", |t| {
        t.mem_v1_0()
    });
    check(r, &mut t, "vm-borrow-features-forwarded", |t| {
        t.borrow_features()
    });
    check(
        r,
        &mut t,
        "vm-borrow-lent-result-read-relinquish-reclaim",
        |t| t.borrow_lent_result(),
    );
    check(r, &mut t, "vm-borrow-shared-read-only-write-faults", |t| {
        t.borrow_shared_read_only()
    });
    check(r, &mut t, "vm-borrow-unmapped-after-relinquish", |t| {
        t.borrow_unmapped_after_relinquish()
    });
    check(r, &mut t, "vm-borrow-other-vms-denied", |t| {
        t.borrow_other_vm_denied()
    });
    check(r, &mut t, "vm-borrow-unknown-handle-invalid", |t| {
        t.borrow_unknown_handle()
    });
    check(r, &mut t, "vm-borrow-forged-borrower-refused", |t| {
        t.borrow_forged_refused()
    });
    check(
        r,
        &mut t,
        "vm-borrow-relinquish-not-retrieved-denied",
        |t| t.borrow_relinquish_not_retrieved(),
    );
    check(r, &mut t, "vm-borrow-twice-rx-busy-relinquish-twice", |t| {
        t.borrow_twice()
    });
    check(
        r,
        &mut t,
        "vm-borrow-vm-destroyed-lender-reclaims-zeroed",
        |t| t.borrow_vm_destroyed(),
    );
    r.check("demo-results-lent-back-by-own-tees", || {
        ensure!(demo.results.iter().all(|&s| s), "every user's result read");
        Ok(())
    });
    check(r, &mut t, "vm-msg-send2-own-tee", |t| t.msg_own_tee());
    check(r, &mut t, "vm-msg-send2-refused", |t| t.msg_refused());

    // The hypervisor's own messages (endpoint 0).
    check(r, &mut t, "hyp-double-create-invalid", |t| {
        t.double_create()
    });
    check(r, &mut t, "hyp-destroy-without-tee-invalid", |_| {
        ensure_eq!(ffa::vm_destroyed(77).code(), ffa::INVALID_PARAMETERS, "ack");
        Ok(())
    });
    check(r, &mut t, "hyp-availability-bad-vm-id-invalid", |_| {
        ensure_eq!(ffa::vm_created(0).code(), ffa::INVALID_PARAMETERS, "VM 0");
        let r = ffa::vm_availability(fwk::VM_CREATED, 0x8001);
        ensure_eq!(
            ffa::ack(&r, fwk::VM_CREATED).code(),
            ffa::INVALID_PARAMETERS,
            "VM 0x8001"
        );
        Ok(())
    });
    check(
        r,
        &mut t,
        "hyp-availability-to-a-non-template-invalid",
        |_| {
            for dst in [ids::SP1, ids::TPM, 0x8100] {
                let mut r = [0u64; 18];
                r[0] = ffa::MSG_SEND_DIRECT_REQ_32;
                r[1] = dst as u64;
                r[2] = (fwk::FLAG | fwk::VM_CREATED) as u64;
                r[3] = 0xFFFF_FFFF;
                r[4] = 0xFFFF_FFFF;
                r[5] = 9;
                ffa::smc(&mut r);
                ensure_eq!(
                    code(&r),
                    ffa::INVALID_PARAMETERS,
                    "VM created to a non-template"
                );
            }
            ensure_eq!(
                ffa::vm_destroyed(9).code(),
                ffa::INVALID_PARAMETERS,
                "no TEE for VM 9"
            );
            Ok(())
        },
    );
    check(r, &mut t, "spmc-availability-from-vm-sender-denied", |t| {
        t.availability_from_vm_sender()
    });
    check(r, &mut t, "hyp-endpoint-0-denied-instances", |t| {
        t.endpoint0()
    });
    check(r, &mut t, "hyp-discovery-regs-endpoint-0", |t| {
        t.discovery_endpoint0()
    });

    // Life cycle: destroy and create again.
    check(r, &mut t, "recreate-gives-fresh-tee", |t| {
        t.recreate_fresh()
    });

    // Faults in a TEE.
    check(r, &mut t, "tee-read-unmapped-ipa-aborted", |t| {
        t.tee_fault(3, layout::UNMAPPED_IPA)
    });
    check(r, &mut t, "tee-read-other-instance-pa-aborted", |t| {
        t.tee_cross_reads()
    });
    check(r, &mut t, "aborted-tees-come-back-with-their-vms", |t| {
        t.recover()
    });
    // A TEE that drops to AArch32 at EL0 and faults there (Arm ARM: with
    // HCR_EL2.RW set its exceptions to EL2 use the AArch64 lower-EL vectors)
    // is aborted like any other; its VM gets ABORTED, the others go on.
    check(r, &mut t, "tee-aarch32-el0-stage2-abort-aborted", |t| {
        t.tee_fault_with(3, cmd::AARCH32, layout::UNMAPPED_IPA)
    });
    check(r, &mut t, "tee-aarch32-el0-undefined-aborted", |t| {
        t.tee_fault_with(4, cmd::AARCH32, 0)
    });
    check(r, &mut t, "aarch32-tees-come-back-with-their-vms", |t| {
        t.recover()
    });
    // A normal-world interrupt pending while an instance initialises (a timer
    // tick during VM creation): initialisation runs to its end with the
    // interrupt queued, then the hypervisor gets the core back.
    check(
        r,
        &mut t,
        "tee-created-while-an-interrupt-is-pending",
        |_| create_with_interrupt_pending(),
    );

    // Scale.
    check(r, &mut t, "scale-40-more-live-vtees", |t| t.scale_create());
    check(r, &mut t, "scale-all-answer-own-state", |t| {
        t.scale_answer()
    });
    check(r, &mut t, "scale-destroy-all", |t| t.scale_destroy());
    check(r, &mut t, "scale-memory-comes-back", |t| t.scale_again());
    check(r, &mut t, "scale-instances-exhausted-no-memory", |t| {
        t.exhaustion()
    });
    check(r, &mut t, "vms-still-answer-at-the-end", |t| t.own_tee());
}

/// Runs one check, then brings back any of the four VMs that stopped, so
/// that one failure does not fail the checks after it.
/// VM created for a VM ID of no VM while the hypervisor timer's interrupt
/// is pending; the new TEE must answer, then goes again.
fn create_with_interrupt_pending() -> Outcome {
    const VM: u16 = 0x7E;
    crate::nsirq::start();
    let firing = crate::nsirq::firing();
    let created = ffa::vm_created(VM);
    crate::nsirq::stop();
    ensure!(firing, "the timer's interrupt was pending");
    ensure!(created.ok(), "VM created acknowledged");
    let r = ffa::request_as(VM, ids::VTEE_TEMPLATE, [cmd::COUNTER, 0, 0, 0, 0]);
    ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "the new TEE answers");
    ensure_eq!(r[4], 1, "its counter");
    ensure!(ffa::vm_destroyed(VM).ok(), "VM destroyed acknowledged");
    Ok(())
}

fn check<'a>(r: &mut Report, t: &mut T<'a>, name: &str, f: impl FnOnce(&mut T<'a>) -> Outcome) {
    r.check(name, || f(t));
    t.heal();
}

/// A failed task: says why (the VM stopped) on its own line.
fn stopped(vm: u16, f: Fault) -> Fail {
    say!("    (VM {vm}: {f})");
    fail("the VM stopped")
}

/// x0-x7 of a REQ_64 with x1 = `w1` and x3-x7.
fn req64(w1: u64, x3_x7: [u64; 5]) -> Regs {
    let mut r = [0u64; 18];
    r[0] = ffa::MSG_SEND_DIRECT_REQ_64;
    r[1] = w1;
    r[3..8].copy_from_slice(&x3_x7);
    r
}

/// Checks a partition's successful response to `vm` from `from`.
fn resp_ok(r: &Regs, vm: u16, from: u16) -> Outcome {
    ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "response function");
    ensure_eq!(r[1] as u32, (from as u32) << 16 | vm as u32, "response w1");
    ensure_eq!(r[3], status::OK, "status");
    Ok(())
}

fn is_instance(id: u64) -> bool {
    (ids::VTEE_FIRST_INSTANCE as u64
        ..ids::VTEE_FIRST_INSTANCE as u64 + crate::board::VTEE_INSTANCES as u64)
        .contains(&id)
}

impl T<'_> {
    /// VM `vm` makes the call `regs` by SMC.
    fn smc(&mut self, vm: u16, regs: Regs) -> Result<Regs, Fail> {
        self.hyp.smc(vm, regs).map_err(|f| stopped(vm, f))
    }

    /// VM `vm` sends a REQ_64 (its own ID as sender) to `dst`.
    fn req(&mut self, vm: u16, dst: u16, command: u64, args: [u64; 4]) -> Result<Regs, Fail> {
        let w1 = (vm as u64) << 16 | dst as u64;
        self.smc(vm, req64(w1, [command, args[0], args[1], args[2], args[3]]))
    }

    /// VM `vm` runs a command in its own TEE (0x8010) and gets its results.
    fn tee(&mut self, vm: u16, command: u64, args: [u64; 4]) -> Result<[u64; 4], Fail> {
        let r = self.req(vm, ids::VTEE_TEMPLATE, command, args)?;
        resp_ok(&r, vm, self.inst[vm as usize])?;
        Ok([r[4], r[5], r[6], r[7]])
    }

    /// Asks VM `vm`'s TEE who it is; remembers and returns its ID.
    fn whoami(&mut self, vm: u16) -> Result<u16, Fail> {
        let r = self.req(vm, ids::VTEE_TEMPLATE, cmd::WHOAMI, [0; 4])?;
        ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "WHOAMI answer");
        ensure_eq!(r[3], status::OK, "WHOAMI status");
        let from = (r[1] >> 16) as u16;
        ensure_eq!(r[4], from, "the TEE's own ID is the response's sender");
        ensure!(is_instance(r[4]), "the TEE is an instance");
        self.inst[vm as usize] = from;
        Ok(from)
    }

    /// Destroys and creates VM `vm` again; learns its new TEE.
    fn recreate(&mut self, vm: u16) -> Outcome {
        if self.hyp.has_vm(vm) {
            let ack = self.hyp.destroy_vm(vm).ok_or(fail("no VM"))?;
            ensure_eq!(ack.code(), 0, "VM destroyed ack");
        }
        self.hyp
            .create_vm(vm)
            .map_err(|_| fail("VM not created again"))?;
        self.whoami(vm)?;
        Ok(())
    }

    /// Creates again any of the four VMs that is missing or stopped (and
    /// puts its key-1 value back in its new TEE).
    fn heal(&mut self) {
        for vm in VMS {
            if self.hyp.has_vm(vm) && self.hyp.fault_of(vm).is_none() {
                continue;
            }
            say!("    (VM {vm} is stopped or gone: created again for the next checks)");
            let _ = self.recreate(vm);
            let _ = self.tee(vm, cmd::KV_PUT, [1, 0x1000 + vm as u64, 0, 0]);
        }
    }

    fn create_all(&mut self) -> Outcome {
        for vm in VMS {
            if let Err(e) = self.hyp.create_vm(vm) {
                say!("    (VM {vm}: {e:?})");
                return Err(fail("VM not created"));
            }
            self.whoami(vm)?;
        }
        Ok(())
    }

    fn vms_at_el1(&mut self) -> Outcome {
        for vm in VMS {
            let r = self
                .hyp
                .task(vm, op::INFO, [0; 18])
                .map_err(|f| stopped(vm, f))?;
            ensure_eq!(r[0], 1, "CurrentEL in the VM");
            ensure_eq!(r[1] & 1, 1, "the VM's stage 1 is on");
            ensure_eq!(r[2], vm, "FFA_ID_GET by SMC");
            ensure_eq!(r[3], vm, "FFA_ID_GET by HVC");
        }
        ensure_eq!(baremetal::current_el(), 2, "the hypervisor's EL");
        Ok(())
    }

    fn vm_version(&mut self) -> Outcome {
        for vm in VMS {
            let r = self.smc(vm, req_regs(ffa::VERSION, &[ffa::V1_2 as u64]))?;
            ensure_eq!(r[0], ffa::V1_2, "FFA_VERSION(1.2)");
            let r = self.smc(vm, req_regs(ffa::VERSION, &[0x2_0000]))?;
            ensure_eq!(r[0], ffa::SMCCC_NOT_SUPPORTED, "FFA_VERSION(2.0)");
            let r = self
                .hyp
                .hvc(vm, req_regs(ffa::VERSION, &[ffa::V1_2 as u64]))
                .map_err(|f| stopped(vm, f))?;
            ensure_eq!(r[0], ffa::V1_2, "FFA_VERSION(1.2) by HVC");
        }
        Ok(())
    }

    fn poke(&mut self, vm: u16, ipa: u64, v: u64) -> Outcome {
        let mut a = [0u64; 18];
        a[0] = ipa;
        a[1] = v;
        self.hyp.task(vm, op::POKE, a).map_err(|f| stopped(vm, f))?;
        Ok(())
    }

    fn peek(&mut self, vm: u16, ipa: u64) -> Result<u64, Fail> {
        let mut a = [0u64; 18];
        a[0] = ipa;
        Ok(self.hyp.task(vm, op::PEEK, a).map_err(|f| stopped(vm, f))?[0])
    }

    fn vm_memory_private(&mut self) -> Outcome {
        for vm in VMS {
            self.poke(vm, VM_RAM_PATTERN, 0xA11C_E000 + vm as u64)?;
        }
        let mut pas = [0u64; 4];
        for (i, vm) in VMS.into_iter().enumerate() {
            ensure_eq!(
                self.peek(vm, VM_RAM_PATTERN)?,
                0xA11C_E000 + vm as u64,
                "a VM reads its own word at the same IPA"
            );
            pas[i] = self.hyp.ram_of(vm).ok_or(fail("no RAM"))?;
            // The hypervisor sees it at the VM's own physical page.
            let p = (pas[i] + (VM_RAM_PATTERN - RAM_IPA)) as *const u64;
            // SAFETY: the VM's RAM is hypervisor memory; the VM is not running.
            let seen = unsafe { p.read_volatile() };
            ensure_eq!(seen, 0xA11C_E000 + vm as u64, "the word in the VM's page");
        }
        for i in 0..4 {
            ensure!(!pas[..i].contains(&pas[i]), "two VMs share physical RAM");
        }
        Ok(())
    }

    /// VM `vm` does `op` at `addr` (outside what its stage 2 gives it): the
    /// hypervisor stops it with a stage-2 fault at that IPA; then it is
    /// created again.
    fn vm_fault(&mut self, vm: u16, op: u64, addr: u64, write: bool) -> Outcome {
        let mut a = [0u64; 18];
        a[0] = addr;
        a[1] = 0xBAD;
        let got = self.hyp.task(vm, op, a);
        let Err(Fault::Stage2 { ipa, write: w, .. }) = got else {
            if let Err(f) = got {
                say!("    (VM {vm}: {f})");
            }
            return Err(fail("no stage-2 fault"));
        };
        ensure_eq!(ipa, addr, "faulting IPA");
        ensure_eq!(w, write, "write fault");
        // A stopped VM stays stopped until it is created again.
        ensure!(
            self.hyp.task(vm, op::INFO, [0; 18]).is_err(),
            "still stopped"
        );
        self.recreate(vm)
    }

    /// Exceptions a VM takes at EL1 (an undefined instruction; a stage-1
    /// translation fault: nothing is mapped above 2 GiB) end in its own
    /// vectors, which report them; the hypervisor stops that VM.
    fn el1_exceptions(&mut self) -> Outcome {
        for (op, addr, ec) in [(op::UNDEF, 0, 0x00), (op::PEEK, 0x8000_0000, 0x25)] {
            let mut a = [0u64; 18];
            a[0] = addr;
            match self.hyp.task(3, op, a) {
                Err(Fault::Guest {
                    esr, far, vector, ..
                }) => {
                    ensure_eq!(esr >> 26, ec, "ESR_EL1.EC");
                    ensure_eq!(vector, 4, "vector: current EL with SP_ELx, synchronous");
                    if ec == 0x25 {
                        ensure_eq!(far, addr, "FAR_EL1");
                    }
                }
                Err(f) => {
                    say!("    (VM 3: {f})");
                    return Err(fail("not the VM's own exception"));
                }
                Ok(_) => return Err(fail("no exception")),
            }
            self.recreate(3)?;
        }
        Ok(())
    }

    fn vm_memory_kept(&mut self) -> Outcome {
        // VM 2 never faulted: its word is still there; the recreated ones start from zero.
        ensure_eq!(self.peek(2, VM_RAM_PATTERN)?, 0xA11C_E002, "VM 2's word");
        for vm in [1, 3, 4] {
            ensure_eq!(
                self.peek(vm, VM_RAM_PATTERN)?,
                0,
                "a recreated VM's RAM is zero"
            );
        }
        Ok(())
    }

    fn sysregs(&mut self, vm: u16, set: Option<[u64; 4]>, call: bool) -> Result<[u64; 4], Fail> {
        let mut a = [0u64; 18];
        if let Some(v) = set {
            a[..4].copy_from_slice(&v);
            a[4] = 1;
        }
        a[5] = call as u64;
        let r = self
            .hyp
            .task(vm, op::SYSREGS, a)
            .map_err(|f| stopped(vm, f))?;
        Ok([r[0], r[1], r[2], r[3]])
    }

    fn el1_state(&mut self) -> Outcome {
        let vals = |vm: u16| {
            let b = (vm as u64) << 32;
            [b | 0xE0, b | 0xE1, b | 0xE2, (vm as u64) << 8 | 0x3]
        };
        for vm in VMS {
            self.sysregs(vm, Some(vals(vm)), false)?;
        }
        for vm in VMS {
            // After the other VMs ran, and across a call to its TEE.
            let got = self.sysregs(vm, None, true)?;
            for (g, w) in got.iter().zip(vals(vm)) {
                ensure_eq!(*g, w, "TPIDR_EL0/EL1, TPIDRRO_EL0, CONTEXTIDR_EL1");
            }
        }
        Ok(())
    }

    fn own_tee(&mut self) -> Outcome {
        for vm in VMS {
            self.tee(vm, cmd::KV_PUT, [1, 0x1000 + vm as u64, 0, 0])?;
        }
        for vm in VMS {
            let [v, ..] = self.tee(vm, cmd::KV_GET, [1, 0, 0, 0])?;
            ensure_eq!(v, 0x1000 + vm as u64, "KV_GET through 0x8010");
            // Its instance's own ID reaches it too.
            let inst = self.inst[vm as usize];
            let r = self.req(vm, inst, cmd::KV_GET, [1, 0, 0, 0])?;
            resp_ok(&r, vm, inst)?;
            ensure_eq!(r[4], 0x1000 + vm as u64, "KV_GET through the instance ID");
        }
        Ok(())
    }

    fn tees_distinct(&mut self) -> Outcome {
        for vm in VMS {
            self.whoami(vm)?;
        }
        for (i, a) in VMS.into_iter().enumerate() {
            for b in &VMS[..i] {
                ensure!(
                    self.inst[a as usize] != self.inst[*b as usize],
                    "two VMs share a TEE"
                );
            }
        }
        Ok(())
    }

    fn tee_state_private(&mut self) -> Outcome {
        let mut start = [0u64; 5];
        for vm in VMS {
            start[vm as usize] = self.tee(vm, cmd::COUNTER, [0; 4])?[0];
        }
        // Interleaved: VM v counts v times.
        for round in 1..=4u16 {
            for vm in VMS {
                if round <= vm {
                    self.tee(vm, cmd::COUNTER, [0; 4])?;
                }
            }
        }
        for vm in VMS {
            let [n, ..] = self.tee(vm, cmd::COUNTER, [0; 4])?;
            ensure_eq!(n, start[vm as usize] + vm as u64 + 1, "counter");
            let [v, ..] = self.tee(vm, cmd::KV_GET, [1, 0, 0, 0])?;
            ensure_eq!(v, 0x1000 + vm as u64, "key 1 holds the VM's own value");
        }
        Ok(())
    }

    fn expect_denied(&mut self, vm: u16, dst: u16) -> Outcome {
        let r = self.req(vm, dst, cmd::ECHO, [1, 2, 3, 4])?;
        ensure_eq!(code(&r), ffa::DENIED, "answer");
        Ok(())
    }

    fn other_instance_denied(&mut self) -> Outcome {
        for a in VMS {
            for b in VMS {
                if a != b {
                    let inst = self.inst[b as usize];
                    self.expect_denied(a, inst)?;
                }
            }
        }
        Ok(())
    }

    fn unbound_denied(&mut self) -> Outcome {
        for vm in VMS {
            for sp in [
                ids::SP2,
                ids::CRASH_DATA,
                ids::CRASH_UNDEF,
                ids::CRASH_STEAL,
            ] {
                self.expect_denied(vm, sp)?;
            }
        }
        Ok(())
    }

    fn tpm_shared(&mut self) -> Outcome {
        for vm in VMS {
            let r = self.req(vm, ids::TPM, cmd::ECHO, [7, 8, 9, 10])?;
            resp_ok(&r, vm, ids::TPM)?;
            ensure_eq!(r[4], 7, "echo");
            let mut q = req64(
                (vm as u64) << 16 | ids::TPM as u64,
                [0, TPM_GET_INTERFACE_VERSION, 0, 0, 0],
            );
            q[3] = 0;
            let r = self.smc(vm, q)?;
            ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "TPM answer");
            ensure_eq!(r[4], TPM_OK, "TPM status");
            ensure_eq!(r[5], TPM_INTERFACE_VERSION, "TPM interface version");
            // The TPM greets a requester that has notifications with an
            // indirect message (test_protocol::TPM_GREETING) when the VM has
            // RX/TX buffers: give them back, and drop its framework bit.
            let _ = ffa::call(ffa::RX_RELEASE, &[vm as u64]);
            let _ = ffa::call(ffa::NOTIFICATION_GET, &[vm as u64, 4]);
        }
        Ok(())
    }

    /// Each VM's TEE may notify that VM only (the per-user rule, end to
    /// end): the hypervisor binds bit `vm` of VM `vm` to its TEE (another
    /// VM's TEE: DENIED); each TEE sets it (for another VM: DENIED); the
    /// schedule receiver interrupt is pending after each set; INFO_GET lists
    /// the VMs; each VM gets exactly its own bit.
    fn notifications_per_user(&mut self) -> Outcome {
        for vm in VMS {
            let other = self.inst[vm as usize % 4 + 1];
            let w1 = |sender: u16| (sender as u64) << 16 | vm as u64;
            let b = ffa::call(ffa::NOTIFICATION_BIND, &[w1(other), 0, 1 << vm, 0]);
            ensure_eq!(ffa::code(&b), ffa::DENIED, "another VM's TEE bound");
            let b = ffa::call(
                ffa::NOTIFICATION_BIND,
                &[w1(self.inst[vm as usize]), 0, 1 << vm, 0],
            );
            ensure_eq!(b[0], ffa::SUCCESS_32, "BIND of the VM's own TEE");
        }
        for vm in VMS {
            let me = self.inst[vm as usize];
            let other_vm = vm % 4 + 1;
            let [w0, e, ..] = self.tee(
                vm,
                cmd::NOTIFY,
                [
                    ffa::NOTIFICATION_SET,
                    (me as u64) << 16 | other_vm as u64,
                    0,
                    1 << other_vm,
                ],
            )?;
            ensure_eq!(w0, ffa::ERROR_32, "a TEE set another VM's notification");
            ensure_eq!(e as u32 as i32, ffa::DENIED, "its error");
            crate::nsirq::sri_clear();
            let [w0, ..] = self.tee(
                vm,
                cmd::NOTIFY,
                [
                    ffa::NOTIFICATION_SET,
                    (me as u64) << 16 | vm as u64,
                    0,
                    1 << vm,
                ],
            )?;
            ensure_eq!(w0, ffa::SUCCESS_32, "the TEE's SET for its VM");
            ensure!(
                crate::nsirq::sri_pending(),
                "no schedule receiver interrupt after a TEE set its VM's notification"
            );
            crate::nsirq::sri_clear();
        }
        let i = ffa::call(ffa::NOTIFICATION_INFO_GET_64, &[]);
        ensure_eq!(i[0], ffa::SUCCESS_64, "INFO_GET_64");
        let lists = (i[2] >> 7) & 0x1F;
        let mut listed = [false; 5];
        for k in 0..lists as usize {
            let id = (i[3 + k / 4] >> (16 * (k % 4))) & 0xFFFF;
            if (1..=4).contains(&id) {
                listed[id as usize] = true;
            }
        }
        for vm in VMS {
            ensure!(
                listed[vm as usize],
                "INFO_GET did not list a VM with a notification"
            );
            let g = ffa::call(ffa::NOTIFICATION_GET, &[vm as u64, 1]);
            ensure_eq!(g[0], ffa::SUCCESS_32, "GET");
            ensure_eq!(g[2] & 0xFFFF_FFFF, 1 << vm, "the VM's bits from partitions");
        }
        Ok(())
    }

    /// A VM's bitmap lives as long as its TEE: after the VM (and so its
    /// TEE) is destroyed the SPMC has none for it (DESTROY: DENIED, BIND:
    /// INVALID_PARAMETERS); created again, the VM has a fresh, empty one
    /// (CREATE: DENIED, the old TEE's binding gone).
    fn bitmap_with_tee(&mut self) -> Outcome {
        let vm = 4;
        let old = self.inst[vm as usize];
        let ack = self.hyp.destroy_vm(vm).ok_or(fail("no VM 4"))?;
        ensure_eq!(ack.code(), 0, "VM destroyed ack");
        let d = ffa::call(ffa::NOTIFICATION_BITMAP_DESTROY, &[vm as u64]);
        ensure_eq!(ffa::code(&d), ffa::DENIED, "DESTROY after the TEE went");
        let b = ffa::call(
            ffa::NOTIFICATION_BIND,
            &[(ids::TPM as u64) << 16 | vm as u64, 0, 1, 0],
        );
        ensure_eq!(
            ffa::code(&b),
            ffa::INVALID_PARAMETERS,
            "BIND without a bitmap"
        );
        self.recreate(vm)?;
        let c = ffa::call(ffa::NOTIFICATION_BITMAP_CREATE, &[vm as u64, 1]);
        ensure_eq!(ffa::code(&c), ffa::DENIED, "CREATE: made with the new TEE");
        let new = self.inst[vm as usize];
        let u = ffa::call(
            ffa::NOTIFICATION_UNBIND,
            &[(old as u64) << 16 | vm as u64, 0, 1 << vm, 0],
        );
        ensure_eq!(ffa::code(&u), ffa::DENIED, "the old TEE's binding is gone");
        let b = ffa::call(
            ffa::NOTIFICATION_BIND,
            &[(new as u64) << 16 | vm as u64, 0, 1 << vm, 0],
        );
        ensure_eq!(b[0], ffa::SUCCESS_32, "BIND of the new TEE");
        Ok(())
    }

    fn sp1_bound(&mut self) -> Outcome {
        let r = self.req(1, ids::SP1, cmd::ADD, [2, 3, 0, 0])?;
        resp_ok(&r, 1, ids::SP1)?;
        ensure_eq!(r[4], 5, "sp1 adds for VM 1");
        for vm in [2, 3, 4] {
            self.expect_denied(vm, ids::SP1)?;
        }
        Ok(())
    }

    fn forged_own(&mut self) -> Outcome {
        for forged in [0u64, 1, 2, 4, 0x7FFF, 0x8000, 0x8100, 0xFFFF] {
            let w1 = forged << 16 | ids::VTEE_TEMPLATE as u64;
            let r = self.smc(3, req64(w1, [cmd::KV_GET, 1, 0, 0, 0]))?;
            resp_ok(&r, 3, self.inst[3])?;
            ensure_eq!(r[4], 0x1003, "VM 3's own value");
            // Garbage in the upper half of x1 is no way around it either.
            let w1 = 0xFFFF_FFFF_0000_0000 | forged << 16 | ids::VTEE_TEMPLATE as u64;
            let r = self.smc(3, req64(w1, [cmd::WHOAMI, 0, 0, 0, 0]))?;
            resp_ok(&r, 3, self.inst[3])?;
            ensure_eq!(r[4], self.inst[3], "VM 3's own TEE");
        }
        Ok(())
    }

    fn forged_nothing(&mut self) -> Outcome {
        // VM 2 posing as VM 1: not sp1 (bound to VM 1), not VM 1's TEE.
        let inst1 = self.inst[1];
        for dst in [ids::SP1, inst1] {
            let r = self.smc(2, req64(1 << 16 | dst as u64, [cmd::ECHO, 0, 0, 0, 0]))?;
            ensure_eq!(code(&r), ffa::DENIED, "VM 2 as VM 1");
        }
        // VM 4 posing as the hypervisor (0): not the partitions only it reaches.
        for dst in [ids::SP2, ids::CRASH_DATA] {
            let r = self.smc(4, req64(dst as u64, [cmd::ECHO, 0, 0, 0, 0]))?;
            ensure_eq!(code(&r), ffa::DENIED, "VM 4 as endpoint 0");
        }
        // And VM 1's TEE still has VM 1's value.
        let [v, ..] = self.tee(1, cmd::KV_GET, [1, 0, 0, 0])?;
        ensure_eq!(v, 0x1001, "VM 1's value");
        Ok(())
    }

    fn hvc_conduit(&mut self) -> Outcome {
        let w1 = 2 << 16 | ids::VTEE_TEMPLATE as u64;
        let r = self
            .hyp
            .hvc(2, req64(w1, [cmd::KV_GET, 1, 0, 0, 0]))
            .map_err(|f| stopped(2, f))?;
        resp_ok(&r, 2, self.inst[2])?;
        ensure_eq!(r[4], 0x1002, "VM 2's value by HVC");
        Ok(())
    }

    /// The VM's TEE yields (FFA_YIELD): the hypervisor gives it CPU time
    /// with FFA_RUN until it answers; the VM sees one request and its response.
    fn tee_yield(&mut self) -> Outcome {
        let before = self.hyp.forwarded_of(1);
        let [w0, ..] = self.tee(1, cmd::YIELD, [0; 4])?;
        ensure_eq!(w0, ffa::SUCCESS_32, "what FFA_YIELD returned in the TEE");
        ensure_eq!(
            self.hyp.forwarded_of(1) - before,
            2,
            "calls forwarded (the request, one FFA_RUN)"
        );
        let [v, ..] = self.tee(1, cmd::KV_GET, [1, 0, 0, 0])?;
        ensure_eq!(v, 0x1001, "the TEE afterwards");
        Ok(())
    }

    /// SMCCC v1.2: x8-x17 of a VM's REQ_64 come back as they were, through
    /// the trap, the hypervisor's SMC and the SPMC.
    fn upper_preserved(&mut self) -> Outcome {
        let mut q = req64(3 << 16 | ids::VTEE_TEMPLATE as u64, [cmd::ECHO, 1, 2, 3, 4]);
        for (i, v) in q.iter_mut().enumerate().skip(8) {
            *v = 0x3333_0000 + i as u64;
        }
        let r = self.smc(3, q)?;
        resp_ok(&r, 3, self.inst[3])?;
        for (i, v) in r.iter().enumerate().skip(8) {
            ensure_eq!(*v, 0x3333_0000 + i as u64, "x8-x17 after the call");
        }
        Ok(())
    }

    fn req32(&mut self) -> Outcome {
        let mut q = req64(4 << 16 | ids::VTEE_TEMPLATE as u64, [cmd::ADD, 40, 2, 0, 0]);
        q[0] = ffa::MSG_SEND_DIRECT_REQ_32;
        let r = self.smc(4, q)?;
        ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_32, "response function");
        ensure_eq!(r[1] as u32, (self.inst[4] as u32) << 16 | 4, "response w1");
        ensure_eq!(r[4], 42, "ADD");
        Ok(())
    }

    fn req2(&mut self, vm: u16, w1: u64, uuid: [u32; 4], x4_x6: [u64; 3]) -> Result<Regs, Fail> {
        let mut q = [0u64; 18];
        q[0] = ffa::MSG_SEND_DIRECT_REQ2_64;
        q[1] = w1;
        q[2] = uuid[0] as u64 | (uuid[1] as u64) << 32;
        q[3] = uuid[2] as u64 | (uuid[3] as u64) << 32;
        q[4..7].copy_from_slice(&x4_x6);
        self.smc(vm, q)
    }

    fn req2_own(&mut self) -> Outcome {
        for vm in VMS {
            let r = self.smc(vm, req_regs(ffa::VERSION, &[ffa::V1_2 as u64]))?;
            ensure_eq!(r[0], ffa::V1_2, "FFA_VERSION(1.2)");
            let w1 = (vm as u64) << 16 | ids::VTEE_TEMPLATE as u64;
            let r = self.req2(vm, w1, uuids::VTEE, [cmd::KV_GET, 1, 0])?;
            ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP2_64, "REQ2 answer");
            ensure_eq!(
                r[1] as u32,
                (self.inst[vm as usize] as u32) << 16 | vm as u32,
                "RESP2 w1"
            );
            ensure_eq!(r[4], status::OK, "status");
            ensure_eq!(r[5], 0x1000 + vm as u64, "the VM's own value");
            // The nil UUID too; a UUID the instance does not have is refused.
            let r = self.req2(vm, w1, [0; 4], [cmd::KV_GET, 1, 0])?;
            ensure_eq!(
                r[0],
                ffa::MSG_SEND_DIRECT_RESP2_64,
                "REQ2 (nil UUID) answer"
            );
            ensure_eq!(r[5], 0x1000 + vm as u64, "the VM's own value");
            let r = self.req2(vm, w1, uuids::SP1, [cmd::KV_GET, 1, 0])?;
            ensure_eq!(code(&r), ffa::INVALID_PARAMETERS, "REQ2 with sp1's UUID");
        }
        Ok(())
    }

    fn req2_needs_version(&mut self) -> Outcome {
        let r = self.smc(2, req_regs(ffa::VERSION, &[0x1_0001]))?;
        ensure_eq!(r[0], ffa::V1_2, "FFA_VERSION(1.1)");
        let w1 = 2 << 16 | ids::VTEE_TEMPLATE as u64;
        let before = self.hyp.forwarded_of(2);
        let refused = self.req2(2, w1, uuids::VTEE, [cmd::ECHO, 0, 0])?;
        let after = self.hyp.forwarded_of(2);
        let r = self.smc(2, req_regs(ffa::VERSION, &[ffa::V1_2 as u64]))?;
        ensure_eq!(r[0], ffa::V1_2, "FFA_VERSION(1.2)");
        ensure_eq!(code(&refused), ffa::NOT_SUPPORTED, "REQ2 at v1.1");
        ensure_eq!(after, before, "calls forwarded");
        Ok(())
    }

    /// The IDs VM `vm` discovers (PARTITION_INFO_GET_REGS, `uuid`, x7 = `x7`).
    fn discover(&mut self, vm: u16, uuid: [u32; 4], x7: u64) -> Result<Vec<u16>, Fail> {
        let mut out = Vec::new();
        let mut start = 0u64;
        loop {
            let mut q = [0u64; 18];
            q[0] = ffa::PARTITION_INFO_GET_REGS_64;
            q[1] = uuid[0] as u64 | (uuid[1] as u64) << 32;
            q[2] = uuid[2] as u64 | (uuid[3] as u64) << 32;
            q[3] = start;
            q[7] = x7;
            let r = self.smc(vm, q)?;
            if r[0] != ffa::SUCCESS_64 {
                say!(
                    "    (VM {vm}: PARTITION_INFO_GET_REGS answered {:#x}, error {})",
                    r[0],
                    code(&r)
                );
                return Err(Fail {
                    what: "PARTITION_INFO_GET_REGS answer",
                    values: Some((r[0], ffa::SUCCESS_64)),
                });
            }
            let last = r[2] & 0xFFFF;
            let end = (r[2] >> 16) & 0xFFFF;
            ensure!(end >= start && end - start < 5, "descriptor indices");
            for i in 0..=(end - start) as usize {
                out.push(r[3 + i * 3] as u16);
            }
            if end >= last {
                return Ok(out);
            }
            start = end + 1;
        }
    }

    fn discovery(&mut self) -> Outcome {
        for vm in VMS {
            let mut got = self.discover(vm, [0; 4], 0)?;
            got.sort_unstable();
            let mut want = Vec::new();
            if vm == 1 {
                want.push(ids::SP1);
            }
            want.push(ids::TPM);
            want.push(self.inst[vm as usize]);
            want.sort_unstable();
            if got != want {
                say!("    (VM {vm} discovers {got:x?}, may reach {want:x?})");
                return Err(fail("discovered partitions"));
            }
        }
        Ok(())
    }

    fn discovery_forged(&mut self) -> Outcome {
        // VM 2 names VM 1 (and the hypervisor) in x7: it still sees its own view.
        for forged in [1u64, 0] {
            let got = self.discover(2, [0; 4], forged)?;
            ensure!(!got.contains(&ids::SP1), "VM 2 sees sp1");
            ensure!(!got.contains(&self.inst[1]), "VM 2 sees VM 1's TEE");
            ensure!(got.contains(&self.inst[2]), "VM 2 sees its own TEE");
        }
        Ok(())
    }

    fn discovery_vtee_uuid(&mut self) -> Outcome {
        for vm in VMS {
            let got = self.discover(vm, uuids::VTEE, 0)?;
            ensure_eq!(got.len(), 1, "descriptors for the vTEE UUID");
            ensure_eq!(got[0], self.inst[vm as usize], "the VM's own TEE");
        }
        Ok(())
    }

    /// FFA_PARTITION_INFO_GET, count only (flag bit 0): the SPMC counts
    /// what the VM may reach, whatever the VM wrote in w7.
    fn discovery_count(&mut self) -> Outcome {
        for vm in VMS {
            let want = if vm == 1 { 3 } else { 2 };
            for forged in [0u64, 1, 2] {
                let mut q = req_regs(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 1]);
                q[7] = forged;
                let r = self.smc(vm, q)?;
                ensure_eq!(r[0], ffa::SUCCESS_32, "PARTITION_INFO_GET answer");
                ensure_eq!(r[2], want, "partitions the VM may reach");
            }
            let q = req_regs(
                ffa::PARTITION_INFO_GET,
                &[
                    uuids::SP1[0] as u64,
                    uuids::SP1[1] as u64,
                    uuids::SP1[2] as u64,
                    uuids::SP1[3] as u64,
                    1,
                ],
            );
            let r = self.smc(vm, q)?;
            if vm == 1 {
                ensure_eq!(r[2], 1, "VM 1 counts sp1");
            } else {
                ensure_eq!(
                    code(&r),
                    ffa::INVALID_PARAMETERS,
                    "sp1 is nothing to another VM"
                );
            }
        }
        Ok(())
    }

    fn vm_availability(&mut self) -> Outcome {
        let before = self.hyp.forwarded_of(2);
        // VM 2 tries to create a TEE for VM 9 and to destroy VM 1's.
        for (kind, target) in [(fwk::VM_CREATED, 9u64), (fwk::VM_DESTROYED, 1)] {
            let mut q = req64(
                ids::VTEE_TEMPLATE as u64,
                [0xFFFF_FFFF, 0xFFFF_FFFF, target, 0, 0],
            );
            q[0] = ffa::MSG_SEND_DIRECT_REQ_32;
            q[2] = (fwk::FLAG | kind) as u64;
            let r = self.smc(2, q)?;
            ensure_eq!(code(&r), ffa::DENIED, "VM availability message from a VM");
        }
        // Any framework message: the version request the SPMD sends.
        let mut q = req64(0x8000, [ffa::V1_2 as u64, 0, 0, 0, 0]);
        q[2] = (fwk::FLAG | 8) as u64;
        ensure_eq!(code(&self.smc(2, q)?), ffa::DENIED, "framework message");
        ensure_eq!(
            self.hyp.forwarded_of(2),
            before,
            "calls the hypervisor forwarded to the SPMC"
        );
        // Nothing happened: VM 9 has no TEE, VM 1's still holds its value.
        ensure_eq!(
            ffa::vm_destroyed(9).code(),
            ffa::INVALID_PARAMETERS,
            "VM 9 has no TEE"
        );
        let [v, ..] = self.tee(1, cmd::KV_GET, [1, 0, 0, 0])?;
        ensure_eq!(v, 0x1001, "VM 1's TEE is alive");
        Ok(())
    }

    fn unforwarded(&mut self) -> Outcome {
        let before = self.hyp.forwarded_of(3);
        // (RX/TX buffers, memory sharing and indirect messages are
        // forwarded since issue 18: the `vm-mem-*` checks.)
        for (f, a) in [
            // Descriptors need an RX buffer the SPMC fills for the VM: not here.
            (ffa::PARTITION_INFO_GET, [0, 0, 0]),
            (ffa::RUN, [(ids::SP1 as u64) << 16, 0, 0]),
            (ffa::MSG_WAIT, [0, 0, 0]),
            (ffa::YIELD, [0, 0, 0]),
            (ffa::CONSOLE_LOG_64, [1, 0x41, 0]),
            (ffa::MSG_SEND_DIRECT_RESP_64, [ids::SP1 as u64, 0, 0]),
        ] {
            let r = self.smc(3, req_regs(f, &a))?;
            if code(&r) != ffa::NOT_SUPPORTED {
                say!("    (function {f:#x} answered {:#x} {:#x})", r[0], r[2]);
                return Err(fail("not refused with NOT_SUPPORTED"));
            }
        }
        let r = self.smc(3, req_regs(ffa::FEATURES, &[ffa::RUN]))?;
        ensure_eq!(code(&r), ffa::NOT_SUPPORTED, "FFA_FEATURES(RUN)");
        ensure_eq!(
            self.hyp.forwarded_of(3),
            before,
            "calls the hypervisor forwarded to the SPMC"
        );
        let r = self.smc(3, req_regs(ffa::FEATURES, &[ffa::MSG_SEND_DIRECT_REQ_64]))?;
        ensure_eq!(r[0], ffa::SUCCESS_32, "FFA_FEATURES(DIRECT_REQ_64)");
        // Not even PSCI: a VM cannot turn the machine off (we are still here).
        let r = self.smc(3, req_regs(ffa::PSCI_SYSTEM_OFF, &[]))?;
        ensure_eq!(r[0], ffa::SMCCC_NOT_SUPPORTED, "PSCI SYSTEM_OFF from a VM");
        Ok(())
    }

    fn vm_to_vm(&mut self) -> Outcome {
        let before = self.hyp.forwarded_of(1);
        for dst in [0u16, 2, 0x7FFF] {
            let r = self.req(1, dst, cmd::ECHO, [0; 4])?;
            ensure_eq!(
                code(&r),
                ffa::DENIED,
                "direct request to a non-secure endpoint"
            );
        }
        ensure_eq!(self.hyp.forwarded_of(1), before, "calls forwarded");
        Ok(())
    }

    fn double_create(&mut self) -> Outcome {
        ensure_eq!(
            ffa::vm_created(1).code(),
            ffa::INVALID_PARAMETERS,
            "second VM created for VM 1"
        );
        // VM 1 keeps the TEE it had.
        let [v, ..] = self.tee(1, cmd::KV_GET, [1, 0, 0, 0])?;
        ensure_eq!(v, 0x1001, "VM 1's TEE kept its state");
        Ok(())
    }

    fn availability_from_vm_sender(&mut self) -> Outcome {
        // Endpoint 0 can write any sender; the SPMC still takes these
        // messages from endpoint 0 only.
        let mut r = [0u64; 18];
        r[0] = ffa::MSG_SEND_DIRECT_REQ_32;
        r[1] = 5 << 16 | ids::VTEE_TEMPLATE as u64;
        r[2] = (fwk::FLAG | fwk::VM_CREATED) as u64;
        r[3] = 0xFFFF_FFFF;
        r[4] = 0xFFFF_FFFF;
        r[5] = 5;
        ffa::smc(&mut r);
        ensure_eq!(code(&r), ffa::DENIED, "VM created with sender 5");
        ensure_eq!(
            ffa::vm_destroyed(5).code(),
            ffa::INVALID_PARAMETERS,
            "no TEE was made for VM 5"
        );
        Ok(())
    }

    fn endpoint0(&mut self) -> Outcome {
        for vm in VMS {
            let inst = self.inst[vm as usize];
            let r = ffa::request_as(0, inst, [cmd::ECHO, 0, 0, 0, 0]);
            ensure_eq!(code(&r), ffa::DENIED, "endpoint 0 to an instance");
        }
        let r = ffa::request_as(0, ids::VTEE_TEMPLATE, [cmd::ECHO, 0, 0, 0, 0]);
        ensure_eq!(
            code(&r),
            ffa::DENIED,
            "endpoint 0 to the template (it has no TEE)"
        );
        let r = ffa::request_as(0, ids::SP2, [cmd::ECHO, 5, 0, 0, 0]);
        resp_ok(&r, 0, ids::SP2)?;
        ensure_eq!(r[4], 5, "endpoint 0 reaches the static partitions");
        Ok(())
    }

    /// Endpoint 0 (the hypervisor itself) discovers the static partitions,
    /// no instance (and not the template), while instances are alive.
    fn discovery_endpoint0(&mut self) -> Outcome {
        let mut got = Vec::new();
        let mut start = 0u64;
        loop {
            let r = ffa::call(ffa::PARTITION_INFO_GET_REGS_64, &[0, 0, start, 0, 0, 0, 0]);
            ensure_eq!(r[0], ffa::SUCCESS_64, "PARTITION_INFO_GET_REGS answer");
            let (last, end) = (r[2] & 0xFFFF, (r[2] >> 16) & 0xFFFF);
            ensure!(end >= start && end - start < 5, "descriptor indices");
            for i in 0..=(end - start) as usize {
                got.push(r[3 + i * 3] as u16);
            }
            if end >= last {
                break;
            }
            start = end + 1;
        }
        got.sort_unstable();
        got.dedup();
        let statics = [
            ids::SP1,
            ids::SP2,
            ids::TPM,
            ids::CRASH_DATA,
            ids::CRASH_UNDEF,
            ids::CRASH_STEAL,
        ];
        let strays = got
            .iter()
            .any(|&id| is_instance(id as u64) || id == ids::VTEE_TEMPLATE);
        if strays || statics.iter().any(|s| !got.contains(s)) {
            say!("    (endpoint 0 discovers {got:x?}: want {statics:x?}, no template or instance)");
            return Err(fail("discovered partitions"));
        }
        Ok(())
    }

    fn tee_write(&mut self, vm: u16, off: u64, v: u64) -> Outcome {
        self.tee(vm, cmd::WRITE, [layout::RAM_IPA + off, v, 0, 0])?;
        Ok(())
    }

    fn tee_read(&mut self, vm: u16, off: u64) -> Result<u64, Fail> {
        Ok(self.tee(vm, cmd::READ, [layout::RAM_IPA + off, 0, 0, 0])?[0])
    }

    fn recreate_fresh(&mut self) -> Outcome {
        let secret = 0x5ec2_e7ab_cdef_0002;
        self.tee(2, cmd::KV_PUT, [0, secret, 0, 0])?;
        for _ in 0..3 {
            self.tee(2, cmd::COUNTER, [0; 4])?;
        }
        for (i, off) in TEE_RAM_OFFSETS.into_iter().enumerate() {
            self.tee_write(2, off, secret + i as u64)?;
        }
        for (i, off) in TEE_RAM_OFFSETS.into_iter().enumerate() {
            ensure_eq!(self.tee_read(2, off)?, secret + i as u64, "pattern written");
        }
        self.poke(2, VM_RAM_PATTERN, secret)?;
        let old = self.inst[2];
        ensure_eq!(
            self.hyp.destroy_vm(2).map_or(i32::MIN, Ack::code),
            0,
            "VM destroyed ack"
        );
        self.hyp
            .create_vm(2)
            .map_err(|_| fail("VM 2 not created again"))?;
        let new = self.whoami(2)?;
        ensure!(new != old, "a new instance ID");
        let [kv, ..] = self.tee(2, cmd::KV_GET, [0; 4])?;
        ensure_eq!(kv, 0, "KV_GET in the new TEE");
        let [n, ..] = self.tee(2, cmd::COUNTER, [0; 4])?;
        ensure_eq!(n, 1, "COUNTER in the new TEE");
        for off in TEE_RAM_OFFSETS {
            ensure_eq!(
                self.tee_read(2, off)?,
                0,
                "the new TEE's RAM where the secret was"
            );
        }
        ensure_eq!(self.peek(2, VM_RAM_PATTERN)?, 0, "the new VM's RAM");
        // The old ID is nobody's now.
        let r = self.req(2, old, cmd::ECHO, [0; 4])?;
        ensure!(code(&r) != 0, "the old instance ID answers");
        // The others are untouched.
        for vm in [1, 3, 4] {
            let [v, ..] = self.tee(vm, cmd::KV_GET, [1, 0, 0, 0])?;
            ensure_eq!(v, 0x1000 + vm as u64, "another VM's TEE");
        }
        self.tee(2, cmd::KV_PUT, [1, 0x1002, 0, 0])?;
        Ok(())
    }

    fn tee_fault(&mut self, vm: u16, addr: u64) -> Outcome {
        self.tee_fault_with(vm, cmd::READ, addr)
    }

    /// `vm`'s TEE runs command `c` with arg0 `arg`, which must fault it.
    fn tee_fault_with(&mut self, vm: u16, c: u64, arg: u64) -> Outcome {
        let r = self.req(vm, ids::VTEE_TEMPLATE, c, [arg, 0, 0, 0])?;
        self.tee_fault_seen(vm, &r)
    }

    /// `r` answered a request that made `vm`'s TEE fault: ABORTED, the TEE
    /// stays aborted, and the others go on.
    fn tee_fault_seen(&mut self, vm: u16, r: &Regs) -> Outcome {
        ensure_eq!(code(r), ffa::ABORTED, "the faulting request");
        let r = self.req(vm, ids::VTEE_TEMPLATE, cmd::ECHO, [0; 4])?;
        ensure_eq!(code(&r), ffa::ABORTED, "the aborted TEE afterwards");
        for other in [1, 2] {
            let [v, ..] = self.tee(other, cmd::KV_GET, [1, 0, 0, 0])?;
            ensure_eq!(v, 0x1000 + other as u64, "another VM's TEE");
        }
        let r = self.req(1, ids::TPM, cmd::ECHO, [3, 0, 0, 0])?;
        resp_ok(&r, 1, ids::TPM)?;
        Ok(())
    }

    /// VM 4's TEE reads through the IPAs where a wrong table would hand it
    /// another instance's page. Pool allocations follow each other (an
    /// instance's image, then its RAM, then the next instance's image), so
    /// the page just past its RAM region is the next allocation's first page
    /// and the page just below its image the previous allocation's last one
    /// (another TEE's RAM top, where the secret's last word lies) whenever a
    /// region is mapped one page too long or too low; the host test
    /// `walked_stage2_tables_map_no_page_of_another_partition` shows IPA
    /// RAM_IPA + 16 pages mapping another instance's page when the RAM region
    /// is mapped one page long. Last, the pool's instance area taken as an
    /// IPA (an identity map). VM 2's TEE first writes a secret in its own
    /// RAM; each read must abort VM 4's TEE (made again between reads), none
    /// may return the secret, and VM 2's TEE keeps it.
    fn tee_cross_reads(&mut self) -> Outcome {
        const SECRET: u64 = 0x5EC2_E7C0_FFEE_0002;
        for off in TEE_RAM_OFFSETS {
            self.tee_write(2, off, SECRET)?;
        }
        let targets = [
            layout::RAM_IPA + TEE_RAM_PAGES * 4096,
            layout::IMAGE_IPA - 4096,
            POOL_BASE + 0x1_0000,
        ];
        for (i, addr) in targets.into_iter().enumerate() {
            if i > 0 {
                self.recreate(4)?;
                self.tee(4, cmd::KV_PUT, [1, 0x1004, 0, 0])?;
            }
            let r = self.req(4, ids::VTEE_TEMPLATE, cmd::READ, [addr, 0, 0, 0])?;
            if r[0] == ffa::MSG_SEND_DIRECT_RESP_64 {
                say!("    (VM 4's TEE read {:#x} at IPA {addr:#x})", r[4]);
                ensure!(r[4] != SECRET, "a TEE read another TEE's secret");
            }
            self.tee_fault_seen(4, &r)?;
        }
        for off in TEE_RAM_OFFSETS {
            ensure_eq!(
                self.tee_read(2, off)?,
                SECRET,
                "VM 2's TEE keeps its secret"
            );
        }
        Ok(())
    }

    fn recover(&mut self) -> Outcome {
        for vm in [3, 4] {
            self.recreate(vm)?;
            self.tee(vm, cmd::KV_PUT, [1, 0x1000 + vm as u64, 0, 0])?;
        }
        self.own_tee()
    }

    fn scale_ids() -> impl Iterator<Item = u16> {
        SCALE_FIRST..SCALE_FIRST + SCALE_COUNT
    }

    fn scale_create(&mut self) -> Outcome {
        for id in Self::scale_ids() {
            let ack = ffa::vm_created(id);
            if !ack.ok() {
                say!("    (VM {id:#x}: {ack:?})");
                return Err(fail("VM created not acknowledged"));
            }
        }
        Ok(())
    }

    fn scale_answer(&mut self) -> Outcome {
        let mut seen: Vec<u16> = VMS.iter().map(|v| self.inst[*v as usize]).collect();
        for id in Self::scale_ids() {
            let r = ffa::request_as(id, ids::VTEE_TEMPLATE, [cmd::WHOAMI, 0, 0, 0, 0]);
            ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "WHOAMI answer");
            let inst = (r[1] >> 16) as u16;
            ensure_eq!(r[4], inst, "the instance's own ID");
            ensure!(is_instance(r[4]), "an instance answered");
            ensure!(!seen.contains(&inst), "two VMs share a TEE");
            seen.push(inst);
            let r = ffa::request_as(
                id,
                ids::VTEE_TEMPLATE,
                [cmd::KV_PUT, 0, id as u64 * 3, 0, 0],
            );
            resp_ok(&r, id, inst)?;
        }
        ensure_eq!(seen.len(), 44, "live TEEs");
        for id in Self::scale_ids() {
            let r = ffa::request_as(id, ids::VTEE_TEMPLATE, [cmd::KV_GET, 0, 0, 0, 0]);
            ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "KV_GET answer");
            ensure_eq!(r[4], id as u64 * 3, "each TEE kept its own value");
            // Discovery as that VM (the hypervisor names it in x7).
            let mut q = [0u64; 8];
            q[1] = uuids::VTEE[0] as u64 | (uuids::VTEE[1] as u64) << 32;
            q[2] = uuids::VTEE[2] as u64 | (uuids::VTEE[3] as u64) << 32;
            q[7] = id as u64;
            let d = ffa::call(ffa::PARTITION_INFO_GET_REGS_64, &q[1..]);
            ensure_eq!(d[0], ffa::SUCCESS_64, "discovery as the VM");
            ensure_eq!(d[2] & 0xFFFF, 0, "one descriptor");
            ensure_eq!(d[3] as u16, r[1] >> 16, "the VM's own TEE");
        }
        Ok(())
    }

    fn scale_destroy(&mut self) -> Outcome {
        for id in Self::scale_ids() {
            ensure_eq!(ffa::vm_destroyed(id).code(), 0, "VM destroyed ack");
        }
        for id in Self::scale_ids() {
            let r = ffa::request_as(id, ids::VTEE_TEMPLATE, [cmd::ECHO, 0, 0, 0, 0]);
            ensure_eq!(code(&r), ffa::DENIED, "a destroyed VM's TEE");
            ensure_eq!(
                ffa::vm_destroyed(id).code(),
                ffa::INVALID_PARAMETERS,
                "VM destroyed twice"
            );
        }
        Ok(())
    }

    /// Memory comes back. The normal world cannot read the pool's free-page
    /// count (no FF-A ABI reports it; the host test
    /// `scale_rounds_give_every_pool_page_back` checks it exactly), so this
    /// check makes a leak visible instead: the 40 scale TEEs are made and
    /// destroyed again, round after round, until more TEEs have passed
    /// through the pool than it has pages. A TEE that kept even one page
    /// (or its tables on the heap) would have run the pool or the heap dry,
    /// and a VM created would be refused. The first two rounds also check
    /// that each TEE is fresh.
    fn scale_again(&mut self) -> Outcome {
        let rounds = POOL_PAGES
            .div_ceil(SCALE_COUNT as u64)
            .min(crate::board::SCALE_ROUNDS_MAX);
        for round in 0..rounds {
            self.scale_create()?;
            if round >= 2 {
                for id in Self::scale_ids() {
                    ensure_eq!(ffa::vm_destroyed(id).code(), 0, "VM destroyed ack");
                }
                continue;
            }
            for id in Self::scale_ids() {
                let r = ffa::request_as(id, ids::VTEE_TEMPLATE, [cmd::KV_GET, 0, 0, 0, 0]);
                ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "KV_GET answer");
                ensure_eq!(r[4], 0, "a fresh TEE");
            }
            self.scale_destroy()?;
        }
        say!(
            "    ({} TEEs made and destroyed, {POOL_PAGES} pages in the pool)",
            rounds * SCALE_COUNT as u64
        );
        self.own_tee()
    }

    fn exhaustion(&mut self) -> Outcome {
        let mut made = 0u16;
        let mut last = Ack::Status(0);
        for id in SCALE_FIRST..=SCALE_FIRST + crate::board::VTEE_INSTANCES {
            last = ffa::vm_created(id);
            if !last.ok() {
                break;
            }
            made += 1;
        }
        for id in SCALE_FIRST..SCALE_FIRST + made {
            ensure_eq!(ffa::vm_destroyed(id).code(), 0, "VM destroyed ack");
        }
        say!("    ({made} more TEEs made before {last:?})");
        ensure_eq!(last.code(), ffa::NO_MEMORY, "when instances run out");
        ensure!(made >= 32, "at least 32 more TEEs");
        ensure!(
            made <= crate::board::VTEE_INSTANCES - VMS.len() as u16,
            "no more TEEs than instance IDs"
        );
        // Everything came back.
        ensure!(
            ffa::vm_created(SCALE_FIRST).ok(),
            "a TEE after all were freed"
        );
        ensure!(ffa::vm_destroyed(SCALE_FIRST).ok(), "and its destruction");
        Ok(())
    }
}

/// x0 = `f`, x1.. = `args`, the rest zero.
fn req_regs(f: u64, args: &[u64]) -> Regs {
    let mut r = [0u64; 18];
    r[0] = f;
    r[1..=args.len()].copy_from_slice(args);
    r
}
