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
//!    The window starts no later than what the member about to be promoted has flushed
//!    ([`LossWindow::narrow_to_local_flush`]).
//! 5. Wait out the lease ([`lease_wait`]): every `dob-api` of the old region has by then
//!    read N+1 or lost its lease, and every write it let through has committed. Then,
//!    while the old writer still streams here, wait until everything it flushed is
//!    flushed here ([`catch_up_from`]); when the old writer is the DR region (a
//!    failback), whose writes no receipt vouches for, a receiver that is not caught up
//!    refuses like a detach.
//! 6. Isolate the old region through its EC2 API ([`crate::failover::isolation`]): its
//!    database subnets on its isolation network ACL, its hosts stopped. Defence in
//!    depth: the epoch and the lease already stop a `dob-api` that behaves. If the API
//!    cannot do it (down, or not configured), refuse unless the operator passed
//!    `--old-region-unfenced`.
//! 7. Create the stanza in this region's own pgBackRest repository
//!    ([`crate::failover::first_backup`]). Remove `standby_cluster` from the Patroni
//!    configuration (`patronictl edit-config`) and keep the permanent slot the other
//!    region will follow through: Patroni promotes the standby leader. Wait until it
//!    leads on a new timeline.
//! 8. Take the first full backup into that repository: from its end on, a recovery
//!    can reach any time in the new region's history.
//!
//! A re-run after a crash or a refusal continues from where it stopped: a record that
//! already names this region is written again where it is missing, and a cluster that
//! already leads is left alone. The pure parts ([`plan`], [`next_record`],
//! [`may_replace`], [`lease_wait`]) are unit-tested; the drill runs the rest.

use crate::failover::fence::{
    self, detach_finding, top_record, DetachFinding, DetachRecord, FenceConfig, FenceRecord,
    FenceStores, EPOCH_KEY,
};
use crate::failover::first_backup::{self, BaseBackup, Repository};
use crate::failover::isolation::{self, IsolationConfig, IsolationReport};
use crate::failover::promote::Lsn;
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
    /// `DOB_DR_SLOT`: the permanent slot the promoted cluster keeps for the other
    /// region, which follows it through `dob-promote --follow`.
    pub peer_slot: String,
    /// The local server's socket directory, to read its WAL receiver.
    pub socket_dir: PathBuf,
    /// This region's own pgBackRest repository, where it archives once promoted and
    /// takes its first full backup; `None`: no point-in-time recovery here.
    pub repository: Option<Repository>,
    /// The longest the first full backup may run.
    pub backup_timeout: Duration,
    /// The old region's EC2 API and database tier; `None`: not configured.
    pub isolation: Option<IsolationConfig>,
    /// Promote even though the old region could not be isolated through its API.
    pub old_region_unfenced: bool,
}

/// How the local standby leader stands with the old writer's WAL once the old
/// writer's leases have run out (after the lease wait).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum CatchUp {
    /// No WAL receiver streams from the old writer: it is unreachable.
    NotStreaming,
    /// Everything the old writer had flushed, as of a message received after the
    /// lease wait, is flushed here.
    CaughtUp { lsn: String },
    /// Streaming, not there yet.
    Behind { flushed: String, upstream: String },
}

/// The query [`catch_up_from`] reads: `pg_stat_wal_receiver`, with the messages that
/// count limited to those received after `after_unix` (seconds since the epoch).
pub fn catch_up_sql(after_unix: f64) -> String {
    format!(
        "SELECT status, coalesce(flushed_lsn::text, ''), coalesce(latest_end_lsn::text, ''), \
         coalesce((flushed_lsn >= latest_end_lsn)::text, 'false'), \
         coalesce((last_msg_receipt_time > to_timestamp({after_unix:.3}))::text, 'false') \
         FROM pg_stat_wal_receiver"
    )
}

