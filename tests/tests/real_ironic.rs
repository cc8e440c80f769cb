//! rivet-agent against the real Ironic 39.0.0 from PyPI (installed by ci/setup), on loopback,
//! with Ironic's default TLS policy: the conductor only accepts https callback URLs and pins
//! the certificate the agent sends.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rivet_tests::agent::{agent_binary, agent_interfaces, spawn_agent};
use rivet_tests::ironic::{node_summary, RealIronic, HEARTBEAT_TIMEOUT_SECS};
use rivet_tests::net::free_loopback_port;
use rivet_tests::or_panic;
use serde_json::{json, Value};

/// Bound for each provision-state transition that needs no agent.
const TRANSITION_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for the whole agent-driven clean: lookup, heartbeats, get and execute the step.
const CLEAN_TIMEOUT: Duration = Duration::from_secs(180);

/// The agent's harmless clean step (`rivet_hardware_manager`, interface `deploy`, argument
/// `seconds`): it only sleeps, so the agent, which runs on this host here, touches no disk.
///
/// Not `wait`: Ironic 39 reserves the step names `wait`, `hold`, `power_on`, `power_off` and
/// `reboot` for itself (`ironic/conductor/steps.py`). It drops them from a user's step list
/// while validating it and runs them in the conductor, so an agent step of that name never
/// reaches the agent: a manual clean `[{"interface": "deploy", "step": "wait"}]` finishes at
/// once without calling `execute_clean_step`.
const AGENT_TEST_STEP: &str = "sleep";

/// Manual clean steps running [`AGENT_TEST_STEP`]. Two seconds keep the node in `clean wait`
/// long enough to read `driver_internal_info.agent_url` before the final power-off wipes it.
fn sleep_step() -> Value {
    json!([{"interface": "deploy", "step": AGENT_TEST_STEP, "args": {"seconds": 2}}])
}

/// Lookup -> token -> TLS heartbeat accepted -> manual clean whose steps the conductor
/// fetches from the agent -> `manageable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_manual_clean_against_real_ironic() {
    let binary = or_panic(agent_binary());
    let interfaces = or_panic(agent_interfaces(&binary));
    let macs: Vec<String> = interfaces.iter().map(|i| i.mac_address.clone()).collect();
    assert!(
        !macs.is_empty(),
        "`rivet-agent interfaces` reported no interface with a MAC; lookup needs at least one"
    );
    let ironic = or_panic(RealIronic::start().await);
    or_panic(manual_clean(&ironic, &binary, &macs).await);
}

