//! The locator: where an ISO's config area and kernel-argument fields are.
//!
//! 512 bytes at [`LOCATOR_OFFSET`](super::LOCATOR_OFFSET), the Application Use field of the
//! ISO 9660 primary volume descriptor. All integers little-endian:
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 8 | magic `RIVETLOC` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | flags: bit 0 = the ramdisk has a signing key (only signed bundles are applied) |
//! | 16 | 8 | config area: byte offset in the image |
//! | 24 | 8 | config area: length |
//! | 32 | 8 | default kernel arguments (`/rivet/kargs.txt`): byte offset |
//! | 40 | 4 | default kernel arguments: length |
//! | 44 | 4 | kernel-argument field length (every field has this length) |
//! | 48 | 4 | number of kernel-argument fields (1 to 4) |
//! | 52 | 4 | reserved, 0 |
//! | 56 | 32 | byte offsets of the kernel-argument fields, 4 x 8 (unused: 0) |
//! | 88 | 32 | sha256 of the ramdisk's raw 32-byte signing key (0 without a key) |
//! | 120 | 360 | reserved, 0 |
//! | 480 | 32 | sha256 of bytes 0..480 |

use super::{le_u32, le_u64, sha256, FormatError};

pub const LOCATOR_LEN: usize = 512;
pub const LOCATOR_MAGIC: &[u8; 8] = b"RIVETLOC";
pub const LOCATOR_VERSION: u32 = 1;
/// At most this many kernel-argument fields (one per boot loader config).
pub const MAX_KARGS_FIELDS: usize = 4;
const FLAG_SIGNED_ONLY: u32 = 1;
const CHECKSUM_AT: usize = LOCATOR_LEN - 32;
const WHAT: &str = "locator";

/// A byte range of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// The decoded locator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    /// The reserved config area.
    pub area: Extent,
    /// The kernel arguments the image was built with (a file holding only them).
    pub default_kargs: Extent,
    /// Length of every kernel-argument field.
    pub kargs_field_len: u32,
    /// Byte offsets of the kernel-argument fields (isolinux.cfg, grub.cfg).
    pub kargs_fields: Vec<u64>,
    /// sha256 of the ramdisk's signing key: only bundles signed with it are applied.
    pub signing_key_sha256: Option<[u8; 32]>,
}

impl Locator {
    /// The 512 bytes of this locator. Fails when a field does not fit the format.
    pub fn encode(&self) -> Result<[u8; LOCATOR_LEN], FormatError> {
        if self.kargs_fields.is_empty() || self.kargs_fields.len() > MAX_KARGS_FIELDS {
            return Err(invalid(format!(
                "{} kernel-argument fields (1 to {MAX_KARGS_FIELDS} allowed)",
                self.kargs_fields.len()
            )));
        }
        let default_len = u32::try_from(self.default_kargs.len)
            .map_err(|_| invalid("the default kernel arguments are too long".into()))?;
        let mut b = [0u8; LOCATOR_LEN];
        b[0..8].copy_from_slice(LOCATOR_MAGIC);
        b[8..12].copy_from_slice(&LOCATOR_VERSION.to_le_bytes());
        let flags = if self.signing_key_sha256.is_some() {
            FLAG_SIGNED_ONLY
        } else {
            0
        };
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.area.offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.area.len.to_le_bytes());
        b[32..40].copy_from_slice(&self.default_kargs.offset.to_le_bytes());
        b[40..44].copy_from_slice(&default_len.to_le_bytes());
        b[44..48].copy_from_slice(&self.kargs_field_len.to_le_bytes());
        let count = self.kargs_fields.len() as u32;
        b[48..52].copy_from_slice(&count.to_le_bytes());
        for (i, offset) in self.kargs_fields.iter().enumerate() {
            b[56 + 8 * i..64 + 8 * i].copy_from_slice(&offset.to_le_bytes());
        }
        if let Some(key) = &self.signing_key_sha256 {
            b[88..120].copy_from_slice(key);
        }
        let sum = sha256(&b[..CHECKSUM_AT]);
        b[CHECKSUM_AT..].copy_from_slice(&sum);
        Ok(b)
    }

    /// Decodes a locator. `Ok(None)`: there is none (no magic: not a rivet ISO, or one
    /// built without a config area).
    pub fn decode(b: &[u8]) -> Result<Option<Locator>, FormatError> {
        if b.len() < LOCATOR_LEN {
            return Err(FormatError::Truncated {
                what: WHAT,
                got: b.len(),
                need: LOCATOR_LEN,
            });
        }
        if &b[0..8] != LOCATOR_MAGIC {
            return Ok(None);
        }
        if sha256(&b[..CHECKSUM_AT]) != b[CHECKSUM_AT..LOCATOR_LEN] {
            return Err(FormatError::LocatorChecksum);
        }
        let version = le_u32(b, 8);
        if version != LOCATOR_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version,
                supported: LOCATOR_VERSION,
            });
        }
        let flags = le_u32(b, 12);
        if flags & !FLAG_SIGNED_ONLY != 0 {
            return Err(invalid(format!("unknown flags {flags:#x}")));
        }
        let count = le_u32(b, 48) as usize;
        if count == 0 || count > MAX_KARGS_FIELDS {
            return Err(invalid(format!("{count} kernel-argument fields")));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&b[88..120]);
        let locator = Locator {
            area: Extent {
                offset: le_u64(b, 16),
                len: le_u64(b, 24),
            },
            default_kargs: Extent {
                offset: le_u64(b, 32),
                len: u64::from(le_u32(b, 40)),
            },
            kargs_field_len: le_u32(b, 44),
            kargs_fields: (0..count).map(|i| le_u64(b, 56 + 8 * i)).collect(),
            signing_key_sha256: (flags & FLAG_SIGNED_ONLY != 0).then_some(key),
        };
        if locator.area.len < super::bundle::HEADER_LEN as u64 {
            return Err(invalid(format!(
                "a config area of {} bytes cannot hold a bundle header",
                locator.area.len
            )));
        }
        Ok(Some(locator))
    }

    /// Checks that every range lies inside an image of `size` bytes.
    pub fn check_within(&self, size: u64) -> Result<(), FormatError> {
        let field_len = u64::from(self.kargs_field_len);
        let mut ranges = vec![
            ("config area", self.area),
            ("default kargs", self.default_kargs),
        ];
        ranges.extend(self.kargs_fields.iter().map(|&offset| {
            (
                "kernel-argument field",
                Extent {
                    offset,
                    len: field_len,
                },
            )
        }));
        for (name, extent) in ranges {
            if extent
                .offset
                .checked_add(extent.len)
                .is_none_or(|end| end > size)
            {
                return Err(invalid(format!(
                    "the {name} ({} bytes at {}) ends beyond the {size}-byte image",
                    extent.len, extent.offset
                )));
            }
        }
        Ok(())
    }
}

