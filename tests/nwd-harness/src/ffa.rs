//! FF-A calls from the normal world (through the SPMD) and their constants.

#![allow(dead_code, reason = "constants for checks that later issues add")]

pub use test_protocol::ffa::*;

/// Registers of one call.
pub type Regs = [u64; 18];

/// Makes a call with x0 = `func` and the given x1.. arguments.
pub fn call(func: u64, args: &[u64]) -> Regs {
    let mut r = [0u64; 18];
    r[0] = func;
    r[1..=args.len()].copy_from_slice(args);
    baremetal::smc(&mut r);
    r
}

/// The FF-A error code if `r` is FFA_ERROR, else 0 (which no error code is).
pub fn code(r: &Regs) -> i32 {
    if r[0] as u32 == ERROR_32 as u32 {
        r[2] as u32 as i32
    } else {
        0
    }
}

/// FFA_VERSION: returns w0.
pub fn version(v: u32) -> u32 {
    call(VERSION, &[v as u64])[0] as u32
}

/// The version this boot of the harness negotiated before its first other
/// call: FF-A v1.2 fixes it from then on (DEN0077 v1.2 §13.2), so a check
/// that needs the normal world at v1.0 or v1.1 runs in a boot of its own
/// ([`crate::legacy`]).
static BOOT_VERSION: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(V1_2);

/// This boot's normal-world version.
pub fn boot_version() -> u32 {
    BOOT_VERSION.load(core::sync::atomic::Ordering::Relaxed)
}

/// Negotiates `v` as this boot's version: FFA_VERSION's answer.
pub fn negotiate(v: u32) -> u32 {
    BOOT_VERSION.store(v, core::sync::atomic::Ordering::Relaxed);
    version(v)
}

/// The harness's own endpoint ID (the normal world without a hypervisor).
pub const NWD_ID: u64 = 0;

/// A 4 KiB page of normal-world memory for an RX or TX buffer.
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct Page(pub [u8; 4096]);

/// The harness's TX buffer.
pub static mut TX: Page = Page([0; 4096]);
/// The harness's RX buffer.
pub static mut RX: Page = Page([0; 4096]);

/// Physical address of the TX buffer (the harness runs identity-mapped).
pub fn tx_addr() -> u64 {
    (&raw const TX) as u64
}

/// Physical address of the RX buffer.
pub fn rx_addr() -> u64 {
    (&raw const RX) as u64
}

/// Reads `N` bytes of the RX buffer at `off`.
pub fn rx_bytes<const N: usize>(off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        let p = (rx_addr() as *const u8).wrapping_add(off + i);
        // SAFETY: `p` lies in the RX page, which is ours; the SPMC writes it
        // only while it owns the buffer, and the harness reads it after the
        // call that filled it.
        *b = unsafe { core::ptr::read_volatile(p) };
    }
    out
}

/// A little-endian u16 from RX.
pub fn rx_u16(off: usize) -> u16 {
    u16::from_le_bytes(rx_bytes::<2>(off))
}

/// A little-endian u32 from RX.
pub fn rx_u32(off: usize) -> u32 {
    u32::from_le_bytes(rx_bytes::<4>(off))
}

/// A little-endian u64 from RX.
pub fn rx_u64(off: usize) -> u64 {
    u64::from_le_bytes(rx_bytes::<8>(off))
}

/// Writes bytes into the TX buffer at `off`.
pub fn tx_write(off: usize, data: &[u8]) {
    for (i, b) in data.iter().enumerate() {
        let p = (tx_addr() as *mut u8).wrapping_add(off + i);
        // SAFETY: `p` lies in the TX page, which is ours; the SPMC reads it
        // only during a call.
        unsafe { core::ptr::write_volatile(p, *b) };
    }
}

/// Writes an FF-A v1.2 indirect message (header + payload) into TX.
pub fn tx_message(sender: u16, receiver: u16, payload: &[u8]) {
    let mut h = [0u8; 40];
    h[8..12].copy_from_slice(&40u32.to_le_bytes());
    h[12..14].copy_from_slice(&receiver.to_le_bytes());
    h[14..16].copy_from_slice(&sender.to_le_bytes());
    h[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    tx_write(0, &h);
    tx_write(40, payload);
}

/// Maps the harness's RX/TX buffers with the SPMC.
pub fn map_buffers() -> Regs {
    call(RXTX_MAP_64, &[tx_addr(), rx_addr(), 1])
}

/// FFA_MSG_SEND_DIRECT_REQ_64 from the harness to `dst` with x3-x7.
pub fn req64(dst: u16, x3_x7: [u64; 5]) -> Regs {
    let mut args = [0u64; 7];
    args[0] = (NWD_ID << 16) | dst as u64;
    args[2..].copy_from_slice(&x3_x7);
    call(MSG_SEND_DIRECT_REQ_64, &args)
}

/// FFA_MSG_SEND_DIRECT_REQ2_64 from the harness to `dst` for `uuid` with x4-x17.
pub fn req2(dst: u16, uuid: [u32; 4], x4_x17: &[u64]) -> Regs {
    let mut r = [0u64; 18];
    r[0] = MSG_SEND_DIRECT_REQ2_64;
    r[1] = (NWD_ID << 16) | dst as u64;
    r[2] = uuid[0] as u64 | (uuid[1] as u64) << 32;
    r[3] = uuid[2] as u64 | (uuid[3] as u64) << 32;
    r[4..4 + x4_x17.len()].copy_from_slice(x4_x17);
    baremetal::smc(&mut r);
    r
}

/// Runs a test-partition command with REQ_64: returns the response registers.
pub fn cmd(dst: u16, command: u64, args: [u64; 4]) -> Regs {
    req64(dst, [command, args[0], args[1], args[2], args[3]])
}
