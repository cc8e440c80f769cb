//! Finding our node: the lookup loop (spec §1.6) and applying its answer (spec §1.5).

use std::time::Duration;

use reqwest::StatusCode;
use rivet_protocol::lookup::{LookupResponse, TokenDecision};
use serde_json::Value;

use crate::context::{AgentContext, Lifecycle};
use crate::ironic::client::{ClientError, IronicClient};
use crate::pace::Pacer;
use crate::settings::{Secret, Settings, TlsVersion};

/// The longest wait between two lookups.
pub const MAX_LOOKUP_INTERVAL: Duration = Duration::from_secs(60);

/// How long and how often to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupPolicy {
    /// Give up after this long (`ipa-lookup-timeout`).
    pub timeout: Duration,
    /// The shortest wait between attempts (`ipa-lookup-interval`).
    pub min_interval: Duration,
    /// The longest wait between attempts.
    pub max_interval: Duration,
}

impl LookupPolicy {
    pub fn from_settings(settings: &Settings) -> Self {
        LookupPolicy {
            timeout: settings.lookup_timeout,
            min_interval: settings.lookup_interval,
            max_interval: MAX_LOOKUP_INTERVAL,
        }
    }

    /// The wait after failed attempt `attempt` (1-based): uniform between the minimum and
    /// `2^(attempt-1)` s, the latter kept within `[min, max]` (tenacity's
    /// `wait_random_exponential`).
    pub fn backoff(&self, attempt: u32, pacer: &Pacer) -> Duration {
        let exponential = Duration::from_secs(1u64 << attempt.saturating_sub(1).min(32));
        let high = exponential.clamp(self.min_interval, self.max_interval.max(self.min_interval));
        let low = self.min_interval.as_secs_f64();
        Duration::from_secs_f64(pacer.jitter.uniform(low, high.as_secs_f64()).max(0.0))
    }
}

/// Lookup gave up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(
        "lookup of {macs} failed for {waited:?} ({attempts} attempts, ipa-lookup-timeout is \
         {timeout:?}); last error: {last_error}"
    )]
    TimedOut {
        macs: String,
        timeout: Duration,
        waited: Duration,
        attempts: u32,
        last_error: String,
    },
}

/// Looks the node up until Ironic answers with it, retrying every failure with randomized
/// exponential backoff until `policy.timeout`. A 404 means the node is not enrolled or not in
/// a state that allows lookup yet; a 409 means it is locked, and adds an escalating pause.
pub async fn lookup_node(
    client: &IronicClient,
    macs: &[String],
    node_uuid: Option<&str>,
    policy: LookupPolicy,
    pacer: &Pacer,
) -> Result<LookupResponse, LookupError> {
    let start = pacer.now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let error = match client.lookup(macs, node_uuid).await {
            Ok(answer) => {
                tracing::info!(node = %answer.node.uuid, attempt, "lookup succeeded");
                return Ok(answer);
            }
            Err(error) => error,
        };
        match error.status() {
            Some(StatusCode::NOT_FOUND) => tracing::warn!(
                "node not found yet (not enrolled, or not in a state that allows lookup); \
                 will retry: {error}"
            ),
            Some(StatusCode::CONFLICT) => {
                let pause = client.next_conflict_pause();
                tracing::warn!(
                    "the node is locked (conflict); pausing {pause:?} before retrying: {error}"
                );
                pacer.sleep(pause).await;
            }
            _ => tracing::warn!("lookup failed, will retry: {error}"),
        }
        let waited = pacer.now().saturating_duration_since(start);
        if waited >= policy.timeout {
            return Err(timed_out(macs, policy, waited, attempt, &error));
        }
        let wait = policy.backoff(attempt, pacer).min(policy.timeout - waited);
        pacer.sleep(wait).await;
    }
}

fn timed_out(
    macs: &[String],
    policy: LookupPolicy,
    waited: Duration,
    attempts: u32,
    error: &ClientError,
) -> LookupError {
    LookupError::TimedOut {
        macs: if macs.is_empty() {
            "no MAC address".into()
        } else {
            macs.join(",")
        },
        timeout: policy.timeout,
        waited,
        attempts,
        last_error: error.to_string(),
    }
}

/// What became of the token after a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Lookup handed out a token; it is in force now.
    TokenAdopted,
    /// Lookup's token was masked (already handed out); the one we had stays in force.
    KeptOwnToken,
    /// Lookup's token was absent or too short; ignored.
    TokenIgnored,
    /// Lookup's token was masked and we have none: the agent must not serve. The lifecycle is
    /// now `Stopped { lockdown: false }`.
    RefuseToServe,
}

impl ApplyOutcome {
    /// Whether the agent may go on to serve its API and heartbeat.
    pub fn may_serve(self) -> bool {
        self != ApplyOutcome::RefuseToServe
    }
}

impl std::fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApplyOutcome::TokenAdopted => "token adopted from lookup",
            ApplyOutcome::KeptOwnToken => "token masked by Ironic; keeping the configured token",
            ApplyOutcome::TokenIgnored => "no valid token in the lookup answer; ignored",
            ApplyOutcome::RefuseToServe => "refusing to serve: token masked and none configured",
        })
    }
}

