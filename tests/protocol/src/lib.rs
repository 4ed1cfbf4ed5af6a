//! What the normal-world harness asks the test partitions to do.
//!
//! A request is an `FFA_MSG_SEND_DIRECT_REQ_64` (or `_32`, or `REQ2`) whose
//! first payload register carries a [`Cmd`] and the next ones its arguments.
//! For `REQ`/`RESP` (32 and 64 bit) the command is in x3 and arguments in
//! x4-x7; the response carries a [`status`] in x3 and results in x4-x7.
//! For `REQ2`/`RESP2` the command is in x4 and arguments in x5-x17; the
//! response has the status in x4 and results in x5-x17.
//!
//! One exception keeps the TPM CRB-over-FF-A client (Linux `tpm_crb_ffa`)
//! working unchanged: a request whose x4 is [`TPM_GET_INTERFACE_VERSION`]
//! (with x3 = 0) is answered the TPM way, x4 = [`TPM_OK`] and
//! x5 = [`TPM_INTERFACE_VERSION`], whatever the partition.

#![cfg_attr(not(test), no_std)]

pub mod ffa;
pub mod mem;
pub mod vm_checks;

/// Commands, in x3 (REQ) or x4 (REQ2).
#[allow(missing_docs, reason = "each variant documents itself below")]
pub mod cmd {
    /// Echo: results = arguments unchanged.
    pub const ECHO: u64 = 0x10;
    /// Add: result0 = arg0 + arg1 (wrapping).
    pub const ADD: u64 = 0x11;
    /// Who am I: result0 = FFA_ID_GET, result1 = FFA_VERSION(1.2) answer,
    /// result2 = FFA_SPM_ID_GET, result3 = vCPU index the partition was told (x4 of its boot).
    pub const WHOAMI: u64 = 0x12;
    /// Forward: send FFA_MSG_SEND_DIRECT_REQ_64 ECHO to partition arg0 with
    /// payload arg1, arg2; result0 = the receiver's x0 (function or error),
    /// result1 = its x2 (error code) or echoed arg1, result2 = echoed arg2.
    pub const FORWARD: u64 = 0x13;
    /// Read the 64-bit word at IPA arg0 (to provoke a stage-2 fault).
    pub const READ: u64 = 0x14;
    /// Write arg1 to the 64-bit word at IPA arg0.
    pub const WRITE: u64 = 0x15;
    /// Execute an undefined instruction.
    pub const UNDEF: u64 = 0x16;
    /// Put arg0 into FP register d8 (and v8 upper half = !arg0) and keep it.
    pub const FP_SET: u64 = 0x17;
    /// Read d8 and v8's upper half: result0 = d8, result1 = upper half.
    pub const FP_GET: u64 = 0x18;
    /// FFA_CONSOLE_LOG_64 of "test-sp <id>: hello <arg0>"; result0 = its w0, result1 = its w2.
    pub const CONSOLE: u64 = 0x19;
    /// FFA_CONSOLE_LOG_32 with char count arg0 (any value, to test errors):
    /// result0 = its w0, result1 = its w2.
    pub const CONSOLE_RAW: u64 = 0x1A;
    /// FFA_YIELD once, then answer: result0 = what FFA_YIELD returned in w0.
    pub const YIELD: u64 = 0x1B;
    /// FFA_PARTITION_INFO_GET with the nil UUID from the partition:
    /// result0 = w0, result1 = count (w2), result2 = descriptor size (w3),
    /// result3 = the first descriptor's ID (then the partition releases its RX).
    pub const PARTINFO: u64 = 0x1C;
    /// Send an indirect message (FFA_MSG_SEND2) of 8 bytes (arg1) to endpoint arg0,
    /// with FFA_MSG_SEND2 flags arg2 (bit 1: delay the schedule receiver
    /// interrupt): result0 = w0, result1 = w2.
    pub const SEND2: u64 = 0x1D;
    /// Last indirect message the partition received: result0 = sender, result1 = the
    /// first 8 payload bytes, result2 = size, result3 = messages received so far.
    pub const LAST_MSG: u64 = 0x1E;
    /// Boot information check: result0 = 1 if x0 at boot pointed at a valid FF-A boot
    /// info blob (signature 0x0FFA) with the partition manifest (FDT magic), else 0;
    /// result1 = the x0 value seen at boot,
    /// result2 = the manifest address its first descriptor names (0 if none),
    /// result3 = the partition's entry point (`_start`) as linked.
    pub const BOOTINFO: u64 = 0x1F;
    /// Call FFA_MSG_WAIT while still owing a response: result0 = its w0, result1 = its w2.
    pub const WAIT_IN_REQ: u64 = 0x20;
    /// Respond first to a wrong receiver (arg0), then properly: result0 = the w0 of the
    /// wrong response, result1 = its w2.
    pub const RESP_WRONG: u64 = 0x21;
    /// Call the function ID arg0 with x1 = arg1, x2 = arg2, x3 = arg3 and report
    /// result0 = w0, result1 = x2, result2 = x3 (lets the harness probe the
    /// secure virtual FF-A instance: FFA_FEATURES, FFA_RXTX_MAP and so on).
    pub const CALL: u64 = 0x22;
    /// A notification call (DEN0077 v1.2 chapter 10): function ID arg0
    /// (FFA_NOTIFICATION_BIND, UNBIND, SET or GET) with w1 = arg1, w2 =
    /// arg2 and the 64-bit notification bitmap arg3 split into w3 (low) and
    /// w4 (high). Reports result0 = w0, result1 = w2 | w3 << 32 (the error
    /// code, or GET's bitmap from partitions), result2 = w4 | w5 << 32
    /// (GET's bitmap from VMs), result3 = w6 (GET's SPM framework bitmap).
    pub const NOTIFY: u64 = 0x33;
    /// Drop to AArch32 at EL0 (ERET with SPSR_EL1.M = 0b10000, User mode) at
    /// the A32 address arg0, or, if arg0 is 0, at an A32 `udf #0` in the
    /// image. Never answers: the partition faults (a stage-2 abort taken
    /// straight from AArch32 EL0 when arg0 is unmapped at stage 2, or an
    /// undefined instruction that ends at the missing EL1 vectors) and the
    /// SPMC must abort it like any other faulting partition.
    pub const AARCH32: u64 = 0x2F;
    /// Key-value store of the per-user service: put arg1 under key arg0 (keys 0-15).
    pub const KV_PUT: u64 = 0x30;
    /// Key-value store: result0 = value under key arg0 (0 if never written).
    pub const KV_GET: u64 = 0x31;
    /// Monotonic counter: increment, result0 = new value.
    pub const COUNTER: u64 = 0x32;
    /// Busy for arg0 counter ticks (CNTVCT_EL0) with virtual IRQ and FIQ
    /// unmasked and EL1 vectors installed whose IRQ/FIQ entries answer a
    /// managed exit (DEN0077 v1.2 §9; docs/interrupts.md) as arg1 says
    /// ([`busy`]): the managed-exit response is a direct response with
    /// status [`super::status::MANAGED_EXIT`], result0 = 1 (vIRQ) or 2
    /// (vFIQ), result1 = the managed exits taken so far, result2 = the
    /// error code (w2) the SPMC gave a wrong response sent first (0: none).
    /// The next direct request (any) is the SMC's return: the loop goes on
    /// and the final answer goes to that request: status OK, result0 =
    /// managed exits taken, result1 = the kind of the last (1 vIRQ, 2 vFIQ),
    /// result2 = loop iterations, result3 = the error code of the wrong
    /// response (0: none). Vectors go and interrupts are masked again before
    /// it answers.
    pub const BUSY: u64 = 0x34;

