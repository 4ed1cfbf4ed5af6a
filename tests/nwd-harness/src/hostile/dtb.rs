//! Where the normal world's RAM ends, read from the device tree QEMU puts at
//! the start of RAM (0x4000_0000 on virt, where TF-A's QEMU port also reads
//! it): the `reg` of the first `memory` node (two address cells, two size
//! cells, as virt declares). The checks of buffers and shares beyond the RAM
//! use it, so they hold for any `-m`.

/// QEMU virt's RAM base, where its device tree is.
const DTB: usize = 0x4000_0000;
/// FDT tokens (devicetree specification v0.4, §5.4).
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

/// A big-endian word of the device tree at byte offset `off`.
fn be32(off: usize) -> u32 {
    let p = (DTB + off) as *const u32;
    // SAFETY: the device tree lies in normal-world RAM that the harness's
    // boot map maps (Normal memory) and nothing writes while we read; the
    // offsets come from its header and stay below its total size (checked
    // by the caller), 4-byte aligned as the format guarantees.
    u32::from_be(unsafe { p.read_volatile() })
}

/// A byte of the device tree.
fn byte(off: usize) -> u8 {
    let p = (DTB + off) as *const u8;
    // SAFETY: as for `be32`.
    unsafe { p.read_volatile() }
}

/// Whether the NUL-terminated string at `off` starts with `prefix` (and,
/// if `whole`, ends right after it or at an `@`).
fn name_is(off: usize, prefix: &[u8], whole: bool) -> bool {
    for (i, c) in prefix.iter().enumerate() {
        if byte(off + i) != *c {
            return false;
        }
    }
    let next = byte(off + prefix.len());
    !whole || next == 0 || next == b'@'
}

/// The end of the first `memory` node's first range, if the device tree is
/// there and says so.
pub fn ram_end() -> Option<u64> {
    if be32(0) != 0xd00d_feed {
        return None;
    }
    let total = be32(4) as usize;
    let structs = be32(8) as usize;
    let strings = be32(12) as usize;
    if total > 0x10_0000 || structs >= total || strings >= total {
        return None;
    }
    let mut off = structs;
    let mut depth = 0usize;
    let mut in_memory = false;
    while off + 8 <= total {
        let token = be32(off);
        off += 4;
        match token {
            BEGIN_NODE => {
                depth += 1;
                in_memory = depth == 2 && name_is(off, b"memory", true);
                while off < total && byte(off) != 0 {
                    off += 1;
                }
                off = (off + 4) & !3;
            }
            END_NODE => {
                depth = depth.saturating_sub(1);
                in_memory = false;
            }
            PROP => {
                let len = be32(off) as usize;
                let name = be32(off + 4) as usize;
                let value = off + 8;
                if in_memory
                    && len >= 16
                    && strings + name < total
                    && name_is(strings + name, b"reg", true)
                {
                    let base = (be32(value) as u64) << 32 | be32(value + 4) as u64;
                    let size = (be32(value + 8) as u64) << 32 | be32(value + 12) as u64;
                    return base.checked_add(size);
                }
                off = (value + len + 3) & !3;
            }
            NOP => {}
            END => return None,
            _ => return None,
        }
    }
    None
}
