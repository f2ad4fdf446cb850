//! PostgreSQL, as every binary reaches it: the schema migrations, connection strings
//! handed to PostgreSQL's tools, TLS to the server, and locating those tools (and the
//! account they run as) on the host.
//!
//! The API's own pool and queries are [`crate::api::store`].

// PostgreSQL connection strings: another database, the password out of argv.
pub mod conninfo;
// TLS to PostgreSQL for every binary: verified against a CA file, or unverified.
pub mod dbtls;
// Forward-only SQL migrations from `sql/`, applied under an advisory lock.
pub mod migrate;
// PostgreSQL's programs on this host (`DOB_PG_BIN`) and running them as `postgres`.
pub mod pgbin;
