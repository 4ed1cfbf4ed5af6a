//! General VMs' interrupts through the GIC-400's virtualisation extension.
//!
//! Each general VM has its own EL1 virtual timer (CNTV_CTL/CVAL_EL0, part
//! of its vCPU's state here: [`VTimer`], switched by `guests.rs` around
//! each run) whose interrupt is PPI 11, INTID 27 on the GIC-400 (QEMU's
//! bcm2838 `GIC400_TIMER_VIRT_IRQ`, the Pi 4's device tree). When it fires
//! while the VM runs, the physical IRQ stops the VM (HCR_EL2.IMO): this
//! image acknowledges it at the GICC, drops its priority (EOImode 1, it
//! stays active) and puts virtual INTID 27 in the VM's list registers,
//! linked to the physical one (HW bit), with the same core code as on
//! QEMU virt (`arch_aarch64::gic::inject_virtual_interrupt`, the core's
//! `VirtualGic` images; `arch_aarch64::gich` loads and saves them). The VM
//! acknowledges and ends it at its own GICC address, which its stage 2
//! backs with the GICV frame: its end deactivates the physical interrupt.
//!
//! One physical PPI serves every VM's timer on this core, so a VM switched
//! out with its timer interrupt in flight takes the physical active state
//! with it ([`VTimer::exit`] clears it, [`VTimer::enter`] sets it again):
//! a VM that never ends its interrupt silences only its own timer.
//!
//! Only while a general VM runs is the GICC's priority mask open: trusted
//! VMs, whose interrupts are not handled at non-secure EL2 yet
//! (docs/rpi4.md), are never stopped by one.

use alloc::format;
use alloc::string::String;

use spmc::vcpu::Context;

use crate::gic;
use crate::guests::{Guest, Op, Outcome};
use crate::layout;
use crate::users::{Layer, Report};
use test_protocol::{cmd, ids};

/// The EL1 virtual timer's interrupt (PPI 11).
pub const VTIMER_INTID: u32 = 27;
/// Its priority at the distributor and in the list register.
pub const VTIMER_PRIORITY: u8 = 0xA0;

/// CNTV_CTL_EL0 bits.
pub const CNTV_ENABLE: u64 = 1 << 0;
/// CNTV_CTL_EL0.IMASK: the timer's condition does not assert its interrupt.
pub const CNTV_IMASK: u64 = 1 << 1;

/// What a general VM's GIC driver would have set in its GICC_CTLR and
/// GICC_PMR before taking interrupts (the puppet guest has none):
/// GICH_VMCR with VENG0, VENG1, VAckCtl and priority mask 0xF8.
pub const GUEST_VMCR: u64 = 0xF8 << 24 | 1 << 2 | 1 << 1 | 1;

/// GICV_IAR and GICV_EOIR at the VM's GICC address.
pub const GUEST_GICC_IAR: u64 = layout::GUEST_GICC + 0x0C;
/// GICV_EOIR.
pub const GUEST_GICC_EOIR: u64 = layout::GUEST_GICC + 0x10;

/// The physical side, once per boot: Group 1 and EOImode at the GIC-400,
/// INTID 27 configured, the GICH frame given to the arch layer and GICC_DIR
/// as its physical deactivation. Returns a line for the log.
pub fn init() -> Result<String, String> {
    let ctlr = gic::init();
    if !gic::configure(VTIMER_INTID, VTIMER_PRIORITY) {
        return Err(format!("INTID {VTIMER_INTID} cannot be enabled"));
    }
    // SAFETY: the GIC-400's GICH frame, mapped as device memory by
    // `platform::enable_mmu` for the image's life; only `arch_aarch64::gich`
    // writes it.
    let lrs =
        unsafe { arch_aarch64::gich::init(layout::GICH) }.map_err(|e| format!("GICH: {e:?}"))?;
    arch_aarch64::gic::set_physical_deactivate(gic::deactivate);
    // Interrupts reach this image only while a general VM runs
    // (`VTimer::enter`/`exit`).
    gic::set_priority_mask(0);
    Ok(format!(
        "GICC_CTLR={ctlr:#x}, INTID {VTIMER_INTID} Group 1 priority {VTIMER_PRIORITY:#x}, \
         {lrs} list registers"
    ))
}

/// A general VM's EL1 virtual timer, kept while the VM is switched out.
#[derive(Clone, Copy, Debug, Default)]
pub struct VTimer {
    /// CNTV_CTL_EL0 (ENABLE, IMASK).
    pub ctl: u64,
    /// CNTV_CVAL_EL0.
    pub cval: u64,
}

fn read_cntv() -> (u64, u64) {
    let (ctl, cval): (u64, u64);
    // SAFETY: reading the EL1 virtual timer's registers has no side effect.
    unsafe {
        core::arch::asm!(
            "mrs {}, cntv_ctl_el0",
            "mrs {}, cntv_cval_el0",
            out(reg) ctl,
            out(reg) cval,
            options(nomem, nostack, preserves_flags)
        )
    };
    (ctl, cval)
}

