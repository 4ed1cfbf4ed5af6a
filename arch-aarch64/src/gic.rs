//! The GICv3 CPU interface at Secure EL2: the physical one the SPMC
//! acknowledges secure interrupts with, and the virtual one (ICH_*_EL2)
//! through which a partition receives them as virtual interrupts
//! (GICv3 architecture, "Virtual interrupt handling and prioritization").
//!
//! The distributor and redistributors are configured by the platform
//! through the `arm-gic` crate; this module holds only the system
//! registers, which the platform and the vCPU switch (`vcpu::run`) use.
//!
//! The generic API for any virtual interrupt (secure interrupts here,
//! managed exit elsewhere): [`inject_virtual_interrupt`] puts an INTID in a
//! context's list registers, [`assert_virtual_line`] raises the raw vIRQ or
//! vFIQ line (HCR_EL2.VI/VF); both take effect when the vCPU next runs.

use core::arch::asm;

use spmc::vcpu::{Context, LIST_REGISTERS, ListRegistersFull, VirtualGic};

/// INTIDs from 1020 up are special (1023: none pending).
const FIRST_SPECIAL: u32 = 1020;

/// Acknowledges the highest-priority pending Group 1 interrupt of the
/// current (Secure) state: ICC_IAR1_EL1 read at EL2. `None` if none is
/// pending (a spurious INTID). With EOImode 1 ([`init_cpu`]) the
/// interrupt stays active after [`end_priority`] until deactivated.
pub fn acknowledge_group1() -> Option<u32> {
    // At non-secure EL2 (the GIC-400 of the Raspberry Pi 4: GICv2, no
    // system-register interface) there is no secure interrupt to take, and
    // ICC_IAR1_EL1 would be UNDEFINED.
    if cfg!(feature = "ns-el2") {
        return None;
    }
    let iar: u64;
    // SAFETY: reading ICC_IAR1_EL1 acknowledges an interrupt, the effect
    // wanted; TF-A enabled the system-register interface (ICC_SRE_EL2.SRE).
    unsafe {
        asm!("mrs {}, S3_0_C12_C12_0", out(reg) iar, options(nomem, nostack, preserves_flags))
    };
    let intid = iar as u32 & 0xFF_FFFF;
    (intid < FIRST_SPECIAL).then_some(intid)
}

/// Drops the running priority of `intid` (ICC_EOIR1_EL1; with EOImode 1
/// this does not deactivate it).
pub fn end_priority(intid: u32) {
    // SAFETY: a priority drop of an interrupt this core acknowledged.
    unsafe {
        asm!("msr S3_0_C12_C12_1, {}", "isb", in(reg) intid as u64, options(nomem, nostack, preserves_flags))
    };
}

/// Deactivates `intid` (ICC_DIR_EL1): for an interrupt no partition will end.
pub fn deactivate(intid: u32) {
    // A GICv2 (feature `ns-el2`) has no ICC_DIR_EL1: the board's hook
    // writes its memory-mapped GICC_DIR.
    if cfg!(feature = "ns-el2") {
        if let Some(f) = physical_deactivate() {
            f(intid);
        }
        return;
    }
    // SAFETY: deactivating an interrupt the SPMC acknowledged and owns the
    // handling of; no memory is touched.
    unsafe {
        asm!("msr S3_0_C12_C11_1, {}", "isb", in(reg) intid as u64, options(nomem, nostack, preserves_flags))
    };
    if let Some(f) = physical_deactivate() {
        f(intid);
    }
}

