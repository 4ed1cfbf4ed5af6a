//! FF-A calls through the SMC conduit, the direct message framing, the two
//! mailbox pages and the console log.

use core::fmt::{self, Write};

pub use test_protocol::ffa::*;

/// x0-x17 of one call or answer.
pub type Regs = [u64; 18];

/// Makes the call `func` with x1.. = `args` (the rest 0) and returns the answer.
pub fn call(func: u64, args: &[u64]) -> Regs {
    let mut r = [0u64; 18];
    r[0] = func;
    r[1..=args.len()].copy_from_slice(args);
    baremetal::smc(&mut r);
    r
}

/// The 32-bit function ID in w0 (the 64-bit variants differ in bit 30).
pub fn func(r: &Regs) -> u32 {
    r[0] as u32
}

/// Whether the answer is FFA_SUCCESS_32 (every call this partition makes
/// answers with the 32-bit form).
pub fn ok(r: &Regs) -> bool {
    func(r) == SUCCESS_32 as u32
}

/// Which of the three direct requests a message is; the answer has the same width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Req32,
    Req64,
    Req2,
}

/// Number of argument (and result) registers of the widest request, REQ2 (x5-x17).
pub const NARGS: usize = 13;

/// A direct request, decoded.
#[derive(Debug)]
pub struct Request {
    pub kind: Kind,
    pub sender: u16,
    /// x3 (REQ) or x4 (REQ2).
    pub cmd: u64,
    /// x4-x7 (REQ, the rest 0) or x5-x17 (REQ2); w-values for REQ_32.
    pub args: [u64; NARGS],
    /// The raw x3 and x4, for the TPM exception.
    pub x3_x4: (u64, u64),
}

impl Request {
    /// Decodes `r` if it is a direct request.
    pub fn decode(r: &Regs) -> Option<Self> {
        let f = func(r);
        let kind = if f == MSG_SEND_DIRECT_REQ_32 as u32 {
            Kind::Req32
        } else if f == MSG_SEND_DIRECT_REQ_64 as u32 {
            Kind::Req64
        } else if f == MSG_SEND_DIRECT_REQ2_64 as u32 {
            Kind::Req2
        } else {
            return None;
        };
        let mut args = [0; NARGS];
        let (cmd, x3_x4) = match kind {
            Kind::Req32 => {
                for (a, x) in args.iter_mut().zip(&r[4..8]) {
                    *a = *x as u32 as u64;
                }
                (r[3] as u32 as u64, (r[3] as u32 as u64, r[4] as u32 as u64))
            }
            Kind::Req64 => {
                args[..4].copy_from_slice(&r[4..8]);
                (r[3], (r[3], r[4]))
            }
            Kind::Req2 => {
                args.copy_from_slice(&r[5..18]);
                (r[4], (r[3], r[4]))
            }
        };
        Some(Self {
            kind,
            sender: (r[1] >> 16) as u16,
            cmd,
            args,
            x3_x4,
        })
    }
}

/// The direct response of kind `kind` from `own` to `dest` with `status` and
/// `results`: RESP_32/_64 carry the status in x3 and results 0-3 in x4-x7
/// (w-values for _32), RESP2 the status in x4 and results 0-12 in x5-x17.
pub fn response(kind: Kind, own: u16, dest: u16, status: u64, results: &[u64; NARGS]) -> Regs {
    let mut r = [0u64; 18];
    r[1] = (own as u64) << 16 | dest as u64;
    match kind {
        Kind::Req32 | Kind::Req64 => {
            let mask = if kind == Kind::Req32 {
                0xffff_ffff
            } else {
                u64::MAX
            };
            r[0] = if kind == Kind::Req32 {
                MSG_SEND_DIRECT_RESP_32
            } else {
                MSG_SEND_DIRECT_RESP_64
            };
            r[3] = status & mask;
            for (x, v) in r[4..8].iter_mut().zip(results) {
                *x = v & mask;
            }
        }
        Kind::Req2 => {
            r[0] = MSG_SEND_DIRECT_RESP2_64;
            r[4] = status;
            r[5..18].copy_from_slice(results);
        }
    }
    r
}

