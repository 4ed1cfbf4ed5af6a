//! The test secure partition: an S-EL1 image that the SPMC loads once per
//! manifest (tf-a-integration/qemu/partitions/*.dts) and that runs the
//! commands of `test_protocol` for the normal-world harness.
//!
//! It starts at its first byte with the MMU off: IPA 0x1000_0000 as
//! `test-sp` (sp.ld, the image alone at load-address), 0x1000_4000 as
//! `test-sp-pkg` (sp-pkg.ld, sp2: the image 0x4000 into an sptool package
//! that runs in place, with mem-size and no RAM region). The
//! baremetal entry code sets the stack, zeroes .bss, turns the stage-1 MMU on
//! with the identity map `BAREMETAL_L1` below (VA = IPA) and calls
//! [`baremetal_main`] with x0-x4 as they were at entry: x0 = boot information
//! (or 0), x4 = the vCPU index.
//!
//! Boot: FFA_VERSION (the manifest's `ffa-version` when the boot
//! information carries the manifest, else 1.2), FFA_ID_GET, FFA_RXTX_MAP_64 (one page each),
//! "test-sp <id> ready" on the FF-A console, FP/SIMD on at EL1, then the
//! message loop from FFA_MSG_WAIT. A failed boot call is logged and boot goes
//! on. The loop answers direct requests (REQ_32, REQ_64, REQ2) with a direct
//! response of the same width (a REQ_64 ECHO straight from the loop, for the
//! benchmarks); FFA_RUN takes one pending indirect message
//! from RX; anything else goes back to FFA_MSG_WAIT. There are no exception
//! vectors (VBAR_EL1 is 0) but during FAULT (`fault`): any exception (a
//! fault, UNDEF) ends at the SPMC, which aborts the partition. A panic logs its message and ends the same way (`udf`), so a
//! caller never waits on a dead partition.
//!
//! Choices where the protocol leaves room:
//! - Console lines end with `\n` (inside the 128-character limit); IDs are
//!   printed `{:#x}`, CONSOLE's arg0 in decimal: `test-sp 0x8001: hello 7`.
//! - CONSOLE_RAW sends w1 = arg0 (as a w-value) and the 24 characters
//!   `test-sp raw console log\n` in w2-w7.
//! - WHOAMI reports the ID and the FFA_VERSION answer from boot and calls
//!   FFA_SPM_ID_GET when asked (result2 = its w2, the error code if it failed).
//! - FORWARD, SEND2 and RESP_WRONG answer BAD_ARG for an endpoint ID above
//!   0xFFFF, KV_PUT/KV_GET for a key above 15. FORWARD's result2 is the
//!   answer's x5 whatever the answer was.
//! - RESP_WRONG's wrong response has the request's width, status OK and
//!   zero results.
//! - BUSY (`busy`) answers its final response to the request that resumed
//!   it after its last managed-exit response, in that request's width.
//! - YIELD passes no timeout (x2 = x3 = 0).
//! - PARTINFO reads and releases RX only on FFA_SUCCESS; result3 is 0 when
//!   the call failed or returned no descriptor. Other results are w-values.
//! - An indirect message is taken on FFA_RUN if RX holds a header with a
//!   non-zero size, an offset of at least 40 and a payload inside the page;
//!   the partition clears the header before each FFA_RX_RELEASE so that a
//!   stale page never counts twice. LAST_MSG's result1 holds the first
//!   min(size, 8) payload bytes, little-endian.
//! - The TPM exception applies to REQ_32, REQ_64 (x3 = 0) and REQ2 (x4
//!   alone: x2/x3 carry the UUID there) alike: the answer has x4 = TPM_OK,
//!   x5 = TPM_INTERFACE_VERSION (and x3 = 0 for RESP).
//! - Results of a 32-bit request are truncated to w-values.
//! - The image uses only the lower 64 KiB of its `ram` region (sp.ld); the
//!   boot information blob must not be placed there, as .bss is zeroed at
//!   entry before x0 is read. The upper 64 KiB holds the pages the
//!   memory-sharing commands send and the partition's own retrieve buffer
//!   (see `mem`, which also lists that module's choices).

