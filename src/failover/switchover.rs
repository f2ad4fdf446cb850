//! `dob-promote --switchover`: a planned in-region change of leader, which is Patroni's
//! to make. This wraps `patronictl` so operators keep one tool: it reads the cluster
//! (`patronictl list -f json`), picks the candidate (the one asked for, else the
//! synchronous standby, else a streaming replica without lag), asks Patroni for the
//! switchover, and waits until the candidate leads on a later timeline.
//!
//! The decisions are pure functions over the parsed member list; only [`run`] runs
//! commands.

use crate::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's patroni package reads its configuration.
pub const DEFAULT_PATRONI_CONFIG: &str = "/etc/patroni/config.yml";
/// How long the new leader may take to be running on a new timeline.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverOptions {
    pub patroni_config: PathBuf,
    pub candidate: Option<String>,
    pub dry_run: bool,
    pub json: bool,
}

/// One member as `patronictl list -f json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    #[serde(rename = "Cluster")]
    pub cluster: String,
    #[serde(rename = "Member")]
    pub name: String,
    #[serde(rename = "Role")]
    pub role: String,
    #[serde(rename = "State")]
    pub state: String,
    #[serde(rename = "TL", default)]
    pub timeline: Option<u32>,
    /// How far behind the leader, in MB: Patroni 3's one column.
    #[serde(rename = "Lag in MB", default)]
    pub lag_mb: Option<serde_json::Value>,
    /// Patroni 4 splits it into what was received and what was replayed.
    #[serde(rename = "Receive Lag", default)]
    pub receive_lag_mb: Option<serde_json::Value>,
    #[serde(rename = "Replay Lag", default)]
    pub replay_lag_mb: Option<serde_json::Value>,
}

impl Member {
    fn is_leader(&self) -> bool {
        self.role == "Leader"
    }

    fn is_healthy_replica(&self) -> bool {
        !self.is_leader()
            && matches!(self.state.as_str(), "running" | "streaming")
            && self.caught_up()
    }

    /// Every lag column the listing has says 0 MB (a member with none is unknown).
    fn caught_up(&self) -> bool {
        let lags = [&self.lag_mb, &self.receive_lag_mb, &self.replay_lag_mb];
        let mut given = lags.iter().filter_map(|lag| lag.as_ref()).peekable();
        given.peek().is_some() && given.all(|lag| lag.as_u64() == Some(0))
    }
}

pub fn parse_members(json: &str) -> Result<Vec<Member>> {
    serde_json::from_str(json)
        .map_err(|e| Error::with_source("reading `patronictl list -f json`", e))
}

/// The plan: who leads now, who will, and the timeline to get past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub cluster: String,
    pub leader: String,
    pub candidate: String,
    pub timeline: u32,
}

pub fn plan(members: &[Member], requested: Option<&str>) -> Result<Plan> {
    let leader = members
        .iter()
        .find(|m| m.is_leader() && m.state == "running")
        .ok_or_else(|| Error::other("no running leader: a switchover needs one (Patroni fails over by itself when the leader is gone)"))?;
    let candidate = match requested {
        Some(name) => members
            .iter()
            .find(|m| m.name == name)
            .filter(|m| m.is_healthy_replica())
            .ok_or_else(|| {
                Error::other(format!(
                    "candidate {name:?} is not a streaming replica without lag"
                ))
            })?,
        None => members
            .iter()
            .filter(|m| m.is_healthy_replica())
            .min_by_key(|m| m.role != "Sync Standby")
            .ok_or_else(|| Error::other("no streaming replica without lag to switch over to"))?,
    };
    Ok(Plan {
        cluster: leader.cluster.clone(),
        leader: leader.name.clone(),
        candidate: candidate.name.clone(),
        timeline: leader.timeline.unwrap_or(0),
    })
}

/// Whether the switchover has happened: the candidate leads, running, on a later timeline.
pub fn done(members: &[Member], plan: &Plan) -> bool {
    members.iter().any(|m| {
        m.name == plan.candidate
            && m.is_leader()
            && m.state == "running"
            && m.timeline.is_some_and(|tl| tl > plan.timeline)
    })
}

