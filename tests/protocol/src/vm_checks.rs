//! Check functions a general VM's memory sharing runs in both modes: the
//! vtee stage (the reference hypervisor's VMs on QEMU virt,
//! `tests/hypervisor/src/checks/mem.rs`) and the rpi4 stage (the rpi4
//! image's guests, `platform-rpi4/src/share_checks.rs`). One definition of
//! what is asserted (issue 14, "Bad input": the same FF-A answers in both
//! modes, shared rather than written twice).
//!
//! Each stage gives the functions its VMs through [`Vms`]: every FF-A call
//! is made by the VM itself at EL1 (HVC or SMC) and trapped by the layer
//! that acts for it (the reference hypervisor, the rpi4 VM layer); loads
//! and stores are the VM's own, through its stage 2. Nothing here
//! allocates: descriptors are written into a buffer on the stack.

use crate::ffa::{
    BUSY, DENIED, ERROR_32, INVALID_PARAMETERS, MSG_SEND2, RXTX_MAP_64, RXTX_UNMAP, SUCCESS_32,
};
use crate::mem::{self, func, perm};
use crate::{cmd, ids};

/// Why a check failed: what, and the value found against the one expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fail {
    /// What went wrong.
    pub what: &'static str,
    /// (found, expected), when there are values to show.
    pub values: Option<(u64, u64)>,
}

/// A check's result.
pub type Outcome = Result<(), Fail>;

fn fail(what: &'static str) -> Fail {
    Fail { what, values: None }
}

fn ensure_eq(found: u64, want: u64, what: &'static str) -> Outcome {
    if found == want {
        Ok(())
    } else {
        Err(Fail {
            what,
            values: Some((found, want)),
        })
    }
}

/// FF-A answers as the VM sees them (x0-x7).
pub type Answer = [u64; 8];

/// The general VMs of a stage, as the shared checks drive them.
pub trait Vms {
    /// VM `vm` makes the FF-A call `x` itself (at EL1, on its conduit).
    fn call(&mut self, vm: u16, x: Answer) -> Result<Answer, Fail>;
    /// Writes `bytes` at `ipa` of VM `vm`'s RAM on its behalf (its TX, a
    /// document it shares).
    fn write(&mut self, vm: u16, ipa: u64, bytes: &[u8]) -> Outcome;
    /// VM `vm` loads the word at `ipa` itself.
    fn load(&mut self, vm: u16, ipa: u64) -> Result<u64, Fail>;
    /// The page at `ipa` is not in VM `vm`'s stage 2 now. By default what
    /// its layer counts ([`Vms::away`]); a stage whose VMs go on after a
    /// stage-2 fault has the VM load it and sees the fault.
    fn not_mapped(&mut self, vm: u16, ipa: u64) -> Outcome {
        let page = 1 << ((ipa - self.ram(vm)) / PAGE);
        if self.away(vm) & page != 0 {
            Ok(())
        } else {
            Err(fail("the page is still the VM's"))
        }
    }
    /// VM `vm` stores `value` at `ipa` itself.
    fn store(&mut self, vm: u16, ipa: u64, value: u64) -> Outcome;
    /// The pages of VM `vm` its layer counts as lent or donated away (bit
    /// i: the page at [`Vms::ram`] + i pages).
    fn away(&mut self, vm: u16) -> u16;
    /// How many transactions VM `vm` owns, as its layer counts them.
    fn held(&mut self, vm: u16) -> usize;
    /// Where VM `vm`'s TEE sees the page at `ipa` (the address in its
    /// retrieve response).
    fn tee_address(&self, vm: u16, ipa: u64) -> Result<u64, Fail>;
    /// VM `vm`'s RAM (an IPA), its TX and RX pages.
    fn ram(&self, vm: u16) -> u64;
    /// VM `vm`'s TX page (an IPA), where [`Vms::map_buffers`] puts it.
    fn tx(&self, vm: u16) -> u64;
    /// VM `vm`'s RX page.
    fn rx(&self, vm: u16) -> u64;
    /// VM `vm` asks its own TEE (the vTEE template's ID) to run `command`:
    /// its results, or a failure if it did not answer OK.
    fn tee(&mut self, vm: u16, command: u64, args: [u64; 4]) -> Result<[u64; 4], Fail>;
    /// How many calls the layer forwarded for VM `vm` so far, if it counts.
    fn forwarded(&mut self, _vm: u16) -> Option<u64> {
        None
    }
}

