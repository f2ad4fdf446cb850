#!/usr/bin/env bash
# role-setup.sh: PostgreSQL setup of a dob host, as its role says. Run at every boot by
# dob-role-setup.service (root), installed as /usr/local/lib/dob/role-setup.sh.
#
#   role-setup.sh
#
# Reads /etc/dob/dob.env (KEY=VALUE lines, written by user data; see dob.env.example):
#   DOB_ROLE                            primary | replica | dr-replica: PostgreSQL run by
#                                       its Debian unit, failover by hand; or
#                                       patroni | witness | dr-standby: see "Patroni roles"
#                                       below (required)
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
#
# Patroni roles (eu-west-1's database hosts, its witness, the DR host):
#   patroni     an etcd member and a Patroni member of cluster DOB_PATRONI_SCOPE (dob);
#               Patroni decides which member leads and starts PostgreSQL itself
#   witness     an etcd member only: the third vote, in a third AZ
#   dr-standby  a one-member etcd of its own and a Patroni standby cluster (dob-dr)
#               following whichever DOB_STANDBY_OF host leads; dob-promote --takeover
#               promotes it; also the restore-drill cluster, as dr-replica
# Their variables:
#   DOB_HOST_ADDRESS                    this host's address (default: its first one)
#   DOB_ETCD_INITIAL_CLUSTER            patroni, witness: the three members,
#                                       name=http://address:2380,... (required)
#   DOB_ETCD_NAME                       this member's name in it (default: short host name)
#   DOB_STANDBY_OF                      dr-standby: eu-west-1's database hosts, a,b (required)
#   DOB_SECRETS_PARAMETER_PREFIX        SSM SecureString parameters <prefix>superuser,
#                                       replication, rewind, app, restapi: fetched at every
#                                       run into /etc/dob/secrets (0640 root:postgres);
#                                       without it those files must exist. The app password
#                                       is also copied to /etc/dob/app-password (0640
#                                       root:dob) for DOB_DATABASE_PASSWORD_FILE
#   DOB_PATRONI_SCOPE, DOB_SYNCHRONOUS_MODE, DOB_PATRONI_TTL, DOB_WATCHDOG, ...
#                                       passed to patroni-config.sh (see its --help)
# First boot: the image's own cluster 15/main is retired (start.conf disabled, data
# directory emptied if it holds nothing of value) so that Patroni initialises or copies
# the data directory itself. Every run: /etc/default/etcd and /etc/patroni/config.yml
# rewritten from the variables. etcd.service and patroni.service are enabled by user data.
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
primary | replica | dr-replica | patroni | witness | dr-standby) ;;
"") die "DOB_ROLE is not set in $ENV_FILE (primary, replica, dr-replica, patroni, witness or dr-standby)" ;;
*) die "DOB_ROLE=$ROLE in $ENV_FILE is not primary, replica, dr-replica, patroni, witness or dr-standby" ;;
esac
consensus_role=0
case "$ROLE" in patroni | witness | dr-standby) consensus_role=1 ;; esac
if ((!consensus_role)) && [[ "$ROLE" != primary ]]; then
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
		# On standard input, so the password shows in no process list; with statement
		# logging off for the session, so it reaches no server log either (not even
		# when the statement fails).
		printf "SET log_statement = 'none';\nSET log_min_error_statement = 'panic';\nALTER ROLE dob PASSWORD '%s';\n" \
			"${password//\'/\'\'}" |
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

write_marker() {
	install -d -m 0755 "$STATE_DIR"
	printf '%s %s\n' "$ROLE" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$MARKER.tmp"
	chmod 0644 "$MARKER.tmp"
	mv "$MARKER.tmp" "$MARKER"
}

# --- Patroni roles ---------------------------------------------------------------------------------

SECRETS_DIR=/etc/dob/secrets
PATRONI_DIR=/etc/patroni

fetch_patroni_secrets() {
	local prefix="${DOB_SECRETS_PARAMETER_PREFIX:-}" name value
	install -d -m 0750 -o root -g postgres "$SECRETS_DIR"
	for name in superuser replication rewind app restapi; do
		if [[ -n "$prefix" ]]; then
			value="$(aws ssm get-parameter ${AWS_REGION:+--region "$AWS_REGION"} --name "$prefix$name" \
				--with-decryption --query Parameter.Value --output text 2>&1)" ||
				die "cannot read SSM parameter $prefix$name: $value"
			[[ -n "$value" ]] || die "SSM parameter $prefix$name is empty"
			printf '%s\n' "$value" >"$SECRETS_DIR/$name.tmp"
			chown root:postgres "$SECRETS_DIR/$name.tmp"
			chmod 0640 "$SECRETS_DIR/$name.tmp"
			mv "$SECRETS_DIR/$name.tmp" "$SECRETS_DIR/$name"
		fi
		[[ -s "$SECRETS_DIR/$name" ]] ||
			die "$SECRETS_DIR/$name is missing (set DOB_SECRETS_PARAMETER_PREFIX, or write it)"
	done
	[[ -z "$prefix" ]] || log "Patroni's passwords fetched from SSM parameters $prefix*"
	# The application's password for dob-api, dob-backup and dob-restore (user dob):
	# DOB_DATABASE_PASSWORD_FILE names it, pg_hba asks it of every TCP connection.
	if getent group dob >/dev/null; then
		install -m 0640 -o root -g dob "$SECRETS_DIR/app" /etc/dob/app-password.tmp
		mv /etc/dob/app-password.tmp /etc/dob/app-password
	fi
}

