//! Which memory may change hands, and over which memory the SPMC may keep an
//! address: the two questions every buffer and every transfer asks.
//!
//! The SPMC keeps physical addresses on an endpoint's behalf: its RX/TX
//! buffers (DEN0077 v1.2 §7.2.2, mapped by FFA_RXTX_MAP, §13.5) and a
//! caller-supplied buffer that a fragmented send (FFA_MEM_FRAG_TX) or a
//! fragmented retrieve response (FFA_MEM_FRAG_RX) goes on using between
//! calls. Such an address is only valid while its endpoint owns the page, so:
//!
//! - a buffer goes only over memory its endpoint owns exclusively
//!   ([`Spmc::owns_exclusively`]): not in any transaction, as owner or as
//!   borrower, not donated away; for a partition, pages of its own memory
//!   regions or memory donated to it. Anything else is `DENIED` (the
//!   ownership and access rules for buffers of §7.2.2; DEN0140 §1.5 for
//!   who owns what);
//! - a page that backs a live buffer ([`Spmc::pinned`]) cannot change
//!   hands: share, lend and donate are `DENIED` (DEN0140 §1.5: the sender
//!   must own the memory and have exclusive access to it). Relinquish,
//!   reclaim and a donation's retrieve move pages too; the rule above means
//!   none of them can meet a pinned page, and they check it (an SPMC bug if
//!   they do, logged as such).
//!
//! A pin ends with FFA_RXTX_UNMAP, the last fragment, the reclaim that
//! cancels a send in progress, or the endpoint's destruction.

use log::{debug, error};

use super::store::ChunkVec;
use super::{Buf, MemState, Run, overlaps_any};
use crate::addr::{PAGE_SIZE, Pa};
use crate::ffa::{FfaError, PartitionId};
use crate::manager::{Endpoint, Spmc};
use crate::partition::Buffers;
use crate::platform::Platform;

/// Physical memory in one security state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    /// Secure memory (else normal-world memory).
    pub secure: bool,
    /// First byte.
    pub pa: Pa,
    /// Bytes.
    pub len: u64,
}

impl PhysRange {
    /// Secure memory at `pa`.
    pub fn secure(pa: Pa, len: u64) -> Self {
        Self {
            secure: true,
            pa,
            len,
        }
    }

    /// Normal-world memory at `pa`.
    pub fn ns(pa: Pa, len: u64) -> Self {
        Self {
            secure: false,
            pa,
            len,
        }
    }

    fn end(&self) -> u64 {
        self.pa.0.saturating_add(self.len)
    }

    /// True if the two ranges share a byte (in the same security state).
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.secure == other.secure && self.pa.0 < other.end() && other.pa.0 < self.end()
    }

    fn of_run(secure: bool, r: &Run) -> Self {
        Self {
            secure,
            pa: Pa(r.pa),
            len: r.len(),
        }
    }
}

/// What keeps a page from changing hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// An endpoint's RX or TX buffer.
    Mailbox(PartitionId),
    /// The caller-supplied buffer of a fragmented send or retrieve response
    /// in flight, by handle.
    FragmentBuffer(u64),
}

/// Names what keeps the page, for log lines (no struct builder).
impl core::fmt::Display for Pin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Mailbox(id) => write!(f, "RX/TX of {}", crate::text::hex(id)),
            Self::FragmentBuffer(h) => write!(f, "fragment buffer of {}", crate::text::Hex(h)),
        }
    }
}

impl MemState {
    /// True if part of `r` belongs to a transaction: memory shared, lent or
    /// donated and not yet retrieved, whoever the owner and the borrowers.
    pub fn in_transaction(&self, r: &PhysRange) -> bool {
        self.transactions
            .iter()
            .filter(|t| t.secure == r.secure)
            .any(|t| {
                t.runs
                    .iter()
                    .any(|x| PhysRange::of_run(t.secure, x).overlaps(r))
            })
    }

    /// The partition that owns the page at `pa` because it was donated to
    /// it, if it ever was (donation records never overlap: a page donated on
    /// is recorded for its last owner alone, see `MemState::donations_with`).
    fn donee(&self, secure: bool, pa: u64) -> Option<PartitionId> {
        self.donation_at(secure, pa).map(|d| d.owner)
    }

    /// The caller-supplied buffers fragmented operations in flight hold.
    pub fn held_buffers(&self) -> impl Iterator<Item = (PhysRange, Pin)> + '_ {
        let held = |buf: Buf, handle: u64| match buf {
            Buf::Caller { pa, len, ns } => Some((
                PhysRange {
                    secure: !ns,
                    pa,
                    len,
                },
                Pin::FragmentBuffer(handle),
            )),
            Buf::Mailbox => None,
        };
        self.incoming
            .iter()
            .filter_map(move |m| held(m.buf, m.handle))
            .chain(
                self.outgoing
                    .iter()
                    .filter_map(move |o| held(o.buf, o.handle)),
            )
    }
}

impl<P: Platform> Spmc<P> {
    /// The first pin in `secure` memory whose range (`pa`, `len`) `hit`
    /// accepts: the RX/TX buffers of the endpoints of that security state,
    /// then the buffers fragmented operations in flight hold. Plain loops:
    /// this runs on every send, retrieve, relinquish and reclaim.
    fn pinned_where(&self, secure: bool, hit: &dyn Fn(u64, u64) -> bool) -> Option<Pin> {
        let mailbox = |b: &Option<Buffers>| {
            b.as_ref()
                .is_some_and(|b| hit(b.tx.0, b.size) || hit(b.rx.0, b.size))
        };
        if secure {
            for p in &self.partitions {
                if mailbox(&p.buffers) {
                    return Some(Pin::Mailbox(p.id().raw()));
                }
            }
        } else {
            for e in &self.nwd {
                if mailbox(&e.buffers) {
                    return Some(Pin::Mailbox(e.id));
                }
            }
        }
        self.mem
            .held_buffers()
            .find(|(h, _)| h.secure == secure && hit(h.pa.0, h.len))
            .map(|(_, pin)| pin)
    }

