//! `rivet-server serve` as a real process on loopback, for tests that pair it with the
//! real `rivet-agent` binary.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::net::free_loopback_port;

/// `rivet-server serve` over plain HTTP with auto-registration, killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
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
        let dir = tempfile::Builder::new()
            .prefix("rivet-server-")
            .tempdir()
            .context("creating the server's directory")?;
        let port = free_loopback_port()?;
        let log = std::fs::File::create(dir.path().join("server.log")).context("server.log")?;
        let child = Command::new(&binary)
            .args([
                "serve",
                "--no-tls",
                "--auto-register",
                "--allow-insecure-callbacks",
            ])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::builder().no_proxy().build()?,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                Instant::now() < deadline,
                "rivet-server did not listen:\n{}",
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

    /// An operator API call that must succeed.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let token = std::fs::read_to_string(self.dir.path().join("operator-token"))
            .context("reading the operator token")?;
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token.trim())
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "GET {path}: {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("GET {path}: {text}"))
    }
}

impl Server {
    /// An operator API `POST` with a JSON body that must succeed.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let token = std::fs::read_to_string(self.dir.path().join("operator-token"))
            .context("reading the operator token")?;
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token.trim())
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "POST {path}: {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("POST {path}: {text}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
