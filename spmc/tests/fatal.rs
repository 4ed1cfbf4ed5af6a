//! The fatal-error gate the platform's lock goes through: after a failure on
//! one core, no other core waits for the lock the failed core still holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use spmc::fatal::FailGate;

#[test]
fn free_lock_is_taken_while_not_failed() {
    let gate = FailGate::new();
    let m = Mutex::new(5);
    let g = gate.lock(|| m.try_lock().ok()).expect("lock");
    assert_eq!(*g, 5);
}

#[test]
fn after_a_failure_a_free_lock_is_given_back_at_once() {
    let gate = FailGate::new();
    gate.fail();
    let m = Mutex::new(0);
    assert!(gate.lock(|| m.try_lock().ok()).is_none());
    assert!(m.try_lock().is_ok(), "the guard was dropped");
}

#[test]
fn failure_while_the_lock_is_being_taken_gives_it_back() {
    let gate = FailGate::new();
    let m = Mutex::new(0);
    let got = gate.lock(|| {
        let g = m.try_lock().ok();
        gate.fail();
        g
    });
    assert!(got.is_none());
    assert!(m.try_lock().is_ok(), "the guard was dropped");
}

/// The defect: one core fails holding the lock and never releases it; a
/// waiter on another core must come back (with None) instead of spinning
/// for ever. The holder keeps the guard until the waiter has returned.
#[test]
fn a_waiter_gives_up_when_the_holder_fails_with_the_lock() {
    let gate = Arc::new(FailGate::new());
    let m = Arc::new(Mutex::new(()));
    let held = Arc::new(AtomicBool::new(false));
    let waiter_done = Arc::new(AtomicBool::new(false));
    let holder = {
        let (gate, m, held, waiter_done) =
            (gate.clone(), m.clone(), held.clone(), waiter_done.clone());
        thread::spawn(move || {
            let _guard = m.lock().unwrap();
            held.store(true, Ordering::Release);
            // "Panics" holding the lock: fails, then never gives it back
            // until the waiter is done (so it cannot get it by luck).
            gate.fail();
            while !waiter_done.load(Ordering::Acquire) {
                thread::yield_now();
            }
        })
    };
    while !held.load(Ordering::Acquire) {
        thread::yield_now();
    }
    let got = gate.lock(|| m.try_lock().ok());
    assert!(got.is_none());
    drop(got);
    waiter_done.store(true, Ordering::Release);
    holder.join().unwrap();
}
