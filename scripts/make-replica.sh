#!/usr/bin/env bash
# make-replica.sh: make an EMPTY data directory into a streaming replica of a primary.
#
#   make-replica.sh --primary-host H [--primary-port 5432] [--user replicator]
#                   [--slot NAME] --data-dir DIR [--sslmode prefer|require|verify-full]
#                   [--password-file F] [--application-name NAME] [--ca-file F]
#
# What it does, in order:
#   1. checks DIR is empty (or absent) and creates it, mode 700, owned by postgres when root;
#   2. creates the physical replication slot NAME on the primary unless it exists (a slot
#      makes the primary keep the WAL this replica has not received yet, so a replica that
#      falls behind catches up instead of needing a new base backup);
#   3. pg_basebackup of the primary into DIR, streaming the WAL written meanwhile
#      (-X stream), through the slot, with a fast checkpoint;
#   4. writes primary_conninfo (host, port, user, application_name, sslmode, sslrootcert
#      with --ca-file, and the password when one is given) and primary_slot_name to DIR/postgresql.auto.conf, and
#      DIR/standby.signal.
# It does NOT start the server: the caller does (systemd, scripts/local-stack.sh, or the
# Rust test harness). If the base backup fails, a slot created by this run is dropped again
# (an unused slot would make the primary keep WAL forever) and DIR is emptied.
#
# Options:
#   --primary-host H        primary's address (required)
#   --primary-port P        default 5432
#   --user U                replication role on the primary, default replicator
#   --slot NAME             replication slot, default: the application name (lower case,
#                           [a-z0-9_] only)
#   --data-dir DIR          the new replica's data directory (required; empty or absent)
#   --sslmode M             prefer (default), require, verify-full (verify-full checks the
#                           primary's certificate against --ca-file, else PGSSLROOTCERT,
#                           by default ~postgres/.postgresql/root.crt, and that it names
#                           --primary-host); the deployed hosts use verify-full
#   --ca-file F             PEM certificate(s) of the CA that signed the primary's
#                           certificate: used for the copy (PGSSLROOTCERT) and written to
#                           primary_conninfo as sslrootcert, so the walreceiver verifies
#                           the primary the same way. Must be readable by the postgres user.
#   --password-file F       file whose first line is the replication password; without it
#                           the connection relies on the primary's pg_hba (trust) or on
#                           ~postgres/.pgpass. The password ends up in primary_conninfo in
#                           DIR/postgresql.auto.conf (mode 600, owned by postgres), where
#                           the walreceiver needs it; it is never put on a command line.
#   --application-name N    the replica's name as the primary sees it (pg_stat_replication,
#                           synchronous_standby_names), default: the short host name
#
# The primary must allow the connection: a role with REPLICATION LOGIN and a pg_hba.conf
# `hostssl replication <user> <replica address>/32 scram-sha-256` line
# (scripts/primary-allow-replica.sh does both), wal_level=replica, max_wal_senders and
# max_replication_slots above zero (PostgreSQL's defaults).
#
# Runs PostgreSQL's tools as the postgres user when started as root. PostgreSQL binaries:
# DOB_PG_BIN, else the newest /usr/lib/postgresql/*/bin. Self-contained (no lib.sh), so it
# can be installed alone as /usr/local/lib/dob/make-replica.sh.
#
# Exit status: 0 success; 1 failure (the message says which step); 2 bad usage.
set -euo pipefail

