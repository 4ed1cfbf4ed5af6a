//! The normal world as a borrower (docs/memory-sharing.md, "The normal
//! world as a borrower"): a partition shares, lends or donates to the
//! normal world normal-world memory it owns (a page the harness donated to
//! it), and the harness retrieves (FFA_MEM_RETRIEVE_REQ, the response in
//! its RX buffer, FFA_MEM_FRAG_RX for a long one), relinquishes, and sends
//! the hypervisor retrieve request; the partition reclaims. Secure memory
//! never goes to the normal world.

use test_protocol::cmd::send as sopt;
use test_protocol::ids::{SP1, SP2};
use test_protocol::mem::{
    Descriptor, Layout, Range, Ranges, Receiver, Relinquish, Transaction, attr, flags, func, perm,
};

use super::{Checks, SEED_A, SEED_B, SEED_C, V1_1, V1_2, handled_fault, three_hundred};
use crate::ffa::{self, Regs, call};
use crate::report::Outcome;
use crate::{ensure, ensure_eq};

use super::kit::*;

/// A VM the shipped policy binds to sp1 (the hypervisor's word: here the
/// harness, acting as a hypervisor, names it).
const VM_OF_SP1: u16 = 1;
/// A VM that may not reach sp1 (no binding; sp1 is not a shared service).
const VM_NOT_SP1: u16 = 2;

