//! Finding Debian's kernel package in the apt index: `linux-image-amd64` is a metapackage
//! whose `Depends:` names the concrete `linux-image-<abi>-amd64` package; that package's
//! index record gives the `Filename:`, `Size:` and `SHA256:` every download is checked
//! against.

use std::process::Command;

/// The metapackage that always points at the current kernel of the release.
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

#[derive(Debug, thiserror::Error)]
pub enum AptError {
    /// The index has no record at all (or the text was empty).
    #[error("the apt index has no record for {0} (run apt-get update?)")]
    NotFound(String),
    #[error("apt index record of {package} has no {field} field")]
    MissingField {
        package: String,
        field: &'static str,
    },
    #[error("apt index record of {package}: bad {field} {value:?}")]
    BadField {
        package: String,
        field: &'static str,
        value: String,
    },
    #[error("{meta} depends on no linux-image-* package (Depends: {depends:?})")]
    NoKernelDependency { meta: String, depends: String },
    #[error("running apt-cache show {package}: {detail}")]
    Command { package: String, detail: String },
}

/// The fields of one apt index record that the builder uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRecord {
    pub package: String,
    pub version: String,
    /// Path in the archive (`pool/main/l/.../x.deb`); its last component names the cache file.
    pub filename: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    /// `Depends:` as written (empty when absent).
    pub depends: String,
}

impl PackageRecord {
    /// The file name of the .deb (last component of `Filename:`).
    pub fn deb_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }
}

/// Parses the first stanza of deb822 text (as printed by `apt-cache show`). Continuation
/// lines (starting with a space) belong to the previous field and are ignored here.
pub fn parse_record(package: &str, text: &str) -> Result<PackageRecord, AptError> {
    let stanza = text
        .trim_start_matches('\n')
        .split("\n\n")
        .next()
        .unwrap_or_default();
    let field = |name: &str| {
        stanza.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (!line.starts_with([' ', '\t']) && key.eq_ignore_ascii_case(name))
                .then(|| value.trim().to_owned())
        })
    };
    let need = |name: &'static str| {
        field(name).ok_or(AptError::MissingField {
            package: package.to_owned(),
            field: name,
        })
    };
    let found = field("Package").ok_or_else(|| AptError::NotFound(package.to_owned()))?;
    if found != package {
        return Err(AptError::BadField {
            package: package.to_owned(),
            field: "Package",
            value: found,
        });
    }
    let size_text = need("Size")?;
    let size = size_text.parse().map_err(|_| AptError::BadField {
        package: package.to_owned(),
        field: "Size",
        value: size_text.clone(),
    })?;
    let sha256 = need("SHA256")?.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AptError::BadField {
            package: package.to_owned(),
            field: "SHA256",
            value: sha256,
        });
    }
    Ok(PackageRecord {
        package: found,
        version: need("Version")?,
        filename: need("Filename")?,
        size,
        sha256,
        depends: field("Depends").unwrap_or_default(),
    })
}

/// The concrete kernel package a metapackage depends on (first `linux-image-*` in
/// `Depends:`, alternatives included).
pub fn kernel_package_name(meta: &PackageRecord) -> Result<String, AptError> {
    meta.depends
        .split([',', '|'])
        .filter_map(|dep| dep.split_whitespace().next())
        .find(|name| name.starts_with("linux-image-"))
        .map(str::to_owned)
        .ok_or_else(|| AptError::NoKernelDependency {
            meta: meta.package.clone(),
            depends: meta.depends.clone(),
        })
}

/// Where index records come from: apt in real use, fixture text in tests.
pub trait PackageIndex {
    /// The index record(s) of `package`, as `apt-cache show --no-all-versions` prints them.
    fn show(&self, package: &str) -> Result<String, AptError>;
}

/// The system's apt index, through `apt-cache show --no-all-versions` (the candidate version).
pub struct AptCache;

