//! The program every VM runs at NS-EL1.
//!
//! It is code of the hypervisor image, which each VM's stage 2 maps
//! read-only and executable at the address it is linked at, so the same
//! functions run in every VM. Its data lives only on its stack and in its
//! mailbox, both in the VM's own 64 KiB of RAM at IPA [`RAM_IPA`]: this code
//! never touches a `static` that is not read-only (the hypervisor's `.data`
//! and `.bss` are not mapped into any VM, so it would fault).
//!
//! The hypervisor starts a VM at [`guest_entry`] with the MMU on (stage 1:
//! [`GUEST_L1`], devices in the first GiB, normal memory in the second),
//! SP_EL1 at the top of its RAM, x0 = its VM ID and x1 = its mailbox.
//! The VM then loops: HVC [`HV_TASK_DONE`] ("ready"), read the task the
//! hypervisor left in the [`Mailbox`], do it, write the result, HVC again.
//! Tasks are FF-A calls through either conduit, reads and writes of memory,
//! the demo's user program and the round-trip benchmark: the checks run in
//! the hypervisor, but every FF-A call a check makes "as VM n" is made by VM
//! n at NS-EL1 and goes through the hypervisor's trap path.
//!
//! An exception the VM takes at EL1 goes to its vectors ([`guest_vectors`]),
//! which report it to the hypervisor with HVC [`HV_GUEST_EXCEPTION`].

use core::arch::{asm, global_asm};
use core::fmt::Write;
use core::mem::offset_of;
use core::ptr::{read_volatile, write_volatile};

use baremetal::{Block, BootTable, Pl011};
use test_protocol::{cmd, ids};

use crate::ffa::{self, Regs};

/// IPA of every VM's RAM (its mailbox first, its stack at the top): in the
/// second GiB on virt, the fourth on sbsa-ref (whose second GiB holds the
/// console).
pub const RAM_IPA: u64 = if cfg!(feature = "sbsa") {
    0xC000_0000
} else {
    0x4000_0000
};
/// Size of a VM's RAM.
pub const RAM_SIZE: u64 = 0x1_0000;
/// IPA (and PA) of the console, passed through to every VM.
pub const UART_IPA: u64 = baremetal::board::NS_UART as u64;
/// The mailbox: the first bytes of the VM's RAM.
pub const MAILBOX_IPA: u64 = RAM_IPA;

/// Hypervisor call (SMCCC vendor-specific hypervisor service range, HVC
/// only): the VM finished its task (or booted) and waits for the next one.
pub const HV_TASK_DONE: u64 = 0xC600_0001;
/// Hypervisor call: the VM took an exception at EL1 (x1 = ESR_EL1,
/// x2 = ELR_EL1, x3 = FAR_EL1, x4 = vector index) or panicked (x4 = 16).
pub const HV_GUEST_EXCEPTION: u64 = 0xC600_0002;

/// The VMs' stage-1 table (VA = IPA): devices in the first GiB (the
/// console), normal memory in the second (RAM at 0x4000_0000, the program at
/// 0x6000_0000). Read-only data of the image: every VM uses this one table,
/// reached through its own stage 2 (where it is mapped read-only).
#[cfg(not(feature = "sbsa"))]
pub static GUEST_L1: BootTable = BootTable::new(&[Block::Device, Block::Memory], false);

