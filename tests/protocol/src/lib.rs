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

#![no_std]

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
    /// Send an indirect message (FFA_MSG_SEND2) of 8 bytes (arg1) to endpoint arg0:
    /// result0 = w0, result1 = w2.
    pub const SEND2: u64 = 0x1D;
    /// Last indirect message the partition received: result0 = sender, result1 = the
    /// first 8 payload bytes, result2 = size, result3 = messages received so far.
    pub const LAST_MSG: u64 = 0x1E;
    /// Boot information check: result0 = 1 if x0 at boot pointed at a valid FF-A boot
    /// info blob (signature 0x0FFA) with the partition manifest (FDT magic), else 0;
    /// result1 = the x0 value seen at boot.
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
    /// Key-value store of the per-user service: put arg1 under key arg0 (keys 0-15).
    pub const KV_PUT: u64 = 0x30;
    /// Key-value store: result0 = value under key arg0 (0 if never written).
    pub const KV_GET: u64 = 0x31;
    /// Monotonic counter: increment, result0 = new value.
    pub const COUNTER: u64 = 0x32;
}

/// Status codes in x3 (RESP) or x4 (RESP2).
pub mod status {
    /// Done.
    pub const OK: u64 = 0;
    /// Unknown command.
    pub const UNKNOWN: u64 = 1;
    /// Bad argument.
    pub const BAD_ARG: u64 = 2;
}

/// TPM CRB over FF-A: "get interface version" function ID (in x4).
pub const TPM_GET_INTERFACE_VERSION: u64 = 0x0f00_0001;
/// TPM CRB over FF-A: success status.
pub const TPM_OK: u64 = 0x0500_0002;
/// TPM CRB over FF-A interface version 1.0 (major in bits [31:16]).
pub const TPM_INTERFACE_VERSION: u64 = 0x0001_0000;

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
}
