//! get_*_steps and execute_*_step through the API.

use serde_json::json;

use super::*;

#[tokio::test]
async fn get_steps_answers_every_type_with_versions() {
    let h = harness();
    for step_type in StepType::ALL {
        let kind = step_type.as_str();
        let result = h
            .ok(
                &format!("{kind}.get_{kind}_steps"),
                json!({"node": node(), "ports": []}),
                true,
            )
            .await;
        assert_eq!(result.command_name, format!("get_{kind}_steps"));
        assert_eq!(status(&result), CommandStatus::Succeeded);
        assert_eq!(result.command_error, None);
        let value = result.command_result.expect("result");
        assert_eq!(
            value["hardware_manager_version"],
            json!({
                "generic_hardware_manager": "1.2",
                "rivet_hardware_manager": "1.0",
                "test_hardware_manager": "3",
            })
        );
        let steps = value[format!("{kind}_steps")].as_object().expect("steps");
        for (manager, list) in steps {
            for step in list.as_array().expect("list") {
                for key in ["step", "priority", "interface", "reboot_requested"] {
                    assert!(step.get(key).is_some(), "{manager}: {step} lacks {key}");
                }
            }
        }
        assert_eq!(steps["RivetHardwareManager"][0]["step"], "sleep");
        // The round trip Ironic does: the answer parses back.
        assert!(rivet_protocol::steps::GetStepsResult::from_json(step_type, &value).is_some());
    }
}

#[tokio::test]
async fn get_steps_without_node_or_ports_is_a_bad_request() {
    let h = harness();
    for params in [json!({"ports": []}), json!({"node": node()})] {
        let err = h
            .post("clean.get_clean_steps", params, true)
            .await
            .expect_err("missing parameter");
        assert!(matches!(err, ApiError::InvalidParams(_)), "{err:?}");
        assert_eq!(err.status(), 400);
    }
    assert!(h.runner.list().is_empty());
}

fn versions() -> Value {
    json!({
        "generic_hardware_manager": "1.2",
        "rivet_hardware_manager": "1.0",
        "test_hardware_manager": "3",
    })
}

#[tokio::test]
async fn execute_step_echoes_the_step_exactly_as_sent() {
    let h = harness();
    h.gate.open();
    let step = json!({
        "interface": "deploy", "step": "gate", "abortable": true, "priority": 0,
        "requires_ramdisk": true, "args": {"disk": "sda"}, "something_new": [1, 2],
    });
    let result = h
        .ok(
            "service.execute_service_step",
            json!({"step": step, "node": node(), "ports": [], "service_version": versions(),
                   "extra_kwarg": "kept"}),
            true,
        )
        .await;
    assert_eq!(result.command_name, "execute_service_step");
    assert_eq!(status(&result), CommandStatus::Succeeded);
    assert_eq!(
        result.command_result,
        Some(json!({
            "service_result": {"disk": "sda", "extra_kwarg": "kept"},
            "service_step": step,
        }))
    );
}