    /// BUSY's arg1.
    pub mod busy {
        /// Answer a managed exit at once with the managed-exit response.
        pub const ANSWER: u64 = 0;
        /// First send a response to the wrong endpoint (ID 0x7FFF; the SPMC
        /// must refuse it), then the right one.
        pub const WRONG_FIRST: u64 = 1;
        /// Never answer: the handler returns with virtual interrupts masked
        /// and the loop makes an FFA_ID_GET call on each iteration (the
        /// SPMC's bound on an unanswered managed exit), at least 64 of
        /// them however long that takes.
        pub const NEVER: u64 = 2;
    }

    // Commands of the hostile stage (docs/hostile.md).

    /// A storm of calls (the hostile stage): call function arg0 arg1 times
    /// (at most 1,000,000) with x1 = arg2, the rest 0; after each answer that
    /// is FFA_SUCCESS, call arg3 if it is not 0 (for example FFA_RX_RELEASE
    /// after FFA_PARTITION_INFO_GET). result0 = how many answers had the
    /// first answer's w0 and w2, result1 = the first answer's w0, result2 =
    /// its w2, result3 = the last answer's w0.
    pub const STORM: u64 = 0x23;

    // Secure interrupts (docs/interrupts.md). The partition that owns the
    // EL1 virtual timer's PPI (27, sp1) arms the timer; its handler
    // acknowledges the virtual interrupt with ICC_IAR1_EL1, stops the
    // timer and ends it with ICC_EOIR1_EL1 (its own GIC code).

