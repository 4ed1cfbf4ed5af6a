//! The `linux` stage: a client nobody here wrote. Debian's Linux 7.2 boots in the
//! normal world (U-Boot as BL33 loads it through QEMU's fw_cfg), loads the FF-A
//! driver and `tpm_crb_ffa` from a small initramfs, and its `/init`
//! (`tests/linux/init.sh`) prints `PASS`/`FAIL` lines and `linux: N passed, M failed`.
//!
//! Set-up: the arm64 kernel and modules come from trixie-backports, busybox-static
//! (arm64) and u-boot-qemu from the machine's own suite. They are fetched with
//! `apt-get download` into `<work>/linux/debs` and unpacked with `dpkg-deb -x`, so
//! a rerun downloads nothing. Fetching arm64 packages needs `dpkg
//! --add-architecture arm64` and one more apt source (trixie-backports, arm64
//! only) on the mirror the machine already uses; nothing is installed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cli::Options;
use crate::cpio::Cpio;
use crate::kmod;
use crate::qemu::{self, StageResult, StageSpec};
use crate::setup::{self, Env};
use crate::sh::{self, Result};

/// The kernel release of the packages (and of their `vermagic`).
const KERNEL_RELEASE: &str = "7.2.11+deb13-arm64";
/// The suite that has Linux 7.2 for trixie.
const KERNEL_SUITE: &str = "trixie-backports";
/// Our second apt sources file: the kernel's suite, arm64 indexes only.
const SOURCES_FILE: &str = "/etc/apt/sources.list.d/spmc-xtask-linux.sources";
/// The modules /init loads (their dependencies are added in front).
const MODULES: &[&str] = &["ffa-core", "ffa-module", "tpm_crb_ffa"];
/// The kernel command line. `quiet` keeps the boot log short; /init prints
/// the FF-A and TPM lines of dmesg itself.
const CMDLINE: &str = "console=ttyAMA0 quiet";
/// QEMU for this stage: 4 cores (Linux turns them all on: each cold boot
/// initialises that core's context of the MP partition sp2), and the RAM
/// every stage has (the SPMC manifest states it: `qemu::MEMORY`).
const SMP: u32 = 4;
const MEMORY: &str = qemu::MEMORY;
/// A Linux panic hangs the machine: stop QEMU this long after one.
const PANIC_GRACE: Duration = Duration::from_secs(5);

/// A Debian package the stage needs.
#[derive(Clone, Debug)]
struct Package {
    name: String,
    /// Architecture of the .deb (`arm64`, or `all`).
    arch: &'static str,
    /// Release to take it from (`apt-get download name/suite`), if not the default.
    suite: Option<&'static str>,
}

impl Package {
    /// The argument of `apt-get download`.
    fn spec(&self) -> String {
        let mut s = self.name.clone();
        if self.arch != "all" {
            s.push(':');
            s.push_str(self.arch);
        }
        if let Some(suite) = self.suite {
            s.push('/');
            s.push_str(suite);
        }
        s
    }

    /// True for the file name `apt-get download` gives this package.
    fn is_deb(&self, file_name: &str) -> bool {
        file_name
            .strip_prefix(&self.name)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|rest| {
                !rest.contains('/') && rest.ends_with(&format!("_{}.deb", self.arch))
            })
    }
}

fn packages() -> Vec<Package> {
    vec![
        Package {
            name: format!("linux-binary-{KERNEL_RELEASE}"),
            arch: "arm64",
            suite: Some(KERNEL_SUITE),
        },
        Package {
            name: format!("linux-modules-{KERNEL_RELEASE}"),
            arch: "arm64",
            suite: Some(KERNEL_SUITE),
        },
        Package {
            name: "busybox-static".into(),
            arch: "arm64",
            suite: None,
        },
        Package {
            name: "u-boot-qemu".into(),
            arch: "all",
            suite: None,
        },
    ]
}

/// The unpacked files the stage boots.
#[derive(Clone, Debug)]
pub struct Parts {
    /// The kernel (an uncompressed arm64 `Image`).
    pub kernel: PathBuf,
    /// `.../lib/modules/<release>/kernel`.
    pub modules: PathBuf,
    pub busybox: PathBuf,
    /// U-Boot for QEMU virt (arm64): BL33.
    pub uboot: PathBuf,
}

