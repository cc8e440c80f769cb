//! Virtual-media discovery on real images: ISOs made with `xorriso -as mkisofs` the way
//! Ironic builds them, and a VFAT floppy made with `mkfs.vfat -n ir-vfd-dev` + `mcopy`,
//! behind a fixture sysfs tree whose "device nodes" are the image files. Mounting is done
//! by [`ExtractMounter`], which unpacks the image with xorriso or mtools (the kernel running
//! the tests may have neither iso9660 nor vfat). Needs xorriso, dosfstools and mtools.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::*;

const PUB_ID: &str = "6a5e6d4e-3a09-4a5a-9d0c-2f3b7f1d7c11";

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("running {program}: {e} (Debian: apt-get install xorriso dosfstools mtools)")
        });
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// An ISO laid out like Ironic's (spec §9.2), with `mkisofs -r -V <label> -l -publisher`.
fn make_iso(dir: &Path, name: &str, label: &str, publisher: &str) -> PathBuf {
    let root = dir.join(format!("{name}-root"));
    write(
        &root.join("openstack/latest/network_data.json"),
        r#"{"links": [{"id": "p", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"}],
            "networks": [], "services": []}"#,
    );
    write(&root.join("etc/ironic-python-agent/ironic.crt"), "CERT\n");
    write(
        &root.join("etc/ironic-python-agent.d/ironic-tls.conf"),
        "[DEFAULT]\ncafile = /etc/ironic-python-agent/ironic.crt\n",
    );
    write(&root.join("vmlinuz"), "kernel");
    let iso = dir.join(format!("{name}.iso"));
    let (iso_s, root_s) = (iso.to_string_lossy(), root.to_string_lossy());
    let mut args = vec!["-as", "mkisofs", "-o", &iso_s, "-r", "-V", label, "-l"];
    if !publisher.is_empty() {
        args.extend(["-publisher", publisher]);
    }
    args.push(&root_s);
    run("xorriso", &args);
    iso
}

/// Ironic's parameters floppy: 1440 KiB VFAT labelled ir-vfd-dev with parameters.txt.
fn make_floppy(dir: &Path, label: &str) -> PathBuf {
    let image = dir.join("floppy.img");
    let params = dir.join("parameters.txt");
    std::fs::write(&params, "ipa-debug=1 ipa-api-url=http://192.0.2.1:6385\n").unwrap();
    let image_s = image.to_string_lossy().into_owned();
    run("mkfs.vfat", &["-C", "-n", label, &image_s, "1440"]);
    run(
        "mcopy",
        &[
            "-i",
            &image_s,
            &params.to_string_lossy(),
            "::/parameters.txt",
        ],
    );
    image
}

/// A fixture `/sys/class/block` and `/dev`; each device is (name, image, size file, extras).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn devices(&self) -> SysfsBlockDevices {
        SysfsBlockDevices {
            class_block: self.dir.path().join("sys/class/block"),
            dev: self.dir.path().join("dev"),
        }
    }

    /// Adds a device whose node is `image` (a copy), with sysfs `files`.
    fn add(&self, name: &str, image: Option<&Path>, files: &[(&str, &str)]) {
        let sys = self.dir.path().join("sys/class/block").join(name);
        std::fs::create_dir_all(&sys).unwrap();
        for (file, text) in files {
            write(&sys.join(file), text);
        }
        std::fs::create_dir_all(self.dir.path().join("dev")).unwrap();
        if let Some(image) = image {
            std::fs::copy(image, self.dir.path().join("dev").join(name)).unwrap();
        }
    }

    fn options(&self, ir_pub_id: Option<&str>, vmedia: bool) -> VmediaOptions {
        VmediaOptions {
            ir_pub_id: ir_pub_id.map(str::to_string),
            vmedia,
            wait: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            iso_mount: self.dir.path().join("mnt/config"),
            floppy_mount: self.dir.path().join("mnt/ir-vfd-dev"),
            etc: PathBuf::from("/etc"),
        }
    }
}

/// "Mounts" by unpacking the image into the target; records what it did.
#[derive(Default)]
struct ExtractMounter {
    calls: Mutex<Vec<String>>,
}

