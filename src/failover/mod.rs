//! Changing which database takes writes, all through `dob-promote`: promoting a local
//! streaming replica, a planned switchover through Patroni, the cross-region
//! takeover and the way back (a region that no longer writes follows the one that does); and the write fence (promotion epoch in S3, write lease) that keeps the
//! old region from writing after a takeover, which `dob-api` also obeys.

// Cross-region write fencing: the promotion epoch in S3 and the write lease.
pub mod fence;
// `dob-promote --follow`: a region the fence does not name follows the writing one.
pub mod follow;
// The takeover's fence on the old region through its EC2 API: isolation network ACL, hosts stopped.
pub mod isolation;
// One query on this host's own server, through psql as the postgres user.
pub mod local_pg;
// The promoted region's own archive: its stanza and first full backup at a takeover.
pub mod first_backup;
// Records in several buckets that count only once a majority holds them.
pub mod quorum;
// dob-promote: checks that promoting the local replica is safe, promotes, verifies.
pub mod promote;
// The dob-promote command line: its help, its flags, and which of the three it runs.
pub mod promote_cli;
// `dob-promote --switchover`: a planned change of leader through Patroni.
pub mod switchover;
// `dob-promote --takeover`: the DR standby cluster promoted after the old region is fenced.
pub mod takeover;
