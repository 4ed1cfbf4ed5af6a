//! Secure interrupts owned by partitions (issue 12 items 1 and 2;
//! spmc::interrupts, docs/interrupts.md): manifest claims and their
//! refusals, ownership, configuration at the controller, and delivery per
//! DEN0077 v1.2 chapter 9 to a waiting, running, blocked/preempted context
//! and while the normal world runs.

mod common;

use common::world::*;
use common::{dtb, repo_root};
use spmc::addr::Pa;
use spmc::ffa::{Regs, func};
use spmc::ids::{PartId, SlotId, VmId};
use spmc::sp_manifest::{self, SpError};
use spmc::testing::{FakePlatform, sp_call, sp_interrupt};
use spmc::vcpu::{VcpuRef, VcpuState};
use spmc::{Next, Spmc};

/// Edge-triggered secure SPI, priority 0x80 (FF-A manifest binding:
/// priority [7:0], secure bit 8, level bit 9, type [11:10] = 0b10 SPI).
const SPI_SECURE: u32 = 0x980;
/// A secure PPI (type 0b01), level, priority 0x40.
const PPI_SECURE: u32 = 0x740;

/// A shipped manifest with `interrupts = <...>` added to its device region
/// (sp1's `gpio`), compiled.
fn sp1_with(interrupts: &str) -> Vec<u8> {
    let dts = std::fs::read_to_string(repo_root().join("tf-a-integration/qemu/partitions/sp1.dts"))
        .unwrap();
    let edited = dts.replace(
        "interrupts = <27 0x740>;",
        &format!("interrupts = <{interrupts}>;"),
    );
    assert_ne!(edited, dts, "sp1.dts has its gpio device region");
    compile(&edited, interrupts)
}

/// sp2 (MP, 4 contexts) with a device region claiming `interrupts`.
fn sp2_with(interrupts: &str) -> Vec<u8> {
    let dts = std::fs::read_to_string(repo_root().join("tf-a-integration/qemu/partitions/sp2.dts"))
        .unwrap();
    let at = dts.rfind("};").unwrap();
    let edited = format!(
        "{}\tdevice-regions {{\n\t\tcompatible = \"arm,ffa-manifest-device-regions\";\n\t\ttimer {{\n\t\t\tbase-address = <0x0 0x090c0000>;\n\t\t\tpages-count = <1>;\n\t\t\tattributes = <0x1>;\n\t\t\tinterrupts = <{interrupts}>;\n\t\t}};\n\t}};\n{}",
        &dts[..at],
        &dts[at..]
    );
    compile(&edited, interrupts)
}

fn compile(dts: &str, tag: &str) -> Vec<u8> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "spmc-irq-{}-{n}-{}.dts",
        std::process::id(),
        tag.len()
    ));
    std::fs::write(&path, dts).unwrap();
    let blob = dtb(&path);
    std::fs::remove_file(&path).ok();
    blob
}

/// The fake QEMU world with sp1's and sp2's manifests replaced.
fn world(sp1: Vec<u8>, sp2: Vec<u8>) -> Spmc<FakePlatform> {
    let mut p = FakePlatform::default();
    for (i, n) in PARTITIONS.iter().enumerate() {
        let m = match i {
            0 => sp1.clone(),
            1 => sp2.clone(),
            _ => manifest(n),
        };
        p.put_package(Pa(PACKAGES + i as u64 * 0x4_0000), &m, &image());
    }
    let mut s = Spmc::new(config(), p);
    s.load_partitions();
    s
}

fn booted_world(sp1: Vec<u8>, sp2: Vec<u8>) -> Spmc<FakePlatform> {
    let mut s = world(sp1, sp2);
    let mut regs = Regs::default();
    let mut next = s.boot(&mut regs);
    while let Next::Run { vcpu, .. } = next {
        next = play_init(&mut s, vcpu, &mut regs);
    }
    assert_eq!(regs.func(), func::MSG_WAIT);
    s
}

fn parse(blob: &[u8]) -> Result<sp_manifest::PartitionConfig, SpError> {
    sp_manifest::parse_manifest(blob, "x")
}