    /// Arm the EL1 virtual timer to fire in arg0 ticks (after enabling the
    /// partition's GIC CPU interface: PMR 0xFF, Group 1 on). With arg1 = 0
    /// answer at once (the interrupt arrives while it waits, or while the
    /// normal world runs); with arg1 = 1 poll ICC_IAR1_EL1 with IRQs
    /// masked, at most arg2 times, handling the interrupt there (it
    /// arrives while it runs); with arg1 = 2 wait with IRQs masked, for at
    /// most arg2 counter ticks, until a virtual IRQ is pending (ISR_EL1.I:
    /// the interrupt is in its list registers) and answer without taking
    /// it (result1 = 1 if it was pending). result0 = the INTID handled by
    /// the poll (0 if none), result1 = polls made, result2 = the virtual
    /// counter when the timer was armed, result3 = CNTV_CTL_EL0.
    pub const IRQ_ARM: u64 = 0x50;
    /// Interrupt statistics: result0 = interrupts handled in all, result1 =
    /// the last INTID handled, result2 = how many it was resumed for with
    /// FFA_INTERRUPT, result3 = the virtual counter when its handler last ran.
    pub const IRQ_STATUS: u64 = 0x51;
    /// arg0 = 1: from now on acknowledge interrupts but never end them (a
    /// partition that never ends an interrupt); arg0 = 0: end them again,
    /// and end those held (result0 = how many were held).
    pub const IRQ_HOLD: u64 = 0x52;
    /// Poll ICC_IAR1_EL1 once and handle what it returns (an interrupt that
    /// waited in the list registers): result0 = the INTID (0 if none).
    pub const IRQ_POLL: u64 = 0x53;
    /// The partition's mailbox: result0 = IPA of its TX page, result1 = IPA
    /// of its RX page (what it mapped at boot).
    pub const MAILBOX: u64 = 0x24;
    /// Map the RX/TX buffers elsewhere and back (the hostile stage):
    /// FFA_RXTX_UNMAP, then FFA_RXTX_MAP_64 with x1 = arg0, x2 = arg1, x3 =
    /// arg2; then, whatever that answered, FFA_RXTX_UNMAP if it succeeded and
    /// FFA_RXTX_MAP_64 of the partition's own pages again. result0 = the
    /// first unmap's w0, result1 = the hostile map's w0, result2 = its w2,
    /// result3 = the w0 of the final map of its own pages.
    pub const REMAP: u64 = 0x25;
    /// Handle a fault of its own (docs/architecture.md "Faults"): install
    /// EL1 exception vectors, read the 64-bit word at IPA arg0, remove the
    /// vectors. If an exception was taken (the SPMC injected a stage-2 abort
    /// at EL1) the handler skipped the load: result0 =
    /// [`crate::FAULT_HANDLED`], result1 = the ESR_EL1, result2 = the
    /// FAR_EL1 it saw; else result0 = the word read. With arg1 = 1 the
    /// handler reads that address again from inside the vector table (a
    /// fault in its handler: the SPMC aborts the partition).
    pub const FAULT: u64 = 0x26;

