//! dob-backup and dob-restore against a real PostgreSQL and a real S3 protocol server
//! (moto_server), run as the binaries they are.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod api;
mod fence;
mod helpers;
mod isolation;
mod pitr;

use helpers::*;
use std::time::Duration;

fn greetings(app: &api::TestApp, users: &[String]) -> Vec<(u16, String)> {
    users
        .iter()
        .map(|u| {
            let r = app.get(&format!("/hello/{u}"));
            (r.status, r.body)
        })
        .collect()
}

#[test]
fn a_restore_brings_back_every_user_and_greeting_seeded_through_the_api() {
    let db = fresh_database();
    let app = api::TestApp::spawn_with(&shared_pg().url(&db), &[]);
    let today = api::today_utc();
    let mut users = Vec::new();
    for (i, name) in [
        "Alice", "bob", "Bob", "Carol", "Dave", "Eve", "Mallory", "Trent",
    ]
    .iter()
    .enumerate()
    {
        let dob = today
            .checked_sub(jiff::Span::new().years(20 + i as i64).days(i as i64 * 11))
            .unwrap();
        assert_eq!(app.put_dob(name, &dob.to_string()).status, 204);
        users.push(name.to_string());
    }
    // Birthday today, and a leap-day birthday.
    let born_today = today.checked_sub(jiff::Span::new().years(30)).unwrap();
    assert_eq!(app.put_dob("Today", &born_today.to_string()).status, 204);
    assert_eq!(app.put_dob("Leap", "2000-02-29").status, 204);
    users.extend(["Today".to_string(), "Leap".to_string()]);
    let before = greetings(&app, &users);
    assert!(before.iter().all(|(status, _)| *status == 200));
    let rows_before = fingerprint(&db, &["users"]);

    let bucket = TestBucket::new();
    let job = Job::new(&db, &bucket);
    let id = job.backup_ok();
    let manifest = bucket.manifest(&id);
    let users_count = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "users")
        .unwrap()["rows"]
        .clone();
    assert_eq!(users_count, users.len());
    // The manifest's checksum is the object's, computed independently here.
    let dump = bucket.get(&format!("dob/{id}/dump.pgcustom"));
    use sha2::Digest;
    assert_eq!(
        manifest["sha256"],
        dob::backup::manifest::hex(&sha2::Sha256::digest(&dump))
    );
    assert_eq!(manifest["size_bytes"], dump.len());

    // Damage: users deleted, changed and added after the backup.
    sql(&db)
        .batch_execute("DELETE FROM users WHERE username IN ('Alice', 'Leap')")
        .unwrap();
    assert_eq!(app.put_dob("Bob", "1971-01-01").status, 204);
    assert_eq!(app.put_dob("Newcomer", "1999-09-09").status, 204);

    let done = job.restore(&["latest", "--json"]);
    done.assert_ok();
    assert!(done.stderr.contains("restored backup"), "{done:?}");
    let previous = done.json()["restore"]["previous_database"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(previous.starts_with(&format!("{db}_before_")), "{previous}");

    // The API, still running, reconnects to the restored database by itself.
    api::wait_until(Duration::from_secs(20), "the API to answer again", || {
        app.get("/hello/Alice").status == 200
    });
    assert_eq!(greetings(&app, &users), before);
    assert_eq!(app.get("/hello/Newcomer").status, 404);
    assert_eq!(fingerprint(&db, &["users"]), rows_before);
    // The replaced database is kept, with the damage in it.
    assert_eq!(databases_like(&previous), vec![previous.clone()]);
    assert!(databases_like(&format!("{db}_restore_")).is_empty());
}

