//! Value types of settings: how a text value from any source becomes a typed field, with
//! oslo.config's rules, and how a field is shown again (`show-config`, docs, warnings).
//!
//! Each type is named once in the registry next to its key, so the parser, the displayed
//! default and the "Type" column of `docs/configuration.md` cannot disagree.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use rivet_protocol::version::MicroVersion;
use url::Url;

use super::{Curve, NvmeSanitize, Protocol, Secret, TlsVersion};

/// A kind of setting value. `parse` gets the raw text of one source (already split from its
/// key) and returns the field's value, or what was expected instead.
pub trait ValueType {
    /// The type of the `Settings` field.
    type Out;
    /// What a valid value looks like, for the docs ("boolean", "seconds", ...).
    fn describe() -> String;
    /// Parses a raw value; the error says what was expected ("expected ...").
    fn parse(text: &str) -> Result<Self::Out, String>;
    /// Shows a value as a source would write it; empty when unset. Secrets are masked.
    fn show(value: &Self::Out) -> String;
    /// Whether values are secret: masked when shown and in warnings.
    const SECRET: bool = false;
}

const BOOL_EXPECTED: &str = "expected a boolean: 1, true, yes, on, 0, false, no or off";

/// oslo `BoolOpt`: `1/true/yes/on` and `0/false/no/off`, any case.
pub struct Bool;

impl ValueType for Bool {
    type Out = bool;
    fn describe() -> String {
        "boolean".into()
    }
    fn parse(text: &str) -> Result<bool, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(BOOL_EXPECTED.into()),
        }
    }
    fn show(value: &bool) -> String {
        value.to_string()
    }
}

fn parse_seconds(text: &str, min: u64) -> Result<Duration, String> {
    let expected = || {
        if min == 0 {
            "expected a number of seconds, e.g. 30 or 2.5".to_string()
        } else {
            format!("expected a number of seconds of at least {min}, e.g. 30 or 2.5")
        }
    };
    let seconds: f64 = text.trim().parse().map_err(|_| expected())?;
    // `min` is small (0 or 1); converting it to f64 is exact.
    if !seconds.is_finite() || seconds < min as f64 {
        return Err(expected());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| expected())
}

fn show_seconds(value: &Duration) -> String {
    if value.subsec_nanos() == 0 {
        value.as_secs().to_string()
    } else {
        value.as_secs_f64().to_string()
    }
}

/// A duration in seconds, whole or fractional, at least `MIN`.
pub struct Seconds<const MIN: u64 = 0>;

impl<const MIN: u64> ValueType for Seconds<MIN> {
    type Out = Duration;
    fn describe() -> String {
        if MIN == 0 {
            "seconds".into()
        } else {
            format!("seconds, at least {MIN}")
        }
    }
    fn parse(text: &str) -> Result<Duration, String> {
        parse_seconds(text, MIN)
    }
    fn show(value: &Duration) -> String {
        show_seconds(value)
    }
}

/// A limit in seconds where 0 means "no limit" (`None`).
pub struct Limit;

impl ValueType for Limit {
    type Out = Option<Duration>;
    fn describe() -> String {
        "seconds, 0 = no limit".into()
    }
    fn parse(text: &str) -> Result<Option<Duration>, String> {
        let limit = parse_seconds(text, 0)?;
        Ok((!limit.is_zero()).then_some(limit))
    }
    fn show(value: &Option<Duration>) -> String {
        value.as_ref().map_or_else(|| "0".into(), show_seconds)
    }
}

/// A whole number from `MIN` to `MAX`, stored as `T`.
pub struct Int<T, const MIN: i64, const MAX: i64>(PhantomData<T>);

/// A count with no upper bound worth checking.
pub type Count = Int<u32, 0, { u32::MAX as i64 }>;
/// A count of attempts: at least one.
pub type Attempts = Int<u32, 1, { u32::MAX as i64 }>;
/// A TCP port.
pub type Port = Int<u16, 0, 65535>;

impl<T, const MIN: i64, const MAX: i64> ValueType for Int<T, MIN, MAX>
where
    T: TryFrom<i64> + std::fmt::Display,
{
    type Out = T;
    fn describe() -> String {
        if MAX >= u32::MAX as i64 {
            format!("integer, at least {MIN}")
        } else {
            format!("integer, {MIN} to {MAX}")
        }
    }
    fn parse(text: &str) -> Result<T, String> {
        let expected = || format!("expected a whole number from {MIN} to {MAX}");
        let number: i64 = text.trim().parse().map_err(|_| expected())?;
        if !(MIN..=MAX).contains(&number) {
            return Err(expected());
        }
        T::try_from(number).map_err(|_| expected())
    }
    fn show(value: &T) -> String {
        value.to_string()
    }
}

