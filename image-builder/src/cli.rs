//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rivet-image-builder",
    version,
    about = "Builds rivet's ramdisk and boot images"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build vmlinuz, initramfs.img, esp.img, the ironic-python-agent.* pair, rivet.iso and
    /// manifest.json into --output.
    Build(BuildArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// The static rivet-agent binary; it becomes /init of the ramdisk.
    #[arg(long, value_name = "PATH")]
    pub agent: PathBuf,

    /// Use this linux-image .deb instead of fetching linux-image-amd64 with apt.
    #[arg(long, value_name = "FILE", conflicts_with = "kernel_dir")]
    pub kernel_deb: Option<PathBuf>,

    /// Use a directory holding vmlinuz (or boot/vmlinuz-<version>) and lib/modules/<version>.
    #[arg(long, value_name = "DIR")]
    pub kernel_dir: Option<PathBuf>,

    /// Where downloaded packages are kept [default: $XDG_CACHE_HOME/rivet or ~/.cache/rivet].
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kernel_deb", "kernel_dir"])]
    pub cache_dir: Option<PathBuf>,

    /// Add a module (name or alias) and its dependencies. Repeatable.
    #[arg(long = "add-module", value_name = "NAME")]
    pub add_modules: Vec<String>,

    /// Remove a module from the default set; fails if a kept module depends on it. Repeatable.
    #[arg(long = "drop-module", value_name = "NAME")]
    pub drop_modules: Vec<String>,

    /// Ship a firmware file or directory as /lib/firmware/DEST (default: its file name).
    /// Repeatable.
    #[arg(long = "add-firmware", value_name = "SRC[=DEST]")]
    pub add_firmware: Vec<String>,

    /// Extra kernel arguments after "console=tty0 console=ttyS0,115200n8".
    #[arg(long, value_name = "ARGS")]
    pub append: Option<String>,

    /// zstd level of the initramfs (1-22).
    #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub zstd_level: i32,

    /// Timestamp stamped on every file of every output (seconds since 1970).
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        default_value_t = 0,
        value_name = "SECONDS"
    )]
    pub source_date_epoch: u64,

    /// Output directory (created if missing); existing outputs are replaced.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_command_line() {
        let cli = Cli::try_parse_from([
            "rivet-image-builder",
            "build",
            "--agent",
            "a",
            "--kernel-deb",
            "k.deb",
            "--add-module",
            "xfs",
            "--add-module",
            "ext4",
            "--drop-module",
            "floppy",
            "--add-firmware",
            "/lib/firmware/bnx2x",
            "--append",
            "ipa-debug=1",
            "--source-date-epoch",
            "1700000000",
            "--output",
            "out",
        ])
        .unwrap();
        let Command::Build(b) = cli.command;
        assert_eq!(b.add_modules, ["xfs", "ext4"]);
        assert_eq!(b.drop_modules, ["floppy"]);
        assert_eq!(b.zstd_level, 19);
        assert_eq!(b.source_date_epoch, 1_700_000_000);
        assert_eq!(b.kernel_deb, Some(PathBuf::from("k.deb")));
    }

    #[test]
    fn kernel_sources_are_exclusive_and_output_is_required() {
        let base = ["rivet-image-builder", "build", "--agent", "a"];
        let both = [
            &base[..],
            &["--kernel-deb", "k", "--kernel-dir", "d", "--output", "o"],
        ]
        .concat();
        assert!(Cli::try_parse_from(both).is_err());
        assert!(Cli::try_parse_from(base).is_err());
        let cache_unused = [
            &base[..],
            &["--kernel-dir", "d", "--cache-dir", "c", "--output", "o"],
        ]
        .concat();
        assert!(Cli::try_parse_from(cache_unused).is_err());
        let bad_level = [&base[..], &["--zstd-level", "23", "--output", "o"]].concat();
        assert!(Cli::try_parse_from(bad_level).is_err());
    }
}
