//! `cargo xtask test`: every check CI runs, in order, failing on the first broken step.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::build::{self, FIRMWARE_PACKAGES};
use crate::cli::Options;
use crate::deps;
use crate::fuzz;
use crate::hostile;
use crate::linux;
use crate::optee;
use crate::qemu::{self, StageResult, StageSpec};
use crate::rpi4;
use crate::sbsa;
use crate::setup::{self, Env};
use crate::sh::{self, Result};
use crate::vtee;

/// Whether `test` runs the `sbsa` stage without `--stage sbsa`.
const SBSA_STAGE_BY_DEFAULT: bool = true;
/// Whether `test` runs the `rpi4` stage by default (it passes: the board
/// checks and the per-user checks, docs/rpi4.md).
const RPI4_STAGE_BY_DEFAULT: bool = true;

/// The host crates (tests, clippy).
const HOST_PACKAGES: &[&str] = &["spmc", "test-protocol", "xtask"];

pub fn run(opts: &Options) -> Result<()> {
    let start = Instant::now();
    let env = setup::ensure(opts)?;
    let host = if opts.skip_host {
        None
    } else {
        let counts = host_checks(&env)?;
        if !opts.skip_fuzz {
            let t = sh::Timer::start("fuzz step");
            fuzz::run(opts, fuzz::TEST_SECONDS, None)?;
            t.done();
        }
        Some(counts)
    };
    target_clippy(&env, opts)?;
    let fw = build::all(&env, opts)?;

    let mut summary = Vec::new();
    let wanted = |name: &str| opts.stage.as_deref().is_none_or(|s| s == name);
    if wanted("e2e") {
        let spec = StageSpec {
            name: "e2e",
            required: &["running at Secure EL2"],
            expected_fatal: &[],
            timeout: Duration::from_secs(opts.timeout_secs),
            panic_grace: None,
        };
        let mut e2e =
            qemu::run_stage(qemu::base_command(&fw.flash, opts.smp, qemu::MEMORY), &spec)?;
        // The same boot's memory-sharing checks, after the `e2e` summary.
        let mut mem = qemu::section(&e2e, "e2e", "mem");
        // The same image booted again at each older normal-world version.
        for (version, label) in qemu::LEGACY_BOOTS {
            let mut cmd = qemu::base_command(&fw.flash, opts.smp, qemu::MEMORY);
            qemu::harness_mode(&mut cmd, version);
            let boot = qemu::run_stage(cmd, &spec)?;
            let boot_mem = qemu::section(&boot, "e2e", "mem");
            qemu::merge(&mut e2e, boot, label);
            qemu::merge(&mut mem, boot_mem, label);
        }
        summary.push(("e2e", e2e));
        summary.push(("mem", mem));
    }

    if wanted("vtee") {
        let t = sh::Timer::start("vtee stage, build to power-off");
        let vt = vtee::stage(&env, opts, &fw.spmc_bin).unwrap_or_else(could_not_run);
        t.done();
        summary.push(("vtee", vt));
    }

    if wanted("fatal") {
        let t = sh::Timer::start("fatal stage, build to power-off");
        let fatal = fatal_stage(&env, opts, &fw.spmc_bin).unwrap_or_else(could_not_run);
        t.done();
        summary.push(("fatal", fatal));
    }

    if wanted("hostile") {
        let t = sh::Timer::start("hostile stage, build to power-off");
        let h = hostile::stage(&env, opts, &fw.spmc_bin).unwrap_or_else(could_not_run);
        t.done();
        summary.push(("hostile", h));
    }

    // sbsa-ref: the harness over the SPMC built for that board.
    if wanted("sbsa") && (SBSA_STAGE_BY_DEFAULT || opts.stage.is_some()) {
        let t = sh::Timer::start("sbsa stage, build to power-off");
        let sb = sbsa::stage(&env, opts).unwrap_or_else(could_not_run);
        t.done();
        summary.push(("sbsa", sb));
    }

    // Raspberry Pi 4 (raspi4b): our image at non-secure EL2 under TF-A rpi4.
    if wanted("rpi4") && (RPI4_STAGE_BY_DEFAULT || opts.stage.is_some()) {
        let t = sh::Timer::start("rpi4 stage, build to power-off");
        let r = rpi4::stage(&env, opts).unwrap_or_else(could_not_run);
        t.done();
        summary.push(("rpi4", r));
    }

    if opts.linux && wanted("linux") {
        let t = sh::Timer::start("linux stage, set-up to power-off");
        let linux = linux::stage(&env, opts, &fw.spmc_bin).unwrap_or_else(could_not_run);
        t.done();
        summary.push(("linux", linux));
    } else if !opts.linux {
        println!(
            "\n    (stage `linux` not run: pass --linux to boot Debian's Linux 7.2 over the SPMC)"
        );
    }

    // OP-TEE OS under the SPMC with Linux's optee driver: only when named
    // (`--stage optee`) until it passes (docs/optee.md).
    if opts.stage.as_deref() == Some("optee") {
        let t = sh::Timer::start("optee stage, build to power-off");
        let op = optee::stage(&env, opts, &fw.spmc_bin).unwrap_or_else(could_not_run);
        t.done();
        summary.push(("optee", op));
    }

    sh::step("summary");
    let mut failed = false;
    let mut total = host.unwrap_or((0, 0));
    if let Some((p, f)) = host {
        println!("    host tests: {p} passed, {f} failed");
    }
    for (name, r) in &summary {
        total.0 += r.passed as u64;
        // A stage that could not run, timed out or lacks its summary has
        // problems but perhaps no FAIL line: each problem counts as a failure.
        total.1 += (r.failed as u64).max(r.problems.len() as u64);
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
    // Host tests and every stage's checks, as the one closing line.
    println!("all: {} passed, {} failed", total.0, total.1);
    if failed {
        return Err("end-to-end stage(s) failed (see the problems above)".into());
    }
    println!("    all stages passed");
    Ok(())
}

/// A stage that could not even start.
fn could_not_run(e: String) -> StageResult {
    StageResult {
        problems: vec![format!("could not run: {e}")],
        ..StageResult::default()
    }
}

/// The `fatal` stage: a test-only SPMC (feature `fatal-probe`) fails on
/// purpose on core 0 holding its lock; the normal world checks that both
/// cores still get FFA_ERROR(ABORTED) (tests/nwd-harness/src/fatal.rs). Two
/// cores, whatever `--smp` says, and 1 GiB of RAM under a manifest that
/// states 2 GiB: first it checks that the SPMC touching missing RAM is an
/// error for that call, not a halt.
/// The `fatal` stage's RAM: less than the manifest's ns-memory (2 GiB).
const LESS_THAN_THE_MANIFEST: &str = "1G";

///
/// It runs twice: with the SPMC built as the other stages build it (dev:
/// the panic handler prints the message), and built with the release
/// profile, whose panics are traps (`-Cpanic=immediate-abort`) that the EL2
/// vector reports by address (`build::release_profile`). The counts add up.
fn fatal_stage(env: &Env, opts: &Options, spmc_bin: &std::path::Path) -> Result<StageResult> {
    let dir = spmc_bin.parent().ok_or("no image directory")?;
    let harness = dir.join("nwd-fatal.bin");
    let mut result = fatal_run(env, opts, &harness, "fatal")?;
    if !opts.release {
        let release = Options {
            release: true,
            ..opts.clone()
        };
        let r = fatal_run(env, &release, &harness, "fatal-release")?;
        result.passed += r.passed;
        result.failed += r.failed;
        result
            .problems
            .extend(r.problems.into_iter().map(|p| format!("release SPMC: {p}")));
        result.lines.extend(r.lines);
        result.seconds += r.seconds;
    }
    Ok(result)
}

/// One run of the `fatal` stage with the probe SPMC built as `opts` says.
fn fatal_run(
    env: &Env,
    opts: &Options,
    harness: &std::path::Path,
    flash_name: &str,
) -> Result<StageResult> {
    let spmc = build::fatal_spmc(env, opts)?;
    let flash = build::tfa(env, &spmc, harness, flash_name)?;
    let panic_line: &[&str] = if opts.release {
        &["(release image: no message)"]
    } else {
        &["failing with the lock held"]
    };
    let required = [
        &["running at Secure EL2", "fatal probe (test-only build)"],
        panic_line,
    ]
    .concat();
    qemu::run_stage(
        qemu::base_command(&flash, 2, LESS_THAN_THE_MANIFEST),
        &StageSpec {
            name: "fatal",
            required: &required,
            expected_fatal: &["SPMC panic on core 0", "fatal probe (test-only build)"],
            timeout: Duration::from_secs(opts.timeout_secs.min(120)),
            panic_grace: None,
        },
    )
}

/// The unused-dependency check, host tests, rustfmt and clippy; returns the host tests' (passed, failed).
fn host_checks(_env: &Env) -> Result<(u64, u64)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    sh::step("host: no unused dependencies (workspace and fuzz/)");
    let unused = deps::check(&sh::root())?;
    if !unused.is_empty() {
        for p in &unused {
            println!("    {p}");
        }
        return Err(format!(
            "{} unused dependenc{}: remove {}, or see xtask/src/deps.rs",
            unused.len(),
            if unused.len() == 1 { "y" } else { "ies" },
            if unused.len() == 1 { "it" } else { "them" }
        ));
    }

    sh::step("host: unit and fixture tests");
    let t = sh::Timer::start("host tests");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(sh::root()).arg("test");
    for p in HOST_PACKAGES {
        cmd.args(["-p", p]);
    }
    let result = sh::run(&mut cmd);
    let (passed, failed) = test_counts(&sh::tail(&sh::current_log(), usize::MAX));
    println!("    host: {passed} passed, {failed} failed");
    result?;
    t.done();
    let (loom_passed, loom_failed) = loom_tests(&cargo)?;
    let (passed, failed) = (passed + loom_passed, failed + loom_failed);

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
    Ok((passed, failed))
}

