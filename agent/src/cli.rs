//! The command line of `rivet-agent`, and loading the settings from the sources it names.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::settings::files::{self, ReadError};
use crate::settings::{self, registry, Inputs, Loaded, SettingWarning, SourceText};

/// IPA-compatible bare-metal deploy agent.
#[derive(Debug, Parser)]
#[command(name = "rivet-agent", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings sources of `run` when no subcommand is given.
    #[command(flatten)]
    pub sources: SourceArgs,
}

impl Cli {
    /// The subcommand to run: `run` when none was given.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Run(self.sources))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the agent (the default).
    Run(SourceArgs),
    /// Print the merged settings, where each came from, and any problems with them.
    ShowConfig(SourceArgs),
    /// Print the network interfaces as the agent sees them.
    Interfaces,
    /// Print this machine's hardware inventory (IPA's `inventory`), as JSON.
    Inventory(InventoryArgs),
}

/// Options of `rivet-agent inventory`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct InventoryArgs {
    /// Print how long each part took to stderr.
    #[arg(long)]
    pub timings: bool,
    /// Do not ask the BMC (IPMI) for its addresses.
    #[arg(long)]
    pub skip_bmc: bool,
}

/// Where settings come from; see docs/configuration.md.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct SourceArgs {
    /// Kernel command line to read `ipa-*` settings from [default: /proc/cmdline when running
    /// as PID 1, none otherwise].
    #[arg(long, value_name = "FILE")]
    pub cmdline: Option<PathBuf>,
    /// Directory of oslo-style `*.conf` files, read in lexical order; repeatable
    /// [default: /etc/ironic-python-agent.d when it exists].
    #[arg(long = "config-dir", value_name = "DIR")]
    pub config_dirs: Vec<PathBuf>,
    /// oslo-style config file, read before the config directories; repeatable.
    #[arg(long = "config-file", value_name = "FILE")]
    pub config_files: Vec<PathBuf>,
    /// Ironic's virtual-media parameters.txt (kernel parameter names).
    #[arg(long = "parameters-file", value_name = "FILE")]
    pub parameters_file: Option<PathBuf>,
    /// Override a setting, e.g. `--set ipa-api-url=http://127.0.0.1:6385`; a kernel parameter
    /// name, or a config-file name for settings without one. Repeatable; beats every file.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_override)]
    pub overrides: Vec<(String, String)>,
}

