//! Execution contexts (vCPUs): their saved registers, their states and how a
//! partition's exit to the SPMC is classified.
//!
//! [`Context`] is shared with the arch layer's world switch, which reads and
//! writes it at fixed offsets; the arch crate checks those offsets with const
//! assertions against `core::mem::offset_of!`.

use core::fmt;

use crate::ffa::PartitionId;

/// EL1 system registers a partition owns. The order is the order the arch
/// layer saves and restores them in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El1Regs {
    pub sctlr: u64,
    pub actlr: u64,
    pub cpacr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub esr: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub far: u64,
    pub mair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub tpidr_el1: u64,
    pub amair: u64,
    pub cntkctl: u64,
    pub par: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr: u64,
    pub spsr: u64,
    pub csselr: u64,
}

/// SCTLR_EL1 at reset for a partition: MMU and caches off, RES1 bits set.
pub const SCTLR_EL1_RESET: u64 =
    (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);
/// SPSR for the first entry: AArch64 EL1h with D, A, I and F masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// FP/SIMD registers (saved and restored lazily by the arch layer).
#[repr(C, align(16))]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct FpRegs {
    pub q: [u128; 32],
    pub fpsr: u64,
    pub fpcr: u64,
}

impl fmt::Debug for FpRegs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FpRegs {{ fpsr: {:#x}, fpcr: {:#x}, .. }}",
            self.fpsr, self.fpcr
        )
    }
}

/// What the arch layer reports about the last exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// Which vector: 0 synchronous, 1 IRQ, 2 FIQ, 3 SError.
    pub vector: u64,
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2.
    pub far: u64,
    /// HPFAR_EL2.
    pub hpfar: u64,
}

/// A vCPU's saved state.
#[repr(C, align(16))]
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// x0-x30.
    pub x: [u64; 31],
    /// Where it resumes (ELR_EL2).
    pub pc: u64,
    /// PSTATE it resumes with (SPSR_EL2).
    pub pstate: u64,
    /// VSTTBR_EL2 to run it with.
    pub vsttbr: u64,
    /// VTTBR_EL2 (with the VMID) to run it with.
    pub vttbr: u64,
    /// Filled in by the arch layer on every exit.
    pub exit: ExitInfo,
    /// EL1 system registers.
    pub el1: El1Regs,
    /// FP/SIMD registers.
    pub fp: FpRegs,
    /// Set while the vCPU initialises (boot, or an instance's creation; the
    /// runtime model for SP initialisation, DEN0077 v1.2 §8.3, which ends
    /// with FFA_MSG_WAIT): the platform then runs it with the normal world's
    /// interrupts masked at the interrupt controller (on the GICv3, the
    /// physical priority mask), so such an interrupt stays pending until the
    /// initialisation is done and the core returns to the normal world.
    /// Preempting instead would leave the core nothing to do but re-enter
    /// the initialisation with the level interrupt still pending, for ever.
    pub ns_interrupts_queued: bool,
    /// Stage-2 aborts injected at its EL1 since its last FF-A call
    /// ([`injection`]; reset where the call's exit is handled).
    pub injected_faults: u8,
    /// Its virtual GIC CPU interface state: the list registers the arch
    /// layer loads before it runs the vCPU and saves after (only once
    /// [`VirtualGic::live`] is set, so partitions without interrupts pay
    /// nothing).
    pub vgic: VirtualGic,
    /// Virtual interrupt lines the platform raises while the vCPU runs
    /// ([`VIRTUAL_IRQ`], [`VIRTUAL_FIQ`]; on aarch64 HCR_EL2.VI/VF): the
    /// managed-exit signal (`crate::ns_interrupts`). Lowered when the
    /// managed exit ends.
    pub virtual_lines: u8,
    /// A managed exit is signalled and not yet answered: 1 + the FF-A calls
    /// the vCPU made since (0: none). Bounded by
    /// `ns_interrupts::MANAGED_EXIT_CALLS`.
    pub managed_exit: u8,
    /// What the vCPU reads as MPIDR_EL1 (VMPIDR_EL2): bit 31 (RES1) and its
    /// index in Aff0, so that each execution context of an MP partition
    /// knows itself apart (OP-TEE indexes its per-core stacks by it). The
    /// same as Hafnium; see [`vmpidr`].
    pub vmpidr: u64,
}

