//! VMs: their memory, stage 2, registers and life cycle, and the loop that
//! runs one until it has done its task.
//!
//! A VM has:
//! - an FF-A endpoint ID (1..0x7FFF, the one the SPMC knows it by) and a
//!   VMID (its slot + 1, which tags its TLB entries);
//! - 64 KiB of RAM of its own: one slot of [`VM_RAM`] in the hypervisor's
//!   `.bss`, zeroed when the VM is created and when it is destroyed;
//! - a stage 2 (VTTBR_EL2, built with aarch64-paging's `Stage2` regime)
//!   that maps exactly: its RAM at IPA [`RAM_IPA`] (read-write, never
//!   executable), the hypervisor's `.text` and `.rodata` at their own
//!   addresses (read-only, executable: the VM's program and its stage-1
//!   table [`GUEST_L1`]) and the console page (device). Nothing else: not
//!   the hypervisor's data, heap or stack, not another VM's RAM;
//! - its general registers and EL1 system registers, swapped in and out by
//!   the hypervisor (the EL1 state lazily: only when another VM runs).
//!
//! Creating a VM tells the SPMC first (VM created: its TEE is made and
//! booted before the answer comes), then builds and boots the VM up to its
//! first "ready". Destroying a VM tells the SPMC (VM destroyed: the TEE's
//! memory is zeroed and freed), then zeroes the VM's RAM and drops its
//! stage 2 and TLB entries.

use alloc::boxed::Box;
use core::fmt;

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes as S2};
use aarch64_paging::idmap::IdTranslation;
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2};
use aarch64_paging::{MapError, Mapping};

use crate::arch::{self, El1State, ExitKind, GuestRegs};
use crate::ffa::{self, Ack, Regs, VmFfa};
use crate::guest::{
    self, HV_GUEST_EXCEPTION, HV_TASK_DONE, MAILBOX_IPA, Mailbox, RAM_IPA, RAM_SIZE, UART_IPA,
};
use crate::share::{self, Change, VmShares};

/// How many VMs can run at once.
pub const MAX_VMS: usize = 8;

/// One VM's RAM.
#[repr(C, align(4096))]
struct Ram([u8; RAM_SIZE as usize]);

/// Every VM's RAM, one slot each (distinct physical pages by construction).
static mut VM_RAM: [Ram; MAX_VMS] = [const { Ram([0; RAM_SIZE as usize]) }; MAX_VMS];

unsafe extern "C" {
    /// First byte of the image's `.text` (tests/baremetal/image.ld).
    safe static __text_start: u8;
    /// First byte of `.data`: `.text` and `.rodata` end here.
    safe static __data_start: u8;
}

type Stage2Table = Mapping<IdTranslation<S2>, Stage2>;

// Stage-2 attributes: the VM's RAM (normal write-back, read-write, never
// executable), the program (read-only, executable), the console (device).
const RAM_ATTRS: S2 = S2::VALID
    .union(S2::ACCESS_FLAG)
    .union(S2::SH_INNER)
    .union(S2::MEMATTR_NORMAL_INNER_WB)
    .union(S2::MEMATTR_NORMAL_OUTER_WB)
    .union(S2::S2AP_ACCESS_RW)
    .union(S2::XN);
const CODE_ATTRS: S2 = S2::VALID
    .union(S2::ACCESS_FLAG)
    .union(S2::SH_INNER)
    .union(S2::MEMATTR_NORMAL_INNER_WB)
    .union(S2::MEMATTR_NORMAL_OUTER_WB)
    .union(S2::S2AP_ACCESS_RO);
const DEVICE_ATTRS: S2 = S2::VALID
    .union(S2::ACCESS_FLAG)
    .union(S2::MEMATTR_DEVICE_nGnRE)
    .union(S2::S2AP_ACCESS_RW)
    .union(S2::XN);

