//! The boot sequence and the message loop (the board's facts are in `layout`).

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, Ordering};

use arch_aarch64::mmu::{self, Kind, MapError, Region};
use arch_aarch64::smc::smc;
use arch_aarch64::{console, cpu, heap, sysreg};
use log::{LevelFilter, error, info};
use spin::mutex::{SpinMutex, SpinMutexGuard};
use spmc::contexts::{Contexts, Fast};
use spmc::fatal::FailGate;
use spmc::ffa::{FfaError, Regs, func};
use spmc::vcpu::VcpuRef;
use spmc::{LazyState, Next, Spmc};

use crate::board::{Qemu, SECURE_MANAGED};
use crate::layout::BOARD;
use spmc::manifest::{self, ManifestError, MemRange, SpmcConfig};
use spmc::memmap::{HEADER, Owner, Row};
use spmc::text::{Hex, Text};

/// The secure console (the normal world has its own UART).
const SECURE_UART: usize = BOARD.secure_uart;
/// Trusted SRAM, where BL2 puts the SPMC manifest (TOS_FW_CONFIG).
const TRUSTED_SRAM: (u64, u64) = BOARD.trusted_sram;
/// The manifest is at most one page (TF-A maps one page for it).
const MANIFEST_WINDOW: u64 = 4096;

/// Log level, chosen at build time with `SPMC_LOG` (error, warn, info, debug, trace).
const LOG_LEVEL: LevelFilter = arch_aarch64::console::level_named(option_env!("SPMC_LOG"));

/// The manager lock: every call but the direct-message fast path takes it
/// (the lock order: `spmc::manager`'s module documentation). The manager is
/// boxed so that "none yet" is a null pointer: the static is all zeros and
/// stays in `.bss`; `Option<Spmc>` marks `None` in a niche of its own, which
/// put the whole 712-byte static in the image's `.data`.
static SPMC: SpinMutex<Option<Box<Spmc<Qemu>>>> = SpinMutex::new(None);
/// The vCPUs, each behind its own lock, shared with the manager: the
/// direct-message fast path (`spmc::contexts`) uses them without `SPMC`.
static CONTEXTS: spin::Once<alloc::sync::Arc<Contexts>> = spin::Once::new();
/// Set once the first FFA_MSG_WAIT has told the SPMD that init succeeded.
static BOOTED: AtomicBool = AtomicBool::new(false);
/// Set for good by the first fatal error on any core (a panic, or an
/// exception at EL2 that is not a guarded copy's). From then on no core
/// touches the core's state again: the failing core may have left it half
/// changed, and may still hold `SPMC`'s lock. Every core takes the lock
/// through the gate, which gives up once it is set, so none waits for a lock
/// that is never given back; each answers FFA_ERROR(ABORTED) instead.
static FAILED: FailGate = FailGate::new();

type Guard = SpinMutexGuard<'static, Option<Box<Spmc<Qemu>>>>;

/// The core's lock, or `None` once the SPMC has failed (see [`FAILED`]).
#[inline(always)]
fn lock_live() -> Option<Guard> {
    FAILED.lock(|| SPMC.try_lock())
}