/// Per core, once: open the priority mask if it is still at its reset value;
/// split priority drop and deactivation (ICC_CTLR_EL1.EOImode
/// = 1, Secure copy), so that the partition's end of a virtual interrupt
/// linked to a physical one (ICH_LR HW = 1) deactivates it; and enable
/// Secure Group 1 at this CPU interface (ICC_IGRPEN1_EL1).
pub fn init_cpu() {
    let mut ctlr: u64;
    // SAFETY: reading ICC_CTLR_EL1 has no side effect.
    unsafe {
        asm!("mrs {}, S3_0_C12_C12_4", out(reg) ctlr, options(nomem, nostack, preserves_flags))
    };
    ctlr |= 1 << 1;
    // SAFETY: EOImode only changes how this security state's EOIs act; the
    // SPMC is the only software at S-EL2 acknowledging interrupts.
    unsafe {
        asm!("msr S3_0_C12_C12_4, {}", "isb", in(reg) ctlr, options(nomem, nostack, preserves_flags))
    };
    // The priority mask resets to 0 (everything masked) and nothing at EL3
    // opens it: open it, so that secure interrupts (priorities below 0x80,
    // which a non-secure write of ICC_PMR_EL1 can never mask) are signalled
    // from the start. The normal world still sets its own mask later.
    let pmr: u64;
    // SAFETY: reading ICC_PMR_EL1 has no side effect.
    unsafe { asm!("mrs {}, S3_0_C4_C6_0", out(reg) pmr, options(nomem, nostack, preserves_flags)) };
    if pmr < 0x80 {
        // SAFETY: only the priority mask changes, before the normal world runs on this core.
        unsafe {
            asm!("msr S3_0_C4_C6_0, {}", "isb", in(reg) 0xFFu64, options(nomem, nostack, preserves_flags))
        };
    }
    // SAFETY: enabling Secure Group 1 at this core's CPU interface; the
    // SPMC configures which interrupts are in that group.
    unsafe {
        asm!("msr S3_0_C12_C12_7, {}", "isb", in(reg) 1u64, options(nomem, nostack, preserves_flags))
    };
}

/// Queues virtual interrupt `intid` for the vCPU of `ctx` (not running),
/// linked to physical interrupt `physical` if it is one. The generic entry
/// for every virtual interrupt the SPMC delivers.
pub fn inject_virtual_interrupt(
    ctx: &mut Context,
    intid: u32,
    physical: Option<u32>,
    priority: u8,
) -> Result<(), ListRegistersFull> {
    ctx.vgic.inject(intid, physical, priority)
}

/// Raises the raw virtual IRQ ([`VirtualGic::VIRQ`]) or FIQ
/// ([`VirtualGic::VFIQ`]) line for the vCPU of `ctx` until it next exits.
pub fn assert_virtual_line(ctx: &mut Context, line: u8) {
    ctx.vgic.lines |= line & (VirtualGic::VIRQ | VirtualGic::VFIQ);
    ctx.vgic.live = true;
}

macro_rules! lr_access {
    ($($n:literal => $reg:literal),*) => {
        /// Writes the list registers from `v`.
        #[inline(always)]
        fn write_lrs(v: &VirtualGic) {
            $(
                // SAFETY: ICH_LR<n>_EL2 hold virtual interrupts for the
                // vCPU about to run; nothing else uses them.
                unsafe { asm!(concat!("msr ", $reg, ", {}"), in(reg) v.lr[$n], options(nomem, nostack, preserves_flags)) };
            )*
        }
        /// Reads the list registers into `v` and clears them.
        #[inline(always)]
        fn read_and_clear_lrs(v: &mut VirtualGic) {
            $(
                // SAFETY: as above; the vCPU has exited.
                unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v.lr[$n], options(nomem, nostack, preserves_flags)) };
                // SAFETY: as above.
                unsafe { asm!(concat!("msr ", $reg, ", xzr"), options(nomem, nostack, preserves_flags)) };
            )*
        }
    };
}

lr_access!(0 => "S3_4_C12_C12_0", 1 => "S3_4_C12_C12_1", 2 => "S3_4_C12_C12_2", 3 => "S3_4_C12_C12_3");
const _: () = assert!(LIST_REGISTERS == 4);

/// ICH_HCR_EL2.En: the virtual CPU interface is on.
const ICH_HCR_EN: u64 = 1;

/// HCR_EL2.VI and .VF bit positions.
const HCR_VI: u64 = 1 << 7;
const HCR_VF: u64 = 1 << 6;

