//! Carries a static-network [`Plan`] out through a [`StaticControl`] (rtnetlink in
//! [`super::link::NetlinkLinks`], `FakeStatic` in tests), bounded in time, and reports what
//! was configured and what failed, link by link, as a console table.
//!
//! A failed action fails its link; what depends on that link (ports of a bond that was not
//! created, VLANs on a missing parent, addresses and routes) is skipped with the reason, and
//! everything else still applies.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::link::{Link, LinkError};
use super::static_config::{Action, MachineLink, Plan, PlannedLink, Role};

/// The link operations static configuration needs.
pub trait StaticControl: Send + Sync {
    /// Every link of the machine (to match NICs by MAC).
    fn links(&self) -> impl Future<Output = Result<Vec<Link>, LinkError>> + Send;
    /// Carries out one action; creating a link that already exists (the agent restarted)
    /// succeeds.
    fn apply(&self, action: &Action) -> impl Future<Output = Result<(), LinkError>> + Send;
}

/// Bounds and side files.
#[derive(Debug, Clone)]
pub struct StaticOptions {
    /// One action may take this long.
    pub action_timeout: Duration,
    /// The whole plan may take this long; actions not started by then are reported.
    pub total_timeout: Duration,
    /// Where DNS servers are written (only when the plan has some).
    pub resolv_conf: PathBuf,
}

impl Default for StaticOptions {
    fn default() -> Self {
        StaticOptions {
            action_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(30),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// The machine's NICs for the planner: Ethernet links with their permanent MAC when the
/// kernel reports one.
pub fn machine_links(links: &[Link]) -> Vec<MachineLink> {
    links
        .iter()
        .filter(|link| link.ethernet && !link.loopback)
        .map(|link| MachineLink {
            name: link.name.clone(),
            mac: if link.perm_mac.iter().any(|b| *b != 0) {
                link.perm_mac.clone()
            } else {
                link.mac.clone()
            },
        })
        .collect()
}

/// How one planned link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutcome {
    Configured,
    /// The first error on the link (or why it was skipped).
    Failed(String),
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticLinkReport {
    pub link: PlannedLink,
    pub outcome: LinkOutcome,
}

/// What static configuration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticReport {
    /// Where the document came from (for the console).
    pub source: String,
    pub links: Vec<StaticLinkReport>,
    /// Problems of the plan (links not found, bad values), then of applying.
    pub problems: Vec<String>,
    pub dns: Vec<IpAddr>,
    pub elapsed: Duration,
}

impl StaticReport {
    /// Links bring-up must leave alone: the configured ones without an `ipv4_dhcp` network
    /// (failed ones too: half-configured links get no DHCP on top).
    pub fn exclude_from_dhcp(&self) -> Vec<String> {
        self.links
            .iter()
            .filter(|l| !l.link.dhcp)
            .map(|l| l.link.name.clone())
            .collect()
    }

    pub fn failed(&self) -> usize {
        self.links
            .iter()
            .filter(|l| matches!(l.outcome, LinkOutcome::Failed(_)))
            .count()
    }
}

fn role_text(role: &Role) -> String {
    match role {
        Role::Physical => "NIC".into(),
        Role::Bond => "bond".into(),
        Role::BondPort(bond) => format!("port of {bond}"),
        Role::Vlan => "VLAN".into(),
    }
}

impl fmt::Display for StaticReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "static network from {}:", self.source)?;
        writeln!(
            f,
            "{:<16} {:<16} {:<24} {:<28} result",
            "link", "role", "network_data id", "address"
        )?;
        for row in &self.links {
            let link = &row.link;
            let addresses: Vec<String> = link
                .addresses
                .iter()
                .map(|(a, p)| format!("{a}/{p}"))
                .collect();
            let address = match (addresses.is_empty(), link.dhcp) {
                (true, true) => "DHCP".to_string(),
                (true, false) => "-".to_string(),
                (false, _) => addresses.join(" "),
            };
            let result = match &row.outcome {
                LinkOutcome::Configured if link.gateways.is_empty() => "configured".to_string(),
                LinkOutcome::Configured => {
                    let gateways: Vec<String> =
                        link.gateways.iter().map(ToString::to_string).collect();
                    format!("configured, gateway {}", gateways.join(" "))
                }
                LinkOutcome::Failed(e) => format!("FAILED: {e}"),
            };
            writeln!(
                f,
                "{:<16} {:<16} {:<24} {address:<28} {result}",
                link.name,
                role_text(&link.role),
                link.id
            )?;
        }
        for problem in &self.problems {
            writeln!(f, "problem: {problem}")?;
        }
        if !self.dns.is_empty() {
            let servers: Vec<String> = self.dns.iter().map(ToString::to_string).collect();
            writeln!(f, "DNS servers: {}", servers.join(", "))?;
        }
        write!(
            f,
            "static network applied in {:.1} s: {} links configured, {} failed, {} problems",
            self.elapsed.as_secs_f64(),
            self.links.len() - self.failed(),
            self.failed(),
            self.problems.len()
        )
    }
}

