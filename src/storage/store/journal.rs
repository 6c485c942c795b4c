//! A redo journal that makes each change to finished shares atomic and durable.
//!
//! Every change to a finished share (a mutable read-test-write, a lease added or
//! renewed) is planned in full first, as a list of physical operations on the share
//! files of one storage index. The plan is written to `mutation-journal/<si>.tmp`,
//! fsynced, and committed by renaming it to `mutation-journal/<si>` (then fsyncing
//! the directory). Only then are the operations applied to the share files, which
//! are fsynced before the journal is removed (and the directory fsynced again, so
//! an applied journal never comes back).
//!
//! A crash before the rename leaves the shares untouched (the `.tmp` file is
//! discarded on open). A crash after it leaves a committed journal, which the next
//! open (or the next change to that storage index) replays from the start. Replaying
//! is safe however much of the plan had landed: every operation sets bytes, a file's
//! existence or a directory's existence to a value fixed in the journal, so
//! applying the whole list again yields the same files.
//!
//! Journal file format: the magic `swampgate-journal-v1\n`, the 16-byte storage
//! index, a u32 operation count, the operations, and a SHA-256 of everything before
//! it. Each operation is a tag byte, a u16 share number, then per tag: `Write` u64
//! offset, u64 length, the bytes; `Zero` u64 offset, u64 length; `Create`, `Unlink`
//! nothing. `MakeBucketDir` and `RemoveBucketDirIfEmpty` carry share number 0.
//! Integers are big-endian. Files are named by share number only: a journal can
//! touch nothing but its own storage index's bucket directory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::{Buf, BufMut};
use sha2::{Digest, Sha256};

use super::layout::{create_dir_durable, sync_dir, Layout};
use super::overlay::FileOp;
use crate::storage::{ShareNum, StorageIndex};

const MAGIC: &[u8] = b"swampgate-journal-v1\n";

/// Zero-filling writes at most this much at a time (a gap can be huge).
const ZERO_CHUNK: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// Create the storage index's bucket directory (and its prefix directory).
    MakeBucketDir,
    /// Create the share file empty, or empty it if it exists.
    Create(ShareNum),
    File(ShareNum, FileOp),
    /// Remove the share file if it exists.
    Unlink(ShareNum),
    /// Remove the bucket directory if it exists and is empty.
    RemoveBucketDirIfEmpty,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Journal {
    pub si: StorageIndex,
    pub ops: Vec<Op>,
}

const T_MKDIR: u8 = 1;
const T_CREATE: u8 = 2;
const T_WRITE: u8 = 3;
const T_ZERO: u8 = 4;
const T_UNLINK: u8 = 5;
const T_RMDIR: u8 = 6;

impl Journal {
    /// Write the journal to `w`, streaming the data of each write (never copying
    /// it whole).
    pub fn write_to(&self, w: impl Write) -> io::Result<()> {
        let mut w = Hashing {
            inner: w,
            hash: Sha256::new(),
        };
        let mut head = Vec::with_capacity(MAGIC.len() + 20);
        head.put_slice(MAGIC);
        head.put_slice(&self.si.0);
        head.put_u32(self.ops.len() as u32);
        w.write_all(&head)?;
        for op in &self.ops {
            let mut head = Vec::with_capacity(19);
            let (tag, sh) = match op {
                Op::MakeBucketDir => (T_MKDIR, 0),
                Op::Create(sh) => (T_CREATE, *sh),
                Op::File(sh, FileOp::Write { .. }) => (T_WRITE, *sh),
                Op::File(sh, FileOp::Zero { .. }) => (T_ZERO, *sh),
                Op::Unlink(sh) => (T_UNLINK, *sh),
                Op::RemoveBucketDirIfEmpty => (T_RMDIR, 0),
            };
            head.put_u8(tag);
            head.put_u16(sh);
            let data: &[u8] = match op {
                Op::File(_, FileOp::Write { offset, data }) => {
                    head.put_u64(*offset);
                    head.put_u64(data.len() as u64);
                    data
                }
                Op::File(_, FileOp::Zero { offset, len }) => {
                    head.put_u64(*offset);
                    head.put_u64(*len);
                    &[]
                }
                _ => &[],
            };
            w.write_all(&head)?;
            w.write_all(data)?;
        }
        let digest = w.hash.finalize();
        w.inner.write_all(&digest)
    }

