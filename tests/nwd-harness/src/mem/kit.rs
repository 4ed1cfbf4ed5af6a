//! What the memory-sharing checks are built from: the harness's own
//! normal-world pages, sending a descriptor from TX (with FFA_MEM_FRAG_TX
//! when it is longer than the buffer), reclaiming, and driving the test
//! partitions' `MEM_*` commands.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use test_protocol::cmd::{self, retrieve as ropt, send as sopt};
use test_protocol::mem::{Layout, Range, Ranges, Receiver, Transaction, attr, flags, func, perm};
use test_protocol::{layout, status};

use crate::ffa::{self, Regs, call};
use crate::report::Fail;

/// A result whose error is a check's failure.
pub type R<T> = Result<T, Fail>;

/// A failure without values.
pub fn fail(what: &'static str) -> Fail {
    Fail { what, values: None }
}

/// A failure with the value found and the one wanted.
pub fn fail_eq(what: &'static str, got: u64, want: u64) -> Fail {
    Fail {
        what,
        values: Some((got, want)),
    }
}

/// Page size.
pub const PAGE: u64 = 4096;
/// The harness's TX buffer size (one page, `ffa::map_buffers`).
pub const TX_SIZE: usize = 4096;

/// Normal-world memory the checks share: 64 MiB of NS DRAM well away from
/// the harness image (RAM + 0x2000_0000, 16 MiB with its stack and buffers,
/// tests/nwd-harness/memory.ld) and from what QEMU and TF-A put at the
/// start of DRAM (the device tree).
pub const ARENA: u64 = crate::board::NS_RAM + 0x3000_0000;
/// Pages in the arena.
pub const ARENA_PAGES: u64 = 0x4000;

static NEXT_PAGE: AtomicU64 = AtomicU64::new(0);

/// `pages` fresh pages of the arena (never handed out twice: a page the
/// harness donated is gone for good).
pub fn alloc(pages: u64) -> R<u64> {
    let first = NEXT_PAGE.fetch_add(pages, Ordering::Relaxed);
    if first + pages > ARENA_PAGES {
        return Err(fail("the harness's page arena is used up"));
    }
    Ok(ARENA + first * PAGE)
}

/// The words a fill with `seed` writes: `seed + i`.
fn word(seed: u64, i: u64) -> u64 {
    seed.wrapping_add(i)
}

fn arena_word(addr: u64, i: u64) -> *mut u64 {
    (addr as *mut u64).wrapping_add(i as usize)
}

/// Fills `bytes` bytes at `addr` (arena memory) with the words of `seed`.
pub fn fill(addr: u64, bytes: u64, seed: u64) {
    for i in 0..bytes / 8 {
        // SAFETY: `addr` comes from `alloc`: normal-world RAM of the arena,
        // identity-mapped read-write by the harness's boot map and used by
        // nothing else in the harness; aligned words inside it.
        unsafe { arena_word(addr, i).write_volatile(word(seed, i)) };
    }
}

/// How many words of `bytes` bytes at `addr` differ from `seed`'s fill
/// (`None` for seed: all zero).
pub fn differ(addr: u64, bytes: u64, seed: Option<u64>) -> u64 {
    let mut bad = 0;
    for i in 0..bytes / 8 {
        // SAFETY: as in `fill`.
        let v = unsafe { arena_word(addr, i).read_volatile() };
        if v != seed.map_or(0, |s| word(s, i)) {
            bad += 1;
        }
    }
    bad
}

/// The 32-bit function ID in w0.
pub fn w0(r: &Regs) -> u64 {
    r[0] as u32 as u64
}

/// Register `i` as a w-value.
pub fn w(r: &Regs, i: usize) -> u64 {
    r[i] as u32 as u64
}

/// Whether `r` is FFA_SUCCESS (the 32- or 64-bit form).
pub fn success(r: &Regs) -> bool {
    w0(r) | 0x4000_0000 == ffa::SUCCESS_64 & 0xFFFF_FFFF
}

