//! Image checksums (spec §5): which digest to expect, computing it in flight, and reading
//! checksum files in both of the spec's formats.
//!
//! `os_hash_algo` + `os_hash_value` win when the algorithm is one this build computes;
//! otherwise `checksum` is used, its algorithm chosen by length (32 md5 — only when MD5 is
//! enabled —, 64 sha256, 128 sha512). Either value may be an `http(s)://` URL of a checksum
//! file, fetched by the caller and parsed by [`parse_checksum_file`].

use md5::Md5;
use rivet_protocol::image_info::ImageInfo;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// A digest algorithm this build computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    /// By `os_hash_algo` name (as Python's hashlib spells them).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name.to_ascii_lowercase().as_str() {
            "md5" => Some(Algorithm::Md5),
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// By the length of a hex digest, as IPA picks the algorithm of `checksum`.
    pub fn from_hex_len(len: usize) -> Option<Algorithm> {
        match len {
            32 => Some(Algorithm::Md5),
            64 => Some(Algorithm::Sha256),
            128 => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Md5 => Hasher::Md5(Md5::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha384 => Hasher::Sha384(Sha384::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }
}

/// A running digest.
#[derive(Clone)]
pub enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The lowercase hex digest.
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Md5(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Hasher::Md5(_) => "md5",
            Hasher::Sha256(_) => "sha256",
            Hasher::Sha384(_) => "sha384",
            Hasher::Sha512(_) => "sha512",
        };
        write!(f, "Hasher({name})")
    }
}

/// Where the expected digest comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedSource {
    /// The hex digest itself.
    Value(String),
    /// A checksum file to fetch; the entry for `file_name` is taken from it.
    Url { url: String, file_name: String },
}

/// The digest an image must have: the algorithm, and the value or where to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `None` for a checksum-file URL given as `checksum`: the algorithm follows from the
    /// length of the digest found in the file.
    pub algorithm: Option<Algorithm>,
    pub source: ExpectedSource,
}

/// A resolved expectation: the algorithm and the lowercase hex digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedDigest {
    pub algorithm: Algorithm,
    pub hex: String,
}

/// Why no usable checksum was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error(
        "Image checksum is not available, either the 'checksum' field or the 'os_hash_algo' \
         and 'os_hash_value' fields pair must be set for image verification."
    )]
    Missing,
    #[error(
        "image checksum {0:?} is not a hex digest of 32 (md5), 64 (sha256) or 128 (sha512) \
         characters, nor an http(s) URL"
    )]
    Malformed(String),
    #[error(
        "image checksum is an MD5 digest and MD5 checksums are disabled \
         (agent_md5_checksum_enable); set 'os_hash_algo' and 'os_hash_value' instead"
    )]
    Md5Disabled,
    #[error("checksum file {url}: {message}")]
    File { url: String, message: String },
}

fn is_url(value: &str) -> bool {
    value.starts_with("http://") || value.starts_with("https://")
}

/// The last path segment of the first image URL: the name looked up in checksum files.
pub fn image_file_name(info: &ImageInfo) -> String {
    let first = info
        .urls
        .as_ref()
        .and_then(|urls| urls.first())
        .map(String::as_str)
        .unwrap_or_default();
    let path = match url::Url::parse(first) {
        Ok(url) => url.path().to_string(),
        Err(_) => first.to_string(),
    };
    path.rsplit('/').next().unwrap_or_default().to_string()
}

/// What `info` says the image's digest is (IPA's order: a supported `os_hash_algo` first,
/// then `checksum`).
pub fn expected(info: &ImageInfo, md5_enabled: bool) -> Result<Expected, ChecksumError> {
    let file_name = image_file_name(info);
    let source = |value: &str| {
        if is_url(value) {
            ExpectedSource::Url {
                url: value.to_string(),
                file_name: file_name.clone(),
            }
        } else {
            ExpectedSource::Value(value.to_ascii_lowercase())
        }
    };
    if let (Some(algo), Some(value)) = (&info.os_hash_algo, &info.os_hash_value) {
        if let (Some(algorithm), false) = (Algorithm::from_name(algo), value.is_empty()) {
            return Ok(Expected {
                algorithm: Some(algorithm),
                source: source(value),
            });
        }
        tracing::warn!(
            os_hash_algo = %algo,
            "os_hash_algo is not supported by this build; falling back to 'checksum'"
        );
    }
    let Some(checksum) = info.checksum().filter(|c| !c.is_empty()) else {
        return Err(ChecksumError::Missing);
    };
    if is_url(checksum) {
        return Ok(Expected {
            algorithm: None,
            source: source(checksum),
        });
    }
    let algorithm = checked_algorithm(checksum, md5_enabled)?;
    Ok(Expected {
        algorithm: Some(algorithm),
        source: source(checksum),
    })
}

