//! Host tests of the rule that every address the SPMC keeps lies in memory
//! its endpoint owns exclusively, for as long as the SPMC keeps it
//! (docs/memory-sharing.md, "Buffers and ownership"): RX/TX buffers and
//! caller-supplied buffers held by a fragmented send or retrieve.
//!
//! Each test plays the attack the rule stops. Where the SPMC wrongly accepts
//! the first step, the test goes on to show what that allows (a write into
//! another partition's page, a secret reaching the normal world) before it
//! fails on the refusal it expects; every refusal must leave the transaction
//! table, the stage-2 tables and every buffer as they were.

mod common;

use common::world::*;
use spmc::Next;
use spmc::Spmc;
use spmc::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use spmc::ffa::{FfaError, Regs, func};
use spmc::ids::{PartId, SlotId};
use spmc::mem::desc::perm;
use spmc::partition::Buffers;
use spmc::stage2::Translation;
use spmc::testing::{FakePlatform, NS_BASE, sp_call};

const SP1: u16 = 0x8001;
const SP2: u16 = 0x8002;
const TPM: u16 = 0x8003;
const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;
/// Where `booted()` puts each partition's TX and RX (IPAs in its RAM region).
const SP_TX_IPA: u64 = RAM_IPA + 0x1_0000;
const SP_RX_IPA: u64 = RAM_IPA + 0x1_1000;
/// Pages of a partition's RAM clear of its buffers.
const SP_LEND_IPA: u64 = RAM_IPA + 0x4000;
const SP_BUF_IPA: u64 = RAM_IPA + 0x8000;
/// Normal-world memory the tests share, and a caller-supplied buffer.
const NS_MEM: u64 = NS_BASE + 0x20_0000;
const NS_BUF: u64 = NS_BASE + 0x40_0000;
const SECRET: &[u8; 16] = b"sp2's own secret";

const DENIED: Option<i32> = Some(FfaError::Denied.code());

const SENDS: [u32; 3] = [func::MEM_SHARE_64, func::MEM_LEND_64, func::MEM_DONATE_64];

// ----------------------------------------------------------------------
// Descriptors (DEN0140 v1.2 §1.11, v1.1+ layout, 32-byte access
// descriptors), written here independently of the SPMC's parser.
// ----------------------------------------------------------------------

fn descriptor(
    sender: u16,
    handle: u64,
    receivers: &[(u16, u8)],
    ranges: Option<&[(u64, u32)]>,
) -> Vec<u8> {
    let comp = 48 + 32 * receivers.len();
    let len = comp + ranges.map_or(0, |r| 16 + 16 * r.len());
    let mut b = vec![0u8; len];
    b[0..2].copy_from_slice(&sender.to_le_bytes());
    if ranges.is_some() {
        // Normal memory, write-back, inner shareable.
        b[2] = 0x2F;
    }
    b[8..16].copy_from_slice(&handle.to_le_bytes());
    b[24..28].copy_from_slice(&32u32.to_le_bytes());
    b[28..32].copy_from_slice(&(receivers.len() as u32).to_le_bytes());
    b[32..36].copy_from_slice(&48u32.to_le_bytes());
    for (i, (id, p)) in receivers.iter().enumerate() {
        let at = 48 + 32 * i;
        b[at..at + 2].copy_from_slice(&id.to_le_bytes());
        b[at + 2] = *p;
        if ranges.is_some() {
            b[at + 4..at + 8].copy_from_slice(&(comp as u32).to_le_bytes());
        }
    }
    if let Some(ranges) = ranges {
        let pages: u32 = ranges.iter().map(|r| r.1).sum();
        b[comp..comp + 4].copy_from_slice(&pages.to_le_bytes());
        b[comp + 4..comp + 8].copy_from_slice(&(ranges.len() as u32).to_le_bytes());
        for (i, (addr, n)) in ranges.iter().enumerate() {
            let at = comp + 16 + 16 * i;
            b[at..at + 8].copy_from_slice(&addr.to_le_bytes());
            b[at + 8..at + 12].copy_from_slice(&n.to_le_bytes());
        }
    }
    b
}

fn send_desc(sender: u16, to: u16, perms: u8, ranges: &[(u64, u32)]) -> Vec<u8> {
    descriptor(sender, 0, &[(to, perms)], Some(ranges))
}

fn retrieve_desc(sender: u16, handle: u64, me: u16, perms: u8) -> Vec<u8> {
    descriptor(sender, handle, &[(me, perms)], None)
}

/// The permissions a sender gives for `f`: none for a donation.
fn perms_for(f: u32) -> u8 {
    if f == func::MEM_DONATE_64 {
        0
    } else {
        perm::RW
    }
}

// ----------------------------------------------------------------------
// Playing the endpoints
// ----------------------------------------------------------------------

fn world() -> Spmc<FakePlatform> {
    let mut s = booted();
    let r = nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    assert_eq!(r.0[0], 0x1_0002);
    map_nwd_buffers(&mut s);
    s
}

/// Partition `id` makes `call` while it handles a direct request from the
/// normal world; x0-x7 of the answer.
fn sp(s: &mut Spmc<FakePlatform>, id: u16, call: &[u64]) -> [u64; 8] {
    let (next, mut regs) = nwd(s, &[REQ64, id as u64, 0, 0]);
    let v = running(&next);
    let n = sp_call(s, v, call, &mut regs);
    assert_eq!(running(&n), v, "answered at once");
    let mut out = [0u64; 8];
    out.copy_from_slice(&s.vcpu_context_mut(v).x[..8]);
    let n = sp_call(
        s,
        v,
        &[RESP64, (id as u64) << 16, 0, 0, 0, 0, 0, 0],
        &mut regs,
    );
    assert!(matches!(n, Next::NormalWorld));
    out
}

fn sp_err(x: &[u64; 8]) -> Option<i32> {
    (x[0] as u32 == func::ERROR_32).then_some(x[2] as u32 as i32)
}

fn sp_ok(x: &[u64; 8], what: &str) {
    assert_eq!(x[0] as u32, func::SUCCESS_32, "{what}: {x:x?}");
}

fn handle(x: &[u64; 8]) -> u64 {
    x[2] | x[3] << 32
}

fn slot(s: &Spmc<FakePlatform>, id: u16) -> SlotId {
    s.slot_of(PartId::new(id)).unwrap()
}