/// The handle in w2/w3 of FFA_SUCCESS.
pub fn handle_of(r: &Regs) -> u64 {
    w(r, 2) | w(r, 3) << 32
}

/// Fails unless `r` is FFA_SUCCESS (showing w0 and the error code).
pub fn expect_success(r: &Regs, what: &'static str) -> R<()> {
    if success(r) {
        Ok(())
    } else {
        Err(fail_eq(what, w0(r) | (w(r, 2) << 32), ffa::SUCCESS_32))
    }
}

/// Fails unless `r` is FFA_ERROR with `want`.
pub fn expect_error(r: &Regs, want: i32, what: &'static str) -> R<()> {
    let got = ffa::code(r);
    if got == want {
        Ok(())
    } else {
        Err(fail_eq(
            what,
            got as u32 as u64 | w0(r) << 32,
            want as u32 as u64,
        ))
    }
}

/// The error code in a partition's answer word (`w0 | code << 32`), 0 if
/// it is not FFA_ERROR.
pub fn answer_code(a: u64) -> i32 {
    if a as u32 as u64 == ffa::ERROR_32 {
        (a >> 32) as u32 as i32
    } else {
        0
    }
}

/// Fails unless the partition's answer word is FFA_ERROR with `want`.
pub fn expect_answer_error(a: u64, want: i32, what: &'static str) -> R<()> {
    let got = answer_code(a);
    if got == want {
        Ok(())
    } else {
        Err(fail_eq(what, a, ffa::ERROR_32 | (want as u32 as u64) << 32))
    }
}

/// Fails unless the partition's answer word is the function `want`.
pub fn expect_answer(a: u64, want: u64, what: &'static str) -> R<()> {
    if a == want {
        Ok(())
    } else {
        Err(fail_eq(what, a, want))
    }
}

/// Runs `f`, which sends in version `v`'s layout: the normal world must be
/// at `v`. It can no longer switch (FF-A v1.2 §13.2 fixes the version once
/// another call was made), so such a check runs only in the boot whose
/// version is `v` (`crate::legacy`); anywhere else it is a harness bug.
pub fn at_version<T>(v: u32, f: impl FnOnce() -> T) -> T {
    assert_eq!(
        ffa::boot_version(),
        v,
        "a check for another normal-world version in this boot"
    );
    f()
}

/// The layout of this boot's normal-world version.
pub fn boot_layout() -> Layout {
    Layout::for_version(ffa::boot_version())
}

/// The layout of a normal-world send at version `v`.
pub fn layout_of(v: u32) -> Layout {
    Layout::for_version(v)
}

/// What a send ended with.
#[derive(Debug)]
pub struct Sent {
    /// The last answer (FFA_SUCCESS, FFA_ERROR, or FFA_MEM_FRAG_RX if the
    /// harness stopped early).
    pub r: Regs,
    /// The handle (from FFA_SUCCESS, else from FFA_MEM_FRAG_RX; 0 if none).
    pub handle: u64,
    /// Fragments sent.
    pub fragments: u32,
    /// Whether every FFA_MEM_FRAG_RX named the same handle and the bytes
    /// received so far.
    pub frag_rx_ok: bool,
}

/// Copies bytes `[offset, offset + n)` of `t` into TX.
pub fn part_to_tx(t: &Transaction<'_>, offset: usize, n: usize) -> usize {
    let mut buf = [0u8; TX_SIZE];
    let n = n.min(TX_SIZE);
    let wrote = t.write_part(offset, &mut buf[..n]).unwrap_or(0);
    ffa::tx_write(0, &buf[..wrote]);
    wrote
}

/// While set, sends keep the attributes their descriptor was built with.
static AS_WRITTEN: AtomicBool = AtomicBool::new(false);

/// Runs `body` with its sends' attributes exactly as written (checks of
/// DEN0140's attribute rule itself); see [`conformed`].
pub fn as_written<T>(body: impl FnOnce() -> T) -> T {
    AS_WRITTEN.store(true, Ordering::Relaxed);
    let r = body();
    AS_WRITTEN.store(false, Ordering::Relaxed);
    r
}

