//! Builds the firmware: the Rust images (SPMC, test images) and TF-A around them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::Options;
use crate::setup::{Env, TARGET, Toolchain};
use crate::sh::{self, Result};

/// A flash image for QEMU and what went into it.
#[derive(Clone, Debug)]
pub struct Firmware {
    /// bl1 + FIP, ready for `-bios`.
    pub flash: PathBuf,
    /// The SPMC image (BL32) in raw binary form.
    pub spmc_bin: PathBuf,
}

/// A `cargo` command for the firmware target, set up for the chosen toolchain.
pub fn firmware_cargo(env: &Env, subcommand: &str) -> Command {
    let mut cmd = match env.toolchain {
        Toolchain::Installed => {
            let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            // The firmware uses one nightly attribute (`optimize`, .cargo/config.toml).
            c.env("RUSTC_BOOTSTRAP", "1").arg(subcommand);
            c
        }
        Toolchain::DebianBuildStd => {
            // Debian's toolchain lives in /usr/bin; put it first so that cargo,
            // rustc, clippy-driver and rust-lld all come from the same release.
            let path = std::env::var("PATH").unwrap_or_default();
            let mut c = Command::new("/usr/bin/cargo");
            c.env("PATH", format!("/usr/bin:{path}"))
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTC_BOOTSTRAP", "1")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("RUSTC_WORKSPACE_WRAPPER")
                .env_remove("CARGO");
            c.arg(subcommand)
                .arg("-Zbuild-std=core,alloc,compiler_builtins")
                .arg("-Zbuild-std-features=compiler-builtins-mem");
            c
        }
    };
    cmd.current_dir(sh::root())
        .env("CARGO_TARGET_DIR", sh::root().join("target/fw"))
        .args(["--target", TARGET]);
    cmd
}

/// The firmware crates, built for aarch64.
pub const FIRMWARE_PACKAGES: &[&str] =
    &["platform-qemu", "nwd-harness", "nwd-hypervisor", "test-sp"];

fn profile_dir(opts: &Options) -> &'static str {
    if opts.release { "release" } else { "debug" }
}

fn image_dir(opts: &Options) -> PathBuf {
    sh::root()
        .join("target/fw")
        .join(TARGET)
        .join(profile_dir(opts))
}

/// `--release` for a release build, and its extra flags.
///
/// `-Zlocation-detail=none`: release images carry no source locations (file,
/// line and column of each panic site and each log call). The logger never
/// prints the log calls' locations; the 330 locations and 35 paths were
/// 9.5 KiB of the release SPMC's rodata (docs/benchmarks.md).
///
/// `-Cpanic=immediate-abort` (with `core` and `alloc`, built by
/// `-Zbuild-std`): a panic is a `BRK #1` at its site, with no message
/// formatted. The SPMC's EL2 vector reports it as `SPMC panic on core N at
/// <address>` and goes the same fatal way as a dev image's panic handler
/// (every core answers ABORTED; the `fatal` stage runs both builds). The
/// panic messages and their formatting were 14.7 KiB of the release SPMC.
///
/// Dev builds, which every other test stage runs, keep both: rebuild without
/// `--release` to see a panic's message and where it came from. The
/// variable adds to `.cargo/config.toml`'s flags for the target (cargo
/// merges the two).
pub fn release_profile(cmd: &mut Command, opts: &Options) {
    if opts.release {
        cmd.arg("--release").env(
            format!(
                "CARGO_TARGET_{}_RUSTFLAGS",
                TARGET.to_uppercase().replace('-', "_")
            ),
            "-Zlocation-detail=none -Zunstable-options -Cpanic=immediate-abort",
        );
    }
}

/// The SPMC's log level (`--log`, default info) for a firmware build: as
/// `SPMC_LOG`, which the image reads at build time for its level, and as
/// `platform-qemu`'s feature `release-log-<level>`, which compiles the
/// levels above it out of a release image (`log`'s `release_max_level_*`:
/// a release image built at `warn` carries no `info!` line, the way TF-A's
/// LOG_LEVEL works). Dev images keep every level.
pub fn log_level(cmd: &mut Command, opts: &Options) {
    cmd.env("SPMC_LOG", &opts.log).args([
        "--features",
        &format!("platform-qemu/release-log-{}", opts.log),
    ]);
}