const PAGE: usize = 4096;

/// A 4 KiB mailbox page. The two live in .bss (in the `ram` region), so the
/// entry code zeroes them.
#[repr(C, align(4096))]
pub struct Page([u8; PAGE]);

static mut TX: Page = Page([0; PAGE]);
static mut RX: Page = Page([0; PAGE]);

/// One of the two mailbox pages, shared with the SPMC: accessed only through
/// volatile reads and writes at aligned offsets.
#[derive(Clone, Copy, Debug)]
pub enum Mailbox {
    Tx,
    Rx,
}

impl Mailbox {
    /// The IPA of the page (the boot map is an identity map: VA = IPA).
    pub fn ipa(self) -> u64 {
        self.base() as u64
    }

    fn base(self) -> *mut u8 {
        match self {
            Mailbox::Tx => (&raw mut TX).cast(),
            Mailbox::Rx => (&raw mut RX).cast(),
        }
    }

    fn at<T>(self, off: usize) -> *mut T {
        assert!(off.is_multiple_of(align_of::<T>()) && off + size_of::<T>() <= PAGE);
        self.base().wrapping_add(off).cast()
    }

    /// Reads the `T` at byte offset `off` (aligned for `T`, inside the page).
    pub fn read<T: Copy>(self, off: usize) -> T {
        // SAFETY: `at` checked that the access is aligned and inside our own
        // page, which is mapped read-write; the types used are plain integers.
        unsafe { self.at::<T>(off).read_volatile() }
    }

    /// Writes `v` at byte offset `off` (aligned for `T`, inside the page).
    pub fn write<T: Copy>(self, off: usize, v: T) {
        // SAFETY: as for `read`; nothing in Rust holds a reference to the page.
        unsafe { self.at::<T>(off).write_volatile(v) }
    }
}

/// Size of an FF-A v1.2 partition message header (the indirect message and
/// the first bytes a stale RX page could be mistaken for).
pub const MSG_HEADER_SIZE: usize = 40;

/// Gives the RX buffer back to the SPMC with FFA_RX_RELEASE. First clears the
/// message header, while the buffer is still ours, so that old contents are
/// never taken for a new indirect message.
pub fn rx_release() -> Regs {
    for off in (0..MSG_HEADER_SIZE).step_by(4) {
        Mailbox::Rx.write::<u32>(off, 0);
    }
    call(RX_RELEASE, &[])
}

/// Up to 128 characters of one FFA_CONSOLE_LOG_64 call; longer text is cut.
struct Line {
    buf: [u8; 128],
    len: usize,
}

impl Line {
    const fn new() -> Self {
        Self {
            buf: [0; 128],
            len: 0,
        }
    }

    /// Logs the line (plus a newline if there is room) with
    /// FFA_CONSOLE_LOG_64: x1 = count, characters packed little-endian
    /// 8 per register in x2-x17.
    fn send(mut self) -> Regs {
        let _ = self.write_str("\n");
        let mut r = [0u64; 18];
        r[0] = CONSOLE_LOG_64;
        r[1] = self.len as u64;
        for (i, &c) in self.buf[..self.len].iter().enumerate() {
            r[2 + i / 8] |= (c as u64) << (8 * (i % 8));
        }
        baremetal::smc(&mut r);
        r
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &c in s.as_bytes() {
            if self.len == self.buf.len() {
                break;
            }
            self.buf[self.len] = c;
            self.len += 1;
        }
        Ok(())
    }
}

/// Logs one formatted line on the SPMC's console; returns the call's answer.
pub fn log(args: fmt::Arguments<'_>) -> Regs {
    let mut line = Line::new();
    let _ = line.write_fmt(args);
    line.send()
}
