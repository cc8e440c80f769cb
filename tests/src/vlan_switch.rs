//! A VLAN access port in user space, for VMs whose NICs carry only tagged traffic.
//!
//! The kernels the tests run on may lack 8021q and bridge VLAN filtering (the CI machines
//! do), so the namespace cannot untag frames itself. The switch does: its trunk ports are UDP
//! sockets on the namespace's loopback, one per VM NIC (QEMU's `-netdev socket,udp=`, one
//! frame per datagram, see [`crate::vm::VmBuilder::nic_udp`]); its access port is one of the
//! namespace's tap devices on the bridge.
//!
//! - trunk -> access: frames tagged with the switch's VLAN lose the tag; every other frame
//!   (untagged, another VLAN) is dropped and counted.
//! - access -> trunks: frames get the tag and are sent to every trunk port (a hub: an
//!   active-backup bond drops what arrives on its backup port).
//!
//! ```text
//!  VM eth0 ─ UDP 127.0.0.1:40000 <-> :41000 ─┐
//!                                            ├─ switch ── tap0 ── br0 (untagged)
//!  VM eth1 ─ UDP 127.0.0.1:40001 <-> :41001 ─┘   (VLAN <id> tag removed/added)
//! ```

use std::fs::File;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, ensure, Context, Result};
use nix::sched::{setns, CloneFlags};

use crate::netns::TestNet;

/// QEMU's end of trunk port `i` is UDP port `QEMU_PORT_BASE + i`, the switch's
/// `SWITCH_PORT_BASE + i` (nothing else uses UDP in a test namespace).
pub const QEMU_PORT_BASE: u16 = 40000;
pub const SWITCH_PORT_BASE: u16 = 41000;
const TPID: [u8; 2] = [0x81, 0x00];
const MAX_FRAME: usize = 65536;
/// How often the loop looks at the stop flag.
const POLL_MS: i32 = 200;

/// Frames seen, for failure messages.
#[derive(Debug, Default)]
pub struct Counters {
    pub to_access: AtomicU64,
    pub to_trunks: AtomicU64,
    pub dropped: AtomicU64,
}

/// A running switch; dropping it stops it.
pub struct VlanSwitch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<Counters>,
    trunks: usize,
}

impl VlanSwitch {
    /// Starts a switch in `net` between `trunks` UDP trunk ports and the tap `access` (one
    /// of `net`'s taps, on its bridge) for VLAN `vlan`.
    pub fn start(net: &TestNet, access: &str, vlan: u16, trunks: usize) -> Result<VlanSwitch> {
        ensure!((1..=4094).contains(&vlan), "VLAN id {vlan} out of 1-4094");
        ensure!(
            net.taps().iter().any(|t| t == access),
            "{access} is not one of namespace {}'s taps",
            net.name()
        );
        let path = Path::new("/run/netns").join(net.name());
        let handle = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let access = access.to_owned();
        let thread = {
            let stop = stop.clone();
            let counters = counters.clone();
            std::thread::spawn(move || {
                let setup = setns(&handle, CloneFlags::CLONE_NEWNET)
                    .context("entering the namespace")
                    .and_then(|()| Ports::open(&access, trunks));
                match setup {
                    Ok(ports) => {
                        let _ = ready_tx.send(Ok(()));
                        ports.run(vlan, &stop, &counters);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
        };
        ready_rx
            .recv()
            .context("the switch thread ended before it was ready")??;
        Ok(VlanSwitch {
            stop,
            thread: Some(thread),
            counters,
            trunks,
        })
    }

    /// `(qemu_port, switch_port)` of trunk `i`, for [`crate::vm::VmBuilder::nic_udp`].
    pub fn trunk(&self, i: usize) -> (u16, u16) {
        assert!(i < self.trunks, "trunk {i} of {}", self.trunks);
        (QEMU_PORT_BASE + i as u16, SWITCH_PORT_BASE + i as u16)
    }

    /// One line for failure messages.
    pub fn summary(&self) -> String {
        format!(
            "VLAN switch: {} frames to the bridge, {} to the VM, {} dropped (untagged or another VLAN)",
            self.counters.to_access.load(Ordering::Relaxed),
            self.counters.to_trunks.load(Ordering::Relaxed),
            self.counters.dropped.load(Ordering::Relaxed)
        )
    }
}

impl Drop for VlanSwitch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Ports {
    tap: File,
    trunks: Vec<UdpSocket>,
}

impl Ports {
    fn open(access: &str, trunks: usize) -> Result<Ports> {
        let tap = open_tap(access)?;
        let mut sockets = Vec::new();
        for i in 0..trunks {
            let port = SWITCH_PORT_BASE + i as u16;
            let socket = UdpSocket::bind(("127.0.0.1", port))
                .with_context(|| format!("binding UDP port {port}"))?;
            socket
                .connect(("127.0.0.1", QEMU_PORT_BASE + i as u16))
                .context("connecting a trunk socket")?;
            sockets.push(socket);
        }
        Ok(Ports {
            tap,
            trunks: sockets,
        })
    }

    fn run(&self, vlan: u16, stop: &AtomicBool, counters: &Counters) {
        let mut fds: Vec<libc::pollfd> = std::iter::once(self.tap.as_raw_fd())
            .chain(self.trunks.iter().map(AsRawFd::as_raw_fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut buf = vec![0u8; MAX_FRAME];
        let tag = [TPID[0], TPID[1], (vlan >> 8) as u8, (vlan & 0xff) as u8];
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_MS) };
            if n <= 0 {
                continue;
            }
            if fds[0].revents & libc::POLLIN != 0 {
                // SAFETY: reads into `buf`, which is valid for `buf.len()` bytes.
                let got =
                    unsafe { libc::read(self.tap.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if got >= 14 {
                    let frame = &buf[..got as usize];
                    let tagged = [&frame[..12], &tag[..], &frame[12..]].concat();
                    for trunk in &self.trunks {
                        // QEMU may not be listening yet (or any more): such frames are lost,
                        // as on a cable without a link.
                        let _ = trunk.send(&tagged);
                    }
                    counters.to_trunks.fetch_add(1, Ordering::Relaxed);
                }
            }
            for (i, trunk) in self.trunks.iter().enumerate() {
                if fds[i + 1].revents & libc::POLLIN == 0 {
                    continue;
                }
                let Ok(got) = trunk.recv(&mut buf) else {
                    continue;
                };
                let frame = &buf[..got];
                let ours = got >= 18
                    && frame[12..14] == TPID
                    && u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff == vlan;
                if !ours {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let untagged = [&frame[..12], &frame[16..]].concat();
                // SAFETY: writes `untagged`, valid for its length.
                unsafe {
                    libc::write(
                        self.tap.as_raw_fd(),
                        untagged.as_ptr().cast(),
                        untagged.len(),
                    )
                };
                counters.to_access.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Opens the existing tap device `name` of the current network namespace (no packet
/// information header).
fn open_tap(name: &str) -> Result<File> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        pad: [u8; 22],
    }
    ensure!(name.len() < libc::IFNAMSIZ, "tap name {name} is too long");
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: a plain open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        bail!("opening /dev/net/tun: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: TUNSETIFF reads and writes an ifreq, which `req` is laid out as.
    let rc = unsafe { libc::ioctl(owned.as_raw_fd(), TUNSETIFF, &mut req) };
    if rc < 0 {
        bail!(
            "attaching to tap {name} (TUNSETIFF): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(File::from(owned))
}
