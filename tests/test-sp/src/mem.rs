//! The memory-sharing commands (`cmd::MEM_*`, docs/memory-sharing.md): the
//! partition as a borrower (retrieve, relinquish, touch the memory) and as a
//! sender of its own pages. Descriptors are written and read with
//! `test_protocol::mem`, the tests' own reading of the specification.
//!
//! Choices where the protocol leaves room:
//! - A retrieve response is reassembled in [`MemState`] (12 KiB, in .bss);
//!   bytes past that are not kept, so constituents past it read as missing.
//!   At most 64 fragments are asked for.
//! - RX is released (FFA_RX_RELEASE, header cleared first) after each
//!   fragment is copied out, before the next FFA_MEM_FRAG_RX, unless
//!   `KEEP_RX` is asked; a response in the partition's own buffer page
//!   needs no release and its fragments are not followed.
//! - Retrieve requests carry one EMAD, the partition's own, and no
//!   composite; their attributes are normal write-back inner shareable
//!   unless `NO_ATTRIBUTES` is asked.
//! - The version a request names (MEM_RETRIEVE arg3, MEM_SEND layouts)
//!   only picks the descriptor layout: the partition's version was fixed by
//!   its boot (DEN0077 v1.2 §13.2; its manifest's `ffa-version`), so a
//!   layout of another version is the SPMC's to refuse.

use test_protocol::cmd::{retrieve, send};
use test_protocol::mem::{
    Composite, Descriptor, Emad, Layout, Range, Receiver, Relinquish, Transaction, attr, func,
};
use test_protocol::{layout, status};

use crate::commands::Answer;
use crate::ffa::{self, Mailbox, NARGS, Regs, call};

/// Bytes of a retrieve response the partition keeps.
const KEEP: usize = 12 * 1024;
/// Size of a mailbox page and of the partition's own buffer.
const PAGE: usize = 4096;
/// Most fragments a retrieve follows.
const MAX_FRAGMENTS: u32 = 64;

const V1_0: u64 = ffa::V1_0 as u64;

/// The last retrieve response, as received.
#[derive(Debug)]
pub struct MemState {
    buf: [u8; KEEP],
    /// Bytes kept (at most KEEP).
    len: usize,
    /// Whether it is in the v1.0 layout.
    v1_0: bool,
    /// Fragments received.
    fragments: u32,
}

impl MemState {
    /// Nothing received yet (all zero: lives in .bss).
    pub const fn new() -> Self {
        Self {
            buf: [0; KEEP],
            len: 0,
            v1_0: false,
            fragments: 0,
        }
    }

    /// Appends `n` bytes of a fragment that lies at `src` (the RX page or
    /// our own buffer page); returns how many were kept.
    fn append(&mut self, src: Source, n: usize) -> usize {
        let n = n.min(PAGE);
        let room = KEEP - self.len;
        let keep = n.min(room);
        src.copy_out(&mut self.buf[self.len..self.len + keep]);
        self.len += keep;
        self.fragments += 1;
        keep
    }

    /// The response, parsed, with the caller's EMAD and its composite.
    fn parsed(&self, own: u16) -> Option<(Descriptor<'_>, Emad, Composite)> {
        let d = Descriptor::parse(&self.buf[..self.len], self.v1_0).ok()?;
        let e = d.emad_of(own).or_else(|| d.emad(0).ok())?;
        let c = d.composite(&e).ok()?;
        Some((d, e, c))
    }

    /// Constituents that lie in the kept bytes, and the sum of their pages.
    fn ranges_read(d: &Descriptor<'_>, c: &Composite) -> (u64, u64, bool) {
        let (mut n, mut pages, mut reserved_zero) = (0, 0, true);
        for i in 0..c.range_count as usize {
            match d.range(c, i) {
                Ok((r, reserved)) => {
                    n += 1;
                    pages += r.pages as u64;
                    reserved_zero &= reserved == 0;
                }
                Err(_) => break,
            }
        }
        (n, pages, reserved_zero)
    }

    /// MEM_INFO.
    pub fn info(&self, own: u16) -> Answer {
        let Some((d, e, c)) = self.parsed(own) else {
            return (status::MALFORMED, [0; NARGS]);
        };
        let (n, _, ranges_zero) = Self::ranges_read(&d, &c);
        let reserved_zero =
            d.header_reserved_zero() && e.reserved == 0 && c.reserved == 0 && ranges_zero;
        let sender_etc = d.sender() as u64
            | (d.emad_count() as u64 & 0xFFFF) << 16
            | (d.emad_size() as u64 & 0xFFFF) << 32
            | (reserved_zero as u64) << 48;
        ok(&[d.handle(), sender_etc, d.flags() as u64 | n << 32, d.tag()])
    }

