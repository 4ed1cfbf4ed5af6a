//! The per-user checks on this board (`rpi4-*` PASS/FAIL lines). General
//! VMs 1-4 are real EL1 guests (`guests.rs`): their FF-A calls (HVC for odd
//! VMs, SMC for even ones) trap to this image, whose VM layer stamps the
//! trapping VM's own ID as sender, refuses framework messages and VM-to-VM
//! messages, answers FFA_ID_GET, answers PSCI as a hypervisor (`psci.rs`)
//! and hands the rest to the core. The layer also sends the core the VM
//! life-cycle messages (from endpoint 0). The same policy and answers as
//! the `vtee` stage on QEMU virt (docs/rpi4.md lists which of its checks
//! run here and which do not yet).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use spmc::ffa::Regs;
use spmc::stage2::Stage2;
use test_protocol::ffa::{self as f, fwk};
use test_protocol::mem::vm_refusal;
use test_protocol::{cmd, ids, mem, status};

use crate::guests::{Conduit, Guest, Op, Outcome};
use crate::layout;
use crate::platform;

/// FF-A answers the VM layer reads.
pub type Answer = [u64; 8];

/// The VM layer: what it does with a general VM's trapped FF-A call.
pub struct Layer {
    /// General VMs 1-[`layout::GUESTS`]' guests (index `vm - 1`).
    pub guests: Vec<Option<Guest>>,
    /// Their buffers and memory transactions (index `vm - 1`).
    pub shares: Vec<crate::share::VmShares>,
    /// The layer's own TX page, once mapped with the core.
    pub own_tx: Option<u64>,
    /// Calls the layer made to the core (the shared checks' "nothing
    /// forwarded").
    pub forwarded: u64,
}

/// PSCI function IDs (DEN0022) the checks here use (`psci.rs` has the rest).
mod psci {
    pub const VERSION: u64 = 0x8400_0000;
    pub const FEATURES: u64 = 0x8400_000A;
    /// True for a function ID of PSCI's range (32- and 64-bit).
    pub fn is_psci(id: u64) -> bool {
        matches!(id, 0x8400_0000..=0x8400_001F | 0xC400_0000..=0xC400_001F)
    }
}

/// SMCCC's NOT_SUPPORTED: the answer to an unknown function ID.
const SMCCC_NOT_SUPPORTED: u64 = 0xFFFF_FFFF;

impl Layer {
    /// Passes `x` (x0-x7) to the core as the call of endpoint `vm` (0: the
    /// layer itself) and returns the answer; FFA_YIELD/FFA_INTERRUPT of a
    /// trusted VM are resumed with FFA_RUN, as the reference hypervisor does.
    pub fn raw(&mut self, x: [u64; 8]) -> Answer {
        self.forwarded += 1;
        raw(x)
    }

