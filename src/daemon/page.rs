//! The status page at the admin address's `/`: what `/status` says, as one
//! server-rendered HTML page (no script; it reloads itself). Every value goes
//! through maud's escaping; nothing on it is a swissnum or a secret.

use maud::{html, Markup, DOCTYPE};

use super::admin::{LinkStatus, Status};
use crate::health::{now_unix, HealthState};

/// Seconds between reloads of the page.
pub const REFRESH_SECS: u32 = 10;

/// `2026-12-07 20:15:03 UTC`.
fn utc(unix: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix as i64) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => unix.to_string(),
    }
}

/// `3 min ago`.
fn ago(unix: u64) -> String {
    let s = now_unix().saturating_sub(unix);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn when(unix: Option<u64>) -> Markup {
    match unix {
        None => html! { span.none { "never" } },
        Some(t) => html! { time datetime=(t) title=(utc(t)) { (ago(t)) } },
    }
}

fn health(st: &HealthState) -> Markup {
    html! {
        td.state.(st.state) { (st.state) }
        td.since { (when(Some(st.since_unix))) }
        td.error {
            @match &st.last_error {
                Some(e) => {
                    (e)
                    @if let Some(t) = st.last_error_unix { " (" (when(Some(t))) ")" }
                }
                None if st.is_up() => span.none { "none" },
                None => (crate::health::NOT_PROBED),
            }
        }
        td.success { (when(st.last_success_unix)) }
    }
}

fn link_row(l: &LinkStatus) -> Markup {
    let calls: Vec<String> = l
        .recent_minutes
        .iter()
        .map(|m| m.calls.to_string())
        .collect();
    let errors: u64 = l.recent_minutes.iter().map(|m| m.errors).sum();
    html! {
        tr id={ "link-" (l.name) } data-state=(l.upstream_state.state) {
            th scope="row" { (l.name) }
            td.upstream { code { (l.upstream) } }
            (health(&l.upstream_state))
            td.calls title="calls per minute, oldest first" { (calls.join(" · ")) }
            td.errors { (errors) }
            td.inflight { (l.inflight_calls) }
            td.uploads { (l.inflight_uploads) }
        }
    }
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
thead th { background: #f2f2f2; }
td.state.up { background: #d9f2d9; font-weight: bold; }
td.state.down { background: #f8d7d7; font-weight: bold; }
.none { color: #888; }
code { font-size: 0.9em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; }
dd { margin: 0; }
";

/// The page for `s`.
pub fn render(s: &Status) -> String {
    let down = s.links.iter().filter(|l| !l.upstream_state.is_up()).count();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(REFRESH_SECS);
                title { "swampgate " (s.version) " — " (s.listen) }
                style { (STYLE) }
            }
            body {
                h1 { "swampgate " (s.version) }
                p id="summary" {
                    @if down == 0 {
                        "All " (s.links.len()) " link upstreams up."
                    } @else {
                        (down) " of " (s.links.len()) " link upstreams down."
                    }
                    " Updated " (utc(now_unix())) "; reloads every " (REFRESH_SECS) " s."
                }
                h2 { "This gateway" }
                dl id="identity" {
                    dt { "Listening on" } dd { code { (s.listen) } }
                    dt { "Own Tub ID" } dd { code.tubid { (s.tubid) } }
                    dt { "Own SPKI hash" } dd { code.spki { (s.spki_hash) } }
                    dt { "Open connections" }
                    dd id="connections" {
                        (s.connections.foolscap) " Foolscap, " (s.connections.gbs) " GBS; "
                        (s.connections.refused) " refused by the connection limits"
                    }
                }
                h2 { "Links" }
                table id="links" {
                    thead {
                        tr {
                            th { "Link" } th { "Upstream" } th { "State" } th { "Since" }
                            th { "Last error" } th { "Last success" }
                            th { "Calls/min (last " (super::admin::MINUTES_SHOWN) " min)" }
                            th { "Errors" } th { "Calls in flight" } th { "Uploads in flight" }
                        }
                    }
                    tbody {
                        @for l in &s.links { (link_row(l)) }
                    }
                }
                h2 { "Link identities and URLs" }
                p { "Each link serves with the identity of the node it adopts, else swampgate's own. Swissnums are never shown." }
                table id="urls" {
                    thead {
                        tr {
                            th { "Link" } th { "Port" } th { "Tub ID" } th { "SPKI hash (NURL server id)" }
                            th { "FURL" } th { "NURL" }
                        }
                    }
                    tbody {
                        @for l in &s.links {
                            tr id={ "urls-" (l.name) } {
                                th scope="row" { (l.name) }
                                td { code { (l.listen) } }
                                td { code.tubid { (l.tubid) } }
                                td { code.spki { (l.spki_hash) } }
                                td { code { (l.furl) } }
                                td { code { (l.nurl) } }
                            }
                        }
                    }
                }
                @if let Some(i) = &s.introducer {
                    h2 { "Introducer relay" }
                    dl id="introducer" {
                        dt { "FURL" } dd { code { (i.furl) } }
                        dt { "Upstream" }
                        dd {
                            @match (&i.upstream, &i.upstream_state) {
                                (Some(u), Some(st)) => {
                                    code { (u) } " "
                                    strong.state.(st.state) id="introducer-state" { (st.state) }
                                    " since " (when(Some(st.since_unix)))
                                    @if !st.is_up() {
                                        @if let Some(e) = &st.last_error { ": " (e) }
                                    }
                                }
                                _ => span.none { "none (announcements stay local)" },
                            }
                        }
                        dt { "Subscribers" } dd { (i.relay.subscribers) }
                        dt { "Announcements" } dd id="announcements" { (i.relay.announcements) }
                    }
                    @if !i.announced.is_empty() {
                        table id="announced" {
                            thead { tr { th { "Nickname" } th { "Service" } } }
                            tbody {
                                @for (nick, service) in &i.announced {
                                    tr { td { (nick) } td { (service) } }
                                }
                            }
                        }
                    }
                }
                p { a href="/status" { "/status" } " (JSON) · " a href="/metrics" { "/metrics" } " · " a href="/healthz" { "/healthz" } }
            }
        }
    };
    page.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::admin::Connections;

    fn link(name: &str, state: &'static str, error: Option<&str>) -> LinkStatus {
        LinkStatus {
            name: name.into(),
            upstream: "pb://tubid@tcp:127.0.0.1:1/<swissnum>".into(),
            upstream_state: HealthState {
                state,
                since_unix: now_unix() - 30,
                last_error: error.map(str::to_string),
                last_error_unix: error.map(|_| now_unix()),
                last_success_unix: None,
                last_probe_unix: Some(now_unix()),
            },
            tubid: format!("tubid-of-{name}"),
            spki_hash: "hash".into(),
            listen: "127.0.0.1:1".into(),
            furl: "pb://t@tcp:h:1/<swissnum>".into(),
            nurl: "pb://s@h:1/<swissnum>#v=1".into(),
            inflight_calls: 0,
            inflight_uploads: 2,
            recent_minutes: vec![],
        }
    }

    #[test]
    fn every_value_is_escaped() {
        let s = Status {
            version: "0",
            listen: "127.0.0.1:1".into(),
            tubid: "tubid".into(),
            spki_hash: "hash".into(),
            connections: Connections {
                foolscap: 1,
                gbs: 2,
                open: 3,
                refused: 0,
            },
            links: vec![
                link("a", "up", None),
                link("b", "down", Some("<script>alert(1)</script> & \"x\"")),
            ],
            introducer: Some(crate::daemon::admin::IntroducerStatus {
                furl: "pb://i@tcp:h:1/<swissnum>".into(),
                relay: crate::introducer::relay::RelayStatus {
                    upstream_connected: false,
                    announcements: 2,
                    subscribers: 1,
                    foolscap_subscribers: 1,
                    ..Default::default()
                },
                upstream: Some("pb://u@tcp:h:2/<swissnum>".into()),
                upstream_state: Some(link("x", "down", Some("refused")).upstream_state),
                announced: vec![
                    ("<b>node</b>".into(), "storage".into()),
                    ("plain".into(), "storage".into()),
                ],
            }),
        };
        let page = render(&s);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
        assert!(
            page.contains(r#"<tr id="link-a" data-state="up">"#),
            "{page}"
        );
        assert!(
            page.contains(r#"<tr id="link-b" data-state="down">"#),
            "{page}"
        );
        assert!(page.contains("1 of 2 link upstreams down."));
        assert!(page.contains("&lt;swissnum&gt;"));
        assert!(page.contains("tubid-of-b"), "each link's identity: {page}");
        assert!(
            page.contains("<td>&lt;b&gt;node&lt;/b&gt;</td><td>storage</td>"),
            "{page}"
        );
        assert!(
            page.contains(r#"id="introducer-state">down</strong>"#),
            "{page}"
        );
        assert!(page.contains(r#"<dd id="announcements">2</dd>"#), "{page}");
    }
}
