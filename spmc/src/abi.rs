//! ABIs that answer at once: RX/TX buffers (§13.5-13.7), partition discovery
//! (§13.8, §13.9), indirect messages (§15.6, FFA_MSG_SEND2) and the console
//! (§13.11, FFA_CONSOLE_LOG).

use alloc::vec::Vec;

use log::debug;

use crate::addr::{Ipa, IpaSpace, PAGE_SIZE, Pa};
use crate::ffa::{FfaError, PartitionId, Regs, Version, func, is_secure_id};
use crate::ids::{PartId, SlotId, VmId};
use crate::manager::{Endpoint, Spmc};
use crate::mem::ownership::PhysRange;
use crate::partition::{Buffers, PartitionState, RxState};
use crate::platform::Platform;
use crate::sp_manifest::{Messaging, Uuid};

/// Largest RX/TX buffer, in 4 KiB pages (reported by FFA_FEATURES(FFA_RXTX_MAP)).
pub const MAX_RXTX_PAGES: u64 = 16;
/// Size of a v1.1+ partition information descriptor (Table 6.1), arm-ffa's.
///
/// The descriptors themselves are written here, not with
/// `arm_ffa::partition_info::PartitionInfo::pack`: that one panics for a
/// v1.0 caller (8-byte descriptors, which it does not know) and takes the
/// properties as a decoded struct, where the SPMC masks raw bits per the
/// caller's version (docs/arm-ffa.md).
pub const PART_INFO_SIZE: usize = arm_ffa::partition_info::PartitionInfo::DESC_SIZE;
/// Size of a v1.0 partition information descriptor (v1.0 Table 8.25; arm-ffa
/// has no v1.0 layout).
pub const PART_INFO_SIZE_V1_0: usize = 8;
/// Indirect message header size in v1.2 (with the UUID, Table 6.3).
pub const MSG_HEADER_V1_2: u32 = 40;
/// Indirect message header size in v1.1.
pub const MSG_HEADER_V1_1: u32 = 20;
/// Partition properties bit 3: the partition receives notifications (Table 6.2).
const PROP_NOTIFICATIONS: u32 = 1 << 3;
/// Partition properties bit 8: the partition runs in AArch64 (Table 6.2).
const PROP_AARCH64: u32 = 1 << 8;
/// Properties a v1.0 caller knows (Table 8.25 of v1.0: bits [31:3] reserved).
const V1_0_PROPERTIES: u32 = 0x7;
/// Properties a v1.1 caller knows (bits [31:9] reserved in v1.1).
const V1_1_PROPERTIES: u32 = 0x1FF;
/// Properties v1.2 defines (bits [31:11] reserved).
const V1_2_PROPERTIES: u32 = 0x7FF;
/// Longest console line kept before it is flushed.
const CONSOLE_LINE: usize = 256;

impl<P: Platform> Spmc<P> {
    pub(crate) fn buffers(&self, ep: Endpoint) -> Option<Buffers> {
        match ep {
            Endpoint::NormalWorld(id) => self.normal_world(id.raw()).and_then(|e| e.buffers),
            Endpoint::Partition(s) => self.partitions[s].buffers,
        }
    }

    fn set_buffers(&mut self, ep: Endpoint, b: Option<Buffers>) {
        match ep {
            Endpoint::NormalWorld(id) => self.nwd_mut(id.raw()).buffers = b,
            Endpoint::Partition(s) => self.partitions[s].buffers = b,
        }
    }

    pub(crate) fn set_rx_state(&mut self, ep: Endpoint, state: RxState) {
        if let Some(mut b) = self.buffers(ep) {
            b.rx_state = state;
            self.set_buffers(ep, Some(b));
        }
    }

