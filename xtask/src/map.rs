//! `cargo xtask map`: the secure memory map from the manifests, without
//! booting (issue 16, item 5; docs/memory-map.md).
//!
//! It reads the DTS sources the build compiles (the SPMC manifest, TF-A's
//! TB_FW_CONFIG, `sp_layout.json` and each partition manifest under
//! `tf-a-integration/qemu/`) and the test partition images if they are
//! built, lays memory out the way the SPMC does at boot (its image, the
//! packages where BL2 loads them, then each partition's memory taken
//! first-fit from the pool in manifest order, the heap's share at the pool's
//! end) and prints the same table the SPMC prints at boot
//! (`spmc::memmap`). It fails, naming the rows, when two ranges overlap,
//! when a range lies outside QEMU virt's secure DRAM, when the partitions do
//! not fit in the pool, or when TB_FW_CONFIG loads a package elsewhere than
//! the SPMC manifest says.

use std::fs;
use std::path::Path;

use crate::sh::{self, Result};

/// QEMU virt's secure DRAM (`platform-qemu/src/board.rs` SECURE_RAM).
pub const SECURE_RAM: (u64, u64) = (0x0e00_0000, 0x0f00_0000);
/// Trusted SRAM: BL1, BL2, BL31 and the SPMC manifest
/// (`platform-qemu/src/platform.rs` TRUSTED_SRAM).
pub const TRUSTED_SRAM: (u64, u64) = (0x0e00_0000, 0x0e10_0000);
/// The heap's share of the pool, taken from its end when the pool has at
/// least four times as much (`platform-qemu/src/platform.rs` HEAP_FROM_POOL).
pub const HEAP_FROM_POOL: u64 = 1 << 20;
/// The static heap in the SPMC image (`arch-aarch64/src/heap.rs` HEAP_SIZE).
pub const STATIC_HEAP_KIB: u64 = 512;
/// sptool's default offset of the image in a package (the manifest, at
/// 0x1000, ends before it).
const IMG_OFFSET: u64 = 0x4000;
const PAGE: u64 = 4096;

// ----------------------------------------------------------------------
// A DTS reader for the subset the manifests use: nodes, `name = <cells>,
// <cells>;`, `name = "string";`, `name;`, C and C++ comments.
// ----------------------------------------------------------------------

/// A property value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Every cell of every `<…>` group, in order.
    Cells(Vec<u64>),
    /// A string.
    Str(String),
    /// A property with no value.
    Empty,
}

/// A node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub props: Vec<(String, Value)>,
    pub children: Vec<Node>,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn cells(&self, name: &str) -> Option<&[u64]> {
        self.props.iter().find_map(|(n, v)| match v {
            Value::Cells(c) if n == name => Some(c.as_slice()),
            _ => None,
        })
    }

    /// A one- or two-cell number (two cells: high, low).
    pub fn number(&self, name: &str) -> Option<u64> {
        match self.cells(name)? {
            [v] => Some(*v),
            [hi, lo] => Some(hi << 32 | lo),
            _ => None,
        }
    }
}

fn strip_dts_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                rest = rest[b..].find("*/").map_or("", |e| &rest[b + e + 2..]);
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |e| &rest[l + e..]);
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// Parses a DTS source into its root node.
pub fn parse_dts(src: &str) -> Result<Node> {
    let text = strip_dts_comments(src);
    let text = text.replace("/dts-v1/;", "");
    let mut stack: Vec<Node> = vec![Node::default()];
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let stop = rest
            .find(['{', ';', '}', '='])
            .ok_or_else(|| format!("DTS: unexpected end near `{}`", short(rest)))?;
        let head = rest[..stop].trim().to_string();
        match rest.as_bytes()[stop] {
            b'{' => {
                stack.push(Node {
                    name: head,
                    ..Node::default()
                });
                rest = &rest[stop + 1..];
            }
            b'}' => {
                let done = stack.pop().filter(|_| !stack.is_empty());
                let (Some(done), Some(parent)) = (done, stack.last_mut()) else {
                    return Err("DTS: unbalanced `}`".into());
                };
                parent.children.push(done);
                rest = rest[stop + 1..].trim_start();
                rest = rest.strip_prefix(';').unwrap_or(rest);
            }
            b';' => {
                if !head.is_empty() {
                    let node = stack.last_mut().ok_or("DTS: property outside a node")?;
                    node.props.push((head, Value::Empty));
                }
                rest = &rest[stop + 1..];
            }
            _ => {
                let end = rest[stop..]
                    .find(';')
                    .ok_or_else(|| format!("DTS: property `{head}` has no `;`"))?;
                let value = parse_value(rest[stop + 1..stop + end].trim())
                    .map_err(|e| format!("DTS: property `{head}`: {e}"))?;
                let node = stack.last_mut().ok_or("DTS: property outside a node")?;
                node.props.push((head, value));
                rest = &rest[stop + end + 1..];
            }
        }
        rest = rest.trim_start();
    }
    let mut top = stack
        .pop()
        .filter(|_| stack.is_empty())
        .ok_or("DTS: unclosed node")?;
    top.children.pop().ok_or_else(|| "DTS: no root node".into())
}

