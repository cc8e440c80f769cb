//! The download cache: a package is only ever used after its sha256 matched the apt index.
//!
//! A download goes into a fresh `.partial-*` directory next to the cache file, is checked
//! (size and sha256) and only then renamed into place, so an interrupted or corrupt download
//! is never used. A cached file is checked again before every use; one that fails is deleted
//! and fetched again. Leftover `.partial-*` directories (from a killed run) are removed.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::apt::PackageRecord;

const PARTIAL_PREFIX: &str = ".partial-";

/// Lower-case hex sha256 and size of a file.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Downloads one package file.
pub trait Fetcher {
    /// Downloads `record` into the empty directory `dir` and returns the file's path.
    fn fetch(&self, record: &PackageRecord, dir: &Path) -> Result<PathBuf>;
}

/// `apt-get download <pkg>=<version>` run inside the target directory.
pub struct AptGetDownload;

impl Fetcher for AptGetDownload {
    fn fetch(&self, record: &PackageRecord, dir: &Path) -> Result<PathBuf> {
        let spec = format!("{}={}", record.package, record.version);
        let out = Command::new("apt-get")
            .args(["download", "-q", &spec])
            .current_dir(dir)
            .output()
            .context("running apt-get download")?;
        if !out.status.success() {
            bail!(
                "apt-get download {spec}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut debs = Vec::new();
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry
                .with_context(|| format!("listing {}", dir.display()))?
                .path();
            if path.extension().is_some_and(|e| e == "deb") {
                debs.push(path);
            }
        }
        match debs.as_slice() {
            [one] => Ok(one.clone()),
            _ => bail!(
                "apt-get download {spec} left {} .deb files in {}",
                debs.len(),
                dir.display()
            ),
        }
    }
}

/// How [`obtain`] got the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obtained {
    /// The cached copy verified.
    Cached,
    /// Downloaded now; `replaced` says why an existing cached copy was thrown away.
    Fetched { replaced: Option<String> },
}

/// Returns the path of a verified copy of `record` under `cache_dir`, downloading it with
/// `fetcher` when there is no good cached copy.
pub fn obtain(
    cache_dir: &Path,
    record: &PackageRecord,
    fetcher: &dyn Fetcher,
) -> Result<(PathBuf, Obtained)> {
    fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating cache directory {}", cache_dir.display()))?;
    // Builds sharing the cache take turns: leftovers of a killed run can then be removed
    // without removing a download another build has in progress.
    let _lock = lock_cache(cache_dir)?;
    remove_stale_partials(cache_dir)?;
    let target = cache_dir.join(record.deb_name());
    let mut replaced = None;
    if target.exists() {
        match check(&target, record) {
            Ok(()) => return Ok((target, Obtained::Cached)),
            Err(why) => {
                fs::remove_file(&target)
                    .with_context(|| format!("removing bad cached file {}", target.display()))?;
                replaced = Some(why);
            }
        }
    }
    let partial = tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .tempdir_in(cache_dir)
        .with_context(|| format!("creating a download directory in {}", cache_dir.display()))?;
    let downloaded = fetcher
        .fetch(record, partial.path())
        .with_context(|| format!("downloading {} {}", record.package, record.version))?;
    if let Err(why) = check(&downloaded, record) {
        bail!(
            "downloaded {} failed verification against the apt index: {why}",
            record.package
        );
    }
    fs::File::open(&downloaded)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", downloaded.display()))?;
    fs::rename(&downloaded, &target)
        .with_context(|| format!("renaming {} to {}", downloaded.display(), target.display()))?;
    Ok((target, Obtained::Fetched { replaced }))
}

