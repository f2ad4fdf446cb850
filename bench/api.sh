#!/usr/bin/env bash
# Benchmark: dob-api against the database it sits on, in one run on this machine.
#
#   bench/api.sh          (or: make bench)
#
# Starts its own PostgreSQL cluster (temporary data directory, free loopback port) and a
# release build of dob-api on a free loopback port, seeds 10,000 users with SQL, then
# measures, each for BENCH_DURATION seconds with BENCH_CONNECTIONS connections:
#   API GET         wrk GET /hello/<random seeded user>
#   API PUT         wrk PUT /hello/<random seeded user> with a JSON body
#   API PUT (DR)    the same against a second dob-api that answers 204 only once a
#                   streaming replica (slot dob_dr, the DR region's stand-in on this
#                   machine) has flushed the commit (DOB_DR_RECEIPT_SLOT)
#   pgbench lookup  the same primary-key lookup straight in SQL (pgbench -M prepared)
#   pgbench upsert  the API's single-row upsert straight in SQL, one per transaction
#   pgbench upsert, replica synchronous
#                   the same with the replica as the synchronous standby: the DR
#                   receipt's promise in PostgreSQL's terms
# and prints req/s, p50 and p99 for each, the API GET / pgbench lookup, API PUT /
# pgbench upsert and API PUT (DR) / pgbench upsert (either) ratios (same run, same server with
# the same replica streaming, fsync on; each write run starts from a vacuumed table right
# after a checkpoint), and dob-api's
# memory (VmRSS, VmHWM). Fails when a wrk run saw a response status >= 400.
# Everything it starts is stopped and its temporary directory deleted on exit.
#
# Environment: BENCH_DURATION (s, default 10), BENCH_CONNECTIONS (default 32),
# BENCH_THREADS (wrk/pgbench threads, default 2), BENCH_WARMUP (s of unmeasured GET
# load first, default 2; 0 skips it), BENCH_OUT (where the report and raw outputs are
# kept, default bench/out), BENCH_KEEP=1 (keep the temporary directory, with the
# server logs), DOB_WORKERS and DOB_POOL_SIZE (passed to dob-api),
# DOB_SKIP_BUILD=1 (use the existing target/release/dob-api).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
DOB_LOG_TAG=bench

DURATION="${BENCH_DURATION:-10}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
WARMUP="${BENCH_WARMUP:-2}"
USERS=10000
BENCH_DIR="$DOB_ROOT/bench"
OUT_ROOT="$(abs_path "${BENCH_OUT:-$BENCH_DIR/out}")"
for v in DURATION CONNECTIONS THREADS WARMUP; do
	[[ "${!v}" =~ ^[0-9]+$ ]] || dob_die "BENCH_$v must be a whole number, got '${!v}'"
done
((DURATION > 0 && CONNECTIONS > 0 && THREADS > 0)) || dob_die "duration, connections and threads must be > 0"
((CONNECTIONS >= THREADS)) || dob_die "BENCH_CONNECTIONS must be >= BENCH_THREADS"
# Upper bound for one load run (wrk, pgbench), beyond its own -d/-T.
RUN_LIMIT=$((DURATION + 60))

"$DOB_ROOT/scripts/install-deps.sh" bench
if [[ "${DOB_SKIP_BUILD:-0}" == 1 ]]; then
	API_BIN="${CARGO_TARGET_DIR:-$DOB_ROOT/target}/release/dob-api"
else
	API_BIN="$(dob_build_api)"
fi
[[ -x "$API_BIN" ]] || dob_die "$API_BIN not found"
PGBENCH="$(pg_cmd pgbench)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/dob-bench.XXXXXX")"
chmod 755 "$WORK" # the postgres user must reach its data directory inside
PGDATA_DIR="$WORK/pg"
REPLICA_DIR="$WORK/replica"
API_PID=""
API_DR_PID=""
STARTED_PID=""
LOAD_PID=""

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local status=$?
	set +e
	trap '' INT TERM PIPE
	if [[ -n "$LOAD_PID" ]]; then
		stop_pid "$LOAD_PID" 15
	fi
	if [[ -n "$API_PID" ]]; then
		stop_pid "$API_PID" 15
	fi
	if [[ -n "$API_DR_PID" ]]; then
		stop_pid "$API_DR_PID" 15
	fi
	# A dob-api that never became ready (start_api exited before its pid was kept).
	if [[ -n "$STARTED_PID" ]]; then
		stop_pid "$STARTED_PID" 15
	fi
	[[ ! -e "$REPLICA_DIR/PG_VERSION" ]] || pg_stop "$REPLICA_DIR" || true
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

