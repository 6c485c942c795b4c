//! The Python virtualenvs holding the real peers (tahoe-lafs, foolscap), one per
//! [`Release`], each pinned by a full freeze in `tests/interop/`:
//! - Tahoe-LAFS 1.20.0 with foolscap 24.9.0 (`requirements.txt`, Python 3.11 or
//!   `SWAMPGATE_PYTHON`): every interop test, and the Python scripts;
//! - Tahoe-LAFS 1.18.0 with foolscap 21.7.0 (`requirements-1.18.txt`, Python 3.10:
//!   `SWAMPGATE_PYTHON310`, else `python3.10` on PATH, else pyenv's 3.10): the
//!   legacy Foolscap-only peer;
//! - Tahoe-LAFS 1.17.1 with foolscap 0.13.1 (`requirements-1.17.txt`, Python 2.7:
//!   `SWAMPGATE_PYTHON27`, else `python2.7` on PATH, else pyenv's 2.7; made with
//!   virtualenv, as 2.7 has no venv module): the oldest legacy peer.
//!
//! Each lives in `CARGO_TARGET_TMPDIR/<name>` and is shared by every test binary of
//! that target dir. Creation is serialised by an exclusive lock on `<name>.lock`
//! next to it, so parallel test binaries build it once. It is complete only when
//! `<name>/swampgate-venv.ok` holds the fingerprint of its requirements file and of
//! the Python that built it; anything else (no marker, a stale one, a build
//! interrupted half-way) is deleted and rebuilt. A build that fails panics with
//! pip's output: the interop tests cannot run without it, and must not pretend to
//! pass.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use fs4::fs_std::FileExt;
use sha2::{Digest, Sha256};

use super::process::Process;

/// Environment variable naming the Python used to create the 1.20 venv (default
/// `python3`).
pub const PYTHON_ENV: &str = "SWAMPGATE_PYTHON";

/// Environment variable naming the Python 3.10 used to create the 1.18 venv.
pub const PYTHON310_ENV: &str = "SWAMPGATE_PYTHON310";

/// Environment variable naming the Python 2.7 used to create the 1.17 venv.
pub const PYTHON27_ENV: &str = "SWAMPGATE_PYTHON27";

/// The virtualenv that makes the Python 2.7 venv (the last release supporting 2.7
/// as a target with a working pip).
const VIRTUALENV_PY27: &str = "virtualenv==20.15.1";

/// A Tahoe-LAFS release the tests run as a real peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Release {
    /// Tahoe-LAFS 1.20.0, foolscap 24.9.0: Foolscap and HTTP (GBS).
    #[default]
    V1_20,
    /// Tahoe-LAFS 1.18.0, foolscap 21.7.0: Foolscap only. Its `tahoe run` has no
    /// `--allow-stdin-close` and its tahoe.cfg no `force_foolscap`.
    V1_18,
    /// Tahoe-LAFS 1.17.1, foolscap 0.13.1, on Python 2.7: Foolscap only, as 1.18.
    V1_17,
}

impl Release {
    /// `1.20.0`, `1.18.0`.
    pub fn version(self) -> &'static str {
        match self {
            Release::V1_20 => "1.20.0",
            Release::V1_18 => "1.18.0",
            Release::V1_17 => "1.17.1",
        }
    }

    /// True if this release serves and uses the HTTP storage protocol.
    pub fn speaks_http(self) -> bool {
        self == Release::V1_20
    }

    fn venv_name(self) -> &'static str {
        match self {
            Release::V1_20 => "interop-venv",
            Release::V1_18 => "interop-venv-1.18",
            Release::V1_17 => "interop-venv-1.17",
        }
    }

    /// The pinned requirements file of this release's venv.
    pub fn requirements(self) -> PathBuf {
        super::interop_dir().join(match self {
            Release::V1_20 => "requirements.txt",
            Release::V1_18 => "requirements-1.18.txt",
            Release::V1_17 => "requirements-1.17.txt",
        })
    }

    /// The interpreter that builds this release's venv.
    fn python(self) -> Result<String, String> {
        match self {
            Release::V1_20 => Ok(std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into())),
            Release::V1_18 => find_python(PYTHON310_ENV, "3.10"),
            Release::V1_17 => find_python(PYTHON27_ENV, "2.7"),
        }
    }
}

/// Python `version` (e.g. `3.10`): `$ENV`, else `pythonVERSION` if it runs, else
/// the newest such version under pyenv's `versions/`.
fn find_python(env: &str, version: &str) -> Result<String, String> {
    if let Ok(p) = std::env::var(env) {
        return Ok(p);
    }
    let exe = format!("python{version}");
    let runs = |p: &str| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs(&exe) {
        return Ok(exe);
    }
    // pyenv's root: `pyenv root`, else $PYENV_ROOT, else ~/.pyenv (pyenv need not
    // be on PATH where the tests run).
    let root = Command::new("pyenv")
        .arg("root")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .or_else(|| std::env::var_os("PYENV_ROOT").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    let mut found: Vec<PathBuf> = root
        .and_then(|r| fs::read_dir(r.join("versions")).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{version}."))
        })
        .map(|e| e.path().join("bin").join(&exe))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    match found.pop() {
        Some(p) => Ok(p.display().to_string()),
        None => Err(format!(
            "no Python {version} found: set {env}, put {exe} on PATH, or install \
             {version} with pyenv"
        )),
    }
}

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

