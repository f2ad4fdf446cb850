//! The `dob-promote` command line: its help and its flags, read into what to run
//! ([`Command`]): a promotion of the local replica ([`crate::failover::promote`]), a
//! switchover ([`crate::failover::switchover`]) or a takeover
//! ([`crate::failover::takeover`]).

use crate::cli::{self, Arg, Help, Parser, Stop};
use crate::failover::promote::{Options, DEFAULT_MAX_LAG_BYTES};
use std::path::PathBuf;
use std::time::Duration;

pub const HELP: Help = Help {
    name: "dob-promote",
    about: "turn the local streaming replica into the primary, safely",
    usage: "\
dob-promote [--database-url URL] [--primary-url URL ...] [--max-lag-bytes N]
            [--force] [--allow-data-loss] [--dry-run] [--json]
            [--replay-timeout-seconds N] [--metrics-file PATH]
dob-promote --switchover [--candidate NAME] [--patroni-config PATH]
            [--dry-run] [--json]
dob-promote --takeover [--patroni-config PATH] [--env-file PATH]
            [--accept-data-loss] [--old-region-unfenced] [--dry-run] [--json]
dob-promote --lift-isolation [--env-file PATH] [--dry-run] [--json]
dob-promote --follow [--patroni-config PATH] [--env-file PATH] [--dry-run] [--json]
dob-promote --fence-init [--env-file PATH] [--json]",
    flags: "\
--switchover          in the region, where Patroni manages PostgreSQL: a planned change
                      of leader (patronictl switchover) to --candidate, else the
                      synchronous standby; waits until it leads on a new timeline.
                      Failover after a loss is Patroni's own; this is for maintenance
--candidate NAME      with --switchover: the member to hand the lead to
--takeover            in the DR region: the human-decided cross-region promotion. Records
                      a new promotion epoch naming this region (DOB_REGION) in a
                      majority of the buckets of DOB_FENCE_BUCKETS, then reads whether
                      the old region went on without the DR region's receipt (refused
                      then, exit 7), waits out DOB_FENCE_LEASE_MS so the old region's
                      dob-api stops writing, then promotes the local Patroni standby
                      cluster (patronictl edit-config) and waits for a new timeline.
                      Safe to re-run. See docs/failover.md
                      Before promoting, while the old writer still streams here (a
                      failback), waits until its WAL is flushed here. After it, the
                      first full backup into this region's own pgBackRest repository
                      (DOB_PGBACKREST_CONFIG), where it archives from the promotion on.
                      Just before promoting, isolates the old region through its EC2
                      API (DOB_PEER_REGION): its database subnets (tag dob:fence-group
                      = DOB_PEER_FENCE_GROUP) move to the group's isolation network ACL
                      and its database hosts are stopped; if that fails, nothing is
                      promoted (exit 9)
--accept-data-loss    with --takeover: promote even though the old region acknowledged
                      writes the DR region may lack; the report gives that window
--old-region-unfenced with --takeover: promote even though the old region could not be
                      isolated through its API (the API is down, or DOB_PEER_REGION is
                      not set); the epoch and the lease still fence its dob-api
--lift-isolation      in the writing region, once the old one is to come back as its
                      standby: undo a takeover's isolation of DOB_PEER_FENCE_GROUP in
                      DOB_PEER_REGION (each subnet back to the network ACL recorded on
                      it, the hosts a takeover stopped started)
--follow              in a region the fence does not name the writer (the home region
                      back after a takeover; the DR region after a failback): make the
                      local Patroni cluster a standby cluster of DOB_PEER_HOSTS, the
                      writing region's hosts (its leader is rewound where it wrote
                      apart), and wait until its standby leader runs. Safe to re-run
--fence-init          at deploy: create the fence records (epoch 0 naming
                      DOB_FENCE_HOME_REGION, DR receipt attached) in every bucket that
                      has none; never replaces a record
