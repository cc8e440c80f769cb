//! HTTP range requests (RFC 9110 section 14) on a resource of known length: what BMCs use
//! to read virtual media.

/// At most this many ranges are answered as one multipart response; more are ignored
/// (RFC 9110 14.2 lets a server ignore a range set that is costly to answer).
pub const MAX_RANGES: usize = 16;

/// What to send for a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the whole resource: no `Range`, a unit other than bytes, more than
    /// [`MAX_RANGES`] ranges or overlapping ones (RFC 9110 lets a server ignore `Range`).
    Full,
    /// 206 with bytes `start..=end`: one satisfiable range.
    Partial { start: u64, end: u64 },
    /// 206 `multipart/byteranges` with these inclusive ranges, in the order asked: several
    /// satisfiable ranges (unsatisfiable ones among them are left out).
    Multipart(Vec<(u64, u64)>),
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
    let mut ranges = Vec::with_capacity(specs.len());
    for spec in &specs {
        match one(spec, len) {
            None => return Answer::Unsatisfiable,
            Some(Some(range)) => ranges.push(range),
            Some(None) => {}
        }
    }
    let overlapping = ranges
        .iter()
        .enumerate()
        .any(|(i, a)| ranges[i + 1..].iter().any(|b| a.0 <= b.1 && b.0 <= a.1));
    match ranges.as_slice() {
        [] => Answer::Unsatisfiable,
        [(start, end)] => Answer::Partial {
            start: *start,
            end: *end,
        },
        _ if ranges.len() > MAX_RANGES || overlapping => Answer::Full,
        _ => Answer::Multipart(ranges),
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
    fn several_ranges_are_answered_in_the_order_asked() {
        assert_eq!(
            answer(Some("bytes=500-599, 0-1,-10"), 1000),
            Answer::Multipart(vec![(500, 599), (0, 1), (990, 999)])
        );
        // Unsatisfiable members are left out; one left is a single range.
        assert_eq!(
            answer(Some("bytes=0-1, 2000-3000, 5-9"), 1000),
            Answer::Multipart(vec![(0, 1), (5, 9)])
        );
        assert_eq!(
            answer(Some("bytes=2000-, 5-9"), 1000),
            Answer::Partial { start: 5, end: 9 }
        );
        assert_eq!(
            answer(Some("bytes=2000-, 3000-"), 1000),
            Answer::Unsatisfiable
        );
    }

    #[test]
    fn whole_resource_otherwise() {
        assert_eq!(answer(None, 1000), Answer::Full);
        assert_eq!(answer(Some("items=0-1"), 1000), Answer::Full);
        // Overlapping ranges, and too many of them, are ignored.
        assert_eq!(answer(Some("bytes=0-10, 5-20"), 1000), Answer::Full);
        assert_eq!(answer(Some("bytes=-10, 995-"), 1000), Answer::Full);
        let many: Vec<String> = (0..=MAX_RANGES).map(|i| format!("{i}-{i}")).collect();
        assert_eq!(
            answer(Some(&format!("bytes={}", many.join(","))), 1000),
            Answer::Full
        );
        let enough: Vec<String> = (0..MAX_RANGES).map(|i| format!("{i}-{i}")).collect();
        assert!(matches!(
            answer(Some(&format!("bytes={}", enough.join(","))), 1000),
            Answer::Multipart(ranges) if ranges.len() == MAX_RANGES
        ));
    }
}
