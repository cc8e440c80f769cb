//! ESPs made by mkfs.vfat and mtools, inside GPT disks made with gptman; EFI variables in a
//! plain directory standing in for efivarfs.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use gptman::GPTPartitionEntry;

use super::*;

fn run(tool: &str, args: &[&str]) {
    let output = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} is required by this test (dosfstools, mtools; ci/setup installs them): {e}")
    });
    assert!(
        output.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An ESP image of `kib` KiB with FAT `bits`, holding `files` (path on the ESP, content).
fn esp(dir: &Path, kib: u32, bits: &str, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let image = dir.join("esp.img");
    let _ = std::fs::remove_file(&image);
    let image_str = image.to_str().unwrap();
    run(
        "mkfs.vfat",
        &["-C", "-F", bits, image_str, &kib.to_string()],
    );
    let mut made = Vec::new();
    for (path, content) in files {
        let parts: Vec<&str> = path.split('/').collect();
        for depth in 1..parts.len() {
            let d = parts[..depth].join("/");
            if !made.contains(&d) {
                run("mmd", &["-i", image_str, &format!("::{d}")]);
                made.push(d);
            }
        }
        let local = dir.join("file");
        std::fs::write(&local, content).unwrap();
        run(
            "mcopy",
            &[
                "-i",
                image_str,
                local.to_str().unwrap(),
                &format!("::{path}"),
            ],
        );
    }
    std::fs::read(&image).unwrap()
}

const ESP_START: u64 = 2048;

/// A GPT disk whose partition 1 is `esp` (typed as an ESP unless `typed` is false).
fn disk_with(dir: &Path, esp: &[u8], typed: bool) -> File {
    let size = (ESP_START as usize * 512) + esp.len() + (1 << 20);
    let mut cursor = Cursor::new(vec![0u8; size]);
    let mut gpt = GPT::new_from(&mut cursor, 512, [5; 16]).unwrap();
    let esp_type = uuid::Uuid::parse_str(ESP_TYPE).unwrap().to_bytes_le();
    gpt[1] = GPTPartitionEntry {
        partition_type_guid: if typed { esp_type } else { [1; 16] },
        unique_partition_guid: [0xab; 16],
        starting_lba: ESP_START,
        ending_lba: ESP_START + esp.len() as u64 / 512 - 1,
        attribute_bits: 0,
        partition_name: "EFI".into(),
    };
    gpt.write_into(&mut cursor).unwrap();
    let mut bytes = cursor.into_inner();
    bytes[(ESP_START * 512) as usize..(ESP_START * 512) as usize + esp.len()].copy_from_slice(esp);
    let path = dir.join("disk");
    std::fs::write(&path, bytes).unwrap();
    File::open(path).unwrap()
}

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
