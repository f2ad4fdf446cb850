//! What backups the bucket holds, which are complete, and which retention deletes.
//! The planning is pure (it takes the listing); `list` and `apply_retention` do the S3
//! calls.
//!
//! A backup is complete when both its dump and its manifest exist: the manifest is
//! written last, so a dump alone is an upload that failed or is still running. Only
//! complete backups are restored or counted for retention.

use crate::backup::manifest::{parse_key, BackupId, DUMP_FILE, MANIFEST_FILE};
use crate::s3::{ObjectInfo, ObjectStore, PendingUpload};
use crate::Result;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupEntry {
    pub id: BackupId,
    /// Size of the dump object, if there is one.
    pub dump_bytes: Option<u64>,
    pub has_manifest: bool,
}

impl BackupEntry {
    pub fn is_complete(&self) -> bool {
        self.dump_bytes.is_some() && self.has_manifest
    }
}

/// Backups found in a listing, oldest first. Keys that are not `<root><id>/<file>`
/// are ignored (the bucket may hold other things).
pub fn entries(root: &str, objects: &[ObjectInfo]) -> Vec<BackupEntry> {
    let mut by_id: BTreeMap<BackupId, BackupEntry> = BTreeMap::new();
    for object in objects {
        let Some((id, file)) = parse_key(root, &object.key) else {
            continue;
        };
        let entry = by_id.entry(id.clone()).or_insert(BackupEntry {
            id,
            dump_bytes: None,
            has_manifest: false,
        });
        match file {
            DUMP_FILE => entry.dump_bytes = Some(object.size),
            MANIFEST_FILE => entry.has_manifest = true,
            _ => {}
        }
    }
    by_id.into_values().collect()
}

/// The newest complete backup.
pub fn latest_complete(entries: &[BackupEntry]) -> Option<&BackupEntry> {
    entries.iter().rev().find(|e| e.is_complete())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Complete backups beyond the newest `keep`.
    pub expired: Vec<BackupId>,
    /// Incomplete backups (a dump without manifest, or a manifest without dump) older
    /// than the newest complete one: failed runs, never to be completed.
    pub stale: Vec<BackupId>,
    /// Multipart uploads never completed nor aborted, older than the newest complete
    /// backup (S3 bills their parts until they are aborted).
    pub abandoned_uploads: Vec<PendingUpload>,
}

impl RetentionPlan {
    pub fn is_empty(&self) -> bool {
        self.expired.is_empty() && self.stale.is_empty() && self.abandoned_uploads.is_empty()
    }
}

/// Keeps the newest `keep` complete backups (at least one: the newest complete backup
/// is never deleted). Anything newer than the newest complete backup is left alone: it
/// may be a backup still running elsewhere. With no complete backup, nothing is deleted.
pub fn plan_retention(
    root: &str,
    entries: &[BackupEntry],
    pending: &[PendingUpload],
    keep: usize,
) -> RetentionPlan {
    let keep = keep.max(1);
    let Some(newest) = latest_complete(entries).map(|e| e.id.clone()) else {
        return RetentionPlan::default();
    };
    let complete: Vec<&BackupEntry> = entries.iter().filter(|e| e.is_complete()).collect();
    let expired = complete[..complete.len().saturating_sub(keep)]
        .iter()
        .map(|e| e.id.clone())
        .collect();
    let stale = entries
        .iter()
        .filter(|e| !e.is_complete() && e.id < newest)
        .map(|e| e.id.clone())
        .collect();
    let abandoned_uploads = pending
        .iter()
        .filter(|u| parse_key(root, &u.key).is_some_and(|(id, _)| id < newest))
        .cloned()
        .collect();
    RetentionPlan {
        expired,
        stale,
        abandoned_uploads,
    }
}

/// Every backup under the store's prefix, oldest first.
pub fn list(store: &ObjectStore) -> Result<Vec<BackupEntry>> {
    let root = store.root();
    Ok(entries(&root, &store.list(&root)?))
}

/// What retention removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionReport {
    pub deleted_backups: Vec<BackupId>,
    pub deleted_incomplete: Vec<BackupId>,
    pub aborted_uploads: usize,
}

