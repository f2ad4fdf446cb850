#!/usr/bin/env bash
# The local stack on loopback, in the foreground (what `make run` starts):
#
#   scripts/local-stack.sh [run]    install deps, build, start everything, serve until Ctrl-C
#   scripts/local-stack.sh stop     stop whatever a killed run left behind
#   scripts/local-stack.sh clean    stop, then delete .local/ (all local data)
#   scripts/local-stack.sh failover (while `run` runs, from another terminal) stop the
#                                   primary, then promote the replica with dob-promote
#
# Pieces, started in order and stopped in reverse (Ctrl-C or SIGTERM):
#   primary  PostgreSQL cluster in .local/primary on 127.0.0.1:55432, database `dob`
#   replica  streaming replica of it in .local/replica on 127.0.0.1:55433, made by
#            scripts/make-replica.sh (slot and application_name `local_replica`)
#   s3       moto_server (S3 protocol, from .venv) on 127.0.0.1:9000, bucket `dob-local`,
#            for dob-backup and dob-restore; its data lives in memory (and .local/s3)
#            for as long as the stack runs
#   api      dob-api (release build) on 127.0.0.1:8080, in the foreground
# The database URL lists every PostgreSQL host with target_session_attrs=read-write, so
# dob-api writes to whichever is the primary and follows a promotion by itself.
#
# Environment: DOB_LOCAL_DIR (default .local, or /var/tmp/dob-local-<hash> when the
# PostgreSQL OS user cannot reach the repository), DOB_PRIMARY_PORT (default 55432, used when
# the cluster is created), DOB_REPLICA_PORT (default 55433, likewise), DOB_NO_REPLICA=1
# (primary only), DOB_LOCAL_S3_PORT (default 9000), DOB_LISTEN (default 127.0.0.1:8080),
# RUST_LOG (default info), DOB_WORKERS, DOB_POOL_SIZE, DOB_TIMEZONE (passed to dob-api),
# DOB_SKIP_INSTALL=1 (do not run install-deps.sh), DOB_SKIP_BUILD=1 (use the existing
# release binaries).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DOB_LOG_TAG=local-stack

# others_can_enter DIR: true when every directory from / down to DIR has the execute bit
# for others. The `postgres` user needs that, and may not exist yet when this runs (a
# fresh machine: install-deps.sh creates it later).
others_can_enter() {
	local dir="$1"
	while :; do
		[[ "$(stat -c %A "$dir")" == *[xt] ]] || return 1
		[[ "$dir" == / ]] && return 0
		dir="$(dirname "$dir")"
	done
}

# default_local_dir: .local in the repository, unless PostgreSQL's OS user could not reach
# it. As root the clusters run as `postgres`, and a clone under /root (mode 700) is out of
# its reach; then the state lives in /var/tmp/dob-local-<hash of the repository path> and
# .local is a symbolic link to it (made by `run`).
default_local_dir() {
	local link="$DOB_ROOT/.local"
	if [[ -L "$link" ]]; then
		readlink -f "$link"
	elif [[ ! -e "$link" ]] && dob_is_root && ! others_can_enter "$DOB_ROOT"; then
		printf '/var/tmp/dob-local-%s\n' "$(printf '%s' "$DOB_ROOT" | sha256sum | cut -c1-12)"
	else
		printf '%s\n' "$link"
	fi
}

