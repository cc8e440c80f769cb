use serde_json::{json, Value};

use super::report::{PlanReport, RunState, REPORT_MAGIC};
use super::*;

const RACK: &str = include_str!("../../../docs/plans/rack.json");
#[cfg(feature = "yaml")]
const RACK_YAML: &str = include_str!("../../../docs/plans/rack.yaml");
const MINIMAL: &str = include_str!("../../../docs/plans/minimal.json");
const SCHEMA: &str = include_str!("../../../docs/plan.schema.json");

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

#[test]
fn documented_examples_validate_and_round_trip() {
    for text in [RACK, MINIMAL] {
        let plan = Plan::from_json(text).unwrap();
        let original: Value = serde_json::from_str(text).unwrap();
        let mut again = serde_json::to_value(&plan).unwrap();
        // Defaults are written out; the examples may leave them away.
        for (key, default) in [("on_failure", "stop"), ("rerun", "never")] {
            if original.get(key).is_none() {
                assert_eq!(again[key], json!(default));
                again.as_object_mut().unwrap().remove(key);
            }
        }
        assert_eq!(again, original);
    }
}

#[test]
fn schema_names_exactly_the_fields_of_the_types() {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let rack: Value = serde_json::from_str(RACK).unwrap();
    // The rack example uses every field.
    assert_eq!(keys(&schema["properties"]), keys(&rack));
    let machine = &schema["$defs"]["machine"]["properties"];
    assert_eq!(keys(machine), keys(&rack["machines"][0]));
    let matcher = serde_json::to_value(Matcher {
        mac: Some("m".into()),
        system_uuid: Some("u".into()),
        serial: Some("s".into()),
    })
    .unwrap();
    assert_eq!(keys(&machine["match"]["properties"]), keys(&matcher));
    assert_eq!(
        keys(&schema["$defs"]["report"]["properties"]),
        keys(&rack["report"])
    );
    assert_eq!(
        keys(&schema["$defs"]["step"]["properties"]),
        keys(&rack["steps"][1])
    );
    let mut names: Vec<String> = schema["$defs"]["step"]["properties"]["step"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut ours: Vec<String> = ENGINE_STEPS
        .iter()
        .chain(&["inspect", "wait", "reboot", "poweroff"])
        .map(|s| s.to_string())
        .collect();
    ours.sort();
    assert_eq!(names, ours);
    for on_failure in schema["properties"]["on_failure"]["enum"]
        .as_array()
        .unwrap()
    {
        serde_json::from_value::<OnFailure>(on_failure.clone()).unwrap();
    }
    for rerun in schema["properties"]["rerun"]["enum"].as_array().unwrap() {
        serde_json::from_value::<Rerun>(rerun.clone()).unwrap();
    }
}

fn plan_with(steps: Value, extra: Value) -> Result<Plan, PlanError> {
    let mut doc = json!({"version": 1, "name": "p", "steps": steps});
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    Plan::from_json(&doc.to_string())
}

#[test]
fn invalid_plans_are_refused_with_the_reason() {
    let medium = json!({"report": {"medium": {"serial": "r"}}});
    let cases = [
        (
            json!([{"step": "erase_everything"}]),
            json!({}),
            "unknown step",
        ),
        (json!([]), json!({}), "steps is empty"),
        (json!([{"step": "wait"}]), json!({}), "needs args.seconds"),
        (
            json!([{"step": "wait", "args": {"seconds": -1}}]),
            json!({}),
            "needs args.seconds",
        ),
        (
            json!([{"step": "reboot"}, {"step": "inspect"}]),
            json!({}),
            "must be the last step",
        ),
        (
            json!([{"step": "write_image", "args": {}}]),
            medium.clone(),
            "needs args.image_info",
        ),
        (
            json!([{"step": "erase_devices_express"}]),
            json!({}),
            "names no report.medium",
        ),
        (
            json!([{"step": "inspect"}]),
            json!({"version": 2}),
            "version 2 is not supported",
        ),
        (
            json!([{"step": "inspect"}]),
            json!({"report": {"url": "ftp://x"}}),
            "not an http(s) URL",
        ),
        (
            json!([{"step": "inspect"}]),
            json!({"machines": [{"name": "a", "match": {}}]}),
            "names no mac",
        ),
        (
            json!([{"step": "inspect"}]),
            json!({"machines": [{"name": "a", "match": {"mac": "x"}},
                                 {"name": "a", "match": {"mac": "y"}}]}),
            "given twice",
        ),
        (
            json!([{"step": "inspect"}]),
            json!({"surprise": true}),
            "unknown field `surprise`",
        ),
    ];
    for (steps, extra, expected) in cases {
        let err = plan_with(steps.clone(), extra).unwrap_err().to_string();
        assert!(err.contains(expected), "{steps}: {err}");
    }
    // The same destructive plan is fine with a medium, or when it may run again.
    plan_with(json!([{"step": "erase_devices_express"}]), medium).unwrap();
    plan_with(
        json!([{"step": "erase_devices_express"}]),
        json!({"rerun": "always"}),
    )
    .unwrap();
}

fn identity(mac: &str, uuid: Option<&str>, serial: Option<&str>) -> Identity {
    Identity {
        macs: vec![mac.to_string()],
        system_uuid: uuid.map(str::to_string),
        serial: serial.map(str::to_string),
    }
}

#[test]
fn machines_are_selected_by_every_given_matcher() {
    let plan = Plan::from_json(RACK).unwrap();
    let u01 = identity(
        "aa:aa:aa:aa:aa:aa",
        Some("4C4C4544-0042-3510-8052-B2C04F4E3132"),
        None,
    );
    assert_eq!(plan.select(&u01).unwrap().unwrap().name, "a17-u01");
    assert!(plan.network_data_for(plan.select(&u01).unwrap()).is_some());
    let u02 = identity("3C:EC:EF:00:17:02", None, Some("CZ2017A02"));
    let chosen = plan.select(&u02).unwrap();
    assert_eq!(chosen.unwrap().name, "a17-u02");
    assert_eq!(plan.network_data_for(chosen), plan.network_data.as_ref());
    // The MAC alone is not enough for a17-u02: its serial must match too.
    let wrong_serial = identity("3c:ec:ef:00:17:02", None, Some("other"));
    let err = plan.select(&wrong_serial).unwrap_err().to_string();
    assert!(err.contains("no machine of plan rack-a17-deploy"), "{err}");
    // Two machines matching is refused.
    let mut twice = plan.clone();
    twice.machines[1].matcher = Matcher {
        mac: Some("aa:aa:aa:aa:aa:aa".into()),
        ..Matcher::default()
    };
    let err = twice.select(&u01).unwrap_err().to_string();
    assert!(err.contains("machines a17-u01, a17-u02 of plan"), "{err}");
    // No machines: any machine.
    let any = Plan::from_json(MINIMAL).unwrap();
    assert_eq!(any.select(&u01).unwrap(), None);
}

fn report(state: RunState, digest: &str, who: Identity) -> PlanReport {
    PlanReport {
        rivet_report: 1,
        plan: "p".into(),
        plan_sha256: digest.into(),
        machine: None,
        identity: who,
        boot_id: "b".into(),
        started_at: 1,
        finished_at: Some(2),
        state,
        steps: vec![],
        message: None,
        completed_at: None,
    }
}

#[test]
fn a_report_records_completion_of_this_plan_on_this_machine_only() {
    let me = identity("aa:aa:aa:aa:aa:01", Some("u-1"), None);
    let done = report(RunState::Done, "d1", me.clone());
    assert!(done.records_completion("d1", &me));
    assert!(!done.records_completion("d2", &me), "another plan");
    let other = identity("aa:aa:aa:aa:aa:01", Some("u-2"), None);
    assert!(!done.records_completion("d1", &other), "another machine");
    let failed = report(RunState::Failed, "d1", me.clone());
    assert!(!failed.records_completion("d1", &me));
    let running = report(RunState::Running, "d1", me.clone());
    assert!(!running.records_completion("d1", &me), "cut short");
    // Without system UUIDs a shared MAC identifies the machine.
    let no_uuid = identity("AA:AA:AA:AA:AA:01", None, None);
    let done = report(RunState::Done, "d1", no_uuid.clone());
    assert!(done.records_completion("d1", &identity("aa:aa:aa:aa:aa:01", None, None)));
}

#[test]
fn reports_read_back_from_a_medium() {
    let me = identity("aa:aa:aa:aa:aa:01", Some("u-1"), None);
    let done = report(RunState::Done, "d1", me);
    let mut bytes = serde_json::to_vec(&done).unwrap();
    assert!(bytes.starts_with(REPORT_MAGIC));
    bytes.resize(4096, 0);
    assert_eq!(PlanReport::from_medium(&bytes).unwrap(), Some(done));
    assert_eq!(PlanReport::from_medium(&[0u8; 512]).unwrap(), None);
    let err = PlanReport::from_medium(b"\xebX\x90mkfs.fat").unwrap_err();
    assert!(err.contains("something other than a rivet report"), "{err}");
}

#[test]
fn the_digest_changes_with_the_plan() {
    let plan = Plan::from_json(MINIMAL).unwrap();
    let mut other = plan.clone();
    other.steps[0].ignore_failure = true;
    assert_eq!(plan.digest().len(), 64);
    assert_eq!(plan.digest(), Plan::from_json(MINIMAL).unwrap().digest());
    assert_ne!(plan.digest(), other.digest());
}

#[cfg(feature = "yaml")]
#[test]
fn a_yaml_plan_is_the_same_plan_as_its_json() {
    let from_yaml = Plan::from_document(RACK_YAML).unwrap();
    let from_json = Plan::from_document(RACK).unwrap();
    assert_eq!(from_yaml, from_json);
    assert_eq!(from_yaml.digest(), Plan::from_json(RACK).unwrap().digest());
    let broken = Plan::from_document("version: 1\nname: [unclosed\n").unwrap_err();
    assert!(broken.to_string().contains("YAML"), "{broken}");
    let json_error = Plan::from_document("{\"version\": 1,").unwrap_err();
    assert!(json_error.to_string().contains("JSON"), "{json_error}");
}
