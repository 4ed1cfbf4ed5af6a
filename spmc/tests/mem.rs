//! Host tests of FF-A memory sharing (docs/memory-sharing.md): every handler's
//! success path in both descriptor layouts, fragmentation both ways, the
//! stage-2 changes at each step, the per-user rule, every error with its code
//! and no state changed, and a property test of random sequences.

mod common;

use common::world::*;
use proptest::prelude::*;
use spmc::Next;
use spmc::Spmc;
use spmc::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use spmc::ffa::{FfaError, Regs, func};
use spmc::ids::{PartId, SlotId};
use spmc::mem::desc::{self, Layout, Op, attr, flags, perm};
use spmc::mem::{BorrowerState, Owner};
use spmc::stage2::Translation;
use spmc::testing::{FakePlatform, NS_BASE, sp_call, sp_fault};

const SP1: u16 = 0x8001;
const SP2: u16 = 0x8002;
const TPM: u16 = 0x8003;
const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;
/// Normal-world memory the tests share (clear of the RX/TX buffers).
const NS_MEM: u64 = NS_BASE + 0x20_0000;
/// A caller-supplied buffer in normal-world memory.
const NS_BUF: u64 = NS_BASE + 0x40_0000;
/// The first page of a partition's RAM it may lend (clear of its RX/TX at +0x10000).
const SP_LEND_IPA: u64 = RAM_IPA + 0x4000;

fn code(e: FfaError) -> Option<i32> {
    Some(e.code())
}

/// A transaction descriptor, built byte by byte from DEN0140 (independently
/// of the SPMC's own encoder).
#[derive(Clone, Debug)]
struct D {
    layout: Layout,
    esz: usize,
    sender: u16,
    attrs: u16,
    flags: u32,
    handle: u64,
    tag: u64,
    receivers: Vec<(u16, u8)>,
    ranges: Vec<(u64, u32)>,
    /// Write no composite (retrieve requests).
    no_composite: bool,
}

impl D {
    fn send(sender: u16, receivers: &[(u16, u8)], ranges: &[(u64, u32)]) -> Self {
        Self {
            layout: Layout::V1_1,
            esz: 32,
            sender,
            attrs: attr::NORMAL_WB_INNER,
            flags: 0,
            handle: 0,
            tag: 0,
            receivers: receivers.to_vec(),
            ranges: ranges.to_vec(),
            no_composite: false,
        }
    }

    fn retrieve(sender: u16, handle: u64, me: u16, perms: u8) -> Self {
        Self {
            attrs: 0,
            handle,
            receivers: vec![(me, perms)],
            ranges: vec![],
            no_composite: true,
            ..Self::send(sender, &[], &[])
        }
    }

    fn v1_0(mut self) -> Self {
        self.layout = Layout::V1_0;
        self.esz = 16;
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let hdr = if self.layout == Layout::V1_0 { 32 } else { 48 };
        let comp = hdr + self.esz * self.receivers.len();
        let len = if self.no_composite {
            comp
        } else {
            comp + 16 + 16 * self.ranges.len()
        };
        let mut b = vec![0u8; len];
        b[0..2].copy_from_slice(&self.sender.to_le_bytes());
        if self.layout == Layout::V1_0 {
            b[2] = self.attrs as u8;
        } else {
            b[2..4].copy_from_slice(&self.attrs.to_le_bytes());
            b[24..28].copy_from_slice(&(self.esz as u32).to_le_bytes());
            b[32..36].copy_from_slice(&(hdr as u32).to_le_bytes());
        }
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.handle.to_le_bytes());
        b[16..24].copy_from_slice(&self.tag.to_le_bytes());
        b[28..32].copy_from_slice(&(self.receivers.len() as u32).to_le_bytes());
        for (i, (id, p)) in self.receivers.iter().enumerate() {
            let at = hdr + i * self.esz;
            b[at..at + 2].copy_from_slice(&id.to_le_bytes());
            b[at + 2] = *p;
            if !self.no_composite {
                b[at + 4..at + 8].copy_from_slice(&(comp as u32).to_le_bytes());
            }
        }
        if !self.no_composite {
            let total: u32 = self.ranges.iter().map(|r| r.1).sum();
            b[comp..comp + 4].copy_from_slice(&total.to_le_bytes());
            b[comp + 4..comp + 8].copy_from_slice(&(self.ranges.len() as u32).to_le_bytes());
            for (i, (a, n)) in self.ranges.iter().enumerate() {
                let at = comp + 16 + 16 * i;
                b[at..at + 8].copy_from_slice(&a.to_le_bytes());
                b[at + 8..at + 12].copy_from_slice(&n.to_le_bytes());
            }
        }
        b
    }
}

fn relinquish_desc(handle: u64, fl: u32, ids: &[u16]) -> Vec<u8> {
    let mut b = vec![0u8; 16 + 2 * ids.len()];
    b[0..8].copy_from_slice(&handle.to_le_bytes());
    b[8..12].copy_from_slice(&fl.to_le_bytes());
    b[12..16].copy_from_slice(&(ids.len() as u32).to_le_bytes());
    for (i, id) in ids.iter().enumerate() {
        b[16 + 2 * i..18 + 2 * i].copy_from_slice(&id.to_le_bytes());
    }
    b
}

fn handle_of(r: &Regs) -> u64 {
    r.x(2) | r.x(3) << 32
}

/// The normal world sends `d` with `f` through its TX buffer.
fn nwd_send(s: &mut Spmc<FakePlatform>, f: u32, d: &D) -> Regs {
    let b = d.bytes();
    s.platform_mut().nwd_write(NWD_TX, &b);
    nwd_now(s, &[f as u64, b.len() as u64, b.len() as u64, 0, 0])
}

/// A successful normal-world send: its handle.
fn nwd_send_ok(s: &mut Spmc<FakePlatform>, f: u32, d: &D) -> u64 {
    let r = nwd_send(s, f, d);
    assert_eq!(r.func(), func::SUCCESS_32, "send failed: {r:?}");
    handle_of(&r)
}

fn nwd_reclaim(s: &mut Spmc<FakePlatform>, handle: u64, fl: u32) -> Regs {
    nwd_now(
        s,
        &[
            func::MEM_RECLAIM as u64,
            handle & 0xFFFF_FFFF,
            handle >> 32,
            fl as u64,
        ],
    )
}

/// Runs partition `id` for a direct request from `vm` and makes it call
/// `call`; returns x0-x7 of the answer (the partition then responds).
fn sp_as(s: &mut Spmc<FakePlatform>, vm: u16, id: u16, call: &[u64]) -> [u64; 8] {
    if call.len() >= 4 && call[3] == 0 && s.slot_of(PartId::new(id)).is_some() {
        // A send's descriptor in TX follows DEN0140's attribute rule.
        if let Some(b) = s.partition(slot(s, id)).buffers {
            let mut d = s.platform().secure_read(b.tx, 64);
            conform_send(call[0], &mut d);
            s.platform_mut().secure_write(b.tx, &d);
        }
    }
    let (next, mut regs) = nwd(s, &[REQ64, (vm as u64) << 16 | id as u64, 0, 0]);
    let v = running(&next);
    let n = sp_call(s, v, call, &mut regs);
    assert_eq!(running(&n), v, "answered at once");
    let mut out = [0u64; 8];
    out.copy_from_slice(&s.vcpu_context_mut(v).x[..8]);
    let n = sp_call(
        s,
        v,
        &[RESP64, (id as u64) << 16 | vm as u64, 0, 0, 0, 0, 0, 0],
        &mut regs,
    );
    assert!(matches!(n, Next::NormalWorld));
    out
}

/// Lets partition `id` negotiate its version again, as a fresh boot would
/// (its version is fixed once it has made another call, §13.2).
fn reopen_sp(s: &mut Spmc<FakePlatform>, id: u16) {
    let slot = s.slot_of(PartId::new(id)).unwrap().index();
    s.partitions_mut_for_tests()[slot].version_fixed = false;
}

fn sp(s: &mut Spmc<FakePlatform>, id: u16, call: &[u64]) -> [u64; 8] {
    sp_as(s, 0, id, call)
}

fn sp_err(x: &[u64; 8]) -> Option<i32> {
    (x[0] as u32 == func::ERROR_32).then_some(x[2] as u32 as i32)
}

fn slot(s: &Spmc<FakePlatform>, id: u16) -> SlotId {
    s.slot_of(PartId::new(id)).unwrap()
}

fn sp_write_tx(s: &mut Spmc<FakePlatform>, id: u16, data: &[u8]) {
    let tx = s.partition(slot(s, id)).buffers.unwrap().tx;
    s.platform_mut().secure_write(tx, data);
}

fn sp_read_rx(s: &Spmc<FakePlatform>, id: u16, len: usize) -> Vec<u8> {
    let rx = s.partition(slot(s, id)).buffers.unwrap().rx;
    s.platform().secure_read(rx, len)
}

/// Partition `id` (reached by `vm`) retrieves with request `d`: the
/// response's bytes (fragments followed), or the error code. Releases its RX.
fn retrieve_as(s: &mut Spmc<FakePlatform>, vm: u16, id: u16, d: &D) -> Result<Vec<u8>, i32> {
    let b = d.bytes();
    sp_write_tx(s, id, &b);
    let x = sp_as(
        s,
        vm,
        id,
        &[
            func::MEM_RETRIEVE_REQ_64 as u64,
            b.len() as u64,
            b.len() as u64,
            0,
            0,
        ],
    );
    if let Some(e) = sp_err(&x) {
        return Err(e);
    }
    assert_eq!(x[0] as u32, func::MEM_RETRIEVE_RESP);
    let (total, mut got) = (x[1] as usize, x[2] as usize);
    let mut out = sp_read_rx(s, id, got);
    while got < total {
        let x = sp_as(s, vm, id, &[func::RX_RELEASE as u64]);
        assert_eq!(x[0] as u32, func::SUCCESS_32);
        let x = sp_as(
            s,
            vm,
            id,
            &[
                func::MEM_FRAG_RX as u64,
                d.handle & 0xFFFF_FFFF,
                d.handle >> 32,
                got as u64,
            ],
        );
        assert_eq!(x[0] as u32, func::MEM_FRAG_TX, "{x:x?}");
        assert_eq!(x[1] | x[2] << 32, d.handle);
        let n = x[3] as usize;
        out.extend(sp_read_rx(s, id, n));
        got += n;
    }
    let x = sp_as(s, vm, id, &[func::RX_RELEASE as u64]);
    assert_eq!(x[0] as u32, func::SUCCESS_32);
    Ok(out)
}

fn retrieve(s: &mut Spmc<FakePlatform>, id: u16, d: &D) -> Result<Vec<u8>, i32> {
    retrieve_as(s, 0, id, d)
}

fn relinquish_as(
    s: &mut Spmc<FakePlatform>,
    vm: u16,
    id: u16,
    handle: u64,
    fl: u32,
) -> Option<i32> {
    sp_write_tx(s, id, &relinquish_desc(handle, fl, &[id]));
    let x = sp_as(s, vm, id, &[func::MEM_RELINQUISH as u64]);
    if x[0] as u32 == func::SUCCESS_32 {
        None
    } else {
        sp_err(&x)
    }
}

fn relinquish(s: &mut Spmc<FakePlatform>, id: u16, handle: u64, fl: u32) -> Option<i32> {
    relinquish_as(s, 0, id, handle, fl)
}

fn lookup(s: &Spmc<FakePlatform>, id: u16, space: IpaSpace, ipa: u64) -> Option<Translation> {
    s.partition(slot(s, id)).stage2.lookup(space, Ipa(ipa))
}

/// What must not change when a call fails.
#[derive(Debug, PartialEq)]
struct Snapshot {
    transactions: Vec<(u64, Vec<BorrowerState>)>,
    donated: usize,
    incoming: usize,
    outgoing: usize,
    maps: Vec<Option<Translation>>,
}

fn snapshot(s: &Spmc<FakePlatform>) -> Snapshot {
    let mut maps = Vec::new();
    for id in [SP1, SP2, TPM] {
        for i in 0..4 {
            maps.push(lookup(s, id, IpaSpace::NonSecure, NS_MEM + i * PAGE_SIZE));
            maps.push(lookup(s, id, IpaSpace::Secure, SP_LEND_IPA + i * PAGE_SIZE));
        }
    }
    Snapshot {
        transactions: s
            .mem()
            .transactions()
            .iter()
            .map(|t| (t.handle, t.borrowers.iter().map(|b| b.state).collect()))
            .collect(),
        donated: s.mem().donated().len(),
        incoming: s.mem().incoming_count(),
        outgoing: s.mem().outgoing_count(),
        maps,
    }
}

fn world() -> Spmc<FakePlatform> {
    let mut s = booted();
    let r = nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    assert_eq!(r.0[0], 0x1_0002);
    map_nwd_buffers(&mut s);
    s
}

// ----------------------------------------------------------------------
// Success paths
// ----------------------------------------------------------------------

