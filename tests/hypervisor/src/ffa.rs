//! FF-A as the hypervisor speaks it: constants, its own calls to the SPMC
//! (endpoint 0: version, VM availability messages, requests on behalf of a
//! VM ID) and the proxy that handles a VM's trapped FF-A call.
//!
//! The proxy ([`vm_call`]) is the whole FF-A policy of the hypervisor:
//!
//! | the VM calls | the hypervisor |
//! |---|---|
//! | `FFA_VERSION` | answers itself (1.2) and remembers what the VM asked for |
//! | `FFA_ID_GET` | answers itself: the VM's own ID |
//! | `FFA_FEATURES` | answers for the calls below, NOT_SUPPORTED for the rest |
//! | `FFA_SPM_ID_GET` | forwards (the SPMD answers) |
//! | `FFA_MSG_SEND_DIRECT_REQ_32/64` | refuses framework messages (VM availability and the like: DENIED) and receivers that are not secure endpoints (DENIED); writes the VM's ID into w1\[31:16\], whatever the VM put there; forwards; resumes the partition with `FFA_RUN` itself if it yields or is interrupted |
//! | `FFA_MSG_SEND_DIRECT_REQ2_64` | the same, once the VM negotiated v1.2 (else NOT_SUPPORTED) |
//! | `FFA_PARTITION_INFO_GET_REGS` | writes the VM's ID into x7 (the SPMC's extension: discovery as that VM) and forwards |
//! | `FFA_PARTITION_INFO_GET` with flag bit 0 (the count alone: no RX buffer) | writes the VM's ID into w7 (the same extension) and forwards; without the flag NOT_SUPPORTED (VMs have no RX/TX buffers here) |
//! | any other FF-A call | FFA_ERROR(NOT_SUPPORTED), never forwarded |
//! | any other SMCCC call (PSCI included) | SMCCC NOT_SUPPORTED (-1) |
//!
//! Nothing a VM sends reaches the SPMC with another endpoint's ID.

use test_protocol::ids;

/// x0-x17 of one SMCCC v1.2 call.
pub type Regs = [u64; 18];

pub use test_protocol::ffa::*;

/// PSCI SYSTEM_OFF (a VM may not turn the machine off), `smccc`'s value.
pub const PSCI_SYSTEM_OFF: u64 = smccc::psci::PSCI_SYSTEM_OFF as u64;
/// SMCCC's NOT_SUPPORTED, in w0 (`smccc`'s value, as the 32-bit register holds it).
pub const SMCCC_NOT_SUPPORTED: u64 = smccc::arch::error::NOT_SUPPORTED as u32 as u64;

/// Makes a call through the SMC conduit (to the SPMD and the SPMC).
pub fn smc(r: &mut Regs) {
    baremetal::smc(r);
}

/// A call with x0 = `func` and the given x1.. arguments, from endpoint 0.
pub fn call(func: u64, args: &[u64]) -> Regs {
    let mut r = [0u64; 18];
    r[0] = func;
    r[1..=args.len()].copy_from_slice(args);
    smc(&mut r);
    r
}

/// The FF-A error code if `r` is FFA_ERROR, else 0 (which no error code is).
pub fn code(r: &Regs) -> i32 {
    if r[0] as u32 == ERROR_32 as u32 {
        r[2] as u32 as i32
    } else {
        0
    }
}

/// The response of a VM availability message (or the error it got).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// A well-formed acknowledgement with its status (0 or an FF-A error code).
    Status(i32),
    /// FFA_ERROR instead of an acknowledgement.
    Error(i32),
    /// Anything else: x0-x3 as they came.
    Malformed([u64; 4]),
}

impl Ack {
    /// True for an acknowledgement with status 0.
    pub fn ok(self) -> bool {
        self == Ack::Status(0)
    }

