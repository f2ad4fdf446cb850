//! `dob-promote --follow`: a region that the fence says is *not* the writer turns its
//! Patroni cluster into a standby cluster of the writing region. This is how the home
//! region comes back after a takeover (and, after a failback, how the DR region goes
//! back to following):
//!
//! 1. Read the epoch from a majority of the fence buckets; refuse if it names this
//!    region (a writer never follows) or cannot be read.
//! 2. `patronictl list`: a cluster whose standby leader already runs is left alone.
//! 3. `patronictl edit-config`: set `standby_cluster` to the other region's hosts
//!    (`DOB_PEER_HOSTS`, the writer keeps slot `DOB_DR_SLOT` for this stream) and drop
//!    this cluster's own permanent slot of that name (nobody streams from a standby
//!    cluster's slot; kept, it would only hold WAL). Patroni demotes the leader,
//!    rewinds it with `pg_rewind` where its timeline diverged (writes it acknowledged
//!    alone, which a takeover with `--accept-data-loss` gave up), and follows.
//! 4. Wait until Patroni lists a running standby leader that has really followed
//!    ([`followed`]): on its own host, its server streams; elsewhere, it is on the
//!    writer's timeline.
//!
//! The pure parts ([`decide`], [`standby_cluster_value`]) are unit-tested; the drill
//! runs the rest (`region_split`, `failback`).

use crate::failover::fence::{self, top_record, FenceConfig, FenceStores};
use crate::failover::quorum::{self, majority_records};
use crate::failover::switchover::{parse_members, patronictl, Member};
use crate::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the demotion, a rewind and the first connection may take.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowOptions {
    pub patroni_config: PathBuf,
    pub fence: FenceConfig,
    /// `DOB_PEER_HOSTS`: the other region's database hosts.
    pub peer_hosts: Vec<String>,
    /// `DOB_DR_SLOT`: the slot the writing region keeps for this one.
    pub slot: String,
    /// `DOB_PG_SOCKET_DIR`: where this host's PostgreSQL listens.
    pub socket_dir: PathBuf,
    pub dry_run: bool,
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FollowReport {
    /// `following`, `already-following` or `dry-run`.
    pub result: &'static str,
    pub region: String,
    pub writer_region: String,
    pub epoch: u64,
    pub peer_hosts: Vec<String>,
    pub slot: String,
    /// The local leader before (and, once done, the standby leader).
    pub leader: String,
    /// Its role and timeline before: a `Leader` here had been writing.
    pub role_before: String,
    pub timeline_before: u32,
    pub follow_s: f64,
    pub warnings: Vec<String>,
}

/// What to do, from the fence's writer and the local members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Already a standby cluster with a running standby leader.
    AlreadyFollowing { leader: String, timeline: u32 },
    /// Turn the cluster into a standby cluster; `leader` leads it now as `role`.
    Follow {
        leader: String,
        role: String,
        timeline: u32,
    },
}

pub fn decide(writer_region: &str, region: &str, members: &[Member]) -> Result<Decision> {
    if writer_region == region {
        return Err(Error::other(format!(
            "the fence names this region ({region}) the writer: a writing region never follows another (to move writes elsewhere, run dob-promote --takeover there)"
        )));
    }
    let running = |m: &&Member| matches!(m.state.as_str(), "running" | "streaming");
    if let Some(m) = members
        .iter()
        .filter(running)
        .find(|m| m.role == "Standby Leader")
    {
        return Ok(Decision::AlreadyFollowing {
            leader: m.name.clone(),
            timeline: m.timeline.unwrap_or(0),
        });
    }
    let leader = members
        .iter()
        .find(|m| m.role == "Leader")
        .ok_or_else(|| {
            Error::other(
                "the local Patroni cluster has no leader to turn into a standby leader: start Patroni on this region's hosts first (patronictl list)",
            )
        })?;
    Ok(Decision::Follow {
        leader: leader.name.clone(),
        role: leader.role.clone(),
        timeline: leader.timeline.unwrap_or(0),
    })
}

