//! A partition that attacks the SPMC from S-EL1, on command: the test
//! partition's `CALL` (any function with x1-x3), `REMAP` (its RX/TX
//! buffers elsewhere), `MEM_SEND` (descriptors with any range, sender and
//! receivers), `STORM` (thousands of calls), `RESP_WRONG` and
//! `WAIT_IN_REQ` (answers out of turn) and `AARCH32`. sp2 is the
//! attacker; crash-data (0x8004) is the one that drops to AArch32 EL0 (it
//! is aborted, so that check runs last). Sections are DEN0077 v1.2.

use test_protocol::cmd::send as sopt;
use test_protocol::mem::{flags, func};
use test_protocol::{cmd, ids, layout, status};

use super::irq;
use super::{Hostile, error_word, fail_eq, word};
use crate::ffa;
use crate::mem::kit;
use crate::report::{Fail, Outcome};

/// The attacking partition.
const ATTACKER: u16 = ids::SP2;

/// Runs a partition command (through interrupts); its results if status OK.
pub fn command(dst: u16, c: u64, args: [u64; 4]) -> Result<[u64; 4], Fail> {
    let r = irq::finish(ffa::cmd(dst, c, args));
    if r[0] != ffa::MSG_SEND_DIRECT_RESP_64 || r[1] != (dst as u64) << 16 {
        return Err(fail_eq(
            "partition command: no direct response (w0 | w2 << 32)",
            word(&r),
            ffa::MSG_SEND_DIRECT_RESP_64,
        ));
    }
    if r[3] != status::OK {
        return Err(fail_eq("partition command status", r[3], status::OK));
    }
    Ok([r[4], r[5], r[6], r[7]])
}

/// The answer word (`w0 | w2 << 32`) of `f` called by the attacker.
fn sp_call(f: u64, x1: u64, x2: u64, x3: u64) -> Result<u64, Fail> {
    let [w0, x2, ..] = command(ATTACKER, cmd::CALL, [f, x1, x2, x3])?;
    Ok(w0
        | if w0 == ffa::ERROR_32 {
            (x2 as u32 as u64) << 32
        } else {
            0
        })
}

/// Fails unless the attacker's call of `f` answered FFA_ERROR(`want`).
fn sp_error(f: u64, x1: u64, x2: u64, x3: u64, want: i32) -> Outcome {
    let got = sp_call(f, x1, x2, x3)?;
    if got != error_word(want) {
        return Err(fail_eq("answer in the partition", got, error_word(want)));
    }
    Ok(())
}

/// The attacker's mailbox: (TX IPA, RX IPA).
fn mailbox() -> Result<(u64, u64), Fail> {
    let [tx, rx, ..] = command(ATTACKER, cmd::MAILBOX, [0; 4])?;
    Ok((tx, rx))
}

/// REMAP on the attacker: fails unless the hostile map answered `want`
/// and the attacker got its own buffers back.
fn remap(tx: u64, rx: u64, pages: u64, want: i32) -> Outcome {
    let [unmap, w0, w2, own] = command(ATTACKER, cmd::REMAP, [tx, rx, pages, 0])?;
    if unmap != ffa::SUCCESS_32 {
        return Err(fail_eq(
            "the partition's FFA_RXTX_UNMAP",
            unmap,
            ffa::SUCCESS_32,
        ));
    }
    let got = w0 | if w0 == ffa::ERROR_32 { w2 << 32 } else { 0 };
    if own != ffa::SUCCESS_32 {
        return Err(fail_eq(
            "mapping its own buffers again",
            own,
            ffa::SUCCESS_32,
        ));
    }
    if got != error_word(want) {
        return Err(fail_eq(
            "FFA_RXTX_MAP_64 in the partition",
            got,
            error_word(want),
        ));
    }
    Ok(())
}

