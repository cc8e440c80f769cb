//! Deploy ISOs built by Ironic 39's own code, the way its redfish virtual-media boot
//! interface builds them for a DHCP-less node (spec §9.2-§9.4): `ci/ironic/vmedia_iso` runs
//! `ironic.common.images.create_boot_iso` from the Ironic venv around the kernel and
//! initramfs of a [`BootImage`] (BIOS: isolinux; UEFI: the image's `esp.img` as the node's
//! bootloader), with the publisher id and kernel command line Ironic generates and the files
//! it injects (network_data.json, the API's CA and `ironic-tls.conf`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde::Deserialize;

use crate::image::BootImage;
use crate::vm::{which, Firmware};

/// The script, relative to the checkout.
const SCRIPT: &str = "ci/ironic/vmedia_iso";
/// Where Debian's isolinux package puts it (Ironic's `[DEFAULT]isolinux_bin`, set by the
/// script).
pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
/// The first place Ironic looks for ldlinux.c32; without it Ironic leaves it out silently
/// and the ISO does not boot.
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";

/// What to put into the ISO.
#[derive(Debug, Clone)]
pub struct IronicIsoRequest {
    /// The node's boot mode: BIOS (isolinux) or UEFI (the image's ESP at
    /// `boot/grub/efiboot.img`, Ironic's grub.cfg at `EFI/BOOT/grub.cfg`).
    pub firmware: Firmware,
    /// The node's `driver_info.kernel_append_params` (`%default%` stands for Ironic's
    /// `[redfish]kernel_append_params`, "nofb vga=normal").
    pub kernel_append: String,
    /// Ramdisk parameters as the boot interface passes them (`ipa-api-url`,
    /// `boot_method=vmedia`, ...), in order.
    pub params: Vec<(String, String)>,
    /// The node's network_data (injected at `openstack/latest/network_data.json`).
    pub network_data: Option<PathBuf>,
    /// Ironic's `[agent]api_ca_file` (injected with `ironic-tls.conf`).
    pub api_ca_file: Option<PathBuf>,
}

/// An ISO Ironic built.
#[derive(Debug, Clone, Deserialize)]
pub struct IronicIso {
    #[serde(skip)]
    pub path: PathBuf,
    /// The uuid Ironic generated: the ISO's publisher and `ir_pub_id` on its command line.
    pub publisher_id: String,
    /// The kernel command line as Ironic rendered it into isolinux.cfg.
    pub kernel_params: String,
    /// The volume label Ironic chose.
    pub label: String,
}

/// Fails naming the Debian package when a host tool Ironic's ISO code needs for `firmware`
/// is missing.
pub fn check_prerequisites(firmware: Firmware) -> Result<()> {
    for (tool, package) in [("mkisofs", "genisoimage"), ("zstd", "zstd")] {
        ensure!(
            which(tool).is_some(),
            "{tool} is not on PATH: Ironic's create_boot_iso runs it (Debian: apt-get install \
             {package}; ci/setup installs it)"
        );
    }
    if firmware == Firmware::Uefi {
        return Ok(());
    }
    for (file, package) in [(ISOLINUX_BIN, "isolinux"), (LDLINUX_C32, "syslinux-common")] {
        ensure!(
            Path::new(file).is_file(),
            "{file} is missing: Ironic's BIOS ISO needs it (Debian: apt-get install {package}; \
             ci/setup installs it)"
        );
    }
    Ok(())
}

/// Builds `output` from `image`'s kernel and initramfs with Ironic's code, then checks that
/// its primary volume descriptor carries the label and publisher Ironic reported.
pub fn build(image: &BootImage, request: &IronicIsoRequest, output: &Path) -> Result<IronicIso> {
    check_prerequisites(request.firmware)?;
    let python = crate::ironic::ironic_venv()?.join("bin/python");
    let script = crate::workspace_root().join(SCRIPT);
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg("--kernel")
        .arg(image.kernel())
        .arg("--ramdisk")
        .arg(image.initramfs())
        .arg("--output")
        .arg(output)
        .arg("--kernel-append")
        .arg(&request.kernel_append);
    for (key, value) in &request.params {
        command.arg("--param").arg(format!("{key}={value}"));
    }
    if let Some(path) = &request.network_data {
        command.arg("--network-data").arg(path);
    }
    if let Some(path) = &request.api_ca_file {
        command.arg("--api-ca-file").arg(path);
    }
    if request.firmware == Firmware::Uefi {
        command
            .arg("--boot-mode")
            .arg("uefi")
            .arg("--esp-image")
            .arg(image.esp());
    }
    let out = command
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    ensure!(
        out.status.success(),
        "{} failed with {}:\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .with_context(|| format!("{} printed nothing", script.display()))?;
    let mut iso: IronicIso = serde_json::from_str(line)
        .with_context(|| format!("parsing what {} printed: {line}", script.display()))?;
    iso.path = output.to_owned();

    let identity = read_identity(output)?;
    ensure!(
        identity.label == iso.label && identity.publisher.eq_ignore_ascii_case(&iso.publisher_id),
        "{} has label {:?} and publisher {:?}; Ironic reported {:?} and {:?}",
        output.display(),
        identity.label,
        identity.publisher,
        iso.label,
        iso.publisher_id
    );
    Ok(iso)
}

/// Label and publisher of an ISO file, read the way the agent reads them from a device.
pub fn read_identity(iso: &Path) -> Result<rivet_agent::vmedia::labels::IsoIdentity> {
    use rivet_agent::vmedia::labels::{parse_pvd, PVD_LEN, PVD_OFFSET};
    use std::io::{Read, Seek, SeekFrom};
    let mut file =
        std::fs::File::open(iso).with_context(|| format!("opening {}", iso.display()))?;
    let mut descriptor = vec![0u8; PVD_LEN];
    file.seek(SeekFrom::Start(PVD_OFFSET))
        .and_then(|_| file.read_exact(&mut descriptor))
        .with_context(|| format!("reading the volume descriptor of {}", iso.display()))?;
    parse_pvd(&descriptor).with_context(|| {
        format!(
            "{} has no ISO 9660 primary volume descriptor",
            iso.display()
        )
    })
}
