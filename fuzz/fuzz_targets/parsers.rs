//! The memory-management descriptor parsers (DEN0077 v1.2 §10-11, DEN0140):
//! `desc::parse` in both layouts for a send and for a retrieve request, the
//! relinquish parser, and the response encoder round trip. Never a panic;
//! what a parser accepts obeys its stated limits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spmc::addr::PAGE_SIZE;
use spmc::mem::desc::{self, Layout, Purpose};

fuzz_target!(|data: &[u8]| {
    for layout in [Layout::V1_0, Layout::V1_1] {
        for purpose in [Purpose::Send, Purpose::Retrieve] {
            let Ok(d) = desc::parse(data, layout, purpose) else {
                continue;
            };
            // A retrieve request may name none (the hypervisor retrieve request).
            assert!(d.receivers.len() <= desc::MAX_RECEIVERS);
            assert!(purpose == Purpose::Retrieve || !d.receivers.is_empty());
            assert!(d.emad_size == 16 || d.emad_size == 32);
            if purpose == Purpose::Retrieve {
                continue;
            }
            // A send: ranges non-empty, page aligned, not wrapping, not
            // overlapping, adding up to the total, within the limit.
            assert!(!d.ranges.is_empty());
            assert!(d.total_pages > 0 && d.total_pages <= desc::MAX_PAGES);
            assert_eq!(d.ranges.iter().map(|r| r.pages).sum::<u64>(), d.total_pages);
            let mut sorted = d.ranges.clone();
            sorted.sort_by_key(|r| r.addr);
            for r in &sorted {
                assert!(r.pages > 0 && r.addr % PAGE_SIZE == 0);
                assert!(r.addr.checked_add(r.pages * PAGE_SIZE).is_some());
            }
            for w in sorted.windows(2) {
                assert!(w[0].end() <= w[1].addr, "overlapping ranges accepted");
            }
            // What the SPMC would answer a retriever (or a hypervisor, all the
            // receivers) parses back to the same
            // memory, sender, handle and tag.
            for emad in [16, 32] {
                let r = desc::Response {
                    sender: d.sender,
                    attributes: d.attributes,
                    flags: d.flags,
                    handle: d.handle,
                    tag: d.tag,
                    receivers: &d.receivers,
                };
                // The encoder allocates (fallibly): a full heap is NO_MEMORY.
                let Ok(bytes) = desc::encode_response(&r, d.ranges.iter().copied(), layout, emad)
                else {
                    continue;
                };
                let back = desc::parse(&bytes.to_vec(), layout, Purpose::Send)
                    .expect("the SPMC's own response parses");
                assert_eq!(back.ranges, d.ranges);
                assert_eq!(back.sender, d.sender);
                assert_eq!((back.handle, back.tag), (d.handle, d.tag));
                // Every receiver (the hypervisor retrieve request's form).
                assert_eq!(back.receivers.len(), d.receivers.len());
                for (b, r) in back.receivers.iter().zip(&d.receivers) {
                    assert_eq!((b.id, b.perms), (r.id, r.perms));
                }
            }
        }
    }
    if let Ok(r) = desc::parse_relinquish(data) {
        assert!(!r.endpoints().is_empty() && r.endpoints().len() <= desc::MAX_RECEIVERS);
        assert!(data.len() >= 16 + 2 * r.endpoints().len());
    }
});