// A VM's first EL1 state: the MMU on with GUEST_L1 (the same values the
// baremetal runtime uses at EL1: MAIR attribute 0 device, 1 normal WB; TCR
// T0SZ=25, write-back walks, inner shareable, EPD1, 40-bit IPA; SCTLR M, C,
// SA, I and the RES1 bits), its vectors, its stack at the top of its RAM;
// FP/SIMD trapped (the program is built soft-float).
const GUEST_MAIR: u64 = 0xff04;
#[cfg(not(feature = "sbsa"))]
const GUEST_TCR: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32);
/// sbsa-ref: T0SZ=16 (48-bit VA, level-0 root [`guest::GUEST_L0`]), 48-bit IPA.
#[cfg(feature = "sbsa")]
const GUEST_TCR: u64 = 16 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (5 << 32);
/// The VMs' stage-1 root.
#[cfg(not(feature = "sbsa"))]
fn guest_root() -> u64 {
    (&raw const guest::GUEST_L1) as u64
}
#[cfg(feature = "sbsa")]
fn guest_root() -> u64 {
    (&raw const guest::GUEST_L0) as u64
}
const GUEST_SCTLR: u64 = 0x30d0_0800 | 1 | (1 << 2) | (1 << 3) | (1 << 12);
/// SPSR_EL2 for a VM's first entry: EL1h, D, A, I and F masked.
const GUEST_SPSR: u64 = 0x3c5;

/// Why a VM stopped for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A stage-2 abort: the VM touched an IPA its stage 2 does not give it
    /// (or not for that access).
    Stage2 {
        ipa: u64,
        elr: u64,
        write: bool,
        fetch: bool,
    },
    /// The VM took an exception at EL1 and its vectors reported it (vector 16: a panic).
    Guest {
        esr: u64,
        elr: u64,
        far: u64,
        vector: u64,
    },
    /// An exit the hypervisor does not handle.
    Unexpected { kind: ExitKind, esr: u64, elr: u64 },
    /// There is no such VM.
    NoVm,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::Stage2 {
                ipa,
                elr,
                write,
                fetch,
            } => {
                let what = if fetch {
                    "fetch"
                } else if write {
                    "write"
                } else {
                    "read"
                };
                write!(f, "stage-2 fault: {what} of IPA {ipa:#x} at {elr:#x}")
            }
            Fault::Guest {
                esr,
                elr,
                far,
                vector,
            } => write!(
                f,
                "exception at EL1: vector {vector}, ESR {esr:#x}, ELR {elr:#x}, FAR {far:#x}"
            ),
            Fault::Unexpected { kind, esr, elr } => {
                write!(f, "unexpected exit {kind:?}: ESR {esr:#x}, ELR {elr:#x}")
            }
            Fault::NoVm => f.write_str("no such VM"),
        }
    }
}

/// Why a VM could not be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// Every slot is taken.
    NoSlot,
    /// A VM with that ID runs already.
    Duplicate,
    /// The SPMC refused the VM created message (its acknowledgement).
    Tee(Ack),
    /// aarch64-paging refused a stage-2 mapping.
    Map(MapError),
    /// The VM faulted before its first "ready".
    Boot(Fault),
}

/// One VM.
#[derive(Debug)]
pub struct Vm {
    /// FF-A endpoint ID.
    pub id: u16,
    slot: usize,
    vttbr: u64,
    /// Its stage-2 tables (kept alive while VTTBR_EL2 may point at them).
    stage2: Stage2Table,
    /// Its RX/TX buffers and the memory it shares, lends or donates.
    shares: VmShares,
    regs: GuestRegs,
    el1: El1State,
    ffa: VmFfa,
    crashed: Option<Fault>,
    exits: u64,
}

/// What an exit means for the run loop.
enum Step {
    Resume,
    TaskDone,
    Crash(Fault),
}