/// sbsa-ref: the console in the second GiB, the RAM in the fourth; the
/// program (the hypervisor's image, at 1 TiB + 512 MiB) needs a 48-bit
/// space: [`GUEST_L0`] is the root, with this table and [`GUEST_HIGH`].
#[cfg(feature = "sbsa")]
pub static GUEST_L1: BootTable = BootTable::new(
    &[Block::None, Block::Device, Block::None, Block::Memory],
    false,
);
/// The GiB from 1 TiB, where the program is.
#[cfg(feature = "sbsa")]
static GUEST_HIGH: BootTable = BootTable::new_from(1024, &[Block::Memory], false);
/// The VMs' level-0 table on sbsa-ref: entry 0 [`GUEST_L1`], entry 2 (1 TiB)
/// [`GUEST_HIGH`]. Table descriptors are the tables' addresses plus 3 (valid
/// table); the linker writes them (the tables are page aligned).
/// In `.rodata` (a static with addresses would go to `.data.rel.ro`, which
/// no VM's stage 2 maps).
#[cfg(feature = "sbsa")]
#[unsafe(link_section = ".rodata.guest_l0")]
pub static GUEST_L0: baremetal::TableOfTables = baremetal::TableOfTables::new(&[
    &raw const GUEST_L1,
    core::ptr::null(),
    &raw const GUEST_HIGH,
]);
/// The tasks (the mailbox's `op`).
pub mod op {
    /// args = x0-x17 of an SMC; result = what came back.
    pub const SMC: u64 = 1;
    /// The same through HVC.
    pub const HVC: u64 = 2;
    /// The demo's user program: args[0] = a secret to store (0: none),
    /// args[1] = how many times to increment the counter. Prints one line;
    /// result = [TEE ID, counter, secret read back, 1 if every call succeeded].
    pub const USER: u64 = 3;
    /// result[0] = the 64-bit word at IPA args[0].
    pub const PEEK: u64 = 4;
    /// Writes args[1] to the 64-bit word at IPA args[0].
    pub const POKE: u64 = 5;
    /// result = [CurrentEL, SCTLR_EL1, own ID by FFA_ID_GET through SMC, through HVC].
    pub const INFO: u64 = 6;
    /// Sets TPIDR_EL0, TPIDR_EL1, TPIDRRO_EL0 and CONTEXTIDR_EL1 to args[0..4]
    /// when args[4] is 1, makes an ECHO call to its TEE when args[5] is 1, and
    /// returns the four registers as they are then.
    pub const SYSREGS: u64 = 7;
    /// Benchmark: args[0] calls (ECHO to its own TEE, REQ_64 by SMC) after
    /// args[1] warm-up calls, then the same loop with a NOP for the SMC;
    /// result = [ticks of the calls, ticks of the empty loop, 1 if every answer was right].
    pub const BENCH_TEE: u64 = 8;
    /// The same with FFA_ID_GET, which the hypervisor answers itself.
    pub const BENCH_TRAP: u64 = 9;
    /// Executes an undefined instruction (the VM's own vectors take it).
    pub const UNDEF: u64 = 10;
    /// The demo's document step (issue 18): the VM maps its RX/TX buffers
    /// (if it has none yet), writes a document of args[2] bytes at
    /// [`super::DOC_IPA`], shares it (args[1] = 0) or lends it (1) to its
    /// own TEE, has the TEE seal it (MEM_SEAL with key args[0]), reclaims
    /// and checks the seal. Prints one line; result = [handle, seal,
    /// answer of the first step that failed (0: none), 1 if the seal is right].
    pub const DOCUMENT: u64 = 11;
    /// Benchmark: args[0] share cycles after args[1] warm-up cycles: one
    /// page shared with its own TEE (FFA_MEM_SHARE_64), the TEE retrieves
    /// and relinquishes it (MEM_CYCLE), the VM reclaims; then the same loop
    /// with NOPs for the three calls. result = [ticks of the cycles, ticks
    /// of the empty loop, 1 if every answer was right].
    pub const BENCH_SHARE: u64 = 12;
    /// The demo's result step: writes a document of args[2] bytes at
    /// [`super::RESULT_IPA`], donates that page to its own TEE, which
    /// seals it and sends it back (MEM_RESULT with key args[0]: lent
    /// read-write if args[1] = 1, else shared read-only); the VM
    /// retrieves it through the hypervisor (it appears in its borrow
    /// window), reads the seal there, releases its RX, relinquishes, and
    /// has the TEE reclaim it. Prints one line; result = [handle, seal,
    /// answer of the first step that failed (0: none), 1 if the seal is
    /// right, the IPA it read the result at].
    pub const RESULT: u64 = 13;
}