# --- PostgreSQL ---------------------------------------------------------------------------

PG_PORT="$(free_port)"
MAX_CONNECTIONS=$((CONNECTIONS + ${DOB_POOL_SIZE:-32} + 20))
((MAX_CONNECTIONS >= 100)) || MAX_CONNECTIONS=100
dob_log "PostgreSQL in $PGDATA_DIR on 127.0.0.1:$PG_PORT"
pg_init "$PGDATA_DIR" "$PG_PORT" "max_connections=$MAX_CONNECTIONS"
pg_start "$PGDATA_DIR" "$WORK/postgresql.log"
pg_create_db "$PG_PORT" dob

# The DR region's stand-in: a streaming replica through slot dob_dr, on this machine
# (so the DR receipt costs its flush and a loopback round trip, not a region's).
REPLICA_PORT="$(free_port "$PG_PORT")"
dob_log "streaming replica (slot dob_dr) in $REPLICA_DIR on 127.0.0.1:$REPLICA_PORT"
"$DOB_ROOT/scripts/make-replica.sh" --primary-host 127.0.0.1 --primary-port "$PG_PORT" \
	--user postgres --slot dob_dr --application-name dob_dr --data-dir "$REPLICA_DIR" >&2
printf '\nport = %s\n' "$REPLICA_PORT" | as_pg_user tee -a "$REPLICA_DIR/postgresql.conf" >/dev/null
pg_start "$REPLICA_DIR" "$WORK/replica.log"

# --- dob-api ------------------------------------------------------------------------------

# start_api PORT LOG [VAR=VALUE...]: a dob-api on PORT, logging to LOG, with extra
# settings; its pid in STARTED_PID once /readyz answers.
start_api() {
	local port=$1 log=$2
	shift 2
	env DOB_DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/dob" \
		DOB_LISTEN="127.0.0.1:$port" RUST_LOG=info DOB_DRAIN_SECONDS=0 DOB_ALLOW_INSECURE_DB=1 \
		"$@" "$API_BIN" 2>"$log" &
	STARTED_PID=$!
	if ! wait_http_ok "http://127.0.0.1:$port/readyz" 60 "$STARTED_PID"; then
		tail -n 20 "$log" >&2 || true
		exit 1
	fi
}

API_PORT="$(free_port "$PG_PORT")"
API="http://127.0.0.1:$API_PORT"
dob_log "dob-api on $API (workers ${DOB_WORKERS:-default}, pool ${DOB_POOL_SIZE:-default})"
start_api "$API_PORT" "$WORK/dob-api.log"
API_PID=$STARTED_PID
API_DR_PORT="$(free_port "$API_PORT")"
API_DR="http://127.0.0.1:$API_DR_PORT"
dob_log "dob-api with the DR receipt (slot dob_dr) on $API_DR"
start_api "$API_DR_PORT" "$WORK/dob-api-dr.log" DOB_DR_RECEIPT_SLOT=dob_dr
API_DR_PID=$STARTED_PID

# --- seed -------------------------------------------------------------------------------

dob_log "seeding $USERS users"
pg_psql "$PG_PORT" -d dob <<SQL
INSERT INTO users (username, date_of_birth)
SELECT 'u' || translate(i::text, '0123456789', 'abcdefghij'),
       current_date - (1 + floor(random() * 36500))::int
FROM generate_series(1, $USERS) AS i
ON CONFLICT (username) DO NOTHING;
VACUUM ANALYZE users;
SQL
seeded="$(pg_psql "$PG_PORT" -d dob -tAc "SELECT count(*) FROM users WHERE username ~ '^u[a-j]+\$'")"
[[ "$seeded" -ge "$USERS" ]] || dob_die "expected $USERS seeded users, found $seeded"

