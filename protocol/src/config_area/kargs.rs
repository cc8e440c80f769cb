//! Kernel-argument fields: a fixed number of bytes inside each boot loader config (the rest
//! of the `APPEND`/`linux` line) that `customize` rewrites in place.
//!
//! A field of length `L` holds the arguments, a newline, and `#` up to `L` bytes: the
//! padding becomes a comment line for isolinux and GRUB alike. The arguments may use up to
//! `L - 1` bytes.

use super::FormatError;

const WHAT: &str = "kernel arguments";

/// Characters the boot loaders would interpret instead of passing on (GRUB's quoting,
/// variables and comments; isolinux takes the line as it is, so the rule is GRUB's).
const LOADER_SYNTAX: &str = "'\"\\$;{}|&<>`#";

/// Checks a kernel command line for characters GRUB or isolinux would interpret.
pub fn check(args: &str) -> Result<(), FormatError> {
    match args
        .chars()
        .find(|c| c.is_control() || LOADER_SYNTAX.contains(*c))
    {
        Some(bad) => Err(FormatError::Invalid {
            what: WHAT,
            problem: format!("the character {bad:?} is not allowed"),
        }),
        None => Ok(()),
    }
}

/// `args` with single spaces between the arguments.
pub fn normalize(args: &str) -> String {
    args.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `len` bytes of a field holding `args` (normalized first).
pub fn encode_field(args: &str, len: usize) -> Result<Vec<u8>, FormatError> {
    check(args)?;
    let args = normalize(args);
    if args.len() + 1 > len {
        return Err(FormatError::Invalid {
            what: WHAT,
            problem: format!(
                "{} bytes, but the boot loader configs have room for {}",
                args.len(),
                len.saturating_sub(1)
            ),
        });
    }
    let mut field = Vec::with_capacity(len);
    field.extend_from_slice(args.as_bytes());
    field.push(b'\n');
    field.resize(len, b'#');
    Ok(field)
}

/// The arguments in a field; an error when the field is not one [`encode_field`] wrote.
pub fn decode_field(field: &[u8]) -> Result<String, FormatError> {
    let invalid = |problem: &str| FormatError::Invalid {
        what: WHAT,
        problem: problem.into(),
    };
    let end = field
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| invalid("the field has no end of line"))?;
    if field[end + 1..].iter().any(|&b| b != b'#') {
        return Err(invalid("the field's padding is not `#`"));
    }
    let args = std::str::from_utf8(&field[..end]).map_err(|_| invalid("not UTF-8"))?;
    check(args)?;
    Ok(args.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_round_trips_and_pads_with_a_comment() {
        let field = encode_field(" console=ttyS0,115200n8   ipa-debug=1 ", 40).unwrap();
        assert_eq!(field.len(), 40);
        assert_eq!(&field[..], b"console=ttyS0,115200n8 ipa-debug=1\n#####");
        assert_eq!(
            decode_field(&field).unwrap(),
            "console=ttyS0,115200n8 ipa-debug=1"
        );
        let exact = encode_field("abc", 4).unwrap();
        assert_eq!(&exact[..], b"abc\n");
        assert_eq!(decode_field(&exact).unwrap(), "abc");
        assert_eq!(decode_field(&encode_field("", 8).unwrap()).unwrap(), "");
    }

    #[test]
    fn too_long_or_loader_syntax_is_refused() {
        let err = encode_field("abcd", 4).unwrap_err().to_string();
        assert_eq!(
            err,
            "kernel arguments: 4 bytes, but the boot loader configs have room for 3"
        );
        for bad in ["a;reboot", "x=$y", "q=\"a b\"", "a\nb", "a #b", "{x}"] {
            assert!(check(bad).is_err(), "{bad}");
            assert!(encode_field(bad, 100).is_err(), "{bad}");
        }
        assert!(check("console=ttyS0,115200n8 ipa-api-url=https://[fd00::1]:6385/x?a=b").is_ok());
    }

    #[test]
    fn damaged_fields_are_errors() {
        assert!(decode_field(b"abc#####").is_err());
        assert!(decode_field(b"abc\n##x#").is_err());
        assert!(decode_field(b"a$c\n####").is_err());
    }
}