/// The loom model tests of the lock and hand-off protocol between cores
/// (`spmc/tests/loom_contexts.rs`, docs/architecture.md "Locks"): the core
/// built with `--cfg loom` (its locks and atomics are loom's,
/// `spmc::sync`), in a target directory of its own so that the other
/// builds keep theirs. Returns (passed, failed).
fn loom_tests(cargo: &str) -> Result<(u64, u64)> {
    sh::step("host: loom model tests of the cross-core protocol (--cfg loom)");
    let t = sh::Timer::start("loom tests");
    let result = sh::run(
        Command::new(cargo)
            .current_dir(sh::root())
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", sh::root().join("target/loom"))
            .args(["test", "-p", "spmc", "--test", "loom_contexts"]),
    );
    let (passed, failed) = test_counts(&sh::tail(&sh::current_log(), usize::MAX));
    println!("    loom: {passed} passed, {failed} failed");
    result?;
    if passed == 0 {
        return Err("the loom tests ran no test".into());
    }
    t.done();
    Ok((passed, failed))
}

/// Sums the `test result: ok. N passed; M failed; ...` lines of `cargo test`.
fn test_counts(lines: &[String]) -> (u64, u64) {
    let mut sum = (0, 0);
    for l in lines {
        let Some(rest) = l.strip_prefix("test result: ") else {
            continue;
        };
        for part in rest.split(';') {
            let mut w = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (w.next(), w.next()) else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            match what {
                "passed" => sum.0 += n,
                "failed" => sum.1 += n,
                _ => {}
            }
        }
    }
    sum
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
    // The `fatal` stage's test-only SPMC: its probe is linted too.
    let mut cmd = build::firmware_cargo(env, "clippy");
    cmd.args([
        "-p",
        "platform-qemu",
        "--features",
        "platform-qemu/fatal-probe",
    ]);
    if opts.release {
        cmd.arg("--release");
    }
    sh::run(cmd.args(["--", "-D", "warnings"]))?;
    // The sbsa-ref build (feature `sbsa`): its board code is linted too.
    let mut cmd = sbsa::firmware_cargo(env, "clippy");
    if opts.release {
        cmd.arg("--release");
    }
    sh::run(cmd.args(["--", "-D", "warnings"]))?;
    // The Raspberry Pi 4 image (its own flags and target directory).
    let mut cmd = rpi4::firmware_cargo(env, "clippy");
    if opts.release {
        cmd.arg("--release");
    }
    sh::run(cmd.args(["--", "-D", "warnings"]))?;
    t.done();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_test_counts_add_up() {
        let lines: Vec<String> = [
            "running 2 tests",
            "test result: ok. 25 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out",
            "test a ... ok",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(test_counts(&lines), (28, 2));
    }
}
