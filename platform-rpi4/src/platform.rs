//! Boot at non-secure EL2: console, stage-1 map, the board's facts.

use arch_aarch64::mmu::{self, Kind, Region};
use arch_aarch64::{console, cpu, heap, sysreg};
use log::{LevelFilter, error, info};

use crate::checks::gic;
use crate::layout;

/// Log level, chosen at build time with `SPMC_LOG` (as on QEMU virt).
const LOG_LEVEL: LevelFilter = match option_env!("SPMC_LOG") {
    Some(s) if s.len() == 5 && s.as_bytes()[0] == b'e' => LevelFilter::Error,
    Some(s) if s.len() == 4 && s.as_bytes()[0] == b'w' => LevelFilter::Warn,
    Some(s) if s.len() == 5 && s.as_bytes()[0] == b'd' => LevelFilter::Debug,
    Some(s) if s.len() == 5 && s.as_bytes()[0] == b't' => LevelFilter::Trace,
    _ => LevelFilter::Info,
};

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __image_end: u8;
}

/// PSCI SYSTEM_OFF (TF-A's rpi4 port resets the board through the PM
/// watchdog with the halt mark; QEMU run with `-no-reboot` exits).
const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;

/// The primary core's cold boot.
pub fn primary(dtb: u64, core: usize) -> ! {
    // SAFETY: the board's PL011, which TF-A stops using once it enters BL33
    // (its runtime console is the same UART, used only for its own errors).
    unsafe { console::init(layout::UART, LOG_LEVEL) };
    prove_ns_el2(core, dtb);
    heap::init();
    if let Err(e) = enable_mmu() {
        error!("cannot build the stage-1 map: {e}");
        cpu::halt()
    }
    info!("rpi4: stage-1 MMU on: text RX, rodata R, data RW+XN");
    gic_report();
    let (passed, failed) = crate::checks::board();
    console::line(format_args!("rpi4: {passed} passed, {failed} failed"));
    info!("rpi4: boot done; powering off through TF-A (PSCI SYSTEM_OFF)");
    let mut regs = spmc::ffa::Regs::with_func(PSCI_SYSTEM_OFF);
    arch_aarch64::smc::smc(&mut regs);
    error!("PSCI SYSTEM_OFF returned {:#x}", regs.0[0]);
    cpu::halt()
}

/// The banner: where this image runs. Not Secure EL2: ID_AA64PFR0_EL1.SEL2
/// is 0 on the Cortex-A72, so VSTCR_EL2 and VSTTBR_EL2 do not exist here
/// and stage 2 is VTTBR_EL2's alone.
pub(crate) fn prove_ns_el2(core: usize, dtb: u64) {
    let el = cpu::current_el();
    let sel2 = (sysreg::read_id_aa64pfr0_el1() >> 36) & 0xf;
    let midr = sysreg::read_midr_el1();
    info!(
        "rpi4: spmc core at non-secure EL2 (BL33 of TF-A rpi4): CurrentEL={el}, \
         ID_AA64PFR0_EL1.SEL2={sel2}, MIDR_EL1={midr:#x}, core {core}, DTB {dtb:#x}"
    );
}

/// What the GIC-400 says of itself: GICv2 distributor, CPU interface and
/// virtual interface control (the list registers the VMs' interrupts go
/// through).
fn gic_report() {
    let typer = gic(layout::GICD + 0x4);
    let iidr = gic(layout::GICC + 0xfc);
    let vtr = gic(layout::GICH + 0x4);
    info!(
        "rpi4: GIC-400: GICD_TYPER={typer:#x} ({} interrupt lines), GICC_IIDR={iidr:#x}, \
         GICH_VTR={vtr:#x} ({} list registers)",
        32 * ((typer & 0x1f) + 1),
        (vtr & 0x3f) + 1
    );
}

fn enable_mmu() -> Result<(), mmu::MapError> {
    let regions = [
        Region {
            start: &raw const __text_start as usize,
            end: &raw const __text_end as usize,
            kind: Kind::Text,
        },
        Region {
            start: &raw const __rodata_start as usize,
            end: &raw const __rodata_end as usize,
            kind: Kind::ReadOnly,
        },
        Region {
            start: &raw const __data_start as usize,
            end: &raw const __image_end as usize,
            kind: Kind::ReadWrite,
        },
        Region {
            start: layout::UART,
            end: layout::UART + 0x1000,
            kind: Kind::Device,
        },
        Region {
            start: layout::GICD,
            end: layout::GICH + 0x1000,
            kind: Kind::Device,
        },
    ];
    // SAFETY: the regions cover the image (the linker script's symbols), the
    // console and the GIC; nothing else is touched after this.
    unsafe { mmu::enable(&regions) }
}