    // Memory sharing (docs/memory-sharing.md). Descriptors are written and
    // read with [`crate::mem`]. "Answer" below means `w0 | code << 32`:
    // the 32-bit function ID of the call's final answer and, if that is
    // FFA_ERROR, its error code (w2) in the upper half (else 0).

    /// Retrieve the memory of handle arg0 as a borrower
    /// (FFA_MEM_RETRIEVE_REQ), read the whole response (following
    /// FFA_MEM_FRAG_RX when it is fragmented, releasing RX before each
    /// fragment), release RX and keep what it read for MEM_INFO/MEM_RANGE.
    /// - arg1: the tag;
    /// - arg2: transaction flags (bits 31:0, e.g. type and zero flags), the
    ///   owner's ID (47:32), the permissions asked (55:48) and options
    ///   ([`retrieve`], 63:56);
    /// - arg3: the FF-A version to negotiate for the call (31:0; 0 keeps
    ///   1.2; the partition goes back to 1.2 after it), the EMAD size of
    ///   the request (39:32; 0: the version's), the buffer (47:40,
    ///   [`retrieve`] `BUF_*`), the memory region attributes to ask
    ///   (63:48; 0: normal write-back inner shareable, or none with
    ///   `NO_ATTRIBUTES`).
    ///
    /// result0 = the answer of the retrieve (or of the first FFA_MEM_FRAG_RX
    /// that failed); result1 = total length (w1) | first fragment length
    /// (w2) << 32; result2 = address of the first constituent; result3 =
    /// composite page count (31:0) | permissions granted in the caller's
    /// EMAD (39:32) | memory region attributes (55:40) | fragments read
    /// (63:56). Status [`crate::status::MALFORMED`] when the response cannot be
    /// read (results then hold what could be).
    pub const MEM_RETRIEVE: u64 = 0x40;
    /// About the last MEM_RETRIEVE response: result0 = handle; result1 =
    /// sender (15:0) | EMAD count (31:16) | EMAD size (47:32) | 1 if every
    /// reserved field (header, EMAD, composite, constituents read) is zero
    /// (bit 48); result2 = flags (31:0) | constituents read (63:32);
    /// result3 = tag.
    pub const MEM_INFO: u64 = 0x41;
    /// Constituent arg0 of the last MEM_RETRIEVE response: result0 =
    /// address, result1 = pages, result2 = sum of the pages of every
    /// constituent read, result3 = the composite's range count.
    /// BAD_ARG past the last constituent read.
    pub const MEM_RANGE: u64 = 0x42;
    /// Write arg1 bytes (a multiple of 8) from address arg0 with the 64-bit
    /// words arg2, arg2 + 1, ...: result0 = words written.
    pub const MEM_FILL: u64 = 0x43;
    /// Compare arg1 bytes from address arg0 with the words MEM_FILL(arg2)
    /// writes: result0 = words that differ, result1 = index of the first
    /// (u64::MAX if none), result2 = the word found there.
    pub const MEM_CHECK: u64 = 0x44;
    /// Sum the 64-bit words of arg1 bytes from address arg0 (wrapping):
    /// result0 = sum, result1 = how many words are not zero, result2 = the
    /// last word.
    pub const MEM_SUM: u64 = 0x45;
    /// FFA_MEM_RELINQUISH of handle arg0 with flags arg1, naming endpoint
    /// arg2 (0: the partition itself) in the descriptor: result0 = answer.
    pub const MEM_RELINQUISH: u64 = 0x46;
    /// Send the partition's own memory: one range of pages from IPA arg0.
    /// - arg1: pages (31:0) | tag (63:32);
    /// - arg2: up to three receivers (15:0, 31:16, 47:32; 0 = none), their
    ///   permissions (55:48), options ([`send`], 63:56);
    /// - arg3: transaction flags (31:0) | sender ID written in the
    ///   descriptor (47:32; 0: the partition itself) | layout (55:48,
    ///   [`send`] `LAYOUT_*`) | memory region attributes (63:56, [`send`]
    ///   `ATTRS_*`).
    ///
    /// result0 = answer; result1 = the handle (w2 | w3 << 32 of
    /// FFA_SUCCESS, or w1 | w2 << 32 of FFA_MEM_FRAG_RX); result2 = w3.
    pub const MEM_SEND: u64 = 0x47;
    /// One benchmark step: FFA_MEM_RETRIEVE_REQ_64 of handle arg0 from owner
    /// arg1 (read-write, transaction flags arg2, v1.2 layout, tag 0),
    /// FFA_RX_RELEASE, FFA_MEM_RELINQUISH. result0 = 0 if all three
    /// succeeded, else the answer of the first that did not.
    pub const MEM_CYCLE: u64 = 0x48;

