//! `docs/configuration.md`, generated from the registry. A test fails when the committed file
//! differs; `RIVET_REGENERATE_DOCS=1 cargo test -p rivet-agent settings` rewrites it.

use super::registry::{self, KeyDef};

const INTRO: &str = "\
# rivet-agent configuration

<!-- Generated from agent/src/settings/keys.rs. Do not edit: run
     `RIVET_REGENERATE_DOCS=1 cargo test -p rivet-agent settings` to rewrite it. -->

rivet-agent reads the settings IPA reads, under the same names, so an Ironic deployment
configures it without changes. `rivet-agent show-config` prints the merged result, where each
value came from, and any problems.

## Sources

From lowest to highest priority; a later source overrides an earlier one key by key:

1. Built-in defaults (below).
2. The kernel command line (`--cmdline FILE`; by default `/proc/cmdline` when the agent is
   PID 1). Tokens are split on whitespace and at their first `=`; tokens without `=` are
   skipped; there is no quoting; a later duplicate wins. Only `ipa-*`, `rivet-*`, `BOOTIF`,
   `boot_method` and `ir_pub_id` are read.
3. oslo-style config files: each `--config-file FILE` in order, then the `*.conf` files of
   each `--config-dir DIR` in lexical order (default: `/etc/ironic-python-agent.d` when it
   exists). Keys are read from the section shown below (mostly `[DEFAULT]`); `-` and `_` in
   key names are the same; comments are lines starting with `#` or `;`, there are no inline
   comments; an indented line continues the previous value. Exception, as in IPA: `ipa-debug`
   on the kernel command line beats `debug` in config files.
4. Ironic's virtual-media `parameters.txt` (`--parameters-file FILE`): whitespace-separated
   `key=value` pairs with kernel parameter names. In the ramdisk, then the `settings` of the
   bundle in rivet's config area on the boot medium, same syntax (docs/config-area.md).
5. `--set KEY=VALUE` (repeatable): a kernel parameter name, or the config-file name of a
   setting that has no kernel parameter (`--set cafile=/etc/ca.pem`).

A value that does not parse is reported as a warning naming the source, key, value and what
was expected, and the key keeps its previous value: the agent still starts. Unknown keys are
ignored (logged at debug level, counted by `show-config`).

## Value syntax

- boolean: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`, in any case.
- seconds: a whole or fractional number of seconds (`30`, `2.5`).
- comma-separated lists: blanks around items and empty items are dropped.
- URLs: comma-separated `http://` or `https://` URLs, tried in order. `mdns` is rejected:
  rivet does not implement mDNS discovery.
- An empty value unsets an optional setting.

## Settings

| Kernel parameter | Config file | Type | Default | Description |
|---|---|---|---|---|
";

/// The text of `docs/configuration.md`.
pub fn configuration_markdown() -> String {
    let mut out = String::from(INTRO);
    for key in registry::all() {
        row(&mut out, key);
    }
    out
}

fn row(out: &mut String, key: &KeyDef) {
    let param = key.param.map_or_else(|| "—".to_string(), code);
    let options = match key.options {
        [] => "—".to_string(),
        [first, others @ ..] => {
            let mut text = code(&first.to_string());
            if !others.is_empty() {
                let others: Vec<String> = others.iter().map(|o| code(&o.to_string())).collect();
                text.push_str(&format!(" (also {})", others.join(", ")));
            }
            text
        }
    };
    let default = match key.default_text() {
        text if text.is_empty() => "unset".to_string(),
        text => code(&text),
    };
    let example = if key.is_secret() {
        String::new()
    } else {
        format!(" Example: {}.", code(key.example))
    };
    out.push_str(&format!(
        "| {param} | {options} | {} | {default} | {}{example} |\n",
        cell(&(key.access.describe)()),
        cell(key.doc),
    ));
}

fn code(text: &str) -> String {
    format!("`{}`", cell(text))
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn committed_path() -> PathBuf {
        let agent = Path::new(env!("CARGO_MANIFEST_DIR"));
        agent
            .parent()
            .unwrap_or(agent)
            .join("docs/configuration.md")
    }

    #[test]
    fn settings_docs_match_the_registry() {
        let generated = configuration_markdown();
        let path = committed_path();
        if std::env::var_os("RIVET_REGENERATE_DOCS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &generated)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date with agent/src/settings/keys.rs; regenerate it with \
             `RIVET_REGENERATE_DOCS=1 cargo test -p rivet-agent settings` and commit it",
            path.display()
        );
    }

    #[test]
    fn settings_docs_list_every_key_without_secrets() {
        let text = configuration_markdown();
        let rows = text.lines().skip_while(|l| !l.starts_with("|---"));
        assert_eq!(rows.skip(1).count(), registry::all().len());
        for key in registry::all() {
            if key.is_secret() {
                assert!(!text.contains(key.example), "{} example leaked", key.name());
            }
        }
        assert!(text.contains("| `ipa-api-url` | `[DEFAULT] api_url` |"));
        assert!(text.contains("(also `[ssl] cert_file`)"));
    }
}
