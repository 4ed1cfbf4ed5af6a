//! End-to-end checks of the secure partitions: discovery, RX/TX buffers,
//! direct and indirect messages, scheduling, the console, FP/SIMD state,
//! boot information and faults. Section numbers are DEN0077 v1.2.

use test_protocol::{
    TPM_GET_INTERFACE_VERSION, TPM_INTERFACE_VERSION, TPM_OK, cmd, ids, layout, status, uuids,
};

use crate::board;
use crate::ffa::{self, Regs, call, code};
use crate::report::{Outcome, Report};
use crate::{ensure, ensure_eq};

/// Descriptors a nil-UUID discovery returns while every partition is alive:
/// six partitions, sp2 with two UUIDs.
const ALL_DESCRIPTORS: u64 = 7;

/// Runs every partition check in order (faults last: they abort partitions).
pub fn run(r: &mut Report) {
    // §13.5-13.7: RX/TX buffers.
    r.check("rxtx-map-secure-memory-refused", || {
        map_refused(board::SECURE_POOL, board::SECURE_POOL + 0x1000, 1)
    });
    // Above the RAM QEMU has (-m 2G from 1 GiB): the SPMC manifest's
    // ns-memory node, not a fixed board range, says what is RAM.
    r.check("rxtx-map-above-machine-ram-refused", || {
        map_refused(board::RAM_END, board::RAM_END + 0x1000, 1)
    });
    r.check("rxtx-map-rx-above-machine-ram-refused", || {
        map_refused(ffa::tx_addr(), board::RAM_END - 0x1000, 2)
    });
    r.check("rxtx-map-unaligned-refused", || {
        map_refused(ffa::tx_addr() + 8, ffa::rx_addr(), 1)
    });
    r.check("rxtx-map-zero-pages-refused", || {
        map_refused(ffa::tx_addr(), ffa::rx_addr(), 0)
    });
    r.check("rxtx-map-too-many-pages-refused", || {
        map_refused(ffa::tx_addr(), ffa::rx_addr(), 17)
    });
    r.check("rxtx-map-same-buffer-refused", || {
        map_refused(ffa::tx_addr(), ffa::tx_addr(), 1)
    });
    r.check("rxtx-map", rxtx_map);
    r.check("rxtx-map-twice-denied", rxtx_map_twice);
    r.check("rxtx-unmap-and-map-again", rxtx_unmap_remap);
    r.check("features-rxtx-map-properties", features_rxtx_map);
    r.check("rx-release-without-message-denied", rx_release_empty);
    // §13.8, §13.9: discovery.
    r.check("partition-info-count-only", partition_info_count);
    r.check("partition-info-all", partition_info_all);
    r.check("partition-info-rx-busy-until-release", partition_info_busy);
    r.check("partition-info-by-uuid", || {
        partition_info_uuid(uuids::SP1, ids::SP1)
    });
    r.check("partition-info-by-second-uuid", || {
        partition_info_uuid(uuids::SP2_B, ids::SP2)
    });
    r.check("partition-info-tpm-uuid", || {
        partition_info_uuid(uuids::TPM, ids::TPM)
    });
    r.check("partition-info-unknown-uuid", partition_info_unknown);
    r.check("partition-info-properties", partition_info_properties);
    // Issue 10 items 8 and 10: discovery as DEN0077 v1.2 reads it.
    r.check("partition-info-count-only-by-uuid-w3-zero", || {
        partition_info_count_uuid(uuids::TPM)
    });
    r.check(
        "partition-info-named-uuid-field-zero",
        partition_info_named_uuid_zero,
    );
    r.check("partition-info-properties-sp2-for-nwd", || {
        nwd_properties(uuids::SP2_B, ids::SP2, 0x30D)
    });
    r.check("partition-info-properties-tpm-for-nwd", || {
        nwd_properties(uuids::TPM, ids::TPM, 0x309)
    });
    r.check("partition-info-properties-crash-for-nwd", || {
        nwd_properties(uuids::CRASH, ids::CRASH_DATA, 0x101)
    });
    r.check(
        "partition-info-regs-properties-for-nwd",
        partition_info_regs_properties,
    );
    r.check("partition-info-regs-properties-by-uuid", || {
        regs_properties(uuids::TPM, ids::TPM, 0x309)
    });
    r.check("sp-partition-info-regs-properties", sp_regs_properties);
    r.check("features-mem-share-w2-reserved-v1.2", || {
        mem_send_features_reserved(MEM_SHARE_32, MEM_SHARE_64)
    });
    r.check("features-mem-lend-w2-reserved-v1.2", || {
        mem_send_features_reserved(MEM_LEND_32, MEM_LEND_64)
    });
    r.check("features-mem-donate-w2-reserved-v1.2", || {
        mem_send_features_reserved(MEM_DONATE_32, MEM_DONATE_64)
    });
    r.check(
        "sp-features-mem-send-w2-reserved-v1.2",
        sp_mem_send_features_reserved,
    );
    r.check("sp-features-retrieve-req-64-needs-ns-bit", || {
        sp_retrieve_features(MEM_RETRIEVE_REQ_64)
    });
    r.check("sp-features-retrieve-req-32-needs-ns-bit", || {
        sp_retrieve_features(MEM_RETRIEVE_REQ_32)
    });
    // §13.2: a partition's version was fixed by its boot (FFA_MSG_WAIT).
    r.check("sp-version-renegotiation-refused", || {
        sp_version_refused(ids::SP1, &[ffa::V1_0, ffa::V1_1])
    });
    r.check("sp-version-same-accepted", sp_version_same);
    r.check(
        "sp-version-refused-changes-nothing",
        sp_version_refused_no_change,
    );
    r.check("partition-info-regs-first", partition_info_regs_first);
    r.check("partition-info-regs-second-call", partition_info_regs_next);
    r.check("partition-info-regs-bad-start", || {
        partition_info_regs_error(ALL_DESCRIPTORS, 0, ffa::INVALID_PARAMETERS)
    });
    r.check("partition-info-regs-bad-tag", || {
        partition_info_regs_error(0, 7, ffa::RETRY)
    });
    r.check(
        "partition-info-regs-unknown-uuid",
        partition_info_regs_unknown,
    );
    r.check("refused-partition-absent", refused_partition_absent);
    // §15.2-15.5: direct messages.
    r.check("direct-req-64-echo", direct_req_64_echo);
    r.check("direct-req-32-echo", direct_req_32_echo);
    r.check("direct-req-add", direct_req_add);
    r.check("direct-req-w2-must-be-zero", direct_req_w2);
    r.check("direct-req-to-spmc-refused", || {
        direct_req_to(0x8000, ffa::INVALID_PARAMETERS)
    });
    r.check("direct-req-to-refused-partition", || {
        direct_req_to(0x8007, ffa::INVALID_PARAMETERS)
    });
    r.check(
        "direct-req-from-secure-sender-refused",
        direct_req_secure_sender,
    );
    r.check("direct-req-x8-x17-preserved", direct_req_upper_preserved);
    r.check("direct-req2-echo", direct_req2_echo);
    r.check("direct-req2-nil-uuid", || {
        direct_req2_uuid(ids::SP2, [0; 4], 0)
    });
    r.check("direct-req2-second-uuid", || {
        direct_req2_uuid(ids::SP2, uuids::SP2_B, 0)
    });
    r.check("direct-req2-wrong-uuid", || {
        direct_req2_uuid(ids::SP2, uuids::SP1, ffa::INVALID_PARAMETERS)
    });
    r.check("direct-req2-not-accepted-denied", || {
        direct_req2_uuid(ids::CRASH_DATA, [0; 4], ffa::DENIED)
    });
    r.check("tpm-interface-version", tpm_interface_version);
    r.check("tpm-interface-version-req2", tpm_interface_version_req2);
    r.check("partition-whoami", whoami);
    r.check("sp-to-sp-direct-request", || {
        forward(ids::SP1, ids::SP2, ffa::MSG_SEND_DIRECT_RESP_64, 0)
    });
    r.check("sp-to-sp-to-self-refused", || {
        forward(ids::SP1, ids::SP1, ffa::ERROR_32, ffa::INVALID_PARAMETERS)
    });
    r.check("sp-to-normal-world-denied", || {
        forward(ids::SP1, 0, ffa::ERROR_32, ffa::DENIED)
    });
    r.check("sp-to-unknown-partition", || {
        forward(ids::SP2, 0x8123, ffa::ERROR_32, ffa::INVALID_PARAMETERS)
    });
    r.check("sp-to-sp-from-another-partition", || {
        forward(ids::TPM, ids::SP1, ffa::MSG_SEND_DIRECT_RESP_64, 0)
    });
    r.check("sp-response-to-wrong-receiver", resp_wrong);
    r.check("sp-msg-wait-while-owing-response", wait_in_request);
    // §13.x: scheduling.
    r.check("yield-then-run", yield_then_run);
    r.check("busy-while-preempted", busy_while_preempted);
    r.check("run-waiting-partition", run_waiting);
    r.check("run-unknown-partition", || {
        run_error((0x8123 << 16) as u64, ffa::INVALID_PARAMETERS)
    });
    r.check("run-bad-vcpu-index", || {
        run_error(((ids::SP1 as u64) << 16) | 5, ffa::INVALID_PARAMETERS)
    });
    // §13.11: console.
    r.check("console-log-64", console_log);
    r.check("console-log-32-count-zero", || console_raw(0));
    r.check("console-log-32-count-too-big", || console_raw(25));
    r.check("console-log-not-for-normal-world", console_from_nwd);
    // The secure virtual instance, seen from a partition.
    r.check("sp-features-msg-wait", || {
        sp_call(
            ids::SP1,
            [ffa::FEATURES, ffa::MSG_WAIT, 0],
            ffa::SUCCESS_32,
            0,
        )
    });
    r.check("sp-features-run-not-supported", || {
        sp_call(
            ids::SP1,
            [ffa::FEATURES, ffa::RUN, 0],
            ffa::ERROR_32,
            ffa::NOT_SUPPORTED,
        )
    });
    r.check("sp-unknown-function", || {
        sp_call(
            ids::SP1,
            [0x8400_00FF, 0, 0],
            ffa::ERROR_32,
            ffa::NOT_SUPPORTED,
        )
    });
    r.check("sp-run-not-supported", || {
        sp_call(
            ids::SP1,
            [ffa::RUN, 0, 0],
            ffa::ERROR_32,
            ffa::NOT_SUPPORTED,
        )
    });
    r.check("sp-rxtx-map-twice-denied", || {
        sp_call(
            ids::SP1,
            [
                ffa::RXTX_MAP_64,
                layout::RAM_IPA + 0x1_0000,
                layout::RAM_IPA + 0x1_1000,
                1,
            ],
            ffa::ERROR_32,
            ffa::DENIED,
        )
    });
    r.check("sp-rx-acquire-not-supported", || {
        sp_call(
            ids::SP1,
            [ffa::RX_ACQUIRE, 0, 0],
            ffa::ERROR_32,
            ffa::NOT_SUPPORTED,
        )
    });
    r.check("sp-partition-info", sp_partition_info);
    // §15.6: indirect messages.
    r.check("send2-normal-world-to-partition", send2_to_partition);
    r.check("send2-receiver-rx-full-busy", send2_busy);
    r.check("send2-bad-offset", send2_bad_offset);
    r.check("send2-sender-mismatch", send2_sender_mismatch);
    r.check("send2-partition-without-indirect-denied", send2_denied);
    r.check("send2-partition-to-normal-world", send2_to_nwd);
    r.check("send2-normal-world-rx-full-busy", send2_to_nwd_busy);
    // FP/SIMD state, saved and restored lazily.
    r.check("fp-state-survives-requests", fp_survives);
    r.check("fp-state-per-partition", fp_per_partition);
    // §5.4: boot information.
    r.check("boot-info-passed", || boot_info(ids::SP2, 1));
    r.check("boot-info-only-when-asked", || boot_info(ids::SP1, 0));
    // A package built the Hafnium way (sp2: sptool layout, entrypoint-offset
    // 0x4000, mem-size, no RAM region) runs in place; §5.4 boot information
    // points into the package.
    r.check("package-in-place-entered-at-offset", || {
        entry_of(ids::SP2, layout::IMAGE_IPA + 0x4000)
    });
    r.check("package-image-alone-entered-at-load-address", || {
        entry_of(ids::SP1, layout::IMAGE_IPA)
    });
    r.check("package-in-place-boot-info-in-package", package_boot_info);
    r.check("package-mem-size-mapped-to-its-end", mem_size_end);
    r.check("package-mem-size-ends-there", || {
        handled_fault(ids::SP2, layout::IMAGE_IPA + 0x6_0000)
    });
    // Stage-2 faults go to the partition's own EL1 first (Hafnium's choice;
    // docs/architecture.md "Faults").
    r.check("fault-injected-outside-regions", || {
        handled_fault(ids::SP1, layout::UNMAPPED_IPA)
    });
    r.check("fault-injected-syndrome", fault_syndrome);
    r.check("fault-injected-partition-runs-on", fault_runs_on);
    r.check("fault-injected-again-next-request", || {
        handled_fault(ids::SP1, layout::UNMAPPED_IPA + 0x1000)
    });
    r.check("fault-injected-other-partitions-memory", || {
        handled_fault(ids::SP1, board::SECURE_POOL)
    });
    r.check("fault-command-reads-mapped-memory", fault_command_reads);
    // Faults: the faulting partition is aborted, the others go on.
    r.check("fault-stage2-data-abort", || {
        fault(ids::CRASH_DATA, cmd::READ, layout::UNMAPPED_IPA)
    });
    r.check("fault-undefined-instruction", || {
        fault(ids::CRASH_UNDEF, cmd::UNDEF, 0)
    });
    // Another partition's memory, read again in its own vector code: it
    // cannot take that fault, so it is aborted.
    r.check("fault-read-other-partition", || {
        ensure_eq!(
            code(&ffa::cmd(
                ids::CRASH_STEAL,
                cmd::FAULT,
                [board::SECURE_POOL, 1, 0, 0]
            )),
            ffa::ABORTED,
            "a fault in the partition's handler"
        );
        Ok(())
    });
    r.check("aborted-partition-answers-aborted", aborted_answers);
    r.check("sp-to-aborted-partition", || {
        forward(ids::SP1, ids::CRASH_DATA, ffa::ERROR_32, ffa::ABORTED)
    });
    r.check("run-aborted-partition", || {
        run_error((ids::CRASH_UNDEF as u64) << 16, ffa::ABORTED)
    });
    r.check("others-run-after-faults", others_after_faults);
    r.check("aborted-partitions-not-listed", aborted_not_listed);
}

