//! ESP images made by mkfs.vfat and mtools inside GPT disks made with gptman, for tests.

use std::fs::File;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use gptman::{GPTPartitionEntry, GPT};

use super::ESP_TYPE;

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
pub fn esp(dir: &Path, kib: u32, bits: &str, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
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

pub const ESP_START: u64 = 2048;

/// A GPT disk whose partition 1 is `esp` (typed as an ESP unless `typed` is false).
pub fn disk_with(dir: &Path, esp: &[u8], typed: bool) -> File {
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
