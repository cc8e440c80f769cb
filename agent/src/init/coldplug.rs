//! Coldplug: load the modules that devices ask for through their `modalias` files, then keep
//! polling briefly for devices that appear late (USB devices show up about a second after
//! their host controller's driver loads).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

use super::modules::{LoadItem, ModuleIndex};

/// Where devices' modaliases come from.
pub trait DeviceTree {
    /// Every non-empty `modalias` currently present.
    fn modaliases(&self) -> std::io::Result<BTreeSet<String>>;
}

/// Loads one module file into the kernel.
pub trait ModuleLoader {
    fn load(&self, item: &LoadItem) -> LoadOutcome;
}

/// Monotonic time and sleeping, so the polling logic is tested without waiting.
pub trait Clock {
    fn elapsed(&self) -> Duration;
    fn sleep(&self, duration: Duration);
}

/// What happened to one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    Loaded,
    /// EEXIST: already in the kernel.
    AlreadyLoaded,
    /// ENODEV: the module has no device to drive here (e.g. `crct10dif-pclmul` under TCG).
    NoDevice,
    /// The `.ko` file is not in the ramdisk.
    Missing,
    /// Any other failure, with its reason.
    Failed(String),
}

impl LoadOutcome {
    /// Whether the module is usable (loaded now or before).
    pub fn is_present(&self) -> bool {
        matches!(self, LoadOutcome::Loaded | LoadOutcome::AlreadyLoaded)
    }
}

/// How long to poll for late devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdplugOptions {
    /// Time between two scans of the device tree.
    pub poll_interval: Duration,
    /// Stop once no new device appeared for this long.
    pub settle: Duration,
    /// Stop after this long in any case.
    pub max: Duration,
    /// Modules to load whether or not a device asks for them (`rivet.modules=a,b`).
    pub always_load: Vec<String>,
}

impl Default for ColdplugOptions {
    fn default() -> Self {
        ColdplugOptions {
            poll_interval: Duration::from_millis(200),
            settle: Duration::from_millis(1500),
            max: Duration::from_secs(5),
            always_load: Vec::new(),
        }
    }
}

/// What coldplug did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColdplugReport {
    /// Every module tried, by name, with its outcome.
    pub modules: BTreeMap<String, LoadOutcome>,
    /// How many distinct modaliases were seen.
    pub devices_seen: usize,
    /// How many scans of the device tree ran.
    pub scans: usize,
}

/// Runs coldplug to completion: the always-load list, then devices, polling for late ones
/// until none appeared for `settle` or `max` has passed. Failures to load a module are
/// reported and never stop the scan.
pub fn coldplug(
    index: &ModuleIndex,
    devices: &dyn DeviceTree,
    loader: &dyn ModuleLoader,
    clock: &dyn Clock,
    options: &ColdplugOptions,
) -> ColdplugReport {
    let mut report = ColdplugReport::default();
    for wanted in &options.always_load {
        for name in index.resolve_name(wanted) {
            load_with_deps(index, loader, &name, "rivet.modules", &mut report);
        }
    }
    let start = clock.elapsed();
    let mut last_new = start;
    let mut seen = BTreeSet::new();
    loop {
        report.scans += 1;
        let current = match devices.modaliases() {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!("coldplug: scanning devices: {e}");
                BTreeSet::new()
            }
        };
        let new: Vec<String> = current.difference(&seen).cloned().collect();
        let modules_before = report.modules.len();
        if !new.is_empty() {
            for modalias in &new {
                for name in index.modules_for_alias(modalias) {
                    load_with_deps(index, loader, &name, modalias, &mut report);
                }
            }
            seen.extend(new);
            // Counted from the end of loading: devices that the modules just loaded create
            // (virtio devices behind virtio_pci, USB devices behind xhci) appear after it,
            // and loading alone takes longer than `settle` under QEMU's TCG.
            last_new = clock.elapsed();
        }
        // A scan that loaded modules is always followed by another: the devices they create
        // exist once loading returns, even when loading alone outlasted `max` (8 s of
        // coldplug under a loaded TCG host left virtio-net without its driver).
        let loaded_some = report.modules.len() > modules_before;
        let now = clock.elapsed();
        if !loaded_some
            && (now.saturating_sub(last_new) >= options.settle
                || now.saturating_sub(start) >= options.max)
        {
            break;
        }
        clock.sleep(options.poll_interval);
    }
    report.devices_seen = seen.len();
    report
}