    /// A call general VM `vm` trapped with (`vm` is the VM that trapped,
    /// whatever its registers say): what the layer answers.
    fn trapped(&mut self, vm: u16, x: [u64; 8], stage2: &mut Stage2) -> Answer {
        let id = x[0] & 0xFFFF_FFFF;
        if let Some(a) = self.share_call(vm, x, stage2) {
            return a;
        }
        match id {
            // FF-A calls a VM makes to its hypervisor: its own ID.
            f::ID_GET => [f::SUCCESS_32, 0, vm as u64, 0, 0, 0, 0, 0],
            f::VERSION | f::FEATURES => self.raw(x),
            f::MSG_SEND_DIRECT_REQ_32 | f::MSG_SEND_DIRECT_REQ_64 => {
                let mut x = x;
                x[0] = id;
                self.vm_request(vm, x)
            }
            // PSCI as a hypervisor answers it, for the VM's vCPU 0
            // (`psci.rs`: its own vCPUs, never a physical core or the board).
            id if psci::is_psci(id) => crate::psci::call(vm, 0, stage2.vttbr(), x),
            id if id >> 24 == 0x84 || id >> 24 == 0xC4 => {
                // Other FF-A calls from general VMs are not handled yet.
                [
                    f::ERROR_32,
                    0,
                    f::NOT_SUPPORTED as u32 as u64,
                    0,
                    0,
                    0,
                    0,
                    0,
                ]
            }
            _ => [SMCCC_NOT_SUPPORTED, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    /// Runs general VM `vm`'s guest for `op` with x0-x7 = `x`; its trapped
    /// calls go to [`Layer::trapped`] with its own ID.
    pub(crate) fn guest(&mut self, vm: u16, op: Op, x: [u64; 8]) -> Result<Outcome, String> {
        let slot = (vm as usize).wrapping_sub(1);
        let mut g = self
            .guests
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or_else(|| format!("VM {vm} has no guest"))?;
        let id = g.vm();
        let out = g.run(op, x, |_, regs, s2| self.trapped(id, regs, s2));
        self.guests[slot] = Some(g);
        out
    }

    /// The conduit general VM `vm` uses: HVC for odd VMs, SMC for even.
    fn conduit(vm: u16) -> Conduit {
        if vm % 2 == 1 {
            Conduit::Hvc
        } else {
            Conduit::Smc
        }
    }

    /// General VM `vm`'s guest makes the call `x` (on its conduit) and
    /// hands back the answer; a guest that faulted or failed gives an
    /// answer no check accepts (the reason is logged).
    pub(crate) fn vm_call(&mut self, vm: u16, x: [u64; 8]) -> Answer {
        match self.guest(vm, Op::Call(Self::conduit(vm)), x) {
            Ok(Outcome::Done(a)) => a,
            Ok(Outcome::Fault(ipa)) => {
                log::warn!("rpi4: VM {vm} faulted at IPA {ipa:#x}");
                [u64::MAX; 8]
            }
            Err(why) => {
                log::warn!("rpi4: VM {vm}: {why}");
                [u64::MAX; 8]
            }
        }
    }

    /// A general VM's direct request as the layer forwards it: the sender
    /// is the VM's own ID whatever w1[31:16] said; no VM-to-VM messages,
    /// no framework messages (DEN0077 v1.2 §18.3: only the hypervisor
    /// sends VM availability messages).
    fn vm_request(&mut self, vm: u16, x: [u64; 8]) -> Answer {
        vm_request(vm, x)
    }

    /// `command` with `args` to `dst` from general VM `vm`'s guest.
    pub(crate) fn req(&mut self, vm: u16, dst: u16, command: u64, args: [u64; 4]) -> Answer {
        self.vm_call(
            vm,
            [
                f::MSG_SEND_DIRECT_REQ_64,
                dst as u64,
                0,
                command,
                args[0],
                args[1],
                args[2],
                args[3],
            ],
        )
    }

    /// A VM availability message from the layer (endpoint 0) to the vTEE
    /// template: 0 or the FF-A error code the acknowledgement carries.
    fn availability(&mut self, kind: u32, vm: u16) -> Result<(), String> {
        let a = self.raw([
            f::MSG_SEND_DIRECT_REQ_32,
            ids::VTEE_TEMPLATE as u64,
            (fwk::FLAG | kind) as u64,
            0xFFFF_FFFF,
            0xFFFF_FFFF,
            vm as u64,
            0,
            0,
        ]);
        let ack = (fwk::FLAG | (kind + 1)) as u64;
        if a[0] == f::MSG_SEND_DIRECT_RESP_32 && a[2] & 0xFFFF_FFFF == ack {
            match a[3] as u32 as i32 {
                0 => Ok(()),
                c => Err(format!("acknowledged with status {c}")),
            }
        } else {
            Err(format!("answer {:#x?}", &a[..4]))
        }
    }
}

/// Passes `x` (x0-x7) to the core as the call of endpoint `vm` (0: the
/// layer itself), on the calling core, and returns the answer;
/// FFA_YIELD/FFA_INTERRUPT of a trusted VM are resumed with FFA_RUN, as the
/// reference hypervisor does.
pub fn raw(x: [u64; 8]) -> Answer {
    let mut r = Regs::default();
    r.0[..8].copy_from_slice(&x);
    platform::call(&mut r);
    let mut n = 0;
    while (r.0[0] == f::YIELD || r.0[0] == f::INTERRUPT_32) && n < 1000 {
        let target = r.0[1] & 0xFFFF_FFFF;
        r = Regs::default();
        r.0[0] = f::RUN;
        r.0[1] = target;
        platform::call(&mut r);
        n += 1;
    }
    let mut a = [0; 8];
    a.copy_from_slice(&r.0[..8]);
    a
}

/// A general VM's direct request as the layer forwards it, from any of its
/// vCPUs: the sender is the VM's own ID whatever w1[31:16] said; no
/// VM-to-VM messages, no framework messages (DEN0077 v1.2 §18.3: only the
/// hypervisor sends VM availability messages).
pub fn vm_request(vm: u16, mut x: [u64; 8]) -> Answer {
    let receiver = x[1] as u16;
    if receiver & 0x8000 == 0 || x[2] as u32 & fwk::FLAG != 0 {
        return [f::ERROR_32, 0, f::DENIED as u32 as u64, 0, 0, 0, 0, 0];
    }
    x[1] = (vm as u64) << 16 | receiver as u64;
    raw(x)
}

/// The FF-A error code of an answer, if it is FFA_ERROR.
fn error_code(a: &Answer) -> Option<i32> {
    (a[0] == f::ERROR_32).then_some(a[2] as u32 as i32)
}

/// A direct response with status OK: its results x4-x7.
pub(crate) fn ok(a: &Answer) -> Result<[u64; 4], String> {
    if a[0] == f::MSG_SEND_DIRECT_RESP_64 && a[3] == status::OK {
        Ok([a[4], a[5], a[6], a[7]])
    } else {
        Err(format!("answer {:#x?}", &a[..5]))
    }
}

pub(crate) fn expect_error(a: &Answer, code: i32) -> Result<(), String> {
    match error_code(a) {
        Some(c) if c == code => Ok(()),
        _ => Err(format!("expected FFA_ERROR({code}), got {:#x?}", &a[..4])),
    }
}

/// Counts of one run.
#[derive(Debug, Default)]
pub(crate) struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    pub(crate) fn check(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        match f() {
            Ok(()) => {
                self.passed += 1;
                arch_aarch64::console::line(format_args!("PASS {name}"));
            }
            Err(why) => {
                self.failed += 1;
                arch_aarch64::console::line(format_args!("FAIL {name}: {why}"));
            }
        }
    }
}

/// The four users of the demo.
const USERS: [u16; 4] = [1, 2, 3, 4];

/// Runs the per-user checks; returns (passed, failed).
pub fn run() -> (u32, u32) {
    let mut r = Report::default();
    let booted = platform::with_core(|c| c.partitions().len()).unwrap_or(0);
    let mut l = Layer {
        guests: Vec::new(),
        shares: Vec::new(),
        own_tx: None,
        forwarded: 0,
    };
    for vm in USERS {
        let mut guest = None;
        r.check(&format!("rpi4-vm{vm}-guest-created"), || {
            guest = Some(Guest::create(vm)?);
            Ok(())
        });
        l.guests.push(guest);
    }
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-guest-at-el1"), || {
            match l.guest(vm, Op::CurrentEl, [0; 8])? {
                // CurrentEL.EL is bits [3:2].
                Outcome::Done(x) if x[0] == 1 << 2 => Ok(()),
                o => Err(format!("{o:x?}")),
            }
        });
    }
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-id-get-from-trap"), || {
            // The guest names VM 1 in w1; the answer is its own ID.
            let a = l.vm_call(vm, [f::ID_GET, 1 << 16 | 1, 0, 0, 0, 0, 0, 0]);
            if a[0] == f::SUCCESS_32 && a[2] == vm as u64 {
                Ok(())
            } else {
                Err(format!("answer {:#x?}", &a[..3]))
            }
        });
    }
    r.check("rpi4-vm1-reads-own-ram", || {
        let base = crate::guests::ram(1);
        match l.guest(1, Op::Load(base), [0; 8])? {
            // The program's first instruction, `cmp x8, #1` (0xf100051f),
            // and the next one, `b.eq` (low bits 0x54).
            Outcome::Done(x) if x[0] as u32 == 0xf100_051f => Ok(()),
            o => Err(format!("{o:x?}")),
        }
    });
    for (name, addr) in [
        ("rpi4-vm1-cannot-read-vm2-ram", crate::guests::ram(2)),
        (
            "rpi4-vm1-cannot-read-trusted-pool",
            layout::BOARD.secure_managed.0,
        ),
        ("rpi4-vm1-cannot-read-el2-image", 0x8_0000),
        ("rpi4-vm1-cannot-read-trusted-vm-ipa", 0x1000_0000),
    ] {
        r.check(name, || match l.guest(1, Op::Load(addr), [0; 8])? {
            Outcome::Fault(ipa) if ipa == addr => Ok(()),
            o => Err(format!("{o:x?}")),
        });
    }
    r.check("rpi4-vm2-psci-version-to-tf-a", || {
        // PSCI 1.1 (TF-A 2.12): major 1 in bits [31:16].
        let a = l.vm_call(2, [psci::VERSION, 0, 0, 0, 0, 0, 0, 0]);
        if a[0] >> 16 == 1 {
            Ok(())
        } else {
            Err(format!("{:#x}", a[0]))
        }
    });
    r.check("rpi4-vm1-psci-features-over-hvc", || {
        // PSCI_FEATURES(PSCI_VERSION): 0, supported.
        let a = l.vm_call(1, [psci::FEATURES, psci::VERSION, 0, 0, 0, 0, 0, 0]);
        if a[0] == 0 {
            Ok(())
        } else {
            Err(format!("{:#x}", a[0]))
        }
    });
    r.check("rpi4-vm4-unknown-smc-not-supported", || {
        let a = l.vm_call(4, [0xC200_0001, 0, 0, 0, 0, 0, 0, 0]);
        if a[0] == SMCCC_NOT_SUPPORTED {
            Ok(())
        } else {
            Err(format!("{:#x}", a[0]))
        }
    });
    r.check("rpi4-trusted-vms-booted", || {
        // sp1, sp2, tpm, crash-data and crash-undef (the vtee template is
        // kept, not run: its instances are built per user).
        if booted == 5 {
            Ok(())
        } else {
            Err(format!("{booted} trusted VMs"))
        }
    });
    r.check("rpi4-version-1.2", || {
        let a = l.raw([f::VERSION, f::V1_2 as u64, 0, 0, 0, 0, 0, 0]);
        if a[0] == f::V1_2 as u64 {
            Ok(())
        } else {
            Err(format!("{:#x}", a[0]))
        }
    });
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-created"), || {
            l.availability(fwk::VM_CREATED, vm)
        });
    }
    let mut tees = Vec::new();
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-reaches-own-trusted-vm"), || {
            let id = ok(&l.req(vm, ids::VTEE_TEMPLATE, cmd::WHOAMI, [0; 4]))?[0] as u16;
            let first = ids::VTEE_FIRST_INSTANCE;
            if !(first..first + ids::VTEE_INSTANCES).contains(&id) || tees.contains(&id) {
                return Err(format!("instance {id:#x} (others {tees:x?})"));
            }
            tees.push(id);
            Ok(())
        });
    }
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-kv-put"), || {
            ok(&l.req(
                vm,
                ids::VTEE_TEMPLATE,
                cmd::KV_PUT,
                [7, 0x1000 + vm as u64, 0, 0],
            ))
            .map(|_| ())
        });
    }
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-kv-isolated"), || {
            let v = ok(&l.req(vm, ids::VTEE_TEMPLATE, cmd::KV_GET, [7, 0, 0, 0]))?[0];
            if v == 0x1000 + vm as u64 {
                Ok(())
            } else {
                Err(format!("read {v:#x}"))
            }
        });
    }
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-shared-tpm"), || {
            let x = ok(&l.req(vm, ids::TPM, cmd::ECHO, [vm as u64, 2, 3, 4]))?;
            if x == [vm as u64, 2, 3, 4] {
                Ok(())
            } else {
                Err(format!("{x:x?}"))
            }
        });
    }
    r.check("rpi4-vm1-reaches-bound-sp1", || {
        ok(&l.req(1, ids::SP1, cmd::ECHO, [1, 2, 3, 4])).map(|_| ())
    });
    for vm in [2, 3, 4] {
        r.check(&format!("rpi4-vm{vm}-denied-sp1"), || {
            expect_error(&l.req(vm, ids::SP1, cmd::ECHO, [0; 4]), f::DENIED)
        });
    }
    r.check("rpi4-vm4-denied-other-instance", || {
        let other = tees.first().copied().ok_or("no instance")?;
        expect_error(&l.req(4, other, cmd::ECHO, [0; 4]), f::DENIED)
    });
    // Cores 1-3 and the VMs' own vCPUs on them (smp.rs, psci.rs).
    for (name, outcome) in crate::psci::checks(&mut l) {
        r.check(&name, || outcome);
    }
    r.check("rpi4-layer-rxtx-mapped", || l.map_own_buffers());
    r.check("rpi4-vm2-rxtx-refused", || {
        // The vtee stage's `vm-mem-rxtx-refused` cases, on this board.
        let ram = crate::guests::ram(2);
        let (tx, rx) = (ram + TX_PAGE, ram + RX_PAGE);
        for (t, x, pages) in [
            (0x5000_0000, rx, 1),
            (tx, ram + layout::GUEST_RAM_SIZE, 1),
            (crate::guests::ram(1) + TX_PAGE, rx, 1),
            (ram, rx, 1),
            (tx + 8, rx, 1),
            (tx, tx, 1),
            (tx, rx, 2),
            (tx, rx, 0),
        ] {
            let a = l.vm_call(2, [f::RXTX_MAP_64, t, x, pages, 0, 0, 0, 0]);
            expect_error(&a, vm_refusal::BAD_RXTX)
                .map_err(|e| format!("TX {t:#x}, RX {x:#x}, {pages} pages: {e}"))?;
        }
        Ok(())
    });
    for vm in [1, 2] {
        r.check(&format!("rpi4-vm{vm}-rxtx-map"), || {
            let (tx, rx) = (
                crate::guests::ram(vm) + TX_PAGE,
                crate::guests::ram(vm) + RX_PAGE,
            );
            let a = l.vm_call(vm, [f::RXTX_MAP_64, tx, rx, 1, 0, 0, 0, 0]);
            if a[0] != f::SUCCESS_32 {
                return Err(format!("answer {:#x?}", &a[..3]));
            }
            expect_error(
                &l.vm_call(vm, [f::RXTX_MAP_64, tx, rx, 1, 0, 0, 0, 0]),
                vm_refusal::SECOND_RXTX,
            )
        });
    }
    r.check("rpi4-vm2-rxtx-unmap", || {
        // The vtee stage's `vm-mem-rxtx-unmap`.
        let ram = crate::guests::ram(2);
        expect_error(
            &l.vm_call(2, [f::RXTX_UNMAP, 1 << 16, 0, 0, 0, 0, 0, 0]),
            vm_refusal::BAD_RXTX,
        )?;
        let a = l.vm_call(2, [f::RXTX_UNMAP, 0, 0, 0, 0, 0, 0, 0]);
        if a[0] != f::SUCCESS_32 {
            return Err(format!("unmap {:#x?}", &a[..3]));
        }
        expect_error(
            &l.vm_call(2, [f::RXTX_UNMAP, 0, 0, 0, 0, 0, 0, 0]),
            vm_refusal::BAD_RXTX,
        )?;
        let d = send_desc(
            mem::func::SHARE_64,
            2,
            ids::VTEE_TEMPLATE,
            ram + DOC_PAGE,
            1,
        );
        expect_error(
            &send_answer(&mut l, 2, mem::func::SHARE_64, &d),
            vm_refusal::NO_TX,
        )?;
        let a = l.vm_call(
            2,
            [f::RXTX_MAP_64, ram + TX_PAGE, ram + RX_PAGE, 1, 0, 0, 0, 0],
        );
        if a[0] == f::SUCCESS_32 {
            Ok(())
        } else {
            Err(format!("mapped again: {:#x?}", &a[..3]))
        }
    });
    r.check("rpi4-vm1-share-to-own-tee-sealed", || {
        share_cycle(&mut l, 1, mem::func::SHARE_64)
    });
    r.check("rpi4-vm2-lend-to-own-tee-sealed", || {
        share_cycle(&mut l, 2, mem::func::LEND_64)
    });
    r.check("rpi4-vm2-lent-page-leaves-stage2", || {
        // While lent, the page is not VM 2's: a load faults; reclaimed, it
        // is back.
        let page = crate::guests::ram(2) + DOC_PAGE;
        let d = send_desc(mem::func::LEND_64, 2, ids::VTEE_TEMPLATE, page, 1);
        let h = send(&mut l, 2, mem::func::LEND_64, &d)?;
        let away = l.guest(2, Op::Load(page), [0; 8])?;
        let reclaim = l.vm_call(
            2,
            [mem::func::RECLAIM, h & 0xFFFF_FFFF, h >> 32, 0, 0, 0, 0, 0],
        );
        let back = l.guest(2, Op::Load(page), [0; 8])?;
        match (away, reclaim[0], back) {
            (Outcome::Fault(ipa), f::SUCCESS_32, Outcome::Done(_)) if ipa == page => Ok(()),
            (a, r, b) => Err(format!("lent: {a:x?}, reclaim {r:#x}, back: {b:x?}")),
        }
    });
    r.check("rpi4-share-not-its-tee", || {
        // The vtee stage's `vm-mem-policy`: another user's trusted VM, a
        // partition not bound to the VM; the core decides.
        let (inst1, inst4) = (
            tees.first().copied().ok_or("no instance of VM 1")?,
            tees.get(3).copied().ok_or("no instance of VM 4")?,
        );
        for (vm, to) in [(2u16, inst1), (2, ids::SP1), (2, ids::SP2), (1, inst4)] {
            for f_id in [mem::func::SHARE_64, mem::func::LEND_64] {
                let d = send_desc(f_id, vm, to, crate::guests::ram(vm) + DOC_PAGE, 1);
                expect_error(&send_answer(&mut l, vm, f_id, &d), vm_refusal::NOT_ITS_TEE)
                    .map_err(|e| format!("VM {vm} -> {to:#x} ({f_id:#x}): {e}"))?;
            }
        }
        Ok(())
    });
    r.check("rpi4-vm1-share-not-own-ram", || {
        // The vtee stage's `vm-mem-outside`: general-VM RAM that is not
        // VM 1's (the core would take it: only the layer knows whose it
        // is), the trusted pool, past and before its RAM, unaligned; its
        // first page.
        let ram = crate::guests::ram(1);
        for (addr, pages, code) in [
            (0x5000_0000u64, 1u32, vm_refusal::NOT_OWN_RAM),
            (
                ram + layout::GUEST_RAM_SIZE - 0x1000,
                2,
                vm_refusal::NOT_OWN_RAM,
            ),
            (ram - 0x1000, 1, vm_refusal::NOT_OWN_RAM),
            (crate::guests::ram(2) + DOC_PAGE, 1, vm_refusal::NOT_OWN_RAM),
            (layout::BOARD.secure_managed.0, 1, vm_refusal::NOT_OWN_RAM),
            (ram + DOC_PAGE + 8, 1, vm_refusal::NOT_OWN_RAM),
            (ram, 1, vm_refusal::FIRST_PAGE),
        ] {
            for f_id in [mem::func::SHARE_64, mem::func::LEND_64] {
                let d = send_desc(f_id, 1, ids::VTEE_TEMPLATE, addr, pages);
                expect_error(&send_answer(&mut l, 1, f_id, &d), code)
                    .map_err(|e| format!("{f_id:#x} of {addr:#x} x{pages}: {e}"))?;
            }
        }
        Ok(())
    });
    r.check("rpi4-vm1-share-forged-sender", || {
        // The vtee stage's `vm-mem-forged-sender`.
        let other = tees.get(1).copied().ok_or("no instance of VM 2")?;
        for sender in [2u16, 0, 0x7FFF, ids::SP1, other] {
            for f_id in [mem::func::SHARE_64, mem::func::LEND_32] {
                let d = send_desc(
                    f_id,
                    sender,
                    ids::VTEE_TEMPLATE,
                    crate::guests::ram(1) + DOC_PAGE,
                    1,
                );
                expect_error(&send_answer(&mut l, 1, f_id, &d), vm_refusal::FORGED_SENDER)
                    .map_err(|e| format!("sender {sender:#x}, {f_id:#x}: {e}"))?;
            }
        }
        Ok(())
    });
    r.check("rpi4-vm2-reclaim-not-own-handle", || {
        // The vtee stage's `vm-mem-reclaim-others`.
        let d = send_desc(
            mem::func::LEND_64,
            1,
            ids::VTEE_TEMPLATE,
            crate::guests::ram(1) + DOC_PAGE,
            1,
        );
        let h = send(&mut l, 1, mem::func::LEND_64, &d)?;
        let reclaim = |l: &mut Layer, vm: u16, h: u64| {
            l.vm_call(
                vm,
                [mem::func::RECLAIM, h & 0xFFFF_FFFF, h >> 32, 0, 0, 0, 0, 0],
            )
        };
        expect_error(&reclaim(&mut l, 2, h), vm_refusal::NOT_OWN_HANDLE)
            .map_err(|e| format!("VM 2 reclaims VM 1's: {e}"))?;
        expect_error(&reclaim(&mut l, 2, 0xFFFF_0000), vm_refusal::NOT_OWN_HANDLE)
            .map_err(|e| format!("unknown handle: {e}"))?;
        let a = reclaim(&mut l, 1, h);
        if a[0] == f::SUCCESS_32 {
            Ok(())
        } else {
            Err(format!("VM 1's own reclaim: {:#x?}", &a[..3]))
        }
    });
    r.check("rpi4-vm3-share-without-rxtx", || {
        let d = send_desc(
            mem::func::SHARE_64,
            3,
            ids::VTEE_TEMPLATE,
            crate::guests::ram(3) + DOC_PAGE,
            1,
        );
        expect_error(
            &send_answer(&mut l, 3, mem::func::SHARE_64, &d),
            vm_refusal::NO_TX,
        )
    });
    crate::share_checks::run(&mut l, &mut r, &tees);
    r.check("rpi4-forged-sender-stamped", || {
        // VM 2's guest names VM 1 as sender: the trap says 2, so sp1 stays
        // denied.
        let a = l.vm_call(
            2,
            [
                f::MSG_SEND_DIRECT_REQ_64,
                1 << 16 | ids::SP1 as u64,
                0,
                cmd::ECHO,
                0,
                0,
                0,
                0,
            ],
        );
        expect_error(&a, f::DENIED)
    });
    r.check("rpi4-forged-framework-message-refused", || {
        let a = l.vm_call(
            3,
            [
                f::MSG_SEND_DIRECT_REQ_32,
                ids::VTEE_TEMPLATE as u64,
                (fwk::FLAG | fwk::VM_DESTROYED) as u64,
                0xFFFF_FFFF,
                0xFFFF_FFFF,
                1,
                0,
                0,
            ],
        );
        expect_error(&a, f::DENIED)?;
        // VM 1's TEE is still there.
        ok(&l.req(1, ids::VTEE_TEMPLATE, cmd::ECHO, [0; 4])).map(|_| ())
    });
    r.check("rpi4-no-vm-to-vm", || {
        expect_error(&l.req(1, 2, cmd::ECHO, [0; 4]), f::DENIED)
    });
    r.check("rpi4-vm3-ram-written", || {
        let at = crate::guests::ram(3) + 0x8000;
        l.guest(3, Op::Store(at, 0x5ec7e7), [0; 8])?;
        match l.guest(3, Op::Load(at), [0; 8])? {
            Outcome::Done(x) if x[0] == 0x5ec7e7 => Ok(()),
            o => Err(format!("{o:x?}")),
        }
    });
    r.check("rpi4-vm3-destroyed", || {
        // Its RX/TX pair, which the core maps in its name, goes first.
        let _ = l.unmap_buffers(3);
        let g = l.guests[2].take().ok_or("no guest")?;
        g.destroy()?;
        if let Some(s) = l.shares.get_mut(2) {
            *s = Default::default();
        }
        l.availability(fwk::VM_DESTROYED, 3)
    });
    r.check("rpi4-vm3-destroyed-tee-gone", || {
        // Its TEE, asked by the layer as VM 3 would (it has no guest now).
        let a = l.vm_request(
            3,
            [
                f::MSG_SEND_DIRECT_REQ_64,
                ids::VTEE_TEMPLATE as u64,
                0,
                cmd::ECHO,
                0,
                0,
                0,
                0,
            ],
        );
        error_code(&a)
            .map(|_| ())
            .ok_or_else(|| format!("answer {:#x?}", &a[..4]))
    });
    r.check("rpi4-vm3-recreated", || {
        l.availability(fwk::VM_CREATED, 3)?;
        l.guests[2] = Some(Guest::create(3)?);
        Ok(())
    });
    r.check("rpi4-vm3-recreated-ram-zeroed", || {
        let at = crate::guests::ram(3) + 0x8000;
        match l.guest(3, Op::Load(at), [0; 8])? {
            Outcome::Done(x) if x[0] == 0 => Ok(()),
            o => Err(format!("{o:x?}")),
        }
    });
    crate::share_checks::after_recreate(&mut l, &mut r);
    r.check("rpi4-vm3-recreated-tee-zeroed", || {
        let v = ok(&l.req(3, ids::VTEE_TEMPLATE, cmd::KV_GET, [7, 0, 0, 0]))?[0];
        if v == 0 {
            Ok(())
        } else {
            Err(format!("old value {v:#x} survived"))
        }
    });
    r.check("rpi4-others-kept-across-destroy", || {
        let v = ok(&l.req(4, ids::VTEE_TEMPLATE, cmd::KV_GET, [7, 0, 0, 0]))?[0];
        if v == 0x1004 {
            Ok(())
        } else {
            Err(format!("read {v:#x}"))
        }
    });
    // A figure, while all four users' trusted VMs still run (psci.rs).
    crate::psci::bench_4cores(&mut l);
    r.check("rpi4-faulting-trusted-vm-aborted", || {
        // VM 2's own TEE executes an undefined instruction.
        let a = l.req(2, ids::VTEE_TEMPLATE, cmd::UNDEF, [0; 4]);
        expect_error(&a, f::ABORTED)
    });
    r.check("rpi4-aborted-stays-aborted", || {
        let a = l.req(2, ids::VTEE_TEMPLATE, cmd::ECHO, [0; 4]);
        error_code(&a)
            .map(|_| ())
            .ok_or_else(|| format!("answer {:#x?}", &a[..4]))
    });
    r.check("rpi4-others-go-on-after-abort", || {
        ok(&l.req(1, ids::VTEE_TEMPLATE, cmd::ECHO, [0; 4]))?;
        ok(&l.req(4, ids::TPM, cmd::ECHO, [0; 4]))?;
        ok(&l.req(1, ids::SP1, cmd::ECHO, [0; 4])).map(|_| ())
    });
    r.check("rpi4-scale-instances", || {
        // More users until the core says NO_MEMORY or runs out of IDs.
        let mut n = USERS.len() as u32;
        for vm in 5..=200u16 {
            match l.availability(fwk::VM_CREATED, vm) {
                Ok(()) => n += 1,
                Err(_) => break,
            }
        }
        log::info!("rpi4: {n} live per-user trusted VMs");
        if n >= 32 {
            Ok(())
        } else {
            Err(format!("only {n}"))
        }
    });
    bench(&mut l);
    // After the figure: VM 1's list registers are live from here on.
    crate::vgic::checks(&mut l, &mut r);
    (r.passed, r.failed)
}

