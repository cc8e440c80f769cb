//! QEMU virtual machines for end-to-end tests: TCG (no KVM on these machines), q35, BIOS or
//! UEFI (OVMF), booting an ISO as a CD, as BMC-style USB virtual media (a file or an HTTP
//! URL) or as a USB stick,
//! with virtio-blk and NVMe disks and virtio-net NICs on a [`TestNet`]'s taps (or on UDP
//! ports of a [`crate::vlan_switch::VlanSwitch`]).
//!
//! The serial console goes to `console.log` in the VM's directory; a watcher thread stamps
//! every line with the time since QEMU was started, so tests can both wait for a line and
//! ask when it appeared. When a test fails, the console's tail is printed and the directory
//! (console, QEMU's log, disk images) is kept.

mod console;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tempfile::TempDir;

use crate::netns::TestNet;
use crate::process::LoggedChild;
use console::{ConsoleWatcher, CONSOLE_POLL};

pub const QEMU: &str = "qemu-system-x86_64";
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// QEMU's curl block driver (HTTP drives), from Debian's qemu-block-extra.
pub const QEMU_CURL_MODULE: &str = "/usr/lib/x86_64-linux-gnu/qemu/block-curl.so";
/// Console lines printed when a test fails.
const FAILURE_TAIL_LINES: usize = 120;

/// The firmware the VM starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF from pflash: read-only code plus a writable copy of the variable store.
    Uefi,
}

/// Where the VM boots from.
#[derive(Debug, Clone)]
pub enum BootMedium {
    /// The ISO in a CD drive on q35's AHCI controller.
    Cd(PathBuf),
    /// The ISO as a BMC's virtual media: a SCSI CD behind a USB bulk-only transport on xHCI.
    UsbCd(PathBuf),
    /// The (hybrid) ISO as a read-only USB stick on xHCI.
    UsbDisk(PathBuf),
    /// An ISO at an `http://` URL as a BMC's virtual media (a USB CD as [`Self::UsbCd`]):
    /// QEMU's curl block driver reads it with range requests, as a BMC does. Needs Debian's
    /// qemu-block-extra ([`QEMU_CURL_MODULE`]).
    UrlCd(String),
    /// No removable medium: the firmware boots the first disk added (a deployed disk).
    FirstDisk,
    /// Direct kernel boot, no firmware boot loader involved.
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        append: String,
    },
}

/// How a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    VirtioBlk,
    Nvme,
}

#[derive(Debug, Clone)]
struct Disk {
    bus: DiskBus,
    size_bytes: u64,
    /// Every byte of the image is this one (else the image is sparse, all zeroes).
    fill: Option<u8>,
    /// The image starts as a copy of this file (padded with zeroes to `size_bytes`).
    copy_of: Option<PathBuf>,
}

/// What a NIC is plugged into.
#[derive(Debug, Clone)]
enum NicBackend {
    /// A tap device of the namespace (on its bridge).
    Tap(String),
    /// UDP on the namespace's loopback: QEMU sends each frame from `local` to `remote`
    /// (a [`crate::vlan_switch::VlanSwitch`] port) and receives on `local`.
    Udp { local: u16, remote: u16 },
}

#[derive(Debug, Clone)]
struct Nic {
    backend: NicBackend,
    mac: String,
}

/// Describes a VM; [`VmBuilder::start`] runs it.
#[derive(Debug, Clone)]
pub struct VmBuilder {
    name: String,
    firmware: Firmware,
    boot: Option<BootMedium>,
    disks: Vec<Disk>,
    nics: Vec<Nic>,
    memory_mib: u32,
    cpus: u32,
    /// SMBIOS system UUID (`-uuid`), else QEMU's default.
    system_uuid: Option<String>,
}

impl VmBuilder {
    /// A VM called `name` (used in messages and its directory's name): BIOS, 1 GiB, 2 vCPUs,
    /// no boot medium, disks or NICs yet.
    pub fn new(name: &str) -> VmBuilder {
        VmBuilder {
            name: name.to_owned(),
            firmware: Firmware::Bios,
            boot: None,
            disks: Vec::new(),
            nics: Vec::new(),
            memory_mib: 1024,
            cpus: 2,
            system_uuid: None,
        }
    }

