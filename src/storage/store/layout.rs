//! Where things live under the store root.
//!
//! Every path is built from typed values only: a [`StorageIndex`] becomes its
//! 26-character base32 form (alphabet `a-z2-7`), a share number its decimal digits.
//! Nothing a client sends is ever used as a path component, so no request can name a
//! path outside the store, whatever its bytes.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use crate::storage::{ShareNum, StorageIndex};

/// Tahoe's name for the directory of finished shares (and, inside it, `incoming`).
const SHARES: &str = "shares";
const INCOMING: &str = "incoming";
const ADVISORIES: &str = "corruption-advisories";
/// Ours: committed mutation journals, one per storage index being mutated.
const JOURNAL: &str = "mutation-journal";
/// Ours: held locked (flock) while a process has the store open.
pub(super) const LOCK_FILE: &str = "swampgate-store.lock";

#[derive(Clone, Debug)]
pub(super) struct Layout {
    pub root: PathBuf,
    pub shares: PathBuf,
    pub incoming: PathBuf,
    pub advisories: PathBuf,
    pub journal: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        let shares = root.join(SHARES);
        Layout {
            root: root.to_path_buf(),
            incoming: shares.join(INCOMING),
            shares,
            advisories: root.join(ADVISORIES),
            journal: root.join(JOURNAL),
        }
    }

    /// `<prefix>/<si>`, where the prefix is the first two base32 characters (Tahoe's
    /// `storage_index_to_dir`).
    fn si_dir(si: &StorageIndex) -> PathBuf {
        let s = si.to_base32();
        Path::new(&s[..2]).join(&s)
    }

    /// `shares/<prefix>/<si>`: the finished shares of `si`, mutable or immutable.
    pub fn bucket_dir(&self, si: &StorageIndex) -> PathBuf {
        self.shares.join(Self::si_dir(si))
    }

    pub fn share_path(&self, si: &StorageIndex, shnum: ShareNum) -> PathBuf {
        self.bucket_dir(si).join(shnum.to_string())
    }

    /// `shares/incoming/<prefix>/<si>`: immutable shares being uploaded.
    pub fn incoming_bucket_dir(&self, si: &StorageIndex) -> PathBuf {
        self.incoming.join(Self::si_dir(si))
    }

    pub fn incoming_share_path(&self, si: &StorageIndex, shnum: ShareNum) -> PathBuf {
        self.incoming_bucket_dir(si).join(shnum.to_string())
    }

    /// The committed journal of a mutation of `si`.
    pub fn journal_path(&self, si: &StorageIndex) -> PathBuf {
        self.journal.join(si.to_base32())
    }

    /// Where a journal is written before it is committed by renaming.
    pub fn journal_tmp_path(&self, si: &StorageIndex) -> PathBuf {
        self.journal.join(format!("{}.tmp", si.to_base32()))
    }

    /// Tahoe's corruption report name, `<time>--<si>-<shnum>`; `stamp` is made by
    /// the store from the clock (digits, `-`, `T`, `.`), never from a request.
    pub fn advisory_path(&self, stamp: &str, si: &StorageIndex, shnum: ShareNum) -> PathBuf {
        self.advisories.join(format!("{stamp}--{si}-{shnum}"))
    }
}

/// A share file name: the canonical decimal form of a share number. Tahoe accepts any
/// run of digits; we refuse leading zeros so one share has one name.
pub(super) fn parse_share_name(name: &OsStr) -> Option<ShareNum> {
    let s = name.to_str()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: ShareNum = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// The share numbers of the files in `dir`; none if it does not exist.
pub(super) fn list_share_numbers(dir: &Path) -> io::Result<BTreeSet<ShareNum>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e),
    };
    let mut out = BTreeSet::new();
    for entry in rd {
        if let Some(n) = parse_share_name(&entry?.file_name()) {
            out.insert(n);
        }
    }
    Ok(out)
}

/// Make a directory durable: fsync it, so entries created, renamed or removed in it
/// survive a crash.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Create `dir` and any missing parents below `base`, fsyncing each parent whose
/// entries changed.
pub(super) fn create_dir_durable(base: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(base);
    if parent != base && parent.starts_with(base) {
        create_dir_durable(base, parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Component;

    use super::*;

    #[test]
    fn share_names_are_canonical_decimal() {
        assert_eq!(parse_share_name(OsStr::new("0")), Some(0));
        assert_eq!(parse_share_name(OsStr::new("255")), Some(255));
        assert_eq!(parse_share_name(OsStr::new("65535")), Some(65535));
        for bad in ["", "007", "65536", "-1", "1.tmp", "+3", " 3", "x"] {
            assert_eq!(parse_share_name(OsStr::new(bad)), None, "{bad:?}");
        }
    }

    /// Whatever the storage index bytes and share number, every path is the root
    /// followed by plain components drawn from a fixed alphabet.
    #[test]
    fn paths_stay_inside_the_root() {
        let layout = Layout::new(Path::new("/store"));
        let hostile: Vec<[u8; 16]> = vec![
            [0; 16],
            [0xff; 16],
            *b"../../../etc/pas",
            *b"/\\..\0\0\0\0\0\0\0\0\0\0\0\0",
            *b"incoming/../../x",
        ];
        for bytes in hostile {
            let si = StorageIndex(bytes);
            for shnum in [0, 1, 255, 256, ShareNum::MAX] {
                for p in [
                    layout.bucket_dir(&si),
                    layout.share_path(&si, shnum),
                    layout.incoming_bucket_dir(&si),
                    layout.incoming_share_path(&si, shnum),
                    layout.journal_path(&si),
                    layout.journal_tmp_path(&si),
                    layout.advisory_path("2024-01-02T030405.678901", &si, shnum),
                ] {
                    let rest = p.strip_prefix("/store").expect("under the root");
                    for c in rest.components() {
                        let Component::Normal(name) = c else {
                            panic!("{p:?} has component {c:?}");
                        };
                        let name = name.to_str().unwrap();
                        assert!(
                            name.bytes().all(|b| b.is_ascii_lowercase()
                                || b.is_ascii_digit()
                                || b"-.T".contains(&b)),
                            "{p:?}"
                        );
                        assert!(name != "." && name != "..");
                    }
                }
            }
        }
    }

    #[test]
    fn share_paths_follow_tahoe_layout() {
        let layout = Layout::new(Path::new("/s"));
        let si = StorageIndex([0; 16]);
        assert_eq!(
            layout.share_path(&si, 7),
            Path::new("/s/shares/aa/aaaaaaaaaaaaaaaaaaaaaaaaaa/7")
        );
        assert_eq!(
            layout.incoming_share_path(&si, 7),
            Path::new("/s/shares/incoming/aa/aaaaaaaaaaaaaaaaaaaaaaaaaa/7")
        );
    }
}
