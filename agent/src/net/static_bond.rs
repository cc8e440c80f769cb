//! Bond modes and driver options from network_data (`bond_mode`, `bond_<option>`), checked
//! and converted to the kernel's values, ready for netlink (`IFLA_BOND_*`). Names and numbers
//! are those of the kernel's bonding documentation (`/sys/class/net/<bond>/bonding/*`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use rivet_protocol::network_data::Link;

const MODES: [&str; 7] = [
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
];

/// The kernel's mode number for a mode name or number (`802.3ad` or `4`). `802.1ad`, a typo
/// of the nova spec's example, reads as `802.3ad`.
pub fn bond_mode(text: &str) -> Result<u8, String> {
    let text = text.trim();
    if text == "802.1ad" {
        return Ok(4);
    }
    if let Some(mode) = MODES.iter().position(|m| m.eq_ignore_ascii_case(text)) {
        return Ok(mode as u8);
    }
    match text.parse::<u8>() {
        Ok(mode) if usize::from(mode) < MODES.len() => Ok(mode),
        _ => Err(format!(
            "bond_mode {text:?} is not one of {} (or 0-6)",
            MODES.join(", ")
        )),
    }
}

/// The name of a mode number.
pub fn mode_name(mode: u8) -> &'static str {
    MODES.get(usize::from(mode)).copied().unwrap_or("unknown")
}

/// A bond driver option, with the kernel's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BondOption {
    MiiMon(u32),
    UpDelay(u32),
    DownDelay(u32),
    UseCarrier(bool),
    ArpInterval(u32),
    ArpIpTarget(Vec<Ipv4Addr>),
    /// 0 none, 1 active, 2 backup, 3 all, 4 filter, 5 filter_active, 6 filter_backup.
    ArpValidate(u32),
    /// 0 any, 1 all.
    ArpAllTargets(u32),
    /// The kernel name of the primary port (resolved to an index when applied).
    Primary(String),
    /// 0 always, 1 better, 2 failure.
    PrimaryReselect(u8),
    /// 0 none, 1 active, 2 follow.
    FailOverMac(u8),
    /// 0 layer2, 1 layer3+4, 2 layer2+3, 3 encap2+3, 4 encap3+4, 5 vlan+srcmac.
    XmitHashPolicy(u8),
    ResendIgmp(u32),
    /// `num_grat_arp` / `num_unsol_na` (one kernel setting).
    NumPeerNotif(u8),
    AllSlavesActive(u8),
    MinLinks(u32),
    LpInterval(u32),
    PacketsPerSlave(u32),
    /// 0 slow, 1 fast.
    LacpRate(u8),
    /// 0 stable, 1 bandwidth, 2 count.
    AdSelect(u8),
    AdActorSysPrio(u16),
    AdUserPortKey(u16),
    AdActorSystem([u8; 6]),
    TlbDynamicLb(bool),
}

impl fmt::Display for BondOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BondOption::MiiMon(v) => write!(f, "miimon={v}"),
            BondOption::UpDelay(v) => write!(f, "updelay={v}"),
            BondOption::DownDelay(v) => write!(f, "downdelay={v}"),
            BondOption::UseCarrier(v) => write!(f, "use_carrier={}", u8::from(*v)),
            BondOption::ArpInterval(v) => write!(f, "arp_interval={v}"),
            BondOption::ArpIpTarget(v) => {
                let list: Vec<String> = v.iter().map(ToString::to_string).collect();
                write!(f, "arp_ip_target={}", list.join(","))
            }
            BondOption::ArpValidate(v) => write!(f, "arp_validate={v}"),
            BondOption::ArpAllTargets(v) => write!(f, "arp_all_targets={v}"),
            BondOption::Primary(v) => write!(f, "primary={v}"),
            BondOption::PrimaryReselect(v) => write!(f, "primary_reselect={v}"),
            BondOption::FailOverMac(v) => write!(f, "fail_over_mac={v}"),
            BondOption::XmitHashPolicy(v) => write!(
                f,
                "xmit_hash_policy={}",
                HASH_POLICIES.get(usize::from(*v)).copied().unwrap_or("?")
            ),
            BondOption::ResendIgmp(v) => write!(f, "resend_igmp={v}"),
            BondOption::NumPeerNotif(v) => write!(f, "num_grat_arp={v}"),
            BondOption::AllSlavesActive(v) => write!(f, "all_slaves_active={v}"),
            BondOption::MinLinks(v) => write!(f, "min_links={v}"),
            BondOption::LpInterval(v) => write!(f, "lp_interval={v}"),
            BondOption::PacketsPerSlave(v) => write!(f, "packets_per_slave={v}"),
            BondOption::LacpRate(v) => {
                write!(f, "lacp_rate={}", ["slow", "fast"][usize::from(*v & 1)])
            }
            BondOption::AdSelect(v) => write!(f, "ad_select={v}"),
            BondOption::AdActorSysPrio(v) => write!(f, "ad_actor_sys_prio={v}"),
            BondOption::AdUserPortKey(v) => write!(f, "ad_user_port_key={v}"),
            BondOption::AdActorSystem(v) => write!(
                f,
                "ad_actor_system={}",
                crate::net::interfaces::format_mac(v)
            ),
            BondOption::TlbDynamicLb(v) => write!(f, "tlb_dynamic_lb={}", u8::from(*v)),
        }
    }
}

