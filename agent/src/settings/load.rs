//! Merging the sources into one [`Settings`], in increasing priority: defaults < kernel
//! command line < config files (in order) < `parameters.txt` < explicit overrides (`--set`).
//! A kernel parameter marked `kernel_beats_config` (`ipa-debug`) beats config files, as in
//! IPA.
//!
//! Loading never fails: a bad value becomes a [`SettingWarning`] and the key keeps its
//! previous value, so the agent still boots; unknown keys are counted and debug-logged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::registry::{self, KeyDef};
use super::sources;
use super::Settings;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built into rivet.
    Default,
    /// The kernel command line, read from this file (normally `/proc/cmdline`).
    KernelCmdline(PathBuf),
    /// An oslo-style config file.
    ConfigFile(PathBuf),
    /// Ironic's virtual-media `parameters.txt`.
    ParametersFile(PathBuf),
    /// `--set KEY=VALUE`.
    Override,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::KernelCmdline(path) => write!(f, "kernel command line ({})", path.display()),
            Source::ConfigFile(path) => write!(f, "config file {}", path.display()),
            Source::ParametersFile(path) => write!(f, "parameters file {}", path.display()),
            Source::Override => f.write_str("--set"),
        }
    }
}

/// A place in a source: the source and, for config files, the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub source: Source,
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}", self.source),
            None => write!(f, "{}", self.source),
        }
    }
}

/// Something in a source rivet could not use. The agent still starts; these are logged as
/// warnings and listed by `show-config`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingWarning {
    /// A value that does not parse; the key keeps its previous value.
    #[error("{at}: {key}={value:?}: {problem}; keeping {kept}")]
    BadValue {
        at: Location,
        key: String,
        /// The value as given (`***` for secrets).
        value: String,
        /// What was expected instead.
        problem: String,
        /// The value kept, as `show-config` prints it.
        kept: String,
    },
    /// A config-file line that is not an assignment, section or comment.
    #[error("{at}: {problem}; line ignored")]
    BadLine { at: Location, problem: String },
    /// `--set` of a name no setting has.
    #[error("--set {key}: no such setting (use a kernel parameter name like ipa-api-url, or a config-file name for settings without one)")]
    UnknownOverride { key: String },
    /// A source rivet looks for by default exists but cannot be read; it is skipped.
    #[error("{problem}; skipped")]
    Unreadable { problem: String },
    /// A setting asks for something rivet does not do.
    #[error("{at}: {key} is true, but mDNS discovery is not supported by rivet; set ipa-api-url instead")]
    MdnsUnsupported { at: Location, key: String },
}

/// A key no setting has (or a section no setting lives in): ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub at: Location,
    /// The key (`ipa-foo`, `[DEFAULT] foo`) or section (`[metrics]`).
    pub what: String,
}

/// The text of one source, with the path it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
}

/// Everything to merge, already read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The kernel command line.
    pub cmdline: Option<SourceText>,
    /// Config files, lowest priority first.
    pub config_files: Vec<SourceText>,
    /// Ironic's `parameters.txt` (and texts in its syntax from other boot-medium sources),
    /// lowest priority first.
    pub parameters: Vec<SourceText>,
    /// `--set` overrides in order: kernel parameter names, or config-file names.
    pub overrides: Vec<(String, String)>,
}

/// The merged settings and how they came about.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<SettingWarning>,
    /// Which source set each key last, by `Settings` field name; absent = default.
    pub origins: BTreeMap<&'static str, Source>,
    /// Keys and sections no setting has.
    pub ignored: Vec<Ignored>,
}

impl Loaded {
    /// Where the value of `Settings::<field>` came from.
    pub fn origin(&self, field: &str) -> &Source {
        self.origins.get(field).unwrap_or(&Source::Default)
    }
}