#[tokio::test]
async fn version_mismatch_is_reported_with_409() {
    let h = harness();
    let result = h
        .ok(
            "deploy.execute_deploy_step",
            json!({
                "step": {"interface": "deploy", "step": "sleep", "args": {"seconds": 0}},
                "node": node(), "ports": [],
                "deploy_version": {"generic_hardware_manager": "1.1"},
            }),
            true,
        )
        .await;
    assert_eq!(status(&result), CommandStatus::CleanVersionMismatch);
    assert_eq!(
        serde_json::to_value(status(&result)).expect("json"),
        json!("CLEAN_VERSION_MISMATCH")
    );
    assert_eq!(result.command_result, None);
    let error = result.command_error.expect("error");
    assert_eq!(error.type_, "VersionMismatch");
    assert_eq!(error.code, 409);
    assert_eq!(
        error.message,
        "Hardware managers version mismatch, reload agent with correct version"
    );
    assert!(
        error
            .details
            .contains(r#""generic_hardware_manager":"1.1""#),
        "{}",
        error.details
    );
}

#[tokio::test]
async fn matching_or_null_versions_run_the_step() {
    let h = harness();
    for version in [versions(), Value::Null] {
        let result = h
            .ok(
                "clean.execute_clean_step",
                json!({
                    "step": {"interface": "deploy", "step": "sleep", "args": {"seconds": "0"}},
                    "node": node(), "ports": [], "clean_version": version,
                }),
                true,
            )
            .await;
        assert_eq!(status(&result), CommandStatus::Succeeded, "{result:?}");
        assert_eq!(
            result.command_result.expect("result")["clean_result"],
            Value::Null
        );
    }
}

async fn failed(h: &Harness, name: &str, params: Value) -> rivet_protocol::command::CommandError {
    let result = h.ok(name, params, true).await;
    assert_eq!(status(&result), CommandStatus::Failed, "{result:?}");
    assert_eq!(result.command_result, None);
    result.command_error.expect("error")
}

#[tokio::test]
async fn malformed_step_params_fail_the_command() {
    let h = harness();
    let cases = [
        (
            json!({"node": node(), "ports": []}),
            "missing required parameter 'step'",
        ),
        (
            json!({"step": {"step": "sleep"}, "ports": []}),
            "missing required parameter 'node'",
        ),
        (
            json!({"step": {"interface": "deploy"}, "node": node(), "ports": []}),
            "Malformed clean_step, no \"step\" key",
        ),
        (
            json!({"step": "sleep", "node": node(), "ports": []}),
            "Malformed clean_step, no \"step\" key",
        ),
        (
            json!({"step": {"step": "sleep", "args": [1]}, "node": node(), "ports": []}),
            "\"args\" must be an object",
        ),
    ];
    for (params, expected) in cases {
        let error = failed(&h, "clean.execute_clean_step", params).await;
        assert_eq!(error.type_, "CommandExecutionError");
        assert_eq!(error.message, "Command execution failed");
        assert!(
            error.details.contains(expected),
            "{} !~ {expected}",
            error.details
        );
    }
}

#[tokio::test]
async fn unimplemented_steps_fail_with_the_step_type_error() {
    let h = harness();
    for (step_type, name, type_, message) in [
        (
            StepType::Clean,
            "erase_pstore",
            "CleaningError",
            "Clean step failed",
        ),
        (
            StepType::Deploy,
            "execute_bootc_install",
            "DeploymentError",
            "Deploy step failed",
        ),
        (
            StepType::Service,
            "burnin_cpu",
            "ServicingError",
            "Service step failed",
        ),
    ] {
        let kind = step_type.as_str();
        let error = failed(
            &h,
            &format!("{kind}.execute_{kind}_step"),
            json!({"step": {"interface": "deploy", "step": name}, "node": node(), "ports": []}),
        )
        .await;
        assert_eq!(error.type_, type_);
        assert_eq!(error.code, 500);
        assert_eq!(error.message, message);
        assert_eq!(
            error.details,
            format!("{name} is not supported by this build of rivet-agent")
        );
    }
}

#[tokio::test]
async fn step_errors_map_to_ipa_types() {
    let h = harness();
    let run = |step: &str| json!({"step": {"interface": "deploy", "step": step}, "node": node(), "ports": []});
    let error = failed(&h, "clean.execute_clean_step", run("no_such_step")).await;
    assert_eq!(error.type_, "HardwareManagerMethodNotFound");
    assert_eq!(error.message, "No HardwareManager found to handle method");
    assert_eq!(error.details, "Could not find method: no_such_step");

    let error = failed(&h, "clean.execute_clean_step", run("ipa_fail")).await;
    assert_eq!(error.type_, "BlockDeviceEraseError");
    assert_eq!(error.message, "Error erasing block device");
    assert_eq!(error.details, "sda: injected");

    let error = failed(&h, "deploy.execute_deploy_step", run("fail")).await;
    assert_eq!(error.type_, "DeploymentError");
    assert_eq!(error.details, "boom");
}

#[tokio::test]
async fn sleep_step_runs_and_rejects_bad_seconds() {
    let h = harness();
    let result = h
        .ok(
            "clean.execute_clean_step",
            json!({"step": {"interface": "deploy", "step": "sleep", "args": {"seconds": 0.01},
                            "abortable": true, "priority": 0},
                   "node": node(), "ports": [], "clean_version": versions()}),
            true,
        )
        .await;
    assert_eq!(status(&result), CommandStatus::Succeeded);
    assert_eq!(
        result.command_result,
        Some(json!({
            "clean_result": null,
            "clean_step": {"interface": "deploy", "step": "sleep", "args": {"seconds": 0.01},
                           "abortable": true, "priority": 0},
        }))
    );
    let error = failed(
        &h,
        "clean.execute_clean_step",
        json!({"step": {"interface": "deploy", "step": "sleep", "args": {"seconds": 7200}},
               "node": node(), "ports": []}),
    )
    .await;
    assert_eq!(error.type_, "CleaningError");
    assert!(
        error
            .details
            .contains("'seconds' must be a number from 0 to 3600"),
        "{}",
        error.details
    );
}