fn buffers(s: &Spmc<FakePlatform>, id: u16) -> Buffers {
    s.partition(slot(s, id)).buffers.expect("buffers mapped")
}

/// Where partition `id` sees `ipa` of its secure IPA space.
fn pa_of(s: &Spmc<FakePlatform>, id: u16, ipa: u64) -> Pa {
    s.partition(slot(s, id))
        .stage2
        .lookup(IpaSpace::Secure, Ipa(ipa))
        .expect("mapped")
        .pa
}

/// Partition `id` sends `desc` with `f` through its TX buffer.
fn sp_send(s: &mut Spmc<FakePlatform>, id: u16, f: u32, desc: &[u8]) -> [u64; 8] {
    let tx = buffers(s, id).tx;
    let mut desc = desc.to_vec();
    conform_send(f as u64, &mut desc);
    s.platform_mut().secure_write(tx, &desc);
    let n = desc.len() as u64;
    sp(s, id, &[f as u64, n, n, 0, 0])
}

/// The normal world sends `desc` with `f` through its TX buffer.
fn nwd_send(s: &mut Spmc<FakePlatform>, f: u32, desc: &[u8]) -> Regs {
    s.platform_mut().nwd_write(NWD_TX, desc);
    let n = desc.len() as u64;
    nwd_now(s, &[f as u64, n, n, 0, 0])
}

/// Partition `id` retrieves `handle` (a response that fits its RX buffer)
/// and releases its RX buffer.
fn retrieve(s: &mut Spmc<FakePlatform>, id: u16, sender: u16, handle: u64, perms: u8) {
    let d = retrieve_desc(sender, handle, id, perms);
    let tx = buffers(s, id).tx;
    s.platform_mut().secure_write(tx, &d);
    let n = d.len() as u64;
    let x = sp(s, id, &[func::MEM_RETRIEVE_REQ_64 as u64, n, n, 0, 0]);
    assert_eq!(x[0] as u32, func::MEM_RETRIEVE_RESP, "retrieve: {x:x?}");
    assert_eq!(x[1], x[2], "one fragment");
    sp_ok(&sp(s, id, &[func::RX_RELEASE as u64]), "RX_RELEASE");
}

fn relinquish(s: &mut Spmc<FakePlatform>, id: u16, handle: u64) -> [u64; 8] {
    let mut d = vec![0u8; 18];
    d[0..8].copy_from_slice(&handle.to_le_bytes());
    d[12..16].copy_from_slice(&1u32.to_le_bytes());
    d[16..18].copy_from_slice(&id.to_le_bytes());
    let tx = buffers(s, id).tx;
    s.platform_mut().secure_write(tx, &d);
    sp(s, id, &[func::MEM_RELINQUISH as u64])
}

fn reclaim_call(handle: u64) -> [u64; 4] {
    [
        func::MEM_RECLAIM as u64,
        handle & 0xFFFF_FFFF,
        handle >> 32,
        0,
    ]
}

fn partition_info_get() -> [u64; 6] {
    [func::PARTITION_INFO_GET as u64, 0, 0, 0, 0, 0]
}

/// 300 one-page ranges of normal-world memory, every other page: a
/// retrieve response longer than one page.
fn many_ranges() -> Vec<(u64, u32)> {
    (0..300).map(|i| (NS_MEM + i * 2 * PAGE_SIZE, 1)).collect()
}

// ----------------------------------------------------------------------
// What must not change when a call is refused
// ----------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct Snapshot {
    transactions: String,
    donated: String,
    incoming: usize,
    outgoing: usize,
    buffers: Vec<Option<Buffers>>,
    nwd_buffers: Option<Buffers>,
    maps: Vec<Option<Translation>>,
}

fn snapshot(s: &Spmc<FakePlatform>) -> Snapshot {
    // Every page of SP1's and SP2's RAM, where its owner and where a
    // borrower (IPA = PA) would see it; the normal-world pages the tests use.
    let mut secure: Vec<(IpaSpace, u64)> = Vec::new();
    for id in [SP1, SP2] {
        for i in 0..32 {
            let ipa = RAM_IPA + i * PAGE_SIZE;
            secure.push((IpaSpace::Secure, ipa));
            secure.push((IpaSpace::Secure, pa_of_any(s, id, ipa)));
        }
    }
    for i in 0..8 {
        secure.push((IpaSpace::NonSecure, NS_MEM + i * PAGE_SIZE));
    }
    secure.push((IpaSpace::NonSecure, NS_BUF));
    secure.push((IpaSpace::NonSecure, NWD_TX));
    secure.push((IpaSpace::NonSecure, NWD_RX));
    let mut maps = Vec::new();
    for id in [SP1, SP2, TPM] {
        let s2 = &s.partition(slot(s, id)).stage2;
        for (space, ipa) in &secure {
            maps.push(s2.lookup(*space, Ipa(*ipa)));
        }
    }
    Snapshot {
        transactions: format!("{:?}", s.mem().transactions()),
        donated: format!("{:?}", s.mem().donated()),
        incoming: s.mem().incoming_count(),
        outgoing: s.mem().outgoing_count(),
        buffers: s.partitions().iter().map(|p| p.buffers).collect(),
        nwd_buffers: s.normal_world(0).and_then(|e| e.buffers),
        maps,
    }
}

/// The physical page behind `ipa` of `id`'s RAM, mapped or not (from the
/// partition's memory record, so it does not change when the page is lent).
fn pa_of_any(s: &Spmc<FakePlatform>, id: u16, ipa: u64) -> u64 {
    let p = &s.partition(slot(s, id));
    let (base, a) = p
        .memory
        .iter()
        .find(|(base, a)| ipa >= base.0 && ipa < base.0 + a.len())
        .expect("in a memory region");
    a.base.0 + (ipa - base.0)
}

// ----------------------------------------------------------------------
// RX/TX buffers cannot change hands
// ----------------------------------------------------------------------

