//! The Foolscap backend: [`StorageApi`] over an upstream `RIStorageServer`.
//!
//! Protocol gaps closed here:
//! - GBS uploads are keyed by upload secret; Foolscap's by bucket-writer reference.
//!   Each allocation keeps its writers, its secret and the ranges still unwritten,
//!   and holds a canary of its own, so a lost upstream connection aborts it there.
//! - GBS completes a share when its last byte arrives; the writer is `close()`d then.
//! - Foolscap has no call for a share's length; it is found by probing reads.
//! - Foolscap reads an immutable share through a bucket-reader reference from
//!   `get_buckets`; GBS reads name the share. The readers of recently read storage
//!   indexes are kept (bounded, for a short time), so a GBS read is one upstream
//!   call, not two.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::errors::call_to_storage;
use crate::foolscap::backoff::Backoff;
use crate::foolscap::broker::Canary;
use crate::foolscap::{Furl, RemoteObject, RemoteRef, Tub, Value};
use crate::storage::*;

/// One unfinished upload of one share.
struct Upload {
    secret: Secret,
    writer: RemoteRef,
    required: Vec<ByteRange>,
    /// Keeps the canary exported for the upload's lifetime.
    _canary: Arc<dyn RemoteObject>,
}

type SharedUpload = Arc<tokio::sync::Mutex<Upload>>;

pub struct FoolscapBackend {
    tub: Tub,
    furl: Furl,
    server: tokio::sync::Mutex<Option<RemoteRef>>,
    uploads: Mutex<HashMap<(StorageIndex, ShareNum), SharedUpload>>,
    /// Paces reconnection attempts after the upstream is lost: calls made while
    /// waiting fail at once with `Unavailable`, as clients would see for a dead
    /// server, instead of each dialling again.
    backoff: Mutex<Backoff>,
    /// Recently completed uploads, so an abort of one gets NotAllowed (GBS's 405)
    /// rather than NotFound. Bounded: the oldest are forgotten first.
    completed: Mutex<std::collections::VecDeque<(StorageIndex, ShareNum)>>,
    /// Bucket readers from the last `get_buckets` of recently read storage
    /// indexes, with when they were fetched. Each holds a reference upstream.
    readers: Mutex<lru::LruCache<StorageIndex, (Instant, Readers)>>,
}

type Readers = Arc<BTreeMap<ShareNum, RemoteRef>>;

/// How many storage indexes' bucket readers are kept, and for how long. A share
/// deleted upstream meanwhile fails its read, which drops the entry and asks
/// again; a share added meanwhile is not in the entry, which asks again too.
const READER_CACHE_ENTRIES: usize = 256;
const READER_CACHE_TTL: Duration = Duration::from_secs(30);

/// How many completed uploads are remembered for the abort answer.
const COMPLETED_MEMORY: usize = 4096;

/// First and longest wait between reconnection attempts.
pub const RECONNECT_BASE: Duration = Duration::from_millis(250);
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);