    /// MEM_RANGE.
    pub fn range(&self, own: u16, index: u64) -> Answer {
        let Some((d, _, c)) = self.parsed(own) else {
            return (status::MALFORMED, [0; NARGS]);
        };
        let (n, pages, _) = Self::ranges_read(&d, &c);
        if index >= n {
            return (status::BAD_ARG, [0; NARGS]);
        }
        match d.range(&c, index as usize) {
            Ok((r, _)) => ok(&[r.addr, r.pages as u64, pages, c.range_count as u64]),
            Err(_) => (status::BAD_ARG, [0; NARGS]),
        }
    }
}

/// Where a fragment lies.
#[derive(Clone, Copy, Debug)]
enum Source {
    Rx,
    OwnPage,
}

impl Source {
    fn copy_out(self, dst: &mut [u8]) {
        match self {
            Source::Rx => {
                for (i, b) in dst.iter_mut().enumerate() {
                    *b = Mailbox::Rx.read::<u8>(i);
                }
            }
            Source::OwnPage => {
                let base = layout::RETRIEVE_BUF_IPA as *const u8;
                for (i, b) in dst.iter_mut().take(PAGE).enumerate() {
                    // SAFETY: RETRIEVE_BUF_IPA is the last page of our `ram`
                    // region, which the image never uses (sp.ld) and the
                    // boot map maps read-write; `i` stays inside the page.
                    *b = unsafe { base.wrapping_add(i).read_volatile() };
                }
            }
        }
    }
}

/// Writes `bytes` at the start of TX.
fn to_tx(bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        Mailbox::Tx.write::<u8>(i, *b);
    }
}

/// Writes `bytes` at the start of our own buffer page.
fn to_own_page(bytes: &[u8]) {
    let base = layout::RETRIEVE_BUF_IPA as *mut u8;
    for (i, b) in bytes.iter().take(PAGE).enumerate() {
        // SAFETY: as in `Source::copy_out`; nothing else refers to the page.
        unsafe { base.wrapping_add(i).write_volatile(*b) };
    }
}

/// `w0 | code << 32` of an answer.
pub fn answer(r: &Regs) -> u64 {
    let w0 = r[0] as u32 as u64;
    if w0 == ffa::ERROR_32 {
        w0 | (r[2] as u32 as u64) << 32
    } else {
        w0
    }
}

fn ok(v: &[u64]) -> Answer {
    let mut out = [0; NARGS];
    out[..v.len()].copy_from_slice(v);
    (status::OK, out)
}

