//! The agent that goes into the ramdisk links no C library: the release binary for
//! x86_64-unknown-linux-musl is a static executable with no program interpreter and no
//! shared-library dependencies. `ci/test` builds it before the tests.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use rivet_tests::{or_panic, workspace_root};

const PT_INTERP: u32 = 3;
const PT_DYNAMIC: u32 = 2;

fn static_agent() -> Result<PathBuf> {
    let path = workspace_root().join("target/x86_64-unknown-linux-musl/release/rivet-agent");
    ensure!(
        path.is_file(),
        "{} is missing: build it with `cargo build --release --target \
         x86_64-unknown-linux-musl -p rivet-agent` (ci/test does)",
        path.display()
    );
    Ok(path)
}

/// Program header types of a 64-bit little-endian ELF file.
fn program_header_types(elf: &[u8]) -> Result<Vec<u32>> {
    ensure!(
        elf.len() >= 64 && &elf[..4] == b"\x7fELF",
        "not an ELF file"
    );
    ensure!(
        elf[4] == 2 && elf[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum)
        .map(|i| {
            let at = phoff + i * phentsize;
            let bytes = elf
                .get(at..at + 4)
                .context("program header beyond the file")?;
            Ok(u32::from_le_bytes(bytes.try_into()?))
        })
        .collect()
}

#[test]
fn release_agent_is_statically_linked() {
    let path = or_panic(static_agent());
    let output = or_panic(
        Command::new("file")
            .arg(&path)
            .output()
            .context("running `file` (Debian package file)"),
    );
    let described = String::from_utf8_lossy(&output.stdout);
    assert!(
        described.contains("statically linked"),
        "`file` does not call the agent statically linked: {described}"
    );
    let elf = or_panic(std::fs::read(&path).with_context(|| format!("reading {}", path.display())));
    let types = or_panic(program_header_types(&elf));
    assert!(
        !types.contains(&PT_INTERP),
        "the agent asks for a program interpreter (dynamic loader)"
    );
    assert!(
        !types.contains(&PT_DYNAMIC),
        "the agent has a dynamic section: it could load shared libraries"
    );
}

#[test]
fn elf_reader_sees_the_interpreter_of_a_dynamic_binary() {
    // The check above must be able to fail: a dynamically linked system binary has PT_INTERP.
    let elf = or_panic(std::fs::read("/bin/sh").context("reading /bin/sh"));
    let types = or_panic(program_header_types(&elf));
    assert!(
        types.contains(&PT_INTERP),
        "/bin/sh shows no PT_INTERP: {types:?}"
    );
}
