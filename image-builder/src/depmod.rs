//! The index files depmod would write for the selected modules, in depmod's text formats
//! (the agent's coldplug and modprobe read the same files):
//!
//! - `modules.dep`: `<path>: <dep path> <dep path> ...` with every transitive dependency,
//!   listed so that loading them from the last to the first satisfies each one.
//! - `modules.alias`: `alias <pattern> <module>` per `alias=` entry.
//! - `modules.softdep`: `softdep <module> <pre:/post: list>` per `softdep=` entry.
//!
//! Modules appear in path order, so the files depend only on the selection.

use std::collections::BTreeSet;

use crate::modindex::{Module, ModuleIndex};

/// The three generated files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepmodFiles {
    pub dep: String,
    pub alias: String,
    pub softdep: String,
}

/// Appends the dependencies of `name` (post-order: a module after all it depends on).
fn load_order<'a>(
    index: &'a ModuleIndex,
    name: &str,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<&'a Module>,
) {
    let Some(module) = index.modules.get(name) else {
        return;
    };
    for dep in &module.info.depends {
        if index.modules.contains_key(dep) && seen.insert(dep.clone()) {
            load_order(index, dep, seen, out);
            if let Some(m) = index.modules.get(dep) {
                out.push(m);
            }
        }
    }
}

/// Writes the files for `selected` (canonical names that must all be in `index`).
pub fn generate(index: &ModuleIndex, selected: &BTreeSet<String>) -> DepmodFiles {
    let mut modules: Vec<&Module> = selected
        .iter()
        .filter_map(|name| index.modules.get(name))
        .collect();
    modules.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));

    let mut dep = String::new();
    let mut alias = String::from("# Aliases extracted from modules themselves.\n");
    let mut softdep = String::from("# Soft dependencies extracted from modules themselves.\n");
    for module in modules {
        let mut seen = BTreeSet::from([module.name.clone()]);
        let mut order = Vec::new();
        load_order(index, &module.name, &mut seen, &mut order);
        dep.push_str(&module.rel_path);
        dep.push(':');
        for d in order.iter().rev() {
            dep.push(' ');
            dep.push_str(&d.rel_path);
        }
        dep.push('\n');
        for a in &module.info.aliases {
            alias.push_str(&format!("alias {a} {}\n", module.name));
        }
        for s in &module.info.softdeps {
            softdep.push_str(&format!("softdep {} {s}\n", module.name));
        }
    }
    DepmodFiles {
        dep,
        alias,
        softdep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modinfo::ModInfo;

    fn module(path: &str, depends: &[&str], softdeps: &[&str], aliases: &[&str]) -> Module {
        let name = path
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".ko")
            .replace('-', "_");
        Module {
            name: name.clone(),
            rel_path: format!("kernel/{path}"),
            info: ModInfo {
                name,
                depends: depends.iter().map(|d| d.replace('-', "_")).collect(),
                softdeps: softdeps.iter().map(|s| s.to_string()).collect(),
                aliases: aliases.iter().map(|s| s.to_string()).collect(),
                firmware: vec![],
            },
        }
    }

    fn nvme_index() -> ModuleIndex {
        ModuleIndex::new(
            vec![
                module(
                    "drivers/nvme/host/nvme.ko",
                    &["nvme-core"],
                    &[],
                    &["pci:v*d*sv*sd*bc01sc08i02*"],
                ),
                module("drivers/nvme/host/nvme-core.ko", &["t10-pi"], &[], &[]),
                module(
                    "block/t10-pi.ko",
                    &["crc-t10dif", "crc64-rocksoft"],
                    &[],
                    &[],
                ),
                module(
                    "lib/crc-t10dif.ko",
                    &["crct10dif_common"],
                    &["pre: crct10dif_generic"],
                    &[],
                ),
                module("crypto/crct10dif_common.ko", &[], &[], &[]),
                module("lib/crc64-rocksoft.ko", &["crc64"], &[], &[]),
                module("lib/crc64.ko", &[], &[], &[]),
                module(
                    "drivers/scsi/sd_mod.ko",
                    &["scsi_mod"],
                    &[],
                    &["scsi:t-0x00*", "scsi:t-0x07*"],
                ),
            ],
            BTreeSet::from(["scsi_mod".to_owned()]),
        )
        .unwrap()
    }

    #[test]
    fn dependencies_load_from_last_to_first() {
        let idx = nvme_index();
        let selected: BTreeSet<String> = idx.modules.keys().cloned().collect();
        let files = generate(&idx, &selected);
        let nvme = files
            .dep
            .lines()
            .find(|l| l.starts_with("kernel/drivers/nvme/host/nvme.ko:"))
            .unwrap();
        let deps: Vec<&str> = nvme.split_once(": ").unwrap().1.split(' ').collect();
        assert_eq!(
            deps,
            [
                "kernel/drivers/nvme/host/nvme-core.ko",
                "kernel/block/t10-pi.ko",
                "kernel/lib/crc64-rocksoft.ko",
                "kernel/lib/crc64.ko",
                "kernel/lib/crc-t10dif.ko",
                "kernel/crypto/crct10dif_common.ko",
            ]
        );
        // Loading from the end, every module's dependencies are already loaded.
        let mut loaded = BTreeSet::new();
        for path in deps.iter().rev() {
            let m = idx.modules.values().find(|m| m.rel_path == *path).unwrap();
            assert!(
                m.info.depends.iter().all(|d| loaded.contains(d)),
                "{path} before its deps"
            );
            loaded.insert(m.name.clone());
        }
        assert!(files.dep.contains("kernel/lib/crc64.ko:\n"));
        assert!(files.dep.contains("kernel/drivers/scsi/sd_mod.ko:\n")); // scsi_mod built in
        assert_eq!(files.dep.lines().count(), 8);
    }

    #[test]
    fn exact_file_formats() {
        let idx = nvme_index();
        let selected = BTreeSet::from([
            "sd_mod".to_owned(),
            "crc_t10dif".to_owned(),
            "crct10dif_common".to_owned(),
        ]);
        let files = generate(&idx, &selected);
        assert_eq!(
            files.dep,
            "kernel/crypto/crct10dif_common.ko:\n\
             kernel/drivers/scsi/sd_mod.ko:\n\
             kernel/lib/crc-t10dif.ko: kernel/crypto/crct10dif_common.ko\n"
        );
        assert_eq!(
            files.alias,
            "# Aliases extracted from modules themselves.\n\
             alias scsi:t-0x00* sd_mod\n\
             alias scsi:t-0x07* sd_mod\n"
        );
        assert_eq!(
            files.softdep,
            "# Soft dependencies extracted from modules themselves.\n\
             softdep crc_t10dif pre: crct10dif_generic\n"
        );
    }
}