    /// FFA_RXTX_MAP (§13.5). The normal world names physical addresses, which
    /// must be normal-world RAM; a partition names IPAs of its own writable memory.
    /// Either way the buffers must be memory the caller owns exclusively
    /// (`mem::ownership`, §7.2.2): memory in a transaction, borrowed or
    /// donated away is DENIED, so an address kept here never outlives its page.
    ///
    /// A hypervisor maps a VM's pair with all three arguments zero and an
    /// Endpoint RX/TX descriptor in its own TX buffer ([`Self::vm_rxtx`]);
    /// the VM's buffers then go through the same checks as anyone's.
    pub(crate) fn rxtx_map(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let wide = args.func() == func::RXTX_MAP_64;
        let (tx, rx) = if wide {
            (args.x(1), args.x(2))
        } else {
            (args.w(1) as u64, args.w(2) as u64)
        };
        // w3[5:0] is the page count, w3[31:6] reserved (MBZ) in every
        // version: a reserved bit set is refused, never masked off.
        let pages = args.w(3) as u64;
        let (from, tx, rx, pages) = if from == Endpoint::NormalWorld(VmId::HYPERVISOR)
            && tx == 0
            && rx == 0
            && pages == 0
        {
            self.vm_rxtx()?
        } else {
            (from, tx, rx, pages)
        };
        if pages == 0 || pages > MAX_RXTX_PAGES {
            return Err(FfaError::InvalidParameters);
        }
        let size = pages * PAGE_SIZE;
        if !tx.is_multiple_of(PAGE_SIZE)
            || !rx.is_multiple_of(PAGE_SIZE)
            || tx.checked_add(size).is_none()
            || rx.checked_add(size).is_none()
        {
            return Err(FfaError::InvalidParameters);
        }
        if tx < rx + size && rx < tx + size {
            return Err(FfaError::InvalidParameters);
        }
        if self.buffers(from).is_some() {
            return Err(FfaError::Denied);
        }
        let (tx_pa, rx_pa) = match from {
            Endpoint::NormalWorld(_) => {
                if !self.platform.is_ns_ram(Pa(tx), size) || !self.platform.is_ns_ram(Pa(rx), size)
                {
                    debug!("RXTX_MAP: {tx:#x}/{rx:#x} is not normal-world RAM");
                    return Err(FfaError::InvalidParameters);
                }
                self.check_buffer_owned(from, PhysRange::ns(Pa(tx), size))?;
                self.check_buffer_owned(from, PhysRange::ns(Pa(rx), size))?;
                self.platform
                    .map_ns(Pa(tx), size)
                    .map_err(|_| FfaError::NoMemory)?;
                if self.platform.map_ns(Pa(rx), size).is_err() {
                    self.platform.unmap_ns(Pa(tx), size);
                    return Err(FfaError::NoMemory);
                }
                (Pa(tx), Pa(rx))
            }
            Endpoint::Partition(s) => {
                let s2 = &self.partitions[s].stage2;
                let t = s2.translate_range(IpaSpace::Secure, Ipa(tx), size, true);
                let r = s2.translate_range(IpaSpace::Secure, Ipa(rx), size, true);
                match (t, r) {
                    (Some(t), Some(r)) => {
                        self.check_buffer_owned(from, PhysRange::secure(t, size))?;
                        self.check_buffer_owned(from, PhysRange::secure(r, size))?;
                        (t, r)
                    }
                    _ => return Err(FfaError::InvalidParameters),
                }
            }
        };
        self.set_buffers(
            from,
            Some(Buffers {
                tx_addr: tx,
                rx_addr: rx,
                tx: tx_pa,
                rx: rx_pa,
                size,
                rx_state: RxState::Empty,
            }),
        );
        Ok(Regs::with_func(func::SUCCESS_32))
    }

