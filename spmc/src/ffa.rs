//! FF-A register-level vocabulary: function IDs, error codes, versions, endpoint
//! IDs and the register block every call travels in.
//!
//! The constants are the function IDs of DEN0077 v1.2, chapter 13 onward
//! (Table 13.1 lists them), taken from the `arm-ffa` crate; docs/arm-ffa.md
//! lists what the SPMC still defines itself and why. Decoding on the hot path matches these raw values
//! directly instead of building a full `arm_ffa::Interface`, which costs about
//! 1,500 instructions per message at opt-level s.

use core::fmt;

/// Number of registers an FF-A call may use under SMCCC v1.2 (x0-x17).
pub const NUM_REGS: usize = 18;

/// The register block of one FF-A call or return: x0-x17.
///
/// The same type carries a request in and the answer out, so a handler that
/// writes the answer in place never copies the block.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs(pub [u64; NUM_REGS]);

impl Regs {
    /// A block with `w0 = func` and every other register zero.
    pub const fn with_func(func: u32) -> Self {
        let mut r = [0; NUM_REGS];
        r[0] = func as u64;
        Self(r)
    }

    /// Builds a block from the first registers; the rest are zero.
    pub fn from_slice(values: &[u64]) -> Self {
        let mut r = Self::default();
        let n = values.len().min(NUM_REGS);
        r.0[..n].copy_from_slice(&values[..n]);
        r
    }

    /// The function ID in w0.
    #[inline]
    pub fn func(&self) -> u32 {
        self.0[0] as u32
    }

    /// The low 32 bits of register `n`.
    #[inline]
    pub fn w(&self, n: usize) -> u32 {
        self.0[n] as u32
    }

    /// Register `n`.
    #[inline]
    pub fn x(&self, n: usize) -> u64 {
        self.0[n]
    }

    /// FFA_SUCCESS (32-bit) with `w2 = arg2` and all else zero.
    pub fn success32(arg2: u32) -> Self {
        let mut r = Self::with_func(func::SUCCESS_32);
        r.0[2] = arg2 as u64;
        r
    }

    /// FFA_ERROR with the given code in w2 (DEN0077 v1.2 §13.1, Table 13.2).
    pub fn error(code: FfaError) -> Self {
        let mut r = Self::with_func(func::ERROR_32);
        r.0[2] = code.as_u32() as u64;
        r
    }

    /// Sets every register to zero from `from` on.
    pub fn clear_from(&mut self, from: usize) {
        for v in &mut self.0[from..] {
            *v = 0;
        }
    }

    /// The FF-A error code this block carries, if it is an FFA_ERROR.
    pub fn error_code(&self) -> Option<i32> {
        (self.func() == func::ERROR_32 || self.func() == func::ERROR_64).then(|| self.w(2) as i32)
    }
}

impl fmt::Debug for Regs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, v) in self.0.iter().enumerate().take(8) {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "x{i}={v:#x}")?;
        }
        write!(f, " ..]")
    }
}

/// FF-A function IDs (DEN0077 v1.2, Table 13.1 and the per-ABI sections).
///
/// The values come from `arm_ffa::FuncId` (one definition for the SPMC and
/// the test images); the names are the ones this crate has always matched
/// on, as plain `u32` constants so that the hot path compares raw registers
/// and never decodes through `arm_ffa::Interface`. `MSG_POLL` and `MSG_SEND`
/// (v1.0, deprecated from v1.1) are ours: arm-ffa does not name them
/// (docs/arm-ffa.md).
#[allow(missing_docs, reason = "the names are the spec's")]
pub mod func {
    use arm_ffa::FuncId;

