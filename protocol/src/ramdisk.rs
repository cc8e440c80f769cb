//! Where rivet's image builder puts host tools in the ramdisk, for the agent to run them.

/// e2fsprogs' `mke2fs` (ext2, ext3, ext4 through `-t`), bundled by default with its shared
/// libraries, the dynamic loader and `/etc/mke2fs.conf` (docs/image-builder.md); the agent
/// makes ext ephemeral partitions with it.
pub const MKE2FS_PATH: &str = "/usr/sbin/mke2fs";
