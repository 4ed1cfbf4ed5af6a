//! End-to-end checks of FF-A memory sharing against the contract in
//! docs/memory-sharing.md: FFA_FEATURES, the limits, every ABI's success
//! path in the v1.0 and v1.1+ descriptor layouts (share, lend, donate from
//! the normal world to one and to several partitions, and from partition
//! to partition), fragmentation both ways, caller-supplied buffers, the
//! zeroing flags, and every error of the contract's table, each with the
//! exact error code and a look at the state afterwards (the memory can
//! still be shared, the handle still reclaims, the partition still
//! answers). Descriptors are written and read with `test_protocol::mem`;
//! the partitions act through their `MEM_*` commands.
//!
//! Runs after the partition checks, whose fault checks abort the three
//! crash partitions: the check that a lender loses access to the pages it
//! lent (the lender touches one and is aborted) therefore uses the TPM
//! partition, and runs last.

mod conf;
pub mod kit;
mod nwb;

use core::sync::atomic::{AtomicU64, Ordering};

use test_protocol::cmd::{self, retrieve as ropt, send as sopt};
use test_protocol::ids::{SP1, SP2, TPM};
use test_protocol::layout;
use test_protocol::mem::{
    Layout, List, Range, Ranges, Receiver, Strided, Transaction, attr, flags, func, off, perm,
    put16, put32, put64,
};

use crate::ffa::{self, call, code};
use crate::report::{Outcome, Report};
use crate::{ensure, ensure_eq};
use kit::*;

/// A handle no transaction has (bit 63 clear, like the SPMC's).
const UNKNOWN_HANDLE: u64 = 0x0BAD_0000_DEAD;
/// Secure memory (the secure pool) offered from the normal world.
const SECURE_PA: u64 = crate::board::SECURE_POOL;
/// The normal world's UART: not RAM.
const MMIO_PA: u64 = crate::board::NS_UART as u64;

const SEED_A: u64 = 0xA000_0000_0000_0000;
const SEED_B: u64 = 0xB000_0000_0000_0000;
const SEED_C: u64 = 0xC000_0000_0000_0000;
const SEED_D: u64 = 0xD000_0000_0000_0000;

const V1_0: u32 = ffa::V1_0;
const V1_1: u32 = ffa::V1_1;
const V1_2: u32 = ffa::V1_2;

/// The report, with each check's failed clean-ups reported after it as a
/// failure of their own (`<check>-cleanup`), not of some later check.
struct Checks<'a>(&'a mut Report);

impl Checks<'_> {
    fn check(&mut self, name: &str, f: impl FnOnce() -> Outcome) {
        self.0.check(name, f);
        if let Some(e) = take_cleanup_failure() {
            self.0.fail_cleanup(name, e);
        }
    }
}

