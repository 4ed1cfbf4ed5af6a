//! Hostile single calls from the normal world (endpoint 0 at NS-EL2, which
//! may also act for VMs as a hypervisor does). Sections are DEN0077 v1.2
//! unless marked DEN0140 (memory management, v1.2); where the spec leaves
//! an error open, the contract of docs/memory-sharing.md decides.

use test_protocol::mem::{
    Layout, List, Range, Receiver, Strided, flags, func, off, perm, put16, put32, put64,
};
use test_protocol::{cmd, ids, uuids};

use super::irq::{self, check_ack, vm_message};
use super::{Hostile, error_word, expect_error, expect_success, fail_eq, word};
use crate::ffa::{self, Regs, call, code};
use crate::mem::kit;
use crate::report::Outcome;

/// Where the normal world's RAM ends if the device tree does not say (QEMU
/// virt with `-m 1G`); the check `device-tree-names-the-ram` fails then.
const RAM_END_FALLBACK: u64 = 0x8000_0000;

/// The end of the normal world's RAM (device tree), or the fallback.
fn ram_end() -> u64 {
    super::dtb::ram_end().unwrap_or(RAM_END_FALLBACK)
}
/// SMCCC's answer to an unknown function ID (SMCCC v1.4 §5.2: -1).
const SMC_UNKNOWN: u64 = 0xFFFF_FFFF;

/// Register garbage: odd (so never an aligned address), with high bits set.
fn garbage(i: usize) -> u64 {
    0xDEAD_BEEF_0000_0001 | (i as u64) << 36 | (i as u64) << 8
}

/// Calls `f` with garbage in x1-x17.
fn call_garbage(f: u64) -> Regs {
    let mut r = [0u64; 18];
    r[0] = f;
    for (i, x) in r.iter_mut().enumerate().skip(1) {
        *x = garbage(i);
    }
    baremetal::smc(&mut r);
    r
}

/// Function IDs the normal world may not call, or that do not exist: each
/// answers FFA_ERROR(NOT_SUPPORTED) whatever x1-x17 hold (§13.3: what
/// FFA_FEATURES does not report is not supported; §7.2 Table 7.2: unknown
/// function IDs of the FF-A range; the SMC64 forms of SMC32-only ABIs do
/// not exist, Table 13.1).
const NOT_FOR_NWD: &[(&str, u64)] = &[
    ("garbage-ffa-msg-poll-v1.0", 0x8400_006A),
    ("garbage-ffa-msg-wait-from-nwd", 0x8400_006B),
    ("garbage-ffa-yield-from-nwd", 0x8400_006C),
    ("garbage-ffa-msg-send-v1.0", 0x8400_006E),
    ("garbage-ffa-mem-retrieve-resp-from-nwd", 0x8400_0075),
    ("garbage-ffa-mem-op-pause", 0x8400_0078),
    ("garbage-ffa-mem-op-resume", 0x8400_0079),
    ("garbage-ffa-secondary-ep-register-32", 0x8400_0087),
    ("garbage-ffa-secondary-ep-register-64", 0xC400_0087),
    ("garbage-ffa-mem-perm-get-32", 0x8400_0088),
    ("garbage-ffa-mem-perm-set-32", 0x8400_0089),
    ("garbage-ffa-mem-perm-get-64", 0xC400_0088),
    ("garbage-ffa-mem-perm-set-64", 0xC400_0089),
    ("garbage-ffa-console-log-32-from-nwd", 0x8400_008A),
    ("garbage-ffa-console-log-64-from-nwd", 0xC400_008A),
    ("garbage-ffa-el3-intr-handle-from-nwd", 0x8400_008C),
    ("garbage-ffa-direct-req2-smc32", 0x8400_008D),
    ("garbage-ffa-direct-resp2-smc32", 0x8400_008E),
    ("garbage-ffa-version-smc64", 0xC400_0063),
    ("garbage-ffa-features-smc64", 0xC400_0064),
    ("garbage-ffa-rx-release-smc64", 0xC400_0065),
    ("garbage-ffa-rxtx-unmap-smc64", 0xC400_0067),
    ("garbage-ffa-partition-info-get-smc64", 0xC400_0068),
    ("garbage-ffa-id-get-smc64", 0xC400_0069),
    ("garbage-ffa-run-smc64", 0xC400_006D),
    ("garbage-ffa-mem-reclaim-smc64", 0xC400_0077),
    ("garbage-ffa-mem-frag-tx-smc64", 0xC400_007B),
    ("garbage-ffa-spm-id-get-smc64", 0xC400_0085),
    ("garbage-ffa-msg-send2-smc64", 0xC400_0086),
];

/// The notification ABIs (DEN0077 v1.2 chapter 10, spmc::notifications)
/// with garbage (w1 = 0x101, w2 = 0x201, ...): FFA_FEATURES reports them and
/// each names its exact error. BITMAP_CREATE: 513 vCPUs; DESTROY: VM 0x101
/// has no bitmap (DENIED, Hafnium's answer); BIND and GET: reserved flag
/// bits; UNBIND: w2 MBZ; SET: the normal world signals only partitions;
/// INFO_GET: nothing is pending (NO_DATA).
const NOTIFICATIONS: &[(&str, u64, i32)] = &[
    (
        "garbage-ffa-notification-bitmap-create",
        0x8400_007D,
        ffa::INVALID_PARAMETERS,
    ),
    (
        "garbage-ffa-notification-bitmap-destroy",
        0x8400_007E,
        ffa::DENIED,
    ),
    (
        "garbage-ffa-notification-bind",
        0x8400_007F,
        ffa::INVALID_PARAMETERS,
    ),
    (
        "garbage-ffa-notification-unbind",
        0x8400_0080,
        ffa::INVALID_PARAMETERS,
    ),
    (
        "garbage-ffa-notification-set",
        0x8400_0081,
        ffa::INVALID_PARAMETERS,
    ),
    (
        "garbage-ffa-notification-get",
        0x8400_0082,
        ffa::INVALID_PARAMETERS,
    ),
    (
        "garbage-ffa-notification-info-get-32",
        0x8400_0083,
        ffa::NO_DATA,
    ),
    (
        "garbage-ffa-notification-info-get-64",
        0xC400_0083,
        ffa::NO_DATA,
    ),
];

/// The return ABIs (§13.x FFA_ERROR, FFA_SUCCESS, FFA_INTERRUPT): FFA_FEATURES
/// may well report them (they are part of every FF-A instance), but as a
/// request from the normal world they are FFA_ERROR(NOT_SUPPORTED).
const RETURN_ABIS: &[(&str, u64)] = &[
    ("garbage-ffa-error-from-nwd", 0x8400_0060),
    ("garbage-ffa-success-32-from-nwd", 0x8400_0061),
    ("garbage-ffa-success-64-from-nwd", 0xC400_0061),
    ("garbage-ffa-interrupt-from-nwd", 0x8400_0062),
];

/// SMCs outside every service TF-A and the SPMD provide: SMC_UNKNOWN (-1).
/// That includes the top of the FF-A range (0x8F-0xFF): TF-A 2.12.1's SPMD
/// takes function numbers 0x60-0x8E only (FFA_FNUM_MAX_VALUE) and EL3
/// answers the rest itself, before the SPMC could.
const UNKNOWN_SMCS: &[(&str, u64)] = &[
    ("smc-unknown-ffa-0x8f", 0x8400_008F),
    ("smc-unknown-ffa-0x90", 0x8400_0090),
    ("smc-unknown-ffa-0xa0", 0x8400_00A0),
    ("smc-unknown-ffa-0xff", 0x8400_00FF),
    ("smc-unknown-ffa-64-0xff", 0xC400_00FF),
    ("smc-unknown-standard-service", 0x8400_0050),
    ("smc-unknown-standard-service-64", 0xC400_0050),
    ("smc-unknown-trusted-os", 0xBF00_FF00),
    ("smc-unknown-yielding-call", 0x0400_0060),
    ("smc-unknown-all-ones", 0xFFFF_FFFF),
];

