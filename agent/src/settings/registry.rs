//! The registry: one entry per setting, naming it on the kernel command line and in config
//! files, with its value type, documentation and access to its `Settings` field. The table
//! itself is in [`super::keys`].

use super::Settings;

/// A key in an oslo-style config file: `[section] name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfigName {
    pub section: &'static str,
    pub name: &'static str,
}

/// The section IPA's own options live in.
pub const DEFAULT_SECTION: &str = "DEFAULT";

impl ConfigName {
    /// `[DEFAULT] name`.
    pub const fn default(name: &'static str) -> Self {
        ConfigName {
            section: DEFAULT_SECTION,
            name,
        }
    }

    /// `[section] name`.
    pub const fn in_section(section: &'static str, name: &'static str) -> Self {
        ConfigName { section, name }
    }
}

impl std::fmt::Display for ConfigName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.section, self.name)
    }
}

/// How the registry reads and writes one `Settings` field; built by [`access!`].
#[derive(Clone, Copy)]
pub struct Access {
    /// The field's name in `Settings`.
    pub field: &'static str,
    /// The value type's description, for the docs.
    pub describe: fn() -> String,
    /// Parses a raw value into the field; on error the field is unchanged.
    pub set: fn(&mut Settings, &str) -> Result<(), String>,
    /// Shows the field (secrets masked); empty when unset.
    pub get: fn(&Settings) -> String,
    /// Whether the value is secret: masked wherever it is shown.
    pub secret: bool,
}

/// `access!(field, ValueType)`: reads and writes `Settings::field` through the value type.
/// The compiler checks that the type's output is the field's type.
macro_rules! access {
    ($field:ident, $ty:ty) => {
        $crate::settings::registry::Access {
            field: stringify!($field),
            describe: <$ty as $crate::settings::value::ValueType>::describe,
            set: |settings: &mut $crate::settings::Settings, text: &str| {
                settings.$field = <$ty as $crate::settings::value::ValueType>::parse(text)?;
                Ok(())
            },
            get: |settings: &$crate::settings::Settings| {
                <$ty as $crate::settings::value::ValueType>::show(&settings.$field)
            },
            secret: <$ty as $crate::settings::value::ValueType>::SECRET,
        }
    };
}
pub(crate) use access;

/// One setting.
pub struct KeyDef {
    /// Name on the kernel command line and in `parameters.txt` (`ipa-api-url`), if any.
    pub param: Option<&'static str>,
    /// Config-file names: the first is the documented one, the others are older spellings
    /// IPA still reads. Empty when config files cannot set it.
    pub options: &'static [ConfigName],
    /// A value from the kernel command line beats config files (IPA does this for
    /// `ipa-debug` only).
    pub kernel_beats_config: bool,
    /// One-line documentation.
    pub doc: &'static str,
    /// A valid value different from the default (docs and tests).
    pub example: &'static str,
    /// The field it sets.
    pub access: Access,
}

impl KeyDef {
    /// The name shown to people: the kernel parameter, else the config-file key.
    pub fn name(&self) -> &'static str {
        match (self.param, self.options.first()) {
            (Some(param), _) => param,
            (None, Some(option)) => option.name,
            (None, None) => self.access.field,
        }
    }

    /// The `Settings` field name.
    pub fn field(&self) -> &'static str {
        self.access.field
    }

    /// The built-in default, shown like a source would write it (empty when unset).
    pub fn default_text(&self) -> String {
        (self.access.get)(&Settings::default())
    }

    /// Whether the value is secret (never shown).
    pub fn is_secret(&self) -> bool {
        self.access.secret
    }
}

impl std::fmt::Debug for KeyDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDef")
            .field("field", &self.access.field)
            .field("param", &self.param)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Every setting, in documentation order.
pub fn all() -> &'static [KeyDef] {
    super::keys::KEYS
}

/// The key named `name` on the kernel command line / in `parameters.txt`.
pub fn by_param(name: &str) -> Option<&'static KeyDef> {
    all().iter().find(|key| key.param == Some(name))
}

/// The key named `name` in `[section]` of a config file. Like oslo, `-` and `_` in the name
/// are the same.
pub fn by_option(section: &str, name: &str) -> Option<&'static KeyDef> {
    let name = name.replace('-', "_");
    all().iter().find(|key| {
        key.options
            .iter()
            .any(|option| option.section == section && option.name == name)
    })
}

