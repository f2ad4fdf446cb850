#!/usr/bin/env bash
# Benchmark: dob-backup and dob-restore against the PostgreSQL tools they wrap, in one run.
#
#   bench/backup.sh          (or: make bench-backup)
#
# Starts its own PostgreSQL cluster and moto_server (S3 protocol, from .venv) on free
# loopback ports in a temporary directory, seeds BENCH_USERS users (default 1,000,000)
# and then, BENCH_ROUNDS times (default 2), alternately:
#   pg_dump      pg_dump --format=custom > /dev/null
#   dob-backup   the same dump streamed to S3 with SHA-256, HEAD check, manifest
#   pg_restore   pg_restore from a local dump file into a new database
#   dob-restore  the backup streamed from S3 into a new database, verified (size,
#                SHA-256, row counts, canary), swapped in
# It prints the best time of each, the ratios dob-backup / pg_dump and dob-restore /
# pg_restore, and dob-backup's peak RSS (GNU time's "Maximum resident set size").
# Targets: both ratios <= 1.2, RSS < 64 MB. Release builds. Everything it starts is
# stopped and its directory deleted on exit.
#
# Environment: BENCH_USERS, BENCH_ROUNDS, BENCH_KEEP=1 (keep the temporary directory),
# DOB_BACKUP_PART_SIZE_MB (passed to dob-backup), DOB_SKIP_BUILD=1 (use existing
# release binaries).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
DOB_LOG_TAG=bench-backup

USERS="${BENCH_USERS:-1000000}"
ROUNDS="${BENCH_ROUNDS:-2}"
for v in USERS ROUNDS; do
	if ! [[ "${!v}" =~ ^[0-9]+$ ]] || ((${!v} == 0)); then
		dob_die "BENCH_$v must be a whole number > 0"
	fi
done
VENV="${DOB_VENV:-$DOB_ROOT/.venv}"

"$DOB_ROOT/scripts/install-deps.sh" base venv
[[ -x /usr/bin/time ]] || dob_die "/usr/bin/time (GNU time) is needed for the RSS: apt-get install time"
BIN_DIR="${CARGO_TARGET_DIR:-$DOB_ROOT/target}/release"
if [[ "${DOB_SKIP_BUILD:-0}" != 1 ]]; then
	(cd "$DOB_ROOT" && cargo build --release --locked --bin dob-backup --bin dob-restore >&2) ||
		dob_die "cargo build --release failed"
fi
for b in dob-backup dob-restore; do
	[[ -x "$BIN_DIR/$b" ]] || dob_die "$BIN_DIR/$b not found"
done
PG_DUMP="$(pg_cmd pg_dump)"
PG_RESTORE="$(pg_cmd pg_restore)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/dob-bench-backup.XXXXXX")"
chmod 755 "$WORK" # the postgres user must reach its data directory inside
PGDATA_DIR="$WORK/pg"
MOTO_PID=""

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local status=$?
	set +e
	trap '' INT TERM PIPE
	if [[ -n "$MOTO_PID" ]]; then
		stop_pid "$MOTO_PID" 15
	fi
	pg_stop "$PGDATA_DIR" || true
	if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
		dob_log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- PostgreSQL and S3 ------------------------------------------------------------------------

PG_PORT="$(free_port)"
S3_PORT="$(free_port "$PG_PORT")"
dob_log "PostgreSQL in $PGDATA_DIR on 127.0.0.1:$PG_PORT"
pg_init "$PGDATA_DIR" "$PG_PORT" "shared_buffers='256MB'"
pg_start "$PGDATA_DIR" "$WORK/postgresql.log"
pg_create_db "$PG_PORT" dob

dob_log "moto_server on 127.0.0.1:$S3_PORT"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 150); do
	port_in_use "$S3_PORT" && break
	kill -0 "$MOTO_PID" 2>/dev/null || dob_die "moto_server exited (see $WORK/moto.log)"
	sleep 0.2
done
port_in_use "$S3_PORT" || dob_die "moto_server did not start"
status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT "http://127.0.0.1:$S3_PORT/bench")"
[[ "$status" == 200 ]] || dob_die "creating the bucket answered $status"

URL="postgresql://postgres@127.0.0.1:$PG_PORT/dob"
export DOB_DATABASE_URL="$URL" DOB_S3_BUCKET=bench DOB_S3_PREFIX=bench \
	DOB_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" AWS_ACCESS_KEY_ID=local \
	AWS_SECRET_ACCESS_KEY=local RUST_LOG=warn DOB_BACKUP_KEEP=100

