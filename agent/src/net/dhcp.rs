//! A DHCPv4 client (RFC 2131): DISCOVER/OFFER/REQUEST/ACK with retransmission and backoff,
//! and lease renewal. Messages are encoded with `dhcproto`; the socket sits behind
//! [`DhcpTransport`] so the state machine is tested against a fake server.
//!
//! On Linux a plain UDP socket bound to `0.0.0.0:68` with `SO_BINDTODEVICE` and
//! `SO_BROADCAST` can send from `0.0.0.0` and receive broadcast replies on a link that is up
//! but has no address yet, so no raw socket is needed. Requests set the broadcast flag so
//! servers answer by broadcast until we own the address.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use tokio::time::Instant;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

/// Errors of the DHCP client.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// The socket could not be set up.
    #[error("DHCP socket on {link}: {op}: {source}")]
    Socket {
        link: String,
        op: &'static str,
        source: std::io::Error,
    },
    /// Sending or receiving failed.
    #[error("DHCP {op}: {source}")]
    Io {
        op: &'static str,
        source: std::io::Error,
    },
    /// Encoding our own message failed (a bug, e.g. a hostname too long).
    #[error("encoding DHCP {kind:?}: {reason}")]
    Encode { kind: MessageType, reason: String },
    /// No usable answer before the deadline.
    #[error("no DHCP {waiting_for} after {sent} {what} in {elapsed:.1?}")]
    Timeout {
        waiting_for: &'static str,
        what: &'static str,
        sent: u32,
        elapsed: Duration,
    },
}

/// Sends and receives raw DHCP messages on one link.
pub trait DhcpTransport: Send {
    fn send(
        &mut self,
        packet: Vec<u8>,
        to: SocketAddrV4,
    ) -> impl Future<Output = std::io::Result<()>> + Send;
    /// The next datagram that arrives on the client port.
    fn recv(&mut self) -> impl Future<Output = std::io::Result<Vec<u8>>> + Send;
}

/// Client parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The link's hardware (MAC) address: `chaddr` and the client identifier.
    pub mac: Vec<u8>,
    /// Overall bound for getting a lease.
    pub timeout: Duration,
    /// First retransmission interval; doubles up to `max_retransmit`.
    pub initial_retransmit: Duration,
    pub max_retransmit: Duration,
}

impl DhcpConfig {
    pub fn new(mac: Vec<u8>) -> Self {
        DhcpConfig {
            mac,
            timeout: Duration::from_secs(30),
            initial_retransmit: Duration::from_secs(1),
            max_retransmit: Duration::from_secs(16),
        }
    }
}

/// What a server gave us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub routers: Vec<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub mtu: Option<u16>,
    pub server_id: Ipv4Addr,
    /// None: infinite lease.
    pub lease_time: Option<Duration>,
    /// T1 and T2, from the server or 50 % / 87.5 % of the lease time.
    pub renew_after: Option<Duration>,
    pub rebind_after: Option<Duration>,
}

/// Gets a lease: DISCOVER until an OFFER comes, REQUEST it until ACK; a NAK or a request that
/// stays unanswered starts over. Bounded by `config.timeout`.
pub async fn acquire<T: DhcpTransport>(
    transport: &mut T,
    config: &DhcpConfig,
) -> Result<Lease, DhcpError> {
    let started = Instant::now();
    let deadline = started + config.timeout;
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT);
    let mut offers = 0;
    loop {
        let xid: u32 = rand::random();
        let discover = build(config, xid, MessageType::Discover, None)?;
        let offer = exchange(
            transport,
            config,
            &discover,
            broadcast,
            deadline,
            None,
            |m| m.opts().msg_type() == Some(MessageType::Offer) && !m.yiaddr().is_unspecified(),
        )
        .await
        .map_err(|e| e.for_phase("OFFER", "DISCOVERs", started))?;
        offers += 1;
        let Some(server_id) = server_id(&offer.message) else {
            tracing::debug!("ignoring an OFFER without a server identifier");
            continue;
        };
        let request = build(
            config,
            xid,
            MessageType::Request,
            Some((offer.message.yiaddr(), server_id)),
        )?;
        // A few REQUESTs; then the offer is considered lost and we start over.
        let reply = exchange(
            transport,
            config,
            &request,
            broadcast,
            deadline,
            Some(4),
            |m| {
                matches!(
                    m.opts().msg_type(),
                    Some(MessageType::Ack | MessageType::Nak)
                ) && server_id_or(m, server_id) == server_id
            },
        )
        .await;
        match reply {
            Ok(reply) if reply.message.opts().msg_type() == Some(MessageType::Ack) => {
                return Ok(lease_from_ack(&reply.message, server_id));
            }
            Ok(_) => tracing::info!("DHCP server {server_id} refused the offer (NAK), retrying"),
            Err(ExchangeError::Io(e)) => return Err(e),
            Err(ExchangeError::Timeout { .. }) if Instant::now() >= deadline => {
                return Err(DhcpError::Timeout {
                    waiting_for: "ACK",
                    what: "OFFERs",
                    sent: offers,
                    elapsed: started.elapsed(),
                })
            }
            Err(ExchangeError::Timeout { .. }) => {
                tracing::info!("no ACK from {server_id}, discovering again")
            }
        }
    }
}

