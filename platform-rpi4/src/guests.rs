//! General VMs as real EL1 guests: each user's general VM runs a small
//! program of our own at EL1, behind its own stage-2 table (its own VMID,
//! its own RAM at IPA = PA in the manifest's ns-memory), and its FF-A and
//! PSCI calls (HVC, or SMC trapped by HCR_EL2.TSC) reach this image as
//! exceptions. Which VM called is the VM that trapped: the layer
//! (`users.rs`) stamps that ID, never one the guest's registers name.
//!
//! The program ([`GUEST_CODE`]) is a puppet the checks drive: they set its
//! x0-x10 and start it at its entry; it makes one call (`hvc #0` or
//! `smc #0` with x0-x7), one load or store at an address (64-bit, or
//! 32-bit for a GIC register at its GICC, `vgic.rs`), or reads
//! CurrentEL, then hands its x0-x7 back with `hvc #0xff`. Every access it
//! makes goes through its stage 2, so isolation is the hardware's (a load
//! from another VM's RAM is a stage-2 fault, reported as
//! [`Outcome::Fault`]), and every call is a real trap from EL1.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;

use arch_aarch64::mmu::{self, Kind as S1Kind, Region};
use arch_aarch64::vcpu;
use spmc::addr::{Ipa, IpaSpace, Pa};
use spmc::sp_manifest::Access;
use spmc::stage2::{Kind, Stage2};
use spmc::vcpu::{Context, SCTLR_EL1_RESET, SPSR_EL1H_MASKED};

use crate::layout;

/// `hvc #DONE`: the program's "here are my results" (not an FF-A call).
const DONE: u64 = 0xff;

core::arch::global_asm!(
    r#"
.section .rodata.rpi4_guest, "a"
.balign 8
.global rpi4_guest_code
rpi4_guest_code:
0:  cmp x8, #1
    b.eq 1f
    cmp x8, #2
    b.eq 2f
    cmp x8, #3
    b.eq 3f
    cmp x8, #4
    b.eq 4f
    cmp x8, #5
    b.eq 5f
    cmp x8, #6
    b.eq 6f
    hvc #0
    b 9f
1:  smc #0
    b 9f
2:  ldr x0, [x9]
    b 9f
3:  str x10, [x9]
    mov x0, #0
    b 9f
4:  mrs x0, CurrentEL
    b 9f
5:  ldr w0, [x9]
    b 9f
6:  str w10, [x9]
    mov x0, #0
    b 9f
9:  hvc #{done}
    b 0b
.balign 8
.global rpi4_guest_code_end
rpi4_guest_code_end:
"#,
    done = const DONE,
);

unsafe extern "C" {
    static rpi4_guest_code: u8;
    static rpi4_guest_code_end: u8;
}

/// The guest program's bytes (in this image's rodata; copied to the start
/// of each general VM's RAM, its entry point).
fn guest_code() -> &'static [u8] {
    let start = &raw const rpi4_guest_code;
    let end = &raw const rpi4_guest_code_end;
    // SAFETY: both symbols are in the same rodata section, defined above,
    // start before end; the bytes are never written.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// ESR_EL2.EC values of a guest's exits.
pub(crate) const EC_HVC64: u64 = 0x16;
pub(crate) const EC_SMC64: u64 = 0x17;
const EC_IABT_LOWER: u64 = 0x20;
const EC_DABT_LOWER: u64 = 0x24;

/// How a guest makes its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0`.
    Hvc,
    /// `smc #0`, trapped to EL2 by HCR_EL2.TSC (never reaches EL3).
    Smc,
}

/// What the guest does when started.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// One call with x0-x7.
    Call(Conduit),
    /// `ldr x0, [addr]` (an IPA: the guest's stage 1 is off).
    Load(u64),
    /// `str value, [addr]`.
    Store(u64, u64),
    /// `mrs x0, CurrentEL`.
    CurrentEl,
    /// `ldr w0, [addr]`: a 32-bit load (a GIC register).
    Load32(u64),
    /// `str w<value>, [addr]`: a 32-bit store.
    Store32(u64, u32),
}

