//! `build`: kernel -> module selection -> initramfs -> ESP -> ISO -> manifest.
//!
//! Everything is produced in a `.rivet-build-*` directory inside the output directory and
//! renamed into place at the end, so an interrupted build leaves no half-written outputs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use rivet_protocol::config_area::keys::PublicKey;

use crate::apt::{self, AptCache, KERNEL_METAPACKAGE};
use crate::area::{self, StagedConfig};
use crate::bootcfg;
use crate::cache::{self, AptGetDownload, Obtained};
use crate::cli::BuildArgs;
use crate::esp;
use crate::hostbin;
use crate::hosttools;
use crate::initramfs::{self, Contents, Firmware};
use crate::iso;
use crate::kernel::KernelTree;
use crate::manifest::{ConfigAreaInfo, FileRecord, KernelInfo, Manifest, RamdiskInfo};
use crate::modindex::ModuleIndex;
use crate::selection;

/// Output file names (Metal3 and Bifrost expect the `ironic-python-agent.*` pair).
pub const OUT_VMLINUZ: &str = "vmlinuz";
pub const OUT_INITRAMFS: &str = "initramfs.img";
pub const OUT_ESP: &str = "esp.img";
pub const OUT_IPA_KERNEL: &str = "ironic-python-agent.kernel";
pub const OUT_IPA_INITRAMFS: &str = "ironic-python-agent.initramfs";
pub const OUT_ISO: &str = "rivet.iso";
pub const OUT_MANIFEST: &str = "manifest.json";

fn progress(msg: &str) {
    eprintln!("rivet-image-builder: {msg}");
}

/// The default cache directory: `$XDG_CACHE_HOME/rivet` or `~/.cache/rivet`.
pub fn default_cache_dir() -> Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("rivet"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("neither XDG_CACHE_HOME nor HOME is set: give --cache-dir")?;
    Ok(PathBuf::from(home).join(".cache/rivet"))
}

/// Where the kernel came from, for the manifest.
struct KernelSource {
    tree: KernelTree,
    package: Option<(String, String)>,
    input: Option<FileRecord>,
}

fn deb_identity(deb: &Path) -> Result<(String, String)> {
    let out = hosttools::run(
        Command::new("dpkg-deb")
            .arg("-f")
            .arg(deb)
            .args(["Package", "Version"]),
    )
    .with_context(|| format!("reading the control fields of {}", deb.display()))?;
    let text = String::from_utf8_lossy(&out);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("{} has no {name} field", deb.display()))
    };
    Ok((field("Package")?, field("Version")?))
}

fn obtain_kernel(args: &BuildArgs, work: &Path) -> Result<KernelSource> {
    if let Some(dir) = &args.kernel_dir {
        return Ok(KernelSource {
            tree: KernelTree::from_dir(dir)?,
            package: None,
            input: None,
        });
    }
    let deb = match &args.kernel_deb {
        Some(deb) => deb.clone(),
        None => {
            let cache_dir = match &args.cache_dir {
                Some(d) => d.clone(),
                None => default_cache_dir()?,
            }
            .join("debs");
            let record = apt::resolve_kernel(&AptCache, KERNEL_METAPACKAGE)?;
            progress(&format!(
                "kernel package {} {}",
                record.package, record.version
            ));
            let (path, how) = cache::obtain(&cache_dir, &record, &AptGetDownload)?;
            match how {
                Obtained::Cached => progress(&format!("using verified cached {}", path.display())),
                Obtained::Fetched {
                    replaced: Some(why),
                } => progress(&format!(
                    "downloaded {} (the cached copy was bad: {why})",
                    path.display()
                )),
                Obtained::Fetched { replaced: None } => {
                    progress(&format!("downloaded {}", path.display()))
                }
            }
            path
        }
    };
    let package = deb_identity(&deb)?;
    let input = FileRecord::of("kernel-deb", &deb)?;
    progress(&format!("unpacking {}", deb.display()));
    Ok(KernelSource {
        tree: KernelTree::from_deb(&deb, work)?,
        package: Some(package),
        input: Some(input),
    })
}

