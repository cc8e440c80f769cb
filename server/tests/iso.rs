//! Per-node ISOs from a real rivet-server process: a small ISO with a config area made by
//! the image builder's xorriso layout (`sample_iso`, needs xorriso), signed bundles, a CA
//! and network_data; the whole answer must equal what `rivet-image-builder customize`
//! writes for the same bundle, and ranges must be slices of it.

mod common;

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use common::{add_node, Server};
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_NONE_MATCH, RANGE};
use reqwest::{Method, StatusCode};
use rivet_image_builder::customize;
use rivet_protocol::config_area::keys::SigningKey;
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../image-builder/tests/fixtures")
        .join(name)
}

/// What `rivet-image-builder customize BASE --config ... -o OUT` writes.
fn customized(base: &Path, dir: &Path, settings: &str, network_data: &str) -> Result<Vec<u8>> {
    let config = dir.join("settings");
    let network = dir.join("network_data.json");
    std::fs::write(&config, settings)?;
    std::fs::write(&network, network_data)?;
    let out = dir.join("expected.iso");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let cli = <rivet_image_builder::cli::Cli as clap::Parser>::try_parse_from([
        "rivet-image-builder".to_string(),
        "customize".into(),
        path(base),
        "--config".into(),
        path(&config),
        "--network-data".into(),
        path(&network),
        "--ca".into(),
        path(&fixture("test-ca.pem")),
        "--sign-key".into(),
        path(&fixture("bundle-signing.pem")),
        "-o".into(),
        path(&out),
    ])?;
    rivet_image_builder::run(cli)?;
    Ok(std::fs::read(&out)?)
}