    /// The VM, TX and RX addresses and page count of an Endpoint RX/TX
    /// descriptor in the hypervisor's TX buffer (DEN0077 v1.2 §13.5,
    /// FFA_RXTX_MAP "forwarded by a hypervisor", and the Endpoint RX/TX
    /// descriptor table: endpoint ID u16, reserved u16, offsets u32 of the
    /// RX and then the TX composite memory region descriptor). As Hafnium
    /// reads it: each composite names one constituent, RX and TX have the
    /// same page count. Anything else, a hypervisor without a TX buffer,
    /// or an ID that is not a VM's (0, bit 15 set) is INVALID_PARAMETERS.
    fn vm_rxtx(&mut self) -> Result<(Endpoint, u64, u64, u64), FfaError> {
        let own = self
            .buffers(Endpoint::NormalWorld(VmId::HYPERVISOR))
            .ok_or(FfaError::InvalidParameters)?;
        let [head, offsets, ..] = self.words(own, 0)?;
        let vm = head as u16;
        // Bytes 2-3 are reserved; the RX and TX composites' offsets follow.
        if vm == 0 || is_secure_id(vm) || head & 0xFFFF_0000 != 0 {
            return Err(FfaError::InvalidParameters);
        }
        let (rx, rx_pages) = self.endpoint_region(own, (head >> 32) as u32)?;
        let (tx, tx_pages) = self.endpoint_region(own, offsets as u32)?;
        if rx_pages != tx_pages {
            return Err(FfaError::InvalidParameters);
        }
        Ok((Endpoint::NormalWorld(VmId::new(vm)), tx, rx, tx_pages))
    }

    /// One composite memory region descriptor of an Endpoint RX/TX
    /// descriptor, at `offset` in the hypervisor's TX: one constituent,
    /// reserved fields zero; (address, pages). (The address is checked
    /// as any buffer's: normal-world RAM the VM owns.)
    #[inline(never)]
    fn endpoint_region(&mut self, own: Buffers, offset: u32) -> Result<(u64, u64), FfaError> {
        let o = offset as u64;
        if !o.is_multiple_of(8) || o < 12 || o + 32 > own.size {
            return Err(FfaError::InvalidParameters);
        }
        // total pages u32, range count u32, reserved u64; address u64,
        // pages u32, reserved u32.
        let [counts, reserved, addr, pages] = self.words(own, o)?;
        if counts != (pages & 0xFFFF_FFFF) | 1 << 32 || reserved != 0 || pages >> 32 != 0 {
            return Err(FfaError::InvalidParameters);
        }
        Ok((addr, pages))
    }

    /// Four little-endian u64 words at `offset` in the buffers' TX page
    /// (which is at least a page: `offset` + 32 lies inside it).
    fn words(&mut self, own: Buffers, offset: u64) -> Result<[u64; 4], FfaError> {
        let mut b = [[0u8; 8]; 4];
        self.platform
            .read(Pa(own.tx.0 + offset), b.as_flattened_mut())
            .map_err(|_| FfaError::InvalidParameters)?;
        Ok(b.map(u64::from_le_bytes))
    }

    /// FFA_RXTX_UNMAP (§13.6): w1[31:16] names the endpoint (a hypervisor's
    /// VM); it must be the caller's own ID or 0.
    pub(crate) fn rxtx_unmap(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let named = (args.w(1) >> 16) as u16;
        if named != 0 && named != self.id_of(from) {
            return Err(FfaError::InvalidParameters);
        }
        let b = self.buffers(from).ok_or(FfaError::InvalidParameters)?;
        if let Endpoint::NormalWorld(_) = from {
            self.platform.unmap_ns(b.tx, b.size);
            self.platform.unmap_ns(b.rx, b.size);
        }
        self.set_buffers(from, None);
        Ok(Regs::with_func(func::SUCCESS_32))
    }

    /// FFA_RX_RELEASE (§13.7): the consumer gives its RX buffer back.
    pub(crate) fn rx_release(&mut self, from: Endpoint, _args: &Regs) -> Result<Regs, FfaError> {
        let b = self.buffers(from).ok_or(FfaError::Denied)?;
        if b.rx_state == RxState::Empty {
            return Err(FfaError::Denied);
        }
        self.set_rx_state(from, RxState::Empty);
        Ok(Regs::with_func(func::SUCCESS_32))
    }