/// Pages of a general VM's RAM the share checks use (offsets from its
/// base): its TX and RX buffers, and the document it shares.
pub(crate) const TX_PAGE: u64 = 0x1000;
pub(crate) const RX_PAGE: u64 = 0x2000;
pub(crate) const DOC_PAGE: u64 = 0x4000;

/// A v1.2 send descriptor (DEN0140 chapter 3) from `sender` to `to` of
/// `pages` pages at `addr`, read-write, as the reference hypervisor's
/// `vm-mem-*` checks write them (test_protocol::mem).
fn send_desc(f_id: u64, sender: u16, to: u16, addr: u64, pages: u32) -> Vec<u8> {
    let rx = [mem::Receiver::new(to, mem::perm::RW)];
    let ranges = [mem::Range { addr, pages }];
    let list = mem::List(&ranges);
    let mut t = mem::Transaction::send(mem::Layout::V1_2, sender, &rx, &list);
    t.attributes = mem::sender_attributes(f_id, 1);
    let mut b = alloc::vec![0u8; t.len()];
    let _ = t.write(&mut b);
    b
}

/// VM `vm` writes `d` into its TX and sends it with `f_id`: the answer.
fn send_answer(l: &mut Layer, vm: u16, f_id: u64, d: &[u8]) -> Answer {
    let tx = crate::guests::ram(vm) + TX_PAGE;
    if let Err(why) = crate::guests::with_ram(tx, 0x1000, |m| m[..d.len()].copy_from_slice(d)) {
        log::warn!("rpi4: VM {vm}'s TX: {why}");
    }
    let n = d.len() as u64;
    l.vm_call(vm, [f_id, n, n, 0, 0, 0, 0, 0])
}