/// Reads [`catch_up_sql`]'s rows. The sender reports its flushed end of WAL with its
/// messages (`latest_end_lsn`); a message received after the old writer stopped
/// writing, with everything up to the highest such end flushed here, means nothing it
/// acknowledged is missing.
pub fn catch_up_from(rows: &[Vec<String>]) -> CatchUp {
    let Some(row) = rows.first().filter(|r| r.len() == 5 && r[0] == "streaming") else {
        return CatchUp::NotStreaming;
    };
    let yes = |v: &str| matches!(v, "t" | "true");
    if yes(&row[3]) && yes(&row[4]) {
        CatchUp::CaughtUp {
            lsn: row[1].clone(),
        }
    } else {
        CatchUp::Behind {
            flushed: row[1].clone(),
            upstream: row[2].clone(),
        }
    }
}

/// How long the takeover waits for the local standby leader to catch up with an old
/// writer it still streams from.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

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

    /// The member about to be promoted must hold what the DR region confirmed before the
    /// detach: a standby leader that changed inside the DR region, or a member copied
    /// anew, may have flushed less. Then the window starts at what this member holds,
    /// and the returned warning says so. `local_flush` is `None` when it cannot be read.
    pub fn narrow_to_local_flush(&mut self, local_flush: Option<Lsn>) -> Option<String> {
        let confirmed = self.after_lsn.as_deref().and_then(Lsn::parse)?;
        let Some(local) = local_flush else {
            return Some(format!(
                "this member's flushed WAL position cannot be read, so whether it holds everything the DR region confirmed (to {confirmed}) is unknown"
            ));
        };
        if local >= confirmed {
            return None;
        }
        self.after_lsn = Some(local.to_string());
        self.why = format!(
            "{}, and this member has flushed only to {local}, below the {confirmed} the DR region confirmed",
            self.why
        );
        Some(format!(
            "this member has flushed the old region's WAL only to {local}, below the {confirmed} the DR region confirmed before the detach: the loss window starts at {local}"
        ))
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
    /// Where the local standby leader stood with the old writer's WAL before promoting.
    pub catch_up: Option<CatchUp>,
    pub catch_up_s: f64,
    pub promote_s: f64,
    /// The first full backup into this region's own repository, when this run promoted.
    pub base_backup: Option<BaseBackup>,
    /// Why this run promoted and has no first backup: no point-in-time recovery to a
    /// time after the takeover until one succeeds (the binary exits 8).
    pub base_backup_error: Option<String>,
    pub base_backup_s: f64,
    /// What the old region's EC2 API isolated (a dry run: would isolate).
    pub old_region: Option<IsolationReport>,
    /// Promoted with `--old-region-unfenced` although `old_region` is not isolated.
    pub old_region_unfenced: bool,
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
        catch_up: None,
        catch_up_s: 0.0,
        promote_s: 0.0,
        base_backup: None,
        base_backup_error: None,
        base_backup_s: 0.0,
        old_region: None,
        old_region_unfenced: false,
        warnings,
    };
    if options.repository.is_none() {
        report.warnings.push(format!(
            "no pgBackRest repository (DOB_PGBACKREST_CONFIG, {}): once promoted, this region archives nothing and has no point-in-time recovery",
            first_backup::DEFAULT_CONFIG
        ));
    }
    if options.dry_run {
        // What the takeover would find, as things stand (the old region may still
        // detach before the real run).
        let finding = detach_finding(&fence::read_detach(&all), total, next.superseded);
        record_finding(&mut report, &finding);
        if let ClusterState::Standby { .. } = state {
            narrow_to_this_member(options, &mut report);
            let old_writer = next.record.previous_writer_region.as_deref();
            let isolation = isolate_old_region(
                options,
                old_writer.unwrap_or_default(),
                next.record.epoch,
                true,
            );
            if let Some(error) = &isolation.error {
                report.warnings.push(format!(
                    "the old region cannot be isolated through its API; the takeover would stop before promoting (exit 9) unless given --old-region-unfenced: {error}"
                ));
            }
            report.old_region = Some(isolation);
        }
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
    if !promoted {
        narrow_to_this_member(options, &mut report);
    }
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
        let old_writer = next
            .record
            .previous_writer_region
            .clone()
            .unwrap_or_default();
        // Whether the old region's API can isolate it at all, read now (it changes
        // nothing): an operator without it learns so at once, not after the lease wait.
        if !options.old_region_unfenced {
            let probe = isolate_old_region(options, &old_writer, next.record.epoch, true);
            if probe.error.is_some() {
                report.old_region = Some(probe.clone());
                return Err(Error::with_source(
                    "the takeover stopped before promoting",
                    NotIsolated {
                        epoch: next.record.epoch,
                        old_region: probe,
                    },
                ));
            }
        }
        let wait = lease_wait(&options.fence);
        log::info!(
            "waiting {:.1} s: the old region's write leases run out",
            wait.as_secs_f64()
        );
        std::thread::sleep(wait.saturating_sub(written_at.elapsed()));
        report.lease_wait_s = written_at.elapsed().as_secs_f64();
        wait_for_catch_up(options, &old_writer, &mut report)?;
        // Last before the promotion: after the catch-up, which needs the old writer's
        // stream, and only once this run is sure to promote.
        let isolation = isolate_old_region(options, &old_writer, next.record.epoch, false);
        let isolated = isolation.isolated();
        report.old_region = Some(isolation.clone());
        if !isolated {
            if !options.old_region_unfenced {
                return Err(Error::with_source(
                    "the takeover stopped before promoting",
                    NotIsolated {
                        epoch: next.record.epoch,
                        old_region: isolation,
                    },
                ));
            }
            report.old_region_unfenced = true;
            report.warnings.push(format!(
                "promoting with --old-region-unfenced: the old region was not isolated through its API ({}); only the epoch and the lease fence it",
                isolation.error.as_deref().unwrap_or("unknown")
            ));
        }
        // Before the promotion, so the archiver's first push after it finds the stanza.
        let stanza = options.repository.as_ref().map(first_backup::create_stanza);
        if let Some(Err(err)) = &stanza {
            report.warnings.push(format!(
                "this region's pgBackRest stanza could not be created; promoting anyway: {}",
                err.chain()
            ));
        }
        let started = Instant::now();
        // The other region follows through this slot once it is back
        // (dob-promote --follow there).
        let slot = format!("slots.{}={{type: physical}}", options.peer_slot);
        patronictl(
            config,
            &[
                "edit-config",
                "--force",
                "--quiet",
                "-s",
                "standby_cluster=null",
                "-s",
                &slot,
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
        if let Some(repository) = &options.repository {
            take_first_backup(options, repository, &mut report);
        }
    }
    Ok(report)
}

/// Isolates the old writer's region (or, `dry_run`, says what that would change). The
/// configured peer must be that region (`old_writer` empty: not recorded), as isolating
/// another one would fence nothing.
fn isolate_old_region(
    options: &TakeoverOptions,
    old_writer: &str,
    epoch: u64,
    dry_run: bool,
) -> IsolationReport {
    let Some(config) = &options.isolation else {
        return IsolationReport::not_configured();
    };
    if !old_writer.is_empty() && old_writer != config.region {
        return IsolationReport::failed(
            config,
            format!(
                "DOB_PEER_REGION is {} but the old writer is {old_writer}",
                config.region
            ),
        );
    }
    match config.connect() {
        Ok(ec2) => isolation::isolate(&ec2, config, epoch, dry_run),
        Err(err) => IsolationReport::failed(config, err.chain()),
    }
}

/// The takeover stopped before promoting: the old region's API did not isolate it.
#[derive(Debug, Clone)]
pub struct NotIsolated {
    pub epoch: u64,
    pub old_region: IsolationReport,
}

impl std::fmt::Display for NotIsolated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the old region could not be isolated through its EC2 API ({}); epoch {} stays recorded and nothing takes writes: run the takeover again when the API answers, or pass --old-region-unfenced to promote with only the epoch and the lease fencing it",
            self.old_region.error.as_deref().unwrap_or("unknown"),
            self.epoch
        )
    }
}

