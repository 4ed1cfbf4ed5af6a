//! The FF-A boot information blob (v1.2 §5.4) that x0 points at on entry
//! when the manifest asks for it (sp2).
//!
//! Header: u32 signature (0x0FFA), u32 version, u32 blob size, u32
//! descriptor size, u32 descriptor count, u32 offset of the descriptors,
//! u64 reserved. Descriptor (32 bytes): 16-byte name, u8 type, u8 reserved,
//! u16 flags, u32 size, u64 IPA of the contents.

const SIGNATURE: u32 = 0x0FFA;
const FDT_MAGIC: u32 = 0xd00d_feed;
const DESCRIPTOR_SIZE: u64 = 32;

/// Whether `blob` (x0 at boot) is a boot information blob whose first
/// descriptor's contents start with the FDT magic (the partition manifest).
/// The descriptor's type and flags are not checked. Reads nothing when
/// `blob` is 0.
pub fn has_manifest(blob: u64) -> bool {
    let contents = manifest_address(blob);
    contents != 0 && read_u32_le(contents).swap_bytes() == FDT_MAGIC
}

/// The contents address of `blob`'s first descriptor, or 0 if `blob` is not
/// a boot information blob with a descriptor.
pub fn manifest_address(blob: u64) -> u64 {
    if blob == 0 || read_u32_le(blob) != SIGNATURE {
        return 0;
    }
    let size = read_u32_le(blob + 8) as u64;
    let count = read_u32_le(blob + 16);
    let offset = read_u32_le(blob + 20) as u64;
    if count == 0 || offset + DESCRIPTOR_SIZE > size {
        return 0;
    }
    read_u32_le(blob + offset + 24) as u64 | (read_u32_le(blob + offset + 28) as u64) << 32
}

/// Reads a little-endian u32 byte by byte (the blob's alignment is not ours
/// to trust).
fn read_u32_le(addr: u64) -> u32 {
    let mut v = 0;
    for i in 0..4 {
        let p = (addr + i) as *const u8;
        // SAFETY: the SPMC handed us this address as boot information in our
        // own address space; a byte read has no alignment needs, and if the
        // SPMC got it wrong the access faults and the partition is aborted,
        // which is what the test then reports.
        let b = unsafe { p.read_volatile() };
        v |= (b as u32) << (8 * i);
    }
    v
}
