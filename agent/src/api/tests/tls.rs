//! The API over TLS: auto-TLS certificates, static files, version floor, failed handshakes.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{loopback_settings, Agent, FakeCommands, TOKEN};
use crate::api::ServeOptions;
use crate::settings::{Curve, TlsVersion};
use crate::tls::{generate_self_signed, load_static, server_config, SelfSigned};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn certificate_for(ip: IpAddr) -> SelfSigned {
    generate_self_signed(
        "rivet-test",
        ip,
        Curve::P384,
        Duration::from_secs(3600),
        SystemTime::now(),
    )
    .expect("self-signed certificate")
}

async fn tls_agent(cert: &SelfSigned, min: TlsVersion) -> Agent {
    let config = server_config(
        cert.identity.cert_chain.clone(),
        cert.identity.key.clone_key(),
        min,
    )
    .expect("server config");
    let options = ServeOptions {
        tls: Some(config),
        ..ServeOptions::default()
    };
    Agent::start_with(
        loopback_settings(Some(TOKEN)),
        FakeCommands::default(),
        options,
    )
    .await
}

/// A client that trusts exactly `pem`, as Ironic does with `agent_verify_ca`.
fn pinned_client(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("PEM"))
        .build()
        .expect("client")
}

/// A raw rustls handshake limited to `version`, trusting `cert`.
async fn handshake(
    agent: &Agent,
    cert: &SelfSigned,
    version: &'static rustls::SupportedProtocolVersion,
) -> std::io::Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert.identity.cert_chain[0].clone())
        .expect("trust anchor");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .expect("client versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(agent.server.local_addr())
        .await
        .expect("connect");
    let name = ServerName::IpAddress(LOOPBACK.into());
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map(drop)
}

#[tokio::test]
async fn auto_tls_certificate_validates_for_its_ip_san() {
    let cert = certificate_for(LOOPBACK);
    let agent = tls_agent(&cert, TlsVersion::Tls13).await;
    let response = pinned_client(&cert.cert_pem)
        .get(agent.url("/"))
        .send()
        .await
        .expect("HTTPS request with the pinned certificate");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    let self_link = body["default_version"]["links"][0]["href"]
        .as_str()
        .expect("href");
    assert!(self_link.starts_with("https://127.0.0.1:"), "{self_link}");

    let response = pinned_client(&cert.cert_pem)
        .get(agent.url(&format!("/v1/commands/?agent_token={TOKEN}")))
        .send()
        .await
        .expect("command list over HTTPS");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn certificate_for_another_ip_is_rejected() {
    let served = certificate_for(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let agent = tls_agent(&served, TlsVersion::Tls13).await;
    let result = pinned_client(&served.cert_pem)
        .get(agent.url("/v1/status"))
        .send()
        .await;
    assert!(
        result.is_err(),
        "certificate for 127.0.0.2 accepted for 127.0.0.1"
    );
}

#[tokio::test]
async fn another_certificate_is_not_trusted() {
    let served = certificate_for(LOOPBACK);
    let other = certificate_for(LOOPBACK);
    let agent = tls_agent(&served, TlsVersion::Tls12).await;
    let result = pinned_client(&other.cert_pem)
        .get(agent.url("/v1/status"))
        .send()
        .await;
    assert!(
        result.is_err(),
        "a different self-signed certificate was trusted"
    );
}

#[tokio::test]
async fn tls13_floor_refuses_tls12_clients_and_keeps_serving() {
    let cert = certificate_for(LOOPBACK);
    let agent = tls_agent(&cert, TlsVersion::Tls13).await;
    let refused = handshake(&agent, &cert, &rustls::version::TLS12).await;
    assert!(
        refused.is_err(),
        "TLS 1.2 handshake accepted with a 1.3 minimum"
    );
    handshake(&agent, &cert, &rustls::version::TLS13)
        .await
        .expect("TLS 1.3 handshake");

    // A client speaking plain HTTP to the TLS port fails its handshake too.
    let plain = reqwest::get(format!("http://{}/v1/status", agent.server.local_addr())).await;
    assert!(plain.is_err(), "plain HTTP answered on the TLS port");

    let response = pinned_client(&cert.cert_pem)
        .get(agent.url("/v1/status"))
        .send()
        .await
        .expect("server still serves after failed handshakes");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn tls12_floor_accepts_tls12_and_tls13() {
    let cert = certificate_for(LOOPBACK);
    let agent = tls_agent(&cert, TlsVersion::Tls12).await;
    handshake(&agent, &cert, &rustls::version::TLS12)
        .await
        .expect("TLS 1.2 handshake");
    handshake(&agent, &cert, &rustls::version::TLS13)
        .await
        .expect("TLS 1.3 handshake");
}

#[tokio::test]
async fn static_certificate_files_are_served() {
    let cert = certificate_for(LOOPBACK);
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_file = dir.path().join("server.pem");
    let key_file = dir.path().join("server.key");
    std::fs::write(&cert_file, &cert.cert_pem).expect("write cert");
    std::fs::write(&key_file, &cert.key_pem).expect("write key");

    let identity = load_static(&cert_file, &key_file).expect("static TLS files");
    let config =
        server_config(identity.cert_chain, identity.key, TlsVersion::Tls13).expect("config");
    let options = ServeOptions {
        tls: Some(config),
        ..ServeOptions::default()
    };
    let agent = Agent::start_with(
        loopback_settings(Some(TOKEN)),
        FakeCommands::default(),
        options,
    )
    .await;
    let response = pinned_client(&cert.cert_pem)
        .get(agent.url("/v1/status"))
        .send()
        .await
        .expect("HTTPS with the static certificate");
    assert_eq!(response.status().as_u16(), 200);
}