#![no_std]
#![no_main]

mod bootinfo;
mod busy;
mod commands;
mod fault;
mod ffa;
mod irq;
mod mem;
mod secondary;

use core::arch::asm;
use core::panic::PanicInfo;

use test_protocol::{
    TPM_GET_INTERFACE_VERSION, TPM_GREETING, TPM_INTERFACE_VERSION, TPM_OK, cmd, ids,
};

use commands::Sp;
use ffa::{Kind, NARGS, Regs, Request};

/// The partition's boot map (S-EL1, identity over its IPA space): its image
/// and RAM in the first GiB (secure), then the non-secure IPA space where
/// memory the normal world shares appears (stage 1 NS bit).
#[cfg(not(feature = "sbsa"))]
#[unsafe(no_mangle)]
static BAREMETAL_L1: baremetal::BootTable = baremetal::BootTable::new(
    &[
        baremetal::Block::Memory,
        baremetal::Block::NonSecureMemory,
        baremetal::Block::NonSecureMemory,
        baremetal::Block::NonSecureMemory,
    ],
    false,
);
/// sbsa-ref: the secure IPA space's first two GiB (sp1's device region is
/// at 0x6004_0000); the normal world's RAM at 1 TiB is the runtime's own
/// table (`baremetal`, feature `sbsa`).
#[cfg(feature = "sbsa")]
#[unsafe(no_mangle)]
static BAREMETAL_L1: baremetal::BootTable =
    baremetal::BootTable::new(&[baremetal::Block::Memory, baremetal::Block::Memory], false);

/// The partition's state (only `baremetal_main` takes it, once).
static mut STATE: Sp = Sp::new();

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    ffa::log(format_args!("test-sp: panic: {info}"));
    // SAFETY: see commands' UNDEF: the SPMC aborts the partition.
    unsafe { asm!("udf #0", options(noreturn, nomem, nostack)) }
}

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(x0: u64, _x1: u64, _x2: u64, _x3: u64, x4: u64) -> ! {
    let state = &raw mut STATE;
    // SAFETY: this is the only place that refers to STATE, and it runs once
    // on the partition's only vCPU: the reference is unique.
    let sp = unsafe { &mut *state };
    sp.boot_x0 = x0;
    sp.boot_info_ok = bootinfo::has_manifest(x0);
    sp.boot_manifest = bootinfo::manifest_address(x0);
    sp.vcpu = x4;
    boot(sp);
    enable_fp();

    let mut r = ffa::call(ffa::MSG_WAIT, &[]);
    loop {
        if r[0] == ffa::MSG_SEND_DIRECT_REQ_64 && r[3] == test_protocol::cmd::ECHO {
            // Reply at once (the benchmarks time this): x4-x7 stay as they are.
            r[0] = ffa::MSG_SEND_DIRECT_RESP_64;
            r[1] = (sp.id as u64) << 16 | (r[1] >> 16) & 0xFFFF;
            r[2] = 0;
            r[3] = test_protocol::status::OK;
            baremetal::smc(&mut r);
            continue;
        }
        r = if let Some(req) = Request::decode(&r) {
            respond(sp, &req)
        } else {
            if ffa::func(&r) == ffa::RUN as u32 {
                sp.receive_indirect();
            }
            if ffa::func(&r) == ffa::INTERRUPT_32 as u32 {
                // Resumed for a secure interrupt it owns (DEN0077 v1.2
                // §9.3): handle what its virtual CPU interface has.
                sp.irq.resumed += 1;
                sp.irq.poll();
            }
            msg_wait()
        };
        baremetal::smc(&mut r);
    }
}