/// The demonstration: SP1 donates its RX page to SP2, SP2 keeps a
/// secret there, SP1 asks for partition information.
#[test]
fn a_partition_cannot_donate_its_rx_page() {
    let mut s = world();
    let rx = buffers(&s, SP1).rx;
    assert_eq!(pa_of(&s, SP1, SP_RX_IPA), rx);
    let before = snapshot(&s);
    let x = sp_send(
        &mut s,
        SP1,
        func::MEM_DONATE_64,
        &send_desc(SP1, SP2, 0, &[(SP_RX_IPA, 1)]),
    );
    if x[0] as u32 == func::SUCCESS_32 {
        retrieve(&mut s, SP2, SP1, handle(&x), perm::RW);
        s.platform_mut().secure_write(rx, SECRET);
        sp(&mut s, SP1, &partition_info_get());
        assert_eq!(
            s.platform().secure_read(rx, SECRET.len()),
            SECRET,
            "the SPMC wrote SP1's partition information into SP2's page"
        );
    }
    assert_eq!(sp_err(&x), DENIED, "donating a page that backs RX");
    assert_eq!(snapshot(&s), before);
    // SP1's buffer still works, in SP1's own page.
    let x = sp(&mut s, SP1, &partition_info_get());
    sp_ok(&x, "PARTITION_INFO_GET");
    assert_eq!(
        u16::from_le_bytes(s.platform().secure_read(rx, 2).try_into().unwrap()),
        SP1
    );
}

/// The read direction: SP1 lends its TX page, the borrower writes there,
/// SP1's FFA_MSG_SEND2 copies from it into the normal world's RX.
#[test]
fn a_partition_cannot_lend_its_tx_page() {
    let mut s = world();
    let tx = buffers(&s, SP1).tx;
    // A message to the normal world, whose 16-byte payload follows the header.
    let mut hdr = [0u8; 40];
    hdr[8..12].copy_from_slice(&40u32.to_le_bytes());
    hdr[14..16].copy_from_slice(&SP1.to_le_bytes());
    hdr[16..20].copy_from_slice(&16u32.to_le_bytes());
    let desc = send_desc(SP1, SP2, perm::RW, &[(SP_TX_IPA, 1)]);
    let before = snapshot(&s);
    let x = sp_send(&mut s, SP1, func::MEM_LEND_64, &desc);
    if x[0] as u32 == func::SUCCESS_32 {
        retrieve(&mut s, SP2, SP1, handle(&x), perm::RW);
        // SP2 writes into its borrowed page; SP1 sends "its" message.
        s.platform_mut().secure_write(tx, &hdr);
        s.platform_mut().secure_write(Pa(tx.0 + 40), SECRET);
        sp(&mut s, SP1, &[func::MSG_SEND2 as u64, 0, 0]);
        assert_ne!(
            s.platform().nwd_read(NWD_RX + 40, 16),
            SECRET,
            "SP2's secret reached the normal world"
        );
    }
    assert_eq!(sp_err(&x), DENIED, "lending a page that backs TX");
    assert_eq!(snapshot(&s), before);
}

/// Every send ABI, both buffers, and ranges that only touch a buffer page.
#[test]
fn no_send_covers_a_partition_rx_or_tx_page() {
    let mut s = world();
    let before = snapshot(&s);
    for f in SENDS {
        for ranges in [
            vec![(SP_TX_IPA, 1)],
            vec![(SP_RX_IPA, 1)],
            vec![(SP_TX_IPA - PAGE_SIZE, 3)],
            vec![(SP_LEND_IPA, 1), (SP_RX_IPA, 1)],
        ] {
            let x = sp_send(&mut s, SP1, f, &send_desc(SP1, SP2, perms_for(f), &ranges));
            assert_eq!(sp_err(&x), DENIED, "{f:#x} of {ranges:x?}");
            assert_eq!(snapshot(&s), before, "{f:#x} of {ranges:x?}");
        }
    }
    // The pages next to the buffers are free to go.
    let x = sp_send(
        &mut s,
        SP1,
        func::MEM_LEND_64,
        &send_desc(SP1, SP2, perm::RW, &[(SP_TX_IPA - PAGE_SIZE, 1)]),
    );
    sp_ok(&x, "lend of the page before TX");
}

/// The normal world's own buffers (defect 9: Hafnium answers DENIED).
#[test]
fn the_normal_world_cannot_send_its_rx_or_tx_page() {
    let mut s = world();
    let before = snapshot(&s);
    for f in SENDS {
        for ranges in [
            vec![(NWD_TX, 1)],
            vec![(NWD_RX, 1)],
            vec![(NWD_TX - PAGE_SIZE, 2)],
            vec![(NS_MEM, 1), (NWD_RX, 1)],
            // Twenty ranges, every other page, one of them a buffer page
            // (more runs than are compared one by one).
            (0..20)
                .map(|i| (NWD_TX - 16 * 2 * PAGE_SIZE + i * 2 * PAGE_SIZE, 1))
                .collect(),
            (0..20)
                .map(|i| (NWD_RX - 16 * 2 * PAGE_SIZE + i * 2 * PAGE_SIZE, 1))
                .collect(),
        ] {
            let r = nwd_send(&mut s, f, &send_desc(0, SP1, perms_for(f), &ranges));
            assert_eq!(r.error_code(), DENIED, "{f:#x} of {ranges:x?}");
            assert_eq!(snapshot(&s), before, "{f:#x} of {ranges:x?}");
        }
    }
    // Once the buffers are unmapped, the pages are ordinary memory again
    // (the descriptor then travels in a caller-supplied buffer).
    sp_ok_regs(
        &nwd_now(&mut s, &[func::RXTX_UNMAP as u64, 0]),
        "RXTX_UNMAP",
    );
    let d = send_desc(0, SP1, perm::RW, &[(NWD_TX, 2)]);
    s.platform_mut().nwd_write(NS_BUF, &d);
    let n = d.len() as u64;
    let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, n, n, NS_BUF, 1]);
    sp_ok_regs(&r, "share of the former buffers");
}

fn sp_ok_regs(r: &Regs, what: &str) {
    assert_eq!(r.func(), func::SUCCESS_32, "{what}: {r:?}");
}

// ----------------------------------------------------------------------
// Buffers only over memory the endpoint owns exclusively
// ----------------------------------------------------------------------