/// MEM_RETRIEVE.
pub fn retrieve(own: u16, m: &mut MemState, a: &[u64; NARGS]) -> Answer {
    let handle = a[0];
    let tflags = a[2] as u32;
    let owner = (a[2] >> 32) as u16;
    let perms = (a[2] >> 48) as u8;
    let opts = a[2] >> 56;
    let version = a[3] as u32 as u64;
    let emad_size = (a[3] >> 32) as u8 as usize;
    let buffer = (a[3] >> 40) as u8 as u64;
    let ask_attrs = (a[3] >> 48) as u16;

    let mut layout = Layout::for_version(if version == 0 {
        ffa::V1_2
    } else {
        version as u32
    });
    if emad_size != 0
        && let Layout::V1_1 { .. } = layout
    {
        layout = Layout::V1_1 { emad_size };
    }
    let me = [Receiver::new(own, perms)];
    let mut t = Transaction::retrieve(layout, owner, handle, tflags, &me);
    t.tag = a[1];
    if ask_attrs != 0 {
        t.attributes = ask_attrs;
    }
    if opts & retrieve::NO_ATTRIBUTES != 0 {
        t.attributes = 0;
    }
    let mut req = [0u8; 128];
    let Ok(mut n) = t.write(&mut req) else {
        return (status::BAD_ARG, [0; NARGS]);
    };
    if opts & retrieve::LONGER != 0 && n + 16 <= req.len() {
        n += 16;
    }
    if opts & retrieve::IMPDEF != 0 && layout.emad_size() == 32 {
        let at = t.emad_offset(0) + test_protocol::mem::off::EMAD32_IMPDEF;
        req[at..at + 16].copy_from_slice(&test_protocol::mem::IMPDEF);
    }
    let (w3, w4, src) = match buffer {
        retrieve::BUF_MAILBOX => {
            to_tx(&req[..n]);
            (0, 0, Source::Rx)
        }
        retrieve::BUF_OWN_PAGE => {
            to_own_page(&req[..n]);
            (layout::RETRIEVE_BUF_IPA, 1, Source::OwnPage)
        }
        retrieve::BUF_NOT_OURS => {
            to_tx(&req[..n]);
            (layout::UNMAPPED_IPA, 1, Source::Rx)
        }
        _ => return (status::BAD_ARG, [0; NARGS]),
    };
    let f = if opts & retrieve::SMC32 != 0 {
        func::RETRIEVE_REQ_32
    } else {
        func::RETRIEVE_REQ_64
    };

    let ans = call(f, &[n as u64, n as u64, w3, w4]);
    m.len = 0;
    m.fragments = 0;
    m.v1_0 = version == V1_0;
    let mut result0 = answer(&ans);
    let (total, first) = (ans[1] as u32 as usize, ans[2] as u32 as usize);
    if ans[0] as u32 as u64 == func::RETRIEVE_RESP {
        m.append(src, first);
        let mailbox = matches!(src, Source::Rx);
        if opts & retrieve::KEEP_RX == 0 && mailbox {
            ffa::rx_release();
        }
        let follow =
            opts & (retrieve::KEEP_RX | retrieve::FIRST_FRAGMENT) == 0 && mailbox && first > 0;
        let mut received = first;
        while follow && received < total && m.fragments < MAX_FRAGMENTS {
            let r = call(
                func::FRAG_RX,
                &[handle & 0xFFFF_FFFF, handle >> 32, received as u64],
            );
            if r[0] as u32 as u64 != func::FRAG_TX {
                result0 = answer(&r);
                break;
            }
            let len = r[3] as u32 as usize;
            m.append(Source::Rx, len);
            ffa::rx_release();
            if len == 0 {
                break;
            }
            received += len;
        }
    }

    let mut out = [0; NARGS];
    out[0] = result0;
    out[1] = total as u64 | (first as u64) << 32;
    if m.len == 0 {
        return (status::OK, out);
    }
    let Some((d, e, c)) = m.parsed(own) else {
        return (status::MALFORMED, out);
    };
    out[2] = d.range(&c, 0).map_or(0, |(r, _)| r.addr);
    out[3] = c.total_pages as u64
        | (e.perms as u64) << 32
        | (d.attributes() as u64) << 40
        | (m.fragments.min(255) as u64) << 56;
    (status::OK, out)
}

/// MEM_RELINQUISH.
pub fn relinquish(own: u16, a: &[u64; NARGS]) -> Answer {
    let who = if a[2] == 0 { own } else { a[2] as u16 };
    let ids = [who];
    let r = Relinquish {
        handle: a[0],
        flags: a[1] as u32,
        endpoints: &ids,
    };
    let mut b = [0u8; 32];
    let Ok(n) = r.write(&mut b) else {
        return (status::BAD_ARG, [0; NARGS]);
    };
    to_tx(&b[..n]);
    ok(&[answer(&call(func::RELINQUISH, &[]))])
}

