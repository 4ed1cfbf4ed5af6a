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
//!   INVALID_PARAMETERS, as the core answers a handle it does not know.
//!
//! Not yet: fragments (`FFA_MEM_FRAG_TX`), donations, a VM as a borrower,
//! indirect messages.

use alloc::vec::Vec;
use test_protocol::mem::{get16, get32, get64};

use spmc::stage2::Stage2;
use test_protocol::ffa as f;
use test_protocol::mem::func;

use crate::guests::{self, with_ram};
use crate::layout;
use crate::users::{Answer, Layer};

const PAGE: u64 = 4096;
/// Most receivers a VM may name (the core's limit too).
const MAX_RECEIVERS: u32 = 8;

/// A transaction a VM owns.
#[derive(Clone, Copy, Debug)]
struct Held {
    handle: u64,
    lend: bool,
    /// Its pages (bit i: the page at the VM's RAM base + i * PAGE).
    pages: u16,
}

/// One VM's buffers and transactions.
#[derive(Debug, Default)]
pub struct VmShares {
    /// Its TX and RX pages (IPAs = PAs).
    buffers: Option<(u64, u64)>,
    held: Vec<Held>,
    /// Pages it lent (not in its stage 2).
    away: u16,
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
                let s = self.shares_of(vm);
                // An ID in w1[31:16]: a VM names no one but itself.
                if x[1] != 0 {
                    error(f::INVALID_PARAMETERS)
                } else if s.buffers.take().is_some() {
                    success()
                } else {
                    error(f::INVALID_PARAMETERS)
                }
            }
            func::SHARE_32 | func::SHARE_64 => self.vm_send(vm, x, None),
            func::LEND_32 | func::LEND_64 => self.vm_send(vm, x, Some(stage2)),
            func::RECLAIM => self.vm_reclaim(vm, x, stage2),
            _ => return None,
        })
    }

    fn shares_of(&mut self, vm: u16) -> &mut VmShares {
        let i = vm as usize - 1;
        if self.shares.len() <= i {
            self.shares.resize_with(i + 1, VmShares::default);
        }
        &mut self.shares[i]
    }

    /// FFA_RXTX_MAP_64 (DEN0077 v1.2 §13.5) from VM `vm`: one page each,
    /// in its own RAM, not its program's page.
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
        s.buffers = Some((tx, rx));
        success()
    }

    /// The constituents at `from..to` of `b`: the VM's page mask.
    fn vm_pages(vm: u16, away: u16, b: &[u8], from: usize, to: usize) -> Result<u16, i32> {
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
            if first == 0 || m & away != 0 {
                // Its program's page; or a page that is not its own now.
                return Err(f::DENIED);
            }
            pages |= m;
        }
        Ok(pages)
    }

    /// FFA_MEM_SHARE/LEND (DEN0077 v1.2 §11.1-§11.2, DEN0140 chapter 3)
    /// from VM `vm`, the descriptor in its TX, in one fragment; a lend
    /// comes with the VM's stage 2, which loses the pages.
    fn vm_send(&mut self, vm: u16, x: [u64; 8], lend: Option<&mut Stage2>) -> Answer {
        let (total, frag) = (x[1] as u32, x[2] as u32);
        let (Some((tx, _)), away) = ({
            let s = self.shares_of(vm);
            (s.buffers, s.away)
        }) else {
            return error(f::INVALID_PARAMETERS);
        };
        // A buffer of the VM's own (w3/w4) is not supported: TX only.
        if x[3] != 0 || x[4] as u32 != 0 || frag < 48 || frag > total || frag as u64 > PAGE {
            return error(f::INVALID_PARAMETERS);
        }
        if frag != total {
            // Fragments are not forwarded yet.
            return error(f::NOT_SUPPORTED);
        }
        let Some(own_tx) = self.own_tx else {
            return error(f::NOT_SUPPORTED);
        };
        // Copied out of the VM's TX first: what is checked is what is sent.
        let mut b = alloc::vec![0u8; frag as usize];
        if with_ram(tx, PAGE, |m| b.copy_from_slice(&m[..frag as usize])).is_err() {
            return error(f::INVALID_PARAMETERS);
        }
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
            let comp = get32(&b, at as usize + 4) as u64;
            let ranges_at = comp + 16;
            if comp < emads_end || !comp.is_multiple_of(8) || ranges_at > frag as u64 {
                return Err(f::INVALID_PARAMETERS);
            }
            if !(frag as u64 - ranges_at).is_multiple_of(16) {
                return Err(f::INVALID_PARAMETERS);
            }
            Self::vm_pages(vm, away, &b, ranges_at as usize, frag as usize)
        })();
        let pages = match parsed {
            Ok(p) => p,
            Err(e) => return error(e),
        };
        // SAFETY: the layer's TX page, general-VM RAM that no guest's stage
        // 2 maps; the core mapped it for this image when the layer's
        // FFA_RXTX_MAP succeeded and keeps it mapped (the layer never
        // unmaps its pair); the core reads it only in the call below.
        unsafe {
            core::ptr::copy_nonoverlapping(b.as_ptr(), own_tx as *mut u8, b.len());
        }
        let a = self.raw([x[0] & 0xFFFF_FFFF, total as u64, frag as u64, 0, 0, 0, 0, 0]);
        if a[0] != f::SUCCESS_32 {
            return a;
        }
        let handle = a[2] & 0xFFFF_FFFF | (a[3] & 0xFFFF_FFFF) << 32;
        let lent = lend.is_some();
        if let Some(s2) = lend {
            let base = guests::ram(vm);
            crate::platform::with_core(|c| {
                let platform = c.platform_mut();
                for i in 0..RAM_PAGES {
                    if pages & (1 << i) != 0
                        && let Err(why) = guests::revoke(s2, base + i * PAGE, PAGE, platform)
                    {
                        log::warn!("rpi4: VM {vm}: {why}");
                    }
                }
            });
        }
        let lend = lent;
        let s = self.shares_of(vm);
        s.held.push(Held {
            handle,
            lend,
            pages,
        });
        if lend {
            s.away |= pages;
        }
        a
    }

    /// FFA_MEM_RECLAIM (DEN0077 v1.2 §11.4) of a handle VM `vm` owns.
    fn vm_reclaim(&mut self, vm: u16, x: [u64; 8], stage2: &mut Stage2) -> Answer {
        let handle = x[1] & 0xFFFF_FFFF | (x[2] & 0xFFFF_FFFF) << 32;
        let Some(i) = self
            .shares_of(vm)
            .held
            .iter()
            .position(|h| h.handle == handle)
        else {
            return error(f::INVALID_PARAMETERS);
        };
        let a = self.raw([
            func::RECLAIM,
            x[1] & 0xFFFF_FFFF,
            x[2] & 0xFFFF_FFFF,
            x[3] & 0xFFFF_FFFF,
            0,
            0,
            0,
            0,
        ]);
        if a[0] != f::SUCCESS_32 {
            return a;
        }
        let h = self.shares_of(vm).held.swap_remove(i);
        if h.lend {
            let base = guests::ram(vm);
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
