//! The partition's state and the handlers of the harness's commands
//! (tests/protocol).

use core::arch::asm;

use test_protocol::{cmd, status};

use crate::ffa::{self, Mailbox, NARGS, Regs, Request, call};
use crate::mem::{self, MemState};

/// What a handler answers: a status and the result registers.
pub type Answer = (u64, [u64; NARGS]);

/// The last indirect message (LAST_MSG).
#[derive(Debug)]
struct LastMsg {
    sender: u16,
    first: u64,
    size: u32,
    count: u64,
}

/// Everything the partition remembers, in .bss.
#[derive(Debug)]
pub struct Sp {
    /// Own ID (FFA_ID_GET at boot; 0 if that failed).
    pub id: u16,
    /// The answer to FFA_VERSION(1.2) at boot.
    pub version: u32,
    /// x4 at boot: the vCPU index.
    pub vcpu: u64,
    /// x0 at boot and whether it pointed at boot information with our manifest.
    pub boot_x0: u64,
    pub boot_info_ok: bool,
    /// The manifest's address the boot information named (0: none).
    pub boot_manifest: u64,
    kv: [u64; 16],
    counter: u64,
    last: LastMsg,
    /// The last retrieve response (MEM_RETRIEVE).
    mem: MemState,
    /// Secure interrupt handling (IRQ_* commands).
    pub irq: crate::irq::IrqState,
}

impl Sp {
    /// The state before boot (all zero, so it lives in .bss).
    pub const fn new() -> Self {
        Self {
            id: 0,
            version: 0,
            vcpu: 0,
            boot_x0: 0,
            boot_info_ok: false,
            boot_manifest: 0,
            kv: [0; 16],
            counter: 0,
            last: LastMsg {
                sender: 0,
                first: 0,
                size: 0,
                count: 0,
            },
            mem: MemState::new(),
            irq: crate::irq::IrqState::new(),
        }
    }

