//! OP-TEE OS 4.5 as an S-EL1 secure partition under our S-EL2 SPMC (the
//! `optee` stage; docs/optee.md).
//!
//! Source: Debian trixie's `optee-os` (4.5.x) through `apt-get source`, the
//! way [`crate::setup`] fetches TF-A's (trixie deb-src on the machine's own
//! mirror, the tarballs unpacked and Debian's patches applied by hand when
//! the mirror serves no `.dsc`). A mirror that serves none of its files
//! leaves one way: `SPMC_OPTEE_SRC=<an OP-TEE OS 4.5 source tree>`, which
//! is then used as it is (and said so).
//!
//! Build dependencies (Debian's `Build-Depends` of optee-os that our build
//! uses): the aarch64 cross GCC and `dtc` (already there for TF-A),
//! `python3-pyelftools` and `python3-cryptography`. The build runs Debian's
//! `/usr/bin/python3`, whatever `python3` comes first on `PATH`, since the
//! modules are Debian's. Our client (tests/optee-client) needs
//! `libc6-dev-arm64-cross`.
//!
//! The image: OP-TEE's `tee-raw.bin` (core only, no pager), copied to
//! `target/fw/optee.bin` where `tf-a-integration/qemu-optee/sp_layout.json`
//! names it for TF-A's sptool.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::Options;
use crate::setup::{self, Env};
use crate::sh::{self, Result};

/// Debian packages OP-TEE's build needs beyond TF-A's, and (last) what our
/// static TEE client needs: aarch64 glibc and `<linux/tee.h>`.
const BUILD_PACKAGES: &[&str] = &[
    "python3-pyelftools",
    "python3-cryptography",
    "libc6-dev-arm64-cross",
];

/// The version the configuration below was written for.
const VERSION_PREFIX: &str = "optee-os-4.5";

/// TF-A 2.12.1 loads an SP package of at most this many bytes
/// (`ARM_SP_MAX_SIZE`); the image starts 0x4000 into the package.
const PACKAGE_MAX: u64 = 0xb_0000;
const IMAGE_OFFSET: u64 = 0x4000;

