//! Root device hints (spec §10): parsing as IPA 13's `parse_root_device_hints`, matching as
//! oslo.utils' `specs_matcher`, and choosing the install disk as `get_os_install_device`,
//! plus rivet's strict mode (`rivet-strict-root-hints`): more than one match is an error.
//!
//! Pure functions over `&[BlockDevice]`; callers pass the devices they got from
//! [`super::writable_candidates`].

use std::fmt::Write as _;

use serde_json::Value;

use super::{BlockDevice, DeviceKind};

const GIB: f64 = (1u64 << 30) as f64;

/// Without hints, the smallest disk of at least this size is chosen (IPA).
pub const MIN_ROOT_DISK_BYTES: u64 = 4 << 30;

/// A hint key (spec §10.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintKey {
    Size,
    Model,
    Vendor,
    Serial,
    Wwn,
    WwnWithExtension,
    WwnVendorExtension,
    Name,
    Hctl,
    ByPath,
    Rotational,
    Tran,
}

impl HintKey {
    pub const ALL: [HintKey; 12] = [
        HintKey::Size,
        HintKey::Model,
        HintKey::Vendor,
        HintKey::Serial,
        HintKey::Wwn,
        HintKey::WwnWithExtension,
        HintKey::WwnVendorExtension,
        HintKey::Name,
        HintKey::Hctl,
        HintKey::ByPath,
        HintKey::Rotational,
        HintKey::Tran,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HintKey::Size => "size",
            HintKey::Model => "model",
            HintKey::Vendor => "vendor",
            HintKey::Serial => "serial",
            HintKey::Wwn => "wwn",
            HintKey::WwnWithExtension => "wwn_with_extension",
            HintKey::WwnVendorExtension => "wwn_vendor_extension",
            HintKey::Name => "name",
            HintKey::Hctl => "hctl",
            HintKey::ByPath => "by_path",
            HintKey::Rotational => "rotational",
            HintKey::Tran => "tran",
        }
    }

    fn from_name(name: &str) -> Option<HintKey> {
        HintKey::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An operator of oslo's `specs_matcher` grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`: numbers.
    NumEq,
    NumNe,
    NumLt,
    NumLe,
    NumGt,
    NumGe,
    /// `=`: numbers, meaning `>=`.
    NumAtLeast,
    /// `s==`, `s!=`, `s<`, `s<=`, `s>`, `s>=`: strings.
    StrEq,
    StrNe,
    StrLt,
    StrLe,
    StrGt,
    StrGe,
    /// `<in>`: the device value contains the hint value.
    In,
    /// `<or> a <or> b`: the device value equals one of them.
    Or,
    /// `<all-in>`: only meaningful for list literals; rejected (see [`parse_hints`]).
    AllIn,
    /// `<range-in> [ lo hi ]`: numbers only; rejected (see [`parse_hints`]).
    RangeIn,
}

/// Spellings in the order pyparsing tries them (`<range-in>`, `<or>`, `<all-in>`, then the
/// unary operators, `=` before `!=` and `s<=` before `s<`).
const OPERATORS: [(&str, Op); 17] = [
    ("<range-in>", Op::RangeIn),
    ("<or>", Op::Or),
    ("<all-in>", Op::AllIn),
    ("==", Op::NumEq),
    ("=", Op::NumAtLeast),
    ("!=", Op::NumNe),
    ("<in>", Op::In),
    (">=", Op::NumGe),
    ("<=", Op::NumLe),
    (">", Op::NumGt),
    ("<", Op::NumLt),
    ("s==", Op::StrEq),
    ("s!=", Op::StrNe),
    ("s<=", Op::StrLe),
    ("s<", Op::StrLt),
    ("s>=", Op::StrGe),
    ("s>", Op::StrGt),
];

