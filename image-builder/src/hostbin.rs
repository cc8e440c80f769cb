//! Host programs bundled into the initramfs for the agent to run: e2fsprogs' `mke2fs`
//! (ext2/ext3/ext4 ephemeral partitions), with its shared-library closure ([`elfdeps`]),
//! the dynamic loader at the path the program names, and `/etc/mke2fs.conf`. The agent
//! itself stays static; these files are only mapped when it runs the tool.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use rivet_protocol::ramdisk::MKE2FS_PATH;

use crate::elfdeps;
use crate::hosttools::{req, Requirement};

/// The host's mke2fs and its configuration.
pub const MKE2FS_HOST: &str = "/usr/sbin/mke2fs";
pub const MKE2FS_CONF: &str = "/etc/mke2fs.conf";
/// Where the bundled libraries go in the ramdisk (a directory the loader searches).
pub const LIB_DIR: &str = "lib/x86_64-linux-gnu";

/// Needed unless `--no-mke2fs`.
pub const FOR_MKE2FS: &[Requirement] = &[
    req(
        MKE2FS_HOST,
        "e2fsprogs",
        "bundled for ext ephemeral partitions (--no-mke2fs leaves it out)",
    ),
    req(
        MKE2FS_CONF,
        "e2fsprogs",
        "mke2fs's defaults, bundled with it",
    ),
];

/// One host file and where it goes in the ramdisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundled {
    /// The path in the ramdisk, relative (`usr/sbin/mke2fs`).
    pub dest: String,
    /// The host file (symbolic links are followed: the ramdisk gets the file's bytes).
    pub source: PathBuf,
    pub mode: u32,
}

fn relative(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

/// `program` as `/usr/sbin/mke2fs`, the loader at its `PT_INTERP` path, every library of
/// its closure (found in `system_dirs`) in [`LIB_DIR`], and `conf` as `/etc/mke2fs.conf`;
/// sorted by destination.
pub fn mke2fs(program: &Path, conf: &Path, system_dirs: &[PathBuf]) -> Result<Vec<Bundled>> {
    let closure = elfdeps::closure(program, system_dirs)
        .with_context(|| format!("bundling {}", program.display()))?;
    let mut files = vec![
        Bundled {
            dest: relative(MKE2FS_PATH),
            source: program.to_path_buf(),
            mode: 0o755,
        },
        Bundled {
            dest: relative(&closure.interpreter),
            source: PathBuf::from(&closure.interpreter),
            mode: 0o755,
        },
        Bundled {
            dest: relative(MKE2FS_CONF),
            source: conf.to_path_buf(),
            mode: 0o644,
        },
    ];
    files.extend(closure.libraries.iter().map(|(name, source)| Bundled {
        dest: format!("{LIB_DIR}/{name}"),
        source: source.clone(),
        mode: 0o644,
    }));
    files.sort_by(|a, b| a.dest.cmp(&b.dest));
    Ok(files)
}

/// [`mke2fs`] with the host's files and the system library directories.
pub fn host_mke2fs() -> Result<Vec<Bundled>> {
    let dirs: Vec<PathBuf> = elfdeps::SYSTEM_LIB_DIRS.iter().map(PathBuf::from).collect();
    mke2fs(Path::new(MKE2FS_HOST), Path::new(MKE2FS_CONF), &dirs)
}
