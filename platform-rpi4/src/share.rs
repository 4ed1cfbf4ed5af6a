//! Memory sharing from a general VM to its own trusted VM, through the
//! core's FFA_MEM_SHARE/LEND/RECLAIM: the VM layer acts for its guests as
//! the reference hypervisor does for its VMs on QEMU virt
//! (`tests/hypervisor/src/share.rs`, Hafnium's way), with the same rules
//! and the same FF-A errors:
//!
//! - a VM's `FFA_RXTX_MAP` names a page pair of its own RAM; the layer
//!   keeps it (a second pair: DENIED; pages outside its RAM, unaligned,
//!   the same page twice, not one page each: INVALID_PARAMETERS);
//! - a send (`FFA_MEM_SHARE/LEND`, one fragment, the descriptor in the
//!   VM's TX) is copied out of the VM's TX before it is checked (so the
//!   VM cannot change it after the check); the sender must be the VM
//!   (else INVALID_PARAMETERS); every constituent must lie in the VM's RAM
//!   (else INVALID_PARAMETERS), not in its first page (its program:
//!   DENIED) nor in a page it lent (DENIED). General VMs' RAM is at
//!   IPA = PA, so the addresses need no rewriting. The layer sends it as
//!   endpoint 0 from its own TX; the core's per-user rule decides who may
//!   borrow it (another user's trusted VM: DENIED);
//! - lent pages leave the VM's stage 2 when the send succeeds (DEN0140
//!   §1.5) and come back on its reclaim; a handle the VM does not own is
//!   INVALID_PARAMETERS, as the core answers a handle it does not know;
//! - `FFA_MEM_DONATE` (DEN0077 v1.2 §11.3) only to the VM's own trusted
//!   VM (the template's ID or its instance's; anything else DENIED, as the
//!   reference hypervisor answers: the TEE goes with the VM, a partition
//!   that outlives it would keep RAM the next VM gets). Donated pages leave
//!   the VM's stage 2 when the send succeeds; a reclaim before the TEE
//!   retrieved them brings them back, after it they are gone for good
//!   (the core answers INVALID_PARAMETERS and the layer forgets the
//!   handle) until the VM is destroyed, whose RAM is zeroed before any
//!   reuse (`Guest::destroy`, `Guest::create`);
//! - fragments (`FFA_MEM_FRAG_TX`, DEN0077 v1.2 §11.1.2): a send whose
//!   first fragment is shorter than the total comes back FFA_MEM_FRAG_RX;
//!   each next fragment is copied out of the VM's TX at its call, checked
//!   (whole constituents only, in the VM's RAM) and forwarded from the
//!   layer's TX; one send in progress per VM (a second one: BUSY); a
//!   FRAG_TX not of the VM's send in progress, empty, over a page, over the
//!   total or splitting a constituent: INVALID_PARAMETERS; a reclaim of
//!   the handle cancels it. Pages leave the stage 2 only when the last
//!   fragment completes the send;
//! - the VM's RX/TX pages back its buffers: while mapped they cannot
//!   change hands (share, lend, donate of them: DENIED), and a pair over
//!   a page that is away is DENIED, the core's own rule for the buffers
//!   it keeps (`spmc/src/mem/ownership.rs`, DEN0077 v1.2 §7.2.2), so a
//!   fragment is only ever read from a page the VM still owns;
//! - whatever the VM's trusted VM wrote into a page (through its
//!   cacheable mapping) is cleaned to the point of coherency when the
//!   page comes back, since the guest reads it with its MMU off.
//!
//! Not yet: a VM as a borrower, indirect messages.

use alloc::vec::Vec;
use test_protocol::mem::{get16, get32, get64};

use spmc::ids::VmId;
use spmc::partition::PartitionState;
use spmc::policy::Kind as PolicyKind;
use spmc::stage2::Stage2;
use test_protocol::ffa as f;
use test_protocol::ids;
use test_protocol::mem::func;

use crate::guests::{self, with_ram};
use crate::layout;
use crate::users::{Answer, Layer};

const PAGE: u64 = 4096;
/// Most receivers a VM may name (the core's limit too).
const MAX_RECEIVERS: u32 = 8;

/// Which send a transaction came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Share,
    Lend,
    Donate,
}

/// A transaction a VM owns.
#[derive(Clone, Copy, Debug)]
struct Held {
    handle: u64,
    op: Op,
    /// Its pages (bit i: the page at the VM's RAM base + i * PAGE).
    pages: u16,
}

