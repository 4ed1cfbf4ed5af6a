//! The memory contract (design §4) as a check over a whole SPMC, for the
//! property tests and the fuzzer: every partition's stage-2 tables equal what
//! the ownership record says it may reach, no secure page is reachable by two
//! partitions unless an FF-A share or lend names both, no partition reaches a
//! page of the pool that is free, and secure memory is never lent to the
//! normal world.
//!
//! The record is: each partition's allocations (image and memory regions, at
//! the IPA its manifest names) and device regions, the transactions in
//! progress with their borrowers' states, and the donations. What a
//! partition may map, by IPA space:
//! - its allocations at their IPA, except pages it lent or donated away;
//! - its device regions, identity mapped;
//! - memory of a transaction it has retrieved (and not relinquished), at IPA = PA,
//!   writable exactly as granted;
//! - memory donated to it, at IPA = PA.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::addr::{IpaSpace, PAGE_SIZE, Pa};
use crate::manager::Spmc;
use crate::mem::desc::Op;
use crate::mem::{BorrowerState, Owner};
use crate::partition::PartitionState;
use crate::testing::{FakePlatform, SECURE_BASE};

/// Expected translation of one page: the PA, and whether it must be writable
/// (`None`: either, the access is the manifest's or the owner's own).
type Expected = BTreeMap<(bool, u64), (u64, Option<bool>)>;

fn space_key(space: IpaSpace) -> bool {
    space == IpaSpace::Secure
}

/// Checks the contract; the first violation found, in words.
pub fn check(s: &Spmc<FakePlatform>) -> Result<(), String> {
    let mem = s.mem();
    // Secure memory never goes to the normal world.
    for t in mem.transactions() {
        if t.secure {
            for b in &t.borrowers {
                if s.slot_of(crate::ids::PartId::new(b.id)).is_none() {
                    return Err(format!(
                        "transaction {:#x} lends secure memory to {:#x}, not a partition",
                        t.handle, b.id
                    ));
                }
            }
        }
    }
    // Who maps each secure PA (for the two-owner rule).
    let mut mappers: BTreeMap<u64, Vec<u16>> = BTreeMap::new();
    for p in s.partitions() {
        if p.state == PartitionState::Free {
            continue;
        }
        let id = p.id();
        let expected = expected_for(s, id.raw(), p);
        for space in [IpaSpace::Secure, IpaSpace::NonSecure] {
            let actual = p.stage2.mappings(space);
            let mut n_expected = 0usize;
            for (ipa, t) in &actual {
                let key = (space_key(space), ipa.0);
                let Some(&(pa, write)) = expected.get(&key) else {
                    return Err(format!(
                        "{id:#06x} maps {space:?} IPA {:#x} -> {:#x}, which the record does not give it",
                        ipa.0, t.pa.0
                    ));
                };
                n_expected += 1;
                if t.pa.0 != pa {
                    return Err(format!(
                        "{id:#06x} maps {space:?} IPA {:#x} -> {:#x}, the record says {pa:#x}",
                        ipa.0, t.pa.0
                    ));
                }
                if let Some(w) = write
                    && w != t.write
                {
                    return Err(format!(
                        "{id:#06x} maps {:#x} with write = {}, the grant says {w}",
                        ipa.0, t.write
                    ));
                }
                if space == IpaSpace::Secure {
                    if s.pool().is_some_and(|pool| pool.is_free(t.pa)) {
                        return Err(format!(
                            "{id:#06x} maps {:#x}, a free page of the pool",
                            t.pa.0
                        ));
                    }
                    mappers.entry(t.pa.0).or_default().push(id.raw());
                }
            }
            let want = expected.keys().filter(|k| k.0 == space_key(space)).count();
            if n_expected != want {
                let missing = expected
                    .iter()
                    .find(|(k, _)| {
                        k.0 == space_key(space) && !actual.iter().any(|(ipa, _)| ipa.0 == k.1)
                    })
                    .map(|(k, v)| (k.1, v.0));
                return Err(format!(
                    "{id:#06x} lacks a {space:?} mapping the record gives it: IPA, PA {missing:x?}"
                ));
            }
        }
    }
    // No secure page in two partitions unless a share or a lend names them all.
    for (pa, who) in mappers {
        if who.len() < 2 {
            continue;
        }
        let ok = mem.transactions().iter().any(|t| {
            t.secure
                && t.runs.iter().any(|r| pa >= r.pa && pa < r.pa + r.len())
                && who.iter().all(|id| {
                    (t.op == Op::Share && t.owner == Owner::Partition(*id))
                        || t.borrowers
                            .iter()
                            .any(|b| b.id == *id && b.state == BorrowerState::Retrieved)
                })
        });
        if !ok {
            return Err(format!(
                "secure page {pa:#x} is mapped by {who:x?} without a transaction naming them all"
            ));
        }
    }
    Ok(())
}

