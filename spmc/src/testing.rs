//! A fake platform for host tests: memory is two byte vectors (secure and
//! normal world) and every TLB invalidation and normal-world mapping the core
//! asks for is recorded, so tests can check the stage-2 contract.
//!
//! Also small helpers to play a partition: put an FF-A call in a vCPU's
//! registers and report it as an exit, as the arch layer would.

pub mod contract;

use alloc::vec;
use alloc::vec::Vec;

use crate::addr::{Ipa, IpaSpace, Pa};
use crate::ffa::Regs;
use crate::manager::{Next, Spmc};
use crate::platform::{MemError, Platform};
use crate::sp_manifest::{PACKAGE_HEADER_SIZE, PACKAGE_MAGIC};
use crate::vcpu::{ExitInfo, VcpuRef, ec};

/// Base of the fake secure memory (as on QEMU virt).
pub const SECURE_BASE: u64 = 0x0e00_0000;
/// Size of the fake secure memory.
pub const SECURE_SIZE: u64 = 16 << 20;
/// Base of the fake normal-world RAM.
pub const NS_BASE: u64 = 0x4000_0000;
/// Size of the fake normal-world RAM.
pub const NS_SIZE: u64 = 8 << 20;

/// One recorded stage-2 TLB invalidation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalidation {
    /// VMID.
    pub vmid: u16,
    /// IPA space.
    pub space: IpaSpace,
    /// First IPA.
    pub ipa: Ipa,
    /// Bytes.
    pub len: u64,
}

/// The fake platform.
#[derive(Debug)]
pub struct FakePlatform {
    /// Secure memory bytes from [`SECURE_BASE`].
    pub secure: Vec<u8>,
    /// Normal-world memory bytes from [`NS_BASE`].
    pub ns: Vec<u8>,
    /// Normal-world ranges currently mapped for the SPMC.
    pub ns_mapped: Vec<(Pa, u64)>,
    /// Every stage-2 invalidation, in order.
    pub invalidations: Vec<Invalidation>,
    /// Bytes of normal-world RAM from [`NS_BASE`] ([`NS_SIZE`] unless made
    /// with [`FakePlatform::with_ns_size`]).
    pub ns_size: u64,
    /// The free bytes of the heap the SPMC allocates from, when a test models
    /// a finite one (`None`: unlimited). [`Platform::heap_available`]
    /// answers from it, as the firmware answers from its allocator.
    pub heap_free: Option<fn() -> usize>,
    /// How many times the core asked for a vCPU's EL1 registers in its
    /// context ([`Platform::vcpu_el1_to_context`]).
    pub el1_syncs: u32,
    /// How many copies the core made as code ([`Platform::copy_code`]).
    pub code_copies: u32,
    /// [`Platform::vmid_limit`]: 8-bit VMIDs unless a test says otherwise.
    pub vmid_limit: u16,
    /// The core the next call arrives on ([`Platform::core_index`]); tests
    /// set it to play calls from several cores.
    pub core: usize,
    /// Secure interrupts pending at the fake GIC, acknowledged in order
    /// ([`Platform::acknowledge_secure_interrupt`]).
    pub secure_pending: Vec<u32>,
    /// Every interrupt configured as Group 1 Secure: (INTID, priority,
    /// level, core).
    pub configured: Vec<(u32, u8, bool, usize)>,
    /// Interrupts the SPMC deactivated itself, in order.
    pub deactivated: Vec<u32>,
    /// Interrupts the SPMC disabled, in order.
    pub disabled: Vec<u32>,
    /// The core of each schedule receiver interrupt the core raised
    /// ([`Platform::send_sri`]), in order.
    pub sris: Vec<usize>,
}

impl Default for FakePlatform {
    fn default() -> Self {
        Self {
            secure: vec![0; SECURE_SIZE as usize],
            ns: vec![0; NS_SIZE as usize],
            ns_mapped: Vec::new(),
            invalidations: Vec::new(),
            ns_size: NS_SIZE,
            heap_free: None,
            el1_syncs: 0,
            code_copies: 0,
            vmid_limit: 0xFF,
            core: 0,
            secure_pending: Vec::new(),
            configured: Vec::new(),
            deactivated: Vec::new(),
            disabled: Vec::new(),
            sris: Vec::new(),
        }
    }
}

