//! A booted SPMC over the fake platform with the real QEMU partition
//! manifests, for the host tests of the partition flows.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use spmc::addr::Pa;
use spmc::ffa::{Regs, func};
use spmc::ids::{PartId, VmId};
use spmc::manifest::{MemRange, PartitionEntry, SpmcConfig};
use spmc::testing::{FakePlatform, NS_BASE, sp_call};
use spmc::vcpu::VcpuRef;
use spmc::{Next, Spmc};

use super::{dtb, repo_root};

/// Where the fake packages go (as on QEMU).
pub const PACKAGES: u64 = 0x0e30_0000;
/// The fake pool.
pub const POOL: MemRange = MemRange {
    base: 0x0e50_0000,
    size: 0x00b0_0000,
};
/// Test partition IPAs (tests/protocol layout).
pub const IMAGE_IPA: u64 = 0x1000_0000;
pub const RAM_IPA: u64 = 0x1004_0000;
/// Normal-world buffers the tests map.
pub const NWD_TX: u64 = NS_BASE + 0x10_0000;
pub const NWD_RX: u64 = NS_BASE + 0x10_1000;

pub const PARTITIONS: [&str; 7] = [
    "sp1",
    "sp2",
    "tpm",
    "crash-data",
    "crash-undef",
    "crash-steal",
    "bad-el0",
];

/// A fake image: a recognisable pattern, 8 KiB and a bit.
pub fn image() -> Vec<u8> {
    (0..8200u32).map(|i| (i * 7 + 3) as u8).collect()
}

/// The SPMC configuration of the QEMU image, with the fake package addresses.
pub fn config() -> SpmcConfig {
    SpmcConfig {
        spmc_id: 0x8000,
        version: spmc::ffa::Version::V1_2,
        load_address: 0x0e10_0000,
        entrypoint: 0x0e10_0000,
        binary_size: 0x20_0000,
        secure_memory: Some(POOL),
        ns_memory: vec![MemRange {
            base: 0x4000_0000,
            size: 0x8000_0000,
        }],
        policy: Default::default(),
        partitions: PARTITIONS
            .iter()
            .enumerate()
            .map(|(i, n)| PartitionEntry {
                name: n.to_string(),
                package: PACKAGES + i as u64 * 0x4_0000,
            })
            .collect(),
    }
}

/// The manifest blob of a shipped partition.
pub fn manifest(name: &str) -> Vec<u8> {
    dtb(&repo_root()
        .join("tf-a-integration/qemu/partitions")
        .join(format!("{name}.dts")))
}

/// An SPMC with the packages in place, loaded but not booted.
pub fn loaded() -> Spmc<FakePlatform> {
    let mut p = FakePlatform::default();
    for (i, n) in PARTITIONS.iter().enumerate() {
        p.put_package(Pa(PACKAGES + i as u64 * 0x4_0000), &manifest(n), &image());
    }
    let mut s = Spmc::new(config(), p);
    s.load_partitions();
    s
}

/// The vCPU a `Next` runs, or a panic naming what came instead.
pub fn running(next: &Next) -> VcpuRef {
    match next {
        Next::Run { vcpu, .. } => *vcpu,
        Next::NormalWorld => panic!("expected a vCPU to run, got NormalWorld"),
    }
}

/// Plays every partition's boot: FFA_VERSION, FFA_ID_GET, FFA_RXTX_MAP_64
/// of two pages of its RAM region, FFA_MSG_WAIT. Returns the booted SPMC.
pub fn booted() -> Spmc<FakePlatform> {
    let mut s = loaded();
    let mut regs = Regs::default();
    let mut next = s.boot(&mut regs);
    while let Next::Run { vcpu, .. } = next {
        let n = sp_call(&mut s, vcpu, &[func::VERSION as u64, 0x1_0002], &mut regs);
        assert_eq!(running(&n), vcpu);
        assert_eq!(s.vcpu_context_mut(vcpu).x[0], 0x1_0002);
        sp_call(
            &mut s,
            vcpu,
            &[
                func::RXTX_MAP_64 as u64,
                RAM_IPA + 0x1_0000,
                RAM_IPA + 0x1_1000,
                1,
            ],
            &mut regs,
        );
        assert_eq!(
            s.vcpu_context_mut(vcpu).x[0],
            func::SUCCESS_32 as u64,
            "partition RXTX_MAP"
        );
        next = sp_call(&mut s, vcpu, &[func::MSG_WAIT as u64], &mut regs);
    }
    assert_eq!(
        regs.func(),
        func::MSG_WAIT,
        "boot ends with FFA_MSG_WAIT to the SPMD"
    );
    assert!(s.is_booted());
    s
}