# One request of each kind by hand: the name scheme and the API agree.
status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$API/hello/ub")"
[[ "$status" == 200 ]] || dob_die "GET /hello/ub answered $status, expected 200"
for api in "$API" "$API_DR"; do
	status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X PUT \
		-H 'Content-Type: application/json' -d '{"dateOfBirth":"1990-01-02"}' "$api/hello/ub")"
	[[ "$status" == 204 ]] || dob_die "PUT $api/hello/ub answered $status, expected 204"
done

# --- load -------------------------------------------------------------------------------

# run_load OUTFILE CMD...: run one load generator, bounded by RUN_LIMIT seconds, output
# to OUTFILE. In the background, so that a signal stops the benchmark at once (the
# clean-up stops the generator too).
run_load() {
	local out="$1" status=0
	shift
	timeout --kill-after=10 "$RUN_LIMIT" "$@" >"$out" 2>&1 &
	LOAD_PID=$!
	wait "$LOAD_PID" || status=$?
	LOAD_PID=""
	if ((status != 0)); then
		cat "$out" >&2
		dob_die "$1 failed (status $status)"
	fi
}

run_wrk() { # METHOD DURATION OUTFILE [API]
	BENCH_METHOD="$1" BENCH_USERS="$USERS" run_load "$3" \
		wrk --threads "$THREADS" --connections "$CONNECTIONS" --duration "${2}s" \
		--latency --script "$BENCH_DIR/hello.lua" "${4:-$API}"
}

# settle: every write run starts from the same table (the dead rows of the run before
# vacuumed away) and right after a checkpoint, so that neither autovacuum nor a
# checkpoint's full-page writes land in one run and not in another.
settle() {
	pg_psql "$PG_PORT" -d dob -qc "VACUUM ANALYZE users" -c "CHECKPOINT" >/dev/null
}

if ((WARMUP > 0)); then
	dob_log "warm-up: GET for ${WARMUP}s (not measured)"
	run_wrk GET "$WARMUP" "$WORK/wrk-warmup.txt"
fi
dob_log "API GET: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
run_wrk GET "$DURATION" "$WORK/wrk-get.txt"
settle
dob_log "API PUT: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
run_wrk PUT "$DURATION" "$WORK/wrk-put.txt"
settle
dob_log "API PUT with the DR receipt: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
run_wrk PUT "$DURATION" "$WORK/wrk-put-dr.txt" "$API_DR"

# run_pgbench NAME: pgbench with bench/NAME.sql, its output in pgbench-NAME.txt and its
# per-transaction log in pgbench-NAME-log/.
run_pgbench() {
	local name=$1 script=${2:-$1}
	dob_log "pgbench $name: -M prepared -c$CONNECTIONS -j$THREADS -T$DURATION"
	mkdir -p "$WORK/pgbench-$name-log"
	# --log-prefix is a path: the per-transaction logs go to tx.PID and tx.PID.THREAD there.
	run_load "$WORK/pgbench-$name.txt" \
		"$PGBENCH" --no-vacuum --protocol=prepared --client="$CONNECTIONS" --jobs="$THREADS" \
		--time="$DURATION" --file="$BENCH_DIR/$script.sql" --log \
		--log-prefix="$WORK/pgbench-$name-log/tx" \
		--host=127.0.0.1 --port="$PG_PORT" --username=postgres dob
}
run_pgbench lookup
settle
run_pgbench upsert
# The same promise in PostgreSQL's own terms: the upsert committed only once the replica
# has flushed it (the replica as the synchronous standby), for the DR receipt's baseline.
pg_psql "$PG_PORT" -qc "ALTER SYSTEM SET synchronous_standby_names = 'dob_dr'" -c "SELECT pg_reload_conf()" >/dev/null
sync_deadline=$((SECONDS + 30))
until [[ "$(pg_psql "$PG_PORT" -tAc "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'dob_dr' AND sync_state = 'sync'")" == 1 ]]; do
	((SECONDS < sync_deadline)) || dob_die "the replica did not become the synchronous standby"
	sleep 0.2
done
settle
run_pgbench upsert-sync upsert
pg_psql "$PG_PORT" -qc "ALTER SYSTEM RESET synchronous_standby_names" -c "SELECT pg_reload_conf()" >/dev/null

