//! Command-line parsing (no dependencies, so the xtask builds in seconds).

/// Whether `test` runs the `linux` stage unless told otherwise.
pub const LINUX_STAGE_BY_DEFAULT: bool = true;

const HELP: &str = "\
cargo xtask <command> [options]

Commands:
  setup    Install what is missing (Debian packages, TF-A source) and stop
  build    Build the SPMC, the test images and the TF-A firmware (flash image)
  run      Build everything and boot it in QEMU on this terminal: the
           four-user demo (a reference hypervisor at NS-EL2 runs four VMs,
           each with its own virtual TEE; one is destroyed and created
           again); with --harness the normal-world test harness instead
           (quit QEMU with Ctrl-a x; both power off by themselves)
  test     Host unit tests, rustfmt, clippy (host and aarch64), firmware and
           TF-A builds, a one-minute run of the fuzz targets, then the
           end-to-end stages in QEMU: `e2e` (our
           normal-world harness), `vtee` (VMs under the reference
           hypervisor and their virtual TEEs), `hostile` (malformed calls
           from the normal world and from a partition, with interrupts in
           the middle), `sbsa` (the harness and the hypervisor again on
           QEMU sbsa-ref, under TF-A's qemu_sbsa platform), `rpi4`
           (the core at non-secure EL2 on QEMU raspi4b under TF-A's
           rpi4 platform: board and per-user checks) and `linux`
           (Debian's Linux 7.2 with the FF-A driver and tpm_crb_ffa, over
           TF-A and the SPMC)
  fuzz     Run the libFuzzer targets (descriptor parsers, manifest
           parsers, the whole dispatcher over the fake platform) with
           `cargo fuzz`; prints `fuzz: <target>: N executions ...` per
           target and `fuzz: N passed, M failed`. Installs cargo-fuzz and
           g++ if missing. See docs/fuzzing.md
  map      Print the secure memory map from the manifests, without
           booting: the SPMC image, the partition packages, each
           partition's memory in the pool, the heap (the table the SPMC
           prints at boot); fails on overlaps or ranges outside secure
           memory. See docs/memory-map.md
  bench    Release build, then the benchmarks in QEMU under -icount shift=0
           (one instruction per virtual nanosecond): prints
           `bench: <name>: <value> <unit>` lines. Never fails on a figure.
  help     Show this text

Options:
  --release          Build the firmware with the release profile (default: dev)
  --smp <N>          Cores for QEMU (1-4, default 4: the e2e stage's
                     multicore checks turn cores 1-3 on)
  --gdb              Start QEMU halted with a gdb server on tcp::1234
                     (attach: gdb-multiarch -ex 'target remote :1234')
  --log <LEVEL>      SPMC log level: error, warn, info (default), debug, trace
                     (build time; a --release image leaves out the levels
                     above it)
  --timeout <SECS>   Time limit of each QEMU stage in `test` (default 300)
  --skip-host        `test`: skip host tests, rustfmt, clippy and the fuzz run
  --skip-fuzz        `test`: skip the fuzz run
  --time <SECS>      `fuzz`: seconds in all, split evenly across the targets
                     (default 60; `test` always fuzzes for 60)
  --target <NAME>    `fuzz`: only this target (parsers, manifests, dispatcher)
  --linux            `test`: run the `linux` stage ({linux_default});
                     `setup`: also fetch its Debian packages
  --skip-linux       `test`: do not run the `linux` stage
  --stage <NAME>     `test`: run only this QEMU stage: e2e (with mem),
                     vtee, fatal, hostile, linux, sbsa (the harness on
                     sbsa-ref), rpi4 (raspi4b, non-secure EL2) or optee
                     (OP-TEE OS under the SPMC, Linux's optee driver on
                     top; only when named: docs/optee.md)
                     (builds and checks as usual)
  --harness          `run`: boot the normal-world test harness (the `e2e`
                     stage's image) instead of the four-user demo
  --board <NAME>     `run`: the QEMU machine, virt (default) or sbsa
                     (sbsa-ref under TF-A's qemu_sbsa platform, with our
                     patch: tf-a-integration/sbsa/README.md) or rpi4
                     (raspi4b under TF-A's rpi4 platform, our image at
                     non-secure EL2: docs/rpi4.md)
  --no-install       Never install anything; fail with the command to run instead
  -v, --verbose      Show every command and its whole output (by default each
                     step prints one line and its output goes to a log under
                     <work>/logs/, shown in part only when the step fails)

Environment:
  SPMC_XTASK_DIR     Where set-up files and builds go (default: target/xtask)
";

/// The help text.
pub fn help() -> String {
    HELP.replace(
        "{linux_default}",
        if LINUX_STAGE_BY_DEFAULT {
            "on by default"
        } else {
            "off by default for now"
        },
    )
}

/// The QEMU stages `test --stage` can pick, in the order `test` runs them.
pub const STAGES: &[&str] = &[
    "e2e", "vtee", "fatal", "hostile", "sbsa", "rpi4", "linux", "optee",
];

/// The subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Setup,
    Build,
    Run,
    Test,
    Bench,
    Fuzz,
    Map,
    Help,
}

