//! Raspberry Pi 4 on QEMU 10's `raspi4b`: TF-A's `rpi4` platform (BL31 only,
//! as the Pi's armstub) and our EL2 image (platform-rpi4) as its BL33, and
//! the `rpi4` stage (docs/rpi4.md).
//!
//! QEMU enters an ELF given to `-kernel` at EL3 on this machine, so BL31's
//! ELF starts there as it would from the armstub; the EL2 image is loaded
//! where the rpi4 port enters BL33 (0x80000, the Pi firmware's kernel
//! address), and TF-A's PSCI SYSTEM_OFF (a PM watchdog reset with the halt
//! mark) ends QEMU run with `-no-reboot`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::build;
use crate::cli::Options;
use crate::qemu::{self, StageResult, StageSpec};
use crate::setup::{Env, TARGET};
use crate::sh::{self, Result};

/// Where TF-A's rpi4 port enters BL33 (`PRELOADED_BL33_BASE`; the Pi
/// firmware's `kernel_address`) and the EL2 image is linked
/// (platform-rpi4/rpi4.ld).
pub const BL33_BASE: u64 = 0x8_0000;

/// The Cortex-A72 is Armv8.0: no LSE atomics (the QEMU virt images'
/// `+lse`, .cargo/config.toml, would be undefined instructions here). These
/// flags replace the config's for the rpi4 build, in its own target
/// directory.
const RUSTFLAGS: &str =
    "-C target-feature=-strict-align,-lse -C target-cpu=cortex-a72 -C force-frame-pointers=yes";

/// TF-A's rpi4 build options: BL31 alone (RESET_TO_BL31), entering BL33 at
/// [`BL33_BASE`] whatever the armstub's mailbox says (no GPU firmware fills
/// it under QEMU).
fn tfa_flags() -> Vec<String> {
    vec![
        "CROSS_COMPILE=aarch64-linux-gnu-".into(),
        "PLAT=rpi4".into(),
        "DEBUG=0".into(),
        format!("PRELOADED_BL33_BASE={BL33_BASE:#x}"),
        "BUILD_STRING=spmc-xtask".into(),
    ]
}

fn target_dir() -> PathBuf {
    sh::root().join("target/fw-rpi4")
}

/// `cargo <subcommand>` for platform-rpi4 (A72 flags, own target directory).
pub fn firmware_cargo(env: &Env, subcommand: &str) -> Command {
    let mut cmd = build::firmware_cargo(env, subcommand);
    cmd.env("CARGO_TARGET_DIR", target_dir())
        .env("RUSTFLAGS", RUSTFLAGS)
        .args(["-p", "platform-rpi4"]);
    cmd
}

/// Builds the EL2 image; returns its raw binary.
pub fn rust_image(env: &Env, opts: &Options) -> Result<PathBuf> {
    let profile = if opts.release { "release" } else { "debug" };
    sh::step(&format!(
        "build: platform-rpi4 for the Cortex-A72 ({profile})"
    ));
    let timer = sh::Timer::start("rpi4 firmware build");
    let mut cmd = firmware_cargo(env, "build");
    if opts.release {
        cmd.arg("--release");
    }
    cmd.env("SPMC_LOG", &opts.log);
    sh::run(&mut cmd)?;
    let dir = target_dir().join(TARGET).join(profile);
    let bin = dir.join("spmc-rpi4.bin");
    sh::run(
        Command::new("aarch64-linux-gnu-objcopy")
            .args(["-O", "binary"])
            .arg(dir.join("spmc-rpi4"))
            .arg(&bin),
    )?;
    let size = fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!(
        "    rpi4 EL2 image: {size} bytes ({:.1} KiB)",
        size as f64 / 1024.0
    );
    timer.done();
    Ok(bin)
}

/// Builds TF-A's rpi4 BL31; returns its ELF (what QEMU's `-kernel` takes;
/// on a real board `bl31.bin` is the armstub).
pub fn tfa(env: &Env) -> Result<PathBuf> {
    sh::step("build: TF-A 2.12.1 (rpi4): BL31 as the armstub, our image as BL33");
    let timer = sh::Timer::start("TF-A rpi4 build");
    let out = env.work.join("tfa-build").join("rpi4");
    let flags = tfa_flags();
    let stamp = out.join("xtask-flags");
    let stamp_text = flags.join(" ");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(stamp_text.as_str()) {
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        fs::write(&stamp, &stamp_text).map_err(|e| format!("{}: {e}", stamp.display()))?;
    }
    let mut cmd = Command::new("make");
    cmd.current_dir(&env.tfa_src)
        .arg(format!(
            "-j{}",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        ))
        .args(&flags)
        .arg(format!("BUILD_BASE={}", out.display()))
        .arg("bl31");
    sh::run(&mut cmd)?;
    timer.done();
    Ok(out.join("rpi4/release/bl31/bl31.elf"))
}

/// raspi4b (4 Cortex-A72, 2 GiB, GIC-400): BL31's ELF entered at EL3, the
/// EL2 image at [`BL33_BASE`].
pub fn base_command(bl31: &Path, image: &Path) -> Command {
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(["-M", "raspi4b"])
        .arg("-kernel")
        .arg(bl31)
        .arg("-device")
        .arg(format!(
            "loader,file={},addr={BL33_BASE:#x},force-raw=on",
            image.display()
        ))
        // TF-A's SYSTEM_OFF on this board is a watchdog reset.
        .arg("-no-reboot");
    cmd
}

/// The `rpi4` stage: boots the image on raspi4b and counts its checks.
pub fn stage(env: &Env, opts: &Options) -> Result<StageResult> {
    let image = rust_image(env, opts)?;
    let bl31 = tfa(env)?;
    qemu::run_stage(
        base_command(&bl31, &image),
        &StageSpec {
            name: "rpi4",
            required: &["spmc core at non-secure EL2"],
            expected_fatal: &[],
            timeout: Duration::from_secs(opts.timeout_secs),
            panic_grace: None,
        },
    )
}

/// `cargo xtask run --board rpi4`.
pub fn run_interactive(env: &Env, opts: &Options) -> Result<()> {
    let image = rust_image(env, opts)?;
    let bl31 = tfa(env)?;
    sh::step("run: booting QEMU raspi4b: TF-A rpi4, our image at non-secure EL2 (Ctrl-a x quits)");
    let mut cmd = base_command(&bl31, &image);
    qemu::serial_args(&mut cmd, true);
    if opts.gdb {
        cmd.args(["-s", "-S"]);
    }
    sh::run_on_terminal(&mut cmd)
}
