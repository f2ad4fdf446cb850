#!/usr/bin/env bash
# role-setup.sh: PostgreSQL setup of a dob host, as its role says. Run at every boot by
# dob-role-setup.service (root), installed as /usr/local/lib/dob/role-setup.sh.
#
#   role-setup.sh
#
# Reads /etc/dob/dob.env (KEY=VALUE lines, written by user data; see dob.env.example):
#   DOB_ROLE                            primary | replica | dr-replica (required)
#   DOB_PRIMARY_HOST                    replicas: the upstream to copy and stream from
#   DOB_PRIMARY_PORT                    replicas: its port (default 5432)
#   DOB_REPLICATION_USER                replication role (default replicator)
#   DOB_REPLICATION_PASSWORD_FILE       its password, one line (default
#                                       /etc/dob/replication-password; root, 0600)
#   DOB_REPLICATION_PASSWORD_PARAMETER  SSM SecureString parameter holding that password:
#                                       when set, fetched into the file at every run
#                                       (aws cli, instance profile, AWS_REGION)
#   DOB_REPLICATION_SSLMODE             replicas: prefer | require | verify-full (default require)
#   DOB_REPLICATION_SLOT                replicas: slot on the upstream (default dob_<short host name>)
#   DOB_REPLICA_CIDRS                   who may replicate from this host (comma/space list);
#                                       on a replica too (the DR host cascades from one)
#   DOB_APP_CIDRS                       who may connect as role dob to database dob over
#                                       TCP (default: 127.0.0.1/32 and each host named in
#                                       DOB_DATABASE_URL, as /32: in this topology every host's
#                                       dob-api connects to the database hosts it lists)
#   DOB_APP_PASSWORD_FILE               password of role dob (then it must be in
#                                       DOB_DATABASE_URL, and pg_hba asks for it); without
#                                       it, DOB_APP_CIDRS are trusted for role dob only, so
#                                       keep them to the peers' /32s (the security group
#                                       admits nobody else to 5432 either)
#   DOB_ROLE_SETUP_WAIT                 replicas: seconds to keep retrying the copy while the
#                                       upstream is not ready yet (default 1800)
#
# Once, at first boot (then /var/lib/dob/role-setup.done exists):
#   every role: a TLS key pair of the host's own (the image's snakeoil one is shared)
#   primary: initialises the data directory if it is empty
#   replica, dr-replica: if the data directory is empty or the image's freshly initialised
#     cluster, stops the cluster, wipes it, copies the upstream with make-replica.sh
#     (retried until the upstream answers) and starts the cluster. A data directory that
#     holds databases of its own is never wiped.
#   dr-replica: role dob (CREATEDB) and database dob in the restore-drill cluster 15/drill
# At every run (idempotent, so a rotated password or a changed CIDR list is applied by
# `systemctl restart dob-role-setup`):
#   the replication password file from SSM; a managed block at the top of pg_hba.conf for
#   DOB_APP_CIDRS and DOB_REPLICA_CIDRS; on a primary (not in recovery): role and database
#   dob, and primary-allow-replica.sh for each DOB_REPLICA_CIDRS network.
# Exit 0 on success, 1 with a message otherwise.
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
umask 077

# --- configuration ---------------------------------------------------------------------------

[[ -r "$ENV_FILE" ]] || die "$ENV_FILE is missing (user data writes it)"
# Parsed like systemd's EnvironmentFile= (never sourced: it is data, not a script). Only
# DOB_* and AWS_REGION are taken; surrounding quotes are removed.
while IFS= read -r line || [[ -n "$line" ]]; do
	[[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
	[[ "$line" =~ ^[[:space:]]*(DOB_[A-Z0-9_]+|AWS_REGION)=(.*)$ ]] || continue
	key="${BASH_REMATCH[1]}" value="${BASH_REMATCH[2]}"
	if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
		value="${BASH_REMATCH[1]}"
	fi
	printf -v "$key" '%s' "$value"
done <"$ENV_FILE"

ROLE="${DOB_ROLE:-}"
REPL_USER="${DOB_REPLICATION_USER:-replicator}"
REPL_PASSWORD_FILE="${DOB_REPLICATION_PASSWORD_FILE:-/etc/dob/replication-password}"
short_host="$(hostname -s | tr -c '[:alnum:]_\n' _ | tr '[:upper:]' '[:lower:]')"
SLOT="${DOB_REPLICATION_SLOT:-dob_$short_host}"
WAIT="${DOB_ROLE_SETUP_WAIT:-1800}"
# split_list LIST: a list separated by commas and/or spaces, as words.
split_list() { tr ',' ' ' <<<"$1"; }

case "$ROLE" in
primary | replica | dr-replica) ;;
"") die "DOB_ROLE is not set in $ENV_FILE (primary, replica or dr-replica)" ;;
*) die "DOB_ROLE=$ROLE in $ENV_FILE is not primary, replica or dr-replica" ;;
esac
if [[ "$ROLE" != primary ]]; then
	[[ -n "${DOB_PRIMARY_HOST:-}" ]] || die "DOB_ROLE=$ROLE needs DOB_PRIMARY_HOST"
