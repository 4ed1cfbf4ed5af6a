//! Boot at non-secure EL2: console, stage-1 map, the board's facts.

use arch_aarch64::mmu::{self, Kind, Region};
use arch_aarch64::{console, cpu, heap, sysreg};
use log::{LevelFilter, error, info};
use spin::mutex::SpinMutex;

use spmc::ffa::{FfaError, Regs};
use spmc::manifest;
use spmc::{LazyState, Next, Spmc};

use crate::board::Qemu as Board;
use crate::checks::gic;
use crate::layout;

/// Log level, chosen at build time with `SPMC_LOG` (as on QEMU virt).
const LOG_LEVEL: LevelFilter = arch_aarch64::console::level_named(option_env!("SPMC_LOG"));

/// PSCI SYSTEM_OFF (TF-A's rpi4 port resets the board through the PM
/// watchdog with the halt mark; QEMU run with `-no-reboot` exits).
const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;

/// The primary core's cold boot.
pub fn primary(dtb: u64, core: usize) -> ! {
    // SAFETY: the board's PL011, which TF-A stops using once it enters BL33
    // (its runtime console is the same UART, used only for its own errors).
    unsafe { console::init(layout::UART, LOG_LEVEL) };
    prove_ns_el2(core, dtb);
    heap::init();
    if let Err(e) = enable_mmu() {
        error!("cannot build the stage-1 map: {e}");
        cpu::halt()
    }
    info!("rpi4: stage-1 MMU on: text RX, rodata R, data RW+XN");
    gic_report();
    match crate::vgic::init() {
        Ok(line) => info!("rpi4: GIC-400 set up: {line}"),
        Err(why) => error!("rpi4: GIC-400: {why}"),
    }
    let (mut passed, mut failed) = crate::checks::board();
    match boot_core() {
        Ok(()) => {
            crate::smp::start_secondaries();
            let (p, f) = crate::users::run();
            passed += p;
            failed += f;
        }
        Err(why) => {
            failed += 1;
            console::line(format_args!("FAIL rpi4-core-boot: {why}"));
        }
    }
    console::line(format_args!("rpi4: {passed} passed, {failed} failed"));
    info!("rpi4: boot done; powering off through TF-A (PSCI SYSTEM_OFF)");
    let mut regs = spmc::ffa::Regs::with_func(PSCI_SYSTEM_OFF);
    arch_aarch64::smc::smc(&mut regs);
    error!("PSCI SYSTEM_OFF returned {:#x}", regs.0[0]);
    cpu::halt()
}

/// The banner: where this image runs. Not Secure EL2: ID_AA64PFR0_EL1.SEL2
/// is 0 on the Cortex-A72, so VSTCR_EL2 and VSTTBR_EL2 do not exist here
/// and stage 2 is VTTBR_EL2's alone.
pub(crate) fn prove_ns_el2(core: usize, dtb: u64) {
    let el = cpu::current_el();
    let sel2 = (sysreg::read_id_aa64pfr0_el1() >> 36) & 0xf;
    let midr = sysreg::read_midr_el1();
    info!(
        "rpi4: spmc core at non-secure EL2 (BL33 of TF-A rpi4): CurrentEL={el}, \
         ID_AA64PFR0_EL1.SEL2={sel2}, MIDR_EL1={midr:#x}, core {core}, DTB {dtb:#x}"
    );
}

/// What the GIC-400 says of itself: GICv2 distributor, CPU interface and
/// virtual interface control (the list registers the VMs' interrupts go
/// through).
fn gic_report() {
    let typer = gic(layout::GICD + 0x4);
    let iidr = gic(layout::GICC + 0xfc);
    let vtr = gic(layout::GICH + 0x4);
    info!(
        "rpi4: GIC-400: GICD_TYPER={typer:#x} ({} interrupt lines), GICC_IIDR={iidr:#x}, \
         GICH_VTR={vtr:#x} ({} list registers)",
        32 * ((typer & 0x1f) + 1),
        (vtr & 0x3f) + 1
    );
}

/// The core on this board.
pub type Core = Spmc<Board>;

/// The core, once booted: one manager lock, taken per call into it (as on
/// QEMU virt, `platform-qemu/src/platform.rs`), never while a vCPU runs, so
/// that every core can call it (`smp.rs`).
static CORE: SpinMutex<Option<alloc::boxed::Box<Core>>, crate::smp::Yield> = SpinMutex::new(None);

/// Runs `f` on the core under the manager lock (`None` before it booted).
pub fn with_core<R>(f: impl FnOnce(&mut Core) -> R) -> Option<R> {
    CORE.lock().as_mut().map(|c| f(c))
}

