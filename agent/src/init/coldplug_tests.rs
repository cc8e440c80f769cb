//! Tests of module resolution and coldplug on the fixture index
//! (agent/tests/fixtures/modules/INDEX), with a fake loader, device tree and clock.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::init::modules::ModuleIndex;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/modules/6.1.0-rivet-fixture")
}

fn fixture_index() -> ModuleIndex {
    ModuleIndex::load(&fixture_dir()).expect("fixture index parses")
}

fn names(items: &[LoadItem]) -> Vec<&str> {
    items.iter().map(|i| i.name.as_str()).collect()
}

/// Records the modules loaded, in order; answers with scripted outcomes.
#[derive(Default)]
struct FakeLoader {
    loaded: RefCell<Vec<String>>,
    outcomes: HashMap<String, LoadOutcome>,
}

impl ModuleLoader for FakeLoader {
    fn load(&self, item: &LoadItem) -> LoadOutcome {
        self.loaded.borrow_mut().push(item.name.clone());
        self.outcomes
            .get(&item.name)
            .cloned()
            .unwrap_or(LoadOutcome::Loaded)
    }
}

/// A clock that only moves when slept on.
#[derive(Default)]
struct FakeClock {
    now: Cell<Duration>,
}

impl Clock for FakeClock {
    fn elapsed(&self) -> Duration {
        self.now.get()
    }
    fn sleep(&self, duration: Duration) {
        self.now.set(self.now.get() + duration);
    }
}

/// Devices that appear at given times on the fake clock.
struct FakeDevices<'a> {
    clock: &'a FakeClock,
    schedule: Vec<(Duration, &'static str)>,
}

impl DeviceTree for FakeDevices<'_> {
    fn modaliases(&self) -> std::io::Result<BTreeSet<String>> {
        let now = self.clock.elapsed();
        Ok(self
            .schedule
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, alias)| alias.to_string())
            .collect())
    }
}

#[test]
fn fixture_index_counts() {
    let index = fixture_index();
    assert_eq!(index.module_count(), 40);
    assert!(index.is_builtin("ext4"));
    assert!(!index.is_builtin("isofs"));
}

#[test]
fn nvme_loads_crc_chain_and_softdep_first() {
    let order = fixture_index().load_order("nvme");
    assert_eq!(
        names(&order),
        [
            "crc64",
            "crc64_rocksoft",
            "crct10dif_common",
            "crc_t10dif",
            "t10_pi",
            "crct10dif_generic",
            "nvme_core",
            "nvme"
        ]
    );
    assert_eq!(
        order[6].path,
        fixture_dir().join("kernel/drivers/nvme/host/nvme-core.ko")
    );
}

#[test]
fn dash_and_underscore_are_the_same_module() {
    let index = fixture_index();
    assert_eq!(
        names(&index.load_order("nvme-core")),
        names(&index.load_order("nvme_core"))
    );
    assert_eq!(index.resolve_name("crc-t10dif"), ["crc_t10dif"]);
}

#[test]
fn names_resolve_through_aliases() {
    let index = fixture_index();
    assert_eq!(index.resolve_name("iso9660"), ["isofs"]);
    assert_eq!(index.resolve_name("vfat"), ["vfat"]);
    assert_eq!(index.resolve_name("ext4"), ["ext4"]);
    assert_eq!(index.resolve_name("no-such-thing"), ["no_such_thing"]);
    assert!(
        index.load_order("ext4").is_empty(),
        "built-in needs no load"
    );
}

#[test]
fn modalias_matching_on_realistic_devices() {
    let index = fixture_index();
    // e1000 on QEMU's pc machine.
    assert_eq!(
        index.modules_for_alias("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"),
        ["e1000"]
    );
    // QEMU's NVMe controller: matched by class 01/08/02.
    assert_eq!(
        index.modules_for_alias("pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"),
        ["nvme"]
    );
    // A virtio-net device behind virtio-pci.
    assert_eq!(
        index.modules_for_alias("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"),
        ["virtio_pci"]
    );
    assert_eq!(
        index.modules_for_alias("virtio:d00000001v00001AF4"),
        ["virtio_net"]
    );
    // USB mass storage, bulk-only: both uas and usb-storage claim it.
    assert_eq!(
        index.modules_for_alias("usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"),
        ["uas", "usb_storage"]
    );
    assert!(index.modules_for_alias("acpi:PNP0A03:").is_empty());
}

