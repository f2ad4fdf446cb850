# shellcheck shell=bash
# Shared shell helpers for the dob scripts. Source it, do not run it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It sets no shell options of its own (the caller decides on `set -euo pipefail`) and
# starts nothing by itself. Every wait in here is bounded.
#
# PostgreSQL refuses to run as root: when the caller is root, the server-side tools
# (initdb, pg_ctl, postgres) run as the `postgres` user and data directories belong to it.
# Clients (psql, pgbench, createdb) always connect over TCP to 127.0.0.1 as the
# superuser `postgres`, with trust authentication limited to loopback.

if [[ -n "${DOB_LIB_SOURCED:-}" ]]; then
	return 0
fi
DOB_LIB_SOURCED=1

# The repository root (the parent of scripts/).
DOB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Unix user that owns and runs PostgreSQL when we are root.
DOB_PG_OS_USER="${DOB_PG_OS_USER:-postgres}"
# Database superuser created by pg_init (also when not root, so URLs are the same).
DOB_PG_SUPERUSER="${DOB_PG_SUPERUSER:-postgres}"
export DOB_ROOT

# --- messages ---------------------------------------------------------------------------

dob_log() {
	printf '%s: %s\n' "${DOB_LOG_TAG:-$(basename -- "$0")}" "$*" >&2 || true
}

dob_die() {
	dob_log "error: $*"
	exit 1
}

# --- privileges ---------------------------------------------------------------------------

dob_is_root() {
	[[ "$(id -u)" -eq 0 ]]
}

# as_root CMD...: run CMD as root (sudo when we are not root).
as_root() {
	if dob_is_root; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		dob_die "need root for: $* (and sudo is not installed)"
	fi
}

# as_pg_user CMD...: run CMD as the PostgreSQL OS user when we are root, else as ourselves.
# Runs from / so that a current directory the postgres user cannot enter does not matter:
# pass absolute paths.
as_pg_user() {
	if dob_is_root; then
		command -v runuser >/dev/null 2>&1 ||
			dob_die "runuser not found (util-linux, in /usr/sbin: is it on PATH?)"
		(cd / && runuser -u "$DOB_PG_OS_USER" -- "$@")
	else
		(cd / && "$@")
	fi
}

# --- PostgreSQL binaries --------------------------------------------------------------------

# pg_bin_dir: print the PostgreSQL bin directory: $DOB_PG_BIN, else the newest
# /usr/lib/postgresql/*/bin that has a `postgres` binary.
pg_bin_dir() {
	if [[ -n "${DOB_PG_BIN:-}" ]]; then
		[[ -x "$DOB_PG_BIN/postgres" || -x "$DOB_PG_BIN/pg_ctl" ]] ||
			dob_die "DOB_PG_BIN=$DOB_PG_BIN has no PostgreSQL binaries"
		printf '%s\n' "$DOB_PG_BIN"
		return 0
	fi
	local dir best=""
	while IFS= read -r dir; do
		[[ -x "$dir/postgres" ]] && best="$dir"
	done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
	[[ -n "$best" ]] || {
		dob_log "error: no PostgreSQL server found in /usr/lib/postgresql/*/bin (run scripts/install-deps.sh, or set DOB_PG_BIN)"
		return 1
	}
	printf '%s\n' "$best"
}

# pg_cmd NAME: print the path of PostgreSQL program NAME (initdb, pg_ctl, psql, pgbench...).
pg_cmd() {
	local bin
	bin="$(pg_bin_dir)" || return 1
	[[ -x "$bin/$1" ]] || {
		dob_log "error: $bin/$1 not found"
		return 1
	}
	printf '%s\n' "$bin/$1"
}

# --- paths and ports -----------------------------------------------------------------------

# abs_path PATH: PATH made absolute (it need not exist).
abs_path() {
	case "$1" in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s\n' "$PWD/$1" ;;
	esac
}

# port_in_use PORT: true when something listens on 127.0.0.1:PORT.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port [EXCLUDED_PORT...]: print a TCP port nobody listens on at 127.0.0.1, picked
# at random below the kernel's ephemeral range (so outgoing connections will not take it),
# and not one of the excluded ports (ones handed out earlier but not bound yet).
free_port() {
	local port tries excluded taken
	for ((tries = 0; tries < 200; tries++)); do
		port=$((20000 + RANDOM % 12000))
		taken=0
		for excluded in "$@"; do
			[[ "$excluded" == "$port" ]] && taken=1
		done
		((taken)) && continue
		port_in_use "$port" || {
			printf '%s\n' "$port"
			return 0
		}
	done
	dob_log "error: no free port found"
	return 1
}

# --- PostgreSQL clusters ---------------------------------------------------------------------