/// Checks a command response from `from`: DIRECT_RESP_64, endpoints, status OK.
fn resp_ok(r: &Regs, from: u16) -> Outcome {
    ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "response function");
    ensure_eq!(r[1], (from as u64) << 16, "response endpoints");
    ensure_eq!(r[3], status::OK, "command status");
    Ok(())
}

/// Runs a command and returns its results (x4-x7) if it answered OK.
fn command(dst: u16, c: u64, args: [u64; 4]) -> Result<[u64; 4], crate::report::Fail> {
    let r = ffa::cmd(dst, c, args);
    resp_ok(&r, dst)?;
    Ok([r[4], r[5], r[6], r[7]])
}

fn map_refused(tx: u64, rx: u64, pages: u64) -> Outcome {
    let r = call(ffa::RXTX_MAP_64, &[tx, rx, pages]);
    ensure_eq!(code(&r), ffa::INVALID_PARAMETERS, "RXTX_MAP answer");
    Ok(())
}

fn rxtx_map() -> Outcome {
    let r = ffa::map_buffers();
    ensure_eq!(r[0], ffa::SUCCESS_32, "RXTX_MAP_64 answer");
    Ok(())
}

fn rxtx_map_twice() -> Outcome {
    let r = ffa::map_buffers();
    ensure_eq!(code(&r), ffa::DENIED, "second RXTX_MAP_64");
    Ok(())
}