impl FakePlatform {
    /// A fake platform with `bytes` of normal-world RAM (page multiple; the
    /// bytes are allocated zeroed, so untouched pages cost the host nothing).
    pub fn with_ns_size(bytes: u64) -> Self {
        Self {
            ns: vec![0; bytes as usize],
            ns_size: bytes,
            ..Self::default()
        }
    }

    fn slice(&mut self, pa: Pa, len: u64) -> Result<&mut [u8], MemError> {
        let end = pa.0.checked_add(len).ok_or(MemError::NotAccessible)?;
        if pa.0 >= SECURE_BASE && end <= SECURE_BASE + SECURE_SIZE {
            let o = (pa.0 - SECURE_BASE) as usize;
            return Ok(&mut self.secure[o..o + len as usize]);
        }
        let mapped = self
            .ns_mapped
            .iter()
            .any(|(b, l)| pa.0 >= b.0 && end <= b.0 + l);
        if mapped && pa.0 >= NS_BASE && end <= NS_BASE + self.ns_size {
            let o = (pa.0 - NS_BASE) as usize;
            return Ok(&mut self.ns[o..o + len as usize]);
        }
        Err(MemError::NotAccessible)
    }

    /// Writes normal-world memory directly, as the normal world would.
    pub fn nwd_write(&mut self, pa: u64, data: &[u8]) {
        let o = (pa - NS_BASE) as usize;
        self.ns[o..o + data.len()].copy_from_slice(data);
    }

    /// Reads normal-world memory directly, as the normal world would.
    pub fn nwd_read(&self, pa: u64, len: usize) -> Vec<u8> {
        let o = (pa - NS_BASE) as usize;
        self.ns[o..o + len].to_vec()
    }

    /// Reads secure memory directly (tests check what partitions left behind).
    pub fn secure_read(&self, pa: Pa, len: usize) -> Vec<u8> {
        let o = (pa.0 - SECURE_BASE) as usize;
        self.secure[o..o + len].to_vec()
    }

    /// Writes secure memory directly (tests play a partition writing its own memory).
    pub fn secure_write(&mut self, pa: Pa, data: &[u8]) {
        let o = (pa.0 - SECURE_BASE) as usize;
        self.secure[o..o + data.len()].copy_from_slice(data);
    }

