//! customize on small ISOs made by the real xorriso with the builder's own layout and
//! locator (tiny stand-ins for the kernel, initramfs and ESP), so these run in seconds;
//! tests/customize_iso.rs does the same on a full build.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use rivet_protocol::config_area::keys::{PublicKey, SigningKey};
use rivet_protocol::config_area::payload::{Contents, File};

use super::*;
use crate::sample_iso::CMDLINE;

fn key(seed: u8) -> SigningKey {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[seed; 32]);
    SigningKey::from_pkcs8(&der).unwrap()
}

fn small_iso(dir: &Path, area_size: u64, signing: Option<&PublicKey>) -> PathBuf {
    crate::sample_iso::build(dir, area_size, signing).unwrap()
}

fn contents() -> Contents {
    Contents {
        settings: Some("ipa-api-url=https://192.0.2.1:6385\nipa-agent-token=s3cret\n".into()),
        network_data: Some(r#"{"links": [{"id": "bond0", "type": "bond"}]}"#.into()),
        ca: None,
        plan: None,
        files: vec![File {
            path: "/etc/motd".into(),
            mode: 0o644,
            data: b"hello\n".to_vec(),
        }],
    }
}

fn customized(base: &Path, request: &Request) -> Vec<u8> {
    let patches = plan(&mut fs::File::open(base).unwrap(), request).unwrap();
    let out = base.with_file_name("out.iso");
    write_file(base, &out, &patches).unwrap();
    let bytes = fs::read(&out).unwrap();
    fs::remove_file(out).unwrap();
    bytes
}

#[test]
fn built_iso_has_a_locator_and_default_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let base = small_iso(dir.path(), 64 << 10, None);
    let state = read_state(&mut fs::File::open(&base).unwrap()).unwrap();
    assert_eq!(state.kargs, CMDLINE);
    assert_eq!(state.default_kargs, CMDLINE);
    assert_eq!(state.locator.area.len, 64 << 10);
    assert_eq!(state.locator.kargs_fields.len(), 2);
    assert_eq!(state.locator.signing_key_sha256, None);
    let shown = show(&mut fs::File::open(&base).unwrap(), "base.iso").unwrap();
    assert!(
        shown.contains("config area: 65536 bytes at offset"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("kernel arguments: {CMDLINE}\n")),
        "{shown}"
    );
    assert!(shown.ends_with("bundle: none\n"), "{shown}");
}

#[test]
fn customize_patches_only_the_area_and_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    let base = small_iso(dir.path(), 64 << 10, None);
    let original = fs::read(&base).unwrap();
    let request = Request {
        bundle: Some(contents()),
        kargs: KargsEdit {
            set: vec!["ipa-debug=0".into()],
            ..KargsEdit::default()
        },
        ..Request::default()
    };
    let out = customized(&base, &request);
    assert_eq!(out.len(), original.len());
    let state = read_state(&mut Cursor::new(&out)).unwrap();
    let loc = &state.locator;
    let mut ranges = vec![(loc.area.offset, loc.area.len)];
    ranges.extend(
        loc.kargs_fields
            .iter()
            .map(|&o| (o, u64::from(loc.kargs_field_len))),
    );
    for (i, (a, b)) in original.iter().zip(&out).enumerate() {
        let inside = ranges
            .iter()
            .any(|&(o, l)| (o..o + l).contains(&(i as u64)));
        assert!(
            inside || a == b,
            "byte {i} changed outside the patched ranges"
        );
    }
    assert_eq!(
        state.kargs,
        "console=tty0 console=ttyS0,115200n8 ipa-debug=0"
    );
    let shown = show(&mut Cursor::new(&out), "out.iso").unwrap();
    for expected in [
        "  as built: console=tty0 console=ttyS0,115200n8 ipa-debug=1\n",
        "unsigned",
        "    ipa-api-url=https://192.0.2.1:6385\n    ipa-agent-token=***\n",
        "links: bond0 (bond)",
        "  file /etc/motd (0644, 6 bytes)\n",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in\n{shown}");
    }
    assert!(!shown.contains("s3cret"), "{shown}");

    // The stream is the same ISO. On a pristine area only the bundle's bytes are patched.
    let patches = plan(&mut fs::File::open(&base).unwrap(), &request).unwrap();
    let bundle_len = bundle::encode(&contents().to_tar().unwrap(), None).len();
    assert_eq!(patches[0].data.len(), bundle_len);
    let mut streamed = Vec::new();
    write_stream(fs::File::open(&base).unwrap(), patches, &mut streamed).unwrap();
    assert!(
        streamed == out,
        "stdout output differs from the file output"
    );

    // --reset gives the ISO as built back, byte for byte.
    fs::write(dir.path().join("custom.iso"), &out).unwrap();
    let reset = customized(
        &dir.path().join("custom.iso"),
        &Request {
            reset: true,
            ..Request::default()
        },
    );
    assert!(reset == original, "--reset did not restore the built ISO");
}

