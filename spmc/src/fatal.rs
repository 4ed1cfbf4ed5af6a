//! Stopping the SPMC for good without freezing the other cores.
//!
//! After boot, a panic or a fatal exception at EL2 leaves the core's state
//! possibly half changed, and the failing core may hold the one lock that
//! guards it. The platform's fatal path calls [`FailGate::fail`] first; every
//! core takes that lock only through [`FailGate::lock`], which tries the lock
//! and checks the gate on each round, so no core waits for a lock that is
//! never given back. A core that gets `None` answers its caller
//! `FFA_ERROR(ABORTED)` (DEN0077 v1.2 §7.2: the SPMC is unusable) and never
//! touches the state again.

use core::sync::atomic::{AtomicBool, Ordering};

/// The one "the SPMC has failed" switch: set once, never cleared.
#[derive(Debug)]
pub struct FailGate {
    failed: AtomicBool,
}

impl Default for FailGate {
    fn default() -> Self {
        Self::new()
    }
}

impl FailGate {
    /// A gate not failed yet.
    pub const fn new() -> Self {
        Self {
            failed: AtomicBool::new(false),
        }
    }

    /// Marks the SPMC failed, for every core, for good.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// True once [`FailGate::fail`] was called on any core.
    #[inline(always)]
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Waits for the lock (`try_lock` tries it once) unless the SPMC has
    /// failed: `None` once it has, whether it failed before or while this
    /// waits. A guard taken after the failure (a core that failed without
    /// holding the lock) is dropped again at once, never returned. The free
    /// lock costs one try and one check of the flag (the message path).
    #[inline(always)]
    pub fn lock<G>(&self, mut try_lock: impl FnMut() -> Option<G>) -> Option<G> {
        loop {
            if let Some(guard) = try_lock() {
                return if self.failed() { None } else { Some(guard) };
            }
            if self.failed() {
                return None;
            }
            crate::sync::spin_loop();
        }
    }
}
