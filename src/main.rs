//! The `swampgate` command line (see DESIGN.md for the contract).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use swampgate::daemon::config::{self, Config, LinkConfig, Upstream};
use swampgate::daemon::run;
use swampgate::daemon::state::StateDir;

#[derive(Parser)]
#[command(
    name = "swampgate",
    version,
    about = "Bridge Tahoe-LAFS storage between Foolscap and HTTP (Great Black Swamp)"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `swampgate=debug`.
    #[arg(long, default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: the embedded default with no config, else every link of FILE.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "swampgate-state")]
        state_dir: PathBuf,
        /// Serve the status page, /metrics, /healthz and /status on this address
        /// (instead of the config's `admin`).
        #[arg(long)]
        admin: Option<String>,
    },
    /// Run one link (named `default`) to UPSTREAM: a FURL, a NURL ending #v=1, local:PATH,
    /// or node:NODEDIR (a Tahoe storage node: its NURL if it serves HTTP, else its FURL,
    /// and its identity adopted).
    Bridge {
        #[arg(long)]
        upstream: String,
        #[arg(long, default_value = config::DEFAULT_LISTEN)]
        listen: String,
        /// Connection hints for the FURL (comma-separated tcp:HOST:PORT); default: the bound address.
        #[arg(long)]
        location: Option<String>,
        #[arg(long, default_value = "swampgate-state")]
        state_dir: PathBuf,
        /// Serve with the identity of this Tahoe storage node directory (implied by
        /// --upstream node:NODEDIR; refused with local:).
        #[arg(long)]
        adopt: Option<PathBuf>,
        /// Serve the status page, /metrics, /healthz and /status on this address.
        #[arg(long)]
        admin: Option<String>,
        /// Seconds between two probes of the upstream (default 10; `[limits]
        /// upstream_probe_interval_secs`).
        #[arg(long, value_name = "SECS")]
        probe_interval: Option<u64>,
        /// Also serve an introducer FURL relaying to this upstream introducer FURL.
        #[arg(long)]
        introducer_upstream: Option<String>,
        /// Record every storage call as a JSON line in FILE (no secrets, no share data).
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Take the limits from the `[limits]` table of FILE (a TOML file holding
        /// only that table; see `run`'s configuration).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Read call-by-call traces.
    Trace {
        #[command(subcommand)]
        command: swampgate::storage::layer::trace::cli::TraceCommand,
    },
    /// Check that a storage server (FURL or NURL) behaves like Tahoe's, or compare two.
    Check(swampgate::check::cli::CheckArgs),
    /// What a Tahoe storage node announces (server id, FURL, NURL, permutation seed),
    /// read from its directory, and a servers.yaml entry for it.
    NodeInfo(swampgate::nodedir::cli::NodeInfoArgs),
    /// Accounts: per-client URLs, storage quotas, read rates and usage.
    Account(swampgate::daemon::account_cli::AccountArgs),
}

/// How long calls in flight may take to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("swampgate: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(f) => f,
        Err(e) => return fail(format!("--log: {e}")),
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let (config, state_dir) = match cli.command {
        Command::Check(args) => return swampgate::check::cli::main(args),
        Command::NodeInfo(args) => return swampgate::nodedir::cli::main(args),
        Command::Account(args) => return swampgate::daemon::account_cli::main(args),
        Command::Trace { command } => return swampgate::storage::layer::trace::cli::main(command),
        Command::Run {
            config,
            state_dir,
            admin,
        } => {
            let mut config = match config {
                None => Config::embedded_default(),
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                },
            };
            match admin.as_deref().map(config::parse_addr).transpose() {
                Ok(Some(a)) => {
                    config.admin = Some(a);
                    config.origins.admin = config::Origin::flag("--admin");
                }
                Ok(None) => {}
                Err(e) => return fail(format!("--admin: {e}")),
            }
            (config, state_dir)
        }
        Command::Bridge {
            upstream,
            listen,
            location,
            state_dir,
            adopt,
            admin,
            probe_interval,
            introducer_upstream,
            trace,
            config,
        } => {
            let defaults = match &config {
                None => config::Limits::default(),
                Some(path) => match Config::load_limits(path) {
                    Ok(l) => l,
                    Err(e) => return fail(format!("--config: {e}")),
                },
            };
            let probe_interval = probe_interval.unwrap_or(defaults.upstream_probe_interval_secs);
            if probe_interval == 0 {
                return fail("--probe-interval: must be at least 1");
            }
            let introducer = match introducer_upstream
                .as_deref()
                .map(config::IntroducerConfig::parse_upstream)
                .transpose()
            {
                Ok(u) => u.map(|upstream| config::IntroducerConfig {
                    upstream: Some(upstream),
                    nickname: "swampgate".into(),
                }),
                Err(e) => return fail(format!("--introducer-upstream: {e}")),
            };
            let admin = match admin.as_deref().map(config::parse_addr).transpose() {
                Ok(a) => a,
                Err(e) => return fail(format!("--admin: {e}")),
            };
            let upstream = match Upstream::parse(&upstream) {
                Ok(u) => u,
                Err(e) => return fail(format!("--upstream: {e}")),
            };
            let listen = match config::parse_addr(&listen) {
                Ok(a) => a,
                Err(e) => return fail(format!("--listen: {e}")),
            };
            let location = match location.as_deref().map(config::parse_location).transpose() {
                Ok(l) => l,
                Err(e) => return fail(format!("--location: {e}")),
            };
            let mut origins = config::LinkOrigins::flags();
            if adopt.is_none() {
                // Adopted because of the upstream (node:): its errors are the upstream's.
                origins.adopt = origins.upstream.clone();
            }
            let adopt = match upstream.adoption(adopt.as_deref()) {
                Ok(a) => a,
                Err((field, e)) => return fail(format!("--{field}: {e}")),
            };
            let config = Config {
                listen,
                location,
                admin,
                links: vec![LinkConfig {
                    name: "default".into(),
                    upstream,
                    adopt,
                    // Relative to where the command runs, not to the state dir.
                    trace: trace.map(|t| std::path::absolute(&t).unwrap_or(t)),
                    listen: None,
                    location: None,
                    anonymous: true,
                    origins,
                }],
                limits: config::Limits {
                    upstream_probe_interval_secs: probe_interval,
                    ..defaults
                },
                introducer,
                accounting: config::AccountingConfig::default(),
                origins: config::Origins::flags(),
            };
            (config, state_dir)
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        // Before anything is served: a SIGTERM right after READY=1 must find the
        // handler installed, or it would kill the process without a clean stop.
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot handle SIGTERM: {e}")),
        };
        let state = match StateDir::open(&state_dir) {
            Ok(s) => s,
            Err(e) => return fail(format!("--state-dir: {e}")),
        };
        let running = match run::start(&config, &state).await {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        for l in &running.links {
            println!("link {} furl {}", l.name, l.furl);
            println!("link {} nurl {}", l.name, l.nurl);
        }
        if let Some(f) = &running.introducer_furl {
            println!("introducer furl {f}");
        }
        if let Some(a) = running.admin_addr {
            println!("admin http://{a}/");
        }
        tracing::info!(addr = %running.local_addr, "serving");
        // Under systemd (Type=notify): ready once every port listens and every URL
        // file is written. Without NOTIFY_SOCKET this does nothing.
        let status = format!("serving {} link(s)", running.links.len());
        if let Err(e) = sd_notify::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]) {
            tracing::warn!("cannot tell the service manager we are ready: {e}");
        }
        signals.wait().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!("stopping: no new connections; waiting for calls in flight");
        let report = running.shutdown(SHUTDOWN_GRACE).await;
        tracing::info!(
            calls_cut_off = report.calls_cut_off,
            uploads_aborted = report.uploads_aborted,
            "stopped"
        );
        ExitCode::SUCCESS
    })
}

/// SIGTERM and SIGINT, handled from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
