//! `swampgate node-info NODEDIR [--json] [--via STATE/links/NAME.furl]`: what a Tahoe
//! storage node announces, read from its directory, and the `servers.yaml` entry that
//! reaches it (directly, or through a swampgate link that adopts it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use serde_json::{json, Value};

use super::{NodeDir, NodeDirError};
use crate::foolscap::furl::Furl;
use crate::gbs::nurl::Nurl;

#[derive(clap::Args, Debug)]
pub struct NodeInfoArgs {
    /// The Tahoe storage node's directory.
    pub nodedir: PathBuf,
    /// Print one JSON object instead of `key value` lines.
    #[arg(long)]
    pub json: bool,
    /// A swampgate link that adopts the node: its FURL file (and the NURL file next to
    /// it). The servers.yaml entry then points at the link, with the node's server id
    /// and permutation seed.
    #[arg(long, value_name = "STATE/links/NAME.furl")]
    pub via: Option<PathBuf>,
}

/// What `node-info` prints.
#[derive(Debug, Serialize)]
pub struct NodeInfo {
    #[serde(rename = "node-dir")]
    pub node_dir: String,
    pub nickname: String,
    #[serde(rename = "server-id")]
    pub server_id: String,
    pub tubid: String,
    /// Where the node listens (`tub.port`, or `client.port`), comma-separated.
    #[serde(rename = "tub-port")]
    pub tub_port: String,
    pub furl: String,
    /// Empty when the node serves only Foolscap.
    pub nurls: Vec<String>,
    #[serde(rename = "permutation-seed")]
    pub permutation_seed: String,
    /// Whether the node serves HTTP storage: its tahoe.cfg allows it and its port
    /// answers TLS (or does not answer at all). What `--upstream node:NODEDIR` picks.
    pub gbs: bool,
    #[serde(rename = "gbs-why")]
    pub gbs_why: String,
    #[serde(rename = "via-furl", skip_serializing_if = "Option::is_none")]
    pub via_furl: Option<String>,
    #[serde(rename = "via-nurl", skip_serializing_if = "Option::is_none")]
    pub via_nurl: Option<String>,
    /// `private/servers.yaml` for a client (JSON, which YAML reads).
    #[serde(rename = "servers.yaml")]
    pub servers_yaml: Value,
    pub warnings: Vec<String>,
}

impl NodeInfo {
    /// Read `nodedir`, and the link files of `via` if given.
    pub async fn gather(nodedir: &Path, via: Option<&Path>) -> Result<NodeInfo, NodeDirError> {
        let node = NodeDir::load(nodedir)?;
        let serving = node.serving().await?;
        let furl = node.furl();
        // A node whose port answers no TLS announces no NURL whatever its config says.
        let nurls: Vec<String> = match serving.gbs {
            Some(_) => node.nurls().iter().map(|n| n.to_string()).collect(),
            None => Vec::new(),
        };
        let (via_furl, via_nurl) = match via {
            None => (None, None),
            Some(p) => {
                let (f, n) = read_link(p, &node)?;
                (Some(f), n)
            }
        };
        let (ann_furl, ann_nurls) = match &via_furl {
            Some(f) => (f.clone(), via_nurl.iter().cloned().collect()),
            None => (furl.clone(), nurls.clone()),
        };
        let mut ann = json!({
            "nickname": node.nickname,
            "anonymous-storage-FURL": ann_furl,
            "permutation-seed-base32": node.permutation_seed,
        });
        if !ann_nurls.is_empty() {
            ann["anonymous-storage-NURLs"] = json!(ann_nurls);
        }
        let servers_yaml = json!({ "storage": { node.server_id.clone(): { "ann": ann } } });
        Ok(NodeInfo {
            node_dir: nodedir.display().to_string(),
            nickname: node.nickname.clone(),
            server_id: node.server_id.clone(),
            tubid: node.tubid().to_string(),
            tub_port: node
                .tub_port
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(","),
            furl,
            nurls,
            permutation_seed: node.permutation_seed.clone(),
            gbs: serving.gbs.is_some(),
            gbs_why: serving.why,
            via_furl,
            via_nurl,
            servers_yaml,
            warnings: node.warnings.clone(),
        })
    }

    /// One `key value` per line.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| {
            out.push_str(k);
            out.push(' ');
            out.push_str(v);
            out.push('\n');
        };
        line("node-dir", &self.node_dir);
        line("nickname", &self.nickname);
        line("server-id", &self.server_id);
        line("tubid", &self.tubid);
        line("tub-port", &self.tub_port);
        line("furl", &self.furl);
        for n in &self.nurls {
            line("nurl", n);
        }
        line("permutation-seed", &self.permutation_seed);
        line("gbs", if self.gbs { "yes" } else { "no" });
        line("gbs-why", &self.gbs_why);
        if let Some(f) = &self.via_furl {
            line("via-furl", f);
        }
        if let Some(n) = &self.via_nurl {
            line("via-nurl", n);
        }
        line("servers.yaml", &self.servers_yaml.to_string());
        for w in &self.warnings {
            line("warning", w);
        }
        out
    }
}

