#!/usr/bin/env bash
# role-setup.sh: first-boot PostgreSQL setup of a dob host, as its role says. Run by
# dob-role-setup.service (root), installed as /usr/local/lib/dob/role-setup.sh.
#
#   role-setup.sh
#
# Reads /etc/dob/dob.env (KEY=VALUE lines; see /etc/dob/dob.env.example):
#   DOB_ROLE                       primary | replica | dr-replica (required)
#   DOB_PRIMARY_HOST               replicas: address of the primary (required there)
#   DOB_PRIMARY_PORT               replicas: its port (default 5432)
#   DOB_REPLICATION_USER           replication role (default replicator)
#   DOB_REPLICATION_PASSWORD_FILE  file holding its password (default
#                                  /etc/dob/replication.password; root-only)
#   DOB_REPLICATION_SSLMODE        replicas: prefer | require | verify-full (default require)
#   DOB_REPLICATION_SLOT           replicas: slot name (default dob_<short host name>)
#   DOB_REPLICA_CIDRS              primary: CIDRs allowed to replicate (comma/space list)
#   DOB_APP_CIDRS                  primary: CIDRs whose dob-api may connect as role dob
#   DOB_APP_PASSWORD_FILE          primary: password of role dob for those (required with
#                                  DOB_APP_CIDRS; root-only)
#
# Every role: a fresh TLS key pair for PostgreSQL (the image's snakeoil one is shared by
# every host made from it).
# primary: initialises the data directory if it is empty (a new data volume), starts the
#   cluster, creates the role and database dob (local peer login; a password and hostssl
#   pg_hba lines for DOB_APP_CIDRS), and lets each DOB_REPLICA_CIDRS network replicate
#   (primary-allow-replica.sh).
# replica, dr-replica: if the data directory is the image's fresh empty cluster (or
#   empty), stops the cluster, wipes it, copies the primary with make-replica.sh (retried
#   until the primary answers, for up to DOB_ROLE_SETUP_WAIT seconds, default 1800) and
#   starts the cluster. A data directory holding databases of its own is never wiped.
# dr-replica also: the role and database dob in the restore-drill cluster 15/drill.
#
# Acts once: on success it writes /var/lib/dob/role-setup.done; later runs see it and do
# nothing (delete it to run again). Exit 0 on success, 1 with a message otherwise.
set -euo pipefail

ENV_FILE="${DOB_ENV_FILE:-/etc/dob/dob.env}"
STATE_DIR="${DOB_STATE_DIR:-/var/lib/dob}"
MARKER="$STATE_DIR/role-setup.done"
LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PG_MAJOR=15
DATA_DIR="/var/lib/postgresql/$PG_MAJOR/main"
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
HBA="/etc/postgresql/$PG_MAJOR/main/pg_hba.conf"

log() { printf 'role-setup: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

case "${1:-}" in
-h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit 0
	;;
"") ;;
*) die "unexpected argument: $1 (try --help)" ;;
esac
[[ "$(id -u)" -eq 0 ]] || die "must run as root"

if [[ -f "$MARKER" ]]; then
	log "already done ($(head -n 1 "$MARKER")); nothing to do"
	exit 0
fi

# --- configuration ---------------------------------------------------------------------------