LOCAL_DIR="$(abs_path "${DOB_LOCAL_DIR:-$(default_local_dir)}")"
DB_NAME=dob
PRIMARY_DIR="$LOCAL_DIR/primary"
PRIMARY_PORT="${DOB_PRIMARY_PORT:-55432}"
API_LISTEN="${DOB_LISTEN:-127.0.0.1:8080}"
API_PIDFILE="$LOCAL_DIR/dob-api.pid"
API_BIN="${CARGO_TARGET_DIR:-$DOB_ROOT/target}/release/dob-api"
API_PID=""
REPLICA_DIR="$LOCAL_DIR/replica"
REPLICA_PORT="${DOB_REPLICA_PORT:-55433}"
REPLICA_NAME=local_replica
PROMOTE_BIN="${CARGO_TARGET_DIR:-$DOB_ROOT/target}/release/dob-promote"
S3_PORT="${DOB_LOCAL_S3_PORT:-9000}"
S3_BUCKET=dob-local
S3_DIR="$LOCAL_DIR/s3"
S3_PIDFILE="$LOCAL_DIR/moto.pid"
MOTO_BIN="${DOB_VENV:-$DOB_ROOT/.venv}/bin/moto_server"
S3_PID=""

# PostgreSQL hosts (host:port) that go into DOB_DATABASE_URL, in order of preference.
DB_HOSTS=()

# --- stopping, in reverse order of starting ------------------------------------------------

STOP_ACTIONS=()

# defer FUNCTION: call FUNCTION (no arguments) when the script exits, last deferred first.
defer() {
	STOP_ACTIONS+=("$1")
}

