#!/usr/bin/env bash
# patroni-config.sh: Patroni's configuration for a dob database host, from DOB_*
# variables. role-setup.sh runs it on the hosts (installed as
# /usr/local/lib/dob/patroni-config.sh) and the drill runs it for its hosts, so the
# configuration the drill proves is the one the image deploys.
#
#   patroni-config.sh --out DIR
#
# Writes DIR/patroni.yml (0600) and DIR/post-bootstrap.sh (0750), which Patroni runs
# once, on the member that initialises the cluster: role and database dob. Both are
# owned by the user running PostgreSQL (DOB_PG_USER).
#
# Variables (from the environment; role-setup.sh passes /etc/dob/dob.env's):
#   DOB_HOST_ADDRESS        this host's address: PostgreSQL and the REST API (8008) listen
#                           and are reached there (required)
#   DOB_ETCD_HOSTS          the etcd members' client endpoints, host:2379,... (required)
#   DOB_PEER_CIDRS          networks whose hosts may connect over TCP (replication, dob-api,
#                           pg_rewind), comma list (required)
#   DOB_PATRONI_NAME        member name (default: the short host name)
#   DOB_PATRONI_SCOPE       cluster name (default dob)
#   DOB_STANDBY_OF          makes this a standby cluster (the DR region) following
#                           whichever of these hosts leads, host,host (port 5432)
#   DOB_DR_SLOT             a permanent slot the leader keeps for the DR standby cluster
#                           (default dob_dr; "none" for none); the standby cluster uses it
#   DOB_SYNCHRONOUS_MODE    true (default: a commit waits for the synchronous standby, RPO 0
#                           in the region) or false (faster commits; a failover may lose
#                           what the lost leader acknowledged last)
#   DOB_PATRONI_TTL, DOB_PATRONI_LOOP_WAIT, DOB_PATRONI_RETRY_TIMEOUT
#                           leader key TTL and loop timings in seconds (default 20, 5, 5;
#                           ttl >= loop_wait + 2 x retry_timeout)
#   DOB_MAXIMUM_LAG_ON_FAILOVER  bytes a replica may lag and still be promoted (1048576)
#   DOB_PATRONI_FAILSAFE    true (default: a leader that loses etcd keeps leading while it
#                           reaches every member's REST API, and demotes itself as soon as
#                           one does not answer) or false (it demotes on losing etcd). A
#                           new cluster's setting: a running one changes with
#                           `patronictl edit-config -s failsafe_mode=true`
#   DOB_WATCHDOG            off | automatic | required (default automatic: the softdog
#                           watchdog resets a host whose Patroni hangs while leading)
#   DOB_SECRETS_DIR         files superuser, replication, rewind, app and restapi, one
#                           password each (default /etc/dob/secrets)
#   DOB_PG_DATA_DIR         (default /var/lib/postgresql/15/main)
#   DOB_PG_BIN_DIR          (default /usr/lib/postgresql/15/bin)
#   DOB_PG_SOCKET_DIR       (default /var/run/postgresql)
#   DOB_PG_CERT_FILE, DOB_PG_KEY_FILE  the server's TLS pair, signed by the internal CA
#                           (default /etc/dob/tls/server.pem, /etc/dob/tls/server.key). The
#                           certificate must name this host's address as an IP SAN: Patroni,
#                           pg_rewind and the replicas reach a member at its connect_address
#                           (an IP) with sslmode=verify-full. The key: owned by DOB_PG_USER,
#                           0600 (or by root, group DOB_PG_USER, 0640), as PostgreSQL demands.
#                           With a certificate pg_hba refuses every plaintext TCP connection
#                           (hostnossl ... reject, before any other TCP rule).
#                           DOB_PG_CERT_FILE=none: no TLS at all (plaintext TCP; tests only)
#   DOB_PG_CA_FILE          the internal CA's certificate (default /etc/dob/tls/ca.pem; "none"
#                           for none). With a certificate it becomes ssl_ca_file, and every
#                           connection Patroni makes to another member (replication, the DR
#                           standby cluster's, pg_rewind's, its checks) uses
#                           sslmode=verify-full with it as sslrootcert. Without it those
#                           connections are encrypted (hostssl) but the peer is not verified
#   DOB_PG_USER             the user PostgreSQL runs as (default postgres)
#   DOB_PGBACKREST_CONFIG   pgBackRest's configuration (e.g. /etc/pgbackrest/pgbackrest.conf,
#                           written by role-setup.sh): when set, every member archives its
#                           WAL with pgBackRest (archive_mode on, archive-push, asynchronous
#                           when the configuration says archive-async; archive_timeout 60 s,
#                           so a quiet cluster still archives at least every minute) and
#                           fetches what it lacks from the repository (restore_command
#                           archive-get: a replica whose slot was dropped, or a rewound old
#                           leader, catches up from S3 instead of needing a new copy).
#                           With DOB_STANDBY_OF it is the DR region's own repository:
#                           archive_mode is on already, so the archiver starts at the
#                           promotion (a standby never archives; turning archive_mode on
#                           then would need a restart). Unset: no archiving (tests)
#   DOB_PGBACKREST_UPSTREAM_CONFIG  with DOB_STANDBY_OF: pgBackRest's configuration for
#                           the replicated repository of the region it follows (read
#                           only): the standby cluster's restore_command
#   DOB_PGBACKREST_STANZA   the stanza of both (default dob)
# Exit 0 on success, 1 with a message otherwise.
set -euo pipefail

