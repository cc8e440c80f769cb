//! `log.collect_system_logs`: a gzipped tar of what helps debug a failed deploy or clean,
//! base64-encoded (spec §4). Pure Rust, no external commands.
//!
//! Archive members (flat names, as IPA's):
//! * `rivet-agent.log`: the agent's in-memory log ([`crate::logbuf`]);
//! * `dmesg`: the kernel log, read from `/dev/kmsg`;
//! * `ip_addr`: links (from sysfs) with their addresses;
//! * `ip_route`: IPv4 and IPv6 routes (from `/proc/net`);
//! * `mount`: `/proc/self/mounts`; `mdstat`: `/proc/mdstat` when present;
//! * `inventory.json`: the cached inventory, when there is one;
//! * what steps attached ([`LogAttachments`]), e.g. `erase-reports.json`;
//! * `collection_errors`: what could not be collected, if anything.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use flate2::write::GzEncoder;
use flate2::Compression;

/// JSON documents steps leave for the archive, by member name (the latest of each).
#[derive(Debug, Default)]
pub struct LogAttachments {
    members: Mutex<BTreeMap<String, serde_json::Value>>,
}

impl LogAttachments {
    /// Replaces member `name` with what `change` makes of its current value.
    pub fn update(
        &self,
        name: &str,
        change: impl FnOnce(Option<serde_json::Value>) -> serde_json::Value,
    ) {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        let current = members.remove(name);
        members.insert(name.to_string(), change(current));
    }

    /// Every member, by name.
    pub fn snapshot(&self) -> Vec<(String, serde_json::Value)> {
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }
}

/// Reads the kernel log.
pub trait KernelLog: Send + Sync {
    /// The raw `/dev/kmsg` records (`prio,seq,usec,flags;text` lines, continuation lines
    /// starting with a space).
    fn read(&self) -> io::Result<Vec<u8>>;
}

/// The real kernel log: `/dev/kmsg`, opened non-blocking and read record by record until
/// `EAGAIN` (or end of file, for a regular file standing in for it).
#[derive(Debug, Clone)]
pub struct DevKmsg {
    pub path: PathBuf,
}

impl Default for DevKmsg {
    fn default() -> Self {
        DevKmsg {
            path: PathBuf::from("/dev/kmsg"),
        }
    }
}

impl KernelLog for DevKmsg {
    fn read(&self) -> io::Result<Vec<u8>> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)?;
        let mut all = Vec::new();
        // One record per read; records are at most a few KiB.
        let mut record = vec![0u8; 16 * 1024];
        loop {
            match file.read(&mut record) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&record[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The ring wrapped past our position: the next read continues.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }
}

/// Hands out fixed kmsg records.
#[derive(Debug, Clone, Default)]
pub struct FakeKernelLog {
    pub records: Vec<String>,
    pub error: Option<String>,
}

impl KernelLog for FakeKernelLog {
    fn read(&self) -> io::Result<Vec<u8>> {
        if let Some(error) = &self.error {
            return Err(io::Error::other(error.clone()));
        }
        Ok(self
            .records
            .iter()
            .flat_map(|r| format!("{r}\n").into_bytes())
            .collect())
    }
}

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub interface: String,
    pub address: IpAddr,
    pub prefix_len: Option<u8>,
}

/// Lists the addresses of every interface.
pub trait InterfaceAddresses: Send + Sync {
    fn list(&self) -> io::Result<Vec<InterfaceAddress>>;
}

/// The real list, from `getifaddrs` (netlink underneath).
#[derive(Debug, Clone, Default)]
pub struct Getifaddrs;

impl InterfaceAddresses for Getifaddrs {
    fn list(&self) -> io::Result<Vec<InterfaceAddress>> {
        let mut out = Vec::new();
        for ifa in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
            let Some(address) = ifa.address else { continue };
            let netmask = ifa.netmask;
            if let Some(v4) = address.as_sockaddr_in() {
                let prefix_len = netmask
                    .as_ref()
                    .and_then(|m| m.as_sockaddr_in())
                    .map(|m| u32::from(m.ip()).count_ones() as u8);
                out.push(InterfaceAddress {
                    interface: ifa.interface_name,
                    address: IpAddr::V4(v4.ip()),
                    prefix_len,
                });
            } else if let Some(v6) = address.as_sockaddr_in6() {
                let prefix_len = netmask
                    .as_ref()
                    .and_then(|m| m.as_sockaddr_in6())
                    .map(|m| u128::from(m.ip()).count_ones() as u8);
                out.push(InterfaceAddress {
                    interface: ifa.interface_name,
                    address: IpAddr::V6(v6.ip()),
                    prefix_len,
                });
            }
        }
        Ok(out)
    }
}

/// Fixed addresses for tests.
#[derive(Debug, Clone, Default)]
pub struct FakeAddresses(pub Vec<InterfaceAddress>);

impl InterfaceAddresses for FakeAddresses {
    fn list(&self) -> io::Result<Vec<InterfaceAddress>> {
        Ok(self.0.clone())
    }
}

/// Where the collector reads from.
#[derive(Clone)]
pub struct LogSources {
    pub kernel_log: Arc<dyn KernelLog>,
    pub addresses: Arc<dyn InterfaceAddresses>,
    /// `/proc` (a fixture directory in tests).
    pub proc_root: PathBuf,
    /// `/sys` (a fixture directory in tests).
    pub sys_root: PathBuf,
}