fn rxtx_unmap_remap() -> Outcome {
    let r = call(ffa::RXTX_UNMAP, &[0]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "RXTX_UNMAP");
    let again = call(ffa::RXTX_UNMAP, &[0]);
    ensure_eq!(code(&again), ffa::INVALID_PARAMETERS, "second RXTX_UNMAP");
    // RXTX_MAP_32 names its buffers in w1/w2 (§13.5): buffers above 4 GiB
    // (sbsa-ref's RAM is at 1 TiB) are mapped again with RXTX_MAP_64.
    let map = if ffa::tx_addr() > u64::from(u32::MAX) {
        ffa::RXTX_MAP_64
    } else {
        ffa::RXTX_MAP_32
    };
    let r = call(map, &[ffa::tx_addr(), ffa::rx_addr(), 1]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "RXTX_MAP again");
    Ok(())
}

fn features_rxtx_map() -> Outcome {
    let r = call(ffa::FEATURES, &[ffa::RXTX_MAP_64]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "FEATURES answer");
    ensure_eq!(r[2] & 0x3, 0, "minimum buffer size (4 KiB)");
    ensure!(r[2] >> 16 >= 1, "no largest page count reported");
    Ok(())
}

fn rx_release_empty() -> Outcome {
    let r = call(ffa::RX_RELEASE, &[]);
    ensure_eq!(code(&r), ffa::DENIED, "RX_RELEASE answer");
    Ok(())
}

fn partition_info_count() -> Outcome {
    let r = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 1]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    ensure_eq!(r[2], ALL_DESCRIPTORS, "count");
    // §13.8: with the count-only flag w3 is reserved (MBZ); the size comes
    // with the descriptors only.
    ensure_eq!(r[3], 0, "w3 (reserved with the count-only flag)");
    Ok(())
}

/// PARTITION_INFO_GET with the nil UUID; returns the count (RX is left full).
fn info_all() -> Result<u64, crate::report::Fail> {
    let r = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 0]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    Ok(r[2])
}

fn release() -> Outcome {
    let r = call(ffa::RX_RELEASE, &[]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "RX_RELEASE");
    Ok(())
}

fn partition_info_all() -> Outcome {
    let n = info_all()?;
    ensure_eq!(n, ALL_DESCRIPTORS, "count");
    let want = [
        ids::SP1,
        ids::SP2,
        ids::SP2,
        ids::TPM,
        ids::CRASH_DATA,
        ids::CRASH_UNDEF,
        ids::CRASH_STEAL,
    ];
    for (i, id) in want.iter().enumerate() {
        let got = ffa::rx_u16(i * 24);
        let count = ffa::rx_u16(i * 24 + 2);
        // sp2 is an MP partition: one context per core of -smp 4.
        let contexts = if *id == ids::SP2 { 4 } else { 1 };
        if got != *id || count != contexts {
            release()?;
            ensure_eq!(got, *id, "descriptor ID");
            ensure_eq!(count, contexts, "execution context count");
        }
    }
    let tpm_uuid = [
        ffa::rx_u32(3 * 24 + 8),
        ffa::rx_u32(3 * 24 + 12),
        ffa::rx_u32(3 * 24 + 16),
        ffa::rx_u32(3 * 24 + 20),
    ];
    release()?;
    ensure!(
        tpm_uuid == uuids::TPM,
        "the TPM descriptor carries the wrong UUID"
    );
    Ok(())
}

fn partition_info_busy() -> Outcome {
    info_all()?;
    let second = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 0]);
    release()?;
    ensure_eq!(
        code(&second),
        ffa::BUSY,
        "second discovery before RX_RELEASE"
    );
    Ok(())
}

fn partition_info_uuid(u: [u32; 4], id: u16) -> Outcome {
    let r = call(
        ffa::PARTITION_INFO_GET,
        &[u[0] as u64, u[1] as u64, u[2] as u64, u[3] as u64, 0],
    );
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    let got = ffa::rx_u16(0);
    release()?;
    ensure_eq!(r[2], 1, "count");
    ensure_eq!(got, id, "partition ID");
    Ok(())
}

fn partition_info_unknown() -> Outcome {
    let r = call(ffa::PARTITION_INFO_GET, &[1, 2, 3, 4, 0]);
    ensure_eq!(code(&r), ffa::INVALID_PARAMETERS, "answer");
    Ok(())
}

fn partition_info_properties() -> Outcome {
    let u = uuids::SP1;
    let r = call(
        ffa::PARTITION_INFO_GET,
        &[u[0] as u64, u[1] as u64, u[2] as u64, u[3] as u64, 0],
    );
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    let props = ffa::rx_u32(4);
    release()?;
    // Table 6.2 at the normal-world instance: direct receive, indirect,
    // REQ2 receive (manifest 0x607), notifications (bit 3, manifest
    // `notification-support`), AArch64 (bit 8); no send bits (1, 10):
    // a partition never sends a direct request to the normal world.
    ensure_eq!(props, 0x30D, "properties");
    Ok(())
}

/// Discovery by a v1.0 normal world (the `legacy` v1.0 boot).
pub(crate) fn partition_info_v1_0() -> Outcome {
    let r = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 0]);
    let second_id = ffa::rx_u16(8);
    let props = ffa::rx_u32(4);
    let rel = call(ffa::RX_RELEASE, &[]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    ensure_eq!(r[3], 0, "w3 (no size in v1.0)");
    ensure_eq!(second_id, ids::SP2, "second 8-byte descriptor");
    ensure_eq!(props, 0x5, "v1.0 properties (direct receive, indirect)");
    ensure_eq!(rel[0], ffa::SUCCESS_32, "RX_RELEASE");
    Ok(())
}

// ---- Discovery as the specification reads it (issue 10, items 8 and 10) ----