/// OP-TEE's configuration (docs/optee.md says why each is what it is).
pub fn config() -> Vec<String> {
    [
        "PLATFORM=vexpress-qemu_armv8a",
        "CFG_ARM64_core=y",
        "ta-targets=ta_arm64",
        // An S-EL1 partition under an S-EL2 SPMC, FF-A v1.1 to it.
        "CFG_CORE_SEL2_SPMC=y",
        // Its link address: 0x4000 into its package at IPA 0x0e300000
        // (partitions/optee.dts load-address). With
        // CFG_CORE_PHYS_RELOCATABLE (default with SEL2_SPMC) it takes
        // load-address and mem-size from its manifest as its memory.
        "CFG_TZDRAM_START=0x0e304000",
        "CFG_TZDRAM_SIZE=0x003fc000",
        // No GIC driver of its own under an SPMC (conf.mk's default for
        // SEL2_SPMC); no Hafnium paravirtualised interrupt controller
        // either: our SPMC does not implement Hafnium's HF_INTERRUPT_* calls.
        "CFG_CORE_HAFNIUM_INTC=n",
        "CFG_TEE_CORE_NB_CORE=4",
        // No early TA (the PKCS#11 TA would be 200 KiB more); the
        // embedded tests' pseudo-TA is what the client invokes.
        "CFG_PKCS11_TA=n",
        "CFG_ENABLE_EMBEDDED_TESTS=y",
        // Info level: its boot lines on the secure console.
        "CFG_TEE_CORE_LOG_LEVEL=2",
        // Its version and revision from the source, not from the git
        // repository the build directory happens to sit in (this one).
        "TEE_IMPL_VERSION=4.5.0",
        "CFG_OS_REV_REPORTS_GIT_SHA1=n",
        "CROSS_COMPILE=aarch64-linux-gnu-",
        "CROSS_COMPILE64=aarch64-linux-gnu-",
        "PYTHON3=/usr/bin/python3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn optee_dir(env: &Env) -> PathBuf {
    env.work.join("optee")
}

/// Installs OP-TEE's build dependencies when missing (saying what): by
/// `cargo xtask setup`, and by the `optee` stage before its build.
pub fn ensure_packages(opts: &Options) -> Result<()> {
    let missing: Vec<&str> = BUILD_PACKAGES
        .iter()
        .copied()
        .filter(|p| !setup::dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("    to install (OP-TEE's build): {}", missing.join(", "));
    if opts.no_install || !setup::is_root() {
        return Err(format!(
            "missing: {}: run `cargo xtask setup` as root or install them",
            missing.join(", ")
        ));
    }
    setup::apt_update()?;
    setup::apt_install(&missing, None)
}

/// The OP-TEE source tree: `SPMC_OPTEE_SRC`, an unpacked one of ours, or
/// trixie's, fetched now.
pub fn source(env: &Env) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SPMC_OPTEE_SRC") {
        let dir = PathBuf::from(dir);
        if !dir.join("core/arch/arm/kernel/thread_spmc.c").is_file() {
            return Err(format!(
                "SPMC_OPTEE_SRC={} is not an OP-TEE OS source tree",
                dir.display()
            ));
        }
        println!(
            "    OP-TEE source: {} (SPMC_OPTEE_SRC, not Debian's)",
            dir.display()
        );
        return Ok(dir);
    }
    let dir = optee_dir(env).join("src");
    if let Some(tree) = unpacked(&dir) {
        return Ok(tree);
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    println!("    fetching OP-TEE OS source with apt-get source (trixie)");
    setup::apt_update()?;
    let fetched = sh::run(Command::new("apt-get").current_dir(&dir).args([
        "source",
        "-q",
        "optee-os/trixie",
    ]));
    let tree = match fetched {
        Ok(()) => setup::unpacked_tree(&dir)?,
        Err(e) => {
            println!("    apt-get source did not unpack ({e}); unpacking the tarballs by hand");
            setup::unpack_by_hand(&dir).map_err(|e2| {
                format!(
                    "Debian's optee-os source could not be had ({e2}). If the mirror serves \
                     none of its files, point SPMC_OPTEE_SRC at an OP-TEE OS 4.5 source tree"
                )
            })?
        }
    };
    if !tree
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(VERSION_PREFIX))
    {
        return Err(format!(
            "trixie's OP-TEE is {}, the build expects 4.5.x",
            tree.display()
        ));
    }
    fs::write(tree.join(".spmc-unpacked"), "").map_err(|e| e.to_string())?;
    Ok(tree)
}

fn unpacked(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(VERSION_PREFIX))
                && p.join(".spmc-unpacked").is_file()
        })
}

/// Builds OP-TEE OS and puts its image at `target/fw/optee.bin`.
pub fn build(env: &Env, opts: &Options) -> Result<PathBuf> {
    sh::step("build: OP-TEE OS 4.5 (S-EL1 partition, CFG_CORE_SEL2_SPMC)");
    let timer = sh::Timer::start("OP-TEE build");
    ensure_packages(opts)?;
    let src = source(env)?;
    let out = optee_dir(env).join("out");
    let flags = config();
    // OP-TEE's make notices changed CFG_ flags only in part: start over.
    let stamp = optee_dir(env).join("xtask-flags");
    let stamp_text = format!("{}\n{}", src.display(), flags.join(" "));
    if fs::read_to_string(&stamp).ok().as_deref() != Some(stamp_text.as_str()) {
        let _ = fs::remove_dir_all(&out);
    }
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    // Its scripts run `python3` from PATH: Debian's, which has pyelftools.
    let path = std::env::var("PATH").unwrap_or_default();
    sh::run(
        Command::new("make")
            .current_dir(&src)
            .env("PATH", format!("/usr/bin:{path}"))
            .arg(format!(
                "-j{}",
                std::thread::available_parallelism().map_or(2, |n| n.get())
            ))
            .arg(format!("O={}", out.display()))
            .args(&flags),
    )?;
    fs::write(&stamp, &stamp_text).map_err(|e| format!("{}: {e}", stamp.display()))?;
    let raw = out.join("core/tee-raw.bin");
    let size = fs::metadata(&raw)
        .map_err(|e| format!("{}: {e}", raw.display()))?
        .len();
    if size > PACKAGE_MAX - IMAGE_OFFSET {
        return Err(format!(
            "OP-TEE's image is {size} bytes; TF-A loads packages of at most {PACKAGE_MAX:#x}"
        ));
    }
    let dest = sh::root().join("target/fw/optee.bin");
    fs::create_dir_all(sh::root().join("target/fw")).map_err(|e| e.to_string())?;
    fs::copy(&raw, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    println!(
        "    OP-TEE image: {size} bytes ({:.1} KiB)",
        size as f64 / 1024.0
    );
    timer.done();
    Ok(dest)
}

/// The modules the `optee` stage's /init loads (dependencies in front).
const MODULES: &[&str] = &["ffa-core", "ffa-module", "tee", "optee"];

/// Cross-compiles our TEE client (`tests/optee-client/optee-client.c`),
/// static, for the initramfs.
fn client() -> Result<Vec<u8>> {
    let src = sh::root().join("tests/optee-client/optee-client.c");
    let out = sh::root().join("target/fw/optee-client");
    sh::run(
        Command::new("aarch64-linux-gnu-gcc")
            .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src),
    )?;
    fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))
}

