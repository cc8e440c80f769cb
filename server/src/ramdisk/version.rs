//! Microversions on the ramdisk endpoints, negotiated as Ironic does: the request's
//! `X-OpenStack-Ironic-API-Version` (absent means the minimum, `latest` the maximum), 406
//! outside the supported range, and the three version headers on every answer.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rivet_protocol::version::MicroVersion;

use crate::error::{ApiError, IronicError};

pub const VERSION_HEADER: &str = "X-OpenStack-Ironic-API-Version";
const MIN_HEADER: &str = "X-OpenStack-Ironic-API-Minimum-Version";
const MAX_HEADER: &str = "X-OpenStack-Ironic-API-Maximum-Version";

/// The lowest microversion served (Ironic's too).
pub const MIN: MicroVersion = MicroVersion::new(1, 1);
/// The highest microversion served: what `GET /` reports as `default_version.version`.
/// 1.84 covers every ramdisk feature IPA 13 uses (1.68) plus `continue_inspection` answering
/// with node, config and token.
pub const MAX: MicroVersion = MicroVersion::new(1, 84);

/// Ramdisk endpoints exist from here on (below: 404).
pub const RAMDISK_ENDPOINTS: MicroVersion = MicroVersion::new(1, 22);
/// `agent_status` and `agent_status_message` in heartbeats.
pub const AGENT_STATUS: MicroVersion = MicroVersion::new(1, 72);

/// The microversion of the request being served (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested(pub MicroVersion);

/// The version a request asks for, or Ironic's 406.
pub fn requested(headers: &HeaderMap) -> Result<MicroVersion, ApiError> {
    let Some(value) = headers.get(VERSION_HEADER) else {
        return Ok(MIN);
    };
    let invalid = || {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("Invalid value for {VERSION_HEADER} header"),
        )
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    if text.eq_ignore_ascii_case("latest") {
        return Ok(MAX);
    }
    let version = MicroVersion::parse(text).ok_or_else(invalid)?;
    let range = format!("The supported version range is: [{MIN}, {MAX}].");
    if version.major != MAX.major {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Mutually exclusive versions requested. Version {version} requested but not \
                 supported by this service. {range}"
            ),
        ));
    }
    if version < MIN || version > MAX {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {version} was requested but the minor version is not supported by \
                 this service. {range}"
            ),
        ));
    }
    Ok(version)
}

/// Middleware: negotiates the version, stores it as [`Requested`], and adds the version
/// headers to the answer (also to a 406).
pub async fn negotiate(mut request: Request, next: Next) -> Response {
    let outcome = requested(request.headers());
    let version = outcome
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| MIN.to_string());
    let mut response = match outcome {
        Ok(version) => {
            request.extensions_mut().insert(Requested(version));
            next.run(request).await
        }
        Err(error) => IronicError(error).into_response(),
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (MIN_HEADER, MIN.to_string()),
        (MAX_HEADER, MAX.to_string()),
        (VERSION_HEADER, version),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            VERSION_HEADER,
            HeaderValue::from_str(value).expect("a header"),
        );
        headers
    }

    #[test]
    fn negotiates_like_ironic() {
        assert_eq!(requested(&HeaderMap::new()), Ok(MIN));
        assert_eq!(requested(&with("latest")), Ok(MAX));
        assert_eq!(requested(&with("1.62")), Ok(MicroVersion::new(1, 62)));
        for (value, needle) in [
            ("1.85", "Version 1.85 was requested"),
            ("2.1", "Mutually exclusive"),
            ("one", "Invalid value"),
            ("1.0", "Version 1.0 was requested"),
        ] {
            let error = requested(&with(value)).expect_err(value);
            assert_eq!(error.status, StatusCode::NOT_ACCEPTABLE);
            assert!(error.message.contains(needle), "{value}: {}", error.message);
        }
    }
}
