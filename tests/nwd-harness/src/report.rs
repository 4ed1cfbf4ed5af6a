//! Result lines and the failure message type the checks return.

use core::fmt::{self, Write};

use baremetal::Pl011;

/// UART0, the normal world's console on QEMU virt.
pub fn console() -> Pl011 {
    // SAFETY: UART0 at 0x09000000 is QEMU virt's normal-world console and
    // the harness is its only user.
    unsafe { Pl011::new(0x0900_0000) }
}

/// Why a check failed, formatted into a fixed buffer (the harness has no heap).
pub struct Fail {
    buf: [u8; 160],
    len: usize,
}

impl Fail {
    /// A failure with a formatted message.
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut f = Self {
            buf: [0; 160],
            len: 0,
        };
        let _ = f.write_fmt(args);
        f
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("<bad utf-8>")
    }
}

impl Write for Fail {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// What a check returns.
pub type Outcome = Result<(), Fail>;

/// Fails the check with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::report::Fail::new(format_args!($($arg)+)));
        }
    };
}

/// Fails the check unless the two values are equal.
#[macro_export]
macro_rules! ensure_eq {
    ($a:expr, $b:expr, $what:literal) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err($crate::report::Fail::new(format_args!(
                "{}: got {:#x?}, want {:#x?}",
                $what, a, b
            )));
        }
    }};
}

/// Counts and prints results.
#[derive(Default)]
pub struct Report {
    pub passed: u32,
    pub failed: u32,
}

impl Report {
    /// Runs one check and prints its line.
    pub fn check(&mut self, name: &str, f: impl FnOnce() -> Outcome) {
        match f() {
            Ok(()) => {
                self.passed += 1;
                let _ = writeln!(console(), "PASS {name}");
            }
            Err(e) => {
                self.failed += 1;
                let _ = writeln!(console(), "FAIL {name}: {}", e.as_str());
            }
        }
    }
}
