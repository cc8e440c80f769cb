//! `rivet-server serve` as a real process, for tests that pair it with the real
//! `rivet-agent` binary: on loopback ([`Server::start`]) or inside a test network namespace
//! where VMs reach it over the bridge ([`Server::start_in`]).

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::agent::profile_binary;
use crate::net::free_loopback_port;
use crate::netns::TestNet;

/// `rivet-server serve` over plain HTTP with auto-registration, killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    binary: PathBuf,
    /// The namespace it runs in, if not this process's.
    netns: Option<String>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Server {
    /// Starts the `rivet-server` binary next to `agent` on a free loopback port.
    pub async fn start(agent: &Path) -> Result<Server> {
        let binary = agent.with_file_name("rivet-server");
        ensure!(
            binary.is_file(),
            "rivet-server is not built: {} does not exist (cargo build --workspace --bins)",
            binary.display()
        );
        let port = free_loopback_port()?;
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        Self::launch(binary, None, listen, &[]).await
    }

    /// Starts the `rivet-server` binary of this test's profile inside `net`, listening on
    /// `address:port` with `extra` arguments (e.g. `--iso-base`). Call it from inside the
    /// namespace ([`TestNet::block_on`]): it connects to see the server listen.
    pub async fn start_in(
        net: &TestNet,
        address: Ipv4Addr,
        port: u16,
        extra: &[OsString],
    ) -> Result<Server> {
        let binary = profile_binary("rivet-server", "cargo build -p rivet-server")?;
        let listen = SocketAddr::from((address, port));
        Self::launch(binary, Some(net), listen, extra).await
    }

    async fn launch(
        binary: PathBuf,
        net: Option<&TestNet>,
        listen: SocketAddr,
        extra: &[OsString],
    ) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("rivet-server-")
            .tempdir()
            .context("creating the server's directory")?;
        let log = std::fs::File::create(dir.path().join("server.log")).context("server.log")?;
        let mut command = match net {
            Some(net) => net.command(&binary),
            None => Command::new(&binary),
        };
        let child = command
            .args([
                "serve",
                "--no-tls",
                "--auto-register",
                "--allow-insecure-callbacks",
            ])
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Server {
            child,
            url: format!("http://{listen}"),
            binary,
            netns: net.map(|n| n.name().to_string()),
            dir,
            http: reqwest::Client::builder().no_proxy().build()?,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let connect_to = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::from((Ipv4Addr::LOCALHOST, listen.port()))
            }
            _ => listen,
        };
        while std::net::TcpStream::connect(connect_to).is_err() {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("rivet-server ended ({status}):\n{}", server.log());
            }
            ensure!(
                Instant::now() < deadline,
                "rivet-server did not listen on {listen}:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn operator_token(&self) -> Result<String> {
        let token = std::fs::read_to_string(self.dir.path().join("operator-token"))
            .context("reading the operator token")?;
        Ok(token.trim().to_string())
    }

    /// An operator API call that must succeed.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(self.operator_token()?)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "GET {path}: {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("GET {path}: {text}"))
    }

    /// An operator API `POST` with a JSON body that must succeed.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(self.operator_token()?)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "POST {path}: {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("POST {path}: {text}"))
    }

    /// Runs the real CLI (`rivet-server <args> --url ... --data-dir ...`, in the server's
    /// namespace) and returns its standard output; fails when it exits non-zero.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let mut command = match &self.netns {
            Some(name) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", name]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        let output = command
            .args(args)
            .arg("--url")
            .arg(&self.url)
            .arg("--data-dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running rivet-server {args:?}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        ensure!(
            output.status.success(),
            "rivet-server {args:?} failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(stdout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