impl Vm {
    /// Handles one exit; `kind` is the vector it took.
    #[inline(always)]
    fn handle_exit(&mut self, kind: ExitKind) -> Step {
        self.exits += 1;
        let r = &mut self.regs;
        if kind != ExitKind::Sync {
            return Step::Crash(Fault::Unexpected {
                kind,
                esr: r.esr,
                elr: r.elr,
            });
        }
        match r.esr >> 26 {
            // HVC from AArch64: ELR_EL2 is the next instruction already.
            0x16 => match r.x[0] {
                HV_TASK_DONE => Step::TaskDone,
                HV_GUEST_EXCEPTION => Step::Crash(Fault::Guest {
                    esr: r.x[1],
                    elr: r.x[2],
                    far: r.x[3],
                    vector: r.x[4],
                }),
                _ => {
                    self.ffa_call();
                    Step::Resume
                }
            },
            // SMC from AArch64, trapped by HCR_EL2.TSC: ELR_EL2 is the SMC itself.
            0x17 => {
                r.elr += 4;
                self.ffa_call();
                Step::Resume
            }
            // Instruction (0x20) or data (0x24) abort from EL1 at stage 2.
            ec @ (0x20 | 0x24) => Step::Crash(Fault::Stage2 {
                ipa: (r.hpfar >> 4) << 12 | (r.far & 0xFFF),
                elr: r.elr,
                write: ec == 0x24 && r.esr & (1 << 6) != 0,
                fetch: ec == 0x20,
            }),
            _ => Step::Crash(Fault::Unexpected {
                kind,
                esr: r.esr,
                elr: r.elr,
            }),
        }
    }

    /// The VM's x0-x17 through the FF-A proxy (in place).
    #[inline(always)]
    fn ffa_call(&mut self) {
        if let Some((call, _)) = self.regs.x.split_first_chunk_mut::<18>()
            && !ffa::vm_call(self.id, &mut self.ffa, call)
        {
            let mut ctx = share::Ctx {
                vm: self.id,
                ram: ram_pa(self.slot),
                st: &mut self.shares,
                ffa: &mut self.ffa,
            };
            let change = ctx.call(call);
            self.apply(change);
            self.apply_window();
        }
    }

    /// Applies a memory call's effect on the VM's stage 2: pages it lent
    /// or donated leave it, pages it reclaimed come back (the VM's stage 2
    /// is the one loaded while its call is handled).
    #[inline(never)]
    fn apply(&mut self, c: Change) {
        if c == Change::default() {
            return;
        }
        let ram = ram_pa(self.slot);
        for i in 0..share::VM_PAGES {
            let (unmap, map) = (c.unmap >> i & 1 != 0, c.map >> i & 1 != 0);
            if !unmap && !map {
                continue;
            }
            let ipa = (RAM_IPA + i * share::PAGE) as usize;
            let attrs = if map {
                RAM_ATTRS
            } else {
                RAM_ATTRS.difference(S2::VALID)
            };
            let _ = self.stage2.map_range(
                &MemoryRegion::new(ipa, ipa + share::PAGE as usize),
                PhysicalAddress((ram + i * share::PAGE) as usize),
                attrs,
                Constraints::empty(),
            );
        }
        // SAFETY: this VM's own stage 2, loaded while its call is handled;
        // its entries for the pages that changed go.
        unsafe { arch::invalidate_vmid(self.vttbr) };
    }
}

impl Vm {
    /// Applies the changes a retrieve or relinquish asked of the VM's
    /// borrow window: borrowed memory mapped with the access the VM was
    /// given (never executable), or unmapped.
    #[inline(never)]
    fn apply_window(&mut self) {
        if self.shares.window_ops.is_empty() {
            return;
        }
        let ops = core::mem::take(&mut self.shares.window_ops);
        for op in ops {
            let attrs = match op.map {
                Some(true) => RAM_ATTRS,
                Some(false) => RAM_ATTRS
                    .difference(S2::S2AP_ACCESS_RW)
                    .union(S2::S2AP_ACCESS_RO),
                None => RAM_ATTRS.difference(S2::VALID),
            };
            let (ipa, len) = (op.ipa as usize, (op.pages * share::PAGE) as usize);
            let _ = self.stage2.map_range(
                &MemoryRegion::new(ipa, ipa + len),
                PhysicalAddress(op.pa as usize),
                attrs,
                Constraints::empty(),
            );
        }
        // SAFETY: this VM's own stage 2, loaded while its call is handled;
        // its entries for the window go.
        unsafe { arch::invalidate_vmid(self.vttbr) };
    }
}