std::thread_local! {
    static CONFORM: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with the descriptors of its sends left exactly as written
/// (checks of DEN0140's attribute rules themselves), see [`conform_send`].
pub fn as_written<T>(f: impl FnOnce() -> T) -> T {
    CONFORM.with(|c| c.set(false));
    let r = f();
    CONFORM.with(|c| c.set(true));
    r
}

/// True if `f` is FFA_MEM_DONATE or FFA_MEM_LEND (32 or 64).
fn lend_or_donate(f: u64) -> Option<bool> {
    match f as u32 {
        func::MEM_DONATE_32 | func::MEM_DONATE_64 => Some(true),
        func::MEM_LEND_32 | func::MEM_LEND_64 => Some(false),
        _ => None,
    }
}

/// The tests' descriptors name normal write-back memory by default; a
/// donor, or a lender to a single borrower, must leave the memory type
/// "not specified" (DEN0140 §1.10), so a send with `f` of such a
/// descriptor (the first bytes of `desc`, in either layout) has its
/// attributes cleared here, unless [`as_written`] is in force.
pub fn conform_send(f: u64, desc: &mut [u8]) {
    let Some(donate) = lend_or_donate(f) else {
        return;
    };
    if !CONFORM.with(|c| c.get()) || desc.len() < 48 {
        return;
    }
    let v1_0 = desc[24..28] == [0; 4];
    let count = u32::from_le_bytes(desc[28..32].try_into().unwrap());
    if donate || count == 1 {
        desc[2] = 0;
        if !v1_0 {
            desc[3] = 0;
        }
    }
}

/// A normal-world call: returns what comes next and the register block.
/// A send's descriptor in TX (or the caller's buffer) is conformed first
/// ([`conform_send`]).
pub fn nwd(s: &mut Spmc<FakePlatform>, call: &[u64]) -> (Next, Regs) {
    if call.len() >= 3 && lend_or_donate(call[0]).is_some() {
        let at = match call.get(3) {
            Some(&b) if b != 0 => b,
            _ => NWD_TX,
        };
        let n = (call[2] as u32 as usize).clamp(48, 4096) as u64;
        if at >= NS_BASE && at.saturating_add(n) <= NS_BASE + spmc::testing::NS_SIZE {
            let mut d = s.platform().nwd_read(at, n as usize);
            conform_send(call[0], &mut d);
            s.platform_mut().nwd_write(at, &d);
        }
    }
    let mut regs = Regs::from_slice(call);
    let next = s.handle_spmd(&mut regs);
    (next, regs)
}

/// A normal-world call that must be answered at once.
pub fn nwd_now(s: &mut Spmc<FakePlatform>, call: &[u64]) -> Regs {
    let (next, regs) = nwd(s, call);
    assert!(
        matches!(next, Next::NormalWorld),
        "call {:#x} ran a partition",
        call[0]
    );
    regs
}

/// Maps the normal world's RX/TX buffers.
pub fn map_nwd_buffers(s: &mut Spmc<FakePlatform>) {
    let r = nwd_now(s, &[func::RXTX_MAP_64 as u64, NWD_TX, NWD_RX, 1]);
    assert_eq!(r.func(), func::SUCCESS_32);
}

/// The slot of the partition with `id`.
pub fn vcpu_of(s: &Spmc<FakePlatform>, id: u16) -> VcpuRef {
    VcpuRef {
        slot: s.slot_of(PartId::new(id)).expect("partition exists"),
        index: 0,
    }
}

/// The vTEE template's routing ID and its instances' first ID (QEMU policy).
pub const TEMPLATE: u16 = 0x8010;
pub const FIRST_INSTANCE: u16 = 0x8100;

/// The SPMC configuration of the QEMU image as shipped (policy, packages and
/// pool), parsed from `tf-a-integration/qemu/spmc_manifest.dts`; `pool`
/// replaces the pool when given.
pub fn shipped_config(pool: Option<MemRange>) -> SpmcConfig {
    let blob = dtb(&repo_root().join("tf-a-integration/qemu/spmc_manifest.dts"));
    let mut c = spmc::manifest::parse(&blob).expect("shipped SPMC manifest");
    if let Some(p) = pool {
        c.secure_memory = Some(p);
    }
    c
}

/// An SPMC with the shipped policy (shared 0x8003, VM 1 bound to 0x8001, the
/// vTEE template 0x8010), every package in place, booted as [`booted`] does.
pub fn policy_world(pool: Option<MemRange>) -> Spmc<FakePlatform> {
    let config = shipped_config(pool);
    let p = policy_platform(&config, FakePlatform::default());
    policy_boot(config, p)
}

/// `p` with the shipped packages of `config` in place (the manifests are
/// compiled here, outside any model heap).
pub fn policy_platform(config: &SpmcConfig, mut p: FakePlatform) -> FakePlatform {
    for e in &config.partitions {
        p.put_package(Pa(e.package), &manifest(&e.name), &image());
    }
    p
}

/// An SPMC over `p` (made by [`policy_platform`]), loaded and booted.
pub fn policy_boot(config: SpmcConfig, p: FakePlatform) -> Spmc<FakePlatform> {
    let mut s = Spmc::new(config, p);
    s.load_partitions();
    boot_all(&mut s);
    s
}

/// Plays one partition's initialisation (FFA_VERSION, FFA_RXTX_MAP_64 of the
/// last two pages of the first 16 of its RAM region, FFA_MSG_WAIT).
pub fn play_init(s: &mut Spmc<FakePlatform>, vcpu: VcpuRef, regs: &mut Regs) -> Next {
    sp_call(s, vcpu, &[func::VERSION as u64, 0x1_0002], regs);
    sp_call(
        s,
        vcpu,
        &[
            func::RXTX_MAP_64 as u64,
            RAM_IPA + 0xE000,
            RAM_IPA + 0xF000,
            1,
        ],
        regs,
    );
    assert_eq!(s.vcpu_context_mut(vcpu).x[0], func::SUCCESS_32 as u64);
    sp_call(s, vcpu, &[func::MSG_WAIT as u64], regs)
}

fn boot_all(s: &mut Spmc<FakePlatform>) {
    let mut regs = Regs::default();
    let mut next = s.boot(&mut regs);
    while let Next::Run { vcpu, .. } = next {
        next = play_init(s, vcpu, &mut regs);
    }
    assert_eq!(regs.func(), func::MSG_WAIT);
}

/// A VM availability message (DEN0077 v1.2 §18.3) from `sender` to `to`:
/// `kind` is fwk::VM_CREATED or fwk::VM_DESTROYED.
pub fn vm_message(sender: u16, to: u16, kind: u32, vm: u16) -> [u64; 8] {
    [
        func::MSG_SEND_DIRECT_REQ_32 as u64,
        (sender as u64) << 16 | to as u64,
        (spmc::ffa::fwk::FLAG | kind) as u64,
        0,
        0,
        vm as u64,
        0,
        0,
    ]
}

/// The hypervisor creates VM `vm`: the instance boots (played as
/// [`play_init`]) and the acknowledgement's status comes back (0 on success,
/// else the FF-A error code).
pub fn create_vm(s: &mut Spmc<FakePlatform>, vm: u16) -> i32 {
    let (next, mut regs) = nwd(s, &vm_message(0, TEMPLATE, spmc::ffa::fwk::VM_CREATED, vm));
    let regs = match next {
        Next::Run { vcpu, .. } => {
            let n = play_init(s, vcpu, &mut regs);
            assert!(matches!(n, Next::NormalWorld));
            regs
        }
        Next::NormalWorld => regs,
    };
    assert_eq!(regs.func(), func::MSG_SEND_DIRECT_RESP_32);
    assert_eq!(
        regs.w(2),
        spmc::ffa::fwk::FLAG | spmc::ffa::fwk::VM_CREATED_ACK
    );
    assert_eq!(
        regs.x(1),
        (TEMPLATE as u64) << 16,
        "from the template to the hypervisor"
    );
    regs.w(3) as i32
}

/// The hypervisor destroys VM `vm`: the acknowledgement's status.
pub fn destroy_vm(s: &mut Spmc<FakePlatform>, vm: u16) -> i32 {
    let regs = nwd_now(
        s,
        &vm_message(0, TEMPLATE, spmc::ffa::fwk::VM_DESTROYED, vm),
    );
    assert_eq!(regs.func(), func::MSG_SEND_DIRECT_RESP_32);
    assert_eq!(
        regs.w(2),
        spmc::ffa::fwk::FLAG | spmc::ffa::fwk::VM_DESTROYED_ACK
    );
    regs.w(3) as i32
}

/// The endpoint ID of `vm`'s instance of the vTEE template.
pub fn instance_id(s: &Spmc<FakePlatform>, vm: u16) -> Option<u16> {
    s.instance_of(0, VmId::new(vm))
        .map(|slot| s.partition(slot).id().raw())
}

/// The shipped SPMC configuration (its policy: the vTEE template 0x8010)
/// with sp1, sp2 and the template only, and their packages, built once
/// (compiling a manifest runs `dtc`): the cross-core checkers
/// (interleavings.rs, loom_contexts.rs) boot a fresh SPMC from them for
/// every order they try.
pub struct SmallWorld {
    config: SpmcConfig,
    blobs: Vec<Vec<u8>>,
    image: Vec<u8>,
}

impl SmallWorld {
    pub fn new() -> Self {
        let mut config = shipped_config(None);
        config
            .partitions
            .retain(|e| ["sp1", "sp2", "vtee"].contains(&e.name.as_str()));
        assert_eq!(config.partitions.len(), 3);
        Self {
            blobs: config
                .partitions
                .iter()
                .map(|e| manifest(&e.name))
                .collect(),
            config,
            image: image(),
        }
    }

    /// An SPMC with sp1, sp2 and the template loaded and booted (as
    /// `policy_world` does for all the shipped partitions), cores 1 to
    /// `cores - 1` brought up too (each MP context to its FFA_MSG_WAIT).
    pub fn boot(&self, cores: usize) -> Spmc<FakePlatform> {
        let mut p = FakePlatform::default();
        for (e, blob) in self.config.partitions.iter().zip(&self.blobs) {
            p.put_package(Pa(e.package), blob, &self.image);
        }
        let mut s = Spmc::new(self.config.clone(), p);
        s.load_partitions();
        let mut regs = Regs::default();
        let mut next = s.boot(&mut regs);
        while let Next::Run { vcpu, .. } = next {
            next = play_init(&mut s, vcpu, &mut regs);
        }
        assert_eq!(regs.func(), func::MSG_WAIT);
        for core in 1..cores {
            s.platform_mut().core = core;
            let mut next = s.secondary_boot(&mut regs);
            while let Next::Run { vcpu, .. } = next {
                next = sp_call(&mut s, vcpu, &[func::MSG_WAIT as u64], &mut regs);
            }
        }
        s.platform_mut().core = 0;
        s
    }
}

/// A direct request (64-bit, x3 = `x3`, x4-x7 = 1-4) from VM `vm` to `to`,
/// as the hypervisor forwards it: the vCPU it runs, or the error code.
pub fn vm_request(
    s: &mut Spmc<FakePlatform>,
    vm: u16,
    to: u16,
    x3: u64,
) -> Result<(VcpuRef, Regs), i32> {
    let req = func::MSG_SEND_DIRECT_REQ_64 as u64;
    let (next, regs) = nwd(s, &[req, (vm as u64) << 16 | to as u64, 0, x3, 1, 2, 3, 4]);
    match next {
        Next::Run { vcpu, .. } => Ok((vcpu, regs)),
        Next::NormalWorld => Err(regs.error_code().expect("an error, not an answer")),
    }
}

/// The partition running on `v` answers VM `vm`'s request (x3 = 0x600D);
/// returns the registers the VM gets.
pub fn vm_answer(s: &mut Spmc<FakePlatform>, v: VcpuRef, vm: u16, mut regs: Regs) -> Regs {
    let me = s.partition(v.slot).id().raw() as u64;
    let resp = func::MSG_SEND_DIRECT_RESP_64 as u64;
    let n = sp_call(s, v, &[resp, me << 16 | vm as u64, 0, 0x600D], &mut regs);
    assert!(matches!(n, Next::NormalWorld));
    regs
}