/// Merges `inputs` over the defaults.
pub fn load(inputs: &Inputs) -> Loaded {
    let mut loader = Loader {
        loaded: Loaded {
            settings: Settings::default(),
            warnings: Vec::new(),
            origins: BTreeMap::new(),
            ignored: Vec::new(),
        },
    };
    let mut late = Vec::new();
    if let Some(cmdline) = &inputs.cmdline {
        let source = Source::KernelCmdline(cmdline.path.clone());
        late = loader.kernel_params(&source, &cmdline.text, true);
    }
    for file in &inputs.config_files {
        loader.config_file(&Source::ConfigFile(file.path.clone()), &file.text);
    }
    if let Some(cmdline) = &inputs.cmdline {
        let source = Source::KernelCmdline(cmdline.path.clone());
        for (key, value) in late {
            loader.set(key, key.name(), &value, &source, None);
        }
    }
    for parameters in &inputs.parameters {
        let source = Source::ParametersFile(parameters.path.clone());
        loader.kernel_params(&source, &parameters.text, false);
    }
    for (name, value) in &inputs.overrides {
        match registry::by_override_name(name) {
            Some(key) => loader.set(key, name, value, &Source::Override, None),
            None => loader
                .loaded
                .warnings
                .push(SettingWarning::UnknownOverride { key: name.clone() }),
        }
    }
    loader.check_mdns();
    loader.loaded
}

struct Loader {
    loaded: Loaded,
}

impl Loader {
    /// Applies `key=value` pairs; with `defer_late`, returns the `kernel_beats_config` ones
    /// instead of applying them.
    fn kernel_params(
        &mut self,
        source: &Source,
        text: &str,
        defer_late: bool,
    ) -> Vec<(&'static KeyDef, String)> {
        let mut late = Vec::new();
        for (name, value) in sources::kernel_params(text) {
            if !registry::is_agent_param(name) {
                continue;
            }
            match registry::by_param(name) {
                Some(key) if defer_late && key.kernel_beats_config => {
                    late.push((key, value.to_string()));
                }
                Some(key) => self.set(key, name, value, source, None),
                None => self.ignore(source, None, name.to_string()),
            }
        }
        late
    }

    fn config_file(&mut self, source: &Source, text: &str) {
        let ini = sources::ini(text);
        for error in ini.errors {
            self.loaded.warnings.push(SettingWarning::BadLine {
                at: Location {
                    source: source.clone(),
                    line: Some(error.line),
                },
                problem: error.problem,
            });
        }
        let mut ignored_sections: Vec<String> = Vec::new();
        for entry in ini.entries {
            if !registry::knows_section(&entry.section) {
                if !ignored_sections.contains(&entry.section) {
                    ignored_sections.push(entry.section.clone());
                    self.ignore(source, Some(entry.line), format!("[{}]", entry.section));
                }
                continue;
            }
            match registry::by_option(&entry.section, &entry.key) {
                Some(key) => {
                    let at = Some(entry.line);
                    self.set(key, &entry.key, &entry.value, source, at);
                }
                None => self.ignore(
                    source,
                    Some(entry.line),
                    format!("[{}] {}", entry.section, entry.key),
                ),
            }
        }
    }

    /// Sets `key` from `value`, as named `name` in `source`; a bad value is a warning and
    /// the key keeps its value.
    fn set(
        &mut self,
        key: &'static KeyDef,
        name: &str,
        value: &str,
        source: &Source,
        line: Option<usize>,
    ) {
        let settings = &mut self.loaded.settings;
        match (key.access.set)(settings, value) {
            Ok(()) => {
                self.loaded.origins.insert(key.field(), source.clone());
            }
            Err(problem) => {
                let kept = match (key.access.get)(settings) {
                    shown if shown.is_empty() => "it unset".to_string(),
                    shown => format!("{shown:?}"),
                };
                self.loaded.warnings.push(SettingWarning::BadValue {
                    at: Location {
                        source: source.clone(),
                        line,
                    },
                    key: name.to_string(),
                    value: if key.is_secret() {
                        "***".into()
                    } else {
                        value.to_string()
                    },
                    problem,
                    kept,
                });
            }
        }
    }

    fn ignore(&mut self, source: &Source, line: Option<usize>, what: String) {
        let at = Location {
            source: source.clone(),
            line,
        };
        tracing::debug!(%at, %what, "ignoring unknown setting");
        self.loaded.ignored.push(Ignored { at, what });
    }

    fn check_mdns(&mut self) {
        if !self.loaded.settings.use_mdns {
            return;
        }
        if let Some(key) = registry::by_field("use_mdns") {
            self.loaded.warnings.push(SettingWarning::MdnsUnsupported {
                at: Location {
                    source: self.loaded.origin(key.field()).clone(),
                    line: None,
                },
                key: key.name().to_string(),
            });
        }
    }
}
