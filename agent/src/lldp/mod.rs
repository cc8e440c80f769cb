//! LLDP: listening on every link at once for the switch's frames, the neighbour each one
//! describes, and optionally announcing ourselves so the switch answers at once (IEEE
//! 802.1AB fast start on a new neighbour) instead of on its 30 s timer.
//!
//! A listening session ([`listen`]) runs on a thread, bounded by a timeout, and ends early
//! once every link with carrier has heard from its neighbour. Frames go to the
//! [`LldpBoard`] in the agent's context, where inspection, `verify_wiring` and the
//! inventory read them.

pub mod frame;
pub mod neighbor;
pub mod socket;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rivet_protocol::inventory::LldpTlv;
use serde::Serialize;

use frame::{build_frame, own_lldpdu, parse_frame, Tlv};
use neighbor::Neighbor;
use socket::{LldpSocket, Received};

/// How often the session looks at carriers (to transmit and to decide on ending early).
const TICK: Duration = Duration::from_millis(200);

/// The latest LLDPDU heard on one link.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// MAC of the sender (the switch port).
    pub source: String,
    #[serde(skip)]
    pub tlvs: Vec<Tlv>,
    pub neighbor: Neighbor,
    #[serde(skip)]
    pub received: SystemTime,
    /// Number of the session that heard it.
    #[serde(skip)]
    pub session: u64,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// Every link with carrier heard from its neighbour.
    AllNeighbors,
    Timeout,
    /// No link could be listened on.
    NoLinks,
    /// [`LldpBoard::cancel`] was called (the agent is stopping).
    Cancelled,
}

/// How a session went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    pub links: Vec<String>,
    pub end: SessionEnd,
    pub took: Duration,
    /// Links that could not be listened on or sent on, with why.
    pub errors: Vec<String>,
}

#[derive(Debug, Default)]
struct BoardState {
    session: u64,
    listening: bool,
    last: Option<SessionSummary>,
    observations: BTreeMap<String, Observation>,
}

/// LLDP results shared by the agent's parts.
#[derive(Debug, Default)]
pub struct LldpBoard {
    state: Mutex<BoardState>,
    changed: Condvar,
    cancel: AtomicBool,
}

impl LldpBoard {
    fn lock(&self) -> MutexGuard<'_, BoardState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Starts a session unless one is running; returns its number.
    fn begin(&self) -> Option<u64> {
        let mut state = self.lock();
        if state.listening {
            return None;
        }
        state.listening = true;
        state.session += 1;
        Some(state.session)
    }

    /// Ends the running session, and any later one, at its next tick (within 200 ms): the
    /// agent is stopping.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    fn record(&self, link: &str, session: u64, frame: frame::Frame) {
        let observation = Observation {
            source: crate::net::interfaces::format_mac(&frame.source),
            neighbor: Neighbor::from_tlvs(&frame.tlvs),
            tlvs: frame.tlvs,
            received: SystemTime::now(),
            session,
        };
        self.lock()
            .observations
            .insert(link.to_string(), observation);
        self.changed.notify_all();
    }

    fn heard_in(&self, session: u64) -> BTreeSet<String> {
        self.lock()
            .observations
            .iter()
            .filter(|(_, o)| o.session == session)
            .map(|(link, _)| link.clone())
            .collect()
    }

    fn finish(&self, summary: SessionSummary) {
        let mut state = self.lock();
        state.listening = false;
        state.last = Some(summary);
        self.changed.notify_all();
    }

    /// Records a whole finished session at once: what a fake hears, or frames read by
    /// other means. Fails (returns false) while a session is running.
    pub fn record_session(&self, links: &[String], frames: Vec<(String, frame::Frame)>) -> bool {
        let Some(session) = self.begin() else {
            return false;
        };
        for (link, frame) in frames {
            self.record(&link, session, frame);
        }
        self.finish(SessionSummary {
            links: links.to_vec(),
            end: SessionEnd::Timeout,
            took: Duration::ZERO,
            errors: Vec::new(),
        });
        true
    }

    /// Whether a session is running now.
    pub fn listening(&self) -> bool {
        self.lock().listening
    }

    /// The last finished session.
    pub fn last_session(&self) -> Option<SessionSummary> {
        self.lock().last.clone()
    }

    /// Blocks until no session is running (at most `limit`); returns the last finished one.
    pub fn wait_idle(&self, limit: Duration) -> Option<SessionSummary> {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        while state.listening {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.changed.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        state.last.clone()
    }

    /// The latest frame of each link that heard one.
    pub fn observations(&self) -> BTreeMap<String, Observation> {
        self.lock().observations.clone()
    }

    /// Ironic's `lldp_raw`: for each of `links`, its latest frame's TLVs as `[type, "hex"]`,
    /// or `[]` when it heard none.
    pub fn raw(&self, links: &[String]) -> BTreeMap<String, Vec<LldpTlv>> {
        let state = self.lock();
        links
            .iter()
            .map(|link| {
                let tlvs = state
                    .observations
                    .get(link)
                    .map(|o| o.tlvs.iter().map(Tlv::to_raw).collect())
                    .unwrap_or_default();
                (link.clone(), tlvs)
            })
            .collect()
    }
}