fn parse_override(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| "expected KEY=VALUE, e.g. ipa-api-url=http://127.0.0.1:6385".to_string())?;
    if registry::by_override_name(key).is_none() {
        return Err(format!(
            "no setting is named `{key}` (see docs/configuration.md or `rivet-agent show-config`)"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// The sources read when the command line names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultSources {
    /// The kernel command line file, if the agent reads one by default.
    pub cmdline: Option<PathBuf>,
    /// The config directory read when no `--config-dir` is given.
    pub config_dir: PathBuf,
}

impl DefaultSources {
    /// `/proc/cmdline` only as PID 1 (on a host it is the host's command line), and
    /// `/etc/ironic-python-agent.d`, where IPA's ramdisk keeps its config.
    pub fn for_this_process() -> Self {
        DefaultSources {
            cmdline: crate::init::running_as_init().then(|| PathBuf::from("/proc/cmdline")),
            config_dir: PathBuf::from("/etc/ironic-python-agent.d"),
        }
    }
}

/// Reads the sources `args` names (or the defaults) and merges them. Fails only when a file
/// or directory given on the command line cannot be read; a default one that is missing is
/// skipped, one that cannot be read is a warning.
pub fn load_settings(args: &SourceArgs) -> anyhow::Result<Loaded> {
    load_settings_with(args, &DefaultSources::for_this_process())
}

/// [`load_settings`] with explicit defaults (tests use temporary files).
pub fn load_settings_with(args: &SourceArgs, defaults: &DefaultSources) -> anyhow::Result<Loaded> {
    load_settings_with_boot(args, defaults, &[])
}

/// [`load_settings_with`] plus `parameters.txt`-style texts found on the boot medium
/// ([`crate::bootconfig`]), which beat the files and lose to `--parameters-file` and `--set`.
pub fn load_settings_with_boot(
    args: &SourceArgs,
    defaults: &DefaultSources,
    boot_parameters: &[SourceText],
) -> anyhow::Result<Loaded> {
    let mut skipped = Vec::new();
    let mut inputs = Inputs {
        overrides: args.overrides.clone(),
        ..Inputs::default()
    };
    inputs.cmdline = match (&args.cmdline, &defaults.cmdline) {
        (Some(path), _) => Some(explicit(path, "kernel command line")?),
        (None, Some(path)) => optional(path, &mut skipped),
        (None, None) => None,
    };
    for path in &args.config_files {
        inputs.config_files.push(explicit(path, "config file")?);
    }
    if args.config_dirs.is_empty() {
        match files::config_dir_files(&defaults.config_dir) {
            Ok(paths) => {
                for path in paths {
                    inputs.config_files.extend(optional(&path, &mut skipped));
                }
            }
            Err(ReadError::Dir { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => skipped.push(error),
        }
    }
    for dir in &args.config_dirs {
        let paths = files::config_dir_files(dir).context("--config-dir")?;
        for path in paths {
            inputs.config_files.push(explicit(&path, "config file")?);
        }
    }
    inputs.parameters.extend(boot_parameters.iter().cloned());
    if let Some(path) = &args.parameters_file {
        inputs.parameters.push(explicit(path, "parameters file")?);
    }
    let mut loaded = settings::load(&inputs);
    let unreadable = skipped.into_iter().map(|error| SettingWarning::Unreadable {
        problem: error.to_string(),
    });
    loaded.warnings.splice(0..0, unreadable);
    Ok(loaded)
}

fn explicit(path: &Path, what: &str) -> anyhow::Result<SourceText> {
    files::read_source(path).with_context(|| format!("loading the {what}"))
}

fn optional(path: &Path, skipped: &mut Vec<ReadError>) -> Option<SourceText> {
    files::read_optional_source(path).unwrap_or_else(|error| {
        skipped.push(error);
        None
    })
}

/// The `show-config` report: every setting with its value (secrets as `***`) and source,
/// then the warnings and the ignored keys.
pub fn show_config(loaded: &Loaded) -> String {
    const MAX_VALUE_WIDTH: usize = 48;
    let rows: Vec<(&str, String, String)> = registry::all()
        .iter()
        .map(|key| {
            let value = match (key.access.get)(&loaded.settings) {
                value if value.is_empty() => "(unset)".to_string(),
                value => value,
            };
            (key.name(), value, loaded.origin(key.field()).to_string())
        })
        .collect();
    let key_width = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|(_, v, _)| v.chars().count())
        .max()
        .unwrap_or(0)
        .min(MAX_VALUE_WIDTH);
    let mut out = format!("{:key_width$}  {:value_width$}  SOURCE\n", "KEY", "VALUE");
    for (key, value, source) in rows {
        out.push_str(&format!(
            "{key:key_width$}  {value:value_width$}  {source}\n"
        ));
    }
    if loaded.warnings.is_empty() {
        out.push_str("\nNo warnings.\n");
    } else {
        out.push_str(&format!("\nWarnings ({}):\n", loaded.warnings.len()));
        for warning in &loaded.warnings {
            out.push_str(&format!("  {warning}\n"));
        }
    }
    if !loaded.ignored.is_empty() {
        out.push_str(&format!(
            "\nIgnored unknown keys ({}):\n",
            loaded.ignored.len()
        ));
        for ignored in &loaded.ignored {
            out.push_str(&format!("  {}: {}\n", ignored.at, ignored.what));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::CommandFactory;

    use super::*;
    use crate::settings::Source;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let argv = std::iter::once("rivet-agent").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(Cli::into_command)
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cli_run_is_the_default() {
        assert_eq!(parse(&[]).unwrap(), Command::Run(SourceArgs::default()));
        let command = parse(&["--set", "ipa-api-url=http://127.0.0.1:6385"]).unwrap();
        let expected = SourceArgs {
            overrides: vec![("ipa-api-url".into(), "http://127.0.0.1:6385".into())],
            ..SourceArgs::default()
        };
        assert_eq!(command, Command::Run(expected.clone()));
        let command = parse(&["run", "--set", "ipa-api-url=http://127.0.0.1:6385"]).unwrap();
        assert_eq!(command, Command::Run(expected));
    }

    #[test]
    fn cli_show_config_takes_every_source() {
        let command = parse(&[
            "show-config",
            "--cmdline",
            "/tmp/cmdline",
            "--config-dir",
            "/a",
            "--config-file",
            "/x.conf",
            "--config-dir",
            "/b",
            "--parameters-file",
            "/p.txt",
            "--set",
            "cafile=/ca.pem",
            "--set",
            "ipa-debug=1",
        ])
        .unwrap();
        let expected = SourceArgs {
            cmdline: Some("/tmp/cmdline".into()),
            config_dirs: vec!["/a".into(), "/b".into()],
            config_files: vec!["/x.conf".into()],
            parameters_file: Some("/p.txt".into()),
            overrides: vec![
                ("cafile".into(), "/ca.pem".into()),
                ("ipa-debug".into(), "1".into()),
            ],
        };
        assert_eq!(command, Command::ShowConfig(expected));
        assert_eq!(parse(&["interfaces"]).unwrap(), Command::Interfaces);
    }

    #[test]
    fn cli_rejects_bad_overrides() {
        let err = parse(&["--set", "ipa-debug"]).unwrap_err().to_string();
        assert!(err.contains("expected KEY=VALUE"), "{err}");
        let err = parse(&["--set", "ipa-api-ur=http://x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no setting is named `ipa-api-ur`"), "{err}");
        assert!(parse(&["interfaces", "--set", "ipa-debug=1"]).is_err());
    }

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Files {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        fn no_defaults(&self) -> DefaultSources {
            DefaultSources {
                cmdline: None,
                config_dir: self.path("no-default-dir"),
            }
        }
    }

    #[test]
    fn cli_load_settings_reads_every_source_in_priority_order() {
        let files = Files::new();
        let cmdline = files.write(
            "cmdline",
            "ipa-lookup-timeout=1 ipa-listen-port=1001 quiet\n",
        );
        let conf = files.write(
            "x.conf",
            "[DEFAULT]\nlookup_timeout = 2\nlisten_port = 1002\n",
        );
        files.write("d/20-b.conf", "[DEFAULT]\nlookup_timeout = 4\n");
        files.write(
            "d/10-a.conf",
            "[DEFAULT]\nlookup_timeout = 3\nlisten_port = 1003\n",
        );
        files.write("d/ignored.txt", "[DEFAULT]\nlookup_timeout = 99\n");
        let params = files.write("parameters.txt", "ipa-lookup-timeout=5\n");
        let args = SourceArgs {
            cmdline: Some(cmdline.clone()),
            config_dirs: vec![files.path("d")],
            config_files: vec![conf],
            parameters_file: Some(params.clone()),
            overrides: vec![("ipa-advertise-port".into(), "1006".into())],
        };
        let loaded = load_settings_with(&args, &files.no_defaults()).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let s = &loaded.settings;
        assert_eq!(s.lookup_timeout, Duration::from_secs(5));
        assert_eq!(
            loaded.origin("lookup_timeout"),
            &Source::ParametersFile(params)
        );
        assert_eq!(s.listen_port, 1003);
        let origin = Source::ConfigFile(files.path("d/10-a.conf"));
        assert_eq!(loaded.origin("listen_port"), &origin);
        assert_eq!(s.advertise_port, 1006);
        assert_eq!(loaded.origin("advertise_port"), &Source::Override);
    }

    #[test]
    fn cli_boot_medium_parameters_beat_config_files_and_lose_to_explicit_ones() {
        let files = Files::new();
        files.write(
            "etc/ironic-tls.conf",
            "[DEFAULT]\ncafile = /etc/ironic-python-agent/ironic.crt\nlookup_timeout = 2\n",
        );
        let defaults = DefaultSources {
            cmdline: None,
            config_dir: files.path("etc"),
        };
        let boot = [SourceText {
            path: PathBuf::from("/mnt/ir-vfd-dev/parameters.txt"),
            text: "ipa-lookup-timeout=3 ipa-listen-port=1003\n".into(),
        }];
        let loaded = load_settings_with_boot(&SourceArgs::default(), &defaults, &boot).unwrap();
        assert_eq!(
            loaded.settings.cafile.as_deref(),
            Some(std::path::Path::new("/etc/ironic-python-agent/ironic.crt"))
        );
        assert_eq!(loaded.settings.lookup_timeout, Duration::from_secs(3));
        assert_eq!(
            loaded.origin("lookup_timeout"),
            &Source::ParametersFile(PathBuf::from("/mnt/ir-vfd-dev/parameters.txt"))
        );
        let explicit = files.write("p.txt", "ipa-listen-port=1004\n");
        let args = SourceArgs {
            parameters_file: Some(explicit),
            ..SourceArgs::default()
        };
        let loaded = load_settings_with_boot(&args, &defaults, &boot).unwrap();
        assert_eq!(loaded.settings.listen_port, 1004);
        assert_eq!(loaded.settings.lookup_timeout, Duration::from_secs(3));
    }

    #[test]
    fn cli_load_settings_uses_defaults_when_present() {
        let files = Files::new();
        let cmdline = files.write("proc-cmdline", "ipa-insecure=1\n");
        files.write("etc/a.conf", "[DEFAULT]\ndebug = true\n");
        let defaults = DefaultSources {
            cmdline: Some(cmdline.clone()),
            config_dir: files.path("etc"),
        };
        let loaded = load_settings_with(&SourceArgs::default(), &defaults).unwrap();
        assert!(loaded.settings.insecure && loaded.settings.debug);
        assert_eq!(loaded.origin("insecure"), &Source::KernelCmdline(cmdline));

        // An explicit --config-dir replaces the default one.
        files.write("other/b.conf", "[DEFAULT]\nlisten_port = 1\n");
        let args = SourceArgs {
            config_dirs: vec![files.path("other")],
            ..SourceArgs::default()
        };
        let loaded = load_settings_with(&args, &defaults).unwrap();
        assert!(!loaded.settings.debug);
        assert_eq!(loaded.settings.listen_port, 1);
    }

    #[test]
    fn cli_load_settings_skips_missing_defaults() {
        let files = Files::new();
        let defaults = DefaultSources {
            cmdline: Some(files.path("no-cmdline")),
            config_dir: files.path("no-dir"),
        };
        let loaded = load_settings_with(&SourceArgs::default(), &defaults).unwrap();
        assert_eq!(loaded.settings, crate::settings::Settings::default());
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn cli_load_settings_fails_on_missing_explicit_sources() {
        let files = Files::new();
        let cases = [
            SourceArgs {
                cmdline: Some(files.path("nope")),
                ..SourceArgs::default()
            },
            SourceArgs {
                config_files: vec![files.path("nope")],
                ..SourceArgs::default()
            },
            SourceArgs {
                config_dirs: vec![files.path("nope")],
                ..SourceArgs::default()
            },
            SourceArgs {
                parameters_file: Some(files.path("nope")),
                ..SourceArgs::default()
            },
        ];
        for args in cases {
            let err = load_settings_with(&args, &files.no_defaults()).unwrap_err();
            let message = format!("{err:#}");
            assert!(
                message.contains(&files.path("nope").display().to_string()),
                "{message}"
            );
        }
    }

    #[test]
    fn cli_show_config_masks_secrets_and_lists_problems() {
        let files = Files::new();
        let token = "TOKEN-abcdefghijklmnopqrstuvwxyz0123456789";
        let cmdline = files.write(
            "cmdline",
            &format!("ipa-agent-token={token} ipa-api-url=mdns ipa-bogus=1 BOOTIF=01-aa-bb"),
        );
        let args = SourceArgs {
            cmdline: Some(cmdline.clone()),
            overrides: vec![("ipa-lookup-timeout".into(), "90".into())],
            ..SourceArgs::default()
        };
        let loaded = load_settings_with(&args, &files.no_defaults()).unwrap();
        let report = show_config(&loaded);
        assert!(!report.contains("TOKEN"), "{report}");
        let source = format!("kernel command line ({})", cmdline.display());
        let lines: Vec<&str> = report.lines().collect();
        let row = |name: &str| {
            let found = lines
                .iter()
                .find(|l| l.split_whitespace().next() == Some(name));
            found.map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        assert_eq!(
            row("ipa-agent-token"),
            Some(format!("ipa-agent-token *** {source}"))
        );
        assert_eq!(row("BOOTIF"), Some(format!("BOOTIF 01-aa-bb {source}")));
        assert_eq!(
            row("ipa-lookup-timeout").as_deref(),
            Some("ipa-lookup-timeout 90 --set")
        );
        assert_eq!(
            row("ipa-api-url").as_deref(),
            Some("ipa-api-url (unset) default")
        );
        assert_eq!(lines.len(), 1 + registry::all().len() + 6, "{report}");
        assert!(report.contains("\nWarnings (1):\n"), "{report}");
        assert!(
            report.contains("mDNS discovery is not supported by rivet"),
            "{report}"
        );
        assert!(report.contains(&format!(
            "Ignored unknown keys (1):\n  {source}: ipa-bogus\n"
        )));
    }
}