/// A borrower puts its RX/TX buffers in borrowed memory and gives the
/// memory back: the SPMC would keep writing into the owner's page.
#[test]
fn a_partition_cannot_map_buffers_over_borrowed_memory() {
    let mut s = world();
    let lent = pa_of(&s, SP1, SP_LEND_IPA);
    let x = sp_send(
        &mut s,
        SP1,
        func::MEM_LEND_64,
        &send_desc(SP1, SP2, perm::RW, &[(SP_LEND_IPA, 2)]),
    );
    sp_ok(&x, "lend");
    let h = handle(&x);
    retrieve(&mut s, SP2, SP1, h, perm::RW);
    sp_ok(&sp(&mut s, SP2, &[func::RXTX_UNMAP as u64, 0]), "unmap");
    let before = snapshot(&s);
    let map = [func::RXTX_MAP_64 as u64, lent.0, lent.0 + PAGE_SIZE, 1];
    let x = sp(&mut s, SP2, &map);
    if x[0] as u32 == func::SUCCESS_32 {
        sp_ok(&relinquish(&mut s, SP2, h), "relinquish");
        sp_ok(&sp(&mut s, SP1, &reclaim_call(h)), "reclaim");
        let rx = Pa(lent.0 + PAGE_SIZE);
        s.platform_mut().secure_write(rx, SECRET);
        sp(&mut s, SP2, &partition_info_get());
        assert_eq!(
            s.platform().secure_read(rx, SECRET.len()),
            SECRET,
            "the SPMC wrote SP2's partition information into SP1's page"
        );
    }
    assert_eq!(sp_err(&x), DENIED, "RXTX_MAP over borrowed memory");
    assert_eq!(snapshot(&s), before);
    // One buffer of its own and one borrowed: refused as well.
    for (tx, rx) in [(SP_BUF_IPA, lent.0), (lent.0, SP_BUF_IPA)] {
        let x = sp(&mut s, SP2, &[func::RXTX_MAP_64 as u64, tx, rx, 1]);
        assert_eq!(sp_err(&x), DENIED, "{tx:#x}/{rx:#x}");
        assert_eq!(snapshot(&s), before);
    }
    // In its own RAM SP2 maps its buffers, and gives the memory back.
    let x = sp(
        &mut s,
        SP2,
        &[func::RXTX_MAP_64 as u64, SP_TX_IPA, SP_RX_IPA, 1],
    );
    sp_ok(&x, "RXTX_MAP in its own RAM");
    sp_ok(&relinquish(&mut s, SP2, h), "relinquish");
    sp_ok(&sp(&mut s, SP1, &reclaim_call(h)), "reclaim");
}

/// The owner of a share keeps its mapping, but the memory is no longer its
/// alone: no buffers there either.
#[test]
fn a_partition_cannot_map_buffers_over_memory_it_shares() {
    let mut s = world();
    let x = sp_send(
        &mut s,
        SP1,
        func::MEM_SHARE_64,
        &send_desc(SP1, SP2, perm::RW, &[(SP_LEND_IPA, 2)]),
    );
    sp_ok(&x, "share");
    let h = handle(&x);
    sp_ok(&sp(&mut s, SP1, &[func::RXTX_UNMAP as u64, 0]), "unmap");
    let before = snapshot(&s);
    let map = [
        func::RXTX_MAP_64 as u64,
        SP_LEND_IPA,
        SP_LEND_IPA + PAGE_SIZE,
        1,
    ];
    // Before and after the borrower retrieved.
    assert_eq!(sp_err(&sp(&mut s, SP1, &map)), DENIED, "not retrieved");
    assert_eq!(snapshot(&s), before);
    retrieve(&mut s, SP2, SP1, h, perm::RW);
    let before = snapshot(&s);
    assert_eq!(sp_err(&sp(&mut s, SP1, &map)), DENIED, "retrieved");
    assert_eq!(snapshot(&s), before);
    // Once reclaimed the memory is SP1's alone again.
    sp_ok(&relinquish(&mut s, SP2, h), "relinquish");
    sp_ok(&sp(&mut s, SP1, &reclaim_call(h)), "reclaim");
    sp_ok(&sp(&mut s, SP1, &map), "RXTX_MAP after reclaim");
}

/// Memory donated to a partition is its own: buffers may go there, and then
/// that memory cannot be sent on while they do.
#[test]
fn donated_memory_may_hold_buffers_which_then_pin_it() {
    let mut s = world();
    let page = pa_of(&s, SP1, SP_LEND_IPA).0;
    let x = sp_send(
        &mut s,
        SP1,
        func::MEM_DONATE_64,
        &send_desc(SP1, SP2, 0, &[(SP_LEND_IPA, 2)]),
    );
    sp_ok(&x, "donate");
    retrieve(&mut s, SP2, SP1, handle(&x), perm::RW);
    sp_ok(&sp(&mut s, SP2, &[func::RXTX_UNMAP as u64, 0]), "unmap");
    let x = sp(
        &mut s,
        SP2,
        &[func::RXTX_MAP_64 as u64, page, page + PAGE_SIZE, 1],
    );
    sp_ok(&x, "RXTX_MAP over donated memory");
    // SP1's memory record still lists the pages, but they are not SP1's.
    sp_ok(&sp(&mut s, SP1, &[func::RXTX_UNMAP as u64, 0]), "unmap");
    let x = sp(
        &mut s,
        SP1,
        &[
            func::RXTX_MAP_64 as u64,
            SP_LEND_IPA,
            SP_LEND_IPA + PAGE_SIZE,
            1,
        ],
    );
    assert_ne!(x[0] as u32, func::SUCCESS_32, "SP1 maps what it donated");
    sp_ok(
        &sp(
            &mut s,
            SP1,
            &[func::RXTX_MAP_64 as u64, SP_TX_IPA, SP_RX_IPA, 1],
        ),
        "SP1 maps its buffers back",
    );
    let before = snapshot(&s);
    for f in SENDS {
        let x = sp_send(
            &mut s,
            SP2,
            f,
            &send_desc(SP2, SP1, perms_for(f), &[(page, 1)]),
        );
        assert_eq!(sp_err(&x), DENIED, "{f:#x} of SP2's TX page");
        assert_eq!(snapshot(&s), before);
    }
}

