//! Tests of merging the sources: priority, bad values, unknown keys, secrets.

use std::path::PathBuf;
use std::time::Duration;

use super::load::{Ignored, Location};
use super::registry::{self, KeyDef};
use super::*;

fn text(path: &str, text: &str) -> SourceText {
    SourceText {
        path: PathBuf::from(path),
        text: text.to_string(),
    }
}

fn cmdline(line: &str) -> Inputs {
    Inputs {
        cmdline: Some(text("/proc/cmdline", line)),
        ..Inputs::default()
    }
}

fn cmdline_source() -> Source {
    Source::KernelCmdline(PathBuf::from("/proc/cmdline"))
}

fn override_name(key: &KeyDef) -> &'static str {
    key.param.unwrap_or_else(|| key.options[0].name)
}

#[test]
fn settings_priority_is_defaults_cmdline_config_parameters_set() {
    let mut inputs = Inputs::default();
    let loaded = load(&inputs);
    assert_eq!(loaded.settings, Settings::default());
    assert_eq!(loaded.origin("lookup_timeout"), &Source::Default);
    assert!(loaded.warnings.is_empty() && loaded.ignored.is_empty());

    let steps = [
        (100, Source::KernelCmdline(PathBuf::from("/proc/cmdline"))),
        (200, Source::ConfigFile(PathBuf::from("/etc/a.conf"))),
        (300, Source::ConfigFile(PathBuf::from("/etc/b.conf"))),
        (
            400,
            Source::ParametersFile(PathBuf::from("/mnt/parameters.txt")),
        ),
        (500, Source::Override),
    ];
    for (index, (seconds, source)) in steps.into_iter().enumerate() {
        match index {
            0 => inputs.cmdline = Some(text("/proc/cmdline", "ipa-lookup-timeout=100")),
            1 => inputs.config_files = vec![text("/etc/a.conf", "[DEFAULT]\nlookup_timeout=200")],
            2 => inputs
                .config_files
                .push(text("/etc/b.conf", "[DEFAULT]\nlookup_timeout = 300\n")),
            3 => {
                let params = "ipa-lookup-timeout=400\n";
                inputs.parameters = vec![text("/mnt/parameters.txt", params)];
            }
            _ => inputs.overrides = vec![("ipa-lookup-timeout".into(), "500".into())],
        }
        let loaded = load(&inputs);
        assert_eq!(loaded.settings.lookup_timeout, Duration::from_secs(seconds));
        assert_eq!(loaded.origin("lookup_timeout"), &source);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }
}

#[test]
fn settings_cmdline_duplicates_later_wins() {
    let loaded = load(&cmdline("ipa-api-url=http://a:1 ipa-api-url=http://b:2"));
    assert_eq!(loaded.settings.api_urls[0].as_str(), "http://b:2/");
    assert_eq!(loaded.settings.api_urls.len(), 1);
}

#[test]
fn settings_ipa_debug_beats_config_like_ipa() {
    let mut inputs = cmdline("ipa-debug=1");
    inputs.config_files = vec![text("/etc/a.conf", "[DEFAULT]\ndebug = false\n")];
    let loaded = load(&inputs);
    assert!(loaded.settings.debug);
    assert_eq!(loaded.origin("debug"), &cmdline_source());

    // Without the kernel parameter, the config file counts.
    inputs.cmdline = Some(text("/proc/cmdline", "quiet"));
    assert!(!load(&inputs).settings.debug);

    // parameters.txt and --set still beat it.
    inputs.cmdline = Some(text("/proc/cmdline", "ipa-debug=1"));
    inputs.parameters = vec![text("/p.txt", "ipa-debug=0")];
    assert!(!load(&inputs).settings.debug);
    inputs.parameters = Vec::new();
    inputs.overrides = vec![("ipa-debug".into(), "no".into())];
    assert!(!load(&inputs).settings.debug);
}

#[test]
fn settings_typical_ironic_cmdline() {
    let line = "BOOT_IMAGE=/vmlinuz nofb vga=normal ipa-api-url=https://192.0.2.1:6385 \
                ipa-global-request-id=req-5b9a ipa-insecure=1 ipa-debug=1 \
                BOOTIF=01-52-54-00-12-34-56 selinux=0 troubleshoot=0 text boot_method=vmedia \
                ir_pub_id=6c7b ipa-agent-token=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG \
                ipa-enable-vlan-interfaces=eth0.100,all ipa-tls-certificate-curve=secp384r1\n";
    let loaded = load(&cmdline(line));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.ignored.is_empty(), "{:?}", loaded.ignored);
    let s = &loaded.settings;
    assert_eq!(s.api_urls[0].as_str(), "https://192.0.2.1:6385/");
    assert_eq!(s.global_request_id.as_deref(), Some("req-5b9a"));
    assert!(s.insecure && s.debug);
    assert_eq!(s.bootif.as_deref(), Some("01-52-54-00-12-34-56"));
    assert_eq!(s.boot_method.as_deref(), Some("vmedia"));
    assert_eq!(s.ir_pub_id.as_deref(), Some("6c7b"));
    let token = s.agent_token.as_ref().map(Secret::expose);
    assert_eq!(token, Some("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"));
    assert_eq!(s.enable_vlan_interfaces, ["eth0.100", "all"]);
    assert_eq!(s.tls_certificate_curve, Curve::P384);
    assert_eq!(loaded.origin("bootif"), &cmdline_source());
}