impl LogSources {
    /// This machine's kernel log, addresses, `/proc` and `/sys`.
    pub fn system() -> Self {
        LogSources {
            kernel_log: Arc::new(DevKmsg::default()),
            addresses: Arc::new(Getifaddrs),
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("building the system log archive: {0}")]
pub struct SyslogError(#[from] io::Error);

/// Builds the archive and returns it base64-encoded (`command_result.system_logs`).
/// Parts that cannot be read are listed in `collection_errors` instead of failing the whole.
pub fn collect(
    sources: &LogSources,
    agent_log: &str,
    inventory: Option<&serde_json::Value>,
    attachments: &[(String, serde_json::Value)],
) -> Result<String, SyslogError> {
    let mut members: Vec<(String, Vec<u8>)> =
        vec![("rivet-agent.log".to_string(), agent_log.into())];
    let mut errors = String::new();
    let mut part = |name: &str, what: &str, content: io::Result<String>| match content {
        Ok(text) => members.push((name.to_string(), text.into_bytes())),
        Err(e) => errors.push_str(&format!("{name}: {what}: {e}\n")),
    };
    part(
        "dmesg",
        "reading the kernel log",
        sources
            .kernel_log
            .read()
            .map(|raw| format_kmsg(&String::from_utf8_lossy(&raw))),
    );
    part(
        "ip_addr",
        "listing interfaces and addresses",
        format_links(sources),
    );
    part(
        "ip_route",
        "reading routes",
        format_routes(&sources.proc_root),
    );
    let mounts = sources.proc_root.join("self/mounts");
    part("mount", &mounts.display().to_string(), read(&mounts));
    let mdstat = sources.proc_root.join("mdstat");
    if mdstat.exists() {
        part("mdstat", &mdstat.display().to_string(), read(&mdstat));
    }
    if let Some(inventory) = inventory {
        part(
            "inventory.json",
            "serializing the inventory",
            serde_json::to_string_pretty(inventory).map_err(io::Error::other),
        );
    }
    for (name, value) in attachments {
        part(
            name,
            "serializing a step's attachment",
            serde_json::to_string_pretty(value).map_err(io::Error::other),
        );
    }
    if !errors.is_empty() {
        members.push(("collection_errors".to_string(), errors.into_bytes()));
    }
    let archive = tar_gz(&members)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(archive))
}

fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))
}

fn tar_gz(members: &[(String, Vec<u8>)]) -> io::Result<Vec<u8>> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (name, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, data.as_slice())?;
    }
    builder.into_inner()?.finish()
}

/// `prio,seq,usec,flags;text` records as `[   secs.micros] text`; continuation lines
/// (device properties, starting with a space) are left out.
pub fn format_kmsg(raw: &str) -> String {
    let mut out = String::new();
    for line in raw.lines() {
        if line.starts_with(' ') || line.is_empty() {
            continue;
        }
        let Some((prefix, text)) = line.split_once(';') else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let usec = prefix
            .split(',')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        out.push_str(&format!(
            "[{:>5}.{:06}] {text}\n",
            usec / 1_000_000,
            usec % 1_000_000
        ));
    }
    out
}

fn sys_value(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// Links from `<sys>/class/net`, each followed by its addresses.
fn format_links(sources: &LogSources) -> io::Result<String> {
    let net = sources.sys_root.join("class/net");
    let mut links: Vec<(u32, String)> = Vec::new();
    for entry in std::fs::read_dir(&net)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", net.display())))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let index = sys_value(&net.join(&name), "ifindex").parse().unwrap_or(0);
        links.push((index, name));
    }
    links.sort();
    let addresses = sources.addresses.list()?;
    let mut out = String::new();
    for (index, name) in &links {
        let dir = net.join(name);
        out.push_str(&format!(
            "{index}: {name}: state {} carrier {} mtu {} link {}\n",
            sys_value(&dir, "operstate"),
            sys_value(&dir, "carrier"),
            sys_value(&dir, "mtu"),
            sys_value(&dir, "address"),
        ));
        for a in addresses.iter().filter(|a| &a.interface == name) {
            let family = if a.address.is_ipv4() { "inet" } else { "inet6" };
            match a.prefix_len {
                Some(prefix) => out.push_str(&format!("    {family} {}/{prefix}\n", a.address)),
                None => out.push_str(&format!("    {family} {}\n", a.address)),
            }
        }
    }
    Ok(out)
}

/// `<proc>/net/route` and `<proc>/net/ipv6_route`, decoded.
fn format_routes(proc_root: &Path) -> io::Result<String> {
    let mut out = String::new();
    let v4 = read(&proc_root.join("net/route"))?;
    for line in v4.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let addr = |hex: &str| {
            u32::from_str_radix(hex, 16)
                .ok()
                .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
        };
        let (Some(dest), Some(gateway), Some(mask)) = (addr(f[1]), addr(f[2]), addr(f[7])) else {
            continue;
        };
        let prefix = u32::from(mask).count_ones();
        let target = if prefix == 0 && dest.is_unspecified() {
            "default".to_string()
        } else {
            format!("{dest}/{prefix}")
        };
        let via = if gateway.is_unspecified() {
            String::new()
        } else {
            format!(" via {gateway}")
        };
        out.push_str(&format!("{target}{via} dev {} metric {}\n", f[0], f[6]));
    }
    // IPv6 may be disabled: no file is not an error.
    let v6_path = proc_root.join("net/ipv6_route");
    if v6_path.exists() {
        for line in read(&v6_path)?.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let addr = |hex: &str| u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from);
            let (Some(dest), Some(prefix), Some(next_hop), Some(metric)) = (
                addr(f[0]),
                u8::from_str_radix(f[1], 16).ok(),
                addr(f[4]),
                u32::from_str_radix(f[5], 16).ok(),
            ) else {
                continue;
            };
            let via = if next_hop.is_unspecified() {
                String::new()
            } else {
                format!(" via {next_hop}")
            };
            out.push_str(&format!(
                "{dest}/{prefix}{via} dev {} metric {metric}\n",
                f[9]
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
