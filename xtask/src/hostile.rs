//! The `hostile` stage: the hostile normal world (`nwd-hostile`, BL33 at
//! NS-EL2, built from tests/nwd-harness) attacks the SPMC with malformed
//! calls, with a test partition attacking from S-EL1 on command and with
//! interrupts arriving in the middle of calls; it prints `PASS`/`FAIL`
//! lines and `hostile: N passed, M failed` (docs/hostile.md). Its own TF-A
//! variant: the same TF-A, SPMC and partitions as the other stages, only
//! BL33 differs, so no other stage's discovery counts change.

use std::path::Path;
use std::time::Duration;

use crate::cli::Options;
use crate::qemu::{self, StageResult, StageSpec};
use crate::setup::Env;
use crate::sh::Result;
use crate::vtee;

/// The hostile normal world's image.
pub const IMAGE: &str = "nwd-hostile.bin";

/// The stage's summary must count at least this many checks.
pub const MIN_CHECKS: u32 = 150;

/// Time limit of the stage: its own, since one of its checks (an interrupt
/// during an instance's boot) hangs an SPMC that livelocks there.
pub fn timeout(opts: &Options) -> Duration {
    Duration::from_secs(opts.timeout_secs.min(120))
}

/// Builds the stage's flash image and runs it.
pub fn stage(env: &Env, opts: &Options, spmc_bin: &Path) -> Result<StageResult> {
    let flash = vtee::flash(env, spmc_bin, IMAGE, "hostile")?;
    let mut res = qemu::run_stage(
        qemu::base_command(&flash, opts.smp, qemu::MEMORY),
        &StageSpec {
            name: "hostile",
            required: &["running at Secure EL2", "nwd-hostile: hostile FF-A calls"],
            expected_fatal: &[],
            timeout: timeout(opts),
            panic_grace: None,
        },
    )?;
    if let Some(p) = too_few(&res) {
        res.problems.push(p);
    }
    Ok(res)
}

/// A problem if the stage counted fewer than [`MIN_CHECKS`] checks.
fn too_few(res: &StageResult) -> Option<String> {
    let n = res.passed + res.failed;
    (n < MIN_CHECKS)
        .then(|| format!("only {n} hostile checks ran; the stage needs at least {MIN_CHECKS}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_than_150_checks_is_a_problem() {
        let mut r = StageResult {
            passed: 149,
            ..StageResult::default()
        };
        assert!(too_few(&r).is_some());
        r.failed = 1;
        assert!(too_few(&r).is_none());
    }
}