#[test]
fn settings_bootif_is_kept_verbatim() {
    for mac in ["01-aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff", "AA-BB"] {
        let loaded = load(&cmdline(&format!("BOOTIF={mac}")));
        assert_eq!(loaded.settings.bootif.as_deref(), Some(mac));
    }
}

#[test]
fn settings_bad_value_is_a_clear_warning_and_keeps_the_previous_value() {
    let mut inputs = cmdline("ipa-lookup-timeout=900 ipa-insecure=maybe");
    inputs.config_files = vec![text("/etc/x.conf", "[DEFAULT]\n\nlookup_timeout = soon\n")];
    let loaded = load(&inputs);
    assert_eq!(loaded.settings.lookup_timeout, Duration::from_secs(900));
    assert_eq!(loaded.origin("lookup_timeout"), &cmdline_source());
    assert!(!loaded.settings.insecure);
    assert_eq!(loaded.origin("insecure"), &Source::Default);
    let messages: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        messages,
        [
            "kernel command line (/proc/cmdline): ipa-insecure=\"maybe\": expected a boolean: \
             1, true, yes, on, 0, false, no or off; keeping \"false\"",
            "config file /etc/x.conf line 3: lookup_timeout=\"soon\": expected a number of \
             seconds, e.g. 30 or 2.5; keeping \"900\"",
        ]
    );
}

#[test]
fn settings_mdns_api_url_is_rejected() {
    let loaded = load(&cmdline("ipa-api-url=http://a:1 ipa-api-url=mdns"));
    assert_eq!(loaded.settings.api_urls[0].as_str(), "http://a:1/");
    let message = loaded.warnings[0].to_string();
    assert!(
        message.contains("ipa-api-url=\"mdns\": mDNS discovery is not supported by rivet"),
        "{message}"
    );
    assert!(message.ends_with("keeping \"http://a:1/\""), "{message}");
}

#[test]
fn settings_use_mdns_true_warns() {
    let loaded = load(&cmdline("ipa-use-mdns=1"));
    assert!(loaded.settings.use_mdns);
    let message = loaded.warnings[0].to_string();
    assert!(
        message.contains("mDNS discovery is not supported by rivet"),
        "{message}"
    );
    assert!(message.starts_with("kernel command line"), "{message}");
    assert!(load(&cmdline("ipa-use-mdns=0")).warnings.is_empty());
}

#[test]
fn settings_unknown_keys_are_ignored_and_counted() {
    let mut inputs = cmdline("console=ttyS0 ipa-frobnicate=1 rivet-nope=2 ipa-debug=1");
    inputs.config_files = vec![text(
        "/etc/x.conf",
        "[DEFAULT]\nfrobnicate = 1\ninsecure = 1\n[metrics]\nbackend = statsd\nprefix = x\n\
         [mdns]\nlookup_attempts = 3\n",
    )];
    inputs.parameters = vec![text("/p.txt", "ipa-unknown=1 foo=bar")];
    let loaded = load(&inputs);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.settings.debug && loaded.settings.insecure);
    let ignored: Vec<(String, Option<usize>)> = loaded
        .ignored
        .iter()
        .map(|Ignored { at, what }| (what.clone(), at.line))
        .collect();
    let expected = [
        ("ipa-frobnicate", None),
        ("rivet-nope", None),
        ("[DEFAULT] frobnicate", Some(2)),
        ("[metrics]", Some(5)),
        ("[mdns] lookup_attempts", Some(8)),
        ("ipa-unknown", None),
    ];
    let expected: Vec<(String, Option<usize>)> =
        expected.iter().map(|(w, l)| (w.to_string(), *l)).collect();
    assert_eq!(ignored, expected);
}

#[test]
fn settings_config_sections_and_aliases() {
    let conf = "[DEFAULT]\nlisten_tls = True\nguard-special-filesystems = off\n\
                [ssl]\ncert_file = /etc/agent.crt\nkey_file = /etc/agent.key\n\
                [mdns]\nuse_mdns = false\n";
    let inputs = Inputs {
        config_files: vec![text("/etc/x.conf", conf)],
        ..Inputs::default()
    };
    let loaded = load(&inputs);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.ignored.is_empty(), "{:?}", loaded.ignored);
    let s = &loaded.settings;
    assert!(s.listen_tls && !s.guard_special_filesystems);
    assert_eq!(s.tls_cert_file, Some(PathBuf::from("/etc/agent.crt")));
    assert_eq!(s.tls_key_file, Some(PathBuf::from("/etc/agent.key")));
}