impl FoolscapBackend {
    pub fn new(tub: Tub, furl: Furl) -> FoolscapBackend {
        FoolscapBackend {
            tub,
            furl,
            server: tokio::sync::Mutex::new(None),
            uploads: Mutex::new(HashMap::new()),
            backoff: Mutex::new(Backoff::new(RECONNECT_BASE, RECONNECT_MAX)),
            completed: Mutex::new(std::collections::VecDeque::new()),
            readers: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(READER_CACHE_ENTRIES).expect("non-zero"),
            )),
        }
    }

    fn completed(&self, si: StorageIndex, shnum: ShareNum) {
        self.forget_readers(si);
        self.uploads.lock().expect("uploads").remove(&(si, shnum));
        let mut c = self.completed.lock().expect("completed");
        if c.len() >= COMPLETED_MEMORY {
            c.pop_front();
        }
        c.push_back((si, shnum));
    }

    /// The upstream storage server, (re)connecting if needed (unless the reconnection
    /// backoff says to wait).
    async fn server(&self) -> StorageResult<RemoteRef> {
        self.connect(false).await
    }

    /// The upstream storage server, (re)connecting if needed; a `probe` dials at once
    /// whatever the backoff says, and leaves logging its failure to the prober.
    async fn connect(&self, probe: bool) -> StorageResult<RemoteRef> {
        let mut s = self.server.lock().await;
        if let Some(r) = s.as_ref().filter(|r| r.is_connected()) {
            return Ok(r.clone());
        }
        if s.take().is_some() {
            // The connection was lost: every upload on it is gone upstream too
            // (Tahoe aborts them when our canary's connection drops).
            self.uploads.lock().expect("uploads").clear();
        }
        if let (false, Err(wait)) = (
            probe,
            self.backoff.lock().expect("backoff").ready(Instant::now()),
        ) {
            return Err(StorageError::Unavailable(format!(
                "upstream unreachable; next attempt in {} ms",
                wait.as_millis()
            )));
        }
        match self.tub.get_reference(&self.furl).await {
            Ok(r) => {
                self.backoff.lock().expect("backoff").succeeded();
                *s = Some(r.clone());
                Ok(r)
            }
            Err(e) => {
                let wait = self.backoff.lock().expect("backoff").failed(Instant::now());
                if probe {
                    tracing::debug!(upstream = ?self.furl, "probe: upstream unreachable: {e}");
                } else {
                    tracing::warn!(upstream = ?self.furl, "upstream unreachable (retry in {} ms): {e}", wait.as_millis());
                }
                Err(StorageError::Unavailable(e.to_string()))
            }
        }
    }

    /// A write, close or abort on an upload's writer failed: if the connection was
    /// lost the upload is gone upstream, and GBS clients are told so with NotFound.
    fn writer_failed(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        e: crate::foolscap::CallError,
    ) -> StorageError {
        match e {
            crate::foolscap::CallError::ConnectionLost(m) => {
                self.uploads.lock().expect("uploads").remove(&(si, shnum));
                StorageError::NotFound(format!(
                    "upload of share {shnum} of {si} lost with the upstream connection: {m}"
                ))
            }
            other => call_to_storage(other),
        }
    }

    async fn call(&self, method: &str, args: &[Value]) -> StorageResult<Value> {
        let ss = self.server().await?;
        self.call_on(ss, method, args).await
    }

    async fn call_on(&self, ss: RemoteRef, method: &str, args: &[Value]) -> StorageResult<Value> {
        match ss.call(method, args).await {
            Err(crate::foolscap::CallError::ConnectionLost(m)) => {
                *self.server.lock().await = None;
                Err(StorageError::Unavailable(m))
            }
            r => r.map_err(call_to_storage),
        }
    }

    fn upload(&self, si: StorageIndex, sh: ShareNum) -> StorageResult<SharedUpload> {
        self.uploads
            .lock()
            .expect("uploads")
            .get(&(si, sh))
            .cloned()
            .ok_or_else(|| {
                StorageError::NotFound(format!("no upload in progress for share {sh} of {si}"))
            })
    }

    /// The upstream's bucket readers for `si` (`get_buckets`), remembered for the
    /// reads that follow.
    async fn readers(&self, si: StorageIndex) -> StorageResult<Readers> {
        let v = self.call("get_buckets", &[si_value(si)]).await?;
        let Value::Dict(items) = v else {
            return Err(bad_answer("get_buckets", &v));
        };
        let mut out = BTreeMap::new();
        for (k, r) in items {
            if let (Some(sh), Value::Remote(r)) =
                (k.as_u64().and_then(|n| ShareNum::try_from(n).ok()), r)
            {
                out.insert(sh, r);
            }
        }
        let out = Arc::new(out);
        self.readers
            .lock()
            .expect("readers")
            .put(si, (Instant::now(), out.clone()));
        Ok(out)
    }

    /// A remembered reader of share `shnum` of `si`, if one is fresh and its
    /// connection alive.
    fn remembered_reader(&self, si: StorageIndex, shnum: ShareNum) -> Option<RemoteRef> {
        let mut cache = self.readers.lock().expect("readers");
        let (fetched, readers) = cache.get(&si)?;
        match readers.get(&shnum) {
            Some(r) if fetched.elapsed() < READER_CACHE_TTL && r.is_connected() => Some(r.clone()),
            _ => {
                cache.pop(&si);
                None
            }
        }
    }

    fn forget_readers(&self, si: StorageIndex) {
        self.readers.lock().expect("readers").pop(&si);
    }

    /// Find a share's length with reads: double until a read comes back short,
    /// then the short read tells the rest.
    async fn probe_length<F, Fut>(&self, read: F) -> StorageResult<u64>
    where
        F: Fn(u64, u64) -> Fut,
        Fut: std::future::Future<Output = StorageResult<Bytes>>,
    {
        const CHUNK: u64 = 1 << 20;
        let mut offset = 0;
        loop {
            let b = read(offset, CHUNK).await?;
            if (b.len() as u64) < CHUNK {
                return Ok(offset + b.len() as u64);
            }
            offset += CHUNK;
        }
    }
}

