//! Inventory collection on fixture trees captured from real machines and VMs
//! (agent/tests/fixtures/inventory; its INDEX says how each was made).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use super::ipmi::FakeIpmi;
use super::*;
use crate::disks::{BlockDevice, DeviceKind};
use crate::inventory::disks::tests::device;
use crate::net::interfaces::FakeNetInfo;

/// The listing a disk layer would give; never fails.
struct FixedDisks(Vec<BlockDevice>);

impl BlockDevices for FixedDisks {
    fn list(&self) -> Result<Vec<BlockDevice>, DiskError> {
        Ok(self.0.clone())
    }
}

/// A listing that fails, as an unreadable /sys/block would.
struct BrokenDisks;

impl BlockDevices for BrokenDisks {
    fn list(&self) -> Result<Vec<BlockDevice>, DiskError> {
        Err(DiskError::Read {
            path: PathBuf::from("/sys/block"),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        })
    }
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/inventory/{name}"))
}

fn sources(name: &str, machine: &str) -> HostSources {
    let root = fixture(name);
    HostSources {
        fs: HostFs::new(&root),
        machine: machine.to_string(),
        net: Arc::new(FakeNetInfo::new(&root)),
        disks: Arc::new(FixedDisks(vec![device("sda", DeviceKind::Disk, 10 << 30)])),
        ipmi: Arc::new(FakeIpmi::default()),
    }
}

fn collect_json(sources: &HostSources, options: &InventoryOptions) -> (Value, Collected) {
    let collected = collect(sources, options);
    (
        serde_json::to_value(&collected.inventory).unwrap(),
        collected,
    )
}

#[test]
fn qemu_q35_seabios_machine() {
    let (inventory, collected) = collect_json(
        &sources("qemu-q35-seabios", "x86_64"),
        &InventoryOptions {
            bootif: Some("01-52-54-00-aa-00-01".to_string()),
            ..InventoryOptions::default()
        },
    );
    assert!(collected.errors.is_empty(), "{:?}", collected.errors);
    let cpu = &inventory["cpu"];
    assert_eq!(cpu["model_name"], "QEMU Virtual CPU version 2.5+");
    assert_eq!(cpu["count"], 4);
    assert_eq!(cpu["socket_count"], 2);
    assert_eq!(cpu["architecture"], "x86_64");
    // No cpufreq and a hypervisor: cpuinfo's MHz, not SMBIOS's made-up 2000 MHz.
    assert_eq!(cpu["frequency"], "2596.146");
    let flags = cpu["flags"].as_array().unwrap();
    assert!(flags.contains(&json!("hypervisor")) && flags.contains(&json!("sse2")));
    assert_eq!(
        inventory["memory"],
        json!({"total": 1007992832u64, "physical_mb": 1024})
    );
    assert_eq!(
        inventory["system_vendor"],
        json!({"product_name": "RV-1000 (RV-1000-SKU)", "serial_number": "RV1000-0042",
               "manufacturer": "Rivet Labs",
               "firmware": {"vendor": "rivet lab BIOS", "version": "1.2.3",
                            "build_date": "03/14/2025"}})
    );
    assert_eq!(
        inventory["boot"],
        json!({"current_boot_mode": "bios", "pxe_interface": "01-52-54-00-aa-00-01"})
    );
    assert_eq!(inventory["hostname"], "rivet-fixture");
    assert_eq!(inventory["bmc_address"], Value::Null);
    assert_eq!(inventory["bmc_v6address"], Value::Null);
    assert!(inventory.get("bmc_mac").is_none());
    assert_eq!(
        inventory["interfaces"],
        json!([
            {"name": "eth0", "mac_address": "52:54:00:aa:00:02", "ipv4_address": null,
             "ipv6_address": null, "has_carrier": true, "lldp": null, "vendor": "0x1af4",
             "product": "0x0001", "client_id": null, "biosdevname": null, "speed_mbps": null,
             "pci_address": "0000:00:03.0", "driver": "virtio_net"},
            {"name": "eth1", "mac_address": "52:54:00:aa:00:01", "ipv4_address": null,
             "ipv6_address": null, "has_carrier": true, "lldp": null, "vendor": "0x8086",
             "product": "0x100e", "client_id": null, "biosdevname": null, "speed_mbps": 1000,
             "pci_address": "0000:00:02.0", "driver": "e1000"},
        ])
    );
    assert_eq!(inventory["disks"][0]["name"], "/dev/sda");
    let parts: Vec<&str> = collected.timings.iter().map(|(name, _)| *name).collect();
    for part in ["smbios", "cpu", "memory", "interfaces", "disks", "bmc"] {
        assert!(parts.contains(&part), "no timing for {part}: {parts:?}");
    }
}

