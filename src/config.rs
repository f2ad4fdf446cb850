//! Configuration from the environment (on hosts, `/etc/dob/dob.env`), parsed and
//! checked before any work starts. Parsing takes a lookup function instead of reading
//! the process environment, so it is tested without touching global state.

use crate::{Error, Result};
use jiff::tz::TimeZone;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `dob-api` needs to run.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// PostgreSQL URL; may list several hosts with `target_session_attrs=read-write`.
    pub database_url: String,
    /// Where to listen when systemd does not pass a socket.
    pub listen: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served instead of `listen`, when
    /// set: a port that only the load balancer's health checks and the VPC reach.
    pub admin_listen: Option<SocketAddr>,
    /// Connection threads kept ready (more start as connections need them).
    pub workers: usize,
    /// Pooled database connections.
    pub pool_size: u32,
    /// GET lookups running at once; more are coalesced into the next query.
    pub lookup_concurrency: usize,
    /// PUT batches committing at once; more are coalesced into the next batch.
    pub write_concurrency: usize,
    /// What "today" means for birthdays.
    pub timezone: TimeZone,
    /// The IANA name of `timezone`, for logs.
    pub timezone_name: String,
    /// Total time a client gets to send a request head, then its body; and the longest
    /// one response write may block.
    pub client_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections open at once (lowered to fit the open-files limit at start).
    pub max_connections: usize,
    /// Bytes of one request head, and header fields in it (beyond either: 431).
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// After the database is found unreachable, how long requests fail fast before one
    /// is let through to try again.
    pub breaker_cooldown: Duration,
    /// After readiness last succeeded, how long `/readyz` stays 200 while no database is
    /// reachable: a failover's leaderless window must not take every host out of the
    /// load balancer.
    pub ready_grace: Duration,
    /// Longest a request waits for a pooled connection before answering 503.
    pub pool_timeout: Duration,
    /// Longest a connection attempt to one database host may take.
    pub connect_timeout: Duration,
    /// Server-side limit on one statement.
    pub statement_timeout: Duration,
    /// `DOB_DATABASE_CA_FILE`: PEM certificates the database server's certificate must
    /// chain to (required by `sslmode=verify-full`; see `dbtls`).
    pub database_ca_file: Option<PathBuf>,
    /// `DOB_ALLOW_INSECURE_DB=1`: accept an `sslmode` weaker than `verify-full` over TCP
    /// (local stacks and tests); without it such a URL is refused at start.
    pub allow_insecure_db: bool,
    /// After SIGTERM: how long readiness reports 503 while requests are still served,
    /// so the load balancer stops sending new ones before the process exits.
    pub drain: Duration,
    /// Cross-region write fencing (`DOB_FENCE_BUCKETS` and friends); `None` is off.
    pub fence: Option<crate::failover::fence::FenceConfig>,
    /// The DR region's receipt before a 204 (`DOB_DR_RECEIPT_SLOT` and friends); `None` is off.
    pub dr_receipt: Option<crate::api::dr_receipt::DrReceiptConfig>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl ApiConfig {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let database_url = get("DOB_DATABASE_URL").ok_or_else(|| {
            Error::config("DOB_DATABASE_URL", "is required (a postgresql:// URL)")
        })?;
        let database_url = with_password_file(&get, database_url)?;
        // Check the URL now, so a typo fails at start and not at the first request.
        let (pg_config, ssl_mode) = crate::db::dbtls::parse_url(&database_url, "DOB_DATABASE_URL")?;
        let database_ca_file = get("DOB_DATABASE_CA_FILE").map(PathBuf::from);
        let allow_insecure_db = flag(&get, "DOB_ALLOW_INSECURE_DB")?;
        check_db_security(
            ssl_mode,
            crate::db::dbtls::local_only(&pg_config),
            database_ca_file.is_some(),
            allow_insecure_db,
        )?;

        let listen_raw = get("DOB_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_raw.parse().map_err(|_| {
            Error::config(
                "DOB_LISTEN",
                format!("{listen_raw:?} is not an address like 127.0.0.1:8080"),
            )
        })?;

        let admin_listen = match get("DOB_ADMIN_LISTEN").filter(|v| !v.is_empty()) {
            None => None,
            Some(raw) => {
                let admin: SocketAddr = raw.parse().map_err(|_| {
                    Error::config(
                        "DOB_ADMIN_LISTEN",
                        format!("{raw:?} is not an address like 0.0.0.0:8090"),
                    )
                })?;
                if admin.port() != 0 && admin.port() == listen.port() {
                    return Err(Error::config(
                        "DOB_ADMIN_LISTEN",
                        format!(
                            "{admin} uses the port of DOB_LISTEN ({listen}): the admin endpoints need a port of their own"
                        ),
                    ));
                }
                Some(admin)
            }
        };

        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = parse_in_range(&get, "DOB_WORKERS", (cpus * 8).clamp(8, 64), 1, 1024)?;
        let pool_size =
            parse_in_range(&get, "DOB_POOL_SIZE", (cpus * 4).clamp(4, 32), 1, 1024)? as u32;
        // Lookups in flight at once, default the CPUs: more than the database has cores
        // only queue in its kernel. Lookups arriving meanwhile are folded into the next
        // query.
        let lookup_concurrency = parse_in_range(
            &get,
            "DOB_LOOKUP_CONCURRENCY",
            cpus.min(pool_size as usize),
            1,
            1024,
        )?;
        // PUT batches committing at once, default one: the WAL flush is serial, so a
        // second batch in flight only splits what one flush would carry into two
        // transactions. PUTs arriving meanwhile share the next batch's transaction and
        // flush (and, with the DR receipt, a batch's connection is free again while it
        // waits for the DR region, so the waits overlap anyway). On 2 CPUs one batch took
        // less CPU per PUT than two in every paired run: 8-30 % less with the DR receipt,
        // 21-27 % without.
        let write_concurrency = parse_in_range(&get, "DOB_WRITE_CONCURRENCY", 1, 1, 1024)?;

        let (timezone, timezone_name) = timezone(get("DOB_TIMEZONE"))?;

        let millis = |key, default| {
            parse_in_range(&get, key, default, 1, 3_600_000)
                .map(|ms| Duration::from_millis(ms as u64))
        };
        let pool_timeout = millis("DOB_POOL_TIMEOUT_MS", 1_000)?;
        let statement_timeout = millis("DOB_STATEMENT_TIMEOUT_MS", 5_000)?;
        let fence = crate::failover::fence::FenceConfig::from_lookup(&lookup)?;
        if let Some(fence) = &fence {
            // A PUT that starts under the lease must be able to finish under it (its
            // write's client-side deadline included), with two read rounds to spare.
            let needed = pool_timeout
                + crate::api::store::write_deadline(statement_timeout)
                + fence.interval * 2;
            if fence.lease < needed {
                return Err(Error::config(
                    "DOB_FENCE_LEASE_MS",
                    format!(
                        "{} ms is too short for this API: at least DOB_POOL_TIMEOUT_MS + DOB_STATEMENT_TIMEOUT_MS + 250 ms (a write's deadline) + 2 x DOB_FENCE_INTERVAL_MS = {} ms",
                        fence.lease.as_millis(),
                        needed.as_millis()
                    ),
                ));
            }
        }
        Ok(ApiConfig {
            database_url,
            listen,
            admin_listen,
            workers,
            pool_size,
            lookup_concurrency,
            write_concurrency,
            timezone,
            timezone_name,
            client_timeout: millis("DOB_CLIENT_TIMEOUT_MS", 10_000)?,
            idle_timeout: millis("DOB_IDLE_TIMEOUT_MS", 30_000)?,
            max_connections: parse_in_range(&get, "DOB_MAX_CONNECTIONS", 1024, 16, 1_000_000)?,
            max_header_bytes: parse_in_range(
                &get,
                "DOB_MAX_HEADER_BYTES",
                8 * 1024,
                1024,
                64 * 1024,
            )?,
            max_headers: parse_in_range(&get, "DOB_MAX_HEADERS", 64, 8, 256)?,
            breaker_cooldown: millis("DOB_BREAKER_COOLDOWN_MS", 500)?,
            // A leader election must fit in it: Patroni's TTL (20 s on the hosts) + loop_wait
            // (5) + 2 x retry_timeout (10), counted from the last readiness success, which
            // the load balancer asks for only every 10 s. Shorter, and an AZ loss takes the
            // surviving host out of the load balancer too while it waits for its promotion.
            ready_grace: Duration::from_millis(parse_in_range(
                &get,
                "DOB_READY_GRACE_MS",
                45_000,
                0,
                600_000,
            )? as u64),
            pool_timeout,
            connect_timeout: millis("DOB_CONNECT_TIMEOUT_MS", 2_000)?,
            statement_timeout,
            database_ca_file,
            allow_insecure_db,
            drain: Duration::from_secs(
                parse_in_range(&get, "DOB_DRAIN_SECONDS", 5, 0, 3_600)? as u64
            ),
            fence,
            dr_receipt: crate::api::dr_receipt::DrReceiptConfig::from_lookup(&get)?,
        })
    }
}