    /// The status or error code (Malformed: i32::MIN), for messages.
    pub fn code(self) -> i32 {
        match self {
            Ack::Status(c) | Ack::Error(c) => c,
            Ack::Malformed(_) => i32::MIN,
        }
    }
}

/// Sends a VM availability message for `vm` to the vTEE template, from
/// endpoint 0 (DEN0077 v1.2 §18.3: w3/w4 = no memory handle).
pub fn vm_availability(kind: u32, vm: u16) -> Regs {
    let mut r = [0u64; 18];
    r[0] = MSG_SEND_DIRECT_REQ_32;
    r[1] = ids::VTEE_TEMPLATE as u64;
    r[2] = (fwk::FLAG | kind) as u64;
    r[3] = 0xFFFF_FFFF;
    r[4] = 0xFFFF_FFFF;
    r[5] = vm as u64;
    smc(&mut r);
    r
}

/// Reads the acknowledgement of a VM availability message of kind `kind`.
pub fn ack(r: &Regs, kind: u32) -> Ack {
    let expect = (fwk::FLAG | (kind + 1)) as u64;
    if r[0] == MSG_SEND_DIRECT_RESP_32
        && r[1] as u32 == (ids::VTEE_TEMPLATE as u32) << 16
        && r[2] as u32 as u64 == expect
    {
        Ack::Status(r[3] as u32 as i32)
    } else if r[0] as u32 == ERROR_32 as u32 {
        Ack::Error(code(r))
    } else {
        Ack::Malformed([r[0], r[1], r[2], r[3]])
    }
}

/// VM created: the SPMC makes and boots `vm`'s TEE before it answers.
pub fn vm_created(vm: u16) -> Ack {
    ack(&vm_availability(fwk::VM_CREATED, vm), fwk::VM_CREATED)
}

/// VM destroyed: the SPMC stops `vm`'s TEE, zeroes and frees its memory.
pub fn vm_destroyed(vm: u16) -> Ack {
    ack(&vm_availability(fwk::VM_DESTROYED, vm), fwk::VM_DESTROYED)
}

/// A direct request (REQ_64) to `dst` as endpoint `sender`: the hypervisor
/// acting for a VM ID (with no VM behind it, for the scale checks), or for
/// itself (0). x3 = command, x4-x7 = arguments.
pub fn request_as(sender: u16, dst: u16, x3_x7: [u64; 5]) -> Regs {
    let mut r = [0u64; 18];
    r[0] = MSG_SEND_DIRECT_REQ_64;
    r[1] = (sender as u64) << 16 | dst as u64;
    r[3..8].copy_from_slice(&x3_x7);
    smc(&mut r);
    r
}

/// Writes an answer into x0-x7 (the rest of x1-x7 zero; x8-x17 untouched,
/// as SMCCC v1.2 asks of registers an answer does not use).
fn answer(r: &mut Regs, vals: &[u64]) {
    r[..8].fill(0);
    r[..vals.len()].copy_from_slice(vals);
}

fn error(r: &mut Regs, code: i32) {
    answer(r, &[ERROR_32, 0, code as u32 as u64]);
}

/// True for an FF-A function ID (SMC32 or SMC64).
fn is_ffa(f: u32) -> bool {
    (0x8400_0060..=0x8400_00FF).contains(&f) || (0xC400_0060..=0xC400_00FF).contains(&f)
}

/// The calls the hypervisor forwards to the SPMC for a VM.
fn forwarded(f: u32) -> bool {
    [
        SPM_ID_GET,
        MSG_SEND_DIRECT_REQ_32,
        MSG_SEND_DIRECT_REQ_64,
        MSG_SEND_DIRECT_REQ2_64,
        PARTITION_INFO_GET_REGS_64,
        PARTITION_INFO_GET,
    ]
    .iter()
    .any(|&g| g as u32 == f)
        || crate::share::handles(f as u64)
}

/// How many times the hypervisor resumes a partition that yielded or was
/// interrupted before it gives the VM that answer instead.
const MAX_RESUMES: u32 = 1000;