impl Op {
    pub fn as_str(self) -> &'static str {
        OPERATORS
            .iter()
            .find(|(_, op)| *op == self)
            .map(|(s, _)| *s)
            .unwrap_or("?")
    }

    fn is_numeric(self) -> bool {
        matches!(
            self,
            Op::NumEq | Op::NumNe | Op::NumLt | Op::NumLe | Op::NumGt | Op::NumGe | Op::NumAtLeast
        )
    }
}

/// One parsed hint.
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    pub key: HintKey,
    pub expr: Expr,
}

/// What a hint compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `rotational`.
    Bool(bool),
    /// Every other key. String hints hold lowercased, URL-quoted values; `size` holds GiB.
    Compare { op: Op, values: Vec<String> },
}

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.expr {
            Expr::Bool(b) => write!(f, "{}={b}", self.key.as_str()),
            Expr::Compare { op, values } => {
                let sep = format!(" {} ", op.as_str());
                write!(
                    f,
                    "{}: {} {}",
                    self.key.as_str(),
                    op.as_str(),
                    values.join(&sep)
                )
            }
        }
    }
}

/// A parsed set of hints; a device must match all of them. Empty means "no hints".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RootDeviceHints {
    pub hints: Vec<Hint>,
}

/// Why hints were refused or no device could be chosen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HintError {
    #[error("root device hints must be a JSON object, got {0}")]
    NotAnObject(String),
    #[error("the hints \"{keys}\" are invalid. Valid hints are: \"{valid}\"")]
    UnknownKeys { keys: String, valid: String },
    #[error("root device hint \"{key}\": {reason}. Hint expression: {expression}")]
    Invalid {
        key: String,
        expression: String,
        reason: String,
    },
    #[error("no disk matches the root device hints {hints}; candidates:\n{report}")]
    NoMatch { hints: String, report: String },
    #[error("the root device hints {hints} match more than one disk and rivet-strict-root-hints is on; make them specific (serial, wwn or by_path). Candidates:\n{report}")]
    Ambiguous { hints: String, report: String },
    #[error("no disk of at least 4 GiB to install on (no root device hints given); candidates:\n{report}")]
    NoDiskBigEnough { report: String },
}

/// `urllib.parse.quote(text)`: everything but ASCII letters, digits and `_.-~/` as `%XX`.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"_.-~/".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// How string values (hint and device alike) are normalized: trimmed, lowercased, quoted.
pub fn normalize(value: &str) -> String {
    quote(&value.trim().to_lowercase())
}

/// Splits a lowercased expression into its leading operator and values, as IPA's
/// `_extract_hint_operator_and_values`.
fn split_operator(expression: &str) -> Result<(Option<Op>, Vec<String>), String> {
    let Some((spelling, op)) = OPERATORS.iter().find(|(s, _)| expression.starts_with(s)) else {
        return Ok((None, vec![expression.to_string()]));
    };
    let values: Vec<String> = expression
        .split(spelling)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect();
    if values.is_empty() {
        return Err(format!("operator \"{spelling}\" has no value"));
    }
    Ok((Some(*op), values))
}

fn invalid(key: HintKey, expression: &Value, reason: impl Into<String>) -> HintError {
    HintError::Invalid {
        key: key.as_str().to_string(),
        expression: expression.to_string(),
        reason: reason.into(),
    }
}

