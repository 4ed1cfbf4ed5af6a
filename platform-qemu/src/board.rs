//! QEMU virt as the core sees it: memory access and stage-2 maintenance.

use alloc::collections::BTreeMap;

use arch_aarch64::mmu::{self, Kind, Region};
use spmc::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use spmc::platform::{MemError, Platform};

/// Secure DRAM the SPMC manages after its own image: partition packages
/// (from 0x0e300000) and the secure pool. Mapped read-write for the SPMC.
pub const SECURE_MANAGED: (u64, u64) = (0x0e30_0000, 0x0f00_0000);
/// All of QEMU virt's secure RAM: trusted SRAM (BL1/BL2 data, the SPMC
/// manifest), the SPMC's region, the packages and the pool.
pub const SECURE_RAM: (u64, u64) = (0x0e00_0000, 0x0f00_0000);
/// Normal-world DRAM on QEMU virt (TF-A's NS_DRAM0: 3 GiB from 1 GiB).
pub const NS_DRAM: (u64, u64) = (0x4000_0000, 0x1_0000_0000);

/// The platform the core runs on.
#[derive(Debug, Default)]
pub struct Qemu {
    /// Normal-world pages mapped for the SPMC, with how many users each has.
    ns_pages: BTreeMap<u64, u32>,
}

impl Qemu {
    fn secure(pa: Pa, len: u64) -> bool {
        pa.0 >= SECURE_MANAGED.0 && pa.0.checked_add(len).is_some_and(|e| e <= SECURE_MANAGED.1)
    }

    fn ns_mapped(&self, pa: Pa, len: u64) -> bool {
        let first = pa.0 & !(PAGE_SIZE - 1);
        let Some(end) = pa.0.checked_add(len) else {
            return false;
        };
        (first..end)
            .step_by(PAGE_SIZE as usize)
            .all(|p| self.ns_pages.contains_key(&p))
    }

    fn check(&self, pa: Pa, len: u64) -> Result<*mut u8, MemError> {
        if Self::secure(pa, len) || self.ns_mapped(pa, len) {
            Ok(pa.0 as *mut u8)
        } else {
            Err(MemError::NotAccessible)
        }
    }
}

impl Platform for Qemu {
    fn read(&mut self, pa: Pa, out: &mut [u8]) -> Result<(), MemError> {
        let src = self.check(pa, out.len() as u64)?;
        // SAFETY: `check` proved the range is secure memory the SPMC manages
        // or normal-world memory it mapped; both are identity-mapped RAM.
        unsafe { core::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn write(&mut self, pa: Pa, data: &[u8]) -> Result<(), MemError> {
        let dst = self.check(pa, data.len() as u64)?;
        // SAFETY: as in `read`; no Rust reference points into that memory.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    fn zero(&mut self, pa: Pa, len: u64) -> Result<(), MemError> {
        let dst = self.check(pa, len)?;
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_bytes(dst, 0, len as usize) };
        Ok(())
    }

    fn copy(&mut self, dst: Pa, src: Pa, len: u64) -> Result<(), MemError> {
        let d = self.check(dst, len)?;
        let s = self.check(src, len)?;
        // SAFETY: as in `write`; the core never asks for overlapping ranges,
        // and `copy` (memmove) would be correct even if it did.
        unsafe { core::ptr::copy(s, d, len as usize) };
        Ok(())
    }

    fn is_ns_ram(&self, pa: Pa, len: u64) -> bool {
        pa.0 >= NS_DRAM.0 && pa.0.checked_add(len).is_some_and(|e| e <= NS_DRAM.1)
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
        mmu::map(region).map_err(|_| MemError::MapFailed)?;
        for p in (pa.0..end).step_by(PAGE_SIZE as usize) {
            *self.ns_pages.entry(p).or_insert(0) += 1;
        }
        Ok(())
    }

    fn unmap_ns(&mut self, pa: Pa, len: u64) {
        let end = pa.0 + len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        for p in (pa.0..end).step_by(PAGE_SIZE as usize) {
            if let Some(n) = self.ns_pages.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.ns_pages.remove(&p);
                    if let Err(e) = mmu::unmap(p as usize, (p + PAGE_SIZE) as usize) {
                        log::error!("cannot unmap normal-world page {p:#x}: {e:?}");
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
}