/// A send that must succeed: its handle.
fn send(l: &mut Layer, vm: u16, f_id: u64, d: &[u8]) -> Result<u64, String> {
    let a = send_answer(l, vm, f_id, d);
    if a[0] == f::SUCCESS_32 {
        Ok(a[2] & 0xFFFF_FFFF | (a[3] & 0xFFFF_FFFF) << 32)
    } else {
        Err(format!("send answered {:#x?}", &a[..3]))
    }
}

/// The reference hypervisor's `vm-mem-*` cycle on this board: VM `vm`
/// writes a document into its RAM, sends it to its own TEE with `f_id`,
/// the TEE retrieves it, seals it (a keyed checksum written after it) and
/// relinquishes, the VM reclaims and reads the seal itself.
fn share_cycle(l: &mut Layer, vm: u16, f_id: u64) -> Result<(), String> {
    let page = crate::guests::ram(vm) + DOC_PAGE;
    let (seed, key, bytes) = (0xD0C << 20 | vm as u64, 0x5EA1, 128u64);
    crate::guests::with_ram(page, 0x1000, |m| {
        for i in 0..bytes / 8 {
            let o = (i * 8) as usize;
            m[o..o + 8].copy_from_slice(&(seed + i).to_le_bytes());
        }
    })?;
    let want = test_protocol::seal(key, (0..bytes / 8).map(|i| seed + i));
    let d = send_desc(f_id, vm, ids::VTEE_TEMPLATE, page, 1);
    let h = send(l, vm, f_id, &d)?;
    let [steps, seal, addr, _] = ok(&l.req(
        vm,
        ids::VTEE_TEMPLATE,
        cmd::MEM_SEAL,
        [h, vm as u64, bytes, key],
    ))?;
    if steps != 0 || seal != want || addr != page {
        return Err(format!(
            "TEE: steps {steps:#x}, seal {seal:#x} (want {want:#x}), address {addr:#x}"
        ));
    }
    let a = l.vm_call(
        vm,
        [mem::func::RECLAIM, h & 0xFFFF_FFFF, h >> 32, 0, 0, 0, 0, 0],
    );
    if a[0] != f::SUCCESS_32 {
        return Err(format!("reclaim {:#x?}", &a[..3]));
    }
    match l.guest(vm, Op::Load(page + bytes), [0; 8])? {
        Outcome::Done(x) if x[0] == want => Ok(()),
        o => Err(format!("the VM reads {o:x?} after the reclaim")),
    }
}