pub(crate) fn patronictl(config: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("patronictl")
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("running patronictl (is Patroni installed?)", e))?;
    if !output.status.success() {
        return Err(Error::other(format!(
            "patronictl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs the switchover; returns the plan carried out (or, with `dry_run`, the plan).
pub fn run(options: &SwitchoverOptions) -> Result<Plan> {
    let config = &options.patroni_config;
    let members = parse_members(&patronictl(config, &["list", "-f", "json"])?)?;
    let plan = plan(&members, options.candidate.as_deref())?;
    if options.dry_run {
        return Ok(plan);
    }
    log::info!(
        "switching over cluster {} from {} (timeline {}) to {}",
        plan.cluster,
        plan.leader,
        plan.timeline,
        plan.candidate
    );
    patronictl(
        config,
        &[
            "switchover",
            &plan.cluster,
            "--leader",
            &plan.leader,
            "--candidate",
            &plan.candidate,
            "--force",
        ],
    )?;
    let deadline = Instant::now() + SWITCH_TIMEOUT;
    loop {
        // The DCS may be briefly unreadable mid-switch; keep asking until the deadline.
        if let Ok(members) =
            patronictl(config, &["list", "-f", "json"]).and_then(|out| parse_members(&out))
        {
            if done(&members, &plan) {
                return Ok(plan);
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::other(format!(
                "{} does not lead on a new timeline {}s after the switchover was asked for",
                plan.candidate,
                SWITCH_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"[{"Cluster": "dob", "Member": "a", "Host": "10.71.0.11", "Role": "Sync Standby", "State": "running", "TL": 1, "Lag in MB": 0},
        {"Cluster": "dob", "Member": "b", "Host": "10.71.0.12", "Role": "Leader", "State": "running", "TL": 1}]"#;

    #[test]
    fn the_synchronous_standby_is_the_default_candidate() {
        let members = parse_members(TWO).unwrap();
        let plan = plan(&members, None).unwrap();
        assert_eq!(
            plan,
            Plan {
                cluster: "dob".into(),
                leader: "b".into(),
                candidate: "a".into(),
                timeline: 1
            }
        );
        assert!(!done(&members, &plan));
        let after = parse_members(
            &TWO.replace("\"Sync Standby\"", "\"Leader\"")
                .replace(
                    "\"Role\": \"Leader\", \"State\": \"running\", \"TL\": 1}",
                    "\"Role\": \"Replica\", \"State\": \"stopped\", \"TL\": 1}",
                )
                .replace("\"TL\": 1, \"Lag", "\"TL\": 2, \"Lag"),
        )
        .unwrap();
        assert!(done(&after, &plan));
    }

    /// Patroni 4 lists a replica's lag in two columns; both must be 0.
    const TWO_PATRONI_4: &str = r#"[{"Cluster": "dob", "Member": "a", "Host": "10.71.0.11", "Role": "Sync Standby", "State": "streaming", "TL": 1, "Receive LSN": "0/5000060", "Receive Lag": 0, "Replay LSN": "0/5000060", "Replay Lag": 0},
        {"Cluster": "dob", "Member": "b", "Host": "10.71.0.12", "Role": "Leader", "State": "running", "TL": 1, "LSN": "0/5000060"}]"#;

    #[test]
    fn patroni_4s_listing_names_the_same_candidate() {
        let members = parse_members(TWO_PATRONI_4).unwrap();
        assert_eq!(plan(&members, None).unwrap().candidate, "a");
        let behind =
            parse_members(&TWO_PATRONI_4.replace("\"Replay Lag\": 0", "\"Replay Lag\": 3"))
                .unwrap();
        assert!(
            plan(&behind, None).is_err(),
            "a replica still replaying is no candidate"
        );
        let unknown = parse_members(
            &TWO_PATRONI_4.replace("\"Receive Lag\": 0", "\"Receive Lag\": \"unknown\""),
        )
        .unwrap();
        assert!(plan(&unknown, None).is_err());
    }

    #[test]
    fn a_lagging_or_stopped_candidate_or_no_leader_is_refused() {
        let lagging = parse_members(&TWO.replace("\"Lag in MB\": 0", "\"Lag in MB\": 12")).unwrap();
        assert!(plan(&lagging, None).is_err());
        assert!(plan(&lagging, Some("a")).is_err());
        let members = parse_members(TWO).unwrap();
        assert!(
            plan(&members, Some("b")).is_err(),
            "the leader is no candidate"
        );
        assert!(plan(&members, Some("zz")).is_err());
        let leaderless = parse_members(&TWO.replace("\"Leader\"", "\"Replica\"")).unwrap();
        assert!(plan(&leaderless, None).is_err());
    }
}
