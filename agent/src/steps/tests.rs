use std::sync::Arc;

use rivet_protocol::steps::{Step, StepType};
use rivet_protocol::JsonObject;
use serde_json::{json, Value};

use super::*;
use crate::lldp::LldpBoard;

/// A manager with fixed steps that records nothing and answers `step` with its own name.
struct TestManager {
    class_name: &'static str,
    support: HardwareSupport,
    steps: Vec<(StepType, Step)>,
}

impl HardwareManager for TestManager {
    fn name(&self) -> &str {
        self.class_name
    }
    fn class_name(&self) -> &str {
        self.class_name
    }
    fn version(&self) -> &str {
        "9"
    }
    fn support(&self) -> HardwareSupport {
        self.support
    }
    fn steps(&self) -> Vec<(StepType, Step)> {
        self.steps.clone()
    }
    fn execute(&self, name: &str, _: &StepCall<'_>) -> Result<Value, StepError> {
        if self.steps.iter().any(|(_, s)| s.step == name) {
            Ok(json!(self.class_name))
        } else {
            Err(StepError::Unhandled(name.to_string()))
        }
    }
}

fn manager(
    class_name: &'static str,
    support: u32,
    steps: &[(&str, i64)],
) -> Arc<dyn HardwareManager> {
    Arc::new(TestManager {
        class_name,
        support: HardwareSupport(support),
        steps: steps
            .iter()
            .map(|(name, priority)| (StepType::Clean, step(name, *priority, "deploy")))
            .collect(),
    })
}

fn recorded_steps(file: &str, step_type: StepType) -> Vec<Value> {
    let path = format!(
        "{}/../tests/fixtures/ironic-39/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let wanted = format!("{}.get_{}_steps", step_type.as_str(), step_type.as_str());
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).expect("fixture line is JSON");
        if record["kind"] == "conductor->agent" && record["body"]["name"] == wanted.as_str() {
            let steps = &record["resp_body"]["command_result"]
                [format!("{}_steps", step_type.as_str())]["GenericHardwareManager"];
            return steps.as_array().expect("recorded step list").clone();
        }
    }
    panic!("no {wanted} in {path}");
}

fn without_argsinfo(steps: &[Step]) -> Vec<Value> {
    steps
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).expect("step serializes");
            v.as_object_mut().expect("object").remove("argsinfo");
            v
        })
        .collect()
}

#[test]
fn generic_clean_and_deploy_steps_match_the_recordings() {
    let managers =
        HardwareManagers::builtin(&crate::settings::Settings::default(), Default::default());
    for (file, step_type) in [
        ("manual-clean.jsonl", StepType::Clean),
        ("deploy-whole-disk.jsonl", StepType::Deploy),
    ] {
        let result = managers.get_steps(step_type);
        let generic = &result.steps["GenericHardwareManager"];
        assert_eq!(
            without_argsinfo(generic),
            recorded_steps(file, step_type),
            "{step_type:?}"
        );
    }
}