fn release_file(kernel: &KernelSource) -> String {
    let mut text = format!(
        "NAME=rivet\nVERSION={}\nKERNEL={}\n",
        env!("CARGO_PKG_VERSION"),
        kernel.tree.version
    );
    if let Some((pkg, ver)) = &kernel.package {
        text.push_str(&format!(
            "KERNEL_PACKAGE={pkg}\nKERNEL_PACKAGE_VERSION={ver}\n"
        ));
    }
    text
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

/// Runs a build and returns its manifest (also written to the output directory).
pub fn build(args: &BuildArgs) -> Result<Manifest> {
    let mut sets: Vec<&[hosttools::Requirement]> = vec![hosttools::ALWAYS];
    if args.kernel_dir.is_none() {
        sets.push(hosttools::FOR_DEB);
    }
    if args.kernel_dir.is_none() && args.kernel_deb.is_none() {
        sets.push(hosttools::FOR_APT);
    }
    if !args.no_mke2fs {
        sets.push(hostbin::FOR_MKE2FS);
    }
    hosttools::check(&sets)?;
    let mtime = u32::try_from(args.source_date_epoch)
        .context("SOURCE_DATE_EPOCH must fit in 32 bits (cpio timestamps)")?;
    let cmdline = bootcfg::kernel_cmdline(args.append.as_deref())?;
    let firmware: Vec<Firmware> = args
        .add_firmware
        .iter()
        .map(|s| Firmware::parse(s))
        .collect::<Result<_>>()?;
    if !args.agent.is_file() {
        bail!("--agent {}: no such file", args.agent.display());
    }
    let signing_key = match &args.signing_pubkey {
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("reading --signing-pubkey {}", path.display()))?;
            Some(
                PublicKey::from_pem(&text)
                    .with_context(|| format!("--signing-pubkey {}", path.display()))?,
            )
        }
        None => None,
    };
    let host_files = if args.no_mke2fs {
        Vec::new()
    } else {
        let files = hostbin::host_mke2fs()?;
        progress(&format!(
            "bundling {} with its loader, libraries and {} ({} files)",
            hostbin::MKE2FS_HOST,
            hostbin::MKE2FS_CONF,
            files.len()
        ));
        files
    };
    let isolinux_cfg = bootcfg::isolinux_cfg(&cmdline)?;
    let grub_cfg = bootcfg::iso_grub_cfg(&cmdline)?;

    fs::create_dir_all(&args.output)
        .with_context(|| format!("creating output directory {}", args.output.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".rivet-build-")
        .tempdir_in(&args.output)
        .with_context(|| format!("creating a work directory in {}", args.output.display()))?;
    let work = work.path();

    let kernel = obtain_kernel(args, work)?;
    progress(&format!(
        "reading the modules of kernel {}",
        kernel.tree.version
    ));
    let index = ModuleIndex::scan(&kernel.tree.moddir)?;
    let selection = selection::select(
        &index,
        selection::DEFAULT_MODULES,
        &args.add_modules,
        &args.drop_modules,
    )?;
    for note in &selection.notes {
        progress(&format!("note: {note}"));
    }

    progress(&format!(
        "writing the initramfs ({} modules, zstd level {})",
        selection.modules.len(),
        args.zstd_level
    ));
    let contents = Contents {
        agent: &args.agent,
        kernel_version: &kernel.tree.version,
        moddir: &kernel.tree.moddir,
        index: &index,
        modules: &selection.modules,
        firmware: &firmware,
        host_files: &host_files,
        release: release_file(&kernel),
        signing_pubkey: signing_key.as_ref().map(PublicKey::to_pem),
    };
    let built = initramfs::build(&contents, mtime, args.zstd_level)?;
    let staged = work.join("out");
    fs::create_dir(&staged).with_context(|| format!("creating {}", staged.display()))?;
    let initramfs_path = staged.join(OUT_INITRAMFS);
    write_file(&initramfs_path, &built.compressed)?;
    let vmlinuz_path = staged.join(OUT_VMLINUZ);
    fs::copy(&kernel.tree.vmlinuz, &vmlinuz_path)
        .with_context(|| format!("copying {}", kernel.tree.vmlinuz.display()))?;
    for (src, name) in [
        (&vmlinuz_path, OUT_IPA_KERNEL),
        (&initramfs_path, OUT_IPA_INITRAMFS),
    ] {
        fs::copy(src, staged.join(name)).with_context(|| format!("writing {name}"))?;
    }

    progress("building the ESP image");
    let esp_work = work.join("esp");
    fs::create_dir(&esp_work).with_context(|| format!("creating {}", esp_work.display()))?;
    let esp_path = staged.join(OUT_ESP);
    esp::build(&esp_work, &esp_path, args.source_date_epoch)?;

    progress("building the ISO");
    let files = iso::layout(
        &vmlinuz_path,
        &initramfs_path,
        &esp_path,
        isolinux_cfg.text.clone(),
        grub_cfg.text.clone(),
        &cmdline,
        args.config_area_size,
    );
    let iso_path = staged.join(OUT_ISO);
    iso::build(work, &iso_path, &files, args.source_date_epoch)?;
    let configs = [
        StagedConfig {
            path: iso::ISOLINUX_CFG,
            file: &isolinux_cfg,
        },
        StagedConfig {
            path: iso::GRUB_CFG,
            file: &grub_cfg,
        },
    ];
    let locator = area::write_locator(
        &iso_path,
        &configs,
        &cmdline,
        args.config_area_size,
        signing_key.as_ref(),
    )
    .context("recording the config area")?;

    let mut inputs = vec![FileRecord::of("agent", &args.agent)?];
    inputs.extend(kernel.input.clone());
    for file in &host_files {
        inputs.push(FileRecord::of(
            &format!("ramdisk:/{}", file.dest),
            &file.source,
        )?);
    }
    if kernel.input.is_none() {
        inputs.push(FileRecord::of("vmlinuz", &kernel.tree.vmlinuz)?);
    }
    let mut outputs = Vec::new();
    for name in [
        OUT_VMLINUZ,
        OUT_INITRAMFS,
        OUT_ESP,
        OUT_IPA_KERNEL,
        OUT_IPA_INITRAMFS,
        OUT_ISO,
    ] {
        outputs.push(FileRecord::of(name, &staged.join(name))?);
    }
    let (package, package_version) = match &kernel.package {
        Some((p, v)) => (Some(p.clone()), Some(v.clone())),
        None => (None, None),
    };
    let manifest = Manifest {
        builder_version: env!("CARGO_PKG_VERSION").to_owned(),
        source_date_epoch: args.source_date_epoch,
        kernel: KernelInfo {
            version: kernel.tree.version.clone(),
            package,
            package_version,
        },
        kernel_cmdline: cmdline,
        added_modules: args.add_modules.clone(),
        dropped_modules: args.drop_modules.clone(),
        ramdisk: RamdiskInfo {
            modules: built.figures.module_count,
            module_bytes: built.figures.module_bytes,
            firmware_files: built.figures.firmware_files,
            uncompressed_bytes: built.uncompressed_bytes,
            zstd_level: args.zstd_level,
            firmware_missing: built.figures.firmware_missing.clone(),
            host_files: built.figures.host_files.clone(),
            host_file_bytes: built.figures.host_file_bytes,
        },
        config_area: ConfigAreaInfo {
            offset: locator.area.offset,
            size: locator.area.len,
            kargs_field_size: locator.kargs_field_len,
            signing_key_sha256: locator.signing_key_sha256.map(hex::encode),
        },
        inputs,
        outputs,
    };
    write_file(&staged.join(OUT_MANIFEST), manifest.to_json()?.as_bytes())?;

    for name in [
        OUT_VMLINUZ,
        OUT_INITRAMFS,
        OUT_ESP,
        OUT_IPA_KERNEL,
        OUT_IPA_INITRAMFS,
        OUT_ISO,
        OUT_MANIFEST,
    ] {
        let dest = args.output.join(name);
        fs::rename(staged.join(name), &dest)
            .with_context(|| format!("moving {name} into {}", args.output.display()))?;
    }
    Ok(manifest)
}
