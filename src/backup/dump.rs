//! One backup: `pg_dump --format=custom` streamed into an S3 multipart upload, hashed
//! and counted on the way, checked with HEAD, then described by a manifest written last.
//!
//! Memory stays bounded whatever the database size: a reader thread fills one part
//! buffer from pg_dump's stdout (hashing as it goes) while an uploader thread sends the
//! previous one, and the two hand buffers back and forth (two buffers in all).
//!
//! Row counts come from the same snapshot as the dump: this process opens a REPEATABLE
//! READ transaction, exports its snapshot, starts `pg_dump --snapshot=<it>`, counts
//! rows in that transaction while the dump streams, and keeps the transaction open
//! until pg_dump exits.
//!
//! Any failure (pg_dump exiting non-zero or killed, S3 errors, a short stream) aborts
//! the multipart upload and writes no manifest: no complete-looking backup is left.

use crate::backup::catalog::{self, RetentionReport};
use crate::backup::manifest::{
    hex, BackupId, Canary, Lineage, Manifest, Source, TableCount, MANIFEST_FORMAT,
};
use crate::config::BackupConfig;
use crate::db::conninfo;
use crate::db::pgbin::PgBin;
use crate::s3::ObjectStore;
use crate::{Error, Result};
use jiff::Timestamp;
use postgres::Transaction;
use s3::serde_types::Part;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::process::{ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: u32 = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub manifest: Manifest,
    pub duration_seconds: f64,
    pub throughput_mb_per_s: f64,
    pub retention: RetentionReport,
}

/// Takes one backup and applies retention. `Err` means no new complete backup exists,
/// except for a retention failure, which is reported after the backup is stored.
pub fn run(config: &BackupConfig) -> Result<BackupReport> {
    let started = Instant::now();
    let store = ObjectStore::connect(&config.s3)?;
    let pg_dump = PgBin::locate()?.tool("pg_dump");
    let pg_dump_version = tool_version(&pg_dump)?;

    let created = Timestamp::now();
    let id = BackupId::new(created, random_u32());
    let root = store.root();
    let dump_key = id.dump_key(&root);

    let (pg_config, tls) =
        crate::db::dbtls::client_config(&config.database_url, "DOB_DATABASE_URL")?;
    let mut client = pg_config.connect(tls).map_err(|e| {
        Error::db(
            format!("connecting to {}", conninfo::redacted(&config.database_url)),
            e,
        )
    })?;
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| Error::db("starting the snapshot transaction", e))?;
    let server = server_facts(&mut tx)?;
    log::info!(
        "backup {id}: database {} on PostgreSQL {} ({}), into s3://{}/{dump_key}",
        server.database,
        server.version,
        server.role,
        store.bucket_name()
    );

    let upload_id = store.start_multipart(&dump_key)?;
    let streamed = stream_dump(
        &store,
        &dump_key,
        &upload_id,
        config,
        &pg_dump,
        &server.snapshot,
        &mut tx,
    );
    let (streamed, contents) = match streamed {
        Ok(ok) => ok,
        Err(err) => {
            abort_upload(&store, &dump_key, &upload_id);
            return Err(err);
        }
    };
    // pg_dump has exited: the snapshot is no longer needed.
    tx.commit()
        .map_err(|e| Error::db("closing the snapshot transaction", e))?;
    drop(client);

    if let Err(err) = store.complete_multipart(&dump_key, &upload_id, streamed.parts) {
        abort_upload(&store, &dump_key, &upload_id);
        return Err(err);
    }
    let encryption = match verify_upload(&store, &dump_key, streamed.bytes) {
        Ok(encryption) => encryption,
        Err(err) => {
            // Without a manifest it is not a backup; remove it now rather than at
            // the next retention.
            if let Err(e) = store.delete(&dump_key) {
                log::warn!(
                    "could not delete the unverified dump {dump_key}: {}",
                    e.chain()
                );
            }
            return Err(err);
        }
    };

    let finished = Timestamp::now();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        id: id.clone(),
        created_at: created.to_string(),
        finished_at: finished.to_string(),
        dump_key: dump_key.clone(),
        size_bytes: streamed.bytes,
        sha256: streamed.sha256,
        parts: streamed.part_count,
        database: server.database,
        encoding: server.encoding,
        server_version: server.version,
        server_version_num: server.version_num,
        pg_dump_version,
        source: Source {
            host: hostname(),
            server_address: server.address,
            role: server.role,
            lineage: Some(server.lineage),
        },
        encryption,
        tables: contents.tables,
        canary: contents.canary,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    // Written last: from this moment the backup is complete.
    store.put_small(
        &id.manifest_key(&root),
        &manifest.to_json(),
        "application/json",
    )?;
    log::info!(
        "backup {id} complete: {} bytes in {} part(s), sha256 {}",
        manifest.size_bytes,
        manifest.parts,
        manifest.sha256
    );

    let retention = match config.keep {
        Some(keep) => catalog::apply_retention(&store, keep).map_err(|e| {
            Error::with_source(
                format!("backup {id} is stored and complete, but retention failed"),
                e,
            )
        })?,
        None => {
            log::info!(
                "retention: none by dob-backup (DOB_BACKUP_KEEP=0); the bucket's lifecycle retires backups"
            );
            RetentionReport::default()
        }
    };
    let duration = started.elapsed().as_secs_f64();
    Ok(BackupReport {
        throughput_mb_per_s: manifest.size_bytes as f64 / 1e6 / duration.max(1e-6),
        manifest,
        duration_seconds: duration,
        retention,
    })
}