/// An exclusive `flock(2)` on `<cache_dir>/.lock`, held until dropped.
fn lock_cache(cache_dir: &Path) -> Result<nix::fcntl::Flock<fs::File>> {
    let path = cache_dir.join(".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| anyhow::anyhow!("locking {}: {errno}", path.display()))
}

/// Checks size and sha256 of `path` against the index record; the error says what differs.
fn check(path: &Path, record: &PackageRecord) -> std::result::Result<(), String> {
    let (sha, size) = sha256_file(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if size != record.size {
        return Err(format!(
            "{} has {size} bytes, the index says {}",
            path.display(),
            record.size
        ));
    }
    if sha != record.sha256 {
        return Err(format!(
            "{} has sha256 {sha}, the index says {}",
            path.display(),
            record.sha256
        ));
    }
    Ok(())
}

fn remove_stale_partials(cache_dir: &Path) -> Result<()> {
    let listing = || format!("listing {}", cache_dir.display());
    for entry in fs::read_dir(cache_dir).with_context(listing)? {
        let entry = entry.with_context(listing)?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(PARTIAL_PREFIX)
        {
            let path = entry.path();
            fs::remove_dir_all(&path)
                .with_context(|| format!("removing stale download {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    /// Writes fixed bytes as the download and counts its calls.
    struct FakeFetcher {
        bytes: RefCell<Vec<u8>>,
        calls: Cell<usize>,
    }

    impl FakeFetcher {
        fn new(bytes: &[u8]) -> Self {
            FakeFetcher {
                bytes: RefCell::new(bytes.to_vec()),
                calls: Cell::new(0),
            }
        }
    }

    impl Fetcher for FakeFetcher {
        fn fetch(&self, record: &PackageRecord, dir: &Path) -> Result<PathBuf> {
            self.calls.set(self.calls.get() + 1);
            let path = dir.join(record.deb_name());
            fs::write(&path, &*self.bytes.borrow())?;
            Ok(path)
        }
    }

    fn record_for(bytes: &[u8]) -> PackageRecord {
        PackageRecord {
            package: "linux-image-x".into(),
            version: "1".into(),
            filename: "pool/main/l/x/linux-image-x_1_amd64.deb".into(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            depends: String::new(),
        }
    }

    /// The cache's entries, without its lock file.
    fn only_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != ".lock")
            .collect();
        names.sort();
        names
    }

    #[test]
    fn fetches_once_then_uses_the_verified_cache() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = FakeFetcher::new(b"good package");
        let record = record_for(b"good package");
        let (path, how) = obtain(dir.path(), &record, &fetcher).unwrap();
        assert_eq!(how, Obtained::Fetched { replaced: None });
        assert_eq!(fs::read(&path).unwrap(), b"good package");
        let (again, how) = obtain(dir.path(), &record, &fetcher).unwrap();
        assert_eq!((again, how), (path, Obtained::Cached));
        assert_eq!(fetcher.calls.get(), 1);
        assert_eq!(only_entries(dir.path()), ["linux-image-x_1_amd64.deb"]);
    }

    #[test]
    fn corrupt_cached_file_is_refetched() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_for(b"good package");
        // Same size, different bytes: only the checksum can tell.
        fs::write(dir.path().join(record.deb_name()), b"evil package").unwrap();
        let fetcher = FakeFetcher::new(b"good package");
        let (path, how) = obtain(dir.path(), &record, &fetcher).unwrap();
        let Obtained::Fetched {
            replaced: Some(why),
        } = how
        else {
            panic!("{how:?}")
        };
        assert!(why.contains("has sha256"), "{why}");
        assert_eq!(fs::read(path).unwrap(), b"good package");
        assert_eq!(fetcher.calls.get(), 1);
    }

    #[test]
    fn truncated_cached_file_is_refetched() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_for(b"good package");
        fs::write(dir.path().join(record.deb_name()), b"good pa").unwrap();
        let fetcher = FakeFetcher::new(b"good package");
        let (_, how) = obtain(dir.path(), &record, &fetcher).unwrap();
        let Obtained::Fetched {
            replaced: Some(why),
        } = how
        else {
            panic!("{how:?}")
        };
        assert!(why.contains("has 7 bytes, the index says 12"), "{why}");
    }

    #[test]
    fn corrupt_download_is_never_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_for(b"good package");
        let fetcher = FakeFetcher::new(b"bad! package");
        let err = format!("{:#}", obtain(dir.path(), &record, &fetcher).unwrap_err());
        assert!(
            err.contains("failed verification against the apt index"),
            "{err}"
        );
        assert!(
            only_entries(dir.path()).is_empty(),
            "{:?}",
            only_entries(dir.path())
        );
        // The next run downloads again and succeeds once the mirror serves good bytes.
        *fetcher.bytes.borrow_mut() = b"good package".to_vec();
        obtain(dir.path(), &record, &fetcher).unwrap();
        assert_eq!(fetcher.calls.get(), 2);
    }

    #[test]
    fn leftovers_of_an_interrupted_download_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".partial-abc123");
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("linux-image-x_1_amd64.deb"), b"good pa").unwrap();
        let record = record_for(b"good package");
        obtain(dir.path(), &record, &FakeFetcher::new(b"good package")).unwrap();
        assert_eq!(only_entries(dir.path()), ["linux-image-x_1_amd64.deb"]);
    }
}
