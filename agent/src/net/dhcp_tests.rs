//! DHCP state machine against `FakeDhcpServer`, on tokio's paused clock (no real waiting).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};

use super::fake::{FakeConfig, FakeDhcpServer};
use super::*;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn config() -> DhcpConfig {
    DhcpConfig::new(MAC.to_vec())
}

#[tokio::test(start_paused = true)]
async fn full_exchange_gives_a_lease() {
    let server = FakeDhcpServer::new(FakeConfig {
        mtu: Some(9000),
        ..FakeConfig::default()
    });
    let lease = acquire(&mut server.clone(), &config())
        .await
        .expect("lease");
    assert_eq!(lease.address, Ipv4Addr::new(192, 0, 2, 50));
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.routers, [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(lease.dns_servers, [Ipv4Addr::new(192, 0, 2, 53)]);
    assert_eq!(lease.mtu, Some(9000));
    assert_eq!(lease.server_id, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(lease.lease_time, Some(Duration::from_secs(3600)));
    assert_eq!(lease.renew_after, Some(Duration::from_secs(1800)));
    assert_eq!(lease.rebind_after, Some(Duration::from_secs(3150)));
    assert_eq!(
        server.sent_types(),
        [MessageType::Discover, MessageType::Request]
    );

    let state = server.state();
    let (discover, to) = &state.received[0];
    assert_eq!(*to, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));
    assert!(discover.flags().broadcast());
    assert_eq!(&discover.chaddr()[..6], &MAC);
    let (request, _) = &state.received[1];
    assert_eq!(
        request.xid(),
        discover.xid(),
        "REQUEST keeps the DISCOVER's xid"
    );
    assert_eq!(
        request.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(
            192, 0, 2, 50
        )))
    );
    assert_eq!(
        request.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 0, 2, 1)))
    );
    // Our own messages survive an encode/decode round trip.
    let bytes = request.to_vec().expect("encode");
    assert_eq!(&Message::from_bytes(&bytes).expect("decode"), request);
}

#[tokio::test(start_paused = true)]
async fn lost_packets_are_retransmitted_with_backoff() {
    let server = FakeDhcpServer::new(FakeConfig {
        drop_first: 3,
        ..FakeConfig::default()
    });
    let started = tokio::time::Instant::now();
    let lease = acquire(&mut server.clone(), &config())
        .await
        .expect("lease");
    assert_eq!(lease.address, Ipv4Addr::new(192, 0, 2, 50));
    assert_eq!(
        server.sent_types(),
        [
            MessageType::Discover,
            MessageType::Discover,
            MessageType::Discover,
            MessageType::Discover,
            MessageType::Request
        ]
    );
    // 1 + 2 + 4 s of backoff (plus at most 10 % jitter each) passed on the paused clock.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(7), "{waited:?}");
    assert!(waited <= Duration::from_millis(7700), "{waited:?}");
    let xids: Vec<u32> = server
        .state()
        .received
        .iter()
        .map(|(m, _)| m.xid())
        .collect();
    assert!(
        xids.iter().all(|x| *x == xids[0]),
        "retransmissions keep the xid"
    );
}

#[tokio::test(start_paused = true)]
async fn nak_starts_over_with_a_new_xid() {
    let server = FakeDhcpServer::new(FakeConfig {
        nak_requests: 1,
        ..FakeConfig::default()
    });
    acquire(&mut server.clone(), &config())
        .await
        .expect("lease");
    assert_eq!(
        server.sent_types(),
        [
            MessageType::Discover,
            MessageType::Request,
            MessageType::Discover,
            MessageType::Request
        ]
    );
    let state = server.state();
    assert_ne!(state.received[0].0.xid(), state.received[2].0.xid());
}

#[tokio::test(start_paused = true)]
async fn silence_ends_in_a_timeout_at_the_deadline() {
    let server = FakeDhcpServer::new(FakeConfig {
        silent: true,
        ..FakeConfig::default()
    });
    let started = tokio::time::Instant::now();
    let err = acquire(&mut server.clone(), &config())
        .await
        .expect_err("no server, no lease");
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert!(
        err.to_string()
            .starts_with("no DHCP OFFER after 5 DISCOVERs"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn renew_is_unicast_with_ciaddr_and_rebind_is_broadcast() {
    let server = FakeDhcpServer::new(FakeConfig::default());
    let lease = acquire(&mut server.clone(), &config())
        .await
        .expect("lease");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let renewed = renew(&mut server.clone(), &config(), &lease, false, deadline)
        .await
        .expect("renew")
        .expect("ACK");
    assert_eq!(renewed, lease);
    renew(&mut server.clone(), &config(), &lease, true, deadline)
        .await
        .expect("rebind")
        .expect("ACK");
    let state = server.state();
    let (renewal, to) = &state.received[2];
    assert_eq!(*to, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 67));
    assert_eq!(renewal.ciaddr(), lease.address);
    assert!(!renewal.flags().broadcast());
    assert!(renewal.opts().get(OptionCode::ServerIdentifier).is_none());
    assert_eq!(
        state.received[3].1,
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 67)
    );
}

#[tokio::test(start_paused = true)]
async fn renew_nak_means_start_over() {
    let server = FakeDhcpServer::new(FakeConfig::default());
    let mut lease = acquire(&mut server.clone(), &config())
        .await
        .expect("lease");
    lease.address = Ipv4Addr::new(192, 0, 2, 99);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let answer = renew(&mut server.clone(), &config(), &lease, false, deadline)
        .await
        .expect("renew exchange");
    assert_eq!(answer, None);
}

fn ack_with(opts: Vec<DhcpOption>) -> Message {
    let mut message = build(&config(), 7, MessageType::Ack, None).expect("build");
    message.set_yiaddr(Ipv4Addr::new(10, 1, 2, 3));
    let mut options = dhcproto::v4::DhcpOptions::new();
    for opt in opts {
        options.insert(opt);
    }
    message.set_opts(options);
    message
}

#[test]
fn lease_defaults_without_options() {
    let lease = lease_from_ack(&ack_with(vec![]), Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(lease.prefix_len, 8, "classful default for 10/8");
    assert_eq!(lease.lease_time, Some(Duration::from_secs(86_400)));
    assert_eq!(lease.renew_after, Some(Duration::from_secs(43_200)));
    assert!(lease.routers.is_empty() && lease.dns_servers.is_empty());
}

#[test]
fn lease_options_are_honoured() {
    let lease = lease_from_ack(
        &ack_with(vec![
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 192)),
            DhcpOption::AddressLeaseTime(u32::MAX),
            DhcpOption::DomainName("lab.example".into()),
            DhcpOption::InterfaceMtu(100),
        ]),
        Ipv4Addr::new(10, 0, 0, 1),
    );
    assert_eq!(lease.prefix_len, 26);
    assert_eq!(lease.lease_time, None, "infinite lease");
    assert_eq!(lease.renew_after, None);
    assert_eq!(lease.domain.as_deref(), Some("lab.example"));
    assert_eq!(lease.mtu, None, "an MTU below 576 is ignored");
    // A non-contiguous mask is ignored too.
    let odd = lease_from_ack(
        &ack_with(vec![DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0))]),
        Ipv4Addr::new(10, 0, 0, 1),
    );
    assert_eq!(odd.prefix_len, 8);
}

#[test]
fn build_rejects_bad_hardware_addresses() {
    let err =
        build(&DhcpConfig::new(vec![]), 1, MessageType::Discover, None).expect_err("empty MAC");
    assert!(
        err.to_string().contains("hardware address of 0 bytes"),
        "{err}"
    );
}