#[test]
fn share_retrieve_relinquish_reclaim_from_the_normal_world() {
    let mut s = world();
    s.platform_mut()
        .nwd_write(NS_MEM, b"hello from the normal world");
    // A sharer leaves the instruction access "not specified" (DEN0140 §1.11).
    let d = D::send(0, &[(SP1, perm::RW)], &[(NS_MEM, 2)]);
    let h = nwd_send_ok(&mut s, func::MEM_SHARE_64, &d);
    assert_eq!(h >> 63, 0, "SPMC-allocated handle");
    let t = s.mem().transaction(h).unwrap();
    assert_eq!(
        (t.op, t.owner, t.secure),
        (Op::Share, Owner::NormalWorld(0), false)
    );
    assert_eq!(
        lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM),
        None,
        "not before retrieve"
    );

    let resp = retrieve(&mut s, SP1, &D::retrieve(0, h, SP1, perm::RW)).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!((r.sender, r.handle, r.total_pages), (0, h, 2));
    assert_eq!(
        r.emad_size, 32,
        "v1.2 retriever: 32-byte access descriptors"
    );
    assert_eq!(r.ranges[0].addr, NS_MEM, "IPA = PA");
    assert_eq!(r.receivers[0].perms, perm::RW | perm::NX);
    assert_ne!(
        r.attributes & attr::NS,
        0,
        "normal-world memory has the NS bit"
    );
    assert_eq!(r.flags & flags::TYPE_MASK, Op::Share.type_bits());
    for i in 0..2 {
        let t = lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM + i * PAGE_SIZE).unwrap();
        assert_eq!(t.pa, Pa(NS_MEM + i * PAGE_SIZE));
        assert!(t.read && t.write && !t.exec);
    }
    assert_eq!(
        lookup(&s, SP2, IpaSpace::NonSecure, NS_MEM),
        None,
        "only the borrower"
    );

    // Reclaim is refused while the borrower holds it.
    assert_eq!(
        nwd_reclaim(&mut s, h, 0).error_code(),
        code(FfaError::Denied)
    );
    s.platform_mut().invalidations.clear();
    assert_eq!(relinquish(&mut s, SP1, h, 0), None);
    assert_eq!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM), None);
    let vmid = s.partition(slot(&s, SP1)).stage2.vmid();
    assert!(
        s.platform()
            .invalidations
            .iter()
            .any(|i| i.vmid == vmid && i.space == IpaSpace::NonSecure && i.ipa == Ipa(NS_MEM)),
        "relinquish invalidates the borrower's NS TLB entries"
    );
    assert_eq!(nwd_reclaim(&mut s, h, 0).func(), func::SUCCESS_32);
    assert!(s.mem().transaction(h).is_none());
    assert_eq!(
        nwd_reclaim(&mut s, h, 0).error_code(),
        code(FfaError::InvalidParameters),
        "a retired handle"
    );
    // The memory can be shared again.
    nwd_send_ok(&mut s, func::MEM_SHARE_32, &d);
}

#[test]
fn v1_0_descriptors_both_ways() {
    let mut s = world();
    s.reopen_nwd_version_for_tests();
    let r = nwd_now(&mut s, &[func::VERSION as u64, 0x1_0000]);
    assert_eq!(r.0[0], 0x1_0002);
    let d = D::send(0, &[(SP2, perm::RO)], &[(NS_MEM, 1)]).v1_0();
    let h = nwd_send_ok(&mut s, func::MEM_LEND_32, &d);
    // A v1.1 descriptor from a v1.0 caller is read as v1.0 and refused.
    let r = nwd_send(
        &mut s,
        func::MEM_SHARE_64,
        &D::send(0, &[(SP1, perm::RO)], &[(NS_MEM + 0x10000, 1)]),
    );
    assert_eq!(r.error_code(), code(FfaError::InvalidParameters));
    // SP2 negotiates v1.0 and retrieves in that layout.
    reopen_sp(&mut s, SP2);
    let x = sp(&mut s, SP2, &[func::VERSION as u64, 0x1_0000]);
    assert_eq!(x[0], 0x1_0002);
    let resp = retrieve(&mut s, SP2, &D::retrieve(0, h, SP2, perm::RO).v1_0()).unwrap();
    let r = desc::parse(&resp, Layout::V1_0, desc::Purpose::Send).unwrap();
    assert_eq!((r.handle, r.total_pages, r.ranges[0].addr), (h, 1, NS_MEM));
    assert_eq!(r.attributes & attr::NS, 0, "no NS bit in v1.0");
    assert_eq!(resp.len(), 32 + 16 + 16 + 16);
    let t = lookup(&s, SP2, IpaSpace::NonSecure, NS_MEM).unwrap();
    assert!(t.read && !t.write, "read-only as lent");
    assert_eq!(relinquish(&mut s, SP2, h, 0), None);
    assert_eq!(nwd_reclaim(&mut s, h, 0).func(), func::SUCCESS_32);
    // SP2 back to v1.2, a v1.1 caller gets 16-byte access descriptors.
    reopen_sp(&mut s, SP2);
    sp(&mut s, SP2, &[func::VERSION as u64, 0x1_0001]);
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0001]);
    let mut d = D::send(0, &[(SP2, perm::RW)], &[(NS_MEM, 1)]);
    d.esz = 16;
    let h = nwd_send_ok(&mut s, func::MEM_SHARE_64, &d);
    let mut rq = D::retrieve(0, h, SP2, perm::RW);
    rq.esz = 16;
    let resp = retrieve(&mut s, SP2, &rq).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!(r.emad_size, 16);
}

#[test]
fn lend_with_zeroing_and_several_borrowers() {
    let mut s = world();
    s.platform_mut().nwd_write(NS_MEM, &[0x5A; 64]);
    let mut d = D::send(
        0,
        &[(SP1, perm::RW), (SP2, perm::RO)],
        &[(NS_MEM, 1), (NS_MEM + 0x3000, 2)],
    );
    d.flags = flags::ZERO;
    let h = nwd_send_ok(&mut s, func::MEM_LEND_64, &d);
    assert_eq!(
        s.platform().nwd_read(NS_MEM, 64),
        vec![0x5A; 64],
        "zeroed on retrieval, not before"
    );
    // SP2 asks for more than it was given: DENIED, nothing mapped.
    let before = snapshot(&s);
    assert_eq!(
        retrieve(&mut s, SP2, &D::retrieve(0, h, SP2, perm::RW)).unwrap_err(),
        FfaError::Denied.code()
    );
    assert_eq!(snapshot(&s), before);
    let resp = retrieve(&mut s, SP1, &D::retrieve(0, h, SP1, 0)).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_ne!(r.flags & flags::ZERO, 0, "the response says it was zeroed");
    assert_eq!(r.ranges.len(), 2);
    assert_eq!(s.platform().nwd_read(NS_MEM, 64), vec![0; 64]);
    retrieve(&mut s, SP2, &D::retrieve(0, h, SP2, perm::RO)).unwrap();
    assert!(lookup(&s, SP2, IpaSpace::NonSecure, NS_MEM + 0x4000).is_some_and(|t| !t.write));
    assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM + 0x4000).is_some_and(|t| t.write));
    // A second retrieve by the same borrower counts (DEN0140 §1.12): it is
    // relinquished twice, the memory mapped until the second.
    retrieve(&mut s, SP1, &D::retrieve(0, h, SP1, 0)).unwrap();
    assert_eq!(relinquish(&mut s, SP1, h, 0), None);
    assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM).is_some());
    assert_eq!(relinquish(&mut s, SP1, h, 0), None);
    assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM).is_none());
    assert_eq!(
        nwd_reclaim(&mut s, h, 0).error_code(),
        code(FfaError::Denied),
        "SP2 holds it"
    );
    s.platform_mut().nwd_write(NS_MEM + 0x3000, &[7; 16]);
    assert_eq!(relinquish(&mut s, SP2, h, 0), None);
    assert_eq!(nwd_reclaim(&mut s, h, flags::ZERO).func(), func::SUCCESS_32);
    assert_eq!(
        s.platform().nwd_read(NS_MEM + 0x3000, 16),
        vec![0; 16],
        "reclaim zeroed"
    );
}

#[test]
fn donate_moves_ownership() {
    let mut s = world();
    let d = D::send(0, &[(SP1, 0)], &[(NS_MEM, 2)]);
    let h = nwd_send_ok(&mut s, func::MEM_DONATE_64, &d);
    let resp = retrieve(&mut s, SP1, &D::retrieve(0, h, SP1, perm::RW)).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!(r.flags & flags::TYPE_MASK, Op::Donate.type_bits());
    assert!(s.mem().transaction(h).is_none(), "the handle is retired");
    assert_eq!(s.mem().donated().len(), 1);
    assert_eq!(s.mem().donated()[0].owner, SP1);
    assert_eq!(
        nwd_reclaim(&mut s, h, 0).error_code(),
        code(FfaError::InvalidParameters)
    );
    // The normal world no longer owns it.
    let r = nwd_send(
        &mut s,
        func::MEM_SHARE_64,
        &D::send(0, &[(SP2, perm::RO)], &[(NS_MEM, 1)]),
    );
    assert_eq!(r.error_code(), code(FfaError::Denied));
    assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM + PAGE_SIZE).is_some_and(|t| t.write));
}

#[test]
fn partition_to_partition_lend_moves_access_in_stage_2() {
    let mut s = world();
    let owner_pa = lookup(&s, SP1, IpaSpace::Secure, SP_LEND_IPA).unwrap().pa;
    s.platform_mut().secure_write(owner_pa, b"sp1's data");
    let d = D::send(SP1, &[(SP2, perm::RW)], &[(SP_LEND_IPA, 2)]);
    sp_write_tx(&mut s, SP1, &d.bytes());
    let len = d.bytes().len() as u64;
    let x = sp(&mut s, SP1, &[func::MEM_LEND_64 as u64, len, len, 0, 0]);
    assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
    let h = x[2] | x[3] << 32;
    // The owner lost its access at once.
    assert_eq!(lookup(&s, SP1, IpaSpace::Secure, SP_LEND_IPA), None);
    assert_eq!(
        lookup(&s, SP1, IpaSpace::Secure, SP_LEND_IPA + PAGE_SIZE),
        None
    );
    let resp = retrieve(&mut s, SP2, &D::retrieve(SP1, h, SP2, perm::RW)).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!(r.ranges[0].addr, owner_pa.0, "secure memory at IPA = PA");
    assert_eq!(r.attributes & attr::NS, 0, "secure memory: no NS bit");
    let t = lookup(&s, SP2, IpaSpace::Secure, owner_pa.0).unwrap();
    assert_eq!(t.pa, owner_pa);
    assert!(t.write);
    assert_eq!(s.platform().secure_read(t.pa, 10), b"sp1's data");
    // The owner cannot reclaim while SP2 holds it; the normal world never can.
    let rc = [func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, 0];
    assert_eq!(sp_err(&sp(&mut s, SP1, &rc)), code(FfaError::Denied));
    assert_eq!(
        nwd_reclaim(&mut s, h, 0).error_code(),
        code(FfaError::Denied)
    );
    assert_eq!(relinquish(&mut s, SP2, h, 0), None);
    assert_eq!(lookup(&s, SP2, IpaSpace::Secure, owner_pa.0), None);
    assert_eq!(sp(&mut s, SP1, &rc)[0] as u32, func::SUCCESS_32);
    let t = lookup(&s, SP1, IpaSpace::Secure, SP_LEND_IPA).unwrap();
    assert_eq!(t.pa, owner_pa);
    assert!(t.read && t.write, "the owner's access is back");
}

#[test]
fn donated_secure_pages_can_be_sent_on_by_their_new_owner_only() {
    // SP1 donates three separate pages to SP2 (three donation records, kept
    // sorted and found by binary search); SP2 sends one on, SP1 cannot.
    let mut s = world();
    let pa = |s: &Spmc<FakePlatform>, k: u64| {
        lookup(s, SP1, IpaSpace::Secure, SP_LEND_IPA + k * PAGE_SIZE)
            .unwrap()
            .pa
            .0
    };
    let (p0, p2, p4) = (pa(&s, 0), pa(&s, 2), pa(&s, 4));
    for k in [4u64, 0, 2] {
        let d = D::send(SP1, &[(SP2, 0)], &[(SP_LEND_IPA + k * PAGE_SIZE, 1)]);
        sp_write_tx(&mut s, SP1, &d.bytes());
        let len = d.bytes().len() as u64;
        let x = sp(&mut s, SP1, &[func::MEM_DONATE_64 as u64, len, len, 0, 0]);
        assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
        let h = x[2] | x[3] << 32;
        retrieve(&mut s, SP2, &D::retrieve(SP1, h, SP2, perm::RW)).unwrap();
    }
    assert_eq!(s.mem().donated().len(), 3);
    let send_as = |s: &mut Spmc<FakePlatform>, who: u16, addr: u64| {
        let d = D::send(who, &[(TPM, perm::RO)], &[(addr, 1)]);
        sp_write_tx(s, who, &d.bytes());
        let len = d.bytes().len() as u64;
        sp(s, who, &[func::MEM_SHARE_64 as u64, len, len, 0, 0])
    };
    // SP2 holds them at IPA = PA: each can go on; one between them cannot.
    for p in [p0, p2, p4] {
        let x = send_as(&mut s, SP2, p);
        assert_eq!(x[0] as u32, func::SUCCESS_32, "{p:#x}: {x:x?}");
    }
    assert_eq!(
        sp_err(&send_as(&mut s, SP2, p0 + PAGE_SIZE)),
        code(FfaError::Denied)
    );
    // SP1 gave them away.
    assert_eq!(
        sp_err(&send_as(&mut s, SP1, SP_LEND_IPA + 2 * PAGE_SIZE)),
        code(FfaError::Denied)
    );
}