/// The MPIDR_EL1 value execution context `index` of a partition reads: RES1
/// bit 31, U (bit 30) clear (a multiprocessor), MT clear, `index` in Aff0
/// (at most 256 contexts, DEN0077's execution-ctx-count is a u16 but our
/// partitions have one per core).
pub const fn vmpidr(index: u16) -> u64 {
    (1 << 31) | (index as u64 & 0xff)
}

/// Number of list registers the SPMC uses (GICv3 has at least 4;
/// ICH_VTR_EL2.ListRegs on QEMU virt says 4).
pub const LIST_REGISTERS: usize = 4;

/// Every list register of a vCPU is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRegistersFull;

/// A vCPU's virtual GIC CPU interface (GICv3, "Virtual interrupt
/// handling": ICH_LR<n>_EL2 and ICH_HCR_EL2), as plain data.
///
/// A virtual interrupt is delivered by writing a list register: the
/// partition then takes a virtual IRQ at EL1 when it unmasks IRQs, reads
/// the INTID from ICC_IAR1_EL1 and ends it with ICC_EOIR1_EL1 (both
/// trapped to the virtual interface, ICV_*, since HCR_EL2.IMO is set), its
/// own unmodified GIC code. For a hardware interrupt the list register is
/// linked to the physical INTID (HW bit), so the partition's end also
/// deactivates the physical interrupt: until then the GIC does not signal
/// it again (DEN0077 v1.2 §9.3's "the SP completes the handling").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtualGic {
    /// Images of ICH_LR<n>_EL2.
    pub lr: [u64; LIST_REGISTERS],
    /// Set once anything was injected: the arch layer switches the list
    /// registers for this vCPU from then on.
    pub live: bool,
    /// Raw virtual interrupt lines to assert when it next runs
    /// (HCR_EL2.VI bit 0 and VF bit 1 positions: [`VirtualGic::VIRQ`],
    /// [`VirtualGic::VFIQ`]), for signals without an INTID (managed exit
    /// may use them). The arch layer clears them once taken.
    pub lines: u8,
    /// ICH_VMCR_EL2: its virtual interface's control (group enables,
    /// priority mask, binary point), which it writes through ICC_* at EL1.
    pub vmcr: u64,
    /// ICH_AP1R0_EL2: its active Group 1 priorities.
    pub ap1r0: u64,
}

impl VirtualGic {
    /// ICH_LR State: pending.
    const STATE_PENDING: u64 = 1 << 62;
    /// ICH_LR State field (bits [63:62]).
    const STATE_MASK: u64 = 3 << 62;
    /// ICH_LR HW: linked to a physical interrupt.
    const HW: u64 = 1 << 61;
    /// ICH_LR Group: Group 1.
    const GROUP1: u64 = 1 << 60;
    /// The raw virtual IRQ line.
    pub const VIRQ: u8 = 1 << 0;
    /// The raw virtual FIQ line.
    pub const VFIQ: u8 = 1 << 1;

    /// Queues virtual interrupt `intid` (Group 1, priority `priority`),
    /// linked to physical interrupt `physical` if it is one, in a free
    /// list register. Queuing an INTID already in a list register changes
    /// nothing (the GIC never has one INTID in two). `Err` when every
    /// list register is in use.
    pub fn inject(
        &mut self,
        intid: u32,
        physical: Option<u32>,
        priority: u8,
    ) -> Result<(), ListRegistersFull> {
        if self.holds(intid) {
            return Ok(());
        }
        let free = self.lr.iter().position(|lr| lr & Self::STATE_MASK == 0);
        let Some(i) = free else {
            return Err(ListRegistersFull);
        };
        let mut lr = Self::STATE_PENDING | Self::GROUP1 | (priority as u64) << 48 | intid as u64;
        if let Some(p) = physical {
            lr |= Self::HW | ((p as u64) & 0x3FF) << 32;
        }
        self.lr[i] = lr;
        self.live = true;
        Ok(())
    }

