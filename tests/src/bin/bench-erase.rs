//! Erase benchmark (ci/bench/erase), one run, on loop devices this program attaches over
//! files in a temporary directory (never the machine's own disks):
//!
//! 1. Overwrite throughput: rivet's `erase_devices` (one random pass, as
//!    `agent_erase_devices_iterations=1`, secure erase off) against
//!    `dd if=/dev/zero oflag=direct` with the same 4 MiB block size to the same loop device
//!    (`--direct-io=on`, so the page cache is not measured), after one untimed pass,
//!    interleaved in alternating order, `--rounds` times.
//! 2. Concurrency: `--devices` loop devices, each throttled to `--throttle-mbps` MB/s of
//!    writes (the blkio cgroup's `throttle.write_bps_device`, so each behaves like a disk of
//!    its own rather than all sharing this machine's one), erased by one `erase_devices`
//!    step with `disk_erasure_concurrency` = the device count, against one of them alone.
//!    The speed-up is devices x alone / together; the device count is the ideal.
//!
//! Prints medians and ratios; asserts nothing. Needs root, losetup and dd.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rivet_tests::host_step::run_generic_step;
use rivet_tests::loopdev::{require_root, require_tool, run};
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;
/// The blkio cgroup file that throttles writes per device (cgroup v1, root group).
const THROTTLE: &str = "/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device";

struct Options {
    size_mib: u64,
    rounds: usize,
    devices: usize,
    device_mib: u64,
    throttle_mbps: u64,
}

fn options() -> Result<Options> {
    let mut o = Options {
        size_mib: 1024,
        rounds: 5,
        devices: 4,
        device_mib: 256,
        throttle_mbps: 50,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .with_context(|| format!("{flag} {value}"))
        };
        match flag.as_str() {
            "--size-mib" => o.size_mib = number()?,
            "--rounds" => o.rounds = number()? as usize,
            "--devices" => o.devices = number()? as usize,
            "--device-mib" => o.device_mib = number()?,
            "--throttle-mbps" => o.throttle_mbps = number()?,
            other => bail!(
                "unknown argument {other}; use --size-mib N --rounds N --devices N \
                 --device-mib N --throttle-mbps N"
            ),
        }
    }
    ensure!(
        o.rounds > 0 && o.devices > 1 && o.size_mib > 0 && o.device_mib > 0,
        "rounds, sizes must be positive and --devices at least 2"
    );
    Ok(o)
}

/// A loop device with direct I/O over a preallocated file; detached (and its throttle
/// removed) on drop.
struct Disk {
    path: PathBuf,
    dev: String,
    throttled: bool,
}

