//! `swampgate check --compare`: the same suite run against two servers, and every
//! check whose result ("got") differs. A difference is what a client would notice on
//! moving from one server to the other; checks whose expectation differs between the
//! protocols (and that both servers pass) are listed apart, since Tahoe itself
//! differs there, and checks of one protocol's edges are listed as run on one only.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{backend, client_tub, run, CheckResult, Options, Report, Status, Target};

/// One difference between two servers.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    pub id: String,
    pub description: String,
    pub a: String,
    pub b: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub a: Report,
    pub b: Report,
    /// Checks whose results differ.
    pub differences: Vec<Difference>,
    /// Checks that differ only as Tahoe itself differs between the two protocols.
    pub protocol_differences: Vec<Difference>,
    /// Checks run against only one of the two (protocol edges of different protocols).
    pub only_one: Vec<String>,
}

impl Comparison {
    pub fn new(a: Report, b: Report) -> Comparison {
        let mut differences = Vec::new();
        let mut protocol_differences = Vec::new();
        let mut only_one = Vec::new();
        let bmap: BTreeMap<&str, &CheckResult> =
            b.checks.iter().map(|c| (c.id.as_str(), c)).collect();
        let amap: BTreeMap<&str, &CheckResult> =
            a.checks.iter().map(|c| (c.id.as_str(), c)).collect();
        for ca in &a.checks {
            let Some(cb) = bmap.get(ca.id.as_str()) else {
                only_one.push(format!("{} (only {})", ca.id, a.server));
                continue;
            };
            if ca.got != cb.got {
                let d = Difference {
                    id: ca.id.clone(),
                    description: ca.description.clone(),
                    a: ca.got.clone(),
                    b: cb.got.clone(),
                };
                if a.protocol != b.protocol
                    && ca.protocol_specific
                    && ca.status == Status::Pass
                    && cb.status == Status::Pass
                {
                    protocol_differences.push(d);
                } else {
                    differences.push(d);
                }
            }
        }
        for cb in &b.checks {
            if !amap.contains_key(cb.id.as_str()) {
                only_one.push(format!("{} (only {})", cb.id, b.server));
            }
        }
        Comparison {
            a,
            b,
            differences,
            protocol_differences,
            only_one,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "A: {} over {}\nB: {} over {}\n",
            self.a.server, self.a.protocol, self.b.server, self.b.protocol
        );
        for d in &self.differences {
            out.push_str(&format!(
                "DIFF  {:<44} {}\n      A: {}\n      B: {}\n",
                d.id, d.description, d.a, d.b
            ));
        }
        for d in &self.protocol_differences {
            out.push_str(&format!(
                "PROTO {:<44} differs as Tahoe's protocols do (A: {}; B: {})\n",
                d.id, d.a, d.b
            ));
        }
        for o in &self.only_one {
            out.push_str(&format!("ONLY  {o}\n"));
        }
        out.push_str(&format!(
            "{} differences, {} protocol differences, {} checks run against one server only\n",
            self.differences.len(),
            self.protocol_differences.len(),
            self.only_one.len()
        ));
        out
    }
}

/// Run the suite against both servers and compare.
pub async fn compare_urls(a: &str, b: &str, opts: &Options) -> Result<Comparison, String> {
    let ta = Target::parse(a).map_err(|e| format!("URL_A: {e}"))?;
    let tb = Target::parse(b).map_err(|e| format!("URL_B: {e}"))?;
    let tub = client_tub()?;
    let ra = run(&ta, backend(&ta, &tub)?, &tub, opts).await;
    let rb = run(&tb, backend(&tb, &tub)?, &tub, opts).await;
    Ok(Comparison::new(ra, rb))
}