    /// Runs one command and returns its status and results.
    pub fn handle(&mut self, req: &Request) -> Answer {
        let a = &req.args;
        let r = |v: &[u64]| {
            let mut out = [0; NARGS];
            out[..v.len()].copy_from_slice(v);
            (status::OK, out)
        };
        match req.cmd {
            cmd::ECHO => (status::OK, *a),
            cmd::ADD => r(&[a[0].wrapping_add(a[1])]),
            cmd::WHOAMI => {
                let spm = call(ffa::SPM_ID_GET, &[]);
                r(&[
                    self.id as u64,
                    self.version as u64,
                    spm[2] as u32 as u64,
                    self.vcpu,
                ])
            }
            cmd::FORWARD => {
                let Ok(dest) = u16::try_from(a[0]) else {
                    return bad_arg();
                };
                let x1 = (self.id as u64) << 16 | dest as u64;
                let ans = call(ffa::MSG_SEND_DIRECT_REQ_64, &[x1, 0, cmd::ECHO, a[1], a[2]]);
                let second = if ffa::func(&ans) == ffa::ERROR_32 as u32 {
                    ans[2]
                } else {
                    ans[4]
                };
                r(&[ans[0], second, ans[5]])
            }
            cmd::READ => {
                let p = a[0] as *const u64;
                // SAFETY: deliberately any address: reading outside our
                // mapped memory (or unaligned) faults, and the SPMC aborting
                // the partition is what the crash tests look for.
                r(&[unsafe { p.read_volatile() }])
            }
            cmd::WRITE => {
                let p = a[0] as *mut u64;
                // SAFETY: as for READ; the harness may also overwrite our own
                // memory, which is its business.
                unsafe { p.write_volatile(a[1]) };
                r(&[])
            }
            cmd::UNDEF => {
                // SAFETY: UDF raises an undefined-instruction exception; with
                // VBAR_EL1 left unmapped it ends at the SPMC, which aborts us.
                unsafe { asm!("udf #0", options(noreturn, nomem, nostack)) }
            }
            cmd::AARCH32 => aarch32_el0(a[0]),
            cmd::FAULT => {
                let o = crate::fault::read_with_vectors(a[0], a[1] != 0);
                if o.esr == 0 {
                    r(&[o.value, 0, 0])
                } else {
                    r(&[test_protocol::FAULT_HANDLED, o.esr, o.far])
                }
            }
            cmd::FP_SET => {
                fp_set(a[0], !a[0]);
                r(&[])
            }
            cmd::FP_GET => {
                let (lo, hi) = fp_get();
                r(&[lo, hi])
            }
            cmd::CONSOLE => {
                let ans = ffa::log(format_args!("test-sp {:#x}: hello {}", self.id, a[0]));
                r(&w0_w2(&ans))
            }
            cmd::CONSOLE_RAW => {
                let mut args = [a[0] as u32 as u64, 0, 0, 0, 0, 0, 0];
                for (i, c) in RAW_TEXT.iter().enumerate() {
                    args[1 + i / 4] |= (*c as u64) << (8 * (i % 4));
                }
                r(&w0_w2(&call(ffa::CONSOLE_LOG_32, &args)))
            }
            cmd::YIELD => r(&[call(ffa::YIELD, &[])[0] as u32 as u64]),
            cmd::PARTINFO => self.partinfo(),
            cmd::SEND2 => {
                let Ok(dest) = u16::try_from(a[0]) else {
                    return bad_arg();
                };
                let tx = Mailbox::Tx;
                for off in (0..ffa::MSG_HEADER_SIZE).step_by(4) {
                    tx.write::<u32>(off, 0);
                }
                tx.write::<u32>(8, ffa::MSG_HEADER_SIZE as u32);
                tx.write::<u32>(12, (self.id as u32) << 16 | dest as u32);
                tx.write::<u32>(16, 8);
                tx.write::<u64>(ffa::MSG_HEADER_SIZE, a[1]);
                // arg2: FFA_MSG_SEND2's flags (bit 1: delay the SRI).
                r(&w0_w2(&call(ffa::MSG_SEND2, &[0, a[2]])))
            }
            cmd::LAST_MSG => {
                let m = &self.last;
                r(&[m.sender as u64, m.first, m.size as u64, m.count])
            }
            cmd::BOOTINFO => r(&[
                self.boot_info_ok as u64,
                self.boot_x0,
                self.boot_manifest,
                &raw const _start as u64,
            ]),
            cmd::WAIT_IN_REQ => r(&w0_w2(&call(ffa::MSG_WAIT, &[]))),
            cmd::RESP_WRONG => {
                let Ok(dest) = u16::try_from(a[0]) else {
                    return bad_arg();
                };
                let mut wrong = ffa::response(req.kind, self.id, dest, status::OK, &[0; NARGS]);
                baremetal::smc(&mut wrong);
                r(&w0_w2(&wrong))
            }
            cmd::CALL => {
                let ans = call(a[0], &[a[1], a[2], a[3]]);
                r(&[ans[0] as u32 as u64, ans[2], ans[3]])
            }
            cmd::NOTIFY => {
                let ans = call(a[0], &[a[1], a[2], a[3] & 0xFFFF_FFFF, a[3] >> 32]);
                let w = |i: usize| ans[i] & 0xFFFF_FFFF;
                r(&[w(0), w(2) | w(3) << 32, w(4) | w(5) << 32, w(6)])
            }
            cmd::STORM => r(&storm(a[0], a[1], a[2], a[3])),
            cmd::IRQ_ARM => {
                let armed = crate::irq::arm(a[0]);
                let (mut got, mut polls) = (0, 0);
                if a[1] == 1 {
                    while polls < a[2] && got == 0 {
                        polls += 1;
                        got = self.irq.poll();
                    }
                }
                if a[1] == 2 {
                    polls = crate::irq::wait_virtual_irq(armed, a[2]) as u64;
                }
                let ctl: u64;
                // SAFETY: reading its own timer's control has no side effect.
                unsafe { asm!("mrs {}, cntv_ctl_el0", out(reg) ctl, options(nomem, nostack)) };
                r(&[got, polls, armed, ctl])
            }
            cmd::IRQ_STATUS => r(&[
                self.irq.handled,
                self.irq.last,
                self.irq.resumed,
                self.irq.at,
            ]),
            cmd::IRQ_HOLD => {
                let released = if a[0] == 0 { self.irq.release() } else { 0 };
                self.irq.hold = a[0] == 1;
                r(&[released])
            }
            cmd::IRQ_POLL => r(&[self.irq.poll()]),
            cmd::BUSY => crate::busy::run(self.id, req),
            cmd::MAILBOX => r(&[Mailbox::Tx.ipa(), Mailbox::Rx.ipa()]),
            cmd::REMAP => r(&remap(a[0], a[1], a[2])),
            cmd::KV_PUT | cmd::KV_GET => {
                let Some(slot) = usize::try_from(a[0]).ok().and_then(|k| self.kv.get_mut(k)) else {
                    return bad_arg();
                };
                if req.cmd == cmd::KV_PUT {
                    *slot = a[1];
                    r(&[])
                } else {
                    r(&[*slot])
                }
            }
            cmd::COUNTER => {
                self.counter = self.counter.wrapping_add(1);
                r(&[self.counter])
            }
            cmd::MEM_RETRIEVE => mem::retrieve(self.id, &mut self.mem, a),
            cmd::MEM_INFO => self.mem.info(self.id),
            cmd::MEM_RANGE => self.mem.range(self.id, a[0]),
            cmd::MEM_FILL | cmd::MEM_CHECK | cmd::MEM_SUM => mem::touch(req.cmd, a[0], a[1], a[2]),
            cmd::MEM_RELINQUISH => mem::relinquish(self.id, a),
            cmd::MEM_SEND => mem::send(self.id, a),
            cmd::MEM_CYCLE => mem::cycle(self.id, a),
            cmd::MEM_SEAL => mem::seal(self.id, a),
            cmd::MEM_RESULT => mem::result(self.id, a),
            _ => (status::UNKNOWN, [0; NARGS]),
        }
    }

