//! The bundle's payload: a tar archive (GNU format, owner 0:0, mtime 0, so the same inputs
//! give the same bytes) of regular files with these names, in this order:
//!
//! | Entry | What the agent does with it |
//! |---|---|
//! | `settings` | settings in kernel-parameter syntax (`ipa-api-url=...`), one or more per line; the highest-priority settings source |
//! | `network_data.json` | OpenStack network_data.json ([`NetworkData`]), applied as static network configuration |
//! | `ca.pem` | CA bundle, installed as [`CA_PATH`](super::CA_PATH) and used as `cafile` |
//! | `plan.json` | a deploy [`Plan`] (docs/plan.md) the agent runs offline; signed with the bundle |
//! | `files/<path>` | installed as `/<path>` with the entry's permission bits |
//!
//! Any other entry, entry type, or a file path that is not absolute and normal makes the
//! whole payload unusable: the agent applies a bundle completely or not at all.

use std::io::Read;

use super::FormatError;
use crate::network_data::NetworkData;
use crate::plan::Plan;

const SETTINGS: &str = "settings";
const NETWORK_DATA: &str = "network_data.json";
const CA: &str = "ca.pem";
const PLAN: &str = "plan.json";
const FILES_PREFIX: &str = "files/";
const WHAT: &str = "bundle payload";
/// Directories a bundle may not install files into: the kernel's and the agent's own.
const FORBIDDEN_ROOTS: [&str; 4] = ["/proc", "/sys", "/dev", "/etc/rivet"];

/// A file to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Absolute, normal path (no `.`, `..` or empty components).
    pub path: String,
    /// Permission bits (`0o644`).
    pub mode: u32,
    pub data: Vec<u8>,
}

/// The entries of a payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// Kernel-parameter syntax: `key=value` tokens; lines starting with `#` are comments.
    pub settings: Option<String>,
    /// network_data.json, checked to parse as [`NetworkData`].
    pub network_data: Option<String>,
    /// PEM CA certificates.
    pub ca: Option<String>,
    /// A deploy plan (JSON), checked to parse and validate as [`Plan`].
    pub plan: Option<String>,
    pub files: Vec<File>,
}

impl Contents {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.settings.is_none()
            && self.network_data.is_none()
            && self.ca.is_none()
            && self.plan.is_none()
            && self.files.is_empty()
    }

    /// Checks every entry: settings are `key=value` tokens, network_data parses,
    /// the CA holds a PEM certificate, file paths are absolute, normal, unique, outside
    /// [`FORBIDDEN_ROOTS`].
    pub fn validate(&self) -> Result<(), FormatError> {
        if let Some(settings) = &self.settings {
            for (number, line) in settings.lines().enumerate() {
                if line.trim_start().starts_with('#') {
                    continue;
                }
                if let Some(token) = line.split_whitespace().find(|t| !t.contains('=')) {
                    return Err(invalid(format!(
                        "settings line {}: {token:?} is not key=value",
                        number + 1
                    )));
                }
            }
        }
        if let Some(json) = &self.network_data {
            if let Err(e) = NetworkData::from_json(json) {
                return Err(invalid(format!("network_data.json: {e}")));
            }
        }
        if let Some(ca) = &self.ca {
            if !ca.contains("-----BEGIN CERTIFICATE-----") {
                return Err(invalid("ca.pem holds no PEM certificate".into()));
            }
        }
        if let Some(plan) = &self.plan {
            if let Err(e) = Plan::from_json(plan) {
                return Err(invalid(format!("plan.json: {e}")));
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for file in &self.files {
            check_path(&file.path)?;
            if seen.contains(&file.path.as_str()) {
                return Err(invalid(format!("{} is given twice", file.path)));
            }
            seen.push(&file.path);
            if file.mode & !0o7777 != 0 {
                return Err(invalid(format!(
                    "{}: mode {:o} has more than permission bits",
                    file.path, file.mode
                )));
            }
        }
        Ok(())
    }

    /// The tar archive of these entries.
    pub fn to_tar(&self) -> Result<Vec<u8>, FormatError> {
        self.validate()?;
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, mode: u32, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_size(data.len() as u64);
            tar.append_data(&mut header, name, data)
                .map_err(|e| invalid(format!("adding {name}: {e}")))
        };
        if let Some(settings) = &self.settings {
            add(SETTINGS, 0o600, settings.as_bytes())?;
        }
        if let Some(json) = &self.network_data {
            add(NETWORK_DATA, 0o644, json.as_bytes())?;
        }
        if let Some(ca) = &self.ca {
            add(CA, 0o644, ca.as_bytes())?;
        }
        if let Some(plan) = &self.plan {
            add(PLAN, 0o600, plan.as_bytes())?;
        }
        for file in &self.files {
            let name = format!("{FILES_PREFIX}{}", &file.path[1..]);
            add(&name, file.mode, &file.data)?;
        }
        tar.into_inner()
            .map_err(|e| invalid(format!("finishing the archive: {e}")))
    }

    /// Reads a payload back; anything unexpected is an error.
    pub fn from_tar(bytes: &[u8]) -> Result<Contents, FormatError> {
        let mut contents = Contents::default();
        let mut archive = tar::Archive::new(bytes);
        let entries = archive
            .entries()
            .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| invalid(format!("reading an entry: {e}")))?;
            let name = entry
                .path()
                .map_err(|e| invalid(format!("an entry name: {e}")))?
                .to_str()
                .ok_or_else(|| invalid("an entry name is not UTF-8".into()))?
                .to_owned();
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(invalid(format!("{name} is not a regular file")));
            }
            let mode = entry
                .header()
                .mode()
                .map_err(|e| invalid(format!("{name}: mode: {e}")))?;
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| invalid(format!("reading {name}: {e}")))?;
            let text = |data: Vec<u8>| {
                String::from_utf8(data).map_err(|_| invalid(format!("{name} is not UTF-8 text")))
            };
            let slot = match name.as_str() {
                SETTINGS => &mut contents.settings,
                NETWORK_DATA => &mut contents.network_data,
                CA => &mut contents.ca,
                PLAN => &mut contents.plan,
                _ => match name.strip_prefix(FILES_PREFIX) {
                    Some(rest) => {
                        contents.files.push(File {
                            path: format!("/{rest}"),
                            mode: mode & 0o7777,
                            data,
                        });
                        continue;
                    }
                    None => {
                        return Err(invalid(format!(
                            "unknown entry {name:?} (a newer bundle format?)"
                        )))
                    }
                },
            };
            if slot.replace(text(data)?).is_some() {
                return Err(invalid(format!("{name} appears twice")));
            }
        }
        contents.validate()?;
        Ok(contents)
    }
}

