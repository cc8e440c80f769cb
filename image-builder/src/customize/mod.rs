//! `customize`: writes a per-node bundle and kernel arguments into a built ISO without
//! remastering it (docs/config-area.md). The ISO's locator says where the config area and
//! the kernel-argument fields are; customizing is a list of [`Patch`]es over the base ISO,
//! written to a new file (copy, patch, rename) or streamed ([`crate::splice`]).

pub mod kargs;
mod show;

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use rivet_protocol::config_area::keys::SigningKey;
use rivet_protocol::config_area::locator::{Locator, LOCATOR_LEN};
use rivet_protocol::config_area::payload::{Contents, File};
use rivet_protocol::config_area::{bundle, kargs as field, LOCATOR_OFFSET};

use crate::cli::CustomizeArgs;
use crate::splice::{splice, Patch};
pub use kargs::KargsEdit;
pub use show::show;

/// What to change in an ISO.
#[derive(Debug, Default)]
pub struct Request {
    /// Start from the ISO as built: no bundle, the default kernel arguments.
    pub reset: bool,
    /// The new bundle, replacing the one there. `None`: keep it (none after `reset`).
    pub bundle: Option<Contents>,
    pub sign_key: Option<SigningKey>,
    pub kargs: KargsEdit,
}

/// What an ISO carries now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoState {
    pub locator: Locator,
    /// Size of the image.
    pub size: u64,
    pub kargs: String,
    pub default_kargs: String,
}

fn read_at(iso: &mut (impl Read + Seek), offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    iso.seek(SeekFrom::Start(offset))
        .and_then(|_| iso.read_exact(&mut buf))
        .with_context(|| format!("reading {len} bytes at offset {offset}"))?;
    Ok(buf)
}

/// Reads the locator, the kernel-argument fields and the default arguments.
pub fn read_state(iso: &mut (impl Read + Seek)) -> Result<IsoState> {
    let size = iso
        .seek(SeekFrom::End(0))
        .context("finding the ISO's size")?;
    ensure!(
        size >= LOCATOR_OFFSET + LOCATOR_LEN as u64,
        "{size} bytes: too small for an ISO"
    );
    let raw = read_at(iso, LOCATOR_OFFSET, LOCATOR_LEN)?;
    let locator = Locator::decode(&raw)?.context(
        "no config-area locator in the ISO's primary volume descriptor: not an ISO built by \
         rivet-image-builder (or built before config areas existed)",
    )?;
    locator.check_within(size)?;
    let mut current: Option<String> = None;
    for &offset in &locator.kargs_fields {
        let bytes = read_at(iso, offset, locator.kargs_field_len as usize)?;
        let args = field::decode_field(&bytes)
            .with_context(|| format!("the kernel-argument field at offset {offset}"))?;
        if let Some(other) = &current {
            ensure!(
                other == &args,
                "the boot loader configs disagree on the kernel arguments ({other:?} and {args:?})"
            );
        }
        current = Some(args);
    }
    let default = read_at(
        iso,
        locator.default_kargs.offset,
        locator.default_kargs.len as usize,
    )?;
    Ok(IsoState {
        kargs: current.unwrap_or_default(),
        default_kargs: String::from_utf8(default).context("the default kernel arguments")?,
        locator,
        size,
    })
}

/// What [`patches`] needs of a base ISO: its state and how much of its config area is in
/// use. A server reads it once per base ISO and computes each node's patches from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub state: IsoState,
    /// Bytes of the config area up to its last non-zero byte.
    pub area_used: usize,
}

/// Reads what [`patches`] needs of the ISO.
pub fn scan(iso: &mut (impl Read + Seek)) -> Result<Base> {
    let state = read_state(iso)?;
    let area_len = usize::try_from(state.locator.area.len).context("config area too large")?;
    let current = read_at(iso, state.locator.area.offset, area_len)?;
    let area_used = current
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1);
    Ok(Base { state, area_used })
}