    pub fn decode(raw: &[u8]) -> Result<Journal, String> {
        if raw.len() < MAGIC.len() + 16 + 4 + 32 {
            return Err("too short".into());
        }
        let (body, digest) = raw.split_at(raw.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err("checksum mismatch".into());
        }
        let mut b: &[u8] = body;
        if b.copy_to_bytes(MAGIC.len()) != MAGIC {
            return Err("bad magic".into());
        }
        let si = StorageIndex(b.copy_to_bytes(16).as_ref().try_into().unwrap());
        let count = b.get_u32();
        let mut ops = Vec::new();
        for _ in 0..count {
            if b.remaining() < 3 {
                return Err("truncated operation".into());
            }
            let tag = b.get_u8();
            let sh = b.get_u16();
            let op = match tag {
                T_MKDIR => Op::MakeBucketDir,
                T_CREATE => Op::Create(sh),
                T_UNLINK => Op::Unlink(sh),
                T_RMDIR => Op::RemoveBucketDirIfEmpty,
                T_WRITE | T_ZERO => {
                    if b.remaining() < 16 {
                        return Err("truncated operation".into());
                    }
                    let offset = b.get_u64();
                    let len = b.get_u64();
                    if tag == T_ZERO {
                        Op::File(sh, FileOp::Zero { offset, len })
                    } else {
                        if (b.remaining() as u64) < len {
                            return Err("truncated write".into());
                        }
                        let data = b.copy_to_bytes(len as usize);
                        Op::File(sh, FileOp::Write { offset, data })
                    }
                }
                t => return Err(format!("unknown operation tag {t}")),
            };
            ops.push(op);
        }
        if b.has_remaining() {
            return Err("trailing bytes".into());
        }
        Ok(Journal { si, ops })
    }

    /// Write, fsync and commit the journal, apply it, then remove it.
    pub fn run(&self, layout: &Layout) -> io::Result<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let tmp = layout.journal_tmp_path(&self.si);
        let path = layout.journal_path(&self.si);
        {
            let mut f = BufWriter::new(File::create(&tmp)?);
            self.write_to(&mut f)?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        sync_dir(&layout.journal)?;
        self.apply(layout)?;
        retire(layout, &path)
    }

    /// Apply every operation in order and make the result durable.
    pub fn apply(&self, layout: &Layout) -> io::Result<()> {
        let dir = layout.bucket_dir(&self.si);
        let mut files: HashMap<ShareNum, File> = HashMap::new();
        let mut dir_changed = false;
        for op in &self.ops {
            match op {
                Op::MakeBucketDir => create_dir_durable(&layout.shares, &dir)?,
                Op::Create(sh) => {
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(dir.join(sh.to_string()))?;
                    files.insert(*sh, f);
                    dir_changed = true;
                }
                Op::File(sh, fop) => {
                    let f = match files.entry(*sh) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => e.insert(
                            OpenOptions::new()
                                .read(true)
                                .write(true)
                                .open(dir.join(sh.to_string()))?,
                        ),
                    };
                    apply_file_op(f, fop)?;
                }
                Op::Unlink(sh) => {
                    files.remove(sh);
                    match std::fs::remove_file(dir.join(sh.to_string())) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                    dir_changed = true;
                }
                Op::RemoveBucketDirIfEmpty => match std::fs::remove_dir(&dir) {
                    Ok(()) => {
                        sync_dir(dir.parent().unwrap_or(&layout.shares))?;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
                        ) => {}
                    Err(e) => return Err(e),
                },
            }
        }
        for f in files.values() {
            f.sync_all()?;
        }
        if dir_changed && dir.is_dir() {
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn apply_file_op(f: &File, op: &FileOp) -> io::Result<()> {
    match op {
        FileOp::Write { offset, data } => f.write_all_at(data, *offset),
        FileOp::Zero { offset, len } => {
            let end = offset + len;
            let size = f.metadata()?.len();
            // Bytes past the end of the file become zeros by extending it.
            let written_end = end.min(size);
            let zeros = vec![0u8; ZERO_CHUNK.min(*len) as usize];
            let mut at = *offset;
            while at < written_end {
                let n = (written_end - at).min(ZERO_CHUNK);
                f.write_all_at(&zeros[..n as usize], at)?;
                at += n;
            }
            if end > size {
                f.set_len(end)?;
            }
            Ok(())
        }
    }
}

/// Replay the committed journal of `si`, if there is one (after a failed apply).
pub(super) fn replay_pending(layout: &Layout, si: &StorageIndex) -> io::Result<()> {
    let path = layout.journal_path(si);
    match std::fs::read(&path) {
        Ok(raw) => replay_file(layout, &path, &raw),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn replay_file(layout: &Layout, path: &Path, raw: &[u8]) -> io::Result<()> {
    let journal = Journal::decode(raw).map_err(|reason| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("journal {}: {reason}", path.display()),
        )
    })?;
    let named = path.file_name().and_then(|n| n.to_str());
    if named != Some(journal.si.to_base32().as_str()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "journal {} is for storage index {}",
                path.display(),
                journal.si
            ),
        ));
    }
    journal.apply(layout)?;
    retire(layout, path)
}

/// Remove an applied journal, durably: a journal that came back after a crash
/// would be replayed over later changes that it knows nothing of (say, an immutable
/// share completed where the journal had deleted a mutable one).
fn retire(layout: &Layout, path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)?;
    sync_dir(&layout.journal)
}

