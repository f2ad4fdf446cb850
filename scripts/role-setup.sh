#!/usr/bin/env bash
# role-setup.sh: PostgreSQL setup of a dob host, as its role says. Run at every boot by
# dob-role-setup.service (root, sandboxed), installed as /usr/local/lib/dob/role-setup.sh.
#
#   role-setup.sh
#
# Secure by default: every TCP connection to PostgreSQL is TLS (plaintext is rejected by
# pg_hba) and asks a password (scram-sha-256); the local socket keeps peer authentication.
# Without this host's TLS files or without the app role's password it refuses to set the
# host up (exit 1): no TLS, no start.
#
# Reads /etc/dob/dob.env (KEY=VALUE lines, written by user data; see dob.env.example):
#   DOB_ROLE                            primary | replica | dr-replica: PostgreSQL run by
#                                       its Debian unit, failover by hand; or
#                                       patroni | witness | dr-standby: see "Patroni roles"
#                                       below (required)
#   DOB_PRIMARY_HOST                    replicas: the upstream to copy and stream from (a
#                                       name or address its certificate carries)
#   DOB_PRIMARY_PORT                    replicas: its port (default 5432)
#   DOB_REPLICATION_USER                replication role (default replicator)
#   DOB_REPLICATION_PASSWORD_FILE       its password, one line (default
#                                       /etc/dob/replication-password; root, 0600)
#   DOB_REPLICATION_PASSWORD_PARAMETER  SSM SecureString parameter holding that password:
#                                       when set, fetched into the file at every run
#                                       (aws cli, instance profile, AWS_REGION)
#   DOB_REPLICATION_SSLMODE             replicas: verify-full (default: the upstream's
#                                       certificate must chain to /etc/dob/tls/ca.pem and
#                                       name DOB_PRIMARY_HOST) | require | prefer
#   DOB_REPLICATION_SLOT                replicas: slot on the upstream (default dob_<short host name>)
#   DOB_REPLICA_CIDRS                   who may replicate from this host (comma/space list);
#                                       on a replica too (the DR host cascades from one)
#   DOB_APP_CIDRS                       who may connect as role dob to database dob over
#                                       TCP (default: 127.0.0.1/32 and each host named in
#                                       DOB_DATABASE_URL, as /32: in this topology every host's
#                                       dob-api connects to the database hosts it lists)
#   DOB_ROLE_SETUP_WAIT                 replicas: seconds to keep retrying the copy while the
#                                       upstream is not ready yet (default 1800)
# The password of role dob (primary, replica, dr-replica: required; the first of):
#   DOB_APP_PASSWORD_FILE               a file an operator wrote (first line)
#   DOB_APP_PASSWORD_PARAMETER          an SSM SecureString parameter holding it
#   DOB_SECRETS_PARAMETER_PREFIX        then the parameter <prefix>app
# It is written to /etc/dob/app-password (0640 root:dob), the file dob-api, dob-backup and
# dob-restore read (DOB_DATABASE_PASSWORD_FILE=/etc/dob/app-password); a primary sets it
# as role dob's password at every run.
# This host's TLS files, in /etc/dob/tls (every role that runs PostgreSQL: required):
#   DOB_TLS_CA_PARAMETER                SSM parameter: the internal CA's certificate -> ca.pem
#                                       (0644): what clients and replicas verify servers by
#   DOB_TLS_CERT_PARAMETER              SSM parameter: this host's certificate -> server.pem (0644)
#   DOB_TLS_KEY_PARAMETER               SSM SecureString: its private key -> server.key
#                                       (0640 root:postgres)
#                                       Each is fetched at every run when set (a failed
#                                       fetch keeps the file there, with a warning); when
#                                       not set, the file must already be there (written by
#                                       an operator).
#
# Once, at first boot (then /var/lib/dob/role-setup.done exists):
#   primary: initialises the data directory if it is empty
#   replica, dr-replica: if the data directory is empty or the image's freshly initialised
#     cluster, stops the cluster, wipes it, copies the upstream with make-replica.sh
#     (verified TLS, retried until the upstream answers) and starts the cluster. A data
#     directory that holds databases of its own is never wiped.
#   dr-replica: role dob (CREATEDB) and database dob in the restore-drill cluster 15/drill
# At every run (idempotent, so a rotated password, certificate or a changed CIDR list is
# applied by `systemctl restart dob-role-setup`):
#   the passwords and TLS files from SSM; conf.d/dob-tls.conf (ssl on, this host's
#   certificate and key, the CA); a managed block at the top of pg_hba.conf: plaintext
#   TCP rejected (hostnossl ... reject, normal and replication connections), then
#   hostssl scram-sha-256 for role dob from DOB_APP_CIDRS and for replication from
#   DOB_REPLICA_CIDRS; a reload, failing on any error PostgreSQL reports in its
#   configuration files; on a primary (not in recovery): role and database dob, role
#   dob's password, and primary-allow-replica.sh for each DOB_REPLICA_CIDRS network.
#
# Patroni roles (eu-west-1's database hosts, its witness, the DR host):
#   patroni     an etcd member and a Patroni member of cluster DOB_PATRONI_SCOPE (dob);
#               Patroni decides which member leads and starts PostgreSQL itself
#   witness     an etcd member only: the third vote, in a third AZ (TLS files fetched
#               when configured, not required: it runs no PostgreSQL)
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
#   DOB_TLS_*                           as above; passed to patroni-config.sh as
#                                       DOB_PG_CERT_FILE, DOB_PG_KEY_FILE, DOB_PG_CA_FILE
#                                       (ssl on, verify-full for Patroni's own connections)
#   DOB_S3_BUCKET, DOB_S3_REGION, DOB_S3_KMS_KEY_ID
#                                       patroni, dr-standby: pgBackRest's repository, prefix
#                                       pgbackrest/ of the region's backup bucket (SSE-KMS
#                                       with that key, the instance profile's credentials),
#                                       written to /etc/pgbackrest/pgbackrest.conf (0640
#                                       root:postgres), passed to patroni-config.sh as
#                                       DOB_PGBACKREST_CONFIG: patroni archives WAL
#                                       (asynchronous archive-push) and fetches it back
#                                       (restore_command). dr-standby: its own
#                                       repository is pgbackrest-dr/ (archiving from a
#                                       takeover's promotion on); it fetches from the
#                                       replicated pgbackrest/ (/etc/pgbackrest/
#                                       upstream.conf). Without a bucket: no archiving,
#                                       with a warning
#   DOB_PGBACKREST_RETENTION_DAYS       full backups kept by pgBackRest's expire (default 14)
#   DOB_PATRONI_SCOPE, DOB_SYNCHRONOUS_MODE, DOB_PATRONI_TTL, DOB_WATCHDOG, ...
#                                       passed to patroni-config.sh (see its --help)
# First boot: the image's own cluster 15/main is retired (start.conf disabled, data
# directory emptied if it holds nothing of value) so that Patroni initialises or copies
# the data directory itself. Every run: /etc/default/etcd and /etc/patroni/config.yml
# rewritten from the variables. etcd.service and patroni.service are enabled by user data.
#
# Secrets never reach a command line, a log line or the server log: they are read from
# files and sent on standard input, and ALTER ROLE runs with statement logging off.
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
TLS_CONF="/etc/postgresql/$PG_MAJOR/main/conf.d/dob-tls.conf"
TLS_DIR=/etc/dob/tls
TLS_CA="$TLS_DIR/ca.pem"
TLS_CERT="$TLS_DIR/server.pem"
TLS_KEY="$TLS_DIR/server.key"
APP_PASSWORD=/etc/dob/app-password

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