/// `t` as its sender must write it for `f` (DEN0140 §1.10): the checks
/// build descriptors naming normal write-back memory; a donation or a lend
/// to one borrower leaves the memory type "not specified"
/// ([`test_protocol::mem::sender_attributes`]), unless [`as_written`].
pub fn conformed<'a>(f: u64, t: &Transaction<'a>) -> Transaction<'a> {
    let mut t = *t;
    if !AS_WRITTEN.load(Ordering::Relaxed) && t.attributes == attr::NORMAL_WB_INNER {
        t.attributes = test_protocol::mem::sender_attributes(f, t.receivers.len());
    }
    t
}

/// Sends `t` with `f` from TX, in fragments of whole constituents when it
/// is longer than TX, stopping after `max_fragments`. The attributes
/// follow DEN0140 for `f` ([`conformed`]).
pub fn send_upto(f: u64, t: &Transaction<'_>, max_fragments: u32) -> Sent {
    let t = &conformed(f, t);
    let len = t.len();
    let first = t.fragment_len(0, TX_SIZE);
    part_to_tx(t, 0, first);
    let mut r = call(f, &[len as u64, first as u64, 0, 0]);
    let mut sent = first;
    let mut s = Sent {
        r,
        handle: 0,
        fragments: 1,
        frag_rx_ok: true,
    };
    while w0(&r) == func::FRAG_RX && s.fragments < max_fragments {
        let h = w(&r, 1) | w(&r, 2) << 32;
        if s.handle == 0 {
            s.handle = h;
        }
        s.frag_rx_ok &= h == s.handle && w(&r, 3) == sent as u64;
        let next = t.fragment_len(sent, TX_SIZE);
        if next == 0 {
            break;
        }
        part_to_tx(t, sent, next);
        r = call(func::FRAG_TX, &[h & 0xFFFF_FFFF, h >> 32, next as u64, 0]);
        sent += next;
        s.fragments += 1;
    }
    if w0(&r) == func::FRAG_RX && s.handle == 0 {
        s.handle = w(&r, 1) | w(&r, 2) << 32;
    }
    if success(&r) {
        let h = handle_of(&r);
        s.frag_rx_ok &= s.handle == 0 || s.handle == h;
        s.handle = h;
    }
    s.r = r;
    s
}

/// Sends `t` with `f` in as many fragments as it takes.
pub fn send(f: u64, t: &Transaction<'_>) -> Sent {
    send_upto(f, t, 200)
}

/// Sends `t` and fails unless it succeeded; returns the handle.
pub fn send_ok(f: u64, t: &Transaction<'_>) -> R<u64> {
    let s = send(f, t);
    expect_success(&s.r, "send answer")?;
    if s.handle & (1 << 63) != 0 {
        return Err(fail_eq("handle bit 63 (SPMC-allocated)", s.handle, 0));
    }
    Ok(s.handle)
}

/// The raw send call with the descriptor already in TX (or in a buffer).
pub fn send_raw(f: u64, total: u64, fragment: u64, buf: u64, pages: u64) -> Regs {
    call(f, &[total, fragment, buf, pages])
}

/// FFA_MEM_RECLAIM from the harness.
pub fn reclaim(handle: u64, flags: u32) -> Regs {
    call(
        func::RECLAIM,
        &[handle & 0xFFFF_FFFF, handle >> 32, flags as u64],
    )
}

/// One read-write receiver per ID.
pub fn receivers<const N: usize>(ids: [u16; N], perms: u8) -> [Receiver; N] {
    ids.map(|id| Receiver::new(id, perms))
}

/// A v1.2 send of `ranges` from the normal world.
pub fn nwd_send<'a>(layout: Layout, to: &'a [Receiver], ranges: &'a dyn Ranges) -> Transaction<'a> {
    Transaction::send(layout, ffa::NWD_ID as u16, to, ranges)
}

