//! The bundle: what `customize` writes at the start of the config area.
//!
//! A 128-byte header, then the payload ([`super::payload`]). Integers little-endian:
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 8 | magic `RIVETCFG` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | flags: bit 0 = signed |
//! | 16 | 8 | payload length |
//! | 24 | 32 | sha256 of the payload |
//! | 56 | 64 | Ed25519 signature of header bytes 0..56 (0 when unsigned) |
//! | 120 | 8 | reserved, 0 |
//!
//! The rest of the area is zero. An area whose first 128 bytes are zero holds no bundle.
//! The signature covers the magic, version, flags, length and the payload's sha256, so it
//! covers the payload.

use super::keys::{PublicKey, SigningKey};
use super::{le_u32, le_u64, sha256, shown_magic, FormatError};

pub const HEADER_LEN: usize = 128;
pub const BUNDLE_MAGIC: &[u8; 8] = b"RIVETCFG";
pub const BUNDLE_VERSION: u32 = 1;
const FLAG_SIGNED: u32 = 1;
const SIGNED_PART: usize = 56;
const WHAT: &str = "bundle header";

/// A decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub payload_len: u64,
    pub payload_sha256: [u8; 32],
    pub signature: Option<[u8; 64]>,
    /// Header bytes 0..56, what the signature signs.
    signed_part: [u8; SIGNED_PART],
}

impl Header {
    /// Decodes the first [`HEADER_LEN`] bytes of a config area. `Ok(None)`: all zero, no
    /// bundle.
    pub fn decode(b: &[u8]) -> Result<Option<Header>, FormatError> {
        if b.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                what: WHAT,
                got: b.len(),
                need: HEADER_LEN,
            });
        }
        let b = &b[..HEADER_LEN];
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        if &b[0..8] != BUNDLE_MAGIC {
            return Err(FormatError::BadMagic {
                what: "config area",
                found: shown_magic(&b[0..8]),
                expected: "RIVETCFG",
            });
        }
        let version = le_u32(b, 8);
        if version != BUNDLE_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version,
                supported: BUNDLE_VERSION,
            });
        }
        let flags = le_u32(b, 12);
        if flags & !FLAG_SIGNED != 0 {
            return Err(FormatError::Invalid {
                what: WHAT,
                problem: format!("unknown flags {flags:#x}"),
            });
        }
        let mut payload_sha256 = [0u8; 32];
        payload_sha256.copy_from_slice(&b[24..56]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[56..120]);
        let mut signed_part = [0u8; SIGNED_PART];
        signed_part.copy_from_slice(&b[..SIGNED_PART]);
        Ok(Some(Header {
            payload_len: le_u64(b, 16),
            payload_sha256,
            signature: (flags & FLAG_SIGNED != 0).then_some(signature),
            signed_part,
        }))
    }

    /// Checks that the header's payload fits an area of `area_len` bytes.
    pub fn check_fits(&self, area_len: u64) -> Result<(), FormatError> {
        let need = self.payload_len.saturating_add(HEADER_LEN as u64);
        if need > area_len {
            return Err(FormatError::TooLarge {
                need,
                have: area_len,
            });
        }
        Ok(())
    }

    /// Verifies `payload` against the header: length and sha256 always, and the signature
    /// with `key` when the ramdisk has one (then an unsigned bundle is refused). Without a
    /// key a signature cannot be checked; [`Verified::signature_checked`] says so.
    pub fn verify(&self, payload: &[u8], key: Option<&PublicKey>) -> Result<Verified, FormatError> {
        if payload.len() as u64 != self.payload_len {
            return Err(FormatError::Truncated {
                what: "bundle payload",
                got: payload.len(),
                need: usize::try_from(self.payload_len).unwrap_or(usize::MAX),
            });
        }
        if sha256(payload) != self.payload_sha256 {
            return Err(FormatError::Sha256Mismatch);
        }
        match (key, &self.signature) {
            (Some(_), None) => Err(FormatError::Unsigned),
            (Some(key), Some(sig)) if !key.verifies(&self.signed_part, sig) => {
                Err(FormatError::BadSignature)
            }
            (Some(_), Some(_)) => Ok(Verified {
                signed: true,
                signature_checked: true,
            }),
            (None, sig) => Ok(Verified {
                signed: sig.is_some(),
                signature_checked: false,
            }),
        }
    }
}

/// What [`Header::verify`] established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub signed: bool,
    /// The signature was checked against the ramdisk's key.
    pub signature_checked: bool,
}