/// The patches that make `request` out of the ISO.
pub fn plan(iso: &mut (impl Read + Seek), request: &Request) -> Result<Vec<Patch>> {
    patches(&scan(iso)?, request)
}

/// The patches that make `request` out of the scanned ISO `base`.
pub fn patches(base: &Base, request: &Request) -> Result<Vec<Patch>> {
    let state = &base.state;
    let loc = &state.locator;
    if request.bundle.is_none() && !request.reset && request.kargs.is_empty() {
        bail!("nothing to customize: give bundle contents, kernel arguments or --reset");
    }
    let mut patches = Vec::new();
    let area_len = usize::try_from(loc.area.len).context("config area too large")?;
    // The area's bytes after the new bundle must end up zero: patch up to the last non-zero
    // byte of the current area (a whole-area patch would rewrite megabytes of zeros).
    let used = base.area_used;
    match &request.bundle {
        Some(contents) => {
            check_key(loc, request.sign_key.as_ref())?;
            let payload = contents.to_tar()?;
            let mut bytes = bundle::encode(&payload, request.sign_key.as_ref());
            if bytes.len() > area_len {
                bail!(
                    "the bundle takes {} bytes but this ISO's config area holds {} (build it with a \
                     larger --config-area-size)",
                    bytes.len(),
                    loc.area.len
                );
            }
            bytes.resize(bytes.len().max(used), 0);
            patches.push(Patch {
                offset: loc.area.offset,
                data: bytes,
            });
        }
        None if request.sign_key.is_some() => bail!("--sign-key without a bundle to sign"),
        None if request.reset => patches.push(Patch {
            offset: loc.area.offset,
            data: vec![0; used],
        }),
        None => {}
    }
    if request.reset || !request.kargs.is_empty() {
        let base = if request.reset {
            &state.default_kargs
        } else {
            &state.kargs
        };
        let args = request.kargs.apply(base)?;
        let bytes = field::encode_field(&args, loc.kargs_field_len as usize)
            .with_context(|| format!("kernel arguments {args:?}"))?;
        for &offset in &loc.kargs_fields {
            patches.push(Patch {
                offset,
                data: bytes.clone(),
            });
        }
    }
    Ok(patches)
}

/// Refuses bundles the ISO's ramdisk would refuse: unsigned, or signed with another key.
fn check_key(loc: &Locator, key: Option<&SigningKey>) -> Result<()> {
    match (&loc.signing_key_sha256, key) {
        (Some(_), None) => bail!(
            "this ISO's ramdisk applies only signed bundles (built with --signing-pubkey): \
             give --sign-key"
        ),
        (Some(wanted), Some(key)) if &key.public_key().sha256() != wanted => bail!(
            "--sign-key is not the key this ISO's ramdisk trusts (its public key sha256 is {})",
            hex::encode(wanted)
        ),
        _ => Ok(()),
    }
}

/// Copies `input` to a temporary file next to `output`, applies `patches`, and renames it
/// to `output`: the output is complete or absent.
pub fn write_file(input: &Path, output: &Path, patches: &[Patch]) -> Result<()> {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".rivet-customize-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // fs::copy lets the kernel share extents (copy_file_range) and copies the permissions.
    fs::copy(input, temp.path())
        .with_context(|| format!("copying {} to {}", input.display(), temp.path().display()))?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(temp.path())
        .with_context(|| format!("opening {}", temp.path().display()))?;
    for patch in patches {
        file.seek(SeekFrom::Start(patch.offset))
            .and_then(|_| file.write_all(&patch.data))
            .with_context(|| format!("writing {} bytes at {}", patch.data.len(), patch.offset))?;
    }
    file.sync_all()
        .with_context(|| format!("flushing {}", temp.path().display()))?;
    temp.persist(output)
        .with_context(|| format!("renaming the customized ISO to {}", output.display()))?;
    Ok(())
}