/// Loads modules by name or alias (`isofs`, `vfat`, `bonding`), each after its dependencies,
/// outside coldplug: for filesystems and link types, which no device asks for. Built-in ones
/// are skipped.
pub fn load_named(
    index: &ModuleIndex,
    loader: &dyn ModuleLoader,
    names: &[&str],
    wanted_by: &str,
) -> ColdplugReport {
    let mut report = ColdplugReport::default();
    for wanted in names {
        for name in index.resolve_name(wanted) {
            load_with_deps(index, loader, &name, wanted_by, &mut report);
        }
    }
    report
}

fn load_with_deps(
    index: &ModuleIndex,
    loader: &dyn ModuleLoader,
    name: &str,
    wanted_by: &str,
    report: &mut ColdplugReport,
) {
    if report.modules.contains_key(name) || index.is_builtin(name) {
        return;
    }
    for item in index.load_order(name) {
        if report.modules.contains_key(&item.name) {
            continue;
        }
        let outcome = loader.load(&item);
        match &outcome {
            LoadOutcome::Loaded => {
                tracing::info!("coldplug: loaded {} (for {wanted_by})", item.name)
            }
            LoadOutcome::AlreadyLoaded => tracing::debug!("coldplug: {} already loaded", item.name),
            LoadOutcome::NoDevice => {
                tracing::info!("coldplug: {} has no device here (ENODEV)", item.name)
            }
            LoadOutcome::Missing => tracing::warn!(
                "coldplug: {} wanted by {wanted_by} is not in the ramdisk ({})",
                item.name,
                item.path.display()
            ),
            LoadOutcome::Failed(reason) => {
                tracing::warn!("coldplug: loading {} for {wanted_by}: {reason}", item.name)
            }
        }
        report.modules.insert(item.name, outcome);
    }
}

/// The real device tree: `modalias` files under `/sys/devices`.
#[derive(Debug, Clone)]
pub struct SysfsDevices {
    pub root: PathBuf,
}

impl Default for SysfsDevices {
    fn default() -> Self {
        SysfsDevices {
            root: PathBuf::from("/sys/devices"),
        }
    }
}

impl DeviceTree for SysfsDevices {
    fn modaliases(&self) -> std::io::Result<BTreeSet<String>> {
        let mut found = BTreeSet::new();
        // Fail only if the root itself is unreadable; devices vanish while we walk.
        std::fs::read_dir(&self.root)?;
        walk(&self.root, &mut found);
        Ok(found)
    }
}

/// Walks a sysfs directory without following symlinks (sysfs is full of cycles).
fn walk(dir: &Path, found: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&entry.path(), found);
        } else if kind.is_file() && entry.file_name() == "modalias" {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                let text = text.trim();
                if !text.is_empty() {
                    found.insert(text.to_string());
                }
            }
        }
    }
}

/// The real loader: `finit_module(2)` on the `.ko` file, no parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelModuleLoader;

impl ModuleLoader for KernelModuleLoader {
    fn load(&self, item: &LoadItem) -> LoadOutcome {
        let file = match File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&item.path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LoadOutcome::Missing,
            Err(e) => return LoadOutcome::Failed(format!("opening {}: {e}", item.path.display())),
        };
        match finit_module(&file, c"", ModuleInitFlags::empty()) {
            Ok(()) => LoadOutcome::Loaded,
            Err(Errno::EEXIST) => LoadOutcome::AlreadyLoaded,
            Err(Errno::ENODEV) => LoadOutcome::NoDevice,
            Err(e @ (Errno::ENOEXEC | Errno::EOPNOTSUPP)) if is_compressed(&item.path) => {
                LoadOutcome::Failed(format!(
                    "finit_module {}: {e} (compressed modules are not supported: ship plain .ko)",
                    item.path.display()
                ))
            }
            Err(Errno::ENOENT) => LoadOutcome::Failed(format!(
                "finit_module {}: unknown symbol (a dependency failed to load)",
                item.path.display()
            )),
            Err(e) => LoadOutcome::Failed(format!("finit_module {}: {e}", item.path.display())),
        }
    }
}

fn is_compressed(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext == "xz" || ext == "zst" || ext == "gz")
}

/// The real clock.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    start: Instant,
}

impl MonotonicClock {
    pub fn new() -> Self {
        MonotonicClock {
            start: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

#[cfg(test)]
#[path = "coldplug_tests.rs"]
mod tests;