# etcd_client_hosts CLUSTER: name=http://host:2380,... as host:2379,...
etcd_client_hosts() {
	local member out=() url host
	for member in $(split_list "$1"); do
		url="${member#*=}"
		host="${url#*://}"
		host="${host%:*}"
		out+=("$host:2379")
	done
	local IFS=,
	printf '%s' "${out[*]}"
}

write_etcd_config() {
	local name="$1" address="$2" cluster="$3" token="$4"
	cat >/etc/default/etcd.dob-new <<-EOF
		# Written by dob's role-setup.sh from /etc/dob/dob.env; edit that instead.
		ETCD_NAME="$name"
		ETCD_DATA_DIR="/var/lib/etcd/default"
		ETCD_LISTEN_PEER_URLS="http://$address:2380"
		ETCD_INITIAL_ADVERTISE_PEER_URLS="http://$address:2380"
		ETCD_LISTEN_CLIENT_URLS="http://$address:2379,http://127.0.0.1:2379"
		ETCD_ADVERTISE_CLIENT_URLS="http://$address:2379"
		ETCD_INITIAL_CLUSTER="$cluster"
		ETCD_INITIAL_CLUSTER_STATE="new"
		ETCD_INITIAL_CLUSTER_TOKEN="$token"
		# A leader renews its key every loop; an election within a second of a lost member.
		ETCD_HEARTBEAT_INTERVAL="100"
		ETCD_ELECTION_TIMEOUT="1000"
	EOF
	chmod 0644 /etc/default/etcd.dob-new
	mv /etc/default/etcd.dob-new /etc/default/etcd
	log "etcd member $name of $cluster"
}

# retire_image_cluster: Patroni runs PostgreSQL; the Debian wrapper must never start the
# image's cluster on the same data directory, and Patroni needs it empty to initialise
# or copy it. A data directory with databases of its own is kept (Patroni then starts it).
retire_image_cluster() {
	printf 'disabled\n' >"/etc/postgresql/$PG_MAJOR/main/start.conf"
	cluster_stop main
	if data_dir_is_disposable && [[ -e "$DATA_DIR/PG_VERSION" ]]; then
		log "emptying the image's fresh cluster in $DATA_DIR: Patroni initialises or copies it"
		find "$DATA_DIR" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
	fi
	install -d -m 0700 -o postgres -g postgres "$DATA_DIR"
}

setup_consensus_role() {
	local address name cluster scope token
	address="${DOB_HOST_ADDRESS:-$(hostname -I | awk '{ print $1 }')}"
	[[ -n "$address" ]] || die "no address for this host: set DOB_HOST_ADDRESS"
	name="${DOB_ETCD_NAME:-$short_host}"
	scope="${DOB_PATRONI_SCOPE:-dob}"
	[[ "$ROLE" != dr-standby ]] || scope="${DOB_PATRONI_SCOPE:-dob-dr}"
	cluster="${DOB_ETCD_INITIAL_CLUSTER:-}"
	if [[ -z "$cluster" ]]; then
		[[ "$ROLE" == dr-standby ]] || die "DOB_ROLE=$ROLE needs DOB_ETCD_INITIAL_CLUSTER"
		cluster="$name=http://$address:2380"
	fi
	[[ ",$cluster," == *",$name=http://$address:2380,"* ]] ||
		die "DOB_ETCD_INITIAL_CLUSTER does not list this member as $name=http://$address:2380"
	token="${DOB_ETCD_CLUSTER_TOKEN:-dob-$scope}"
	write_etcd_config "$name" "$address" "$cluster" "$token"
	[[ "$ROLE" != witness ]] || return 0

	if [[ "$ROLE" == dr-standby ]]; then
		[[ -n "${DOB_STANDBY_OF:-}" ]] || die "DOB_ROLE=dr-standby needs DOB_STANDBY_OF (eu-west-1's database hosts)"
	fi
	fetch_patroni_secrets
	((!first_boot)) || retire_image_cluster
	local peers
	peers="$( (
		split_list "${DOB_REPLICA_CIDRS:-}"
		app_cidrs
	) | tr ' ' '\n' | grep -v '^$' | sort -u | paste -sd, -)"
	install -d -m 0750 -o postgres -g postgres "$PATRONI_DIR"
	DOB_HOST_ADDRESS="$address" DOB_ETCD_HOSTS="$(etcd_client_hosts "$cluster")" \
		DOB_PEER_CIDRS="$peers" DOB_PATRONI_NAME="$name" DOB_PATRONI_SCOPE="$scope" \
		DOB_SECRETS_DIR="$SECRETS_DIR" DOB_PG_DATA_DIR="$DATA_DIR" \
		"$LIB_DIR/patroni-config.sh" --out "$PATRONI_DIR"
	# Debian's patroni.service reads config.yml.
	ln -sf patroni.yml "$PATRONI_DIR/config.yml"
	if ((first_boot)) && [[ "$ROLE" == dr-standby ]]; then
		setup_drill_cluster
	fi
}

# --- the run -------------------------------------------------------------------------------------

first_boot=1
if [[ -f "$MARKER" ]]; then
	first_boot=0
	log "first-boot work already done ($(head -n 1 "$MARKER")); applying the configuration"
else
	log "first boot: setting up this host as $ROLE"
fi

if ((consensus_role)); then
	if ((first_boot)) && command -v make-ssl-cert >/dev/null; then
		log "generating this host's TLS key pair"
		make-ssl-cert generate-default-snakeoil --force-overwrite
	fi
	setup_consensus_role
	((!first_boot)) || write_marker
	log "done: this host is set up as $ROLE"
	exit 0
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

((!first_boot)) || write_marker
log "done: this host is set up as $ROLE"
