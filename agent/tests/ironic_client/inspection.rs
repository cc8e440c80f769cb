//! Posting inspection data to FakeIronic's `/v1/continue_inspection` with IPA's retries, on
//! an automatic virtual clock.

use rivet_agent::inspection::post::PostError;
use rivet_agent::inspection::{post_inspection, PostPolicy};
use rivet_agent::ironic::client::IronicClient;
use rivet_agent::pace::FakeClock;
use rivet_agent::settings::Settings;
use rivet_protocol::inspection::{InspectionRequest, InspectionResponse};
use rivet_protocol::version::MicroVersion;
use serde_json::json;
use url::Url;

use crate::fake_ironic::{recorded_lookup_answer, FakeIronic, Reply};
use crate::support::{closed_port_url, pacer, secs, settings_for};

const UUID: &str = "072a1d4d-2109-4966-9aab-708de8cfa79d";

fn data() -> InspectionRequest {
    serde_json::from_value(json!({
        "inventory": {
            "interfaces": [{"name": "eth0", "mac_address": "52:54:00:12:34:56",
                            "ipv4_address": null, "ipv6_address": null, "has_carrier": true,
                            "lldp": null, "vendor": "0x1af4", "product": "0x0001",
                            "client_id": null, "biosdevname": null, "speed_mbps": null,
                            "pci_address": "0000:00:03.0", "driver": "virtio_net"}],
            "cpu": {"model_name": "QEMU", "frequency": "2000.0000", "count": 1,
                    "architecture": "x86_64", "flags": [], "socket_count": 1},
            "disks": [],
            "memory": {"total": 1073741824u64, "physical_mb": 1024},
            "bmc_address": null, "bmc_v6address": null,
            "system_vendor": {"product_name": "", "serial_number": "", "manufacturer": "",
                              "firmware": {"vendor": "", "version": "", "build_date": ""}},
            "boot": {"current_boot_mode": "bios", "pxe_interface": null},
            "hostname": "node"
        },
        "boot_interface": null,
        "configuration": {"collectors": ["default"], "managers": []},
        "error": null
    }))
    .expect("a valid payload")
}

fn callback(ironic: &FakeIronic) -> Url {
    ironic
        .url
        .join("/v1/continue_inspection")
        .expect("a callback URL")
}

fn client() -> IronicClient {
    let settings = Settings {
        global_request_id: Some("req-3f0c5a8e-8d1e-4d6b-9a53-7b2f4a1c9e10".into()),
        ..settings_for(&[])
    };
    IronicClient::for_inspection(&settings).expect("a client without API URL")
}

#[tokio::test]
async fn posts_json_without_a_version_and_gets_the_uuid() {
    let ironic = FakeIronic::start().await;
    ironic.script_inspection([Reply::json(202, &json!({"uuid": UUID}))]);
    let clock = FakeClock::auto();
    let answer = post_inspection(
        &client(),
        &[callback(&ironic)],
        &data(),
        None,
        PostPolicy::default(),
        &pacer(clock.clone(), 0.5),
    )
    .await
    .expect("inspection accepted");
    assert_eq!(answer.node_uuid(), UUID);
    assert!(answer.lookup().is_none());
    let requests = ironic.requests_to("/v1/continue_inspection");
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("X-OpenStack-Ironic-API-Version"), None);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(
        request.header("X-OpenStack-Request-ID"),
        Some("req-3f0c5a8e-8d1e-4d6b-9a53-7b2f4a1c9e10")
    );
    let body = request.body.as_ref().expect("a JSON body");
    assert_eq!(
        body["inventory"]["interfaces"][0]["mac_address"],
        "52:54:00:12:34:56"
    );
    assert_eq!(body["error"], serde_json::Value::Null);
    assert!(clock.slept().is_empty());
}

#[tokio::test]
async fn at_1_84_the_answer_carries_node_config_and_token() {
    let ironic = FakeIronic::start().await;
    ironic.script_inspection([Reply::json(202, &recorded_lookup_answer())]);
    let answer = post_inspection(
        &client(),
        &[callback(&ironic)],
        &data(),
        Some(MicroVersion::new(1, 84)),
        PostPolicy::default(),
        &pacer(FakeClock::auto(), 0.5),
    )
    .await
    .expect("inspection accepted");
    assert!(matches!(answer, InspectionResponse::Lookup(_)));
    assert_eq!(answer.node_uuid(), UUID);
    let request = &ironic.requests_to("/v1/continue_inspection")[0];
    assert_eq!(
        request.header("X-OpenStack-Ironic-API-Version"),
        Some("1.84")
    );
}

#[tokio::test]
async fn server_errors_and_conflicts_are_retried_with_ipas_waits() {
    let ironic = FakeIronic::start().await;
    ironic.script_inspection([
        Reply::ironic_error(503, "Service Unavailable"),
        Reply::ironic_error(409, "Node is locked"),
        Reply::json(202, &json!({"uuid": UUID})),
    ]);
    let clock = FakeClock::auto();
    let answer = post_inspection(
        &client(),
        &[callback(&ironic)],
        &data(),
        None,
        PostPolicy::default(),
        &pacer(clock.clone(), 0.5),
    )
    .await
    .expect("accepted on the third attempt");
    assert_eq!(answer.node_uuid(), UUID);
    assert_eq!(ironic.requests_to("/v1/continue_inspection").len(), 3);
    assert_eq!(secs(&clock.slept()), vec![5.0, 5.0]);
}

#[tokio::test]
async fn gives_up_after_five_attempts() {
    let ironic = FakeIronic::start().await;
    ironic.script_inspection((0..6).map(|_| Reply::ironic_error(500, "boom")));
    let clock = FakeClock::auto();
    let error = post_inspection(
        &client(),
        &[callback(&ironic)],
        &data(),
        None,
        PostPolicy::default(),
        &pacer(clock.clone(), 0.5),
    )
    .await
    .expect_err("always failing");
    assert!(
        matches!(error, PostError::GaveUp { attempts: 5, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("boom"), "{error}");
    assert_eq!(ironic.requests_to("/v1/continue_inspection").len(), 5);
    assert_eq!(secs(&clock.slept()), vec![5.0, 5.0, 6.0, 12.0]);
}

#[tokio::test]
async fn other_client_errors_fail_at_once() {
    let ironic = FakeIronic::start().await;
    let clock = FakeClock::auto();
    let error = post_inspection(
        &client(),
        &[callback(&ironic)],
        &data(),
        None,
        PostPolicy::default(),
        &pacer(clock.clone(), 0.5),
    )
    .await
    .expect_err("404 from the default script");
    assert!(matches!(error, PostError::Refused(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("Node was not found in the inspect wait state."),
        "{error}"
    );
    assert_eq!(ironic.requests_to("/v1/continue_inspection").len(), 1);
    assert!(clock.slept().is_empty());
}

#[tokio::test]
async fn a_dead_callback_url_falls_over_to_the_next() {
    let ironic = FakeIronic::start().await;
    ironic.script_inspection([Reply::json(202, &json!({"uuid": UUID}))]);
    let dead = closed_port_url("127.0.0.1")
        .join("/v1/continue_inspection")
        .expect("a URL");
    let clock = FakeClock::auto();
    let answer = post_inspection(
        &client(),
        &[dead, callback(&ironic)],
        &data(),
        None,
        PostPolicy::default(),
        &pacer(clock.clone(), 0.5),
    )
    .await
    .expect("the second URL answers");
    assert_eq!(answer.node_uuid(), UUID);
    assert!(clock.slept().is_empty(), "no retry was needed");
}
