//! Image formats, told by content (magic numbers), never by name; and the rule deciding
//! whether a detected format may be written (`disk_format`, `permitted_image_formats`).
//!
//! Two layers: an optional compression (gzip, xz, zstd) wrapping the whole file, then the
//! disk format inside (raw, gpt, iso, qcow2, or one this build recognises but cannot
//! convert). qcow2 needs random access to its tables, so it is converted only when it is
//! not wrapped in a compression (qcow2 compresses its own clusters).

/// How many leading bytes detection looks at (ISO 9660's signature is at 32769).
pub const SNIFF_LEN: usize = 64 * 1024;

/// A compression wrapping the whole image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// The compression `head` starts with, if any.
pub fn detect_compression(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(Compression::Xz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else {
        None
    }
}

/// A disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// Bytes of the disk as they are (no partition table this build recognises).
    Raw,
    /// Raw with a GPT (protective MBR + `EFI PART` header): written as raw.
    Gpt,
    /// Raw ISO 9660 (hybrid ISOs included): written as raw when permitted.
    Iso,
    Qcow2,
    /// Recognised, but this build cannot convert them.
    Vmdk,
    Vhd,
    Vhdx,
    Vdi,
    Qed,
    Luks,
}

impl DiskFormat {
    /// The name `disk_format` and `permitted_image_formats` use.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Gpt => "gpt",
            DiskFormat::Iso => "iso",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Vdi => "vdi",
            DiskFormat::Qed => "qed",
            DiskFormat::Luks => "luks",
        }
    }

    /// Written byte for byte.
    pub fn is_raw_like(self) -> bool {
        matches!(self, DiskFormat::Raw | DiskFormat::Gpt | DiskFormat::Iso)
    }
}

/// The disk format of an image starting with `head` (at least [`SNIFF_LEN`] bytes unless
/// the image is shorter).
pub fn detect_disk_format(head: &[u8]) -> DiskFormat {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"QFI\xfb") {
        DiskFormat::Qcow2
    } else if at(0, b"QED\0") {
        DiskFormat::Qed
    } else if at(0, b"KDMV") || at(0, b"COWD") || at(0, b"# Disk DescriptorFile") {
        DiskFormat::Vmdk
    } else if at(0, b"vhdxfile") {
        DiskFormat::Vhdx
    } else if at(0, b"conectix") {
        DiskFormat::Vhd
    } else if at(0x40, &[0x7f, 0x10, 0xda, 0xbe]) {
        DiskFormat::Vdi
    } else if at(0, b"LUKS\xba\xbe") {
        DiskFormat::Luks
    } else if at(510, &[0x55, 0xaa]) && head.get(0x1c2) == Some(&0xee) && at(512, b"EFI PART") {
        DiskFormat::Gpt
    } else if at(0x8001, b"CD001") {
        DiskFormat::Iso
    } else {
        DiskFormat::Raw
    }
}

/// What was found in an image: the compression around it and the format inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    pub compression: Option<Compression>,
    pub format: DiskFormat,
}

impl std::fmt::Display for Detected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.compression {
            Some(c) => write!(f, "{} compressed with {}", self.format.name(), c.name()),
            None => f.write_str(self.format.name()),
        }
    }
}

/// Why an image's format is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("image is declared as {declared} but its content is {detected}")]
    Mismatch { declared: String, detected: String },
    #[error("image format {format} is not permitted (permitted_image_formats: {permitted})")]
    NotPermitted { format: String, permitted: String },
    #[error("image format {0} is not supported by this build of rivet-agent")]
    Unsupported(String),
    #[error(
        "a qcow2 image inside {0} compression cannot be converted while streaming; \
         use qcow2's own compression (qemu-img convert -c) instead"
    )]
    CompressedQcow2(&'static str),
}

