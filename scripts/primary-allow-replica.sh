#!/usr/bin/env bash
# primary-allow-replica.sh: on the PRIMARY, let streaming replicas at given addresses in,
# and nobody else.
#
#   primary-allow-replica.sh --replica-cidr CIDR [--replica-cidr CIDR...] [--user replicator]
#                            [--password-file F] [--port 5432] [--host H] [--allow-plaintext]
#
# 1. Creates the role (LOGIN REPLICATION, nothing else: not a superuser, owns nothing,
#    cannot read the application's tables) or, when it exists, makes sure it has exactly
#    those attributes; sets its password from F (stored as a SCRAM-SHA-256 verifier).
# 2. Appends to pg_hba.conf (the file the server reports in `SHOW hba_file`), once per
#    CIDR, unless the line is already there:
#        hostssl  replication  <user>  <CIDR>  scram-sha-256
#    With --allow-plaintext, also `host replication <user> <CIDR> scram-sha-256` (for a
#    loopback or test set-up without TLS; never across hosts).
#    Only the replication pseudo-database is opened: the role cannot connect to `dob`.
# 3. Reloads the configuration and fails if PostgreSQL reports an error in pg_hba.conf.
#
# TLS: hostssl lines only match TLS connections, so the primary needs `ssl = on` with a
# certificate (ssl_cert_file/ssl_key_file; the deployment sets these up), and replicas run
# make-replica.sh with --sslmode require (encrypted) or verify-full (encrypted and the
# primary's certificate checked against PGSSLROOTCERT). With ssl off the script refuses,
# unless --allow-plaintext, when it adds only the plaintext lines.
#
# How it connects: psql as the database superuser `postgres` (DOB_PG_SUPERUSER) to
# --host (default: the local Unix socket) and --port, as the postgres OS user when root
# (peer authentication on Debian). PostgreSQL binaries: DOB_PG_BIN, else the newest
# /usr/lib/postgresql/*/bin. Idempotent: running it again changes nothing.
#
# Exit status: 0 success; 1 failure; 2 bad usage.
set -euo pipefail

PROG=primary-allow-replica
PG_OS_USER="${DOB_PG_OS_USER:-postgres}"
SUPERUSER="${DOB_PG_SUPERUSER:-postgres}"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
usage_error() {
	log "error: $*"
	log "usage: primary-allow-replica.sh --replica-cidr CIDR [--replica-cidr CIDR...] [--user replicator] [--password-file F] [--port 5432] [--host H] [--allow-plaintext]"
	exit 2
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

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
		[[ -x "$dir/psql" ]] && best="$dir"
	done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
	[[ -n "$best" ]] || die "no PostgreSQL found in /usr/lib/postgresql/*/bin (set DOB_PG_BIN)"
	printf '%s\n' "$best"
}

CIDRS=()
REPL_USER=replicator
PASSWORD_FILE=""
PORT=5432
HOST=""
PLAINTEXT=0

need_value() {
	[[ $# -ge 2 && -n "$2" ]] || usage_error "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
	case "$1" in
	--replica-cidr) need_value "$@"; CIDRS+=("$2"); shift 2 ;;
	--user) need_value "$@"; REPL_USER="$2"; shift 2 ;;
	--password-file) need_value "$@"; PASSWORD_FILE="$2"; shift 2 ;;
	--port) need_value "$@"; PORT="$2"; shift 2 ;;
	--host) need_value "$@"; HOST="$2"; shift 2 ;;
	--allow-plaintext) PLAINTEXT=1; shift ;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*) usage_error "unknown argument: $1" ;;
	esac
done