/// oslo's `bool_from_string(strict=True)`.
fn strict_bool(value: &Value) -> Option<bool> {
    let text = match value {
        Value::Bool(b) => return Some(*b),
        Value::String(s) => s.trim().to_lowercase(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    match text.as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

fn parse_size(value: &Value) -> Result<Expr, HintError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(invalid(HintKey::Size, value, "is not an integer value")),
    };
    let expression = text.trim().to_lowercase();
    if expression.is_empty() {
        return Err(invalid(HintKey::Size, value, "expression is empty"));
    }
    let (op, values) = split_operator(&expression).map_err(|r| invalid(HintKey::Size, value, r))?;
    let op = op.unwrap_or(Op::NumEq);
    match op {
        Op::RangeIn => {
            return Err(invalid(
                HintKey::Size,
                value,
                "is not an integer value: IPA 13 rejects \"<range-in>\" on size (Ironic 39 accepts it) and rivet follows IPA; use a numeric operator such as \">= 100\"",
            ))
        }
        op if !op.is_numeric() => {
            return Err(invalid(
                HintKey::Size,
                value,
                format!(
                    "operator \"{}\" compares strings, which never matches a size in IPA; use ==, !=, <, <=, >, >= or =",
                    op.as_str()
                ),
            ))
        }
        _ => {}
    }
    for v in &values {
        let n: i64 = v.trim_start_matches('+').parse().map_err(|_| {
            invalid(
                HintKey::Size,
                value,
                "is not an integer value (size is in GiB)",
            )
        })?;
        if n <= 0 {
            return Err(invalid(
                HintKey::Size,
                value,
                "should be a positive integer (GiB)",
            ));
        }
    }
    Ok(Expr::Compare { op, values })
}

fn parse_string(key: HintKey, value: &Value) -> Result<Expr, HintError> {
    let Value::String(text) = value else {
        return Err(invalid(key, value, "is not a string value"));
    };
    let expression = text.trim().to_lowercase();
    if expression.is_empty() {
        return Err(invalid(key, value, "expression is empty"));
    }
    let (op, values) = split_operator(&expression).map_err(|r| invalid(key, value, r))?;
    let op = match op {
        None => {
            return Ok(Expr::Compare {
                op: Op::StrEq,
                values: vec![quote(&expression)],
            })
        }
        Some(Op::AllIn) => {
            return Err(invalid(
                key,
                value,
                "\"<all-in>\" only compares against list literals, which no device value is (IPA fails matching it)",
            ))
        }
        Some(Op::RangeIn) => {
            return Err(invalid(
                key,
                value,
                "\"<range-in>\" only compares numbers (IPA fails matching it on strings)",
            ))
        }
        Some(op) => op,
    };
    Ok(Expr::Compare {
        op,
        values: values.iter().map(|v| quote(v)).collect(),
    })
}

/// Parses a hint object as IPA's `parse_root_device_hints`: unknown keys are refused,
/// strings lowercased and URL-quoted, `size` a positive integer number of GiB, `rotational`
/// a strict boolean. `null` and `{}` mean no hints.
pub fn parse_hints(value: &Value) -> Result<RootDeviceHints, HintError> {
    let map = match value {
        Value::Null => return Ok(RootDeviceHints::default()),
        Value::Object(map) => map,
        other => return Err(HintError::NotAnObject(other.to_string())),
    };
    let mut unknown: Vec<&str> = map
        .keys()
        .filter(|k| HintKey::from_name(k).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        let mut valid: Vec<&str> = HintKey::ALL.iter().map(|k| k.as_str()).collect();
        valid.sort_unstable();
        return Err(HintError::UnknownKeys {
            keys: unknown.join(", "),
            valid: valid.join(", "),
        });
    }
    let mut hints = Vec::new();
    for (name, value) in map {
        let Some(key) = HintKey::from_name(name) else {
            continue;
        };
        let expr = match key {
            HintKey::Size => parse_size(value)?,
            HintKey::Rotational => Expr::Bool(
                strict_bool(value).ok_or_else(|| invalid(key, value, "is not a Boolean value"))?,
            ),
            _ => parse_string(key, value)?,
        };
        hints.push(Hint { key, expr });
    }
    Ok(RootDeviceHints { hints })
}

/// Parses the node's `skip_block_devices` (a list of hint objects); entries naming a RAID
/// volume (`volume_name`) are for RAID and left out, as IPA does.
pub fn parse_skip_list(value: &Value) -> Result<Vec<RootDeviceHints>, HintError> {
    let entries = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(entries) => entries,
        other => return Err(HintError::NotAnObject(other.to_string())),
    };
    let mut out = Vec::new();
    for entry in entries {
        if entry.get("volume_name").is_some() {
            continue;
        }
        let hints = parse_hints(entry)?;
        if hints.hints.is_empty() {
            return Err(HintError::NotAnObject(format!(
                "an empty skip_block_devices entry {entry}"
            )));
        }
        out.push(hints);
    }
    Ok(out)
}

