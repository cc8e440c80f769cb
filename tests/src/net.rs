//! Loopback addresses for test servers.

use std::net::{Ipv4Addr, TcpListener};

use anyhow::{Context, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it, the probe socket
/// is closed, and the caller hands the number to a process that binds it next.
pub fn free_loopback_port() -> Result<u16> {
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(probe
        .local_addr()
        .context("reading the address of a socket bound to 127.0.0.1:0")?
        .port())
}
