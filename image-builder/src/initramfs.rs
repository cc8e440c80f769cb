//! The initramfs: the static agent as `/init`, the selected modules with their depmod
//! index files, firmware, the host tools the agent runs ([`crate::hostbin`]: mke2fs and its
//! libraries), the directories the agent mounts on, and `/etc/rivet-release`; a newc cpio
//! compressed with zstd.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::Endianness;

use rivet_protocol::config_area::SIGNING_PUBKEY_PATH;

use crate::cpio::Archive;
use crate::depmod;
use crate::hostbin::Bundled;
use crate::modindex::ModuleIndex;

/// Empty directories the agent mounts file systems on or writes to, with their modes.
pub const EMPTY_DIRS: &[(&str, u32)] = &[
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("etc", 0o755),
    ("mnt", 0o755),
];

/// Firmware to ship: `source` (file or directory) goes to `lib/firmware/<dest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub source: PathBuf,
    pub dest: String,
}

impl Firmware {
    /// Parses `SRC[=DEST]`; DEST defaults to the file name of SRC.
    pub fn parse(spec: &str) -> Result<Self> {
        let (source, dest) = match spec.split_once('=') {
            Some((s, d)) => (PathBuf::from(s), d.trim_matches('/').to_owned()),
            None => {
                let source = PathBuf::from(spec);
                let name = source
                    .file_name()
                    .with_context(|| format!("--add-firmware {spec}: no file name"))?
                    .to_string_lossy()
                    .into_owned();
                (source, name)
            }
        };
        if dest.is_empty()
            || dest
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("--add-firmware {spec}: bad destination {dest:?}");
        }
        Ok(Firmware { source, dest })
    }
}

/// Everything that goes into the archive.
pub struct Contents<'a> {
    pub agent: &'a Path,
    pub kernel_version: &'a str,
    pub moddir: &'a Path,
    pub index: &'a ModuleIndex,
    pub modules: &'a BTreeSet<String>,
    pub firmware: &'a [Firmware],
    /// Host files bundled for the agent to run ([`crate::hostbin`]).
    pub host_files: &'a [Bundled],
    pub release: String,
    /// The key config-area bundles must be signed with, as `PUBLIC KEY` PEM.
    pub signing_pubkey: Option<String>,
}

/// What went in, for the size report and the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    pub module_count: usize,
    pub module_bytes: u64,
    pub firmware_files: usize,
    /// `firmware=` files named by shipped modules that the image does not contain.
    pub firmware_missing: Vec<String>,
    /// The bundled host files (ramdisk paths) and their bytes.
    pub host_files: Vec<String>,
    pub host_file_bytes: u64,
}

/// The compressed initramfs and its figures.
pub struct Built {
    pub compressed: Vec<u8>,
    pub uncompressed_bytes: u64,
    pub figures: Figures,
}