struct Fetched {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

async fn fetch(
    server: &Server,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Fetched> {
    let mut request = server
        .http()?
        .request(method, format!("{}{path}", server.url()))
        .bearer_auth(server.operator_token()?);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    Ok(Fetched {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await?.to_vec(),
    })
}

/// The (Content-Range, bytes) of each part of a `multipart/byteranges` body.
fn multipart_parts(body: &[u8], boundary: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let delimiter = format!("\r\n--{boundary}");
    let find = |from: usize| {
        body[from..]
            .windows(delimiter.len())
            .position(|w| w == delimiter.as_bytes())
            .map(|at| from + at)
    };
    let mut parts = Vec::new();
    let mut at = find(0).context("no first boundary")? + delimiter.len();
    while !body[at..].starts_with(b"--") {
        let head_end = body[at..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("a part without a blank line")?
            + at;
        let head = std::str::from_utf8(&body[at..head_end])?;
        let content_range = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Range: "))
            .with_context(|| format!("no Content-Range in {head:?}"))?;
        let next = find(head_end + 4).context("a part without a closing boundary")?;
        parts.push((content_range.to_string(), body[head_end + 4..next].to_vec()));
        at = next + delimiter.len();
    }
    ensure!(
        &body[at..] == b"--\r\n",
        "trailing bytes after the last boundary"
    );
    Ok(parts)
}

fn header(fetched: &Fetched, name: reqwest::header::HeaderName) -> &str {
    fetched
        .headers
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn node_isos_are_the_base_with_the_nodes_bundle() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = SigningKey::from_pem(&std::fs::read_to_string(fixture("bundle-signing.pem"))?)?;
    let base =
        rivet_image_builder::sample_iso::build(dir.path(), 1 << 20, Some(&key.public_key()))?;
    let base_bytes = std::fs::read(&base)?;
    let len = base_bytes.len();
    // Several of the server's 256 KiB chunks.
    assert!(len > 1 << 20, "{len} bytes");
    let state = customize::read_state(&mut std::fs::File::open(&base)?)?;
    let server = Server::start_with(
        false,
        &[
            "--allow-insecure-callbacks",
            "--iso-base",
            &base.to_string_lossy(),
            "--iso-ca",
            &fixture("test-ca.pem").to_string_lossy(),
            "--iso-signing-key",
            &fixture("bundle-signing.pem").to_string_lossy(),
        ],
    )?;
    let node = add_node(&server, "n1", &["52:54:00:00:00:01"]).await?;
    let uuid = node["uuid"].as_str().context("uuid")?;
    let network_data = json!({
        "links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"}],
        "networks": [{"id": "n0", "link": "eth0", "type": "ipv4", "ip_address": "192.0.2.10",
                      "netmask": "255.255.255.0"}],
        "services": []
    });
    let before = fetch(&server, Method::GET, "/v1/nodes/n1/iso", &[]).await?;
    assert_eq!(before.status, 200);
    let (status, _) = server
        .operator(
            Method::PUT,
            "/v1/nodes/n1/network-data",
            Some(&network_data),
        )
        .await?;
    assert_eq!(status, 204);
    let (status, shown) = server
        .operator(Method::GET, "/v1/nodes/n1/network-data", None)
        .await?;
    assert_eq!((status, &shown), (200, &network_data));
    let (status, _) = server
        .operator(
            Method::PUT,
            "/v1/nodes/n1/network-data",
            Some(&json!({"links": 1})),
        )
        .await?;
    assert_eq!(status, 400);

    // The whole ISO: byte for byte what customize writes for the same bundle.
    let settings = format!(
        "# rivet-server, node {uuid}\nipa-api-url={}\n",
        server.url()
    );
    let expected = customized(&base, dir.path(), &settings, &network_data.to_string())?;
    let full = fetch(&server, Method::GET, "/v1/nodes/n1/iso", &[]).await?;
    assert_eq!(full.status, 200);
    assert_eq!(header(&full, CONTENT_LENGTH), len.to_string());
    assert_eq!(header(&full, reqwest::header::ACCEPT_RANGES), "bytes");
    ensure!(full.body.len() == len, "{} bytes of {len}", full.body.len());
    ensure!(
        full.body == expected,
        "the node ISO differs from customize's output"
    );
    ensure!(full.body != base_bytes, "no bundle was spliced in");
    let etag = header(&full, ETAG).to_string();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    assert_ne!(
        header(&before, ETAG),
        etag,
        "the ETag must change with the bundle"
    );
    assert!(header(&full, reqwest::header::LAST_MODIFIED).ends_with(" GMT"));

    // HEAD: the same headers, no body.
    let head = fetch(&server, Method::HEAD, "/v1/nodes/n1/iso", &[]).await?;
    assert_eq!(head.status, 200);
    assert_eq!(header(&head, CONTENT_LENGTH), len.to_string());
    assert_eq!(header(&head, ETAG), etag);
    assert!(head.body.is_empty());

    // Ranges, across the config area's edges and the kernel-argument fields.
    let area = state.locator.area.offset as usize;
    let area_end = area + state.locator.area.len as usize;
    let field = state.locator.kargs_fields[0] as usize;
    let ranges: Vec<(String, usize, usize)> = vec![
        (
            format!("bytes={}-{}", area - 100, area + 300),
            area - 100,
            area + 301,
        ),
        (
            format!("bytes={}-{}", area_end - 10, area_end + 10),
            area_end - 10,
            area_end + 11,
        ),
        (
            format!("bytes={}-{}", field - 1, field + 2000),
            field - 1,
            field + 2001,
        ),
        ("bytes=0-0".into(), 0, 1),
        (format!("bytes={}-", len - 3000), len - 3000, len),
        (format!("bytes={}-{}", len - 5, len + 100), len - 5, len),
        ("bytes=-700".into(), len - 700, len),
        (format!("bytes=-{}", len * 2), 0, len),
    ];
    for (range, start, end) in &ranges {
        let part = fetch(
            &server,
            Method::GET,
            "/v1/nodes/n1/iso",
            &[("range", range)],
        )
        .await?;
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(
            header(&part, CONTENT_RANGE),
            format!("bytes {start}-{}/{len}", end - 1),
            "{range}"
        );
        assert_eq!(
            header(&part, CONTENT_LENGTH),
            (end - start).to_string(),
            "{range}"
        );
        ensure!(part.body == expected[*start..*end], "{range}: wrong bytes");
    }
    for range in [
        format!("bytes={len}-"),
        "bytes=-0".into(),
        "bytes=9-3".into(),
        "bytes=a-b".into(),
    ] {
        let refused = fetch(
            &server,
            Method::GET,
            "/v1/nodes/n1/iso",
            &[("range", &range)],
        )
        .await?;
        assert_eq!(refused.status, 416, "{range}");
        assert_eq!(
            header(&refused, CONTENT_RANGE),
            format!("bytes */{len}"),
            "{range}"
        );
    }

    // Several ranges: one multipart/byteranges answer, parts in the order asked, each with
    // its Content-Range; an unsatisfiable member is left out.
    let asked = [&ranges[2], &ranges[0], &ranges[4]];
    let specs: Vec<String> = asked
        .iter()
        .map(|(_, start, end)| format!("{start}-{}", end - 1))
        .chain([format!("{}-", len + 10)])
        .collect();
    let range = format!("bytes={}", specs.join(", "));
    let multi = fetch(
        &server,
        Method::GET,
        "/v1/nodes/n1/iso",
        &[("range", &range)],
    )
    .await?;
    assert_eq!(multi.status, 206, "{range}");
    let content_type = header(&multi, reqwest::header::CONTENT_TYPE);
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .with_context(|| format!("content type {content_type}"))?;
    assert_eq!(header(&multi, CONTENT_LENGTH), multi.body.len().to_string());
    let parts = multipart_parts(&multi.body, boundary)?;
    assert_eq!(parts.len(), asked.len(), "{range}");
    for ((content_range, bytes), (_, start, end)) in parts.iter().zip(asked) {
        assert_eq!(content_range, &format!("bytes {start}-{}/{len}", end - 1));
        ensure!(
            bytes[..] == expected[*start..*end],
            "{content_range}: wrong bytes"
        );
    }
    // Overlapping ranges are not worth a multipart answer: the whole ISO.
    let overlapping = fetch(
        &server,
        Method::GET,
        "/v1/nodes/n1/iso",
        &[("range", "bytes=0-99, 50-150")],
    )
    .await?;
    assert_eq!(overlapping.status, 200);
    ensure!(
        overlapping.body == expected,
        "overlapping ranges: the whole ISO"
    );

    // Validators: a range for another version gets the whole ISO; a known version, 304.
    let stale = fetch(
        &server,
        Method::GET,
        "/v1/nodes/n1/iso",
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    )
    .await?;
    assert_eq!(stale.status, 200);
    ensure!(
        stale.body == expected,
        "If-Range mismatch must answer the whole ISO"
    );
    let current = fetch(
        &server,
        Method::GET,
        "/v1/nodes/n1/iso",
        &[("range", "bytes=0-9"), ("if-range", &etag)],
    )
    .await?;
    assert_eq!(current.status, 206);
    let unchanged = fetch(
        &server,
        Method::GET,
        "/v1/nodes/n1/iso",
        &[(IF_NONE_MATCH.as_str(), &etag)],
    )
    .await?;
    assert_eq!(unchanged.status, 304);

    // Unknown node, no operator token.
    let missing = fetch(&server, Method::GET, "/v1/nodes/nope/iso", &[]).await?;
    assert_eq!(missing.status, 404);
    let anonymous = server
        .http()?
        .get(format!("{}/v1/nodes/n1/iso", server.url()))
        .header(RANGE, "bytes=0-9")
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);

