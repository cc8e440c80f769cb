//! `MemoryDisk`: a [`Target`] in memory that records every operation, for tests that check
//! what reached the disk and in which order.

use std::sync::Mutex;

use super::target::Target;

/// One operation on a [`MemoryDisk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Write { offset: u64, len: u64 },
    Zero { offset: u64, len: u64 },
    Sync,
    Reread,
}

/// A disk in memory. `fail_writes_at`: a write touching that byte fails.
#[derive(Debug)]
pub struct MemoryDisk {
    pub bytes: Mutex<Vec<u8>>,
    pub ops: Mutex<Vec<Op>>,
    pub fail_writes_at: Option<u64>,
}

impl MemoryDisk {
    /// A disk of `size` bytes filled with `fill`.
    pub fn new(size: usize, fill: u8) -> MemoryDisk {
        MemoryDisk {
            bytes: Mutex::new(vec![fill; size]),
            ops: Mutex::new(Vec::new()),
            fail_writes_at: None,
        }
    }

    pub fn content(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }
}

impl Target for MemoryDisk {
    fn name(&self) -> String {
        "memory-disk".into()
    }

    fn size(&self) -> u64 {
        self.bytes.lock().unwrap().len() as u64
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let end = offset + data.len() as u64;
        if self
            .fail_writes_at
            .is_some_and(|at| (offset..end).contains(&at))
        {
            return Err(std::io::Error::other("injected write failure"));
        }
        let mut bytes = self.bytes.lock().unwrap();
        if end > bytes.len() as u64 {
            return Err(std::io::Error::other("write past the end"));
        }
        bytes[offset as usize..end as usize].copy_from_slice(data);
        self.ops.lock().unwrap().push(Op::Write {
            offset,
            len: data.len() as u64,
        });
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let bytes = self.bytes.lock().unwrap();
        let end = offset as usize + buf.len();
        buf.copy_from_slice(&bytes[offset as usize..end]);
        Ok(())
    }

    fn zero(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let mut bytes = self.bytes.lock().unwrap();
        bytes[offset as usize..(offset + len) as usize].fill(0);
        self.ops.lock().unwrap().push(Op::Zero { offset, len });
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        self.ops.lock().unwrap().push(Op::Sync);
        Ok(())
    }

    fn reread_partitions(&self) -> std::io::Result<()> {
        self.ops.lock().unwrap().push(Op::Reread);
        Ok(())
    }
}