/// Takes in a lookup answer (spec §1.5): the node, `heartbeat_timeout`, the overrides, and
/// the token decision.
pub fn apply_lookup(ctx: &AgentContext, answer: &LookupResponse) -> ApplyOutcome {
    let config = &answer.config;
    let mut node = answer.node.clone();
    if config.agent_skip_bmc_detect == Some(true) {
        // IPA marks the cached node so that inventory skips BMC detection.
        tracing::info!("Ironic says BMC detection should be skipped");
        node.extra
            .insert("skip_bmc_detect".into(), Value::Bool(true));
    }
    let tls_min_version = config.tls_min_version.as_deref().and_then(|text| {
        let version = parse_tls_version(text);
        if version.is_none() {
            tracing::warn!("ignoring tls_min_version {text:?} from Ironic: not 1.2 or 1.3");
        }
        version
    });
    let decision = config.token_decision();
    let outcome = ctx.update_state(|state| {
        state.node = Some(node);
        match config.heartbeat_timeout {
            Some(seconds) if seconds > 0 => state.heartbeat_timeout = Duration::from_secs(seconds),
            _ => tracing::warn!(
                "lookup gave no usable heartbeat_timeout; keeping {:?}",
                state.heartbeat_timeout
            ),
        }
        if config.enable_bios_bootloader_install == Some(true) {
            state.enable_bios_bootloader_install = true;
        }
        if let Some(disable) = config.disable_deep_image_inspection {
            state.disable_deep_image_inspection = disable;
        }
        if let Some(formats) = &config.permitted_image_formats {
            state.permitted_image_formats = formats.clone();
        }
        if let Some(md5) = config.agent_md5_checksum_enable {
            state.md5_enabled = md5;
        }
        if let Some(version) = tls_min_version {
            tracing::info!(?version, "TLS minimum version set by Ironic");
            state.tls_min_version = version;
        }
        match decision {
            TokenDecision::Adopt(token) => {
                state.token = Some(Secret(token));
                ApplyOutcome::TokenAdopted
            }
            TokenDecision::Masked if state.token.is_some() => ApplyOutcome::KeptOwnToken,
            TokenDecision::Masked => ApplyOutcome::RefuseToServe,
            TokenDecision::Invalid => ApplyOutcome::TokenIgnored,
        }
    });
    match outcome {
        ApplyOutcome::TokenAdopted => tracing::debug!("{outcome}"),
        ApplyOutcome::KeptOwnToken => tracing::warn!(
            "the agent token was already handed out; keeping the configured one (ipa-agent-token)"
        ),
        ApplyOutcome::TokenIgnored => tracing::info!("{outcome}"),
        ApplyOutcome::RefuseToServe => {
            tracing::error!(
                "{outcome}: Ironic already handed out this node's token and the agent has none \
                 (was the agent restarted outside Ironic's control?)"
            );
            ctx.set_lifecycle(Lifecycle::Stopped { lockdown: false });
        }
    }
    outcome
}

/// `"1.2"` or `"1.3"` (also with a `TLSv` prefix).
pub fn parse_tls_version(text: &str) -> Option<TlsVersion> {
    let text = text.trim();
    let number = text
        .strip_prefix("TLSv")
        .or_else(|| text.strip_prefix("tlsv"))
        .unwrap_or(text);
    match number {
        "1.2" => Some(TlsVersion::Tls12),
        "1.3" => Some(TlsVersion::Tls13),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pace::{FakeClock, FixedJitter};

    fn pacer(fraction: f64) -> Pacer {
        Pacer {
            clock: FakeClock::auto(),
            jitter: Arc::new(FixedJitter(fraction)),
        }
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_maximum() {
        let policy = LookupPolicy {
            timeout: Duration::from_secs(600),
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
        };
        let top = pacer(1.0);
        let highs: Vec<u64> = (1..=9)
            .map(|attempt| policy.backoff(attempt, &top).as_secs())
            .collect();
        assert_eq!(highs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        let bottom = pacer(0.0);
        assert_eq!(policy.backoff(8, &bottom), Duration::from_secs(1));
        assert_eq!(policy.backoff(1000, &top), Duration::from_secs(60));
    }

    #[test]
    fn backoff_never_goes_below_the_interval() {
        let policy = LookupPolicy {
            timeout: Duration::from_secs(600),
            min_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(60),
        };
        assert_eq!(policy.backoff(1, &pacer(1.0)), Duration::from_secs(5));
        assert_eq!(policy.backoff(4, &pacer(1.0)), Duration::from_secs(8));
        assert_eq!(policy.backoff(4, &pacer(0.0)), Duration::from_secs(5));
    }

    #[test]
    fn tls_versions() {
        assert_eq!(parse_tls_version("1.3"), Some(TlsVersion::Tls13));
        assert_eq!(parse_tls_version("1.2"), Some(TlsVersion::Tls12));
        assert_eq!(parse_tls_version("TLSv1.3"), Some(TlsVersion::Tls13));
        assert_eq!(parse_tls_version("1.1"), None);
    }
}
