//! The command list, the busy rule, waiting and request errors.

use serde_json::json;

use super::*;

fn gate_step_params() -> Value {
    json!({
        "step": {"interface": "deploy", "step": "gate", "priority": 0, "args": {"n": 1}},
        "node": node(),
        "ports": [],
        "clean_version": null,
    })
}

#[tokio::test]
async fn async_command_answers_running_and_blocks_others_until_done() {
    let h = harness();
    let running = h
        .ok("clean.execute_clean_step", gate_step_params(), false)
        .await;
    assert_eq!(running.command_name, "execute_clean_step");
    assert_eq!(status(&running), CommandStatus::Running);
    assert_eq!(running.command_result, None);
    assert_eq!(h.runner.list(), vec![running.clone()]);

    // Any command, known or not, is refused while the last one runs.
    for name in ["clean.get_clean_steps", "standby.sync", "nosuch.thing"] {
        let err = h
            .post(name, json!({"node": node(), "ports": []}), false)
            .await
            .expect_err(name);
        assert_eq!(err, ApiError::Busy("execute_clean_step".into()));
        assert_eq!(err.status(), 409);
        assert_eq!(
            err.fault().faultstring,
            "Agent is busy: executing command execute_clean_step"
        );
    }
    // A GET without waiting sees it still running.
    let current = h.runner.get(&running.id, false).await.expect("known");
    assert_eq!(status(&current), CommandStatus::Running);

    h.gate.open();
    let done = h.done(&running.id).await;
    assert_eq!(status(&done), CommandStatus::Succeeded);
    assert_eq!(done.id, running.id);

    // Refused requests were not recorded; the next command runs.
    let next = h.ok("standby.sync", json!({}), false).await;
    assert_eq!(status(&next), CommandStatus::Succeeded);
    let names: Vec<String> = h
        .runner
        .list()
        .into_iter()
        .map(|r| r.command_name)
        .collect();
    assert_eq!(names, ["execute_clean_step", "sync"]);
}

#[tokio::test]
async fn a_running_command_read_back_carries_the_progress_of_long_work() {
    let h = harness();
    let running = h
        .ok("clean.execute_clean_step", gate_step_params(), false)
        .await;
    // Nothing reported yet: null, as IPA.
    assert_eq!(h.runner.list()[0].command_result, None);
    h.ctx.progress.update(crate::progress::Progress {
        task: "write image to /dev/vda".into(),
        phase: "writing".into(),
        percent: Some(42.0),
        done_bytes: Some(42 << 20),
        total_bytes: Some(100 << 20),
        ..Default::default()
    });
    let expected = json!({"progress": [{
        "task": "write image to /dev/vda",
        "phase": "writing",
        "percent": 42.0,
        "done_bytes": 42u64 << 20,
        "total_bytes": 100u64 << 20,
    }]});
    assert_eq!(h.runner.list()[0].command_result, Some(expected.clone()));
    let current = h.runner.get(&running.id, false).await.expect("known");
    assert_eq!(current.command_result, Some(expected));

    // Once done, the step's own result, never the progress.
    h.gate.open();
    let done = h.done(&running.id).await;
    assert_eq!(status(&done), CommandStatus::Succeeded);
    let result = done.command_result.expect("a clean result");
    assert!(result.get("progress").is_none(), "{result}");
    assert!(result.get("clean_result").is_some(), "{result}");
}

#[tokio::test]
async fn post_with_wait_returns_the_finished_result() {
    let h = harness();
    let runner = h.runner.clone();
    let pending = tokio::spawn(async move {
        runner
            .execute(
                request("clean.execute_clean_step", gate_step_params()),
                true,
            )
            .await
    });
    // The waiting POST holds no lock: the list shows the command running meanwhile.
    let mut done_rx = h.runner.async_done();
    loop {
        if h.runner.list().len() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status(&h.runner.list()[0]), CommandStatus::Running);
    h.gate.open();
    let result = pending.await.expect("task").expect("accepted");
    assert_eq!(status(&result), CommandStatus::Succeeded);
    assert_eq!(
        result.command_result,
        Some(json!({
            "clean_result": {"n": 1},
            "clean_step": {"interface": "deploy", "step": "gate", "priority": 0, "args": {"n": 1}},
        }))
    );
    done_rx.changed().await.expect("counter bumped");
    assert_eq!(*done_rx.borrow(), 1);
}

