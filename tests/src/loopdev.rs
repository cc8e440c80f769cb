//! Loop devices and the host tools that put real signatures on them (mkfs.*, pvcreate,
//! sgdisk) or look for them (wipefs, blkid, mdadm --examine). A loop device is detached when
//! its [`LoopDevice`] drops, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

/// Fails unless `tool` is on PATH, naming the Debian package that has it (ci/setup installs
/// them all).
pub fn require_tool(tool: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|dir| Path::new(dir).join(tool).is_file());
    ensure!(
        found,
        "this test needs `{tool}` (Debian package {package}; ci/setup installs it); it is missing"
    );
    Ok(())
}

/// Fails unless the test runs as root (loop devices need it).
pub fn require_root() -> Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "this test attaches loop devices and must run as root"
    );
    Ok(())
}

/// Runs `program args`, returning stdout; a non-zero exit is an error carrying stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .with_context(|| format!("running {program} {args:?}"))?;
    if !output.status.success() {
        bail!(
            "{program} {args:?} failed with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What `wipefs` (without options: list only) finds on `path`, one line per signature.
pub fn wipefs_signatures(path: &Path) -> Result<Vec<String>> {
    let out = run("wipefs", &["--noheadings", &path.to_string_lossy()])?;
    Ok(out
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect())
}

/// What `blkid -p` (low-level probe, no cache) finds on `path`: `KEY=value` lines; empty
/// when blkid says it found nothing (exit status 2).
pub fn blkid_probe(path: &Path) -> Result<Vec<String>> {
    let output = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(path)
        .output()
        .with_context(|| format!("running blkid -p {}", path.display()))?;
    match output.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.starts_with("DEVNAME="))
            .map(str::to_owned)
            .collect()),
        Some(2) => Ok(Vec::new()),
        _ => bail!(
            "blkid -p {} failed with {}: {}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// A sparse file of `size` bytes, filled with `byte` when it is not zero.
pub fn make_file(path: &Path, size: u64, byte: u8) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    if byte == 0 {
        file.set_len(size)
            .with_context(|| format!("sizing {}", path.display()))?;
    } else {
        use std::io::Write;
        let mut writer = std::io::BufWriter::new(file);
        let chunk = vec![byte; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            writer
                .write_all(&chunk[..n])
                .with_context(|| format!("filling {}", path.display()))?;
            left -= n as u64;
        }
        writer
            .flush()
            .with_context(|| format!("flushing {}", path.display()))?;
    }
    Ok(())
}

/// A loop device attached to a file; detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    pub path: PathBuf,
}

impl LoopDevice {
    /// `losetup -f --show [-P] <file>`: the first free loop device (with partition scanning
    /// when `partitions`).
    pub fn attach(file: &Path, partitions: bool) -> Result<LoopDevice> {
        let file = file.to_string_lossy();
        let mut args = vec!["-f", "--show"];
        if partitions {
            args.push("-P");
        }
        args.push(&file);
        let out = run("losetup", &args)?;
        let name = out.trim();
        ensure!(
            name.starts_with("/dev/loop") && !name.contains(char::is_whitespace),
            "losetup answered {out:?}, not a loop device"
        );
        Ok(LoopDevice {
            path: PathBuf::from(name),
        })
    }

    /// `loopN`.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The kernel names of its partitions (`loopNp1`, ...), from sysfs.
    pub fn partitions(&self) -> Result<Vec<String>> {
        let name = self.name();
        let dir = Path::new("/sys/block").join(&name);
        let mut parts: Vec<String> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{name}p")))
            .collect();
        parts.sort();
        Ok(parts)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Err(e) = run("losetup", &["-d", &self.path.to_string_lossy()]) {
            eprintln!("detaching {}: {e:#}", self.path.display());
        }
    }
}

