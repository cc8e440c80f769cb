//! The command line: `serve`, the operator commands (`node ...`, `plan ...`) and `loadgen`.

mod nodes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::client::{OperatorClient, Trust};
use crate::loadgen::LoadgenArgs;
use crate::settings::{
    IsoSettings, ServeSettings, TlsMode, AUTO_TLS_CERT_FILE, DEFAULT_PORT, OPERATOR_TOKEN_FILE,
};

const DEFAULT_DATA_DIR: &str = "/var/lib/rivet-server";

#[derive(Debug, Parser)]
#[command(
    name = "rivet-server",
    version,
    about = "rivet's control server and its operator CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (Ironic's ramdisk endpoints, plan-mode reports, the operator API).
    Serve(ServeArgs),
    /// Enroll, list, show, watch and delete nodes.
    Node {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Set, show and clear a node's deploy plan.
    Plan {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Simulate many agents against a running server (or a real Ironic) and measure it.
    Loadgen(LoadgenArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "RIVET_SERVER_LISTEN", default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))]
    pub listen: SocketAddr,
    /// Directory for the database, the auto-TLS certificate and the operator token.
    #[arg(long, env = "RIVET_SERVER_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// PEM certificate chain to serve (with --tls-key); default: a self-signed certificate
    /// made on first start in the data directory.
    #[arg(long, requires = "tls_key", conflicts_with = "no_tls")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (behind a TLS-terminating proxy, or for tests).
    #[arg(long)]
    pub no_tls: bool,
    /// Handed to agents as `heartbeat_timeout`; they heartbeat every 0.3-0.6 of it.
    #[arg(long, default_value_t = 300)]
    pub heartbeat_timeout: u64,
    /// Accept agents whose callback URL is plain http:// (Ironic's `[agent] require_tls = False`).
    #[arg(long)]
    pub allow_insecure_callbacks: bool,
    /// Register machines nobody enrolled when their agent sends inspection data.
    #[arg(long)]
    pub auto_register: bool,
    /// Base URL for links in answers (default: from each request's Host header).
    #[arg(long)]
    pub public_url: Option<url::Url>,
    /// Hand out per-node ISOs (GET /v1/nodes/{node}/iso): this ISO built by
    /// rivet-image-builder with each node's config bundle spliced in.
    #[arg(long)]
    pub iso_base: Option<PathBuf>,
    /// CA bundle (PEM) to put into per-node ISOs (default: the auto-TLS certificate).
    #[arg(long, requires = "iso_base")]
    pub iso_ca: Option<PathBuf>,
    /// Ed25519 private key (PEM) to sign per-node bundles with (for an ISO built with
    /// --signing-pubkey).
    #[arg(long, requires = "iso_base")]
    pub iso_signing_key: Option<PathBuf>,
}

impl ServeArgs {
    pub fn settings(&self) -> ServeSettings {
        let tls = match (&self.tls_cert, &self.tls_key, self.no_tls) {
            (_, _, true) => TlsMode::Off,
            (Some(cert), Some(key), false) => TlsMode::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => TlsMode::Auto,
        };
        ServeSettings {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            tls,
            heartbeat_timeout: self.heartbeat_timeout,
            require_tls: !self.allow_insecure_callbacks,
            auto_register: self.auto_register,
            public_url: self.public_url.clone(),
            iso: self.iso_base.as_ref().map(|base| IsoSettings {
                base: base.clone(),
                ca: self.iso_ca.clone(),
                signing_key: self.iso_signing_key.clone(),
            }),
        }
    }
}

/// How the operator commands reach the server.
#[derive(Debug, Args)]
pub struct Connection {
    /// The server's URL.
    #[arg(long, global = true, env = "RIVET_SERVER_URL", default_value_t = format!("https://127.0.0.1:{DEFAULT_PORT}"))]
    pub url: String,
    /// The operator token (default: read from <data-dir>/operator-token).
    #[arg(
        long,
        global = true,
        env = "RIVET_SERVER_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The server's data directory, for the token file and the auto-TLS certificate.
    #[arg(long, global = true, env = "RIVET_SERVER_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Trust this CA (PEM) for the server's certificate (default: <data-dir>/server.crt if
    /// it exists, else the system's roots).
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// Do not verify the server's certificate.
    #[arg(long, global = true)]
    pub insecure: bool,
}

