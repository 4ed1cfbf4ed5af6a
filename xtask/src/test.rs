//! `cargo xtask test`: every check CI runs, in order, failing on the first broken step.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::build::{self, FIRMWARE_PACKAGES};
use crate::cli::Options;
use crate::fuzz;
use crate::linux;
use crate::qemu::{self, StageResult, StageSpec};
use crate::setup::{self, Env};
use crate::sh::{self, Result};
use crate::vtee;

/// The host crates (tests, clippy).
const HOST_PACKAGES: &[&str] = &["spmc", "test-protocol", "xtask"];

pub fn run(opts: &Options) -> Result<()> {
    let start = Instant::now();
    let env = setup::ensure(opts)?;
    if !opts.skip_host {
        host_checks(&env)?;
        if !opts.skip_fuzz {
            let t = sh::Timer::start("fuzz step");
            fuzz::run(opts, fuzz::TEST_SECONDS, None)?;
            t.done();
        }
    }
    target_clippy(&env, opts)?;
    let fw = build::all(&env, opts)?;

    let mut summary = Vec::new();
    let e2e = qemu::run_stage(
        qemu::base_command(&fw.flash, opts.smp, qemu::MEMORY),
        &StageSpec {
            name: "e2e",
            required: &["running at Secure EL2"],
            timeout: Duration::from_secs(opts.timeout_secs),
            panic_grace: None,
        },
    )?;
    summary.push(("e2e", e2e.clone()));
    // The same boot's memory-sharing checks, after the `e2e` summary.
    summary.push(("mem", qemu::section(&e2e, "e2e", "mem")));

    let t = sh::Timer::start("vtee stage, build to power-off");
    let vt = vtee::stage(&env, opts, &fw.spmc_bin).unwrap_or_else(|e| StageResult {
        problems: vec![format!("could not run: {e}")],
        ..StageResult::default()
    });
    t.done();
    summary.push(("vtee", vt));

    if opts.linux {
        let t = sh::Timer::start("linux stage, set-up to power-off");
        let linux = linux::stage(&env, opts, &fw.spmc_bin).unwrap_or_else(|e| StageResult {
            problems: vec![format!("could not run: {e}")],
            ..StageResult::default()
        });
        t.done();
        summary.push(("linux", linux));
    } else {
        println!(
            "\n    (stage `linux` not run: pass --linux to boot Debian's Linux 7.2 over the SPMC)"
        );
    }

    sh::step("summary");
    let mut failed = false;
    for (name, r) in &summary {
        println!(
            "    {name}: {} passed, {} failed ({:.1} s)",
            r.passed, r.failed, r.seconds
        );
        for p in &r.problems {
            println!("      problem: {p}");
            failed = true;
        }
    }
    let image = std::fs::metadata(&fw.spmc_bin)
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "    SPMC image ({}): {image} bytes",
        if opts.release { "release" } else { "dev" }
    );
    println!("    QEMU {}.x", env.qemu_major);
    println!("    total wall time {:.1} s", start.elapsed().as_secs_f64());
    if failed {
        return Err("end-to-end stage(s) failed (see the problems above)".into());
    }
    println!("    all stages passed");
    Ok(())
}

fn host_checks(_env: &Env) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    sh::step("host: unit and fixture tests");
    let t = sh::Timer::start("host tests");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(sh::root()).arg("test");
    for p in HOST_PACKAGES {
        cmd.args(["-p", p]);
    }
    sh::run(&mut cmd)?;
    t.done();

    sh::step("host: rustfmt check");
    sh::run(
        Command::new(&cargo)
            .current_dir(sh::root())
            .args(["fmt", "--all", "--", "--check"]),
    )?;

    sh::step("host: clippy -D warnings");
    let t = sh::Timer::start("host clippy");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(sh::root()).arg("clippy");
    for p in HOST_PACKAGES {
        cmd.args(["-p", p]);
    }
    sh::run(cmd.args(["--all-targets", "--", "-D", "warnings"]))?;
    t.done();
    Ok(())
}

fn target_clippy(env: &Env, opts: &Options) -> Result<()> {
    sh::step(&format!(
        "aarch64: clippy -D warnings on the firmware crates ({})",
        setup::TARGET
    ));
    let t = sh::Timer::start("aarch64 clippy");
    let mut cmd = build::firmware_cargo(env, "clippy");
    for p in FIRMWARE_PACKAGES
        .iter()
        .chain(["spmc", "arch-aarch64", "baremetal"].iter())
    {
        cmd.args(["-p", p]);
    }
    if opts.release {
        cmd.arg("--release");
    }
    sh::run(cmd.args(["--", "-D", "warnings"]))?;
    t.done();
    Ok(())
}
