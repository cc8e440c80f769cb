//! ESPs made by mkfs.vfat and mtools, inside GPT disks made with gptman; EFI variables in a
//! plain directory standing in for efivarfs.

use std::path::Path;

use super::testutil::{disk_with, esp, ESP_START};
use super::*;

fn utf16_csv(text: &str) -> Vec<u8> {
    let mut raw = vec![0xff, 0xfe];
    raw.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    raw
}

fn vars(dir: &Path) -> Efivarfs {
    let path = dir.join("efivars");
    std::fs::create_dir_all(&path).unwrap();
    Efivarfs::new(path)
}

#[test]
fn fat_reader_lists_long_names_and_reads_files_on_fat12_16_and_32() {
    for (bits, kib) in [("12", 2048), ("16", 16384), ("32", 40000)] {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let image = esp(
            dir.path(),
            kib,
            bits,
            &[
                ("EFI/almalinux/grubx64.efi", b"grub".to_vec()),
                ("EFI/BOOT/BOOTX64.EFI", big.clone()),
            ],
        );
        let path = dir.path().join("esp-copy");
        std::fs::write(&path, &image).unwrap();
        let file = File::open(&path).unwrap();
        let fat = fat::Fat::open(&file, 0).unwrap();
        let names: Vec<String> = fat
            .list("efi")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert!(
            names.contains(&"almalinux".to_string()),
            "FAT{bits}: {names:?}"
        );
        assert_eq!(
            fat.read_file("EFI/almalinux", "GRUBX64.EFI").unwrap(),
            b"grub"
        );
        assert_eq!(
            fat.read_file("EFI/BOOT", "bootx64.efi").unwrap(),
            big,
            "FAT{bits}"
        );
        assert!(fat.read_file("EFI/BOOT", "missing.efi").is_err());
    }
}

#[test]
fn shim_csv_entries_are_added_first_in_boot_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let image = esp(
        dir.path(),
        16384,
        "16",
        &[
            ("EFI/ubuntu/shimx64.efi", b"shim".to_vec()),
            ("EFI/ubuntu/grubx64.efi", b"grub".to_vec()),
            (
                "EFI/ubuntu/BOOTX64.CSV",
                utf16_csv("shimx64.efi,ubuntu,,This is the boot entry for ubuntu\n"),
            ),
            ("EFI/BOOT/BOOTX64.EFI", b"fallback".to_vec()),
        ],
    );
    let disk = disk_with(dir.path(), &image, true);
    let vars = vars(dir.path());
    vars.set("Boot0000", &load_option("PXE", &[0x7f, 0xff, 4, 0]))
        .unwrap();
    vars.set("BootOrder", &[0, 0]).unwrap();

    let outcome = manage_uefi(&disk, None, &vars).unwrap().unwrap();
    assert_eq!(
        outcome.entries,
        [(
            1,
            "ubuntu".to_string(),
            "\\EFI\\ubuntu\\shimx64.efi".to_string()
        )]
    );
    let expected_path = device_path(
        1,
        ESP_START,
        image.len() as u64 / 512,
        [0xab; 16],
        "\\EFI\\ubuntu\\shimx64.efi",
    );
    assert_eq!(
        vars.get("Boot0001").unwrap().unwrap(),
        load_option("ubuntu", &expected_path)
    );
    assert_eq!(vars.get("BootOrder").unwrap().unwrap(), [1, 0, 0, 0]);
    // The files hold the attributes first, as efivarfs does.
    let raw = std::fs::read(vars.dir().join(format!("BootOrder-{GLOBAL_GUID}"))).unwrap();
    assert_eq!(raw, [7, 0, 0, 0, 1, 0, 0, 0]);

    // Again (a redeploy): the same entry is reused, not duplicated.
    let again = manage_uefi(&disk, None, &vars).unwrap().unwrap();
    assert_eq!(again.entries[0].0, 1);
    assert_eq!(vars.get("BootOrder").unwrap().unwrap(), [1, 0, 0, 0]);
    assert_eq!(vars.names().unwrap(), ["Boot0000", "Boot0001", "BootOrder"]);
}