const MEM_DONATE_32: u64 = 0x8400_0071;
const MEM_DONATE_64: u64 = 0xC400_0071;
const MEM_LEND_32: u64 = 0x8400_0072;
const MEM_LEND_64: u64 = 0xC400_0072;
const MEM_SHARE_32: u64 = 0x8400_0073;
const MEM_SHARE_64: u64 = 0xC400_0073;
const MEM_RETRIEVE_REQ_32: u64 = 0x8400_0074;
const MEM_RETRIEVE_REQ_64: u64 = 0xC400_0074;

/// w1-w4 of a discovery call naming `u`.
fn uuid_args(u: [u32; 4], flags: u64) -> [u64; 5] {
    [u[0] as u64, u[1] as u64, u[2] as u64, u[3] as u64, flags]
}

/// §13.8: count only with a named UUID: the count in w2, w3 reserved (0).
fn partition_info_count_uuid(u: [u32; 4]) -> Outcome {
    let r = call(ffa::PARTITION_INFO_GET, &uuid_args(u, 1));
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    ensure_eq!(r[2], 1, "count");
    ensure_eq!(r[3], 0, "w3 (reserved with the count-only flag)");
    Ok(())
}

/// Table 6.1: the UUID field is reserved (MBZ) when the caller named a
/// UUID (the nil UUID gets each descriptor's UUID: `partition-info-all`).
fn partition_info_named_uuid_zero() -> Outcome {
    let r = call(ffa::PARTITION_INFO_GET, &uuid_args(uuids::SP1, 0));
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    let field = [
        ffa::rx_u32(8),
        ffa::rx_u32(12),
        ffa::rx_u32(16),
        ffa::rx_u32(20),
    ];
    release()?;
    ensure_eq!(r[3], 24, "descriptor size");
    ensure!(
        field == [0; 4],
        "the descriptor of a named UUID carries a UUID"
    );
    Ok(())
}

/// Table 6.2 at the normal-world instance, through FFA_PARTITION_INFO_GET:
/// the one descriptor of `u` is `id`'s with properties `want`.
fn nwd_properties(u: [u32; 4], id: u16, want: u32) -> Outcome {
    let r = call(ffa::PARTITION_INFO_GET, &uuid_args(u, 0));
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    let (got_id, props) = (ffa::rx_u16(0), ffa::rx_u32(4));
    release()?;
    ensure_eq!(got_id, id, "partition ID");
    ensure_eq!(props, want, "properties");
    Ok(())
}

/// The same through FFA_PARTITION_INFO_GET_REGS (§13.9): the first
/// descriptor in x3 (ID, contexts, properties in [63:32]).
fn regs_properties(u: [u32; 4], id: u16, want: u32) -> Outcome {
    let r = regs_call(u, 0, 0);
    ensure_eq!(r[0], ffa::SUCCESS_64, "answer");
    ensure_eq!(r[3] as u16, id, "partition ID");
    ensure_eq!((r[3] >> 32) as u32, want, "properties");
    Ok(())
}

/// Every descriptor of a nil-UUID FFA_PARTITION_INFO_GET_REGS from the
/// normal world: no send bits, AArch64, the manifest's receive bits.
fn partition_info_regs_properties() -> Outcome {
    let r = regs_call([0; 4], 0, 0);
    ensure_eq!(r[0], ffa::SUCCESS_64, "answer");
    let want = [
        (ids::SP1, 0x30Du32),
        (ids::SP2, 0x30D),
        (ids::SP2, 0x30D),
        (ids::TPM, 0x309),
        (ids::CRASH_DATA, 0x101),
    ];
    for (i, (id, props)) in want.iter().enumerate() {
        let x = r[3 + i * 3];
        ensure_eq!(x as u16, *id, "partition ID");
        ensure_eq!((x >> 32) as u32, *props, "properties");
    }
    Ok(())
}

/// A partition discovering (secure virtual instance) sees the send bits
/// (1 and 10) that the normal world does not, and no VM created /
/// destroyed bits (reserved there).
fn sp_regs_properties() -> Outcome {
    let u = uuids::TPM;
    let lo = u[0] as u64 | (u[1] as u64) << 32;
    let hi = u[2] as u64 | (u[3] as u64) << 32;
    let [w0, _, x3, _] = command(
        ids::SP1,
        cmd::CALL,
        [ffa::PARTITION_INFO_GET_REGS_64, lo, hi, 0],
    )?;
    ensure_eq!(w0, ffa::SUCCESS_64, "answer in the partition");
    ensure_eq!(x3 as u16, ids::TPM, "partition ID");
    ensure_eq!((x3 >> 32) as u32, 0x70B, "properties seen by a partition");
    Ok(())
}

/// §13.3: FFA_FEATURES of a memory-sending ABI from a v1.2 caller: SUCCESS
/// with w2 reserved (0); the caller-buffer bit 0 exists up to v1.1 only.
fn mem_send_features_reserved(f32: u64, f64: u64) -> Outcome {
    for f in [f32, f64] {
        let r = call(ffa::FEATURES, &[f, 0]);
        ensure_eq!(r[0], ffa::SUCCESS_32, "FEATURES answer");
        ensure_eq!(r[2], 0, "w2 (reserved from v1.2)");
        ensure_eq!(r[3], 0, "w3 (reserved)");
    }
    Ok(())
}

/// The same at a v1.2 partition's instance.
fn sp_mem_send_features_reserved() -> Outcome {
    for f in [
        MEM_SHARE_32,
        MEM_SHARE_64,
        MEM_LEND_32,
        MEM_LEND_64,
        MEM_DONATE_32,
        MEM_DONATE_64,
    ] {
        let [w0, w2, w3, _] = command(ids::SP1, cmd::CALL, [ffa::FEATURES, f, 0, 0])?;
        ensure_eq!(w0, ffa::SUCCESS_32, "FEATURES answer in the partition");
        ensure_eq!(w2, 0, "w2 (reserved from v1.2)");
        ensure_eq!(w3, 0, "w3 (reserved)");
    }
    Ok(())
}

/// §13.3: a v1.1+ partition asking about FFA_MEM_RETRIEVE_REQ must set the
/// NS-bit input property (bit 1): without it NOT_SUPPORTED (Hafnium, the
/// FF-A ACS); with it SUCCESS, w2 = caller buffer (bit 0) and NS bit (bit 1).
fn sp_retrieve_features(f: u64) -> Outcome {
    let [w0, w2, _, _] = command(ids::SP1, cmd::CALL, [ffa::FEATURES, f, 0, 0])?;
    ensure_eq!(w0, ffa::ERROR_32, "answer without the NS-bit input");
    ensure_eq!(w2 as u32 as i32, ffa::NOT_SUPPORTED, "error code");
    let [w0, w2, w3, _] = command(ids::SP1, cmd::CALL, [ffa::FEATURES, f, 2, 0])?;
    ensure_eq!(w0, ffa::SUCCESS_32, "answer with the NS-bit input");
    ensure_eq!(w2, 0b11, "w2 properties");
    ensure_eq!(w3, 0, "w3");
    Ok(())
}

