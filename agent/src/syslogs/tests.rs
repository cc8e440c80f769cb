use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine as _;

use super::*;

/// A `/proc` and `/sys` with one loopback and one Ethernet link.
fn fixture_roots() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |rel: &str, content: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    };
    write(
        "proc/net/route",
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
         eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
         eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n",
    );
    write(
        "proc/net/ipv6_route",
        "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 \
         00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n",
    );
    write(
        "proc/self/mounts",
        "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n",
    );
    for (name, index, state, mac) in [
        ("lo", "1", "unknown", "00:00:00:00:00:00"),
        ("eth0", "2", "up", "52:54:00:12:34:56"),
    ] {
        write(&format!("sys/class/net/{name}/ifindex"), index);
        write(&format!("sys/class/net/{name}/operstate"), state);
        write(&format!("sys/class/net/{name}/address"), mac);
        write(&format!("sys/class/net/{name}/mtu"), "1500");
        write(&format!("sys/class/net/{name}/carrier"), "1");
    }
    dir
}

fn sources(root: &Path, kernel_log: FakeKernelLog) -> LogSources {
    LogSources {
        kernel_log: Arc::new(kernel_log),
        addresses: Arc::new(FakeAddresses(vec![
            InterfaceAddress {
                interface: "lo".into(),
                address: "127.0.0.1".parse().expect("ip"),
                prefix_len: Some(8),
            },
            InterfaceAddress {
                interface: "eth0".into(),
                address: "192.168.2.10".parse().expect("ip"),
                prefix_len: Some(24),
            },
            InterfaceAddress {
                interface: "eth0".into(),
                address: "fe80::1".parse().expect("ip"),
                prefix_len: Some(64),
            },
        ])),
        proc_root: root.join("proc"),
        sys_root: root.join("sys"),
    }
}

/// Decodes base64, gunzips and untars into {name: content}.
pub(crate) fn unpack(encoded: &str) -> BTreeMap<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("valid base64");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut members = BTreeMap::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let name = entry.path().expect("path").display().to_string();
        let mut content = String::new();
        entry.read_to_string(&mut content).expect("utf-8 member");
        members.insert(name, content);
    }
    members
}

#[test]
fn archive_holds_every_part() {
    let root = fixture_roots();
    let kernel = FakeKernelLog {
        records: vec![
            "6,1,1500000,-;Linux version 6.1".into(),
            " SUBSYSTEM=block".into(),
            "4,2,2000001,-;eth0: link up".into(),
        ],
        error: None,
    };
    let inventory = serde_json::json!({"cpu": {"count": 2}});
    let attachments = LogAttachments::default();
    let reports = serde_json::json!({"erase_devices": {"devices": []}});
    attachments.update("erase-reports.json", |old| {
        assert_eq!(old, None);
        reports.clone()
    });
    let encoded = collect(
        &sources(root.path(), kernel),
        "agent line 1\nagent line 2\n",
        Some(&inventory),
        &attachments.snapshot(),
    )
    .expect("archive");
    let members = unpack(&encoded);
    assert_eq!(
        members.keys().collect::<Vec<_>>(),
        [
            "dmesg",
            "erase-reports.json",
            "inventory.json",
            "ip_addr",
            "ip_route",
            "mount",
            "rivet-agent.log"
        ]
    );
    assert_eq!(members["rivet-agent.log"], "agent line 1\nagent line 2\n");
    assert_eq!(
        members["dmesg"],
        "[    1.500000] Linux version 6.1\n[    2.000001] eth0: link up\n"
    );
    assert_eq!(
        members["ip_addr"],
        "1: lo: state unknown carrier 1 mtu 1500 link 00:00:00:00:00:00\n    inet 127.0.0.1/8\n\
         2: eth0: state up carrier 1 mtu 1500 link 52:54:00:12:34:56\n    inet 192.168.2.10/24\n    inet6 fe80::1/64\n"
    );
    assert_eq!(
        members["ip_route"],
        "default via 192.168.2.1 dev eth0 metric 100\n192.168.2.0/24 dev eth0 metric 100\n\
         fe80::/64 dev eth0 metric 256\n"
    );
    assert_eq!(
        members["mount"],
        "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n"
    );
    let inventory_back: serde_json::Value =
        serde_json::from_str(&members["inventory.json"]).expect("json");
    assert_eq!(inventory_back, inventory);
    let reports_back: serde_json::Value =
        serde_json::from_str(&members["erase-reports.json"]).expect("json");
    assert_eq!(reports_back, reports);
}

#[test]
fn unreadable_parts_are_listed_not_fatal() {
    let root = fixture_roots();
    std::fs::remove_file(root.path().join("proc/self/mounts")).expect("rm");
    let kernel = FakeKernelLog {
        records: Vec::new(),
        error: Some("Operation not permitted".into()),
    };
    let members = unpack(&collect(&sources(root.path(), kernel), "", None, &[]).expect("archive"));
    assert!(!members.contains_key("dmesg"));
    assert!(!members.contains_key("mount"));
    assert!(!members.contains_key("inventory.json"));
    let errors = &members["collection_errors"];
    assert!(
        errors.contains("dmesg: reading the kernel log: Operation not permitted"),
        "{errors}"
    );
    assert!(errors.contains("proc/self/mounts"), "{errors}");
}

#[test]
fn dev_kmsg_reader_reads_a_file_to_its_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kmsg");
    std::fs::write(&path, "6,1,10,-;hello\n6,2,20,-;world\n").expect("write");
    let raw = DevKmsg { path }.read().expect("read");
    assert_eq!(
        format_kmsg(&String::from_utf8_lossy(&raw)),
        "[    0.000010] hello\n[    0.000020] world\n"
    );
}