/// MEM_SEND on the attacker of `pages` at `ipa` to `to` with `kind`
/// (send::SHARE/LEND/DONATE) naming `sender` (0: itself): fails unless it
/// answered FFA_ERROR(`want`); reclaims what succeeded by mistake.
fn send(ipa: u64, pages: u32, to: &[u16], kind: u64, sender: u16, want: i32) -> Outcome {
    let mut g = kit::Give::new(ipa, kind, to);
    if kind == sopt::DONATE {
        // DEN0140: a donor leaves the access unspecified.
        g.perms = 0;
    }
    g.pages = pages;
    g.sender = sender;
    let (a, handle, _) = kit::sp_send(ATTACKER, &g)?;
    if a as u32 as u64 == ffa::SUCCESS_32 {
        let _ = kit::sp_reclaim(ATTACKER, handle, 0);
    }
    if a != error_word(want) {
        return Err(fail_eq("the partition's send", a, error_word(want)));
    }
    Ok(())
}

/// Runs every partition attack but the one that aborts a partition.
pub fn run(h: &mut Hostile<'_>) {
    let inval = ffa::INVALID_PARAMETERS;
    // §13.5 FFA_RXTX_MAP from a partition: IPAs of its own writable memory
    // only (INVALID_PARAMETERS otherwise).
    let cases: &[(&str, u64, u64, u64)] = &[
        (
            "sp-rxtx-map-unmapped-ipa",
            layout::UNMAPPED_IPA,
            layout::UNMAPPED_IPA + 0x1000,
            1,
        ),
        ("sp-rxtx-map-spmc-address", 0x0e10_0000, 0x0e10_1000, 1),
        (
            "sp-rxtx-map-secure-pool-address",
            0x0e50_0000,
            0x0e50_1000,
            1,
        ),
        ("sp-rxtx-map-ns-ipa", 0x4000_0000, 0x4000_1000, 1),
        (
            "sp-rxtx-map-harness-buffers",
            ffa::tx_addr(),
            ffa::rx_addr(),
            1,
        ),
        (
            "sp-rxtx-map-wraps",
            0xFFFF_FFFF_FFFF_F000,
            layout::SEND_IPA,
            2,
        ),
        (
            "sp-rxtx-map-unaligned",
            layout::SEND_IPA + 8,
            layout::SEND_IPA + 0x1000,
            1,
        ),
        (
            "sp-rxtx-map-zero-pages",
            layout::SEND_IPA,
            layout::SEND_IPA + 0x1000,
            0,
        ),
        (
            "sp-rxtx-map-past-its-ram",
            layout::SEND_IPA + 0xE000,
            layout::SEND_IPA,
            8,
        ),
        (
            "sp-rxtx-map-same-page",
            layout::SEND_IPA,
            layout::SEND_IPA,
            1,
        ),
        (
            "sp-rxtx-map-w3-reserved-bits",
            layout::SEND_IPA,
            layout::SEND_IPA + 0x1000,
            1 | 1 << 8,
        ),
    ];
    for (name, tx, rx, pages) in cases {
        h.check(name, || remap(*tx, *rx, *pages, inval));
    }
    // Issue 9 item 1: a buffer only over memory its owner owns exclusively:
    // not over a page it shares (DENIED); a page it lent is no longer in
    // its address space at all (INVALID_PARAMETERS, as any unmapped IPA).
    h.check("sp-rxtx-map-over-shared-page", || {
        rxtx_over_sent_page(sopt::SHARE, flags::TYPE_SHARE, ffa::DENIED)
    });
    h.check("sp-rxtx-map-over-lent-page", || {
        rxtx_over_sent_page(sopt::LEND, flags::TYPE_LEND, inval)
    });
    // Issue 9 item 1: a page that backs a live RX/TX buffer cannot change
    // hands: lending, sharing or donating it is DENIED.
    h.check("sp-lend-own-rx-buffer", || {
        let (_, rx) = mailbox()?;
        send(rx, 1, &[ids::SP1], sopt::LEND, 0, ffa::DENIED)
    });
    h.check("sp-share-own-tx-buffer", || {
        let (tx, _) = mailbox()?;
        send(tx, 1, &[ids::SP1], sopt::SHARE, 0, ffa::DENIED)
    });
    h.check("sp-donate-own-tx-buffer", || {
        let (tx, _) = mailbox()?;
        send(tx, 1, &[ids::SP1], sopt::DONATE, 0, ffa::DENIED)
    });
    // Memory that is not the attacker's, and descriptors that lie
    // (docs/memory-sharing.md's table).
    let page = layout::SEND_IPA + 0xA000;
    let sends: &[(&str, u64, u32, u16, u16, i32)] = &[
        (
            "sp-send-range-wraps",
            0xFFFF_FFFF_FFFF_F000,
            2,
            ids::SP1,
            0,
            inval,
        ),
        ("sp-send-range-zero-pages", page, 0, ids::SP1, 0, inval),
        (
            "sp-send-range-unaligned",
            page + 0x10,
            1,
            ids::SP1,
            0,
            inval,
        ),
        (
            "sp-send-unmapped-ipa",
            layout::UNMAPPED_IPA,
            1,
            ids::SP1,
            0,
            ffa::DENIED,
        ),
        ("sp-send-ns-ipa", 0x4000_0000, 1, ids::SP1, 0, ffa::DENIED),
        ("sp-send-past-its-ram", page, 64, ids::SP1, 0, ffa::DENIED),
        (
            "sp-send-forged-sender-sp1",
            page,
            1,
            ids::TPM,
            ids::SP1,
            inval,
        ),
        (
            "sp-send-forged-sender-nwd",
            page,
            1,
            ids::SP1,
            0x7FFF,
            inval,
        ),
        ("sp-send-to-itself", page, 1, ATTACKER, 0, inval),
        ("sp-send-to-0x8123", page, 1, 0x8123, 0, inval),
        ("sp-send-to-spmc", page, 1, 0x8000, 0, inval),
    ];
    for (name, ipa, pages, to, sender, want) in sends {
        h.check(name, || {
            send(*ipa, *pages, &[*to], sopt::SHARE, *sender, *want)
        });
    }
    // §15.2 direct requests with forged senders: w1[31:16] must be the caller.
    h.check("sp-direct-req-forged-sender", || {
        sp_error(
            ffa::MSG_SEND_DIRECT_REQ_64,
            (ids::SP1 as u64) << 16 | ids::TPM as u64,
            0,
            cmd::ECHO,
            inval,
        )
    });
    h.check("sp-direct-req-as-normal-world", || {
        sp_error(
            ffa::MSG_SEND_DIRECT_REQ_64,
            ids::TPM as u64,
            0,
            cmd::ECHO,
            inval,
        )
    });
    h.check("sp-direct-req-w2-reserved", || {
        sp_error(
            ffa::MSG_SEND_DIRECT_REQ_64,
            (ATTACKER as u64) << 16 | ids::TPM as u64,
            0x7F,
            cmd::ECHO,
            inval,
        )
    });
    // §18: framework messages are the SPMC's and the SPMD's, never a
    // partition's (VM created to the template from sp2).
    h.check("sp-forged-vm-created", || {
        sp_error(
            ffa::MSG_SEND_DIRECT_REQ_32,
            (ATTACKER as u64) << 16 | ids::VTEE_TEMPLATE as u64,
            (ffa::fwk::FLAG | ffa::fwk::VM_CREATED) as u64,
            0,
            inval,
        )
    });
    // FFA_RUN and responses out of turn (§13.x, §15.3).
    h.check("sp-run-another-partition", || {
        sp_error(ffa::RUN, (ids::SP1 as u64) << 16, 0, 0, ffa::NOT_SUPPORTED)
    });
    for (name, to) in [
        ("sp-response-to-another-partition", ids::SP1),
        ("sp-response-to-spmc", 0x8000),
        ("sp-response-to-0xffff", 0xFFFF),
    ] {
        h.check(name, move || {
            let [w0, w2, ..] = command(ATTACKER, cmd::RESP_WRONG, [to as u64, 0, 0, 0])?;
            let got = w0 | (w2 << 32);
            if got != error_word(inval) {
                return Err(fail_eq(
                    "answer to the misaddressed response",
                    got,
                    error_word(inval),
                ));
            }
            Ok(())
        });
    }
    h.check("sp-direct-resp-misaddressed-via-call", || {
        // A direct response to sp1, which sent sp2 no request: the request
        // sp2 owes an answer to is the harness's.
        sp_error(
            ffa::MSG_SEND_DIRECT_RESP_64,
            (ATTACKER as u64) << 16 | ids::SP1 as u64,
            0,
            0,
            inval,
        )
    });
    h.check("sp-msg-wait-while-owing-response", || {
        let [w0, w2, ..] = command(ATTACKER, cmd::WAIT_IN_REQ, [0; 4])?;
        let got = w0 | (w2 << 32);
        if got != error_word(ffa::DENIED) {
            return Err(fail_eq(
                "answer to FFA_MSG_WAIT",
                got,
                error_word(ffa::DENIED),
            ));
        }
        Ok(())
    });
    // Memory management out of turn (docs/memory-sharing.md's table).
    h.check("sp-reclaim-someone-elses-handle", || {
        with_nwd_share(|handle| {
            sp_error(
                func::RECLAIM,
                handle & 0xFFFF_FFFF,
                handle >> 32,
                0,
                ffa::DENIED,
            )
        })
    });
    h.check("sp-relinquish-without-retrieve", || {
        with_nwd_share(|handle| {
            let a = kit::relinquish(ATTACKER, handle, 0)?;
            if a != error_word(ffa::DENIED) {
                return Err(fail_eq("relinquish answer", a, error_word(ffa::DENIED)));
            }
            Ok(())
        })
    });
    h.check("sp-retrieve-not-a-borrower", || {
        with_nwd_share(|handle| {
            let g = kit::retrieve(ATTACKER, &kit::Ask::new(handle, 0, flags::TYPE_SHARE))?;
            if g.answer != error_word(ffa::DENIED) {
                return Err(fail_eq(
                    "retrieve answer",
                    g.answer,
                    error_word(ffa::DENIED),
                ));
            }
            Ok(())
        })
    });
    h.check("sp-frag-tx-unknown-handle", || {
        sp_error(func::FRAG_TX, 0xDEAD, 0, 16, inval)
    });
    h.check("sp-frag-rx-unknown-handle", || {
        sp_error(func::FRAG_RX, 0xDEAD, 0, 0, inval)
    });
    h.check("sp-reclaim-unknown-handle", || {
        sp_error(func::RECLAIM, 0xDEAD, 0, 0, inval)
    });
    // Calls a partition may not make, or that do not exist (§7.2, §13.3).
    let not_supported: &[(&str, u64)] = &[
        ("sp-unknown-ffa-function", 0x8400_00FF),
        ("sp-ffa-version-smc64", 0xC400_0063),
        ("sp-rx-acquire", ffa::RX_ACQUIRE),
        ("sp-notification-bitmap-create", 0x8400_007D),
        ("sp-el3-intr-handle", 0x8400_008C),
        // PSCI from S-EL1 must never reach EL3: no partition switches the
        // machine off, resets it or turns a core off (SMCCC: the SPMC
        // traps the partition's SMCs, HCR_EL2.TSC).
        ("sp-psci-version", 0x8400_0000),
        ("sp-sip-call", 0x8200_0000),
    ];
    for (name, f) in not_supported {
        h.check(name, || {
            sp_error(
                *f,
                0xDEAD_0001,
                0xBEEF_0001,
                0xF00D_0001,
                ffa::NOT_SUPPORTED,
            )
        });
    }
    // FFA_SECONDARY_EP_REGISTER is for a partition's initialisation only
    // (DEN0077 v1.2 §18.3.2.1; spmc::multicore): at run time, DENIED.
    for (name, f) in [
        ("sp-secondary-ep-register-after-init-32", 0x8400_0087u64),
        ("sp-secondary-ep-register-after-init-64", 0xC400_0087),
    ] {
        h.check(name, || sp_error(f, 0x1000_0000, 0, 0, ffa::DENIED));
    }
    h.check("sp-version-bit31", || {
        let got = sp_call(ffa::VERSION, 0x8001_0002, 0, 0)?;
        if got as u32 as i32 != ffa::NOT_SUPPORTED {
            return Err(fail_eq("answer", got, ffa::NOT_SUPPORTED as u32 as u64));
        }
        Ok(())
    });
    h.check("sp-partition-info-regs-unknown-tag", || {
        sp_error(
            ffa::PARTITION_INFO_GET_REGS_64,
            0,
            0,
            0x77 << 16,
            ffa::RETRY,
        )
    });
    h.check("sp-console-log-count-huge", || {
        sp_error(ffa::CONSOLE_LOG_64, 0xFFFF_FFFF, 0, 0, inval)
    });
    // Storms from S-EL1.
    let storms: &[(&str, u64, u64, u64, u64, u64, u64)] = &[
        // (name, function, count, x1, after, expected w0, expected w2)
        (
            "sp-storm-20000-id-get",
            ffa::ID_GET,
            20_000,
            0,
            0,
            ffa::SUCCESS_32,
            ATTACKER as u64,
        ),
        (
            "sp-storm-5000-unknown-function",
            0x8400_00FF,
            5_000,
            0,
            0,
            ffa::ERROR_32,
            ffa::NOT_SUPPORTED as u32 as u64,
        ),
        (
            "sp-storm-2000-discovery",
            ffa::PARTITION_INFO_GET,
            2_000,
            0,
            ffa::RX_RELEASE,
            ffa::SUCCESS_32,
            7,
        ),
        (
            "sp-storm-2000-rxtx-map-zero-pages",
            ffa::RXTX_MAP_64,
            2_000,
            layout::SEND_IPA,
            0,
            ffa::ERROR_32,
            ffa::INVALID_PARAMETERS as u32 as u64,
        ),
        (
            "sp-storm-2000-requests-to-sp1",
            ffa::MSG_SEND_DIRECT_REQ_64,
            2_000,
            (ATTACKER as u64) << 16 | ids::SP1 as u64,
            0,
            ffa::MSG_SEND_DIRECT_RESP_64 & 0xFFFF_FFFF,
            0,
        ),
        (
            "sp-storm-2000-requests-to-itself",
            ffa::MSG_SEND_DIRECT_REQ_64,
            2_000,
            (ATTACKER as u64) << 16 | ATTACKER as u64,
            0,
            ffa::ERROR_32,
            ffa::INVALID_PARAMETERS as u32 as u64,
        ),
    ];
    for (name, f, count, x1, after, w0, w2) in storms {
        h.check(name, || {
            let [same, first_w0, first_w2, _] =
                command(ATTACKER, cmd::STORM, [*f, *count, *x1, *after])?;
            if first_w0 != *w0 || first_w2 != *w2 {
                return Err(fail_eq(
                    "first answer (w0 | w2 << 32)",
                    first_w0 | first_w2 << 32,
                    *w0 | *w2 << 32,
                ));
            }
            if same != *count {
                return Err(fail_eq("answers like the first", same, *count));
            }
            Ok(())
        });
    }
}

