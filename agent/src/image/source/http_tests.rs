//! Images over HTTP against a real server on loopback that injects faults: dropped
//! connections (resume with Range + If-Range), files that change (start over), 5xx (retried)
//! and 4xx (fatal), stalls (read timeout, then resume), wrong checksums, auth headers, and
//! qcow2 tables read with range requests.

use std::io::Write;
use std::time::Duration;

use crate::image::source::test_server::{Fault, ImageServer, Seen, Validators, LAST_MODIFIED};
use crate::image::testutil::*;
use crate::image::ImageError;

fn gpt_less_image(len: usize) -> Vec<u8> {
    content(len, 42)
}

fn ranges(seen: &[Seen]) -> Vec<Option<String>> {
    seen.iter().map(|s| s.range.clone()).collect()
}

#[test]
fn http_image_resumes_with_if_range_after_a_dropped_connection() {
    let server = ImageServer::start();
    let image = gpt_less_image(6 * MIB + 4096);
    let url = server.put("disk.raw", &image);
    server.faults(&[Fault::DropAfter(2 * MIB + 1000)]);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 8 * MIB, 0xee);
    let written = write_to(&disk, &[url], &sha256(&image), Some("raw"), options(3)).unwrap();
    assert_eq!(written.file_bytes, image.len() as u64);
    assert_eq!(&std::fs::read(&disk).unwrap()[..image.len()], &image[..]);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range, None);
    let resumed_at: usize = seen[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("not a resume: {seen:?}"));
    assert!(
        resumed_at > 0 && resumed_at <= 2 * MIB + 1000,
        "{resumed_at}"
    );
    assert_eq!(
        seen[1].if_range.as_deref(),
        Some(server.etag("disk.raw").as_str())
    );
    assert_eq!(seen[1].status, 206);
}

#[test]
fn http_image_that_changes_on_the_server_starts_over_from_byte_zero() {
    let server = ImageServer::start();
    let old = gpt_less_image(3 * MIB);
    let new = content(3 * MIB, 99);
    let url = server.put("disk.raw", &old);
    let old_etag = server.etag("disk.raw");
    server.faults(&[Fault::DropAfter(MIB), Fault::Replace(new.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 4 * MIB, 0xee);
    write_to(&disk, &[url], &sha256(&new), None, options(2)).unwrap();
    assert_eq!(&std::fs::read(&disk).unwrap()[..new.len()], &new[..]);
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    // The resume named the old ETag; the server answered with the whole new file.
    assert_eq!(seen[1].if_range.as_deref(), Some(old_etag.as_str()));
    assert_eq!(seen[1].status, 200);
    // The write started over with a plain GET.
    assert_eq!(seen[2].range, None);
}

#[test]
fn http_5xx_is_retried_and_4xx_is_fatal_for_every_url() {
    let server = ImageServer::start();
    let image = gpt_less_image(MIB + 512);
    let url = server.put("disk.raw", &image);
    server.faults(&[Fault::Status(500), Fault::Status(503)]);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 4 * MIB, 0xee);
    write_to(
        &disk,
        std::slice::from_ref(&url),
        &sha256(&image),
        None,
        options(2),
    )
    .unwrap();
    assert_eq!(
        server.seen().iter().map(|s| s.status).collect::<Vec<_>>(),
        [500, 503, 200]
    );

    // A 404 ends everything: the second URL is not tried, the disk is not touched.
    let server = ImageServer::start();
    let good = server.put("good.raw", &image);
    let missing = format!("{}/missing.raw", server.base);
    let disk = disk_named(dir.path(), "disk2", 4 * MIB, 0x77);
    let err = write_to(&disk, &[missing, good], &sha256(&image), None, options(2)).unwrap_err();
    assert!(err.is_fatal(), "{err:?}");
    assert!(err.to_string().contains("404"), "{err}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "missing.raw");
    assert!(std::fs::read(&disk).unwrap().iter().all(|&b| b == 0x77));
}

fn disk_named(dir: &std::path::Path, name: &str, size: usize, fill: u8) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, vec![fill; size]).unwrap();
    path
}