    /// Puts an SP package (sptool layout: manifest at 0x1000, image at 0x4000) at `pa`.
    pub fn put_package(&mut self, pa: Pa, manifest: &[u8], image: &[u8]) {
        let (pm_off, img_off) = (0x1000u32, 0x4000u32);
        let mut hdr = [0u8; PACKAGE_HEADER_SIZE];
        for (i, w) in [
            PACKAGE_MAGIC,
            2,
            pm_off,
            manifest.len() as u32,
            img_off,
            image.len() as u32,
        ]
        .iter()
        .enumerate()
        {
            hdr[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        self.secure_write(pa, &hdr);
        self.secure_write(Pa(pa.0 + pm_off as u64), manifest);
        self.secure_write(Pa(pa.0 + img_off as u64), image);
    }
}

impl Platform for FakePlatform {
    fn read(&mut self, pa: Pa, out: &mut [u8]) -> Result<(), MemError> {
        let len = out.len() as u64;
        out.copy_from_slice(self.slice(pa, len)?);
        Ok(())
    }

    fn write(&mut self, pa: Pa, data: &[u8]) -> Result<(), MemError> {
        self.slice(pa, data.len() as u64)?.copy_from_slice(data);
        Ok(())
    }

    fn zero(&mut self, pa: Pa, len: u64) -> Result<(), MemError> {
        self.slice(pa, len)?.fill(0);
        Ok(())
    }

    fn copy(&mut self, dst: Pa, src: Pa, len: u64) -> Result<(), MemError> {
        let data = self.slice(src, len)?.to_vec();
        self.slice(dst, len)?.copy_from_slice(&data);
        Ok(())
    }

    fn copy_code(&mut self, dst: Pa, src: Pa, len: u64) -> Result<(), MemError> {
        self.copy(dst, src, len)?;
        self.code_copies += 1;
        Ok(())
    }

    fn is_ns_ram(&self, pa: Pa, len: u64) -> bool {
        pa.0 >= NS_BASE
            && pa
                .0
                .checked_add(len)
                .is_some_and(|e| e <= NS_BASE + self.ns_size)
    }

    fn overlaps_secure_ram(&self, pa: Pa, len: u64) -> bool {
        pa.0.checked_add(len)
            .is_none_or(|e| e > SECURE_BASE && pa.0 < SECURE_BASE + SECURE_SIZE)
    }

    fn map_ns(&mut self, pa: Pa, len: u64) -> Result<(), MemError> {
        if !self.is_ns_ram(pa, len) {
            return Err(MemError::MapFailed);
        }
        self.ns_mapped.push((pa, len));
        Ok(())
    }

    fn unmap_ns(&mut self, pa: Pa, len: u64) {
        if let Some(i) = self
            .ns_mapped
            .iter()
            .position(|&(b, l)| b == pa && l == len)
        {
            self.ns_mapped.remove(i);
        }
    }

    fn heap_available(&self, bytes: usize) -> bool {
        self.heap_free.is_none_or(|free| free() >= bytes)
    }

    fn vmid_limit(&self) -> u16 {
        self.vmid_limit
    }

    fn invalidate_stage2(&mut self, vmid: u16, space: IpaSpace, ipa: Ipa, len: u64) {
        self.invalidations.push(Invalidation {
            vmid,
            space,
            ipa,
            len,
        });
    }

    fn vcpu_el1_to_context(&mut self) {
        // The tests play the partition in its context: it is the truth.
        self.el1_syncs += 1;
    }

    fn core_index(&self) -> usize {
        self.core
    }

    fn configure_secure_interrupt(
        &mut self,
        intid: u32,
        priority: u8,
        level: bool,
        core: usize,
    ) -> bool {
        self.configured.push((intid, priority, level, core));
        true
    }

    fn disable_interrupt(&mut self, intid: u32) {
        self.disabled.push(intid);
    }

    fn acknowledge_secure_interrupt(&mut self) -> Option<u32> {
        (!self.secure_pending.is_empty()).then(|| self.secure_pending.remove(0))
    }

    fn deactivate_interrupt(&mut self, intid: u32) {
        self.deactivated.push(intid);
    }

    fn send_sri(&mut self) {
        self.sris.push(self.core);
    }
}

/// Reports `v`'s exit to the manager and then does what the platform does
/// once the exited vCPU's state is back in its context (here it always is:
/// the tests play the partition in its context): releases it
/// (`Contexts::release`) unless it goes on running on this core.
pub fn exit(spmc: &mut Spmc<FakePlatform>, v: VcpuRef, regs: &mut Regs) -> Next {
    let next = spmc.handle_exit(v, regs);
    if next.lazy_state_after(v) != crate::LazyState::KeepLive {
        spmc.contexts().release(v);
    }
    next
}

/// Plays a partition making an FF-A call through SMC: puts `call` in its
/// x0.. and reports the exit. Returns what the manager does next.
pub fn sp_call(spmc: &mut Spmc<FakePlatform>, v: VcpuRef, call: &[u64], regs: &mut Regs) -> Next {
    {
        let ctx = spmc.vcpu_context_mut(v);
        ctx.x[..call.len()].copy_from_slice(call);
        ctx.exit = ExitInfo {
            vector: 0,
            esr: ec::SMC64 << 26,
            far: 0,
            hpfar: 0,
        };
    }
    exit(spmc, v, regs)
}

/// Plays a partition taking a stage-2 data abort at `ipa`.
pub fn sp_fault(spmc: &mut Spmc<FakePlatform>, v: VcpuRef, ipa: u64, regs: &mut Regs) -> Next {
    let ctx = spmc.vcpu_context_mut(v);
    ctx.exit = ExitInfo {
        vector: 0,
        esr: ec::DABT_LOWER << 26,
        far: ipa & 0xfff,
        hpfar: (ipa >> 12) << 4,
    };
    exit(spmc, v, regs)
}

/// Plays a physical interrupt arriving while the partition runs.
pub fn sp_interrupt(spmc: &mut Spmc<FakePlatform>, v: VcpuRef, regs: &mut Regs) -> Next {
    spmc.vcpu_context_mut(v).exit = ExitInfo {
        vector: 1,
        esr: 0,
        far: 0,
        hpfar: 0,
    };
    exit(spmc, v, regs)
}