/// Reads a systemd-style environment file (`KEY=VALUE` lines, `#` comments, values
/// optionally in single or double quotes), as the units read `/etc/dob/dob.env`. For
/// tools an operator runs by hand, so they see what the services see.
pub fn read_env_file(path: &std::path::Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(parse_env_file(&text))
}

pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let unquoted = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|(open, close)| {
                    value
                        .strip_prefix(*open)
                        .and_then(|v| v.strip_suffix(*close))
                })
                .unwrap_or(value);
            Some((key.trim().to_owned(), unquoted.to_owned()))
        })
        .collect()
}

/// Server-side encryption requested for backup objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3: `x-amz-server-side-encryption: AES256`.
    Aes256,
    /// SSE-KMS with the given key, or the account's default `aws/s3` key.
    Kms { key_id: Option<String> },
}

impl Sse {
    /// The value S3 uses in `x-amz-server-side-encryption`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Sse::Aes256 => "AES256",
            Sse::Kms { .. } => "aws:kms",
        }
    }
}

/// Where backups live.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty.
    pub prefix: String,
    pub region: String,
    /// A non-AWS endpoint (`http://127.0.0.1:9000`), addressed path-style.
    pub endpoint: Option<String>,
    pub sse: Option<Sse>,
}

/// Smallest part S3 accepts (except the last one).
pub const MIN_PART_SIZE_MB: usize = 5;
pub const DEFAULT_PART_SIZE_MB: usize = 8;
pub const DEFAULT_BACKUP_KEEP: usize = 7;

