//! Guarded child processes: every process a test starts is owned by a [`Process`],
//! which stops it by pid when dropped, however the test ends.
//!
//! - Each child is the leader of its own process group; stopping sends SIGTERM to
//!   the group, waits [`STOP_GRACE`], then sends SIGKILL to the group, and reaps.
//! - Each child has `PR_SET_PDEATHSIG = SIGKILL`, so it dies if the test process
//!   dies without running destructors (SIGKILL, abort). Linux ties that signal to
//!   the *thread* that forked the child, so all children are forked by one
//!   process-lifetime "spawner" thread: a node started from a short-lived helper
//!   thread (see [`super::join`]) is not killed when that thread ends.
//! - stdin is `/dev/null`; stdout and stderr go to files in a log directory, and
//!   panics raised by the harness include their tails.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long a process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How many lines of each log a failure message shows.
const TAIL_LINES: usize = 40;

/// A running (or finished, not yet dropped) child process, stopped and reaped on drop.
pub struct Process {
    name: String,
    pid: u32,
    child: Child,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Process {
    /// Spawns `cmd` as a guarded process named `name` (used in messages and log file
    /// names). Its stdout/stderr go to `log_dir/NNN-name.stdout|.stderr` (`NNN`
    /// orders the processes of a test run); `log_dir` is created if needed.
    /// Panics if the process cannot be started.
    pub fn spawn(name: &str, cmd: Command, log_dir: &Path) -> Process {
        let program = format!("{:?}", cmd.get_program());
        Process::try_spawn(name, cmd, log_dir)
            .unwrap_or_else(|e| panic!("starting {name} ({program}): {e}"))
    }

    /// Like [`Process::spawn`], but returns the error if the process cannot be started.
    pub fn try_spawn(name: &str, mut cmd: Command, log_dir: &Path) -> io::Result<Process> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        fs::create_dir_all(log_dir).map_err(|e| with_path(e, "creating log dir", log_dir))?;
        let file_name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let stdout = log_dir.join(format!("{seq:03}-{file_name}.stdout"));
        let stderr = log_dir.join(format!("{seq:03}-{file_name}.stderr"));
        let create = |p: &Path| File::create(p).map_err(|e| with_path(e, "creating log file", p));
        cmd.stdin(Stdio::null())
            .stdout(create(&stdout)?)
            .stderr(create(&stderr)?)
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (prctl, getppid); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) == -1
                {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl: then nobody would stop us.
                if libc::getppid() != parent {
                    // (No io::Error::other: no allocating between fork and exec.)
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = spawn_from_spawner_thread(cmd)?;
        Ok(Process {
            name: name.to_owned(),
            pid: child.id(),
            child,
            status: None,
            stdout,
            stderr,
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` (e.g. `libc::SIGKILL`, `SIGSTOP`, `SIGCONT`) to the child only,
    /// not its process group, as a fault would hit one process. Panics if the child
    /// is already reaped. A killed child stays a zombie until [`Process::try_status`],
    /// [`Process::wait_timeout`] or [`Process::stop`] reaps it.
    pub fn signal(&self, signal: libc::c_int) {
        assert!(
            self.status.is_none(),
            "{} (pid {}) was already reaped; not signalling a reused pid",
            self.name,
            self.pid
        );
        // SAFETY: plain syscall on our own unreaped child.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, signal) };
        assert_eq!(
            rc,
            0,
            "kill({}, {signal}) for {}: {}",
            self.pid,
            self.name,
            io::Error::last_os_error()
        );
    }

    /// Everything the child wrote to stdout so far (lossy UTF-8).
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// Everything the child wrote to stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }

    /// The last lines of stdout and stderr, labelled, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for (label, path) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = read_lossy(path);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(TAIL_LINES);
            let _ = writeln!(
                out,
                "--- {} {label} ({}, last {} of {} lines) ---",
                self.name,
                path.display(),
                lines.len() - start,
                lines.len()
            );
            for line in &lines[start..] {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    /// The exit status if the child has exited, without blocking. Once it has
    /// exited, any other member of its process group is killed and it is reaped.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() && self.exited_unreaped() {
            self.reap();
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for a complete stdout line starting with `prefix` and
    /// returns it (without the newline). Panics, with the log tails, if the process
    /// exits first or the time runs out.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.stdout();
            // Only lines ended by '\n' are complete.
            let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            if let Some(line) = complete.lines().find(|l| l.starts_with(prefix)) {
                return line.to_owned();
            }
            if let Some(status) = self.try_status() {
                panic!(
                    "{} exited ({status}) before printing a line starting with {prefix:?}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} printed no line starting with {prefix:?} within {timeout:?}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the child (SIGTERM to its group, SIGKILL after [`STOP_GRACE`]) and reaps
    /// it. Idempotent; called by `Drop`. Returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        if !self.exited_unreaped() {
            self.signal_group(libc::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            while !self.exited_unreaped() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
        self.reap();
        self.status.expect("reaped")
    }

    /// True once the child has exited (it stays a zombie, so its pid and process
    /// group id cannot be reused until `reap`).
    fn exited_unreaped(&self) -> bool {
        // SAFETY: plain syscall on our own child; WNOWAIT leaves it waitable.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            // rc == -1 (ECHILD) would mean it was already reaped; treat as exited.
            rc == -1 || info.si_pid() != 0
        }
    }

    /// Kills whatever is left of the process group, then reaps the leader.
    fn reap(&mut self) {
        // While the leader is unreaped its pid, hence the group id, is still ours.
        self.signal_group(libc::SIGKILL);
        let status = self.child.wait().unwrap_or_else(|e| {
            // Only possible if someone else reaped it. Runs in Drop: no panic here.
            eprintln!("harness: reaping {} (pid {}): {e}", self.name, self.pid);
            std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL)
        });
        self.status = Some(status);
    }

    fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: plain syscall. ESRCH (group already gone) is fine.
        unsafe {
            libc::kill(-(self.pid as libc::pid_t), signal);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish()
    }
}

/// Runs `cmd` as a guarded process to completion and returns its exit status and
/// output. Panics, with the log tails, if it does not finish within `timeout`
/// (it is killed first). Does not look at the exit status.
pub fn run(name: &str, cmd: Command, log_dir: &Path, timeout: Duration) -> Finished {
    let mut process = Process::spawn(name, cmd, log_dir);
    match process.wait_timeout(timeout) {
        Some(status) => Finished {
            status,
            stdout: process.stdout(),
            stderr: process.stderr(),
            process,
        },
        None => {
            process.stop();
            panic!(
                "{name} did not finish within {timeout:?}; killed it\n{}",
                process.log_tail()
            )
        }
    }
}

/// Like [`run`], but panics, with the log tails, unless the exit status is success.
/// Returns stdout.
pub fn run_ok(name: &str, cmd: Command, log_dir: &Path, timeout: Duration) -> String {
    let finished = run(name, cmd, log_dir, timeout);
    if !finished.status.success() {
        panic!(
            "{name} failed ({})\n{}",
            finished.status,
            finished.process.log_tail()
        );
    }
    finished.stdout
}

/// A process that ran to completion (see [`run`]).
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The reaped process, for its log paths and [`Process::log_tail`].
    pub process: Process,
}

/// True if a process with this pid exists (a zombie counts). Guarded processes are
/// reaped when stopped, so after their guard is dropped this returns false (unless
/// the kernel has reused the pid already, which takes a full wrap of pid space).
pub fn pid_exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// True if any process is still in the process group `pgid`.
pub fn process_group_exists(pgid: u32) -> bool {
    // SAFETY: as above.
    let rc = unsafe { libc::kill(-(pgid as libc::pid_t), 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Forks `cmd` from the process-lifetime spawner thread (see the module docs).
fn spawn_from_spawner_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the harness spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .expect("harness spawner thread is gone");
    reply_rx.recv().expect("harness spawner thread is gone")
}
