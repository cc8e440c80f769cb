//! LLDP frames (IEEE 802.1AB): the Ethernet header, the TLV list, and the raw form Ironic
//! stores (`[[type, "hex"], ...]`, spec §7.2). Pure functions over bytes.

use rivet_protocol::inventory::LldpTlv;

/// The LLDP ethertype.
pub const ETHERTYPE: u16 = 0x88cc;
/// The nearest-bridge group address every LLDP agent sends to and listens on.
pub const MULTICAST: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
const ETHERTYPE_VLAN: u16 = 0x8100;
/// A TLV value is at most 511 bytes (9-bit length).
pub const MAX_TLV_LEN: usize = 511;

pub const TLV_END: u8 = 0;
pub const TLV_CHASSIS_ID: u8 = 1;
pub const TLV_PORT_ID: u8 = 2;
pub const TLV_TTL: u8 = 3;
pub const TLV_PORT_DESCRIPTION: u8 = 4;
pub const TLV_SYSTEM_NAME: u8 = 5;
pub const TLV_SYSTEM_DESCRIPTION: u8 = 6;
pub const TLV_CAPABILITIES: u8 = 7;
pub const TLV_MANAGEMENT_ADDRESS: u8 = 8;
pub const TLV_ORGANIZATIONAL: u8 = 127;

/// One TLV: the 7-bit type and the value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    pub kind: u8,
    pub value: Vec<u8>,
}

impl Tlv {
    pub fn new(kind: u8, value: impl Into<Vec<u8>>) -> Self {
        Tlv {
            kind,
            value: value.into(),
        }
    }

    /// Ironic's raw form: the type and the value as lowercase hex.
    pub fn to_raw(&self) -> LldpTlv {
        LldpTlv(self.kind, hex::encode(&self.value))
    }
}

/// Why a frame is not LLDP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is shorter than an Ethernet header")]
    Short(usize),
    #[error("ethertype {0:#06x} is not LLDP")]
    NotLldp(u16),
    #[error("TLV type {kind} at byte {offset} declares {declared} bytes, only {left} remain")]
    Truncated {
        kind: u8,
        offset: usize,
        declared: usize,
        left: usize,
    },
}

/// An LLDP frame: who sent it and its TLVs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub source: [u8; 6],
    pub tlvs: Vec<Tlv>,
}

/// Parses an Ethernet frame (with an optional 802.1Q tag) carrying an LLDPDU.
pub fn parse_frame(bytes: &[u8]) -> Result<Frame, FrameError> {
    if bytes.len() < 14 {
        return Err(FrameError::Short(bytes.len()));
    }
    let mut source = [0u8; 6];
    source.copy_from_slice(&bytes[6..12]);
    let mut offset = 12;
    let mut ethertype = u16::from_be_bytes([bytes[12], bytes[13]]);
    if ethertype == ETHERTYPE_VLAN && bytes.len() >= 18 {
        offset = 16;
        ethertype = u16::from_be_bytes([bytes[16], bytes[17]]);
    }
    if ethertype != ETHERTYPE {
        return Err(FrameError::NotLldp(ethertype));
    }
    Ok(Frame {
        source,
        tlvs: parse_tlvs(&bytes[offset + 2..])?,
    })
}

/// Splits an LLDPDU into TLVs: a 16-bit header (type in the top 7 bits, length in the low
/// 9), then the value. Stops after the End TLV, so the padding of short frames is not read
/// as more End TLVs. A value running past the data is an error.
pub fn parse_tlvs(mut data: &[u8]) -> Result<Vec<Tlv>, FrameError> {
    let total = data.len();
    let mut tlvs = Vec::new();
    while data.len() >= 2 {
        let header = u16::from_be_bytes([data[0], data[1]]);
        let kind = (header >> 9) as u8;
        let len = (header & 0x01ff) as usize;
        if data.len() - 2 < len {
            return Err(FrameError::Truncated {
                kind,
                offset: total - data.len(),
                declared: len,
                left: data.len() - 2,
            });
        }
        tlvs.push(Tlv::new(kind, &data[2..2 + len]));
        data = &data[2 + len..];
        if kind == TLV_END {
            break;
        }
    }
    Ok(tlvs)
}

/// Encodes one TLV; values longer than 511 bytes are cut to 511.
pub fn encode_tlv(tlv: &Tlv, out: &mut Vec<u8>) {
    let len = tlv.value.len().min(MAX_TLV_LEN);
    let header = (u16::from(tlv.kind & 0x7f) << 9) | len as u16;
    out.extend_from_slice(&header.to_be_bytes());
    out.extend_from_slice(&tlv.value[..len]);
}

/// A frame from `source` to the nearest-bridge address with `tlvs` (an End TLV is added
/// when missing), padded to the 60-byte Ethernet minimum.
pub fn build_frame(source: [u8; 6], tlvs: &[Tlv]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MULTICAST);
    out.extend_from_slice(&source);
    out.extend_from_slice(&ETHERTYPE.to_be_bytes());
    for tlv in tlvs {
        encode_tlv(tlv, &mut out);
    }
    if tlvs.last().map(|t| t.kind) != Some(TLV_END) {
        encode_tlv(&Tlv::new(TLV_END, Vec::new()), &mut out);
    }
    if out.len() < 60 {
        out.resize(60, 0);
    }
    out
}

