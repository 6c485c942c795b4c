//! Truthful health: each link probes its upstream, and `/healthz`, `/status`,
//! `/metrics` and the status page say what the probes found — checked against real
//! swampgate processes whose upstreams are absent, then present (a swampgate on the
//! expected port, a real Tahoe introducer for the relay), and the status page
//! rendered by a real headless browser.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::kit::*;

/// The probe interval the tests configure.
const PROBE_INTERVAL_SECS: u64 = 1;

/// How long a state change may take to show: a probe interval, a probe's timeout
/// (5 s at least), and slack for a busy host.
const CHANGE_SHOWN_WITHIN: Duration = Duration::from_secs(PROBE_INTERVAL_SECS + 5 + 10);

/// `swampgate bridge --upstream UPSTREAM` on a free port with an admin endpoint,
/// probing every [`PROBE_INTERVAL_SECS`]; returns it and its admin port.
fn gateway(name: &str, upstream: &str, dir: &Path) -> (Process, u16) {
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        upstream,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--probe-interval",
        &PROBE_INTERVAL_SECS.to_string(),
        "--state-dir",
        name,
    ])
    .current_dir(dir);
    let mut p = Process::spawn(name, cmd, dir);
    p.wait_for_line("link default nurl ", STARTUP_TIMEOUT);
    let port = admin_port(&mut p);
    (p, port)
}

/// A swampgate serving its embedded store on exactly `127.0.0.1:port`, with its
/// identity and swissnum in `dir/state`; returns it, its FURL and its NURL.
fn store_on(port: u16, dir: &Path) -> (Process, String, String) {
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        "local:shares",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--state-dir",
        "upstream-state",
    ])
    .current_dir(dir);
    let mut p = Process::spawn("upstream", cmd, dir);
    let furl = last_word(&p.wait_for_line("link default furl ", STARTUP_TIMEOUT));
    let nurl = last_word(&p.wait_for_line("link default nurl ", STARTUP_TIMEOUT));
    (p, furl, nurl)
}

/// `GET path`: the status and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let (status, body) = http(port, "GET", path, &[], &[], Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Poll `check` until it returns `Ok`, or panic with its last `Err` after `within`.
fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(t) => return t,
            Err(e) if Instant::now() >= deadline => {
                panic!("{what}: not so within {within:?}; last: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn healthz_is(port: u16, status: u16, needle: &str) -> Result<String, String> {
    let (got, body) = get(port, "/healthz");
    if got == status && body.contains(needle) {
        Ok(body)
    } else {
        Err(format!("{got}: {body}"))
    }
}

/// A gateway whose upstream is not there reports it down, from startup on, in its
/// log, `/healthz`, `/status` and `/metrics`; once a real upstream listens on that
/// port it reports it up within the probe interval. Both kinds of upstream: a FURL
/// (Foolscap) and a NURL (GBS).
#[test]
fn an_absent_upstream_is_down_until_it_listens() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let port = free_port();
    // The upstream's URLs: start it once for its identity and swissnum, then stop it.
    let (mut first, furl, nurl) = store_on(port, p);
    assert!(first.stop().success(), "{}", first.log_tail());

    let (mut via_furl, admin_f) = gateway("gw-furl", &furl, p);
    let (mut via_nurl, admin_n) = gateway("gw-nurl", &nurl, p);
    for (gw, admin) in [(&mut via_furl, admin_f), (&mut via_nurl, admin_n)] {
        let log = gw.stderr();
        let warned = log.lines().any(|l| {
            l.contains("WARN")
                && l.contains("upstream is unreachable")
                && l.contains("link=default")
        });
        assert!(
            warned,
            "{}: no WARN naming the link at startup:\n{log}",
            gw.name()
        );
        // Down from the start: the startup probe has been answered already.
        let body = healthz_is(admin, 503, "link default down").unwrap();
        assert!(body.contains("link default down: "), "{body}");
        let (s, body) = get(admin, "/healthz?link=default");
        assert_eq!(s, 503, "{body}");
        assert!(body.contains("link default down"), "{body}");
        let (s, body) = get(admin, "/healthz?link=nosuchlink");
        assert_eq!(s, 404, "{body}");
        assert_eq!(
            metric(admin, "swampgate_upstream_up{link=\"default\"}"),
            Some(0.0)
        );
        assert_eq!(
            metric(
                admin,
                "swampgate_upstream_last_success_timestamp_seconds{link=\"default\"}"
            ),
            Some(0.0),
            "exported from the start, 0 before any success"
        );
        let (_, status) = get(admin, "/status");
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        let st = &status["links"][0]["upstream_state"];
        assert_eq!(st["state"], "down", "{status}");
        assert!(
            !st["last_error"].as_str().unwrap_or("").is_empty(),
            "the error is shown: {status}"
        );
        let swissnum = furl.rsplit('/').next().unwrap();
        assert!(
            !status.to_string().contains(swissnum),
            "no swissnum in /status"
        );
    }

    // The upstream comes back on the same port, with the same identity.
    let (_upstream, furl2, nurl2) = store_on(port, p);
    assert_eq!((&furl2, &nurl2), (&furl, &nurl), "the same URLs");
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (gw, admin) in [(&via_furl, admin_f), (&via_nurl, admin_n)] {
        eventually(CHANGE_SHOWN_WITHIN, "/healthz ok", || {
            healthz_is(admin, 200, "ok")
        })
        .to_string();
        let (s, _) = get(admin, "/healthz?link=default");
        assert_eq!(s, 200);
        assert_eq!(
            metric(admin, "swampgate_upstream_up{link=\"default\"}"),
            Some(1.0),
            "{}",
            gw.name()
        );
        let last = metric(
            admin,
            "swampgate_upstream_last_success_timestamp_seconds{link=\"default\"}",
        )
        .unwrap();
        assert!(
            last >= (t0 - 1) as f64,
            "last success {last}, upstream back at {t0}"
        );
        let log = gw.stderr();
        assert!(log.contains("upstream reachable"), "{}: {log}", gw.name());
        let (_, status) = get(admin, "/status");
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["links"][0]["upstream_state"]["state"], "up");
    }
}

