//! Host tests of the SPMC's heap under memory sharing (docs/memory-sharing.md,
//! "Heap"): on a finite heap with the firmware's allocator and shape
//! (tests/common/heap.rs), whatever the normal world sends is answered
//! SUCCESS or NO_MEMORY, never a panic or an abort; a NO_MEMORY changes
//! nothing and leaks nothing; per-owner quotas keep one VM from starving
//! another; instances made and destroyed do not fragment the heap out of
//! the largest legal descriptor.

mod common;

use common::heap::{FIRMWARE_REGIONS, ModelHeap};
use common::world::*;
use spmc::Spmc;
use spmc::addr::PAGE_SIZE;
use spmc::ffa::{FfaError, Regs, func};
use spmc::mem::desc::{attr, perm};
use spmc::mem::{OWNER_RUNS, OWNER_TRANSACTIONS};
use spmc::testing::{FakePlatform, NS_BASE};

#[global_allocator]
static HEAP: ModelHeap = ModelHeap;

/// Normal-world RAM of the fake platform: room for many large shares.
const NS_RAM: u64 = 1 << 30;
/// A 64-page caller-supplied buffer (a 256 KiB descriptor in one call).
const BUF: u64 = NS_BASE + 0x40_0000;
/// Where the shared memory starts.
const MEM: u64 = NS_BASE + 0x100_0000;
const TPM: u16 = 0x8003;
const LARGEST: usize = 256 * 1024;

/// The shipped policy world, booted on a model of the firmware heap (1.5 MiB).
/// `limited`: the fake platform's `heap_available` answers from the model
/// (as the firmware's does); without it only the allocations themselves can
/// fail, so every one of them is exercised.
fn world(limited: bool) -> Spmc<FakePlatform> {
    ModelHeap::install(FIRMWARE_REGIONS);
    let config = shipped_config(None);
    let mut p = policy_platform(&config, FakePlatform::with_ns_size(NS_RAM));
    if limited {
        p.heap_free = Some(ModelHeap::free);
    }
    let mut s = ModelHeap::scope(|| {
        let mut s = policy_boot(config, p);
        let r = nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
        assert_eq!(r.0[0], 0x1_0002);
        map_nwd_buffers(&mut s);
        s
    });
    // One send in fragments, completed and reclaimed: the record vectors
    // have their first capacity (kept, bounded by MAX_IN_FLIGHT), so that
    // what the tests compare afterwards is what a call holds.
    let d = descriptor(0, TPM, strided(MEM + (900 << 20), 300, 2));
    let mut r = send_first(&mut s, &d);
    let mut at = 4096;
    while r.func() == func::MEM_FRAG_RX {
        r = frag_tx(&mut s, frag_handle(&r), &d, at);
        at += 4096;
    }
    assert_eq!(r.func(), func::SUCCESS_32, "{r:?}");
    assert_eq!(reclaim(&mut s, handle(&r)).func(), func::SUCCESS_32);
    s
}