/// At open: discard uncommitted journals and replay committed ones.
pub(super) fn recover(layout: &Layout) -> io::Result<usize> {
    let mut replayed = 0;
    for entry in std::fs::read_dir(&layout.journal)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            std::fs::remove_file(&path)?;
            continue;
        }
        let raw = std::fs::read(&path)?;
        replay_file(layout, &path, &raw)?;
        replayed += 1;
    }
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    impl Journal {
        fn encode(&self) -> Vec<u8> {
            let mut v = Vec::new();
            self.write_to(&mut v).unwrap();
            v
        }
    }

    fn sample(si: StorageIndex) -> Journal {
        Journal {
            si,
            ops: vec![
                Op::MakeBucketDir,
                Op::Create(3),
                Op::File(
                    3,
                    FileOp::Write {
                        offset: 0,
                        data: Bytes::from_static(b"hello world"),
                    },
                ),
                Op::File(3, FileOp::Zero { offset: 2, len: 3 }),
                Op::File(3, FileOp::Zero { offset: 20, len: 4 }),
                Op::File(
                    3,
                    FileOp::Write {
                        offset: 22,
                        data: Bytes::from_static(b"!"),
                    },
                ),
                Op::Unlink(4),
                Op::RemoveBucketDirIfEmpty,
            ],
        }
    }

    #[test]
    fn encoding_roundtrips_and_detects_damage() {
        let j = sample(StorageIndex([5; 16]));
        let raw = j.encode();
        assert_eq!(Journal::decode(&raw).unwrap(), j);
        for cut in [0, 10, raw.len() - 1] {
            assert!(Journal::decode(&raw[..cut]).is_err());
        }
        let mut flipped = raw.clone();
        flipped[40] ^= 1;
        assert_eq!(
            Journal::decode(&flipped).unwrap_err(),
            "checksum mismatch".to_string()
        );
    }

    fn expected_file() -> Vec<u8> {
        let mut v = b"he\0\0\0 world".to_vec();
        v.extend_from_slice(&[0; 11]);
        v.extend_from_slice(b"!\0");
        v
    }

    #[test]
    fn run_applies_and_removes_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(&layout.shares).unwrap();
        std::fs::create_dir_all(&layout.journal).unwrap();
        let si = StorageIndex([5; 16]);
        let j = sample(si);
        j.run(&layout).unwrap();
        assert_eq!(
            std::fs::read(layout.share_path(&si, 3)).unwrap(),
            expected_file()
        );
        assert!(!layout.journal_path(&si).exists());
        assert_eq!(std::fs::read_dir(&layout.journal).unwrap().count(), 0);
    }

    /// However much of a journal had landed before a crash, replaying it gives the
    /// same files as applying it once.
    #[test]
    fn replay_after_any_prefix_is_idempotent() {
        let si = StorageIndex([6; 16]);
        let full = sample(si);
        for cut in 0..=full.ops.len() {
            let dir = tempfile::tempdir().unwrap();
            let layout = Layout::new(dir.path());
            std::fs::create_dir_all(&layout.shares).unwrap();
            std::fs::create_dir_all(&layout.journal).unwrap();
            // Share 4 exists before and is unlinked by the journal.
            std::fs::create_dir_all(layout.bucket_dir(&si)).unwrap();
            std::fs::write(layout.share_path(&si, 4), b"old").unwrap();
            Journal {
                si,
                ops: full.ops[..cut].to_vec(),
            }
            .apply(&layout)
            .unwrap();
            // The committed journal is found at open and replayed.
            std::fs::write(layout.journal_path(&si), full.encode()).unwrap();
            std::fs::write(layout.journal_tmp_path(&StorageIndex([7; 16])), b"junk").unwrap();
            assert_eq!(recover(&layout).unwrap(), 1);
            assert_eq!(
                std::fs::read(layout.share_path(&si, 3)).unwrap(),
                expected_file(),
                "cut at {cut}"
            );
            assert!(!layout.share_path(&si, 4).exists());
            assert_eq!(std::fs::read_dir(&layout.journal).unwrap().count(), 0);
        }
    }

    #[test]
    fn removing_the_last_share_removes_the_bucket_dir() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(&layout.journal).unwrap();
        let si = StorageIndex([8; 16]);
        std::fs::create_dir_all(layout.bucket_dir(&si)).unwrap();
        std::fs::write(layout.share_path(&si, 0), b"x").unwrap();
        Journal {
            si,
            ops: vec![Op::Unlink(0), Op::RemoveBucketDirIfEmpty],
        }
        .run(&layout)
        .unwrap();
        assert!(!layout.bucket_dir(&si).exists());
    }

    #[test]
    fn a_journal_under_the_wrong_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(&layout.journal).unwrap();
        let j = sample(StorageIndex([1; 16]));
        std::fs::write(layout.journal_path(&StorageIndex([2; 16])), j.encode()).unwrap();
        let err = recover(&layout).unwrap_err();
        assert!(err.to_string().contains("is for storage index"), "{err}");
    }
}
