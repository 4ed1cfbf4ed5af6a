//! The QEMU board as the core sees it: memory access and stage-2 maintenance.

use alloc::vec::Vec;

use arch_aarch64::mmu::{self, Kind, Region};
use arch_aarch64::{cache, guarded};
use spmc::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use spmc::manifest::MemRange;
use spmc::platform::{MemError, Platform};

use crate::layout::BOARD;

/// Secure memory the SPMC manages after its own image: partition packages
/// and the secure pool. Mapped read-write for the SPMC.
pub const SECURE_MANAGED: (u64, u64) = BOARD.secure_managed;
/// All of the board's secure RAM: trusted SRAM (BL1/BL2 data, the SPMC
/// manifest), the SPMC's region, the packages and the pool. Never
/// normal-world memory, whatever a manifest says.
pub const SECURE_RAM: (u64, u64) = BOARD.secure_ram;

/// The platform the core runs on.
#[derive(Debug)]
pub struct Qemu {
    /// Normal-world pages mapped for the SPMC, with how many users each has,
    /// sorted by address (a sorted vector rather than a `BTreeMap`, whose
    /// code was about 3 KiB of the release image, docs/benchmarks.md).
    ns_pages: Vec<(u64, u32)>,
    /// The normal-world RAM, as the SPMC manifest states it (`ns-memory`).
    ns_memory: Vec<MemRange>,
}

impl Qemu {
    /// The board with the normal-world RAM the manifest names: nothing
    /// outside it is ever mapped or touched on the normal world's behalf.
    #[inline(never)]
    pub fn new(ns_memory: Vec<MemRange>) -> Self {
        Self {
            ns_pages: Vec::new(),
            ns_memory,
        }
    }

    fn secure(pa: Pa, len: u64) -> bool {
        pa.0 >= SECURE_MANAGED.0 && pa.0.checked_add(len).is_some_and(|e| e <= SECURE_MANAGED.1)
    }

    /// Where page `p` is in `ns_pages` (`Err`: where it would go).
    fn ns_page(&self, p: u64) -> Result<usize, usize> {
        self.ns_pages.binary_search_by_key(&p, |e| e.0)
    }

    fn ns_mapped(&self, pa: Pa, len: u64) -> bool {
        let first = pa.0 & !(PAGE_SIZE - 1);
        let Some(end) = pa.0.checked_add(len) else {
            return false;
        };
        (first..end)
            .step_by(PAGE_SIZE as usize)
            .all(|p| self.ns_page(p).is_ok())
    }

    /// Where `[pa, pa + len)` may be touched: secure memory the SPMC
    /// manages, or normal-world memory it mapped (which may still not answer
    /// if the manifest overstates the RAM: touched only with the guarded
    /// copies).
    fn check(&self, pa: Pa, len: u64) -> Result<Where, MemError> {
        if Self::secure(pa, len) {
            Ok(Where::Secure(pa.0 as *mut u8))
        } else if self.ns_mapped(pa, len) {
            Ok(Where::NonSecure(pa.0 as *mut u8))
        } else {
            Err(MemError::NotAccessible)
        }
    }
}

/// A range [`Qemu::check`] allowed.
#[derive(Clone, Copy)]
enum Where {
    /// Secure RAM of the SPMC's own: always answers.
    Secure(*mut u8),
    /// Normal-world memory: an access may take an external abort.
    NonSecure(*mut u8),
}

impl Where {
    fn ptr(self) -> *mut u8 {
        match self {
            Where::Secure(p) | Where::NonSecure(p) => p,
        }
    }

    fn ns(self) -> bool {
        matches!(self, Where::NonSecure(_))
    }
}