    pub fn firmware(mut self, firmware: Firmware) -> Self {
        self.firmware = firmware;
        self
    }

    pub fn boot(mut self, medium: BootMedium) -> Self {
        self.boot = Some(medium);
        self
    }

    /// Adds an empty (sparse) disk of `size_bytes`.
    pub fn disk(mut self, bus: DiskBus, size_bytes: u64) -> Self {
        self.disks.push(Disk {
            bus,
            size_bytes,
            fill: None,
            copy_of: None,
        });
        self
    }

    /// Adds a disk whose image starts as a copy of `image` (e.g. a disk another VM deployed).
    pub fn disk_copy(mut self, bus: DiskBus, image: &Path) -> Result<Self> {
        let size_bytes = std::fs::metadata(image)
            .with_context(|| format!("reading the size of {}", image.display()))?
            .len();
        self.disks.push(Disk {
            bus,
            size_bytes,
            fill: None,
            copy_of: Some(image.to_path_buf()),
        });
        Ok(self)
    }

    /// Adds a disk of `size_bytes` whose every byte is `byte` (written before QEMU starts;
    /// read it back with [`Vm::disk_image`]).
    pub fn disk_filled(mut self, bus: DiskBus, size_bytes: u64, byte: u8) -> Self {
        self.disks.push(Disk {
            bus,
            size_bytes,
            fill: Some(byte),
            copy_of: None,
        });
        self
    }

    /// Adds a virtio-net NIC with `mac` on tap device `tap` (no option ROM: no iPXE).
    pub fn nic(mut self, tap: &str, mac: &str) -> Self {
        self.nics.push(Nic {
            backend: NicBackend::Tap(tap.to_owned()),
            mac: mac.to_owned(),
        });
        self
    }

    /// Adds a virtio-net NIC with `mac` whose frames go over UDP on the namespace's loopback
    /// (from port `local` to port `remote`), e.g. to a [`crate::vlan_switch::VlanSwitch`].
    pub fn nic_udp(mut self, local: u16, remote: u16, mac: &str) -> Self {
        self.nics.push(Nic {
            backend: NicBackend::Udp { local, remote },
            mac: mac.to_owned(),
        });
        self
    }