#[test]
fn settings_config_bad_lines_are_warnings() {
    let inputs = Inputs {
        config_files: vec![text(
            "/etc/x.conf",
            "[DEFAULT]\nthis is not ini\ninsecure=1\n",
        )],
        ..Inputs::default()
    };
    let loaded = load(&inputs);
    assert!(loaded.settings.insecure);
    assert_eq!(
        loaded.warnings[0].to_string(),
        "config file /etc/x.conf line 2: `this is not ini` is not `key = value`, a `[section]` \
         or a comment; line ignored"
    );
}

#[test]
fn settings_overrides_take_param_or_config_names() {
    let inputs = Inputs {
        overrides: vec![
            ("ipa-api-url".into(), "http://127.0.0.1:6385".into()),
            ("cafile".into(), "/etc/ca.pem".into()),
            ("no-such-key".into(), "1".into()),
        ],
        ..Inputs::default()
    };
    let loaded = load(&inputs);
    assert_eq!(
        loaded.settings.api_urls[0].as_str(),
        "http://127.0.0.1:6385/"
    );
    assert_eq!(loaded.settings.cafile, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(loaded.origin("cafile"), &Source::Override);
    assert_eq!(
        loaded.warnings,
        [SettingWarning::UnknownOverride {
            key: "no-such-key".into()
        }]
    );
}

#[test]
fn settings_parameters_txt_reads_kernel_names_only() {
    let inputs = Inputs {
        parameters: vec![text("/p.txt", "ipa-api-url=http://a:1\ninsecure=1\n")],
        ..Inputs::default()
    };
    let loaded = load(&inputs);
    assert_eq!(loaded.settings.api_urls[0].as_str(), "http://a:1/");
    assert!(!loaded.settings.insecure);
    let at = Location {
        source: Source::ParametersFile(PathBuf::from("/p.txt")),
        line: None,
    };
    assert_eq!(loaded.origin("api_urls"), &at.source);
}

#[test]
fn settings_secrets_never_appear_in_debug_or_warnings() {
    let token = "TOKEN-abcdefghijklmnopqrstuvwxyz0123456789";
    let mut inputs = cmdline(&format!("ipa-agent-token={token} ipa-lookup-timeout=x"));
    inputs.overrides = vec![("ipa-agent-token".into(), format!("{token}2"))];
    let loaded = load(&inputs);
    assert!(loaded.settings.agent_token.is_some());
    let debug = format!("{loaded:?}");
    assert!(!debug.contains("TOKEN"), "{debug}");
    for warning in &loaded.warnings {
        assert!(!warning.to_string().contains("TOKEN"));
    }
}

/// Every `Settings` field has a key, and that key's example changes it. The destructuring
/// names every field, so a new field does not compile here until it is added (and given a key).
macro_rules! assert_every_field_changed {
    ($settings:expr, $($field:ident),* $(,)?) => {{
        let defaults = Settings::default();
        let Settings { $($field),* } = $settings;
        $(
            assert!(
                registry::by_field(stringify!($field)).is_some(),
                "Settings::{} has no key in the registry",
                stringify!($field)
            );
            assert_ne!($field, defaults.$field, "Settings::{} unchanged", stringify!($field));
        )*
    }};
}

#[test]
fn settings_every_field_is_reachable() {
    let overrides = registry::all()
        .iter()
        .map(|key| (override_name(key).to_string(), key.example.to_string()))
        .collect();
    let loaded = load(&Inputs {
        overrides,
        ..Inputs::default()
    });
    // Only the use_mdns example warns (rivet does not do mDNS).
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert_eq!(loaded.origins.len(), registry::all().len());
    assert_every_field_changed!(
        loaded.settings,
        api_urls,
        inspection_callback_urls,
        inspection_collectors,
        inspection_dhcp_wait_timeout,
        inspection_dhcp_all_interfaces,
        collect_lldp,
        lldp_timeout,
        lldp_listen,
        lldp_transmit,
        expected_wiring,
        inspection_api_version,
        insecure,
        cafile,
        certfile,
        keyfile,
        debug,
        global_request_id,
        agent_token,
        listen_host,
        listen_port,
        advertise_host,
        advertise_port,
        advertise_protocol,
        network_interface,
        ip_lookup_attempts,
        ip_lookup_sleep,
        lookup_timeout,
        lookup_interval,
        hardware_initialization_delay,
        disk_wait_attempts,
        disk_wait_delay,
        ntp_server,
        image_download_connection_timeout,
        image_download_connection_retries,
        image_download_connection_retry_interval,
        image_download_max_duration,
        ironic_api_version,
        enable_vlan_interfaces,
        ignore_bootloader_failure,
        inject_files_priority,
        guard_special_filesystems,
        enable_discard_erase,
        nvme_sanitize,
        http_request_timeout,
        tls_min_version,
        tls_cipher_suites,
        tls_certificate_curve,
        enable_auto_tls,
        auto_tls_allowed_clock_skew,
        listen_tls,
        tls_cert_file,
        tls_key_file,
        md5_enabled,
        disable_deep_image_inspection,
        permitted_image_formats,
        enable_bios_bootloader_install,
        use_mdns,
        bootif,
        boot_method,
        ir_pub_id,
        run_dir,
        allow_host_power_actions,
        host_disks,
        strict_root_hints,
        boot_label,
    );
}
