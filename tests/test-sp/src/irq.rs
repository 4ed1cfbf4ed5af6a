//! The partition's secure interrupt handling (docs/interrupts.md): its
//! own interrupt code. It takes and ends its interrupts with the SPMC's
//! paravirtualised calls (QEMU has no virtual CPU interface at Secure EL1,
//! docs/interrupts.md), signalled by a virtual IRQ.
//! The interrupt it owns is the EL1 virtual timer's PPI (INTID 27).

use core::arch::asm;

/// The EL1 virtual timer's PPI.
pub const TIMER_INTID: u64 = 27;

/// What the handler saw.
#[derive(Debug, Default)]
pub struct IrqState {
    /// Interrupts handled.
    pub handled: u64,
    /// The last INTID handled.
    pub last: u64,
    /// How many times it was resumed with FFA_INTERRUPT.
    pub resumed: u64,
    /// The virtual counter when the handler last ran.
    pub at: u64,
    /// Acknowledge but never end (IRQ_HOLD).
    pub hold: bool,
    /// INTIDs acknowledged and not ended (while `hold`).
    held: [u64; 8],
    nheld: usize,
}

impl IrqState {
    /// Zero state (for .bss).
    pub const fn new() -> Self {
        Self {
            handled: 0,
            last: 0,
            resumed: 0,
            at: 0,
            hold: false,
            held: [0; 8],
            nheld: 0,
        }
    }

    /// Acknowledges one interrupt and handles it: the timer is stopped and
    /// the interrupt ended (unless held). Returns the INTID, or 0 if none
    /// was pending.
    pub fn poll(&mut self) -> u64 {
        let intid = hvc(PV_INTERRUPT_GET, 0) & 0xFF_FFFF;
        if intid >= 1020 {
            return 0;
        }
        self.at = counter();
        if intid == TIMER_INTID {
            // SAFETY: stopping its own EL1 virtual timer.
            unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack)) };
        }
        if self.hold {
            if self.nheld < self.held.len() {
                self.held[self.nheld] = intid;
                self.nheld += 1;
            }
        } else {
            end(intid);
        }
        self.handled += 1;
        self.last = intid;
        intid
    }

    /// Ends every interrupt held; returns how many.
    pub fn release(&mut self) -> u64 {
        let n = self.nheld;
        for &i in &self.held[..n] {
            end(i);
        }
        self.nheld = 0;
        n as u64
    }
}

/// The SPMC's paravirtualised interrupt interface (docs/interrupts.md;
/// `arch_aarch64::gic::paravirtual_call`): acknowledge, and end.
const PV_INTERRUPT_GET: u64 = 0xC600_0001;
const PV_INTERRUPT_DEACTIVATE: u64 = 0xC600_0002;

fn hvc(id: u64, arg: u64) -> u64 {
    let mut x0 = id;
    // SAFETY: an HVC to the SPMC, which answers in x0 and changes nothing
    // else of this partition's.
    unsafe { asm!("hvc #0", inout("x0") x0, in("x1") arg, options(nomem, nostack)) };
    x0
}

/// Ends `intid` (the virtual interrupt; the SPMC deactivates the physical
/// one it is linked to).
fn end(intid: u64) {
    hvc(PV_INTERRUPT_DEACTIVATE, intid);
}

/// The virtual counter.
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effect.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Waits, with IRQs masked, until a virtual IRQ is pending at its EL1
/// (ISR_EL1.I: the SPMC put an interrupt in its list registers and raised
/// the line) or the counter passed `from + ticks`; true if it was pending.
/// The interrupt is not taken: it stays pending.
pub fn wait_virtual_irq(from: u64, ticks: u64) -> bool {
    loop {
        let isr: u64;
        // SAFETY: reading ISR_EL1 has no side effect.
        unsafe { asm!("mrs {}, isr_el1", out(reg) isr, options(nomem, nostack)) };
        if isr & (1 << 7) != 0 {
            return true;
        }
        if counter().wrapping_sub(from) > ticks {
            return false;
        }
    }
}

/// Arms the EL1 virtual timer for `ticks`.
pub fn arm(ticks: u64) -> u64 {
    // SAFETY: the timer is its own.
    unsafe {
        asm!(
            "msr cntv_tval_el0, {t}",
            "msr cntv_ctl_el0, {one}",
            "isb",
            one = in(reg) 1u64,
            t = in(reg) ticks,
            options(nomem, nostack),
        )
    };
    counter()
}