/// Runs every memory-sharing check in order.
pub fn run(r: &mut Report) {
    let r = &mut Checks(r);
    setup();
    // FFA_FEATURES at the normal-world instance and at a partition's.
    r.check("mem-features-share-32", || features_w2(func::SHARE_32, 0));
    r.check("mem-features-share-64", || features_w2(func::SHARE_64, 0));
    r.check("mem-features-lend-32", || features_w2(func::LEND_32, 0));
    r.check("mem-features-lend-64", || features_w2(func::LEND_64, 0));
    r.check("mem-features-donate-32", || features_w2(func::DONATE_32, 0));
    r.check("mem-features-donate-64", || features_w2(func::DONATE_64, 0));
    r.check("mem-features-frag-tx", || features(func::FRAG_TX, 0));
    r.check("mem-features-reclaim", || features(func::RECLAIM, 0));
    // The normal world borrows too (mem/nwb.rs); FFA_MEM_RETRIEVE_RESP is
    // only ever the SPMC's answer.
    r.check("mem-features-retrieve-resp-not-for-normal-world", || {
        not_features(&[func::RETRIEVE_RESP])
    });
    r.check("mem-sp-features-send", || {
        sp_features(
            &[
                func::SHARE_32,
                func::SHARE_64,
                func::LEND_32,
                func::LEND_64,
                func::DONATE_32,
                func::DONATE_64,
            ],
            0,
            0,
        )
    });
    // A v1.2 partition asks with the NS-bit input property (bit 1).
    r.check("mem-sp-features-retrieve", || {
        sp_features(&[func::RETRIEVE_REQ_32, func::RETRIEVE_REQ_64], 2, 0b11)
    });
    r.check("mem-sp-features-relinquish-frag-reclaim", || {
        sp_features(
            &[
                func::RELINQUISH,
                func::FRAG_RX,
                func::FRAG_TX,
                func::RECLAIM,
            ],
            0,
            0,
        )
    });
    // Limits (first, while no other transaction is in flight).
    r.check("mem-limit-64-transactions", limit_transactions);
    r.check("mem-limit-32768-pages", limit_pages);
    r.check("mem-limit-256k-descriptor", limit_descriptor);
    r.check("mem-handles-unique", handles_unique);
    // Normal world to partitions, every send ABI, both layouts.
    r.check("mem-share-v1.2", || {
        trip(func::SHARE_64, V1_2, &[SP1], 1, BY_1_2)
    });
    r.check("mem-share-32-v1.2", || {
        trip(func::SHARE_32, V1_2, &[SP1], 1, BY_1_2)
    });
    r.check("mem-share-v1.2-16-byte-emads", share_emad16);
    r.check("mem-share-three-partitions", || {
        trip(func::SHARE_64, V1_2, &[SP1, SP2, TPM], 3, BY_1_2)
    });
    r.check("mem-share-several-ranges", share_several_ranges);
    r.check("mem-lend-v1.2", || {
        trip(func::LEND_64, V1_2, &[SP1], 4, BY_1_2)
    });
    r.check("mem-lend-32-v1.2", || {
        trip(func::LEND_32, V1_2, &[SP1], 1, BY_1_2)
    });
    r.check("mem-lend-two-partitions", || {
        trip(func::LEND_64, V1_2, &[SP1, SP2], 2, BY_1_2)
    });
    r.check("mem-donate-v1.2", || {
        trip(func::DONATE_64, V1_2, &[SP1], 1, BY_1_2)
    });
    r.check("mem-donate-32-v1.2", || {
        trip(func::DONATE_32, V1_2, &[TPM], 1, BY_1_2)
    });
    // Retrieve responses in each layout, and the retrieve variants.
    r.check("mem-retrieve-v1.2-response", || response_layout(V1_2));
    r.check("mem-retrieve-32-v1.2", || {
        trip(
            func::SHARE_64,
            V1_2,
            &[SP1],
            1,
            By {
                version: V1_2,
                smc32: true,
            },
        )
    });
    r.check("mem-retrieve-16-byte-emad-at-v1.2", retrieve_emad16);
    r.check("mem-retrieve-narrower-access", retrieve_narrower);
    r.check("mem-share-never-executable", share_not_executable);
    r.check("mem-share-for-bound-vm", || share_for_vm(1, SP1));
    r.check("mem-share-for-vm-to-shared-service", || {
        share_for_vm(2, TPM)
    });
    // Zeroing.
    r.check("mem-lend-zero-flag", lend_zero_flag);
    r.check("mem-retrieve-zero-before-retrieve", retrieve_zero_before);
    r.check("mem-retrieve-zero-after-relinquish", retrieve_zero_after);
    r.check("mem-relinquish-zero-flag", relinquish_zero);
    r.check("mem-reclaim-zero-flag", reclaim_zero);
    r.check("mem-share-zero-flag-refused", share_zero_refused);
    r.check(
        "mem-retrieve-zero-flag-on-share-refused",
        retrieve_zero_on_share,
    );
    // Partition to partition.
    r.check("mem-sp-share-to-sp", || {
        sp_trip(sopt::SHARE, sopt::LAYOUT_V1_2, &[SP2])
    });
    r.check("mem-sp-lend-to-sp", || {
        sp_trip(sopt::LEND, sopt::LAYOUT_V1_2, &[SP2])
    });
    r.check("mem-sp-lend-to-two", || {
        sp_trip(sopt::LEND, sopt::LAYOUT_V1_2, &[SP2, TPM])
    });
    r.check("mem-sp-share-32", || {
        sp_trip(sopt::SHARE | sopt::SMC32, sopt::LAYOUT_V1_2, &[SP2])
    });
    r.check("mem-sp-share-16-byte-emads", || {
        sp_trip(sopt::SHARE, sopt::LAYOUT_V1_2_EMAD16, &[TPM])
    });
    r.check("mem-sp-donate-to-sp", sp_donate);
    r.check("mem-sp-donated-page-sent-on", sp_donated_sent_on);
    // Fragmentation and caller-supplied buffers.
    r.check("mem-share-fragmented-300-ranges", || {
        fragmented_send(func::SHARE_64, V1_2)
    });
    r.check("mem-retrieve-fragmented-v1.2", || {
        fragmented(func::SHARE_64, V1_2, 0)
    });
    r.check("mem-frag-tx-refused-keeps-fragments", frag_tx_refused);
    r.check("mem-reclaim-cancels-fragmented-send", reclaim_cancels);
    r.check("mem-frag-tx-unknown-handle", frag_tx_unknown);
    r.check("mem-frag-rx-unknown-handle", frag_rx_unknown);
    r.check("mem-frag-rx-wrong-offset", frag_rx_wrong_offset);
    r.check("mem-frag-rx-rx-full-busy", frag_rx_busy);
    r.check("mem-share-caller-buffer", share_caller_buffer);
    r.check(
        "mem-share-caller-buffer-two-pages",
        share_caller_buffer_long,
    );
    r.check("mem-retrieve-caller-buffer", retrieve_caller_buffer);
    r.check("mem-caller-buffer-secure-refused", caller_buffer_secure);
    r.check(
        "mem-retrieve-caller-buffer-not-own",
        retrieve_buffer_not_own,
    );
    r.check("mem-no-tx-buffer", no_tx_buffer);
    // Buffers and ownership: a page behind a buffer cannot change hands, and
    // buffers go only over memory the caller owns exclusively.
    r.check("mem-share-own-tx-page-denied", || {
        refused_range(ffa::tx_addr(), 1, ffa::DENIED)
    });
    r.check("mem-share-own-rx-page-denied", || {
        refused_range(ffa::rx_addr(), 1, ffa::DENIED)
    });
    r.check("mem-rxtx-map-over-lent-page-denied", rxtx_over_lent);
    r.check(
        "mem-caller-buffer-in-shared-page-denied",
        caller_buffer_shared,
    );
    // Malformed descriptors: INVALID_PARAMETERS, nothing changes.
    r.check("mem-bad-total-length", || {
        malformed(Layout::V1_2, &[SP1], None, |_, _| (40, 40))
    });
    r.check("mem-bad-fragment-length-zero", || {
        malformed(Layout::V1_2, &[SP1], None, |_, t| (t.len(), 0))
    });
    r.check(
        "mem-bad-fragment-longer-than-buffer",
        fragment_longer_than_buffer,
    );
    r.check("mem-bad-fragment-past-total", || {
        malformed(Layout::V1_2, &[SP1], None, |_, t| (t.len(), t.len() + 16))
    });
    r.check("mem-bad-emad-offset", || {
        patched(Layout::V1_2, |b, _| put32(b, off::EMAD_OFFSET, 56))
    });
    r.check("mem-bad-emad-size", || {
        patched(Layout::V1_2, |b, _| put32(b, off::EMAD_SIZE, 24))
    });
    r.check("mem-bad-emad-count-zero", || {
        patched(Layout::V1_2, |b, _| put32(b, off::EMAD_COUNT, 0))
    });
    r.check("mem-bad-header-reserved", || {
        patched(Layout::V1_2, |b, _| b[off::V1_1_RESERVED + 4] = 1)
    });
    r.check("mem-bad-emad16-reserved", || {
        patched(Layout::V1_1_16, |b, t| {
            b[t.emad_offset(0) + off::EMAD16_RESERVED] = 1
        })
    });
    r.check("mem-bad-emad32-reserved", || {
        patched(Layout::V1_2, |b, t| {
            b[t.emad_offset(0) + off::EMAD32_RESERVED] = 1
        })
    });
    r.check("mem-bad-composite-reserved", || {
        patched(Layout::V1_2, |b, t| {
            b[t.composite_offset() + off::COMPOSITE_RESERVED] = 1
        })
    });
    r.check("mem-bad-range-reserved", || {
        patched(Layout::V1_2, |b, t| {
            b[t.range_offset(0) + off::RANGE_RESERVED] = 1
        })
    });
    r.check("mem-bad-composite-offset", || {
        patched(Layout::V1_2, |b, t| {
            put32(b, t.emad_offset(0) + off::EMAD_COMPOSITE, t.len() as u32)
        })
    });
    r.check("mem-bad-composite-offsets-differ", || {
        malformed(Layout::V1_2, &[SP1, SP2], None, |b, t| {
            let other = (t.composite_offset() + 16) as u32;
            put32(b, t.emad_offset(1) + off::EMAD_COMPOSITE, other);
            (t.len(), t.len())
        })
    });
    r.check("mem-bad-ranges-overlap", || {
        with_ranges(|a| [(a, 2), (a + PAGE, 1)], |_, _| {})
    });
    r.check("mem-bad-page-count", || {
        patched(Layout::V1_2, |b, t| {
            put32(b, t.composite_offset() + off::COMPOSITE_PAGES, 2)
        })
    });
    r.check("mem-bad-empty-range", || {
        with_ranges(|a| [(a, 1), (a + 2 * PAGE, 0)], |_, _| {})
    });
    r.check("mem-bad-unaligned-range", || {
        with_ranges(|a| [(a, 1), (a + 2 * PAGE + 8, 1)], |_, _| {})
    });
    r.check("mem-bad-range-overflow", || {
        with_ranges(|a| [(a, 1), (0xFFFF_FFFF_FFFF_F000, 2)], |_, _| {})
    });
    r.check("mem-bad-attributes", || {
        patched(Layout::V1_2, |b, _| {
            put16(b, off::ATTRIBUTES, attr::TYPE_RESERVED | 0xF)
        })
    });
    r.check("mem-bad-permissions", || {
        patched(Layout::V1_2, |b, t| {
            b[t.emad_offset(0) + off::EMAD_PERMS] = 0b11
        })
    });
    r.check("mem-bad-handle-in-send", || {
        patched(Layout::V1_2, |b, _| put64(b, off::HANDLE, 0x1234))
    });
    r.check("mem-bad-reserved-send-flag", || {
        patched_lend(|b, _| put32(b, off::FLAGS, 1 << 5))
    });
    r.check("mem-bad-ranges-past-total", || {
        patched(Layout::V1_2, |b, t| {
            put32(b, t.composite_offset() + off::COMPOSITE_RANGES, 2);
            put32(b, t.composite_offset() + off::COMPOSITE_PAGES, 2);
        })
    });
    r.check("mem-donate-to-several-refused", donate_several);
    // Who sends, to whom.
    r.check("mem-secure-sender-from-normal-world", || {
        refused_send(0x8001, &[SP1], func::SHARE_64, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-unknown-receiver", || {
        refused_send(0, &[0x8123], func::SHARE_64, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-receiver-named-twice", || {
        refused_send(0, &[SP1, SP1], func::SHARE_64, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-normal-world-receiver", || {
        refused_send(0, &[SP1, 0], func::LEND_64, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-receiver-not-reachable-for-vm", || {
        refused_send(2, &[SP1], func::SHARE_64, ffa::DENIED)
    });
    r.check("mem-sp-sender-not-caller", || {
        sp_refused(|g| g.sender = SP2, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-sp-sender-as-receiver", || {
        sp_refused(|g| g.to = [SP1, 0, 0], ffa::INVALID_PARAMETERS)
    });
    // A secure page to a partition and a VM: secure memory never goes to
    // the normal world (docs/memory-sharing.md, "The normal world as a
    // borrower"; mixed borrowers are DENIED too).
    r.check("mem-sp-normal-world-receiver", || {
        sp_refused(|g| g.to = [SP2, 0x0001, 0], ffa::DENIED)
    });
    // Whose memory.
    r.check("mem-secure-memory-from-normal-world", || {
        refused_range(SECURE_PA, 1, ffa::DENIED)
    });
    r.check("mem-device-memory-from-normal-world", || {
        refused_range(MMIO_PA, 1, ffa::DENIED)
    });
    r.check("mem-range-past-normal-world-ram", || {
        refused_range(0xFFFF_F000, 2, ffa::DENIED)
    });
    // Above the RAM QEMU has (-m 2G) but below what a fixed board range
    // took for normal-world RAM: the SPMC manifest's ns-memory says no.
    r.check("mem-range-above-machine-ram", || {
        refused_range(ABOVE_RAM, 1, ffa::DENIED)
    });
    r.check("mem-range-straddling-end-of-ram", || {
        refused_range(ABOVE_RAM - PAGE, 2, ffa::DENIED)
    });
    r.check(
        "mem-caller-buffer-above-machine-ram",
        caller_buffer_above_ram,
    );
    r.check("mem-pages-already-shared", already_shared);
    r.check("mem-pages-overlap-another-transaction", overlap_other);
    r.check("mem-sp-unmapped-ipa", || {
        sp_refused(|g| g.ipa = layout::UNMAPPED_IPA, ffa::DENIED)
    });
    r.check("mem-sp-image-pages", || {
        sp_refused(|g| g.ipa = layout::IMAGE_IPA, ffa::DENIED)
    });
    r.check("mem-sp-more-access-than-it-has", || {
        sp_refused(
            |g| {
                g.kind = sopt::LEND;
                g.perms = perm::RW | perm::X;
            },
            ffa::DENIED,
        )
    });
    r.check("mem-sp-page-already-lent", sp_already_lent);
    r.check("mem-sp-another-partitions-page", || sp_foreign_page(false));
    r.check("mem-sp-borrowed-page", || sp_foreign_page(true));
    // Handles, borrowers and owners.
    r.check("mem-retrieve-unknown-handle", || {
        retrieve_refused_handle(UNKNOWN_HANDLE)
    });
    r.check("mem-retrieve-reclaimed-handle", retrieve_reclaimed);
    r.check("mem-relinquish-unknown-handle", relinquish_unknown);
    r.check("mem-reclaim-unknown-handle", || {
        expect_error(
            &reclaim(UNKNOWN_HANDLE, 0),
            ffa::INVALID_PARAMETERS,
            "reclaim",
        )
    });
    r.check("mem-reclaim-retired-handle", reclaim_retired);
    r.check("mem-retrieve-not-a-borrower", retrieve_not_borrower);
    r.check(
        "mem-retrieve-more-access-than-granted",
        retrieve_more_access,
    );
    r.check("mem-retrieve-wrong-tag", || {
        retrieve_mismatch(|a| a.tag = 0x56, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-retrieve-wrong-type", || {
        retrieve_mismatch(|a| a.flags = flags::TYPE_LEND, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-retrieve-wrong-sender", || {
        retrieve_mismatch(|a| a.owner = SP2, ffa::INVALID_PARAMETERS)
    });
    r.check("mem-relinquish-not-retrieved", relinquish_not_retrieved);
    r.check("mem-relinquish-not-a-borrower", relinquish_not_borrower);
    r.check("mem-reclaim-not-the-owner", reclaim_not_owner);
    r.check("mem-sp-reclaim-not-the-owner", sp_reclaim_not_owner);
    r.check("mem-reclaim-while-retrieved", reclaim_while_retrieved);
    r.check("mem-retrieve-rx-full-busy", retrieve_busy);
    conf::run(r);
    // The normal world as a borrower (before the fault checks below, which
    // spend sp1's spare page and the TPM partition).
    nwb::run(r);
    // A partition that touches memory it may no longer reach gets the
    // stage-2 abort at its own EL1 (docs/architecture.md "Faults").
    r.check("mem-fault-after-lend-injected", fault_after_lend);
    r.check(
        "mem-fault-after-relinquish-injected",
        fault_after_relinquish,
    );
    // Last: the TPM partition lends a page and touches it (it is aborted).
    r.check("mem-lender-loses-access", lender_loses_access);
    r.check("mem-aborted-borrower-lets-go", aborted_borrower);
    r.check("mem-others-run-after", others_after);
    ffa::version(V1_2);
}

/// Version 1.2, the RX/TX buffers mapped (the partition checks leave them
/// mapped; DENIED says they still are) and RX free.
fn setup() {
    ffa::version(V1_2);
    let _ = ffa::map_buffers();
    let _ = call(ffa::RX_RELEASE, &[]);
}

/// The memory-sharing checks of a `legacy` boot, whose normal world
/// negotiated `v` (v1.0 or v1.1) before any other call (FF-A v1.2 §13.2
/// fixes it from then on): sends in that version's layout.
pub fn run_legacy(r: &mut Report, v: u32) {
    let r = &mut Checks(r);
    let _ = ffa::map_buffers();
    let _ = call(ffa::RX_RELEASE, &[]);
    if v == V1_0 {
        r.check("mem-share-v1.0", || {
            trip(func::SHARE_64, V1_0, &[SP2], 1, BY_1_2)
        });
        r.check("mem-share-32-v1.0", || {
            trip(func::SHARE_32, V1_0, &[SP1], 1, BY_1_2)
        });
        r.check("mem-lend-32-v1.0", || {
            trip(func::LEND_32, V1_0, &[SP2], 1, BY_1_2)
        });
        r.check("mem-lend-v1.0", || {
            trip(func::LEND_64, V1_0, &[SP1], 1, BY_1_2)
        });
        r.check("mem-donate-v1.0", || {
            trip(func::DONATE_64, V1_0, &[SP1], 2, BY_1_2)
        });
        r.check("mem-lend-fragmented-v1.0", || {
            fragmented_send(func::LEND_64, V1_0)
        });
        r.check("mem-bad-v1.0-reserved-fields", bad_v1_0_reserved);
        // crash-undef's manifest says v1.0: a v1.0 borrower and sender.
        r.check("mem-retrieve-v1.0-response", || {
            response_layout_by(V1_0, V1_0_SP)
        });
        r.check("mem-retrieve-32-v1.0", || {
            trip(
                func::LEND_64,
                V1_0,
                &[V1_0_SP],
                1,
                By {
                    version: V1_0,
                    smc32: true,
                },
            )
        });
        r.check("mem-retrieve-fragmented-v1.0", || {
            fragmented_by(func::LEND_64, V1_0, V1_0, V1_0_SP)
        });
        r.check("mem-sp-lend-32-v1.0", || {
            sp_trip_from(V1_0_SP, sopt::LEND | sopt::SMC32, sopt::LAYOUT_V1_0, &[SP2])
        });
    }
    if v == V1_1 {
        r.check("mem-share-v1.1", || {
            trip(func::SHARE_64, V1_1, &[SP1], 2, BY_1_2)
        });
        r.check("mem-lend-v1.1", || {
            trip(func::LEND_64, V1_1, &[SP1], 1, BY_1_2)
        });
        r.check("mem-donate-32-v1.1", || {
            trip(func::DONATE_32, V1_1, &[SP2], 1, BY_1_2)
        });
        // crash-steal's manifest says v1.1.
        r.check("mem-retrieve-v1.1-response", || {
            response_layout_by(V1_1, V1_1_SP)
        });
        r.check("mem-retrieve-fragmented-v1.1", || {
            fragmented_by(func::SHARE_64, V1_1, V1_1, V1_1_SP)
        });
        r.check("mem-sp-share-v1.1", || {
            sp_trip_from(V1_1_SP, sopt::SHARE, sopt::LAYOUT_V1_1, &[SP2])
        });
        // The normal world as a borrower at v1.1 (mem/nwb.rs).
        r.check("mem-nwb-lend-32-v1.1", nwb::lend_32_v1_1);
    }
}

/// The partitions whose manifests declare v1.0 and v1.1 (their version is
/// fixed by their boot; they are aborted on purpose in the main boot, so
/// only the `legacy` boots use them).
const V1_0_SP: u16 = test_protocol::ids::CRASH_UNDEF;
const V1_1_SP: u16 = test_protocol::ids::CRASH_STEAL;

// ---- FFA_FEATURES --------------------------------------------------------

fn features(f: u64, bits: u64) -> Outcome {
    let r = call(ffa::FEATURES, &[f, 0]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "FEATURES answer");
    ensure_eq!(r[2] & bits, bits, "w2 properties");
    Ok(())
}

/// FFA_FEATURES with w2 exactly `want` (DEN0077 v1.2 §13.3: from v1.2 the
/// memory-sending ABIs' w2 is reserved, the caller-buffer bit being a
/// v1.0/v1.1 property).
fn features_w2(f: u64, want: u64) -> Outcome {
    let r = call(ffa::FEATURES, &[f, 0]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "FEATURES answer");
    ensure_eq!(r[2], want, "w2 properties");
    Ok(())
}

fn not_features(fs: &[u64]) -> Outcome {
    for f in fs {
        let r = call(ffa::FEATURES, &[*f, 0]);
        if code(&r) != ffa::NOT_SUPPORTED {
            return Err(fail_eq("FEATURES of a borrower ABI", *f, ffa::ERROR_32));
        }
    }
    Ok(())
}

/// FFA_FEATURES from a partition with input properties `input`: SUCCESS
/// with w2 exactly `want`.
fn sp_features(fs: &[u64], input: u64, want: u64) -> Outcome {
    for f in fs {
        let (a, props, _) = sp_call(SP1, ffa::FEATURES, *f, input, 0)?;
        if a != ffa::SUCCESS_32 {
            return Err(fail_eq("FEATURES in the partition (function)", *f, a));
        }
        ensure_eq!(props, want, "w2 properties in the partition");
    }
    Ok(())
}

// ---- Limits ----------------------------------------------------------------

fn limit_transactions() -> Outcome {
    let base = alloc(65)?;
    let to = receivers([SP1], perm::RW);
    let mut handles = [0u64; 65];
    let mut n = 0;
    let mut last = [0u64; 18];
    for (i, h) in handles.iter_mut().enumerate() {
        let ranges = [Range {
            addr: base + i as u64 * PAGE,
            pages: 1,
        }];
        let s = send(func::SHARE_64, &nwd_send(Layout::V1_2, &to, &ranges));
        last = s.r;
        if !success(&s.r) {
            break;
        }
        *h = s.handle;
        n += 1;
    }
    let mut reclaimed = 0;
    for h in &handles[..n] {
        reclaimed += success(&reclaim(*h, 0)) as usize;
    }
    let distinct = (0..n).all(|i| (0..i).all(|j| handles[i] != handles[j]));
    ensure_eq!(n, 64, "shares accepted before the limit");
    expect_error(&last, ffa::NO_MEMORY, "the 65th share")?;
    ensure_eq!(reclaimed, n, "handles under the limit that reclaimed");
    ensure!(distinct, "two transactions got the same handle");
    still_shareable(base + 64 * PAGE, 1)
}

fn limit_pages() -> Outcome {
    // 32769 pages of normal-world RAM below the harness image; on an error
    // nothing is touched.
    let ranges = [Range {
        addr: crate::board::NS_RAM + 0x0800_0000,
        pages: 32769,
    }];
    let to = receivers([SP1], perm::RW);
    let s = send(func::SHARE_64, &nwd_send(Layout::V1_2, &to, &ranges));
    if success(&s.r) {
        undo_send(0, s.handle);
    }
    expect_error(&s.r, ffa::NO_MEMORY, "share of 32769 pages")?;
    still_shareable(alloc(1)?, 1)
}

fn limit_descriptor() -> Outcome {
    // One receiver, 16375 one-page ranges: 96 + 16 * 16375 = 262096 + 96 > 256 KiB.
    let count = (256 * 1024 - 96) / 16 + 1;
    let ranges = Strided {
        base: crate::board::NS_RAM + 0x0800_0000,
        pages: 1,
        stride: PAGE,
        count,
    };
    let to = receivers([SP1], perm::RW);
    let t = nwd_send(Layout::V1_2, &to, &ranges);
    ensure!(t.len() > 256 * 1024, "the descriptor is not past the limit");
    let s = send_upto(func::SHARE_64, &t, 1);
    if s.handle != 0 {
        // Accepted after all: cancel it.
        undo_send(0, s.handle);
    }
    expect_error(
        &s.r,
        ffa::NO_MEMORY,
        "first fragment of a 256 KiB+ descriptor",
    )?;
    still_shareable(alloc(1)?, 1)
}

fn handles_unique() -> Outcome {
    let a = alloc(1)?;
    let to = receivers([SP1], perm::RW);
    let ranges = [Range { addr: a, pages: 1 }];
    let t = nwd_send(Layout::V1_2, &to, &ranges);
    let mut seen = [0u64; 3];
    for h in seen.iter_mut() {
        *h = send_ok(func::SHARE_64, &t)?;
        expect_success(&reclaim(*h, 0), "reclaim")?;
    }
    ensure!(
        seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2],
        "a handle was used again"
    );
    Ok(())
}

// ---- Normal world to partitions --------------------------------------------

/// The permissions a sender gives: read-write, or nothing for a donation
/// (DEN0140: the donor leaves data and instruction access unspecified; the
/// borrower asks for what it needs).
fn send_perms(kind: u32) -> u8 {
    if kind == flags::TYPE_DONATE {
        0
    } else {
        perm::RW
    }
}

/// How a borrower retrieves in `trip`: at which version, with which function.
#[derive(Clone, Copy)]
struct By {
    version: u32,
    smc32: bool,
}

/// Retrieves at 1.2 with FFA_MEM_RETRIEVE_REQ_64.
const BY_1_2: By = By {
    version: V1_2,
    smc32: false,
};

/// The normal world at `version` sends `pages` pages (filled with SEED_A)
/// with `f` to every partition of `to`; each retrieves (as `by` says) and
/// sees the data; for share and lend the first
/// writes SEED_B and the harness and the others see it, each relinquishes
/// and the harness reclaims and can share the pages again; for donate the
/// handle is retired and the pages are no longer the normal world's.
fn trip(f: u64, version: u32, to: &[u16], pages: u32, by: By) -> Outcome {
    let bytes = pages as u64 * PAGE;
    let addr = alloc(pages as u64)?;
    fill(addr, bytes, SEED_A);
    let kind = kind_flags(f);
    let mut rx = [Receiver::new(0, 0); 3];
    for (d, id) in rx.iter_mut().zip(to) {
        *d = Receiver::new(*id, send_perms(kind));
    }
    let rx = &rx[..to.len()];
    let ranges = [Range { addr, pages }];
    let t = nwd_send(layout_of(version), rx, &ranges);
    let h = at_version(version, || send_ok(f, &t))?;
    let v = by.version;
    guarded(h, 0, to, || {
        for id in to {
            let mut a = Ask::new(h, 0, kind);
            if v != V1_2 {
                a.version = v;
            }
            if by.smc32 {
                a.opts |= ropt::SMC32;
            }
            let g = retrieve(*id, &a)?;
            check_got_ns(&g, addr, pages, v)?;
            ensure_eq!(
                sp_differ(*id, addr, bytes, SEED_A)?,
                0,
                "words a borrower sees unlike what the harness wrote"
            );
        }
        if kind == flags::TYPE_DONATE {
            expect_error(
                &reclaim(h, 0),
                ffa::INVALID_PARAMETERS,
                "reclaim of a donated handle",
            )?;
            let again = receivers([SP2], perm::RW);
            let s = send(func::SHARE_64, &nwd_send(boot_layout(), &again, &ranges));
            if success(&s.r) {
                undo_send(0, s.handle);
            }
            return expect_error(&s.r, ffa::DENIED, "share of memory the harness donated");
        }
        sp_fill(to[0], addr, bytes, SEED_B)?;
        ensure_eq!(
            differ(addr, bytes, Some(SEED_B)),
            0,
            "words the harness sees unlike what the borrower wrote"
        );
        for id in &to[1..] {
            ensure_eq!(
                sp_differ(*id, addr, bytes, SEED_B)?,
                0,
                "words another borrower sees unlike what the first wrote"
            );
        }
        for id in to {
            relinquish_ok(*id, h)?;
        }
        expect_success(&reclaim(h, 0), "reclaim")?;
        still_shareable(addr, pages)
    })
}

fn share_emad16() -> Outcome {
    let addr = alloc(1)?;
    fill(addr, PAGE, SEED_A);
    let to = receivers([SP2], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let h = send_ok(func::SHARE_64, &nwd_send(Layout::V1_1_16, &to, &ranges))?;
    guarded(h, 0, &[SP2], || {
        let g = retrieve(SP2, &Ask::new(h, 0, flags::TYPE_SHARE))?;
        check_got_ns(&g, addr, 1, V1_2)?;
        ensure_eq!(sp_differ(SP2, addr, PAGE, SEED_A)?, 0, "borrower's view");
        relinquish_ok(SP2, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

fn share_several_ranges() -> Outcome {
    let base = alloc(8)?;
    let want = [(base, 2u32), (base + 3 * PAGE, 1), (base + 5 * PAGE, 3)];
    let ranges = want.map(|(addr, pages)| Range { addr, pages });
    fill(base, 8 * PAGE, SEED_A);
    let to = receivers([SP1], perm::RW);
    let h = send_ok(func::SHARE_64, &nwd_send(Layout::V1_2, &to, &List(&ranges)))?;
    guarded(h, 0, &[SP1], || {
        let g = retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?;
        check_got_ns(&g, base, 6, V1_2)?;
        ensure_eq!(info(SP1)?.ranges, 3, "constituents in the response");
        for (i, (addr, pages)) in want.iter().enumerate() {
            let [a, p, sum, count] = range(SP1, i as u64)?;
            ensure_eq!(a, *addr, "constituent address");
            ensure_eq!(p, *pages, "constituent pages");
            ensure_eq!(sum, 6, "pages of all constituents");
            ensure_eq!(count, 3, "range count");
            let seed = SEED_A + (addr - base) / 8;
            ensure_eq!(
                sp_differ(SP1, *addr, *pages as u64 * PAGE, seed)?,
                0,
                "borrower's view of a constituent"
            );
        }
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// Shares one page (SEED_A) with `sp` and returns (address, handle).
fn share_one(to: u16, perms: u8, tag: u64) -> R<(u64, u64)> {
    let addr = alloc(1)?;
    fill(addr, PAGE, SEED_A);
    let rx = receivers([to], perms);
    let ranges = [Range { addr, pages: 1 }];
    let mut t = nwd_send(boot_layout(), &rx, &ranges);
    t.tag = tag;
    Ok((addr, send_ok(func::SHARE_64, &t)?))
}

/// Lends one page (SEED_A) to `sp` read-write with send flags `fl`.
fn lend_one(to: u16, fl: u32) -> R<(u64, u64)> {
    let addr = alloc(1)?;
    fill(addr, PAGE, SEED_A);
    let rx = receivers([to], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let mut t = nwd_send(Layout::V1_2, &rx, &ranges);
    t.flags = fl;
    Ok((addr, send_ok(func::LEND_64, &t)?))
}

/// The normal world shares a page tagged 0x77 with sp1, which retrieves at
/// `v`; the response has the v1.0 or v1.1+ layout with the right EMAD size,
/// the handle, sender, type and tag, zero reserved fields and the NS bit
/// (v1.1+).
fn response_layout(v: u32) -> Outcome {
    response_layout_by(v, SP1)
}

/// `response_layout` with partition `sp` (at version `v`) retrieving.
fn response_layout_by(v: u32, sp: u16) -> Outcome {
    let (addr, h) = share_one(sp, perm::RW, 0x77)?;
    guarded(h, 0, &[sp], || {
        let mut a = Ask::new(h, 0, flags::TYPE_SHARE);
        a.tag = 0x77;
        a.version = if v == V1_2 { 0 } else { v };
        let g = retrieve(sp, &a)?;
        check_got_ns(&g, addr, 1, v)?;
        let i = info(sp)?;
        let (emad, min) = match v {
            V1_0 => (16, 32 + 16 + 16 + 16),
            V1_1 => (16, 48 + 16 + 16 + 16),
            _ => (32, 48 + 32 + 16 + 16),
        };
        ensure_eq!(i.emad_size, emad, "EMAD size of the response");
        ensure_eq!(i.handle, h, "handle in the response");
        ensure_eq!(i.sender, 0, "sender in the response");
        ensure_eq!(i.emad_count, 1, "EMADs in the response");
        ensure_eq!(
            i.flags & flags::TYPE_MASK,
            flags::TYPE_SHARE,
            "type in the response"
        );
        ensure_eq!(i.tag, 0x77, "tag in the response");
        ensure_eq!(i.ranges, 1, "constituents");
        ensure!(
            i.reserved_zero,
            "a reserved field of the response is not zero"
        );
        ensure!(g.total >= min, "the response is shorter than its parts");
        ensure_eq!(g.first_len, g.total, "fragment length of a short response");
        relinquish_ok(sp, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

fn retrieve_emad16() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        let mut a = Ask::new(h, 0, flags::TYPE_SHARE);
        a.emad_size = 16;
        check_got_ns(&retrieve(SP1, &a)?, addr, 1, V1_2)?;
        ensure_eq!(info(SP1)?.emad_size, 32, "EMAD size of a v1.2 response");
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

fn retrieve_narrower() -> Outcome {
    let (addr, h) = lend_one(SP1, 0)?;
    guarded(h, 0, &[SP1], || {
        let mut a = Ask::new(h, 0, flags::TYPE_LEND);
        a.perms = perm::RO;
        let g = retrieve(SP1, &a)?;
        g.ok()?;
        ensure_eq!(g.perms & perm::DATA_MASK, perm::RO, "data access granted");
        ensure_eq!(sp_differ(SP1, addr, PAGE, SEED_A)?, 0, "borrower's view");
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

fn share_not_executable() -> Outcome {
    let addr = alloc(1)?;
    let to = receivers([SP1, SP2], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let h = send_ok(func::SHARE_64, &nwd_send(Layout::V1_2, &to, &ranges))?;
    guarded(h, 0, &[SP1, SP2], || {
        let mut a = Ask::new(h, 0, flags::TYPE_SHARE);
        a.perms = perm::RW | perm::X;
        // The borrower of a share leaves the instruction access "not
        // specified" (DEN0140 §1.11): asking X is INVALID_PARAMETERS.
        expect_answer_error(
            retrieve(SP2, &a)?.answer,
            ffa::INVALID_PARAMETERS,
            "retrieve asking X",
        )?;
        check_got_ns(
            &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?,
            addr,
            1,
            V1_2,
        )?;
        // The refused retrieve changed nothing: sp2 may still retrieve.
        check_got_ns(
            &retrieve(SP2, &Ask::new(h, 0, flags::TYPE_SHARE))?,
            addr,
            1,
            V1_2,
        )?;
        relinquish_ok(SP1, h)?;
        relinquish_ok(SP2, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// The harness, acting for VM `vm`, shares a page with `to` (which `vm`
/// may reach): the descriptor names the VM as sender, the partition
/// retrieves from that owner, the harness reclaims.
fn share_for_vm(vm: u16, to: u16) -> Outcome {
    let addr = alloc(1)?;
    fill(addr, PAGE, SEED_C);
    let rx = receivers([to], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let t = Transaction::send(Layout::V1_2, vm, &rx, &ranges);
    let h = send_ok(func::SHARE_64, &t)?;
    guarded(h, 0, &[to], || {
        let g = retrieve(to, &Ask::new(h, vm, flags::TYPE_SHARE))?;
        check_got_ns(&g, addr, 1, V1_2)?;
        ensure_eq!(info(to)?.sender, vm, "sender in the response");
        ensure_eq!(sp_differ(to, addr, PAGE, SEED_C)?, 0, "borrower's view");
        relinquish_ok(to, h)?;
        expect_success(&reclaim(h, 0), "reclaim by the normal world")
    })
}

// ---- Zeroing ---------------------------------------------------------------

fn lend_zero_flag() -> Outcome {
    let (addr, h) = lend_one(SP1, flags::ZERO)?;
    guarded(h, 0, &[SP1], || {
        retrieve(SP1, &Ask::new(h, 0, flags::TYPE_LEND))?.ok()?;
        ensure_eq!(
            sp_nonzero(SP1, addr, PAGE)?,
            0,
            "non-zero words the borrower sees"
        );
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

fn retrieve_zero_before() -> Outcome {
    let (addr, h) = lend_one(SP1, 0)?;
    guarded(h, 0, &[SP1], || {
        let a = Ask::new(h, 0, flags::TYPE_LEND | flags::ZERO);
        retrieve(SP1, &a)?.ok()?;
        ensure_eq!(
            sp_nonzero(SP1, addr, PAGE)?,
            0,
            "non-zero words the borrower sees"
        );
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// Lends a page to sp1, which retrieves with `rflags`, writes SEED_B and
/// relinquishes with `relinquish_flags`; the harness reclaims with
/// `reclaim_flags` and finds the page zeroed.
fn zeroed_after(rflags: u32, relinquish_flags: u32, reclaim_flags: u32) -> Outcome {
    let (addr, h) = lend_one(SP1, 0)?;
    guarded(h, 0, &[SP1], || {
        retrieve(SP1, &Ask::new(h, 0, flags::TYPE_LEND | rflags))?.ok()?;
        sp_fill(SP1, addr, PAGE, SEED_B)?;
        expect_answer(
            relinquish(SP1, h, relinquish_flags)?,
            ffa::SUCCESS_32,
            "relinquish",
        )?;
        expect_success(&reclaim(h, reclaim_flags), "reclaim")?;
        ensure_eq!(differ(addr, PAGE, None), 0, "non-zero words after reclaim");
        Ok(())
    })
}

fn retrieve_zero_after() -> Outcome {
    zeroed_after(flags::ZERO_AFTER_RELINQUISH, 0, 0)
}

fn relinquish_zero() -> Outcome {
    zeroed_after(0, flags::ZERO, 0)
}

fn reclaim_zero() -> Outcome {
    zeroed_after(0, 0, flags::ZERO)
}

fn share_zero_refused() -> Outcome {
    let addr = alloc(1)?;
    let to = receivers([SP1], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let mut t = nwd_send(Layout::V1_2, &to, &ranges);
    t.flags = flags::ZERO;
    let s = send(func::SHARE_64, &t);
    if success(&s.r) {
        undo_send(0, s.handle);
    }
    expect_error(&s.r, ffa::INVALID_PARAMETERS, "share with the zero flag")?;
    still_shareable(addr, 1)
}

fn retrieve_zero_on_share() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        let a = Ask::new(h, 0, flags::TYPE_SHARE | flags::ZERO);
        expect_answer_error(
            retrieve(SP1, &a)?.answer,
            ffa::INVALID_PARAMETERS,
            "retrieve of a share with the zero flag",
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

// ---- Partition to partition -----------------------------------------------

/// The retrieve flags of a MEM_SEND kind.
fn sp_kind_flags(kind: u64) -> u32 {
    match kind & 3 {
        sopt::SHARE => flags::TYPE_SHARE,
        sopt::LEND => flags::TYPE_LEND,
        _ => flags::TYPE_DONATE,
    }
}

/// Checks what a borrower reported for one page of secure memory.
fn check_got_secure(g: &Got) -> R<u64> {
    g.ok()?;
    ensure_eq!(g.pages, 1, "page count in the response");
    ensure_eq!(g.attrs & attr::NS, 0, "NS bit for secure memory");
    ensure_eq!(g.perms & perm::DATA_MASK, perm::RW, "data access granted");
    ensure!(
        g.addr.is_multiple_of(PAGE) && g.addr != 0 && g.addr < 0x4000_0000,
        "the address is not a secure page"
    );
    Ok(g.addr)
}

/// sp1 fills one of its pages (SEED_C) and sends it with `kind` in
/// `layout` to `to`; each retrieves it (secure memory at IPA = PA) and sees
/// SEED_C; the last writes SEED_D, which the others see (and the owner,
/// for a share); all relinquish; sp1 reclaims and sees SEED_D.
fn sp_trip(kind: u64, layout: u64, to: &[u16]) -> Outcome {
    sp_trip_from(SP1, kind, layout, to)
}

/// `sp_trip` with partition `from` sending.
fn sp_trip_from(from: u16, kind: u64, layout: u64, to: &[u16]) -> Outcome {
    let p = sp_page(from)?;
    sp_fill(from, p, PAGE, SEED_C)?;
    let mut g = Give::new(p, kind, to);
    g.layout = layout;
    let h = sp_send_ok(from, &g)?;
    let fl = sp_kind_flags(kind);
    guarded(h, from, to, || {
        let mut pa = 0;
        for id in to {
            pa = check_got_secure(&retrieve(*id, &Ask::new(h, from, fl))?)?;
            ensure_eq!(info(*id)?.sender, from, "sender in the response");
            ensure_eq!(sp_differ(*id, pa, PAGE, SEED_C)?, 0, "borrower's view");
        }
        let last = to[to.len() - 1];
        sp_fill(last, pa, PAGE, SEED_D)?;
        for id in &to[..to.len() - 1] {
            ensure_eq!(
                sp_differ(*id, pa, PAGE, SEED_D)?,
                0,
                "another borrower's view"
            );
        }
        if kind & 3 == sopt::SHARE {
            ensure_eq!(
                sp_differ(from, p, PAGE, SEED_D)?,
                0,
                "the owner's view while shared"
            );
        }
        for id in to {
            relinquish_ok(*id, h)?;
        }
        sp_reclaim_ok(from, h)?;
        ensure_eq!(
            sp_differ(from, p, PAGE, SEED_D)?,
            0,
            "the owner's view after reclaim"
        );
        Ok(())
    })
}

/// Where sp1's donated page is (its PA: sp2's IPA), for the next check.
static DONATED: AtomicU64 = AtomicU64::new(0);

fn sp_donate() -> Outcome {
    let p = sp_page(SP1)?;
    sp_fill(SP1, p, PAGE, SEED_C)?;
    let mut g = Give::new(p, sopt::DONATE, &[SP2]);
    g.perms = 0;
    let h = sp_send_ok(SP1, &g)?;
    guarded(h, SP1, &[SP2], || {
        let pa = check_got_secure(&retrieve(SP2, &Ask::new(h, SP1, flags::TYPE_DONATE))?)?;
        DONATED.store(pa, Ordering::Relaxed);
        ensure_eq!(sp_differ(SP2, pa, PAGE, SEED_C)?, 0, "new owner's view");
        let (a, e) = sp_reclaim(SP1, h, 0)?;
        ensure_eq!(a, ffa::ERROR_32, "reclaim of a donated handle");
        ensure_eq!(e as u32 as i32, ffa::INVALID_PARAMETERS, "its error");
        // sp1 no longer owns the page.
        let (a, _, _) = sp_send(SP1, &Give::new(p, sopt::SHARE, &[TPM]))?;
        expect_answer_error(a, ffa::DENIED, "sp1 sharing the page it donated")
    })
}

fn sp_donated_sent_on() -> Outcome {
    let pa = DONATED.load(Ordering::Relaxed);
    ensure!(pa != 0, "the donation before did not happen");
    sp_fill(SP2, pa, PAGE, SEED_D)?;
    let h = sp_send_ok(SP2, &Give::new(pa, sopt::SHARE, &[SP1]))?;
    guarded(h, SP2, &[SP1], || {
        let g = retrieve(SP1, &Ask::new(h, SP2, flags::TYPE_SHARE))?;
        ensure_eq!(check_got_secure(&g)?, pa, "address sp1 retrieves");
        ensure_eq!(sp_differ(SP1, pa, PAGE, SEED_D)?, 0, "sp1's view");
        relinquish_ok(SP1, h)?;
        sp_reclaim_ok(SP2, h)
    })
}

// ---- Fragmentation and buffers ---------------------------------------------

/// 300 one-page ranges, every other page of 600 fresh ones, filled with
/// the arena-wide fill of SEED_A (page k holds SEED_A + 512 k + i).
fn three_hundred() -> R<Strided> {
    let base = alloc(600)?;
    fill(base, 600 * PAGE, SEED_A);
    Ok(Strided {
        base,
        pages: 1,
        stride: 2 * PAGE,
        count: 300,
    })
}

/// Checks a borrower's fragmented retrieve of `ranges`.
fn check_three_hundred(sp: u16, g: &Got, ranges: &Strided, v: u32) -> R<()> {
    check_got_ns(g, ranges.base, 300, v)?;
    ensure!(g.fragments >= 2, "the response came in one fragment");
    ensure!(g.total > 4096, "the response is not longer than RX");
    ensure_eq!(info(sp)?.ranges, 300, "constituents the borrower read");
    let last = ranges.get(299);
    let [a, p, sum, count] = range(sp, 299)?;
    ensure_eq!(a, last.addr, "last constituent address");
    ensure_eq!(p, 1, "last constituent pages");
    ensure_eq!(sum, 300, "pages of all constituents");
    ensure_eq!(count, 300, "range count");
    for r in [ranges.get(0), ranges.get(150), last] {
        let seed = SEED_A + (r.addr - ranges.base) / 8;
        ensure_eq!(
            sp_differ(sp, r.addr, PAGE, seed)?,
            0,
            "borrower's view of a constituent"
        );
    }
    Ok(())
}

/// The normal world at `version` sends 300 one-page ranges with `f` (two
/// fragments, FFA_MEM_FRAG_TX); sp1 retrieves at `sp_v` (0: 1.2) and reads
/// the response in fragments (FFA_MEM_FRAG_RX).
fn fragmented(f: u64, version: u32, sp_v: u32) -> Outcome {
    fragmented_by(f, version, sp_v, SP1)
}

/// `fragmented` with partition `sp` retrieving.
fn fragmented_by(f: u64, version: u32, sp_v: u32, sp: u16) -> Outcome {
    let ranges = three_hundred()?;
    let to = receivers([sp], perm::RW);
    let t = nwd_send(layout_of(version), &to, &ranges);
    let s = at_version(version, || send(f, &t));
    expect_success(&s.r, "send answer")?;
    guarded(s.handle, 0, &[sp], || {
        ensure_eq!(s.fragments, 2, "fragments sent");
        ensure!(
            s.frag_rx_ok,
            "FFA_MEM_FRAG_RX named another handle or offset"
        );
        let mut a = Ask::new(s.handle, 0, kind_flags(f));
        a.version = sp_v;
        let g = retrieve(sp, &a)?;
        let v = if sp_v == 0 { V1_2 } else { sp_v };
        check_three_hundred(sp, &g, &ranges, v)?;
        relinquish_ok(sp, s.handle)?;
        expect_success(&reclaim(s.handle, 0), "reclaim")
    })
}

/// The page at `addr` is in a transaction: sharing it is DENIED.
fn in_transaction(addr: u64) -> R<()> {
    let to = receivers([SP2], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let s = send(func::SHARE_64, &nwd_send(boot_layout(), &to, &ranges));
    if success(&s.r) {
        undo_send(0, s.handle);
    }
    expect_error(&s.r, ffa::DENIED, "share of a page the transaction holds")
}

/// The first and the last constituent of `ranges` are held by a
/// transaction (so both fragments were taken), then `h` reclaims and every
/// page is free again.
fn held_then_reclaimed(h: u64, t: &Transaction<'_>, ranges: &Strided) -> R<()> {
    in_transaction(ranges.get(0).addr)?;
    in_transaction(ranges.get(ranges.count - 1).addr)?;
    expect_success(&reclaim(h, 0), "reclaim")?;
    let h = send_ok(func::SHARE_64, t)?;
    expect_success(&reclaim(h, 0), "reclaim of the same pages shared again")
}

/// The normal world at `version` sends 300 one-page ranges with `f` in two
/// fragments: FFA_MEM_FRAG_RX names the handle and the bytes received,
/// FFA_MEM_FRAG_TX ends in FFA_SUCCESS with that handle, and both
/// fragments' pages are held.
fn fragmented_send(f: u64, version: u32) -> Outcome {
    let ranges = three_hundred()?;
    let to = receivers([SP1], perm::RW);
    let t = nwd_send(layout_of(version), &to, &ranges);
    let s = at_version(version, || send(f, &t));
    expect_success(&s.r, "send answer")?;
    guarded(s.handle, 0, &[], || {
        ensure_eq!(s.fragments, 2, "fragments sent");
        ensure!(
            s.frag_rx_ok,
            "FFA_MEM_FRAG_RX named another handle or offset"
        );
        let again = nwd_send(boot_layout(), &to, &ranges);
        held_then_reclaimed(s.handle, &again, &ranges)
    })
}

/// Sends the first fragment of 300 ranges to sp1: (transaction lengths, handle).
fn first_fragment(t: &Transaction<'_>) -> R<u64> {
    let first = t.fragment_len(0, TX_SIZE);
    part_to_tx(t, 0, first);
    let r = send_raw(func::SHARE_64, t.len() as u64, first as u64, 0, 0);
    expect_answer(w0(&r), func::FRAG_RX, "answer to the first fragment")?;
    ensure_eq!(w(&r, 3), first, "bytes received so far");
    Ok(w(&r, 1) | w(&r, 2) << 32)
}

fn frag_tx_refused() -> Outcome {
    let ranges = three_hundred()?;
    let to = receivers([SP1], perm::RW);
    let t = nwd_send(Layout::V1_2, &to, &ranges);
    let h = first_fragment(&t)?;
    guarded(h, 0, &[SP1], || {
        let first = t.fragment_len(0, TX_SIZE);
        let rest = t.fragment_len(first, TX_SIZE);
        part_to_tx(&t, first, rest);
        // One constituent more than the descriptor has left.
        let r = call(
            func::FRAG_TX,
            &[h & 0xFFFF_FFFF, h >> 32, rest as u64 + 16, 0],
        );
        expect_error(&r, ffa::INVALID_PARAMETERS, "fragment past the total")?;
        let r = call(func::FRAG_TX, &[h & 0xFFFF_FFFF, h >> 32, rest as u64, 0]);
        expect_success(&r, "the right fragment afterwards")?;
        ensure_eq!(handle_of(&r), h, "handle");
        held_then_reclaimed(h, &t, &ranges)
    })
}

fn reclaim_cancels() -> Outcome {
    let ranges = three_hundred()?;
    let to = receivers([SP1], perm::RW);
    let t = nwd_send(Layout::V1_2, &to, &ranges);
    let h = first_fragment(&t)?;
    expect_success(&reclaim(h, 0), "reclaim of a send being fragmented")?;
    let first = t.fragment_len(0, TX_SIZE);
    let rest = t.fragment_len(first, TX_SIZE);
    part_to_tx(&t, first, rest);
    let r = call(func::FRAG_TX, &[h & 0xFFFF_FFFF, h >> 32, rest as u64, 0]);
    if success(&r) {
        undo_send(0, h);
    }
    expect_error(&r, ffa::INVALID_PARAMETERS, "FRAG_TX of the cancelled send")?;
    // Every page is free again.
    let h = send_ok(func::SHARE_64, &t)?;
    expect_success(&reclaim(h, 0), "reclaim of the send made again")
}

fn frag_tx_unknown() -> Outcome {
    let r = call(
        func::FRAG_TX,
        &[UNKNOWN_HANDLE & 0xFFFF_FFFF, UNKNOWN_HANDLE >> 32, 16, 0],
    );
    expect_error(&r, ffa::INVALID_PARAMETERS, "FRAG_TX")?;
    still_shareable(alloc(1)?, 1)
}

fn frag_rx_unknown() -> Outcome {
    let (a, e, _) = sp_call(
        SP1,
        func::FRAG_RX,
        UNKNOWN_HANDLE & 0xFFFF_FFFF,
        UNKNOWN_HANDLE >> 32,
        0,
    )?;
    ensure_eq!(a, ffa::ERROR_32, "FRAG_RX in the partition");
    ensure_eq!(e as u32 as i32, ffa::INVALID_PARAMETERS, "its error");
    alive(SP1)
}

/// Shares 300 ranges with sp1, which retrieves only the first fragment
/// (with `opts`); returns (ranges, handle, first fragment length, total).
fn half_retrieved(opts: u64) -> R<(Strided, u64, u64, u64)> {
    let ranges = three_hundred()?;
    let to = receivers([SP1], perm::RW);
    let h = send_ok(func::SHARE_64, &nwd_send(Layout::V1_2, &to, &ranges))?;
    let mut a = Ask::new(h, 0, flags::TYPE_SHARE);
    a.opts = opts;
    match retrieve(SP1, &a).and_then(|g| g.ok().copied()) {
        Ok(g) => Ok((ranges, h, g.first_len as u64, g.total as u64)),
        Err(e) => {
            cleanup(h, 0, &[SP1]);
            Err(e)
        }
    }
}

/// sp1 reads the rest of a response from `offset` with raw FFA_MEM_FRAG_RX
/// calls (releasing RX after each).
fn read_rest(h: u64, mut offset: u64, total: u64) -> R<()> {
    let mut n = 0;
    while offset < total && n < 64 {
        let (a, _, len) = sp_call(SP1, func::FRAG_RX, h & 0xFFFF_FFFF, h >> 32, offset)?;
        expect_answer(a, func::FRAG_TX, "FRAG_RX answer")?;
        let (r, ..) = sp_call(SP1, ffa::RX_RELEASE, 0, 0, 0)?;
        expect_answer(r, ffa::SUCCESS_32, "RX_RELEASE in the partition")?;
        ensure!(len as u32 != 0, "an empty fragment");
        offset += len as u32 as u64;
        n += 1;
    }
    ensure_eq!(offset, total, "bytes of the response read");
    Ok(())
}

fn frag_rx_wrong_offset() -> Outcome {
    let (_, h, first, total) = half_retrieved(ropt::FIRST_FRAGMENT)?;
    guarded(h, 0, &[SP1], || {
        let (a, e, _) = sp_call(SP1, func::FRAG_RX, h & 0xFFFF_FFFF, h >> 32, first + 16)?;
        ensure_eq!(a, ffa::ERROR_32, "FRAG_RX at the wrong offset");
        ensure_eq!(e as u32 as i32, ffa::INVALID_PARAMETERS, "its error");
        read_rest(h, first, total)?;
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

fn frag_rx_busy() -> Outcome {
    let (_, h, first, total) = half_retrieved(ropt::KEEP_RX)?;
    guarded(h, 0, &[SP1], || {
        let (a, e, _) = sp_call(SP1, func::FRAG_RX, h & 0xFFFF_FFFF, h >> 32, first)?;
        let (r, ..) = sp_call(SP1, ffa::RX_RELEASE, 0, 0, 0)?;
        ensure_eq!(a, ffa::ERROR_32, "FRAG_RX while RX is full");
        ensure_eq!(e as u32 as i32, ffa::BUSY, "its error");
        expect_answer(r, ffa::SUCCESS_32, "RX_RELEASE in the partition")?;
        read_rest(h, first, total)?;
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// Writes the whole of `t` to arena memory at `addr`.
pub(crate) fn to_memory(t: &Transaction<'_>, addr: u64) {
    let mut chunk = [0u8; 512];
    let mut at = 0;
    while at < t.len() {
        let n = t.write_part(at, &mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        for (i, b) in chunk[..n].iter().enumerate() {
            let p = (addr as *mut u8).wrapping_add(at + i);
            // SAFETY: `addr` is arena memory from `alloc` (see kit::fill),
            // large enough for `t` (the caller's choice).
            unsafe { p.write_volatile(*b) };
        }
        at += n;
    }
}

/// The first address past the normal world's RAM (QEMU `-m 2G` from 1 GiB:
/// the SPMC manifest's ns-memory node).
const ABOVE_RAM: u64 = crate::board::RAM_END;

/// A descriptor "in" a buffer where no memory is: refused before the SPMC
/// reads it (it would take an external abort there), and the SPMC goes on.
fn caller_buffer_above_ram() -> Outcome {
    let r = send_raw(func::SHARE_64, 0x100, 0x100, ABOVE_RAM, 1);
    expect_error(&r, ffa::INVALID_PARAMETERS, "share from a buffer above RAM")?;
    let r = send_raw(func::SHARE_64, 0x100, 0x100, ABOVE_RAM - PAGE, 2);
    expect_error(
        &r,
        ffa::INVALID_PARAMETERS,
        "share from a buffer straddling the end of RAM",
    )?;
    still_shareable(alloc(1)?, 1)
}

fn share_caller_buffer() -> Outcome {
    let addr = alloc(1)?;
    fill(addr, PAGE, SEED_A);
    let buf = alloc(1)?;
    let to = receivers([SP1], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let t = nwd_send(Layout::V1_2, &to, &ranges);
    to_memory(&t, buf);
    // TX holds something else: the SPMC must read the buffer.
    ffa::tx_write(0, &[0xFF; 64]);
    let len = t.len() as u64;
    let r = send_raw(func::SHARE_64, len, len, buf, 1);
    expect_success(&r, "share from a one-page buffer")?;
    let h = handle_of(&r);
    guarded(h, 0, &[SP1], || {
        check_got_ns(
            &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?,
            addr,
            1,
            V1_2,
        )?;
        ensure_eq!(sp_differ(SP1, addr, PAGE, SEED_A)?, 0, "borrower's view");
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// A descriptor longer than TX, whole in a two-page buffer: one call, no
/// fragments, every constituent taken.
fn share_caller_buffer_long() -> Outcome {
    let ranges = three_hundred()?;
    let buf = alloc(2)?;
    let to = receivers([SP1], perm::RW);
    let t = nwd_send(Layout::V1_2, &to, &ranges);
    to_memory(&t, buf);
    let len = t.len() as u64;
    let r = send_raw(func::SHARE_64, len, len, buf, 2);
    expect_success(&r, "share from a two-page buffer")?;
    let h = handle_of(&r);
    guarded(h, 0, &[], || held_then_reclaimed(h, &t, &ranges))
}

fn retrieve_caller_buffer() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        let mut a = Ask::new(h, 0, flags::TYPE_SHARE);
        a.buffer = ropt::BUF_OWN_PAGE;
        check_got_ns(&retrieve(SP1, &a)?, addr, 1, V1_2)?;
        ensure_eq!(sp_differ(SP1, addr, PAGE, SEED_A)?, 0, "borrower's view");
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

fn caller_buffer_secure() -> Outcome {
    let addr = alloc(1)?;
    let to = receivers([SP1], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let t = nwd_send(Layout::V1_2, &to, &ranges);
    part_to_tx(&t, 0, t.len());
    let len = t.len() as u64;
    let r = send_raw(func::SHARE_64, len, len, SECURE_PA, 1);
    if success(&r) {
        undo_send(0, handle_of(&r));
    }
    expect_error(&r, ffa::INVALID_PARAMETERS, "share from a secure buffer")?;
    still_shareable(addr, 1)
}

fn retrieve_buffer_not_own() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        let mut a = Ask::new(h, 0, flags::TYPE_SHARE);
        a.buffer = ropt::BUF_NOT_OURS;
        expect_answer_error(
            retrieve(SP1, &a)?.answer,
            ffa::INVALID_PARAMETERS,
            "retrieve into a buffer that is not the partition's",
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

fn no_tx_buffer() -> Outcome {
    let addr = alloc(1)?;
    let to = receivers([SP1], perm::RW);
    let ranges = [Range { addr, pages: 1 }];
    let t = nwd_send(Layout::V1_2, &to, &ranges);
    part_to_tx(&t, 0, t.len());
    let unmap = call(ffa::RXTX_UNMAP, &[0]);
    let len = t.len() as u64;
    let r = send_raw(func::SHARE_64, len, len, 0, 0);
    let map = ffa::map_buffers();
    if success(&r) {
        undo_send(0, handle_of(&r));
    }
    expect_success(&unmap, "RXTX_UNMAP")?;
    expect_success(&map, "RXTX_MAP again")?;
    expect_error(&r, ffa::INVALID_PARAMETERS, "share without a TX buffer")?;
    still_shareable(addr, 1)
}

/// The harness lends a page to sp1, which retrieves it; RXTX_MAP with RX over
/// that page is DENIED (it is sp1's to use now), and works again once the
/// page is back.
fn rxtx_over_lent() -> Outcome {
    let (addr, h) = lend_one(SP1, 0)?;
    guarded(h, 0, &[SP1], || {
        check_got_ns(
            &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_LEND))?,
            addr,
            1,
            V1_2,
        )?;
        let unmap = call(ffa::RXTX_UNMAP, &[0]);
        let r = call(ffa::RXTX_MAP_64, &[ffa::tx_addr(), addr, 1]);
        if success(&r) {
            let _ = call(ffa::RXTX_UNMAP, &[0]);
        }
        let map = ffa::map_buffers();
        expect_success(&unmap, "RXTX_UNMAP")?;
        expect_success(&map, "RXTX_MAP of the harness's own buffers")?;
        expect_error(&r, ffa::DENIED, "RXTX_MAP with RX over the lent page")?;
        ensure_eq!(sp_differ(SP1, addr, PAGE, SEED_A)?, 0, "borrower's view");
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// A send whose caller-supplied buffer is a page shared with sp1: DENIED
/// (the SPMC would keep that address for the next fragments).
fn caller_buffer_shared() -> Outcome {
    let (buf, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[], || {
        let addr = alloc(1)?;
        let to = receivers([SP2], perm::RW);
        let ranges = [Range { addr, pages: 1 }];
        let t = nwd_send(Layout::V1_2, &to, &ranges);
        to_memory(&t, buf);
        let len = t.len() as u64;
        let r = send_raw(func::SHARE_64, len, 64, buf, 1);
        if r[0] == func::FRAG_RX {
            let _ = reclaim(r[1] | r[2] << 32, 0);
        } else if success(&r) {
            let _ = reclaim(handle_of(&r), 0);
        }
        expect_error(&r, ffa::DENIED, "send from a buffer in shared memory")?;
        expect_success(&reclaim(h, 0), "reclaim")?;
        still_shareable(addr, 1)
    })
}

// ---- Malformed descriptors -------------------------------------------------

/// Writes a send of `ranges` (default: one fresh page) from the normal
/// world to `to` in `layout` into a copy of TX, lets `patch` change it and
/// choose (w1, w2), sends it with FFA_MEM_SHARE_64 (`f` for
/// `malformed_with`) and expects INVALID_PARAMETERS; then the pages can
/// still be shared.
fn malformed(
    layout: Layout,
    to: &[u16],
    ranges: Option<&[Range]>,
    patch: impl FnOnce(&mut [u8], &Transaction<'_>) -> (usize, usize),
) -> Outcome {
    malformed_with(func::SHARE_64, layout, to, ranges, patch)
}

fn malformed_with(
    f: u64,
    layout: Layout,
    to: &[u16],
    ranges: Option<&[Range]>,
    patch: impl FnOnce(&mut [u8], &Transaction<'_>) -> (usize, usize),
) -> Outcome {
    let fresh;
    let ranges = match ranges {
        Some(r) => r,
        None => {
            fresh = [Range {
                addr: alloc(1)?,
                pages: 1,
            }];
            &fresh
        }
    };
    let mut rx = [Receiver::new(0, 0); 3];
    for (d, id) in rx.iter_mut().zip(to) {
        *d = Receiver::new(*id, send_perms(kind_flags(f)));
    }
    let list = List(ranges);
    let t = conformed(f, &nwd_send(layout, &rx[..to.len()], &list));
    let mut b = [0u8; 512];
    let n = t
        .write(&mut b)
        .map_err(|_| fail("descriptor does not fit"))?;
    let (w1, w2) = patch(&mut b, &t);
    ffa::tx_write(0, &b[..n.max(w2).min(b.len())]);
    // The v1.0 layout goes with version 1.0.
    let version = if layout == Layout::V1_0 { V1_0 } else { V1_2 };
    let r = at_version(version, || send_raw(f, w1 as u64, w2 as u64, 0, 0));
    if success(&r) {
        undo_send(0, handle_of(&r));
    } else if w0(&r) == func::FRAG_RX {
        undo_send(0, w(&r, 1) | w(&r, 2) << 32);
    }
    expect_error(&r, ffa::INVALID_PARAMETERS, "answer")?;
    still_shareable(ranges[0].addr & !(PAGE - 1), 1)
}

/// A one-page share to sp1 in `layout` with bytes changed by `patch`.
fn patched(layout: Layout, patch: impl FnOnce(&mut [u8], &Transaction<'_>)) -> Outcome {
    malformed(layout, &[SP1], None, |b, t| {
        patch(b, t);
        (t.len(), t.len())
    })
}

/// A one-page lend to sp1 with bytes changed by `patch`.
fn patched_lend(patch: impl FnOnce(&mut [u8], &Transaction<'_>)) -> Outcome {
    malformed_with(func::LEND_64, Layout::V1_2, &[SP1], None, |b, t| {
        patch(b, t);
        (t.len(), t.len())
    })
}

/// A share to sp1 of the two ranges `make(fresh address)` gives.
fn with_ranges(
    make: impl FnOnce(u64) -> [(u64, u32); 2],
    patch: impl FnOnce(&mut [u8], &Transaction<'_>),
) -> Outcome {
    let base = alloc(4)?;
    let ranges = make(base).map(|(addr, pages)| Range { addr, pages });
    malformed(Layout::V1_2, &[SP1], Some(&ranges), |b, t| {
        patch(b, t);
        (t.len(), t.len())
    })?;
    still_shareable(base, 4)
}

fn fragment_longer_than_buffer() -> Outcome {
    let ranges = three_hundred()?;
    let to = receivers([SP1], perm::RW);
    let t = nwd_send(Layout::V1_2, &to, &ranges);
    part_to_tx(&t, 0, TX_SIZE);
    let len = t.len() as u64;
    let r = send_raw(func::SHARE_64, len, len, 0, 0);
    if success(&r) {
        undo_send(0, handle_of(&r));
    }
    expect_error(&r, ffa::INVALID_PARAMETERS, "fragment longer than TX")?;
    let h = send_ok(func::SHARE_64, &t)?;
    expect_success(&reclaim(h, 0), "the same pages shared properly")
}

fn bad_v1_0_reserved() -> Outcome {
    patched(Layout::V1_0, |b, _| b[off::V1_0_RESERVED_BYTE] = 1)?;
    patched(Layout::V1_0, |b, _| put32(b, off::V1_0_RESERVED_WORD, 1))
}

fn donate_several() -> Outcome {
    malformed_with(func::DONATE_64, Layout::V1_2, &[SP1, SP2], None, |_, t| {
        (t.len(), t.len())
    })
}

// ---- Who sends, to whom ----------------------------------------------------

/// The normal world sends one page with `f`, naming `sender`, to `to`:
/// refused with `want`; the page can still be shared.
fn refused_send(sender: u16, to: &[u16], f: u64, want: i32) -> Outcome {
    let addr = alloc(1)?;
    let mut rx = [Receiver::new(0, 0); 3];
    for (d, id) in rx.iter_mut().zip(to) {
        *d = Receiver::new(*id, perm::RW);
    }
    let ranges = [Range { addr, pages: 1 }];
    let t = Transaction::send(Layout::V1_2, sender, &rx[..to.len()], &ranges);
    let s = send(f, &t);
    if success(&s.r) {
        undo_send(0, s.handle);
    }
    expect_error(&s.r, want, "send answer")?;
    still_shareable(addr, 1)
}

/// The normal world shares `pages` pages at `addr` with sp1: refused with `want`.
fn refused_range(addr: u64, pages: u32, want: i32) -> Outcome {
    let to = receivers([SP1], perm::RW);
    let ranges = [Range { addr, pages }];
    let s = send(func::SHARE_64, &nwd_send(Layout::V1_2, &to, &ranges));
    if success(&s.r) {
        undo_send(0, s.handle);
    }
    expect_error(&s.r, want, "send answer")?;
    still_shareable(alloc(1)?, 1)
}

/// The page sp1's error checks offer (always its own, never sent for good).
static SP1_SPARE: AtomicU64 = AtomicU64::new(0);

fn sp1_spare() -> R<u64> {
    match SP1_SPARE.load(Ordering::Relaxed) {
        0 => {
            let p = sp_page(SP1)?;
            SP1_SPARE.store(p, Ordering::Relaxed);
            Ok(p)
        }
        p => Ok(p),
    }
}

/// sp1 still owns its spare page: it shares it with sp2 and reclaims it.
fn sp1_spare_free() -> R<()> {
    let h = sp_send_ok(SP1, &Give::new(sp1_spare()?, sopt::SHARE, &[SP2]))?;
    sp_reclaim_ok(SP1, h)
}

/// sp1 sends its spare page to sp2 as `change` says: refused with `want`;
/// sp1 still answers and still owns the page.
fn sp_refused(change: impl FnOnce(&mut Give), want: i32) -> Outcome {
    let mut g = Give::new(sp1_spare()?, sopt::SHARE, &[SP2]);
    change(&mut g);
    let (a, h, _) = sp_send(SP1, &g)?;
    if a == ffa::SUCCESS_32 {
        undo_send(SP1, h);
    }
    expect_answer_error(a, want, "partition's send answer")?;
    alive(SP1)?;
    sp1_spare_free()
}

fn already_shared() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    let res = (|| {
        let ranges = [Range { addr, pages: 1 }];
        for f in [func::SHARE_64, func::LEND_64, func::DONATE_64] {
            let to = receivers([SP2], send_perms(kind_flags(f)));
            let s = send(f, &nwd_send(Layout::V1_2, &to, &ranges));
            if success(&s.r) {
                undo_send(0, s.handle);
            }
            expect_error(&s.r, ffa::DENIED, "second send of the same page")?;
        }
        Ok(())
    })();
    let back = reclaim(h, 0);
    res?;
    expect_success(&back, "reclaim of the first share")?;
    still_shareable(addr, 1)
}

fn overlap_other() -> Outcome {
    let addr = alloc(2)?;
    let to = receivers([SP1], perm::RW);
    let both = [Range { addr, pages: 2 }];
    let h = send_ok(func::SHARE_64, &nwd_send(Layout::V1_2, &to, &both))?;
    let second = [Range {
        addr: addr + PAGE,
        pages: 1,
    }];
    let s = send(func::SHARE_64, &nwd_send(Layout::V1_2, &to, &second));
    if success(&s.r) {
        undo_send(0, s.handle);
    }
    let back = reclaim(h, 0);
    expect_error(
        &s.r,
        ffa::DENIED,
        "share of a page inside another transaction",
    )?;
    expect_success(&back, "reclaim of the first share")?;
    still_shareable(addr, 2)
}

fn sp_already_lent() -> Outcome {
    let p = sp_page(SP1)?;
    let h = sp_send_ok(SP1, &Give::new(p, sopt::LEND, &[SP2]))?;
    let (a, h2, _) = sp_send(SP1, &Give::new(p, sopt::SHARE, &[TPM]))?;
    if a == ffa::SUCCESS_32 {
        undo_send(SP1, h2);
    }
    let back = sp_reclaim(SP1, h, 0)?;
    expect_answer_error(a, ffa::DENIED, "sharing a page it lent")?;
    ensure_eq!(
        back.0,
        ffa::SUCCESS_32,
        "reclaim of the lend (never retrieved)"
    );
    let h = sp_send_ok(SP1, &Give::new(p, sopt::SHARE, &[TPM]))?;
    sp_reclaim_ok(SP1, h)
}

/// sp1 lends a page to sp2, which retrieves it; then the TPM partition
/// (`borrowed` false: a partition that has nothing at that address) or
/// sp2 (`borrowed` true: memory it borrowed) tries to share it at its
/// PA-as-IPA: DENIED.
fn sp_foreign_page(borrowed: bool) -> Outcome {
    let p = sp_page(SP1)?;
    let h = sp_send_ok(SP1, &Give::new(p, sopt::LEND, &[SP2]))?;
    guarded(h, SP1, &[SP2], || {
        let pa = check_got_secure(&retrieve(SP2, &Ask::new(h, SP1, flags::TYPE_LEND))?)?;
        let (who, to) = if borrowed { (SP2, TPM) } else { (TPM, SP2) };
        let (a, h2, _) = sp_send(who, &Give::new(pa, sopt::SHARE, &[to]))?;
        if a == ffa::SUCCESS_32 {
            undo_send(who, h2);
        }
        expect_answer_error(a, ffa::DENIED, "sending memory that is not its own")?;
        alive(who)?;
        relinquish_ok(SP2, h)?;
        sp_reclaim_ok(SP1, h)
    })
}

// ---- Handles, borrowers, owners --------------------------------------------

fn retrieve_refused_handle(h: u64) -> Outcome {
    let g = retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?;
    expect_answer_error(g.answer, ffa::INVALID_PARAMETERS, "retrieve")?;
    alive(SP1)
}

fn retrieve_reclaimed() -> Outcome {
    let (_, h) = share_one(SP1, perm::RW, 0)?;
    expect_success(&reclaim(h, 0), "reclaim")?;
    retrieve_refused_handle(h)
}

fn relinquish_unknown() -> Outcome {
    expect_answer_error(
        relinquish(SP1, UNKNOWN_HANDLE, 0)?,
        ffa::INVALID_PARAMETERS,
        "relinquish",
    )
}

fn reclaim_retired() -> Outcome {
    let addr = alloc(1)?;
    let to = receivers([SP2], 0);
    let ranges = [Range { addr, pages: 1 }];
    let h = send_ok(func::DONATE_64, &nwd_send(Layout::V1_2, &to, &ranges))?;
    retrieve(SP2, &Ask::new(h, 0, flags::TYPE_DONATE))?.ok()?;
    expect_error(
        &reclaim(h, 0),
        ffa::INVALID_PARAMETERS,
        "reclaim after the donation",
    )?;
    // And a handle reclaimed once.
    let (_, h) = share_one(SP1, perm::RW, 0)?;
    expect_success(&reclaim(h, 0), "first reclaim")?;
    expect_error(&reclaim(h, 0), ffa::INVALID_PARAMETERS, "second reclaim")
}

fn retrieve_not_borrower() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1, SP2], || {
        expect_answer_error(
            retrieve(SP2, &Ask::new(h, 0, flags::TYPE_SHARE))?.answer,
            ffa::DENIED,
            "retrieve by a partition that is not a borrower",
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

fn retrieve_more_access() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RO, 0)?;
    guarded(h, 0, &[SP1], || {
        expect_answer_error(
            retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?.answer,
            ffa::DENIED,
            "read-write retrieve of a read-only share",
        )?;
        let mut a = Ask::new(h, 0, flags::TYPE_SHARE);
        a.perms = perm::RO;
        let g = retrieve(SP1, &a)?;
        g.ok()?;
        ensure_eq!(g.perms & perm::DATA_MASK, perm::RO, "data access granted");
        ensure_eq!(sp_differ(SP1, addr, PAGE, SEED_A)?, 0, "borrower's view");
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

/// A share tagged 0x55 to sp1; a retrieve changed by `change` is refused
/// with `want`, the right one then succeeds.
fn retrieve_mismatch(change: impl FnOnce(&mut Ask), want: i32) -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0x55)?;
    guarded(h, 0, &[SP1], || {
        let mut good = Ask::new(h, 0, flags::TYPE_SHARE);
        good.tag = 0x55;
        let mut bad = good;
        change(&mut bad);
        expect_answer_error(retrieve(SP1, &bad)?.answer, want, "retrieve")?;
        check_got_ns(&retrieve(SP1, &good)?, addr, 1, V1_2)?;
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

fn relinquish_not_retrieved() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        expect_answer_error(
            relinquish(SP1, h, 0)?,
            ffa::DENIED,
            "relinquish before retrieve",
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

fn relinquish_not_borrower() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        check_got_ns(
            &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?,
            addr,
            1,
            V1_2,
        )?;
        expect_answer_error(
            relinquish(SP2, h, 0)?,
            ffa::DENIED,
            "relinquish by a non-borrower",
        )?;
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

fn reclaim_not_owner() -> Outcome {
    let (_, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        for who in [SP1, SP2] {
            let (a, e) = sp_reclaim(who, h, 0)?;
            ensure_eq!(a, ffa::ERROR_32, "reclaim by a partition");
            ensure_eq!(e as u32 as i32, ffa::DENIED, "its error");
        }
        expect_success(&reclaim(h, 0), "reclaim by the owner")
    })
}

fn sp_reclaim_not_owner() -> Outcome {
    let h = sp_send_ok(SP1, &Give::new(sp1_spare()?, sopt::SHARE, &[SP2]))?;
    guarded(h, SP1, &[SP2], || {
        expect_error(&reclaim(h, 0), ffa::DENIED, "reclaim by the normal world")?;
        let (a, e) = sp_reclaim(SP2, h, 0)?;
        ensure_eq!(a, ffa::ERROR_32, "reclaim by the borrower");
        ensure_eq!(e as u32 as i32, ffa::DENIED, "its error");
        sp_reclaim_ok(SP1, h)
    })
}

fn reclaim_while_retrieved() -> Outcome {
    let (addr, h) = share_one(SP1, perm::RW, 0)?;
    guarded(h, 0, &[SP1], || {
        check_got_ns(
            &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_SHARE))?,
            addr,
            1,
            V1_2,
        )?;
        expect_error(&reclaim(h, 0), ffa::DENIED, "reclaim while retrieved")?;
        ensure_eq!(
            sp_differ(SP1, addr, PAGE, SEED_A)?,
            0,
            "borrower's view afterwards"
        );
        relinquish_ok(SP1, h)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

fn retrieve_busy() -> Outcome {
    let (a1, h1) = share_one(SP1, perm::RW, 0)?;
    let (a2, h2) = match share_one(SP1, perm::RW, 0) {
        Ok(x) => x,
        Err(e) => {
            cleanup(h1, 0, &[SP1]);
            return Err(e);
        }
    };
    let res = (|| {
        let mut keep = Ask::new(h1, 0, flags::TYPE_SHARE);
        keep.opts = ropt::KEEP_RX;
        check_got_ns(&retrieve(SP1, &keep)?, a1, 1, V1_2)?;
        let busy = retrieve(SP1, &Ask::new(h2, 0, flags::TYPE_SHARE))?;
        let (rel, ..) = sp_call(SP1, ffa::RX_RELEASE, 0, 0, 0)?;
        expect_answer_error(busy.answer, ffa::BUSY, "retrieve while RX is full")?;
        expect_answer(rel, ffa::SUCCESS_32, "RX_RELEASE in the partition")?;
        check_got_ns(
            &retrieve(SP1, &Ask::new(h2, 0, flags::TYPE_SHARE))?,
            a2,
            1,
            V1_2,
        )?;
        relinquish_ok(SP1, h1)?;
        relinquish_ok(SP1, h2)?;
        expect_success(&reclaim(h1, 0), "reclaim")?;
        expect_success(&reclaim(h2, 0), "reclaim")
    })();
    if res.is_err() {
        cleanup(h1, 0, &[SP1]);
        cleanup(h2, 0, &[SP1]);
    }
    res
}

// ---- Faults on memory given away, injected at the partition's EL1 -------

/// `who` reads `addr` with its own exception vectors installed (cmd::FAULT):
/// the abort must reach them with a data-abort syndrome and `addr` in FAR.
fn handled_fault(who: u16, addr: u64) -> R<()> {
    let [handled, esr, far, _] = sp(who, cmd::FAULT, [addr, 0, 0, 0])?;
    ensure_eq!(
        handled,
        test_protocol::FAULT_HANDLED,
        "the partition's handler ran"
    );
    ensure_eq!(esr >> 26, 0x25, "ESR_EL1 class: data abort from EL1");
    ensure_eq!(far, addr, "FAR_EL1");
    alive(who)
}

fn fault_after_lend() -> Outcome {
    // sp1 lends its spare page to sp2 and reads it: the page is no longer
    // its own (DEN0140 §3.2 lend: the lender loses access).
    let p = sp1_spare()?;
    let h = sp_send_ok(SP1, &Give::new(p, sopt::LEND, &[SP2]))?;
    let res = handled_fault(SP1, p);
    sp_reclaim_ok(SP1, h)?;
    res?;
    // Reclaimed, it reads again without a fault.
    let [v, esr, ..] = sp(SP1, cmd::FAULT, [p, 0, 0, 0])?;
    ensure_eq!(esr, 0, "no exception once reclaimed");
    ensure!(v != test_protocol::FAULT_HANDLED, "the word itself");
    Ok(())
}

fn fault_after_relinquish() -> Outcome {
    let (addr, h) = lend_one(SP1, 0)?;
    guarded(h, 0, &[SP1], || {
        check_got_ns(
            &retrieve(SP1, &Ask::new(h, 0, flags::TYPE_LEND))?,
            addr,
            1,
            V1_2,
        )?;
        ensure_eq!(
            sp_differ(SP1, addr, PAGE, SEED_A)?,
            0,
            "the borrower's view"
        );
        relinquish_ok(SP1, h)?;
        handled_fault(SP1, addr)?;
        expect_success(&reclaim(h, 0), "reclaim")
    })
}

// ---- Last: a lender that touches what it lent ------------------------------

/// The normal world's page lent to the TPM partition before it is aborted.
static LENT_TO_TPM: AtomicU64 = AtomicU64::new(0);

fn lender_loses_access() -> Outcome {
    // The TPM partition will be aborted: first give it a borrowed page
    // (for the next check).
    let (_, hq) = lend_one(TPM, 0)?;
    LENT_TO_TPM.store(hq, Ordering::Relaxed);
    retrieve(TPM, &Ask::new(hq, 0, flags::TYPE_LEND))?.ok()?;
    let p = sp_page(TPM)?;
    sp_fill(TPM, p, PAGE, SEED_C)?;
    let h = sp_send_ok(TPM, &Give::new(p, sopt::LEND, &[SP1]))?;
    let pa = check_got_secure(&retrieve(SP1, &Ask::new(h, TPM, flags::TYPE_LEND))?)?;
    ensure_eq!(sp_differ(SP1, pa, PAGE, SEED_C)?, 0, "borrower's view");
    let touch = ffa::cmd(TPM, cmd::READ, [p, 0, 0, 0]);
    let after = ffa::cmd(TPM, cmd::ECHO, [0; 4]);
    let still = sp_differ(SP1, pa, PAGE, SEED_C)?;
    let back = relinquish(SP1, h, 0)?;
    ensure_eq!(
        code(&touch),
        ffa::ABORTED,
        "the lender reading its lent page"
    );
    ensure_eq!(code(&after), ffa::ABORTED, "the lender afterwards");
    ensure_eq!(still, 0, "the borrower's view after the lender's fault");
    expect_answer(back, ffa::SUCCESS_32, "the borrower's relinquish")
}

fn aborted_borrower() -> Outcome {
    let h = LENT_TO_TPM.load(Ordering::Relaxed);
    ensure!(h != 0, "the lend to the TPM partition did not happen");
    expect_success(&reclaim(h, 0), "reclaim from an aborted borrower")
}

fn others_after() -> Outcome {
    alive(SP1)?;
    alive(SP2)?;
    still_shareable(alloc(1)?, 1)
}