#[test]
fn a_backup_taken_during_writes_restores_a_consistent_snapshot() {
    let db = big_database();
    sql(&db)
        .batch_execute("CREATE TABLE ledger (id bigint PRIMARY KEY, username text NOT NULL)")
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writer = {
        let (db, stop, written) = (db.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut client = sql(&db);
            // Bounded: at most 200,000 transactions, each a user and its ledger row.
            for i in 0..200_000i64 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let name = format!(
                    "w{}",
                    i.to_string()
                        .chars()
                        .map(|c| (b'a' + c.to_digit(10).unwrap() as u8) as char)
                        .collect::<String>()
                );
                let mut tx = client.transaction().unwrap();
                tx.execute(
                    "INSERT INTO users (username, date_of_birth) VALUES ($1, '1980-05-05')",
                    &[&name],
                )
                .unwrap();
                tx.execute(
                    "INSERT INTO ledger (id, username) VALUES ($1, $2)",
                    &[&i, &name],
                )
                .unwrap();
                tx.commit().unwrap();
                written.store(i + 1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    wait_until(Duration::from_secs(20), "the first writes", || {
        written.load(std::sync::atomic::Ordering::SeqCst) > 100
    });
    let bucket = TestBucket::new();
    let job = Job::new(&db, &bucket);
    let id = job.backup_ok();
    let at_backup_end = written.load(std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();

    let manifest = bucket.manifest(&id);
    let rows = |table: &str| {
        manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap()["rows"]
            .as_i64()
            .unwrap()
    };
    let ledger_rows = rows("ledger");
    assert_eq!(rows("users"), 2000 + ledger_rows);
    assert!(ledger_rows > 100, "the snapshot saw the first writes");
    assert!(
        ledger_rows < at_backup_end,
        "writes went on during the backup ({ledger_rows} in the snapshot, {at_backup_end} written by its end)"
    );

    let copy = format!("{db}_copy");
    let target = shared_pg().url(&copy);
    job.restore(&["latest", "--target-url", &target])
        .assert_ok();
    let mut restored = sql(&copy);
    let row = restored
        .query_one(
            "SELECT (SELECT count(*) FROM ledger), (SELECT coalesce(max(id), -1) FROM ledger),
                    (SELECT count(*) FROM users WHERE username LIKE 'w%'),
                    (SELECT count(*) FROM ledger l JOIN users u USING (username))",
            &[],
        )
        .unwrap();
    let (count, max, writer_users, joined): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(count, ledger_rows);
    assert_eq!(max + 1, count, "a prefix of the writes, with no gap");
    assert_eq!(writer_users, count, "every user with its ledger row");
    assert_eq!(joined, count);
}

/// A database with users and a backup of it, then changed after the backup (so a
/// restore that wrongly went through would show).
fn backed_up(bucket: &TestBucket) -> (Job, String, String) {
    let db = fresh_database();
    seed_users(&db, 300);
    let job = Job::new(&db, bucket);
    let id = job.backup_ok();
    sql(&db)
        .batch_execute(
            "DELETE FROM users WHERE username LIKE 'usera%';
             INSERT INTO users VALUES ('later', '2001-01-01', now())",
        )
        .unwrap();
    let fingerprint = fingerprint(&db, &["users"]);
    (job, id, fingerprint)
}

fn assert_refused_and_untouched(job: &Job, done: &Finished, live: &str, expect: &str) {
    assert_eq!(done.code, 4, "{done:?}");
    assert!(
        done.stderr.contains(expect),
        "expected {expect:?}: {done:?}"
    );
    assert_eq!(fingerprint(&job.database, &["users"]), live);
    assert_eq!(
        databases_like(&job.database),
        vec![job.database.clone()],
        "no fresh, scratch or renamed database left behind"
    );
}

#[test]
fn a_dump_with_flipped_bytes_is_refused_and_the_live_database_is_untouched() {
    let bucket = TestBucket::new();
    let (job, id, live) = backed_up(&bucket);
    let key = format!("dob/{id}/dump.pgcustom");
    let mut dump = bucket.get(&key);
    let middle = dump.len() / 2;
    for b in &mut dump[middle..middle + 16] {
        *b ^= 0x5a;
    }
    bucket.put(&key, &dump);
    let done = job.restore(&["latest"]);
    assert_refused_and_untouched(&job, &done, &live, "is corrupt");
    let drill = job.restore(&["--drill", &id]);
    assert_refused_and_untouched(&job, &drill, &live, "is corrupt");
}

#[test]
fn a_truncated_dump_is_refused_and_the_live_database_is_untouched() {
    let bucket = TestBucket::new();
    let (job, id, live) = backed_up(&bucket);
    let key = format!("dob/{id}/dump.pgcustom");
    let dump = bucket.get(&key);
    bucket.put(&key, &dump[..dump.len() * 2 / 3]);
    let done = job.restore(&[&id]);
    assert_refused_and_untouched(&job, &done, &live, "truncated");
}

#[test]
fn a_wrong_checksum_in_the_manifest_is_refused_and_the_live_database_is_untouched() {
    let bucket = TestBucket::new();
    let (job, id, live) = backed_up(&bucket);
    let key = format!("dob/{id}/manifest.json");
    let mut manifest = bucket.manifest(&id);
    manifest["sha256"] = "0".repeat(64).into();
    bucket.put(&key, &serde_json::to_vec(&manifest).unwrap());
    let done = job.restore(&["latest", "--drop-previous"]);
    assert_refused_and_untouched(&job, &done, &live, "is corrupt");
}

#[test]
fn a_backup_without_manifest_is_incomplete_listed_as_such_and_never_restored() {
    let bucket = TestBucket::new();
    let (job, id, live) = backed_up(&bucket);
    bucket
        .store
        .delete(&format!("dob/{id}/manifest.json"))
        .unwrap();

    let list = job.restore(&["--list", "--json"]);
    list.assert_ok();
    let backups = list.json()["backups"].clone();
    assert_eq!(backups.as_array().unwrap().len(), 1, "{list:?}");
    assert_eq!(backups[0]["id"], id.as_str());
    assert_eq!(backups[0]["complete"], false);
    let text = job.restore(&["--list"]);
    assert!(text.stdout.contains("INCOMPLETE"), "{text:?}");

    let done = job.restore(&[&id]);
    assert_refused_and_untouched(&job, &done, &live, "has no manifest");
    let done = job.restore(&["latest"]);
    assert_refused_and_untouched(&job, &done, &live, "no complete backup");
}

/// The assertions after a failed backup: no manifest, no dump object, and once S3 is
/// reachable and a later backup succeeds, nothing of the failed one is left at all.
fn assert_nothing_complete_left(job: &Job, bucket: &TestBucket, done: &Finished) {
    assert_eq!(done.code, 1, "{done:?}");
    assert!(done.stderr.contains("backup FAILED"), "{done:?}");
    assert!(
        bucket.keys().is_empty(),
        "no object written: {:?}",
        bucket.keys()
    );
    let restore = job.restore(&["latest"]);
    assert_eq!(restore.code, 4, "{restore:?}");

    let ok = job.backup_ok();
    assert_eq!(
        bucket.keys(),
        vec![
            format!("dob/{ok}/dump.pgcustom"),
            format!("dob/{ok}/manifest.json")
        ]
    );
    assert!(
        bucket.store.pending_uploads("dob/").unwrap().is_empty(),
        "the failed multipart upload was aborted (at once, or by retention)"
    );
}

#[test]
fn s3_going_down_mid_upload_fails_the_backup_and_leaves_nothing_complete() {
    let db = big_database();
    let bucket = TestBucket::new();
    let proxy = Proxy::to(shared_s3().port);
    proxy.cut_after(12 * 1024 * 1024);
    let job = Job::new(&db, &bucket);
    let done = Job::new(&db, &bucket).via(proxy.endpoint()).backup(&[]);
    assert!(proxy.is_down(), "the cut happened during the upload");
    assert!(
        !bucket.store.pending_uploads("dob/").unwrap().is_empty(),
        "S3 was unreachable, so the upload could not be aborted yet"
    );
    assert_nothing_complete_left(&job, &bucket, &done);
}

#[test]
fn pg_dump_killed_mid_stream_fails_the_backup_and_aborts_the_upload() {
    let db = big_database();
    let bucket = TestBucket::new();
    let proxy = Proxy::to(shared_s3().port);
    // Hold the upload in its second part: the reader fills the next buffer, then
    // pg_dump blocks on its full pipe, alive, mid-stream.
    proxy.hold_after(7 * 1024 * 1024);
    let job = Job::new(&db, &bucket).with_env("DOB_BACKUP_PART_SIZE_MB", "5");
    let child = job
        .via(proxy.endpoint())
        .command(env!("CARGO_BIN_EXE_dob-backup"), &[])
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(60), "the upload to stall", || {
        proxy.is_holding()
    });
    let mut pg_dumps = Vec::new();
    wait_until(Duration::from_secs(10), "pg_dump", || {
        pg_dumps = children_named(child.id(), "pg_dump");
        !pg_dumps.is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        children_named(child.id(), "pg_dump"),
        pg_dumps,
        "pg_dump is still running, blocked mid-stream"
    );
    for pid in &pg_dumps {
        // SAFETY: signalling a process this test found as the backup's child.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    proxy.release();
    let done = finish(child.wait_with_output().unwrap());
    assert!(done.stderr.contains("pg_dump failed"), "{done:?}");
    let job = Job::new(&db, &bucket);
    assert!(
        bucket.store.pending_uploads("dob/").unwrap().is_empty(),
        "the upload was aborted at once"
    );
    assert_nothing_complete_left(&job, &bucket, &done);
}

#[test]
fn retention_keeps_exactly_the_newest_complete_backups() {
    let db = fresh_database();
    seed_users(&db, 50);
    let bucket = TestBucket::new();
    let job = Job::new(&db, &bucket).with_env("DOB_BACKUP_KEEP", "2");
    let first = job.backup_ok();
    let second = job.backup_ok();
    // A failed run between them: a dump without a manifest.
    let stale = {
        let second_started = dob::backup::manifest::BackupId::parse(&second)
            .unwrap()
            .started()
            .unwrap();
        let started = second_started - jiff::SignedDuration::from_millis(1);
        dob::backup::manifest::BackupId::new(started, 0).to_string()
    };
    assert!(first < stale && stale < second);
    bucket.put(&format!("dob/{stale}/dump.pgcustom"), b"partial");
    let third = job.backup_ok();
    let fourth = job.backup_ok();
    assert!(first < second && second < third && third < fourth);
    let keys = bucket.keys();
    assert_eq!(
        keys,
        vec![
            format!("dob/{third}/dump.pgcustom"),
            format!("dob/{third}/manifest.json"),
            format!("dob/{fourth}/dump.pgcustom"),
            format!("dob/{fourth}/manifest.json"),
        ]
    );
    let list = job.restore(&["--list", "--json"]);
    assert_eq!(list.json()["backups"].as_array().unwrap().len(), 2);
}

#[test]
fn keep_zero_deletes_nothing_and_backs_up_into_an_object_locked_bucket() {
    let db = fresh_database();
    seed_users(&db, 20);
    let bucket = TestBucket::with_object_lock();
    let job = Job::new(&db, &bucket).with_env("DOB_BACKUP_KEEP", "0");
    let first = job.backup_ok();
    // What a failed run leaves: a dump without a manifest. Retention would delete it.
    let stale = dob::backup::manifest::BackupId::new("2020-01-01T00:00:00Z".parse().unwrap(), 0);
    let stale_key = format!("dob/{stale}/dump.pgcustom");
    bucket.put(&stale_key, b"partial");
    let second = job.backup_ok();
    let run = job.backup(&["--json"]);
    run.assert_ok();
    let report = run.json()["report"].clone();
    assert_eq!(
        report["retention"]["deleted_backups"],
        serde_json::json!([])
    );
    assert_eq!(
        report["retention"]["deleted_incomplete"],
        serde_json::json!([])
    );
    let third = report["manifest"]["id"].as_str().unwrap().to_owned();
    let keys = bucket.keys();
    for id in [&first, &second, &third] {
        assert!(
            keys.contains(&format!("dob/{id}/manifest.json")),
            "{keys:?}"
        );
        assert!(
            keys.contains(&format!("dob/{id}/dump.pgcustom")),
            "{keys:?}"
        );
    }
    assert!(keys.contains(&stale_key), "{keys:?}");
    assert!(run.stderr.contains("DOB_BACKUP_KEEP=0"), "{}", run.stderr);
    // What is stored restores.
    job.restore(&["--drill", "--json"]).assert_ok();
}

#[test]
fn a_multi_part_dump_round_trips_and_a_drill_reports_it() {
    let db = big_database();
    let bucket = TestBucket::new();
    let job = Job::new(&db, &bucket);
    let backup = job.backup(&["--json"]);
    backup.assert_ok();
    let manifest = backup.json()["report"]["manifest"].clone();
    assert!(
        manifest["size_bytes"].as_u64().unwrap() > 20_000_000,
        "{manifest}"
    );
    assert!(manifest["parts"].as_u64().unwrap() >= 3, "{manifest}");

    let metrics = std::env::temp_dir().join(format!("dob-drill-{}.prom", std::process::id()));
    let drill = job.restore(&[
        "--drill",
        "--json",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&metrics).unwrap_or_default();
    let _ = std::fs::remove_file(&metrics);
    drill.assert_ok();
    let report = drill.json()["drill"].clone();
    assert_eq!(report["backup_id"], manifest["id"]);
    assert!(report["rpo_seconds"].as_f64().unwrap() >= 0.0);
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(report["bytes"], manifest["size_bytes"]);
    let greeting = report["verified"]["canary"]["greeting"].as_str().unwrap();
    // The canary is the manifest's user; its greeting is the API's, computed for today.
    let canary = &manifest["canary"];
    let dob: jiff::civil::Date = canary["date_of_birth"].as_str().unwrap().parse().unwrap();
    let days = dob::birthday::days_until_birthday(dob, api::today_utc());
    let mut expected = String::new();
    dob::birthday::write_greeting_json(&mut expected, canary["username"].as_str().unwrap(), days);
    let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
    assert_eq!(greeting, expected["message"], "{report}");
    assert!(drill.stderr.contains("RPO") && drill.stderr.contains("RTO"));
    assert!(text.contains("dob_restore_drill_success 1\n"), "{text}");
    assert!(text.contains("dob_restore_drill_rto_seconds "), "{text}");
    assert!(databases_like(&format!(
        "{}_drill_",
        manifest["database"].as_str().unwrap()
    ))
    .is_empty());

    let copy = format!("{db}_copy");
    job.restore(&["latest", "--target-url", &shared_pg().url(&copy)])
        .assert_ok();
    assert_eq!(
        fingerprint(&copy, &["users", "junk"]),
        fingerprint(&db, &["users", "junk"])
    );
}

#[test]
fn encryption_headers_go_only_where_s3_accepts_them() {
    let db = fresh_database();
    seed_users(&db, 20);
    let bucket = TestBucket::new();
    let proxy = Proxy::to(shared_s3().port);
    proxy.record_requests();
    let job = Job::new(&db, &bucket)
        .with_env("DOB_S3_SSE", "AES256")
        .via(proxy.endpoint());
    let id = job.backup_ok();
    assert_eq!(bucket.manifest(&id)["encryption"], "AES256");
    job.restore(&["--drill"]).assert_ok();

    let requests = proxy.requests();
    let with_sse: Vec<&String> = requests
        .iter()
        .filter(|(_, h)| h.iter().any(|(k, _)| k == "x-amz-server-side-encryption"))
        .map(|(line, _)| line)
        .collect();
    assert_eq!(
        with_sse.len(),
        2,
        "initiate and the manifest PUT: {with_sse:?}"
    );
    assert!(with_sse[0].starts_with("POST ") && with_sse[0].contains("?uploads"));
    assert!(with_sse[1].starts_with("PUT ") && with_sse[1].contains("manifest.json"));
    let parts = requests
        .iter()
        .filter(|(line, _)| line.contains("partNumber="))
        .count();
    assert!(parts >= 1, "{requests:?}");
}

#[test]
fn bad_configuration_and_arguments_have_their_own_exit_codes() {
    let bucket = TestBucket::new();
    let job = Job::new("postgres", &bucket);
    let done = job.with_env("DOB_S3_SSE", "rot13").backup(&[]);
    assert_eq!(done.code, 3, "{done:?}");
    assert!(done.stderr.contains("DOB_S3_SSE"), "{done:?}");
    // The drill's canary greeting needs "today": an unknown zone is refused, not UTC.
    let done = Job::new("postgres", &bucket)
        .with_env("DOB_TIMEZONE", "Mars/Olympus_Mons")
        .restore(&["--drill"]);
    assert_eq!(done.code, 3, "{done:?}");
    assert!(done.stderr.contains("DOB_TIMEZONE"), "{done:?}");
    let job = Job::new("postgres", &bucket);
    assert_eq!(job.backup(&["--bogus"]).code, 2);
    assert_eq!(job.restore(&["--list", "--drill"]).code, 2);
    assert_eq!(job.restore(&["not-an-id"]).code, 2);
    let done = job.restore(&["20261121T174501.007Z-0a1b2c3d"]);
    assert_eq!(done.code, 4, "{done:?}");
    assert!(done.stderr.contains("not found"), "{done:?}");
}

#[test]
fn backups_and_drills_work_over_verified_tls_and_refuse_an_untrusted_server() {
    let (pg, certs) = dob::testing::LocalServer::start_fresh_with_tls().unwrap();
    pg.create_database("tls_backup").unwrap();
    let url = format!("{}?sslmode=require", pg.url("tls_backup"));
    let ca = certs.ca_file.display().to_string();
    let app = api::TestApp::spawn_with(&url, &[("DOB_DATABASE_CA_FILE", &ca)]);
    assert_eq!(app.put_dob("Tilda", "1985-06-07").status, 204);

    let bucket = TestBucket::new();
    let job = Job::new("tls_backup", &bucket)
        .with_env("DOB_DATABASE_URL", &url)
        .with_env("DOB_DATABASE_CA_FILE", &ca);
    // pg_dump (libpq) verifies the same CA: PGSSLROOTCERT with sslmode=require.
    let id = job.backup_ok();
    let drill = job.restore(&["--drill", &id]);
    drill.assert_ok();
    assert!(drill.stderr.contains("Hello, Tilda!"), "{drill:?}");

    let other_ca = certs.other_ca_file.display().to_string();
    let untrusted = Job::new("tls_backup", &bucket)
        .with_env("DOB_DATABASE_URL", &url)
        .with_env("DOB_DATABASE_CA_FILE", &other_ca);
    let done = untrusted.backup(&[]);
    assert_eq!(done.code, 1, "{done:?}");
    assert!(done.stderr.contains("certificate"), "{done:?}");
    let drill = untrusted.restore(&["--drill", &id]);
    assert_eq!(drill.code, 1, "{drill:?}");
    assert_eq!(
        bucket.keys().len(),
        2,
        "the refused backup left objects behind"
    );
}

#[test]
fn a_dump_from_before_a_failover_is_refused_by_the_promoted_cluster_unless_allowed() {
    use dob::testing::LocalServer;
    let mut primary = LocalServer::start_fresh().unwrap();
    primary.create_database("dob").unwrap();
    let mut client = primary.connect("dob").unwrap();
    client
        .batch_execute(
            "CREATE TABLE users (username text COLLATE \"C\" PRIMARY KEY,
                                 date_of_birth date NOT NULL);
             INSERT INTO users VALUES ('before', '1990-01-01');",
        )
        .unwrap();
    let bucket = TestBucket::new();
    let on_primary = Job::new("dob", &bucket).with_env("DOB_DATABASE_URL", &primary.url("dob"));
    let old = on_primary.backup_ok();
    let manifest = bucket.manifest(&old);
    assert_eq!(manifest["source"]["timeline"], 1, "{manifest}");
    let system = manifest["source"]["system_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(manifest["source"]["lsn"].as_str().unwrap().contains('/'));

    // Fail over: the replica becomes the primary of the same cluster on timeline 2.
    let replica = LocalServer::replica_of(&primary, "dr").unwrap();
    primary.stop().unwrap();
    let mut promoted = replica.connect("dob").unwrap();
    promoted.execute("SELECT pg_promote()", &[]).unwrap();
    wait_until(Duration::from_secs(30), "the promotion", || {
        !promoted
            .query_one("SELECT pg_is_in_recovery()", &[])
            .unwrap()
            .get::<_, bool>(0)
    });
    promoted
        .execute("INSERT INTO users VALUES ('after', '1991-01-01')", &[])
        .unwrap();

    let on_promoted = Job::new("dob", &bucket).with_env("DOB_DATABASE_URL", &replica.url("dob"));
    for args in [vec![old.as_str()], vec!["--drill", old.as_str()]] {
        let refused = on_promoted.restore(&args);
        assert_eq!(refused.code, 4, "{refused:?}");
        assert!(refused.stderr.contains("timeline 1"), "{}", refused.stderr);
    }
    let count = |c: &mut postgres::Client| {
        c.query_one("SELECT count(*) FROM users", &[])
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(count(&mut promoted), 2, "the live database is untouched");

    // A backup of the new primary is on its timeline and restores.
    let new = on_promoted.backup_ok();
    let manifest = bucket.manifest(&new);
    assert_eq!(manifest["source"]["timeline"], 2);
    assert_eq!(manifest["source"]["system_identifier"], system.as_str());
    on_promoted.restore(&["--drill", &new]).assert_ok();
    // And told to, the old one is used.
    on_promoted
        .restore(&["--drill", &old, "--allow-older-timeline"])
        .assert_ok();
}