/// Header and payload, signed with `key` when given: the bytes to write at the start of
/// the config area (the rest of the area must be zeroed).
pub fn encode(payload: &[u8], key: Option<&SigningKey>) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[0..8].copy_from_slice(BUNDLE_MAGIC);
    out[8..12].copy_from_slice(&BUNDLE_VERSION.to_le_bytes());
    let flags = if key.is_some() { FLAG_SIGNED } else { 0 };
    out[12..16].copy_from_slice(&flags.to_le_bytes());
    out[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    out[24..56].copy_from_slice(&sha256(payload));
    if let Some(key) = key {
        let sig = key.sign(&out[..SIGNED_PART]);
        out[56..120].copy_from_slice(&sig);
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key(seed: u8) -> SigningKey {
        // PKCS#8 v1 of an Ed25519 seed (RFC 8410): prefix + 32 seed bytes.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&[seed; 32]);
        SigningKey::from_pkcs8(&der).unwrap()
    }

    fn decode(bytes: &[u8]) -> (Header, &[u8]) {
        let header = Header::decode(bytes).unwrap().unwrap();
        let payload = &bytes[HEADER_LEN..HEADER_LEN + header.payload_len as usize];
        (header, payload)
    }

    #[test]
    fn unsigned_bundle_round_trips() {
        let bytes = encode(b"payload bytes", None);
        assert_eq!(&bytes[..8], b"RIVETCFG");
        assert_eq!(bytes.len(), HEADER_LEN + 13);
        let (header, payload) = decode(&bytes);
        assert_eq!(payload, b"payload bytes");
        assert_eq!(
            header.verify(payload, None).unwrap(),
            Verified {
                signed: false,
                signature_checked: false
            }
        );
        assert!(header.check_fits(HEADER_LEN as u64 + 13).is_ok());
    }

    #[test]
    fn zero_area_is_no_bundle_and_other_bytes_are_corrupt() {
        assert_eq!(Header::decode(&[0; 4096]).unwrap(), None);
        let err = Header::decode(&[0xff; 128]).unwrap_err();
        assert!(matches!(err, FormatError::BadMagic { .. }), "{err}");
        assert!(matches!(
            Header::decode(&[0; 10]),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn tampered_payload_or_header_is_refused() {
        let mut bytes = encode(b"network config", None);
        bytes[HEADER_LEN + 3] ^= 0x20;
        let (header, payload) = decode(&bytes);
        assert_eq!(
            header.verify(payload, None),
            Err(FormatError::Sha256Mismatch)
        );
        let bytes = encode(b"network config", None);
        let (header, payload) = decode(&bytes);
        assert!(matches!(
            header.verify(&payload[..5], None),
            Err(FormatError::Truncated { .. })
        ));
        let mut bytes = encode(b"x", None);
        bytes[12] = 0x80;
        assert!(Header::decode(&bytes).is_err());
        let mut bytes = encode(b"x", None);
        bytes[8] = 9;
        assert!(matches!(
            Header::decode(&bytes),
            Err(FormatError::UnsupportedVersion { version: 9, .. })
        ));
    }

    #[test]
    fn oversized_bundle_does_not_fit() {
        let bytes = encode(&[1; 1000], None);
        let (header, _) = decode(&bytes);
        assert_eq!(
            header.check_fits(1000),
            Err(FormatError::TooLarge {
                need: 1128,
                have: 1000
            })
        );
        assert!(header.check_fits(1128).is_ok());
    }

    #[test]
    fn signatures_verify_against_the_ramdisk_key_only() {
        let key = test_key(1);
        let other = test_key(2).public_key();
        let bytes = encode(b"settings", Some(&key));
        let (header, payload) = decode(&bytes);
        assert_eq!(
            header.verify(payload, Some(&key.public_key())).unwrap(),
            Verified {
                signed: true,
                signature_checked: true
            }
        );
        assert_eq!(
            header.verify(payload, Some(&other)),
            Err(FormatError::BadSignature)
        );
        // No key in the ramdisk: accepted, but nothing was checked.
        assert!(!header.verify(payload, None).unwrap().signature_checked);

        // A key in the ramdisk refuses unsigned bundles.
        let unsigned = encode(b"settings", None);
        let (header, payload) = decode(&unsigned);
        assert_eq!(
            header.verify(payload, Some(&key.public_key())),
            Err(FormatError::Unsigned)
        );

        // Changing the payload and its sha256 together breaks the signature.
        let mut forged = encode(b"settingz", None);
        forged[12..16].copy_from_slice(&1u32.to_le_bytes());
        forged[56..120].copy_from_slice(&bytes[56..120]);
        let (header, payload) = decode(&forged);
        assert_eq!(
            header.verify(payload, Some(&key.public_key())),
            Err(FormatError::BadSignature)
        );
    }
}