#[test]
fn qemu_pc_ovmf_machine_boots_uefi_with_smbios_3() {
    let (inventory, collected) = collect_json(
        &sources("qemu-pc-ovmf", "x86_64"),
        &InventoryOptions::default(),
    );
    assert!(collected.errors.is_empty(), "{:?}", collected.errors);
    assert_eq!(inventory["boot"]["current_boot_mode"], "uefi");
    assert_eq!(inventory["boot"]["pxe_interface"], Value::Null);
    assert_eq!(collected.smbios.as_ref().unwrap().version, Some((3, 0)));
    assert_eq!(
        inventory["system_vendor"],
        json!({"product_name": "Standard PC (i440FX + PIIX, 1996)", "serial_number": "",
               "manufacturer": "QEMU",
               "firmware": {"vendor": "EFI Development Kit II / OVMF", "version": "0.0.0",
                            "build_date": "02/06/2015"}})
    );
    assert_eq!(inventory["memory"]["physical_mb"], 512);
    assert_eq!(inventory["cpu"]["count"], 1);
    assert_eq!(inventory["cpu"]["socket_count"], 1);
    assert_eq!(inventory["interfaces"][0]["driver"], "virtio_net");
}

#[test]
fn firecracker_host_without_smbios() {
    let (inventory, collected) = collect_json(
        &sources("host-firecracker", "x86_64"),
        &InventoryOptions::default(),
    );
    assert!(collected.errors.is_empty(), "{:?}", collected.errors);
    assert!(collected.smbios.is_none());
    assert_eq!(
        inventory["system_vendor"],
        json!({"product_name": "", "serial_number": "", "manufacturer": "",
               "firmware": {"vendor": "", "version": "", "build_date": ""}})
    );
    // No SMBIOS: the online memory blocks (192 x 128 MiB).
    assert_eq!(inventory["memory"]["physical_mb"], 24576);
    assert_eq!(inventory["cpu"]["model_name"], "AMD EPYC");
    assert_eq!(inventory["cpu"]["count"], 2);
    assert_eq!(inventory["cpu"]["socket_count"], 1);
    let names: Vec<&str> = inventory["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["eth0"], "ifb0/ifb1 have no device");
}

/// The CPU summary against what util-linux's own test suite expects `lscpu` to print for
/// the same dumps (tests/expected/lscpu/lscpu-<name>).
#[test]
fn cpu_summary_matches_lscpu_on_published_dumps() {
    let cases = [
        (
            "util-linux-x86_64-epyc_7451",
            "x86_64",
            "AMD EPYC 7451 24-Core Processor",
            96,
            2,
            Some("2300.0000"),
        ),
        (
            "util-linux-arm-A510-A710-A715-X3",
            "aarch64",
            "Cortex-A510",
            8,
            3,
            Some("3187.2000"),
        ),
        (
            "util-linux-ppc64-POWER7",
            "ppc64",
            "POWER7 (architected), altivec supported",
            16,
            4,
            None,
        ),
    ];
    for (name, machine, model, count, sockets, frequency) in cases {
        let cpu = cpu::collect(&HostFs::new(fixture(name)), machine, None).unwrap();
        assert_eq!(cpu.model_name.as_deref(), Some(model), "{name}");
        assert_eq!(cpu.count, count, "{name}");
        assert_eq!(cpu.socket_count, sockets, "{name}");
        assert_eq!(cpu.frequency.as_deref(), frequency, "{name}");
        assert_eq!(cpu.architecture, machine);
    }
}

#[test]
fn failing_parts_are_reported_and_the_rest_is_kept() {
    let mut sources = sources("qemu-q35-seabios", "x86_64");
    sources.disks = Arc::new(BrokenDisks);
    let collected = collect(&sources, &InventoryOptions::default());
    assert_eq!(
        collected.errors,
        vec!["disks: reading /sys/block: permission denied".to_string()]
    );
    assert!(collected.inventory.disks.is_empty());
    assert_eq!(
        collected.inventory.cpu.count, 4,
        "the other parts are still there"
    );
    assert_eq!(
        error_text(&collected.errors).unwrap(),
        "The following errors were encountered:\n* disks: reading /sys/block: permission denied"
    );
    assert_eq!(error_text(&[]), None);

    let mut no_cpuinfo = sources.clone();
    no_cpuinfo.fs = HostFs::new(fixture("does-not-exist"));
    let collected = collect(&no_cpuinfo, &InventoryOptions::default());
    let cpu_error = collected
        .errors
        .iter()
        .find(|e| e.starts_with("cpu: "))
        .unwrap();
    assert!(
        cpu_error.contains("does-not-exist/proc/cpuinfo"),
        "{cpu_error}"
    );
}

fn lan_bmc() -> FakeIpmi {
    let mut ipmi = FakeIpmi {
        present: true,
        ..FakeIpmi::default()
    };
    ipmi.answer(0x06, 0x42, &[1], &[0, 1, 0x04, 0x01]);
    ipmi.answer(0x0C, 0x02, &[1, 3, 0, 0], &[0, 0x11, 10, 0, 0, 9]);
    ipmi.answer(
        0x0C,
        0x02,
        &[1, 5, 0, 0],
        &[0, 0x11, 0x3c, 0xec, 0xef, 0, 0, 9],
    );
    ipmi
}

#[test]
fn bmc_is_asked_unless_ironic_says_to_skip_it() {
    let mut sources = sources("qemu-q35-seabios", "x86_64");
    let ipmi = Arc::new(lan_bmc());
    sources.ipmi = ipmi.clone();
    let collected = collect(&sources, &InventoryOptions::default());
    assert_eq!(collected.inventory.bmc_address.as_deref(), Some("10.0.0.9"));
    assert_eq!(collected.inventory.bmc_v6address.as_deref(), Some("::/0"));
    assert_eq!(
        collected.inventory.bmc_mac.as_deref(),
        Some("3c:ec:ef:00:00:09")
    );

    ipmi.requests.lock().unwrap().clear();
    let skipped = collect(
        &sources,
        &InventoryOptions {
            skip_bmc: true,
            ..InventoryOptions::default()
        },
    );
    assert_eq!(skipped.inventory.bmc_address, None);
    assert_eq!(skipped.inventory.bmc_v6address, None);
    assert_eq!(skipped.inventory.bmc_mac, None);
    assert!(
        ipmi.requests.lock().unwrap().is_empty(),
        "the BMC was asked"
    );
}

#[test]
fn per_interface_lldp_only_when_asked() {
    let tlvs = vec![LldpTlv(1, "0400a0c9000001".to_string())];
    let lldp: BTreeMap<String, Vec<LldpTlv>> = [("eth1".to_string(), tlvs.clone())].into();
    let collected = collect(
        &sources("qemu-q35-seabios", "x86_64"),
        &InventoryOptions {
            interface_lldp: Some(lldp),
            ..InventoryOptions::default()
        },
    );
    let interfaces = &collected.inventory.interfaces;
    assert_eq!(interfaces[0].name, "eth0");
    assert_eq!(interfaces[0].lldp, Some(Vec::new()), "no frame: empty list");
    assert_eq!(interfaces[1].lldp, Some(tlvs));
}

#[test]
fn smbios_of_a_real_seabios_machine() {
    let smbios = Smbios::read(&fixture("qemu-q35-seabios")).unwrap();
    assert_eq!(smbios.version, Some((2, 8)));
    let system = smbios.system().unwrap();
    assert_eq!(
        system.uuid.as_deref(),
        Some("6c7ba5a8-5e3a-4d37-9ac3-4ddf3e8c1f2b")
    );
    assert_eq!(system.family, "Rivet");
    let board = smbios.baseboard().unwrap();
    assert_eq!(
        (
            board.manufacturer.as_str(),
            board.product.as_str(),
            board.serial_number.as_str()
        ),
        ("Rivet Labs", "RV-MB1", "MB-0042")
    );
    let processors = smbios.processors();
    assert_eq!(processors.len(), 2);
    assert_eq!(processors[1].socket, "CPU 1");
    assert_eq!(processors[1].thread_count, Some(2));
    let devices = smbios.memory_devices();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].size, smbios::MemorySize::Bytes(1 << 30));
    assert_eq!(devices[0].part_number, "RV-DDR4-512");
    assert_eq!(devices[0].speed_mts, Some(3200));
    assert_eq!(smbios.installed_memory_mib(), Some(1024));
    assert_eq!(
        smbios.structures.last().map(|s| s.kind),
        Some(127),
        "parsing ends at the end-of-table structure"
    );
}

