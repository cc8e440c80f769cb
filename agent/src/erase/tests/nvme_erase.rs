//! Probe, Format NVM and Sanitize against `FakeNvme` with the fixture pages and a virtual
//! clock.

use std::time::Duration;

use super::*;
use crate::erase::fake::{FakeClock, FakeDisk, FakeNvme, SanitizeBehaviour};
use crate::erase::nvme::OPC_FORMAT_NVM;
use crate::erase::tests::nvme_fixture as fixture;

fn controller(page: &str) -> FakeNvme {
    FakeNvme::new(
        FakeDisk::new(1 << 20, 512, 0x5A),
        fixture(page),
        fixture("id-ns-512.bin"),
    )
}

const POLL: Duration = Duration::from_secs(5);

#[test]
fn probe_reads_controller_namespace_and_active_list() {
    let mut nvme = controller("id-ctrl-datacenter.bin");
    nvme.active_namespaces = vec![1, 2, 7];
    let probe = probe(&mut nvme).unwrap();
    assert_eq!(probe.nsid, 1);
    assert_eq!(probe.controller.model, "SAMSUNG MZQL23T8HCLS-00A07");
    assert_eq!(probe.namespace.block_size(), 512);
    assert_eq!(probe.active_namespaces, Some(vec![1, 2, 7]));
    assert_eq!(probe.other_namespaces(), [2, 7]);
    let opcodes: Vec<(u8, u32)> = nvme
        .commands()
        .iter()
        .map(|c| (c.opcode, c.cdw10))
        .collect();
    assert_eq!(opcodes, [(0x06, 1), (0x06, 0), (0x06, 2)]);
}

#[test]
fn other_namespaces_when_the_list_is_unknown() {
    let mut nvme = controller("id-ctrl-datacenter.bin");
    let mut p = probe(&mut nvme).unwrap();
    p.active_namespaces = None;
    assert_eq!(p.other_namespaces(), [0], "NN 32: maybe others");
    let mut client = controller("id-ctrl-client.bin");
    let mut p = probe(&mut client).unwrap();
    p.active_namespaces = None;
    assert!(p.other_namespaces().is_empty(), "NN 1: none");
}

#[test]
fn format_sends_the_namespace_format_and_erase_setting() {
    let mut nvme = controller("id-ctrl-datacenter.bin");
    let p = probe(&mut nvme).unwrap();
    format(&mut nvme, &p, SecureErase::Cryptographic, false, 1 << 40).unwrap();
    let sent = *nvme.commands().last().unwrap();
    assert_eq!(sent.opcode, OPC_FORMAT_NVM);
    assert_eq!(sent.nsid, 1);
    assert_eq!(sent.cdw10, 2 << 9);
    assert_eq!(sent.timeout, Duration::from_secs(600));
    assert!(
        nvme.disk.contents().iter().all(|&b| b == 0xC3),
        "crypto erase garbage"
    );

    format(&mut nvme, &p, SecureErase::UserData, true, 1 << 40).unwrap();
    let sent = *nvme.commands().last().unwrap();
    assert_eq!(sent.nsid, NSID_ALL);
    assert_eq!(sent.cdw10, 1 << 9);
    assert_eq!(sent.timeout, Duration::from_secs((1u64 << 40) / 50_000_000));
    assert!(nvme.disk.contents().iter().all(|&b| b == 0));
}

#[test]
fn format_timeouts() {
    assert_eq!(
        format_timeout(SecureErase::Cryptographic, 1 << 50),
        Duration::from_secs(600)
    );
    assert_eq!(
        format_timeout(SecureErase::UserData, 1 << 20),
        Duration::from_secs(1800)
    );
}

#[test]
fn a_failed_format_reports_the_status() {
    let mut nvme = controller("id-ctrl-client.bin");
    let p = probe(&mut nvme).unwrap();
    let err = format(&mut nvme, &p, SecureErase::Cryptographic, false, 1 << 20).unwrap_err();
    assert!(err.to_string().contains("Invalid Format"), "{err}");
    assert!(nvme.disk.contents().iter().all(|&b| b == 0x5A));
}

