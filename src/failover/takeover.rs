//! `dob-promote --takeover`: the human-decided cross-region promotion. The DR region
//! runs a Patroni *standby cluster* that follows whichever eu-west-1 host leads; this
//! turns it into the writing cluster and fences the old region first:
//!
//! 1. `patronictl list`: the local cluster must be a standby cluster with a running
//!    standby leader (or, on a re-run, already lead under a record naming this region).
//! 2. Read the fence record from every region's bucket ([`crate::failover::fence`]); this
//!    region's own bucket must answer. The next epoch is one above the highest seen.
//! 3. Write the record: this region's bucket first (required: without it nothing else
//!    happens), then every other bucket it can reach (an unreachable one is reported).
//! 4. Wait one lease (plus one read interval): every `dob-api` of the old region has
//!    by then either read the record or lost its lease, so it acknowledges no write
//!    from the moment this region can take one.
//! 5. Remove `standby_cluster` from the Patroni configuration (`patronictl edit-config`):
//!    Patroni promotes the standby leader. Wait until it leads on a new timeline.
//!
//! A re-run after a crash at any step continues from where it stopped: a record that
//! already names this region is kept, and a cluster that already leads is left alone.
//! The pure parts ([`plan`], [`next_record`]) are unit-tested; the drill runs the rest.

use crate::failover::fence::{self, BucketRead, FenceConfig, FenceRecord, FenceStores, Verdict};
use crate::failover::switchover::{parse_members, patronictl, Member};
use crate::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the promoted leader may take to run on a new timeline.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(120);
/// Margin on top of the lease for clocks that run at slightly different rates.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeoverOptions {
    pub patroni_config: PathBuf,
    pub fence: FenceConfig,
    pub dry_run: bool,
    pub json: bool,
}

/// Where the local cluster stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    /// A standby cluster; `leader` replays the old region's WAL on `timeline`.
    Standby { leader: String, timeline: u32 },
    /// Already a writing cluster (a re-run after the promotion).
    Leading { leader: String, timeline: u32 },
}

pub fn plan(members: &[Member]) -> Result<ClusterState> {
    let running = |role: &str| {
        members
            .iter()
            .find(|m| m.role == role && matches!(m.state.as_str(), "running" | "streaming"))
    };
    if let Some(m) = running("Standby Leader") {
        return Ok(ClusterState::Standby {
            leader: m.name.clone(),
            timeline: m.timeline.unwrap_or(0),
        });
    }
    if let Some(m) = running("Leader") {
        return Ok(ClusterState::Leading {
            leader: m.name.clone(),
            timeline: m.timeline.unwrap_or(0),
        });
    }
    Err(Error::other(
        "no running standby leader in the local Patroni cluster: start Patroni on this host, or check that it is the DR standby cluster (patronictl list)",
    ))
}

/// The record to write, or `None` when the highest record already names this region.
pub fn next_record(
    reads: &[(String, BucketRead)],
    region: &str,
    home_region: &str,
    promoted_at: String,
    promoted_by: Option<String>,
) -> Result<Option<FenceRecord>> {
    let plain: Vec<BucketRead> = reads.iter().map(|(_, r)| r.clone()).collect();
    match fence::verdict(&plain, region, home_region) {
        Verdict::Writer { epoch } if epoch > 0 => Ok(None),
        Verdict::Unknown => Err(Error::other(
            "no bucket answered: the fence record cannot be read",
        )),
        Verdict::Writer { .. } | Verdict::Fenced { .. } => {
            let top = top_record(reads);
            Ok(Some(FenceRecord {
                epoch: top.as_ref().map_or(1, |r| r.epoch + 1),
                writer_region: region.to_owned(),
                promoted_at,
                previous_writer_region: Some(
                    top.map_or(home_region.to_owned(), |r| r.writer_region.clone()),
                ),
                promoted_by,
            }))
        }
    }
}

/// The highest-epoch record read, if any.
fn top_record(reads: &[(String, BucketRead)]) -> Option<FenceRecord> {
    reads
        .iter()
        .filter_map(|(_, r)| match r {
            BucketRead::Record(record) => Some(record),
            _ => None,
        })
        .max_by_key(|r| r.epoch)
        .cloned()
}

