//! The manifest parsers: the SPMC manifest (`spmc::manifest`), a partition
//! manifest (`spmc::sp_manifest`) and the partition package header. The
//! first byte picks the parser; the rest is the blob. Never a panic; what is
//! accepted obeys the limits the parsers promise.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spmc::sp_manifest::{self, PACKAGE_HEADER_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&which, blob)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(total) = spmc::manifest::fdt_total_size(blob) {
                assert!(total <= blob.len());
            }
            if let Ok(c) = spmc::manifest::parse(blob) {
                for p in &c.partitions {
                    assert!(!p.name.is_empty());
                }
                if let Some(m) = c.secure_memory {
                    assert!(m.end().is_some(), "secure memory wraps");
                }
            }
        }
        1 => {
            if let Ok(c) = sp_manifest::parse_manifest(blob, "fuzz") {
                assert!(!c.uuids.is_empty() && c.uuids.iter().all(|u| !u.is_nil()));
                assert!(c.id & 0x8000 != 0, "a partition ID has bit 15 set");
                assert!(c.vcpu_count > 0);
            }
        }
        _ => {
            if blob.len() < PACKAGE_HEADER_SIZE + 8 {
                return;
            }
            let (hdr, rest) = blob.split_at(PACKAGE_HEADER_SIZE);
            let max = u64::from_le_bytes(rest[..8].try_into().unwrap());
            let hdr: &[u8; PACKAGE_HEADER_SIZE] = hdr.try_into().unwrap();
            if let Ok(h) = sp_manifest::parse_package_header(hdr, max) {
                assert!(h.pm_offset as u64 + h.pm_size as u64 <= max);
                assert!(h.img_offset as u64 + h.img_size as u64 <= max);
                assert!(h.img_size > 0);
            }
        }
    }
});