/// The `chromium` of Debian's packages (`.ci/run` installs it when missing).
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-headless-shell"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("no chromium on PATH: install Debian's (apt-get install chromium); .ci/run does");
}

/// Run headless Chromium on `url` with `args`; returns its stdout.
fn browse(url: &str, args: &[String], dir: &Path) -> String {
    let profile = dir.join("chromium-profile");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        // Chromium refuses to run as root without it.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .env("HOME", dir)
    .current_dir(dir);
    run_ok("chromium", cmd, dir, Duration::from_secs(120))
}

/// The rendered `<tr>` of a link in a DOM dump.
fn link_row<'a>(dom: &'a str, link: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"link-{link}\""))
        .unwrap_or_else(|| panic!("no row for link {link} in:\n{dom}"));
    let end = start + dom[start..].find("</tr>").expect("the row ends");
    &dom[start..end]
}

/// The status page, as a browser renders it, shows one link up and one down (with
/// its error), the identities and URLs without swissnums, and the introducer relay.
/// The screenshot is kept under the target dir.
#[test]
fn the_status_page_in_a_real_browser() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let dead = free_port();
    let swissnum = "yci4erqgi6kgb3ybym4y3qlox2zawafr";
    let absent = format!("pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:{dead}/{swissnum}");
    std::fs::write(
        p.join("sg.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\n\
             [[link]]\nname = \"up\"\nupstream = \"local:shares\"\n\
             [[link]]\nname = \"down\"\nupstream = \"{absent}\"\n\
             [introducer]\nupstream = \"{absent}\"\nnickname = \"swampgate\"\n\
             [limits]\nupstream_probe_interval_secs = {PROBE_INTERVAL_SECS}\n"
        ),
    )
    .unwrap();
    let mut cmd = swampgate_command();
    cmd.args([
        "run",
        "--config",
        "sg.toml",
        "--state-dir",
        "st",
        "--admin",
        "127.0.0.1:0",
    ])
    .current_dir(p);
    let mut sg = Process::spawn("swampgate", cmd, p);
    let up_furl = last_word(&sg.wait_for_line("link up furl ", STARTUP_TIMEOUT));
    let admin = admin_port(&mut sg);
    // Startup says which link is ready and which one's upstream is unreachable, once.
    let log = sg.stderr();
    let lines_with = |needle: &str, link: &str| {
        log.lines()
            .filter(|l| l.contains(needle) && l.contains(&format!("link={link} ")))
            .count()
    };
    assert_eq!(lines_with("INFO", "up"), 1, "{log}");
    assert!(log.contains("link ready link=up "), "{log}");
    assert_eq!(lines_with("WARN", "down"), 1, "{log}");
    assert!(
        !log.contains("upstream reachable"),
        "no second word on the first probe: {log}"
    );

    // /healthz names both the down link and the relay's upstream, not the up link.
    let body = eventually(CHANGE_SHOWN_WITHIN, "/healthz names the relay", || {
        healthz_is(admin, 503, "introducer upstream down")
    });
    assert!(body.contains("link down down: "), "{body}");
    assert!(!body.contains("link up "), "{body}");
    assert_eq!(get(admin, "/healthz?link=up").0, 200);
    assert_eq!(get(admin, "/healthz?link=down").0, 503);
    assert_eq!(
        metric(admin, "swampgate_upstream_up{link=\"up\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(admin, "swampgate_upstream_up{link=\"down\"}"),
        Some(0.0)
    );
    assert_eq!(metric(admin, "swampgate_introducer_upstream_up"), Some(0.0));

    let url = format!("http://127.0.0.1:{admin}/");
    let dom = browse(&url, &["--dump-dom".into()], p);
    let up = link_row(&dom, "up");
    assert!(up.contains("data-state=\"up\""), "{up}");
    assert!(up.contains("class=\"state up\">up</td>"), "{up}");
    let down = link_row(&dom, "down");
    assert!(down.contains("data-state=\"down\""), "{down}");
    assert!(down.contains("class=\"state down\">down</td>"), "{down}");
    assert!(
        down.contains("upstream unavailable") || down.contains("refused"),
        "the down link shows its error: {down}"
    );
    assert!(dom.contains("1 of 2 link upstreams down."), "{dom}");
    // Identities and URLs, without swissnums.
    let up_tubid = up_furl
        .strip_prefix("pb://")
        .unwrap()
        .split('@')
        .next()
        .unwrap();
    assert!(dom.contains(up_tubid), "the tubid is shown");
    let up_swissnum = up_furl.rsplit('/').next().unwrap();
    for secret in [up_swissnum, swissnum] {
        assert!(!dom.contains(secret), "a swissnum on the page");
    }
    assert!(dom.contains("Introducer relay"), "{dom}");
    assert!(
        dom.contains("id=\"introducer-state\">down</strong>"),
        "the relay's upstream is down: {dom}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1200".into(),
        ],
        p,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    drop(sg);
}

