//! The pipeline on local files: compressed raw images, format rules, the first MiB.

use std::io::Write;

use crate::image::testutil::*;
use crate::image::ImageError;

fn gzip(data: &[u8]) -> Vec<u8> {
    // Two members, as pigz and concatenated gzip files have.
    let half = data.len() / 2;
    let mut out = Vec::new();
    for part in [&data[..half], &data[half..]] {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(part).unwrap();
        out.extend(encoder.finish().unwrap());
    }
    out
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

#[test]
fn compressed_raw_images_are_written_decompressed() {
    let image = content(5 * MIB + 777, 3);
    for (name, packed) in [
        ("gz", gzip(&image)),
        ("xz", xz(&image)),
        ("zst", zstd(&image)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("disk.raw.{name}"));
        std::fs::write(&path, &packed).unwrap();
        let disk = disk(dir.path(), 8 * MIB, 0xee);
        let written = write_to(
            &disk,
            &[file_url(&path)],
            &sha256(&packed),
            Some("raw"),
            options(0),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(written.image_bytes, image.len() as u64, "{name}");
        assert_eq!(written.file_bytes, packed.len() as u64, "{name}");
        let content = std::fs::read(&disk).unwrap();
        assert_eq!(&content[..image.len()], &image[..], "{name}");
    }
}

#[test]
fn a_corrupt_compressed_stream_fails_and_clears_the_disk() {
    let image = content(3 * MIB, 4);
    let mut packed = gzip(&image);
    let middle = packed.len() / 2;
    packed[middle..middle + 64].fill(0x55);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw.gz");
    std::fs::write(&path, &packed).unwrap();
    let disk = disk(dir.path(), 4 * MIB, 0xee);
    let err = write_to(
        &disk,
        &[file_url(&path)],
        &sha256(&packed),
        None,
        options(0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("gzip"), "{err}");
    let content = std::fs::read(&disk).unwrap();
    assert!(content[..MIB].iter().all(|&b| b == 0));
}

#[test]
fn declared_formats_are_checked_against_the_content_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = dir.path().join("image.qcow2");
    qemu_img(&["create", "-f", "qcow2", path_str(&qcow2), "1M"]);
    let disk = disk(dir.path(), 4 * MIB, 0x66);
    let err = write_to(
        &disk,
        &[file_url(&qcow2)],
        &sha256_file(&qcow2),
        Some("raw"),
        options(0),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Format(_)), "{err:?}");
    assert!(err.is_fatal());
    assert!(std::fs::read(&disk).unwrap().iter().all(|&b| b == 0x66));

    // An ISO is not in the default permitted formats.
    let mut iso = vec![0u8; 2 * MIB];
    iso[0x8001..0x8006].copy_from_slice(b"CD001");
    let path = dir.path().join("image.iso");
    std::fs::write(&path, &iso).unwrap();
    let err = write_to(&disk, &[file_url(&path)], &sha256(&iso), None, options(0)).unwrap_err();
    assert!(err.to_string().contains("not permitted"), "{err}");
    assert!(std::fs::read(&disk).unwrap().iter().all(|&b| b == 0x66));
}

#[test]
fn a_raw_image_larger_than_the_disk_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let image = content(3 * MIB, 8);
    let path = dir.path().join("disk.raw");
    std::fs::write(&path, &image).unwrap();
    let disk = disk(dir.path(), 2 * MIB, 0x66);
    let err = write_to(&disk, &[file_url(&path)], &sha256(&image), None, options(0)).unwrap_err();
    assert!(err.to_string().contains("has only"), "{err}");
    assert!(std::fs::read(&disk).unwrap().iter().all(|&b| b == 0x66));
}