impl S3Config {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let bucket = get("DOB_S3_BUCKET")
            .ok_or_else(|| Error::config("DOB_S3_BUCKET", "is required (the bucket name)"))?;
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(Error::config(
                "DOB_S3_BUCKET",
                format!("{bucket:?} is not a valid bucket name (3 to 63 of a-z 0-9 . -)"),
            ));
        }
        let prefix = get("DOB_S3_PREFIX")
            .unwrap_or_else(|| "dob".to_owned())
            .trim_matches('/')
            .to_owned();
        let region = get("DOB_S3_REGION")
            .or_else(|| get("AWS_REGION"))
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = get("DOB_S3_ENDPOINT");
        if let Some(endpoint) = &endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(Error::config(
                    "DOB_S3_ENDPOINT",
                    format!("{endpoint:?} must start with http:// or https://"),
                ));
            }
        }
        let kms_key_id = get("DOB_S3_KMS_KEY_ID");
        let sse = match get("DOB_S3_SSE").as_deref() {
            None | Some("none") => None,
            Some("AES256") => Some(Sse::Aes256),
            Some("aws:kms") => Some(Sse::Kms {
                key_id: kms_key_id.clone(),
            }),
            Some(other) => {
                return Err(Error::config(
                    "DOB_S3_SSE",
                    format!("{other:?} is not one of AES256, aws:kms, none"),
                ))
            }
        };
        if kms_key_id.is_some() && !matches!(sse, Some(Sse::Kms { .. })) {
            return Err(Error::config(
                "DOB_S3_KMS_KEY_ID",
                "is set but DOB_S3_SSE is not aws:kms",
            ));
        }
        Ok(S3Config {
            bucket,
            prefix,
            region,
            endpoint,
            sse,
        })
    }
}

/// Everything `dob-backup` needs.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub database_url: String,
    pub s3: S3Config,
    /// Complete backups kept by retention (at least 1); `None` (`DOB_BACKUP_KEEP=0`):
    /// dob-backup deletes nothing, the bucket's lifecycle and Object Lock retire backups
    /// (the hosts' role may not delete them).
    pub keep: Option<usize>,
    /// Bytes per multipart part: also the one buffer the dump streams through.
    pub part_size: usize,
}