/// Comma-separated `http(s)://` URLs (`ipa-api-url` may name several, tried in order).
pub struct Urls;

impl ValueType for Urls {
    type Out = Vec<Url>;
    fn describe() -> String {
        "comma-separated http(s) URLs".into()
    }
    fn parse(text: &str) -> Result<Vec<Url>, String> {
        let mut urls = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item.eq_ignore_ascii_case("mdns") {
                return Err("mDNS discovery is not supported by rivet; \
                            expected comma-separated http:// or https:// URLs"
                    .into());
            }
            let url = Url::parse(item).map_err(|e| {
                format!("expected comma-separated http:// or https:// URLs, `{item}` is not a URL ({e})")
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(format!(
                    "expected comma-separated http:// or https:// URLs, `{item}` is not one"
                ));
            }
            urls.push(url);
        }
        Ok(urls)
    }
    fn show(value: &Vec<Url>) -> String {
        let urls: Vec<&str> = value.iter().map(Url::as_str).collect();
        urls.join(",")
    }
}

/// Comma-separated words; blanks around items and empty items are dropped.
pub struct List;

impl ValueType for List {
    type Out = Vec<String>;
    fn describe() -> String {
        "comma-separated list".into()
    }
    fn parse(text: &str) -> Result<Vec<String>, String> {
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(String::from)
            .collect())
    }
    fn show(value: &Vec<String>) -> String {
        value.join(",")
    }
}

/// Comma-separated paths; blanks around items and empty items are dropped.
pub struct PathList;

impl ValueType for PathList {
    type Out = Vec<PathBuf>;
    fn describe() -> String {
        "comma-separated list of paths".into()
    }
    fn parse(text: &str) -> Result<Vec<PathBuf>, String> {
        Ok(List::parse(text)?.into_iter().map(PathBuf::from).collect())
    }
    fn show(value: &Vec<PathBuf>) -> String {
        let items: Vec<String> = value.iter().map(|p| p.display().to_string()).collect();
        items.join(",")
    }
}

/// Free text kept verbatim; empty means unset.
pub struct Text;

impl ValueType for Text {
    type Out = Option<String>;
    fn describe() -> String {
        "string".into()
    }
    fn parse(text: &str) -> Result<Option<String>, String> {
        Ok((!text.is_empty()).then(|| text.to_string()))
    }
    fn show(value: &Option<String>) -> String {
        value.clone().unwrap_or_default()
    }
}

/// A secret (the agent token): verbatim, never shown.
pub struct SecretText;

impl ValueType for SecretText {
    type Out = Option<Secret>;
    const SECRET: bool = true;
    fn describe() -> String {
        "string, secret".into()
    }
    fn parse(text: &str) -> Result<Option<Secret>, String> {
        Ok((!text.is_empty()).then(|| Secret(text.to_string())))
    }
    fn show(value: &Option<Secret>) -> String {
        match value {
            Some(_) => "***".into(),
            None => String::new(),
        }
    }
}

/// A path; empty means unset.
pub struct OptionalPath;

impl ValueType for OptionalPath {
    type Out = Option<PathBuf>;
    fn describe() -> String {
        "path".into()
    }
    fn parse(text: &str) -> Result<Option<PathBuf>, String> {
        Ok((!text.is_empty()).then(|| PathBuf::from(text)))
    }
    fn show(value: &Option<PathBuf>) -> String {
        value
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// A path that must be given.
pub struct RequiredPath;

impl ValueType for RequiredPath {
    type Out = PathBuf;
    fn describe() -> String {
        "path".into()
    }
    fn parse(text: &str) -> Result<PathBuf, String> {
        if text.is_empty() {
            return Err("expected a path, got an empty value".into());
        }
        Ok(PathBuf::from(text))
    }
    fn show(value: &PathBuf) -> String {
        value.display().to_string()
    }
}

/// An IP address (IPv6 may be written in brackets); empty means unset.
pub struct Ip;

impl ValueType for Ip {
    type Out = Option<IpAddr>;
    fn describe() -> String {
        "IP address".into()
    }
    fn parse(text: &str) -> Result<Option<IpAddr>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        bare.parse()
            .map(Some)
            .map_err(|_| "expected an IP address such as :: or 192.0.2.10".to_string())
    }
    fn show(value: &Option<IpAddr>) -> String {
        value.map(|ip| ip.to_string()).unwrap_or_default()
    }
}

/// An Ironic API microversion `X.Y`; empty means unset (discover it).
pub struct ApiVersion;

impl ValueType for ApiVersion {
    type Out = Option<MicroVersion>;
    fn describe() -> String {
        "API version X.Y".into()
    }
    fn parse(text: &str) -> Result<Option<MicroVersion>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        match text.split_once('.') {
            Some((major, minor)) if digits(major) && digits(minor) => {
                MicroVersion::parse(text).map(Some)
            }
            _ => None,
        }
        .ok_or_else(|| "expected an API version X.Y, e.g. 1.68".to_string())
    }
    fn show(value: &Option<MicroVersion>) -> String {
        value.map(|v| v.to_string()).unwrap_or_default()
    }
}

