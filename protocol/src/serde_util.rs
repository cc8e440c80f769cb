//! Serde helpers that keep "absent" and "null" apart, so messages re-serialize exactly.
//!
//! Serde maps a JSON `null` to `None` for any `Option`, which loses the difference between a
//! key that was sent as null and one that was not sent. Ironic sends many keys as null (it
//! copies `dict.get()` results), so fields that may be either use one of these:
//! - `Option<Option<T>>` with [`double_option`]: `None` = absent, `Some(None)` = null;
//! - `Option<serde_json::Value>` with [`present`]: `None` = absent, `Some(Value::Null)` = null.
//!
//! Both go with `#[serde(default, skip_serializing_if = "Option::is_none")]`.

use serde::{Deserialize, Deserializer};

/// Deserializes a present key into `Some(..)`, null included (`Some(None)`).
pub(crate) fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Deserializes a present key into `Some(value)`, null included (`Some(Value::Null)`).
pub(crate) fn present<'de, D>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error>
where
    D: Deserializer<'de>,
{
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// Formats a secret for `Debug`: whether it is set, never its value.
pub(crate) fn redacted<T>(secret: &Option<T>) -> &'static str {
    match secret {
        Some(_) => "<redacted>",
        None => "None",
    }
}