/// Shares `pages` pages at `addr` with sp1 and reclaims them: the pages are
/// free (in no transaction) and the SPMC still takes sends.
pub fn still_shareable(addr: u64, pages: u32) -> R<()> {
    let to = receivers([test_protocol::ids::SP1], perm::RW);
    let ranges = [Range { addr, pages }];
    let t = nwd_send(boot_layout(), &to, &ranges);
    let s = send(func::SHARE_64, &t);
    if !success(&s.r) {
        return Err(fail_eq(
            "the pages cannot be shared afterwards",
            w0(&s.r) | w(&s.r, 2) << 32,
            ffa::SUCCESS_32,
        ));
    }
    expect_success(&reclaim(s.handle, 0), "reclaim afterwards")
}

/// Runs a partition command; fails unless it answered with status OK.
pub fn sp(dst: u16, c: u64, args: [u64; 4]) -> R<[u64; 4]> {
    let r = ffa::cmd(dst, c, args);
    if r[0] != ffa::MSG_SEND_DIRECT_RESP_64 {
        return Err(fail_eq(
            "partition command: no direct response",
            r[0] | (w(&r, 2) << 32),
            ffa::MSG_SEND_DIRECT_RESP_64,
        ));
    }
    if r[3] != status::OK {
        return Err(fail_eq("partition command status", r[3], status::OK));
    }
    Ok([r[4], r[5], r[6], r[7]])
}

/// The partition still answers (ECHO).
pub fn alive(dst: u16) -> R<()> {
    let [v, ..] = sp(dst, cmd::ECHO, [0xA11E, 0, 0, 0])?;
    if v != 0xA11E {
        return Err(fail("the partition does not echo any more"));
    }
    Ok(())
}

/// What MEM_RETRIEVE is asked.
#[derive(Clone, Copy, Debug)]
pub struct Ask {
    pub handle: u64,
    pub tag: u64,
    pub flags: u32,
    pub owner: u16,
    pub perms: u8,
    pub opts: u64,
    pub version: u32,
    pub emad_size: u8,
    pub buffer: u64,
    /// Memory region attributes to ask (0: the partition's default).
    pub attrs: u16,
}

impl Ask {
    /// Retrieve `handle` of `owner` read-write, type `kind` (flags::TYPE_*),
    /// tag 0, at version 1.2, through the mailbox.
    pub fn new(handle: u64, owner: u16, kind: u32) -> Self {
        Self {
            handle,
            tag: 0,
            flags: kind,
            owner,
            perms: perm::RW,
            opts: 0,
            version: 0,
            emad_size: 0,
            buffer: ropt::BUF_MAILBOX,
            attrs: 0,
        }
    }
}

/// What MEM_RETRIEVE reported.
#[derive(Clone, Copy, Debug)]
pub struct Got {
    /// `w0 | code << 32` of the retrieve (or the failed FRAG_RX).
    pub answer: u64,
    pub total: u32,
    pub first_len: u32,
    pub addr: u64,
    pub pages: u32,
    pub perms: u8,
    pub attrs: u16,
    pub fragments: u8,
}

impl Got {
    /// Fails unless the retrieve answered FFA_MEM_RETRIEVE_RESP.
    pub fn ok(&self) -> R<&Self> {
        expect_answer(self.answer, func::RETRIEVE_RESP, "retrieve answer")?;
        Ok(self)
    }
}

/// MEM_RETRIEVE on partition `dst`.
pub fn retrieve(dst: u16, a: &Ask) -> R<Got> {
    let r = ffa::cmd(
        dst,
        cmd::MEM_RETRIEVE,
        [
            a.handle,
            a.tag,
            a.flags as u64 | (a.owner as u64) << 32 | (a.perms as u64) << 48 | a.opts << 56,
            a.version as u64 | (a.emad_size as u64) << 32 | a.buffer << 40 | (a.attrs as u64) << 48,
        ],
    );
    if r[0] != ffa::MSG_SEND_DIRECT_RESP_64 {
        return Err(fail_eq(
            "MEM_RETRIEVE: no direct response",
            r[0] | (w(&r, 2) << 32),
            ffa::MSG_SEND_DIRECT_RESP_64,
        ));
    }
    if r[3] != status::OK {
        return Err(fail_eq(
            "MEM_RETRIEVE status (3: the response did not parse)",
            r[3],
            status::OK,
        ));
    }
    Ok(Got {
        answer: r[4],
        total: r[5] as u32,
        first_len: (r[5] >> 32) as u32,
        addr: r[6],
        pages: r[7] as u32,
        perms: (r[7] >> 32) as u8,
        attrs: (r[7] >> 40) as u16,
        fragments: (r[7] >> 56) as u8,
    })
}