[[ -r "$ENV_FILE" ]] || die "$ENV_FILE is missing (user data writes it)"
# Parsed like systemd's EnvironmentFile= (never sourced: it is data, not a script). Only
# DOB_* keys are taken; surrounding quotes are removed.
while IFS= read -r line || [[ -n "$line" ]]; do
	[[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
	[[ "$line" =~ ^[[:space:]]*(DOB_[A-Z0-9_]+)=(.*)$ ]] || continue
	key="${BASH_REMATCH[1]}" value="${BASH_REMATCH[2]}"
	if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
		value="${BASH_REMATCH[1]}"
	fi
	printf -v "$key" '%s' "$value"
done <"$ENV_FILE"

ROLE="${DOB_ROLE:-}"
REPL_USER="${DOB_REPLICATION_USER:-replicator}"
REPL_PASSWORD_FILE="${DOB_REPLICATION_PASSWORD_FILE:-/etc/dob/replication.password}"
short_host="$(hostname -s | tr -c '[:alnum:]_\n' _ | tr '[:upper:]' '[:lower:]')"
SLOT="${DOB_REPLICATION_SLOT:-dob_$short_host}"
WAIT="${DOB_ROLE_SETUP_WAIT:-1800}"
# A list separated by commas and/or spaces, as words.
split_list() { tr ',' ' ' <<<"$1"; }

case "$ROLE" in
primary | replica | dr-replica) ;;
"") die "DOB_ROLE is not set in $ENV_FILE (primary, replica or dr-replica)" ;;
*) die "DOB_ROLE=$ROLE in $ENV_FILE is not primary, replica or dr-replica" ;;
esac
if [[ "$ROLE" != primary ]]; then
	[[ -n "${DOB_PRIMARY_HOST:-}" ]] || die "DOB_ROLE=$ROLE needs DOB_PRIMARY_HOST"
	[[ -r "$REPL_PASSWORD_FILE" ]] || die "replication password file $REPL_PASSWORD_FILE is missing"
	[[ -x "$LIB_DIR/make-replica.sh" ]] || die "$LIB_DIR/make-replica.sh is missing"
fi
if [[ "$ROLE" == primary && -n "${DOB_REPLICA_CIDRS:-}" ]]; then
	[[ -r "$REPL_PASSWORD_FILE" ]] || die "replication password file $REPL_PASSWORD_FILE is missing"
	[[ -x "$LIB_DIR/primary-allow-replica.sh" ]] || die "$LIB_DIR/primary-allow-replica.sh is missing"
fi
if [[ -n "${DOB_APP_CIDRS:-}" ]]; then
	[[ -r "${DOB_APP_PASSWORD_FILE:-}" ]] || die "DOB_APP_CIDRS needs DOB_APP_PASSWORD_FILE (a readable file)"
fi
log "setting up this host as $ROLE"

# --- PostgreSQL helpers ------------------------------------------------------------------------

# pg_ctlcluster goes through systemctl when systemd runs the machine, so the units'
# state stays right; elsewhere (CI's chroot) it runs pg_ctl as postgres itself.
cluster_running() { pg_ctlcluster "$PG_MAJOR" "$1" status >/dev/null 2>&1; }
cluster_start() { cluster_running "$1" || pg_ctlcluster "$PG_MAJOR" "$1" start; }
cluster_stop() { ! cluster_running "$1" || pg_ctlcluster "$PG_MAJOR" "$1" stop -m fast; }
# psql_as_postgres CLUSTER ARGS...: psql as the superuser over the local socket.
psql_as_postgres() {
	local cluster="$1"
	shift
	(cd / && runuser -u postgres -- psql --cluster "$PG_MAJOR/$cluster" -X -w -q \
		-v ON_ERROR_STOP=1 "$@")
}
wait_accepting() {
	local cluster="$1" deadline=$((SECONDS + 120))
	until (cd / && runuser -u postgres -- pg_isready --cluster "$PG_MAJOR/$cluster" -q); do
		((SECONDS < deadline)) || die "PostgreSQL $PG_MAJOR/$cluster does not accept connections"
		sleep 1
	done
}
# ensure_app_role CLUSTER CREATEDB: the login role dob (peer on the local socket) and its
# database dob.
ensure_app_role() {
	local cluster="$1" createdb="$2"
	psql_as_postgres "$cluster" -d postgres <<SQL
SELECT 'CREATE ROLE dob LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dob')
\\gexec
ALTER ROLE dob $createdb;
SELECT 'CREATE DATABASE dob OWNER dob' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'dob')
\\gexec
SQL
}

# --- every role: a key pair of this host's own --------------------------------------------------

if command -v make-ssl-cert >/dev/null; then
	log "generating this host's TLS key pair (snakeoil)"
	make-ssl-cert generate-default-snakeoil --force-overwrite
fi

# allow_app_cidrs: hostssl lines for dob-api hosts in pg_hba.conf. Replicas get them too
# (pg_hba.conf is not replicated), so a promoted replica serves them at once.
allow_app_cidrs() {
	local cidr line
	for cidr in $(split_list "${DOB_APP_CIDRS:-}"); do
		line="hostssl dob dob $cidr scram-sha-256"
		grep -qxF "$line" "$HBA" || printf '%s\n' "$line" >>"$HBA"
	done
	[[ -z "${DOB_APP_CIDRS:-}" ]] || log "dob-api may connect from: $DOB_APP_CIDRS"
}

