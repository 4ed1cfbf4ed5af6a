//! Distinct types for the three small numbers the core passes around, so
//! that one cannot be given where another is meant:
//!
//! - [`SlotId`]: where the manager keeps a partition (an index into its
//!   partition table and into [`crate::contexts::Contexts`]), never seen by
//!   anyone outside the SPMC;
//! - [`PartId`]: a secure partition's FF-A endpoint ID (DEN0077 v1.2 §5.1,
//!   bit 15 set);
//! - [`VmId`]: a normal-world endpoint's FF-A ID (bit 15 clear: the OS or
//!   hypervisor is 0, a VM its own ID, §5.1 and §6.2).
//!
//! All three are `repr(transparent)` wrappers of `u16` (no cost on the
//! direct-message path). Registers and descriptors carry them as plain
//! 16-bit fields; the ABI edge decodes them (`ffa::sender`, the memory
//! descriptors) and encodes them back with [`PartId::raw`] / [`VmId::raw`].
//!
//! ```
//! use spmc::ids::{PartId, SlotId, VmId};
//! let (slot, id, vm) = (SlotId::new(1), PartId::new(0x8001), VmId::new(2));
//! assert_eq!((slot.index(), id.raw(), vm.raw()), (1, 0x8001, 2));
//! assert!(id == 0x8001u16 && vm == 2u16);
//! ```
//!
//! A slot is not a partition ID, nor a partition ID a VM ID:
//!
//! ```compile_fail,E0308
//! use spmc::ids::{PartId, SlotId};
//! let id: PartId = SlotId::new(1);
//! ```
//!
//! ```compile_fail,E0308
//! use spmc::ids::{PartId, VmId};
//! fn slot_of(_: PartId) {}
//! slot_of(VmId::new(2));
//! ```
//!
//! ```compile_fail,E0277
//! use spmc::ids::{PartId, SlotId};
//! let same = PartId::new(1) == SlotId::new(1);
//! ```

use core::fmt;

/// An ID prints as its number, and an endpoint ID also compares equal to
/// the raw 16-bit value a register or descriptor carries.
macro_rules! number_fmt {
    ($t:ident: $($tr:ident),+) => {
        $(impl fmt::$tr for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::$tr::fmt(&self.0, f)
            }
        })+
    };
}

macro_rules! endpoint_id_traits {
    ($t:ident) => {
        impl PartialEq<u16> for $t {
            #[inline(always)]
            fn eq(&self, other: &u16) -> bool {
                self.0 == *other
            }
        }
        number_fmt!($t: Debug, Display, LowerHex);
    };
}

/// The slot of a partition in the manager's table (and in the context
/// table): an index, not an ID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct SlotId(u16);

impl SlotId {
    /// Slot `n`.
    #[inline(always)]
    pub const fn new(n: u16) -> Self {
        Self(n)
    }

    /// The slot as an index into a table.
    #[inline(always)]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The slot number (for the context table's packed index entries).
    #[inline(always)]
    pub const fn raw(self) -> u16 {
        self.0
    }
}

number_fmt!(SlotId: Debug, Display);

/// A secure partition's endpoint ID (DEN0077 v1.2 §5.1: bit 15 set). It
/// compares equal to the raw 16-bit ID a register or descriptor carries
/// (`PartId == u16`), never to a [`SlotId`] or a [`VmId`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PartId(u16);

impl PartId {
    /// The partition with endpoint ID `id` (as decoded from a register or
    /// a manifest).
    #[inline(always)]
    pub const fn new(id: u16) -> Self {
        Self(id)
    }

    /// The ID as registers and descriptors carry it.
    #[inline(always)]
    pub const fn raw(self) -> u16 {
        self.0
    }
}

endpoint_id_traits!(PartId);

/// A normal-world endpoint's ID (DEN0077 v1.2 §5.1: bit 15 clear; 0 is the
/// hypervisor, or the OS without one). Compares equal to the raw 16-bit ID
/// (`VmId == u16`), never to a [`SlotId`] or a [`PartId`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VmId(u16);

impl VmId {
    /// The hypervisor (or the OS without one): endpoint 0.
    pub const HYPERVISOR: Self = Self(0);

    /// The normal-world endpoint `id`.
    #[inline(always)]
    pub const fn new(id: u16) -> Self {
        Self(id)
    }

    /// The ID as registers and descriptors carry it.
    #[inline(always)]
    pub const fn raw(self) -> u16 {
        self.0
    }
}

endpoint_id_traits!(VmId);