struct ServerFacts {
    snapshot: String,
    database: String,
    encoding: String,
    version: String,
    version_num: i32,
    role: String,
    address: Option<String>,
    lineage: Lineage,
}

/// The server's cluster, timeline and WAL position (see [`Lineage`]). The timeline of a
/// primary is its current WAL file's: the checkpoint's lags a promotion until the next
/// checkpoint. A replica reports the newer of its last restartpoint's and its WAL
/// receiver's.
pub const LINEAGE_SQL: &str = "SELECT (SELECT system_identifier::text FROM pg_control_system()),
        CASE WHEN pg_is_in_recovery()
             THEN greatest((SELECT timeline_id FROM pg_control_checkpoint()),
                           coalesce((SELECT received_tli FROM pg_stat_wal_receiver), 0))
             ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
        END,
        (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
              ELSE pg_current_wal_lsn() END)::text";

pub fn lineage(client: &mut impl postgres::GenericClient) -> Result<Lineage> {
    let row = client
        .query_one(LINEAGE_SQL, &[])
        .map_err(|e| Error::db("reading the server's system identifier and timeline", e))?;
    Ok(Lineage {
        system_identifier: row.get(0),
        timeline: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
        lsn: row.get::<_, Option<String>>(2).unwrap_or_default(),
    })
}

fn server_facts(tx: &mut Transaction<'_>) -> Result<ServerFacts> {
    let row = tx
        .query_one(
            "SELECT pg_export_snapshot(),
                    current_database()::text,
                    pg_encoding_to_char(d.encoding)::text,
                    current_setting('server_version'),
                    current_setting('server_version_num')::int,
                    pg_is_in_recovery(),
                    host(inet_server_addr()) || ':' || inet_server_port()
               FROM pg_database d
              WHERE d.datname = current_database()",
            &[],
        )
        .map_err(|e| Error::db("exporting the snapshot and reading server facts", e))?;
    // In the snapshot's transaction: the position is the snapshot's, give or take
    // commits in flight.
    let lineage = lineage(tx)?;
    Ok(ServerFacts {
        lineage,
        snapshot: row.get(0),
        database: row.get(1),
        encoding: row.get(2),
        version: row.get(3),
        version_num: row.get(4),
        role: if row.get::<_, bool>(5) {
            "replica".into()
        } else {
            "primary".into()
        },
        address: row.get(6),
    })
}

/// What the snapshot holds, for the manifest.
pub struct SnapshotContents {
    pub tables: Vec<TableCount>,
    pub canary: Option<Canary>,
}

/// Rows per user table (ordinary tables outside system schemas, not owned by an
/// extension), and one known user, read in the caller's transaction.
pub fn snapshot_contents(client: &mut impl postgres::GenericClient) -> Result<SnapshotContents> {
    let tables = user_tables(client)?;
    let mut counted = Vec::with_capacity(tables.len());
    for (schema, table) in tables {
        let rows = count_rows(client, &schema, &table)?;
        counted.push(TableCount {
            schema,
            table,
            rows,
        });
    }
    let has_users = counted
        .iter()
        .any(|t| t.schema == "public" && t.table == "users");
    let canary = if has_users {
        client
            .query_opt(
                "SELECT username, date_of_birth::text FROM public.users ORDER BY username LIMIT 1",
                &[],
            )
            .map_err(|e| Error::db("reading a canary user", e))?
            .map(|row| Canary {
                username: row.get(0),
                date_of_birth: row.get(1),
            })
    } else {
        None
    };
    Ok(SnapshotContents {
        tables: counted,
        canary,
    })
}

