//! A real OpenStack Ironic 39.0.0 (PyPI, installed by `ci/setup`): the single combined
//! `ironic` process (API + conductor), SQLite, noauth, fake hardware, with Ironic's default TLS
//! policy towards agents (`[agent] require_tls = True`). The configuration is
//! `ci/ironic/ironic.conf.in`; `ci/ironic/start` runs the same thing by hand.
//!
//! [`RealIronic::start`] runs it on loopback; [`RealIronic::start_in`] runs it inside a test
//! network namespace on the bridge's address, where VMs reach it.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use reqwest::{Method, StatusCode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::net::free_loopback_port;
use crate::netns::TestNet;
use crate::process::LoggedChild;

/// The Ironic release the tests run against.
pub const IRONIC_VERSION: &str = "39.0.0";
/// Ironic 39.0.0's maximum API microversion; the tests' own REST calls use it.
pub const API_VERSION: &str = "1.115";
/// The microversions IPA 13 uses for lookup and heartbeat (spec §1.2, §2.1).
pub const LOOKUP_API_VERSION: &str = "1.62";
pub const HEARTBEAT_API_VERSION: &str = "1.68";
/// `[api] ramdisk_heartbeat_timeout`: agents heartbeat every 0.3-0.6 of it.
pub const HEARTBEAT_TIMEOUT_SECS: u32 = 10;
/// Environment variable naming another venv than `<checkout>/.venv/ironic`.
pub const VENV_ENV: &str = "RIVET_IRONIC_VENV";
/// The API port inside a test namespace (Ironic's default; nothing else listens there).
pub const NAMESPACE_API_PORT: u16 = 6385;

const CONFIG_TEMPLATE: &str = include_str!("../../ci/ironic/ironic.conf.in");
const VERSION_HEADER: &str = "X-OpenStack-Ironic-API-Version";
const START_TIMEOUT: Duration = Duration::from_secs(90);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Provision states a node ends in when an operation failed.
const FAILED_STATES: &[&str] = &[
    "clean failed",
    "deploy failed",
    "inspect failed",
    "rescue failed",
    "service failed",
    "error",
];

/// A running Ironic. Dropping it ends the process group; when the test is panicking, the
/// log's tail is printed and the state directory (config, database, log) is kept.
pub struct RealIronic {
    // Declared first so the process ends before its state directory is removed.
    process: LoggedChild,
    state: Option<TempDir>,
    state_dir: PathBuf,
    port: u16,
    url: String,
    http: reqwest::Client,
}

impl RealIronic {
    /// Ironic on 127.0.0.1 (a free port). Creates a state directory, writes the
    /// configuration, creates the database schema, starts `ironic` and waits until its API
    /// answers and the conductor serves `fake-hardware`. A missing venv is an error that says
    /// to run `ci/setup`.
    pub async fn start() -> Result<RealIronic> {
        RealIronic::start_with(&[]).await
    }

    /// Like [`RealIronic::start`], with extra options set in the configuration: each
    /// `(section, key, value)` is added at the top of its section (for example
    /// `("deploy", "fast_track", "true")`).
    pub async fn start_with(options: &[(&str, &str, &str)]) -> Result<RealIronic> {
        let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let port = free_loopback_port()?;
        Self::launch(host, port, Command::new, options).await
    }

    /// Ironic inside `net`, listening on its bridge address at [`NAMESPACE_API_PORT`]
    /// ([`Self::url_in`]). The caller must run in that namespace too (inside
    /// [`TestNet::block_on`]): the harness's own REST calls go to the bridge address. Ironic
    /// ends when the thread that started it ends (see [`TestNet::command`]).
    pub async fn start_in(net: &TestNet) -> Result<RealIronic> {
        RealIronic::start_in_with(net, &[]).await
    }

    /// [`Self::start_in`] with extra options, as in [`Self::start_with`].
    pub async fn start_in_with(
        net: &TestNet,
        options: &[(&str, &str, &str)],
    ) -> Result<RealIronic> {
        ensure_in_namespace(net)?;
        let host = IpAddr::V4(net.bridge_address());
        Self::launch(
            host,
            NAMESPACE_API_PORT,
            |program| net.command(program),
            options,
        )
        .await
    }

    /// The URL [`Self::start_in`] gives Ironic in `net`, known before it starts (boot media
    /// carry it as `ipa-api-url`).
    pub fn url_in(net: &TestNet) -> String {
        format!("http://{}:{NAMESPACE_API_PORT}", net.bridge_address())
    }

