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
/// directory (no forced frame pointers, as there: nothing walks them).
const RUSTFLAGS: &str = "-C target-feature=-strict-align,-lse -C target-cpu=cortex-a72";

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
        .args(["-p", "platform-rpi4", "-p", "test-sp"]);
    cmd
}

/// The boot blob's layout (tf-a-integration/rpi4/spmc_manifest.dts): the
/// image at [`BL33_BASE`], the manifest at 0x30_0000, the trusted VMs'
/// packages from 0x40_0000, 256 KiB apart, in the manifest's order.
const MANIFEST_AT: u64 = 0x30_0000;
const PACKAGES_AT: u64 = 0x40_0000;
const PACKAGE_SLOT: u64 = 0x4_0000;
/// (name, image) of each trusted VM, in the manifest's `partitions` order.
const TRUSTED_VMS: [(&str, &str); 6] = [
    ("sp1", "test-sp.bin"),
    ("sp2", "test-sp-pkg.bin"),
    ("tpm", "test-sp.bin"),
    ("crash-data", "test-sp.bin"),
    ("crash-undef", "test-sp.bin"),
    ("vtee", "test-sp.bin"),
];

/// Compiles a device tree source.
fn dtc(src: &Path, out: &Path) -> Result<()> {
    sh::run(
        Command::new("dtc")
            .args(["-I", "dts", "-O", "dtb", "-o"])
            .arg(out)
            .arg(src),
    )
}

/// Builds `rpi4-kernel8.img`: the EL2 image, its manifest and the trusted
/// VMs' packages (TF-A's sptool, as TF-A's build makes them for QEMU virt)
/// at their fixed offsets from [`BL33_BASE`]. The Pi's firmware loads it
/// as the kernel (platform-rpi4/README.md); QEMU's loader does the same.
fn blob(env: &Env, dir: &Path, image: &Path) -> Result<PathBuf> {
    let integration = sh::root().join("tf-a-integration/rpi4");
    let out = target_dir().join("blob");
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut blob = fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let put = |blob: &mut Vec<u8>, at: u64, data: &[u8], what: &str| -> Result<()> {
        let off = (at - BL33_BASE) as usize;
        if blob.len() > off {
            return Err(format!(
                "{what}: the blob is {} bytes, over {at:#x}",
                blob.len()
            ));
        }
        blob.resize(off, 0);
        blob.extend_from_slice(data);
        Ok(())
    };
    let manifest = out.join("spmc_manifest.dtb");
    dtc(&integration.join("spmc_manifest.dts"), &manifest)?;
    let m = fs::read(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    if m.len() > 4096 {
        return Err(format!(
            "the rpi4 manifest is {} bytes, over 4 KiB",
            m.len()
        ));
    }
    put(&mut blob, MANIFEST_AT, &m, "manifest")?;
    for (i, (name, img)) in TRUSTED_VMS.iter().enumerate() {
        let dtb = out.join(format!("{name}.dtb"));
        dtc(
            &integration.join("partitions").join(format!("{name}.dts")),
            &dtb,
        )?;
        let pkg = out.join(format!("{name}.pkg"));
        sh::run(
            Command::new("python3")
                .arg(env.tfa_src.join("tools/sptool/sptool.py"))
                .arg("-i")
                .arg(format!("{}:{}", dir.join(img).display(), dtb.display()))
                .arg("-o")
                .arg(&pkg),
        )?;
        let p = fs::read(&pkg).map_err(|e| format!("{}: {e}", pkg.display()))?;
        if p.len() as u64 > PACKAGE_SLOT {
            return Err(format!(
                "{name}.pkg is {} bytes, over its 256 KiB slot",
                p.len()
            ));
        }
        put(&mut blob, PACKAGES_AT + i as u64 * PACKAGE_SLOT, &p, name)?;
    }
    let path = target_dir().join("rpi4-kernel8.img");
    fs::write(&path, blob).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The EL2 image's raw binary (`spmc-rpi4.bin`) of the profile `opts` picks.
pub fn image_bin(opts: &Options) -> PathBuf {
    let profile = if opts.release { "release" } else { "debug" };
    target_dir()
        .join(TARGET)
        .join(profile)
        .join("spmc-rpi4.bin")
}

/// Builds the EL2 image and the trusted VMs; returns the boot blob.
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
    crate::build::objcopy_binaries(
        &dir,
        &[
            ("spmc-rpi4", "spmc-rpi4.bin"),
            ("test-sp", "test-sp.bin"),
            ("test-sp-pkg", "test-sp-pkg.bin"),
        ],
    )?;
    let size = fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!(
        "    rpi4 EL2 image: {size} bytes ({:.1} KiB)",
        size as f64 / 1024.0
    );
    let blob = blob(env, &dir, &bin)?;
    timer.done();
    Ok(blob)
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
