//! Posting the inspection data with IPA's retry policy (spec §7.4): up to 5 attempts on
//! connection errors, 5xx and 409, waiting `1.5 × 2^(n-1)` s clamped to 5..30 s between
//! them; any other status of 400 or more fails at once.

use std::time::Duration;

use rivet_protocol::inspection::{InspectionRequest, InspectionResponse};
use rivet_protocol::version::MicroVersion;
use url::Url;

use crate::ironic::client::{ClientError, IronicClient};
use crate::pace::Pacer;

/// How posting retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostPolicy {
    pub attempts: u32,
    pub min_wait: Duration,
    pub max_wait: Duration,
}

impl Default for PostPolicy {
    fn default() -> Self {
        PostPolicy {
            attempts: 5,
            min_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(30),
        }
    }
}

impl PostPolicy {
    /// The wait after failed attempt `attempt` (1-based): tenacity's
    /// `wait_exponential(multiplier=1.5, min, max)`.
    pub fn wait_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        Duration::from_secs_f64(1.5 * f64::from(1u32 << exponent))
            .clamp(self.min_wait, self.max_wait)
    }
}

/// Why posting failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("no inspection callback URL: set ipa-inspection-callback-url or ipa-api-url")]
    NoUrl,
    #[error("encoding the inspection data: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("posting the inspection data failed after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: ClientError },
    #[error("the inspection endpoint refused the data: {0}")]
    Refused(ClientError),
}

/// Posts `data` to `urls` (tried in order on connection errors) at `version` (none: no
/// header, as IPA), retrying as IPA does.
pub async fn post_inspection(
    client: &IronicClient,
    urls: &[Url],
    data: &InspectionRequest,
    version: Option<MicroVersion>,
    policy: PostPolicy,
    pacer: &Pacer,
) -> Result<InspectionResponse, PostError> {
    if urls.is_empty() {
        return Err(PostError::NoUrl);
    }
    let body = serde_json::to_vec(data).map_err(PostError::Encode)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        tracing::info!(
            urls = ?urls.iter().map(Url::as_str).collect::<Vec<_>>(),
            attempt,
            "posting the inspection data"
        );
        match client.continue_inspection(urls, &body, version).await {
            Ok(answer) => return Ok(answer),
            Err(error) if !error.is_retryable_for_inspection() => {
                return Err(PostError::Refused(error))
            }
            Err(error) if attempt >= policy.attempts => {
                return Err(PostError::GaveUp {
                    attempts: attempt,
                    last: error,
                })
            }
            Err(error) => {
                let wait = policy.wait_after(attempt);
                tracing::warn!("posting the inspection data failed, retrying in {wait:?}: {error}");
                pacer.sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_follow_tenacity() {
        let policy = PostPolicy::default();
        let waits: Vec<u128> = (1..=6).map(|n| policy.wait_after(n).as_millis()).collect();
        assert_eq!(waits, vec![5000, 5000, 6000, 12000, 24000, 30000]);
    }
}
