//! The erase on this machine's loop devices and on plain files, checked with the host's own
//! tools: signatures made by mkfs.ext4, mkfs.xfs, mkfs.vfat, mkswap, pvcreate and sgdisk
//! (and MD superblocks, see [`md_superblock`]) must be seen by `wipefs` and `blkid -p`
//! before, and nothing after.
//!
//! Only loop devices these tests attach are written: the step API gets them through
//! `rivet-host-disks`, which is all `disks::writable_candidates` lets a normal process touch.
//! Needs root and the tools ci/setup installs; a missing one fails the test.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use rivet_agent::erase::io::DeviceFile;
use rivet_agent::erase::metadata::erase_metadata;
use rivet_tests::host_step::run_generic_step as run_step;
use rivet_tests::loopdev::{
    blkid_probe, make_file, md_superblock, require_root, require_tool, run, wipefs_signatures,
    write_at, LoopDevice,
};
use rivet_tests::or_panic;
use serde_json::json;

const MIB: u64 = 1024 * 1024;

/// The tools these tests use and their Debian packages.
const TOOLS: &[(&str, &str)] = &[
    ("losetup", "mount"),
    ("partx", "util-linux"),
    ("blockdev", "util-linux"),
    ("wipefs", "util-linux"),
    ("blkid", "util-linux"),
    ("mkswap", "util-linux"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.xfs", "xfsprogs"),
    ("mkfs.vfat", "dosfstools"),
    ("pvcreate", "lvm2"),
    ("mdadm", "mdadm"),
    ("sgdisk", "gdisk"),
];

fn prerequisites() -> Result<()> {
    require_root()?;
    for (tool, package) in TOOLS {
        require_tool(tool, package)?;
    }
    Ok(())
}

/// One way of putting a signature on a file or device.
#[derive(Debug, Clone, Copy)]
enum Maker {
    Ext4,
    Xfs,
    Vfat,
    Swap,
    Lvm,
    Gpt,
    Md(&'static str),
}

impl Maker {
    /// The smallest size it accepts (mkfs.xfs wants 300 MiB).
    fn size(self) -> u64 {
        match self {
            Maker::Xfs => 320 * MIB,
            _ => 64 * MIB,
        }
    }

    /// What wipefs/blkid call it.
    fn blkid_type(self) -> &'static str {
        match self {
            Maker::Ext4 => "TYPE=\"ext4\"",
            Maker::Xfs => "TYPE=\"xfs\"",
            Maker::Vfat => "TYPE=\"vfat\"",
            Maker::Swap => "TYPE=\"swap\"",
            Maker::Lvm => "TYPE=\"LVM2_member\"",
            Maker::Gpt => "PTTYPE=\"gpt\"",
            Maker::Md(_) => "TYPE=\"linux_raid_member\"",
        }
    }

    fn make(self, path: &Path) -> Result<()> {
        let p = path.to_string_lossy();
        match self {
            Maker::Ext4 => run("mkfs.ext4", &["-q", "-F", &p]).map(drop),
            Maker::Xfs => run("mkfs.xfs", &["-q", "-f", &p]).map(drop),
            Maker::Vfat => run("mkfs.vfat", &[&p]).map(drop),
            Maker::Swap => run("mkswap", &[&p]).map(drop),
            Maker::Lvm => run("pvcreate", &["--devicesfile", "", "-ff", "-y", &p]).map(drop),
            Maker::Gpt => run("sgdisk", &["-n", "1:2048:+8M", "-n", "2:0:+8M", &p]).map(drop),
            Maker::Md(version) => {
                let meta = std::fs::metadata(path)
                    .with_context(|| format!("reading the metadata of {}", path.display()))?;
                let size = if meta.is_file() {
                    meta.len()
                } else {
                    device_size(path)?
                };
                let (offset, sb) = md_superblock(version, size)?;
                write_at(path, offset, &sb)?;
                let examined = run("mdadm", &["--examine", &p])?;
                ensure!(
                    examined.contains("Checksum") && examined.contains("- correct"),
                    "mdadm --examine does not accept the md {version} superblock:\n{examined}"
                );
                Ok(())
            }
        }
    }
}

fn device_size(path: &Path) -> Result<u64> {
    let out = run("blockdev", &["--getsize64", &path.to_string_lossy()])?;
    out.trim()
        .parse()
        .with_context(|| format!("blockdev --getsize64 {} said {out:?}", path.display()))
}

/// Both tools see the signature.
fn assert_found(path: &Path, maker: Maker) -> Result<()> {
    let wipefs = wipefs_signatures(path)?;
    let blkid = blkid_probe(path)?;
    ensure!(
        !wipefs.is_empty(),
        "{maker:?}: wipefs finds nothing on {} before the erase",
        path.display()
    );
    let wanted = maker.blkid_type().replace('"', "");
    ensure!(
        blkid.iter().any(|l| l == &wanted),
        "{maker:?}: blkid -p does not report {wanted} on {} before the erase: {blkid:?}",
        path.display()
    );
    Ok(())
}

/// Neither tool sees anything.
fn assert_clean(path: &Path, what: &str) -> Result<()> {
    let wipefs = wipefs_signatures(path)?;
    let blkid = blkid_probe(path)?;
    ensure!(
        wipefs.is_empty() && blkid.is_empty(),
        "{what}: signatures left on {}: wipefs {wipefs:?}, blkid -p {blkid:?}",
        path.display()
    );
    Ok(())
}

const MAKERS: [Maker; 9] = [
    Maker::Ext4,
    Maker::Xfs,
    Maker::Vfat,
    Maker::Swap,
    Maker::Gpt,
    Maker::Md("0.90"),
    Maker::Md("1.0"),
    Maker::Md("1.1"),
    Maker::Md("1.2"),
];

#[test]
fn metadata_erase_clears_real_signatures_from_files() {
    or_panic(prerequisites());
    let dir = or_panic(tempfile::tempdir().context("temp dir"));
    for maker in MAKERS {
        let path = dir.path().join(format!("{maker:?}.img"));
        or_panic(make_file(&path, maker.size(), 0));
        or_panic(maker.make(&path));
        or_panic(assert_found(&path, maker));
        let mut file = or_panic(DeviceFile::open(&path, true).context("opening the image"));
        let outcome =
            or_panic(erase_metadata(&mut file, &mut |_, _| Ok(())).context("erasing the metadata"));
        assert!(
            outcome.clean(),
            "{maker:?}: rivet still finds {:?}",
            outcome.found_after
        );
        assert!(
            !outcome.found_before.is_empty(),
            "{maker:?}: rivet's own probe found nothing before the erase"
        );
        drop(file);
        or_panic(assert_clean(&path, &format!("{maker:?}")));
        std::fs::remove_file(&path).ok();
    }
}

/// A loop device over a new file of `size` bytes in `dir`.
fn loop_over(
    dir: &Path,
    name: &str,
    size: u64,
    fill: u8,
    partitions: bool,
) -> Result<(PathBuf, LoopDevice)> {
    let file = dir.join(name);
    make_file(&file, size, fill)?;
    let device = LoopDevice::attach(&file, partitions)?;
    Ok((file, device))
}

#[test]
fn erase_devices_metadata_through_the_step_api_on_loop_devices() {
    or_panic(prerequisites());
    let dir = or_panic(tempfile::tempdir().context("temp dir"));
    // A partitioned disk with ext4 and vfat in its partitions, an LVM PV, an xfs device, and
    // one more device with ext4 that is not listed and must keep it.
    let (_, disk) = or_panic(loop_over(dir.path(), "gpt.img", 64 * MIB, 0, true));
    or_panic(Maker::Gpt.make(&disk.path));
    // partx adds the partitions itself (BLKPG): kernels built without partition table
    // parsers (this project's development VMs) would not find them on a reread.
    or_panic(run("partx", &["-u", &disk.path.to_string_lossy()]));
    let parts = or_panic(disk.partitions());
    assert_eq!(parts.len(), 2, "sgdisk made two partitions: {parts:?}");
    let part_paths: Vec<PathBuf> = parts.iter().map(|p| Path::new("/dev").join(p)).collect();
    or_panic(Maker::Ext4.make(&part_paths[0]));
    or_panic(Maker::Vfat.make(&part_paths[1]));
    or_panic(assert_found(&part_paths[0], Maker::Ext4));
    or_panic(assert_found(&part_paths[1], Maker::Vfat));
    or_panic(assert_found(&disk.path, Maker::Gpt));
    let (_, pv) = or_panic(loop_over(dir.path(), "pv.img", 64 * MIB, 0, false));
    or_panic(Maker::Lvm.make(&pv.path));
    or_panic(assert_found(&pv.path, Maker::Lvm));
    let (_, xfs) = or_panic(loop_over(dir.path(), "xfs.img", 320 * MIB, 0, false));
    or_panic(Maker::Xfs.make(&xfs.path));
    let (_, md) = or_panic(loop_over(dir.path(), "md.img", 64 * MIB, 0, false));
    or_panic(Maker::Md("1.0").make(&md.path));
    or_panic(assert_found(&md.path, Maker::Md("1.0")));
    let (_, bystander) = or_panic(loop_over(dir.path(), "other.img", 64 * MIB, 0, false));
    or_panic(Maker::Ext4.make(&bystander.path));

    let listed = [
        disk.path.as_path(),
        pv.path.as_path(),
        xfs.path.as_path(),
        md.path.as_path(),
    ];
    let result = or_panic(run_step("erase_devices_metadata", &listed, json!({})));
    let map = result.as_object().expect("an object keyed by device");
    let mut expected: Vec<String> = listed.iter().map(|p| p.display().to_string()).collect();
    expected.extend(part_paths.iter().map(|p| p.display().to_string()));
    expected.sort();
    let mut keys: Vec<String> = map.keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys, expected,
        "the listed devices and the disk's partitions, nothing else"
    );
    for (device, report) in map {
        assert_eq!(report["outcome"], "erased", "{device}: {report}");
        assert_eq!(report["verification"]["passed"], true, "{device}: {report}");
    }
    for path in listed {
        or_panic(assert_clean(path, "after erase_devices_metadata"));
    }
    // The partition table is gone, and the kernel was told.
    assert_eq!(or_panic(disk.partitions()), Vec::<String>::new());
    or_panic(assert_found(&bystander.path, Maker::Ext4));
}

