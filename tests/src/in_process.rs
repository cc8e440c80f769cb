//! The real agent API and command engine, started inside the test process over HTTPS with
//! an auto-TLS certificate for 127.0.0.1, as `rivet-agent run` starts them after lookup. The
//! host is faked: no power action, no disk flush, log sources under a temporary directory.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use rivet_agent::api::{self, ApiServer, ServeOptions};
use rivet_agent::commands::fssync::FakeFsSync;
use rivet_agent::commands::{CommandRunner, HostAccess};
use rivet_agent::context::AgentContext;
use rivet_agent::disks::{BlockDevice, BlockDevices, DiskError};
use rivet_agent::erase::fake::{FakeDevice, FakeDisk, FakeEraseHost};
use rivet_agent::image::grub::FakeBootHost;
use rivet_agent::ironic::lookup::{apply_lookup, ApplyOutcome};
use rivet_agent::logbuf::LogBuffer;
use rivet_agent::power::FakePower;
use rivet_agent::settings::{Settings, TlsVersion};
use rivet_agent::steps::{
    GenericHardwareManager, HardwareManagers, RivetHardwareManager, WiringSources,
};
use rivet_agent::syslogs::{FakeAddresses, FakeKernelLog, InterfaceAddress, LogSources};
use rivet_agent::tls;
use rivet_protocol::lookup::LookupResponse;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A line put into the agent's log buffer at start; `log.collect_system_logs` must carry it.
pub const LOG_MARKER: &str = "rivet-tests: in-process agent started";

/// A running in-process agent.
pub struct InProcessAgent {
    pub ctx: Arc<AgentContext>,
    pub power: Arc<FakePower>,
    pub fs_sync: Arc<FakeFsSync>,
    /// The one disk the erase steps see (`/dev/vda`, 16 MiB, filled with 0xAA).
    pub disk: FakeDisk,
    /// The PEM of the auto-TLS certificate: what the heartbeat would send as
    /// `agent_verify_ca`, and the only certificate the conductor then trusts.
    pub cert_pem: String,
    /// `https://127.0.0.1:<port>`, the callback URL.
    pub base_url: String,
    server: ApiServer,
    _dir: tempfile::TempDir,
}

impl InProcessAgent {
    /// Starts the agent. Its settings ask for TLS 1.2 at least, so that only `lookup`'s
    /// `config.tls_min_version` can raise the floor; `lookup` is applied as after a real
    /// lookup (token adopted when it carries one).
    pub async fn start(lookup: Option<&LookupResponse>) -> Result<InProcessAgent> {
        let dir = tempfile::Builder::new()
            .prefix("rivet-conformance-")
            .tempdir()
            .context("creating the agent's temporary directory")?;
        let settings = Settings {
            listen_host: Some(LOOPBACK),
            listen_port: 0,
            tls_min_version: TlsVersion::Tls12,
            run_dir: dir.path().join("run"),
            allow_host_power_actions: false,
            ..Settings::default()
        };
        let ctx = Arc::new(AgentContext::new(settings));
        if let Some(answer) = lookup {
            let outcome = apply_lookup(&ctx, answer);
            ensure!(outcome.may_serve(), "applying the lookup answer: {outcome}");
            if answer.config.agent_token.is_some() {
                ensure!(
                    outcome == ApplyOutcome::TokenAdopted,
                    "the lookup answer's token was not adopted: {outcome}"
                );
            }
        }

        let auto = tls::auto_tls(&ctx.settings, LOOPBACK).context("auto-TLS for 127.0.0.1")?;
        let tls_config = tls::server_config(
            auto.identity.cert_chain,
            auto.identity.key,
            ctx.state().tls_min_version,
        )
        .context("building the agent's TLS configuration")?;

        let power = Arc::new(FakePower::new());
        let fs_sync = Arc::new(FakeFsSync::with_devices(&["vda"]));
        let logs = LogBuffer::new(1000);
        logs.push(LOG_MARKER.to_owned());
        let host = HostAccess {
            root: fake_root(dir.path())?,
            fs_sync: fs_sync.clone(),
            log_sources: fake_log_sources(dir.path())?,
            // Mounts nothing and runs nothing: GRUB installs find no image root here.
            boot: Arc::new(FakeBootHost::new(&dir.path().join("image-root"), None)),
        };
        // The managers `rivet-agent run` has, except that the generic one lists no block
        // devices and erases a fake disk: the replays run write_image and
        // erase_devices_metadata in this process, possibly as root, and must never reach
        // this machine's disks. A disk step that gains an implementation must take its
        // devices from `disks` (a fake here).
        let disk = FakeDisk::new(16 << 20, 512, 0xAA);
        let erase_host = FakeEraseHost::new(vec![FakeDevice::new(
            "vda",
            rivet_agent::disks::DeviceKind::Disk,
            disk.clone(),
        )]);
        let managers = HardwareManagers::new(vec![
            Arc::new(
                GenericHardwareManager::new(&ctx.settings)
                    .with_block_devices(Arc::new(NoBlockDevices))
                    .with_erase_host(Arc::new(erase_host)),
            ),
            Arc::new(RivetHardwareManager::new(WiringSources::live(
                &ctx.settings,
                ctx.lldp.clone(),
            ))),
        ]);
        let runner = Arc::new(CommandRunner::with_host(
            ctx.clone(),
            managers,
            power.clone(),
            logs,
            host,
        ));
        let options = ServeOptions {
            tls: Some(tls_config),
            ..ServeOptions::default()
        };
        let server = api::serve(ctx.clone(), runner, options).context("starting the agent API")?;
        let base_url = format!("https://127.0.0.1:{}", server.local_addr().port());
        Ok(InProcessAgent {
            ctx,
            power,
            fs_sync,
            disk,
            cert_pem: auto.cert_pem,
            base_url,
            server,
            _dir: dir,
        })
    }

