//! The four-user demo: four users, each with a general VM at NS-EL1 and its
//! own virtual TEE in the secure world, side by side; then one VM is
//! destroyed and created again and finds a fresh, empty TEE.
//!
//! The users' lines (`user N: TEE 0x81xx counter = c, secret = s`) are
//! printed by the VMs themselves: each runs the user program
//! ([`crate::guest::op::USER`]), whose FF-A calls to 0x8010 the hypervisor
//! traps, stamps with the VM's ID and forwards; the SPMC routes each to that
//! VM's own instance. Last, each VM shares or lends its TEE a page (a
//! "document", [`crate::guest::op::DOCUMENT`]) through the hypervisor; the
//! TEE retrieves it, writes a seal after the document and relinquishes it;
//! the VM reclaims it and checks the seal (one `user N:` line each).
//! Then each VM donates its TEE a page ([`crate::guest::op::RESULT`]); the
//! TEE seals it and shares or lends it back, and the VM retrieves it
//! through the hypervisor, reads the seal and relinquishes it (one line
//! each).

use test_protocol::ids;

use crate::guest::op;
use crate::say;
use crate::vm::Hypervisor;

/// The users (and their VMs' endpoint IDs).
pub const USERS: [u16; 4] = [1, 2, 3, 4];
/// The user whose VM is destroyed and created again.
pub const REBORN: u16 = 2;

/// User `u`'s secret.
pub fn secret(u: u16) -> u64 {
    0x5ec2_e700 + u as u64
}

/// What a user program reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub tee: u64,
    pub counter: u64,
    pub secret: u64,
    pub ok: bool,
}

/// What the demo saw; [`Outcome::problem`] says what went wrong, if anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Each user after storing its secret and counting (user n counts n times).
    pub first: [Seen; 4],
    /// The reborn user's first run with its new TEE.
    pub reborn: Seen,
    /// Every user at the end.
    pub last: [Seen; 4],
    /// Each user's document, sealed by its TEE and checked by its VM.
    pub sealed: [bool; 4],
    /// Each user's result, lent or shared back by its TEE, read by its VM.
    pub results: [bool; 4],
    /// The first thing that went wrong.
    pub problem: Option<&'static str>,
}

impl Outcome {
    fn fail(&mut self, what: &'static str) {
        if self.problem.is_none() {
            self.problem = Some(what);
        }
    }
}

fn user(hyp: &mut Hypervisor, u: u16, secret: u64, count: u64, out: &mut Outcome) -> Seen {
    let mut args = [0u64; 18];
    args[0] = secret;
    args[1] = count;
    match hyp.task(u, op::USER, args) {
        Ok(r) => Seen {
            tee: r[0],
            counter: r[1],
            secret: r[2],
            ok: r[3] == 1,
        },
        Err(f) => {
            say!("hypervisor: VM {u} stopped: {f}");
            out.fail("a VM stopped");
            Seen::default()
        }
    }
}

/// User `u`'s result step: the VM donates a page with a document to its
/// TEE, which seals it and shares it back read-only (users 1 and 3) or
/// lends it back read-write (2 and 4); the VM retrieves it through the
/// hypervisor, reads the seal, relinquishes it, and the TEE reclaims it.
fn result(hyp: &mut Hypervisor, u: u16, out: &mut Outcome) -> bool {
    let mut args = [0u64; 18];
    args[0] = secret(u) << 8;
    args[1] = u.is_multiple_of(2) as u64;
    args[2] = 32 * u as u64;
    match hyp.task(u, op::RESULT, args) {
        Ok(r) if r[3] == 1 => true,
        Ok(_) => {
            out.fail("a result did not come back");
            false
        }
        Err(f) => {
            say!("hypervisor: VM {u} stopped: {f}");
            out.fail("a VM stopped");
            false
        }
    }
}