fn write_cntv(ctl: u64, cval: u64) {
    // SAFETY: the EL1 virtual timer belongs to the general VM about to run
    // (or to none: ctl 0 between runs); nothing at EL2 uses it.
    unsafe {
        core::arch::asm!(
            "msr cntv_cval_el0, {}",
            "msr cntv_ctl_el0, {}",
            "isb",
            in(reg) cval,
            in(reg) ctl,
            options(nomem, nostack, preserves_flags)
        )
    };
}

impl VTimer {
    /// Before the VM runs: its interrupt's physical active state if its
    /// list registers hold it (so the GIC does not signal it again and the
    /// VM's end deactivates it), then its timer.
    pub fn enter(&self, ctx: &Context) {
        if ctx.vgic.holds(VTIMER_INTID) {
            gic::set_active(VTIMER_INTID, true);
        }
        write_cntv(self.ctl & (CNTV_ENABLE | CNTV_IMASK), self.cval);
        gic::set_priority_mask(0xFF);
    }

    /// After the VM exited (its list registers saved by the arch layer):
    /// its timer kept and stopped, the physical interrupt's active state
    /// taken out with it.
    pub fn exit(&mut self, ctx: &Context) {
        let (ctl, cval) = read_cntv();
        self.ctl = ctl & (CNTV_ENABLE | CNTV_IMASK);
        self.cval = cval;
        write_cntv(0, cval);
        if ctx.vgic.holds(VTIMER_INTID) {
            gic::set_active(VTIMER_INTID, false);
        }
        // Masked again until a general VM runs: a trusted VM shares the
        // core's timer (its EL1 state is switched, its timer is not) and
        // owns no interrupt here; its armed timer must not stop it with an
        // interrupt nobody would acknowledge (`rpi4-trusted-vm-timer-masked`).
        gic::set_priority_mask(0);
    }
}

/// A physical IRQ stopped the VM of `ctx`: acknowledges one interrupt
/// and gives the VM its own timer's as a virtual one, linked to the
/// physical INTID. One per exit, never a loop: a level interrupt that
/// cannot be delivered is pending again at once, and looping on it here
/// would hang the image (seen with the delivery removed); the guest's run
/// is bounded instead (`Guest::run`, 64 exits). Any other interrupt has no
/// VM to go to (none is enabled but the timer's): disabled, deactivated.
/// A VM whose four list registers were all taken would lose it the same
/// way (it cannot happen with one source).
pub fn irq_exit(ctx: &mut Context) {
    let Some(intid) = gic::acknowledge() else {
        return;
    };
    gic::end_priority(intid);
    if intid == VTIMER_INTID {
        if arch_aarch64::gic::inject_virtual_interrupt(ctx, intid, Some(intid), VTIMER_PRIORITY)
            .is_ok()
        {
            return;
        }
    } else {
        gic::disable(intid, 1);
    }
    log::debug!("rpi4: INTID {intid} has no VM to go to: deactivated");
    gic::deactivate(intid);
}

/// Runs general VM `vm`'s guest for `op` (a load or store: it makes no call).
fn run(l: &mut Layer, vm: u16, op: Op) -> Result<Outcome, String> {
    l.guest(vm, op, [0; 8])
}

fn guest(l: &mut Layer, vm: u16) -> Result<&mut Guest, String> {
    l.guests
        .get_mut(vm as usize - 1)
        .and_then(Option::as_mut)
        .ok_or_else(|| format!("VM {vm} has no guest"))
}

/// Arms VM `vm`'s virtual timer to have fired already (as its own code
/// would, writing CNTV_CVAL/CTL): its interrupt is due when it next runs.
fn fire_timer(l: &mut Layer, vm: u16) -> Result<(), String> {
    let now = arch_aarch64::sysreg::read_cntvct_el0();
    *guest(l, vm)?.vtimer_mut() = VTimer {
        ctl: CNTV_ENABLE,
        cval: now,
    };
    Ok(())
}

/// What VM `vm` reads at its GICC_IAR (the acknowledged INTID, 1023 when
/// nothing is pending for it).
fn ack(l: &mut Layer, vm: u16) -> Result<u64, String> {
    match run(l, vm, Op::Load32(GUEST_GICC_IAR))? {
        Outcome::Done(x) => Ok(x[0] & 0x3FF),
        o => Err(format!("VM {vm} reading GICC_IAR: {o:x?}")),
    }
}

/// VM `vm`'s list register for INTID 27 is in `state` (1 pending, 2
/// active) with the HW bit.
fn lr_state(l: &mut Layer, vm: u16, state: u64) -> Result<(), String> {
    let v = guest(l, vm)?.vgic();
    let lr = v.lr.iter().find(|lr| **lr as u32 == VTIMER_INTID);
    match lr {
        Some(lr) if lr >> 62 == state && lr & 1 << 61 != 0 => Ok(()),
        _ => Err(format!("list registers {:#x?}", v.lr)),
    }
}