/// A v1.0 partition (crash-undef: its manifest says v1.0; the `legacy`
/// v1.0 boot) has no input properties (v1.0's FFA_FEATURES has only w1):
/// the NS-bit input is a reserved bit there (`NOT_SUPPORTED`), and the
/// answer has no NS bit (w2 = bit 0, the caller buffer).
pub(crate) fn sp_retrieve_features_v1_0() -> Outcome {
    let sp = ids::CRASH_UNDEF;
    let with_bit = command(sp, cmd::CALL, [ffa::FEATURES, MEM_RETRIEVE_REQ_64, 2, 0]);
    let without = command(sp, cmd::CALL, [ffa::FEATURES, MEM_RETRIEVE_REQ_64, 0, 0]);
    let [w0, w2, _, _] = with_bit?;
    ensure_eq!(w0, ffa::ERROR_32, "v1.0 answer with the NS-bit input");
    ensure_eq!(w2 as u32 as i32, ffa::NOT_SUPPORTED, "error code");
    let [w0, w2, _, _] = without?;
    ensure_eq!(w0, ffa::SUCCESS_32, "v1.0 answer without input properties");
    ensure_eq!(w2, 1, "w2 (caller buffer, no NS bit at v1.0)");
    Ok(())
}

/// A partition whose manifest says `v` negotiated `v` at boot, which fixed
/// it: 1.2 is refused, `v` itself answered with the SPMC's version.
pub(crate) fn sp_version_fixed_by_manifest(sp: u16, v: u32) -> Outcome {
    sp_version_refused(sp, &[ffa::V1_2])?;
    let [w0, _, _, _] = command(sp, cmd::CALL, [ffa::VERSION, v as u64, 0, 0])?;
    ensure_eq!(w0, ffa::V1_2 as u64, "FFA_VERSION of its own version");
    Ok(())
}

/// Partition `id` asks for each of `vs` with FFA_VERSION: refused, its
/// version was fixed by its boot (§13.2).
fn sp_version_refused(id: u16, vs: &[u32]) -> Outcome {
    for v in vs {
        let [w0, _, _, _] = command(id, cmd::CALL, [ffa::VERSION, *v as u64, 0, 0])?;
        ensure_eq!(
            w0 as u32 as i32,
            ffa::NOT_SUPPORTED,
            "FFA_VERSION of another version in the partition"
        );
    }
    Ok(())
}

fn sp_version_same() -> Outcome {
    let [w0, _, _, _] = command(ids::SP1, cmd::CALL, [ffa::VERSION, ffa::V1_2 as u64, 0, 0])?;
    ensure_eq!(w0, ffa::V1_2 as u64, "FFA_VERSION(1.2) in the partition");
    Ok(())
}

/// After a refused FFA_VERSION(1.0), SP1 is still answered at v1.2:
/// FFA_FEATURES(FFA_MEM_RETRIEVE_REQ_64) takes the NS-bit input property
/// (a v1.0 partition's would be NOT_SUPPORTED) and reports bits 0 and 1.
fn sp_version_refused_no_change() -> Outcome {
    sp_version_refused(ids::SP1, &[ffa::V1_0])?;
    let [w0, w2, _, _] = command(
        ids::SP1,
        cmd::CALL,
        [ffa::FEATURES, MEM_RETRIEVE_REQ_64, 2, 0],
    )?;
    ensure_eq!(w0, ffa::SUCCESS_32, "v1.2 answer with the NS-bit input");
    ensure_eq!(w2, 0b11, "w2 properties");
    Ok(())
}

fn regs_call(uuid: [u32; 4], start: u64, tag: u64) -> Regs {
    let mut r = [0u64; 18];
    r[0] = ffa::PARTITION_INFO_GET_REGS_64;
    r[1] = uuid[0] as u64 | (uuid[1] as u64) << 32;
    r[2] = uuid[2] as u64 | (uuid[3] as u64) << 32;
    r[3] = start | tag << 16;
    baremetal::smc(&mut r);
    r
}

fn partition_info_regs_first() -> Outcome {
    let r = regs_call([0; 4], 0, 0);
    ensure_eq!(r[0], ffa::SUCCESS_64, "answer");
    ensure_eq!(r[2] & 0xFFFF, ALL_DESCRIPTORS - 1, "last index");
    ensure_eq!((r[2] >> 16) & 0xFFFF, 4, "current index");
    ensure_eq!(r[2] >> 48, 24, "descriptor size");
    ensure_eq!(r[3] & 0xFFFF, ids::SP1, "first ID");
    let u = uuids::SP1;
    ensure_eq!(r[4], u[0] as u64 | (u[1] as u64) << 32, "first UUID low");
    ensure_eq!(r[5], u[2] as u64 | (u[3] as u64) << 32, "first UUID high");
    // Descriptors 3 to 5 travel in x9-x17.
    let b = uuids::SP2_B;
    ensure_eq!(r[9] & 0xFFFF, ids::SP2, "third ID (sp2's second UUID)");
    ensure_eq!(
        r[11],
        b[2] as u64 | (b[3] as u64) << 32,
        "third UUID high (x11)"
    );
    ensure_eq!(r[12] & 0xFFFF, ids::TPM, "fourth ID (x12)");
    ensure_eq!(r[15] & 0xFFFF, ids::CRASH_DATA, "fifth ID (x15)");
    ensure_eq!(
        r[17],
        uuids::CRASH[2] as u64 | (uuids::CRASH[3] as u64) << 32,
        "fifth UUID high (x17)"
    );
    Ok(())
}

fn partition_info_regs_next() -> Outcome {
    let r = regs_call([0; 4], 5, 0);
    ensure_eq!(r[0], ffa::SUCCESS_64, "answer");
    ensure_eq!((r[2] >> 16) & 0xFFFF, ALL_DESCRIPTORS - 1, "current index");
    ensure_eq!(r[3] & 0xFFFF, ids::CRASH_UNDEF, "sixth ID");
    ensure_eq!(r[6] & 0xFFFF, ids::CRASH_STEAL, "seventh ID");
    ensure_eq!(r[9], 0, "no eighth descriptor");
    Ok(())
}

fn partition_info_regs_error(start: u64, tag: u64, want: i32) -> Outcome {
    let r = regs_call([0; 4], start, tag);
    ensure_eq!(code(&r), want, "answer");
    Ok(())
}

fn partition_info_regs_unknown() -> Outcome {
    let r = regs_call([9, 9, 9, 9], 0, 0);
    ensure_eq!(code(&r), ffa::INVALID_PARAMETERS, "answer");
    Ok(())
}

fn refused_partition_absent() -> Outcome {
    let u = uuids::CRASH;
    let r = call(
        ffa::PARTITION_INFO_GET,
        &[u[0] as u64, u[1] as u64, u[2] as u64, u[3] as u64, 1],
    );
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    // bad-el0 shares the crash partitions' UUID but was refused at boot.
    ensure_eq!(r[2], 3, "partitions with the crash UUID");
    Ok(())
}

fn direct_req_64_echo() -> Outcome {
    let r = ffa::cmd(ids::SP1, cmd::ECHO, [0x1111, 0x2222_0000_0000, u64::MAX, 4]);
    resp_ok(&r, ids::SP1)?;
    ensure_eq!(r[2], 0, "w2 of the response");
    ensure_eq!(r[4], 0x1111, "x4");
    ensure_eq!(r[5], 0x2222_0000_0000, "x5");
    ensure_eq!(r[6], u64::MAX, "x6");
    ensure_eq!(r[7], 4, "x7");
    Ok(())
}

