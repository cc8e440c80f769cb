//! The knobs from `driver_internal_info` (spec §8.1).

use serde_json::json;

use super::*;

fn knobs(info: serde_json::Value) -> Result<Knobs, String> {
    Knobs::from_node(&json!({"driver_internal_info": info}), &Settings::default())
}

#[test]
fn ipa_defaults_when_ironic_sends_nothing() {
    let k = knobs(json!({})).unwrap();
    assert_eq!(k, Knobs::default());
    assert_eq!(
        Knobs::from_node(&json!({}), &Settings::default()).unwrap(),
        k
    );
    assert_eq!((k.iterations, k.zeroize), (1, true));
    assert!(!k.continue_if_secure_erase_failed);
    assert!(k.enable_nvme_secure_erase && k.enable_ata_secure_erase);
    assert_eq!(k.concurrency, None, "rivet: every device at once");
    assert!(!k.skip_read_only && !k.enable_discard_erase && k.guard_special_filesystems);
}

#[test]
fn what_ironic_39_sends_by_default() {
    // deploy_utils.agent_add_clean_params with Ironic 39's defaults.
    let k = knobs(json!({
        "agent_erase_devices_iterations": 1,
        "agent_erase_devices_zeroize": true,
        "agent_continue_if_ata_erase_failed": false,
        "agent_continue_if_secure_erase_failed": false,
        "agent_enable_ata_secure_erase": true,
        "agent_enable_nvme_secure_erase": true,
        "disk_erasure_concurrency": 4,
        "agent_erase_skip_read_only": false,
    }))
    .unwrap();
    assert_eq!(k.concurrency, Some(4));
    assert_eq!(
        k,
        Knobs {
            concurrency: Some(4),
            ..Knobs::default()
        }
    );
}

#[test]
fn every_knob_is_read() {
    let k = knobs(json!({
        "agent_erase_devices_iterations": 3,
        "agent_erase_devices_zeroize": false,
        "agent_continue_if_secure_erase_failed": true,
        "agent_enable_nvme_secure_erase": false,
        "agent_enable_ata_secure_erase": "False",
        "disk_erasure_concurrency": "2",
        "agent_erase_skip_read_only": 1,
        "agent_enable_discard_erase": true,
        "wipe_special_filesystems": false,
    }))
    .unwrap();
    assert_eq!(
        k,
        Knobs {
            iterations: 3,
            zeroize: false,
            continue_if_secure_erase_failed: true,
            enable_nvme_secure_erase: false,
            enable_ata_secure_erase: false,
            concurrency: Some(2),
            skip_read_only: true,
            enable_discard_erase: true,
            guard_special_filesystems: false,
            nvme_sanitize: NvmeSanitize::Off,
            skip_block_devices: Vec::new(),
        }
    );
}

#[test]
fn the_legacy_ata_knob_is_the_fallback_of_the_secure_erase_one() {
    let legacy = knobs(json!({"agent_continue_if_ata_erase_failed": true})).unwrap();
    assert!(legacy.continue_if_secure_erase_failed);
    let both = knobs(json!({
        "agent_continue_if_ata_erase_failed": true,
        "agent_continue_if_secure_erase_failed": false,
    }))
    .unwrap();
    assert!(!both.continue_if_secure_erase_failed);
}

#[test]
fn settings_feed_discard_guard_and_sanitize() {
    let settings = Settings {
        enable_discard_erase: true,
        guard_special_filesystems: false,
        nvme_sanitize: NvmeSanitize::Block,
        ..Settings::default()
    };
    let k = Knobs::from_node(&json!({}), &settings).unwrap();
    assert!(k.enable_discard_erase);
    assert!(!k.guard_special_filesystems);
    assert_eq!(k.nvme_sanitize, NvmeSanitize::Block);
    // The node's knob wins over the setting.
    let node = json!({"driver_internal_info": {"agent_enable_discard_erase": false}});
    assert!(
        !Knobs::from_node(&node, &settings)
            .unwrap()
            .enable_discard_erase
    );
}

#[test]
fn nulls_mean_unset() {
    let k = knobs(json!({"disk_erasure_concurrency": null, "agent_erase_devices_zeroize": null}))
        .unwrap();
    assert_eq!(k, Knobs::default());
}

#[test]
fn wrong_types_and_ranges_are_named() {
    for (info, needle) in [
        (
            json!({"agent_erase_devices_zeroize": "maybe"}),
            "agent_erase_devices_zeroize must be a boolean",
        ),
        (
            json!({"disk_erasure_concurrency": 0}),
            "disk_erasure_concurrency must be at least 1",
        ),
        (
            json!({"disk_erasure_concurrency": [1]}),
            "disk_erasure_concurrency must be an integer",
        ),
        (
            json!({"agent_erase_devices_iterations": -1}),
            "agent_erase_devices_iterations must be 0 to 1000",
        ),
    ] {
        let err = knobs(info.clone()).unwrap_err();
        assert!(err.contains(needle), "{info}: {err}");
    }
}