impl BackupConfig {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let database_url = required_url(&get, "DOB_DATABASE_URL")?;
        let s3 = S3Config::from_lookup(&lookup)?;
        let keep = match parse_in_range(&get, "DOB_BACKUP_KEEP", DEFAULT_BACKUP_KEEP, 0, 100_000)? {
            0 => None,
            keep => Some(keep),
        };
        let part_size_mb = parse_in_range(
            &get,
            "DOB_BACKUP_PART_SIZE_MB",
            DEFAULT_PART_SIZE_MB,
            MIN_PART_SIZE_MB,
            1024,
        )?;
        Ok(BackupConfig {
            database_url,
            s3,
            keep,
            part_size: part_size_mb * 1024 * 1024,
        })
    }
}

/// Everything `dob-restore` needs; the database URL is only required to restore.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    pub database_url: Option<String>,
    /// `None` for a point-in-time recovery: pgBackRest has its own repository settings.
    pub s3: Option<S3Config>,
    /// `DOB_TIMEZONE`: "today" for the canary greeting, as the API computes it.
    pub timezone: TimeZone,
}

impl RestoreConfig {
    /// `with_s3`: the run reads dob-backup's bucket (everything but `--to-time`).
    pub fn from_env(with_s3: bool) -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok(), with_s3)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, with_s3: bool) -> Result<Self> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let database_url = match get("DOB_DATABASE_URL") {
            Some(_) => Some(required_url(&get, "DOB_DATABASE_URL")?),
            None => None,
        };
        Ok(RestoreConfig {
            database_url,
            s3: if with_s3 {
                Some(S3Config::from_lookup(&lookup)?)
            } else {
                None
            },
            timezone: timezone(get("DOB_TIMEZONE"))?.0,
        })
    }
}

/// A PostgreSQL URL from `key`, checked (a typo fails before any work starts).
pub fn required_url(get: &impl Fn(&str) -> Option<String>, key: &str) -> Result<String> {
    let url = get(key).ok_or_else(|| Error::config(key, "is required (a postgresql:// URL)"))?;
    check_database_url(key, &url)?;
    with_password_file(get, url)
}

/// `url` with the password of `DOB_DATABASE_PASSWORD_FILE` (its first line) when that is
/// set and the URL names no password: the hosts keep the URL in /etc/dob/dob.env, which
/// holds no secret, and the password in a file of its own.
pub fn with_password_file(get: &impl Fn(&str) -> Option<String>, url: String) -> Result<String> {
    const KEY: &str = "DOB_DATABASE_PASSWORD_FILE";
    let Some(path) = get(KEY).filter(|v| !v.trim().is_empty()) else {
        return Ok(url);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::config(KEY, format!("{path} cannot be read: {e}")))?;
    let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if password.is_empty() {
        return Err(Error::config(
            KEY,
            format!("{path} holds no password on its first line"),
        ));
    }
    Ok(crate::db::conninfo::with_password(&url, password))
}

/// dob-api's rule for its database connections: over TCP, `sslmode=verify-full` with a
/// CA file, unless `DOB_ALLOW_INSECURE_DB=1` accepts less. A socket-only URL needs no
/// TLS (nothing crosses a network).
pub fn check_db_security(
    ssl_mode: crate::db::dbtls::SslMode,
    local_only: bool,
    has_ca_file: bool,
    allow_insecure_db: bool,
) -> Result<()> {
    use crate::db::dbtls::SslMode;
    if ssl_mode == SslMode::VerifyFull && !has_ca_file {
        return Err(Error::config(
            "DOB_DATABASE_CA_FILE",
            "is required by sslmode=verify-full in DOB_DATABASE_URL: the PEM certificate of the CA that signed the database servers' certificates",
        ));
    }
    if ssl_mode == SslMode::VerifyFull || local_only || allow_insecure_db {
        return Ok(());
    }
    Err(Error::config(
        "DOB_DATABASE_URL",
        format!(
            "sslmode={} does not verify the database server, so anyone on the path could read or change what is stored: use sslmode=verify-full with DOB_DATABASE_CA_FILE, or set DOB_ALLOW_INSECURE_DB=1 to accept it (local stacks and tests only)",
            ssl_mode.as_str()
        ),
    ))
}

