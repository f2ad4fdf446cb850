#!/usr/bin/env bash
# provision.sh: turns a Debian 12 machine into a dob host image. Packer runs it on the
# build instance (packer/dob.pkr.hcl); it is a plain script that works anywhere (CI runs
# it in a debootstrap chroot: scripts/ci/check-ami.sh).
#
#   provision.sh --source DIR [--keep-apt-cache]
#   provision.sh --list-binaries CARGO_TOML     the binaries an image must contain
#   provision.sh --list-helpers                 the helper scripts an image must contain
#   provision.sh --stage-binaries CARGO_TOML RELEASE_DIR DEST
#                 copy exactly those binaries from RELEASE_DIR (target/release) to DEST
#                 (dist/bin, which the Packer template uploads); on the build machine
#
# DIR is laid out as the Packer template uploads it:
#   DIR/Cargo.toml          the package manifest: every [[bin]] target is required
#   DIR/bin/<name>          the release binaries (target/release/<name>)
#   DIR/lib/<helper>.sh     host helper scripts (see --list-helpers)
#   DIR/systemd/*           the units, exactly as installed, and drop-in directories
#                           (<unit>.d/*.conf) for the packaged units (patroni, etcd)
#   DIR/dob.env.example     the commented example of /etc/dob/dob.env
#   DIR/patroni/            packer/patroni: install.sh and its hash-pinned requirements
#
# What it installs:
#   PostgreSQL 15 (Debian packages), cluster 15/main (port 5432) with the dob settings in
#     /etc/postgresql/15/main/conf.d/dob.conf; cluster 15/drill (port 5433, local socket
#     only, start.conf manual) for restore drills
#   Patroni in /opt/patroni (the release packer/patroni/requirements.txt pins, every file
#     hash-checked; patroni and patronictl linked from /usr/local/bin) and etcd (Debian
#     package, pinned: ETCD_VERSION), both disabled: role-setup.sh configures them for
#     the Patroni roles and user data enables them; etcd's package-made default member is
#     removed; the softdog watchdog module loaded at boot, /dev/watchdog owned by postgres
#     (Patroni opens it) and a device unit patroni.service is ordered after
#   prometheus-node-exporter, reading textfiles from /var/lib/node_exporter/textfile_collector
#   awscli (role-setup.sh fetches the replication password from SSM Parameter Store;
#     publish-metrics.sh publishes the alarms' figures to CloudWatch)
#   the system user and group dob (no login, no home)
#   /usr/local/bin/<binaries> (0755), /usr/local/lib/dob/<helpers> (0755),
#   /etc/systemd/system/<units> (0644), /etc/dob/ (0750 root:dob) with dob.env.example
#
# It enables no dob unit and starts nothing: units that read /etc/dob/dob.env are enabled
# by user data after it writes that file (an enabled dob-api.socket would start dob-api
# without configuration on the first boot). Service starts during package installation
# obey policy-rc.d (CI forbids them). Idempotent: running it twice changes nothing more.
set -euo pipefail

HELPERS=(role-setup.sh pg-is-primary.sh make-replica.sh primary-allow-replica.sh patroni-config.sh publish-metrics.sh)
# What the drill proves (scripts/drill/drill.sh runs this same etcd on Debian 12, and the
# same Patroni through packer/patroni/install.sh).
ETCD_VERSION=3.4.23-4+b4
PG_MAJOR=15
TEXTFILE_DIR=/var/lib/node_exporter/textfile_collector