#[test]
fn a_donation_donated_on_belongs_to_its_last_owner_alone() {
    // SP1 donates two pages to SP2; SP2 donates the second on to the TPM
    // partition. The record of that page moves to the TPM partition (records
    // never overlap), so the TPM partition can send it on and SP2 cannot.
    let mut s = world();
    let p0 = lookup(&s, SP1, IpaSpace::Secure, SP_LEND_IPA).unwrap().pa.0;
    let donate = |s: &mut Spmc<FakePlatform>, from: u16, to: u16, addr: u64, pages: u32| {
        let d = D::send(from, &[(to, 0)], &[(addr, pages)]);
        sp_write_tx(s, from, &d.bytes());
        let len = d.bytes().len() as u64;
        let x = sp(s, from, &[func::MEM_DONATE_64 as u64, len, len, 0, 0]);
        assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
        let h = x[2] | x[3] << 32;
        retrieve(s, to, &D::retrieve(from, h, to, perm::RW)).unwrap();
    };
    donate(&mut s, SP1, SP2, SP_LEND_IPA, 2);
    donate(&mut s, SP2, TPM, p0 + PAGE_SIZE, 1);
    let records: Vec<_> = s
        .mem()
        .donated()
        .iter()
        .map(|d| (d.owner, d.pa, d.pages))
        .collect();
    assert_eq!(records, [(SP2, p0, 1), (TPM, p0 + PAGE_SIZE, 1)]);
    let send_as = |s: &mut Spmc<FakePlatform>, who: u16, to: u16, addr: u64| {
        let d = D::send(who, &[(to, perm::RO)], &[(addr, 1)]);
        sp_write_tx(s, who, &d.bytes());
        let len = d.bytes().len() as u64;
        sp(s, who, &[func::MEM_SHARE_64 as u64, len, len, 0, 0])
    };
    assert_eq!(
        sp_err(&send_as(&mut s, SP2, SP1, p0 + PAGE_SIZE)),
        code(FfaError::Denied)
    );
    let x = send_as(&mut s, TPM, SP1, p0 + PAGE_SIZE);
    assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
    let x = send_as(&mut s, SP2, SP1, p0);
    assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
}

#[test]
fn partition_share_keeps_the_owner_mapped_and_refuses_foreign_memory() {
    let mut s = world();
    let d = D::send(
        SP1,
        &[(SP2, perm::RO), (TPM, perm::RO)],
        &[(SP_LEND_IPA, 1)],
    );
    let len = d.bytes().len() as u64;
    sp_write_tx(&mut s, SP1, &d.bytes());
    let x = sp(&mut s, SP1, &[func::MEM_SHARE_32 as u64, len, len, 0, 0]);
    assert_eq!(x[0] as u32, func::SUCCESS_32);
    assert!(
        lookup(&s, SP1, IpaSpace::Secure, SP_LEND_IPA).is_some(),
        "share keeps access"
    );
    let send = |s: &mut Spmc<FakePlatform>, from: u16, d: &D| {
        let b = d.bytes();
        sp_write_tx(s, from, &b);
        sp_err(&sp(
            s,
            from,
            &[
                func::MEM_SHARE_64 as u64,
                b.len() as u64,
                b.len() as u64,
                0,
                0,
            ],
        ))
    };
    // The same page again: already in a transaction.
    assert_eq!(send(&mut s, SP1, &d), code(FfaError::Denied));
    // Memory SP1 does not have mapped, and more access than it has (its image is
    // RWX but the test gives X to a share: encoding refused).
    let unmapped = D::send(SP1, &[(SP2, perm::RO)], &[(0x2000_0000, 1)]);
    assert_eq!(send(&mut s, SP1, &unmapped), code(FfaError::Denied));
    // Its own image: a partition never gives its code away.
    let image = D::send(SP1, &[(SP2, perm::RO)], &[(IMAGE_IPA, 1)]);
    assert_eq!(send(&mut s, SP1, &image), code(FfaError::Denied));
    // A descriptor naming another sender.
    let forged = D::send(SP2, &[(TPM, perm::RO)], &[(SP_LEND_IPA, 1)]);
    assert_eq!(
        send(&mut s, SP1, &forged),
        code(FfaError::InvalidParameters)
    );
    // To itself; its secure memory to the normal world (which cannot
    // access the secure physical address space).
    let to_self = D::send(SP1, &[(SP1, perm::RO)], &[(SP_LEND_IPA + PAGE_SIZE, 1)]);
    assert_eq!(
        send(&mut s, SP1, &to_self),
        code(FfaError::InvalidParameters)
    );
    let to_nwd = D::send(SP1, &[(0, perm::RO)], &[(SP_LEND_IPA + PAGE_SIZE, 1)]);
    assert_eq!(send(&mut s, SP1, &to_nwd), code(FfaError::Denied));
}

#[test]
fn fragmented_send_and_fragmented_retrieve() {
    let mut s = world();
    // 300 one-page ranges, every other page: 48 + 32 + 16 + 4800 bytes > 4 KiB.
    let ranges: Vec<(u64, u32)> = (0..300).map(|i| (NS_MEM + i * 2 * PAGE_SIZE, 1)).collect();
    let d = D::send(0, &[(SP1, perm::RW)], &ranges);
    let b = d.bytes();
    assert!(b.len() > 4096);
    s.platform_mut().nwd_write(NWD_TX, &b[..4096]);
    let r = nwd_now(
        &mut s,
        &[func::MEM_SHARE_64 as u64, b.len() as u64, 4096, 0, 0],
    );
    assert_eq!(r.func(), func::MEM_FRAG_RX);
    let h = r.x(1) | r.x(2) << 32;
    assert_eq!(r.x(3), 4096, "offset received so far");
    let rest = b.len() - 4096;
    let frag_tx = |s: &mut Spmc<FakePlatform>, h: u64, len: usize| {
        nwd_now(
            s,
            &[
                func::MEM_FRAG_TX as u64,
                h & 0xFFFF_FFFF,
                h >> 32,
                len as u64,
                0,
            ],
        )
    };
    // Bad fragments change nothing.
    let before = snapshot(&s);
    assert_eq!(
        frag_tx(&mut s, h ^ 0x55, rest).error_code(),
        code(FfaError::InvalidParameters)
    );
    assert_eq!(
        frag_tx(&mut s, h, rest + 1).error_code(),
        code(FfaError::InvalidParameters)
    );
    assert_eq!(
        frag_tx(&mut s, h, 0).error_code(),
        code(FfaError::InvalidParameters)
    );
    assert_eq!(snapshot(&s), before);
    assert!(
        s.mem().transaction(h).is_none(),
        "not a transaction before the last fragment"
    );
    s.platform_mut().nwd_write(NWD_TX, &b[4096..]);
    let r = frag_tx(&mut s, h, rest);
    assert_eq!(r.func(), func::SUCCESS_32, "{r:?}");
    assert_eq!(handle_of(&r), h);
    assert_eq!(s.mem().transaction(h).unwrap().pages(), 300);

    // The response (300 ranges) does not fit SP1's 4 KiB RX: fragments.
    let rq = D::retrieve(0, h, SP1, perm::RW);
    let rb = rq.bytes();
    sp_write_tx(&mut s, SP1, &rb);
    let x = sp(
        &mut s,
        SP1,
        &[
            func::MEM_RETRIEVE_REQ_64 as u64,
            rb.len() as u64,
            rb.len() as u64,
            0,
            0,
        ],
    );
    assert_eq!(x[0] as u32, func::MEM_RETRIEVE_RESP);
    assert!(x[1] > 4096 && x[2] == 4096);
    let mut got = sp_read_rx(&s, SP1, 4096);
    // Before the RX buffer is released: BUSY.
    let frag_rx = [func::MEM_FRAG_RX as u64, h & 0xFFFF_FFFF, h >> 32, 4096];
    assert_eq!(sp_err(&sp(&mut s, SP1, &frag_rx)), code(FfaError::Busy));
    sp(&mut s, SP1, &[func::RX_RELEASE as u64]);
    // A wrong offset is refused; the right one gives the rest.
    let y = sp(
        &mut s,
        SP1,
        &[func::MEM_FRAG_RX as u64, h & 0xFFFF_FFFF, h >> 32, 100],
    );
    assert_eq!(sp_err(&y), code(FfaError::InvalidParameters));
    let y = sp(
        &mut s,
        SP1,
        &[func::MEM_FRAG_RX as u64, h & 0xFFFF_FFFF, h >> 32, 4096],
    );
    assert_eq!(y[0] as u32, func::MEM_FRAG_TX);
    got.extend(sp_read_rx(&s, SP1, y[3] as usize));
    assert_eq!(got.len() as u64, x[1]);
    let r = desc::parse(&got, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!(r.ranges.len(), 300);
    assert_eq!(r.ranges[299].addr, NS_MEM + 598 * PAGE_SIZE);
    assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM + 598 * PAGE_SIZE).is_some());
    assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM + PAGE_SIZE).is_none());
    assert_eq!(s.mem().outgoing_count(), 0);
}

#[test]
fn a_send_longer_than_its_descriptor_is_invalid() {
    // w1 is the length of the descriptor (DEN0077 v1.2 §11.1.1): bytes
    // declared past its last constituent are INVALID_PARAMETERS.
    let mut s = world();
    let before = snapshot(&s);
    let ranges: Vec<(u64, u32)> = (0..300).map(|i| (NS_MEM + i * 2 * PAGE_SIZE, 1)).collect();
    let mut b = D::send(0, &[(SP1, perm::RW)], &ranges).bytes();
    b.extend_from_slice(&[0; 16]);
    // In fragments: the last one completes 16 bytes that describe nothing.
    s.platform_mut().nwd_write(NWD_TX, &b[..4096]);
    let r = nwd_now(
        &mut s,
        &[func::MEM_SHARE_64 as u64, b.len() as u64, 4096, 0, 0],
    );
    assert_eq!(r.func(), func::MEM_FRAG_RX);
    let h = r.x(1) | r.x(2) << 32;
    s.platform_mut().nwd_write(NWD_TX, &b[4096..]);
    let rest = (b.len() - 4096) as u64;
    let r = nwd_now(
        &mut s,
        &[func::MEM_FRAG_TX as u64, h & 0xFFFF_FFFF, h >> 32, rest, 0],
    );
    assert_eq!(r.error_code(), code(FfaError::InvalidParameters));
    assert!(s.mem().transaction(h).is_none());
    // The send keeps its fragments before the refused one; reclaim cancels it.
    assert_eq!(s.mem().incoming_count(), 1);
    assert_eq!(nwd_reclaim(&mut s, h, 0).func(), func::SUCCESS_32);
    assert_eq!(snapshot(&s), before);
    // In one call.
    let d = D::send(0, &[(SP1, perm::RW)], &[(NS_MEM, 1)]);
    let mut one = d.bytes();
    one.extend_from_slice(&[0; 16]);
    s.platform_mut().nwd_write(NWD_TX, &one);
    let n = one.len() as u64;
    let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, n, n, 0, 0]);
    assert_eq!(r.error_code(), code(FfaError::InvalidParameters));
    assert_eq!(snapshot(&s), before);
    // The same descriptor at its own length goes through.
    nwd_send_ok(&mut s, func::MEM_SHARE_64, &d);
}

#[test]
fn reclaim_cancels_a_send_in_fragments() {
    let mut s = world();
    let ranges: Vec<(u64, u32)> = (0..300).map(|i| (NS_MEM + i * 2 * PAGE_SIZE, 1)).collect();
    let b = D::send(0, &[(SP1, perm::RW)], &ranges).bytes();
    s.platform_mut().nwd_write(NWD_TX, &b[..4096]);
    let r = nwd_now(
        &mut s,
        &[func::MEM_LEND_64 as u64, b.len() as u64, 4096, 0, 0],
    );
    let h = r.x(1) | r.x(2) << 32;
    assert_eq!(s.mem().incoming_count(), 1);
    assert_eq!(nwd_reclaim(&mut s, h, 0).func(), func::SUCCESS_32);
    assert_eq!(s.mem().incoming_count(), 0);
}

#[test]
fn caller_supplied_buffer() {
    let mut s = world();
    let b = D::send(0, &[(SP1, perm::RW)], &[(NS_MEM, 1)]).bytes();
    s.platform_mut().nwd_write(NS_BUF, &b);
    let n = b.len() as u64;
    let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, n, n, NS_BUF, 1]);
    assert_eq!(r.func(), func::SUCCESS_32, "{r:?}");
    assert!(
        s.platform().ns_mapped.iter().all(|(pa, _)| pa.0 != NS_BUF),
        "unmapped after use"
    );
    // A buffer in secure memory, an unaligned one, an address without pages.
    for (addr, pages) in [(0x0e50_0000u64, 1u64), (NS_BUF + 8, 1), (NS_BUF, 0), (0, 1)] {
        let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, n, n, addr, pages]);
        assert_eq!(
            r.error_code(),
            code(FfaError::InvalidParameters),
            "{addr:#x}/{pages}"
        );
    }
}

// ----------------------------------------------------------------------
// Errors: each with its code, and nothing changed
// ----------------------------------------------------------------------

