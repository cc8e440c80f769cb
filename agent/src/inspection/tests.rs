//! Inspection payloads built from the QEMU fixture machine (agent/tests/fixtures/inventory).

use std::io::Read;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;

use super::*;
use crate::disks::{BlockDevice, BlockDevices, DeviceKind, DiskError};
use crate::inventory::disks::tests::device;
use crate::inventory::ipmi::FakeIpmi;
use crate::inventory::HostFs;
use crate::lldp::frame::{Frame, Tlv};
use crate::lldp::KernelLinks;
use crate::net::interfaces::FakeNetInfo;
use crate::syslogs::{FakeAddresses, FakeKernelLog};

struct Disks(Vec<BlockDevice>);

impl BlockDevices for Disks {
    fn list(&self) -> Result<Vec<BlockDevice>, DiskError> {
        Ok(self.0.clone())
    }
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

fn fixture() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inventory/qemu-q35-seabios")
}

/// The q35 fixture machine: eth0 (virtio) heard leaf-1 port Ethernet7, eth1 heard nothing.
fn env(settings: Settings) -> InspectionEnv {
    let root = fixture();
    let board = LldpBoard::default();
    let frame = Frame {
        source: [0, 0x1c, 0x73, 1, 2, 3],
        tlvs: vec![
            Tlv::new(1, vec![4, 0, 0x1c, 0x73, 1, 2, 3]),
            Tlv::new(2, b"\x05Ethernet7".to_vec()),
            Tlv::new(3, vec![0, 120]),
            Tlv::new(5, b"leaf-1".to_vec()),
            Tlv::new(0, Vec::new()),
        ],
    };
    assert!(board.record_session(
        &["eth0".to_string(), "eth1".to_string()],
        vec![("eth0".to_string(), frame)],
    ));
    InspectionEnv {
        listen: crate::steps::listen_options(&settings),
        settings,
        host: HostSources {
            fs: HostFs::new(&root),
            machine: "x86_64".to_string(),
            net: Arc::new(FakeNetInfo::new(&root)),
            disks: Arc::new(Disks(vec![
                device("sda", DeviceKind::Disk, 100 << 30),
                device("sdb", DeviceKind::Disk, 8 << 30),
                device("sdc", DeviceKind::Disk, 1 << 30),
            ])),
            ipmi: Arc::new(FakeIpmi::default()),
        },
        lldp: Arc::new(board),
        links: Arc::new(KernelLinks),
        log_sources: LogSources {
            kernel_log: Arc::new(FakeKernelLog {
                records: vec!["6,1,1000,-;Linux version 6.1.0".to_string()],
                error: None,
            }),
            addresses: Arc::new(FakeAddresses(Vec::new())),
            proc_root: root.join("proc"),
            sys_root: root.join("sys"),
        },
        agent_log: LogBuffer::new(10),
        managers: vec![ManagerInfo {
            name: "generic_hardware_manager".to_string(),
            version: "1.2".to_string(),
        }],
    }
}

#[test]
fn enabled_as_ipa_decides() {
    let mut settings = Settings::default();
    assert!(!is_enabled(&settings));
    settings.api_urls = vec![url("http://192.0.2.1:6385")];
    assert!(
        !is_enabled(&settings),
        "the default collectors alone do not enable it"
    );
    settings.inspection_collectors = vec!["default".into(), "lldp".into()];
    assert!(is_enabled(&settings), "collectors plus an API URL");
    assert_eq!(
        callback_urls(&settings),
        vec![url("http://192.0.2.1:6385/v1/continue_inspection")]
    );
    settings.inspection_callback_urls = vec![url("http://192.0.2.9:5050/v1/continue")];
    assert!(is_enabled(&settings));
    assert_eq!(
        callback_urls(&settings),
        vec![url("http://192.0.2.9:5050/v1/continue")]
    );
}

#[test]
fn lldp_is_collected_whenever_rivet_listens() {
    let mut settings = Settings::default();
    assert_eq!(collector_names(&settings), vec!["default", "logs", "lldp"]);
    settings.lldp_listen = false;
    assert_eq!(collector_names(&settings), vec!["default", "logs"]);
    settings.inspection_collectors = Vec::new();
    assert_eq!(collector_names(&settings), vec!["default", "logs"]);
}

