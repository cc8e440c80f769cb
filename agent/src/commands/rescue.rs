//! `rescue.finalize_rescue` (spec §4; IPA/extensions/rescue.py).
//!
//! Ironic sends `{"rescue_password": <crypt hash>, "hashed": true}`; only with
//! `[conductor]require_rescue_password_hashed = False` does it send a plain password (without
//! `hashed`), which is hashed here with SHA-256 crypt as IPA does. The hash goes to
//! `<root>/etc/ipa-rescue-config/ipa-rescue-password` for the ramdisk's rescue-user unit,
//! `<root>/etc/.rescued` marks the rescue, and the agent stops serving (networking stays up).
//!
//! Stricter than IPA: a value marked `hashed` that is not a `$id$...` crypt string, or an
//! empty plain password, is refused (400) rather than written into the password file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use rivet_protocol::JsonObject;
use serde_json::Value;

use super::catalog::{blocking, Env};
use super::failure::Failure;
use super::output::CommandOutput;
use super::service::ApiError;
use super::shacrypt::{random_salt, sha256_crypt};
use crate::context::Lifecycle;

pub const PASSWORD_FILE: &str = "etc/ipa-rescue-config/ipa-rescue-password";
pub const RESCUED_MARKER: &str = "etc/.rescued";

/// The crypt hash to store, from the command's parameters.
fn password_hash(params: &JsonObject) -> Result<String, ApiError> {
    let password = match params.get("rescue_password") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(ApiError::InvalidParams(format!(
                "rescue_password must be a string, got {}",
                json_kind(other)
            )))
        }
    };
    let hashed = match params.get("hashed") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::InvalidParams(format!(
                "hashed must be a boolean, got {other}"
            )))
        }
    };
    if hashed {
        let looks_hashed = password.starts_with('$')
            && password.len() > 3
            && !password.contains(|c: char| c == ':' || c.is_whitespace());
        if !looks_hashed {
            return Err(ApiError::InvalidParams(
                "rescue_password is marked hashed but is not a crypt(3) hash ($id$...)".into(),
            ));
        }
        return Ok(password.to_string());
    }
    if password.is_empty() {
        return Err(ApiError::InvalidParams(
            "an empty rescue_password is refused".into(),
        ));
    }
    Ok(sha256_crypt(password.as_bytes(), &random_salt()))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) async fn finalize_rescue(
    params: &JsonObject,
    env: &Arc<Env>,
) -> Result<Result<CommandOutput, Failure>, ApiError> {
    let hash = password_hash(params)?;
    let root = env.host.root.clone();
    let written = blocking(move || {
        let path = root.join(PASSWORD_FILE);
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(hash.as_bytes())
        };
        write().map_err(|e| {
            Failure::execution(format!(
                "Rescue Operation failed when writing the hashed rescue password to the \
                 password file. Error writing {}: {e}",
                path.display()
            ))
        })?;
        let marker = root.join(RESCUED_MARKER);
        if let Err(e) = std::fs::File::create(&marker) {
            tracing::warn!(path = %marker.display(), error = %e, "cannot create the rescue marker");
        }
        Ok(())
    })
    .await;
    if let Err(failure) = written {
        return Ok(Err(failure));
    }
    tracing::info!("rescue finalized: stopping the API and heartbeats");
    env.ctx
        .set_lifecycle(Lifecycle::Stopped { lockdown: false });
    Ok(Ok(CommandOutput::none()))
}
