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