    /// True if a list register holds `intid` (pending or active).
    pub fn holds(&self, intid: u32) -> bool {
        self.lr
            .iter()
            .any(|lr| lr & Self::STATE_MASK != 0 && *lr as u32 == intid)
    }

    /// The INTIDs in the list registers (pending or active).
    pub fn in_flight(&self) -> impl Iterator<Item = u32> + '_ {
        self.lr
            .iter()
            .filter(|lr| *lr & Self::STATE_MASK != 0)
            .map(|lr| *lr as u32)
    }

    /// True if a list register holds a virtual interrupt the vCPU has not
    /// taken yet (State pending, or pending and active). One test of the
    /// four registers together: the answer paths ask it on every answer of
    /// an interrupt owner (`crate::interrupts`, "Answers held back").
    #[inline(always)]
    pub fn has_pending(&self) -> bool {
        const _: () = assert!(LIST_REGISTERS == 4, "has_pending tests four");
        (self.lr[0] | self.lr[1] | self.lr[2] | self.lr[3]) & Self::STATE_PENDING != 0
    }

    /// The INTID of the highest-priority pending list register (the first
    /// of equal ones, as the arch layer's paravirtualised acknowledge
    /// picks it).
    pub fn pending_intid(&self) -> Option<u32> {
        self.lr
            .iter()
            .filter(|lr| *lr & Self::STATE_PENDING != 0)
            .min_by_key(|lr| (*lr >> 48) & 0xFF)
            .map(|lr| *lr as u32)
    }

    /// True if a list register holds `intid` pending (not taken yet).
    pub fn is_pending(&self, intid: u32) -> bool {
        self.lr
            .iter()
            .any(|lr| lr & Self::STATE_PENDING != 0 && *lr as u32 == intid)
    }

    /// Removes `intid` from the list registers (its owner is aborted).
    pub fn withdraw(&mut self, intid: u32) {
        for lr in self.lr.iter_mut() {
            if *lr & Self::STATE_MASK != 0 && *lr as u32 == intid {
                *lr = 0;
            }
        }
    }
}

/// [`Context::virtual_lines`]: a virtual IRQ is pending.
pub const VIRTUAL_IRQ: u8 = 1 << 0;
/// [`Context::virtual_lines`]: a virtual FIQ is pending.
pub const VIRTUAL_FIQ: u8 = 1 << 1;

impl Context {
    /// A context that starts at `pc` with everything else at reset values.
    pub fn new(pc: u64, vsttbr: u64, vttbr: u64) -> Self {
        Self {
            pc,
            pstate: SPSR_EL1H_MASKED,
            vsttbr,
            vttbr,
            el1: El1Regs {
                sctlr: SCTLR_EL1_RESET,
                ..El1Regs::default()
            },
            vmpidr: vmpidr(0),
            ..Self::default()
        }
    }
}

/// A reference to one vCPU: partition slot and vCPU index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuRef {
    /// Slot of the partition in the manager.
    pub slot: crate::ids::SlotId,
    /// vCPU index in the partition.
    pub index: u16,
}

/// Prints `slot:index` in hex, for log lines (the derived `Debug`'s
/// struct builder costs the release image more).
impl fmt::Display for VcpuRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slot = crate::text::Hex(self.slot.index() as u64);
        write!(f, "{slot}:{}", crate::text::hex(self.index))
    }
}

/// Why a vCPU is not running although it was (FF-A v1.2 §8.2 "preempted").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preemption {
    /// An interrupt for the normal world arrived; resume exactly where it was.
    Interrupt,
    /// It called FFA_YIELD; resume with FFA_SUCCESS as the result of that call.
    Yield,
}

/// Who a running vCPU owes a direct response to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A normal-world endpoint.
    NormalWorld {
        /// Its ID (the request's sender).
        id: PartitionId,
        /// The request was FFA_MSG_SEND_DIRECT_REQ2.
        req2: bool,
    },
    /// Another partition's vCPU, blocked until the response.
    Vcpu {
        /// The caller.
        vcpu: VcpuRef,
        /// Its ID.
        id: PartitionId,
        /// The request was FFA_MSG_SEND_DIRECT_REQ2.
        req2: bool,
    },
}

