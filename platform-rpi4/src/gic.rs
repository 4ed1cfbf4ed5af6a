//! The GIC-400's distributor and CPU interface at non-secure EL2, through
//! the `arm-gic` crate's GICv2 driver where it has the operation, and a
//! few registers of our own where it has not (docs/arm-gic.md): the CPU
//! interface's EOImode, deactivation (GICC_DIR) and the active state.
//!
//! TF-A's rpi4 port (`rpi4_bl31_setup.c`: `gicv2_distif_init`,
//! `gicv2_pcpu_distif_init`, `gicv2_cpuif_enable`) puts every interrupt in
//! Group 1, enables Group 0 only at the distributor and the CPU interface
//! and opens the priority mask (0xFF). This image enables Group 1 (its own
//! world's), splits priority drop and deactivation (so that a VM's end of
//! a hardware-linked virtual interrupt deactivates the physical one) and
//! configures the interrupts it hands to VMs (`vgic.rs`).
//!
//! QEMU 10's `raspi4b` (hw/arm/bcm2838.c) models the GIC-400 without the
//! security extension (GICD_TYPER.SecurityExtn = 0): this image then sees
//! the one, "secure-layout" view of GICD_CTLR/GICC_CTLR; on a real Pi 4 it
//! sees the non-secure view. [`init`] writes the bits of whichever it is.
//!
//! The Raspberry Pi 4 has no secure world: there is no Group 1 Secure
//! interrupt a trusted VM could own, so a manifest claim is refused
//! (`configure_secure` answers false and the core refuses the partition).

use core::ptr::NonNull;

use arm_gic::gicv2::GicV2;
use arm_gic::gicv2::registers::{Gicc, Gicd};
use arm_gic::{IntId, InterruptGroup, Trigger};

use crate::layout;

/// GICC_CTLR bits (IHI0048B §4.4.1).
mod ctlr {
    /// Without the security extension: EnableGrp0. Non-secure view: EnableGrp1.
    pub const ENABLE_BIT0: u32 = 1 << 0;
    /// Without the security extension: EnableGrp1.
    pub const ENABLE_GRP1: u32 = 1 << 1;
    /// Without the security extension: AckCtl (GICC_IAR also acknowledges Group 1).
    pub const ACK_CTL: u32 = 1 << 2;
    /// EOImode of the view (EOImodeS without the security extension,
    /// EOImodeNS in the non-secure view): GICC_EOIR only drops the priority.
    pub const EOI_MODE: u32 = 1 << 9;
}

/// GICC_DIR: deactivates an interrupt (IHI0048B §4.4.15).
const GICC_DIR: usize = layout::GICC + 0x1000;
/// GICD_ISACTIVER<n> / GICD_ICACTIVER<n>: set / clear active.
const GICD_ISACTIVER: usize = layout::GICD + 0x300;
const GICD_ICACTIVER: usize = layout::GICD + 0x380;
/// GICD_ISENABLER<n>, GICD_IGROUPR<n>, GICD_IPRIORITYR<n>.
const GICD_ISENABLER: usize = layout::GICD + 0x100;
const GICD_IGROUPR: usize = layout::GICD + 0x080;
const GICD_IPRIORITYR: usize = layout::GICD + 0x400;
/// GICC_CTLR.
const GICC_CTLR: usize = layout::GICC;

/// Runs `f` with the `arm-gic` driver. Made for each use rather than kept:
/// it holds raw pointers; the image runs on one core and never from an
/// interrupt handler, so no two drivers touch the GIC at once.
fn with_gic<R>(f: impl FnOnce(&mut GicV2<'_>) -> R) -> R {
    // SAFETY: the board's distributor and CPU interface, mapped as device
    // memory by `platform::enable_mmu`; no other driver instance is alive
    // (see above).
    let mut gic = unsafe {
        GicV2::new(
            NonNull::new(layout::GICD as *mut Gicd).unwrap().as_ptr(),
            NonNull::new(layout::GICC as *mut Gicc).unwrap().as_ptr(),
        )
    };
    f(&mut gic)
}

fn read(addr: usize) -> u32 {
    // SAFETY: `addr` is one of the GIC-400 registers named above (in the
    // distributor or CPU interface frames the stage-1 map covers as device
    // memory); none of those read here has a read side effect.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write(addr: usize, value: u32) {
    // SAFETY: as in `read`; the writes change only state this image owns
    // (its CPU interface's control, the active/deactivated state of an
    // interrupt it acknowledged and handed to a VM).
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) };
}

/// `arm-gic`'s name for INTID `intid`.
fn int_id(intid: u32) -> IntId {
    match intid {
        0..16 => IntId::sgi(intid),
        16..32 => IntId::ppi(intid - 16),
        _ => IntId::spi(intid - 32),
    }
}