    /// Seal a document a VM shares or lends (issue 18): retrieve handle
    /// arg0 from owner arg1 (read-write, v1.2 layout, flags 0), release RX,
    /// compute [`crate::seal`]`(arg3, words)` over the arg2 bytes (a
    /// multiple of 8) at the start of the first constituent, write it in
    /// the word right after them, relinquish. result0 = 0 if every step
    /// succeeded, else the answer (`w0 | code << 32`) of the first that did
    /// not; result1 = the seal; result2 = the address retrieved.
    pub const MEM_SEAL: u64 = 0x49;
    /// Give a VM a result in a buffer it donated (issue 18): retrieve the
    /// donation arg0 from owner arg1 (the VM; v1.2 layout, flags 0),
    /// release RX, compute [`crate::seal`]`(arg3, words)` over the arg2
    /// bits 15:0 bytes (a multiple of 8) at its start, write the seal in the
    /// word right after them, then send its first page back to the VM with
    /// arg2 bits 23:16 ([`send`] `SHARE` or `LEND`) and the permissions in
    /// arg2 bits 31:24 (0: read-only). result0 = 0 if every step
    /// succeeded, else the answer (`w0 | code << 32`) of the first that did
    /// not; result1 = the new handle; result2 = the seal; result3 = the
    /// address.
    pub const MEM_RESULT: u64 = 0x4A;

    /// Options of MEM_RETRIEVE (arg2 bits 63:56) and its buffers (arg3 bits 47:40).
    pub mod retrieve {
        /// Use FFA_MEM_RETRIEVE_REQ_32 (else _64).
        pub const SMC32: u64 = 1 << 0;
        /// Leave RX full after the first fragment: no FFA_RX_RELEASE, no
        /// FFA_MEM_FRAG_RX (to test BUSY; release later with CALL).
        pub const KEEP_RX: u64 = 1 << 1;
        /// Read only the first fragment (release RX, no FFA_MEM_FRAG_RX).
        pub const FIRST_FRAGMENT: u64 = 1 << 2;
        /// Memory region attributes 0 ("not specified") in the request.
        pub const NO_ATTRIBUTES: u64 = 1 << 3;
        /// The request's EMAD (32 bytes) carries [`crate::mem::IMPDEF`] as
        /// its implementation-defined value (else zero).
        pub const IMPDEF: u64 = 1 << 4;
        /// Declare (w1 = w2) 16 bytes more than the request (zeros after it).
        pub const LONGER: u64 = 1 << 5;
        /// The request and response travel in the TX and RX buffers.
        pub const BUF_MAILBOX: u64 = 0;
        /// In the partition's own page at `layout::RETRIEVE_BUF_IPA`
        /// (w3 = its address, w4 = 1 page).
        pub const BUF_OWN_PAGE: u64 = 1;
        /// The request is in TX but w3 names `layout::UNMAPPED_IPA` (w4 = 1):
        /// a buffer that is not the partition's.
        pub const BUF_NOT_OURS: u64 = 2;
    }