/// The primary core's cold boot, from entry to the first FFA_MSG_WAIT.
/// `entry_count` is CNTVCT_EL0 at the entry's first instruction: the
/// "init done" line says how far the counter moved until every partition's
/// first FFA_MSG_WAIT (under `-icount shift=0` on QEMU 10, instructions:
/// the `optee_boot` figure, docs/benchmarks.md).
pub fn primary(manifest_addr: u64, core: usize, entry_count: u64) -> ! {
    // SAFETY: the board's secure UART; only the SPMC uses it.
    unsafe { console::init(SECURE_UART, LOG_LEVEL) };
    arch_aarch64::exceptions::on_fatal(fail_boot_if_booting);
    info!("booting on core {core}, manifest at {manifest_addr:#x}");
    prove_secure_el2();
    heap::init();

    let mut config = match read_manifest(manifest_addr) {
        Ok(c) => c,
        Err(e) => {
            error!("SPMC manifest rejected: {e}");
            fail_boot(FfaError::InvalidParameters)
        }
    };

    if let Err(e) = enable_mmu(&config) {
        let (what, n) = mmu::describe(&e);
        error!(
            "cannot build the SPMC's stage-1 map: {} {}",
            Text(what),
            Hex(n as u64)
        );
        fail_boot(FfaError::NoMemory)
    }
    info!("stage-1 MMU on: text RX, rodata R, data RW+XN");
    let heap = grow_heap(&mut config);

    register_secondary_entry();
    arch_aarch64::stage2::configure();
    arch_aarch64::vcpu::init_cpu();
    arch_aarch64::gic::init_cpu();
    arch_aarch64::gic::set_physical_deactivate(crate::gic::deactivate);
    crate::sri::give_to_normal_world();
    let board = Qemu::new(config.ns_memory.clone());
    let mut spmc = Spmc::new(config, board);
    spmc.contexts().set_fail_gate(&FAILED);
    CONTEXTS.call_once(|| spmc.contexts().clone());
    spmc.load_partitions();
    print_memory_map(&mut spmc, heap);
    let mut regs = Regs::default();
    let next = spmc.boot(&mut regs);
    // The SPMC's own share of the boot figure: up to the first partition's
    // first instruction (its package copied, its stage 2 built).
    let ticks = sysreg::read_cntvct_el0().wrapping_sub(entry_count);
    info!(
        "partitions start {ticks} counter ticks ({} ns) after the SPMC's entry",
        ticks_to_ns(ticks)
    );
    // The primary boot runs once: there is no earlier manager to drop (and
    // so no drop code for one in the image).
    core::mem::forget(SPMC.lock().replace(Box::new(spmc)));
    // Run the partitions' initialisation until the core hands the normal
    // world its first answer (FFA_MSG_WAIT to the SPMD: init done).
    let next = run_partitions(&mut regs, next);
    let ticks = sysreg::read_cntvct_el0().wrapping_sub(entry_count);
    info!(
        "init done {ticks} counter ticks ({} ns) after the SPMC's entry, heap in use {} bytes; waiting for messages",
        ticks_to_ns(ticks),
        heap::used()
    );
    BOOTED.store(true, Ordering::Release);
    serve(regs, next)
}

/// Counter ticks to nanoseconds (CNTFRQ_EL0), without overflow.
fn ticks_to_ns(ticks: u64) -> u64 {
    let freq = sysreg::read_cntfrq_el0().max(1);
    ticks / freq * 1_000_000_000 + ticks % freq * 1_000_000_000 / freq
}

/// A secondary core entering after the normal world's PSCI CPU_ON (TF-A's
/// SPMD enters the SPMC at the registered secondary entry, `spmd_pm.c`,
/// and waits for its FFA_MSG_WAIT): the core's context of every MP
/// partition initialises first (`Spmc::secondary_boot`). The same after a
/// CPU_OFF: the core starts afresh.
pub fn secondary(core: usize) -> ! {
    arch_aarch64::stage2::configure();
    arch_aarch64::vcpu::init_cpu();
    arch_aarch64::gic::init_cpu();
    arch_aarch64::gic::set_physical_deactivate(crate::gic::deactivate);
    crate::sri::give_to_normal_world();
    log::debug!("core {core} on");
    let mut regs = Regs::with_func(func::MSG_WAIT);
    let next = match lock_live() {
        Some(mut guard) => match guard.as_mut() {
            Some(spmc) if BOOTED.load(Ordering::Acquire) => spmc.secondary_boot(&mut regs),
            _ => Next::NormalWorld,
        },
        None => Next::NormalWorld,
    };
    let next = run_partitions(&mut regs, next);
    serve(regs, next)
}

/// Runs vCPUs until the core has an answer for the normal world (a core's
/// boot; out of line). Every exit goes to the manager: at boot no vCPU
/// answers a normal-world request, and the manager handles whatever the
/// fast path of `run_vcpu` would (that one is the message loop's alone).
#[inline(never)]
fn run_partitions(regs: &mut Regs, mut next: Next) -> Next {
    while let Next::Run { vcpu, ctx } = next {
        enter(ctx);
        next = exit_to_manager(vcpu, CONTEXTS.get(), regs);
    }
    next
}

/// Runs the vCPU whose context is `ctx` until it exits.
#[inline(always)]
fn enter(ctx: *mut spmc::vcpu::Context) {
    // SAFETY: the core hands the context to this core alone until
    // `handle_exit` (its `Next::Run` contract); it lives in a Box the core does
    // not free while the vCPU runs, and its stage-2 roots were built by the
    // core from the partition's own memory.
    let ctx = unsafe { &mut *ctx };
    // SAFETY: as above.
    unsafe { arch_aarch64::vcpu::run(ctx) };
}

