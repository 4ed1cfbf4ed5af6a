//! `vm-mem-*` and `vm-msg-*` checks (issue 18): a VM's RX/TX buffers,
//! memory sharing with its own TEE and indirect messages, through the
//! hypervisor's proxy (`crate::share`).
//!
//! The checks write a VM's descriptors and messages into its TX page on its
//! behalf (its RAM, through the PA); the calls are made by the VM at NS-EL1.

use alloc::vec::Vec;

use test_protocol::mem::{Layout, List, Range, Receiver, Transaction, func, perm, vm_refusal};
use test_protocol::{cmd, ids, vm_checks};

use super::{T, req_regs};
use crate::ffa::{self, Regs, code};
use crate::guest::{DOC_IPA, RAM_IPA, RAM_SIZE, RESULT_IPA, RX_IPA, TX_IPA, op};
use crate::report::{Fail, Outcome, fail};
use crate::share::BORROW_IPA;
use crate::{ensure, ensure_eq, say};

const PAGE: u64 = 4096;

/// `w0 | code << 32`.
fn ans(r: &Regs) -> u64 {
    let w0 = r[0] as u32 as u64;
    if w0 == ffa::ERROR_32 {
        w0 | (r[2] as u32 as u64) << 32
    } else {
        w0
    }
}

fn err(code: i32) -> u64 {
    ffa::ERROR_32 | (code as u32 as u64) << 32
}

/// The handle of a successful send.
fn handle_of(r: &Regs) -> u64 {
    r[2] as u32 as u64 | (r[3] as u32 as u64) << 32
}

/// A v1.2 send descriptor from `sender` to `to` of `ranges`.
pub fn desc(f: u64, sender: u16, to: &[u16], ranges: &[Range]) -> Vec<u8> {
    let perms = if matches!(f, func::DONATE_32 | func::DONATE_64) {
        0
    } else {
        perm::RW
    };
    let rx: Vec<Receiver> = to.iter().map(|&id| Receiver::new(id, perms)).collect();
    let list = List(ranges);
    let mut t = Transaction::send(Layout::V1_2, sender, &rx, &list);
    t.attributes = test_protocol::mem::sender_attributes(f, to.len());
    let mut b = alloc::vec![0u8; t.len()];
    let _ = t.write(&mut b);
    b
}

fn one(ipa: u64, pages: u32) -> [Range; 1] {
    [Range { addr: ipa, pages }]
}