/// The normal world shares a page with sp1; `f` gets the handle; the page
/// is reclaimed after.
fn with_nwd_share(f: impl FnOnce(u64) -> Outcome) -> Outcome {
    let page = kit::alloc(1)?;
    let to = kit::receivers([ids::SP1], test_protocol::mem::perm::RW);
    let ranges = [test_protocol::mem::Range {
        addr: page,
        pages: 1,
    }];
    let t = kit::nwd_send(test_protocol::mem::Layout::V1_2, &to, &ranges);
    let handle = kit::send_ok(func::SHARE_64, &t)?;
    let res = f(handle);
    let back = kit::reclaim(handle, 0);
    res?;
    super::expect_success(&back, "reclaim")
}

/// sp2 shares or lends (`kind`, `type_flag`) a page of its own to sp1, sp1
/// retrieves it, sp2 tries to map its RX buffer over it: `want`.
fn rxtx_over_sent_page(kind: u64, type_flag: u32, want: i32) -> Outcome {
    let page = layout::SEND_IPA + if kind == sopt::LEND { 0xB000 } else { 0xC000 };
    let g = kit::Give::new(page, kind, &[ids::SP1]);
    let handle = kit::sp_send_ok(ATTACKER, &g)?;
    let got = kit::retrieve(ids::SP1, &kit::Ask::new(handle, ATTACKER, type_flag));
    let res = remap(layout::SEND_IPA, page, 1, want);
    if got.is_ok() {
        let _ = kit::relinquish(ids::SP1, handle, 0);
    }
    let back = kit::sp_reclaim(ATTACKER, handle, 0)?;
    got?.ok()?;
    res?;
    if back.0 != ffa::SUCCESS_32 {
        return Err(fail_eq("sp2's reclaim", back.0, ffa::SUCCESS_32));
    }
    Ok(())
}

