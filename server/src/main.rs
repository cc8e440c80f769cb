//! `rivet-server`: see `rivet_server::cli` for the commands.

/// mimalloc instead of glibc's malloc: with thousands of connections glibc's bin management
/// (`_int_malloc`, `malloc_consolidate`) took over a quarter of a heartbeat benchmark's CPU
/// (docs/server.md, "Load generator and benchmark").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rivet_server::cli::main()
}