PROG=make-replica
PG_OS_USER="${DOB_PG_OS_USER:-postgres}"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
usage_error() {
	log "error: $*"
	log "usage: make-replica.sh --primary-host H [--primary-port 5432] [--user replicator] [--slot NAME] --data-dir DIR [--sslmode prefer|require|verify-full] [--password-file F] [--application-name NAME] [--ca-file F]"
	exit 2
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# as_pg_user CMD...: CMD as the postgres user when root (from /, which it can enter).
as_pg_user() {
	if is_root; then
		(cd / && runuser -u "$PG_OS_USER" -- "$@")
	else
		(cd / && "$@")
	fi
}

pg_bin_dir() {
	if [[ -n "${DOB_PG_BIN:-}" ]]; then
		printf '%s\n' "$DOB_PG_BIN"
		return 0
	fi
	local dir best=""
	while IFS= read -r dir; do
		[[ -x "$dir/pg_basebackup" ]] && best="$dir"
	done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
	[[ -n "$best" ]] || die "no PostgreSQL found in /usr/lib/postgresql/*/bin (install postgresql, or set DOB_PG_BIN)"
	printf '%s\n' "$best"
}

# conninfo_quote VALUE: VALUE as a single-quoted libpq connection-string value.
conninfo_quote() {
	local value="${1//\\/\\\\}"
	value="${value//\'/\\\'}"
	printf "'%s'" "$value"
}

# conf_quote VALUE: VALUE as a single-quoted postgresql.conf string.
conf_quote() {
	printf "'%s'" "${1//\'/\'\'}"
}

PRIMARY_HOST=""
PRIMARY_PORT=5432
REPL_USER=replicator
SLOT=""
DATA_DIR=""
SSLMODE=prefer
PASSWORD_FILE=""
APP_NAME=""
CA_FILE=""

need_value() {
	[[ $# -ge 2 && -n "$2" ]] || usage_error "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
	case "$1" in
	--primary-host) need_value "$@"; PRIMARY_HOST="$2"; shift 2 ;;
	--primary-port) need_value "$@"; PRIMARY_PORT="$2"; shift 2 ;;
	--user) need_value "$@"; REPL_USER="$2"; shift 2 ;;
	--slot) need_value "$@"; SLOT="$2"; shift 2 ;;
	--data-dir) need_value "$@"; DATA_DIR="$2"; shift 2 ;;
	--sslmode) need_value "$@"; SSLMODE="$2"; shift 2 ;;
	--password-file) need_value "$@"; PASSWORD_FILE="$2"; shift 2 ;;
	--application-name) need_value "$@"; APP_NAME="$2"; shift 2 ;;
	--ca-file) need_value "$@"; CA_FILE="$2"; shift 2 ;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*) usage_error "unknown argument: $1" ;;
	esac
done

[[ -n "$PRIMARY_HOST" ]] || usage_error "--primary-host is required"
[[ -n "$DATA_DIR" ]] || usage_error "--data-dir is required"
if ! [[ "$PRIMARY_PORT" =~ ^[0-9]{1,5}$ ]] || ((PRIMARY_PORT < 1 || PRIMARY_PORT > 65535)); then
	usage_error "--primary-port must be a port number, not $PRIMARY_PORT"
