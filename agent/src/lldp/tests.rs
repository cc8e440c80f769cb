//! LLDP frames captured from a real lldpd (agent/tests/fixtures/lldp, see the INDEX).

use std::path::PathBuf;

use super::frame::{parse_frame, Tlv};
use super::neighbor::Neighbor;
use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lldp")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn lldpd_frame_with_ifname_port_ids() {
    let frame = parse_frame(&fixture("lldpd-1.0.16-ifname.bin")).unwrap();
    let n = Neighbor::from_tlvs(&frame.tlvs);
    assert_eq!(n.system_name.as_deref(), Some("leaf-test-1"));
    assert_eq!(
        n.system_description.as_deref(),
        Some("rivet fixture switch")
    );
    assert_eq!(n.port_id.as_deref(), Some("swp1"));
    assert_eq!(n.port_id_subtype.as_deref(), Some("interface_name"));
    assert_eq!(n.port_description.as_deref(), Some("swp1"));
    assert_eq!(n.chassis_id_subtype.as_deref(), Some("mac_address"));
    assert_eq!(
        n.chassis_id.as_deref(),
        Some(crate::net::interfaces::format_mac(&frame.source).as_str()),
        "lldpd's chassis id is the MAC of its only interface"
    );
    assert_eq!(n.ttl, Some(4));
    assert_eq!(n.management_addresses[0], "192.0.2.1");
    assert!(n.capabilities.contains(&"station".to_string()));
    let kinds: Vec<u8> = frame.tlvs.iter().map(|t| t.kind).collect();
    assert_eq!(&kinds[..3], &[1, 2, 3], "chassis, port, TTL first");
    assert_eq!(kinds.last(), Some(&0));
}

#[test]
fn lldpd_frame_with_mac_port_ids() {
    let frame = parse_frame(&fixture("lldpd-1.0.16-mac.bin")).unwrap();
    let n = Neighbor::from_tlvs(&frame.tlvs);
    assert_eq!(n.system_name.as_deref(), Some("spine-2"));
    assert_eq!(n.port_id_subtype.as_deref(), Some("mac_address"));
    assert_eq!(n.port_id, n.chassis_id, "one port: the same MAC");
    assert_eq!(n.port_description.as_deref(), Some("swp1"));
}

#[test]
fn raw_form_is_ironics() {
    let board = LldpBoard::default();
    let session = board.begin().unwrap();
    board.record(
        "eno1",
        session,
        parse_frame(&fixture("lldpd-1.0.16-ifname.bin")).unwrap(),
    );
    board.finish(SessionSummary {
        links: vec!["eno1".into(), "eno2".into()],
        end: SessionEnd::Timeout,
        took: Duration::from_secs(1),
        errors: Vec::new(),
    });
    let raw = board.raw(&["eno1".to_string(), "eno2".to_string()]);
    let json = serde_json::to_value(&raw).unwrap();
    assert_eq!(json["eno2"], serde_json::json!([]));
    let eno1 = json["eno1"].as_array().unwrap();
    // System name TLV: [5, hex("leaf-test-1")].
    assert!(eno1.contains(&serde_json::json!([5, "6c6561662d746573742d31"])));
    assert_eq!(eno1.last(), Some(&serde_json::json!([0, ""])));
    // The hex decodes back to the same TLVs.
    let back: Vec<Tlv> = eno1
        .iter()
        .map(|t| {
            Tlv::new(
                t[0].as_u64().unwrap() as u8,
                hex::decode(t[1].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(back, board.observations()["eno1"].tlvs);
}

#[test]
fn one_session_at_a_time() {
    let board = LldpBoard::default();
    let first = board.begin();
    assert_eq!(first, Some(1));
    assert_eq!(board.begin(), None, "a second session while one runs");
    assert!(board.listening());
    board.finish(SessionSummary {
        links: Vec::new(),
        end: SessionEnd::NoLinks,
        took: Duration::ZERO,
        errors: Vec::new(),
    });
    assert_eq!(
        board.wait_idle(Duration::ZERO).unwrap().end,
        SessionEnd::NoLinks
    );
    assert_eq!(board.begin(), Some(2));
}

#[test]
fn a_cancelled_board_ends_sessions_at_once() {
    let board = LldpBoard::default();
    board.cancel();
    // "lo" can always be listened on; the session must still end before its timeout.
    let options = ListenOptions {
        timeout: Duration::from_secs(3600),
        end_early: true,
        transmit_as: None,
    };
    let summary = listen(&["lo".to_string()], &options, &board, &KernelLinks).unwrap();
    assert_eq!(summary.end, SessionEnd::Cancelled, "{summary:?}");
}