    /// FFA_RX_ACQUIRE (§13.8, v1.1): the hypervisor takes a VM's RX buffer
    /// from the SPMC (w1[15:0] = the VM). Only at the normal-world instance.
    pub(crate) fn rx_acquire(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let Endpoint::NormalWorld(_) = from else {
            return Err(FfaError::NotSupported);
        };
        let vm = Endpoint::NormalWorld(VmId::new(args.w(1) as u16));
        let b = self.buffers(vm).ok_or(FfaError::InvalidParameters)?;
        if b.rx_state != RxState::Empty {
            return Err(FfaError::Denied);
        }
        self.set_rx_state(vm, RxState::Acquired);
        Ok(Regs::with_func(func::SUCCESS_32))
    }

    /// The (partition slot, UUID) pairs a discovery for `uuid` returns to `from`.
    pub(crate) fn discoverable(&self, from: Endpoint, uuid: Uuid) -> Vec<(SlotId, Uuid)> {
        let mut out = Vec::new();
        for (slot, p) in self.partitions.slots() {
            if matches!(p.state, PartitionState::Aborted | PartitionState::Free) {
                continue;
            }
            // Discovery shows each VM what it may reach, nothing more.
            let visible = match from {
                Endpoint::NormalWorld(vm) => {
                    self.config().policy.may_reach(vm, p.id().raw(), p.kind)
                }
                Endpoint::Partition(me) => match p.kind {
                    crate::policy::Kind::Static => true,
                    kind => self.partitions[me].kind == kind,
                },
            };
            if !visible {
                continue;
            }
            for u in &p.config.uuids {
                if uuid.is_nil() || *u == uuid {
                    out.push((slot, *u));
                }
            }
        }
        out
    }

    /// A partition's properties for its information descriptor, as `caller`
    /// (at its negotiated version) sees them: DEN0077 v1.2 §6.2, Table 6.2
    /// "Partition properties" (v1.0: Table 8.25, bits [31:3] reserved).
    ///
    /// | bit | meaning | here |
    /// |---|---|---|
    /// | 0 | receives direct requests | manifest `messaging-method` |
    /// | 1 | sends direct requests | manifest; 0 for a normal-world caller |
    /// | 2 | sends and receives indirect messages | manifest, if the partition is v1.1+ |
    /// | 3 | receives notifications | manifest `notification-support` (spmc::notifications) |
    /// | 5:4 | ID type | 0b00, a PE endpoint |
    /// | 6, 7 | VM created / destroyed messages | manifest `vm-availability-messages`, only at the normal-world instance and only with bit 0 (reserved otherwise) |
    /// | 8 | AArch64 | 1: every partition runs AArch64 (the manifest's `execution-state` must be 0) |
    /// | 9, 10 | receives / sends FFA_MSG_SEND_DIRECT_REQ2 | manifest, if the partition is v1.2+; bit 10 is 0 for a normal-world caller |
    /// | 31:11 | reserved (MBZ) | 0 (v1.2 defines no migration or other bit there) |
    ///
    /// Where the table leaves room, as Hafnium does: a partition never sends
    /// a direct request to the normal world (`sp-to-normal-world-denied`),
    /// so a normal-world caller sees bits 1 and 10 clear; bits a partition's
    /// own version does not have (indirect messages before v1.1, REQ2 before
    /// v1.2) are clear; then the caller's version hides what it does not
    /// know (v1.0: bits [31:3]; v1.1: bits [31:9]).
    fn properties(&self, slot: SlotId, caller: Endpoint, version: Version) -> u32 {
        let p = &self.partitions[slot];
        let c = &p.config;
        let nwd = matches!(caller, Endpoint::NormalWorld(_));
        let mut props = c.messaging.0;
        if p.version < Version::V1_1 {
            props &= !Messaging::INDIRECT;
        }
        if p.version < Version::V1_2 {
            props &= !(Messaging::DIRECT2_RECV | Messaging::DIRECT2_SEND);
        }
        if nwd {
            props &= !(Messaging::DIRECT_SEND | Messaging::DIRECT2_SEND);
            if props & Messaging::DIRECT_RECV != 0 {
                props |= (c.vm_availability & 3) << 6;
            }
        }
        props |= PROP_AARCH64;
        if c.notification_support && p.version >= Version::V1_1 {
            props |= PROP_NOTIFICATIONS;
        }
        if version < Version::V1_1 {
            props & V1_0_PROPERTIES
        } else if version < Version::V1_2 {
            props & V1_1_PROPERTIES
        } else {
            props & V1_2_PROPERTIES
        }
    }