impl std::error::Error for NotIsolated {}

/// The promoted leader's first full backup, taken here when this host runs it.
fn take_first_backup(
    options: &TakeoverOptions,
    repository: &Repository,
    report: &mut TakeoverReport,
) {
    let this_member = std::fs::read_to_string(&options.patroni_config)
        .ok()
        .and_then(|yml| crate::failover::follow::member_name(&yml));
    if this_member.as_deref() != Some(report.leader.as_str()) {
        report.base_backup_error = Some(format!(
            "{} leads, not this host ({}): run `systemctl start dob-pgbackrest-backup@full.service` there",
            report.leader,
            this_member.as_deref().unwrap_or("no member name in the Patroni configuration")
        ));
        return;
    }
    log::info!(
        "promoted; taking the first full backup into {}",
        repository.config.display()
    );
    let started = Instant::now();
    let backup = checkpoint_on_timeline(&options.socket_dir, report.timeline)
        .and_then(|()| first_backup::full_backup(repository, options.backup_timeout));
    match backup {
        Ok(backup) => report.base_backup = Some(backup),
        Err(err) => report.base_backup_error = Some(err.chain()),
    }
    report.base_backup_s = started.elapsed().as_secs_f64();
}

/// How long the promoted server may take to record its new timeline in pg_control.
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(600);

