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

use alloc::vec::Vec;

use log::{debug, error};

use super::store::ChunkVec;
use super::{Buf, MemState, Run};
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

fn mailbox(b: &Buffers, secure: bool) -> [PhysRange; 2] {
    [
        PhysRange {
            secure,
            pa: b.tx,
            len: b.size,
        },
        PhysRange {
            secure,
            pa: b.rx,
            len: b.size,
        },
    ]
}

/// Up to this many runs are checked against every pin without an index.
const LINEAR_RUNS: usize = 16;

/// Sorts `v` in place ([`super::store::heapsort_by_key`]).
fn heapsort<T: Ord + Copy>(v: &mut [T]) {
    super::store::heapsort_by_key(v, |x| *x);
}

/// The pinned ranges of one moment, sorted, to test many runs at once.
struct PinIndex {
    /// (secure, start, end, largest end up to here in the same security state).
    entries: Vec<(bool, u64, u64, u64)>,
}

impl PinIndex {
    /// The index of `entries` (secure, start, end, end): sorted, with the
    /// running maximum of the ends in the last field.
    fn new(mut entries: Vec<(bool, u64, u64, u64)>) -> Self {
        heapsort(&mut entries);
        for i in 1..entries.len() {
            if entries[i].0 == entries[i - 1].0 {
                entries[i].3 = entries[i].3.max(entries[i - 1].3);
            }
        }
        Self { entries }
    }

    fn covers(&self, r: &PhysRange) -> bool {
        // Entries that start before r ends; the running maximum of their
        // ends says whether any reaches into r.
        let i = self
            .entries
            .partition_point(|e| (e.0, e.1) < (r.secure, r.end()));
        i > 0 && {
            let e = self.entries[i - 1];
            e.0 == r.secure && e.3 > r.pa.0
        }
    }
}

impl<P: Platform> Spmc<P> {
    /// Every range the SPMC keeps an address in, with what pins it: the
    /// RX/TX buffers of every partition and normal-world endpoint, and the
    /// buffers fragmented operations in flight hold.
    fn pins(&self) -> impl Iterator<Item = (PhysRange, Pin)> + '_ {
        let partitions = self.partitions.iter().flat_map(|p| {
            p.buffers
                .iter()
                .flat_map(move |b| mailbox(b, true).map(|r| (r, Pin::Mailbox(p.id().raw()))))
        });
        let normal_world = self.nwd.iter().flat_map(|e| {
            e.buffers
                .iter()
                .flat_map(move |b| mailbox(b, false).map(|r| (r, Pin::Mailbox(e.id))))
        });
        partitions
            .chain(normal_world)
            .chain(self.mem.held_buffers())
    }

    /// What pins part of `r`, if anything: is it backing a live RX/TX buffer
    /// or a buffer held by a fragmented send or retrieve in flight?
    pub fn pinned(&self, r: &PhysRange) -> Option<Pin> {
        // Plain loops over the endpoints of r's security state only: this
        // runs on every send, retrieve, relinquish and reclaim.
        let hit = |b: &Buffers| mailbox(b, r.secure).iter().any(|m| m.overlaps(r));
        if r.secure {
            for p in &self.partitions {
                if let Some(b) = &p.buffers
                    && hit(b)
                {
                    return Some(Pin::Mailbox(p.id().raw()));
                }
            }
        } else {
            for e in &self.nwd {
                if let Some(b) = &e.buffers
                    && hit(b)
                {
                    return Some(Pin::Mailbox(e.id));
                }
            }
        }
        self.mem
            .held_buffers()
            .find(|(h, _)| h.overlaps(r))
            .map(|(_, pin)| pin)
    }

    /// What pins part of the memory of `runs`, if anything. A few runs are
    /// compared with every pin; more sort the pins once (their number grows
    /// with the endpoints, the runs' with the descriptor): NO_MEMORY if that
    /// small table cannot be had.
    pub(crate) fn pinned_runs(
        &self,
        secure: bool,
        runs: &ChunkVec<Run>,
    ) -> Result<Option<Pin>, FfaError> {
        let ranges = runs.iter().map(|x| PhysRange::of_run(secure, x));
        if runs.len() <= LINEAR_RUNS {
            return Ok(ranges.into_iter().find_map(|r| self.pinned(&r)));
        }
        let mut entries = Vec::new();
        for (r, _) in self.pins() {
            entries.try_reserve(1).map_err(|_| FfaError::NoMemory)?;
            entries.push((r.secure, r.pa.0, r.end(), r.end()));
        }
        let index = PinIndex::new(entries);
        Ok(ranges
            .into_iter()
            .find(|r| index.covers(r))
            .and_then(|r| self.pinned(&r)))
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
        match self.pinned_runs(secure, runs)? {
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
    use super::*;

    fn index(pins: &[(bool, u64, u64)]) -> PinIndex {
        PinIndex::new(pins.iter().map(|&(s, a, b)| (s, a, b, b)).collect())
    }

    fn range(secure: bool, a: u64, b: u64) -> PhysRange {
        PhysRange {
            secure,
            pa: Pa(a),
            len: b - a,
        }
    }

    /// The index answers as a linear search does, for nested and
    /// overlapping pins in both security states.
    #[test]
    fn pin_index_matches_a_linear_search() {
        let pins = [
            (true, 0x1000, 0x9000),
            (true, 0x2000, 0x3000),
            (true, 0xA000, 0xB000),
            (false, 0x4000, 0x5000),
            (false, 0x4000, 0x6000),
        ];
        let idx = index(&pins);
        for secure in [false, true] {
            for a in (0..0xC000).step_by(0x1000) {
                for b in (a + 0x1000..=0xC000).step_by(0x1000) {
                    let r = range(secure, a, b);
                    let linear = pins.iter().any(|&(s, x, y)| range(s, x, y).overlaps(&r));
                    assert_eq!(idx.covers(&r), linear, "{r:?}");
                }
            }
        }
        assert!(!index(&[]).covers(&range(true, 0, 0x1000)));
    }

    #[test]
    fn heapsort_sorts() {
        for n in 0..40u64 {
            let mut v: Vec<(bool, u64)> = (0..n).map(|i| (i % 3 == 0, (i * 7919) % 31)).collect();
            let mut want = v.clone();
            want.sort();
            heapsort(&mut v);
            assert_eq!(v, want);
        }
    }
}