/// A v1.1 send descriptor, one 16-byte access descriptor (DEN0140 Tables
/// 1.13-1.16), written byte by byte here.
fn descriptor(sender: u16, to: u16, ranges: impl Iterator<Item = (u64, u32)>) -> Vec<u8> {
    let comp = 48 + 16;
    let mut b = vec![0u8; comp + 16];
    b[0..2].copy_from_slice(&sender.to_le_bytes());
    b[2..4].copy_from_slice(&attr::NORMAL_WB_INNER.to_le_bytes());
    b[24..28].copy_from_slice(&16u32.to_le_bytes());
    b[28..32].copy_from_slice(&1u32.to_le_bytes());
    b[32..36].copy_from_slice(&48u32.to_le_bytes());
    b[48..50].copy_from_slice(&to.to_le_bytes());
    b[50] = perm::RW;
    b[52..56].copy_from_slice(&(comp as u32).to_le_bytes());
    let (mut count, mut pages) = (0u32, 0u32);
    for (addr, n) in ranges {
        b.extend_from_slice(&addr.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        count += 1;
        pages += n;
    }
    b[comp..comp + 4].copy_from_slice(&pages.to_le_bytes());
    b[comp + 4..comp + 8].copy_from_slice(&count.to_le_bytes());
    b
}

/// `count` one-page ranges from `base`, `stride` pages apart.
fn strided(base: u64, count: u64, stride: u64) -> impl Iterator<Item = (u64, u32)> {
    (0..count).map(move |i| (base + i * stride * PAGE_SIZE, 1))
}

/// The largest legal descriptor: 256 KiB, 16,379 one-page ranges.
fn largest(sender: u16, base: u64, stride: u64) -> Vec<u8> {
    let d = descriptor(sender, TPM, strided(base, 16379, stride));
    assert_eq!(d.len(), LARGEST);
    d
}

/// A normal-world call, the SPMC working on the model heap.
fn call(s: &mut Spmc<FakePlatform>, regs: &[u64]) -> Regs {
    ModelHeap::scope(|| nwd_now(s, regs))
}

/// Sends `d` in one call through the caller-supplied buffer.
fn send(s: &mut Spmc<FakePlatform>, d: &[u8]) -> Regs {
    s.platform_mut().nwd_write(BUF, d);
    let n = d.len() as u64;
    call(s, &[func::MEM_SHARE_64 as u64, n, n, BUF, 64])
}

/// Starts a send of `d` in fragments through the TX buffer (one page).
fn send_first(s: &mut Spmc<FakePlatform>, d: &[u8]) -> Regs {
    let n = 4096.min(d.len());
    s.platform_mut().nwd_write(NWD_TX, &d[..n]);
    call(
        s,
        &[func::MEM_SHARE_64 as u64, d.len() as u64, n as u64, 0, 0],
    )
}

/// Sends the fragment of `d` at `at` (one page at most).
fn frag_tx(s: &mut Spmc<FakePlatform>, h: u64, d: &[u8], at: usize) -> Regs {
    let n = 4096.min(d.len() - at);
    s.platform_mut().nwd_write(NWD_TX, &d[at..at + n]);
    call(
        s,
        &[func::MEM_FRAG_TX as u64, h & 0xFFFF_FFFF, h >> 32, n as u64],
    )
}

fn handle(r: &Regs) -> u64 {
    r.x(2) | r.x(3) << 32
}

fn frag_handle(r: &Regs) -> u64 {
    r.x(1) | r.x(2) << 32
}

fn reclaim(s: &mut Spmc<FakePlatform>, h: u64) -> Regs {
    call(s, &[func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, 0])
}

fn no_memory(r: &Regs) -> bool {
    r.error_code() == Some(FfaError::NoMemory.code())
}

/// What a refused call must leave as it was: the records, and the heap.
#[derive(Debug, PartialEq)]
struct State {
    transactions: Vec<u64>,
    incoming: usize,
    outgoing: usize,
    heap_used: usize,
}

fn state(s: &Spmc<FakePlatform>) -> State {
    State {
        transactions: s.mem().transactions().iter().map(|t| t.handle).collect(),
        incoming: s.mem().incoming_count(),
        outgoing: s.mem().outgoing_count(),
        heap_used: ModelHeap::used(),
    }
}

/// The SPMC still works: a one-page share by `vm` succeeds and reclaims.
fn still_shares(s: &mut Spmc<FakePlatform>, vm: u16, page: u64) {
    let d = descriptor(vm, TPM, strided(page, 1, 1));
    let r = send(s, &d);
    assert_eq!(r.func(), func::SUCCESS_32, "VM {vm} cannot share: {r:?}");
    assert_eq!(reclaim(s, handle(&r)).func(), func::SUCCESS_32);
}

#[test]
fn sixteen_thousand_ranges_on_the_firmware_heap_are_no_memory_and_change_nothing() {
    let mut s = world(true);
    let start = state(&s);
    // Six of the largest descriptors, disjoint pages, 16,379 runs each.
    let ds: Vec<Vec<u8>> = (0..6u64)
        .map(|k| largest(1, MEM + (k / 2) * (128 << 20) + (k % 2) * PAGE_SIZE, 2))
        .collect();
    let mut held = Vec::with_capacity(8);
    for d in &ds {
        let before = state(&s);
        let r = send(&mut s, d);
        if r.func() == func::SUCCESS_32 {
            held.push(handle(&r));
            continue;
        }
        assert!(no_memory(&r), "{r:?}");
        assert_eq!(state(&s), before, "a refused send changed something");
    }
    assert!(
        held.len() * 16379 <= OWNER_RUNS,
        "more runs recorded than one owner's quota"
    );
    // The SPMC still answers, VM 1 included.
    still_shares(&mut s, 1, MEM + (512 << 20));
    for h in held {
        assert_eq!(reclaim(&mut s, h).func(), func::SUCCESS_32);
    }
    assert_eq!(state(&s), start, "nothing leaked");
}

/// Fills the model heap with blocks (largest first, down to 8 bytes): kept
/// in `ballast`, whose own vector lives outside the model heap.
fn exhaust(ballast: &mut Vec<Vec<u8>>) {
    ModelHeap::scope(|| {
        let mut size = 4096;
        while size >= 8 {
            let mut v = Vec::new();
            if v.try_reserve_exact(size).is_ok() {
                ballast.push(v);
            } else {
                size /= 2;
            }
        }
    });
}

#[test]
fn every_heap_level_answers_success_or_no_memory_with_nothing_changed() {
    // Unlimited `heap_available`: only the allocations themselves guard.
    let mut s = world(false);
    // 4,000 runs (within the quota), 64 KiB of descriptor.
    let d = descriptor(1, TPM, strided(MEM, 4000, 2));
    let mut ballast = Vec::with_capacity(1 << 16);
    exhaust(&mut ballast);
    // One call, then in fragments, at every level of free heap until it works.
    for fragmented in [false, true] {
        let mut refused = 0;
        loop {
            let before = state(&s);
            let r = if fragmented {
                let mut r = send_first(&mut s, &d);
                let mut at = 4096;
                while r.func() == func::MEM_FRAG_RX && at < d.len() {
                    let h = frag_handle(&r);
                    r = frag_tx(&mut s, h, &d, at);
                    if no_memory(&r) {
                        // The fragments so far stay; cancelling frees them.
                        assert_eq!(state(&s).incoming, 1);
                        assert_eq!(reclaim(&mut s, h).func(), func::SUCCESS_32);
                        break;
                    }
                    at += 4096;
                }
                r
            } else {
                send(&mut s, &d)
            };
            if r.func() == func::SUCCESS_32 {
                assert_eq!(reclaim(&mut s, handle(&r)).func(), func::SUCCESS_32);
                break;
            }
            assert!(no_memory(&r), "{r:?}");
            assert_eq!(state(&s), before, "a refused send changed something");
            refused += 1;
            // A little more room for the next try.
            for _ in 0..4 {
                ballast.pop();
            }
        }
        assert!(refused > 0, "the heap was never short");
        exhaust(&mut ballast);
    }
    drop(ballast);
    still_shares(&mut s, 1, MEM + (512 << 20));
}

#[test]
fn fragmented_sends_growing_with_frag_tx_are_no_memory_not_a_panic() {
    let mut s = world(true);
    let start = state(&s);
    // Four VMs start largest-size sends in fragments, as many as accepted.
    let mut sends = Vec::with_capacity(64);
    for k in 0..16u64 {
        let vm = (k % 4) as u16;
        let d = largest(vm, MEM + k * (64 << 20), 1);
        let r = send_first(&mut s, &d);
        if no_memory(&r) {
            continue;
        }
        assert_eq!(r.func(), func::MEM_FRAG_RX, "{r:?}");
        sends.push((frag_handle(&r), d, 4096usize));
    }
    assert!(!sends.is_empty());
    // Then every one grows, one page at a time, round robin.
    let mut done = Vec::with_capacity(64);
    let mut refused = Vec::with_capacity(64);
    while let Some((h, d, at)) = sends.pop() {
        let before = state(&s);
        let r = frag_tx(&mut s, h, &d, at);
        if r.func() == func::MEM_FRAG_RX {
            sends.insert(0, (h, d, at + 4096));
        } else if r.func() == func::SUCCESS_32 {
            done.push(handle(&r));
        } else {
            assert!(no_memory(&r), "{r:?}");
            assert_eq!(state(&s), before, "a refused fragment changed something");
            refused.push(h);
        }
    }
    // The SPMC still answers; what is held reclaims; nothing leaks.
    still_shares(&mut s, 2, MEM + (1000 << 20));
    for h in done.into_iter().chain(refused) {
        assert_eq!(reclaim(&mut s, h).func(), func::SUCCESS_32);
    }
    assert_eq!(state(&s), start, "nothing leaked");
}

#[test]
fn one_vm_at_its_quota_does_not_starve_another() {
    let mut s = world(true);
    // Transactions: VM 1 shares one page after another until refused.
    let mut held = Vec::with_capacity(256);
    loop {
        let page = MEM + held.len() as u64 * PAGE_SIZE;
        let r = send(&mut s, &descriptor(1, TPM, strided(page, 1, 1)));
        if no_memory(&r) {
            break;
        }
        assert_eq!(r.func(), func::SUCCESS_32, "{r:?}");
        held.push(handle(&r));
        assert!(held.len() <= 256, "no limit at all");
    }
    assert_eq!(held.len(), OWNER_TRANSACTIONS);
    still_shares(&mut s, 2, MEM + (500 << 20));
    for h in held.drain(..) {
        assert_eq!(reclaim(&mut s, h).func(), func::SUCCESS_32);
    }
    // (The transaction vector keeps the capacity it grew to.)
    let start = state(&s);
    // Runs: VM 1 shares 1,000 runs at a time until refused.
    loop {
        let base = MEM + held.len() as u64 * (8 << 20);
        let r = send(&mut s, &descriptor(1, TPM, strided(base, 1000, 2)));
        if no_memory(&r) {
            break;
        }
        assert_eq!(r.func(), func::SUCCESS_32, "{r:?}");
        held.push(handle(&r));
    }
    assert_eq!(held.len(), OWNER_RUNS / 1000);
    still_shares(&mut s, 2, MEM + (500 << 20));
    let r = send(
        &mut s,
        &descriptor(2, TPM, strided(MEM + (600 << 20), 1000, 2)),
    );
    assert_eq!(r.func(), func::SUCCESS_32, "VM 2's runs: {r:?}");
    held.push(handle(&r));
    for h in held.drain(..) {
        assert_eq!(reclaim(&mut s, h).func(), func::SUCCESS_32);
    }
    // Descriptor bytes: VM 1 has one largest send in fragments; a second is
    // refused, VM 2's goes ahead.
    let d1 = largest(1, MEM, 1);
    let r = send_first(&mut s, &d1);
    assert_eq!(r.func(), func::MEM_FRAG_RX, "{r:?}");
    held.push(frag_handle(&r));
    let r = send_first(&mut s, &largest(1, MEM + (100 << 20), 1));
    assert!(no_memory(&r), "{r:?}");
    let r = send_first(&mut s, &largest(2, MEM + (200 << 20), 1));
    assert_eq!(r.func(), func::MEM_FRAG_RX, "VM 2's descriptor: {r:?}");
    held.push(frag_handle(&r));
    for h in held.drain(..) {
        assert_eq!(reclaim(&mut s, h).func(), func::SUCCESS_32);
    }
    assert_eq!(state(&s), start, "nothing leaked");
}

#[test]
fn instances_made_and_destroyed_leave_room_for_the_largest_descriptor() {
    let mut s = world(true);
    // Many VMs come and go in a shuffled order, a third of them staying;
    // each shares a page with its TEE when it is made, and half of them
    // keep that record after their TEE is gone.
    let mut kept = Vec::with_capacity(1024);
    let mut page = MEM + (800 << 20);
    let mut seed = 0x2545_f491u32;
    for _ in 0..600 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let vm = (seed % 64 + 1) as u16;
        if instance_id(&s, vm).is_none() {
            let status = ModelHeap::scope(|| create_vm(&mut s, vm));
            assert_eq!(status, 0, "VM {vm} created");
            let r = send(&mut s, &descriptor(vm, TEMPLATE, strided(page, 1, 1)));
            page += PAGE_SIZE;
            if r.func() == func::SUCCESS_32 {
                kept.push((vm, handle(&r)));
            } else {
                assert!(no_memory(&r), "{r:?}");
            }
        } else if !vm.is_multiple_of(3) {
            let status = ModelHeap::scope(|| destroy_vm(&mut s, vm));
            assert_eq!(status, 0, "VM {vm} destroyed");
            if seed & 1 == 0 {
                for (_, h) in kept.iter().filter(|(v, _)| *v == vm) {
                    assert_eq!(reclaim(&mut s, *h).func(), func::SUCCESS_32);
                }
                kept.retain(|(v, _)| *v != vm);
            }
        }
    }
    // The free bytes are in pieces: no one block holds them. (Room for one
    // largest descriptor above the floor at a time: the two below are
    // sent one after the other; sp1's device region, mapped since the
    // device-memory checks, takes two pages of tables from the heap.)
    let (free, block) = (ModelHeap::free(), ModelHeap::largest_block());
    assert!(
        free > LARGEST + spmc::mem::HEAP_FLOOR && block < free,
        "{free} bytes free, the largest block {block}"
    );
    // The largest legal descriptor, one call and in fragments, each a
    // transaction of one run (its ranges are adjacent).
    for k in 0..2u64 {
        let d = largest(1, MEM + k * (64 << 20), 1);
        ModelHeap::take_largest_asked();
        let r = if k == 0 {
            send(&mut s, &d)
        } else {
            let mut r = send_first(&mut s, &d);
            let mut at = 4096;
            while r.func() == func::MEM_FRAG_RX {
                r = frag_tx(&mut s, frag_handle(&r), &d, at);
                at += 4096;
            }
            r
        };
        assert_eq!(
            r.func(),
            func::SUCCESS_32,
            "largest descriptor after churn ({} bytes free, largest block {}): {r:?}",
            ModelHeap::free(),
            ModelHeap::largest_block()
        );
        // Nothing it needed was larger than a few pages: the pieces suffice.
        let asked = ModelHeap::take_largest_asked();
        assert!(asked <= 16 * 1024, "a block of {asked} bytes asked for");
        let t = s.mem().transaction(handle(&r)).unwrap();
        assert_eq!((t.runs.len(), t.pages()), (1, 16379));
        assert_eq!(reclaim(&mut s, handle(&r)).func(), func::SUCCESS_32);
    }
}