/// Runs every normal-world check.
pub fn run(h: &mut Hostile<'_>) {
    for (name, f) in NOT_FOR_NWD {
        h.check(name, || {
            let r = call_garbage(*f);
            expect_error(&r, ffa::NOT_SUPPORTED, "answer")?;
            let feat = call(ffa::FEATURES, &[*f]);
            expect_error(&feat, ffa::NOT_SUPPORTED, "FFA_FEATURES of it")
        });
    }
    for (name, f, want) in NOTIFICATIONS {
        h.check(name, || {
            expect_error(&call_garbage(*f), *want, "answer")?;
            expect_success(&call(ffa::FEATURES, &[*f]), "FFA_FEATURES of it")
        });
    }
    for (name, f) in RETURN_ABIS {
        h.check(name, || {
            expect_error(&call_garbage(*f), ffa::NOT_SUPPORTED, "answer")
        });
    }
    for (name, f) in UNKNOWN_SMCS {
        h.check(name, || {
            let r = call_garbage(*f);
            if r[0] as u32 as u64 != SMC_UNKNOWN {
                return Err(fail_eq("w0", r[0], SMC_UNKNOWN));
            }
            Ok(())
        });
    }
    supported_with_garbage(h);
    version(h);
    features(h);
    rxtx(h);
    discovery(h);
    direct(h);
    run_calls(h);
    send2(h);
    vm_availability(h);
    memory(h);
    storms(h);
}