    /// FFA_PARTITION_INFO_GET (§13.8): descriptors into the caller's RX buffer,
    /// sized for the caller's version; or just the count (flag bit 0, v1.1+).
    pub(crate) fn partition_info_get(
        &mut self,
        from: Endpoint,
        args: &Regs,
    ) -> Result<Regs, FfaError> {
        let version = self.version_of(from);
        let uuid = Uuid::from_words([args.w(1), args.w(2), args.w(3), args.w(4)]);
        let flags = args.w(5);
        if flags & !1 != 0 || (flags != 0 && version < Version::V1_1) {
            return Err(FfaError::InvalidParameters);
        }
        let found = self.discoverable(from, uuid);
        if found.is_empty() {
            return Err(FfaError::InvalidParameters);
        }
        let desc = if version >= Version::V1_1 {
            PART_INFO_SIZE
        } else {
            PART_INFO_SIZE_V1_0
        };
        let mut ok = Regs::success32(found.len() as u32);
        if flags & 1 != 0 {
            // Count only: w3 is reserved (MBZ) when flag bit 0 is set
            // (§13.8, FFA_SUCCESS encoding; Hafnium answers 0); the size comes
            // only with the descriptors.
            return Ok(ok);
        }
        if version >= Version::V1_1 {
            ok.0[3] = desc as u64;
        }
        let b = self.buffers(from).ok_or(FfaError::Busy)?;
        if b.rx_state != RxState::Empty {
            return Err(FfaError::Busy);
        }
        if (found.len() * desc) as u64 > b.size {
            return Err(FfaError::NoMemory);
        }
        let mut out = Vec::with_capacity(found.len() * desc);
        for (slot, u) in &found {
            let p = &self.partitions[*slot];
            out.extend_from_slice(&p.id().raw().to_le_bytes());
            out.extend_from_slice(&p.vcpu_count.to_le_bytes());
            out.extend_from_slice(&self.properties(*slot, from, version).to_le_bytes());
            if desc == PART_INFO_SIZE {
                // Table 6.1: the UUID field is reserved (MBZ) when the
                // caller named a UUID, and carries the UUID for the nil one.
                let shown = if uuid.is_nil() { u.to_bytes() } else { [0; 16] };
                out.extend_from_slice(&shown);
            }
        }
        self.platform
            .write(b.rx, &out)
            .map_err(|_| FfaError::Aborted)?;
        self.set_rx_state(from, RxState::Full);
        Ok(ok)
    }

    /// FFA_PARTITION_INFO_GET_REGS (§13.9, v1.2): descriptors in x3-x17, five
    /// at most per call, from the start index in x3[15:0].
    pub(crate) fn partition_info_get_regs(
        &mut self,
        from: Endpoint,
        args: &Regs,
    ) -> Result<Regs, FfaError> {
        let uuid = Uuid::from_u64_pair(args.x(1), args.x(2));
        let start = (args.x(3) & 0xFFFF) as usize;
        let tag = (args.x(3) >> 16) & 0xFFFF;
        if tag != 0 {
            // The SPMC never hands out a tag: the list cannot change mid-walk.
            return Err(FfaError::Retry);
        }
        let found = self.discoverable(from, uuid);
        if found.is_empty() || start >= found.len() {
            return Err(FfaError::InvalidParameters);
        }
        let last = found.len() - 1;
        let end = (start + 5).min(found.len());
        let mut r = Regs::with_func(func::SUCCESS_64);
        r.0[2] = last as u64 | ((end - 1) as u64) << 16 | (PART_INFO_SIZE as u64) << 48;
        for (i, (slot, u)) in found[start..end].iter().enumerate() {
            let p = &self.partitions[*slot];
            let (lo, hi) = u.to_u64_pair();
            r.0[3 + i * 3] = p.id().raw() as u64
                | (p.vcpu_count as u64) << 16
                | (self.properties(*slot, from, self.version_of(from)) as u64) << 32;
            r.0[4 + i * 3] = lo;
            r.0[5 + i * 3] = hi;
        }
        Ok(r)
    }