/// Acts on the core's decision about the lazily held state of a vCPU that
/// exited ([`LazyState`]).
#[inline(always)]
fn lazy_action(d: LazyState) {
    match d {
        LazyState::KeepLive => {}
        LazyState::HandOff => arch_aarch64::vcpu::hand_off(),
        LazyState::ToNormalWorld => arch_aarch64::vcpu::return_to_normal_world(),
    }
}

/// The direct-request fast path (`spmc::contexts`): `None` when the call
/// needs the manager.
#[inline(always)]
#[cfg_attr(spmc_hot, optimize(speed))]
fn fast_request(regs: &mut Regs) -> Option<Next> {
    match CONTEXTS
        .get()?
        .direct_request(&FAILED, regs, cpu::core_index)
    {
        Fast::Done(next) => Some(next),
        Fast::Slow => None,
        Fast::Failed => {
            *regs = Regs::error(FfaError::Aborted);
            Some(Next::NormalWorld)
        }
    }
}

/// Runs one vCPU until it exits and hands the exit to the core.
///
/// A direct response to the normal world takes the fast path, under the
/// vCPU's own lock only (`Contexts::direct_response`); every other exit
/// goes to the manager under the manager lock.
///
/// When the core answers the normal world next, the normal world's EL1 and
/// FP/SIMD state goes back into the hardware before the vCPU is released
/// (`Contexts::release`, or inside the fast path's lock): from then on no
/// core holds that partition's state, so another core may pick it and the
/// manager may free it (a destroyed instance) without a core saving into
/// freed memory. When the core runs another vCPU next (a direct request
/// between partitions, its response, an abort's unblocking), the exited
/// vCPU's state goes back into its context the same way (`vcpu::hand_off`).
///
/// Inlined into its two callers: on the direct round trip ([`serve`]) no
/// call frame and no `Next` passed through memory. The manager's part
/// ([`exit_to_manager`]) is one copy out of line.
#[inline(always)]
#[cfg_attr(spmc_hot, optimize(speed))]
fn run_vcpu(vcpu: VcpuRef, ctx: *mut spmc::vcpu::Context, regs: &mut Regs) -> Next {
    enter(ctx);
    let contexts = CONTEXTS.get();
    if let Some(c) = contexts {
        // A closure, not the function item: that one's `FnOnce` shim stayed
        // a call (and an outlined fragment) in the size-optimised image.
        #[allow(clippy::redundant_closure, reason = "inlines; see above")]
        match c.direct_response(&FAILED, vcpu, regs, |d| lazy_action(d)) {
            Fast::Done(next) => return next,
            Fast::Slow => {}
            Fast::Failed => {
                arch_aarch64::vcpu::return_to_normal_world();
                *regs = Regs::error(FfaError::Aborted);
                return Next::NormalWorld;
            }
        }
    }
    exit_to_manager(vcpu, contexts, regs)
}

/// The manager's part of a vCPU's exit, every exit the fast path leaves
/// (under the manager lock): out of line, so that the manager's exit
/// handling is one copy for [`serve`] and [`run_partitions`] (the direct
/// round trip never comes here).
#[inline(never)]
#[cfg_attr(spmc_hot, optimize(speed))]
fn exit_to_manager(
    vcpu: VcpuRef,
    contexts: Option<&alloc::sync::Arc<Contexts>>,
    regs: &mut Regs,
) -> Next {
    let Some(mut guard) = lock_live() else {
        // The SPMC failed while this vCPU ran: the context stays this
        // core's (nothing frees it any more), so the partition's state can
        // go back into it before the normal world gets its error.
        arch_aarch64::vcpu::return_to_normal_world();
        *regs = Regs::error(FfaError::Aborted);
        return Next::NormalWorld;
    };
    let next = match guard.as_mut() {
        Some(spmc) => {
            let next = spmc.handle_exit(vcpu, regs);
            if matches!(next, Next::NormalWorld) {
                spmc.sri_on_return();
            }
            next
        }
        None => Next::NormalWorld,
    };
    let d = next.lazy_state_after(vcpu);
    lazy_action(d);
    if d != LazyState::KeepLive
        && let Some(c) = contexts
    {
        // Still under the manager lock: the vCPU's state is in its context.
        c.release(vcpu);
    }
    drop(guard);
    next
}