    async fn launch(
        host: IpAddr,
        port: u16,
        command: impl FnOnce(PathBuf) -> Command,
        options: &[(&str, &str, &str)],
    ) -> Result<RealIronic> {
        let venv = ironic_venv()?;
        let state = tempfile::Builder::new()
            .prefix("rivet-ironic-")
            .tempdir()
            .context("creating Ironic's state directory")?;
        let state_dir = state.path().to_owned();
        for sub in ["tftpboot", "httpboot", "locks"] {
            let dir = state_dir.join(sub);
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let config = state_dir.join("ironic.conf");
        let text = with_options(
            &render_config(&state_dir, host, port, HEARTBEAT_TIMEOUT_SECS)?,
            options,
        );
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;

        create_schema(&venv, &config, &state_dir.join("dbsync.log"))?;

        let mut command = command(venv.join("bin/ironic"));
        command.arg("--config-file").arg(&config);
        let process = LoggedChild::spawn("ironic", command, &state_dir.join("ironic.log"))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client for Ironic")?;
        let mut ironic = RealIronic {
            process,
            state: Some(state),
            state_dir,
            port,
            url: format!("http://{host}:{port}"),
            http,
        };
        if let Err(e) = ironic.wait_ready().await {
            return Err(e.context(format!(
                "Ironic did not become ready; last lines of {}:\n{}",
                ironic.log_path().display(),
                ironic.log_tail(80)
            )));
        }
        Ok(ironic)
    }

    /// `http://<host>:<port>`, what agents get as `ipa-api-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `[agent] certificates_path`: where the conductor stores agents' certificates.
    pub fn certificates_dir(&self) -> PathBuf {
        self.state_dir.join("certificates")
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The whole Ironic log (API and conductor, debug level).
    pub fn log_text(&self) -> Result<String> {
        self.process.log_text()
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.process.ensure_running()?;
            let Err(e) = self.ready_probe().await else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                bail!(
                    "Ironic at {} not ready after {START_TIMEOUT:?}: {e:#}",
                    self.url
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Ready means: `GET /` reports 39.0.0's maximum microversion, and the conductor has
    /// registered `fake-hardware` (before that, creating a node fails with NoValidHost).
    async fn ready_probe(&self) -> Result<()> {
        let root = self.http.get(&self.url).send().await?.error_for_status()?;
        let root: Value = root.json().await.context("parsing GET / as JSON")?;
        let max = &root["default_version"]["version"];
        ensure!(
            max == API_VERSION,
            "GET / reports maximum API version {max}, expected {API_VERSION} (Ironic {IRONIC_VERSION})"
        );
        let drivers = self.call(Method::GET, "/v1/drivers", None).await?;
        let fake_hardware = drivers["drivers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["name"] == "fake-hardware");
        ensure!(
            fake_hardware.is_some_and(|d| d["hosts"].as_array().is_some_and(|h| !h.is_empty())),
            "no conductor serves fake-hardware yet"
        );
        Ok(())
    }

    /// One request at microversion `version`; returns the status and the body text.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        version: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String)> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .header(VERSION_HEADER, version);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {}{path}", self.url))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the reply to {method} {path}"))?;
        Ok((status, text))
    }

    /// A call at [`API_VERSION`] that must succeed; returns its JSON body (null if empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, text) = self
            .request(method.clone(), path, API_VERSION, body)
            .await?;
        ensure!(
            status.is_success(),
            "{method} {path}: HTTP {status}: {}",
            fault_text(&text)
        );
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("parsing the reply to {method} {path} as JSON: {text}"))
    }

    /// Enrolls a `fake-hardware` node whose interfaces suit an agent-driven clean or deploy:
    /// fake boot, power and management (nothing happens out of band), `direct` deploy (the
    /// agent steps), `noop` network.
    pub async fn create_node(&self, name: &str) -> Result<Value> {
        let body = json!({
            "name": name,
            "driver": "fake-hardware",
            "boot_interface": "fake",
            "deploy_interface": "direct",
            "management_interface": "fake",
            "power_interface": "fake",
            "network_interface": "noop",
            "inspect_interface": "agent",
            "raid_interface": "agent",
        });
        self.call(Method::POST, "/v1/nodes", Some(&body))
            .await
            .with_context(|| format!("creating node {name}"))
    }

    pub async fn create_port(&self, node_uuid: &str, mac: &str) -> Result<Value> {
        let body = json!({"node_uuid": node_uuid, "address": mac});
        self.call(Method::POST, "/v1/ports", Some(&body))
            .await
            .with_context(|| format!("creating port {mac} for node {node_uuid}"))
    }

    pub async fn node(&self, uuid: &str) -> Result<Value> {
        self.call(Method::GET, &format!("/v1/nodes/{uuid}"), None)
            .await
    }

    /// `PUT /v1/nodes/<uuid>/states/provision` with `body` (`{"target": ...}` and extras).
    pub async fn set_provision_state(&self, uuid: &str, body: &Value) -> Result<()> {
        self.call(
            Method::PUT,
            &format!("/v1/nodes/{uuid}/states/provision"),
            Some(body),
        )
        .await
        .with_context(|| format!("provision action {body} on node {uuid}"))?;
        Ok(())
    }

    pub async fn manage(&self, uuid: &str) -> Result<()> {
        self.set_provision_state(uuid, &json!({"target": "manage"}))
            .await
    }

    /// In-band inspection (`manageable` -> `inspecting` -> `inspect wait`).
    pub async fn inspect(&self, uuid: &str) -> Result<()> {
        self.set_provision_state(uuid, &json!({"target": "inspect"}))
            .await
    }

    /// The node's ports' MAC addresses, sorted.
    pub async fn port_addresses(&self, uuid: &str) -> Result<Vec<String>> {
        let ports = self
            .call(Method::GET, &format!("/v1/nodes/{uuid}/ports"), None)
            .await?;
        let mut addresses: Vec<String> = ports["ports"]
            .as_array()
            .with_context(|| format!("no port list: {ports}"))?
            .iter()
            .filter_map(|p| p["address"].as_str().map(str::to_owned))
            .collect();
        addresses.sort();
        Ok(addresses)
    }

    /// `GET /v1/nodes/<uuid>/inventory`: `{"inventory": ..., "plugin_data": ...}` as stored
    /// by inspection.
    pub async fn inventory(&self, uuid: &str) -> Result<Value> {
        self.call(Method::GET, &format!("/v1/nodes/{uuid}/inventory"), None)
            .await
    }

    /// Manual cleaning with the given step list.
    pub async fn clean(&self, uuid: &str, clean_steps: Value) -> Result<()> {
        self.set_provision_state(
            uuid,
            &json!({"target": "clean", "clean_steps": clean_steps}),
        )
        .await
    }

    /// Polls the node every 100 ms, handing each state to `check` until it returns
    /// `Some`, returns an error, or `timeout` passes. `what` names the wait in errors.
    pub async fn watch_node<T>(
        &self,
        uuid: &str,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Value) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let node = self.node(uuid).await.with_context(|| {
                format!(
                    "reading node {uuid} while waiting for {what}; last lines of {}:\n{}",
                    self.log_path().display(),
                    self.log_tail(40)
                )
            })?;
            if let Some(found) =
                check(&node).with_context(|| format!("waiting for node {uuid}: {what}"))?
            {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {uuid}: no {what} within {timeout:?}; last seen {}",
                    node_summary(&node)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Polls node `uuid` until its provision state is `done` (the node is returned) or
    /// `failed` (an error with the node's summary), calling `alive` with each node seen (to
    /// fail at once when the machine behind it died). Bounded by `timeout`.
    pub async fn watch_until(
        &self,
        uuid: &str,
        timeout: Duration,
        done: &str,
        failed: &str,
        mut alive: impl FnMut(&Value) -> Result<()>,
    ) -> Result<Value> {
        let what = format!("provision state {done}");
        self.watch_node(uuid, timeout, &what, |node| {
            alive(node)?;
            match node["provision_state"].as_str() {
                Some(state) if state == done => Ok(Some(node.clone())),
                Some(state) if state == failed => bail!("{state}: {}", node_summary(node)),
                _ => Ok(None),
            }
        })
        .await
    }

    /// Waits for `provision_state == target` and returns the node. Fails at once, with the
    /// node's `last_error`, when it lands in a failure state instead.
    pub async fn wait_for_provision_state(
        &self,
        uuid: &str,
        target: &str,
        timeout: Duration,
    ) -> Result<Value> {
        self.watch_node(
            uuid,
            timeout,
            &format!("provision state {target:?}"),
            |node| {
                let state = node["provision_state"].as_str().unwrap_or_default();
                if state == target {
                    return Ok(Some(node.clone()));
                }
                ensure!(
                    !FAILED_STATES.contains(&state),
                    "node went to {} instead",
                    node_summary(node)
                );
                Ok(None)
            },
        )
        .await
    }

    /// `GET /v1/lookup?addresses=...` at 1.62, as IPA does; must answer 200.
    pub async fn lookup(&self, macs: &[&str]) -> Result<Value> {
        let path = format!("/v1/lookup?addresses={}", macs.join(","));
        let (status, text) = self
            .request(Method::GET, &path, LOOKUP_API_VERSION, None)
            .await?;
        ensure!(
            status == StatusCode::OK,
            "lookup {macs:?}: HTTP {status}: {}",
            fault_text(&text)
        );
        serde_json::from_str(&text).with_context(|| format!("parsing the lookup reply: {text}"))
    }

    /// `POST /v1/heartbeat/<uuid>` at 1.68; returns the status and body, whatever they are.
    pub async fn heartbeat(&self, uuid: &str, body: &Value) -> Result<(StatusCode, String)> {
        self.request(
            Method::POST,
            &format!("/v1/heartbeat/{uuid}"),
            HEARTBEAT_API_VERSION,
            Some(body),
        )
        .await
    }

    /// The certificate the conductor stored for this node's agent: `agent_verify_ca` in
    /// `node`'s `driver_internal_info` must be a file in [`Self::certificates_dir`] holding
    /// exactly one PEM certificate. Returns the PEM text.
    pub fn stored_agent_certificate(&self, node: &Value) -> Result<String> {
        let path = node["driver_internal_info"]["agent_verify_ca"]
            .as_str()
            .with_context(|| {
                format!(
                    "driver_internal_info has no agent_verify_ca path: {}",
                    node["driver_internal_info"]
                )
            })?;
        let path = Path::new(path);
        ensure!(
            path.parent() == Some(self.certificates_dir().as_path()),
            "agent_verify_ca {} is not in [agent] certificates_path {}",
            path.display(),
            self.certificates_dir().display()
        );
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading the stored agent certificate {}", path.display()))?;
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing {} as PEM certificates", path.display()))?;
        ensure!(
            certs.len() == 1,
            "{} holds {} certificates, expected 1",
            path.display(),
            certs.len()
        );
        Ok(pem)
    }
}

impl Drop for RealIronic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(state) = self.state.take() {
                eprintln!(
                    "kept Ironic's state directory (ironic.conf, ironic.db, ironic.log): {}",
                    state.keep().display()
                );
            }
        }
    }
}