impl Disk {
    fn create(dir: &Path, name: &str, size: u64) -> Result<Disk> {
        let file = dir.join(name);
        run(
            "fallocate",
            &["-l", &size.to_string(), &file.to_string_lossy()],
        )?;
        let out = run(
            "losetup",
            &["-f", "--show", "--direct-io=on", &file.to_string_lossy()],
        )?;
        let path = PathBuf::from(out.trim());
        ensure!(
            path.starts_with("/dev") && path.to_string_lossy().contains("loop"),
            "losetup answered {out:?}"
        );
        let sys = format!(
            "/sys/block/{}/dev",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let dev = std::fs::read_to_string(&sys)
            .with_context(|| format!("reading {sys}"))?
            .trim()
            .to_string();
        Ok(Disk {
            path,
            dev,
            throttled: false,
        })
    }

    fn throttle(&mut self, bytes_per_second: u64) -> Result<()> {
        std::fs::write(THROTTLE, format!("{} {bytes_per_second}", self.dev))
            .with_context(|| format!("writing {THROTTLE} (blkio cgroup v1)"))?;
        self.throttled = true;
        Ok(())
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if self.throttled {
            let _ = std::fs::write(THROTTLE, format!("{} 0", self.dev));
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

fn erase(disks: &[&Path]) -> Result<Duration> {
    let info = json!({
        "agent_erase_devices_iterations": 1,
        "agent_erase_devices_zeroize": false,
        "agent_enable_ata_secure_erase": false,
        "agent_enable_nvme_secure_erase": false,
        "disk_erasure_concurrency": disks.len(),
    });
    let started = Instant::now();
    let result: Value = run_generic_step("erase_devices", disks, info)?;
    let took = started.elapsed();
    for disk in disks {
        let report = &result[disk.display().to_string()];
        ensure!(
            report["method"]
                .as_str()
                .is_some_and(|m| m.starts_with("overwrite")),
            "{} was not overwritten: {report}",
            disk.display()
        );
    }
    Ok(took)
}

fn dd(disk: &Path, size: u64) -> Result<Duration> {
    let started = Instant::now();
    run(
        "dd",
        &[
            "if=/dev/zero",
            &format!("of={}", disk.display()),
            "bs=4M",
            &format!("count={}", size / (4 * MIB)),
            "oflag=direct",
            "status=none",
        ],
    )?;
    Ok(started.elapsed())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9)
}

fn main() -> Result<()> {
    let o = options()?;
    require_root()?;
    require_tool("losetup", "mount")?;
    require_tool("fallocate", "util-linux")?;
    require_tool("dd", "coreutils")?;
    let dir = tempfile::Builder::new()
        .prefix("rivet-bench-erase-")
        .tempdir_in("/var/tmp")
        .context("creating a directory in /var/tmp")?;

    let size = o.size_mib * MIB;
    let disk = Disk::create(dir.path(), "single.img", size)?;
    // One untimed pass first: the first writes into a preallocated file convert its
    // extents, which would penalise whichever writer came first.
    dd(&disk.path, size)?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        if round % 2 == 0 {
            theirs.push(dd(&disk.path, size)?);
            ours.push(erase(&[&disk.path])?);
        } else {
            ours.push(erase(&[&disk.path])?);
            theirs.push(dd(&disk.path, size)?);
        }
    }
    drop(disk);
    let (ours, theirs) = (median(ours), median(theirs));
    println!(
        "overwrite, {} MiB loop device (direct I/O), median of {} rounds:",
        o.size_mib, o.rounds
    );
    println!(
        "  dd if=/dev/zero bs=4M oflag=direct   {:>7.2} s  {:>7.1} MB/s",
        theirs.as_secs_f64(),
        mb_per_s(size, theirs)
    );
    println!(
        "  rivet erase_devices (1 random pass)  {:>7.2} s  {:>7.1} MB/s",
        ours.as_secs_f64(),
        mb_per_s(size, ours)
    );
    println!(
        "  ratio rivet / dd throughput: {:.2}",
        theirs.as_secs_f64() / ours.as_secs_f64().max(1e-9)
    );

    let device_size = o.device_mib * MIB;
    let mut disks = Vec::new();
    for index in 0..o.devices {
        let mut disk = Disk::create(dir.path(), &format!("par{index}.img"), device_size)?;
        disk.throttle(o.throttle_mbps * 1_000_000)?;
        disks.push(disk);
    }
    let alone = erase(&[&disks[0].path])?;
    let all: Vec<&Path> = disks.iter().map(|d| d.path.as_path()).collect();
    let together = erase(&all)?;
    drop(disks);
    let speedup = o.devices as f64 * alone.as_secs_f64() / together.as_secs_f64().max(1e-9);
    println!(
        "\nconcurrency, {} loop devices of {} MiB, each throttled to {} MB/s:",
        o.devices, o.device_mib, o.throttle_mbps
    );
    println!(
        "  one device alone                     {:>7.2} s",
        alone.as_secs_f64()
    );
    println!(
        "  all {} in one erase_devices step      {:>7.2} s",
        o.devices,
        together.as_secs_f64()
    );
    println!("  speed-up {speedup:.2}x of an ideal {}x", o.devices);
    Ok(())
}
