//! The shared-library closure of a dynamically linked host program, read from its ELF
//! headers (no `ldd`, which would run the host's loader): the program interpreter
//! (`PT_INTERP`, the dynamic loader) and, recursively, every `DT_NEEDED` library, looked up
//! as the loader does in `DT_RUNPATH` (or `DT_RPATH`) and then in the multiarch system
//! directories. Libraries of another ELF class or machine (i386 ones in `/usr/lib32` ...)
//! are passed over, as the loader does.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::Endianness;

/// The directories the x86-64 Debian loader searches after the run paths (its trusted
/// directories; the builder does not read `ld.so.cache`).
pub const SYSTEM_LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// What the dynamic loader needs to start one ELF file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DynamicInfo {
    /// `PT_INTERP`: the loader's absolute path, for executables.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH`, else `DT_RPATH`, split at `:`.
    pub run_paths: Vec<String>,
}

fn text(bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).with_context(|| format!("{what} is not UTF-8"))
}

/// Reads the interpreter and dynamic section of a 64-bit x86-64 ELF file.
pub fn dynamic_info(data: &[u8]) -> Result<DynamicInfo> {
    let elf = ElfFile64::<Endianness>::parse(data).context("not a 64-bit ELF file")?;
    let endian = elf.endian();
    if elf.elf_header().e_machine(endian) != object::elf::EM_X86_64 {
        bail!("not an x86-64 ELF file");
    }
    let mut info = DynamicInfo::default();
    for segment in elf.elf_program_headers() {
        if let Some(interp) = segment
            .interpreter(endian, data)
            .context("reading PT_INTERP")?
        {
            info.interpreter = Some(text(interp, "PT_INTERP")?);
        }
    }
    let table = elf
        .elf_section_table()
        .dynamic_table(endian, data)
        .context("reading the dynamic section")?;
    let (mut runpath, mut rpath) = (None, None);
    for entry in table.iter() {
        let slot = match entry.tag {
            object::elf::DT_NEEDED => None,
            object::elf::DT_RUNPATH => Some(&mut runpath),
            object::elf::DT_RPATH => Some(&mut rpath),
            _ => continue,
        };
        let value = text(
            table.string(entry).context("reading a dynamic string")?,
            "a dynamic string",
        )?;
        match slot {
            None => info.needed.push(value),
            Some(slot) => *slot = Some(value),
        }
    }
    info.run_paths = runpath
        .or(rpath)
        .map(|p| {
            p.split(':')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(info)
}

/// A dynamically linked program with everything the loader maps to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    /// The loader's path as the program names it (`/lib64/ld-linux-x86-64.so.2`).
    pub interpreter: String,
    /// Each needed library by its `DT_NEEDED` name (sorted), with the host file it
    /// resolved to.
    pub libraries: BTreeMap<String, PathBuf>,
}

fn is_x86_64_elf(path: &Path) -> bool {
    fs::read(path).is_ok_and(|data| {
        ElfFile64::<Endianness>::parse(data.as_slice())
            .is_ok_and(|elf| elf.elf_header().e_machine(elf.endian()) == object::elf::EM_X86_64)
    })
}

/// Finds `name` as the loader would, for an object in `origin_dir` with `run_paths`.
fn resolve(
    name: &str,
    run_paths: &[String],
    origin_dir: &Path,
    system: &[PathBuf],
) -> Option<PathBuf> {
    let origin = origin_dir.to_string_lossy();
    run_paths
        .iter()
        .map(|d| PathBuf::from(d.replace("$ORIGIN", &origin).replace("${ORIGIN}", &origin)))
        .chain(system.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| is_x86_64_elf(candidate))
}

/// The closure of the dynamically linked executable `program`, its libraries looked up in
/// run paths and then `system_dirs` (normally [`SYSTEM_LIB_DIRS`]). Fails naming the
/// library that cannot be found, and for a static program (nothing to bundle with it).
pub fn closure(program: &Path, system_dirs: &[PathBuf]) -> Result<Closure> {
    let data = fs::read(program).with_context(|| format!("reading {}", program.display()))?;
    let info = dynamic_info(&data).with_context(|| format!("reading {}", program.display()))?;
    let interpreter = info.interpreter.clone().with_context(|| {
        format!(
            "{} has no program interpreter (a static program has no libraries to bundle)",
            program.display()
        )
    })?;
    // libc names the loader (its soname) as a library; the loader itself answers that.
    let loader_name = Path::new(&interpreter)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut libraries = BTreeMap::new();
    let mut queue = VecDeque::from([(program.to_path_buf(), info)]);
    while let Some((object, info)) = queue.pop_front() {
        let origin_dir = object.parent().unwrap_or(Path::new("/"));
        for name in &info.needed {
            if libraries.contains_key(name) || *name == loader_name {
                continue;
            }
            if name.contains('/') {
                bail!(
                    "{} needs {name} by path; only plain library names are supported",
                    object.display()
                );
            }
            let found =
                resolve(name, &info.run_paths, origin_dir, system_dirs).with_context(|| {
                    format!(
                        "{} needs {name}, which is in none of {}",
                        object.display(),
                        system_dirs
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            let lib_data =
                fs::read(&found).with_context(|| format!("reading {}", found.display()))?;
            let lib_info =
                dynamic_info(&lib_data).with_context(|| format!("reading {}", found.display()))?;
            libraries.insert(name.clone(), found.clone());
            queue.push_back((found, lib_info));
        }
    }
    Ok(Closure {
        interpreter,
        libraries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const MKE2FS: &str = "/usr/sbin/mke2fs";

    fn system() -> Vec<PathBuf> {
        SYSTEM_LIB_DIRS.iter().map(PathBuf::from).collect()
    }

    /// `ldd`'s `name => path` lines (and the loader's own line), the reference.
    fn ldd(program: &str) -> (BTreeMap<String, PathBuf>, String) {
        let out = Command::new("ldd")
            .arg(program)
            .output()
            .expect("ldd (Debian package libc-bin) is required by this test");
        assert!(out.status.success(), "ldd {program} failed");
        let mut libs = BTreeMap::new();
        let mut loader = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let line = line.trim();
            if let Some((name, rest)) = line.split_once(" => ") {
                let path = rest.split(" (").next().unwrap_or_default();
                libs.insert(name.to_owned(), PathBuf::from(path));
            } else if line.starts_with('/') {
                loader = line.split(" (").next().unwrap_or_default().to_owned();
            }
        }
        (libs, loader)
    }

    #[test]
    fn mke2fs_closure_matches_ldd() {
        assert!(
            Path::new(MKE2FS).is_file(),
            "{MKE2FS} (Debian package e2fsprogs; ci/setup installs it) is required by this test"
        );
        let found = closure(Path::new(MKE2FS), &system()).unwrap();
        let (expected, loader) = ldd(MKE2FS);
        assert_eq!(found.interpreter, loader);
        assert_eq!(
            found.libraries.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (name, path) in &found.libraries {
            assert_eq!(
                fs::canonicalize(path).unwrap(),
                fs::canonicalize(&expected[name]).unwrap(),
                "{name}"
            );
        }
        assert!(found.libraries.contains_key("libext2fs.so.2"));
        assert!(found.libraries.contains_key("libc.so.6"));
    }

    #[test]
    fn a_missing_library_is_named() {
        let empty = tempfile::tempdir().unwrap();
        let err = closure(Path::new(MKE2FS), &[empty.path().to_path_buf()]).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.starts_with(&format!("{MKE2FS} needs lib")), "{err}");
        assert!(err.contains(&empty.path().display().to_string()), "{err}");
    }

    #[test]
    fn a_static_program_has_no_closure() {
        let dir = tempfile::tempdir().unwrap();
        let exit0 = dir.path().join("exit0");
        fs::write(&exit0, include_bytes!("../tests/fixtures/exit0.elf")).unwrap();
        let info = dynamic_info(&fs::read(&exit0).unwrap()).unwrap();
        assert_eq!(info, DynamicInfo::default());
        let err = format!("{:#}", closure(&exit0, &system()).unwrap_err());
        assert!(err.contains("has no program interpreter"), "{err}");
        assert!(dynamic_info(b"#!/bin/sh\n").is_err());
    }
}