# pg_prepare_dir DIR: create DIR (mode 700) owned by the PostgreSQL OS user when root.
pg_prepare_dir() {
	local dir="$1"
	mkdir -p "$dir"
	chmod 700 "$dir"
	if dob_is_root; then
		chown "$DOB_PG_OS_USER:" "$dir"
		as_pg_user test -w "$dir" ||
			dob_die "user $DOB_PG_OS_USER cannot write $dir: a parent directory is not searchable by it (chmod o+x on the parents, or use another directory)"
	fi
}

# pg_init DATADIR PORT [SETTING=VALUE...]: initdb a new cluster listening on 127.0.0.1:PORT
# only, with trust authentication for loopback TCP (normal and replication connections)
# and no Unix socket. Extra settings are appended to postgresql.conf as given
# (e.g. max_connections=200 "shared_buffers='256MB'"). Refuses an existing cluster.
pg_init() {
	local datadir port initdb setting
	datadir="$(abs_path "$1")"
	port="$2"
	shift 2
	[[ -n "$port" ]] || dob_die "pg_init: no port"
	[[ ! -e "$datadir/PG_VERSION" ]] || dob_die "pg_init: $datadir already holds a cluster"
	initdb="$(pg_cmd initdb)" || return 1
	pg_prepare_dir "$datadir"
	as_pg_user "$initdb" --pgdata="$datadir" --username="$DOB_PG_SUPERUSER" \
		--auth=trust --encoding=UTF8 --locale=C --no-instructions >/dev/null ||
		dob_die "initdb failed for $datadir"
	as_pg_user tee "$datadir/pg_hba.conf" >/dev/null <<-'HBA'
		# Written by scripts/lib.sh: trust, loopback TCP only (no Unix socket is opened).
		# TYPE  DATABASE     USER  ADDRESS        METHOD
		host    all          all   127.0.0.1/32   trust
		host    replication  all   127.0.0.1/32   trust
	HBA
	{
		printf '\n# Added by scripts/lib.sh pg_init\n'
		printf "listen_addresses = '127.0.0.1'\n"
		printf 'port = %s\n' "$port"
		printf "unix_socket_directories = ''\n"
		printf "logging_collector = off\n"
		for setting in "$@"; do
			printf '%s\n' "${setting/=/ = }"
		done
	} | as_pg_user tee -a "$datadir/postgresql.conf" >/dev/null
}

# pg_is_running DATADIR: true when a postmaster runs on DATADIR.
pg_is_running() {
	local datadir pg_ctl
	datadir="$(abs_path "$1")"
	[[ -e "$datadir/postmaster.pid" ]] || return 1
	pg_ctl="$(pg_cmd pg_ctl)" || return 1
	as_pg_user "$pg_ctl" --pgdata="$datadir" status >/dev/null 2>&1
}

# pg_port DATADIR: the port the cluster is configured for (last `port =` line).
pg_port() {
	local datadir
	datadir="$(abs_path "$1")"
	as_pg_user cat "$datadir/postgresql.conf" "$datadir/postgresql.auto.conf" 2>/dev/null |
		sed -n 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' | tail -n 1
}

# pg_start DATADIR [LOGFILE]: start the cluster (no-op when it already runs) and wait until
# it accepts connections (at most DOB_PG_START_TIMEOUT seconds, default 60). The server
# log goes to LOGFILE, default DATADIR.log beside the data directory. The server runs in
# its own session, so a Ctrl-C in the terminal reaches the script (which stops it in
# order), not PostgreSQL directly.
pg_start() {
	local datadir logfile pg_ctl timeout port
	datadir="$(abs_path "$1")"
	logfile="$(abs_path "${2:-$datadir.log}")"
	timeout="${DOB_PG_START_TIMEOUT:-60}"
	[[ -e "$datadir/PG_VERSION" ]] || dob_die "pg_start: no cluster in $datadir"
	if pg_is_running "$datadir"; then
		dob_log "PostgreSQL already running on $datadir"
		return 0
	fi
	pg_ctl="$(pg_cmd pg_ctl)" || return 1
	touch "$logfile"
	if dob_is_root; then
		chown "$DOB_PG_OS_USER:" "$logfile"
	fi
	if ! as_pg_user setsid --wait "$pg_ctl" --pgdata="$datadir" --log="$logfile" \
		--wait --timeout="$timeout" start >/dev/null; then
		dob_log "error: PostgreSQL did not start on $datadir; end of $logfile:"
		tail -n 20 "$logfile" >&2 || true
		return 1
	fi
	port="$(pg_port "$datadir")"
	if [[ -n "$port" ]]; then
		pg_wait_ready "$port" "$timeout"
	fi
}