/// Lists, plans and deletes. A complete backup loses its manifest first, so a
/// deletion cut short leaves an incomplete backup (deleted next time), never a
/// manifest pointing at a missing dump.
pub fn apply_retention(store: &ObjectStore, keep: usize) -> Result<RetentionReport> {
    let root = store.root();
    let entries = entries(&root, &store.list(&root)?);
    let pending = store.pending_uploads(&root)?;
    let plan = plan_retention(&root, &entries, &pending, keep);
    let mut report = RetentionReport::default();
    for id in &plan.expired {
        store.delete(&id.manifest_key(&root))?;
        store.delete(&id.dump_key(&root))?;
        log::info!("retention: deleted backup {id}");
        report.deleted_backups.push(id.clone());
    }
    for id in &plan.stale {
        store.delete(&id.manifest_key(&root))?;
        store.delete(&id.dump_key(&root))?;
        log::info!("retention: deleted incomplete backup {id}");
        report.deleted_incomplete.push(id.clone());
    }
    for upload in &plan.abandoned_uploads {
        store.abort_multipart(&upload.key, &upload.upload_id)?;
        log::info!(
            "retention: aborted abandoned multipart upload of {}",
            upload.key
        );
        report.aborted_uploads += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(second: u32) -> BackupId {
        let ts: jiff::Timestamp = format!("2026-11-21T10:00:{second:02}Z").parse().unwrap();
        BackupId::new(ts, second)
    }

    fn complete(second: u32) -> Vec<ObjectInfo> {
        vec![
            ObjectInfo {
                key: id(second).dump_key("dob/"),
                size: 100,
            },
            ObjectInfo {
                key: id(second).manifest_key("dob/"),
                size: 10,
            },
        ]
    }

    fn dump_only(second: u32) -> Vec<ObjectInfo> {
        complete(second).into_iter().take(1).collect()
    }

    fn listing(parts: Vec<Vec<ObjectInfo>>) -> Vec<BackupEntry> {
        let mut objects: Vec<ObjectInfo> = parts.into_iter().flatten().collect();
        objects.push(ObjectInfo {
            key: "dob/README".into(),
            size: 1,
        });
        entries("dob/", &objects)
    }

    #[test]
    fn the_fence_records_beside_the_backups_are_no_backup() {
        use crate::failover::fence::{DETACH_KEY, EPOCH_KEY};
        let objects: Vec<ObjectInfo> = [EPOCH_KEY, DETACH_KEY]
            .iter()
            .map(|key| ObjectInfo {
                key: format!("dob/{key}"),
                size: 120,
            })
            .collect();
        assert!(entries("dob/", &objects).is_empty());
    }

    #[test]
    fn a_backup_is_complete_only_with_dump_and_manifest() {
        let e = listing(vec![complete(1), dump_only(2)]);
        assert_eq!(e.len(), 2);
        assert!(e[0].is_complete());
        assert!(!e[1].is_complete());
        assert_eq!(latest_complete(&e).unwrap().id, id(1));
    }

    #[test]
    fn retention_keeps_exactly_the_newest_n_complete() {
        let e = listing(vec![complete(1), complete(2), complete(3), complete(4)]);
        let plan = plan_retention("dob/", &e, &[], 2);
        assert_eq!(plan.expired, vec![id(1), id(2)]);
        assert!(plan.stale.is_empty());
    }

    #[test]
    fn incomplete_backups_do_not_count_and_old_ones_are_stale() {
        let e = listing(vec![
            complete(1),
            dump_only(2),
            complete(3),
            dump_only(4), // newer than every complete one: may still be running
        ]);
        let plan = plan_retention("dob/", &e, &[], 2);
        assert!(plan.expired.is_empty());
        assert_eq!(plan.stale, vec![id(2)]);
    }

    #[test]
    fn the_newest_complete_backup_is_never_deleted() {
        let e = listing(vec![complete(1), complete(2)]);
        let plan = plan_retention("dob/", &e, &[], 0);
        assert_eq!(plan.expired, vec![id(1)]);
    }

    #[test]
    fn without_a_complete_backup_nothing_is_deleted() {
        let e = listing(vec![dump_only(1), dump_only(2)]);
        let pending = [PendingUpload {
            key: id(1).dump_key("dob/"),
            upload_id: "u".into(),
        }];
        assert!(plan_retention("dob/", &e, &pending, 1).is_empty());
    }

    #[test]
    fn only_uploads_older_than_the_newest_complete_are_abandoned() {
        let e = listing(vec![complete(5)]);
        let old = PendingUpload {
            key: id(3).dump_key("dob/"),
            upload_id: "old".into(),
        };
        let running = PendingUpload {
            key: id(7).dump_key("dob/"),
            upload_id: "running".into(),
        };
        let plan = plan_retention("dob/", &e, &[old.clone(), running], 3);
        assert_eq!(plan.abandoned_uploads, vec![old]);
    }
}