/// VM `vm`'s timer handler: the timer masked (its condition handled), then
/// the end of the interrupt at its GICC_EOIR.
fn handle_and_end(l: &mut Layer, vm: u16) -> Result<(), String> {
    guest(l, vm)?.vtimer_mut().ctl = CNTV_ENABLE | CNTV_IMASK;
    match run(l, vm, Op::Store32(GUEST_GICC_EOIR, VTIMER_INTID))? {
        Outcome::Done(_) => Ok(()),
        o => Err(format!("VM {vm} writing GICC_EOIR: {o:x?}")),
    }
}

/// The interrupt checks (`rpi4-gic400-*`, `rpi4-vm*-vtimer-*`), counted
/// in `r`.
pub fn checks(l: &mut Layer, r: &mut Report) {
    r.check(
        "rpi4-gic400-vtimer-configured",
        || match gic::configuration(VTIMER_INTID) {
            (true, true, VTIMER_PRIORITY) => Ok(()),
            c => Err(format!("INTID 27 (enabled, group 1, priority): {c:x?}")),
        },
    );
    r.check("rpi4-vm1-vtimer-irq-through-list-register", || {
        // VM 1's timer fires while it runs (a load of its own RAM, no
        // acknowledgement): its list registers hold INTID 27, pending,
        // linked to the physical INTID.
        fire_timer(l, 1)?;
        match run(l, 1, Op::Load(crate::guests::ram(1)))? {
            Outcome::Done(_) => {}
            o => return Err(format!("VM 1: {o:x?}")),
        }
        lr_state(l, 1, 1)
    });
    r.check("rpi4-vm2-does-not-see-vm1-interrupt", || {
        // VM 1's interrupt is pending in its list registers, not VM 2's.
        match ack(l, 2)? {
            1023 => Ok(()),
            got => Err(format!("VM 2 read INTID {got}")),
        }
    });
    r.check("rpi4-vm1-acks-at-its-gicc", || {
        let got = ack(l, 1)?;
        if got != VTIMER_INTID as u64 {
            return Err(format!("VM 1 read INTID {got} at its GICC_IAR"));
        }
        // Taken at its GICV: the list register went pending -> active.
        lr_state(l, 1, 2)
    });
    r.check("rpi4-vm1-eoi-deactivates-physical", || {
        handle_and_end(l, 1)?;
        if guest(l, 1)?.vgic().holds(VTIMER_INTID) {
            return Err("the list register still holds INTID 27".into());
        }
        if gic::is_active(VTIMER_INTID) {
            return Err("INTID 27 is still active at the distributor".into());
        }
        // Masked by its handler: nothing more for it.
        match ack(l, 1)? {
            1023 => Ok(()),
            got => Err(format!("then read INTID {got}")),
        }
    });
    r.check("rpi4-vm3-never-acks-others-go-on", || {
        // VM 3 takes its timer interrupt but never acknowledges it.
        fire_timer(l, 3)?;
        match run(l, 3, Op::Load(crate::guests::ram(3)))? {
            Outcome::Done(_) => {}
            o => return Err(format!("VM 3: {o:x?}")),
        }
        if !guest(l, 3)?.vgic().holds(VTIMER_INTID) {
            return Err("VM 3 was not given its interrupt".into());
        }
        // VM 1's timer still reaches VM 1, and its calls are answered.
        fire_timer(l, 1)?;
        let got = ack(l, 1)?;
        if got != VTIMER_INTID as u64 {
            return Err(format!("VM 1 read INTID {got} while VM 3 holds one"));
        }
        handle_and_end(l, 1)?;
        let a = l.vm_call(1, [0x8400_0069, 0, 0, 0, 0, 0, 0, 0]);
        if a[0] != 0x8400_0061 || a[2] != 1 {
            return Err(format!("VM 1's FFA_ID_GET: {:#x?}", &a[..3]));
        }
        // VM 3's interrupt waited for it.
        let got = ack(l, 3)?;
        if got != VTIMER_INTID as u64 {
            return Err(format!("VM 3 later read INTID {got}"));
        }
        handle_and_end(l, 3)?;
        if gic::is_active(VTIMER_INTID) {
            return Err("INTID 27 left active".into());
        }
        Ok(())
    });
    r.check("rpi4-trusted-vm-timer-masked", || {
        // VM 1's trusted VM arms its (the core's) virtual timer to fire at
        // once and answers; nothing acknowledges an interrupt for it, so
        // it must not be stopped by one: its answer, then VM 1's next
        // request, come back.
        ok_status(l.req(1, ids::VTEE_TEMPLATE, cmd::IRQ_ARM, [0, 0, 0, 0]))?;
        ok_status(l.req(1, ids::VTEE_TEMPLATE, cmd::ECHO, [7, 0, 0, 0]))?;
        // And VM 1 itself got no interrupt of the trusted VM's timer.
        match ack(l, 1)? {
            1023 => Ok(()),
            got => Err(format!("VM 1 read INTID {got}")),
        }
    });
}

/// A direct response with status OK.
fn ok_status(a: [u64; 8]) -> Result<(), String> {
    // FFA_MSG_SEND_DIRECT_RESP_64, status in w3.
    if a[0] == test_protocol::ffa::MSG_SEND_DIRECT_RESP_64 && a[3] == test_protocol::status::OK {
        Ok(())
    } else {
        Err(format!("answer {:#x?}", &a[..4]))
    }
}
