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
//! file), settings texts are applied in source order after the config files (later wins), and
//! the `network_data` of the last source that has one is used.

use std::path::{Path, PathBuf};

use rivet_protocol::network_data::NetworkData;

use crate::settings::SourceText;

/// What one configuration source found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootConfig {
    /// Where it came from, for the console ("config-2 ISO /dev/sr1").
    pub source: String,
    pub network_data: Option<NetworkData>,
    /// Settings in kernel-parameter syntax (`parameters.txt`), lowest priority first.
    pub settings_texts: Vec<SourceText>,
    /// Files to install: absolute target path and contents (`/etc/ironic-python-agent.d/
    /// ironic-tls.conf`, the CA file it names, ...).
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// What the source could not do (a device that did not appear, a file that does not
    /// parse); the agent goes on without it.
    pub problems: Vec<String>,
}

/// Installs every source's files under `root` (`/` in the ramdisk), in source order.
/// Returns one message per file that could not be written.
pub fn install_files(configs: &[BootConfig], root: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    for config in configs {
        for (target, contents) in &config.files {
            let path = root.join(target.strip_prefix("/").unwrap_or(target));
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, contents));
            match written {
                Ok(()) => tracing::info!("installed {} from {}", path.display(), config.source),
                Err(e) => errors.push(format!(
                    "installing {} from {}: {e}",
                    path.display(),
                    config.source
                )),
            }
        }
    }
    errors
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
                .map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec()))
                .collect(),
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
    fn bootconfig_unwritable_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etc"), "a file, not a directory").unwrap();
        let errors = install_files(&[config("iso", None, &[("/etc/a.conf", "x")])], dir.path());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("installing "), "{errors:?}");
        assert!(errors[0].contains("from iso"), "{errors:?}");
    }
}