#[test]
fn bootif_forms() {
    assert_eq!(
        normalize_bootif("01-52-54-00-AA-00-01"),
        "52:54:00:aa:00:01"
    );
    assert_eq!(normalize_bootif("52:54:00:AA:00:01"), "52:54:00:aa:00:01");
}

#[test]
fn payload_with_every_collector() {
    let settings = Settings {
        inspection_collectors: [
            "default",
            "logs",
            "pci-devices",
            "numa-topology",
            "dmi-decode",
            "extra-hardware",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        bootif: Some("01-52-54-00-aa-00-01".to_string()),
        inspection_dhcp_wait_timeout: Duration::ZERO,
        expected_wiring: Some(
            r#"[{"interface":"eth0","switch_system_name":"leaf-1","port_id":"Ethernet7"},
                {"interface":"eth1","switch_system_name":"leaf-1","port_id":"Ethernet8"}]"#
                .to_string(),
        ),
        ..Settings::default()
    };
    let collected = collect(&env(settings));
    let data = serde_json::to_value(&collected.request).unwrap();
    assert_eq!(data["inventory"]["cpu"]["architecture"], "x86_64");
    assert_eq!(data["inventory"]["interfaces"][0]["name"], "eth0");
    assert_eq!(
        data["root_disk"]["name"], "/dev/sdb",
        "smallest of at least 4 GiB"
    );
    assert_eq!(data["boot_interface"], "01-52-54-00-aa-00-01");
    assert_eq!(
        data["configuration"],
        json!({
            "collectors": ["default", "logs", "pci-devices", "numa-topology", "dmi-decode",
                           "extra-hardware", "lldp"],
            "managers": [{"name": "generic_hardware_manager", "version": "1.2"}],
        })
    );
    assert_eq!(
        data["error"],
        "The following errors were encountered:\n* collector extra-hardware is not supported \
         by rivet-agent (supported: default, logs, lldp, pci-devices, numa-topology, dmi-decode)"
    );
    assert_eq!(data["lldp_raw"]["eth1"], json!([]));
    assert_eq!(data["lldp_raw"]["eth0"][3], json!([5, "6c6561662d31"]));
    assert_eq!(data["lldp_neighbors"]["eth0"]["system_name"], "leaf-1");
    assert_eq!(data["lldp_neighbors"]["eth0"]["port_id"], "Ethernet7");
    assert!(data["lldp_neighbors"].get("eth1").is_none());
    assert_eq!(data["rivet_wiring"]["ok"], false);
    assert_eq!(data["rivet_wiring"]["links"][0]["status"], "ok");
    assert_eq!(data["rivet_wiring"]["links"][1]["status"], "no_neighbor");
    assert_eq!(data["pci_devices"].as_array().unwrap().len(), 7);
    assert_eq!(data["numa_topology"]["ram"].as_array().unwrap().len(), 2);
    assert_eq!(data["dmi"]["bios"]["Vendor"], "rivet lab BIOS");
    let archive = base64::engine::general_purpose::STANDARD
        .decode(data["logs"].as_str().unwrap())
        .unwrap();
    let mut names = Vec::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice()));
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name == "inventory.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            assert!(text.contains("RV1000-0042"), "the inventory is in the logs");
        }
        names.push(name);
    }
    assert!(names.contains(&"dmesg".to_string()), "{names:?}");
    assert!(names.contains(&"inventory.json".to_string()), "{names:?}");
}

#[test]
fn minimal_payload_has_the_keys_ironic_requires() {
    let settings = Settings {
        inspection_collectors: vec!["default".to_string()],
        lldp_listen: false,
        inspection_dhcp_wait_timeout: Duration::ZERO,
        ..Settings::default()
    };
    let data = serde_json::to_value(collect(&env(settings)).request).unwrap();
    let keys: Vec<&String> = data.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        vec![
            "boot_interface",
            "configuration",
            "error",
            "inventory",
            "root_disk"
        ]
    );
    assert_eq!(data["error"], serde_json::Value::Null);
    assert!(data["inventory"]["interfaces"][0]["mac_address"].is_string());
    assert_eq!(
        data["inventory"]["interfaces"][0]["lldp"],
        serde_json::Value::Null
    );
}
