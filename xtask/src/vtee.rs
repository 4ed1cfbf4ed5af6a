//! The reference hypervisor (`tests/hypervisor`, BL33 at NS-EL2) in QEMU:
//! the `vtee` stage, the four-user demo that `cargo xtask run` boots, and
//! its benchmark image. Each is its own TF-A variant (the same TF-A, SPMC
//! and partitions; only BL33 differs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::build;
use crate::cli::Options;
use crate::qemu::{self, StageResult, StageSpec};
use crate::setup::Env;
use crate::sh::Result;

/// The hypervisor image of the `vtee` stage: the demo, then the checks.
pub const STAGE_IMAGE: &str = "nwd-hypervisor.bin";
/// The demo alone.
pub const DEMO_IMAGE: &str = "nwd-hypervisor-demo.bin";
/// The benchmarks.
pub const BENCH_IMAGE: &str = "nwd-hypervisor-bench.bin";

/// The directory of the Rust images (where `spmc.bin` is).
fn image_dir(spmc_bin: &Path) -> &Path {
    spmc_bin.parent().unwrap_or(Path::new("."))
}

/// A flash image with `image` (from the same directory as `spmc_bin`) as
/// BL33, built as TF-A variant `variant`.
pub fn flash(env: &Env, spmc_bin: &Path, image: &str, variant: &str) -> Result<PathBuf> {
    build::tfa(env, spmc_bin, &image_dir(spmc_bin).join(image), variant)
}

/// The `vtee` stage: four VMs at NS-EL1 under the reference hypervisor, each
/// with its own virtual TEE; the demo, then `PASS`/`FAIL` lines and
/// `vtee: N passed, M failed`.
pub fn stage(env: &Env, opts: &Options, spmc_bin: &Path) -> Result<StageResult> {
    let flash = flash(env, spmc_bin, STAGE_IMAGE, "vtee")?;
    qemu::run_stage(
        qemu::base_command(&flash, opts.smp, qemu::MEMORY),
        &StageSpec {
            name: "vtee",
            required: &["running at Secure EL2", "hypervisor: demo done"],
            expected_fatal: &[],
            timeout: Duration::from_secs(opts.timeout_secs),
            panic_grace: None,
        },
    )
}

/// The flash image `cargo xtask run` boots by default: the four-user demo.
pub fn demo(env: &Env, opts: &Options) -> Result<PathBuf> {
    let dir = build::rust_images(env, opts)?;
    flash(env, &dir.join("spmc.bin"), DEMO_IMAGE, "demo")
}
