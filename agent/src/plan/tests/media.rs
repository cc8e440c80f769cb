//! Report media, image media and the machine's identity.

use std::path::PathBuf;
use std::sync::Mutex;

use rivet_protocol::plan::report::{PlanReport, RunState, REPORT_MAGIC};
use serde_json::json;

use super::*;

fn disk(name: &str, serial: &str, boot: bool) -> crate::disks::BlockDevice {
    crate::disks::BlockDevice {
        model: None,
        serial: Some(serial.into()),
        is_boot_medium: boot,
        ..crate::erase::fake::block_device(name, crate::disks::DeviceKind::Disk, MEDIUM_SIZE, 512)
    }
}

#[test]
fn the_report_medium_is_chosen_by_serial_and_never_the_boot_medium() {
    let devices = [
        disk("vda", "A", false),
        disk("vdb", MEDIUM_SERIAL, false),
        disk("sr0", "B", true),
    ];
    assert_eq!(choose_medium(&devices, MEDIUM_SERIAL).unwrap().name, "vdb");
    assert!(choose_medium(&devices, "B")
        .unwrap_err()
        .contains("boot medium"));
    assert!(choose_medium(&devices, "C")
        .unwrap_err()
        .contains("no disk"));
    let twice = [disk("vda", "A", false), disk("vdb", "A", false)];
    assert!(choose_medium(&twice, "A")
        .unwrap_err()
        .contains("refusing to guess"));
}

#[test]
fn reports_on_a_medium_start_with_the_magic_and_end_in_nul_bytes() {
    let bench = Bench::new(vec![]);
    let medium = DiskMedium::new(bench.medium.clone(), "m".into());
    assert_eq!(read_report(&medium).unwrap(), None);
    let report = PlanReport {
        rivet_report: 1,
        plan: "p".into(),
        plan_sha256: "d".into(),
        machine: None,
        identity: me(),
        boot_id: "b".into(),
        started_at: 1,
        finished_at: None,
        state: RunState::Running,
        steps: vec![],
        message: Some("x".repeat(10_000)),
        completed_at: None,
    };
    write_report(&medium, &report).unwrap();
    let bytes = std::fs::read(&bench.medium).unwrap();
    assert!(bytes.starts_with(REPORT_MAGIC));
    assert_eq!(read_report(&medium).unwrap(), Some(report.clone()));
    // A shorter report later leaves no tail of the longer one behind.
    let short = PlanReport {
        message: None,
        ..report
    };
    write_report(&medium, &short).unwrap();
    assert_eq!(read_report(&medium).unwrap(), Some(short));
}

#[test]
fn the_identity_comes_from_the_nics_and_the_dmi_fields_without_placeholders() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sysfs-net");
    let net = crate::net::interfaces::FakeNetInfo::new(root);
    let dmi = tempfile::tempdir().unwrap();
    std::fs::write(
        dmi.path().join("product_uuid"),
        "1B4E28BA-2FA1-11D2-883F-0016D3CCA427\n",
    )
    .unwrap();
    std::fs::write(
        dmi.path().join("product_serial"),
        "To Be Filled By O.E.M.\n",
    )
    .unwrap();
    let identity = read_identity(&net, dmi.path());
    assert!(
        identity.macs.contains(&"52:54:00:12:34:57".to_string()),
        "{identity:?}"
    );
    assert_eq!(
        identity.system_uuid.as_deref(),
        Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    );
    assert_eq!(identity.serial, None, "a placeholder is no serial");
    std::fs::write(dmi.path().join("product_serial"), "CZ2017A02\n").unwrap();
    std::fs::write(
        dmi.path().join("product_uuid"),
        "00000000-0000-0000-0000-000000000000",
    )
    .unwrap();
    let identity = read_identity(&net, dmi.path());
    assert_eq!(identity.serial.as_deref(), Some("CZ2017A02"));
    assert_eq!(identity.system_uuid, None);
}

struct Listed(Vec<crate::disks::BlockDevice>);

impl crate::disks::BlockDevices for Listed {
    fn list(&self) -> Result<Vec<crate::disks::BlockDevice>, crate::disks::DiskError> {
        Ok(self.0.clone())
    }
}

#[derive(Default)]
struct RecordingMounter(Mutex<Vec<(PathBuf, PathBuf, String)>>);

impl crate::vmedia::Mounter for RecordingMounter {
    fn mount_readonly(
        &self,
        device: &std::path::Path,
        target: &std::path::Path,
        fstype: &str,
    ) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push((device.into(), target.into(), fstype.into()));
        Ok(())
    }
    fn unmount(&self, _target: &std::path::Path) -> Result<(), String> {
        Ok(())
    }
}

/// A file holding an ISO 9660 primary volume descriptor with `label`.
fn iso_with_label(path: &std::path::Path, label: &str) {
    let mut bytes = vec![0u8; 17 * 2048];
    let pvd = &mut bytes[16 * 2048..];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    let mut id = [b' '; 32];
    id[..label.len()].copy_from_slice(label.as_bytes());
    pvd[40..72].copy_from_slice(&id);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn image_media_named_by_label_are_mounted_read_only() {
    use crate::plan::media::{mount_media, wanted_labels};
    let dir = tempfile::tempdir().unwrap();
    let url = |label: &str| format!("file:///run/rivet/media/{label}/img/disk.raw");
    let steps = json!([
        {"step": "write_image", "args": {"image_info": {"urls": [url("IMAGES"), "http://x/y"]}}},
        {"step": "write_image", "args": {"image_info": {"urls": [url("IMAGES"), url("MISSING"), url("..")]}}}
    ]);
    let plan = plan(steps, json!({}));
    assert_eq!(wanted_labels(&plan), ["IMAGES", "MISSING"]);

    let mut images = disk("sdb", "S1", false);
    images.path = dir.path().join("sdb");
    iso_with_label(&images.path, "IMAGES");
    let mut other = disk("sdc", "S2", false);
    other.path = dir.path().join("sdc");
    iso_with_label(&other.path, "OTHER");
    let mounter = RecordingMounter::default();
    let root = dir.path().join("media");
    let errors = mount_media(&plan, &Listed(vec![images.clone(), other]), &mounter, &root);
    assert_eq!(
        mounter.0.lock().unwrap().clone(),
        [(
            images.path.clone(),
            root.join("IMAGES"),
            "iso9660".to_string()
        )]
    );
    assert_eq!(
        errors,
        ["image medium MISSING: no file system has that label"]
    );

    // Two media with the label: neither is mounted.
    let mut twin = disk("sdd", "S3", false);
    twin.path = dir.path().join("sdd");
    iso_with_label(&twin.path, "IMAGES");
    let mounter = RecordingMounter::default();
    let errors = mount_media(&plan, &Listed(vec![images, twin]), &mounter, &root);
    assert!(mounter.0.lock().unwrap().is_empty());
    assert!(errors[0].contains("refusing to guess"), "{errors:?}");
}