impl Caller {
    /// The endpoint ID a response must be addressed to.
    pub fn id(&self) -> PartitionId {
        match *self {
            Caller::NormalWorld { id, .. } | Caller::Vcpu { id, .. } => id,
        }
    }

    /// True if the request was REQ2 (so the response must be RESP2).
    pub fn req2(&self) -> bool {
        match *self {
            Caller::NormalWorld { req2, .. } | Caller::Vcpu { req2, .. } => req2,
        }
    }
}

/// Why a vCPU runs: what its next FFA_MSG_WAIT or FFA_MSG_SEND_DIRECT_RESP ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunReason {
    /// Its initialisation, until its first FFA_MSG_WAIT.
    Boot,
    /// A direct request it must answer.
    Request(Caller),
    /// The normal world gave it CPU cycles with FFA_RUN.
    Scheduled,
    /// The initialisation of an instance made for a VM (VM created message
    /// to the template `template_id`): its FFA_MSG_WAIT acknowledges the message.
    Create {
        /// The template's ID, the sender of the acknowledgement.
        template_id: PartitionId,
        /// The message was a 64-bit direct request: acknowledge with RESP_64.
        wide: bool,
    },
    /// A secure interrupt it owns arrived while the normal world ran
    /// (FFA_INTERRUPT from the SPMD, DEN0077 v1.2 §9.4): its FFA_MSG_WAIT
    /// ends the handling and the SPMC gives the core back to the normal
    /// world with FFA_NORMAL_WORLD_RESUME.
    SecureInterrupt,
    /// A power management framework message from the SPMC (DEN0077 v1.2
    /// §18.2) about this core, carrying the PSCI function `psci`: its
    /// framework direct response lets the SPMC go on to the next
    /// subscriber and then answer the SPMD.
    Power {
        /// The PSCI function it carries.
        op: PowerOp,
    },
}

impl RunReason {
    /// Its name, for log lines.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Boot => "boot",
            Self::Request(_) => "request",
            Self::Scheduled => "scheduled",
            Self::Create { .. } => "create",
            Self::SecureInterrupt => "secure interrupt",
            Self::Power { .. } => "power",
        }
    }
}

/// The PSCI function of a power management message (one byte, so that
/// [`RunReason`] and [`VcpuState`], which the message path copies, stay as
/// small as they were).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOp {
    /// PSCI CPU_OFF.
    CpuOff,
    /// PSCI CPU_SUSPEND (SMC32).
    CpuSuspend32,
    /// PSCI CPU_SUSPEND (SMC64).
    CpuSuspend64,
}

impl PowerOp {
    /// The message for PSCI function `f`, if the SPMC delivers it.
    pub fn from_psci(f: u32) -> Option<Self> {
        use crate::ffa::psci;
        match f {
            psci::CPU_OFF => Some(Self::CpuOff),
            psci::CPU_SUSPEND_32 => Some(Self::CpuSuspend32),
            psci::CPU_SUSPEND_64 => Some(Self::CpuSuspend64),
            _ => None,
        }
    }

    /// Its PSCI function ID.
    pub fn psci(self) -> u32 {
        use crate::ffa::psci;
        match self {
            Self::CpuOff => psci::CPU_OFF,
            Self::CpuSuspend32 => psci::CPU_SUSPEND_32,
            Self::CpuSuspend64 => psci::CPU_SUSPEND_64,
        }
    }
}

/// vCPU states (FF-A v1.2 §8.2, with the SPMC's own `Off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState {
    /// Never started, or its core was turned off (an MP partition's context
    /// after CPU_OFF; the core's next cold boot initialises it again).
    Off,
    /// In FFA_MSG_WAIT: ready for a message.
    Waiting,
    /// On a core, for `RunReason`.
    Running(RunReason),
    /// It sent a direct request (while handling `RunReason`) and waits for the answer.
    Blocked(RunReason),
    /// Stopped before it finished what it was doing.
    Preempted(RunReason, Preemption),
    /// Stopped for good: it faulted or its partition was aborted.
    Aborted,
}