/// MEM_INFO: (handle, sender, EMAD count, EMAD size, reserved fields zero,
/// flags, constituents read, tag).
#[derive(Clone, Copy, Debug)]
pub struct Info {
    pub handle: u64,
    pub sender: u16,
    pub emad_count: u16,
    pub emad_size: u16,
    pub reserved_zero: bool,
    pub flags: u32,
    pub ranges: u32,
    pub tag: u64,
}

pub fn info(dst: u16) -> R<Info> {
    let [h, s, f, tag] = sp(dst, cmd::MEM_INFO, [0; 4])?;
    Ok(Info {
        handle: h,
        sender: s as u16,
        emad_count: (s >> 16) as u16,
        emad_size: (s >> 32) as u16,
        reserved_zero: (s >> 48) & 1 == 1,
        flags: f as u32,
        ranges: (f >> 32) as u32,
        tag,
    })
}

/// MEM_RANGE `i`: (address, pages, sum of pages read, range count).
pub fn range(dst: u16, i: u64) -> R<[u64; 4]> {
    sp(dst, cmd::MEM_RANGE, [i, 0, 0, 0])
}

/// MEM_RELINQUISH of `handle` with `flags` by `dst`: its answer word.
pub fn relinquish(dst: u16, handle: u64, flags: u32) -> R<u64> {
    Ok(sp(dst, cmd::MEM_RELINQUISH, [handle, flags as u64, 0, 0])?[0])
}

/// Relinquishes and fails unless it succeeded.
pub fn relinquish_ok(dst: u16, handle: u64) -> R<()> {
    expect_answer(relinquish(dst, handle, 0)?, ffa::SUCCESS_32, "relinquish")
}

/// The partition checks `bytes` at `addr` against `seed`'s fill: words that differ.
pub fn sp_differ(dst: u16, addr: u64, bytes: u64, seed: u64) -> R<u64> {
    Ok(sp(dst, cmd::MEM_CHECK, [addr, bytes, seed, 0])?[0])
}

/// The partition fills `bytes` at `addr` with `seed`'s words.
pub fn sp_fill(dst: u16, addr: u64, bytes: u64, seed: u64) -> R<()> {
    sp(dst, cmd::MEM_FILL, [addr, bytes, seed, 0]).map(|_| ())
}

/// How many words of `bytes` at `addr` are not zero, as the partition sees them.
pub fn sp_nonzero(dst: u16, addr: u64, bytes: u64) -> R<u64> {
    Ok(sp(dst, cmd::MEM_SUM, [addr, bytes, 0, 0])?[1])
}

/// What MEM_SEND is asked.
#[derive(Clone, Copy, Debug)]
pub struct Give {
    pub ipa: u64,
    pub pages: u32,
    pub tag: u32,
    pub to: [u16; 3],
    pub perms: u8,
    pub kind: u64,
    pub flags: u32,
    pub sender: u16,
    pub layout: u64,
    /// `send::ATTRS_*`.
    pub attrs: u64,
}

impl Give {
    /// `kind` (send::SHARE/LEND/DONATE) of one page at `ipa` to `to`, read-write.
    pub fn new(ipa: u64, kind: u64, to: &[u16]) -> Self {
        let mut ids = [0u16; 3];
        for (d, s) in ids.iter_mut().zip(to) {
            *d = *s;
        }
        Self {
            ipa,
            pages: 1,
            tag: 0,
            to: ids,
            perms: perm::RW,
            kind,
            flags: 0,
            sender: 0,
            layout: sopt::LAYOUT_V1_2,
            attrs: sopt::ATTRS_BY_OP,
        }
    }
}

