//! FFA_FEATURES (DEN0077 v1.2 §13.3): which interfaces this SPMC implements,
//! as seen from each FF-A instance.
//!
//! The answer is SUCCESS only for what is really implemented for the calling
//! endpoint at its negotiated version; everything else is NOT_SUPPORTED.

use crate::ffa::{FfaError, Version, func};

/// Which FF-A instance a call arrives at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instance {
    /// The normal world, through the SPMD (physical FF-A instance).
    NormalWorld,
    /// A secure partition (secure virtual FF-A instance).
    Partition,
}

/// The interfaces implemented, with the FF-A version that introduced each,
/// the instances that may call it, and the properties FFA_FEATURES returns in w2.
struct Entry {
    func: u32,
    since: Version,
    nwd: bool,
    sp: bool,
    props: u32,
}

const fn e(func: u32, since: Version, nwd: bool, sp: bool) -> Entry {
    with_props(func, since, nwd, sp, 0)
}

const fn with_props(func: u32, since: Version, nwd: bool, sp: bool, props: u32) -> Entry {
    Entry {
        func,
        since,
        nwd,
        sp,
        props,
    }
}

/// FFA_FEATURES of the memory ABIs (DEN0077 v1.1 §13.3, DEN0140), bit 0: a
/// buffer the caller allocates (w3/w4) is supported. For FFA_MEM_SHARE, LEND
/// and DONATE the bit exists only up to v1.1: from v1.2 their w2-w7 are
/// reserved (MBZ), as the FF-A ACS checks (`ffa_features` test, v1.2 build);
/// see [`mem_send_properties`].
const MEM_BUFFER: u32 = 1 << 0;
/// Bit 1 for FFA_MEM_RETRIEVE_REQ: retrieve responses carry the NS bit (v1.1+).
/// As an input property from a v1.1+ caller it says the caller handles the NS
/// bit, which every v1.1+ partition must (see [`query`]).
const MEM_NS_BIT: u32 = 1 << 1;

const V10: Version = Version::V1_0;
const V11: Version = Version::V1_1;
const V12: Version = Version::V1_2;

/// The table of implemented interfaces. Kept in one place so that what
/// FFA_FEATURES reports and what the dispatcher handles cannot drift apart:
/// the dispatcher tests check every entry here is really served.
const IMPLEMENTED: &[Entry] = &[
    e(func::ERROR_32, V10, true, true),
    e(func::SUCCESS_32, V10, true, true),
    e(func::SUCCESS_64, V10, true, true),
    e(func::INTERRUPT_32, V10, true, true),
    e(func::VERSION, V10, true, true),
    e(func::FEATURES, V10, true, true),
    e(func::ID_GET, V10, true, true),
    e(func::SPM_ID_GET, V11, true, true),
    e(func::RXTX_MAP_32, V10, true, true),
    e(func::RXTX_MAP_64, V10, true, true),
    e(func::RXTX_UNMAP, V10, true, true),
    e(func::RX_RELEASE, V10, true, true),
    e(func::RX_ACQUIRE, V11, true, false),
    e(func::PARTITION_INFO_GET, V10, true, true),
    e(func::PARTITION_INFO_GET_REGS_64, V12, true, true),
    e(func::MSG_SEND_DIRECT_REQ_32, V10, true, true),
    e(func::MSG_SEND_DIRECT_REQ_64, V10, true, true),
    e(func::MSG_SEND_DIRECT_RESP_32, V10, false, true),
    e(func::MSG_SEND_DIRECT_RESP_64, V10, false, true),
    e(func::MSG_SEND_DIRECT_REQ2_64, V12, true, true),
    e(func::MSG_SEND_DIRECT_RESP2_64, V12, false, true),
    e(func::MSG_SEND2, V11, true, true),
    e(func::MSG_WAIT, V10, false, true),
    e(func::YIELD, V10, false, true),
    e(func::RUN, V10, true, false),
    // During a partition's initialisation only (spmc::multicore).
    e(func::SECONDARY_EP_REGISTER_32, V11, false, true),
    e(func::SECONDARY_EP_REGISTER_64, V11, false, true),
    e(func::CONSOLE_LOG_32, V12, false, true),
    e(func::CONSOLE_LOG_64, V12, false, true),
    // Memory management (DEN0140 v1.2; docs/memory-sharing.md). The
    // normal world borrows too (partitions share, lend and donate to it);
    // only FFA_MEM_RETRIEVE_RESP is an answer the SPMC gives, never takes.
    with_props(func::MEM_SHARE_32, V10, true, true, MEM_BUFFER),
    with_props(func::MEM_SHARE_64, V10, true, true, MEM_BUFFER),
    with_props(func::MEM_LEND_32, V10, true, true, MEM_BUFFER),
    with_props(func::MEM_LEND_64, V10, true, true, MEM_BUFFER),
    with_props(func::MEM_DONATE_32, V10, true, true, MEM_BUFFER),
    with_props(func::MEM_DONATE_64, V10, true, true, MEM_BUFFER),
    with_props(func::MEM_RETRIEVE_REQ_32, V10, true, true, MEM_BUFFER),
    with_props(func::MEM_RETRIEVE_REQ_64, V10, true, true, MEM_BUFFER),
    e(func::MEM_RETRIEVE_RESP, V10, false, true),
    e(func::MEM_RELINQUISH, V10, true, true),
    e(func::MEM_RECLAIM, V10, true, true),
    e(func::MEM_FRAG_RX, V10, true, true),
    e(func::MEM_FRAG_TX, V10, true, true),
    // Notifications (DEN0077 v1.2 chapter 10; spmc::notifications). The
    // bitmaps of VMs and INFO_GET are the normal world's; a partition's
    // bitmaps exist from its creation.
    e(func::NOTIFICATION_BITMAP_CREATE, V11, true, false),
    e(func::NOTIFICATION_BITMAP_DESTROY, V11, true, false),
    e(func::NOTIFICATION_BIND, V11, true, true),
    e(func::NOTIFICATION_UNBIND, V11, true, true),
    e(func::NOTIFICATION_SET, V11, true, true),
    e(func::NOTIFICATION_GET, V11, true, true),
    e(func::NOTIFICATION_INFO_GET_32, V11, true, false),
    e(func::NOTIFICATION_INFO_GET_64, V11, true, false),
];

