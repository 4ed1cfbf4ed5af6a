//! FF-A constants every test image uses (DEN0077 v1.2, Table 13.1 and the
//! per-ABI sections): function IDs as x0 values, error codes, versions and the
//! framework message types. Written here once for the harness, the test
//! partitions and the hypervisor; the SPMC keeps its own (`spmc::ffa`), so
//! that the tests do not take the implementation's word for the numbers.

#![allow(missing_docs, reason = "the names are the spec's")]

pub const ERROR_32: u64 = 0x8400_0060;
pub const SUCCESS_32: u64 = 0x8400_0061;
pub const SUCCESS_64: u64 = 0xC400_0061;
pub const INTERRUPT_32: u64 = 0x8400_0062;
pub const VERSION: u64 = 0x8400_0063;
pub const FEATURES: u64 = 0x8400_0064;
pub const RX_RELEASE: u64 = 0x8400_0065;
pub const RXTX_MAP_64: u64 = 0xC400_0066;
pub const RXTX_UNMAP: u64 = 0x8400_0067;
pub const PARTITION_INFO_GET: u64 = 0x8400_0068;
pub const ID_GET: u64 = 0x8400_0069;
pub const MSG_WAIT: u64 = 0x8400_006B;
pub const YIELD: u64 = 0x8400_006C;
pub const RUN: u64 = 0x8400_006D;
pub const MSG_SEND_DIRECT_REQ_32: u64 = 0x8400_006F;
pub const MSG_SEND_DIRECT_REQ_64: u64 = 0xC400_006F;
pub const MSG_SEND_DIRECT_RESP_32: u64 = 0x8400_0070;
pub const MSG_SEND_DIRECT_RESP_64: u64 = 0xC400_0070;
pub const MEM_SHARE_64: u64 = 0xC400_0073;
pub const NOTIFICATION_BITMAP_CREATE: u64 = 0x8400_007D;
pub const NOTIFICATION_BITMAP_DESTROY: u64 = 0x8400_007E;
pub const NOTIFICATION_BIND: u64 = 0x8400_007F;
pub const NOTIFICATION_UNBIND: u64 = 0x8400_0080;
pub const NOTIFICATION_SET: u64 = 0x8400_0081;
pub const NOTIFICATION_GET: u64 = 0x8400_0082;
pub const NOTIFICATION_INFO_GET_32: u64 = 0x8400_0083;
pub const NOTIFICATION_INFO_GET_64: u64 = 0xC400_0083;
pub const SPM_ID_GET: u64 = 0x8400_0085;
pub const MSG_SEND2: u64 = 0x8400_0086;
pub const CONSOLE_LOG_32: u64 = 0x8400_008A;
pub const CONSOLE_LOG_64: u64 = 0xC400_008A;
pub const PARTITION_INFO_GET_REGS_64: u64 = 0xC400_008B;
pub const MSG_SEND_DIRECT_REQ2_64: u64 = 0xC400_008D;
pub const MSG_SEND_DIRECT_RESP2_64: u64 = 0xC400_008E;

pub const NOT_SUPPORTED: i32 = -1;
pub const INVALID_PARAMETERS: i32 = -2;
pub const NO_MEMORY: i32 = -3;
pub const BUSY: i32 = -4;
pub const DENIED: i32 = -6;
pub const RETRY: i32 = -7;
pub const ABORTED: i32 = -8;
pub const NO_DATA: i32 = -9;

pub const V1_0: u32 = 0x1_0000;
pub const V1_1: u32 = 0x1_0001;
pub const V1_2: u32 = 0x1_0002;

/// Framework message bit of a direct request's w2, and the VM availability
/// message types (§18.3).
pub mod fwk {
    pub const FLAG: u32 = 1 << 31;
    pub const VM_CREATED: u32 = 4;
    pub const VM_CREATED_ACK: u32 = 5;
    pub const VM_DESTROYED: u32 = 6;
    pub const VM_DESTROYED_ACK: u32 = 7;
}