/// Parsed options.
#[derive(Clone, Debug)]
pub struct Options {
    pub command: Command,
    pub release: bool,
    pub smp: u32,
    pub gdb: bool,
    pub log: String,
    pub timeout_secs: u64,
    pub skip_host: bool,
    pub no_install: bool,
    /// Run (`test`) or fetch (`setup`) the `linux` stage.
    pub linux: bool,
    /// `run`: boot the test harness instead of the demo.
    pub harness: bool,
    /// Show every command's output instead of logging it.
    pub verbose: bool,
    /// `test`: run only this QEMU stage.
    pub stage: Option<String>,
    /// `test`: skip the fuzz run.
    pub skip_fuzz: bool,
    /// `fuzz`: seconds in all.
    pub fuzz_secs: u64,
    /// `fuzz`: only this target.
    pub fuzz_target: Option<String>,
    /// `run`: the QEMU machine.
    pub board: Board,
}

/// The QEMU machine `run` boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    /// `-M virt,secure=on,virtualization=on` (TF-A's `qemu` platform).
    Virt,
    /// `-M sbsa-ref` (TF-A's `qemu_sbsa` platform with our patch).
    Sbsa,
    /// `-M raspi4b` (TF-A's `rpi4` platform; our image at non-secure EL2).
    Rpi4,
}

pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let command = match args.next().as_deref() {
        None | Some("help" | "--help" | "-h") => Command::Help,
        Some("setup") => Command::Setup,
        Some("build") => Command::Build,
        Some("run") => Command::Run,
        Some("test") => Command::Test,
        Some("bench") => Command::Bench,
        Some("fuzz") => Command::Fuzz,
        Some("map") => Command::Map,
        Some(other) => return Err(format!("unknown command `{other}`")),
    };
    let mut o = Options {
        command,
        release: false,
        smp: 4,
        gdb: false,
        log: "info".into(),
        timeout_secs: 300,
        skip_host: false,
        no_install: false,
        linux: LINUX_STAGE_BY_DEFAULT,
        harness: false,
        verbose: false,
        stage: None,
        skip_fuzz: false,
        fuzz_secs: crate::fuzz::TEST_SECONDS,
        fuzz_target: None,
        board: Board::Virt,
    };
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--release" => o.release = true,
            "--gdb" => o.gdb = true,
            "--skip-host" => o.skip_host = true,
            "--no-install" => o.no_install = true,
            "--linux" => o.linux = true,
            "--skip-linux" => o.linux = false,
            "--harness" => o.harness = true,
            "--verbose" | "-v" => o.verbose = true,
            "--stage" => {
                let s = value("--stage")?;
                if !STAGES.contains(&s.as_str()) {
                    return Err(format!(
                        "--stage: unknown stage `{s}` (one of {})",
                        STAGES.join(", ")
                    ));
                }
                o.stage = Some(s);
            }
            "--skip-fuzz" => o.skip_fuzz = true,
            "--time" => {
                o.fuzz_secs = value("--time")?
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| "--time takes a number of seconds above 0".to_string())?;
            }
            "--target" => o.fuzz_target = Some(value("--target")?),
            "--board" => {
                o.board = match value("--board")?.as_str() {
                    "virt" => Board::Virt,
                    "sbsa" => Board::Sbsa,
                    "rpi4" => Board::Rpi4,
                    other => {
                        return Err(format!(
                            "--board: unknown board `{other}` (virt, sbsa or rpi4)"
                        ));
                    }
                };
            }
            "--smp" => {
                o.smp = value("--smp")?
                    .parse()
                    .map_err(|_| "--smp takes a number".to_string())?;
                if !(1..=4).contains(&o.smp) {
                    return Err("--smp must be 1 to 4 (TF-A's QEMU port numbers at most 4 cores per cluster)".into());
                }
            }
            "--log" => {
                o.log = value("--log")?;
                if !["error", "warn", "info", "debug", "trace"].contains(&o.log.as_str()) {
                    return Err(format!("--log: unknown level `{}`", o.log));
                }
            }
            "--timeout" => {
                o.timeout_secs = value("--timeout")?
                    .parse()
                    .map_err(|_| "--timeout takes seconds".to_string())?;
            }
            "--help" | "-h" => o.command = Command::Help,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Options, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_options() {
        let o = p("run --smp 2 --release --gdb").unwrap();
        assert_eq!(o.command, Command::Run);
        assert_eq!(o.smp, 2);
        assert!(o.release && o.gdb);
        assert_eq!(p("").unwrap().command, Command::Help);
        assert_eq!(p("test --help").unwrap().command, Command::Help);
    }

    #[test]
    fn linux_stage_flags() {
        assert_eq!(p("test").unwrap().linux, LINUX_STAGE_BY_DEFAULT);
        assert!(p("test --linux").unwrap().linux);
        assert!(!p("test --skip-linux").unwrap().linux);
        assert!(!p("test --linux --skip-linux").unwrap().linux);
        assert!(help().contains("--skip-linux"));
        assert!(!help().contains('{'));
    }

    #[test]
    fn run_boots_the_demo_unless_told() {
        assert!(!p("run").unwrap().harness);
        assert!(p("run --harness").unwrap().harness);
        assert!(help().contains("--harness"));
    }

    #[test]
    fn quiet_unless_verbose() {
        assert!(!p("test").unwrap().verbose);
        assert!(p("test --verbose").unwrap().verbose);
        assert!(p("run -v").unwrap().verbose);
    }

    #[test]
    fn one_stage() {
        assert_eq!(p("test").unwrap().stage, None);
        assert_eq!(
            p("test --stage hostile").unwrap().stage.as_deref(),
            Some("hostile")
        );
        assert!(p("test --stage nope").is_err());
        assert!(p("test --stage").is_err());
        assert!(help().contains("--stage"));
    }

    #[test]
    fn fuzz_options() {
        let o = p("fuzz --time 3600 --target dispatcher").unwrap();
        assert_eq!(o.command, Command::Fuzz);
        assert_eq!(o.fuzz_secs, 3600);
        assert_eq!(o.fuzz_target.as_deref(), Some("dispatcher"));
        assert_eq!(p("fuzz").unwrap().fuzz_secs, crate::fuzz::TEST_SECONDS);
        assert!(p("test --skip-fuzz").unwrap().skip_fuzz);
        assert!(p("fuzz --time 0").is_err());
        assert!(p("fuzz --time soon").is_err());
        assert!(help().contains("--time") && help().contains("--target"));
    }

    #[test]
    fn boards() {
        assert_eq!(p("run").unwrap().board, Board::Virt);
        assert_eq!(p("run --board sbsa").unwrap().board, Board::Sbsa);
        assert_eq!(p("run --board virt").unwrap().board, Board::Virt);
        assert_eq!(p("run --board rpi4").unwrap().board, Board::Rpi4);
        assert!(p("run --board pi").is_err());
        assert!(p("run --board").is_err());
        assert!(p("test --stage sbsa").is_ok());
        assert!(help().contains("--board"));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(p("frobnicate").is_err());
        assert_eq!(p("map").unwrap().command, Command::Map);
        assert!(help().contains("map "));
        assert!(p("run --smp 9").is_err());
        assert!(p("run --smp").is_err());
        assert!(p("run --log loud").is_err());
        assert!(p("run --what").is_err());
    }
}
