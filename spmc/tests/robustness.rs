//! Property tests: arbitrary registers from the normal world and from
//! partitions never panic the SPMC and never break its invariants.

mod common;

use common::world::*;
use proptest::prelude::*;
use spmc::Next;
use spmc::addr::{Ipa, IpaSpace, PAGE_SIZE};
use spmc::ffa::{Regs, func};
use spmc::ids::SlotId;
use spmc::testing::{sp_call, sp_fault, sp_interrupt};
use spmc::vcpu::{RunReason, VcpuState};

/// Function IDs worth aiming at, plus anything.
fn func_id() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => prop::sample::select(vec![
            func::VERSION, func::FEATURES, func::ID_GET, func::SPM_ID_GET, func::RXTX_MAP_32,
            func::RXTX_MAP_64, func::RXTX_UNMAP, func::RX_RELEASE, func::RX_ACQUIRE,
            func::PARTITION_INFO_GET, func::PARTITION_INFO_GET_REGS_64, func::MSG_SEND_DIRECT_REQ_32,
            func::MSG_SEND_DIRECT_REQ_64, func::MSG_SEND_DIRECT_REQ2_64, func::MSG_SEND_DIRECT_RESP_32,
            func::MSG_SEND_DIRECT_RESP_64, func::MSG_SEND_DIRECT_RESP2_64, func::MSG_SEND2, func::MSG_WAIT,
            func::YIELD, func::RUN, func::CONSOLE_LOG_32, func::CONSOLE_LOG_64, func::ERROR_32,
            func::SUCCESS_32, func::INTERRUPT_32, func::MEM_SHARE_32, func::MEM_SHARE_64,
            func::MEM_LEND_32, func::MEM_LEND_64, func::MEM_DONATE_32, func::MEM_DONATE_64,
            func::MEM_RETRIEVE_REQ_32, func::MEM_RETRIEVE_REQ_64, func::MEM_RELINQUISH,
            func::MEM_RECLAIM, func::MEM_FRAG_RX, func::MEM_FRAG_TX,
        ]).prop_map(|f| f as u64),
        1 => any::<u64>(),
    ]
}

/// Registers with a plausible function ID, endpoints that often name real
/// partitions, and otherwise random values.
fn regs() -> impl Strategy<Value = [u64; 18]> {
    (
        func_id(),
        prop_oneof![
            Just(0x8001u64),
            Just(0x8002),
            Just(0x8003),
            Just(0x8004),
            any::<u16>().prop_map(u64::from)
        ],
        prop_oneof![Just(0u64), any::<u16>().prop_map(u64::from)],
        prop::array::uniform16(prop_oneof![
            Just(0u64),
            Just(1),
            Just(NWD_TX),
            Just(NWD_RX),
            Just(RAM_IPA),
            any::<u64>()
        ]),
    )
        .prop_map(|(f, dst, src, rest)| {
            let mut r = [0u64; 18];
            r[0] = f;
            r[1] = (src << 16) | dst;
            r[2..].copy_from_slice(&rest);
            r
        })
}

/// Normal-world calls: half of them well-formed requests or FFA_RUN to a real partition.
fn nwd_call() -> impl Strategy<Value = [u64; 18]> {
    let sp = prop::sample::select(vec![0x8001u64, 0x8002, 0x8003, 0x8004, 0x8005, 0x8006]);
    prop_oneof![
        2 => (sp.clone(), prop::sample::select(vec![func::MSG_SEND_DIRECT_REQ_64, func::MSG_SEND_DIRECT_REQ_32]), any::<[u64; 5]>())
            .prop_map(|(dst, f, p)| {
                let mut r = [0u64; 18];
                r[0] = f as u64;
                r[1] = dst;
                r[3..8].copy_from_slice(&p);
                r
            }),
        1 => sp.prop_map(|dst| {
            let mut r = [0u64; 18];
            r[0] = func::RUN as u64;
            r[1] = dst << 16;
            r
        }),
        3 => regs(),
    ]
}

#[derive(Clone, Debug)]
enum PartitionEvent {
    Call([u64; 18]),
    Answer(u64),
    Fault(u64),
    Interrupt,
    Wait,
}

fn partition_event() -> impl Strategy<Value = PartitionEvent> {
    prop_oneof![
        4 => regs().prop_map(PartitionEvent::Call),
        3 => any::<u64>().prop_map(PartitionEvent::Answer),
        1 => prop_oneof![Just(0x2000_0000u64), Just(0), any::<u64>()].prop_map(PartitionEvent::Fault),
        1 => Just(PartitionEvent::Interrupt),
        1 => Just(PartitionEvent::Wait),
    ]
}

