//! `dob-promote --takeover`: the human-decided cross-region promotion. The DR region
//! runs a Patroni *standby cluster* that follows whichever eu-west-1 host leads; this
//! turns it into the writing cluster and fences the old region first:
//!
//! 1. `patronictl list`: the local cluster must be a standby cluster with a running
//!    standby leader (or, on a re-run, already lead under a record naming this region).
//! 2. Read the epoch from every bucket ([`crate::failover::fence`]); a majority must
//!    hold a valid record. The next epoch is one above the highest (never wrapping).
//! 3. Write epoch N+1 to a majority, each bucket conditionally on what it held
//!    ([`crate::failover::quorum`]). Without a majority nothing is promoted.
//! 4. *Then* read the old region's `detach` record from a majority. If the old region
//!    recorded that it went on without the DR region's receipt (or this cannot be
//!    known), refuse, reporting the loss window, unless the operator passed
//!    `--accept-data-loss`. The two majorities overlap, so either the old region saw
//!    N+1 before it could write alone, or this read sees its detach (docs/design.md).
//! 5. Wait out the lease ([`lease_wait`]): every `dob-api` of the old region has by then
//!    read N+1 or lost its lease, and every write it let through has committed.
//! 6. Remove `standby_cluster` from the Patroni configuration (`patronictl edit-config`):
//!    Patroni promotes the standby leader. Wait until it leads on a new timeline.
//!
//! A re-run after a crash or a refusal continues from where it stopped: a record that
//! already names this region is written again where it is missing, and a cluster that
//! already leads is left alone. The pure parts ([`plan`], [`next_record`],
//! [`may_replace`], [`lease_wait`]) are unit-tested; the drill runs the rest.

use crate::failover::fence::{
    self, detach_finding, top_record, DetachFinding, DetachRecord, FenceConfig, FenceRecord,
    FenceStores, EPOCH_KEY,
};
use crate::failover::quorum::{self, majority_records, StoreRead};
use crate::failover::switchover::{parse_members, patronictl, Member};
use crate::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the promoted leader may take to run on a new timeline.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(120);
/// Margin on top of the lease, for the last commit's answer on its way out.
const LEASE_MARGIN: Duration = Duration::from_secs(1);
/// How much faster one host's monotonic clock may run than another's over a lease: the
/// old region's lease is timed on its clock, the wait on ours. Real clocks drift by
/// parts per million; 1 % covers a badly throttled VM with room to spare.
const CLOCK_RATE_ALLOWANCE_PERCENT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeoverOptions {
    pub patroni_config: PathBuf,
    pub fence: FenceConfig,
    pub dry_run: bool,
    pub json: bool,
    /// Promote even though the old region acknowledged writes without the DR region
    /// (or that cannot be ruled out): a person accepts the reported loss window.
    pub accept_data_loss: bool,
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

/// The epoch record a takeover writes, and the epoch it takes writes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextEpoch {
    pub record: FenceRecord,
    /// The epoch the old region held: a detach recorded at it (or later) is a loss.
    pub superseded: u64,
    /// The highest record already names this region (a re-run): it is written again,
    /// with a new time, to the buckets that lack it.
    pub rerun: bool,
}

/// The record to write, from what a majority of `total` buckets hold.
pub fn next_record(
    reads: &[StoreRead<FenceRecord>],
    total: usize,
    region: &str,
    promoted_at: String,
    promoted_by: Option<String>,
) -> Result<NextEpoch> {
    if majority_records(reads, total).is_none() {
        return Err(Error::other(format!(
            "fewer than {} of {total} buckets hold a readable fence record, so no takeover can be recorded (nothing was changed; if the records were never created, run dob-promote --fence-init)",
            quorum::majority(total)
        )));
    }
    let top = top_record(reads).expect("a majority of records");
    if top.writer_region == region {
        return Ok(NextEpoch {
            record: FenceRecord {
                promoted_at,
                promoted_by,
                ..top.clone()
            },
            superseded: top.epoch.saturating_sub(1),
            rerun: true,
        });
    }
    let epoch = top.epoch.checked_add(1).ok_or_else(|| {
        Error::other(format!(
            "the fence epoch is {}, the largest there is: settle the records by hand (docs/failover.md)",
            top.epoch
        ))
    })?;
    Ok(NextEpoch {
        record: FenceRecord {
            epoch,
            writer_region: region.to_owned(),
            promoted_at,
            previous_writer_region: Some(top.writer_region.clone()),
            promoted_by,
        },
        superseded: top.epoch,
        rerun: false,
    })
}