/// IPA of a VM's TX buffer (the demo's and the benchmark's; the checks
/// choose their own).
pub const TX_IPA: u64 = RAM_IPA + 0x1000;
/// IPA of a VM's RX buffer.
pub const RX_IPA: u64 = RAM_IPA + 0x2000;
/// IPA of the page a VM shares with its TEE (its "document").
pub const DOC_IPA: u64 = RAM_IPA + 0x4000;

/// IPA of the page a VM donates its TEE for a result.
pub const RESULT_IPA: u64 = RAM_IPA + 0x6000;

/// What the hypervisor and a VM exchange (at [`MAILBOX_IPA`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mailbox {
    pub op: u64,
    pub args: Regs,
    pub result: Regs,
}

impl Mailbox {
    /// Where `op` is, for a mailbox at `at`.
    pub fn op(at: u64) -> *mut u64 {
        (at as usize + offset_of!(Mailbox, op)) as *mut u64
    }

    /// Where `args` is.
    pub fn args(at: u64) -> *mut Regs {
        (at as usize + offset_of!(Mailbox, args)) as *mut Regs
    }

    /// Where `result` is.
    pub fn result(at: u64) -> *mut Regs {
        (at as usize + offset_of!(Mailbox, result)) as *mut Regs
    }
}

global_asm!(
    r#"
.section .text.guest_entry, "ax"
.global guest_entry
guest_entry:
    mov x29, xzr
    mov x30, xzr
    b {main}

.section .text.guest_vectors, "ax"
.balign 2048
.global guest_vectors
guest_vectors:
    .irp i, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    mov x4, #\i
    b guest_exception
    .endr
guest_exception:
    mrs x1, esr_el1
    mrs x2, elr_el1
    mrs x3, far_el1
    movz x0, #{hv_hi}, lsl #16
    movk x0, #{hv_lo}
    hvc #0
    b guest_exception
"#,
    main = sym guest_main,
    hv_hi = const HV_GUEST_EXCEPTION >> 16,
    hv_lo = const HV_GUEST_EXCEPTION & 0xFFFF,
);

unsafe extern "C" {
    /// Where a VM starts (its first instruction).
    pub safe static guest_entry: u8;
    /// The VMs' EL1 vector table.
    pub safe static guest_vectors: u8;
}

/// The console from a VM (UART0, passed through).
fn console() -> Pl011 {
    // SAFETY: the VM's stage 2 maps UART0 at the same address, and VMs run
    // one at a time.
    unsafe { Pl011::new(UART_IPA as usize) }
}

/// A VM's main loop (NS-EL1).
extern "C" fn guest_main(vm: u64, mailbox: u64) -> ! {
    let vm = vm as u16;
    loop {
        let mut r = [0u64; 18];
        r[0] = HV_TASK_DONE;
        baremetal::hvc(&mut r);
        // SAFETY: the mailbox is in this VM's own RAM; the hypervisor wrote
        // the task before resuming the VM and does not touch it while the VM runs.
        let op = unsafe { read_volatile(Mailbox::op(mailbox)) };
        // SAFETY: as above.
        let args = unsafe { read_volatile(Mailbox::args(mailbox)) };
        let result = task(vm, op, args);
        // SAFETY: as above; the hypervisor reads the result after the next HVC.
        unsafe { write_volatile(Mailbox::result(mailbox), result) };
    }
}