#[test]
fn send_errors_change_nothing() {
    let mut s = world();
    let held = nwd_send_ok(
        &mut s,
        func::MEM_SHARE_64,
        &D::send(0, &[(SP2, perm::RO)], &[(NS_MEM + 0x10_0000, 1)]),
    );
    let ok = D::send(0, &[(SP1, perm::RW)], &[(NS_MEM, 2)]);
    let mut cases: Vec<(&str, D, FfaError)> = Vec::new();
    let mut c = |name, f: &dyn Fn(&mut D), e| {
        let mut d = ok.clone();
        f(&mut d);
        cases.push((name, d, e));
    };
    let inv = FfaError::InvalidParameters;
    c("unaligned range", &|d| d.ranges[0].0 += 0x10, inv);
    c("zero-length range", &|d| d.ranges[0].1 = 0, inv);
    c(
        "ranges overlap each other",
        &|d| d.ranges = vec![(NS_MEM, 2), (NS_MEM + 0x1000, 1)],
        inv,
    );
    c(
        "overlaps a transaction",
        &|d| d.ranges = vec![(NS_MEM + 0x10_0000, 1)],
        FfaError::Denied,
    );
    c(
        "secure memory",
        &|d| d.ranges = vec![(0x0e50_0000, 1)],
        FfaError::Denied,
    );
    c("non-zero handle", &|d| d.handle = 5, inv);
    c("secure sender ID", &|d| d.sender = 0x8005, inv);
    c(
        "unknown receiver",
        &|d| d.receivers = vec![(0x8077, perm::RW)],
        inv,
    );
    c(
        "receiver twice",
        &|d| d.receivers = vec![(SP1, perm::RW), (SP1, perm::RO)],
        inv,
    );
    c(
        "normal-world receiver",
        &|d| d.receivers = vec![(3, perm::RW)],
        inv,
    );
    c("no receiver", &|d| d.receivers.clear(), inv);
    c(
        "too many receivers",
        &|d| d.receivers = (0..9).map(|i| (0x8001 + i, perm::RO)).collect(),
        FfaError::NoMemory,
    );
    c("data access not given", &|d| d.receivers[0].1 = 0, inv);
    c("reserved data access", &|d| d.receivers[0].1 = 3, inv);
    c(
        "executable share",
        &|d| d.receivers[0].1 = perm::RW | perm::X,
        inv,
    );
    c("zero flag on a share", &|d| d.flags = flags::ZERO, inv);
    c("unknown flag", &|d| d.flags = 1 << 20, inv);
    // Normal-world RAM is not device memory (DEN0140 §1.10).
    c(
        "device type for RAM",
        &|d| d.attrs = attr::TYPE_DEVICE,
        FfaError::Denied,
    );
    c("memory type not given for a share", &|d| d.attrs = 0, inv);
    c("NS bit from a sender", &|d| d.attrs |= attr::NS, inv);
    c(
        "aborted receiver",
        &|d| d.receivers = vec![(0x8004, perm::RW)],
        FfaError::Denied,
    );
    // The crash-data partition aborts first.
    let (next, mut regs) = nwd(&mut s, &[REQ64, 0x8004, 0, 0]);
    sp_fault(&mut s, running(&next), 0x2000_0000, &mut regs);
    let before = snapshot(&s);
    for (name, d, e) in &cases {
        let r = nwd_send(&mut s, func::MEM_SHARE_64, d);
        assert_eq!(r.error_code(), code(*e), "{name}");
        assert_eq!(snapshot(&s), before, "{name} changed state");
    }
    // Length errors: zero, fragment longer than total, fragment longer than TX, past the limit.
    let n = ok.bytes().len() as u64;
    s.platform_mut().nwd_write(NWD_TX, &ok.bytes());
    for (total, frag, e) in [
        (0, 0, inv),
        (n, n + 1, inv),
        (n, 0, inv),
        (8192, 8192, inv),
        (n - 1, n - 1, inv),
        (512 * 1024, 16, FfaError::NoMemory),
    ] {
        let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, total, frag, 0, 0]);
        assert_eq!(r.error_code(), code(e), "total {total} frag {frag}");
        assert_eq!(snapshot(&s), before);
    }
    // Counts and offsets that do not add up.
    let mut b = ok.bytes();
    b[64 + 16 + 8] = 3; // constituent page count: total no longer matches
    s.platform_mut().nwd_write(NWD_TX, &b);
    let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, n, n, 0, 0]);
    assert_eq!(r.error_code(), code(inv));
    let mut b = ok.bytes();
    b[48 + 4] = 0xF0; // composite offset past the end
    s.platform_mut().nwd_write(NWD_TX, &b);
    let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, n, n, 0, 0]);
    assert_eq!(r.error_code(), code(inv));
    assert_eq!(snapshot(&s), before);
    // Still works afterwards.
    let h = nwd_send_ok(&mut s, func::MEM_SHARE_64, &ok);
    assert_ne!(h, held);
}

#[test]
fn retrieve_relinquish_and_reclaim_errors() {
    let mut s = world();
    let mut d = D::send(0, &[(SP1, perm::RO)], &[(NS_MEM, 1)]);
    d.tag = 0x77;
    let h = nwd_send_ok(&mut s, func::MEM_LEND_64, &d);
    let before = snapshot(&s);
    let mut rq = D::retrieve(0, h, SP1, perm::RO);
    rq.tag = 0x77;
    let cases: Vec<(&str, u16, D, FfaError)> = vec![
        (
            "unknown handle",
            SP1,
            D {
                handle: h + 1000,
                ..rq.clone()
            },
            FfaError::InvalidParameters,
        ),
        (
            "not a borrower",
            SP2,
            D {
                receivers: vec![(SP2, perm::RO)],
                ..rq.clone()
            },
            FfaError::Denied,
        ),
        (
            "wrong tag",
            SP1,
            D {
                tag: 1,
                ..rq.clone()
            },
            FfaError::InvalidParameters,
        ),
        (
            "wrong sender",
            SP1,
            D {
                sender: 5,
                ..rq.clone()
            },
            FfaError::InvalidParameters,
        ),
        (
            "wrong type",
            SP1,
            D {
                flags: Op::Share.type_bits(),
                ..rq.clone()
            },
            FfaError::InvalidParameters,
        ),
        (
            "more access",
            SP1,
            D {
                receivers: vec![(SP1, perm::RW)],
                ..rq.clone()
            },
            FfaError::Denied,
        ),
        (
            "without the caller",
            SP1,
            D {
                receivers: vec![(SP2, perm::RO)],
                ..rq.clone()
            },
            FfaError::InvalidParameters,
        ),
        (
            "unknown flag",
            SP1,
            D {
                flags: 1 << 12,
                ..rq.clone()
            },
            FfaError::InvalidParameters,
        ),
    ];
    for (name, who, d, e) in &cases {
        assert_eq!(retrieve(&mut s, *who, d).unwrap_err(), e.code(), "{name}");
        assert_eq!(snapshot(&s), before, "{name}");
    }
    // Relinquish before retrieving, reclaim by a partition that is not the owner.
    assert_eq!(relinquish(&mut s, SP1, h, 0), code(FfaError::Denied));
    assert_eq!(
        relinquish(&mut s, SP1, h + 1000, 0),
        code(FfaError::InvalidParameters)
    );
    let rc = [func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, 0];
    assert_eq!(sp_err(&sp(&mut s, SP2, &rc)), code(FfaError::Denied));
    assert_eq!(
        nwd_reclaim(&mut s, h, 1 << 5).error_code(),
        code(FfaError::InvalidParameters)
    );
    assert_eq!(snapshot(&s), before);
    // The RX buffer full: BUSY, nothing mapped.
    let fill = sp(
        &mut s,
        SP1,
        &[func::PARTITION_INFO_GET as u64, 0, 0, 0, 0, 0],
    );
    assert_eq!(fill[0] as u32, func::SUCCESS_32);
    let b = rq.bytes();
    sp_write_tx(&mut s, SP1, &b);
    let x = sp(
        &mut s,
        SP1,
        &[
            func::MEM_RETRIEVE_REQ_64 as u64,
            b.len() as u64,
            b.len() as u64,
            0,
            0,
        ],
    );
    assert_eq!(sp_err(&x), code(FfaError::Busy));
    assert_eq!(snapshot(&s), before);
    sp(&mut s, SP1, &[func::RX_RELEASE as u64]);
    // A fragmented retrieve request is refused.
    let x = sp(
        &mut s,
        SP1,
        &[
            func::MEM_RETRIEVE_REQ_64 as u64,
            b.len() as u64 + 16,
            b.len() as u64,
            0,
            0,
        ],
    );
    assert_eq!(sp_err(&x), code(FfaError::InvalidParameters));
    // Relinquish naming someone else.
    retrieve(&mut s, SP1, &rq).unwrap();
    sp_write_tx(&mut s, SP1, &relinquish_desc(h, 0, &[SP2]));
    assert_eq!(
        sp_err(&sp(&mut s, SP1, &[func::MEM_RELINQUISH as u64])),
        code(FfaError::InvalidParameters)
    );
    // The normal world is not a borrower of this handle.
    let r = nwd_now(&mut s, &[func::MEM_RETRIEVE_REQ_64 as u64, 64, 64, 0, 0]);
    assert_eq!(r.error_code(), code(FfaError::InvalidParameters));
    let r = nwd_now(&mut s, &[func::MEM_RELINQUISH as u64]);
    assert_eq!(r.error_code(), code(FfaError::InvalidParameters));
    assert_eq!(relinquish(&mut s, SP1, h, flags::ZERO), None);
    assert_eq!(nwd_reclaim(&mut s, h, 0).func(), func::SUCCESS_32);
}

#[test]
fn no_tx_buffer_is_invalid_parameters() {
    let mut s = booted();
    let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, 96, 96, 0, 0]);
    assert_eq!(r.error_code(), code(FfaError::InvalidParameters));
}

// ----------------------------------------------------------------------
// The per-user rule and the vTEE lifecycle
// ----------------------------------------------------------------------

#[test]
fn a_vm_shares_only_with_its_own_tee_and_shared_services() {
    let mut s = policy_world(None);
    map_nwd_buffers(&mut s);
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    assert_eq!(create_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 2), 0);
    let (i1, i2) = (instance_id(&s, 1).unwrap(), instance_id(&s, 2).unwrap());
    let send = |s: &mut Spmc<FakePlatform>, vm: u16, to: u16, page: u64| {
        nwd_send(
            s,
            func::MEM_SHARE_64,
            &D::send(vm, &[(to, perm::RW)], &[(NS_MEM + page * PAGE_SIZE, 1)]),
        )
    };
    let before = snapshot(&s);
    for (vm, to) in [
        (2u16, i1),
        (1, i2),
        (2, SP1),
        (2, SP2),
        (3, TEMPLATE),
        (0, i1),
    ] {
        assert_eq!(
            send(&mut s, vm, to, 0).error_code(),
            code(FfaError::Denied),
            "VM {vm} -> {to:#x}"
        );
        assert_eq!(snapshot(&s), before);
    }
    // Its own TEE through the template's ID, and the shared TPM.
    let h = handle_of(&send(&mut s, 1, TEMPLATE, 0));
    let t = s.mem().transaction(h).unwrap();
    assert_eq!(
        t.borrowers[0].id, i1,
        "the template ID names the VM's own instance"
    );
    assert_eq!(t.owner, Owner::NormalWorld(1));
    handle_of(&send(&mut s, 2, TPM, 1));
    // The instance retrieves it (reached by its VM).
    retrieve_as(&mut s, 1, i1, &D::retrieve(1, h, i1, perm::RW)).unwrap();
    assert!(lookup(&s, i1, IpaSpace::NonSecure, NS_MEM).is_some());
    // Instances send nothing; partitions send nothing to instances.
    let own = D::send(i1, &[(TPM, perm::RO)], &[(SP_LEND_IPA, 1)]);
    sp_write_tx(&mut s, i1, &own.bytes());
    let n = own.bytes().len() as u64;
    let x = sp_as(&mut s, 1, i1, &[func::MEM_SHARE_64 as u64, n, n, 0, 0]);
    assert_eq!(sp_err(&x), code(FfaError::Denied));
    let to_tee = D::send(SP1, &[(i1, perm::RO)], &[(SP_LEND_IPA, 1)]);
    sp_write_tx(&mut s, SP1, &to_tee.bytes());
    let x = sp(&mut s, SP1, &[func::MEM_SHARE_64 as u64, n, n, 0, 0]);
    assert_eq!(sp_err(&x), code(FfaError::Denied));
}

#[test]
fn destroying_a_tee_lets_its_vm_reclaim_and_zeroes_what_was_donated() {
    let mut s = policy_world(None);
    map_nwd_buffers(&mut s);
    s.reopen_nwd_version_for_tests();
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    assert_eq!(create_vm(&mut s, 1), 0);
    let i1 = instance_id(&s, 1).unwrap();
    let lent = nwd_send_ok(
        &mut s,
        func::MEM_LEND_64,
        &D::send(1, &[(TEMPLATE, perm::RW)], &[(NS_MEM, 1)]),
    );
    let given = nwd_send_ok(
        &mut s,
        func::MEM_DONATE_64,
        &D::send(1, &[(TEMPLATE, 0)], &[(NS_MEM + 0x8000, 1)]),
    );
    retrieve_as(&mut s, 1, i1, &D::retrieve(1, lent, i1, perm::RW)).unwrap();
    retrieve_as(&mut s, 1, i1, &D::retrieve(1, given, i1, perm::RW)).unwrap();
    s.platform_mut()
        .nwd_write(NS_MEM + 0x8000, b"the TEE's secret");
    assert_eq!(
        nwd_reclaim(&mut s, lent, 0).error_code(),
        code(FfaError::Denied)
    );
    assert_eq!(destroy_vm(&mut s, 1), 0);
    assert_eq!(
        nwd_reclaim(&mut s, lent, 0).func(),
        func::SUCCESS_32,
        "the TEE let go"
    );
    assert_eq!(
        s.platform().nwd_read(NS_MEM + 0x8000, 16),
        vec![0; 16],
        "donated memory zeroed"
    );
    assert!(s.mem().donated().is_empty());
    // And it can be shared afresh.
    nwd_send_ok(
        &mut s,
        func::MEM_SHARE_64,
        &D::send(0, &[(SP1, perm::RW)], &[(NS_MEM + 0x8000, 1)]),
    );
}

#[test]
fn an_aborted_borrower_does_not_block_the_owner() {
    let mut s = world();
    let h = nwd_send_ok(
        &mut s,
        func::MEM_LEND_64,
        &D::send(0, &[(SP2, perm::RW)], &[(NS_MEM, 1)]),
    );
    retrieve(&mut s, SP2, &D::retrieve(0, h, SP2, perm::RW)).unwrap();
    let (next, mut regs) = nwd(&mut s, &[REQ64, SP2 as u64, 0, 0]);
    sp_fault(&mut s, running(&next), 0x2000_0000, &mut regs);
    assert_eq!(nwd_reclaim(&mut s, h, 0).func(), func::SUCCESS_32);
    assert_eq!(
        lookup(&s, SP2, IpaSpace::NonSecure, NS_MEM),
        None,
        "taken back from it"
    );
}

// ----------------------------------------------------------------------
// Property test: random sequences against the ownership record
// ----------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    /// The normal world sends pages [first, first + n) of NS_MEM.
    NwdSend(u8, u8, u8, Vec<(u8, bool)>),
    /// SP1 or SP2 (0/1) sends pages of its own RAM.
    SpSend(u8, u8, u8, u8, bool),
    Retrieve(u8, u8, bool),
    Relinquish(u8, u8),
    Reclaim(u8, bool),
}

