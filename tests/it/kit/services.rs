//! Throwaway infrastructure around swampgate, each a real server on 127.0.0.1 on a
//! free port in a temp dir, stopped by pid however the test ends:
//!
//! - [`postgres`]: a PostgreSQL 15 cluster (Debian's binaries under
//!   `/usr/lib/postgresql/15/bin`, or `SWAMPGATE_PG_BIN`) with one database, for
//!   `[accounting] database = "postgres://…"`. PostgreSQL refuses to run as root:
//!   when the tests run as root, `initdb` and `postgres` run as `nobody` (set in
//!   the child before exec, so the postgres pid is the guarded pid).
//! - [`haproxy`]: HAProxy (Debian's `haproxy`) in `mode tcp`, `balance source`, in
//!   front of given backends, with health checks every 500 ms.
//! - [`share_files`]: the shares a Tahoe storage node holds, with their sizes.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, run_ok, Process, CLI_TIMEOUT, STARTUP_TIMEOUT};

/// Where PostgreSQL's server binaries are.
fn pg_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("SWAMPGATE_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: install postgresql-15 (Debian), or set SWAMPGATE_PG_BIN",
        p.display()
    );
    p
}

/// `nobody`'s uid and gid when running as root (PostgreSQL will not run as root),
/// else `None` (run as ourselves).
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: plain syscalls; getpwnam's result is read before any other call.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"nobody".as_ptr());
        assert!(!pw.is_null(), "running as root and there is no user nobody");
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// A `Command` for a PostgreSQL server binary, as the unprivileged user if need be.
fn pg_command(name: &str, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(pg_bin(name));
    if let Some((uid, gid)) = user {
        // std drops the supplementary groups too when it changes uid from root.
        cmd.uid(uid).gid(gid);
    }
    cmd.env("LC_ALL", "C").env_remove("PGDATA");
    cmd
}

/// A running throwaway PostgreSQL cluster; dropping it stops the server (a fast
/// shutdown, then SIGKILL) and deletes its directory.
pub struct Postgres {
    process: Process,
    port: u16,
    database: String,
    // Dropped after the process: the server's files go once it is stopped.
    dir: tempfile::TempDir,
}

impl Postgres {
    /// `postgres://postgres@127.0.0.1:PORT/DATABASE` (trust authentication on
    /// loopback: the cluster is the test's own).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port, self.database
        )
    }

    /// Runs one SQL statement with `psql` and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let mut cmd = Command::new(pg_bin("psql"));
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(self.url())
            .env("LC_ALL", "C");
        run_ok("psql", cmd, &self.log_dir(), CLI_TIMEOUT)
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.process.try_status().is_none() {
            // SIGINT: fast shutdown (SIGTERM, what Process::stop sends, waits for
            // every client to leave).
            self.process.signal(libc::SIGINT);
            self.process.wait_timeout(Duration::from_secs(10));
        }
        self.process.stop();
    }
}