/// Does one task.
fn task(vm: u16, op: u64, mut a: Regs) -> Regs {
    let mut out = [0u64; 18];
    match op {
        op::SMC => {
            baremetal::smc(&mut a);
            out = a;
        }
        op::HVC => {
            baremetal::hvc(&mut a);
            out = a;
        }
        op::USER => out[..4].copy_from_slice(&user(vm, a[0], a[1])),
        op::PEEK => {
            let p = a[0] as *const u64;
            // SAFETY: deliberately any address: the checks read outside the
            // VM's memory to see the hypervisor stop it.
            out[0] = unsafe { read_volatile(p) };
        }
        op::POKE => {
            let p = a[0] as *mut u64;
            // SAFETY: as for PEEK; writes to the VM's own RAM are its business.
            unsafe { write_volatile(p, a[1]) };
        }
        op::INFO => {
            let (el, sctlr): (u64, u64);
            // SAFETY: reading CurrentEL and SCTLR_EL1 has no side effect.
            unsafe {
                asm!("mrs {}, CurrentEL", "mrs {}, sctlr_el1", out(reg) el, out(reg) sctlr,
                    options(nomem, nostack))
            };
            out[0] = (el >> 2) & 3;
            out[1] = sctlr;
            let mut r = [0u64; 18];
            r[0] = ffa::ID_GET;
            baremetal::smc(&mut r);
            out[2] = if r[0] == ffa::SUCCESS_32 {
                r[2]
            } else {
                u64::MAX
            };
            let mut r = [0u64; 18];
            r[0] = ffa::ID_GET;
            baremetal::hvc(&mut r);
            out[3] = if r[0] == ffa::SUCCESS_32 {
                r[2]
            } else {
                u64::MAX
            };
        }
        op::SYSREGS => {
            if a[4] == 1 {
                // SAFETY: these registers are the VM's own thread and
                // context IDs; nothing in this program depends on them.
                unsafe {
                    asm!(
                        "msr tpidr_el0, {}",
                        "msr tpidr_el1, {}",
                        "msr tpidrro_el0, {}",
                        "msr contextidr_el1, {}",
                        in(reg) a[0], in(reg) a[1], in(reg) a[2], in(reg) a[3],
                        options(nomem, nostack),
                    )
                };
            }
            if a[5] == 1 {
                let _ = tee(vm, cmd::ECHO, [1, 2, 3, 4]);
            }
            let (t0, t1, tro, ctx): (u64, u64, u64, u64);
            // SAFETY: reading these registers has no side effect.
            unsafe {
                asm!(
                    "mrs {}, tpidr_el0",
                    "mrs {}, tpidr_el1",
                    "mrs {}, tpidrro_el0",
                    "mrs {}, contextidr_el1",
                    out(reg) t0, out(reg) t1, out(reg) tro, out(reg) ctx,
                    options(nomem, nostack),
                )
            };
            out[..4].copy_from_slice(&[t0, t1, tro, ctx]);
        }
        op::BENCH_TEE => {
            let me = (vm as u64) << 16 | ids::VTEE_TEMPLATE as u64;
            let make = || [ffa::MSG_SEND_DIRECT_REQ_64, me, 0, cmd::ECHO, 1, 2, 3, 4];
            let check = |r: &[u64; 8]| r[0] == ffa::MSG_SEND_DIRECT_RESP_64 && r[4] == 1;
            out[..3].copy_from_slice(&bench(a[0], a[1], make, check));
        }
        op::BENCH_TRAP => {
            let make = || [ffa::ID_GET, 0, 0, 0, 0, 0, 0, 0];
            let check = |r: &[u64; 8]| r[0] == ffa::SUCCESS_32 && r[2] == vm as u64;
            out[..3].copy_from_slice(&bench(a[0], a[1], make, check));
        }
        op::DOCUMENT => out[..4].copy_from_slice(&document(vm, a[0], a[1], a[2])),
        op::RESULT => out[..5].copy_from_slice(&result(vm, a[0], a[1], a[2])),
        op::BENCH_SHARE => out[..3].copy_from_slice(&bench_share(vm, a[0], a[1])),
        op::UNDEF => {
            // SAFETY: UDF raises an undefined-instruction exception at EL1:
            // the VM's vectors report it to the hypervisor, which stops the VM.
            unsafe { asm!("udf #0", options(nomem, nostack)) };
        }
        _ => out[0] = u64::MAX,
    }
    out
}

