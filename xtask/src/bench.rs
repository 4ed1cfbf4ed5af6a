//! `cargo xtask bench`: the benchmarks, measured in instructions.
//!
//! The firmware is built with the release profile and TF-A with the same
//! flags as the tests. QEMU runs with `-icount shift=0`, so guest time
//! advances one nanosecond per instruction; the benchmark image
//! (`tests/nwd-harness/src/bench.rs`) converts counter ticks to nanoseconds,
//! which are instructions. Benchmarks are not tests: no figure fails the run.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cli::Options;
use crate::sh::{self, Result};
use crate::{build, qemu, rpi4, setup, vtee};

pub fn run(opts: &Options) -> Result<()> {
    let env = setup::ensure(opts)?;
    let mut opts = opts.clone();
    opts.release = true;
    opts.log = "warn".into();
    let dir = build::rust_images(&env, &opts)?;
    let spmc_bin = dir.join("spmc.bin");
    let flash = build::tfa(&env, &spmc_bin, &dir.join("nwd-bench.bin"), "bench")?;
    if env.qemu_major < 10 {
        println!(
            "    note: QEMU {}.x: its timer is not 1 GHz, figures are converted with CNTFRQ_EL0",
            env.qemu_major
        );
    }

    sh::step("bench: QEMU with -icount shift=0");
    let mut figures = run_image(&flash, opts.timeout_secs)?;

    // The reference hypervisor's path: a VM at NS-EL1 to its own TEE, and
    // the VM availability messages (tests/hypervisor/src/bin/bench.rs).
    let flash = vtee::flash(&env, &spmc_bin, vtee::BENCH_IMAGE, "bench-vtee")?;
    sh::step("bench: the hypervisor path, QEMU with -icount shift=0");
    figures.extend(run_image(&flash, opts.timeout_secs)?);

    let size = std::fs::metadata(&spmc_bin).map(|m| m.len()).unwrap_or(0);
    let image = format!("bench: spmc_image: {size} bytes");
    println!("{image}");
    figures.push(image);

    // The Raspberry Pi 4 board on raspi4b: a general VM's guest at EL1 to
    // its own trusted VM through the EL2 image (docs/rpi4.md).
    let blob = rpi4::rust_image(&env, &opts)?;
    let bl31 = rpi4::tfa(&env)?;
    sh::step("bench: rpi4 (raspi4b), QEMU with -icount shift=0");
    let mut cmd = rpi4::base_command(&bl31, &blob);
    cmd.args(["-icount", "shift=0"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"]);
    figures.extend(run_command(cmd, opts.timeout_secs)?);
    let size = std::fs::metadata(rpi4::image_bin(&opts))
        .map(|m| m.len())
        .unwrap_or(0);
    let image = format!("bench: rpi4_image: {size} bytes");
    println!("{image}");
    figures.push(image);

    sh::step("bench: summary");
    for f in &figures {
        println!("    {f}");
    }
    Ok(())
}

/// Boots a benchmark image under `-icount shift=0` and returns its
/// `bench:` lines (printing them and its banner as they come).
fn run_image(flash: &Path, timeout_secs: u64) -> Result<Vec<String>> {
    // 4 cores: `direct_req_round_trip_4cores` turns cores 1-3 on (last, so
    // the other figures run with them off, as on one core).
    let mut cmd = qemu::base_command(flash, 4, "1G");
    cmd.args(["-icount", "shift=0"]).args([
        "-display", "none", "-monitor", "none", "-serial", "stdio", "-serial", "null",
    ]);
    run_command(cmd, timeout_secs)
}

/// Runs a benchmark QEMU command and returns its `bench:` lines.
fn run_command(mut cmd: std::process::Command, timeout_secs: u64) -> Result<Vec<String>> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let stdout = child.stdout.take().ok_or("no QEMU stdout")?;
    let lines = qemu::Lines::of(vec![Box::new(stdout)]);
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut figures = Vec::new();
    loop {
        match lines.next_before(deadline) {
            Ok(Some(line)) => {
                if line.starts_with("bench:") || line.starts_with("nwd-") {
                    println!("{line}");
                }
                if line.starts_with("bench:") {
                    figures.push(line);
                }
            }
            Ok(None) => break,
            Err(qemu::TimedOut) => {
                let _ = child.kill();
                println!("    benchmark run timed out after {timeout_secs} s");
                break;
            }
        }
    }
    let _ = child.wait();
    Ok(figures)
}