/// Defect 9: the normal world maps its RX buffer over a page it lent.
#[test]
fn the_normal_world_cannot_map_buffers_over_memory_in_a_transaction() {
    let mut s = world();
    let h = {
        let r = nwd_send(
            &mut s,
            func::MEM_LEND_64,
            &send_desc(0, SP1, perm::RW, &[(NS_MEM, 1)]),
        );
        sp_ok_regs(&r, "lend");
        r.x(2) | r.x(3) << 32
    };
    sp_ok_regs(
        &nwd_now(&mut s, &[func::RXTX_UNMAP as u64, 0]),
        "RXTX_UNMAP",
    );
    let map = [func::RXTX_MAP_64 as u64, NWD_TX, NS_MEM, 1];
    let before = snapshot(&s);
    assert_eq!(nwd_now(&mut s, &map).error_code(), DENIED, "lent");
    assert_eq!(snapshot(&s), before);
    // The borrower retrieves (through its own buffers).
    retrieve(&mut s, SP1, 0, h, perm::RW);
    let before = snapshot(&s);
    let r = nwd_now(&mut s, &map);
    if r.func() == func::SUCCESS_32 {
        // SP1 keeps data in its borrowed page; discovery overwrites it.
        s.platform_mut().nwd_write(NS_MEM, SECRET);
        nwd_now(&mut s, &partition_info_get());
        assert_eq!(
            s.platform().nwd_read(NS_MEM, SECRET.len()),
            SECRET,
            "the SPMC wrote into SP1's borrowed page"
        );
    }
    assert_eq!(r.error_code(), DENIED, "lent and retrieved");
    assert_eq!(snapshot(&s), before);
    // TX over it, too; and a page donated to a partition is not the normal
    // world's any more.
    let tx_over = [func::RXTX_MAP_64 as u64, NS_MEM, NWD_RX, 1];
    assert_eq!(nwd_now(&mut s, &tx_over).error_code(), DENIED, "TX");
    let donated = NS_MEM + 4 * PAGE_SIZE;
    let r = nwd_send_via(
        &mut s,
        func::MEM_DONATE_64,
        &send_desc(0, SP2, 0, &[(donated, 1)]),
    );
    sp_ok_regs(&r, "donate");
    retrieve(&mut s, SP2, 0, r.x(2) | r.x(3) << 32, perm::RW);
    let before = snapshot(&s);
    let r = nwd_now(&mut s, &[func::RXTX_MAP_64 as u64, NWD_TX, donated, 1]);
    assert_eq!(r.error_code(), DENIED, "donated away");
    assert_eq!(snapshot(&s), before);
    // Given back, the lent page is the normal world's again.
    sp_ok(&relinquish(&mut s, SP1, h), "relinquish");
    let r = nwd_now(
        &mut s,
        &[func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, 0],
    );
    sp_ok_regs(&r, "reclaim");
    sp_ok_regs(&nwd_now(&mut s, &map), "RXTX_MAP after reclaim");
}

/// A send from the normal world while it has no TX buffer: the descriptor
/// travels in the caller-supplied buffer at NS_BUF.
fn nwd_send_via(s: &mut Spmc<FakePlatform>, f: u32, desc: &[u8]) -> Regs {
    s.platform_mut().nwd_write(NS_BUF, desc);
    let n = desc.len() as u64;
    nwd_now(s, &[f as u64, n, n, NS_BUF, 1])
}

// ----------------------------------------------------------------------
// Caller-supplied buffers held by a fragmented send or retrieve
// ----------------------------------------------------------------------

/// FFA_MEM_FRAG_TX reads each fragment from the caller's buffer: that page
/// cannot be lent away between fragments (a partition, secure memory).
#[test]
fn a_partition_cannot_lend_the_buffer_of_its_fragmented_send() {
    let mut s = world();
    let buf = pa_of(&s, SP1, SP_BUF_IPA);
    let d = send_desc(SP1, SP2, perm::RW, &[(SP_LEND_IPA, 1)]);
    s.platform_mut().secure_write(buf, &d[..64]);
    let total = d.len() as u64;
    let x = sp(
        &mut s,
        SP1,
        &[func::MEM_SHARE_64 as u64, total, 64, SP_BUF_IPA, 1],
    );
    assert_eq!(x[0] as u32, func::MEM_FRAG_RX, "{x:x?}");
    let h = x[1] | x[2] << 32;
    let before = snapshot(&s);
    for f in SENDS {
        let lend = send_desc(SP1, SP2, perms_for(f), &[(SP_BUF_IPA, 1)]);
        let y = sp_send(&mut s, SP1, f, &lend);
        if y[0] as u32 == func::SUCCESS_32 {
            retrieve(&mut s, SP2, SP1, handle(&y), perm::RW);
            // SP2 writes its secret where SP1's next fragment would be.
            s.platform_mut().secure_write(buf, SECRET);
            let frag = [func::MEM_FRAG_TX as u64, h & 0xFFFF_FFFF, h >> 32, 16];
            let z = sp(&mut s, SP1, &frag);
            assert_ne!(
                z[0] as u32,
                func::MEM_FRAG_RX,
                "the SPMC took SP2's page as SP1's fragment"
            );
        }
        assert_eq!(sp_err(&y), DENIED, "{f:#x} of the fragment buffer");
        assert_eq!(snapshot(&s), before);
    }
    // The send completes from the buffer; then the page is free to go.
    s.platform_mut().secure_write(buf, &d[64..]);
    let frag = [
        func::MEM_FRAG_TX as u64,
        h & 0xFFFF_FFFF,
        h >> 32,
        total - 64,
    ];
    sp_ok(&sp(&mut s, SP1, &frag), "last fragment");
    let y = sp_send(
        &mut s,
        SP1,
        func::MEM_LEND_64,
        &send_desc(SP1, SP2, perm::RW, &[(SP_BUF_IPA, 1)]),
    );
    sp_ok(&y, "lend of the buffer page once the send is complete");
}

/// The same from the normal world: its buffer cannot be lent to a
/// partition while a fragmented send still reads from it.
#[test]
fn the_normal_world_cannot_lend_the_buffer_of_its_fragmented_send() {
    let mut s = world();
    let d = send_desc(0, SP1, perm::RW, &[(NS_MEM, 1)]);
    s.platform_mut().nwd_write(NS_BUF, &d[..64]);
    let total = d.len() as u64;
    let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, total, 64, NS_BUF, 1]);
    assert_eq!(r.func(), func::MEM_FRAG_RX, "{r:?}");
    let h = r.x(1) | r.x(2) << 32;
    let before = snapshot(&s);
    for f in SENDS {
        let r = nwd_send(&mut s, f, &send_desc(0, SP2, perms_for(f), &[(NS_BUF, 1)]));
        assert_eq!(r.error_code(), DENIED, "{f:#x} of the fragment buffer");
        assert_eq!(snapshot(&s), before);
    }
    // Reclaiming the send in progress cancels it and frees the buffer.
    sp_ok_regs(
        &nwd_now(
            &mut s,
            &[func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, 0],
        ),
        "cancel",
    );
    let r = nwd_send(
        &mut s,
        func::MEM_LEND_64,
        &send_desc(0, SP2, perm::RW, &[(NS_BUF, 1)]),
    );
    sp_ok_regs(&r, "lend of the buffer page once the send is cancelled");
}