fn direct_req_32_echo() -> Outcome {
    let r = call(
        ffa::MSG_SEND_DIRECT_REQ_32,
        &[ids::SP1 as u64, 0, cmd::ECHO, 0xAAAA_BBBB, 7, 8, 9],
    );
    ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_32, "response function");
    ensure_eq!(r[1], (ids::SP1 as u64) << 16, "endpoints");
    ensure_eq!(r[4], 0xAAAA_BBBB, "w4");
    ensure_eq!(r[7], 9, "w7");
    Ok(())
}

fn direct_req_add() -> Outcome {
    let [sum, ..] = command(ids::SP2, cmd::ADD, [40, 2, 0, 0])?;
    ensure_eq!(sum, 42, "sum");
    Ok(())
}

fn direct_req_w2() -> Outcome {
    let r = call(
        ffa::MSG_SEND_DIRECT_REQ_64,
        &[ids::SP1 as u64, 1, cmd::ECHO],
    );
    ensure_eq!(code(&r), ffa::INVALID_PARAMETERS, "answer");
    Ok(())
}

fn direct_req_to(dst: u64, want: i32) -> Outcome {
    let r = call(ffa::MSG_SEND_DIRECT_REQ_64, &[dst, 0, cmd::ECHO]);
    ensure_eq!(code(&r), want, "answer");
    Ok(())
}

fn direct_req_secure_sender() -> Outcome {
    let r = call(
        ffa::MSG_SEND_DIRECT_REQ_64,
        &[(0x8001 << 16) | ids::SP2 as u64, 0, cmd::ECHO],
    );
    ensure_eq!(code(&r), ffa::INVALID_PARAMETERS, "answer");
    Ok(())
}

fn direct_req_upper_preserved() -> Outcome {
    let mut r = [0u64; 18];
    r[0] = ffa::MSG_SEND_DIRECT_REQ_64;
    r[1] = ids::SP1 as u64;
    r[3] = cmd::ECHO;
    for (i, v) in r.iter_mut().enumerate().skip(8) {
        *v = 0x5151_0000 + i as u64;
    }
    baremetal::smc(&mut r);
    resp_ok(&r, ids::SP1)?;
    for (i, v) in r.iter().enumerate().skip(8) {
        ensure_eq!(*v, 0x5151_0000 + i as u64, "x8-x17 after a direct request");
    }
    Ok(())
}

fn direct_req2_echo() -> Outcome {
    let args: [u64; 14] =
        core::array::from_fn(|i| if i == 0 { cmd::ECHO } else { 0x1000 + i as u64 });
    let r = ffa::req2(ids::SP2, uuids::SP2, &args);
    ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP2_64, "response function");
    ensure_eq!(r[1], (ids::SP2 as u64) << 16, "endpoints");
    ensure_eq!(r[4], status::OK, "status");
    for (i, v) in r.iter().enumerate().skip(5) {
        ensure_eq!(*v, 0x1000 + (i - 4) as u64, "x5-x17 echoed");
    }
    Ok(())
}

fn direct_req2_uuid(dst: u16, uuid: [u32; 4], want: i32) -> Outcome {
    let r = ffa::req2(dst, uuid, &[cmd::ECHO, 77]);
    if want == 0 {
        ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP2_64, "response function");
        ensure_eq!(r[5], 77, "x5 echoed");
    } else {
        ensure_eq!(code(&r), want, "answer");
    }
    Ok(())
}

/// FFA_MSG_SEND_DIRECT_REQ2 from a v1.1 normal world (the `legacy` v1.1 boot).
pub(crate) fn direct_req2_old_version() -> Outcome {
    let r = ffa::req2(ids::SP2, [0; 4], &[cmd::ECHO]);
    ensure_eq!(code(&r), ffa::NOT_SUPPORTED, "REQ2 at v1.1");
    Ok(())
}

fn tpm_interface_version() -> Outcome {
    let r = ffa::req64(ids::TPM, [0, TPM_GET_INTERFACE_VERSION, 0, 0, 0]);
    ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP_64, "response function");
    ensure_eq!(r[4], TPM_OK, "TPM status");
    ensure_eq!(r[5], TPM_INTERFACE_VERSION, "interface version");
    Ok(())
}

fn tpm_interface_version_req2() -> Outcome {
    let r = ffa::req2(ids::TPM, uuids::TPM, &[TPM_GET_INTERFACE_VERSION]);
    ensure_eq!(r[0], ffa::MSG_SEND_DIRECT_RESP2_64, "response function");
    ensure_eq!(r[4], TPM_OK, "TPM status");
    ensure_eq!(r[5], TPM_INTERFACE_VERSION, "interface version");
    Ok(())
}

fn whoami() -> Outcome {
    let [id, version, spm_id, vcpu] = command(ids::TPM, cmd::WHOAMI, [0; 4])?;
    ensure_eq!(id, ids::TPM, "FFA_ID_GET in the partition");
    ensure_eq!(version, ffa::V1_2, "FFA_VERSION in the partition");
    ensure_eq!(spm_id, 0x8000, "FFA_SPM_ID_GET in the partition");
    ensure_eq!(vcpu, 0, "vCPU index at boot");
    Ok(())
}

/// The normal world at v1.1 (the `legacy` v1.1 boot) does not change what
/// a partition negotiated.
pub(crate) fn partition_version() -> Outcome {
    let r = ffa::cmd(
        ids::SP1,
        cmd::CALL,
        [ffa::FEATURES, ffa::CONSOLE_LOG_64, 0, 0],
    );
    resp_ok(&r, ids::SP1)?;
    ensure_eq!(
        r[4],
        ffa::SUCCESS_32,
        "FEATURES(CONSOLE_LOG) seen by a v1.2 partition"
    );
    Ok(())
}

fn forward(via: u16, to: u16, want_func: u64, want_code: i32) -> Outcome {
    let [func, x2, x5, _] = command(via, cmd::FORWARD, [to as u64, 0xF00D, 0xBEEF, 0])?;
    ensure_eq!(func, want_func, "answer the partition got");
    if want_code == 0 {
        ensure_eq!(x2, 0xF00D, "echoed payload");
        ensure_eq!(x5, 0xBEEF, "echoed payload");
    } else {
        ensure_eq!(x2 as u32 as i32, want_code, "error code the partition got");
    }
    Ok(())
}

fn resp_wrong() -> Outcome {
    let [func, err, ..] = command(ids::SP1, cmd::RESP_WRONG, [0x7777, 0, 0, 0])?;
    ensure_eq!(func, ffa::ERROR_32, "answer to the misaddressed response");
    ensure_eq!(err as u32 as i32, ffa::INVALID_PARAMETERS, "error code");
    Ok(())
}

fn wait_in_request() -> Outcome {
    let [func, err, ..] = command(ids::SP1, cmd::WAIT_IN_REQ, [0; 4])?;
    ensure_eq!(func, ffa::ERROR_32, "answer to FFA_MSG_WAIT");
    ensure_eq!(err as u32 as i32, ffa::DENIED, "error code");
    Ok(())
}

fn yield_then_run() -> Outcome {
    let r = ffa::cmd(ids::SP2, cmd::YIELD, [0; 4]);
    ensure_eq!(r[0], ffa::YIELD, "the request returned FFA_YIELD");
    ensure_eq!(r[1], (ids::SP2 as u64) << 16, "w1: partition and vCPU");
    let done = call(ffa::RUN, &[(ids::SP2 as u64) << 16]);
    resp_ok(&done, ids::SP2)?;
    ensure_eq!(
        done[4],
        ffa::SUCCESS_32,
        "FFA_YIELD returned SUCCESS in the partition"
    );
    Ok(())
}

