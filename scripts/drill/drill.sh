#!/usr/bin/env bash
# The whole-system drill: eu-west-1 and the DR region on one machine, faults injected
# under load, a report per scenario.
#
#   scripts/drill/drill.sh        (or: make drill; needs root for network namespaces)
#
# Hosts are network namespaces on one bridge (10.71.0.0/24), each running what the AMI
# runs on that role:
#   host a (10.71.0.11), host b (10.71.0.12): etcd member, Patroni managing PostgreSQL 15
#     (data checksums, wal_log_hints, use_pg_rewind, synchronous_mode), dob-api with the
#     hosts' multi-host URL (target_session_attrs=read-write)
#   witness (10.71.0.13): etcd member only (the third vote)
#   dr (10.71.0.21), the DR region (eu-central-1), 15 ms away each way (tc netem on its
#     link): its own one-member etcd, a Patroni standby cluster following whichever
#     eu-west-1 host leads (slot dob_dr), dob-api on the local server
#   client (10.71.0.100): the internet side. One NLB stand-in per region (HAProxy, TCP
#     passthrough, health check GET /readyz = 200 on dob-api's admin port (8090, as
#     DOB_ADMIN_LISTEN on the hosts; the public port answers 404 for it) every 10 s, 2 to change state: the
#     Terraform target group's settings), eu-west-1 on :8080 and eu-central-1 on :8081;
#     the DNS-failover stand-in (scripts/drill/dns.py: the Route53 failover records as
#     Terraform sets them up, a TCP check of each NLB listener, 10 s, 3 to change state,
#     and evaluate_target_health, at least one target in service in that NLB stand-in);
#     the role sampler (scripts/drill/roles.py: each member's Patroni role every 0.5 s);
#     the S3 server with both regions' buckets; the load clients
#     (scripts/drill/load.py), which resolve through the DNS stand-in and log every
#     acknowledged write.
# Every dob-api holds the cross-region write lease (src/failover/fence.rs) from the fence record
# in both buckets.
# TLS as on the hosts: the drill makes an internal CA at start (in the work directory)
# and a server certificate per database host whose IP SAN is its drill address. Every
# TCP connection to PostgreSQL verifies it (sslmode=verify-full): dob-api, dob-backup,
# dob-restore, and Patroni's own (replication, the DR standby cluster's, pg_rewind);
# pg_hba refuses plaintext TCP outright, which the drill checks before the scenarios.
# Scenarios, in order:
#   patroni_upgrade
#              every member's Patroni from Debian's 3.0.2 to 3.3, then to the pinned
#              release, in place under load with both clusters paused, then failsafe
#              mode on: the same leader before and after, nothing acknowledged lost
#   rolling_deploy
#              dob-api replaced host by host as scripts/deploy/rolling-restart.sh does
#              it (deregister and drain, restart, register, healthy again): no request
#              through the NLB stand-in may fail (one that committed but answered after
#              the client's 2 s timeout is reported as slow, not failed)
#   switchover dob-promote --switchover (patronictl switchover) on the leader's host:
#              the other host leads, the old leader streams from it, nothing acknowledged
#              is lost
#   az_loss    the leader host is killed (every process SIGKILLed, its link cut)
#   partition  the leader is cut off from the other two etcd members; a writer inside
#              its own AZ keeps writing to it; it must stop accepting writes within
#              the leader TTL, and nothing it acknowledged may be lost
#   rejoin     each old leader comes back and rejoins as a replica (pg_rewind); every
#              node ends with identical `users` contents
#   backup_after_failover
#              the backup unit's condition (scripts/pg-is-primary.sh asking Patroni) and
#              dob-backup run on both hosts: only the leader backs up, its manifest's
#              timeline is the live one, and a restore drill of it passes; a backup taken
#              before the failovers is refused by the drill (older timeline)
#   pitr       under load, a bad DELETE FROM users at a recorded time (REPEATABLE READ:
#              every row it deletes was committed before that time); the operator runs
#              dob-restore --to-time that time on the leader's host: pgBackRest restores
#              the drill-start backup plus the archived WAL (S3) into a scratch cluster,
#              which is verified, copied in and swapped in. Every write acknowledged
#              before the time is back; every later one is in the kept database
#              (nothing silently lost); pgbackrest verify passes
#   dr_detach  once eu-west-1 is attached, the DR region (its host and its bucket)
#              unreachable from eu-west-1 for 60 s, no takeover: writes wait for the
#              DR receipt, eu-west-1 records
#              itself detached in a majority of the fence buckets and goes on alone
#              (at most 15 s without an acknowledged write), and re-attaches by itself
#              once the DR region is back and has caught up
#   fence_store_outage
#              every fence bucket unreachable from eu-west-1 for 60 s: nothing is
#              acknowledged without a lease; writes resume within 10 s of the return
#   takeover_in_flight
#              eu-west-1's leader cut off from its synchronous standby and the DR
#              region while writers inside eu-west-1 wait on it (60 s client timeout),
#              the takeover at once: nothing acknowledged is missing from the promoted
#              DR region, nothing acknowledged by eu-west-1 after the promotion
#   failback   (after it) as below
#   region_split
#              eu-west-1 loses the DR region and its bucket but keeps its own bucket,
#              the witness's and its clients (and writers inside it): it detaches and
#              goes on alone; the operator's takeover refuses (exit 7) with the loss
#              window, then with --accept-data-loss promotes the DR region; nothing
#              lost outside that window, nothing acknowledged by eu-west-1 after the
#              promotion, at most 120 s without an acknowledged write through DNS
#   failback   (after it) the runbook's way home: dob-promote --follow on
#              eu-west-1's leader host (a standby
#              cluster of the DR region, its leader rewound), dob-promote --takeover
#              there (it waits until eu-west-1 holds everything the DR region
#              flushed), dob-promote --follow in the DR region; under load through
#              DNS, nothing acknowledged is lost and eu-west-1 re-attaches
#   region_loss
#              eu-west-1 is cut off from the internet side, the DR region and the
#              witness region (its hosts still see each other), while writers inside
#              it keep writing to its hosts; once DNS answers the DR region, the
#              operator step: dob-promote --takeover on the DR host (its first full
#              backup into the DR region's own repository included); writes resume
#              through DNS; then eu-west-1 comes back, and writers sent straight to
#              its hosts get no write acknowledged
#   pitr_after_takeover
#              (after it) under load through DNS, a bad DELETE FROM users in the DR
#              region; dob-restore --to-time that time on the DR host recovers from the
#              takeover's backup and the WAL archived since the promotion: every write
#              acknowledged before the time is back, every later one is kept
# S3 is moto_server (from .venv), one server per region, each on a host of its own:
# eu-west-1's (s3west, 10.71.0.101, cut off with its region), eu-central-1's (s3dr,
# 10.71.0.103) and the fence witness region's (s3witness, 10.71.0.102). eu-west-1's
# dob-api waits for the DR receipt (DOB_DR_RECEIPT_SLOT=dob_dr); the in-region
# scenarios require that it never detached. a and b
# archive their WAL with pgBackRest (asynchronous archive-push, as the hosts) into
# eu-west-1's bucket, through a TLS endpoint on their own loopback (HAProxy with a
# certificate of the drill's CA for "localhost": pgBackRest speaks S3 over TLS only and
# checks the name, as it checks AWS's), the stand-in of the VPC's S3 endpoint. The DR
# host has its own, to eu-central-1's bucket: its Patroni runs with archive_mode on into
# its own repository there (pgbackrest-dr/), idle until a takeover promotes it.
# Each scenario's result goes to target/drill/report.json, is drawn in
# target/drill/report.html (scripts/drill/timeline.py) and is printed as a table:
# rto_s (fault to the first acknowledged write after it), acked_lost (acknowledged
# writes missing at the end), failed_requests, split_brain_writes, write_unavailable_s
# (the longest stretch without an acknowledged write), dns_answers_dr_s (seconds DNS
# answered the DR region: 0 in every in-region scenario) and leader_changes; the JSON
# adds outcome_unknown (503s for writes that committed unconfirmed) and, with a
# takeover, takeover_to_first_write_s.
#
# Everything runs inside namespaces the drill creates; every process, namespace and
# the work directory (/var/tmp/dob-drill.*) are removed on exit. DOB_DRILL_KEEP=1
# keeps the work directory (logs, data). Bounded: each wait has a deadline, the load
# client stops after 15 minutes at most.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
DOB_LOG_TAG=drill

dob_is_root || dob_die "needs root (network namespaces)"
started=$SECONDS

scripts/install-deps.sh drill venv
API_BIN="$(dob_build_api)"
(cargo build --release --locked --bin dob-backup --bin dob-restore --bin dob-promote >&2) ||
	dob_die "cargo build --release dob-backup dob-restore dob-promote failed"
BIN_DIR="$(dirname "$API_BIN")"
MOTO="$DOB_ROOT/.venv/bin/moto_server"
PG_BIN="$(pg_bin_dir)"
REPORT_DIR="${CARGO_TARGET_DIR:-$PWD/target}/drill"
mkdir -p "$REPORT_DIR"

SUBNET=10.71.0
NET=dobdrill-net
declare -A IP=([a]="$SUBNET.11" [b]="$SUBNET.12" [witness]="$SUBNET.13" [dr]="$SUBNET.21"
	[client]="$SUBNET.100" [s3west]="$SUBNET.101" [s3witness]="$SUBNET.102" [s3dr]="$SUBNET.103")
PG_NODES=(a b)
ETCD_NODES=(a b witness)
WEST_NODES=(a b witness)
# One way, between the DR region and everything else (0 where the kernel has no netem).
REGION_DELAY=15ms
region_delay_ms=0
WEST_REGION=eu-west-1
DR_REGION=eu-central-1
WEST_BUCKET=dob-drill
DR_BUCKET=dob-drill-dr
# The fence's third vote: a small bucket in a third region, on an S3 server of its own.
WITNESS_REGION=eu-north-1
WITNESS_BUCKET=dob-drill-witness
# Each region's database tier as Terraform tags it (dob:fence-group), for the takeover's
# isolation through the other region's EC2 API.
WEST_FENCE_GROUP=dob-drill-$WEST_REGION
DR_FENCE_GROUP=dob-drill-$DR_REGION
# Leader key TTL and Patroni's loop: a leader that cannot renew its key within TTL
# demotes itself (ttl >= loop_wait + 2 * retry_timeout). 20 s is the hosts' value and the
# least Patroni (since 3.1) accepts: it raises a lower one to 20.
TTL=20
# The NLB target group's deregistration delay is 30 s by default; the drill waits less
# (dob-api's own SIGTERM drain closes what is left).
DEREGISTRATION_DELAY=5