/// The hypervisor: its VMs and which one's EL1 state is in the hardware.
#[derive(Debug)]
pub struct Hypervisor {
    vms: [Option<Box<Vm>>; MAX_VMS],
    /// The slot whose EL1 state and stage 2 are loaded.
    loaded: Option<usize>,
}

/// Physical address of slot `slot`'s RAM.
fn ram_pa(slot: usize) -> u64 {
    (&raw mut VM_RAM) as u64 + (slot as u64) * RAM_SIZE
}

/// Zeroes slot `slot`'s RAM.
fn zero_ram(slot: usize) {
    let p = ram_pa(slot) as *mut u64;
    for i in 0..(RAM_SIZE / 8) as usize {
        // SAFETY: the slot's RAM is hypervisor memory that no VM runs on now
        // (being created or destroyed); volatile, as a VM reads it later.
        unsafe { p.wrapping_add(i).write_volatile(0) };
    }
}

fn build_stage2(ram: u64) -> Result<Stage2Table, MapError> {
    let mut t = Stage2Table::new(IdTranslation::new(), arch::STAGE2_ROOT_LEVEL, Stage2);
    let text = (&raw const __text_start) as usize;
    let data = (&raw const __data_start) as usize;
    let uart = UART_IPA as usize;
    t.map_range(
        &MemoryRegion::new(uart, uart + 0x1000),
        PhysicalAddress(uart),
        DEVICE_ATTRS,
        Constraints::empty(),
    )?;
    t.map_range(
        &MemoryRegion::new(text, data),
        PhysicalAddress(text),
        CODE_ATTRS,
        Constraints::empty(),
    )?;
    t.map_range(
        &MemoryRegion::new(RAM_IPA as usize, (RAM_IPA + RAM_SIZE) as usize),
        PhysicalAddress(ram as usize),
        RAM_ATTRS,
        Constraints::empty(),
    )?;
    Ok(t)
}

impl Hypervisor {
    /// Takes over EL2: vectors, the EL1&0 controls, FF-A v1.2 with the SPMC.
    /// Returns the version the SPMC answered.
    pub fn new() -> (Self, u32) {
        arch::install_vectors();
        arch::configure_el2();
        let version = ffa::call(ffa::VERSION, &[ffa::V1_2 as u64])[0] as u32;
        // Its own RX/TX pair: what it sends the SPMC in its VMs' names.
        let _ = share::map_own_buffers();
        (
            Self {
                vms: [const { None }; MAX_VMS],
                loaded: None,
            },
            version,
        )
    }

    /// The slot of the VM with endpoint ID `id`.
    fn slot_of(&self, id: u16) -> Option<usize> {
        self.vms
            .iter()
            .position(|v| v.as_ref().is_some_and(|v| v.id == id))
    }

    /// True if a VM with endpoint ID `id` exists.
    pub fn has_vm(&self, id: u16) -> bool {
        self.slot_of(id).is_some()
    }

    /// Physical address of VM `id`'s RAM.
    pub fn ram_of(&self, id: u16) -> Option<u64> {
        self.slot_of(id).map(ram_pa)
    }

    /// VM `id`'s VMID.
    pub fn vmid_of(&self, id: u16) -> Option<u64> {
        self.slot_of(id).map(|s| s as u64 + 1)
    }

    /// Why VM `id` stopped, if it did.
    pub fn fault_of(&self, id: u16) -> Option<Fault> {
        self.slot_of(id)
            .and_then(|s| self.vms[s].as_ref())
            .and_then(|v| v.crashed)
    }

