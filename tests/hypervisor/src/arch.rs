//! The EL2 side of the hypervisor: its exception vectors, the world switch
//! into a VM and back, the EL1 system registers it switches between VMs, the
//! stage-2 controls and TLB maintenance. Every `asm!` of the crate that runs
//! at EL2 lives here.
//!
//! The world switch is one routine each way:
//! - [`enter_vm`] saves the hypervisor's callee-saved registers on its own
//!   stack, puts the VM's register block in TPIDR_EL2, loads x0-x30, ELR_EL2
//!   and SPSR_EL2 from it and ERETs to NS-EL1;
//! - any exception from EL1 (the VM's HVC, a trapped SMC, a stage-2 abort)
//!   enters the lower-EL vectors, which store x0-x30, ELR/SPSR and the
//!   syndrome (ESR, FAR, HPFAR) into that block, pop the hypervisor's
//!   registers and return from [`enter_vm`] with the kind of exception.
//!
//! So the hypervisor's code is an ordinary loop: `enter_vm`, look at why the
//! VM stopped, act, `enter_vm` again. The VM's EL1 system registers stay in
//! the hardware across that loop (and across the hypervisor's own SMCs: the
//! SPMC and TF-A keep the normal world's EL1 and EL2 state); they are swapped
//! only when another VM runs ([`El1State::save`], [`El1State::load`]).

use core::arch::{asm, global_asm};
use core::mem::offset_of;

/// A VM's general registers and the syndrome of its last exit, in the layout
/// the world switch reads and writes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    /// x0-x30.
    pub x: [u64; 31],
    /// Where the VM resumes (ELR_EL2).
    pub elr: u64,
    /// Its PSTATE (SPSR_EL2).
    pub spsr: u64,
    /// ESR_EL2 of the last exit.
    pub esr: u64,
    /// FAR_EL2 of the last exit.
    pub far: u64,
    /// HPFAR_EL2 of the last exit (stage-2 faults: the faulting IPA >> 8).
    pub hpfar: u64,
}

// The assembly below uses these offsets.
const _: () = assert!(offset_of!(GuestRegs, elr) == 248);
const _: () = assert!(offset_of!(GuestRegs, esr) == 264);
const _: () = assert!(offset_of!(GuestRegs, hpfar) == 280);

/// Why [`enter_vm`] returned: which lower-EL vector the VM's exit took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A synchronous exception (HVC, trapped SMC, abort, trapped instruction).
    Sync,
    /// An IRQ (not expected: VMs run with interrupts masked).
    Irq,
    /// An FIQ (not expected).
    Fiq,
    /// An SError.
    SError,
    /// An exception from AArch32 (cannot happen: HCR_EL2.RW = 1).
    Aarch32,
}

