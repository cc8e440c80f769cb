//! Reading procfs and sysfs under a root directory: `/` on a machine, a fixture tree in tests.
//! Every error names the full path.

use std::path::{Path, PathBuf};

use super::InventoryError;

/// Files under `root`; paths given to the methods are relative (`"proc/cpuinfo"`).
#[derive(Debug, Clone)]
pub struct HostFs {
    root: PathBuf,
}

impl HostFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostFs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The whole file.
    pub fn read(&self, relative: &str) -> Result<String, InventoryError> {
        let path = self.path(relative);
        std::fs::read_to_string(&path).map_err(|source| InventoryError::Read { path, source })
    }

    /// The file, trimmed; `None` when it cannot be read (absent attributes are normal in
    /// sysfs: a NIC without link has no readable `speed`).
    pub fn attribute(&self, relative: &str) -> Option<String> {
        std::fs::read_to_string(self.path(relative))
            .ok()
            .map(|text| text.trim().to_string())
    }

    pub fn exists(&self, relative: &str) -> bool {
        self.path(relative).exists()
    }

    pub fn is_dir(&self, relative: &str) -> bool {
        self.path(relative).is_dir()
    }

    /// The last component of the target of the link at `relative` (`device/driver` ->
    /// `e1000e`); `None` when it is not a link.
    pub fn link_name(&self, relative: &str) -> Option<String> {
        let target = std::fs::read_link(self.path(relative)).ok()?;
        target
            .file_name()
            .and_then(|name| name.to_str())
            .map(str::to_string)
    }

    /// The path with every link resolved, as components relative to the root
    /// (`sys/devices/pci0000:00/0000:00:03.0/virtio0`); `None` when it does not resolve
    /// inside the root.
    pub fn resolve(&self, relative: &str) -> Option<Vec<String>> {
        let root = self.root.canonicalize().ok()?;
        let full = self.path(relative).canonicalize().ok()?;
        let inside = full.strip_prefix(&root).ok()?;
        Some(
            inside
                .components()
                .filter_map(|c| c.as_os_str().to_str().map(str::to_string))
                .collect(),
        )
    }

    /// Entry names of a directory, sorted.
    pub fn list(&self, relative: &str) -> Result<Vec<String>, InventoryError> {
        let path = self.path(relative);
        let list_err = |source| InventoryError::List {
            path: path.clone(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&path).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Entries of `relative` named `<prefix><number>`, as (number, name), by number.
    pub fn numbered(&self, relative: &str, prefix: &str) -> Vec<(u32, String)> {
        let mut entries: Vec<(u32, String)> = self
            .list(relative)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|name| {
                let number = name.strip_prefix(prefix)?.parse().ok()?;
                Some((number, name))
            })
            .collect();
        entries.sort();
        entries
    }
}

/// Parses a kernel CPU/node list (`0-3,8,10-11`) into the numbers it names.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (u32, u32) = (first.parse().ok()?, last.parse().ok()?);
                if last < first {
                    return None;
                }
                out.extend(first..=last);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
    }
}
