//! Outgoing HTTP(S) clients: TLS as IPA's `get_requests_session` sets it up (spec §1.2).
//!
//! Verification follows `insecure` (verify nothing) and `cafile` (trust exactly that bundle,
//! else the built-in Mozilla roots); `certfile` + `keyfile` give a client certificate; the
//! minimum protocol is TLS 1.2 unless 1.3 is asked for. rustls with the ring provider.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::settings::{Settings, TlsVersion};

/// TLS settings of one outgoing client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTls {
    pub insecure: bool,
    pub cafile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub min_version: TlsVersion,
}

impl HttpTls {
    /// The settings' values (what the Ironic API client uses: lookup overrides of
    /// `tls_min_version` come later and do not change it).
    pub fn from_settings(settings: &Settings) -> Self {
        HttpTls {
            insecure: settings.insecure,
            cafile: settings.cafile.clone(),
            certfile: settings.certfile.clone(),
            keyfile: settings.keyfile.clone(),
            min_version: settings.tls_min_version,
        }
    }
}

/// Errors building a client.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it ({detail})")]
    CaBundle { path: PathBuf, detail: String },
    #[error("client certificate {certfile} with key {keyfile}: {detail}")]
    Identity {
        certfile: PathBuf,
        keyfile: PathBuf,
        detail: String,
    },
    #[error(
        "certfile and keyfile must be set together (certfile: {certfile:?}, keyfile: {keyfile:?})"
    )]
    HalfIdentity {
        certfile: Option<PathBuf>,
        keyfile: Option<PathBuf>,
    },
    #[error("building the HTTP client: {0}")]
    Build(String),
}

/// A reqwest client with `tls` and a whole-request `timeout`.
pub fn build_client(tls: &HttpTls, timeout: Duration) -> Result<reqwest::Client, HttpClientError> {
    client_builder(tls)?
        .timeout(timeout)
        .build()
        .map_err(|err| HttpClientError::Build(error_chain(&err)))
}

/// A reqwest client builder with `tls` set up, for clients that need other timeouts (image
/// downloads bound each read, not the whole request).
pub fn client_builder(tls: &HttpTls) -> Result<reqwest::ClientBuilder, HttpClientError> {
    let mut builder =
        reqwest::Client::builder()
            .use_rustls_tls()
            .min_tls_version(match tls.min_version {
                TlsVersion::Tls12 => reqwest::tls::Version::TLS_1_2,
                TlsVersion::Tls13 => reqwest::tls::Version::TLS_1_3,
            });
    if tls.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    } else if let Some(cafile) = &tls.cafile {
        let pem = read(cafile)?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
            HttpClientError::CaBundle {
                path: cafile.clone(),
                detail: error_chain(&err),
            }
        })?;
        if certificates.is_empty() {
            return Err(HttpClientError::CaBundle {
                path: cafile.clone(),
                detail: "the file holds no certificate".into(),
            });
        }
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    match (&tls.certfile, &tls.keyfile) {
        (Some(certfile), Some(keyfile)) => {
            let mut pem = read(certfile)?;
            pem.push(b'\n');
            pem.extend(read(keyfile)?);
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|err| HttpClientError::Identity {
                    certfile: certfile.clone(),
                    keyfile: keyfile.clone(),
                    detail: error_chain(&err),
                })?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        (certfile, keyfile) => {
            return Err(HttpClientError::HalfIdentity {
                certfile: certfile.clone(),
                keyfile: keyfile.clone(),
            })
        }
    }
    Ok(builder)
}

fn read(path: &Path) -> Result<Vec<u8>, HttpClientError> {
    std::fs::read(path).map_err(|source| HttpClientError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// An error and its causes, `: `-joined (reqwest's own message hides the cause).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}