/// The values of a device a string hint is compared with: serial and WWN in both the
/// sysfs/lsblk and the udev form (IPA collects them as lists, any element may match).
pub fn device_values(device: &BlockDevice, key: HintKey) -> Vec<String> {
    let one = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
    match key {
        HintKey::Name => vec![format!("/dev/{}", device.name)],
        HintKey::Model => one(&device.model),
        HintKey::Vendor => one(&device.vendor),
        HintKey::Hctl => one(&device.hctl),
        HintKey::ByPath => one(&device.by_path),
        HintKey::Tran => one(&device.tran),
        HintKey::WwnWithExtension => one(&device.wwn_with_extension),
        HintKey::WwnVendorExtension => one(&device.wwn_vendor_extension),
        HintKey::Wwn => {
            let mut v = one(&device.wwn);
            v.extend(
                device
                    .wwn_with_extension
                    .iter()
                    .filter(|w| Some(*w) != device.wwn.as_ref())
                    .cloned(),
            );
            v
        }
        HintKey::Serial => {
            let mut v = one(&device.serial);
            v.extend(udev_serial(device));
            v
        }
        HintKey::Size | HintKey::Rotational => Vec::new(),
    }
}

/// udev's `ID_SERIAL` where it differs from the short serial: `<model>_<serial>` for NVMe,
/// ATA and USB disks; `3<wwn digits>` for other SCSI disks with an NAA WWN.
fn udev_serial(device: &BlockDevice) -> Option<String> {
    let tran = device.tran.as_deref();
    if matches!(tran, Some("nvme" | "sata" | "ata" | "usb")) {
        let model = device.model.as_ref()?.trim().replace(' ', "_");
        return Some(format!("{model}_{}", device.serial.as_ref()?));
    }
    if device.hctl.is_some() {
        let wwn = device.wwn_with_extension.as_ref()?;
        return Some(format!("3{}", wwn.strip_prefix("0x")?));
    }
    None
}

fn compare_numbers(op: Op, x: f64, y: f64) -> bool {
    match op {
        Op::NumEq => x == y,
        Op::NumNe => x != y,
        Op::NumLt => x < y,
        Op::NumLe => x <= y,
        Op::NumGt => x > y,
        Op::NumGe | Op::NumAtLeast => x >= y,
        _ => false,
    }
}

fn compare_strings(op: Op, x: &str, values: &[String]) -> bool {
    let Some(y) = values.first() else {
        return false;
    };
    match op {
        Op::StrEq => x == y,
        Op::StrNe => x != y,
        Op::StrLt => x < y.as_str(),
        Op::StrLe => x <= y.as_str(),
        Op::StrGt => x > y.as_str(),
        Op::StrGe => x >= y.as_str(),
        Op::In => x.contains(y.as_str()),
        Op::Or => values.iter().any(|v| v == x),
        op if op.is_numeric() => match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(x), Ok(y)) => compare_numbers(op, x, y),
            _ => false,
        },
        _ => false,
    }
}

/// Whether one hint matches a device. A device without the value never matches.
pub fn hint_matches(hint: &Hint, device: &BlockDevice) -> bool {
    match (&hint.expr, hint.key) {
        (Expr::Bool(b), _) => device.rotational == *b,
        (Expr::Compare { op, values }, HintKey::Size) => {
            let gib = device.size_bytes as f64 / GIB;
            values
                .first()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|y| compare_numbers(*op, gib, y))
        }
        (Expr::Compare { op, values }, key) => device_values(device, key)
            .iter()
            .map(|v| normalize(v))
            .filter(|v| !v.is_empty())
            .any(|v| compare_strings(*op, &v, values)),
    }
}

