//! `bmc_address`, `bmc_v6address` and `bmc_mac`, as IPA finds them with
//! `ipmitool lan print` / `lan6 print` on channels 1 to 11, asked directly with IPMI's
//! Get Channel Info and Get LAN Configuration Parameters.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ipmi::Ipmi;

const NETFN_APP: u8 = 0x06;
const NETFN_TRANSPORT: u8 = 0x0C;
const GET_CHANNEL_INFO: u8 = 0x42;
const GET_LAN_CONFIG: u8 = 0x02;
/// Channel medium type 802.3 LAN.
const MEDIUM_LAN: u8 = 0x04;
const PARAM_IP_ADDRESS: u8 = 3;
const PARAM_MAC_ADDRESS: u8 = 5;
const PARAM_IP6_ENABLES: u8 = 51;
const PARAM_IP6_STATUS: u8 = 55;
const PARAM_IP6_STATIC_ADDRESS: u8 = 56;
const PARAM_IP6_DYNAMIC_ADDRESS: u8 = 59;
/// Address status "active".
const IP6_ACTIVE: u8 = 0;
/// The channels IPA asks: 1 to 11 can be LAN channels.
const CHANNELS: std::ops::RangeInclusive<u8> = 1..=11;
/// At most this many IPv6 address slots are read when the BMC does not say how many.
const MAX_IP6_SLOTS: u8 = 16;

/// What the BMC reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BmcAddresses {
    /// `None` without an IPMI device; `"0.0.0.0"` when no LAN channel has an address.
    pub v4: Option<String>,
    /// `None` without an IPMI device; `"::/0"` when no channel has an active address.
    pub v6: Option<String>,
    /// The MAC of the first LAN channel with an address; `None` when unknown.
    pub mac: Option<String>,
}

/// Asks the BMC for its addresses. Requests that fail skip the channel, as the `ipmitool`
/// pipelines IPA runs do.
pub fn detect(ipmi: &dyn Ipmi) -> BmcAddresses {
    if !ipmi.present() {
        return BmcAddresses::default();
    }
    let mut v4 = None;
    let mut v6 = None;
    let mut mac = None;
    for channel in CHANNELS {
        if !is_lan_channel(ipmi, channel) {
            continue;
        }
        let address = ipv4_address(ipmi, channel);
        if v4.is_none() {
            v4 = address.filter(|a| !a.is_unspecified());
        }
        let ipv6 = active_ipv6(ipmi, channel);
        if v6.is_none() {
            v6 = ipv6;
        }
        if mac.is_none() {
            let has_address =
                address.is_some_and(|a| !a.is_unspecified()) || configured_ipv6(ipmi, channel);
            if has_address {
                mac = mac_address(ipmi, channel);
            }
        }
        if v4.is_some() && v6.is_some() && mac.is_some() {
            break;
        }
    }
    BmcAddresses {
        v4: Some(v4.map_or_else(|| "0.0.0.0".to_string(), |a| a.to_string())),
        v6: Some(v6.map_or_else(|| "::/0".to_string(), |a| a.to_string())),
        mac,
    }
}

fn is_lan_channel(ipmi: &dyn Ipmi, channel: u8) -> bool {
    match ipmi.request(NETFN_APP, GET_CHANNEL_INFO, &[channel]) {
        // [channel, medium type, protocol type, ...]
        Ok(info) => info
            .get(1)
            .is_some_and(|medium| medium & 0x7F == MEDIUM_LAN),
        Err(error) => {
            tracing::debug!(channel, "IPMI channel info: {error}");
            false
        }
    }
}

/// Parameter data after the revision byte.
fn lan_param(ipmi: &dyn Ipmi, channel: u8, param: u8, set: u8) -> Option<Vec<u8>> {
    match ipmi.request(NETFN_TRANSPORT, GET_LAN_CONFIG, &[channel, param, set, 0]) {
        Ok(answer) => answer.get(1..).map(<[u8]>::to_vec),
        Err(error) => {
            tracing::debug!(channel, param, set, "IPMI LAN parameter: {error}");
            None
        }
    }
}