fn busy_while_preempted() -> Outcome {
    let r = ffa::cmd(ids::SP2, cmd::YIELD, [0; 4]);
    ensure_eq!(r[0], ffa::YIELD, "the request returned FFA_YIELD");
    let busy = ffa::cmd(ids::SP2, cmd::ECHO, [0; 4]);
    let busy_run = call(ffa::RUN, &[(ids::SP1 as u64) << 16]);
    let done = call(ffa::RUN, &[(ids::SP2 as u64) << 16]);
    resp_ok(&done, ids::SP2)?;
    ensure_eq!(code(&busy), ffa::BUSY, "request to a preempted partition");
    ensure_eq!(
        busy_run[0],
        ffa::MSG_WAIT,
        "FFA_RUN of an idle partition meanwhile"
    );
    Ok(())
}

fn run_waiting() -> Outcome {
    let r = call(ffa::RUN, &[(ids::SP1 as u64) << 16]);
    ensure_eq!(r[0], ffa::MSG_WAIT, "FFA_RUN answer");
    ensure_eq!(r[1], (ids::SP1 as u64) << 16, "w1");
    Ok(())
}

fn run_error(w1: u64, want: i32) -> Outcome {
    let r = call(ffa::RUN, &[w1]);
    ensure_eq!(code(&r), want, "FFA_RUN answer");
    Ok(())
}

fn console_log() -> Outcome {
    let [func, ..] = command(ids::SP1, cmd::CONSOLE, [7, 0, 0, 0])?;
    ensure_eq!(func, ffa::SUCCESS_32, "FFA_CONSOLE_LOG_64 answer");
    Ok(())
}

fn console_raw(count: u64) -> Outcome {
    let [func, err, ..] = command(ids::SP1, cmd::CONSOLE_RAW, [count, 0, 0, 0])?;
    ensure_eq!(func, ffa::ERROR_32, "FFA_CONSOLE_LOG_32 answer");
    ensure_eq!(err as u32 as i32, ffa::INVALID_PARAMETERS, "error code");
    Ok(())
}

fn console_from_nwd() -> Outcome {
    let r = call(ffa::CONSOLE_LOG_64, &[1, b'x' as u64]);
    ensure_eq!(code(&r), ffa::NOT_SUPPORTED, "answer");
    Ok(())
}

fn sp_call<const N: usize>(sp: u16, c: [u64; N], want_func: u64, want_code: i32) -> Outcome {
    let mut args = [0u64; 4];
    args[..N].copy_from_slice(&c);
    let [func, x2, ..] = command(sp, cmd::CALL, args)?;
    ensure_eq!(func, want_func, "answer in the partition");
    if want_code != 0 {
        ensure_eq!(x2 as u32 as i32, want_code, "error code in the partition");
    }
    Ok(())
}

fn sp_partition_info() -> Outcome {
    let [func, count, size, first] = command(ids::SP2, cmd::PARTINFO, [0; 4])?;
    ensure_eq!(func, ffa::SUCCESS_32, "PARTITION_INFO_GET in the partition");
    ensure_eq!(count, ALL_DESCRIPTORS, "count");
    ensure_eq!(size, 24, "descriptor size");
    ensure_eq!(first, ids::SP1, "first ID");
    Ok(())
}

fn send2(flags: u64) -> Regs {
    call(ffa::MSG_SEND2, &[0, flags])
}

fn send2_to_partition() -> Outcome {
    ffa::tx_message(0, ids::SP1, &0x0123_4567_89AB_CDEFu64.to_le_bytes());
    let r = send2(0);
    ensure_eq!(r[0], ffa::SUCCESS_32, "FFA_MSG_SEND2");
    let ran = call(ffa::RUN, &[(ids::SP1 as u64) << 16]);
    ensure_eq!(ran[0], ffa::MSG_WAIT, "FFA_RUN to let it read the message");
    let [sender, first, size, count] = command(ids::SP1, cmd::LAST_MSG, [0; 4])?;
    ensure_eq!(sender, 0, "sender");
    ensure_eq!(first, 0x0123_4567_89AB_CDEF, "payload");
    ensure_eq!(size, 8, "size");
    ensure!(count >= 1, "no message counted");
    Ok(())
}

fn send2_busy() -> Outcome {
    ffa::tx_message(0, ids::SP2, &1u64.to_le_bytes());
    let first = send2(0);
    let second = send2(0);
    let ran = call(ffa::RUN, &[(ids::SP2 as u64) << 16]);
    ensure_eq!(first[0], ffa::SUCCESS_32, "first FFA_MSG_SEND2");
    ensure_eq!(
        code(&second),
        ffa::BUSY,
        "second before the receiver read the first"
    );
    ensure_eq!(ran[0], ffa::MSG_WAIT, "FFA_RUN");
    Ok(())
}

fn send2_bad_offset() -> Outcome {
    ffa::tx_message(0, ids::SP1, &[1; 8]);
    ffa::tx_write(8, &8u32.to_le_bytes());
    let r = send2(0);
    ensure_eq!(
        code(&r),
        ffa::INVALID_PARAMETERS,
        "offset inside the header"
    );
    Ok(())
}

fn send2_sender_mismatch() -> Outcome {
    ffa::tx_message(5, ids::SP1, &[1; 8]);
    let r = send2(0);
    ensure_eq!(
        code(&r),
        ffa::INVALID_PARAMETERS,
        "header names another sender"
    );
    Ok(())
}

fn send2_denied() -> Outcome {
    ffa::tx_message(0, ids::TPM, &[1; 8]);
    let r = send2(0);
    ensure_eq!(code(&r), ffa::DENIED, "receiver without indirect messaging");
    Ok(())
}

fn send2_to_nwd() -> Outcome {
    let [func, ..] = command(ids::SP1, cmd::SEND2, [0, 0x5A5A_5A5A, 0, 0])?;
    ensure_eq!(func, ffa::SUCCESS_32, "FFA_MSG_SEND2 in the partition");
    let (receiver, sender, size, offset) = (
        ffa::rx_u16(12),
        ffa::rx_u16(14),
        ffa::rx_u32(16),
        ffa::rx_u32(8),
    );
    let payload = ffa::rx_u64(offset as usize);
    ensure_eq!(sender, ids::SP1, "sender in the header");
    ensure_eq!(receiver, 0, "receiver in the header");
    ensure_eq!(size, 8, "size");
    ensure_eq!(payload, 0x5A5A_5A5A, "payload");
    Ok(())
}

fn send2_to_nwd_busy() -> Outcome {
    let [func, err, ..] = command(ids::SP1, cmd::SEND2, [0, 1, 0, 0])?;
    release()?;
    ensure_eq!(func, ffa::ERROR_32, "second message while RX is full");
    ensure_eq!(err as u32 as i32, ffa::BUSY, "error code");
    Ok(())
}

/// Writes `v` to the normal world's d8 and `!v` to v8's upper half.
fn nwd_fp_set(v: u64) {
    // SAFETY: only d8/v8 change; the harness is softfloat and never uses FP itself.
    unsafe {
        core::arch::asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "fmov d8, {v}",
            "mov v8.d[1], {n}",
            v = in(reg) v,
            n = in(reg) !v,
            options(nomem, nostack),
        )
    }
}

