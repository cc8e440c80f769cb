//! Finding the advertise address: settings first, then the kernel's route to the API hosts.

use std::net::IpAddr;
use std::time::Duration;

use rivet_agent::ironic::advertise::{
    callback_url, find_advertise_host, AdvertiseError, AdvertiseHost,
};
use rivet_agent::net::interfaces::{FakeNetInfo, SysfsNetInfo};
use rivet_agent::pace::FakeClock;
use rivet_agent::settings::Protocol;

use crate::fake_ironic::FakeIronic;
use crate::interfaces::fixture_root;
use crate::support::{closed_port_url, pacer, secs, settings_for};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

fn fake_net() -> FakeNetInfo {
    let mut net = FakeNetInfo::new(fixture_root());
    net.addresses = vec![
        ("lo".into(), ip("127.0.0.1")),
        ("eth0".into(), ip("fe80::5054:ff:fe12:3456")),
        ("eth0".into(), ip("192.0.2.10")),
        ("eth0".into(), ip("192.0.2.11")),
        ("eth1".into(), ip("fd00::7")),
    ];
    net
}

#[tokio::test]
async fn the_real_route_to_a_loopback_ironic_is_127_0_0_1() {
    let ironic = FakeIronic::start().await;
    let settings = settings_for(&[&ironic.url]);
    let clock = FakeClock::auto();
    let host = find_advertise_host(
        &settings,
        &SysfsNetInfo::default(),
        &pacer(clock.clone(), 0.5),
    )
    .await
    .expect("an address");
    assert_eq!(host, AdvertiseHost::Ip(ip("127.0.0.1")));
    assert_eq!(
        callback_url(Protocol::Https, &host, 9999),
        "https://127.0.0.1:9999"
    );
    assert!(clock.slept().is_empty());
    assert_eq!(ironic.requests().len(), 1, "one probe of the API URL");
}

#[tokio::test]
async fn a_host_name_is_resolved_first() {
    let ironic = FakeIronic::start().await;
    let url = url::Url::parse(&format!(
        "http://localhost:{}",
        ironic.url.port().expect("a port")
    ))
    .expect("a URL");
    let settings = settings_for(&[&url]);
    let host = find_advertise_host(
        &settings,
        &SysfsNetInfo::default(),
        &pacer(FakeClock::auto(), 0.5),
    )
    .await
    .expect("an address");
    let found = host.ip().expect("an IP");
    assert!(found.is_loopback(), "{found}");
}

#[tokio::test]
async fn advertise_host_wins() {
    let mut settings = settings_for(&[&closed_port_url("127.0.0.1")]);
    settings.advertise_host = Some("fd00::5".into());
    settings.network_interface = Some("eth0".into());
    let net = fake_net();
    let host = find_advertise_host(&settings, &net, &pacer(FakeClock::auto(), 0.5))
        .await
        .expect("an address");
    assert_eq!(
        callback_url(Protocol::Http, &host, 9999),
        "http://[fd00::5]:9999"
    );
    assert!(net.route_queries.lock().expect("a lock").is_empty());
}

#[tokio::test]
async fn network_interface_gives_its_first_ipv4_address() {
    let mut settings = settings_for(&[&closed_port_url("127.0.0.1")]);
    settings.network_interface = Some("eth0".into());
    let net = fake_net();
    let host = find_advertise_host(&settings, &net, &pacer(FakeClock::auto(), 0.5))
        .await
        .expect("an address");
    assert_eq!(host, AdvertiseHost::Ip(ip("192.0.2.10")));

    settings.network_interface = Some("eth1".into());
    let err = find_advertise_host(&settings, &net, &pacer(FakeClock::auto(), 0.5))
        .await
        .expect_err("eth1 has only IPv6");
    assert!(
        matches!(err, AdvertiseError::NoInterfaceAddress { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "ipa-network-interface eth1 has no IPv4 address"
    );
}

#[tokio::test]
async fn link_local_sources_and_missing_routes_are_retried() {
    let ironic = FakeIronic::start().await;
    let mut settings = settings_for(&[&ironic.url]);
    settings.ip_lookup_attempts = 4;
    settings.ip_lookup_sleep = Duration::from_secs(10);
    let net = fake_net();
    net.routes.lock().expect("a lock").extend([
        Some(ip("169.254.10.1")),
        None,
        Some(ip("192.0.2.10")),
    ]);
    let clock = FakeClock::auto();
    let host = find_advertise_host(&settings, &net, &pacer(clock.clone(), 0.5))
        .await
        .expect("an address");
    assert_eq!(host, AdvertiseHost::Ip(ip("192.0.2.10")));
    assert_eq!(secs(&clock.slept()), vec![10.0, 10.0]);
    assert_eq!(
        *net.route_queries.lock().expect("a lock"),
        vec![ip("127.0.0.1"); 3]
    );
}

#[tokio::test]
async fn no_route_after_every_attempt_is_a_clear_error() {
    let ironic = FakeIronic::start().await;
    let mut settings = settings_for(&[&ironic.url]);
    settings.ip_lookup_attempts = 3;
    settings.ip_lookup_sleep = Duration::from_secs(10);
    let net = fake_net();
    let clock = FakeClock::auto();
    let err = find_advertise_host(&settings, &net, &pacer(clock.clone(), 0.5))
        .await
        .expect_err("no route");
    assert_eq!(secs(&clock.slept()), vec![10.0, 10.0]);
    let text = err.to_string();
    assert!(text.contains("after 3 attempts"), "{text}");
    assert!(text.contains("ipa-advertise-host"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
}

#[tokio::test]
async fn only_hosts_of_reachable_urls_are_routed_to() {
    let ironic = FakeIronic::start().await;
    let dead = closed_port_url("127.0.0.2");
    let settings = settings_for(&[&dead, &ironic.url]);
    let net = fake_net();
    net.routes
        .lock()
        .expect("a lock")
        .push_back(Some(ip("192.0.2.10")));
    find_advertise_host(&settings, &net, &pacer(FakeClock::auto(), 0.5))
        .await
        .expect("an address");
    assert_eq!(
        *net.route_queries.lock().expect("a lock"),
        vec![ip("127.0.0.1")]
    );

    // With no URL answering, every host is tried.
    let other_dead = closed_port_url("127.0.0.1");
    let settings = settings_for(&[&dead, &other_dead]);
    let net = fake_net();
    net.routes
        .lock()
        .expect("a lock")
        .extend([None, Some(ip("192.0.2.10"))]);
    find_advertise_host(&settings, &net, &pacer(FakeClock::auto(), 0.5))
        .await
        .expect("an address");
    assert_eq!(
        *net.route_queries.lock().expect("a lock"),
        vec![ip("127.0.0.2"), ip("127.0.0.1")]
    );
}
