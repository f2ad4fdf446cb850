//! Backup identity and the manifest: what a backup is, where its objects live, and the
//! JSON document that makes a dump a backup. Pure: no I/O here.
//!
//! Layout in the bucket, under `DOB_S3_PREFIX`:
//!
//! ```text
//! <prefix>/<id>/dump.pgcustom     pg_dump --format=custom output
//! <prefix>/<id>/manifest.json     written last; without it the dump is incomplete
//! ```
//!
//! An id is `YYYYMMDDTHHMMSS.mmmZ-<8 hex>`: the UTC start time to the millisecond, so ids
//! sort by time as plain strings, and a random suffix, so two hosts starting in the same
//! millisecond never share one.

use crate::{Error, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub const DUMP_FILE: &str = "dump.pgcustom";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_FORMAT: u32 = 1;

/// A backup's id; see the module documentation for its shape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackupId(String);

impl BackupId {
    pub fn new(started: Timestamp, random: u32) -> BackupId {
        let utc = started.to_zoned(jiff::tz::TimeZone::UTC);
        BackupId(format!(
            "{}.{:03}Z-{random:08x}",
            utc.strftime("%Y%m%dT%H%M%S"),
            utc.millisecond()
        ))
    }

    /// Accepts exactly the shape `new` produces (ids come from keys in the bucket and
    /// from the command line, and end up in database names).
    pub fn parse(raw: &str) -> Result<BackupId> {
        let id = BackupId(raw.to_owned());
        let bytes = raw.as_bytes();
        let shape_ok = bytes.len() == 29
            && bytes[..8].iter().all(u8::is_ascii_digit)
            && bytes[8] == b'T'
            && bytes[9..15].iter().all(u8::is_ascii_digit)
            && bytes[15] == b'.'
            && bytes[16..19].iter().all(u8::is_ascii_digit)
            && &bytes[19..21] == b"Z-"
            && bytes[21..]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            && id.started().is_some();
        if shape_ok {
            Ok(id)
        } else {
            Err(Error::refused(
                format!("{raw:?} is not a backup id"),
                "expected something like 20261121T174501.123Z-0a1b2c3d (see dob-restore --list)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the backup started, from the id itself.
    pub fn started(&self) -> Option<Timestamp> {
        let s = &self.0;
        let text = format!(
            "{}-{}-{}T{}:{}:{}.{}Z",
            s.get(0..4)?,
            s.get(4..6)?,
            s.get(6..8)?,
            s.get(9..11)?,
            s.get(11..13)?,
            s.get(13..15)?,
            s.get(16..19)?
        );
        text.parse().ok()
    }

    /// A form usable inside a database name: lower case, `[0-9a-z_]` only.
    pub fn db_suffix(&self) -> String {
        self.0
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    pub fn dump_key(&self, root: &str) -> String {
        format!("{root}{}/{DUMP_FILE}", self.0)
    }

    pub fn manifest_key(&self, root: &str) -> String {
        format!("{root}{}/{MANIFEST_FILE}", self.0)
    }
}

impl std::fmt::Display for BackupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a key belongs: `(id, file name)` for `<root><id>/<file>`, else `None`.
pub fn parse_key<'a>(root: &str, key: &'a str) -> Option<(BackupId, &'a str)> {
    let rest = key.strip_prefix(root)?;
    let (id, file) = rest.split_once('/')?;
    Some((BackupId::parse(id).ok()?, file))
}

/// Rows in one table, counted in the dump's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    pub schema: String,
    pub table: String,
    pub rows: i64,
}

/// One user known to be in the dump: restores and drills check that it came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    pub username: String,
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Host name of the machine that ran dob-backup.
    pub host: String,
    /// The server address the dump came from (`inet_server_addr():port`), if TCP.
    pub server_address: Option<String>,
    /// `primary` or `replica` (`pg_is_in_recovery()`).
    pub role: String,
    /// Which cluster and which history the dump comes from (absent in manifests written
    /// before dob recorded it).
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
}

/// A server's place in its cluster's history: after a failover the new primary is on a
/// later timeline of the same system, and an old primary that comes back is still on
/// the earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// `pg_control_system()`: the cluster (a streaming replica shares its primary's).
    pub system_identifier: String,
    /// The WAL timeline: the current WAL file's on a primary, the newest known on a replica.
    pub timeline: u32,
    /// `pg_current_wal_lsn()` on a primary, `pg_last_wal_replay_lsn()` on a replica.
    pub lsn: String,
}

/// Refuses a dump from an earlier timeline of the cluster it would be restored into:
/// such a dump was taken on a primary that has since been failed over (or on an old
/// primary that came back writable), so it may miss writes the live history holds.
/// Dumps from another cluster, and manifests without lineage, are not compared.
pub fn check_lineage(
    id: &BackupId,
    dump: Option<&Lineage>,
    live: &Lineage,
    allow_older_timeline: bool,
) -> Result<()> {
    let Some(dump) = dump else {
        return Ok(());
    };
    if dump.system_identifier != live.system_identifier
        || dump.timeline >= live.timeline
        || allow_older_timeline
    {
        return Ok(());
    }
    Err(Error::refused(
        format!(
            "backup {id} was taken on timeline {} of this cluster, which is now on timeline {}",
            dump.timeline, live.timeline
        ),
        "it comes from before a failover (or from an old primary that came back) and may \
         miss acknowledged writes; take a new backup on the leader, or pass \
         --allow-older-timeline to use it anyway",
    ))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: BackupId,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub finished_at: String,
    /// Key of the dump object, relative to the bucket.
    pub dump_key: String,
    pub size_bytes: u64,
    /// Lower-case hex SHA-256 of the dump object.
    pub sha256: String,
    pub parts: u32,
    pub database: String,
    pub encoding: String,
    pub server_version: String,
    pub server_version_num: i32,
    pub pg_dump_version: String,
    pub source: Source,
    /// `x-amz-server-side-encryption` as S3 reported it after the upload.
    pub encryption: Option<String>,
    pub tables: Vec<TableCount>,
    pub canary: Option<Canary>,
    pub tool_version: String,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        out.push(b'\n');
        out
    }

    /// Parses and checks a manifest read from `key`: a manifest that does not describe
    /// the backup it sits beside is refused, not trusted.
    pub fn from_json(bytes: &[u8], expected: &BackupId, key: &str) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::refused(format!("manifest {key} is not valid"), e.to_string()))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(Error::refused(
                format!("manifest {key} has format {}", manifest.format),
                format!("this dob-restore reads format {MANIFEST_FORMAT}"),
            ));
        }
        if &manifest.id != expected {
            return Err(Error::refused(
                format!("manifest {key} describes backup {}", manifest.id),
                format!("expected {expected}"),
            ));
        }
        let hex_ok = manifest.sha256.len() == 64
            && manifest
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(Error::refused(
                format!("manifest {key} has no valid sha256"),
                manifest.sha256.clone(),
            ));
        }
        Ok(manifest)
    }

    pub fn finished(&self) -> Option<Timestamp> {
        self.finished_at.parse().ok()
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> BackupId {
        BackupId::new("2026-11-21T17:45:01.007Z".parse().unwrap(), 0x0a1b2c3d)
    }

    #[test]
    fn ids_read_as_utc_time_and_parse_back() {
        let id = id();
        assert_eq!(id.as_str(), "20261121T174501.007Z-0a1b2c3d");
        assert_eq!(BackupId::parse(id.as_str()).unwrap(), id);
        assert_eq!(
            id.started().unwrap(),
            "2026-11-21T17:45:01.007Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn ids_sort_by_time_as_strings() {
        let early = BackupId::new("2026-11-21T17:45:01.999Z".parse().unwrap(), u32::MAX);
        let late = BackupId::new("2026-11-21T17:45:02.000Z".parse().unwrap(), 0);
        assert!(early < late);
    }

    #[test]
    fn anything_else_is_not_an_id() {
        for raw in [
            "",
            "latest",
            "20261121T174501.007Z-0A1B2C3D",
            "20261121T174501.007Z-0a1b2c3",
            "20261321T174501.007Z-0a1b2c3d",
            "../20261121T174501.007Z-0a1b2c",
            "20261121T174501.007Z-0a1b2c3d/x",
        ] {
            assert!(BackupId::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn keys_are_parsed_under_the_root_only() {
        let id = id();
        let key = id.dump_key("dob/");
        assert_eq!(key, "dob/20261121T174501.007Z-0a1b2c3d/dump.pgcustom");
        assert_eq!(parse_key("dob/", &key), Some((id.clone(), DUMP_FILE)));
        assert_eq!(parse_key("other/", &key), None);
        assert_eq!(
            parse_key("", &id.manifest_key("")),
            Some((id, MANIFEST_FILE))
        );
        assert_eq!(parse_key("dob/", "dob/notes.txt"), None);
    }

    #[test]
    fn database_suffix_is_a_plain_identifier() {
        assert_eq!(id().db_suffix(), "20261121t174501_007z_0a1b2c3d");
    }

    fn manifest() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            id: id(),
            created_at: "2026-11-21T17:45:01.007Z".into(),
            finished_at: "2026-11-21T17:45:03Z".into(),
            dump_key: id().dump_key("dob/"),
            size_bytes: 10,
            sha256: "a".repeat(64),
            parts: 1,
            database: "dob".into(),
            encoding: "UTF8".into(),
            server_version: "15.8".into(),
            server_version_num: 150008,
            pg_dump_version: "pg_dump (PostgreSQL) 15.8".into(),
            source: Source {
                host: "a".into(),
                server_address: None,
                role: "primary".into(),
                lineage: Some(Lineage {
                    system_identifier: "7715481714886920115".into(),
                    timeline: 2,
                    lsn: "0/3000060".into(),
                }),
            },
            encryption: None,
            tables: vec![],
            canary: None,
            tool_version: "0.1.0".into(),
        }
    }

    #[test]
    fn a_manifest_round_trips_through_json() {
        let m = manifest();
        assert_eq!(Manifest::from_json(&m.to_json(), &id(), "k").unwrap(), m);
    }

    #[test]
    fn a_manifest_for_another_backup_or_with_a_bad_checksum_is_refused() {
        let other = BackupId::new("2026-11-22T00:00:00Z".parse().unwrap(), 1);
        assert!(Manifest::from_json(&manifest().to_json(), &other, "k")
            .unwrap_err()
            .is_refusal());
        let mut m = manifest();
        m.sha256 = "xyz".into();
        assert!(Manifest::from_json(&m.to_json(), &id(), "k").is_err());
        assert!(Manifest::from_json(b"{", &id(), "k").is_err());
    }

    #[test]
    fn dumps_from_an_earlier_timeline_of_the_same_cluster_are_refused() {
        let id = id();
        let at = |system: &str, timeline| Lineage {
            system_identifier: system.into(),
            timeline,
            lsn: "0/1".into(),
        };
        let live = at("1", 2);
        let err = check_lineage(&id, Some(&at("1", 1)), &live, false).unwrap_err();
        assert!(err.is_refusal());
        assert!(err.to_string().contains("timeline 1"), "{err}");
        assert!(check_lineage(&id, Some(&at("1", 1)), &live, true).is_ok());
        assert!(check_lineage(&id, Some(&at("1", 2)), &live, false).is_ok());
        assert!(check_lineage(&id, Some(&at("1", 3)), &live, false).is_ok());
        assert!(check_lineage(&id, Some(&at("other", 1)), &live, false).is_ok());
        assert!(check_lineage(&id, None, &live, false).is_ok());
    }

    #[test]
    fn manifests_without_lineage_still_parse() {
        let mut value: serde_json::Value = serde_json::from_slice(&manifest().to_json()).unwrap();
        let source = value["source"].as_object_mut().unwrap();
        assert_eq!(source["timeline"], 2);
        for key in ["system_identifier", "timeline", "lsn"] {
            source.remove(key);
        }
        let parsed: Manifest = serde_json::from_value(value).unwrap();
        assert_eq!(parsed.source.lineage, None);
    }
}