fn short(s: &str) -> &str {
    &s[..s.len().min(40)]
}

fn parse_value(v: &str) -> std::result::Result<Value, String> {
    if let Some(s) = v.strip_prefix('"') {
        return Ok(Value::Str(s.split('"').next().unwrap_or("").to_string()));
    }
    let mut cells = Vec::new();
    for group in v.split(',') {
        let inner = group
            .trim()
            .strip_prefix('<')
            .and_then(|g| g.strip_suffix('>'))
            .ok_or_else(|| format!("`{v}` is not <cells>"))?;
        for c in inner.split_whitespace() {
            let n = match c.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => c.parse(),
            }
            .map_err(|_| format!("bad cell `{c}`"))?;
            cells.push(n);
        }
    }
    Ok(Value::Cells(cells))
}

/// The `"name": { "image": …, "pm": … }` entries of `sp_layout.json`, in
/// file order: (name, image path, manifest path).
pub fn parse_sp_layout(json: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = json.trim().trim_start_matches('{');
    while let Some(open) = rest.find('{') {
        let name = rest[..open].split('"').nth(1).unwrap_or("").to_string();
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        let body = &rest[open + 1..close];
        let field = |k: &str| {
            body.split(&format!("\"{k}\""))
                .nth(1)
                .and_then(|r| r.split('"').nth(1))
                .unwrap_or("")
                .to_string()
        };
        out.push((name, field("image"), field("pm")));
        rest = &rest[(close + 1).min(rest.len())..];
    }
    out
}

// ----------------------------------------------------------------------
// The layout.
// ----------------------------------------------------------------------

/// One range of the map, as `spmc::memmap::Row` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub base: u64,
    pub size: u64,
    pub owner: String,
    pub what: String,
}

impl Row {
    fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// The SPMC's heading and row format (`spmc::memmap::HEADER` and `Row`'s `Display`).
pub const HEADER: &str = "base       end          size      owner            what";

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:#010x} {:#010x} {:>6} KiB  {:<16} {}",
            self.base,
            self.end(),
            self.size / 1024,
            self.owner,
            self.what
        )
    }
}

fn round_up(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

/// Every pair of rows (sorted by base) that share a byte, as messages.
pub fn overlaps(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            if a.base < b.end() && b.base < a.end() {
                out.push(format!(
                    "overlap: {:#010x}..{:#010x} {} ({}) and {:#010x}..{:#010x} {} ({})",
                    a.base,
                    a.end(),
                    a.what,
                    a.owner,
                    b.base,
                    b.end(),
                    b.what,
                    b.owner
                ));
            }
        }
    }
    out
}

/// Rows not wholly inside `[secure.0, secure.1)`, as messages.
pub fn outside(rows: &[Row], secure: (u64, u64)) -> Vec<String> {
    rows.iter()
        .filter(|r| r.base < secure.0 || r.base.checked_add(r.size).is_none_or(|e| e > secure.1))
        .map(|r| {
            format!(
                "outside secure memory {:#010x}..{:#010x}: {:#010x}..{:#010x} {} ({})",
                secure.0,
                secure.1,
                r.base,
                r.end(),
                r.what,
                r.owner
            )
        })
        .collect()
}

/// What the layout needs to know about one partition package.
#[derive(Clone, Debug)]
pub struct Package {
    pub name: String,
    /// Where the SPMC manifest says BL2 put it.
    pub address: u64,
    /// Its manifest.
    pub manifest: Node,
    /// Its image's size, if built.
    pub image_size: Option<u64>,
}