/// MEM_SEND.
pub fn send(own: u16, a: &[u64; NARGS]) -> Answer {
    let ranges = [Range {
        addr: a[0],
        pages: a[1] as u32,
    }];
    let perms = (a[2] >> 48) as u8;
    let opts = a[2] >> 56;
    let mut rx = [Receiver::new(0, 0); 3];
    let mut count = 0;
    for i in 0..3 {
        let id = (a[2] >> (16 * i)) as u16;
        // A normal-world first receiver may be endpoint 0.
        if id != 0 || (i == 0 && opts & send::NWD != 0) {
            rx[count] = Receiver::new(id, perms);
            count += 1;
        }
    }
    let sender = match (a[3] >> 32) as u16 {
        0 => own,
        s => s,
    };
    let layout = match (a[3] >> 48) as u8 as u64 {
        send::LAYOUT_V1_2 => Layout::V1_2,
        send::LAYOUT_V1_0 => Layout::V1_0,
        send::LAYOUT_V1_1 => Layout::V1_1_16,
        send::LAYOUT_V1_2_EMAD16 => Layout::V1_1_16,
        _ => return (status::BAD_ARG, [0; NARGS]),
    };
    let f = match (opts & 3, opts & send::SMC32 == 0) {
        (send::SHARE, true) => func::SHARE_64,
        (send::SHARE, false) => func::SHARE_32,
        (send::LEND, true) => func::LEND_64,
        (send::LEND, false) => func::LEND_32,
        (send::DONATE, true) => func::DONATE_64,
        (send::DONATE, false) => func::DONATE_32,
        _ => return (status::BAD_ARG, [0; NARGS]),
    };
    let attributes = match a[3] >> 56 {
        send::ATTRS_BY_OP => test_protocol::mem::sender_attributes(f, count),
        send::ATTRS_NORMAL => attr::NORMAL_WB_INNER,
        send::ATTRS_DEVICE => attr::DEVICE_NGNRE,
        send::ATTRS_NONE => 0,
        _ => return (status::BAD_ARG, [0; NARGS]),
    };
    let t = Transaction {
        layout,
        sender,
        attributes,
        flags: a[3] as u32,
        handle: 0,
        tag: a[1] >> 32,
        receivers: &rx[..count],
        ranges: Some(&ranges),
    };
    let mut b = [0u8; 256];
    let Ok(n) = t.write(&mut b) else {
        return (status::BAD_ARG, [0; NARGS]);
    };
    to_tx(&b[..n]);
    let r = call(f, &[n as u64, n as u64, 0, 0]);
    let w = |i: usize| r[i] as u32 as u64;
    let handle = if r[0] as u32 as u64 == func::FRAG_RX {
        w(1) | w(2) << 32
    } else if r[0] as u32 as u64 == ffa::SUCCESS_32 {
        w(2) | w(3) << 32
    } else {
        0
    };
    ok(&[answer(&r), handle, w(3)])
}

/// MEM_CYCLE: retrieve read-write, release RX, relinquish.
pub fn cycle(own: u16, a: &[u64; NARGS]) -> Answer {
    let me = [Receiver::new(own, test_protocol::mem::perm::RW)];
    let t = Transaction::retrieve(Layout::V1_2, a[1] as u16, a[0], a[2] as u32, &me);
    let mut b = [0u8; 96];
    let Ok(n) = t.write(&mut b) else {
        return (status::BAD_ARG, [0; NARGS]);
    };
    to_tx(&b[..n]);
    let r = call(func::RETRIEVE_REQ_64, &[n as u64, n as u64, 0, 0]);
    if r[0] as u32 as u64 != func::RETRIEVE_RESP {
        return ok(&[answer(&r)]);
    }
    let r = ffa::rx_release();
    if !ffa::ok(&r) {
        return ok(&[answer(&r)]);
    }
    let mut args = [0; NARGS];
    args[0] = a[0];
    let (_, res) = relinquish(own, &args);
    if res[0] == ffa::SUCCESS_32 {
        ok(&[0])
    } else {
        ok(&[res[0]])
    }
}

/// The words MEM_FILL writes: `seed + i`.
fn word(seed: u64, i: u64) -> u64 {
    seed.wrapping_add(i)
}

/// MEM_FILL, MEM_CHECK and MEM_SUM over `bytes` bytes at `addr`.
pub fn touch(c: u64, addr: u64, bytes: u64, seed: u64) -> Answer {
    if !bytes.is_multiple_of(8) || !addr.is_multiple_of(8) {
        return (status::BAD_ARG, [0; NARGS]);
    }
    let words = bytes / 8;
    let p = addr as *mut u64;
    let at = |i: u64| p.wrapping_add(i as usize);
    match c {
        test_protocol::cmd::MEM_FILL => {
            for i in 0..words {
                // SAFETY: deliberately any address the harness names (as
                // cmd::WRITE): memory the partition does not hold faults,
                // and the SPMC aborting it is what some checks look for.
                unsafe { at(i).write_volatile(word(seed, i)) };
            }
            ok(&[words])
        }
        test_protocol::cmd::MEM_CHECK => {
            let (mut bad, mut first, mut found) = (0, u64::MAX, 0);
            for i in 0..words {
                // SAFETY: as for MEM_FILL.
                let v = unsafe { at(i).read_volatile() };
                if v != word(seed, i) {
                    if bad == 0 {
                        first = i;
                        found = v;
                    }
                    bad += 1;
                }
            }
            ok(&[bad, first, found])
        }
        _ => {
            let (mut sum, mut nonzero, mut last) = (0u64, 0, 0);
            for i in 0..words {
                // SAFETY: as for MEM_FILL.
                let v = unsafe { at(i).read_volatile() };
                sum = sum.wrapping_add(v);
                nonzero += (v != 0) as u64;
                last = v;
            }
            ok(&[sum, nonzero, last])
        }
    }
}

