//! Configuration that comes with the boot medium rather than the kernel command line: what a
//! source found ([`BootConfig`]) and applying several of them in priority order.
//!
//! Sources, lowest priority first (design: defaults < kernel command line < Ironic
//! virtual-media files < rivet's embedded config area):
//! 1. Ironic's virtual media ([`crate::vmedia`]): the `config-2` ISO and the `ir-vfd-dev`
//!    floppy;
//! 2. rivet's embedded config area (a later source returns a `BootConfig` too).
//!
//! Merging: files are installed in source order (a later source overwrites an earlier one's
//! file), each source's files all or none of them; settings texts are applied in source order
//! after the config files (later wins), and the `network_data` of the last source that has
//! one is used.

use std::path::{Path, PathBuf};

use rivet_protocol::network_data::NetworkData;
use rivet_protocol::plan::Plan;

use crate::settings::SourceText;

/// What one configuration source found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootConfig {
    /// Where it came from, for the console ("config-2 ISO /dev/sr1").
    pub source: String,
    pub network_data: Option<NetworkData>,
    /// Settings in kernel-parameter syntax (`parameters.txt`), lowest priority first.
    pub settings_texts: Vec<SourceText>,
    /// Files to install (`/etc/ironic-python-agent.d/ironic-tls.conf`, the CA file it
    /// names, ...).
    pub files: Vec<ConfigFile>,
    /// A deploy plan to run offline (rivet's config area only; docs/plan.md).
    pub plan: Option<Plan>,
    /// What the source could not do (a device that did not appear, a file that does not
    /// parse); the agent goes on without it.
    pub problems: Vec<String>,
}

/// A file a source installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Absolute target path.
    pub path: PathBuf,
    /// Permission bits.
    pub mode: u32,
    pub contents: Vec<u8>,
}

impl ConfigFile {
    /// A file with mode 0644.
    pub fn new(path: PathBuf, contents: Vec<u8>) -> Self {
        ConfigFile {
            path,
            mode: 0o644,
            contents,
        }
    }
}

/// Installs every source's files under `root` (`/` in the ramdisk), in source order. A
/// source's files are all written to temporary files next to their targets first and
/// renamed into place only when every one was written, so a source is installed whole or
/// not at all. Returns one message per source that could not be installed.
pub fn install_files(configs: &[BootConfig], root: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    for config in configs.iter().filter(|c| !c.files.is_empty()) {
        match install_all(&config.files, root) {
            Ok(paths) => {
                for path in paths {
                    tracing::info!("installed {} from {}", path.display(), config.source);
                }
            }
            Err(e) => errors.push(format!(
                "installing the files from {}: {e}; none of them was installed",
                config.source
            )),
        }
    }
    errors
}

fn install_all(files: &[ConfigFile], root: &Path) -> Result<Vec<PathBuf>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut stage = |file: &ConfigFile| -> Result<(), String> {
        let target = root.join(file.path.strip_prefix("/").unwrap_or(&file.path));
        let name = target
            .file_name()
            .ok_or_else(|| format!("{} names no file", file.path.display()))?;
        let temp = target.with_file_name(format!(".{}.rivet-new", name.to_string_lossy()));
        let parent = target.parent().unwrap_or(root);
        staged.push((temp.clone(), target.clone()));
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::write(&temp, &file.contents))
            .map_err(|e| format!("writing {}: {e}", temp.display()))?;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(file.mode))
            .map_err(|e| format!("setting the mode of {}: {e}", temp.display()))
    };
    let staging = files.iter().try_for_each(&mut stage);
    let mut installed = Vec::new();
    let mut result = staging.map(|()| Vec::new());
    for (temp, target) in &staged {
        if result.is_ok() {
            match std::fs::rename(temp, target) {
                Ok(()) => installed.push(target.clone()),
                Err(e) => {
                    result = Err(format!(
                        "renaming {} to {}: {e} (after {} of {} files)",
                        temp.display(),
                        target.display(),
                        installed.len(),
                        files.len()
                    ))
                }
            }
        } else {
            let _ = std::fs::remove_file(temp);
        }
    }
    result.map(|_: Vec<PathBuf>| installed)
}

/// Every source's settings texts, lowest priority first.
pub fn settings_texts(configs: &[BootConfig]) -> Vec<SourceText> {
    configs
        .iter()
        .flat_map(|c| c.settings_texts.iter().cloned())
        .collect()
}

/// The network_data of the highest-priority source that has one, with its source.
pub fn network_data(configs: &[BootConfig]) -> Option<(&NetworkData, &str)> {
    configs
        .iter()
        .rev()
        .find_map(|c| Some((c.network_data.as_ref()?, c.source.as_str())))
}

/// The deploy plan of the last source that has one, with that source.
pub fn plan(configs: &[BootConfig]) -> Option<(&Plan, &str)> {
    configs
        .iter()
        .rev()
        .find_map(|c| Some((c.plan.as_ref()?, c.source.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(source: &str, json: Option<&str>, files: &[(&str, &str)]) -> BootConfig {
        BootConfig {
            source: source.into(),
            network_data: json.map(|j| NetworkData::from_json(j).unwrap()),
            settings_texts: vec![SourceText {
                path: PathBuf::from(format!("/{source}/parameters.txt")),
                text: format!("ipa-debug={source}"),
            }],
            files: files
                .iter()
                .map(|(p, c)| ConfigFile::new(PathBuf::from(p), c.as_bytes().to_vec()))
                .collect(),
            plan: None,
            problems: Vec::new(),
        }
    }

    #[test]
    fn bootconfig_later_sources_win() {
        let dir = tempfile::tempdir().unwrap();
        let configs = [
            config(
                "iso",
                Some(r#"{"links": []}"#),
                &[("/etc/a.conf", "iso"), ("/etc/x/b.conf", "iso")],
            ),
            config("area", None, &[("/etc/a.conf", "area")]),
        ];
        assert!(install_files(&configs, dir.path()).is_empty());
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("etc/a.conf"), "area");
        assert_eq!(read("etc/x/b.conf"), "iso");
        let texts: Vec<String> = settings_texts(&configs)
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(texts, ["ipa-debug=iso", "ipa-debug=area"]);
        assert_eq!(network_data(&configs).map(|(_, s)| s), Some("iso"));
        assert_eq!(network_data(&configs[1..]), None);
    }

    #[test]
    fn bootconfig_unwritable_files_are_reported_and_nothing_of_that_source_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etc"), "a file, not a directory").unwrap();
        let configs = [
            config("iso", None, &[("/opt/a.conf", "x"), ("/etc/b.conf", "y")]),
            config("area", None, &[("/opt/c.conf", "z")]),
        ];
        let errors = install_files(&configs, dir.path());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("installing the files from iso: writing "),
            "{errors:?}"
        );
        assert!(
            errors[0].ends_with("none of them was installed"),
            "{errors:?}"
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join("opt"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["c.conf"], "a.conf or its temporary file was left");
    }

    #[test]
    fn bootconfig_files_get_their_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut area = config("area", None, &[]);
        area.files = vec![ConfigFile {
            path: PathBuf::from("/usr/local/bin/hook"),
            mode: 0o750,
            contents: b"#!/bin/sh\n".to_vec(),
        }];
        assert!(install_files(&[area], dir.path()).is_empty());
        let meta = std::fs::metadata(dir.path().join("usr/local/bin/hook")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
    }
}