/// Checks the contract after a step.
fn check(s: &spmc::Spmc<spmc::testing::FakePlatform>, next: &Next) {
    let mut pages = std::collections::HashSet::new();
    for p in s.partitions() {
        for (ipa, a) in &p.memory {
            for i in 0..a.pages {
                let pa = a.base.0 + i * PAGE_SIZE;
                assert!(pages.insert(pa), "page in two partitions");
                // Pages lent or donated away are unmapped from their owner.
                let away = s.mem().transactions().iter().any(|t| {
                    t.op != spmc::mem::desc::Op::Share
                        && t.runs.iter().any(|r| pa >= r.pa && pa < r.pa + r.len())
                }) || s
                    .mem()
                    .donated()
                    .iter()
                    .any(|d| pa >= d.pa && pa < d.pa + d.pages * PAGE_SIZE);
                let t = p
                    .stage2
                    .lookup(IpaSpace::Secure, Ipa(ipa.0 + i * PAGE_SIZE));
                if !away {
                    assert_eq!(t.map(|t| t.pa.0), Some(pa), "memory stays mapped");
                }
            }
        }
    }
    let running = (0..s.partitions().len() as u16)
        .flat_map(|slot| s.vcpu_states(SlotId::new(slot)))
        .filter(|v| matches!(v, VcpuState::Running(_)))
        .count();
    match next {
        Next::NormalWorld => assert_eq!(
            running, 0,
            "a vCPU left running while the normal world has the core"
        ),
        Next::Run { .. } => assert_eq!(running, 1, "exactly the vCPU handed out runs"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_calls_never_panic_or_break_the_contract(
        steps in prop::collection::vec((nwd_call(), prop::collection::vec(partition_event(), 0..6)), 1..40),
        tx in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut s = booted();
        map_nwd_buffers(&mut s);
        // Random bytes where the memory ABIs read their descriptors, behind a
        // plausible header half of the time (count 1, offset 48, size 16).
        let mut bytes = tx.clone();
        if tx.first().is_some_and(|b| b & 1 == 1) && bytes.len() >= 48 {
            bytes[24..28].copy_from_slice(&16u32.to_le_bytes());
            bytes[28..32].copy_from_slice(&1u32.to_le_bytes());
            bytes[32..36].copy_from_slice(&48u32.to_le_bytes());
        }
        s.platform_mut().nwd_write(NWD_TX, &bytes);
        for (call, events) in steps {
            let mut regs = Regs(call);
            let mut next = s.handle_spmd(&mut regs);
            check(&s, &next);
            let mut events = events.into_iter();
            // Play the partitions until the normal world gets the core back;
            // when the random events run out, answer properly.
            let mut budget = 32;
            while let Next::Run { vcpu, .. } = next {
                budget -= 1;
                prop_assert!(budget > 0, "the SPMC keeps running partitions");
                let id = s.partition(vcpu.slot).id().raw() as u64;
                let state = s.vcpu_state(vcpu);
                let event = events.next().unwrap_or(match state {
                    VcpuState::Running(RunReason::Request(_)) => PartitionEvent::Answer(0),
                    _ => PartitionEvent::Wait,
                });
                next = match event {
                    PartitionEvent::Call(c) => sp_call(&mut s, vcpu, &c, &mut regs),
                    PartitionEvent::Answer(x) => {
                        let to = match state {
                            VcpuState::Running(RunReason::Request(c)) => c.id() as u64,
                            _ => 0,
                        };
                        let f = match state {
                            VcpuState::Running(RunReason::Request(c)) if c.req2() => func::MSG_SEND_DIRECT_RESP2_64,
                            _ => func::MSG_SEND_DIRECT_RESP_64,
                        };
                        sp_call(&mut s, vcpu, &[f as u64, (id << 16) | to, 0, 0, x], &mut regs)
                    }
                    PartitionEvent::Fault(ipa) => sp_fault(&mut s, vcpu, ipa, &mut regs),
                    PartitionEvent::Interrupt => sp_interrupt(&mut s, vcpu, &mut regs),
                    PartitionEvent::Wait => sp_call(&mut s, vcpu, &[func::MSG_WAIT as u64], &mut regs),
                };
                check(&s, &next);
            }
        }
    }
}