#[test]
fn claims_parse_into_the_config() {
    let c = parse(&sp1_with(&format!("40 {SPI_SECURE:#x} 29 {PPI_SECURE:#x}"))).unwrap();
    let claims: Vec<_> = c.interrupts().copied().collect();
    assert_eq!(claims.len(), 2);
    assert_eq!(
        (claims[0].id, claims[0].priority, claims[0].level),
        (40, 0x80, false)
    );
    assert_eq!(
        (claims[1].id, claims[1].priority, claims[1].level),
        (29, 0x40, true)
    );
    assert!(claims[1].is_ppi() && !claims[0].is_ppi());
}

#[test]
fn bad_claims_are_refused_with_one_line() {
    let cases = [
        // An SGI (type 0b00).
        (format!("7 {:#x}", 0x180), 7),
        // Non-secure SPI.
        (format!("40 {:#x}", 0x880), 40),
        // An SPI ID out of the SPI range.
        (format!("1020 {SPI_SECURE:#x}"), 1020),
        // A PPI ID typed as an SPI.
        (format!("29 {SPI_SECURE:#x}"), 29),
        // An SPI ID typed as a PPI.
        (format!("40 {PPI_SECURE:#x}"), 40),
        // Reserved type 0b11.
        (format!("40 {:#x}", 0xD80), 40),
        // Reserved attribute bits.
        (format!("40 {:#x}", SPI_SECURE | 1 << 16), 40),
    ];
    for (prop, id) in cases {
        let e = parse(&sp1_with(&prop)).expect_err(&prop);
        assert!(
            matches!(e, SpError::BadInterrupt { id: i, .. } if i == id),
            "{prop}: {e:?}"
        );
        let line = e.to_string();
        assert!(
            line.contains(&format!("{id:#x}")) && !line.contains('\n'),
            "{line}"
        );
    }
    // An odd number of cells is not a list of pairs; twice the same ID in one region.
    assert_eq!(
        parse(&sp1_with("40")),
        Err(SpError::Bad("device-regions/interrupts"))
    );
    assert_eq!(
        parse(&sp1_with(&format!("40 {SPI_SECURE:#x} 40 {SPI_SECURE:#x}"))),
        Err(SpError::Bad("device-regions/interrupts"))
    );
}

#[test]
fn an_interrupt_owned_by_another_partition_is_refused() {
    let s = world(
        sp1_with(&format!("40 {SPI_SECURE:#x}")),
        sp2_with(&format!("41 {SPI_SECURE:#x} 40 {SPI_SECURE:#x}")),
    );
    assert!(
        s.slot_of(PartId::new(0x8001)).is_some(),
        "the first claim wins"
    );
    assert!(
        s.slot_of(PartId::new(0x8002)).is_none(),
        "the second partition is refused"
    );
    assert_eq!(
        s.interrupts()
            .owned()
            .iter()
            .map(|o| o.intid)
            .collect::<Vec<_>>(),
        [40],
        "nothing of the refused partition is kept"
    );
    assert_eq!(s.platform().configured, [(40, 0x80, false, 0)]);
    let e = SpError::InterruptOwned {
        id: 40,
        owner: 0x8001,
    };
    assert_eq!(
        e.to_string(),
        "interrupt 0x28 is already owned by partition 0x8001"
    );
}

#[test]
fn claims_are_configured_group1_secure_on_the_owning_core() {
    let s = world(
        sp1_with(&format!("40 {SPI_SECURE:#x}")),
        sp2_with(&format!("29 {PPI_SECURE:#x}")),
    );
    let owned: Vec<_> = s
        .interrupts()
        .owned()
        .iter()
        .map(|o| (o.intid, o.slot))
        .collect();
    assert_eq!(owned, [(40, SlotId::new(0)), (29, SlotId::new(1))]);
    assert_eq!(
        s.platform().configured,
        [(40, 0x80, false, 0), (29, 0x40, true, 0)]
    );
}

/// The shipped sp1 owns the EL1 virtual timer's PPI (the e2e `irq-*`
/// checks); nothing else is configured.
#[test]
fn the_shipped_partitions_claim_only_the_timer() {
    let s = loaded();
    assert_eq!(s.interrupts().owned().len(), 1);
    assert_eq!(s.platform().configured, [(27, 0x40, true, 0)]);
}

const LR_PENDING: u64 = 1 << 62;
const LR_HW: u64 = 1 << 61;

fn lr_holds(s: &mut Spmc<FakePlatform>, v: VcpuRef, intid: u32) -> bool {
    s.vcpu_context_mut(v).vgic.lr.iter().any(|lr| {
        lr & LR_PENDING != 0
            && lr & LR_HW != 0
            && *lr as u32 == intid
            && (lr >> 32) & 0x3FF == intid as u64
    })
}

