//! The `fatal` stage's normal world (BL33 at NS-EL2, two cores), run against
//! a test-only SPMC build (`platform-qemu` feature `fatal-probe`, never in the
//! product image): one call, a direct request to the reserved endpoint
//! `FATAL_PROBE_DEST` with x3 = `FATAL_PROBE_MAGIC`, makes that SPMC panic
//! while it holds its lock, the way an SPMC bug would.
//!
//! First, what is not fatal: the stage gives QEMU 1 GiB of RAM while the
//! SPMC manifest states 2 GiB (a manifest that overstates the machine), so an
//! RX buffer mapped at 2 GiB is accepted but no memory answers there; the
//! SPMC's write of partition descriptors into it takes an external abort at
//! S-EL2, which must be an error for that call (the guarded copies of
//! `arch-aarch64/src/guarded.rs`), with the SPMC serving on afterwards.
//!
//! Then it checks what the SPMC promises after a fatal error (docs/architecture.md):
//! the failing core answers `FFA_ERROR(ABORTED)`, and so does every other
//! core, which must not wait for the lock the failed core still holds. Core 1
//! is turned on with PSCI CPU_ON and runs a few instructions of assembly (MMU
//! off: no Rust, no stack): it waits for core 0's go, makes one direct
//! request to sp1 and stores what came back. If the SPMC froze, core 1 never
//! stores and the stage runs into its time limit.

#![no_std]
#![no_main]

use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU64, Ordering};

use nwd_harness::ensure_eq;
use nwd_harness::ffa::{self, call, code};
use nwd_harness::report::{Report, console};
use test_protocol::{cmd, ids};

/// The endpoint and x3 of the probe (must match platform-qemu's).
const FATAL_PROBE_DEST: u64 = 0xFFFE;
const FATAL_PROBE_MAGIC: u64 = 0xFA7A_10BE;
/// 2 GiB: inside the SPMC manifest's normal-world RAM (1-3 GiB), past the
/// 1 GiB this stage gives QEMU.
const MISSING_RAM: u64 = 0x8000_0000;
/// PSCI CPU_ON (SMC64).
const PSCI_CPU_ON: u64 = ffa::PSCI_CPU_ON_64;

/// Set by core 0 when core 1 may make its call.
#[unsafe(no_mangle)]
static FATAL_GO: AtomicU64 = AtomicU64::new(0);
/// Core 1's answer: w0, w2, then 1 once written.
#[unsafe(no_mangle)]
static FATAL_RESULT: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

core::arch::global_asm!(
    r#"
.section .text.fatal_secondary, "ax"
.balign 4
.global fatal_secondary
fatal_secondary:
    adrp x9, FATAL_GO
    add x9, x9, :lo12:FATAL_GO
1:  dc civac, x9
    dsb sy
    ldr x10, [x9]
    cbz x10, 1b
    ldr x0, ={req}
    ldr x1, ={sp1}
    mov x2, #0
    mov x3, #{echo}
    mov x4, #7
    mov x5, #0
    mov x6, #0
    mov x7, #0
    smc #0
    adrp x9, FATAL_RESULT
    add x9, x9, :lo12:FATAL_RESULT
    stp x0, x2, [x9]
    mov x10, #1
    str x10, [x9, #16]
    dsb sy
2:  wfe
    b 2b
"#,
    req = const ffa::MSG_SEND_DIRECT_REQ_64,
    sp1 = const ids::SP1 as u64,
    echo = const cmd::ECHO,
);

unsafe extern "C" {
    fn fatal_secondary();
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let _ = writeln!(console(), "FAIL harness-panic: {info}");
    let _ = writeln!(console(), "fatal: 0 passed, 1 failed");
    baremetal::system_off()
}

/// Reads core 1's result word `i` (core 1 writes with its MMU off, so past
/// our cache: clean and invalidate the line first).
fn result(i: usize) -> u64 {
    let p = &FATAL_RESULT[i];
    // SAFETY: DC CIVAC on our own static's address only cleans and
    // invalidates its cache line.
    unsafe { core::arch::asm!("dc civac, {}", "dsb sy", in(reg) p.as_ptr(), options(nostack)) };
    p.load(Ordering::Acquire)
}

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    let _ = writeln!(
        console(),
        "nwd-fatal: a fatal SPMC error on core 0, calls on both cores"
    );
    let mut r = Report::default();
    r.check("fatal-sp1-answers-before", || {
        let a = ffa::cmd(ids::SP1, cmd::ECHO, [5, 0, 0, 0]);
        ensure_eq!(a[0], ffa::MSG_SEND_DIRECT_RESP_64, "response");
        ensure_eq!(a[4], 5, "echo");
        Ok(())
    });
    r.check("missing-ram-rx-accepted", || {
        let a = call(ffa::RXTX_MAP_64, &[MISSING_RAM, MISSING_RAM + 0x1000, 1]);
        ensure_eq!(a[0], ffa::SUCCESS_32, "RXTX_MAP inside the manifest's RAM");
        Ok(())
    });
    r.check("missing-ram-write-is-an-error-not-a-halt", || {
        let a = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 0]);
        ensure_eq!(code(&a), ffa::ABORTED, "PARTITION_INFO_GET into missing RX");
        Ok(())
    });
    r.check("missing-ram-spmc-serves-on", || {
        let a = call(ffa::RXTX_UNMAP, &[0]);
        ensure_eq!(a[0], ffa::SUCCESS_32, "RXTX_UNMAP");
        let a = ffa::cmd(ids::SP1, cmd::ECHO, [9, 0, 0, 0]);
        ensure_eq!(a[0], ffa::MSG_SEND_DIRECT_RESP_64, "sp1 response");
        ensure_eq!(a[4], 9, "echo");
        Ok(())
    });
    r.check("fatal-core1-on", || {
        let a = call(PSCI_CPU_ON, &[1, fatal_secondary as *const () as u64, 0]);
        ensure_eq!(a[0], 0, "PSCI CPU_ON");
        Ok(())
    });
    r.check("fatal-failing-call-answers-aborted", || {
        let a = call(
            ffa::MSG_SEND_DIRECT_REQ_64,
            &[FATAL_PROBE_DEST, 0, FATAL_PROBE_MAGIC],
        );
        ensure_eq!(code(&a), ffa::ABORTED, "the call that failed the SPMC");
        Ok(())
    });
    r.check("fatal-other-core-answered-aborted", || {
        FATAL_GO.store(1, Ordering::Release);
        // SAFETY: cleans our own static's cache line so core 1 (MMU off) sees it.
        unsafe {
            core::arch::asm!("dc civac, {}", "dsb sy", in(reg) FATAL_GO.as_ptr(), options(nostack))
        };
        // No time limit here: a frozen core 1 is the stage's time-out.
        while result(2) == 0 {
            core::hint::spin_loop();
        }
        ensure_eq!(result(0) as u32 as u64, ffa::ERROR_32, "core 1's w0");
        ensure_eq!(result(1) as u32 as i32, ffa::ABORTED, "core 1's error code");
        Ok(())
    });
    r.check("fatal-this-core-answers-aborted-again", || {
        let a = ffa::cmd(ids::SP1, cmd::ECHO, [6, 0, 0, 0]);
        ensure_eq!(code(&a), ffa::ABORTED, "a later call on core 0");
        Ok(())
    });
    let _ = writeln!(console(), "fatal: {} passed, {} failed", r.passed, r.failed);
    baremetal::system_off()
}