fn linux_dir() -> PathBuf {
    setup::work_dir().join("linux")
}

/// Fetches (once) and unpacks (once) the Debian packages of the stage.
pub fn ensure(opts: &Options) -> Result<Parts> {
    sh::step("set-up: Linux 7.2 client for the `linux` stage");
    let timer = sh::Timer::start("Linux set-up");
    let dir = linux_dir();
    let debs = dir.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    let all = packages();
    let missing: Vec<Package> = all
        .iter()
        .filter(|p| find_deb(&debs, p).is_none())
        .cloned()
        .collect();
    if missing.is_empty() {
        println!("    Debian packages: all in {}", debs.display());
    } else {
        download(opts, &debs, &missing)?;
    }
    let mut unpacked = BTreeMap::new();
    for p in &all {
        let deb = find_deb(&debs, p).ok_or_else(|| format!("{} vanished", p.name))?;
        unpacked.insert(
            p.name.clone(),
            unpack(&deb, &dir.join("pkgs").join(&p.name))?,
        );
    }
    let root = |name: &str| unpacked[name].clone();
    let kernel_root = root(&format!("linux-binary-{KERNEL_RELEASE}"));
    let modules_root = root(&format!("linux-modules-{KERNEL_RELEASE}"));
    let parts = Parts {
        kernel: first_existing(&[
            kernel_root.join(format!("usr/lib/modules/{KERNEL_RELEASE}/vmlinuz")),
            kernel_root.join(format!("boot/vmlinuz-{KERNEL_RELEASE}")),
        ])?,
        modules: first_existing(&[
            modules_root.join(format!("usr/lib/modules/{KERNEL_RELEASE}/kernel")),
            modules_root.join(format!("lib/modules/{KERNEL_RELEASE}/kernel")),
        ])?,
        busybox: first_existing(&[
            root("busybox-static").join("bin/busybox"),
            root("busybox-static").join("usr/bin/busybox"),
        ])?,
        uboot: first_existing(&[root("u-boot-qemu").join("usr/lib/u-boot/qemu_arm64/u-boot.bin")])?,
    };
    check_image(&parts.kernel)?;
    println!("    kernel: {}", parts.kernel.display());
    println!("    U-Boot (BL33): {}", parts.uboot.display());
    timer.done();
    Ok(parts)
}

fn find_deb(dir: &Path, p: &Package) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| p.is_deb(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    found.pop()
}

fn first_existing(candidates: &[PathBuf]) -> Result<PathBuf> {
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| {
            format!(
                "the unpacked packages have none of: {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// U-Boot's `booti` needs an uncompressed arm64 `Image` ("ARM\x64" at 0x38).
fn check_image(kernel: &Path) -> Result<()> {
    let mut head = [0u8; 64];
    let ok = fs::File::open(kernel)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head[0x38..0x3c] == b"ARM\x64";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not an uncompressed arm64 Image (no ARM\\x64 magic at 0x38)",
            kernel.display()
        ))
    }
}