const SPS: [u16; 3] = [SP1, SP2, TPM];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..3, 0u8..6, 1u8..3, prop::collection::vec((0u8..3, any::<bool>()), 1..3))
            .prop_map(|(op, first, n, r)| Step::NwdSend(op, first, n, r)),
        2 => (0u8..2, 0u8..3, 0u8..4, 1u8..3, any::<bool>()).prop_map(|(who, op, first, n, rw)| Step::SpSend(who, op, first, n, rw)),
        4 => (any::<u8>(), 0u8..4, any::<bool>()).prop_map(|(h, who, rw)| Step::Retrieve(h, who, rw)),
        2 => (any::<u8>(), 0u8..4).prop_map(|(h, who)| Step::Relinquish(h, who)),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(h, nwd)| Step::Reclaim(h, nwd)),
    ]
}

/// Mostly one of the transaction's borrowers, sometimes any partition.
fn pick(s: &Spmc<FakePlatform>, handle: u64, who: u8) -> u16 {
    match s.mem().transaction(handle) {
        Some(t) if who < 2 => t.borrowers[who as usize % t.borrowers.len()].id,
        _ => SPS[who as usize % 3],
    }
}

fn op_func(op: u8) -> u32 {
    [func::MEM_SHARE_64, func::MEM_LEND_64, func::MEM_DONATE_64][op as usize % 3]
}

/// The contract after every step: the tables equal the ownership record
/// (`spmc::testing::contract`, shared with the fuzzer).
fn check(s: &Spmc<FakePlatform>) {
    if let Err(e) = spmc::testing::contract::check(s) {
        panic!("contract broken: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_tables_and_record_in_step(steps in prop::collection::vec(step(), 1..30)) {
        let mut s = world();
        let mut handles: Vec<(u64, u16)> = Vec::new();
        for st in steps {
            match st {
                Step::NwdSend(op, first, n, recv) => {
                    let receivers: Vec<(u16, u8)> = recv.iter().map(|(i, rw)| {
                        let p = if op % 3 == 2 { 0 } else if *rw { perm::RW } else { perm::RO };
                        (SPS[*i as usize], p)
                    }).collect();
                    let d = D::send(0, &receivers, &[(NS_MEM + first as u64 * PAGE_SIZE, n as u32)]);
                    let r = nwd_send(&mut s, op_func(op), &d);
                    if r.func() == func::SUCCESS_32 {
                        handles.push((handle_of(&r), 0));
                    }
                }
                Step::SpSend(who, op, first, n, rw) => {
                    let (me, other) = if who == 0 { (SP1, SP2) } else { (SP2, SP1) };
                    let p = if op % 3 == 2 { 0 } else if rw { perm::RW } else { perm::RO };
                    let d = D::send(me, &[(other, p)], &[(SP_LEND_IPA + first as u64 * PAGE_SIZE, n as u32)]);
                    let b = d.bytes();
                    sp_write_tx(&mut s, me, &b);
                    let x = sp(&mut s, me, &[op_func(op) as u64, b.len() as u64, b.len() as u64, 0, 0]);
                    if x[0] as u32 == func::SUCCESS_32 {
                        handles.push((x[2] | x[3] << 32, me));
                    }
                }
                Step::Retrieve(h, who, rw) => {
                    if let Some(&(h, owner)) = handles.get(h as usize % handles.len().max(1)) {
                        let me = pick(&s, h, who);
                        let _ = retrieve(&mut s, me, &D::retrieve(owner, h, me, if rw { perm::RW } else { 0 }));
                    }
                }
                Step::Relinquish(h, who) => {
                    if let Some(&(h, _)) = handles.get(h as usize % handles.len().max(1)) {
                        let me = pick(&s, h, who);
                        let _ = relinquish(&mut s, me, h, 0);
                    }
                }
                Step::Reclaim(h, nwd) => {
                    if let Some(&(h, owner)) = handles.get(h as usize % handles.len().max(1)) {
                        if nwd || owner == 0 {
                            let _ = nwd_reclaim(&mut s, h, 0);
                        } else {
                            let rc = [func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, 0];
                            let _ = sp(&mut s, owner, &rc);
                        }
                    }
                }
            }
            check(&s);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any bytes, and any mutation of a valid descriptor, are parsed into a
    /// descriptor or an error: never a panic, never a range past the buffer.
    #[test]
    fn descriptor_parsers_never_panic(
        raw in prop::collection::vec(any::<u8>(), 0..600),
        flips in prop::collection::vec((0usize..400, any::<u8>()), 0..8),
        layout10 in any::<bool>(),
    ) {
        let layout = if layout10 { Layout::V1_0 } else { Layout::V1_1 };
        for purpose in [desc::Purpose::Send, desc::Purpose::Retrieve] {
            let _ = desc::parse(&raw, layout, purpose);
        }
        let _ = desc::parse_relinquish(&raw);
        let mut d = D::send(0, &[(SP1, perm::RW), (SP2, perm::RO)], &[(NS_MEM, 2), (NS_MEM + 0x4000, 1)]);
        if layout10 {
            d = d.v1_0();
        }
        let mut b = d.bytes();
        for (at, v) in flips {
            if let Some(x) = b.get_mut(at) {
                *x = v;
            }
        }
        if let Ok(p) = desc::parse(&b, layout, desc::Purpose::Send) {
            prop_assert!(!p.ranges.is_empty() && p.total_pages > 0);
            prop_assert_eq!(p.ranges.iter().map(|r| r.pages).sum::<u64>(), p.total_pages);
        }
    }
}

// ----------------------------------------------------------------------
// Conformance to DEN0140's tables (issue 10, items 4-7)
// ----------------------------------------------------------------------

/// Partition `id` sends `d` with `f` through its TX buffer.
fn sp_send(s: &mut Spmc<FakePlatform>, id: u16, f: u32, d: &D) -> [u64; 8] {
    let b = d.bytes();
    sp_write_tx(s, id, &b);
    let n = b.len() as u64;
    sp(s, id, &[f as u64, n, n, 0, 0])
}

/// The attributes of a retrieve response.
fn response_attributes(resp: &[u8]) -> u16 {
    desc::parse(resp, Layout::V1_1, desc::Purpose::Send)
        .unwrap()
        .attributes
}

/// Item 4: a lender to one borrower and a donor leave the attributes "not
/// specified" (DEN0140 §1.10); the borrower names its own, which must be a
/// valid type of the memory's kind.
#[test]
fn a_borrower_names_the_attributes_a_lender_or_donor_left_unspecified() {
    let mut s = world();
    let d = D::send(0, &[(SP1, perm::RW)], &[(NS_MEM, 1)]);
    let h = nwd_send_ok(&mut s, func::MEM_LEND_64, &d);
    assert_eq!(s.mem().transaction(h).unwrap().attributes, 0);
    let before = snapshot(&s);
    for (attrs, e) in [
        (attr::TYPE_DEVICE | 1 << 2, FfaError::Denied),
        (0x30, FfaError::InvalidParameters),
        (
            attr::TYPE_NORMAL | attr::CACHE_WB | attr::SHARE_RESERVED,
            FfaError::InvalidParameters,
        ),
        (attr::NORMAL_WB_INNER | 1 << 8, FfaError::InvalidParameters),
    ] {
        let mut rq = D::retrieve(0, h, SP1, perm::RW);
        rq.attrs = attrs;
        assert_eq!(retrieve(&mut s, SP1, &rq), Err(e.code()), "{attrs:#x}");
        assert_eq!(snapshot(&s), before);
    }
    let mut rq = D::retrieve(0, h, SP1, perm::RW);
    rq.attrs = attr::TYPE_NORMAL | attr::CACHE_NC | 3;
    let resp = retrieve(&mut s, SP1, &rq).unwrap();
    assert_eq!(
        response_attributes(&resp),
        attr::TYPE_NORMAL | attr::CACHE_NC | 3 | attr::NS
    );
    assert_eq!(relinquish(&mut s, SP1, h, 0), None);
    assert!(nwd_reclaim(&mut s, h, 0).error_code().is_none());

    // A donation, retrieved naming normal write-back memory.
    let d = D::send(0, &[(SP2, 0)], &[(NS_MEM + PAGE_SIZE, 1)]);
    let h = nwd_send_ok(&mut s, func::MEM_DONATE_64, &d);
    let mut rq = D::retrieve(0, h, SP2, perm::RW);
    rq.attrs = attr::NORMAL_WB_INNER;
    let resp = retrieve(&mut s, SP2, &rq).unwrap();
    assert_eq!(response_attributes(&resp), attr::NORMAL_WB_INNER | attr::NS);

    // Partition to partition: sp1 lends, sp2 names the attributes.
    let d = D::send(SP1, &[(SP2, perm::RW)], &[(SP_LEND_IPA, 1)]);
    let x = sp_send(&mut s, SP1, func::MEM_LEND_64, &d);
    assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
    let h = x[2] | x[3] << 32;
    let mut rq = D::retrieve(SP1, h, SP2, perm::RW);
    rq.attrs = attr::NORMAL_WB_INNER;
    let resp = retrieve(&mut s, SP2, &rq).unwrap();
    assert_eq!(response_attributes(&resp), attr::NORMAL_WB_INNER);
}

/// Item 5: a borrower retrieves what it holds again (DEN0140 §1.12): each
/// retrieve is relinquished once, the memory leaves it with the last; a
/// later retrieve may not change the access or zero the memory.
#[test]
fn a_borrower_may_retrieve_again_and_relinquishes_as_many_times() {
    let mut s = world();
    let d = D::send(0, &[(SP1, perm::RW), (SP2, perm::RW)], &[(NS_MEM, 1)]);
    let h = nwd_send_ok(&mut s, func::MEM_LEND_64, &d);
    for id in [SP1, SP1, SP2, SP1] {
        retrieve(&mut s, id, &D::retrieve(0, h, id, perm::RW)).unwrap();
    }
    let held = |s: &Spmc<FakePlatform>| {
        s.mem()
            .transaction(h)
            .unwrap()
            .borrowers
            .iter()
            .map(|b| b.retrieves)
            .collect::<Vec<_>>()
    };
    assert_eq!(held(&s), [3, 1]);
    let before = snapshot(&s);
    let mut ro = D::retrieve(0, h, SP1, perm::RO);
    assert_eq!(retrieve(&mut s, SP1, &ro), Err(FfaError::Denied.code()));
    ro.receivers[0].1 = perm::RW;
    ro.flags = flags::ZERO;
    assert_eq!(
        retrieve(&mut s, SP1, &ro),
        Err(FfaError::InvalidParameters.code())
    );
    assert_eq!(snapshot(&s), before);
    assert_eq!(held(&s), [3, 1]);
    for left in [2, 1] {
        assert_eq!(relinquish(&mut s, SP1, h, 0), None);
        assert_eq!(held(&s), [left, 1]);
        assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM).is_some());
        assert_eq!(
            nwd_reclaim(&mut s, h, 0).error_code(),
            code(FfaError::Denied)
        );
    }
    assert_eq!(relinquish(&mut s, SP1, h, 0), None);
    assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM).is_none());
    assert_eq!(
        relinquish(&mut s, SP1, h, 0),
        code(FfaError::Denied),
        "nothing left to relinquish"
    );
    assert_eq!(relinquish(&mut s, SP2, h, 0), None);
    assert!(nwd_reclaim(&mut s, h, 0).error_code().is_none());
}

/// Item 6, senders: DEN0140 §1.10-1.11 tables. Each refused with
/// INVALID_PARAMETERS and nothing changed.
#[test]
fn senders_follow_the_attribute_and_permission_tables() {
    let mut s = world();
    let inv = code(FfaError::InvalidParameters);
    let before = snapshot(&s);
    let one = |p: u8| D::send(0, &[(SP1, p)], &[(NS_MEM, 1)]);
    let two = |p: u8| D::send(0, &[(SP1, p), (SP2, p)], &[(NS_MEM, 1)]);
    let with = |mut d: D, a: u16| {
        d.attrs = a;
        d
    };
    let cases: Vec<(&str, u32, D)> = vec![
        ("share NX", func::MEM_SHARE_64, one(perm::RW | perm::NX)),
        ("share X", func::MEM_SHARE_64, one(perm::RW | perm::X)),
        (
            "lend to two NX",
            func::MEM_LEND_64,
            two(perm::RW | perm::NX),
        ),
        (
            "lend to one with a memory type",
            func::MEM_LEND_64,
            one(perm::RW),
        ),
        ("donate with a memory type", func::MEM_DONATE_64, one(0)),
        ("donate NX", func::MEM_DONATE_64, with(one(perm::NX), 0)),
        ("donate RW", func::MEM_DONATE_64, with(one(perm::RW), 0)),
        (
            "share without a type",
            func::MEM_SHARE_64,
            with(one(perm::RW), 0),
        ),
        (
            "lend to two without a type",
            func::MEM_LEND_64,
            with(two(perm::RW), 0),
        ),
        (
            "lend to one with the NS bit",
            func::MEM_LEND_64,
            with(one(perm::RW), attr::NS),
        ),
    ];
    for (name, f, d) in &cases {
        let r = as_written(|| nwd_send(&mut s, *f, d));
        assert_eq!(r.error_code(), inv, "{name}");
        assert_eq!(snapshot(&s), before, "{name} changed state");
    }
    // A lender to one may name the instruction access.
    let d = with(one(perm::RW | perm::X), 0);
    let h = nwd_send_ok(&mut s, func::MEM_LEND_64, &d);
    assert!(nwd_reclaim(&mut s, h, 0).error_code().is_none());
}