# dob-api's memory after all the load.
kill -0 "$API_PID" 2>/dev/null || dob_die "dob-api died during the benchmark"
vm_rss="$(awk '/^VmRSS:/ {print $2 " " $3}' "/proc/$API_PID/status")"
vm_hwm="$(awk '/^VmHWM:/ {print $2 " " $3}' "/proc/$API_PID/status")"

# --- report -----------------------------------------------------------------------------

# wrk_field FILE NAME: a value from the BENCH_RESULT line hello.lua's done() printed.
wrk_field() {
	sed -n 's/^BENCH_RESULT .*\b'"$2"'=\([0-9]*\).*/\1/p' "$1"
}
# wrk_rps FILE: requests per second.
wrk_rps() {
	awk -v n="$(wrk_field "$1" requests)" -v us="$(wrk_field "$1" duration_us)" \
		'BEGIN { printf "%.1f", n / (us / 1e6) }'
}
us_to_ms() {
	awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'
}

for f in "$WORK/wrk-get.txt" "$WORK/wrk-put.txt" "$WORK/wrk-put-dr.txt"; do
	grep -q '^BENCH_RESULT ' "$f" || {
		cat "$f" >&2
		dob_die "no result line in $f"
	}
done

get_rps="$(wrk_rps "$WORK/wrk-get.txt")"
put_rps="$(wrk_rps "$WORK/wrk-put.txt")"
put_dr_rps="$(wrk_rps "$WORK/wrk-put-dr.txt")"
# pgbench_stats NAME: "tps count p50_us p99_us failed avg_ms" of one pgbench run; the
# percentiles exact, from the per-transaction log (3rd field: latency in us).
pgbench_stats() {
	local out="$WORK/pgbench-$1.txt" tps count p50 p99
	tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out")"
	[[ -n "$tps" ]] || tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | tail -n 1)"
	read -r count p50 p99 < <(
		cat "$WORK/pgbench-$1-log"/tx.* | awk '{ print $3 }' | sort -n |
			awk '{ v[NR] = $1 } END {
				if (NR == 0) { print 0, 0, 0; exit }
				i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++
				i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
				print NR, v[i50], v[i99]
			}'
	)
	((count > 0)) || dob_die "pgbench $1 logged no transactions"
	printf '%s %s %s %s %s %s\n' "$tps" "$count" "$p50" "$p99" \
		"$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")" \
		"$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out")"
}
read -r pg_tps pg_count pg_p50 pg_p99 pg_failed pg_avg_ms < <(pgbench_stats lookup)
read -r up_tps up_count up_p50 up_p99 up_failed up_avg_ms < <(pgbench_stats upsert)
read -r us_tps us_count us_p50 us_p99 us_failed us_avg_ms < <(pgbench_stats upsert-sync)

ratio_of() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'
}
ratio="$(ratio_of "$get_rps" "$pg_tps")"
put_ratio="$(ratio_of "$put_rps" "$up_tps")"
put_dr_ratio="$(ratio_of "$put_dr_rps" "$up_tps")"
put_dr_sync_ratio="$(ratio_of "$put_dr_rps" "$us_tps")"

