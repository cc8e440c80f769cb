//! Network interfaces the IPA way: which ones count, and which MAC each one reports.
//!
//! An interface counts when `/sys/class/net/<name>` has a `device` link (a real NIC), is a
//! VLAN by name (`<parent>.<digits>`) or is a bond (has a `bonding` directory). Its MAC is the
//! permanent one from ethtool (`ETHTOOL_GPERMADDR`), else the current `address`. A MAC that
//! starts with `fa:` is treated as absent, and an interface without a MAC is left out: no
//! hardware manager can describe it (spec §1.2). The loopback never counts.
//!
//! Everything that asks the kernel sits behind [`NetInfo`]: [`SysfsNetInfo`] is the real one,
//! [`FakeNetInfo`] reads a fixture sysfs tree and answers the kernel calls from tables.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Errors of interface discovery.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("listing {path}: {source}")]
    ListDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("listing interface addresses (getifaddrs): {0}")]
    Addresses(#[source] nix::Error),
    #[error("finding the local address that routes to {destination}: {source}")]
    Route {
        destination: IpAddr,
        #[source]
        source: io::Error,
    },
}

/// The OS calls interface discovery needs.
pub trait NetInfo: Send + Sync {
    /// Names of the entries of `/sys/class/net`.
    fn interface_names(&self) -> Result<Vec<String>, NetError>;
    /// Whether `/sys/class/net/<name>/<entry>` exists (links are followed).
    fn has_entry(&self, name: &str, entry: &str) -> bool;
    /// The trimmed text of `/sys/class/net/<name>/<attribute>`.
    fn read_attribute(&self, name: &str, attribute: &str) -> Result<String, NetError>;
    /// The permanent MAC from ethtool; `None` when unsupported, failing or all zero.
    fn permanent_mac(&self, name: &str) -> Option<Vec<u8>>;
    /// Every IP address of every interface (getifaddrs), in the kernel's order.
    fn ip_addresses(&self) -> Result<Vec<(String, IpAddr)>, NetError>;
    /// The local address the kernel picks to reach `destination` (the `src` that
    /// `ip route get <destination>` reports).
    fn route_source(&self, destination: IpAddr) -> Result<IpAddr, NetError>;
}

/// Why an interface was listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceKind {
    /// Has a `device` link: a NIC on a bus.
    Device,
    /// Named `<parent>.<vlan id>`.
    Vlan,
    /// Has a `bonding` directory.
    Bond,
}

/// One interface as inventory and lookup see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetInterface {
    pub name: String,
    pub kind: InterfaceKind,
    /// Lower-case, colon-separated.
    pub mac_address: String,
    /// In the kernel's order; the first is what IPA reports as `ipv4_address`.
    pub ipv4_addresses: Vec<Ipv4Addr>,
    pub ipv6_addresses: Vec<Ipv6Addr>,
}

/// The interfaces that count, sorted by name, each with its MAC and addresses.
pub fn list_interfaces(net: &dyn NetInfo) -> Result<Vec<NetInterface>, NetError> {
    let mut names = net.interface_names()?;
    names.sort();
    let addresses = net.ip_addresses()?;
    let mut interfaces = Vec::new();
    for name in names {
        let Some(kind) = interface_kind(net, &name) else {
            continue;
        };
        let Some(mac_address) = interface_mac(net, &name) else {
            continue;
        };
        let mut ipv4_addresses = Vec::new();
        let mut ipv6_addresses = Vec::new();
        for (owner, address) in &addresses {
            if *owner != name {
                continue;
            }
            match address {
                IpAddr::V4(v4) => ipv4_addresses.push(*v4),
                IpAddr::V6(v6) => ipv6_addresses.push(*v6),
            }
        }
        interfaces.push(NetInterface {
            name,
            kind,
            mac_address,
            ipv4_addresses,
            ipv6_addresses,
        });
    }
    Ok(interfaces)
}

/// The `addresses` of a lookup: the MAC of every listed interface, in order. Like IPA, a VLAN
/// repeats its parent's MAC; Ironic does not mind.
pub fn lookup_addresses(interfaces: &[NetInterface]) -> Vec<String> {
    interfaces
        .iter()
        .map(|interface| interface.mac_address.clone())
        .collect()
}

/// Whether and why `name` counts as an interface.
pub fn interface_kind(net: &dyn NetInfo, name: &str) -> Option<InterfaceKind> {
    if name == "lo" {
        return None;
    }
    if net.has_entry(name, "device") {
        Some(InterfaceKind::Device)
    } else if is_vlan_name(name) {
        Some(InterfaceKind::Vlan)
    } else if net.has_entry(name, "bonding") {
        Some(InterfaceKind::Bond)
    } else {
        None
    }
}