global_asm!(
    r#"
.section .text.hyp_vectors, "ax"
.balign 2048
.global hyp_vectors
hyp_vectors:
    /* Current EL with SP_EL0, then with SP_EL2: the hypervisor itself faulted. */
    .balign 0x80
    mov x0, #0
    b hyp_fault_entry
    .balign 0x80
    mov x0, #1
    b hyp_fault_entry
    .balign 0x80
    mov x0, #2
    b hyp_fault_entry
    .balign 0x80
    mov x0, #3
    b hyp_fault_entry
    .balign 0x80
    mov x0, #4
    b hyp_fault_entry
    .balign 0x80
    mov x0, #5
    b hyp_fault_entry
    .balign 0x80
    mov x0, #6
    b hyp_fault_entry
    .balign 0x80
    mov x0, #7
    b hyp_fault_entry
    /* Lower EL, AArch64: a VM stopped. x0/x1 go on the stack first. */
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x0, #0
    b hyp_guest_exit
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x0, #1
    b hyp_guest_exit
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x0, #2
    b hyp_guest_exit
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x0, #3
    b hyp_guest_exit
    /* Lower EL, AArch32. */
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x0, #4
    b hyp_guest_exit
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x0, #4
    b hyp_guest_exit
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x0, #4
    b hyp_guest_exit
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x0, #4
    b hyp_guest_exit

hyp_fault_entry:
    mrs x1, esr_el2
    mrs x2, elr_el2
    mrs x3, far_el2
    b {fault}

/*
 * x0 = exit kind, the VM's x0/x1 on the stack, TPIDR_EL2 = its GuestRegs.
 * Store everything, then return from hyp_enter_vm with x0 = kind.
 */
hyp_guest_exit:
    mrs x1, tpidr_el2
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
    stp x2, x3, [x1]
    mrs x2, elr_el2
    mrs x3, spsr_el2
    stp x2, x3, [x1, #248]
    mrs x2, esr_el2
    mrs x3, far_el2
    stp x2, x3, [x1, #264]
    mrs x2, hpfar_el2
    str x2, [x1, #280]
    ldp x18, x19, [sp], #16
    ldp x20, x21, [sp], #16
    ldp x22, x23, [sp], #16
    ldp x24, x25, [sp], #16
    ldp x26, x27, [sp], #16
    ldp x28, x29, [sp], #16
    ldr x30, [sp], #16
    ret

/*
 * hyp_enter_vm(regs: *mut GuestRegs) -> u64: runs the VM until it exits.
 * Saves x18-x30 (x18 too: cheap, and whatever the platform ABI says of it)
 * on the hypervisor's stack, where hyp_guest_exit finds them.
 */
.section .text.hyp_enter_vm, "ax"
.global hyp_enter_vm
hyp_enter_vm:
    str x30, [sp, #-16]!
    stp x28, x29, [sp, #-16]!
    stp x26, x27, [sp, #-16]!
    stp x24, x25, [sp, #-16]!
    stp x22, x23, [sp, #-16]!
    stp x20, x21, [sp, #-16]!
    stp x18, x19, [sp, #-16]!
    msr tpidr_el2, x0
    ldp x1, x2, [x0, #248]
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
    ldp x0, x1, [x0]
    eret
"#,
    fault = sym hyp_fault,
);

unsafe extern "C" {
    fn hyp_enter_vm(regs: *mut GuestRegs) -> u64;
    /// The vector table (its first byte).
    safe static hyp_vectors: u8;
}

/// An exception the hypervisor took itself: a bug. Says so and powers off.
extern "C" fn hyp_fault(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    use core::fmt::Write;
    let _ = writeln!(
        crate::report::console(),
        "FAIL hypervisor-exception: vector {kind}, ESR_EL2 {esr:#x}, ELR_EL2 {elr:#x}, FAR_EL2 {far:#x}"
    );
    baremetal::system_off()
}

/// Runs the VM whose registers are `regs` until it exits to EL2.
///
/// # Safety
///
/// The VM's stage 2 (VTTBR_EL2) and EL1 state must be loaded, and its stage 2
/// must map only memory the VM may use: the VM runs with exactly that.
pub unsafe fn enter_vm(regs: &mut GuestRegs) -> ExitKind {
    // SAFETY: the routine saves and restores every callee-saved register and
    // the stack pointer; the caller vouches for what the VM can reach.
    let kind = unsafe { hyp_enter_vm(regs) };
    match kind {
        0 => ExitKind::Sync,
        1 => ExitKind::Irq,
        2 => ExitKind::Fiq,
        3 => ExitKind::SError,
        _ => ExitKind::Aarch32,
    }
}

/// Installs the hypervisor's vectors (VBAR_EL2).
pub fn install_vectors() {
    let base = (&raw const hyp_vectors) as u64;
    // SAFETY: `hyp_vectors` is the 2 KiB-aligned table above; it handles
    // every exception taken to EL2 from now on.
    unsafe { asm!("msr vbar_el2, {}", "isb", in(reg) base, options(nostack)) };
}

// HCR_EL2 while VMs exist: VM (stage 2 on for EL1&0), SWIO, TSC (SMC from
// EL1 traps to EL2: the VMs' FF-A calls), RW (EL1 is AArch64), APK and API
// (pointer authentication is not trapped). FMO/IMO/AMO stay clear: VMs run
// with interrupts masked and physical interrupts are not routed here.
const HCR: u64 = 1 | (1 << 1) | (1 << 19) | (1 << 31) | (1 << 40) | (1 << 41);
// VTCR_EL2: T0SZ=25 (39-bit IPA), SL0=1 (tables start at level 1),
// inner/outer write-back walks, inner shareable, 4 KiB granule, PS=40 bits,
// RES1 bit 31. Matches `STAGE2_ROOT_LEVEL`. On sbsa-ref (the program is at
// 1 TiB + 512 MiB, mapped at IPA = PA): T0SZ=16, SL0=2 (level 0), PS=48 bits.
#[cfg(not(feature = "sbsa"))]
const VTCR: u64 = 25 | (1 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (2 << 16) | (1 << 31);
#[cfg(feature = "sbsa")]
const VTCR: u64 = 16 | (2 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (5 << 16) | (1 << 31);
/// The root level of the VMs' stage-2 tables (VTCR_EL2.SL0).
pub const STAGE2_ROOT_LEVEL: usize = if cfg!(feature = "sbsa") { 0 } else { 1 };
// CNTHCTL_EL2: EL1PCTEN and EL1PCEN (EL1 may use the physical counter and timer).
const CNTHCTL: u64 = 0b11;

/// Programs the controls of the EL1&0 regime for VMs: HCR_EL2, VTCR_EL2,
/// CNTHCTL_EL2 and CNTVOFF_EL2 (0: a VM's virtual counter is the hypervisor's).
pub fn configure_el2() {
    // SAFETY: these registers govern only EL1&0, which runs nothing until the
    // first `enter_vm`; the hypervisor's own EL2 regime is not affected.
    unsafe {
        asm!(
            "msr hcr_el2, {hcr}",
            "msr vtcr_el2, {vtcr}",
            "msr cnthctl_el2, {cnthctl}",
            "msr cntvoff_el2, xzr",
            "isb",
            hcr = in(reg) HCR,
            vtcr = in(reg) VTCR,
            cnthctl = in(reg) CNTHCTL,
            options(nostack),
        )
    };
}

/// Loads a VM's stage 2 (root and VMID).
///
/// # Safety
///
/// `vttbr` must point at a stage-2 table that maps only the VM's memory, and
/// stay valid while any VM runs with it.
pub unsafe fn load_stage2(vttbr: u64) {
    // SAFETY: the caller vouches for the table; no EL1 code runs until ERET.
    unsafe { asm!("msr vttbr_el2, {}", "isb", in(reg) vttbr, options(nostack)) };
}

/// Invalidates every TLB entry of the VMID in `vttbr` (stage 1 and stage 2
/// of EL1&0), on every core, and leaves VTTBR_EL2 = `vttbr`.
///
/// # Safety
///
/// As for [`load_stage2`]: `vttbr` is loaded.
pub unsafe fn invalidate_vmid(vttbr: u64) {
    // SAFETY: TLBI VMALLS12E1IS acts on the VMID in VTTBR_EL2, which is loaded
    // first; the caller vouches for the table.
    unsafe {
        asm!(
            "msr vttbr_el2, {}",
            "isb",
            "dsb ishst",
            "tlbi vmalls12e1is",
            "dsb ish",
            "isb",
            in(reg) vttbr,
            options(nostack),
        )
    };
}

/// Counter frequency (CNTFRQ_EL0).
pub fn counter_frequency() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effect.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f
}

/// A VM's EL1 system registers: what its code at EL1 may set and expects to
/// find again. The hypervisor swaps them when it switches VMs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct El1State {
    pub sctlr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub cpacr: u64,
    pub contextidr: u64,
    pub tpidr_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub sp_el1: u64,
    pub sp_el0: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub esr_el1: u64,
    pub far_el1: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub par: u64,
    pub cntkctl: u64,
    pub csselr: u64,
}

const _: () = assert!(offset_of!(El1State, csselr) == 22 * 8);

impl El1State {
    /// Reads the EL1 registers from the hardware.
    pub fn save(&mut self) {
        let p: *mut Self = self;
        // SAFETY: reads EL1 system registers (no side effect) and stores them
        // into `*self`, 23 words at the offsets of the struct.
        unsafe {
            asm!(
                "mrs {t}, sctlr_el1",
                "str {t}, [{p}, #0]",
                "mrs {t}, ttbr0_el1",
                "str {t}, [{p}, #8]",
                "mrs {t}, ttbr1_el1",
                "str {t}, [{p}, #16]",
                "mrs {t}, tcr_el1",
                "str {t}, [{p}, #24]",
                "mrs {t}, mair_el1",
                "str {t}, [{p}, #32]",
                "mrs {t}, amair_el1",
                "str {t}, [{p}, #40]",
                "mrs {t}, vbar_el1",
                "str {t}, [{p}, #48]",
                "mrs {t}, cpacr_el1",
                "str {t}, [{p}, #56]",
                "mrs {t}, contextidr_el1",
                "str {t}, [{p}, #64]",
                "mrs {t}, tpidr_el1",
                "str {t}, [{p}, #72]",
                "mrs {t}, tpidr_el0",
                "str {t}, [{p}, #80]",
                "mrs {t}, tpidrro_el0",
                "str {t}, [{p}, #88]",
                "mrs {t}, sp_el1",
                "str {t}, [{p}, #96]",
                "mrs {t}, sp_el0",
                "str {t}, [{p}, #104]",
                "mrs {t}, elr_el1",
                "str {t}, [{p}, #112]",
                "mrs {t}, spsr_el1",
                "str {t}, [{p}, #120]",
                "mrs {t}, esr_el1",
                "str {t}, [{p}, #128]",
                "mrs {t}, far_el1",
                "str {t}, [{p}, #136]",
                "mrs {t}, afsr0_el1",
                "str {t}, [{p}, #144]",
                "mrs {t}, afsr1_el1",
                "str {t}, [{p}, #152]",
                "mrs {t}, par_el1",
                "str {t}, [{p}, #160]",
                "mrs {t}, cntkctl_el1",
                "str {t}, [{p}, #168]",
                "mrs {t}, csselr_el1",
                "str {t}, [{p}, #176]",
                p = in(reg) p,
                t = out(reg) _,
                options(nostack),
            )
        };
    }

    /// Writes the EL1 registers into the hardware.
    ///
    /// # Safety
    ///
    /// Only for the VM about to run (its stage 2 loaded): the EL1 regime then
    /// runs with exactly this state, and a stage-1 table it names is reached
    /// through that VM's stage 2.
    pub unsafe fn load(&self) {
        let p: *const Self = self;
        // SAFETY: loads the VM's EL1 registers from `*self`; nothing at EL1
        // runs until the next ERET, and the caller vouches for the VM.
        unsafe {
            asm!(
                "ldr {t}, [{p}, #0]",
                "msr sctlr_el1, {t}",
                "ldr {t}, [{p}, #8]",
                "msr ttbr0_el1, {t}",
                "ldr {t}, [{p}, #16]",
                "msr ttbr1_el1, {t}",
                "ldr {t}, [{p}, #24]",
                "msr tcr_el1, {t}",
                "ldr {t}, [{p}, #32]",
                "msr mair_el1, {t}",
                "ldr {t}, [{p}, #40]",
                "msr amair_el1, {t}",
                "ldr {t}, [{p}, #48]",
                "msr vbar_el1, {t}",
                "ldr {t}, [{p}, #56]",
                "msr cpacr_el1, {t}",
                "ldr {t}, [{p}, #64]",
                "msr contextidr_el1, {t}",
                "ldr {t}, [{p}, #72]",
                "msr tpidr_el1, {t}",
                "ldr {t}, [{p}, #80]",
                "msr tpidr_el0, {t}",
                "ldr {t}, [{p}, #88]",
                "msr tpidrro_el0, {t}",
                "ldr {t}, [{p}, #96]",
                "msr sp_el1, {t}",
                "ldr {t}, [{p}, #104]",
                "msr sp_el0, {t}",
                "ldr {t}, [{p}, #112]",
                "msr elr_el1, {t}",
                "ldr {t}, [{p}, #120]",
                "msr spsr_el1, {t}",
                "ldr {t}, [{p}, #128]",
                "msr esr_el1, {t}",
                "ldr {t}, [{p}, #136]",
                "msr far_el1, {t}",
                "ldr {t}, [{p}, #144]",
                "msr afsr0_el1, {t}",
                "ldr {t}, [{p}, #152]",
                "msr afsr1_el1, {t}",
                "ldr {t}, [{p}, #160]",
                "msr par_el1, {t}",
                "ldr {t}, [{p}, #168]",
                "msr cntkctl_el1, {t}",
                "ldr {t}, [{p}, #176]",
                "msr csselr_el1, {t}",
                "isb",
                p = in(reg) p,
                t = out(reg) _,
                options(nostack, readonly),
            )
        };
    }
}