impl T<'_> {
    /// Destroys and creates VM `vm` again, and puts back the key-1 value
    /// the other checks expect in its TEE (as `heal` does).
    fn renew(&mut self, vm: u16) -> Outcome {
        self.recreate(vm)?;
        self.tee(vm, cmd::KV_PUT, [1, 0x1000 + vm as u64, 0, 0])?;
        Ok(())
    }

    /// The PA of `ipa` in VM `vm`'s RAM.
    fn vm_pa(&self, vm: u16, ipa: u64) -> Result<u64, Fail> {
        Ok(self.hyp.ram_of(vm).ok_or(fail("no such VM"))? + (ipa - RAM_IPA))
    }

    /// Writes `bytes` at `ipa` of VM `vm`'s RAM (for the VM: its TX).
    fn vm_write(&self, vm: u16, ipa: u64, bytes: &[u8]) -> Outcome {
        let pa = self.vm_pa(vm, ipa)?;
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: a page of the VM's RAM (the hypervisor's .bss), which
            // the VM does not use while the hypervisor runs.
            unsafe { ((pa as usize + i) as *mut u8).write_volatile(*b) };
        }
        Ok(())
    }

    /// The word at `ipa` of VM `vm`'s RAM, as the hypervisor reads it.
    fn vm_word(&self, vm: u16, ipa: u64) -> Result<u64, Fail> {
        let pa = self.vm_pa(vm, ipa)?;
        // SAFETY: as in `vm_write`.
        Ok(unsafe { (pa as *const u64).read_volatile() })
    }

    /// VM `vm` maps its RX/TX pair at TX_IPA/RX_IPA (SUCCESS, or DENIED
    /// when it has them already).
    fn buffers(&mut self, vm: u16) -> Outcome {
        let r = self.smc(vm, req_regs(ffa::RXTX_MAP_64, &[TX_IPA, RX_IPA, 1]))?;
        ensure!(
            r[0] == ffa::SUCCESS_32 || code(&r) == ffa::DENIED,
            "the VM's RXTX_MAP"
        );
        Ok(())
    }

    /// VM `vm` sends `d` (written into its TX) with `f`, the whole
    /// descriptor in one fragment unless `frag` says less.
    fn send(&mut self, vm: u16, f: u64, d: &[u8], frag: usize) -> Result<Regs, Fail> {
        self.vm_write(vm, TX_IPA, &d[..frag])?;
        self.smc(vm, req_regs(f, &[d.len() as u64, frag as u64, 0, 0]))
    }

    /// A send that must succeed: its handle.
    fn send_ok(&mut self, vm: u16, f: u64, d: &[u8]) -> Result<u64, Fail> {
        let r = self.send(vm, f, d, d.len())?;
        if r[0] != ffa::SUCCESS_32 {
            say!("    (VM {vm}: send {f:#x} answered {:#x})", ans(&r));
            return Err(fail("send refused"));
        }
        Ok(handle_of(&r))
    }

    fn reclaim(&mut self, vm: u16, h: u64, flags: u64) -> Result<u64, Fail> {
        let r = self.smc(
            vm,
            req_regs(func::RECLAIM, &[h & 0xFFFF_FFFF, h >> 32, flags]),
        )?;
        Ok(ans(&r))
    }

    /// VM `vm`'s TEE seals `bytes` of handle `h`: [steps answer, seal, address].
    fn seal(&mut self, vm: u16, h: u64, bytes: u64, key: u64) -> Result<[u64; 4], Fail> {
        self.tee(vm, cmd::MEM_SEAL, [h, vm as u64, bytes, key])
    }

    /// VM `vm`'s TEE retrieves handle `h` read-write and keeps it.
    fn tee_retrieve(&mut self, vm: u16, h: u64) -> Result<u64, Fail> {
        let a2 = (vm as u64) << 32 | (perm::RW as u64) << 48;
        Ok(self.tee(vm, cmd::MEM_RETRIEVE, [h, 0, a2, 0])?[0])
    }

    /// Writes words `seed + i` over `bytes` at `ipa` of VM `vm` and returns
    /// the seal a TEE must compute for them with `key`.
    fn document(
        &mut self,
        vm: u16,
        ipa: u64,
        bytes: u64,
        seed: u64,
        key: u64,
    ) -> Result<u64, Fail> {
        let mut b = Vec::new();
        for i in 0..bytes / 8 {
            b.extend_from_slice(&(seed + i).to_le_bytes());
        }
        self.vm_write(vm, ipa, &b)?;
        Ok(test_protocol::seal(key, (0..bytes / 8).map(|i| seed + i)))
    }

    /// The whole cycle with `f`: document, send to its own TEE, seal,
    /// reclaim, the seal checked by the VM itself (PEEK) after the reclaim.
    fn cycle(&mut self, vm: u16, f: u64) -> Outcome {
        self.buffers(vm)?;
        let want = self.document(vm, DOC_IPA, 128, 0xD0C << 20, 0x5EA1)?;
        let d = desc(f, vm, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
        let h = self.send_ok(vm, f, &d)?;
        let [steps, seal, addr, _] = self.seal(vm, h, 128, 0x5EA1)?;
        ensure_eq!(steps, 0, "the TEE's retrieve and relinquish");
        ensure_eq!(seal, want, "the TEE's seal");
        ensure_eq!(addr, self.vm_pa(vm, DOC_IPA)?, "the TEE got the page's PA");
        ensure_eq!(self.reclaim(vm, h, 0)?, ffa::SUCCESS_32, "reclaim");
        let mut a = [0u64; 18];
        a[0] = DOC_IPA + 128;
        let r = self
            .hyp
            .task(vm, op::PEEK, a)
            .map_err(|f| super::stopped(vm, f))?;
        ensure_eq!(r[0], want, "the seal, read by the VM after the reclaim");
        Ok(())
    }

    pub fn mem_rxtx_map(&mut self) -> Outcome {
        let before = self.hyp.forwarded_of(1);
        let r = self.smc(1, req_regs(ffa::RXTX_MAP_64, &[TX_IPA, RX_IPA, 1]))?;
        if r[0] != ffa::SUCCESS_32 {
            ensure_eq!(code(&r), ffa::DENIED, "RXTX_MAP (or mapped already)");
        }
        ensure!(
            self.hyp.forwarded_of(1) > before || r[0] != ffa::SUCCESS_32,
            "forwarded"
        );
        ensure!(
            self.hyp.shares_of(1).and_then(|s| s.buffers) == Some((TX_IPA, RX_IPA)),
            "the hypervisor keeps the VM's pair"
        );
        let r = self.smc(1, req_regs(ffa::RXTX_MAP_64, &[TX_IPA, RX_IPA, 1]))?;
        ensure_eq!(code(&r), vm_refusal::SECOND_RXTX, "a second pair");
        Ok(())
    }

    pub fn mem_rxtx_refused(&mut self) -> Outcome {
        let before = self.hyp.forwarded_of(2);
        let own_pa = self.vm_pa(2, TX_IPA)?;
        for (tx, rx, pages) in [
            (0x5000_0000, RX_IPA, 1),
            (TX_IPA, RAM_IPA + RAM_SIZE, 1),
            (own_pa, RX_IPA, 1),
            (RAM_IPA, RX_IPA, 1),
            (TX_IPA + 8, RX_IPA, 1),
            (TX_IPA, TX_IPA, 1),
            (TX_IPA, RX_IPA, 2),
            (TX_IPA, RX_IPA, 0),
        ] {
            let r = self.smc(2, req_regs(ffa::RXTX_MAP_64, &[tx, rx, pages]))?;
            if code(&r) != vm_refusal::BAD_RXTX {
                say!(
                    "    (TX {tx:#x}, RX {rx:#x}, {pages} pages: {:#x})",
                    ans(&r)
                );
                return Err(fail("not INVALID_PARAMETERS"));
            }
        }
        ensure_eq!(self.hyp.forwarded_of(2), before, "calls forwarded");
        Ok(())
    }

    pub fn mem_rxtx_unmap(&mut self) -> Outcome {
        self.buffers(2)?;
        let r = self.smc(2, req_regs(ffa::RXTX_UNMAP, &[1 << 16]))?;
        ensure_eq!(code(&r), vm_refusal::BAD_RXTX, "an ID in w1");
        let r = self.smc(2, req_regs(ffa::RXTX_UNMAP, &[]))?;
        ensure_eq!(r[0], ffa::SUCCESS_32, "RXTX_UNMAP");
        let r = self.smc(2, req_regs(ffa::RXTX_UNMAP, &[]))?;
        ensure_eq!(code(&r), vm_refusal::BAD_RXTX, "a second unmap");
        let d = desc(func::SHARE_64, 2, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
        let r = self.send(2, func::SHARE_64, &d, d.len())?;
        ensure_eq!(code(&r), vm_refusal::NO_TX, "a share without TX");
        let r = self.smc(2, req_regs(ffa::RXTX_MAP_64, &[TX_IPA, RX_IPA, 1]))?;
        ensure_eq!(r[0], ffa::SUCCESS_32, "mapped again");
        Ok(())
    }

    pub fn mem_features(&mut self) -> Outcome {
        for f in [
            func::SHARE_64,
            func::LEND_32,
            func::DONATE_64,
            func::RECLAIM,
            ffa::MSG_SEND2,
        ] {
            let r = self.smc(3, req_regs(ffa::FEATURES, &[f]))?;
            if r[0] != ffa::SUCCESS_32 {
                say!("    (FFA_FEATURES({f:#x}) answered {:#x})", ans(&r));
                return Err(fail("not supported"));
            }
        }
        Ok(())
    }

    /// A VM at v1.0: its layouts are not converted, so the hypervisor
    /// answers NOT_SUPPORTED (never forwarded); back at 1.2 it shares again.
    pub fn mem_v1_0(&mut self) -> Outcome {
        self.buffers(3)?;
        let r = self.smc(3, req_regs(ffa::VERSION, &[ffa::V1_0 as u64]))?;
        ensure_eq!(r[0], ffa::V1_2 as u64, "FFA_VERSION(1.0)");
        let before = self.hyp.forwarded_of(3);
        let d = desc(func::SHARE_64, 3, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
        let r = self.send(3, func::SHARE_64, &d, d.len())?;
        let refused = code(&r);
        let r2 = self.smc(3, req_regs(ffa::MSG_SEND2, &[0, 0]))?;
        let v = self.smc(3, req_regs(ffa::VERSION, &[ffa::V1_2 as u64]))?;
        ensure_eq!(v[0], ffa::V1_2 as u64, "FFA_VERSION(1.2)");
        ensure_eq!(refused, ffa::NOT_SUPPORTED, "a share at v1.0");
        ensure_eq!(code(&r2), ffa::NOT_SUPPORTED, "MSG_SEND2 at v1.0");
        ensure_eq!(self.hyp.forwarded_of(3), before, "nothing forwarded");
        let h = self.send_ok(3, func::SHARE_64, &d)?;
        ensure_eq!(self.reclaim(3, h, 0)?, ffa::SUCCESS_32, "reclaim");
        Ok(())
    }

    pub fn mem_share_cycle(&mut self, vm: u16, f: u64) -> Outcome {
        self.cycle(vm, f)
    }

    /// A shared page stays the VM's: it reads it while the TEE holds it.
    pub fn mem_share_keeps_access(&mut self) -> Outcome {
        self.buffers(1)?;
        let _ = self.document(1, DOC_IPA, 8, 77, 1)?;
        let d = desc(func::SHARE_64, 1, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
        let h = self.send_ok(1, func::SHARE_64, &d)?;
        ensure_eq!(self.tee_retrieve(1, h)?, func::RETRIEVE_RESP, "retrieve");
        let mut a = [0u64; 18];
        a[0] = DOC_IPA;
        let r = self
            .hyp
            .task(1, op::PEEK, a)
            .map_err(|f| super::stopped(1, f))?;
        ensure_eq!(r[0], 77, "the VM reads its shared page");
        ensure_eq!(
            self.reclaim(1, h, 0)?,
            err(ffa::DENIED),
            "reclaim while held"
        );
        let r = self.tee(1, cmd::MEM_RELINQUISH, [h, 0, 0, 0])?;
        ensure_eq!(r[0], ffa::SUCCESS_32, "relinquish");
        ensure_eq!(self.reclaim(1, h, 0)?, ffa::SUCCESS_32, "reclaim");
        Ok(())
    }

    /// A lent page leaves the VM's stage 2: touching it stops the VM with a
    /// stage-2 fault at that IPA; the VM's destruction reclaims it (the
    /// next VM in the slot shares the same page).
    pub fn mem_lent_page_faults(&mut self) -> Outcome {
        self.buffers(3)?;
        let d = desc(func::LEND_64, 3, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
        let h = self.send_ok(3, func::LEND_64, &d)?;
        let away = self.hyp.shares_of(3).map_or(0, |s| s.away);
        ensure_eq!(away as u64, 1 << ((DOC_IPA - RAM_IPA) / PAGE), "pages away");
        let mut a = [0u64; 18];
        a[0] = DOC_IPA;
        match self.hyp.task(3, op::PEEK, a) {
            Err(crate::vm::Fault::Stage2 { ipa, .. }) => ensure_eq!(ipa, DOC_IPA, "fault IPA"),
            Err(f) => return Err(super::stopped(3, f)),
            Ok(_) => return Err(fail("the VM read a page it lent")),
        }
        let pa = self.vm_pa(3, DOC_IPA)?;
        self.renew(3)?;
        ensure_eq!(self.vm_pa(3, DOC_IPA)?, pa, "the same slot");
        self.buffers(3)?;
        let d = desc(func::SHARE_64, 3, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
        let h2 = self.send_ok(3, func::SHARE_64, &d)?;
        ensure!(h2 != h, "a new handle");
        ensure_eq!(self.reclaim(3, h2, 0)?, ffa::SUCCESS_32, "reclaim");
        Ok(())
    }

    /// Lent memory comes back zeroed when the reclaim asks it (flag bit 0).
    pub fn mem_lend_reclaim_zero(&mut self) -> Outcome {
        self.buffers(4)?;
        let _ = self.document(4, DOC_IPA, 64, 0xAB, 0)?;
        let d = desc(func::LEND_64, 4, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
        let h = self.send_ok(4, func::LEND_64, &d)?;
        ensure_eq!(self.reclaim(4, h, 1)?, ffa::SUCCESS_32, "reclaim with zero");
        ensure_eq!(
            self.hyp.shares_of(4).map_or(1, |s| s.away),
            0,
            "mapped again"
        );
        ensure_eq!(self.vm_word(4, DOC_IPA)?, 0, "zeroed");
        let mut a = [0u64; 18];
        a[0] = DOC_IPA + 8;
        let r = self
            .hyp
            .task(4, op::PEEK, a)
            .map_err(|f| super::stopped(4, f))?;
        ensure_eq!(r[0], 0, "the VM reads zeros");
        Ok(())
    }

    /// A donated page is gone for good once the TEE retrieved it
    /// (`test_protocol::vm_checks`, shared with the rpi4 stage); the VM
    /// goes, its TEE (the owner) too; the page is zeroed and its next VM
    /// may share it.
    pub fn mem_donate(&mut self, f: u64) -> Outcome {
        let ipa = DOC_IPA + PAGE;
        shared(vm_checks::donate_gone_for_good(self, 4, f, ipa))?;
        self.renew(4)?;
        self.buffers(4)?;
        let d2 = desc(func::SHARE_64, 4, &[ids::VTEE_TEMPLATE], &one(ipa, 1));
        let h2 = self.send_ok(4, func::SHARE_64, &d2)?;
        ensure_eq!(self.reclaim(4, h2, 0)?, ffa::SUCCESS_32, "reclaim");
        ensure_eq!(self.vm_word(4, ipa)?, 0, "zeroed");
        Ok(())
    }

    /// A donation to anything but the VM's own TEE (a shared service, its
    /// bound partition, another VM's TEE): DENIED by the hypervisor, whose
    /// RAM slots go to the next VM (shared with the rpi4 stage).
    pub fn mem_donate_beyond_own_tee(&mut self) -> Outcome {
        let other = self.inst[2];
        shared(vm_checks::donate_beyond_own_tee(
            self,
            1,
            DOC_IPA + 3 * PAGE,
            &[ids::TPM, ids::SP1, other],
        ))
    }

    /// A donation not yet retrieved can still be reclaimed: the page returns
    /// (shared with the rpi4 stage).
    pub fn mem_donate_reclaim_early(&mut self) -> Outcome {
        shared(vm_checks::donate_reclaim_early(
            self,
            2,
            DOC_IPA + 2 * PAGE,
            ids::VTEE_TEMPLATE,
        ))
    }

    fn poke_peek(&mut self, vm: u16, ipa: u64) -> Outcome {
        let mut a = [0u64; 18];
        a[0] = ipa;
        a[1] = 0x600D;
        self.hyp
            .task(vm, op::POKE, a)
            .map_err(|f| super::stopped(vm, f))?;
        let r = self
            .hyp
            .task(vm, op::PEEK, a)
            .map_err(|f| super::stopped(vm, f))?;
        ensure_eq!(r[0], 0x600D, "the VM writes and reads the page again");
        Ok(())
    }

    /// Three one-page ranges, the first fragment with one of them, then
    /// FFA_MEM_FRAG_TX with the other two; lent: all three leave the VM
    /// (shared with the rpi4 stage).
    pub fn mem_fragments(&mut self) -> Outcome {
        shared(vm_checks::lend_in_fragments(
            self,
            1,
            [DOC_IPA, DOC_IPA + 2 * PAGE, DOC_IPA + 5 * PAGE],
        ))
    }

    /// FRAG_TX that is not the VM's send in progress, or that splits a
    /// constituent, is refused; a second send is BUSY; a reclaim cancels
    /// the send (shared with the rpi4 stage).
    pub fn mem_fragments_refused(&mut self) -> Outcome {
        shared(vm_checks::fragments_refused(
            self,
            2,
            3,
            [DOC_IPA, DOC_IPA + 2 * PAGE],
        ))
    }

    /// The pages of a VM's RX/TX pair do not change hands; a pair is not
    /// mapped over a lent page (the SPMC's rule for the buffers it keeps;
    /// shared with the rpi4 stage, whose VM layer keeps them itself).
    pub fn mem_buffers_pinned(&mut self) -> Outcome {
        shared(vm_checks::buffers_pinned(self, 1, DOC_IPA + 6 * PAGE))
    }

    /// The SPMC's per-user rule: another VM's TEE, a partition not bound
    /// to the VM: DENIED (forwarded: the SPMC decides); the pages stay usable.
    pub fn mem_policy(&mut self) -> Outcome {
        self.buffers(2)?;
        self.buffers(1)?;
        let other = self.inst[1];
        for (vm, to) in [
            (2u16, other),
            (2, ids::SP1),
            (2, ids::SP2),
            (1, self.inst[3]),
        ] {
            let before = self.hyp.forwarded_of(vm);
            let d = desc(func::SHARE_64, vm, &[to], &one(DOC_IPA, 1));
            let r = self.send(vm, func::SHARE_64, &d, d.len())?;
            if code(&r) != vm_refusal::NOT_ITS_TEE {
                say!("    (VM {vm} -> {to:#x}: {:#x})", ans(&r));
                return Err(fail("not DENIED"));
            }
            ensure!(self.hyp.forwarded_of(vm) > before, "the SPMC decided");
            let d = desc(func::LEND_64, vm, &[to], &one(DOC_IPA, 1));
            let r = self.send(vm, func::LEND_64, &d, d.len())?;
            ensure_eq!(code(&r), vm_refusal::NOT_ITS_TEE, "lend");
            ensure_eq!(
                self.hyp.shares_of(vm).map_or(1, |s| s.away),
                0,
                "nothing away"
            );
        }
        // VM 1's bound partition and the shared TPM service are reachable.
        for (vm, to) in [(1u16, ids::SP1), (2, ids::TPM)] {
            let d = desc(func::SHARE_64, vm, &[to], &one(DOC_IPA, 1));
            let h = self.send_ok(vm, func::SHARE_64, &d)?;
            ensure_eq!(self.reclaim(vm, h, 0)?, ffa::SUCCESS_32, "reclaim");
        }
        Ok(())
    }

    /// Ranges outside the VM's RAM, and its mailbox page: refused by the
    /// hypervisor, never forwarded.
    pub fn mem_outside(&mut self) -> Outcome {
        self.buffers(3)?;
        let before = self.hyp.forwarded_of(3);
        let own_pa = self.vm_pa(3, DOC_IPA)?;
        let other_pa = self.vm_pa(4, DOC_IPA)?;
        for (ipa, pages, want) in [
            (0x5000_0000u64, 1u32, vm_refusal::NOT_OWN_RAM),
            (RAM_IPA + RAM_SIZE - PAGE, 2, vm_refusal::NOT_OWN_RAM),
            (RAM_IPA - PAGE, 1, vm_refusal::NOT_OWN_RAM),
            (own_pa, 1, vm_refusal::NOT_OWN_RAM),
            (other_pa, 1, vm_refusal::NOT_OWN_RAM),
            (0x0e50_0000, 1, vm_refusal::NOT_OWN_RAM),
            (DOC_IPA + 8, 1, vm_refusal::NOT_OWN_RAM),
            (RAM_IPA, 1, vm_refusal::FIRST_PAGE),
        ] {
            for f in [func::SHARE_64, func::LEND_64, func::DONATE_64] {
                let d = desc(f, 3, &[ids::VTEE_TEMPLATE], &one(ipa, pages));
                let r = self.send(3, f, &d, d.len())?;
                if code(&r) != want {
                    say!("    ({f:#x} of {ipa:#x} x{pages}: {:#x})", ans(&r));
                    return Err(fail("not refused as expected"));
                }
            }
        }
        ensure_eq!(self.hyp.forwarded_of(3), before, "nothing forwarded");
        ensure_eq!(
            self.hyp.shares_of(3).map_or(1, |s| s.away),
            0,
            "nothing away"
        );
        Ok(())
    }

    /// A descriptor naming another sender: refused by the hypervisor.
    pub fn mem_forged_sender(&mut self) -> Outcome {
        self.buffers(1)?;
        let before = self.hyp.forwarded_of(1);
        for sender in [2u16, 0, 0x7FFF, ids::SP1, self.inst[1]] {
            for f in [func::SHARE_64, func::LEND_32, func::DONATE_64] {
                let d = desc(f, sender, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
                let r = self.send(1, f, &d, d.len())?;
                if code(&r) != vm_refusal::FORGED_SENDER {
                    say!("    (sender {sender:#x}, {f:#x}: {:#x})", ans(&r));
                    return Err(fail("not INVALID_PARAMETERS"));
                }
            }
        }
        ensure_eq!(self.hyp.forwarded_of(1), before, "nothing forwarded");
        Ok(())
    }

    /// A VM reclaims only its own transactions.
    pub fn mem_reclaim_others(&mut self) -> Outcome {
        self.buffers(1)?;
        let d = desc(func::LEND_64, 1, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
        let h = self.send_ok(1, func::LEND_64, &d)?;
        let before = self.hyp.forwarded_of(2);
        ensure_eq!(
            self.reclaim(2, h, 0)?,
            err(vm_refusal::NOT_OWN_HANDLE),
            "VM 2 reclaims VM 1's"
        );
        ensure_eq!(self.hyp.forwarded_of(2), before, "not forwarded");
        ensure_eq!(
            self.reclaim(2, 0xFFFF_0000, 0)?,
            err(vm_refusal::NOT_OWN_HANDLE),
            "unknown handle"
        );
        ensure!(
            self.hyp.shares_of(1).map_or(0, |s| s.away) != 0,
            "still lent"
        );
        ensure_eq!(
            self.reclaim(1, h, 0)?,
            ffa::SUCCESS_32,
            "VM 1 reclaims its own"
        );
        Ok(())
    }

    /// A page lent already cannot be sent again (the hypervisor: not the VM's now).
    pub fn mem_lent_twice(&mut self) -> Outcome {
        self.buffers(2)?;
        let d = desc(func::LEND_64, 2, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
        let h = self.send_ok(2, func::LEND_64, &d)?;
        let r = self.send(2, func::LEND_64, &d, d.len())?;
        ensure_eq!(code(&r), ffa::DENIED, "the page again");
        let r = self.smc(2, req_regs(ffa::RXTX_UNMAP, &[]))?;
        ensure_eq!(r[0], ffa::SUCCESS_32, "unmap");
        let r = self.smc(2, req_regs(ffa::RXTX_MAP_64, &[DOC_IPA, RX_IPA, 1]))?;
        ensure_eq!(code(&r), ffa::DENIED, "buffers over a lent page");
        self.buffers(2)?;
        ensure_eq!(self.reclaim(2, h, 0)?, ffa::SUCCESS_32, "reclaim");
        Ok(())
    }

    /// The VM's TEE is destroyed while it holds the VM's lent page: the
    /// VM reclaims it; the next TEE has nothing of it mapped.
    pub fn mem_tee_destroyed(&mut self) -> Outcome {
        self.buffers(2)?;
        let d = desc(func::LEND_64, 2, &[ids::VTEE_TEMPLATE], &one(DOC_IPA, 1));
        let h = self.send_ok(2, func::LEND_64, &d)?;
        ensure_eq!(self.tee_retrieve(2, h)?, func::RETRIEVE_RESP, "retrieve");
        ensure_eq!(
            self.reclaim(2, h, 0)?,
            err(ffa::DENIED),
            "while the TEE holds it"
        );
        ensure!(ffa::vm_destroyed(2).ok(), "the TEE destroyed");
        ensure_eq!(self.reclaim(2, h, 0)?, ffa::SUCCESS_32, "the VM reclaims");
        self.poke_peek(2, DOC_IPA)?;
        ensure!(ffa::vm_created(2).ok(), "a new TEE");
        self.whoami(2)?;
        let pa = self.vm_pa(2, DOC_IPA)?;
        let r = self.req(2, ids::VTEE_TEMPLATE, cmd::READ, [pa, 0, 0, 0])?;
        ensure_eq!(code(&r), ffa::ABORTED, "the new TEE reading the page");
        self.renew(2)
    }

    /// A VM destroyed with memory lent and donated to its TEE: the lent
    /// page reclaimed, the donated one zeroed by the SPMC; the VM's next
    /// incarnation shares both.
    pub fn mem_vm_destroyed(&mut self) -> Outcome {
        self.buffers(3)?;
        let (lent, given) = (DOC_IPA, DOC_IPA + PAGE);
        let _ = self.document(3, given, 64, 0x5EC, 0)?;
        let h = self.send_ok(
            3,
            func::LEND_64,
            &desc(func::LEND_64, 3, &[ids::VTEE_TEMPLATE], &one(lent, 1)),
        )?;
        let g = self.send_ok(
            3,
            func::DONATE_64,
            &desc(func::DONATE_64, 3, &[ids::VTEE_TEMPLATE], &one(given, 1)),
        )?;
        ensure_eq!(
            self.tee_retrieve(3, h)?,
            func::RETRIEVE_RESP,
            "retrieve the lent page"
        );
        ensure_eq!(
            self.tee_retrieve(3, g)?,
            func::RETRIEVE_RESP,
            "retrieve the donated page"
        );
        let given_pa = self.vm_pa(3, given)?;
        let slot_ok = self.hyp.destroy_vm(3).is_some_and(|a| a.ok());
        ensure!(slot_ok, "VM 3 destroyed");
        // SAFETY: the page was VM 3's (the hypervisor's .bss); the SPMC
        // zeroed it and gave it back, and the hypervisor zeroed the slot.
        let w = unsafe { (given_pa as *const u64).read_volatile() };
        ensure_eq!(w, 0, "the donated page is zero");
        self.hyp
            .create_vm(3)
            .map_err(|_| fail("VM 3 not created"))?;
        self.whoami(3)?;
        self.tee(3, cmd::KV_PUT, [1, 0x1003, 0, 0])?;
        self.buffers(3)?;
        let r = [lent, given].map(|a| Range { addr: a, pages: 1 });
        let h2 = self.send_ok(
            3,
            func::SHARE_64,
            &desc(func::SHARE_64, 3, &[ids::VTEE_TEMPLATE], &r),
        )?;
        ensure_eq!(self.reclaim(3, h2, 0)?, ffa::SUCCESS_32, "reclaim");
        Ok(())
    }

    /// An indirect message (v1.2 header) from `from` to `to` in VM `vm`'s TX.
    /// VMs 1 and 4 send their own TEE an indirect message (shared with the
    /// rpi4 stage, `test_protocol::vm_checks`).
    pub fn msg_own_tee(&mut self) -> Outcome {
        shared(vm_checks::msg_own_tee(self, &[1, 4]))
    }

    /// VM 2's refused indirect messages (shared with the rpi4 stage).
    pub fn msg_refused(&mut self) -> Outcome {
        let other_tee = self.inst[1];
        shared(vm_checks::msg_refused(self, 2, 1, other_tee))
    }

    // ---- The VM as a borrower (issue 18 item 2, through the hypervisor) ----

    /// VM `vm` donates its page at RESULT_IPA (a document of 64 bytes
    /// seeded `seed`) to its TEE, which seals it and sends it back with
    /// `kind` (send::SHARE/LEND) and `perms`: (the TEE's handle, the seal
    /// expected, the TEE's ID).
    fn given_back(
        &mut self,
        vm: u16,
        kind: u64,
        perms: u8,
        seed: u64,
    ) -> Result<(u64, u64, u16), Fail> {
        self.buffers(vm)?;
        let want = self.document(vm, RESULT_IPA, 64, seed, 0x4E5)?;
        let d = desc(
            func::DONATE_64,
            vm,
            &[ids::VTEE_TEMPLATE],
            &one(RESULT_IPA, 1),
        );
        let given = self.send_ok(vm, func::DONATE_64, &d)?;
        let a2 = 64 | kind << 16 | (perms as u64) << 24;
        let [steps, h, seal, addr] =
            self.tee(vm, cmd::MEM_RESULT, [given, vm as u64, a2, 0x4E5])?;
        ensure_eq!(steps, 0, "the TEE's retrieve, seal and send back");
        ensure_eq!(seal, want, "the TEE's seal");
        ensure_eq!(
            addr,
            self.vm_pa(vm, RESULT_IPA)?,
            "the TEE got the page donated"
        );
        let tee = self.inst[vm as usize];
        let tee = if tee == 0 { self.whoami(vm)? } else { tee };
        Ok((h, want, tee))
    }

    /// VM `vm` retrieves `h` from `owner` asking `perms` with transaction
    /// flags `fl`, naming `me` as the borrower.
    fn vm_retrieve(
        &mut self,
        vm: u16,
        me: u16,
        owner: u16,
        h: u64,
        perms: u8,
        fl: u32,
    ) -> Result<Regs, Fail> {
        let who = [Receiver::new(me, perms)];
        let t = Transaction::retrieve(Layout::V1_2, owner, h, fl, &who);
        let mut b = alloc::vec![0u8; t.len()];
        let _ = t.write(&mut b);
        self.vm_write(vm, TX_IPA, &b)?;
        self.smc(
            vm,
            req_regs(
                func::RETRIEVE_REQ_64,
                &[b.len() as u64, b.len() as u64, 0, 0],
            ),
        )
    }

    /// The retrieve response in VM `vm`'s RX: (first address, pages, the
    /// permissions granted to the VM, handle); then VM `vm` releases RX.
    fn vm_response(&mut self, vm: u16) -> Result<(u64, u32, u8, u64), Fail> {
        let mut b = [0u8; 160];
        let pa = self.vm_pa(vm, RX_IPA)?;
        for (i, v) in b.iter_mut().enumerate() {
            // SAFETY: the VM's RX page (its RAM); the VM does not run.
            *v = unsafe { ((pa as usize + i) as *const u8).read_volatile() };
        }
        let d = test_protocol::mem::Descriptor::parse(&b, false)
            .map_err(|_| fail("the response does not parse"))?;
        let e = d.emad_of(vm).ok_or(fail("no EMAD for the VM"))?;
        let c = d.composite(&e).map_err(|_| fail("no composite"))?;
        let (g, _) = d.range(&c, 0).map_err(|_| fail("no constituent"))?;
        let r = self.smc(vm, req_regs(ffa::RX_RELEASE, &[]))?;
        ensure_eq!(r[0], ffa::SUCCESS_32, "the VM's RX_RELEASE");
        Ok((g.addr, g.pages, e.perms, d.handle()))
    }

    fn vm_relinquish(&mut self, vm: u16, h: u64, who: u16) -> Result<u64, Fail> {
        let ids = [who];
        let d = test_protocol::mem::Relinquish {
            handle: h,
            flags: 0,
            endpoints: &ids,
        };
        let mut b = [0u8; 32];
        let n = d.write(&mut b).map_err(|_| fail("relinquish descriptor"))?;
        self.vm_write(vm, TX_IPA, &b[..n])?;
        Ok(ans(&self.smc(vm, req_regs(func::RELINQUISH, &[]))?))
    }

    /// VM `vm`'s TEE reclaims `h`.
    fn tee_reclaim(&mut self, vm: u16, h: u64) -> Result<u64, Fail> {
        let [w0, x2, ..] = self.tee(vm, cmd::CALL, [func::RECLAIM, h & 0xFFFF_FFFF, h >> 32, 0])?;
        Ok(if w0 == ffa::ERROR_32 {
            w0 | (x2 as u32 as u64) << 32
        } else {
            w0
        })
    }

    /// VM `vm` reads the word at `ipa` (Err if it stopped).
    fn vm_peek(&mut self, vm: u16, ipa: u64) -> Result<u64, crate::vm::Fault> {
        let mut a = [0u64; 18];
        a[0] = ipa;
        self.hyp.task(vm, op::PEEK, a).map(|r| r[0])
    }

    /// The borrower's memory ABIs, reported by FFA_FEATURES (forwarded).
    pub fn borrow_features(&mut self) -> Outcome {
        // The retrieve is asked about with the NS-bit input property (w2
        // bit 1), which a v1.1+ caller must give (DEN0077 v1.2 §13.3.2).
        for (f, w2) in [
            (func::RETRIEVE_REQ_64, 2),
            (func::RETRIEVE_REQ_32, 2),
            (func::RELINQUISH, 0),
            (func::FRAG_RX, 0),
        ] {
            let r = self.smc(2, req_regs(ffa::FEATURES, &[f, w2]))?;
            if r[0] != ffa::SUCCESS_32 {
                say!("    (FFA_FEATURES({f:#x}) answered {:#x})", ans(&r));
                return Err(fail("not supported"));
            }
        }
        Ok(())
    }

    /// The TEE lends VM 1 its result read-write: the VM retrieves it and
    /// finds it in its borrow window (the IPA, not the PA, in its RX),
    /// reads the seal there and writes its own word; the TEE cannot
    /// reclaim while the VM holds it.
    pub fn borrow_lent_result(&mut self) -> Outcome {
        // VM 1 comes back fresh whatever happened (its page is given away).
        let res = self.borrow_lent_result_steps();
        let again = self.renew(1);
        res.and(again)
    }

    fn borrow_lent_result_steps(&mut self) -> Outcome {
        let (h, want, tee) = self.given_back(1, cmd::send::LEND, perm::RW, 0x11 << 8)?;
        let r = self.vm_retrieve(1, 1, tee, h, perm::RW, 0)?;
        ensure_eq!(ans(&r), func::RETRIEVE_RESP, "the VM's retrieve");
        let (addr, pages, perms, handle) = self.vm_response(1)?;
        ensure_eq!(handle, h, "handle in the response");
        ensure_eq!(addr, BORROW_IPA, "the address the VM reads: its own IPA");
        ensure_eq!(pages, 1, "pages");
        ensure_eq!(perms & perm::DATA_MASK, perm::RW, "access granted");
        let seal = self
            .vm_peek(1, addr + 64)
            .map_err(|f| super::stopped(1, f))?;
        ensure_eq!(seal, want, "the seal, read by the VM in the borrowed page");
        let mut a = [0u64; 18];
        a[..2].copy_from_slice(&[addr + 128, 0xB0B]);
        self.hyp
            .task(1, op::POKE, a)
            .map_err(|f| super::stopped(1, f))?;
        ensure_eq!(
            self.tee_reclaim(1, h)?,
            err(ffa::DENIED),
            "the TEE's reclaim while the VM holds it"
        );
        ensure_eq!(self.vm_relinquish(1, h, 1)?, ffa::SUCCESS_32, "relinquish");
        ensure_eq!(
            self.tee_reclaim(1, h)?,
            ffa::SUCCESS_32,
            "the TEE's reclaim after it"
        );
        let pa = self.vm_pa(1, RESULT_IPA)?;
        let [w, ..] = self.tee(1, cmd::READ, [pa + 128, 0, 0, 0])?;
        ensure_eq!(w, 0xB0B, "the VM's word, read by the TEE after its reclaim");
        Ok(())
    }

    /// Shared back read-only: the VM reads it, and a write stops it with a
    /// stage-2 fault at the borrowed IPA.
    pub fn borrow_shared_read_only(&mut self) -> Outcome {
        // VM 2 comes back fresh whatever happened (its page is given away).
        let res = self.borrow_shared_read_only_steps();
        let again = self.renew(2);
        res.and(again)
    }

    fn borrow_shared_read_only_steps(&mut self) -> Outcome {
        let (h, want, tee) = self.given_back(2, cmd::send::SHARE, perm::RO, 0x22 << 8)?;
        let r = self.vm_retrieve(2, 2, tee, h, perm::RO, 0)?;
        ensure_eq!(ans(&r), func::RETRIEVE_RESP, "the VM's retrieve");
        let (addr, _, perms, _) = self.vm_response(2)?;
        ensure_eq!(perms & perm::DATA_MASK, perm::RO, "access granted");
        let seal = self
            .vm_peek(2, addr + 64)
            .map_err(|f| super::stopped(2, f))?;
        ensure_eq!(seal, want, "the seal");
        let mut a = [0u64; 18];
        a[..2].copy_from_slice(&[addr, 1]);
        match self.hyp.task(2, op::POKE, a) {
            Err(crate::vm::Fault::Stage2 { ipa, write, .. }) => {
                ensure_eq!(ipa, addr, "fault IPA");
                ensure!(write, "a write fault");
            }
            Err(f) => return Err(super::stopped(2, f)),
            Ok(_) => return Err(fail("the VM wrote a read-only page")),
        }
        let _ = h;
        Ok(())
    }

    /// After the relinquish the page is gone from the VM's stage 2: a read
    /// stops it at that IPA; the hypervisor's window is empty again.
    pub fn borrow_unmapped_after_relinquish(&mut self) -> Outcome {
        // VM 3 comes back fresh whatever happened (its page is given away).
        let res = self.borrow_unmapped_after_relinquish_steps();
        let again = self.renew(3);
        res.and(again)
    }

    fn borrow_unmapped_after_relinquish_steps(&mut self) -> Outcome {
        let (h, _, tee) = self.given_back(3, cmd::send::LEND, perm::RW, 0x33 << 8)?;
        let r = self.vm_retrieve(3, 3, tee, h, perm::RW, 0)?;
        ensure_eq!(ans(&r), func::RETRIEVE_RESP, "the VM's retrieve");
        let (addr, ..) = self.vm_response(3)?;
        ensure_eq!(
            self.hyp.shares_of(3).map_or(0, |s| s.window),
            1,
            "window in use"
        );
        ensure_eq!(self.vm_relinquish(3, h, 3)?, ffa::SUCCESS_32, "relinquish");
        ensure_eq!(
            self.hyp.shares_of(3).map_or(1, |s| s.window),
            0,
            "window free"
        );
        ensure_eq!(
            self.tee_reclaim(3, h)?,
            ffa::SUCCESS_32,
            "the TEE's reclaim"
        );
        match self.vm_peek(3, addr) {
            Err(crate::vm::Fault::Stage2 { ipa, .. }) => ensure_eq!(ipa, addr, "fault IPA"),
            Err(f) => return Err(super::stopped(3, f)),
            Ok(_) => return Err(fail("the VM read a page it relinquished")),
        }
        Ok(())
    }

    /// What the TEE gives VM 1 is not VM 2's to retrieve (DENIED; its
    /// window stays empty); VM 1 then retrieves it.
    pub fn borrow_other_vm_denied(&mut self) -> Outcome {
        // VM 1 comes back fresh whatever happened (its page is given away).
        let res = self.borrow_other_vm_denied_steps();
        let again = self.renew(1);
        res.and(again)
    }

    fn borrow_other_vm_denied_steps(&mut self) -> Outcome {
        let (h, _, tee) = self.given_back(1, cmd::send::LEND, perm::RW, 0x44 << 8)?;
        self.buffers(2)?;
        let r = self.vm_retrieve(2, 2, tee, h, perm::RW, 0)?;
        ensure_eq!(ans(&r), err(ffa::DENIED), "VM 2 retrieving VM 1's");
        ensure_eq!(
            self.hyp.shares_of(2).map_or(1, |s| s.window),
            0,
            "VM 2's window"
        );
        let r = self.vm_retrieve(1, 1, tee, h, perm::RW, 0)?;
        ensure_eq!(ans(&r), func::RETRIEVE_RESP, "VM 1's retrieve");
        self.vm_response(1)?;
        ensure_eq!(self.vm_relinquish(1, h, 1)?, ffa::SUCCESS_32, "relinquish");
        ensure_eq!(self.tee_reclaim(1, h)?, ffa::SUCCESS_32, "reclaim");
        Ok(())
    }

    /// An unknown handle: INVALID_PARAMETERS (the SPMC's answer to the
    /// hypervisor retrieve request), nothing mapped.
    pub fn borrow_unknown_handle(&mut self) -> Outcome {
        self.buffers(4)?;
        let r = self.vm_retrieve(4, 4, ids::VTEE_TEMPLATE, 0x7777_0000_1234, perm::RW, 0)?;
        ensure_eq!(
            ans(&r),
            err(ffa::INVALID_PARAMETERS),
            "retrieve of an unknown handle"
        );
        ensure_eq!(self.hyp.shares_of(4).map_or(1, |s| s.window), 0, "window");
        Ok(())
    }

    /// A retrieve naming another endpoint, or a relinquish naming another,
    /// is refused by the hypervisor and never forwarded.
    pub fn borrow_forged_refused(&mut self) -> Outcome {
        self.buffers(4)?;
        let before = self.hyp.forwarded_of(4);
        for me in [1, 0, ids::VTEE_TEMPLATE] {
            let r = self.vm_retrieve(4, me, ids::VTEE_TEMPLATE, 1, perm::RW, 0)?;
            ensure_eq!(
                ans(&r),
                err(ffa::INVALID_PARAMETERS),
                "a retrieve for another endpoint"
            );
        }
        ensure_eq!(
            self.vm_relinquish(4, 1, 2)?,
            err(ffa::INVALID_PARAMETERS),
            "a relinquish for VM 2"
        );
        ensure_eq!(self.hyp.forwarded_of(4), before, "calls forwarded");
        Ok(())
    }

    /// A relinquish of what the VM did not retrieve: DENIED by the SPMC;
    /// the TEE reclaims its page, which the VM then cannot retrieve.
    pub fn borrow_relinquish_not_retrieved(&mut self) -> Outcome {
        // VM 4 comes back fresh whatever happened (its page is given away).
        let res = self.borrow_relinquish_not_retrieved_steps();
        let again = self.renew(4);
        res.and(again)
    }

    fn borrow_relinquish_not_retrieved_steps(&mut self) -> Outcome {
        let (h, _, tee) = self.given_back(4, cmd::send::LEND, perm::RW, 0x55 << 8)?;
        ensure_eq!(
            self.vm_relinquish(4, h, 4)?,
            err(ffa::DENIED),
            "relinquish before retrieve"
        );
        ensure_eq!(
            self.tee_reclaim(4, h)?,
            ffa::SUCCESS_32,
            "the TEE's reclaim"
        );
        let r = self.vm_retrieve(4, 4, tee, h, perm::RW, 0)?;
        ensure_eq!(
            ans(&r),
            err(ffa::INVALID_PARAMETERS),
            "retrieve after the reclaim"
        );
        Ok(())
    }

    /// A VM destroyed while it borrows: sp1 lends VM 1 (bound to it) a page
    /// of the hypervisor's own that sp1 was donated; VM 1 retrieves it
    /// asking for zeroing after relinquish and is destroyed: the SPMC
    /// counts it relinquished, sp1 reclaims it and finds it zeroed.
    pub fn borrow_vm_destroyed(&mut self) -> Outcome {
        // VM 1 comes back fresh whatever happened (its page is given away).
        let res = self.borrow_vm_destroyed_steps();
        let again = self.renew(1);
        res.and(again)
    }

    fn borrow_vm_destroyed_steps(&mut self) -> Outcome {
        #[repr(C, align(4096))]
        struct Loan([u8; 4096]);
        static mut LOAN: Loan = Loan([0; 4096]);
        let pa = (&raw mut LOAN) as u64;
        // Endpoint 0 donates the page to sp1, which takes it and fills it.
        let d = desc(func::DONATE_64, 0, &[ids::SP1], &one(pa, 1));
        let r = crate::share::send_own(func::DONATE_64, &d);
        ensure_eq!(ans(&r), ffa::SUCCESS_32, "endpoint 0's donation to sp1");
        let given = handle_of(&r);
        let sp1 = |x: [u64; 5]| ffa::request_as(0, ids::SP1, x);
        let a2 = (perm::RW as u64) << 48;
        let r = sp1([cmd::MEM_RETRIEVE, given, 0, a2, 0]);
        ensure_eq!(r[4], func::RETRIEVE_RESP, "sp1 retrieves the donation");
        let r = sp1([cmd::MEM_FILL, pa, PAGE, 0xF111, 0]);
        ensure_eq!(r[4], PAGE / 8, "sp1 fills it");
        let a2 = 1 | (perm::RW as u64) << 48 | cmd::send::LEND << 56;
        let r = sp1([cmd::MEM_SEND, pa, 1, a2, 0]);
        ensure_eq!(r[4], ffa::SUCCESS_32, "sp1 lends it to VM 1");
        let h = r[5];
        self.buffers(1)?;
        let fl = test_protocol::mem::flags::ZERO_AFTER_RELINQUISH;
        let r = self.vm_retrieve(1, 1, ids::SP1, h, perm::RW, fl)?;
        ensure_eq!(ans(&r), func::RETRIEVE_RESP, "VM 1's retrieve");
        let (addr, ..) = self.vm_response(1)?;
        ensure_eq!(addr, BORROW_IPA, "mapped in the window");
        let w = self
            .vm_peek(1, addr + 8)
            .map_err(|f| super::stopped(1, f))?;
        ensure_eq!(w, 0xF112, "VM 1 reads sp1's words");
        let r = sp1([cmd::CALL, func::RECLAIM, h & 0xFFFF_FFFF, h >> 32, 0]);
        ensure_eq!(
            r[4] | (r[5] as u32 as u64) << 32,
            err(ffa::DENIED),
            "sp1's reclaim while VM 1 holds it"
        );
        let ack = self.hyp.destroy_vm(1).ok_or(fail("no VM 1"))?;
        ensure!(ack.ok(), "VM 1 destroyed");
        let r = sp1([cmd::CALL, func::RECLAIM, h & 0xFFFF_FFFF, h >> 32, 0]);
        ensure_eq!(r[4], ffa::SUCCESS_32, "sp1's reclaim after VM 1 went");
        let r = sp1([cmd::MEM_SUM, pa, PAGE, 0, 0]);
        ensure_eq!(
            r[5],
            0,
            "words left non-zero (zeroed as the retrieve asked)"
        );
        Ok(())
    }

    /// The VM's RX is full until it releases it (a retrieve meanwhile is
    /// BUSY, from the hypervisor); a retrieve again maps nothing new (the
    /// same IPA) and the page stays until the second relinquish.
    pub fn borrow_twice(&mut self) -> Outcome {
        let res = self.borrow_twice_steps();
        let again = self.renew(2);
        res.and(again)
    }

    fn borrow_twice_steps(&mut self) -> Outcome {
        let (h, want, tee) = self.given_back(2, cmd::send::LEND, perm::RW, 0x66 << 8)?;
        let r = self.vm_retrieve(2, 2, tee, h, perm::RW, 0)?;
        ensure_eq!(ans(&r), func::RETRIEVE_RESP, "the first retrieve");
        let r = self.vm_retrieve(2, 2, tee, h, perm::RW, 0)?;
        ensure_eq!(ans(&r), err(ffa::BUSY), "a retrieve while its RX is full");
        let (first, ..) = self.vm_response(2)?;
        let r = self.vm_retrieve(2, 2, tee, h, perm::RW, 0)?;
        ensure_eq!(ans(&r), func::RETRIEVE_RESP, "the retrieve again");
        let (second, ..) = self.vm_response(2)?;
        ensure_eq!(second, first, "the same IPA");
        ensure_eq!(
            self.hyp.shares_of(2).map_or(0, |s| s.window),
            1,
            "one page of the window"
        );
        ensure_eq!(
            self.vm_relinquish(2, h, 2)?,
            ffa::SUCCESS_32,
            "the first relinquish"
        );
        let w = self
            .vm_peek(2, first + 64)
            .map_err(|f| super::stopped(2, f))?;
        ensure_eq!(w, want, "still mapped after one relinquish of two");
        ensure_eq!(
            self.tee_reclaim(2, h)?,
            err(ffa::DENIED),
            "the TEE's reclaim while held once"
        );
        ensure_eq!(
            self.vm_relinquish(2, h, 2)?,
            ffa::SUCCESS_32,
            "the second relinquish"
        );
        ensure_eq!(
            self.hyp.shares_of(2).map_or(1, |s| s.window),
            0,
            "the window free"
        );
        ensure_eq!(
            self.tee_reclaim(2, h)?,
            ffa::SUCCESS_32,
            "the TEE's reclaim"
        );
        match self.vm_peek(2, first) {
            Err(crate::vm::Fault::Stage2 { ipa, .. }) => ensure_eq!(ipa, first, "fault IPA"),
            Err(f) => return Err(super::stopped(2, f)),
            Ok(_) => return Err(fail("the VM read a page it relinquished")),
        }
        Ok(())
    }
}

/// A shared check's failure as this stage prints it.
fn shared(r: vm_checks::Outcome) -> Outcome {
    r.map_err(|f| Fail {
        what: f.what,
        values: f.values,
    })
}

fn to_shared(f: Fail) -> vm_checks::Fail {
    vm_checks::Fail {
        what: f.what,
        values: f.values,
    }
}

/// The reference hypervisor's VMs as the shared checks
/// (`test_protocol::vm_checks`) drive them: calls through SMC, made by the
/// VM at NS-EL1; a VM stops at a stage-2 fault, so what is not mapped is
/// the hypervisor's count of pages away (the default `not_mapped`).
impl vm_checks::Vms for T<'_> {
    fn call(
        &mut self,
        vm: u16,
        x: vm_checks::Answer,
    ) -> Result<vm_checks::Answer, vm_checks::Fail> {
        let mut regs = [0u64; 18];
        regs[..8].copy_from_slice(&x);
        let r = self.smc(vm, regs).map_err(to_shared)?;
        let mut a = [0u64; 8];
        a.copy_from_slice(&r[..8]);
        Ok(a)
    }

    fn write(&mut self, vm: u16, ipa: u64, bytes: &[u8]) -> vm_checks::Outcome {
        self.vm_write(vm, ipa, bytes).map_err(to_shared)
    }

    fn load(&mut self, vm: u16, ipa: u64) -> Result<u64, vm_checks::Fail> {
        self.vm_peek(vm, ipa)
            .map_err(|f| to_shared(super::stopped(vm, f)))
    }

    fn store(&mut self, vm: u16, ipa: u64, value: u64) -> vm_checks::Outcome {
        let mut a = [0u64; 18];
        a[0] = ipa;
        a[1] = value;
        self.hyp
            .task(vm, op::POKE, a)
            .map(|_| ())
            .map_err(|f| to_shared(super::stopped(vm, f)))
    }

    fn away(&mut self, vm: u16) -> u16 {
        self.hyp.shares_of(vm).map_or(0, |s| s.away)
    }

    fn held(&mut self, vm: u16) -> usize {
        self.hyp.shares_of(vm).map_or(0, |s| s.held.len())
    }

    fn tee_address(&self, vm: u16, ipa: u64) -> Result<u64, vm_checks::Fail> {
        self.vm_pa(vm, ipa).map_err(to_shared)
    }

    fn ram(&self, _vm: u16) -> u64 {
        RAM_IPA
    }

    fn tx(&self, _vm: u16) -> u64 {
        TX_IPA
    }

    fn rx(&self, _vm: u16) -> u64 {
        RX_IPA
    }

    fn tee(&mut self, vm: u16, command: u64, args: [u64; 4]) -> Result<[u64; 4], vm_checks::Fail> {
        T::tee(self, vm, command, args).map_err(to_shared)
    }

    fn forwarded(&mut self, vm: u16) -> Option<u64> {
        Some(self.hyp.forwarded_of(vm))
    }
}