impl Mounter for ExtractMounter {
    fn mount_readonly(&self, device: &Path, target: &Path, fstype: &str) -> Result<(), String> {
        std::fs::create_dir_all(target).map_err(|e| e.to_string())?;
        let (device_s, target_s) = (device.to_string_lossy(), target.to_string_lossy());
        match fstype {
            "iso9660" => run(
                "xorriso",
                &[
                    "-osirrox", "on", "-indev", &device_s, "-extract", "/", &target_s,
                ],
            ),
            "vfat" => run("mcopy", &["-s", "-i", &device_s, "::/*", &target_s]),
            other => return Err(format!("ExtractMounter cannot mount {other}")),
        }
        let name = device.file_name().unwrap().to_string_lossy();
        self.calls
            .lock()
            .unwrap()
            .push(format!("mount {name} {fstype}"));
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), String> {
        std::fs::remove_dir_all(target).map_err(|e| e.to_string())?;
        let name = target.file_name().unwrap().to_string_lossy();
        self.calls.lock().unwrap().push(format!("unmount {name}"));
        Ok(())
    }
}

const ISO_SIZE: &str = "2048\n";

#[test]
fn vmedia_reads_label_and_publisher_from_a_real_iso() {
    let dir = tempfile::tempdir().unwrap();
    let iso = make_iso(dir.path(), "cfg", "config-2", PUB_ID);
    let bytes = std::fs::read(&iso).unwrap();
    let start = labels::PVD_OFFSET as usize;
    let identity = labels::parse_pvd(&bytes[start..start + labels::PVD_LEN]).unwrap();
    assert_eq!(identity.label, "config-2");
    // mkisofs stores the publisher in ISO 9660 "a-characters": upper case. Matching
    // ir_pub_id is case-insensitive for that reason.
    assert_eq!(identity.publisher, PUB_ID.to_uppercase());
    // Not a PVD: the system area before it, or a short read.
    assert_eq!(labels::parse_pvd(&bytes[..labels::PVD_LEN]), None);
    assert_eq!(labels::parse_pvd(&bytes[start..start + 100]), None);
    assert_eq!(labels::parse_fat_label(&bytes[..512]), None);
}

#[test]
fn vmedia_reads_the_label_of_a_real_vfat_floppy() {
    let dir = tempfile::tempdir().unwrap();
    let image = make_floppy(dir.path(), "ir-vfd-dev");
    let bytes = std::fs::read(&image).unwrap();
    let label = labels::parse_fat_label(&bytes[..512]).unwrap();
    assert!(label.eq_ignore_ascii_case("ir-vfd-dev"), "{label:?}");
    assert_eq!(labels::parse_pvd(&bytes[32768..34816]), None);
    let mut unlabelled = bytes[..512].to_vec();
    unlabelled[43..54].copy_from_slice(b"NO NAME    ");
    assert_eq!(labels::parse_fat_label(&unlabelled), None);
}

#[test]
fn vmedia_candidates_are_roms_floppies_and_small_removable_disks() {
    let fixture = Fixture::new();
    fixture.add("sr0", None, &[("size", "0")]);
    fixture.add("fd0", None, &[("size", "2880")]);
    fixture.add("sda", None, &[("size", "2097152"), ("removable", "1")]);
    fixture.add("sda1", None, &[("size", "2000"), ("partition", "1")]);
    fixture.add("sdb", None, &[("size", "2097152"), ("removable", "0")]);
    fixture.add("sdc", None, &[("size", "16777216"), ("removable", "1")]);
    fixture.add(
        "vdb",
        None,
        &[("size", "4096"), ("device/model", "Virtual Media")],
    );
    fixture.add("loop0", None, &[("size", "4096")]);
    let names: Vec<String> = fixture
        .devices()
        .candidates()
        .into_iter()
        .map(|c| format!("{}:{}", c.name, c.model.unwrap_or_default()))
        .collect();
    assert_eq!(names, ["fd0:", "sda:", "sr0:", "vdb:Virtual Media"]);
}

