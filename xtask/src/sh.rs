//! Running commands, quietly by default.
//!
//! Every step ([`step`]) prints one heading line; the commands it runs
//! ([`run`], [`output`]) write what they print to the step's own log file
//! under `<work>/logs/` (for example `target/xtask/logs/03-build-firmware-crates.log`),
//! and the terminal sees a live elapsed-time indicator while they run (only
//! on a terminal, never under `CI=true`). A command that fails prints the
//! last lines of its log and the log's path. `--verbose` shows every command
//! and its whole output on the terminal instead, as a plain build would.
//!
//! QEMU's output is the product, not a build log: the stages and `run`
//! print it themselves ([`run_on_terminal`], `qemu::run_stage`).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub type Result<T> = std::result::Result<T, String>;

/// Lines of a failed command's log shown on the terminal.
const TAIL_LINES: usize = 30;
/// A command running longer than this gets the live indicator.
const INDICATOR_AFTER: Duration = Duration::from_secs(2);

static VERBOSE: AtomicBool = AtomicBool::new(false);
static STEPS: AtomicUsize = AtomicUsize::new(0);
/// The current step's log file (none before the first step).
static STEP_LOG: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The repository's top directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where this run's step logs go (emptied at the start of each run).
pub fn log_dir() -> PathBuf {
    crate::setup::work_dir().join("logs")
}

/// Chooses quiet (logs) or verbose (everything on the terminal) output and
/// starts this run's log directory afresh.
pub fn init(verbose: bool) {
    VERBOSE.store(verbose, Ordering::SeqCst);
    let dir = log_dir();
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::create_dir_all(&dir);
}

/// True with `--verbose`.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::SeqCst)
}

/// Prints a step heading and starts the step's log file.
pub fn step(what: &str) {
    println!("\n==> {what}");
    let n = STEPS.fetch_add(1, Ordering::SeqCst) + 1;
    let path = log_dir().join(format!("{n:02}-{}.log", slug(what)));
    *STEP_LOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
}

/// The current step's log file (created on first use).
pub fn current_log() -> PathBuf {
    STEP_LOG
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| log_dir().join("00-set-up.log"))
}

/// A file name for a step heading: lowercase words joined by dashes.
fn slug(what: &str) -> String {
    let mut s = String::new();
    for w in what
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if s.len() + w.len() > 48 {
            break;
        }
        if !s.is_empty() {
            s.push('-');
        }
        s.push_str(&w.to_ascii_lowercase());
    }
    if s.is_empty() { "step".into() } else { s }
}

fn open_log() -> Result<(File, PathBuf)> {
    let path = current_log();
    if let Some(dir) = path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot open the log {}: {e}", path.display()))?;
    Ok((f, path))
}

/// Runs `cmd`; fails if it exits non-zero. Its output goes to the step's log
/// (or to the terminal with `--verbose`).
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    if verbose() {
        println!("    $ {shown}");
        let status = cmd
            .status()
            .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
        return check(status, &shown, None);
    }
    let (mut log, path) = open_log()?;
    let _ = writeln!(log, "$ {shown}");
    let out = log.try_clone().map_err(|e| e.to_string())?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    let status = wait_with_indicator(child)?;
    check(status, &shown, Some(&path))
}

/// Runs `cmd` with the terminal as its input and output (QEMU on the terminal).
pub fn run_on_terminal(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    if verbose() {
        println!("    $ {shown}");
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    check(status, &shown, None)
}

/// Runs `cmd` and returns its stdout; fails if it exits non-zero. Its stderr
/// goes to the step's log (the terminal with `--verbose`).
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    let path = if verbose() {
        cmd.stderr(Stdio::inherit());
        None
    } else {
        let (mut log, path) = open_log()?;
        let _ = writeln!(log, "$ {shown}  (stdout captured)");
        cmd.stderr(log);
        Some(path)
    };
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    // A probe (`dpkg-query` of a package that is not there) may fail by
    // design: the caller decides what a failure means, nothing is printed.
    if !out.status.success() {
        let program = shown.split_whitespace().next().unwrap_or(&shown);
        return Err(match path {
            Some(log) => format!(
                "`{program}` failed ({}); log: {}",
                out.status,
                log.display()
            ),
            None => format!("`{shown}` failed ({})", out.status),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Turns an exit status into the result; a failure shows the log's tail.
fn check(status: ExitStatus, shown: &str, log: Option<&Path>) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let program = shown.split_whitespace().next().unwrap_or(shown);
    let Some(log) = log else {
        return Err(format!("`{shown}` failed ({status})"));
    };
    println!("    `{program}` failed ({status}); the last lines of its log:");
    for line in tail(log, TAIL_LINES) {
        println!("    | {line}");
    }
    println!("    full log: {}", log.display());
    Err(format!(
        "`{program}` failed ({status}); log: {}",
        log.display()
    ))
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(|l| l.ok()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// True where a live indicator may be drawn: a terminal, and not CI.
fn interactive() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("CI").is_none_or(|v| v != "true")
}

/// Waits for `child`; on a terminal, redraws `    ... N s` while it runs.
fn wait_with_indicator(mut child: Child) -> Result<ExitStatus> {
    if !interactive() {
        return child.wait().map_err(|e| e.to_string());
    }
    let start = Instant::now();
    let mut drawn = false;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            if drawn {
                print!("\r\x1b[K");
                let _ = std::io::stdout().flush();
            }
            return Ok(status);
        }
        let t = start.elapsed();
        if t >= INDICATOR_AFTER {
            let spin = ['|', '/', '-', '\\'][(t.as_millis() / 250 % 4) as usize];
            print!("\r    {spin} {} s", t.as_secs());
            let _ = std::io::stdout().flush();
            drawn = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True if an executable of this name is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Measures a named step and prints its wall time.
pub struct Timer {
    name: String,
    start: Instant,
}

impl Timer {
    pub fn start(name: &str) -> Self {
        Self {
            name: name.into(),
            start: Instant::now(),
        }
    }

    pub fn done(self) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        println!("    ({}: {secs:.1} s)", self.name);
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_log_names() {
        assert_eq!(
            slug("build: firmware crates for aarch64-unknown-none-softfloat (debug)"),
            "build-firmware-crates-for-aarch64-unknown-none"
        );
        assert_eq!(slug("--"), "step");
    }

    #[test]
    fn a_failing_command_shows_its_log_tail_and_path() {
        let dir = std::env::temp_dir().join(format!("xtask-sh-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("step.log");
        *STEP_LOG.lock().unwrap() = Some(log.clone());
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 50); do echo line $i; done; echo oops >&2; exit 3",
        ]);
        let err = run(&mut cmd).unwrap_err();
        assert!(err.contains(&log.display().to_string()), "{err}");
        let t = tail(&log, 2);
        assert_eq!(t, ["line 50", "oops"]);
        assert!(run(&mut Command::new("true")).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }
}
