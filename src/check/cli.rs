//! The `swampgate check` command line.

use std::process::ExitCode;

use super::{compare_urls, run_url, Group, Options};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["url", "compare"])))]
pub struct CheckArgs {
    /// The server to check: a FURL (Foolscap) or a NURL ending #v=1 (GBS).
    pub url: Option<String>,
    /// Run the same checks against two servers and report every difference.
    #[arg(long, num_args = 2, value_names = ["URL_A", "URL_B"], conflicts_with = "url")]
    pub compare: Option<Vec<String>>,
    /// A machine-readable report on stdout.
    #[arg(long)]
    pub json: bool,
    /// Only this group (repeatable): version, immutable, mutable, leases, corruption, edges.
    #[arg(long, value_name = "GROUP")]
    pub only: Vec<String>,
    /// Also run checks that leave records the suite cannot remove (corruption
    /// advisories about existing shares).
    #[arg(long)]
    pub destructive: bool,
}

pub fn main(args: CheckArgs) -> ExitCode {
    for g in &args.only {
        if Group::parse(g).is_none() {
            eprintln!(
                "swampgate: --only: unknown group {g:?} (groups: {})",
                Group::ALL.map(Group::as_str).join(", ")
            );
            return ExitCode::from(2);
        }
    }
    let opts = Options {
        only: args.only.clone(),
        destructive: args.destructive,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swampgate: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(urls) = &args.compare {
        let c = match rt.block_on(compare_urls(&urls[0], &urls[1], &opts)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("swampgate: --compare: {e}");
                return ExitCode::from(2);
            }
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&c).expect("JSON"));
        } else {
            print!("{}", c.to_text());
        }
        return if c.differences.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let url = args.url.as_deref().expect("clap requires URL or --compare");
    let report = match rt.block_on(run_url(url, &opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("swampgate: URL: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
    } else {
        print!("{}", report.to_text());
    }
    if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