    pub const ERROR_32: u32 = FuncId::Error32 as u32;
    pub const ERROR_64: u32 = FuncId::Error64 as u32;
    pub const SUCCESS_32: u32 = FuncId::Success32 as u32;
    pub const SUCCESS_64: u32 = FuncId::Success64 as u32;
    pub const INTERRUPT_32: u32 = FuncId::Interrupt32 as u32;
    pub const VERSION: u32 = FuncId::Version as u32;
    pub const FEATURES: u32 = FuncId::Features as u32;
    pub const RX_RELEASE: u32 = FuncId::RxRelease as u32;
    pub const RXTX_MAP_32: u32 = FuncId::RxTxMap32 as u32;
    pub const RXTX_MAP_64: u32 = FuncId::RxTxMap64 as u32;
    pub const RXTX_UNMAP: u32 = FuncId::RxTxUnmap as u32;
    pub const PARTITION_INFO_GET: u32 = FuncId::PartitionInfoGet as u32;
    pub const ID_GET: u32 = FuncId::IdGet as u32;
    /// FFA_MSG_POLL (v1.0 only): not in `arm_ffa::FuncId`.
    pub const MSG_POLL: u32 = 0x8400_006A;
    pub const MSG_WAIT: u32 = FuncId::MsgWait32 as u32;
    pub const YIELD: u32 = FuncId::Yield32 as u32;
    pub const RUN: u32 = FuncId::Run32 as u32;
    /// FFA_MSG_SEND (v1.0 only): not in `arm_ffa::FuncId`.
    pub const MSG_SEND: u32 = 0x8400_006E;
    pub const MSG_SEND_DIRECT_REQ_32: u32 = FuncId::MsgSendDirectReq32 as u32;
    pub const MSG_SEND_DIRECT_REQ_64: u32 = FuncId::MsgSendDirectReq64 as u32;
    pub const MSG_SEND_DIRECT_RESP_32: u32 = FuncId::MsgSendDirectResp32 as u32;
    pub const MSG_SEND_DIRECT_RESP_64: u32 = FuncId::MsgSendDirectResp64 as u32;
    pub const MEM_DONATE_32: u32 = FuncId::MemDonate32 as u32;
    pub const MEM_DONATE_64: u32 = FuncId::MemDonate64 as u32;
    pub const MEM_LEND_32: u32 = FuncId::MemLend32 as u32;
    pub const MEM_LEND_64: u32 = FuncId::MemLend64 as u32;
    pub const MEM_SHARE_32: u32 = FuncId::MemShare32 as u32;
    pub const MEM_SHARE_64: u32 = FuncId::MemShare64 as u32;
    pub const MEM_RETRIEVE_REQ_32: u32 = FuncId::MemRetrieveReq32 as u32;
    pub const MEM_RETRIEVE_REQ_64: u32 = FuncId::MemRetrieveReq64 as u32;
    pub const MEM_RETRIEVE_RESP: u32 = FuncId::MemRetrieveResp as u32;
    pub const MEM_RELINQUISH: u32 = FuncId::MemRelinquish as u32;
    pub const MEM_RECLAIM: u32 = FuncId::MemReclaim as u32;
    pub const MEM_FRAG_RX: u32 = FuncId::MemFragRx as u32;
    pub const MEM_FRAG_TX: u32 = FuncId::MemFragTx as u32;
    pub const NORMAL_WORLD_RESUME: u32 = FuncId::NormalWorldResume32 as u32;
    pub const NOTIFICATION_BITMAP_CREATE: u32 = FuncId::NotificationBitmapCreate as u32;
    pub const NOTIFICATION_BITMAP_DESTROY: u32 = FuncId::NotificationBitmapDestroy as u32;
    pub const NOTIFICATION_BIND: u32 = FuncId::NotificationBind as u32;
    pub const NOTIFICATION_UNBIND: u32 = FuncId::NotificationUnbind as u32;
    pub const NOTIFICATION_SET: u32 = FuncId::NotificationSet as u32;
    pub const NOTIFICATION_GET: u32 = FuncId::NotificationGet as u32;
    pub const NOTIFICATION_INFO_GET_32: u32 = FuncId::NotificationInfoGet32 as u32;
    pub const NOTIFICATION_INFO_GET_64: u32 = FuncId::NotificationInfoGet64 as u32;
    pub const RX_ACQUIRE: u32 = FuncId::RxAcquire as u32;
    pub const SPM_ID_GET: u32 = FuncId::SpmIdGet as u32;
    pub const MSG_SEND2: u32 = FuncId::MsgSend2 as u32;
    pub const SECONDARY_EP_REGISTER_32: u32 = FuncId::SecondaryEpRegister32 as u32;
    pub const SECONDARY_EP_REGISTER_64: u32 = FuncId::SecondaryEpRegister64 as u32;
    pub const MEM_PERM_GET_32: u32 = FuncId::MemPermGet32 as u32;
    pub const MEM_PERM_SET_32: u32 = FuncId::MemPermSet32 as u32;
    pub const CONSOLE_LOG_32: u32 = FuncId::ConsoleLog32 as u32;
    pub const CONSOLE_LOG_64: u32 = FuncId::ConsoleLog64 as u32;
    pub const PARTITION_INFO_GET_REGS_64: u32 = FuncId::PartitionInfoGetRegs as u32;
    pub const EL3_INTR_HANDLE: u32 = FuncId::El3IntrHandle as u32;
    pub const MSG_SEND_DIRECT_REQ2_64: u32 = FuncId::MsgSendDirectReq64_2 as u32;
    pub const MSG_SEND_DIRECT_RESP2_64: u32 = FuncId::MsgSendDirectResp64_2 as u32;

