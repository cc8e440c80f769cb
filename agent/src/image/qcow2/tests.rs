//! qcow2 conversion against `qemu-img convert -O raw`, byte for byte, and the refusals.

use std::path::Path;

use super::*;
use crate::image::testutil::*;
use crate::image::ImageError;

/// Converts `qcow2` with qemu-img and with the pipeline (to a disk 3 MiB larger, filled
/// with garbage) and compares.
fn assert_converts_like_qemu(dir: &Path, qcow2: &Path) {
    let reference = dir.join("reference.raw");
    qemu_img(&[
        "convert",
        "-f",
        "qcow2",
        "-O",
        "raw",
        path_str(qcow2),
        path_str(&reference),
    ]);
    let expected = std::fs::read(&reference).unwrap();
    let disk = disk(dir, expected.len() + 3 * MIB, 0xee);
    let written = write_to(
        &disk,
        &[file_url(qcow2)],
        &sha256_file(qcow2),
        Some("qcow2"),
        options(0),
    )
    .unwrap();
    assert_eq!(written.image_bytes, expected.len() as u64);
    let content = std::fs::read(&disk).unwrap();
    let differs = content[..expected.len()]
        .iter()
        .zip(&expected)
        .position(|(a, b)| a != b);
    assert_eq!(
        differs, None,
        "first difference from qemu-img at byte {differs:?}"
    );
    // Past the image: the old content, then the cleared last MiB.
    assert!(content[expected.len()..content.len() - MIB]
        .iter()
        .all(|&b| b == 0xee));
    assert!(content[content.len() - MIB..].iter().all(|&b| b == 0));
}

fn raw_source(dir: &Path, len: usize, seed: u64) -> std::path::PathBuf {
    let path = dir.join("source.raw");
    std::fs::write(&path, content(len, seed)).unwrap();
    path
}

#[test]
fn qcow2_image_cluster_sizes_match_qemu_img() {
    for (cluster, compat) in [
        ("512", "1.1"),
        ("4096", "0.10"),
        ("65536", "1.1"),
        ("2M", "1.1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // Not a whole number of clusters: the last one is partial.
        let raw = raw_source(dir.path(), 6 * MIB + 1536, 7);
        let qcow2 = dir.path().join("image.qcow2");
        let opts = format!("cluster_size={cluster},compat={compat}");
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            &opts,
            path_str(&raw),
            path_str(&qcow2),
        ]);
        assert_converts_like_qemu(dir.path(), &qcow2);
    }
}

#[test]
fn qcow2_image_compressed_clusters_match_qemu_img() {
    for opts in [
        "cluster_size=65536",
        "cluster_size=4096,compat=0.10",
        "cluster_size=65536,compression_type=zstd",
        "cluster_size=2M,compression_type=zstd",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let raw = raw_source(dir.path(), 5 * MIB + 512, 11);
        let qcow2 = dir.path().join("image.qcow2");
        qemu_img(&[
            "convert",
            "-c",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            opts,
            path_str(&raw),
            path_str(&qcow2),
        ]);
        assert_converts_like_qemu(dir.path(), &qcow2);
    }
}

#[test]
fn qcow2_image_zero_clusters_and_out_of_order_data_match_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = dir.path().join("image.qcow2");
    let q = path_str(&qcow2);
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=65536",
        q,
        "12M",
    ]);
    // Written back to front, so host order is not guest order; zero clusters both
    // unallocated (-z on nothing) and over allocated data.
    qemu_io(&[
        "-f",
        "qcow2",
        "-c",
        "write -P 0xc1 9M 1M",
        "-c",
        "write -P 0xa7 0 1M",
        "-c",
        "write -P 0x5e 3M 2M",
        "-c",
        "write -z 6M 1M",
        "-c",
        "write -z 3M 512k",
        "-c",
        "write -P 0x11 11M 4k",
        q,
    ]);
    assert_converts_like_qemu(dir.path(), &qcow2);
}

#[test]
fn qcow2_image_with_internal_snapshot_converts_the_active_layer() {
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = dir.path().join("image.qcow2");
    let q = path_str(&qcow2);
    qemu_img(&["create", "-f", "qcow2", q, "4M"]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 0x01 0 2M", q]);
    qemu_img(&["snapshot", "-c", "before", q]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 0x02 1M 2M", q]);
    assert_converts_like_qemu(dir.path(), &qcow2);
}

fn refusal(dir: &Path, qcow2: &Path) -> String {
    let disk = disk(dir, 16 * MIB, 0x33);
    let err = write_to(
        &disk,
        &[file_url(qcow2)],
        &sha256_file(qcow2),
        None,
        options(0),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Qcow2(_)), "{err:?}");
    // The disk was not touched.
    assert!(std::fs::read(&disk).unwrap().iter().all(|&b| b == 0x33));
    err.to_string()
}

#[test]
fn qcow2_image_unsafe_features_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    let base = d("base.qcow2");
    qemu_img(&["create", "-f", "qcow2", path_str(&base), "4M"]);

    let over = d("over.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        path_str(&base),
        "-F",
        "qcow2",
        path_str(&over),
    ]);
    assert!(refusal(dir.path(), &over).contains("backing file"));

    let external = d("external.qcow2");
    let data = d("external.data");
    let opts = format!("data_file={}", path_str(&data));
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        &opts,
        path_str(&external),
        "4M",
    ]);
    assert!(refusal(dir.path(), &external).contains("external data file"));

    // Encryption (crypt_method 2, LUKS), patched in: qemu-img's LUKS key setup times itself
    // and fails on a busy machine.
    let encrypted = d("encrypted.qcow2");
    qemu_img(&["create", "-f", "qcow2", path_str(&encrypted), "4M"]);
    let mut bytes = std::fs::read(&encrypted).unwrap();
    bytes[35] = 2;
    std::fs::write(&encrypted, bytes).unwrap();
    assert!(refusal(dir.path(), &encrypted).contains("encrypted"));

    let extl2 = d("extl2.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on",
        path_str(&extl2),
        "4M",
    ]);
    assert!(refusal(dir.path(), &extl2).contains("extended L2"));

    // The corrupt bit, and an unknown incompatible feature bit.
    for (bit, expected) in [(0x02u8, "corrupt"), (0x80u8, "unknown incompatible")] {
        let patched = d("patched.qcow2");
        qemu_img(&["create", "-f", "qcow2", path_str(&patched), "4M"]);
        let mut bytes = std::fs::read(&patched).unwrap();
        bytes[79] |= bit;
        std::fs::write(&patched, bytes).unwrap();
        assert!(refusal(dir.path(), &patched).contains(expected));
    }
}