# pg_stop DATADIR: fast shutdown (no-op when it does not run), waiting at most
# DOB_PG_STOP_TIMEOUT seconds (default 60), then an immediate shutdown.
pg_stop() {
	local datadir pg_ctl timeout
	datadir="$(abs_path "$1")"
	timeout="${DOB_PG_STOP_TIMEOUT:-60}"
	pg_is_running "$datadir" || return 0
	pg_ctl="$(pg_cmd pg_ctl)" || return 1
	as_pg_user "$pg_ctl" --pgdata="$datadir" --mode=fast --wait --timeout="$timeout" \
		stop >/dev/null && return 0
	dob_log "warning: fast shutdown of $datadir timed out; immediate shutdown"
	as_pg_user "$pg_ctl" --pgdata="$datadir" --mode=immediate --wait --timeout=30 stop >/dev/null
}

# pg_wait_ready PORT [TIMEOUT_SECONDS]: wait until 127.0.0.1:PORT accepts connections
# (default 60 s).
pg_wait_ready() {
	local port="$1" timeout="${2:-60}" pg_isready deadline
	pg_isready="$(pg_cmd pg_isready)" || return 1
	deadline=$((SECONDS + timeout))
	until "$pg_isready" --quiet --host=127.0.0.1 --port="$port" --timeout=2 \
		--username="$DOB_PG_SUPERUSER" --dbname=postgres; do
		if ((SECONDS >= deadline)); then
			dob_log "error: PostgreSQL on 127.0.0.1:$port not ready after ${timeout}s"
			return 1
		fi
		sleep 0.2
	done
}

# pg_psql PORT [PSQL_ARGS...]: psql as the superuser to 127.0.0.1:PORT, stopping at the
# first error, without reading ~/.psqlrc. Defaults to database `postgres` (pass -d DB).
pg_psql() {
	local port="$1" psql
	shift
	psql="$(pg_cmd psql)" || return 1
	PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}" "$psql" --no-psqlrc --quiet \
		--set=ON_ERROR_STOP=1 --host=127.0.0.1 --port="$port" \
		--username="$DOB_PG_SUPERUSER" --dbname=postgres "$@"
}

# pg_create_db PORT DBNAME: create database DBNAME unless it exists.
pg_create_db() {
	local port="$1" db="$2" exists
	[[ "$db" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || dob_die "pg_create_db: bad database name: $db"
	exists="$(pg_psql "$port" --tuples-only --no-align \
		--command="SELECT 1 FROM pg_database WHERE datname = '$db'")" || return 1
	if [[ "$exists" != 1 ]]; then
		pg_psql "$port" --command="CREATE DATABASE \"$db\"" || return 1
		dob_log "created database $db on 127.0.0.1:$port"
	fi
}

# --- processes and HTTP ------------------------------------------------------------------

# stop_pid PID [TIMEOUT_SECONDS]: SIGTERM, wait at most TIMEOUT (default 15) seconds, then
# SIGKILL. Reaps it when it is our child.
stop_pid() {
	local pid="$1" timeout="${2:-15}" deadline
	[[ -n "$pid" ]] || return 0
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null || true
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + timeout))
	while kill -0 "$pid" 2>/dev/null; do
		# A zombie child counts as gone: `wait` below reaps it.
		if [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" == Z* ]]; then
			break
		fi
		if ((SECONDS >= deadline)); then
			dob_log "warning: process $pid still alive after ${timeout}s; SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	wait "$pid" 2>/dev/null || true
}

# http_status URL: print the HTTP status code of a GET (000 when nothing answers).
http_status() {
	curl --silent --output /dev/null --write-out '%{http_code}' --max-time 5 "$1" || true
}

# wait_http_ok URL [TIMEOUT_SECONDS] [PID]: wait until GET URL answers 200 (default 60 s);
# give up early when process PID (the server) has exited.
wait_http_ok() {
	local url="$1" timeout="${2:-60}" pid="${3:-}" deadline
	deadline=$((SECONDS + timeout))
	until [[ "$(http_status "$url")" == 200 ]]; do
		if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
			dob_log "error: server process $pid exited while waiting for $url"
			return 1
		fi
		if ((SECONDS >= deadline)); then
			dob_log "error: $url did not answer 200 within ${timeout}s"
			return 1
		fi
		sleep 0.2
	done
}

# dob_build_api: build dob-api (release) and print the binary's path.
dob_build_api() {
	(cd "$DOB_ROOT" && cargo build --release --locked --bin dob-api >&2) ||
		dob_die "cargo build --release --bin dob-api failed"
	printf '%s\n' "${CARGO_TARGET_DIR:-$DOB_ROOT/target}/release/dob-api"
}