/// Whether a bucket's epoch record may be replaced by `next`: only by a higher epoch,
/// or by the same epoch naming the same region (a re-run refreshing its own record).
pub fn may_replace(
    current: Option<&FenceRecord>,
    next: &FenceRecord,
) -> std::result::Result<(), String> {
    match current {
        None => Ok(()),
        Some(c) if c.epoch < next.epoch => Ok(()),
        Some(c) if c.epoch == next.epoch && c.writer_region == next.writer_region => Ok(()),
        Some(c) => Err(format!(
            "holds epoch {} naming {}: another takeover got there first",
            c.epoch, c.writer_region
        )),
    }
}

/// How long a takeover waits, after its epoch is in a majority, before it promotes: an
/// old region's lease started when its last read was sent (before our write landed), and
/// every write it lets through commits before the lease ends; its clock may run a
/// little slower than ours.
pub fn lease_wait(fence: &FenceConfig) -> Duration {
    fence.lease + fence.lease * CLOCK_RATE_ALLOWANCE_PERCENT / 100 + fence.interval + LEASE_MARGIN
}

/// The writes the old region may have acknowledged that the DR region may lack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LossWindow {
    /// The DR region had flushed everything up to here.
    pub after_lsn: Option<String>,
    /// From this time (RFC 3339) until the old region's lease ran out.
    pub since: Option<String>,
    pub by: Option<String>,
    pub why: String,
}

impl LossWindow {
    fn from_finding(finding: &DetachFinding) -> Option<LossWindow> {
        match finding {
            DetachFinding::Attached => None,
            DetachFinding::Detached(DetachRecord {
                confirmed_lsn,
                since,
                by,
                state,
                ..
            }) => Some(LossWindow {
                after_lsn: confirmed_lsn.clone(),
                since: Some(since.clone()),
                by: by.clone(),
                why: format!(
                    "the old region recorded itself {} from the DR region",
                    match state {
                        fence::AttachState::Reattaching =>
                            "re-attaching after acknowledging writes apart",
                        _ => "detached",
                    }
                ),
            }),
            DetachFinding::Unknown(why) => Some(LossWindow {
                after_lsn: None,
                since: None,
                by: None,
                why: why.clone(),
            }),
        }
    }

    fn describe(&self) -> String {
        let mut parts = vec![self.why.clone()];
        if let Some(lsn) = &self.after_lsn {
            parts.push(format!(
                "writes after WAL position {lsn} may exist only there"
            ));
        }
        if let Some(since) = &self.since {
            parts.push(format!("since {since}"));
        }
        if let Some(by) = &self.by {
            parts.push(format!("recorded by {by}"));
        }
        parts.join(", ")
    }
}

/// The old region acknowledged writes the DR region may lack, and nobody accepted that.
#[derive(Debug)]
pub struct Refused {
    pub window: LossWindow,
    pub epoch: u64,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refusing to promote: {}. Epoch {} is recorded, so the old region is fenced and nothing takes writes now. Promote anyway, losing that window, with --accept-data-loss (docs/failover.md)",
            self.window.describe(),
            self.epoch
        )
    }
}

impl std::error::Error for Refused {}

