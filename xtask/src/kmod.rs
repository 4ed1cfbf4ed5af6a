//! Kernel modules without kmod: read a module's `.modinfo` section and order
//! modules so that each comes after the modules it depends on (Debian's
//! `linux-modules-*` packages ship no `modules.dep`, and busybox `insmod` loads
//! exactly the file it is given).

use std::collections::BTreeMap;

use crate::sh::Result;

/// The `key=value` pairs of a module's `.modinfo` section, in file order.
pub fn modinfo(elf: &[u8]) -> Result<Vec<(String, String)>> {
    let section = section(elf, ".modinfo")?
        .ok_or_else(|| "not a kernel module: no .modinfo section".to_string())?;
    Ok(section
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let s = String::from_utf8_lossy(s);
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// The value of `key` in a module's modinfo (the first, if repeated).
pub fn field<'a>(info: &'a [(String, String)], key: &str) -> Option<&'a str> {
    info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The modules a module needs loaded first (`depends=a,b`).
pub fn depends(info: &[(String, String)]) -> Vec<String> {
    field(info, "depends")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The kernel treats `-` and `_` in module names alike; so do we.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The bytes of the named section of a little-endian ELF64 file, if present.
fn section<'a>(elf: &'a [u8], wanted: &str) -> Result<Option<&'a [u8]>> {
    let bad = |what: &str| format!("not a usable ELF64 little-endian file: {what}");
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err(bad("no ELF header"));
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err(bad("not 64-bit little-endian"));
    }
    let u16_at = |o: usize| -> Option<usize> {
        Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as usize)
    };
    let u32_at = |o: usize| -> Option<usize> {
        Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?) as usize)
    };
    let u64_at = |o: usize| -> Option<usize> {
        usize::try_from(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)).ok()
    };
    let shoff = u64_at(0x28).ok_or_else(|| bad("header"))?;
    let shentsize = u16_at(0x3a).ok_or_else(|| bad("header"))?;
    let shnum = u16_at(0x3c).ok_or_else(|| bad("header"))?;
    let shstrndx = u16_at(0x3e).ok_or_else(|| bad("header"))?;
    if shentsize < 64 || shstrndx >= shnum {
        return Err(bad("section header table"));
    }
    // (name offset, file offset, size) of section i.
    let header = |i: usize| -> Option<(usize, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((u32_at(h)?, u64_at(h + 0x18)?, u64_at(h + 0x20)?))
    };
    let bytes = |off: usize, size: usize| elf.get(off..off.checked_add(size)?);
    let (_, str_off, str_size) = header(shstrndx).ok_or_else(|| bad("section header table"))?;
    let strtab = bytes(str_off, str_size).ok_or_else(|| bad("section name table"))?;
    for i in 0..shnum {
        let (name, off, size) = header(i).ok_or_else(|| bad("section header table"))?;
        let name = strtab
            .get(name..)
            .and_then(|s| s.split(|&b| b == 0).next())
            .ok_or_else(|| bad("section name"))?;
        if name == wanted.as_bytes() {
            return bytes(off, size)
                .map(Some)
                .ok_or_else(|| bad(&format!("{wanted} lies outside the file")));
        }
    }
    Ok(None)
}