/// Reads the manifest, hands the core its trusted pool (the last
/// [`layout::HEAP_FROM_POOL`] bytes to the heap), loads the trusted VMs
/// and runs their initialisation under stage 2 until each waits for
/// messages. The core is the same as at Secure EL2; only the arch layer's
/// `ns-el2` feature differs (one IPA space, VTTBR_EL2 alone).
fn boot_core() -> Result<(), alloc::string::String> {
    // SAFETY: the manifest page of the boot blob, RAM nothing writes while
    // the core boots (mapped read-write with the image's first 64 MiB by the
    // boot map, and by `enable_mmu`); it is only read.
    let window = unsafe { core::slice::from_raw_parts(layout::MANIFEST as *const u8, 4096) };
    let mut config = manifest::parse(window).map_err(|e| alloc::format!("manifest: {e}"))?;
    if let Some(pool) = config.secure_memory.as_mut()
        && pool.size > 2 * layout::HEAP_FROM_POOL
    {
        pool.size -= layout::HEAP_FROM_POOL;
        // SAFETY: the end of the trusted pool, mapped read-write by
        // `enable_mmu` and just taken out of the pool: the core never hands
        // it to a trusted VM and nothing else uses it.
        unsafe {
            heap::add_region(
                (pool.base + pool.size) as usize,
                layout::HEAP_FROM_POOL as usize,
            )
        };
    }
    arch_aarch64::stage2::configure();
    arch_aarch64::vcpu::init_cpu();
    let board = Board::new(config.ns_memory.clone());
    let mut spmc = alloc::boxed::Box::new(Spmc::new(config, board));
    spmc.load_partitions();
    *CORE.lock() = Some(spmc);
    let mut regs = Regs::default();
    let next = with_core(|c| c.boot(&mut regs)).unwrap_or(Next::NormalWorld);
    run(&mut regs, next);
    info!(
        "rpi4: {} trusted VMs booted under stage 2; heap in use {} bytes",
        with_core(|c| c.partitions().len()).unwrap_or(0),
        heap::used()
    );
    Ok(())
}

/// Runs trusted VMs' vCPUs until the core has an answer for the caller (a
/// general VM, or the VM layer itself). The manager lock is held for the
/// core's decisions only, not while a vCPU runs (another core may call the
/// core meanwhile).
pub fn run(regs: &mut Regs, mut next: Next) {
    while let Next::Run { vcpu, ctx } = next {
        // SAFETY: the core hands the context to this core alone until
        // `handle_exit` (its `Next::Run` contract) and does not free it
        // while the vCPU runs.
        let ctx = unsafe { &mut *ctx };
        // SAFETY: as above; its stage-2 root was built by the core from the
        // trusted VM's own memory.
        unsafe { arch_aarch64::vcpu::run(ctx) };
        let mut guard = CORE.lock();
        let Some(spmc) = guard.as_mut() else {
            arch_aarch64::vcpu::return_to_normal_world();
            *regs = Regs::error(FfaError::Aborted);
            return;
        };
        next = spmc.handle_exit(vcpu, regs);
        let d = next.lazy_state_after(vcpu);
        match d {
            LazyState::KeepLive => {}
            LazyState::HandOff => arch_aarch64::vcpu::hand_off(),
            LazyState::ToNormalWorld => arch_aarch64::vcpu::return_to_normal_world(),
        }
        if d != LazyState::KeepLive {
            // Its state is back in its context: it is on no core any more
            // (`spmc::contexts`, "Who may run a vCPU").
            spmc.contexts().release(vcpu);
        }
    }
}

/// A call into the core as the VM layer makes it for general VM `vm`
/// after trapping its HVC/SMC: the call goes to the core's normal-world
/// entry (`handle_spmd`) with the VM's own ID where the ABI names one.
pub fn call(regs: &mut Regs) {
    let next = with_core(|c| c.handle_spmd(regs)).unwrap_or_else(|| {
        *regs = Regs::error(FfaError::NotSupported);
        Next::NormalWorld
    });
    run(regs, next);
}

fn enable_mmu() -> Result<(), mmu::MapError> {
    let [text, rodata, data] = mmu::image_regions();
    let regions = [
        text,
        rodata,
        data,
        Region {
            start: layout::UART,
            end: layout::UART + 0x1000,
            kind: Kind::Device,
        },
        Region {
            start: layout::GICD,
            end: layout::GICH + 0x1000,
            kind: Kind::Device,
        },
        Region {
            start: layout::MANIFEST as usize,
            end: layout::MANIFEST as usize + 0x1000,
            kind: Kind::ReadOnly,
        },
        // The trusted VMs' packages and the trusted pool.
        Region {
            start: layout::BOARD.secure_managed.0 as usize,
            end: layout::BOARD.secure_managed.1 as usize,
            kind: Kind::ReadWrite,
        },
    ];
    // SAFETY: the regions cover the image (the linker script's symbols), the
    // console and the GIC; nothing else is touched after this.
    unsafe { mmu::enable(&regions) }
}
