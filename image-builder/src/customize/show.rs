//! `customize --show`: what an ISO carries, in plain text. Secrets in the settings (keys
//! naming a token, password or secret) are masked.

use std::io::{Read, Seek};

use anyhow::{Context, Result};
use rivet_protocol::config_area::bundle::{Header, HEADER_LEN};
use rivet_protocol::config_area::payload::Contents;

use super::{read_at, read_state};

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["token", "password", "secret"]
        .iter()
        .any(|word| key.contains(word))
}

fn masked_settings(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let shown: Vec<String> = line
            .split_whitespace()
            .map(|token| match token.split_once('=') {
                Some((key, _)) if is_secret(key) && !line.trim_start().starts_with('#') => {
                    format!("{key}=***")
                }
                _ => token.to_owned(),
            })
            .collect();
        out.push_str(&format!("    {}\n", shown.join(" ")));
    }
    out
}

/// `id (type)` of each link of a network_data.json.
fn links(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let links: Vec<String> = value["links"]
        .as_array()
        .map(|links| {
            links
                .iter()
                .map(|l| {
                    format!(
                        "{} ({})",
                        l["id"].as_str().unwrap_or("?"),
                        l["type"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if links.is_empty() {
        "no links".into()
    } else {
        links.join(", ")
    }
}

/// The report for the ISO `iso`, called `name`.
pub fn show(iso: &mut (impl Read + Seek), name: &str) -> Result<String> {
    let state = read_state(iso)?;
    let loc = &state.locator;
    let mut out = format!("{name}: rivet ISO, {} bytes\n", state.size);
    out.push_str(&format!(
        "config area: {} bytes at offset {}\n",
        loc.area.len, loc.area.offset
    ));
    out.push_str(&match &loc.signing_key_sha256 {
        Some(key) => format!(
            "bundles: signed only (ramdisk key sha256 {})\n",
            hex::encode(key)
        ),
        None => "bundles: signed or unsigned (the ramdisk has no signing key)\n".into(),
    });
    out.push_str(&format!("kernel arguments: {}\n", state.kargs));
    if state.kargs != state.default_kargs {
        out.push_str(&format!("  as built: {}\n", state.default_kargs));
    }
    out.push_str(&format!(
        "  {} bytes each in {} boot loader configs\n",
        loc.kargs_field_len - 1,
        loc.kargs_fields.len()
    ));

    let raw = read_at(iso, loc.area.offset, HEADER_LEN)?;
    let Some(header) = Header::decode(&raw).context("the config area")? else {
        out.push_str("bundle: none\n");
        return Ok(out);
    };
    header.check_fits(loc.area.len)?;
    let payload = read_at(
        iso,
        loc.area.offset + HEADER_LEN as u64,
        usize::try_from(header.payload_len).context("payload length")?,
    )?;
    let verified = header.verify(&payload, None).context("the bundle")?;
    let contents = Contents::from_tar(&payload).context("the bundle")?;
    out.push_str(&format!(
        "bundle: {} bytes, sha256 {}, {}; {} bytes of the area free\n",
        header.payload_len,
        hex::encode(header.payload_sha256),
        if verified.signed {
            "signed (the signature is checked by the agent)"
        } else {
            "unsigned"
        },
        loc.area.len - HEADER_LEN as u64 - header.payload_len
    ));
    if let Some(settings) = &contents.settings {
        out.push_str("  settings:\n");
        out.push_str(&masked_settings(settings));
    }
    if let Some(json) = &contents.network_data {
        out.push_str(&format!(
            "  network_data.json: {} bytes, links: {}\n",
            json.len(),
            links(json)
        ));
    }
    if let Some(ca) = &contents.ca {
        out.push_str(&format!(
            "  ca.pem: {} bytes, {} certificates\n",
            ca.len(),
            ca.matches("-----BEGIN CERTIFICATE-----").count()
        ));
    }
    if let Some(plan) = &contents.plan {
        let name = crate::plan::parse(plan)
            .map(|p| format!("plan {}, {} steps", p.name, p.steps.len()))
            .unwrap_or_else(|e| format!("unusable: {e}"));
        out.push_str(&format!("  plan.json: {} bytes, {name}\n", plan.len()));
    }
    for file in &contents.files {
        out.push_str(&format!(
            "  file {} ({:04o}, {} bytes)\n",
            file.path,
            file.mode,
            file.data.len()
        ));
    }
    Ok(out)
}
