//! Installs what the build needs on a Debian machine and finds the tools.
//!
//! - Rust for `aarch64-unknown-none-softfloat`: an installed rustup target if
//!   there is one, else Debian's `rustc-web` toolchain with its library source
//!   (built with `-Zbuild-std`), plus `lld-22` for `rust-lld`.
//! - The aarch64 cross GCC and `dtc` (TF-A's build), QEMU (the bookworm-backports
//!   10.x build when available; 7.2 works too).
//! - TF-A 2.12.1 source from Debian trixie through `apt-get source`.
//! - For the fuzz targets (`cargo xtask fuzz`, and the fuzz step of `test`):
//!   `g++` (libFuzzer's C++ source) and `cargo-fuzz`, which
//!   [`crate::fuzz::ensure_tools`] installs with `cargo install` into the
//!   user's cargo home.
//!
//! Extra suites (bookworm-backports, trixie deb-src) are added on the mirror the
//! machine already uses; no host name is written here.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::Options;
use crate::sh::{self, Result};

/// The firmware target triple.
pub const TARGET: &str = "aarch64-unknown-none-softfloat";

/// How firmware crates are compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// The toolchain running this xtask has the target installed (rustup).
    Installed,
    /// Debian's rustc-web at /usr/bin with the library source: `-Zbuild-std`.
    DebianBuildStd,
}

/// What later steps need to know about the machine.
#[derive(Clone, Debug)]
pub struct Env {
    /// Work directory for set-up files and builds.
    pub work: PathBuf,
    /// The unpacked TF-A source tree.
    pub tfa_src: PathBuf,
    /// How to build firmware.
    pub toolchain: Toolchain,
    /// QEMU's major version.
    pub qemu_major: u32,
    /// Our own patches of the TF-A source (`tf-a-integration/*/*.patch`), as
    /// applied: their text, so that a changed patch rebuilds TF-A.
    pub tfa_patches: String,
}

const SOURCES_FILE: &str = "/etc/apt/sources.list.d/spmc-xtask.sources";
/// Our sources files start with this (the `linux` stage adds a second one).
pub const OUR_SOURCES_PREFIX: &str = "spmc-xtask";
/// True while apt's package lists may not show every source and architecture
/// configured: at the start of a run (nobody knows how old they are) and
/// again after this xtask adds a source or an architecture. `apt_update`
/// clears it; `apt_sources_changed` sets it.
static APT_LISTS_STALE: AtomicBool = AtomicBool::new(true);
const DEBIAN_RUST: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "libstd-rust-web-dev",
    "rust-web-llvm",
    "rust-web-clippy",
    "rustfmt-web",
    "lld-22",
];
/// What TF-A's build (its Debian build dependencies that our build uses: the
/// cross compiler, `dtc`, OpenSSL's headers for `fiptool`, Python for
/// `sptool`, a host C compiler for the tools), `apt-get source` (`dpkg-dev`)
/// and its fallback unpacking (`xz-utils`, `patch`) need. Listed whether or not
/// a Debian 12 machine usually has them: a new machine need not. `g++` is
/// for the fuzz step (libfuzzer-sys compiles libFuzzer's C++ source).
const BUILD_PACKAGES: &[&str] = &[
    "gcc-aarch64-linux-gnu",
    "binutils-aarch64-linux-gnu",
    "device-tree-compiler",
    "libssl-dev",
    "gcc",
    "libc6-dev",
    "make",
    "dpkg-dev",
    "xz-utils",
    "patch",
    "python3",
    "g++",
];

