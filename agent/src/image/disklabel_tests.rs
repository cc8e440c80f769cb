use std::io::{Cursor, Write};

use base64::Engine;

use super::*;

const MIB: u64 = 1 << 20;

fn b64(data: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(data)
        .into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A fake ISO 9660 config drive: a primary volume descriptor labelled `config-2`.
fn config_drive_iso() -> Vec<u8> {
    let mut iso = vec![0u8; 64 * 1024];
    iso[32768] = 1;
    iso[32769..32774].copy_from_slice(b"CD001");
    iso[32774] = 1;
    let mut label = [b' '; 32];
    label[..8].copy_from_slice(b"config-2");
    iso[32808..32840].copy_from_slice(&label);
    iso[40000..40011].copy_from_slice(b"meta_data!!");
    iso
}

#[test]
fn config_drives_decode_from_base64_gzip_or_plain_and_urls() {
    let iso = config_drive_iso();
    assert_eq!(decode_config_drive(&b64(&gzip(&iso)), false).unwrap(), iso);
    assert_eq!(decode_config_drive(&b64(&iso), false).unwrap(), iso);
    // Fetched from a URL, the bytes may be the ISO itself.
    assert_eq!(decode_config_drive(&iso, true).unwrap(), iso);
    assert!(decode_config_drive(b"not base64 !!", false).is_err());
    let huge = gzip(&vec![0u8; MAX_CONFIG_DRIVE + 1]);
    let err = decode_config_drive(&b64(&huge), false).unwrap_err();
    assert!(err.to_string().contains("64 MiB"), "{err}");
}

/// An 8 MiB whole-disk image with a GPT and one partition, written at the start of a
/// `disk_mib` disk file.
fn gpt_disk(dir: &std::path::Path, disk_mib: u64) -> File {
    let mut image = Cursor::new(vec![0u8; 8 * MIB as usize]);
    let mut gpt = GPT::new_from(&mut image, 512, [7; 16]).unwrap();
    gpt[1] = GPTPartitionEntry {
        partition_type_guid: [1; 16],
        unique_partition_guid: [2; 16],
        starting_lba: 2048,
        ending_lba: 8191,
        attribute_bits: 0,
        partition_name: "root".into(),
    };
    gpt.write_into(&mut image).unwrap();
    GPT::write_protective_mbr_into(&mut image, 512).unwrap();
    let path = dir.join("disk");
    let mut bytes = image.into_inner();
    bytes.resize((disk_mib * MIB) as usize, 0);
    std::fs::write(&path, bytes).unwrap();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

#[test]
fn gpt_backup_moves_to_the_end_and_the_config_drive_takes_the_last_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let file = gpt_disk(dir.path(), 200);
    assert_eq!(partition_count(&file).unwrap(), 1);
    assert!(fix_gpt(&file).unwrap());
    assert!(!fix_gpt(&file).unwrap(), "a second fix changes nothing");
    let sectors = 200 * MIB / 512;
    let gpt = read_gpt(&file).unwrap();
    assert_eq!(gpt.header.backup_lba, sectors - 1);

    let iso = config_drive_iso();
    let placed = write_config_drive(&file, &iso).unwrap();
    assert_eq!(placed.number, 2);
    assert!(!placed.reused);
    assert_eq!(placed.len, 64 * MIB);
    assert!(placed.offset + placed.len <= (sectors - 33) * 512);
    assert!(placed.offset >= 200 * MIB - 66 * MIB);
    let gpt = read_gpt(&file).unwrap();
    assert_eq!(gpt[2].partition_name.as_str(), "config-2");
    assert_eq!(gpt[1].partition_name.as_str(), "root");
    let mut back = vec![0u8; iso.len()];
    file.read_exact_at(&mut back, placed.offset).unwrap();
    assert_eq!(back, iso);
    // The protective MBR now covers the whole disk.
    let mut count = [0u8; 4];
    file.read_exact_at(&mut count, 446 + 12).unwrap();
    assert_eq!(u64::from(u32::from_le_bytes(count)), sectors - 1);

    // Written again (a redeploy of the same image): the partition is found and reused.
    let again = write_config_drive(&file, &iso).unwrap();
    assert!(again.reused);
    assert_eq!(again.offset, placed.offset);
}

#[test]
fn mbr_disks_get_a_new_primary_partition() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk");
    let mut disk = vec![0u8; (100 * MIB) as usize];
    disk[440..444].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
    disk[446 + 4] = 0x83;
    disk[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    disk[446 + 12..446 + 16].copy_from_slice(&(16384u32).to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    std::fs::write(&path, disk).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    assert_eq!(disk_identifier(&file).unwrap(), "0xdeadbeef");
    assert_eq!(partition_count(&file).unwrap(), 1);
    assert!(!fix_gpt(&file).unwrap());
    let iso = config_drive_iso();
    let placed = write_config_drive(&file, &iso).unwrap();
    assert_eq!(placed.number, 2);
    assert_eq!(placed.offset % MIB, 0);
    assert!(placed.offset + placed.len <= 100 * MIB);
    let mut mbr = [0u8; 512];
    file.read_exact_at(&mut mbr, 0).unwrap();
    let entries = mbr_entries(&mbr);
    assert_eq!(entries[1], (0x83, placed.offset / 512, 64 * MIB / 512));
    assert_eq!(entries[0], (0x83, 2048, 16384));
}

#[test]
fn a_disk_without_a_partition_table_gets_no_config_drive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk");
    std::fs::write(&path, vec![0u8; (80 * MIB) as usize]).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    assert_eq!(partition_count(&file).unwrap(), 0);
    let err = write_config_drive(&file, &config_drive_iso()).unwrap_err();
    assert!(err.to_string().contains("no partition table"), "{err}");
}