fi
if [[ -n "${DOB_APP_PASSWORD_FILE:-}" && ! -r "$DOB_APP_PASSWORD_FILE" ]]; then
	die "DOB_APP_PASSWORD_FILE=$DOB_APP_PASSWORD_FILE is not a readable file"
fi

# app_cidrs: DOB_APP_CIDRS, or 127.0.0.1/32 plus each host of DOB_DATABASE_URL as /32.
app_cidrs() {
	if [[ -n "${DOB_APP_CIDRS:-}" ]]; then
		split_list "$DOB_APP_CIDRS"
		return
	fi
	local hosts host
	printf '127.0.0.1/32\n'
	# postgresql://user[:password]@host[:port][,host[:port]...]/db?...
	hosts="${DOB_DATABASE_URL:-}"
	hosts="${hosts#*://}"
	hosts="${hosts#*@}"
	hosts="${hosts%%/*}"
	for host in $(split_list "$hosts"); do
		host="${host%:*}"
		[[ "$host" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ && "$host" != 127.0.0.1 ]] &&
			printf '%s/32\n' "$host"
	done
	return 0
}

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
	(cd / && runuser -u postgres -- /usr/bin/psql --cluster "$PG_MAJOR/$cluster" -X -w -q -A -t \
		-v ON_ERROR_STOP=1 "$@")
}
wait_accepting() {
	local cluster="$1" deadline=$((SECONDS + 120))
	until (cd / && runuser -u postgres -- /usr/bin/pg_isready --cluster "$PG_MAJOR/$cluster" -q); do
		((SECONDS < deadline)) || die "PostgreSQL $PG_MAJOR/$cluster does not accept connections"
		sleep 1
	done
}
# ensure_app_role CLUSTER CREATEDB|NOCREATEDB: the login role dob and its database dob.
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

# --- every run: the replication password and pg_hba.conf -----------------------------------

fetch_replication_password() {
	local parameter="${DOB_REPLICATION_PASSWORD_PARAMETER:-}" value
	[[ -n "$parameter" ]] || return 0
	if value="$(aws ssm get-parameter ${AWS_REGION:+--region "$AWS_REGION"} --name "$parameter" \
		--with-decryption --query Parameter.Value --output text 2>&1)" && [[ -n "$value" ]]; then
		install -d -m 0755 "$(dirname "$REPL_PASSWORD_FILE")"
		printf '%s\n' "$value" >"$REPL_PASSWORD_FILE.tmp"
		chmod 0600 "$REPL_PASSWORD_FILE.tmp"
		mv "$REPL_PASSWORD_FILE.tmp" "$REPL_PASSWORD_FILE"
		log "replication password fetched from SSM parameter $parameter"
	elif [[ -s "$REPL_PASSWORD_FILE" ]]; then
		log "warning: cannot read SSM parameter $parameter (keeping $REPL_PASSWORD_FILE): $value"
	else
		die "cannot read SSM parameter $parameter: $value"
	fi
}

# write_hba_block: dob's lines at the top of pg_hba.conf (first match wins, and Debian's
# default asks a password from 127.0.0.1), between markers, rewritten at every run.
write_hba_block() {
	local method=trust cidr block
	[[ -n "${DOB_APP_PASSWORD_FILE:-}" ]] && method=scram-sha-256
	block="$(
		echo "# BEGIN dob (managed by /usr/local/lib/dob/role-setup.sh; edit /etc/dob/dob.env instead)"
		for cidr in $(app_cidrs); do
			printf 'host    dob          dob      %-18s %s\n' "$cidr" "$method"
		done
		for cidr in $(split_list "${DOB_REPLICA_CIDRS:-}"); do
			printf 'hostssl replication  %-8s %-18s scram-sha-256\n' "$REPL_USER" "$cidr"
		done
		echo "# END dob"
	)"
	awk -v block="$block" '
		/^# BEGIN dob / { skip = 1; next }
		skip && /^# END dob/ { skip = 0; next }
		skip { next }
		!done && !/^[[:space:]]*(#|$)/ { print block; done = 1 }
		{ print }
		END { if (!done) print block }
	' "$HBA" >"$HBA.dob-new"
	chown postgres:postgres "$HBA.dob-new"
	chmod 0640 "$HBA.dob-new"
	mv "$HBA.dob-new" "$HBA"
}