/// Item 6, borrowers: the retrieve of a share or a lend to several names
/// no instruction access; the implementation-defined value is the
/// sender's; reclaim flags.
#[test]
fn borrowers_follow_the_permission_table_and_the_senders_impdef() {
    let mut s = world();
    let inv = Err(FfaError::InvalidParameters.code());
    let d = D::send(0, &[(SP1, perm::RW), (SP2, perm::RW)], &[(NS_MEM, 1)]);
    let share = nwd_send_ok(&mut s, func::MEM_SHARE_64, &d);
    let lend = nwd_send_ok(&mut s, func::MEM_LEND_64, &{
        let mut d = d.clone();
        d.ranges = vec![(NS_MEM + PAGE_SIZE, 1)];
        d
    });
    let before = snapshot(&s);
    for h in [share, lend] {
        for p in [perm::NX, perm::X] {
            let r = retrieve(&mut s, SP1, &D::retrieve(0, h, SP1, perm::RW | p));
            assert_eq!(r, inv, "{h:#x} {p:#x}");
        }
    }
    // Another implementation-defined value than the sender's (zero).
    let mut b = D::retrieve(0, share, SP1, perm::RW).bytes();
    b[48 + 8] = 0x5A;
    sp_write_tx(&mut s, SP1, &b);
    let n = b.len() as u64;
    let x = sp(&mut s, SP1, &[func::MEM_RETRIEVE_REQ_64 as u64, n, n, 0, 0]);
    assert_eq!(sp_err(&x), code(FfaError::InvalidParameters));
    // A request longer than its descriptor (no composite: it ends with its
    // last access descriptor).
    let mut b = D::retrieve(0, share, SP1, perm::RW).bytes();
    b.extend_from_slice(&[0; 16]);
    sp_write_tx(&mut s, SP1, &b);
    let n = b.len() as u64;
    let x = sp(&mut s, SP1, &[func::MEM_RETRIEVE_REQ_64 as u64, n, n, 0, 0]);
    assert_eq!(sp_err(&x), code(FfaError::InvalidParameters));
    // Reserved reclaim flags, zero on a share.
    for fl in [1 << 2, 1 << 31, flags::ZERO] {
        assert_eq!(
            nwd_reclaim(&mut s, share, fl).error_code(),
            code(FfaError::InvalidParameters),
            "{fl:#x}"
        );
    }
    assert_eq!(snapshot(&s), before);
    let resp = retrieve(&mut s, SP1, &D::retrieve(0, share, SP1, perm::RW)).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!(r.receivers[0].perms, perm::RW | perm::NX);
}

/// sp1's device region (tf-a-integration/qemu/partitions/sp1.dts).
const DEVICE_IPA: u64 = 0x090b_0000;

/// Item 7: a partition shares and lends a device region it owns (DEN0140
/// §1.10: device memory); the borrower maps it as device memory, never
/// executable; it cannot be donated, zeroed, nor sent or retrieved as
/// normal memory.
#[test]
fn a_partition_shares_and_lends_its_device_region() {
    let mut s = world();
    assert!(lookup(&s, SP1, IpaSpace::Secure, DEVICE_IPA).is_some_and(|t| t.device));
    let dev = attr::TYPE_DEVICE | 1 << 2;
    let mut d = D::send(SP1, &[(SP2, perm::RW)], &[(DEVICE_IPA, 1)]);
    d.attrs = dev;
    let x = sp_send(&mut s, SP1, func::MEM_SHARE_64, &d);
    assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
    let h = x[2] | x[3] << 32;
    assert!(s.mem().transaction(h).unwrap().device);
    let resp = retrieve(&mut s, SP2, &D::retrieve(SP1, h, SP2, perm::RW)).unwrap();
    assert_eq!(response_attributes(&resp), dev);
    let t = lookup(&s, SP2, IpaSpace::Secure, DEVICE_IPA).unwrap();
    assert!(t.device && t.write && !t.exec);
    assert_eq!(relinquish(&mut s, SP2, h, 0), None);
    let rc = [func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, 0];
    assert_eq!(sp(&mut s, SP1, &rc)[0] as u32, func::SUCCESS_32);

    // Refused: as normal memory (DENIED), donated (DENIED), zeroed (INVALID).
    let before = snapshot(&s);
    let mut normal = d.clone();
    normal.attrs = attr::NORMAL_WB_INNER;
    let x = sp_send(&mut s, SP1, func::MEM_SHARE_64, &normal);
    assert_eq!(sp_err(&x), code(FfaError::Denied));
    let mut donate = D::send(SP1, &[(SP2, 0)], &[(DEVICE_IPA, 1)]);
    donate.attrs = 0;
    let x = sp_send(&mut s, SP1, func::MEM_DONATE_64, &donate);
    assert_eq!(sp_err(&x), code(FfaError::Denied));
    let mut zero = D::send(SP1, &[(SP2, perm::RW)], &[(DEVICE_IPA, 1)]);
    zero.flags = flags::ZERO;
    let x = sp_send(&mut s, SP1, func::MEM_LEND_64, &zero);
    assert_eq!(sp_err(&x), code(FfaError::InvalidParameters));
    assert_eq!(snapshot(&s), before);

    // A lend: the attributes left to sp2, which must name device memory.
    let lend = D::send(SP1, &[(SP2, perm::RW)], &[(DEVICE_IPA, 1)]);
    let x = sp_send(&mut s, SP1, func::MEM_LEND_64, &lend);
    assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
    let h = x[2] | x[3] << 32;
    assert_eq!(lookup(&s, SP1, IpaSpace::Secure, DEVICE_IPA), None);
    let mut rq = D::retrieve(SP1, h, SP2, perm::RW);
    rq.attrs = attr::NORMAL_WB_INNER;
    assert_eq!(retrieve(&mut s, SP2, &rq), Err(FfaError::Denied.code()));
    rq.attrs = dev;
    rq.receivers[0].1 = perm::RW | perm::X;
    assert_eq!(retrieve(&mut s, SP2, &rq), Err(FfaError::Denied.code()));
    rq.receivers[0].1 = perm::RW;
    retrieve(&mut s, SP2, &rq).unwrap();
    assert!(lookup(&s, SP2, IpaSpace::Secure, DEVICE_IPA).is_some_and(|t| t.device));
    assert_eq!(
        relinquish(&mut s, SP2, h, flags::ZERO),
        code(FfaError::InvalidParameters)
    );
    assert_eq!(relinquish(&mut s, SP2, h, 0), None);
    let rc = [func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, 0];
    assert_eq!(sp(&mut s, SP1, &rc)[0] as u32, func::SUCCESS_32);
    let t = lookup(&s, SP1, IpaSpace::Secure, DEVICE_IPA).unwrap();
    assert!(t.device && t.write && !t.exec, "sp1 has its device back");
}

/// sp2's read-only memory region (tf-a-integration/qemu/partitions/sp2.dts).
const RO_IPA: u64 = 0x1008_0000;

/// Item 6: a partition gives no more access than it holds (DEN0140 §1.5,
/// §1.11): its read-only region is shared or lent read-only, never
/// read-write, never donated; DENIED with nothing changed.
#[test]
fn read_only_memory_is_never_sent_read_write() {
    let mut s = world();
    assert!(lookup(&s, SP2, IpaSpace::Secure, RO_IPA).is_some_and(|t| t.read && !t.write));
    let before = snapshot(&s);
    for (f, p) in [
        (func::MEM_SHARE_64, perm::RW),
        (func::MEM_LEND_64, perm::RW),
        (func::MEM_DONATE_64, 0),
    ] {
        let d = D::send(SP2, &[(SP1, p)], &[(RO_IPA, 1)]);
        let x = sp_send(&mut s, SP2, f, &d);
        assert_eq!(sp_err(&x), code(FfaError::Denied), "{f:#x}");
        assert_eq!(snapshot(&s), before);
    }
    let d = D::send(SP2, &[(SP1, perm::RO)], &[(RO_IPA, 1)]);
    let x = sp_send(&mut s, SP2, func::MEM_LEND_64, &d);
    assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
    let h = x[2] | x[3] << 32;
    let mut rq = D::retrieve(SP2, h, SP1, perm::RW);
    rq.attrs = attr::NORMAL_WB_INNER;
    assert_eq!(retrieve(&mut s, SP1, &rq), Err(FfaError::Denied.code()));
    rq.receivers[0].1 = perm::RO;
    retrieve(&mut s, SP1, &rq).unwrap();
    assert_eq!(relinquish(&mut s, SP1, h, 0), None);
    let rc = [func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, 0];
    assert_eq!(sp(&mut s, SP2, &rc)[0] as u32, func::SUCCESS_32);
    assert!(lookup(&s, SP2, IpaSpace::Secure, RO_IPA).is_some_and(|t| t.read && !t.write));
}

/// The contract check is not vacuous: a mapping the record does not give, a
/// mapping the record gives but the tables lack, a lent page left mapped in
/// its owner, and a free pool page that is not zero are each reported.
#[test]
fn the_contract_check_sees_each_kind_of_break() {
    use spmc::sp_manifest::Access;
    use spmc::stage2::Kind;
    use spmc::testing::contract;
    let s0 = world();
    assert_eq!(contract::check(&s0), Ok(()));
    assert_eq!(contract::dirty_free_page(&s0, |_| true), None);

    // SP2 maps a page of SP1's memory.
    let mut s = world();
    let sp1_pa = s.partition(slot(&s, SP1)).memory[0].1.base;
    let sp2 = slot(&s, SP2);
    s.partitions_mut_for_tests()[sp2.index()]
        .stage2
        .map(
            IpaSpace::Secure,
            Ipa(0x3000_0000),
            sp1_pa,
            PAGE_SIZE,
            Kind::Memory(Access::RW),
        )
        .unwrap();
    let e = contract::check(&s).unwrap_err();
    assert!(e.contains("does not give"), "{e}");

    // SP1 loses a page of its own memory.
    let mut s = world();
    let sp1 = slot(&s, SP1);
    let ipa = s.partitions()[sp1.index()].memory[0].0;
    let p = &mut s.partitions_mut_for_tests()[sp1.index()];
    let mut fake = FakePlatform::default();
    p.stage2
        .unmap(IpaSpace::Secure, ipa, PAGE_SIZE, &mut fake)
        .unwrap();
    let e = contract::check(&s).unwrap_err();
    assert!(e.contains("lacks"), "{e}");

    // SP1 lends a page to SP2, then the page is mapped back into SP1 behind
    // the SPMC's back.
    let mut s = world();
    let d = D::send(SP1, &[(SP2, perm::RW)], &[(SP_LEND_IPA, 1)]);
    let b = d.bytes();
    sp_write_tx(&mut s, SP1, &b);
    let x = sp(
        &mut s,
        SP1,
        &[
            func::MEM_LEND_64 as u64,
            b.len() as u64,
            b.len() as u64,
            0,
            0,
        ],
    );
    assert_eq!(x[0] as u32, func::SUCCESS_32);
    assert_eq!(contract::check(&s), Ok(()));
    let pa = s.mem().transactions()[0].runs[0].pa;
    let sp1 = slot(&s, SP1);
    s.partitions_mut_for_tests()[sp1.index()]
        .stage2
        .map(
            IpaSpace::Secure,
            Ipa(SP_LEND_IPA),
            Pa(pa),
            PAGE_SIZE,
            Kind::Memory(Access::RW),
        )
        .unwrap();
    let e = contract::check(&s).unwrap_err();
    assert!(e.contains("does not give"), "{e}");

    // A free page of the pool with data in it.
    let mut s = world();
    let pool = s.pool().unwrap().range();
    let last = Pa(pool.base + pool.size - PAGE_SIZE);
    assert!(s.pool().unwrap().is_free(last));
    s.platform_mut().secure_write(Pa(last.0 + 8), &[1]);
    assert_eq!(contract::dirty_free_page(&s, |_| true), Some(last));
    assert_eq!(contract::dirty_free_page(&s, |pa| pa != last), None);
}

/// The buffer rule's check is not vacuous either: an RX buffer over a page
/// its partition lent away, or over a page it only borrowed, is reported.
#[test]
fn the_buffer_check_sees_a_buffer_over_memory_that_changed_hands() {
    use spmc::testing::contract;
    let mut s = world();
    assert_eq!(contract::check_buffers(&s), Ok(()));
    let d = D::send(SP1, &[(SP2, perm::RW)], &[(SP_LEND_IPA, 1)]);
    let b = d.bytes();
    sp_write_tx(&mut s, SP1, &b);
    let x = sp(
        &mut s,
        SP1,
        &[
            func::MEM_LEND_64 as u64,
            b.len() as u64,
            b.len() as u64,
            0,
            0,
        ],
    );
    assert_eq!(x[0] as u32, func::SUCCESS_32);
    let h = x[2] | x[3] << 32;
    assert_eq!(contract::check_buffers(&s), Ok(()));
    let pa = s.mem().transactions()[0].runs[0].pa;

    // SP1's RX moved (behind the SPMC's back) onto the page it lent.
    let sp1 = slot(&s, SP1);
    let saved = s.partitions()[sp1.index()].buffers.unwrap();
    s.partitions_mut_for_tests()[sp1.index()]
        .buffers
        .as_mut()
        .unwrap()
        .rx = Pa(pa);
    let e = contract::check_buffers(&s).unwrap_err();
    assert!(e.contains("0x8001"), "{e}");
    s.partitions_mut_for_tests()[sp1.index()].buffers = Some(saved);

    // SP2 retrieves it; its RX moved onto the borrowed page.
    assert!(retrieve(&mut s, SP2, &D::retrieve(SP1, h, SP2, perm::RW)).is_ok());
    let sp2 = slot(&s, SP2);
    s.partitions_mut_for_tests()[sp2.index()]
        .buffers
        .as_mut()
        .unwrap()
        .rx = Pa(pa);
    let e = contract::check_buffers(&s).unwrap_err();
    assert!(e.contains("0x8002"), "{e}");
}

