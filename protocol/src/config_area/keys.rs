//! Ed25519 keys for signed bundles, in the PEM forms OpenSSL writes:
//! `openssl genpkey -algorithm ed25519 -out sign.pem` (PKCS#8 `PRIVATE KEY`) and
//! `openssl pkey -in sign.pem -pubout -out sign.pub` (SubjectPublicKeyInfo `PUBLIC KEY`).

use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use super::{sha256, FormatError};

/// DER of a SubjectPublicKeyInfo for Ed25519 (RFC 8410) up to the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM block holding an Ed25519 key.
    pub fn from_pem(text: &str) -> Result<PublicKey, FormatError> {
        let der = pem_block(text, "PUBLIC KEY", "public key")?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(key) if key.len() == 32 => {
                let mut raw = [0u8; 32];
                raw.copy_from_slice(key);
                Ok(PublicKey(raw))
            }
            _ => Err(FormatError::Invalid {
                what: "public key",
                problem: "not an Ed25519 SubjectPublicKeyInfo (openssl pkey -pubout of an \
                          ed25519 key)"
                    .into(),
            }),
        }
    }

    /// The `PUBLIC KEY` PEM form.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
    }

    /// sha256 of the raw key: what the locator records.
    pub fn sha256(&self) -> [u8; 32] {
        sha256(&self.0)
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

/// An Ed25519 private key.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// Reads a PKCS#8 `PRIVATE KEY` PEM block holding an Ed25519 key.
    pub fn from_pem(text: &str) -> Result<SigningKey, FormatError> {
        let der = pem_block(text, "PRIVATE KEY", "private key")?;
        Self::from_pkcs8(&der)
    }

    /// From PKCS#8 DER (v1 as OpenSSL writes it, or v2 with the public key).
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, FormatError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(SigningKey)
            .map_err(|e| FormatError::Invalid {
                what: "private key",
                problem: format!("not an Ed25519 PKCS#8 key ({e})"),
            })
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(raw)
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(self.0.sign(message).as_ref());
        sig
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SigningKey")
            .field(&self.public_key())
            .finish()
    }
}

/// The DER inside the first `-----BEGIN {label}-----` block of `text`.
fn pem_block(text: &str, label: &str, what: &'static str) -> Result<Vec<u8>, FormatError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let invalid = |problem: String| FormatError::Invalid { what, problem };
    let start = text
        .find(&begin)
        .ok_or_else(|| invalid(format!("no {begin} line")))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| invalid(format!("no {end} line")))?;
    let body: String = text[start..start + stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| invalid(format!("bad base64 in the PEM block: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl genpkey -algorithm ed25519` output (a throw-away test key) and its
    /// `openssl pkey -pubout`.
    const OPENSSL_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIBMJujpFfcAUgn6Jc8DBEfZK5ELroF8BcHDXVhhUSOwd\n\
        -----END PRIVATE KEY-----\n";
    const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAhlMiUXupVtWzOxnE5z70PbPjGw2CiAtLIrLBlQx57qA=\n\
        -----END PUBLIC KEY-----\n";

    #[test]
    fn openssl_keys_sign_and_verify() {
        let key = SigningKey::from_pem(OPENSSL_PRIVATE).unwrap();
        let public = key.public_key();
        assert_eq!(PublicKey::from_pem(OPENSSL_PUBLIC).unwrap(), public);
        assert_eq!(public.to_pem(), OPENSSL_PUBLIC);
        let sig = key.sign(b"message");
        assert!(public.verifies(b"message", &sig));
        assert!(!public.verifies(b"massage", &sig));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(!public.verifies(b"message", &bad));
    }

    #[test]
    fn wrong_pem_blocks_are_named() {
        let err = PublicKey::from_pem(OPENSSL_PRIVATE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no -----BEGIN PUBLIC KEY----- line"), "{err}");
        let rsa_like = "-----BEGIN PUBLIC KEY-----\nMAoGCCqGSM49AwEH\n-----END PUBLIC KEY-----";
        let err = PublicKey::from_pem(rsa_like).unwrap_err().to_string();
        assert!(err.contains("not an Ed25519"), "{err}");
        let garbage = "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----";
        let err = SigningKey::from_pem(garbage).unwrap_err().to_string();
        assert!(err.contains("bad base64"), "{err}");
    }
}