    /// True for a function ID in the FF-A range (SMCCC owner "standard secure
    /// service", functions 0x60-0xFF), 32- or 64-bit convention.
    pub const fn is_ffa(func: u32) -> bool {
        (func & !0x4000_0000) & 0xFFFF_FF00 == 0x8400_0000 && (func & 0xFF) >= 0x60
    }
}

/// FF-A error codes (DEN0077 v1.2, Table 13.2 / 13.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfaError {
    /// NOT_SUPPORTED (-1).
    NotSupported,
    /// INVALID_PARAMETERS (-2).
    InvalidParameters,
    /// NO_MEMORY (-3).
    NoMemory,
    /// BUSY (-4).
    Busy,
    /// INTERRUPTED (-5).
    Interrupted,
    /// DENIED (-6).
    Denied,
    /// RETRY (-7).
    Retry,
    /// ABORTED (-8).
    Aborted,
    /// NO_DATA (-9).
    NoData,
}

impl FfaError {
    /// The signed code of the spec (the values of `arm_ffa::FfaError`; the
    /// SPMC keeps its own enum for its `const` uses and its `Debug`, which
    /// costs no `thiserror` text in the image).
    pub const fn code(self) -> i32 {
        use arm_ffa::FfaError as E;
        (match self {
            Self::NotSupported => E::NotSupported,
            Self::InvalidParameters => E::InvalidParameters,
            Self::NoMemory => E::NoMemory,
            Self::Busy => E::Busy,
            Self::Interrupted => E::Interrupted,
            Self::Denied => E::Denied,
            Self::Retry => E::Retry,
            Self::Aborted => E::Aborted,
            Self::NoData => E::NoData,
        }) as i32
    }

    /// The code as it sits in a 32-bit register.
    pub const fn as_u32(self) -> u32 {
        self.code() as u32
    }
}

/// An FF-A version: major in bits [30:16], minor in bits [15:0] (§13.2.1).
///
/// The same encoding as `arm_ffa::Version` (the conversions below, and a test,
/// hold the two together). The SPMC keeps its own type because
/// `arm_ffa::Version`'s register conversions are not `const`, it has no
/// `Hash`, and `u32::from` asserts on bit 31 instead of answering `None`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u32);

impl Version {
    /// FF-A v1.0.
    pub const V1_0: Self = Self::new(1, 0);
    /// FF-A v1.1.
    pub const V1_1: Self = Self::new(1, 1);
    /// FF-A v1.2.
    pub const V1_2: Self = Self::new(1, 2);
    /// The highest version this SPMC implements.
    pub const IMPLEMENTED: Self = Self::V1_2;