log() { printf 'provision: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# list_binaries CARGO_TOML: the name of every [[bin]] target, one a line.
list_binaries() {
	awk '
		/^\[\[bin\]\]/ { in_bin = 1; next }
		/^\[/ { in_bin = 0 }
		in_bin && /^[[:space:]]*name[[:space:]]*=/ {
			sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print
		}' "$1"
}

source_dir="" keep_apt_cache=0
while (($#)); do
	case "$1" in
	--source)
		[[ $# -ge 2 ]] || die "--source needs a directory"
		source_dir="$2"
		shift 2
		;;
	--keep-apt-cache)
		keep_apt_cache=1
		shift
		;;
	--list-binaries)
		[[ $# -ge 2 && -f "$2" ]] || die "--list-binaries needs the path of Cargo.toml"
		list_binaries "$2"
		exit 0
		;;
	--list-helpers)
		printf '%s\n' "${HELPERS[@]}"
		exit 0
		;;
	--stage-binaries)
		[[ $# -ge 4 && -f "$2" ]] || die "--stage-binaries needs CARGO_TOML RELEASE_DIR DEST"
		mapfile -t binaries < <(list_binaries "$2")
		((${#binaries[@]})) || die "no [[bin]] target in $2"
		rm -rf "$4"
		mkdir -p "$4"
		for bin in "${binaries[@]}"; do
			[[ -x "$3/$bin" ]] || die "$3/$bin is missing: cargo build --release --locked first"
			cp "$3/$bin" "$4/$bin"
		done
		log "staged ${binaries[*]} in $4"
		exit 0
		;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*) die "unknown argument: $1 (try --help)" ;;
	esac
done
[[ -n "$source_dir" ]] || die "--source DIR is required (try --help)"
[[ "$(id -u)" -eq 0 ]] || die "must run as root"

# --- check the whole source before changing anything -------------------------------------

[[ -f "$source_dir/Cargo.toml" ]] || die "$source_dir/Cargo.toml is missing"
mapfile -t binaries < <(list_binaries "$source_dir/Cargo.toml")
((${#binaries[@]})) || die "no [[bin]] target in $source_dir/Cargo.toml"
for bin in "${binaries[@]}"; do
	[[ -f "$source_dir/bin/$bin" ]] || die "binary $source_dir/bin/$bin is missing (a [[bin]] of Cargo.toml)"
done
for helper in "${HELPERS[@]}"; do
	[[ -f "$source_dir/lib/$helper" ]] || die "helper $source_dir/lib/$helper is missing"
done
units=("$source_dir"/systemd/*.service "$source_dir"/systemd/*.socket "$source_dir"/systemd/*.timer)
for unit in "${units[@]}"; do
	[[ -f "$unit" ]] || die "no units in $source_dir/systemd"
done
dropins=("$source_dir"/systemd/*.d/*.conf)
[[ -f "${dropins[0]}" ]] || die "no drop-ins (<unit>.d/*.conf) in $source_dir/systemd"
[[ -f "$source_dir/dob.env.example" ]] || die "$source_dir/dob.env.example is missing"
for file in install.sh requirements.txt build-requirements.txt; do
	[[ -f "$source_dir/patroni/$file" ]] || die "$source_dir/patroni/$file is missing"
done

export DEBIAN_FRONTEND=noninteractive
# Clusters get a UTF-8 locale whatever the caller's environment (C.UTF-8 is always there).
export LANG=C.UTF-8 LC_ALL=C.UTF-8

# --- packages --------------------------------------------------------------------------------

apt() {
	apt-get -q -y -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef \
		-o Dpkg::Options::=--force-confold "$@" </dev/null
}
log "apt-get update"
apt update >/dev/null
# awscli: role-setup.sh reads the replication password from SSM Parameter Store, and
# publish-metrics.sh (dob-metrics.timer) publishes the alarms' figures. pgbackrest: the
# WAL archive and the physical backups in S3 (point-in-time recovery).
log "installing PostgreSQL $PG_MAJOR, prometheus-node-exporter, awscli and pgBackRest"
apt install --no-install-recommends "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR" \
	ssl-cert prometheus-node-exporter awscli curl ca-certificates pgbackrest \
	python3-venv python3-psycopg2 \
	"etcd-server=$ETCD_VERSION" "etcd-client=$ETCD_VERSION" >/dev/null
# An unattended upgrade must not change the consensus layer under a running cluster.
apt-mark hold etcd-server etcd-client >/dev/null
# Patroni from PyPI, pinned by hash: Debian 12's 3.0.2 lets a leader whose loop stalled
# past the TTL overwrite the new leader's key in etcd (fixed upstream in 3.0.3).
bash "$source_dir/patroni/install.sh" /opt/patroni /usr/local/bin

# --- the dob user ---------------------------------------------------------------------------

# A static system user rather than DynamicUser=: PostgreSQL authenticates the local socket
# by OS user name (peer), so the role `dob` needs a stable user called dob; dob-backup and
# dob-restore write metrics files that node_exporter reads across runs; and /etc/dob is
# group-readable by dob.
if ! getent passwd dob >/dev/null; then
	log "creating the system user dob"
	useradd --system --user-group --home-dir /nonexistent --no-create-home \
		--shell /usr/sbin/nologin --comment "dob services" dob
fi

# --- files -----------------------------------------------------------------------------------

for bin in "${binaries[@]}"; do
	install -m 0755 -o root -g root "$source_dir/bin/$bin" "/usr/local/bin/$bin"
done
log "installed /usr/local/bin/{$(
	IFS=,
	echo "${binaries[*]}"
)}"
install -d -m 0755 -o root -g root /usr/local/lib/dob
for helper in "${HELPERS[@]}"; do
	install -m 0755 -o root -g root "$source_dir/lib/$helper" "/usr/local/lib/dob/$helper"
done
for unit in "${units[@]}"; do
	install -m 0644 -o root -g root "$unit" "/etc/systemd/system/$(basename "$unit")"
done
log "installed ${#units[@]} units in /etc/systemd/system"
for dropin in "${dropins[@]}"; do
	dir="/etc/systemd/system/$(basename "$(dirname "$dropin")")"
	install -d -m 0755 -o root -g root "$dir"
	install -m 0644 -o root -g root "$dropin" "$dir/$(basename "$dropin")"
done
log "installed ${#dropins[@]} drop-ins for the packaged units"
# Patroni's watchdog: a leader whose Patroni hangs is reset before another member can
# take over, so two members never both run as primary.
printf '%s\n' "# Installed by dob's provision.sh: Patroni's watchdog." softdog \
	>/etc/modules-load.d/dob-softdog.conf
install -d -m 0755 /etc/udev/rules.d
printf '%s\n' "# Installed by dob's provision.sh: Patroni (as postgres) opens the watchdog." \
	'KERNEL=="watchdog", OWNER="postgres", GROUP="postgres", MODE="0600", TAG+="systemd"' \
	>/etc/udev/rules.d/60-dob-watchdog.rules
# PostgreSQL's WAL receiver connects without a timeout of its own (PGCONNECT_TIMEOUT is not
# honoured by it): a lost leader's address would hold a replica, and the DR standby
# cluster, for the kernel's SYN retries (over two minutes) before it tries the next host.
# One retry gives up after 3 s: after an in-region failover the DR standby cluster tries
# the lost leader's address first on every attempt, and the new leader must be reached
# well within DOB_DR_DETACH_AFTER_MS (12 s), after which eu-west-1's dob-api detaches
# from the DR region. Inside a VPC a SYN is lost about never twice in a row.
install -d -m 0755 /etc/sysctl.d
printf '%s\n' "# Installed by dob's provision.sh: connects to a lost host give up after 3 s." \
	"net.ipv4.tcp_syn_retries = 1" >/etc/sysctl.d/60-dob.conf
install -d -m 0750 -o root -g dob /etc/dob
install -m 0640 -o root -g dob "$source_dir/dob.env.example" /etc/dob/dob.env.example
# First-boot marker and state of role-setup.sh (root only).
install -d -m 0755 -o root -g root /var/lib/dob
# pgBackRest's configuration, written at every boot by role-setup.sh (which runs with a
# read-only /etc but for the directories it owns); the package makes its lock, log and
# spool directories.
install -d -m 0755 -o root -g root /etc/pgbackrest
# dob-backup and dob-restore write their textfiles here (temp file + rename), and
# node_exporter reads them.
install -d -m 0755 -o root -g root /var/lib/node_exporter
install -d -m 2775 -o root -g dob "$TEXTFILE_DIR"
printf '%s\n' "# Written by dob's provision.sh: dob-backup and dob-restore textfiles." \
	"ARGS=\"--collector.textfile.directory=$TEXTFILE_DIR\"" \
	>/etc/default/prometheus-node-exporter

# --- PostgreSQL clusters ----------------------------------------------------------------------

# The package creates 15/main on install (postgresql-common's create_main_cluster); a
# machine configured not to gets it here.
if [[ ! -f "/etc/postgresql/$PG_MAJOR/main/postgresql.conf" ]]; then
	log "creating cluster $PG_MAJOR/main"
	pg_createcluster "$PG_MAJOR" main --port 5432 >/dev/null
fi
# Settings of every dob host's main cluster. The replication peers and the other hosts'
# dob-api connect over TCP (the security group and pg_hba.conf decide who may). TLS: the
# image's snakeoil pair here only so the server starts; role-setup.sh replaces it at every
# boot with the host's certificate from the internal CA (conf.d/dob-tls.conf, read after
# this file) and refuses to go on without one.
cat >"/etc/postgresql/$PG_MAJOR/main/conf.d/dob.conf" <<'EOF'
# Installed by dob's provision.sh.
listen_addresses = '*'
port = 5432
ssl = on
password_encryption = scram-sha-256
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
# A replica that was away keeps its slot; this caps the WAL a dead slot can hold.
max_slot_wal_keep_size = 20GB
wal_compression = on
EOF
chown postgres:postgres "/etc/postgresql/$PG_MAJOR/main/conf.d/dob.conf"

if [[ ! -f "/etc/postgresql/$PG_MAJOR/drill/postgresql.conf" ]]; then
	log "creating cluster $PG_MAJOR/drill (port 5433, started on demand by dob-restore-drill)"
	pg_createcluster "$PG_MAJOR" drill --port 5433 --start-conf manual >/dev/null
fi
cat >"/etc/postgresql/$PG_MAJOR/drill/conf.d/dob-drill.conf" <<'EOF'
# Installed by dob's provision.sh: scratch cluster for restore drills, local socket only.
listen_addresses = ''
port = 5433
EOF
chown postgres:postgres "/etc/postgresql/$PG_MAJOR/drill/conf.d/dob-drill.conf"

# --- units -----------------------------------------------------------------------------------

# Only what needs no dob.env: PostgreSQL (the package enables it) and node_exporter.
systemctl enable postgresql.service prometheus-node-exporter.service >/dev/null 2>&1 ||
	log "warning: systemctl enable failed (no systemd in this root?)"
# etcd's package enables and (on a build machine) starts a default single-member
# cluster; a host joins its real cluster only once role-setup.sh has configured it.
systemctl disable etcd.service >/dev/null 2>&1 || true
if systemctl is-active --quiet etcd.service 2>/dev/null; then
	systemctl stop etcd.service
fi
rm -rf /var/lib/etcd/default

if ((!keep_apt_cache)); then
	apt-get clean
fi
log "done: $(printf '%s ' "${binaries[@]}")+ PostgreSQL $PG_MAJOR + ${#units[@]} units"