/// `<parent>.<digits>`: how VLAN interfaces are named.
pub fn is_vlan_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((_, vlan)) => !vlan.is_empty() && vlan.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// The MAC IPA reports for `name`: permanent, else current; `None` for none or `fa:...`.
pub fn interface_mac(net: &dyn NetInfo, name: &str) -> Option<String> {
    let mac = match net.permanent_mac(name) {
        Some(bytes) => format_mac(&bytes),
        None => {
            tracing::debug!(
                interface = name,
                "no permanent MAC, using the current address"
            );
            match net.read_attribute(name, "address") {
                Ok(address) if !address.is_empty() => address.to_ascii_lowercase(),
                Ok(_) => return None,
                Err(err) => {
                    tracing::debug!(interface = name, "no MAC address: {err}");
                    return None;
                }
            }
        }
    };
    if mac.starts_with("fa:") {
        tracing::warn!(
            interface = name,
            mac = %mac,
            "ignoring a locally assigned MAC address starting with fa: (Ironic ignores it too); \
             check for a misconfiguration, e.g. an in-band BMC connection"
        );
        return None;
    }
    Some(mac)
}

/// `52:54:00:12:34:56`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads `<root>/sys/class/net`.
#[derive(Debug, Clone)]
struct SysfsTree {
    class_net: PathBuf,
}

impl SysfsTree {
    fn new(root: &Path) -> Self {
        SysfsTree {
            class_net: root.join("sys/class/net"),
        }
    }

    fn interface_names(&self) -> Result<Vec<String>, NetError> {
        let list_err = |source| NetError::ListDir {
            path: self.class_net.clone(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.class_net).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn has_entry(&self, name: &str, entry: &str) -> bool {
        self.class_net.join(name).join(entry).exists()
    }

    fn read_attribute(&self, name: &str, attribute: &str) -> Result<String, NetError> {
        let path = self.class_net.join(name).join(attribute);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().to_string()),
            Err(source) => Err(NetError::Read { path, source }),
        }
    }
}

/// The live system: sysfs under `root` (normally `/`), ethtool ioctls, getifaddrs and the
/// kernel's routing decision.
#[derive(Debug, Clone)]
pub struct SysfsNetInfo {
    pub root: PathBuf,
    tree: SysfsTree,
}

impl SysfsNetInfo {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let tree = SysfsTree::new(&root);
        SysfsNetInfo { root, tree }
    }
}

impl Default for SysfsNetInfo {
    fn default() -> Self {
        SysfsNetInfo::new("/")
    }
}

impl NetInfo for SysfsNetInfo {
    fn interface_names(&self) -> Result<Vec<String>, NetError> {
        self.tree.interface_names()
    }

    fn has_entry(&self, name: &str, entry: &str) -> bool {
        self.tree.has_entry(name, entry)
    }

    fn read_attribute(&self, name: &str, attribute: &str) -> Result<String, NetError> {
        self.tree.read_attribute(name, attribute)
    }

    fn permanent_mac(&self, name: &str) -> Option<Vec<u8>> {
        match ethtool::permanent_address(name) {
            Ok(bytes) if bytes.iter().any(|b| *b != 0) => Some(bytes),
            Ok(_) => None,
            Err(err) => {
                tracing::debug!(interface = name, "ETHTOOL_GPERMADDR: {err}");
                None
            }
        }
    }

    fn ip_addresses(&self) -> Result<Vec<(String, IpAddr)>, NetError> {
        let mut addresses = Vec::new();
        for entry in nix::ifaddrs::getifaddrs().map_err(NetError::Addresses)? {
            let Some(address) = entry.address else {
                continue;
            };
            if let Some(v4) = address.as_sockaddr_in() {
                addresses.push((entry.interface_name, IpAddr::V4(v4.ip())));
            } else if let Some(v6) = address.as_sockaddr_in6() {
                addresses.push((entry.interface_name, IpAddr::V6(v6.ip())));
            }
        }
        Ok(addresses)
    }

    fn route_source(&self, destination: IpAddr) -> Result<IpAddr, NetError> {
        // Connecting a UDP socket sends nothing; it only makes the kernel choose the route
        // and the source address, which `local_addr` then reports.
        let route_err = |source| NetError::Route {
            destination,
            source,
        };
        let unspecified: IpAddr = match destination {
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0)).map_err(route_err)?;
        socket
            .connect(SocketAddr::new(destination, 9))
            .map_err(route_err)?;
        Ok(socket.local_addr().map_err(route_err)?.ip())
    }
}

/// The `SIOCETHTOOL` / `ETHTOOL_GPERMADDR` ioctl.
mod ethtool {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

    const ETHTOOL_GPERMADDR: u32 = 0x0000_0020;
    /// `MAX_ADDR_LEN` of the kernel.
    const MAX_ADDR_LEN: usize = 32;