--env-file PATH       with --takeover, --follow, --fence-init or --lift-isolation: read variables the environment
                      does not set from PATH (default /etc/dob/dob.env when it exists)
--patroni-config PATH Patroni's configuration (default DOB_PATRONI_CONFIG, else
                      /etc/patroni/config.yml)

--database-url URL    the LOCAL server (default DOB_DATABASE_URL, which must then name
                      one host), as a superuser (pg_promote, pg_control_checkpoint and
                      primary_conninfo are superuser-only by default)
--primary-url URL     the old primary; repeatable, every host of a multi-host URL is
                      checked (2 s connect timeout), with the password of the local
                      server's URL. Default: the host in the replica's own
                      primary_conninfo, with the credentials of --database-url.
                      Neither URL may carry a password on the command line: give the
                      local one, password included, in DOB_DATABASE_URL
--max-lag-bytes N     refuse when the replica is more than N bytes of WAL behind the
                      newest position it knows of (default 16777216)
--force               promote even though an old primary still answers as primary
--allow-data-loss     promote even beyond --max-lag-bytes, or when replay does not
                      catch up within the replay timeout
--dry-run             run every check, say what would be done, change nothing
--json                machine-readable report on stdout
--replay-timeout-seconds N
                      longest wait for received WAL to be replayed (default 60)
--metrics-file PATH   write a Prometheus textfile with the result
-h, --help            print this help
-V, --version         print the version",
    environment: "\
DOB_DATABASE_URL      the local server, when --database-url is not given
DOB_DATABASE_CA_FILE  CA that signed the servers' certificates (sslmode=verify-full)
DOB_PATRONI_CONFIG    default --patroni-config
DOB_REGION, DOB_FENCE_BUCKETS, DOB_FENCE_HOME_REGION, DOB_FENCE_LEASE_MS,
DOB_FENCE_INTERVAL_MS, DOB_S3_PREFIX, DOB_S3_ENDPOINT
                      the write fence, for --takeover, --follow and --fence-init (also
                      read from --env-file)
DOB_PEER_HOSTS        --follow: the other region's database hosts, comma-separated
DOB_PEER_REGION, DOB_PEER_FENCE_GROUP
                      --takeover and --lift-isolation: the other region, and the value
                      of the tag dob:fence-group on its database subnets and hosts
DOB_PEER_EC2_ENDPOINT that region's EC2 API, when not https://ec2.<region>.amazonaws.com
DOB_DR_SLOT           the slot a writing region keeps for the other one (default dob_dr)
DOB_PG_SOCKET_DIR     --takeover: the local server's socket directory, to read its WAL
                      receiver (default /var/run/postgresql); DOB_PG_BIN, psql's directory
DOB_PGBACKREST_CONFIG --takeover: this region's own pgBackRest repository (default
                      /etc/pgbackrest/pgbackrest.conf when it exists); DOB_PGBACKREST_STANZA
                      (dob), DOB_PGBACKREST (the program)
RUST_LOG              log level (default info)
AWS credentials (--takeover, --lift-isolation): the standard chain (environment, profile, instance profile).",
    exit_codes: "\
0  promoted (or, with --dry-run, would promote); switched over; took over; every
   bucket holds the fence records (--fence-init); following (--follow)
1  error (with --fence-init: some bucket holds no valid record)
2  bad command line; with --takeover or --fence-init, also a bad or missing fence
   configuration
