//! Booting a flash image in QEMU: on the terminal (`run`) or as a test stage
//! whose output is checked line by line under a time limit.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::build;
use crate::cli::Options;
use crate::setup::Env;
use crate::sh::{self, Result};

/// Normal-world RAM of every stage (`-m`): it must be what the SPMC
/// manifest's `ns-memory` node states (tf-a-integration/qemu/spmc_manifest.dts,
/// 2 GiB from 0x4000_0000; a host test below checks the two agree), or the
/// SPMC would take buffers where no memory is (larger manifest) or refuse
/// real RAM (smaller manifest). One size for all stages, so one manifest.
pub const MEMORY: &str = "2G";
/// The QEMU machine every stage uses; `memory` is QEMU's `-m` value ("1G").
pub fn base_command(flash: &Path, smp: u32, memory: &str) -> Command {
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(["-M", "virt,secure=on,virtualization=on,gic-version=3"])
        .args(["-cpu", "max"])
        .args(["-smp", &smp.to_string()])
        .args(["-m", memory])
        // virt adds a virtio network card by default, and QEMU then needs its
        // option ROM (efi-virtio.rom, in ipxe-qemu, only a recommended
        // package): no stage uses a network.
        .args(["-nic", "none"])
        .arg("-bios")
        .arg(flash);
    cmd
}

/// Where the normal-world harness reads its boot mode (tests/nwd-harness
/// `legacy::MODE_WORD`): 0 for the main boot, else the FF-A version it
/// negotiates before anything else.
pub const HARNESS_MODE_WORD: u64 = 0x6FF0_0000;

/// The harness's boots at older normal-world versions (FF-A v1.2 §13.2
/// fixes the version once another call is made, so each version the e2e
/// and mem checks need is a boot of its own): (version, label).
pub const LEGACY_BOOTS: [(u32, &str); 2] = [(0x1_0000, "v1.0 boot"), (0x1_0001, "v1.1 boot")];

/// Makes the harness boot at `version`: QEMU's generic loader writes the
/// word at reset (little-endian).
pub fn harness_mode(cmd: &mut Command, version: u32) {
    cmd.args([
        "-device",
        &format!("loader,addr={HARNESS_MODE_WORD:#x},data={version:#x},data-len=4"),
    ]);
}

/// Adds the counts, problems and time of another boot of the same stage
/// (`label` names it in the problems) to `into`.
pub fn merge(into: &mut StageResult, other: StageResult, label: &str) {
    into.passed += other.passed;
    into.failed += other.failed;
    into.seconds += other.seconds;
    into.problems
        .extend(other.problems.into_iter().map(|p| format!("{label}: {p}")));
}

/// Both UARTs (UART0: TF-A and the normal world; UART1: the SPMC) on one stream.
pub fn serial_args(cmd: &mut Command, interactive: bool) {
    if interactive {
        cmd.args(["-nographic", "-chardev", "stdio,id=con,mux=on,signal=off"])
            .args(["-serial", "chardev:con", "-serial", "chardev:con"])
            .args(["-mon", "chardev=con,mode=readline"]);
    } else {
        cmd.args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-chardev",
            "stdio,id=con,mux=on",
        ])
        .args(["-serial", "chardev:con", "-serial", "chardev:con"]);
    }
}

/// `cargo xtask run`: build and boot on this terminal.
/// By default the four-user demo under the reference hypervisor
/// (tests/hypervisor); with `--harness` the normal-world test harness.
pub fn run_interactive(env: &Env, opts: &Options) -> Result<()> {
    if opts.board == crate::cli::Board::Rpi4 {
        return crate::rpi4::run_interactive(env, opts);
    }
    if opts.board == crate::cli::Board::Sbsa {
        let flash = crate::sbsa::flash(env, opts)?;
        sh::step(if opts.harness {
            "run: booting QEMU sbsa-ref with the test harness (Ctrl-a x quits; it powers off when done)"
        } else {
            "run: booting QEMU sbsa-ref: four users, each with a VM and a virtual TEE (Ctrl-a x quits; the hypervisor powers off when done)"
        });
        let mut cmd = crate::sbsa::base_command(&flash, opts.smp, MEMORY);
        serial_args(&mut cmd, true);
        if opts.gdb {
            cmd.args(["-s", "-S"]);
        }
        return sh::run_on_terminal(&mut cmd);
    }
    let flash = if opts.harness {
        let fw = build::all(env, opts)?;
        sh::step(
            "run: booting QEMU with the test harness (Ctrl-a x quits; it powers off when done)",
        );
        fw.flash
    } else {
        let flash = crate::vtee::demo(env, opts)?;
        sh::step(
            "run: booting QEMU: four users, each with a VM and a virtual TEE (Ctrl-a x quits; the hypervisor powers off when done)",
        );
        flash
    };
    let mut cmd = base_command(&flash, opts.smp, MEMORY);
    serial_args(&mut cmd, true);
    if opts.gdb {
        println!(
            "    gdb server on tcp::1234, CPU halted: gdb-multiarch -ex 'target remote :1234'"
        );
        cmd.args(["-s", "-S"]);
    }
    sh::run_on_terminal(&mut cmd)
}

