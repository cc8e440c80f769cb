//! The server's TLS: the operator's PEM files, or a self-signed certificate made on first
//! start and kept in the data directory (so its fingerprint stays the same across restarts
//! and agents can pin it). rustls on the ring provider, as everywhere in rivet.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::settings::{ServeSettings, TlsMode, AUTO_TLS_CERT_FILE, AUTO_TLS_KEY_FILE};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the TLS certificate {}: {source}", path.display())]
    ReadCert {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("the TLS certificate file {} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("reading the TLS key {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("building the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The rustls configuration for `settings.tls`, or `None` for plain HTTP.
pub fn server_config(settings: &ServeSettings) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (cert, key) = match &settings.tls {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => (cert.clone(), key.clone()),
        TlsMode::Auto => auto_certificate(&settings.data_dir)?,
    };
    let cert_error = |source| TlsError::ReadCert {
        path: cert.clone(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(&cert)
        .map_err(cert_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_error)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert });
    }
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|source| TlsError::ReadKey {
        path: key.clone(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The auto-TLS pair in `dir`, made on first use: names `localhost` and the host name,
/// addresses 127.0.0.1 and ::1. Operators whose agents reach the server by another name or
/// address give their own certificate (`--tls-cert`, `--tls-key`).
fn auto_certificate(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join(AUTO_TLS_CERT_FILE);
    let key = dir.join(AUTO_TLS_KEY_FILE);
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names)?;
    write_new(&key, generated.key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert, generated.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate");
    Ok((cert, key))
}

/// Writes `contents` to a new file with `mode`, synced, replacing any old one.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let error = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tls_is_made_once_and_kept() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let settings = ServeSettings::new(dir.path().to_owned());
        assert!(server_config(&settings)?.is_some());
        let first = std::fs::read(dir.path().join(AUTO_TLS_CERT_FILE))?;
        assert!(server_config(&settings)?.is_some());
        assert_eq!(std::fs::read(dir.path().join(AUTO_TLS_CERT_FILE))?, first);
        let mode = std::fs::metadata(dir.path().join(AUTO_TLS_KEY_FILE))?.permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        Ok(())
    }
}