/// Cleans and invalidates what the core just wrote at `w` to the point of
/// coherency: partitions (and the rpi4 image's general VMs) read it with
/// their MMU off, bypassing the caches (arch `cache`, docs/rpi4.md).
fn to_poc(w: Where, len: usize) {
    // SAFETY: `w` came from `check`, which proved `[w, w + len)` is secure
    // memory the SPMC maps or normal-world memory mapped for it, and the
    // callers clean only after their write succeeded (a normal-world page
    // that does not answer is never cleaned); cache maintenance by VA
    // changes no byte.
    unsafe { cache::clean_invalidate_to_poc(w.ptr() as usize, len) };
}

/// An external abort in a guarded access: the memory is not there.
fn aborted(_: guarded::Aborted) -> MemError {
    MemError::Aborted
}

impl Platform for Qemu {
    fn read(&mut self, pa: Pa, out: &mut [u8]) -> Result<(), MemError> {
        let src = self.check(pa, out.len() as u64)?;
        if src.ns() {
            // SAFETY: `check` proved the range is normal-world memory mapped
            // for the SPMC; `out` is ours alone; an abort comes back as Err.
            return unsafe { guarded::copy(out.as_mut_ptr(), src.ptr(), out.len()) }
                .map_err(aborted);
        }
        // SAFETY: `check` proved the range is secure memory the SPMC manages:
        // identity-mapped RAM.
        unsafe { core::ptr::copy_nonoverlapping(src.ptr(), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn write(&mut self, pa: Pa, data: &[u8]) -> Result<(), MemError> {
        let dst = self.check(pa, data.len() as u64)?;
        if dst.ns() {
            // SAFETY: as in `read`; no Rust reference points into that memory.
            let r = unsafe { guarded::copy(dst.ptr(), data.as_ptr(), data.len()) };
            r.map_err(aborted)?;
            to_poc(dst, data.len());
            return Ok(());
        }
        // SAFETY: as in `read`; no Rust reference points into that memory.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst.ptr(), data.len()) };
        to_poc(dst, data.len());
        Ok(())
    }

    fn zero(&mut self, pa: Pa, len: u64) -> Result<(), MemError> {
        let dst = self.check(pa, len)?;
        if dst.ns() {
            // SAFETY: as in `write`.
            let r = unsafe { guarded::zero(dst.ptr(), len as usize) };
            r.map_err(aborted)?;
            to_poc(dst, len as usize);
            return Ok(());
        }
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_bytes(dst.ptr(), 0, len as usize) };
        to_poc(dst, len as usize);
        Ok(())
    }

    fn copy(&mut self, dst: Pa, src: Pa, len: u64) -> Result<(), MemError> {
        let d = self.check(dst, len)?;
        let s = self.check(src, len)?;
        if d.ns() || s.ns() {
            // SAFETY: as in `write`; the core never asks for overlapping ranges.
            let r = unsafe { guarded::copy(d.ptr(), s.ptr(), len as usize) };
            r.map_err(aborted)?;
            to_poc(d, len as usize);
            return Ok(());
        }
        // SAFETY: as in `write`; the core never asks for overlapping ranges,
        // and `copy` (memmove) would be correct even if it did.
        unsafe { core::ptr::copy(s.ptr(), d.ptr(), len as usize) };
        to_poc(d, len as usize);
        Ok(())
    }

    fn copy_code(&mut self, dst: Pa, src: Pa, len: u64) -> Result<(), MemError> {
        self.copy(dst, src, len)?;
        // A partition's image or a template's instance: no stale line of
        // what the pages held before may be fetched.
        cache::invalidate_icache();
        Ok(())
    }

    fn is_ns_ram(&self, pa: Pa, len: u64) -> bool {
        let Some(end) = pa.0.checked_add(len) else {
            return false;
        };
        let range = MemRange {
            base: pa.0,
            size: end - pa.0,
        };
        // The manifest's ranges never overlap each other, the secure pool or
        // the SPMC's image (checked when it is parsed); the whole secure DRAM
        // is refused here as well, whatever the manifest says.
        let secure = MemRange {
            base: SECURE_RAM.0,
            size: SECURE_RAM.1 - SECURE_RAM.0,
        };
        !secure.overlaps(&range) && self.ns_memory.iter().any(|r| r.contains(&range))
    }

    fn overlaps_secure_ram(&self, pa: Pa, len: u64) -> bool {
        pa.0.checked_add(len)
            .is_none_or(|e| e > SECURE_RAM.0 && pa.0 < SECURE_RAM.1)
    }

    fn map_ns(&mut self, pa: Pa, len: u64) -> Result<(), MemError> {
        if !self.is_ns_ram(pa, len) || !pa.is_page_aligned() {
            return Err(MemError::MapFailed);
        }
        let end = pa.0 + len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let region = Region {
            start: pa.0 as usize,
            end: end as usize,
            kind: Kind::NonSecure,
        };
        // Room for every page first, so that a full heap changes nothing.
        self.ns_pages
            .try_reserve(((end - pa.0) / PAGE_SIZE) as usize)
            .map_err(|_| MemError::MapFailed)?;
        mmu::map(region).map_err(|_| MemError::MapFailed)?;
        for p in (pa.0..end).step_by(PAGE_SIZE as usize) {
            match self.ns_page(p) {
                Ok(i) => self.ns_pages[i].1 += 1,
                Err(i) => self.ns_pages.insert(i, (p, 1)),
            }
        }
        Ok(())
    }

    fn unmap_ns(&mut self, pa: Pa, len: u64) {
        let end = pa.0 + len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        for p in (pa.0..end).step_by(PAGE_SIZE as usize) {
            if let Ok(i) = self.ns_page(p) {
                let n = &mut self.ns_pages[i].1;
                *n -= 1;
                if *n == 0 {
                    self.ns_pages.remove(i);
                    if let Err(e) = mmu::unmap(p as usize, (p + PAGE_SIZE) as usize) {
                        log::error!("cannot unmap normal-world page {}: {e}", spmc::text::Hex(p));
                    }
                }
            }
        }
    }

    fn heap_available(&self, bytes: usize) -> bool {
        arch_aarch64::heap::free() >= bytes
    }

    fn invalidate_stage2(&mut self, vmid: u16, space: IpaSpace, ipa: Ipa, len: u64) {
        arch_aarch64::stage2::invalidate(vmid, space, ipa.0, len);
    }

    fn vcpu_el1_to_context(&mut self) {
        arch_aarch64::vcpu::park_el1();
    }

    fn vmid_limit(&self) -> u16 {
        // `stage2::configure` turned 16-bit VMIDs on where the CPU has them.
        // The top `GENERAL_VM_VMIDS` are the board's own general VMs'
        // (none on QEMU virt; platform-rpi4's EL1 guests).
        let all: u16 = if arch_aarch64::stage2::vmid16() {
            0xFFFF
        } else {
            0xFF
        };
        all - crate::layout::GENERAL_VM_VMIDS
    }

    fn core_index(&self) -> usize {
        arch_aarch64::cpu::core_index()
    }

    fn configure_secure_interrupt(
        &mut self,
        intid: u32,
        priority: u8,
        level: bool,
        core: usize,
    ) -> bool {
        crate::gic::configure_secure(intid, priority, level, core, arch_aarch64::MAX_CPUS)
    }

    fn disable_interrupt(&mut self, intid: u32) {
        crate::gic::disable(intid, arch_aarch64::MAX_CPUS);
    }

    fn acknowledge_secure_interrupt(&mut self) -> Option<u32> {
        let intid = arch_aarch64::gic::acknowledge_group1()?;
        // Priority drop now (EOImode 1): the interrupt stays active until
        // its owner ends the virtual interrupt linked to it, or the SPMC
        // deactivates it.
        arch_aarch64::gic::end_priority(intid);
        Some(intid)
    }

    fn deactivate_interrupt(&mut self, intid: u32) {
        arch_aarch64::gic::deactivate(intid);
    }

    fn send_sri(&mut self) {
        arch_aarch64::sri::send_ns_sgi_to_self(spmc::notifications::SRI_INTID);
    }
}