/// Waits until pg_control records `timeline`, asking for checkpoints meanwhile. A
/// promotion only requests its first checkpoint, and until it is done pg_control names
/// the old timeline: pgBackRest then refuses to back up ("WAL timeline does not match
/// pg_control timeline").
fn checkpoint_on_timeline(socket_dir: &std::path::Path, timeline: u32) -> Result<()> {
    let deadline = Instant::now() + CHECKPOINT_TIMEOUT;
    loop {
        // Bounded by local_pg's statement timeout; the checkpoint goes on without us.
        let _ = crate::failover::local_pg::query(socket_dir, "CHECKPOINT");
        let recorded = crate::failover::local_pg::query(
            socket_dir,
            "SELECT timeline_id FROM pg_control_checkpoint()",
        )
        .ok()
        .and_then(|rows| rows.first()?.first()?.parse::<u32>().ok());
        if recorded == Some(timeline) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::other(format!(
                "pg_control still records timeline {recorded:?}, not {timeline}, {} s after the promotion's checkpoint was asked for",
                CHECKPOINT_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Before promoting: while the old writer is still streaming to us (a planned move, a
/// failback), wait until everything it flushed is flushed here. The home region's
/// acknowledged writes are the DR receipt's to vouch for, so when it is unreachable
/// the detach finding says what may be lost; the other region writes without any
/// receipt, so when *it* is the old writer, only a caught-up receiver proves nothing is.
fn wait_for_catch_up(
    options: &TakeoverOptions,
    old_writer: &str,
    report: &mut TakeoverReport,
) -> Result<()> {
    let receipted = old_writer == options.fence.home_region;
    let after = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    let started = Instant::now();
    let catch_up = loop {
        let state =
            match crate::failover::local_pg::query(&options.socket_dir, &catch_up_sql(after)) {
                Ok(rows) => catch_up_from(&rows),
                Err(err) => {
                    report.warnings.push(format!(
                        "cannot read the local WAL receiver: {}",
                        err.chain()
                    ));
                    CatchUp::NotStreaming
                }
            };
        match &state {
            CatchUp::CaughtUp { .. } | CatchUp::NotStreaming => break state,
            CatchUp::Behind { .. } if started.elapsed() >= CATCH_UP_TIMEOUT => break state,
            CatchUp::Behind { .. } => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    report.catch_up_s = started.elapsed().as_secs_f64();
    report.catch_up = Some(catch_up.clone());
    let gap = match &catch_up {
        CatchUp::CaughtUp { .. } => return Ok(()),
        CatchUp::NotStreaming if receipted => return Ok(()),
        CatchUp::Behind { flushed, upstream } if receipted => {
            report.warnings.push(format!(
                "the old writer's WAL is flushed here to {flushed}, not to {upstream}: what lies between was never acknowledged while the DR receipt held"
            ));
            return Ok(());
        }
        CatchUp::NotStreaming => format!(
            "the old writer ({old_writer}) acknowledges writes without this region's receipt, and it does not stream here, so what it acknowledged last may be missing"
        ),
        CatchUp::Behind { flushed, upstream } => format!(
            "after {} s this region has flushed the old writer's WAL to {flushed}, not to {upstream}",
            CATCH_UP_TIMEOUT.as_secs()
        ),
    };
    let window = LossWindow {
        after_lsn: match &catch_up {
            CatchUp::Behind { flushed, .. } => Some(flushed.clone()),
            _ => None,
        },
        since: None,
        by: None,
        why: gap,
    };
    if options.accept_data_loss {
        report.accepted_data_loss = true;
        report.warnings.push(format!(
            "promoting with --accept-data-loss: {}",
            window.describe()
        ));
        if report.loss_window.is_none() {
            report.loss_window = Some(window);
        }
        return Ok(());
    }
    Err(Error::with_source(
        "the takeover stopped before promoting",
        Refused {
            window,
            epoch: report.epoch,
        },
    ))
}

/// What this member has flushed of the old writer's WAL: received and synced by the
/// WAL receiver, or replayed (after a restart the receiver's position starts unknown).
pub const LOCAL_FLUSH_SQL: &str =
    "SELECT coalesce(greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text, '')";

/// A loss window from the detach record starts no later than what this member holds.
fn narrow_to_this_member(options: &TakeoverOptions, report: &mut TakeoverReport) {
    let Some(window) = report.loss_window.as_mut() else {
        return;
    };
    let local = crate::failover::local_pg::query(&options.socket_dir, LOCAL_FLUSH_SQL)
        .ok()
        .and_then(|rows| {
            rows.first()
                .and_then(|r| r.first())
                .and_then(|v| Lsn::parse(v))
        });
    if let Some(warning) = window.narrow_to_local_flush(local) {
        report.warnings.push(warning);
    }
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
    fn only_a_receiver_streaming_past_the_old_writers_last_message_is_caught_up() {
        let row = |status: &str, caught: &str, fresh: &str| {
            vec![vec![
                status.to_owned(),
                "0/5000100".to_owned(),
                "0/5000000".to_owned(),
                caught.to_owned(),
                fresh.to_owned(),
            ]]
        };
        assert_eq!(catch_up_from(&[]), CatchUp::NotStreaming);
        assert_eq!(
            catch_up_from(&row("waiting", "t", "t")),
            CatchUp::NotStreaming
        );
        assert_eq!(
            catch_up_from(&row("streaming", "t", "t")),
            CatchUp::CaughtUp {
                lsn: "0/5000100".into()
            }
        );
        // Flushed to the last end it heard of, but nothing heard since the lease wait
        // ended: the old writer may have flushed more meanwhile.
        for (caught, fresh) in [("t", "f"), ("f", "t"), ("false", "false")] {
            assert!(
                matches!(
                    catch_up_from(&row("streaming", caught, fresh)),
                    CatchUp::Behind { .. }
                ),
                "{caught} {fresh}"
            );
        }
        assert!(catch_up_sql(1796625736.5).contains("to_timestamp(1796625736.500)"));
    }

    #[test]
    fn a_loss_window_starts_no_later_than_what_this_member_flushed() {
        let detached = || LossWindow {
            after_lsn: Some("0/5000".into()),
            since: Some("2026-12-07T10:00:00Z".into()),
            by: Some("a".into()),
            why: "the old region recorded itself detached from the DR region".into(),
        };
        let mut window = detached();
        assert_eq!(window.narrow_to_local_flush(Lsn::parse("0/6000")), None);
        assert_eq!(
            window,
            detached(),
            "a member at or past the confirmed position"
        );
        assert_eq!(window.narrow_to_local_flush(Lsn::parse("0/5000")), None);

        let warning = window.narrow_to_local_flush(Lsn::parse("0/4000"));
        assert!(warning.is_some_and(|w| w.contains("0/4000") && w.contains("0/5000")));
        assert_eq!(window.after_lsn.as_deref(), Some("0/4000"));
        assert!(
            window.why.contains("flushed only to 0/4000"),
            "{}",
            window.why
        );

        let mut unread = detached();
        assert!(unread.narrow_to_local_flush(None).is_some());
        assert_eq!(
            unread.after_lsn.as_deref(),
            Some("0/5000"),
            "kept when unknown"
        );

        // A window without a confirmed position (an unreadable detach) stays as it is.
        let mut unknown = LossWindow {
            after_lsn: None,
            ..detached()
        };
        assert_eq!(unknown.narrow_to_local_flush(Lsn::parse("0/1")), None);
        assert_eq!(unknown.after_lsn, None);
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