/// What happened, for the operator and the drill.
#[derive(Debug, Clone, Serialize)]
pub struct TakeoverReport {
    pub result: &'static str,
    pub region: String,
    pub epoch: u64,
    pub superseded_epoch: u64,
    /// Buckets that hold the record now.
    pub fenced_buckets: Vec<String>,
    /// Buckets it could not write, or does not know whether it did.
    pub unreachable_buckets: Vec<String>,
    /// `attached`, `detached` or `unknown`: whether every write the old region
    /// acknowledged had waited for the DR region.
    pub dr_receipt: &'static str,
    pub loss_window: Option<LossWindow>,
    pub accepted_data_loss: bool,
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

/// Runs the takeover. A refusal for a loss window is an [`Error`] whose source is a
/// [`Refused`] (the binary gives it its own exit code).
pub fn run(options: &TakeoverOptions) -> Result<TakeoverReport> {
    let config = &options.patroni_config;
    let region = &options.fence.region;
    let members = parse_members(&patronictl(config, &["list", "-f", "json"])?)?;
    let state = plan(&members)?;
    let stores = FenceStores::connect(&options.fence)?;
    let all = stores.all();
    let total = all.len();
    let epochs = fence::read_epochs(&all);
    let mut warnings: Vec<String> = epochs
        .iter()
        .filter_map(|r| match &r.read {
            quorum::Read::Failed(why) => Some(format!("{} cannot be read: {why}", r.store)),
            quorum::Read::Absent => Some(format!("{} holds no fence record", r.store)),
            quorum::Read::Record { .. } => None,
        })
        .collect();
    let next = next_record(
        &epochs,
        total,
        region,
        jiff::Timestamp::now().to_string(),
        hostname(),
    )?;
    if let ClusterState::Leading { .. } = state {
        if !next.rerun {
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
    if next.rerun {
        warnings.push(format!(
            "the fence record already names this region (epoch {}): writing it again where it is missing",
            next.record.epoch
        ));
    }
    let mut report = TakeoverReport {
        result: if options.dry_run {
            "dry-run"
        } else {
            "promoted"
        },
        region: region.clone(),
        epoch: next.record.epoch,
        superseded_epoch: next.superseded,
        fenced_buckets: epochs
            .iter()
            .filter(|r| {
                r.read
                    .record()
                    .is_some_and(|c| c.epoch == next.record.epoch && c.writer_region == *region)
            })
            .map(|r| r.store.clone())
            .collect(),
        unreachable_buckets: Vec::new(),
        dr_receipt: "unknown",
        loss_window: None,
        accepted_data_loss: false,
        leader,
        previous_timeline,
        timeline: previous_timeline,
        lease_wait_s: 0.0,
        promote_s: 0.0,
        warnings,
    };
    if options.dry_run {
        // What the takeover would find, as things stand (the old region may still
        // detach before the real run).
        let finding = detach_finding(&fence::read_detach(&all), total, next.superseded);
        record_finding(&mut report, &finding);
        return Ok(report);
    }
    log::info!(
        "recording epoch {} (writer {region}) in a majority of {total} buckets",
        next.record.epoch
    );
    let record = next.record.clone();
    let admit = move |current: Option<&FenceRecord>| may_replace(current, &record);
    let write = quorum::write_majority(&all, EPOCH_KEY, &next.record, &admit);
    let written_at = Instant::now();
    report.fenced_buckets = write.written.clone();
    report.unreachable_buckets = write
        .refused
        .iter()
        .chain(&write.unknown)
        .map(|(name, _)| name.clone())
        .collect();
    for (name, why) in write.refused.iter().chain(&write.unknown) {
        report
            .warnings
            .push(format!("{name} was not written: {why}"));
    }
    if !write.won() {
        return Err(Error::other(format!(
            "epoch {} is not in a majority of the buckets ({}), so nothing was promoted: the buckets that hold it fence the old region's readers already; run the takeover again when a majority answers",
            next.record.epoch,
            write.summary()
        )));
    }
    // Only now: the old region reads this epoch from any majority, so a detach it
    // records from here on can no longer let it write alone; one recorded before is
    // in a majority the read below overlaps.
    let finding = detach_finding(&fence::read_detach(&all), total, next.superseded);
    record_finding(&mut report, &finding);
    let promoted = matches!(state, ClusterState::Leading { .. });
    if let Some(window) = &report.loss_window {
        if promoted {
            // A re-run after the promotion (copying the record to the buckets that
            // lacked it): the loss was decided then; say it again, refuse nothing.
            report.warnings.push(format!(
                "already promoted; the old region's loss window: {}",
                window.describe()
            ));
        } else if !options.accept_data_loss {
            return Err(Error::with_source(
                "the takeover stopped before promoting",
                Refused {
                    window: window.clone(),
                    epoch: next.record.epoch,
                },
            ));
        } else {
            report.accepted_data_loss = true;
            report.warnings.push(format!(
                "promoting with --accept-data-loss: {}",
                window.describe()
            ));
        }
    }
    if let ClusterState::Standby { .. } = state {
        let wait = lease_wait(&options.fence);
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

fn record_finding(report: &mut TakeoverReport, finding: &DetachFinding) {
    report.dr_receipt = match finding {
        DetachFinding::Attached => "attached",
        DetachFinding::Detached(_) => "detached",
        DetachFinding::Unknown(_) => "unknown",
    };
    report.loss_window = LossWindow::from_finding(finding);
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEST: &str = "eu-west-1";
    const DR: &str = "eu-central-1";

    const STANDBY: &str = r#"[{"Cluster": "dob-dr", "Member": "dr", "Host": "10.71.0.21", "Role": "Standby Leader", "State": "streaming", "TL": 3}]"#;

    fn record(epoch: u64, region: &str) -> StoreRead<FenceRecord> {
        StoreRead {
            store: format!("{region}-bucket"),
            read: quorum::Read::Record {
                record: FenceRecord {
                    epoch,
                    writer_region: region.into(),
                    promoted_at: "t".into(),
                    previous_writer_region: None,
                    promoted_by: None,
                },
                etag: "\"x\"".into(),
            },
        }
    }

    fn failed() -> StoreRead<FenceRecord> {
        StoreRead {
            store: "cut".into(),
            read: quorum::Read::Failed("timeout".into()),
        }
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
    fn the_next_epoch_is_one_above_the_highest_of_a_majority() {
        let reads = vec![record(0, WEST), record(0, WEST), failed()];
        let next = next_record(&reads, 3, DR, "t".into(), None).unwrap();
        assert_eq!(next.record.epoch, 1);
        assert_eq!(next.superseded, 0);
        assert!(!next.rerun);
        assert_eq!(next.record.previous_writer_region.as_deref(), Some(WEST));

        let reads = vec![record(2, WEST), failed(), record(1, DR)];
        let next = next_record(&reads, 3, DR, "t".into(), None).unwrap();
        assert_eq!((next.record.epoch, next.superseded), (3, 2));

        // A re-run: the record already names this region; it is refreshed, not raised.
        let reads = vec![record(3, DR), record(2, WEST), failed()];
        let next = next_record(&reads, 3, DR, "later".into(), None).unwrap();
        assert!(next.rerun);
        assert_eq!((next.record.epoch, next.superseded), (3, 2));
        assert_eq!(next.record.promoted_at, "later");

        // One bucket of three is not a majority: nothing is written.
        let one = vec![record(5, WEST), failed(), failed()];
        let err = next_record(&one, 3, DR, "t".into(), None).unwrap_err();
        assert!(err.to_string().contains("--fence-init"), "{err}");
    }

    #[test]
    fn an_epoch_at_its_largest_is_refused_not_wrapped() {
        let reads = vec![record(u64::MAX, WEST), record(u64::MAX, WEST)];
        let err = next_record(&reads, 3, DR, "t".into(), None).unwrap_err();
        assert!(err.to_string().contains("largest"), "{err}");
        let reads = vec![record(u64::MAX - 1, WEST), record(u64::MAX - 1, WEST)];
        let next = next_record(&reads, 3, DR, "t".into(), None).unwrap();
        assert_eq!(next.record.epoch, u64::MAX);
    }

    #[test]
    fn a_record_is_replaced_only_by_a_higher_epoch_or_its_own_rerun() {
        let mine = |epoch| FenceRecord {
            epoch,
            writer_region: DR.into(),
            promoted_at: "t".into(),
            previous_writer_region: None,
            promoted_by: None,
        };
        let theirs = FenceRecord {
            writer_region: WEST.into(),
            ..mine(4)
        };
        assert!(may_replace(None, &mine(4)).is_ok());
        assert!(may_replace(Some(&mine(3)), &mine(4)).is_ok());
        assert!(may_replace(Some(&mine(4)), &mine(4)).is_ok());
        assert!(may_replace(Some(&theirs), &mine(4)).is_err());
        assert!(may_replace(Some(&mine(5)), &mine(4)).is_err());
    }

    #[test]
    fn the_lease_wait_covers_the_lease_a_slower_clock_and_a_margin() {
        let fence = FenceConfig {
            region: DR.into(),
            home_region: WEST.into(),
            buckets: Vec::new(),
            prefix: "dob".into(),
            endpoint: None,
            lease: Duration::from_secs(15),
            interval: Duration::from_secs(1),
        };
        let wait = lease_wait(&fence);
        assert!(wait >= Duration::from_millis(15_150) + fence.interval + LEASE_MARGIN);
        assert!(wait < Duration::from_secs(18));
    }
}