/// What a test stage expects of its output.
#[derive(Clone, Debug)]
pub struct StageSpec<'a> {
    /// The stage name in its summary line `<name>: N passed, M failed`.
    pub name: &'a str,
    /// Lines that must appear (for example the Secure EL2 proof).
    pub required: &'a [&'a str],
    /// Lines of a failure the stage causes on purpose (the `fatal` stage's
    /// SPMC panic): a line containing one of these is not a problem.
    pub expected_fatal: &'a [&'a str],
    /// Time limit.
    pub timeout: Duration,
    /// After a panic line, how long to wait for more output before stopping
    /// QEMU (a Linux kernel that panics hangs; there is nothing to wait for).
    /// `None`: wait for QEMU to exit or the time limit.
    pub panic_grace: Option<Duration>,
}

/// What a stage produced.
#[derive(Clone, Debug, Default)]
pub struct StageResult {
    pub passed: u32,
    pub failed: u32,
    pub problems: Vec<String>,
    pub lines: Vec<String>,
    pub seconds: f64,
}

/// Whether `line` is a summary `<name>: N passed, M failed` of any name.
fn is_summary(line: &str) -> bool {
    line.split_once(": ")
        .is_some_and(|(name, _)| !name.is_empty() && parse_summary(line, name).is_some())
}

/// Parses `<name>: N passed, M failed`.
pub fn parse_summary(line: &str, name: &str) -> Option<(u32, u32)> {
    let rest = line.strip_prefix(name)?.strip_prefix(": ")?;
    let (p, rest) = rest.split_once(" passed, ")?;
    let f = rest.strip_suffix(" failed")?;
    Some((p.trim().parse().ok()?, f.trim().parse().ok()?))
}

/// TF-A's line when the normal world asks for PSCI SYSTEM_OFF on QEMU virt.
const TFA_POWER_OFF: &str = "QEMU System Power off: with GPIO.";
/// What TF-A prints when it is still running after that GPIO write (virt:
/// `PANIC at PC`; qemu_sbsa, whose power-off prints nothing before it:
/// `PANIC in EL3.` and a register dump).
const TFA_PANICS: [&str; 2] = ["PANIC at PC", "PANIC in EL3."];

/// Checks output lines one by one; remembers what it needs from earlier lines.
#[derive(Debug, Default)]
struct Judge {
    /// TF-A's power-off line was seen (virt): from then on.
    powering_off: bool,
    /// The previous line was a summary (sbsa-ref's power-off prints nothing).
    after_summary: bool,
}

impl Judge {
    /// Returns a problem if the line shows one.
    fn line(&mut self, line: &str) -> Option<String> {
        if line.starts_with("FAIL ") {
            return Some(line.to_string());
        }
        // TF-A powers QEMU off (a GPIO write on virt, the embedded
        // controller on sbsa-ref) and then calls panic() in case it returns;
        // with several vCPU threads QEMU may let it print before the machine
        // stops. That line, right after the power-off (virt's power-off line,
        // or the boot's last summary line, `<name>: N passed, M failed`), is
        // the end of the run, not a failure. A panic that cut a boot short
        // leaves a summary missing, which the stage reports on its own.
        let tfa_panic = TFA_PANICS.iter().any(|p| line.trim_start().starts_with(p));
        if (self.powering_off || self.after_summary) && tfa_panic {
            return None;
        }
        self.after_summary = is_summary(line);
        if line.contains(TFA_POWER_OFF) {
            self.powering_off = true;
        }
        let lower = line.to_ascii_lowercase();
        if lower.contains("panic") || line.contains("FATAL") {
            return Some(format!("panic or fatal error: {line}"));
        }
        None
    }
}

