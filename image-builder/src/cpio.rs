//! A deterministic writer for the "newc" cpio format (the format the kernel unpacks as
//! initramfs; `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Determinism: entries are written in path order with every parent directory before its
//! children, inode numbers count up from 1 in that order, owners are 0:0 and every entry
//! gets the same mtime. Paths are relative (`init`, `lib/modules`), as the kernel expects.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// What one archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File(Vec<u8>),
    /// A character device node (major, minor), e.g. `/dev/console`.
    CharDevice(u32, u32),
}

/// One entry to write: permission bits only in `mode` (the type comes from `kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mode: u32,
    pub kind: EntryKind,
}

/// Errors while assembling an archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// A path that is empty, absolute after trimming, or has `.`/`..`/empty components.
    #[error("invalid archive path {0:?}")]
    InvalidPath(String),
    /// Two different entries for one path.
    #[error("duplicate archive path {0:?}")]
    Duplicate(String),
    /// A file would sit below something that is not a directory.
    #[error("{0:?} is not a directory but has entries below it")]
    NotADirectory(String),
    #[error("{0} is too large for a newc archive (over 4 GiB)")]
    TooLarge(String),
    #[error("writing the archive: {0}")]
    Io(#[from] io::Error),
}

/// The set of entries of an archive, keyed by path components so that sorting puts every
/// directory right before its contents.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<Vec<String>, Entry>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;
const TRAILER: &str = "TRAILER!!!";

