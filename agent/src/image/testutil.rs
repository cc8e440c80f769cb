//! Helpers for image tests: deterministic content, qemu-img, digests, and running the
//! pipeline against a file disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::checksum::{Algorithm, ExpectedDigest};
use super::pipeline::{write_image, WriteRequest, Written};
use super::source::DownloadOptions;
use super::target::DiskFile;
use super::ImageError;
use crate::net::http::HttpTls;
use crate::settings::TlsVersion;

pub const MIB: usize = 1 << 20;

/// `len` bytes mixing pseudo-random data, text and all-zero stretches.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let block = (state % 5) as u8;
        let n = (64 * 1024).min(len - out.len());
        match block {
            0 => out.extend(std::iter::repeat_n(0u8, n)),
            1 => out.extend(b"rivet writes disks. ".iter().cycle().take(n)),
            _ => {
                let mut s = state;
                out.extend((0..n).map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 33) as u8
                }));
            }
        }
    }
    out
}

/// Runs a tool; a missing tool or a failure fails the test with its output.
pub fn run(tool: &str, args: &[&str]) {
    let output = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} is required by this test (Debian package qemu-utils; ci/setup installs it): {e}")
    });
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn qemu_img(args: &[&str]) {
    run("qemu-img", args);
}

pub fn qemu_io(args: &[&str]) {
    run("qemu-io", args);
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// `blkid -p`'s value of `tag` (`TYPE`, `LABEL`, `UUID`) for the file system at `path`;
/// empty when there is none.
pub fn blkid(path: &Path, tag: &str) -> String {
    let output = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", tag, path_str(path)])
        .output()
        .expect("blkid (util-linux) is required by this test");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A new file of `len` bytes (sparse) at `path`, open for reading and writing.
pub fn sized_file(path: &Path, len: u64) -> std::fs::File {
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    file.set_len(len).unwrap();
    file
}

pub fn sha256(data: &[u8]) -> String {
    let mut hasher = Algorithm::Sha256.hasher();
    hasher.update(data);
    hasher.finish_hex()
}

pub fn sha256_file(path: &Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

/// Download options for tests: short timeouts and retry interval.
pub fn options(retries: u32) -> DownloadOptions {
    DownloadOptions {
        timeout: Duration::from_secs(5),
        retries,
        retry_interval: Duration::from_millis(50),
        deadline: None,
        tls: HttpTls {
            insecure: false,
            cafile: None,
            certfile: None,
            keyfile: None,
            min_version: TlsVersion::Tls12,
        },
        authorization: None,
        http_proxy: None,
        https_proxy: None,
        no_proxy: None,
    }
}

/// A disk file of `size` bytes filled with `fill`.
pub fn disk(dir: &Path, size: usize, fill: u8) -> PathBuf {
    let path = dir.join("disk");
    std::fs::write(&path, vec![fill; size]).unwrap();
    path
}

pub fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Writes `urls` to the disk file at `disk` with the sha256 `hex`.
pub fn write_to(
    disk: &Path,
    urls: &[String],
    hex: &str,
    declared: Option<&str>,
    download: DownloadOptions,
) -> Result<Written, ImageError> {
    let target = Arc::new(DiskFile::open(disk).unwrap());
    let permitted = ["raw", "gpt", "qcow2"].map(String::from);
    write_image(
        target,
        &WriteRequest {
            urls,
            expected: ExpectedDigest {
                algorithm: Algorithm::Sha256,
                hex: hex.to_string(),
            },
            declared_format: declared,
            permitted_formats: &permitted,
            download,
            known_zero: false,
            meter: None,
        },
    )
}