    /// `struct ethtool_perm_addr` with room for the longest address.
    #[repr(C)]
    struct PermAddr {
        cmd: u32,
        size: u32,
        data: [u8; MAX_ADDR_LEN],
    }

    pub(super) fn permanent_address(name: &str) -> std::io::Result<Vec<u8>> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name:?} is not a valid interface name"),
            ));
        }
        let sock = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let mut perm = PermAddr {
            cmd: ETHTOOL_GPERMADDR,
            size: MAX_ADDR_LEN as u32,
            data: [0; MAX_ADDR_LEN],
        };
        // SAFETY: ifreq is plain old data; all-zero is a valid value (empty name, null data).
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
            *slot = *byte as libc::c_char;
        }
        request.ifr_ifru.ifru_data = (&mut perm as *mut PermAddr).cast();
        // SAFETY: `request` names the interface (NUL-terminated: the name is shorter than
        // IFNAMSIZ and the rest is zero) and points at `perm`, which lives until after the
        // call and has room for `size` bytes, the most the kernel writes for this command.
        let rc = unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCETHTOOL as _,
                &mut request as *mut libc::ifreq,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let len = (perm.size as usize).min(MAX_ADDR_LEN);
        Ok(perm.data[..len].to_vec())
    }
}

/// A fixture sysfs tree plus tables for the kernel calls.
#[derive(Debug)]
pub struct FakeNetInfo {
    tree: SysfsTree,
    /// Permanent MACs by interface; missing means the ioctl is not supported.
    pub permanent_macs: HashMap<String, Vec<u8>>,
    /// What getifaddrs reports.
    pub addresses: Vec<(String, IpAddr)>,
    /// Answers of [`NetInfo::route_source`], one per call; `None` or an empty queue is
    /// "no route".
    pub routes: Mutex<VecDeque<Option<IpAddr>>>,
    /// Destinations [`NetInfo::route_source`] was asked about.
    pub route_queries: Mutex<Vec<IpAddr>>,
}

impl FakeNetInfo {
    /// Reads `<root>/sys/class/net`.
    pub fn new(root: impl AsRef<Path>) -> Self {
        FakeNetInfo {
            tree: SysfsTree::new(root.as_ref()),
            permanent_macs: HashMap::new(),
            addresses: Vec::new(),
            routes: Mutex::new(VecDeque::new()),
            route_queries: Mutex::new(Vec::new()),
        }
    }
}

impl NetInfo for FakeNetInfo {
    fn interface_names(&self) -> Result<Vec<String>, NetError> {
        self.tree.interface_names()
    }

    fn has_entry(&self, name: &str, entry: &str) -> bool {
        self.tree.has_entry(name, entry)
    }

    fn read_attribute(&self, name: &str, attribute: &str) -> Result<String, NetError> {
        self.tree.read_attribute(name, attribute)
    }

    fn permanent_mac(&self, name: &str) -> Option<Vec<u8>> {
        self.permanent_macs
            .get(name)
            .filter(|bytes| bytes.iter().any(|b| *b != 0))
            .cloned()
    }

    fn ip_addresses(&self) -> Result<Vec<(String, IpAddr)>, NetError> {
        Ok(self.addresses.clone())
    }

    fn route_source(&self, destination: IpAddr) -> Result<IpAddr, NetError> {
        lock(&self.route_queries).push(destination);
        match lock(&self.routes).pop_front().flatten() {
            Some(source) => Ok(source),
            None => Err(NetError::Route {
                destination,
                source: io::Error::new(io::ErrorKind::NetworkUnreachable, "no route (fake)"),
            }),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_names() {
        assert!(is_vlan_name("eth0.100"));
        assert!(is_vlan_name("bond0.7"));
        assert!(!is_vlan_name("eth0"));
        assert!(!is_vlan_name("eth0."));
        assert!(!is_vlan_name("eth0.v100"));
    }

    #[test]
    fn macs_are_lower_case_with_colons() {
        assert_eq!(
            format_mac(&[0x52, 0x54, 0x00, 0xAB, 0xcd, 0x0f]),
            "52:54:00:ab:cd:0f"
        );
    }

    #[test]
    fn lookup_addresses_keep_every_interface() {
        let interface = |name: &str, mac: &str| NetInterface {
            name: name.into(),
            kind: InterfaceKind::Device,
            mac_address: mac.into(),
            ipv4_addresses: Vec::new(),
            ipv6_addresses: Vec::new(),
        };
        let list = [
            interface("eth0", "52:54:00:00:00:01"),
            interface("eth0.5", "52:54:00:00:00:01"),
            interface("eth1", "52:54:00:00:00:02"),
        ];
        assert_eq!(
            lookup_addresses(&list),
            vec![
                "52:54:00:00:00:01",
                "52:54:00:00:00:01",
                "52:54:00:00:00:02"
            ]
        );
    }
}