((${#CIDRS[@]} > 0)) || usage_error "at least one --replica-cidr is required"
for cidr in "${CIDRS[@]}"; do
	if ! [[ "$cidr" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ || "$cidr" =~ ^[0-9A-Fa-f:]+/[0-9]{1,3}$ ]]; then
		usage_error "--replica-cidr must be an address with a prefix length (10.0.2.10/32), not $cidr"
	fi
	if [[ "$cidr" == 0.0.0.0/0 || "$cidr" == ::/0 ]]; then
		usage_error "--replica-cidr $cidr would let every address in: name the replicas"
	fi
done
[[ "$REPL_USER" =~ ^[a-z_][a-z0-9_]*$ ]] || usage_error "--user must be a lower-case role name, not $REPL_USER"
[[ "$PORT" =~ ^[0-9]{1,5}$ ]] || usage_error "--port must be a port number, not $PORT"

PASSWORD=""
if [[ -n "$PASSWORD_FILE" ]]; then
	[[ -r "$PASSWORD_FILE" ]] || die "cannot read the password file $PASSWORD_FILE"
	IFS= read -r PASSWORD <"$PASSWORD_FILE" || true
	[[ -n "$PASSWORD" ]] || die "the password file $PASSWORD_FILE is empty"
fi

PSQL="$(pg_bin_dir)/psql"
[[ -x "$PSQL" ]] || die "$PSQL not found (set DOB_PG_BIN)"
psql_args=(--no-psqlrc --quiet --no-align --tuples-only --set=ON_ERROR_STOP=1
	--port="$PORT" --username="$SUPERUSER" --dbname=postgres)
if [[ -n "$HOST" ]]; then
	psql_args+=(--host="$HOST")
fi
# sql: run SQL from standard input (so a password never appears in a process list).
sql() {
	PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}" as_pg_user "$PSQL" "${psql_args[@]}"
}

# With ssl off PostgreSQL rejects a pg_hba.conf that has hostssl lines (they could never
# match), so they are only added when the server speaks TLS.
SSL="$(sql <<<"SHOW ssl")" || die "asking the server whether ssl is on failed"
types=()
if [[ "$SSL" == on ]]; then
	types+=(hostssl)
elif ((PLAINTEXT)); then
	log "warning: ssl is off on this server: adding plaintext host lines only (--allow-plaintext)"
else
	die "ssl is off on this server: turn it on (ssl = on with ssl_cert_file/ssl_key_file) so replication is encrypted, or pass --allow-plaintext for a loopback/test set-up"
fi
if ((PLAINTEXT)); then
	types+=(host)
fi
# --- 1. the role ------------------------------------------------------------------------------

# The role name was checked above ([a-z_][a-z0-9_]*), so it needs no quoting; the password
# is a SQL literal with quotes doubled, sent on standard input, and not logged.
password_sql=""
if [[ -n "$PASSWORD" ]]; then
	password_sql="ALTER ROLE $REPL_USER PASSWORD '${PASSWORD//\'/\'\'}';"
fi
sql <<-SQL || die "creating or updating role $REPL_USER failed"
	SET log_statement = 'none';
	SET password_encryption = 'scram-sha-256';
	DO \$\$ BEGIN
	  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$REPL_USER') THEN
	    CREATE ROLE $REPL_USER;
	  END IF;
	END \$\$;
	ALTER ROLE $REPL_USER LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
	$password_sql
SQL
log "role $REPL_USER: LOGIN REPLICATION${PASSWORD:+, password set}"

# --- 2. pg_hba.conf ---------------------------------------------------------------------------

HBA_FILE="$(sql <<<"SHOW hba_file")" || die "asking the server for its pg_hba.conf failed"
[[ -n "$HBA_FILE" ]] || die "the server did not report its hba_file"
as_pg_user test -w "$HBA_FILE" || die "$HBA_FILE is not writable by $PG_OS_USER"

added=0
for cidr in "${CIDRS[@]}"; do
	for type in "${types[@]}"; do
		line="$type replication $REPL_USER $cidr scram-sha-256"
		# Compare with runs of blanks squeezed, so a hand-aligned copy counts as present.
		if as_pg_user cat "$HBA_FILE" | tr -s ' \t' ' ' | grep -qxF -- "$line"; then
			continue
		fi
		printf '%s\n' "$line" | as_pg_user tee -a "$HBA_FILE" >/dev/null ||
			die "appending to $HBA_FILE failed"
		log "added to $HBA_FILE: $line"
		added=$((added + 1))
	done
done

# --- 3. reload and check ------------------------------------------------------------------------

sql <<<"SELECT pg_reload_conf()" >/dev/null || die "reloading the configuration failed"
errors="$(sql <<<"SELECT line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL")" ||
	die "reading pg_hba_file_rules failed"
[[ -z "$errors" ]] || die "PostgreSQL rejects $HBA_FILE (the previous rules stay in force): $errors"
log "done: $added line(s) added; replicas at ${CIDRS[*]} may stream as $REPL_USER"