#[test]
fn without_a_csv_each_vendor_loader_then_the_fallback_path() {
    let dir = tempfile::tempdir().unwrap();
    let image = esp(
        dir.path(),
        16384,
        "16",
        &[
            ("EFI/centos/shimx64.efi", b"shim".to_vec()),
            ("EFI/centos/grubx64.efi", b"grub".to_vec()),
            ("EFI/debian/grubx64.efi", b"grub".to_vec()),
        ],
    );
    let fat_file = dir.path().join("esp-only");
    std::fs::write(&fat_file, &image).unwrap();
    let file = File::open(&fat_file).unwrap();
    let loaders = find_loaders(&fat::Fat::open(&file, 0).unwrap()).unwrap();
    assert_eq!(
        loaders,
        [
            (
                "ironic1".to_string(),
                "\\EFI\\centos\\shimx64.efi".to_string()
            ),
            (
                "ironic2".to_string(),
                "\\EFI\\debian\\grubx64.efi".to_string()
            ),
        ]
    );

    let image = esp(
        dir.path(),
        16384,
        "16",
        &[("EFI/BOOT/BOOTX64.EFI", b"x".to_vec())],
    );
    std::fs::write(&fat_file, &image).unwrap();
    let file = File::open(&fat_file).unwrap();
    assert_eq!(
        find_loaders(&fat::Fat::open(&file, 0).unwrap()).unwrap(),
        [(
            "ironic1".to_string(),
            "\\EFI\\BOOT\\BOOTX64.EFI".to_string()
        )]
    );
}

#[test]
fn no_esp_or_no_loader_means_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let image = esp(
        dir.path(),
        16384,
        "16",
        &[("EFI/BOOT/BOOTX64.EFI", b"x".to_vec())],
    );
    let vars = vars(dir.path());
    // The partition is not typed as an ESP.
    let disk = disk_with(dir.path(), &image, false);
    assert_eq!(manage_uefi(&disk, None, &vars).unwrap(), None);
    // Named by its GUID it is used.
    let guid = uuid::Uuid::from_bytes_le([0xab; 16]).to_string();
    assert!(manage_uefi(&disk, Some(&guid), &vars).unwrap().is_some());
    // An ESP without loaders.
    let empty = esp(dir.path(), 16384, "16", &[]);
    let disk = disk_with(dir.path(), &empty, true);
    assert_eq!(manage_uefi(&disk, None, &vars).unwrap(), None);
    // Loaders but no efivarfs: not booted in UEFI mode.
    let disk = disk_with(dir.path(), &image, true);
    let missing = Efivarfs::new(dir.path().join("no-efivars"));
    let err = manage_uefi(&disk, None, &missing).unwrap_err();
    assert!(err.contains("not booted in UEFI mode"), "{err}");
}

#[test]
fn the_esp_is_found_by_its_fat_serial_as_ironic_passes_it_for_partition_images() {
    let dir = tempfile::tempdir().unwrap();
    let image = esp(
        dir.path(),
        16384,
        "16",
        &[("EFI/BOOT/BOOTX64.EFI", b"loader".to_vec())],
    );
    // Untyped, so only the UUID can find it.
    let disk = disk_with(dir.path(), &image, false);
    let serial = crate::image::partition::fs::fs_uuid(&disk, ESP_START * 512).unwrap();
    let vars = vars(dir.path());
    assert!(manage_uefi(&disk, None, &vars).unwrap().is_none());
    let outcome = manage_uefi(&disk, Some(&serial.to_lowercase()), &vars)
        .unwrap()
        .expect("entries for the ESP named by its FAT serial");
    assert_eq!(outcome.entries.len(), 1);
    assert!(manage_uefi(&disk, Some("0000-0000"), &vars)
        .unwrap()
        .is_none());
}