/// The message loop. Answers go to the SPMD in the SMC that also waits for
/// the next call; partitions run until they exit back to the core.
#[cfg_attr(spmc_hot, optimize(speed))]
fn serve(mut regs: Regs, mut next: Next) -> ! {
    loop {
        next = match next {
            Next::NormalWorld => {
                smc(&mut regs);
                if let Some(next) = fast_request(&mut regs) {
                    next
                } else {
                    match lock_live() {
                        Some(mut guard) => match guard.as_mut() {
                            #[cfg(feature = "fatal-probe")]
                            Some(_) if fatal_probe(&regs) => {
                                // A release image's panic prints no message:
                                // this line says the panic is the probe's.
                                log::error!("fatal probe (test-only build): panicking");
                                panic!("fatal probe (test-only build): failing with the lock held")
                            }
                            Some(spmc) => {
                                let next = spmc.handle_spmd(&mut regs);
                                if matches!(next, Next::NormalWorld) {
                                    spmc.sri_on_return();
                                }
                                next
                            }
                            None => {
                                regs = Regs::error(FfaError::NotSupported);
                                Next::NormalWorld
                            }
                        },
                        None => {
                            regs = Regs::error(FfaError::Aborted);
                            Next::NormalWorld
                        }
                    }
                }
            }
            Next::Run { vcpu, ctx } => run_vcpu(vcpu, ctx, &mut regs),
        };
    }
}

/// The `fatal` stage's trigger (feature `fatal-probe`, test-only builds):
/// FFA_MSG_SEND_DIRECT_REQ_64 to endpoint 0xFFFE with x3 = 0xFA7A10BE.
#[cfg(feature = "fatal-probe")]
fn fatal_probe(regs: &Regs) -> bool {
    regs.0[0] == func::MSG_SEND_DIRECT_REQ_64 as u64
        && regs.0[1] & 0xFFFF == 0xFFFE
        && regs.0[3] == 0xFA7A_10BE
}

/// The heap's share of the secure pool: page tables and bookkeeping for the
/// partitions and TEEs the pool can hold (the static heap in the image only
/// has to boot).
const HEAP_FROM_POOL: u64 = BOARD.heap_from_pool;

/// Moves the last `HEAP_FROM_POOL` bytes of the secure pool to the heap (the
/// pool keeps the rest; partitions never see those pages) and returns where
/// they are. A pool too small to spare them leaves the heap as it is.
#[inline(never)]
fn grow_heap(config: &mut SpmcConfig) -> Option<MemRange> {
    let pool = config.secure_memory.as_mut()?;
    if pool.size < 4 * HEAP_FROM_POOL {
        log::warn!(
            "secure pool of {} bytes: the heap stays at its static size",
            Hex(pool.size)
        );
        return None;
    }
    pool.size -= HEAP_FROM_POOL;
    let start = pool.base + pool.size;
    // SAFETY: the range is the end of the secure pool, which `enable_mmu`
    // mapped read-write for the SPMC; it was just taken out of the pool, so
    // the core never hands it to a partition, and nothing else uses it.
    unsafe { heap::add_region(start as usize, HEAP_FROM_POOL as usize) };
    Some(MemRange {
        base: start,
        size: HEAP_FROM_POOL,
    })
}

/// Prints the secure memory map at info level, one table: the core's rows
/// (its image, the packages, every partition's memory in the pool, the free
/// pool) and the board's (trusted SRAM, the heap taken from the pool).
/// `cargo xtask map` prints the same layout from the manifests. An image
/// whose log level leaves info out (a release build at `--log warn`) leaves
/// out the table's code too.
#[inline(never)]
fn print_memory_map(spmc: &mut Spmc<Qemu>, heap: Option<MemRange>) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    let mut extra = alloc::vec![Row {
        base: TRUSTED_SRAM.0,
        size: TRUSTED_SRAM.1 - TRUSTED_SRAM.0,
        owner: Owner::Firmware,
        what: "trusted SRAM: BL1, BL2, BL31, the SPMC manifest".into(),
    }];
    if let Some(h) = heap {
        extra.push(Row {
            base: h.base,
            size: h.size,
            owner: Owner::Spmc,
            what: alloc::format!(
                "heap, taken from the pool (and {} KiB in the image)",
                heap::HEAP_SIZE / 1024
            ),
        });
    }
    info!("secure memory map:");
    info!("  {HEADER}");
    for row in spmc.memory_map(&extra) {
        info!("  {row}");
    }
}