/// Renews (`rebind` false: unicast to the server) or rebinds (broadcast to any server) the
/// lease until `deadline`. A NAK is an error: the caller must start over with [`acquire`].
pub async fn renew<T: DhcpTransport>(
    transport: &mut T,
    config: &DhcpConfig,
    lease: &Lease,
    rebind: bool,
    deadline: Instant,
) -> Result<Option<Lease>, DhcpError> {
    let started = Instant::now();
    let xid: u32 = rand::random();
    let mut request = build(config, xid, MessageType::Request, None)?;
    request.set_ciaddr(lease.address);
    request.set_flags(Flags::default());
    let to = if rebind {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT)
    } else {
        SocketAddrV4::new(lease.server_id, SERVER_PORT)
    };
    let reply = exchange(transport, config, &request, to, deadline, None, |m| {
        matches!(
            m.opts().msg_type(),
            Some(MessageType::Ack | MessageType::Nak)
        )
    })
    .await
    .map_err(|e| e.for_phase("ACK", "renewal REQUESTs", started))?;
    if reply.message.opts().msg_type() == Some(MessageType::Nak) {
        return Ok(None);
    }
    let server = server_id_or(&reply.message, lease.server_id);
    Ok(Some(lease_from_ack(&reply.message, server)))
}

struct Reply {
    message: Message,
}

enum ExchangeError {
    Io(DhcpError),
    Timeout { sent: u32 },
}

impl ExchangeError {
    fn for_phase(
        self,
        waiting_for: &'static str,
        what: &'static str,
        started: Instant,
    ) -> DhcpError {
        match self {
            ExchangeError::Io(e) => e,
            ExchangeError::Timeout { sent } => DhcpError::Timeout {
                waiting_for,
                what,
                sent,
                elapsed: started.elapsed(),
            },
        }
    }
}

/// Sends `message` and retransmits it with exponential backoff (plus up to 10 % jitter)
/// until a reply with the same xid and chaddr passes `accept`, `deadline` passes, or
/// `max_sends` messages went unanswered.
async fn exchange<T: DhcpTransport>(
    transport: &mut T,
    config: &DhcpConfig,
    message: &Message,
    to: SocketAddrV4,
    deadline: Instant,
    max_sends: Option<u32>,
    accept: impl Fn(&Message) -> bool,
) -> Result<Reply, ExchangeError> {
    let kind = message.opts().msg_type().unwrap_or(MessageType::Discover);
    let packet = message.to_vec().map_err(|e| {
        ExchangeError::Io(DhcpError::Encode {
            kind,
            reason: e.to_string(),
        })
    })?;
    let mut interval = config.initial_retransmit;
    let mut sent = 0;
    loop {
        let now = Instant::now();
        if now >= deadline || max_sends.is_some_and(|max| sent >= max) {
            return Err(ExchangeError::Timeout { sent });
        }
        transport
            .send(packet.clone(), to)
            .await
            .map_err(|source| ExchangeError::Io(DhcpError::Io { op: "send", source }))?;
        sent += 1;
        let jitter = interval.mul_f64(rand::random::<f64>() * 0.1);
        let wait_until = (now + interval + jitter).min(deadline);
        loop {
            match tokio::time::timeout_at(wait_until, transport.recv()).await {
                Err(_elapsed) => break,
                Ok(Err(source)) => {
                    return Err(ExchangeError::Io(DhcpError::Io {
                        op: "receive",
                        source,
                    }))
                }
                Ok(Ok(bytes)) => {
                    let Ok(reply) = Message::from_bytes(&bytes) else {
                        tracing::debug!("ignoring an undecodable DHCP packet");
                        continue;
                    };
                    if reply.opcode() == Opcode::BootReply
                        && reply.xid() == message.xid()
                        && reply.chaddr().get(..config.mac.len()) == Some(&config.mac[..])
                        && accept(&reply)
                    {
                        return Ok(Reply { message: reply });
                    }
                }
            }
        }
        interval = (interval * 2).min(config.max_retransmit);
    }
}

/// Builds a client message. `requesting` carries (address, server) for a REQUEST that
/// answers an OFFER.
pub fn build(
    config: &DhcpConfig,
    xid: u32,
    kind: MessageType,
    requesting: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Result<Message, DhcpError> {
    if config.mac.is_empty() || config.mac.len() > 16 {
        return Err(DhcpError::Encode {
            kind,
            reason: format!("hardware address of {} bytes", config.mac.len()),
        });
    }
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut message = Message::new_with_id(
        xid,
        unspecified,
        unspecified,
        unspecified,
        unspecified,
        &config.mac,
    );
    message.set_flags(Flags::default().set_broadcast());
    let opts = message.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(&config.mac);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    opts.insert(DhcpOption::MaxMessageSize(1500));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
        OptionCode::InterfaceMtu,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ]));
    if let Some((address, server)) = requesting {
        opts.insert(DhcpOption::RequestedIpAddress(address));
        opts.insert(DhcpOption::ServerIdentifier(server));
    }
    Ok(message)
}