/// Builds the Rust images and turns each ELF into a raw binary.
pub fn rust_images(env: &Env, opts: &Options) -> Result<PathBuf> {
    sh::step(&format!(
        "build: firmware crates for {TARGET} ({})",
        profile_dir(opts)
    ));
    let timer = sh::Timer::start("firmware build");
    let mut cmd = firmware_cargo(env, "build");
    for p in FIRMWARE_PACKAGES {
        cmd.args(["-p", p]);
    }
    release_profile(&mut cmd, opts);
    log_level(&mut cmd, opts);
    sh::run(&mut cmd)?;
    let dir = image_dir(opts);
    objcopy_binaries(
        &dir,
        &[
            ("spmc-qemu", "spmc.bin"),
            ("nwd-harness", "nwd-harness.bin"),
            ("nwd-bench", "nwd-bench.bin"),
            ("nwd-fatal", "nwd-fatal.bin"),
            ("test-sp", "test-sp.bin"),
            ("test-sp-pkg", "test-sp-pkg.bin"),
            ("nwd-hypervisor", "nwd-hypervisor.bin"),
            ("nwd-hypervisor-demo", "nwd-hypervisor-demo.bin"),
            ("nwd-hypervisor-bench", "nwd-hypervisor-bench.bin"),
            ("nwd-hostile", "nwd-hostile.bin"),
        ],
    )?;
    test_sp_image(&dir, "test-sp.bin", TEST_SP_MAX)?;
    // Packaged the Hafnium way, the image starts 0x4000 into the package's slot.
    test_sp_image(&dir, "test-sp-pkg.bin", TEST_SP_MAX - 0x4000)?;
    let size = fs::metadata(dir.join("spmc.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "    SPMC image: {size} bytes ({:.1} KiB)",
        size as f64 / 1024.0
    );
    timer.done();
    Ok(dir)
}

/// The test-only SPMC of the `fatal` stage (feature `fatal-probe`: one
/// reserved call makes it panic holding its lock), as `spmc-fatal.bin` next
/// to the product images. Built after them, so `spmc.bin` stays the product
/// image; the next product build only relinks.
pub fn fatal_spmc(env: &Env, opts: &Options) -> Result<PathBuf> {
    sh::step("build: test-only SPMC with the fatal probe (stage `fatal`)");
    let mut cmd = firmware_cargo(env, "build");
    cmd.args([
        "-p",
        "platform-qemu",
        "--features",
        "platform-qemu/fatal-probe",
    ]);
    release_profile(&mut cmd, opts);
    log_level(&mut cmd, opts);
    sh::run(&mut cmd)?;
    let dir = image_dir(opts);
    let bin = dir.join("spmc-fatal.bin");
    sh::run(
        Command::new("aarch64-linux-gnu-objcopy")
            .args(["-O", "binary"])
            .arg(dir.join("spmc-qemu"))
            .arg(&bin),
    )?;
    Ok(bin)
}

/// `objcopy -O binary` of each built ELF in `dir` into its raw image
/// (the pairs: ELF name, image name), as QEMU and TF-A load them.
pub fn objcopy_binaries(dir: &Path, pairs: &[(&str, &str)]) -> sh::Result<()> {
    for (elf, bin) in pairs {
        sh::run(
            Command::new("aarch64-linux-gnu-objcopy")
                .args(["-O", "binary"])
                .arg(dir.join(elf))
                .arg(dir.join(bin)),
        )?;
    }
    Ok(())
}

/// Largest test partition image (`test_protocol::layout::IMAGE_MAX`).
const TEST_SP_MAX: u64 = 0x4_0000;

/// Checks a test partition image's size (under `max` bytes) and copies it to
/// `target/fw/<name>`, where `tf-a-integration/qemu/sp_layout.json` names it
/// for TF-A's sptool.
fn test_sp_image(dir: &Path, name: &str, max: u64) -> Result<()> {
    let bin = dir.join(name);
    let size = fs::metadata(&bin)
        .map_err(|e| format!("{}: {e}", bin.display()))?
        .len();
    if size >= max {
        return Err(format!(
            "{name} is {size} bytes; this partition image must stay under {max}"
        ));
    }
    println!(
        "    test partition image {name}: {size} bytes ({:.1} KiB)",
        size as f64 / 1024.0
    );
    let dest = sh::root().join("target/fw").join(name);
    fs::copy(&bin, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(())
}

/// How one QEMU machine's TF-A is built and its flash image laid out.
#[derive(Clone, Copy, Debug)]
pub struct TfaBoard {
    /// TF-A's `PLAT`.
    pub plat: &'static str,
    /// The directory under `tf-a-integration/` with the manifests and layout.
    pub integration: &'static str,
    /// Build options on top of [`tfa_flags`]'s (without `PLAT`).
    pub extra_flags: &'static [&'static str],
    /// Where the FIP starts in the flash image (after BL1).
    pub fip_offset: usize,
    /// The flash image's size (0: as long as BL1 and the FIP).
    pub flash_size: usize,
}

/// QEMU virt: TF-A's `qemu` platform as shipped; `-bios` takes BL1 + FIP.
pub const VIRT: TfaBoard = TfaBoard {
    plat: "qemu",
    integration: "qemu",
    extra_flags: &[],
    fip_offset: 256 * 1024,
    flash_size: 0,
};

/// QEMU virt with OP-TEE OS as the one secure partition (the `optee` stage,
/// xtask/src/optee.rs): its own SPMC manifest and SP layout.
pub const VIRT_OPTEE: TfaBoard = TfaBoard {
    integration: "qemu-optee",
    ..VIRT
};

/// Builds TF-A with the SPMD, our SPMC as BL32 and `bl33` as BL33, and
/// assembles the flash image (BL1 at 0, FIP at 256 KiB).
pub fn tfa(env: &Env, spmc_bin: &Path, bl33: &Path, variant: &str) -> Result<PathBuf> {
    tfa_for(env, &VIRT, spmc_bin, bl33, variant)
}

/// [`tfa`] for `board`.
pub fn tfa_for(
    env: &Env,
    board: &TfaBoard,
    spmc_bin: &Path,
    bl33: &Path,
    variant: &str,
) -> Result<PathBuf> {
    sh::step(&format!(
        "build: TF-A 2.12.1 ({}) with SPMD, SPMC at S-EL2 ({variant})",
        board.plat
    ));
    let timer = sh::Timer::start("TF-A build");
    let integration = sh::root().join("tf-a-integration").join(board.integration);
    let out = env.work.join("tfa-build").join(variant);
    let flags: Vec<String> = tfa_flags()
        .into_iter()
        .map(|f| {
            if f.starts_with("PLAT=") {
                format!("PLAT={}", board.plat)
            } else {
                f
            }
        })
        .chain(board.extra_flags.iter().map(|f| f.to_string()))
        .collect();
    let mut cmd = Command::new("make");
    cmd.current_dir(&env.tfa_src)
        .arg(format!(
            "-j{}",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        ))
        .args(&flags)
        .arg(format!("BL32={}", spmc_bin.display()))
        .arg(format!("BL33={}", bl33.display()))
        .arg(format!(
            "QEMU_TOS_FW_CONFIG_DTS={}",
            integration.join("spmc_manifest.dts").display()
        ))
        .arg(format!(
            "QEMU_TB_FW_CONFIG_DTS={}",
            integration.join("tb_fw_config.dts").display()
        ))
        .arg(format!(
            "SP_LAYOUT_FILE={}",
            integration.join("sp_layout.json").display()
        ))
        .arg(format!("BUILD_BASE={}", out.display()))
        .args(["all", "fip"]);
    // TF-A's make does not notice changed build flags (or a changed patch
    // of ours): start over when they change.
    let stamp = out.join("xtask-flags");
    let stamp_text = format!("{}\n{}", flags.join(" "), env.tfa_patches);
    if fs::read_to_string(&stamp).ok().as_deref() != Some(stamp_text.as_str()) {
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        fs::write(&stamp, &stamp_text).map_err(|e| format!("{}: {e}", stamp.display()))?;
    }
    let rel = out.join(board.plat).join("release");
    // make does not see that BL32/BL33 changed when their paths stay the same:
    // drop the FIP so it is always rebuilt from the current images.
    let _ = fs::remove_file(rel.join("fip.bin"));
    sh::run(&mut cmd)?;
    let flash = rel.join("flash.bin");
    let mut image = fs::read(rel.join("bl1.bin")).map_err(|e| format!("bl1.bin: {e}"))?;
    if image.len() > board.fip_offset {
        return Err(format!(
            "bl1.bin is {} bytes, over the FIP's offset {:#x}",
            image.len(),
            board.fip_offset
        ));
    }
    image.resize(board.fip_offset, 0);
    image.extend(fs::read(rel.join("fip.bin")).map_err(|e| format!("fip.bin: {e}"))?);
    if board.flash_size > 0 {
        if image.len() > board.flash_size {
            return Err(format!(
                "BL1 and the FIP take {} bytes, over the flash's {}",
                image.len(),
                board.flash_size
            ));
        }
        image.resize(board.flash_size, 0);
    }
    fs::write(&flash, image).map_err(|e| format!("{}: {e}", flash.display()))?;
    timer.done();
    Ok(flash)
}

/// The TF-A build flags every build uses (tests and benchmarks alike).
pub fn tfa_flags() -> Vec<String> {
    [
        "CROSS_COMPILE=aarch64-linux-gnu-",
        "PLAT=qemu",
        "SPD=spmd",
        "SPMD_SPM_AT_SEL2=1",
        "CTX_INCLUDE_EL2_REGS=1",
        "QEMU_USE_GIC_DRIVER=QEMU_GICV3",
        "DEBUG=0",
        // Lets the secure world use FP/SIMD (else CPTR_EL3.TFP traps it on a
        // CPU with SVE): the SPMC then switches FP/SIMD state itself.
        "ENABLE_SVE_FOR_SWD=1",
        // Otherwise TF-A names its build after this repository's git state.
        "BUILD_STRING=spmc-xtask",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Everything for the default e2e stage: the SPMC and the test harness in one flash image.
pub fn all(env: &Env, opts: &Options) -> Result<Firmware> {
    let dir = rust_images(env, opts)?;
    let spmc_bin = dir.join("spmc.bin");
    let flash = tfa(env, &spmc_bin, &dir.join("nwd-harness.bin"), "e2e")?;
    Ok(Firmware { flash, spmc_bin })
}
