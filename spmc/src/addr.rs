//! Address newtypes: a physical address can never be passed where an IPA is
//! meant, nor the other way round.

use core::fmt;

/// The FF-A page size (§5.2: memory is described in 4 KiB pages whatever the granule).
pub const PAGE_SIZE: u64 = 4096;

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pa(pub u64);

/// An intermediate physical address: what a partition sees as physical.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ipa(pub u64);

macro_rules! addr_common {
    ($t:ident, $name:literal) => {
        impl $t {
            /// The address plus `off`, or `None` on overflow.
            pub fn checked_add(self, off: u64) -> Option<Self> {
                self.0.checked_add(off).map(Self)
            }

            /// True if the address is 4 KiB aligned.
            pub fn is_page_aligned(self) -> bool {
                self.0.is_multiple_of(PAGE_SIZE)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, "({:#x})"), self.0)
            }
        }
    };
}

addr_common!(Pa, "Pa");
addr_common!(Ipa, "Ipa");

/// Which IPA space of a secure partition's stage 2 a mapping lives in
/// (Arm ARM D8.2 "Secure EL2": VSTTBR_EL2 translates the secure IPA space,
/// VTTBR_EL2 the non-secure one, selected by the stage-1 NS bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpaSpace {
    /// The secure IPA space (VSTTBR_EL2), output in secure PA space.
    Secure,
    /// The non-secure IPA space (VTTBR_EL2), output in non-secure PA space.
    NonSecure,
}

/// Bytes to whole pages, or `None` on overflow.
pub fn pages_to_bytes(pages: u64) -> Option<u64> {
    pages.checked_mul(PAGE_SIZE)
}

/// Rounds `len` up to whole pages.
pub fn round_up_pages(len: u64) -> Option<u64> {
    len.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
}