/// The map and what is wrong with it.
#[derive(Debug, Default)]
pub struct Map {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub problems: Vec<String>,
}

/// Lays memory out as the SPMC does at boot, from the parsed SPMC manifest,
/// the packages (in the SPMC manifest's order) and TB_FW_CONFIG.
pub fn layout(spmc: &Node, packages: &[Package], tb_fw: Option<&Node>) -> Map {
    let mut m = Map::default();
    let attr = spmc.child("attribute");
    let load = attr.and_then(|a| a.number("load_address"));
    let size = attr.and_then(|a| a.number("binary_size"));
    let mut rows = vec![Row {
        base: TRUSTED_SRAM.0,
        size: TRUSTED_SRAM.1 - TRUSTED_SRAM.0,
        owner: "TF-A".into(),
        what: "trusted SRAM: BL1, BL2, BL31, the SPMC manifest".into(),
    }];
    match (load, size) {
        (Some(base), Some(size)) => rows.push(Row {
            base,
            size,
            owner: "SPMC".into(),
            what: "image: code, data, stacks, static heap".into(),
        }),
        _ => m
            .problems
            .push("SPMC manifest: attribute/load_address or binary_size missing".into()),
    }
    // The pool, less the heap's share (platform-qemu's grow_heap).
    let pool = spmc
        .child("spmc")
        .and_then(|s| match s.cells("secure-memory")? {
            [bh, bl, sh, sl] => Some((bh << 32 | bl, sh << 32 | sl)),
            _ => None,
        });
    let pool = pool.map(|(base, size)| {
        if size >= 4 * HEAP_FROM_POOL {
            rows.push(Row {
                base: base + size - HEAP_FROM_POOL,
                size: HEAP_FROM_POOL,
                owner: "SPMC".into(),
                what: format!("heap, taken from the pool (and {STATIC_HEAP_KIB} KiB in the image)"),
            });
            (base, size - HEAP_FROM_POOL)
        } else {
            (base, size)
        }
    });
    if pool.is_none() {
        m.notes
            .push("no spmc/secure-memory: no pool, every partition is refused".into());
    }
    let templates: Vec<(String, u64, u64, u64)> = spmc
        .child("policy")
        .and_then(|p| p.child("templates"))
        .map(|t| {
            t.children
                .iter()
                .map(|n| {
                    let ids = n.cells("instance-ids").unwrap_or(&[]);
                    (
                        n.name.clone(),
                        n.number("partition").unwrap_or(0),
                        ids.get(1).copied().unwrap_or(0),
                        n.number("pages").unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if packages.iter().any(|p| p.image_size.is_none()) {
        m.notes.push(
            "some partition images are not built (`cargo xtask build`): their packages and \
             memory are shown with a one-page image"
                .into(),
        );
    }

    // The packages where BL2 puts them, then each partition's memory from the pool.
    let mut next = pool.map(|p| p.0);
    for p in packages {
        let man = &p.manifest;
        let id = man.number("id").unwrap_or(0);
        let img = p.image_size.unwrap_or(PAGE);
        let extent = IMG_OFFSET + img;
        if let Some(tb) = tb_fw.and_then(|t| t.child("secure-partitions")) {
            match tb.child(&p.name).and_then(|n| n.number("load-address")) {
                Some(a) if a == p.address => {}
                Some(a) => m.problems.push(format!(
                    "package `{}`: TB_FW_CONFIG loads it at {a:#010x}, the SPMC manifest says {:#010x}",
                    p.name, p.address
                )),
                None => m.problems.push(format!(
                    "package `{}`: not in TB_FW_CONFIG (BL2 does not load it)",
                    p.name
                )),
            }
        }
        let template = templates.iter().find(|t| t.1 == id);
        rows.push(Row {
            base: p.address,
            size: round_up(extent),
            owner: match template {
                Some(_) => format!("template {id:#06x}"),
                None => "SPMC".into(),
            },
            what: match template {
                Some(_) => format!("package `{}`: pristine image of every instance", p.name),
                None => format!("package `{}` as BL2 loaded it", p.name),
            },
        });
        if let Some((name, _, count, pages)) = template {
            m.notes.push(format!(
                "template `{name}` {id:#06x}: up to {count} instances of {pages} pages \
                 ({} KiB each) from the free pool, made when their VM is",
                pages * 4
            ));
            continue;
        }
        // The partitions the SPMC refuses take nothing (sp_manifest::parse_manifest).
        let el = man.number("exception-level");
        let state = man.number("execution-state");
        if el != Some(2) || state != Some(0) {
            m.notes.push(format!(
                "partition `{}` {id:#06x} is refused at boot (exception-level {}, \
                 execution-state {}; the SPMC takes S-EL1 AArch64 only): no memory",
                p.name,
                el.map_or("missing".into(), |v| v.to_string()),
                state.map_or("missing".into(), |v| v.to_string()),
            ));
            continue;
        }
        // Its memory (`MainLayout::of`): the package run in place when the
        // entry point lies in its image, else the image alone; at least
        // `mem-size`; boot information after it for an image alone.
        let ipa = man.number("load-address").unwrap_or(0);
        let entry = man.number("entrypoint-offset").unwrap_or(0);
        let in_place = entry >= IMG_OFFSET && entry < IMG_OFFSET + img;
        let code = if in_place { extent } else { img };
        let mut main = round_up(code).max(round_up(man.number("mem-size").unwrap_or(0)));
        if !in_place && man.cells("gp-register-num").is_some() {
            // The boot information header and a copy of the manifest (under a page).
            main += PAGE;
        }
        let mut pieces = vec![(main, format!("`{}` image and RAM at IPA {ipa:#x}", p.name))];
        for r in man
            .child("memory-regions")
            .map_or(&[][..], |n| n.children.as_slice())
        {
            let pages = r.number("pages-count").unwrap_or(0);
            let at = r.number("base-address").unwrap_or(0);
            pieces.push((
                pages * PAGE,
                format!("`{}` region `{}` at IPA {at:#x}", p.name, r.name),
            ));
        }
        for (len, what) in pieces {
            let (Some(base), Some((pb, ps))) = (next, pool) else {
                break;
            };
            if base + len > pb + ps {
                m.problems.push(format!(
                    "the pool {pb:#010x}..{:#010x} is too small: {what} needs {} KiB, {} KiB are left",
                    pb + ps,
                    len / 1024,
                    (pb + ps - base) / 1024
                ));
                next = None;
                break;
            }
            rows.push(Row {
                base,
                size: len,
                owner: format!("SP {id:#06x}"),
                what,
            });
            next = Some(base + len);
        }
        for d in man
            .child("device-regions")
            .map_or(&[][..], |n| n.children.as_slice())
        {
            let base = d.number("base-address").unwrap_or(0);
            let len = d.number("pages-count").unwrap_or(0) * PAGE;
            if base < SECURE_RAM.1 && SECURE_RAM.0 < base.saturating_add(len) {
                m.problems.push(format!(
                    "partition `{}` device region `{}` {base:#010x}..{:#010x} reaches secure memory",
                    p.name,
                    d.name,
                    base + len
                ));
            }
        }
    }
    if let (Some(base), Some((pb, ps))) = (next, pool)
        && base < pb + ps
    {
        rows.push(Row {
            base,
            size: pb + ps - base,
            owner: "free".into(),
            what: "pool: free".into(),
        });
    }
    rows.sort_by_key(|r| (r.base, r.size));
    m.problems.extend(overlaps(&rows));
    m.problems.extend(outside(&rows, SECURE_RAM));
    m.rows = rows;
    m
}

/// Reads the manifests under `dir` (`tf-a-integration/qemu`) and lays them out.
pub fn from_dir(dir: &Path) -> Result<Map> {
    let read = |p: &Path| fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let dts = |p: &Path| parse_dts(&read(p)?).map_err(|e| format!("{}: {e}", p.display()));
    let spmc = dts(&dir.join("spmc_manifest.dts"))?;
    let tb_fw = dts(&dir.join("tb_fw_config.dts"))?;
    let layout_json = parse_sp_layout(&read(&dir.join("sp_layout.json"))?);
    let mut packages = Vec::new();
    for node in spmc
        .child("partitions")
        .map_or(&[][..], |p| p.children.as_slice())
    {
        let address = node
            .number("package")
            .ok_or_else(|| format!("SPMC manifest: partition `{}` has no package", node.name))?;
        let (_, image, pm) = layout_json
            .iter()
            .find(|(n, _, _)| *n == node.name)
            .ok_or_else(|| format!("sp_layout.json has no `{}`", node.name))?;
        packages.push(Package {
            name: node.name.clone(),
            address,
            manifest: dts(&dir.join(pm))?,
            image_size: fs::metadata(dir.join(image)).ok().map(|m| m.len()),
        });
    }
    Ok(layout(&spmc, &packages, Some(&tb_fw)))
}

/// `cargo xtask map`.
pub fn run() -> Result<()> {
    const DIR: &str = "tf-a-integration/qemu";
    let map = from_dir(&sh::root().join(DIR))?;
    println!("secure memory map (from {DIR}):");
    println!("  {HEADER}");
    for r in &map.rows {
        println!("  {r}");
    }
    for n in &map.notes {
        println!("  note: {n}");
    }
    if map.problems.is_empty() {
        return Ok(());
    }
    for p in &map.problems {
        eprintln!("  problem: {p}");
    }
    Err(format!(
        "the secure memory map has {} problem(s) (above)",
        map.problems.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(base: u64, size: u64, what: &str) -> Row {
        Row {
            base,
            size,
            owner: "x".into(),
            what: what.into(),
        }
    }

    #[test]
    fn overlaps_are_found_and_touching_ranges_are_not() {
        let rows = [
            row(0x1000, 0x1000, "a"),
            row(0x2000, 0x2000, "b"),
            row(0x3fff, 0x10, "c"),
            row(0x8000, 0x1000, "d"),
        ];
        let found = overlaps(&rows);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains(" b (x) and ") && found[0].contains(" c (x)"));
        // A range inside another overlaps too.
        assert_eq!(
            overlaps(&[row(0, 0x10000, "big"), row(0x8000, 0x1000, "in")]).len(),
            1
        );
        assert!(overlaps(&rows[..2]).is_empty());
    }

    #[test]
    fn ranges_outside_secure_memory_are_found() {
        let sec = (0x0e00_0000, 0x0f00_0000);
        assert!(outside(&[row(0x0e00_0000, 0x100_0000, "all")], sec).is_empty());
        let bad = [
            row(0x0dff_f000, 0x2000, "below"),
            row(0x0eff_f000, 0x2000, "past the end"),
            row(0x4000_0000, 0x1000, "normal world"),
            row(u64::MAX - 0xfff, 0x2000, "wraps"),
        ];
        let found = outside(&bad, sec);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[1].contains("past the end"));
    }

    #[test]
    fn reads_the_dts_the_manifests_use() {
        let n = parse_dts(
            "/dts-v1/;\n/* c */ / { a = <0x1 2>, <3>; // x\n s = \"str\"; flag; child { n = <0x0 0x0e300000>; }; };",
        )
        .unwrap();
        assert_eq!(n.cells("a"), Some(&[1, 2, 3][..]));
        assert_eq!(n.props[1].1, Value::Str("str".into()));
        assert_eq!(n.props[2], ("flag".into(), Value::Empty));
        assert_eq!(n.child("child").unwrap().number("n"), Some(0x0e30_0000));
        assert!(parse_dts("/ { a = <1>; ").is_err());
        assert!(parse_dts("/ { a = <zz>; };").is_err());
    }

    /// The platform facts above are the firmware's.
    #[test]
    fn the_board_constants_are_the_firmwares() {
        let root = sh::root();
        let text = |p: &str| fs::read_to_string(root.join(p)).unwrap();
        // QEMU virt's layout (`cargo xtask map` lays out virt's manifests).
        let layout = text("platform-qemu/src/layout.rs");
        let virt = layout
            .split("pub const VIRT: Layout = Layout {")
            .nth(1)
            .and_then(|t| t.split("};").next())
            .expect("platform-qemu/src/layout.rs: VIRT");
        assert!(virt.contains("secure_ram: (0x0e00_0000, 0x0f00_0000),"));
        assert!(virt.contains("trusted_sram: (0x0e00_0000, 0x0e10_0000),"));
        assert!(virt.contains("heap_from_pool: 1 << 20,"));
        assert!(
            text("arch-aarch64/src/heap.rs").contains("pub const HEAP_SIZE: usize = 512 * 1024;")
        );
        let memmap = text("spmc/src/memmap.rs");
        assert!(memmap.contains(&format!("pub const HEADER: &str = \"{HEADER}\";")));
        assert!(memmap.contains("\"{:#010x} {:#010x} {:>6} KiB  {:<16} {}\""));
    }

    fn shipped() -> (Node, Vec<Package>, Node) {
        let dir = sh::root().join("tf-a-integration/qemu");
        let read = |p: &str| parse_dts(&fs::read_to_string(dir.join(p)).unwrap()).unwrap();
        let spmc = read("spmc_manifest.dts");
        let packages = spmc
            .child("partitions")
            .unwrap()
            .children
            .iter()
            .map(|n| Package {
                name: n.name.clone(),
                address: n.number("package").unwrap(),
                manifest: read(&format!("partitions/{}.dts", n.name)),
                image_size: Some(8200),
            })
            .collect();
        (spmc, packages, read("tb_fw_config.dts"))
    }

    #[test]
    fn the_shipped_manifests_lay_out_without_problems() {
        let (spmc, packages, tb) = shipped();
        let m = layout(&spmc, &packages, Some(&tb));
        assert!(m.problems.is_empty(), "{:#?}", m.problems);
        let shown: Vec<String> = m.rows.iter().map(|r| r.to_string()).collect();
        let shown = shown.join("\n");
        // As the SPMC's own host test (spmc/tests/memmap.rs) sees it with an
        // image of the same size: sp1 first in the pool, sp2 run in place.
        assert!(shown.contains(
            "0x0e500000 0x0e503000     12 KiB  SP 0x8001        `sp1` image and RAM at IPA 0x10000000"
        ), "{shown}");
        assert!(shown.contains(
            "0x0e523000 0x0e583000    384 KiB  SP 0x8002        `sp2` image and RAM at IPA 0x10000000"
        ), "{shown}");
        assert!(
            shown.contains(
                "0x0e5f2000 0x0e612000    128 KiB  SP 0x8006        `crash-steal` region `ram`"
            ),
            "{shown}"
        );
        assert!(
            shown.contains("0x0e612000 0x0ef00000   9144 KiB  free             pool: free"),
            "{shown}"
        );
        assert!(
            shown.contains("0x0ef00000 0x0f000000   1024 KiB  SPMC             heap"),
            "{shown}"
        );
        assert!(
            shown.contains("template 0x8010  package `vtee`: pristine image"),
            "{shown}"
        );
        assert!(!shown.contains("bad-el0` image"), "refused: no memory");
    }

    #[test]
    fn a_package_moved_over_the_pool_or_out_of_secure_memory_is_refused() {
        let (spmc, mut packages, tb) = shipped();
        packages[1].address = 0x0e50_0000;
        let m = layout(&spmc, &packages, Some(&tb));
        assert!(
            m.problems.iter().any(|p| p.starts_with("overlap:")
                && p.contains("package `sp2`")
                && p.contains("`sp1` image and RAM")),
            "{:#?}",
            m.problems
        );
        assert!(
            m.problems
                .iter()
                .any(|p| p.contains("TB_FW_CONFIG loads it at 0x0e340000"))
        );

        let (spmc, mut packages, _) = shipped();
        packages[0].address = 0x0f00_0000;
        let m = layout(&spmc, &packages, None);
        assert_eq!(m.problems.len(), 1, "{:#?}", m.problems);
        assert!(
            m.problems[0].starts_with("outside secure memory") && m.problems[0].contains("`sp1`")
        );
    }

    #[test]
    fn partitions_larger_than_the_pool_are_refused() {
        let (mut spmc, packages, tb) = shipped();
        let s = spmc.children.iter_mut().find(|c| c.name == "spmc").unwrap();
        s.props[0].1 = Value::Cells(vec![0, 0x0e50_0000, 0, 0x10_0000]);
        let m = layout(&spmc, &packages, Some(&tb));
        assert!(
            m.problems
                .iter()
                .any(|p| p.contains("the pool 0x0e500000..0x0e600000 is too small")),
            "{:#?}",
            m.problems
        );
    }

    #[test]
    fn reads_sp_layout() {
        let l = parse_sp_layout(
            "{\n \"sp1\": {\n  \"image\": \"a.bin\",\n  \"pm\": \"p/sp1.dts\",\n  \"uuid\": \"u\"\n },\n \"sp2\": { \"pm\": \"p/sp2.dts\", \"image\": \"b.bin\" }\n}",
        );
        assert_eq!(
            l,
            [
                ("sp1".into(), "a.bin".into(), "p/sp1.dts".into()),
                ("sp2".into(), "b.bin".into(), "p/sp2.dts".into())
            ]
        );
    }
}