fn ipv4_address(ipmi: &dyn Ipmi, channel: u8) -> Option<Ipv4Addr> {
    let data = lan_param(ipmi, channel, PARAM_IP_ADDRESS, 0)?;
    let octets: [u8; 4] = data.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

fn mac_address(ipmi: &dyn Ipmi, channel: u8) -> Option<String> {
    let data = lan_param(ipmi, channel, PARAM_MAC_ADDRESS, 0)?;
    let bytes = data.get(..6)?;
    if bytes.iter().all(|b| *b == 0) {
        return None;
    }
    Some(crate::net::interfaces::format_mac(bytes))
}

/// One IPv6 address slot: [selector, source/type, address(16), prefix length, status].
#[derive(Debug, Clone, Copy)]
struct Ip6Slot {
    source: u8,
    address: Ipv6Addr,
    status: u8,
}

fn ip6_slots(ipmi: &dyn Ipmi, channel: u8, param: u8, count: Option<u8>) -> Vec<Ip6Slot> {
    let mut slots = Vec::new();
    for set in 0..count.unwrap_or(MAX_IP6_SLOTS) {
        let Some(data) = lan_param(ipmi, channel, param, set) else {
            break;
        };
        let Some(address) = data.get(2..18).and_then(|b| <[u8; 16]>::try_from(b).ok()) else {
            break;
        };
        slots.push(Ip6Slot {
            source: data.get(1).copied().unwrap_or(0),
            address: Ipv6Addr::from(address),
            status: data.get(19).copied().unwrap_or(0xFF),
        });
    }
    slots
}

/// (static slots, dynamic slots) as the BMC announces them; `None` when it does not say.
fn ip6_slot_counts(ipmi: &dyn Ipmi, channel: u8) -> (Option<u8>, Option<u8>) {
    match lan_param(ipmi, channel, PARAM_IP6_STATUS, 0) {
        Some(data) => (data.first().copied(), data.get(1).copied()),
        None => (None, None),
    }
}

/// IPA's `get_bmc_v6address` for one channel: IPv6 must be enabled (IPv6 only or both);
/// then the first active dynamic address from SLAAC or DHCPv6, else the first active,
/// enabled static address; never `::`.
fn active_ipv6(ipmi: &dyn Ipmi, channel: u8) -> Option<Ipv6Addr> {
    let enables = lan_param(ipmi, channel, PARAM_IP6_ENABLES, 0)?;
    if !matches!(enables.first(), Some(1) | Some(2)) {
        return None;
    }
    let (static_count, dynamic_count) = ip6_slot_counts(ipmi, channel);
    let dynamic = ip6_slots(ipmi, channel, PARAM_IP6_DYNAMIC_ADDRESS, dynamic_count)
        .into_iter()
        .find(|slot| {
            slot.status == IP6_ACTIVE
                && matches!(slot.source & 0x0F, 1 | 2)
                && !slot.address.is_unspecified()
        });
    if let Some(slot) = dynamic {
        return Some(slot.address);
    }
    ip6_slots(ipmi, channel, PARAM_IP6_STATIC_ADDRESS, static_count)
        .into_iter()
        .find(|slot| {
            slot.status == IP6_ACTIVE && slot.source & 0x80 != 0 && !slot.address.is_unspecified()
        })
        .map(|slot| slot.address)
}

/// IPA's test in `get_bmc_mac` for a channel without IPv4: any IPv6 address, static or
/// dynamic, that is neither `::...` nor link-local.
fn configured_ipv6(ipmi: &dyn Ipmi, channel: u8) -> bool {
    let (static_count, dynamic_count) = ip6_slot_counts(ipmi, channel);
    ip6_slots(ipmi, channel, PARAM_IP6_STATIC_ADDRESS, static_count)
        .into_iter()
        .chain(ip6_slots(
            ipmi,
            channel,
            PARAM_IP6_DYNAMIC_ADDRESS,
            dynamic_count,
        ))
        .any(|slot| {
            let segments = slot.address.segments();
            segments[0] != 0 && segments[0] & 0xFFC0 != 0xFE80
        })
}

#[cfg(test)]
mod tests {
    use super::super::ipmi::FakeIpmi;
    use super::*;

    fn lan_channel(fake: &mut FakeIpmi, channel: u8) {
        fake.answer(
            NETFN_APP,
            GET_CHANNEL_INFO,
            &[channel],
            &[0, channel, 0x04, 0x01],
        );
    }

    fn param(fake: &mut FakeIpmi, channel: u8, param: u8, set: u8, data: &[u8]) {
        let mut answer = vec![0, 0x11];
        answer.extend_from_slice(data);
        fake.answer(
            NETFN_TRANSPORT,
            GET_LAN_CONFIG,
            &[channel, param, set, 0],
            &answer,
        );
    }

    fn ip6_slot(source: u8, address: &str, status: u8) -> Vec<u8> {
        let mut data = vec![0, source];
        data.extend_from_slice(&address.parse::<Ipv6Addr>().unwrap().octets());
        data.extend_from_slice(&[64, status]);
        data
    }

    #[test]
    fn no_device_means_null_addresses() {
        let fake = FakeIpmi::default();
        assert_eq!(detect(&fake), BmcAddresses::default());
        assert!(fake.requests.lock().unwrap().is_empty());
    }

    #[test]
    fn first_lan_channel_with_an_address_wins() {
        let mut fake = FakeIpmi {
            present: true,
            ..FakeIpmi::default()
        };
        // Channel 1 is LAN but unconfigured, channel 2 is not LAN, channel 3 has it all.
        lan_channel(&mut fake, 1);
        param(&mut fake, 1, PARAM_IP_ADDRESS, 0, &[0, 0, 0, 0]);
        param(&mut fake, 1, PARAM_IP6_ENABLES, 0, &[0]);
        fake.answer(NETFN_APP, GET_CHANNEL_INFO, &[2], &[0, 2, 0x0C, 0x01]);
        lan_channel(&mut fake, 3);
        param(&mut fake, 3, PARAM_IP_ADDRESS, 0, &[192, 0, 2, 17]);
        param(
            &mut fake,
            3,
            PARAM_MAC_ADDRESS,
            0,
            &[0x3c, 0xec, 0xef, 1, 2, 3],
        );
        param(&mut fake, 3, PARAM_IP6_ENABLES, 0, &[2]);
        param(&mut fake, 3, PARAM_IP6_STATUS, 0, &[1, 2, 0]);
        param(
            &mut fake,
            3,
            PARAM_IP6_DYNAMIC_ADDRESS,
            0,
            &ip6_slot(1, "fe80::1", 4),
        );
        param(
            &mut fake,
            3,
            PARAM_IP6_DYNAMIC_ADDRESS,
            1,
            &ip6_slot(2, "2001:db8::17", 0),
        );
        let found = detect(&fake);
        assert_eq!(found.v4.as_deref(), Some("192.0.2.17"));
        assert_eq!(found.v6.as_deref(), Some("2001:db8::17"));
        assert_eq!(found.mac.as_deref(), Some("3c:ec:ef:01:02:03"));
    }

    #[test]
    fn a_bmc_without_addresses_reports_ipas_placeholders() {
        let mut fake = FakeIpmi {
            present: true,
            ..FakeIpmi::default()
        };
        lan_channel(&mut fake, 1);
        param(&mut fake, 1, PARAM_IP_ADDRESS, 0, &[0, 0, 0, 0]);
        param(
            &mut fake,
            1,
            PARAM_MAC_ADDRESS,
            0,
            &[0x3c, 0xec, 0xef, 1, 2, 3],
        );
        param(&mut fake, 1, PARAM_IP6_ENABLES, 0, &[1]);
        param(&mut fake, 1, PARAM_IP6_STATUS, 0, &[1, 0, 0]);
        param(
            &mut fake,
            1,
            PARAM_IP6_STATIC_ADDRESS,
            0,
            &ip6_slot(0x00, "2001:db8::5", 0),
        );
        let found = detect(&fake);
        assert_eq!(found.v4.as_deref(), Some("0.0.0.0"));
        assert_eq!(
            found.v6.as_deref(),
            Some("::/0"),
            "the static slot is disabled"
        );
        assert_eq!(
            found.mac.as_deref(),
            Some("3c:ec:ef:01:02:03"),
            "a configured IPv6 address is enough for the MAC, as in IPA"
        );
    }
}