/// Whether every hint matches (an empty set matches everything).
pub fn matches_all(hints: &RootDeviceHints, device: &BlockDevice) -> bool {
    hints.hints.iter().all(|h| hint_matches(h, device))
}

fn describe_hints(hints: &RootDeviceHints) -> String {
    let parts: Vec<String> = hints.hints.iter().map(Hint::to_string).collect();
    format!("{{{}}}", parts.join(", "))
}

/// One line per candidate: name, size, identity and, with hints, which passed or failed.
pub fn candidate_report(candidates: &[&BlockDevice], hints: &RootDeviceHints) -> String {
    if candidates.is_empty() {
        return "  (no candidate disks: partitions, optical, virtual devices and the boot medium are never root devices)".into();
    }
    let show = |v: &Option<String>| v.as_deref().unwrap_or("-").to_string();
    let mut out = String::new();
    for d in candidates {
        let _ = write!(
            out,
            "  /dev/{}: {:.1} GiB, model {}, serial {}, wwn {}, by_path {}",
            d.name,
            d.size_bytes as f64 / GIB,
            show(&d.model),
            show(&d.serial),
            show(&d.wwn),
            show(&d.by_path),
        );
        if !hints.hints.is_empty() {
            let verdicts: Vec<String> = hints
                .hints
                .iter()
                .map(|h| {
                    let verdict = if hint_matches(h, d) {
                        "passed"
                    } else {
                        "failed"
                    };
                    format!("{h} {verdict}")
                })
                .collect();
            let _ = write!(out, " [{}]", verdicts.join("; "));
        }
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out
}

/// The root-device candidates: whole disks and RAID devices that are not the boot medium,
/// not empty and not matched by any `skip_block_devices` entry.
pub fn candidates<'a>(
    devices: &'a [BlockDevice],
    skip: &[RootDeviceHints],
) -> Vec<&'a BlockDevice> {
    devices
        .iter()
        .filter(|d| matches!(d.kind, DeviceKind::Disk | DeviceKind::Raid))
        .filter(|d| !d.is_boot_medium && d.size_bytes > 0)
        .filter(|d| !skip.iter().any(|s| matches_all(s, d)))
        .collect()
}

/// Chooses the root device (IPA's `get_os_install_device`): without hints the smallest
/// disk of at least 4 GiB (ties by name); with hints the first match, or with `strict` the
/// only match (more than one is [`HintError::Ambiguous`]).
pub fn select_root_device<'a>(
    devices: &'a [BlockDevice],
    hints: &RootDeviceHints,
    skip: &[RootDeviceHints],
    strict: bool,
) -> Result<&'a BlockDevice, HintError> {
    let candidates = candidates(devices, skip);
    if hints.hints.is_empty() {
        return candidates
            .iter()
            .filter(|d| d.size_bytes >= MIN_ROOT_DISK_BYTES)
            .min_by(|a, b| {
                a.size_bytes
                    .cmp(&b.size_bytes)
                    .then_with(|| a.name.cmp(&b.name))
            })
            .copied()
            .ok_or_else(|| HintError::NoDiskBigEnough {
                report: candidate_report(&candidates, hints),
            });
    }
    let matching: Vec<&BlockDevice> = candidates
        .iter()
        .copied()
        .filter(|d| matches_all(hints, d))
        .collect();
    match matching.as_slice() {
        [] => Err(HintError::NoMatch {
            hints: describe_hints(hints),
            report: candidate_report(&candidates, hints),
        }),
        [only] => Ok(only),
        [first, ..] if !strict => Ok(first),
        _ => Err(HintError::Ambiguous {
            hints: describe_hints(hints),
            report: candidate_report(&candidates, hints),
        }),
    }
}

#[cfg(test)]
#[path = "hints_tests.rs"]
mod tests;
