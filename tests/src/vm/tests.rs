//! QEMU command lines built by [`VmBuilder`].

use super::*;

fn args_text(builder: &VmBuilder) -> String {
    let args = crate::or_panic(builder.qemu_args(Path::new("/vm")));
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn uefi_usb_virtual_media_with_nvme_virtio_and_a_nic() {
    let builder = VmBuilder::new("t")
        .firmware(Firmware::Uefi)
        .boot(BootMedium::UsbCd(PathBuf::from("/img/rivet.iso")))
        .disk(DiskBus::VirtioBlk, 1 << 30)
        .disk(DiskBus::Nvme, 1 << 30)
        .nic("tap0", "52:54:00:00:00:01");
    let text = args_text(&builder);
    for expected in [
        "-machine q35,accel=tcg -m 1024 -smp 2",
        "-serial file:/vm/console.log -no-reboot",
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
        "if=pflash,format=raw,unit=1,file=/vm/OVMF_VARS.fd",
        "-device qemu-xhci,id=xhci",
        "if=none,id=vmedia,format=raw,media=cdrom,readonly=on,file=/img/rivet.iso",
        "-device usb-bot,id=bot,bus=xhci.0 -device scsi-cd,bus=bot.0,drive=vmedia,bootindex=1",
        "if=none,id=disk0,format=raw,file=/vm/disk0.img -device virtio-blk-pci,drive=disk0,serial=rivet-vd0",
        "if=none,id=disk1,format=raw,file=/vm/disk1.img -device nvme,drive=disk1,serial=rivet-nvme1",
        "-netdev tap,id=net0,ifname=tap0,script=no,downscript=no",
        "-device virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01,romfile=",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in: {text}");
    }
}

#[test]
fn bios_cd_has_no_pflash_and_boots_the_ahci_cd() {
    let builder = VmBuilder::new("t").boot(BootMedium::Cd(PathBuf::from("/i.iso")));
    let text = args_text(&builder);
    assert!(!text.contains("pflash"), "{text}");
    assert!(
        text.contains("ide-cd,drive=cd0,bus=ide.0,bootindex=1"),
        "{text}"
    );
}

#[test]
fn usb_disk_is_read_only_usb_storage() {
    let builder = VmBuilder::new("t").boot(BootMedium::UsbDisk(PathBuf::from("/i.iso")));
    let text = args_text(&builder);
    assert!(
        text.contains("if=none,id=stick,format=raw,readonly=on,file=/i.iso"),
        "{text}"
    );
    assert!(
        text.contains("usb-storage,bus=xhci.0,drive=stick,bootindex=1"),
        "{text}"
    );
}

#[test]
fn an_iso_url_is_a_usb_cd_read_by_qemus_curl_driver() {
    let url = "http://10.77.0.1:6385/v1/isos/n1?expires=9&signature=ab";
    let builder = VmBuilder::new("t").boot(BootMedium::UrlCd(url.into()));
    let text = args_text(&builder);
    assert!(
        text.contains(&format!(
            "-drive if=none,id=vmedia,media=cdrom,readonly=on,driver=raw,file.driver=http,\
             file.readahead=1048576,file.url={url} "
        )),
        "{text}"
    );
    assert!(
        text.contains("scsi-cd,bus=bot.0,drive=vmedia,bootindex=1"),
        "{text}"
    );
    let comma = VmBuilder::new("t").boot(BootMedium::UrlCd("http://h/a,b".into()));
    assert!(comma.qemu_args(Path::new("/vm")).is_err());
}

#[test]
fn a_vm_without_boot_medium_is_refused() {
    let err = VmBuilder::new("t").qemu_args(Path::new("/vm"));
    assert!(err.is_err());
}

#[test]
fn first_disk_boot_marks_disk0_as_the_boot_device() {
    let builder = VmBuilder::new("t")
        .boot(BootMedium::FirstDisk)
        .disk(DiskBus::VirtioBlk, 1 << 20)
        .disk(DiskBus::VirtioBlk, 1 << 20);
    let text = args_text(&builder);
    assert!(
        text.contains("virtio-blk-pci,drive=disk0,serial=rivet-vd0,bootindex=1"),
        "{text}"
    );
    assert!(
        text.ends_with("virtio-blk-pci,drive=disk1,serial=rivet-vd1"),
        "{text}"
    );
    assert!(VmBuilder::new("t")
        .boot(BootMedium::FirstDisk)
        .qemu_args(Path::new("/vm"))
        .is_err());
}
