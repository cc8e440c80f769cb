//! Talking to the BMC through the kernel's IPMI device (`/dev/ipmi0`), with the
//! `IPMICTL_SEND_COMMAND` / `IPMICTL_RECEIVE_MSG_TRUNC` ioctls instead of `ipmitool`.
//!
//! [`Ipmi`] is the seam: [`DevIpmi`] is the device, [`FakeIpmi`] answers from a table.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How long to wait for the BMC to answer one request.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of one IPMI request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpmiError {
    #[error("opening {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("IPMI request netfn {netfn:#04x} cmd {cmd:#04x} on {path}: {message}")]
    Request {
        path: PathBuf,
        netfn: u8,
        cmd: u8,
        message: String,
    },
    #[error("the BMC did not answer netfn {netfn:#04x} cmd {cmd:#04x} within {timeout:?}")]
    Timeout {
        netfn: u8,
        cmd: u8,
        timeout: Duration,
    },
    #[error("the BMC answered netfn {netfn:#04x} cmd {cmd:#04x} with completion code {code:#04x}")]
    Completion { netfn: u8, cmd: u8, code: u8 },
    #[error("no answer recorded for netfn {netfn:#04x} cmd {cmd:#04x} data {data:02x?} (fake)")]
    NoFakeAnswer { netfn: u8, cmd: u8, data: Vec<u8> },
}

/// Requests to the local BMC.
pub trait Ipmi: Send + Sync {
    /// Whether the machine has an IPMI device at all; without one the BMC fields are null,
    /// as IPA reports them.
    fn present(&self) -> bool;
    /// Sends one request and returns the response data after the completion code, which
    /// must be 0 (anything else is [`IpmiError::Completion`]).
    fn request(&self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError>;
}

/// The kernel's IPMI device: the first character device of `/dev/ipmi0`, `/dev/ipmi/0` and
/// `/dev/ipmidev/0`, opened on first use.
#[derive(Debug)]
pub struct DevIpmi {
    path: Option<PathBuf>,
    device: Mutex<Option<File>>,
    next_id: Mutex<i64>,
}

impl DevIpmi {
    /// Looks for the device under `root` (normally `/`).
    pub fn find(root: &Path) -> Self {
        use std::os::unix::fs::FileTypeExt;
        let path = ["dev/ipmi0", "dev/ipmi/0", "dev/ipmidev/0"]
            .iter()
            .map(|p| root.join(p))
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device()));
        DevIpmi {
            path,
            device: Mutex::new(None),
            next_id: Mutex::new(1),
        }
    }
}

impl Ipmi for DevIpmi {
    fn present(&self) -> bool {
        self.path.is_some()
    }

    fn request(&self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        let Some(path) = &self.path else {
            return Err(IpmiError::Open {
                path: PathBuf::from("/dev/ipmi0"),
                message: "no IPMI device".to_string(),
            });
        };
        let mut device = lock(&self.device);
        if device.is_none() {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| IpmiError::Open {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            *device = Some(file);
        }
        let Some(file) = device.as_ref() else {
            return Err(IpmiError::Open {
                path: path.clone(),
                message: "the device was not kept open".to_string(),
            });
        };
        let id = {
            let mut next = lock(&self.next_id);
            *next += 1;
            *next
        };
        let response =
            ioctl::exchange(file, id, netfn, cmd, data, RESPONSE_TIMEOUT).map_err(|e| match e {
                ioctl::ExchangeError::Timeout => IpmiError::Timeout {
                    netfn,
                    cmd,
                    timeout: RESPONSE_TIMEOUT,
                },
                ioctl::ExchangeError::Os(message) => IpmiError::Request {
                    path: path.clone(),
                    netfn,
                    cmd,
                    message,
                },
            })?;
        completion(netfn, cmd, response)
    }
}

/// Splits off the completion code; non-zero is an error.
fn completion(netfn: u8, cmd: u8, response: Vec<u8>) -> Result<Vec<u8>, IpmiError> {
    match response.split_first() {
        Some((0, rest)) => Ok(rest.to_vec()),
        Some((code, _)) => Err(IpmiError::Completion {
            netfn,
            cmd,
            code: *code,
        }),
        None => Err(IpmiError::Completion {
            netfn,
            cmd,
            code: 0xFF,
        }),
    }
}

/// Answers from a table of (netfn, cmd, request data) -> response bytes starting with the
/// completion code. A request not in the table is an error.
#[derive(Debug, Default)]
pub struct FakeIpmi {
    pub present: bool,
    pub answers: HashMap<(u8, u8, Vec<u8>), Vec<u8>>,
    /// Every request, in order.
    pub requests: Mutex<Vec<(u8, u8, Vec<u8>)>>,
}

impl FakeIpmi {
    pub fn answer(&mut self, netfn: u8, cmd: u8, data: &[u8], response: &[u8]) {
        self.answers
            .insert((netfn, cmd, data.to_vec()), response.to_vec());
    }
}

impl Ipmi for FakeIpmi {
    fn present(&self) -> bool {
        self.present
    }

