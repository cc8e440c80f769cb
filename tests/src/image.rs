//! The boot image end-to-end tests run: `rivet-image-builder build` around the static
//! (musl) `rivet-agent`, cached under `target/e2e-images/<key>/` where the key hashes the
//! agent, the builder and the kernel command line, so reruns with the same inputs reuse it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{bail, ensure, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

/// How to build the agent these tests put into the image.
pub const AGENT_BUILD: &str =
    "cargo build --release --target x86_64-unknown-linux-musl -p rivet-agent";
const MUSL_AGENT: &str = "x86_64-unknown-linux-musl/release/rivet-agent";
/// Built images kept in `target/e2e-images/`.
const KEEP_IMAGES: usize = 4;

/// A built image: the directory with `vmlinuz`, `initramfs.img`, `esp.img`, `rivet.iso`
/// and `manifest.json`.
#[derive(Debug, Clone)]
pub struct BootImage {
    pub dir: PathBuf,
}

impl BootImage {
    pub fn iso(&self) -> PathBuf {
        self.dir.join("rivet.iso")
    }

    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    pub fn initramfs(&self) -> PathBuf {
        self.dir.join("initramfs.img")
    }

    /// The kernel's release (`uname -r`), from `manifest.json`'s `kernel.version`.
    pub fn kernel_version(&self) -> Result<String> {
        let path = self.dir.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let manifest: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        manifest["kernel"]["version"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{} has no kernel.version", path.display()))
    }

    /// The FAT ESP image with GRUB (usable as Ironic's `bootloader` / `[DEFAULT]esp_image`).
    pub fn esp(&self) -> PathBuf {
        self.dir.join("esp.img")
    }

    /// Size in bytes of one of the outputs.
    pub fn size_of(&self, path: &Path) -> Result<u64> {
        Ok(std::fs::metadata(path)
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len())
    }
}

/// `target/` of this checkout (or `$CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}

/// The static agent, which must be newer than every source file it is built from: an image
/// around a stale agent would test old code.
pub fn static_agent() -> Result<PathBuf> {
    let agent = target_dir().join(MUSL_AGENT);
    let built = std::fs::metadata(&agent)
        .and_then(|m| m.modified())
        .with_context(|| {
            format!(
                "the static agent {} is missing: build it with `{AGENT_BUILD}` (ci/test does)",
                agent.display()
            )
        })?;
    let root = crate::workspace_root();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for source in [
        "agent/src",
        "agent/Cargo.toml",
        "protocol/src",
        "protocol/Cargo.toml",
        "Cargo.lock",
    ] {
        newest_file(&root.join(source), &mut newest)?;
    }
    if let Some((modified, path)) = newest {
        ensure!(
            modified <= built,
            "the static agent {} is older than {}: rebuild it with `{AGENT_BUILD}`",
            agent.display(),
            path.display()
        );
    }
    Ok(agent)
}

fn newest_file(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", path.display()))?;
            newest_file(&entry.path(), newest)?;
        }
        return Ok(());
    }
    let modified = meta
        .modified()
        .with_context(|| format!("reading the mtime of {}", path.display()))?;
    if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
        *newest = Some((modified, path.to_owned()));
    }
    Ok(())
}

/// `rivet-image-builder` of the profile the running executable was built with
/// (`target/<profile>/`; tests run from `target/<profile>/deps/`).
pub fn image_builder() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe.parent();
    while let Some(candidate) = dir {
        let builder = candidate.join("rivet-image-builder");
        if builder.is_file() {
            return Ok(builder);
        }
        if candidate.file_name().is_some_and(|n| n == "target") {
            break;
        }
        dir = candidate.parent();
    }
    bail!(
        "rivet-image-builder is not built next to {}: build it with \
         `cargo build -p rivet-image-builder` (ci/test builds every binary)",
        exe.display()
    )
}

/// The image for kernel arguments `append`, built unless a cached one with the same agent,
/// builder and arguments exists. Concurrent callers wait for each other (a lock file).
pub fn boot_image(append: &str) -> Result<BootImage> {
    let agent = static_agent()?;
    let builder = image_builder()?;
    let mut hasher = Sha256::new();
    for input in [&agent, &builder] {
        hash_file(input, &mut hasher)?;
    }
    hasher.update(append.as_bytes());
    let key = hex::encode(&hasher.finalize()[..12]);
    let cache = target_dir().join("e2e-images");
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let lock_path = cache.join(format!("{key}.lock"));
    let lock_file = File::create(&lock_path)
        .with_context(|| format!("creating the lock file {}", lock_path.display()))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {}", lock_path.display()))?;

    let dir = cache.join(&key);
    let image = BootImage { dir: dir.clone() };
    if image.iso().is_file() {
        return Ok(image);
    }
    let partial = cache.join(format!("{key}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing the unfinished build {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let log = cache.join(format!("{key}.build.log"));
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("duplicating the handle of {}", log.display()))?;
    let status = Command::new(&builder)
        .arg("build")
        .arg("--agent")
        .arg(&agent)
        .arg("--append")
        .arg(append)
        .arg("--output")
        .arg(&partial)
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("running {}", builder.display()))?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        bail!(
            "{} build failed with {status} (log {}):\n{text}",
            builder.display(),
            log.display()
        );
    }
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    ensure!(
        image.iso().is_file(),
        "{} finished but wrote no {}",
        builder.display(),
        image.iso().display()
    );
    prune(&cache, KEEP_IMAGES)?;
    Ok(image)
}

/// `rivet-image-builder customize base <args> -o out`: a per-node copy of an image's ISO
/// (docs/config-area.md).
pub fn customize(base: &Path, args: &[String], out: &Path) -> Result<()> {
    let builder = image_builder()?;
    let output = Command::new(&builder)
        .arg("customize")
        .arg(base)
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .with_context(|| format!("running {} customize", builder.display()))?;
    ensure!(
        output.status.success(),
        "{} customize {args:?} failed with {}:\n{}",
        builder.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Removes all but the `keep` most recently built images (a VM still reading a removed
/// ISO keeps its open file).
fn prune(cache: &Path, keep: usize) -> Result<()> {
    let mut images = Vec::new();
    for entry in std::fs::read_dir(cache).with_context(|| format!("listing {}", cache.display()))? {
        let entry = entry.with_context(|| format!("listing {}", cache.display()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() || name.contains('.') {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .with_context(|| format!("reading the mtime of {}", path.display()))?;
        images.push((modified, name));
    }
    images.sort();
    let surplus = images.len().saturating_sub(keep);
    for (_, name) in &images[..surplus] {
        let dir = cache.join(name);
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        for suffix in ["lock", "build.log"] {
            let file = cache.join(format!("{name}.{suffix}"));
            if let Err(e) = std::fs::remove_file(&file) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(e).with_context(|| format!("removing {}", file.display()));
                }
            }
        }
    }
    Ok(())
}

fn hash_file(path: &Path, hasher: &mut Sha256) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..n]);
    }
}
