//! The board checks this image runs on itself after boot, printed as
//! `PASS <name>` / `FAIL <name>: <why>` lines and counted into the `rpi4`
//! stage's summary (`cargo xtask test --stage rpi4`): what the rest of the
//! port relies on (docs/rpi4.md).

use arch_aarch64::{console, cpu, sysreg};

use crate::layout;

/// Counts of one run.
#[derive(Debug, Default)]
struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn check(&mut self, name: &str, f: impl FnOnce() -> Result<(), alloc::string::String>) {
        match f() {
            Ok(()) => {
                self.passed += 1;
                console::line(format_args!("PASS {name}"));
            }
            Err(why) => {
                self.failed += 1;
                console::line(format_args!("FAIL {name}: {why}"));
            }
        }
    }
}

/// Reads a 32-bit GIC-400 register.
pub(crate) fn gic(addr: usize) -> u32 {
    // SAFETY: only called with ID and type registers of the GIC-400's
    // distributor, CPU interface or virtual interface control, which the
    // stage-1 map covers as device memory; reading them has no side effect.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Runs the board checks; returns (passed, failed).
pub fn board() -> (u32, u32) {
    let mut r = Report::default();
    r.check("rpi4-entered-at-el2", || match cpu::current_el() {
        2 => Ok(()),
        el => Err(alloc::format!(
            "CurrentEL is {el}, TF-A must enter BL33 at EL2"
        )),
    });
    r.check("rpi4-no-secure-el2", || {
        // The reason for this mode: no VSTTBR_EL2, stage 2 is VTTBR_EL2's alone.
        match (sysreg::read_id_aa64pfr0_el1() >> 36) & 0xf {
            0 => Ok(()),
            v => Err(alloc::format!(
                "ID_AA64PFR0_EL1.SEL2 = {v}: this CPU has Secure EL2"
            )),
        }
    });
    r.check("rpi4-cortex-a72", || {
        let midr = sysreg::read_midr_el1();
        // Implementer Arm (0x41), part 0xd08 (Cortex-A72).
        if midr >> 24 == 0x41 && (midr >> 4) & 0xfff == 0xd08 {
            Ok(())
        } else {
            Err(alloc::format!("MIDR_EL1 = {midr:#x}, not a Cortex-A72"))
        }
    });
    r.check("rpi4-gicv2-distributor", || {
        // GICD_PIDR2.ArchRev (bits 7:4) = 2 for GICv2.
        let rev = (gic(layout::GICD + 0xfe8) >> 4) & 0xf;
        let typer = gic(layout::GICD + 0x4);
        if rev == 2 && typer & 0x1f != 0 {
            Ok(())
        } else {
            Err(alloc::format!(
                "GICD_PIDR2.ArchRev = {rev}, GICD_TYPER = {typer:#x}"
            ))
        }
    });
    r.check("rpi4-gic-virtualisation-extension", || {
        // GICH_VTR.ListRegs: the VMs' virtual interrupts go through these.
        let vtr = gic(layout::GICH + 0x4);
        let lrs = (vtr & 0x3f) + 1;
        if vtr != 0 && vtr != u32::MAX && lrs >= 4 {
            Ok(())
        } else {
            Err(alloc::format!("GICH_VTR = {vtr:#x}"))
        }
    });
    r.check("rpi4-generic-timer", || {
        let freq = sysreg::read_cntfrq_el0();
        let a = sysreg::read_cntvct_el0();
        let mut b = a;
        for _ in 0..1_000_000 {
            b = sysreg::read_cntvct_el0();
            if b != a {
                break;
            }
        }
        if freq != 0 && b > a {
            Ok(())
        } else {
            Err(alloc::format!("CNTFRQ_EL0 = {freq}, counter {a} then {b}"))
        }
    });
    r.check("rpi4-stage1-wxn", || {
        let sctlr = sysreg::read_sctlr_el2();
        if sctlr & 1 != 0 && sctlr & (1 << 19) != 0 {
            Ok(())
        } else {
            Err(alloc::format!("SCTLR_EL2 = {sctlr:#x}: MMU or WXN off"))
        }
    });
    r.check("rpi4-stage2-vmid-width", || {
        // The core's VMID budget (Platform::vmid_limit): 8 bits on the A72.
        let bits = (sysreg::read_id_aa64mmfr1_el1() >> 4) & 0xf;
        if bits == 0 || bits == 2 {
            Ok(())
        } else {
            Err(alloc::format!("ID_AA64MMFR1_EL1.VMIDBits = {bits}"))
        }
    });
    (r.passed, r.failed)
}