pub(super) fn run(r: &mut Checks<'_>) {
    r.check("mem-nwb-features-retrieve", || {
        let r = call(ffa::FEATURES, &[func::RETRIEVE_REQ_64, 2]);
        ensure_eq!(
            r[0],
            ffa::SUCCESS_32,
            "FEATURES(RETRIEVE_REQ_64) with the NS bit"
        );
        ensure_eq!(r[2], 0b11, "w2: caller buffer, NS bit");
        let r = call(ffa::FEATURES, &[func::RETRIEVE_REQ_32, 2]);
        ensure_eq!(r[0], ffa::SUCCESS_32, "FEATURES(RETRIEVE_REQ_32)");
        Ok(())
    });
    r.check("mem-nwb-features-relinquish-frag-rx", || {
        for f in [func::RELINQUISH, func::FRAG_RX] {
            let r = call(ffa::FEATURES, &[f, 0]);
            ensure_eq!(r[0], ffa::SUCCESS_32, "FEATURES answer");
        }
        Ok(())
    });
    r.check("mem-nwb-lend-retrieve-read-write", || {
        trip(sopt::LEND, flags::TYPE_LEND)
    });
    r.check("mem-nwb-share-retrieve-read-write", || {
        trip(sopt::SHARE, flags::TYPE_SHARE)
    });
    r.check("mem-nwb-donate", donate);
    r.check(
        "mem-nwb-reclaim-before-relinquish-denied",
        reclaim_before_relinquish,
    );
    r.check("mem-nwb-reclaim-before-retrieve", reclaim_before_retrieve);
    r.check("mem-nwb-retrieve-twice", retrieve_twice);
    r.check("mem-nwb-retrieve-unknown-handle", || {
        refused(
            |q| q.handle = super::UNKNOWN_HANDLE,
            ffa::INVALID_PARAMETERS,
        )
    });
    r.check("mem-nwb-retrieve-not-a-borrower", || {
        refused(|q| q.me = VM_NOT_SP1, ffa::DENIED)
    });
    r.check("mem-nwb-retrieve-secure-receiver", || {
        refused(|q| q.me = SP2, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-nwb-retrieve-wrong-sender", || {
        refused(|q| q.owner = SP2, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-nwb-retrieve-wrong-tag", || {
        refused(|q| q.tag = 7, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-nwb-retrieve-wrong-type", || {
        refused(|q| q.flags = flags::TYPE_SHARE, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-nwb-retrieve-device-attributes", || {
        refused(|q| q.attrs = attr::DEVICE_NGNRE, ffa::DENIED)
    });
    r.check(
        "mem-nwb-retrieve-more-access-than-shared",
        retrieve_more_access,
    );
    r.check("mem-nwb-retrieve-zero-on-share", retrieve_zero_on_share);
    r.check("mem-nwb-retrieve-rx-full-busy", retrieve_busy);
    r.check("mem-nwb-relinquish-not-retrieved", relinquish_not_retrieved);
    r.check(
        "mem-nwb-relinquish-naming-a-partition",
        relinquish_naming_sp,
    );
    r.check("mem-nwb-lend-zero-before-retrieve", lend_zero_flag);
    r.check("mem-nwb-relinquish-zero", relinquish_zero);
    r.check("mem-nwb-lender-fault-injected", lender_faults);
    r.check("mem-nwb-secure-memory-denied", secure_denied);
    r.check("mem-nwb-mixed-borrowers-denied", mixed_denied);
    r.check("mem-nwb-vm-not-reaching-denied", vm_denied);
    r.check("mem-nwb-vm-borrows-through-hypervisor", vm_borrows);
    r.check("mem-nwb-hypervisor-retrieve", hypervisor_retrieve);
    r.check(
        "mem-nwb-hypervisor-retrieve-partitions-only",
        hypervisor_retrieve_sp_to_sp,
    );
    r.check(
        "mem-nwb-hypervisor-retrieve-nwd-send",
        hypervisor_retrieve_nwd_send,
    );
    r.check("mem-nwb-hypervisor-retrieve-fields-mbz", || {
        let (_, h) = lent(sopt::LEND, 0)?;
        let mut t = hyp_request(h);
        t.tag = 1;
        let res = expect_error(&nwd_retrieve(&t), ffa::INVALID_PARAMETERS, "a tag");
        finish(h, res)
    });
    r.check("mem-nwb-frag-rx", frag_rx);
    r.check("mem-nwb-frag-rx-wrong-offset", frag_rx_wrong_offset);
}

// ---- The pieces ------------------------------------------------------------

/// A fresh arena page donated to sp1, which retrieves it: sp1 owns it,
/// mapped at IPA = PA in its non-secure IPA space. Returns the address.
fn ns_page_of_sp1() -> R<u64> {
    let pa = alloc(1)?;
    let to = receivers([SP1], 0);
    let ranges = [Range { addr: pa, pages: 1 }];
    let h = send_ok(
        func::DONATE_64,
        &nwd_send(Layout::V1_1 { emad_size: 32 }, &to, &ranges),
    )?;
    retrieve(SP1, &Ask::new(h, 0, flags::TYPE_DONATE))?.ok()?;
    Ok(pa)
}

/// sp1 sends its normal-world page `pa` with `kind` (send::SHARE/LEND/
/// DONATE) to the normal-world endpoint `to`: its answer word and handle.
fn sp1_gives(pa: u64, kind: u64, to: u16, fl: u32) -> R<(u64, u64)> {
    let mut g = Give::new(pa, kind | sopt::NWD, &[to]);
    if kind == sopt::DONATE {
        g.perms = 0;
    }
    g.flags = fl;
    let (a, h, _) = sp_send(SP1, &g)?;
    Ok((a, h))
}

/// A page of sp1's filled with SEED_A and sent with `kind` to the normal
/// world (endpoint 0): (address, handle).
fn lent(kind: u64, fl: u32) -> R<(u64, u64)> {
    let pa = ns_page_of_sp1()?;
    sp_fill(SP1, pa, PAGE, SEED_A)?;
    let (a, h) = sp1_gives(pa, kind, 0, fl)?;
    expect_answer(a, ffa::SUCCESS_32, "sp1's send to the normal world")?;
    Ok((pa, h))
}

/// After a check on `h`: the harness relinquishes (answer ignored: it may
/// not hold it) and sp1 reclaims; the check's result wins if it failed.
fn finish(h: u64, res: R<()>) -> R<()> {
    let _ = nwd_relinquish(h, 0, 0);
    let (a, e) = sp_reclaim(SP1, h, 0)?;
    res?;
    ensure_eq!(
        a | (e as u32 as u64) << 32,
        ffa::SUCCESS_32,
        "sp1's reclaim"
    );
    Ok(())
}

/// What the normal world's retrieve request says.
#[derive(Clone, Copy)]
struct Q {
    handle: u64,
    owner: u16,
    me: u16,
    perms: u8,
    flags: u32,
    tag: u64,
    attrs: u16,
    version: u32,
}

impl Q {
    fn new(handle: u64, kind: u32) -> Self {
        Self {
            handle,
            owner: SP1,
            me: 0,
            perms: perm::RW,
            flags: kind,
            tag: 0,
            attrs: 0,
            version: V1_2,
        }
    }
}

/// The hypervisor retrieve request for `h`: the handle, no receiver, every
/// other field zero.
fn hyp_request(h: u64) -> Transaction<'static> {
    let mut t = Transaction::retrieve(Layout::V1_1 { emad_size: 32 }, 0, h, 0, &[]);
    t.attributes = 0;
    t
}

/// FFA_MEM_RETRIEVE_REQ_64 of `t` from TX (RX must be free).
fn nwd_retrieve(t: &Transaction<'_>) -> Regs {
    let mut b = [0u8; 128];
    let n = t.write(&mut b).unwrap_or(0);
    ffa::tx_write(0, &b[..n]);
    call(func::RETRIEVE_REQ_64, &[n as u64, n as u64, 0, 0])
}

/// The normal world retrieves as `q` says: the answer.
fn ask(q: &Q) -> Regs {
    let me = [Receiver::new(q.me, q.perms)];
    let mut t = Transaction::retrieve(layout_of(q.version), q.owner, q.handle, q.flags, &me);
    t.attributes = q.attrs;
    t.tag = q.tag;
    at_version(q.version, || nwd_retrieve(&t))
}

/// What the harness read of a retrieve response in its RX buffer.
#[derive(Debug)]
struct Resp {
    sender: u16,
    attributes: u16,
    flags: u32,
    handle: u64,
    emads: u32,
    first_id: u16,
    first_perms: u8,
    addr: u64,
    pages: u32,
}

/// Reads the response to `r` from RX and releases RX.
fn read_resp(r: &Regs, v1_0: bool) -> R<Resp> {
    expect_answer(word_of(r), func::RETRIEVE_RESP, "retrieve answer")?;
    let buf: [u8; 4096] = ffa::rx_bytes(0);
    let first = (r[2] as u32 as usize).min(4096);
    let res = (|| {
        let d = Descriptor::parse(&buf[..first], v1_0)
            .map_err(|_| fail("the response does not parse"))?;
        let e = d.emad(0).map_err(|_| fail("no EMAD in the response"))?;
        let c = d
            .composite(&e)
            .map_err(|_| fail("no composite in the response"))?;
        let (range, _) = d
            .range(&c, 0)
            .map_err(|_| fail("no constituent in the response"))?;
        Ok(Resp {
            sender: d.sender(),
            attributes: d.attributes(),
            flags: d.flags(),
            handle: d.handle(),
            emads: d.emad_count(),
            first_id: e.endpoint,
            first_perms: e.perms,
            addr: range.addr,
            pages: c.total_pages,
        })
    })();
    let _ = call(ffa::RX_RELEASE, &[]);
    res
}

/// `w0 | code << 32` of an answer (the form `expect_answer` takes).
fn word_of(r: &Regs) -> u64 {
    r[0] as u32 as u64 | (ffa::code(r) as u32 as u64) << 32
}

/// The harness's FFA_MEM_RELINQUISH of `h` for `who` with `fl`: the answer.
fn nwd_relinquish(h: u64, fl: u32, who: u16) -> Regs {
    let ids = [who];
    let d = Relinquish {
        handle: h,
        flags: fl,
        endpoints: &ids,
    };
    let mut b = [0u8; 32];
    let n = d.write(&mut b).unwrap_or(0);
    ffa::tx_write(0, &b[..n]);
    call(func::RELINQUISH, &[])
}

/// Retrieves `q` and checks the response describes sp1's page `pa`.
fn retrieve_ok(q: &Q, pa: u64, kind: u32) -> R<Resp> {
    let g = read_resp(&ask(q), q.version == ffa::V1_0)?;
    ensure_eq!(g.handle, q.handle, "handle in the response");
    ensure_eq!(g.sender, SP1, "sender in the response");
    ensure_eq!(g.flags & flags::TYPE_MASK, kind, "transaction type");
    ensure_eq!(g.emads, 1, "EMADs in the response");
    ensure_eq!(g.first_id, q.me, "the borrower named");
    ensure_eq!(g.addr, pa, "the constituent");
    ensure_eq!(g.pages, 1, "pages");
    if q.version != ffa::V1_0 {
        ensure!(
            g.attributes & attr::NS != 0,
            "the NS bit (normal-world memory)"
        );
    }
    Ok(g)
}

// ---- The checks ------------------------------------------------------------

/// sp1 fills its page, sends it to the normal world; the harness retrieves,
/// reads sp1's pattern, writes its own, relinquishes; sp1 reclaims and
/// reads the harness's pattern.
fn trip(kind: u64, tflags: u32) -> Outcome {
    let (pa, h) = lent(kind, 0)?;
    let res = (|| {
        let g = retrieve_ok(&Q::new(h, tflags), pa, tflags)?;
        ensure_eq!(
            g.first_perms & perm::DATA_MASK,
            perm::RW,
            "read-write granted"
        );
        ensure!(
            g.first_perms & perm::INSTR_MASK != perm::X,
            "never executable"
        );
        ensure_eq!(
            differ(pa, PAGE, Some(SEED_A)),
            0,
            "the harness reads sp1's pattern"
        );
        if kind == sopt::SHARE {
            // A share leaves the owner its access.
            ensure_eq!(sp_differ(SP1, pa, PAGE, SEED_A)?, 0, "sp1 still reads it");
        }
        fill(pa, PAGE, SEED_B);
        let r = nwd_relinquish(h, 0, 0);
        expect_success(&r, "relinquish")
    })();
    finish(h, res)?;
    ensure_eq!(
        sp_differ(SP1, pa, PAGE, SEED_B)?,
        0,
        "sp1 reads the harness's pattern"
    );
    Ok(())
}

/// A 32-bit retrieve at v1.1: 16-byte EMADs, the NS bit. Runs in the v1.1
/// boot (`mem::run_legacy`): the version is fixed once used.
pub(super) fn lend_32_v1_1() -> Outcome {
    let (pa, h) = lent(sopt::LEND, 0)?;
    let res = (|| {
        let me = [Receiver::new(0, perm::RW)];
        let mut t = Transaction::retrieve(layout_of(V1_1), SP1, h, flags::TYPE_LEND, &me);
        t.attributes = 0;
        let mut b = [0u8; 128];
        let n = t.write(&mut b).unwrap_or(0);
        ffa::tx_write(0, &b[..n]);
        let r = at_version(V1_1, || {
            call(func::RETRIEVE_REQ_32, &[n as u64, n as u64, 0, 0])
        });
        let g = read_resp(&r, false)?;
        ensure_eq!(g.addr, pa, "the constituent");
        ensure!(g.attributes & attr::NS != 0, "the NS bit");
        ensure_eq!(
            differ(pa, PAGE, Some(SEED_A)),
            0,
            "the harness reads sp1's pattern"
        );
        expect_success(&nwd_relinquish(h, 0, 0), "relinquish")
    })();
    finish(h, res)
}

/// sp1 donates its page back: the handle is retired, the page is the
/// normal world's again (it shares it), sp1 can no longer send it.
fn donate() -> Outcome {
    let (pa, h) = lent(sopt::DONATE, 0)?;
    retrieve_ok(&Q::new(h, flags::TYPE_DONATE), pa, flags::TYPE_DONATE)?;
    ensure_eq!(
        differ(pa, PAGE, Some(SEED_A)),
        0,
        "the harness reads sp1's pattern"
    );
    let (a, e) = sp_reclaim(SP1, h, 0)?;
    expect_answer_error(
        a | (e as u32 as u64) << 32,
        ffa::INVALID_PARAMETERS,
        "sp1 reclaiming a donation",
    )?;
    expect_error(
        &nwd_relinquish(h, 0, 0),
        ffa::INVALID_PARAMETERS,
        "relinquish of a retired handle",
    )?;
    let (a, _) = sp1_gives(pa, sopt::SHARE, 0, 0)?;
    expect_answer_error(a, ffa::DENIED, "sp1 sending the page it donated")?;
    still_shareable(pa, 1)
}

fn reclaim_before_relinquish() -> Outcome {
    let (pa, h) = lent(sopt::LEND, 0)?;
    let res = (|| {
        retrieve_ok(&Q::new(h, flags::TYPE_LEND), pa, flags::TYPE_LEND)?;
        let (a, e) = sp_reclaim(SP1, h, 0)?;
        expect_answer_error(
            a | (e as u32 as u64) << 32,
            ffa::DENIED,
            "reclaim while the normal world holds it",
        )?;
        // Nor does the normal world reclaim what it borrowed.
        expect_error(&reclaim(h, 0), ffa::DENIED, "the borrower reclaiming")?;
        expect_success(&nwd_relinquish(h, 0, 0), "relinquish")
    })();
    finish(h, res)
}

fn reclaim_before_retrieve() -> Outcome {
    let (pa, h) = lent(sopt::LEND, 0)?;
    sp_reclaim_ok(SP1, h)?;
    ensure_eq!(
        sp_differ(SP1, pa, PAGE, SEED_A)?,
        0,
        "sp1 reads its page again"
    );
    expect_error(
        &ask(&Q::new(h, flags::TYPE_LEND)),
        ffa::INVALID_PARAMETERS,
        "retrieve after reclaim",
    )
}

fn retrieve_twice() -> Outcome {
    let (pa, h) = lent(sopt::LEND, 0)?;
    let res = (|| {
        let q = Q::new(h, flags::TYPE_LEND);
        retrieve_ok(&q, pa, flags::TYPE_LEND)?;
        retrieve_ok(&q, pa, flags::TYPE_LEND)?;
        expect_success(&nwd_relinquish(h, 0, 0), "first relinquish")?;
        let (a, e) = sp_reclaim(SP1, h, 0)?;
        expect_answer_error(
            a | (e as u32 as u64) << 32,
            ffa::DENIED,
            "reclaim with one retrieve left",
        )?;
        expect_success(&nwd_relinquish(h, 0, 0), "second relinquish")?;
        expect_error(&nwd_relinquish(h, 0, 0), ffa::DENIED, "a third relinquish")
    })();
    finish(h, res)
}

/// A lend's retrieve changed by `f` is refused with `want` and changes
/// nothing: the right retrieve then works.
fn refused(f: impl Fn(&mut Q), want: i32) -> Outcome {
    let (pa, h) = lent(sopt::LEND, 0)?;
    let res = (|| {
        let mut q = Q::new(h, flags::TYPE_LEND);
        f(&mut q);
        expect_error(&ask(&q), want, "the wrong retrieve")?;
        retrieve_ok(&Q::new(h, flags::TYPE_LEND), pa, flags::TYPE_LEND)?;
        expect_success(&nwd_relinquish(h, 0, 0), "relinquish")
    })();
    finish(h, res)
}

/// sp1 shares read-only: asking read-write is DENIED.
fn retrieve_more_access() -> Outcome {
    let pa = ns_page_of_sp1()?;
    let mut g = Give::new(pa, sopt::SHARE | sopt::NWD, &[0]);
    g.perms = perm::RO;
    let h = sp_send_ok(SP1, &g)?;
    let res = (|| {
        let mut q = Q::new(h, flags::TYPE_SHARE);
        expect_error(&ask(&q), ffa::DENIED, "read-write of a read-only share")?;
        q.perms = perm::RO;
        let r = read_resp(&ask(&q), false)?;
        ensure_eq!(
            r.first_perms & perm::DATA_MASK,
            perm::RO,
            "read-only granted"
        );
        expect_success(&nwd_relinquish(h, 0, 0), "relinquish")
    })();
    finish(h, res)
}

fn retrieve_zero_on_share() -> Outcome {
    let (_, h) = lent(sopt::SHARE, 0)?;
    let mut q = Q::new(h, flags::TYPE_SHARE);
    q.flags |= flags::ZERO;
    let res = expect_error(&ask(&q), ffa::INVALID_PARAMETERS, "zero flag on a share");
    finish(h, res)
}

fn retrieve_busy() -> Outcome {
    let (_, h) = lent(sopt::SHARE, 0)?;
    let res = (|| {
        let q = Q::new(h, flags::TYPE_SHARE);
        let r = ask(&q);
        ensure_eq!(r[0] as u32 as u64, func::RETRIEVE_RESP, "first retrieve");
        // RX still full: BUSY, and nothing counted.
        let busy = ask(&q);
        let _ = call(ffa::RX_RELEASE, &[]);
        expect_error(&busy, ffa::BUSY, "retrieve with RX full")?;
        expect_success(&nwd_relinquish(h, 0, 0), "relinquish")?;
        expect_error(
            &nwd_relinquish(h, 0, 0),
            ffa::DENIED,
            "one retrieve only was counted",
        )
    })();
    finish(h, res)
}

fn relinquish_not_retrieved() -> Outcome {
    let (_, h) = lent(sopt::LEND, 0)?;
    let res = expect_error(
        &nwd_relinquish(h, 0, 0),
        ffa::DENIED,
        "relinquish before retrieve",
    );
    finish(h, res)
}

fn relinquish_naming_sp() -> Outcome {
    let (pa, h) = lent(sopt::LEND, 0)?;
    let res = (|| {
        retrieve_ok(&Q::new(h, flags::TYPE_LEND), pa, flags::TYPE_LEND)?;
        expect_error(
            &nwd_relinquish(h, 0, SP1),
            ffa::INVALID_PARAMETERS,
            "naming a partition",
        )?;
        expect_error(
            &nwd_relinquish(h, 0, VM_NOT_SP1),
            ffa::DENIED,
            "naming a VM that is no borrower",
        )?;
        expect_success(&nwd_relinquish(h, 0, 0), "relinquish")
    })();
    finish(h, res)
}

/// sp1 lends with the zero flag: the harness finds the page zeroed.
fn lend_zero_flag() -> Outcome {
    let (pa, h) = lent(sopt::LEND, flags::ZERO)?;
    let res = (|| {
        let g = retrieve_ok(&Q::new(h, flags::TYPE_LEND), pa, flags::TYPE_LEND)?;
        ensure!(
            g.flags & flags::ZERO != 0,
            "the response says it was zeroed"
        );
        ensure_eq!(differ(pa, PAGE, None), 0, "words not zero");
        expect_success(&nwd_relinquish(h, 0, 0), "relinquish")
    })();
    finish(h, res)
}

/// The harness relinquishes with the zero flag: sp1 gets its page back zeroed.
fn relinquish_zero() -> Outcome {
    let (pa, h) = lent(sopt::LEND, 0)?;
    let res = (|| {
        retrieve_ok(&Q::new(h, flags::TYPE_LEND), pa, flags::TYPE_LEND)?;
        fill(pa, PAGE, SEED_C);
        expect_success(&nwd_relinquish(h, flags::ZERO, 0), "relinquish with zero")
    })();
    finish(h, res)?;
    ensure_eq!(sp_nonzero(SP1, pa, PAGE)?, 0, "words sp1 finds not zero");
    Ok(())
}

/// sp1 lends its page to the normal world and reads it: the stage-2 abort
/// is injected at its EL1 (docs/architecture.md "Faults"); reclaimed, it
/// reads it again.
fn lender_faults() -> Outcome {
    let (pa, h) = lent(sopt::LEND, 0)?;
    let res = handled_fault(SP1, pa);
    finish(h, res)?;
    ensure_eq!(
        sp_differ(SP1, pa, PAGE, SEED_A)?,
        0,
        "sp1 reads its page once reclaimed"
    );
    Ok(())
}

/// sp1's own (secure) pages never go to the normal world: DENIED, whatever
/// the ABI, and the page is still its own.
fn secure_denied() -> Outcome {
    let p = sp_page(SP1)?;
    for kind in [sopt::SHARE, sopt::LEND, sopt::DONATE] {
        let (a, _) = sp1_gives(p, kind, 0, 0)?;
        expect_answer_error(a, ffa::DENIED, "secure memory to the normal world")?;
        let (a, _) = sp1_gives(p, kind, VM_OF_SP1, 0)?;
        expect_answer_error(a, ffa::DENIED, "secure memory to a VM")?;
    }
    sp_fill(SP1, p, PAGE, SEED_B)?;
    ensure_eq!(
        sp_differ(SP1, p, PAGE, SEED_B)?,
        0,
        "sp1 still owns its page"
    );
    Ok(())
}

/// The normal world and a partition as borrowers of one transaction: DENIED.
fn mixed_denied() -> Outcome {
    let pa = ns_page_of_sp1()?;
    let g = Give::new(pa, sopt::SHARE | sopt::NWD, &[0, SP2]);
    let (a, h, _) = sp_send(SP1, &g)?;
    if a == ffa::SUCCESS_32 {
        undo_send(SP1, h);
    }
    expect_answer_error(a, ffa::DENIED, "a normal-world and a secure borrower")?;
    let (a, h) = sp1_gives(pa, sopt::SHARE, 0, 0)?;
    expect_answer(
        a,
        ffa::SUCCESS_32,
        "the page still goes to the normal world alone",
    )?;
    sp_reclaim_ok(SP1, h)
}

/// A VM that may not reach sp1 is no borrower of sp1's (the per-user rule).
fn vm_denied() -> Outcome {
    let pa = ns_page_of_sp1()?;
    let (a, h) = sp1_gives(pa, sopt::LEND, VM_NOT_SP1, 0)?;
    if a == ffa::SUCCESS_32 {
        undo_send(SP1, h);
    }
    expect_answer_error(a, ffa::DENIED, "a lend to a VM not bound to sp1")
}

/// sp1 lends to the VM bound to it; the harness, as the hypervisor,
/// retrieves and relinquishes naming that VM.
fn vm_borrows() -> Outcome {
    let pa = ns_page_of_sp1()?;
    sp_fill(SP1, pa, PAGE, SEED_A)?;
    let (a, h) = sp1_gives(pa, sopt::LEND, VM_OF_SP1, 0)?;
    expect_answer(a, ffa::SUCCESS_32, "a lend to the VM bound to sp1")?;
    let res = (|| {
        let mut q = Q::new(h, flags::TYPE_LEND);
        expect_error(&ask(&q), ffa::DENIED, "endpoint 0 is not the borrower")?;
        q.me = VM_OF_SP1;
        retrieve_ok(&q, pa, flags::TYPE_LEND)?;
        ensure_eq!(differ(pa, PAGE, Some(SEED_A)), 0, "the VM's view");
        expect_success(&nwd_relinquish(h, 0, VM_OF_SP1), "relinquish for the VM")
    })();
    let _ = nwd_relinquish(h, 0, VM_OF_SP1);
    let (a, e) = sp_reclaim(SP1, h, 0)?;
    res?;
    ensure_eq!(
        a | (e as u32 as u64) << 32,
        ffa::SUCCESS_32,
        "sp1's reclaim"
    );
    Ok(())
}

/// The hypervisor retrieve request: the whole descriptor, nothing retrieved.
fn hypervisor_retrieve() -> Outcome {
    let (pa, h) = lent(sopt::LEND, 0)?;
    let res = (|| {
        let g = read_resp(&nwd_retrieve(&hyp_request(h)), false)?;
        ensure_eq!(g.handle, h, "handle");
        ensure_eq!(g.sender, SP1, "sender");
        ensure_eq!(g.flags & flags::TYPE_MASK, flags::TYPE_LEND, "type");
        ensure_eq!(g.emads, 1, "every borrower");
        ensure_eq!(g.first_id, 0, "the borrower");
        ensure_eq!(g.first_perms, perm::RW, "the access the sender gave");
        ensure_eq!(g.addr, pa, "the constituent");
        ensure!(g.attributes & attr::NS != 0, "the NS bit");
        // Not the borrower's retrieve.
        expect_error(&nwd_relinquish(h, 0, 0), ffa::DENIED, "relinquish after it")?;
        retrieve_ok(&Q::new(h, flags::TYPE_LEND), pa, flags::TYPE_LEND)?;
        expect_success(&nwd_relinquish(h, 0, 0), "relinquish")
    })();
    finish(h, res)
}

/// A transaction between partitions is not the normal world's to see.
fn hypervisor_retrieve_sp_to_sp() -> Outcome {
    let p = sp_page(SP2)?;
    let h = sp_send_ok(SP2, &Give::new(p, sopt::SHARE, &[SP1]))?;
    let res = expect_error(
        &nwd_retrieve(&hyp_request(h)),
        ffa::INVALID_PARAMETERS,
        "hypervisor retrieve of a partitions' share",
    );
    sp_reclaim_ok(SP2, h)?;
    res
}

/// The normal world's own send to two partitions, described with both.
fn hypervisor_retrieve_nwd_send() -> Outcome {
    let addr = alloc(1)?;
    let to = [Receiver::new(SP1, perm::RO), Receiver::new(SP2, perm::RW)];
    let ranges = [Range { addr, pages: 1 }];
    let h = send_ok(
        func::SHARE_64,
        &nwd_send(Layout::V1_1 { emad_size: 32 }, &to, &ranges),
    )?;
    let res = (|| {
        let r = nwd_retrieve(&hyp_request(h));
        expect_answer(word_of(&r), func::RETRIEVE_RESP, "answer")?;
        let buf: [u8; 512] = ffa::rx_bytes(0);
        let _ = call(ffa::RX_RELEASE, &[]);
        let d = Descriptor::parse(&buf, false).map_err(|_| fail("the response does not parse"))?;
        ensure_eq!(d.sender(), 0, "sender");
        ensure_eq!(d.emad_count(), 2, "EMADs");
        for (i, want) in to.iter().enumerate() {
            let e = d.emad(i).map_err(|_| fail("an EMAD"))?;
            ensure_eq!(e.endpoint, want.id, "borrower");
            ensure_eq!(e.perms, want.perms, "its access");
        }
        Ok(())
    })();
    expect_success(&reclaim(h, 0), "reclaim")?;
    res
}

/// 300 ranges shared with sp1: the hypervisor retrieve's response leaves
/// in fragments the harness reads with FFA_MEM_FRAG_RX.
fn frag_rx() -> Outcome {
    let ranges = three_hundred()?;
    let to = receivers([SP1], perm::RW);
    let h = send_ok(
        func::SHARE_64,
        &nwd_send(Layout::V1_1 { emad_size: 32 }, &to, &ranges),
    )?;
    let res = (|| {
        let r = nwd_retrieve(&hyp_request(h));
        ensure_eq!(r[0] as u32 as u64, func::RETRIEVE_RESP, "answer");
        let (total, mut got) = (r[1] as u32 as u64, r[2] as u32 as u64);
        ensure!(total > 4096 && got < total, "one fragment");
        // The first fragment: the header, one EMAD, the composite.
        let d: [u8; 128] = ffa::rx_bytes(0);
        let d = Descriptor::parse(&d, false).map_err(|_| fail("first fragment"))?;
        ensure_eq!(d.emad_count(), 1, "EMADs");
        let mut fragments = 1;
        let mut last = [0u8; 16];
        while got < total {
            let _ = call(ffa::RX_RELEASE, &[]);
            let r = call(func::FRAG_RX, &[h & 0xFFFF_FFFF, h >> 32, got, 0]);
            ensure_eq!(word_of(&r), func::FRAG_TX, "FRAG_RX answer");
            ensure_eq!(r[1] as u32 as u64 | (r[2] as u32 as u64) << 32, h, "handle");
            let n = r[3] as u32 as u64;
            ensure!(n > 0 && n <= 4096, "fragment length");
            got += n;
            if got == total {
                last = ffa::rx_bytes((n - 16) as usize);
            }
            fragments += 1;
        }
        let _ = call(ffa::RX_RELEASE, &[]);
        ensure!(fragments >= 2, "fragments");
        let want = ranges.get(299);
        ensure_eq!(
            u64::from_le_bytes(last[..8].try_into().unwrap_or([0; 8])),
            want.addr,
            "the last constituent"
        );
        Ok(())
    })();
    expect_success(&reclaim(h, 0), "reclaim")?;
    res
}

fn frag_rx_wrong_offset() -> Outcome {
    let ranges = three_hundred()?;
    let to = receivers([SP1], perm::RW);
    let h = send_ok(
        func::SHARE_64,
        &nwd_send(Layout::V1_1 { emad_size: 32 }, &to, &ranges),
    )?;
    let res = (|| {
        let r = nwd_retrieve(&hyp_request(h));
        ensure_eq!(r[0] as u32 as u64, func::RETRIEVE_RESP, "answer");
        let (total, got) = (r[1] as u32 as u64, r[2] as u32 as u64);
        let _ = call(ffa::RX_RELEASE, &[]);
        let r = call(func::FRAG_RX, &[h & 0xFFFF_FFFF, h >> 32, got + 8, 0]);
        expect_error(&r, ffa::INVALID_PARAMETERS, "FRAG_RX at the wrong offset")?;
        // The right offset still works, to the end.
        let mut at = got;
        while at < total {
            let r = call(func::FRAG_RX, &[h & 0xFFFF_FFFF, h >> 32, at, 0]);
            ensure_eq!(r[0] as u32 as u64, func::FRAG_TX, "FRAG_RX answer");
            at += r[3] as u32 as u64;
            let _ = call(ffa::RX_RELEASE, &[]);
        }
        Ok(())
    })();
    expect_success(&reclaim(h, 0), "reclaim")?;
    res
}
