//! `swampgate account`: add, list, change, disable, enable and remove accounts. Each
//! command writes the accounting database the daemon reads; a running daemon acts
//! on it within a second (`daemon::accounts`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::config::{validate_name, Config};
use super::state::{new_swissnum, StateDir};
use crate::accounting::{parse_limit, parse_size, Account, Ledger};
use crate::foolscap::Furl;
use crate::gbs::nurl::Nurl;

/// Where the accounts are: like `run`.
#[derive(Args, Debug)]
pub struct Where {
    /// The daemon's config (its `[accounting] database` and links).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[arg(long, default_value = "swampgate-state", global = true)]
    state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Add an account to a link: prints its FURL and NURL and writes them to
    /// STATE/accounts/NAME.{furl,nurl}.
    Add {
        name: String,
        #[arg(long)]
        link: String,
        /// Bytes it may store: 10GiB, 500MB, plain bytes.
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
        /// Bytes per second it may read.
        #[arg(long, value_name = "SIZE")]
        read_rate: Option<String>,
    },
    /// Every account: link, state, quota, usage, calls, last seen.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change an account's limits (`none`: no limit).
    Set {
        name: String,
        #[arg(long, value_name = "SIZE|none")]
        quota: Option<String>,
        #[arg(long, value_name = "SIZE|none")]
        read_rate: Option<String>,
    },
    /// Stop serving an account at once; its connections close.
    Disable { name: String },
    /// Serve a disabled account again (same URLs).
    Enable { name: String },
    /// Remove an account and its usage records.
    Remove { name: String },
}

#[derive(Args, Debug)]
pub struct AccountArgs {
    #[command(flatten)]
    at: Where,
    #[command(subcommand)]
    command: AccountCommand,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("swampgate: {msg}");
    ExitCode::from(2)
}

pub fn main(args: AccountArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// An account's URLs: the link's, as its last start wrote them, with the account's
/// swissnum.
fn account_urls(state: &StateDir, link: &str, swissnum: &str) -> Result<(String, String), String> {
    let (furl_path, nurl_path) = state.link_urls(link);
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .map_err(|e| {
                format!(
                    "{}: {e}: the link's URLs are written when swampgate starts; start it once \
                 with this state dir",
                    p.display()
                )
            })
    };
    let mut furl =
        Furl::parse(&read(&furl_path)?).map_err(|e| format!("{}: {e}", furl_path.display()))?;
    let mut nurl: Nurl = read(&nurl_path)?
        .parse()
        .map_err(|e| format!("{}: {e}", nurl_path.display()))?;
    furl.swissnum = swissnum.to_string();
    nurl.swissnum = swissnum.to_string();
    Ok((furl.to_string(), nurl.to_string()))
}

fn limit(
    flag: &str,
    v: Option<&str>,
    parse: fn(&str) -> Result<Option<u64>, String>,
) -> Result<Option<Option<u64>>, String> {
    v.map(|s| parse(s).map_err(|e| format!("--{flag}: {e}")))
        .transpose()
}

async fn run(args: AccountArgs) -> Result<(), String> {
    let config = match &args.at.config {
        None => Config::embedded_default(),
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
    };
    let state = StateDir::open(&args.at.state_dir).map_err(|e| format!("--state-dir: {e}"))?;
    let ledger = Ledger::open(&config.accounting.database_url(state.root()))
        .await
        .map_err(|e| e.to_string())?;
    let r = command(&config, &state, &ledger, args.command).await;
    ledger.close().await;
    r
}

async fn command(
    config: &Config,
    state: &StateDir,
    ledger: &Ledger,
    command: AccountCommand,
) -> Result<(), String> {
    match command {
        AccountCommand::Add {
            name,
            link,
            quota,
            read_rate,
        } => {
            validate_name(&name).map_err(|e| format!("account name: {e}"))?;
            if !config.links.iter().any(|l| l.name == link) {
                let known: Vec<&str> = config.links.iter().map(|l| l.name.as_str()).collect();
                return Err(format!(
                    "--link: no link named {link:?} (links: {})",
                    known.join(", ")
                ));
            }
            let some = |s: &str| parse_size(s).map(Some);
            let quota = limit("quota", quota.as_deref(), some)?.flatten();
            let read_rate = limit("read-rate", read_rate.as_deref(), some)?.flatten();
            let swissnum = new_swissnum();
            // The URLs first: an account whose URLs cannot be made is not added.
            let (furl, nurl) = account_urls(state, &link, &swissnum)?;
            ledger
                .add(&Account {
                    name: name.clone(),
                    link,
                    swissnum,
                    enabled: true,
                    quota,
                    read_rate,
                    generation: 0,
                })
                .await
                .map_err(|e| e.to_string())?;
            state
                .write_account_urls(&name, &furl, &nurl)
                .map_err(|e| e.to_string())?;
            println!("account {name} furl {furl}");
            println!("account {name} nurl {nurl}");
        }
        AccountCommand::List { json } => {
            let usage = ledger.usage().await.map_err(|e| e.to_string())?;
            if json {
                let text = serde_json::to_string_pretty(&usage).map_err(|e| e.to_string())?;
                println!("{text}");
            } else {
                println!(
                    "{:<20} {:<12} {:<9} {:>14} {:>14} {:>7} {:>14} {:>14} {:>9}  last seen",
                    "account",
                    "link",
                    "state",
                    "quota",
                    "stored",
                    "shares",
                    "read",
                    "written",
                    "calls"
                );
                for u in usage {
                    let q = u.quota.map_or("none".to_string(), |q| q.to_string());
                    let seen = u.last_seen.map_or("never".to_string(), |t| {
                        time::OffsetDateTime::from_unix_timestamp(t)
                            .ok()
                            .and_then(|d| {
                                d.format(&time::format_description::well_known::Rfc3339)
                                    .ok()
                            })
                            .unwrap_or_else(|| t.to_string())
                    });
                    println!(
                        "{:<20} {:<12} {:<9} {:>14} {:>14} {:>7} {:>14} {:>14} {:>9}  {seen}",
                        u.name,
                        u.link,
                        u.state,
                        q,
                        u.bytes_stored,
                        u.shares,
                        u.bytes_read,
                        u.bytes_written,
                        u.calls
                    );
                }
            }
        }
        AccountCommand::Set {
            name,
            quota,
            read_rate,
        } => {
            let quota = limit("quota", quota.as_deref(), parse_limit)?;
            let read_rate = limit("read-rate", read_rate.as_deref(), parse_limit)?;
            if quota.is_none() && read_rate.is_none() {
                return Err("nothing to set: give --quota and/or --read-rate".into());
            }
            if let Some(q) = quota {
                ledger
                    .set_quota(&name, q)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if let Some(r) = read_rate {
                ledger
                    .set_read_rate(&name, r)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        AccountCommand::Disable { name } => ledger
            .set_enabled(&name, false)
            .await
            .map_err(|e| e.to_string())?,
        AccountCommand::Enable { name } => ledger
            .set_enabled(&name, true)
            .await
            .map_err(|e| e.to_string())?,
        AccountCommand::Remove { name } => {
            ledger.remove(&name).await.map_err(|e| e.to_string())?;
            for p in [state.account_urls(&name).0, state.account_urls(&name).1] {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    Ok(())
}
