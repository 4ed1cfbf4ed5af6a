//! The secure memory map (`Spmc::memory_map`, issue 16 item 5) with the
//! shipped SPMC manifest: every range the SPMC manages appears once, no two
//! rows overlap, the pool's rows add up to the pool, and an instance appears
//! when its VM is created and goes when it is destroyed.

mod common;

use common::world::*;
use spmc::ids::VmId;
use spmc::memmap::{HEADER, Owner, Row, first_overlap};

const SP1: u16 = 0x8001;

fn pool_rows(rows: &[Row], pool: spmc::manifest::MemRange) -> Vec<&Row> {
    rows.iter()
        .filter(|r| r.base >= pool.base && r.end() <= pool.base + pool.size)
        .collect()
}

#[test]
fn the_boot_map_shows_image_packages_templates_partitions_and_free_pool() {
    let mut s = policy_world(None);
    let pool = s.config().secure_memory.unwrap();
    // The platform's rows, as platform-qemu passes them: one below
    // everything, one above (the heap it takes from the pool's end; this
    // pool keeps those pages, so it lies past it here).
    let extra = [
        Row {
            base: 0x0e00_0000,
            size: 0x10_0000,
            owner: Owner::Firmware,
            what: "trusted SRAM".into(),
        },
        Row {
            base: pool.base + pool.size,
            size: 0x10_0000,
            owner: Owner::Spmc,
            what: "heap".into(),
        },
    ];
    let rows = s.memory_map(&extra);
    let table: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    let shown = table.join("\n");
    println!("{HEADER}\n{shown}");

    assert!(rows.windows(2).all(|w| w[0].base <= w[1].base), "{shown}");
    assert_eq!(first_overlap(&rows), None, "{shown}");
    // The platform's rows, the image, one row per package.
    assert_eq!(rows[0], extra[0]);
    assert_eq!(rows.last(), Some(&extra[1]));
    assert!(rows.iter().any(|r| r.owner == Owner::Spmc
        && r.base == 0x0e10_0000
        && r.size == 0x20_0000
        && r.what.starts_with("image")));
    for e in &s.config().partitions.clone() {
        let row = rows
            .iter()
            .find(|r| r.base == e.package)
            .unwrap_or_else(|| panic!("package `{}` missing:\n{shown}", e.name));
        assert!(row.what.contains(&format!("`{}`", e.name)), "{shown}");
        // Header, manifest at 0x1000, image at 0x4000 (fake 8200 bytes).
        assert_eq!(row.size, 0x7000, "{shown}");
    }
    // The template's package is its pristine image, owned by the template.
    let vtee = s
        .config()
        .partitions
        .iter()
        .find(|e| e.name == "vtee")
        .unwrap()
        .package;
    let row = rows.iter().find(|r| r.base == vtee).unwrap();
    assert_eq!(row.owner, Owner::Template(TEMPLATE));
    assert!(row.what.contains("pristine"));
    // Every static partition's memory, with the IPA it sees it at.
    let sp1: Vec<&Row> = rows
        .iter()
        .filter(|r| r.owner == Owner::Partition(SP1))
        .collect();
    assert_eq!(sp1.len(), 2, "image+RAM and region `ram`:\n{shown}");
    assert!(sp1[0].what.contains("IPA 0x10000000"), "{shown}");
    assert!(
        sp1[1].what.contains("region `ram` at IPA 0x10040000"),
        "{shown}"
    );
    assert_eq!(sp1[1].size, 32 * 4096);
    let statics = rows
        .iter()
        .filter(|r| matches!(r.owner, Owner::Partition(_)))
        .count();
    assert_eq!(statics, 2 * s.partitions().len(), "{shown}");
    // The pool is partitions' memory plus free runs, nothing else, nothing missing.
    let in_pool = pool_rows(&rows, pool);
    assert!(
        in_pool
            .iter()
            .all(|r| matches!(r.owner, Owner::Partition(_) | Owner::Free))
    );
    assert_eq!(
        in_pool.iter().map(|r| r.size).sum::<u64>(),
        pool.size,
        "{shown}"
    );
    assert_eq!(
        in_pool
            .iter()
            .filter(|r| r.owner == Owner::Free)
            .map(|r| r.size)
            .sum::<u64>(),
        s.pool().unwrap().free_pages() * 4096
    );
    // One line per row, aligned under the heading.
    assert!(
        table[1].starts_with("0x0e100000 0x0e300000   2048 KiB  SPMC"),
        "{shown}"
    );
    assert_eq!(HEADER.find("owner"), table[1].find("SPMC"));
}

#[test]
fn an_instance_appears_with_its_vm_and_goes_with_it() {
    let mut s = policy_world(None);
    let before = s.memory_map(&[]);
    assert!(
        !before
            .iter()
            .any(|r| matches!(r.owner, Owner::Instance { .. }))
    );
    assert_eq!(create_vm(&mut s, 2), 0);
    let id = instance_id(&s, 2).unwrap();
    let rows = s.memory_map(&[]);
    let mine: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.owner
                == Owner::Instance {
                    id,
                    vm: VmId::new(2),
                }
        })
        .collect();
    assert!(!mine.is_empty());
    let pool = s.config().secure_memory.unwrap();
    assert!(mine.iter().all(|r| pool_rows(&rows, pool).contains(r)));
    assert_eq!(first_overlap(&rows), None);
    assert!(
        rows.iter()
            .any(|r| r.to_string().contains(&format!("SP {id:#06x} VM 2")))
    );
    assert_eq!(destroy_vm(&mut s, 2), 0);
    assert_eq!(s.memory_map(&[]), before, "the pool is as it was");
}

#[test]
fn overlapping_rows_are_found() {
    let row = |base, size| Row {
        base,
        size,
        owner: Owner::Free,
        what: String::new(),
    };
    assert_eq!(first_overlap(&[row(0, 0x1000), row(0x1000, 0x1000)]), None);
    let rows = [row(0, 0x1000), row(0x1000, 0x2000), row(0x2fff, 1)];
    assert_eq!(first_overlap(&rows), Some((&rows[1], &rows[2])));
}
