//! Editing a kernel command line: `--kernel-args`, `--delete-karg`, `--set-karg`,
//! `--console`, `--append-karg`, applied in that order.

use anyhow::{bail, Result};
use rivet_protocol::config_area::kargs;

/// The kernel-argument options of `customize`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KargsEdit {
    pub replace: Option<String>,
    pub delete: Vec<String>,
    pub set: Vec<String>,
    pub consoles: Vec<String>,
    pub append: Vec<String>,
}

impl KargsEdit {
    /// Whether it changes anything.
    pub fn is_empty(&self) -> bool {
        self == &KargsEdit::default()
    }

    /// `current` edited.
    pub fn apply(&self, current: &str) -> Result<String> {
        let source = self.replace.as_deref().unwrap_or(current);
        let mut args: Vec<String> = source.split_whitespace().map(str::to_owned).collect();
        for arg in &self.delete {
            let before = args.len();
            args.retain(|a| !matches(a, arg));
            if args.len() == before {
                bail!(
                    "--delete-karg {arg}: not in the kernel arguments {:?}",
                    args.join(" ")
                );
            }
        }
        for arg in &self.set {
            let Some((key, _)) = arg.split_once('=') else {
                bail!("--set-karg {arg}: not KEY=VALUE");
            };
            args.retain(|a| !matches(a, key));
            args.push(arg.clone());
        }
        if !self.consoles.is_empty() {
            args.retain(|a| !matches(a, "console"));
            args.extend(self.consoles.iter().map(|c| format!("console={c}")));
        }
        args.extend(self.append.iter().cloned());
        let line = args.join(" ");
        kargs::check(&line).map_err(|e| anyhow::anyhow!("{e}"))?;
        if line.split_whitespace().count() != args.len() {
            bail!("a kernel argument holds whitespace: give one argument per option");
        }
        Ok(line)
    }
}

/// Whether argument `arg` is `pattern`: equal, or `pattern=...` when it has no `=`.
fn matches(arg: &str, pattern: &str) -> bool {
    if pattern.contains('=') {
        arg == pattern
    } else {
        arg == pattern || arg.split_once('=').is_some_and(|(k, _)| k == pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "console=tty0 console=ttyS0,115200n8 ipa-debug=1";

    #[test]
    fn edits_apply_in_order() {
        let edit = KargsEdit {
            replace: None,
            delete: vec!["ipa-debug".into()],
            set: vec!["ipa-api-url=https://10.0.0.1:6385".into()],
            consoles: vec!["ttyS1,9600".into()],
            append: vec!["quiet".into()],
        };
        assert_eq!(
            edit.apply(BASE).unwrap(),
            "ipa-api-url=https://10.0.0.1:6385 console=ttyS1,9600 quiet"
        );
        let set_twice = KargsEdit {
            set: vec!["ipa-debug=0".into(), "ipa-debug=2".into()],
            ..KargsEdit::default()
        };
        assert_eq!(
            set_twice.apply(BASE).unwrap(),
            "console=tty0 console=ttyS0,115200n8 ipa-debug=2"
        );
        let replace = KargsEdit {
            replace: Some("  a=1   b ".into()),
            append: vec!["c=3".into()],
            ..KargsEdit::default()
        };
        assert_eq!(replace.apply(BASE).unwrap(), "a=1 b c=3");
        assert_eq!(KargsEdit::default().apply(BASE).unwrap(), BASE);
    }

    #[test]
    fn delete_matches_exact_values_or_keys() {
        let exact = KargsEdit {
            delete: vec!["console=tty0".into()],
            ..KargsEdit::default()
        };
        assert_eq!(
            exact.apply(BASE).unwrap(),
            "console=ttyS0,115200n8 ipa-debug=1"
        );
        let missing = KargsEdit {
            delete: vec!["ipa-debug=0".into()],
            ..KargsEdit::default()
        };
        let err = missing.apply(BASE).unwrap_err().to_string();
        assert!(err.contains("--delete-karg ipa-debug=0: not in"), "{err}");
    }

    #[test]
    fn bad_arguments_are_refused() {
        for edit in [
            KargsEdit {
                set: vec!["novalue".into()],
                ..KargsEdit::default()
            },
            KargsEdit {
                append: vec!["a;reboot".into()],
                ..KargsEdit::default()
            },
            KargsEdit {
                append: vec!["two words".into()],
                ..KargsEdit::default()
            },
        ] {
            assert!(edit.apply(BASE).is_err(), "{edit:?}");
        }
    }
}