/// The introducer relay's upstream, a real Tahoe introducer: up while it answers (and
/// its announcements listed by nickname), down with the reason while it is stopped,
/// up again once it is back.
#[test]
fn the_relays_upstream_introducer_is_watched() {
    let mut upstream = introducer_node();
    let announcer = storage_node(StorageOptions {
        nickname: "health-announcer".into(),
        introducer: Some(upstream.furl().into()),
        ..StorageOptions::default()
    });
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        "local:shares",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--probe-interval",
        &PROBE_INTERVAL_SECS.to_string(),
        "--introducer-upstream",
        upstream.furl(),
        "--state-dir",
        "st",
    ])
    .current_dir(p);
    let mut sg = Process::spawn("swampgate", cmd, p);
    let admin = admin_port(&mut sg);
    let intro_up = "swampgate_introducer_upstream_up";

    let status =
        || -> serde_json::Value { serde_json::from_str(&get(admin, "/status").1).unwrap() };
    eventually(CHANGE_SHOWN_WITHIN, "the relay's upstream up", || {
        healthz_is(admin, 200, "ok")?;
        let s = status();
        let nick = s["introducer"]["announced"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a[0] == "health-announcer" && a[1] == "storage");
        nick.then_some(())
            .ok_or_else(|| format!("the announcer's nickname not listed: {s}"))
    });
    assert_eq!(metric(admin, intro_up), Some(1.0));
    assert_eq!(status()["introducer"]["upstream_state"]["state"], "up");
    let (_, page) = get(admin, "/");
    assert!(page.contains("health-announcer"), "{page}");

    upstream.stop();
    let body = eventually(CHANGE_SHOWN_WITHIN, "the relay's upstream down", || {
        healthz_is(admin, 503, "introducer upstream down: ")
    });
    assert!(!body.contains("link default"), "the link stays up: {body}");
    assert_eq!(metric(admin, intro_up), Some(0.0));
    assert_eq!(get(admin, "/healthz?link=default").0, 200);

    upstream.restart();
    eventually(CHANGE_SHOWN_WITHIN, "the relay's upstream up again", || {
        healthz_is(admin, 200, "ok")
    });
    assert_eq!(metric(admin, intro_up), Some(1.0));
    drop(announcer);
}