/// MEM_SEND on partition `dst`: (answer word, handle, w3).
pub fn sp_send(dst: u16, g: &Give) -> R<(u64, u64, u64)> {
    let [a, h, w3, _] = sp(
        dst,
        cmd::MEM_SEND,
        [
            g.ipa,
            g.pages as u64 | (g.tag as u64) << 32,
            g.to[0] as u64
                | (g.to[1] as u64) << 16
                | (g.to[2] as u64) << 32
                | (g.perms as u64) << 48
                | g.kind << 56,
            g.flags as u64 | (g.sender as u64) << 32 | g.layout << 48 | g.attrs << 56,
        ],
    )?;
    Ok((a, h, w3))
}

/// MEM_SEND that must succeed: the handle.
pub fn sp_send_ok(dst: u16, g: &Give) -> R<u64> {
    let (a, h, _) = sp_send(dst, g)?;
    expect_answer(a, ffa::SUCCESS_32, "partition's send answer")?;
    Ok(h)
}

/// A partition's raw call through cmd::CALL: (w0, x2, x3).
pub fn sp_call(dst: u16, f: u64, x1: u64, x2: u64, x3: u64) -> R<(u64, u64, u64)> {
    let [a, b, c, _] = sp(dst, cmd::CALL, [f, x1, x2, x3])?;
    Ok((a, b, c))
}

/// FFA_MEM_RECLAIM by partition `dst`: (w0, w2).
pub fn sp_reclaim(dst: u16, handle: u64, flags: u32) -> R<(u64, u64)> {
    let (a, b, _) = sp_call(
        dst,
        func::RECLAIM,
        handle & 0xFFFF_FFFF,
        handle >> 32,
        flags as u64,
    )?;
    Ok((a, b))
}

/// Fails unless the partition's reclaim succeeded.
pub fn sp_reclaim_ok(dst: u16, handle: u64) -> R<()> {
    let (a, e) = sp_reclaim(dst, handle, 0)?;
    if a != ffa::SUCCESS_32 {
        return Err(fail_eq(
            "partition's reclaim",
            a | (e as u32 as u64) << 32,
            ffa::SUCCESS_32,
        ));
    }
    Ok(())
}

/// Pages of the partitions' own memory that the checks send, handed out
/// in order per partition (sp1, sp2, tpm, and crash-undef and crash-steal,
/// the v1.0 and v1.1 partitions of the `legacy` boots): never twice, since
/// a page lent in a check that failed half-way may still be lent, and
/// touching it would abort the partition.
static SP_PAGES: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// The next unused sendable page (IPA) of `sp`.
pub fn sp_page(dst: u16) -> R<u64> {
    let i = match dst {
        test_protocol::ids::SP1 => 0,
        test_protocol::ids::SP2 => 1,
        test_protocol::ids::TPM => 2,
        test_protocol::ids::CRASH_UNDEF => 3,
        test_protocol::ids::CRASH_STEAL => 4,
        _ => return Err(fail("no page list for that partition")),
    };
    let n = SP_PAGES[i].fetch_add(1, Ordering::Relaxed);
    if n >= layout::SEND_PAGES {
        return Err(fail("the partition's sendable pages are used up"));
    }
    Ok(layout::SEND_IPA + n * PAGE)
}

/// Clean-ups that failed since the last [`take_cleanup_failure`], and the
/// first one's answer word (`w0 | code << 32`, 0 if the partition did not
/// answer). A clean-up that fails leaves memory in a transaction, which
/// would fail some later check under its own name: the check whose
/// clean-up it was reports it instead, as `<check>-cleanup`.
static CLEANUP_FAILED: AtomicU32 = AtomicU32::new(0);
static CLEANUP_FIRST: AtomicU64 = AtomicU64::new(0);

fn cleanup_failed(who: u16, handle: u64, answer: u64) {
    crate::say!("    (clean-up: reclaim of {handle:#x} by {who:#06x} answered {answer:#x})");
    if CLEANUP_FAILED.fetch_add(1, Ordering::Relaxed) == 0 {
        CLEANUP_FIRST.store(answer, Ordering::Relaxed);
    }
}

