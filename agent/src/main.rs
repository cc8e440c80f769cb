//! `rivet-agent`: a thin dispatcher over the library (see `app`). As PID 1 of the ramdisk it
//! parses no arguments: the kernel passes init whatever words it did not understand.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    if std::process::id() == 1 {
        rivet_agent::app::init_main();
    }
    rivet_agent::app::main(rivet_agent::cli::Cli::parse())
}