#[test]
fn http_wrong_checksum_is_retried_then_leaves_the_disk_unbootable() {
    let server = ImageServer::start();
    let image = gpt_less_image(2 * MIB);
    let url = server.put("disk.raw", &image);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 4 * MIB, 0xee);
    let wrong = "ab".repeat(32);
    let err = write_to(&disk, &[url], &wrong, None, options(1)).unwrap_err();
    match &err {
        ImageError::Exhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 2);
            assert!(matches!(**last, ImageError::Mismatch { .. }), "{last:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.seen().len(), 2);
    let written = std::fs::read(&disk).unwrap();
    assert!(written[..MIB].iter().all(|&b| b == 0), "first MiB cleared");
    assert!(
        written[3 * MIB..].iter().all(|&b| b == 0),
        "last MiB cleared"
    );
}

#[test]
fn http_stalled_transfer_times_out_and_resumes_and_slow_answers_are_waited_for() {
    let server = ImageServer::start();
    let image = gpt_less_image(3 * MIB);
    let url = server.put("disk.raw", &image);
    server.faults(&[
        Fault::Delay(Duration::from_millis(200)),
        Fault::Status(502),
        Fault::StallAfter(MIB, Duration::from_secs(5)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 4 * MIB, 0xee);
    let mut opts = options(3);
    opts.timeout = Duration::from_millis(800);
    // The first answer comes late but within the timeout; the next rounds see a 502, then a
    // stall the client gives up on and resumes after.
    let first = write_to(
        &disk,
        std::slice::from_ref(&url),
        &sha256(&image),
        None,
        opts.clone(),
    )
    .unwrap();
    assert_eq!(first.file_bytes, image.len() as u64);
    let second = write_to(&disk, &[url], &sha256(&image), None, opts).unwrap();
    assert_eq!(second.file_bytes, image.len() as u64);
    assert_eq!(&std::fs::read(&disk).unwrap()[..image.len()], &image[..]);
    let seen = server.seen();
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        [200, 502, 200, 206],
        "{seen:?}"
    );
    assert!(
        seen[3].range.is_some() && seen[3].if_range.is_some(),
        "{seen:?}"
    );
}

#[test]
fn http_sends_the_authorization_header_it_is_given() {
    let server = ImageServer::start();
    let image = gpt_less_image(MIB);
    let url = server.put("disk.raw", &image);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 2 * MIB, 0xee);
    let mut opts = options(0);
    opts.authorization = Some("Bearer s3cret-token".into());
    write_to(&disk, &[url], &sha256(&image), None, opts).unwrap();
    assert_eq!(
        server.seen()[0].authorization.as_deref(),
        Some("Bearer s3cret-token")
    );
}

#[test]
fn http_qcow2_reads_its_tables_with_range_requests_and_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("source.raw");
    std::fs::write(&raw, content(5 * MIB, 5)).unwrap();
    let qcow2 = dir.path().join("image.qcow2");
    qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=65536",
        path_str(&raw),
        path_str(&qcow2),
    ]);
    let reference = dir.path().join("reference.raw");
    qemu_img(&[
        "convert",
        "-f",
        "qcow2",
        "-O",
        "raw",
        path_str(&qcow2),
        path_str(&reference),
    ]);
    let bytes = std::fs::read(&qcow2).unwrap();
    let server = ImageServer::start();
    let url = server.put("image.qcow2", &bytes);
    // The main stream drops once too: it resumes while the tables came from ranges.
    server.faults(&[Fault::DropAfter(bytes.len() / 2)]);
    let disk = disk(dir.path(), 8 * MIB, 0xee);
    write_to(&disk, &[url], &sha256(&bytes), Some("qcow2"), options(3)).unwrap();
    let expected = std::fs::read(&reference).unwrap();
    assert_eq!(
        &std::fs::read(&disk).unwrap()[..expected.len()],
        &expected[..]
    );
    let seen = server.seen();
    let etag = server.etag("image.qcow2");
    let range_reads: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.range.as_deref().is_some_and(|r| !r.ends_with('-')))
        .collect();
    assert!(
        range_reads.len() >= 2,
        "L1 and L2 reads: {:?}",
        ranges(&seen)
    );
    assert!(range_reads
        .iter()
        .all(|s| s.status == 206 && s.if_range.as_deref() == Some(etag.as_str())));
}

