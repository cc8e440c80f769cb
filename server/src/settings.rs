//! How `rivet-server serve` runs: one typed struct, filled from the command line (each field
//! documents its flag in `cli.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where TLS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// A self-signed certificate kept in the data directory (made on first start).
    Auto,
    /// PEM files given by the operator.
    Files { cert: PathBuf, key: PathBuf },
    /// Plain HTTP (tests, benchmarks, or a TLS-terminating proxy in front).
    Off,
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Address and port to listen on. Ironic's port 6385 by default, so agents configured
    /// for Ironic find it.
    pub listen: SocketAddr,
    /// Holds the database, the auto-TLS certificate and the operator token file.
    pub data_dir: PathBuf,
    pub tls: TlsMode,
    /// Handed to agents at lookup as `config.heartbeat_timeout`; they heartbeat every
    /// 0.3-0.6 of it.
    pub heartbeat_timeout: u64,
    /// Refuse heartbeats whose `callback_url` is not `https://` (Ironic 39's
    /// `[agent] require_tls`, default on).
    pub require_tls: bool,
    /// Register nodes nobody enrolled when their agent sends inspection data (Ironic's
    /// `[auto_discovery] enabled`, default off).
    pub auto_register: bool,
    /// The base URL agents and operators use, for links; by default taken from each
    /// request's Host header.
    pub public_url: Option<url::Url>,
    /// Per-node ISOs (`GET /v1/nodes/{node}/iso`); `None`: the server hands out none.
    pub iso: Option<IsoSettings>,
}

/// Where per-node ISOs come from (docs/server.md, "Per-node ISOs").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoSettings {
    /// An ISO built by rivet-image-builder (with a config area). Each node's ISO is this
    /// file with the node's bundle spliced in while it is sent; replacing the file (a new
    /// build) takes effect on the next request.
    pub base: PathBuf,
    /// PEM CA bundle put into each bundle (the agent trusts it for this server). Default:
    /// the auto-TLS certificate when TLS is automatic, none otherwise.
    pub ca: Option<PathBuf>,
    /// Ed25519 private key (PEM) the bundles are signed with; needed when the base ISO was
    /// built with `--signing-pubkey`.
    pub signing_key: Option<PathBuf>,
}

impl ServeSettings {
    /// Settings for `data_dir` with every default.
    pub fn new(data_dir: PathBuf) -> Self {
        ServeSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            data_dir,
            tls: TlsMode::Auto,
            heartbeat_timeout: 300,
            require_tls: true,
            auto_register: false,
            public_url: None,
            iso: None,
        }
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }

    /// Where `serve` writes the operator token it creates on first start.
    pub fn operator_token_path(&self) -> PathBuf {
        self.data_dir.join(OPERATOR_TOKEN_FILE)
    }
}

/// Ironic's API port.
pub const DEFAULT_PORT: u16 = 6385;
pub const DATABASE_FILE: &str = "rivet.db";
pub const OPERATOR_TOKEN_FILE: &str = "operator-token";
pub const AUTO_TLS_CERT_FILE: &str = "server.crt";
pub const AUTO_TLS_KEY_FILE: &str = "server.key";
/// The key node ISO URLs are signed with (made on first start with `--iso-base`).
pub const ISO_URL_KEY_FILE: &str = "iso-url-key";