fn split_path(path: &str) -> Result<Vec<String>, CpioError> {
    let trimmed = path.trim_start_matches('/');
    let parts: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if trimmed.is_empty() || parts.iter().any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(CpioError::InvalidPath(path.to_owned()));
    }
    Ok(parts)
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (and its missing parents, mode 0755). Adding an existing
    /// directory again is allowed and keeps the first mode.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        let parts = split_path(path)?;
        self.ensure_parents(&parts)?;
        match self.entries.get(&parts) {
            Some(Entry {
                kind: EntryKind::Dir,
                ..
            }) => Ok(()),
            Some(_) => Err(CpioError::Duplicate(path.to_owned())),
            None => {
                self.entries.insert(
                    parts,
                    Entry {
                        mode,
                        kind: EntryKind::Dir,
                    },
                );
                Ok(())
            }
        }
    }

    /// Adds a regular file (parents are created with mode 0755).
    pub fn add_file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<(), CpioError> {
        self.add_leaf(
            path,
            Entry {
                mode,
                kind: EntryKind::File(data),
            },
        )
    }

    /// Adds a character device node.
    pub fn add_char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.add_leaf(
            path,
            Entry {
                mode,
                kind: EntryKind::CharDevice(major, minor),
            },
        )
    }

    fn add_leaf(&mut self, path: &str, entry: Entry) -> Result<(), CpioError> {
        let parts = split_path(path)?;
        self.ensure_parents(&parts)?;
        if self.entries.contains_key(&parts) {
            return Err(CpioError::Duplicate(path.to_owned()));
        }
        self.entries.insert(parts, entry);
        Ok(())
    }

    fn ensure_parents(&mut self, parts: &[String]) -> Result<(), CpioError> {
        for depth in 1..parts.len() {
            let parent = parts[..depth].to_vec();
            match self.entries.get(&parent) {
                Some(Entry {
                    kind: EntryKind::Dir,
                    ..
                }) => {}
                Some(_) => return Err(CpioError::NotADirectory(parent.join("/"))),
                None => {
                    self.entries.insert(
                        parent,
                        Entry {
                            mode: 0o755,
                            kind: EntryKind::Dir,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether the archive has an entry at `path`.
    pub fn contains(&self, path: &str) -> bool {
        split_path(path).is_ok_and(|parts| self.entries.contains_key(&parts))
    }

    /// Writes the archive, all entries stamped with `mtime` (seconds since the epoch).
    pub fn write_to<W: Write>(&self, out: &mut W, mtime: u32) -> Result<(), CpioError> {
        for (ino, (parts, entry)) in (1u32..).zip(&self.entries) {
            let name = parts.join("/");
            let (type_bits, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &entry.kind {
                EntryKind::Dir => (S_IFDIR, 2, &[], (0, 0)),
                EntryKind::File(d) => (S_IFREG, 1, d.as_slice(), (0, 0)),
                EntryKind::CharDevice(ma, mi) => (S_IFCHR, 1, &[], (*ma, *mi)),
            };
            let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge(name.clone()))?;
            let header = Header {
                ino,
                mode: type_bits | (entry.mode & 0o7777),
                nlink,
                mtime,
                filesize: size,
                rdev,
            };
            write_entry(out, &header, &name, data)?;
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            rdev: (0, 0),
        };
        write_entry(out, &trailer, TRAILER, &[])?;
        Ok(())
    }
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdev: (u32, u32),
}

fn pad4<W: Write>(out: &mut W, len: usize) -> io::Result<()> {
    let pad = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..pad])
}

fn write_entry<W: Write>(out: &mut W, h: &Header, name: &str, data: &[u8]) -> io::Result<()> {
    let namesize = name.len() + 1;
    // c_magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check: 6 + 13 * 8 = 110 bytes.
    let header = format!(
        "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
        h.ino, h.mode, 0, 0, h.nlink, h.mtime, h.filesize, 0, 0, h.rdev.0, h.rdev.1, namesize, 0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    pad4(out, header.len() + namesize)?;
    out.write_all(data)?;
    pad4(out, data.len())
}

pub mod read {
    //! A strict newc reader the tests use to parse back what the writer produced (the
    //! integration tests unpack a built initramfs with it).

    /// One parsed entry: name, full mode (type + permissions), ino, nlink, mtime, rdev, data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Parsed {
        pub name: String,
        pub mode: u32,
        pub ino: u32,
        pub nlink: u32,
        pub mtime: u32,
        pub uid: u32,
        pub gid: u32,
        pub rdev: (u32, u32),
        pub data: Vec<u8>,
    }

    fn field(buf: &[u8], at: usize, idx: usize) -> Result<u32, String> {
        let start = at + 6 + idx * 8;
        let s = std::str::from_utf8(buf.get(start..start + 8).ok_or("truncated header")?)
            .map_err(|e| e.to_string())?;
        u32::from_str_radix(s, 16).map_err(|e| format!("field {idx}: {e}"))
    }

    fn align4(n: usize) -> usize {
        (n + 3) & !3
    }

    /// Parses a whole archive up to and including the trailer; the trailer is not returned.
    /// Fails on anything but zero padding after the trailer.
    pub fn parse(buf: &[u8]) -> Result<Vec<Parsed>, String> {
        let mut at = 0;
        let mut out = Vec::new();
        loop {
            if buf.get(at..at + 6) != Some(b"070701".as_slice()) {
                return Err(format!("bad magic at offset {at}"));
            }
            let f = |i| field(buf, at, i);
            let (ino, mode, uid, gid, nlink, mtime, size) =
                (f(0)?, f(1)?, f(2)?, f(3)?, f(4)?, f(5)?, f(6)? as usize);
            let rdev = (f(9)?, f(10)?);
            let namesize = f(11)? as usize;
            if f(12)? != 0 {
                return Err("non-zero check field".into());
            }
            let name_start = at + 110;
            let name_bytes = buf
                .get(name_start..name_start + namesize)
                .ok_or("truncated name")?;
            if name_bytes.last() != Some(&0) {
                return Err("name not NUL-terminated".into());
            }
            let name = String::from_utf8(name_bytes[..namesize - 1].to_vec())
                .map_err(|e| e.to_string())?;
            let data_start = align4(name_start + namesize);
            let data = buf
                .get(data_start..data_start + size)
                .ok_or("truncated data")?
                .to_vec();
            at = align4(data_start + size);
            if name == super::TRAILER {
                if buf[at.min(buf.len())..].iter().any(|b| *b != 0) {
                    return Err("data after the trailer".into());
                }
                return Ok(out);
            }
            out.push(Parsed {
                name,
                mode,
                ino,
                nlink,
                mtime,
                uid,
                gid,
                rdev,
                data,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read::parse;
    use super::*;

    fn sample() -> Archive {
        let mut a = Archive::new();
        a.add_file("/init", 0o755, b"#!agent".to_vec()).unwrap();
        a.add_file(
            "lib/modules/6.1.0/kernel/fs/isofs/isofs.ko",
            0o644,
            vec![7u8; 5],
        )
        .unwrap();
        a.add_dir("/proc", 0o555).unwrap();
        a.add_dir("lib-extra", 0o700).unwrap();
        a.add_char_device("dev/console", 0o600, 5, 1).unwrap();
        a
    }

    #[test]
    fn parses_back_in_order_with_parents_first() {
        let mut buf = Vec::new();
        sample().write_to(&mut buf, 1_700_000_000).unwrap();
        assert_eq!(buf.len() % 4, 0);
        let entries = parse(&buf).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/6.1.0",
                "lib/modules/6.1.0/kernel",
                "lib/modules/6.1.0/kernel/fs",
                "lib/modules/6.1.0/kernel/fs/isofs",
                "lib/modules/6.1.0/kernel/fs/isofs/isofs.ko",
                "lib-extra",
                "proc",
            ]
        );
        let inos: Vec<u32> = entries.iter().map(|e| e.ino).collect();
        assert_eq!(inos, (1..=12).collect::<Vec<u32>>());
        let init = &entries[2];
        assert_eq!(init.mode, 0o100755);
        assert_eq!(init.data, b"#!agent");
        assert_eq!(
            (init.uid, init.gid, init.nlink, init.mtime),
            (0, 0, 1, 1_700_000_000)
        );
        assert_eq!(entries[0].mode, 0o040755);
        assert_eq!(entries[0].nlink, 2);
        assert_eq!(entries[1].mode, 0o020600);
        assert_eq!(entries[1].rdev, (5, 1));
        assert_eq!(entries[9].data, vec![7u8; 5]);
        assert_eq!(entries[10].mode, 0o040700);
        assert_eq!(entries[11].mode, 0o040555);
    }

    #[test]
    fn same_input_gives_same_bytes_regardless_of_insertion_order() {
        let mut a = Vec::new();
        sample().write_to(&mut a, 0).unwrap();
        let mut other = Archive::new();
        other.add_char_device("dev/console", 0o600, 5, 1).unwrap();
        other.add_dir("lib-extra", 0o700).unwrap();
        other.add_dir("proc", 0o555).unwrap();
        other
            .add_file(
                "lib/modules/6.1.0/kernel/fs/isofs/isofs.ko",
                0o644,
                vec![7; 5],
            )
            .unwrap();
        other.add_file("init", 0o755, b"#!agent".to_vec()).unwrap();
        let mut b = Vec::new();
        other.write_to(&mut b, 0).unwrap();
        assert_eq!(a, b);
    }

    /// The exact bytes of a one-file archive, written out by hand from the format spec.
    #[test]
    fn matches_the_newc_layout_byte_for_byte() {
        let mut a = Archive::new();
        a.add_file("ab", 0o644, b"xyz".to_vec()).unwrap();
        let mut buf = Vec::new();
        a.write_to(&mut buf, 0x10).unwrap();
        let mut want = String::new();
        want += "070701"; // magic
        want += "00000001"; // ino
        want += "000081A4"; // mode: regular file 0644
        want += "0000000000000000"; // uid, gid
        want += "00000001"; // nlink
        want += "00000010"; // mtime
        want += "00000003"; // filesize
        want += "00000000000000000000000000000000"; // dev and rdev
        want += "00000003"; // namesize ("ab\0")
        want += "00000000"; // check
        want += "ab\0"; // 110 + 3 = 113 -> pad to 116
        want += "\0\0\0";
        want += "xyz\0"; // data padded to 4
        want += "070701";
        want += &"0".repeat(32); // ino, mode, uid, gid
        want += "00000001"; // nlink
        want += &"0".repeat(48); // mtime, filesize, dev, rdev
        want += "0000000B00000000TRAILER!!!\0"; // 110 + 11 = 121 -> pad to 124
        want += "\0\0\0";
        assert_eq!(String::from_utf8(buf).unwrap(), want);
    }

    #[test]
    fn rejects_bad_paths_and_conflicts() {
        let mut a = Archive::new();
        for bad in ["", "/", "a//b", "a/../b", "./a"] {
            assert!(
                matches!(a.add_dir(bad, 0o755), Err(CpioError::InvalidPath(_))),
                "{bad}"
            );
        }
        a.add_file("etc/x", 0o644, vec![]).unwrap();
        assert!(matches!(
            a.add_file("etc/x", 0o644, vec![]),
            Err(CpioError::Duplicate(_))
        ));
        assert!(matches!(
            a.add_dir("etc/x", 0o755),
            Err(CpioError::Duplicate(_))
        ));
        assert!(matches!(
            a.add_file("etc/x/y", 0o644, vec![]),
            Err(CpioError::NotADirectory(_))
        ));
        a.add_dir("etc", 0o700).unwrap();
        let mut buf = Vec::new();
        a.write_to(&mut buf, 0).unwrap();
        // The implicit parent keeps its first mode (0755).
        assert_eq!(parse(&buf).unwrap()[0].mode, 0o040755);
    }

    #[test]
    fn reader_rejects_garbage() {
        let mut buf = Vec::new();
        sample().write_to(&mut buf, 0).unwrap();
        let mut broken = buf.clone();
        broken[0] = b'1';
        assert!(parse(&broken).is_err());
        let mut trailing = buf.clone();
        trailing.extend_from_slice(b"junk");
        assert!(parse(&trailing).is_err());
        assert!(parse(&buf[..buf.len() - 20]).is_err());
    }
}
