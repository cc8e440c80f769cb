//! A base image with byte ranges replaced, as a stream: what `customize -o -` writes, and
//! what a server uses to hand out per-node ISOs without writing them (it seeks for HTTP
//! range requests).

use std::io::{self, Read, Seek, SeekFrom};

/// Replace `data.len()` bytes at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub offset: u64,
    pub data: Vec<u8>,
}

impl Patch {
    fn end(&self) -> u64 {
        self.offset + self.data.len() as u64
    }
}

/// `base` with the patches applied, readable and seekable like a file of the same length.
#[derive(Debug)]
pub struct Spliced<R> {
    base: R,
    len: u64,
    pos: u64,
    /// Where `base` is positioned, when known.
    base_pos: Option<u64>,
    /// Sorted by offset, not overlapping.
    patches: Vec<Patch>,
}

/// Splices `patches` into `base`. Patches must lie inside `base` and must not overlap.
pub fn splice<R: Read + Seek>(mut base: R, mut patches: Vec<Patch>) -> io::Result<Spliced<R>> {
    let len = base.seek(SeekFrom::End(0))?;
    patches.retain(|p| !p.data.is_empty());
    patches.sort_by_key(|p| p.offset);
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
    for pair in patches.windows(2) {
        if pair[0].end() > pair[1].offset {
            return Err(invalid(format!(
                "patches at {} and {} overlap",
                pair[0].offset, pair[1].offset
            )));
        }
    }
    if let Some(last) = patches.iter().find(|p| {
        p.offset
            .checked_add(p.data.len() as u64)
            .is_none_or(|end| end > len)
    }) {
        return Err(invalid(format!(
            "a patch of {} bytes at {} ends beyond the {len}-byte image",
            last.data.len(),
            last.offset
        )));
    }
    Ok(Spliced {
        base,
        len,
        pos: 0,
        base_pos: None,
        patches,
    })
}

impl<R> Spliced<R> {
    /// Length of the spliced image (the base's).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<R: Read + Seek> Read for Spliced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        // The first patch that ends after the position.
        let next = self.patches.partition_point(|p| p.end() <= self.pos);
        let want = (buf.len() as u64).min(self.len - self.pos);
        let n = match self.patches.get(next) {
            Some(p) if p.offset <= self.pos => {
                let from = (self.pos - p.offset) as usize;
                let n = want.min(p.end() - self.pos) as usize;
                buf[..n].copy_from_slice(&p.data[from..from + n]);
                n
            }
            other => {
                let limit = other.map_or(self.len, |p| p.offset);
                let n = want.min(limit - self.pos) as usize;
                if self.base_pos != Some(self.pos) {
                    self.base.seek(SeekFrom::Start(self.pos))?;
                }
                let got = match self.base.read(&mut buf[..n]) {
                    Ok(got) => got,
                    Err(e) => {
                        self.base_pos = None;
                        return Err(e);
                    }
                };
                if got == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the base image ended at {} (it had {} bytes)",
                            self.pos, self.len
                        ),
                    ));
                }
                self.base_pos = Some(self.pos + got as u64);
                got
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R> Seek for Spliced<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(pos) => {
                self.pos = pos;
                Ok(pos)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the image",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn base() -> Vec<u8> {
        (0..=255u8).cycle().take(10_000).collect()
    }

    fn expected(patches: &[Patch]) -> Vec<u8> {
        let mut out = base();
        for p in patches {
            out[p.offset as usize..p.end() as usize].copy_from_slice(&p.data);
        }
        out
    }

    fn patches() -> Vec<Patch> {
        vec![
            Patch {
                offset: 5000,
                data: vec![0xaa; 3000],
            },
            Patch {
                offset: 0,
                data: b"head".to_vec(),
            },
            Patch {
                offset: 9990,
                data: vec![0xbb; 10],
            },
            Patch {
                offset: 8000,
                data: vec![0xcc; 1],
            },
        ]
    }

    #[test]
    fn reads_base_with_patches_in_any_chunk_size() {
        let want = expected(&patches());
        for chunk in [1, 7, 4096, 20_000] {
            let mut s = splice(Cursor::new(base()), patches()).unwrap();
            assert_eq!(s.len(), 10_000);
            let mut got = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got == want, "chunk {chunk}");
        }
    }

    #[test]
    fn seeks_for_ranges() {
        let want = expected(&patches());
        let mut s = splice(Cursor::new(base()), patches()).unwrap();
        for (start, len) in [(4990, 30), (7999, 3), (2, 10), (9995, 5), (0, 10_000)] {
            s.seek(SeekFrom::Start(start)).unwrap();
            let mut got = vec![0u8; len];
            s.read_exact(&mut got).unwrap();
            assert_eq!(
                got,
                want[start as usize..start as usize + len],
                "{start}+{len}"
            );
        }
        assert_eq!(s.seek(SeekFrom::End(-10)).unwrap(), 9990);
        assert_eq!(s.seek(SeekFrom::Current(5)).unwrap(), 9995);
        assert!(s.seek(SeekFrom::Current(-20_000)).is_err());
        s.seek(SeekFrom::Start(20_000)).unwrap();
        assert_eq!(s.read(&mut [0u8; 4]).unwrap(), 0);
    }

    #[test]
    fn overlapping_or_outside_patches_are_refused() {
        let overlap = vec![
            Patch {
                offset: 10,
                data: vec![1; 10],
            },
            Patch {
                offset: 19,
                data: vec![2; 1],
            },
        ];
        assert!(splice(Cursor::new(base()), overlap).is_err());
        let outside = vec![Patch {
            offset: 9999,
            data: vec![1; 2],
        }];
        let err = splice(Cursor::new(base()), outside).unwrap_err();
        assert!(err.to_string().contains("ends beyond"), "{err}");
    }
}
