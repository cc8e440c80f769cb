//! The `dmi-decode` collector: BIOS, processors and memory from the SMBIOS tables, in the
//! shape IPA builds from `dmidecode -t bios -t processor -t memory` output: `{"bios": {...},
//! "cpu": [{...}], "memory": {..., "Number Of Devices": n, "devices": [{...}]}}`, keyed by
//! dmidecode's labels and with its value formats ("2400 MT/s", "16 GB", "Not Specified").
//!
//! Only the fields rivet decodes are present; IPA's parse of dmidecode text has more.

use serde_json::{json, Map, Value};

use super::smbios::{memory_type_name, MemorySize, Smbios, Structure};

pub fn collect(smbios: &Smbios) -> Value {
    let bios = smbios.first(0).map(bios).unwrap_or_else(|| json!({}));
    let cpu: Vec<Value> = smbios.of_kind(4).map(processor).collect();
    let mut memory = Map::new();
    let arrays = smbios.memory_arrays();
    if let Some(first) = arrays.first() {
        memory.insert(
            "Maximum Capacity".into(),
            json!(first
                .max_capacity_kb
                .map_or_else(|| "Unknown".to_string(), |kb| size_text(kb * 1024))),
        );
        memory.insert(
            "Number Of Devices".into(),
            json!(arrays.iter().map(|a| u64::from(a.devices)).sum::<u64>()),
        );
    }
    let devices: Vec<Value> = smbios.of_kind(17).map(memory_device).collect();
    memory.insert("devices".into(), Value::Array(devices));
    json!({"bios": bios, "cpu": cpu, "memory": memory})
}

fn handle_line(s: &Structure) -> String {
    format!(
        "Handle {:#06x}, DMI type {}, {} bytes",
        s.handle,
        s.kind,
        s.data.len()
    )
}

/// dmidecode prints "Not Specified" for a missing string.
fn text(s: &Structure, offset: usize) -> Value {
    json!(s
        .string(offset)
        .filter(|v| !v.is_empty())
        .unwrap_or("Not Specified"))
}

fn bios(s: &Structure) -> Value {
    let mut out = Map::new();
    out.insert("Handle".into(), json!(handle_line(s)));
    out.insert("Vendor".into(), text(s, 0x04));
    out.insert("Version".into(), text(s, 0x05));
    out.insert("Release Date".into(), text(s, 0x08));
    if let (Some(major), Some(minor)) = (s.byte(0x14), s.byte(0x15)) {
        if major != 0xFF {
            out.insert("BIOS Revision".into(), json!(format!("{major}.{minor}")));
        }
    }
    Value::Object(out)
}

fn processor(s: &Structure) -> Value {
    let mut out = Map::new();
    out.insert("Handle".into(), json!(handle_line(s)));
    out.insert("Socket Designation".into(), text(s, 0x04));
    out.insert("Manufacturer".into(), text(s, 0x07));
    out.insert("Version".into(), text(s, 0x10));
    let mhz = |offset| {
        json!(s
            .word(offset)
            .filter(|v| *v != 0)
            .map_or_else(|| "Unknown".to_string(), |v| format!("{v} MHz")))
    };
    out.insert("Max Speed".into(), mhz(0x14));
    out.insert("Current Speed".into(), mhz(0x16));
    let populated = s.byte(0x18).is_some_and(|status| status & 0x40 != 0);
    out.insert(
        "Status".into(),
        json!(if populated {
            "Populated"
        } else {
            "Unpopulated"
        }),
    );
    for (label, offset) in [
        ("Serial Number", 0x20),
        ("Asset Tag", 0x21),
        ("Part Number", 0x22),
    ] {
        if s.data.len() > offset {
            out.insert(label.into(), text(s, offset));
        }
    }
    for (label, short, long) in [
        ("Core Count", 0x23, 0x2A),
        ("Core Enabled", 0x24, 0x2C),
        ("Thread Count", 0x25, 0x2E),
    ] {
        let value = match s.byte(short) {
            Some(0xFF) => s.word(long).map(u32::from),
            Some(0) | None => None,
            Some(n) => Some(u32::from(n)),
        };
        if let Some(value) = value {
            out.insert(label.into(), json!(value.to_string()));
        }
    }
    Value::Object(out)
}

fn memory_device(s: &Structure) -> Value {
    let device = Smbios {
        version: None,
        structures: vec![s.clone()],
    }
    .memory_devices()
    .remove(0);
    let mut out = Map::new();
    out.insert("Handle".into(), json!(handle_line(s)));
    out.insert(
        "Array Handle".into(),
        json!(format!("{:#06x}", device.array_handle)),
    );
    out.insert(
        "Size".into(),
        json!(match device.size {
            MemorySize::NotInstalled => "No Module Installed".to_string(),
            MemorySize::Unknown => "Unknown".to_string(),
            MemorySize::Bytes(bytes) => size_text(bytes),
        }),
    );
    out.insert("Locator".into(), text(s, 0x10));
    out.insert("Bank Locator".into(), text(s, 0x11));
    out.insert("Type".into(), json!(memory_type_name(device.memory_type)));
    let speed = |value: Option<u32>| {
        json!(value.map_or_else(|| "Unknown".to_string(), |v| format!("{v} MT/s")))
    };
    out.insert("Speed".into(), speed(device.speed_mts));
    out.insert("Manufacturer".into(), text(s, 0x17));
    out.insert("Serial Number".into(), text(s, 0x18));
    out.insert("Asset Tag".into(), text(s, 0x19));
    out.insert("Part Number".into(), text(s, 0x1A));
    if s.data.len() > 0x20 {
        out.insert(
            "Configured Memory Speed".into(),
            speed(device.configured_speed_mts),
        );
    }
    Value::Object(out)
}

/// dmidecode's sizes: the largest unit that divides evenly ("16 GB", "512 MB", "640 kB").
fn size_text(bytes: u64) -> String {
    const UNITS: [(&str, u64); 5] = [
        ("TB", 1 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("kB", 1 << 10),
        ("bytes", 1),
    ];
    for (unit, size) in UNITS {
        // Units are powers of two: divisible means enough trailing zero bits.
        if bytes >= size && bytes.trailing_zeros() >= size.trailing_zeros() {
            return format!("{} {unit}", bytes / size);
        }
    }
    "0 bytes".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_dmidecode_prints_them() {
        assert_eq!(size_text(16 << 30), "16 GB");
        assert_eq!(size_text(1536 << 20), "1536 MB");
        assert_eq!(size_text(640 << 10), "640 kB");
        assert_eq!(size_text(0), "0 bytes");
    }
}