#[test]
fn http_checksum_files_are_fetched_and_parsed() {
    let server = ImageServer::start();
    let image = gpt_less_image(MIB);
    let mut sums = Vec::new();
    writeln!(sums, "# sums\n{}  other.raw", "0".repeat(64)).unwrap();
    writeln!(sums, "{} *disk.raw", sha256(&image)).unwrap();
    let sums_url = server.put("SHA256SUMS", &sums);
    let body = crate::image::source::fetch_bytes(&sums_url, &options(0), 1 << 20).unwrap();
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        crate::image::checksum::parse_checksum_file(&text, "disk.raw").unwrap(),
        sha256(&image)
    );
    let err = crate::image::source::fetch_bytes(&sums_url, &options(0), 10).unwrap_err();
    assert!(err.to_string().contains("larger than 10 bytes"), "{err}");
}

/// Steps run on a blocking thread of the agent's runtime; the source's own runtime must work
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_download_runs_inside_a_blocking_task_of_the_agent_runtime() {
    let server = ImageServer::start();
    let image = gpt_less_image(2 * MIB);
    let url = server.put("disk.raw", &image);
    server.faults(&[Fault::DropAfter(MIB)]);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 4 * MIB, 0xee);
    let hex = sha256(&image);
    let path = disk.clone();
    let written =
        tokio::task::spawn_blocking(move || write_to(&path, &[url], &hex, None, options(2)))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(written.file_bytes, image.len() as u64);
    assert_eq!(&std::fs::read(&disk).unwrap()[..image.len()], &image[..]);
}

#[test]
fn http_resume_uses_last_modified_without_a_strong_etag_and_starts_over_without_either() {
    let server = ImageServer::start();
    *server.state.validators.lock().unwrap() = Validators::WeakAndDate;
    let image = gpt_less_image(3 * MIB);
    let url = server.put("disk.raw", &image);
    server.faults(&[Fault::DropAfter(MIB + 10)]);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 4 * MIB, 0xee);
    write_to(
        &disk,
        std::slice::from_ref(&url),
        &sha256(&image),
        None,
        options(2),
    )
    .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].if_range.as_deref(), Some(LAST_MODIFIED));
    assert_eq!(seen[1].status, 206);

    let server = ImageServer::start();
    *server.state.validators.lock().unwrap() = Validators::Nothing;
    let url = server.put("disk.raw", &image);
    server.faults(&[Fault::DropAfter(MIB + 10)]);
    write_to(&disk, &[url], &sha256(&image), None, options(2)).unwrap();
    assert_eq!(ranges(&server.seen()), [None, None]);
    assert_eq!(&std::fs::read(&disk).unwrap()[..image.len()], &image[..]);
}

#[test]
fn http_goes_through_the_proxy_unless_no_proxy_names_the_host() {
    let proxy = ImageServer::start();
    let image = gpt_less_image(MIB);
    proxy.put("disk.raw", &image);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 2 * MIB, 0xee);
    let mut opts = options(0);
    opts.http_proxy = Some(proxy.base.clone());
    // A host that does not resolve: only the proxy can answer for it.
    let url = "http://images.rivet.invalid/disk.raw".to_string();
    write_to(&disk, &[url], &sha256(&image), None, opts.clone()).unwrap();
    assert_eq!(
        proxy.seen()[0].host.as_deref(),
        Some("images.rivet.invalid")
    );

    let direct = ImageServer::start();
    let url = direct.put("disk.raw", &image);
    opts.no_proxy = Some("127.0.0.1".into());
    write_to(&disk, &[url], &sha256(&image), None, opts).unwrap();
    assert_eq!(proxy.seen().len(), 1, "no_proxy bypassed the proxy");
    assert_eq!(direct.seen().len(), 1);
}

#[test]
fn http_download_ends_at_image_download_max_duration() {
    let server = ImageServer::start();
    let image = gpt_less_image(2 * MIB);
    let url = server.put("disk.raw", &image);
    server.faults(&[Fault::StallAfter(MIB, Duration::from_secs(2))]);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 4 * MIB, 0xee);
    let mut opts = options(3);
    opts.deadline = Some(std::time::Instant::now() + Duration::from_millis(300));
    let err = write_to(&disk, &[url], &sha256(&image), None, opts).unwrap_err();
    assert!(err.is_fatal(), "{err:?}");
    assert!(
        err.to_string().contains("image_download_max_duration"),
        "{err}"
    );
    assert_eq!(server.seen().len(), 1);
    assert!(std::fs::read(&disk).unwrap()[..MIB].iter().all(|&b| b == 0));
}