/// Orders `wanted` and everything they depend on so that each module comes
/// after its dependencies; each module once, in a stable order.
/// `depends_of` gives a module's direct dependencies (names as in
/// `depends=`); names are compared after [`normalize`].
pub fn load_order(
    wanted: &[&str],
    mut depends_of: impl FnMut(&str) -> Result<Vec<String>>,
) -> Result<Vec<String>> {
    #[derive(PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        marks: &mut BTreeMap<String, Mark>,
        order: &mut Vec<String>,
        path: &mut Vec<String>,
        depends_of: &mut dyn FnMut(&str) -> Result<Vec<String>>,
    ) -> Result<()> {
        let key = normalize(name);
        match marks.get(&key) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                path.push(name.to_string());
                return Err(format!("module dependency cycle: {}", path.join(" -> ")));
            }
            None => {}
        }
        marks.insert(key.clone(), Mark::Visiting);
        path.push(name.to_string());
        let deps = depends_of(name).map_err(|e| format!("module {name}: {e}"))?;
        for d in deps {
            visit(&d, marks, order, path, depends_of)?;
        }
        path.pop();
        marks.insert(key, Mark::Done);
        order.push(name.to_string());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut order = Vec::new();
    for w in wanted {
        visit(w, &mut marks, &mut order, &mut Vec::new(), &mut depends_of)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal relocatable ELF64 with sections: null, .shstrtab, .modinfo.
    fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.modinfo\0";
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little-endian
        f[6] = 1; // EV_CURRENT
        f[0x10..0x12].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        f[0x12..0x14].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        let str_off = f.len();
        f.extend_from_slice(shstrtab);
        let info_off = f.len();
        f.extend_from_slice(modinfo);
        while !f.len().is_multiple_of(8) {
            f.push(0);
        }
        let shoff = f.len();
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        for (name, off, size) in [
            (0u32, 0usize, 0usize),
            (1, str_off, shstrtab.len()),
            (11, info_off, modinfo.len()),
        ] {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&h);
        }
        f
    }

    #[test]
    fn reads_modinfo_of_a_module() {
        let elf = elf_with_modinfo(
            b"license=GPL\0depends=ffa-core\0\0name=ffa_module\0vermagic=7.2.11+deb13-arm64 SMP preempt mod_unload aarch64\0",
        );
        let info = modinfo(&elf).unwrap();
        assert_eq!(field(&info, "name"), Some("ffa_module"));
        assert_eq!(depends(&info), ["ffa-core"]);
        assert!(
            field(&info, "vermagic")
                .unwrap()
                .starts_with("7.2.11+deb13-arm64 ")
        );
    }

    #[test]
    fn empty_and_multiple_depends() {
        let info = modinfo(&elf_with_modinfo(b"depends=\0name=ffa_core\0")).unwrap();
        assert!(depends(&info).is_empty());
        let info = modinfo(&elf_with_modinfo(b"depends=tpm,ffa-core\0")).unwrap();
        assert_eq!(depends(&info), ["tpm", "ffa-core"]);
    }

    #[test]
    fn refuses_what_is_not_a_module() {
        assert!(modinfo(b"\x7fELF").is_err());
        assert!(modinfo(&[0u8; 128]).is_err());
        let mut elf = elf_with_modinfo(b"name=x\0");
        elf[5] = 2; // big-endian
        assert!(modinfo(&elf).is_err());
        // A section table pointing past the end of the file.
        let mut elf = elf_with_modinfo(b"name=x\0");
        elf[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(modinfo(&elf).is_err());
        // Valid ELF without .modinfo.
        let mut elf = elf_with_modinfo(b"name=x\0");
        let n = elf.len();
        elf[n - 64..n - 60].copy_from_slice(&0u32.to_le_bytes());
        assert!(modinfo(&elf).unwrap_err().contains("no .modinfo"));
    }

    fn graph(edges: &[(&str, &[&str])]) -> impl FnMut(&str) -> Result<Vec<String>> {
        let map: BTreeMap<String, Vec<String>> = edges
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        move |m: &str| {
            map.get(m)
                .cloned()
                .ok_or_else(|| format!("{m} is not in the package"))
        }
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let g = graph(&[
            ("ffa-core", &[]),
            ("ffa-module", &["ffa-core"]),
            ("tpm_crb_ffa", &["ffa-core", "tpm"]),
            ("tpm", &["rng-core"]),
            ("rng-core", &[]),
        ]);
        assert_eq!(
            load_order(&["ffa-module", "tpm_crb_ffa"], g).unwrap(),
            ["ffa-core", "ffa-module", "rng-core", "tpm", "tpm_crb_ffa"]
        );
    }

    #[test]
    fn hyphen_and_underscore_are_one_module() {
        let g = graph(&[("ffa-core", &[]), ("a", &["ffa_core"]), ("ffa_core", &[])]);
        assert_eq!(
            load_order(&["ffa-core", "a"], g).unwrap(),
            ["ffa-core", "a"]
        );
    }

    #[test]
    fn cycles_and_missing_modules_are_errors() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        assert_eq!(
            load_order(&["a"], g).unwrap_err(),
            "module dependency cycle: a -> b -> c -> a"
        );
        let g = graph(&[("a", &["gone"])]);
        let e = load_order(&["a"], g).unwrap_err();
        assert!(e.contains("gone is not in the package"), "{e}");
    }
}