impl VcpuState {
    /// Its name, for log lines.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Waiting => "waiting",
            Self::Running(_) => "running",
            Self::Blocked(_) => "blocked",
            Self::Preempted(_, Preemption::Interrupt) => "preempted by an interrupt",
            Self::Preempted(_, Preemption::Yield) => "preempted by a yield",
            Self::Aborted => "aborted",
        }
    }
}

/// Prints the state and what it runs for (`blocked (request)`), for log
/// lines: names written as they are, no struct builder.
impl fmt::Display for VcpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match *self {
            Self::Running(r) | Self::Blocked(r) | Self::Preempted(r, _) => {
                f.write_str(" (")?;
                f.write_str(r.name())?;
                f.write_str(")")
            }
            _ => Ok(()),
        }
    }
}

/// A transition the state machine does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IllegalTransition {
    /// From.
    pub from: VcpuState,
    /// To.
    pub to: VcpuState,
}

impl VcpuState {
    /// Checks that `self -> to` is a legal transition.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub fn can_become(self, to: VcpuState) -> bool {
        use VcpuState::*;
        match (self, to) {
            (_, Aborted) => self != Aborted,
            (Off, Running(RunReason::Boot | RunReason::Create { .. })) => true,
            (
                Waiting,
                Running(
                    RunReason::Request(_)
                    | RunReason::Scheduled
                    | RunReason::Power { .. }
                    | RunReason::SecureInterrupt,
                ),
            ) => true,
            // Its core goes off (CPU_OFF): what it was doing there is over.
            (Waiting | Preempted(..), Off) => true,
            (Running(_), Waiting) => true,
            (Running(r), Blocked(b)) => r == b,
            (Blocked(b), Running(r)) => r == b,
            (Running(r), Preempted(p, _)) => r == p,
            (Preempted(p, _), Running(r)) => r == p,
            _ => false,
        }
    }

    /// Moves to `to` if legal.
    #[inline(always)]
    #[cfg_attr(spmc_hot, optimize(speed))]
    pub fn become_(&mut self, to: VcpuState) -> Result<(), IllegalTransition> {
        if self.can_become(to) {
            *self = to;
            Ok(())
        } else {
            Err(IllegalTransition { from: *self, to })
        }
    }
}

/// A classified exit from a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// An FF-A call through SMC (trapped) or HVC: the function ID is in x0.
    Call {
        /// It was an SMC: resume after it (ELR points at the SMC itself).
        smc: bool,
    },
    /// A physical IRQ or FIQ arrived (for the normal world).
    Interrupt,
    /// A fault: a stage-2 abort goes to the partition's EL1 if it can take
    /// it ([`injection`]); anything else aborts it.
    Fault(Fault),
}

/// What went wrong, for the log line of an abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Stage-2 data abort (an access outside its memory).
    DataAbort {
        /// Faulting IPA (HPFAR_EL2 with FAR_EL2's page offset).
        ipa: u64,
        /// FAR_EL2.
        far: u64,
    },
    /// Stage-2 instruction abort (including a jump through an unmapped exception vector).
    InstructionAbort {
        /// Faulting IPA.
        ipa: u64,
    },
    /// An SError.
    SError,
    /// Any other exception class the SPMC does not handle.
    Other {
        /// ESR_EL2.
        esr: u64,
    },
}

/// Prints the fault and its addresses in hex, for the abort's log line.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, n, far) = match *self {
            Self::DataAbort { ipa, far } => ("data abort at IPA ", ipa, Some(far)),
            Self::InstructionAbort { ipa } => ("instruction abort at IPA ", ipa, None),
            Self::SError => return f.write_str("SError"),
            Self::Other { esr } => ("exception, ESR_EL2 ", esr, None),
        };
        write!(f, "{}{}", crate::text::Text(what), crate::text::Hex(n))?;
        match far {
            Some(far) => write!(f, " (FAR {})", crate::text::Hex(far)),
            None => Ok(()),
        }
    }
}