fn si_value(si: StorageIndex) -> Value {
    Value::bytes(si.0.to_vec())
}

fn secret_value(s: &Secret) -> Value {
    Value::bytes(s.0.clone())
}

fn bad_answer(method: &str, v: &Value) -> StorageError {
    StorageError::Internal(format!(
        "upstream {method} answered an unexpected {}",
        v.type_name()
    ))
}

fn read_data(method: &str, v: Value) -> StorageResult<BTreeMap<ShareNum, Vec<Bytes>>> {
    let Value::Dict(items) = v else {
        return Err(bad_answer(method, &v));
    };
    let mut out = BTreeMap::new();
    for (k, datas) in items {
        let sh = k
            .as_u64()
            .and_then(|n| ShareNum::try_from(n).ok())
            .ok_or_else(|| bad_answer(method, &k))?;
        let datas = datas
            .as_seq()
            .ok_or_else(|| bad_answer(method, &datas))?
            .iter()
            .map(|d| d.as_bytes().cloned().ok_or_else(|| bad_answer(method, d)))
            .collect::<Result<_, _>>()?;
        out.insert(sh, datas);
    }
    Ok(out)
}

/// Remove `[begin, end)` from a sorted list of required ranges.
pub fn subtract(required: &mut Vec<ByteRange>, begin: u64, end: u64) {
    let mut out = Vec::with_capacity(required.len() + 1);
    for r in required.drain(..) {
        if r.end <= begin || r.begin >= end {
            out.push(r);
            continue;
        }
        if r.begin < begin {
            out.push(ByteRange {
                begin: r.begin,
                end: begin,
            });
        }
        if r.end > end {
            out.push(ByteRange {
                begin: end,
                end: r.end,
            });
        }
    }
    *required = out;
}

#[async_trait::async_trait]
impl StorageApi for FoolscapBackend {
    /// `get_version`, dialling at once if there is no connection: a success also
    /// ends the backoff, so clients' calls find the upstream again without waiting.
    async fn probe(&self) -> StorageResult<()> {
        let ss = self.connect(true).await?;
        self.call_on(ss, "get_version", &[]).await.map(|_| ())
    }

    async fn version(&self) -> StorageResult<VersionInfo> {
        let v = self.call("get_version", &[]).await?;
        let inner = v.get(b"http://allmydata.org/tahoe/protocols/storage/v1");
        let num = |k: &[u8]| inner.and_then(|d| d.get(k)).and_then(|x| x.as_u64());
        Ok(VersionInfo {
            maximum_immutable_share_size: num(b"maximum-immutable-share-size").unwrap_or(u64::MAX),
            maximum_mutable_share_size: num(b"maximum-mutable-share-size")
                .unwrap_or(69_105 * 1_000_000_000_000),
            available_space: num(b"available-space").unwrap_or(u64::MAX),
            application_version: v
                .get(b"application-version")
                .and_then(|x| x.as_bytes())
                .map(|b| b.to_vec())
                .unwrap_or_else(|| b"unknown".to_vec()),
        })
    }