/// Adds what apt needs (arm64, the kernel's suite), updates the indexes if
/// they lack the packages (at most once per run), and downloads.
fn download(opts: &Options, debs: &Path, missing: &[Package]) -> Result<()> {
    let names: Vec<String> = missing.iter().map(Package::spec).collect();
    println!("    to download: {}", names.join(", "));
    if opts.no_install || !setup::is_root() {
        return Err(format!(
            "the `linux` stage needs the Debian packages {} (arm64). Run `cargo xtask setup --linux` \
             as root: it enables the arm64 architecture in dpkg, adds {KERNEL_SUITE} (arm64 only) on \
             your existing Debian mirror and fetches them into {} with apt-get download",
            names.join(", "),
            debs.display()
        ));
    }
    let foreign = sh::output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if !foreign.split_whitespace().any(|a| a == "arm64") {
        println!("    adding the arm64 architecture to dpkg (to download arm64 packages)");
        sh::run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
        setup::apt_sources_changed();
    }
    if !Path::new(SOURCES_FILE).exists() {
        let mirror = setup::debian_mirror()?;
        println!("    adding {SOURCES_FILE} ({KERNEL_SUITE}, arm64 only) on the machine's mirror");
        fs::write(SOURCES_FILE, sources_text(&mirror))
            .map_err(|e| format!("cannot write {SOURCES_FILE}: {e}"))?;
        setup::apt_sources_changed();
    }
    if !indexes_present(&setup::os_codename()?) {
        setup::apt_sources_changed();
    }
    // Runs unless the lists were fetched after the last change in this run.
    setup::apt_update()?;
    let mut result = apt_download(debs, missing);
    if result.is_err() {
        println!("    download failed; updating the package indexes and retrying once");
        setup::apt_update_now()?;
        result = apt_download(debs, missing);
    }
    result.map_err(|e| {
        let codename = setup::os_codename().unwrap_or_default();
        let unknown: Vec<String> = missing
            .iter()
            .filter(|p| !apt_knows(p))
            .map(|p| format!("{} (from {})", p.spec(), p.suite.unwrap_or(&codename)))
            .collect();
        let which = if unknown.is_empty() {
            format!(
                "{} (apt knows them all; the download itself failed)",
                names.join(", ")
            )
        } else {
            format!("{}, which apt cannot find", unknown.join(", "))
        };
        format!(
            "cannot download {which}: {e}. Is {KERNEL_SUITE} on your Debian mirror, and does it \
             still carry Linux {KERNEL_RELEASE}? (`apt-cache policy {}` shows what apt sees)",
            missing[0].spec().split('/').next().unwrap_or_default()
        )
    })
}

/// True if apt's lists have the package (in its suite, if it names one).
fn apt_knows(p: &Package) -> bool {
    Command::new("apt-cache")
        .args(["show", "-q", &p.spec()])
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Package:")
        })
}

fn sources_text(mirror: &str) -> String {
    format!(
        "# Added by `cargo xtask` (spmc): Debian's Linux 7.2 (arm64) for the `linux` test stage.\n\
         Types: deb\nURIs: {mirror}\nSuites: {KERNEL_SUITE}\nComponents: main\nArchitectures: arm64\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
}

/// True if apt has the arm64 indexes of the kernel's suite and of `codename`.
fn indexes_present(codename: &str) -> bool {
    let Ok(entries) = fs::read_dir("/var/lib/apt/lists") else {
        return false;
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    [KERNEL_SUITE, codename].iter().all(|suite| {
        let wanted = format!("_dists_{suite}_main_binary-arm64_Packages");
        names.iter().any(|n| n.contains(&wanted))
    })
}

/// `apt-get download` into a scratch directory, moved into `debs` only when
/// apt succeeded, so an interrupted download never looks like a cached one.
fn apt_download(debs: &Path, pkgs: &[Package]) -> Result<()> {
    let incoming = debs.join("incoming");
    let _ = fs::remove_dir_all(&incoming);
    fs::create_dir_all(&incoming).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("apt-get");
    cmd.current_dir(&incoming)
        .args(["download", "-q"])
        // The files land in our work tree, which apt's sandbox user cannot write.
        .args(["-o", "APT::Sandbox::User=root"])
        .args(["-o", "Acquire::Retries=2"])
        .args([
            "-o",
            "Acquire::http::Timeout=30",
            "-o",
            "Acquire::https::Timeout=30",
        ])
        .args(pkgs.iter().map(Package::spec));
    sh::run(&mut cmd)?;
    for e in fs::read_dir(&incoming)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        fs::rename(e.path(), debs.join(e.file_name())).map_err(|e| e.to_string())?;
    }
    let _ = fs::remove_dir(&incoming);
    for p in pkgs {
        if find_deb(debs, p).is_none() {
            return Err(format!("apt-get download left no .deb of {}", p.spec()));
        }
    }
    Ok(())
}

/// Unpacks a .deb into `dest` unless that exact .deb is already unpacked there.
fn unpack(deb: &Path, dest: &Path) -> Result<PathBuf> {
    let marker = dest.join(".spmc-unpacked");
    let stamp = deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if fs::read_to_string(&marker).is_ok_and(|s| s == stamp) {
        return Ok(dest.to_path_buf());
    }
    println!("    unpacking {stamp}");
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    sh::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest))?;
    fs::write(&marker, stamp).map_err(|e| e.to_string())?;
    Ok(dest.to_path_buf())
}

