//! The end-to-end scenario shared by `tests/tests/e2e_boot.rs` and the boot benchmark
//! (`rivet-boot-bench`, run by `ci/bench/boot`): a VM boots the rivet ISO in a test
//! namespace, takes a DHCP lease from dnsmasq, looks itself up at the real Ironic 39 on the
//! bridge, heartbeats over TLS, and runs a manual clean to the end.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::dnsmasq::Dnsmasq;
use crate::image::{boot_image, BootImage};
use crate::ironic::{node_summary, RealIronic};
use crate::netns::{TestNet, TestNetConfig};
use crate::vm::{BootMedium, DiskBus, Firmware, VmBuilder};

/// Printed by the agent when the kernel has started it as `/init` (PID 1).
pub const INIT_BANNER: &str = "starting as init";
/// Printed by the agent for each DHCP lease it applies: `<link>: <ip>/<len> from DHCP server <ip>`.
pub const DHCP_LEASE: &str = "from DHCP server";
/// The VM's only NIC.
pub const VM_MAC: &str = "52:54:00:77:00:01";
/// The port the agent listens on and advertises (IPA's default).
pub const AGENT_PORT: u16 = 9999;
/// Bound for the boot (firmware, boot loader, kernel) up to the agent's banner, under TCG.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Bound for the first DHCP lease once the agent runs.
pub const DHCP_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for each provision-state transition that needs no agent.
pub const TRANSITION_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound from QEMU's start to the end of cleaning: boot, DHCP, lookup, heartbeats, step.
pub const CLEAN_TIMEOUT: Duration = Duration::from_secs(420);
/// The agent's harmless clean step (see tests/tests/real_ironic.rs for why not `wait`).
pub const AGENT_TEST_STEP: &str = "sleep";

/// Namespace, DHCP server and boot image: everything a VM test needs before Ironic.
pub struct Lab {
    // Declared in drop order: the DHCP server ends before its namespace goes.
    pub dnsmasq: Dnsmasq,
    pub net: TestNet,
    pub image: BootImage,
}

impl Lab {
    /// Builds (or reuses) the image whose kernel command line points the agent at
    /// [`RealIronic::url_in`] the namespace, then creates the namespace (one tap) and starts
    /// dnsmasq in it.
    pub fn create() -> Result<Lab> {
        Self::create_with_args("")
    }

    /// Like [`Lab::create`], with `extra` appended to the image's kernel command line
    /// (`{api}` in it stands for the namespace's Ironic URL).
    pub fn create_with_args(extra: &str) -> Result<Lab> {
        let config = TestNetConfig::default();
        let api_url = format!(
            "http://{}:{}",
            config.bridge_address,
            crate::ironic::NAMESPACE_API_PORT
        );
        let mut args = kernel_args(&api_url);
        if !extra.is_empty() {
            args = format!("{args} {}", extra.replace("{api}", &api_url));
        }
        let image = boot_image(&args).context("building the boot image")?;
        let net = TestNet::create(config)?;
        ensure!(
            RealIronic::url_in(&net) == api_url,
            "the namespace's Ironic URL {} differs from the image's {api_url}",
            RealIronic::url_in(&net)
        );
        let dnsmasq = Dnsmasq::start(&net, &[])?;
        Ok(Lab {
            dnsmasq,
            net,
            image,
        })
    }

    /// A VM booting this lab's ISO from `medium`, with a virtio-blk and an NVMe disk and one
    /// virtio-net NIC ([`VM_MAC`]) on tap0.
    pub fn vm(&self, name: &str, firmware: Firmware, medium: Medium) -> VmBuilder {
        let iso = self.image.iso();
        let boot = match medium {
            Medium::Cd => BootMedium::Cd(iso),
            Medium::UsbCd => BootMedium::UsbCd(iso),
            Medium::UsbDisk => BootMedium::UsbDisk(iso),
        };
        VmBuilder::new(name)
            .firmware(firmware)
            .boot(boot)
            .disk(DiskBus::VirtioBlk, 2 << 30)
            .disk(DiskBus::Nvme, 2 << 30)
            .nic("tap0", VM_MAC)
    }

    /// The address dnsmasq acknowledged to the VM's NIC; fails if it has not.
    pub fn vm_address(&self) -> Result<Ipv4Addr> {
        self.dnsmasq.acked_address(VM_MAC)?.with_context(|| {
            format!(
                "dnsmasq never acknowledged a lease to {VM_MAC}; its log:\n{}",
                self.dnsmasq.log_tail(40)
            )
        })
    }
}

/// How the ISO is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    Cd,
    UsbCd,
    UsbDisk,
}

/// The kernel arguments baked into the image: where Ironic is; TLS towards the agent comes
/// from auto-TLS, and the API URL is plain http like Ironic's own.
pub fn kernel_args(api_url: &str) -> String {
    format!("ipa-api-url={api_url} ipa-insecure=1")
}