impl Connection {
    pub fn client(&self) -> Result<OperatorClient> {
        let token = match &self.token {
            Some(token) => token.clone(),
            None => OperatorClient::token_from_file(&self.data_dir.join(OPERATOR_TOKEN_FILE))?,
        };
        let auto_cert = self.data_dir.join(AUTO_TLS_CERT_FILE);
        let trust = if self.insecure {
            Trust::Insecure
        } else if let Some(ca) = &self.cacert {
            Trust::CaFile(ca.clone())
        } else if auto_cert.is_file() {
            Trust::CaFile(auto_cert)
        } else {
            Trust::System
        };
        OperatorClient::new(&self.url, &token, &trust)
    }
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Enroll a node.
    Add {
        /// A name to refer to it by.
        #[arg(long)]
        name: Option<String>,
        /// A MAC address of the machine (repeat for each NIC).
        #[arg(long = "mac")]
        macs: Vec<String>,
        /// Chassis serial number.
        #[arg(long)]
        serial: Option<String>,
        /// SMBIOS system UUID.
        #[arg(long)]
        system_uuid: Option<String>,
        /// The node's UUID (default: a new one).
        #[arg(long)]
        uuid: Option<String>,
        /// A deploy plan (JSON file) to give it.
        #[arg(long)]
        plan: Option<PathBuf>,
    },
    /// List nodes.
    List {
        /// Print the JSON the API answered.
        #[arg(long)]
        json: bool,
    },
    /// Show one node: identity, agent, steps, last events.
    Show {
        node: String,
        #[arg(long)]
        json: bool,
    },
    /// Follow a node's plan: steps with progress bars and new events, until it is done or
    /// failed (exit status 0 or 1).
    Watch {
        node: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Show a node's events.
    Events {
        node: String,
        /// Only events after this id.
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
    /// Make a new agent token for the node (for `ipa-agent-token` or a per-node ISO); it is
    /// printed this once.
    Token { node: String },
    /// Forget the node's agent token, callback URL and pinned certificate (after a reboot
    /// into a new ramdisk).
    ResetAgent { node: String },
    /// Delete a node and its history.
    Delete { node: String },
    /// Set (from a file), show, or clear (--clear) the network_data.json put into the
    /// node's ISO.
    NetworkData {
        node: String,
        /// An OpenStack network_data.json to set.
        #[arg(conflicts_with = "clear")]
        file: Option<PathBuf>,
        #[arg(long)]
        clear: bool,
    },
    /// Download the node's ISO (the server's base ISO with the node's config bundle).
    Iso {
        node: String,
        /// Where to write it; `-` for stdout.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a URL of the node's ISO that needs no token (for a BMC's virtual media),
    /// signed by the server and valid for --ttl seconds.
    IsoUrl {
        node: String,
        /// Seconds the URL stays valid (at most 30 days).
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Give a node a deploy plan (a JSON document).
    Set { node: String, file: PathBuf },
    /// Print a node's plan.
    Show { node: String },
    /// Remove a node's plan.
    Clear { node: String },
}

/// Parses the command line and runs it; errors are printed with their context chain.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rivet-server: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rivet-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Node {
            connection,
            command,
        } => nodes::node(&connection.client()?, command).await,
        Command::Plan {
            connection,
            command,
        } => nodes::plan(&connection.client()?, command).await,
        Command::Loadgen(args) => crate::loadgen::run(args).await,
    }
}

async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let settings = args.settings();
    if settings.heartbeat_timeout == 0 {
        bail!("--heartbeat-timeout must be at least 1 second");
    }
    let server = crate::server::start(settings)
        .await
        .context("starting rivet-server")?;
    println!("rivet-server listening on {}", server.url());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping");
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}
