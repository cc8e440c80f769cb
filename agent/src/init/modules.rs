//! The kernel module index: `modules.dep`, `modules.alias`, `modules.softdep` and
//! `modules.builtin` as written by `depmod`, and the resolution of a device's `modalias` (or a
//! module name) into the ordered list of `.ko` files to load.
//!
//! Module names treat `-` and `_` alike (the kernel does); names are kept normalized to `_`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Errors reading the module index.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    /// A required index file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line of an index file has an unexpected shape.
    #[error("{file} line {line}: {reason}")]
    Parse {
        file: &'static str,
        line: usize,
        reason: String,
    },
}

/// Normalizes a module name: `-` and `_` are the same to the kernel.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a path in `modules.dep` (`kernel/fs/isofs/isofs.ko` -> `isofs`).
fn name_from_path(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = match file.find(".ko") {
        Some(at) => &file[..at],
        None => file,
    };
    normalize(stem)
}

/// One module file and the modules it needs, as listed in `modules.dep`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DepEntry {
    /// Path relative to the module directory.
    path: String,
    /// Direct and indirect dependencies, in depmod's order (load them last to first).
    deps: Vec<String>,
}

/// One `alias PATTERN MODULE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Alias {
    pattern: String,
    /// The part of the pattern before its first wildcard: a cheap pre-filter.
    literal_prefix: String,
    module: String,
}

/// A module to load: its normalized name and its absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadItem {
    pub name: String,
    pub path: PathBuf,
}

/// The parsed module index of one kernel.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    deps: HashMap<String, DepEntry>,
    /// Aliases grouped by their bus prefix (`pci`, `usb`, `acpi*`...: the text before `:`).
    aliases: HashMap<String, Vec<Alias>>,
    /// `softdep X pre: A B` -> X: [A, B].
    softdep_pre: HashMap<String, Vec<String>>,
    builtin: HashSet<String>,
}

impl ModuleIndex {
    /// Reads the index in `dir` (`/lib/modules/$(uname -r)`). `modules.dep` and
    /// `modules.alias` are required; `modules.softdep` and `modules.builtin` are optional.
    pub fn load(dir: &Path) -> Result<Self, ModulesError> {
        let read = |name: &str, required: bool| -> Result<String, ModulesError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                    Ok(String::new())
                }
                Err(source) => Err(ModulesError::Read { path, source }),
            }
        };
        Self::parse(
            dir,
            &read("modules.dep", true)?,
            &read("modules.alias", true)?,
            &read("modules.softdep", false)?,
            &read("modules.builtin", false)?,
        )
    }

    /// Parses the index files' contents; `dir` is where the `.ko` paths are relative to.
    pub fn parse(
        dir: &Path,
        dep: &str,
        alias: &str,
        softdep: &str,
        builtin: &str,
    ) -> Result<Self, ModulesError> {
        let mut index = ModuleIndex {
            dir: dir.to_path_buf(),
            ..ModuleIndex::default()
        };
        for (n, line) in dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, rest) = line.split_once(':').ok_or_else(|| ModulesError::Parse {
                file: "modules.dep",
                line: n + 1,
                reason: format!("no ':' in {line:?}"),
            })?;
            let deps = rest.split_whitespace().map(name_from_path).collect();
            index.deps.insert(
                name_from_path(path),
                DepEntry {
                    path: path.to_string(),
                    deps,
                },
            );
        }
        for (n, line) in alias.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("alias"), Some(pattern), Some(module), None) => {
                    let literal_prefix: String = pattern
                        .chars()
                        .take_while(|c| !matches!(c, '*' | '?' | '['))
                        .collect();
                    let bus = bus_of(pattern).to_string();
                    index.aliases.entry(bus).or_default().push(Alias {
                        pattern: pattern.to_string(),
                        literal_prefix,
                        module: normalize(module),
                    });
                }
                _ => {
                    return Err(ModulesError::Parse {
                        file: "modules.alias",
                        line: n + 1,
                        reason: format!("expected `alias PATTERN MODULE`, got {line:?}"),
                    })
                }
            }
        }
        for line in softdep.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else { continue };
            let mut pre = Vec::new();
            let mut in_pre = false;
            for word in words {
                match word {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    name if in_pre => pre.push(normalize(name)),
                    _ => {}
                }
            }
            index
                .softdep_pre
                .entry(normalize(module))
                .or_default()
                .extend(pre);
        }
        index.builtin = builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(name_from_path)
            .collect();
        Ok(index)
    }

    /// How many modules `modules.dep` lists.
    pub fn module_count(&self) -> usize {
        self.deps.len()
    }

    /// The modules whose aliases match `modalias` (fnmatch-style), sorted and deduplicated.
    pub fn modules_for_alias(&self, modalias: &str) -> Vec<String> {
        let mut found = BTreeSet::new();
        if let Some(candidates) = self.aliases.get(bus_of(modalias)) {
            for alias in candidates {
                if modalias.starts_with(&alias.literal_prefix)
                    && glob_match(&alias.pattern, modalias)
                {
                    found.insert(alias.module.clone());
                }
            }
        }
        found.into_iter().collect()
    }

    /// Resolves a name from the command line or a caller: a module name if `modules.dep` has
    /// it (or it is built in), otherwise an alias (`iso9660` -> `isofs`).
    pub fn resolve_name(&self, name: &str) -> Vec<String> {
        let norm = normalize(name);
        if self.deps.contains_key(&norm) || self.builtin.contains(&norm) {
            return vec![norm];
        }
        let by_alias = self.modules_for_alias(name);
        if by_alias.is_empty() {
            // Unknown: let the load step report it as missing.
            vec![norm]
        } else {
            by_alias
        }
    }

    /// Whether the module is compiled into the kernel (nothing to load).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }

    /// The files to load for `name`, dependencies first: softdep `pre:` modules, then
    /// `modules.dep` dependencies (depmod lists them so that loading last-to-first works; each
    /// one's own dependencies come before it), then the module. Built-in modules are left
    /// out. Unknown modules are returned with their expected path so loading reports them.
    pub fn load_order(&self, name: &str) -> Vec<LoadItem> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        self.visit(&normalize(name), &mut seen, &mut order);
        order
    }

    fn visit(&self, name: &str, seen: &mut HashSet<String>, order: &mut Vec<LoadItem>) {
        if !seen.insert(name.to_string()) || self.builtin.contains(name) {
            return;
        }
        if let Some(pre) = self.softdep_pre.get(name) {
            for dep in pre {
                self.visit(dep, seen, order);
            }
        }
        match self.deps.get(name) {
            Some(entry) => {
                for dep in entry.deps.iter().rev() {
                    self.visit(dep, seen, order);
                }
                order.push(LoadItem {
                    name: name.to_string(),
                    path: self.dir.join(&entry.path),
                });
            }
            None => order.push(LoadItem {
                name: name.to_string(),
                path: self.dir.join(format!("{name}.ko")),
            }),
        }
    }
}

