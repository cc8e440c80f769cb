//! `rivet-server`: see `rivet_server::cli` for the commands.

fn main() -> std::process::ExitCode {
    rivet_server::cli::main()
}
