//! Conformance of memory sharing to DEN0140's tables (issue 10, items 4-7):
//! what a sender and a borrower may put in each field of a share, lend and
//! donation, retrieving more than once, and device memory.
//!
//! - Item 4: a lender to one borrower, or a donor, leaves the memory
//!   attributes "not specified" (DEN0140 §1.10) and the borrower names
//!   them in its retrieve request, which the SPMC accepts when they are a
//!   valid type the memory has (device for device memory, normal for RAM:
//!   else DENIED).
//! - Item 5: a borrower may retrieve again what it holds; each retrieve is
//!   relinquished once and the memory leaves it with the last (DEN0140
//!   §1.12); each borrower of a share retrieves on its own.
//! - Item 6: what a sender or a borrower may not write is refused with
//!   INVALID_PARAMETERS (or DENIED where the table says access), nothing
//!   changed: instruction access on a share or a lend to several, a memory
//!   type from a donor or a lender to one, instruction access asked in the
//!   retrieve of a share, an implementation-defined value that is not the
//!   sender's, reserved reclaim flags.
//! - Item 7: sp1 owns a device region (the secure GPIO of QEMU virt, its
//!   manifest's `device-regions`): it shares and lends it to sp2, which
//!   reads the controller's PrimeCell ID through the mapping.

use super::*;

/// sp1's device region (tf-a-integration/qemu/partitions/sp1.dts): the
/// secure PL061 GPIO controller of QEMU virt, mapped at IPA = PA.
const DEVICE_IPA: u64 = crate::board::SP1_DEVICE;
/// Offset of the PL061's PrimeCell ID registers (0xFF0..0xFFC).
const PRIMECELL_ID: u64 = 0xFF0;
/// MEM_SUM of the 16 bytes there, read as two 64-bit words (each a pair
/// of 32-bit registers, low first): 0x0D, 0xF0, 0x05, 0xB1.
const PRIMECELL_SUM: u64 = (0xF0 << 32 | 0x0D) + (0xB1 << 32 | 0x05);

