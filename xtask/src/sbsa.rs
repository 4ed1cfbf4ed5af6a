//! QEMU sbsa-ref: the SPMC, the test partitions and the normal-world harness
//! built for that board (feature `sbsa`, in their own target directory so
//! that the virt images stay as they are), TF-A's `qemu_sbsa` platform with
//! our patch (tf-a-integration/sbsa/README.md), and the `sbsa` stage.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::build::{self, TfaBoard};
use crate::cli::Options;
use crate::qemu::{self, StageResult, StageSpec};
use crate::setup::{Env, TARGET};
use crate::sh::{self, Result};

/// TF-A's `qemu_sbsa` with the SPMD. BL1 runs from the secure flash at 0 and
/// finds the FIP right after its own 0x12000 bytes (`PLAT_QEMU_FIP_BASE`);
/// sbsa-ref's flash 0 is 256 MiB and QEMU wants the image that size. BL2
/// loads BL33 from the FIP instead of expecting firmware in flash 1
/// (`PRELOADED_BL33_BASE` empty).
pub const SBSA: TfaBoard = TfaBoard {
    plat: "qemu_sbsa",
    integration: "sbsa",
    extra_flags: &["PRELOADED_BL33_BASE="],
    fip_offset: 0x12000,
    flash_size: 256 << 20,
};

/// The crates built for sbsa-ref and the features that choose the board.
const PACKAGES: &[&str] = &["platform-qemu", "nwd-harness", "nwd-hypervisor", "test-sp"];
const FEATURES: &str = "platform-qemu/sbsa,nwd-harness/sbsa,nwd-hypervisor/sbsa,test-sp/sbsa";

/// Where the sbsa-ref images are built (`target/fw-sbsa`; the layout file
/// tf-a-integration/sbsa/sp_layout.json names the partition images there).
fn target_dir() -> PathBuf {
    sh::root().join("target/fw-sbsa")
}

/// `cargo <subcommand>` for the sbsa-ref crates and features. A build goes
/// to its own target directory (the images have the virt ones' names); a
/// lint (`clippy`) shares the virt build's, whose dependencies (the
/// standard library among them) it reuses, and leaves no images.
pub fn firmware_cargo(env: &Env, subcommand: &str) -> Command {
    let mut cmd = build::firmware_cargo(env, subcommand);
    if subcommand != "clippy" {
        cmd.env("CARGO_TARGET_DIR", target_dir());
    }
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    cmd.args(["--features", FEATURES]);
    cmd
}

/// Builds the sbsa-ref images and returns their directory (with `spmc.bin`,
/// `nwd-harness.bin`; the partition images are copied to `target/fw-sbsa`).
pub fn rust_images(env: &Env, opts: &Options) -> Result<PathBuf> {
    let profile = if opts.release { "release" } else { "debug" };
    sh::step(&format!("build: firmware crates for sbsa-ref ({profile})"));
    let timer = sh::Timer::start("sbsa-ref firmware build");
    let mut cmd = firmware_cargo(env, "build");
    build::release_profile(&mut cmd, opts);
    build::log_level(&mut cmd, opts);
    sh::run(&mut cmd)?;
    let dir = target_dir().join(TARGET).join(profile);
    crate::build::objcopy_binaries(
        &dir,
        &[
            ("spmc-qemu", "spmc.bin"),
            ("nwd-harness", "nwd-harness.bin"),
            ("nwd-hypervisor", "nwd-hypervisor.bin"),
            ("nwd-hypervisor-demo", "nwd-hypervisor-demo.bin"),
            ("test-sp", "test-sp.bin"),
            ("test-sp-pkg", "test-sp-pkg.bin"),
        ],
    )?;
    for name in ["test-sp.bin", "test-sp-pkg.bin"] {
        let dest = target_dir().join(name);
        fs::copy(dir.join(name), &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    let size = fs::metadata(dir.join("spmc.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "    SPMC image for sbsa-ref: {size} bytes ({:.1} KiB)",
        size as f64 / 1024.0
    );
    timer.done();
    Ok(dir)
}

/// sbsa-ref with a flash image: `-cpu max` (FEAT_SEL2), `memory` of RAM at
/// 1 TiB (the SPMC manifest's ns-memory states 2 GiB). Serial 0 is the
/// normal world's UART, serial 1 the secure one, as on virt.
pub fn base_command(flash: &Path, smp: u32, memory: &str) -> Command {
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(["-M", "sbsa-ref"])
        .args(["-cpu", "max"])
        .args(["-smp", &smp.to_string()])
        .args(["-m", memory])
        .args(["-nic", "none"])
        // sbsa-ref always has a bochs-display on PCIe, whose option ROM is in
        // a package the set-up does not install (seabios): no stage uses it.
        .args(["-global", "bochs-display.romfile="])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            flash.display()
        ));
    cmd
}

/// The `sbsa` stage: the normal-world harness (its `e2e` and `mem`
/// checks), then the reference hypervisor (the demo and the `vtee` checks),
/// over the SPMC on sbsa-ref; one summary `sbsa: N passed, M failed`.
pub fn stage(env: &Env, opts: &Options) -> Result<StageResult> {
    let dir = rust_images(env, opts)?;
    let flash = build::tfa_for(
        env,
        &SBSA,
        &dir.join("spmc.bin"),
        &dir.join("nwd-harness.bin"),
        "sbsa",
    )?;
    let run = qemu::run_stage(
        base_command(&flash, opts.smp, qemu::MEMORY),
        &StageSpec {
            name: "e2e",
            required: &["running at Secure EL2"],
            expected_fatal: &[],
            timeout: Duration::from_secs(opts.timeout_secs),
            panic_grace: None,
        },
    )?;
    let mem = qemu::section(&run, "e2e", "mem");
    let flash = build::tfa_for(
        env,
        &SBSA,
        &dir.join("spmc.bin"),
        &dir.join(crate::vtee::STAGE_IMAGE),
        "sbsa-vtee",
    )?;
    let vtee = qemu::run_stage(
        base_command(&flash, opts.smp, qemu::MEMORY),
        &StageSpec {
            name: "vtee",
            required: &["running at Secure EL2", "hypervisor: demo done"],
            expected_fatal: &[],
            timeout: Duration::from_secs(opts.timeout_secs),
            panic_grace: None,
        },
    )?;
    let mut res = StageResult {
        passed: run.passed + mem.passed + vtee.passed,
        failed: run.failed + mem.failed + vtee.failed,
        seconds: run.seconds + vtee.seconds,
        ..StageResult::default()
    };
    for (part, r) in [("e2e", run), ("mem", mem), ("vtee", vtee)] {
        println!("    sbsa {part}: {} passed, {} failed", r.passed, r.failed);
        res.problems
            .extend(r.problems.into_iter().map(|p| format!("{part}: {p}")));
    }
    println!("sbsa: {} passed, {} failed", res.passed, res.failed);
    Ok(res)
}

/// The flash image `cargo xtask run --board sbsa` boots: the four-user
/// demo, or with `--harness` the test harness.
pub fn flash(env: &Env, opts: &Options) -> Result<PathBuf> {
    let dir = rust_images(env, opts)?;
    let (bl33, variant) = if opts.harness {
        ("nwd-harness.bin", "sbsa-harness")
    } else {
        (crate::vtee::DEMO_IMAGE, "sbsa-demo")
    };
    build::tfa_for(env, &SBSA, &dir.join("spmc.bin"), &dir.join(bl33), variant)
}