    /// Exits VM `id` took so far.
    pub fn exits_of(&self, id: u16) -> u64 {
        self.slot_of(id)
            .and_then(|s| self.vms[s].as_ref())
            .map_or(0, |v| v.exits)
    }

    /// Calls the hypervisor forwarded to the SPMC for VM `id` so far.
    pub fn forwarded_of(&self, id: u16) -> u64 {
        self.slot_of(id)
            .and_then(|s| self.vms[s].as_ref())
            .map_or(0, |v| v.ffa.forwarded)
    }

    /// VM `id`'s memory-sharing state (buffers, transactions, pages away).
    pub fn shares_of(&self, id: u16) -> Option<&VmShares> {
        self.slot_of(id)
            .and_then(|s| self.vms[s].as_ref())
            .map(|v| &v.shares)
    }

    /// Saves the loaded VM's EL1 state (before VTTBR_EL2 is borrowed).
    fn unload(&mut self) {
        if let Some(slot) = self.loaded.take()
            && let Some(vm) = self.vms[slot].as_mut()
        {
            vm.el1.save();
        }
    }

    /// Puts VM `slot`'s EL1 state and stage 2 into the hardware.
    #[inline(always)]
    fn switch_to(&mut self, slot: usize) {
        if self.loaded == Some(slot) {
            return;
        }
        self.unload();
        if let Some(vm) = self.vms[slot].as_ref() {
            // SAFETY: the VM's own stage 2, alive as long as the VM.
            unsafe { arch::load_stage2(vm.vttbr) };
            // SAFETY: its own EL1 state, reached through that stage 2.
            unsafe { vm.el1.load() };
            self.loaded = Some(slot);
        }
    }

    /// Creates VM `id`: its TEE first (VM created message), then its RAM,
    /// stage 2 and registers; boots it up to its first "ready".
    pub fn create_vm(&mut self, id: u16) -> Result<(), CreateError> {
        if self.slot_of(id).is_some() {
            return Err(CreateError::Duplicate);
        }
        let slot = self
            .vms
            .iter()
            .position(Option::is_none)
            .ok_or(CreateError::NoSlot)?;
        let ack = ffa::vm_created(id);
        if !ack.ok() {
            return Err(CreateError::Tee(ack));
        }
        // Its notification bitmap comes with its TEE (DEN0077 v1.2 §10.2:
        // the hypervisor creates one per VM; one vCPU). The SPMC drops it
        // with the TEE when the VM is destroyed. Without it the VM only
        // misses notifications.
        let b = ffa::call(ffa::NOTIFICATION_BITMAP_CREATE, &[id as u64, 1]);
        if b[0] != ffa::SUCCESS_32 {
            crate::say!(
                "hypervisor: VM {id}: no notification bitmap (error {})",
                ffa::code(&b)
            );
        }
        zero_ram(slot);
        let ram = ram_pa(slot);
        let stage2 = match build_stage2(ram) {
            Ok(t) => t,
            Err(e) => {
                let _ = ffa::vm_destroyed(id);
                return Err(CreateError::Map(e));
            }
        };
        let vttbr = stage2.root_address().0 as u64 | (slot as u64 + 1) << 48;
        let mut regs = GuestRegs::default();
        regs.x[0] = id as u64;
        regs.x[1] = MAILBOX_IPA;
        regs.elr = (&raw const guest::guest_entry) as u64;
        regs.spsr = GUEST_SPSR;
        let el1 = El1State {
            sctlr: GUEST_SCTLR,
            ttbr0: guest_root(),
            tcr: GUEST_TCR,
            mair: GUEST_MAIR,
            vbar: (&raw const guest::guest_vectors) as u64,
            sp_el1: RAM_IPA + RAM_SIZE,
            ..El1State::default()
        };
        self.unload();
        // SAFETY: a fresh VMID's entries are dropped before its first run
        // (a VM with this slot may have run before).
        unsafe { arch::invalidate_vmid(vttbr) };
        self.vms[slot] = Some(Box::new(Vm {
            id,
            slot,
            vttbr,
            stage2,
            shares: VmShares::default(),
            regs,
            el1,
            ffa: VmFfa::default(),
            crashed: None,
            exits: 0,
        }));
        if let Err(f) = self.resume(slot) {
            let _ = self.destroy_vm(id);
            return Err(CreateError::Boot(f));
        }
        Ok(())
    }

