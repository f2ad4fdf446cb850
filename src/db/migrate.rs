//! Forward-only migrations from `sql/`, compiled into the binary and applied in order.
//!
//! Several API instances may start at once, so the whole run holds a session advisory
//! lock; each migration runs in its own transaction together with its bookkeeping row.
//! On a read-only server (a streaming replica) nothing is applied: the schema arrives
//! through replication.

use crate::{Error, Result};
use postgres::Client;

/// `(version, name, sql)`, in order. Never edit one that has shipped; add a new file.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "0001_create_users",
    include_str!("../../sql/0001_create_users.sql"),
)];

/// Advisory lock key: "dob" in ASCII, so it is recognisable in `pg_locks`.
const LOCK_KEY: i64 = 0x646f62;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// These many migrations were applied now (0 when already up to date).
    Applied(usize),
    /// The server is read-only (in recovery, or read-only by default); nothing was done.
    SkippedReadOnly,
}

pub fn run(client: &mut Client) -> Result<Outcome> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'",
            &[],
        )
        .map_err(|e| Error::db("checking whether the server is read-only", e))?;
    if row.get::<_, bool>(0) {
        return Ok(Outcome::SkippedReadOnly);
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .map_err(|e| Error::db("taking the migration lock", e))?;
    let result = apply_pending(client);
    // Released on disconnect anyway; unlocking now lets the next instance go at once.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .map_err(|e| Error::db("releasing the migration lock", e));
    let applied = result?;
    unlock?;
    Ok(Outcome::Applied(applied))
}

fn apply_pending(client: &mut Client) -> Result<usize> {
    client
        .batch_execute(
            // Quiet the "already exists" NOTICE on every start after the first.
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .map_err(|e| Error::db("creating schema_migrations", e))?;
    let applied: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .map_err(|e| Error::db("reading schema_migrations", e))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut count = 0;
    for &(version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        let context = || format!("applying migration {name}");
        let mut tx = client.transaction().map_err(|e| Error::db(context(), e))?;
        tx.batch_execute(sql).map_err(|e| Error::db(context(), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .map_err(|e| Error::db(context(), e))?;
        tx.commit().map_err(|e| Error::db(context(), e))?;
        log::info!("applied migration {name}");
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_named_after_their_file() {
        for (i, (version, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
            assert!(!sql.trim().is_empty());
        }
    }
}