/// Our own LLDPDU: chassis id = the interface's MAC, port id = the interface name,
/// TTL 120 s, port description, system name (the hostname) and description, and the
/// LLDP-MED capabilities of an endpoint (ANSI/TIA-1057): switches answer a newly seen MED
/// endpoint at once with their fast-start frames instead of on their 30 s timer.
pub fn own_lldpdu(mac: [u8; 6], interface: &str, hostname: &str) -> Vec<Tlv> {
    let mut chassis = vec![4u8];
    chassis.extend_from_slice(&mac);
    let mut port = vec![5u8];
    port.extend_from_slice(interface.as_bytes());
    vec![
        Tlv::new(TLV_CHASSIS_ID, chassis),
        Tlv::new(TLV_PORT_ID, port),
        Tlv::new(TLV_TTL, 120u16.to_be_bytes().to_vec()),
        Tlv::new(TLV_PORT_DESCRIPTION, interface.as_bytes().to_vec()),
        Tlv::new(TLV_SYSTEM_NAME, hostname.as_bytes().to_vec()),
        Tlv::new(
            TLV_SYSTEM_DESCRIPTION,
            format!(
                "rivet-agent {} (bare-metal deploy ramdisk)",
                env!("CARGO_PKG_VERSION")
            )
            .into_bytes(),
        ),
        // Station only, enabled.
        Tlv::new(TLV_CAPABILITIES, vec![0x00, 0x80, 0x00, 0x80]),
        // TIA OUI 00-12-BB, subtype 1 (LLDP-MED capabilities): supports the capabilities
        // TLV only; device type 1 (Endpoint Class I).
        Tlv::new(
            TLV_ORGANIZATIONAL,
            vec![0x00, 0x12, 0xbb, 0x01, 0x00, 0x01, 0x01],
        ),
        Tlv::new(TLV_END, Vec::new()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_header_is_7_bit_type_and_9_bit_length() {
        // (127 << 9) | 300 = 0xFF2C.
        let value = vec![0xab; 300];
        let mut out = Vec::new();
        encode_tlv(&Tlv::new(127, value.clone()), &mut out);
        assert_eq!(&out[..2], &[0xFF, 0x2C]);
        let parsed = parse_tlvs(&out).unwrap();
        assert_eq!(parsed, vec![Tlv::new(127, value)]);
    }

    #[test]
    fn build_and_parse_round_trip_with_padding() {
        let frame = build_frame([2, 0, 0, 0, 0, 1], &[Tlv::new(TLV_TTL, vec![0, 120])]);
        assert_eq!(frame.len(), 60, "padded to the Ethernet minimum");
        let parsed = parse_frame(&frame).unwrap();
        assert_eq!(parsed.source, [2, 0, 0, 0, 0, 1]);
        assert_eq!(
            parsed.tlvs,
            vec![Tlv::new(TLV_TTL, vec![0, 120]), Tlv::new(TLV_END, vec![])],
            "the padding after End is not read as TLVs"
        );
        assert_eq!(parsed.tlvs[0].to_raw(), LldpTlv(3, "0078".to_string()));
    }

    #[test]
    fn own_lldpdu_announces_an_lldp_med_endpoint() {
        let tlvs = own_lldpdu([2, 0, 0, 0, 0, 1], "eth0", "node-1");
        assert_eq!(tlvs.first().map(|t| t.kind), Some(TLV_CHASSIS_ID));
        assert_eq!(tlvs.last(), Some(&Tlv::new(TLV_END, vec![])));
        let med = tlvs
            .iter()
            .find(|t| t.kind == TLV_ORGANIZATIONAL)
            .expect("an organizational TLV");
        // TIA OUI, subtype 1, capabilities bit 0, device type 1.
        assert_eq!(med.value, vec![0x00, 0x12, 0xbb, 0x01, 0x00, 0x01, 0x01]);
    }

    #[test]
    fn malformed_frames() {
        assert_eq!(parse_frame(&[0; 10]), Err(FrameError::Short(10)));
        let mut ipv4 = vec![0u8; 20];
        ipv4[12] = 0x08;
        assert_eq!(parse_frame(&ipv4), Err(FrameError::NotLldp(0x0800)));
        let truncated = [0x02, 0x07, 0x05, b'e'];
        assert_eq!(
            parse_tlvs(&truncated),
            Err(FrameError::Truncated {
                kind: 1,
                offset: 0,
                declared: 7,
                left: 2
            })
        );
    }

    #[test]
    fn vlan_tagged_frames_are_read() {
        let mut frame = build_frame([2, 0, 0, 0, 0, 1], &[]);
        frame.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
        assert_eq!(parse_frame(&frame).unwrap().tlvs, vec![Tlv::new(0, vec![])]);
    }
}