/// A direct request (REQ_64, SMC) to the VM's own TEE, as a well-behaved VM
/// makes it: with its own ID as sender (the hypervisor writes it anyway).
pub fn tee(vm: u16, command: u64, args: [u64; 4]) -> Regs {
    let mut r = [0u64; 18];
    r[0] = ffa::MSG_SEND_DIRECT_REQ_64;
    r[1] = (vm as u64) << 16 | ids::VTEE_TEMPLATE as u64;
    r[3] = command;
    r[4..8].copy_from_slice(&args);
    baremetal::smc(&mut r);
    r
}

/// True if `r` is a successful response of the partition.
fn ok(r: &Regs) -> bool {
    r[0] == ffa::MSG_SEND_DIRECT_RESP_64 && r[3] == test_protocol::status::OK
}

/// The demo's user program: store a secret in the TEE, count, read back.
fn user(vm: u16, secret: u64, count: u64) -> [u64; 4] {
    let mut good = true;
    let who = tee(vm, cmd::WHOAMI, [0; 4]);
    good &= ok(&who);
    let id = who[4];
    if secret != 0 {
        good &= ok(&tee(vm, cmd::KV_PUT, [0, secret, 0, 0]));
    }
    let mut counter = 0;
    for _ in 0..count {
        let r = tee(vm, cmd::COUNTER, [0; 4]);
        good &= ok(&r);
        counter = r[4];
    }
    let r = tee(vm, cmd::KV_GET, [0; 4]);
    good &= ok(&r);
    let kept = r[4];
    let mut c = console();
    if good && kept == 0 {
        let _ = writeln!(
            c,
            "user {vm}: TEE {id:#06x} counter = {counter}, secret = 0"
        );
    } else if good {
        let _ = writeln!(
            c,
            "user {vm}: TEE {id:#06x} counter = {counter}, secret = {kept:#x}"
        );
    } else {
        let _ = writeln!(
            c,
            "user {vm}: my TEE did not answer (x0 = {:#x}, x2 = {:#x})",
            r[0], r[2]
        );
    }
    [id, counter, kept, good as u64]
}

/// `n` calls of `make()`: elapsed counter ticks and whether every answer passed `check`.
#[inline(never)]
fn timed(
    n: u64,
    real: bool,
    make: impl Fn() -> [u64; 8],
    check: impl Fn(&[u64; 8]) -> bool,
) -> (u64, bool) {
    let t0 = baremetal::counter();
    let mut good = true;
    for _ in 0..n {
        let mut r = make();
        baremetal::bench_call(&mut r, real);
        good &= !real || check(&r);
    }
    (baremetal::counter() - t0, good)
}

/// [ticks of `n` real calls, ticks of `n` empty ones, 1 if all answers were right].
fn bench(
    n: u64,
    warm_up: u64,
    make: impl Fn() -> [u64; 8] + Copy,
    check: impl Fn(&[u64; 8]) -> bool + Copy,
) -> [u64; 3] {
    let (_, warm_ok) = timed(warm_up, true, make, check);
    let (real, real_ok) = timed(n, true, make, check);
    let (empty, _) = timed(n, false, make, check);
    [real, empty, (warm_ok && real_ok) as u64]
}

/// `w0 | code << 32` of an answer (code: the FF-A error, if any).
fn answer_of(r: &[u64]) -> u64 {
    let w0 = r[0] as u32 as u64;
    if w0 == ffa::ERROR_32 {
        w0 | (r[2] as u32 as u64) << 32
    } else {
        w0
    }
}

/// Maps the VM's RX/TX pair at [`TX_IPA`] / [`RX_IPA`] unless it has one
/// (DENIED): true if it has buffers afterwards.
fn map_buffers() -> bool {
    let mut r = [0u64; 18];
    r[..4].copy_from_slice(&[ffa::RXTX_MAP_64, TX_IPA, RX_IPA, 1]);
    baremetal::smc(&mut r);
    r[0] == ffa::SUCCESS_32 || (r[0] == ffa::ERROR_32 && r[2] as u32 as i32 == ffa::DENIED)
}

