//! Crash-safe file replacement: a SIGKILL or a power cut at any point leaves either
//! the old file or the new one, never a mix. Used for every file swampgate writes
//! whole (state-dir files, persisted announcements).

use std::io::{self, Write};
use std::path::Path;

/// Replace `path` with `bytes`: write a temp file beside it, fsync it, rename it
/// over `path`, then fsync the directory so the rename itself is durable. Mode 0600
/// if `secret` (on Unix). Creates the parent directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
        .to_os_string();
    // A temp name of this writer's own: two writers of one file (the daemon and an
    // `account` command writing an account's URLs at once) must not rename each
    // other's temp file away.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    name.push(format!(".{}.{seq}.tmp", std::process::id()));
    let tmp = dir.join(name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// fsync a directory (its entries: a rename or a new file in it).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/file.json");
        write_atomic(&p, b"one", false).unwrap();
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(d.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The mode is set when the temp file is created.
            let p2 = d.path().join("secret");
            write_atomic(&p2, b"s", true).unwrap();
            let mode = std::fs::metadata(&p2).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn concurrent_writers_of_one_file_all_succeed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.furl");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_atomic(p, &[b'a' + t], true).unwrap();
                    }
                });
            }
        });
        assert_eq!(std::fs::read(&p).unwrap().len(), 1);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }
}