fi
case "$SSLMODE" in
prefer | require | verify-full) ;;
*) usage_error "--sslmode must be prefer, require or verify-full, not $SSLMODE" ;;
esac
[[ "$REPL_USER" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || usage_error "--user must be a plain role name, not $REPL_USER"
if [[ -z "$APP_NAME" ]]; then
	APP_NAME="$(hostname -s 2>/dev/null || hostname)"
fi
[[ "$APP_NAME" =~ ^[A-Za-z0-9_.-]{1,63}$ ]] ||
	usage_error "--application-name must be 1-63 characters from A-Z a-z 0-9 _ . -, not $APP_NAME"
if [[ -z "$SLOT" ]]; then
	SLOT="$(printf '%s' "$APP_NAME" | tr 'A-Z.-' 'a-z__')"
fi
[[ "$SLOT" =~ ^[a-z0-9_]{1,63}$ ]] ||
	usage_error "--slot must be 1-63 characters from a-z 0-9 _, not $SLOT"
case "$DATA_DIR" in
/*) ;;
*) DATA_DIR="$PWD/$DATA_DIR" ;;
esac
if [[ -n "$CA_FILE" ]]; then
	case "$CA_FILE" in
	/*) ;;
	*) CA_FILE="$PWD/$CA_FILE" ;;
	esac
	# The tools and the walreceiver read it as the postgres user, not as us.
	as_pg_user test -r "$CA_FILE" ||
		die "--ca-file $CA_FILE is not readable by the user PostgreSQL runs as ($PG_OS_USER when root)"
	grep -q 'BEGIN CERTIFICATE' "$CA_FILE" || die "--ca-file $CA_FILE holds no PEM certificate"
fi

PASSWORD=""
if [[ -n "$PASSWORD_FILE" ]]; then
	[[ -r "$PASSWORD_FILE" ]] || die "cannot read the password file $PASSWORD_FILE"
	IFS= read -r PASSWORD <"$PASSWORD_FILE" || [[ -n "$PASSWORD" ]] ||
		die "the password file $PASSWORD_FILE is empty"
	[[ -n "$PASSWORD" ]] || die "the password file $PASSWORD_FILE is empty"
fi

BIN="$(pg_bin_dir)"
for tool in pg_basebackup pg_receivewal; do
	[[ -x "$BIN/$tool" ]] || die "$BIN/$tool not found (set DOB_PG_BIN)"
done

# --- 1. the data directory ------------------------------------------------------------------

if [[ -e "$DATA_DIR" ]]; then
	[[ -d "$DATA_DIR" ]] || die "$DATA_DIR exists and is not a directory"
	[[ -z "$(ls -A "$DATA_DIR")" ]] ||
		die "$DATA_DIR is not empty: refusing to overwrite it (move it away first)"
else
	mkdir -p "$DATA_DIR"
fi
chmod 700 "$DATA_DIR"
if is_root; then
	chown "$PG_OS_USER:" "$DATA_DIR"
	as_pg_user test -w "$DATA_DIR" ||
		die "user $PG_OS_USER cannot write $DATA_DIR: a parent directory is not searchable by it"
fi

# The connection for the tools: libpq variables, so the password is never on a command
# line (visible in ps) and only in the environment of our own children.
export PGHOST="$PRIMARY_HOST" PGPORT="$PRIMARY_PORT" PGUSER="$REPL_USER"
export PGSSLMODE="$SSLMODE" PGAPPNAME="$APP_NAME" PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"
if [[ -n "$PASSWORD" ]]; then
	export PGPASSWORD="$PASSWORD"
fi
if [[ -n "$CA_FILE" ]]; then
	export PGSSLROOTCERT="$CA_FILE"
fi
# runuser keeps the environment: the PG* variables reach the tools.

# --- 2. the replication slot ------------------------------------------------------------------

SLOT_CREATED=0
slot_output="$(LC_ALL=C as_pg_user "$BIN/pg_receivewal" --create-slot --slot="$SLOT" \
	--no-password 2>&1)" && SLOT_CREATED=1
if ((SLOT_CREATED)); then
	log "created replication slot $SLOT on $PRIMARY_HOST:$PRIMARY_PORT"
elif [[ "$slot_output" == *"already exists"* ]]; then
	log "replication slot $SLOT already exists on $PRIMARY_HOST:$PRIMARY_PORT; using it"
else
	die "creating replication slot $SLOT on $PRIMARY_HOST:$PRIMARY_PORT as $REPL_USER failed: $slot_output"
fi

cleanup_after_failure() {
	if ((SLOT_CREATED)); then
		as_pg_user "$BIN/pg_receivewal" --drop-slot --slot="$SLOT" --no-password >/dev/null 2>&1 ||
			log "warning: could not drop slot $SLOT on the primary: drop it by hand (SELECT pg_drop_replication_slot('$SLOT')), it keeps WAL"
	fi
	find "$DATA_DIR" -mindepth 1 -delete 2>/dev/null || true
}

# --- 3. the base backup ---------------------------------------------------------------------

log "base backup of $PRIMARY_HOST:$PRIMARY_PORT into $DATA_DIR (slot $SLOT, sslmode $SSLMODE)"
started=$SECONDS
if ! as_pg_user "$BIN/pg_basebackup" --pgdata="$DATA_DIR" --wal-method=stream \
	--slot="$SLOT" --checkpoint=fast --no-password --label="dob replica $APP_NAME"; then
	cleanup_after_failure
	die "pg_basebackup from $PRIMARY_HOST:$PRIMARY_PORT failed (see above); $DATA_DIR left empty"
fi

# --- 4. standby configuration -----------------------------------------------------------------

conninfo="host=$(conninfo_quote "$PRIMARY_HOST") port=$PRIMARY_PORT user=$(conninfo_quote "$REPL_USER")"
conninfo+=" application_name=$(conninfo_quote "$APP_NAME") sslmode=$SSLMODE"
if [[ -n "$CA_FILE" ]]; then
	conninfo+=" sslrootcert=$(conninfo_quote "$CA_FILE")"
fi
if [[ -n "$PASSWORD" ]]; then
	conninfo+=" password=$(conninfo_quote "$PASSWORD")"
fi
if ! {
	printf '\n# Written by make-replica.sh: stream from the primary through slot %s.\n' "$SLOT"
	printf 'primary_conninfo = %s\n' "$(conf_quote "$conninfo")"
	printf 'primary_slot_name = %s\n' "$(conf_quote "$SLOT")"
} | as_pg_user tee -a "$DATA_DIR/postgresql.auto.conf" >/dev/null ||
	! as_pg_user touch "$DATA_DIR/standby.signal" ||
	! as_pg_user chmod 600 "$DATA_DIR/postgresql.auto.conf"; then
	cleanup_after_failure
	die "writing the standby configuration into $DATA_DIR failed"
fi

log "replica ready in $DATA_DIR after $((SECONDS - started)) s: start PostgreSQL on it (it streams from $PRIMARY_HOST:$PRIMARY_PORT as $APP_NAME)"