const HASH_POLICIES: [&str; 6] = [
    "layer2",
    "layer3+4",
    "layer2+3",
    "encap2+3",
    "encap3+4",
    "vlan+srcmac",
];

/// A keyword from `names` (its index) or its number.
fn keyword(text: &str, names: &[&str]) -> Result<u8, String> {
    if let Some(index) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(index as u8);
    }
    match text.parse::<u8>() {
        Ok(n) if usize::from(n) < names.len() => Ok(n),
        _ => Err(format!("{text:?} is not one of {}", names.join(", "))),
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number in range"))
}

fn flag(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{text:?} is not 0 or 1")),
    }
}

/// One option from its network_data name (without `bond_`) and value.
fn option(
    name: &str,
    value: &str,
    names: &BTreeMap<&str, String>,
) -> Result<Option<BondOption>, String> {
    let value = value.trim();
    Ok(Some(match name {
        "miimon" => BondOption::MiiMon(number(value)?),
        "updelay" => BondOption::UpDelay(number(value)?),
        "downdelay" => BondOption::DownDelay(number(value)?),
        "use_carrier" => BondOption::UseCarrier(flag(value)?),
        "arp_interval" => BondOption::ArpInterval(number(value)?),
        "arp_ip_target" => BondOption::ArpIpTarget(
            value
                .split([',', ' '])
                .filter(|t| !t.is_empty())
                .map(|t| {
                    t.parse()
                        .map_err(|_| format!("{t:?} is not an IPv4 address"))
                })
                .collect::<Result<_, _>>()?,
        ),
        "arp_validate" => BondOption::ArpValidate(u32::from(keyword(
            value,
            &[
                "none",
                "active",
                "backup",
                "all",
                "filter",
                "filter_active",
                "filter_backup",
            ],
        )?)),
        "arp_all_targets" => BondOption::ArpAllTargets(u32::from(keyword(value, &["any", "all"])?)),
        "primary" => BondOption::Primary(names.get(value).cloned().unwrap_or(value.to_string())),
        "primary_reselect" => {
            BondOption::PrimaryReselect(keyword(value, &["always", "better", "failure"])?)
        }
        "fail_over_mac" => BondOption::FailOverMac(keyword(value, &["none", "active", "follow"])?),
        "xmit_hash_policy" | "hash_policy" => {
            BondOption::XmitHashPolicy(keyword(value, &HASH_POLICIES)?)
        }
        "resend_igmp" => BondOption::ResendIgmp(number(value)?),
        "num_grat_arp" | "num_unsol_na" => BondOption::NumPeerNotif(number(value)?),
        "all_slaves_active" => BondOption::AllSlavesActive(u8::from(flag(value)?)),
        "min_links" => BondOption::MinLinks(number(value)?),
        "lp_interval" => BondOption::LpInterval(number(value)?),
        "packets_per_slave" => BondOption::PacketsPerSlave(number(value)?),
        "lacp_rate" => BondOption::LacpRate(keyword(value, &["slow", "fast"])?),
        "ad_select" => BondOption::AdSelect(keyword(value, &["stable", "bandwidth", "count"])?),
        "ad_actor_sys_prio" => BondOption::AdActorSysPrio(number(value)?),
        "ad_user_port_key" => BondOption::AdUserPortKey(number(value)?),
        "ad_actor_system" => BondOption::AdActorSystem(
            super::static_config::parse_mac(value).ok_or(format!("{value:?} is not a MAC"))?,
        ),
        "tlb_dynamic_lb" => BondOption::TlbDynamicLb(flag(value)?),
        _ => return Ok(None),
    }))
}

/// The bond's driver options; bad and unknown ones are reported in `problems` and left out.
/// `names` maps network_data link ids to kernel names (for `primary`).
pub fn bond_options(
    link: &Link,
    names: &BTreeMap<&str, String>,
    problems: &mut Vec<String>,
) -> Vec<BondOption> {
    let mut options = Vec::new();
    for (name, value) in link.bond_options() {
        match option(&name, &value, names) {
            Ok(Some(found)) => {
                // `hash_policy` and `xmit_hash_policy` (or the two peer-notification
                // names) are one setting: the later key wins.
                options.retain(|o| std::mem::discriminant(o) != std::mem::discriminant(&found));
                options.push(found);
            }
            Ok(None) => problems.push(format!(
                "bond {}: option bond_{name} is not supported by rivet; ignored",
                link.id
            )),
            Err(e) => problems.push(format!("bond {}: bond_{name}: {e}; ignored", link.id)),
        }
    }
    options
}
