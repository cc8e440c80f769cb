//! UEFI boot entries without efibootmgr: boot loaders found on the disk's EFI system
//! partition (read with [`fat`], not mounted), `Boot####` load options and `BootOrder`
//! written through efivarfs (IPA/efi_utils.py `manage_uefi`).

pub mod fat;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use gptman::GPT;

/// The EFI global variable vendor GUID (Boot####, BootOrder).
pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// Non-volatile, boot-service and run-time access.
const ATTRIBUTES: u32 = 0x7;
/// `LOAD_OPTION_ACTIVE`.
const LOAD_OPTION_ACTIVE: u32 = 0x1;
/// The EFI system partition's GPT type.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// Where efivarfs is mounted.
pub const EFIVARS_DIR: &str = "sys/firmware/efi/efivars";

#[cfg(target_arch = "aarch64")]
const ARCH: &str = "aa64";
#[cfg(not(target_arch = "aarch64"))]
const ARCH: &str = "x64";

nix::ioctl_read!(fs_ioc_getflags, b'f', 1, libc::c_long);
nix::ioctl_write_ptr!(fs_ioc_setflags, b'f', 2, libc::c_long);
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// efivarfs's `statfs` type.
const EFIVARFS_MAGIC: u64 = 0xde5e_81e4;

fn is_efivarfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .ok()
        .and_then(|s| u64::try_from(s.filesystem_type().0).ok())
        == Some(EFIVARFS_MAGIC)
}

/// On this machine (`root` is `/`) booted in UEFI mode: mounts efivarfs on
/// `/sys/firmware/efi/efivars` unless it is there, loading its module first. The ramdisk's
/// early mounts run before any module is loaded, and the kernel cannot load efivarfs by
/// itself without a modprobe; without it the directory is sysfs's empty mount point, where
/// no variable can be created. A failure is logged; the variable writes then fail.
pub fn ensure_efivarfs(root: &Path) {
    let dir = Path::new("/").join(EFIVARS_DIR);
    if root != Path::new("/") || !Path::new("/sys/firmware/efi").is_dir() || is_efivarfs(&dir) {
        return;
    }
    crate::init::load_modules(&["efivarfs"], "UEFI boot entries");
    let flags = nix::mount::MsFlags::MS_NOSUID
        | nix::mount::MsFlags::MS_NODEV
        | nix::mount::MsFlags::MS_NOEXEC;
    match nix::mount::mount(
        Some("efivarfs"),
        &dir,
        Some("efivarfs"),
        flags,
        None::<&str>,
    ) {
        Ok(()) => tracing::info!(dir = %dir.display(), "efivarfs mounted"),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "mounting efivarfs failed")
        }
    }
}

/// EFI global variables as efivarfs shows them: one file per variable, its 4-byte
/// attributes then its data. Tests point it at a plain directory.
#[derive(Debug, Clone)]
pub struct Efivarfs {
    dir: PathBuf,
}

impl Efivarfs {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Efivarfs { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-{GLOBAL_GUID}"))
    }