# --- every run: secrets, TLS files and pg_hba.conf ----------------------------------------

# fetch_parameter NAME FILE MODE OWNER:GROUP: the decrypted value of SSM parameter NAME
# written to FILE (atomically, then MODE and OWNER:GROUP). When SSM cannot be read, an
# existing FILE is kept with a warning (a reboot during an SSM outage still starts on what
# the host had); without one it is fatal. The value is never logged: the aws cli's
# messages go to a file of their own, so a warning cannot end up in FILE either.
fetch_parameter() {
	local name="$1" file="$2" mode="$3" owner="$4" error
	if aws ssm get-parameter ${AWS_REGION:+--region "$AWS_REGION"} --name "$name" \
		--with-decryption --query Parameter.Value --output text >"$file.tmp" 2>"$file.err" &&
		[[ -s "$file.tmp" ]]; then
		chown "$owner" "$file.tmp"
		chmod "$mode" "$file.tmp"
		mv -f "$file.tmp" "$file"
		rm -f "$file.err"
		log "$file fetched from SSM parameter $name"
		return 0
	fi
	error="$(tr '\n' ' ' <"$file.err")"
	rm -f "$file.tmp" "$file.err"
	if [[ -s "$file" ]]; then
		log "warning: cannot read SSM parameter $name (keeping $file): ${error:-empty value}"
	else
		die "cannot read SSM parameter $name: ${error:-empty value}"
	fi
}

