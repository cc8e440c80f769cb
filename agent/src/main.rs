//! `rivet-agent`: a thin dispatcher over the library (see `app`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    rivet_agent::app::main(rivet_agent::cli::Cli::parse())
}
