//! A VM's RX/TX buffers, memory sharing and indirect messages, forwarded
//! to the SPMC on the VM's behalf (issue 18; docs/hypervisor.md, "Memory
//! sharing and indirect messages").
//!
//! The hypervisor acts for its VMs as DEN0077 v1.2 and DEN0140 let a
//! hypervisor act, the way Hafnium does it when it runs as the normal-world
//! hypervisor under an SPMC:
//!
//! - **RX/TX buffers** (§13.5): a VM's `FFA_RXTX_MAP` names IPAs of its own
//!   RAM; the hypervisor translates them and maps the pair with the SPMC in
//!   the VM's name (`FFA_RXTX_MAP` with all arguments zero and an Endpoint
//!   RX/TX descriptor in the hypervisor's own TX buffer, Hafnium's
//!   `ffa_setup_rxtx_map_forward`). The SPMC then reads the VM's TX itself
//!   for `FFA_MSG_SEND2`. `FFA_RXTX_UNMAP` and `FFA_RX_RELEASE` are
//!   forwarded with the VM's ID in their ID field.
//! - **Memory sends** (`FFA_MEM_SHARE/LEND/DONATE`, `FFA_MEM_FRAG_TX`): the
//!   SPMC reads a normal-world descriptor from the TX buffer of endpoint 0,
//!   the hypervisor, and takes its addresses as physical. So the hypervisor
//!   copies each fragment from the VM's TX into its own, checks the sender
//!   (the VM's own ID) and rewrites every constituent from the VM's IPA to
//!   the PA behind it, refusing ranges outside the VM's RAM (Hafnium's
//!   hypervisor also copies a VM's descriptor out of its TX before it
//!   checks it, so the VM cannot change it after the check). The SPMC's
//!   per-user rule then decides who may borrow it.
//! - **Stage 2**: pages the VM lends or donates leave its stage 2 when the
//!   send completes (DEN0140 §1.5: the lender gives up access); a reclaim
//!   brings lent pages back; donated pages stay away for good once the
//!   borrower retrieved them (until the VM is destroyed).
//! - **The VM as a borrower** (`FFA_MEM_RETRIEVE_REQ`, `FFA_MEM_FRAG_RX`,
//!   `FFA_MEM_RELINQUISH`; DEN0077 v1.2 §11.5-§11.7, DEN0140 "hypervisor
//!   retrieve request"): before it maps anything the hypervisor asks the
//!   SPMC what the transaction is (a retrieve request with no receiver),
//!   checks the VM is one of its borrowers, picks IPAs for it in the
//!   VM's borrow window ([`BORROW_IPA`]), forwards the VM's own request
//!   (copied out of its TX, naming the VM), rewrites the response's
//!   addresses from PA to those IPAs into the VM's RX and maps the pages
//!   with the access granted, never executable. A relinquish unmaps them
//!   before it is forwarded (Hafnium's hypervisor maps and unmaps its
//!   VMs' borrowed memory the same way around the SPMC's calls).
//! - `FFA_MSG_SEND2`: the header's sender must be the VM; the hypervisor
//!   writes the VM's ID into w1\[31:16\] and forwards; as the normal
//!   world's scheduler it then gives the receiver CPU time with `FFA_RUN`
//!   (DEN0077 v1.2 §15: the receiver reads its RX when it runs).

use alloc::vec::Vec;

use test_protocol::mem::func;
use test_protocol::{ids, uuids};

use crate::ffa::{self, Regs, VmFfa};
use crate::guest::{RAM_IPA, RAM_SIZE};

/// A page.
pub const PAGE: u64 = 4096;
/// Pages of a VM's RAM (one bit each in a page mask).
pub const VM_PAGES: u64 = RAM_SIZE / PAGE;
/// Most receivers a VM may name (the SPMC's limit too).
const MAX_RECEIVERS: u32 = 8;
/// How many times the hypervisor runs a receiver that yields.
const MAX_RUNS: u32 = 1000;
/// Where a VM's borrowed memory appears in its IPA space (normal memory in
/// its stage 1; nothing else there).
pub const BORROW_IPA: u64 = 0x5000_0000;
/// Pages of the borrow window (one bit each in a u16).
pub const BORROW_PAGES: u64 = 16;
/// Longest hypervisor retrieve response the hypervisor reads (bytes).
const MAX_DESCRIPTION: usize = 16 * PAGE as usize;

#[repr(C, align(4096))]
struct Page([u8; PAGE as usize]);

/// The hypervisor's own TX buffer: what it sends the SPMC in its VMs' names.
static mut HYP_TX: Page = Page([0; PAGE as usize]);
/// The hypervisor's own RX buffer.
static mut HYP_RX: Page = Page([0; PAGE as usize]);

/// Maps the hypervisor's own RX/TX pair with the SPMC (as endpoint 0).
pub fn map_own_buffers() -> Regs {
    let tx = (&raw mut HYP_TX) as u64;
    let rx = (&raw mut HYP_RX) as u64;
    ffa::call(ffa::RXTX_MAP_64, &[tx, rx, 1])
}

/// Endpoint 0's own memory send of `desc` (memory of the hypervisor's
/// own; the checks lend a page to sp1 this way).
pub fn send_own(f: u64, desc: &[u8]) -> Regs {
    with_tx(|b| b[..desc.len()].copy_from_slice(desc));
    ffa::call(f, &[desc.len() as u64, desc.len() as u64, 0, 0])
}