    /// Options of MEM_SEND (arg2 bits 63:56) and its layouts (arg3 bits 55:48).
    pub mod send {
        /// FFA_MEM_SHARE (bits 1:0 = 0).
        pub const SHARE: u64 = 0;
        /// FFA_MEM_LEND.
        pub const LEND: u64 = 1;
        /// FFA_MEM_DONATE.
        pub const DONATE: u64 = 2;
        /// Use the 32-bit function (bit 2).
        pub const SMC32: u64 = 1 << 2;
        /// The first receiver (arg2 bits 15:0) is a normal-world endpoint,
        /// 0 included (the OS or the hypervisor; else a VM ID), named
        /// first; without it a receiver 0 means "none" (bit 3).
        pub const NWD: u64 = 1 << 3;
        /// The v1.2 layout (48-byte header, 32-byte EMADs).
        pub const LAYOUT_V1_2: u64 = 0;
        /// The v1.0 layout (the partition negotiates 1.0 for the call).
        pub const LAYOUT_V1_0: u64 = 1;
        /// The v1.1 layout (the partition negotiates 1.1 for the call).
        pub const LAYOUT_V1_1: u64 = 2;
        /// The v1.1 layout with 16-byte EMADs, at version 1.2.
        pub const LAYOUT_V1_2_EMAD16: u64 = 3;
        /// Attributes as DEN0140 §1.10 asks of the sender: "not specified"
        /// for a donation or a lend to one borrower, normal write-back
        /// inner shareable otherwise ([`crate::mem::sender_attributes`]).
        pub const ATTRS_BY_OP: u64 = 0;
        /// Normal write-back inner shareable whatever the operation.
        pub const ATTRS_NORMAL: u64 = 1;
        /// Device-nGnRE.
        pub const ATTRS_DEVICE: u64 = 2;
        /// "Not specified" (0) whatever the operation.
        pub const ATTRS_NONE: u64 = 3;
    }
}

/// Status codes in x3 (RESP) or x4 (RESP2).
pub mod status {
    /// Done.
    pub const OK: u64 = 0;
    /// Unknown command.
    pub const UNKNOWN: u64 = 1;
    /// Bad argument.
    pub const BAD_ARG: u64 = 2;
    /// What the SPMC returned could not be read (a memory descriptor that
    /// does not parse).
    pub const MALFORMED: u64 = 3;
    /// A managed-exit response (cmd::BUSY).
    pub const MANAGED_EXIT: u64 = 4;
}

