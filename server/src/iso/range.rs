//! HTTP range requests (RFC 9110 section 14) on a resource of known length: what BMCs use
//! to read virtual media.

/// What to send for a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the whole resource: no `Range`, a unit other than bytes, or several ranges
    /// (RFC 9110 lets a server ignore `Range`; multipart answers are not made).
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */<len>`: malformed, or no byte of it exists.
    Unsatisfiable,
}

/// Interprets the `Range` header `header` for a resource of `len` bytes.
pub fn answer(header: Option<&str>, len: u64) -> Answer {
    let Some(header) = header else {
        return Answer::Full;
    };
    let Some(set) = header.trim().strip_prefix("bytes=") else {
        return Answer::Full;
    };
    let specs: Vec<&str> = set.split(',').map(str::trim).collect();
    if specs.len() != 1 {
        let all_valid = specs.iter().all(|spec| one(spec, len).is_some());
        return if all_valid {
            Answer::Full
        } else {
            Answer::Unsatisfiable
        };
    }
    match one(specs[0], len) {
        Some(Some((start, end))) => Answer::Partial { start, end },
        _ => Answer::Unsatisfiable,
    }
}

/// One `first-last`, `first-` or `-suffix`: `None` when malformed, `Some(None)` when
/// well-formed but outside the resource, else the inclusive byte range.
fn one(spec: &str, len: u64) -> Option<Option<(u64, u64)>> {
    let (first, last) = spec.split_once('-')?;
    let number = |text: &str| -> Option<u64> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    if first.is_empty() {
        let suffix = number(last)?;
        if suffix == 0 || len == 0 {
            return Some(None);
        }
        return Some(Some((len - suffix.min(len), len - 1)));
    }
    let start = number(first)?;
    let end = if last.is_empty() {
        u64::MAX
    } else {
        number(last)?
    };
    if end < start {
        return None;
    }
    if start >= len {
        return Some(None);
    }
    Some(Some((start, end.min(len - 1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        let len = 1000;
        let cases = [
            ("bytes=0-99", Answer::Partial { start: 0, end: 99 }),
            (
                "bytes=990-2000",
                Answer::Partial {
                    start: 990,
                    end: 999,
                },
            ),
            (
                "bytes=500-",
                Answer::Partial {
                    start: 500,
                    end: 999,
                },
            ),
            (
                "bytes=-10",
                Answer::Partial {
                    start: 990,
                    end: 999,
                },
            ),
            ("bytes=-5000", Answer::Partial { start: 0, end: 999 }),
            (
                " bytes=999-999",
                Answer::Partial {
                    start: 999,
                    end: 999,
                },
            ),
        ];
        for (header, want) in cases {
            assert_eq!(answer(Some(header), len), want, "{header}");
        }
    }

    #[test]
    fn unsatisfiable_and_malformed_ranges() {
        for header in [
            "bytes=1000-",
            "bytes=1000-1001",
            "bytes=-0",
            "bytes=5-2",
            "bytes=x-3",
            "bytes=",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=0-1,7-x",
        ] {
            assert_eq!(
                answer(Some(header), 1000),
                Answer::Unsatisfiable,
                "{header}"
            );
        }
        assert_eq!(answer(Some("bytes=-1"), 0), Answer::Unsatisfiable);
    }

    #[test]
    fn whole_resource_otherwise() {
        assert_eq!(answer(None, 1000), Answer::Full);
        assert_eq!(answer(Some("items=0-1"), 1000), Answer::Full);
        assert_eq!(answer(Some("bytes=0-1, 5-9"), 1000), Answer::Full);
    }
}
