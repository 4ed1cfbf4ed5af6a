//! The GICv2 virtual interface control (GICH, GICv2 architecture IHI0048B
//! chapter 5), for a board whose GIC has no system-register interface: the
//! Raspberry Pi 4's GIC-400 at non-secure EL2 (used with feature `ns-el2`).
//!
//! It plays the part of GICv3's ICH_*_EL2 registers: [`crate::gic::load`]
//! and [`crate::gic::save`] come here once [`init`] has been given the
//! board's GICH frame, and convert the core's list-register images
//! (GICv3 format, `spmc::vcpu::VirtualGic`) with `spmc::gicv2`. A vCPU then
//! reads and ends its virtual interrupts at the GICV frame the board maps
//! into its stage 2 where it expects its GICC; nothing is emulated.
//!
//! `arm-gic` 0.10 drives a GICv2's distributor and CPU interface only
//! (docs/arm-gic.md): these few registers are ours.

use core::sync::atomic::{AtomicUsize, Ordering};

use spmc::gicv2::{lr_from_gicv2, lr_to_gicv2};
use spmc::vcpu::{LIST_REGISTERS, VirtualGic};

/// GICH register offsets (IHI0048B §5.3, Table 5-1).
mod reg {
    /// Hypervisor Control Register.
    pub const HCR: usize = 0x00;
    /// VGIC Type Register.
    pub const VTR: usize = 0x04;
    /// Virtual Machine Control Register.
    pub const VMCR: usize = 0x08;
    /// Maintenance Interrupt Status Register.
    pub const MISR: usize = 0x10;
    /// End of Interrupt Status Register 0 (list registers 0-31).
    pub const EISR0: usize = 0x20;
    /// Empty List Register Status Register 0 (list registers 0-31).
    pub const ELRSR0: usize = 0x30;
    /// Active Priorities Register.
    pub const APR: usize = 0xF0;
    /// List Register 0; LR<n> at `LR0 + 4 * n`.
    pub const LR0: usize = 0x100;
}

/// GICH_HCR.En: the virtual CPU interface forwards list registers.
const HCR_EN: u32 = 1;

/// The GICH frame of this core's view ("this processor" frame, the same
/// address on every core); 0 until [`init`].
static BASE: AtomicUsize = AtomicUsize::new(0);

/// Why the GICH frame cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooFewListRegisters(pub usize);

/// Takes the board's GICH frame; from then on [`crate::gic::load`]/`save`
/// switch vCPUs' virtual interfaces through it. Returns the number of list
/// registers GICH_VTR reports; refuses a GIC with fewer than the core's
/// [`LIST_REGISTERS`] (the GIC-400 has 4).
///
/// # Safety
///
/// `base` is the GICH "this processor" frame (4 KiB), mapped as device
/// memory in the EL2 stage-1 map for as long as the image runs, and no
/// other code of this image writes it.
pub unsafe fn init(base: usize) -> Result<usize, TooFewListRegisters> {
    // SAFETY: the caller's promise on `base`; GICH_VTR is read-only.
    let vtr = unsafe { core::ptr::read_volatile((base + reg::VTR) as *const u32) };
    let lrs = (vtr & 0x3F) as usize + 1;
    if lrs < LIST_REGISTERS {
        return Err(TooFewListRegisters(lrs));
    }
    BASE.store(base, Ordering::Release);
    // Nothing live yet: the interface off, every list register empty.
    write(reg::HCR, 0);
    for i in 0..LIST_REGISTERS {
        write(reg::LR0 + 4 * i, 0);
    }
    write(reg::APR, 0);
    Ok(lrs)
}

/// True once [`init`] took a GICH frame.
pub fn present() -> bool {
    BASE.load(Ordering::Acquire) != 0
}

fn read(offset: usize) -> u32 {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 {
        return 0;
    }
    // SAFETY: `base` is the GICH frame `init` was given (mapped device
    // memory, ours alone); every offset used is a register in its 4 KiB.
    unsafe { core::ptr::read_volatile((base + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 {
        return;
    }
    // SAFETY: as in `read`; the writes change only the virtual interface
    // of the vCPU this core is about to run or has just run.
    unsafe { core::ptr::write_volatile((base + offset) as *mut u32, value) };
}

/// Loads `v` (list registers, GICH_VMCR, GICH_APR) and turns the virtual
/// interface on for the vCPU about to run. GICH_VMCR has ICH_VMCR_EL2's
/// layout, except that its priority mask keeps 5 bits ([31:27]).
pub fn load(v: &VirtualGic) {
    for (i, &lr) in v.lr.iter().enumerate() {
        write(reg::LR0 + 4 * i, lr_to_gicv2(lr));
    }
    write(reg::VMCR, v.vmcr as u32);
    write(reg::APR, v.ap1r0 as u32);
    write(reg::HCR, HCR_EN);
}

/// Saves the vCPU's virtual interface into `v` after it exited, empties
/// the list registers and turns the interface off, so nothing of it
/// reaches the next vCPU. A list register GICH_ELRSR0 reports empty is
/// not read (it holds no interrupt).
pub fn save(v: &mut VirtualGic) {
    let empty = read(reg::ELRSR0);
    for i in 0..LIST_REGISTERS {
        v.lr[i] = if empty & (1 << i) != 0 {
            0
        } else {
            lr_from_gicv2(read(reg::LR0 + 4 * i))
        };
        write(reg::LR0 + 4 * i, 0);
    }
    v.vmcr = read(reg::VMCR) as u64;
    v.ap1r0 = read(reg::APR) as u64;
    write(reg::HCR, 0);
    write(reg::APR, 0);
}

/// GICH_MISR: the maintenance interrupt's causes (none is enabled in
/// GICH_HCR: the image needs no maintenance interrupt, as every vCPU's
/// list registers are read back at each exit).
pub fn misr() -> u32 {
    read(reg::MISR)
}

/// GICH_EISR0: list registers whose (non-hardware, EOI-flagged)
/// interrupt the vCPU ended.
pub fn eisr() -> u32 {
    read(reg::EISR0)
}

/// GICH_ELRSR0: list registers that hold no interrupt.
pub fn elrsr() -> u32 {
    read(reg::ELRSR0)
}

/// GICH_HCR.
pub fn hcr() -> u32 {
    read(reg::HCR)
}