# The PATH a host's units and sudo give the tools the drill runs as an operator would:
# the image links patroni and patronictl from /usr/local/bin.
HOST_PATH=/usr/local/bin:/usr/bin:/bin

WORK="$(mktemp -d /var/tmp/dob-drill.XXXXXX)"
chmod 755 "$WORK"
SECRETS="$WORK/secrets"
# Group postgres: Patroni's post-bootstrap script reads the app password, as on a host.
mkdir -m 750 "$SECRETS"
chgrp postgres "$SECRETS"
# The internal CA: its certificate is public (every client and server reads it), its key
# never leaves this directory (root only).
TLS_DIR="$WORK/tls"
CA_FILE="$TLS_DIR/ca.pem"

ns() { printf 'dobdrill-%s' "$1"; }
in_ns() {
	local node=$1
	shift
	ip netns exec "$(ns "$node")" "$@"
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local status=$?
	set +e
	trap '' INT TERM
	for node in client a b witness dr s3west s3witness s3dr; do
		ip netns pids "$(ns "$node")" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$(ns "$node")" 2>/dev/null
	done
	ip netns del "$NET" 2>/dev/null
	if [[ "${DOB_DRILL_KEEP:-0}" == 1 ]]; then
		dob_log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

secret() {
	local file="$SECRETS/$1"
	if [[ ! -s "$file" ]]; then
		(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$file")
		chgrp postgres "$file"
		chmod 640 "$file"
	fi
	cat "$file"
}

# --- TLS -----------------------------------------------------------------------------

# The CA and one server certificate per database host, as the hosts get theirs: signed
# by the internal CA, for server authentication, naming the host's address as an IP SAN
# (clients and Patroni reach a member by IP, and verify-full checks the name). EC P-256
# keys: quick to make, and what rustls and libpq both accept.
make_tls() {
	mkdir -m 755 "$TLS_DIR"
	(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/ca.key" 2>/dev/null)
	openssl req -x509 -new -key "$TLS_DIR/ca.key" -sha256 -days 2 -subj "/CN=dob drill internal CA" \
		-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" -out "$CA_FILE" 2>/dev/null
	chmod 644 "$CA_FILE"
	# The S3 endpoint stand-in's certificate (HAProxy on each database host's loopback).
	(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/s3.key" 2>/dev/null)
	openssl req -new -key "$TLS_DIR/s3.key" -subj "/CN=localhost" -out "$TLS_DIR/s3.csr" 2>/dev/null
	printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost" >"$TLS_DIR/s3.ext"
	openssl x509 -req -in "$TLS_DIR/s3.csr" -CA "$CA_FILE" -CAkey "$TLS_DIR/ca.key" \
		-CAcreateserial -sha256 -days 2 -extfile "$TLS_DIR/s3.ext" -out "$TLS_DIR/s3.pem" 2>/dev/null
	(umask 077 && cat "$TLS_DIR/s3.pem" "$TLS_DIR/s3.key" >"$TLS_DIR/s3.bundle")
	local node dir
	for node in "${PG_NODES[@]}" dr; do
		dir="$WORK/$node/tls"
		mkdir -p "$dir"
		(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/server.key" 2>/dev/null)
		openssl req -new -key "$dir/server.key" -subj "/CN=$node" -out "$dir/server.csr" 2>/dev/null
		printf '%s\n' "basicConstraints=critical,CA:FALSE" \
			"keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
			"subjectAltName=IP:${IP[$node]}" >"$dir/server.ext"
		openssl x509 -req -in "$dir/server.csr" -CA "$CA_FILE" -CAkey "$TLS_DIR/ca.key" \
			-CAcreateserial -sha256 -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
		openssl verify -CAfile "$CA_FILE" -purpose sslserver "$dir/server.pem" >/dev/null ||
			dob_die "the drill's certificate for $node does not verify"
		rm -f "$dir/server.csr" "$dir/server.ext"
		# PostgreSQL refuses a key others can read: 0600, owned by the user it runs as.
		chown -R postgres:postgres "$dir"
		chmod 600 "$dir/server.key"
		chmod 644 "$dir/server.pem"
	done
}

# --- the network -----------------------------------------------------------------

# Namespaces left by a drill that was killed before its cleanup ran.
net_clear() {
	local name
	for name in $(ip netns list | awk '$1 ~ /^dobdrill-/ { print $1 }'); do
		dob_log "removing namespace $name left by an earlier run"
		ip netns pids "$name" | xargs -r kill -9 2>/dev/null || true
		ip netns del "$name"
	done
}

net_up() {
	net_clear
	ip netns add "$NET"
	ip -n "$NET" link set lo up
	ip -n "$NET" link add br0 type bridge
	ip -n "$NET" link set br0 up
	local node
	for node in "${!IP[@]}"; do
		ip netns add "$(ns "$node")"
		ip -n "$(ns "$node")" link set lo up
		ip -n "$NET" link add "v-$node" type veth peer name eth0 netns "$(ns "$node")"
		ip -n "$NET" link set "v-$node" master br0 up
		ip -n "$(ns "$node")" addr add "${IP[$node]}/24" dev eth0
		ip -n "$(ns "$node")" link set eth0 up
		# As the image's sysctl: a connect to a lost host gives up after 3 s (the WAL
		# receiver has no connect timeout of its own).
		ip netns exec "$(ns "$node")" sysctl -q -w net.ipv4.tcp_syn_retries=1
	done
	# The DR region is another region away: delay both ways on its link. Some kernels
	# are built without netem (sch_netem); the drill then runs without the delay and
	# says so in its report, rather than not running at all.
	if ip netns exec "$NET" tc qdisc add dev v-dr root netem delay "$REGION_DELAY" 2>/dev/null; then
		in_ns dr tc qdisc add dev eth0 root netem delay "$REGION_DELAY"
		region_delay_ms="${REGION_DELAY%ms}"
	else
		dob_log "this kernel has no netem qdisc: the DR region runs without its $REGION_DELAY delay"
		region_delay_ms=0
	fi
}

# Cuts `node` off from the listed peers (both directions), keeping everything else.
partition() {
	local node=$1 peer
	shift
	for peer in "$@"; do
		in_ns "$node" ip route add blackhole "${IP[$peer]}/32"
		in_ns "$peer" ip route add blackhole "${IP[$node]}/32"
	done
}

heal() {
	local node=$1 peer
	shift
	for peer in "$@"; do
		in_ns "$node" ip route del blackhole "${IP[$peer]}/32"
		in_ns "$peer" ip route del blackhole "${IP[$node]}/32"
	done
}

# The processes of a namespace that are still running (not zombies waiting to be reaped).
live_pids() {
	local pid state
	for pid in $(ip netns pids "$1"); do
		state="$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" || continue
		[[ -z "$state" || "$state" == Z ]] || printf '%s\n' "$pid"
	done
}

# The whole host at once: every process SIGKILLed, its link down. Processes may end or
# start while this runs, so it kills until none is left (a vanished pid is no error).
kill_host() {
	local node=$1 pids
	for _ in $(seq 1 50); do
		pids="$(live_pids "$(ns "$node")")"
		[[ -n "$pids" ]] || break
		xargs -r kill -9 <<<"$pids" 2>/dev/null || true
		sleep 0.1
	done
	[[ -z "$(live_pids "$(ns "$node")")" ]] || dob_die "processes of host $node survive SIGKILL"
	ip -n "$NET" link set "v-$node" down
}

# --- the services ------------------------------------------------------------------

start_bg() {
	local node=$1 name=$2
	shift 2
	in_ns "$node" setsid "$@" >>"$WORK/$node/$name.log" 2>&1 </dev/null &
	# ip netns exec and setsid both exec: this is the service's own pid.
	echo $! >"$WORK/$node/$name.pid"
}

etcd_cluster() {
	local node out=()
	for node in "${ETCD_NODES[@]}"; do
		out+=("$node=http://${IP[$node]}:2380")
	done
	local IFS=,
	printf '%s' "${out[*]}"
}

# start_etcd NODE CLUSTER TOKEN: one member of the cluster CLUSTER (name=peer-url,...).
start_etcd() {
	local node=$1 cluster=$2 token=$3
	mkdir -p "$WORK/$node"
	start_bg "$node" etcd etcd --name "$node" --data-dir "$WORK/$node/etcd" \
		--listen-peer-urls "http://${IP[$node]}:2380" \
		--initial-advertise-peer-urls "http://${IP[$node]}:2380" \
		--listen-client-urls "http://${IP[$node]}:2379,http://127.0.0.1:2379" \
		--advertise-client-urls "http://${IP[$node]}:2379" \
		--initial-cluster "$cluster" --initial-cluster-state new \
		--initial-cluster-token "$token" --heartbeat-interval 100 --election-timeout 1000
}

# Patroni's configuration as the image writes it (scripts/patroni-config.sh), with the
# drill's paths, a faster loop (loop_wait 2 s, retry_timeout 4 s), no watchdog
# (namespaces share one kernel: a softdog reset would take the whole machine down) and,
# as the images before the pinned Patroni made clusters, no failsafe mode:
# patroni_upgrade turns it on as the upgrade runbook does.
write_patroni_config() {
	local node=$1 dir="$WORK/$1"
	local etcd_hosts scope=dob standby_of="" name pgbackrest_config=""
	etcd_hosts="$(for n in "${ETCD_NODES[@]}"; do printf '%s:2379,' "${IP[$n]}"; done | sed 's/,$//')"
	if [[ $node == dr ]]; then
		scope=dob-dr
		etcd_hosts="${IP[dr]}:2379"
		standby_of="${IP[a]},${IP[b]}"
	fi
	write_pgbackrest_config "$node"
	pgbackrest_config="$dir/pgbackrest.conf"
	for name in superuser replication rewind app restapi; do
		secret "$name" >/dev/null
	done
	mkdir -p "$dir/run"
	env DOB_HOST_ADDRESS="${IP[$node]}" DOB_ETCD_HOSTS="$etcd_hosts" DOB_PEER_CIDRS="$SUBNET.0/24" \
		DOB_PATRONI_NAME="$node" DOB_PATRONI_SCOPE="$scope" DOB_STANDBY_OF="$standby_of" \
		DOB_PATRONI_TTL="$TTL" DOB_PATRONI_LOOP_WAIT=2 DOB_PATRONI_RETRY_TIMEOUT=4 \
		DOB_PATRONI_FAILSAFE=false \
		DOB_WATCHDOG=off DOB_SECRETS_DIR="$SECRETS" DOB_PG_DATA_DIR="$dir/data" \
		DOB_PG_BIN_DIR="$PG_BIN" DOB_PG_SOCKET_DIR="$dir/run" DOB_PG_USER=postgres \
		DOB_PG_CERT_FILE="$dir/tls/server.pem" DOB_PG_KEY_FILE="$dir/tls/server.key" \
		DOB_PG_CA_FILE="$CA_FILE" DOB_PGBACKREST_CONFIG="$pgbackrest_config" \
		scripts/patroni-config.sh --out "$dir"
	chown -R postgres:postgres "$dir"
}

# pgBackRest's configuration on a database host: its region's bucket through the host's
# S3 endpoint stand-in (127.0.0.1:9443), asynchronous archive-push, the drill's paths.
# eu-west-1's repository is pgbackrest/; the DR host's own, into which it archives from a
# takeover's promotion on, pgbackrest-dr/ of the DR bucket (the hosts read the replicated
# copy of eu-west-1's too, as the standby cluster's restore_command: moto does not
# replicate, so the drill's DR host has none). moto's placeholder keys; the hosts use
# their instance profile instead.
write_pgbackrest_config() {
	local node=$1 dir="$WORK/$1" bucket=$WEST_BUCKET region=$WEST_REGION repo=/pgbackrest
	[[ $node != dr ]] || bucket=$DR_BUCKET region=$DR_REGION repo=/pgbackrest-dr
	mkdir -p "$dir/pgbackrest/spool" "$dir/pgbackrest/log" "$dir/pgbackrest/lock"
	cat >"$dir/pgbackrest.conf" <<-EOF
		[global]
		repo1-type=s3
		repo1-path=$repo
		repo1-s3-bucket=$bucket
		repo1-s3-endpoint=localhost
		repo1-storage-port=9443
		repo1-s3-uri-style=path
		repo1-s3-region=$region
		repo1-s3-key=drill
		repo1-s3-key-secret=drill
		repo1-storage-ca-file=$CA_FILE
		repo1-retention-full-type=time
		repo1-retention-full=7
		archive-async=y
		archive-push-queue-max=1GiB
		spool-path=$dir/pgbackrest/spool
		log-path=$dir/pgbackrest/log
		lock-path=$dir/pgbackrest/lock
		log-level-file=info
		start-fast=y
		[dob]
		pg1-path=$dir/data
		pg1-socket-path=$dir/run
		pg1-port=5432
	EOF
	chmod 640 "$dir/pgbackrest.conf"
}

# The host's S3 endpoint stand-in: TLS on its loopback, to its region's S3 server.
start_s3_endpoint() {
	local node=$1 s3=s3west
	[[ $node != dr ]] || s3=s3dr
	cat >"$WORK/$node/s3-endpoint.cfg" <<-EOF
		defaults
		  mode http
		  timeout connect 2s
		  timeout client 60s
		  timeout server 60s
		frontend s3
		  bind 127.0.0.1:9443 ssl crt $TLS_DIR/s3.bundle
		  default_backend region_s3
		backend region_s3
		  server $s3 ${IP[$s3]}:5000
	EOF
	start_bg "$node" s3-endpoint haproxy -db -f "$WORK/$node/s3-endpoint.cfg"
}

# pgbackrest ARGS... on `node`, as the user PostgreSQL runs as.
pgbackrest_on() {
	local node=$1
	shift
	in_ns "$node" runuser -u postgres -- pgbackrest --config="$WORK/$node/pgbackrest.conf" \
		--stanza=dob --log-level-console=warn "$@"
}

# Which Patroni each member runs: the drill starts on Debian's 3.0.2 (what the images
# before the pinned release ran); patroni_upgrade moves every member to PATRONI_STEP,
# then to the image's own (packer/patroni/install.sh, as scripts/install-deps.sh drill
# installs them).
PATRONI_OLD=/usr/bin
PATRONI_STEP=/opt/dob-drill/patroni-3.3/bin
PATRONI_NEW=/opt/patroni/bin
declare -A PATRONI_DIR=([a]="$PATRONI_OLD" [b]="$PATRONI_OLD" [dr]="$PATRONI_OLD")

# PGCONNECT_TIMEOUT as patroni.service sets it: PostgreSQL's own connections (the WAL
# receiver's) give up on a host that does not answer and try the next one.
start_patroni() {
	local node=$1
	start_bg "$node" patroni env PGCONNECT_TIMEOUT=3 runuser -u postgres -- \
		"${PATRONI_DIR[$node]}/patroni" "$WORK/$node/patroni.yml"
}

# The Patroni release a member's REST API reports.
patroni_version() {
	in_ns client curl -fsS -m 2 "http://${IP[$1]}:8008/patroni" 2>/dev/null |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["patroni"]["version"])' 2>/dev/null
}

patroni_version_is() { [[ "$(patroni_version "$1")" == "$2" ]]; }

# Whether the cluster's dynamic configuration, as a member serves it, has failsafe mode.
failsafe_on() {
	in_ns client curl -fsS -m 2 "http://${IP[$1]}:8008/config" 2>/dev/null |
		python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("failsafe_mode") is True else 1)'
}

# patronictl NODE ARGS...: the member's own patronictl on its configuration, as root on
# its host.
patronictl_on() {
	local node=$1
	shift
	in_ns "$node" env -i PATH="$HOST_PATH" "${PATRONI_DIR[$node]}/patronictl" \
		-c "$WORK/$node/patroni.yml" "$@"
}

# upgrade_patroni NODE DIR: stop the member's Patroni (the cluster is paused, so
# PostgreSQL keeps running) and start it again from DIR, as docs/deploy.md's "Upgrading
# Patroni" does on a host with systemctl.
upgrade_patroni() {
	local node=$1 dir=$2 want pattern
	want="$("$dir/patroni" --version | awk '{ print $2 }')"
	# Patroni itself, not only the runuser above it (which may exit first): every
	# process that runs this member's configuration.
	pattern="patroni $WORK/$node/patroni.yml"
	pkill -TERM -f -- "$pattern"
	wait_for "Patroni on $node to stop" 60 eval "! pgrep -f -- '$pattern' >/dev/null"
	PATRONI_DIR[$node]="$dir"
	start_patroni "$node"
	wait_for "Patroni $want on $node to answer" 60 patroni_version_is "$node" "$want"
}

# eu-west-1's hosts follow the leader; the DR host reads its own (standby) server.
# verify-full, as on the hosts: each server's certificate must chain to the drill's CA
# (DOB_DATABASE_CA_FILE) and name the address it was reached at.
api_url() {
	if [[ $1 == dr ]]; then
		printf 'postgresql://dob:%s@%s:5432/dob?sslmode=verify-full&connect_timeout=2' "$(secret app)" "${IP[dr]}"
	else
		printf 'postgresql://dob:%s@%s:5432,%s:5432/dob?target_session_attrs=read-write&sslmode=verify-full&connect_timeout=2' \
			"$(secret app)" "${IP[a]}" "${IP[b]}"
	fi
}

# The host's /etc/dob/dob.env, as far as fencing goes (no secret in it: the drill's S3
# keys are moto's placeholders). dob-api gets it in its environment, dob-promote
# --takeover reads it with --env-file (the drill's hosts share one file system).
write_host_env() {
	local node=$1 region=$WEST_REGION peers=${IP[dr]}
	[[ $node != dr ]] || region=$DR_REGION peers="${IP[a]},${IP[b]}"
	mkdir -p "$WORK/$node"
	cat >"$WORK/$node/dob.env" <<-EOF
		DOB_REGION=$region
		DOB_FENCE_BUCKETS=$WEST_BUCKET@$WEST_REGION=$S3_WEST,$DR_BUCKET@$DR_REGION=$S3_DR,$WITNESS_BUCKET@$WITNESS_REGION=$S3_WITNESS
		DOB_FENCE_HOME_REGION=$WEST_REGION
		DOB_FENCE_LEASE_MS=15000
		DOB_FENCE_INTERVAL_MS=1000
		AWS_ACCESS_KEY_ID=drill
		AWS_SECRET_ACCESS_KEY=drill
		DOB_PEER_HOSTS=$peers
		DOB_PG_SOCKET_DIR=$WORK/$node/run
		DOB_PG_BIN=$PG_BIN
		DOB_PGBACKREST_CONFIG=$WORK/$node/pgbackrest.conf
	EOF
	# The other region's EC2 API (its moto_server, which serves EC2 beside S3) and the
	# tag of its database tier: a takeover isolates it there.
	if [[ $node == dr ]]; then
		printf 'DOB_PEER_REGION=%s\nDOB_PEER_FENCE_GROUP=%s\nDOB_PEER_EC2_ENDPOINT=%s\n' \
			"$WEST_REGION" "$WEST_FENCE_GROUP" "$S3_WEST" >>"$WORK/$node/dob.env"
	else
		printf 'DOB_PEER_REGION=%s\nDOB_PEER_FENCE_GROUP=%s\nDOB_PEER_EC2_ENDPOINT=%s\n' \
			"$DR_REGION" "$DR_FENCE_GROUP" "$S3_DR" >>"$WORK/$node/dob.env"
	fi
	# eu-west-1's dob-api answers 204 only once the DR region has flushed the commit.
	[[ $node == dr ]] || echo "DOB_DR_RECEIPT_SLOT=dob_dr" >>"$WORK/$node/dob.env"
}

# Whether the DR receipt state in force (detach_record's `in_force`) is $1.
dr_state_is() {
	[[ "$(detach_record | python3 -c 'import json, sys; print(json.load(sys.stdin)["in_force"])' 2>/dev/null)" == "$1" ]]
}

dr_attached() { dr_state_is attached; }

# dob-promote on `node` as an operator runs it there: that host's Patroni configuration
# and /etc/dob/dob.env, nothing else from the drill's environment.
promote_on() {
	local node=$1
	shift
	in_ns "$node" env -i PATH="$HOST_PATH" "$BIN_DIR/dob-promote" "$@" \
		--patroni-config "$WORK/$node/patroni.yml" --env-file "$WORK/$node/dob.env"
}

# dob-promote --lift-isolation on `node`, from the writing region: what a takeover
# isolated of the other region's tier, back (no Patroni there: only the env file).
lift_on() {
	local node=$1
	shift
	in_ns "$node" env -i PATH="$HOST_PATH" "$BIN_DIR/dob-promote" --lift-isolation "$@" \
		--env-file "$WORK/$node/dob.env"
}

# The DR receipt state the writing region recorded (the witness bucket's copy), as JSON,
# with the fence's epoch beside it as `fence_epoch` and the state in force as `in_force`:
# a detach recorded under an older epoch than the fence's was settled by the takeover
# that ended that epoch, so the new writer starts attached. null when it cannot be read.
# A signed GET (boto3, from the S3 server's virtualenv): objects are private.
detach_record() {
	in_ns client timeout 10 "$DOB_ROOT/.venv/bin/python" - "$S3_WITNESS" "$WITNESS_BUCKET" 2>/dev/null <<-'EOF' || echo null
		import json, sys
		import boto3
		s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
		                  aws_access_key_id="drill", aws_secret_access_key="drill")
		def read(key):
		    return json.loads(s3.get_object(Bucket=sys.argv[2], Key=f"dob/fence/{key}.json")["Body"].read())
		record = read("detach")
		record["fence_epoch"] = read("epoch")["epoch"]
		record["in_force"] = "attached" if record["epoch"] < record["fence_epoch"] else record["state"]
		print(json.dumps(record))
	EOF
}

start_api() {
	local node=$1
	local -a host_env
	mapfile -t host_env <"$WORK/$node/dob.env"
	# The URL carries the password: passed through the environment, never argv.
	start_bg "$node" dob-api env -i DOB_DATABASE_URL="$(api_url "$node")" \
		DOB_DATABASE_CA_FILE="$CA_FILE" DOB_LISTEN="${IP[$node]}:8080" \
		DOB_ADMIN_LISTEN="${IP[$node]}:8090" DOB_DRAIN_SECONDS=1 \
		RUST_LOG=warn "${host_env[@]}" "$API_BIN"
}

start_host() {
	local node=$1
	if [[ $node == dr ]]; then
		start_etcd dr "dr=http://${IP[dr]}:2380" dob-drill-dr
	else
		start_etcd "$node" "$(etcd_cluster)" dob-drill
	fi
	start_s3_endpoint "$node"
	start_patroni "$node"
	start_api "$node"
}

start_nlb() {
	mkdir -p "$WORK/client"
	cat >"$WORK/client/haproxy.cfg" <<-EOF
		global
		  maxconn 4096
		  stats socket $WORK/client/haproxy.sock mode 600
		defaults
		  mode tcp
		  timeout connect 2s
		  timeout client 30s
		  timeout server 30s
		  # The target group's health check: 5 s to answer.
		  timeout check 5s
		frontend nlb
		  bind ${IP[client]}:8080
		  default_backend hosts
		frontend nlb-dr
		  bind ${IP[client]}:8081
		  default_backend dr
		backend hosts
		  option httpchk GET /readyz
		  http-check expect status 200
		  # An NLB terminates connections to a target once it is unhealthy.
		  default-server inter 10s fall 2 rise 2 on-marked-down shutdown-sessions
		  server a ${IP[a]}:8080 check port 8090
		  server b ${IP[b]}:8080 check port 8090
		backend dr
		  option httpchk GET /readyz
		  http-check expect status 200
		  default-server inter 10s fall 2 rise 2 on-marked-down shutdown-sessions
		  server dr ${IP[dr]}:8080 check port 8090
	EOF
	start_bg client haproxy haproxy -db -f "$WORK/client/haproxy.cfg"
}

# --- observing -----------------------------------------------------------------------

is_leader() {
	in_ns client curl -fsS -m 1 -o /dev/null "http://${IP[$1]}:8008/leader" 2>/dev/null
}

# The node Patroni says holds the leader key, asked of any reachable member.
leader() {
	local node
	for node in "${PG_NODES[@]}"; do
		if is_leader "$node"; then
			printf '%s\n' "$node"
			return 0
		fi
	done
	return 1
}

wait_for() {
	local what=$1 seconds=$2
	shift 2
	local deadline=$((SECONDS + seconds))
	until "$@"; do
		((SECONDS < deadline)) || dob_die "timed out after ${seconds}s waiting for $what"
		sleep 0.5
	done
}

psql_on() {
	local node=$1
	shift
	psql_db "$node" dob "$@"
}

psql_db() {
	local node=$1 db=$2
	shift 2
	in_ns "$node" runuser -u postgres -- "$PG_BIN/psql" -h "$WORK/$node/run" -d "$db" -XAtq "$@"
}

users_checksum() {
	psql_on "$1" -c "SELECT count(*) || ':' || coalesce(md5(string_agg(username || '=' || date_of_birth, ',' ORDER BY username)), '') FROM users"
}

# Whether the leader has a synchronous standby (Patroni's /sync key names one): only
# then may a failover promote it without losing acknowledged writes, and only then
# will Patroni do it. An operator waits for this before calling an incident over.
sync_standby_ready() {
	local node=$1
	in_ns client curl -fsS -m 2 "http://${IP[$node]}:8008/cluster" 2>/dev/null |
		python3 -c 'import json, sys; m = json.load(sys.stdin)["members"]; sys.exit(0 if any(x["role"] == "sync_standby" and x["state"] in ("running", "streaming") for x in m) else 1)'
}

same_users() {
	[[ "$(users_checksum "$1")" == "$(users_checksum "$2")" ]]
}

is_replica_streaming() {
	local node=$1
	[[ "$(psql_on "$node" -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == t ]] &&
		in_ns client curl -fsS -m 1 "http://${IP[$node]}:8008/patroni" 2>/dev/null | grep -q '"state": *"running"'
}

# A command on the NLB stand-in's admin socket; prints its answer.
nlb_cmd() {
	python3 - "$WORK/client/haproxy.sock" "$1" <<-'EOF'
		import socket, sys
		s = socket.socket(socket.AF_UNIX)
		s.connect(sys.argv[1])
		s.sendall(sys.argv[2].encode() + b"\n")
		data = b""
		while chunk := s.recv(65536):
		    data += chunk
		sys.stdout.write(data.decode())
	EOF
}

# The rolling restart of scripts/deploy/rolling-restart.sh, host by host, against the
# NLB stand-in: deregister (drain) and wait for draining, restart dob-api (SIGTERM: its
# readiness turns 503, it serves out DOB_DRAIN_SECONDS, closes kept-alive connections,
# exits), wait for its /readyz, register again, wait until the health checks pass.
rolling_restart() {
	local node pid deadline
	for node in "${PG_NODES[@]}"; do
		nlb_cmd "set server hosts/$node state drain" >/dev/null
		sleep "$DEREGISTRATION_DELAY"
		pid="$(cat "$WORK/$node/dob-api.pid")"
		kill -TERM "$pid"
		deadline=$((SECONDS + 30))
		while kill -0 "$pid" 2>/dev/null; do
			((SECONDS < deadline)) || dob_die "dob-api on $node did not exit after SIGTERM"
			sleep 0.2
		done
		start_api "$node"
		wait_for "dob-api on $node to be ready" 60 in_ns client curl -fsS -m 2 -o /dev/null \
			"http://${IP[$node]}:8090/readyz"
		nlb_cmd "set server hosts/$node state ready" >/dev/null
		wait_for "the NLB stand-in to have $node in service" 60 nlb_all_up
		dob_log "rolling_deploy: dob-api on $node restarted"
	done
}

# Whether the NLB stand-in has every database host in service (its health checks passed).
nlb_all_up() {
	python3 "$PWD/scripts/drill/nlb.py" "$WORK/client/haproxy.sock" hosts
}

api_ready() {
	# /readyz is not on the public port: a lookup of a user nobody has must come back
	# from the database (404), not as a 503.
	[[ "$(in_ns client curl -s -m 2 -o /dev/null -w '%{http_code}' "http://${IP[client]}:8080/hello/Nobody" 2>/dev/null)" == 404 ]]
}

now() { date +%s.%N; }

# Each region's S3: eu-west-1's on its own host (it goes down with the region),
# eu-central-1's on the internet side.
S3_WEST="http://${IP[s3west]}:5000"
S3_DR="http://${IP[s3dr]}:5000"
S3_WITNESS="http://${IP[s3witness]}:5000"
s3_up() {
	in_ns client curl -fs -m 1 -o /dev/null "$1/"
}

start_s3() {
	mkdir -p "$WORK/client" "$WORK/s3west" "$WORK/s3witness" "$WORK/s3dr"
	start_bg s3west moto "$MOTO" -H "${IP[s3west]}" -p 5000
	start_bg s3dr moto "$MOTO" -H "${IP[s3dr]}" -p 5000
	start_bg s3witness moto "$MOTO" -H "${IP[s3witness]}" -p 5000
	wait_for "eu-west-1's S3 server" 30 s3_up "$S3_WEST"
	wait_for "eu-central-1's S3 server" 30 s3_up "$S3_DR"
	wait_for "the witness region's S3 server" 30 s3_up "$S3_WITNESS"
	in_ns client curl -fsS -m 5 -X PUT -o /dev/null "$S3_WEST/$WEST_BUCKET"
	in_ns client curl -fsS -m 5 -X PUT -o /dev/null "$S3_DR/$DR_BUCKET"
	in_ns client curl -fsS -m 5 -X PUT -o /dev/null "$S3_WITNESS/$WITNESS_BUCKET"
	ec2_tier "$S3_WEST" "$WEST_REGION" "$WEST_FENCE_GROUP" 2
	ec2_tier "$S3_DR" "$DR_REGION" "$DR_FENCE_GROUP" 1
}

# A region's database tier in its EC2 API (moto_server), as Terraform leaves it: two
# database subnets tagged dob:fence-group on their own network ACL, the deny-all ACL
# tagged dob:fence-acl, and `count` hosts tagged with the group. The drill's hosts are
# namespaces, not these instances: what a takeover isolates here is its report; the
# drill's own cut stands in for the network effect.
ec2_tier() {
	in_ns client timeout 30 "$DOB_ROOT/.venv/bin/python" - "$@" <<-'EOF' ||
		import sys
		import boto3
		endpoint, region, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
		ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region,
		                   aws_access_key_id="drill", aws_secret_access_key="drill")
		vpc = ec2.create_vpc(CidrBlock="10.90.0.0/16")["Vpc"]["VpcId"]
		subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.90.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
		ec2.create_tags(Resources=subnets, Tags=[{"Key": "dob:fence-group", "Value": group}])
		own = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
		deny = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
		ec2.create_tags(Resources=[deny], Tags=[{"Key": "dob:fence-acl", "Value": group}])
		for acl in ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": subnets}])["NetworkAcls"]:
		    for assoc in acl["Associations"]:
		        if assoc["SubnetId"] in subnets:
		            ec2.replace_network_acl_association(AssociationId=assoc["NetworkAclAssociationId"], NetworkAclId=own)
		hosts = [i["InstanceId"] for i in ec2.run_instances(ImageId="ami-12345678", MinCount=count, MaxCount=count, SubnetId=subnets[0])["Instances"]]
		ec2.create_tags(Resources=hosts, Tags=[{"Key": "dob:fence-group", "Value": group}])
	EOF
		dob_die "could not create $3's database tier in the EC2 API of $2"
}

# The deploy's step: the fence records (epoch 0 naming eu-west-1, DR receipt attached)
# in all three buckets, created only where none exists.
fence_init() {
	in_ns client env -i PATH="$HOST_PATH" "$BIN_DIR/dob-promote" --fence-init --json \
		--env-file "$WORK/dr/dob.env" >"$WORK/fence-init.json" 2>>"$WORK/fence-init.log" ||
		dob_die "dob-promote --fence-init failed: $(cat "$WORK/fence-init.json" "$WORK/fence-init.log")"
}

DNS_ANSWER="$WORK/dns/answer"
start_dns() {
	mkdir -p "$WORK/dns"
	start_bg client dns python3 "$PWD/scripts/drill/dns.py" \
		--primary "${IP[client]}:8080" --primary-backend hosts \
		--secondary "${IP[client]}:8081" --secondary-backend dr \
		--haproxy-socket "$WORK/client/haproxy.sock" \
		--out "$DNS_ANSWER" --events "$WORK/dns/events.jsonl" \
		--interval 10 --threshold 3 --max-seconds 2400
	wait_for "the DNS stand-in's first answer" 30 test -s "$DNS_ANSWER"
}

# Who leads, as each member's Patroni says, every half second (scripts/drill/roles.py):
# the report's leader_changes and report.html's timelines.
start_roles() {
	local -a members=()
	local node
	for node in "${PG_NODES[@]}" dr; do
		members+=(--member "$node=${IP[$node]}:8008")
	done
	start_bg client roles python3 "$PWD/scripts/drill/roles.py" "${members[@]}" \
		--events "$WORK/roles.jsonl" --interval 0.5 --timeout 0.4 --max-seconds 2400
}

dns_answers() {
	[[ "$(cat "$DNS_ANSWER" 2>/dev/null)" == "$1" ]]
}

# The DR standby leader replays what it receives from eu-west-1's leader.
dr_streaming() {
	[[ "$(psql_on dr -c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" == streaming ]]
}

# dob-backup or dob-restore on `node` as the units run them: the leader's local server
# (as the superuser, for the drill's scratch database), over TCP with verify-full (the
# CA reaches pg_dump and pg_restore too, as PGSSLROOTCERT), the drill's S3 bucket.
job_on() {
	local node=$1 binary=$2
	shift 2
	in_ns "$node" env -i PATH="$HOST_PATH" \
		DOB_DATABASE_URL="postgresql://postgres:$(secret superuser)@${IP[$node]}:5432/dob?sslmode=verify-full" \
		DOB_DATABASE_CA_FILE="$CA_FILE" DOB_PGBACKREST_CONFIG="$WORK/$node/pgbackrest.conf" \
		DOB_S3_BUCKET=dob-drill DOB_S3_PREFIX=dob DOB_S3_REGION=eu-west-1 \
		DOB_S3_ENDPOINT="$S3_WEST" AWS_ACCESS_KEY_ID=drill \
		AWS_SECRET_ACCESS_KEY=drill DOB_PG_BIN="$PG_BIN" RUST_LOG=warn \
		"$BIN_DIR/$binary" "$@"
}

# The backup unit on `node`: its ExecCondition (Patroni's answer), then dob-backup.
# Prints the backup id and its manifest's timeline as ID@TIMELINE, or "skipped".
backup_unit_on() {
	local node=$1 condition=0
	in_ns "$node" env DOB_PATRONI_URL="http://${IP[$node]}:8008" \
		"$PWD/scripts/pg-is-primary.sh" 2>>"$WORK/$node/backup.log" || condition=$?
	case $condition in
	0) job_on "$node" dob-backup --json 2>>"$WORK/$node/backup.log" |
		python3 -c 'import json, sys; m = json.load(sys.stdin)["report"]["manifest"]; print(m["id"] + "@" + str(m["source"]["timeline"]))' ;;
	1) echo skipped ;;
	*) dob_die "the backup unit's condition failed on $node (exit $condition)" ;;
	esac
}

# tcp_psql NODE SSLMODE SQL...: psql from the internet side to NODE's server over TCP as
# the app role (password and CA through the environment, never argv).
tcp_psql() {
	local node=$1 mode=$2
	shift 2
	in_ns client env -i PATH="$HOST_PATH" PGPASSWORD="$(secret app)" PGSSLROOTCERT="$CA_FILE" \
		PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -XAtq \
		"host=${IP[$node]} port=5432 dbname=dob user=dob sslmode=$mode" "$@"
}

# What the hosts promise about TLS, on every database server: a verify-full connection
# to its address gets TLS, and a plaintext one (sslmode=disable) is refused by pg_hba's
# reject rule (not by a network error, not by a password check).
tls_checks() {
	local node out
	for node in "${PG_NODES[@]}" dr; do
		out="$(tcp_psql "$node" verify-full -c 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' 2>&1)" ||
			dob_die "a verify-full connection to $node failed: $out"
		[[ "$out" == t ]] || dob_die "a verify-full connection to $node is not TLS: $out"
		if out="$(tcp_psql "$node" disable -c 'SELECT 1' 2>&1)"; then
			dob_die "a plaintext connection to $node was accepted"
		fi
		[[ "$out" == *"pg_hba.conf rejects connection"*"no encryption"* ]] ||
			dob_die "a plaintext connection to $node failed, but not by pg_hba's reject: $out"
	done
	dob_log "TLS: verify-full connections to a, b and dr get TLS; plaintext ones are refused"
}

live_timeline() {
	psql_on "$1" -c "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
}

# load_start NAME TARGET NODE: TARGET is a URL, or "dns" for the DNS stand-in's answer.
# load_start NAME TARGET NODE [load.py options...]
load_start() {
	local name=$1 target=$2 node=$3
	shift 3
	local -a to=(--url "$target")
	[[ $target != dns ]] || to=(--dns "$DNS_ANSWER")
	start_bg "$node" "load-$name" python3 "$PWD/scripts/drill/load.py" "${to[@]}" \
		--out "$WORK/load" --name "$name" --rate 40 --max-seconds 900 "$@"
}

load_stop() {
	touch "$WORK/load/$1.stop"
}

# A JSON file's text, or null when it is missing or empty.
json_file() {
	local text
	text="$(cat "$1" 2>/dev/null)"
	printf '%s' "${text:-null}"
}

# Whether every named load on `node` has exited (its last request answered or timed out).
loads_done() {
	local node=$1 name pid state
	shift
	for name in "$@"; do
		pid="$(cat "$WORK/$node/load-$name.pid" 2>/dev/null)" || continue
		state="$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" || continue
		[[ -z "$state" || "$state" == Z ]] || return 1
	done
}

# failback: the runbook's way home after a takeover (`after` names the scenario that
# made it). eu-west-1, reachable again, follows the DR region (dob-promote --follow: a
# standby cluster, its leader rewound past what it wrote alone); then the takeover in
# eu-west-1 (a new epoch naming it, the DR region's leases run out, eu-west-1 catches up
# with everything the DR region flushed, promotion); then the DR region follows
# eu-west-1 again and re-attaches. Under load through DNS (load `back-<after>`).
fail_back() {
	local after=$1
	local name="back-$after" files="$WORK/failback-$after"
	local fault follow_west_exit=0 west_standby="" failback_at failback_exit=0 follow_dr_exit=0 home
	local lift_west_exit=0 lift_dr_exit=0
	load_start "$name" dns client
	sleep 3
	fault="$(now)"
	# From the writing region: eu-west-1's subnets back on their network ACL, its hosts
	# started (what the takeover isolated; nothing when its API was down then).
	lift_on dr --json >"$files-lift-west.json" 2>>"$WORK/takeover.log" || lift_west_exit=$?
	dob_log "failback: dob-promote --lift-isolation in the DR region exited $lift_west_exit: $(cat "$files-lift-west.json")"
	# On the host that leads eu-west-1, as the runbook says.
	promote_on "$(leader || echo a)" --follow --json >"$files-follow-west.json" 2>>"$WORK/takeover.log" || follow_west_exit=$?
	dob_log "failback: dob-promote --follow in eu-west-1 exited $follow_west_exit: $(cat "$files-follow-west.json")"
	for _ in $(seq 1 120); do
		west_standby="$(leader || true)"
		[[ -n "$west_standby" && "$(psql_on "$west_standby" -c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" == streaming ]] && break
		west_standby=""
		sleep 1
	done
	[[ -n "$west_standby" ]] || dob_die "eu-west-1's standby leader does not stream from the DR region"
	dob_log "failback: $west_standby streams from the DR region"
	failback_at="$(now)"
	promote_on "$west_standby" --takeover --json >"$files-takeover.json" 2>>"$WORK/takeover.log" || failback_exit=$?
	dob_log "failback: dob-promote --takeover in eu-west-1 exited $failback_exit: $(cat "$files-takeover.json")"
	lift_on "$west_standby" --json >"$files-lift-dr.json" 2>>"$WORK/takeover.log" || lift_dr_exit=$?
	dob_log "failback: dob-promote --lift-isolation in eu-west-1 exited $lift_dr_exit: $(cat "$files-lift-dr.json")"
	promote_on dr --follow --json >"$files-follow-dr.json" 2>>"$WORK/takeover.log" || follow_dr_exit=$?
	dob_log "failback: dob-promote --follow in the DR region exited $follow_dr_exit: $(cat "$files-follow-dr.json")"
	wait_for "the DR standby cluster to stream from eu-west-1" 180 dr_streaming
	wait_for "eu-west-1 to be attached to the DR region" 120 dr_attached
	wait_for "the DNS stand-in to answer eu-west-1" 150 dns_answers "${IP[client]}:8080"
	home="$(now)"
	dob_log "failback: writes are home after $(python3 -c "print(round($home - $fault, 1))") s"
	wait_for "the NLB stand-in to have both hosts in service" 120 nlb_all_up
	for node in "${PG_NODES[@]}"; do
		[[ "$node" == "$(leader)" ]] || wait_for "$node to stream from $(leader)" 120 is_replica_streaming "$node"
	done
	sleep 5
	load_stop "$name"
	sleep 2
	psql_on "$(leader)" -c "COPY (SELECT username, date_of_birth FROM users) TO STDOUT" >"$files-users.tsv"
	printf '{"scenario":"failback","after":"%s","load":"%s","users":"%s","fault":%s,"follow_west_exit":%s,"follow_west":%s,"failback_at":%s,"failback_exit":%s,"failback":%s,"follow_dr_exit":%s,"follow_dr":%s,"lift_west_exit":%s,"lift_west":%s,"lift_dr_exit":%s,"lift_dr":%s,"home":%s,"detach_end":%s,"end":%s}\n' \
		"$after" "$name" "$files-users.tsv" "$fault" "$follow_west_exit" "$(json_file "$files-follow-west.json")" \
		"$failback_at" "$failback_exit" "$(json_file "$files-takeover.json")" "$follow_dr_exit" \
		"$(json_file "$files-follow-dr.json")" "$lift_west_exit" "$(json_file "$files-lift-west.json")" \
		"$lift_dr_exit" "$(json_file "$files-lift-dr.json")" "$home" "$(detach_record)" "$(now)" >>"$events"
}

# --- the run -------------------------------------------------------------------------

dob_log "work directory $WORK"
mkdir -p "$WORK/load"
chmod 777 "$WORK/load"
net_up
make_tls
for node in "${PG_NODES[@]}" dr; do
	write_patroni_config "$node"
	write_host_env "$node"
done
mkdir -p "$WORK/witness"
start_s3
fence_init
for node in "${PG_NODES[@]}"; do
	start_host "$node"
done
start_etcd witness "$(etcd_cluster)" dob-drill
start_nlb
wait_for "a Patroni leader" 90 leader >/dev/null
wait_for "the replica to stream" 90 is_replica_streaming "$( [[ "$(leader)" == a ]] && echo b || echo a)"
# The DR standby cluster copies eu-west-1's leader, then streams from it.
start_host dr
wait_for "the API through the NLB stand-in" 60 api_ready
wait_for "the NLB stand-in to have both hosts in service" 60 nlb_all_up
wait_for "the DR standby cluster to stream from eu-west-1" 180 dr_streaming
start_dns
start_roles
wait_for "the DNS stand-in to answer eu-west-1" 5 dns_answers "${IP[client]}:8080"
tls_checks
# The repository: its stanza and a full backup, on the leader, before any fault (the
# hosts' weekly full backup); from here on every WAL segment is archived to S3.
first="$(leader)"
pgbackrest_on "$first" stanza-create >>"$WORK/$first/pgbackrest.log" 2>&1 ||
	dob_die "pgbackrest stanza-create failed on $first (see $WORK/$first/pgbackrest.log)"
pgbackrest_on "$first" check >>"$WORK/$first/pgbackrest.log" 2>&1 ||
	dob_die "pgbackrest check failed on $first: WAL does not reach S3"
pgbackrest_on "$first" --type=full backup >>"$WORK/$first/pgbackrest.log" 2>&1 ||
	dob_die "pgbackrest backup failed on $first"
dob_log "pgBackRest: stanza dob created and a full backup taken on $first"
dob_log "cluster up after $((SECONDS - started)) s: leader $(leader), the DR region streams"
# rolling_deploy: every host's dob-api replaced under load; no request may fail.
load_start main dns client
sleep 5
events="$WORK/events.jsonl"

# patroni_upgrade: Debian's Patroni 3.0.2 -> 3.3 -> the pinned release, in place, under
# load: pause both clusters, restart each member's Patroni on the next release,
# resume. Patroni 4 upgrades reliably only from 3.1 or later, hence the middle step. No
# leader may change and nothing acknowledged may be lost.
upgrade_leader="$(leader)"
from_version="$(patroni_version "$upgrade_leader")"
fault="$(now)"
for dir in "$PATRONI_STEP" "$PATRONI_NEW"; do
	patronictl_on "$upgrade_leader" pause --wait >>"$WORK/patroni-upgrade.log" 2>&1 ||
		dob_die "patronictl pause failed in eu-west-1 (see $WORK/patroni-upgrade.log)"
	patronictl_on dr pause --wait >>"$WORK/patroni-upgrade.log" 2>&1 ||
		dob_die "patronictl pause failed in the DR region (see $WORK/patroni-upgrade.log)"
	for node in "${PG_NODES[@]}" dr; do
		upgrade_patroni "$node" "$dir"
	done
	patronictl_on "$upgrade_leader" resume --wait >>"$WORK/patroni-upgrade.log" 2>&1 ||
		dob_die "patronictl resume failed in eu-west-1 (see $WORK/patroni-upgrade.log)"
	patronictl_on dr resume --wait >>"$WORK/patroni-upgrade.log" 2>&1 ||
		dob_die "patronictl resume failed in the DR region (see $WORK/patroni-upgrade.log)"
	dob_log "patroni_upgrade: every member runs Patroni $(patroni_version "$upgrade_leader")"
done
# Then failsafe mode, as the runbook's last step: the clusters were made without it (as
# the images before the pinned release made them).
for node in "$upgrade_leader" dr; do
	patronictl_on "$node" edit-config --force --quiet -s failsafe_mode=true >>"$WORK/patroni-upgrade.log" 2>&1 ||
		dob_die "patronictl edit-config -s failsafe_mode=true failed on $node (see $WORK/patroni-upgrade.log)"
done
wait_for "failsafe mode in eu-west-1's configuration" 30 failsafe_on "$upgrade_leader"
sleep 5
versions="$(for node in "${PG_NODES[@]}" dr; do printf '"%s":"%s",' "$node" "$(patroni_version "$node")"; done)"
failsafe=false
failsafe_on "$upgrade_leader" && failsafe_on dr && failsafe=true
printf '{"scenario":"patroni_upgrade","fault":%s,"from":"%s","step":"%s","want":"%s","versions":{%s},"failsafe":%s,"leader_before":"%s","leader_after":"%s","detach":%s,"end":%s}\n' \
	"$fault" "$from_version" "$("$PATRONI_STEP/patroni" --version | awk '{ print $2 }')" \
	"$("$PATRONI_NEW/patroni" --version | awk '{ print $2 }')" "${versions%,}" "$failsafe" "$upgrade_leader" \
	"$(leader || true)" "$(detach_record)" "$(now)" >>"$events"

fault="$(now)"
rolling_restart
sleep 3
printf '{"scenario":"rolling_deploy","fault":%s,"detach":%s,"end":%s}\n' "$fault" "$(detach_record)" "$(now)" >>"$events"

# switchover: the planned change of leader, as an operator runs it on a host.
from_leader="$(leader)"
wait_for "a synchronous standby" 60 sync_standby_ready "$from_leader"
fault="$(now)"
switch_exit=0
in_ns "$from_leader" env -i PATH="$HOST_PATH" "$BIN_DIR/dob-promote" --switchover \
	--patroni-config "$WORK/$from_leader/patroni.yml" --json >"$WORK/switchover.json" \
	2>>"$WORK/switchover.log" || switch_exit=$?
to_leader="$(leader || true)"
dob_log "switchover: dob-promote exited $switch_exit; leader $from_leader -> $to_leader"
wait_for "$from_leader to stream from $to_leader" 120 is_replica_streaming "$from_leader"
wait_for "the NLB stand-in to have both hosts in service" 60 nlb_all_up
printf '{"scenario":"switchover","fault":%s,"from":"%s","to":"%s","exit":%s,"detach":%s,"end":%s}\n' \
	"$fault" "$from_leader" "$to_leader" "$switch_exit" "$(detach_record)" "$(now)" >>"$events"

# A backup before the failovers: after them it comes from an earlier timeline.
first_leader="$(leader)"
old_backup="$(backup_unit_on "$first_leader")"
old_backup="${old_backup%@*}"
[[ "$old_backup" != skipped ]] || dob_die "the backup unit skipped on the leader $first_leader"
dob_log "backup $old_backup taken on $first_leader before the failovers"

# az_loss
victim="$(leader)"
wait_for "a synchronous standby" 60 sync_standby_ready "$victim"
kill_host "$victim"
# After the kill: a write sent from now on cannot have reached the old leader.
fault="$(now)"
dob_log "az_loss: killed host $victim (the leader)"
wait_for "a new leader" 60 leader >/dev/null
promoted="$(now)"
dob_log "az_loss: $(leader) leads"
# How long the DR standby cluster takes to stream from the new leader: eu-west-1's
# writes wait for its receipt meanwhile, and it must stay well below
# DOB_DR_DETACH_AFTER_MS.
wait_for "the DR standby cluster to stream from the new leader" 60 dr_streaming
dr_back="$(now)"
dob_log "az_loss: the DR region streams again $(python3 -c "print(round($dr_back - $promoted, 1))") s after the promotion"
sleep 20
printf '{"scenario":"az_loss","fault":%s,"victim":"%s","promoted":%s,"dr_back":%s,"detach":%s,"end":%s}\n' \
	"$fault" "$victim" "$promoted" "$dr_back" "$(detach_record)" "$(now)" >>"$events"

# the victim comes back as it boots: links up, etcd, Patroni, dob-api
ip -n "$NET" link set "v-$victim" up
start_host "$victim"
wait_for "$victim to rejoin as a streaming replica" 120 is_replica_streaming "$victim"
dob_log "rejoin: $victim streams from $(leader) again"
# Back in service behind the NLB stand-in (two passing checks, 10 s apart) before the
# next fault, as an operator would wait before calling the incident over.
wait_for "the NLB stand-in to have both hosts in service" 60 nlb_all_up
printf '{"scenario":"rejoin_after_az_loss","node":"%s","detach":%s,"end":%s}\n' "$victim" "$(detach_record)" "$(now)" >>"$events"
sleep 5

# partition: the leader loses the other etcd members (and the other database) but stays
# reachable from the NLB stand-in and from a writer inside its own AZ.
cut="$(leader)"
other="$( [[ "$cut" == a ]] && echo b || echo a)"
wait_for "a synchronous standby" 60 sync_standby_ready "$cut"
load_start inaz "http://${IP[$cut]}:8080" "$cut"
sleep 3
partition "$cut" "$other" witness
fault="$(now)"
dob_log "partition: leader $cut cut off from $other and the witness"
# Watched from the moment of the cut: the cut-off leader must stop taking writes (its
# server read-only, shutting down or stopped) within the TTL, before anyone else could
# take the leader key.
demoted_at=""
deadline=$((SECONDS + TTL + 20))
while ((SECONDS < deadline)); do
	if [[ "$(psql_on "$cut" -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" != f ]]; then
		demoted_at="$(now)"
		break
	fi
	sleep 0.2
done
[[ -n "$demoted_at" ]] || dob_log "partition: $cut still read-write after $((TTL + 20)) s"
wait_for "$other to take the leader key" 60 is_leader "$other"
dob_log "partition: $other leads"
sleep 10
load_stop inaz
printf '{"scenario":"partition","fault":%s,"victim":"%s","demoted":%s,"detach":%s,"end":%s}\n' \
	"$fault" "$cut" "${demoted_at:-null}" "$(detach_record)" "$(now)" >>"$events"

heal "$cut" "$other" witness
wait_for "$cut to rejoin as a streaming replica" 120 is_replica_streaming "$cut"
dob_log "rejoin: $cut streams from $(leader) again"
sleep 5
load_stop main
sleep 3

# The end: every node's `users`, and every acknowledged write, against the leader.
final="$(leader)"
for node in "${PG_NODES[@]}" dr; do
	wait_for "$node to catch up with $final" 60 same_users "$node" "$final"
done
checksums="{"
for node in "${PG_NODES[@]}" dr; do
	checksums+="\"$node\":\"$(users_checksum "$node")\","
done
checksums="${checksums%,}}"
psql_on "$final" -c "COPY (SELECT username, date_of_birth FROM users) TO STDOUT" >"$WORK/final-users.tsv"
printf '{"scenario":"rejoin","node":"%s","checksums":%s,"end":%s}\n' "$cut" "$checksums" "$(now)" >>"$events"

# backup_after_failover: the backup unit runs on every host; only the leader backs up.
fault="$(now)"
backups=()
for node in "${PG_NODES[@]}"; do
	backups+=("$node=$(backup_unit_on "$node")")
done
new_backup=""
for entry in "${backups[@]}"; do
	[[ "${entry#*=}" == skipped ]] || new_backup="${entry#*=}"
done
[[ -n "$new_backup" ]] || dob_die "no host backed up: ${backups[*]}"
manifest_timeline="${new_backup#*@}"
new_backup="${new_backup%@*}"
drill_new=0
job_on "$final" dob-restore --drill "$new_backup" >>"$WORK/restore-drill.log" 2>&1 || drill_new=$?
drill_old=0
job_on "$final" dob-restore --drill "$old_backup" >>"$WORK/restore-drill.log" 2>&1 || drill_old=$?
printf '{"scenario":"backup_after_failover","backups":"%s","manifest_timeline":%s,"live_timeline":%s,"drill_exit":%s,"old_backup_drill_exit":%s,"end":%s}\n' \
	"${backups[*]}" "$manifest_timeline" "$(live_timeline "$final")" "$drill_new" "$drill_old" "$(now)" >>"$events"

# pitr: a bad DELETE under load, rewound with dob-restore --to-time on the leader's host.
pitr_on="$(leader)"
load_start pitr dns client
sleep 5
# REPEATABLE READ: the snapshot is taken by the SELECT, before it reads the clock, so
# every row the DELETE removes was committed before the recorded time (recovery to that
# time brings it back), and a write committed after it was invisible to the DELETE (it
# stays in the database the recovery replaces, which is kept).
bad="$(psql_on "$pitr_on" -c "BEGIN ISOLATION LEVEL REPEATABLE READ" \
	-c "SELECT extract(epoch FROM t) || ' ' || to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM (SELECT clock_timestamp() AS t) s" \
	-c "DELETE FROM users" -c "COMMIT")" || dob_die "the bad DELETE failed on $pitr_on"
fault="${bad%% *}"
target="${bad##* }"
dob_log "pitr: DELETE FROM users on $pitr_on after $target"
sleep 5
load_stop pitr
sleep 3
# The operator's steps: make sure the archive holds WAL past the mistake (a switch,
# archived), check the repository, rewind.
pgbackrest_on "$pitr_on" check >>"$WORK/$pitr_on/pgbackrest.log" 2>&1 ||
	dob_die "pgbackrest check failed on $pitr_on"
verify_exit=0
pgbackrest_on "$pitr_on" verify >>"$WORK/$pitr_on/pgbackrest.log" 2>&1 || verify_exit=$?
restore_exit=0
job_on "$pitr_on" dob-restore --to-time "$target" --scratch-dir "$WORK/$pitr_on/pitr" \
	--scratch-port 5434 --json >"$WORK/pitr.json" 2>>"$WORK/pitr.log" || restore_exit=$?
restored="$(now)"
dob_log "pitr: dob-restore --to-time exited $restore_exit: $(tail -n 1 "$WORK/pitr.log")"
wait_for "the API through the NLB stand-in" 60 api_ready
psql_on "$pitr_on" -c "COPY (SELECT username, date_of_birth FROM users) TO STDOUT" >"$WORK/pitr-users.tsv"
kept="$(python3 -c 'import json, sys; print((json.load(open(sys.argv[1])).get("pitr") or {}).get("previous_database") or "")' "$WORK/pitr.json" 2>/dev/null || true)"
: >"$WORK/pitr-kept.tsv"
if [[ -n "$kept" ]]; then
	psql_db "$pitr_on" "$kept" -c "COPY (SELECT username, date_of_birth FROM users) TO STDOUT" >"$WORK/pitr-kept.tsv"
fi
pitr_json="$(json_file "$WORK/pitr.json")"
printf '{"scenario":"pitr","fault":%s,"target":"%s","restore_exit":%s,"verify_exit":%s,"restored":%s,"result":%s,"end":%s}\n' \
	"$fault" "$target" "$restore_exit" "$verify_exit" "$restored" "$pitr_json" "$(now)" >>"$events"

# dr_detach: the DR region (its database host and its bucket) unreachable from eu-west-1
# for 60 s, no takeover. Writes wait for the DR receipt, then eu-west-1 records itself
# detached in a majority (its own bucket and the witness's) and goes on alone; once the
# DR region is back and has caught up, it re-attaches by itself.
wait_for "the DR standby cluster to stream from eu-west-1" 60 dr_streaming
# Attached before the fault (a restore's WAL, just before, may have outrun the DR
# region for a while): what happens next is this scenario's doing.
wait_for "eu-west-1 to be attached to the DR region" 90 dr_attached
detach_before="$(detach_record)"
load_start detach dns client
sleep 5
for node in "${PG_NODES[@]}"; do
	partition "$node" dr s3dr
done
fault="$(now)"
dob_log "dr_detach: the DR region cut off from eu-west-1"
sleep 30
detach_during="$(detach_record)"
sleep 30
for node in "${PG_NODES[@]}"; do
	heal "$node" dr s3dr
done
healed="$(now)"
dob_log "dr_detach: the DR region is back"
reattached=null
deadline=$((SECONDS + 120))
while ((SECONDS < deadline)); do
	if dr_attached; then
		reattached="$(now)"
		break
	fi
	sleep 1
done
dob_log "dr_detach: DR receipt state now $(detach_record)"
sleep 3
load_stop detach
printf '{"scenario":"dr_detach","fault":%s,"healed":%s,"reattached":%s,"detach_before":%s,"detach_during":%s,"detach_after":%s,"end":%s}\n' \
	"$fault" "$healed" "$reattached" "$detach_before" "$detach_during" "$(detach_record)" "$(now)" >>"$events"

# fence_store_outage: every fence bucket unreachable from eu-west-1 for 60 s. Its write
# leases run out (nothing acknowledged without one), and writes resume by themselves
# once a majority of the buckets answers again.
load_start fence dns client
sleep 5
for node in "${PG_NODES[@]}"; do
	partition "$node" s3west s3dr s3witness
done
fault="$(now)"
dob_log "fence_store_outage: every fence bucket cut off from eu-west-1"
sleep 60
for node in "${PG_NODES[@]}"; do
	heal "$node" s3west s3dr s3witness
done
returned="$(now)"
dob_log "fence_store_outage: the buckets answer again"
sleep 20
load_stop fence
printf '{"scenario":"fence_store_outage","fault":%s,"returned":%s,"end":%s}\n' \
	"$fault" "$returned" "$(now)" >>"$events"

# takeover_in_flight: eu-west-1's leader cut off from its synchronous standby and from the
# DR region (database host and bucket) while writers inside eu-west-1 wait on it (their
# commits hang on the synchronous standby; each client waits up to 60 s), and the
# operator's takeover in the DR region right away. A commit that the leader finishes
# after the takeover must not be acknowledged: the lease check after COMMIT answers it
# 503 (outcome unknown), and the watcher cannot detach under an epoch that has moved on.
wait_for "the DR standby cluster to stream from eu-west-1" 60 dr_streaming
wait_for "eu-west-1 to be attached to the DR region" 90 dr_attached
flight_leader="$(leader)"
flight_standby=""
for node in "${PG_NODES[@]}"; do
	[[ "$node" == "$flight_leader" ]] || flight_standby=$node
done
load_start flight dns client
for i in 1 2 3; do
	load_start "flightin$i" "http://${IP[$flight_leader]}:8080" "$flight_leader" --timeout 60
done
sleep 5
partition "$flight_leader" "$flight_standby" dr s3dr
fault="$(now)"
dob_log "takeover_in_flight: leader $flight_leader cut off from $flight_standby and the DR region, writers waiting on it"
sleep 3
flight_exit=0
promote_on dr --takeover --json >"$WORK/flight-takeover.json" 2>>"$WORK/takeover.log" || flight_exit=$?
promoted="$(now)"
dob_log "takeover_in_flight: dob-promote --takeover exited $flight_exit: $(cat "$WORK/flight-takeover.json")"
wait_for "the DNS stand-in to answer the DR region" 150 dns_answers "${IP[client]}:8081"
dns_switched="$(now)"
dob_log "takeover_in_flight: DNS answers the DR region after $(python3 -c "print(round($dns_switched - $fault, 1))") s"
# Every writer inside eu-west-1 has its answer (204, 503 or its own 60 s timeout)
# before the count.
for i in 1 2 3; do
	load_stop "flightin$i"
done
wait_for "the writers inside eu-west-1 to have their answers" 90 loads_done "$flight_leader" flightin1 flightin2 flightin3
load_stop flight
sleep 2
psql_on dr -c "COPY (SELECT username, date_of_birth FROM users) TO STDOUT" >"$WORK/flight-dr-users.tsv"
heal "$flight_leader" "$flight_standby" dr s3dr
printf '{"scenario":"takeover_in_flight","fault":%s,"leader":"%s","takeover_exit":%s,"takeover":%s,"promoted":%s,"dns_switched":%s,"dr_users":"%s","end":%s}\n' \
	"$fault" "$flight_leader" "$flight_exit" "$(json_file "$WORK/flight-takeover.json")" "$promoted" \
	"$dns_switched" "$WORK/flight-dr-users.tsv" "$(now)" >>"$events"
fail_back takeover_in_flight

# region_split: eu-west-1 loses the DR region (its database host and its bucket) but
# keeps its own bucket, the witness's and its clients, under load through DNS and from
# writers inside eu-west-1 straight at its hosts. It detaches (its own bucket and the
# witness's are a majority) and goes on alone. The operator's takeover then refuses,
# reporting the loss window (exit 7), and fences eu-west-1 (the epoch is recorded first);
# repeated with --accept-data-loss it promotes the DR region.
wait_for "the DR standby cluster to stream from eu-west-1" 60 dr_streaming
wait_for "eu-west-1 to be attached to the DR region" 90 dr_attached
load_start split dns client
for node in "${PG_NODES[@]}"; do
	load_start "splitin$node" "http://${IP[$node]}:8080" "$node"
done
sleep 5
for node in "${PG_NODES[@]}"; do
	partition "$node" dr s3dr
done
fault="$(now)"
dob_log "region_split: eu-west-1 cut off from the DR region and its bucket"
wait_for "eu-west-1 to record itself detached" 60 dr_state_is detached
detached="$(now)"
dob_log "region_split: eu-west-1 detached after $(python3 -c "print(round($detached - $fault, 1))") s: $(detach_record)"
# Writes acknowledged alone meanwhile: the loss the operator will be told about.
sleep 10
refused_exit=0
refused_at="$(now)"
promote_on dr --takeover --json >"$WORK/split-refused.json" 2>>"$WORK/takeover.log" || refused_exit=$?
dob_log "region_split: dob-promote --takeover exited $refused_exit: $(cat "$WORK/split-refused.json")"
accepted_at="$(now)"
accept_exit=0
promote_on dr --takeover --accept-data-loss --json >"$WORK/split-takeover.json" 2>>"$WORK/takeover.log" || accept_exit=$?
promoted="$(now)"
dob_log "region_split: dob-promote --takeover --accept-data-loss exited $accept_exit: $(cat "$WORK/split-takeover.json")"
wait_for "the DNS stand-in to answer the DR region" 150 dns_answers "${IP[client]}:8081"
dns_switched="$(now)"
dob_log "region_split: DNS answers the DR region after $(python3 -c "print(round($dns_switched - $fault, 1))") s"
sleep 10
load_stop split
for node in "${PG_NODES[@]}"; do
	load_stop "splitin$node"
done
sleep 2
psql_on dr -c "COPY (SELECT username, date_of_birth FROM users) TO STDOUT" >"$WORK/split-dr-users.tsv"
for node in "${PG_NODES[@]}"; do
	heal "$node" dr s3dr
done
refused_json="$(json_file "$WORK/split-refused.json")"
split_json="$(json_file "$WORK/split-takeover.json")"
printf '{"scenario":"region_split","fault":%s,"detached":%s,"refused_at":%s,"refused_exit":%s,"refused":%s,"accepted_at":%s,"accept_exit":%s,"takeover":%s,"promoted":%s,"dns_switched":%s,"end":%s}\n' \
	"$fault" "$detached" "$refused_at" "$refused_exit" "$refused_json" "$accepted_at" "$accept_exit" \
	"$split_json" "$promoted" "$dns_switched" "$(now)" >>"$events"
fail_back region_split

# region_loss: all of eu-west-1 cut off from the internet side, from the DR region and
# from the witness region (its hosts still see one another, so its leader keeps
# leading), under load through DNS and from writers inside eu-west-1 that keep writing
# to its hosts. The operator step once DNS answers the DR region: dob-promote
# --takeover there.
wait_for "the DR standby cluster to stream from eu-west-1" 60 dr_streaming
wait_for "eu-west-1 to be attached to the DR region" 90 dr_attached
load_start region dns client
for node in "${PG_NODES[@]}"; do
	load_start "regionin$node" "http://${IP[$node]}:8080" "$node"
done
sleep 5
for node in "${WEST_NODES[@]}"; do
	partition "$node" client dr s3dr s3witness
done
# The region's S3 goes with it.
partition s3west client dr "${WEST_NODES[@]}"
fault="$(now)"
dob_log "region_loss: eu-west-1 cut off"
wait_for "the DNS stand-in to answer the DR region" 120 dns_answers "${IP[client]}:8081"
dns_switched="$(now)"
dob_log "region_loss: DNS answers the DR region after $(python3 -c "print(round($dns_switched - $fault, 1))") s"
# The runbook's first step: what it would do, changing nothing. It says whether
# eu-west-1's EC2 API can isolate it: not here, the region is gone, API and all; the
# operator then promotes with --old-region-unfenced, as the runbook says.
promote_on dr --takeover --dry-run --json >"$WORK/takeover-dry-run.json" 2>>"$WORK/takeover.log" ||
	dob_die "dob-promote --takeover --dry-run failed: $(cat "$WORK/takeover-dry-run.json")"
unfenced=()
[[ "$(python3 -c 'import json, sys; print((json.load(sys.stdin).get("old_region") or {}).get("state"))' <"$WORK/takeover-dry-run.json")" == would-isolate ]] ||
	unfenced=(--old-region-unfenced)
dob_log "region_loss: the dry run says: $(cat "$WORK/takeover-dry-run.json")"
dr_role="$(in_ns client curl -fsS -m 2 "http://${IP[dr]}:8008/patroni" | python3 -c 'import json, sys; print(json.load(sys.stdin)["role"])')"
[[ "$dr_role" == standby_leader ]] || dob_die "after --dry-run the DR host is $dr_role, not the standby leader"
takeover_exit=0
takeover_at="$(now)"
promote_on dr --takeover "${unfenced[@]}" --json >"$WORK/takeover.json" 2>>"$WORK/takeover.log" || takeover_exit=$?
dob_log "region_loss: dob-promote --takeover exited $takeover_exit: $(cat "$WORK/takeover.json")"
sleep 15
# eu-west-1 comes back: its leader never stopped leading. Writers straight at its
# hosts (past the NLB stand-in, which would refuse them for a failing health check)
# must get nothing acknowledged.
for node in "${WEST_NODES[@]}"; do
	heal "$node" client dr s3dr s3witness
done
heal s3west client dr "${WEST_NODES[@]}"
returned="$(now)"
dob_log "region_loss: eu-west-1 is back"
for node in "${PG_NODES[@]}"; do
	load_start "back$node" "http://${IP[$node]}:8080" client
done
sleep 20
for node in "${PG_NODES[@]}"; do
	load_stop "back$node"
	load_stop "regionin$node"
done
load_stop region
# The runbook's step once eu-west-1's bucket answers again: the same command, which
# copies the record to the bucket that lacked it.
again_exit=0
promote_on dr --takeover --json >"$WORK/takeover-again.json" 2>>"$WORK/takeover.log" || again_exit=$?
dob_log "region_loss: dob-promote --takeover again exited $again_exit: $(cat "$WORK/takeover-again.json")"
sleep 3
west_leader="$(leader || echo none)"
psql_on dr -c "COPY (SELECT username, date_of_birth FROM users) TO STDOUT" >"$WORK/dr-users.tsv"
takeover_json="$(json_file "$WORK/takeover.json")"
again_json="$(json_file "$WORK/takeover-again.json")"
printf '{"scenario":"region_loss","fault":%s,"dns_switched":%s,"takeover_at":%s,"takeover_exit":%s,"takeover":%s,"again_exit":%s,"again":%s,"returned":%s,"west_leader":"%s","region_delay_ms":%s,"end":%s}\n' \
	"$fault" "$dns_switched" "$takeover_at" "$takeover_exit" "$takeover_json" "$again_exit" "$again_json" \
	"$returned" "$west_leader" "$region_delay_ms" "$(now)" >>"$events"

# pitr_after_takeover: the DR region writes since region_loss's takeover, which took its
# first full backup into the DR region's own repository (pgbackrest-dr/ of its bucket),
# where it has archived since the promotion. Under load through DNS, a bad DELETE FROM
# users there, and the operator's dob-restore --to-time on the DR host.
load_start pitrdr dns client
sleep 5
bad="$(psql_on dr -c "BEGIN ISOLATION LEVEL REPEATABLE READ" \
	-c "SELECT extract(epoch FROM t) || ' ' || to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM (SELECT clock_timestamp() AS t) s" \
	-c "DELETE FROM users" -c "COMMIT")" || dob_die "the bad DELETE failed on dr"
fault="${bad%% *}"
target="${bad##* }"
dob_log "pitr_after_takeover: DELETE FROM users in the DR region after $target"
sleep 5
load_stop pitrdr
sleep 3
pgbackrest_on dr check >>"$WORK/dr/pgbackrest.log" 2>&1 || dob_die "pgbackrest check failed on dr"
verify_exit=0
pgbackrest_on dr verify >>"$WORK/dr/pgbackrest.log" 2>&1 || verify_exit=$?
restore_exit=0
job_on dr dob-restore --to-time "$target" --scratch-dir "$WORK/dr/pitr" \
	--scratch-port 5434 --json >"$WORK/pitr-dr.json" 2>>"$WORK/pitr-dr.log" || restore_exit=$?
restored="$(now)"
dob_log "pitr_after_takeover: dob-restore --to-time exited $restore_exit: $(tail -n 1 "$WORK/pitr-dr.log")"
psql_on dr -c "COPY (SELECT username, date_of_birth FROM users) TO STDOUT" >"$WORK/pitr-dr-users.tsv"
kept="$(python3 -c 'import json, sys; print((json.load(open(sys.argv[1])).get("pitr") or {}).get("previous_database") or "")' "$WORK/pitr-dr.json" 2>/dev/null || true)"
: >"$WORK/pitr-dr-kept.tsv"
if [[ -n "$kept" ]]; then
	psql_db dr "$kept" -c "COPY (SELECT username, date_of_birth FROM users) TO STDOUT" >"$WORK/pitr-dr-kept.tsv"
fi
printf '{"scenario":"pitr_after_takeover","fault":%s,"target":"%s","restore_exit":%s,"verify_exit":%s,"restored":%s,"takeover":%s,"result":%s,"users":"%s","kept":"%s","end":%s}\n' \
	"$fault" "$target" "$restore_exit" "$verify_exit" "$restored" "$takeover_json" \
	"$(json_file "$WORK/pitr-dr.json")" "$WORK/pitr-dr-users.tsv" "$WORK/pitr-dr-kept.tsv" "$(now)" >>"$events"

python3 scripts/drill/report.py --events "$events" --load "$WORK/load" \
	--users "$WORK/final-users.tsv" --dr-users "$WORK/dr-users.tsv" --ttl "$TTL" \
	--split-dr-users "$WORK/split-dr-users.tsv" \
	--pitr-users "$WORK/pitr-users.tsv" --pitr-kept "$WORK/pitr-kept.tsv" \
	--west-nlb "${IP[client]}:8080" --dr-nlb "${IP[client]}:8081" \
	--dns-events "$WORK/dns/events.jsonl" --roles "$WORK/roles.jsonl" \
	--out "$REPORT_DIR/report.json" --html "$REPORT_DIR/report.html"
dob_log "done in $((SECONDS - started)) s; report in $REPORT_DIR/report.json and report.html"