/// The algorithm of a bare hex `checksum`, refusing MD5 unless enabled.
pub fn checked_algorithm(hex_digest: &str, md5_enabled: bool) -> Result<Algorithm, ChecksumError> {
    if !hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ChecksumError::Malformed(hex_digest.to_string()));
    }
    match Algorithm::from_hex_len(hex_digest.len()) {
        None => Err(ChecksumError::Malformed(hex_digest.to_string())),
        Some(Algorithm::Md5) if !md5_enabled => Err(ChecksumError::Md5Disabled),
        Some(algorithm) => Ok(algorithm),
    }
}

fn is_hex_digest(word: &str) -> bool {
    matches!(word.len(), 32 | 64 | 128) && word.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The digest for `file_name` in a checksum file.
///
/// Accepted: a file holding only a digest; lines `<digest>  <name>` or `<digest> *<name>`
/// (coreutils); lines `<ALGO> (<name>) = <digest>` (BSD/CentOS). `#` comments and blank
/// lines are skipped. Names are compared exactly (IPA treats the name as a regex).
pub fn parse_checksum_file(text: &str, file_name: &str) -> Result<String, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    match lines.as_slice() {
        [] => return Err("the file is empty".to_string()),
        [only] if !only.contains(char::is_whitespace) => {
            return if is_hex_digest(only) {
                Ok(only.to_ascii_lowercase())
            } else {
                Err(format!("its only line {only:?} is not a hex digest"))
            };
        }
        _ => {}
    }
    for line in lines {
        if let Some(digest) = bsd_line(line, file_name).or_else(|| gnu_line(line, file_name)) {
            return Ok(digest.to_ascii_lowercase());
        }
    }
    Err(format!("no digest for {file_name:?} in it"))
}

/// `<digest>  <name>` or `<digest> *<name>`.
fn gnu_line<'a>(line: &'a str, file_name: &str) -> Option<&'a str> {
    let (digest, name) = line.split_once(char::is_whitespace)?;
    let name = name.trim();
    let name = name.strip_prefix('*').unwrap_or(name);
    (is_hex_digest(digest) && name == file_name).then_some(digest)
}

/// `<ALGO> (<name>) = <digest>`.
fn bsd_line<'a>(line: &'a str, file_name: &str) -> Option<&'a str> {
    let (head, digest) = line.rsplit_once('=')?;
    let digest = digest.trim();
    let open = head.find('(')?;
    let close = head.rfind(')')?;
    let name = head.get(open + 1..close)?;
    (is_hex_digest(digest) && name == file_name).then_some(digest)
}