/// Feature ID 2 (§13.3.2): the schedule receiver interrupt.
const FEATURE_SRI: u32 = 2;

/// FFA_FEATURES(FFA_RXTX_MAP) properties (§13.3.1.1): bits [1:0] the minimum
/// buffer size (0: 4 KiB); from v1.2, bits [31:16] the largest page count.
fn rxtx_map_properties(version: Version) -> u32 {
    if version >= V12 {
        (crate::abi::MAX_RXTX_PAGES as u32) << 16
    } else {
        0
    }
}

/// FFA_FEATURES(FFA_MEM_SHARE/LEND/DONATE) properties: bit 0 (a buffer the
/// caller allocates) up to v1.1; from v1.2 w2 is reserved (MBZ), the bit
/// having left the interface (Hafnium answers 0 at every version).
fn mem_send_properties(version: Version) -> u32 {
    if version >= V12 { 0 } else { MEM_BUFFER }
}

/// FFA_FEATURES for `id` (a function ID when bit 31 is set, else a feature ID)
/// with input properties `input`, asked by an endpoint at `instance` that
/// negotiated `version`. Returns the interface properties for w2.
///
/// The input properties (w2) mean something only for FFA_MEM_RETRIEVE_REQ
/// from a v1.1+ caller (bit 1: the caller handles the NS bit in retrieve
/// responses; bits [31:2] and bit 0 MBZ); for any other function ID, for
/// feature IDs and for a v1.0 caller (which has no input properties) w2 is
/// MBZ. A query with a reserved bit set is answered NOT_SUPPORTED, the only
/// error FFA_FEATURES defines (§13.3; Hafnium answers the same).
///
/// A v1.1+ caller that asks about FFA_MEM_RETRIEVE_REQ without bit 1 is
/// answered NOT_SUPPORTED: from v1.1 a partition must handle the NS bit
/// the SPMC sets in the retrieve response's memory attributes (DEN0077
/// v1.1+ §13.3, "Input properties" of FFA_MEM_RETRIEVE_REQ; the FF-A ACS
/// `ffa_features_nsbit` test requires the error, and Hafnium answers so).
pub fn query(instance: Instance, version: Version, id: u32, input: u32) -> Result<u32, FfaError> {
    if id & (1 << 31) == 0 {
        // Feature IDs (§13.3.2): bits [30:8] MBZ. The schedule receiver
        // interrupt's ID is reported to the normal world (v1.1+), the
        // number Hafnium uses; its delivery needs the GIC work of issue 12
        // item 1 (docs/notifications.md). The notification pending
        // interrupt (1) and the managed exit interrupt (3) are not offered:
        // partitions poll FFA_NOTIFICATION_GET.
        return match (id, instance) {
            (FEATURE_SRI, Instance::NormalWorld) if version >= V11 && input == 0 => {
                Ok(crate::notifications::SRI_INTID)
            }
            _ => Err(FfaError::NotSupported),
        };
    }
    let retrieve = matches!(id, func::MEM_RETRIEVE_REQ_32 | func::MEM_RETRIEVE_REQ_64);
    let input_mbz = if retrieve && version >= V11 {
        !MEM_NS_BIT
    } else {
        !0
    };
    if input & input_mbz != 0 {
        return Err(FfaError::NotSupported);
    }
    if retrieve && version >= V11 && input & MEM_NS_BIT == 0 {
        return Err(FfaError::NotSupported);
    }
    IMPLEMENTED
        .iter()
        .find(|entry| entry.func == id)
        .filter(|entry| version >= entry.since)
        .filter(|entry| match instance {
            Instance::NormalWorld => entry.nwd,
            Instance::Partition => entry.sp,
        })
        .map(|entry| match entry.func {
            func::RXTX_MAP_32 | func::RXTX_MAP_64 => rxtx_map_properties(version),
            func::MEM_RETRIEVE_REQ_32 | func::MEM_RETRIEVE_REQ_64 if version >= V11 => {
                entry.props | MEM_NS_BIT
            }
            func::MEM_SHARE_32
            | func::MEM_SHARE_64
            | func::MEM_LEND_32
            | func::MEM_LEND_64
            | func::MEM_DONATE_32
            | func::MEM_DONATE_64 => mem_send_properties(version),
            _ => entry.props,
        })
        .ok_or(FfaError::NotSupported)
}

