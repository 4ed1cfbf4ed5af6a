//! The rpi4 checks of donations, fragmented sends, the VMs' pinned
//! buffers and indirect messages (`share.rs`): the same check functions
//! as the vtee stage's `vm-mem-donate*`, `vm-mem-frag-tx*`,
//! `vm-mem-buffers-pinned` and `vm-msg-send2-*`
//! (`test_protocol::vm_checks`), run with this board's guests. Every FF-A
//! call in them is made by the guest at EL1 and trapped by the VM layer;
//! every load and store is the guest's own, through its stage 2.

use alloc::format;
use alloc::string::String;

use test_protocol::ids;
use test_protocol::mem::func;
use test_protocol::vm_checks::{self as shared, Answer, Fail, Outcome, Vms};

use crate::guests::{self, Op, Outcome as Ran};
use crate::users::{DOC_PAGE, Layer, RX_PAGE, Report, TX_PAGE, ok};

const PAGE: u64 = 0x1000;

fn fail(what: &'static str) -> Fail {
    Fail { what, values: None }
}

impl Vms for Layer {
    fn call(&mut self, vm: u16, x: Answer) -> Result<Answer, Fail> {
        let a = self.vm_call(vm, x);
        if a == [u64::MAX; 8] {
            // The guest faulted or failed (logged by `vm_call`).
            return Err(fail("the guest did not hand its answer back"));
        }
        Ok(a)
    }

    fn write(&mut self, _vm: u16, ipa: u64, bytes: &[u8]) -> Outcome {
        // General VMs' RAM is at IPA = PA.
        guests::with_ram(ipa & !(PAGE - 1), PAGE, |m| {
            let at = (ipa & (PAGE - 1)) as usize;
            m[at..at + bytes.len()].copy_from_slice(bytes)
        })
        .map_err(|why| {
            log::warn!("rpi4: write at {ipa:#x}: {why}");
            fail("the VM's RAM could not be written")
        })
    }

    fn load(&mut self, vm: u16, ipa: u64) -> Result<u64, Fail> {
        match self.guest(vm, Op::Load(ipa), [0; 8]) {
            Ok(Ran::Done(x)) => Ok(x[0]),
            Ok(Ran::Fault(_)) => Err(fail("the VM's load faulted")),
            Err(why) => {
                log::warn!("rpi4: VM {vm}: {why}");
                Err(fail("the guest did not run"))
            }
        }
    }

    fn not_mapped(&mut self, vm: u16, ipa: u64) -> Outcome {
        // A guest goes on after a stage-2 fault: it loads the page itself.
        match self.guest(vm, Op::Load(ipa), [0; 8]) {
            Ok(Ran::Fault(at)) if at == ipa => Ok(()),
            Ok(Ran::Fault(_)) => Err(fail("the VM faulted elsewhere")),
            Ok(Ran::Done(_)) => Err(fail("the VM still reads a page it gave away")),
            Err(why) => {
                log::warn!("rpi4: VM {vm}: {why}");
                Err(fail("the guest did not run"))
            }
        }
    }

    fn store(&mut self, vm: u16, ipa: u64, value: u64) -> Outcome {
        match self.guest(vm, Op::Store(ipa, value), [0; 8]) {
            Ok(Ran::Done(_)) => Ok(()),
            Ok(Ran::Fault(_)) => Err(fail("the VM's store faulted")),
            Err(why) => {
                log::warn!("rpi4: VM {vm}: {why}");
                Err(fail("the guest did not run"))
            }
        }
    }

    fn away(&mut self, vm: u16) -> u16 {
        self.shares_of(vm).away()
    }

    fn held(&mut self, vm: u16) -> usize {
        self.shares_of(vm).handles().count()
    }

    fn tee_address(&self, _vm: u16, ipa: u64) -> Result<u64, Fail> {
        // One IPA space, general-VM RAM at IPA = PA: the TEE sees the
        // VM's address.
        Ok(ipa)
    }

    fn ram(&self, vm: u16) -> u64 {
        guests::ram(vm)
    }

