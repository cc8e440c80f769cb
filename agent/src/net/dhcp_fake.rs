//! `FakeDhcpServer`: a DHCP server living inside a [`DhcpTransport`], answering DISCOVER with
//! OFFER and REQUEST with ACK (or NAK), with scripted losses. Clones share state, so a test
//! keeps one clone to inspect what the client sent.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};

use super::DhcpTransport;

#[derive(Debug, Clone)]
pub(crate) struct FakeConfig {
    pub server_id: Ipv4Addr,
    pub address: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: u32,
    pub mtu: Option<u16>,
    /// Client messages to ignore before answering (packet loss).
    pub drop_first: usize,
    /// REQUESTs to answer with NAK before acknowledging.
    pub nak_requests: usize,
    /// Never answer at all (no server on this link).
    pub silent: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            server_id: Ipv4Addr::new(192, 0, 2, 1),
            address: Ipv4Addr::new(192, 0, 2, 50),
            mask: Ipv4Addr::new(255, 255, 255, 0),
            router: Some(Ipv4Addr::new(192, 0, 2, 1)),
            dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
            lease_secs: 3600,
            mtu: None,
            drop_first: 0,
            nak_requests: 0,
            silent: false,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct FakeState {
    /// Every client message decoded, with where it was sent.
    pub received: Vec<(Message, SocketAddrV4)>,
    pending: VecDeque<Vec<u8>>,
    dropped: usize,
    naks: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct FakeDhcpServer {
    pub config: FakeConfig,
    state: Arc<Mutex<FakeState>>,
}

impl FakeDhcpServer {
    pub fn new(config: FakeConfig) -> Self {
        FakeDhcpServer {
            config,
            state: Arc::default(),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The message types the client sent, in order.
    pub fn sent_types(&self) -> Vec<MessageType> {
        self.state()
            .received
            .iter()
            .filter_map(|(m, _)| m.opts().msg_type())
            .collect()
    }

    fn answer(&self, request: &Message, kind: MessageType) -> Vec<u8> {
        let c = &self.config;
        let mut reply = request.clone();
        reply.set_opcode(Opcode::BootReply);
        reply.set_yiaddr(if kind == MessageType::Nak {
            Ipv4Addr::UNSPECIFIED
        } else {
            c.address
        });
        let mut opts = dhcproto::v4::DhcpOptions::new();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ServerIdentifier(c.server_id));
        if kind != MessageType::Nak {
            opts.insert(DhcpOption::SubnetMask(c.mask));
            opts.insert(DhcpOption::AddressLeaseTime(c.lease_secs));
            if let Some(router) = c.router {
                opts.insert(DhcpOption::Router(vec![router]));
            }
            if !c.dns.is_empty() {
                opts.insert(DhcpOption::DomainNameServer(c.dns.clone()));
            }
            if let Some(mtu) = c.mtu {
                opts.insert(DhcpOption::InterfaceMtu(mtu));
            }
        }
        reply.set_opts(opts);
        reply.to_vec().expect("fake server encodes its reply")
    }
}

impl DhcpTransport for FakeDhcpServer {
    async fn send(&mut self, packet: Vec<u8>, to: SocketAddrV4) -> std::io::Result<()> {
        let message = Message::from_bytes(&packet).expect("client sends decodable DHCP");
        let mut state = self.state();
        state.received.push((message.clone(), to));
        if self.config.silent {
            return Ok(());
        }
        if state.dropped < self.config.drop_first {
            state.dropped += 1;
            return Ok(());
        }
        let reply = match message.opts().msg_type() {
            Some(MessageType::Discover) => Some(self.answer(&message, MessageType::Offer)),
            Some(MessageType::Request) => {
                let asked = match message.opts().get(OptionCode::RequestedIpAddress) {
                    Some(DhcpOption::RequestedIpAddress(a)) => *a,
                    _ => message.ciaddr(),
                };
                if state.naks < self.config.nak_requests || asked != self.config.address {
                    state.naks += 1;
                    Some(self.answer(&message, MessageType::Nak))
                } else {
                    Some(self.answer(&message, MessageType::Ack))
                }
            }
            _ => None,
        };
        state.pending.extend(reply);
        Ok(())
    }

    async fn recv(&mut self) -> std::io::Result<Vec<u8>> {
        let next = self.state().pending.pop_front();
        match next {
            Some(packet) => Ok(packet),
            // Nothing will arrive until the client sends again; the client's timeout fires.
            None => std::future::pending().await,
        }
    }
}