    /// The SMBIOS system UUID the guest reads (`/sys/class/dmi/id/product_uuid`).
    pub fn system_uuid(mut self, uuid: &str) -> Self {
        self.system_uuid = Some(uuid.to_owned());
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// QEMU's arguments for a VM whose files live in `dir`.
    pub fn qemu_args(&self, dir: &Path) -> Result<Vec<OsString>> {
        let boot = self
            .boot
            .as_ref()
            .with_context(|| format!("VM {} has no boot medium", self.name))?;
        let mut args = Args::default();
        args.push_all(["-name", &self.name]);
        args.push_all(["-machine", "q35,accel=tcg"]);
        args.push_all(["-m", &self.memory_mib.to_string()]);
        args.push_all(["-smp", &self.cpus.to_string()]);
        if let Some(uuid) = &self.system_uuid {
            args.push_all(["-uuid", uuid]);
        }
        // No default devices (NIC, CD drive, floppy): every device below is explicit.
        args.push_all(["-nodefaults", "-no-user-config"]);
        args.push_all(["-display", "none", "-vga", "std"]);
        args.push("-serial");
        args.push_path("file:", &dir.join("console.log"))?;
        args.push("-no-reboot");
        if self.firmware == Firmware::Uefi {
            args.push("-drive");
            args.push_path(
                "if=pflash,format=raw,unit=0,readonly=on,file=",
                Path::new(OVMF_CODE),
            )?;
            args.push("-drive");
            args.push_path(
                "if=pflash,format=raw,unit=1,file=",
                &dir.join("OVMF_VARS.fd"),
            )?;
        }
        match boot {
            BootMedium::Cd(iso) => {
                args.push("-drive");
                args.push_path(
                    "if=none,id=cd0,format=raw,media=cdrom,readonly=on,file=",
                    iso,
                )?;
                args.push_all(["-device", "ide-cd,drive=cd0,bus=ide.0,bootindex=1"]);
            }
            BootMedium::UsbCd(iso) => {
                args.push_all(["-device", "qemu-xhci,id=xhci"]);
                args.push("-drive");
                args.push_path(
                    "if=none,id=vmedia,format=raw,media=cdrom,readonly=on,file=",
                    iso,
                )?;
                args.push_all(["-device", "usb-bot,id=bot,bus=xhci.0"]);
                args.push_all(["-device", "scsi-cd,bus=bot.0,drive=vmedia,bootindex=1"]);
            }
            BootMedium::UrlCd(url) => {
                ensure!(
                    !url.contains(','),
                    "VM {}: a comma in {url} would end QEMU's -drive option",
                    self.name
                );
                args.push_all(["-device", "qemu-xhci,id=xhci"]);
                args.push_all([
                    "-drive",
                    &format!(
                        "if=none,id=vmedia,media=cdrom,readonly=on,driver=raw,\
                         file.driver=http,file.readahead=1048576,file.url={url}"
                    ),
                ]);
                args.push_all(["-device", "usb-bot,id=bot,bus=xhci.0"]);
                args.push_all(["-device", "scsi-cd,bus=bot.0,drive=vmedia,bootindex=1"]);
            }
            BootMedium::UsbDisk(iso) => {
                args.push_all(["-device", "qemu-xhci,id=xhci"]);
                args.push("-drive");
                args.push_path("if=none,id=stick,format=raw,readonly=on,file=", iso)?;
                args.push_all(["-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=1"]);
            }
            BootMedium::FirstDisk => {
                ensure!(
                    !self.disks.is_empty(),
                    "VM {}: FirstDisk but no disk",
                    self.name
                );
            }
            BootMedium::Kernel {
                kernel,
                initrd,
                append,
            } => {
                args.push("-kernel");
                args.push_path("", kernel)?;
                if let Some(initrd) = initrd {
                    args.push("-initrd");
                    args.push_path("", initrd)?;
                }
                args.push_all(["-append", append]);
            }
        }
        for (i, disk) in self.disks.iter().enumerate() {
            let id = format!("disk{i}");
            args.push("-drive");
            args.push_path(
                &format!("if=none,id={id},format=raw,file="),
                &dir.join(format!("{id}.img")),
            )?;
            let mut device = match disk.bus {
                DiskBus::VirtioBlk => format!("virtio-blk-pci,drive={id},serial=rivet-vd{i}"),
                DiskBus::Nvme => format!("nvme,drive={id},serial=rivet-nvme{i}"),
            };
            if i == 0 && matches!(boot, BootMedium::FirstDisk) {
                device.push_str(",bootindex=1");
            }
            args.push_all(["-device", &device]);
        }
        for (i, nic) in self.nics.iter().enumerate() {
            args.push("-netdev");
            args.push(match &nic.backend {
                NicBackend::Tap(tap) => {
                    format!("tap,id=net{i},ifname={tap},script=no,downscript=no")
                }
                NicBackend::Udp { local, remote } => {
                    format!("socket,id=net{i},udp=127.0.0.1:{remote},localaddr=127.0.0.1:{local}")
                }
            });
            args.push("-device");
            args.push(format!(
                "virtio-net-pci,netdev=net{i},mac={},romfile=",
                nic.mac
            ));
        }
        Ok(args.0)
    }

    /// Creates the VM's directory (disk images, OVMF variables, console and QEMU logs) and
    /// starts QEMU inside `net`. The VM is killed when the returned [`Vm`] is dropped, or when
    /// the thread that called this ends (see [`TestNet::command`]).
    pub fn start(self, net: &TestNet) -> Result<Vm> {
        ensure!(
            which(QEMU).is_some(),
            "{QEMU} is not on PATH: install Debian's qemu-system-x86 package (ci/setup does)"
        );
        if matches!(self.boot, Some(BootMedium::UrlCd(_))) {
            ensure!(
                Path::new(QEMU_CURL_MODULE).is_file(),
                "{QEMU_CURL_MODULE} is missing: QEMU cannot read an ISO from a URL without \
                 Debian's qemu-block-extra package (ci/setup installs it)"
            );
        }
        for nic in &self.nics {
            if let NicBackend::Tap(tap) = &nic.backend {
                ensure!(
                    net.taps().contains(tap),
                    "VM {}: tap {tap} is not one of namespace {}'s taps {:?}",
                    self.name,
                    net.name(),
                    net.taps()
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("rivet-vm-{}-", self.name))
            .tempdir()
            .context("creating the VM's directory")?;
        if self.firmware == Firmware::Uefi {
            ensure!(
                Path::new(OVMF_CODE).is_file() && Path::new(OVMF_VARS).is_file(),
                "{OVMF_CODE} or {OVMF_VARS} is missing: install Debian's ovmf package (ci/setup does)"
            );
            let vars = dir.path().join("OVMF_VARS.fd");
            std::fs::copy(OVMF_VARS, &vars)
                .with_context(|| format!("copying {OVMF_VARS} to {}", vars.display()))?;
        }
        for (i, disk) in self.disks.iter().enumerate() {
            let path = dir.path().join(format!("disk{i}.img"));
            let made = match &disk.copy_of {
                Some(source) => std::fs::copy(source, &path).map(|_| ()),
                None => File::create(&path).and_then(|f| match disk.fill {
                    None => f.set_len(disk.size_bytes),
                    Some(byte) => fill(f, disk.size_bytes, byte),
                }),
            };
            made.with_context(|| format!("creating the disk image {}", path.display()))?;
        }
        let console = dir.path().join("console.log");
        File::create(&console).with_context(|| format!("creating {}", console.display()))?;

        let mut command = net.command(QEMU);
        command.args(self.qemu_args(dir.path())?);
        let started = Instant::now();
        let process = LoggedChild::spawn(
            &format!("qemu ({})", self.name),
            command,
            &dir.path().join("qemu.log"),
        )?;
        let watcher = ConsoleWatcher::start(console.clone(), started);
        Ok(Vm {
            process: Some(process),
            watcher,
            name: self.name,
            console,
            started,
            dir: Some(dir),
        })
    }
}

/// A running VM. Dropping it kills QEMU; when the test is failing, the console's tail is
/// printed and the VM's directory is kept.
pub struct Vm {
    process: Option<LoggedChild>,
    watcher: ConsoleWatcher,
    name: String,
    console: PathBuf,
    started: Instant,
    dir: Option<TempDir>,
}

impl Vm {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When QEMU was started: the origin of every console time.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn console_path(&self) -> &Path {
        &self.console
    }

    /// The image of the `index`th disk added to the builder.
    pub fn disk_image(&self, index: usize) -> Result<PathBuf> {
        Ok(self.dir()?.join(format!("disk{index}.img")))
    }

    /// The VM's directory (console.log, qemu.log, disk images, OVMF variables).
    pub fn dir(&self) -> Result<&Path> {
        self.dir
            .as_ref()
            .map(TempDir::path)
            .context("the VM's directory is gone")
    }

    /// When the first console line containing `pattern` appeared, counted from QEMU's
    /// start; `None` if none has yet.
    pub fn console_line_at(&self, pattern: &str) -> Option<Duration> {
        self.watcher.first_match(pattern).map(|(at, _)| at)
    }

    /// Every console line so far.
    pub fn console_text(&self) -> String {
        self.watcher.text()
    }

    /// The last `lines` console lines.
    pub fn console_tail(&self, lines: usize) -> String {
        self.watcher.tail(lines)
    }

    /// Waits until a console line contains `pattern`; returns that line and when it appeared
    /// (since QEMU's start). Fails when `timeout` passes or QEMU exits first, with the
    /// console's tail and the VM's directory in the message.
    pub fn wait_for_console(
        &mut self,
        pattern: &str,
        timeout: Duration,
    ) -> Result<(Duration, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.watcher.first_match(pattern) {
                return Ok(found);
            }
            if let Some(status) = self.qemu_exited()? {
                // Output written just before exiting may not have been read yet.
                std::thread::sleep(CONSOLE_POLL * 3);
                if let Some(found) = self.watcher.first_match(pattern) {
                    return Ok(found);
                }
                bail!(
                    "VM {}: QEMU exited with {status} before the console showed {pattern:?}\n{}",
                    self.name,
                    self.failure_report()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "VM {}: the console did not show {pattern:?} within {timeout:?}\n{}",
                    self.name,
                    self.failure_report()
                );
            }
            std::thread::sleep(CONSOLE_POLL);
        }
    }

    /// Waits until QEMU exits (the guest powered off; `-no-reboot` makes a reboot an exit
    /// too) and returns its status; fails after `timeout` with the console's tail.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.qemu_exited()? {
                // Output written just before exiting may not have been read yet.
                std::thread::sleep(CONSOLE_POLL * 3);
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "VM {}: still running after {timeout:?}\n{}",
                    self.name,
                    self.failure_report()
                );
            }
            std::thread::sleep(CONSOLE_POLL);
        }
    }

    /// Fails if QEMU has exited (the message has the console's tail).
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.qemu_exited()? {
            bail!(
                "VM {}: QEMU exited with {status}\n{}",
                self.name,
                self.failure_report()
            );
        }
        Ok(())
    }

    fn qemu_exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.process.as_mut() {
            Some(process) => process.exited(),
            None => bail!("VM {}: QEMU was already stopped", self.name),
        }
    }

    /// Console tail, QEMU's own log tail and where the VM's files are.
    pub fn failure_report(&self) -> String {
        let qemu_log = self
            .process
            .as_ref()
            .map(|p| p.log_tail(20))
            .unwrap_or_default();
        format!(
            "----- last {FAILURE_TAIL_LINES} console lines of VM {} ({}) -----\n{}\n\
             ----- QEMU's log -----\n{qemu_log}\n----- end of VM {} -----",
            self.name,
            self.console.display(),
            self.console_tail(FAILURE_TAIL_LINES),
            self.name
        )
    }

    /// Kills QEMU now (the directory stays until the drop).
    pub fn stop(&mut self) {
        // LoggedChild's drop ends the process group.
        self.process.take();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let report = panicking.then(|| self.failure_report());
        self.stop();
        self.watcher.stop();
        if let Some(report) = report {
            eprintln!("{report}");
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "kept VM {}'s directory (console.log, qemu.log, disks): {}",
                    self.name,
                    dir.keep().display()
                );
            }
        }
    }
}