/// Every module file under `kernel/`: normalized name -> path.
fn module_index(modules: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut stack = vec![modules.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = module_name(&e.file_name().to_string_lossy()) {
                index.insert(kmod::normalize(name), path);
            }
        }
    }
    Ok(index)
}

/// `ffa-core.ko.xz` -> `ffa-core`.
fn module_name(file_name: &str) -> Option<&str> {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file_name.strip_suffix(ext))
}

/// A module's ELF bytes: busybox `insmod` cannot load compressed modules.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    if name.ends_with(".ko") {
        return fs::read(path).map_err(|e| format!("{name}: {e}"));
    }
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        "gzip"
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run {tool} to decompress {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{tool} -dc {name}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// Builds the initramfs (cpio newc, uncompressed) and returns its path.
pub fn initramfs(parts: &Parts) -> Result<PathBuf> {
    sh::step("build: initramfs for the `linux` stage");
    initramfs_for(
        parts,
        MODULES,
        &sh::root().join("tests/linux/init.sh"),
        &[],
        "initramfs.cpio",
    )
}

/// What every stage's `init` sources first (`. /etc/init-common.sh`): the
/// mounts, the PASS/FAIL counters and the module loading.
const INIT_COMMON: &str = "tests/linux/init-common.sh";

/// An initramfs of busybox, `init` (the script at `init_script`) with
/// [`INIT_COMMON`], the
/// modules `modules` with their dependencies in load order (listed in
/// /etc/modules) and `extra` files (path, mode, contents), written to
/// `<work>/linux/<name>`.
pub fn initramfs_for(
    parts: &Parts,
    modules: &[&str],
    init_script: &Path,
    extra: &[(&str, u32, Vec<u8>)],
    name: &str,
) -> Result<PathBuf> {
    let index = module_index(&parts.modules)?;
    let mut loaded: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let order = kmod::load_order(modules, |name| {
        let path = index
            .get(&kmod::normalize(name))
            .ok_or_else(|| format!("not in {}", parts.modules.display()))?;
        let elf = read_module(path)?;
        let info = kmod::modinfo(&elf)?;
        let vermagic = kmod::field(&info, "vermagic").unwrap_or("");
        if vermagic.split_whitespace().next() != Some(KERNEL_RELEASE) {
            return Err(format!(
                "built for `{vermagic}`, not for the kernel {KERNEL_RELEASE}"
            ));
        }
        let deps = kmod::depends(&info);
        loaded.insert(name.to_string(), elf);
        Ok(deps)
    })?;
    println!("    modules, in load order: {}", order.join(" "));

    let init = fs::read(init_script).map_err(|e| format!("{}: {e}", init_script.display()))?;
    let common_script = sh::root().join(INIT_COMMON);
    let common =
        fs::read(&common_script).map_err(|e| format!("{}: {e}", common_script.display()))?;
    let busybox =
        fs::read(&parts.busybox).map_err(|e| format!("{}: {e}", parts.busybox.display()))?;

    let mut c = Cpio::new();
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp",
    ] {
        c.dir(d, 0o755)?;
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    c.char_dev("dev/console", 0o600, 5, 1)?;
    c.file("bin/busybox", 0o755, &busybox)?;
    c.symlink("bin/sh", "busybox")?;
    c.file("init", 0o755, &init)?;
    c.file("etc/init-common.sh", 0o644, &common)?;
    for name in &order {
        c.file(&format!("lib/modules/{name}.ko"), 0o644, &loaded[name])?;
    }
    c.file(
        "etc/modules",
        0o644,
        format!("{}\n", order.join("\n")).as_bytes(),
    )?;
    for (path, mode, data) in extra {
        c.file(path, *mode, data)?;
    }
    let image = c.finish();
    let out = linux_dir().join(name);
    fs::write(&out, &image).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "    {} ({:.1} MiB)",
        out.display(),
        image.len() as f64 / (1024.0 * 1024.0)
    );
    Ok(out)
}