/// Whether any key lives in `[section]`.
pub fn knows_section(section: &str) -> bool {
    all()
        .iter()
        .any(|key| key.options.iter().any(|option| option.section == section))
}

/// The key for `--set NAME=...`: a kernel parameter name, or a `[DEFAULT]` config-file name
/// for settings that have no kernel parameter.
pub fn by_override_name(name: &str) -> Option<&'static KeyDef> {
    by_param(name).or_else(|| by_option(DEFAULT_SECTION, name))
}

/// The key that sets `Settings::<field>`.
pub fn by_field(field: &str) -> Option<&'static KeyDef> {
    all().iter().find(|key| key.access.field == field)
}

/// Whether a kernel command line token `name=...` is meant for the agent: IPA's `ipa-*`,
/// rivet's `rivet-*`, and the few bare names IPA reads. Other tokens (`console=...`) belong to
/// the kernel or other programs and are not "unknown settings".
pub fn is_agent_param(name: &str) -> bool {
    name.starts_with("ipa-")
        || name.starts_with("rivet-")
        || matches!(name, "BOOTIF" | "boot_method" | "ir_pub_id")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn settings_names_are_unique() {
        let mut params = HashSet::new();
        let mut options = HashSet::new();
        let mut fields = HashSet::new();
        for key in all() {
            assert!(fields.insert(key.field()), "field {} twice", key.field());
            if let Some(param) = key.param {
                assert!(params.insert(param), "parameter {param} twice");
                assert!(
                    is_agent_param(param),
                    "{param} would be ignored on the cmdline"
                );
            }
            for option in key.options {
                assert!(options.insert(*option), "option {option} twice");
                assert_eq!(option.name, option.name.replace('-', "_"), "{option}");
            }
            assert!(
                key.param.is_some() || !key.options.is_empty(),
                "{} has no name in any source",
                key.field()
            );
            assert!(
                !key.doc.is_empty() && !key.doc.contains('\n'),
                "{}",
                key.field()
            );
        }
    }

    #[test]
    fn lookups_find_keys_by_every_name() {
        let api = by_param("ipa-api-url").unwrap();
        assert_eq!(api.field(), "api_urls");
        assert_eq!(by_option("DEFAULT", "api_url").unwrap().field(), "api_urls");
        assert_eq!(by_override_name("cafile").unwrap().field(), "cafile");
        assert_eq!(
            by_override_name("ipa-insecure").unwrap().field(),
            "insecure"
        );
        assert_eq!(by_field("run_dir").unwrap().param, Some("rivet-run-dir"));
        assert_eq!(
            by_option("DEFAULT", "guard-special-filesystems")
                .unwrap()
                .field(),
            "guard_special_filesystems"
        );
        assert_eq!(
            by_option("ssl", "cert_file").unwrap().field(),
            "tls_cert_file"
        );
        assert_eq!(by_option("mdns", "use_mdns").unwrap().field(), "use_mdns");
        assert!(by_option("mdns", "api_url").is_none());
        assert!(by_param("api_url").is_none());
        assert!(knows_section("ssl") && !knows_section("metrics"));
    }

    #[test]
    fn agent_params_are_recognised() {
        for name in [
            "ipa-api-url",
            "rivet-run-dir",
            "BOOTIF",
            "boot_method",
            "ir_pub_id",
        ] {
            assert!(is_agent_param(name), "{name}");
        }
        for name in ["console", "bootif", "ipa", "root", "nofb"] {
            assert!(!is_agent_param(name), "{name}");
        }
    }

    #[test]
    fn every_example_parses_and_changes_its_field() {
        for key in all() {
            let mut settings = Settings::default();
            let result = (key.access.set)(&mut settings, key.example);
            assert_eq!(result, Ok(()), "{}={}", key.name(), key.example);
            assert_ne!(
                (key.access.get)(&settings),
                key.default_text(),
                "{}: example equals the default",
                key.name()
            );
        }
    }

    #[test]
    fn every_default_parses_back_to_itself() {
        let defaults = Settings::default();
        for key in all() {
            let mut settings = Settings::default();
            (key.access.set)(&mut settings, &key.default_text())
                .unwrap_or_else(|e| panic!("{}: {e}", key.name()));
            assert_eq!(settings, defaults, "{}", key.name());
        }
    }
}