fn sp1_irq_world() -> (Spmc<FakePlatform>, VcpuRef) {
    let s = booted_world(sp1_with(&format!("40 {SPI_SECURE:#x}")), manifest("sp2"));
    let v = vcpu_of(&s, 0x8001);
    (s, v)
}

/// Waiting owner, normal world running: the SPMD's FFA_INTERRUPT resumes
/// it with FFA_INTERRUPT and the virtual interrupt pending; its
/// FFA_MSG_WAIT gives the core back with FFA_NORMAL_WORLD_RESUME.
#[test]
fn waiting_owner_is_resumed_with_ffa_interrupt_from_the_spmd() {
    let (mut s, v) = sp1_irq_world();
    s.platform_mut().secure_pending.push(40);
    let (next, _) = nwd(&mut s, &[func::INTERRUPT_32 as u64]);
    assert_eq!(running(&next), v);
    let ctx = s.vcpu_context_mut(v);
    assert_eq!(ctx.x[0], func::INTERRUPT_32 as u64);
    assert_eq!(ctx.x[2], 40);
    assert!(
        lr_holds(&mut s, v, 40),
        "virtual interrupt pending, linked to INTID 40"
    );
    let mut regs = Regs::default();
    let next = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.func(), func::NORMAL_WORLD_RESUME);
    assert_eq!(s.vcpu_state(v), VcpuState::Waiting);
    assert_eq!(s.interrupts().delivered, 1);
    assert!(
        s.platform().deactivated.is_empty(),
        "the partition ends it, not the SPMC"
    );
}

/// Running owner: it gets the virtual interrupt at once (resumed, not preempted).
#[test]
fn running_owner_gets_it_at_once() {
    let (mut s, v) = sp1_irq_world();
    let (next, _) = nwd(&mut s, &[func::MSG_SEND_DIRECT_REQ_64 as u64, 0x8001, 0, 1]);
    assert_eq!(running(&next), v);
    s.platform_mut().secure_pending.push(40);
    let mut regs = Regs::default();
    let next = sp_interrupt(&mut s, v, &mut regs);
    assert_eq!(running(&next), v, "resumed at once, not preempted");
    assert!(lr_holds(&mut s, v, 40));
    assert!(matches!(s.vcpu_state(v), VcpuState::Running(_)));
}

/// A normal-world interrupt still preempts it (nothing secure pending).
#[test]
fn a_normal_world_interrupt_still_preempts() {
    let (mut s, v) = sp1_irq_world();
    let (next, _) = nwd(&mut s, &[func::MSG_SEND_DIRECT_REQ_64 as u64, 0x8001, 0, 1]);
    assert_eq!(running(&next), v);
    let mut regs = Regs::default();
    assert!(matches!(
        sp_interrupt(&mut s, v, &mut regs),
        Next::NormalWorld
    ));
    assert_eq!(regs.func(), func::INTERRUPT_32);
}

/// Preempted owner: the interrupt waits in its list registers; it takes it
/// when the normal world resumes it with FFA_RUN.
#[test]
fn preempted_owner_gets_it_when_it_runs() {
    let (mut s, v) = sp1_irq_world();
    let (next, _) = nwd(&mut s, &[func::MSG_SEND_DIRECT_REQ_64 as u64, 0x8001, 0, 1]);
    assert_eq!(running(&next), v);
    let mut regs = Regs::default();
    sp_interrupt(&mut s, v, &mut regs);
    assert!(matches!(s.vcpu_state(v), VcpuState::Preempted(..)));
    s.platform_mut().secure_pending.push(40);
    let (next, regs) = nwd(&mut s, &[func::INTERRUPT_32 as u64]);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(
        regs.func(),
        func::NORMAL_WORLD_RESUME,
        "back to the normal world at once"
    );
    assert!(lr_holds(&mut s, v, 40), "pending in its list registers");
    let (next, _) = nwd(&mut s, &[func::RUN as u64, 0x8001 << 16]);
    assert_eq!(running(&next), v);
    assert!(lr_holds(&mut s, v, 40));
}

