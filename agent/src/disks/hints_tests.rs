use serde_json::json;

use super::*;

const GIB_U: u64 = 1 << 30;

fn disk(name: &str, gib: u64) -> BlockDevice {
    BlockDevice {
        name: name.into(),
        path: format!("/dev/{name}").into(),
        kind: DeviceKind::Disk,
        parent: None,
        partitions: Vec::new(),
        holders: Vec::new(),
        size_bytes: gib * GIB_U,
        logical_sector_size: 512,
        physical_sector_size: 512,
        rotational: false,
        read_only: false,
        removable: false,
        model: None,
        vendor: None,
        serial: None,
        wwn: None,
        wwn_with_extension: None,
        wwn_vendor_extension: None,
        hctl: None,
        by_path: None,
        tran: None,
        is_boot_medium: false,
    }
}

/// sda: SATA SSD 100 GiB; sdb: SAS HDD 500 GiB (NAA 6 WWN); nvme0n1: 50 GiB; sr0; sdb1.
fn machine() -> Vec<BlockDevice> {
    let mut sda = disk("sda", 100);
    sda.model = Some("Samsung SSD 860".into());
    sda.vendor = Some("ATA".into());
    sda.serial = Some("S3Z1NB0K".into());
    sda.wwn = Some("0x5002538e40a1b2c3".into());
    sda.wwn_with_extension = Some("0x5002538e40a1b2c3".into());
    sda.hctl = Some("0:0:0:0".into());
    sda.by_path = Some("/dev/disk/by-path/pci-0000:00:1f.2-ata-1".into());
    sda.tran = Some("sata".into());
    let mut sdb = disk("sdb", 500);
    sdb.model = Some("ST500NM0011".into());
    sdb.vendor = Some("SEAGATE".into());
    sdb.serial = Some("Z1M0ABCD".into());
    sdb.wwn = Some("0x600a0b8000111155".into());
    sdb.wwn_vendor_extension = Some("0x0000e1c34d1b6b92".into());
    sdb.wwn_with_extension = Some("0x600a0b80001111550000e1c34d1b6b92".into());
    sdb.rotational = true;
    sdb.hctl = Some("1:0:0:0".into());
    sdb.tran = Some("sas".into());
    sdb.partitions = vec!["sdb1".into()];
    let mut sdb1 = disk("sdb1", 500);
    sdb1.kind = DeviceKind::Partition;
    sdb1.parent = Some("sdb".into());
    let mut nvme = disk("nvme0n1", 50);
    nvme.model = Some("QEMU NVMe Ctrl".into());
    nvme.serial = Some("deadbeef".into());
    nvme.wwn = Some("eui.0025388b91b3ee56".into());
    nvme.tran = Some("nvme".into());
    nvme.by_path = Some("/dev/disk/by-path/pci-0000:00:05.0-nvme-1".into());
    let mut sr0 = disk("sr0", 1);
    sr0.kind = DeviceKind::Rom;
    vec![nvme, sda, sdb, sdb1, sr0]
}