/// A yes/no variable: `1`/`true`/`yes` or `0`/`false`/`no` (unset: no); anything else is
/// an error, never a guess.
pub fn flag(get: &impl Fn(&str) -> Option<String>, key: &str) -> Result<bool> {
    match get(key).as_deref().map(str::trim) {
        None => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some("0" | "false" | "no") => Ok(false),
        Some(other) => Err(Error::config(
            key,
            format!("{other:?} is not 1 or 0 (true/false, yes/no)"),
        )),
    }
}

pub fn check_database_url(key: &str, url: &str) -> Result<()> {
    let config = crate::db::conninfo::for_driver(url)
        .parse::<postgres::Config>()
        .map_err(|e| Error::config(key, format!("is not a valid PostgreSQL URL: {e}")))?;
    if config.get_dbname().is_none() {
        return Err(Error::config(key, "names no database"));
    }
    Ok(())
}

/// `DOB_TIMEZONE` (default UTC): the zone that defines "today" for birthdays, for every
/// binary that computes a greeting. An unknown name is an error, never a silent UTC.
pub fn timezone(value: Option<String>) -> Result<(TimeZone, String)> {
    let name = value.unwrap_or_else(|| "UTC".to_owned());
    if name == "UTC" {
        return Ok((TimeZone::UTC, name));
    }
    match TimeZone::get(&name) {
        Ok(zone) => Ok((zone, name)),
        Err(e) => Err(Error::config(
            "DOB_TIMEZONE",
            format!("{name:?} is not a known IANA time zone: {e}"),
        )),
    }
}