/// The normal world shares 300 one-page ranges with SP2 (in two
/// fragments through its TX buffer): the handle.
fn share_many_with_sp2(s: &mut Spmc<FakePlatform>) -> u64 {
    let d = send_desc(0, SP2, perm::RW, &many_ranges());
    assert!(d.len() > 4096);
    s.platform_mut().nwd_write(NWD_TX, &d[..4096]);
    let total = d.len() as u64;
    let r = nwd_now(s, &[func::MEM_SHARE_64 as u64, total, 4096, 0, 0]);
    assert_eq!(r.func(), func::MEM_FRAG_RX, "{r:?}");
    let h = r.x(1) | r.x(2) << 32;
    s.platform_mut().nwd_write(NWD_TX, &d[4096..]);
    let r = nwd_now(
        s,
        &[
            func::MEM_FRAG_TX as u64,
            h & 0xFFFF_FFFF,
            h >> 32,
            total - 4096,
        ],
    );
    sp_ok_regs(&r, "last fragment");
    h
}

/// SP2 retrieves `h` with a one-page caller-supplied buffer at `buf_ipa`
/// (the request written there first, at `buf`).
fn retrieve_into(s: &mut Spmc<FakePlatform>, h: u64, buf_ipa: u64, buf: Pa) -> [u64; 8] {
    let d = retrieve_desc(0, h, SP2, perm::RW);
    s.platform_mut().secure_write(buf, &d);
    let n = d.len() as u64;
    sp(
        s,
        SP2,
        &[func::MEM_RETRIEVE_REQ_64 as u64, n, n, buf_ipa, 1],
    )
}

fn frag_rx(h: u64, offset: u64) -> [u64; 4] {
    [func::MEM_FRAG_RX as u64, h & 0xFFFF_FFFF, h >> 32, offset]
}

/// FFA_MEM_FRAG_RX writes each fragment into the caller's buffer: that page
/// cannot be lent away while the response is still being read.
#[test]
fn a_partition_cannot_lend_the_buffer_of_its_fragmented_retrieve() {
    let mut s = world();
    let h = share_many_with_sp2(&mut s);
    let buf = pa_of(&s, SP2, SP_BUF_IPA);
    let x = retrieve_into(&mut s, h, SP_BUF_IPA, buf);
    assert_eq!(x[0] as u32, func::MEM_RETRIEVE_RESP, "{x:x?}");
    assert!(x[1] > 4096 && x[2] == 4096, "{x:x?}");
    assert_eq!(s.mem().outgoing_count(), 1);
    let before = snapshot(&s);
    for f in SENDS {
        let lend = send_desc(SP2, SP1, perms_for(f), &[(SP_BUF_IPA, 1)]);
        let y = sp_send(&mut s, SP2, f, &lend);
        if y[0] as u32 == func::SUCCESS_32 {
            retrieve(&mut s, SP1, SP2, handle(&y), perm::RW);
            // SP1 keeps a secret in the page it got; SP2 reads on.
            s.platform_mut().secure_write(buf, SECRET);
            sp(&mut s, SP2, &frag_rx(h, 4096));
            assert_eq!(
                s.platform().secure_read(buf, SECRET.len()),
                SECRET,
                "FFA_MEM_FRAG_RX wrote into SP1's page"
            );
        }
        assert_eq!(sp_err(&y), DENIED, "{f:#x} of the retrieve buffer");
        assert_eq!(snapshot(&s), before);
    }
    // The response is read to its end; then the page is free to go.
    let y = sp(&mut s, SP2, &frag_rx(h, 4096));
    assert_eq!(y[0] as u32, func::MEM_FRAG_TX, "{y:x?}");
    assert_eq!(s.mem().outgoing_count(), 0);
    let y = sp_send(
        &mut s,
        SP2,
        func::MEM_LEND_64,
        &send_desc(SP2, SP1, perm::RW, &[(SP_BUF_IPA, 1)]),
    );
    sp_ok(&y, "lend of the buffer page once the response is read");
}

/// A caller-supplied buffer in borrowed memory: the borrower could give the
/// memory back while the SPMC still holds the buffer.
#[test]
fn a_caller_buffer_must_be_the_callers_own_memory() {
    let mut s = world();
    let h = share_many_with_sp2(&mut s);
    let lent = pa_of(&s, SP1, SP_LEND_IPA);
    let x = sp_send(
        &mut s,
        SP1,
        func::MEM_LEND_64,
        &send_desc(SP1, SP2, perm::RW, &[(SP_LEND_IPA, 1)]),
    );
    sp_ok(&x, "lend");
    let lent_h = handle(&x);
    retrieve(&mut s, SP2, SP1, lent_h, perm::RW);
    let before = snapshot(&s);
    // SP2 sees the borrowed page at IPA = PA.
    let x = retrieve_into(&mut s, h, lent.0, lent);
    if x[0] as u32 == func::MEM_RETRIEVE_RESP {
        sp_ok(&relinquish(&mut s, SP2, lent_h), "relinquish");
        sp_ok(&sp(&mut s, SP1, &reclaim_call(lent_h)), "reclaim");
        s.platform_mut().secure_write(lent, SECRET);
        sp(&mut s, SP2, &frag_rx(h, 4096));
        assert_eq!(
            s.platform().secure_read(lent, SECRET.len()),
            SECRET,
            "FFA_MEM_FRAG_RX wrote into SP1's page"
        );
    }
    assert_eq!(sp_err(&x), DENIED, "retrieve into a borrowed buffer");
    assert_eq!(snapshot(&s), before);
    // The same for a send's buffer.
    let d = send_desc(SP2, SP1, perm::RW, &[(SP_BUF_IPA, 1)]);
    s.platform_mut().secure_write(lent, &d);
    let n = d.len() as u64;
    let x = sp(&mut s, SP2, &[func::MEM_SHARE_64 as u64, n, 64, lent.0, 1]);
    assert_eq!(sp_err(&x), DENIED, "send from a borrowed buffer");
    assert_eq!(snapshot(&s), before);
    // And the normal world's buffer in memory it lent.
    let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, 200, 64, NS_MEM, 1]);
    assert_eq!(
        r.error_code(),
        DENIED,
        "normal-world buffer in shared memory"
    );
    assert_eq!(snapshot(&s), before);
}