fn server_id(message: &Message) -> Option<Ipv4Addr> {
    match message.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(id)) => Some(*id),
        _ => None,
    }
}

fn server_id_or(message: &Message, fallback: Ipv4Addr) -> Ipv4Addr {
    server_id(message).unwrap_or(fallback)
}

/// The lease an ACK describes. Without a subnet mask the classful default applies
/// (RFC 2131 leaves it to the client); without a lease time, one day.
pub fn lease_from_ack(ack: &Message, server_id: Ipv4Addr) -> Lease {
    let address = ack.yiaddr();
    let opts = ack.opts();
    let prefix_len = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) if mask_is_contiguous(*mask) => {
            mask.to_bits().count_ones() as u8
        }
        _ => classful_prefix(address),
    };
    let addrs = |code| match opts.get(code) {
        Some(DhcpOption::Router(list)) | Some(DhcpOption::DomainNameServer(list)) => list.clone(),
        _ => Vec::new(),
    };
    let seconds = |code| match opts.get(code) {
        Some(DhcpOption::AddressLeaseTime(s))
        | Some(DhcpOption::Renewal(s))
        | Some(DhcpOption::Rebinding(s)) => Some(*s),
        _ => None,
    };
    let lease_secs = seconds(OptionCode::AddressLeaseTime).unwrap_or(86_400);
    let (lease_time, renew_after, rebind_after) = if lease_secs == u32::MAX {
        (None, None, None)
    } else {
        let lease = Duration::from_secs(lease_secs.into());
        let t1 = seconds(OptionCode::Renewal)
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or(lease / 2);
        let t2 = seconds(OptionCode::Rebinding)
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or(lease.mul_f64(0.875));
        (Some(lease), Some(t1), Some(t2))
    };
    Lease {
        address,
        prefix_len,
        routers: addrs(OptionCode::Router),
        dns_servers: addrs(OptionCode::DomainNameServer),
        domain: match opts.get(OptionCode::DomainName) {
            Some(DhcpOption::DomainName(name)) if !name.is_empty() => {
                Some(name.trim_end_matches('\0').to_string())
            }
            _ => None,
        },
        mtu: match opts.get(OptionCode::InterfaceMtu) {
            Some(DhcpOption::InterfaceMtu(mtu)) if *mtu >= 576 => Some(*mtu),
            _ => None,
        },
        server_id,
        lease_time,
        renew_after,
        rebind_after,
    }
}

fn mask_is_contiguous(mask: Ipv4Addr) -> bool {
    let bits = mask.to_bits();
    bits.leading_ones() + bits.trailing_zeros() == 32
}

fn classful_prefix(address: Ipv4Addr) -> u8 {
    match address.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// The real transport: a UDP socket on port 68 bound to one link.
#[derive(Debug)]
pub struct UdpTransport {
    socket: tokio::net::UdpSocket,
}

impl UdpTransport {
    /// Binds `0.0.0.0:68` on `link` with SO_BINDTODEVICE, SO_BROADCAST and SO_REUSEADDR (one
    /// socket per link can then share the port). Must run inside a tokio runtime.
    pub fn bind(link: &str) -> Result<Self, DhcpError> {
        let err = |op: &'static str| {
            let link = link.to_string();
            move |e: nix::Error| DhcpError::Socket {
                link,
                op,
                source: e.into(),
            }
        };
        let fd = socket::socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(err("socket"))?;
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(err("SO_REUSEADDR"))?;
        socket::setsockopt(&fd, sockopt::Broadcast, &true).map_err(err("SO_BROADCAST"))?;
        socket::setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(link))
            .map_err(err("SO_BINDTODEVICE"))?;
        socket::bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, CLIENT_PORT))
            .map_err(err("bind 0.0.0.0:68"))?;
        let socket =
            tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd)).map_err(|source| {
                DhcpError::Socket {
                    link: link.to_string(),
                    op: "registering with tokio",
                    source,
                }
            })?;
        Ok(UdpTransport { socket })
    }
}

impl DhcpTransport for UdpTransport {
    async fn send(&mut self, packet: Vec<u8>, to: SocketAddrV4) -> std::io::Result<()> {
        self.socket.send_to(&packet, to).await.map(|_| ())
    }

    async fn recv(&mut self) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        let (len, _from) = self.socket.recv_from(&mut buf).await?;
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
#[path = "dhcp_fake.rs"]
pub(crate) mod fake;

#[cfg(test)]
#[path = "dhcp_tests.rs"]
mod tests;