/// Resolves a checksum-file entry: the digest's length gives the algorithm when none was
/// given, and MD5 is refused unless enabled.
pub fn resolve_from_file(
    algorithm: Option<Algorithm>,
    url: &str,
    text: &str,
    file_name: &str,
    md5_enabled: bool,
) -> Result<ExpectedDigest, ChecksumError> {
    let file_error = |message: String| ChecksumError::File {
        url: url.to_string(),
        message,
    };
    let hex = parse_checksum_file(text, file_name).map_err(file_error)?;
    let algorithm = match algorithm {
        Some(algorithm) => algorithm,
        None => checked_algorithm(&hex, md5_enabled)?,
    };
    let expected_len = algorithm.hasher().finish_hex().len();
    if hex.len() != expected_len {
        return Err(file_error(format!(
            "the digest found is {} characters long, not a {} digest",
            hex.len(),
            algorithm.name()
        )));
    }
    Ok(ExpectedDigest { algorithm, hex })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256: &str = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";
    const MD5: &str = "b6d81b360a5672d80c27430f39153e2c";

    fn info(checksum: Option<&str>) -> ImageInfo {
        ImageInfo {
            id: Some("img".into()),
            urls: Some(vec!["http://h/images/disk.qcow2?sig=1".into()]),
            checksum: checksum.map(|c| Some(c.to_string())),
            ..ImageInfo::default()
        }
    }

    #[test]
    fn digests_match_known_values() {
        let mut h = Algorithm::Sha256.hasher();
        h.update(b"abc");
        assert_eq!(
            h.finish_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = Algorithm::Md5.hasher();
        h.update(b"abc");
        assert_eq!(h.finish_hex(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(Algorithm::Sha512.hasher().finish_hex().len(), 128);
    }

    #[test]
    fn os_hash_wins_and_md5_checksum_needs_enabling() {
        let mut with_os = info(Some(MD5));
        with_os.os_hash_algo = Some("SHA256".into());
        with_os.os_hash_value = Some(SHA256.to_uppercase());
        let e = expected(&with_os, false).unwrap();
        assert_eq!(e.algorithm, Some(Algorithm::Sha256));
        assert_eq!(e.source, ExpectedSource::Value(SHA256.into()));

        assert_eq!(
            expected(&info(Some(MD5)), false),
            Err(ChecksumError::Md5Disabled)
        );
        assert_eq!(
            expected(&info(Some(MD5)), true).unwrap().algorithm,
            Some(Algorithm::Md5)
        );
        assert_eq!(expected(&info(None), true), Err(ChecksumError::Missing));
        assert!(matches!(
            expected(&info(Some("xyz")), true),
            Err(ChecksumError::Malformed(_))
        ));
    }

    #[test]
    fn unsupported_os_hash_falls_back_to_checksum() {
        let mut i = info(Some(SHA256));
        i.os_hash_algo = Some("whirlpool".into());
        i.os_hash_value = Some("00".into());
        assert_eq!(
            expected(&i, false).unwrap().algorithm,
            Some(Algorithm::Sha256)
        );
    }

    #[test]
    fn checksum_urls_name_the_first_image_url_file() {
        let e = expected(&info(Some("https://h/SHA256SUMS")), false).unwrap();
        assert_eq!(e.algorithm, None);
        assert_eq!(
            e.source,
            ExpectedSource::Url {
                url: "https://h/SHA256SUMS".into(),
                file_name: "disk.qcow2".into()
            }
        );
    }

    #[test]
    fn checksum_files_in_both_formats() {
        let gnu = format!("# comment\n{MD5}  other.img\n{SHA256} *disk.qcow2\n");
        assert_eq!(parse_checksum_file(&gnu, "disk.qcow2").unwrap(), SHA256);
        let bsd = format!("SHA256 (other) = {MD5}\nSHA256 (disk.qcow2) = {}\n", SHA256);
        assert_eq!(parse_checksum_file(&bsd, "disk.qcow2").unwrap(), SHA256);
        assert_eq!(
            parse_checksum_file(&format!("\n  {SHA256}  \n"), "x").unwrap(),
            SHA256
        );
        assert!(parse_checksum_file("", "x").unwrap_err().contains("empty"));
        assert!(parse_checksum_file(&gnu, "missing.img")
            .unwrap_err()
            .contains("missing.img"));
        // A prefix of the wanted name is not a match.
        let prefix = format!("{SHA256}  disk.qcow2.part\n{MD5}  a\n");
        assert!(parse_checksum_file(&prefix, "disk.qcow2").is_err());
    }

    #[test]
    fn resolving_a_file_entry_checks_md5_and_length() {
        let text = format!("{MD5}  disk.qcow2\nx  y\n");
        assert_eq!(
            resolve_from_file(None, "u", &text, "disk.qcow2", false),
            Err(ChecksumError::Md5Disabled)
        );
        assert_eq!(
            resolve_from_file(None, "u", &text, "disk.qcow2", true)
                .unwrap()
                .algorithm,
            Algorithm::Md5
        );
        assert!(matches!(
            resolve_from_file(Some(Algorithm::Sha512), "u", &text, "disk.qcow2", true),
            Err(ChecksumError::File { .. })
        ));
    }
}
