//! `swampgate check` against a deliberately broken server: swampgate's embedded store
//! behind a small fault-injecting wrapper, served by swampgate's own Foolscap and GBS
//! fronts. The check must fail, naming exactly the checks the fault breaks.

use std::collections::BTreeSet;
use std::sync::Arc;

use swampgate::check::{self, Options, Status};
use swampgate::foolscap::furl::Hint;
use swampgate::foolscap::storage::front::StorageServerObject;
use swampgate::foolscap::{Tub, TubConfig};
use swampgate::gbs::server::{GbsServer, ServerConfig};
use swampgate::gbs::tls::TlsIdentity;
use swampgate::identity::Identity;
use swampgate::storage::layer::{wrap, Layer};
use swampgate::storage::store::{Store, StoreConfig};
use swampgate::storage::*;

#[derive(Clone, Copy)]
enum Fault {
    /// None: the embedded store as it is.
    Healthy,
    /// Reads starting at or past the end of an immutable share are refused instead of
    /// returning nothing.
    RefuseReadPastEnd,
    /// Mutable writes are made without evaluating their test vectors.
    IgnoreTestVectors,
}

/// The fault, as a layer over the store.
struct Faulty(Fault);

impl Layer for Faulty {
    async fn call<'a>(&'a self, call: Call<'a>, next: &'a dyn StorageApi) -> StorageResult<Reply> {
        match (self.0, call) {
            (
                Fault::RefuseReadPastEnd,
                Call::ReadImmutable {
                    si, shnum, offset, ..
                },
            ) if offset >= next.immutable_share_length(si, shnum).await? => {
                Err(StorageError::InvalidRequest("offset past the end".into()))
            }
            (Fault::IgnoreTestVectors, Call::ReadTestWrite(mut req)) => {
                for tw in req.test_write_vectors.values_mut() {
                    tw.test.clear();
                }
                Call::ReadTestWrite(req).send(next).await
            }
            (_, call) => call.send(next).await,
        }
    }
}

/// A store with `fault`, served over both fronts until dropped.
struct Served {
    furl: String,
    nurl: String,
    serving: tokio::task::JoinHandle<()>,
    gbs: swampgate::gbs::server::ServerHandle,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn stop(self) {
        self.serving.abort();
        self.gbs.shutdown().await;
    }
}

async fn serve(fault: Fault) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate().unwrap();
    let store = Store::open(StoreConfig::new(dir.path(), identity.tubid().to_string())).unwrap();
    let api = wrap(Arc::new(Faulty(fault)), Arc::new(store));
    let swissnum = "faultyfaultyfaultyfaultyfaulty22";
    // Foolscap front.
    let tub = Tub::new(identity.clone(), TubConfig::default()).unwrap();
    tub.publish(swissnum, StorageServerObject::new(api.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let furl = tub.furl(
        swissnum,
        vec![Hint::Tcp {
            host: "127.0.0.1".into(),
            port,
        }],
    );
    let serving = tokio::spawn(tub.clone().serve(listener));
    // GBS front.
    let tls = TlsIdentity::from_pem(identity.to_pem().as_bytes()).unwrap();
    let gbs = GbsServer::new(api, ServerConfig::new(swissnum))
        .listen("127.0.0.1:0".parse().unwrap(), &tls)
        .await
        .unwrap();
    let nurl = gbs.nurl("127.0.0.1").to_string();
    Served {
        furl: furl.to_string(),
        nurl,
        serving,
        gbs,
        _dir: dir,
    }
}

/// Serve a faulty store over both fronts; run the suite over each; return the ids of
/// the failed checks per protocol.
async fn failures(fault: Fault) -> (BTreeSet<String>, BTreeSet<String>) {
    let served = serve(fault).await;
    let opts = Options {
        only: vec![],
        destructive: true,
    };
    let mut out = Vec::new();
    for url in [served.furl.clone(), served.nurl.clone()] {
        let report = check::run_url(&url, &opts).await.unwrap();
        let failed: BTreeSet<String> = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.id.clone())
            .collect();
        assert_eq!(report.failed(), !failed.is_empty());
        // The text names each failed check with what was expected and what came.
        let text = report.to_text();
        for id in &failed {
            assert!(text.contains(&format!("FAIL  {id}")), "{text}");
        }
        assert_eq!(text.contains("expected:"), !failed.is_empty(), "{text}");
        out.push(failed);
    }
    served.stop().await;
    let gbs = out.pop().unwrap();
    (out.pop().unwrap(), gbs)
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn check_names_a_read_past_the_end_refused() {
    let (foolscap, gbs) = failures(Fault::RefuseReadPastEnd).await;
    let want = set(&["immutable.read-past-end", "immutable.read-far-past-end"]);
    assert_eq!(foolscap, want);
    assert_eq!(gbs, want);
}

#[tokio::test]
async fn check_names_test_vectors_ignored() {
    let (foolscap, gbs) = failures(Fault::IgnoreTestVectors).await;
    let want = set(&["mutable.test-fails", "mutable.test-past-end-data"]);
    assert_eq!(foolscap, want);
    assert_eq!(gbs, want);
}

/// `--compare` of a healthy and a faulty server reports exactly the results the fault
/// changes, on either protocol and across protocols.
#[tokio::test]
async fn compare_reports_the_differences_a_fault_makes() {
    let healthy = serve(Fault::Healthy).await;
    let faulty = serve(Fault::IgnoreTestVectors).await;
    let opts = Options {
        only: vec!["mutable".into()],
        destructive: false,
    };
    let want = set(&["mutable.test-fails", "mutable.test-past-end-data"]);
    for (a, b) in [
        (&healthy.nurl, &faulty.nurl),
        (&healthy.furl, &faulty.furl),
        (&healthy.furl, &faulty.nurl),
    ] {
        let c = check::compare_urls(a, b, &opts).await.unwrap();
        let ids: BTreeSet<String> = c.differences.iter().map(|d| d.id.clone()).collect();
        assert_eq!(ids, want, "{}", c.to_text());
        let text = c.to_text();
        assert!(text.contains("DIFF  mutable.test-fails"), "{text}");
        assert!(text.contains("2 differences"), "{text}");
    }
    healthy.stop().await;
    faulty.stop().await;
}