/// Another partition running when the owner waits: it is held (FFA_RUN
/// cannot take it) while the owner handles the interrupt, and resumed after.
#[test]
fn a_running_partition_is_held_while_a_waiting_owner_handles_it() {
    let (mut s, owner) = sp1_irq_world();
    let other = vcpu_of(&s, 0x8003);
    let (next, _) = nwd(&mut s, &[func::MSG_SEND_DIRECT_REQ_64 as u64, 0x8003, 0, 1]);
    assert_eq!(running(&next), other);
    s.platform_mut().secure_pending.push(40);
    let mut regs = Regs::default();
    let next = sp_interrupt(&mut s, other, &mut regs);
    assert_eq!(running(&next), owner);
    assert!(matches!(s.vcpu_state(other), VcpuState::Blocked(_)));
    let busy = nwd_now(&mut s, &[func::RUN as u64, 0x8003 << 16]);
    assert_eq!(busy.func(), func::ERROR_32);
    let next = sp_call(&mut s, owner, &[func::MSG_WAIT as u64], &mut regs);
    assert_eq!(running(&next), other, "resumed where it was");
    assert!(matches!(s.vcpu_state(other), VcpuState::Running(_)));
}

/// An interrupt of an aborted owner, or of nobody, is ended by the SPMC.
#[test]
fn unowned_and_orphaned_interrupts_are_ended_by_the_spmc() {
    let (mut s, v) = sp1_irq_world();
    s.platform_mut().secure_pending.push(77);
    let (_, regs) = nwd(&mut s, &[func::INTERRUPT_32 as u64]);
    assert_eq!(regs.func(), func::NORMAL_WORLD_RESUME);
    assert_eq!(s.platform().deactivated, [77]);
    // The owner takes it, then faults before ending it.
    s.platform_mut().secure_pending.push(40);
    let (next, _) = nwd(&mut s, &[func::INTERRUPT_32 as u64]);
    assert_eq!(running(&next), v);
    let mut regs = Regs::default();
    let next = spmc::testing::sp_fault(&mut s, v, 0xdead_0000, &mut regs);
    // The fault is injected at its EL1 first; a second one aborts it.
    let next = match next {
        Next::Run { .. } => spmc::testing::sp_fault(&mut s, v, 0xdead_0000, &mut regs),
        n => n,
    };
    let next = match next {
        Next::Run { .. } => spmc::testing::sp_fault(&mut s, v, 0xdead_0000, &mut regs),
        n => n,
    };
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(
        regs.func(),
        func::NORMAL_WORLD_RESUME,
        "the core goes back to the normal world"
    );
    assert_eq!(
        s.platform().deactivated,
        [77, 40],
        "the one it held is ended"
    );
    assert_eq!(s.platform().disabled, [40], "and its interrupt disabled");
    s.platform_mut().secure_pending.push(40);
    let (_, regs) = nwd(&mut s, &[func::INTERRUPT_32 as u64]);
    assert_eq!(regs.func(), func::NORMAL_WORLD_RESUME);
    assert_eq!(s.platform().deactivated, [77, 40, 40]);
}

/// A partition that never ends what it is given: each claimed interrupt
/// holds one list register; once all are in use, the SPMC ends further
/// ones itself. Nothing queues without bound and the others go on.
#[test]
fn a_partition_that_never_ends_interrupts_is_bounded() {
    let claims: String = (40..46).map(|i| format!("{i} {SPI_SECURE:#x} ")).collect();
    let s0 = booted_world(sp1_with(claims.trim()), manifest("sp2"));
    let mut s = s0;
    let v = vcpu_of(&s, 0x8001);
    for intid in 40..46 {
        s.platform_mut().secure_pending.push(intid);
        let (next, _) = nwd(&mut s, &[func::INTERRUPT_32 as u64]);
        if let Next::Run { .. } = next {
            let mut regs = Regs::default();
            // It goes back to waiting without ending anything. Resumed for
            // a dropped interrupt (its list registers full), it is resumed
            // once more for one still pending, which it ignores too
            // (spmc::interrupts, "Answers held back").
            let mut rounds = 0;
            while let Next::Run { .. } = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs) {
                rounds += 1;
                assert!(rounds < 2, "resumed again and again");
            }
            assert_eq!(regs.func(), func::NORMAL_WORLD_RESUME);
        }
    }
    let held = s.vcpu_context_mut(v).vgic.in_flight().count();
    assert_eq!(held, spmc::vcpu::LIST_REGISTERS);
    assert_eq!(s.platform().deactivated, [44, 45]);
    // Other partitions still answer.
    let (next, _) = nwd(&mut s, &[func::MSG_SEND_DIRECT_REQ_64 as u64, 0x8003, 0, 1]);
    assert!(matches!(next, Next::Run { .. }));
}

