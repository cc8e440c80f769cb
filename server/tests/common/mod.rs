//! A real `rivet-server` process on loopback with its database in a temporary directory.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_rivet-server");

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe socket")?;
    Ok(listener.local_addr()?.port())
}

/// A server process and its data directory. Dropping it kills the process; the directory is
/// removed unless the test is failing (then its path and the server log are printed).
pub struct Server {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    pub port: u16,
    pub tls: bool,
    extra: Vec<String>,
}

impl Server {
    /// Plain HTTP, http:// callbacks allowed: what most tests need.
    pub fn start() -> Result<Server> {
        Server::start_with(false, &["--allow-insecure-callbacks"])
    }

    /// With auto-TLS (`tls`) or plain HTTP, and extra `serve` flags.
    pub fn start_with(tls: bool, extra: &[&str]) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("rivet-server-test-")
            .tempdir()
            .context("creating the data directory")?;
        let mut server = Server {
            child: None,
            dir: Some(dir),
            port: free_port()?,
            tls,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir().join("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn operator_token(&self) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.data_dir().join("operator-token"))
                .context("reading the operator token")?
                .trim()
                .to_string(),
        )
    }

    /// Starts the process (again) on the same port and data directory and waits until
    /// `GET /` answers.
    pub fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the server log")?;
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if !self.tls {
            command.arg("--no-tls");
        }
        self.child = Some(command.spawn().context("starting rivet-server")?);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("rivet-server exited with {status}:\n{}", self.log());
                }
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("rivet-server did not listen within 60 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing rivet-server")?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
            let status = child.wait()?;
            if !status.success() {
                bail!(
                    "rivet-server exited with {status} on SIGTERM:\n{}",
                    self.log()
                );
            }
        }
        Ok(())
    }

    /// A client that trusts the server's auto-TLS certificate.
    pub fn http(&self) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30));
        if self.tls {
            let pem = std::fs::read(self.data_dir().join("server.crt"))?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(builder.build()?)
    }

    /// An operator API call with the operator token; returns status and JSON (null if empty).
    pub async fn operator(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut request = self
            .http()?
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(self.operator_token()?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?
        };
        Ok((status, value))
    }

    /// `rivet-server <args>` against this server; returns status, stdout, stderr.
    pub fn cli(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let output = Command::new(BIN)
            .args(args)
            .env("RIVET_SERVER_URL", self.url())
            .env("RIVET_SERVER_DATA_DIR", self.data_dir())
            .env_remove("RIVET_SERVER_TOKEN")
            .output()
            .context("running the rivet-server CLI")?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("kept the server's data directory {}", path.display());
                eprintln!(
                    "server log:\n{}",
                    std::fs::read_to_string(path.join("server.log")).unwrap_or_default()
                );
            }
        }
    }
}

/// Adds a node through the operator API; returns its JSON.
pub async fn add_node(server: &Server, name: &str, macs: &[&str]) -> Result<Value> {
    let body = serde_json::json!({"name": name, "macs": macs});
    let (status, node) = server
        .operator(Method::POST, "/v1/nodes", Some(&body))
        .await?;
    if status != 201 {
        bail!("adding node {name}: HTTP {status}: {node}");
    }
    Ok(node)
}