    /// FFA_MSG_SEND2 (§15.6, v1.1): copies the message in the sender's TX
    /// buffer into the receiver's RX buffer. A normal-world sender names
    /// itself in w1[31:16] when a hypervisor forwards for a VM (0 otherwise).
    pub(crate) fn msg_send2(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        if args.w(2) & !0x2 != 0 {
            // Only bit 1 (delay the schedule receiver interrupt) is defined.
            return Err(FfaError::InvalidParameters);
        }
        let sender_id = self.id_of(from);
        if let Endpoint::Partition(s) = from
            && (args.w(1) != 0 || !self.partitions[s].config.messaging.has(Messaging::INDIRECT))
        {
            return Err(if args.w(1) != 0 {
                FfaError::InvalidParameters
            } else {
                FfaError::Denied
            });
        }
        let tx = self.buffers(from).ok_or(FfaError::InvalidParameters)?;
        let mut hdr = [0u8; MSG_HEADER_V1_2 as usize];
        let sender_version = self.version_of(from);
        let hdr_len = if sender_version >= Version::V1_2 {
            MSG_HEADER_V1_2
        } else {
            MSG_HEADER_V1_1
        };
        self.platform
            .read(tx.tx, &mut hdr[..hdr_len as usize])
            .map_err(|_| FfaError::InvalidParameters)?;
        let le32 = |o: usize| u32::from_le_bytes([hdr[o], hdr[o + 1], hdr[o + 2], hdr[o + 3]]);
        let (flags, offset, size) = (le32(0), le32(8), le32(16));
        let receiver = u16::from_le_bytes([hdr[12], hdr[13]]);
        let sender = u16::from_le_bytes([hdr[14], hdr[15]]);
        let uuid = if hdr_len == MSG_HEADER_V1_2 {
            hdr[24..40].try_into().unwrap_or([0; 16])
        } else {
            [0; 16]
        };
        if flags != 0
            || sender != sender_id
            || offset < hdr_len
            || size == 0
            || (offset as u64)
                .checked_add(size as u64)
                .is_none_or(|e| e > tx.size)
            || receiver == sender
        {
            return Err(FfaError::InvalidParameters);
        }
        let receiver = match from {
            Endpoint::NormalWorld(vm) if is_secure_id(receiver) => {
                let slot = self.route_for_vm(vm, receiver)?;
                self.partitions[slot].id().raw()
            }
            _ => receiver,
        };
        let to = if is_secure_id(receiver) {
            let slot = self
                .slot_of(PartId::new(receiver))
                .ok_or(FfaError::InvalidParameters)?;
            let p = &self.partitions[slot];
            if p.state == PartitionState::Aborted {
                return Err(FfaError::Aborted);
            }
            if !p.config.messaging.has(Messaging::INDIRECT) {
                return Err(FfaError::Denied);
            }
            Endpoint::Partition(slot)
        } else {
            if let Endpoint::NormalWorld(_) = from {
                // Between normal-world endpoints the hypervisor delivers, not the SPMC.
                return Err(FfaError::InvalidParameters);
            }
            Endpoint::NormalWorld(VmId::new(receiver))
        };
        let rx = self.buffers(to).ok_or(FfaError::Denied)?;
        if rx.rx_state != RxState::Empty {
            return Err(FfaError::Busy);
        }
        let out_hdr = if self.version_of(to) >= Version::V1_2 {
            MSG_HEADER_V1_2
        } else {
            MSG_HEADER_V1_1
        };
        if (out_hdr as u64) + size as u64 > rx.size {
            return Err(FfaError::NoMemory);
        }
        let mut h = [0u8; MSG_HEADER_V1_2 as usize];
        h[8..12].copy_from_slice(&out_hdr.to_le_bytes());
        h[12..14].copy_from_slice(&receiver.to_le_bytes());
        h[14..16].copy_from_slice(&sender.to_le_bytes());
        h[16..20].copy_from_slice(&size.to_le_bytes());
        h[24..40].copy_from_slice(&uuid);
        self.platform
            .write(rx.rx, &h[..out_hdr as usize])
            .map_err(|_| FfaError::Aborted)?;
        self.platform
            .copy(
                Pa(rx.rx.0 + out_hdr as u64),
                Pa(tx.tx.0 + offset as u64),
                size as u64,
            )
            .map_err(|_| FfaError::Aborted)?;
        self.set_rx_state(to, RxState::Full);
        // The receiver learns of it through the SPM framework notification
        // "RX buffer full" (DEN0077 v1.2 §10.5.1), if it has bitmaps.
        if self
            .notifications
            .set_framework(receiver, crate::notifications::FWK_RX_FULL)
        {
            // w2 bit 1: delay the schedule receiver interrupt (§15.6).
            self.notify_scheduler(receiver, args.w(2) & 0x2 != 0);
        }
        debug!("indirect message {sender:#06x} -> {receiver:#06x}, {size} bytes");
        Ok(Regs::with_func(func::SUCCESS_32))
    }

