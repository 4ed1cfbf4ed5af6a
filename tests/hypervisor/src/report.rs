//! The console and the result lines of the checks (`PASS <name>` /
//! `FAIL <name>: <why>`): the shared ones of `baremetal::report`, which the
//! other QEMU stages print too. UART0 is passed through to every VM at the
//! same address.

pub use baremetal::report::{Fail, Outcome, Report, console, fail};