    /// Destroys VM `id`: VM destroyed message to the SPMC (its TEE goes),
    /// then its RAM is zeroed and its stage 2 dropped. Returns the SPMC's
    /// acknowledgement (the VM is gone whatever it says), or None if there
    /// is no such VM.
    pub fn destroy_vm(&mut self, id: u16) -> Option<Ack> {
        let slot = self.slot_of(id)?;
        let ack = ffa::vm_destroyed(id);
        self.unload();
        let mut vm = self.vms[slot].take()?;
        // Its TEE is gone: what the VM still shares or lends comes back, and
        // its buffers go, before its RAM is zeroed.
        let left = share::release_all(id, &mut vm.shares, &mut vm.ffa);
        if left != 0 {
            crate::say!("hypervisor: VM {id}: {left} transactions not reclaimed");
        }
        // SAFETY: the VMID's entries go before its tables do; the VM never runs again.
        unsafe { arch::invalidate_vmid(vm.vttbr) };
        debug_assert_eq!(vm.slot, slot);
        drop(vm);
        zero_ram(slot);
        Some(ack)
    }

    /// Runs VM `slot` until it reports its task done (or stops for good).
    fn resume(&mut self, slot: usize) -> Result<(), Fault> {
        self.switch_to(slot);
        let Some(vm) = self.vms[slot].as_mut() else {
            return Err(Fault::NoVm);
        };
        loop {
            // SAFETY: `switch_to` loaded this VM's stage 2 and EL1 state.
            let kind = unsafe { arch::enter_vm(&mut vm.regs) };
            match vm.handle_exit(kind) {
                Step::Resume => {}
                Step::TaskDone => return Ok(()),
                Step::Crash(f) => {
                    vm.crashed = Some(f);
                    return Err(f);
                }
            }
        }
    }

    /// Has VM `id` do task `op` (see [`guest::op`]) with `args`; returns its result.
    /// A VM that faulted (now or before) stays stopped: destroy and create it again.
    pub fn task(&mut self, id: u16, op: u64, args: Regs) -> Result<Regs, Fault> {
        let Some(slot) = self.slot_of(id) else {
            return Err(Fault::NoVm);
        };
        if let Some(f) = self.vms[slot].as_ref().and_then(|v| v.crashed) {
            return Err(f);
        }
        let mb = ram_pa(slot);
        // SAFETY: the mailbox is in the VM's RAM, which the VM does not use
        // while the hypervisor runs.
        unsafe { Mailbox::op(mb).write_volatile(op) };
        // SAFETY: as above.
        unsafe { Mailbox::args(mb).write_volatile(args) };
        self.resume(slot)?;
        // SAFETY: as above; the VM wrote its result before it reported done.
        Ok(unsafe { Mailbox::result(mb).read_volatile() })
    }

    /// VM `id` makes the call `regs` through SMC (trapped, then proxied).
    pub fn smc(&mut self, id: u16, regs: Regs) -> Result<Regs, Fault> {
        self.task(id, guest::op::SMC, regs)
    }

    /// VM `id` makes the call `regs` through HVC.
    pub fn hvc(&mut self, id: u16, regs: Regs) -> Result<Regs, Fault> {
        self.task(id, guest::op::HVC, regs)
    }

    /// The IDs of the VMs, in slot order.
    pub fn vm_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.vms.iter().flatten().map(|v| v.id)
    }
}