/// Streams `input` with `patches` to `out`.
pub fn write_stream(input: impl Read + Seek, patches: Vec<Patch>, out: impl Write) -> Result<()> {
    let mut spliced = splice(input, patches).context("splicing the patches")?;
    spliced.seek(SeekFrom::Start(0))?;
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = spliced.read(&mut buf).context("reading the ISO")?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).context("writing the ISO")?;
    }
    out.flush().context("writing the ISO")?;
    Ok(())
}

fn read_text(what: &str, path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// `SRC:DEST` of `--file`.
fn bundle_file(spec: &str) -> Result<File> {
    let Some((src, dest)) = spec.rsplit_once(':') else {
        bail!("--file {spec}: not SRC:DEST");
    };
    let src = PathBuf::from(src);
    let meta = fs::metadata(&src).with_context(|| format!("--file {spec}: {}", src.display()))?;
    ensure!(
        meta.is_file(),
        "--file {spec}: {} is not a file",
        src.display()
    );
    use std::os::unix::fs::PermissionsExt;
    Ok(File {
        path: dest.to_owned(),
        mode: meta.permissions().mode() & 0o777,
        data: fs::read(&src).with_context(|| format!("reading {}", src.display()))?,
    })
}

/// The request the command line asks for, with every named file read.
pub fn request(args: &CustomizeArgs) -> Result<Request> {
    let mut contents = Contents::default();
    if let Some(path) = &args.config {
        contents.settings = Some(read_text("--config", path)?);
    }
    if let Some(path) = &args.network_data {
        contents.network_data = Some(read_text("--network-data", path)?);
    }
    if let Some(path) = &args.ca {
        contents.ca = Some(read_text("--ca", path)?);
    }
    for spec in &args.files {
        contents.files.push(bundle_file(spec)?);
    }
    if let Some(path) = &args.plan {
        let text = read_text("--plan", path)?;
        let plan =
            crate::plan::parse(&text).with_context(|| format!("--plan {}", path.display()))?;
        let installed: Vec<&str> = contents.files.iter().map(|f| f.path.as_str()).collect();
        for missing in crate::plan::local_images(&plan)
            .into_iter()
            .filter(|path| !installed.contains(&path.as_str()))
        {
            eprintln!(
                "rivet-image-builder: warning: the plan writes the image file://{missing}, which \
                 this bundle does not carry (--file IMAGE:{missing}); it must come from another medium"
            );
        }
        // The bundle's plan.json is JSON whatever the file was written in.
        contents.plan = Some(crate::plan::json_text(&text)?);
    }
    contents.validate()?;
    let sign_key = match &args.sign_key {
        Some(path) => Some(
            SigningKey::from_pem(&read_text("--sign-key", path)?)
                .with_context(|| format!("--sign-key {}", path.display()))?,
        ),
        None => None,
    };
    Ok(Request {
        reset: args.reset,
        bundle: (!contents.is_empty()).then_some(contents),
        sign_key,
        kargs: KargsEdit {
            replace: args.kernel_args.clone(),
            delete: args.delete_kargs.clone(),
            set: args.set_kargs.clone(),
            consoles: args.consoles.clone(),
            append: args.append_kargs.clone(),
        },
    })
}

/// Runs `customize`.
pub fn run(args: &CustomizeArgs) -> Result<()> {
    let open =
        || fs::File::open(&args.iso).with_context(|| format!("opening {}", args.iso.display()));
    if args.show {
        print!("{}", show(&mut open()?, &args.iso.display().to_string())?);
        return Ok(());
    }
    let request = request(args)?;
    let patches = plan(&mut open()?, &request)
        .with_context(|| format!("customizing {}", args.iso.display()))?;
    match args.output.as_deref() {
        Some(out) if out == Path::new("-") => {
            write_stream(open()?, patches, io::stdout().lock())?;
        }
        Some(out) => write_file(&args.iso, out, &patches)?,
        None => bail!("give -o FILE, or -o - for stdout"),
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
