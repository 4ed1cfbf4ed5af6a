//! FF-A calls from the normal world (through the SPMD) and their constants.

#![allow(dead_code, reason = "constants for checks that later issues add")]

pub const ERROR_32: u64 = 0x8400_0060;
pub const SUCCESS_32: u64 = 0x8400_0061;
pub const SUCCESS_64: u64 = 0xC400_0061;
pub const VERSION: u64 = 0x8400_0063;
pub const FEATURES: u64 = 0x8400_0064;
pub const RX_RELEASE: u64 = 0x8400_0065;
pub const RXTX_MAP_64: u64 = 0xC400_0066;
pub const RXTX_UNMAP: u64 = 0x8400_0067;
pub const PARTITION_INFO_GET: u64 = 0x8400_0068;
pub const ID_GET: u64 = 0x8400_0069;
pub const MSG_WAIT: u64 = 0x8400_006B;
pub const RUN: u64 = 0x8400_006D;
pub const MSG_SEND_DIRECT_REQ_32: u64 = 0x8400_006F;
pub const MSG_SEND_DIRECT_REQ_64: u64 = 0xC400_006F;
pub const MSG_SEND_DIRECT_RESP_32: u64 = 0x8400_0070;
pub const MSG_SEND_DIRECT_RESP_64: u64 = 0xC400_0070;
pub const MEM_SHARE_64: u64 = 0xC400_0073;
pub const NOTIFICATION_BITMAP_CREATE: u64 = 0x8400_007D;
pub const SPM_ID_GET: u64 = 0x8400_0085;
pub const MSG_SEND2: u64 = 0x8400_0086;
pub const CONSOLE_LOG_32: u64 = 0x8400_008A;
pub const PARTITION_INFO_GET_REGS_64: u64 = 0xC400_008B;
pub const MSG_SEND_DIRECT_REQ2_64: u64 = 0xC400_008D;

pub const NOT_SUPPORTED: i32 = -1;
pub const INVALID_PARAMETERS: i32 = -2;
pub const NO_MEMORY: i32 = -3;
pub const BUSY: i32 = -4;
pub const DENIED: i32 = -6;
pub const ABORTED: i32 = -8;

pub const V1_0: u32 = 0x1_0000;
pub const V1_1: u32 = 0x1_0001;
pub const V1_2: u32 = 0x1_0002;

/// Registers of one call.
pub type Regs = [u64; 18];

/// Makes a call with x0 = `func` and the given x1.. arguments.
pub fn call(func: u64, args: &[u64]) -> Regs {
    let mut r = [0u64; 18];
    r[0] = func;
    r[1..=args.len()].copy_from_slice(args);
    baremetal::smc(&mut r);
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

/// FFA_VERSION: returns w0.
pub fn version(v: u32) -> u32 {
    call(VERSION, &[v as u64])[0] as u32
}
