//! Reading a kernel module's `.modinfo` ELF section: the `key=value\0` strings from which
//! depmod derives modules.dep (`depends=`), modules.softdep (`softdep=`) and modules.alias
//! (`alias=`).

use std::fs::File;
use std::path::Path;

use object::{Object, ObjectSection};

/// Errors reading one module.
#[derive(Debug, thiserror::Error)]
pub enum ModinfoError {
    #[error("opening {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF object: {source}")]
    Elf { path: String, source: object::Error },
    #[error("{path} has no .modinfo section")]
    NoModinfo { path: String },
}

/// What a module's `.modinfo` says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`, with `-` turned into `_` (empty when the section has none).
    pub name: String,
    /// `depends=`, split on commas, normalised.
    pub depends: Vec<String>,
    /// Each `softdep=` value as written (e.g. `pre: crct10dif_generic`).
    pub softdeps: Vec<String>,
    /// `alias=` values in order.
    pub aliases: Vec<String>,
    /// `firmware=` values: files the driver may request from /lib/firmware.
    pub firmware: Vec<String>,
}

/// Module names treat `-` and `_` alike; the canonical form uses `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

impl ModInfo {
    /// Parses the raw bytes of a `.modinfo` section.
    pub fn parse(section: &[u8]) -> ModInfo {
        let mut info = ModInfo::default();
        for raw in section.split(|b| *b == 0) {
            let Ok(entry) = std::str::from_utf8(raw) else {
                continue;
            };
            let Some((key, value)) = entry.split_once('=') else {
                continue;
            };
            match key {
                "name" => info.name = normalize(value),
                "depends" => info.depends.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .map(normalize),
                ),
                "softdep" => info.softdeps.push(value.trim().to_owned()),
                "alias" => info.aliases.push(value.to_owned()),
                "firmware" => info.firmware.push(value.to_owned()),
                _ => {}
            }
        }
        info
    }

    /// What the softdeps (both `pre:` and `post:`) name, as written: a module name or an
    /// alias (e.g. `crypto-crc32c`, where the dash matters).
    pub fn softdep_names(&self) -> Vec<String> {
        self.softdeps
            .iter()
            .flat_map(|s| s.split_whitespace())
            .filter(|w| !w.ends_with(':'))
            .map(str::to_owned)
            .collect()
    }

    /// Reads the `.modinfo` section of the module file at `path` (only the ELF headers and
    /// that section are read, not the whole file).
    pub fn read(path: &Path) -> Result<ModInfo, ModinfoError> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|source| ModinfoError::Open {
            path: shown.clone(),
            source,
        })?;
        let cache = object::ReadCache::new(file);
        let elf = object::File::parse(&cache).map_err(|source| ModinfoError::Elf {
            path: shown.clone(),
            source,
        })?;
        let section = elf
            .section_by_name(".modinfo")
            .ok_or_else(|| ModinfoError::NoModinfo {
                path: shown.clone(),
            })?;
        let data = section.data().map_err(|source| ModinfoError::Elf {
            path: shown.clone(),
            source,
        })?;
        Ok(ModInfo::parse(data))
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    //! Tiny ELF relocatable objects with a `.modinfo` section, shaped like kernel modules,
    //! generated with `object::write` so no binary fixtures need checking in.

    use object::write::Object;
    use object::{Architecture, BinaryFormat, Endianness, SectionKind};

    /// An x86-64 ELF object whose `.modinfo` holds `entries` (each `key=value`).
    pub fn module_elf(entries: &[&str]) -> Vec<u8> {
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.add_section(vec![], b".text".to_vec(), SectionKind::Text);
        obj.append_section_data(text, &[0xc3], 1);
        let modinfo = obj.add_section(vec![], b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        let mut data = Vec::new();
        for e in entries {
            data.extend_from_slice(e.as_bytes());
            data.push(0);
        }
        obj.append_section_data(modinfo, &data, 1);
        let mut bytes = match obj.write() {
            Ok(b) => b,
            Err(e) => panic!("writing fixture ELF: {e}"),
        };
        // Real modules carry an appended signature after the ELF data.
        bytes.extend_from_slice(b"fake-signature~Module signature appended~\n");
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_normalises_names() {
        let raw = b"version=1.0\0license=GPL\0alias=pci:v*d*sv*sd*bc01sc08i02*\0\
                    alias=nvme-x\0depends=t10-pi,crc64\0softdep=pre: crct10dif_generic\0\
                    firmware=nvme/fw.bin\0name=nvme_core\0\0\0";
        let info = ModInfo::parse(raw);
        assert_eq!(info.name, "nvme_core");
        assert_eq!(info.depends, ["t10_pi", "crc64"]);
        assert_eq!(info.softdeps, ["pre: crct10dif_generic"]);
        assert_eq!(info.softdep_names(), ["crct10dif_generic"]);
        assert_eq!(info.aliases, ["pci:v*d*sv*sd*bc01sc08i02*", "nvme-x"]);
        assert_eq!(info.firmware, ["nvme/fw.bin"]);
    }

    #[test]
    fn empty_depends_and_both_softdep_kinds() {
        let info = ModInfo::parse(b"depends=\0softdep=pre: a-b c post: d\0name=x\0");
        assert!(info.depends.is_empty());
        assert_eq!(info.softdep_names(), ["a-b", "c", "d"]);
    }

    #[test]
    fn reads_the_section_from_an_elf_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("isofs.ko");
        let elf = fixture::module_elf(&["alias=iso9660", "depends=cdrom", "name=isofs"]);
        std::fs::write(&path, elf).unwrap();
        let info = ModInfo::read(&path).unwrap();
        assert_eq!(info.name, "isofs");
        assert_eq!(info.depends, ["cdrom"]);
        assert_eq!(info.aliases, ["iso9660"]);
    }

    #[test]
    fn reports_files_that_are_not_modules() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.ko");
        std::fs::write(&junk, b"not an elf").unwrap();
        let err = ModInfo::read(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.ko is not an ELF object"), "{err}");

        let plain = dir.path().join("plain.ko");
        let mut obj = object::write::Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::X86_64,
            object::Endianness::Little,
        );
        let text = obj.add_section(vec![], b".text".to_vec(), object::SectionKind::Text);
        obj.append_section_data(text, &[0xc3], 1);
        std::fs::write(&plain, obj.write().unwrap()).unwrap();
        let err = ModInfo::read(&plain).unwrap_err().to_string();
        assert!(err.contains("has no .modinfo section"), "{err}");

        let err = ModInfo::read(&dir.path().join("missing.ko"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("opening "), "{err}");
    }
}