    /// What pins part of `r`, if anything: is it backing a live RX/TX buffer
    /// or a buffer held by a fragmented send or retrieve in flight?
    pub fn pinned(&self, r: &PhysRange) -> Option<Pin> {
        self.pinned_where(r.secure, &|pa, len| {
            r.overlaps(&PhysRange {
                secure: r.secure,
                pa: Pa(pa),
                len,
            })
        })
    }

    /// What pins part of the memory of `runs` (sorted by address, none
    /// overlapping, as a transaction's are), if anything: each pin is one
    /// binary search in the runs (the pins are few: two a mailbox).
    pub(crate) fn pinned_runs(&self, secure: bool, runs: &ChunkVec<Run>) -> Option<Pin> {
        self.pinned_where(secure, &|pa, len| overlaps_any(runs, pa, len))
    }

    /// Does `ep` own `r` exclusively? Not in any transaction (as owner or
    /// borrower); each page, if it was ever donated, last donated to `ep`;
    /// else for the normal world normal-world RAM, for a partition secure
    /// memory of its own memory regions (its image included). Access rights
    /// are the caller's to check, through the partition's stage 2.
    pub fn owns_exclusively(&self, ep: Endpoint, r: &PhysRange) -> bool {
        if r.len == 0
            || !r.len.is_multiple_of(PAGE_SIZE)
            || r.pa.0.checked_add(r.len).is_none()
            || self.mem.in_transaction(r)
        {
            return false;
        }
        let mut pages = (0..r.len / PAGE_SIZE).map(|i| r.pa.0 + i * PAGE_SIZE);
        match ep {
            // Normal-world RAM is the normal world's until donated to a partition.
            Endpoint::NormalWorld(_) => {
                !r.secure
                    && self.platform.is_ns_ram(r.pa, r.len)
                    && pages.all(|pa| self.mem.donee(false, pa).is_none())
            }
            Endpoint::Partition(s) => {
                let p = &self.partitions[s];
                r.secure
                    && pages.all(|pa| match self.mem.donee(true, pa) {
                        Some(owner) => owner == p.id().raw(),
                        None => p.memory.iter().any(|(_, a)| a.contains(Pa(pa), PAGE_SIZE)),
                    })
            }
        }
    }

    /// The rule for a buffer the SPMC is to keep for `ep` at `pa` (RX/TX, or
    /// a caller-supplied one): DENIED unless `ep` owns it exclusively.
    pub(crate) fn check_buffer_owned(&self, ep: Endpoint, r: PhysRange) -> Result<(), FfaError> {
        if self.owns_exclusively(ep, &r) {
            return Ok(());
        }
        debug!(
            "buffer {:?}+{:#x} of {:#x} is not its own alone",
            r.pa,
            r.len,
            self.id_of(ep)
        );
        Err(FfaError::Denied)
    }

    /// The rule for memory about to change hands: DENIED if a buffer pins
    /// part of it. `invariant` says the caller's own checks already make a
    /// pin impossible there, so that meeting one is an SPMC bug.
    pub(crate) fn check_unpinned(
        &self,
        secure: bool,
        runs: &ChunkVec<Run>,
        invariant: bool,
    ) -> Result<(), FfaError> {
        match self.pinned_runs(secure, runs) {
            None => Ok(()),
            Some(pin) if invariant => {
                error!("memory that changes hands backs a buffer ({pin})");
                Err(FfaError::Denied)
            }
            Some(pin) => {
                debug!("memory that backs a buffer ({pin:?}) cannot change hands");
                Err(FfaError::Denied)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::heapsort_by_key;
    use super::*;
    use alloc::vec::Vec;

    /// A pin meets sorted runs (one binary search) exactly when a linear
    /// search finds a run it overlaps.
    #[test]
    fn overlaps_any_matches_a_linear_search() {
        let mut runs: ChunkVec<Run> = ChunkVec::new();
        for (pa, pages) in [(0x1000, 1), (0x3000, 3), (0x8000, 1), (0xA000, 2)] {
            runs.try_push(Run {
                pa,
                pages,
                owner_ipa: pa,
                owner_access: crate::sp_manifest::Access::RWX,
            })
            .unwrap();
        }
        for a in (0..0xE000).step_by(0x1000) {
            for b in (a + 0x1000..=0xE000).step_by(0x1000) {
                let r = PhysRange::secure(Pa(a), b - a);
                let linear = runs.iter().any(|x| PhysRange::of_run(true, x).overlaps(&r));
                assert_eq!(overlaps_any(&runs, a, b - a), linear, "{r:?}");
            }
        }
        assert!(!overlaps_any(&ChunkVec::new(), 0, 0x1000));
    }

    #[test]
    fn heapsort_sorts() {
        for n in 0..40u64 {
            let mut v: Vec<(bool, u64)> = (0..n).map(|i| (i % 3 == 0, (i * 7919) % 31)).collect();
            let mut want = v.clone();
            want.sort();
            heapsort_by_key(&mut v, |x| *x);
            assert_eq!(v, want);
        }
    }
}