/// How a run of the guest ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It handed back x0-x7.
    Done([u64; 8]),
    /// A stage-2 fault at this IPA (the access was not its to make).
    Fault(u64),
}

/// One general VM's guest.
pub struct Guest {
    vm: u16,
    /// Boxed: the arch layer keeps its address while the vCPU's EL1 state
    /// is live in the hardware (`vcpu::run`).
    ctx: Box<Context>,
    stage2: Stage2,
    base: u64,
    /// Its EL1 virtual timer while it is switched out (`vgic.rs`).
    vtimer: crate::vgic::VTimer,
}

impl core::fmt::Debug for Guest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Guest {{ vm: {}, base: {:#x} }}", self.vm, self.base)
    }
}

/// The VMID of general VM `vm`: from the top of the CPU's range, which the
/// board keeps from the core (`layout::GENERAL_VM_VMIDS`).
pub fn vmid(vm: u16) -> u16 {
    let limit: u16 = if arch_aarch64::stage2::vmid16() {
        0xFFFF
    } else {
        0xFF
    };
    limit - (vm - 1)
}

/// Takes `[ipa, ipa + len)` out of a guest's stage 2 (memory it lent), the
/// TLB invalidated through `platform`.
pub fn revoke<P: spmc::platform::Platform>(
    stage2: &mut Stage2,
    ipa: u64,
    len: u64,
    platform: &mut P,
) -> Result<(), String> {
    stage2
        .unmap(IpaSpace::NonSecure, Ipa(ipa), len, platform)
        .map_err(|e| format!("stage 2 of VMID {}: {e:?}", stage2.vmid()))
}

/// Gives `[ipa, ipa + len)` of its own RAM back to a guest (a reclaim).
pub fn restore(stage2: &mut Stage2, ipa: u64, len: u64) -> Result<(), String> {
    stage2
        .map(
            IpaSpace::NonSecure,
            Ipa(ipa),
            Pa(ipa),
            len,
            Kind::Memory(Access::RWX),
        )
        .map_err(|e| format!("stage 2 of VMID {}: {e:?}", stage2.vmid()))
}

/// General VM `vm`'s RAM base.
pub fn ram(vm: u16) -> u64 {
    layout::GUEST_RAM + (vm as u64 - 1) * layout::GUEST_RAM_STRIDE
}

/// Runs `f` on `[base, base + size)` through a temporary stage-1 mapping,
/// then cleans and invalidates the data cache over it to the point of
/// coherency (the guest runs with its stage 1 off, so non-cacheable) and
/// unmaps it. Pages the core keeps mapped (a VM's RX/TX pair) are used
/// through the core's mapping and left mapped.
pub fn with_ram<R>(base: u64, size: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, String> {
    const PAGE: u64 = 0x1000;
    if size > 64 * PAGE || !base.is_multiple_of(PAGE) || !size.is_multiple_of(PAGE) {
        return Err(format!(
            "with_ram({base:#x}, {size:#x}): not whole pages, at most 64"
        ));
    }
    // The pages the core keeps mapped (a VM's RX/TX pair it maps in the
    // VM's name) stay as they are: only the others are mapped here, and
    // unmapped after.
    let mut ours = 0u64;
    for i in 0..size / PAGE {
        let page = base + i * PAGE;
        if mmu::is_mapped(page as usize) {
            continue;
        }
        mmu::map(Region {
            start: page as usize,
            end: (page + PAGE) as usize,
            kind: S1Kind::NonSecure,
        })
        .map_err(|e| format!("stage-1 map of {page:#x}: {e:?}"))?;
        ours |= 1 << i;
    }
    // SAFETY: every page is mapped read-write for EL2 (just above, or by
    // the core); general-VM RAM (the manifest's ns-memory, outside this
    // image and the trusted pool), which no guest runs on while this core
    // is here, and which the core touches only inside its calls.
    let bytes = unsafe { core::slice::from_raw_parts_mut(base as *mut u8, size as usize) };
    // What the guest wrote with its MMU off went to memory: no line EL2
    // (or a trusted VM) left in the caches may hide it.
    // SAFETY: the range is mapped (just above) until the unmap below.
    unsafe { arch_aarch64::cache::clean_invalidate_to_poc(base as usize, size as usize) };
    let r = f(bytes);
    // The guest reads its RAM with its MMU off, past the caches: what EL2
    // wrote goes to the point of coherency (arch `cache`, docs/rpi4.md),
    // and the guest's program is fetched afresh.
    // SAFETY: the range is mapped (just above) until the unmap below.
    unsafe { arch_aarch64::cache::clean_invalidate_to_poc(base as usize, size as usize) };
    arch_aarch64::cache::invalidate_icache();
    for i in 0..size / PAGE {
        if ours & (1 << i) != 0 {
            let page = base + i * PAGE;
            mmu::unmap(page as usize, (page + PAGE) as usize)
                .map_err(|e| format!("stage-1 unmap of {page:#x}: {e:?}"))?;
        }
    }
    Ok(r)
}

impl Guest {
    /// General VM `vm` (1-[`layout::GUESTS`]): its RAM zeroed, the program
    /// copied to its start, its stage 2 mapping that RAM alone (RWX).
    pub fn create(vm: u16) -> Result<Self, String> {
        if !(1..=layout::GUESTS).contains(&vm) {
            return Err(format!("no guest for VM {vm}"));
        }
        let base = ram(vm);
        let code = guest_code();
        with_ram(base, layout::GUEST_RAM_SIZE, |m| {
            m.fill(0);
            m[..code.len()].copy_from_slice(code);
        })?;
        let mut stage2 = Stage2::new(vmid(vm));
        stage2
            .map(
                IpaSpace::NonSecure,
                Ipa(base),
                Pa(base),
                layout::GUEST_RAM_SIZE,
                Kind::Memory(Access::RWX),
            )
            .map_err(|e| format!("stage 2 of VM {vm}: {e:?}"))?;
        // Its GIC CPU interface: the GIC-400's GICV frame (its own list
        // registers), where a GICv2 guest expects its GICC (`vgic.rs`).
        stage2
            .map(
                IpaSpace::NonSecure,
                Ipa(layout::GUEST_GICC),
                Pa(layout::GICV as u64),
                layout::GICV_SIZE,
                Kind::Device { write: true },
            )
            .map_err(|e| format!("stage 2 of VM {vm}: GICV: {e:?}"))?;
        let mut ctx = Box::new(Context::default());
        ctx.vgic.vmcr = crate::vgic::GUEST_VMCR;
        ctx.vttbr = stage2.vttbr();
        ctx.el1.sctlr = SCTLR_EL1_RESET;
        ctx.vmpidr = spmc::vcpu::vmpidr(0);
        Ok(Self {
            vm,
            ctx,
            stage2,
            base,
            vtimer: Default::default(),
        })
    }

    /// Its VM ID.
    pub fn vm(&self) -> u16 {
        self.vm
    }

    /// Its virtual timer (as its own code would program it).
    pub fn vtimer_mut(&mut self) -> &mut crate::vgic::VTimer {
        &mut self.vtimer
    }

    /// Its virtual GIC interface as last saved.
    pub fn vgic(&self) -> &spmc::vcpu::VirtualGic {
        &self.ctx.vgic
    }

    /// Destroys it: its RAM zeroed, its VMID's translations dropped, its
    /// tables freed.
    pub fn destroy(self) -> Result<(), String> {
        if crate::psci::any_secondary_on(self.vm) {
            // Another core still runs one of its vCPUs on its stage 2: the
            // tables stay (leaked) rather than be freed under it.
            let vm = self.vm;
            core::mem::forget(self);
            return Err(format!("VM {vm} still has a vCPU on another core"));
        }
        // Nothing of it may stay live in the hardware.
        vcpu::return_to_normal_world();
        arch_aarch64::stage2::invalidate(
            self.stage2.vmid(),
            IpaSpace::NonSecure,
            self.base,
            layout::GUEST_RAM_SIZE,
        );
        with_ram(self.base, layout::GUEST_RAM_SIZE, |m| m.fill(0))
    }

    /// Starts the program for `op` with x0-x7 = `x`; each call it traps
    /// with goes to `call` (the VM layer, given the guest's stage 2 for the
    /// calls that change it) and its answer back into x0-x7. Ends when the program hands back its registers or
    /// takes a stage-2 fault.
    pub fn run(
        &mut self,
        op: Op,
        x: [u64; 8],
        mut call: impl FnMut(Conduit, [u64; 8], &mut Stage2) -> [u64; 8],
    ) -> Result<Outcome, String> {
        let ctx = &mut *self.ctx;
        let stage2 = &mut self.stage2;
        ctx.x = [0; 31];
        ctx.x[..8].copy_from_slice(&x);
        let (select, a, b) = match op {
            Op::Call(Conduit::Hvc) => (0, 0, 0),
            Op::Call(Conduit::Smc) => (1, 0, 0),
            Op::Load(addr) => (2, addr, 0),
            Op::Store(addr, v) => (3, addr, v),
            Op::CurrentEl => (4, 0, 0),
            Op::Load32(addr) => (5, addr, 0),
            Op::Store32(addr, v) => (6, addr, v as u64),
        };
        ctx.x[8] = select;
        ctx.x[9] = a;
        ctx.x[10] = b;
        ctx.pc = self.base;
        ctx.pstate = SPSR_EL1H_MASKED;
        for _ in 0..64 {
            // The hardware holds no trusted VM's EL1 state when the guest
            // runs, and none of the guest's when the layer calls the core.
            vcpu::return_to_normal_world();
            self.vtimer.enter(ctx);
            // SAFETY: the context is this guest's alone (boxed, not moved
            // while it runs), its stage-2 root maps only its own RAM.
            unsafe { vcpu::run(ctx) };
            let irq = ctx.exit.vector != 0;
            if irq {
                // Its timer's interrupt (the only one enabled) goes to its
                // list registers before its timer is stopped.
                crate::vgic::irq_exit(ctx);
            }
            self.vtimer.exit(ctx);
            vcpu::return_to_normal_world();
            if irq {
                continue;
            }
            let esr = ctx.exit.esr;
            let mut regs = [0; 8];
            regs.copy_from_slice(&ctx.x[..8]);
            match (esr >> 26) & 0x3f {
                EC_HVC64 if esr & 0xffff == DONE => return Ok(Outcome::Done(regs)),
                EC_HVC64 => {
                    let answer = call(Conduit::Hvc, regs, stage2);
                    ctx.x[..8].copy_from_slice(&answer);
                }
                EC_SMC64 => {
                    let answer = call(Conduit::Smc, regs, stage2);
                    ctx.x[..8].copy_from_slice(&answer);
                    // A trapped SMC returns to the SMC itself (Arm ARM
                    // D1.11.2): step over it.
                    ctx.pc += 4;
                }
                EC_IABT_LOWER | EC_DABT_LOWER => {
                    // HPFAR_EL2.FIPA holds IPA[47:12] in bits [39:4].
                    let ipa = (ctx.exit.hpfar & 0xF_FFFF_FFF0) << 8 | ctx.exit.far & 0xfff;
                    return Ok(Outcome::Fault(ipa));
                }
                ec => {
                    return Err(format!(
                        "VM {} exit EC {ec:#x} (ESR {esr:#x}) at {:#x}",
                        self.vm, ctx.pc
                    ));
                }
            }
        }
        Err(format!("VM {}: no answer after 64 exits", self.vm))
    }
}