/// Checks whose attack aborts a partition (run after the rest).
pub fn run_last(h: &mut Hostile<'_>) {
    // Issue 9 item 4: AArch32 at EL0 is the partition's fault: it is
    // aborted, its caller gets FFA_ERROR(ABORTED) (§? partition abort), and
    // everything else goes on.
    h.check("sp-aarch32-el0-udf-aborted", || {
        super::given_up(ids::CRASH_DATA);
        // An A32 `udf` at EL0: the exception goes to the partition's own
        // (missing) EL1 vectors and ends at the SPMC as a stage-2 abort.
        let r = irq::finish(ffa::cmd(ids::CRASH_DATA, cmd::AARCH32, [0; 4]));
        super::expect_error(&r, ffa::ABORTED, "the request's answer")
    });
    h.check("sp-aarch32-el0-stays-aborted", || {
        let r = irq::finish(ffa::cmd(ids::CRASH_DATA, cmd::ECHO, [1, 0, 0, 0]));
        super::expect_error(&r, ffa::ABORTED, "a request to it")?;
        let run = irq::finish(ffa::call(ffa::RUN, &[(ids::CRASH_DATA as u64) << 16]));
        super::expect_error(&run, ffa::ABORTED, "FFA_RUN of it")
    });
    // Run late: if the SPMC passed them on, the machine would go down.
    for (name, f) in [
        ("sp-psci-cpu-off", 0x8400_0002u64),
        ("sp-psci-system-reset", 0x8400_0009),
        ("sp-psci-system-off", 0x8400_0008),
    ] {
        h.check(name, || sp_error(f, 0, 0, 0, ffa::NOT_SUPPORTED));
    }
    h.check("sp-aarch32-el0-stage2-fault-with-interrupt", || {
        super::given_up(ids::CRASH_UNDEF);
        // EL0 jumps to an IPA its stage 2 does not map: the abort is taken
        // at S-EL2 straight from AArch32 EL0; an interrupt is pending too.
        let r = irq::with_timer(0, || {
            irq::finish(ffa::cmd(
                ids::CRASH_UNDEF,
                cmd::AARCH32,
                [layout::UNMAPPED_IPA, 0, 0, 0],
            ))
        });
        super::expect_error(&r, ffa::ABORTED, "the request's answer")
    });
}
