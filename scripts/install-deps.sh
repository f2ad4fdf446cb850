#!/usr/bin/env bash
# Install what the project needs on a Debian machine, and only what is missing.
#
#   scripts/install-deps.sh [COMPONENT...]
#
# Components:
#   base   PostgreSQL server (+ pgbench), psql, curl, openssl, pgBackRest, HAProxy,
#          python3 with venv (default)
#   venv   the project-local Python virtualenv .venv with moto[server]     (default)
#   bench  base + wrk
#   lint   shellcheck
#   drill  base + Patroni (the image's: packer/patroni/install.sh into /opt/patroni,
#          linked from /usr/local/bin; the upgrade's 3.3 into /opt/dob-drill/patroni-3.3
#          and Debian's 3.0.2), etcd, HAProxy, iproute2 (make drill)
#   all    base + venv + bench + lint
# No argument means `base venv`.
#
# Idempotent and quick when everything is there: it only looks for files and commands,
# and runs `apt-get update` (once) only when it has something to install. Runs as root,
# or uses sudo for apt when not root.
#
# Environment: DOB_PG_BIN (a PostgreSQL bin dir to use instead of the distro's),
# DOB_MOTO_SPEC (pip requirement for the S3 test server, default moto[server]==5.2.5),
# DOB_VENV (virtualenv location, default .venv in the repository).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DOB_LOG_TAG=install-deps

MOTO_SPEC="${DOB_MOTO_SPEC:-moto[server]==5.2.5}"
VENV="${DOB_VENV:-$DOB_ROOT/.venv}"

want_base=0 want_venv=0 want_bench=0 want_lint=0 want_drill=0
[[ $# -gt 0 ]] || set -- base venv
for arg in "$@"; do
	case "$arg" in
	base) want_base=1 ;;
	venv) want_base=1 want_venv=1 ;;
	bench) want_base=1 want_bench=1 ;;
	lint) want_lint=1 ;;
	drill) want_base=1 want_drill=1 ;;
	all) want_base=1 want_venv=1 want_bench=1 want_lint=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*) dob_die "unknown component: $arg (try --help)" ;;
	esac
done

# apt_quiet ARGS...: apt-get ARGS as root, non-interactive; its output is shown only
# when it fails.
apt_quiet() {
	local log status=0
	log="$(mktemp)"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0 \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" \
		</dev/null >"$log" 2>&1 || status=$?
	if ((status != 0)); then
		cat "$log" >&2
		rm -f "$log"
		dob_die "apt-get $* failed (status $status)"
	fi
	rm -f "$log"
}

apt_updated=0
apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		dob_die "apt-get not found: install $* by hand (this script knows Debian/Ubuntu)"
	fi
	if ((!apt_updated)); then
		dob_log "apt-get update"
		apt_quiet update
		apt_updated=1
	fi
	dob_log "apt-get install $*"
	apt_quiet install --no-install-recommends "$@"
}

have_pg_server() {
	local bin
	bin="$(pg_bin_dir 2>/dev/null)" || return 1
	[[ -x "$bin/postgres" && -x "$bin/initdb" && -x "$bin/pg_ctl" ]]
}

have_pg_program() {
	local bin
	bin="$(pg_bin_dir 2>/dev/null)" || return 1
	[[ -x "$bin/$1" ]]
}

python_can_venv() {
	command -v python3 >/dev/null 2>&1 &&
		python3 -c 'import ensurepip, venv' >/dev/null 2>&1
}

install_base() {
	local missing=()
	if ! have_pg_server; then
		# Stop the Debian packages from creating and starting a system cluster on
		# port 5432: the project runs its own clusters. (--force-confold in apt_quiet
		# keeps this file when postgresql-common installs its own copy.)
		if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
			dob_log "writing /etc/postgresql-common/createcluster.conf (create_main_cluster = false)"
			as_root mkdir -p /etc/postgresql-common
			printf '%s\n' '# Written by dob scripts/install-deps.sh: no system cluster on install.' \
				'create_main_cluster = false' |
				as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
		fi
		missing+=(postgresql)
	fi
	# Debian ships pgbench in the server package; older layouts had it in contrib.
	if ! have_pg_program pgbench && [[ " ${missing[*]} " != *" postgresql "* ]]; then
		missing+=(postgresql-contrib)
	fi
	if ! have_pg_program psql; then
		missing+=(postgresql-client)
	fi
	command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
	# The TLS tests make their certificates with it.
	command -v openssl >/dev/null 2>&1 || missing+=(openssl)
	command -v setsid >/dev/null 2>&1 || missing+=(util-linux)
	# Point-in-time recovery: WAL archiving and physical backups; the PITR tests put the
	# S3 server behind HAProxy, because pgBackRest speaks S3 over TLS only.
	command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
	command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
	if ! python_can_venv; then
		missing+=(python3 python3-venv)
	fi
	if ((${#missing[@]})); then
		apt_install "${missing[@]}"
	fi
	# pgbench may still be missing if `postgresql` brought a layout without it.
	if ! have_pg_program pgbench; then
		apt_install postgresql-contrib
	fi
	have_pg_server || dob_die "PostgreSQL server still not found after installing"
}

install_venv() {
	if [[ -x "$VENV/bin/moto_server" ]]; then
		return 0
	fi
	if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
		dob_log "creating virtualenv $VENV"
		rm -rf "$VENV"
		python3 -m venv "$VENV"
	fi
	dob_log "pip install $MOTO_SPEC into $VENV"
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$MOTO_SPEC" </dev/null
	[[ -x "$VENV/bin/moto_server" ]] || dob_die "$VENV/bin/moto_server missing after pip install"
}

install_bench() {
	command -v wrk >/dev/null 2>&1 || apt_install wrk
}

install_drill() {
	local missing=()
	# Patroni's virtualenv: Debian's Python with venv, and its psycopg2.
	/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
	/usr/bin/python3 -c 'import psycopg2' 2>/dev/null || missing+=(python3-psycopg2)
	command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
	command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
	command -v ip >/dev/null 2>&1 || missing+=(iproute2)
	# The drill's patroni_upgrade starts on Debian's Patroni (what the images before the
	# pinned release ran), steps through 3.3 to the pinned one.
	[[ -x /usr/bin/patroni ]] || missing+=(patroni)
	if ((${#missing[@]})); then
		apt_install "${missing[@]}"
	fi
	# Quick when they already run the pinned versions.
	"$DOB_ROOT/packer/patroni/install.sh" /opt/patroni /usr/local/bin
	"$DOB_ROOT/packer/patroni/install.sh" --requirements "$DOB_ROOT/packer/patroni/requirements-3.3.txt" \
		/opt/dob-drill/patroni-3.3
}

install_lint() {
	command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
}

((want_base)) && install_base
((want_venv)) && install_venv
((want_bench)) && install_bench
((want_lint)) && install_lint
((want_drill)) && install_drill
exit 0