/// The `standby_cluster` section, as a YAML flow mapping for `patronictl edit-config -s`.
pub fn standby_cluster_value(peer_hosts: &[String], slot: &str) -> String {
    // Hosts and slot names are checked (addresses, names, `[a-z0-9_]`), so quoting
    // with single quotes is enough.
    format!(
        "{{host: '{}', port: 5432, primary_slot_name: '{slot}', create_replica_methods: [basebackup]}}",
        peer_hosts.join(",")
    )
}

/// Whether `host` is a plain host name or address (no quoting, no separators).
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

/// Whether `slot` is a replication slot name PostgreSQL accepts (its own rule).
pub fn valid_slot(slot: &str) -> bool {
    !slot.is_empty()
        && slot.len() <= 63
        && slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub fn run(options: &FollowOptions) -> Result<FollowReport> {
    let config = &options.patroni_config;
    let region = &options.fence.region;
    let stores = FenceStores::connect(&options.fence)?;
    let all = stores.all();
    let epochs = fence::read_epochs(&all);
    if majority_records(&epochs, all.len()).is_none() {
        return Err(Error::other(format!(
            "fewer than {} of {} fence buckets hold a readable record: which region writes is unknown, so nothing was changed",
            quorum::majority(all.len()),
            all.len()
        )));
    }
    let writer = top_record(&epochs).expect("a majority of records").clone();
    let members = parse_members(&patronictl(config, &["list", "-f", "json"])?)?;
    let decision = decide(&writer.writer_region, region, &members)?;
    let mut report = FollowReport {
        result: "dry-run",
        region: region.clone(),
        writer_region: writer.writer_region.clone(),
        epoch: writer.epoch,
        peer_hosts: options.peer_hosts.clone(),
        slot: options.slot.clone(),
        leader: String::new(),
        role_before: String::new(),
        timeline_before: 0,
        follow_s: 0.0,
        warnings: Vec::new(),
    };
    let (leader, role, timeline) = match decision {
        Decision::AlreadyFollowing { leader, timeline } => {
            report.result = "already-following";
            report.leader = leader;
            report.role_before = "Standby Leader".into();
            report.timeline_before = timeline;
            return Ok(report);
        }
        Decision::Follow {
            leader,
            role,
            timeline,
        } => (leader, role, timeline),
    };
    report.leader = leader.clone();
    report.role_before = role;
    report.timeline_before = timeline;
    report.warnings.push(format!(
        "{leader} led this region on timeline {timeline}: whatever it wrote that the writing region ({}) lacks is rewound away (pg_rewind); a takeover reported that window",
        writer.writer_region
    ));
    if options.dry_run {
        return Ok(report);
    }
    let started = Instant::now();
    log::info!(
        "following {} (epoch {}): standby cluster of {}",
        writer.writer_region,
        writer.epoch,
        options.peer_hosts.join(",")
    );
    let standby = format!(
        "standby_cluster={}",
        standby_cluster_value(&options.peer_hosts, &options.slot)
    );
    let drop_slot = format!("slots.{}=null", options.slot);
    patronictl(
        config,
        &[
            "edit-config",
            "--force",
            "--quiet",
            "-s",
            &standby,
            "-s",
            &drop_slot,
        ],
    )?;
    let local_name = member_name(&std::fs::read_to_string(config).unwrap_or_default());
    let deadline = started + FOLLOW_TIMEOUT;
    loop {
        if let Ok(Decision::AlreadyFollowing {
            leader: now_leading,
            timeline: now_on,
        }) = patronictl(config, &["list", "-f", "json"])
            .and_then(|out| parse_members(&out))
            .and_then(|m| decide(&writer.writer_region, region, &m))
        {
            if followed(
                local_name.as_deref() == Some(now_leading.as_str()),
                timeline,
                now_on,
                || local_receiver_streams(&options.socket_dir),
            ) {
                report.leader = now_leading;
                break;
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::other(format!(
                "the cluster was made a standby cluster of {}, but no running standby leader follows it after {} s (patronictl list; Patroni's log says whether pg_rewind or a new base backup is under way)",
                options.peer_hosts.join(","),
                FOLLOW_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    report.result = "following";
    report.follow_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Whether a listed running standby leader has really followed: Patroni lists it so
/// before it has even stopped to rewind. On its own host, its server must stream from
/// the other region (the strong proof); elsewhere (Patroni 3.0's standby leader keeps no
/// slots for this region's replicas, so they may not stream until a promotion), it must
/// be on another timeline than the leader it was: the writer's, which promoted past it.
pub fn followed(
    leader_is_here: bool,
    timeline_before: u32,
    timeline_now: u32,
    local_streams: impl FnOnce() -> bool,
) -> bool {
    if leader_is_here {
        local_streams()
    } else {
        timeline_now != timeline_before
    }
}

/// The member name in a Patroni configuration (its top-level `name:`).
pub fn member_name(patroni_yml: &str) -> Option<String> {
    patroni_yml.lines().find_map(|line| {
        let value = line.strip_prefix("name:")?.trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// Whether this host's PostgreSQL is a standby whose WAL receiver streams.
fn local_receiver_streams(socket_dir: &std::path::Path) -> bool {
    crate::failover::local_pg::query(
        socket_dir,
        "SELECT status FROM pg_stat_wal_receiver WHERE pg_is_in_recovery()",
    )
    .is_ok_and(|rows| {
        rows.first()
            .and_then(|r| r.first())
            .is_some_and(|s| s == "streaming")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: &str, state: &str, timeline: u32) -> Member {
        Member {
            cluster: "dob".into(),
            name: name.into(),
            role: role.into(),
            state: state.into(),
            timeline: Some(timeline),
            lag_mb: None,
            receive_lag_mb: None,
            replay_lag_mb: None,
        }
    }

    #[test]
    fn a_listed_standby_leader_has_followed_only_once_it_streams_or_changed_timeline() {
        // On the standby leader's own host: only its server streaming counts.
        assert!(followed(true, 4, 4, || true));
        assert!(!followed(true, 4, 5, || false));
        // Elsewhere: the timeline it replays is the writer's, no longer its own.
        assert!(
            !followed(false, 4, 4, || true),
            "listed before it even stopped"
        );
        assert!(followed(false, 4, 5, || false));
    }

    #[test]
    fn the_member_name_comes_from_the_top_level_key() {
        let yml = "scope: 'dob'\nname: 'a'\nrestapi:\n  name: nested\n";
        assert_eq!(member_name(yml).as_deref(), Some("a"));
        assert_eq!(member_name("name: b\n").as_deref(), Some("b"));
        assert_eq!(member_name("name: \"c\"\n").as_deref(), Some("c"));
        assert_eq!(member_name("scope: dob\n"), None);
    }

    #[test]
    fn only_a_region_the_fence_does_not_name_follows() {
        let members = [
            member("a", "Leader", "running", 7),
            member("b", "Sync Standby", "streaming", 7),
        ];
        let err = decide("eu-west-1", "eu-west-1", &members).unwrap_err();
        assert!(err.to_string().contains("never follows"), "{err}");
        assert_eq!(
            decide("eu-central-1", "eu-west-1", &members).unwrap(),
            Decision::Follow {
                leader: "a".into(),
                role: "Leader".into(),
                timeline: 7
            }
        );
        let following = [
            member("a", "Standby Leader", "streaming", 8),
            member("b", "Replica", "streaming", 8),
        ];
        assert_eq!(
            decide("eu-central-1", "eu-west-1", &following).unwrap(),
            Decision::AlreadyFollowing {
                leader: "a".into(),
                timeline: 8
            }
        );
        // Nobody leads: nothing to demote, nothing changed.
        let down = [member("a", "Replica", "stopped", 7)];
        assert!(decide("eu-central-1", "eu-west-1", &down).is_err());
    }

    #[test]
    fn the_standby_section_is_yaml_patroni_reads_and_names_are_checked() {
        let value = standby_cluster_value(&["10.0.0.1".into(), "10.0.1.1".into()], "dob_dr");
        assert_eq!(
            value,
            "{host: '10.0.0.1,10.0.1.1', port: 5432, primary_slot_name: 'dob_dr', create_replica_methods: [basebackup]}"
        );
        assert!(valid_host("10.0.0.1") && valid_host("db-a.internal") && valid_host("fd00::1"));
        assert!(!valid_host("") && !valid_host("a,b") && !valid_host("a'b") && !valid_host("a b"));
        assert!(
            valid_slot("dob_dr") && !valid_slot("Dob") && !valid_slot("a-b") && !valid_slot("")
        );
    }
}