/// What the session needs to know about links while it runs.
pub trait LinkState: Send + Sync {
    /// Whether the link has carrier now.
    fn carrier(&self, link: &str) -> bool;
    /// The link's MAC (the source of our own LLDPDU).
    fn mac(&self, link: &str) -> Option<[u8; 6]>;
}

/// Link state from the kernel (`SIOCGIFFLAGS` and `SIOCGIFHWADDR` in the caller's network
/// namespace; sysfs would show the namespace that mounted it).
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelLinks;

impl LinkState for KernelLinks {
    fn carrier(&self, link: &str) -> bool {
        socket::link_flags(link).is_ok_and(|flags| flags & libc::IFF_RUNNING != 0)
    }

    fn mac(&self, link: &str) -> Option<[u8; 6]> {
        socket::hardware_address(link).ok()
    }
}

/// How a session listens.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// The bound: rivet's default is a full 30 s switch interval plus margin.
    pub timeout: Duration,
    /// End as soon as every link with carrier heard from its neighbour.
    pub end_early: bool,
    /// Send our own LLDPDU on each link once it has carrier, and again when the link's
    /// neighbour is first heard, with this system name.
    pub transmit_as: Option<String>,
}

/// Listens on `links` until the timeout, or until every link with carrier has a neighbour
/// when `end_early`; records frames on `board`. Returns `None` when a session is already
/// running (its results will be on the board).
pub fn listen(
    links: &[String],
    options: &ListenOptions,
    board: &LldpBoard,
    state: &dyn LinkState,
) -> Option<SessionSummary> {
    let session = board.begin()?;
    let started = Instant::now();
    let mut errors = Vec::new();
    let mut sockets = Vec::new();
    for link in links {
        match LldpSocket::open(link) {
            Ok(socket) => sockets.push((link.clone(), socket)),
            Err(e) => errors.push(format!("{link}: listening for LLDP: {e}")),
        }
    }
    tracing::info!(
        links = ?sockets.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
        timeout = ?options.timeout,
        "listening for LLDP"
    );
    let mut sent: BTreeSet<String> = BTreeSet::new();
    let mut answered: BTreeSet<String> = BTreeSet::new();
    let mut buffer = vec![0u8; 9216];
    let end = loop {
        if sockets.is_empty() {
            break SessionEnd::NoLinks;
        }
        if board.cancel.load(Ordering::SeqCst) {
            break SessionEnd::Cancelled;
        }
        let carriers: BTreeSet<String> = sockets
            .iter()
            .filter(|(link, _)| state.carrier(link))
            .map(|(link, _)| link.clone())
            .collect();
        if let Some(name) = &options.transmit_as {
            let heard = board.heard_in(session);
            for (link, socket) in &sockets {
                let first = carriers.contains(link) && sent.insert(link.clone());
                // Once more when the neighbour is first heard: it is listening then, while
                // our first frame may have reached it before it was (a switch port or
                // lldpd still starting), which would leave it blind to us until our next
                // session.
                let answer = heard.contains(link) && answered.insert(link.clone());
                if first || answer {
                    if let Err(e) = transmit(socket, link, name, state) {
                        errors.push(format!("{link}: sending our LLDPDU: {e}"));
                    }
                }
            }
        }
        if options.end_early && !carriers.is_empty() {
            let heard = board.heard_in(session);
            if carriers.is_subset(&heard) {
                break SessionEnd::AllNeighbors;
            }
        }
        let left = options.timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            break SessionEnd::Timeout;
        }
        let mut polls: Vec<libc::pollfd> = sockets
            .iter()
            .map(|(_, s)| libc::pollfd {
                fd: s.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let wait = left.min(TICK).as_millis() as libc::c_int;
        // SAFETY: `polls` holds `polls.len()` valid pollfd entries.
        let ready = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, wait) };
        if ready <= 0 {
            continue;
        }
        for (poll, (link, socket)) in polls.iter().zip(&sockets) {
            if poll.revents == 0 {
                continue;
            }
            loop {
                match socket.receive(&mut buffer) {
                    Ok(Received::Frame(len)) => match parse_frame(&buffer[..len]) {
                        Ok(frame) => {
                            tracing::debug!(link = %link, "LLDP frame");
                            board.record(link, session, frame);
                        }
                        Err(e) => tracing::warn!(link = %link, "ignoring a bad LLDP frame: {e}"),
                    },
                    Ok(Received::Outgoing) => continue,
                    Ok(Received::Nothing) => break,
                    Err(e) => {
                        errors.push(format!("{link}: receiving: {e}"));
                        break;
                    }
                }
            }
        }
    };
    let summary = SessionSummary {
        links: links.to_vec(),
        end,
        took: started.elapsed(),
        errors,
    };
    let heard = board.heard_in(session);
    tracing::info!(
        end = ?summary.end,
        took = ?summary.took,
        heard = ?heard,
        "LLDP listening ended"
    );
    board.finish(summary.clone());
    Some(summary)
}

fn transmit(
    socket: &LldpSocket,
    link: &str,
    system_name: &str,
    state: &dyn LinkState,
) -> std::io::Result<()> {
    let mac = state
        .mac(link)
        .ok_or_else(|| std::io::Error::other("the link has no MAC address"))?;
    socket.send(&build_frame(mac, &own_lldpdu(mac, link, system_name)))
}

#[cfg(test)]
mod tests;