#[test]
fn generic_steps_carry_ipa_argsinfo() {
    let generic = GenericHardwareManager::new(&crate::settings::Settings::default());
    let find = |kind: StepType, name: &str| {
        generic
            .steps()
            .into_iter()
            .find(|(k, s)| *k == kind && s.step == name)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("{kind:?} {name}"))
    };
    let apply = find(StepType::Deploy, "apply_configuration");
    let info = apply.argsinfo.expect("argsinfo");
    assert!(info["raid_config"].required);
    assert!(!info["delete_existing"].required);
    let nvram = find(StepType::Clean, "clean_uefi_nvram")
        .argsinfo
        .expect("argsinfo");
    assert!(nvram["match_patterns"]
        .description
        .ends_with(r#"'["^HD\(", "shim.*\.efi", "grub.*\.efi"]'"#));
    let inject = find(StepType::Service, "inject_files")
        .argsinfo
        .expect("argsinfo");
    assert_eq!(inject.keys().collect::<Vec<_>>(), ["files", "verify_ca"]);
    let service: Vec<String> = generic
        .steps()
        .into_iter()
        .filter(|(k, _)| *k == StepType::Service)
        .map(|(_, s)| s.step)
        .collect();
    assert!(!service.contains(&"burnin_disk".to_string()));
    assert_eq!(service.len(), 10);
}

#[test]
fn inject_files_priority_comes_from_settings() {
    let settings = crate::settings::Settings {
        inject_files_priority: 42,
        ..Default::default()
    };
    let result =
        HardwareManagers::builtin(&settings, Default::default()).get_steps(StepType::Deploy);
    let inject = result.steps["GenericHardwareManager"]
        .iter()
        .find(|s| s.step == "inject_files")
        .expect("inject_files");
    assert_eq!(inject.priority, 42);
}

#[test]
fn builtin_versions_and_rivet_steps() {
    let managers =
        HardwareManagers::builtin(&crate::settings::Settings::default(), Default::default());
    assert_eq!(
        serde_json::to_value(managers.versions()).expect("json"),
        json!({"generic_hardware_manager": "1.2", "rivet_hardware_manager": "1.0"})
    );
    for step_type in StepType::ALL {
        let result = managers.get_steps(step_type);
        let rivet = &result.steps["RivetHardwareManager"];
        assert_eq!(rivet.len(), 2);
        assert_eq!(rivet[0].step, "sleep");
        assert!(rivet[0].argsinfo.as_ref().expect("argsinfo")["seconds"].required);
        assert_eq!(rivet[1].step, "verify_wiring");
        assert!(rivet[1].argsinfo.as_ref().expect("argsinfo")["expected"].required);
        for step in rivet {
            assert_eq!(step.interface, "deploy");
            assert_eq!(step.priority, 0);
        }
    }
}

#[test]
fn managers_without_support_are_dropped_and_the_rest_sorted() {
    let managers = HardwareManagers::new(vec![
        manager("Low", 1, &[]),
        manager("Gone", 0, &[]),
        manager("High", 3, &[]),
        manager("Mid", 2, &[]),
        manager("Low2", 1, &[]),
    ]);
    let order: Vec<&str> = managers.iter().map(|m| m.class_name()).collect();
    assert_eq!(order, ["High", "Mid", "Low", "Low2"]);
}

#[test]
fn dedup_prefers_support_then_priority_then_name() {
    let managers = HardwareManagers::new(vec![
        manager("Zeta", 1, &[("a", 50), ("b", 10), ("c", 5)]),
        manager("Alpha", 1, &[("b", 10), ("c", 7)]),
        manager("Special", 2, &[("a", 1)]),
    ]);
    let result = managers.get_steps(StepType::Clean);
    let names = |class: &str| -> Vec<String> {
        result.steps.get(class).map_or_else(Vec::new, |steps| {
            steps.iter().map(|s| s.step.clone()).collect()
        })
    };
    assert_eq!(names("Special"), ["a"]);
    assert_eq!(names("Alpha"), ["b", "c"]);
    assert!(!result.steps.contains_key("Zeta"));
    assert!(all_names_unique(&result));
}

/// Every step name appears once.
fn all_names_unique(result: &rivet_protocol::steps::GetStepsResult) -> bool {
    let mut names: Vec<&str> = result
        .steps
        .values()
        .flatten()
        .map(|s| s.step.as_str())
        .collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    names.len() == count
}

#[test]
fn dispatch_uses_the_most_specific_manager_that_handles_the_step() {
    let managers = HardwareManagers::new(vec![
        manager("Generic", 1, &[("a", 0), ("b", 0)]),
        manager("Vendor", 2, &[("a", 0)]),
    ]);
    let run = |name: &str| with_call(&JsonObject::new(), |call| managers.execute(name, call));
    assert_eq!(run("a"), Ok(json!("Vendor")));
    assert_eq!(run("b"), Ok(json!("Generic")));
    assert_eq!(run("zzz"), Err(StepError::NoManager("zzz".into())));
}

#[test]
fn generic_steps_fail_clearly_instead_of_pretending() {
    let managers =
        HardwareManagers::builtin(&crate::settings::Settings::default(), Default::default());
    // The erase steps are implemented (erase/tests/mod.rs runs them on fakes).
    for name in [
        "erase_pstore",
        "clean_uefi_nvram",
        "inject_files",
        "execute_bootc_install",
        "create_configuration",
        "delete_configuration",
        "apply_configuration",
        "burnin_cpu",
        "burnin_gpu",
        "burnin_disk",
        "burnin_memory",
        "burnin_network",
    ] {
        let err =
            with_call(&JsonObject::new(), |call| managers.execute(name, call)).expect_err(name);
        assert_eq!(
            err.to_string(),
            format!("{name} is not supported by this build of rivet-agent")
        );
    }
}

#[test]
fn sleep_step_validates_seconds() {
    let rivet = RivetHardwareManager::new(wiring_sources(LldpBoard::default()));
    let run = |args: Value| {
        let args = args.as_object().cloned().expect("object");
        with_call(&args, |call| rivet.execute("sleep", call))
    };
    assert_eq!(run(json!({"seconds": 0})), Ok(Value::Null));
    assert_eq!(run(json!({"seconds": "0.01"})), Ok(Value::Null));
    for bad in [
        json!({}),
        json!({"seconds": null}),
        json!({"seconds": -1}),
        json!({"seconds": 3601}),
        json!({"seconds": "soon"}),
        json!({"seconds": [1]}),
    ] {
        match run(bad.clone()) {
            Err(StepError::InvalidArgs { step, message }) => {
                assert_eq!(step, "sleep");
                assert!(message.contains("seconds"), "{message}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

/// NICs from the sysfs-net fixture (eth0 52:54:00:aa:bb:01, eth1 52:54:00:12:34:57, ...);
/// a session the step starts itself ends at once without hearing anything.
fn wiring_sources(board: LldpBoard) -> WiringSources {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sysfs-net");
    let mut net = crate::net::interfaces::FakeNetInfo::new(root);
    net.permanent_macs
        .insert("eth0".into(), vec![0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01]);
    WiringSources {
        board: Arc::new(board),
        net: Arc::new(net),
        links: Arc::new(crate::lldp::KernelLinks),
        listen: crate::lldp::ListenOptions {
            timeout: std::time::Duration::ZERO,
            end_early: true,
            transmit_as: None,
        },
    }
}

/// The switch `leaf-1` heard on eth0, port Ethernet7.
fn board_with_eth0_on_leaf1() -> LldpBoard {
    use crate::lldp::frame::{Frame, Tlv};
    let board = LldpBoard::default();
    let tlvs = vec![
        Tlv::new(1, vec![4, 0, 0x1c, 0x73, 1, 2, 3]),
        Tlv::new(2, b"\x05Ethernet7".to_vec()),
        Tlv::new(3, vec![0, 120]),
        Tlv::new(5, b"leaf-1".to_vec()),
    ];
    let frame = Frame {
        source: [0, 0x1c, 0x73, 1, 2, 3],
        tlvs,
    };
    assert!(board.record_session(
        &["eth0".into(), "eth1".into()],
        vec![("eth0".into(), frame)]
    ));
    board
}

#[test]
fn verify_wiring_passes_with_the_report() {
    let rivet = RivetHardwareManager::new(wiring_sources(board_with_eth0_on_leaf1()));
    let args = json!({"expected": [
        {"mac": "52:54:00:AA:BB:01", "switch_system_name": "leaf-1", "port_id": "Ethernet7"}
    ]});
    let report = with_call(args.as_object().expect("object"), |call| {
        rivet.execute("verify_wiring", call)
    })
    .expect("the wiring is as expected");
    assert_eq!(report["ok"], true);
    assert_eq!(report["links"][0]["interface"], "eth0");
    assert_eq!(report["links"][0]["status"], "ok");
}

#[test]
fn verify_wiring_fails_with_the_difference() {
    let rivet = RivetHardwareManager::new(wiring_sources(board_with_eth0_on_leaf1()));
    let args = json!({"expected": [
        {"interface": "eth0", "switch_system_name": "leaf-1", "port_id": "Ethernet8"},
        {"interface": "eth1", "switch_chassis_id": "00:1c:73:01:02:03", "port_id": "Ethernet9"},
    ]});
    let error = with_call(args.as_object().expect("object"), |call| {
        rivet.execute("verify_wiring", call)
    })
    .expect_err("the wiring differs");
    let StepError::Failed(message) = error else {
        panic!("{error:?}");
    };
    assert_eq!(
        message,
        "the cabling differs from what is expected on 2 of 2 links:\n  \
         eth0 (52:54:00:aa:bb:01): cabled to switch leaf-1 port Ethernet7: port is \
         \"Ethernet7\", expected \"Ethernet8\"\n  \
         eth1 (52:54:00:12:34:57): expected switch chassis 00:1c:73:01:02:03 port Ethernet9, \
         but no LLDP frame was heard (no cable, no link, or the switch does not send LLDP)"
    );
}

#[test]
fn verify_wiring_refuses_bad_arguments() {
    let rivet = RivetHardwareManager::new(wiring_sources(LldpBoard::default()));
    for args in [json!({}), json!({"expected": [{"interface": "eth0"}]})] {
        let result = with_call(args.as_object().expect("object"), |call| {
            rivet.execute("verify_wiring", call)
        });
        assert!(
            matches!(&result, Err(StepError::InvalidArgs { step, .. }) if step == "verify_wiring"),
            "{args}: {result:?}"
        );
    }
}

/// Runs `f` with a step call carrying `args`, an empty node and no ports.
fn with_call<R>(args: &JsonObject, f: impl FnOnce(&StepCall<'_>) -> R) -> R {
    let node = json!({});
    let ports = json!([]);
    let ctx = crate::context::AgentContext::new(crate::settings::Settings::default());
    f(&StepCall {
        args,
        node: &node,
        ports: &ports,
        progress: &ctx.progress,
        ctx: &ctx,
    })
}

#[test]
fn generic_erase_steps_run_through_the_erase_host() {
    use crate::disks::DeviceKind;
    use crate::erase::fake::{FakeDevice, FakeDisk, FakeEraseHost};

    let disk = FakeDisk::new(1 << 20, 512, 0x5A);
    let host = FakeEraseHost::new(vec![FakeDevice::new("vda", DeviceKind::Disk, disk.clone())]);
    let generic = GenericHardwareManager::new(&crate::settings::Settings::default())
        .with_erase_host(Arc::new(host));
    let node = json!({"driver_internal_info": {}});
    let ports = json!([]);
    let ctx = crate::context::AgentContext::new(crate::settings::Settings::default());
    let call = StepCall {
        args: &JsonObject::new(),
        node: &node,
        ports: &ports,
        progress: &ctx.progress,
        ctx: &ctx,
    };
    let result = generic
        .execute("erase_devices_express", &call)
        .expect("erased");
    assert_eq!(result["/dev/vda"]["method"], "metadata");
    assert!(
        disk.contents().iter().all(|&b| b == 0),
        "a 1 MiB disk is wiped whole"
    );
    assert_eq!(ctx.attachments.snapshot()[0].0, "erase-reports.json");
    assert_eq!(
        generic.execute("no_such_step", &call),
        Err(StepError::Unhandled("no_such_step".into()))
    );
}
