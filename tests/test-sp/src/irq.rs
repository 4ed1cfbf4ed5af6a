//! The partition's secure interrupt handling (docs/interrupts.md): its
//! own GIC CPU interface code. Under the SPMC, ICC_* accesses at EL1 reach
//! the virtual CPU interface (ICV_*), whose list registers the SPMC fills.
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
        let iar: u64;
        // SAFETY: reading ICC_IAR1_EL1 acknowledges the highest-priority
        // pending (virtual) Group 1 interrupt; no memory is touched.
        unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) iar, options(nomem, nostack)) };
        let intid = iar & 0xFF_FFFF;
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

/// ICC_EOIR1_EL1: priority drop and deactivation of `intid` (the virtual
/// interrupt; the SPMC linked it to the physical one).
fn end(intid: u64) {
    // SAFETY: ending an interrupt this partition acknowledged.
    unsafe { asm!("msr S3_0_C12_C12_1, {}", "isb", in(reg) intid, options(nomem, nostack)) };
}

/// The virtual counter.
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effect.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Turns its GIC CPU interface on (priority mask open, Group 1 on) and
/// arms the EL1 virtual timer for `ticks`.
pub fn arm(ticks: u64) -> u64 {
    // SAFETY: ICC_PMR_EL1 and ICC_IGRPEN1_EL1 are its own (virtual) CPU
    // interface; the timer is its own.
    unsafe {
        asm!(
            "msr S3_0_C4_C6_0, {pmr}",
            "msr S3_0_C12_C12_7, {one}",
            "msr cntv_tval_el0, {t}",
            "msr cntv_ctl_el0, {one}",
            "isb",
            pmr = in(reg) 0xFFu64,
            one = in(reg) 1u64,
            t = in(reg) ticks,
            options(nomem, nostack),
        )
    };
    counter()
}
