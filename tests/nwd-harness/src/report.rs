//! Result lines and the failure type of the checks: the shared ones of
//! `baremetal::report` (the hypervisor's `vtee` stage prints the same).

pub use baremetal::report::{Fail, Outcome, Report, console, fail};
