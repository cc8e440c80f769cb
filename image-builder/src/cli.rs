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
    /// Write a per-node bundle (settings, network_data.json, CA, files) and kernel arguments
    /// into a copy of a built ISO, in place: no remastering. Or show what an ISO carries.
    Customize(CustomizeArgs),
    /// Work with deploy plans (docs/plan.md).
    #[command(subcommand)]
    Plan(PlanCommand),
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check a plan (JSON) the way the agent will before running it, and summarize it.
    Validate {
        #[arg(value_name = "PLAN")]
        plan: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct CustomizeArgs {
    /// The ISO built by `rivet-image-builder build`.
    #[arg(value_name = "ISO")]
    pub iso: PathBuf,

    /// Print the ISO's config area, kernel arguments and bundle, and change nothing.
    #[arg(long, conflicts_with_all = ["output", "config", "network_data", "ca", "plan", "files", "sign_key", "reset", "kernel_args", "set_kargs", "append_kargs", "delete_kargs", "consoles"])]
    pub show: bool,

    /// Where the customized ISO goes (`-` for stdout); may be the ISO itself.
    #[arg(short, long, value_name = "FILE", required_unless_present = "show")]
    pub output: Option<PathBuf>,

    /// Agent settings in kernel-parameter syntax (`ipa-api-url=https://...`, one or more per
    /// line, `#` comments): the highest-priority settings source.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// OpenStack network_data.json applied as the static network configuration.
    #[arg(long, value_name = "FILE")]
    pub network_data: Option<PathBuf>,

    /// CA certificates (PEM) for the agent's calls to Ironic; installed as
    /// /etc/rivet/ca.pem and used as `cafile`.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// A deploy plan (JSON, docs/plan.md) the agent runs offline; signed with the bundle
    /// when --sign-key is given. Images it writes from `file:///run/rivet/images/NAME` can
    /// ride along as --file IMAGE:/run/rivet/images/NAME.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,

    /// A file to install in the ramdisk: SRC on this machine, DEST an absolute path there.
    /// Repeatable.
    #[arg(long = "file", value_name = "SRC:DEST")]
    pub files: Vec<String>,

    /// Sign the bundle with this Ed25519 private key (PEM, `openssl genpkey -algorithm
    /// ed25519`). Required when the ISO was built with --signing-pubkey.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,

    /// Start from the ISO as built: no bundle, the default kernel arguments.
    #[arg(long)]
    pub reset: bool,

    /// Replace all kernel arguments (consoles included).
    #[arg(long, value_name = "ARGS")]
    pub kernel_args: Option<String>,

    /// Set KEY=VALUE, replacing every KEY=... already there. Repeatable.
    #[arg(long = "set-karg", value_name = "KEY=VALUE")]
    pub set_kargs: Vec<String>,

    /// Append a kernel argument. Repeatable.
    #[arg(long = "append-karg", value_name = "ARG")]
    pub append_kargs: Vec<String>,

    /// Delete a kernel argument: exactly ARG, or every KEY=... when ARG has no `=`.
    /// Repeatable.
    #[arg(long = "delete-karg", value_name = "ARG")]
    pub delete_kargs: Vec<String>,

    /// Replace the consoles: `console=SPEC` for each, in order (the last one is
    /// /dev/console). Repeatable.
    #[arg(long = "console", value_name = "SPEC")]
    pub consoles: Vec<String>,
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

    /// Size of the ISO's config area that `customize` writes bundles into (K or M suffix).
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = crate::area::parse_size)]
    pub config_area_size: u64,

    /// Ed25519 public key (PEM, `openssl pkey -pubout`) built into the ramdisk: the agent
    /// then applies only config-area bundles signed with its private key.
    #[arg(long, value_name = "FILE")]
    pub signing_pubkey: Option<PathBuf>,

    /// Leave e2fsprogs' mke2fs (with its libraries and loader, about 1 MB of the compressed
    /// initramfs) out: ext2/ext3/ext4 ephemeral partitions then fail before the deploy
    /// writes anything.
    #[arg(long)]
    pub no_mke2fs: bool,

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
        let Command::Build(b) = cli.command else {
            panic!("not build")
        };
        assert_eq!(b.add_modules, ["xfs", "ext4"]);
        assert_eq!(b.drop_modules, ["floppy"]);
        assert_eq!(b.zstd_level, 19);
        assert!(!b.no_mke2fs);
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
        let small_area = [&base[..], &["--config-area-size", "4K", "--output", "o"]].concat();
        assert!(Cli::try_parse_from(small_area).is_err());
    }

    #[test]
    fn customize_needs_an_output_unless_it_shows() {
        let cli = Cli::try_parse_from([
            "rivet-image-builder",
            "customize",
            "base.iso",
            "--config",
            "node.conf",
            "--file",
            "a:/etc/a",
            "--file",
            "b:/etc/b",
            "--append-karg",
            "ipa-debug=1",
            "-o",
            "-",
        ])
        .unwrap();
        let Command::Customize(c) = cli.command else {
            panic!("not customize")
        };
        assert_eq!(c.files, ["a:/etc/a", "b:/etc/b"]);
        assert_eq!(c.output, Some(PathBuf::from("-")));
        let base = ["rivet-image-builder", "customize", "base.iso"];
        assert!(Cli::try_parse_from(base).is_err());
        assert!(Cli::try_parse_from([&base[..], &["--show"]].concat()).is_ok());
        assert!(Cli::try_parse_from([&base[..], &["--show", "-o", "x"]].concat()).is_err());
        assert!(
            Cli::try_parse_from([&base[..], &["--show", "--append-karg", "x"]].concat()).is_err()
        );
    }
}