/// The `optee` stage: OP-TEE OS as the secure partition, Debian's Linux 7.2
/// with `tee` and `optee` over FF-A, our client on every core
/// (`tests/linux/optee-init.sh`).
pub fn stage(env: &Env, opts: &Options, spmc_bin: &Path) -> Result<crate::qemu::StageResult> {
    use crate::qemu::{self, StageSpec};
    use std::time::Duration;
    build(env, opts)?;
    let parts = crate::linux::ensure(opts)?;
    sh::step("build: initramfs for the `optee` stage");
    let client = client()?;
    let initrd = crate::linux::initramfs_for(
        &parts,
        MODULES,
        &sh::root().join("tests/linux/optee-init.sh"),
        &[("bin/optee-client", 0o755, client)],
        "initramfs-optee.cpio",
    )?;
    let flash = crate::build::tfa_for(
        env,
        &crate::build::VIRT_OPTEE,
        spmc_bin,
        &parts.uboot,
        "optee",
    )?;
    let mut cmd = qemu::base_command(&flash, 4, qemu::MEMORY);
    cmd.arg("-kernel")
        .arg(&parts.kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyAMA0 quiet"]);
    let res = qemu::run_stage(
        cmd,
        &StageSpec {
            name: "optee",
            // OP-TEE's secondary contexts each see their own core number
            // (MPIDR_EL1 through VMPIDR_EL2: spmc::vcpu::vmpidr).
            required: &[
                "running at Secure EL2",
                "Secondary CPU 1 initializing",
                "Secondary CPU 2 initializing",
                "Secondary CPU 3 initializing",
                "Starting kernel",
            ],
            expected_fatal: &[],
            timeout: Duration::from_secs(opts.timeout_secs),
            panic_grace: Some(Duration::from_secs(5)),
        },
    )?;
    // The figures come from a second boot, after the checks, whatever
    // they gave: a benchmark never fails the stage.
    let mut cmd = qemu::base_command(&flash, 4, qemu::MEMORY);
    cmd.arg("-kernel")
        .arg(&parts.kernel)
        .arg("-initrd")
        .arg(&initrd);
    bench(cmd, Duration::from_secs(opts.timeout_secs.max(600)));
    Ok(res)
}

/// The SPMC's boot line that carries the counter's advance from its entry
/// (platform-qemu `primary`): `init done <ticks> counter ticks (<ns> ns)
/// after the SPMC's entry, ...`.
pub fn boot_figure(line: &str) -> Option<u64> {
    ns_after(line, "init done ")
}

/// The nanoseconds of an SPMC boot line `<what><ticks> counter ticks (<ns>
/// ns) after the SPMC's entry`.
fn ns_after(line: &str, what: &str) -> Option<u64> {
    let rest = &line[line.find(what)?..];
    let ns = rest.split_once(" counter ticks (")?.1.split_once(" ns)")?.0;
    ns.parse().ok()
}

/// The stage's benchmark boot: the same firmware, kernel and initramfs
/// under `-icount shift=0` (guest time advances one nanosecond per
/// instruction), Linux on one core (`maxcpus=1`: cores 1-3 stay off and
/// execute nothing), /init running only `optee-client bench`
/// (`optee_bench` on the command line). Prints
/// - `bench: optee_boot: N instructions`: from the SPMC's first instruction
///   to OP-TEE's first FFA_MSG_WAIT (OP-TEE is the only partition of this
///   layout, so the SPMC's "init done" is that MSG_WAIT's handling), and
///   `optee_boot_spmc_part`, its part up to OP-TEE's first instruction;
/// - `bench: optee_invoke_round_trip: N instructions`: the client's median
///   invoke, Linux's share included (docs/optee.md "Benchmarks").
///
/// The firmware is the stage's (a dev build of the SPMC unless `--release`).
/// Nothing here fails the stage: a missing figure is printed as `failed`.
fn bench(mut cmd: Command, timeout: std::time::Duration) {
    use std::process::Stdio;
    use std::time::Instant;
    sh::step("bench: OP-TEE under -icount shift=0 (optee_boot, optee_invoke_round_trip)");
    cmd.args(["-icount", "shift=0"])
        .args(["-append", "console=ttyAMA0 quiet maxcpus=1 optee_bench"]);
    crate::qemu::serial_args(&mut cmd, false);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut figures: Vec<String> = Vec::new();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            println!("    bench: cannot start QEMU: {e}");
            return;
        }
    };
    let Some(stdout) = child.stdout.take() else {
        println!("    bench: no QEMU stdout");
        return;
    };
    let lines = crate::qemu::Lines::of(vec![Box::new(stdout)]);
    let deadline = Instant::now() + timeout;
    loop {
        match lines.next_before(deadline) {
            Ok(Some(line)) => {
                if let Some(ns) = boot_figure(&line) {
                    figures.push(format!("bench: optee_boot: {ns} instructions"));
                    println!("{line}");
                } else if let Some(ns) = ns_after(&line, "partitions start ") {
                    // The SPMC's share of `optee_boot`: until OP-TEE's
                    // first instruction.
                    figures.push(format!("bench: optee_boot_spmc_part: {ns} instructions"));
                    println!("{line}");
                } else if line.starts_with("bench:") || line.starts_with("optee-client: bench") {
                    println!("{line}");
                    if line.starts_with("bench:") {
                        figures.push(line);
                    }
                }
            }
            Ok(None) => break,
            Err(crate::qemu::TimedOut) => {
                let _ = child.kill();
                println!("    bench: timed out after {} s", timeout.as_secs());
                break;
            }
        }
    }
    let _ = child.wait();
    for name in ["optee_boot", "optee_invoke_round_trip"] {
        if !figures
            .iter()
            .any(|f| f.starts_with(&format!("bench: {name}:")))
        {
            figures.push(format!("bench: {name}: failed (no figure)"));
        }
    }
    sh::step("bench: OP-TEE figures");
    for f in &figures {
        println!("    {f}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_figure_reads_the_spmcs_init_line() {
        assert_eq!(
            boot_figure(
                "INFO  init done 123456 counter ticks (123456 ns) after the SPMC's entry, heap in use 10 bytes; waiting for messages"
            ),
            Some(123456)
        );
        assert_eq!(boot_figure("init done, heap in use 10 bytes"), None);
        assert_eq!(
            ns_after(
                "INFO  partitions start 42 counter ticks (42 ns) after the SPMC's entry",
                "partitions start "
            ),
            Some(42)
        );
    }

    /// The link address is 0x4000 into the package at the manifest's
    /// load-address, and TZDRAM ends where mem-size does: OP-TEE then runs
    /// where it was linked.
    #[test]
    fn link_address_matches_the_manifest() {
        let dts =
            fs::read_to_string(sh::root().join("tf-a-integration/qemu-optee/partitions/optee.dts"))
                .unwrap();
        let cell = |name: &str| -> u64 {
            let line = dts
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{name} =")))
                .unwrap();
            let inner = &line[line.find('<').unwrap() + 1..line.find('>').unwrap()];
            inner.split_whitespace().fold(0u64, |acc, w| {
                (acc << 32) | u64::from_str_radix(w.trim_start_matches("0x"), 16).unwrap()
            })
        };
        let flag = |name: &str| -> u64 {
            let f = config()
                .into_iter()
                .find(|f| f.starts_with(&format!("{name}=")))
                .unwrap();
            u64::from_str_radix(f.split("=0x").nth(1).unwrap(), 16).unwrap()
        };
        let load = cell("load-address");
        let offset = cell("entrypoint-offset");
        let size = cell("mem-size");
        assert_eq!(flag("CFG_TZDRAM_START"), load + offset);
        assert_eq!(
            flag("CFG_TZDRAM_START") + flag("CFG_TZDRAM_SIZE"),
            load + size
        );
    }
}