fetch_replication_password() {
	local parameter="${DOB_REPLICATION_PASSWORD_PARAMETER:-}"
	[[ -n "$parameter" ]] || return 0
	install -d -m 0755 "$(dirname "$REPL_PASSWORD_FILE")"
	fetch_parameter "$parameter" "$REPL_PASSWORD_FILE" 0600 root:root
}

# setup_app_password: role dob's password in /etc/dob/app-password (0640 root:dob, for
# DOB_DATABASE_PASSWORD_FILE), from the operator's DOB_APP_PASSWORD_FILE or SSM. Required:
# pg_hba asks every TCP connection for a password, so without one nothing could connect.
setup_app_password() {
	local parameter="${DOB_APP_PASSWORD_PARAMETER:-}"
	if [[ -z "$parameter" && -n "${DOB_SECRETS_PARAMETER_PREFIX:-}" ]]; then
		parameter="${DOB_SECRETS_PARAMETER_PREFIX}app"
	fi
	if [[ -n "${DOB_APP_PASSWORD_FILE:-}" ]]; then
		# The operator's file wins over SSM: it was set on purpose. Copied unless it is
		# the target itself, so the tools always read the same path.
		if [[ "$(realpath "$DOB_APP_PASSWORD_FILE")" != "$(realpath -m "$APP_PASSWORD")" ]]; then
			install -m 0640 -o root -g dob "$DOB_APP_PASSWORD_FILE" "$APP_PASSWORD.tmp"
			mv -f "$APP_PASSWORD.tmp" "$APP_PASSWORD"
		fi
	elif [[ -n "$parameter" ]]; then
		fetch_parameter "$parameter" "$APP_PASSWORD" 0640 root:dob
	else
		die "no password for role dob: set DOB_APP_PASSWORD_PARAMETER or DOB_SECRETS_PARAMETER_PREFIX (SSM), or write a file and name it in DOB_APP_PASSWORD_FILE"
	fi
	chown root:dob "$APP_PASSWORD"
	chmod 0640 "$APP_PASSWORD"
	[[ -n "$(head -n 1 "$APP_PASSWORD")" ]] || die "$APP_PASSWORD holds no password on its first line"
}