#[test]
fn sanitize_is_polled_to_completion_with_progress_and_estimate() {
    let mut nvme = controller("id-ctrl-datacenter.bin");
    nvme.sanitize = SanitizeBehaviour::CompletesAfter(4);
    nvme.estimates = [30, 600, u32::MAX];
    let clock = FakeClock::default();
    let mut ticks = Vec::new();
    let done = sanitize(
        &mut nvme,
        SanitizeAction::CryptoErase,
        0,
        &clock,
        POLL,
        &mut |t| {
            ticks.push(*t);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(done.estimate, Some(Duration::from_secs(30)));
    assert_eq!(done.took, POLL * 3);
    let percents: Vec<f64> = ticks.iter().map(|t| t.percent).collect();
    assert_eq!(percents, [25.0, 50.0, 75.0]);
    assert!(ticks
        .iter()
        .all(|t| t.estimate == Some(Duration::from_secs(30))));
    let commands = nvme.commands();
    assert_eq!(commands[0].opcode, 0x02, "the log is read before starting");
    assert_eq!((commands[1].opcode, commands[1].cdw10), (0x84, 0x0C));
    assert!(nvme.disk.contents().iter().all(|&b| b == 0xC3));
}

#[test]
fn a_failed_sanitize_leaves_failure_mode() {
    let mut nvme = controller("id-ctrl-datacenter.bin");
    nvme.sanitize = SanitizeBehaviour::FailsAfter(2);
    let clock = FakeClock::default();
    let err = sanitize(
        &mut nvme,
        SanitizeAction::BlockErase,
        0,
        &clock,
        POLL,
        &mut |_| Ok(()),
    )
    .unwrap_err();
    assert!(matches!(err, SanitizeError::Failed(..)), "{err}");
    assert!(
        err.to_string().contains("left the sanitize failure mode"),
        "{err}"
    );
    let last = *nvme.commands().last().unwrap();
    assert_eq!(
        (last.opcode, last.cdw10),
        (0x84, 0x09),
        "Exit Failure Mode with AUSE"
    );
}

#[test]
fn a_sanitize_that_never_ends_times_out_on_the_estimate() {
    let mut nvme = controller("id-ctrl-datacenter.bin");
    nvme.sanitize = SanitizeBehaviour::Never;
    nvme.estimates = [30, 600, u32::MAX];
    let clock = FakeClock::default();
    let err = sanitize(
        &mut nvme,
        SanitizeAction::CryptoErase,
        0,
        &clock,
        POLL,
        &mut |_| Ok(()),
    )
    .unwrap_err();
    match err {
        SanitizeError::TimedOut { waited, estimate } => {
            assert_eq!(estimate, Some(Duration::from_secs(30)));
            assert!(waited >= Duration::from_secs(30 + 1800), "{waited:?}");
            assert!(waited < Duration::from_secs(30 + 1800) + POLL, "{waited:?}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn wait_limits() {
    assert_eq!(sanitize_wait_limit(None), WAIT_WITHOUT_ESTIMATE);
    assert_eq!(
        sanitize_wait_limit(Some(Duration::from_secs(60))),
        Duration::from_secs(1860)
    );
    assert_eq!(
        sanitize_wait_limit(Some(Duration::from_secs(7200))),
        Duration::from_secs(14400)
    );
}

#[test]
fn stopping_the_wait_is_reported() {
    let mut nvme = controller("id-ctrl-datacenter.bin");
    nvme.sanitize = SanitizeBehaviour::Never;
    let clock = FakeClock::default();
    let err = sanitize(
        &mut nvme,
        SanitizeAction::CryptoErase,
        0,
        &clock,
        POLL,
        &mut |_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "aborted",
            ))
        },
    )
    .unwrap_err();
    assert!(matches!(err, SanitizeError::Stopped(_)), "{err}");
    assert!(err.to_string().contains("keeps working"), "{err}");
}

#[test]
fn a_sanitize_already_running_is_waited_for_first() {
    let mut nvme = controller("id-ctrl-datacenter.bin");
    nvme.sanitize = SanitizeBehaviour::CompletesAfter(2);
    // A block erase started earlier (e.g. before a power cycle).
    nvme.admin(&AdminCommand::sanitize(0x0A, 0), &mut [])
        .unwrap();
    let clock = FakeClock::default();
    sanitize(
        &mut nvme,
        SanitizeAction::CryptoErase,
        0,
        &clock,
        POLL,
        &mut |_| Ok(()),
    )
    .unwrap();
    let sanitizes: Vec<u32> = nvme
        .commands()
        .iter()
        .filter(|c| c.opcode == 0x84)
        .map(|c| c.cdw10)
        .collect();
    assert_eq!(sanitizes, [0x0A, 0x0C]);
}

#[test]
fn qemu_has_no_sanitize() {
    let mut nvme = controller("qemu-id-ctrl.bin");
    let clock = FakeClock::default();
    let err = sanitize(
        &mut nvme,
        SanitizeAction::CryptoErase,
        0,
        &clock,
        POLL,
        &mut |_| Ok(()),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("Invalid Field in Command"),
        "{err}"
    );
}