/// Runs `f` on the hypervisor's TX page.
fn with_tx<R>(f: impl FnOnce(&mut [u8; PAGE as usize]) -> R) -> R {
    // SAFETY: one core, and nothing else holds a reference to HYP_TX: the
    // SPMC reads it only during the SMC that follows, after `f` returned.
    let p = &raw mut HYP_TX;
    // SAFETY: (as above) the only reference to HYP_TX while `f` runs.
    let tx = unsafe { &mut *p };
    f(&mut tx.0)
}

/// Copies `len` bytes from physical address `src` (a page of a VM's RAM,
/// which the caller checked) to the start of the hypervisor's TX.
fn copy_to_tx(src: u64, len: usize) {
    with_tx(|tx| {
        for (i, b) in tx.iter_mut().take(len).enumerate() {
            // SAFETY: `src..src + len` lies in one page of the VM's RAM (the
            // hypervisor's own .bss, identity mapped); the VM does not run.
            *b = unsafe { ((src as usize + i) as *const u8).read_volatile() };
        }
    })
}

/// Reads `out.len()` bytes at physical address `src` (a VM's RAM page).
fn read_pa(src: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: as in `copy_to_tx`.
        *b = unsafe { ((src as usize + i) as *const u8).read_volatile() };
    }
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn le64(b: &[u8], o: usize) -> u64 {
    le32(b, o) as u64 | (le32(b, o + 4) as u64) << 32
}

/// What a memory send does to the sender's own access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The VM keeps its access.
    Share,
    /// The VM loses its access until it reclaims.
    Lend,
    /// The VM loses the memory (for good once the borrower retrieved it).
    Donate,
}

impl Op {
    /// The operation of a send's function ID (32 or 64 bit).
    pub fn of(f: u64) -> Option<Op> {
        match f {
            func::SHARE_32 | func::SHARE_64 => Some(Op::Share),
            func::LEND_32 | func::LEND_64 => Some(Op::Lend),
            func::DONATE_32 | func::DONATE_64 => Some(Op::Donate),
            _ => None,
        }
    }
}

/// A transaction a VM owns.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    pub handle: u64,
    pub op: Op,
    /// Its pages (bit i: the page at RAM_IPA + i * PAGE).
    pub pages: u16,
}

/// A send arriving in fragments.
#[derive(Clone, Copy, Debug)]
struct Pending {
    handle: u64,
    op: Op,
    total: u32,
    received: u32,
    pages: u16,
}

/// Memory the VM retrieved and holds (mapped in its borrow window).
#[derive(Clone, Debug)]
pub struct Borrowed {
    pub handle: u64,
    /// First page of the window it occupies.
    pub first: u64,
    /// Its physical ranges, in the order of the descriptor: (PA, pages).
    pub ranges: Vec<(u64, u32)>,
    /// Pages in all.
    pub pages: u64,
    /// Mapped read-write (else read-only).
    pub write: bool,
    /// Retrieves not yet relinquished.
    pub count: u32,
}

impl Borrowed {
    /// The window's page mask.
    fn mask(&self) -> u16 {
        mask(self.first, self.pages)
    }

    /// The IPA of constituent `k` (the ranges follow each other in the window).
    fn ipa_of(&self, k: usize) -> u64 {
        let before: u64 = self.ranges[..k].iter().map(|r| r.1 as u64).sum();
        BORROW_IPA + (self.first + before) * PAGE
    }
}

/// A retrieve response leaving in fragments, for the VM's FFA_MEM_FRAG_RX.
#[derive(Clone, Copy, Debug)]
struct Leaving {
    handle: u64,
    /// Offset of the first constituent in the response.
    ranges_at: usize,
    total: u32,
    received: u32,
}

/// A stage-2 change in the VM's borrow window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowOp {
    pub ipa: u64,
    pub pa: u64,
    pub pages: u64,
    /// None: unmap; Some(write): map, read-write or read-only.
    pub map: Option<bool>,
}

/// What the hypervisor keeps per VM for this module.
#[derive(Debug, Default)]
pub struct VmShares {
    /// Memory the VM borrowed (retrieved and not yet relinquished).
    pub borrowed: Vec<Borrowed>,
    /// Pages of the borrow window in use.
    pub window: u16,
    /// The VM's RX holds a retrieve response the hypervisor copied there,
    /// until the VM releases it (the SPMC never sees the VM's RX for these).
    pub rx_full: bool,
    leaving: Option<Leaving>,
    /// Changes to the borrow window the VM's stage 2 must take (in order).
    pub window_ops: Vec<WindowOp>,
    /// The VM's buffers once mapped: (TX IPA, RX IPA), one page each.
    pub buffers: Option<(u64, u64)>,
    /// Transactions the VM owns.
    pub held: Vec<Held>,
    pending: Option<Pending>,
    /// Pages lent or donated away: not in the VM's stage 2.
    pub away: u16,
    /// The VM's TEE (its instance's ID), once looked up.
    tee: u16,
}

/// Stage-2 changes a call asks of the VM's tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Pages to unmap (lent or donated).
    pub unmap: u16,
    /// Pages to map again (reclaimed).
    pub map: u16,
}

/// True for the calls this module handles for a VM.
#[inline(always)]
pub fn handles(f: u64) -> bool {
    matches!(
        f,
        ffa::RXTX_MAP_64
            | ffa::RXTX_MAP_32
            | ffa::RXTX_UNMAP
            | ffa::RX_RELEASE
            | ffa::MSG_SEND2
            | func::SHARE_32
            | func::SHARE_64
            | func::LEND_32
            | func::LEND_64
            | func::DONATE_32
            | func::DONATE_64
            | func::FRAG_TX
            | func::RECLAIM
            | func::RETRIEVE_REQ_32
            | func::RETRIEVE_REQ_64
            | func::FRAG_RX
            | func::RELINQUISH
    )
}