/// Injecting a stage-2 abort into the partition's own EL1 (as Hafnium does),
/// so that a partition with exception vectors handles its own faults.
///
/// A stage-2 data or instruction abort (an access to memory the partition
/// may not reach: outside its regions, a page it lent, donated or
/// relinquished) is taken as the Arm ARM's exception entry to EL1
/// (AArch64.TakeException, D1.3.2): ESR_EL1 gets the stage-2 syndrome with
/// the class re-encoded as a data or instruction abort from the same or a
/// lower EL, FAR_EL1 the faulting virtual address, ELR_EL1 and SPSR_EL1 the
/// PC and PSTATE of the fault, and the vCPU resumes at VBAR_EL1 + the
/// vector's offset in EL1h with D, A, I and F masked.
///
/// The partition is aborted instead when it cannot take the exception:
/// [`Refusal`] names the cases.
pub mod injection {
    use super::{Context, SPSR_EL1H_MASKED, ec};

    /// Faults injected with no FF-A call between: one more aborts.
    pub const MAX_REPEATED: u8 = 8;
    /// Size of the EL1 vector table (16 entries of 0x80 bytes).
    pub const VECTOR_TABLE_SIZE: u64 = 0x800;

    /// Why a fault is not injected.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Refusal {
        /// VBAR_EL1 is 0: no vector table installed yet.
        NoVectors,
        /// The fault's PC lies in the vector table: its handler's entry
        /// faults (or the table itself cannot be fetched).
        InVectors,
        /// The instruction whose fault was injected last (ELR_EL1 still
        /// names it) faulted again with no FF-A call between: its handler
        /// returned to it without curing the cause, or faults there itself.
        Repeated,
        /// [`MAX_REPEATED`] faults were injected with no FF-A call between.
        TooMany,
    }

    impl Refusal {
        /// Why, for the abort's log line.
        pub const fn name(self) -> &'static str {
            match self {
                Self::NoVectors => "no EL1 vectors",
                Self::InVectors => "fault in the EL1 vectors",
                Self::Repeated => "repeated fault",
                Self::TooMany => "too many faults",
            }
        }
    }

    /// Injects the stage-2 abort described by `ctx.exit` (class
    /// `ec::DABT_LOWER` or `ec::IABT_LOWER`) into `ctx`'s EL1, or says why not.
    /// `ctx.el1` must hold the vCPU's live EL1 registers
    /// (`Platform::vcpu_el1_to_context`).
    pub fn inject(ctx: &mut Context) -> Result<(), Refusal> {
        let vbar = ctx.el1.vbar;
        let pc = ctx.pc;
        if vbar == 0 {
            return Err(Refusal::NoVectors);
        }
        if pc.wrapping_sub(vbar) < VECTOR_TABLE_SIZE {
            return Err(Refusal::InVectors);
        }
        // ELR_EL1 still names the instruction whose fault was injected last:
        // the handler returned to it (or has not returned at all).
        if ctx.injected_faults > 0 && ctx.el1.elr == pc {
            return Err(Refusal::Repeated);
        }
        if ctx.injected_faults >= MAX_REPEATED {
            return Err(Refusal::TooMany);
        }
        let pstate = ctx.pstate;
        // SPSR.M[4] set: AArch32; else M[3:2] is the EL and M[0] the SP.
        let aarch32 = pstate & 0x10 != 0;
        let from_el1 = !aarch32 && (pstate >> 2) & 3 == 1;
        let offset = match (aarch32, from_el1, pstate & 1 != 0) {
            (true, _, _) => 0x600,
            (false, false, _) => 0x400,
            (false, true, true) => 0x200,
            (false, true, false) => 0x000,
        };
        let class = (ctx.exit.esr >> 26) & 0x3f;
        // D23.2.41: the same-EL classes are the lower-EL ones plus one.
        let new_class = class + u64::from(from_el1);
        debug_assert!(class == ec::DABT_LOWER || class == ec::IABT_LOWER);
        // Keep IL (bit 25) and the ISS, as Hafnium does.
        ctx.el1.esr = (new_class << 26) | (ctx.exit.esr & 0x03ff_ffff);
        ctx.el1.far = ctx.exit.far;
        ctx.el1.elr = pc;
        ctx.el1.spsr = pstate;
        ctx.pstate = SPSR_EL1H_MASKED;
        ctx.pc = vbar + offset;
        ctx.injected_faults += 1;
        Ok(())
    }
}

