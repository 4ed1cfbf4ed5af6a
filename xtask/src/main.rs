//! `cargo xtask`: set up the machine, build the firmware, run it in QEMU, test it.
//!
//! Every command first makes sure what it needs is installed (and says what
//! it installs); nothing present is reinstalled.

mod bench;
mod build;
mod cli;
mod cpio;
mod deps;
mod fuzz;
mod hostile;
mod kmod;
mod linux;
mod map;
mod optee;
mod qemu;
mod rpi4;
mod sbsa;
mod setup;
mod sh;
mod test;
mod vtee;

use std::process::ExitCode;

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("xtask: {msg}\n");
            eprintln!("{}", cli::help());
            return ExitCode::from(2);
        }
    };
    sh::init(opts.verbose);
    let result = match opts.command {
        cli::Command::Help => {
            println!("{}", cli::help());
            Ok(())
        }
        cli::Command::Setup => setup::ensure(&opts).and_then(|_| {
            fuzz::ensure_tools(&opts)?;
            optee::ensure_packages(&opts)?;
            if opts.linux {
                linux::ensure(&opts)?;
            }
            Ok(())
        }),
        cli::Command::Build => {
            setup::ensure(&opts).and_then(|env| build::all(&env, &opts).map(|_| ()))
        }
        cli::Command::Run => {
            setup::ensure(&opts).and_then(|env| qemu::run_interactive(&env, &opts))
        }
        cli::Command::Test => test::run(&opts),
        cli::Command::Bench => bench::run(&opts),
        cli::Command::Map => map::run(),
        cli::Command::Fuzz => fuzz::run(&opts, opts.fuzz_secs, opts.fuzz_target.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