/// Prints the line that proves where the SPMC runs: VSTCR_EL2 exists only at Secure EL2.
fn prove_secure_el2() {
    let el = cpu::current_el();
    let vstcr = sysreg::read_vstcr_el2();
    let sel2 = (sysreg::read_id_aa64pfr0_el1() >> 36) & 0xf;
    info!(
        "running at Secure EL2: CurrentEL={el}, VSTCR_EL2={vstcr:#x} readable, ID_AA64PFR0_EL1.SEL2={sel2}"
    );
}

#[inline(never)]
fn read_manifest(addr: u64) -> Result<SpmcConfig, ManifestError> {
    if addr < TRUSTED_SRAM.0 || addr >= TRUSTED_SRAM.1 {
        return Err(ManifestError::BadAddress(addr));
    }
    let len = MANIFEST_WINDOW.min(TRUSTED_SRAM.1 - addr) as usize;
    // SAFETY: the range lies in trusted SRAM, which is RAM that BL2 filled
    // and nothing writes while the SPMC boots; it is only read.
    let window = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    manifest::parse(window)
}

#[inline(never)]
fn enable_mmu(config: &SpmcConfig) -> Result<(), MapError> {
    let [text, rodata, data] = mmu::image_regions();
    let image = [
        text,
        rodata,
        data,
        Region {
            start: SECURE_UART,
            end: SECURE_UART + 0x1000,
            kind: Kind::Device,
        },
        // The GICv3 distributor and redistributors (crate::gic).
        Region {
            start: BOARD.gicd,
            end: BOARD.gicd + crate::gic::GICD_SIZE,
            kind: Kind::Device,
        },
        Region {
            start: BOARD.gicr,
            end: BOARD.gicr + crate::gic::GICR_SIZE,
            kind: Kind::Device,
        },
        // Partition packages and the secure pool.
        Region {
            start: SECURE_MANAGED.0 as usize,
            end: SECURE_MANAGED.1 as usize,
            kind: Kind::ReadWrite,
        },
    ];
    let pool = config
        .secure_memory
        .filter(|p| p.base < SECURE_MANAGED.0 || p.base + p.size > SECURE_MANAGED.1)
        .map(|p| Region {
            start: p.base as usize,
            end: (p.base + p.size) as usize,
            kind: Kind::ReadWrite,
        });
    let regions = region_list(&image, pool);
    // SAFETY: the regions cover the image (by the linker script's symbols),
    // the console and the secure pool; nothing else is touched after this.
    unsafe { mmu::enable(&regions) }
}

fn region_list(image: &[Region], pool: Option<Region>) -> alloc::vec::Vec<Region> {
    let mut v = alloc::vec::Vec::with_capacity(image.len() + 1);
    v.extend_from_slice(image);
    v.extend(pool);
    v
}

fn register_secondary_entry() {
    let mut regs = Regs::with_func(func::SECONDARY_EP_REGISTER_64);
    regs.0[1] = arch_aarch64::entry::secondary_entry_address();
    smc(&mut regs);
    if regs.func() != func::SUCCESS_64 && regs.func() != func::SUCCESS_32 {
        log::warn!(
            "FFA_SECONDARY_EP_REGISTER refused (x0={} x2={}); secondary cores will not start the SPMC",
            Hex(regs.0[0]),
            Hex(regs.0[2])
        );
    }
}

/// Reports a failed init to the SPMD (FFA_ERROR, §13.1) and then answers any
/// later call with NOT_SUPPORTED: the SPMC never hangs the caller.
fn fail_boot(code: FfaError) -> ! {
    let mut regs = Regs::error(code);
    loop {
        smc(&mut regs);
        regs = Regs::error(FfaError::NotSupported);
    }
}

/// After a fatal error on this core (a panic, or a fatal exception at EL2,
/// which panics): during boot, report failure; afterwards, answer every call
/// with ABORTED without touching the (possibly inconsistent) state again.
///
/// [`FAILED`] is set first, so the other cores stop waiting for the lock this
/// core may hold and answer ABORTED too; the normal world's EL1 and FP/SIMD
/// state goes back into the hardware first, if a partition's was there.
pub fn fail_boot_if_booting() -> ! {
    FAILED.fail();
    arch_aarch64::vcpu::recover_normal_world_state();
    if !BOOTED.load(Ordering::Acquire) {
        fail_boot(FfaError::Aborted)
    }
    let mut regs = Regs::error(FfaError::Aborted);
    loop {
        smc(&mut regs);
        regs = Regs::error(FfaError::Aborted);
    }
}