    fn request(&self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        lock(&self.requests).push((netfn, cmd, data.to_vec()));
        match self.answers.get(&(netfn, cmd, data.to_vec())) {
            Some(response) => completion(netfn, cmd, response.clone()),
            None => Err(IpmiError::NoFakeAnswer {
                netfn,
                cmd,
                data: data.to_vec(),
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

/// The ioctls of `<linux/ipmi.h>`.
mod ioctl {
    use super::*;

    /// `IPMI_SYSTEM_INTERFACE_ADDR_TYPE`: talk to the local BMC.
    const SYSTEM_INTERFACE_ADDR_TYPE: libc::c_int = 0x0c;
    /// `IPMI_BMC_CHANNEL`.
    const BMC_CHANNEL: libc::c_short = 0xf;
    /// `IPMI_RESPONSE_RECV_TYPE`.
    const RESPONSE_RECV_TYPE: libc::c_int = 1;
    /// `IPMI_MAX_ADDR_SIZE` is 32 bytes; the receive buffer must hold any address.
    const MAX_ADDR_SIZE: usize = 32;
    /// Largest IPMI message.
    const MAX_MSG: usize = 272;

    #[repr(C)]
    struct SystemInterfaceAddr {
        addr_type: libc::c_int,
        channel: libc::c_short,
        lun: libc::c_uchar,
    }

    #[repr(C)]
    struct Msg {
        netfn: libc::c_uchar,
        cmd: libc::c_uchar,
        data_len: libc::c_ushort,
        data: *mut libc::c_uchar,
    }

    #[repr(C)]
    struct Req {
        addr: *mut libc::c_uchar,
        addr_len: libc::c_uint,
        msgid: libc::c_long,
        msg: Msg,
    }

    #[repr(C)]
    struct Recv {
        recv_type: libc::c_int,
        addr: *mut libc::c_uchar,
        addr_len: libc::c_uint,
        msgid: libc::c_long,
        msg: Msg,
    }

    const SEND_COMMAND: libc::c_ulong =
        nix::request_code_read!(b'i', 13, std::mem::size_of::<Req>()) as libc::c_ulong;
    const RECEIVE_MSG_TRUNC: libc::c_ulong =
        nix::request_code_readwrite!(b'i', 11, std::mem::size_of::<Recv>()) as libc::c_ulong;

    pub(super) enum ExchangeError {
        Timeout,
        Os(String),
    }

    /// Sends one request and waits for the response with the same id. Returns the response
    /// bytes (completion code first).
    pub(super) fn exchange(
        file: &File,
        id: i64,
        netfn: u8,
        cmd: u8,
        data: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ExchangeError> {
        let fd = file.as_raw_fd();
        let mut addr = SystemInterfaceAddr {
            addr_type: SYSTEM_INTERFACE_ADDR_TYPE,
            channel: BMC_CHANNEL,
            lun: 0,
        };
        let mut payload = data.to_vec();
        let mut request = Req {
            addr: (&mut addr as *mut SystemInterfaceAddr).cast(),
            addr_len: std::mem::size_of::<SystemInterfaceAddr>() as libc::c_uint,
            msgid: id as libc::c_long,
            msg: Msg {
                netfn,
                cmd,
                data_len: payload.len() as libc::c_ushort,
                data: payload.as_mut_ptr(),
            },
        };
        // SAFETY: `request` points at `addr` and `payload`, which outlive the call; the
        // kernel copies both before returning.
        let rc = unsafe { libc::ioctl(fd, SEND_COMMAND as _, &mut request as *mut Req) };
        if rc < 0 {
            return Err(ExchangeError::Os(format!(
                "IPMICTL_SEND_COMMAND: {}",
                std::io::Error::last_os_error()
            )));
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(ExchangeError::Timeout);
            }
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, the count says one.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as libc::c_int) };
            if ready < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ExchangeError::Os(format!("poll: {error}")));
            }
            if ready == 0 {
                return Err(ExchangeError::Timeout);
            }
            let mut addr_buf = [0u8; MAX_ADDR_SIZE];
            let mut data_buf = [0u8; MAX_MSG];
            let mut recv = Recv {
                recv_type: 0,
                addr: addr_buf.as_mut_ptr(),
                addr_len: MAX_ADDR_SIZE as libc::c_uint,
                msgid: 0,
                msg: Msg {
                    netfn: 0,
                    cmd: 0,
                    data_len: MAX_MSG as libc::c_ushort,
                    data: data_buf.as_mut_ptr(),
                },
            };
            // SAFETY: `recv` points at buffers of the sizes it declares, which outlive the
            // call; the kernel writes at most those sizes (truncating longer messages).
            let rc = unsafe { libc::ioctl(fd, RECEIVE_MSG_TRUNC as _, &mut recv as *mut Recv) };
            if rc < 0 {
                let error = std::io::Error::last_os_error();
                // EMSGSIZE: truncated, the data we got is still the answer.
                if error.raw_os_error() != Some(libc::EMSGSIZE) {
                    return Err(ExchangeError::Os(format!(
                        "IPMICTL_RECEIVE_MSG_TRUNC: {error}"
                    )));
                }
            }
            if recv.recv_type != RESPONSE_RECV_TYPE || recv.msgid != id as libc::c_long {
                continue;
            }
            let len = (recv.msg.data_len as usize).min(MAX_MSG);
            return Ok(data_buf[..len].to_vec());
        }
    }
}