/// Not a check: share cycles like the benchmark's (`mem_share_cycle_1page`),
/// for a host profile (docs/benchmarks.md: build with `cargo test --release
/// -p spmc --test mem --no-run`, run the binary under `valgrind
/// --tool=callgrind` with `--ignored perf_share_cycle_1page`; `CYCLES` sets
/// the count).
#[test]
#[ignore]
fn perf_share_cycle_1page() {
    let mut s = world();
    let n: usize = std::env::var("CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    for _ in 0..n {
        // A share leaves the instruction access unspecified (DEN0140).
        let d = D::send(0, &[(SP1, perm::RW)], &[(NS_MEM, 1)]);
        let h = nwd_send_ok(&mut s, func::MEM_SHARE_64, &d);
        retrieve(&mut s, SP1, &D::retrieve(0, h, SP1, perm::RW)).unwrap();
        assert_eq!(relinquish(&mut s, SP1, h, 0), None);
        assert_eq!(nwd_reclaim(&mut s, h, 0).func(), func::SUCCESS_32);
        s.platform_mut().invalidations.clear();
    }
}

// ----------------------------------------------------------------------
// The normal world as a borrower (issue 18 item 2)
// ----------------------------------------------------------------------

/// The normal world retrieves with request `d` (from its TX): the response
/// (fragments followed with FFA_MEM_FRAG_RX), or the error code. Releases RX.
fn nwd_retrieve(s: &mut Spmc<FakePlatform>, d: &D) -> Result<Vec<u8>, i32> {
    let b = d.bytes();
    s.platform_mut().nwd_write(NWD_TX, &b);
    let n = b.len() as u64;
    let r = nwd_now(s, &[func::MEM_RETRIEVE_REQ_64 as u64, n, n, 0, 0]);
    if let Some(e) = r.error_code() {
        return Err(e);
    }
    assert_eq!(r.func(), func::MEM_RETRIEVE_RESP, "{r:?}");
    let (total, mut got) = (r.x(1) as usize, r.x(2) as usize);
    let mut out = s.platform().nwd_read(NWD_RX, got);
    while got < total {
        let x = nwd_now(s, &[func::RX_RELEASE as u64]);
        assert_eq!(x.func(), func::SUCCESS_32);
        let x = nwd_now(
            s,
            &[
                func::MEM_FRAG_RX as u64,
                d.handle & 0xFFFF_FFFF,
                d.handle >> 32,
                got as u64,
            ],
        );
        assert_eq!(x.func(), func::MEM_FRAG_TX, "{x:?}");
        let n = x.x(3) as usize;
        out.extend(s.platform().nwd_read(NWD_RX, n));
        got += n;
    }
    let x = nwd_now(s, &[func::RX_RELEASE as u64]);
    assert_eq!(x.func(), func::SUCCESS_32);
    Ok(out)
}

/// The normal world relinquishes `handle` for `ids`: None on success.
fn nwd_relinquish(s: &mut Spmc<FakePlatform>, handle: u64, fl: u32, ids: &[u16]) -> Option<i32> {
    s.platform_mut()
        .nwd_write(NWD_TX, &relinquish_desc(handle, fl, ids));
    nwd_now(s, &[func::MEM_RELINQUISH as u64]).error_code()
}

/// The normal world donates `pages` pages at `pa` to SP1, which retrieves
/// them: SP1 owns them, mapped in its non-secure IPA space at IPA = PA.
fn donate_ns_to_sp1(s: &mut Spmc<FakePlatform>, pa: u64, pages: u32) {
    let h = nwd_send_ok(
        s,
        func::MEM_DONATE_64,
        &D::send(0, &[(SP1, 0)], &[(pa, pages)]),
    );
    retrieve(s, SP1, &D::retrieve(0, h, SP1, perm::RW)).unwrap();
    assert!(lookup(s, SP1, IpaSpace::NonSecure, pa).is_some_and(|t| t.write));
}

/// SP1 sends its normal-world pages with `f` to `to`: the handle, or the error.
fn sp1_send_ns(s: &mut Spmc<FakePlatform>, f: u32, to: &[(u16, u8)], pa: u64) -> Result<u64, i32> {
    let x = sp_send(s, SP1, f, &D::send(SP1, to, &[(pa, 1)]));
    match sp_err(&x) {
        Some(e) => Err(e),
        None => {
            assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
            Ok(x[2] | x[3] << 32)
        }
    }
}

fn sp1_reclaim(s: &mut Spmc<FakePlatform>, h: u64) -> Option<i32> {
    let x = sp(
        s,
        SP1,
        &[func::MEM_RECLAIM as u64, h & 0xFFFF_FFFF, h >> 32, 0],
    );
    if x[0] as u32 == func::SUCCESS_32 {
        None
    } else {
        sp_err(&x)
    }
}

#[test]
fn a_partition_lends_normal_world_memory_it_owns_to_the_normal_world() {
    let mut s = world();
    donate_ns_to_sp1(&mut s, NS_MEM, 1);
    s.platform_mut().nwd_write(NS_MEM, b"sealed by sp1");
    let h = sp1_send_ns(&mut s, func::MEM_LEND_64, &[(0, perm::RW)], NS_MEM).unwrap();
    // The lender loses access when the send completes.
    assert_eq!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM), None);
    assert_eq!(spmc::testing::contract::check(&s), Ok(()));
    // The normal world retrieves: the whole descriptor, the NS bit, the type.
    let resp = nwd_retrieve(&mut s, &D::retrieve(SP1, h, 0, perm::RW)).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!((r.sender, r.handle), (SP1, h));
    assert_eq!(r.flags & flags::TYPE_MASK, Op::Lend.type_bits());
    assert_ne!(r.attributes & attr::NS, 0, "normal-world memory");
    assert_eq!(r.receivers.len(), 1);
    assert_eq!(r.receivers[0].id, 0);
    assert_eq!(r.receivers[0].perms & perm::DATA_MASK, perm::RW);
    assert_eq!(r.ranges[0].addr, NS_MEM);
    assert_eq!(s.platform().nwd_read(NS_MEM, 13), b"sealed by sp1");
    assert_eq!(
        s.mem().transaction(h).unwrap().borrowers[0].state,
        BorrowerState::Retrieved
    );
    // The lender cannot reclaim while the normal world holds it.
    assert_eq!(sp1_reclaim(&mut s, h), code(FfaError::Denied));
    // Nor may the normal world reclaim what it borrows.
    assert_eq!(
        nwd_reclaim(&mut s, h, 0).error_code(),
        code(FfaError::Denied)
    );
    assert_eq!(nwd_relinquish(&mut s, h, 0, &[0]), None);
    assert_eq!(
        nwd_relinquish(&mut s, h, 0, &[0]),
        code(FfaError::Denied),
        "relinquished already"
    );
    assert_eq!(sp1_reclaim(&mut s, h), None);
    assert!(
        lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM).is_some_and(|t| t.write),
        "the lender's access is back"
    );
    assert!(s.mem().transaction(h).is_none());
    assert_eq!(spmc::testing::contract::check(&s), Ok(()));
}

#[test]
fn normal_world_memory_donated_to_a_partition_goes_on_to_another() {
    let mut s = world();
    donate_ns_to_sp1(&mut s, NS_MEM, 1);
    let h = sp1_send_ns(&mut s, func::MEM_LEND_64, &[(SP2, perm::RW)], NS_MEM).unwrap();
    assert_eq!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM), None);
    retrieve(&mut s, SP2, &D::retrieve(SP1, h, SP2, perm::RW)).unwrap();
    assert!(lookup(&s, SP2, IpaSpace::NonSecure, NS_MEM).is_some_and(|t| t.write));
    assert_eq!(spmc::testing::contract::check(&s), Ok(()));
    assert_eq!(relinquish(&mut s, SP2, h, 0), None);
    assert_eq!(sp1_reclaim(&mut s, h), None);
    assert_eq!(lookup(&s, SP2, IpaSpace::NonSecure, NS_MEM), None);
    assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM).is_some_and(|t| t.write));
    assert_eq!(spmc::testing::contract::check(&s), Ok(()));
}

#[test]
fn secure_memory_never_goes_to_the_normal_world() {
    let mut s = world();
    let before = snapshot(&s);
    for f in [func::MEM_SHARE_64, func::MEM_LEND_64, func::MEM_DONATE_64] {
        let perms = if f == func::MEM_DONATE_64 {
            0
        } else {
            perm::RW
        };
        let d = D::send(SP1, &[(0, perms)], &[(SP_LEND_IPA, 1)]);
        assert_eq!(sp_err(&sp_send(&mut s, SP1, f, &d)), code(FfaError::Denied));
        // Nor to a VM.
        let d = D::send(SP1, &[(1, perms)], &[(SP_LEND_IPA, 1)]);
        assert_eq!(sp_err(&sp_send(&mut s, SP1, f, &d)), code(FfaError::Denied));
    }
    assert_eq!(snapshot(&s), before);
    assert!(lookup(&s, SP1, IpaSpace::Secure, SP_LEND_IPA).is_some_and(|t| t.write));
}

#[test]
fn a_send_to_the_normal_world_has_one_borrower_its_vm_may_reach() {
    let mut s = world();
    donate_ns_to_sp1(&mut s, NS_MEM, 2);
    let before = snapshot(&s);
    // Mixed worlds, or two normal-world borrowers: DENIED.
    let share = func::MEM_SHARE_64;
    assert_eq!(
        sp1_send_ns(&mut s, share, &[(0, perm::RW), (SP2, perm::RW)], NS_MEM),
        Err(FfaError::Denied.code())
    );
    assert_eq!(
        sp1_send_ns(&mut s, share, &[(1, perm::RW), (2, perm::RW)], NS_MEM),
        Err(FfaError::Denied.code())
    );
    // A VM that may not reach SP1 (no binding in this policy).
    assert_eq!(
        sp1_send_ns(&mut s, share, &[(5, perm::RW)], NS_MEM),
        Err(FfaError::Denied.code())
    );
    // Memory it does not own: normal-world memory it never got, its
    // mapped pages mixed with secure ones.
    assert_eq!(
        sp1_send_ns(&mut s, share, &[(0, perm::RW)], NS_MEM + 8 * PAGE_SIZE),
        Err(FfaError::Denied.code())
    );
    let mixed = D::send(SP1, &[(SP2, perm::RW)], &[(NS_MEM, 1), (SP_LEND_IPA, 1)]);
    assert_eq!(
        sp_err(&sp_send(&mut s, SP1, share, &mixed)),
        code(FfaError::InvalidParameters)
    );
    assert_eq!(snapshot(&s), before);
    // The normal world never names itself as a borrower of its own send.
    let r = nwd_send(
        &mut s,
        share,
        &D::send(0, &[(1, perm::RW)], &[(NS_MEM + 9 * PAGE_SIZE, 1)]),
    );
    assert_eq!(r.error_code(), code(FfaError::InvalidParameters));
}

#[test]
fn a_vm_borrows_from_the_shared_service_it_may_reach() {
    let mut s = policy_world(None);
    // The version first: any other call fixes it (DEN0077 v1.2 §13.2).
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    map_nwd_buffers(&mut s);
    // The normal world donates a page to the shared TPM service, which
    // shares it with VM 2 (shared services are every VM's).
    let h = nwd_send_ok(
        &mut s,
        func::MEM_DONATE_64,
        &D::send(0, &[(TPM, 0)], &[(NS_MEM, 1)]),
    );
    retrieve(&mut s, TPM, &D::retrieve(0, h, TPM, perm::RW)).unwrap();
    let x = sp_send(
        &mut s,
        TPM,
        func::MEM_SHARE_64,
        &D::send(TPM, &[(2, perm::RO)], &[(NS_MEM, 1)]),
    );
    assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
    let h = x[2] | x[3] << 32;
    // The hypervisor retrieves for VM 2; VM 3 is not a borrower.
    assert_eq!(
        nwd_retrieve(&mut s, &D::retrieve(TPM, h, 3, perm::RO)),
        Err(FfaError::Denied.code())
    );
    let resp = nwd_retrieve(&mut s, &D::retrieve(TPM, h, 2, perm::RO)).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!(r.receivers[0].id, 2);
    assert_eq!(nwd_relinquish(&mut s, h, 0, &[3]), code(FfaError::Denied));
    assert_eq!(nwd_relinquish(&mut s, h, 0, &[2]), None);
}

#[test]
fn donated_to_the_normal_world_the_memory_is_its_own_again() {
    let mut s = world();
    donate_ns_to_sp1(&mut s, NS_MEM, 1);
    assert_eq!(s.mem().donated().len(), 1);
    let h = sp1_send_ns(&mut s, func::MEM_DONATE_64, &[(0, 0)], NS_MEM).unwrap();
    assert_eq!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM), None);
    let resp = nwd_retrieve(&mut s, &D::retrieve(SP1, h, 0, perm::RW)).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!(r.flags & flags::TYPE_MASK, Op::Donate.type_bits());
    assert!(s.mem().transaction(h).is_none(), "the handle is retired");
    assert_eq!(s.mem().donated().len(), 0, "no partition owns it");
    assert_eq!(spmc::testing::contract::check(&s), Ok(()));
    assert_eq!(sp1_reclaim(&mut s, h), code(FfaError::InvalidParameters));
    // SP1 cannot send it any more; the normal world can.
    assert_eq!(
        sp1_send_ns(&mut s, func::MEM_SHARE_64, &[(SP2, perm::RW)], NS_MEM),
        Err(FfaError::Denied.code())
    );
    let h2 = nwd_send_ok(
        &mut s,
        func::MEM_SHARE_64,
        &D::send(0, &[(SP2, perm::RW)], &[(NS_MEM, 1)]),
    );
    assert_eq!(nwd_reclaim(&mut s, h2, 0).func(), func::SUCCESS_32);
}

