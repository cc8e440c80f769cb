//! The boot loader configurations: isolinux (BIOS), GRUB on the ISO (UEFI), and the two
//! GRUB configs of the ESP (the one embedded in BOOTX64.EFI, and `EFI/BOOT/grub.cfg`).
//!
//! UEFI boot path: the embedded config looks for a volume labelled [`ISO_LABEL`] (rivet's
//! ISO, CD or USB) and loads its `/boot/grub/grub.cfg`. Otherwise it loads Ironic's config
//! from the boot device: an ISO that Ironic built around this ESP (`[DEFAULT]esp_image`,
//! config at `[DEFAULT]grub_config_path`: `EFI/BOOT/grub.cfg`, Metal3 `EFI/centos/grub.cfg`).
//! Booted from a disk ESP, `EFI/BOOT/grub.cfg` is the ESP's own, which searches for
//! Ironic's volume labels.

use anyhow::{bail, Result};

/// Volume label of rivet's ISO; the ESP's embedded GRUB config searches for it.
pub const ISO_LABEL: &str = "RIVET";
/// Kernel and initramfs paths inside the ISO.
pub const ISO_KERNEL: &str = "/boot/vmlinuz";
pub const ISO_INITRAMFS: &str = "/boot/initramfs.img";
/// Where the ISO's GRUB config lives.
pub const ISO_GRUB_CFG: &str = "/boot/grub/grub.cfg";
/// GRUB's prefix inside the ESP (where BOOTX64.EFI and grub.cfg are).
pub const ESP_PREFIX: &str = "/EFI/BOOT";
/// Kernel arguments always present: console on screen and on the first serial port.
pub const BASE_CMDLINE: &str = "console=tty0 console=ttyS0,115200n8";
/// Volume labels of ISOs that Ironic builds around an ESP image.
pub const IRONIC_LABELS: [&str; 2] = ["VMEDIA_BOOT_ISO", "config-2"];
/// GRUB config locations in Ironic-built ISOs: Ironic's default `grub_config_path`, and
/// Metal3's.
pub const IRONIC_GRUB_CFGS: [&str; 2] = ["/EFI/BOOT/grub.cfg", "/EFI/centos/grub.cfg"];

/// GRUB modules built into BOOTX64.EFI (lab notes' list, which booted in all variants).
pub const GRUB_MODULES: &[&str] = &[
    "iso9660",
    "fat",
    "part_gpt",
    "part_msdos",
    "search",
    "search_label",
    "linux",
    "normal",
    "configfile",
    "echo",
    "test",
    "serial",
    "terminal",
    "efi_gop",
    "all_video",
];

/// The kernel command line: [`BASE_CMDLINE`] plus `append`. Refuses characters that the
/// boot loaders would interpret instead of passing on.
pub fn kernel_cmdline(append: Option<&str>) -> Result<String> {
    let mut line = BASE_CMDLINE.to_owned();
    if let Some(extra) = append.map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(bad) = extra
            .chars()
            .find(|c| c.is_control() || "'\"\\$;{}|&<>`".contains(*c))
        {
            bail!("--append: the character {bad:?} is not allowed in kernel arguments here");
        }
        line.push(' ');
        line.push_str(&extra.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    Ok(line)
}

/// isolinux.cfg: boot straight away, console also on the serial port.
pub fn isolinux_cfg(cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\n\
         DEFAULT rivet\n\
         PROMPT 0\n\
         TIMEOUT 0\n\
         LABEL rivet\n  \
         KERNEL {ISO_KERNEL}\n  \
         APPEND initrd={ISO_INITRAMFS} {cmdline}\n"
    )
}

const GRUB_CONSOLE: &str = "serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\n\
                            terminal_input console serial\n\
                            terminal_output console serial\n";

/// The ISO's `/boot/grub/grub.cfg`.
pub fn iso_grub_cfg(cmdline: &str) -> String {
    format!(
        "{GRUB_CONSOLE}set default=0\n\
         set timeout=0\n\
         menuentry 'rivet' {{\n\
         \tlinux {ISO_KERNEL} {cmdline}\n\
         \tinitrd {ISO_INITRAMFS}\n\
         }}\n"
    )
}