3  the local server is not a replica
4  an old primary still answers as primary
5  replication lag beyond --max-lag-bytes (or replay did not catch up)
6  promotion did not complete or the server did not accept a write afterwards
7  --takeover refused: the old region acknowledged writes without the DR region's
   receipt (or that cannot be ruled out), or an old writer still streaming here did
   not catch up; the new epoch stays recorded, nothing takes writes, and
   --accept-data-loss promotes. With --json: {\"result\": \"refused\", \"error\",
   \"epoch\", \"loss_window\": {\"after_lsn\", \"since\", \"by\", \"why\"}}
8  --takeover promoted (writes are on), but its first full backup failed: no
   point-in-time recovery to a later time until one succeeds (base_backup_error;
   systemctl start dob-pgbackrest-backup@full.service on the leader)
9  --takeover stopped before promoting: the old region could not be isolated
   through its EC2 API (old_region.error); the new epoch stays recorded, nothing takes
   writes, and --old-region-unfenced promotes. With --lift-isolation: some of the
   isolation could not be lifted",
};

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Promote(Options),
    /// `--switchover`: a planned in-region change of leader, through Patroni.
    Switchover(crate::failover::switchover::SwitchoverOptions),
    /// `--takeover`: the cross-region promotion of the DR standby cluster. The fence
    /// configuration is read by the caller, from the environment and `env_file`.
    Takeover {
        patroni_config: PathBuf,
        env_file: Option<PathBuf>,
        dry_run: bool,
        json: bool,
        accept_data_loss: bool,
        /// Promote although the old region could not be isolated through its API.
        old_region_unfenced: bool,
    },
    /// `--lift-isolation`: undo a takeover's isolation of the other region.
    LiftIsolation {
        env_file: Option<PathBuf>,
        dry_run: bool,
        json: bool,
    },
    /// `--follow`: the local cluster becomes a standby cluster of the writing region.
    Follow {
        patroni_config: PathBuf,
        env_file: Option<PathBuf>,
        dry_run: bool,
        json: bool,
    },
    /// `--fence-init`: the fence records a deploy starts from.
    FenceInit {
        env_file: Option<PathBuf>,
        json: bool,
    },
}