/// The clean-ups that failed since the last call, as one failure.
pub fn take_cleanup_failure() -> Option<Fail> {
    if CLEANUP_FAILED.swap(0, Ordering::Relaxed) == 0 {
        return None;
    }
    Some(fail_eq(
        "a reclaim in the clean-up",
        CLEANUP_FIRST.load(Ordering::Relaxed),
        ffa::SUCCESS_32,
    ))
}

/// Reclaims `handle` for `owner` (the normal world if 0) to clean up; the
/// answer must be SUCCESS, or INVALID_PARAMETERS too if `gone_ok` (the
/// check may have reclaimed it already). Anything else is recorded as a
/// failed clean-up.
fn cleanup_reclaim(owner: u16, handle: u64, gone_ok: bool) {
    let answer = if owner == 0 {
        let r = reclaim(handle, 0);
        w0(&r) | w(&r, 2) << 32
    } else {
        match sp_reclaim(owner, handle, 0) {
            Ok((a, e)) => a | (e as u32 as u64) << 32,
            Err(_) => 0,
        }
    };
    let gone = gone_ok && answer_code(answer) == ffa::INVALID_PARAMETERS;
    if answer as u32 as u64 != ffa::SUCCESS_32 && !gone {
        cleanup_failed(owner, handle, answer);
    }
}

/// Undoes a send the SPMC should have refused but accepted: its sender
/// (the normal world if `owner` is 0) reclaims it, which must succeed.
pub fn undo_send(owner: u16, handle: u64) {
    cleanup_reclaim(owner, handle, false);
}

/// Clean-up after a failed check: each borrower relinquishes (answers
/// ignored: it may not have retrieved), then the owner reclaims (the normal
/// world if `owner` is 0), which must succeed unless the handle is gone.
pub fn cleanup(handle: u64, owner: u16, borrowers: &[u16]) {
    if handle == 0 {
        return;
    }
    for b in borrowers {
        let _ = relinquish(*b, handle, 0);
    }
    cleanup_reclaim(owner, handle, true);
}

/// Runs `body`; if it fails, cleans up `handle` (see [`cleanup`]).
pub fn guarded(handle: u64, owner: u16, borrowers: &[u16], body: impl FnOnce() -> R<()>) -> R<()> {
    let res = body();
    if res.is_err() {
        cleanup(handle, owner, borrowers);
    }
    res
}

/// Checks what a retrieve of normal-world memory reported: the first
/// constituent, the page count, read-write data access, never executable,
/// and the NS attribute (v1.1+ responses; v1.0 has no such bit).
pub fn check_got_ns(g: &Got, addr: u64, pages: u32, sp_version: u32) -> R<()> {
    g.ok()?;
    if g.addr != addr {
        return Err(fail_eq("first constituent in the response", g.addr, addr));
    }
    if g.pages != pages {
        return Err(fail_eq(
            "page count in the response",
            g.pages as u64,
            pages as u64,
        ));
    }
    if g.perms & perm::DATA_MASK != perm::RW {
        return Err(fail_eq(
            "data access granted",
            g.perms as u64,
            perm::RW as u64,
        ));
    }
    if g.perms & perm::INSTR_MASK == perm::X {
        return Err(fail_eq(
            "instruction access granted (executable)",
            g.perms as u64,
            perm::NX as u64,
        ));
    }
    let ns = g.attrs & test_protocol::mem::attr::NS != 0;
    let want_ns = sp_version != ffa::V1_0;
    if ns != want_ns {
        return Err(fail_eq(
            "NS bit of the response's attributes",
            g.attrs as u64,
            want_ns as u64,
        ));
    }
    Ok(())
}

/// The retrieve flags of a transaction type.
pub fn kind_flags(f: u64) -> u32 {
    match f & !0x4000_0000 {
        x if x == func::SHARE_32 => flags::TYPE_SHARE,
        x if x == func::LEND_32 => flags::TYPE_LEND,
        _ => flags::TYPE_DONATE,
    }
}