/// Writes a send of the page at [`DOC_IPA`] from `vm` to its own TEE (the
/// template's ID, read-write) into its TX; returns its length.
fn doc_descriptor(vm: u16, f: u64) -> usize {
    use test_protocol::mem::{Layout, Range, Receiver, Transaction, perm, sender_attributes};
    let to = [Receiver::new(ids::VTEE_TEMPLATE, perm::RW)];
    let ranges = [Range {
        addr: DOC_IPA,
        pages: 1,
    }];
    let mut t = Transaction::send(Layout::V1_2, vm, &to, &ranges);
    t.attributes = sender_attributes(f, 1);
    let mut b = [0u8; 128];
    let n = t.write(&mut b).unwrap_or(0);
    for (i, v) in b[..n].iter().enumerate() {
        // SAFETY: the VM's own TX page (its RAM, mapped read-write).
        unsafe { write_volatile((TX_IPA as usize + i) as *mut u8, *v) };
    }
    n
}

/// The words of user `vm`'s document.
fn doc_word(vm: u16, i: u64) -> u64 {
    0xD0C0_0000_0000_0000 | (vm as u64) << 32 | i
}

/// The demo's document step (op::DOCUMENT).
fn document(vm: u16, key: u64, lend: u64, bytes: u64) -> [u64; 4] {
    use test_protocol::mem::func;
    let bytes = bytes.clamp(8, 4088) & !7;
    let words = bytes / 8;
    let doc = DOC_IPA as *mut u64;
    for i in 0..words {
        // SAFETY: the VM's own document page (its RAM, read-write).
        unsafe { write_volatile(doc.wrapping_add(i as usize), doc_word(vm, i)) };
    }
    let mut failed = 0;
    let mut handle = 0;
    let f = if lend == 1 {
        func::LEND_64
    } else {
        func::SHARE_64
    };
    if !map_buffers() {
        failed = u64::MAX;
    }
    let n = doc_descriptor(vm, f);
    let mut r = [0u64; 18];
    if failed == 0 {
        r[..5].copy_from_slice(&[f, n as u64, n as u64, 0, 0]);
        baremetal::smc(&mut r);
        if r[0] == ffa::SUCCESS_32 {
            handle = r[2] as u32 as u64 | (r[3] as u32 as u64) << 32;
        } else {
            failed = answer_of(&r);
        }
    }
    let mut tee_id = 0;
    let mut seal = 0;
    if failed == 0 {
        r = tee(vm, cmd::MEM_SEAL, [handle, vm as u64, bytes, key]);
        tee_id = (r[1] >> 16) & 0xFFFF;
        if !ok(&r) {
            failed = answer_of(&r);
        } else if r[4] != 0 {
            failed = r[4];
        }
        seal = r[5];
    }
    if handle != 0 {
        let mut c = [0u64; 18];
        c[..4].copy_from_slice(&[func::RECLAIM, handle & 0xFFFF_FFFF, handle >> 32, 0]);
        baremetal::smc(&mut c);
        if c[0] != ffa::SUCCESS_32 && failed == 0 {
            failed = answer_of(&c);
        }
    }
    // After the reclaim the page is the VM's again (lent: mapped back).
    let mut found = 0;
    let mut want = 0;
    if failed == 0 {
        // SAFETY: the VM's own document page, reclaimed.
        found = unsafe { read_volatile(doc.wrapping_add(words as usize)) };
        want = test_protocol::seal(key, (0..words).map(|i| doc_word(vm, i)));
    }
    let right = failed == 0 && found == want && seal == want;
    let how = if lend == 1 { "lent" } else { "shared" };
    let mut c = console();
    if right {
        let _ = writeln!(
            c,
            "user {vm}: TEE {tee_id:#06x} sealed the {bytes}-byte document it was {how}: seal {found:#018x}, checked after reclaim"
        );
    } else {
        let _ = writeln!(
            c,
            "user {vm}: the document was not sealed (failed step answered {failed:#x}, seal {found:#x}, want {want:#x})"
        );
    }
    [handle, found, failed, right as u64]
}