    fn tx(&self, vm: u16) -> u64 {
        guests::ram(vm) + TX_PAGE
    }

    fn rx(&self, vm: u16) -> u64 {
        guests::ram(vm) + RX_PAGE
    }

    fn tee(&mut self, vm: u16, command: u64, args: [u64; 4]) -> Result<[u64; 4], Fail> {
        ok(&self.req(vm, ids::VTEE_TEMPLATE, command, args)).map_err(|why| {
            log::warn!("rpi4: VM {vm}'s TEE: {why}");
            fail("the VM's TEE did not answer OK")
        })
    }

    fn forwarded(&mut self, _vm: u16) -> Option<u64> {
        Some(self.forwarded)
    }
}

fn text(r: Outcome) -> Result<(), String> {
    r.map_err(|f| match f.values {
        Some((found, want)) => format!("{}: {found:#x}, expected {want:#x}", f.what),
        None => String::from(f.what),
    })
}

/// The checks before VM 3 is destroyed: VMs 1 and 2 have their RX/TX pair
/// (`rpi4-vm{1,2}-rxtx-map`), VM 3 none yet. `tees` are the users' trusted
/// VMs' instance IDs (index: VM - 1).
pub fn run(l: &mut Layer, r: &mut Report, tees: &[u16]) {
    r.check("rpi4-vm3-donate-64-gone-for-good", || {
        // VM 3 is destroyed later, its RAM zeroed:
        // `rpi4-vm3-recreated-donated-page-zeroed`.
        let page = guests::ram(3) + DOC_PAGE + PAGE;
        text(shared::donate_gone_for_good(l, 3, func::DONATE_64, page))
    });
    r.check("rpi4-vm1-donate-beyond-own-tee-denied", || {
        let other = tees.get(1).copied().ok_or("no instance of VM 2")?;
        let page = guests::ram(1) + DOC_PAGE + 3 * PAGE;
        text(shared::donate_beyond_own_tee(
            l,
            1,
            page,
            &[ids::TPM, ids::SP1, other],
        ))
    });
    r.check("rpi4-vm2-donate-reclaimed-before-retrieve", || {
        // Named by its instance's ID.
        let own = tees.get(1).copied().ok_or("no instance of VM 2")?;
        let page = guests::ram(2) + DOC_PAGE + 2 * PAGE;
        text(shared::donate_reclaim_early(l, 2, page, own))
    });
    r.check("rpi4-vm1-frag-tx-lend-three-pages", || {
        let ram = guests::ram(1) + DOC_PAGE;
        text(shared::lend_in_fragments(
            l,
            1,
            [ram, ram + 2 * PAGE, ram + 5 * PAGE],
        ))
    });
    r.check("rpi4-vm2-frag-tx-refused-and-cancelled", || {
        let ram = guests::ram(2) + DOC_PAGE;
        text(shared::fragments_refused(l, 2, 1, [ram, ram + 2 * PAGE]))
    });
    r.check("rpi4-vm1-buffers-pinned", || {
        text(shared::buffers_pinned(l, 1, guests::ram(1) + DOC_PAGE))
    });
    r.check("rpi4-vm1-vm4-msg-send2-own-tee", || {
        text(shared::msg_own_tee(l, &[1, 4]))
    });
    r.check("rpi4-vm2-msg-send2-refused", || {
        let tee1 = tees.first().copied().ok_or("no instance of VM 1")?;
        text(shared::msg_refused(l, 2, 1, tee1))
    });
}

/// After VM 3 was destroyed and created again: the page it donated (to
/// its TEE, destroyed with it) is its own again, and zero.
pub fn after_recreate(l: &mut Layer, r: &mut Report) {
    r.check("rpi4-vm3-recreated-donated-page-zeroed", || {
        let page = guests::ram(3) + DOC_PAGE + PAGE;
        match l.guest(3, Op::Load(page), [0; 8])? {
            Ran::Done(x) if x[0] == 0 => Ok(()),
            o => Err(format!("{o:x?}")),
        }
    });
}