/// The work directory.
pub fn work_dir() -> PathBuf {
    std::env::var_os("SPMC_XTASK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| sh::root().join("target/xtask"))
}

/// Makes sure everything is installed and returns where things are.
pub fn ensure(opts: &Options) -> Result<Env> {
    sh::step("set-up: checking what is installed");
    let timer = sh::Timer::start("set-up");
    let work = work_dir();
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;

    let (toolchain, rust) = if installed_target_present() {
        (
            Toolchain::Installed,
            format!("the running toolchain's {TARGET} target"),
        )
    } else {
        (
            Toolchain::DebianBuildStd,
            "Debian's rustc-web with -Zbuild-std".to_string(),
        )
    };

    let mut missing: Vec<&str> = Vec::new();
    if toolchain == Toolchain::DebianBuildStd {
        missing.extend(DEBIAN_RUST.iter().filter(|p| !dpkg_installed(p)));
    }
    missing.extend(BUILD_PACKAGES.iter().filter(|p| !dpkg_installed(p)));
    let need_qemu = !sh::have("qemu-system-aarch64");
    let tfa_src = find_tfa_source(&work);
    let need_tfa = tfa_src.is_none();

    if !missing.is_empty() || need_qemu || need_tfa {
        let mut what: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
        if need_qemu {
            what.push("qemu-system-arm (bookworm-backports if available)".into());
        }
        if need_tfa {
            what.push(
                "TF-A 2.12.1 source (apt-get source arm-trusted-firmware, from trixie)".into(),
            );
        }
        println!("    to install: {}", what.join(", "));
        if opts.no_install || !is_root() {
            return Err(format!(
                "missing: {}. Run `cargo xtask setup` as root (it adds bookworm-backports and trixie deb-src \
                 on your existing Debian mirror, then runs apt-get), or install them yourself",
                what.join(", ")
            ));
        }
        add_apt_sources()?;
        apt_update()?;
        if !missing.is_empty() {
            apt_install(&missing, None)?;
        }
        if need_qemu {
            // The backports build is QEMU 10: its timer counts instructions
            // exactly under -icount (see docs/benchmarks.md). 7.2 also works.
            if apt_install(&["qemu-system-arm"], Some(&backports_suite()?)).is_err() {
                println!("    backports QEMU not available; installing the stable build");
                apt_install(&["qemu-system-arm"], None)?;
            }
        }
    }
    let tfa_src = match tfa_src {
        Some(p) => p,
        None => fetch_tfa_source(&work)?,
    };
    let tfa_patches = apply_our_patches(&tfa_src)?;
    let qemu_major = qemu_major_version()?;
    println!(
        "    Rust: {rust}; QEMU {qemu_major}.x; TF-A source: {}",
        tfa_src
            .strip_prefix(sh::root())
            .unwrap_or(&tfa_src)
            .display()
    );
    timer.done();
    Ok(Env {
        work,
        tfa_src,
        toolchain,
        qemu_major,
        tfa_patches,
    })
}

/// Applies (or with `reverse` takes out) the patch in file `patch` to
/// `tree` (`-p1`). With `-i`, not on standard input: `sh::run` gives
/// commands none, and `patch` reading an empty input applies nothing and
/// succeeds.
fn apply_patch(tree: &Path, patch: &Path, reverse: bool) -> Result<()> {
    let mut cmd = Command::new("patch");
    cmd.current_dir(tree)
        .args(["-p1", "-s", "--no-backup-if-mismatch", "-i"])
        .arg(patch);
    if reverse {
        cmd.arg("-R");
    }
    sh::run(&mut cmd)
}

/// Our patches of Debian's TF-A source, in order.
const OUR_PATCHES: &[&str] = &["tf-a-integration/sbsa/qemu-sbsa-spmd.patch"];

/// Applies [`OUR_PATCHES`] to the TF-A tree unless they already are (as
/// `.spmc-patches` records); a tree patched with other versions of them gets
/// those taken out first. Returns the patches' text.
fn apply_our_patches(tree: &Path) -> Result<String> {
    let mut text = String::new();
    for p in OUR_PATCHES {
        let path = sh::root().join(p);
        text.push_str(&fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    let record = tree.join(".spmc-patches");
    let applied = fs::read_to_string(&record).unwrap_or_default();
    if applied == text {
        return Ok(text);
    }
    let patch = |reverse: bool, diff: &str| -> Result<()> {
        let tmp = tree.join(".spmc-patch-tmp");
        fs::write(&tmp, diff).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let r = apply_patch(tree, &tmp, reverse);
        let _ = fs::remove_file(&tmp);
        r
    };
    if !applied.is_empty() {
        println!("    taking our old TF-A patches out of the source tree");
        patch(true, &applied)?;
        let _ = fs::remove_file(&record);
    }
    println!("    applying our TF-A patches ({})", OUR_PATCHES.join(", "));
    patch(false, &text)?;
    fs::write(&record, &text).map_err(|e| format!("{}: {e}", record.display()))?;
    Ok(text)
}

/// `apt-get update` unless the lists are already fresh in this run: once at
/// the first need, and again after every change of sources or architectures
/// (`apt_sources_changed`).
pub fn apt_update() -> Result<()> {
    if !APT_LISTS_STALE.swap(false, Ordering::SeqCst) {
        return Ok(());
    }
    apt_update_now()
}

/// `apt-get update`, whether or not the lists were fresh (for a retry after a
/// failed download: the mirror may have moved on since).
pub fn apt_update_now() -> Result<()> {
    APT_LISTS_STALE.store(false, Ordering::SeqCst);
    println!("    updating apt's package lists");
    let result = sh::run(Command::new("apt-get").args(["update", "-q"]));
    if result.is_err() {
        APT_LISTS_STALE.store(true, Ordering::SeqCst);
    }
    result
}

/// Call after adding an apt source or a dpkg architecture: the next
/// `apt_update` then fetches the lists again.
pub fn apt_sources_changed() {
    APT_LISTS_STALE.store(true, Ordering::SeqCst);
}

pub fn is_root() -> bool {
    sh::output(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

pub(crate) fn dpkg_installed(pkg: &str) -> bool {
    sh::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_ok_and(|s| s.contains("install ok installed"))
}

/// True if the running rustc has a prebuilt standard library for the target.
fn installed_target_present() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(sysroot) = sh::output(Command::new(rustc).args(["--print", "sysroot"])) else {
        return false;
    };
    Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
}

pub fn os_codename() -> Result<String> {
    let text = fs::read_to_string("/etc/os-release")
        .map_err(|e| format!("cannot read /etc/os-release: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_string())
        .ok_or_else(|| {
            "no VERSION_CODENAME in /etc/os-release: the set-up expects Debian 12 (bookworm)".into()
        })
}

fn backports_suite() -> Result<String> {
    Ok(format!("{}-backports", os_codename()?))
}

/// The URI of the Debian archive the machine already uses.
pub fn debian_mirror() -> Result<String> {
    let codename = os_codename()?;
    let mut candidates = Vec::new();
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sources")
                && !e
                    .file_name()
                    .to_string_lossy()
                    .starts_with(OUR_SOURCES_PREFIX)
                && let Ok(t) = fs::read_to_string(&p)
            {
                candidates.extend(deb822_mirrors(&t, &codename));
            }
        }
    }
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        candidates.extend(one_line_mirrors(&t, &codename));
    }
    candidates.into_iter().next().ok_or_else(|| {
        format!("no apt source for `{codename}` found in /etc/apt; cannot add the extra suites")
    })
}

/// Mirrors of deb822 stanzas that carry `codename` (not its security suite).
fn deb822_mirrors(text: &str, codename: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let (Some(types), Some(uris), Some(suites)) =
            (field("Types:"), field("URIs:"), field("Suites:"))
        else {
            continue;
        };
        if types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == codename)
        {
            out.extend(uris.split_whitespace().map(String::from));
        }
    }
    out
}

fn one_line_mirrors(text: &str, codename: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().filter(|w| !w.starts_with('['));
            (w.next() == Some("deb")).then_some(())?;
            let uri = w.next()?;
            (w.next() == Some(codename)).then(|| uri.to_string())
        })
        .collect()
}

