//! The erase steps end to end on fakes: plans, parallel execution, fallbacks, reports,
//! progress, abort and the step results Ironic gets.

use std::path::PathBuf;

/// A file of agent/tests/fixtures/<dir>.
fn fixture_in(dir: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub(crate) fn nvme_fixture(name: &str) -> Vec<u8> {
    fixture_in("nvme", name)
}

pub(crate) fn ata_fixture(name: &str) -> Vec<u8> {
    fixture_in("ata", name)
}
