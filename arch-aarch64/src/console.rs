//! The console: a PL011 UART behind the `log` crate.
//!
//! Every line is prefixed with `spmc:` and the level, so the SPMC's lines can
//! be told from the normal world's when both UARTs share a terminal.

use core::fmt::{self, Write};
use core::ptr::NonNull;

use arm_pl011_uart::{
    DataBits, LineConfig, PL011Registers, Parity, StopBits, Uart, UniqueMmioPointer,
};
use log::{LevelFilter, Log, Metadata, Record};
use spin::mutex::SpinMutex;

static UART: SpinMutex<Option<Uart<'static>>> = SpinMutex::new(None);

struct Logger;

static LOGGER: Logger = Logger;

/// The log level a build asked for with `SPMC_LOG` (error, warn, info,
/// debug, trace; info when unset or unknown). A platform passes its own
/// `option_env!("SPMC_LOG")`, which the compiler reads when it builds that
/// platform's image.
pub const fn level_named(name: Option<&str>) -> LevelFilter {
    match name {
        Some(s) if s.len() == 5 && s.as_bytes()[0] == b'e' => LevelFilter::Error,
        Some(s) if s.len() == 4 && s.as_bytes()[0] == b'w' => LevelFilter::Warn,
        Some(s) if s.len() == 5 && s.as_bytes()[0] == b'd' => LevelFilter::Debug,
        Some(s) if s.len() == 5 && s.as_bytes()[0] == b't' => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

/// Takes the PL011 at `base` as the console and installs the logger.
///
/// # Safety
///
/// `base` must be the physical (identity-mapped) address of a PL011 register
/// block that nothing else uses for the rest of the program.
pub unsafe fn init(base: usize, level: LevelFilter) {
    let Some(ptr) = NonNull::new(base as *mut PL011Registers) else {
        return;
    };
    // SAFETY: the caller guarantees the block is a PL011 that only we use.
    let mut uart = Uart::new(unsafe { UniqueMmioPointer::new(ptr) });
    let line = LineConfig {
        data_bits: DataBits::Bits8,
        parity: Parity::None,
        stop_bits: StopBits::One,
    };
    // QEMU's PL011 runs at 24 MHz; the divisor is irrelevant to its model.
    let _ = uart.enable(line, 115_200, 24_000_000);
    *UART.lock() = Some(uart);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut guard = UART.lock();
        if let Some(uart) = guard.as_mut() {
            // The prefix and the end as they are, the message's own
            // pieces once: no nested `Arguments`, no padding code.
            let prefix = match record.level() {
                log::Level::Error => "spmc: ERROR ",
                log::Level::Warn => "spmc: WARN  ",
                log::Level::Info => "spmc: INFO  ",
                log::Level::Debug => "spmc: DEBUG ",
                log::Level::Trace => "spmc: TRACE ",
            };
            let _ = uart.write_str(prefix);
            let _ = uart.write_fmt(*record.args());
            let _ = uart.write_str("\r\n");
        }
    }

    fn flush(&self) {}
}

/// Writes one line even if another core holds the console (used on fatal paths).
pub fn emergency_line(args: fmt::Arguments<'_>) {
    // A core that died holding the lock must not silence the report: take the
    // lock if it is free, else write over whatever is in flight.
    if let Some(mut guard) = UART.try_lock() {
        if let Some(uart) = guard.as_mut() {
            let _ = writeln!(uart, "spmc: FATAL {args}\r");
        }
        return;
    }
    // SAFETY: we are on a fatal path and will halt; the other core's writer
    // may interleave characters, which is acceptable for a last report.
    unsafe { UART.force_unlock() };
    if let Some(mut guard) = UART.try_lock()
        && let Some(uart) = guard.as_mut()
    {
        let _ = writeln!(uart, "spmc: FATAL {args}\r");
    }
}

/// Writes one line without the `spmc:` prefix: the `PASS <name>` /
/// `FAIL <name>: <why>` result lines of an image that checks its own board
/// (platform-rpi4), which the xtask counts.
pub fn line(args: fmt::Arguments<'_>) {
    if let Some(uart) = UART.lock().as_mut() {
        let _ = writeln!(uart, "{args}\r");
    }
}