#[test]
fn a_new_bundle_replaces_the_old_one_and_kargs_alone_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = small_iso(dir.path(), 64 << 10, None);
    let big = Request {
        bundle: Some(Contents {
            files: vec![File {
                path: "/opt/big".into(),
                mode: 0o600,
                data: vec![7; 40_000],
            }],
            ..Contents::default()
        }),
        ..Request::default()
    };
    let first = dir.path().join("first.iso");
    fs::write(&first, customized(&base, &big)).unwrap();
    let small = Request {
        bundle: Some(contents()),
        ..Request::default()
    };
    let second = customized(&first, &small);
    assert!(
        second == customized(&base, &small),
        "stale bytes of the earlier bundle remain"
    );
    let kargs_only = Request {
        kargs: KargsEdit {
            append: vec!["quiet".into()],
            ..KargsEdit::default()
        },
        ..Request::default()
    };
    let third = customized(&first, &kargs_only);
    let shown = show(&mut Cursor::new(&third), "third.iso").unwrap();
    assert!(
        shown.contains("file /opt/big (0600, 40000 bytes)"),
        "{shown}"
    );
    assert!(shown.contains("ipa-debug=1 quiet\n"), "{shown}");
}

#[test]
fn bundles_that_do_not_fit_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = small_iso(dir.path(), 64 << 10, None);
    let huge = dir.path().join("huge");
    fs::write(&huge, vec![1; 70_000]).unwrap();
    let out = dir.path().join("out.iso");
    let args = CustomizeArgs {
        iso: base.clone(),
        show: false,
        output: Some(out.clone()),
        config: None,
        network_data: None,
        ca: None,
        plan: None,
        files: vec![format!("{}:/opt/huge", huge.display())],
        sign_key: None,
        reset: false,
        kernel_args: None,
        set_kargs: vec![],
        append_kargs: vec![],
        delete_kargs: vec![],
        consoles: vec![],
    };
    let msg = format!("{:#}", run(&args).unwrap_err());
    assert!(
        msg.contains(
            "but this ISO's config area holds 65536 (build it with a larger --config-area-size)"
        ),
        "{msg}"
    );
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["base.iso", "huge"],
        "output or temporary files left"
    );

    let long = Request {
        kargs: KargsEdit {
            append: vec![format!("x={}", "y".repeat(1100))],
            ..KargsEdit::default()
        },
        ..Request::default()
    };
    let msg = format!(
        "{:#}",
        plan(&mut fs::File::open(&base).unwrap(), &long).unwrap_err()
    );
    assert!(
        msg.contains("the boot loader configs have room for 1023"),
        "{msg}"
    );
    let nothing = plan(&mut fs::File::open(&base).unwrap(), &Request::default());
    assert!(nothing
        .unwrap_err()
        .to_string()
        .contains("nothing to customize"));
}

