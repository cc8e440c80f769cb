//! rivet's embedded config area: the byte formats the image builder writes into an ISO and
//! the agent reads back from its boot medium (docs/config-area.md).
//!
//! - [`locator`]: 512 bytes in the Application Use field of the ISO 9660 primary volume
//!   descriptor, saying where the config area and the kernel-argument fields are.
//! - [`bundle`]: what `customize` writes at the start of the config area: a 128-byte header
//!   (magic, version, payload length, sha256, optional Ed25519 signature) and the payload.
//! - [`payload`]: the payload, a tar of named entries (settings, network_data.json, CA,
//!   files).
//! - [`kargs`]: the fixed-length kernel-argument fields inside the boot loader configs.
//! - [`keys`]: Ed25519 keys in the PEM forms `openssl genpkey -algorithm ed25519` writes.
//!
//! Everything here works on byte slices; reading devices and files is the callers' job.

pub mod bundle;
pub mod kargs;
pub mod keys;
pub mod locator;
pub mod payload;

/// Byte offset of the ISO 9660 primary volume descriptor (sector 16 of 2048 bytes).
pub const PVD_OFFSET: u64 = 16 * 2048;
/// Length of a volume descriptor.
pub const PVD_LEN: usize = 2048;
/// Offset of the Application Use field inside the primary volume descriptor (ECMA-119
/// 8.4.32: 512 bytes "not specified by this standard", free for applications).
pub const APPLICATION_USE_OFFSET: usize = 883;
/// Byte offset of the locator in the ISO image (and on the boot medium).
pub const LOCATOR_OFFSET: u64 = PVD_OFFSET + APPLICATION_USE_OFFSET as u64;

/// Where the CA bundle of a bundle's `ca.pem` entry is installed in the ramdisk.
pub const CA_PATH: &str = "/etc/rivet/ca.pem";
/// Where the image builder puts the public key bundles must be signed with.
pub const SIGNING_PUBKEY_PATH: &str = "/etc/rivet/bundle-signing.pub";

/// Everything that makes a locator, a bundle or a key unusable. Each message names the
/// problem so an operator can act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A structure is shorter than its format says.
    #[error("{what} is truncated: {got} bytes, {need} needed")]
    Truncated {
        what: &'static str,
        got: usize,
        need: usize,
    },
    /// The magic bytes are not there.
    #[error("{what}: bad magic {found:?} (expected {expected:?})")]
    BadMagic {
        what: &'static str,
        found: String,
        expected: &'static str,
    },
    /// A version this code does not know.
    #[error("{what}: version {version} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        what: &'static str,
        version: u32,
        supported: u32,
    },
    /// A field with a value the format does not allow.
    #[error("{what}: {problem}")]
    Invalid { what: &'static str, problem: String },
    /// The locator's own checksum does not match: it was damaged.
    #[error(
        "the locator's checksum does not match: the ISO's primary volume descriptor was altered"
    )]
    LocatorChecksum,
    /// The bundle is larger than the config area.
    #[error("the bundle needs {need} bytes but the config area holds {have}")]
    TooLarge { need: u64, have: u64 },
    /// The payload's sha256 is not the one in the header.
    #[error("the bundle's payload does not match its sha256 (corrupt or partly overwritten)")]
    Sha256Mismatch,
    /// The ramdisk has a signing key and the bundle is not signed.
    #[error("the bundle is not signed, but this ramdisk only accepts bundles signed with its key")]
    Unsigned,
    /// The Ed25519 signature does not verify with the expected key.
    #[error("the bundle's signature does not verify with the ramdisk's signing key")]
    BadSignature,
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn shown_magic(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