/// A duration in milliseconds from `key`, within `min..=max`, else `default` when unset.
pub(crate) fn millis_in_range(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<Duration> {
    parse_in_range(get, key, default as usize, min as usize, max as usize)
        .map(|ms| Duration::from_millis(ms as u64))
}

fn parse_in_range(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize> {
    let Some(raw) = get(key) else {
        return Ok(default);
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::config(
            key,
            format!("{raw:?} is not a whole number from {min} to {max}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The configuration of `pairs`, with the plaintext test URL accepted unless `pairs`
    /// say otherwise.
    fn config(pairs: &[(&str, &str)]) -> Result<ApiConfig> {
        let mut all = vec![("DOB_ALLOW_INSECURE_DB", "1")];
        all.extend_from_slice(pairs);
        strict_config(&all)
    }

    fn strict_config(pairs: &[(&str, &str)]) -> Result<ApiConfig> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ApiConfig::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn an_unverified_database_connection_is_refused_unless_allowed() {
        for url in [
            "postgresql://dob@10.0.0.1/dob",
            "postgresql://dob@10.0.0.1/dob?sslmode=require",
            "postgresql://dob@10.0.0.1/dob?sslmode=disable",
        ] {
            let err = strict_config(&[("DOB_DATABASE_URL", url)]).unwrap_err();
            assert!(err.is_config(), "{url}");
            let text = err.to_string();
            assert!(
                text.contains("verify-full") && text.contains("DOB_ALLOW_INSECURE_DB=1"),
                "{url}: {text}"
            );
            // Even with a CA file: only verify-full promises the check on every path.
            assert!(strict_config(&[
                ("DOB_DATABASE_URL", url),
                ("DOB_DATABASE_CA_FILE", "/etc/dob/tls/ca.pem")
            ])
            .is_err());
            let allowed =
                strict_config(&[("DOB_DATABASE_URL", url), ("DOB_ALLOW_INSECURE_DB", "1")]);
            assert!(allowed.unwrap().allow_insecure_db, "{url}");
        }
        let verified = "postgresql://dob@10.0.0.1/dob?sslmode=verify-full";
        let err = strict_config(&[("DOB_DATABASE_URL", verified)]).unwrap_err();
        assert!(err.to_string().contains("DOB_DATABASE_CA_FILE"), "{err}");
        let ok = strict_config(&[
            ("DOB_DATABASE_URL", verified),
            ("DOB_DATABASE_CA_FILE", "/etc/dob/tls/ca.pem"),
        ])
        .unwrap();
        assert!(!ok.allow_insecure_db);
        // A Unix socket crosses no network.
        strict_config(&[("DOB_DATABASE_URL", "host=/var/run/postgresql dbname=dob")]).unwrap();
        let err = strict_config(&[(URL.0, URL.1), ("DOB_ALLOW_INSECURE_DB", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("DOB_ALLOW_INSECURE_DB"), "{err}");
    }

    const URL: (&str, &str) = ("DOB_DATABASE_URL", "postgresql://dob@127.0.0.1:5432/dob");

    #[test]
    fn the_database_password_may_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("dob-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app-password");
        std::fs::write(&file, "s3cret\nignored\n").unwrap();
        let path = file.to_str().unwrap();
        let c = config(&[URL, ("DOB_DATABASE_PASSWORD_FILE", path)]).unwrap();
        let parsed: postgres::Config = c.database_url.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"s3cret"[..]));
        std::fs::write(&file, "\n").unwrap();
        let err = config(&[URL, ("DOB_DATABASE_PASSWORD_FILE", path)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no password"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        let err = config(&[URL, ("DOB_DATABASE_PASSWORD_FILE", "/nonexistent/pw")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DOB_DATABASE_PASSWORD_FILE"), "{err}");
    }

    #[test]
    fn the_fence_lease_must_outlast_the_longest_write() {
        let fence = [
            URL,
            ("DOB_FENCE_BUCKETS", "w@eu-west-1,d@eu-central-1"),
            ("DOB_REGION", "eu-west-1"),
            ("DOB_FENCE_HOME_REGION", "eu-west-1"),
            ("DOB_FENCE_LEASE_MS", "7000"),
        ];
        // 1 s pool wait + 5.25 s write deadline + 2 x 2 s reads = 10.25 s > 7 s.
        let err = config(&fence).unwrap_err().to_string();
        assert!(
            err.contains("DOB_FENCE_LEASE_MS") && err.contains("10250"),
            "{err}"
        );
        let mut shorter = fence.to_vec();
        shorter.push(("DOB_STATEMENT_TIMEOUT_MS", "1750"));
        assert!(config(&shorter).unwrap().fence.is_some());
    }

    #[test]
    fn env_files_are_read_as_systemd_reads_them() {
        let parsed = parse_env_file(
            "# comment\n\nDOB_REGION=eu-west-1\nexport DOB_S3_PREFIX=\"dob\"\n  DOB_X = 'a b'\nnot a pair\n",
        );
        assert_eq!(
            parsed,
            vec![
                ("DOB_REGION".to_owned(), "eu-west-1".to_owned()),
                ("DOB_S3_PREFIX".to_owned(), "dob".to_owned()),
                ("DOB_X".to_owned(), "a b".to_owned()),
            ]
        );
    }

    #[test]
    fn defaults_apply_when_only_the_url_is_set() {
        let c = config(&[URL]).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.admin_listen, None);
        assert_eq!(c.timezone_name, "UTC");
        assert!(c.workers >= 8);
        assert!(c.pool_size as usize <= c.workers);
        // One write batch at a time (docs/configuration.md); lookups up to the CPUs.
        assert_eq!(c.write_concurrency, 1);
        assert!(c.lookup_concurrency >= 1 && c.lookup_concurrency <= c.pool_size as usize);
        let c = config(&[URL, ("DOB_WRITE_CONCURRENCY", "4")]).unwrap();
        assert_eq!(c.write_concurrency, 4);
    }

    #[test]
    fn the_admin_endpoints_take_a_port_of_their_own() {
        let c = config(&[URL, ("DOB_ADMIN_LISTEN", "0.0.0.0:8090")]).unwrap();
        assert_eq!(c.admin_listen, Some("0.0.0.0:8090".parse().unwrap()));
        // Port 0 on both (tests): the kernel picks two different ports.
        let c = config(&[
            URL,
            ("DOB_LISTEN", "127.0.0.1:0"),
            ("DOB_ADMIN_LISTEN", "127.0.0.1:0"),
        ])
        .unwrap();
        assert!(c.admin_listen.is_some());
    }

    #[test]
    fn the_database_url_is_required_and_checked() {
        let err = config(&[]).unwrap_err().to_string();
        assert!(err.contains("DOB_DATABASE_URL"), "{err}");
        let err = config(&[("DOB_DATABASE_URL", "postgresql://h:notaport/db")]).unwrap_err();
        assert!(err.to_string().contains("DOB_DATABASE_URL"), "{err}");
    }

    #[test]
    fn a_multi_host_read_write_url_is_accepted() {
        let url =
            "postgresql://dob@10.0.1.10:5432,10.0.2.10:5432/dob?target_session_attrs=read-write";
        assert!(config(&[("DOB_DATABASE_URL", url)]).is_ok());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (key, value) in [
            ("DOB_LISTEN", "localhost"),
            ("DOB_WORKERS", "0"),
            ("DOB_POOL_SIZE", "many"),
            ("DOB_TIMEZONE", "Mars/Olympus_Mons"),
            ("DOB_CLIENT_TIMEOUT_MS", "-1"),
            ("DOB_IDLE_TIMEOUT_MS", "0"),
            ("DOB_MAX_CONNECTIONS", "1"),
            ("DOB_MAX_HEADER_BYTES", "100000000"),
            ("DOB_MAX_HEADERS", "lots"),
            ("DOB_BREAKER_COOLDOWN_MS", "soon"),
            ("DOB_READY_GRACE_MS", "-5"),
            ("DOB_LOOKUP_CONCURRENCY", "0"),
            ("DOB_WRITE_CONCURRENCY", "0"),
            ("DOB_WRITE_CONCURRENCY", "100000"),
            ("DOB_ADMIN_LISTEN", "admin"),
            ("DOB_ADMIN_LISTEN", "127.0.0.1:8080"),
        ] {
            let err = config(&[URL, (key, value)]).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    fn backup(pairs: &[(&str, &str)]) -> Result<BackupConfig> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BackupConfig::from_lookup(|k| env.get(k).cloned())
    }

    const BUCKET: (&str, &str) = ("DOB_S3_BUCKET", "dob-backups");

    #[test]
    fn backup_defaults_need_only_url_and_bucket() {
        let c = backup(&[URL, BUCKET]).unwrap();
        assert_eq!(c.s3.prefix, "dob");
        assert_eq!(c.keep, Some(DEFAULT_BACKUP_KEEP));
        let c = backup(&[URL, BUCKET, ("DOB_BACKUP_KEEP", "0")]).unwrap();
        assert_eq!(c.keep, None, "0: retention is the bucket's");
        assert_eq!(c.part_size, DEFAULT_PART_SIZE_MB * 1024 * 1024);
        assert_eq!(c.s3.sse, None);
    }

    #[test]
    fn kms_encryption_takes_its_key_and_aes_refuses_one() {
        let c = backup(&[
            URL,
            BUCKET,
            ("DOB_S3_SSE", "aws:kms"),
            ("DOB_S3_KMS_KEY_ID", "alias/dob"),
        ])
        .unwrap();
        assert_eq!(
            c.s3.sse,
            Some(Sse::Kms {
                key_id: Some("alias/dob".into())
            })
        );
        let err = backup(&[
            URL,
            BUCKET,
            ("DOB_S3_SSE", "AES256"),
            ("DOB_S3_KMS_KEY_ID", "k"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("DOB_S3_KMS_KEY_ID"), "{err}");
    }

    #[test]
    fn bad_backup_values_name_the_variable() {
        for (key, value) in [
            ("DOB_S3_BUCKET", "Not_A_Bucket"),
            ("DOB_S3_SSE", "rot13"),
            ("DOB_S3_ENDPOINT", "127.0.0.1:9000"),
            ("DOB_BACKUP_KEEP", "-1"),
            ("DOB_BACKUP_KEEP", "seven"),
            ("DOB_BACKUP_PART_SIZE_MB", "1"),
        ] {
            let err = backup(&[URL, BUCKET, (key, value)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let err = backup(&[URL]).unwrap_err().to_string();
        assert!(err.contains("DOB_S3_BUCKET"), "{err}");
    }

    #[test]
    fn an_iana_timezone_is_loaded() {
        let c = config(&[URL, ("DOB_TIMEZONE", "Europe/Dublin")]).unwrap();
        assert_eq!(c.timezone.iana_name(), Some("Europe/Dublin"));
    }
}