/// Every metric of README's metrics table is on `/metrics` as soon as the admin
/// endpoint answers, before any call, publication or subscription, with its series
/// at zero — but for the two whose series are a call's labels (an error kind; a
/// method's latency), which appear with the first such call: one is made, and then
/// they are there. The gateway has an introducer relay with an upstream (down), so
/// the relay's are there too.
#[test]
fn every_documented_metric_exists_at_start() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .filter(|n| n.starts_with("swampgate_") || n.starts_with("process_"))
        .collect();
    for name in [
        "swampgate_build_info",
        "swampgate_faults_total",
        "swampgate_connections_refused_total",
        "swampgate_introducer_announcements",
        "swampgate_introducer_subscribers",
        "swampgate_introducer_publishes_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(
            documented.contains(&name),
            "{name} is not in README's table"
        );
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let dead = free_port();
    let absent =
        format!("pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:{dead}/yci4erqgi6kgb3ybym4y3qlox2zawafr");
    let mut cmd = swampgate_command();
    cmd.args([
        "bridge",
        "--upstream",
        "local:shares",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--introducer-upstream",
        &absent,
        "--state-dir",
        "st",
    ])
    .current_dir(p);
    let mut sg = Process::spawn("swampgate", cmd, p);
    let nurl = last_word(&sg.wait_for_line("link default nurl ", STARTUP_TIMEOUT));
    let admin = admin_port(&mut sg);
    let text = http_get(admin, "/metrics").unwrap();
    let has_series = |text: &str, name: &str| {
        text.lines().any(|l| {
            l.strip_prefix(name).is_some_and(|rest| {
                rest.starts_with('{') || rest.starts_with(' ') || rest.starts_with("_count{")
            })
        })
    };
    let with_first_call = ["swampgate_errors_total", "swampgate_call_duration_seconds"];
    let with_first_account = |name: &str| name.starts_with("swampgate_account_");
    for &name in &documented {
        if !with_first_call.contains(&name) && !with_first_account(name) {
            assert!(
                has_series(&text, name),
                "{name} has no series at start:\n{text}"
            );
        }
    }
    // One call that fails (a share that is not there): its error and its latency.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt.block_on(async {
        use swampgate::storage::StorageApi;
        let nurl: swampgate::gbs::nurl::Nurl = nurl.parse().unwrap();
        let c = swampgate::gbs::client::GbsClient::new(&nurl, Default::default()).unwrap();
        c.immutable_share_length(swampgate::storage::StorageIndex([9; 16]), 0)
            .await
            .unwrap_err()
    });
    assert_eq!(e.kind().as_str(), "not_found", "{e}");
    let text = http_get(admin, "/metrics").unwrap();
    for name in with_first_call {
        assert!(
            has_series(&text, name),
            "{name} has no series after a call:\n{text}"
        );
    }
    // (Over GBS a share's length is asked for with a read.)
    let labels = "link=\"default\",method=\"read_immutable\"";
    assert_eq!(
        metric(
            admin,
            &format!("swampgate_errors_total{{{labels},kind=\"not_found\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            admin,
            &format!("swampgate_call_duration_seconds_count{{{labels}}}")
        ),
        Some(1.0)
    );
    // At zero: nothing has happened yet.
    for sample in [
        "swampgate_introducer_announcements",
        "swampgate_introducer_subscribers{protocol=\"foolscap\"}",
        "swampgate_introducer_subscribers{protocol=\"websocket\"}",
        "swampgate_introducer_publishes_total{result=\"accepted\"}",
        "swampgate_introducer_publishes_total{result=\"rejected\"}",
        "swampgate_faults_total{link=\"default\",kind=\"unavailable\"}",
        "swampgate_connections_refused_total{reason=\"max_connections\"}",
    ] {
        assert_eq!(metric(admin, sample), Some(0.0), "{sample}");
    }
    assert!(metric(admin, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(metric(admin, "process_open_fds").unwrap() >= 3.0);
    let start = metric(admin, "process_start_time_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 120.0..=now + 1.0).contains(&start),
        "started at {start}, now {now}"
    );
    assert!(metric(admin, "process_max_fds").unwrap() >= 64.0);
    // An account's series, at zero, once it is added to the running daemon.
    let mut cmd = swampgate_command();
    cmd.args([
        "account",
        "add",
        "ops",
        "--link",
        "default",
        "--state-dir",
        "st",
    ])
    .current_dir(p);
    run_ok("swampgate account", cmd, p, CLI_TIMEOUT);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let text = http_get(admin, "/metrics").unwrap();
    let account_metrics: Vec<&str> = documented
        .iter()
        .copied()
        .filter(|n| with_first_account(n))
        .collect();
    assert_eq!(account_metrics.len(), 6, "{account_metrics:?}");
    for name in account_metrics {
        let sample = format!("{name}{{link=\"default\",account=\"ops\"}}");
        assert_eq!(metric(admin, &sample), Some(0.0), "{sample}:\n{text}");
    }
    drop(sg);
}
