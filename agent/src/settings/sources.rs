//! Pure parsers of the texts settings come from: the kernel command line, Ironic's
//! `parameters.txt`, and oslo-style INI config files.

/// Splits a kernel command line (or `parameters.txt`, which IPA reads the same way) into
/// `(key, value)` pairs, in order: whitespace separates tokens, tokens without `=` are
/// skipped, a token splits at its first `=`, and quotes mean nothing. Callers apply the pairs
/// in order, so later duplicates win.
pub fn kernel_params(text: &str) -> Vec<(&str, &str)> {
    text.split_whitespace()
        .filter_map(|token| token.split_once('='))
        .collect()
}

/// One `key = value` of an INI file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniEntry {
    /// 1-based line of the key.
    pub line: usize,
    pub section: String,
    pub key: String,
    pub value: String,
}

/// A line of an INI file that is neither a comment, a section, an assignment nor a
/// continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniError {
    pub line: usize,
    pub problem: String,
}

/// The assignments and errors of one INI file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ini {
    pub entries: Vec<IniEntry>,
    pub errors: Vec<IniError>,
}

/// An assignment being read (it may continue on indented lines).
struct Pending {
    line: usize,
    key: String,
    lines: Vec<String>,
}

/// Parses an INI file the way oslo.config does: `[section]` headers; `key = value` or
/// `key: value` (whichever separator comes first); values stripped, one pair of matching
/// quotes around a value removed; comments are lines starting with `#` or `;` (no inline
/// comments); an indented line continues the previous value (joined with a newline); a blank
/// line ends it. Bad lines are collected as errors and the rest of the file still counts.
pub fn ini(text: &str) -> Ini {
    let mut ini = Ini::default();
    let mut section: Option<String> = None;
    let mut pending: Option<Pending> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim_end();
        if line.starts_with([' ', '\t']) && !line.trim_start().is_empty() {
            match pending.as_mut() {
                Some(p) => p.lines.push(line.trim_start().to_string()),
                None => ini.errors.push(IniError {
                    line: number,
                    problem: "an indented line continues nothing".into(),
                }),
            }
            continue;
        }
        if let Some(done) = pending.take() {
            finish(&mut ini, section.as_deref(), done);
        }
        if line.trim_start().is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            match header.strip_suffix(']').map(str::trim) {
                Some(name) if !name.is_empty() => section = Some(name.to_string()),
                _ => ini.errors.push(IniError {
                    line: number,
                    problem: format!("`{line}` is not a section header `[name]`"),
                }),
            }
            continue;
        }
        match split_assignment(line) {
            Some((key, value)) => {
                pending = Some(Pending {
                    line: number,
                    key,
                    lines: vec![value],
                })
            }
            None => ini.errors.push(IniError {
                line: number,
                problem: format!("`{line}` is not `key = value`, a `[section]` or a comment"),
            }),
        }
    }
    if let Some(done) = pending.take() {
        finish(&mut ini, section.as_deref(), done);
    }
    ini
}

fn split_assignment(line: &str) -> Option<(String, String)> {
    let at = match (line.find('='), line.find(':')) {
        (Some(equal), Some(colon)) => equal.min(colon),
        (Some(at), None) | (None, Some(at)) => at,
        (None, None) => return None,
    };
    let key = line[..at].trim();
    if key.is_empty() {
        return None;
    }
    let mut value = line[at + 1..].trim();
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            value = &value[1..value.len() - 1];
            break;
        }
    }
    Some((key.to_string(), value.to_string()))
}

fn finish(ini: &mut Ini, section: Option<&str>, pending: Pending) {
    match section {
        Some(section) => ini.entries.push(IniEntry {
            line: pending.line,
            section: section.to_string(),
            key: pending.key,
            value: pending.lines.join("\n"),
        }),
        None => ini.errors.push(IniError {
            line: pending.line,
            problem: format!("`{}` comes before any `[section]`", pending.key),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_params_split_like_ipa() {
        let text = "BOOT_IMAGE=/vmlinuz nofb vga=normal ipa-api-url=http://a:6385 \
                    \tipa-debug=1 BOOTIF=01-aa-bb-cc-dd-ee-ff x=y=z ipa-debug=0 quoted=\"a b\"\n";
        assert_eq!(
            kernel_params(text),
            [
                ("BOOT_IMAGE", "/vmlinuz"),
                ("vga", "normal"),
                ("ipa-api-url", "http://a:6385"),
                ("ipa-debug", "1"),
                ("BOOTIF", "01-aa-bb-cc-dd-ee-ff"),
                ("x", "y=z"),
                ("ipa-debug", "0"),
                ("quoted", "\"a"),
            ]
        );
        assert!(kernel_params("").is_empty());
    }

    #[test]
    fn ini_reads_sections_keys_and_values() {
        let text = "# comment\n; other comment\n[DEFAULT]\napi_url = http://a:6385\n\
                    insecure: true\nlisten_port=9998\n  \n[ssl]\ncert_file = '/x.crt'\n\
                    empty =\nurl = http://b:1/?a=b\n";
        let ini = ini(text);
        assert_eq!(ini.errors, []);
        let got: Vec<(&str, &str, &str, usize)> = ini
            .entries
            .iter()
            .map(|e| (e.section.as_str(), e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("DEFAULT", "api_url", "http://a:6385", 4),
                ("DEFAULT", "insecure", "true", 5),
                ("DEFAULT", "listen_port", "9998", 6),
                ("ssl", "cert_file", "/x.crt", 9),
                ("ssl", "empty", "", 10),
                ("ssl", "url", "http://b:1/?a=b", 11),
            ]
        );
    }

    #[test]
    fn ini_first_separator_wins_and_quotes_are_stripped_once() {
        let ini = ini("[DEFAULT]\na = http://x:1\nb: c=d\nc = \"'q'\"\nd = \"unbalanced'\n");
        let values: Vec<&str> = ini.entries.iter().map(|e| e.value.as_str()).collect();
        assert_eq!(values, ["http://x:1", "c=d", "'q'", "\"unbalanced'"]);
    }

    #[test]
    fn ini_has_no_inline_comments() {
        let ini = ini("[DEFAULT]\ndebug = true # really\n");
        assert_eq!(ini.entries[0].value, "true # really");
    }

    #[test]
    fn ini_continuation_lines_join_the_value() {
        let ini = ini("[DEFAULT]\npermitted_image_formats = raw,\n    qcow2\n\nnext = 1\n");
        assert_eq!(ini.entries[0].value, "raw,\nqcow2");
        assert_eq!(ini.entries[1].key, "next");
    }

    #[test]
    fn ini_reports_bad_lines_and_keeps_going() {
        let text = "orphan = 1\n  indented\n[DEFAULT\n[]\nno separator here\n= value\n\
                    [DEFAULT]\ndebug = 1\n";
        let ini = ini(text);
        let lines: Vec<usize> = ini.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 3, 4, 5, 6], "{:?}", ini.errors);
        assert!(ini.errors[0].problem.contains("before any `[section]`"));
        assert!(ini.errors[3].problem.contains("is not `key = value`"));
        assert_eq!(ini.entries.len(), 1);
        assert_eq!(ini.entries[0].key, "debug");
    }
}
