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

/// The root node's `ffa-version` in the manifest the boot information
/// points at (FF-A manifest binding; the FDT's cells are big-endian), or
/// `None` without one. Only the root's own properties are read, which dtc
/// writes before any subnode.
pub fn manifest_version(blob: u64) -> Option<u32> {
    if !has_manifest(blob) {
        return None;
    }
    let fdt = manifest_address(blob);
    let be = |off: u64| read_u32_le(fdt + off).swap_bytes();
    let (size, structs, strings) = (be(4) as u64, be(8) as u64, be(12) as u64);
    const BEGIN_NODE: u32 = 1;
    const PROP: u32 = 3;
    const NOP: u32 = 4;
    if be(structs) != BEGIN_NODE {
        return None;
    }
    // The root's name is empty: its NUL and padding take one word.
    let mut at = structs + 8;
    const NAME: &[u8] = b"ffa-version\0";
    for _ in 0..64 {
        if at + 12 > size {
            return None;
        }
        match be(at) {
            PROP => {
                let (len, name) = (be(at + 4) as u64, be(at + 8) as u64);
                let matches = strings + name + NAME.len() as u64 <= size
                    && NAME
                        .iter()
                        .enumerate()
                        .all(|(i, c)| byte(fdt + strings + name + i as u64) == *c);
                if matches && len == 4 {
                    return Some(be(at + 12));
                }
                at += 12 + len.next_multiple_of(4);
            }
            NOP => at += 4,
            _ => return None,
        }
    }
    None
}

/// Reads one byte of the boot information.
fn byte(addr: u64) -> u8 {
    // SAFETY: as in `read_u32_le`: an address in the manifest the SPMC
    // handed us; a byte read has no alignment needs.
    unsafe { (addr as *const u8).read_volatile() }
}