/// An MP owner's context on the core the interrupt arrives on gets it (a PPI).
#[test]
fn an_mp_owner_gets_a_ppi_on_the_context_of_that_core() {
    let mut s = booted_world(manifest("sp1"), sp2_with(&format!("29 {PPI_SECURE:#x}")));
    let slot = s.slot_of(PartId::new(0x8002)).unwrap();
    // Bring core 1's context up.
    s.platform_mut().core = 1;
    let mut regs = Regs::with_func(func::MSG_WAIT);
    let mut next = s.secondary_boot(&mut regs);
    while let Next::Run { vcpu, .. } = next {
        next = sp_call(&mut s, vcpu, &[func::MSG_WAIT as u64], &mut regs);
    }
    s.platform_mut().secure_pending.push(29);
    let (next, _) = nwd(&mut s, &[func::INTERRUPT_32 as u64]);
    let v = running(&next);
    assert_eq!((v.slot, v.index), (slot, 1));
    assert!(lr_holds(&mut s, v, 29));
}

/// A template cannot claim interrupts (each instance would claim them again).
#[test]
fn an_instance_cannot_own_interrupts() {
    let blob = sp1_with(&format!("40 {SPI_SECURE:#x}"));
    let mut config = parse(&blob).unwrap();
    config.id = 0x8011;
    let mut s = loaded();
    let e = s
        .create_partition(
            config,
            Pa(PACKAGES + 0x4000),
            8200,
            &blob,
            spmc::policy::Kind::Instance {
                owner: VmId::new(5),
            },
            None,
        )
        .unwrap_err();
    assert!(matches!(e, SpError::BadInterrupt { id: 40, .. }), "{e:?}");
}

/// A secure interrupt for a UP owner that runs on another core waits for
/// the owner (`Spmc::run` or its answer hands it over). The direct-message
/// fast paths (`spmc::contexts`), which run and answer without the manager,
/// must not skip that: while an interrupt is pending, every call goes to
/// the manager; the owner's answer hands it over and is held back until
/// the owner has handled it (spmc::interrupts, "Answers held back"); then
/// the fast path serves again.
#[test]
fn a_pended_interrupt_keeps_the_fast_path_off_until_its_owner_has_it() {
    let (mut s, v) = sp1_irq_world();
    let req = [func::MSG_SEND_DIRECT_REQ_64 as u64, 0x8001, 0, 0, 7];
    let resp = [func::MSG_SEND_DIRECT_RESP_64 as u64, 0x8001 << 16, 0, 0, 8];
    let (next, _) = nwd(&mut s, &req);
    assert_eq!(running(&next), v);
    // The interrupt reaches the SPMC on core 1 while sp1 runs on core 0.
    s.platform_mut().core = 1;
    s.platform_mut().secure_pending.push(40);
    let (next, _) = nwd(&mut s, &[func::INTERRUPT_32 as u64]);
    assert!(matches!(next, Next::NormalWorld));
    s.platform_mut().core = 0;
    assert!(!lr_holds(&mut s, v, 40), "not handed over yet");
    let (next, mut regs) = answer_past_the_fast_path(&mut s, v, &resp);
    resumed_for_interrupt(&mut s, &next, v, 40);
    assert!(lr_holds(&mut s, v, 40), "handed over by the manager");
    handle_all(&mut s, v);
    let next = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[..5], resp, "the answer, once handled");
    let c = s.contexts().clone();
    let fast = c.direct_request(&NO_FAILURE, &Regs::from_slice(&req), || 0);
    assert!(matches!(fast, spmc::contexts::Fast::Done(_)), "{fast:?}");
}

// ----------------------------------------------------------------------
// Answers held back (spmc::interrupts, "Answers held back"; DEN0077 v1.2
// §9.3 Table 9.1 case 1, §8.3): a partition that answers with a virtual
// interrupt still pending is resumed with FFA_INTERRUPT first, and its
// answer reaches its recipient, unchanged and once, at its FFA_MSG_WAIT.
// ----------------------------------------------------------------------