/// A link's FURL (from `furl_file`) and NURL (the `.nurl` next to it, if there),
/// checked to serve `node`'s identity: otherwise clients would derive other lease
/// secrets and write enablers than the node's.
fn read_link(furl_file: &Path, node: &NodeDir) -> Result<(String, Option<String>), NodeDirError> {
    let e = |p: &Path, why: String| NodeDirError {
        path: p.display().to_string(),
        why,
    };
    let text = std::fs::read_to_string(furl_file).map_err(|x| {
        e(
            furl_file,
            format!("cannot read ({x}); expected a link's FURL file, STATE/links/NAME.furl"),
        )
    })?;
    let furl = Furl::parse(text.trim()).map_err(|x| e(furl_file, format!("not a FURL: {x}")))?;
    if furl.tubid != node.tubid() || furl.swissnum != node.swissnum {
        return Err(e(
            furl_file,
            format!(
                "the link serves tubid {} with another swissnum or key than {} (tubid {}): it \
                 does not adopt this node (run it with --upstream node:{})",
                furl.tubid,
                node.dir.display(),
                node.tubid(),
                node.dir.display()
            ),
        ));
    }
    let nurl_file = furl_file.with_extension("nurl");
    let nurl = match std::fs::read_to_string(&nurl_file) {
        Err(x) if x.kind() == std::io::ErrorKind::NotFound => None,
        Err(x) => return Err(e(&nurl_file, format!("cannot read: {x}"))),
        Ok(t) => {
            let n: Nurl = t
                .trim()
                .parse()
                .map_err(|x| e(&nurl_file, format!("not a NURL: {x}")))?;
            if n.spki_hash != node.identity.spki_hash() || n.swissnum != node.swissnum {
                return Err(e(
                    &nurl_file,
                    format!(
                        "the link's NURL pins another key or swissnum than {}'s",
                        node.dir.display()
                    ),
                ));
            }
            Some(n.to_string())
        }
    };
    Ok((furl.to_string(), nurl))
}

pub fn main(args: NodeInfoArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swampgate: node-info: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(NodeInfo::gather(&args.nodedir, args.via.as_deref())) {
        Ok(info) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&info).expect("serializable")
                );
            } else {
                print!("{}", info.human());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("swampgate: node-info: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodedir::tests::{node_dir, CFG, SERVER_ID};

    #[tokio::test]
    async fn the_entry_points_at_the_node_or_at_the_link() {
        // Nothing listens at the node's address: node-info follows tahoe.cfg.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = CFG.replace("3457", &port.to_string());
        let (d, id) = node_dir(&cfg, &format!("tcp:127.0.0.1:{port}"));
        let info = NodeInfo::gather(d.path(), None).await.unwrap();
        assert_eq!(info.nurls.len(), 1);
        assert!(info.gbs_why.contains("does not answer"), "{}", info.gbs_why);
        let ann = &info.servers_yaml["storage"][SERVER_ID]["ann"];
        assert_eq!(ann["anonymous-storage-FURL"], json!(info.furl));
        assert_eq!(ann["anonymous-storage-NURLs"], json!(info.nurls));
        assert_eq!(ann["permutation-seed-base32"], json!("seedseed"));
        assert_eq!(ann["nickname"], json!("storage1"));
        let human = info.human();
        assert!(
            human.contains(&format!("server-id {SERVER_ID}\n")),
            "{human}"
        );
        assert!(human.contains("\ngbs yes\n"), "{human}");
        assert!(
            human.contains(
                "\ntub-port tcp:3457:interface=127.0.0.1\n"
                    .replace("3457", &port.to_string())
                    .as_str()
            ),
            "{human}"
        );
        assert!(
            human.lines().all(|l| l.split_once(' ').is_some()),
            "{human}"
        );

        let links = tempfile::tempdir().unwrap();
        let via = links.path().join("default.furl");
        let link_furl = format!(
            "pb://{}@tcp:gw.example:7750/{}",
            id.tubid(),
            "yci4erqgi6kgb3ybym4y3qlox2zawafr"
        );
        let link_nurl = format!(
            "pb://{}@gw.example:7750/yci4erqgi6kgb3ybym4y3qlox2zawafr#v=1",
            id.spki_hash()
        );
        std::fs::write(&via, format!("{link_furl}\n")).unwrap();
        // Without a .nurl file: FURL only.
        let info = NodeInfo::gather(d.path(), Some(&via)).await.unwrap();
        let ann = &info.servers_yaml["storage"][SERVER_ID]["ann"];
        assert_eq!(ann["anonymous-storage-FURL"], json!(link_furl));
        assert!(ann.get("anonymous-storage-NURLs").is_none());
        std::fs::write(links.path().join("default.nurl"), format!("{link_nurl}\n")).unwrap();
        let info = NodeInfo::gather(d.path(), Some(&via)).await.unwrap();
        let ann = &info.servers_yaml["storage"][SERVER_ID]["ann"];
        assert_eq!(ann["anonymous-storage-NURLs"], json!([link_nurl]));
        assert_eq!(ann["permutation-seed-base32"], json!("seedseed"));

        // A link that does not adopt the node is refused.
        std::fs::write(
            &via,
            "pb://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@tcp:gw.example:7750/other\n",
        )
        .unwrap();
        let e = NodeInfo::gather(d.path(), Some(&via)).await.unwrap_err();
        assert!(e.why.contains("does not adopt this node"), "{e}");
        let e = NodeInfo::gather(d.path(), Some(&links.path().join("nope.furl")))
            .await
            .unwrap_err();
        assert!(e.why.contains("cannot read"), "{e}");
    }
}