/// The lines a child process writes on its output streams, as they come
/// (one reader thread per stream; `\r` removed, bytes that are not UTF-8
/// replaced, so a guest's stray bytes never end the reading).
pub struct Lines {
    rx: mpsc::Receiver<String>,
}

/// [`Lines::next_before`]'s deadline passed before the next line came.
#[derive(Debug)]
pub struct TimedOut;

impl Lines {
    pub fn of(streams: Vec<Box<dyn std::io::Read + Send>>) -> Lines {
        let (tx, rx) = mpsc::channel::<String>();
        for stream in streams {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
                    let text = String::from_utf8_lossy(&line).replace('\r', "");
                    if tx.send(text).is_err() {
                        break;
                    }
                }
            });
        }
        Lines { rx }
    }

    /// The next line; `Ok(None)` once every stream is closed.
    pub fn next_before(&self, deadline: Instant) -> std::result::Result<Option<String>, TimedOut> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TimedOut);
        }
        match self.rx.recv_timeout(left) {
            Ok(line) => Ok(Some(line)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(TimedOut),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
        }
    }
}

/// Boots `cmd` (a QEMU command without serial options) and checks its output.
pub fn run_stage(mut cmd: Command, spec: &StageSpec<'_>) -> Result<StageResult> {
    sh::step(&format!(
        "e2e stage `{}` in QEMU (time limit {} s)",
        spec.name,
        spec.timeout.as_secs()
    ));
    serial_args(&mut cmd, false);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let stdout = child.stdout.take().ok_or("no QEMU stdout")?;
    let stderr = child.stderr.take().ok_or("no QEMU stderr")?;
    let lines = Lines::of(vec![Box::new(stdout), Box::new(stderr)]);

    let mut res = StageResult::default();
    let mut summary = None;
    let mut judge = Judge::default();
    let mut deadline = start + spec.timeout;
    // Set when a panic line shortened the deadline to `panic_grace`.
    let mut panic_cut = false;
    let mut deadline_hit = false;
    loop {
        match lines.next_before(deadline) {
            Ok(Some(line)) => {
                println!("{line}");
                let expected = spec.expected_fatal.iter().any(|e| line.contains(e));
                if let Some(p) = judge.line(&line).filter(|_| !expected) {
                    if let Some(grace) = spec.panic_grace
                        && p.starts_with("panic")
                        && !panic_cut
                    {
                        panic_cut = true;
                        deadline = deadline.min(Instant::now() + grace);
                    }
                    res.problems.push(p);
                }
                if let Some(s) = parse_summary(&line, spec.name) {
                    summary = Some((s, res.lines.len()));
                }
                res.lines.push(line);
            }
            Err(TimedOut) => {
                deadline_hit = true;
                break;
            }
            Ok(None) => break,
        }
    }
    if deadline_hit {
        let _ = child.kill();
        if panic_cut {
            println!(
                "    (stopped QEMU {} s after the panic)",
                spec.panic_grace.unwrap_or_default().as_secs()
            );
        } else {
            res.problems
                .push(format!("timed out after {} s", spec.timeout.as_secs()));
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    if !deadline_hit && !status.success() {
        res.problems.push(format!("QEMU exited with {status}"));
    }
    res.seconds = start.elapsed().as_secs_f64();
    match summary {
        Some(((p, f), at)) => {
            res.passed = p;
            res.failed = f;
            if f > 0 {
                res.problems.push(format!("{f} check(s) failed"));
            }
            // The stage's own PASS/FAIL lines are those before its summary
            // (a later section of the same boot has its own, see `section`).
            let (pass_lines, fail_lines) = result_lines(&res.lines[..at]);
            if fail_lines != f || (pass_lines != 0 && pass_lines != p) {
                res.problems.push(format!(
                    "summary says {p} passed, {f} failed but the output has {pass_lines} PASS and {fail_lines} FAIL lines"
                ));
            }
        }
        None => res
            .problems
            .push(format!("no `{}: N passed, M failed` line", spec.name)),
    }
    for req in spec.required {
        if !res.lines.iter().any(|l| l.contains(req)) {
            res.problems
                .push(format!("missing expected line containing `{req}`"));
        }
    }
    println!("    (stage `{}`: {:.1} s)", spec.name, res.seconds);
    Ok(res)
}

/// Counts the `PASS ` and `FAIL ` lines.
fn result_lines(lines: &[String]) -> (u32, u32) {
    let count = |p: &str| lines.iter().filter(|l| l.starts_with(p)).count() as u32;
    (count("PASS "), count("FAIL "))
}

/// A second set of checks in the same boot: the lines after the summary
/// `<after>: ...` up to `<name>: N passed, M failed` (the harness's `mem`
/// checks after its `e2e` ones). Missing, failed or inconsistent with its
/// PASS/FAIL lines, it is a problem.
pub fn section(stage: &StageResult, after: &str, name: &str) -> StageResult {
    let mut res = StageResult {
        seconds: stage.seconds,
        ..StageResult::default()
    };
    let start = stage
        .lines
        .iter()
        .position(|l| parse_summary(l, after).is_some())
        .map_or(0, |i| i + 1);
    let found = stage.lines[start..]
        .iter()
        .enumerate()
        .find_map(|(i, l)| parse_summary(l, name).map(|s| (i, s)));
    let Some((end, (p, f))) = found else {
        res.problems.push(format!(
            "no `{name}: N passed, M failed` line after `{after}:`"
        ));
        return res;
    };
    res.passed = p;
    res.failed = f;
    if f > 0 {
        res.problems.push(format!("{f} {name} check(s) failed"));
    }
    let (pass_lines, fail_lines) = result_lines(&stage.lines[start..start + end]);
    if pass_lines != p || fail_lines != f {
        res.problems.push(format!(
            "`{name}` summary says {p} passed, {f} failed but its section has {pass_lines} PASS and {fail_lines} FAIL lines"
        ));
    }
    res
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    /// QEMU virt's RAM starts here.
    const RAM_BASE: u64 = 0x4000_0000;

    /// [`MEMORY`] in bytes (`<n>G` or `<n>M`).
    fn memory_bytes(m: &str) -> Option<u64> {
        let (n, unit) = m.split_at(m.len().checked_sub(1)?);
        let n: u64 = n.parse().ok()?;
        match unit {
            "G" => n.checked_mul(1 << 30),
            "M" => n.checked_mul(1 << 20),
            _ => None,
        }
    }

    /// The `ns-memory` node of the shipped SPMC manifest, as (base, size):
    /// read from the source text (`reg = <hi lo size>`, #address-cells 2 and
    /// #size-cells 1 as the manifest declares).
    fn manifest_ns_memory(board: &str) -> (u64, u64) {
        let path = sh::root()
            .join("tf-a-integration")
            .join(board)
            .join("spmc_manifest.dts");
        let text = std::fs::read_to_string(&path).expect("manifest");
        let node = text
            .split("device_type = \"ns-memory\";")
            .nth(1)
            .expect("an ns-memory node");
        let reg = node
            .split("reg = <")
            .nth(1)
            .expect("reg")
            .split('>')
            .next()
            .unwrap();
        let cells: Vec<u64> = reg
            .split_whitespace()
            .map(|c| u64::from_str_radix(c.trim_start_matches("0x"), 16).expect("hex cell"))
            .collect();
        assert_eq!(cells.len(), 3, "one range, <hi lo size>: {reg}");
        ((cells[0] << 32) | cells[1], cells[2])
    }

    #[test]
    fn qemu_memory_is_what_the_manifest_states() {
        assert_eq!(
            manifest_ns_memory("qemu"),
            (RAM_BASE, memory_bytes(MEMORY).unwrap()),
            "spmc_manifest.dts ns-memory must match qemu::MEMORY"
        );
    }

    /// The harness reads its boot mode where the loader writes it, in RAM.
    #[test]
    fn harness_mode_word_matches_the_harness() {
        let path = sh::root().join("tests/nwd-harness/src/legacy.rs");
        let text = std::fs::read_to_string(&path).expect("legacy.rs");
        let value = text
            .split("pub const MODE_WORD: u64 = ")
            .nth(1)
            .expect("MODE_WORD")
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("0x")
            .replace('_', "");
        let word = u64::from_str_radix(&value, 16).expect("hex");
        assert_eq!(word, HARNESS_MODE_WORD);
        assert!(word >= RAM_BASE && word + 4 <= RAM_BASE + memory_bytes(MEMORY).unwrap());
        let mut cmd = Command::new("qemu-system-aarch64");
        harness_mode(&mut cmd, 0x1_0000);
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["-device", "loader,addr=0x6ff00000,data=0x10000,data-len=4"]
        );
    }

    #[test]
    fn sbsa_ref_memory_is_what_its_manifest_states() {
        // sbsa-ref's RAM starts at 1 TiB; the `sbsa` stage uses MEMORY too.
        assert_eq!(
            manifest_ns_memory("sbsa"),
            (1 << 40, memory_bytes(MEMORY).unwrap()),
            "sbsa/spmc_manifest.dts ns-memory must match qemu::MEMORY"
        );
    }

    #[test]
    fn memory_sizes_parse() {
        assert_eq!(memory_bytes("1G"), Some(1 << 30));
        assert_eq!(memory_bytes("512M"), Some(512 << 20));
        assert_eq!(memory_bytes("2"), None);
        assert_eq!(memory_bytes(""), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines() {
        assert_eq!(
            parse_summary("e2e: 22 passed, 0 failed", "e2e"),
            Some((22, 0))
        );
        assert_eq!(
            parse_summary("e2e: 3 passed, 2 failed", "e2e"),
            Some((3, 2))
        );
        assert_eq!(parse_summary("linux: 3 passed, 2 failed", "e2e"), None);
        assert_eq!(parse_summary("e2e: x passed, 2 failed", "e2e"), None);
    }

    fn stage_of(lines: &[&str]) -> StageResult {
        StageResult {
            lines: lines.iter().map(|l| l.to_string()).collect(),
            ..StageResult::default()
        }
    }

    #[test]
    fn a_section_after_the_summary() {
        let s = stage_of(&[
            "PASS a",
            "e2e: 1 passed, 0 failed",
            "PASS m1",
            "FAIL m2: x",
            "mem: 1 passed, 1 failed",
        ]);
        let m = section(&s, "e2e", "mem");
        assert_eq!((m.passed, m.failed), (1, 1));
        assert_eq!(m.problems.len(), 1, "{:?}", m.problems);
        let ok = stage_of(&[
            "e2e: 0 passed, 0 failed",
            "PASS m",
            "mem: 1 passed, 0 failed",
        ]);
        assert!(section(&ok, "e2e", "mem").problems.is_empty());
        let lying = stage_of(&[
            "e2e: 0 passed, 0 failed",
            "PASS m",
            "mem: 2 passed, 0 failed",
        ]);
        assert_eq!(section(&lying, "e2e", "mem").problems.len(), 1);
        let missing = stage_of(&["PASS a", "e2e: 1 passed, 0 failed"]);
        assert_eq!(section(&missing, "e2e", "mem").problems.len(), 1);
    }

    #[test]
    fn no_network_card() {
        // Without `-nic none` virt adds a virtio NIC whose option ROM is in a
        // package the set-up does not install (ipxe-qemu).
        let cmd = base_command(Path::new("flash.bin"), 1, MEMORY);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["-nic", "none"]), "{args:?}");
    }

    fn judge(line: &str) -> Option<String> {
        Judge::default().line(line)
    }

    #[test]
    fn judged_lines() {
        assert!(judge("FAIL version: got 1").is_some());
        assert!(judge("spmc: FATAL SPMC panic on core 0").is_some());
        assert!(judge("PASS version").is_none());
        assert!(judge("ERROR:   QEMU System Power off: with GPIO.").is_none());
        assert!(judge("[    2.1] Kernel panic - not syncing: Attempted to kill init!").is_some());
        assert!(judge("PANIC at PC : 0x000000000e096958").is_some());
    }

    #[test]
    fn tfa_panic_after_power_off_is_the_end_not_a_failure() {
        let mut j = Judge::default();
        assert!(j.line("[    4.837071] reboot: Power down").is_none());
        assert!(
            j.line("ERROR:   QEMU System Power off: with GPIO.")
                .is_none()
        );
        assert!(j.line("PANIC at PC : 0x000000000e096958").is_none());
        // Anything else after it still counts.
        assert!(j.line("spmc: FATAL SPMC panic on core 1").is_some());
        assert!(j.line("FAIL late: x").is_some());
    }

    #[test]
    fn sbsa_power_off_panic_right_after_the_last_summary_is_the_end() {
        let mut j = Judge::default();
        assert!(j.line("vtee: 81 passed, 0 failed").is_none());
        assert!(j.line("PANIC in EL3.").is_none());
        assert!(j.line("x30            = 0x000000003fcf55cc").is_none());
        // Not right after a summary or the power-off: a failure.
        let mut j = Judge::default();
        assert!(j.line("PASS something").is_none());
        assert!(j.line("PANIC in EL3.").is_some());
        let mut j = Judge::default();
        assert!(j.line("vtee: 81 passed, 0 failed").is_none());
        assert!(j.line("PASS later").is_none());
        assert!(j.line("PANIC at PC : 0x0").is_some());
    }
}