/// Reads the command line; flags override the environment, read through `env`.
/// `--help`, `--version` and mistakes end it through [`Stop`].
pub fn parse_args(
    parser: &mut Parser,
    env: impl Fn(&str) -> Option<String>,
) -> std::result::Result<Command, Stop> {
    let mut database_url = None;
    let mut primary_urls = Vec::new();
    let mut max_lag_bytes = DEFAULT_MAX_LAG_BYTES;
    let mut replay_timeout = Duration::from_secs(60);
    let (mut force, mut allow_data_loss, mut dry_run, mut json) = (false, false, false, false);
    let mut metrics_file = None;
    let (mut switchover, mut candidate, mut patroni_config) = (false, None, None);
    let (mut takeover, mut env_file) = (false, None);
    let (mut fence_init, mut accept_data_loss, mut follow) = (false, false, false);
    let (mut old_region_unfenced, mut lift_isolation) = (false, false);
    while let Some(arg) = parser.next_arg()? {
        let flag = match arg {
            Arg::Flag(flag) => flag,
            Arg::Positional(other) => return Err(cli::unexpected_argument(&other)),
        };
        match flag.as_str() {
            "--database-url" | "--primary-url" => {
                let url = parser.value()?;
                // Arguments are readable by every user of the host (ps, /proc/*/cmdline).
                if crate::db::conninfo::for_driver(&url)
                    .parse::<postgres::Config>()
                    .is_ok_and(|c| c.get_password().is_some())
                {
                    return Err(Stop::Usage(format!(
                        "{flag} carries a password, which any user of this host could read in the process list: put the local server's URL, password included, in DOB_DATABASE_URL instead (an old primary without a password in its URL is checked with the same credentials)"
                    )));
                }
                if flag.as_str() == "--database-url" {
                    database_url = Some(url);
                } else {
                    primary_urls.push(url);
                }
            }
            "--max-lag-bytes" => {
                let raw = parser.value()?;
                max_lag_bytes = raw.parse().map_err(|_| {
                    Stop::Usage(format!(
                        "--max-lag-bytes must be a whole number, not {raw:?}"
                    ))
                })?;
            }
            "--replay-timeout-seconds" => {
                let raw = parser.value()?;
                let secs: u64 = raw
                    .parse()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .ok_or_else(|| {
                        Stop::Usage(format!(
                            "--replay-timeout-seconds must be from 1 to 86400, not {raw:?}"
                        ))
                    })?;
                replay_timeout = Duration::from_secs(secs);
            }
            "--metrics-file" => metrics_file = Some(PathBuf::from(parser.value()?)),
            "--candidate" => candidate = Some(parser.value()?),
            "--patroni-config" => patroni_config = Some(PathBuf::from(parser.value()?)),
            "--env-file" => env_file = Some(PathBuf::from(parser.value()?)),
            "--switchover" => switchover = true,
            "--takeover" => takeover = true,
            "--follow" => follow = true,
            "--fence-init" => fence_init = true,
            "--accept-data-loss" => accept_data_loss = true,
            "--old-region-unfenced" => old_region_unfenced = true,
            "--lift-isolation" => lift_isolation = true,
            "--force" => force = true,
            "--allow-data-loss" => allow_data_loss = true,
            "--dry-run" => dry_run = true,
            "--json" => json = true,
            _ => return Err(cli::unknown_flag(&flag)),
        }
    }
    let patroni_config_or_default = |given: Option<PathBuf>| {
        given
            .or_else(|| {
                env("DOB_PATRONI_CONFIG")
                    .filter(|v| !v.trim().is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(crate::failover::switchover::DEFAULT_PATRONI_CONFIG))
    };
    if lift_isolation {
        if takeover
            || follow
            || fence_init
            || switchover
            || database_url.is_some()
            || !primary_urls.is_empty()
            || force
            || allow_data_loss
            || accept_data_loss
            || old_region_unfenced
            || candidate.is_some()
            || patroni_config.is_some()
        {
            return Err("--lift-isolation takes only --env-file, --dry-run and --json".into());
        }
        return Ok(Command::LiftIsolation {
            env_file,
            dry_run,
            json,
        });
    }
    if old_region_unfenced && !takeover {
        return Err("--old-region-unfenced goes with --takeover".into());
    }
    if fence_init {
        if takeover
            || follow
            || switchover
            || database_url.is_some()
            || !primary_urls.is_empty()
            || force
            || allow_data_loss
            || accept_data_loss
            || dry_run
            || candidate.is_some()
            || patroni_config.is_some()
        {
            return Err("--fence-init takes only --env-file and --json".into());
        }
        return Ok(Command::FenceInit { env_file, json });
    }
    // What only a local promotion or a switchover takes.
    let local_flags = database_url.is_some()
        || !primary_urls.is_empty()
        || force
        || allow_data_loss
        || candidate.is_some();
    if follow {
        if takeover || switchover || local_flags || accept_data_loss {
            return Err("--follow takes only --patroni-config, --env-file, --dry-run and --json: the fence and DOB_PEER_HOSTS know the rest".into());
        }
        return Ok(Command::Follow {
            patroni_config: patroni_config_or_default(patroni_config),
            env_file,
            dry_run,
            json,
        });
    }
    if accept_data_loss && !takeover {
        return Err(
            "--accept-data-loss goes with --takeover (a local promotion has --allow-data-loss)"
                .into(),
        );
    }
    if takeover {
        if switchover || local_flags {
            return Err("--takeover takes only --patroni-config, --env-file, --accept-data-loss, --old-region-unfenced, --dry-run and --json: Patroni and the fence configuration know the rest".into());
        }
        return Ok(Command::Takeover {
            patroni_config: patroni_config_or_default(patroni_config),
            env_file,
            dry_run,
            json,
            accept_data_loss,
            old_region_unfenced,
        });
    }
    if env_file.is_some() {
        return Err(
            "--env-file goes with --takeover, --follow, --fence-init or --lift-isolation".into(),
        );
    }
    if switchover {
        if database_url.is_some() || !primary_urls.is_empty() || force || allow_data_loss {
            return Err("--switchover takes only --candidate, --patroni-config, --dry-run and --json: Patroni knows the servers".into());
        }
        return Ok(Command::Switchover(
            crate::failover::switchover::SwitchoverOptions {
                patroni_config: patroni_config_or_default(patroni_config),
                candidate,
                dry_run,
                json,
            },
        ));
    }
    if candidate.is_some() || patroni_config.is_some() {
        return Err("--candidate and --patroni-config go with --switchover (or --takeover)".into());
    }
    let database_url = match database_url {
        Some(url) => url,
        None => {
            let url = env("DOB_DATABASE_URL")
                .filter(|v| !v.trim().is_empty())
                .ok_or("no --database-url, and DOB_DATABASE_URL is not set")?;
            if host_count(&url)? > 1 {
                return Err("DOB_DATABASE_URL lists several hosts: pass --database-url with the local server only".into());
            }
            url
        }
    };
    if host_count(&database_url)? != 1 {
        return Err("--database-url must name exactly one server (the local replica)".into());
    }
    for url in &primary_urls {
        host_count(url)?;
    }
    Ok(Command::Promote(Options {
        database_url,
        primary_urls,
        max_lag_bytes,
        force,
        allow_data_loss,
        dry_run,
        json,
        replay_timeout,
        metrics_file,
    }))
}

fn host_count(url: &str) -> std::result::Result<usize, String> {
    let config: postgres::Config = crate::db::conninfo::for_driver(url)
        .parse()
        .map_err(|e| format!("{url:?} is not a valid PostgreSQL URL: {e}"))?;
    Ok(config.get_hosts().len().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        args: &[&str],
        env: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Command, Stop> {
        parse_args(&mut Parser::new(args.iter().copied()), env)
    }

    #[test]
    fn flags_override_the_environment_and_bad_usage_is_explained() {
        let env =
            |k: &str| (k == "DOB_DATABASE_URL").then(|| "postgresql://a@h1:5432/dob".to_string());
        let Ok(Command::Promote(o)) = parse(&["--json", "--max-lag-bytes=10"], env) else {
            panic!()
        };
        assert_eq!(o.database_url, "postgresql://a@h1:5432/dob");
        assert!(o.json && o.max_lag_bytes == 10 && !o.force);
        let Ok(Command::Promote(o)) = parse(
            &[
                "--database-url",
                "postgresql://b@h2/dob",
                "--primary-url",
                "postgresql://b@h1,h3/dob",
                "--primary-url",
                "postgresql://b@h4/dob",
                "--force",
                "--allow-data-loss",
                "--dry-run",
            ],
            env,
        ) else {
            panic!()
        };
        assert_eq!(o.database_url, "postgresql://b@h2/dob");
        assert_eq!(o.primary_urls.len(), 2);
        assert!(o.force && o.allow_data_loss && o.dry_run);
        for bad in [
            &["--max-lag-bytes", "lots"][..],
            &["--bogus"],
            &["--primary-url"],
            &["--force=yes"],
            &["--database-url", "postgresql://b@h1,h2/dob"],
        ] {
            assert!(parse(bad, env).is_err(), "{bad:?}");
        }
        let multi =
            |k: &str| (k == "DOB_DATABASE_URL").then(|| "postgresql://a@h1,h2/dob".to_string());
        assert!(parse(&[], multi)
            .unwrap_err()
            .to_string()
            .contains("--database-url"));
        assert!(parse(&[], |_| None).is_err());
        assert_eq!(parse(&["--help"], |_| None), Err(Stop::Help));
    }

    #[test]
    fn a_switchover_needs_no_database_url_and_takes_patronis_config() {
        let env = |k: &str| (k == "DOB_PATRONI_CONFIG").then(|| "/etc/dob/patroni.yml".to_string());
        let Ok(Command::Switchover(o)) = parse(&["--switchover", "--json"], env) else {
            panic!()
        };
        assert_eq!(o.patroni_config, PathBuf::from("/etc/dob/patroni.yml"));
        assert!(o.json && o.candidate.is_none());
        let Ok(Command::Switchover(o)) = parse(
            &[
                "--switchover",
                "--candidate=b",
                "--patroni-config",
                "/p.yml",
            ],
            |_| None,
        ) else {
            panic!()
        };
        assert_eq!(o.candidate.as_deref(), Some("b"));
        assert_eq!(o.patroni_config, PathBuf::from("/p.yml"));
        let Ok(Command::Switchover(o)) = parse(&["--switchover"], |_| None) else {
            panic!()
        };
        assert_eq!(
            o.patroni_config,
            PathBuf::from(crate::failover::switchover::DEFAULT_PATRONI_CONFIG)
        );
        for bad in [
            &["--switchover", "--force"][..],
            &["--switchover", "--database-url", "postgresql://h/dob"],
            &["--candidate", "b", "--database-url", "postgresql://h/dob"],
        ] {
            assert!(parse(bad, |_| None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_password_on_the_command_line_is_refused() {
        for flag in ["--database-url", "--primary-url"] {
            let err = parse(
                &[
                    "--database-url",
                    "postgresql://postgres@127.0.0.1:5433/dob",
                    flag,
                    "postgresql://postgres:secret@127.0.0.1:5432/dob",
                ],
                |_| None,
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("password") && !err.contains("secret"), "{err}");
        }
        // From the environment it is fine: the environment is the process's own.
        let env = |k: &str| {
            (k == "DOB_DATABASE_URL").then(|| "postgresql://postgres:pw@127.0.0.1:5433/dob".into())
        };
        assert!(matches!(parse(&[], env), Ok(Command::Promote(_))));
    }

    #[test]
    fn a_takeover_takes_its_configuration_from_the_host_not_the_command_line() {
        assert_eq!(
            parse(&["--takeover", "--env-file", "/e", "--dry-run"], |_| None),
            Ok(Command::Takeover {
                patroni_config: PathBuf::from(crate::failover::switchover::DEFAULT_PATRONI_CONFIG),
                env_file: Some(PathBuf::from("/e")),
                dry_run: true,
                json: false,
                accept_data_loss: false,
                old_region_unfenced: false,
            })
        );
        assert!(matches!(
            parse(
                &["--takeover", "--accept-data-loss", "--old-region-unfenced"],
                |_| None
            ),
            Ok(Command::Takeover {
                accept_data_loss: true,
                old_region_unfenced: true,
                ..
            })
        ));
        assert_eq!(
            parse(&["--lift-isolation", "--dry-run", "--json"], |_| None),
            Ok(Command::LiftIsolation {
                env_file: None,
                dry_run: true,
                json: true
            })
        );
        assert_eq!(
            parse(
                &["--follow", "--patroni-config", "/p.yml", "--json"],
                |_| None
            ),
            Ok(Command::Follow {
                patroni_config: PathBuf::from("/p.yml"),
                env_file: None,
                dry_run: false,
                json: true,
            })
        );
        assert_eq!(
            parse(&["--fence-init", "--json"], |_| None),
            Ok(Command::FenceInit {
                env_file: None,
                json: true
            })
        );
        for bad in [
            &["--takeover", "--switchover"][..],
            &["--takeover", "--database-url", "postgresql://h/dob"],
            &["--takeover", "--candidate", "b"],
            &["--takeover=yes"],
            &["--env-file", "/e", "--database-url", "postgresql://h/dob"],
            &["--accept-data-loss"],
            &["--switchover", "--accept-data-loss"],
            &["--fence-init", "--takeover"],
            &["--old-region-unfenced"],
            &["--lift-isolation", "--takeover"],
            &["--lift-isolation", "--old-region-unfenced"],
            &["--fence-init", "--dry-run"],
            &["--follow", "--takeover"],
            &["--follow", "--accept-data-loss"],
            &["--follow", "--database-url", "postgresql://h/dob"],
        ] {
            assert!(parse(bad, |_| None).is_err(), "{bad:?}");
        }
    }
}