/// Writes `bytes` into the VM's TX page.
fn to_tx(b: &[u8]) {
    for (i, v) in b.iter().enumerate() {
        // SAFETY: the VM's own TX page (its RAM, mapped read-write).
        unsafe { write_volatile((TX_IPA as usize + i) as *mut u8, *v) };
    }
}

/// The demo's result step (op::RESULT).
fn result(vm: u16, key: u64, lend: u64, bytes: u64) -> [u64; 5] {
    use test_protocol::cmd::send;
    use test_protocol::mem::{
        Descriptor, Layout, Range, Receiver, Relinquish, Transaction, func, perm, sender_attributes,
    };
    let bytes = bytes.clamp(8, 4088) & !7;
    let words = bytes / 8;
    let doc = RESULT_IPA as *mut u64;
    let word = |i: u64| 0xA5C0_0000_0000_0000 | (vm as u64) << 32 | i;
    for i in 0..words {
        // SAFETY: the VM's own page (its RAM, read-write), not given yet.
        unsafe { write_volatile(doc.wrapping_add(i as usize), word(i)) };
    }
    let mut failed = 0;
    let fail = |f: &mut u64, r: &Regs| {
        if *f == 0 {
            *f = answer_of(r).max(1);
        }
    };
    if !map_buffers() {
        failed = u64::MAX;
    }
    // 1. The VM donates the page to its own TEE.
    let to = [Receiver::new(ids::VTEE_TEMPLATE, 0)];
    let ranges = [Range {
        addr: RESULT_IPA,
        pages: 1,
    }];
    let mut t = Transaction::send(Layout::V1_2, vm, &to, &ranges);
    t.attributes = sender_attributes(func::DONATE_64, 1);
    let mut b = [0u8; 160];
    let n = t.write(&mut b).unwrap_or(0) as u64;
    let mut r = [0u64; 18];
    let mut given = 0;
    if failed == 0 {
        to_tx(&b[..n as usize]);
        r[..5].copy_from_slice(&[func::DONATE_64, n, n, 0, 0]);
        baremetal::smc(&mut r);
        if r[0] == ffa::SUCCESS_32 {
            given = r[2] as u32 as u64 | (r[3] as u32 as u64) << 32;
        } else {
            fail(&mut failed, &r);
        }
    }
    // 2. The TEE seals it and gives it back.
    let (kind, perms) = if lend == 1 {
        (send::LEND, perm::RW)
    } else {
        (send::SHARE, perm::RO)
    };
    let (mut tee_id, mut handle, mut seal) = (0u16, 0u64, 0u64);
    if failed == 0 {
        r = tee(
            vm,
            cmd::MEM_RESULT,
            [
                given,
                vm as u64,
                bytes | kind << 16 | (perms as u64) << 24,
                key,
            ],
        );
        tee_id = (r[1] >> 16) as u16;
        if !ok(&r) {
            fail(&mut failed, &r);
        } else if r[4] != 0 {
            failed = r[4];
        }
        handle = r[5];
        seal = r[6];
    }
    // 3. The VM retrieves it: the hypervisor maps it and says where.
    let mut at = 0;
    if failed == 0 {
        let me = [Receiver::new(vm, perms)];
        let q = Transaction::retrieve(Layout::V1_2, tee_id, handle, 0, &me);
        let n = q.write(&mut b).unwrap_or(0) as u64;
        to_tx(&b[..n as usize]);
        r = [0; 18];
        r[..5].copy_from_slice(&[func::RETRIEVE_REQ_64, n, n, 0, 0]);
        baremetal::smc(&mut r);
        if r[0] == func::RETRIEVE_RESP {
            let mut resp = [0u8; 160];
            let len = (r[2] as usize).min(resp.len());
            for (i, v) in resp[..len].iter_mut().enumerate() {
                // SAFETY: the VM's own RX page, which the response fills.
                *v = unsafe { read_volatile((RX_IPA as usize + i) as *const u8) };
            }
            at = Descriptor::parse(&resp[..len], false)
                .ok()
                .and_then(|d| {
                    let e = d.emad_of(vm)?;
                    let c = d.composite(&e).ok()?;
                    d.range(&c, 0).ok().map(|(g, _)| g.addr)
                })
                .unwrap_or(0);
            let mut rel = [0u64; 18];
            rel[0] = ffa::RX_RELEASE;
            baremetal::smc(&mut rel);
            if at == 0 {
                failed = 2;
            }
        } else {
            fail(&mut failed, &r);
        }
    }
    // 4. It reads the result where the hypervisor mapped it.
    let mut found = 0;
    if failed == 0 {
        // SAFETY: the page just retrieved, mapped by the hypervisor at `at`.
        found = unsafe { read_volatile((at as *const u64).wrapping_add(words as usize)) };
    }
    // 5. It relinquishes the page; its TEE reclaims it.
    if handle != 0 {
        let me = [vm];
        let d = Relinquish {
            handle,
            flags: 0,
            endpoints: &me,
        };
        let n = d.write(&mut b).unwrap_or(0);
        to_tx(&b[..n]);
        r = [0; 18];
        r[0] = func::RELINQUISH;
        baremetal::smc(&mut r);
        if r[0] != ffa::SUCCESS_32 {
            fail(&mut failed, &r);
        }
        r = tee(
            vm,
            cmd::CALL,
            [func::RECLAIM, handle & 0xFFFF_FFFF, handle >> 32, 0],
        );
        if r[4] != ffa::SUCCESS_32 && failed == 0 {
            failed = r[4] | r[5] << 32;
        }
    }
    let want = test_protocol::seal(key, (0..words).map(word));
    let right = failed == 0 && found == want && seal == want;
    let how = if lend == 1 { "lent" } else { "shared" };
    let mut c = console();
    if right {
        let _ = writeln!(
            c,
            "user {vm}: TEE {tee_id:#06x} {how} back its result in the page it was donated: seal {found:#018x}, read at IPA {at:#x}, relinquished"
        );
    } else {
        let _ = writeln!(
            c,
            "user {vm}: no result came back (failed step answered {failed:#x}, seal {found:#x}, want {want:#x})"
        );
    }
    [handle, found, failed, right as u64, at]
}