# --- seed ---------------------------------------------------------------------------------

dob_log "seeding $USERS users"
pg_psql "$PG_PORT" -d dob -f "$DOB_ROOT/sql/0001_create_users.sql"
pg_psql "$PG_PORT" -d dob <<SQL
INSERT INTO users (username, date_of_birth)
SELECT 'u' || translate(i::text, '0123456789', 'abcdefghij'),
       date '1930-01-01' + (i::bigint * 7919 % 30000)::int
FROM generate_series(1, $USERS) AS i;
VACUUM ANALYZE users;
SQL

# --- measurements ----------------------------------------------------------------------------

# seconds CMD...: run CMD, print its wall-clock seconds; its output goes to $WORK/last.*
seconds() {
	local start end
	start="$(date +%s.%N)"
	"$@" >"$WORK/last.out" 2>"$WORK/last.err" || {
		cat "$WORK/last.err" >&2
		dob_die "failed: $*"
	}
	end="$(date +%s.%N)"
	awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }'
}

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'; }

dump_to_null() { "$PG_DUMP" --format=custom --dbname="$URL" >/dev/null; }
dump_to_file() { "$PG_DUMP" --format=custom --dbname="$URL" >"$WORK/dump.pgcustom"; }
timed_backup() { /usr/bin/time -v -o "$WORK/time.txt" "$BIN_DIR/dob-backup"; }
drop_db() { PGOPTIONS='-c client_min_messages=warning' pg_psql "$PG_PORT" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)"; }
fresh_db() {
	drop_db "$1"
	pg_psql "$PG_PORT" -c "CREATE DATABASE $1"
}
plain_restore() { "$PG_RESTORE" --exit-on-error --dbname="postgresql://postgres@127.0.0.1:$PG_PORT/plain" "$WORK/dump.pgcustom"; }
dob_restore() {
	"$BIN_DIR/dob-restore" latest --drop-previous \
		--target-url "postgresql://postgres@127.0.0.1:$PG_PORT/viadob"
}

dob_log "warm-up dump (not measured)"
dump_to_null
dump_to_file
dump_bytes="$(stat -c %s "$WORK/dump.pgcustom")"

best_dump="" best_backup="" best_restore="" best_dob_restore="" peak_rss_kb=0
for ((round = 1; round <= ROUNDS; round++)); do
	t="$(seconds dump_to_null)"
	dob_log "round $round: pg_dump -Fc > /dev/null   ${t}s"
	best_dump="$(min "$t" "$best_dump")"

	t="$(seconds timed_backup)"
	rss="$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): \([0-9]*\)/\1/p' "$WORK/time.txt")"
	dob_log "round $round: dob-backup              ${t}s (peak RSS ${rss} kB)"
	best_backup="$(min "$t" "$best_backup")"
	((rss > peak_rss_kb)) && peak_rss_kb="$rss"

	fresh_db plain
	t="$(seconds plain_restore)"
	dob_log "round $round: pg_restore (local file)  ${t}s"
	best_restore="$(min "$t" "$best_restore")"

	drop_db viadob
	t="$(seconds dob_restore)"
	dob_log "round $round: dob-restore (from S3)   ${t}s"
	best_dob_restore="$(min "$t" "$best_dob_restore")"
done

restored="$(pg_psql "$PG_PORT" -d viadob -tAc "SELECT count(*) FROM users")"
[[ "$restored" == "$USERS" ]] || dob_die "dob-restore left $restored users, expected $USERS"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
backup_ratio="$(ratio "$best_backup" "$best_dump")"
restore_ratio="$(ratio "$best_dob_restore" "$best_restore")"
rss_mb="$(awk -v k="$peak_rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')"
verdict() { awk -v v="$1" -v max="$2" 'BEGIN { print (v + 0 <= max + 0) ? "ok" : "OVER TARGET" }'; }

cat <<REPORT

dob backup benchmark: $USERS users, dump $(awk -v b="$dump_bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }'), best of $ROUNDS round(s)
  pg_dump -Fc > /dev/null      ${best_dump} s
  dob-backup (to S3)           ${best_backup} s   ratio $backup_ratio (target <= 1.2: $(verdict "$backup_ratio" 1.2))
  pg_restore (local file)      ${best_restore} s
  dob-restore (from S3)        ${best_dob_restore} s   ratio $restore_ratio (target <= 1.2: $(verdict "$restore_ratio" 1.2))
  dob-backup peak RSS          ${rss_mb} MB (target < 64: $(verdict "$rss_mb" 63.99))
REPORT
