//! rivet-image-builder: builds rivet's boot artefacts from Debian's kernel package and the
//! static agent binary — the initramfs (newc cpio, zstd, the agent as `/init`), an ESP image
//! usable as Ironic's `[DEFAULT]esp_image`, the `ironic-python-agent.kernel`/`.initramfs`
//! pair Metal3 and Bifrost expect, and a hybrid ISO that boots BIOS and UEFI from CD and
//! USB. Same inputs, same bytes. See docs/image-builder.md.
//!
//! `customize` writes per-node bundles and kernel arguments into a built ISO in place
//! (docs/config-area.md); [`splice`] streams a base ISO with such patches, for servers
//! ([`customize::scan`] once per base ISO, [`customize::patches`] per node), and
//! [`sample_iso`] makes tiny ISOs with a config area for their tests.

pub mod apt;
pub mod area;
pub mod bootcfg;
pub mod cache;
pub mod cli;
pub mod cpio;
pub mod customize;
pub mod depmod;
pub mod elfdeps;
pub mod esp;
pub mod hostbin;
pub mod hosttools;
pub mod initramfs;
pub mod iso;
pub mod iso9660;
pub mod kernel;
pub mod manifest;
pub mod modindex;
pub mod modinfo;
pub mod pipeline;
pub mod plan;
pub mod sample_iso;
pub mod selection;
pub mod splice;

use anyhow::Result;

/// Runs one parsed command line.
pub fn run(cli: cli::Cli) -> Result<()> {
    match cli.command {
        cli::Command::Build(args) => {
            let manifest = pipeline::build(&args)?;
            print!("{}", manifest::size_report(&manifest));
            Ok(())
        }
        cli::Command::Customize(args) => customize::run(&args),
        cli::Command::Plan(cli::PlanCommand::Validate { plan }) => {
            print!("{}", plan::validate_file(&plan)?);
            Ok(())
        }
    }
}