/// Writes `size` bytes of `byte` to `file`.
fn fill(file: File, size: u64, byte: u8) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(file);
    let chunk = vec![byte; 4 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// QEMU's arguments, built up with paths kept as `OsString`s.
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, arg: impl Into<OsString>) {
        self.0.push(arg.into());
    }

    fn push_all<'a>(&mut self, args: impl IntoIterator<Item = &'a str>) {
        self.0.extend(args.into_iter().map(OsString::from));
    }

    /// `prefix` followed by `path`; QEMU's option syntax cannot carry a comma in a path.
    fn push_path(&mut self, prefix: &str, path: &Path) -> Result<()> {
        ensure!(
            !path.as_os_str().as_encoded_bytes().contains(&b','),
            "QEMU cannot take the path {} in an option: it has a comma",
            path.display()
        );
        let mut arg = OsString::from(prefix);
        arg.push(path);
        self.0.push(arg);
        Ok(())
    }
}

/// Reads a disk image and checks `check(offset, byte)` for every byte, naming the first
/// offending offset.
pub fn check_image(path: &Path, what: &str, check: impl Fn(u64, u8) -> bool) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Some((offset, byte)) = data
        .iter()
        .enumerate()
        .find(|(i, b)| !check(*i as u64, **b))
    {
        anyhow::bail!("{what}: byte {offset} of {} is {byte:#04x}", path.display());
    }
    Ok(())
}

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

#[cfg(test)]
mod tests;
