#!/usr/bin/env bash
# install.sh: Patroni, exactly as requirements.txt pins it (every file hash-checked), in
# a virtualenv of its own; the hosts' image (packer/provision.sh) and the drill
# (scripts/install-deps.sh drill) both install it with this script, so they run the
# same Patroni.
#
#   install.sh [--requirements FILE] VENV [LINK_DIR]
#
# VENV (the hosts: /opt/patroni) is built with Debian's Python 3 and its system
# packages visible, for python3-psycopg2 alone: everything else comes from the pinned
# files, installed over whatever the system has. With LINK_DIR (/usr/local/bin),
# `patroni` and `patronictl` there point into VENV (dob-promote runs patronictl from
# PATH). A VENV that already runs the pinned version is left alone; any other is
# replaced (stop Patroni first on a running host: docs/deploy.md, "Upgrading Patroni").
# --requirements installs another pinned set instead (requirements-3.3.txt: the middle
# step of that upgrade).
# Needs python3-venv and python3-psycopg2 (the callers install them) and PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'install-patroni: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

requirements="$here/requirements.txt"
if [[ "${1:-}" == --requirements ]]; then
	(($# >= 2)) || die "--requirements needs a file"
	requirements="$2"
	shift 2
fi
[[ -f "$requirements" ]] || die "no requirements file $requirements"
(($# >= 1 && $# <= 2)) || die "usage: install.sh [--requirements FILE] VENV [LINK_DIR]"
venv="$1"
link_dir="${2:-}"
[[ "$venv" == /* ]] || die "VENV must be an absolute path: $venv"
python=/usr/bin/python3
want="$(sed -n 's/^patroni==\([0-9.]*\).*/\1/p' "$requirements")"
[[ -n "$want" ]] || die "no patroni==VERSION line in $requirements"

# installed_version DIR: what DIR's Patroni says it is ("patroni 4.1.5"), or nothing.
installed_version() {
	"$1/bin/patroni" --version 2>/dev/null | awk '{ print $2 }'
}

if [[ "$(installed_version "$venv")" != "$want" ]]; then
	log "building Patroni $want in $venv"
	# A virtualenv's scripts name its own path, so it is built where it lives; one
	# left half-built by a failed run fails the version check and is built again.
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	# Every file is fetched hash-checked into wheels by a clean build environment (no
	# system packages: their setuptools plugins break old setup.py files), with the
	# pinned setuptools and wheel rather than pip's unchecked build isolation.
	"$python" -m venv "$work/build"
	pip=("$work/build/bin/python" -m pip --quiet --disable-pip-version-check --no-input)
	"${pip[@]}" install --require-hashes --no-deps -r "$here/build-requirements.txt" </dev/null
	"${pip[@]}" wheel --require-hashes --no-deps --no-build-isolation \
		--wheel-dir "$work/wheels" -r "$requirements" </dev/null
	rm -rf "$venv"
	"$python" -m venv --system-site-packages "$venv"
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
		--no-index --no-deps --ignore-installed "$work/wheels"/*.whl </dev/null
	"$venv/bin/python" -c 'import psycopg2, etcd, ydiff, yaml' ||
		die "Patroni's modules do not import in $venv (python3-psycopg2 missing?)"
	[[ "$(installed_version "$venv")" == "$want" ]] || die "$venv/bin/patroni is not version $want after pip install"
fi
if [[ -n "$link_dir" ]]; then
	for tool in patroni patronictl; do
		ln -sfn "$venv/bin/$tool" "$link_dir/$tool"
	done
fi
log "Patroni $(installed_version "$venv") in $venv${link_dir:+, linked from $link_dir}"
