//! Running a partition's vCPU: the world switch between EL2 and a lower EL.
//!
//! General registers move on every entry and exit (assembly below). The EL1
//! system registers and the FP/SIMD registers move lazily, per core:
//! - EL1 state is switched only when a different context runs on the core
//!   than the one whose EL1 state the hardware holds;
//! - FP/SIMD state is switched on the first FP instruction of a vCPU that
//!   does not own the FP registers (CPTR_EL2.TFP traps it).
//!
//! Invariant: whenever the core returns to the normal world
//! ([`return_to_normal_world`]), the hardware holds the normal world's EL1 and
//! FP/SIMD state, and every partition's state is back in its context. So no
//! partition state ever stays live in the hardware across an SMC to EL3.
//!
//! Hand-off between cores (a UP partition migrates; a vCPU that answers or
//! waits may be picked by another core as soon as the core lock is free):
//! the lazy state is only ever kept for the vCPU that goes on running on
//! this core. When the core layer, after a vCPU's exit, runs a *different*
//! vCPU next, the platform calls [`hand_off`] before it releases the core
//! lock: the exited vCPU's EL1 and FP/SIMD registers go back into its
//! context (eager save when it leaves `Running`). So whenever the lock is
//! free, every vCPU that is not `Running` has its complete state in its
//! context, no core records a context it does not run, and a context can be
//! handed to another core or freed (a destroyed instance) without a core
//! saving into it later.

use core::arch::global_asm;
use core::mem::offset_of;

use core::cell::UnsafeCell;
use spmc::vcpu::{Context, El1Regs, ExitInfo, FpRegs};

use crate::{MAX_CPUS, cpu, sysreg};

const X: usize = offset_of!(Context, x);
const PC: usize = offset_of!(Context, pc);
const EXIT: usize = offset_of!(Context, exit);
const _: () = assert!(X == 0);
const _: () = assert!(PC == 31 * 8);
const _: () = assert!(offset_of!(Context, pstate) == PC + 8);
const _: () = assert!(offset_of!(ExitInfo, vector) == 0 && offset_of!(ExitInfo, esr) == 8);
const _: () = assert!(offset_of!(ExitInfo, far) == 16 && offset_of!(ExitInfo, hpfar) == 24);
const _: () = assert!(offset_of!(El1Regs, csselr) == 23 * 8);
const _: () = assert!(offset_of!(FpRegs, fpsr) == 512 && offset_of!(FpRegs, fpcr) == 520);

/// Host frame pushed by `spmc_vcpu_enter`: x29, x30, x19-x28, x18 (+ pad).
const HOST_FRAME: usize = 112;