const PAGE: u64 = 4096;

/// A send descriptor (DEN0140 chapter 3, v1.2 layout), on the stack.
struct Desc {
    bytes: [u8; 256],
    len: usize,
}

impl Desc {
    /// From `sender` to `to` of the one-page ranges at `pages`: read-write,
    /// or no permission named for a donation (DEN0140: the borrower asks).
    fn new(f: u64, sender: u16, to: u16, pages: &[u64]) -> Result<Self, Fail> {
        let perms = if matches!(f, func::DONATE_32 | func::DONATE_64) {
            0
        } else {
            perm::RW
        };
        let rx = [mem::Receiver::new(to, perms)];
        let mut ranges = [mem::Range { addr: 0, pages: 1 }; 4];
        let n = pages.len().min(ranges.len());
        for (r, &p) in ranges.iter_mut().zip(pages) {
            r.addr = p;
        }
        let list = mem::List(&ranges[..n]);
        let mut t = mem::Transaction::send(mem::Layout::V1_2, sender, &rx, &list);
        t.attributes = mem::sender_attributes(f, 1);
        let mut d = Self {
            bytes: [0; 256],
            len: 0,
        };
        d.len = t
            .write(&mut d.bytes)
            .map_err(|_| fail("the descriptor does not fit"))?;
        Ok(d)
    }

    fn all(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `w0 | code << 32`: the function ID of an answer and, for FFA_ERROR, its
/// error code.
pub fn ans(a: &Answer) -> u64 {
    let w0 = a[0] as u32 as u64;
    if w0 == ERROR_32 {
        w0 | (a[2] as u32 as u64) << 32
    } else {
        w0
    }
}

/// The [`ans`] of FFA_ERROR(`code`).
pub fn err(code: i32) -> u64 {
    ERROR_32 | (code as u32 as u64) << 32
}

/// The handle of a FFA_SUCCESS (w2/w3) or a FFA_MEM_FRAG_RX (w1/w2).
fn handle_of(a: &Answer) -> u64 {
    if a[0] as u32 as u64 == func::FRAG_RX {
        a[1] as u32 as u64 | (a[2] as u32 as u64) << 32
    } else {
        a[2] as u32 as u64 | (a[3] as u32 as u64) << 32
    }
}

fn bit<V: Vms>(v: &V, vm: u16, ipa: u64) -> u16 {
    1 << ((ipa - v.ram(vm)) / PAGE)
}

/// VM `vm` maps its RX/TX pair (SUCCESS, or DENIED: it has it already).
pub fn map_buffers<V: Vms>(v: &mut V, vm: u16) -> Outcome {
    let (tx, rx) = (v.tx(vm), v.rx(vm));
    let a = v.call(vm, [RXTX_MAP_64, tx, rx, 1, 0, 0, 0, 0])?;
    if a[0] == SUCCESS_32 || ans(&a) == err(DENIED) {
        Ok(())
    } else {
        Err(Fail {
            what: "the VM's RXTX_MAP",
            values: Some((ans(&a), SUCCESS_32)),
        })
    }
}

/// VM `vm` writes the first `first` bytes of `d` into its TX and sends
/// with `f` (total: all of `d`).
fn send_part<V: Vms>(v: &mut V, vm: u16, f: u64, d: &Desc, first: usize) -> Result<Answer, Fail> {
    let tx = v.tx(vm);
    v.write(vm, tx, &d.all()[..first])?;
    v.call(vm, [f, d.len as u64, first as u64, 0, 0, 0, 0, 0])
}

fn send<V: Vms>(v: &mut V, vm: u16, f: u64, d: &Desc) -> Result<Answer, Fail> {
    send_part(v, vm, f, d, d.len)
}

/// A send that must succeed: its handle.
fn send_ok<V: Vms>(v: &mut V, vm: u16, f: u64, d: &Desc) -> Result<u64, Fail> {
    let a = send(v, vm, f, d)?;
    ensure_eq(ans(&a), SUCCESS_32, "the send")?;
    Ok(handle_of(&a))
}

fn reclaim<V: Vms>(v: &mut V, vm: u16, h: u64) -> Result<u64, Fail> {
    let a = v.call(vm, [func::RECLAIM, h & 0xFFFF_FFFF, h >> 32, 0, 0, 0, 0, 0])?;
    Ok(ans(&a))
}

/// VM `vm`'s FFA_MEM_FRAG_TX of `len` bytes (already in its TX) for `h`.
fn frag_tx<V: Vms>(v: &mut V, vm: u16, h: u64, len: u64) -> Result<Answer, Fail> {
    v.call(
        vm,
        [func::FRAG_TX, h & 0xFFFF_FFFF, h >> 32, len, 0, 0, 0, 0],
    )
}

/// VM `vm` writes and reads `ipa` again: the page is its own.
fn poke_peek<V: Vms>(v: &mut V, vm: u16, ipa: u64) -> Outcome {
    v.store(vm, ipa, 0x600D)?;
    ensure_eq(
        v.load(vm, ipa)?,
        0x600D,
        "the VM writes and reads the page again",
    )
}

/// The page at `ipa` is not VM `vm`'s now.
fn gone<V: Vms>(v: &mut V, vm: u16, ipa: u64) -> Outcome {
    v.not_mapped(vm, ipa)
}

/// Writes words `seed + i` over `bytes` at `ipa` of VM `vm`; the seal a TEE
/// must compute for them with `key`.
fn document<V: Vms>(
    v: &mut V,
    vm: u16,
    ipa: u64,
    bytes: u64,
    seed: u64,
    key: u64,
) -> Result<u64, Fail> {
    let mut b = [0u8; 256];
    let n = (bytes as usize).min(b.len());
    for (i, w) in b[..n].chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(seed + i as u64).to_le_bytes());
    }
    v.write(vm, ipa, &b[..n])?;
    Ok(crate::seal(key, (0..n as u64 / 8).map(|i| seed + i)))
}

