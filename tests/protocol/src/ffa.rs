//! FF-A constants every test image uses (DEN0077 v1.2, Table 13.1 and the
//! per-ABI sections): function IDs as x0 values, error codes, versions and the
//! framework message types, in the one place the harness, the test
//! partitions and the hypervisor take them from. The values are the `arm-ffa`
//! crate's (`FuncId`, `FfaError`, `Version`), as the SPMC's (`spmc::ffa`)
//! are: the tests take the crate's word for the numbers, not the SPMC's. The
//! framework message types are ours: arm-ffa keeps them private
//! (docs/arm-ffa.md).

#![allow(missing_docs, reason = "the names are the spec's")]

use arm_ffa::FfaError as E;
use arm_ffa::FuncId as F;

/// The encoding of FFA_VERSION (bits [30:16] major, [15:0] minor), arm-ffa's.
const fn version(major: u16, minor: u16) -> u32 {
    // `u32::from(arm_ffa::Version)` is not `const`; the test below holds the
    // two together.
    ((major as u32) << 16) | minor as u32
}

pub const ERROR_32: u64 = F::Error32 as u64;
pub const SUCCESS_32: u64 = F::Success32 as u64;
pub const SUCCESS_64: u64 = F::Success64 as u64;
pub const INTERRUPT_32: u64 = F::Interrupt32 as u64;
pub const VERSION: u64 = F::Version as u64;
pub const FEATURES: u64 = F::Features as u64;
pub const RX_RELEASE: u64 = F::RxRelease as u64;
pub const RXTX_MAP_32: u64 = F::RxTxMap32 as u64;
pub const RXTX_MAP_64: u64 = F::RxTxMap64 as u64;
pub const RXTX_UNMAP: u64 = F::RxTxUnmap as u64;
pub const PARTITION_INFO_GET: u64 = F::PartitionInfoGet as u64;
pub const ID_GET: u64 = F::IdGet as u64;
/// FFA_MSG_POLL (v1.0 only): not in `arm_ffa::FuncId` (docs/arm-ffa.md).
pub const MSG_POLL: u64 = 0x8400_006A;
pub const MSG_WAIT: u64 = F::MsgWait32 as u64;
pub const YIELD: u64 = F::Yield32 as u64;
pub const RUN: u64 = F::Run32 as u64;
pub const MSG_SEND_DIRECT_REQ_32: u64 = F::MsgSendDirectReq32 as u64;
pub const MSG_SEND_DIRECT_REQ_64: u64 = F::MsgSendDirectReq64 as u64;
pub const MSG_SEND_DIRECT_RESP_32: u64 = F::MsgSendDirectResp32 as u64;
pub const MSG_SEND_DIRECT_RESP_64: u64 = F::MsgSendDirectResp64 as u64;
pub const MEM_SHARE_64: u64 = F::MemShare64 as u64;
pub const NOTIFICATION_BITMAP_CREATE: u64 = F::NotificationBitmapCreate as u64;
pub const NOTIFICATION_BITMAP_DESTROY: u64 = F::NotificationBitmapDestroy as u64;
pub const NOTIFICATION_BIND: u64 = F::NotificationBind as u64;
pub const NOTIFICATION_UNBIND: u64 = F::NotificationUnbind as u64;
pub const NOTIFICATION_SET: u64 = F::NotificationSet as u64;
pub const NOTIFICATION_GET: u64 = F::NotificationGet as u64;
pub const NOTIFICATION_INFO_GET_32: u64 = F::NotificationInfoGet32 as u64;
pub const NOTIFICATION_INFO_GET_64: u64 = F::NotificationInfoGet64 as u64;
/// PSCI CPU_ON (SMC64), `smccc`'s value: the harness turns cores on.
pub const PSCI_CPU_ON_64: u64 = smccc::psci::PSCI_CPU_ON_64 as u64;
pub const SECONDARY_EP_REGISTER_64: u64 = F::SecondaryEpRegister64 as u64;
pub const RX_ACQUIRE: u64 = F::RxAcquire as u64;
pub const SPM_ID_GET: u64 = F::SpmIdGet as u64;
pub const MSG_SEND2: u64 = F::MsgSend2 as u64;
pub const CONSOLE_LOG_32: u64 = F::ConsoleLog32 as u64;
pub const CONSOLE_LOG_64: u64 = F::ConsoleLog64 as u64;
pub const PARTITION_INFO_GET_REGS_64: u64 = F::PartitionInfoGetRegs as u64;
pub const MSG_SEND_DIRECT_REQ2_64: u64 = F::MsgSendDirectReq64_2 as u64;
pub const MSG_SEND_DIRECT_RESP2_64: u64 = F::MsgSendDirectResp64_2 as u64;

pub const NOT_SUPPORTED: i32 = E::NotSupported as i32;
pub const INVALID_PARAMETERS: i32 = E::InvalidParameters as i32;
pub const NO_MEMORY: i32 = E::NoMemory as i32;
pub const BUSY: i32 = E::Busy as i32;
pub const DENIED: i32 = E::Denied as i32;
pub const RETRY: i32 = E::Retry as i32;
pub const ABORTED: i32 = E::Aborted as i32;
pub const NO_DATA: i32 = E::NoData as i32;

pub const V1_0: u32 = version(1, 0);
pub const V1_1: u32 = version(1, 1);
pub const V1_2: u32 = version(1, 2);

/// Framework message bit of a direct request's w2, and the VM availability
/// message types (§18.3).
pub mod fwk {
    pub const FLAG: u32 = 1 << 31;
    pub const VM_CREATED: u32 = 4;
    pub const VM_CREATED_ACK: u32 = 5;
    pub const VM_DESTROYED: u32 = 6;
    pub const VM_DESTROYED_ACK: u32 = 7;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_arm_ffas() {
        for (ours, (major, minor)) in [(V1_0, (1, 0)), (V1_1, (1, 1)), (V1_2, (1, 2))] {
            assert_eq!(ours, u32::from(arm_ffa::Version(major, minor)));
        }
    }
}