/// Checks that `data` is an x86-64 ELF executable without a program interpreter, i.e. a
/// static binary that can run as `/init` of an empty root file system.
pub fn check_static_executable(data: &[u8]) -> std::result::Result<(), String> {
    let elf =
        ElfFile64::<Endianness>::parse(data).map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let endian = elf.endian();
    let header = elf.elf_header();
    if header.e_machine(endian) != object::elf::EM_X86_64 {
        return Err("not an x86-64 program".into());
    }
    if ![object::elf::ET_EXEC, object::elf::ET_DYN].contains(&header.e_type(endian)) {
        return Err("not an executable".into());
    }
    if elf
        .elf_program_headers()
        .iter()
        .any(|p| p.p_type(endian) == object::elf::PT_INTERP)
    {
        return Err(
            "dynamically linked (it has a program interpreter); build it static \
                    (x86_64-unknown-linux-musl)"
                .into(),
        );
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn add_tree(archive: &mut Archive, src: &Path, dest: &str, count: &mut usize) -> Result<()> {
    let meta = fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    if meta.is_file() {
        archive.add_file(dest, 0o644, read(src)?)?;
        *count += 1;
        return Ok(());
    }
    if !meta.is_dir() {
        bail!("{} is neither a file nor a directory", src.display());
    }
    archive.add_dir(dest, 0o755)?;
    let mut entries: Vec<PathBuf> = fs::read_dir(src)
        .with_context(|| format!("listing {}", src.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {}", src.display()))?;
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        add_tree(archive, &path, &format!("{dest}/{name}"), count)?;
    }
    Ok(())
}

/// Assembles the archive.
pub fn assemble(c: &Contents<'_>) -> Result<(Archive, Figures)> {
    let mut archive = Archive::new();
    let agent = read(c.agent)?;
    check_static_executable(&agent)
        .map_err(|why| anyhow::anyhow!("--agent {}: {why}", c.agent.display()))?;
    archive.add_file("init", 0o755, agent)?;
    for (dir, mode) in EMPTY_DIRS {
        archive.add_dir(dir, *mode)?;
    }
    archive.add_char_device("dev/console", 0o600, 5, 1)?;
    archive.add_file("etc/rivet-release", 0o644, c.release.clone().into_bytes())?;
    if let Some(pem) = &c.signing_pubkey {
        let path = SIGNING_PUBKEY_PATH.trim_start_matches('/');
        archive.add_file(path, 0o644, pem.clone().into_bytes())?;
    }

    let base = format!("lib/modules/{}", c.kernel_version);
    let mut module_bytes = 0;
    for name in c.modules {
        let module = c
            .index
            .modules
            .get(name)
            .with_context(|| format!("selected module {name} is not in the index"))?;
        let data = read(&c.moddir.join(&module.rel_path))?;
        module_bytes += data.len() as u64;
        archive.add_file(&format!("{base}/{}", module.rel_path), 0o644, data)?;
    }
    let files = depmod::generate(c.index, c.modules);
    archive.add_file(
        &format!("{base}/modules.dep"),
        0o644,
        files.dep.into_bytes(),
    )?;
    archive.add_file(
        &format!("{base}/modules.alias"),
        0o644,
        files.alias.into_bytes(),
    )?;
    archive.add_file(
        &format!("{base}/modules.softdep"),
        0o644,
        files.softdep.into_bytes(),
    )?;
    let builtin = read(&c.moddir.join("modules.builtin"))?;
    archive.add_file(&format!("{base}/modules.builtin"), 0o644, builtin)?;

    let mut firmware_files = 0;
    for fw in c.firmware {
        add_tree(
            &mut archive,
            &fw.source,
            &format!("lib/firmware/{}", fw.dest),
            &mut firmware_files,
        )
        .with_context(|| format!("adding firmware {}", fw.source.display()))?;
    }
    let mut host_file_bytes = 0;
    for file in c.host_files {
        let data = read(&file.source)?;
        host_file_bytes += data.len() as u64;
        archive.add_file(&file.dest, file.mode, data)?;
    }

    let mut firmware_missing = BTreeSet::new();
    for name in c.modules {
        for fw in c
            .index
            .modules
            .get(name)
            .map(|m| m.info.firmware.as_slice())
            .unwrap_or_default()
        {
            if !archive.contains(&format!("lib/firmware/{fw}")) {
                firmware_missing.insert(fw.clone());
            }
        }
    }
    let figures = Figures {
        module_count: c.modules.len(),
        module_bytes,
        firmware_files,
        firmware_missing: firmware_missing.into_iter().collect(),
        host_files: c.host_files.iter().map(|f| f.dest.clone()).collect(),
        host_file_bytes,
    };
    Ok((archive, figures))
}

/// Builds the compressed initramfs.
pub fn build(c: &Contents<'_>, mtime: u32, zstd_level: i32) -> Result<Built> {
    let (archive, figures) = assemble(c)?;
    let mut raw = Vec::new();
    archive.write_to(&mut raw, mtime)?;
    let mut encoder =
        zstd::stream::Encoder::new(Vec::new(), zstd_level).context("starting the zstd encoder")?;
    encoder.include_checksum(true).context("configuring zstd")?;
    encoder
        .write_all(&raw)
        .context("compressing the initramfs")?;
    let compressed = encoder.finish().context("compressing the initramfs")?;
    Ok(Built {
        compressed,
        uncompressed_bytes: raw.len() as u64,
        figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::read::parse;
    use crate::modinfo::fixture::module_elf;

    /// A 132-byte static x86-64 executable (see tests/fixtures/INDEX).
    const EXIT0: &[u8] = include_bytes!("../tests/fixtures/exit0.elf");

    #[test]
    fn firmware_specs() {
        let fw = Firmware::parse("/lib/firmware/bnx2x").unwrap();
        assert_eq!(
            (fw.source, fw.dest.as_str()),
            (PathBuf::from("/lib/firmware/bnx2x"), "bnx2x")
        );
        let fw = Firmware::parse("./e100.bin=e100/d101m_ucode.bin").unwrap();
        assert_eq!(fw.dest, "e100/d101m_ucode.bin");
        assert!(Firmware::parse("x=../etc").is_err());
        assert!(Firmware::parse("x=").is_err());
    }

    #[test]
    fn agent_must_be_a_static_x86_64_executable() {
        assert_eq!(check_static_executable(EXIT0), Ok(()));
        assert!(check_static_executable(b"#!/bin/sh\n")
            .unwrap_err()
            .starts_with("not a 64-bit ELF"));
        let mut dynamic = EXIT0.to_vec();
        dynamic[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_LOAD -> PT_INTERP
        assert!(check_static_executable(&dynamic)
            .unwrap_err()
            .starts_with("dynamically linked"));
        let mut arm = EXIT0.to_vec();
        arm[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        assert_eq!(
            check_static_executable(&arm),
            Err("not an x86-64 program".into())
        );
    }

    #[test]
    fn archive_holds_init_modules_index_and_firmware() {
        let dir = tempfile::tempdir().unwrap();
        let moddir = dir.path().join("lib/modules/6.1.0-test");
        fs::create_dir_all(moddir.join("kernel/fs/isofs")).unwrap();
        fs::create_dir_all(moddir.join("kernel/drivers/cdrom")).unwrap();
        fs::write(
            moddir.join("kernel/fs/isofs/isofs.ko"),
            module_elf(&[
                "alias=iso9660",
                "depends=cdrom",
                "firmware=iso/a.bin",
                "name=isofs",
            ]),
        )
        .unwrap();
        fs::write(
            moddir.join("kernel/drivers/cdrom/cdrom.ko"),
            module_elf(&["firmware=cd/b.bin", "name=cdrom"]),
        )
        .unwrap();
        fs::write(moddir.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        let fwdir = dir.path().join("fw/cd");
        fs::create_dir_all(&fwdir).unwrap();
        fs::write(fwdir.join("b.bin"), b"blob").unwrap();
        let agent = dir.path().join("agent");
        fs::write(&agent, EXIT0).unwrap();

        let index = ModuleIndex::scan(&moddir).unwrap();
        let modules = BTreeSet::from(["isofs".to_owned(), "cdrom".to_owned()]);
        let firmware = [Firmware::parse(fwdir.to_str().unwrap()).unwrap()];
        let contents = Contents {
            agent: &agent,
            kernel_version: "6.1.0-test",
            moddir: &moddir,
            index: &index,
            modules: &modules,
            firmware: &firmware,
            host_files: &[],
            release: "NAME=rivet\n".into(),
            signing_pubkey: Some("-----BEGIN PUBLIC KEY-----\n".into()),
        };
        let built = build(&contents, 42, 3).unwrap();
        assert_eq!(
            (built.figures.module_count, built.figures.firmware_files),
            (2, 1)
        );
        assert_eq!(built.figures.firmware_missing, ["iso/a.bin"]);
        let raw = zstd::decode_all(built.compressed.as_slice()).unwrap();
        assert_eq!(raw.len() as u64, built.uncompressed_bytes);
        let entries = parse(&raw).unwrap();
        let get = |n: &str| {
            entries
                .iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(get("init").mode, 0o100755);
        assert_eq!(get("init").data, EXIT0.to_vec());
        assert_eq!(get("tmp").mode, 0o041777);
        assert_eq!(get("dev/console").rdev, (5, 1));
        assert_eq!(get("etc/rivet-release").data, b"NAME=rivet\n");
        assert_eq!(
            get("etc/rivet/bundle-signing.pub").data,
            b"-----BEGIN PUBLIC KEY-----\n"
        );
        assert_eq!(get("lib/firmware/cd/b.bin").data, b"blob");
        assert!(entries
            .iter()
            .all(|e| e.mtime == 42 && e.uid == 0 && e.gid == 0));
        let base = "lib/modules/6.1.0-test";
        assert_eq!(
            get(&format!("{base}/modules.dep")).data,
            b"kernel/drivers/cdrom/cdrom.ko:\nkernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko\n"
        );
        assert!(
            String::from_utf8_lossy(&get(&format!("{base}/modules.alias")).data)
                .contains("alias iso9660 isofs\n")
        );
        assert_eq!(
            get(&format!("{base}/modules.builtin")).data,
            b"kernel/fs/ext4/ext4.ko\n"
        );
        assert_eq!(
            get(&format!("{base}/kernel/fs/isofs/isofs.ko")).data,
            fs::read(moddir.join("kernel/fs/isofs/isofs.ko")).unwrap(),
            "modules are shipped unmodified (signatures intact)"
        );
        for (d, mode) in EMPTY_DIRS {
            assert_eq!(get(d).mode, 0o040000 | mode, "{d}");
        }
        // Same inputs, same bytes.
        assert_eq!(
            build(&contents, 42, 3).unwrap().compressed,
            built.compressed
        );

        fs::write(&agent, b"#!/bin/sh\n").unwrap();
        let err = format!("{:#}", build(&contents, 42, 3).err().unwrap());
        assert!(err.contains("agent: not a 64-bit ELF file"), "{err}");
    }

    #[test]
    fn bundled_mke2fs_comes_with_its_loader_and_every_library_it_needs() {
        let files = crate::hostbin::host_mke2fs()
            .expect("the host's mke2fs (Debian package e2fsprogs; ci/setup installs it)");
        let dir = tempfile::tempdir().unwrap();
        let moddir = dir.path().join("lib/modules/6.1.0-test");
        fs::create_dir_all(moddir.join("kernel/fs/isofs")).unwrap();
        fs::write(
            moddir.join("kernel/fs/isofs/isofs.ko"),
            module_elf(&["name=isofs"]),
        )
        .unwrap();
        fs::write(moddir.join("modules.builtin"), "").unwrap();
        let agent = dir.path().join("agent");
        fs::write(&agent, EXIT0).unwrap();
        let index = ModuleIndex::scan(&moddir).unwrap();
        let contents = Contents {
            agent: &agent,
            kernel_version: "6.1.0-test",
            moddir: &moddir,
            index: &index,
            modules: &BTreeSet::new(),
            firmware: &[],
            host_files: &files,
            release: String::new(),
            signing_pubkey: None,
        };
        let built = build(&contents, 0, 1).unwrap();
        let raw = zstd::decode_all(built.compressed.as_slice()).unwrap();
        let entries = parse(&raw).unwrap();
        let get = |n: &str| {
            entries
                .iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("no {n} in the initramfs"))
        };
        let mke2fs = get("usr/sbin/mke2fs");
        assert_eq!(mke2fs.mode, 0o100755);
        assert_eq!(mke2fs.data, fs::read("/usr/sbin/mke2fs").unwrap());
        assert_eq!(
            get("etc/mke2fs.conf").data,
            fs::read("/etc/mke2fs.conf").unwrap()
        );
        let info = crate::elfdeps::dynamic_info(&mke2fs.data).unwrap();
        let loader = info.interpreter.clone().unwrap();
        assert_eq!(loader, "/lib64/ld-linux-x86-64.so.2");
        assert_eq!(get(&loader[1..]).mode, 0o100755);
        for lib in [
            "libext2fs.so.2",
            "libcom_err.so.2",
            "libblkid.so.1",
            "libuuid.so.1",
            "libe2p.so.2",
            "libc.so.6",
        ] {
            get(&format!("lib/x86_64-linux-gnu/{lib}"));
        }
        // Every ELF file bundled finds each library it needs in the archive.
        let mut checked = 0;
        for entry in entries
            .iter()
            .filter(|e| e.name == "usr/sbin/mke2fs" || e.name.starts_with("lib/x86_64-linux-gnu/"))
        {
            let needs = crate::elfdeps::dynamic_info(&entry.data).unwrap().needed;
            for name in needs {
                assert!(
                    name == "ld-linux-x86-64.so.2"
                        || entries
                            .iter()
                            .any(|e| e.name == format!("lib/x86_64-linux-gnu/{name}")),
                    "{} needs {name}, which the initramfs lacks",
                    entry.name
                );
            }
            checked += 1;
        }
        assert_eq!(checked, files.len() - 2, "mke2fs and every library");
        let dests: Vec<String> = files.iter().map(|f| f.dest.clone()).collect();
        assert_eq!(built.figures.host_files, dests);
        assert!(built.figures.host_file_bytes > mke2fs.data.len() as u64);
    }
}