fn parse(value: serde_json::Value) -> RootDeviceHints {
    parse_hints(&value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

fn parse_err(value: serde_json::Value) -> String {
    match parse_hints(&value) {
        Ok(h) => panic!("{value} parsed as {h:?}"),
        Err(e) => e.to_string(),
    }
}

/// Names of the machine's candidates matching `hints`.
fn matching(hints: serde_json::Value) -> Vec<String> {
    let devices = machine();
    let hints = parse(hints);
    candidates(&devices, &[])
        .into_iter()
        .filter(|d| matches_all(&hints, d))
        .map(|d| d.name.clone())
        .collect()
}

fn select(hints: serde_json::Value, strict: bool) -> Result<String, HintError> {
    let devices = machine();
    select_root_device(&devices, &parse(hints), &[], strict).map(|d| d.name.clone())
}

#[test]
fn unknown_keys_are_rejected() {
    let err = parse_err(json!({"model": "x", "colour": "red", "brand": "y"}));
    assert!(err.contains("\"brand, colour\" are invalid"), "{err}");
    assert!(
        err.contains("by_path, hctl, model, name, rotational, serial, size, tran"),
        "{err}"
    );
}

#[test]
fn null_and_empty_mean_no_hints() {
    assert!(parse(json!(null)).hints.is_empty());
    assert!(parse(json!({})).hints.is_empty());
    assert!(parse_err(json!(["model"])).contains("JSON object"));
}

#[test]
fn strings_are_lowercased_and_quoted() {
    let hints = parse(json!({"model": "  Samsung SSD 860 "}));
    assert_eq!(
        hints.hints[0].expr,
        Expr::Compare {
            op: Op::StrEq,
            values: vec!["samsung%20ssd%20860".into()]
        }
    );
    let hints = parse(json!({"hctl": "S== 1:0:0:0"}));
    assert_eq!(
        hints.hints[0].expr,
        Expr::Compare {
            op: Op::StrEq,
            values: vec!["1%3A0%3A0%3A0".into()]
        }
    );
    let hints = parse(json!({"vendor": "<or> ATA <or> Seagate"}));
    assert_eq!(
        hints.hints[0].expr,
        Expr::Compare {
            op: Op::Or,
            values: vec!["ata".into(), "seagate".into()]
        }
    );
}

#[test]
fn string_hints_must_be_strings_and_not_empty() {
    assert!(parse_err(json!({"serial": 12345})).contains("is not a string value"));
    assert!(parse_err(json!({"model": "  "})).contains("expression is empty"));
    assert!(parse_err(json!({"model": "s=="})).contains("has no value"));
}

#[test]
fn matching_is_case_insensitive() {
    assert_eq!(matching(json!({"model": "SAMSUNG ssd 860"})), ["sda"]);
    assert_eq!(matching(json!({"serial": "s3z1nb0k"})), ["sda"]);
    assert_eq!(matching(json!({"vendor": "seagate"})), ["sdb"]);
    assert_eq!(
        matching(json!({"wwn": "EUI.0025388B91B3EE56"})),
        ["nvme0n1"]
    );
}

#[test]
fn string_equality_operators() {
    assert_eq!(
        matching(json!({"model": "s== qemu nvme ctrl"})),
        ["nvme0n1"]
    );
    assert_eq!(matching(json!({"tran": "s!= sata"})), ["nvme0n1", "sdb"]);
    // Compared as quoted lowercase strings: "qemu..." < "samsung..." < "st500...".
    assert_eq!(matching(json!({"model": "s< samsung"})), ["nvme0n1"]);
    assert_eq!(
        matching(json!({"model": "s<= samsung%20ssd%20860"})),
        ["nvme0n1", "sda"]
    );
    assert_eq!(matching(json!({"model": "s> samsung"})), ["sda", "sdb"]);
    assert_eq!(matching(json!({"model": "s>= st500nm0011"})), ["sdb"]);
}

#[test]
fn in_or_operators() {
    assert_eq!(matching(json!({"model": "<in> SSD"})), ["sda"]);
    assert_eq!(matching(json!({"model": "<in> samsung ssd"})), ["sda"]);
    assert_eq!(
        matching(json!({"serial": "<or> deadbeef <or> Z1M0ABCD"})),
        ["nvme0n1", "sdb"]
    );
    assert_eq!(matching(json!({"by_path": "<in> nvme"})), ["nvme0n1"]);
}

#[test]
fn all_in_and_range_in_are_refused_on_strings() {
    assert!(parse_err(json!({"model": "<all-in> a b"})).contains("list literals"));
    assert!(parse_err(json!({"model": "<range-in> [ 1 2 ]"})).contains("only compares numbers"));
}

#[test]
fn size_is_gib_with_numeric_operators() {
    assert_eq!(matching(json!({"size": 100})), ["sda"]);
    assert_eq!(matching(json!({"size": "100"})), ["sda"]);
    assert_eq!(matching(json!({"size": "== 100"})), ["sda"]);
    assert_eq!(matching(json!({"size": "!= 100"})), ["nvme0n1", "sdb"]);
    assert_eq!(matching(json!({"size": "< 100"})), ["nvme0n1"]);
    assert_eq!(matching(json!({"size": "<= 100"})), ["nvme0n1", "sda"]);
    assert_eq!(matching(json!({"size": "> 100"})), ["sdb"]);
    assert_eq!(matching(json!({"size": ">= 100"})), ["sda", "sdb"]);
    assert_eq!(
        matching(json!({"size": "= 100"})),
        ["sda", "sdb"],
        "= means >="
    );
}

#[test]
fn size_equality_needs_exact_gib() {
    let mut odd = disk("sdz", 100);
    odd.size_bytes += 512;
    let hints = parse(json!({"size": 100}));
    assert!(!matches_all(&hints, &odd));
    assert!(matches_all(&parse(json!({"size": ">= 100"})), &odd));
}

#[test]
fn size_must_be_a_positive_integer() {
    assert!(parse_err(json!({"size": 0})).contains("positive integer"));
    assert!(parse_err(json!({"size": "-5"})).contains("positive integer"));
    assert!(parse_err(json!({"size": 10.5})).contains("not an integer"));
    assert!(parse_err(json!({"size": "big"})).contains("not an integer"));
    assert!(parse_err(json!({"size": ">= ten"})).contains("not an integer"));
    assert!(parse_err(json!({"size": true})).contains("not an integer"));
}

#[test]
fn size_range_in_is_refused_like_ipa() {
    let err = parse_err(json!({"size": "<range-in> ( 10 100 )"}));
    assert!(err.contains("IPA 13 rejects \"<range-in>\""), "{err}");
    assert!(err.contains("not an integer value"), "{err}");
}

#[test]
fn size_string_operators_are_refused() {
    for expr in ["s== 100", "<in> 100", "<or> 100 <or> 200"] {
        let err = parse_err(json!({ "size": expr }));
        assert!(err.contains("compares strings"), "{expr}: {err}");
    }
}

#[test]
fn rotational_is_a_strict_boolean() {
    assert_eq!(matching(json!({"rotational": true})), ["sdb"]);
    assert_eq!(matching(json!({"rotational": "false"})), ["nvme0n1", "sda"]);
    for yes in [json!("1"), json!("yes"), json!("ON"), json!("t"), json!(1)] {
        assert_eq!(
            parse(json!({ "rotational": yes })).hints[0].expr,
            Expr::Bool(true)
        );
    }
    for bad in [json!("maybe"), json!(2), json!(null), json!("")] {
        assert!(parse_err(json!({ "rotational": bad })).contains("not a Boolean"));
    }
}

#[test]
fn name_must_be_the_full_path() {
    assert_eq!(matching(json!({"name": "/dev/sda"})), ["sda"]);
    assert!(matching(json!({"name": "sda"})).is_empty());
}

#[test]
fn hctl_by_path_and_tran() {
    assert_eq!(matching(json!({"hctl": "1:0:0:0"})), ["sdb"]);
    assert_eq!(
        matching(json!({"by_path": "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"})),
        ["sda"]
    );
    assert_eq!(matching(json!({"tran": "nvme"})), ["nvme0n1"]);
}

#[test]
fn serial_and_wwn_match_either_form() {
    assert_eq!(
        matching(json!({"serial": "QEMU_NVMe_Ctrl_deadbeef"})),
        ["nvme0n1"]
    );
    assert_eq!(
        matching(json!({"serial": "3600a0b80001111550000e1c34d1b6b92"})),
        ["sdb"]
    );
    assert_eq!(matching(json!({"wwn": "0x600a0b8000111155"})), ["sdb"]);
    assert_eq!(
        matching(json!({"wwn": "0x600a0b80001111550000e1c34d1b6b92"})),
        ["sdb"]
    );
    assert_eq!(
        matching(json!({"wwn_with_extension": "0x600a0b80001111550000e1c34d1b6b92"})),
        ["sdb"]
    );
    assert_eq!(
        matching(json!({"wwn_vendor_extension": "0x0000e1c34d1b6b92"})),
        ["sdb"]
    );
}

#[test]
fn missing_device_values_never_match() {
    // nvme0n1 has no vendor: even "!=" does not match it.
    assert_eq!(matching(json!({"vendor": "s!= nothing"})), ["sda", "sdb"]);
    assert_eq!(matching(json!({"hctl": "<in> :"})), ["sda", "sdb"]);
}

#[test]
fn all_hints_must_match() {
    assert_eq!(
        matching(json!({"size": ">= 50", "rotational": false})),
        ["nvme0n1", "sda"]
    );
    assert_eq!(
        matching(json!({"size": ">= 50", "rotational": false, "tran": "sata"})),
        ["sda"]
    );
}

#[test]
fn no_hints_take_the_smallest_disk_of_4_gib() {
    assert_eq!(select(json!({}), true).as_deref(), Ok("nvme0n1"));
    let mut devices = vec![disk("sdc", 3), disk("sdb", 8), disk("sda", 8)];
    let none = RootDeviceHints::default();
    let got = select_root_device(&devices, &none, &[], true).map(|d| d.name.clone());
    assert_eq!(got.as_deref(), Ok("sda"), "ties by name");
    devices.truncate(1);
    let err = select_root_device(&devices, &none, &[], true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("at least 4 GiB") && err.contains("/dev/sdc: 3.0 GiB"),
        "{err}"
    );
}

#[test]
fn ambiguous_hints_fail_in_strict_mode_with_every_candidate() {
    let err = select(json!({"size": ">= 60"}), true).unwrap_err();
    assert!(matches!(err, HintError::Ambiguous { .. }), "{err:?}");
    let text = err.to_string();
    for expected in [
        "/dev/sda: 100.0 GiB, model Samsung SSD 860, serial S3Z1NB0K, wwn 0x5002538e40a1b2c3, by_path /dev/disk/by-path/pci-0000:00:1f.2-ata-1 [size: >= 60 passed]",
        "/dev/sdb: 500.0 GiB",
        "/dev/nvme0n1: 50.0 GiB, model QEMU NVMe Ctrl, serial deadbeef, wwn eui.0025388b91b3ee56, by_path /dev/disk/by-path/pci-0000:00:05.0-nvme-1 [size: >= 60 failed]",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("sr0") && !text.contains("sdb1"), "{text}");
    // IPA's behaviour without strict mode: the first match in listing order.
    assert_eq!(
        select(json!({"size": ">= 60"}), false).as_deref(),
        Ok("sda")
    );
}

#[test]
fn a_single_match_is_chosen_in_both_modes() {
    assert_eq!(
        select(json!({"serial": "Z1M0ABCD"}), true).as_deref(),
        Ok("sdb")
    );
    assert_eq!(
        select(json!({"serial": "Z1M0ABCD"}), false).as_deref(),
        Ok("sdb")
    );
}

#[test]
fn no_match_lists_candidates_and_verdicts() {
    let err = select(json!({"model": "intel", "size": 100}), true).unwrap_err();
    assert!(matches!(err, HintError::NoMatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("/dev/sda: 100.0 GiB")
            && text.contains("model: s== intel failed; size: == 100 passed"),
        "{text}"
    );
}

#[test]
fn boot_medium_partitions_rom_and_virtual_are_never_selected() {
    let mut devices = machine();
    for d in devices.iter_mut().filter(|d| d.name == "sda") {
        d.is_boot_medium = true;
    }
    let mut loop0 = disk("loop0", 200);
    loop0.kind = DeviceKind::Virtual;
    devices.push(loop0);
    let err = select_root_device(&devices, &parse(json!({"size": 100})), &[], true).unwrap_err();
    assert!(matches!(err, HintError::NoMatch { .. }), "{err:?}");
    let names: Vec<_> = candidates(&devices, &[])
        .iter()
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(names, ["nvme0n1", "sdb"]);
    let rom = select_root_device(&devices, &parse(json!({"name": "/dev/sr0"})), &[], true);
    assert!(rom.is_err());
    let part = select_root_device(&devices, &parse(json!({"name": "/dev/sdb1"})), &[], true);
    assert!(part.is_err());
}

#[test]
fn raid_devices_are_candidates() {
    let mut md = disk("md0", 20);
    md.kind = DeviceKind::Raid;
    let devices = vec![md, disk("sda", 40)];
    let got = select_root_device(&devices, &RootDeviceHints::default(), &[], true);
    assert_eq!(got.map(|d| d.name.clone()).as_deref(), Ok("md0"));
}

#[test]
fn skip_block_devices_remove_candidates() {
    let devices = machine();
    let skip = parse_skip_list(&json!([
        {"serial": "s3z1nb0k"},
        {"volume_name": "large"}
    ]))
    .expect("skip list");
    assert_eq!(skip.len(), 1, "volume_name entries are for RAID");
    let got = select_root_device(&devices, &parse(json!({"size": ">= 60"})), &skip, true);
    assert_eq!(got.map(|d| d.name.clone()).as_deref(), Ok("sdb"));
    let all = parse_skip_list(&json!([{"size": ">= 1"}])).expect("skip list");
    let err = select_root_device(&devices, &RootDeviceHints::default(), &all, true).unwrap_err();
    assert!(err.to_string().contains("no candidate disks"), "{err}");
    assert!(parse_skip_list(&json!([{"colour": "red"}])).is_err());
    assert!(parse_skip_list(&json!([{}])).is_err());
    assert_eq!(parse_skip_list(&json!(null)), Ok(Vec::new()));
}