/// Checks a destination path: absolute, no `.`/`..`/empty components, no NUL, not below
/// [`FORBIDDEN_ROOTS`].
pub fn check_path(path: &str) -> Result<(), FormatError> {
    let bad = |why: &str| Err(invalid(format!("file destination {path:?} {why}")));
    let Some(rest) = path.strip_prefix('/') else {
        return bad("is not absolute");
    };
    if rest.is_empty() || path.contains('\0') {
        return bad("names no file");
    }
    if rest
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("has an empty, `.` or `..` component");
    }
    if let Some(root) = FORBIDDEN_ROOTS
        .iter()
        .find(|root| path == **root || path.starts_with(&format!("{root}/")))
    {
        return bad(&format!("is below {root}, which a bundle may not write"));
    }
    Ok(())
}

fn invalid(problem: String) -> FormatError {
    FormatError::Invalid {
        what: WHAT,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Contents {
        Contents {
            settings: Some("# comment\nipa-api-url=https://10.0.0.1:6385 ipa-debug=1\n".into()),
            network_data: Some(r#"{"links": [], "networks": [], "services": []}"#.into()),
            ca: Some("-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n".into()),
            plan: Some(include_str!("../../../docs/plans/minimal.json").into()),
            files: vec![
                File {
                    path: "/etc/ironic-python-agent.d/extra.conf".into(),
                    mode: 0o644,
                    data: b"[DEFAULT]\ndebug = true\n".to_vec(),
                },
                File {
                    path: format!("/opt/{}run.sh", "deep/".repeat(30)),
                    mode: 0o755,
                    data: vec![0, 1, 2, 255],
                },
            ],
        }
    }

    #[test]
    fn payload_round_trips_and_is_reproducible() {
        let tar = full().to_tar().unwrap();
        assert_eq!(tar, full().to_tar().unwrap());
        assert_eq!(Contents::from_tar(&tar).unwrap(), full());
        let empty = Contents::default().to_tar().unwrap();
        assert!(Contents::from_tar(&empty).unwrap().is_empty());
    }

    #[test]
    fn bad_entries_are_refused() {
        let cases: Vec<(Contents, &str)> = vec![
            (
                Contents {
                    settings: Some("ipa-debug=1 oops\n".into()),
                    ..Contents::default()
                },
                "\"oops\" is not key=value",
            ),
            (
                Contents {
                    network_data: Some(r#"{"links": "eno1"}"#.into()),
                    ..Contents::default()
                },
                "network_data.json: invalid type",
            ),
            (
                Contents {
                    network_data: Some("{".into()),
                    ..Contents::default()
                },
                "network_data.json: EOF",
            ),
            (
                Contents {
                    ca: Some("hello".into()),
                    ..Contents::default()
                },
                "no PEM certificate",
            ),
            (
                Contents {
                    plan: Some(r#"{"version": 1, "name": "p", "steps": []}"#.into()),
                    ..Contents::default()
                },
                "plan.json: plan: steps is empty",
            ),
        ];
        for (contents, expected) in cases {
            let err = contents.to_tar().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn file_destinations_must_be_absolute_and_normal() {
        for good in ["/etc/x.conf", "/a", "/opt/a/b..c"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("etc/x", "not absolute"),
            ("/", "names no file"),
            ("/etc/../x", "`..`"),
            ("/etc//x", "empty"),
            ("/etc/./x", "`.`"),
            ("/proc/sys/kernel/x", "below /proc"),
            ("/etc/rivet/ca.pem", "below /etc/rivet"),
            ("/dev", "below /dev"),
        ] {
            let err = check_path(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let twice = Contents {
            files: vec![
                File {
                    path: "/a".into(),
                    mode: 0o644,
                    data: vec![],
                },
                File {
                    path: "/a".into(),
                    mode: 0o600,
                    data: vec![],
                },
            ],
            ..Contents::default()
        };
        assert!(twice.to_tar().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn unknown_entries_and_types_are_refused() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(0o644);
        tar.append_data(&mut header, "plan.yaml", &b"plan"[..])
            .unwrap();
        let bytes = tar.into_inner().unwrap();
        let err = Contents::from_tar(&bytes).unwrap_err().to_string();
        assert!(err.contains("unknown entry \"plan.yaml\""), "{err}");

        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        tar.append_link(&mut header, "files/etc/x", "/etc/shadow")
            .unwrap();
        let bytes = tar.into_inner().unwrap();
        let err = Contents::from_tar(&bytes).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");

        // The tar crate refuses to write `..`; write the name bytes directly.
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        let name = b"files/etc/../x";
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        tar.append(&header, &b"x"[..]).unwrap();
        let bytes = tar.into_inner().unwrap();
        let err = Contents::from_tar(&bytes).unwrap_err().to_string();
        assert!(err.contains("`..`"), "{err}");
    }
}
