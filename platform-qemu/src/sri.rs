//! The schedule receiver interrupt (DEN0077 v1.2 chapter 10): SGI
//! [`spmc::notifications::SRI_INTID`] (8), which `FFA_FEATURES` reports to
//! the normal world, must be a Group 1 non-secure interrupt at every core's
//! redistributor for the SPMC's ICC_ASGI1R_EL1 write
//! (`arch_aarch64::sri`) to make it pending there. TF-A's QEMU ports make
//! SGIs 8-15 Group 1 secure (`QEMU_IRQ_SEC_SGI_*`, at each core's power-on),
//! so each core, when it enters the SPMC (cold boot, and every power-on
//! after that: TF-A configures the redistributor first), gives SGI 8 to the
//! normal world: disabled, Group 1 non-secure, a middle priority. Hafnium's
//! SPMC does the same ("the SGI donated to the normal world", as Linux's
//! FF-A driver calls it); the normal world enables it when it is ready.
//!
//! Kept apart from the GIC code that configures secure interrupts: three
//! register writes in this core's SGI frame, nothing else.

use core::ptr::{read_volatile, write_volatile};

use crate::layout::BOARD;

/// A redistributor's RD frame and SGI frame, 64 KiB each (GICv3); with
/// virtual LPIs (GICv4, GICR_TYPER.VLPIS) two more follow.
const FRAME: u64 = 0x1_0000;
/// GICR_TYPER (RD frame): [63:32] the core's affinity, bit 4 Last, bit 1
/// VLPIS.
const GICR_TYPER: u64 = 0x8;
/// In the SGI frame: GICR_IGROUPR0, GICR_ICENABLER0, GICR_IPRIORITYR<n>,
/// GICR_IGRPMODR0.
const IGROUPR0: u64 = 0x080;
const ICENABLER0: u64 = 0x180;
const IPRIORITYR: u64 = 0x400;
const IGRPMODR0: u64 = 0xd00;
/// The priority the SGI gets until the normal world sets its own (Linux's
/// default for its interrupts is 0xa0).
const PRIORITY: u8 = 0x80;

/// Gives the SRI's SGI to the normal world at this core's redistributor.
/// Logs and does nothing when this core's redistributor is not in the
/// mapped range (the normal world then polls FFA_NOTIFICATION_INFO_GET).
pub fn give_to_normal_world() {
    let intid = spmc::notifications::SRI_INTID as u64;
    let Some(rd) = this_cores_redistributor() else {
        log::warn!("no redistributor for this core: the schedule receiver interrupt stays secure");
        return;
    };
    let sgi = rd + FRAME;
    let bit = 1u32 << intid;
    // Disabled, Group 1 non-secure (IGROUPR0 = 1, IGRPMODR0 = 0), a priority.
    write32(sgi + ICENABLER0, bit);
    write32(sgi + IGROUPR0, read32(sgi + IGROUPR0) | bit);
    write32(sgi + IGRPMODR0, read32(sgi + IGRPMODR0) & !bit);
    // SAFETY: as in `write32`: the priority byte of SGI 8 in this core's
    // SGI frame (byte access is allowed to GICR_IPRIORITYR<n>).
    unsafe { write_volatile((sgi + IPRIORITYR + intid) as *mut u8, PRIORITY) };
}

/// Reads a 32-bit register of this core's SGI frame.
fn read32(addr: u64) -> u32 {
    // SAFETY: callers pass a register of this core's SGI frame inside
    // `BOARD.gicr`, which the SPMC's stage-1 map holds as Device memory;
    // reading the group registers has no side effect.
    unsafe { read_volatile(addr as *const u32) }
}

/// Writes a 32-bit register of this core's SGI frame.
fn write32(addr: u64, v: u32) {
    // SAFETY: callers pass a register of this core's SGI frame inside
    // `BOARD.gicr` (Device in the SPMC's map, secure accesses, so the group
    // registers are writable) with a value that changes only SGI 8's bit:
    // no other interrupt's configuration is touched, and only this core
    // touches its own redistributor here.
    unsafe { write_volatile(addr as *mut u32, v) }
}

/// This core's RD frame: the redistributor whose GICR_TYPER affinity is
/// this core's MPIDR affinity, searched in `BOARD.gicr` up to the one
/// marked Last.
pub(crate) fn this_cores_redistributor() -> Option<u64> {
    let mpidr = arch_aarch64::sysreg::read_mpidr_el1();
    let affinity = (mpidr >> 32 & 0xff) << 24 | (mpidr & 0xff_ffff);
    let mut rd = BOARD.gicr as u64;
    let end = rd + crate::gic::GICR_SIZE as u64;
    while rd + 2 * FRAME <= end {
        // SAFETY: `rd` is an RD frame inside `BOARD.gicr` (Device in the
        // SPMC's map; the walk stops at the range's end); reading
        // GICR_TYPER has no side effect.
        let typer = unsafe { read_volatile((rd + GICR_TYPER) as *const u64) };
        if typer >> 32 == affinity {
            return Some(rd);
        }
        if typer & (1 << 4) != 0 {
            return None;
        }
        rd += if typer & (1 << 1) != 0 {
            4 * FRAME
        } else {
            2 * FRAME
        };
    }
    None
}