/// A Linux MD superblock of `version` ("0.90", "1.0", "1.1" or "1.2") for a RAID1 member of
/// `size` bytes, laid out as <linux/raid/md_p.h> and mdadm's super0.c/super1.c (checksums
/// included), with the byte offset it belongs at. For kernels without the md driver, where
/// `mdadm --create` cannot run; `mdadm --examine` accepts these as valid superblocks.
pub fn md_superblock(version: &str, size: u64) -> Result<(u64, Vec<u8>)> {
    ensure!(
        size >= 1 << 20,
        "an md superblock needs a device of at least 1 MiB, not {size} bytes"
    );
    let sectors = size / 512;
    let uuid: [u8; 16] = [
        0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1,
        0xf0,
    ];
    if version == "0.90" {
        let offset = (size & !0xFFFF) - 0x10000;
        let mut w = [0u32; 1024];
        w[0] = 0xa92b_4efc;
        w[2] = 90;
        w[5] = u32::from_be_bytes([uuid[0], uuid[1], uuid[2], uuid[3]]);
        w[6] = 1_700_000_000;
        w[7] = 1;
        w[8] = (offset / 1024) as u32;
        w[9] = 1;
        w[10] = 2;
        for (i, word) in [13, 14, 15].into_iter().enumerate() {
            let b = &uuid[4 + 4 * i..8 + 4 * i];
            w[word] = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        }
        w[32] = 1_700_000_001;
        w[33] = 1;
        w[34] = 1;
        w[35] = 1;
        w[36] = 1;
        w[39] = 1;
        // disks[0] and this_disk: number, major, minor, raid_disk, state (active | sync).
        w[128..133].copy_from_slice(&[0, 7, 0, 0, 6]);
        w[992..997].copy_from_slice(&[0, 7, 0, 0, 6]);
        let sum: u64 = w.iter().map(|&x| u64::from(x)).sum();
        w[38] = ((sum & 0xFFFF_FFFF) + (sum >> 32)) as u32;
        let bytes = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        return Ok((offset, bytes));
    }
    let (super_offset, data_offset) = match version {
        "1.0" => ((sectors - 16) & !7, 0),
        "1.1" => (0, 2048),
        "1.2" => (8, 2048),
        other => bail!("unknown md superblock version {other}"),
    };
    let data_size = if version == "1.0" {
        super_offset
    } else {
        sectors - data_offset
    };
    let max_dev = 2u32;
    let mut sb = vec![0u8; 256 + 2 * max_dev as usize];
    let put32 =
        |sb: &mut Vec<u8>, at: usize, v: u32| sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |sb: &mut Vec<u8>, at: usize, v: u64| sb[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut sb, 0, 0xa92b_4efc);
    put32(&mut sb, 4, 1);
    sb[16..32].copy_from_slice(&uuid);
    sb[32..43].copy_from_slice(b"rivet:test0");
    put64(&mut sb, 64, 1_700_000_000);
    put32(&mut sb, 72, 1);
    put64(&mut sb, 80, data_size);
    put32(&mut sb, 92, 2);
    put64(&mut sb, 128, data_offset);
    put64(&mut sb, 136, data_size);
    put64(&mut sb, 144, super_offset);
    sb[168..184].copy_from_slice(&[0x11; 16]);
    put64(&mut sb, 192, 1_700_000_001);
    put64(&mut sb, 200, 1);
    put64(&mut sb, 208, u64::MAX);
    put32(&mut sb, 220, max_dev);
    sb[256..260].copy_from_slice(&[0x00, 0x00, 0xFF, 0xFF]);
    let sum: u64 = sb
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .sum();
    put32(&mut sb, 216, ((sum & 0xFFFF_FFFF) + (sum >> 32)) as u32);
    Ok((super_offset * 512, sb))
}

/// Writes `bytes` at `offset` of the file or device at `path`.
pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all_at(bytes, offset).with_context(|| {
        format!(
            "writing {} bytes at {offset} of {}",
            bytes.len(),
            path.display()
        )
    })?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}