#[tokio::test]
async fn vmedia_finds_the_published_iso_copies_config_and_reads_parameters() {
    let images = tempfile::tempdir().unwrap();
    let boot = make_iso(images.path(), "boot", "RIVET", "");
    let other = make_iso(images.path(), "other", "config-2", "another-node");
    let ours = make_iso(images.path(), "ours", "config-2", PUB_ID);
    let floppy = make_floppy(images.path(), "ir-vfd-dev");
    let fixture = Fixture::new();
    fixture.add("sr0", Some(&boot), &[("size", ISO_SIZE)]);
    fixture.add("sr1", Some(&other), &[("size", ISO_SIZE)]);
    fixture.add("sr2", Some(&ours), &[("size", ISO_SIZE)]);
    fixture.add(
        "sdb",
        Some(&floppy),
        &[("size", "2880"), ("removable", "1")],
    );
    let mounter = ExtractMounter::default();
    let options = fixture.options(Some(PUB_ID), true);
    let config = discover(&fixture.devices(), &mounter, &options)
        .await
        .expect("a boot config");
    assert!(config.problems.is_empty(), "{:?}", config.problems);
    assert!(config.source.ends_with("/dev/sr2"), "{}", config.source);
    let data = config.network_data.expect("network_data");
    assert_eq!(data.links()[0].mac(), Some("52:54:00:12:34:56"));
    let files: Vec<(String, String)> = config
        .files
        .iter()
        .map(|(p, c)| {
            (
                p.display().to_string(),
                String::from_utf8_lossy(c).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            (
                "/etc/ironic-python-agent/ironic.crt".into(),
                "CERT\n".into()
            ),
            (
                "/etc/ironic-python-agent.d/ironic-tls.conf".into(),
                "[DEFAULT]\ncafile = /etc/ironic-python-agent/ironic.crt\n".into()
            ),
        ]
    );
    assert_eq!(config.settings_texts.len(), 1);
    assert_eq!(
        config.settings_texts[0].text,
        "ipa-debug=1 ipa-api-url=http://192.0.2.1:6385\n"
    );
    assert_eq!(
        *mounter.calls.lock().unwrap(),
        [
            "mount sr2 iso9660",
            "unmount config",
            "mount sdb vfat",
            "unmount ir-vfd-dev"
        ]
    );
    assert!(!options.iso_mount.exists(), "unmounted");
}

#[tokio::test]
async fn vmedia_without_boot_method_reads_only_network_data() {
    let images = tempfile::tempdir().unwrap();
    let ours = make_iso(images.path(), "ours", "CONFIG-2", &PUB_ID.to_uppercase());
    let fixture = Fixture::new();
    fixture.add("sr0", Some(&ours), &[("size", ISO_SIZE)]);
    let mounter = ExtractMounter::default();
    let config = discover(
        &fixture.devices(),
        &mounter,
        &fixture.options(Some(PUB_ID), false),
    )
    .await
    .expect("a boot config");
    assert!(config.network_data.is_some(), "{:?}", config.problems);
    assert!(config.files.is_empty() && config.settings_texts.is_empty());
}

#[tokio::test]
async fn vmedia_boot_method_alone_copies_config_from_any_config_iso() {
    let images = tempfile::tempdir().unwrap();
    let iso = make_iso(images.path(), "vm", "VMEDIA_BOOT_ISO", "");
    let fixture = Fixture::new();
    fixture.add("sr0", Some(&iso), &[("size", ISO_SIZE)]);
    let mounter = ExtractMounter::default();
    let config = discover(&fixture.devices(), &mounter, &fixture.options(None, true))
        .await
        .expect("a boot config");
    assert_eq!(config.files.len(), 2, "{:?}", config.problems);
    assert!(
        config.network_data.is_none(),
        "no ir_pub_id: not ours to trust"
    );
    assert!(config.settings_texts.is_empty(), "no floppy");
}

#[tokio::test(start_paused = true)]
async fn vmedia_waits_30_s_for_the_published_iso_then_reports() {
    let images = tempfile::tempdir().unwrap();
    let other = make_iso(images.path(), "other", "config-2", "another-node");
    let fixture = Fixture::new();
    fixture.add("sr0", Some(&other), &[("size", ISO_SIZE)]);
    let mounter = ExtractMounter::default();
    let started = tokio::time::Instant::now();
    let config = discover(
        &fixture.devices(),
        &mounter,
        &fixture.options(Some(PUB_ID), false),
    )
    .await
    .expect("a boot config");
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(
        config.problems,
        [format!(
            "no ISO labelled config-2 with publisher {PUB_ID} appeared within 30 s; no \
             network_data.json"
        )]
    );
    assert!(mounter.calls.lock().unwrap().is_empty());
    assert_eq!(
        discover(&fixture.devices(), &mounter, &fixture.options(None, false)).await,
        None
    );
}