/// User `u`'s document step: users 1 and 3 share the page, 2 and 4 lend it
/// (unmapped from their VMs until they reclaim); user n's document is
/// 64 * n bytes, sealed with its secret as the key.
fn document(hyp: &mut Hypervisor, u: u16, out: &mut Outcome) -> bool {
    let mut args = [0u64; 18];
    args[0] = secret(u);
    args[1] = u.is_multiple_of(2) as u64;
    args[2] = 64 * u as u64;
    match hyp.task(u, op::DOCUMENT, args) {
        Ok(r) if r[3] == 1 => true,
        Ok(_) => {
            out.fail("a document was not sealed");
            false
        }
        Err(f) => {
            say!("hypervisor: VM {u} stopped: {f}");
            out.fail("a VM stopped");
            false
        }
    }
}

/// Runs the demo on a hypervisor without VMs.
pub fn run(hyp: &mut Hypervisor) -> Outcome {
    let mut out = Outcome::default();
    say!("hypervisor: four users, each with a VM at NS-EL1 and a virtual TEE in the secure world");
    for u in USERS {
        match hyp.create_vm(u) {
            Ok(()) => say!(
                "hypervisor: VM {u} created (VMID {}, 64 KiB of RAM at PA {:#x}), its TEE booted",
                hyp.vmid_of(u).unwrap_or(0),
                hyp.ram_of(u).unwrap_or(0)
            ),
            Err(e) => {
                say!("hypervisor: VM {u} not created: {e:?}");
                out.fail("a VM was not created");
                return out;
            }
        }
    }
    say!("-- each user stores a secret in its TEE and counts (user n counts n times) --");
    for (i, u) in USERS.into_iter().enumerate() {
        out.first[i] = user(hyp, u, secret(u), u as u64, &mut out);
        let s = out.first[i];
        if !s.ok || s.counter != u as u64 || s.secret != secret(u) {
            out.fail("a user did not get its own secret and count back");
        }
    }
    let tees = out.first.map(|s| s.tee);
    if tees
        .iter()
        .enumerate()
        .any(|(i, t)| tees[..i].contains(t) || *t < ids::VTEE_FIRST_INSTANCE as u64)
    {
        out.fail("two users shared a TEE, or a TEE was not an instance");
    }

    say!("-- user {REBORN}'s VM is destroyed and created again --");
    match hyp.destroy_vm(REBORN) {
        Some(a) if a.ok() => {
            say!("hypervisor: VM {REBORN} destroyed; the SPMC zeroed and freed its TEE's memory")
        }
        other => {
            say!("hypervisor: VM {REBORN} destroy: {other:?}");
            out.fail("the VM destroyed message was not acknowledged");
        }
    }
    if let Err(e) = hyp.create_vm(REBORN) {
        say!("hypervisor: VM {REBORN} not created again: {e:?}");
        out.fail("the VM was not created again");
        return out;
    }
    say!("hypervisor: VM {REBORN} created again, with a fresh TEE");
    out.reborn = user(hyp, REBORN, 0, 1, &mut out);
    let r = out.reborn;
    if !r.ok || r.counter != 1 || r.secret != 0 || tees.contains(&r.tee) {
        out.fail("the new TEE was not fresh");
    } else {
        say!("hypervisor: user {REBORN}'s old secret is gone and its counter starts again at 1");
    }

    say!("-- the other users' TEEs are untouched --");
    for (i, u) in USERS.into_iter().enumerate() {
        if u == REBORN {
            out.last[i] = out.reborn;
            continue;
        }
        out.last[i] = user(hyp, u, 0, 1, &mut out);
        let s = out.last[i];
        if !s.ok || s.tee != tees[i] || s.counter != u as u64 + 1 || s.secret != secret(u) {
            out.fail("another user's TEE changed");
        }
    }
    say!("-- each user hands its TEE a document in shared memory; the TEE seals it --");
    for (i, u) in USERS.into_iter().enumerate() {
        out.sealed[i] = document(hyp, u, &mut out);
    }
    say!("-- each user donates its TEE a page; the TEE gives the result back in it --");
    for (i, u) in USERS.into_iter().enumerate() {
        out.results[i] = result(hyp, u, &mut out);
    }
    match out.problem {
        None => say!("hypervisor: demo done: each user reached only its own TEE"),
        Some(p) => say!("hypervisor: demo went wrong: {p}"),
    }
    out
}