#[test]
fn signed_only_isos_need_the_right_key() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = key(1);
    let base = small_iso(dir.path(), 64 << 10, Some(&trusted.public_key()));
    let shown = show(&mut fs::File::open(&base).unwrap(), "base.iso").unwrap();
    assert!(
        shown.contains("bundles: signed only (ramdisk key sha256 "),
        "{shown}"
    );
    let with = |sign_key| Request {
        bundle: Some(contents()),
        sign_key,
        ..Request::default()
    };
    let err = plan(&mut fs::File::open(&base).unwrap(), &with(None)).unwrap_err();
    assert!(err.to_string().contains("give --sign-key"), "{err}");
    let err = plan(&mut fs::File::open(&base).unwrap(), &with(Some(key(2)))).unwrap_err();
    assert!(
        err.to_string()
            .contains("not the key this ISO's ramdisk trusts"),
        "{err}"
    );
    let out = customized(&base, &with(Some(key(1))));
    let shown = show(&mut Cursor::new(&out), "out.iso").unwrap();
    assert!(
        shown.contains("signed (the signature is checked by the agent)"),
        "{shown}"
    );
}

#[test]
fn damaged_isos_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let base = small_iso(dir.path(), 64 << 10, None);
    let good = customized(
        &base,
        &Request {
            bundle: Some(contents()),
            ..Request::default()
        },
    );
    let loc = read_state(&mut Cursor::new(&good)).unwrap().locator;

    let mut corrupt = good.clone();
    corrupt[loc.area.offset as usize + 200] ^= 1;
    let err = format!("{:#}", show(&mut Cursor::new(&corrupt), "x").unwrap_err());
    assert!(err.contains("does not match its sha256"), "{err}");

    let mut fields = good.clone();
    fields[loc.kargs_fields[1] as usize] = b'X';
    let err = format!("{:#}", read_state(&mut Cursor::new(&fields)).unwrap_err());
    assert!(err.contains("disagree"), "{err}");

    let mut no_locator = good;
    no_locator[LOCATOR_OFFSET as usize..LOCATOR_OFFSET as usize + 8].fill(b' ');
    let err = format!(
        "{:#}",
        read_state(&mut Cursor::new(&no_locator)).unwrap_err()
    );
    assert!(err.contains("no config-area locator"), "{err}");
}

#[test]
fn a_plan_goes_into_the_bundle_after_the_agent_s_checks() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let image = dir.path().join("disk.raw");
    fs::write(&image, [0u8; 512]).unwrap();
    fs::write(
        &plan,
        r#"{"version": 1, "name": "one", "rerun": "always", "steps": [
             {"step": "write_image", "args": {"image_info": {"urls": ["file:///run/rivet/images/disk.raw"]}}}]}"#,
    )
    .unwrap();
    let args = |extra: &[String]| {
        let mut line: Vec<String> = [
            "rivet-image-builder",
            "customize",
            "base.iso",
            "-o",
            "out.iso",
        ]
        .map(String::from)
        .to_vec();
        line.extend_from_slice(extra);
        let cli = crate::cli::Cli::try_parse_from(line).unwrap();
        let crate::cli::Command::Customize(args) = cli.command else {
            panic!("not customize")
        };
        args
    };
    let asked = request(&args(&[
        "--plan".into(),
        plan.display().to_string(),
        "--file".into(),
        format!("{}:/run/rivet/images/disk.raw", image.display()),
    ]))
    .unwrap();
    let bundle = asked.bundle.unwrap();
    assert!(bundle.plan.unwrap().contains("\"name\": \"one\""));
    assert_eq!(bundle.files[0].path, "/run/rivet/images/disk.raw");

    fs::write(
        &plan,
        r#"{"version": 1, "name": "one", "steps": [{"step": "wait"}]}"#,
    )
    .unwrap();
    let err = format!(
        "{:#}",
        request(&args(&["--plan".into(), plan.display().to_string()])).unwrap_err()
    );
    assert!(
        err.contains("--plan") && err.contains("needs args.seconds"),
        "{err}"
    );
}