/// DEN0077 v1.2 §11.3, DEN0140 §1.5: VM `vm` donates the page at `ipa` to
/// its own TEE with `f` (32 or 64 bit); the page leaves its stage 2; once
/// the TEE retrieved it (and sealed it), a reclaim is INVALID_PARAMETERS,
/// the layer forgets the handle, the page stays away, and sending it again
/// is DENIED. (That it is zeroed before the VM's RAM is used again, when
/// the VM is destroyed, is the caller's to check.)
pub fn donate_gone_for_good<V: Vms>(v: &mut V, vm: u16, f: u64, ipa: u64) -> Outcome {
    map_buffers(v, vm)?;
    let want = document(v, vm, ipa, 64, 0xD0, 9)?;
    let d = Desc::new(f, vm, ids::VTEE_TEMPLATE, &[ipa])?;
    let h = send_ok(v, vm, f, &d)?;
    ensure_eq(
        (v.away(vm) & bit(v, vm, ipa) != 0) as u64,
        1,
        "the page is away once the send succeeds",
    )?;
    gone(v, vm, ipa)?;
    let [_, seal, _, _] = v.tee(vm, cmd::MEM_SEAL, [h, vm as u64, 64, 9])?;
    ensure_eq(seal, want, "the TEE's seal")?;
    ensure_eq(
        reclaim(v, vm, h)?,
        err(INVALID_PARAMETERS),
        "reclaim of a donation retrieved",
    )?;
    ensure_eq(
        (v.away(vm) & bit(v, vm, ipa) != 0) as u64,
        1,
        "the page stays away",
    )?;
    ensure_eq(v.held(vm) as u64, 0, "no transaction left")?;
    gone(v, vm, ipa)?;
    let d2 = Desc::new(func::SHARE_64, vm, ids::VTEE_TEMPLATE, &[ipa])?;
    ensure_eq(
        ans(&send(v, vm, func::SHARE_64, &d2)?),
        err(DENIED),
        "sharing the donated page",
    )
}

