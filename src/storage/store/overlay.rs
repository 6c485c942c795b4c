//! A share file as it will be once some planned writes land.
//!
//! Mutations are planned first and applied later, through the journal (see
//! [`super::journal`]). Tahoe's container code reads what it wrote a moment before
//! (a lease count, a data length), so planning runs against an [`Overlay`]: reads see
//! the file on disk with the planned writes on top, and the writes, in order, become
//! the journal's operations. Replaying them in order reproduces Tahoe's bytes exactly.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

/// One planned change to a file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FileOp {
    Write {
        offset: u64,
        data: Bytes,
    },
    /// Make `[offset, offset + len)` zeros, extending the file if needed.
    Zero {
        offset: u64,
        len: u64,
    },
}

impl FileOp {
    fn end(&self) -> u64 {
        match self {
            FileOp::Write { offset, data } => offset + data.len() as u64,
            FileOp::Zero { offset, len } => offset + len,
        }
    }
}

pub(super) struct Overlay {
    base: Option<File>,
    base_len: u64,
    len: u64,
    ops: Vec<FileOp>,
}

impl Overlay {
    /// The file at `path` as it is now.
    pub fn open(path: &Path) -> io::Result<Overlay> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Overlay {
            base: Some(file),
            base_len: len,
            len,
            ops: Vec::new(),
        })
    }

    /// A file about to be created.
    pub fn empty() -> Overlay {
        Overlay {
            base: None,
            base_len: 0,
            len: 0,
            ops: Vec::new(),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Read up to `len` bytes at `offset`, short at the end of the file (as a Python
    /// `f.read` is).
    pub fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        if offset >= self.len {
            return Ok(Vec::new());
        }
        let end = offset.saturating_add(len).min(self.len);
        let n = usize::try_from(end - offset)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "read too large"))?;
        let mut buf = vec![0u8; n];
        if let Some(base) = &self.base {
            let base_end = end.min(self.base_len);
            if offset < base_end {
                base.read_exact_at(&mut buf[..(base_end - offset) as usize], offset)?;
            }
        }
        for op in &self.ops {
            let (o_start, o_end) = match op {
                FileOp::Write { offset, data } => (*offset, offset + data.len() as u64),
                FileOp::Zero { offset, len } => (*offset, offset + len),
            };
            let (s, e) = (o_start.max(offset), o_end.min(end));
            if s >= e {
                continue;
            }
            let dst = &mut buf[(s - offset) as usize..(e - offset) as usize];
            match op {
                FileOp::Write { data, .. } => {
                    dst.copy_from_slice(&data[(s - o_start) as usize..(e - o_start) as usize])
                }
                FileOp::Zero { .. } => dst.fill(0),
            }
        }
        Ok(buf)
    }

    /// Read exactly `N` bytes at `offset`, or fail as a corrupt container.
    pub fn read_array<const N: usize>(&self, offset: u64) -> io::Result<[u8; N]> {
        let v = self.read(offset, N as u64)?;
        v.try_into().map_err(|_| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("container too short: wanted {N} bytes at offset {offset}"),
            )
        })
    }

    pub fn write(&mut self, offset: u64, data: impl Into<Bytes>) {
        self.push(FileOp::Write {
            offset,
            data: data.into(),
        });
    }

    pub fn zero(&mut self, offset: u64, len: u64) {
        if len > 0 {
            self.push(FileOp::Zero { offset, len });
        }
    }

    fn push(&mut self, op: FileOp) {
        self.len = self.len.max(op.end());
        self.ops.push(op);
    }

    pub fn into_ops(self) -> Vec<FileOp> {
        self.ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_planned_writes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        let mut o = Overlay::open(&p).unwrap();
        assert_eq!(o.read(2, 3).unwrap(), b"234");
        o.write(4, Bytes::from_static(b"abc"));
        o.zero(5, 1);
        o.write(12, Bytes::from_static(b"XY"));
        assert_eq!(o.len(), 14);
        assert_eq!(o.read(0, 100).unwrap(), b"0123a\0c789\0\0XY");
        assert_eq!(o.read(13, 5).unwrap(), b"Y");
        assert_eq!(o.read(14, 5).unwrap(), b"");
        assert!(o.read_array::<4>(12).is_err());
        // The file itself is untouched until the journal applies the ops.
        assert_eq!(std::fs::read(&p).unwrap(), b"0123456789");
        assert_eq!(o.into_ops().len(), 3);
    }

    #[test]
    fn empty_overlay_grows_with_writes() {
        let mut o = Overlay::empty();
        assert_eq!(o.read(0, 4).unwrap(), b"");
        o.zero(0, 0);
        assert_eq!(o.len(), 0);
        o.zero(2, 2);
        o.write(0, Bytes::from_static(b"a"));
        assert_eq!(o.read(0, 10).unwrap(), b"a\0\0\0");
    }
}
