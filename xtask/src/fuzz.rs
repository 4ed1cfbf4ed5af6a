//! `cargo xtask fuzz`: the libFuzzer targets of `fuzz/` (docs/fuzzing.md),
//! each for its share of the time, reporting executions and crashes.
//!
//! Built with `cargo fuzz` without a sanitizer (the core is safe Rust, and
//! without one a run is several times faster) but with debug assertions and
//! overflow checks. The committed corpus (`fuzz/corpus/<target>`) seeds each
//! run; what a run adds goes to the work directory, not to the repository.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cli::Options;
use crate::setup;
use crate::sh::{self, Result};

/// The targets, in the order they run.
pub const TARGETS: &[&str] = &["parsers", "manifests", "dispatcher"];

/// Seconds `cargo xtask test` fuzzes for, split across the targets.
pub const TEST_SECONDS: u64 = 60;

/// Longest input per target (the dispatcher's run at most 48 steps anyway).
fn max_len(target: &str) -> u32 {
    match target {
        "manifests" => 8192,
        "dispatcher" => 1024,
        _ => 4096,
    }
}

/// Per-target libFuzzer options: the dispatcher goes to long inputs at
/// once (a sequence of calls gets deep only with many steps) instead of
/// growing them slowly from a few bytes.
fn extra_args(target: &str) -> &'static [&'static str] {
    match target {
        "dispatcher" => &["-len_control=0"],
        _ => &[],
    }
}

/// What one target's run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub executions: u64,
    pub seconds: f64,
    pub crashed: bool,
}

/// Makes sure `cargo fuzz` and a C++ compiler (libFuzzer is built from its
/// C++ source) are there, installing them unless told not to.
pub fn ensure_tools(opts: &Options) -> Result<()> {
    if !sh::have("g++") {
        let msg = "g++ is missing (libfuzzer-sys compiles libFuzzer with it)";
        if opts.no_install || !setup::is_root() {
            return Err(format!(
                "{msg}: run `cargo xtask setup` as root or `apt-get install g++`"
            ));
        }
        println!("    {msg}: installing g++");
        setup::apt_update()?;
        sh::run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-q", "--no-install-recommends", "g++"]),
        )?;
    }
    let have_fuzz = Command::new(cargo())
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_fuzz {
        if opts.no_install {
            return Err("cargo-fuzz is missing: run `cargo install cargo-fuzz --locked`".into());
        }
        println!("    cargo-fuzz is missing: installing it into the cargo home (about a minute)");
        let t = sh::Timer::start("cargo install cargo-fuzz");
        sh::run(Command::new(cargo()).args(["install", "cargo-fuzz", "--locked"]))?;
        t.done();
    }
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn fuzz_dir() -> PathBuf {
    sh::root().join("fuzz")
}

/// `cargo fuzz` with the flags every invocation shares.
fn cargo_fuzz(sub: &str) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(fuzz_dir())
        // cargo fuzz passes nightly-only flags (-Zsanitizer and friends);
        // this lets the stable toolchain accept them.
        .env("RUSTC_BOOTSTRAP", "1")
        // A fixed mmap threshold: the fake platform's 24 MiB of memory is
        // then fresh zero pages at every run instead of a memset of reused heap.
        .env("MALLOC_MMAP_THRESHOLD_", "1048576")
        .args(["fuzz", sub, "-s", "none", "--debug-assertions"]);
    cmd
}

/// Runs `targets` (all if empty) for `total_secs` seconds in all, split
/// evenly; prints a line per target and the summary. Fails if any crashed.
pub fn run(opts: &Options, total_secs: u64, only: Option<&str>) -> Result<()> {
    let targets: Vec<&str> = match only {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => {
            return Err(format!(
                "unknown fuzz target `{t}` (targets: {})",
                TARGETS.join(", ")
            ));
        }
        None => TARGETS.to_vec(),
    };
    sh::step(&format!(
        "fuzz: {} for {total_secs} s in all",
        targets.join(", ")
    ));
    ensure_tools(opts)?;
    let t = sh::Timer::start("fuzz build");
    sh::run(&mut cargo_fuzz("build"))?;
    t.done();
    let work = setup::work_dir().join("fuzz");
    let per = (total_secs / targets.len() as u64).max(1);
    let mut failed = 0;
    let mut lines = Vec::new();
    for target in &targets {
        let o = run_one(target, per, &work)?;
        let line = format!(
            "fuzz: {target}: {} executions in {:.0} s ({:.0} exec/s), {} crashes",
            o.executions,
            o.seconds,
            o.executions as f64 / o.seconds.max(0.001),
            u32::from(o.crashed)
        );
        println!("    {line}");
        lines.push(line);
        failed += usize::from(o.crashed);
    }
    println!();
    for l in &lines {
        println!("{l}");
    }
    println!("fuzz: {} passed, {failed} failed", targets.len() - failed);
    if failed > 0 {
        return Err(format!("{failed} fuzz target(s) crashed (see above)"));
    }
    Ok(())
}

fn run_one(target: &str, secs: u64, work: &Path) -> Result<Outcome> {
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    let log = work.join(format!("{target}.log"));
    for d in [&corpus, &artifacts] {
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let seeds = fuzz_dir().join("corpus").join(target);
    let mut cmd = cargo_fuzz("run");
    cmd.arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-max_len={}", max_len(target)))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args(extra_args(target))
        .arg("-timeout=10")
        .arg("-print_final_stats=1");
    let file = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    cmd.stdout(file).stderr(err);
    println!(
        "    $ cargo fuzz run -s none --debug-assertions {target} ... (log: {})",
        log.display()
    );
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start cargo fuzz: {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log).unwrap_or_default();
    let executions = stat(&text, "stat::number_of_executed_units").unwrap_or(0);
    let crashed = !status.success();
    if crashed {
        println!("    {target} FAILED ({status}); the end of its log:");
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(40)..] {
            println!("      | {l}");
        }
        if let Some(a) = text
            .lines()
            .find_map(|l| l.split("Test unit written to ").nth(1))
        {
            println!("    input: {a}");
            println!(
                "    reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --debug-assertions {target} {a}"
            );
        }
    }
    Ok(Outcome {
        executions,
        seconds,
        crashed,
    })
}

/// A libFuzzer final statistic (`-print_final_stats=1`).
fn stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter_map(|l| l.strip_prefix(name))
        .find_map(|rest| rest.trim_start_matches(':').trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_stats() {
        let log = "#1024 pulse cov: 5\nstat::number_of_executed_units: 123456\n\
                   stat::average_exec_per_sec:     2057\nstat::new_units_added:    3\n";
        assert_eq!(stat(log, "stat::number_of_executed_units"), Some(123456));
        assert_eq!(stat(log, "stat::average_exec_per_sec"), Some(2057));
        assert_eq!(stat(log, "stat::peak_rss_mb"), None);
    }

    #[test]
    fn every_target_has_a_file_and_a_corpus() {
        for t in TARGETS {
            assert!(
                fuzz_dir().join(format!("fuzz_targets/{t}.rs")).is_file(),
                "{t}"
            );
            let seeds = fs::read_dir(fuzz_dir().join("corpus").join(t)).map(|d| d.count());
            assert!(seeds.is_ok_and(|n| n > 0), "no committed corpus for {t}");
        }
    }
}