impl ValueType for Protocol {
    type Out = Protocol;
    fn describe() -> String {
        "http or https".into()
    }
    fn parse(text: &str) -> Result<Protocol, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "http" => Ok(Protocol::Http),
            "https" => Ok(Protocol::Https),
            _ => Err("expected http or https".into()),
        }
    }
    fn show(value: &Protocol) -> String {
        match value {
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
        .into()
    }
}

impl ValueType for NvmeSanitize {
    type Out = NvmeSanitize;
    fn describe() -> String {
        "off, crypto, block or overwrite".into()
    }
    fn parse(text: &str) -> Result<NvmeSanitize, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(NvmeSanitize::Off),
            "crypto" => Ok(NvmeSanitize::Crypto),
            "block" => Ok(NvmeSanitize::Block),
            "overwrite" => Ok(NvmeSanitize::Overwrite),
            _ => Err("expected off, crypto, block or overwrite".into()),
        }
    }
    fn show(value: &NvmeSanitize) -> String {
        match value {
            NvmeSanitize::Off => "off",
            NvmeSanitize::Crypto => "crypto",
            NvmeSanitize::Block => "block",
            NvmeSanitize::Overwrite => "overwrite",
        }
        .into()
    }
}

impl ValueType for TlsVersion {
    type Out = TlsVersion;
    fn describe() -> String {
        "1.2 or 1.3".into()
    }
    fn parse(text: &str) -> Result<TlsVersion, String> {
        match text.trim() {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            _ => Err("expected a TLS version: 1.2 or 1.3".into()),
        }
    }
    fn show(value: &TlsVersion) -> String {
        match value {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
        .into()
    }
}

impl ValueType for Curve {
    type Out = Curve;
    fn describe() -> String {
        "p256, p384 or p521".into()
    }
    fn parse(text: &str) -> Result<Curve, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "secp256r1" | "prime256v1" => Ok(Curve::P256),
            "p384" | "p-384" | "secp384r1" => Ok(Curve::P384),
            "p521" | "p-521" | "secp521r1" => Ok(Curve::P521),
            _ => Err("expected an elliptic curve: p256, p384 or p521".into()),
        }
    }
    fn show(value: &Curve) -> String {
        match value {
            Curve::P256 => "p256",
            Curve::P384 => "p384",
            Curve::P521 => "p521",
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_follow_oslo() {
        for text in ["1", "true", "TRUE", "Yes", "on", " On "] {
            assert_eq!(Bool::parse(text), Ok(true), "{text}");
        }
        for text in ["0", "false", "False", "NO", "off"] {
            assert_eq!(Bool::parse(text), Ok(false), "{text}");
        }
        for text in ["", "2", "y", "n", "enabled", "truee"] {
            let err = Bool::parse(text).unwrap_err();
            assert!(err.contains("expected a boolean"), "{text}: {err}");
        }
    }

    #[test]
    fn seconds_take_ints_and_floats() {
        assert_eq!(Seconds::<0>::parse("600"), Ok(Duration::from_secs(600)));
        assert_eq!(Seconds::<0>::parse("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(Seconds::<0>::parse("0"), Ok(Duration::ZERO));
        for text in ["", "-1", "ten", "1s", "NaN", "inf", "1e400"] {
            let err = Seconds::<0>::parse(text).unwrap_err();
            assert!(
                err.contains("expected a number of seconds"),
                "{text}: {err}"
            );
        }
        let err = Seconds::<1>::parse("0.5").unwrap_err();
        assert!(err.contains("at least 1"), "{err}");
        assert_eq!(Seconds::<0>::show(&Duration::from_secs(30)), "30");
        assert_eq!(Seconds::<0>::show(&Duration::from_millis(2500)), "2.5");
    }

    #[test]
    fn zero_limit_means_unlimited() {
        assert_eq!(Limit::parse("0"), Ok(None));
        assert_eq!(Limit::parse("3600"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(Limit::show(&None), "0");
        assert!(Limit::parse("-5").is_err());
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(Attempts::parse("6"), Ok(6));
        assert!(Attempts::parse("0").unwrap_err().contains("from 1 to"));
        assert_eq!(Port::parse("9999"), Ok(9999));
        let err = Port::parse("65536").unwrap_err();
        assert_eq!(err, "expected a whole number from 0 to 65535");
        assert!(Port::parse("99.5").is_err());
        assert_eq!(Int::<i64, 0, 99>::parse("99"), Ok(99));
        assert!(Int::<i64, 0, 99>::parse("100").is_err());
        assert!(Count::parse("-1").is_err());
    }

    #[test]
    fn url_lists_are_comma_separated() {
        let urls = Urls::parse("http://192.0.2.1:6385, https://ironic.example/,").unwrap();
        let urls: Vec<&str> = urls.iter().map(Url::as_str).collect();
        assert_eq!(urls, ["http://192.0.2.1:6385/", "https://ironic.example/"]);
        assert_eq!(Urls::parse(""), Ok(Vec::new()));
        for text in ["ftp://x", "192.0.2.1:6385", "http://a,nope", "file:///etc"] {
            let err = Urls::parse(text).unwrap_err();
            assert!(err.contains("http:// or https:// URLs"), "{text}: {err}");
        }
    }

    #[test]
    fn mdns_is_rejected_clearly() {
        for text in ["mdns", "MDNS", "http://a:1,mdns"] {
            let err = Urls::parse(text).unwrap_err();
            assert!(
                err.starts_with("mDNS discovery is not supported by rivet"),
                "{err}"
            );
        }
    }

    #[test]
    fn lists_drop_blanks() {
        assert_eq!(
            List::parse(" default , logs,,"),
            Ok(vec!["default".into(), "logs".into()])
        );
        assert_eq!(List::parse(""), Ok(Vec::new()));
    }

    #[test]
    fn path_lists_are_comma_separated() {
        let paths = PathList::parse(" /dev/loop3, ,/dev/nvme1n1").expect("paths");
        assert_eq!(
            paths,
            [PathBuf::from("/dev/loop3"), PathBuf::from("/dev/nvme1n1")]
        );
        assert_eq!(PathList::show(&paths), "/dev/loop3,/dev/nvme1n1");
        assert_eq!(PathList::parse(""), Ok(Vec::new()));
    }

    #[test]
    fn text_and_paths_treat_empty_as_unset() {
        assert_eq!(Text::parse(""), Ok(None));
        assert_eq!(
            Text::parse("01-aa-bb-cc-dd-ee-ff"),
            Ok(Some("01-aa-bb-cc-dd-ee-ff".into()))
        );
        assert_eq!(OptionalPath::parse(""), Ok(None));
        assert!(RequiredPath::parse("").is_err());
    }

    #[test]
    fn secrets_are_never_shown() {
        let token = SecretText::parse("s3cr3t-token").unwrap();
        assert_eq!(SecretText::show(&token), "***");
        assert_eq!(format!("{token:?}"), "Some(\"***\")");
        assert_eq!(SecretText::show(&None), "");
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(Ip::parse("::"), Ok(Some("::".parse().unwrap())));
        assert_eq!(Ip::parse("[fd00::1]"), Ok(Some("fd00::1".parse().unwrap())));
        assert_eq!(
            Ip::parse("192.0.2.10"),
            Ok(Some("192.0.2.10".parse().unwrap()))
        );
        assert_eq!(Ip::parse(""), Ok(None));
        assert!(Ip::parse("localhost")
            .unwrap_err()
            .contains("expected an IP address"));
    }

    #[test]
    fn api_versions_are_x_dot_y() {
        assert_eq!(
            ApiVersion::parse("1.68"),
            Ok(Some(MicroVersion::new(1, 68)))
        );
        for text in ["1", "1.", "v1.68", "1.68.1", "1.+5", "latest"] {
            let err = ApiVersion::parse(text).unwrap_err();
            assert!(err.contains("X.Y"), "{text}: {err}");
        }
    }

    #[test]
    fn tls_versions_curves_and_protocols() {
        assert_eq!(TlsVersion::parse("1.2"), Ok(TlsVersion::Tls12));
        assert_eq!(TlsVersion::parse("1.3"), Ok(TlsVersion::Tls13));
        assert!(TlsVersion::parse("1.1").unwrap_err().contains("1.2 or 1.3"));
        for (text, curve) in [
            ("p256", Curve::P256),
            ("P384", Curve::P384),
            ("secp384r1", Curve::P384),
            ("SECP521R1", Curve::P521),
            ("P-521", Curve::P521),
        ] {
            assert_eq!(Curve::parse(text), Ok(curve), "{text}");
        }
        assert!(Curve::parse("ed25519")
            .unwrap_err()
            .contains("p256, p384 or p521"));
        assert_eq!(Protocol::parse("HTTPS"), Ok(Protocol::Https));
        assert!(Protocol::parse("ftp")
            .unwrap_err()
            .contains("http or https"));
    }
}