    // A signed URL needs no token, for BMCs; a changed signature, node or expiry is refused.
    let (status, made) = server
        .operator(Method::POST, "/v1/nodes/n1/iso-url?ttl=600", None)
        .await?;
    assert_eq!(status, 200, "{made}");
    let url = made["url"].as_str().context("url")?.to_string();
    assert!(
        url.starts_with(&format!("{}/v1/isos/{uuid}?expires=", server.url())),
        "{url}"
    );
    let http = server.http()?;
    let part = http.get(&url).header(RANGE, "bytes=-5000").send().await?;
    assert_eq!(part.status(), 206);
    ensure!(
        part.bytes().await? == expected[len - 5000..],
        "signed URL: wrong bytes"
    );
    let head = http.head(&url).send().await?;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()[CONTENT_LENGTH], len.to_string().as_str());
    let (signed_part, last) = url.split_at(url.len() - 1);
    let flipped = format!("{signed_part}{}", if last == "0" { "1" } else { "0" });
    let later = url.replace("?expires=", "?expires=9");
    let other = add_node(&server, "n2", &["52:54:00:00:00:02"]).await?;
    let other_uuid = other["uuid"].as_str().context("uuid")?;
    let elsewhere = url.replace(uuid, other_uuid);
    let unsigned = format!("{}/v1/isos/{uuid}", server.url());
    for bad in [&flipped, &later, &elsewhere, &unsigned] {
        let answer = http.get(bad.as_str()).send().await?;
        assert_eq!(answer.status(), 403, "{bad}");
    }
    let (status, _) = server
        .operator(Method::POST, "/v1/nodes/n1/iso-url?ttl=0", None)
        .await?;
    assert_eq!(status, 400);
    let (_, short) = server
        .operator(Method::POST, "/v1/nodes/n1/iso-url?ttl=1", None)
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = http
        .get(short["url"].as_str().context("url")?)
        .send()
        .await?;
    assert_eq!(expired.status(), 403);
    let text = expired.text().await?;
    assert!(text.contains("expired"), "{text}");

    // The CLI writes the same file.
    let out = dir.path().join("cli.iso");
    let (ok, stdout, stderr) = server.cli(&["node", "iso", "n1", "-o", &out.to_string_lossy()])?;
    assert!(ok, "{stdout}{stderr}");
    ensure!(
        std::fs::read(&out)? == expected,
        "the CLI's download differs"
    );
    Ok(())
}

#[tokio::test]
async fn without_a_base_iso_there_are_no_node_isos() -> Result<()> {
    let server = Server::start()?;
    add_node(&server, "n1", &["52:54:00:00:00:02"]).await?;
    let answer = fetch(&server, Method::GET, "/v1/nodes/n1/iso", &[]).await?;
    assert_eq!(answer.status, 404);
    let text = String::from_utf8_lossy(&answer.body);
    assert!(text.contains("--iso-base"), "{text}");
    Ok(())
}

#[test]
fn a_base_that_is_not_a_rivet_iso_stops_serve() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = dir.path().join("plain.iso");
    std::fs::write(&base, vec![0u8; 64 << 10])?;
    let error = Server::start_with(false, &["--iso-base", &base.to_string_lossy()])
        .err()
        .context("serve must refuse a base ISO without a locator")?;
    let text = format!("{error:#}");
    assert!(text.contains("no config-area locator"), "{text}");
    Ok(())
}