const REQ64: u64 = func::MSG_SEND_DIRECT_REQ_64 as u64;
/// The fast paths' failure gate (nothing fails in these tests).
static NO_FAILURE: spmc::fatal::FailGate = spmc::fatal::FailGate::new();
const RESP64: u64 = func::MSG_SEND_DIRECT_RESP_64 as u64;

/// sp1's vCPU `v` answers `resp` (x0-x4, by SMC64) with an interrupt
/// pending: the fast response must leave the answer to the manager, whose
/// handling of the exit is returned with the registers it wrote.
fn answer_past_the_fast_path(
    s: &mut Spmc<FakePlatform>,
    v: VcpuRef,
    resp: &[u64; 5],
) -> (Next, Regs) {
    let mut ctx = s.vcpu_context(v);
    ctx.x[..5].copy_from_slice(resp);
    ctx.exit.vector = 0;
    ctx.exit.esr = spmc::vcpu::ec::SMC64 << 26;
    *s.vcpu_context_mut(v) = ctx;
    let mut regs = Regs::default();
    let c = s.contexts().clone();
    let fast = c.direct_response(&NO_FAILURE, v, &mut regs, |_| {});
    assert!(
        matches!(fast, spmc::contexts::Fast::Slow),
        "the fast path would answer with the interrupt pending: {fast:?}"
    );
    drop(c);
    let next = spmc::testing::exit(s, v, &mut regs);
    (next, regs)
}

/// sp1 (owner of INTID 40) runs a request from the normal world with its
/// interrupts masked, and INTID 40 arrives meanwhile: it stays pending in
/// its list registers.
fn sp1_running_with_40_pending() -> (Spmc<FakePlatform>, VcpuRef) {
    let (mut s, v) = sp1_irq_world();
    let (next, _) = nwd(&mut s, &[REQ64, 0x8001, 0, 1, 2]);
    assert_eq!(running(&next), v);
    s.platform_mut().secure_pending.push(40);
    let mut regs = Regs::default();
    assert_eq!(running(&sp_interrupt(&mut s, v, &mut regs)), v);
    assert!(lr_holds(&mut s, v, 40));
    (s, v)
}

/// The partition takes and ends every interrupt in its list registers (what
/// its handler does through the virtual interface).
fn handle_all(s: &mut Spmc<FakePlatform>, v: VcpuRef) {
    s.vcpu_context_mut(v).vgic.lr = [0; 4];
}

/// Asserts `next` resumes `v` with FFA_INTERRUPT for `intid`.
fn resumed_for_interrupt(s: &mut Spmc<FakePlatform>, next: &Next, v: VcpuRef, intid: u64) {
    assert_eq!(running(next), v, "the partition is resumed, not its caller");
    let ctx = s.vcpu_context_mut(v);
    assert_eq!(ctx.x[0], func::INTERRUPT_32 as u64, "with FFA_INTERRUPT");
    assert_eq!(ctx.x[2], intid, "w2 carries the INTID");
}

#[test]
fn a_direct_response_with_an_interrupt_pending_waits_until_it_is_handled() {
    let (mut s, v) = sp1_running_with_40_pending();
    let answer = [RESP64, 0x8001 << 16, 0, 0, 0xA4, 0xA5, 0xA6, 0xA7];
    // The normal world's block stays as it was until the answer goes.
    let mut regs = Regs::from_slice(&[0x5EED; 18]);
    let next = sp_call(&mut s, v, &answer, &mut regs);
    resumed_for_interrupt(&mut s, &next, v, 40);
    assert_eq!(
        regs,
        Regs::from_slice(&[0x5EED; 18]),
        "nothing answered yet"
    );
    assert!(matches!(s.vcpu_state(v), VcpuState::Running(_)));
    // The normal world cannot take it meanwhile.
    let busy = nwd_now(&mut s, &[REQ64, 0x8001, 0, 3]);
    assert_eq!(busy.func(), func::ERROR_32);
    handle_all(&mut s, v);
    let next = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(&regs.0[..8], &answer, "the held answer, unchanged");
    assert_eq!(&regs.0[8..], &[0x5EED; 10], "x8-x17 kept");
    assert_eq!(s.vcpu_state(v), VcpuState::Waiting);
    // Delivered once: the next request gets its own answer.
    let (next, _) = nwd(&mut s, &[REQ64, 0x8001, 0, 9]);
    assert_eq!(running(&next), v);
    assert_eq!(s.vcpu_context_mut(v).x[3], 9);
    let mut regs = Regs::default();
    let next = sp_call(&mut s, v, &[RESP64, 0x8001 << 16, 0, 0, 0xB4], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[..5], [RESP64, 0x8001 << 16, 0, 0, 0xB4]);
}