on_exit() {
	local status=$? i
	# Finish the clean-up even if the terminal or a pipe reading our output is gone.
	set +e
	trap '' INT TERM PIPE
	for ((i = ${#STOP_ACTIONS[@]} - 1; i >= 0; i--)); do
		"${STOP_ACTIONS[i]}" || dob_log "warning: ${STOP_ACTIONS[i]} failed"
	done
	((${#STOP_ACTIONS[@]} == 0)) || dob_log "stopped"
	exit "$status"
}

# --- primary ---------------------------------------------------------------------------

start_primary() {
	if [[ -e "$PRIMARY_DIR/PG_VERSION" ]]; then
		local configured
		configured="$(pg_port "$PRIMARY_DIR")"
		if [[ -n "$configured" && "$configured" != "$PRIMARY_PORT" ]]; then
			dob_log "note: $PRIMARY_DIR was created for port $configured; using it"
			PRIMARY_PORT="$configured"
		fi
	else
		dob_log "creating PostgreSQL cluster in $PRIMARY_DIR (port $PRIMARY_PORT)"
		mkdir -p "$LOCAL_DIR"
		pg_init "$PRIMARY_DIR" "$PRIMARY_PORT"
	fi
	if ! pg_is_running "$PRIMARY_DIR" && port_in_use "$PRIMARY_PORT"; then
		dob_die "port $PRIMARY_PORT is taken by another program; stop it or set DOB_PRIMARY_PORT (with make clean-local)"
	fi
	defer stop_primary
	pg_start "$PRIMARY_DIR" "$LOCAL_DIR/primary.log"
	pg_create_db "$PRIMARY_PORT" "$DB_NAME"
	DB_HOSTS+=("127.0.0.1:$PRIMARY_PORT")
	dob_log "PostgreSQL primary on 127.0.0.1:$PRIMARY_PORT (log: $LOCAL_DIR/primary.log)"
}

stop_primary() {
	pg_is_running "$PRIMARY_DIR" || return 0
	dob_log "stopping PostgreSQL primary"
	pg_stop "$PRIMARY_DIR"
}

# --- replica ----------------------------------------------------------------------------

start_replica() {
	if [[ -e "$REPLICA_DIR/PG_VERSION" ]]; then
		local configured
		configured="$(pg_port "$REPLICA_DIR")"
		if [[ -n "$configured" && "$configured" != "$REPLICA_PORT" ]]; then
			dob_log "note: $REPLICA_DIR was created for port $configured; using it"
			REPLICA_PORT="$configured"
		fi
	else
		dob_log "making a streaming replica of 127.0.0.1:$PRIMARY_PORT in $REPLICA_DIR (port $REPLICA_PORT)"
		"$DOB_ROOT/scripts/make-replica.sh" --primary-host 127.0.0.1 --primary-port "$PRIMARY_PORT" \
			--user "$DOB_PG_SUPERUSER" --slot "$REPLICA_NAME" --application-name "$REPLICA_NAME" \
			--data-dir "$REPLICA_DIR"
		# The base backup copied the primary's postgresql.conf, port included.
		printf '\n# Added by local-stack.sh: the replica listens on its own port.\nport = %s\n' \
			"$REPLICA_PORT" | as_pg_user tee -a "$REPLICA_DIR/postgresql.conf" >/dev/null
	fi
	if ! pg_is_running "$REPLICA_DIR" && port_in_use "$REPLICA_PORT"; then
		dob_die "port $REPLICA_PORT is taken by another program; stop it or set DOB_REPLICA_PORT (with make clean-local)"
	fi
	defer stop_replica
	pg_start "$REPLICA_DIR" "$LOCAL_DIR/replica.log"
	DB_HOSTS+=("127.0.0.1:$REPLICA_PORT")
	dob_log "PostgreSQL streaming replica on 127.0.0.1:$REPLICA_PORT (log: $LOCAL_DIR/replica.log)"
}

stop_replica() {
	pg_is_running "$REPLICA_DIR" || return 0
	dob_log "stopping PostgreSQL replica"
	pg_stop "$REPLICA_DIR"
}

# A replica promoted in an earlier run has no standby.signal: the old primary's data is
# then stale, and starting both would give two writable servers.
refuse_after_failover() {
	if [[ -e "$REPLICA_DIR/PG_VERSION" && ! -e "$REPLICA_DIR/standby.signal" ]]; then
		dob_die "$REPLICA_DIR was promoted by an earlier failover, so $PRIMARY_DIR is stale: run 'make clean-local' to start over"
	fi
}

# --- S3 (moto_server) ---------------------------------------------------------------------

# A moto_server left running by a run that was killed (SIGKILL skips the trap).
stop_stale_s3() {
	local pid cmdline
	[[ -f "$S3_PIDFILE" ]] || return 0
	pid="$(cat "$S3_PIDFILE")"
	cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
	if [[ "$pid" =~ ^[0-9]+$ && "$cmdline" == *moto_server* ]]; then
		dob_log "stopping moto_server $pid left by an earlier run"
		stop_pid "$pid" 15
	fi
	rm -f "$S3_PIDFILE"
}

start_s3() {
	local status
	[[ -x "$MOTO_BIN" ]] || dob_die "$MOTO_BIN not found (run scripts/install-deps.sh)"
	stop_stale_s3
	if port_in_use "$S3_PORT"; then
		dob_die "port $S3_PORT is taken by another program; stop it or set DOB_LOCAL_S3_PORT"
	fi
	mkdir -p "$S3_DIR"
	# moto keeps objects in memory and spools large ones to TMPDIR: keep those here.
	TMPDIR="$S3_DIR" "$MOTO_BIN" -H 127.0.0.1 -p "$S3_PORT" >"$LOCAL_DIR/s3.log" 2>&1 &
	S3_PID=$!
	printf '%s\n' "$S3_PID" >"$S3_PIDFILE"
	defer stop_s3
	local deadline=$((SECONDS + 60))
	until port_in_use "$S3_PORT"; do
		kill -0 "$S3_PID" 2>/dev/null || dob_die "moto_server exited (see $LOCAL_DIR/s3.log)"
		((SECONDS < deadline)) || dob_die "moto_server did not listen on $S3_PORT within 60s"
		sleep 0.2
	done
	status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT \
		"http://127.0.0.1:$S3_PORT/$S3_BUCKET")"
	[[ "$status" == 200 ]] || dob_die "creating bucket $S3_BUCKET answered $status"
	dob_log "S3 (moto_server) on http://127.0.0.1:$S3_PORT, bucket $S3_BUCKET (log: $LOCAL_DIR/s3.log)"
}

stop_s3() {
	[[ -n "$S3_PID" ]] || return 0
	dob_log "stopping moto_server"
	stop_pid "$S3_PID" 15
	S3_PID=""
	rm -f "$S3_PIDFILE"
}

print_s3_examples() {
	local bin_dir
	bin_dir="$(dirname "$API_BIN")"
	cat >&2 <<-MSG
		  Backups go to the local S3 server (fake credentials; moto accepts any):

		  export DOB_DATABASE_URL='$(database_url)'
		  export DOB_S3_BUCKET=$S3_BUCKET DOB_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
		  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
		  $bin_dir/dob-backup
		  $bin_dir/dob-restore --list
		  $bin_dir/dob-restore --drill
		  $bin_dir/dob-restore latest      # swaps the restored copy in for database $DB_NAME

	MSG
}

# --- dob-api ---------------------------------------------------------------------------

database_url() {
	local hosts
	hosts="$(IFS=,; printf '%s' "${DB_HOSTS[*]}")"
	printf 'postgresql://postgres@%s/%s?target_session_attrs=read-write\n' "$hosts" "$DB_NAME"
}

# A dob-api left running by a run that was killed (SIGKILL skips the trap).
stop_stale_api() {
	local pid exe
	[[ -f "$API_PIDFILE" ]] || return 0
	pid="$(cat "$API_PIDFILE")"
	exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
	exe="${exe% (deleted)}" # the binary was rebuilt since
	if [[ "$pid" =~ ^[0-9]+$ && "$exe" == "$API_BIN" ]]; then
		dob_log "stopping dob-api $pid left by an earlier run"
		stop_pid "$pid" 15
	fi
	rm -f "$API_PIDFILE"
}

start_api() {
	local url port
	stop_stale_api
	port="${API_LISTEN##*:}"
	if port_in_use "$port"; then
		dob_die "$API_LISTEN is taken by another program; stop it or set DOB_LISTEN"
	fi
	url="$(database_url)"
	dob_log "starting dob-api on $API_LISTEN with DOB_DATABASE_URL=$url"
	# Loopback PostgreSQL without TLS: the one place plaintext is acceptable, said out loud.
	DOB_DATABASE_URL="$url" DOB_LISTEN="$API_LISTEN" RUST_LOG="${RUST_LOG:-info}" \
		DOB_ALLOW_INSECURE_DB=1 DOB_DRAIN_SECONDS="${DOB_DRAIN_SECONDS:-0}" "$API_BIN" &
	API_PID=$!
	printf '%s\n' "$API_PID" >"$API_PIDFILE"
	defer stop_api
	wait_http_ok "http://$API_LISTEN/readyz" 60 "$API_PID" || exit 1
}

stop_api() {
	[[ -n "$API_PID" ]] || return 0
	dob_log "stopping dob-api"
	stop_pid "$API_PID" 15
	API_PID=""
	rm -f "$API_PIDFILE"
}

print_examples() {
	cat >&2 <<-MSG

		  dob-api is ready on http://$API_LISTEN  (Ctrl-C stops everything)

		  curl -i -X PUT http://$API_LISTEN/hello/alice \\
		       -H 'Content-Type: application/json' -d '{"dateOfBirth": "1990-04-01"}'
		  curl -i http://$API_LISTEN/hello/alice
		  curl -i http://$API_LISTEN/readyz
		  psql -h 127.0.0.1 -p $PRIMARY_PORT -U postgres $DB_NAME

	MSG
	if [[ "${DOB_NO_REPLICA:-0}" != 1 ]]; then
		cat >&2 <<-MSG
			  Replica: psql -h 127.0.0.1 -p $REPLICA_PORT -U postgres $DB_NAME (read-only, streaming)
			  Fail over by hand (dob-api follows without a restart), from another terminal:
			    scripts/local-stack.sh failover
			  which stops the primary, then runs
			    $PROMOTE_BIN \\
			      --database-url postgresql://postgres@127.0.0.1:$REPLICA_PORT/$DB_NAME \\
			      --primary-url postgresql://postgres@127.0.0.1:$PRIMARY_PORT/$DB_NAME

		MSG
	fi
}

# --- commands ----------------------------------------------------------------------------

# make_local_dir: create LOCAL_DIR, and the .local link to it when it lives outside the
# repository (see default_local_dir).
make_local_dir() {
	mkdir -p "$LOCAL_DIR"
	if [[ -z "${DOB_LOCAL_DIR:-}" && "$LOCAL_DIR" != "$DOB_ROOT/.local" && ! -e "$DOB_ROOT/.local" ]]; then
		chmod 755 "$LOCAL_DIR"
		ln -s "$LOCAL_DIR" "$DOB_ROOT/.local"
		dob_log "user $DOB_PG_OS_USER cannot reach $DOB_ROOT: local state in $LOCAL_DIR (linked as .local)"
	fi
}

cmd_run() {
	if [[ "${DOB_SKIP_INSTALL:-0}" != 1 ]]; then
		"$DOB_ROOT/scripts/install-deps.sh"
	fi
	if [[ "${DOB_SKIP_BUILD:-0}" != 1 ]]; then
		# Every binary at once: the stack runs dob-api and dob-promote and prints
		# dob-backup/dob-restore examples; one cargo run links them in parallel.
		(cd "$DOB_ROOT" && cargo build --release --locked --bins) ||
			dob_die "cargo build --release --bins failed"
	fi
	[[ -x "$API_BIN" ]] || dob_die "$API_BIN not found (build it: cargo build --release)"
	make_local_dir

	trap on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	if [[ "${DOB_NO_REPLICA:-0}" != 1 ]]; then
		refuse_after_failover
	fi

	start_primary
	if [[ "${DOB_NO_REPLICA:-0}" != 1 ]]; then
		start_replica
	fi
	start_s3
	start_api
	print_examples
	print_s3_examples

	# Serve until dob-api exits or a signal arrives (the traps above stop everything).
	local status=0
	wait "$API_PID" || status=$?
	API_PID=""
	rm -f "$API_PIDFILE"
	dob_log "dob-api exited with status $status"
	exit "$status"
}

cmd_stop() {
	stop_stale_api
	stop_replica
	stop_stale_s3
	stop_primary
}

# The local failover drill: the primary goes away, the replica is promoted.
cmd_failover() {
	[[ -x "$PROMOTE_BIN" ]] || dob_die "$PROMOTE_BIN not found (make run builds it)"
	pg_is_running "$REPLICA_DIR" || dob_die "no replica is running in $REPLICA_DIR (start the stack with make run)"
	local replica_port
	replica_port="$(pg_port "$REPLICA_DIR")"
	stop_primary
	dob_log "promoting the replica on 127.0.0.1:$replica_port"
	RUST_LOG="${RUST_LOG:-warn}" "$PROMOTE_BIN" \
		--database-url "postgresql://postgres@127.0.0.1:$replica_port/$DB_NAME" \
		--primary-url "postgresql://postgres@127.0.0.1:$(pg_port "$PRIMARY_DIR")/$DB_NAME"
	dob_log "done: dob-api now writes to 127.0.0.1:$replica_port; 'make clean-local' after this run to start over"
}

cmd_clean() {
	cmd_stop
	dob_log "removing $LOCAL_DIR"
	rm -rf "$LOCAL_DIR"
	if [[ -L "$DOB_ROOT/.local" ]]; then
		rm -f "$DOB_ROOT/.local"
	fi
}

case "${1:-run}" in
run) cmd_run ;;
stop) cmd_stop ;;
clean) cmd_clean ;;
failover) cmd_failover ;;
-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" ;;
*) dob_die "unknown command: $1 (run, stop, clean or failover)" ;;
esac