/// The config embedded in BOOTX64.EFI. GRUB runs it with its rescue parser, line by line
/// (no `if`): a failing line prints an error and the next one runs. `search` leaves `root`
/// alone when it finds nothing (then it is the device GRUB was loaded from: on a CD the
/// whole ISO, on rivet's ISO as a USB disk also the ISO); `configfile` does not return once
/// it boots. Tried in order:
///
/// 1. rivet's `/boot/grub/grub.cfg` on the volume labelled [`ISO_LABEL`];
/// 2. [`IRONIC_GRUB_CFGS`] on the boot device: an ISO that Ironic built around this ESP.
///    From a disk ESP the first of them is the ESP's own `grub.cfg` ([`esp_grub_cfg`]).
pub fn early_grub_cfg() -> String {
    let mut cfg = format!(
        "search --no-floppy --set=root --label {ISO_LABEL}\n\
         set prefix=($root)/boot/grub\n\
         configfile ($root){ISO_GRUB_CFG}\n"
    );
    for path in IRONIC_GRUB_CFGS {
        cfg.push_str(&format!("configfile ($root){path}\n"));
    }
    cfg
}

/// The ESP's `EFI/BOOT/grub.cfg`: used when the boot volume is not rivet's ISO.
pub fn esp_grub_cfg() -> String {
    let labels = IRONIC_LABELS.join(" ");
    let cfgs = IRONIC_GRUB_CFGS.join(" ");
    format!(
        "{GRUB_CONSOLE}for label in {labels}; do\n\
         \tif search --no-floppy --set=root --label $label; then\n\
         \t\tfor cfg in {cfgs}; do\n\
         \t\t\tif [ -e ($root)$cfg ]; then\n\
         \t\t\t\tconfigfile ($root)$cfg\n\
         \t\t\tfi\n\
         \t\tdone\n\
         \tfi\n\
         done\n\
         echo \"rivet: no boot volume found (labels {ISO_LABEL} {labels}; configs {cfgs})\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_appends_and_refuses_loader_syntax() {
        assert_eq!(kernel_cmdline(None).unwrap(), BASE_CMDLINE);
        assert_eq!(kernel_cmdline(Some("  ")).unwrap(), BASE_CMDLINE);
        assert_eq!(
            kernel_cmdline(Some(" ipa-api-url=https://10.0.0.1:6385  ipa-debug=1 ")).unwrap(),
            "console=tty0 console=ttyS0,115200n8 ipa-api-url=https://10.0.0.1:6385 ipa-debug=1"
        );
        for bad in ["a;reboot", "x=$y", "q=\"a b\"", "a\nb"] {
            assert!(kernel_cmdline(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn configs_boot_the_same_kernel_with_the_same_arguments() {
        let cmdline = kernel_cmdline(Some("ipa-debug=1")).unwrap();
        let iso = isolinux_cfg(&cmdline);
        assert!(
            iso.contains(&format!("APPEND initrd=/boot/initramfs.img {cmdline}\n")),
            "{iso}"
        );
        assert!(iso.contains("KERNEL /boot/vmlinuz\n"), "{iso}");
        let grub = iso_grub_cfg(&cmdline);
        assert!(
            grub.contains(&format!("\tlinux /boot/vmlinuz {cmdline}\n")),
            "{grub}"
        );
        assert!(grub.contains("\tinitrd /boot/initramfs.img\n"), "{grub}");
        assert!(grub.contains("set timeout=0\n"), "{grub}");
    }

    #[test]
    fn esp_configs_find_rivet_then_ironic_isos() {
        let early = early_grub_cfg();
        assert_eq!(
            early,
            "search --no-floppy --set=root --label RIVET\n\
             set prefix=($root)/boot/grub\n\
             configfile ($root)/boot/grub/grub.cfg\n\
             configfile ($root)/EFI/BOOT/grub.cfg\n\
             configfile ($root)/EFI/centos/grub.cfg\n"
        );
        // The rescue parser knows no shell syntax.
        for word in ["if", "then", "fi", "for", "do", "done", "["] {
            assert!(
                !early.split_whitespace().any(|w| w == word),
                "{word} in {early}"
            );
        }
        let esp = esp_grub_cfg();
        assert!(
            esp.contains("for label in VMEDIA_BOOT_ISO config-2; do\n"),
            "{esp}"
        );
        assert!(
            esp.contains("for cfg in /EFI/BOOT/grub.cfg /EFI/centos/grub.cfg; do\n"),
            "{esp}"
        );
        assert!(esp.contains("rivet: no boot volume found"), "{esp}");
    }
}