/// Checks `detected` against the declared `disk_format` and the permitted formats.
///
/// A declared `raw` or `gpt` accepts any raw-like content (IPA streams it without looking)
/// and is checked under its declared name; any other declared format must be what the
/// content is (`unknown` or no declaration accepts whatever is detected), checked under the
/// detected name.
pub fn check(
    detected: Detected,
    declared: Option<&str>,
    permitted: &[String],
) -> Result<(), FormatError> {
    let declared = declared
        .map(str::to_ascii_lowercase)
        .filter(|d| !d.is_empty() && d != "unknown");
    let mismatch = || FormatError::Mismatch {
        declared: declared.clone().unwrap_or_default(),
        detected: detected.to_string(),
    };
    let checked_name = match declared.as_deref() {
        Some(name @ ("raw" | "gpt")) => {
            if !detected.format.is_raw_like() {
                return Err(mismatch());
            }
            name.to_string()
        }
        Some(name) => {
            if name != detected.format.name() {
                return Err(mismatch());
            }
            name.to_string()
        }
        None => detected.format.name().to_string(),
    };
    if !permitted
        .iter()
        .any(|p| p.eq_ignore_ascii_case(&checked_name))
    {
        return Err(FormatError::NotPermitted {
            format: checked_name,
            permitted: permitted.join(","),
        });
    }
    match (detected.format, detected.compression) {
        (format, _) if format.is_raw_like() => Ok(()),
        (DiskFormat::Qcow2, None) => Ok(()),
        (DiskFormat::Qcow2, Some(c)) => Err(FormatError::CompressedQcow2(c.name())),
        (format, _) => Err(FormatError::Unsupported(format.name().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permitted() -> Vec<String> {
        ["raw", "gpt", "qcow2"].map(String::from).to_vec()
    }

    fn padded(parts: &[(usize, &[u8])]) -> Vec<u8> {
        let mut head = vec![0u8; SNIFF_LEN];
        for (offset, bytes) in parts {
            head[*offset..offset + bytes.len()].copy_from_slice(bytes);
        }
        head
    }

    #[test]
    fn formats_are_told_by_magic() {
        assert_eq!(detect_disk_format(b"QFI\xfb\0\0\0\x03"), DiskFormat::Qcow2);
        assert_eq!(detect_disk_format(b"KDMV...."), DiskFormat::Vmdk);
        assert_eq!(detect_disk_format(b"vhdxfile"), DiskFormat::Vhdx);
        assert_eq!(
            detect_disk_format(&padded(&[
                (510, &[0x55, 0xaa]),
                (0x1c2, &[0xee]),
                (512, b"EFI PART")
            ])),
            DiskFormat::Gpt
        );
        // An MBR disk is raw.
        assert_eq!(
            detect_disk_format(&padded(&[(510, &[0x55, 0xaa]), (0x1c2, &[0x83])])),
            DiskFormat::Raw
        );
        assert_eq!(
            detect_disk_format(&padded(&[(0x8001, b"CD001")])),
            DiskFormat::Iso
        );
        assert_eq!(detect_disk_format(b""), DiskFormat::Raw);
        assert_eq!(
            detect_compression(&[0x1f, 0x8b, 8]),
            Some(Compression::Gzip)
        );
        assert_eq!(detect_compression(b"\xfd7zXZ\0\0"), Some(Compression::Xz));
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd]),
            Some(Compression::Zstd)
        );
        assert_eq!(detect_compression(b"QFI\xfb"), None);
    }

    fn found(format: DiskFormat, compression: Option<Compression>) -> Detected {
        Detected {
            compression,
            format,
        }
    }

    #[test]
    fn declared_formats_must_match_the_content() {
        let p = permitted();
        assert_eq!(check(found(DiskFormat::Gpt, None), Some("raw"), &p), Ok(()));
        assert_eq!(
            check(
                found(DiskFormat::Raw, Some(Compression::Zstd)),
                Some("raw"),
                &p
            ),
            Ok(())
        );
        assert!(matches!(
            check(found(DiskFormat::Qcow2, None), Some("raw"), &p),
            Err(FormatError::Mismatch { .. })
        ));
        assert!(matches!(
            check(found(DiskFormat::Raw, None), Some("qcow2"), &p),
            Err(FormatError::Mismatch { .. })
        ));
        assert_eq!(
            check(found(DiskFormat::Qcow2, None), Some("qcow2"), &p),
            Ok(())
        );
        assert_eq!(check(found(DiskFormat::Qcow2, None), None, &p), Ok(()));
        assert_eq!(
            check(found(DiskFormat::Qcow2, None), Some("unknown"), &p),
            Ok(())
        );
    }

    #[test]
    fn only_permitted_and_supported_formats_pass() {
        let p = permitted();
        assert!(matches!(
            check(found(DiskFormat::Iso, None), None, &p),
            Err(FormatError::NotPermitted { .. })
        ));
        let mut with_iso = p.clone();
        with_iso.push("iso".into());
        assert_eq!(check(found(DiskFormat::Iso, None), None, &with_iso), Ok(()));
        let mut with_vmdk = p.clone();
        with_vmdk.push("vmdk".into());
        assert_eq!(
            check(found(DiskFormat::Vmdk, None), None, &with_vmdk),
            Err(FormatError::Unsupported("vmdk".into()))
        );
        assert!(matches!(
            check(found(DiskFormat::Qcow2, Some(Compression::Gzip)), None, &p),
            Err(FormatError::CompressedQcow2("gzip"))
        ));
        assert!(matches!(
            check(found(DiskFormat::Qcow2, None), None, &["raw".to_string()]),
            Err(FormatError::NotPermitted { .. })
        ));
    }
}