#[test]
fn coldplug_loads_devices_and_always_list_once() {
    let index = fixture_index();
    let clock = FakeClock::default();
    let devices = FakeDevices {
        clock: &clock,
        schedule: vec![
            (
                Duration::ZERO,
                "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
            ),
            (
                Duration::ZERO,
                "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00x",
            ),
            (Duration::ZERO, "virtio:d00000002v00001AF4"),
        ],
    };
    let loader = FakeLoader::default();
    let options = ColdplugOptions {
        always_load: vec!["iso9660".into(), "virtio-ring".into()],
        ..ColdplugOptions::default()
    };
    let report = coldplug(&index, &devices, &loader, &clock, &options);
    assert_eq!(
        *loader.loaded.borrow(),
        ["isofs", "virtio_ring", "e1000", "virtio", "virtio_blk"]
    );
    assert_eq!(report.devices_seen, 3);
    // No new device after the first scan: stops once settled.
    assert_eq!(clock.elapsed(), Duration::from_millis(1600));
    assert!(report.modules.values().all(LoadOutcome::is_present));
}

#[test]
fn late_usb_devices_are_picked_up() {
    let index = fixture_index();
    let clock = FakeClock::default();
    let devices = FakeDevices {
        clock: &clock,
        schedule: vec![
            (
                Duration::ZERO,
                "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30",
            ),
            // The USB stick shows up a second after xhci loads, its SCSI CD after that.
            (
                Duration::from_millis(1000),
                "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00",
            ),
            (Duration::from_millis(1400), "scsi:t-0x05"),
        ],
    };
    let loader = FakeLoader::default();
    let report = coldplug(
        &index,
        &devices,
        &loader,
        &clock,
        &ColdplugOptions::default(),
    );
    let loaded = loader.loaded.borrow();
    let position = |name: &str| {
        loaded
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} not loaded: {loaded:?}"))
    };
    assert!(position("xhci_pci") < position("usb_storage"));
    assert!(position("usbcore") < position("xhci_hcd"));
    assert!(position("usb_storage") < position("uas"));
    assert!(position("cdrom") < position("sr_mod"));
    assert_eq!(loaded.iter().filter(|n| *n == "scsi_mod").count(), 1);
    assert_eq!(report.devices_seen, 3);
    // Settled 1.5 s after the last device (at 1.4 s).
    assert_eq!(clock.elapsed(), Duration::from_millis(3000));
}

/// Loads through [`FakeLoader`], each module taking `per_module` on the fake clock.
struct SlowLoader<'a> {
    inner: FakeLoader,
    clock: &'a FakeClock,
    per_module: Duration,
}

impl ModuleLoader for SlowLoader<'_> {
    fn load(&self, item: &LoadItem) -> LoadOutcome {
        self.clock.sleep(self.per_module);
        self.inner.load(item)
    }
}

/// Under QEMU's TCG loading virtio_pci and its dependencies takes longer than `settle`; the
/// virtio-net device it creates appears only after that and must still get its driver.
#[test]
fn settle_time_counts_from_the_end_of_slow_loading() {
    let index = fixture_index();
    let clock = FakeClock::default();
    let loader = SlowLoader {
        inner: FakeLoader::default(),
        clock: &clock,
        per_module: Duration::from_millis(400),
    };
    let devices = FakeDevices {
        clock: &clock,
        schedule: vec![
            (
                Duration::ZERO,
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
            ),
            (Duration::from_millis(1600), "virtio:d00000001v00001AF4"),
        ],
    };
    coldplug(
        &index,
        &devices,
        &loader,
        &clock,
        &ColdplugOptions::default(),
    );
    let loaded = loader.inner.loaded.borrow();
    assert!(
        loaded.iter().any(|n| n == "virtio_net"),
        "virtio_net not loaded: {loaded:?}"
    );
}

/// On a loaded host, loading the first devices' modules took longer than `max` on its own;
/// the virtio-net device virtio_pci created must still be scanned and get its driver.
#[test]
fn devices_created_by_loading_are_scanned_even_after_max() {
    let index = fixture_index();
    let clock = FakeClock::default();
    let loader = SlowLoader {
        inner: FakeLoader::default(),
        clock: &clock,
        per_module: Duration::from_secs(3),
    };
    let devices = FakeDevices {
        clock: &clock,
        schedule: vec![
            (
                Duration::ZERO,
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
            ),
            (Duration::from_secs(6), "virtio:d00000001v00001AF4"),
        ],
    };
    let report = coldplug(
        &index,
        &devices,
        &loader,
        &clock,
        &ColdplugOptions::default(),
    );
    let loaded = loader.inner.loaded.borrow();
    assert!(
        clock.elapsed() > ColdplugOptions::default().max,
        "the loading must outlast max for this test to mean anything"
    );
    assert!(
        loaded.iter().any(|n| n == "virtio_net"),
        "virtio_net not loaded: {loaded:?} ({} scans)",
        report.scans
    );
}