// ----------------------------------------------------------------------
// Property test: random sequences never leave a buffer in memory that
// anyone but its endpoint can reach
// ----------------------------------------------------------------------

use proptest::prelude::*;

/// Normal-world pages the sequences use (the buffers among them).
const NS_PAGES: [u64; 6] = [
    NWD_TX,
    NWD_RX,
    NS_MEM,
    NS_MEM + PAGE_SIZE,
    NS_MEM + 2 * PAGE_SIZE,
    NS_BUF,
];
/// IPAs of a partition's RAM the sequences use (its buffers among them).
const SP_PAGES: [u64; 5] = [
    SP_TX_IPA,
    SP_RX_IPA,
    SP_LEND_IPA,
    SP_LEND_IPA + PAGE_SIZE,
    SP_BUF_IPA,
];
const ACTORS: [u16; 2] = [SP1, SP2];

#[derive(Clone, Copy, Debug)]
enum Target {
    /// One of `SP_PAGES` in the partition's own IPA layout.
    Own(u8),
    /// IPA = PA of the first page of a transaction's memory.
    Borrowed(u8),
}

#[derive(Clone, Debug)]
enum Step {
    NwdSend(u8, u8, u8),
    SpSend(u8, u8, u8),
    Retrieve(u8, u8),
    Relinquish(u8, u8),
    Reclaim(u8),
    SpMap(u8, Target, Target),
    NwdMap(u8, u8),
    /// A partition starts a two-fragment share with a caller buffer.
    SpFragStart(u8, Target),
    /// The oldest fragmented send in progress gets its last fragment.
    SpFragFinish,
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (0u8..5).prop_map(Target::Own),
        any::<u8>().prop_map(Target::Borrowed),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..3, 0u8..6, 0u8..2).prop_map(|(op, page, to)| Step::NwdSend(op, page, to)),
        3 => (0u8..2, 0u8..3, 0u8..5).prop_map(|(who, op, page)| Step::SpSend(who, op, page)),
        4 => (any::<u8>(), 0u8..2).prop_map(|(h, who)| Step::Retrieve(h, who)),
        2 => (any::<u8>(), 0u8..2).prop_map(|(h, who)| Step::Relinquish(h, who)),
        2 => any::<u8>().prop_map(Step::Reclaim),
        2 => (0u8..2, target(), target()).prop_map(|(who, tx, rx)| Step::SpMap(who, tx, rx)),
        2 => (0u8..6, 0u8..6).prop_map(|(tx, rx)| Step::NwdMap(tx, rx)),
        1 => (0u8..2, target()).prop_map(|(who, buf)| Step::SpFragStart(who, buf)),
        1 => Just(Step::SpFragFinish),
    ]
}

/// A transaction the sequence made: handle, owner.
type Made = Vec<(u64, u16)>;

fn pick(made: &Made, i: u8) -> Option<(u64, u16)> {
    (!made.is_empty()).then(|| made[i as usize % made.len()])
}

/// The address a partition names for `t`: an IPA of its own layout, or
/// IPA = PA of a transaction's first page (memory it may have borrowed).
fn address(s: &Spmc<FakePlatform>, made: &Made, t: Target) -> u64 {
    match t {
        Target::Own(i) => SP_PAGES[i as usize],
        Target::Borrowed(i) => pick(made, i)
            .and_then(|(h, _)| s.mem().transaction(h))
            .map_or(SP_PAGES[0], |t| t.runs[0].pa),
    }
}

fn op_func(op: u8) -> u32 {
    SENDS[op as usize % 3]
}

fn has_buffers(s: &Spmc<FakePlatform>, id: u16) -> bool {
    s.partition(slot(s, id)).buffers.is_some()
}

/// Partitions that can reach physical page `pa` (from their stage-2
/// tables alone: their own regions' IPAs, and IPA = PA where borrowed or
/// donated memory goes).
fn accessors(s: &Spmc<FakePlatform>, secure: bool, pa: u64) -> Vec<u16> {
    let mut out = Vec::new();
    for p in s.partitions() {
        let s2 = &p.stage2;
        let reaches = if secure {
            s2.lookup(IpaSpace::Secure, Ipa(pa))
                .is_some_and(|t| t.pa.0 == pa)
                || p.memory.iter().any(|(ipa, a)| {
                    (0..a.pages).any(|i| {
                        s2.lookup(IpaSpace::Secure, Ipa(ipa.0 + i * PAGE_SIZE))
                            .is_some_and(|t| t.pa.0 == pa)
                    })
                })
        } else {
            s2.lookup(IpaSpace::NonSecure, Ipa(pa)).is_some()
        };
        if reaches {
            out.push(p.id().raw());
        }
    }
    out
}

fn in_any_transaction(s: &Spmc<FakePlatform>, secure: bool, pa: u64) -> bool {
    s.mem()
        .transactions()
        .iter()
        .any(|t| t.secure == secure && t.runs.iter().any(|r| pa >= r.pa && pa < r.pa + r.len()))
}