/// Enables Group 1 (this world's interrupts) at the distributor and this
/// core's CPU interface, with EOImode = 1; returns GICC_CTLR as written.
pub fn init() -> u32 {
    let secure_view = with_gic(|gic| {
        let security_extension = gic.typer().has_security_extension();
        if security_extension {
            // The non-secure view of GICD_CTLR: bit 0 is Group 1's enable.
            gic.enable_group0(true);
        } else {
            gic.enable_group1(true);
        }
        !security_extension
    });
    let mut c = read(GICC_CTLR) | ctlr::EOI_MODE;
    if secure_view {
        c |= ctlr::ENABLE_GRP1 | ctlr::ACK_CTL;
    } else {
        c |= ctlr::ENABLE_BIT0;
    }
    write(GICC_CTLR, c);
    read(GICC_CTLR)
}

/// Configures PPI or SPI `intid` for this world: Group 1, `priority`,
/// level-sensitive, enabled. Through `arm-gic` (whose
/// `set_interrupt_priority` writes the whole GICD_IPRIORITYR word: the
/// three other INTIDs sharing it get priority 0, docs/arm-gic.md).
pub fn configure(intid: u32, priority: u8) -> bool {
    with_gic(|gic| {
        let id = int_id(intid);
        let _ = gic.enable_interrupt(id, false);
        gic.set_group(id, InterruptGroup::Group1);
        gic.set_interrupt_priority(id, priority);
        gic.set_trigger(id, Trigger::Level);
        gic.enable_interrupt(id, true).is_ok()
    })
}

/// Sets this core's priority mask (GICC_PMR, through `arm-gic`): 0 masks
/// every interrupt, 0xFF lets all through.
pub fn set_priority_mask(mask: u8) {
    with_gic(|gic| gic.set_priority_mask(mask));
}

/// Acknowledges the highest-priority pending interrupt (GICC_IAR, through
/// `arm-gic`); `None` if none (a spurious INTID).
pub fn acknowledge() -> Option<u32> {
    let id = with_gic(|gic| gic.get_and_acknowledge_interrupt(InterruptGroup::Group0))?;
    let id = u32::from(id);
    (id < 1020).then_some(id)
}

/// Drops the running priority of `intid` (GICC_EOIR, through `arm-gic`;
/// with EOImode = 1 it stays active until [`deactivate`]).
pub fn end_priority(intid: u32) {
    with_gic(|gic| gic.end_interrupt(int_id(intid), InterruptGroup::Group0));
}

/// Deactivates `intid` (GICC_DIR): an interrupt no VM will end. Also the
/// arch layer's physical deactivation at non-secure EL2
/// (`arch_aarch64::gic::set_physical_deactivate`).
pub fn deactivate(intid: u32) {
    write(GICC_DIR, intid);
}

/// True if `intid` is active (for a PPI: on this core).
pub fn is_active(intid: u32) -> bool {
    let word = GICD_ISACTIVER + 4 * (intid as usize / 32);
    read(word) & (1 << (intid % 32)) != 0
}

/// Sets or clears the active state of `intid` (this core's, for a PPI):
/// how a vCPU's hardware-linked interrupt keeps its physical state while
/// the vCPU is switched out (`vgic.rs`).
pub fn set_active(intid: u32, active: bool) {
    let base = if active {
        GICD_ISACTIVER
    } else {
        GICD_ICACTIVER
    };
    write(base + 4 * (intid as usize / 32), 1 << (intid % 32));
}

/// `intid`'s distributor configuration: (enabled, Group 1, priority).
pub fn configuration(intid: u32) -> (bool, bool, u8) {
    let bit = 1 << (intid % 32);
    let word = 4 * (intid as usize / 32);
    let enabled = read(GICD_ISENABLER + word) & bit != 0;
    let group1 = read(GICD_IGROUPR + word) & bit != 0;
    let priority = (read(GICD_IPRIORITYR + 4 * (intid as usize / 4)) >> (8 * (intid % 4))) as u8;
    (enabled, group1, priority)
}

/// Refuses every secure-interrupt claim: there is no secure world here.
pub fn configure_secure(
    _intid: u32,
    _priority: u8,
    _level: bool,
    _core: usize,
    _cores: usize,
) -> bool {
    false
}

/// Disables `intid` at the distributor (through `arm-gic`; for a PPI,
/// this core's). Also the board's `disable_interrupt`: nothing is ever
/// configured for a trusted VM, so the core never asks.
pub fn disable(intid: u32, _cores: usize) {
    with_gic(|gic| {
        let _ = gic.enable_interrupt(int_id(intid), false);
    });
}