/// ESR_EL2 exception classes (Arm ARM D23.2.41).
pub mod ec {
    /// HVC from AArch64.
    pub const HVC64: u64 = 0x16;
    /// SMC from AArch64 (trapped by HCR_EL2.TSC).
    pub const SMC64: u64 = 0x17;
    /// Instruction abort from a lower EL.
    pub const IABT_LOWER: u64 = 0x20;
    /// Data abort from a lower EL.
    pub const DABT_LOWER: u64 = 0x24;
    /// Instruction abort without a change in EL (as injected at EL1).
    pub const IABT_SAME: u64 = 0x21;
    /// Data abort without a change in EL (as injected at EL1).
    pub const DABT_SAME: u64 = 0x25;
}

/// Classifies an exit from what the arch layer recorded.
#[inline(always)]
#[cfg_attr(spmc_hot, optimize(speed))]
pub fn classify(exit: &ExitInfo) -> Exit {
    // The common case first: an FF-A call through a trapped SMC.
    if exit.vector == 0 && exit.esr >> 26 == ec::SMC64 {
        return Exit::Call { smc: true };
    }
    match exit.vector {
        1 | 2 => return Exit::Interrupt,
        3 => return Exit::Fault(Fault::SError),
        _ => {}
    }
    let class = (exit.esr >> 26) & 0x3f;
    let ipa = ((exit.hpfar >> 4) << 12) | (exit.far & 0xfff);
    match class {
        ec::HVC64 => Exit::Call { smc: false },
        ec::SMC64 => Exit::Call { smc: true },
        ec::DABT_LOWER => Exit::Fault(Fault::DataAbort { ipa, far: exit.far }),
        ec::IABT_LOWER => Exit::Fault(Fault::InstructionAbort { ipa }),
        _ => Exit::Fault(Fault::Other { esr: exit.esr }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: RunReason = RunReason::Request(Caller::NormalWorld { id: 0, req2: false });

    #[test]
    fn legal_transitions() {
        let mut s = VcpuState::Off;
        s.become_(VcpuState::Running(RunReason::Boot)).unwrap();
        s.become_(VcpuState::Waiting).unwrap();
        s.become_(VcpuState::Running(REQ)).unwrap();
        s.become_(VcpuState::Blocked(REQ)).unwrap();
        s.become_(VcpuState::Running(REQ)).unwrap();
        s.become_(VcpuState::Preempted(REQ, Preemption::Interrupt))
            .unwrap();
        s.become_(VcpuState::Running(REQ)).unwrap();
        s.become_(VcpuState::Aborted).unwrap();
    }

    #[test]
    fn illegal_transitions() {
        let mut s = VcpuState::Off;
        assert!(s.become_(VcpuState::Waiting).is_err());
        s = VcpuState::Waiting;
        assert!(s.become_(VcpuState::Running(RunReason::Boot)).is_err());
        assert!(s.become_(VcpuState::Blocked(REQ)).is_err());
        s = VcpuState::Aborted;
        assert!(s.become_(VcpuState::Running(REQ)).is_err());
        assert!(s.become_(VcpuState::Aborted).is_err());
        s = VcpuState::Blocked(REQ);
        assert!(s.become_(VcpuState::Running(RunReason::Scheduled)).is_err());
    }

    #[test]
    fn exits_are_classified() {
        let e = |vector, esr| ExitInfo {
            vector,
            esr,
            far: 0x123,
            hpfar: 0x2000_0000 >> 8,
        };
        assert_eq!(classify(&e(0, ec::SMC64 << 26)), Exit::Call { smc: true });
        assert_eq!(classify(&e(0, ec::HVC64 << 26)), Exit::Call { smc: false });
        assert_eq!(classify(&e(1, 0)), Exit::Interrupt);
        assert_eq!(classify(&e(2, 0)), Exit::Interrupt);
        assert_eq!(
            classify(&e(0, ec::DABT_LOWER << 26)),
            Exit::Fault(Fault::DataAbort {
                ipa: 0x2000_0123,
                far: 0x123
            })
        );
        assert!(matches!(
            classify(&e(0, 0)),
            Exit::Fault(Fault::Other { .. })
        ));
        assert_eq!(classify(&e(3, 0)), Exit::Fault(Fault::SError));
    }
}