/// ABIs the normal world may call, with garbage in every register: the
/// exact error each names for it.
fn supported_with_garbage(h: &mut Hostile<'_>) {
    // §13.9: FFA_ID_GET has no arguments; the normal world is endpoint 0.
    h.check("garbage-ffa-id-get", || {
        let r = call_garbage(ffa::ID_GET);
        expect_success(&r, "answer")?;
        if r[2] as u32 != 0 {
            return Err(fail_eq("ID", r[2], 0));
        }
        Ok(())
    });
    // §13.10: FFA_SPM_ID_GET has no arguments either.
    h.check("garbage-ffa-spm-id-get", || {
        let r = call_garbage(0x8400_0085);
        expect_success(&r, "answer")?;
        if r[2] as u32 != 0x8000 {
            return Err(fail_eq("SPMC ID", r[2], 0x8000));
        }
        Ok(())
    });
    // §15.2: receiver 0x0201 (w1[15:0] of the garbage) is no partition.
    h.check("garbage-direct-req-64", || {
        expect_error(
            &call_garbage(ffa::MSG_SEND_DIRECT_REQ_64),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    h.check("garbage-direct-req-32", || {
        expect_error(
            &call_garbage(ffa::MSG_SEND_DIRECT_REQ_32),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    h.check("garbage-direct-req2", || {
        expect_error(
            &call_garbage(ffa::MSG_SEND_DIRECT_REQ2_64),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    // §13.x FFA_RUN: endpoint 0xBEEF (w1[31:16]) does not exist.
    h.check("garbage-run", || {
        expect_error(&call_garbage(ffa::RUN), ffa::INVALID_PARAMETERS, "answer")
    });
    // §13.5: unaligned addresses.
    h.check("garbage-rxtx-map-64", || {
        let r = rxtx_attempt(|| call_garbage(ffa::RXTX_MAP_64));
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")
    });
    h.check("garbage-rxtx-map-32", || {
        let r = rxtx_attempt(|| call_garbage(0x8400_0066));
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")
    });
    // §13.6: w1[31:16] names an endpoint (0xBEEF) that is neither the
    // caller nor a VM with buffers.
    h.check("garbage-rxtx-unmap", || {
        let mut r = [0u64; 18];
        r[0] = ffa::RXTX_UNMAP;
        for (i, x) in r.iter_mut().enumerate().skip(1) {
            *x = garbage(i) | 0xBEEF_0000;
        }
        baremetal::smc(&mut r);
        if r[0] as u32 as u64 == ffa::SUCCESS_32 {
            ffa::map_buffers();
        }
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")
    });
    // §13.8: a UUID no partition has (and reserved flag bits).
    h.check("garbage-partition-info-get", || {
        expect_error(
            &call_garbage(ffa::PARTITION_INFO_GET),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    // §15.6: reserved flag bits in w2.
    h.check("garbage-msg-send2", || {
        expect_error(
            &call_garbage(ffa::MSG_SEND2),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    // DEN0140 §... FFA_MEM_SHARE: total length 0x201 with a fragment longer
    // than the buffer and an unaligned buffer address: malformed.
    for (name, f) in [
        ("garbage-mem-share-64", func::SHARE_64),
        ("garbage-mem-lend-32", func::LEND_32),
        ("garbage-mem-donate-64", func::DONATE_64),
    ] {
        h.check(name, || {
            expect_error(&call_garbage(f), ffa::INVALID_PARAMETERS, "answer")
        });
    }
    // The normal world borrows too (docs/memory-sharing.md, "The normal
    // world as a borrower"): a retrieve request in an unaligned buffer,
    // FFA_MEM_FRAG_RX of an unknown handle, a relinquish descriptor that
    // names 0xFFFFFFFF endpoints: malformed (DEN0077 v1.2 §11.5-11.7).
    for (name, f) in [
        (
            "garbage-ffa-mem-retrieve-req-32-from-nwd",
            func::RETRIEVE_REQ_32,
        ),
        (
            "garbage-ffa-mem-retrieve-req-64-from-nwd",
            func::RETRIEVE_REQ_64,
        ),
        ("garbage-ffa-mem-frag-rx-from-nwd", func::FRAG_RX),
    ] {
        h.check(name, || {
            expect_error(&call_garbage(f), ffa::INVALID_PARAMETERS, "answer")
        });
    }
    h.check("garbage-ffa-mem-relinquish-from-nwd", || {
        ffa::tx_write(0, &[0xFF; 64]);
        expect_error(
            &call_garbage(func::RELINQUISH),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    // Unknown handles.
    h.check("garbage-mem-reclaim", || {
        expect_error(
            &call_garbage(func::RECLAIM),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    h.check("garbage-mem-frag-tx", || {
        expect_error(
            &call_garbage(func::FRAG_TX),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
}

/// §13.2 FFA_VERSION: bit 31 must be zero; only major 1 is supported.
fn version(h: &mut Hostile<'_>) {
    for (name, v) in [
        ("version-all-ones", 0xFFFF_FFFFu64),
        ("version-bit31-only", 0x8000_0000),
        ("version-major-0x7fff", 0x7FFF_0000),
        ("version-zero", 0),
    ] {
        h.check(name, || {
            let r = call(ffa::VERSION, &[v]);
            if r[0] as u32 as i32 != ffa::NOT_SUPPORTED {
                return Err(fail_eq("answer", r[0], ffa::NOT_SUPPORTED as u32 as u64));
            }
            Ok(())
        });
    }
    // SMCCC v1.4 §2.6: an SMC32 call's callee ignores the upper halves of
    // x1-x7; FFA_VERSION is SMC32.
    h.check("version-upper-half-ignored", || {
        let r = call(ffa::VERSION, &[0xDEAD_BEEF_0001_0002]);
        if r[0] != ffa::V1_2 as u64 {
            return Err(fail_eq("answer", r[0], ffa::V1_2 as u64));
        }
        Ok(())
    });
}

/// §13.3 FFA_FEATURES.
fn features(h: &mut Hostile<'_>) {
    // Feature ID 2: the schedule receiver interrupt's ID, SGI 8 (Hafnium's
    // number; docs/notifications.md).
    h.check("features-of-feature-id-sri", || {
        let r = call(ffa::FEATURES, &[2]);
        expect_success(&r, "answer")?;
        if r[2] != 8 {
            return Err(fail_eq("SRI interrupt ID", r[2], 8));
        }
        Ok(())
    });
    for (name, id) in [
        ("features-of-function-id-zero", 0u64),
        ("features-of-all-ones", 0xFFFF_FFFF),
        // §13.3.2 Table 13.11: feature ID 1 NPI, 2 SRI, 3 MEI. The
        // managed exit interrupt is not offered (issue 12 item 3).
        ("features-of-feature-id-mei", 3),
        ("features-of-reserved-feature-id", 0xFF),
        ("features-of-non-ffa-smc", 0x8400_0000),
    ] {
        h.check(name, || {
            expect_error(&call(ffa::FEATURES, &[id]), ffa::NOT_SUPPORTED, "answer")
        });
    }
    // SMC32: the upper half of x1 is not part of the function ID.
    h.check("features-upper-half-ignored", || {
        expect_success(
            &call(ffa::FEATURES, &[0xDEAD_BEEF_0000_0000 | ffa::VERSION]),
            "FFA_FEATURES(FFA_VERSION)",
        )
    });
}

/// Unmaps the harness's buffers, runs `f` (an attempt to map them), undoes
/// what it did if it succeeded, maps the harness's own buffers again.
fn rxtx_attempt(f: impl FnOnce() -> Regs) -> Regs {
    call(ffa::RXTX_UNMAP, &[0]);
    let r = f();
    if r[0] as u32 as u64 == ffa::SUCCESS_32 {
        call(ffa::RXTX_UNMAP, &[0]);
    }
    ffa::map_buffers();
    r
}

/// FFA_RXTX_MAP_64 of (tx, rx, w3) in place of the harness's buffers.
fn map_attempt(tx: u64, rx: u64, w3: u64) -> Regs {
    rxtx_attempt(|| call(ffa::RXTX_MAP_64, &[tx, rx, w3]))
}

/// §13.5 FFA_RXTX_MAP, §13.6 FFA_RXTX_UNMAP, §13.7 FFA_RX_RELEASE, §13.8
/// FFA_RX_ACQUIRE: buffers only over the caller's own normal-world RAM.
fn rxtx(h: &mut Hostile<'_>) {
    let rx = ffa::rx_addr();
    let tx = ffa::tx_addr();
    let end = ram_end();
    h.check("device-tree-names-the-ram", || {
        let Some(end) = super::dtb::ram_end() else {
            return Err(crate::report::fail(
                "no memory node in the device tree at 0x4000_0000",
            ));
        };
        crate::say!("hostile: normal-world RAM ends at {end:#x} (device tree)");
        if !(0x4000_1000..=0xF000_0000).contains(&end) {
            return Err(fail_eq("end of RAM", end, RAM_END_FALLBACK));
        }
        Ok(())
    });
    // §13.5.2: buffers in memory the caller does not own (secure memory,
    // firmware, devices, addresses beyond the RAM) are INVALID_PARAMETERS.
    let cases: &[(&str, u64, u64, u64)] = &[
        ("rxtx-map-over-spmc-image", 0x0e10_0000, rx, 1),
        ("rxtx-map-over-spmc-manifest", 0x0e00_2000, rx, 1),
        ("rxtx-map-over-bl31", 0x0e09_0000, rx, 1),
        ("rxtx-map-over-partition-package", tx, 0x0e30_0000, 1),
        ("rxtx-map-over-secure-pool", tx, 0x0e80_0000, 1),
        ("rxtx-map-over-uart", 0x0900_0000, rx, 1),
        ("rxtx-map-over-gic", tx, 0x0800_0000, 1),
        ("rxtx-map-over-flash", 0, rx, 1),
        ("rxtx-map-just-above-ram", end, rx, 1),
        // Below 4 GiB, above the RAM of any `-m` up to 2.75 GiB.
        ("rxtx-map-below-4g-above-ram", 0xF000_0000.max(end), rx, 1),
        ("rxtx-map-above-4g", 0x1_0000_0000, rx, 1),
        (
            "rxtx-map-straddles-end-of-ram",
            end - 0x1000,
            end - 0x4000,
            2,
        ),
        ("rxtx-map-wraps", 0xFFFF_FFFF_FFFF_F000, rx, 2),
        ("rxtx-map-top-bit", 0x8000_0000_0000_0000 | tx, rx, 1),
        ("rxtx-map-rx-unaligned", tx, rx + 0x800, 1),
        ("rxtx-map-tx-unaligned", tx + 4, rx, 1),
        ("rxtx-map-zero-pages", tx, rx, 0),
        ("rxtx-map-63-pages", tx, rx, 63),
        (
            "rxtx-map-overlapping-two-pages",
            kit::ARENA,
            kit::ARENA + 0x1000,
            2,
        ),
        // §13.5.1 Table 13.x: w3[31:6] are reserved (MBZ) from v1.2.
        ("rxtx-map-w3-reserved-bit-6", tx, rx, 1 | 1 << 6),
        ("rxtx-map-w3-reserved-bit-31", tx, rx, 1 | 1 << 31),
    ];
    for (name, t, r, w3) in cases {
        h.check(name, || {
            expect_error(&map_attempt(*t, *r, *w3), ffa::INVALID_PARAMETERS, "answer")
        });
    }
    // §13.5: FFA_RXTX_MAP_32 takes w1/w2; the upper halves are ignored.
    h.check("rxtx-map-32-upper-halves-ignored", || {
        let r = rxtx_attempt(|| {
            call(
                0x8400_0066,
                &[0xDEAD_0000_0000_0000 | tx, 0xBEEF_0000_0000_0000 | rx, 1],
            )
        });
        expect_success(&r, "answer")
    });
    // DEN0140 §... / contract: a page the caller lent (the borrower has it)
    // or shared is not the caller's alone: no buffer over it (DENIED).
    h.check("rxtx-map-over-lent-retrieved-page", || over_sent_page(true));
    h.check("rxtx-map-over-shared-page", || over_sent_page(false));
    // §13.6: w1[31:16] names the endpoint whose buffers go: only the caller
    // (0) or a VM the caller acts for that has buffers.
    h.check("rxtx-unmap-of-secure-id", || {
        expect_error(
            &call(ffa::RXTX_UNMAP, &[(ids::SP1 as u64) << 16]),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    h.check("rxtx-unmap-of-vm-without-buffers", || {
        expect_error(
            &call(ffa::RXTX_UNMAP, &[5 << 16]),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    h.check("rxtx-unmap-twice", || {
        let first = call(ffa::RXTX_UNMAP, &[0]);
        let second = call(ffa::RXTX_UNMAP, &[0]);
        let again = ffa::map_buffers();
        expect_success(&first, "first unmap")?;
        expect_error(&second, ffa::INVALID_PARAMETERS, "second unmap")?;
        expect_success(&again, "map again")
    });
    // §13.7: FFA_RX_RELEASE without a message (DENIED), without buffers.
    h.check("rx-release-empty", || {
        expect_error(&call(ffa::RX_RELEASE, &[0]), ffa::DENIED, "answer")
    });
    h.check("rx-release-twice-after-discovery", || {
        let get = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 0]);
        let first = call(ffa::RX_RELEASE, &[0]);
        let second = call(ffa::RX_RELEASE, &[0]);
        expect_success(&get, "FFA_PARTITION_INFO_GET")?;
        expect_success(&first, "first release")?;
        expect_error(&second, ffa::DENIED, "second release")
    });
    h.check("rx-release-without-buffers", || {
        let r = rxtx_attempt(|| call(ffa::RX_RELEASE, &[0]));
        expect_error(&r, ffa::DENIED, "answer")
    });
    // §13.8: FFA_RX_ACQUIRE of a VM without buffers; twice.
    h.check("rx-acquire-vm-without-buffers", || {
        expect_error(
            &call(ffa::RX_ACQUIRE, &[7]),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    h.check("rx-acquire-twice", || {
        let first = call(ffa::RX_ACQUIRE, &[0]);
        let second = call(ffa::RX_ACQUIRE, &[0]);
        let release = call(ffa::RX_RELEASE, &[0]);
        expect_success(&first, "first acquire")?;
        expect_error(&second, ffa::DENIED, "second acquire")?;
        expect_success(&release, "release")
    });
}

/// Maps the RX buffer over a page the harness shared or lent (and sp1
/// retrieved): DENIED. Cleans up whatever happened.
fn over_sent_page(lend: bool) -> Outcome {
    let page = kit::alloc(1)?;
    let to = kit::receivers([ids::SP1], perm::RW);
    let ranges = [Range {
        addr: page,
        pages: 1,
    }];
    let t = kit::nwd_send(Layout::V1_2, &to, &ranges);
    let (f, kind) = if lend {
        (func::LEND_64, flags::TYPE_LEND)
    } else {
        (func::SHARE_64, flags::TYPE_SHARE)
    };
    let handle = kit::send_ok(f, &t)?;
    let mut retrieved = false;
    if lend {
        let g = kit::retrieve(ids::SP1, &kit::Ask::new(handle, 0, kind));
        retrieved = g.is_ok_and(|g| g.ok().is_ok());
    }
    let r = map_attempt(ffa::tx_addr(), page, 1);
    if retrieved {
        let _ = kit::relinquish(ids::SP1, handle, 0);
    }
    let back = kit::reclaim(handle, 0);
    expect_error(&r, ffa::DENIED, "FFA_RXTX_MAP answer")?;
    expect_success(&back, "reclaim afterwards")
}

/// §13.8 FFA_PARTITION_INFO_GET, §13.9 FFA_PARTITION_INFO_GET_REGS.
fn discovery(h: &mut Hostile<'_>) {
    let u = uuids::SP1.map(|w| w as u64);
    for (name, w5) in [
        ("partition-info-flags-bit-1", 2u64),
        ("partition-info-flags-all-ones", 0xFFFF_FFFF),
    ] {
        h.check(name, || {
            expect_error(
                &call(ffa::PARTITION_INFO_GET, &[u[0], u[1], u[2], u[3], w5]),
                ffa::INVALID_PARAMETERS,
                "answer",
            )
        });
    }
    h.check("partition-info-unknown-uuid", || {
        expect_error(
            &call(ffa::PARTITION_INFO_GET, &[1, 2, 3, 4, 0]),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    h.check("partition-info-uuid-off-by-one-word", || {
        expect_error(
            &call(ffa::PARTITION_INFO_GET, &[u[1], u[2], u[3], u[0], 0]),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    // The VM a hypervisor asks for (this SPMC's w7 extension) is a VM ID:
    // bit 15 set names a partition, which is no VM (§6.1: VM IDs have
    // bit 15 clear).
    h.check("partition-info-w7-secure-id", || {
        let r = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 0, 0, 0x8001]);
        if r[0] as u32 as u64 == ffa::SUCCESS_32 {
            call(ffa::RX_RELEASE, &[0]);
        }
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")
    });
    h.check("partition-info-rx-full-busy", || {
        let first = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 0]);
        let second = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 0]);
        let release = call(ffa::RX_RELEASE, &[0]);
        expect_success(&first, "first")?;
        expect_error(&second, ffa::BUSY, "second, RX still full")?;
        expect_success(&release, "release")
    });
    h.check("partition-info-regs-start-past-end", || {
        expect_error(
            &call(ffa::PARTITION_INFO_GET_REGS_64, &[0, 0, 0xFFFF]),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    h.check("partition-info-regs-unknown-tag", || {
        expect_error(
            &call(ffa::PARTITION_INFO_GET_REGS_64, &[0, 0, 0x1234 << 16]),
            ffa::RETRY,
            "answer",
        )
    });
    h.check("partition-info-regs-unknown-uuid", || {
        expect_error(
            &call(ffa::PARTITION_INFO_GET_REGS_64, &[0x1234, 0x5678, 0]),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
}

/// FFA_MSG_SEND_DIRECT_REQ_64 with w1 = `w1`, w2 = `w2`, x3 = ECHO.
fn req_raw(w1: u64, w2: u64) -> Regs {
    irq::finish(call(
        ffa::MSG_SEND_DIRECT_REQ_64,
        &[w1, w2, cmd::ECHO, 7, 8, 9, 10],
    ))
}

/// §15.2 FFA_MSG_SEND_DIRECT_REQ, §15.4 REQ2, §15.3 RESP from the normal world.
fn direct(h: &mut Hostile<'_>) {
    let cases: &[(&str, u64, u64, i32)] = &[
        ("direct-req-to-0x8123", 0x8123, 0, ffa::INVALID_PARAMETERS),
        ("direct-req-to-0xffff", 0xFFFF, 0, ffa::INVALID_PARAMETERS),
        ("direct-req-to-spmc", 0x8000, 0, ffa::INVALID_PARAMETERS),
        ("direct-req-to-itself", 0, 0, ffa::INVALID_PARAMETERS),
        ("direct-req-to-a-vm", 5, 0, ffa::INVALID_PARAMETERS),
        (
            "direct-req-to-refused-partition",
            0x8007,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "direct-req-to-unused-instance-id",
            0x813F,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        // Endpoint 0 has no instance of the template.
        (
            "direct-req-to-template-without-instance",
            0x8010,
            0,
            ffa::DENIED,
        ),
        // Forged senders: a secure ID from the normal world.
        (
            "direct-req-forged-secure-sender",
            0x8002 << 16 | 0x8001,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "direct-req-forged-spmc-sender",
            0x8000 << 16 | 0x8001,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        // VM 5 is not bound to sp1: the policy's DENIED (design contract 2).
        (
            "direct-req-as-other-vm-denied",
            5 << 16 | 0x8001,
            0,
            ffa::DENIED,
        ),
        // §15.2: w2 is reserved (MBZ) but for the framework bit.
        ("direct-req-w2-reserved", 0x8001, 1, ffa::INVALID_PARAMETERS),
        (
            "direct-req-w2-all-ones",
            0x8001,
            0x7FFF_FFFF,
            ffa::INVALID_PARAMETERS,
        ),
        // §18: a framework message of a type nobody defines, to sp1.
        (
            "direct-req-unknown-framework-message",
            0x8001,
            0x8000_00FF,
            ffa::INVALID_PARAMETERS,
        ),
        // §18.2: power management messages come from the SPMD, never the NWD.
        (
            "direct-req-forged-psci-message",
            0x8001,
            0x8000_0000,
            ffa::INVALID_PARAMETERS,
        ),
    ];
    for (name, w1, w2, want) in cases {
        h.check(name, || expect_error(&req_raw(*w1, *w2), *want, "answer"));
    }
    // VM 5 may reach the shared TPM service (the policy's `shared`).
    h.check("direct-req-as-other-vm-to-shared-service", || {
        let r = req_raw(5 << 16 | ids::TPM as u64, 0);
        if r[0] != ffa::MSG_SEND_DIRECT_RESP_64 || r[1] != (ids::TPM as u64) << 16 | 5 {
            return Err(fail_eq("answer", word(&r), ffa::MSG_SEND_DIRECT_RESP_64));
        }
        Ok(())
    });
    h.check("direct-req2-garbage-uuid", || {
        let r = ffa::req2(ids::SP2, [0xDEAD, 0xBEEF, 0xF00D, 0xCAFE], &[cmd::ECHO]);
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")
    });
    h.check("direct-req2-to-0x8123", || {
        let r = ffa::req2(0x8123, [0; 4], &[cmd::ECHO]);
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")
    });
    h.check("direct-req2-to-spmc", || {
        let r = ffa::req2(0x8000, [0; 4], &[cmd::ECHO]);
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")
    });
    // §15.3/§15.5: the normal world receives no direct requests, so it has
    // none to answer: the response ABIs are not for it.
    for (name, f) in [
        ("direct-resp-32-from-nwd", ffa::MSG_SEND_DIRECT_RESP_32),
        ("direct-resp-64-from-nwd", ffa::MSG_SEND_DIRECT_RESP_64),
        ("direct-resp2-from-nwd", ffa::MSG_SEND_DIRECT_RESP2_64),
    ] {
        h.check(name, || {
            let r = call(f, &[0x8001, 0, 0, 0, 0, 0, 0]);
            let feat = call(ffa::FEATURES, &[f]);
            if code(&feat) == ffa::NOT_SUPPORTED {
                expect_error(
                    &r,
                    ffa::NOT_SUPPORTED,
                    "answer (FFA_FEATURES: not supported)",
                )
            } else {
                expect_error(&r, ffa::DENIED, "answer")
            }
        });
    }
}

/// §13.x FFA_RUN of bogus targets.
fn run_calls(h: &mut Hostile<'_>) {
    let cases: &[(&str, u64, i32)] = &[
        (
            "run-vcpu-1-of-up-partition",
            (ids::SP1 as u64) << 16 | 1,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "run-vcpu-0xffff",
            (ids::SP1 as u64) << 16 | 0xFFFF,
            ffa::INVALID_PARAMETERS,
        ),
        ("run-the-normal-world", 0, ffa::INVALID_PARAMETERS),
        ("run-the-spmc", 0x8000 << 16, ffa::INVALID_PARAMETERS),
        ("run-template", 0x8010 << 16, ffa::INVALID_PARAMETERS),
        (
            "run-refused-partition",
            0x8007 << 16,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "run-unused-instance-id",
            0x813F << 16,
            ffa::INVALID_PARAMETERS,
        ),
        ("run-a-vm", 5 << 16, ffa::INVALID_PARAMETERS),
    ];
    for (name, w1, want) in cases {
        h.check(name, || {
            expect_error(&irq::finish(call(ffa::RUN, &[*w1])), *want, "answer")
        });
    }
}

/// Writes a v1.2 message header into TX with the given fields and 8 bytes
/// of payload at offset 40.
fn header(flags: u32, offset: u32, sender: u16, receiver: u16, size: u32) {
    let mut hdr = [0u8; 48];
    hdr[0..4].copy_from_slice(&flags.to_le_bytes());
    hdr[8..12].copy_from_slice(&offset.to_le_bytes());
    hdr[12..14].copy_from_slice(&receiver.to_le_bytes());
    hdr[14..16].copy_from_slice(&sender.to_le_bytes());
    hdr[16..20].copy_from_slice(&size.to_le_bytes());
    hdr[40..48].copy_from_slice(&0xBAD0_BAD0_u64.to_le_bytes());
    ffa::tx_write(0, &hdr);
}

/// A bad indirect message: name, header flags, offset, sender, receiver,
/// size, the call's w1[31:16] (in bits 47:32) and w2, and the error.
type Send2Case = (&'static str, u32, u32, u16, u16, u32, u64, i32);

/// §15.6 FFA_MSG_SEND2 with bad headers (Table 15.x partition message
/// header) and bad calls.
fn send2(h: &mut Hostile<'_>) {
    let sp2 = ids::SP2;
    let cases: &[Send2Case] = &[
        (
            "send2-offset-inside-header",
            0,
            16,
            0,
            sp2,
            8,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-offset-zero",
            0,
            0,
            0,
            sp2,
            8,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-size-zero",
            0,
            40,
            0,
            sp2,
            0,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-size-wraps",
            0,
            40,
            0,
            sp2,
            0xFFFF_FFF0,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-past-tx",
            0,
            4090,
            0,
            sp2,
            16,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-offset-huge",
            0,
            0xFFFF_FFF8,
            0,
            sp2,
            8,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-header-flags-reserved",
            1,
            40,
            0,
            sp2,
            8,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-forged-secure-sender",
            0,
            40,
            ids::SP1,
            sp2,
            8,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-to-itself",
            0,
            40,
            0,
            0,
            8,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-to-another-vm",
            0,
            40,
            0,
            5,
            8,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-to-0x8123",
            0,
            40,
            0,
            0x8123,
            8,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-to-spmc",
            0,
            40,
            0,
            0x8000,
            8,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-to-no-indirect-partition",
            0,
            40,
            0,
            ids::CRASH_UNDEF,
            8,
            0,
            ffa::DENIED,
        ),
        (
            "send2-call-flags-reserved",
            0,
            40,
            0,
            sp2,
            8,
            1,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "send2-call-flags-all-ones",
            0,
            40,
            0,
            sp2,
            8,
            0xFFFF_FFFF,
            ffa::INVALID_PARAMETERS,
        ),
        // w1[31:16] names the VM a hypervisor sends for: the header's
        // sender must be that VM.
        (
            "send2-w1-vm-not-header-sender",
            0,
            40,
            0,
            sp2,
            8,
            3 << 32,
            ffa::INVALID_PARAMETERS,
        ),
    ];
    for (name, fl, offset, sender, receiver, size, w, want) in cases {
        h.check(name, || {
            header(*fl, *offset, *sender, *receiver, *size);
            let r = call(ffa::MSG_SEND2, &[*w >> 32 << 16, *w & 0xFFFF_FFFF]);
            if r[0] as u32 as u64 == ffa::SUCCESS_32 {
                // Delivered by mistake: let sp2 take it.
                irq::finish(call(ffa::RUN, &[(*receiver as u64) << 16]));
            }
            expect_error(&r, *want, "answer")
        });
    }
    h.check("send2-receiver-rx-full-busy", || {
        header(0, 40, 0, sp2, 8);
        let first = call(ffa::MSG_SEND2, &[0, 0]);
        let second = call(ffa::MSG_SEND2, &[0, 0]);
        let run = irq::finish(call(ffa::RUN, &[(sp2 as u64) << 16]));
        expect_success(&first, "first")?;
        expect_error(&second, ffa::BUSY, "second, sp2's RX full")?;
        if run[0] != ffa::MSG_WAIT {
            return Err(fail_eq("FFA_RUN of sp2", word(&run), ffa::MSG_WAIT));
        }
        Ok(())
    });
    h.check("send2-without-tx-buffer", || {
        header(0, 40, 0, sp2, 8);
        let r = rxtx_attempt(|| call(ffa::MSG_SEND2, &[0, 0]));
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")
    });
}

/// §18.3 VM availability messages (VM created / destroyed) with bad fields.
fn vm_availability(h: &mut Hostile<'_>) {
    use ffa::fwk::{VM_CREATED, VM_DESTROYED};
    let inval = ffa::INVALID_PARAMETERS;
    h.check("vm-created-vm-0", || {
        check_ack(&vm_message(VM_CREATED, 0), VM_CREATED, inval, "ack")
    });
    h.check("vm-created-secure-id", || {
        check_ack(&vm_message(VM_CREATED, 0x8001), VM_CREATED, inval, "ack")
    });
    h.check("vm-created-w5-reserved-bits", || {
        let r = vm_message(VM_CREATED, 0x1_0002);
        if check_ack(&r, VM_CREATED, 0, "ack").is_ok() {
            vm_message(VM_DESTROYED, 2);
            vm_message(VM_DESTROYED, 0x1_0002);
        }
        check_ack(&r, VM_CREATED, inval, "ack")
    });
    h.check("vm-created-64-x5-upper-half", || {
        let mut r = [0u64; 18];
        r[0] = ffa::MSG_SEND_DIRECT_REQ_64;
        r[1] = ids::VTEE_TEMPLATE as u64;
        r[2] = (ffa::fwk::FLAG | VM_CREATED) as u64;
        r[3] = u64::MAX;
        r[5] = 0x1_0000_0000 | 2;
        baremetal::smc(&mut r);
        let r = irq::finish(r);
        if check_ack(&r, VM_CREATED, 0, "ack").is_ok() {
            vm_message(VM_DESTROYED, 2);
        }
        check_ack(&r, VM_CREATED, inval, "ack")
    });
    h.check("vm-created-twice", || {
        let first = irq::finish(vm_message(VM_CREATED, 4));
        let second = irq::finish(vm_message(VM_CREATED, 4));
        let gone = vm_message(VM_DESTROYED, 4);
        check_ack(&first, VM_CREATED, 0, "first ack")?;
        check_ack(&second, VM_CREATED, inval, "second ack")?;
        check_ack(&gone, VM_DESTROYED, 0, "destroyed ack")
    });
    h.check("vm-destroyed-never-created", || {
        check_ack(&vm_message(VM_DESTROYED, 9), VM_DESTROYED, inval, "ack")
    });
    // Issue 9 item 5: w5[31:16] is reserved for VM destroyed too; 0x1_0001
    // must not destroy VM 1's TEE.
    h.check("vm-destroyed-w5-reserved-bits", || {
        let made = irq::finish(vm_message(VM_CREATED, 1));
        check_ack(&made, VM_CREATED, 0, "VM 1 created")?;
        let r = vm_message(VM_DESTROYED, 0x1_0001);
        let gone = vm_message(VM_DESTROYED, 1);
        check_ack(&r, VM_DESTROYED, inval, "ack of the bad message")?;
        check_ack(&gone, VM_DESTROYED, 0, "VM 1 destroyed afterwards")
    });
    // Only endpoint 0 (the hypervisor) sends them; a VM ID as sender is
    // forged (DENIED).
    h.check("vm-created-from-a-vm", || {
        let mut r = [0u64; 18];
        r[0] = ffa::MSG_SEND_DIRECT_REQ_32;
        r[1] = 3 << 16 | ids::VTEE_TEMPLATE as u64;
        r[2] = (ffa::fwk::FLAG | VM_CREATED) as u64;
        r[5] = 3;
        baremetal::smc(&mut r);
        expect_error(&r, ffa::DENIED, "answer")
    });
    // To a partition that is no template (sp1 does not subscribe, §18.3).
    h.check("vm-created-to-static-partition", || {
        let mut r = [0u64; 18];
        r[0] = ffa::MSG_SEND_DIRECT_REQ_32;
        r[1] = ids::SP1 as u64;
        r[2] = (ffa::fwk::FLAG | VM_CREATED) as u64;
        r[5] = 3;
        baremetal::smc(&mut r);
        expect_error(&irq::finish(r), ffa::INVALID_PARAMETERS, "answer")
    });
    // The acknowledgements are the SPMC's to send, not the normal world's.
    h.check("vm-created-ack-from-nwd", || {
        let r = vm_message(ffa::fwk::VM_CREATED_ACK, 3);
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")
    });
}

/// The bytes of a v1.2 send from the normal world of `ranges` to `to`.
fn descriptor(to: &[Receiver], ranges: &[Range], buf: &mut [u8]) -> usize {
    let list = List(ranges);
    let t = kit::nwd_send(Layout::V1_2, to, &list);
    t.write(buf).unwrap_or(0)
}

/// Shares `pages` pages at `addr` with `to` (v1.2, in as many fragments as
/// it takes) with `f`: the last answer and the handle.
fn send_range(f: u64, to: &[Receiver], addr: u64, pages: u32) -> kit::Sent {
    let ranges = [Range { addr, pages }];
    let list = List(&ranges);
    let t = kit::nwd_send(Layout::V1_2, to, &list);
    kit::send(f, &t)
}

/// Shares one page with `to`; fails unless it worked. The handle.
fn share_one(to: &[Receiver], addr: u64) -> Result<u64, crate::report::Fail> {
    let s = send_range(func::SHARE_64, to, addr, 1);
    expect_success(&s.r, "FFA_MEM_SHARE_64 of one page")?;
    Ok(s.handle)
}

/// Sends `buf[..len]` from TX with FFA_MEM_SHARE_64 (one fragment);
/// reclaims what succeeded by mistake.
fn share_bytes(buf: &[u8]) -> Regs {
    ffa::tx_write(0, buf);
    let r = call(func::SHARE_64, &[buf.len() as u64, buf.len() as u64, 0, 0]);
    undo(&r);
    r
}

/// Reclaims (or finishes) a send the SPMC should not have taken.
fn undo(r: &Regs) {
    if kit::success(r) {
        kit::reclaim(kit::handle_of(r), 0);
    }
}

/// Offsets in a v1.2 send descriptor with one 32-byte EMAD.
const EMAD0: usize = 48;
const COMPOSITE: usize = 80;

/// DEN0140 (memory management) and the contract of docs/memory-sharing.md:
/// descriptors built to wrap, exhaust or lie.
fn memory(h: &mut Hostile<'_>) {
    let end = ram_end();
    let sp1 = [Receiver::new(ids::SP1, perm::RW)];
    let one = |addr: u64, pages: u32| [Range { addr, pages }];
    // Ranges the normal world does not own, or that wrap.
    let cases: &[(&str, u64, u32, i32)] = &[
        (
            "mem-share-range-wraps",
            0xFFFF_FFFF_FFFF_F000,
            2,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-range-end-wraps",
            0xFFFF_FFFF_FF80_0000,
            0x1000,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-range-unaligned",
            kit::ARENA + 0x10,
            1,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-range-zero-pages",
            kit::ARENA,
            0,
            ffa::INVALID_PARAMETERS,
        ),
        ("mem-share-range-secure", 0x0e50_0000, 1, ffa::DENIED),
        ("mem-share-range-spmc-image", 0x0e10_0000, 1, ffa::DENIED),
        ("mem-share-range-uart", 0x0900_0000, 1, ffa::DENIED),
        ("mem-share-range-just-above-ram", end, 1, ffa::DENIED),
        (
            "mem-share-range-straddles-end-of-ram",
            end - 0x1000,
            2,
            ffa::DENIED,
        ),
    ];
    for (name, addr, pages, want) in cases {
        h.check(name, || {
            let mut buf = [0u8; 256];
            let n = descriptor(&sp1, &one(*addr, *pages), &mut buf);
            expect_error(&share_bytes(&buf[..n]), *want, "answer")
        });
    }
    // Fields patched after writing a good descriptor of one page.
    type Patch = fn(&mut [u8]);
    let patches: &[(&str, Patch, i32)] = &[
        (
            "mem-share-emad-count-zero",
            |b| put32(b, off::EMAD_COUNT, 0),
            ffa::INVALID_PARAMETERS,
        ),
        // Past the contract's limit of 8 receivers: NO_MEMORY.
        (
            "mem-share-emad-count-huge",
            |b| put32(b, off::EMAD_COUNT, 0xFFFF_FFFF),
            ffa::NO_MEMORY,
        ),
        // Three EMADs claimed, one written: the other two are the composite.
        (
            "mem-share-emad-count-lies",
            |b| put32(b, off::EMAD_COUNT, 3),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-emad-size-17",
            |b| put32(b, off::EMAD_SIZE, 17),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-emad-offset-unaligned",
            |b| put32(b, off::EMAD_OFFSET, 49),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-emad-offset-past-end",
            |b| put32(b, off::EMAD_OFFSET, 0xFFFF_FFF0),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-composite-offset-zero",
            |b| put32(b, EMAD0 + off::EMAD_COMPOSITE, 0),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-composite-offset-past-end",
            |b| put32(b, EMAD0 + off::EMAD_COMPOSITE, 0x1000),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-composite-offset-wraps",
            |b| put32(b, EMAD0 + off::EMAD_COMPOSITE, 0xFFFF_FFF0),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-composite-page-count-lies",
            |b| put32(b, COMPOSITE + off::COMPOSITE_PAGES, 2),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-range-count-lies",
            |b| put32(b, COMPOSITE + off::COMPOSITE_RANGES, 0x0FFF_FFFF),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-handle-not-zero",
            |b| put64(b, off::HANDLE, 0x1234),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-forged-secure-sender",
            |b| put16(b, off::SENDER, ids::SP2),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-receiver-is-sender",
            |b| put16(b, EMAD0 + off::EMAD_ENDPOINT, 0),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-receiver-0x8123",
            |b| put16(b, EMAD0 + off::EMAD_ENDPOINT, 0x8123),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-receiver-spmc",
            |b| put16(b, EMAD0 + off::EMAD_ENDPOINT, 0x8000),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-receiver-refused-partition",
            |b| put16(b, EMAD0 + off::EMAD_ENDPOINT, 0x8007),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-reserved-flags",
            |b| put32(b, off::FLAGS, 0xFFFF_0000),
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-bad-permissions",
            |b| b[EMAD0 + off::EMAD_PERMS] = 0xFF,
            ffa::INVALID_PARAMETERS,
        ),
        // VM 5 names itself as sender (a hypervisor acting for it): it may
        // not reach sp1 (the per-user rule).
        (
            "mem-share-as-other-vm-denied",
            |b| put16(b, off::SENDER, 5),
            ffa::DENIED,
        ),
    ];
    for (name, patch, want) in patches {
        h.check(name, || {
            let page = kit::alloc(1)?;
            let mut buf = [0u8; 256];
            let n = descriptor(&sp1, &one(page, 1), &mut buf);
            patch(&mut buf[..n]);
            expect_error(&share_bytes(&buf[..n]), *want, "answer")
        });
    }
    h.check("mem-share-same-receiver-twice", || {
        let page = kit::alloc(1)?;
        let two = [sp1[0], sp1[0]];
        let mut buf = [0u8; 256];
        let n = descriptor(&two, &one(page, 1), &mut buf);
        expect_error(&share_bytes(&buf[..n]), ffa::INVALID_PARAMETERS, "answer")
    });
    h.check("mem-share-overlapping-ranges", || {
        let page = kit::alloc(2)?;
        let mut buf = [0u8; 256];
        let ranges = [
            Range {
                addr: page,
                pages: 2,
            },
            Range {
                addr: page + kit::PAGE,
                pages: 1,
            },
        ];
        let n = descriptor(&sp1, &ranges, &mut buf);
        expect_error(&share_bytes(&buf[..n]), ffa::INVALID_PARAMETERS, "answer")
    });
    // Lengths in the call.
    let len_cases: &[(&str, u64, u64, i32)] = &[
        ("mem-share-total-length-zero", 0, 0, ffa::INVALID_PARAMETERS),
        (
            "mem-share-fragment-longer-than-total",
            100,
            200,
            ffa::INVALID_PARAMETERS,
        ),
        (
            "mem-share-fragment-longer-than-tx",
            8192,
            8192,
            ffa::INVALID_PARAMETERS,
        ),
        ("mem-share-fragment-zero", 4096, 0, ffa::INVALID_PARAMETERS),
        ("mem-share-total-4g", 0xFFFF_FFFF, 4096, ffa::NO_MEMORY),
        (
            "mem-share-total-past-limit",
            256 * 1024 + 4096,
            4096,
            ffa::NO_MEMORY,
        ),
    ];
    for (name, total, frag, want) in len_cases {
        h.check(name, || {
            let page = kit::alloc(1)?;
            let mut buf = [0u8; 256];
            let n = descriptor(&sp1, &one(page, 1), &mut buf);
            ffa::tx_write(0, &buf[..n]);
            let r = call(func::SHARE_64, &[*total, *frag, 0, 0]);
            undo(&r);
            expect_error(&r, *want, "answer")
        });
    }
    // Issue 9 item 9 / contract: a fragmented send whose total length is
    // more than the descriptor needs (a tail of nothing) is malformed.
    h.check("mem-share-total-longer-than-descriptor", || {
        let page = kit::alloc(1)?;
        let mut buf = [0u8; 256];
        let n = descriptor(&sp1, &one(page, 1), &mut buf);
        ffa::tx_write(0, &buf[..n]);
        let first = call(func::SHARE_64, &[n as u64 + 4096, n as u64, 0, 0]);
        let mut last = first;
        if last[0] as u32 as u64 == func::FRAG_RX {
            let h = kit::w(&last, 1) | kit::w(&last, 2) << 32;
            ffa::tx_write(0, &[0u8; 4096]);
            last = call(func::FRAG_TX, &[h & 0xFFFF_FFFF, h >> 32, 4096, 0]);
            // A refused fragment leaves the send in flight; reclaiming it
            // cancels it (docs/memory-sharing.md). Either way it is gone.
            kit::reclaim(h, 0);
        }
        expect_error(&last, ffa::INVALID_PARAMETERS, "answer to the tail")
    });
    // docs/memory-sharing.md: reclaiming a send still arriving in fragments
    // cancels it; its handle is then unknown (and its quota slot free).
    h.check("mem-frag-send-cancelled-by-reclaim", || {
        let base = kit::alloc(600)?;
        let ranges = Strided {
            base,
            pages: 1,
            stride: 2 * kit::PAGE,
            count: 300,
        };
        let t = kit::nwd_send(Layout::V1_2, &sp1, &ranges);
        let s = kit::send_upto(func::SHARE_64, &t, 1);
        if kit::w0(&s.r) != func::FRAG_RX {
            undo(&s.r);
            return Err(fail_eq(
                "first fragment's answer",
                word(&s.r),
                func::FRAG_RX,
            ));
        }
        let cancel = kit::reclaim(s.handle, 0);
        let after = call(
            func::FRAG_TX,
            &[s.handle & 0xFFFF_FFFF, s.handle >> 32, 16, 0],
        );
        expect_success(&cancel, "FFA_MEM_RECLAIM of the send in flight")?;
        expect_error(&after, ffa::INVALID_PARAMETERS, "FFA_MEM_FRAG_TX after it")?;
        kit::still_shareable(base, 1)
    });
    h.check("mem-frag-tx-past-total", frag_tx_past_total);
    h.check("mem-frag-tx-unknown-handle", || {
        expect_error(
            &call(func::FRAG_TX, &[0xDEAD, 0, 16, 0]),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    h.check("mem-frag-tx-completed-handle", || {
        let page = kit::alloc(1)?;
        let handle = share_one(&sp1, page)?;
        let r = call(func::FRAG_TX, &[handle & 0xFFFF_FFFF, handle >> 32, 16, 0]);
        let back = kit::reclaim(handle, 0);
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")?;
        expect_success(&back, "reclaim")
    });
    // Issue 9 item 9 (Hafnium refuses it): the normal world's own RX/TX
    // pages, which the SPMC writes and reads, cannot be lent or shared.
    for (name, rx, f) in [
        ("mem-share-own-tx-buffer", false, func::SHARE_64),
        ("mem-lend-own-tx-buffer", false, func::LEND_64),
        ("mem-share-own-rx-buffer", true, func::SHARE_64),
        ("mem-donate-own-rx-buffer", true, func::DONATE_64),
    ] {
        h.check(name, || {
            let addr = if rx { ffa::rx_addr() } else { ffa::tx_addr() };
            // DEN0140: a donor leaves the access unspecified.
            let perms = if f == func::DONATE_64 { 0 } else { perm::RW };
            let to = [Receiver::new(ids::SP1, perms)];
            let s = send_range(f, &to, addr, 1);
            undo(&s.r);
            expect_error(&s.r, ffa::DENIED, "answer")
        });
    }
    // Reclaims out of turn.
    h.check("mem-reclaim-unknown-handle", || {
        expect_error(
            &kit::reclaim(0x0BAD_0000_DEAD, 0),
            ffa::INVALID_PARAMETERS,
            "answer",
        )
    });
    h.check("mem-reclaim-reserved-flags", || {
        let page = kit::alloc(1)?;
        let handle = share_one(&sp1, page)?;
        let r = kit::reclaim(handle, 0xFFFF_FFF0);
        let back = kit::reclaim(handle, 0);
        expect_error(&r, ffa::INVALID_PARAMETERS, "answer")?;
        expect_success(&back, "reclaim")
    });
    h.check("mem-reclaim-twice", || {
        let page = kit::alloc(1)?;
        let handle = share_one(&sp1, page)?;
        let first = kit::reclaim(handle, 0);
        let second = kit::reclaim(handle, 0);
        expect_success(&first, "first")?;
        expect_error(&second, ffa::INVALID_PARAMETERS, "second")
    });
    h.check("mem-reclaim-while-borrowed", || {
        let page = kit::alloc(1)?;
        let s = send_range(func::LEND_64, &sp1, page, 1);
        expect_success(&s.r, "FFA_MEM_LEND_64")?;
        let handle = s.handle;
        let g = kit::retrieve(ids::SP1, &kit::Ask::new(handle, 0, flags::TYPE_LEND))?;
        let r = kit::reclaim(handle, 0);
        let rel = kit::relinquish(ids::SP1, handle, 0);
        let back = kit::reclaim(handle, 0);
        g.ok()?;
        expect_error(&r, ffa::DENIED, "reclaim while sp1 holds it")?;
        kit::expect_answer(rel?, ffa::SUCCESS_32, "relinquish")?;
        expect_success(&back, "reclaim")
    });
    h.check("mem-sixty-five-in-flight", in_flight_limit);
    h.check("mem-fragmented-sends-in-flight", fragmented_in_flight);
}

/// One fragmented send that the sender tries to continue past its total.
fn frag_tx_past_total() -> Outcome {
    let base = kit::alloc(600)?;
    let ranges = Strided {
        base,
        pages: 1,
        stride: 2 * kit::PAGE,
        count: 300,
    };
    let sp1 = [Receiver::new(ids::SP1, perm::RW)];
    let t = kit::nwd_send(Layout::V1_2, &sp1, &ranges);
    // Stop after the first fragment, then send one longer than what is left.
    let s = kit::send_upto(func::SHARE_64, &t, 1);
    if kit::w0(&s.r) != func::FRAG_RX {
        undo(&s.r);
        return Err(fail_eq(
            "first fragment's answer",
            word(&s.r),
            func::FRAG_RX,
        ));
    }
    let left = t.len() as u64 - kit::w(&s.r, 3);
    let too_long = call(
        func::FRAG_TX,
        &[s.handle & 0xFFFF_FFFF, s.handle >> 32, left + 16, 0],
    );
    // Then finish it properly (or it holds its pages for good).
    let mut sent = kit::w(&s.r, 3) as usize;
    let mut r = s.r;
    while kit::w0(&r) == func::FRAG_RX {
        let next = t.fragment_len(sent, kit::TX_SIZE);
        if next == 0 {
            break;
        }
        kit::part_to_tx(&t, sent, next);
        r = call(
            func::FRAG_TX,
            &[s.handle & 0xFFFF_FFFF, s.handle >> 32, next as u64, 0],
        );
        sent += next;
    }
    undo(&r);
    expect_error(
        &too_long,
        ffa::INVALID_PARAMETERS,
        "FFA_MEM_FRAG_TX past the total",
    )?;
    expect_success(&r, "the rest of the send")
}

/// The contract's limit of 64 transactions in flight: the 65th answers
/// NO_MEMORY, and all 64 reclaim.
fn in_flight_limit() -> Outcome {
    let base = kit::alloc(65)?;
    let sp1 = [Receiver::new(ids::SP1, perm::RW)];
    let mut handles = [0u64; 65];
    let mut n = 0;
    let mut last = [0u64; 18];
    for (i, h) in handles.iter_mut().enumerate() {
        let s = send_range(func::SHARE_64, &sp1, base + i as u64 * kit::PAGE, 1);
        last = s.r;
        if !kit::success(&s.r) {
            break;
        }
        *h = s.handle;
        n += 1;
    }
    let mut bad = 0;
    for h in &handles[..n] {
        if !kit::success(&kit::reclaim(*h, 0)) {
            bad += 1;
        }
    }
    if n != 64 {
        return Err(fail_eq("transactions accepted", n as u64, 64));
    }
    expect_error(&last, ffa::NO_MEMORY, "the 65th")?;
    if bad != 0 {
        return Err(fail_eq("reclaims that failed", bad, 0));
    }
    Ok(())
}

/// Issue 9 item 8: several large fragmented sends in flight at once (each
/// legal on its own). Each first fragment is taken or refused with
/// NO_MEMORY; fragments that follow are taken or refused with NO_MEMORY;
/// the SPMC never panics; everything that was taken completes and reclaims.
fn fragmented_in_flight() -> Outcome {
    const SENDS: usize = 8;
    // 1,000 one-page ranges each: a 16 KiB descriptor in 4-5 fragments.
    const RANGES: usize = 1000;
    let base = kit::alloc((SENDS * RANGES) as u64)?;
    let sp1 = [Receiver::new(ids::SP1, perm::RW)];
    let mut handles = [0u64; SENDS];
    let mut sent = [0usize; SENDS];
    let mut started = 0;
    let t_of = |i: usize| Strided {
        base: base + i as u64 * kit::PAGE,
        pages: 1,
        stride: SENDS as u64 * kit::PAGE,
        count: RANGES,
    };
    // Start all of them (first fragment only).
    for i in 0..SENDS {
        let ranges = t_of(i);
        let t = kit::nwd_send(Layout::V1_2, &sp1, &ranges);
        let s = kit::send_upto(func::SHARE_64, &t, 1);
        if kit::w0(&s.r) == func::FRAG_RX {
            handles[i] = s.handle;
            sent[i] = kit::w(&s.r, 3) as usize;
            started += 1;
        } else {
            expect_error(&s.r, ffa::NO_MEMORY, "a first fragment refused")?;
        }
    }
    // Continue them round-robin to the end.
    let mut done = 0;
    let mut refused = 0;
    let mut bad = 0u64;
    loop {
        let mut progress = false;
        for i in 0..SENDS {
            if handles[i] == 0 {
                continue;
            }
            let ranges = t_of(i);
            let t = kit::nwd_send(Layout::V1_2, &sp1, &ranges);
            let next = t.fragment_len(sent[i], kit::TX_SIZE);
            kit::part_to_tx(&t, sent[i], next);
            let h = handles[i];
            let r = call(func::FRAG_TX, &[h & 0xFFFF_FFFF, h >> 32, next as u64, 0]);
            sent[i] += next;
            progress = true;
            if kit::success(&r) {
                if !kit::success(&kit::reclaim(h, 0)) {
                    bad |= 1 << (2 * i);
                }
                handles[i] = 0;
                done += 1;
            } else if kit::w0(&r) != func::FRAG_RX {
                if ffa::code(&r) != ffa::NO_MEMORY {
                    bad |= 2 << (2 * i);
                }
                // A refused fragment leaves the send in flight: cancel it.
                if !kit::success(&kit::reclaim(h, 0)) {
                    bad |= 2 << (2 * i);
                }
                handles[i] = 0;
                refused += 1;
            }
        }
        if !progress {
            break;
        }
    }
    crate::say!(
        "hostile: fragmented sends in flight: {started} started, {done} completed, {refused} refused"
    );
    if bad != 0 {
        return Err(fail_eq("sends that went wrong (bit mask)", bad, 0));
    }
    if started == 0 {
        return Err(fail_eq("sends started", 0, SENDS as u64));
    }
    // What was refused left nothing behind: the memory can be shared again.
    kit::still_shareable(base, 1)
}

/// Storms of calls from the normal world.
fn storms(h: &mut Hostile<'_>) {
    h.check("storm-10000-version", || {
        for _ in 0..10_000 {
            let v = ffa::version(ffa::V1_2);
            if v != ffa::V1_2 {
                return Err(fail_eq(
                    "FFA_VERSION in the storm",
                    v as u64,
                    ffa::V1_2 as u64,
                ));
            }
        }
        Ok(())
    });
    h.check("storm-5000-not-supported", || {
        for i in 0..5_000u64 {
            let f = NOT_FOR_NWD[i as usize % NOT_FOR_NWD.len()].1;
            let r = call(f, &[i, !i, i << 7]);
            if ffa::code(&r) != ffa::NOT_SUPPORTED {
                return Err(fail_eq(
                    "answer in the storm",
                    word(&r),
                    error_word(ffa::NOT_SUPPORTED),
                ));
            }
        }
        Ok(())
    });
    h.check("storm-3000-direct-requests", || {
        for i in 0..3_000u64 {
            let sp = super::HEALTHY[(i % 3) as usize];
            let r = irq::finish(ffa::cmd(sp, cmd::ECHO, [i, !i, 0, 0]));
            if r[0] != ffa::MSG_SEND_DIRECT_RESP_64 || r[4] != i || r[5] != !i {
                return Err(fail_eq(
                    "echo in the storm",
                    word(&r),
                    ffa::MSG_SEND_DIRECT_RESP_64,
                ));
            }
        }
        Ok(())
    });
    h.check("storm-1000-discovery", || {
        for _ in 0..1_000 {
            let r = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 0]);
            expect_success(&r, "FFA_PARTITION_INFO_GET in the storm")?;
            expect_success(&call(ffa::RX_RELEASE, &[0]), "FFA_RX_RELEASE in the storm")?;
        }
        Ok(())
    });
    h.check("storm-300-unmap-map", || {
        for _ in 0..300 {
            expect_success(&call(ffa::RXTX_UNMAP, &[0]), "unmap in the storm")?;
            expect_success(&ffa::map_buffers(), "map in the storm")?;
        }
        Ok(())
    });
    h.check("storm-300-share-reclaim", || {
        let page = kit::alloc(1)?;
        let sp1 = [Receiver::new(ids::SP1, perm::RW)];
        for _ in 0..300 {
            let handle = share_one(&sp1, page)?;
            expect_success(&kit::reclaim(handle, 0), "reclaim in the storm")?;
        }
        Ok(())
    });
    h.check("storm-500-indirect-messages", || {
        let before = super::partition::command(ids::SP2, cmd::LAST_MSG, [0; 4])?[3];
        for i in 0..500u64 {
            ffa::tx_message(0, ids::SP2, &i.to_le_bytes());
            expect_success(&call(ffa::MSG_SEND2, &[0, 0]), "FFA_MSG_SEND2 in the storm")?;
            let r = irq::finish(call(ffa::RUN, &[(ids::SP2 as u64) << 16]));
            if r[0] != ffa::MSG_WAIT {
                return Err(fail_eq("FFA_RUN in the storm", word(&r), ffa::MSG_WAIT));
            }
        }
        let [_, first, _, count] = super::partition::command(ids::SP2, cmd::LAST_MSG, [0; 4])?;
        if count != before + 500 || first != 499 {
            return Err(fail_eq("messages sp2 took", count - before, 500));
        }
        Ok(())
    });
    h.check("storm-100-vm-create-destroy", || {
        for _ in 0..100 {
            let made = irq::finish(vm_message(ffa::fwk::VM_CREATED, 3));
            check_ack(&made, ffa::fwk::VM_CREATED, 0, "VM created in the storm")?;
            let gone = vm_message(ffa::fwk::VM_DESTROYED, 3);
            check_ack(
                &gone,
                ffa::fwk::VM_DESTROYED,
                0,
                "VM destroyed in the storm",
            )?;
        }
        Ok(())
    });
}
