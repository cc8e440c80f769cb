//! SHA-256 `crypt(3)` (`$5$salt$hash`), as defined by Ulrich Drepper's "Unix crypt using
//! SHA-256 and SHA-512" specification. `rescue.finalize_rescue` uses it for a plain password,
//! where IPA calls `crypt_password(password, crypt_mksalt('SHA-256'))`.

use rand::Rng;
use sha2::{Digest, Sha256};

const ROUNDS: usize = 5000;
const SALT_CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random 16-character salt from the crypt alphabet.
pub fn random_salt() -> String {
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| SALT_CHARS[rng.gen_range(0..SALT_CHARS.len())] as char)
        .collect()
}

/// Appends `source` repeated to exactly `len` bytes.
fn repeated(source: &[u8], len: usize) -> Vec<u8> {
    source.iter().copied().cycle().take(len).collect()
}

/// `$5$<salt>$<hash>` of `password` with the default 5000 rounds. The salt is cut to 16
/// characters, as the specification requires.
pub fn sha256_crypt(password: &[u8], salt: &str) -> String {
    let salt = &salt.as_bytes()[..salt.len().min(16)];
    let b = Sha256::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();

    let mut a = Sha256::new();
    a.update(password);
    a.update(salt);
    a.update(repeated(&b, password.len()));
    let mut n = password.len();
    while n > 0 {
        if n & 1 == 1 {
            a.update(b);
        } else {
            a.update(password);
        }
        n >>= 1;
    }
    let a = a.finalize();

    let mut dp = Sha256::new();
    for _ in 0..password.len() {
        dp.update(password);
    }
    let p = repeated(&dp.finalize(), password.len());

    let mut ds = Sha256::new();
    for _ in 0..16 + usize::from(a[0]) {
        ds.update(salt);
    }
    let s = repeated(&ds.finalize(), salt.len());

    let mut c = a;
    for i in 0..ROUNDS {
        let mut round = Sha256::new();
        if i % 2 == 1 {
            round.update(&p);
        } else {
            round.update(c);
        }
        if i % 3 != 0 {
            round.update(&s);
        }
        if i % 7 != 0 {
            round.update(&p);
        }
        if i % 2 == 1 {
            round.update(c);
        } else {
            round.update(&p);
        }
        c = round.finalize();
    }

    let mut out = format!("$5${}$", String::from_utf8_lossy(salt));
    let mut push = |b2: u8, b1: u8, b0: u8, chars: usize| {
        let mut w = (u32::from(b2) << 16) | (u32::from(b1) << 8) | u32::from(b0);
        for _ in 0..chars {
            out.push(SALT_CHARS[(w & 0x3f) as usize] as char);
            w >>= 6;
        }
    };
    for (i, j, k) in [
        (0, 10, 20),
        (21, 1, 11),
        (12, 22, 2),
        (3, 13, 23),
        (24, 4, 14),
        (15, 25, 5),
        (6, 16, 26),
        (27, 7, 17),
        (18, 28, 8),
        (9, 19, 29),
    ] {
        push(c[i], c[j], c[k], 4);
    }
    push(0, c[31], c[30], 3);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's vector, plus hashes made with `openssl passwd -5` and Python's
    /// `crypt` (empty password; password longer than one digest).
    #[test]
    fn matches_reference_hashes() {
        assert_eq!(
            sha256_crypt(b"Hello world!", "saltstring"),
            "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
        );
        assert_eq!(
            sha256_crypt(b"", "saltstring"),
            "$5$saltstring$FdNfA4gXqvCeO6iZs7G/.wwwoywYZqo0l1pwmfWaBA7"
        );
        assert_eq!(
            sha256_crypt(
                b"a-very-long-password-that-is-more-than-thirty-two-bytes-long!!",
                "abcdefghijklmnop"
            ),
            "$5$abcdefghijklmnop$LPYKOeVam85XkdEKsWVX63oPzulAj76xzLqeUhYm2vB"
        );
    }

    #[test]
    fn long_salts_are_cut_and_random_salts_are_valid() {
        assert!(sha256_crypt(b"x", "0123456789abcdefXYZ").starts_with("$5$0123456789abcdef$"));
        let salt = random_salt();
        assert_eq!(salt.len(), 16);
        assert!(salt.bytes().all(|c| SALT_CHARS.contains(&c)));
    }
}