    /// `<base_url><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A client as the conductor's: trusts exactly the agent's certificate (for the IP in the
    /// callback URL), TLS 1.3 at least, and follows no redirect.
    pub fn conductor_client(&self) -> Result<reqwest::Client> {
        self.client(reqwest::tls::Version::TLS_1_3, None)
    }

    /// A client that trusts exactly the agent's certificate and speaks TLS `min` to `max`.
    pub fn client(
        &self,
        min: reqwest::tls::Version,
        max: Option<reqwest::tls::Version>,
    ) -> Result<reqwest::Client> {
        let certificate = reqwest::Certificate::from_pem(self.cert_pem.as_bytes())
            .context("parsing the agent's certificate")?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(certificate)
            .min_tls_version(min)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(max) = max {
            builder = builder.max_tls_version(max);
        }
        builder.build().context("building the HTTPS client")
    }

    pub async fn shutdown(self) -> Result<()> {
        self.server
            .shutdown()
            .await
            .context("stopping the agent API")
    }
}

/// The file-system root rescue files would go under.
fn fake_root(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    Ok(root)
}

/// Kernel log, addresses, `/proc` and `/sys` for `collect_system_logs`, all made up.
fn fake_log_sources(dir: &std::path::Path) -> Result<LogSources> {
    let proc_root = dir.join("proc");
    let sys_root = dir.join("sys");
    let files: [(std::path::PathBuf, &str); 4] = [
        (
            proc_root.join("self/mounts"),
            "tmpfs / tmpfs rw 0 0\nproc /proc proc rw 0 0\n",
        ),
        (
            proc_root.join("net/route"),
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
        ),
        (sys_root.join("class/net/eth0/ifindex"), "2\n"),
        (
            sys_root.join("class/net/eth0/address"),
            "52:54:00:12:34:56\n",
        ),
    ];
    for (path, content) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(LogSources {
        kernel_log: Arc::new(FakeKernelLog {
            records: vec!["6,1,1000,-;rivet-tests: fake kernel log".into()],
            error: None,
        }),
        addresses: Arc::new(FakeAddresses(vec![InterfaceAddress {
            interface: "eth0".into(),
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
            prefix_len: Some(24),
        }])),
        proc_root,
        sys_root,
    })
}

/// A machine without block devices, for the in-process agent's disk steps.
#[derive(Debug, Clone, Copy)]
pub struct NoBlockDevices;

impl BlockDevices for NoBlockDevices {
    fn list(&self) -> Result<Vec<BlockDevice>, DiskError> {
        Ok(Vec::new())
    }
}
