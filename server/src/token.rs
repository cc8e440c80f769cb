//! Secrets: agent tokens (Ironic's format) and operator tokens. Only their SHA-256 is
//! stored, so a copy of the database does not hand out working tokens.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new token like Python's `secrets.token_urlsafe()`, which Ironic uses: 32 random bytes
/// as unpadded URL-safe base64, 43 characters.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a token: its SHA-256, hex.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` hashes to `stored`, comparing in constant time.
pub fn matches(token: &str, stored: &str) -> bool {
    let candidate = digest(token);
    candidate.len() == stored.len()
        && candidate
            .bytes()
            .zip(stored.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_look_like_ironics() {
        let token = generate();
        assert_eq!(token.len(), 43);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(token, generate());
    }

    #[test]
    fn only_the_same_token_matches() {
        let token = generate();
        let stored = digest(&token);
        assert!(matches(&token, &stored));
        assert!(!matches(&generate(), &stored));
        assert!(!matches("", &stored));
    }
}