#[test]
fn erase_devices_overwrites_a_loop_device_with_zeroes() {
    or_panic(prerequisites());
    let dir = or_panic(tempfile::tempdir().context("temp dir"));
    let (file, device) = or_panic(loop_over(dir.path(), "pattern.img", 24 * MIB, 0x5A, false));
    let info = json!({"agent_erase_devices_iterations": 1, "agent_erase_devices_zeroize": true,
                      "disk_erasure_concurrency": 4});
    let result = or_panic(run_step("erase_devices", &[device.path.as_path()], info));
    let report = &result[device.path.display().to_string()];
    assert_eq!(
        report["method"], "overwrite (1 random pass + zeroes)",
        "{report}"
    );
    assert_eq!(report["verification"]["expect"], "zeroes", "{report}");
    assert_eq!(report["verification"]["passed"], true, "{report}");
    // SG_IO on a loop device answers ENOTTY: no ATA security erase was possible.
    assert!(
        report["attempts"].as_array().is_some_and(|a| a.len() == 1),
        "{report}"
    );
    drop(device);
    let data = or_panic(std::fs::read(&file).context("reading the backing file"));
    assert!(
        data.iter().all(|&b| b == 0),
        "the backing file is all zeroes"
    );
}

#[test]
fn express_erase_of_a_loop_device_is_a_metadata_erase() {
    or_panic(prerequisites());
    let dir = or_panic(tempfile::tempdir().context("temp dir"));
    let (_, device) = or_panic(loop_over(dir.path(), "express.img", 64 * MIB, 0, false));
    or_panic(Maker::Ext4.make(&device.path));
    let result = or_panic(run_step(
        "erase_devices_express",
        &[device.path.as_path()],
        json!({}),
    ));
    assert_eq!(
        result[device.path.display().to_string()]["method"],
        "metadata"
    );
    or_panic(assert_clean(&device.path, "after erase_devices_express"));
}

