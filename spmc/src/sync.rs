//! The lock and atomic types of the protocol between cores
//! ([`crate::contexts`]): spin's mutex and `core`'s atomics in every
//! build, and [loom]'s models of them in host builds with `--cfg loom`
//! (`spmc/tests/loom_contexts.rs`, docs/architecture.md "Locks"), where
//! loom explores every interleaving and every reordering the memory
//! model allows of what goes through them. Nothing else changes between
//! the two builds.
//!
//! Not modelled (plain `core` and spin types in both builds): the
//! fatal-error gate's flag ([`crate::fatal::FailGate`], a `static` made
//! at compile time) and the slots' `Once` cells (made under the manager
//! lock before any core can name the slot).
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, Ordering};
#[cfg(not(loom))]
pub use spin::mutex::{SpinMutex, SpinMutexGuard};

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, Ordering};

/// A core's pause in a loop that waits for another core: loom's version
/// lets the model run another thread (a spin loop is otherwise an
/// endless branch to it).
#[inline(always)]
pub fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::hint::spin_loop();
}

/// loom's mutex with spin's interface (the part the core uses).
#[cfg(loom)]
#[derive(Debug)]
pub struct SpinMutex<T>(loom::sync::Mutex<T>);

/// The guard of a locked [`SpinMutex`].
#[cfg(loom)]
pub type SpinMutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

#[cfg(loom)]
impl<T> SpinMutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        Self(loom::sync::Mutex::new(value))
    }

    /// Waits for the lock.
    pub fn lock(&self) -> SpinMutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<SpinMutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// The value, without locking (`&mut self`: nobody else has it).
    pub fn get_mut(&mut self) -> &mut T {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner())
    }
}
