//! The state directory: identity and swissnums that make a link's URLs stable across
//! restarts, and the `links/NAME.{furl,nurl}` files other tools read.
//!
//! ```text
//! STATE/private/node.pem            the served identity (Tahoe's node.pem layout)
//! STATE/private/client.pem          the identity used to dial Foolscap upstreams
//! STATE/private/links/NAME.swissnum a link's swissnum (unless adopted)
//! STATE/private/uploads/NAME.journal a GBS-upstream link's unfinished uploads
//! STATE/links/NAME.furl, NAME.nurl  the URLs clients use
//! STATE/accounts/NAME.furl, NAME.nurl an account's URLs
//! STATE/private/accounting.sqlite   accounts (their swissnums) and usage (unless [accounting] database)
//! STATE/introducer/announcements.json the relay's announcements (with [introducer])
//! STATE/shares/                     the embedded store of `local:shares`
//! ```

use std::path::{Path, PathBuf};

use crate::foolscap::Furl;
use crate::identity::Identity;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct StateError {
    pub path: String,
    pub why: String,
}

fn err(path: &Path, why: impl std::fmt::Display) -> StateError {
    StateError {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// Write `text` to `path` atomically ([`crate::durable::write_atomic`]), mode 0600
/// if `secret`.
pub fn write_atomic(path: &Path, text: &str, secret: bool) -> Result<(), StateError> {
    crate::durable::write_atomic(path, text.as_bytes(), secret).map_err(|e| err(path, e))
}

/// A new random swissnum: 32 lowercase base32 characters (160 bits), as Tahoe makes.
pub fn new_swissnum() -> String {
    crate::base32::base32_lower(&rand::random::<[u8; 20]>())
}

#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        std::fs::create_dir_all(root.join("private"))
            .map_err(|e| err(root, format!("cannot create: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = root.join("private");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| err(&p, e))?;
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The served identity, created on first use.
    pub fn identity(&self) -> Result<Identity, StateError> {
        let p = self.root.join("private/node.pem");
        Identity::load_or_generate(&p).map_err(|e| err(&p, e))
    }

    /// The identity for dialling Foolscap upstreams: distinct from the served one,
    /// which may be the upstream's own (adoption).
    pub fn client_identity(&self) -> Result<Identity, StateError> {
        let p = self.root.join("private/client.pem");
        Identity::load_or_generate(&p).map_err(|e| err(&p, e))
    }

    /// The introducer relay's persisted announcements.
    pub fn announcements(&self) -> PathBuf {
        self.root.join("introducer/announcements.json")
    }

    /// A link's swissnum, created on first use.
    pub fn swissnum(&self, link: &str) -> Result<String, StateError> {
        self.swissnum_at(
            &self
                .root
                .join("private/links")
                .join(format!("{link}.swissnum")),
        )
    }

    /// The introducer relay's swissnum, created on first use so the introducer FURL
    /// is stable across restarts.
    pub fn introducer_swissnum(&self) -> Result<String, StateError> {
        self.swissnum_at(&self.root.join("private/introducer.swissnum"))
    }

    /// Where the introducer relay's FURL is written.
    pub fn introducer_furl(&self) -> PathBuf {
        self.root.join("introducer.furl")
    }

    fn swissnum_at(&self, p: &Path) -> Result<String, StateError> {
        match std::fs::read_to_string(p) {
            Ok(s) => {
                let s = s.trim().to_string();
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(err(p, "not a swissnum (expected base32 characters)"));
                }
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = new_swissnum();
                write_atomic(p, &s, true)?;
                Ok(s)
            }
            Err(e) => Err(err(p, e)),
        }
    }

    /// The unfinished uploads of a link to a GBS upstream, with their upload
    /// secrets (see [`crate::storage::layer::journal`]).
    pub fn upload_journal(&self, link: &str) -> PathBuf {
        self.root
            .join("private/uploads")
            .join(format!("{link}.journal"))
    }

    /// Record a link's URLs in `STATE/links/`.
    pub fn write_link_urls(&self, link: &str, furl: &str, nurl: &str) -> Result<(), StateError> {
        let d = self.root.join("links");
        write_atomic(&d.join(format!("{link}.furl")), &format!("{furl}\n"), true)?;
        write_atomic(&d.join(format!("{link}.nurl")), &format!("{nurl}\n"), true)
    }

    /// Write an account's URLs to `accounts/NAME.{furl,nurl}`.
    pub fn write_account_urls(&self, name: &str, furl: &str, nurl: &str) -> Result<(), StateError> {
        let d = self.root.join("accounts");
        write_atomic(&d.join(format!("{name}.furl")), &format!("{furl}\n"), true)?;
        write_atomic(&d.join(format!("{name}.nurl")), &format!("{nurl}\n"), true)
    }

    /// Where an account's URL files are.
    pub fn account_urls(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.root.join("accounts");
        (
            d.join(format!("{name}.furl")),
            d.join(format!("{name}.nurl")),
        )
    }

    /// A link's URL files (`links/NAME.{furl,nurl}`), as the last start wrote them.
    pub fn link_urls(&self, link: &str) -> (PathBuf, PathBuf) {
        let d = self.root.join("links");
        (
            d.join(format!("{link}.furl")),
            d.join(format!("{link}.nurl")),
        )
    }

    /// Resolve a path of the config relative to the state dir.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }
}

/// A Tahoe storage node's identity: its certificate and key, and the swissnum of its
/// storage FURL, so a link serves exactly the FURL (but for hints) and NURL the node
/// would announce.
///
/// Refused if a private file of the node (`node.pem`, `node.privkey`,
/// `storage.furl`) is readable by every user: swampgate does not serve a key
/// anyone on the host could have copied. Tahoe protects them with the
/// directory: `private/` is mode 0700 while the files are 0644, so a file counts as
/// readable by every user only if `private/` also lets every user in. The key is
/// read, never copied.
pub fn adopt(nodedir: &Path) -> Result<(Identity, String), StateError> {
    for name in ["node.pem", "node.privkey", "storage.furl"] {
        check_not_world_readable(&nodedir.join("private").join(name))?;
    }
    let pem = nodedir.join("private/node.pem");
    let id = Identity::load(&pem).map_err(|e| err(&pem, e))?;
    let furl_path = nodedir.join("private/storage.furl");
    let text = std::fs::read_to_string(&furl_path).map_err(|e| err(&furl_path, e))?;
    let furl = Furl::parse(text.trim()).map_err(|e| err(&furl_path, e))?;
    if furl.tubid != id.tubid() {
        return Err(err(
            &furl_path,
            format!(
                "names tubid {} but node.pem has tubid {}",
                furl.tubid,
                id.tubid()
            ),
        ));
    }
    Ok((id, furl.swissnum))
}

/// A secret file of an adopted node must not be readable by every user: neither
/// the file (o+r) nor its directory (o+x) may let them (a missing file is left to
/// the code that reads it).
fn check_not_world_readable(path: &Path) -> Result<(), StateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode_of = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
        let dir_open = path
            .parent()
            .and_then(|d| mode_of(d).ok())
            .is_some_and(|m| m & 0o001 != 0);
        if let Ok(mode) = mode_of(path) {
            if dir_open && mode & 0o004 != 0 {
                return Err(err(
                    path,
                    format!(
                        "is readable by every user (mode {mode:04o}, and its directory lets \
                         every user in); a node's secrets must not be: `chmod o-rwx {}`, and \
                         let swampgate read it as the node's user or group (see SECURITY.md)",
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_swissnums_persist() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(d.path()).unwrap();
        let a = (s.identity().unwrap(), s.swissnum("x").unwrap());
        let s2 = StateDir::open(d.path()).unwrap();
        let b = (s2.identity().unwrap(), s2.swissnum("x").unwrap());
        assert_eq!(a.0.tubid(), b.0.tubid());
        assert_eq!(a.1, b.1);
        assert_eq!(a.1.len(), 32);
        assert_ne!(s.client_identity().unwrap().tubid(), a.0.tubid());
        s.write_link_urls("x", "pb://f", "pb://n#v=1").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("links/x.furl")).unwrap(),
            "pb://f\n"
        );
    }

    #[test]
    fn adopt_checks_the_node_dir() {
        let d = tempfile::tempdir().unwrap();
        let e = adopt(d.path()).unwrap_err();
        assert!(e.path.ends_with("node.pem"), "{e}");
        let id = Identity::generate().unwrap();
        id.save(&d.path().join("private/node.pem")).unwrap();
        std::fs::write(
            d.path().join("private/storage.furl"),
            format!("pb://{}@tcp:127.0.0.1:1/abc\n", id.tubid()),
        )
        .unwrap();
        let chmod = |name: &str, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            let p = d.path().join("private").join(name);
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        // World-readable secrets: refused, saying how to fix it. As Tahoe makes
        // them (files 0644 in a 0700 private/), they are not.
        chmod("storage.furl", 0o644);
        chmod("node.pem", 0o644);
        chmod("", 0o700);
        adopt(d.path()).unwrap();
        chmod("", 0o755);
        chmod("node.pem", 0o600);
        let e = adopt(d.path()).unwrap_err();
        assert!(e.path.ends_with("storage.furl"), "{e}");
        assert!(
            e.why.contains("mode 0644") && e.why.contains("chmod o-rwx"),
            "{e}"
        );
        chmod("storage.furl", 0o640);
        chmod("node.pem", 0o604);
        assert!(adopt(d.path()).unwrap_err().path.ends_with("node.pem"));
        chmod("node.pem", 0o600);
        let (got, swiss) = adopt(d.path()).unwrap();
        assert_eq!(got.tubid(), id.tubid());
        assert_eq!(swiss, "abc");
        std::fs::write(
            d.path().join("private/storage.furl"),
            "pb://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@tcp:127.0.0.1:1/abc\n",
        )
        .unwrap();
        assert!(adopt(d.path()).unwrap_err().why.contains("names tubid"));
    }
}