#[test]
fn polling_is_bounded_when_devices_keep_coming() {
    let index = fixture_index();
    let clock = FakeClock::default();
    let schedule = (0..100)
        .map(|i| {
            let alias: &'static str = Box::leak(format!("platform:flappy{i}").into_boxed_str());
            (Duration::from_millis(300 * i), alias)
        })
        .collect();
    let devices = FakeDevices {
        clock: &clock,
        schedule,
    };
    let loader = FakeLoader::default();
    let report = coldplug(
        &index,
        &devices,
        &loader,
        &clock,
        &ColdplugOptions::default(),
    );
    assert_eq!(clock.elapsed(), Duration::from_secs(5));
    assert_eq!(report.scans, 26);
}

#[test]
fn failures_are_reported_and_do_not_stop_coldplug() {
    let index = fixture_index();
    let clock = FakeClock::default();
    let devices = FakeDevices {
        clock: &clock,
        schedule: vec![
            (
                Duration::ZERO,
                "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0081,0082",
            ),
            (
                Duration::ZERO,
                "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
            ),
            (
                Duration::ZERO,
                "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80",
            ),
        ],
    };
    let loader = FakeLoader {
        outcomes: HashMap::from([
            ("crct10dif_pclmul".to_string(), LoadOutcome::NoDevice),
            ("e1000e".to_string(), LoadOutcome::Missing),
            ("scsi_common".to_string(), LoadOutcome::AlreadyLoaded),
            (
                "libata".to_string(),
                LoadOutcome::Failed("EKEYREJECTED".into()),
            ),
        ]),
        ..FakeLoader::default()
    };
    let report = coldplug(
        &index,
        &devices,
        &loader,
        &clock,
        &ColdplugOptions::default(),
    );
    assert_eq!(report.modules["crct10dif_pclmul"], LoadOutcome::NoDevice);
    assert_eq!(report.modules["e1000e"], LoadOutcome::Missing);
    assert_eq!(report.modules["scsi_common"], LoadOutcome::AlreadyLoaded);
    // ata_piix is still tried after its dependency failed: the kernel has the last word.
    assert_eq!(report.modules["ata_piix"], LoadOutcome::Loaded);
}

#[test]
fn sysfs_walk_finds_modaliases_without_following_symlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let nic = root.join("pci0000:00/0000:00:03.0");
    std::fs::create_dir_all(nic.join("virtio0")).expect("mkdir");
    std::fs::write(
        nic.join("modalias"),
        "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
    )
    .expect("write");
    std::fs::write(nic.join("virtio0/modalias"), "virtio:d00000001v00001AF4\n").expect("write");
    std::fs::write(root.join("pci0000:00/modalias"), "\n").expect("write");
    // A cycle, like sysfs's `subsystem` and `driver` links.
    std::os::unix::fs::symlink(root, nic.join("subsystem")).expect("symlink");
    let found = SysfsDevices {
        root: root.to_path_buf(),
    }
    .modaliases()
    .expect("walk");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        [
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
            "virtio:d00000001v00001AF4"
        ]
    );
    let missing = SysfsDevices {
        root: root.join("nope"),
    };
    assert!(missing.modaliases().is_err());
}

#[test]
fn kernel_loader_reports_missing_files() {
    let item = LoadItem {
        name: "nope".into(),
        path: PathBuf::from("/nonexistent/rivet/nope.ko"),
    };
    assert_eq!(KernelModuleLoader.load(&item), LoadOutcome::Missing);
}

#[test]
fn load_named_loads_filesystems_with_their_dependencies() {
    let index = fixture_index();
    let loader = FakeLoader::default();
    let report = load_named(&index, &loader, &["iso9660", "vfat", "ext4"], "vmedia");
    assert_eq!(*loader.loaded.borrow(), ["isofs", "fat", "vfat"]);
    assert!(report.modules.values().all(LoadOutcome::is_present));
}