    /// PARTINFO: FFA_PARTITION_INFO_GET with the nil UUID; on success the
    /// first descriptor's ID (if there is one) and FFA_RX_RELEASE.
    fn partinfo(&mut self) -> Answer {
        let ans = call(ffa::PARTITION_INFO_GET, &[0, 0, 0, 0, 0]);
        let mut first = 0;
        if ffa::ok(&ans) {
            if ans[2] as u32 != 0 {
                first = Mailbox::Rx.read::<u16>(0) as u64;
            }
            ffa::rx_release();
        }
        let mut out = [0; NARGS];
        out[..4].copy_from_slice(&[
            ans[0] as u32 as u64,
            ans[2] as u32 as u64,
            ans[3] as u32 as u64,
            first,
        ]);
        (status::OK, out)
    }

    /// On FFA_RUN: takes the indirect message in RX, if there is one
    /// (a v1.2 header with a non-zero size that fits the page), records it
    /// for LAST_MSG and releases RX.
    pub fn receive_indirect(&mut self) {
        let rx = Mailbox::Rx;
        let offset = rx.read::<u32>(8) as usize;
        let size = rx.read::<u32>(16);
        if size == 0 || offset < ffa::MSG_HEADER_SIZE || offset + size as usize > 4096 {
            return;
        }
        let mut first = 0;
        for i in 0..size.min(8) as usize {
            first |= (rx.read::<u8>(offset + i) as u64) << (8 * i);
        }
        self.last = LastMsg {
            sender: rx.read::<u16>(14),
            first,
            size,
            count: self.last.count + 1,
        };
        let ans = ffa::rx_release();
        if !ffa::ok(&ans) {
            ffa::log(format_args!(
                "test-sp {:#x}: FFA_RX_RELEASE failed: {:#x} {:#x}",
                self.id, ans[0], ans[2]
            ));
        }
    }
}