#[test]
fn qcow2_image_larger_than_the_disk_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = dir.path().join("big.qcow2");
    qemu_img(&["create", "-f", "qcow2", path_str(&qcow2), "64M"]);
    let disk = disk(dir.path(), 8 * MIB, 0x44);
    let err = write_to(
        &disk,
        &[file_url(&qcow2)],
        &sha256_file(&qcow2),
        None,
        options(0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("has only"), "{err}");
    assert!(std::fs::read(&disk).unwrap().iter().all(|&b| b == 0x44));
}

/// Header bytes for `parse_header` unit tests: v3, 64 KiB clusters, `size` bytes.
fn header(size: u64) -> Vec<u8> {
    let mut h = vec![0u8; 4096];
    h[..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    h[20..24].copy_from_slice(&16u32.to_be_bytes());
    h[24..32].copy_from_slice(&size.to_be_bytes());
    h[36..40].copy_from_slice(&2u32.to_be_bytes());
    h[40..48].copy_from_slice(&0x30000u64.to_be_bytes());
    h[100..104].copy_from_slice(&112u32.to_be_bytes());
    h
}

#[test]
fn qcow2_header_checks() {
    let parsed = parse_header(&header(1 << 30)).unwrap();
    assert_eq!(parsed.cluster_size(), 65536);
    assert_eq!(parsed.size, 1 << 30);
    assert_eq!(parsed.compression, CompressionType::Deflate);
    assert_eq!(parsed.header_len, 120);

    // One L1 entry covers 512 MiB with 64 KiB clusters: 1 GiB needs two.
    let mut short_l1 = header(1 << 30);
    short_l1[36..40].copy_from_slice(&0u32.to_be_bytes());
    assert!(parse_header(&short_l1)
        .unwrap_err()
        .to_string()
        .contains("L1 table has 0"));

    let mut bad_cluster = header(1 << 20);
    bad_cluster[20..24].copy_from_slice(&30u32.to_be_bytes());
    assert!(parse_header(&bad_cluster)
        .unwrap_err()
        .to_string()
        .contains("cluster_bits"));

    let mut zstd = header(1 << 20);
    zstd[79] = 0x08;
    zstd[104] = 1;
    assert_eq!(
        parse_header(&zstd).unwrap().compression,
        CompressionType::Zstd
    );
    zstd[104] = 7;
    assert!(parse_header(&zstd).is_err());

    let mut unaligned_l1 = header(1 << 20);
    unaligned_l1[40..48].copy_from_slice(&0x30200u64.to_be_bytes());
    assert!(parse_header(&unaligned_l1).is_err());

    assert!(parse_header(b"QFI\xfb").is_err());
}

#[test]
fn qcow2_plan_refuses_clusters_used_twice_and_outside_the_file() {
    let header = parse_header(&header(1 << 20)).unwrap();
    // L1 at 0x30000 -> L2 at 0x40000; guest clusters 0 and 1 both at 0x50000.
    let mut file = vec![0u8; 0x60000];
    file[0x30000..0x30008].copy_from_slice(&0x40000u64.to_be_bytes());
    file[0x40000..0x40008].copy_from_slice(&0x50000u64.to_be_bytes());
    file[0x40008..0x40010].copy_from_slice(&0x50000u64.to_be_bytes());
    let read = |file: &Vec<u8>| {
        let file = file.clone();
        move |offset: u64, buf: &mut [u8]| {
            buf.copy_from_slice(&file[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
    };
    let err = plan(header.clone(), Some(file.len() as u64), &mut read(&file)).unwrap_err();
    assert!(err.to_string().contains("more than once"), "{err}");

    file[0x40008..0x40010].copy_from_slice(&0x70000u64.to_be_bytes());
    let err = plan(header.clone(), Some(file.len() as u64), &mut read(&file)).unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");

    file[0x40008..0x40010].copy_from_slice(&0u64.to_be_bytes());
    let planned = plan(header, Some(file.len() as u64), &mut read(&file)).unwrap();
    // Cluster 0 is data, the other 15 read as zeros.
    assert_eq!(planned.zeros, vec![(65536, 15 * 65536)]);
    assert!(planned
        .extents
        .iter()
        .any(|e| e.kind == ExtentKind::Data { guest: 0 } && e.host == 0x50000));
}
