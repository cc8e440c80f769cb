//! The modules of one kernel: every `.ko` under `lib/modules/<version>/kernel` with its
//! `.modinfo`, plus the names in `modules.builtin`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::modinfo::{normalize, ModInfo};

/// One loadable module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Canonical name (`_` for `-`).
    pub name: String,
    /// Path relative to `lib/modules/<version>`, e.g. `kernel/fs/isofs/isofs.ko`.
    pub rel_path: String,
    pub info: ModInfo,
}

/// All modules of a kernel, by canonical name.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    pub modules: BTreeMap<String, Module>,
    /// Canonical names of the modules built into the kernel.
    pub builtin: BTreeSet<String>,
}

/// Extensions of compressed modules, which Debian 12's kernel cannot load (lab notes).
const COMPRESSED: [&str; 3] = [".ko.xz", ".ko.zst", ".ko.gz"];

impl ModuleIndex {
    /// Builds the index from module records; two modules with one name are an error.
    pub fn new(modules: Vec<Module>, builtin: BTreeSet<String>) -> Result<Self> {
        let mut map = BTreeMap::new();
        for m in modules {
            if let Some(old) = map.get(&m.name) {
                let old: &Module = old;
                bail!(
                    "two modules are named {}: {} and {}",
                    m.name,
                    old.rel_path,
                    m.rel_path
                );
            }
            map.insert(m.name.clone(), m);
        }
        Ok(ModuleIndex {
            modules: map,
            builtin,
        })
    }

    /// Reads every module below `moddir/kernel` and `moddir/modules.builtin`.
    pub fn scan(moddir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        walk(&moddir.join("kernel"), &mut files)?;
        files.sort();
        let mut modules = Vec::with_capacity(files.len());
        for path in files {
            let file_name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if COMPRESSED.iter().any(|ext| file_name.ends_with(ext)) {
                bail!(
                    "{} is compressed: this builder ships plain .ko files only (the kernel \
                     it targets cannot decompress modules)",
                    path.display()
                );
            }
            let Some(stem) = file_name.strip_suffix(".ko") else {
                continue;
            };
            let info = ModInfo::read(&path)?;
            let name = if info.name.is_empty() {
                normalize(stem)
            } else {
                info.name.clone()
            };
            let rel_path = path
                .strip_prefix(moddir)
                .with_context(|| format!("{} is outside {}", path.display(), moddir.display()))?
                .to_string_lossy()
                .into_owned();
            modules.push(Module {
                name,
                rel_path,
                info,
            });
        }
        if modules.is_empty() {
            bail!(
                "no kernel modules found under {}",
                moddir.join("kernel").display()
            );
        }
        let builtin_path = moddir.join("modules.builtin");
        let builtin_text = fs::read_to_string(&builtin_path)
            .with_context(|| format!("reading {}", builtin_path.display()))?;
        Self::new(modules, parse_builtin(&builtin_text))
    }

    /// Modules that carry `alias` verbatim (e.g. `iso9660` -> `isofs`).
    pub fn by_alias(&self, alias: &str) -> Vec<&str> {
        self.modules
            .values()
            .filter(|m| m.info.aliases.iter().any(|a| a == alias))
            .map(|m| m.name.as_str())
            .collect()
    }
}

/// Canonical module names from the text of `modules.builtin` (one path per line).
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.trim().rsplit('/').next())
        .filter_map(|file| file.strip_suffix(".ko"))
        .map(normalize)
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let kind = entry
            .file_type()
            .with_context(|| format!("stat {}", entry.path().display()))?;
        if kind.is_dir() {
            walk(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modinfo::fixture::module_elf;

    #[test]
    fn scans_a_module_tree() {
        let dir = tempfile::tempdir().unwrap();
        let moddir = dir.path();
        fs::create_dir_all(moddir.join("kernel/fs/isofs")).unwrap();
        fs::create_dir_all(moddir.join("kernel/drivers/cdrom")).unwrap();
        fs::write(
            moddir.join("kernel/fs/isofs/isofs.ko"),
            module_elf(&["alias=iso9660", "depends=cdrom", "name=isofs"]),
        )
        .unwrap();
        // No name= entry: the file name gives it.
        fs::write(
            moddir.join("kernel/drivers/cdrom/cd-rom.ko"),
            module_elf(&["depends="]),
        )
        .unwrap();
        fs::write(moddir.join("kernel/fs/isofs/README"), b"not a module").unwrap();
        fs::write(
            moddir.join("modules.builtin"),
            "kernel/fs/ext4/ext4.ko\nkernel/a/crc-32.ko\n",
        )
        .unwrap();
        let index = ModuleIndex::scan(moddir).unwrap();
        let names: Vec<&String> = index.modules.keys().collect();
        assert_eq!(names, ["cd_rom", "isofs"]);
        assert_eq!(index.modules["isofs"].rel_path, "kernel/fs/isofs/isofs.ko");
        assert_eq!(
            index.builtin,
            BTreeSet::from(["ext4".to_owned(), "crc_32".to_owned()])
        );
        assert_eq!(index.by_alias("iso9660"), ["isofs"]);
        assert!(index.by_alias("iso").is_empty());
    }

    #[test]
    fn refuses_compressed_modules_and_empty_trees() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("kernel/fs")).unwrap();
        fs::write(dir.path().join("modules.builtin"), "").unwrap();
        let err = format!("{:#}", ModuleIndex::scan(dir.path()).unwrap_err());
        assert!(err.contains("no kernel modules found"), "{err}");
        fs::write(dir.path().join("kernel/fs/isofs.ko.xz"), b"xz").unwrap();
        let err = format!("{:#}", ModuleIndex::scan(dir.path()).unwrap_err());
        assert!(err.contains("isofs.ko.xz is compressed"), "{err}");
    }

    #[test]
    fn duplicate_names_are_an_error() {
        let m = |p: &str| Module {
            name: "a".into(),
            rel_path: p.into(),
            info: ModInfo::default(),
        };
        let err = ModuleIndex::new(
            vec![m("kernel/x/a.ko"), m("kernel/y/a.ko")],
            BTreeSet::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "two modules are named a: kernel/x/a.ko and kernel/y/a.ko"
        );
    }
}