#[test]
fn dmi_decode_collector_uses_dmidecode_labels() {
    let dmi = dmi::collect(&Smbios::read(&fixture("qemu-q35-seabios")).unwrap());
    assert_eq!(dmi["bios"]["Vendor"], "rivet lab BIOS");
    assert_eq!(dmi["bios"]["Release Date"], "03/14/2025");
    assert_eq!(dmi["bios"]["Handle"], "Handle 0x0000, DMI type 0, 24 bytes");
    assert_eq!(dmi["cpu"].as_array().unwrap().len(), 2);
    assert_eq!(dmi["cpu"][0]["Max Speed"], "2000 MHz");
    assert_eq!(dmi["cpu"][0]["Thread Count"], "2");
    assert_eq!(dmi["memory"]["Number Of Devices"], 1);
    assert_eq!(dmi["memory"]["Maximum Capacity"], "1 GB");
    let dimm = &dmi["memory"]["devices"][0];
    assert_eq!(dimm["Size"], "1 GB");
    assert_eq!(dimm["Speed"], "3200 MT/s");
    assert_eq!(dimm["Type"], "RAM");
    assert_eq!(dimm["Asset Tag"], "Not Specified");
}

#[test]
fn numa_topology_of_a_two_node_vm() {
    let numa = numa::collect(&HostFs::new(fixture("qemu-q35-seabios")))
        .unwrap()
        .unwrap();
    assert_eq!(
        numa,
        json!({
            "ram": [{"numa_node": 0, "size_kb": 514388}, {"numa_node": 1, "size_kb": 469980}],
            "cpus": [
                {"cpu": 0, "numa_node": 0, "thread_siblings": [0]},
                {"cpu": 1, "numa_node": 0, "thread_siblings": [1]},
                {"cpu": 0, "numa_node": 1, "thread_siblings": [2]},
                {"cpu": 1, "numa_node": 1, "thread_siblings": [3]},
            ],
            // The virtio NIC's device (virtio0) has no numa_node; the e1000 reports -1.
            "nics": [{"name": "eth1", "numa_node": -1}],
        })
    );
    assert_eq!(
        numa::collect(&HostFs::new(fixture("util-linux-ppc64-POWER7"))).unwrap(),
        None,
        "no node directory: no key"
    );
}

#[test]
fn pci_devices_collector() {
    let devices = pci::collect(&HostFs::new(fixture("qemu-q35-seabios"))).unwrap();
    assert_eq!(devices.len(), 7);
    let e1000 = devices.iter().find(|d| d.bus == "0000:00:02.0").unwrap();
    assert_eq!(
        (
            e1000.vendor_id.as_str(),
            e1000.product_id.as_str(),
            e1000.class.as_str(),
            e1000.revision.as_str()
        ),
        ("8086", "100e", "020000", "03")
    );
    assert_eq!(e1000.numa_node_id, Some(-1));
}