/// A donation to anything but VM `vm`'s own TEE (`beyond`: a shared
/// service, a bound partition, another user's TEE) is DENIED by the layer:
/// the TEE goes with the VM, a partition that outlives it would keep RAM
/// the next VM gets. Nothing leaves the VM.
pub fn donate_beyond_own_tee<V: Vms>(v: &mut V, vm: u16, ipa: u64, beyond: &[u16]) -> Outcome {
    map_buffers(v, vm)?;
    for &to in beyond {
        let d = Desc::new(func::DONATE_64, vm, to, &[ipa])?;
        ensure_eq(
            ans(&send(v, vm, func::DONATE_64, &d)?),
            err(DENIED),
            "a donation beyond the VM's own TEE",
        )?;
        ensure_eq(v.away(vm) as u64, 0, "nothing away")?;
    }
    poke_peek(v, vm, ipa)
}

/// A donation (to `to`, the VM's own TEE by the template's or the
/// instance's ID) not yet retrieved can still be reclaimed: the page
/// returns to the VM's stage 2.
pub fn donate_reclaim_early<V: Vms>(v: &mut V, vm: u16, ipa: u64, to: u16) -> Outcome {
    map_buffers(v, vm)?;
    let d = Desc::new(func::DONATE_64, vm, to, &[ipa])?;
    let h = send_ok(v, vm, func::DONATE_64, &d)?;
    ensure_eq((v.away(vm) != 0) as u64, 1, "away")?;
    gone(v, vm, ipa)?;
    ensure_eq(reclaim(v, vm, h)?, SUCCESS_32, "reclaim")?;
    ensure_eq(v.away(vm) as u64, 0, "back")?;
    poke_peek(v, vm, ipa)
}

/// DEN0077 v1.2 §11.1.2: a lend of three one-page ranges (not adjacent:
/// three constituents in the TEE's retrieve response too), the first
/// fragment without the last two, then FFA_MEM_FRAG_TX with them; nothing
/// leaves the VM before the last fragment, all three after; the TEE
/// retrieves them, the last range where the VM's page is.
pub fn lend_in_fragments<V: Vms>(v: &mut V, vm: u16, pages: [u64; 3]) -> Outcome {
    map_buffers(v, vm)?;
    let d = Desc::new(func::LEND_64, vm, ids::VTEE_TEMPLATE, &pages)?;
    let first = d.len - 32;
    let a = send_part(v, vm, func::LEND_64, &d, first)?;
    ensure_eq(ans(&a), func::FRAG_RX, "first fragment: FRAG_RX")?;
    ensure_eq(a[3] as u32 as u64, first as u64, "bytes received")?;
    let h = handle_of(&a);
    ensure_eq(v.away(vm) as u64, 0, "nothing away yet")?;
    poke_peek(v, vm, pages[2])?;
    let tx = v.tx(vm);
    v.write(vm, tx, &d.all()[first..])?;
    let a = frag_tx(v, vm, h, 32)?;
    ensure_eq(ans(&a), SUCCESS_32, "last fragment")?;
    ensure_eq(handle_of(&a), h, "the handle")?;
    let want = pages.iter().fold(0u16, |m, &p| m | bit(v, vm, p));
    ensure_eq(v.away(vm) as u64, want as u64, "pages away")?;
    for p in pages {
        gone(v, vm, p)?;
    }
    let r = v.tee(
        vm,
        cmd::MEM_RETRIEVE,
        [h, 0, (vm as u64) << 32 | (perm::RW as u64) << 48, 0],
    )?;
    ensure_eq(r[0], func::RETRIEVE_RESP, "the TEE retrieves")?;
    ensure_eq(r[3] as u32 as u64, 3, "three pages")?;
    let r = v.tee(vm, cmd::MEM_RANGE, [2, 0, 0, 0])?;
    ensure_eq(r[0], v.tee_address(vm, pages[2])?, "the last range")?;
    let r = v.tee(vm, cmd::MEM_RELINQUISH, [h, 0, 0, 0])?;
    ensure_eq(r[0], SUCCESS_32, "relinquish")?;
    ensure_eq(reclaim(v, vm, h)?, SUCCESS_32, "reclaim")?;
    ensure_eq(v.away(vm) as u64, 0, "back")?;
    poke_peek(v, vm, pages[1])
}