/// A send arriving in fragments.
#[derive(Clone, Copy, Debug)]
struct Pending {
    handle: u64,
    op: Op,
    total: u32,
    received: u32,
    /// The pages of the fragments forwarded so far.
    pages: u16,
}

/// One VM's buffers and transactions.
#[derive(Debug, Default)]
pub struct VmShares {
    /// Its TX and RX pages (IPAs = PAs).
    buffers: Option<(u64, u64)>,
    held: Vec<Held>,
    /// Pages it lent or donated (not in its stage 2).
    away: u16,
    /// Its send in progress, if it is sending in fragments.
    pending: Option<Pending>,
}

impl VmShares {
    /// The pages lent or donated away (bit i: the VM's page i).
    pub fn away(&self) -> u16 {
        self.away
    }

    /// The handles of the transactions it owns.
    pub fn handles(&self) -> impl Iterator<Item = u64> + '_ {
        self.held.iter().map(|h| h.handle)
    }
}

fn error(code: i32) -> Answer {
    [f::ERROR_32, 0, code as u32 as u64, 0, 0, 0, 0, 0]
}

fn success() -> Answer {
    [f::SUCCESS_32, 0, 0, 0, 0, 0, 0, 0]
}

/// The bits of pages `first..first + n` (fits: at most 16 pages of RAM).
fn mask(first: u64, n: u64) -> u16 {
    (((1u32 << n) - 1) << first) as u16
}

const RAM_PAGES: u64 = layout::GUEST_RAM_SIZE / PAGE;
const _: () = assert!(RAM_PAGES <= 16);

/// The layer's own RX/TX pair, which it maps with the core as endpoint 0
/// ([`Layer::map_own_buffers`]): general-VM RAM no guest has.
pub const LAYER_TX: u64 = 0x4f00_0000;
/// The layer's RX page.
pub const LAYER_RX: u64 = 0x4f00_1000;

impl Layer {
    /// Maps the layer's own RX/TX pair with the core (endpoint 0's, as the
    /// reference hypervisor maps its own): what it sends its VMs'
    /// descriptors from.
    pub fn map_own_buffers(&mut self) -> Result<(), alloc::string::String> {
        let a = self.raw([f::RXTX_MAP_64, LAYER_TX, LAYER_RX, 1, 0, 0, 0, 0]);
        if a[0] == f::SUCCESS_32 {
            self.own_tx = Some(LAYER_TX);
            Ok(())
        } else {
            Err(alloc::format!("RXTX_MAP of the layer: {:#x?}", &a[..3]))
        }
    }

    /// The memory-management calls of general VM `vm` (None: not one).
    pub fn share_call(&mut self, vm: u16, x: [u64; 8], stage2: &mut Stage2) -> Option<Answer> {
        let id = x[0] & 0xFFFF_FFFF;
        Some(match id {
            f::RXTX_MAP_64 => self.vm_rxtx_map(vm, x),
            f::RXTX_UNMAP => {
                // An ID in w1[31:16]: a VM names no one but itself.
                if x[1] != 0 || self.shares_of(vm).buffers.is_none() {
                    error(f::INVALID_PARAMETERS)
                } else {
                    self.unmap_buffers(vm)
                }
            }
            f::RX_RELEASE => {
                if self.shares_of(vm).buffers.is_none() {
                    error(f::DENIED)
                } else {
                    // Forwarded with the VM's ID in w1[15:0] (§13.7).
                    self.raw([f::RX_RELEASE, vm as u64, 0, 0, 0, 0, 0, 0])
                }
            }
            f::MSG_SEND2 => self.vm_msg_send2(vm, x),
            func::SHARE_32 | func::SHARE_64 => self.vm_send(vm, x, Op::Share, stage2),
            func::LEND_32 | func::LEND_64 => self.vm_send(vm, x, Op::Lend, stage2),
            func::DONATE_32 | func::DONATE_64 => self.vm_send(vm, x, Op::Donate, stage2),
            func::FRAG_TX => self.vm_frag_tx(vm, x, stage2),
            func::RECLAIM => self.vm_reclaim(vm, x, stage2),
            _ => return None,
        })
    }

    /// General VM `vm`'s buffers and transactions, as the layer keeps them.
    pub fn shares_of(&mut self, vm: u16) -> &mut VmShares {
        let i = vm as usize - 1;
        if self.shares.len() <= i {
            self.shares.resize_with(i + 1, VmShares::default);
        }
        &mut self.shares[i]
    }