/// The venv holding ironic 39.0.0: `$RIVET_IRONIC_VENV`, else `<checkout>/.venv/ironic`.
pub fn ironic_venv() -> Result<PathBuf> {
    let venv = match std::env::var_os(VENV_ENV) {
        Some(path) => PathBuf::from(path),
        None => crate::workspace_root().join(".venv/ironic"),
    };
    for bin in ["bin/ironic", "bin/ironic-dbsync"] {
        let path = venv.join(bin);
        ensure!(
            path.is_file(),
            "no Ironic venv at {}: {} is missing. Run ci/setup: it installs ironic=={IRONIC_VERSION} \
             there (or set {VENV_ENV} to a venv that has it)",
            venv.display(),
            path.display()
        );
    }
    let dist_info = format!("ironic-{IRONIC_VERSION}.dist-info");
    let lib = venv.join("lib");
    let has_version = std::fs::read_dir(&lib)
        .with_context(|| format!("listing {}", lib.display()))?
        .filter_map(|entry| entry.ok())
        .any(|python| {
            python
                .path()
                .join("site-packages")
                .join(&dist_info)
                .is_dir()
        });
    ensure!(
        has_version,
        "the venv {} has no {dist_info}: run ci/setup to install ironic=={IRONIC_VERSION}",
        venv.display()
    );
    Ok(venv)
}