    async fn allocate_buckets(&self, req: AllocateRequest) -> StorageResult<AllocateResult> {
        let canary: Arc<dyn RemoteObject> = Arc::new(Canary);
        let v = self
            .call(
                "allocate_buckets",
                &[
                    si_value(req.storage_index),
                    secret_value(&req.lease.renew),
                    secret_value(&req.lease.cancel),
                    Value::Set(req.share_numbers.iter().map(|s| Value::int(*s)).collect()),
                    Value::int(req.allocated_size),
                    Value::Local(canary.clone()),
                ],
            )
            .await?;
        let (already, writers) = match &v {
            Value::Tuple(t) if t.len() == 2 => (&t[0], &t[1]),
            _ => return Err(bad_answer("allocate_buckets", &v)),
        };
        let already_have: BTreeSet<ShareNum> = already
            .as_seq()
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x.as_u64().and_then(|n| ShareNum::try_from(n).ok()))
            .collect();
        let mut allocated = BTreeSet::new();
        if let Value::Dict(ws) = writers {
            let mut uploads = self.uploads.lock().expect("uploads");
            for (k, w) in ws {
                if let (Some(sh), Value::Remote(w)) =
                    (k.as_u64().and_then(|n| ShareNum::try_from(n).ok()), w)
                {
                    allocated.insert(sh);
                    let required = if req.allocated_size == 0 {
                        Vec::new()
                    } else {
                        vec![ByteRange {
                            begin: 0,
                            end: req.allocated_size,
                        }]
                    };
                    uploads.insert(
                        (req.storage_index, sh),
                        Arc::new(tokio::sync::Mutex::new(Upload {
                            secret: req.upload_secret.clone(),
                            writer: w.clone(),
                            required,
                            _canary: canary.clone(),
                        })),
                    );
                }
            }
        }
        Ok(AllocateResult {
            already_have,
            allocated,
        })
    }

    async fn write_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
        offset: u64,
        data: Bytes,
    ) -> StorageResult<WriteProgress> {
        let up = self.upload(si, shnum)?;
        let mut u = up.lock().await;
        if u.secret != *upload_secret {
            return Err(StorageError::WrongUploadSecret);
        }
        let end = offset + data.len() as u64;
        u.writer
            .call("write", &[Value::int(offset), Value::Bytes(data)])
            .await
            .map_err(|e| self.writer_failed(si, shnum, e))?;
        subtract(&mut u.required, offset, end);
        if u.required.is_empty() {
            u.writer
                .call("close", &[])
                .await
                .map_err(|e| self.writer_failed(si, shnum, e))?;
            self.completed(si, shnum);
        }
        Ok(WriteProgress {
            required: u.required.clone(),
        })
    }

    async fn close_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        let up = self.upload(si, shnum)?;
        let u = up.lock().await;
        if u.secret != *upload_secret {
            return Err(StorageError::WrongUploadSecret);
        }
        u.writer
            .call("close", &[])
            .await
            .map_err(|e| self.writer_failed(si, shnum, e))?;
        self.completed(si, shnum);
        Ok(())
    }

    async fn abort_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &Secret,
    ) -> StorageResult<()> {
        if self
            .completed
            .lock()
            .expect("completed")
            .contains(&(si, shnum))
        {
            return Err(StorageError::NotAllowed(format!(
                "the upload of share {shnum} of {si} is complete"
            )));
        }
        let up = self.upload(si, shnum)?;
        let u = up.lock().await;
        if u.secret != *upload_secret {
            return Err(StorageError::WrongUploadSecret);
        }
        self.uploads.lock().expect("uploads").remove(&(si, shnum));
        match u.writer.call("abort", &[]).await {
            // Lost with the connection: upstream has aborted it already.
            Ok(_) | Err(crate::foolscap::CallError::ConnectionLost(_)) => Ok(()),
            Err(e) => Err(call_to_storage(e)),
        }
    }

    async fn list_immutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        Ok(self.readers(si).await?.keys().copied().collect())
    }

    async fn read_immutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let args = [Value::int(offset), Value::int(length)];
        if let Some(r) = self.remembered_reader(si, shnum) {
            match r.call("read", &args).await {
                Ok(Value::Bytes(b)) => return Ok(b),
                // The share may have gone (or the connection): ask afresh.
                _ => self.forget_readers(si),
            }
        }
        let readers = self.readers(si).await?;
        let r = readers
            .get(&shnum)
            .ok_or_else(|| StorageError::NotFound(format!("no share {shnum} of {si}")))?;
        let v = r.call("read", &args).await.map_err(|e| {
            self.forget_readers(si);
            call_to_storage(e)
        })?;
        v.as_bytes().cloned().ok_or_else(|| bad_answer("read", &v))
    }

    async fn immutable_share_length(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> StorageResult<u64> {
        self.probe_length(|o, l| self.read_immutable(si, shnum, o, l))
            .await
    }

    async fn add_lease(&self, si: StorageIndex, lease: LeaseSecrets) -> StorageResult<()> {
        // Foolscap's add_lease ignores an unknown storage index; GBS answers 404.
        // Each probe fails on a container of the other kind, so either succeeding
        // with shares is enough.
        let immutable = matches!(self.readers(si).await, Ok(r) if !r.is_empty());
        if !immutable
            && !matches!(self.slot_readv(si, vec![], vec![]).await, Ok(r) if !r.is_empty())
        {
            return Err(StorageError::NotFound(format!("no shares for {si}")));
        }
        self.call(
            "add_lease",
            &[
                si_value(si),
                secret_value(&lease.renew),
                secret_value(&lease.cancel),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn advise_corrupt_share(
        &self,
        share_type: ShareType,
        si: StorageIndex,
        shnum: ShareNum,
        reason: String,
    ) -> StorageResult<()> {
        self.call(
            "advise_corrupt_share",
            &[
                Value::bytes(share_type.as_str().as_bytes().to_vec()),
                si_value(si),
                Value::int(shnum),
                Value::bytes(reason.into_bytes()),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn read_test_write(
        &self,
        req: ReadTestWriteRequest,
    ) -> StorageResult<ReadTestWriteResult> {
        let tw = req
            .test_write_vectors
            .iter()
            .map(|(sh, t)| {
                let testv = t
                    .test
                    .iter()
                    .map(|tv| {
                        Value::Tuple(vec![
                            Value::int(tv.offset),
                            Value::int(tv.size),
                            Value::bytes(&b"eq"[..]),
                            Value::Bytes(tv.specimen.clone()),
                        ])
                    })
                    .collect();
                let datav = t
                    .write
                    .iter()
                    .map(|w| Value::Tuple(vec![Value::int(w.offset), Value::Bytes(w.data.clone())]))
                    .collect();
                let new_length = t.new_length.map(Value::int).unwrap_or(Value::None);
                (
                    Value::int(*sh),
                    Value::Tuple(vec![Value::List(testv), Value::List(datav), new_length]),
                )
            })
            .collect();
        let rv = req
            .read_vector
            .iter()
            .map(|r| Value::Tuple(vec![Value::int(r.offset), Value::int(r.size)]))
            .collect();
        let v = self
            .call(
                "slot_testv_and_readv_and_writev",
                &[
                    si_value(req.storage_index),
                    Value::Tuple(vec![
                        secret_value(&req.secrets.write_enabler),
                        secret_value(&req.secrets.lease.renew),
                        secret_value(&req.secrets.lease.cancel),
                    ]),
                    Value::Dict(tw),
                    Value::List(rv),
                ],
            )
            .await?;
        match v {
            Value::Tuple(mut t) if t.len() == 2 => {
                let data = read_data("slot_testv_and_readv_and_writev", t.pop().expect("two"))?;
                let success = matches!(t.pop(), Some(Value::Bool(true)));
                Ok(ReadTestWriteResult { success, data })
            }
            other => Err(bad_answer("slot_testv_and_readv_and_writev", &other)),
        }
    }

    async fn list_mutable_shares(&self, si: StorageIndex) -> StorageResult<BTreeSet<ShareNum>> {
        Ok(self
            .slot_readv(si, vec![], vec![])
            .await?
            .into_keys()
            .collect())
    }

    async fn read_mutable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        length: u64,
    ) -> StorageResult<Bytes> {
        let mut d = self
            .slot_readv(
                si,
                vec![shnum],
                vec![ReadVector {
                    offset,
                    size: length,
                }],
            )
            .await?;
        d.remove(&shnum)
            .and_then(|mut v| v.pop())
            .ok_or_else(|| StorageError::NotFound(format!("no mutable share {shnum} of {si}")))
    }

    async fn mutable_share_length(&self, si: StorageIndex, shnum: ShareNum) -> StorageResult<u64> {
        self.probe_length(|o, l| self.read_mutable(si, shnum, o, l))
            .await
    }

    async fn slot_readv(
        &self,
        si: StorageIndex,
        shares: Vec<ShareNum>,
        readv: Vec<ReadVector>,
    ) -> StorageResult<BTreeMap<ShareNum, Vec<Bytes>>> {
        let v = self
            .call(
                "slot_readv",
                &[
                    si_value(si),
                    Value::List(shares.into_iter().map(Value::int).collect()),
                    Value::List(
                        readv
                            .iter()
                            .map(|r| Value::Tuple(vec![Value::int(r.offset), Value::int(r.size)]))
                            .collect(),
                    ),
                ],
            )
            .await?;
        read_data("slot_readv", v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_ranges() {
        let mut r = vec![ByteRange { begin: 0, end: 100 }];
        subtract(&mut r, 10, 20);
        assert_eq!(
            r,
            vec![
                ByteRange { begin: 0, end: 10 },
                ByteRange {
                    begin: 20,
                    end: 100
                }
            ]
        );
        subtract(&mut r, 0, 15);
        assert_eq!(
            r,
            vec![ByteRange {
                begin: 20,
                end: 100
            }]
        );
        subtract(&mut r, 50, 200);
        assert_eq!(r, vec![ByteRange { begin: 20, end: 50 }]);
        subtract(&mut r, 20, 50);
        assert!(r.is_empty());
    }
}
