//! The secondary execution contexts of an MP test partition (sp2: one per
//! core, DEN0077 v1.2 chapter 8). The primary context (index 0, the boot
//! core's) runs the whole partition in Rust; the others start at
//! [`test_sp_secondary`], which the primary context registers with
//! FFA_SECONDARY_EP_REGISTER during boot, and run a few instructions of
//! assembly with the MMU off (no stack, no Rust state shared with context 0):
//!
//! - a framework direct request carrying a PSCI power management message
//!   (CPU_OFF, §18.2) is counted in [`SECONDARY_POWER`]`[index]` and
//!   answered with the framework response, PSCI SUCCESS;
//! - a direct request (32- or 64-bit) is answered with a response of its width: status OK,
//!   x4 as it came (an echo, whatever the command), x5 = this context's
//!   index, x6 = the power messages it counted, x7 = 0;
//! - anything else goes back to FFA_MSG_WAIT.
//!
//! The counters survive the context's restart after CPU_OFF/CPU_ON: they sit
//! in `.bss` (zeroed once by context 0 at boot), on their own cache line,
//! and are only ever accessed with the MMU off (straight to memory).

use test_protocol::ffa::{
    MSG_SEND_DIRECT_REQ_32, MSG_SEND_DIRECT_REQ_64, MSG_SEND_DIRECT_RESP_32,
    MSG_SEND_DIRECT_RESP_64, MSG_WAIT,
};

/// Power management messages each secondary context received.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct PowerCounts(pub [u64; 8]);

/// Power management messages per context index.
#[unsafe(no_mangle)]
pub static mut SECONDARY_POWER: PowerCounts = PowerCounts([0; 8]);

core::arch::global_asm!(
    r#"
.section .text.secondary, "ax"
.balign 4
.global test_sp_secondary
test_sp_secondary:
    and x20, x4, #7
    adrp x21, SECONDARY_POWER
    add x21, x21, :lo12:SECONDARY_POWER
    add x21, x21, x20, lsl #3
    /* Context 0 zeroed the counters with its MMU (and caches) on. */
    dc civac, x21
    dsb sy
    ldr x0, ={msg_wait}
    mov x1, #0
    mov x2, #0
    mov x3, #0
1:  mov x4, #0
    mov x5, #0
    mov x6, #0
    mov x7, #0
2:  smc #0
    /* The endpoints, swapped, for any answer. */
    lsr x9, x1, #16
    and x9, x9, #0xffff
    and x10, x1, #0xffff
    orr x1, x9, x10, lsl #16
    ldr x9, ={req32}
    cmp x0, x9
    b.ne 3f
    tbz w2, #31, 5f
    /* A framework message: count it, answer PSCI SUCCESS. */
    ldr x10, [x21]
    add x10, x10, #1
    str x10, [x21]
    dsb sy
    ldr x0, ={resp32}
    mov w2, #0x80000000
    orr w2, w2, #2
    mov x3, #0
    b 1b
3:  ldr x9, ={req64}
    cmp x0, x9
    b.ne 4f
    ldr x0, ={resp64}
    mov x2, #0
    mov x3, #0
    mov x5, x20
    ldr x6, [x21]
    mov x7, #0
    b 2b
4:  ldr x0, ={msg_wait}
    mov x1, #0
    mov x2, #0
    mov x3, #0
    b 1b
    /* A 32-bit partition message: the same answer, 32-bit. */
5:  ldr x0, ={resp32}
    mov x2, #0
    mov x3, #0
    mov x5, x20
    ldr x6, [x21]
    mov x7, #0
    b 2b
"#,
    msg_wait = const MSG_WAIT,
    req32 = const MSG_SEND_DIRECT_REQ_32,
    req64 = const MSG_SEND_DIRECT_REQ_64,
    resp32 = const MSG_SEND_DIRECT_RESP_32,
    resp64 = const MSG_SEND_DIRECT_RESP_64,
);

unsafe extern "C" {
    /// Where the secondary contexts start (the assembly above).
    pub fn test_sp_secondary();
}

/// FFA_SECONDARY_EP_REGISTER_64 of [`test_sp_secondary`], during boot.
/// Every test partition registers it; only an MP one (sp2) uses it.
pub fn register() {
    let r = crate::ffa::call(
        crate::ffa::SECONDARY_EP_REGISTER_64,
        &[test_sp_secondary as *const () as u64],
    );
    if !crate::ffa::ok(&r) {
        crate::ffa::log(format_args!(
            "test-sp: FFA_SECONDARY_EP_REGISTER_64 failed: {:#x} {:#x}",
            r[0], r[2]
        ));
    }
}