/// FRAG_TX that is not VM `vm`'s send in progress (another handle, another
/// VM `other`'s call), empty, not whole constituents or past the total is
/// INVALID_PARAMETERS and not forwarded; a second send while one is in
/// progress is BUSY; a reclaim of the handle cancels the send, after which
/// FRAG_TX has nothing to continue; the pages can be sent again.
pub fn fragments_refused<V: Vms>(v: &mut V, vm: u16, other: u16, pages: [u64; 2]) -> Outcome {
    map_buffers(v, vm)?;
    map_buffers(v, other)?;
    let d = Desc::new(func::SHARE_64, vm, ids::VTEE_TEMPLATE, &pages)?;
    let first = d.len - 16;
    let a = send_part(v, vm, func::SHARE_64, &d, first)?;
    ensure_eq(ans(&a), func::FRAG_RX, "first fragment")?;
    let h = handle_of(&a);
    let before = v.forwarded(vm);
    let whole = Desc::new(func::SHARE_64, vm, ids::VTEE_TEMPLATE, &pages[..1])?;
    ensure_eq(
        ans(&send(v, vm, func::SHARE_64, &whole)?),
        err(BUSY),
        "a second send while one is in progress",
    )?;
    let tx = v.tx(vm);
    v.write(vm, tx, &d.all()[first..])?;
    for (hh, len) in [(h + 1, 16), (h, 8), (h, 0), (h, 32), (h, PAGE + 16)] {
        ensure_eq(
            ans(&frag_tx(v, vm, hh, len)?),
            err(INVALID_PARAMETERS),
            "FRAG_TX refused",
        )?;
    }
    let otx = v.tx(other);
    v.write(other, otx, &d.all()[first..])?;
    ensure_eq(
        ans(&frag_tx(v, other, h, 16)?),
        err(INVALID_PARAMETERS),
        "another VM's FRAG_TX",
    )?;
    ensure_eq(
        v.forwarded(vm).unwrap_or(0),
        before.unwrap_or(0),
        "nothing forwarded",
    )?;
    ensure_eq(reclaim(v, vm, h)?, SUCCESS_32, "reclaim cancels")?;
    v.write(vm, tx, &d.all()[first..])?;
    ensure_eq(
        ans(&frag_tx(v, vm, h, 16)?),
        err(INVALID_PARAMETERS),
        "nothing in progress",
    )?;
    let h2 = send_ok(v, vm, func::SHARE_64, &d)?;
    ensure_eq(reclaim(v, vm, h2)?, SUCCESS_32, "the pages again")
}

/// DEN0077 v1.2 §7.2.2 (and the core's rule for the buffers it keeps,
/// `spmc/src/mem/ownership.rs`): while VM `vm`'s RX/TX pair is mapped, its
/// pages do not change hands (share, lend, donate: DENIED); a pair is not
/// mapped over a page lent away (`lent`: DENIED). A fragment the layer
/// reads from the TX is so always read from a page the VM owns.
pub fn buffers_pinned<V: Vms>(v: &mut V, vm: u16, lent: u64) -> Outcome {
    map_buffers(v, vm)?;
    let (tx, rx) = (v.tx(vm), v.rx(vm));
    for p in [tx, rx] {
        for f in [func::SHARE_64, func::LEND_64, func::DONATE_64] {
            let d = Desc::new(f, vm, ids::VTEE_TEMPLATE, &[p])?;
            ensure_eq(
                ans(&send(v, vm, f, &d)?),
                err(DENIED),
                "a send of a buffer page",
            )?;
        }
    }
    let d = Desc::new(func::LEND_64, vm, ids::VTEE_TEMPLATE, &[lent])?;
    let h = send_ok(v, vm, func::LEND_64, &d)?;
    let a = v.call(vm, [RXTX_UNMAP, 0, 0, 0, 0, 0, 0, 0])?;
    ensure_eq(ans(&a), SUCCESS_32, "unmap")?;
    let a = v.call(vm, [RXTX_MAP_64, lent, rx, 1, 0, 0, 0, 0])?;
    let refused = ensure_eq(ans(&a), err(DENIED), "a TX over a lent page");
    if a[0] == SUCCESS_32 {
        v.call(vm, [RXTX_UNMAP, 0, 0, 0, 0, 0, 0, 0])?;
    }
    map_buffers(v, vm)?;
    let back = reclaim(v, vm, h)?;
    refused?;
    ensure_eq(back, SUCCESS_32, "reclaim")
}

