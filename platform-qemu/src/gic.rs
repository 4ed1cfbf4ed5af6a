//! The board's GICv3 distributor and redistributors, through the `arm-gic`
//! crate: the SPMC configures the secure interrupts partitions own
//! (`spmc::interrupts`) as Group 1 Secure, with their priority and
//! trigger, routed to a core, and enabled. The CPU interface (acknowledge,
//! end, virtual interrupts) is `arch_aarch64::gic`.

use core::ptr::NonNull;

use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicV3, Group, SecureIntGroup};
use arm_gic::{IntId, Trigger, UniqueMmioPointer};

use crate::layout::BOARD;

/// Bytes of the distributor's frame.
pub const GICD_SIZE: usize = 0x1_0000;
/// Bytes of the redistributors (two 64 KiB frames per core).
pub const GICR_SIZE: usize = 0x2_0000 * arch_aarch64::MAX_CPUS;

/// Runs `f` with the GIC driver.
///
/// The driver is made for each use rather than kept: it holds raw
/// pointers, and the platform is shared between cores under the SPMC's
/// lock. Every caller runs with that lock held (the `Platform` methods
/// take `&mut Qemu`), so no two drivers touch the GIC at once.
fn with_gic<R>(f: impl FnOnce(&mut GicV3<'_>) -> R) -> Option<R> {
    let gicd = NonNull::new(BOARD.gicd as *mut Gicd)?;
    let gicr = NonNull::new(BOARD.gicr as *mut GicrSgi)?;
    // SAFETY: `BOARD.gicd` is the board's distributor, mapped as device
    // memory by `platform::enable_mmu` and used by nothing else in the
    // SPMC (the caller holds the SPMC's lock: see above).
    let gicd = unsafe { UniqueMmioPointer::new(gicd) };
    // SAFETY: `BOARD.gicr` is the board's redistributor region, mapped as
    // device memory for `MAX_CPUS` cores by `platform::enable_mmu`, with no
    // other driver instance alive (as above).
    let mut gic = unsafe { GicV3::new(gicd, gicr, arch_aarch64::MAX_CPUS) }.ok()?;
    Some(f(&mut gic))
}

/// Configures `intid` as Group 1 Secure, `priority`, `level` or edge,
/// routed to core `core` (an SPI) or on every core (a PPI), and enables it.
pub fn configure_secure(intid: u32, priority: u8, level: bool, core: usize, cores: usize) -> bool {
    let trigger = if level { Trigger::Level } else { Trigger::Edge };
    with_gic(|gic| {
        // TF-A enables Secure Group 1 at the distributor only when its own
        // platform has secure SPIs (QEMU's has none): without it no Group 1
        // Secure interrupt, PPIs included, is ever forwarded.
        gic.distributor().enable_group1_secure(true);
        if intid >= 32 {
            let id = IntId::spi(intid - 32);
            gic.enable_interrupt(id, None, false).ok()?;
            gic.set_group(id, None, Group::Secure(SecureIntGroup::Group1S))
                .ok()?;
            gic.set_interrupt_priority(id, None, priority).ok()?;
            gic.set_trigger(id, None, trigger).ok()?;
            // QEMU virt's MPIDR of core n has Aff0 = n.
            gic.distributor().set_routing(id, Some(core as u64)).ok()?;
            gic.enable_interrupt(id, None, true).ok()
        } else {
            let id = IntId::ppi(intid - 16);
            for c in 0..redistributors(gic, cores) {
                gic.enable_interrupt(id, Some(c), false).ok()?;
                gic.set_group(id, Some(c), Group::Secure(SecureIntGroup::Group1S))
                    .ok()?;
                gic.set_interrupt_priority(id, Some(c), priority).ok()?;
                gic.set_trigger(id, Some(c), trigger).ok()?;
                gic.enable_interrupt(id, Some(c), true).ok()?;
            }
            Some(())
        }
    })
    .flatten()
    .is_some()
}

/// Disables `intid` (on every core, for a PPI).
pub fn disable(intid: u32, cores: usize) {
    with_gic(|gic| {
        if intid >= 32 {
            let _ = gic.enable_interrupt(IntId::spi(intid - 32), None, false);
        } else if intid >= 16 {
            for c in 0..redistributors(gic, cores) {
                let _ = gic.enable_interrupt(IntId::ppi(intid - 16), Some(c), false);
            }
        }
    });
}

/// How many redistributors the machine has (up to `max`): the frames
/// past the one whose GICR_TYPER.Last is set are not there.
fn redistributors(gic: &mut GicV3<'_>, max: usize) -> usize {
    for c in 0..max {
        match gic.gicr_typer(c) {
            Ok(t) if t.last_redistributor() => return c + 1,
            Ok(_) => {}
            Err(_) => return c,
        }
    }
    max
}

/// GICD_ICACTIVER<n> and, in a redistributor's SGI frame, GICR_ICACTIVER0.
const ICACTIVER: u64 = 0x380;

/// Deactivates `intid` through the clear-active registers: the
/// distributor's for an SPI, this core's redistributor's for an SGI or
/// PPI. QEMU (10.0.2, `icc_dir_write()`) ignores ICC_DIR_EL1 at EL2 for a
/// Group 1 Secure interrupt (its check predates Secure EL2), so without
/// this an interrupt the SPMC deactivates stays active and never comes
/// again (docs/interrupts.md, "Status on QEMU").
pub fn deactivate(intid: u32) {
    let bit = 1u32 << (intid % 32);
    let addr = if intid >= 32 {
        BOARD.gicd as u64 + ICACTIVER + 4 * (intid / 32) as u64
    } else {
        match crate::sri::this_cores_redistributor() {
            Some(rd) => rd + 0x1_0000 + ICACTIVER,
            None => return,
        }
    };
    // SAFETY: `addr` is a clear-active register of the distributor or of
    // this core's redistributor (Device memory in the SPMC's map, secure
    // accesses); writing one bit only deactivates `intid`, which the SPMC
    // owns and is ending. The SPMC's lock is held (Platform methods).
    unsafe { core::ptr::write_volatile(addr as *mut u32, bit) };
}