    /// FFA_RXTX_MAP_64 (DEN0077 v1.2 §13.5) from VM `vm`: one page each,
    /// in its own RAM, not its program's page; pages it still owns
    /// (§7.2.2: not lent or donated away, else DENIED as the core answers).
    fn vm_rxtx_map(&mut self, vm: u16, x: [u64; 8]) -> Answer {
        let (tx, rx, pages) = (x[1], x[2], x[3] as u32);
        let base = guests::ram(vm);
        let own = |a: u64| {
            a.is_multiple_of(PAGE) && a >= base + PAGE && a < base + layout::GUEST_RAM_SIZE
        };
        if pages != 1 || tx == rx || !own(tx) || !own(rx) {
            return error(f::INVALID_PARAMETERS);
        }
        let s = self.shares_of(vm);
        if s.buffers.is_some() {
            return error(f::DENIED);
        }
        if s.away & (page_bit(base, tx) | page_bit(base, rx)) != 0 {
            return error(f::DENIED);
        }
        let Some(own_tx) = self.own_tx else {
            return error(f::NOT_SUPPORTED);
        };
        // The pair is mapped with the core in the VM's name (FFA_RXTX_MAP
        // with every argument zero and an Endpoint RX/TX descriptor in the
        // layer's TX, §13.5 and Hafnium's forwarding), so the core reads
        // the VM's TX for FFA_MSG_SEND2 and keeps its pages pinned. The
        // descriptor: the VM, then one composite (one constituent) for RX
        // at 16 and one for TX at 48.
        let mut b = [0u8; 80];
        b[0..2].copy_from_slice(&vm.to_le_bytes());
        b[4..8].copy_from_slice(&16u32.to_le_bytes());
        b[8..12].copy_from_slice(&48u32.to_le_bytes());
        for (at, pa) in [(16, rx), (48, tx)] {
            b[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
            b[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
            b[at + 16..at + 24].copy_from_slice(&pa.to_le_bytes());
            b[at + 24..at + 28].copy_from_slice(&1u32.to_le_bytes());
        }
        let a = self.forward(own_tx, &b, [f::RXTX_MAP_64, 0, 0, 0, 0, 0, 0, 0]);
        if a[0] == f::SUCCESS_32 {
            self.shares_of(vm).buffers = Some((tx, rx));
        }
        a
    }

    /// FFA_RXTX_UNMAP of VM `vm`'s pair, forwarded with its ID in
    /// w1[31:16] (§13.6); also when the layer destroys the VM.
    pub fn unmap_buffers(&mut self, vm: u16) -> Answer {
        let a = self.raw([f::RXTX_UNMAP, (vm as u64) << 16, 0, 0, 0, 0, 0, 0]);
        if a[0] == f::SUCCESS_32 {
            self.shares_of(vm).buffers = None;
        }
        a
    }

    /// FFA_MSG_SEND2 (DEN0077 v1.2 §7.2, §15) from VM `vm`: the message
    /// stays in its TX (the core reads it there); its header must name the
    /// VM as sender (else INVALID_PARAMETERS, as an ID in w1, the layer's
    /// to fill) and a partition as receiver (another VM: DENIED); the
    /// core's per-user rule decides which partition. On success the layer,
    /// as the normal world's scheduler, runs the receiver (FFA_RUN) so that
    /// it reads its RX, as the reference hypervisor does.
    fn vm_msg_send2(&mut self, vm: u16, x: [u64; 8]) -> Answer {
        let Some((tx, _)) = self.shares_of(vm).buffers else {
            return error(f::INVALID_PARAMETERS);
        };
        if x[1] as u32 != 0 {
            return error(f::INVALID_PARAMETERS);
        }
        let mut h = [0u8; 16];
        if with_ram(tx, PAGE, |m| h.copy_from_slice(&m[..16])).is_err() {
            return error(f::INVALID_PARAMETERS);
        }
        let (receiver, sender) = (get16(&h, 12), get16(&h, 14));
        if sender != vm {
            return error(f::INVALID_PARAMETERS);
        }
        if receiver & 0x8000 == 0 {
            // Another VM or the layer: no VM-to-VM messages.
            return error(f::DENIED);
        }
        let a = self.raw([
            f::MSG_SEND2,
            (vm as u64) << 16,
            x[2] & 0xFFFF_FFFF,
            0,
            0,
            0,
            0,
            0,
        ]);
        if a[0] != f::SUCCESS_32 {
            return a;
        }
        let target = if receiver == ids::VTEE_TEMPLATE {
            self.own_instance(vm).unwrap_or(receiver)
        } else {
            receiver
        };
        let run = self.raw([f::RUN, (target as u64) << 16, 0, 0, 0, 0, 0, 0]);
        if run[0] == f::ERROR_32 {
            log::debug!("rpi4: VM {vm}: running {target:#x}: {:#x}", run[2]);
        }
        success()
    }

    /// The constituents at `from..to` of `b`: the VM's page mask. `pinned`
    /// are the pages of its RX/TX pair, which cannot change hands.
    fn vm_pages(
        vm: u16,
        away: u16,
        pinned: u16,
        b: &[u8],
        from: usize,
        to: usize,
    ) -> Result<u16, i32> {
        let base = guests::ram(vm);
        let mut pages = 0u16;
        for o in (from..to).step_by(16) {
            let (ipa, n) = (get64(b, o), get32(b, o + 8) as u64);
            let end = n.checked_mul(PAGE).and_then(|len| ipa.checked_add(len));
            let inside = ipa.is_multiple_of(PAGE)
                && n != 0
                && ipa >= base
                && end.is_some_and(|e| e <= base + layout::GUEST_RAM_SIZE);
            if !inside {
                return Err(f::INVALID_PARAMETERS);
            }
            let first = (ipa - base) / PAGE;
            let m = mask(first, n);
            if first == 0 || m & (away | pinned) != 0 {
                // Its program's page; a page that is not its own now; a
                // page backing its buffers.
                return Err(f::DENIED);
            }
            pages |= m;
        }
        Ok(pages)
    }

    /// The VM's own trusted VM's instance ID (None: it has none now).
    fn own_instance(&self, vm: u16) -> Option<u16> {
        crate::platform::with_core(|c| {
            c.partitions()
                .iter()
                .find(|p| {
                    p.state != PartitionState::Free
                        && p.kind
                            == PolicyKind::Instance {
                                owner: VmId::new(vm),
                            }
                })
                .map(|p| p.id().raw())
        })
        .flatten()
    }

    /// Copies `len` bytes of VM `vm`'s TX out, if it has a TX it still
    /// owns: what is checked and forwarded is this copy.
    fn read_tx(&mut self, vm: u16, len: usize) -> Result<Vec<u8>, i32> {
        let base = guests::ram(vm);
        let s = self.shares_of(vm);
        let Some((tx, _)) = s.buffers else {
            return Err(f::INVALID_PARAMETERS);
        };
        if s.away & page_bit(base, tx) != 0 {
            // Cannot happen (a pinned page never leaves), kept as the rule.
            return Err(f::DENIED);
        }
        let mut b = Vec::new();
        b.try_reserve_exact(len).map_err(|_| f::NO_MEMORY)?;
        b.resize(len, 0);
        with_ram(tx, PAGE, |m| b.copy_from_slice(&m[..len])).map_err(|_| f::INVALID_PARAMETERS)?;
        Ok(b)
    }

    /// The pages of VM `vm`'s RX/TX pair (bits of its page mask).
    fn pinned(&mut self, vm: u16) -> u16 {
        let base = guests::ram(vm);
        self.shares_of(vm)
            .buffers
            .map_or(0, |(tx, rx)| page_bit(base, tx) | page_bit(base, rx))
    }

    /// Writes `b` into the layer's TX and makes the call `x` as endpoint 0.
    fn forward(&mut self, own_tx: u64, b: &[u8], x: [u64; 8]) -> Answer {
        // SAFETY: the layer's TX page, general-VM RAM that no guest's stage
        // 2 maps; the core mapped it for this image when the layer's
        // FFA_RXTX_MAP succeeded and keeps it mapped (the layer never
        // unmaps its pair); the core reads it only in the call below; `b`
        // is at most a page (the callers check).
        unsafe {
            core::ptr::copy_nonoverlapping(b.as_ptr(), own_tx as *mut u8, b.len());
        }
        self.raw(x)
    }

    /// FFA_MEM_SHARE/LEND/DONATE (DEN0077 v1.2 §11.1-§11.3, DEN0140
    /// chapter 3) from VM `vm`, the descriptor in its TX; its first
    /// fragment here, the rest through [`Layer::vm_frag_tx`].
    fn vm_send(&mut self, vm: u16, x: [u64; 8], op: Op, stage2: &mut Stage2) -> Answer {
        let (total, frag) = (x[1] as u32, x[2] as u32);
        let (buffers, away, pending) = {
            let s = self.shares_of(vm);
            (s.buffers, s.away, s.pending.is_some())
        };
        if buffers.is_none() {
            return error(f::INVALID_PARAMETERS);
        }
        // A buffer of the VM's own (w3/w4) is not supported: TX only.
        if x[3] != 0 || x[4] as u32 != 0 || frag < 48 || frag > total || frag as u64 > PAGE {
            return error(f::INVALID_PARAMETERS);
        }
        if pending {
            // One send in fragments at a time per VM.
            return error(f::BUSY);
        }
        let Some(own_tx) = self.own_tx else {
            return error(f::NOT_SUPPORTED);
        };
        // Copied out of the VM's TX first: what is checked is what is sent.
        let b = match self.read_tx(vm, frag as usize) {
            Ok(b) => b,
            Err(e) => return error(e),
        };
        let instance = self.own_instance(vm);
        let pinned = self.pinned(vm);
        let parsed = (|| {
            let (size, count, at) = (get32(&b, 24), get32(&b, 28), get32(&b, 32));
            if get16(&b, 0) != vm {
                return Err(f::INVALID_PARAMETERS);
            }
            let emads_end = count as u64 * size as u64 + at as u64;
            if !(size == 16 || size == 32)
                || count == 0
                || count > MAX_RECEIVERS
                || at < 48
                || emads_end > frag as u64
            {
                return Err(f::INVALID_PARAMETERS);
            }
            if op == Op::Donate {
                // Only to its own TEE: the template's ID or its instance's.
                for i in 0..count as usize {
                    let to = get16(&b, at as usize + i * size as usize);
                    if to != ids::VTEE_TEMPLATE && Some(to) != instance {
                        return Err(f::DENIED);
                    }
                }
            }
            let comp = get32(&b, at as usize + 4) as u64;
            let ranges_at = comp + 16;
            if comp < emads_end || !comp.is_multiple_of(8) || ranges_at > frag as u64 {
                return Err(f::INVALID_PARAMETERS);
            }
            if !(frag as u64 - ranges_at).is_multiple_of(16) {
                // Fragments end between constituents (the reference
                // hypervisor's rule too).
                return Err(f::INVALID_PARAMETERS);
            }
            Self::vm_pages(vm, away, pinned, &b, ranges_at as usize, frag as usize)
        })();
        let pages = match parsed {
            Ok(p) => p,
            Err(e) => return error(e),
        };
        let a = self.forward(
            own_tx,
            &b,
            [x[0] & 0xFFFF_FFFF, total as u64, frag as u64, 0, 0, 0, 0, 0],
        );
        let handle = a[1] & 0xFFFF_FFFF | (a[2] & 0xFFFF_FFFF) << 32;
        if a[0] == func::FRAG_RX {
            self.shares_of(vm).pending = Some(Pending {
                handle,
                op,
                total,
                received: frag,
                pages,
            });
        } else if a[0] == f::SUCCESS_32 {
            let handle = a[2] & 0xFFFF_FFFF | (a[3] & 0xFFFF_FFFF) << 32;
            self.done(vm, handle, op, pages, stage2);
        }
        a
    }

    /// A send completed: VM `vm` owns `handle`; lent or donated pages leave
    /// its stage 2 (DEN0140 §1.5: the lender gives up access).
    fn done(&mut self, vm: u16, handle: u64, op: Op, pages: u16, stage2: &mut Stage2) {
        if op != Op::Share {
            let base = guests::ram(vm);
            crate::platform::with_core(|c| {
                let platform = c.platform_mut();
                for i in 0..RAM_PAGES {
                    if pages & (1 << i) != 0
                        && let Err(why) = guests::revoke(stage2, base + i * PAGE, PAGE, platform)
                    {
                        log::warn!("rpi4: VM {vm}: {why}");
                    }
                }
            });
        }
        let s = self.shares_of(vm);
        s.held.push(Held { handle, op, pages });
        if op != Op::Share {
            s.away |= pages;
        }
    }

    /// FFA_MEM_FRAG_TX (DEN0077 v1.2 §11.1.2, w1/w2 the handle, w3 the
    /// fragment's length) from VM `vm`: the next fragment of its send in
    /// progress, copied out of its TX now.
    fn vm_frag_tx(&mut self, vm: u16, x: [u64; 8], stage2: &mut Stage2) -> Answer {
        let handle = x[1] & 0xFFFF_FFFF | (x[2] & 0xFFFF_FFFF) << 32;
        let len = x[3] as u32;
        let (Some(p), Some(own_tx)) = (self.shares_of(vm).pending, self.own_tx) else {
            return error(f::INVALID_PARAMETERS);
        };
        if p.handle != handle
            || len == 0
            || len as u64 > PAGE
            || !len.is_multiple_of(16)
            || p.received as u64 + len as u64 > p.total as u64
        {
            return error(f::INVALID_PARAMETERS);
        }
        let b = match self.read_tx(vm, len as usize) {
            Ok(b) => b,
            Err(e) => return error(e),
        };
        let (away, pinned) = (self.shares_of(vm).away, self.pinned(vm));
        let pages = match Self::vm_pages(vm, away, pinned, &b, 0, len as usize) {
            Ok(m) => m,
            Err(e) => return error(e),
        };
        let a = self.forward(
            own_tx,
            &b,
            [
                func::FRAG_TX,
                handle & 0xFFFF_FFFF,
                handle >> 32,
                len as u64,
                0,
                0,
                0,
                0,
            ],
        );
        if a[0] == func::FRAG_RX {
            self.shares_of(vm).pending = Some(Pending {
                received: p.received + len,
                pages: p.pages | pages,
                ..p
            });
        } else if a[0] == f::SUCCESS_32 {
            self.shares_of(vm).pending = None;
            self.done(vm, handle, p.op, p.pages | pages, stage2);
        }
        // Refused: the core keeps the fragments before this one, so does
        // the layer (a reclaim cancels the send).
        a
    }

    /// FFA_MEM_RECLAIM (DEN0077 v1.2 §11.4) of a handle VM `vm` owns, or
    /// of its send in progress (which cancels it).
    fn vm_reclaim(&mut self, vm: u16, x: [u64; 8], stage2: &mut Stage2) -> Answer {
        let handle = x[1] & 0xFFFF_FFFF | (x[2] & 0xFFFF_FFFF) << 32;
        let call = [
            func::RECLAIM,
            x[1] & 0xFFFF_FFFF,
            x[2] & 0xFFFF_FFFF,
            x[3] & 0xFFFF_FFFF,
            0,
            0,
            0,
            0,
        ];
        if self
            .shares_of(vm)
            .pending
            .is_some_and(|p| p.handle == handle)
        {
            let a = self.raw(call);
            if a[0] == f::SUCCESS_32 {
                self.shares_of(vm).pending = None;
            }
            return a;
        }
        let Some(i) = self
            .shares_of(vm)
            .held
            .iter()
            .position(|h| h.handle == handle)
        else {
            return error(f::INVALID_PARAMETERS);
        };
        let a = self.raw(call);
        let h = self.shares_of(vm).held[i];
        if a[0] != f::SUCCESS_32 {
            if h.op == Op::Donate
                && a[0] == f::ERROR_32
                && a[2] as u32 as i32 == f::INVALID_PARAMETERS
            {
                // Retrieved: the TEE owns the pages now and the handle is
                // retired; they stay out of the VM's stage 2 for good.
                self.shares_of(vm).held.swap_remove(i);
            }
            return a;
        }
        self.shares_of(vm).held.swap_remove(i);
        let base = guests::ram(vm);
        // What the TEE wrote through its cacheable mapping reaches memory
        // before the guest (MMU off) reads it.
        for p in 0..RAM_PAGES {
            if h.pages & (1 << p) != 0
                && let Err(why) = with_ram(base + p * PAGE, PAGE, |_| ())
            {
                log::warn!("rpi4: VM {vm}: {why}");
            }
        }
        if h.op != Op::Share {
            self.shares_of(vm).away &= !h.pages;
            for p in 0..RAM_PAGES {
                if h.pages & (1 << p) != 0
                    && let Err(why) = guests::restore(stage2, base + p * PAGE, PAGE)
                {
                    log::warn!("rpi4: VM {vm}: {why}");
                }
            }
        }
        a
    }
}

/// The bit of the page at `addr` in a page mask of the VM whose RAM starts
/// at `base` (0 outside it).
fn page_bit(base: u64, addr: u64) -> u16 {
    match addr.checked_sub(base).map(|o| o / PAGE) {
        Some(i) if i < RAM_PAGES => 1 << i,
        _ => 0,
    }
}