/// One VM's view, for one call.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The VM's endpoint ID.
    pub vm: u16,
    /// Physical address of its RAM (IPA `RAM_IPA`).
    pub ram: u64,
    pub st: &'a mut VmShares,
    pub ffa: &'a mut VmFfa,
}

fn answer(r: &mut Regs, vals: &[u64]) {
    r[..8].fill(0);
    r[..vals.len()].copy_from_slice(vals);
}

fn error(r: &mut Regs, code: i32) {
    answer(r, &[ffa::ERROR_32, 0, code as u32 as u64]);
}

/// The mask of `pages` pages from page `first`.
fn mask(first: u64, pages: u64) -> u16 {
    (((1u32 << pages) - 1) << first) as u16
}

impl Ctx<'_> {
    /// The PA of the VM page at `ipa` (page aligned, inside its RAM).
    fn pa(&self, ipa: u64) -> u64 {
        self.ram + (ipa - RAM_IPA)
    }

    /// The page index of `ipa` if it is a page of the VM's RAM other than
    /// its first (the mailbox the hypervisor writes its tasks in).
    fn own_page(&self, ipa: u64) -> Option<u64> {
        (ipa.is_multiple_of(PAGE) && ipa > RAM_IPA && ipa < RAM_IPA + RAM_SIZE)
            .then(|| (ipa - RAM_IPA) / PAGE)
    }

    /// Handles the VM's call `r` (its x0-x17) in place.
    pub fn call(&mut self, r: &mut Regs) -> Change {
        let f = r[0] as u32 as u64;
        if self.ffa.version == ffa::V1_0 {
            // The SPMC reads what the hypervisor forwards in the layouts of
            // the hypervisor's version (1.2); v1.0 descriptors and message
            // headers are not converted here.
            error(r, ffa::NOT_SUPPORTED);
            return Change::default();
        }
        match f {
            ffa::RXTX_MAP_64 | ffa::RXTX_MAP_32 => self.rxtx_map(r),
            ffa::RXTX_UNMAP => self.rxtx_unmap(r),
            ffa::RX_RELEASE => self.rx_release(r),
            ffa::MSG_SEND2 => self.msg_send2(r),
            func::FRAG_TX => return self.frag_tx(r),
            func::RECLAIM => return self.reclaim(r),
            func::RETRIEVE_REQ_32 | func::RETRIEVE_REQ_64 => self.retrieve(r),
            func::FRAG_RX => self.frag_rx(r),
            func::RELINQUISH => self.relinquish(r),
            f => match Op::of(f) {
                Some(op) => return self.send(r, op),
                None => error(r, ffa::NOT_SUPPORTED),
            },
        }
        Change::default()
    }

    /// FFA_RXTX_MAP from the VM: one page each, pages of its own RAM.
    fn rxtx_map(&mut self, r: &mut Regs) {
        let wide = r[0] as u32 as u64 == ffa::RXTX_MAP_64;
        let (tx, rx) = if wide {
            (r[1], r[2])
        } else {
            (r[1] as u32 as u64, r[2] as u32 as u64)
        };
        if self.st.buffers.is_some() {
            return error(r, ffa::DENIED);
        }
        let (Some(t), Some(x)) = (self.own_page(tx), self.own_page(rx)) else {
            return error(r, ffa::INVALID_PARAMETERS);
        };
        if r[3] as u32 != 1 || t == x {
            return error(r, ffa::INVALID_PARAMETERS);
        }
        if self.st.away & (mask(t, 1) | mask(x, 1)) != 0 {
            return error(r, ffa::DENIED);
        }
        // The Endpoint RX/TX descriptor: the VM, then one composite (one
        // constituent) for RX at 16 and one for TX at 48.
        let (rx_pa, tx_pa) = (self.pa(rx), self.pa(tx));
        let vm = self.vm;
        with_tx(|b| {
            b[..80].fill(0);
            b[0..2].copy_from_slice(&vm.to_le_bytes());
            b[4..8].copy_from_slice(&16u32.to_le_bytes());
            b[8..12].copy_from_slice(&48u32.to_le_bytes());
            for (at, pa) in [(16, rx_pa), (48, tx_pa)] {
                b[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
                b[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
                b[at + 16..at + 24].copy_from_slice(&pa.to_le_bytes());
                b[at + 24..at + 28].copy_from_slice(&1u32.to_le_bytes());
            }
        });
        answer(r, &[ffa::RXTX_MAP_64, 0, 0, 0]);
        self.ffa.forward(r);
        if r[0] == ffa::SUCCESS_32 {
            self.st.buffers = Some((tx, rx));
        }
    }

    /// FFA_RXTX_UNMAP: w1 is MBZ at the VM's instance; forwarded with the
    /// VM's ID in w1\[31:16\].
    fn rxtx_unmap(&mut self, r: &mut Regs) {
        if r[1] as u32 != 0 || self.st.buffers.is_none() {
            return error(r, ffa::INVALID_PARAMETERS);
        }
        answer(r, &[ffa::RXTX_UNMAP, (self.vm as u64) << 16]);
        self.ffa.forward(r);
        if r[0] == ffa::SUCCESS_32 {
            self.st.buffers = None;
        }
    }

    /// FFA_RX_RELEASE: a retrieve response the hypervisor put in the VM's
    /// RX is released here; otherwise forwarded with the VM's ID in
    /// w1\[15:0\].
    fn rx_release(&mut self, r: &mut Regs) {
        if self.st.buffers.is_none() {
            return error(r, ffa::DENIED);
        }
        if self.st.rx_full {
            self.st.rx_full = false;
            return answer(r, &[ffa::SUCCESS_32]);
        }
        answer(r, &[ffa::RX_RELEASE, self.vm as u64]);
        self.ffa.forward(r);
    }

    /// FFA_MSG_SEND2: the message stays in the VM's TX (the SPMC reads it
    /// there); its header must name the VM as sender and a secure endpoint
    /// as receiver.
    fn msg_send2(&mut self, r: &mut Regs) {
        let Some((tx, _)) = self.st.buffers else {
            return error(r, ffa::INVALID_PARAMETERS);
        };
        if r[1] as u32 != 0 {
            // The sender ID field is the hypervisor's to fill.
            return error(r, ffa::INVALID_PARAMETERS);
        }
        let mut h = [0u8; 16];
        read_pa(self.pa(tx), &mut h);
        let (receiver, sender) = (le16(&h, 12), le16(&h, 14));
        if sender != self.vm {
            return error(r, ffa::INVALID_PARAMETERS);
        }
        if receiver & 0x8000 == 0 {
            // Another VM or the hypervisor: no VM-to-VM messages here.
            return error(r, ffa::DENIED);
        }
        let flags = r[2] as u32 as u64;
        answer(r, &[ffa::MSG_SEND2, (self.vm as u64) << 16, flags]);
        self.ffa.forward(r);
        if r[0] != ffa::SUCCESS_32 {
            return;
        }
        // The receiver reads its RX when it runs: give it the CPU.
        let own = receiver == ids::VTEE_TEMPLATE;
        let target = if own { self.tee() } else { receiver };
        if self.run(target) == ffa::INVALID_PARAMETERS && own {
            // The TEE was made again since it was looked up (the
            // hypervisor's own VM created message): look again.
            self.st.tee = 0;
            let target = self.tee();
            self.run(target);
        }
        answer(r, &[ffa::SUCCESS_32]);
    }

    /// Gives partition `target` CPU time (FFA_RUN of its vCPU 0) until it
    /// waits again; returns the error code of the first run (0: none).
    fn run(&mut self, target: u16) -> i32 {
        let mut run = [0u64; 18];
        let mut runs = 0;
        let mut first = None;
        loop {
            answer(&mut run, &[ffa::RUN, (target as u64) << 16]);
            self.ffa.forward(&mut run);
            first.get_or_insert(ffa::code(&run));
            runs += 1;
            if !(run[0] == ffa::YIELD || run[0] == ffa::INTERRUPT_32) || runs >= MAX_RUNS {
                return first.unwrap_or(0);
            }
        }
    }

    /// The VM's TEE: its instance's ID, from the SPMC's discovery in the
    /// VM's name (the vTEE UUID gives each VM its own instance only).
    fn tee(&mut self) -> u16 {
        if self.st.tee == 0 {
            let mut q = [0u64; 18];
            q[0] = ffa::PARTITION_INFO_GET_REGS_64;
            q[1] = uuids::VTEE[0] as u64 | (uuids::VTEE[1] as u64) << 32;
            q[2] = uuids::VTEE[2] as u64 | (uuids::VTEE[3] as u64) << 32;
            q[7] = self.vm as u64;
            self.ffa.forward(&mut q);
            if q[0] == ffa::SUCCESS_64 {
                self.st.tee = q[3] as u16;
            }
        }
        self.st.tee
    }

    /// Translates the constituents in `tx[from..to]` (whole 16-byte
    /// constituents) from the VM's IPAs to PAs; returns their pages.
    fn translate(&self, from: usize, to: usize) -> Result<u16, i32> {
        let mut pages = 0u16;
        let (ram, away) = (self.ram, self.st.away);
        with_tx(|b| {
            for o in (from..to).step_by(16) {
                let (ipa, n) = (le64(b, o), le32(b, o + 8) as u64);
                let end = n.checked_mul(PAGE).and_then(|len| ipa.checked_add(len));
                let inside = ipa.is_multiple_of(PAGE)
                    && n != 0
                    && ipa >= RAM_IPA
                    && end.is_some_and(|e| e <= RAM_IPA + RAM_SIZE);
                if !inside {
                    return Err(ffa::INVALID_PARAMETERS);
                }
                let first = (ipa - RAM_IPA) / PAGE;
                let m = mask(first, n);
                if first == 0 || m & away != 0 {
                    // The mailbox is the hypervisor's; what is away is not the VM's.
                    return Err(ffa::DENIED);
                }
                pages |= m;
                b[o..o + 8].copy_from_slice(&(ram + (ipa - RAM_IPA)).to_le_bytes());
            }
            Ok(pages)
        })
    }

    /// FFA_MEM_SHARE/LEND/DONATE: the first fragment, copied, checked and
    /// translated into the hypervisor's TX.
    fn send(&mut self, r: &mut Regs, op: Op) -> Change {
        let (total, frag) = (r[1] as u32, r[2] as u32);
        let Some((tx, _)) = self.st.buffers else {
            error(r, ffa::INVALID_PARAMETERS);
            return Change::default();
        };
        // A buffer of the VM's own (w3/w4) is not supported here: TX only.
        if r[3] != 0 || r[4] as u32 != 0 || frag < 48 || frag > total || frag as u64 > PAGE {
            error(r, ffa::INVALID_PARAMETERS);
            return Change::default();
        }
        if self.st.pending.is_some() {
            // One send in fragments at a time per VM.
            error(r, ffa::BUSY);
            return Change::default();
        }
        copy_to_tx(self.pa(tx), frag as usize);
        let vm = self.vm;
        // A donation may go to the VM's own TEE only (its template's ID or
        // its instance's): the TEE goes with the VM, and with it whatever
        // the VM gave it. A page given for good to a partition that outlives
        // the VM would stay in the RAM slot this hypervisor zeroes and gives
        // the next VM: the hypervisor cannot give it away, so it refuses
        // (DENIED, as for a receiver it may not reach).
        let mut beyond = 0u16;
        let parsed = with_tx(|b| {
            let (size, count, at) = (le32(b, 24), le32(b, 28), le32(b, 32));
            if le16(b, 0) != vm {
                return Err(ffa::INVALID_PARAMETERS);
            }
            let emads_end = (count as u64) * size as u64 + at as u64;
            if !(size == 16 || size == 32)
                || count == 0
                || count > MAX_RECEIVERS
                || at < 48
                || emads_end > frag as u64
            {
                return Err(ffa::INVALID_PARAMETERS);
            }
            if op == Op::Donate {
                for i in 0..count as usize {
                    let to = le16(b, at as usize + i * size as usize);
                    if to != ids::VTEE_TEMPLATE {
                        if beyond != 0 && beyond != to {
                            return Err(ffa::DENIED);
                        }
                        beyond = to;
                    }
                }
            }
            let comp = le32(b, at as usize + 4) as u64;
            let ranges_at = comp + 16;
            if comp < emads_end || !comp.is_multiple_of(8) || ranges_at > frag as u64 {
                return Err(ffa::INVALID_PARAMETERS);
            }
            if !(frag as u64 - ranges_at).is_multiple_of(16) {
                // Fragments end between constituents (this hypervisor's rule).
                return Err(ffa::INVALID_PARAMETERS);
            }
            Ok(ranges_at as usize)
        });
        // A receiver named by its instance's ID must be the VM's own.
        let parsed = parsed.and_then(|at| {
            if beyond != 0 && beyond != self.tee() {
                Err(ffa::DENIED)
            } else {
                Ok(at)
            }
        });
        let pages = match parsed.and_then(|at| self.translate(at, frag as usize)) {
            Ok(p) => p,
            Err(e) => {
                error(r, e);
                return Change::default();
            }
        };
        let f = r[0] as u32 as u64;
        answer(r, &[f, total as u64, frag as u64]);
        self.ffa.forward(r);
        let w = |i: usize| r[i] as u32 as u64;
        if r[0] == func::FRAG_RX {
            self.st.pending = Some(Pending {
                handle: w(1) | w(2) << 32,
                op,
                total,
                received: frag,
                pages,
            });
            Change::default()
        } else if r[0] == ffa::SUCCESS_32 {
            self.done(w(2) | w(3) << 32, op, pages)
        } else {
            Change::default()
        }
    }

    /// A send completed: the VM owns `handle`; lent or donated pages leave
    /// its stage 2.
    fn done(&mut self, handle: u64, op: Op, pages: u16) -> Change {
        self.st.held.push(Held { handle, op, pages });
        if op == Op::Share {
            return Change::default();
        }
        self.st.away |= pages;
        Change {
            unmap: pages,
            map: 0,
        }
    }

    /// FFA_MEM_FRAG_TX: the next fragment of the VM's send in progress.
    fn frag_tx(&mut self, r: &mut Regs) -> Change {
        let handle = r[1] as u32 as u64 | (r[2] as u32 as u64) << 32;
        let len = r[3] as u32;
        let (Some(p), Some((tx, _))) = (self.st.pending, self.st.buffers) else {
            error(r, ffa::INVALID_PARAMETERS);
            return Change::default();
        };
        if p.handle != handle
            || len == 0
            || len as u64 > PAGE
            || !len.is_multiple_of(16)
            || p.received as u64 + len as u64 > p.total as u64
        {
            error(r, ffa::INVALID_PARAMETERS);
            return Change::default();
        }
        copy_to_tx(self.pa(tx), len as usize);
        let pages = match self.translate(0, len as usize) {
            Ok(m) => m,
            Err(e) => {
                error(r, e);
                return Change::default();
            }
        };
        answer(
            r,
            &[
                func::FRAG_TX,
                handle & 0xFFFF_FFFF,
                handle >> 32,
                len as u64,
            ],
        );
        self.ffa.forward(r);
        if r[0] == func::FRAG_RX {
            self.st.pending = Some(Pending {
                received: p.received + len,
                pages: p.pages | pages,
                ..p
            });
            Change::default()
        } else if r[0] == ffa::SUCCESS_32 {
            self.st.pending = None;
            self.done(handle, p.op, p.pages | pages)
        } else {
            Change::default()
        }
    }

    /// FFA_MEM_RECLAIM of a transaction the VM owns (or of its send in
    /// progress, which cancels it). A handle the VM does not own is
    /// INVALID_PARAMETERS, as the SPMC answers a handle it does not know.
    fn reclaim(&mut self, r: &mut Regs) -> Change {
        let handle = r[1] as u32 as u64 | (r[2] as u32 as u64) << 32;
        let flags = r[3] as u32 as u64;
        if self.st.pending.is_some_and(|p| p.handle == handle) {
            answer(
                r,
                &[func::RECLAIM, r[1] as u32 as u64, r[2] as u32 as u64, flags],
            );
            self.ffa.forward(r);
            if r[0] == ffa::SUCCESS_32 {
                self.st.pending = None;
            }
            return Change::default();
        }
        let Some(i) = self.st.held.iter().position(|h| h.handle == handle) else {
            error(r, ffa::INVALID_PARAMETERS);
            return Change::default();
        };
        answer(
            r,
            &[func::RECLAIM, r[1] as u32 as u64, r[2] as u32 as u64, flags],
        );
        self.ffa.forward(r);
        let h = self.st.held[i];
        if r[0] == ffa::SUCCESS_32 {
            self.st.held.swap_remove(i);
            if h.op == Op::Share {
                return Change::default();
            }
            self.st.away &= !h.pages;
            return Change {
                unmap: 0,
                map: h.pages,
            };
        }
        if h.op == Op::Donate && ffa::code(r) == ffa::INVALID_PARAMETERS {
            // Retrieved: the borrower owns it now, and the handle is retired.
            self.st.held.swap_remove(i);
        }
        Change::default()
    }
}

/// Writes `bytes` at physical address `dst` (a page of a VM's RAM).
fn write_pa(dst: u64, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        // SAFETY: as in `copy_to_tx`: a page of the VM's RAM, the VM stopped.
        unsafe { ((dst as usize + i) as *mut u8).write_volatile(*b) };
    }
}