/// Before running a vCPU whose [`VirtualGic::live`] is set: loads its
/// list registers, its virtual interface state (ICH_VMCR_EL2,
/// ICH_AP1R0_EL2) and raw lines, and turns the virtual interface on.
#[inline(never)]
pub fn load(v: &VirtualGic) {
    // GICv2 (feature `ns-el2`): the memory-mapped GICH; the GIC signals a
    // pending list register itself (no HCR_EL2.VI needed).
    if cfg!(feature = "ns-el2") {
        crate::gich::load(v);
        if v.lines != 0 {
            let mut hcr = crate::sysreg::read_hcr_el2();
            if v.lines & VirtualGic::VIRQ != 0 {
                hcr |= HCR_VI;
            }
            if v.lines & VirtualGic::VFIQ != 0 {
                hcr |= HCR_VF;
            }
            // SAFETY: only the virtual interrupt lines change.
            unsafe { crate::sysreg::write_hcr_el2(hcr) };
        }
        crate::sysreg::isb();
        return;
    }
    write_lrs(v);
    // SAFETY: ICH_VMCR_EL2 and ICH_AP1R0_EL2 hold this vCPU's virtual
    // interface state (its ICC_IGRPEN1/PMR/BPR and active priorities).
    unsafe {
        asm!("msr S3_4_C12_C11_7, {}", in(reg) v.vmcr, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: as above.
    unsafe {
        asm!("msr S3_4_C12_C9_0, {}", in(reg) v.ap1r0, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: turning the virtual CPU interface on for the vCPU to run.
    unsafe {
        asm!("msr S3_4_C12_C11_0, {}", in(reg) ICH_HCR_EN, options(nomem, nostack, preserves_flags))
    };
    let pending = pending_lr(v).is_some();
    if v.lines != 0 || pending {
        let mut hcr = crate::sysreg::read_hcr_el2();
        // A pending list register also raises HCR_EL2.VI: QEMU signals no
        // list register at Secure EL1 (see [`paravirtual_call`]).
        if v.lines & VirtualGic::VIRQ != 0 || pending {
            hcr |= HCR_VI;
        }
        if v.lines & VirtualGic::VFIQ != 0 {
            hcr |= HCR_VF;
        }
        // SAFETY: only the virtual interrupt lines change.
        unsafe { crate::sysreg::write_hcr_el2(hcr) };
    }
    crate::sysreg::isb();
}

/// After the vCPU exited: saves its virtual interface state into `v`,
/// clears the list registers and turns the virtual interface off, so that
/// nothing of it reaches the next vCPU. The raw lines are dropped (a
/// line is a one-shot signal taken by the exit).
#[inline(never)]
pub fn save(v: &mut VirtualGic) {
    if cfg!(feature = "ns-el2") {
        crate::gich::save(v);
        let hcr = crate::sysreg::read_hcr_el2() & !(HCR_VI | HCR_VF);
        // SAFETY: only the virtual interrupt lines change.
        unsafe { crate::sysreg::write_hcr_el2(hcr) };
        v.lines = 0;
        crate::sysreg::isb();
        return;
    }
    read_and_clear_lrs(v);
    // SAFETY: reading this vCPU's virtual interface state.
    unsafe {
        asm!("mrs {}, S3_4_C12_C11_7", out(reg) v.vmcr, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: as above.
    unsafe {
        asm!("mrs {}, S3_4_C12_C9_0", out(reg) v.ap1r0, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: the virtual interface goes off and its priorities clear.
    unsafe {
        asm!(
            "msr S3_4_C12_C11_0, xzr",
            options(nomem, nostack, preserves_flags)
        )
    };
    // SAFETY: as above.
    unsafe {
        asm!(
            "msr S3_4_C12_C9_0, xzr",
            options(nomem, nostack, preserves_flags)
        )
    };
    // VI may also stand for a pending list register (see `load`).
    let hcr = crate::sysreg::read_hcr_el2() & !(HCR_VI | HCR_VF);
    // SAFETY: only the virtual interrupt lines change.
    unsafe { crate::sysreg::write_hcr_el2(hcr) };
    v.lines = 0;
    crate::sysreg::isb();
}

/// ICH_LR<n>_EL2 fields (GICv3 §12.4.6).
const LR_STATE_MASK: u64 = 3 << 62;
const LR_PENDING: u64 = 1 << 62;
const LR_ACTIVE: u64 = 2 << 62;
const LR_HW: u64 = 1 << 61;

/// The index of the highest-priority pending list register (the first of
/// equal ones). A plain loop: it runs on every run of a partition that owns
/// an interrupt (`load`), where the iterator chain cost a call per element.
#[inline(always)]
fn pending_lr(v: &VirtualGic) -> Option<usize> {
    let mut best: Option<(usize, u64)> = None;
    for (i, &lr) in v.lr.iter().enumerate() {
        let priority = (lr >> 48) & 0xFF;
        if lr & LR_STATE_MASK == LR_PENDING && best.is_none_or(|(_, p)| priority < p) {
            best = Some((i, priority));
        }
    }
    best.map(|(i, _)| i)
}

/// Paravirtualised interrupt interface: acknowledge (x0 = this ID; answer
/// x0 = the vINTID, 1023 if none is pending).
pub const PV_INTERRUPT_GET: u64 = 0xC600_0001;
/// Paravirtualised interrupt interface: end (x0 = this ID, x1 = the vINTID;
/// answer x0 = 0, or `u64::MAX` if that interrupt is not active).
pub const PV_INTERRUPT_DEACTIVATE: u64 = 0xC600_0002;

/// Handles a partition's HVC of the paravirtualised interrupt interface
/// (in the SMCCC vendor-specific hypervisor range) on its own list
/// registers; returns false for any other call (left to the core).
///
/// Why: QEMU (10.0.2, `icv_access()` in hw/intc/arm_gicv3_cpuif.c) sends an
/// EL1 `ICC_*` access to the virtual CPU interface only in Non-secure
/// state, so at Secure EL1 a partition's ICC_IAR1/EOIR1_EL1 reach the
/// physical interface and never see the list registers. As Hafnium does
/// for its partitions (`HF_INTERRUPT_GET`/`HF_INTERRUPT_DEACTIVATE`; the
/// partition's interface is left to the implementation, DEN0077 v1.2
/// chapter 9), the SPMC signals the virtual interrupt with HCR_EL2.VI and
/// the partition takes and ends it with these calls, which change the
/// list registers exactly as the virtual CPU interface would (pending ->
/// active -> invalid; a hardware interrupt is deactivated physically,
/// ICC_DIR_EL1), so the core's view of them is the same.
pub fn paravirtual_call(ctx: &mut Context) -> bool {
    let id = ctx.x[0];
    if id != PV_INTERRUPT_GET && id != PV_INTERRUPT_DEACTIVATE {
        return false;
    }
    let v = &mut ctx.vgic;
    if !v.live {
        ctx.x[0] = if id == PV_INTERRUPT_GET {
            1023
        } else {
            u64::MAX
        };
        return true;
    }
    save(v);
    let answer = if id == PV_INTERRUPT_GET {
        match pending_lr(v) {
            Some(i) => {
                v.lr[i] = (v.lr[i] & !LR_STATE_MASK) | LR_ACTIVE;
                v.lr[i] & 0xFFFF_FFFF
            }
            None => 1023,
        }
    } else {
        let want = ctx.x[1] & 0xFFFF_FFFF;
        let found = (0..LIST_REGISTERS)
            .find(|&i| v.lr[i] & LR_STATE_MASK == LR_ACTIVE && v.lr[i] & 0xFFFF_FFFF == want);
        match found {
            Some(i) => {
                if v.lr[i] & LR_HW != 0 {
                    deactivate(((v.lr[i] >> 32) & 0x3FF) as u32);
                }
                v.lr[i] = 0;
                0
            }
            None => u64::MAX,
        }
    };
    ctx.x[0] = answer;
    load(&ctx.vgic);
    true
}

/// The board's way to deactivate a physical interrupt besides
/// ICC_DIR_EL1 (which QEMU ignores at Secure EL2 for Group 1 Secure;
/// platform-qemu's `gic::deactivate` uses the clear-active registers).
static PHYSICAL_DEACTIVATE: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(0);

/// Sets the board's physical deactivation (see [`PHYSICAL_DEACTIVATE`]).
pub fn set_physical_deactivate(f: fn(u32)) {
    PHYSICAL_DEACTIVATE.store(f as usize, core::sync::atomic::Ordering::Release);
}

fn physical_deactivate() -> Option<fn(u32)> {
    let a = PHYSICAL_DEACTIVATE.load(core::sync::atomic::Ordering::Acquire);
    // SAFETY: a non-zero value was stored from a `fn(u32)` by
    // `set_physical_deactivate`; function pointers round-trip through usize.
    (a != 0).then(|| unsafe { core::mem::transmute::<usize, fn(u32)>(a) })
}