#[tokio::test]
async fn async_done_counts_every_finished_async_command() {
    let h = harness();
    let rx = h.runner.async_done();
    assert_eq!(*rx.borrow(), 0);
    let wait0 = json!({"step": {"interface": "deploy", "step": "wait", "args": {"seconds": 0}},
                       "node": node(), "ports": []});
    h.ok("clean.execute_clean_step", wait0.clone(), true).await;
    h.ok("deploy.execute_deploy_step", wait0, true).await;
    // A sync command does not count.
    h.ok("standby.sync", json!({}), false).await;
    // A failed async command counts too.
    h.ok("image.install_bootloader", json!({}), true).await;
    assert_eq!(*rx.borrow(), 3);
}

#[tokio::test]
async fn a_failed_last_command_does_not_block() {
    let h = harness();
    let failed = h
        .ok(
            "clean.execute_clean_step",
            json!({"step": {"step": "fail", "interface": "deploy"}, "node": node(), "ports": []}),
            true,
        )
        .await;
    assert_eq!(status(&failed), CommandStatus::Failed);
    h.ok(
        "clean.get_clean_steps",
        json!({"node": node(), "ports": []}),
        false,
    )
    .await;
}

#[tokio::test]
async fn bad_names_and_unknown_ids() {
    let h = harness();
    for name in [
        "clean",
        "clean.",
        ".get_clean_steps",
        "clean.get_clean_steps.x",
    ] {
        let err = h.post(name, json!({}), false).await.expect_err(name);
        assert_eq!(err.status(), 400, "{name}: {err}");
    }
    let err = h
        .post("poll.get_hardware_info", json!({}), false)
        .await
        .expect_err("ext");
    assert_eq!(err, ApiError::UnknownExtension("poll".into()));
    assert_eq!(err.status(), 404);
    let err = h
        .post("standby.prepare_image", json!({}), false)
        .await
        .expect_err("cmd");
    assert_eq!(
        err,
        ApiError::InvalidCommand("Unknown command: prepare_image".into())
    );
    assert_eq!(err.status(), 400);
    let err = h
        .post("clean.get_deploy_steps", json!({}), false)
        .await
        .expect_err("cmd");
    assert_eq!(err.status(), 400);
    assert!(
        h.runner.list().is_empty(),
        "rejected requests are not recorded"
    );

    for wait in [false, true] {
        let err = h.runner.get("no-such-id", wait).await.expect_err("unknown");
        assert_eq!(err, ApiError::UnknownCommandId("no-such-id".into()));
        assert_eq!(err.status(), 404);
    }
}

#[tokio::test]
async fn results_serialize_as_ipa_does() {
    let h = harness();
    let result = h
        .ok(
            "clean.execute_clean_step",
            json!({
                "step": {"interface": "deploy", "step": "burnin_disk",
                         "abortable": true, "priority": 0, "requires_ramdisk": true},
                "node": node(), "ports": [], "clean_version": null,
            }),
            true,
        )
        .await;
    let mut value = serde_json::to_value(&result).expect("json");
    assert!(uuid::Uuid::parse_str(value["id"].as_str().expect("id")).is_ok());
    value.as_object_mut().expect("object").remove("id");
    assert_eq!(
        value,
        json!({
            "command_name": "execute_clean_step",
            "command_status": "FAILED",
            "command_error": {
                "type": "CleaningError",
                "code": 500,
                "message": "Clean step failed",
                "details": "burnin_disk is not supported by this build of rivet-agent",
            },
            "command_result": null,
        })
    );
}

#[tokio::test]
async fn sync_failures_are_recorded_under_the_dotted_name() {
    let h = harness_with(Options {
        fs: FakeFsSync {
            fail_sync: true,
            ..FakeFsSync::default()
        },
        ..Options::default()
    });
    let result = h.ok("standby.sync", json!({}), false).await;
    assert_eq!(result.command_name, "standby.sync");
    assert_eq!(status(&result), CommandStatus::Failed);
    let error = result.command_error.expect("error");
    assert_eq!(error.type_, "CommandExecutionError");
    assert_eq!(error.code, 500);
    assert_eq!(error.message, "Command execution failed");
    assert!(
        error.details.contains("injected sync failure"),
        "{}",
        error.details
    );
}
