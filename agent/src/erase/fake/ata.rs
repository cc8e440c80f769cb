//! A fake ATA drive on a [`FakeDisk`]: an IDENTIFY template whose word 128 follows the
//! security state machine of ACS-3 (passwords, lock, freeze, erase prepare and unit).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{lock, FakeDisk};
use crate::erase::ata::{
    AtaCommand, AtaError, AtaPassThrough, AtaRegisters, Transfer, CMD_IDENTIFY_DEVICE,
    CMD_SECURITY_DISABLE_PASSWORD, CMD_SECURITY_ERASE_PREPARE, CMD_SECURITY_ERASE_UNIT,
    CMD_SECURITY_SET_PASSWORD, CMD_SECURITY_UNLOCK, ERROR_ABRT,
};

/// The security state of a fake ATA drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtaSecurity {
    pub supported: bool,
    pub frozen: bool,
    pub enhanced: bool,
    pub password: Option<[u8; 32]>,
    pub locked: bool,
    pub prepared: bool,
    /// ERASE UNIT is aborted.
    pub erase_fails: bool,
}

/// A fake ATA drive: an IDENTIFY template with word 128 kept up to date, and the security
/// state machine of ACS-3 acting on a [`FakeDisk`].
#[derive(Debug, Clone)]
pub struct FakeAtaDrive {
    pub disk: FakeDisk,
    identify: Vec<u8>,
    state: Arc<Mutex<(AtaSecurity, Vec<u8>)>>,
}

impl FakeAtaDrive {
    pub fn new(disk: FakeDisk, identify: Vec<u8>, security: AtaSecurity) -> Self {
        FakeAtaDrive {
            disk,
            identify,
            state: Arc::new(Mutex::new((security, Vec::new()))),
        }
    }

    pub fn security(&self) -> AtaSecurity {
        lock(&self.state).0.clone()
    }

    /// Command opcodes received, in order.
    pub fn commands(&self) -> Vec<u8> {
        lock(&self.state).1.clone()
    }

    fn identify_page(&self, s: &AtaSecurity) -> Vec<u8> {
        let mut page = self.identify.clone();
        let mut w128 = u16::from_le_bytes([page[256], page[257]]) & !0x2F;
        let bits = [
            (s.supported, 0x01),
            (s.password.is_some(), 0x02),
            (s.locked, 0x04),
            (s.frozen, 0x08),
            (s.enhanced, 0x20),
        ];
        for (on, bit) in bits {
            if on {
                w128 |= bit;
            }
        }
        page[256..258].copy_from_slice(&w128.to_le_bytes());
        if page[510] == 0xA5 {
            let sum = page[..511].iter().fold(0u8, |a, &b| a.wrapping_add(b));
            page[511] = 0u8.wrapping_sub(sum);
        }
        page
    }
}

impl AtaPassThrough for FakeAtaDrive {
    fn execute(
        &mut self,
        cmd: &AtaCommand,
        data: Transfer<'_>,
        _timeout: Duration,
    ) -> Result<AtaRegisters, AtaError> {
        let mut guard = lock(&self.state);
        guard.1.push(cmd.command);
        let s = &mut guard.0;
        let abort = || AtaError::Aborted {
            what: format!("ATA command {:#04x}", cmd.command),
            status: 0x51,
            error: ERROR_ABRT,
        };
        let password = |data: &Transfer<'_>| -> Option<([u8; 32], u8)> {
            match data {
                Transfer::Out(block) if block.len() >= 34 => {
                    let mut p = [0u8; 32];
                    p.copy_from_slice(&block[2..34]);
                    Some((p, block[0]))
                }
                _ => None,
            }
        };
        let ok = Ok(AtaRegisters {
            status: 0x50,
            ..AtaRegisters::default()
        });
        if cmd.command != CMD_IDENTIFY_DEVICE && !s.supported {
            return Err(abort());
        }
        match cmd.command {
            CMD_IDENTIFY_DEVICE => {
                let page = self.identify_page(s);
                if let Transfer::In(buf) = data {
                    let n = buf.len().min(page.len());
                    buf[..n].copy_from_slice(&page[..n]);
                }
                ok
            }
            CMD_SECURITY_SET_PASSWORD => {
                if s.frozen || s.locked {
                    return Err(abort());
                }
                let (p, _) = password(&data).ok_or_else(abort)?;
                s.password = Some(p);
                ok
            }
            CMD_SECURITY_UNLOCK => {
                if s.frozen {
                    return Err(abort());
                }
                let (p, _) = password(&data).ok_or_else(abort)?;
                if s.password == Some(p) {
                    s.locked = false;
                    ok
                } else {
                    Err(abort())
                }
            }
            CMD_SECURITY_ERASE_PREPARE => {
                if s.frozen {
                    return Err(abort());
                }
                s.prepared = true;
                ok
            }
            CMD_SECURITY_ERASE_UNIT => {
                let prepared = std::mem::replace(&mut s.prepared, false);
                let (p, control) = password(&data).ok_or_else(abort)?;
                if s.frozen || !prepared || s.password != Some(p) || s.erase_fails {
                    return Err(abort());
                }
                if control & 0x2 != 0 && !s.enhanced {
                    return Err(abort());
                }
                self.disk.fill(0);
                s.password = None;
                s.locked = false;
                ok
            }
            CMD_SECURITY_DISABLE_PASSWORD => {
                let (p, _) = password(&data).ok_or_else(abort)?;
                if s.frozen || s.locked || s.password != Some(p) {
                    return Err(abort());
                }
                s.password = None;
                ok
            }
            _ => Err(abort()),
        }
    }
}