/// The shared 1.20 venv, built (or checked) once per test process. Panics with the
/// reason if it cannot be built; every later call in the process panics the same way.
pub fn venv() -> &'static Venv {
    venv_of(Release::V1_20)
}

/// The shared venv of `release`, as [`venv`].
pub fn venv_of(release: Release) -> &'static Venv {
    static V1_20: OnceLock<Result<Venv, String>> = OnceLock::new();
    static V1_18: OnceLock<Result<Venv, String>> = OnceLock::new();
    static V1_17: OnceLock<Result<Venv, String>> = OnceLock::new();
    let cell = match release {
        Release::V1_20 => &V1_20,
        Release::V1_18 => &V1_18,
        Release::V1_17 => &V1_17,
    };
    match cell.get_or_init(|| build_or_reuse(release)) {
        Ok(venv) => venv,
        Err(msg) => panic!("{msg}"),
    }
}

fn build_or_reuse(release: Release) -> Result<Venv, String> {
    let requirements = release.requirements();
    let fail = |what: String| {
        format!(
            "the interop tests need a Python venv with the real Tahoe-LAFS {} peers \
             (pinned in {}), and it could not be set up: {what}",
            release.version(),
            requirements.display()
        )
    };
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&root).map_err(|e| fail(format!("creating {}: {e}", root.display())))?;
    let name = release.venv_name();
    let dir = root.join(name);
    let lock_path = root.join(format!("{name}.lock"));
    let lock = File::create(&lock_path)
        .map_err(|e| fail(format!("creating {}: {e}", lock_path.display())))?;
    lock.lock_exclusive()
        .map_err(|e| fail(format!("locking {}: {e}", lock_path.display())))?;
    // The lock is released when `lock` is dropped, on every path out of here.

    let python = release.python().map_err(fail)?;
    let fingerprint = fingerprint(&python, &requirements).map_err(fail)?;
    let marker = dir.join(MARKER);
    if fs::read_to_string(&marker).ok().as_deref() == Some(fingerprint.as_str())
        && dir.join("bin/python").exists()
    {
        return Ok(Venv { dir });
    }

    eprintln!(
        "harness: building the Tahoe-LAFS {} venv in {} (one time)",
        release.version(),
        dir.display()
    );
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .map_err(|e| fail(format!("removing stale {}: {e}", dir.display())))?;
    }
    let logs = root.join(format!("{name}-build-logs"));
    let _ = fs::remove_dir_all(&logs);
    let pip_env = [
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PIP_NO_INPUT", "1"),
    ];
    if release == Release::V1_17 {
        // Python 2.7 has no venv module: virtualenv, installed beside the venv.
        let support = root.join(format!("{name}-virtualenv"));
        let _ = fs::remove_dir_all(&support);
        let mut get = Command::new(&python);
        get.args(["-m", "pip", "install", "--progress-bar", "off", "--target"])
            .arg(&support)
            .arg(VIRTUALENV_PY27)
            .envs(pip_env);
        step("pip install virtualenv", get, &logs, BUILD_TIMEOUT).map_err(fail)?;
        let mut create = Command::new(&python);
        create
            .args(["-m", "virtualenv"])
            .arg(&dir)
            .env("PYTHONPATH", &support);
        step("python -m virtualenv", create, &logs, BUILD_TIMEOUT).map_err(fail)?;
    } else {
        let mut create = Command::new(&python);
        create.args(["-m", "venv"]).arg(&dir);
        step("python -m venv", create, &logs, BUILD_TIMEOUT).map_err(fail)?;
    }
    let venv = Venv { dir };
    let mut install = venv.command("python");
    install
        .args(["-m", "pip", "install", "--progress-bar", "off", "-r"])
        .arg(&requirements)
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
        "import allmydata.client, allmydata.storage.server, foolscap",
    ]);
    step("import check", check, &logs, BUILD_TIMEOUT).map_err(fail)?;

    let tmp = venv.dir.join(format!("{MARKER}.tmp"));
    fs::write(&tmp, &fingerprint)
        .and_then(|()| fs::rename(&tmp, &marker))
        .map_err(|e| fail(format!("writing {}: {e}", marker.display())))?;
    Ok(venv)
}

/// sha256 over the requirements file and the interpreter's version.
fn fingerprint(python: &str, requirements: &Path) -> Result<String, String> {
    let requirements =
        fs::read(requirements).map_err(|e| format!("reading {}: {e}", requirements.display()))?;
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
