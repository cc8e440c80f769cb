//! The ATA security erase (IPA's hdparm sequence, spec §8.2 step 4): IDENTIFY, refuse a
//! frozen drive with the cause and the fix, unlock a drive left locked by an interrupted
//! erase, set the user password, ERASE PREPARE + ERASE UNIT (enhanced when supported) with
//! the timeout from the drive's own estimate, and check that security ends up disabled.
//! A failed erase unlocks and clears the password before reporting.

use std::time::Duration;

use super::ata::{
    security_payload, AtaCommand, AtaError, AtaIdentify, AtaPassThrough, EraseTime, Transfer,
    CMD_IDENTIFY_DEVICE, CMD_SECURITY_DISABLE_PASSWORD, CMD_SECURITY_ERASE_PREPARE,
    CMD_SECURITY_ERASE_UNIT, CMD_SECURITY_SET_PASSWORD, CMD_SECURITY_UNLOCK, PASSWORD,
};

/// Timeout of every security command except ERASE UNIT.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the security erase did not happen or failed.
#[derive(Debug, thiserror::Error)]
pub enum AtaEraseError {
    #[error("{0}")]
    Command(#[from] AtaError),
    #[error("{device} does not support the ATA security feature set")]
    NotSupported { device: String },
    #[error(
        "ATA security of {device} is frozen (SECURITY FREEZE LOCK, normally sent by the \
         firmware at boot), so the drive refuses to erase. To fix: suspend to RAM and resume \
         (echo mem > /sys/power/state) or hot-plug the drive to clear the freeze, or turn the \
         freeze off in the firmware setup, then clean again; or allow the overwrite fallback \
         with [deploy]continue_if_disk_secure_erase_fails"
    )]
    Frozen { device: String },
    #[error(
        "{device} is locked by an ATA password rivet does not know{}; unlock it with its user \
         or master password, then clean again",
        if *.count_expired { " and its unlock attempt counter has expired (power-cycle it first)" } else { "" }
    )]
    Locked { device: String, count_expired: bool },
    #[error("security erase of {device} failed: {cause}; {cleanup}")]
    EraseFailed {
        device: String,
        cause: AtaError,
        cleanup: String,
    },
    #[error("security of {device} is still enabled after the erase: {cleanup}")]
    StillEnabled { device: String, cleanup: String },
}

/// What a finished security erase did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtaErased {
    pub enhanced: bool,
    pub estimate: EraseTime,
    pub timeout: Duration,
}

/// IDENTIFY DEVICE.
pub fn identify(dev: &mut dyn AtaPassThrough) -> Result<AtaIdentify, AtaError> {
    let mut data = [0u8; 512];
    let mut cmd = AtaCommand::new(CMD_IDENTIFY_DEVICE);
    cmd.count = 1;
    dev.execute(&cmd, Transfer::In(&mut data), COMMAND_TIMEOUT)?;
    AtaIdentify::parse(&data)
}

fn with_password(
    dev: &mut dyn AtaPassThrough,
    command: u8,
    enhanced: bool,
    timeout: Duration,
) -> Result<(), AtaError> {
    let payload = security_payload(enhanced, &PASSWORD);
    let mut cmd = AtaCommand::new(command);
    cmd.count = 1;
    dev.execute(&cmd, Transfer::Out(&payload), timeout)
        .map(|_| ())
}

/// Unlocks with rivet's password and disables it; says what happened, for error messages.
fn clear_password(dev: &mut dyn AtaPassThrough) -> String {
    let unlock = with_password(dev, CMD_SECURITY_UNLOCK, false, COMMAND_TIMEOUT);
    let disable = with_password(dev, CMD_SECURITY_DISABLE_PASSWORD, false, COMMAND_TIMEOUT);
    match (unlock, disable) {
        (_, Ok(())) => "the password was cleared".to_string(),
        (Ok(()), Err(e)) => format!("unlocked, but clearing the password failed: {e}"),
        (Err(u), Err(d)) => {
            format!("unlocking ({u}) and clearing the password ({d}) failed too")
        }
    }
}

/// The whole security erase of `device` (for messages) of `size_bytes`. `started` is told
/// the mode, the drive's estimate and the timeout just before ERASE UNIT is sent.
pub fn security_erase(
    dev: &mut dyn AtaPassThrough,
    device: &str,
    size_bytes: u64,
    started: &mut dyn FnMut(&AtaErased),
) -> Result<AtaErased, AtaEraseError> {
    let mut id = identify(dev)?;
    let owned = || device.to_string();
    if !id.security.supported {
        return Err(AtaEraseError::NotSupported { device: owned() });
    }
    if id.security.frozen {
        return Err(AtaEraseError::Frozen { device: owned() });
    }
    if id.security.locked {
        tracing::warn!("{device} is locked; trying rivet's (and IPA's) erase password");
        if let Err(e) = with_password(dev, CMD_SECURITY_UNLOCK, false, COMMAND_TIMEOUT) {
            tracing::warn!("unlocking {device}: {e}");
        }
        id = identify(dev)?;
        if id.security.locked {
            return Err(AtaEraseError::Locked {
                device: owned(),
                count_expired: id.security.count_expired,
            });
        }
    }
    if !id.security.enabled {
        with_password(dev, CMD_SECURITY_SET_PASSWORD, false, COMMAND_TIMEOUT)?;
    }
    let enhanced = id.security.enhanced_erase_supported;
    let estimate = if enhanced {
        id.security.enhanced_erase_time
    } else {
        id.security.normal_erase_time
    };
    let erased = AtaErased {
        enhanced,
        estimate,
        timeout: estimate.timeout(size_bytes),
    };
    started(&erased);
    let erase = dev
        .execute(
            &AtaCommand::new(CMD_SECURITY_ERASE_PREPARE),
            Transfer::None,
            COMMAND_TIMEOUT,
        )
        .and_then(|_| with_password(dev, CMD_SECURITY_ERASE_UNIT, enhanced, erased.timeout));
    if let Err(cause) = erase {
        let cleanup = clear_password(dev);
        return Err(AtaEraseError::EraseFailed {
            device: owned(),
            cause,
            cleanup,
        });
    }
    let after = identify(dev)?;
    if after.security.enabled {
        let cleanup = clear_password(dev);
        return Err(AtaEraseError::StillEnabled {
            device: owned(),
            cleanup,
        });
    }
    Ok(erased)
}

#[cfg(test)]
#[path = "tests/ata_erase.rs"]
mod tests;