/// Copies `out.len()` bytes from the hypervisor's RX.
fn read_rx(out: &mut [u8]) {
    let p = &raw const HYP_RX;
    // SAFETY: one core; the SPMC wrote HYP_RX during the SMC that returned
    // and does not touch it until the hypervisor releases it.
    let rx = unsafe { &*p };
    let n = out.len().min(PAGE as usize);
    out[..n].copy_from_slice(&rx.0[..n]);
}

/// Releases the hypervisor's own RX (endpoint 0).
fn release_rx(fwd: &mut VmFfa) {
    let mut r = [0u64; 18];
    answer(&mut r, &[ffa::RX_RELEASE]);
    fwd.forward(&mut r);
}

/// w0-w3 of an answer to pass on.
type Answer4 = [u64; 4];

fn four(r: &Regs) -> Answer4 {
    [r[0], r[1], r[2], r[3]]
}

/// What the hypervisor retrieve request tells about a transaction for a VM.
struct Given {
    ranges: Vec<(u64, u32)>,
    pages: u64,
}

impl Ctx<'_> {
    /// The hypervisor retrieve request (DEN0140: no receiver, every other
    /// field zero) for `handle`: the whole description, read with
    /// FFA_MEM_FRAG_RX if it is long. Err: the SPMC's answer.
    fn describe(&mut self, handle: u64) -> Result<Vec<u8>, Answer4> {
        use test_protocol::mem::{Layout, Transaction};
        let mut t = Transaction::retrieve(Layout::V1_2, 0, handle, 0, &[]);
        t.attributes = 0;
        let n = with_tx(|b| t.write(b).unwrap_or(0));
        let mut r = [0u64; 18];
        answer(&mut r, &[func::RETRIEVE_REQ_64, n as u64, n as u64, 0, 0]);
        self.ffa.forward(&mut r);
        if r[0] as u32 as u64 != func::RETRIEVE_RESP {
            return Err(four(&r));
        }
        let (total, first) = (r[1] as u32 as usize, r[2] as u32 as usize);
        let mut d = Vec::new();
        let mut fail = r;
        error(&mut fail, ffa::NO_MEMORY);
        if total > MAX_DESCRIPTION || first > PAGE as usize || first > total {
            release_rx(self.ffa);
            return Err(four(&fail));
        }
        d.resize(first, 0);
        read_rx(&mut d);
        release_rx(self.ffa);
        while d.len() < total {
            let got = d.len() as u64;
            answer(
                &mut r,
                &[func::FRAG_RX, handle & 0xFFFF_FFFF, handle >> 32, got],
            );
            self.ffa.forward(&mut r);
            let n = r[3] as u32 as usize;
            if r[0] as u32 as u64 != func::FRAG_TX || n == 0 || n > PAGE as usize {
                return Err(four(&fail));
            }
            let at = d.len();
            d.resize(at + n.min(total - at), 0);
            read_rx(&mut d[at..]);
            release_rx(self.ffa);
        }
        Ok(d)
    }

    /// What `handle` gives the VM, if the VM is one of its borrowers.
    fn given(&mut self, handle: u64) -> Result<Given, Answer4> {
        use test_protocol::mem::{Descriptor, attr};
        let d = self.describe(handle)?;
        let mut refuse = [0u64; 18];
        let p = Descriptor::parse(&d, false);
        let Ok(p) = p else {
            error(&mut refuse, ffa::INVALID_PARAMETERS);
            return Err(four(&refuse));
        };
        // Not the VM's to retrieve (given to another VM, or to partitions).
        let Some(e) = p.emad_of(self.vm) else {
            error(&mut refuse, ffa::DENIED);
            return Err(four(&refuse));
        };
        let Ok(c) = p.composite(&e) else {
            error(&mut refuse, ffa::INVALID_PARAMETERS);
            return Err(four(&refuse));
        };
        if p.attributes() & attr::NS == 0 {
            // Never map secure memory into a VM (the SPMC never gives it).
            error(&mut refuse, ffa::DENIED);
            return Err(four(&refuse));
        }
        let mut ranges = Vec::new();
        let mut pages = 0u64;
        for k in 0..c.range_count as usize {
            let Ok((g, _)) = p.range(&c, k) else {
                error(&mut refuse, ffa::INVALID_PARAMETERS);
                return Err(four(&refuse));
            };
            pages += g.pages as u64;
            ranges.push((g.addr, g.pages));
        }
        Ok(Given { ranges, pages })
    }

    /// Rewrites, in `frag` (bytes `at..` of a retrieve response), every
    /// constituent address from the PA to the VM's IPA of `b`.
    fn rewrite(b: &Borrowed, ranges_at: usize, at: usize, frag: &mut [u8]) {
        for (i, byte) in frag.iter_mut().enumerate() {
            let pos = at + i;
            if pos < ranges_at {
                continue;
            }
            let (k, o) = ((pos - ranges_at) / 16, (pos - ranges_at) % 16);
            if k >= b.ranges.len() {
                break;
            }
            if o < 8 {
                *byte = b.ipa_of(k).to_le_bytes()[o];
            }
        }
    }

    /// FFA_MEM_RETRIEVE_REQ from the VM: the request in its TX names the
    /// VM alone; the hypervisor learns what it is given, retrieves it in
    /// the VM's name, gives it the response with its own IPAs and maps it.
    fn retrieve(&mut self, r: &mut Regs) {
        let f = r[0] as u32 as u64;
        let (total, frag) = (r[1] as u32, r[2] as u32);
        let Some((tx, rx)) = self.st.buffers else {
            return error(r, ffa::INVALID_PARAMETERS);
        };
        // TX only (no buffer of the VM's own), the request in one fragment.
        if r[3] != 0 || r[4] as u32 != 0 || total != frag || frag < 48 || frag as u64 > PAGE {
            return error(r, ffa::INVALID_PARAMETERS);
        }
        if self.st.rx_full {
            return error(r, ffa::BUSY);
        }
        let mut req = alloc::vec![0u8; frag as usize];
        read_pa(self.pa(tx), &mut req);
        let (size, count, at) = (le32(&req, 24), le32(&req, 28), le32(&req, 32) as u64);
        let handle = le64(&req, 8);
        // One EMAD, the VM's own: it retrieves for nobody else.
        if count != 1 || !(size == 16 || size == 32) || at < 48 || at + size as u64 > frag as u64 {
            return error(r, ffa::INVALID_PARAMETERS);
        }
        if le16(&req, at as usize) != self.vm {
            return error(r, ffa::INVALID_PARAMETERS);
        }
        let given = match self.given(handle) {
            Ok(g) => g,
            Err(e) => {
                answer(r, &e);
                return;
            }
        };
        let held = self.st.borrowed.iter().position(|b| b.handle == handle);
        let first = match held {
            Some(i) => self.st.borrowed[i].first,
            None => {
                let Some(first) = free_window(self.st.window, given.pages) else {
                    return error(r, ffa::NO_MEMORY);
                };
                first
            }
        };
        with_tx(|b| b[..req.len()].copy_from_slice(&req));
        answer(r, &[f, frag as u64, frag as u64, 0, 0]);
        self.ffa.forward(r);
        if r[0] as u32 as u64 != func::RETRIEVE_RESP {
            return;
        }
        let (rtotal, rfrag) = (r[1] as u32, r[2] as u32);
        let mut resp = alloc::vec![0u8; (rfrag as usize).min(PAGE as usize)];
        read_rx(&mut resp);
        release_rx(self.ffa);
        // The access granted to the VM (its EMAD in the response).
        let d = test_protocol::mem::Descriptor::parse(&resp, false).ok();
        // (Its own EMAD; the first if the SPMC named none: the addresses are
        // rewritten whatever happens, so the VM never sees a PA.)
        let e = d.and_then(|d| d.emad_of(self.vm).or_else(|| d.emad(0).ok()));
        let write = e.is_some_and(|e| {
            e.perms & test_protocol::mem::perm::DATA_MASK == test_protocol::mem::perm::RW
        });
        let ranges_at = e.map_or(usize::MAX, |e| e.composite_offset as usize + 16);
        let b = match held {
            Some(i) => {
                self.st.borrowed[i].count += 1;
                self.st.borrowed[i].clone()
            }
            None => {
                let b = Borrowed {
                    handle,
                    first,
                    ranges: given.ranges,
                    pages: given.pages,
                    write,
                    count: 1,
                };
                self.st.window |= b.mask();
                for (k, &(pa, n)) in b.ranges.iter().enumerate() {
                    self.st.window_ops.push(WindowOp {
                        ipa: b.ipa_of(k),
                        pa,
                        pages: n as u64,
                        map: Some(write),
                    });
                }
                self.st.borrowed.push(b.clone());
                b
            }
        };
        Self::rewrite(&b, ranges_at, 0, &mut resp);
        write_pa(self.pa(rx), &resp);
        self.st.rx_full = true;
        self.st.leaving = (rfrag < rtotal).then_some(Leaving {
            handle,
            ranges_at,
            total: rtotal,
            received: rfrag,
        });
        answer(r, &[func::RETRIEVE_RESP, rtotal as u64, rfrag as u64]);
    }

    /// FFA_MEM_FRAG_RX from the VM: the next fragment of its retrieve
    /// response, translated like the first.
    fn frag_rx(&mut self, r: &mut Regs) {
        let handle = r[1] as u32 as u64 | (r[2] as u32 as u64) << 32;
        let offset = r[3] as u32;
        let (Some(l), Some((_, rx))) = (self.st.leaving, self.st.buffers) else {
            return error(r, ffa::INVALID_PARAMETERS);
        };
        if l.handle != handle || offset != l.received {
            return error(r, ffa::INVALID_PARAMETERS);
        }
        if self.st.rx_full {
            return error(r, ffa::BUSY);
        }
        let Some(b) = self
            .st
            .borrowed
            .iter()
            .find(|b| b.handle == handle)
            .cloned()
        else {
            return error(r, ffa::INVALID_PARAMETERS);
        };
        answer(
            r,
            &[
                func::FRAG_RX,
                handle & 0xFFFF_FFFF,
                handle >> 32,
                offset as u64,
            ],
        );
        self.ffa.forward(r);
        if r[0] as u32 as u64 != func::FRAG_TX {
            return;
        }
        let n = (r[3] as u32).min(PAGE as u32);
        let mut frag = alloc::vec![0u8; n as usize];
        read_rx(&mut frag);
        release_rx(self.ffa);
        Self::rewrite(&b, l.ranges_at, offset as usize, &mut frag);
        write_pa(self.pa(rx), &frag);
        self.st.rx_full = true;
        let received = offset + n;
        self.st.leaving = (received < l.total && n != 0).then_some(Leaving { received, ..l });
        answer(
            r,
            &[func::FRAG_TX, handle & 0xFFFF_FFFF, handle >> 32, n as u64],
        );
    }

    /// FFA_MEM_RELINQUISH from the VM: the descriptor in its TX names the
    /// VM alone; the pages leave its stage 2 before the SPMC hears of it
    /// (DEN0077 v1.2 §11.6: the borrower gives up access first).
    fn relinquish(&mut self, r: &mut Regs) {
        let Some((tx, _)) = self.st.buffers else {
            return error(r, ffa::INVALID_PARAMETERS);
        };
        let mut d = [0u8; 18];
        read_pa(self.pa(tx), &mut d);
        let handle = le64(&d, 0);
        if le32(&d, 12) != 1 || le16(&d, 16) != self.vm {
            return error(r, ffa::INVALID_PARAMETERS);
        }
        let held = self.st.borrowed.iter().position(|b| b.handle == handle);
        let last = held.filter(|&i| self.st.borrowed[i].count == 1);
        if let Some(i) = last {
            let b = &self.st.borrowed[i];
            for (k, &(pa, n)) in b.ranges.iter().enumerate() {
                self.st.window_ops.push(WindowOp {
                    ipa: b.ipa_of(k),
                    pa,
                    pages: n as u64,
                    map: None,
                });
            }
        }
        with_tx(|b| b[..18].copy_from_slice(&d));
        answer(r, &[func::RELINQUISH]);
        self.ffa.forward(r);
        let Some(i) = held else { return };
        if r[0] != ffa::SUCCESS_32 {
            if last.is_some() {
                // Refused: the VM keeps its mapping.
                let b = &self.st.borrowed[i];
                for (k, &(pa, n)) in b.ranges.iter().enumerate() {
                    self.st.window_ops.push(WindowOp {
                        ipa: b.ipa_of(k),
                        pa,
                        pages: n as u64,
                        map: Some(b.write),
                    });
                }
            }
            return;
        }
        if last.is_some() {
            let b = self.st.borrowed.swap_remove(i);
            self.st.window &= !b.mask();
            if self.st.leaving.is_some_and(|l| l.handle == handle) {
                self.st.leaving = None;
            }
        } else {
            self.st.borrowed[i].count -= 1;
        }
    }
}

