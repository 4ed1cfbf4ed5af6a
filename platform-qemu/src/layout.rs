//! The two QEMU machines the SPMC runs on, as data: where the secure console,
//! the SPMC manifest and the secure memory are. Everything else (the boot
//! sequence, the message loop, memory access) is the same code for both.
//! The image's link address and the boot map are the board's linker script
//! (`spmc-virt.ld`, `spmc-sbsa.ld`); feature `sbsa` picks the board.

/// One board's addresses. Ranges are `[start, end)`.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The secure PL011 the SPMC logs to (the normal world has its own).
    pub secure_uart: usize,
    /// Trusted SRAM, where BL2 puts the SPMC manifest (TOS_FW_CONFIG).
    pub trusted_sram: (u64, u64),
    /// Secure memory the SPMC manages after its own image: partition
    /// packages and the secure pool. Mapped read-write for the SPMC.
    pub secure_managed: (u64, u64),
    /// All the board's secure RAM (TF-A's, the manifest, the SPMC, the
    /// packages, the pool): never normal-world memory, whatever a manifest
    /// says.
    pub secure_ram: (u64, u64),
    /// How much of the end of the secure pool becomes heap: page tables and
    /// bookkeeping, in proportion to how many partitions and TEEs the pool
    /// holds.
    pub heap_from_pool: u64,
    /// The GICv3 distributor (64 KiB).
    pub gicd: usize,
    /// The GICv3 redistributors (128 KiB per core, up to `MAX_CPUS`).
    pub gicr: usize,
}

/// QEMU `virt` (`secure=on,virtualization=on`): UART1 is the secure console
/// (UART0 the normal world's); 16 MiB of secure DRAM at 0x0e00_0000
/// (tf-a-integration/qemu/spmc_manifest.dts has the map).
pub const VIRT: Layout = Layout {
    secure_uart: 0x0904_0000,
    trusted_sram: (0x0e00_0000, 0x0e10_0000),
    secure_managed: (0x0e30_0000, 0x0f00_0000),
    secure_ram: (0x0e00_0000, 0x0f00_0000),
    heap_from_pool: 1 << 20,
    gicd: 0x0800_0000,
    gicr: 0x080A_0000,
};

/// QEMU `sbsa-ref`: the secure UART at 0x6003_0000 (the normal world's is
/// at 0x6000_0000); 512 MiB of secure SRAM at 0x2000_0000, whose top TF-A
/// keeps for BL31 (BL2 and BL1's data below it, from 0x3fcd_1000)
/// (tf-a-integration/sbsa/spmc_manifest.dts has the map).
pub const SBSA: Layout = Layout {
    secure_uart: 0x6003_0000,
    trusted_sram: (0x2000_0000, 0x2010_0000),
    secure_managed: (0x2030_0000, 0x3f00_0000),
    secure_ram: (0x2000_0000, 0x4000_0000),
    heap_from_pool: 64 << 20,
    gicd: 0x4006_0000,
    gicr: 0x4008_0000,
};

/// The board this image is built for.
pub const BOARD: Layout = if cfg!(feature = "sbsa") { SBSA } else { VIRT };

/// VMIDs at the top of the range the board keeps for VMs of its own (none
/// here: the normal world's hypervisor has its own VMIDs; platform-rpi4
/// keeps some for its general VMs).
pub const GENERAL_VM_VMIDS: u16 = 0;
