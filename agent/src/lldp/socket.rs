//! One AF_PACKET socket per link for ethertype 0x88cc, joined to the LLDP multicast group
//! with `PACKET_ADD_MEMBERSHIP` (the NIC then accepts 01:80:c2:00:00:0e without going
//! promiscuous, unlike IPA).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::frame::{ETHERTYPE, MULTICAST};

/// An open LLDP socket bound to one interface; non-blocking.
#[derive(Debug)]
pub struct LldpSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// What one receive returned.
pub enum Received {
    /// A frame that arrived on the link.
    Frame(usize),
    /// A frame this host sent (AF_PACKET sees outgoing frames too).
    Outgoing,
    /// Nothing waiting.
    Nothing,
}

impl LldpSocket {
    /// Opens the socket on `interface`. Needs CAP_NET_RAW.
    pub fn open(interface: &str) -> io::Result<LldpSocket> {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|e| io::Error::other(format!("no interface {interface:?}: {e}")))?
            as i32;
        let protocol = (ETHERTYPE).to_be() as libc::c_int;
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(with_context(
                "socket(AF_PACKET)",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let socket = LldpSocket { fd, ifindex };
        let address = socket.link_address(None);
        // SAFETY: `address` is a valid sockaddr_ll and the length says so.
        let rc = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(with_context("bind", io::Error::last_os_error()));
        }
        let mut request = libc::packet_mreq {
            mr_ifindex: ifindex,
            mr_type: libc::PACKET_MR_MULTICAST as libc::c_ushort,
            mr_alen: 6,
            mr_address: [0; 8],
        };
        request.mr_address[..6].copy_from_slice(&MULTICAST);
        // SAFETY: `request` is a valid packet_mreq of the size given.
        let rc = unsafe {
            libc::setsockopt(
                socket.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&request as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(with_context(
                "PACKET_ADD_MEMBERSHIP 01:80:c2:00:00:0e",
                io::Error::last_os_error(),
            ));
        }
        Ok(socket)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn link_address(&self, destination: Option<[u8; 6]>) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as libc::c_ushort;
        address.sll_protocol = ETHERTYPE.to_be();
        address.sll_ifindex = self.ifindex;
        if let Some(mac) = destination {
            address.sll_halen = 6;
            address.sll_addr[..6].copy_from_slice(&mac);
        }
        address
    }

    /// Reads one waiting frame into `buffer`.
    pub fn receive(&self, buffer: &mut [u8]) -> io::Result<Received> {
        // SAFETY: zeroed sockaddr_ll is valid; recvfrom writes at most `len` bytes into it
        // and at most `buffer.len()` bytes into `buffer`.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_TRUNC,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(Received::Nothing),
                _ => Err(with_context("recvfrom", error)),
            };
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING as libc::c_uchar {
            return Ok(Received::Outgoing);
        }
        Ok(Received::Frame((n as usize).min(buffer.len())))
    }

    /// Sends a whole Ethernet frame (header included) to the LLDP group address.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let address = self.link_address(Some(MULTICAST));
        // SAFETY: `frame` and `address` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(with_context("sendto", io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// An `ifreq` naming `interface`.
fn interface_request(interface: &str) -> io::Result<libc::ifreq> {
    let bytes = interface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{interface:?} is not an interface name"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    Ok(request)
}

/// One `SIOCGIF*` ioctl on a throw-away datagram socket.
fn interface_ioctl(interface: &str, request_code: libc::c_ulong) -> io::Result<libc::ifreq> {
    let mut request = interface_request(interface)?;
    let socket =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    // SAFETY: `request` names the interface (NUL-terminated: shorter than IFNAMSIZ, rest
    // zero); the kernel writes only inside the ifreq.
    let rc = unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            request_code as _,
            &mut request as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(request)
}

/// The interface flags (`IFF_UP`, `IFF_RUNNING`, ...).
pub fn link_flags(interface: &str) -> io::Result<libc::c_int> {
    let request = interface_ioctl(interface, libc::SIOCGIFFLAGS as libc::c_ulong)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Ok(libc::c_int::from(unsafe { request.ifr_ifru.ifru_flags }) & 0xFFFF)
}

/// The interface's current hardware address.
pub fn hardware_address(interface: &str) -> io::Result<[u8; 6]> {
    let request = interface_ioctl(interface, libc::SIOCGIFHWADDR as libc::c_ulong)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let data = unsafe { request.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (slot, byte) in mac.iter_mut().zip(data.iter()) {
        *slot = *byte as u8;
    }
    Ok(mac)
}

fn with_context(what: &str, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}
