//! A writer for the cpio "newc" format (`070701`), the format of a Linux initramfs.
//!
//! Every entry is owned by root with mtime 0, so the same inputs give the same
//! bytes. Parent directories are added automatically (mode 0755) the first time
//! a path below them appears, because the kernel unpacks entries in order and
//! cannot create a file in a directory it has not seen yet.

use std::collections::BTreeSet;

use crate::sh::Result;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const TRAILER: &str = "TRAILER!!!";

/// An archive being built in memory.
#[derive(Debug, Default)]
pub struct Cpio {
    out: Vec<u8>,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    pub fn new() -> Self {
        Self {
            next_ino: 1,
            ..Self::default()
        }
    }

    /// A directory with the given permission bits.
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<()> {
        check_path(path)?;
        self.parents(path);
        if self.dirs.insert(path.to_string()) {
            self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[]);
        }
        Ok(())
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<()> {
        check_path(path)?;
        self.parents(path);
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data);
        Ok(())
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        check_path(path)?;
        if target.is_empty() || target.contains('\0') {
            return Err(format!("cpio: bad symlink target {target:?} for {path}"));
        }
        self.parents(path);
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
        Ok(())
    }

    /// A character device node (for example `dev/console`, 5:1).
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        check_path(path)?;
        self.parents(path);
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[]);
        Ok(())
    }

    /// Ends the archive with its trailer and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_ino = 0;
        self.entry(TRAILER, 0, 1, (0, 0), &[]);
        self.out
    }

    fn parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            let parent = &path[..end];
            if self.dirs.insert(parent.to_string()) {
                self.entry(parent, S_IFDIR | 0o755, 2, (0, 0), &[]);
            }
            end += 1;
        }
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1, // namesize counts the NUL
            0,                     // check (only for the 070702 format)
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

/// Paths are relative ("bin/sh"), without empty, `.` or `..` components.
fn check_path(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path == TRAILER
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(format!("cpio: bad path {path:?}"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: (name, mode, nlink, rdev, data).
    type Entry = (String, u32, u32, (u32, u32), Vec<u8>);

    /// A reader for what the writer produces, checking alignment as it goes.
    fn parse(mut b: &[u8]) -> Vec<Entry> {
        let total = b.len();
        let mut out = Vec::new();
        loop {
            assert_eq!((total - b.len()) % 4, 0, "entry not 4-byte aligned");
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let (mode, nlink, size, rdev) = (field(1), field(4), field(6), (field(9), field(10)));
            assert_eq!(field(2), 0, "uid");
            assert_eq!(field(5), 0, "mtime");
            let namesize = field(11) as usize;
            let name_end = 110 + namesize;
            assert_eq!(b[name_end - 1], 0, "name is NUL-terminated");
            let name = String::from_utf8(b[110..name_end - 1].to_vec()).unwrap();
            let data_start = name_end.next_multiple_of(4);
            let data = b[data_start..data_start + size as usize].to_vec();
            b = &b[(data_start + size as usize).next_multiple_of(4)..];
            if name == TRAILER {
                assert!(b.is_empty(), "nothing after the trailer");
                return out;
            }
            out.push((name, mode, nlink, rdev, data));
        }
    }

    #[test]
    fn header_of_one_file_is_byte_exact() {
        let mut c = Cpio::new();
        c.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        let bytes = c.finish();
        let fields = [
            "00000001", // ino
            "000081ED", // mode: regular file 0755
            "00000000", // uid
            "00000000", // gid
            "00000001", // nlink
            "00000000", // mtime
            "0000000A", // filesize
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "00000005", // namesize
            "00000000", // check
        ];
        assert_eq!(
            std::str::from_utf8(&bytes[..110]).unwrap(),
            format!("070701{}", fields.concat())
        );
        // name "init\0" (5 bytes) ends at 115, padded to 116; then the data.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn round_trip_with_parents_links_and_devices() {
        let mut c = Cpio::new();
        c.dir("proc", 0o555).unwrap();
        c.char_dev("dev/console", 0o600, 5, 1).unwrap();
        c.file("lib/modules/ffa-core.ko", 0o644, &[1, 2, 3])
            .unwrap();
        c.file("lib/modules/ffa-module.ko", 0o644, &[4; 7]).unwrap();
        c.symlink("bin/sh", "busybox").unwrap();
        c.dir("lib", 0o755).unwrap(); // already there: not repeated
        let entries = parse(&c.finish());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "proc",
                "dev",
                "dev/console",
                "lib",
                "lib/modules",
                "lib/modules/ffa-core.ko",
                "lib/modules/ffa-module.ko",
                "bin",
                "bin/sh"
            ]
        );
        assert_eq!(entries[0].1, 0o040555);
        assert_eq!(entries[0].2, 2);
        assert_eq!(entries[2].1, 0o020600);
        assert_eq!(entries[2].3, (5, 1));
        assert_eq!(entries[5].1, 0o100644);
        assert_eq!(entries[5].4, [1, 2, 3]);
        assert_eq!(entries[6].4, [4; 7]);
        assert_eq!(entries[8].1, 0o120777);
        assert_eq!(entries[8].4, b"busybox");
    }

    #[test]
    fn inodes_are_distinct() {
        let mut c = Cpio::new();
        c.file("a", 0o644, b"x").unwrap();
        c.file("b", 0o644, b"y").unwrap();
        let bytes = c.finish();
        assert_eq!(&bytes[6..14], b"00000001");
        let second = (110 + 2usize).next_multiple_of(4) + 4;
        assert_eq!(&bytes[second + 6..second + 14], b"00000002");
    }

    #[test]
    fn bad_paths_are_refused() {
        let mut c = Cpio::new();
        for p in [
            "",
            "/init",
            "a//b",
            "a/../b",
            "./a",
            "a/",
            "TRAILER!!!",
            "a\0b",
        ] {
            assert!(c.file(p, 0o644, b"").is_err(), "{p:?} accepted");
        }
        assert!(c.symlink("bin/x", "").is_err());
    }
}