#[test]
fn a_direct_response_to_a_partition_is_held_and_delivered_to_it() {
    let (mut s, owner) = sp1_irq_world();
    let caller = vcpu_of(&s, 0x8002);
    let (next, _) = nwd(&mut s, &[REQ64, 0x8002, 0, 1]);
    assert_eq!(running(&next), caller);
    let mut regs = Regs::default();
    let next = sp_call(
        &mut s,
        caller,
        &[REQ64, 0x8002 << 16 | 0x8001, 0, 5],
        &mut regs,
    );
    assert_eq!(running(&next), owner);
    s.platform_mut().secure_pending.push(40);
    assert_eq!(running(&sp_interrupt(&mut s, owner, &mut regs)), owner);
    // A 32-bit response: its recipient gets the low halves.
    let resp32 = func::MSG_SEND_DIRECT_RESP_32 as u64;
    let answer = [resp32, 0x8001 << 16 | 0x8002, 0, 0x1_0000_0007, 8];
    let next = sp_call(&mut s, owner, &answer, &mut regs);
    resumed_for_interrupt(&mut s, &next, owner, 40);
    assert!(matches!(s.vcpu_state(caller), VcpuState::Blocked(_)));
    handle_all(&mut s, owner);
    let next = sp_call(&mut s, owner, &[func::MSG_WAIT as u64], &mut regs);
    assert_eq!(running(&next), caller, "the caller gets the answer");
    let x = s.vcpu_context_mut(caller).x;
    assert_eq!(x[..5], [resp32, 0x8001 << 16 | 0x8002, 0, 7, 8]);
    assert!(matches!(s.vcpu_state(caller), VcpuState::Running(_)));
    assert_eq!(s.vcpu_state(owner), VcpuState::Waiting);
}

#[test]
fn msg_wait_after_ffa_run_with_an_interrupt_pending_is_held() {
    let (mut s, v) = sp1_irq_world();
    let (next, _) = nwd(&mut s, &[func::RUN as u64, 0x8001 << 16]);
    assert_eq!(running(&next), v);
    s.platform_mut().secure_pending.push(40);
    let mut regs = Regs::default();
    assert_eq!(running(&sp_interrupt(&mut s, v, &mut regs)), v);
    let next = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    resumed_for_interrupt(&mut s, &next, v, 40);
    handle_all(&mut s, v);
    let next = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.func(), func::MSG_WAIT);
    assert_eq!(regs.x(1), 0x8001 << 16, "its ID and context index");
    assert_eq!(s.vcpu_state(v), VcpuState::Waiting);
}

#[test]
fn an_owner_aborted_while_handling_gives_the_held_answers_recipient_aborted() {
    // The normal world as recipient.
    let (mut s, v) = sp1_running_with_40_pending();
    let mut regs = Regs::default();
    let next = sp_call(&mut s, v, &[RESP64, 0x8001 << 16, 0, 0, 1], &mut regs);
    resumed_for_interrupt(&mut s, &next, v, 40);
    let next = spmc::testing::sp_fault(&mut s, v, 0xdead_0000, &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.func(), func::ERROR_32);
    assert_eq!(regs.w(2) as i32, -8, "ABORTED, not the held answer");
    assert_eq!(s.vcpu_state(v), VcpuState::Aborted);
    assert!(
        s.platform().deactivated.contains(&40),
        "its interrupt ended"
    );

    // A partition as recipient: unblocked with the error, not left hanging.
    let (mut s, owner) = sp1_irq_world();
    let caller = vcpu_of(&s, 0x8002);
    nwd(&mut s, &[REQ64, 0x8002, 0, 1]);
    let next = sp_call(
        &mut s,
        caller,
        &[REQ64, 0x8002 << 16 | 0x8001, 0, 5],
        &mut regs,
    );
    assert_eq!(running(&next), owner);
    s.platform_mut().secure_pending.push(40);
    sp_interrupt(&mut s, owner, &mut regs);
    let next = sp_call(
        &mut s,
        owner,
        &[RESP64, 0x8001 << 16 | 0x8002, 0, 0, 1],
        &mut regs,
    );
    resumed_for_interrupt(&mut s, &next, owner, 40);
    let next = spmc::testing::sp_fault(&mut s, owner, 0xdead_0000, &mut regs);
    assert_eq!(running(&next), caller);
    let x = s.vcpu_context_mut(caller).x;
    assert_eq!((x[0], x[2] as u32 as i32), (func::ERROR_32 as u64, -8));
}