    /// A version from its parts; `major` is truncated to 15 bits.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self((((major & 0x7FFF) as u32) << 16) | minor as u32)
    }

    /// Decodes a version register; `None` when bit 31 is set (it must be zero).
    pub const fn from_reg(value: u32) -> Option<Self> {
        if value & (1 << 31) != 0 {
            None
        } else {
            Some(Self(value))
        }
    }

    /// The major number.
    pub const fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The minor number.
    pub const fn minor(self) -> u16 {
        self.0 as u16
    }

    /// The register encoding.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl From<Version> for arm_ffa::Version {
    fn from(v: Version) -> Self {
        arm_ffa::Version(v.major(), v.minor())
    }
}

impl From<arm_ffa::Version> for Version {
    fn from(v: arm_ffa::Version) -> Self {
        Self::new(v.0, v.1)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Outcome of FFA_VERSION negotiation (DEN0077 v1.2 §13.2).
///
/// The callee answers with its own version when the caller's major version is
/// the same as its own; the version the two then speak is the lower of the
/// two. A different major, or bit 31 set, is answered with NOT_SUPPORTED.
pub fn negotiate(requested: u32) -> Result<Version, FfaError> {
    let requested = Version::from_reg(requested).ok_or(FfaError::NotSupported)?;
    if requested.major() != Version::IMPLEMENTED.major() {
        return Err(FfaError::NotSupported);
    }
    Ok(requested.min(Version::IMPLEMENTED))
}

/// An FF-A endpoint or partition ID (§5.1: 16 bits; bit 15 set means the secure world).
pub type PartitionId = u16;

/// The ID the SPMD uses as sender of its framework messages (TF-A `SPMD_DIRECT_MSG_ENDPOINT_ID`).
pub const SPMD_ID: PartitionId = 0xFFFF;

/// True when `id` names a secure-world endpoint (bit 15, §5.1).
pub const fn is_secure_id(id: PartitionId) -> bool {
    id & 0x8000 != 0
}

/// Sender ID in bits [31:16] of w1 of a message (§15.2 / §16.2).
#[inline]
pub fn sender(regs: &Regs) -> PartitionId {
    (regs.x(1) >> 16) as u16
}

/// Receiver ID in bits [15:0] of w1 of a message.
#[inline]
pub fn receiver(regs: &Regs) -> PartitionId {
    regs.x(1) as u16
}

/// w1 for a message from `src` to `dst`.
#[inline]
pub const fn endpoints(src: PartitionId, dst: PartitionId) -> u64 {
    ((src as u64) << 16) | dst as u64
}

/// Framework message encodings carried in w2 of a direct message (§18.3,
/// and TF-A's SPMD for the version request).
pub mod fwk {
    /// Bit 31 of w2 marks a framework message.
    pub const FLAG: u32 = 1 << 31;
    /// Mask of the message type in w2.
    pub const TYPE_MASK: u32 = 0xFF;
    /// Power management request that carries a PSCI function.
    pub const PSCI_REQ: u32 = 0;
    /// Power management warm boot request.
    pub const WARM_BOOT_REQ: u32 = 1;
    /// Power management response.
    pub const PSCI_RESP: u32 = 2;
    /// VM created (§18.3.2).
    pub const VM_CREATED: u32 = 4;
    /// VM created acknowledgement.
    pub const VM_CREATED_ACK: u32 = 5;
    /// VM destroyed.
    pub const VM_DESTROYED: u32 = 6;
    /// VM destroyed acknowledgement.
    pub const VM_DESTROYED_ACK: u32 = 7;
    /// SPMD: FFA_VERSION forwarded from the normal world.
    pub const VERSION_REQ: u32 = 8;
    /// SPMC: answer to a forwarded FFA_VERSION.
    pub const VERSION_RESP: u32 = 9;
}

/// PSCI function IDs that arrive in power management framework messages
/// (the values of the `smccc` crate's `psci` module).
pub mod psci {
    use smccc::psci as p;
    /// PSCI CPU_OFF.
    pub const CPU_OFF: u32 = p::PSCI_CPU_OFF;
    /// PSCI CPU_SUSPEND (SMC32).
    pub const CPU_SUSPEND_32: u32 = p::PSCI_CPU_SUSPEND_32;
    /// PSCI CPU_SUSPEND (SMC64).
    pub const CPU_SUSPEND_64: u32 = p::PSCI_CPU_SUSPEND_64;
    /// PSCI success.
    pub const SUCCESS: u32 = p::error::SUCCESS as u32;
    /// PSCI DENIED.
    pub const DENIED: u32 = p::error::DENIED as u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation_follows_13_2() {
        assert_eq!(negotiate(0x1_0002), Ok(Version::V1_2));
        assert_eq!(negotiate(0x1_0000), Ok(Version::V1_0));
        assert_eq!(negotiate(0x1_0001), Ok(Version::V1_1));
        // A newer minor is answered with ours; both then speak ours.
        assert_eq!(negotiate(0x1_0003), Ok(Version::V1_2));
        assert_eq!(negotiate(0x1_FFFF), Ok(Version::V1_2));
        assert_eq!(negotiate(0x2_0000), Err(FfaError::NotSupported));
        assert_eq!(negotiate(0x0_0009), Err(FfaError::NotSupported));
        assert_eq!(negotiate(0x8001_0002), Err(FfaError::NotSupported));
    }

    #[test]
    fn version_encoding_is_arm_ffas() {
        for v in [
            Version::V1_0,
            Version::V1_1,
            Version::V1_2,
            Version::new(0x7FFF, 9),
        ] {
            let theirs = arm_ffa::Version::from(v);
            assert_eq!(u32::from(theirs), v.bits());
            assert_eq!(arm_ffa::Version::try_from(v.bits()), Ok(theirs));
            assert_eq!(Version::from(theirs), v);
        }
        assert!(arm_ffa::Version::try_from(0x8001_0002).is_err());
        assert_eq!(Version::from_reg(0x8001_0002), None);
    }

    #[test]
    fn error_codes_are_arm_ffas() {
        use arm_ffa::FfaError as E;
        for (ours, theirs) in [
            (FfaError::NotSupported, E::NotSupported),
            (FfaError::InvalidParameters, E::InvalidParameters),
            (FfaError::NoMemory, E::NoMemory),
            (FfaError::Busy, E::Busy),
            (FfaError::Interrupted, E::Interrupted),
            (FfaError::Denied, E::Denied),
            (FfaError::Retry, E::Retry),
            (FfaError::Aborted, E::Aborted),
            (FfaError::NoData, E::NoData),
        ] {
            assert_eq!(ours.code(), i32::from(theirs));
            assert_eq!(E::try_from(ours.code()), Ok(theirs));
        }
    }

    #[test]
    fn ffa_range() {
        assert!(func::is_ffa(func::VERSION));
        assert!(func::is_ffa(func::MSG_SEND_DIRECT_REQ2_64));
        assert!(func::is_ffa(0x8400_00FF));
        assert!(!func::is_ffa(0x8400_0000)); // PSCI_VERSION
        assert!(!func::is_ffa(0x8400_005F));
        assert!(!func::is_ffa(0x8600_0060));
    }

    #[test]
    fn error_codes() {
        assert_eq!(Regs::error(FfaError::Denied).error_code(), Some(-6));
        assert_eq!(FfaError::NoData.as_u32(), 0xFFFF_FFF7);
        assert_eq!(Regs::success32(3).error_code(), None);
    }

    #[test]
    fn endpoint_fields() {
        let mut r = Regs::default();
        r.0[1] = endpoints(0x8001, 0x0003);
        assert_eq!(sender(&r), 0x8001);
        assert_eq!(receiver(&r), 0x0003);
        assert!(is_secure_id(0x8001));
        assert!(!is_secure_id(0x7FFF));
    }
}