pub fn user_tables(client: &mut impl postgres::GenericClient) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind = 'r'
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_%'
                AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_class'::regclass
                                   AND d.objid = c.oid AND d.deptype = 'e')
              ORDER BY 1, 2",
            &[],
        )
        .map_err(|e| Error::db("listing user tables", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub fn count_rows(
    client: &mut impl postgres::GenericClient,
    schema: &str,
    table: &str,
) -> Result<i64> {
    let sql = format!(
        "SELECT count(*) FROM {}.{}",
        quote_ident(schema),
        quote_ident(table)
    );
    client
        .query_one(&sql, &[])
        .map(|row| row.get(0))
        .map_err(|e| Error::db(format!("counting rows in {schema}.{table}"), e))
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

struct Streamed {
    bytes: u64,
    sha256: String,
    parts: Vec<Part>,
    part_count: u32,
}

/// Runs pg_dump into the upload; returns once pg_dump has exited successfully and
/// every byte it wrote is uploaded as a part.
fn stream_dump(
    store: &ObjectStore,
    key: &str,
    upload_id: &str,
    config: &BackupConfig,
    pg_dump: &std::path::Path,
    snapshot: &str,
    tx: &mut Transaction<'_>,
) -> Result<(Streamed, SnapshotContents)> {
    let (url, password) = conninfo::split_password(&config.database_url);
    let mut cmd = Command::new(pg_dump);
    cmd.arg("--format=custom")
        .arg(format!("--snapshot={snapshot}"))
        .arg("--no-password")
        .arg(format!("--dbname={url}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    crate::db::dbtls::configure_libpq(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", pg_dump.display()), e))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = collect_stderr(child.stderr.take().expect("piped stderr"));
    let part_size = config.part_size;

    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(0);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    let outcome = std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_parts(stdout, part_size, full_tx, empty_rx));
        let uploader = scope.spawn(move || {
            let mut parts = Vec::new();
            for buffer in full_rx {
                let number = parts.len() as u32 + 1;
                if number > MAX_PARTS {
                    return Err(Error::other(format!(
                        "the dump needs more than {MAX_PARTS} parts of {} MiB: raise DOB_BACKUP_PART_SIZE_MB",
                        part_size / (1024 * 1024)
                    )));
                }
                parts.push(store.upload_part(key, upload_id, number, &buffer)?);
                log::debug!("uploaded part {number} ({} bytes)", buffer.len());
                // The reader may have finished; then the buffer is simply dropped.
                let _ = empty_tx.send(buffer);
            }
            Ok(parts)
        });
        let contents = snapshot_contents(tx);
        if contents.is_err() {
            let _ = child.kill();
        }
        let uploaded = uploader.join().expect("uploader thread panicked");
        if uploaded.is_err() {
            // Unblock the reader: pg_dump may be slow to fill the next part.
            let _ = child.kill();
        }
        let read = reader.join().expect("reader thread panicked");
        (contents, uploaded, read)
    });
    let status = child
        .wait()
        .map_err(|e| Error::io("waiting for pg_dump", e))?;
    let stderr = stderr.join().unwrap_or_default();
    let (contents, uploaded, read) = outcome;
    if !status.success() {
        let detail = if stderr.trim().is_empty() {
            "no message".to_owned()
        } else {
            stderr.trim().to_owned()
        };
        // An upload or count failure makes us kill pg_dump: report that cause.
        uploaded?;
        contents?;
        return Err(Error::process(
            format!("pg_dump failed ({status}); the upload was aborted"),
            detail,
        ));
    }
    let parts = uploaded?;
    let contents = contents?;
    let (bytes, digest) = read.map_err(|e| Error::io("reading pg_dump's output", e))?;
    if bytes == 0 {
        return Err(Error::process("pg_dump wrote nothing", stderr));
    }
    Ok((
        Streamed {
            bytes,
            sha256: hex(&digest),
            part_count: parts.len() as u32,
            parts,
        },
        contents,
    ))
}

/// Fills part-sized buffers from `source`, hashing every byte, and hands each to the
/// uploader. Buffers come back through `empty` for reuse, so at most two exist.
fn read_parts(
    mut source: impl Read,
    part_size: usize,
    full: mpsc::SyncSender<Vec<u8>>,
    empty: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let mut buffer = empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(part_size));
        buffer.clear();
        (&mut source)
            .take(part_size as u64)
            .read_to_end(&mut buffer)?;
        if buffer.is_empty() {
            // End of stream on a part boundary (or no output at all): no empty part.
            break;
        }
        hasher.update(&buffer);
        total += buffer.len() as u64;
        let last = buffer.len() < part_size;
        if full.send(buffer).is_err() {
            return Err(std::io::Error::other("the upload stopped"));
        }
        if last {
            break;
        }
    }
    Ok((total, hasher.finalize().into()))
}