# setup_tls REQUIRED: this host's CA certificate, certificate and key in /etc/dob/tls, from
# SSM (DOB_TLS_*_PARAMETER) or left there by an operator. REQUIRED=1: a host that runs
# PostgreSQL does not start without them (no plaintext fallback).
setup_tls() {
	local required="$1" spec parameter file mode owner missing=()
	# PostgreSQL (as postgres) reads the certificate and the key, replicas the CA: it must
	# be able to pass through /etc/dob (0750 root:dob in the image). Only traversal is
	# granted (no listing); every file in /etc/dob keeps its own restrictive mode.
	chmod o+x /etc/dob
	install -d -m 0755 -o root -g root "$TLS_DIR"
	for spec in "DOB_TLS_CA_PARAMETER $TLS_CA 0644 root:root" \
		"DOB_TLS_CERT_PARAMETER $TLS_CERT 0644 root:root" \
		"DOB_TLS_KEY_PARAMETER $TLS_KEY 0640 root:postgres"; do
		read -r parameter file mode owner <<<"$spec"
		if [[ -n "${!parameter:-}" ]]; then
			fetch_parameter "${!parameter}" "$file" "$mode" "$owner"
		fi
		if [[ -s "$file" ]]; then
			# An operator's file gets the same owner and mode (PostgreSQL refuses a key
			# that others can read).
			chown "$owner" "$file"
			chmod "$mode" "$file"
		else
			missing+=("$file (or $parameter)")
		fi
	done
	if ((${#missing[@]})); then
		((!required)) || die "no TLS for PostgreSQL: missing ${missing[*]}"
		return 0
	fi
	grep -q 'BEGIN CERTIFICATE' "$TLS_CA" || die "$TLS_CA holds no PEM certificate"
	grep -q 'BEGIN CERTIFICATE' "$TLS_CERT" || die "$TLS_CERT holds no PEM certificate"
	grep -q 'PRIVATE KEY' "$TLS_KEY" || die "$TLS_KEY holds no PEM private key"
	log "TLS: $TLS_CERT with its key, CA $TLS_CA"
}

# write_tls_conf: the Debian cluster's TLS settings (after the image's dob.conf, which
# conf.d orders first; they replace postgresql.conf's snakeoil pair).
write_tls_conf() {
	cat >"$TLS_CONF.dob-new" <<-EOF
		# Written by dob's role-setup.sh at every run; the files come from /etc/dob/dob.env's
		# DOB_TLS_* parameters. pg_hba.conf rejects plaintext TCP.
		ssl = on
		ssl_cert_file = '$TLS_CERT'
		ssl_key_file = '$TLS_KEY'
		ssl_ca_file = '$TLS_CA'
		ssl_min_protocol_version = 'TLSv1.2'
	EOF
	chown postgres:postgres "$TLS_CONF.dob-new"
	chmod 0644 "$TLS_CONF.dob-new"
	mv -f "$TLS_CONF.dob-new" "$TLS_CONF"
}

# write_hba_block: dob's lines at the top of pg_hba.conf (first match wins, so they come
# before Debian's defaults), between markers, rewritten at every run. Plaintext TCP is
# rejected first ("all" does not match replication connections, hence their own lines);
# then TLS with a password for the app and the replicas. The local socket keeps Debian's
# peer rules.
write_hba_block() {
	local cidr block net
	block="$(
		echo "# BEGIN dob (managed by /usr/local/lib/dob/role-setup.sh; edit /etc/dob/dob.env instead)"
		for net in 0.0.0.0/0 ::/0; do
			printf 'hostnossl all          all      %-18s reject\n' "$net"
			printf 'hostnossl replication  all      %-18s reject\n' "$net"
		done
		for cidr in $(app_cidrs); do
			printf 'hostssl   dob          dob      %-18s scram-sha-256\n' "$cidr"
		done
		for cidr in $(split_list "${DOB_REPLICA_CIDRS:-}"); do
			printf 'hostssl   replication  %-8s %-18s scram-sha-256\n' "$REPL_USER" "$cidr"
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

# reload_checked CLUSTER: reload, then fail on any error PostgreSQL reports in its
# configuration or pg_hba.conf (a reload keeps the old rules and only logs the error;
# a setting that waits for a restart is not an error), and on TLS not in force with
# this host's certificate.
reload_checked() {
	local cluster="$1" errors cert
	pg_ctlcluster "$PG_MAJOR" "$cluster" reload
	errors="$(psql_as_postgres "$cluster" -d postgres <<-'SQL'
		SELECT sourcefile || ':' || sourceline || ': ' || error FROM pg_file_settings
		 WHERE error IS NOT NULL AND error <> 'setting could not be applied'
		UNION ALL
		SELECT 'pg_hba.conf:' || line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL;
	SQL
	)" || die "reading PostgreSQL's configuration errors failed"
	[[ -z "$errors" ]] || die "PostgreSQL rejects its configuration: $errors"
	# Settings are applied by the postmaster shortly after the signal.
	for _ in $(seq 1 20); do
		cert="$(psql_as_postgres "$cluster" -d postgres -c 'SHOW ssl_cert_file')"
		[[ "$cert" != "$TLS_CERT" ]] || break
		sleep 0.5
	done
	[[ "$cert" == "$TLS_CERT" && "$(psql_as_postgres "$cluster" -d postgres -c 'SHOW ssl')" == on ]] ||
		die "PostgreSQL does not use $TLS_CERT (ssl_cert_file is $cert)"
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
			--sslmode "${DOB_REPLICATION_SSLMODE:-verify-full}" --ca-file "$TLS_CA" \
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
	local password
	password="$(head -n 1 "$APP_PASSWORD")"
	# On standard input (printf is a shell builtin), so the password shows in no process
	# list; with statement logging off for the session, so it reaches no server log
	# either (not even when the statement fails). Stored as a SCRAM verifier.
	printf "SET log_statement = 'none';\nSET log_min_error_statement = 'panic';\nSET password_encryption = 'scram-sha-256';\nALTER ROLE dob PASSWORD '%s';\n" \
		"${password//\'/\'\'}" |
		psql_as_postgres main -d postgres
	log "role and database dob ready (password from $APP_PASSWORD)"
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
	local prefix="${DOB_SECRETS_PARAMETER_PREFIX:-}" name
	install -d -m 0750 -o root -g postgres "$SECRETS_DIR"
	for name in superuser replication rewind app restapi; do
		if [[ -n "$prefix" ]]; then
			fetch_parameter "$prefix$name" "$SECRETS_DIR/$name" 0640 root:postgres
		fi
		[[ -s "$SECRETS_DIR/$name" ]] ||
			die "$SECRETS_DIR/$name is missing (set DOB_SECRETS_PARAMETER_PREFIX, or write it)"
	done
	[[ -z "$prefix" ]] || log "Patroni's passwords fetched from SSM parameters $prefix*"
	# The application's password for dob-api, dob-backup and dob-restore (user dob):
	# DOB_DATABASE_PASSWORD_FILE names it, pg_hba asks it of every TCP connection.
	if getent group dob >/dev/null; then
		install -m 0640 -o root -g dob "$SECRETS_DIR/app" "$APP_PASSWORD.tmp"
		mv -f "$APP_PASSWORD.tmp" "$APP_PASSWORD"
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
	if [[ "$ROLE" == witness ]]; then
		setup_tls 0
		return 0
	fi
	setup_tls 1

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
	# The primary region archives into pgbackrest/ of its bucket, which S3 replicates to
	# the DR region's. The DR host reads that copy (its standby cluster's restore_command,
	# upstream.conf) and may not write it; its own repository, pgbackrest-dr/ of its
	# bucket, is where it archives from the moment a takeover promotes it (archive_mode
	# is on already: no restart then) and where dob-promote --takeover takes the first
	# base backup.
	local pgbackrest_config="" upstream_config=""
	if [[ "$ROLE" == dr-standby ]]; then
		pgbackrest_config="$(write_pgbackrest_config "$PGBACKREST_CONF" /pgbackrest-dr)"
		upstream_config="$(write_pgbackrest_config "$PGBACKREST_UPSTREAM_CONF" /pgbackrest)"
	else
		pgbackrest_config="$(write_pgbackrest_config "$PGBACKREST_CONF" /pgbackrest)"
	fi
	DOB_HOST_ADDRESS="$address" DOB_ETCD_HOSTS="$(etcd_client_hosts "$cluster")" \
		DOB_PEER_CIDRS="$peers" DOB_PATRONI_NAME="$name" DOB_PATRONI_SCOPE="$scope" \
		DOB_SECRETS_DIR="$SECRETS_DIR" DOB_PG_DATA_DIR="$DATA_DIR" \
		DOB_PG_CERT_FILE="$TLS_CERT" DOB_PG_KEY_FILE="$TLS_KEY" DOB_PG_CA_FILE="$TLS_CA" \
		DOB_PGBACKREST_CONFIG="$pgbackrest_config" DOB_PGBACKREST_UPSTREAM_CONFIG="$upstream_config" \
		"$LIB_DIR/patroni-config.sh" --out "$PATRONI_DIR"
	# The image's patroni.service, patronictl and dob-promote read config.yml.
	ln -sf patroni.yml "$PATRONI_DIR/config.yml"
	if ((first_boot)) && [[ "$ROLE" == dr-standby ]]; then
		setup_drill_cluster
	fi
}

# pgBackRest's configuration CONF for the repository at REPO_PATH of the region's backup
# bucket. Prints CONF, or nothing when there is no bucket.
PGBACKREST_CONF=/etc/pgbackrest/pgbackrest.conf
PGBACKREST_UPSTREAM_CONF=/etc/pgbackrest/upstream.conf
write_pgbackrest_config() {
	local conf=$1 repo_path=$2
	local bucket="${DOB_S3_BUCKET:-}" region="${DOB_S3_REGION:-${AWS_REGION:-}}"
	local retention="${DOB_PGBACKREST_RETENTION_DAYS:-14}" dir
	if [[ -z "$bucket" || -z "$region" ]]; then
		log "warning: no DOB_S3_BUCKET/DOB_S3_REGION: no WAL archive, no point-in-time recovery"
		return 0
	fi
	[[ "$retention" =~ ^[1-9][0-9]{0,3}$ ]] ||
		die "DOB_PGBACKREST_RETENTION_DAYS=$retention is not 1 to 9999 days"
	for dir in /var/lib/pgbackrest /var/log/pgbackrest /var/spool/pgbackrest; do
		install -d -m 0750 -o postgres -g postgres "$dir"
	done
	install -d -m 0755 -o root -g root /etc/pgbackrest
	{
		echo "# Written by dob's role-setup.sh at every run, from /etc/dob/dob.env."
		echo "[global]"
		echo "repo1-type=s3"
		echo "repo1-path=$repo_path"
		echo "repo1-s3-bucket=$bucket"
		echo "repo1-s3-region=$region"
		echo "repo1-s3-endpoint=s3.$region.amazonaws.com"
		# The instance profile's credentials: no key in this file.
		echo "repo1-s3-key-type=auto"
		[[ -z "${DOB_S3_KMS_KEY_ID:-}" ]] || echo "repo1-s3-kms-key-id=$DOB_S3_KMS_KEY_ID"
		echo "repo1-retention-full-type=time"
		echo "repo1-retention-full=$retention"
		echo "archive-async=y"
		# If S3 is unreachable for long, drop WAL from the queue (the archive then has a
		# gap, and the alarm on its age fires) rather than fill pg_wal and stop the primary.
		echo "archive-push-queue-max=4GiB"
		echo "spool-path=/var/spool/pgbackrest"
		echo "lock-path=/var/lib/pgbackrest/lock"
		echo "log-path=/var/log/pgbackrest"
		echo "log-level-file=info"
		echo "process-max=2"
		echo "start-fast=y"
		echo "compress-type=zst"
		echo "[dob]"
		echo "pg1-path=$DATA_DIR"
		echo "pg1-socket-path=/var/run/postgresql"
		echo "pg1-port=5432"
	} >"$conf.dob-new"
	chown root:postgres "$conf.dob-new"
	chmod 0640 "$conf.dob-new"
	mv -f "$conf.dob-new" "$conf"
	printf '%s\n' "$conf"
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
	setup_consensus_role
	((!first_boot)) || write_marker
	log "done: this host is set up as $ROLE"
	exit 0
fi

fetch_replication_password
setup_app_password
setup_tls 1
write_tls_conf
write_hba_block

if ((first_boot)); then
	case "$ROLE" in
	primary) init_empty_primary ;;
	replica | dr-replica) clone_upstream ;;
	esac
fi

cluster_start main
wait_accepting main
reload_checked main
if [[ "$ROLE" == primary ]]; then
	configure_primary
fi
if ((first_boot)) && [[ "$ROLE" == dr-replica ]]; then
	setup_drill_cluster
fi

((!first_boot)) || write_marker
log "done: this host is set up as $ROLE"