/// Round trips timed for the benchmark line.
const BENCH_ROUNDS: u64 = 200;

/// Times VM 1's direct request to its own trusted VM and back (ECHO):
/// its guest's HVC trap, the VM layer, the core, the trusted VM and the
/// return to the guest, on the generic counter. Under QEMU's
/// `-icount shift=0` (one instruction per virtual nanosecond) the counter's
/// ticks convert to instructions: `ticks * 10^9 / CNTFRQ_EL0`. Not a check:
/// a figure, printed whatever it is (`cargo xtask bench` reads it on virt).
fn bench(l: &mut Layer) {
    let freq = arch_aarch64::sysreg::read_cntfrq_el0().max(1);
    let start = arch_aarch64::sysreg::read_cntvct_el0();
    for i in 0..BENCH_ROUNDS {
        if ok(&l.req(1, ids::VTEE_TEMPLATE, cmd::ECHO, [i, 0, 0, 0])).is_err() {
            log::warn!("rpi4: bench: round trip {i} failed");
            return;
        }
    }
    let ticks = arch_aarch64::sysreg::read_cntvct_el0() - start;
    let per = ticks * 1_000_000_000 / freq / BENCH_ROUNDS;
    log::info!(
        "rpi4: {ticks} counter ticks at {freq} Hz for {BENCH_ROUNDS} round trips \
         (instructions only under -icount shift=0)"
    );
    // Printed whatever the log level (`cargo xtask bench` builds with
    // `warn` and reads this line).
    arch_aarch64::console::line(format_args!(
        "bench: rpi4_vm_to_own_tee_round_trip: {per} instructions"
    ));
}
