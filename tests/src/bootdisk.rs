//! A tiny disk image that boots on BIOS: an MBR boot sector whose code writes
//! [`BOOTED_MARKER`] to the first serial port (COM1, I/O port 0x3F8) and halts, and a
//! partition table with one partition from 1 MiB to the end (`write_image` refuses
//! whole-disk images without partitions, as IPA does). What the
//! offline-plan e2e test deploys and boots again, so "the deployed disk boots" is checked
//! through the firmware's own boot path (no direct kernel boot).

/// The MBR disk identifier (`write_image` reports it as `0x5249564d`).
pub const DISK_ID: u32 = 0x5249_564D;

/// What the boot sector prints.
pub const BOOTED_MARKER: &str = "RIVET-DEPLOYED-DISK-BOOTED";

/// The x86 real-mode code at 0x7C00, followed by the message:
/// `cld; xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8;`
/// `next: lodsb; test al,al; jz halt; out dx,al; jmp next; halt: hlt; jmp halt`.
const CODE: [u8; 22] = [
    0xFC, // cld
    0x31, 0xC0, // xor ax, ax
    0x8E, 0xD8, // mov ds, ax
    0xBE, 0x00, 0x00, // mov si, msg (patched below)
    0xBA, 0xF8, 0x03, // mov dx, 0x3f8
    0xAC, // next: lodsb
    0x84, 0xC0, // test al, al
    0x74, 0x03, // jz halt
    0xEE, // out dx, al
    0xEB, 0xF8, // jmp next
    0xF4, // halt: hlt
    0xEB, 0xFD, // jmp halt
];

/// A raw disk image of `size` bytes (at least 512) holding the boot sector.
pub fn marker_disk(size: usize) -> Vec<u8> {
    let mut image = vec![0u8; size.max(512)];
    image[..CODE.len()].copy_from_slice(&CODE);
    let msg_address = 0x7C00u16 + CODE.len() as u16;
    image[6..8].copy_from_slice(&msg_address.to_le_bytes());
    let message = format!("\r\n{BOOTED_MARKER}\r\n");
    image[CODE.len()..CODE.len() + message.len()].copy_from_slice(message.as_bytes());
    image[440..444].copy_from_slice(&DISK_ID.to_le_bytes());
    let start = (1u32 << 20) / 512;
    let sectors = u32::try_from(image.len() / 512)
        .unwrap_or(u32::MAX)
        .saturating_sub(start);
    let mut entry = [0u8; 16];
    entry[0] = 0x80; // bootable
    entry[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]); // CHS: use the LBA fields
    entry[4] = 0x83; // Linux
    entry[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    entry[8..12].copy_from_slice(&start.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    image[446..462].copy_from_slice(&entry);
    image[510] = 0x55;
    image[511] = 0xAA;
    // Something recognisable past the first MiB, checked after the deploy.
    for (i, byte) in image.iter_mut().enumerate().skip(1 << 20) {
        *byte = (i % 251) as u8;
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_sector_is_signed_and_points_at_its_message() {
        let image = marker_disk(2 << 20);
        assert_eq!(&image[510..512], &[0x55, 0xAA]);
        let address = u16::from_le_bytes([image[6], image[7]]) as usize - 0x7C00;
        let text = String::from_utf8_lossy(&image[address..address + 40]);
        assert!(text.contains(BOOTED_MARKER), "{text}");
        assert!(
            address + 40 < 446,
            "the code and message stay before the partition table"
        );
        assert_eq!(image[(1 << 20) + 3], (((1usize << 20) + 3) % 251) as u8);
        assert_eq!(image[446 + 4], 0x83);
        assert_eq!(&image[446 + 8..446 + 16], &[0, 8, 0, 0, 0, 8, 0, 0]);
    }
}