/// Manual clean steps running [`AGENT_TEST_STEP`] for two seconds: long enough to read
/// `agent_url` while the node waits in `clean wait`.
pub fn sleep_step() -> Value {
    json!([{"interface": "deploy", "step": AGENT_TEST_STEP, "args": {"seconds": 2}}])
}

/// Enrolls a node with a port for each of `macs`, makes it `manageable` and starts a manual
/// clean with [`sleep_step`]; returns its uuid once it waits for its agent (`clean wait`).
pub async fn enroll_for_clean(ironic: &RealIronic, name: &str, macs: &[&str]) -> Result<String> {
    enroll_for_clean_steps(ironic, name, macs, sleep_step()).await
}

/// [`enroll_for_clean`] with the manual clean's `clean_steps`.
pub async fn enroll_for_clean_steps(
    ironic: &RealIronic,
    name: &str,
    macs: &[&str],
    clean_steps: Value,
) -> Result<String> {
    let node = ironic.create_node(name).await?;
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
    ironic.clean(&uuid, clean_steps).await?;
    ironic
        .wait_for_provision_state(&uuid, "clean wait", TRANSITION_TIMEOUT)
        .await?;
    Ok(uuid)
}

/// What [`watch_clean`] saw.
#[derive(Debug)]
pub struct CleanOutcome {
    /// From `started` to the first poll that saw `agent_url` (the first accepted heartbeat).
    pub first_heartbeat: Duration,
    /// The last node state that still had `agent_url` (the final power-off wipes it).
    pub with_agent: Value,
    /// The node back in `manageable`.
    pub done: Value,
}

/// Polls node `uuid` until cleaning ends in `manageable`, calling `alive` on every poll
/// (e.g. to fail at once when the VM died). Times are counted from `started`.
pub async fn watch_clean(
    ironic: &RealIronic,
    uuid: &str,
    started: Instant,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<CleanOutcome> {
    let mut first_heartbeat = None;
    let mut with_agent: Option<Value> = None;
    let remaining = CLEAN_TIMEOUT.saturating_sub(started.elapsed());
    let done = ironic
        .watch_node(uuid, remaining, "the end of cleaning", |node| {
            alive()?;
            if node["driver_internal_info"]["agent_url"].is_string() {
                first_heartbeat.get_or_insert_with(|| started.elapsed());
                with_agent = Some(node.clone());
            }
            match node["provision_state"].as_str() {
                Some("manageable") => Ok(Some(node.clone())),
                Some("clean failed") => anyhow::bail!("cleaning failed: {}", node_summary(node)),
                _ => Ok(None),
            }
        })
        .await?;
    let with_agent = with_agent.context(
        "never saw driver_internal_info.agent_url while cleaning: no heartbeat was accepted",
    )?;
    let first_heartbeat =
        first_heartbeat.context("agent_url seen but its time was not recorded")?;
    Ok(CleanOutcome {
        first_heartbeat,
        with_agent,
        done,
    })
}

/// What must hold after a clean driven by the agent at `agent_address`: no error, an https
/// `agent_url` on that address, the agent's certificate pinned by the conductor, and the
/// conductor's log showing lookup, steps fetched from the agent and the step's success.
pub fn check_clean(
    ironic: &RealIronic,
    uuid: &str,
    outcome: &CleanOutcome,
    agent_address: Ipv4Addr,
) -> Result<()> {
    ensure!(
        outcome.done["last_error"].is_null(),
        "cleaning ended with an error: {}",
        node_summary(&outcome.done)
    );
    let agent_url = &outcome.with_agent["driver_internal_info"]["agent_url"];
    let expected = format!("https://{agent_address}:{AGENT_PORT}");
    ensure!(
        agent_url == &json!(expected),
        "agent_url is {agent_url}, expected {expected} (TLS, the VM's DHCP address)"
    );
    ironic.stored_agent_certificate(&outcome.with_agent)?;

    let log = ironic.log_text()?;
    ensure!(
        log.contains(&format!("Generating agent token for node {uuid}")),
        "the conductor never generated an agent token for {uuid} (no lookup at 1.62?)"
    );
    let refreshed = log
        .lines()
        .find(|l| l.contains(&format!("Refreshed agent clean step cache for node {uuid}")))
        .context("the conductor never fetched clean steps from the agent")?;
    ensure!(
        refreshed.contains(&format!("'step': '{AGENT_TEST_STEP}'")),
        "clean steps fetched from the agent lack {AGENT_TEST_STEP}: {refreshed}"
    );
    ensure!(
        log.contains(&format!(
            "Agent on node {uuid} returned clean command success"
        )),
        "the conductor never saw the agent finish the {AGENT_TEST_STEP} step"
    );
    Ok(())
}