/// The contract after every step: each page of a buffer the SPMC keeps is
/// reachable by its endpoint alone and belongs to no transaction.
fn check(s: &Spmc<FakePlatform>) {
    for p in s.partitions() {
        let Some(b) = p.buffers else { continue };
        for (ipa, pa) in [(b.tx_addr, b.tx), (b.rx_addr, b.rx)] {
            for i in 0..b.size / PAGE_SIZE {
                let (ipa, pa) = (ipa + i * PAGE_SIZE, pa.0 + i * PAGE_SIZE);
                let t = p.stage2.lookup(IpaSpace::Secure, Ipa(ipa));
                assert!(
                    t.is_some_and(|t| t.pa.0 == pa && t.write),
                    "{:#x}'s buffer at {ipa:#x} is not its writable page {pa:#x}",
                    p.id()
                );
                assert_eq!(
                    accessors(s, true, pa),
                    [p.id().raw()],
                    "{:#x}'s buffer page {pa:#x}",
                    p.id()
                );
                assert!(!in_any_transaction(s, true, pa), "{pa:#x} in a transaction");
            }
        }
    }
    if let Some(b) = s.normal_world(0).and_then(|e| e.buffers) {
        for pa in [b.tx.0, b.rx.0] {
            assert_eq!(accessors(s, false, pa), [], "normal-world buffer {pa:#x}");
            assert!(
                !in_any_transaction(s, false, pa),
                "{pa:#x} in a transaction"
            );
        }
    }
    for (r, pin) in s.mem().held_buffers() {
        let who = accessors(s, r.secure, r.pa.0);
        assert!(
            if r.secure {
                who.len() == 1
            } else {
                who.is_empty()
            },
            "fragment buffer {r:?} ({pin:?}) reachable by {who:x?}"
        );
        assert!(
            !in_any_transaction(s, r.secure, r.pa.0),
            "{r:?} in a transaction"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_every_buffer_its_endpoints_alone(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        let mut s = world();
        let mut made: Made = Vec::new();
        // Fragmented sends in progress: handle, sender, buffer PA, the rest.
        let mut frags: Vec<(u64, u16, Pa, Vec<u8>)> = Vec::new();
        for st in steps {
            match st {
                Step::NwdSend(op, page, to) => {
                    let f = op_func(op);
                    let d = send_desc(0, ACTORS[to as usize], perms_for(f), &[(NS_PAGES[page as usize], 1)]);
                    if s.normal_world(0).and_then(|e| e.buffers).is_some() {
                        let r = nwd_send(&mut s, f, &d);
                        if r.func() == func::SUCCESS_32 {
                            made.push((r.x(2) | r.x(3) << 32, 0));
                        }
                    }
                }
                Step::SpSend(who, op, page) => {
                    let (me, other) = (ACTORS[who as usize], ACTORS[1 - who as usize]);
                    let f = op_func(op);
                    if has_buffers(&s, me) {
                        let d = send_desc(me, other, perms_for(f), &[(SP_PAGES[page as usize], 1)]);
                        let x = sp_send(&mut s, me, f, &d);
                        if x[0] as u32 == func::SUCCESS_32 {
                            made.push((handle(&x), me));
                        }
                    }
                }
                Step::Retrieve(h, who) => {
                    let me = ACTORS[who as usize];
                    if let Some((h, owner)) = pick(&made, h) && has_buffers(&s, me) {
                        let d = retrieve_desc(owner, h, me, perm::RW);
                        let tx = buffers(&s, me).tx;
                        s.platform_mut().secure_write(tx, &d);
                        let n = d.len() as u64;
                        let x = sp(&mut s, me, &[func::MEM_RETRIEVE_REQ_64 as u64, n, n, 0, 0]);
                        if x[0] as u32 == func::MEM_RETRIEVE_RESP {
                            sp(&mut s, me, &[func::RX_RELEASE as u64]);
                        }
                    }
                }
                Step::Relinquish(h, who) => {
                    let me = ACTORS[who as usize];
                    if let Some((h, _)) = pick(&made, h) && has_buffers(&s, me) {
                        relinquish(&mut s, me, h);
                    }
                }
                Step::Reclaim(h) => {
                    if let Some((h, owner)) = pick(&made, h) {
                        if owner == 0 {
                            nwd_now(&mut s, &reclaim_call(h));
                        } else {
                            sp(&mut s, owner, &reclaim_call(h));
                        }
                        frags.retain(|f| f.0 != h);
                    }
                }
                Step::SpMap(who, tx, rx) => {
                    let me = ACTORS[who as usize];
                    let old = s.partition(slot(&s, me)).buffers;
                    sp(&mut s, me, &[func::RXTX_UNMAP as u64, 0]);
                    let (tx, rx) = (address(&s, &made, tx), address(&s, &made, rx));
                    let x = sp(&mut s, me, &[func::RXTX_MAP_64 as u64, tx, rx, 1]);
                    if x[0] as u32 != func::SUCCESS_32
                        && let Some(b) = old
                    {
                        // The old pair was its own alone: it still is.
                        let x = sp(&mut s, me, &[func::RXTX_MAP_64 as u64, b.tx_addr, b.rx_addr, 1]);
                        sp_ok(&x, "the old buffers back");
                    }
                }
                Step::NwdMap(tx, rx) => {
                    let old = s.normal_world(0).and_then(|e| e.buffers);
                    nwd_now(&mut s, &[func::RXTX_UNMAP as u64, 0]);
                    let (tx, rx) = (NS_PAGES[tx as usize], NS_PAGES[rx as usize]);
                    let r = nwd_now(&mut s, &[func::RXTX_MAP_64 as u64, tx, rx, 1]);
                    if r.func() != func::SUCCESS_32
                        && let Some(b) = old
                    {
                        let r = nwd_now(&mut s, &[func::RXTX_MAP_64 as u64, b.tx.0, b.rx.0, 1]);
                        sp_ok_regs(&r, "the old buffers back");
                    }
                }
                Step::SpFragStart(who, buf) => {
                    let (me, other) = (ACTORS[who as usize], ACTORS[1 - who as usize]);
                    let ipa = address(&s, &made, buf);
                    let t = s.partition(slot(&s, me)).stage2.lookup(IpaSpace::Secure, Ipa(ipa));
                    if let Some(t) = t {
                        let d = send_desc(me, other, perm::RW, &[(SP_LEND_IPA + PAGE_SIZE, 1)]);
                        s.platform_mut().secure_write(t.pa, &d[..64]);
                        let n = d.len() as u64;
                        let x = sp(&mut s, me, &[func::MEM_SHARE_64 as u64, n, 64, ipa, 1]);
                        if x[0] as u32 == func::MEM_FRAG_RX {
                            frags.push((x[1] | x[2] << 32, me, t.pa, d[64..].to_vec()));
                        }
                    }
                }
                Step::SpFragFinish => {
                    if !frags.is_empty() {
                        let (h, me, pa, rest) = frags.remove(0);
                        s.platform_mut().secure_write(pa, &rest);
                        let frag = [func::MEM_FRAG_TX as u64, h & 0xFFFF_FFFF, h >> 32, rest.len() as u64];
                        let x = sp(&mut s, me, &frag);
                        if x[0] as u32 == func::SUCCESS_32 {
                            made.push((h, me));
                        }
                    }
                }
            }
            check(&s);
        }
    }
}