fn add_apt_sources() -> Result<()> {
    if Path::new(SOURCES_FILE).exists() {
        return Ok(());
    }
    let mirror = debian_mirror()?;
    let codename = os_codename()?;
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    let text = format!(
        "# Added by `cargo xtask setup` (spmc): backports for QEMU 10, trixie sources for TF-A 2.12.1.\n\
         Types: deb\nURIs: {mirror}\nSuites: {codename}-backports\nComponents: main\nSigned-By: {keyring}\n\n\
         Types: deb-src\nURIs: {mirror}\nSuites: trixie\nComponents: main\nSigned-By: {keyring}\n"
    );
    println!(
        "    adding {SOURCES_FILE} ({codename}-backports, trixie deb-src) on the machine's mirror"
    );
    fs::write(SOURCES_FILE, text).map_err(|e| format!("cannot write {SOURCES_FILE}: {e}"))?;
    apt_sources_changed();
    Ok(())
}

pub(crate) fn apt_install(pkgs: &[&str], suite: Option<&str>) -> Result<()> {
    println!("    installing: {}", pkgs.join(" "));
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args([
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
    ]);
    if let Some(s) = suite {
        cmd.args(["-t", s]);
    }
    sh::run(cmd.args(pkgs))
}

fn find_tfa_source(work: &Path) -> Option<PathBuf> {
    let dir = work.join("tf-a");
    fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("arm-trusted-firmware-2.12"))
                && p.join("Makefile").is_file()
                && p.join(".spmc-unpacked").is_file()
        })
}

/// `apt-get source arm-trusted-firmware/trixie`, with a fallback for a mirror
/// that serves the tarballs but not the `.dsc`: unpack and patch by hand.
fn fetch_tfa_source(work: &Path) -> Result<PathBuf> {
    let dir = work.join("tf-a");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    println!("    fetching TF-A source with apt-get source (trixie)");
    let fetched = sh::run(Command::new("apt-get").current_dir(&dir).args([
        "source",
        "-q",
        "arm-trusted-firmware/trixie",
    ]));
    let tree = match fetched {
        Ok(()) => unpacked_tree(&dir)?,
        Err(e) => {
            println!("    apt-get source did not unpack ({e}); unpacking the tarballs by hand");
            unpack_by_hand(&dir)?
        }
    };
    let version_ok = tree
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("arm-trusted-firmware-2.12"));
    if !version_ok {
        return Err(format!(
            "trixie's TF-A is {}, the build expects 2.12.x",
            tree.display()
        ));
    }
    fs::write(tree.join(".spmc-unpacked"), "").map_err(|e| e.to_string())?;
    Ok(tree)
}