# --- primary -------------------------------------------------------------------------------------

setup_primary() {
	if [[ ! -f "$DATA_DIR/PG_VERSION" ]]; then
		# A new, empty data volume mounted over the image's cluster.
		cluster_stop main
		log "initialising the empty data directory $DATA_DIR"
		install -d -m 0700 -o postgres -g postgres "$DATA_DIR"
		(cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$DATA_DIR" --encoding=UTF8 \
			--locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256 >/dev/null)
	fi
	cluster_start main
	wait_accepting main
	ensure_app_role main NOCREATEDB
	log "role and database dob ready"

	if [[ -n "${DOB_APP_CIDRS:-}" ]]; then
		local password
		password="$(<"$DOB_APP_PASSWORD_FILE")"
		# On standard input, so the password shows in no process list.
		printf "ALTER ROLE dob PASSWORD '%s';\n" "${password//\'/\'\'}" |
			psql_as_postgres main -d postgres
	fi
	allow_app_cidrs
	local cidr
	for cidr in $(split_list "${DOB_REPLICA_CIDRS:-}"); do
		"$LIB_DIR/primary-allow-replica.sh" --replica-cidr "$cidr" --user "$REPL_USER" \
			--password-file "$REPL_PASSWORD_FILE"
	done
	pg_ctlcluster "$PG_MAJOR" main reload
}

# --- replicas ------------------------------------------------------------------------------------

# data_dir_is_disposable: true when the data directory holds nothing of value: it is
# empty, or it is a freshly initialised cluster (only template0, template1, postgres).
data_dir_is_disposable() {
	[[ -d "$DATA_DIR" ]] || return 0
	[[ -n "$(ls -A "$DATA_DIR")" ]] || return 0
	[[ -f "$DATA_DIR/PG_VERSION" && -d "$DATA_DIR/base" ]] || return 1
	local databases
	databases="$(find "$DATA_DIR/base" -mindepth 1 -maxdepth 1 -type d | wc -l)"
	((databases <= 3))
}

setup_replica() {
	if [[ -f "$DATA_DIR/standby.signal" ]]; then
		log "$DATA_DIR is already a standby: keeping it"
	else
		data_dir_is_disposable ||
			die "$DATA_DIR holds databases of its own: refusing to replace it with a copy of the primary"
		cluster_stop main
		local deadline=$((SECONDS + WAIT)) attempt=1
		while :; do
			log "copying the primary $DOB_PRIMARY_HOST (attempt $attempt)"
			# Empty, but keep the directory itself: it may be a mount point.
			install -d -m 0700 -o postgres -g postgres "$DATA_DIR"
			find "$DATA_DIR" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
			if "$LIB_DIR/make-replica.sh" --primary-host "$DOB_PRIMARY_HOST" \
				--primary-port "${DOB_PRIMARY_PORT:-5432}" --user "$REPL_USER" \
				--slot "$SLOT" --data-dir "$DATA_DIR" \
				--sslmode "${DOB_REPLICATION_SSLMODE:-require}" \
				--password-file "$REPL_PASSWORD_FILE" --application-name "$SLOT"; then
				break
			fi
			((SECONDS < deadline)) || die "could not copy the primary within ${WAIT}s"
			attempt=$((attempt + 1))
			sleep 15
		done
	fi
	allow_app_cidrs
	cluster_start main
	log "streaming replica of $DOB_PRIMARY_HOST started"
}

setup_drill_cluster() {
	local was_running=0
	cluster_running drill && was_running=1
	cluster_start drill
	wait_accepting drill
	# The drill creates and drops scratch databases.
	ensure_app_role drill CREATEDB
	((was_running)) || cluster_stop drill
	log "restore-drill cluster $PG_MAJOR/drill ready (role dob, CREATEDB)"
}

case "$ROLE" in
primary) setup_primary ;;
replica) setup_replica ;;
dr-replica)
	setup_replica
	setup_drill_cluster
	;;
esac

install -d -m 0755 "$STATE_DIR"
printf '%s %s\n' "$ROLE" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$MARKER.tmp"
mv "$MARKER.tmp" "$MARKER"
log "done: this host is set up as $ROLE"