/// What the proxy keeps per VM.
#[derive(Clone, Copy, Debug, Default)]
pub struct VmFfa {
    /// The version the VM asked for with FFA_VERSION (0: never asked).
    pub version: u32,
    /// Calls forwarded to the SPMC for the VM (FFA_RUN resumptions included).
    pub forwarded: u64,
}

impl VmFfa {
    /// Forwards `r` to the SPMC for the VM.
    #[inline(always)]
    pub fn forward(&mut self, r: &mut Regs) {
        self.forwarded += 1;
        smc(r);
    }
}

/// Handles a VM's FF-A (or other SMCCC) call in `r` (its x0-x17) and leaves
/// the answer there. `vm` is the VM's endpoint ID. Returns false, leaving
/// `r` as it was, for the calls [`crate::share`] handles (they need the
/// VM's memory; the direct requests stay the first thing looked at).
#[inline(always)]
pub fn vm_call(vm: u16, state: &mut VmFfa, r: &mut Regs) -> bool {
    let f = r[0] as u32;
    match f as u64 {
        VERSION => {
            let asked = r[1] as u32;
            if asked & (1 << 31) != 0 || asked >> 16 != 1 {
                answer(r, &[SMCCC_NOT_SUPPORTED]);
            } else {
                state.version = asked.min(V1_2);
                answer(r, &[V1_2 as u64]);
            }
        }
        ID_GET => answer(r, &[SUCCESS_32, 0, vm as u64]),
        FEATURES => {
            let q = r[1] as u32;
            if [VERSION, ID_GET, FEATURES].iter().any(|&g| g as u32 == q) {
                answer(r, &[SUCCESS_32]);
            } else if forwarded(q) {
                state.forward(r);
            } else {
                error(r, NOT_SUPPORTED);
            }
        }
        SPM_ID_GET => state.forward(r),
        MSG_SEND_DIRECT_REQ_32 | MSG_SEND_DIRECT_REQ_64 => {
            if r[2] as u32 & fwk::FLAG != 0 {
                // VM availability and every other framework message are the
                // hypervisor's (and the SPMD's) business, never a VM's.
                error(r, DENIED);
            } else {
                direct_request(vm, state, r);
            }
        }
        MSG_SEND_DIRECT_REQ2_64 => {
            if state.version < V1_2 {
                error(r, NOT_SUPPORTED);
            } else {
                direct_request(vm, state, r);
            }
        }
        PARTITION_INFO_GET_REGS_64 => {
            r[7] = vm as u64;
            state.forward(r);
        }
        PARTITION_INFO_GET if r[5] as u32 == 1 => {
            r[7] = vm as u64;
            state.forward(r);
        }
        _ if crate::share::handles(f as u64) => return false,
        _ if is_ffa(f) => error(r, NOT_SUPPORTED),
        _ => answer(r, &[SMCCC_NOT_SUPPORTED]),
    }
    true
}

/// A VM's direct request: stamped with its ID and forwarded; the answer is
/// the partition's response (or an error), never FFA_YIELD/FFA_INTERRUPT.
fn direct_request(vm: u16, state: &mut VmFfa, r: &mut Regs) {
    let receiver = r[1] as u16;
    if receiver & 0x8000 == 0 {
        // Another VM or the hypervisor: there is no VM-to-VM messaging.
        error(r, DENIED);
        return;
    }
    r[1] = (vm as u64) << 16 | receiver as u64;
    state.forward(r);
    let mut resumes = 0;
    while (r[0] == YIELD || r[0] == INTERRUPT_32) && resumes < MAX_RESUMES {
        // w1 names the partition and vCPU to give CPU time to.
        let target = r[1] as u32 as u64;
        r[..8].copy_from_slice(&[RUN, target, 0, 0, 0, 0, 0, 0]);
        state.forward(r);
        resumes += 1;
    }
}