/// The boot calls; each failure is logged and boot goes on.
fn boot(sp: &mut Sp) {
    // The version its manifest declares when the boot information carries
    // the manifest, else 1.2; negotiated first, as the FF-A call that
    // fixes it (DEN0077 v1.2 §13.2) comes right after.
    let want = bootinfo::manifest_version(sp.boot_x0).unwrap_or(ffa::V1_2);
    let r = ffa::call(ffa::VERSION, &[want as u64]);
    sp.version = r[0] as u32;
    if r[0] != ffa::V1_2 as u64 {
        ffa::log(format_args!(
            "test-sp: FFA_VERSION({want:#x}) answered {:#x}",
            r[0]
        ));
    }
    let r = ffa::call(ffa::ID_GET, &[]);
    if ffa::ok(&r) {
        sp.id = r[2] as u16;
    } else {
        ffa::log(format_args!(
            "test-sp: FFA_ID_GET failed: {:#x} {:#x}",
            r[0], r[2]
        ));
    }
    let tx = ffa::Mailbox::Tx.ipa();
    let rx = ffa::Mailbox::Rx.ipa();
    let r = ffa::call(ffa::RXTX_MAP_64, &[tx, rx, 1]);
    if !ffa::ok(&r) {
        ffa::log(format_args!(
            "test-sp {:#x}: FFA_RXTX_MAP_64 failed: {:#x} {:#x}",
            sp.id, r[0], r[2]
        ));
    }
    secondary::register();
    ffa::log(format_args!("test-sp {:#x} ready", sp.id));
}

/// Lets EL1 use FP/SIMD (CPACR_EL1.FPEN = 0b11) for FP_SET/FP_GET.
fn enable_fp() {
    // SAFETY: only CPACR_EL1.FPEN changes; the compiler (softfloat) never
    // emits FP instructions, so nothing depends on the old value.
    unsafe {
        asm!(
            "mrs {t}, cpacr_el1",
            "orr {t}, {t}, #(3 << 20)",
            "msr cpacr_el1, {t}",
            "isb",
            t = out(reg) _,
            options(nomem, nostack, preserves_flags),
        )
    }
}

/// The direct response to `req`.
fn respond(sp: &mut Sp, req: &Request) -> Regs {
    // REQ2 carries the UUID in x2/x3, so only x4 names the TPM function there.
    let tpm =
        req.x3_x4.1 == TPM_GET_INTERFACE_VERSION && (req.kind == Kind::Req2 || req.x3_x4.0 == 0);
    let (status, results) = if tpm {
        if req.sender & 0x8000 == 0 {
            greet(sp.id, req.sender);
        }
        let mut out = [0; NARGS];
        if req.kind == Kind::Req2 {
            out[0] = TPM_INTERFACE_VERSION;
            (TPM_OK, out)
        } else {
            out[..2].copy_from_slice(&[TPM_OK, TPM_INTERFACE_VERSION]);
            (0, out)
        }
    } else if req.cmd == test_protocol::cmd::BUSY {
        // Answered to the request that resumed it after a managed exit.
        let (status, results) = sp.handle(req);
        let (kind, sender) = busy::caller();
        return ffa::response(kind, sp.id, sender, status, &results);
    } else {
        sp.handle(req)
    };
    ffa::response(req.kind, sp.id, req.sender, status, &results)
}

/// The TPM exception's greeting ([`TPM_GREETING`]): to the normal-world
/// endpoint `to` if it has notifications, an indirect message from sp1
/// whose schedule receiver interrupt the SPMC delays until the answer
/// reaches it.
/// Answers are not checked: an endpoint without RX buffer or with a full
/// one just misses the greeting.
fn greet(me: u16, to: u16) {
    let ids = (me as u64) << 16 | to as u64;
    let probe = ffa::call(ffa::NOTIFICATION_SET, &[ids, 0, 0, 1 << 31]);
    let has_bitmap =
        ffa::ok(&probe) || (probe[0] == ffa::ERROR_32 && probe[2] as u32 as i32 == ffa::DENIED);
    if !has_bitmap {
        return;
    }
    // The TPM partition has no indirect messaging: sp1 sends it, asked with
    // a direct request (flags 2: delay the schedule receiver interrupt).
    let x1 = (me as u64) << 16 | ids::SP1 as u64;
    let _ = ffa::call(
        ffa::MSG_SEND_DIRECT_REQ_64,
        &[x1, 0, cmd::SEND2, to as u64, TPM_GREETING, 2],
    );
}

/// FFA_MSG_WAIT with no flags (RX, if ours, goes back to the SPMC).
fn msg_wait() -> Regs {
    let mut r = [0; 18];
    r[0] = ffa::MSG_WAIT;
    r
}