/// VM `vm` writes an indirect message (DEN0077 v1.2 §7.2, the v1.2 header
/// of 40 bytes, 8 bytes of payload) from `from` to `to` into its TX.
fn message<V: Vms>(v: &mut V, vm: u16, from: u16, to: u16, payload: u64) -> Outcome {
    let mut m = [0u8; 48];
    m[8..12].copy_from_slice(&40u32.to_le_bytes());
    m[12..14].copy_from_slice(&to.to_le_bytes());
    m[14..16].copy_from_slice(&from.to_le_bytes());
    m[16..20].copy_from_slice(&8u32.to_le_bytes());
    m[40..48].copy_from_slice(&payload.to_le_bytes());
    let tx = v.tx(vm);
    v.write(vm, tx, &m)
}

fn send2<V: Vms>(v: &mut V, vm: u16, w1: u64) -> Result<u64, Fail> {
    Ok(ans(&v.call(vm, [MSG_SEND2, w1, 0, 0, 0, 0, 0, 0])?))
}

/// FFA_MSG_SEND2 (DEN0077 v1.2 §7.2, §15) from each of `vms` to its own
/// TEE (the template's ID): the TEE takes one message, from the VM, with
/// its payload and size.
pub fn msg_own_tee<V: Vms>(v: &mut V, vms: &[u16]) -> Outcome {
    for &vm in vms {
        map_buffers(v, vm)?;
        let [_, _, _, before] = v.tee(vm, cmd::LAST_MSG, [0; 4])?;
        let payload = 0x1D1_0000 + vm as u64;
        message(v, vm, vm, ids::VTEE_TEMPLATE, payload)?;
        ensure_eq(send2(v, vm, 0)?, SUCCESS_32, "MSG_SEND2")?;
        let [sender, first, size, count] = v.tee(vm, cmd::LAST_MSG, [0; 4])?;
        ensure_eq(count, before + 1, "the TEE took one message")?;
        ensure_eq(sender, vm as u64, "from the VM")?;
        ensure_eq(first, payload, "its payload")?;
        ensure_eq(size, 8, "its size")?;
    }
    Ok(())
}

/// FFA_MSG_SEND2 refused: a forged sender in the header, an ID in w1,
/// another VM as receiver (the layer's answers, nothing forwarded);
/// `others`' TEE (`other_tee`, its instance's ID) and sp1 (the core's
/// per-user rule: DENIED), VM `other`'s TEE gets nothing; without buffers
/// INVALID_PARAMETERS.
pub fn msg_refused<V: Vms>(v: &mut V, vm: u16, other: u16, other_tee: u16) -> Outcome {
    map_buffers(v, vm)?;
    let [_, _, _, before] = v.tee(other, cmd::LAST_MSG, [0; 4])?;
    let fwd = v.forwarded(vm);
    for (from, to, w1, want) in [
        (other, ids::VTEE_TEMPLATE, 0u64, INVALID_PARAMETERS),
        (0, ids::VTEE_TEMPLATE, 0, INVALID_PARAMETERS),
        (
            vm,
            ids::VTEE_TEMPLATE,
            (vm as u64) << 16,
            INVALID_PARAMETERS,
        ),
        (vm, other, 0, DENIED),
    ] {
        message(v, vm, from, to, 9)?;
        ensure_eq(send2(v, vm, w1)?, err(want), "refused by the layer")?;
    }
    ensure_eq(
        v.forwarded(vm).unwrap_or(0),
        fwd.unwrap_or(0),
        "nothing forwarded",
    )?;
    for to in [other_tee, ids::SP1] {
        message(v, vm, vm, to, 9)?;
        ensure_eq(
            send2(v, vm, 0)?,
            err(DENIED),
            "another VM's TEE or an unbound partition",
        )?;
    }
    let [_, _, _, after] = v.tee(other, cmd::LAST_MSG, [0; 4])?;
    ensure_eq(after, before, "the other VM's TEE got nothing")?;
    let a = v.call(vm, [RXTX_UNMAP, 0, 0, 0, 0, 0, 0, 0])?;
    ensure_eq(ans(&a), SUCCESS_32, "unmap")?;
    ensure_eq(send2(v, vm, 0)?, err(INVALID_PARAMETERS), "no TX")?;
    map_buffers(v, vm)
}
