//! Certificate generation and file handling, checked with rustls' own verifier.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls_pki_types::{ServerName, UnixTime};

use super::*;

const SKEW: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

fn generate(ip: IpAddr, curve: Curve, now: SystemTime) -> SelfSigned {
    generate_self_signed("node-7.example", ip, curve, SKEW, now).expect("certificate")
}

/// Verifies `cert` as a server certificate for `ip` at `at`, trusting only itself.
fn verify(cert: &SelfSigned, ip: IpAddr, at: SystemTime) -> Result<(), rustls::Error> {
    let leaf = &cert.identity.cert_chain[0];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(leaf.clone()).expect("trust anchor");
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let since_epoch = at.duration_since(UNIX_EPOCH).expect("after the epoch");
    verifier
        .verify_server_cert(
            leaf,
            &[],
            &ServerName::IpAddress(ip.into()),
            &[],
            UnixTime::since_unix_epoch(since_epoch),
        )
        .map(drop)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count()
}

#[test]
fn certificate_is_valid_for_its_ip_only() {
    let now = SystemTime::now();
    for curve in [Curve::P384, Curve::P256] {
        let cert = generate(V4, curve, now);
        verify(&cert, V4, now).unwrap_or_else(|err| panic!("{curve:?}: {err}"));
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
        assert!(
            verify(&cert, other, now).is_err(),
            "{curve:?} valid for {other}"
        );
    }
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5));
    let cert = generate(v6, Curve::P384, now);
    verify(&cert, v6, now).expect("IPv6 SAN");
}

#[test]
fn validity_runs_from_clock_skew_before_to_thirty_days_after() {
    let now = SystemTime::now();
    let cert = generate(V4, Curve::P384, now);
    let minute = Duration::from_secs(60);
    verify(&cert, V4, now - SKEW + minute).expect("valid just after now - skew");
    verify(&cert, V4, now + 30 * DAY - minute).expect("valid just before now + 30 days");
    assert!(
        verify(&cert, V4, now - SKEW - minute).is_err(),
        "valid before now - skew"
    );
    assert!(
        verify(&cert, V4, now + 30 * DAY + minute).is_err(),
        "valid after 30 days"
    );
}

#[test]
fn subject_alt_name_is_critical_and_hostname_is_subject_and_issuer() {
    let cert = generate(V4, Curve::P384, SystemTime::now());
    let der = cert.identity.cert_chain[0].as_ref();
    // Extension { OID 2.5.29.17, critical TRUE, OCTET STRING { SEQUENCE { [7] 192.0.2.10 } } }
    let san = [
        0x06, 0x03, 0x55, 0x1d, 0x11, 0x01, 0x01, 0xff, 0x04, 0x08, 0x30, 0x06, 0x87, 0x04, 192, 0,
        2, 10,
    ];
    assert_eq!(count(der, &san), 1, "critical IP SAN in {der:02x?}");
    assert_eq!(count(der, b"node-7.example"), 2, "CN in subject and issuer");
    assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 key"
    );
}

#[test]
fn p521_is_refused_with_a_clear_error() {
    let error = generate_self_signed("h", V4, Curve::P521, SKEW, SystemTime::now())
        .expect_err("P-521 with ring");
    assert!(matches!(error, TlsError::UnsupportedCurve(Curve::P521)));
    assert!(error.to_string().contains("use p256 or p384"), "{error}");
}

#[test]
fn auto_tls_files_are_written_with_a_private_key_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run_dir = dir.path().join("run").join("ironic-python-agent");
    let settings = Settings {
        run_dir: run_dir.clone(),
        ..Settings::default()
    };
    let auto = auto_tls(&settings, V4).expect("auto TLS");
    assert_eq!(auto.cert_file, run_dir.join("agent.crt"));
    assert_eq!(auto.key_file, run_dir.join("agent.key"));
    let written = fs::read_to_string(&auto.cert_file).expect("cert file");
    assert_eq!(written, auto.cert_pem);
    let mode = fs::metadata(&auto.key_file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");

    // What was written loads back as a working identity.
    let identity = load_static(&auto.cert_file, &auto.key_file).expect("reload");
    assert_eq!(identity.cert_chain, auto.identity.cert_chain);
    server_config(identity.cert_chain, identity.key, TlsVersion::Tls13).expect("config");
}

#[test]
fn rewriting_replaces_a_loosely_permitted_key_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join(AUTO_TLS_KEY_FILE);
    fs::write(&key_file, "old").expect("old key");
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let cert = generate(V4, Curve::P256, SystemTime::now());
    write_auto_tls(dir.path(), &cert).expect("write");
    let mode = fs::metadata(&key_file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    assert_eq!(fs::read_to_string(&key_file).expect("key"), cert.key_pem);
}

#[test]
fn unwritable_run_dir_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, "").expect("file");
    let cert = generate(V4, Curve::P256, SystemTime::now());
    let error = write_auto_tls(&blocker.join("run"), &cert).expect_err("dir under a file");
    assert!(error.to_string().contains("not-a-dir/run"), "{error}");
}

#[test]
fn static_files_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = generate(V4, Curve::P384, SystemTime::now());
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    let garbage = dir.path().join("garbage.pem");
    fs::write(&cert_file, &cert.cert_pem).expect("cert");
    fs::write(&key_file, &cert.key_pem).expect("key");
    fs::write(&garbage, "not PEM at all\n").expect("garbage");
    let missing = dir.path().join("missing.pem");

    let message = |result: Result<TlsIdentity, TlsError>| match result {
        Ok(_) => panic!("bad TLS files accepted"),
        Err(error) => error.to_string(),
    };
    let error = message(load_static(&missing, &key_file));
    assert!(
        error.starts_with("reading TLS certificate file") && error.contains("missing.pem"),
        "{error}"
    );
    let error = message(load_static(&garbage, &key_file));
    assert!(
        error.contains("garbage.pem") && error.contains("holds no PEM certificate"),
        "{error}"
    );
    let error = message(load_static(&cert_file, &missing));
    assert!(
        error.starts_with("reading TLS key file") && error.contains("missing.pem"),
        "{error}"
    );
    // A certificate where the key should be: no key in the file.
    let error = message(load_static(&cert_file, &cert_file));
    assert!(
        error.starts_with("reading TLS key file") && error.contains("tls.crt"),
        "{error}"
    );
    load_static(&cert_file, &key_file).expect("good files");
}

#[test]
fn mismatched_key_and_certificate_are_refused() {
    let now = SystemTime::now();
    let cert = generate(V4, Curve::P384, now);
    let other = generate(V4, Curve::P384, now);
    let error = server_config(
        cert.identity.cert_chain,
        other.identity.key,
        TlsVersion::Tls12,
    )
    .expect_err("key of another certificate");
    assert!(
        error
            .to_string()
            .starts_with("building the TLS server configuration"),
        "{error}"
    );
}

#[test]
fn server_config_offers_http11_and_only_gcm_suites_for_tls12() {
    let cert = generate(V4, Curve::P384, SystemTime::now());
    let config = server_config(
        cert.identity.cert_chain,
        cert.identity.key,
        TlsVersion::Tls12,
    )
    .expect("config");
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let tls12: Vec<_> = config
        .crypto_provider()
        .cipher_suites
        .iter()
        .filter(|suite| matches!(suite, SupportedCipherSuite::Tls12(_)))
        .map(|suite| format!("{:?}", suite.suite()))
        .collect();
    assert!(!tls12.is_empty());
    assert!(tls12.iter().all(|name| name.contains("GCM")), "{tls12:?}");
}
