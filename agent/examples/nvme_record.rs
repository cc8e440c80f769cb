//! Records what an emulated NVMe controller answers, then erases its namespace with
//! `erase_devices_express`: the fixture recorder of agent/tests/fixtures/nvme (record.sh
//! builds this statically, makes it `/init` of a ramdisk and boots QEMU with an NVMe drive).
//!
//! Console output, one line each: `RIVET-RECORD <name> ok <hex>` or
//! `RIVET-RECORD <name> error <message>` for Identify Controller, Identify Namespace, the
//! active namespace list, the Sanitize Status log and a Sanitize command; then
//! `RIVET-RESULT <json>`, the step's result (or error). Then the VM powers off.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rivet_agent::disks::sysfs::SysfsBlockDevices;
use rivet_agent::disks::BlockDevices;
use rivet_agent::erase::io::DeviceFile;
use rivet_agent::erase::nvme::{
    sanitize_cdw10, AdminCommand, DevNvme, NvmeAdmin, SanitizeAction, CNS_ACTIVE_NAMESPACES,
    CNS_CONTROLLER, CNS_NAMESPACE, LID_SANITIZE_STATUS, SANITIZE_LOG_LEN,
};
use rivet_agent::erase::{erase_step, EraseCall, EraseMode, SystemEraseHost};
use rivet_agent::progress::{AbortSignal, ProgressBoard};
use rivet_agent::settings::Settings;
use rivet_agent::syslogs::LogAttachments;
use serde_json::json;

const DEVICE: &str = "nvme0n1";

fn main() {
    rivet_agent::init::run_as_init(record)
}

async fn record() -> anyhow::Result<()> {
    let outcome = tokio::task::spawn_blocking(record_blocking)
        .await
        .context("the recorder thread")?;
    if let Err(e) = outcome {
        println!("RIVET-RESULT {}", json!({"error": format!("{e:#}")}));
    }
    match rivet_agent::init::shutdown::power_off() {
        Ok(never) => match never {},
        Err(e) => bail!("powering off: {e}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn record_blocking() -> anyhow::Result<()> {
    let path = Path::new("/dev").join(DEVICE);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{} did not appear within 60 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let file = DeviceFile::open(&path, false)?.into_file();
    let mut nvme = DevNvme::new(file, DEVICE);
    let nsid = nvme.namespace_id()?;
    let commands = [
        ("id-ctrl", AdminCommand::identify(CNS_CONTROLLER, 0), 4096),
        ("id-ns", AdminCommand::identify(CNS_NAMESPACE, nsid), 4096),
        (
            "ns-list",
            AdminCommand::identify(CNS_ACTIVE_NAMESPACES, 0),
            4096,
        ),
        (
            "sanitize-log",
            AdminCommand::get_log_page(LID_SANITIZE_STATUS, SANITIZE_LOG_LEN),
            SANITIZE_LOG_LEN,
        ),
        (
            "sanitize-crypto",
            AdminCommand::sanitize(sanitize_cdw10(SanitizeAction::CryptoErase, 0), 0),
            0,
        ),
    ];
    for (name, cmd, len) in commands {
        let mut data = vec![0u8; len];
        match nvme.admin(&cmd, &mut data) {
            Ok(_) => println!("RIVET-RECORD {name} ok {}", hex(&data)),
            Err(e) => println!("RIVET-RECORD {name} error {e}"),
        }
    }
    drop(nvme);

    let settings = Settings::default();
    let host = SystemEraseHost::new(Box::new(|| {
        let all = SysfsBlockDevices::default().list()?;
        Ok(all.into_iter().filter(|d| d.name == DEVICE).collect())
    }));
    let node = json!({"driver_internal_info": {}});
    let progress = ProgressBoard::default();
    let abort = AbortSignal::default();
    let attachments = LogAttachments::default();
    let call = EraseCall {
        node: &node,
        settings: &settings,
        progress: &progress,
        abort: &abort,
        attachments: &attachments,
    };
    let result = match erase_step(&host, EraseMode::Express, &call) {
        Ok(value) => value,
        Err(e) => json!({"error": e.to_string()}),
    };
    println!("RIVET-RESULT {result}");
    Ok(())
}