#[test]
fn nothing_is_erased_without_rivet_host_disks() {
    or_panic(prerequisites());
    let dir = or_panic(tempfile::tempdir().context("temp dir"));
    let (_, device) = or_panic(loop_over(dir.path(), "unlisted.img", 64 * MIB, 0, false));
    or_panic(Maker::Ext4.make(&device.path));
    for step in [
        "erase_devices_metadata",
        "erase_devices_express",
        "erase_devices",
    ] {
        let result = or_panic(run_step(step, &[], json!({})));
        assert_eq!(result, json!({}), "{step} found devices to erase");
    }
    or_panic(assert_found(&device.path, Maker::Ext4));
}

#[test]
fn discard_erase_of_a_loop_device_reads_back_as_zeroes() {
    use rivet_agent::erase::discard::discard_erase;
    use rivet_agent::erase::io::BlockIo;
    use rivet_agent::erase::verify::{new_nonce, Samples};

    or_panic(prerequisites());
    let dir = or_panic(tempfile::tempdir().context("temp dir"));
    let (file, device) = or_panic(loop_over(dir.path(), "discard.img", 16 * MIB, 0x5A, false));
    let mut io = or_panic(DeviceFile::open(&device.path, true).context("opening the loop device"));
    let samples = Samples::choose(io.size(), io.logical_block_size(), &mut rand::thread_rng());
    let outcome = or_panic(
        discard_erase(&mut io, &samples, new_nonce(), true, &mut |_, _| Ok(()))
            .context("discard erase"),
    );
    assert!(outcome.read_back.all_zero(), "{outcome:?}");
    assert!(
        !outcome.zeroed_out,
        "a loop device's discard punches holes that read as zeroes"
    );
    drop(io);
    drop(device);
    let data = or_panic(std::fs::read(&file).context("reading the backing file"));
    assert!(data.iter().all(|&b| b == 0));
}