#[test]
fn overlap_with_thousands_of_recorded_runs_is_found_exactly() {
    let mut s = world(true);
    // Four owners, 3,000 one-page runs each, interleaved page by page.
    let mut held = Vec::with_capacity(8);
    for vm in 0..4u16 {
        let d = descriptor(vm, TPM, strided(MEM + vm as u64 * PAGE_SIZE, 3000, 4));
        let r = send(&mut s, &d);
        assert_eq!(r.func(), func::SUCCESS_32, "VM {vm}: {r:?}");
        held.push(handle(&r));
    }
    // Any page of theirs is refused, wherever it lies; the pages around
    // them are not.
    for (vm, page) in [(5u16, 0u64), (5, 7), (6, 8_999), (6, 11_999)] {
        let d = descriptor(vm, TPM, strided(MEM + (12_000 + page) * PAGE_SIZE, 1, 1));
        let r = send(&mut s, &d);
        assert_eq!(r.func(), func::SUCCESS_32, "free page {page}: {r:?}");
        held.push(handle(&r));
        // A descriptor of 3,000 free pages and one taken page, last.
        let free = strided(MEM + 20_000 * PAGE_SIZE + page * 4 * PAGE_SIZE, 3000, 2);
        let taken = std::iter::once((MEM + page * PAGE_SIZE, 1));
        let d = descriptor(vm, TPM, free.chain(taken));
        let r = send(&mut s, &d);
        assert_eq!(
            r.error_code(),
            Some(FfaError::Denied.code()),
            "taken page {page}"
        );
    }
    // Overlap inside one descriptor: the same page twice, far apart.
    let inside = strided(MEM + (40 << 20), 3000, 2).chain(std::iter::once((MEM + (40 << 20), 1)));
    let r = send(&mut s, &descriptor(5, TPM, inside));
    assert_eq!(r.error_code(), Some(FfaError::InvalidParameters.code()));
    for h in held {
        assert_eq!(reclaim(&mut s, h).func(), func::SUCCESS_32);
    }
    still_shares(&mut s, 0, MEM);
}

#[test]
fn a_tee_made_on_a_full_heap_is_no_memory_and_the_next_one_works() {
    let mut s = world(true);
    let mut ballast = Vec::with_capacity(1 << 16);
    exhaust(&mut ballast);
    let before = state(&s);
    let status = ModelHeap::scope(|| create_vm(&mut s, 1));
    assert_eq!(status, FfaError::NoMemory.code());
    assert_eq!(instance_id(&s, 1), None);
    assert_eq!(state(&s), before, "a refused TEE left something behind");
    drop(ballast);
    assert_eq!(ModelHeap::scope(|| create_vm(&mut s, 1)), 0);
    assert!(instance_id(&s, 1).is_some());
}