async fn manual_clean(
    ironic: &RealIronic,
    binary: &std::path::Path,
    macs: &[String],
) -> Result<()> {
    let node = ironic.create_node("rivet-real-clean").await?;
    let uuid = node["uuid"]
        .as_str()
        .context("created node has no uuid")?
        .to_owned();
    for mac in macs {
        ironic.create_port(&uuid, mac).await?;
    }
    ironic.manage(&uuid).await?;
    ironic
        .wait_for_provision_state(&uuid, "manageable", TRANSITION_TIMEOUT)
        .await?;

    // As on real hardware: the conductor powers the node on and waits, then the agent boots.
    ironic.clean(&uuid, sleep_step()).await?;
    ironic
        .wait_for_provision_state(&uuid, "clean wait", TRANSITION_TIMEOUT)
        .await?;

    let agent_dir = tempfile::Builder::new()
        .prefix("rivet-agent-")
        .tempdir()
        .context("creating the agent's directory")?;
    let agent_port = free_loopback_port()?;
    let settings = [
        ("ipa-api-url", ironic.url().to_owned()),
        ("ipa-listen-host", "127.0.0.1".to_owned()),
        ("ipa-listen-port", agent_port.to_string()),
        ("ipa-advertise-host", "127.0.0.1".to_owned()),
        ("ipa-advertise-port", agent_port.to_string()),
        (
            "rivet-run-dir",
            agent_dir.path().join("run").display().to_string(),
        ),
        ("ipa-insecure", "1".to_owned()),
    ];
    let mut agent = spawn_agent(binary, &settings, &agent_dir.path().join("agent.log"))?;

    // The conductor wipes agent_url and agent_verify_ca when it powers the node off at the
    // end, so keep the last state that still had them.
    let mut with_agent: Option<Value> = None;
    let done = ironic
        .watch_node(&uuid, CLEAN_TIMEOUT, "the end of cleaning", |node| {
            agent.ensure_running()?;
            if node["driver_internal_info"]["agent_url"].is_string() {
                with_agent = Some(node.clone());
            }
            match node["provision_state"].as_str() {
                Some("manageable") => Ok(Some(node.clone())),
                Some("clean failed") => anyhow::bail!("cleaning failed: {}", node_summary(node)),
                _ => Ok(None),
            }
        })
        .await?;
    ensure!(
        done["last_error"].is_null(),
        "cleaning ended with an error: {}",
        node_summary(&done)
    );

    let seen = with_agent.context(
        "never saw driver_internal_info.agent_url while cleaning: no heartbeat was accepted",
    )?;
    let agent_url = &seen["driver_internal_info"]["agent_url"];
    ensure!(
        agent_url == &json!(format!("https://127.0.0.1:{agent_port}")),
        "agent_url is {agent_url}, expected https://127.0.0.1:{agent_port}"
    );
    ironic.stored_agent_certificate(&seen)?;

    let log = ironic.log_text()?;
    ensure!(
        log.contains(&format!("Generating agent token for node {uuid}")),
        "the conductor never generated an agent token for {uuid} (no lookup at 1.62?)"
    );
    let refreshed = log
        .lines()
        .find(|l| l.contains(&format!("Refreshed agent clean step cache for node {uuid}")))
        .context("the conductor never fetched clean steps from the agent")?;
    for step in ["erase_devices_metadata", AGENT_TEST_STEP] {
        ensure!(
            refreshed.contains(&format!("'step': '{step}'")),
            "clean steps fetched from the agent lack {step}: {refreshed}"
        );
    }
    ensure!(
        log.contains(&format!(
            "Agent on node {uuid} returned clean command success"
        )),
        "the conductor never saw the agent finish the {AGENT_TEST_STEP} step"
    );
    Ok(())
}

/// Bound for inspection: collection, the POST to continue_inspection and Ironic's hooks.
const INSPECTION_TIMEOUT: Duration = Duration::from_secs(120);
/// A port the node has before inspection that the agent does not report: the `ports` hook
/// (`keep_ports = present`) must delete it.
const STALE_MAC: &str = "52:54:00:de:ad:01";

/// In-band inspection by Ironic's `agent` inspect interface: the node waits in
/// `inspect wait`, the agent (a normal process on this host) posts its inventory to
/// `/v1/continue_inspection`, Ironic's hooks set `cpu_arch`, `memory_mb` and the ports, and
/// the node ends `manageable`; the agent then looks the node up by the UUID Ironic returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_inspection_against_real_ironic() {
    let binary = or_panic(agent_binary());
    let interfaces = or_panic(agent_interfaces(&binary));
    let mut macs: Vec<String> = interfaces.iter().map(|i| i.mac_address.clone()).collect();
    macs.sort();
    assert!(
        !macs.is_empty(),
        "`rivet-agent interfaces` reported no interface with a MAC; inspection needs one"
    );
    let ironic = or_panic(RealIronic::start().await);
    or_panic(inspection(&ironic, &binary, &macs).await);
}

