//! The console and the result lines every normal-world test image prints
//! (`PASS <name>` / `FAIL <name>: <why>`, counted into a `Report`), shared by
//! the test harness and the reference hypervisor.

use core::fmt::{self, Write};

use crate::Pl011;

/// UART0, the normal world's console.
pub fn console() -> Pl011 {
    // SAFETY: UART0 (`board::NS_UART`) is the board's normal-world console. Its one
    // user at a time is the image running on the normal world's only busy core
    // (the harness, or the hypervisor and the VMs it runs one after another),
    // so lines never mix.
    unsafe { Pl011::new(crate::board::NS_UART) }
}

/// Prints one line on the console.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::report::console(), $($arg)*);
    }};
}

/// Why a check failed: what was checked and, for comparisons, the two values.
/// Kept small (the images have little stack and clippy keeps `Err` lean).
#[derive(Debug)]
pub struct Fail {
    pub what: &'static str,
    pub values: Option<(u64, u64)>,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.values {
            Some((got, want)) => write!(f, "{}: got {got:#x}, want {want:#x}", self.what),
            None => f.write_str(self.what),
        }
    }
}

/// What a check returns.
pub type Outcome = Result<(), Fail>;

/// A failure without values.
pub fn fail(what: &'static str) -> Fail {
    Fail { what, values: None }
}

/// Fails the check with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $what:literal) => {
        if !$cond {
            return Err($crate::report::Fail {
                what: $what,
                values: None,
            });
        }
    };
}

/// Fails the check unless the two values (anything that converts to u64 with `as`) are equal.
#[macro_export]
macro_rules! ensure_eq {
    ($a:expr, $b:expr, $what:literal) => {{
        let (a, b) = ($a as u64, $b as u64);
        if a != b {
            return Err($crate::report::Fail {
                what: $what,
                values: Some((a, b)),
            });
        }
    }};
}

/// Counts and prints results.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: u32,
    pub failed: u32,
}

impl Report {
    /// Counts and prints a failure of check `name`'s clean-up as a result
    /// of its own, `FAIL <name>-cleanup: <why>`.
    pub fn fail_cleanup(&mut self, name: &str, e: Fail) {
        self.failed += 1;
        let _ = writeln!(console(), "FAIL {name}-cleanup: {e}");
    }

    /// Runs one check and prints its line.
    pub fn check(&mut self, name: &str, f: impl FnOnce() -> Outcome) {
        match f() {
            Ok(()) => {
                self.passed += 1;
                let _ = writeln!(console(), "PASS {name}");
            }
            Err(e) => {
                self.failed += 1;
                let _ = writeln!(console(), "FAIL {name}: {e}");
            }
        }
    }
}
