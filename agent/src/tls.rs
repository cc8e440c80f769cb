//! The API server's TLS (spec §3.6): a self-signed auto-TLS certificate, or static
//! certificate files, turned into a rustls server configuration on the ring provider.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::settings::{Curve, Settings, TlsVersion};

/// How long an auto-TLS certificate is valid after it is made.
pub const AUTO_TLS_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// File names of the auto-TLS certificate and key under `Settings::run_dir`.
pub const AUTO_TLS_CERT_FILE: &str = "agent.crt";
pub const AUTO_TLS_KEY_FILE: &str = "agent.key";

/// OID of the subjectAltName extension (RFC 5280 §4.2.1.6).
const SUBJECT_ALT_NAME_OID: &[u64] = &[2, 5, 29, 17];

/// TLS set-up failures. Each names the file or setting involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "TLS certificate curve {0:?} is not supported by the ring crypto provider; \
         use p256 or p384"
    )]
    UnsupportedCurve(Curve),
    #[error("auto-TLS clock skew {0:?} reaches before the epoch")]
    ClockSkew(Duration),
    #[error("generating the auto-TLS certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("reading the hostname for the auto-TLS certificate: {0}")]
    Hostname(#[source] nix::Error),
    #[error("creating {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading TLS certificate file {}: {source}", path.display())]
    ReadCert {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("TLS certificate file {} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("reading TLS key file {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("building the TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate chain (leaf first) and its private key.
#[derive(Debug)]
pub struct TlsIdentity {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// A freshly generated self-signed certificate.
#[derive(Debug)]
pub struct SelfSigned {
    /// The certificate as PEM: what the heartbeat sends as `agent_verify_ca`.
    pub cert_pem: String,
    /// The private key as PKCS#8 PEM.
    pub key_pem: String,
    pub identity: TlsIdentity,
}

/// The auto-TLS certificate, written to disk.
#[derive(Debug)]
pub struct AutoTls {
    /// What the heartbeat sends as `agent_verify_ca`.
    pub cert_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub identity: TlsIdentity,
}

/// Makes a self-signed certificate like IPA's auto-TLS: an EC key on `curve`, subject and
/// issuer CN = `hostname`, a critical subjectAltName holding only `ip`, valid from
/// `now - clock_skew` to `now + 30 days`.
///
/// The signature hash follows the curve (SHA-256 on P-256, SHA-384 on P-384): ring signs
/// only those pairs, where IPA signs with SHA-512. Verifiers accept either.
pub fn generate_self_signed(
    hostname: &str,
    ip: IpAddr,
    curve: Curve,
    clock_skew: Duration,
    now: SystemTime,
) -> Result<SelfSigned, TlsError> {
    let algorithm = match curve {
        Curve::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Curve::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        Curve::P521 => return Err(TlsError::UnsupportedCurve(curve)),
    };
    let key_pair = KeyPair::generate_for(algorithm)?;

    let not_before = now
        .checked_sub(clock_skew)
        .ok_or(TlsError::ClockSkew(clock_skew))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, hostname);
    params.not_before = not_before.into();
    params.not_after = (now + AUTO_TLS_VALIDITY).into();
    let mut san = CustomExtension::from_oid_content(SUBJECT_ALT_NAME_OID, ip_san_der(ip));
    san.set_criticality(true);
    params.custom_extensions.push(san);

    let cert = params.self_signed(&key_pair)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key_pair.serialize_pem(),
        identity: TlsIdentity {
            cert_chain: vec![cert.der().clone()],
            key,
        },
    })
}

/// DER of `GeneralNames ::= SEQUENCE { iPAddress [7] IMPLICIT OCTET STRING }`.
fn ip_san_der(ip: IpAddr) -> Vec<u8> {
    let octets = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    // 4 or 16 octets: every length fits the short form.
    let mut der = vec![0x30, (octets.len() + 2) as u8, 0x87, octets.len() as u8];
    der.extend_from_slice(&octets);
    der
}

/// Auto-TLS at boot: generates the certificate for this host's name and `advertise_ip`, and
/// writes `agent.crt` and `agent.key` (mode 0600) under `settings.run_dir`.
pub fn auto_tls(settings: &Settings, advertise_ip: IpAddr) -> Result<AutoTls, TlsError> {
    let hostname = nix::unistd::gethostname().map_err(TlsError::Hostname)?;
    let hostname = hostname.to_string_lossy();
    let generated = generate_self_signed(
        &hostname,
        advertise_ip,
        settings.tls_certificate_curve,
        settings.auto_tls_allowed_clock_skew,
        SystemTime::now(),
    )?;
    let (cert_file, key_file) = write_auto_tls(&settings.run_dir, &generated)?;
    tracing::info!(
        cert = %cert_file.display(),
        %advertise_ip,
        %hostname,
        "generated a self-signed TLS certificate"
    );
    Ok(AutoTls {
        cert_pem: generated.cert_pem,
        cert_file,
        key_file,
        identity: generated.identity,
    })
}

/// Writes the certificate and key under `dir`; the key file is created with mode 0600.
pub fn write_auto_tls(dir: &Path, generated: &SelfSigned) -> Result<(PathBuf, PathBuf), TlsError> {
    fs::create_dir_all(dir).map_err(|source| TlsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let cert_file = dir.join(AUTO_TLS_CERT_FILE);
    let key_file = dir.join(AUTO_TLS_KEY_FILE);
    write_file(&cert_file, generated.cert_pem.as_bytes(), 0o644)?;
    write_file(&key_file, generated.key_pem.as_bytes(), 0o600)?;
    Ok((cert_file, key_file))
}

/// Replaces `path` with a new file created with `mode`, so that no earlier, looser
/// permissions carry over to a key.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let error = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(error(err)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(error)?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)
}

/// Static TLS (`listen_tls`): loads a PEM certificate chain and a PEM private key (PKCS#8,
/// PKCS#1 or SEC1).
pub fn load_static(cert_file: &Path, key_file: &Path) -> Result<TlsIdentity, TlsError> {
    let cert_error = |source| TlsError::ReadCert {
        path: cert_file.to_path_buf(),
        source,
    };
    let cert_chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(cert_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_error)?;
    if cert_chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_file.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|source| TlsError::ReadKey {
        path: key_file.to_path_buf(),
        source,
    })?;
    Ok(TlsIdentity { cert_chain, key })
}

/// The server configuration: ring provider, no client certificates, TLS 1.3 only when `min`
/// is 1.3 and TLS 1.2 or 1.3 otherwise (TLS 1.2 with ECDHE-GCM suites only), ALPN
/// http/1.1. Fails when the key does not match the certificate or ring cannot use it.
///
/// Only HTTP/1.1 is offered: Ironic's client speaks nothing else, and HTTP/1.1 alone lets the
/// server bound how long a client may take to send its request.
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    min: TlsVersion,
) -> Result<Arc<ServerConfig>, TlsError> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// ring's default provider, keeping all TLS 1.3 suites and the ECDHE-GCM TLS 1.2 suites.
fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|suite| match suite {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(_) => matches!(
            suite.suite(),
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        ),
    });
    provider
}

#[cfg(test)]
mod tests;