/// What happened, for the operator and the drill.
#[derive(Debug, Clone, Serialize)]
pub struct TakeoverReport {
    pub result: &'static str,
    pub region: String,
    pub epoch: u64,
    /// Buckets that hold the record now.
    pub fenced_buckets: Vec<String>,
    /// Buckets it could not write (the old region's, when that region is gone).
    pub unreachable_buckets: Vec<String>,
    pub leader: String,
    pub previous_timeline: u32,
    pub timeline: u32,
    pub lease_wait_s: f64,
    pub promote_s: f64,
    pub warnings: Vec<String>,
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

pub fn run(options: &TakeoverOptions) -> Result<TakeoverReport> {
    let config = &options.patroni_config;
    let region = &options.fence.region;
    let members = parse_members(&patronictl(config, &["list", "-f", "json"])?)?;
    let state = plan(&members)?;
    let stores = FenceStores::connect(&options.fence)?;
    let reads: Vec<(String, BucketRead)> = stores
        .read_all()
        .into_iter()
        .map(|(b, r)| (format!("{}@{}", b.bucket, b.region), r))
        .collect();
    let own = |name: &String| name.ends_with(&format!("@{region}"));
    let mut warnings = Vec::new();
    for (name, read) in &reads {
        if let BucketRead::Failed(why) = read {
            if own(name) {
                return Err(Error::other(format!(
                    "this region's bucket {name} cannot be read, so no takeover can be recorded: {why}"
                )));
            }
            warnings.push(format!("{name} cannot be read: {why}"));
        }
    }
    let record = next_record(
        &reads,
        region,
        &options.fence.home_region,
        jiff::Timestamp::now().to_string(),
        hostname(),
    )?;
    if let ClusterState::Leading { .. } = state {
        if record.is_some() {
            return Err(Error::other(
                "the local cluster already leads but the fence record does not name this region: \
                 another region may be writing; settle which one by hand (docs/failover.md)",
            ));
        }
    }
    let (previous_timeline, leader) = match &state {
        ClusterState::Standby { leader, timeline } | ClusterState::Leading { leader, timeline } => {
            (*timeline, leader.clone())
        }
    };
    let mut report = TakeoverReport {
        result: if options.dry_run {
            "dry-run"
        } else {
            "promoted"
        },
        region: region.clone(),
        epoch: 0,
        fenced_buckets: Vec::new(),
        unreachable_buckets: Vec::new(),
        leader,
        previous_timeline,
        timeline: previous_timeline,
        lease_wait_s: 0.0,
        promote_s: 0.0,
        warnings,
    };
    // The record every bucket must hold: a new one, or (on a re-run) the one that
    // already names this region, copied to the buckets that lack it.
    let holding = match &record {
        Some(record) => record.clone(),
        None => top_record(&reads).expect("a record names this region"),
    };
    report.epoch = holding.epoch;
    if record.is_none() {
        report
            .warnings
            .push("the fence record already names this region: kept it".into());
    }
    let missing: Vec<String> = reads
        .iter()
        .filter(|(_, read)| !matches!(read, BucketRead::Record(r) if *r == holding))
        .map(|(name, _)| name.clone())
        .collect();
    report.fenced_buckets = reads
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| !missing.contains(name))
        .collect();
    if options.dry_run {
        return Ok(report);
    }
    let written_at = Instant::now();
    if !missing.is_empty() {
        log::info!(
            "recording epoch {} (writer {region}) in {}",
            holding.epoch,
            missing.join(", ")
        );
    }
    // This region's bucket first: without it nothing else happens.
    let (own_missing, others): (Vec<String>, Vec<String>) =
        missing.into_iter().partition(|name| own(name));
    for batch in [own_missing, others] {
        for (bucket, outcome) in stores.write_all(&holding, |b| {
            batch.contains(&format!("{}@{}", b.bucket, b.region))
        }) {
            let name = format!("{}@{}", bucket.bucket, bucket.region);
            match outcome {
                Ok(()) => report.fenced_buckets.push(name),
                Err(err) if bucket.region == *region => {
                    return Err(Error::other(format!(
                        "writing the fence record to this region's bucket {name} failed, so nothing was promoted: {}",
                        err.chain()
                    )));
                }
                Err(err) => {
                    report.warnings.push(format!(
                        "{name} was not written ({}): the old region is fenced only once it reads this region's bucket; run the takeover again when it is reachable",
                        err.chain()
                    ));
                    report.unreachable_buckets.push(name);
                }
            }
        }
    }
    if options.dry_run {
        return Ok(report);
    }
    if let ClusterState::Standby { .. } = state {
        // Every dob-api of the old region has read the record or lost its lease by now.
        let wait = options.fence.lease + options.fence.interval + LEASE_MARGIN;
        log::info!(
            "waiting {:.1} s: the old region's write leases run out",
            wait.as_secs_f64()
        );
        std::thread::sleep(wait.saturating_sub(written_at.elapsed()));
        report.lease_wait_s = written_at.elapsed().as_secs_f64();
        let started = Instant::now();
        patronictl(
            config,
            &[
                "edit-config",
                "--force",
                "--quiet",
                "-s",
                "standby_cluster=null",
            ],
        )?;
        let deadline = started + PROMOTE_TIMEOUT;
        loop {
            if let Ok(ClusterState::Leading { leader, timeline }) =
                patronictl(config, &["list", "-f", "json"])
                    .and_then(|out| parse_members(&out))
                    .and_then(|m| plan(&m))
            {
                if timeline > previous_timeline {
                    report.leader = leader;
                    report.timeline = timeline;
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::other(format!(
                    "the standby cluster was told to promote, but no member leads on a new timeline after {} s (patronictl list)",
                    PROMOTE_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        report.promote_s = started.elapsed().as_secs_f64();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDBY: &str = r#"[{"Cluster": "dob-dr", "Member": "dr", "Host": "10.71.0.21", "Role": "Standby Leader", "State": "streaming", "TL": 3}]"#;

    fn record(epoch: u64, region: &str) -> BucketRead {
        BucketRead::Record(FenceRecord {
            epoch,
            writer_region: region.into(),
            promoted_at: "t".into(),
            previous_writer_region: None,
            promoted_by: None,
        })
    }

    #[test]
    fn a_standby_cluster_is_the_one_to_take_over() {
        let members = parse_members(STANDBY).unwrap();
        assert_eq!(
            plan(&members).unwrap(),
            ClusterState::Standby {
                leader: "dr".into(),
                timeline: 3
            }
        );
        let stopped = parse_members(&STANDBY.replace("streaming", "stopped")).unwrap();
        assert!(plan(&stopped).is_err());
        let leading = parse_members(&STANDBY.replace("Standby Leader", "Leader")).unwrap();
        assert!(matches!(
            plan(&leading).unwrap(),
            ClusterState::Leading { .. }
        ));
    }

    #[test]
    fn the_next_epoch_is_one_above_the_highest_seen() {
        let reads = vec![
            ("w@eu-west-1".to_string(), BucketRead::Absent),
            ("d@eu-central-1".to_string(), BucketRead::Absent),
        ];
        let next = next_record(&reads, "eu-central-1", "eu-west-1", "t".into(), None)
            .unwrap()
            .unwrap();
        assert_eq!(next.epoch, 1);
        assert_eq!(next.previous_writer_region.as_deref(), Some("eu-west-1"));

        let reads = vec![
            ("w@eu-west-1".to_string(), record(2, "eu-west-1")),
            (
                "d@eu-central-1".to_string(),
                BucketRead::Failed("timeout".into()),
            ),
        ];
        let next = next_record(&reads, "eu-central-1", "eu-west-1", "t".into(), None)
            .unwrap()
            .unwrap();
        assert_eq!(next.epoch, 3);

        // A re-run: the record already names this region.
        let reads = vec![("d@eu-central-1".to_string(), record(3, "eu-central-1"))];
        assert_eq!(
            next_record(&reads, "eu-central-1", "eu-west-1", "t".into(), None).unwrap(),
            None
        );
        let nothing = vec![("d@eu-central-1".to_string(), BucketRead::Failed("x".into()))];
        assert!(next_record(&nothing, "eu-central-1", "eu-west-1", "t".into(), None).is_err());
    }
}