/// STORM: `count` calls of `f` with x1 = `x1` (tests/protocol).
fn storm(f: u64, count: u64, x1: u64, after: u64) -> [u64; 4] {
    let first = call(f, &[x1]);
    let (w0, w2) = (first[0] as u32, first[2] as u32);
    let mut same = 0;
    let mut last = first;
    for i in 0..count.min(1_000_000) {
        let ans = if i == 0 { first } else { call(f, &[x1]) };
        if ffa::ok(&ans) && after != 0 {
            call(after, &[]);
        }
        if ans[0] as u32 == w0 && ans[2] as u32 == w2 {
            same += 1;
        }
        last = ans;
    }
    [same, w0 as u64, w2 as u64, last[0] as u32 as u64]
}

/// REMAP: unmap, map (tx, rx, pages), then map the own pages again.
fn remap(tx: u64, rx: u64, pages: u64) -> [u64; 4] {
    let unmap = call(ffa::RXTX_UNMAP, &[]);
    let hostile = call(ffa::RXTX_MAP_64, &[tx, rx, pages]);
    if ffa::ok(&hostile) {
        call(ffa::RXTX_UNMAP, &[]);
    }
    let own = call(ffa::RXTX_MAP_64, &[Mailbox::Tx.ipa(), Mailbox::Rx.ipa(), 1]);
    [
        unmap[0] as u32 as u64,
        hostile[0] as u32 as u64,
        hostile[2] as u32 as u64,
        own[0] as u32 as u64,
    ]
}

/// The 24 characters CONSOLE_RAW offers (w2-w7); arg0 says how many to log.
const RAW_TEXT: &[u8; 24] = b"test-sp raw console log\n";

fn bad_arg() -> Answer {
    (status::BAD_ARG, [0; NARGS])
}

/// w0 and w2 of an answer.
fn w0_w2(r: &Regs) -> [u64; 2] {
    [r[0] as u32 as u64, r[2] as u32 as u64]
}

/// Sets d8 to `lo` and the upper half of v8 to `hi`.
fn fp_set(lo: u64, hi: u64) {
    // SAFETY: writes only v8, which the softfloat compiler never uses (so no
    // clobber to declare); FP/SIMD access was enabled at boot (CPACR_EL1).
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "fmov d8, {lo}",
            "mov v8.d[1], {hi}",
            lo = in(reg) lo,
            hi = in(reg) hi,
            options(nomem, nostack, preserves_flags),
        )
    }
}

/// Reads d8 and the upper half of v8.
fn fp_get() -> (u64, u64) {
    let (lo, hi);
    // SAFETY: reads only v8; see `fp_set`.
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "fmov {lo}, d8",
            "mov {hi}, v8.d[1]",
            lo = out(reg) lo,
            hi = out(reg) hi,
            options(nomem, nostack, preserves_flags),
        )
    }
    (lo, hi)
}

// A32 code for `cmd::AARCH32`: `udf #0` (A32 encoding 0xe7f000f0), as data
// words so the AArch64 assembler takes it.
core::arch::global_asm!(
    ".section .text.aarch32, \"ax\"",
    ".balign 4",
    ".global test_sp_a32_udf",
    "test_sp_a32_udf:",
    ".word 0xe7f000f0",
    ".word 0xe7f000f0",
);

unsafe extern "C" {
    static test_sp_a32_udf: u8;
    /// The entry point (tests/baremetal): where the SPMC started us.
    static _start: u8;
}

/// Drops to AArch32 EL0 at `pc` (0: the A32 `udf` above); never returns.
fn aarch32_el0(pc: u64) -> ! {
    let pc = match pc {
        0 => &raw const test_sp_a32_udf as u64,
        pc => pc,
    };
    // SPSR_EL1: M[4] = 1 (AArch32), M[3:0] = 0 (User), A32 (T = 0), DAIF
    // masked. Our stage-1 map lets EL0 execute the first GiB (UXN clear).
    const SPSR_USR32: u64 = 0x10 | 0x1c0;
    // SAFETY: deliberately leaves this partition's AArch64 code for good:
    // whatever runs at `pc` faults, and the SPMC aborts the partition (what
    // the harness checks). Nothing of ours is used afterwards.
    unsafe {
        asm!(
            "msr spsr_el1, {spsr}",
            "msr elr_el1, {pc}",
            "eret",
            spsr = in(reg) SPSR_USR32,
            pc = in(reg) pc,
            options(noreturn, nostack),
        )
    }
}