/// Fails unless the calling thread is in `net`'s network namespace.
fn ensure_in_namespace(net: &TestNet) -> Result<()> {
    let ns = Path::new("/run/netns").join(net.name());
    let own = Path::new("/proc/thread-self/ns/net");
    let wanted = std::fs::metadata(&ns).with_context(|| format!("reading {}", ns.display()))?;
    let current = std::fs::metadata(own).with_context(|| format!("reading {}", own.display()))?;
    ensure!(
        (wanted.dev(), wanted.ino()) == (current.dev(), current.ino()),
        "RealIronic::start_in({}) called from outside that namespace: the harness could not \
         reach Ironic on {}. Call it inside TestNet::block_on",
        net.name(),
        net.bridge_address()
    );
    Ok(())
}

/// `ci/ironic/ironic.conf.in` with its placeholders filled in.
pub fn render_config(
    state_dir: &Path,
    host: IpAddr,
    port: u16,
    heartbeat_timeout: u32,
) -> Result<String> {
    let state_dir = state_dir
        .to_str()
        .with_context(|| format!("state directory {} is not UTF-8", state_dir.display()))?;
    let text = CONFIG_TEMPLATE
        .replace("@STATE_DIR@", state_dir)
        .replace("@API_HOST@", &host.to_string())
        .replace("@API_PORT@", &port.to_string())
        .replace("@HEARTBEAT_TIMEOUT@", &heartbeat_timeout.to_string());
    if let Some(line) = text
        .lines()
        .find(|l| !l.starts_with('#') && l.matches('@').count() >= 2)
    {
        bail!("ci/ironic/ironic.conf.in has a placeholder this code does not fill: {line}");
    }
    Ok(text)
}