log() { printf 'patroni-config: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

out_dir=""
while (($#)); do
	case "$1" in
	--out)
		[[ $# -ge 2 ]] || die "--out needs a directory"
		out_dir="$2"
		shift 2
		;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*) die "unexpected argument: $1 (try --help)" ;;
	esac
done
[[ -n "$out_dir" ]] || die "--out DIR is required (try --help)"

address="${DOB_HOST_ADDRESS:-}"
[[ -n "$address" ]] || die "DOB_HOST_ADDRESS is not set (this host's address)"
etcd_hosts="${DOB_ETCD_HOSTS:-}"
[[ -n "$etcd_hosts" ]] || die "DOB_ETCD_HOSTS is not set (host:2379,...)"
peer_cidrs="${DOB_PEER_CIDRS:-}"
[[ -n "$peer_cidrs" ]] || die "DOB_PEER_CIDRS is not set (who may connect over TCP)"
name="${DOB_PATRONI_NAME:-$(hostname -s)}"
scope="${DOB_PATRONI_SCOPE:-dob}"
standby_of="${DOB_STANDBY_OF:-}"
dr_slot="${DOB_DR_SLOT:-dob_dr}"
synchronous="${DOB_SYNCHRONOUS_MODE:-true}"
ttl="${DOB_PATRONI_TTL:-20}"
loop_wait="${DOB_PATRONI_LOOP_WAIT:-5}"
retry_timeout="${DOB_PATRONI_RETRY_TIMEOUT:-5}"
max_lag="${DOB_MAXIMUM_LAG_ON_FAILOVER:-1048576}"
failsafe="${DOB_PATRONI_FAILSAFE:-true}"
watchdog="${DOB_WATCHDOG:-automatic}"
secrets="${DOB_SECRETS_DIR:-/etc/dob/secrets}"
data_dir="${DOB_PG_DATA_DIR:-/var/lib/postgresql/15/main}"
bin_dir="${DOB_PG_BIN_DIR:-/usr/lib/postgresql/15/bin}"
socket_dir="${DOB_PG_SOCKET_DIR:-/var/run/postgresql}"
cert="${DOB_PG_CERT_FILE:-/etc/dob/tls/server.pem}"
key="${DOB_PG_KEY_FILE:-/etc/dob/tls/server.key}"
ca="${DOB_PG_CA_FILE:-/etc/dob/tls/ca.pem}"
pg_user="${DOB_PG_USER:-postgres}"
pgbackrest_config="${DOB_PGBACKREST_CONFIG:-}"
upstream_pgbackrest_config="${DOB_PGBACKREST_UPSTREAM_CONFIG:-}"
pgbackrest_stanza="${DOB_PGBACKREST_STANZA:-dob}"

[[ "$synchronous" == true || "$synchronous" == false ]] ||
	die "DOB_SYNCHRONOUS_MODE=$synchronous is not true or false"
[[ "$failsafe" == true || "$failsafe" == false ]] ||
	die "DOB_PATRONI_FAILSAFE=$failsafe is not true or false"
[[ "$watchdog" =~ ^(off|automatic|required)$ ]] ||
	die "DOB_WATCHDOG=$watchdog is not off, automatic or required"
for number in ttl loop_wait retry_timeout max_lag; do
	[[ "${!number}" =~ ^[0-9]+$ ]] || die "$number=${!number} is not a whole number"
done
((ttl >= loop_wait + 2 * retry_timeout)) ||
	die "DOB_PATRONI_TTL=$ttl must be at least DOB_PATRONI_LOOP_WAIT + 2 x DOB_PATRONI_RETRY_TIMEOUT"
[[ "$dr_slot" == none || "$dr_slot" =~ ^[a-z0-9_]+$ ]] || die "DOB_DR_SLOT=$dr_slot is not a slot name"
for secret in superuser replication rewind app restapi; do
	[[ -s "$secrets/$secret" ]] || die "$secrets/$secret is missing or empty"
done
# yaml_string VALUE: VALUE as a single-quoted YAML scalar.
yaml_string() { printf "'%s'" "${1//\'/\'\'}"; }
secret() { yaml_string "$(head -n 1 "$secrets/$1")"; }
# yaml_list LIST: a comma list as a YAML flow sequence of strings.
yaml_list() {
	local item out=()
	for item in ${1//,/ }; do
		out+=("$(yaml_string "$item")")
	done
	local IFS=,
	printf '[%s]' "${out[*]}"
}

dcs_region_part() {
	if [[ -n "$standby_of" ]]; then
		# A standby cluster: its leader (the "standby leader") follows whichever host
		# accepts writes (primary_slot_name makes Patroni add
		# target_session_attrs=read-write); only dob-promote --takeover ends this.
		# standby_cluster is given no TLS keys of its own: Patroni connects (basebackup and
		# primary_conninfo) with postgresql.authentication.replication, so the
		# sslmode/sslrootcert there verify each of these hosts too.
		cat <<-EOF
			    standby_cluster:
			      host: $(yaml_string "$standby_of")
			      port: 5432
			      create_replica_methods: [basebackup]
		EOF
		[[ "$dr_slot" == none ]] || printf '      primary_slot_name: %s\n' "$dr_slot"
		# WAL the upstream no longer has (a slot invalidated by max_slot_wal_keep_size,
		# a long cut) comes from the replicated repository instead of a new copy.
		if [[ -n "$upstream_pgbackrest_config" ]]; then
			printf '      restore_command: %s\n' \
				"$(yaml_string "$(pgbackrest_command 'archive-get %f "%p"' "$upstream_pgbackrest_config")")"
		fi
	elif [[ "$dr_slot" != none ]]; then
		# Kept by whichever member leads, so the DR standby cluster's WAL survives a
		# failover in this region.
		cat <<-EOF
			    slots:
			      $dr_slot:
			        type: physical
		EOF
	fi
}

# pgBackRest's command line as PostgreSQL runs it (configuration and stanza named, so
# it never depends on the server's working directory or environment). The configuration
# is DOB_PGBACKREST_CONFIG unless named.
pgbackrest_command() {
	printf 'pgbackrest --config=%s --stanza=%s %s' "${2:-$pgbackrest_config}" "$pgbackrest_stanza" "$1"
}

# WAL archiving to the pgBackRest repository (DOB_PGBACKREST_CONFIG). In a standby
# cluster the archiver stays idle until the promotion (archive_mode on, not always), then
# archives the new timeline into the DR region's own repository from its first segment.
archive_parameters() {
	[[ -n "$pgbackrest_config" ]] || return 0
	cat <<-EOF
		    archive_mode: 'on'
		    archive_command: $(yaml_string "$(pgbackrest_command 'archive-push %p')")
		    archive_timeout: 60
	EOF
}

# The DR standby cluster notices a lost upstream within seconds (a killed leader sends no
# reset) and tries the hosts again every second: eu-west-1's dob-api waits for its receipt
# (DOB_DR_RECEIPT_SLOT) and detaches after DOB_DR_DETACH_AFTER_MS without one, which an
# in-region failover must not reach.
standby_parameters() {
	[[ -n "$standby_of" ]] || return 0
	cat <<-EOF
		    wal_receiver_timeout: 5s
		    wal_retrieve_retry_interval: 1s
	EOF
}

recovery_conf() {
	[[ -n "$pgbackrest_config" && -z "$standby_of" ]] || return 0
	cat <<-EOF
		  recovery_conf:
		    restore_command: $(yaml_string "$(pgbackrest_command 'archive-get %f "%p"')")
	EOF
}

# Whether the members verify one another: a certificate to present and a CA to check
# the others' against.
verified_tls() { [[ "$cert" != none && -n "$ca" && "$ca" != none ]]; }

ssl_parameters() {
	[[ "$cert" != none ]] || return 0
	cat <<-EOF
		    ssl: 'on'
		    ssl_cert_file: $(yaml_string "$cert")
		    ssl_key_file: $(yaml_string "$key")
	EOF
	# The CA the server names to its clients (and would check client certificates
	# against); no pg_hba rule asks for one, so a client without a certificate still
	# connects.
	if verified_tls; then
		printf '    ssl_ca_file: %s\n' "$(yaml_string "$ca")"
	fi
}

# An entry of postgresql.authentication: Patroni uses it for every connection of that
# kind to another member (replication and basebackup, the standby cluster's upstream
# included; pg_rewind and its checks as rewinder; the superuser's). Those reach the
# member's connect_address over TCP, so with the CA they verify the certificate names
# that address (verify-full). Locally Patroni uses the socket, where libpq ignores both.
auth_entry() {
	local kind=$1 user=$2
	printf '    %s:\n      username: %s\n      password: %s\n' "$kind" "$user" "$(secret "$kind")"
	if verified_tls; then
		printf '      sslmode: verify-full\n      sslrootcert: %s\n' "$(yaml_string "$ca")"
	fi
}

# Every TCP rule asks a password (scram-sha-256) and, with a certificate, TLS (hostssl):
# nothing crosses the network in clear, nothing is trusted for its address. A plaintext
# TCP connection meets an explicit reject first, from any address, so the refusal is
# the same whatever DOB_PEER_CIDRS says and says why ("no encryption").
hba_lines() {
	local cidr type=hostssl
	[[ "$cert" != none ]] || type=host
	printf '    - %s\n' "local all $pg_user peer" "local all all peer"
	if [[ "$cert" != none ]]; then
		# `all` does not match replication connections: they get their own.
		printf '    - %s\n' "hostnossl all all 0.0.0.0/0 reject" "hostnossl all all ::/0 reject" \
			"hostnossl replication all 0.0.0.0/0 reject" "hostnossl replication all ::/0 reject"
	fi
	for cidr in ${peer_cidrs//,/ }; do
		printf '    - %s\n' "$type replication replicator $cidr scram-sha-256" \
			"$type all all $cidr scram-sha-256"
	done
}

mkdir -p "$out_dir"
tmp="$(mktemp "$out_dir/.patroni.yml.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
chmod 600 "$tmp"
cat >"$tmp" <<-EOF
	# Written by dob's patroni-config.sh from the DOB_* variables; edit those instead.
	scope: $(yaml_string "$scope")
	name: $(yaml_string "$name")
	restapi:
	  listen: $address:8008
	  connect_address: $address:8008
	  # Only what changes the cluster (POST, PATCH, ...) needs it; patronictl reads it here.
	  authentication:
	    username: patroni
	    password: $(secret restapi)
	etcd3:
	  hosts: $(yaml_list "$etcd_hosts")
	bootstrap:
	  dcs:
	    ttl: $ttl
	    loop_wait: $loop_wait
	    retry_timeout: $retry_timeout
	    maximum_lag_on_failover: $max_lag
	    failsafe_mode: $failsafe
	    synchronous_mode: $([[ -n "$standby_of" ]] && echo false || echo "$synchronous")
	$(dcs_region_part)
	    postgresql:
	      use_pg_rewind: true
	      use_slots: true
	      parameters:
	        wal_log_hints: 'on'
	        max_wal_senders: 10
	        max_replication_slots: 10
	        wal_keep_size: 1GB
	        max_slot_wal_keep_size: 20GB
	        hot_standby_feedback: 'on'
	        password_encryption: scram-sha-256
	  initdb:
	    - data-checksums
	    - encoding: UTF8
	    - locale: C.UTF-8
	  post_bootstrap: $(yaml_string "$out_dir/post-bootstrap.sh")
	  # The first member's pg_hba.conf; postgresql.pg_hba below keeps it current.
	  pg_hba:
	$(hba_lines | sed 's/^  //')
	postgresql:
	  listen: $address:5432
	  connect_address: $address:5432
	  data_dir: $(yaml_string "$data_dir")
	  bin_dir: $(yaml_string "$bin_dir")
	  # Patroni rewrites this file before each connection it hands to libpq (the
	  # replication user's for primary_conninfo, the rewind user's for pg_rewind): one
	  # per data directory, so two instances on one machine never read each other's.
	  pgpass: $(yaml_string "$(dirname "$data_dir")/pgpass")
	  use_unix_socket: true
	  # A new replica's copy starts at once instead of after a spread checkpoint.
	  basebackup:
	    checkpoint: fast
	  parameters:
	    unix_socket_directories: $(yaml_string "$socket_dir")
	$(ssl_parameters)
	$(archive_parameters)
	$(standby_parameters)
	$(recovery_conf)
	  pg_hba:
	$(hba_lines)
	  authentication:
	$(auth_entry superuser postgres)
	$(auth_entry replication replicator)
	$(auth_entry rewind rewinder)
	watchdog:
	  mode: $watchdog
	  device: /dev/watchdog
	  safety_margin: 5
EOF
# Blank lines left by empty parts are harmless YAML; drop them for the reader.
sed -i '/^[[:space:]]*$/d' "$tmp"
chown "$pg_user:$pg_user" "$tmp"
mv "$tmp" "$out_dir/patroni.yml"
trap - EXIT

cat >"$out_dir/post-bootstrap.sh.tmp" <<-EOF
	#!/bin/sh
	# Written by dob's patroni-config.sh. Patroni runs this once, on the member that
	# initialises the cluster, with a superuser URL: the application's role and database.
	set -e
	password="\$(head -n 1 '$secrets/app' | sed "s/'/''/g")"
	# On standard input, and with statement logging off, so the password reaches neither
	# a process list nor the server log.
	printf "SET log_statement = 'none';\\nSET log_min_error_statement = 'panic';\\nCREATE ROLE dob LOGIN PASSWORD '%s';\\nCREATE DATABASE dob OWNER dob;\\n" "\$password" |
		psql "\$1" -X -v ON_ERROR_STOP=1 -q
EOF
chmod 750 "$out_dir/post-bootstrap.sh.tmp"
chown "$pg_user:$pg_user" "$out_dir/post-bootstrap.sh.tmp"
mv "$out_dir/post-bootstrap.sh.tmp" "$out_dir/post-bootstrap.sh"
log "wrote $out_dir/patroni.yml ($scope/$name${standby_of:+, standby cluster of $standby_of})"