async fn inspection(ironic: &RealIronic, binary: &std::path::Path, macs: &[String]) -> Result<()> {
    let node = ironic.create_node("rivet-real-inspect").await?;
    let uuid = node["uuid"]
        .as_str()
        .context("created node has no uuid")?
        .to_owned();
    // Ironic finds the node by a port's MAC; it has no BMC address to match.
    ironic.create_port(&uuid, &macs[0]).await?;
    ironic.create_port(&uuid, STALE_MAC).await?;
    ironic.manage(&uuid).await?;
    ironic
        .wait_for_provision_state(&uuid, "manageable", TRANSITION_TIMEOUT)
        .await?;
    ironic.inspect(&uuid).await?;
    ironic
        .wait_for_provision_state(&uuid, "inspect wait", TRANSITION_TIMEOUT)
        .await?;

    let agent_dir = tempfile::Builder::new()
        .prefix("rivet-agent-")
        .tempdir()
        .context("creating the agent's directory")?;
    let agent_port = free_loopback_port()?;
    let settings = [
        (
            "ipa-inspection-callback-url",
            format!("{}/v1/continue_inspection", ironic.url()),
        ),
        // As with fast-track: after inspection the agent looks the node up by its UUID.
        ("ipa-api-url", ironic.url().to_owned()),
        // This host has no SMBIOS tables, so no dmi-decode; no LLDP on its NIC.
        (
            "ipa-inspection-collectors",
            "default,logs,pci-devices,numa-topology".to_owned(),
        ),
        ("rivet-lldp", "0".to_owned()),
        ("ipa-listen-host", "127.0.0.1".to_owned()),
        ("ipa-listen-port", agent_port.to_string()),
        ("ipa-advertise-host", "127.0.0.1".to_owned()),
        ("ipa-advertise-port", agent_port.to_string()),
        (
            "rivet-run-dir",
            agent_dir.path().join("run").display().to_string(),
        ),
        ("ipa-insecure", "1".to_owned()),
    ];
    let agent_log = agent_dir.path().join("agent.log");
    let mut agent = spawn_agent(binary, &settings, &agent_log)?;
    let done = ironic
        .watch_until(
            &uuid,
            INSPECTION_TIMEOUT,
            "manageable",
            "inspect failed",
            |_| agent.ensure_running(),
        )
        .await?;
    ensure!(
        done["last_error"].is_null(),
        "inspection ended with an error: {}",
        node_summary(&done)
    );
    let properties = &done["properties"];
    ensure!(
        properties["cpu_arch"] == std::env::consts::ARCH,
        "cpu_arch is {}, expected {}: {properties}",
        properties["cpu_arch"],
        std::env::consts::ARCH
    );
    ensure!(
        properties["memory_mb"].as_u64().is_some_and(|mb| mb > 0),
        "the memory hook set no memory_mb: {properties}"
    );
    let ports = ironic.port_addresses(&uuid).await?;
    ensure!(
        ports == macs,
        "the node's ports are {ports:?}, expected exactly the agent's MACs {macs:?}"
    );

    let stored = ironic.inventory(&uuid).await?;
    let inventory = &stored["inventory"];
    let reported: Vec<&str> = inventory["interfaces"]
        .as_array()
        .context("stored inventory has no interfaces")?
        .iter()
        .filter_map(|i| i["mac_address"].as_str())
        .collect();
    ensure!(
        macs.iter().all(|m| reported.contains(&m.as_str())),
        "stored interfaces {reported:?} lack some of {macs:?}"
    );
    for key in [
        "cpu",
        "memory",
        "disks",
        "system_vendor",
        "boot",
        "hostname",
    ] {
        ensure!(
            inventory.get(key).is_some(),
            "stored inventory has no {key}"
        );
    }
    let plugin_data = &stored["plugin_data"];
    ensure!(
        plugin_data["pci_devices"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "plugin data has no pci_devices: {}",
        plugin_data.get("pci_devices").unwrap_or(&Value::Null)
    );
    ensure!(
        plugin_data["configuration"]["collectors"]
            == json!(["default", "logs", "pci-devices", "numa-topology"]),
        "configuration: {}",
        plugin_data["configuration"]
    );

    // Then lookup by the UUID inspection returned (404 here: the node is manageable again
    // and fast-track is off, so the agent keeps retrying).
    let lookup = format!("node_uuid={uuid}");
    let deadline = std::time::Instant::now() + TRANSITION_TIMEOUT;
    loop {
        agent.ensure_running()?;
        let log = ironic.log_text()?;
        if log
            .lines()
            .any(|l| l.contains("/v1/lookup") && l.contains(&lookup))
        {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the agent never looked up with {lookup}; agent log:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(&agent_log).context("reading the agent log")?;
    ensure!(
        log.contains("inspection finished"),
        "the agent never logged the end of inspection:\n{log}"
    );
    Ok(())
}

/// The harness on its own, without the agent: Ironic starts with the test configuration, a
/// node reaches `manageable` and `clean wait`, lookup at 1.62 hands out a 43-character token
/// once, an http callback is refused because TLS is required, and an https heartbeat is
/// accepted with its certificate stored where the real test looks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ironic_harness_self_check() {
    let ironic = or_panic(RealIronic::start().await);
    or_panic(self_check(&ironic).await);
}

async fn self_check(ironic: &RealIronic) -> Result<()> {
    let mac = "52:54:00:a1:b2:c3";
    let node = ironic.create_node("rivet-harness-self-check").await?;
    let uuid = node["uuid"]
        .as_str()
        .context("created node has no uuid")?
        .to_owned();
    ensure!(node["driver"] == "fake-hardware", "node: {node}");
    ironic.create_port(&uuid, mac).await?;
    ironic.manage(&uuid).await?;
    let managed = ironic
        .wait_for_provision_state(&uuid, "manageable", TRANSITION_TIMEOUT)
        .await?;
    ensure!(
        managed["last_error"].is_null(),
        "{}",
        node_summary(&managed)
    );

    ironic.clean(&uuid, sleep_step()).await?;
    ironic
        .wait_for_provision_state(&uuid, "clean wait", TRANSITION_TIMEOUT)
        .await?;

    let lookup = ironic.lookup(&[mac]).await?;
    ensure!(
        lookup["node"]["uuid"] == uuid.as_str(),
        "lookup found {}",
        lookup["node"]
    );
    let config = &lookup["config"];
    ensure!(
        config["heartbeat_timeout"] == HEARTBEAT_TIMEOUT_SECS,
        "lookup config heartbeat_timeout is {}",
        config["heartbeat_timeout"]
    );
    ensure!(
        config["tls_min_version"] == "1.3",
        "lookup config tls_min_version is {} (Ironic 39's default is 1.3)",
        config["tls_min_version"]
    );
    let token = config["agent_token"]
        .as_str()
        .with_context(|| format!("lookup config has no agent_token: {config}"))?
        .to_owned();
    ensure!(
        token.len() == 43,
        "agent token has {} characters, expected 43",
        token.len()
    );
    let again = ironic.lookup(&[mac]).await?;
    ensure!(
        again["config"]["agent_token"] == "******",
        "a second lookup must hide the token, got {}",
        again["config"]["agent_token"]
    );

    let (status, body) = ironic
        .heartbeat(
            &uuid,
            &json!({"callback_url": "http://127.0.0.1:9", "agent_token": token, "agent_version": "13.0.0"}),
        )
        .await?;
    ensure!(
        status == 400 && body.contains("TLS is required by configuration"),
        "an http callback_url must be refused while [agent] require_tls is at its default; got {status}: {body}"
    );

    // Accepts connections (the kernel's backlog) but never answers, so the conductor's
    // get_clean_steps call hangs instead of failing the node and wiping agent_url.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    let callback = format!("https://127.0.0.1:{}", silent.local_addr()?.port());
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .context("generating a self-signed certificate for 127.0.0.1")?;
    let pem = cert.cert.pem();
    let (status, body) = ironic
        .heartbeat(
            &uuid,
            &json!({
                "callback_url": callback,
                "agent_token": token,
                "agent_version": "13.0.0",
                "agent_verify_ca": pem,
            }),
        )
        .await?;
    ensure!(status == 202, "https heartbeat: {status}: {body}");

    let seen = ironic
        .watch_node(&uuid, TRANSITION_TIMEOUT, "agent_url", |node| {
            Ok(node["driver_internal_info"]["agent_url"]
                .is_string()
                .then(|| node.clone()))
        })
        .await?;
    ensure!(
        seen["driver_internal_info"]["agent_url"] == callback.as_str(),
        "agent_url is {}, expected {callback}",
        seen["driver_internal_info"]["agent_url"]
    );
    let stored = ironic.stored_agent_certificate(&seen)?;
    ensure!(
        stored.trim() == pem.trim(),
        "the stored certificate differs from the one sent"
    );
    Ok(())
}
