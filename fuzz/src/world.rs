//! The QEMU image's SPMC over the fake platform: the shipped SPMC manifest
//! (policy, pool, packages) and the shipped partition manifests, compiled
//! once with `dtc`, with a fake image in every package.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use spmc::addr::Pa;
use spmc::ffa::{Regs, func};
use spmc::manifest::{MemRange, SpmcConfig};
use spmc::testing::{FakePlatform, NS_BASE, sp_call};
use spmc::vcpu::VcpuRef;
use spmc::{Next, Spmc};

use crate::heap::Meter;

/// Test partition IPAs (tests/protocol layout).
pub const RAM_IPA: u64 = 0x1004_0000;
/// Where each partition maps its RX/TX at boot (as the host tests do).
pub const SP_TX_IPA: u64 = RAM_IPA + 0xE000;
pub const SP_RX_IPA: u64 = RAM_IPA + 0xF000;
/// The normal world's RX/TX buffers.
pub const NWD_TX: u64 = NS_BASE + 0x10_0000;
pub const NWD_RX: u64 = NS_BASE + 0x10_1000;
/// Normal-world memory the driver shares (16 pages).
pub const NS_MEM: u64 = NS_BASE + 0x20_0000;

/// The secure pool of the fuzzed SPMC.
pub const POOL_SIZE: u64 = 2 << 20;

struct Blobs {
    config: SpmcConfig,
    manifests: Vec<(u64, Vec<u8>)>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dtb(path: &Path) -> Vec<u8> {
    let out = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run dtc ({e}): install device-tree-compiler"));
    assert!(out.status.success(), "dtc failed on {}", path.display());
    out.stdout
}

fn blobs() -> &'static Blobs {
    static BLOBS: OnceLock<Blobs> = OnceLock::new();
    BLOBS.get_or_init(|| {
        let qemu = repo_root().join("tf-a-integration/qemu");
        let mut config = spmc::manifest::parse(&dtb(&qemu.join("spmc_manifest.dts")))
            .expect("the shipped SPMC manifest parses");
        // The shipped pool is 11 MiB; the partitions take 211 pages and each
        // of the five VMs' instances 40: 2 MiB holds them all and costs a
        // fifth of the time to zero at every run.
        let pool = config
            .secure_memory
            .expect("the shipped manifest has a pool");
        config.secure_memory = Some(MemRange {
            base: pool.base,
            size: POOL_SIZE,
        });
        let manifests = config
            .partitions
            .iter()
            .map(|e| {
                let m = dtb(&qemu.join("partitions").join(format!("{}.dts", e.name)));
                (e.package, m)
            })
            .collect();
        Blobs { config, manifests }
    })
}

/// A fake image: a recognisable pattern, 8 KiB and a bit.
fn image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| (0..8200u32).map(|i| (i * 7 + 3) as u8).collect())
}

/// Plays one partition's initialisation: FFA_VERSION, FFA_RXTX_MAP_64,
/// FFA_MSG_WAIT.
fn play_init(s: &mut Spmc<FakePlatform>, v: VcpuRef, regs: &mut Regs) -> Next {
    sp_call(s, v, &[func::VERSION as u64, 0x1_0002], regs);
    sp_call(
        s,
        v,
        &[func::RXTX_MAP_64 as u64, SP_TX_IPA, SP_RX_IPA, 1],
        regs,
    );
    sp_call(s, v, &[func::MSG_WAIT as u64], regs)
}

/// Plays the initialisation of each partition the SPMC runs, starting with
/// `first` (the vCPU on the core now, if any), until the normal world gets
/// the core back (a bounded number of boots).
pub fn play_boot(s: &mut Spmc<FakePlatform>, first: Option<VcpuRef>, regs: &mut Regs) -> Next {
    let mut v = first;
    for _ in 0..64 {
        match v {
            Some(vcpu) => match play_init(s, vcpu, regs) {
                Next::Run { vcpu, .. } => v = Some(vcpu),
                n => return n,
            },
            None => return Next::NormalWorld,
        }
    }
    match v {
        Some(vcpu) => Next::Run {
            vcpu,
            ctx: &mut *s.vcpu_context_mut(vcpu),
        },
        None => Next::NormalWorld,
    }
}

/// Every partition booted, the normal world's buffers mapped and its
/// version set; the SPMC's heap counted in `meter`.
pub fn booted(meter: &mut Meter) -> Spmc<FakePlatform> {
    let b = blobs();
    let mut p = FakePlatform::default();
    for (package, m) in &b.manifests {
        p.put_package(Pa(*package), m, image());
    }
    meter.enter();
    let mut s = Spmc::new(b.config.clone(), p);
    s.load_partitions();
    let mut regs = Regs::default();
    let first = match s.boot(&mut regs) {
        Next::Run { vcpu, .. } => Some(vcpu),
        Next::NormalWorld => None,
    };
    let next = play_boot(&mut s, first, &mut regs);
    assert!(matches!(next, Next::NormalWorld) && s.is_booted());
    let mut r = Regs::from_slice(&[func::RXTX_MAP_64 as u64, NWD_TX, NWD_RX, 1]);
    s.handle_spmd(&mut r);
    assert_eq!(r.func(), func::SUCCESS_32);
    let mut r = Regs::from_slice(&[func::VERSION as u64, 0x1_0002]);
    s.handle_spmd(&mut r);
    meter.leave();
    s
}
