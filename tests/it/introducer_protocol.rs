//! The introducer protocol between two of our own Tubs over loopback: Tahoe's call
//! semantics as the relay implements them (the real-peer tests are in
//! `introducer_relay.rs`).

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use serde_json::{Map, Value as Json};
use swampgate::foolscap::broker::Canary;
use swampgate::foolscap::furl::Hint;
use swampgate::foolscap::schema::RI_SUBSCRIBER_NAME;
use swampgate::foolscap::{CallError, Connection, Failure, RemoteObject, Tub, TubConfig, Value};
use swampgate::identity::Identity;
use swampgate::introducer::relay::V2;
use swampgate::introducer::{Relay, SignedAnnouncement};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A subscriber that records every `announce_v2` batch.
struct Recorder {
    iface: &'static str,
    tx: mpsc::UnboundedSender<Vec<SignedAnnouncement>>,
}

#[async_trait::async_trait]
impl RemoteObject for Recorder {
    fn interface_name(&self) -> &str {
        self.iface
    }

    async fn call(
        &self,
        _c: &Connection,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Value, Failure> {
        assert_eq!(method, "announce_v2");
        assert!(
            matches!(args[0], Value::Set(_)),
            "announcements come as a set"
        );
        let batch = args[0]
            .as_seq()
            .unwrap()
            .iter()
            .map(|v| SignedAnnouncement::from_value(v).unwrap())
            .collect();
        self.tx.send(batch).unwrap();
        Ok(Value::None)
    }
}

fn ann(seqnum: i64, nickname: &str) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("version".into(), 0.into());
    m.insert("nickname".into(), nickname.into());
    m.insert("service-name".into(), "storage".into());
    m.insert("seqnum".into(), seqnum.into());
    m
}

#[tokio::test]
async fn publish_subscribe_and_refusals() {
    let relay = Relay::new("test", None);
    let server = Tub::new(Identity::generate().unwrap(), TubConfig::default()).unwrap();
    server.publish("introducerswissnum", relay.service_object());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let furl = server.furl(
        "introducerswissnum",
        vec![Hint::Tcp {
            host: "127.0.0.1".into(),
            port,
        }],
    );
    tokio::spawn(server.clone().serve(listener));

    let client = Tub::new(Identity::generate().unwrap(), TubConfig::default()).unwrap();
    let intro = client.get_reference(&furl).await.unwrap();
    assert_eq!(
        intro.interface(),
        Some("RIIntroducerPublisherAndSubscriberService_v2.tahoe.allmydata.com")
    );
    let version = intro.call("get_version", &[]).await.unwrap();
    assert!(version.get(V2.as_bytes()).is_some());
    assert!(version
        .get(b"application-version")
        .unwrap()
        .as_bytes()
        .is_some());

    let key = SigningKey::from_bytes(&[5u8; 32]);
    let canary = || Value::Local(Arc::new(Canary));
    let first = SignedAnnouncement::sign(&ann(1, "one"), &key);

    // Tampered: refused as Tahoe refuses it, and not stored.
    let mut bad = first.clone();
    bad.msg = String::from_utf8(bad.msg.to_vec())
        .unwrap()
        .replace("one", "two")
        .into_bytes()
        .into();
    match intro.call("publish_v2", &[bad.to_value(), canary()]).await {
        Err(CallError::Remote(f)) => {
            assert!(f.check("allmydata.crypto.error.BadSignature"), "{f:?}")
        }
        other => panic!("tampered announcement: {other:?}"),
    }
    // Not a tuple of bytes: a violation naming the problem.
    let e = intro
        .call("publish_v2", &[Value::text("nope"), canary()])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a (msg, sig, key) tuple"), "{e}");
    assert!(relay.announcements("storage").is_empty());

    // Good; a list instead of a tuple is accepted too, as Tahoe's introducer does.
    let items = first.to_value().as_seq().unwrap().to_vec();
    intro
        .call("publish_v2", &[Value::List(items), canary()])
        .await
        .unwrap();
    assert_eq!(relay.announcements("storage").len(), 1);

    // A subscriber without the subscriber interface is refused (Tahoe checks it).
    let (tx, mut rx) = mpsc::unbounded_channel();
    let plain = Arc::new(Recorder {
        iface: "",
        tx: tx.clone(),
    });
    let e = intro
        .call(
            "subscribe_v2",
            &[
                Value::Local(plain),
                Value::bytes(&b"storage"[..]),
                Value::bytes_dict([]),
            ],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains(RI_SUBSCRIBER_NAME), "{e}");

    // A real subscriber gets the current set before subscribe_v2 is answered.
    let sub = Arc::new(Recorder {
        iface: RI_SUBSCRIBER_NAME,
        tx,
    });
    let info = Value::bytes_dict([("nickname", Value::text("t")), ("version", Value::int(0))]);
    intro
        .call(
            "subscribe_v2",
            &[Value::Local(sub), Value::bytes(&b"storage"[..]), info],
        )
        .await
        .unwrap();
    let batch = rx
        .try_recv()
        .expect("announce_v2 answered before subscribe_v2");
    assert_eq!(batch, vec![first.clone()]);

    // A replacement with a higher seqnum is relayed; an older one is not.
    let second = SignedAnnouncement::sign(&ann(2, "one"), &key);
    intro
        .call("publish_v2", &[second.to_value(), canary()])
        .await
        .unwrap();
    let batch = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch, vec![second.clone()]);
    intro
        .call("publish_v2", &[first.to_value(), canary()])
        .await
        .unwrap();
    let current = relay.announcements("storage");
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].seqnum(), Some(2));
    // Nothing else was delivered (a round trip later, the queue is still empty).
    intro.call("get_version", &[]).await.unwrap();
    assert!(rx.try_recv().is_err());
}