fn invalid(problem: String) -> FormatError {
    FormatError::Invalid {
        what: WHAT,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Locator {
        Locator {
            area: Extent {
                offset: 2048 * 40,
                len: 4 << 20,
            },
            default_kargs: Extent {
                offset: 2048 * 39,
                len: 52,
            },
            kargs_field_len: 1024,
            kargs_fields: vec![2048 * 30 + 70, 2048 * 31 + 200],
            signing_key_sha256: None,
        }
    }

    #[test]
    fn locator_round_trips_with_and_without_a_key() {
        let plain = sample();
        let bytes = plain.encode().unwrap();
        assert_eq!(&bytes[..8], b"RIVETLOC");
        assert_eq!(Locator::decode(&bytes).unwrap(), Some(plain.clone()));
        let signed = Locator {
            signing_key_sha256: Some([7; 32]),
            ..plain
        };
        let bytes = signed.encode().unwrap();
        assert_eq!(bytes[12], 1);
        assert_eq!(Locator::decode(&bytes).unwrap(), Some(signed));
    }

    #[test]
    fn locator_layout_is_fixed() {
        let bytes = sample().encode().unwrap();
        assert_eq!(bytes[8..12], 1u32.to_le_bytes());
        assert_eq!(bytes[16..24], (2048u64 * 40).to_le_bytes());
        assert_eq!(bytes[24..32], (4u64 << 20).to_le_bytes());
        assert_eq!(bytes[44..48], 1024u32.to_le_bytes());
        assert_eq!(bytes[48..52], 2u32.to_le_bytes());
        assert_eq!(bytes[64..72], (2048u64 * 31 + 200).to_le_bytes());
        assert!(bytes[120..480].iter().all(|&b| b == 0));
    }

    #[test]
    fn no_magic_is_no_locator_and_damage_is_an_error() {
        // What xorriso leaves in the Application Use field: spaces.
        assert_eq!(Locator::decode(&[b' '; 512]).unwrap(), None);
        let mut bytes = sample().encode().unwrap();
        bytes[20] ^= 1;
        assert_eq!(Locator::decode(&bytes), Err(FormatError::LocatorChecksum));
        assert!(matches!(
            Locator::decode(&bytes[..100]),
            Err(FormatError::Truncated { need: 512, .. })
        ));
    }

    #[test]
    fn newer_versions_and_bad_counts_are_refused() {
        let mut bytes = sample().encode().unwrap();
        bytes[8] = 2;
        let sum = sha256(&bytes[..480]);
        bytes[480..].copy_from_slice(&sum);
        assert!(matches!(
            Locator::decode(&bytes),
            Err(FormatError::UnsupportedVersion { version: 2, .. })
        ));
        let none = Locator {
            kargs_fields: vec![],
            ..sample()
        };
        assert!(none.encode().is_err());
        let five = Locator {
            kargs_fields: vec![1; 5],
            ..sample()
        };
        assert!(five.encode().is_err());
    }

    #[test]
    fn ranges_must_lie_inside_the_image() {
        let loc = sample();
        let end = loc.area.end();
        assert!(loc.check_within(end).is_ok());
        let err = loc.check_within(end - 1).unwrap_err().to_string();
        assert!(err.contains("config area"), "{err}");
        let far = Locator {
            kargs_fields: vec![u64::MAX - 10],
            ..sample()
        };
        assert!(far.check_within(u64::MAX).is_err());
    }
}