/// The whole stage: set-up, initramfs, TF-A with U-Boot as BL33, QEMU.
pub fn stage(env: &Env, opts: &Options, spmc_bin: &Path) -> Result<StageResult> {
    let parts = ensure(opts)?;
    let initrd = initramfs(&parts)?;
    let flash = crate::build::tfa(env, spmc_bin, &parts.uboot, "linux")?;
    let mut cmd = qemu::base_command(&flash, SMP, MEMORY);
    cmd.arg("-kernel")
        .arg(&parts.kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", CMDLINE]);
    qemu::run_stage(
        cmd,
        &StageSpec {
            name: "linux",
            required: &["running at Secure EL2", "Starting kernel"],
            expected_fatal: &[],
            timeout: Duration::from_secs(opts.timeout_secs),
            panic_grace: Some(PANIC_GRACE),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_specs() {
        let p = packages();
        assert_eq!(
            p[0].spec(),
            "linux-binary-7.2.11+deb13-arm64:arm64/trixie-backports"
        );
        assert_eq!(p[2].spec(), "busybox-static:arm64");
        assert_eq!(p[3].spec(), "u-boot-qemu");
    }

    #[test]
    fn cached_deb_names() {
        let p = packages();
        assert!(p[0].is_deb("linux-binary-7.2.11+deb13-arm64_7.2.11-1~bpo13+1_arm64.deb"));
        assert!(!p[0].is_deb("linux-binary-7.2.11+deb13-arm64_7.2.11-1~bpo13+1_amd64.deb"));
        assert!(!p[1].is_deb("linux-binary-7.2.11+deb13-arm64_7.2.11-1~bpo13+1_arm64.deb"));
        assert!(p[2].is_deb("busybox-static_1%3a1.35.0-4+deb12u1+b1_arm64.deb"));
        assert!(!p[2].is_deb("busybox-static_1%3a1.35.0-4+deb12u1+b1_arm64.deb.part"));
        assert!(p[3].is_deb("u-boot-qemu_2023.01+dfsg-2+deb12u3_all.deb"));
        assert!(!p[3].is_deb("u-boot-qemu-extra_1_all.deb"));
    }

    #[test]
    fn module_file_names() {
        assert_eq!(module_name("ffa-core.ko.xz"), Some("ffa-core"));
        assert_eq!(module_name("tpm_crb_ffa.ko"), Some("tpm_crb_ffa"));
        assert_eq!(module_name("modules.order"), None);
    }

    const INIT_SCRIPTS: [&str; 3] = [
        "tests/linux/init.sh",
        "tests/linux/optee-init.sh",
        INIT_COMMON,
    ];

    fn script(path: &str) -> String {
        fs::read_to_string(sh::root().join(path)).unwrap()
    }

    #[test]
    fn init_scripts_are_valid_sh() {
        for p in INIT_SCRIPTS {
            let path = sh::root().join(p);
            let status = Command::new("sh").arg("-n").arg(&path).status().unwrap();
            assert!(status.success(), "sh -n {}", path.display());
        }
    }

    #[test]
    fn init_scripts_keep_to_the_stage_format() {
        for p in INIT_SCRIPTS {
            // The xtask fails a stage on any line with this word: no script
            // may print it when nothing went wrong.
            assert!(!script(p).to_ascii_lowercase().contains("panic"), "{p}");
        }
        let common = script(INIT_COMMON);
        assert!(common.contains(r#"echo "PASS $1""#));
        assert!(common.contains(r#"echo "FAIL $1: $2""#));
        // The modules list the xtask writes.
        assert!(common.contains("/etc/modules"));
        for (p, stage) in [(INIT_SCRIPTS[0], "linux"), (INIT_SCRIPTS[1], "optee")] {
            let s = script(p);
            assert!(s.contains(". /etc/init-common.sh\n"), "{p}");
            assert!(s.contains("\nload_modules\n"), "{p}");
            assert!(
                s.contains(&format!(
                    r#"echo "{stage}: $passed passed, $failed failed""#
                )),
                "{p}"
            );
            assert!(s.contains("poweroff -f"), "{p}");
        }
    }

    #[test]
    fn sources_stanza_is_arm64_only() {
        let t = sources_text("http://mirror.example/debian");
        assert!(t.contains("URIs: http://mirror.example/debian\n"));
        assert!(t.contains("Suites: trixie-backports\n"));
        assert!(t.contains("Architectures: arm64\n"));
        assert!(t.contains("Types: deb\n"));
    }
}