# --- first boot --------------------------------------------------------------------------------

init_empty_primary() {
	[[ -f "$DATA_DIR/PG_VERSION" ]] && return 0
	# A new, empty data volume mounted over the image's cluster.
	cluster_stop main
	log "initialising the empty data directory $DATA_DIR"
	install -d -m 0700 -o postgres -g postgres "$DATA_DIR"
	(cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$DATA_DIR" --encoding=UTF8 \
		--locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256 >/dev/null)
}

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

clone_upstream() {
	if [[ -f "$DATA_DIR/standby.signal" ]]; then
		log "$DATA_DIR is already a standby: keeping it"
		return 0
	fi
	[[ -x "$LIB_DIR/make-replica.sh" ]] || die "$LIB_DIR/make-replica.sh is missing"
	[[ -r "$REPL_PASSWORD_FILE" ]] || die "replication password file $REPL_PASSWORD_FILE is missing"
	data_dir_is_disposable ||
		die "$DATA_DIR holds databases of its own: refusing to replace it with a copy of $DOB_PRIMARY_HOST"
	cluster_stop main
	local deadline=$((SECONDS + WAIT)) attempt=1
	while :; do
		log "copying $DOB_PRIMARY_HOST into $DATA_DIR (attempt $attempt)"
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
		((SECONDS < deadline)) || die "could not copy $DOB_PRIMARY_HOST within ${WAIT}s"
		attempt=$((attempt + 1))
		sleep 15
	done
	log "$DATA_DIR is now a streaming replica of $DOB_PRIMARY_HOST"
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

# --- every run: the primary's roles --------------------------------------------------------------

configure_primary() {
	if [[ "$(psql_as_postgres main -d postgres -c 'SELECT pg_is_in_recovery()')" != f ]]; then
		log "warning: DOB_ROLE=primary but the local server is in recovery: no roles changed"
		return 0
	fi
	ensure_app_role main NOCREATEDB
	if [[ -n "${DOB_APP_PASSWORD_FILE:-}" ]]; then
		local password
		password="$(head -n 1 "$DOB_APP_PASSWORD_FILE")"
		# On standard input, so the password shows in no process list.
		printf "ALTER ROLE dob PASSWORD '%s';\n" "${password//\'/\'\'}" |
			psql_as_postgres main -d postgres
	fi
	log "role and database dob ready"
	local cidr
	for cidr in $(split_list "${DOB_REPLICA_CIDRS:-}"); do
		[[ -x "$LIB_DIR/primary-allow-replica.sh" ]] || die "$LIB_DIR/primary-allow-replica.sh is missing"
		[[ -r "$REPL_PASSWORD_FILE" ]] || die "replication password file $REPL_PASSWORD_FILE is missing"
		"$LIB_DIR/primary-allow-replica.sh" --replica-cidr "$cidr" --user "$REPL_USER" \
			--password-file "$REPL_PASSWORD_FILE"
	done
}

# --- the run -------------------------------------------------------------------------------------

first_boot=1
if [[ -f "$MARKER" ]]; then
	first_boot=0
	log "first-boot work already done ($(head -n 1 "$MARKER")); applying the configuration"
else
	log "first boot: setting up this host as $ROLE"
fi

fetch_replication_password
write_hba_block

if ((first_boot)) && command -v make-ssl-cert >/dev/null; then
	log "generating this host's TLS key pair"
	make-ssl-cert generate-default-snakeoil --force-overwrite
fi
if ((first_boot)); then
	case "$ROLE" in
	primary) init_empty_primary ;;
	replica | dr-replica) clone_upstream ;;
	esac
fi

cluster_start main
wait_accepting main
pg_ctlcluster "$PG_MAJOR" main reload
if [[ "$ROLE" == primary ]]; then
	configure_primary
fi
if ((first_boot)) && [[ "$ROLE" == dr-replica ]]; then
	setup_drill_cluster
fi

if ((first_boot)); then
	install -d -m 0755 "$STATE_DIR"
	printf '%s %s\n' "$ROLE" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$MARKER.tmp"
	chmod 0644 "$MARKER.tmp"
	mv "$MARKER.tmp" "$MARKER"
fi
log "done: this host is set up as $ROLE"