/// Retrieves `handle` from `owner` read-write (v1.2, flags 0), releases
/// RX and seals the `bytes` bytes at the start of its first constituent
/// with `key`, writing the seal right after them: Ok((seal, address)), or
/// the answer to return.
fn retrieve_and_seal(
    own: u16,
    handle: u64,
    owner: u16,
    bytes: u64,
    key: u64,
) -> Result<(u64, u64), Answer> {
    if !bytes.is_multiple_of(8) || bytes + 8 > PAGE as u64 {
        return Err((status::BAD_ARG, [0; NARGS]));
    }
    let me = [Receiver::new(own, test_protocol::mem::perm::RW)];
    let t = Transaction::retrieve(Layout::V1_2, owner, handle, 0, &me);
    let mut b = [0u8; 96];
    let Ok(n) = t.write(&mut b) else {
        return Err((status::BAD_ARG, [0; NARGS]));
    };
    to_tx(&b[..n]);
    let r = call(func::RETRIEVE_REQ_64, &[n as u64, n as u64, 0, 0]);
    if r[0] as u32 as u64 != func::RETRIEVE_RESP {
        return Err(ok(&[answer(&r)]));
    }
    let mut resp = [0u8; 256];
    let len = (r[2] as u32 as usize).min(resp.len());
    Source::Rx.copy_out(&mut resp[..len]);
    let addr = Descriptor::parse(&resp[..len], false)
        .ok()
        .and_then(|d| {
            let e = d.emad_of(own)?;
            let c = d.composite(&e).ok()?;
            d.range(&c, 0).ok().map(|(r, _)| r)
        })
        .filter(|r| r.pages as u64 * PAGE as u64 >= bytes + 8);
    let r = ffa::rx_release();
    let Some(range) = addr else {
        return Err((status::MALFORMED, [0; NARGS]));
    };
    if !ffa::ok(&r) {
        return Err(ok(&[answer(&r)]));
    }
    let p = range.addr as *mut u64;
    let words = (0..bytes / 8).map(|i| {
        // SAFETY: the memory just retrieved, mapped read-write for us
        // (normal-world memory at IPA = PA in the non-secure IPA space).
        unsafe { p.wrapping_add(i as usize).read_volatile() }
    });
    let s = test_protocol::seal(key, words);
    // SAFETY: as above; the word after the document is inside the range.
    unsafe { p.wrapping_add((bytes / 8) as usize).write_volatile(s) };
    Ok((s, range.addr))
}

/// MEM_SEAL: retrieve, seal the document at the start of the memory,
/// release RX, relinquish.
pub fn seal(own: u16, a: &[u64; NARGS]) -> Answer {
    let handle = a[0];
    let (s, addr) = match retrieve_and_seal(own, handle, a[1] as u16, a[2], a[3]) {
        Ok(v) => v,
        Err(ans) => return ans,
    };
    let mut args = [0; NARGS];
    args[0] = handle;
    let (_, res) = relinquish(own, &args);
    let first = if res[0] == ffa::SUCCESS_32 { 0 } else { res[0] };
    ok(&[first, s, addr])
}

/// MEM_RESULT: retrieve a VM's donation, seal the document in it and
/// send the page back to that VM (a vTEE instance may give its own VM
/// what the VM donated to it; docs/memory-sharing.md, "The normal world
/// as a borrower").
pub fn result(own: u16, a: &[u64; NARGS]) -> Answer {
    let (owner, bytes) = (a[1] as u16, a[2] & 0xFFFF);
    let kind = (a[2] >> 16) as u8 as u64;
    let perms = match (a[2] >> 24) as u8 {
        0 => test_protocol::mem::perm::RO,
        p => p,
    };
    if !matches!(kind, send::SHARE | send::LEND) {
        return (status::BAD_ARG, [0; NARGS]);
    }
    let (s, addr) = match retrieve_and_seal(own, a[0], owner, bytes, a[3]) {
        Ok(v) => v,
        Err(ans) => return ans,
    };
    let mut args = [0; NARGS];
    args[0] = addr & !(PAGE as u64 - 1);
    args[1] = 1;
    args[2] = owner as u64 | (perms as u64) << 48 | kind << 56;
    let (_, res) = send(own, &args);
    let first = if res[0] == ffa::SUCCESS_32 { 0 } else { res[0] };
    ok(&[first, res[1], s, addr])
}