/// The seal of a document (cmd::MEM_SEAL): a keyed checksum of its 64-bit
/// words, which the TEE writes after them and the VM checks.
pub fn seal(key: u64, words: impl IntoIterator<Item = u64>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ key;
    for w in words {
        h = (h ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(17);
    }
    h
}

/// FAULT's result0 when the partition's own vectors handled the fault.
pub const FAULT_HANDLED: u64 = 0xFA17_4A4D;

/// TPM CRB over FF-A: "get interface version" function ID (in x4).
pub const TPM_GET_INTERFACE_VERSION: u64 = 0x0f00_0001;
/// TPM CRB over FF-A: success status.
pub const TPM_OK: u64 = 0x0500_0002;
/// TPM CRB over FF-A interface version 1.0 (major in bits [31:16]).
pub const TPM_INTERFACE_VERSION: u64 = 0x0001_0000;
/// The 8-byte indirect message the TPM exception has sp1 send (`cmd::SEND2`:
/// the TPM partition has no indirect messaging), before it answers, to a
/// normal-world requester that has notifications (its bitmap exists:
/// the partition's probe FFA_NOTIFICATION_SET of bit 63 is DENIED or
/// succeeds rather than INVALID_PARAMETERS), with the "delay SRI" flag: the
/// requester gets the RX-buffer-full framework notification and the
/// schedule receiver interrupt as the answer reaches it (the `linux`
/// stage's notification; docs/notifications.md).
pub const TPM_GREETING: u64 = 0x7E57_6EE7_1A65_0001;

/// Partition IDs of the test partitions in the QEMU image.
pub mod ids {
    /// First echo partition.
    pub const SP1: u16 = 0x8001;
    /// Second echo partition (two UUIDs, boot info, REQ2).
    pub const SP2: u16 = 0x8002;
    /// The TPM CRB-over-FF-A service partition.
    pub const TPM: u16 = 0x8003;
    /// Faults on a stage-2 data abort when asked.
    pub const CRASH_DATA: u16 = 0x8004;
    /// Faults on an undefined instruction when asked.
    pub const CRASH_UNDEF: u16 = 0x8005;
    /// Tries to read another partition's memory when asked.
    pub const CRASH_STEAL: u16 = 0x8006;
    /// The template of the per-VM trusted environments: a message to this ID
    /// from VM v reaches v's own instance.
    pub const VTEE_TEMPLATE: u16 = 0x8010;
    /// The first instance ID the SPMC hands out (the policy's `instance-ids`).
    pub const VTEE_FIRST_INSTANCE: u16 = 0x8100;
    /// How many instance IDs there are.
    pub const VTEE_INSTANCES: u16 = 64;
}

/// UUIDs of the test partitions as the four 32-bit words FF-A registers and
/// manifests use (little-endian words of the RFC byte string).
pub mod uuids {
    /// SP1: 0b7c5e3a-6d2e-4e8e-9f0a-1c2d3e4f5a61.
    pub const SP1: [u32; 4] = [0x3a5e_7c0b, 0x8e4e_2e6d, 0x2d1c_0a9f, 0x615a_4f3e];
    /// SP2 first UUID: 1c8d6f4b-7e3f-4f9f-a01b-2d3e4f5a6b72.
    pub const SP2: [u32; 4] = [0x4b6f_8d1c, 0x9f4f_3f7e, 0x3e2d_1ba0, 0x726b_5a4f];
    /// SP2 second UUID: 2d9e7a5c-8f40-4a0a-b12c-3e4f5a6b7c83.
    pub const SP2_B: [u32; 4] = [0x5c7a_9e2d, 0x0a4a_408f, 0x4f3e_2cb1, 0x837c_6b5a];
    /// TPM CRB over FF-A: 17b862a4-1806-4faf-86b3-089a58353861.
    pub const TPM: [u32; 4] = [0xa462_b817, 0xaf4f_0618, 0x9a08_b386, 0x6138_3558];
    /// The crash partitions share one UUID: 3eaf8b6d-9051-4b1b-c23d-4f5a6b7c8d94.
    pub const CRASH: [u32; 4] = [0x6d8b_af3e, 0x1b4b_5190, 0x5a4f_3dc2, 0x948d_7c6b];
    /// The vTEE template (and every instance): 4f5a6b7c-0a9f-4e8d-3e4f-5a6b9c0d1e2f.
    pub const VTEE: [u32; 4] = [0x7c6b_5a4f, 0x8d4e_9f0a, 0x6b5a_4f3e, 0x2f1e_0d9c];
}

/// Where the test partition image lives in every partition's IPA space.
pub mod layout {
    /// IPA of the image (and of its entry point).
    pub const IMAGE_IPA: u64 = 0x1000_0000;
    /// Largest image.
    pub const IMAGE_MAX: u64 = 0x4_0000;
    /// IPA of the read-write memory region (bss, stack, RX/TX buffers).
    pub const RAM_IPA: u64 = 0x1004_0000;
    /// Size of that region.
    pub const RAM_SIZE: u64 = 0x2_0000;
    /// An IPA no test partition has mapped.
    pub const UNMAPPED_IPA: u64 = 0x2000_0000;
    /// First page of the upper half of `ram`, which the image never touches
    /// (tests/test-sp/sp.ld): the pages a partition shares, lends or
    /// donates (15 of them, up to `RETRIEVE_BUF_IPA`).
    pub const SEND_IPA: u64 = 0x1005_0000;
    /// Number of pages from `SEND_IPA` that may be sent.
    pub const SEND_PAGES: u64 = 15;
    /// The last page of `ram`: the partition's own buffer for a retrieve
    /// request and its response (MEM_RETRIEVE with `BUF_OWN_PAGE`).
    pub const RETRIEVE_BUF_IPA: u64 = 0x1005_F000;
    /// sp2's read-only memory region (one page, its manifest's `ro`): memory
    /// it may share or lend read-only, never read-write.
    pub const RO_IPA: u64 = 0x1008_0000;
}