errors_line() { # LABEL FILE
	printf '  %-8s non-2xx %s, socket errors: connect %s, read %s, write %s, timeout %s\n' \
		"$1" "$(wrk_field "$2" non2xx)" "$(wrk_field "$2" connect)" "$(wrk_field "$2" read)" \
		"$(wrk_field "$2" write)" "$(wrk_field "$2" timeout)"
}

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
OUT_DIR="$OUT_ROOT/$stamp"
mkdir -p "$OUT_DIR"
report="$OUT_DIR/summary.txt"
{
	printf 'dob bench %s: %s cores, %ss per run, %s connections, %s threads, %s users\n' \
		"$stamp" "$(nproc)" "$DURATION" "$CONNECTIONS" "$THREADS" "$USERS"
	printf 'dob-api: DOB_WORKERS=%s DOB_POOL_SIZE=%s; %s\n' "${DOB_WORKERS:-default}" \
		"${DOB_POOL_SIZE:-default}" "$("$PGBENCH" --version)"
	printf '\n%-16s %12s %10s %10s\n' "" "req/s" "p50 ms" "p99 ms"
	printf '%-16s %12s %10s %10s\n' "API GET" "$get_rps" \
		"$(us_to_ms "$(wrk_field "$WORK/wrk-get.txt" p50_us)")" \
		"$(us_to_ms "$(wrk_field "$WORK/wrk-get.txt" p99_us)")"
	printf '%-16s %12s %10s %10s\n' "API PUT" "$put_rps" \
		"$(us_to_ms "$(wrk_field "$WORK/wrk-put.txt" p50_us)")" \
		"$(us_to_ms "$(wrk_field "$WORK/wrk-put.txt" p99_us)")"
	printf '%-16s %12s %10s %10s\n' "API PUT (DR)" "$put_dr_rps" \
		"$(us_to_ms "$(wrk_field "$WORK/wrk-put-dr.txt" p50_us)")" \
		"$(us_to_ms "$(wrk_field "$WORK/wrk-put-dr.txt" p99_us)")"
	printf '%-16s %12.1f %10s %10s\n' "pgbench lookup" "$pg_tps" \
		"$(us_to_ms "$pg_p50")" "$(us_to_ms "$pg_p99")"
	printf '%-16s %12.1f %10s %10s\n' "pgbench upsert" "$up_tps" \
		"$(us_to_ms "$up_p50")" "$(us_to_ms "$up_p99")"
	printf '%-16s %12.1f %10s %10s\n' "pgbench up. sync" "$us_tps" \
		"$(us_to_ms "$us_p50")" "$(us_to_ms "$us_p99")"
	printf '\nAPI GET / pgbench lookup: %s\n' "$ratio"
	printf 'API PUT / pgbench upsert: %s\n' "$put_ratio"
	printf 'API PUT with the DR receipt / pgbench upsert: %s\n' "$put_dr_ratio"
	printf 'API PUT with the DR receipt / pgbench upsert, replica synchronous: %s\n' "$put_dr_sync_ratio"
	printf 'dob-api memory after the runs: VmRSS %s, VmHWM %s\n' "$vm_rss" "$vm_hwm"
	printf 'wrk errors:\n'
	errors_line GET "$WORK/wrk-get.txt"
	errors_line PUT "$WORK/wrk-put.txt"
	errors_line "PUT (DR)" "$WORK/wrk-put-dr.txt"
	printf 'pgbench lookup: %s transactions logged, %s failed; its own "latency average" %s ms\n' \
		"$pg_count" "${pg_failed:-n/a}" "${pg_avg_ms:-n/a}"
	printf 'pgbench upsert: %s transactions logged, %s failed; its own "latency average" %s ms\n' \
		"$up_count" "${up_failed:-n/a}" "${up_avg_ms:-n/a}"
	printf 'pgbench upsert, replica synchronous: %s transactions logged, %s failed; its own "latency average" %s ms\n' \
		"$us_count" "${us_failed:-n/a}" "${us_avg_ms:-n/a}"
	printf '(wrk latencies: from wrk; pgbench p50/p99: exact, from its per-transaction log)\n'
} | tee "$report"
cp "$WORK/wrk-get.txt" "$WORK/wrk-put.txt" "$WORK/wrk-put-dr.txt" "$WORK/pgbench-lookup.txt" \
	"$WORK/pgbench-upsert.txt" "$WORK/pgbench-upsert-sync.txt" "$OUT_DIR/"
tail -n 50 "$WORK/dob-api.log" >"$OUT_DIR/dob-api.log.tail"
dob_log "report and raw outputs in $OUT_DIR"

fail=0
for m in get put put-dr; do
	non2xx="$(wrk_field "$WORK/wrk-$m.txt" non2xx)"
	if [[ "$non2xx" != 0 ]]; then
		dob_log "error: API ${m^^}: $non2xx responses with a status >= 400"
		fail=1
	fi
done
if [[ -n "$pg_failed" && "$pg_failed" != 0 ]]; then
	dob_log "error: pgbench: $pg_failed failed transactions"
	fail=1
fi
exit "$fail"
