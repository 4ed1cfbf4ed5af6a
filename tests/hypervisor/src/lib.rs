//! A reference normal-world hypervisor (BL33 at NS-EL2 on QEMU) whose VMs
//! each get a virtual TEE from the SPMC.
//!
//! - [`vm`]: VMs at NS-EL1, each with its own stage 2 and RAM; their life
//!   cycle (VM created / destroyed messages to the SPMC) and run loop.
//! - [`ffa`]: the FF-A proxy (a VM's trapped SMC or HVC: its ID stamped as
//!   sender, forwarded; what a VM may not do is refused) and the
//!   hypervisor's own calls.
//! - [`guest`]: the program every VM runs.
//! - [`arch`]: vectors, the world switch, EL1 state, stage-2 controls.
//! - [`demo`]: the four-user demo; [`checks`]: the `vtee` stage.
//!
//! Three images are built from this library: `nwd-hypervisor` (the demo,
//! then the checks), `nwd-hypervisor-demo` (the demo alone, for
//! `cargo xtask run`) and `nwd-hypervisor-bench`. See docs/hypervisor.md.

#![no_std]

extern crate alloc;

pub mod arch;
pub mod board;
pub mod checks;
pub mod demo;
pub mod ffa;
pub mod guest;
pub mod nsirq;
pub mod report;
pub mod share;

pub use baremetal::{ensure, ensure_eq, say};
pub mod vm;

use core::panic::PanicInfo;

use baremetal::{Block, BootTable};
use buddy_system_allocator::LockedHeap;

/// The hypervisor's own map at EL2 (identity): devices in the first GiB
/// (the console), then normal-world RAM (its image, its VMs' RAM, its heap).
#[cfg(not(feature = "sbsa"))]
#[unsafe(no_mangle)]
static BAREMETAL_L1: BootTable = BootTable::new(
    &[Block::Device, Block::Memory, Block::Memory, Block::Memory],
    true,
);
/// sbsa-ref: devices in the second GiB (GIC, UART); the RAM at 1 TiB is the
/// runtime's own table (`baremetal`, feature `sbsa`).
#[cfg(feature = "sbsa")]
#[unsafe(no_mangle)]
static BAREMETAL_L1: BootTable = BootTable::new(&[Block::None, Block::Device], true);

/// Heap size: stage-2 tables and VM records.
const HEAP_SIZE: usize = 256 * 1024;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);

static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the heap to the allocator. Call once, first.
pub fn init_heap() {
    let start = (&raw mut HEAP_AREA) as usize;
    // SAFETY: HEAP_AREA is used by nothing else and this runs once, on the
    // one core, before any allocation.
    unsafe { HEAP.lock().init(start, HEAP_SIZE) };
}

/// Sets up EL2 and greets: the heap, the vectors, FF-A v1.2 with the SPMC.
pub fn start(image: &str) -> vm::Hypervisor {
    init_heap();
    let (hyp, version) = vm::Hypervisor::new();
    say!(
        "hypervisor: {image} at NS-EL{}; FF-A version {}.{} with the SPMC",
        baremetal::current_el(),
        version >> 16,
        version & 0xFFFF
    );
    hyp
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if baremetal::current_el() == 1 {
        // A VM's program: say so and let the hypervisor stop the VM.
        say!("FAIL vm-panic: {info}");
        let mut r = [0u64; 18];
        r[0] = guest::HV_GUEST_EXCEPTION;
        r[4] = 16;
        loop {
            baremetal::hvc(&mut r);
        }
    }
    say!("FAIL hypervisor-panic: {info}");
    baremetal::system_off()
}