/// What the record lets partition `id` map.
fn expected_for(s: &Spmc<FakePlatform>, id: u16, p: &crate::partition::Partition) -> Expected {
    let mem = s.mem();
    let mut e = Expected::new();
    // Pages the partition lent or is donating (in `secure` memory: normal-world
    // memory donated to it goes to the normal world or to partitions too).
    let lent = |secure: bool, pa: u64| {
        mem.transactions().iter().any(|t| {
            t.secure == secure
                && t.op != Op::Share
                && t.owner == Owner::Partition(id)
                && t.runs.iter().any(|r| pa >= r.pa && pa < r.pa + r.len())
        })
    };
    // Pages the partition gave away (lend, donate in progress, or donated).
    let away = |pa: u64| {
        lent(true, pa)
            || mem
                .donated()
                .iter()
                .any(|d| d.secure && d.owner != id && pa >= d.pa && pa < d.pa + d.pages * PAGE_SIZE)
    };
    for (ipa, a) in &p.memory {
        for i in 0..a.pages {
            let pa = a.base.0 + i * PAGE_SIZE;
            if !away(pa) {
                e.insert((true, ipa.0 + i * PAGE_SIZE), (pa, None));
            }
        }
    }
    for d in &p.config.devices {
        for i in 0..d.pages {
            let a = d.base + i * PAGE_SIZE;
            e.insert((true, a), (a, None));
        }
    }
    for t in mem.transactions() {
        for b in &t.borrowers {
            if b.id == id && b.state == BorrowerState::Retrieved {
                for r in &t.runs {
                    for i in 0..r.pages {
                        let pa = r.pa + i * PAGE_SIZE;
                        e.insert((t.secure, pa), (pa, Some(b.granted.write)));
                    }
                }
            }
        }
    }
    for d in mem.donated() {
        if d.owner == id {
            for i in 0..d.pages {
                let pa = d.pa + i * PAGE_SIZE;
                if !lent(d.secure, pa) {
                    e.insert((d.secure, pa), (pa, Some(d.access.write)));
                }
            }
        }
    }
    e
}

/// The first page of the pool that is free but not zero, among the pages
/// `which` selects.
pub fn dirty_free_page(s: &Spmc<FakePlatform>, mut which: impl FnMut(Pa) -> bool) -> Option<Pa> {
    let pool = s.pool()?;
    let r = pool.range();
    let mut pa = r.base;
    while pa < r.base + r.size {
        if pool.is_free(Pa(pa)) && which(Pa(pa)) && page_bytes(s, pa) != ZERO_PAGE {
            return Some(Pa(pa));
        }
        pa += PAGE_SIZE;
    }
    None
}

/// A page of zeros to compare with (one `memcmp`, not a loop per byte).
static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

fn page_bytes(s: &Spmc<FakePlatform>, pa: u64) -> &[u8] {
    let o = (pa - SECURE_BASE) as usize;
    &s.platform().secure[o..o + PAGE_SIZE as usize]
}

/// Which pages of the pool are free now (index: page number in the pool).
pub fn free_map(s: &Spmc<FakePlatform>) -> Vec<bool> {
    let Some(pool) = s.pool() else {
        return Vec::new();
    };
    let r = pool.range();
    (0..r.size / PAGE_SIZE)
        .map(|i| pool.is_free(Pa(r.base + i * PAGE_SIZE)))
        .collect()
}

/// The buffer rule (design §4, issue 9 item 1): a page backing a live RX/TX
/// buffer belongs to the buffer's endpoint alone while the buffer is mapped.
/// For a partition, each buffer page is one it maps writable from its own
/// allocations (not lent, shared or donated away, nor borrowed); for a
/// normal-world endpoint (IDs below 64), no buffer page is in a transaction.
pub fn check_buffers(s: &Spmc<FakePlatform>) -> Result<(), String> {
    let mem = s.mem();
    let in_transaction = |secure: bool, pa: u64| {
        mem.transactions()
            .iter()
            .any(|t| t.secure == secure && t.runs.iter().any(|r| pa >= r.pa && pa < r.pa + r.len()))
            || mem
                .donated()
                .iter()
                .any(|d| d.secure == secure && pa >= d.pa && pa < d.pa + d.pages * PAGE_SIZE)
    };
    let pages = |b: &crate::partition::Buffers| {
        let (n, tx, rx) = (b.size.div_ceil(PAGE_SIZE), b.tx.0, b.rx.0);
        (0..n).flat_map(move |i| [tx + i * PAGE_SIZE, rx + i * PAGE_SIZE])
    };
    for p in s.partitions() {
        if p.state == PartitionState::Free {
            continue;
        }
        let Some(b) = &p.buffers else { continue };
        for pa in pages(b) {
            let own = p
                .memory
                .iter()
                .any(|(_, a)| pa >= a.base.0 && pa < a.base.0 + a.len());
            if !own || in_transaction(true, pa) {
                return Err(format!(
                    "{:#06x}'s RX/TX page {pa:#x} is not its own alone (own allocation: {own})",
                    p.id()
                ));
            }
        }
    }
    for id in 0..64 {
        if let Some(b) = s.normal_world(id).and_then(|e| e.buffers.as_ref()) {
            for pa in pages(b) {
                if in_transaction(false, pa) {
                    return Err(format!(
                        "normal-world endpoint {id}'s RX/TX page {pa:#x} is in a transaction"
                    ));
                }
            }
        }
    }
    Ok(())
}