impl PackageIndex for AptCache {
    fn show(&self, package: &str) -> Result<String, AptError> {
        let out = Command::new("apt-cache")
            .args(["show", "--no-all-versions", package])
            .output()
            .map_err(|e| AptError::Command {
                package: package.to_owned(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(AptError::Command {
                package: package.to_owned(),
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Resolves `meta` (normally [`KERNEL_METAPACKAGE`]) to the record of the kernel package.
pub fn resolve_kernel(index: &dyn PackageIndex, meta: &str) -> Result<PackageRecord, AptError> {
    let meta_record = parse_record(meta, &index.show(meta)?)?;
    let name = kernel_package_name(&meta_record)?;
    parse_record(&name, &index.show(&name)?)
}

#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::BTreeMap;

    /// An index answering from fixed deb822 texts.
    pub struct FakeIndex(pub BTreeMap<String, String>);

    impl PackageIndex for FakeIndex {
        fn show(&self, package: &str) -> Result<String, AptError> {
            self.0
                .get(package)
                .cloned()
                .ok_or_else(|| AptError::NotFound(package.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeIndex;
    use super::*;

    /// Trimmed output of `apt-cache show --no-all-versions` on Debian 12.
    const META: &str = "Package: linux-image-amd64
Source: linux-signed-amd64 (6.1.172+1)
Version: 6.1.172-1
Provides: linux-image-generic, wireguard-modules (= 1.0.0)
Depends: linux-image-6.1.0-48-amd64 (= 6.1.172-1)
Description: Linux for 64-bit PCs (meta-package)
Filename: pool/updates/main/l/linux-signed-amd64/linux-image-amd64_6.1.172-1_amd64.deb
Size: 1480
SHA256: 6aeb6981404aa737857506d094a60fc311ea89b471995d1677b26b516d8bdf2e

";
    const KERNEL: &str = "Package: linux-image-6.1.0-48-amd64
Source: linux-signed-amd64 (6.1.172+1)
Version: 6.1.172-1
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Description: Linux 6.1 for 64-bit PCs (signed)
 The Linux kernel 6.1 and modules for use on PCs with AMD64, Intel 64 or
 Size: 1 (a continuation line, not a field)
Filename: pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-48-amd64_6.1.172-1_amd64.deb
Size: 70225828
SHA256: 22007AC243A5DE6D53CBC5B43040B1389FA10860C4952A43D2786E09798CF1F8

";

    #[test]
    fn parses_checksum_size_and_filename() {
        let r = parse_record("linux-image-6.1.0-48-amd64", KERNEL).unwrap();
        assert_eq!(r.version, "6.1.172-1");
        assert_eq!(r.size, 70_225_828);
        assert_eq!(
            r.sha256,
            "22007ac243a5de6d53cbc5b43040b1389fa10860c4952a43d2786e09798cf1f8"
        );
        assert_eq!(
            r.deb_name(),
            "linux-image-6.1.0-48-amd64_6.1.172-1_amd64.deb"
        );
    }

    #[test]
    fn only_the_first_stanza_counts() {
        let two = format!("{KERNEL}Package: linux-image-6.1.0-48-amd64\nVersion: 9\n");
        assert_eq!(
            parse_record("linux-image-6.1.0-48-amd64", &two)
                .unwrap()
                .version,
            "6.1.172-1"
        );
    }

    #[test]
    fn resolves_the_metapackage() {
        let index = FakeIndex(
            [
                (KERNEL_METAPACKAGE, META),
                ("linux-image-6.1.0-48-amd64", KERNEL),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        );
        let r = resolve_kernel(&index, KERNEL_METAPACKAGE).unwrap();
        assert_eq!(r.package, "linux-image-6.1.0-48-amd64");
    }

    #[test]
    fn rejects_incomplete_or_wrong_records() {
        let no_sha = KERNEL.replace("SHA256: 22007AC", "MD5sum: 22007AC");
        let err = parse_record("linux-image-6.1.0-48-amd64", &no_sha).unwrap_err();
        assert_eq!(
            err.to_string(),
            "apt index record of linux-image-6.1.0-48-amd64 has no SHA256 field"
        );
        let short = KERNEL.replace("SHA256: 22007AC", "SHA256: 2");
        assert!(matches!(
            parse_record("linux-image-6.1.0-48-amd64", &short),
            Err(AptError::BadField {
                field: "SHA256",
                ..
            })
        ));
        let bad_size = KERNEL.replace("Size: 70225828", "Size: big");
        assert!(matches!(
            parse_record("linux-image-6.1.0-48-amd64", &bad_size),
            Err(AptError::BadField { field: "Size", .. })
        ));
        assert!(matches!(parse_record("x", ""), Err(AptError::NotFound(_))));
        assert!(matches!(
            parse_record("linux-image-amd64", KERNEL),
            Err(AptError::BadField {
                field: "Package",
                ..
            })
        ));
        let meta = parse_record(
            KERNEL_METAPACKAGE,
            &META.replace("Depends: linux-image-6.1.0-48-amd64", "Depends: foo"),
        )
        .unwrap();
        assert!(matches!(
            kernel_package_name(&meta),
            Err(AptError::NoKernelDependency { .. })
        ));
    }
}
