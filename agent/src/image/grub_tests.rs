use super::*;
use crate::image::testutil::sized_file;

fn image_root(grub2: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
    let name = if grub2 {
        "grub2-install"
    } else {
        "grub-install"
    };
    std::fs::write(dir.path().join("usr/sbin").join(name), b"#!/bin/sh\n").unwrap();
    dir
}

fn bios_target() -> GrubTarget {
    GrubTarget {
        disk: "/dev/vda".into(),
        root: "/dev/vda2".into(),
        esp: None,
    }
}

#[test]
fn bios_grub_runs_the_images_grub_install_in_a_chroot_and_unmounts_everything() {
    let root = image_root(false);
    let host = FakeBootHost::new(root.path(), None);
    install_grub(&host, &bios_target()).unwrap();
    assert_eq!(
        host.log(),
        vec![
            "mount Device /dev/vda2 ROOT/",
            "mount Bind /dev ROOT/dev",
            "mount Bind /proc ROOT/proc",
            "mount Bind /run ROOT/run",
            "mount Sysfs none ROOT/sys",
            "chroot ROOT/ grub-install /dev/vda",
            "chroot ROOT/ grub-mkconfig -o /boot/grub/grub.cfg",
            "umount ROOT/sys",
            "umount ROOT/run",
            "umount ROOT/proc",
            "umount ROOT/dev",
            "umount ROOT/",
            "rmdir",
        ]
    );
}

#[test]
fn uefi_grub2_mounts_the_esp_and_installs_the_removable_path_too() {
    let root = image_root(true);
    let host = FakeBootHost::new(root.path(), None);
    let target = GrubTarget {
        esp: Some("/dev/vda1".into()),
        ..bios_target()
    };
    install_grub(&host, &target).unwrap();
    let log = host.log();
    assert!(log.contains(&"mount Device /dev/vda1 ROOT/boot/efi".to_string()));
    assert!(log.contains(&"chroot ROOT/ grub2-install /dev/vda".to_string()));
    assert!(log.contains(&"chroot ROOT/ grub2-install /dev/vda --removable".to_string()));
    assert!(log.contains(&"chroot ROOT/ grub2-mkconfig -o /boot/grub2/grub.cfg".to_string()));
    assert_eq!(log[log.len() - 7], "umount ROOT/boot/efi");
}

#[test]
fn failures_say_what_failed_and_still_unmount() {
    let root = image_root(false);
    let host = FakeBootHost::new(root.path(), Some("grub-install"));
    let err = install_grub(&host, &bios_target()).unwrap_err();
    assert!(err.contains("installing GRUB on /dev/vda"), "{err}");
    assert!(
        err.contains("grub-install /dev/vda: exit status 1"),
        "{err}"
    );
    assert!(host
        .log()
        .ends_with(&["umount ROOT/".to_string(), "rmdir".to_string()]));

    // An image without GRUB.
    let bare = tempfile::tempdir().unwrap();
    let host = FakeBootHost::new(bare.path(), None);
    let err = install_grub(&host, &bios_target()).unwrap_err();
    assert!(
        err.contains("neither grub-install nor grub2-install"),
        "{err}"
    );
    assert!(host.log().iter().all(|l| !l.starts_with("chroot")));
    assert_eq!(host.log().last().map(String::as_str), Some("rmdir"));

    // A mount that fails: what was mounted before is unmounted.
    let host = FakeBootHost::new(root.path(), Some("/proc"));
    let err = install_grub(&host, &bios_target()).unwrap_err();
    assert!(err.contains("/proc"), "{err}");
    assert_eq!(
        host.log()[host.log().len() - 3..],
        ["umount ROOT/dev", "umount ROOT/", "rmdir"]
    );
}

#[test]
fn partitions_are_found_by_file_system_uuid_or_partuuid() {
    use crate::image::partition::layout::{plan, Label, LayoutRequest};
    use crate::image::partition::table::write_table;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vda");
    let file = sized_file(&path, 64 << 20);
    for label in [Label::Gpt, Label::Msdos] {
        let request = LayoutRequest {
            uefi: false,
            label,
            root_mb: 16,
            swap_mb: 8,
            ephemeral_mb: 0,
            configdrive_mb: 0,
        };
        let layout = plan(&request, 64 << 20).unwrap();
        let uuids = write_table(&file, &layout, 512, true).unwrap();
        let swap = layout
            .get(super::super::partition::layout::Role::Swap)
            .unwrap();
        let swap_uuid = uuid::Uuid::new_v4();
        super::super::partition::fs::write_swap(&file, swap.start, swap.len, swap_uuid, "s")
            .unwrap();
        let root_number = layout.partitions.len();
        assert_eq!(
            find_partition(&path, &file, &swap_uuid.to_string()),
            Some(partition_path(&path, swap.number)),
            "{label:?}"
        );
        assert_eq!(
            find_partition(&path, &file, &uuids[root_number - 1].to_uppercase()),
            Some(partition_path(&path, root_number as u32)),
            "{label:?}"
        );
        assert_eq!(find_partition(&path, &file, "nope"), None);
    }
}