pub(super) fn run(r: &mut Checks<'_>) {
    // Item 4: attributes left to the borrower.
    r.check("mem-conf-lend-attributes-named-by-borrower", || {
        lend_attributes_by_borrower(attr::NORMAL_WB_INNER)
    });
    r.check("mem-conf-lend-borrower-names-non-cacheable", || {
        lend_attributes_by_borrower(attr::NORMAL_NC_INNER)
    });
    r.check("mem-conf-lend-attributes-not-named", || {
        lend_attributes_by_borrower(0)
    });
    r.check(
        "mem-conf-donate-attributes-named-by-borrower",
        donate_attributes_by_borrower,
    );
    r.check(
        "mem-conf-sp-lend-attributes-named-by-borrower",
        sp_lend_attributes_by_borrower,
    );
    r.check("mem-conf-retrieve-ram-as-device-denied", || {
        lend_retrieve_refused(
            |a| a.attrs = attr::DEVICE_NGNRE,
            ffa::DENIED,
            "RAM retrieved as device memory",
        )
    });
    r.check("mem-conf-retrieve-reserved-type-refused", || {
        lend_retrieve_refused(
            |a| a.attrs = attr::TYPE_RESERVED,
            ffa::INVALID_PARAMETERS,
            "a reserved memory type",
        )
    });
    r.check(
        "mem-conf-share-retrieve-other-attributes-refused",
        share_other_attributes,
    );
    // Item 5: retrieving more than once.
    r.check("mem-conf-share-retrieve-twice", share_retrieve_twice);
    r.check("mem-conf-lend-retrieve-three-times", lend_retrieve_thrice);
    r.check("mem-conf-retrieve-again-other-access-denied", || {
        lend_retrieve_again_refused(|a| a.perms = perm::RO, ffa::DENIED)
    });
    r.check("mem-conf-retrieve-again-zero-flag-refused", || {
        lend_retrieve_again_refused(|a| a.flags |= flags::ZERO, ffa::INVALID_PARAMETERS)
    });
    r.check(
        "mem-conf-share-two-borrowers-each-twice",
        share_two_borrowers_twice,
    );
    r.check("mem-conf-sp-share-retrieve-twice", sp_share_retrieve_twice);
    // Item 6: what the sender or borrower gets wrong.
    r.check("mem-conf-share-instruction-access-refused", || {
        send_refused(func::SHARE_64, &[SP1], perm::RW | perm::NX, None)
    });
    r.check("mem-conf-lend-two-instruction-access-refused", || {
        send_refused(func::LEND_64, &[SP1, SP2], perm::RW | perm::NX, None)
    });
    r.check("mem-conf-lend-one-memory-type-refused", || {
        send_refused(func::LEND_64, &[SP1], perm::RW, Some(attr::NORMAL_WB_INNER))
    });
    r.check("mem-conf-donate-memory-type-refused", || {
        send_refused(func::DONATE_64, &[SP1], 0, Some(attr::NORMAL_WB_INNER))
    });
    r.check("mem-conf-sp-lend-memory-type-refused", || {
        sp_refused(
            |g| {
                g.kind = sopt::LEND;
                g.attrs = sopt::ATTRS_NORMAL;
            },
            ffa::INVALID_PARAMETERS,
        )
    });
    r.check("mem-conf-sp-share-instruction-access-refused", || {
        sp_refused(|g| g.perms = perm::RW | perm::NX, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-conf-share-retrieve-nx-refused", || {
        share_retrieve_instruction(perm::NX)
    });
    r.check("mem-conf-share-retrieve-x-refused", || {
        share_retrieve_instruction(perm::X)
    });
    r.check(
        "mem-conf-lend-two-retrieve-instruction-refused",
        lend_two_retrieve_instruction,
    );
    r.check("mem-conf-retrieve-impdef-must-match", retrieve_impdef);
    r.check("mem-conf-retrieve-longer-than-request-refused", || {
        lend_retrieve_refused(
            |a| a.opts |= ropt::LONGER,
            ffa::INVALID_PARAMETERS,
            "a retrieve request declared longer than it is",
        )
    });
    r.check("mem-conf-reclaim-reserved-flags-refused", reclaim_flags);
    r.check(
        "mem-conf-sp-read-only-region-shared-read-write-denied",
        || sp_read_only_refused(sopt::SHARE, perm::RW),
    );
    r.check(
        "mem-conf-sp-read-only-region-lent-read-write-denied",
        || sp_read_only_refused(sopt::LEND, perm::RW),
    );
    r.check("mem-conf-sp-read-only-region-donated-denied", || {
        sp_read_only_refused(sopt::DONATE, 0)
    });
    r.check(
        "mem-conf-sp-read-only-region-shared-read-only",
        sp_read_only_shared,
    );
    // Item 7: device memory.
    r.check("mem-conf-sp-share-device-region", sp_share_device);
    r.check("mem-conf-sp-lend-device-region", sp_lend_device);
    r.check("mem-conf-sp-device-as-normal-denied", || {
        sp_device_refused(sopt::SHARE, sopt::ATTRS_NORMAL, ffa::DENIED)
    });
    r.check("mem-conf-sp-donate-device-denied", || {
        sp_device_refused(sopt::DONATE, sopt::ATTRS_BY_OP, ffa::DENIED)
    });
    r.check(
        "mem-conf-retrieve-device-as-normal-denied",
        retrieve_device_as_normal,
    );
}

/// The normal world lends one page (SEED_A) to sp1, its attributes "not
/// specified"; sp1 retrieves naming `attrs` (0: none, its default) and
/// gets the memory with those attributes (the SPMC's default, normal
/// write-back, for none), reads it, relinquishes; the harness reclaims.
fn lend_attributes_by_borrower(attrs: u16) -> Outcome {
    let (addr, h) = lend_one(SP1, 0)?;
    guarded(h, 0, &[SP1], || {
        let mut a = Ask::new(h, 0, flags::TYPE_LEND);
        a.attrs = attrs;
        if attrs == 0 {
            a.opts |= ropt::NO_ATTRIBUTES;
        }
        let g = retrieve(SP1, &a)?;
        check_got_ns(&g, addr, 1, V1_2)?;
        let want = if attrs == 0 {
            attr::NORMAL_WB_INNER
        } else {
            attrs
        };
        ensure_eq!(g.attrs & !attr::NS, want, "attributes in the response");
        ensure_eq!(sp_differ(SP1, addr, PAGE, SEED_A)?, 0, "borrower's view");
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// The normal world donates a page to sp1 ("not specified" attributes);
/// sp1 names normal write-back memory and gets it.
fn donate_attributes_by_borrower() -> Outcome {
    let addr = alloc(1)?;
    fill(addr, PAGE, SEED_B);
    let rx = receivers([SP1], 0);
    let ranges = [Range { addr, pages: 1 }];
    let h = send_ok(func::DONATE_64, &nwd_send(Layout::V1_2, &rx, &ranges))?;
    guarded(h, 0, &[SP1], || {
        let g = retrieve(SP1, &Ask::new(h, 0, flags::TYPE_DONATE))?;
        check_got_ns(&g, addr, 1, V1_2)?;
        ensure_eq!(
            g.attrs & !attr::NS,
            attr::NORMAL_WB_INNER,
            "attributes in the response"
        );
        ensure_eq!(sp_differ(SP1, addr, PAGE, SEED_B)?, 0, "new owner's view");
        Ok(())
    })
}

/// sp1 lends one of its pages to sp2, attributes "not specified"; sp2
/// names normal write-back memory, reads it, relinquishes; sp1 reclaims.
fn sp_lend_attributes_by_borrower() -> Outcome {
    let p = sp_page(SP1)?;
    sp_fill(SP1, p, PAGE, SEED_C)?;
    let h = sp_send_ok(SP1, &Give::new(p, sopt::LEND, &[SP2]))?;
    guarded(h, SP1, &[SP2], || {
        let g = retrieve(SP2, &Ask::new(h, SP1, flags::TYPE_LEND))?;
        let pa = check_got_secure(&g)?;
        ensure_eq!(g.attrs, attr::NORMAL_WB_INNER, "attributes in the response");
        ensure_eq!(sp_differ(SP2, pa, PAGE, SEED_C)?, 0, "borrower's view");
        relinquish_ok(SP2, h)?;
        sp_reclaim_ok(SP1, h)?;
        ensure_eq!(sp_differ(SP1, p, PAGE, SEED_C)?, 0, "lender's view after");
        Ok(())
    })
}

/// A lend to sp1 whose retrieve, changed by `change`, is refused with
/// `want`; the right retrieve then succeeds.
fn lend_retrieve_refused(change: impl FnOnce(&mut Ask), want: i32, what: &'static str) -> Outcome {
    let (addr, h) = lend_one(SP1, 0)?;
    guarded(h, 0, &[SP1], || {
        let mut a = Ask::new(h, 0, flags::TYPE_LEND);
        change(&mut a);
        expect_answer_error(retrieve(SP1, &a)?.answer, want, what)?;
        check_got_ns(
            &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_LEND))?,
            addr,
            1,
            V1_2,
        )?;
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// A share (normal write-back) retrieved naming other attributes
/// (non-cacheable): INVALID_PARAMETERS; the sender's then succeed.
fn share_other_attributes() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        let mut a = Ask::new(h, 0, flags::TYPE_SHARE);
        a.attrs = attr::NORMAL_NC_INNER;
        expect_answer_error(
            retrieve(SP1, &a)?.answer,
            ffa::INVALID_PARAMETERS,
            "retrieve naming other attributes than the sharer's",
        )?;
        check_got_ns(
            &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?,
            addr,
            1,
            V1_2,
        )?;
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// sp1 retrieves a share twice: the first relinquish leaves it mapped
/// (sp1 still reads it, the owner cannot reclaim), the second lets go.
fn share_retrieve_twice() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        for _ in 0..2 {
            check_got_ns(
                &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?,
                addr,
                1,
                V1_2,
            )?;
        }
        relinquish_ok(SP1, h)?;
        ensure_eq!(
            sp_differ(SP1, addr, PAGE, SEED_A)?,
            0,
            "view after one relinquish"
        );
        expect_error(
            &reclaim(h, 0),
            ffa::DENIED,
            "reclaim while retrieved once more",
        )?;
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim after the second relinquish")
    })
}

/// sp1 retrieves a lend three times, relinquishes three times; a fourth
/// relinquish is DENIED (nothing held).
fn lend_retrieve_thrice() -> Outcome {
    let (addr, h) = lend_one(SP1, 0)?;
    guarded(h, 0, &[SP1], || {
        for _ in 0..3 {
            check_got_ns(
                &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_LEND))?,
                addr,
                1,
                V1_2,
            )?;
        }
        for _ in 0..3 {
            relinquish_ok(SP1, h)?;
        }
        expect_answer_error(relinquish(SP1, h, 0)?, ffa::DENIED, "a fourth relinquish")?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// sp1 holds a lend; a second retrieve changed by `change` is refused with
/// `want`, a plain one succeeds, two relinquishes let go.
fn lend_retrieve_again_refused(change: impl FnOnce(&mut Ask), want: i32) -> Outcome {
    let (addr, h) = lend_one(SP1, 0)?;
    guarded(h, 0, &[SP1], || {
        check_got_ns(
            &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_LEND))?,
            addr,
            1,
            V1_2,
        )?;
        let mut a = Ask::new(h, 0, flags::TYPE_LEND);
        change(&mut a);
        expect_answer_error(retrieve(SP1, &a)?.answer, want, "second retrieve")?;
        ensure_eq!(
            sp_differ(SP1, addr, PAGE, SEED_A)?,
            0,
            "the memory is untouched"
        );
        check_got_ns(
            &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_LEND))?,
            addr,
            1,
            V1_2,
        )?;
        relinquish_ok(SP1, h)?;
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// A share with sp1 and sp2: each retrieves twice and reads it; the owner
/// reclaims only once both have relinquished twice.
fn share_two_borrowers_twice() -> Outcome {
    let addr = alloc(1)?;
    fill(addr, PAGE, SEED_D);
    let to = receivers([SP1, SP2], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let h = send_ok(func::SHARE_64, &nwd_send(Layout::V1_2, &to, &ranges))?;
    guarded(h, 0, &[SP1, SP2, SP1, SP2], || {
        for b in [SP1, SP2, SP2, SP1] {
            check_got_ns(
                &retrieve(b, &Ask::new(h, 0, flags::TYPE_SHARE))?,
                addr,
                1,
                V1_2,
            )?;
            ensure_eq!(sp_differ(b, addr, PAGE, SEED_D)?, 0, "borrower's view");
        }
        for b in [SP1, SP2, SP1] {
            relinquish_ok(b, h)?;
        }
        expect_error(&reclaim(h, 0), ffa::DENIED, "reclaim while sp2 holds it")?;
        relinquish_ok(SP2, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// sp1 shares a page with sp2, which retrieves it twice.
fn sp_share_retrieve_twice() -> Outcome {
    let p = sp_page(SP1)?;
    sp_fill(SP1, p, PAGE, SEED_B)?;
    let h = sp_send_ok(SP1, &Give::new(p, sopt::SHARE, &[SP2]))?;
    guarded(h, SP1, &[SP2, SP2], || {
        for _ in 0..2 {
            check_got_secure(&retrieve(SP2, &Ask::new(h, SP1, flags::TYPE_SHARE))?)?;
        }
        relinquish_ok(SP2, h)?;
        let (a, e) = sp_reclaim(SP1, h, 0)?;
        ensure_eq!(
            a | (e as u32 as u64) << 32,
            ffa::ERROR_32 | (ffa::DENIED as u32 as u64) << 32,
            "reclaim while retrieved once more"
        );
        relinquish_ok(SP2, h)?;
        sp_reclaim_ok(SP1, h)
    })
}

/// The normal world sends one fresh page with `f` to `to` with `perms`
/// (and attributes `attrs`, else DEN0140's for `f`): INVALID_PARAMETERS,
/// and the page can be shared afterwards.
fn send_refused(f: u64, to: &[u16], perms: u8, attrs: Option<u16>) -> Outcome {
    let addr = alloc(1)?;
    let mut rx = [Receiver::new(0, 0); 2];
    for (d, id) in rx.iter_mut().zip(to) {
        *d = Receiver::new(*id, perms);
    }
    let ranges = [Range { addr, pages: 1 }];
    let mut t = conformed(f, &nwd_send(Layout::V1_2, &rx[..to.len()], &ranges));
    if let Some(a) = attrs {
        t.attributes = a;
    }
    let s = as_written(|| send(f, &t));
    if success(&s.r) {
        undo_send(0, s.handle);
    }
    expect_error(&s.r, ffa::INVALID_PARAMETERS, "send answer")?;
    still_shareable(addr, 1)
}

/// A share with sp1 retrieved asking instruction access `instr`:
/// INVALID_PARAMETERS (the borrower of a share leaves it "not
/// specified"); the plain retrieve then gets it not executable.
fn share_retrieve_instruction(instr: u8) -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        let mut a = Ask::new(h, 0, flags::TYPE_SHARE);
        a.perms = perm::RW | instr;
        expect_answer_error(
            retrieve(SP1, &a)?.answer,
            ffa::INVALID_PARAMETERS,
            "retrieve of a share naming instruction access",
        )?;
        let g = retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?;
        check_got_ns(&g, addr, 1, V1_2)?;
        ensure_eq!(
            g.perms & perm::INSTR_MASK,
            perm::NX,
            "instruction access granted"
        );
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// A lend to sp1 and sp2 retrieved by sp2 asking NX: INVALID_PARAMETERS.
fn lend_two_retrieve_instruction() -> Outcome {
    let addr = alloc(1)?;
    let to = receivers([SP1, SP2], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let h = send_ok(func::LEND_64, &nwd_send(Layout::V1_2, &to, &ranges))?;
    guarded(h, 0, &[SP2], || {
        let mut a = Ask::new(h, 0, flags::TYPE_LEND);
        a.perms = perm::RW | perm::NX;
        expect_answer_error(
            retrieve(SP2, &a)?.answer,
            ffa::INVALID_PARAMETERS,
            "retrieve of a lend to two naming instruction access",
        )?;
        check_got_ns(
            &retrieve(SP2, &Ask::new(h, 0, flags::TYPE_LEND))?,
            addr,
            1,
            V1_2,
        )?;
        relinquish_ok(SP2, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// The normal world shares a page with sp1 giving it the
/// implementation-defined value IMPDEF; a retrieve whose EMAD carries
/// another (zero) is INVALID_PARAMETERS, one with IMPDEF succeeds and the
/// response carries it.
fn retrieve_impdef() -> Outcome {
    let addr = alloc(1)?;
    let to = receivers([SP1], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let t = nwd_send(Layout::V1_2, &to, &ranges);
    let mut b = [0u8; 256];
    let n = t
        .write(&mut b)
        .map_err(|_| fail("descriptor does not fit"))?;
    let at = t.emad_offset(0) + off::EMAD32_IMPDEF;
    b[at..at + 16].copy_from_slice(&test_protocol::mem::IMPDEF);
    ffa::tx_write(0, &b[..n]);
    let r = send_raw(func::SHARE_64, n as u64, n as u64, 0, 0);
    expect_success(&r, "share with an implementation-defined value")?;
    let h = handle_of(&r);
    guarded(h, 0, &[SP1], || {
        expect_answer_error(
            retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?.answer,
            ffa::INVALID_PARAMETERS,
            "retrieve with another implementation-defined value",
        )?;
        let mut a = Ask::new(h, 0, flags::TYPE_SHARE);
        a.opts |= ropt::IMPDEF;
        check_got_ns(&retrieve(SP1, &a)?, addr, 1, V1_2)?;
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// FFA_MEM_RECLAIM with a reserved flag (bit 2), and with "zero" on a
/// share: INVALID_PARAMETERS (DEN0077 v1.2 §11.4 Table 11.33 flags, zero
/// only for lent memory), the handle still reclaims.
fn reclaim_flags() -> Outcome {
    let (_, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[], || {
        expect_error(
            &reclaim(h, 1 << 2),
            ffa::INVALID_PARAMETERS,
            "reserved reclaim flag",
        )?;
        expect_error(
            &reclaim(h, flags::ZERO),
            ffa::INVALID_PARAMETERS,
            "zero flag on a share",
        )?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// sp2 sends its read-only page with `kind` and `perms` to sp1: DENIED
/// (DEN0140 §1.5/§1.11: no more access than the sender has; a donation
/// gives all of it), nothing changed: sp2 still shares it read-only.
fn sp_read_only_refused(kind: u64, perms: u8) -> Outcome {
    let mut g = Give::new(layout::RO_IPA, kind, &[SP1]);
    g.perms = perms;
    let (a, h, _) = sp_send(SP2, &g)?;
    if a == ffa::SUCCESS_32 {
        undo_send(SP2, h);
    }
    expect_answer_error(a, ffa::DENIED, "partition's send of read-only memory")?;
    let mut ok = Give::new(layout::RO_IPA, sopt::SHARE, &[SP1]);
    ok.perms = perm::RO;
    let h = sp_send_ok(SP2, &ok)?;
    sp_reclaim_ok(SP2, h)
}

/// sp2 shares its read-only page read-only: sp1 cannot retrieve it
/// read-write (DENIED), retrieves it read-only and reads what sp2 reads.
fn sp_read_only_shared() -> Outcome {
    let mut g = Give::new(layout::RO_IPA, sopt::SHARE, &[SP1]);
    g.perms = perm::RO;
    let h = sp_send_ok(SP2, &g)?;
    guarded(h, SP2, &[SP1], || {
        expect_answer_error(
            retrieve(SP1, &Ask::new(h, SP2, flags::TYPE_SHARE))?.answer,
            ffa::DENIED,
            "read-write retrieve of read-only memory",
        )?;
        let mut a = Ask::new(h, SP2, flags::TYPE_SHARE);
        a.perms = perm::RO;
        let got = retrieve(SP1, &a)?;
        got.ok()?;
        ensure_eq!(got.perms & perm::DATA_MASK, perm::RO, "data access granted");
        let theirs = sp(SP2, cmd::MEM_SUM, [layout::RO_IPA, PAGE, 0, 0])?;
        let mine = sp(SP1, cmd::MEM_SUM, [got.addr, PAGE, 0, 0])?;
        ensure_eq!(mine[0], theirs[0], "what sp1 reads");
        relinquish_ok(SP1, h)?;
        sp_reclaim_ok(SP2, h)
    })
}

/// sp2's reading of the PL061's PrimeCell ID through `ipa`.
fn primecell_sum(who: u16, ipa: u64) -> R<u64> {
    Ok(sp(who, cmd::MEM_SUM, [ipa + PRIMECELL_ID, 16, 0, 0])?[0])
}

/// sp1 shares its device region (device-nGnRE) with sp2: sp2 retrieves it
/// (the sharer's attributes), gets device attributes, never executable,
/// reads the PrimeCell ID; relinquish, reclaim; sp1 still reads it.
fn sp_share_device() -> Outcome {
    let mut g = Give::new(DEVICE_IPA, sopt::SHARE, &[SP2]);
    g.attrs = sopt::ATTRS_DEVICE;
    let h = sp_send_ok(SP1, &g)?;
    guarded(h, SP1, &[SP2], || {
        let mut a = Ask::new(h, SP1, flags::TYPE_SHARE);
        a.opts |= ropt::NO_ATTRIBUTES;
        let got = retrieve(SP2, &a)?;
        got.ok()?;
        ensure_eq!(got.addr, DEVICE_IPA, "address in the response");
        ensure_eq!(got.attrs, attr::DEVICE_NGNRE, "attributes in the response");
        ensure_eq!(got.perms & perm::INSTR_MASK, perm::NX, "instruction access");
        ensure_eq!(
            primecell_sum(SP2, DEVICE_IPA)?,
            PRIMECELL_SUM,
            "sp2 reads the device"
        );
        relinquish_ok(SP2, h)?;
        sp_reclaim_ok(SP1, h)?;
        ensure_eq!(
            primecell_sum(SP1, DEVICE_IPA)?,
            PRIMECELL_SUM,
            "sp1 reads the device"
        );
        Ok(())
    })
}

/// sp1 lends its device region to sp2 ("not specified" attributes): sp2
/// names device memory, reads it; sp1 reclaims and reads it again.
fn sp_lend_device() -> Outcome {
    let h = sp_send_ok(SP1, &Give::new(DEVICE_IPA, sopt::LEND, &[SP2]))?;
    guarded(h, SP1, &[SP2], || {
        let mut a = Ask::new(h, SP1, flags::TYPE_LEND);
        a.attrs = attr::DEVICE_NGNRE;
        let got = retrieve(SP2, &a)?;
        got.ok()?;
        ensure_eq!(got.attrs, attr::DEVICE_NGNRE, "attributes in the response");
        ensure_eq!(
            primecell_sum(SP2, DEVICE_IPA)?,
            PRIMECELL_SUM,
            "sp2 reads the device"
        );
        relinquish_ok(SP2, h)?;
        sp_reclaim_ok(SP1, h)?;
        ensure_eq!(
            primecell_sum(SP1, DEVICE_IPA)?,
            PRIMECELL_SUM,
            "sp1 reads the device"
        );
        Ok(())
    })
}

/// sp1 sends its device region with `kind` and attributes `attrs`:
/// refused with `want`; sp1 still shares it afterwards.
fn sp_device_refused(kind: u64, attrs: u64, want: i32) -> Outcome {
    let mut g = Give::new(DEVICE_IPA, kind, &[SP2]);
    g.attrs = attrs;
    if kind == sopt::DONATE {
        g.perms = 0;
    }
    let (a, h, _) = sp_send(SP1, &g)?;
    if a == ffa::SUCCESS_32 {
        undo_send(SP1, h);
    }
    expect_answer_error(a, want, "partition's send of its device region")?;
    let mut ok = Give::new(DEVICE_IPA, sopt::SHARE, &[SP2]);
    ok.attrs = sopt::ATTRS_DEVICE;
    let h = sp_send_ok(SP1, &ok)?;
    sp_reclaim_ok(SP1, h)
}

/// sp1 lends its device region to sp2, which names normal memory: DENIED;
/// naming device memory then succeeds.
fn retrieve_device_as_normal() -> Outcome {
    let h = sp_send_ok(SP1, &Give::new(DEVICE_IPA, sopt::LEND, &[SP2]))?;
    guarded(h, SP1, &[SP2], || {
        expect_answer_error(
            retrieve(SP2, &Ask::new(h, SP1, flags::TYPE_LEND))?.answer,
            ffa::DENIED,
            "device memory retrieved as normal memory",
        )?;
        let mut a = Ask::new(h, SP1, flags::TYPE_LEND);
        a.attrs = attr::DEVICE_NGNRE;
        retrieve(SP2, &a)?.ok()?;
        relinquish_ok(SP2, h)?;
        sp_reclaim_ok(SP1, h)
    })
}
