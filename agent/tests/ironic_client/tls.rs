//! TLS towards Ironic: cafile, insecure, client certificates, minimum version.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rivet_agent::ironic::client::{ClientError, IronicClient};
use rivet_agent::settings::{Settings, TlsVersion};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tempfile::TempDir;

use crate::fake_ironic::{recorded_lookup_answer, FakeIronic, Reply};
use crate::support::settings_for;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all as files.
struct Pki {
    dir: TempDir,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "rivet test CA");
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");

        let server_key = KeyPair::generate().expect("a server key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("server params")
            .signed_by(&server_key, &ca, &ca_key)
            .expect("a server certificate");

        let client_key = KeyPair::generate().expect("a client key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "rivet-agent");
        let client = client_params
            .signed_by(&client_key, &ca, &ca_key)
            .expect("a client certificate");

        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("writing ca.pem");
        std::fs::write(dir.path().join("client.pem"), client.pem()).expect("writing client.pem");
        std::fs::write(dir.path().join("client.key"), client_key.serialize_pem())
            .expect("writing client.key");
        Pki {
            ca_der: ca.der().clone(),
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()))
    }

    /// A server config offering `versions`, requiring a client certificate if asked.
    fn server(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        client_auth: bool,
    ) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("protocol versions");
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("adding the CA");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder
            .with_single_cert(self.server_chain.clone(), self.key())
            .expect("a server config")
    }
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

async fn try_lookup(settings: &Settings) -> Result<(), ClientError> {
    let client = IronicClient::new(settings)?;
    client
        .lookup(&["52:54:00:12:34:56".to_string()], None)
        .await
        .map(|_| ())
}

async fn tls_ironic(config: rustls::ServerConfig) -> FakeIronic {
    let ironic = FakeIronic::start_tls(config).await;
    ironic.set_lookup_default(Reply::json(200, &recorded_lookup_answer()));
    ironic
}

#[tokio::test]
async fn cafile_makes_the_server_trusted() {
    let pki = Pki::new();
    let ironic = tls_ironic(pki.server(BOTH, false)).await;
    let mut settings = settings_for(&[&ironic.url]);
    settings.cafile = Some(pki.path("ca.pem"));
    try_lookup(&settings).await.expect("trusted via cafile");
    assert_eq!(ironic.requests_to("/v1/lookup").len(), 1);
}

#[tokio::test]
async fn an_unknown_ca_is_refused() {
    let pki = Pki::new();
    let ironic = tls_ironic(pki.server(BOTH, false)).await;
    let settings = settings_for(&[&ironic.url]);
    let err = try_lookup(&settings)
        .await
        .expect_err("the test CA is not a built-in root");
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(ironic.requests().is_empty());
}

#[tokio::test]
async fn insecure_skips_verification() {
    let pki = Pki::new();
    let ironic = tls_ironic(pki.server(BOTH, false)).await;
    let mut settings = settings_for(&[&ironic.url]);
    settings.insecure = true;
    try_lookup(&settings)
        .await
        .expect("insecure accepts any certificate");
}

#[tokio::test]
async fn client_certificate_from_certfile_and_keyfile() {
    let pki = Pki::new();
    let ironic = tls_ironic(pki.server(BOTH, true)).await;
    let mut settings = settings_for(&[&ironic.url]);
    settings.cafile = Some(pki.path("ca.pem"));
    try_lookup(&settings)
        .await
        .expect_err("the server requires a client certificate");
    settings.certfile = Some(pki.path("client.pem"));
    settings.keyfile = Some(pki.path("client.key"));
    try_lookup(&settings)
        .await
        .expect("the client certificate is accepted");
}

#[tokio::test]
async fn minimum_tls_version_is_enforced() {
    let pki = Pki::new();
    let ironic = tls_ironic(pki.server(&[&rustls::version::TLS12], false)).await;
    let mut settings = settings_for(&[&ironic.url]);
    settings.cafile = Some(pki.path("ca.pem"));
    settings.tls_min_version = TlsVersion::Tls13;
    try_lookup(&settings)
        .await
        .expect_err("a TLS 1.2-only server is refused at 1.3 minimum");
    settings.tls_min_version = TlsVersion::Tls12;
    try_lookup(&settings).await.expect("TLS 1.2 allowed");
}

#[test]
fn unreadable_or_empty_tls_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut settings = settings_for(&[&url::Url::parse("https://127.0.0.1:1").expect("a URL")]);
    settings.cafile = Some(dir.path().join("missing.pem"));
    let err = IronicClient::new(&settings).expect_err("a missing cafile");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("writing a file");
    settings.cafile = Some(empty);
    let err = IronicClient::new(&settings).expect_err("an empty cafile");
    assert!(err.to_string().contains("empty.pem"), "{err}");

    settings.cafile = None;
    settings.certfile = Some(dir.path().join("client.pem"));
    let err = IronicClient::new(&settings).expect_err("certfile without keyfile");
    assert!(err.to_string().contains("keyfile"), "{err}");
}