/// Starts a throwaway PostgreSQL cluster on a free port in a temp dir, with a
/// database named `database`, and waits until it accepts connections. Panics (with
/// the logs' tails) if it cannot.
pub fn postgres(database: &str) -> Postgres {
    let dir = tempfile::Builder::new()
        .prefix("swampgate-pg-")
        .tempdir()
        .expect("creating the cluster's temp dir");
    let user = unprivileged();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        // nobody must reach its dir: every directory above it searchable by others.
        use std::os::unix::fs::PermissionsExt;
        for up in dir.path().ancestors().skip(1) {
            let mode = std::fs::metadata(up).map_or(0, |m| m.permissions().mode());
            assert!(
                mode & 0o001 != 0,
                "{} is not searchable by nobody, who runs PostgreSQL when the tests run \
                 as root: point TMPDIR elsewhere (e.g. /tmp)",
                up.display()
            );
        }
    }
    let logs = dir.path().join("logs");
    let data = dir.path().join("data");
    let mut initdb = pg_command("initdb", user);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
    run_ok("initdb", initdb, &logs, STARTUP_TIMEOUT);
    let port = free_port();
    let mut cmd = pg_command("postgres", user);
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.path().display()))
        .args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
    let mut process = Process::spawn("postgres", cmd, &logs);
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while !process
        .stderr()
        .contains("database system is ready to accept connections")
    {
        if let Some(status) = process.try_status() {
            panic!("postgres exited ({status})\n{}", process.log_tail());
        }
        assert!(
            Instant::now() < deadline,
            "postgres not ready within {STARTUP_TIMEOUT:?}\n{}",
            process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut createdb = Command::new(pg_bin("createdb"));
    createdb
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .arg(database)
        .env("LC_ALL", "C");
    run_ok("createdb", createdb, &logs, CLI_TIMEOUT);
    Postgres {
        process,
        port,
        database: database.to_string(),
        dir,
    }
}

/// A running HAProxy; dropping it stops it and deletes its directory.
pub struct Haproxy {
    _process: Process,
    config: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// The generated `haproxy.cfg`.
    pub fn config(&self) -> &str {
        &self.config
    }
}

/// The `haproxy.cfg` of [`haproxy`]: one TCP frontend on `127.0.0.1:port`, one
/// backend with source affinity over `backends`, each health-checked (a TCP
/// connect) every 500 ms so a dead one is out within a second; a connection that
/// cannot reach its server is redispatched to another. Long client and server
/// timeouts: Foolscap connections stay open between calls.
pub fn haproxy_config(port: u16, backends: &[u16]) -> String {
    let mut c = format!(
        "global\n    maxconn 1000\n\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 1h\n    \
         timeout server 1h\n    option redispatch\n    retries 3\n\n\
         frontend gate\n    bind 127.0.0.1:{port}\n    default_backend gates\n\n\
         backend gates\n    balance source\n    hash-type consistent\n"
    );
    for (i, b) in backends.iter().enumerate() {
        c += &format!("    server gate{i} 127.0.0.1:{b} check inter 500ms fall 1 rise 2\n");
    }
    c
}

/// Starts HAProxy (`haproxy -db`, in the foreground) with [`haproxy_config`] on
/// `port` (take it from [`free_port`]: the backends may need it for their
/// `location` before HAProxy starts) and waits until it accepts connections.
pub fn haproxy(port: u16, backends: &[u16]) -> Haproxy {
    let dir = tempfile::Builder::new()
        .prefix("swampgate-haproxy-")
        .tempdir()
        .expect("creating HAProxy's temp dir");
    let config = haproxy_config(port, backends);
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, &config).unwrap();
    // Debian's path first: /usr/sbin is not on every user's PATH.
    let program = if Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    };
    let logs = dir.path().join("logs");
    let mut check = Command::new(program);
    check.arg("-c").arg("-f").arg(&cfg);
    run_ok("haproxy -c", check, &logs, CLI_TIMEOUT);
    let mut cmd = Command::new(program);
    cmd.arg("-db").arg("-f").arg(&cfg);
    let mut process = Process::spawn("haproxy", cmd, &logs);
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if let Some(status) = process.try_status() {
            panic!("haproxy exited ({status})\n{}", process.log_tail());
        }
        assert!(
            Instant::now() < deadline,
            "haproxy not listening on {port} within {STARTUP_TIMEOUT:?}\n{}",
            process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Haproxy {
        _process: process,
        config,
        _dir: dir,
    }
}

/// Every share file under a storage node's `shares` dir with the size the client
/// allocated (immutable: the header's data size) or wrote (mutable: the
/// container's data length); `incoming/` (unfinished uploads) is left out.
pub fn share_files(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if e.file_name() != "incoming" {
                    stack.push(p);
                }
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let size = if bytes.starts_with(b"Tahoe mutable container v") {
                u64::from_be_bytes(bytes[84..92].try_into().unwrap())
            } else {
                u64::from(u32::from_be_bytes(bytes[4..8].try_into().unwrap()))
            };
            out.insert(p, size);
        }
    }
    out
}