/// `text` (an ini file) with each `(section, key, value)` added right after its section's
/// header, or in a new section at the end.
pub fn with_options(text: &str, options: &[(&str, &str, &str)]) -> String {
    let mut text = text.to_string();
    for (section, key, value) in options {
        let header = format!("[{section}]\n");
        let line = format!("{key} = {value}\n");
        match text.find(&header) {
            Some(at) => text.insert_str(at + header.len(), &line),
            None => text.push_str(&format!("\n{header}{line}")),
        }
    }
    text
}

fn create_schema(venv: &Path, config: &Path, log: &Path) -> Result<()> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("duplicating the handle of {}", log.display()))?;
    let status = Command::new(venv.join("bin/ironic-dbsync"))
        .arg("--config-file")
        .arg(config)
        .arg("create_schema")
        .stdout(out)
        .stderr(err)
        .status()
        .context("running ironic-dbsync create_schema")?;
    if !status.success() {
        let output = std::fs::read_to_string(log).unwrap_or_default();
        bail!("ironic-dbsync create_schema failed with {status}:\n{output}");
    }
    Ok(())
}

/// The `faultstring` inside Ironic's error body, or the raw body when it has none.
pub fn fault_text(body: &str) -> String {
    let inner = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error_message"].as_str().map(str::to_owned))
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["faultstring"].as_str().map(str::to_owned));
    inner.unwrap_or_else(|| body.to_owned())
}

/// `provision_state`, `target_provision_state` and `last_error` of a node, for messages.
pub fn node_summary(node: &Value) -> String {
    format!(
        "provision_state={} target_provision_state={} last_error={}",
        node["provision_state"], node["target_provision_state"], node["last_error"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn rendered_config_fills_every_placeholder() {
        let text = crate::or_panic(render_config(Path::new("/tmp/state"), LOOPBACK, 6385, 10));
        assert!(text.contains("connection = sqlite:////tmp/state/ironic.db"));
        assert!(text.contains("host_ip = 127.0.0.1"));
        assert!(text.contains("port = 6385"));
        assert!(text.contains("endpoint_override = http://127.0.0.1:6385"));
        assert!(text.contains("ramdisk_heartbeat_timeout = 10"));
        assert!(!text.contains('@'), "placeholder left in:\n{text}");
    }

    #[test]
    fn options_go_into_their_sections() {
        let text = "[api]\nport = 1\n\n[deploy]\nhttp_root = /x\n";
        assert_eq!(
            with_options(text, &[("deploy", "fast_track", "true"), ("new", "a", "b")]),
            "[api]\nport = 1\n\n[deploy]\nfast_track = true\nhttp_root = /x\n\n[new]\na = b\n"
        );
    }

    #[test]
    fn config_keeps_ironics_default_tls_policy() {
        let text = crate::or_panic(render_config(Path::new("/tmp/state"), LOOPBACK, 6385, 10));
        for option in ["require_tls", "tls_minimum_version", "verify_ca"] {
            assert!(
                !text.lines().any(|l| l.trim_start().starts_with(option)),
                "ironic.conf.in must leave [agent] {option} at Ironic's default"
            );
        }
    }

    #[test]
    fn config_in_a_namespace_listens_and_advertises_the_bridge_address() {
        let host = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
        let text = crate::or_panic(render_config(Path::new("/s"), host, 6385, 10));
        assert!(text.contains("host_ip = 10.77.0.1"), "{text}");
        assert!(
            text.contains("endpoint_override = http://10.77.0.1:6385"),
            "{text}"
        );
    }

    #[test]
    fn fault_text_unwraps_ironics_double_encoded_error() {
        let body = r#"{"error_message": "{\"faultcode\": \"Client\", \"faultstring\": \"TLS is required by configuration\", \"debuginfo\": null}"}"#;
        assert_eq!(fault_text(body), "TLS is required by configuration");
        assert_eq!(fault_text("plain"), "plain");
    }
}