/// The share-cycle benchmark (op::BENCH_SHARE).
fn bench_share(vm: u16, n: u64, warm_up: u64) -> [u64; 3] {
    use test_protocol::mem::func;
    if !map_buffers() {
        return [0, 0, 0];
    }
    let len = doc_descriptor(vm, func::SHARE_64) as u64;
    let me = (vm as u64) << 16 | ids::VTEE_TEMPLATE as u64;
    let cycles = |n: u64, real: bool| {
        let t0 = baremetal::counter();
        let mut good = true;
        for _ in 0..n {
            let mut s = [func::SHARE_64, len, len, 0, 0, 0, 0, 0];
            baremetal::bench_call(&mut s, real);
            let h = s[2] as u32 as u64 | (s[3] as u32 as u64) << 32;
            let mut q = [
                ffa::MSG_SEND_DIRECT_REQ_64,
                me,
                0,
                cmd::MEM_CYCLE,
                h,
                vm as u64,
                0,
                0,
            ];
            baremetal::bench_call(&mut q, real);
            let mut c = [func::RECLAIM, h & 0xFFFF_FFFF, h >> 32, 0, 0, 0, 0, 0];
            baremetal::bench_call(&mut c, real);
            good &= !real
                || (s[0] == ffa::SUCCESS_32
                    && q[0] == ffa::MSG_SEND_DIRECT_RESP_64
                    && q[4] == 0
                    && c[0] == ffa::SUCCESS_32);
        }
        (baremetal::counter() - t0, good)
    };
    let (_, warm_ok) = cycles(warm_up, true);
    let (real, real_ok) = cycles(n, true);
    let (empty, _) = cycles(n, false);
    [real, empty, (warm_ok && real_ok) as u64]
}