fn nwd_fp_get() -> (u64, u64) {
    let (lo, hi): (u64, u64);
    // SAFETY: reads d8/v8 only.
    unsafe {
        core::arch::asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "fmov {lo}, d8",
            "mov {hi}, v8.d[1]",
            lo = out(reg) lo,
            hi = out(reg) hi,
            options(nomem, nostack),
        )
    }
    (lo, hi)
}

fn fp_survives() -> Outcome {
    nwd_fp_set(0x1234);
    command(ids::SP1, cmd::FP_SET, [0xCAFE_F00D, 0, 0, 0])?;
    let mine = nwd_fp_get();
    nwd_fp_set(0x9999);
    let [d8, hi, ..] = command(ids::SP1, cmd::FP_GET, [0; 4])?;
    let mine_after = nwd_fp_get();
    ensure_eq!(
        mine.0,
        0x1234,
        "normal world d8 after the partition set its own"
    );
    ensure_eq!(mine.1, !0x1234u64, "normal world v8 upper half");
    ensure_eq!(d8, 0xCAFE_F00D, "partition d8 one request later");
    ensure_eq!(hi, !0xCAFE_F00Du64, "partition v8 upper half");
    ensure_eq!(
        mine_after.0,
        0x9999,
        "normal world d8 after the second request"
    );
    Ok(())
}

fn fp_per_partition() -> Outcome {
    command(ids::SP1, cmd::FP_SET, [111, 0, 0, 0])?;
    command(ids::SP2, cmd::FP_SET, [222, 0, 0, 0])?;
    let [a, ..] = command(ids::SP1, cmd::FP_GET, [0; 4])?;
    let [b, ..] = command(ids::SP2, cmd::FP_GET, [0; 4])?;
    ensure_eq!(a, 111, "sp1 d8");
    ensure_eq!(b, 222, "sp2 d8");
    Ok(())
}

fn boot_info(sp: u16, want: u64) -> Outcome {
    let [ok, x0, ..] = command(sp, cmd::BOOTINFO, [0; 4])?;
    ensure_eq!(ok, want, "boot information found");
    if want == 0 {
        ensure_eq!(x0, 0, "x0 at boot");
    }
    Ok(())
}

fn entry_of(sp: u16, want: u64) -> Outcome {
    let [_, _, _, entry] = command(sp, cmd::BOOTINFO, [0; 4])?;
    ensure_eq!(entry, want, "the entry point it runs from");
    let [id, ..] = command(sp, cmd::WHOAMI, [0; 4])?;
    ensure_eq!(id, sp as u64, "FFA_ID_GET");
    Ok(())
}

fn package_boot_info() -> Outcome {
    let [ok, x0, manifest, _] = command(ids::SP2, cmd::BOOTINFO, [0; 4])?;
    ensure_eq!(ok, 1, "boot information with the manifest");
    ensure_eq!(
        x0,
        layout::IMAGE_IPA,
        "the blob where the package header was"
    );
    ensure_eq!(
        manifest,
        layout::IMAGE_IPA + 0x1000,
        "the manifest inside the package"
    );
    Ok(())
}

fn mem_size_end() -> Outcome {
    // The last word of mem-size, beyond the image and its .bss.
    let last = layout::IMAGE_IPA + 0x6_0000 - 8;
    let [old, ..] = command(ids::SP2, cmd::READ, [last, 0, 0, 0])?;
    command(ids::SP2, cmd::WRITE, [last, 0x5eed_f00d, 0, 0])?;
    let [got, ..] = command(ids::SP2, cmd::READ, [last, 0, 0, 0])?;
    command(ids::SP2, cmd::WRITE, [last, old, 0, 0])?;
    ensure_eq!(got, 0x5eed_f00d, "the word written");
    Ok(())
}

/// `sp` reads `addr` with its own exception vectors installed: the abort
/// reaches them and the partition goes on.
fn handled_fault(sp: u16, addr: u64) -> Outcome {
    let [handled, _, far, _] = command(sp, cmd::FAULT, [addr, 0, 0, 0])?;
    ensure_eq!(
        handled,
        test_protocol::FAULT_HANDLED,
        "the partition's handler ran"
    );
    ensure_eq!(far, addr, "FAR_EL1");
    let [sum, ..] = command(sp, cmd::ADD, [2, 3, 0, 0])?;
    ensure_eq!(sum, 5, "the partition answers afterwards");
    Ok(())
}

fn fault_syndrome() -> Outcome {
    let [_, esr, ..] = command(ids::SP1, cmd::FAULT, [layout::UNMAPPED_IPA, 0, 0, 0])?;
    // Arm ARM D23.2.41: EC 0x25 (data abort, same EL), IL set, WnR clear
    // (a read), DFSC a translation fault (0b0001xx).
    ensure_eq!(esr >> 26, 0x25, "ESR_EL1.EC");
    ensure_eq!((esr >> 25) & 1, 1, "ESR_EL1.IL");
    ensure_eq!((esr >> 6) & 1, 0, "ESR_EL1.WnR");
    ensure_eq!(esr & 0x3c, 0x04, "ESR_EL1.DFSC: translation fault");
    Ok(())
}

fn fault_runs_on() -> Outcome {
    let [a, ..] = command(ids::SP1, cmd::COUNTER, [0; 4])?;
    handled_fault(ids::SP1, layout::UNMAPPED_IPA)?;
    let [b, ..] = command(ids::SP1, cmd::COUNTER, [0; 4])?;
    ensure!(b > a, "its state survives the fault");
    let [x, ..] = command(ids::SP1, cmd::ECHO, [7, 0, 0, 0])?;
    ensure_eq!(x, 7, "echo");
    Ok(())
}

fn fault_command_reads() -> Outcome {
    // Without a fault FAULT is a plain read: the handler did not run.
    let [word, ..] = command(ids::SP1, cmd::READ, [layout::IMAGE_IPA, 0, 0, 0])?;
    let [v, esr, ..] = command(ids::SP1, cmd::FAULT, [layout::IMAGE_IPA, 0, 0, 0])?;
    ensure_eq!(esr, 0, "no exception");
    ensure_eq!(v, word, "the word read");
    Ok(())
}

fn fault(sp: u16, c: u64, arg: u64) -> Outcome {
    let r = ffa::cmd(sp, c, [arg, 0, 0, 0]);
    ensure_eq!(code(&r), ffa::ABORTED, "answer to the faulting request");
    Ok(())
}

fn aborted_answers() -> Outcome {
    for sp in [ids::CRASH_DATA, ids::CRASH_UNDEF, ids::CRASH_STEAL] {
        let r = ffa::cmd(sp, cmd::ECHO, [0; 4]);
        ensure_eq!(code(&r), ffa::ABORTED, "request to an aborted partition");
    }
    Ok(())
}

fn others_after_faults() -> Outcome {
    let [sum, ..] = command(ids::SP1, cmd::ADD, [1, 2, 0, 0])?;
    ensure_eq!(sum, 3, "sp1 still answers");
    let [n, ..] = command(ids::SP2, cmd::COUNTER, [0; 4])?;
    ensure!(n >= 1, "sp2 counter");
    tpm_interface_version()
}

fn aborted_not_listed() -> Outcome {
    let r = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 1]);
    ensure_eq!(r[0], ffa::SUCCESS_32, "answer");
    ensure_eq!(
        r[2],
        ALL_DESCRIPTORS - 3,
        "descriptors once three partitions aborted"
    );
    Ok(())
}