/// All function IDs reported as implemented for `instance` at `version`
/// (asked with the input properties a caller at that version must give).
pub fn implemented(instance: Instance, version: Version) -> impl Iterator<Item = u32> {
    IMPLEMENTED
        .iter()
        .filter(move |entry| {
            let input = match entry.func {
                func::MEM_RETRIEVE_REQ_32 | func::MEM_RETRIEVE_REQ_64 if version >= V11 => {
                    MEM_NS_BIT
                }
                _ => 0,
            };
            query(instance, version, entry.func, input).is_ok()
        })
        .map(|entry| entry.func)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implemented_interfaces_succeed() {
        for f in [func::VERSION, func::FEATURES, func::ID_GET, func::ERROR_32] {
            assert_eq!(query(Instance::NormalWorld, V12, f, 0), Ok(0), "{f:#x}");
        }
    }

    #[test]
    fn unimplemented_and_unknown_are_not_supported() {
        for f in [func::MEM_PERM_GET_32, 0x8400_00FF, 0x1234_5678] {
            assert_eq!(
                query(Instance::NormalWorld, V12, f, 0),
                Err(FfaError::NotSupported)
            );
        }
    }

    #[test]
    fn instance_specific_interfaces() {
        assert_eq!(
            query(Instance::NormalWorld, V12, func::MSG_WAIT, 0),
            Err(FfaError::NotSupported)
        );
        assert_eq!(query(Instance::Partition, V12, func::MSG_WAIT, 0), Ok(0));
        assert_eq!(
            query(Instance::Partition, V12, func::RUN, 0),
            Err(FfaError::NotSupported)
        );
        assert_eq!(
            query(Instance::NormalWorld, V12, func::MSG_SEND_DIRECT_RESP_64, 0),
            Err(FfaError::NotSupported)
        );
        assert_eq!(
            query(Instance::NormalWorld, V11, func::MSG_SEND_DIRECT_REQ2_64, 0),
            Err(FfaError::NotSupported)
        );
    }

    #[test]
    fn rxtx_map_reports_largest_buffer_from_v1_2() {
        assert_eq!(
            query(Instance::NormalWorld, V12, func::RXTX_MAP_64, 0),
            Ok(16 << 16)
        );
        assert_eq!(
            query(Instance::NormalWorld, V11, func::RXTX_MAP_64, 0),
            Ok(0)
        );
    }

    #[test]
    fn memory_interfaces_per_instance() {
        // v1.2: w2 of the send ABIs is reserved (MBZ) at both instances.
        for instance in [Instance::NormalWorld, Instance::Partition] {
            for f in [
                func::MEM_SHARE_32,
                func::MEM_SHARE_64,
                func::MEM_LEND_32,
                func::MEM_LEND_64,
                func::MEM_DONATE_32,
                func::MEM_DONATE_64,
            ] {
                assert_eq!(query(instance, V12, f, 0), Ok(0), "{instance:?} {f:#x}");
                // Up to v1.1, bit 0: a buffer the caller allocates.
                assert_eq!(query(instance, V11, f, 0), Ok(1), "{instance:?} {f:#x}");
                assert_eq!(query(instance, V10, f, 0), Ok(1), "{instance:?} {f:#x}");
            }
        }
        assert_eq!(
            query(
                Instance::Partition,
                V12,
                func::MEM_RETRIEVE_REQ_64,
                MEM_NS_BIT
            ),
            Ok(0b11)
        );
        assert_eq!(
            query(Instance::Partition, V10, func::MEM_RETRIEVE_REQ_32, 0),
            Ok(1)
        );
        assert_eq!(
            query(Instance::NormalWorld, V12, func::MEM_RECLAIM, 0),
            Ok(0)
        );
        // The normal world borrows too; it asks about the retrieve with
        // the NS-bit input as a partition does.
        for f in [func::MEM_RELINQUISH, func::MEM_FRAG_RX] {
            assert_eq!(query(Instance::NormalWorld, V12, f, 0), Ok(0), "{f:#x}");
        }
        assert_eq!(
            query(
                Instance::NormalWorld,
                V12,
                func::MEM_RETRIEVE_REQ_64,
                MEM_NS_BIT
            ),
            Ok(0b11)
        );
        assert_eq!(
            query(Instance::NormalWorld, V12, func::MEM_RETRIEVE_RESP, 0),
            Err(FfaError::NotSupported)
        );
    }

    #[test]
    fn feature_ids_but_the_sri_are_not_supported() {
        for feat in [0, 1, 3, 0x7FFF_FFFF] {
            assert_eq!(
                query(Instance::NormalWorld, V12, feat, 0),
                Err(FfaError::NotSupported)
            );
        }
        assert_eq!(query(Instance::NormalWorld, V12, 2, 0), Ok(8));
        assert_eq!(query(Instance::NormalWorld, V11, 2, 0), Ok(8));
        assert_eq!(
            query(Instance::NormalWorld, V10, 2, 0),
            Err(FfaError::NotSupported)
        );
        assert_eq!(
            query(Instance::NormalWorld, V12, 2, 1),
            Err(FfaError::NotSupported)
        );
        for feat in [1, 2, 3] {
            assert_eq!(
                query(Instance::Partition, V12, feat, 0),
                Err(FfaError::NotSupported)
            );
        }
    }

    #[test]
    fn notification_interfaces_per_instance() {
        use func::*;
        for f in [
            NOTIFICATION_BIND,
            NOTIFICATION_UNBIND,
            NOTIFICATION_SET,
            NOTIFICATION_GET,
        ] {
            for i in [Instance::NormalWorld, Instance::Partition] {
                assert_eq!(query(i, V12, f, 0), Ok(0), "{f:#x}");
                assert_eq!(query(i, V10, f, 0), Err(FfaError::NotSupported));
            }
        }
        for f in [
            NOTIFICATION_BITMAP_CREATE,
            NOTIFICATION_BITMAP_DESTROY,
            NOTIFICATION_INFO_GET_32,
            NOTIFICATION_INFO_GET_64,
        ] {
            assert_eq!(query(Instance::NormalWorld, V12, f, 0), Ok(0), "{f:#x}");
            assert_eq!(
                query(Instance::Partition, V12, f, 0),
                Err(FfaError::NotSupported)
            );
        }
    }

    #[test]
    fn retrieve_ns_bit_input_per_version() {
        let q = |v, input| query(Instance::Partition, v, func::MEM_RETRIEVE_REQ_64, input);
        // v1.1+: the caller must say it handles the NS bit.
        for v in [V11, V12] {
            assert_eq!(q(v, 0), Err(FfaError::NotSupported), "{v:?}");
            assert_eq!(q(v, MEM_NS_BIT), Ok(0b11), "{v:?}");
        }
        // v1.0 has no input properties: w2 is MBZ, the answer has no NS bit.
        assert_eq!(q(V10, 0), Ok(1));
        assert_eq!(q(V10, MEM_NS_BIT), Err(FfaError::NotSupported));
    }

    #[test]
    fn input_properties_are_mbz_except_the_retrieve_ns_bit() {
        let q = |id, input| query(Instance::Partition, V12, id, input);
        assert_eq!(q(func::MEM_RETRIEVE_REQ_64, 1 << 1), Ok(0b11));
        assert_eq!(q(func::MEM_RETRIEVE_REQ_32, 1 << 1), Ok(0b11));
        for input in [1, 1 << 2, 1 << 31] {
            assert_eq!(
                q(func::MEM_RETRIEVE_REQ_64, input),
                Err(FfaError::NotSupported)
            );
        }
        for id in [func::VERSION, func::RXTX_MAP_64, func::MSG_WAIT] {
            assert_eq!(q(id, 1 << 1), Err(FfaError::NotSupported), "{id:#x}");
        }
    }

    #[test]
    fn newer_interfaces_hidden_from_older_callers() {
        assert_eq!(
            query(Instance::NormalWorld, V10, func::SPM_ID_GET, 0),
            Err(FfaError::NotSupported)
        );
        assert_eq!(
            query(Instance::NormalWorld, V11, func::SPM_ID_GET, 0),
            Ok(0)
        );
    }
}
