//! A link's unfinished uploads on disk: what a swampgate that was killed needs to
//! abort them upstream when it starts again.
//!
//! A GBS upstream ties no upload to a connection. When swampgate dies mid-upload,
//! a Tahoe node keeps the share in `incoming/` for 30 minutes, and meanwhile refuses
//! a retry of the same file that share (it allocates no second writer for a share
//! being uploaded). Aborting the upload takes its upload secret, which only the
//! dead process had. So a link to a GBS upstream appends a line for each upload it
//! starts and each it ends to `STATE/private/uploads/LINK.journal` (mode 0600: it
//! holds upload secrets), and at start aborts what is left. A Foolscap upstream
//! needs none: it aborts a connection's uploads when the connection drops.
//!
//! Lines are `+ SI SHNUM SECRET_HEX` and `- SI SHNUM`. They are written, not
//! fsynced: the page cache outlives a killed process, which is the fault this is
//! for; lines lost with a machine crash leave those uploads to the upstream's own
//! timeout. The file is rewritten with only the live uploads when opened and when
//! it holds mostly ended ones. A line torn by a crash is skipped.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use data_encoding::HEXLOWER;

use crate::storage::{Secret, ShareNum, StorageIndex};

/// An upload a previous run left unfinished.
pub type Leftover = ((StorageIndex, ShareNum), Secret);

/// Past this many lines, and four times the live uploads, the file is rewritten.
const COMPACT_AFTER: usize = 1024;

pub struct UploadJournal {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    live: HashMap<(StorageIndex, ShareNum), Secret>,
    lines: usize,
}

impl UploadJournal {
    /// Opens (or creates) the journal at `path` and returns the uploads it holds:
    /// those a previous run left unfinished. They stay in the journal until
    /// [`UploadJournal::finished`] is called for them.
    pub fn open(path: &Path) -> io::Result<(UploadJournal, Vec<Leftover>)> {
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let live = match fs::read_to_string(path) {
            Ok(text) => replay(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(e),
        };
        let file = rewrite(path, &live)?;
        let leftovers = live.iter().map(|(k, s)| (*k, s.clone())).collect();
        let lines = live.len();
        Ok((
            UploadJournal {
                path: path.to_owned(),
                inner: Mutex::new(Inner { file, live, lines }),
            },
            leftovers,
        ))
    }

    /// Records an upload started (or restarted with a new secret).
    pub fn started(&self, si: StorageIndex, sh: ShareNum, secret: &Secret) {
        let mut inner = self.inner.lock().expect("journal");
        inner.live.insert((si, sh), secret.clone());
        let line = format!("+ {si} {sh} {}\n", HEXLOWER.encode(&secret.0));
        self.append(&mut inner, &line);
    }

    /// Records an upload ended: completed or aborted.
    pub fn finished(&self, si: StorageIndex, sh: ShareNum) {
        let mut inner = self.inner.lock().expect("journal");
        if inner.live.remove(&(si, sh)).is_none() {
            return;
        }
        self.append(&mut inner, &format!("- {si} {sh}\n"));
        if inner.lines > COMPACT_AFTER && inner.lines > 4 * inner.live.len() {
            match rewrite(&self.path, &inner.live) {
                Ok(file) => {
                    inner.file = file;
                    inner.lines = inner.live.len();
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), "compacting the upload journal: {e}")
                }
            }
        }
    }

    /// The uploads recorded as started and not finished.
    pub fn live(&self) -> usize {
        self.inner.lock().expect("journal").live.len()
    }

    fn append(&self, inner: &mut Inner, line: &str) {
        // One short write(2) on an O_APPEND file. A failure costs only the cleanup
        // after a crash, so it is logged, not passed to the storage call.
        if let Err(e) = inner.file.write_all(line.as_bytes()) {
            tracing::warn!(path = %self.path.display(), "writing the upload journal: {e}");
        }
        inner.lines += 1;
    }
}

/// The live uploads after the lines of `text`.
fn replay(text: &str) -> HashMap<(StorageIndex, ShareNum), Secret> {
    let mut live = HashMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        let key = |si: &str, sh: &str| Some((StorageIndex::from_base32(si)?, sh.parse().ok()?));
        match words[..] {
            ["+", si, sh, secret] => {
                if let (Some(k), Ok(s)) = (key(si, sh), HEXLOWER.decode(secret.as_bytes())) {
                    live.insert(k, Secret(s));
                }
            }
            ["-", si, sh] => {
                if let Some(k) = key(si, sh) {
                    live.remove(&k);
                }
            }
            // Torn by a crash, or not ours: nothing to abort.
            _ => {}
        }
    }
    live
}

/// Writes `live` to `path` (a temp file renamed over it) and opens it for appending.
fn rewrite(path: &Path, live: &HashMap<(StorageIndex, ShareNum), Secret>) -> io::Result<File> {
    let tmp = path.with_extension("journal.tmp");
    let mut text = String::new();
    for ((si, sh), secret) in live {
        text.push_str(&format!("+ {si} {sh} {}\n", HEXLOWER.encode(&secret.0)));
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    OpenOptions::new().append(true).mode(0o600).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn si(b: u8) -> StorageIndex {
        StorageIndex([b; 16])
    }

    #[test]
    fn what_was_started_and_not_finished_is_left_over_after_a_kill() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("private/uploads/l.journal");
        let (j, left) = UploadJournal::open(&path).unwrap();
        assert!(left.is_empty());
        j.started(si(1), 0, &Secret(vec![1; 32]));
        j.started(si(1), 1, &Secret(vec![2; 32]));
        j.started(si(2), 5, &Secret(vec![3; 32]));
        j.finished(si(1), 0);
        j.finished(si(9), 9); // unknown: ignored
                              // Restarted with a new secret: the newest counts.
        j.started(si(2), 5, &Secret(vec![4; 32]));
        // A crash tears the last line.
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"+ aaaa").unwrap();
        let (j, mut left) = UploadJournal::open(&path).unwrap();
        left.sort_by_key(|(k, _)| *k);
        assert_eq!(
            left,
            vec![
                ((si(1), 1), Secret(vec![2; 32])),
                ((si(2), 5), Secret(vec![4; 32]))
            ]
        );
        // Kept until finished, across another restart; compacted on open.
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        j.finished(si(1), 1);
        j.finished(si(2), 5);
        assert_eq!(j.live(), 0);
        drop(j);
        let (_, left) = UploadJournal::open(&path).unwrap();
        assert!(left.is_empty());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode(&path), 0o600, "it holds upload secrets");
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn compacts_when_mostly_finished() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("l.journal");
        let (j, _) = UploadJournal::open(&path).unwrap();
        j.started(si(7), 0, &Secret(vec![7; 32]));
        for n in 0..2000u64 {
            let s = StorageIndex(u128::from(n).to_be_bytes());
            j.started(s, 0, &Secret(vec![1; 32]));
            j.finished(s, 0);
        }
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= COMPACT_AFTER + 2, "{lines} lines");
        drop(j);
        let (_, left) = UploadJournal::open(&path).unwrap();
        assert_eq!(left, vec![((si(7), 0), Secret(vec![7; 32]))]);
    }
}