/// The bus part of a modalias or an alias pattern: everything before the first `:`.
fn bus_of(s: &str) -> &str {
    s.split_once(':').map(|(bus, _)| bus).unwrap_or(s)
}

/// fnmatch(3)-style matching without flags: `*` any run, `?` one character, `[...]` a set
/// (ranges `a-z`, negation with `!` or `^`, `]` first is literal). A `[` with no closing `]`
/// matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it covers to).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match match_class(&p[pi..], t[ti]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None if t[ti] == '[' => Some(1),
                None => None,
            },
            Some(&c) if c == t[ti] => Some(1),
            _ => None,
        };
        match step {
            Some(len) => {
                pi += len;
                ti += 1;
            }
            None => match star {
                Some((after, covered)) => {
                    star = Some((after, covered + 1));
                    pi = after;
                    ti = covered + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[0] == '['`. Returns whether it matched and
/// the class's length in the pattern, or None if the class is not closed.
fn match_class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &lo = p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&hi| hi != ']') {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        assert!(glob_match(
            "pci:v00008086d*sv*",
            "pci:v00008086d0000100Esv00001AF4"
        ));
        assert!(!glob_match("pci:v00008086d*", "pci:v00001AF4d00001000"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(glob_match("x*y*z", "xaaybbz"));
        assert!(!glob_match("x*y*z", "xaaybb"));
        assert!(glob_match("**a", "bba"));
    }

    #[test]
    fn glob_classes() {
        assert!(glob_match("bc0[12]", "bc01"));
        assert!(!glob_match("bc0[12]", "bc03"));
        assert!(glob_match("v[0-9A-F]", "vB"));
        assert!(!glob_match("v[!0-9]", "v5"));
        assert!(glob_match("v[^0-9]", "vx"));
        assert!(glob_match("[]]", "]"));
        assert!(glob_match("[a-]", "-"));
        // An unclosed `[` is a literal.
        assert!(glob_match("a[b", "a[b"));
        assert!(!glob_match("a[b", "ab"));
    }

    #[test]
    fn glob_usb_interface_alias() {
        let pattern = "usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*";
        let modalias = "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00";
        assert!(glob_match(pattern, modalias));
        assert!(!glob_match(
            pattern,
            "usb:v46F4p0001d0000dc00dsc00dp00ic03isc01ip01in00"
        ));
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(
            name_from_path("kernel/drivers/nvme/host/nvme-core.ko"),
            "nvme_core"
        );
        assert_eq!(name_from_path("kernel/fs/isofs/isofs.ko.xz"), "isofs");
        assert_eq!(
            name_from_path("kernel/lib/crc64-rocksoft.ko.zst"),
            "crc64_rocksoft"
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        let err = ModuleIndex::parse(Path::new("/m"), "no colon here\n", "", "", "")
            .expect_err("modules.dep without ':' must fail");
        assert!(err.to_string().contains("modules.dep line 1"), "{err}");
        let err = ModuleIndex::parse(Path::new("/m"), "", "alias onlyone\n", "", "")
            .expect_err("short alias line must fail");
        assert!(err.to_string().contains("modules.alias line 1"), "{err}");
    }
}
