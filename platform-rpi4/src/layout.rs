//! The Raspberry Pi 4 (BCM2711) as QEMU 10's `raspi4b` models it, as data.
//! Peripherals are in low-peripheral mode (the ARM sees them from
//! 0xfc00_0000), as the Pi's firmware sets them up unless told otherwise
//! (`arm_peri_high`), and as TF-A's rpi4 port expects (`RPI_IO_BASE`).

/// The PL011 (UART0) at the GPIO 14/15 pins: the console TF-A uses too
/// (`RPI4_PL011_UART_BASE`).
pub const UART: usize = 0xfe20_1000;

/// The GIC-400 (GICv2 with the virtualisation extension): distributor,
/// CPU interface, virtual interface control, virtual CPU interface.
pub const GICD: usize = 0xff84_1000;
/// GIC-400 CPU interface.
pub const GICC: usize = 0xff84_2000;
/// GIC-400 virtual interface control (GICH): list registers for VMs.
pub const GICH: usize = 0xff84_4000;
/// GIC-400 virtual CPU interface (GICV, 8 KiB): what a VM's stage 2 maps
/// at [`GUEST_GICC`], so that its GICC accesses reach its own list
/// registers (QEMU's bcm2838 `GIC_VCPU_OFS`, as on the Pi 4).
pub const GICV: usize = 0xff84_6000;
/// Where a general VM finds its GIC CPU interface: the board's GICC
/// address (IPA), backed by [`GICV`].
pub const GUEST_GICC: u64 = GICC as u64;
/// Bytes of the GICV frame mapped there (GICV_DIR is at 0x1000).
pub const GICV_SIZE: u64 = 0x2000;

/// Where the boot blob (`rpi4-kernel8.img`: this image, then the manifest
/// and the trusted VMs' packages at fixed offsets) puts the core's manifest
/// (tf-a-integration/rpi4/spmc_manifest.dts has the map).
pub const MANIFEST: u64 = 0x0030_0000;

/// The memory the board code (platform-qemu's `board.rs`, shared) needs to
/// know, under the names it has on QEMU.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Memory the core manages after its image: the trusted VMs' packages
    /// and the trusted pool. Mapped read-write for the core.
    pub secure_managed: (u64, u64),
    /// All the RAM kept from the general VMs (TF-A's, this image, the
    /// manifest, the packages, the pool): never general-VM memory, whatever
    /// a manifest says. Not secure in the TrustZone sense (docs/rpi4.md).
    pub secure_ram: (u64, u64),
}

/// The Raspberry Pi 4's first 64 MiB are the trusted side; general VMs get
/// RAM from 0x4000_0000 (the manifest's ns-memory).
pub const BOARD: Layout = Layout {
    secure_managed: (0x0040_0000, 0x0400_0000),
    secure_ram: (0, 0x0400_0000),
};

/// The last bytes of the trusted pool the heap takes (stage-2 tables,
/// records of trusted VMs and their per-user instances).
pub const HEAP_FROM_POOL: u64 = 8 << 20;

/// The general VMs that run as EL1 guests of this image (users 1-4).
pub const GUESTS: u16 = 4;

/// VMIDs the core never hands out (the board's `vmid_limit` stops below
/// them): general VM `n` (1-[`GUESTS`]) runs with VMID `limit - n + 1`,
/// where `limit` is the last VMID the CPU has (0xFF on the A72).
pub const GENERAL_VM_VMIDS: u16 = GUESTS;

/// General VM `n`'s RAM (1-[`GUESTS`]): [`GUEST_RAM_SIZE`] bytes at
/// `GUEST_RAM + (n - 1) * GUEST_RAM_STRIDE`, at IPA = PA in its own stage
/// 2, inside the manifest's ns-memory (0x4000_0000-0x7fff_ffff).
pub const GUEST_RAM: u64 = 0x4000_0000;
/// Distance between two general VMs' RAM.
pub const GUEST_RAM_STRIDE: u64 = 0x10_0000;
/// Size of a general VM's RAM.
pub const GUEST_RAM_SIZE: u64 = 0x1_0000;