pub(crate) fn unpacked_tree(dir: &Path) -> Result<PathBuf> {
    fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.join("Makefile").is_file())
        .ok_or_else(|| format!("no unpacked source tree in {}", dir.display()))
}

pub(crate) fn unpack_by_hand(dir: &Path) -> Result<PathBuf> {
    let files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .collect();
    let find = |suffix: &str| {
        files
            .iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .cloned()
            .ok_or_else(|| format!("apt-get source left no *{suffix} in {}", dir.display()))
    };
    // TF-A's upstream tarball is .xz, OP-TEE's .gz: tar reads both.
    let orig = find(".orig.tar.xz").or_else(|_| find(".orig.tar.gz"))?;
    let debian = find(".debian.tar.xz")?;
    verify_against_sources_index(&[&orig, &debian])?;
    sh::run(Command::new("tar").current_dir(dir).arg("xf").arg(&orig))?;
    let tree = unpacked_tree(dir)?;
    sh::run(
        Command::new("tar")
            .current_dir(&tree)
            .arg("xf")
            .arg(&debian),
    )?;
    let series = fs::read_to_string(tree.join("debian/patches/series")).unwrap_or_default();
    for patch in series
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let file = tree.join("debian/patches").join(patch);
        if !file.is_file() {
            return Err(format!("{patch}: not in debian/patches"));
        }
        apply_patch(&tree, &file, false)?;
    }
    Ok(tree)
}

/// Checks the tarballs' SHA-256 against the trixie Sources index apt fetched.
fn verify_against_sources_index(files: &[&Path]) -> Result<()> {
    let lists = fs::read_dir("/var/lib/apt/lists").map_err(|e| e.to_string())?;
    let mut index = String::new();
    for e in lists.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.contains("_trixie_") && n.ends_with("_Sources") {
            index = fs::read_to_string(e.path()).unwrap_or_default();
        }
    }
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let want = index
            .lines()
            .skip_while(|l| !l.starts_with("Checksums-Sha256:"))
            .find(|l| l.ends_with(&format!(" {name}")))
            .and_then(|l| l.split_whitespace().next())
            .ok_or_else(|| format!("{name} is not in the trixie Sources index"))?;
        let got = sh::output(Command::new("sha256sum").arg(f))?;
        if got.split_whitespace().next() != Some(want) {
            return Err(format!("{name}: SHA-256 does not match the Sources index"));
        }
    }
    Ok(())
}

fn qemu_major_version() -> Result<u32> {
    let v = sh::output(Command::new("qemu-system-aarch64").arg("--version"))?;
    v.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .and_then(|s| s.split('.').next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "cannot read QEMU's version from `{}`",
                v.lines().next().unwrap_or("")
            )
        })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_patch_file_is_applied_and_taken_out() {
        let tree = std::env::temp_dir().join(format!("xtask-patch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tree);
        fs::create_dir_all(tree.join("d")).unwrap();
        fs::write(tree.join("d/f.txt"), "one\n").unwrap();
        let diff = tree.join("p.diff");
        fs::write(
            &diff,
            "--- a/d/f.txt\n+++ b/d/f.txt\n@@ -1 +1 @@\n-one\n+two\n",
        )
        .unwrap();
        apply_patch(&tree, &diff, false).unwrap();
        assert_eq!(fs::read_to_string(tree.join("d/f.txt")).unwrap(), "two\n");
        apply_patch(&tree, &diff, true).unwrap();
        assert_eq!(fs::read_to_string(tree.join("d/f.txt")).unwrap(), "one\n");
        let _ = fs::remove_dir_all(&tree);
    }

    use super::*;

    #[test]
    fn finds_mirror_in_deb822() {
        let text = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                    Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            deb822_mirrors(text, "bookworm"),
            ["http://mirror.example/debian"]
        );
        assert!(deb822_mirrors(text, "trixie").is_empty());
    }

    #[test]
    fn finds_mirror_in_one_line_format() {
        let text = "deb [arch=amd64] http://m.example/debian bookworm main\ndeb http://m.example/sec bookworm-security main\n";
        assert_eq!(
            one_line_mirrors(text, "bookworm"),
            ["http://m.example/debian"]
        );
    }
}