global_asm!(
    r#"
.section .text.vcpu, "ax"
.global spmc_vcpu_enter
// u64 spmc_vcpu_enter(Context *ctx): runs the vCPU until it exits; returns the vector.
spmc_vcpu_enter:
    stp x29, x30, [sp, #-{frame}]!
    stp x19, x20, [sp, #16]
    stp x21, x22, [sp, #32]
    stp x23, x24, [sp, #48]
    stp x25, x26, [sp, #64]
    stp x27, x28, [sp, #80]
    str x18, [sp, #96]
    ldp x1, x2, [x0, #{pc}]
    msr elr_el2, x1
    msr spsr_el2, x2
    ldp x2, x3, [x0, #16]
    ldp x4, x5, [x0, #32]
    ldp x6, x7, [x0, #48]
    ldp x8, x9, [x0, #64]
    ldp x10, x11, [x0, #80]
    ldp x12, x13, [x0, #96]
    ldp x14, x15, [x0, #112]
    ldp x16, x17, [x0, #128]
    ldp x18, x19, [x0, #144]
    ldp x20, x21, [x0, #160]
    ldp x22, x23, [x0, #176]
    ldp x24, x25, [x0, #192]
    ldp x26, x27, [x0, #208]
    ldp x28, x29, [x0, #224]
    ldr x30, [x0, #240]
    ldp x0, x1, [x0, #0]
    eret
    dsb nsh
    isb

// Lower-EL vector entries branch here with the vCPU's x0/x1 pushed and the vector in x0.
spmc_vcpu_exit:
    mrs x1, tpidr_el2
    ldr x1, [x1]
    stp x2, x3, [x1, #16]
    stp x4, x5, [x1, #32]
    stp x6, x7, [x1, #48]
    stp x8, x9, [x1, #64]
    stp x10, x11, [x1, #80]
    stp x12, x13, [x1, #96]
    stp x14, x15, [x1, #112]
    stp x16, x17, [x1, #128]
    stp x18, x19, [x1, #144]
    stp x20, x21, [x1, #160]
    stp x22, x23, [x1, #176]
    stp x24, x25, [x1, #192]
    stp x26, x27, [x1, #208]
    stp x28, x29, [x1, #224]
    str x30, [x1, #240]
    ldp x2, x3, [sp], #16
    stp x2, x3, [x1, #0]
    mrs x2, elr_el2
    mrs x3, spsr_el2
    stp x2, x3, [x1, #{pc}]
    mrs x2, esr_el2
    stp x0, x2, [x1, #{exit}]
    mrs x2, far_el2
    mrs x3, hpfar_el2
    stp x2, x3, [x1, #{exit_far}]
    ldr x18, [sp, #96]
    ldp x19, x20, [sp, #16]
    ldp x21, x22, [sp, #32]
    ldp x23, x24, [sp, #48]
    ldp x25, x26, [sp, #64]
    ldp x27, x28, [sp, #80]
    ldp x29, x30, [sp], #{frame}
    ret

.global spmc_lower_sync
spmc_lower_sync:
    stp x0, x1, [sp, #-16]!
    mov x0, #0
    b spmc_vcpu_exit
.global spmc_lower_irq
spmc_lower_irq:
    stp x0, x1, [sp, #-16]!
    mov x0, #1
    b spmc_vcpu_exit
.global spmc_lower_fiq
spmc_lower_fiq:
    stp x0, x1, [sp, #-16]!
    mov x0, #2
    b spmc_vcpu_exit
.global spmc_lower_serror
spmc_lower_serror:
    stp x0, x1, [sp, #-16]!
    mov x0, #3
    b spmc_vcpu_exit

// Saves and loads the pair of EL1 registers at offset `off` of El1Regs.
.macro el1_pair off
.if \off == 0
    mrs x2, sctlr_el1
    mrs x3, actlr_el1
    ldp x4, x5, [x1, #0]
    msr sctlr_el1, x4
    msr actlr_el1, x5
.elseif \off == 16
    mrs x2, cpacr_el1
    mrs x3, ttbr0_el1
    ldp x4, x5, [x1, #16]
    msr cpacr_el1, x4
    msr ttbr0_el1, x5
.elseif \off == 32
    mrs x2, ttbr1_el1
    mrs x3, tcr_el1
    ldp x4, x5, [x1, #32]
    msr ttbr1_el1, x4
    msr tcr_el1, x5
.elseif \off == 48
    mrs x2, esr_el1
    mrs x3, afsr0_el1
    ldp x4, x5, [x1, #48]
    msr esr_el1, x4
    msr afsr0_el1, x5
.elseif \off == 64
    mrs x2, afsr1_el1
    mrs x3, far_el1
    ldp x4, x5, [x1, #64]
    msr afsr1_el1, x4
    msr far_el1, x5
.elseif \off == 80
    mrs x2, mair_el1
    mrs x3, vbar_el1
    ldp x4, x5, [x1, #80]
    msr mair_el1, x4
    msr vbar_el1, x5
.elseif \off == 96
    mrs x2, contextidr_el1
    mrs x3, tpidr_el0
    ldp x4, x5, [x1, #96]
    msr contextidr_el1, x4
    msr tpidr_el0, x5
.elseif \off == 112
    mrs x2, tpidrro_el0
    mrs x3, tpidr_el1
    ldp x4, x5, [x1, #112]
    msr tpidrro_el0, x4
    msr tpidr_el1, x5
.elseif \off == 128
    mrs x2, amair_el1
    mrs x3, cntkctl_el1
    ldp x4, x5, [x1, #128]
    msr amair_el1, x4
    msr cntkctl_el1, x5
.elseif \off == 144
    mrs x2, par_el1
    mrs x3, sp_el0
    ldp x4, x5, [x1, #144]
    msr par_el1, x4
    msr sp_el0, x5
.elseif \off == 160
    mrs x2, sp_el1
    mrs x3, elr_el1
    ldp x4, x5, [x1, #160]
    msr sp_el1, x4
    msr elr_el1, x5
.else
    mrs x2, spsr_el1
    mrs x3, csselr_el1
    ldp x4, x5, [x1, #176]
    msr spsr_el1, x4
    msr csselr_el1, x5
.endif
    stp x2, x3, [x0, #\off]
.endm

// void spmc_el1_switch(El1Regs *save, const El1Regs *load): saves the live
// EL1 state into `save` and loads `load`, two registers at a time.
.global spmc_el1_switch
spmc_el1_switch:
.irp off, 0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176
    el1_pair \off
.endr
    ret

.arch_extension fp
.arch_extension simd
// void spmc_fp_save(FpRegs *r)   (CPTR_EL2.TFP must be clear)
.global spmc_fp_save
spmc_fp_save:
    stp q0, q1, [x0, #0]
    stp q2, q3, [x0, #32]
    stp q4, q5, [x0, #64]
    stp q6, q7, [x0, #96]
    stp q8, q9, [x0, #128]
    stp q10, q11, [x0, #160]
    stp q12, q13, [x0, #192]
    stp q14, q15, [x0, #224]
    stp q16, q17, [x0, #256]
    stp q18, q19, [x0, #288]
    stp q20, q21, [x0, #320]
    stp q22, q23, [x0, #352]
    stp q24, q25, [x0, #384]
    stp q26, q27, [x0, #416]
    stp q28, q29, [x0, #448]
    stp q30, q31, [x0, #480]
    mrs x1, fpsr
    mrs x2, fpcr
    add x3, x0, #512
    stp x1, x2, [x3]
    ret

// void spmc_fp_load(const FpRegs *r)   (CPTR_EL2.TFP must be clear)
.global spmc_fp_load
spmc_fp_load:
    ldp q0, q1, [x0, #0]
    ldp q2, q3, [x0, #32]
    ldp q4, q5, [x0, #64]
    ldp q6, q7, [x0, #96]
    ldp q8, q9, [x0, #128]
    ldp q10, q11, [x0, #160]
    ldp q12, q13, [x0, #192]
    ldp q14, q15, [x0, #224]
    ldp q16, q17, [x0, #256]
    ldp q18, q19, [x0, #288]
    ldp q20, q21, [x0, #320]
    ldp q22, q23, [x0, #352]
    ldp q24, q25, [x0, #384]
    ldp q26, q27, [x0, #416]
    ldp q28, q29, [x0, #448]
    ldp q30, q31, [x0, #480]
    add x3, x0, #512
    ldp x1, x2, [x3]
    msr fpsr, x1
    msr fpcr, x2
    ret
"#,
    frame = const HOST_FRAME,
    pc = const PC,
    exit = const EXIT,
    exit_far = const EXIT + 16,
);

unsafe extern "C" {
    fn spmc_vcpu_enter(ctx: *mut Context) -> u64;
    fn spmc_el1_switch(save: *mut El1Regs, load: *const El1Regs);
    fn spmc_fp_save(r: *mut FpRegs);
    fn spmc_fp_load(r: *const FpRegs);
}

/// Whose state a core's EL1 or FP/SIMD registers hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    NormalWorld,
    Vcpu(*mut Context),
}

/// Per-core state of the lazy switches. `ctx` comes first: the vector code
/// finds the running vCPU's context at offset 0 of the state TPIDR_EL2 points at.
#[repr(C)]
struct CpuState {
    ctx: *mut Context,
    nwd_el1: El1Regs,
    nwd_fp: FpRegs,
    el1: Owner,
    fp: Owner,
    fp_trapped: bool,
    stage2: (u64, u64),
    /// VMPIDR_EL2 as last written on this core (0: not known; a vCPU's
    /// value always has RES1 bit 31 set, `spmc::vcpu::vmpidr`).
    vmpidr: u64,
}
const _: () = assert!(offset_of!(CpuState, ctx) == 0);

/// One core's state, touched only by that core (through TPIDR_EL2).
struct PerCpu(UnsafeCell<CpuState>);

// SAFETY: each core reaches only its own entry, through TPIDR_EL2 set by
// `init_cpu`; the raw pointers inside are only dereferenced on that core.
unsafe impl Sync for PerCpu {}

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "only used to initialise CPUS"
)]
const IDLE: PerCpu = PerCpu(UnsafeCell::new(CpuState {
    ctx: core::ptr::null_mut(),
    nwd_el1: El1Regs {
        sctlr: 0,
        actlr: 0,
        cpacr: 0,
        ttbr0: 0,
        ttbr1: 0,
        tcr: 0,
        esr: 0,
        afsr0: 0,
        afsr1: 0,
        far: 0,
        mair: 0,
        vbar: 0,
        contextidr: 0,
        tpidr_el0: 0,
        tpidrro_el0: 0,
        tpidr_el1: 0,
        amair: 0,
        cntkctl: 0,
        par: 0,
        sp_el0: 0,
        sp_el1: 0,
        elr: 0,
        spsr: 0,
        csselr: 0,
    },
    nwd_fp: FpRegs {
        q: [0; 32],
        fpsr: 0,
        fpcr: 0,
    },
    el1: Owner::NormalWorld,
    fp: Owner::NormalWorld,
    fp_trapped: false,
    // No table has root address 0, so (0, 0) means "none loaded yet", and
    // no VMPIDR is 0: the whole array stays in .bss (6.4 KiB of image).
    stage2: (0, 0),
    vmpidr: 0,
}));
static CPUS: [PerCpu; MAX_CPUS] = [IDLE; MAX_CPUS];

/// Points TPIDR_EL2 at this core's state and resets it. Call on each cold
/// boot of the core (the primary's, and each CPU_ON of a secondary, also
/// after a CPU_OFF), before any vCPU runs: what the state says the hardware
/// holds (stage-2 roots, the FP trap) is not known after a power cycle.
pub fn init_cpu() {
    let state = CPUS[cpu::core_index() % MAX_CPUS].0.get();
    // SAFETY: only this core reaches its entry, and no reference from
    // `this_cpu` is live (no vCPU runs during a cold boot). Whatever a
    // previous life of the core left in it was handed back before the core
    // went off (`return_to_normal_world` before each answer to the SPMD).
    unsafe {
        let st = &mut *state;
        st.ctx = core::ptr::null_mut();
        st.el1 = Owner::NormalWorld;
        st.fp = Owner::NormalWorld;
        st.stage2 = (0, 0);
        st.vmpidr = 0;
        st.fp_trapped = sysreg::read_cptr_el2() & CPTR_TFP != 0;
    }
    // SAFETY: TPIDR_EL2 is ours (EL3 keeps a copy per world); from here on
    // only this core reaches `state`, through it.
    unsafe {
        core::arch::asm!("msr tpidr_el2, {}", in(reg) state, options(nostack, preserves_flags))
    };
}

/// This core's state.
///
/// # Safety
///
/// `init_cpu` must have run on this core, and the caller must not hold
/// another reference from an earlier call (the functions below never nest).
#[inline(always)]
#[cfg_attr(spmc_hot, optimize(speed))]
unsafe fn this_cpu() -> &'static mut CpuState {
    let p: *mut CpuState;
    // SAFETY: reading TPIDR_EL2 has no side effect.
    unsafe {
        core::arch::asm!("mrs {}, tpidr_el2", out(reg) p, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: `init_cpu` pointed it at this core's own entry of CPUS; the
    // caller guarantees no other reference to it is live.
    unsafe { &mut *p }
}

/// The address of a context's EL1 registers (pointer arithmetic only).
fn el1_of(c: *mut Context) -> *mut El1Regs {
    c.cast::<u8>().wrapping_add(offset_of!(Context, el1)).cast()
}

/// The address of a context's FP/SIMD registers (pointer arithmetic only).
fn fp_of(c: *mut Context) -> *mut FpRegs {
    c.cast::<u8>().wrapping_add(offset_of!(Context, fp)).cast()
}

/// ESR exception class of a trapped FP/SIMD access.
const EC_FP: u64 = 0x07;
/// ESR_EL2.EC of an HVC from AArch64.
const EC_HVC64: u64 = 0x16;
/// CPTR_EL2.TFP.
const CPTR_TFP: u64 = 1 << 10;

#[inline(always)]
#[cfg_attr(spmc_hot, optimize(speed))]
fn set_fp_trap(st: &mut CpuState, trap: bool) {
    if st.fp_trapped == trap {
        return;
    }
    let cptr = sysreg::read_cptr_el2();
    let v = if trap {
        cptr | CPTR_TFP
    } else {
        cptr & !CPTR_TFP
    };
    // SAFETY: TFP only decides whether FP/SIMD instructions trap to EL2; the
    // SPMC itself never uses FP except in spmc_fp_save/load, run untrapped.
    unsafe { sysreg::write_cptr_el2(v) };
    sysreg::isb();
    st.fp_trapped = trap;
}

/// Saves whatever FP state the hardware holds into its owner.
///
/// # Safety
/// A `Vcpu` owner's context must still be valid and not used elsewhere.
unsafe fn park_fp(st: &mut CpuState) {
    set_fp_trap(st, false);
    match st.fp {
        // SAFETY: nwd_fp is this core's save area.
        Owner::NormalWorld => unsafe { spmc_fp_save(&mut st.nwd_fp) },
        // SAFETY: the caller guarantees the context.
        Owner::Vcpu(c) => unsafe { spmc_fp_save(fp_of(c)) },
    }
}

/// Runs `ctx` on this core until it exits for something the core layer must
/// see (a call, an interrupt or a fault); FP traps are handled here.
///
/// # Safety
///
/// `ctx` must be a vCPU context that no one else reads or writes until this
/// returns (the core layer's `Next::Run` contract), with stage-2 roots that
/// map only memory that partition may use.
#[inline(always)]
#[cfg_attr(spmc_hot, optimize(speed))]
pub unsafe fn run(ctx: &mut Context) {
    let ptr: *mut Context = ctx;
    // SAFETY: `run` and `return_to_normal_world` never nest.
    let st = unsafe { this_cpu() };
    if st.el1 != Owner::Vcpu(ptr) {
        let save: *mut El1Regs = match st.el1 {
            Owner::NormalWorld => &mut st.nwd_el1,
            // A previous vCPU of this chain still owns its context.
            Owner::Vcpu(c) => el1_of(c),
        };
        // SAFETY: `save` is this core's save area or a context this chain
        // owns; the caller owns `ctx`.
        unsafe { spmc_el1_switch(save, el1_of(ptr)) };
        st.el1 = Owner::Vcpu(ptr);
    }
    st.ctx = ptr;
    let owns_fp = st.fp == Owner::Vcpu(ptr);
    set_fp_trap(st, !owns_fp);
    let s2 = (ctx.vsttbr, ctx.vttbr);
    if st.stage2 != s2 {
        // SAFETY: the caller vouches for the stage-2 roots; no EL1 code runs
        // until the ERET below.
        unsafe { crate::stage2::load(s2.0, s2.1) };
        st.stage2 = s2;
    }
    if st.vmpidr != ctx.vmpidr {
        // SAFETY: VMPIDR_EL2 only sets what EL1 reads as MPIDR_EL1 (the
        // vCPU's identity, Context::vmpidr); nothing at EL2 reads it, and
        // TF-A keeps the normal world's own across world switches
        // (CTX_INCLUDE_EL2_REGS).
        unsafe {
            core::arch::asm!("msr vmpidr_el2, {}", in(reg) ctx.vmpidr, options(nomem, nostack, preserves_flags))
        };
        st.vmpidr = ctx.vmpidr;
    }
    // Everything a run may need besides the registers (the normal world's
    // interrupts masked, managed-exit lines, the virtual GIC interface) is
    // rare: one test here, the work out of line (`Extras`).
    let extras = ctx.ns_interrupts_queued || ctx.virtual_lines != 0 || ctx.vgic.live;
    let e = if extras {
        Extras::load(ctx)
    } else {
        Extras::NONE
    };
    loop {
        // SAFETY: the caller owns `ctx`; the vector code saves the vCPU's
        // registers into it and returns here with the host's registers.
        let vector = unsafe { spmc_vcpu_enter(ptr) };
        if vector == 0 {
            let ec = (ctx.exit.esr >> 26) & 0x3f;
            if ec == EC_FP {
                // First FP/SIMD use by this vCPU: give it the FP registers.
                // SAFETY: the owner is the normal world or a vCPU of this chain.
                unsafe { park_fp(st) };
                // SAFETY: the caller owns `ctx`.
                unsafe { spmc_fp_load(fp_of(ptr)) };
                st.fp = Owner::Vcpu(ptr);
                continue;
            }
            if ec == EC_HVC64 && crate::gic::paravirtual_call(ctx) {
                // `save`/`load` in there lowered the managed-exit lines.
                if e.lines != 0 {
                    raise_virtual_lines(e.lines);
                }
                continue;
            }
        }
        break;
    }
    if extras {
        e.unload(ctx);
    }
}

/// What [`run`] did besides the registers for one run, undone when the
/// vCPU exits; none of it on the message fast path.
#[derive(Clone, Copy)]
struct Extras {
    /// The priority mask to put back (the normal world's interrupts were
    /// masked while a vCPU initialises).
    pmr: Option<u64>,
    /// The managed-exit lines raised.
    lines: u8,
    /// The virtual GIC interface was loaded.
    vgic: bool,
}

impl Extras {
    const NONE: Self = Self {
        pmr: None,
        lines: 0,
        vgic: false,
    };

    /// Before the run, in this order: the mask, the lines, the interface.
    #[cold]
    #[inline(never)]
    fn load(ctx: &Context) -> Self {
        // A vCPU initialising runs with the normal world's interrupts masked
        // at the GIC; the mask goes back before anything else runs on this
        // core. At non-secure EL2 (feature `ns-el2`, GICv2: no ICC_PMR_EL1)
        // there is no other world's interrupt to hold back: the image
        // enables no interrupt source, and a general VM's would be its own
        // layer's to queue.
        let pmr = (ctx.ns_interrupts_queued && !cfg!(feature = "ns-el2")).then(mask_ns_interrupts);
        // A managed exit's virtual IRQ/FIQ (the core's `ns_interrupts`) is
        // raised for this run only and lowered before anything else runs.
        let lines = ctx.virtual_lines;
        if lines != 0 {
            raise_virtual_lines(lines);
        }
        let vgic = ctx.vgic.live;
        if vgic {
            crate::gic::load(&ctx.vgic);
        }
        Self { pmr, lines, vgic }
    }

    /// After the vCPU exited: undoes [`Extras::load`] in reverse order.
    #[cold]
    #[inline(never)]
    fn unload(self, ctx: &mut Context) {
        if self.vgic {
            crate::gic::save(&mut ctx.vgic);
        }
        if self.lines != 0 {
            lower_virtual_lines();
        }
        if let Some(pmr) = self.pmr {
            restore_priority_mask(pmr);
        }
    }
}

/// HCR_EL2.VI: a virtual IRQ is pending at EL1 (taken when PSTATE.I is
/// clear; with HCR_EL2.IMO set, as it is while partitions run).
const HCR_VI: u64 = 1 << 7;
/// HCR_EL2.VF: a virtual FIQ is pending at EL1 (HCR_EL2.FMO is set too).
const HCR_VF: u64 = 1 << 6;

/// Raises the virtual interrupt lines `lines` (`Context::virtual_lines`:
/// `VIRTUAL_IRQ`, `VIRTUAL_FIQ`) for the vCPU about to run on this core,
/// through HCR_EL2.VI/VF (Arm ARM D1.3.6, "Virtual interrupts"): the
/// simplest injection, with no interrupt ID; the partition's handler takes
/// it and answers with an FF-A call, which the SPMC sees. The one place a
/// virtual interrupt line is raised outside the GIC's list registers.
#[cold]
#[inline(never)]
fn raise_virtual_lines(lines: u8) {
    let mut bits = 0;
    if lines & spmc::vcpu::VIRTUAL_IRQ != 0 {
        bits |= HCR_VI;
    }
    if lines & spmc::vcpu::VIRTUAL_FIQ != 0 {
        bits |= HCR_VF;
    }
    // SAFETY: VI/VF only make a virtual interrupt pending at EL1&0, which
    // runs next with the vCPU the lines belong to; `lower_virtual_lines`
    // clears them before this core runs anything else at EL1.
    unsafe { sysreg::write_hcr_el2(sysreg::read_hcr_el2() | bits) };
    sysreg::isb();
}

/// Lowers both virtual interrupt lines again.
#[cold]
#[inline(never)]
fn lower_virtual_lines() {
    // SAFETY: clearing VI/VF only withdraws virtual interrupts at EL1&0.
    unsafe { sysreg::write_hcr_el2(sysreg::read_hcr_el2() & !(HCR_VI | HCR_VF)) };
    sysreg::isb();
}

/// Priority mask that lets only secure interrupts through: seen from the
/// secure side every non-secure Group 1 priority is 0x80 or more (GICv3
/// §4.8.6, non-secure priorities are shifted into the lower half), and an
/// interrupt is signalled only if its priority is below the mask.
const PMR_SECURE_ONLY: u64 = 0x80;

/// Masks the normal world's interrupts at this core's GIC CPU interface
/// (ICC_PMR_EL1, the physical one at EL2; the partitions see only the
/// virtual ICV_PMR_EL1 since HCR_EL2.IMO/FMO are set). Returns the mask to
/// put back.
#[cold]
#[inline(never)]
fn mask_ns_interrupts() -> u64 {
    let pmr: u64;
    // SAFETY: reading ICC_PMR_EL1 has no side effect (TF-A enables the
    // system-register interface, ICC_SRE_EL2.SRE, for the SPMC).
    unsafe {
        core::arch::asm!("mrs {}, S3_0_C4_C6_0", out(reg) pmr, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: a higher mask only delays the normal world's interrupts: they
    // stay pending and `restore_priority_mask` lowers it again before this
    // core does anything else.
    unsafe {
        core::arch::asm!("msr S3_0_C4_C6_0, {}", "isb", in(reg) PMR_SECURE_ONLY.min(pmr), options(nomem, nostack, preserves_flags))
    };
    pmr
}

/// Puts back the priority mask [`mask_ns_interrupts`] returned.
#[cold]
#[inline(never)]
fn restore_priority_mask(pmr: u64) {
    // SAFETY: the value is the one this core had before; the normal world's
    // pending interrupts are signalled again.
    unsafe {
        core::arch::asm!("msr S3_0_C4_C6_0, {}", "isb", in(reg) pmr, options(nomem, nostack, preserves_flags))
    };
}

/// Puts the EL1 system registers of the vCPU that last ran on this core
/// into its context and the normal world's back into the hardware, so that
/// the core layer may read and change them there (it injects a stage-2
/// abort at the vCPU's EL1 that way); the next [`run`] of that vCPU loads
/// them back. Does nothing if the hardware holds the normal world's already.
/// Cold: called on fault exits only, never on the message path.
#[cold]
#[inline(never)]
pub fn park_el1() {
    // SAFETY: `run` and `return_to_normal_world` never nest, and neither
    // runs during this call.
    let st = unsafe { this_cpu() };
    if let Owner::Vcpu(c) = st.el1 {
        // SAFETY: the vCPU's context is still owned by this core's chain
        // (module invariant; the core layer calls this on that vCPU's exit,
        // holding no reference into the context across the call); the
        // save area belongs to this core.
        unsafe { spmc_el1_switch(el1_of(c), &st.nwd_el1) };
        st.el1 = Owner::NormalWorld;
    }
}

/// Puts the normal world's EL1 and FP/SIMD state back into the hardware
/// (saving the last vCPU's), before the core returns to the normal world.
#[inline(always)]
#[cfg_attr(spmc_hot, optimize(speed))]
pub fn return_to_normal_world() {
    // SAFETY: `run` and `return_to_normal_world` never nest.
    let st = unsafe { this_cpu() };
    if let Owner::Vcpu(c) = st.el1 {
        // SAFETY: a vCPU stays owned by its chain until this point (module
        // invariant); the save area belongs to this core.
        unsafe { spmc_el1_switch(el1_of(c), &st.nwd_el1) };
        st.el1 = Owner::NormalWorld;
    }
    if let Owner::Vcpu(_) = st.fp {
        // SAFETY: as above.
        unsafe { park_fp(st) };
        // SAFETY: the save area belongs to this core.
        unsafe { spmc_fp_load(&st.nwd_fp) };
        st.fp = Owner::NormalWorld;
    }
}

/// Hands the state of the vCPU that last ran on this core back to its
/// context (EL1 and FP/SIMD registers), with the normal world's back in the
/// hardware: called, with the core lock held, when the core runs another
/// vCPU next (see the module's "Hand-off between cores"). The next [`run`]
/// loads what it needs. Does nothing if no vCPU's state is live.
#[inline(never)]
pub fn hand_off() {
    return_to_normal_world();
}

/// After a fatal error on this core: puts the normal world's EL1 and FP/SIMD
/// state back into the hardware if a partition's is there, so that the core
/// can still answer the normal world (with an error) without handing it a
/// partition's registers. Does nothing on a core that never ran a vCPU
/// (TPIDR_EL2 not pointing at this core's state yet).
pub fn recover_normal_world_state() {
    let p: *mut CpuState;
    // SAFETY: reading TPIDR_EL2 has no side effect.
    unsafe {
        core::arch::asm!("mrs {}, tpidr_el2", out(reg) p, options(nomem, nostack, preserves_flags))
    };
    let mine = CPUS[cpu::core_index() % MAX_CPUS].0.get();
    if p != mine {
        return;
    }
    // The code that failed may have held a reference from `this_cpu`: it
    // never runs again (the fatal path does not return), so this one is the
    // only one used from now on.
    return_to_normal_world();
}