    /// The data of global variable `name`, if set.
    pub fn get(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(name)) {
            Ok(raw) if raw.len() >= 4 => Ok(Some(raw[4..].to_vec())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets global variable `name` (non-volatile) in one write, as efivarfs requires.
    pub fn set(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        let path = self.path(name);
        let exists = path.exists();
        let file = if exists {
            let file = OpenOptions::new().write(true).open(&path)?;
            clear_immutable(&file);
            file
        } else {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?
        };
        let mut raw = ATTRIBUTES.to_le_bytes().to_vec();
        raw.extend_from_slice(data);
        (&file).write_all(&raw)?;
        // A plain directory (tests) keeps a longer old value's tail; efivarfs refuses
        // truncation and needs none.
        let _ = file.set_len(raw.len() as u64);
        Ok(())
    }

    /// Names of the global variables that are set.
    pub fn names(&self) -> std::io::Result<Vec<String>> {
        let suffix = format!("-{GLOBAL_GUID}");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(var) = name.strip_suffix(&suffix) {
                names.push(var.to_string());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// efivarfs marks variables immutable; writing needs the flag cleared. Elsewhere (tmpfs in
/// tests) the ioctl is not supported, which is fine.
fn clear_immutable(file: &File) {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes the flags through a pointer to a live local.
    if unsafe { fs_ioc_getflags(file.as_raw_fd(), &mut flags) }.is_ok()
        && flags & FS_IMMUTABLE_FL != 0
    {
        flags &= !FS_IMMUTABLE_FL;
        // SAFETY: FS_IOC_SETFLAGS reads the flags through a pointer to a live local.
        let _ = unsafe { fs_ioc_setflags(file.as_raw_fd(), &flags) };
    }
}

fn utf16z(text: &str) -> Vec<u8> {
    text.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// The device path of a file on a GPT partition: `HD(n,GPT,guid,start,size)/File(path)`.
pub fn device_path(
    number: u32,
    start_lba: u64,
    size_lba: u64,
    partition_guid: [u8; 16],
    loader: &str,
) -> Vec<u8> {
    let mut path = vec![0x04, 0x01, 42, 0];
    path.extend_from_slice(&number.to_le_bytes());
    path.extend_from_slice(&start_lba.to_le_bytes());
    path.extend_from_slice(&size_lba.to_le_bytes());
    path.extend_from_slice(&partition_guid);
    path.extend_from_slice(&[0x02, 0x02]);
    let file = utf16z(loader);
    path.extend_from_slice(&[0x04, 0x04]);
    path.extend_from_slice(&((4 + file.len()) as u16).to_le_bytes());
    path.extend_from_slice(&file);
    path.extend_from_slice(&[0x7f, 0xff, 0x04, 0x00]);
    path
}

/// An `EFI_LOAD_OPTION`: active, `description`, `device_path`, no optional data.
pub fn load_option(description: &str, device_path: &[u8]) -> Vec<u8> {
    let mut option = LOAD_OPTION_ACTIVE.to_le_bytes().to_vec();
    option.extend_from_slice(&(device_path.len() as u16).to_le_bytes());
    option.extend_from_slice(&utf16z(description));
    option.extend_from_slice(device_path);
    option
}

/// The device path inside a load option.
fn option_device_path(option: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_le_bytes([*option.get(4)?, *option.get(5)?]));
    let mut at = 6;
    while u16::from_le_bytes([*option.get(at)?, *option.get(at + 1)?]) != 0 {
        at += 2;
    }
    option.get(at + 2..at + 2 + len)
}

/// Adds (or refreshes) the boot entry for `device_path` and puts it first in `BootOrder`.
/// Returns its number.
pub fn add_boot_entry(vars: &Efivarfs, label: &str, device_path: &[u8]) -> std::io::Result<u16> {
    let mut used = Vec::new();
    let mut same = None;
    for name in vars.names()? {
        let Some(number) = name
            .strip_prefix("Boot")
            .filter(|n| n.len() == 4)
            .and_then(|n| u16::from_str_radix(n, 16).ok())
        else {
            continue;
        };
        used.push(number);
        if let Some(option) = vars.get(&name)? {
            if same.is_none() && option_device_path(&option) == Some(device_path) {
                same = Some(number);
            }
        }
    }
    let number = match same {
        Some(number) => number,
        None => (0..=u16::MAX)
            .find(|n| !used.contains(n))
            .ok_or_else(|| std::io::Error::other("no free Boot#### number"))?,
    };
    vars.set(
        &format!("Boot{number:04X}"),
        &load_option(label, device_path),
    )?;
    let mut order: Vec<u16> = vars
        .get("BootOrder")?
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .filter(|&n| n != number)
        .collect();
    order.insert(0, number);
    let raw: Vec<u8> = order.iter().flat_map(|n| n.to_le_bytes()).collect();
    vars.set("BootOrder", &raw)?;
    Ok(number)
}

/// Boot loaders on an ESP, as IPA picks them: every vendor directory's `BOOT<ARCH>.CSV`
/// (shim's list of loader and label); without any, each vendor's shim or GRUB; without
/// those, the removable-media path `\EFI\BOOT\BOOT<ARCH>.EFI`. Returns (label, loader path).
pub fn find_loaders(esp: &fat::Fat<'_>) -> std::io::Result<Vec<(String, String)>> {
    let vendors: Vec<String> = match esp.list("EFI") {
        Ok(entries) => entries
            .into_iter()
            .filter(|e| e.is_dir && !e.name.eq_ignore_ascii_case("BOOT"))
            .map(|e| e.name)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let csv = format!("BOOT{}.CSV", ARCH.to_uppercase());
    let mut found = Vec::new();
    for vendor in &vendors {
        let Ok(raw) = esp.read_file(&format!("EFI/{vendor}"), &csv) else {
            continue;
        };
        for line in decode_csv(&raw).lines() {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if let [loader, label, ..] = fields.as_slice() {
                if !loader.is_empty() {
                    found.push((label.to_string(), format!("\\EFI\\{vendor}\\{loader}")));
                }
            }
        }
    }
    if !found.is_empty() {
        return Ok(found);
    }
    for vendor in &vendors {
        let files = esp.list(&format!("EFI/{vendor}"))?;
        let loader = [format!("shim{ARCH}.efi"), format!("grub{ARCH}.efi")]
            .into_iter()
            .find(|want| {
                files
                    .iter()
                    .any(|f| !f.is_dir && f.name.eq_ignore_ascii_case(want))
            });
        if let Some(loader) = loader {
            found.push((
                format!("ironic{}", found.len() + 1),
                format!("\\EFI\\{vendor}\\{loader}"),
            ));
        }
    }
    if found.is_empty() {
        let fallback = format!("BOOT{}.EFI", ARCH.to_uppercase());
        if esp
            .list("EFI/BOOT")
            .is_ok_and(|files| files.iter().any(|f| f.name.eq_ignore_ascii_case(&fallback)))
        {
            found.push(("ironic1".to_string(), format!("\\EFI\\BOOT\\{fallback}")));
        }
    }
    Ok(found)
}

/// shim's CSV files are UTF-16LE (with a byte order mark); accept UTF-8 too.
fn decode_csv(raw: &[u8]) -> String {
    if raw.starts_with(&[0xff, 0xfe]) {
        let units: Vec<u16> = raw[2..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(raw).into_owned()
    }
}

/// What [`manage_uefi`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiOutcome {
    /// (Boot#### number, label, loader path) of each entry written.
    pub entries: Vec<(u16, String, String)>,
}

/// Finds the ESP of `disk` (the partition with GUID `esp_uuid` when given, else the first
/// with the ESP type), its boot loaders, and writes a boot entry for each. `None` when the
/// disk has no ESP or no loader on it (IPA then does nothing for whole-disk images).
pub fn manage_uefi(
    disk: &File,
    esp_uuid: Option<&str>,
    vars: &Efivarfs,
) -> Result<Option<UefiOutcome>, String> {
    let mut reader = disk;
    let Ok(gpt) = GPT::find_from(&mut reader) else {
        return Ok(None);
    };
    let esp_type = uuid::Uuid::parse_str(ESP_TYPE)
        .map_err(|e| e.to_string())?
        .to_bytes_le();
    // IPA finds the partition with lsblk by UUID or PARTUUID: for a partition image
    // Ironic passes the ESP's FAT serial (`ABCD-1234`), for others a PARTUUID.
    let wanted = esp_uuid.map(str::to_ascii_lowercase);
    let ss = gpt.sector_size;
    let Some((number, entry)) = gpt.iter().find(|(_, e)| {
        e.is_used()
            && match &wanted {
                Some(wanted) => {
                    uuid::Uuid::from_bytes_le(e.unique_partition_guid).to_string() == *wanted
                        || crate::image::partition::fs::fs_uuid(disk, e.starting_lba * ss)
                            .is_some_and(|u| u.to_ascii_lowercase() == *wanted)
                }
                None => e.partition_type_guid == esp_type,
            }
    }) else {
        return Ok(None);
    };
    let esp = fat::Fat::open(disk, entry.starting_lba * ss)
        .map_err(|e| format!("reading the EFI system partition {number}: {e}"))?;
    let loaders = find_loaders(&esp)
        .map_err(|e| format!("looking for boot loaders on partition {number}: {e}"))?;
    if loaders.is_empty() {
        return Ok(None);
    }
    if !vars.dir().is_dir() {
        return Err(format!(
            "no EFI variables at {} (not booted in UEFI mode?)",
            vars.dir().display()
        ));
    }
    // Each new entry goes first in BootOrder: add the last loader first so the first ends
    // first.
    let mut entries = Vec::new();
    for (label, loader) in loaders.into_iter().rev() {
        let path = device_path(
            number,
            entry.starting_lba,
            entry.ending_lba + 1 - entry.starting_lba,
            entry.unique_partition_guid,
            &loader,
        );
        let boot = add_boot_entry(vars, &label, &path).map_err(|e| {
            format!(
                "writing the boot entry for {loader} in {}: {e} (efivarfs not mounted \
                     there?)",
                vars.dir().display()
            )
        })?;
        entries.push((boot, label, loader));
    }
    entries.reverse();
    Ok(Some(UefiOutcome { entries }))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub mod testutil;