    /// FFA_CONSOLE_LOG (§13.11, v1.2): characters in w2-w7 (32-bit, at most
    /// 24) or x2-x17 (64-bit, at most 128), printed a line at a time.
    ///
    /// What one call prints under the one lock is bounded: at most one line
    /// of at most `CONSOLE_LINE` characters. A line break after the call
    /// already printed a line is kept as a space (the text comes out with
    /// the next line), and empty lines print nothing, so a partition cannot
    /// turn 128 line breaks into 128 lines on the console.
    pub(crate) fn console_log(&mut self, from: Endpoint, args: &Regs) -> Result<Regs, FfaError> {
        let Endpoint::Partition(s) = from else {
            return Err(FfaError::NotSupported);
        };
        let wide = args.func() == func::CONSOLE_LOG_64;
        let (per_reg, max) = if wide { (8, 128) } else { (4, 24) };
        let count = if wide { args.x(1) } else { args.w(1) as u64 } as usize;
        if count == 0 || count > max {
            return Err(FfaError::InvalidParameters);
        }
        let id: PartitionId = self.partitions[s].id().raw();
        // A VM's own TEE (an instance) prints at debug level: what a VM can
        // cause must not flood the SPMC's log (a VM makes as many as it likes).
        let level = if self.partitions[s].kind == crate::policy::Kind::Static {
            log::Level::Info
        } else {
            log::Level::Debug
        };
        let mut printed = false;
        for i in 0..count {
            let mut byte = (args.x(2 + i / per_reg) >> ((i % per_reg) * 8)) as u8;
            let p = &mut self.partitions[s];
            if byte == b'\n' && printed {
                byte = b' ';
            }
            if byte == b'\n' || p.console.len() >= CONSOLE_LINE {
                // Only spaces can end it (nothing else blank is kept).
                let line = p.console.trim_end_matches(' ');
                if !line.is_empty() {
                    log::log!(level, "[{id:#06x}] {line}");
                    printed = true;
                }
                p.console.clear();
                if byte == b'\n' {
                    continue;
                }
            }
            let c = if byte.is_ascii_graphic() || byte == b' ' {
                byte as char
            } else {
                '.'
            };
            if byte != 0 {
                p.console.push(c);
            }
        }
        Ok(Regs::with_func(func::SUCCESS_32))
    }
}