#[test]
fn normal_world_retrieve_and_relinquish_errors_change_nothing() {
    let mut s = world();
    donate_ns_to_sp1(&mut s, NS_MEM, 1);
    let h = sp1_send_ns(&mut s, func::MEM_SHARE_64, &[(0, perm::RO)], NS_MEM).unwrap();
    let before = snapshot(&s);
    let bad = |mut d: D, f: &dyn Fn(&mut D)| {
        f(&mut d);
        d
    };
    let ok = D::retrieve(SP1, h, 0, perm::RO);
    let cases: Vec<(D, FfaError)> = vec![
        (
            bad(ok.clone(), &|d| d.handle = 0xDEAD),
            FfaError::InvalidParameters,
        ),
        (bad(ok.clone(), &|d| d.tag = 1), FfaError::InvalidParameters),
        (
            bad(ok.clone(), &|d| d.sender = SP2),
            FfaError::InvalidParameters,
        ),
        // Not a borrower; a secure ID from the normal world.
        (
            bad(ok.clone(), &|d| d.receivers = vec![(4, perm::RO)]),
            FfaError::Denied,
        ),
        (
            bad(ok.clone(), &|d| d.receivers = vec![(SP2, perm::RO)]),
            FfaError::InvalidParameters,
        ),
        // More access than the sharer gave; instruction access on a share;
        // the zero flags on a share; other attributes than the sharer's.
        (
            bad(ok.clone(), &|d| d.receivers = vec![(0, perm::RW)]),
            FfaError::Denied,
        ),
        (
            bad(ok.clone(), &|d| d.receivers = vec![(0, perm::RO | perm::X)]),
            FfaError::InvalidParameters,
        ),
        (
            bad(ok.clone(), &|d| d.flags = flags::ZERO),
            FfaError::InvalidParameters,
        ),
        (
            bad(ok.clone(), &|d| d.attrs = attr::DEVICE_NGNRE),
            FfaError::InvalidParameters,
        ),
    ];
    for (d, e) in cases {
        assert_eq!(nwd_retrieve(&mut s, &d), Err(e.code()), "{d:?}");
        assert_eq!(snapshot(&s), before);
    }
    // Relinquish before any retrieve; naming a partition; naming two.
    assert_eq!(nwd_relinquish(&mut s, h, 0, &[0]), code(FfaError::Denied));
    assert_eq!(
        nwd_relinquish(&mut s, h, 0, &[SP1]),
        code(FfaError::InvalidParameters)
    );
    assert_eq!(
        nwd_relinquish(&mut s, h, 0, &[0, 1]),
        code(FfaError::InvalidParameters)
    );
    // RX full: BUSY.
    s.platform_mut().nwd_write(NWD_TX, &ok.bytes());
    let n = ok.bytes().len() as u64;
    let r = nwd_now(&mut s, &[func::MEM_RETRIEVE_REQ_64 as u64, n, n, 0, 0]);
    assert_eq!(r.func(), func::MEM_RETRIEVE_RESP);
    let r = nwd_now(&mut s, &[func::MEM_RETRIEVE_REQ_64 as u64, n, n, 0, 0]);
    assert_eq!(r.error_code(), code(FfaError::Busy));
    assert_eq!(
        nwd_now(&mut s, &[func::RX_RELEASE as u64]).func(),
        func::SUCCESS_32
    );
    // Retrieved twice, relinquished twice; reclaim only then.
    nwd_retrieve(&mut s, &ok).unwrap();
    assert_eq!(s.mem().transaction(h).unwrap().borrowers[0].retrieves, 2);
    assert_eq!(nwd_relinquish(&mut s, h, 0, &[0]), None);
    assert_eq!(sp1_reclaim(&mut s, h), code(FfaError::Denied));
    assert_eq!(nwd_relinquish(&mut s, h, 0, &[0]), None);
    assert_eq!(sp1_reclaim(&mut s, h), None);
    // The share kept SP1's own mapping all along.
    assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM).is_some_and(|t| t.write));
}

#[test]
fn the_hypervisor_retrieve_request_describes_without_retrieving() {
    let mut s = world();
    donate_ns_to_sp1(&mut s, NS_MEM, 1);
    let h = sp1_send_ns(&mut s, func::MEM_LEND_64, &[(0, perm::RW)], NS_MEM).unwrap();
    let mut hyp = D::retrieve(0, h, 0, 0);
    hyp.receivers.clear();
    let resp = nwd_retrieve(&mut s, &hyp).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!((r.sender, r.handle), (SP1, h));
    assert_eq!(r.flags & flags::TYPE_MASK, Op::Lend.type_bits());
    assert_ne!(r.attributes & attr::NS, 0);
    assert_eq!(r.receivers.len(), 1);
    assert_eq!((r.receivers[0].id, r.receivers[0].perms), (0, perm::RW));
    assert_eq!((r.ranges[0].addr, r.total_pages), (NS_MEM, 1));
    // Not the borrower's retrieve: nothing changed.
    let t = s.mem().transaction(h).unwrap();
    assert_eq!(t.borrowers[0].state, BorrowerState::NotRetrieved);
    assert_eq!(
        nwd_relinquish(&mut s, h, 0, &[0]),
        code(FfaError::Denied),
        "nothing retrieved"
    );
    // Every other field zero; a partition's request always names itself.
    let mut tagged = hyp.clone();
    tagged.tag = 1;
    assert_eq!(
        nwd_retrieve(&mut s, &tagged),
        Err(FfaError::InvalidParameters.code())
    );
    sp_write_tx(&mut s, SP2, &hyp.bytes());
    let n = hyp.bytes().len() as u64;
    let x = sp(&mut s, SP2, &[func::MEM_RETRIEVE_REQ_64 as u64, n, n, 0, 0]);
    assert_eq!(sp_err(&x), code(FfaError::InvalidParameters));
    // A transaction between partitions is not the normal world's to see.
    let d = D::send(SP1, &[(SP2, perm::RW)], &[(SP_LEND_IPA, 1)]);
    let x = sp_send(&mut s, SP1, func::MEM_SHARE_64, &d);
    let h2 = x[2] | x[3] << 32;
    hyp.handle = h2;
    assert_eq!(
        nwd_retrieve(&mut s, &hyp),
        Err(FfaError::InvalidParameters.code())
    );
    // It describes the normal world's own sends too (to reclaim them).
    let h3 = nwd_send_ok(
        &mut s,
        func::MEM_SHARE_64,
        &D::send(
            0,
            &[(SP1, perm::RO), (SP2, perm::RW)],
            &[(NS_MEM + 4 * PAGE_SIZE, 2)],
        ),
    );
    hyp.handle = h3;
    let resp = nwd_retrieve(&mut s, &hyp).unwrap();
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    let ids: Vec<_> = r.receivers.iter().map(|x| (x.id, x.perms)).collect();
    assert_eq!(ids, vec![(SP1, perm::RO), (SP2, perm::RW)]);
}

#[test]
fn a_long_hypervisor_retrieve_response_leaves_in_fragments() {
    let mut s = world();
    // 300 separate pages shared with SP1: a response of 4.8 KiB in a
    // one-page RX buffer.
    let ranges: Vec<(u64, u32)> = (0..300).map(|i| (NS_MEM + 2 * i * PAGE_SIZE, 1)).collect();
    let d = D::send(0, &[(SP1, perm::RW)], &ranges);
    let b = d.bytes();
    s.platform_mut().nwd_write(NWD_TX, &b[..4096]);
    let n = b.len() as u64;
    let r = nwd_now(&mut s, &[func::MEM_SHARE_64 as u64, n, 4096, 0, 0]);
    assert_eq!(r.func(), func::MEM_FRAG_RX);
    let h = r.x(1) | r.x(2) << 32;
    s.platform_mut().nwd_write(NWD_TX, &b[4096..]);
    let r = nwd_now(
        &mut s,
        &[func::MEM_FRAG_TX as u64, h & 0xFFFF_FFFF, h >> 32, n - 4096],
    );
    assert_eq!(r.func(), func::SUCCESS_32);
    let mut hyp = D::retrieve(0, h, 0, 0);
    hyp.receivers.clear();
    let resp = nwd_retrieve(&mut s, &hyp).unwrap();
    assert!(resp.len() > 4096);
    let r = desc::parse(&resp, Layout::V1_1, desc::Purpose::Send).unwrap();
    assert_eq!(r.ranges.len(), 300);
    assert_eq!(r.ranges[299].addr, NS_MEM + 598 * PAGE_SIZE);
    assert_eq!(s.mem().outgoing_count(), 0);
    assert_eq!(nwd_reclaim(&mut s, h, 0).func(), func::SUCCESS_32);
}

/// A VM's own TEE (an instance) gives its VM a buffer: normal-world memory
/// the VM donated to it, lent back to that VM alone; its secure memory
/// never, another VM never; destroyed, it takes back what it lent, zeroed.
#[test]
fn a_tee_lends_its_own_vm_what_the_vm_donated_to_it() {
    let mut s = policy_world(None);
    // The version first: any other call fixes it (DEN0077 v1.2 §13.2).
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    map_nwd_buffers(&mut s);
    assert_eq!(create_vm(&mut s, 1), 0);
    assert_eq!(create_vm(&mut s, 2), 0);
    let i1 = instance_id(&s, 1).unwrap();
    let given = nwd_send_ok(
        &mut s,
        func::MEM_DONATE_64,
        &D::send(1, &[(TEMPLATE, 0)], &[(NS_MEM, 1)]),
    );
    retrieve_as(&mut s, 1, i1, &D::retrieve(1, given, i1, perm::RW)).unwrap();
    s.platform_mut().nwd_write(NS_MEM, b"signed by the TEE");
    let send_as_tee = |s: &mut Spmc<FakePlatform>, to: u16, addr: u64| {
        let d = D::send(i1, &[(to, perm::RW)], &[(addr, 1)]);
        let b = d.bytes();
        sp_write_tx(s, i1, &b);
        let n = b.len() as u64;
        sp_as(s, 1, i1, &[func::MEM_LEND_64 as u64, n, n, 0, 0])
    };
    let before = snapshot(&s);
    // Another VM, a partition, the hypervisor itself: DENIED.
    for to in [2u16, SP1, 0] {
        assert_eq!(
            sp_err(&send_as_tee(&mut s, to, NS_MEM)),
            code(FfaError::Denied)
        );
    }
    // Its own secure memory: DENIED.
    let secure_ipa = s.partition(slot(&s, i1)).memory[0].0.0;
    assert_eq!(
        sp_err(&send_as_tee(&mut s, 1, secure_ipa)),
        code(FfaError::Denied)
    );
    assert_eq!(snapshot(&s), before);
    // To its own VM: the hypervisor retrieves for VM 1.
    let x = send_as_tee(&mut s, 1, NS_MEM);
    assert_eq!(x[0] as u32, func::SUCCESS_32, "{x:x?}");
    let h = x[2] | x[3] << 32;
    assert_eq!(lookup(&s, i1, IpaSpace::NonSecure, NS_MEM), None);
    assert_eq!(
        nwd_retrieve(&mut s, &D::retrieve(i1, h, 2, perm::RW)),
        Err(FfaError::Denied.code())
    );
    nwd_retrieve(&mut s, &D::retrieve(i1, h, 1, perm::RW)).unwrap();
    assert_eq!(s.platform().nwd_read(NS_MEM, 17), b"signed by the TEE");
    assert_eq!(spmc::testing::contract::check(&s), Ok(()));
    // The TEE goes while its VM holds the buffer: the transaction is
    // dissolved, the memory zeroed, the normal world's again.
    assert_eq!(destroy_vm(&mut s, 1), 0);
    assert!(s.mem().transaction(h).is_none());
    assert!(s.mem().donated().is_empty());
    assert_eq!(s.platform().nwd_read(NS_MEM, 17), vec![0; 17]);
    assert_eq!(
        nwd_relinquish(&mut s, h, 0, &[1]),
        code(FfaError::InvalidParameters)
    );
    assert_eq!(spmc::testing::contract::check(&s), Ok(()));
    nwd_send_ok(
        &mut s,
        func::MEM_SHARE_64,
        &D::send(0, &[(SP1, perm::RW)], &[(NS_MEM, 1)]),
    );
}

/// A VM that goes while it holds a static partition's memory lets it go:
/// the lender reclaims, and the memory is zeroed as the VM's retrieve
/// asked (zero after relinquish).
#[test]
fn a_destroyed_vm_lets_go_of_what_it_borrowed() {
    let mut s = policy_world(None);
    // The version first: any other call fixes it (DEN0077 v1.2 §13.2).
    nwd_now(&mut s, &[func::VERSION as u64, 0x1_0002]);
    map_nwd_buffers(&mut s);
    assert_eq!(create_vm(&mut s, 1), 0);
    donate_ns_to_sp1(&mut s, NS_MEM, 1);
    // SP1 is bound to VM 1 in the shipped policy.
    let h = sp1_send_ns(&mut s, func::MEM_LEND_64, &[(1, perm::RW)], NS_MEM).unwrap();
    let mut rq = D::retrieve(SP1, h, 1, perm::RW);
    rq.flags = flags::ZERO_AFTER_RELINQUISH;
    nwd_retrieve(&mut s, &rq).unwrap();
    s.platform_mut().nwd_write(NS_MEM, b"the VM's notes");
    assert_eq!(sp1_reclaim(&mut s, h), code(FfaError::Denied));
    assert_eq!(destroy_vm(&mut s, 1), 0);
    assert_eq!(
        s.mem().transaction(h).unwrap().borrowers[0].state,
        BorrowerState::Relinquished
    );
    assert_eq!(s.platform().nwd_read(NS_MEM, 14), vec![0; 14], "zeroed");
    assert_eq!(sp1_reclaim(&mut s, h), None);
    assert!(lookup(&s, SP1, IpaSpace::NonSecure, NS_MEM).is_some_and(|t| t.write));
    assert_eq!(spmc::testing::contract::check(&s), Ok(()));
}
