//! The running suite: the storage seam it calls through, the results it has recorded,
//! and what it created (cleaned up again, or left behind). Each group's file adds its
//! checks to [`Suite`]; here are the ways to record a check and the clean-up steps
//! several groups share, so that every group records and cleans up the same way.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::format::{err_detail, outcome, shares};
use super::{CheckResult, Group, Protocol, Status};
use crate::storage::*;

pub(super) fn random_si() -> StorageIndex {
    StorageIndex(rand::random())
}

pub(super) fn secret() -> Secret {
    Secret(rand::random::<[u8; 32]>().to_vec())
}

pub(super) fn lease() -> LeaseSecrets {
    LeaseSecrets {
        renew: secret(),
        cancel: secret(),
    }
}

pub(super) fn data(n: usize) -> Bytes {
    Bytes::from((0..n).map(|_| rand::random::<u8>()).collect::<Vec<u8>>())
}

pub(super) struct Suite {
    pub(super) proto: Protocol,
    pub(super) api: Arc<dyn StorageApi>,
    pub(super) checks: Vec<CheckResult>,
    pub(super) left_behind: Vec<String>,
    pub(super) cleaned_up: Vec<String>,
    pub(super) destructive: bool,
}

impl Suite {
    pub(super) fn new(proto: Protocol, api: Arc<dyn StorageApi>, destructive: bool) -> Suite {
        Suite {
            proto,
            api,
            checks: Vec::new(),
            left_behind: Vec::new(),
            cleaned_up: Vec::new(),
            destructive,
        }
    }

    /// Record a check: it passes when `got == expected`.
    pub(super) fn check(
        &mut self,
        group: Group,
        name: &str,
        description: &str,
        expected: impl Into<String>,
        got: impl Into<String>,
        detail: Option<String>,
    ) -> bool {
        self.record(group, name, description, expected, got, detail, false)
    }

    /// Record a check of a call's outcome: `show` names a success, an error is
    /// "error KIND", and a failure's detail is the error's message.
    pub(super) fn check_outcome<T>(
        &mut self,
        group: Group,
        name: &str,
        description: &str,
        expected: impl Into<String>,
        r: &StorageResult<T>,
        show: impl FnOnce(&T) -> String,
    ) -> bool {
        let got = outcome(r, show);
        self.check(group, name, description, expected, got, err_detail(r))
    }

    /// A check whose expectation differs between the protocols.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_proto(
        &mut self,
        group: Group,
        name: &str,
        description: &str,
        foolscap: &str,
        gbs: &str,
        got: impl Into<String>,
        detail: Option<String>,
    ) -> bool {
        let expected = match self.proto {
            Protocol::Foolscap => foolscap,
            Protocol::Gbs => gbs,
        };
        self.record(group, name, description, expected, got, detail, true)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &mut self,
        group: Group,
        name: &str,
        description: &str,
        expected: impl Into<String>,
        got: impl Into<String>,
        detail: Option<String>,
        protocol_specific: bool,
    ) -> bool {
        let expected = expected.into();
        let got = got.into();
        let pass = expected == got;
        self.checks.push(CheckResult {
            id: format!("{group}.{name}"),
            group,
            description: description.into(),
            status: if pass { Status::Pass } else { Status::Fail },
            expected,
            got,
            protocol_specific,
            note: if pass { None } else { detail },
        });
        pass
    }

    /// A check that asserted nothing: not observable, or skipped.
    pub(super) fn special(
        &mut self,
        group: Group,
        name: &str,
        description: &str,
        status: Status,
        note: &str,
    ) {
        self.checks.push(CheckResult {
            id: format!("{group}.{name}"),
            group,
            description: description.into(),
            status,
            expected: String::new(),
            got: match status {
                Status::NotObservable => "not observable".into(),
                _ => "skipped".into(),
            },
            protocol_specific: false,
            note: Some(note.into()),
        });
    }

    /// Abort the unfinished uploads of `shs`, noting those aborted.
    pub(super) async fn abort_all(&mut self, si: StorageIndex, shs: &[ShareNum], up: &Secret) {
        let mut aborted = BTreeSet::new();
        for &sh in shs {
            if self.api.abort_immutable(si, sh, up).await.is_ok() {
                aborted.insert(sh);
            }
        }
        if !aborted.is_empty() {
            self.cleaned_up.push(format!(
                "unfinished uploads of shares {} of {si} aborted",
                shares(&aborted)
            ));
        }
    }

    /// A test-and-write with write enabler `we` and fresh lease secrets.
    pub(super) async fn rtw(
        &self,
        si: StorageIndex,
        we: &Secret,
        tw: Vec<(ShareNum, TestWriteVectors)>,
        readv: Vec<ReadVector>,
    ) -> StorageResult<ReadTestWriteResult> {
        self.api
            .read_test_write(ReadTestWriteRequest {
                storage_index: si,
                secrets: MutableSecrets {
                    write_enabler: we.clone(),
                    lease: lease(),
                },
                test_write_vectors: tw.into_iter().collect(),
                read_vector: readv,
            })
            .await
    }

    /// Create mutable share 0 of `si` holding 10 random bytes.
    pub(super) async fn create_slot(
        &self,
        si: StorageIndex,
        we: &Secret,
    ) -> StorageResult<ReadTestWriteResult> {
        let tw = TestWriteVectors {
            write: vec![WriteVector {
                offset: 0,
                data: data(10),
            }],
            ..Default::default()
        };
        self.rtw(si, we, vec![(0, tw)], vec![]).await
    }

    /// Upload immutable share 0 of `si`, 10 random bytes.
    pub(super) async fn upload_share(&self, si: StorageIndex) -> StorageResult<WriteProgress> {
        let up = secret();
        self.api
            .allocate_buckets(AllocateRequest {
                storage_index: si,
                lease: lease(),
                upload_secret: up.clone(),
                share_numbers: [0].into_iter().collect(),
                allocated_size: 10,
            })
            .await?;
        self.api.write_immutable(si, 0, &up, 0, data(10)).await
    }

    /// Delete every mutable share of `si` (a zero new length).
    pub(super) async fn delete_mutable(&mut self, si: StorageIndex, we: &Secret) {
        let existing = self.api.list_mutable_shares(si).await.unwrap_or_default();
        if existing.is_empty() {
            return;
        }
        let tw = existing
            .iter()
            .map(|&sh| {
                (
                    sh,
                    TestWriteVectors {
                        new_length: Some(0),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let r = self.rtw(si, we, tw, vec![]).await;
        let left = self.api.list_mutable_shares(si).await.unwrap_or_default();
        if r.is_ok() && left.is_empty() {
            self.cleaned_up.push(format!(
                "mutable shares {} of {si} deleted",
                shares(&existing)
            ));
        } else {
            self.left_behind.push(format!(
                "mutable shares {} of {si} (deleting them failed)",
                shares(&left)
            ));
        }
    }
}