/// HEAD the uploaded object: its size must be what was streamed, and it must be
/// encrypted as asked. Returns the encryption S3 reports.
fn verify_upload(store: &ObjectStore, key: &str, bytes: u64) -> Result<Option<String>> {
    let head = store.head(key)?.ok_or_else(|| {
        Error::refused(
            format!("verifying {key}"),
            "S3 says the object does not exist after its upload completed",
        )
    })?;
    if head.size != bytes {
        return Err(Error::refused(
            format!("verifying {key}"),
            format!("S3 holds {} bytes, {bytes} were uploaded", head.size),
        ));
    }
    if let Some(sse) = store.sse() {
        if head.encryption.as_deref() != Some(sse.algorithm()) {
            return Err(Error::refused(
                format!("verifying {key}"),
                format!(
                    "DOB_S3_SSE={} was asked, S3 reports encryption {:?}",
                    sse.algorithm(),
                    head.encryption
                ),
            ));
        }
        if let (crate::config::Sse::Kms { key_id: Some(want) }, Some(got)) = (sse, &head.kms_key_id)
        {
            // S3 reports the key's ARN; the configuration may name it by id or ARN
            // (an alias cannot be compared here).
            if !want.starts_with("alias/") && !got.ends_with(want.as_str()) {
                return Err(Error::refused(
                    format!("verifying {key}"),
                    format!("encrypted with KMS key {got}, not {want}"),
                ));
            }
        }
    }
    Ok(head.encryption)
}

fn abort_upload(store: &ObjectStore, key: &str, upload_id: &str) {
    match store.abort_multipart(key, upload_id) {
        Ok(()) => log::info!("aborted the multipart upload of {key}"),
        // S3 may be the thing that is down; retention aborts it later.
        Err(e) => log::warn!(
            "could not abort the multipart upload of {key} (retention will): {}",
            e.chain()
        ),
    }
}

/// The tail of a child's stderr, read on a thread so the child never blocks on it.
pub fn collect_stderr(stderr: ChildStderr) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut reader = std::io::BufReader::new(stderr);
        let mut line = String::new();
        while matches!(std::io::BufRead::read_line(&mut reader, &mut line), Ok(n) if n > 0) {
            text.push_str(&line);
            line.clear();
            if text.len() > 16 * 1024 {
                let cut = text.len() - 8 * 1024;
                let cut = (cut..text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(text.len());
                text.drain(..cut);
            }
        }
        text
    })
}

/// `pg_dump (PostgreSQL) 15.8`, say.
pub fn tool_version(tool: &std::path::Path) -> Result<String> {
    let output = Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {} --version", tool.display()), e))?;
    if !output.status.success() {
        return Err(Error::process(
            format!("{} --version failed", tool.display()),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success
    // when the name fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Four random bytes from the kernel (for backup ids), or time-derived if that fails.
pub fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    let from_kernel =
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    match from_kernel {
        Ok(()) => u32::from_le_bytes(bytes),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .subsec_nanos();
            nanos ^ std::process::id().rotate_left(16)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], part_size: usize) -> (Vec<Vec<u8>>, u64, [u8; 32]) {
        let (full_tx, full_rx) = mpsc::sync_channel(0);
        let (_empty_tx, empty_rx) = mpsc::channel();
        let data = data.to_vec();
        let reader =
            std::thread::spawn(move || read_parts(&data[..], part_size, full_tx, empty_rx));
        let parts: Vec<Vec<u8>> = full_rx.iter().collect();
        let (total, digest) = reader.join().unwrap().unwrap();
        (parts, total, digest)
    }

    #[test]
    fn a_stream_is_cut_into_full_parts_and_a_last_short_one() {
        let data: Vec<u8> = (0..25u8).collect();
        let (parts, total, digest) = read_all(&data, 10);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        assert_eq!(parts.concat(), data);
        assert_eq!(total, 25);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&data)));
    }

    #[test]
    fn a_stream_ending_on_a_part_boundary_sends_no_empty_part() {
        let data = vec![7u8; 20];
        let (parts, total, _) = read_all(&data, 10);
        assert_eq!(parts.len(), 2);
        assert_eq!(total, 20);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