/// The first run of `pages` free pages in the borrow window.
fn free_window(used: u16, pages: u64) -> Option<u64> {
    if pages == 0 || pages > BORROW_PAGES {
        return None;
    }
    (0..=BORROW_PAGES - pages).find(|&f| used & mask(f, pages) == 0)
}

/// What the hypervisor does for a VM that goes, after its TEE went (the VM
/// destroyed message): it reclaims what the VM still owns (its TEE let go
/// when it was destroyed) and unmaps the VM's buffers, so that the VM's RAM
/// is the hypervisor's alone again before it is zeroed. Returns how many
/// transactions it could not reclaim (an SPMC bug; the pages then stay in
/// the SPMC's record).
pub fn release_all(vm: u16, st: &mut VmShares, fwd: &mut VmFfa) -> usize {
    let mut left = 0;
    let handles = st
        .held
        .iter()
        .map(|h| (h.handle, h.op))
        .chain(st.pending.map(|p| (p.handle, p.op)))
        .collect::<Vec<_>>();
    for (handle, op) in handles {
        let mut r = [0u64; 18];
        answer(
            &mut r,
            &[func::RECLAIM, handle & 0xFFFF_FFFF, handle >> 32, 0],
        );
        fwd.forward(&mut r);
        let retired = op == Op::Donate && ffa::code(&r) == ffa::INVALID_PARAMETERS;
        if r[0] != ffa::SUCCESS_32 && !retired {
            left += 1;
        }
    }
    st.held.clear();
    st.pending = None;
    // What it borrowed counts as relinquished at the SPMC (the VM destroyed
    // message); its stage 2 goes with it.
    st.borrowed.clear();
    st.window = 0;
    st.window_ops.clear();
    st.leaving = None;
    st.rx_full = false;
    if st.buffers.take().is_some() {
        let mut r = [0u64; 18];
        answer(&mut r, &[ffa::RXTX_UNMAP, (vm as u64) << 16]);
        fwd.forward(&mut r);
    }
    left
}