/// Applies `data` to this machine over rtnetlink: lists the links, plans, applies, and logs
/// the report table. `source` names where the document came from.
pub async fn configure(
    data: &rivet_protocol::network_data::NetworkData,
    source: &str,
    options: &StaticOptions,
) -> StaticReport {
    let started = Instant::now();
    let report = match super::link::NetlinkLinks::new() {
        Ok(control) => match StaticControl::links(&control).await {
            Ok(links) => {
                let plan = super::static_config::plan(data, &machine_links(&links));
                crate::init::load_modules(&plan.modules(), "static network");
                apply_plan(&control, &plan, source, options).await
            }
            Err(e) => StaticReport {
                source: source.to_string(),
                problems: vec![format!("listing links: {e}; nothing configured")],
                elapsed: started.elapsed(),
                ..StaticReport::default()
            },
        },
        Err(e) => StaticReport {
            source: source.to_string(),
            problems: vec![format!("{e}; nothing configured")],
            elapsed: started.elapsed(),
            ..StaticReport::default()
        },
    };
    for line in report.to_string().lines() {
        tracing::info!("{line}");
    }
    report
}

/// The links an action needs besides its own (a bond for its port, a parent for a VLAN).
fn depends_on(action: &Action) -> Vec<&str> {
    match action {
        Action::Enslave { bond, .. } => vec![bond],
        Action::CreateVlan { parent, .. } => vec![parent],
        _ => Vec::new(),
    }
}

/// Applies `plan` in order, each action bounded by `action_timeout` and the whole by
/// `total_timeout`, then writes the DNS servers.
pub async fn apply_plan<C: StaticControl>(
    control: &C,
    plan: &Plan,
    source: &str,
    options: &StaticOptions,
) -> StaticReport {
    let started = Instant::now();
    let deadline = started + options.total_timeout;
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = plan.problems.clone();
    for action in &plan.actions {
        let link = match action {
            // A port whose bond cannot have it is the port's failure.
            Action::Enslave { slave, .. } => slave.clone(),
            _ => action.link().to_string(),
        };
        if failures.contains_key(&link) {
            continue;
        }
        if let Some(failed) = depends_on(action)
            .into_iter()
            .find(|name| failures.contains_key(*name))
        {
            failures.insert(link, format!("not done: {failed} failed"));
            continue;
        }
        let now = Instant::now();
        if now >= deadline {
            failures.insert(
                link,
                format!(
                    "not done: static configuration took longer than {} s",
                    options.total_timeout.as_secs()
                ),
            );
            continue;
        }
        let bound = options.action_timeout.min(deadline - now);
        let result = match tokio::time::timeout(bound, control.apply(action)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "{action}: no answer within {} ms",
                bound.as_millis()
            )),
        };
        match result {
            Ok(()) => tracing::debug!("static network: {action}"),
            Err(e) => {
                tracing::warn!("static network: {action}: {e}");
                failures.insert(link, e);
            }
        }
    }
    if !plan.dns.is_empty() {
        let text = super::bringup::resolv_conf_text(&plan.dns, &BTreeMap::new());
        if let Err(e) = super::bringup::write_resolv_conf(&options.resolv_conf, &text) {
            problems.push(format!("DNS servers not written: {e}"));
        }
    }
    let links = plan
        .links
        .iter()
        .map(|link| StaticLinkReport {
            link: link.clone(),
            outcome: match failures.get(&link.name) {
                Some(e) => LinkOutcome::Failed(e.clone()),
                None => LinkOutcome::Configured,
            },
        })
        .collect();
    StaticReport {
        source: source.to_string(),
        links,
        problems,
        dns: plan.dns.clone(),
        elapsed: started.elapsed(),
    }
}

#[cfg(test)]
#[path = "static_apply_tests.rs"]
mod tests;
