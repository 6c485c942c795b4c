//! The Python virtualenv holding the real peers (tahoe-lafs, foolscap), pinned by
//! `tests/interop/requirements.txt`.
//!
//! It lives in `CARGO_TARGET_TMPDIR/interop-venv` and is shared by every test binary
//! of that target dir. Creation is serialised by an exclusive lock on
//! `interop-venv.lock` next to it, so parallel test binaries build it once. It is
//! complete only when `interop-venv/swampgate-venv.ok` holds the fingerprint of
//! requirements.txt and of the Python that built it; anything else (no marker, a
//! stale one, a build interrupted half-way) is deleted and rebuilt. A build that
//! fails panics with pip's output: the interop tests cannot run without it, and
//! must not pretend to pass.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use fs4::fs_std::FileExt;
use sha2::{Digest, Sha256};

use super::process::Process;

/// Environment variable naming the Python used to create the venv (default `python3`).
pub const PYTHON_ENV: &str = "SWAMPGATE_PYTHON";

/// Upper bound for `pip install` (downloads and a few native builds).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

const MARKER: &str = "swampgate-venv.ok";

/// A complete virtualenv with the pinned peers installed.
#[derive(Debug)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// An executable of the venv's `bin/` (e.g. `flogtool`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// A `Command` for `bin/NAME` with a clean Python environment (no inherited
    /// `PYTHONPATH`/`PYTHONHOME`) and unbuffered output, so logs are complete even
    /// when the process is killed. Start it with [`Process::spawn`].
    pub fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin(name));
        cmd.env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env("PYTHONUNBUFFERED", "1");
        cmd
    }
}

/// The shared venv, built (or checked) once per test process. Panics with the
/// reason if it cannot be built; every later call in the process panics the same way.
pub fn venv() -> &'static Venv {
    static VENV: OnceLock<Result<Venv, String>> = OnceLock::new();
    match VENV.get_or_init(build_or_reuse) {
        Ok(venv) => venv,
        Err(msg) => panic!("{msg}"),
    }
}

/// `tests/interop/requirements.txt`.
pub fn requirements_path() -> PathBuf {
    super::interop_dir().join("requirements.txt")
}

fn build_or_reuse() -> Result<Venv, String> {
    let fail = |what: String| {
        format!(
            "the interop tests need a Python venv with the real Tahoe-LAFS peers \
             (pinned in {}), and it could not be set up: {what}",
            requirements_path().display()
        )
    };
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&root).map_err(|e| fail(format!("creating {}: {e}", root.display())))?;
    let dir = root.join("interop-venv");
    let lock_path = root.join("interop-venv.lock");
    let lock = File::create(&lock_path)
        .map_err(|e| fail(format!("creating {}: {e}", lock_path.display())))?;
    lock.lock_exclusive()
        .map_err(|e| fail(format!("locking {}: {e}", lock_path.display())))?;
    // The lock is released when `lock` is dropped, on every path out of here.

    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_owned());
    let fingerprint = fingerprint(&python).map_err(fail)?;
    let marker = dir.join(MARKER);
    if fs::read_to_string(&marker).ok().as_deref() == Some(fingerprint.as_str())
        && dir.join("bin/python").exists()
    {
        return Ok(Venv { dir });
    }

    eprintln!(
        "harness: building the interop venv in {} (one time)",
        dir.display()
    );
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .map_err(|e| fail(format!("removing stale {}: {e}", dir.display())))?;
    }
    let logs = root.join("interop-venv-build-logs");
    let _ = fs::remove_dir_all(&logs);
    let pip_env = [
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PIP_NO_INPUT", "1"),
    ];
    let mut create = Command::new(&python);
    create.args(["-m", "venv"]).arg(&dir);
    step("python -m venv", create, &logs, BUILD_TIMEOUT).map_err(fail)?;
    let venv = Venv { dir };
    let mut install = venv.command("python");
    install
        .args(["-m", "pip", "install", "--progress-bar", "off", "-r"])
        .arg(requirements_path())
        .envs(pip_env);
    step(
        "pip install -r requirements.txt",
        install,
        &logs,
        BUILD_TIMEOUT,
    )
    .map_err(fail)?;
    let mut check = venv.command("python");
    check.args([
        "-c",
        "import allmydata.client, allmydata.storage.http_server, foolscap",
    ]);
    step("import check", check, &logs, BUILD_TIMEOUT).map_err(fail)?;

    let tmp = venv.dir.join(format!("{MARKER}.tmp"));
    fs::write(&tmp, &fingerprint)
        .and_then(|()| fs::rename(&tmp, &marker))
        .map_err(|e| fail(format!("writing {}: {e}", marker.display())))?;
    Ok(venv)
}

/// sha256 over requirements.txt and the interpreter's version.
fn fingerprint(python: &str) -> Result<String, String> {
    let requirements = fs::read(requirements_path())
        .map_err(|e| format!("reading {}: {e}", requirements_path().display()))?;
    let logs = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
    let mut cmd = Command::new(python);
    cmd.args(["-c", "import sys; print(sys.version)"]);
    let version = step(
        &format!("{python} (set {PYTHON_ENV} to choose another)"),
        cmd,
        logs.path(),
        Duration::from_secs(60),
    )?;
    let mut hash = Sha256::new();
    hash.update(&requirements);
    hash.update(b"\0");
    hash.update(version.as_bytes());
    Ok(hex::encode(hash.finalize()))
}

/// Runs one guarded build step to completion; returns its stdout, or an error
/// carrying its exit status and log tails.
fn step(name: &str, cmd: Command, logs: &Path, timeout: Duration) -> Result<String, String> {
    let mut p =
        Process::try_spawn(name, cmd, logs).map_err(|e| format!("starting `{name}`: {e}"))?;
    match p.wait_timeout(timeout) {
        Some(status) if status.success() => Ok(p.stdout()),
        Some(status) => Err(format!("`{name}` failed ({status})\n{}", p.log_tail())),
        None => {
            p.stop();
            Err(format!(
                "`{name}` did not finish within {timeout:?}\n{}",
                p.log_tail()
            ))
        }
    }
}