#[test]
fn no_answer_is_held_when_nothing_is_pending() {
    let (mut s, v) = sp1_irq_world();
    // Nothing in its list registers.
    let (next, _) = nwd(&mut s, &[REQ64, 0x8001, 0, 1]);
    assert_eq!(running(&next), v);
    let mut regs = Regs::default();
    let next = sp_call(&mut s, v, &[RESP64, 0x8001 << 16, 0, 0, 1], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[4], 1);
    // An interrupt it took and has not ended (active) is not pending.
    let (mut s, v) = sp1_running_with_40_pending();
    for lr in s.vcpu_context_mut(v).vgic.lr.iter_mut() {
        if *lr != 0 {
            *lr = (*lr & !(3 << 62)) | 2 << 62;
        }
    }
    let next = sp_call(&mut s, v, &[RESP64, 0x8001 << 16, 0, 0, 2], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[4], 2);
    assert_eq!(s.vcpu_state(v), VcpuState::Waiting);
}

#[test]
fn an_interrupt_it_ignores_holds_the_answer_back_only_once() {
    let (mut s, v) = sp1_running_with_40_pending();
    let mut regs = Regs::default();
    let next = sp_call(&mut s, v, &[RESP64, 0x8001 << 16, 0, 0, 3], &mut regs);
    resumed_for_interrupt(&mut s, &next, v, 40);
    // It does not take it and waits: the answer goes all the same.
    let next = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[..5], [RESP64, 0x8001 << 16, 0, 0, 3]);
    assert!(lr_holds(&mut s, v, 40), "left in its list registers");
}

#[test]
fn a_second_response_while_handling_is_denied_and_the_first_one_goes() {
    let (mut s, v) = sp1_running_with_40_pending();
    let mut regs = Regs::default();
    let next = sp_call(&mut s, v, &[RESP64, 0x8001 << 16, 0, 0, 4], &mut regs);
    resumed_for_interrupt(&mut s, &next, v, 40);
    let next = sp_call(&mut s, v, &[RESP64, 0x8001 << 16, 0, 0, 5], &mut regs);
    assert_eq!(running(&next), v);
    let x = s.vcpu_context_mut(v).x;
    assert_eq!(
        (x[0], x[2] as u32 as i32),
        (func::ERROR_32 as u64, -6),
        "DENIED"
    );
    handle_all(&mut s, v);
    let next = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[4], 4, "the held answer, not the second one");
}

#[test]
fn another_interrupt_taken_meanwhile_is_signalled_before_the_answer_goes() {
    let (mut s, v) = sp1_running_with_40_pending();
    let mut regs = Regs::default();
    let next = sp_call(&mut s, v, &[RESP64, 0x8001 << 16, 0, 0, 6], &mut regs);
    resumed_for_interrupt(&mut s, &next, v, 40);
    handle_all(&mut s, v);
    // It took 40; INTID 40 fires again while it handles (it is running).
    s.platform_mut().secure_pending.push(40);
    assert_eq!(running(&sp_interrupt(&mut s, v, &mut regs)), v);
    // Its interrupts masked, it waits with that one pending.
    let next = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    assert_eq!(running(&next), v, "resumed again, for the new one");
    handle_all(&mut s, v);
    let next = sp_call(&mut s, v, &[func::MSG_WAIT as u64], &mut regs);
    assert!(matches!(next, Next::NormalWorld));
    assert_eq!(regs.0[4], 6);
}

/// The fast response path (spmc::contexts) leaves a response with a
/// virtual interrupt pending to the manager, which holds it back.
#[test]
fn the_fast_response_leaves_an_answer_with_an_interrupt_pending_to_the_manager() {
    let (mut s, v) = sp1_running_with_40_pending();
    let (next, _) = answer_past_the_fast_path(&mut s, v, &[RESP64, 0x8001 << 16, 0, 0, 7]);
    resumed_for_interrupt(&mut s, &next, v, 40);
}
