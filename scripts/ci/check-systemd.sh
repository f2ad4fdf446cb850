#!/usr/bin/env bash
# check-systemd: `systemd-analyze verify` on every unit in systemd/, which must exit 0
# and print nothing (it only warns about unknown keys, so any output fails the check).
#
#   scripts/ci/check-systemd.sh
#
# verify also checks that every command a unit runs exists. The units run what the image
# installs, which is not installed on the CI machine, so they are verified inside a
# temporary root laid out like a host: this machine's own units (systemd, PostgreSQL),
# ours in /etc/systemd/system, and an empty executable at each path the image installs
# (/usr/local/bin/<[[bin]] of Cargo.toml>, /usr/local/lib/dob/<helper>, Patroni in
# /opt/patroni). A unit that runs
# anything else must find it on this machine (copied in) or the check fails.
# Drop-in directories (<unit>.d/*.conf) extend the units Debian's packages ship (etcd):
# they are verified through those units, so the packages are installed here
# (scripts/install-deps.sh drill) if missing.
# scripts/ci/check-ami.sh verifies the same units again against the real installed image.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
DOB_LOG_TAG=check-systemd

command -v systemd-analyze >/dev/null || dob_die "systemd-analyze not found (apt-get install systemd)"
for dropin_dir in systemd/*.d; do
	[[ -e "/lib/systemd/system/$(basename "${dropin_dir%.d}")" ]] || scripts/install-deps.sh drill
done

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin" "$root/usr/local/lib/dob" \
	"$root/opt/patroni/bin"
for dir in /usr/lib/systemd/system /lib/systemd/system; do
	if [[ -d "$dir" ]]; then
		cp -a "$dir" "$root/usr/lib/systemd/"
		break
	fi
done

# A unit of ours replaces any packaged unit of the same name (the image installs no such
# package: Debian's patroni, say, which this machine may have from an older drill).
for unit in systemd/*.service systemd/*.socket systemd/*.timer; do
	rm -f "$root/usr/lib/systemd/system/$(basename "$unit")"
done

# What the image installs (packer/provision.sh is the one source of both lists).
installs=()
while read -r bin; do
	installs+=("/usr/local/bin/$bin")
done < <(packer/provision.sh --list-binaries Cargo.toml)
while read -r helper; do
	installs+=("/usr/local/lib/dob/$helper")
done < <(packer/provision.sh --list-helpers)
# Patroni's virtualenv (packer/patroni/install.sh).
installs+=(/opt/patroni/bin/patroni)
for path in "${installs[@]}"; do
	install -m 0755 /dev/null "$root$path"
done

units=()
status=0
for unit in systemd/*; do
	case "$unit" in
	*.service | *.socket | *.timer) ;;
	*.service.d)
		# A drop-in for a packaged unit: verified through the unit (this machine's copy).
		base="$(basename "${unit%.d}")"
		[[ -f "$root/usr/lib/systemd/system/$base" ]] ||
			dob_die "$unit: no packaged $base on this machine to apply it to"
		for conf in "$unit"/*; do
			[[ "$conf" == *.conf ]] || dob_die "$conf: a drop-in directory holds .conf files only"
		done
		cp -r "$unit" "$root/etc/systemd/system/"
		units+=("/usr/lib/systemd/system/$base")
		unit="$root/usr/lib/systemd/system/$base"
		;;
	*) dob_die "$unit: not a .service, .socket, .timer or <unit>.service.d (systemd/ holds units only)" ;;
	esac
	if [[ "$unit" != "$root"/* ]]; then
		cp "$unit" "$root/etc/systemd/system/"
		units+=("/etc/systemd/system/$(basename "$unit")")
	fi
	# Commands the unit runs: the first word of Exec*= values (after systemd's prefixes),
	# and any /usr/local path in them (dob-restore-drill runs dob-restore through env).
	while read -r cmd; do
		case "$cmd" in
		/usr/local/*)
			[[ -e "$root$cmd" ]] || {
				dob_log "$unit runs $cmd, which the image does not install"
				status=1
			}
			;;
		*)
			[[ -e "$root$cmd" ]] && continue
			[[ -x "$cmd" ]] || {
				dob_log "$unit runs $cmd, which does not exist on this machine"
				status=1
				continue
			}
			mkdir -p "$root$(dirname "$cmd")"
			cp "$cmd" "$root$cmd"
			;;
		esac
	done < <({
		sed -nE 's/^Exec[A-Za-z]*=[-@:+!]*([^[:space:]]+).*/\1/p' "$unit"
		grep -E '^Exec' "$unit" | grep -oE '/usr/local/[^[:space:]]+' || true
	} | sort -u)
done
((status == 0)) || dob_die "units run commands that will not exist on a host"

out="$(cd / && systemd-analyze verify --man=no --root="$root" "${units[@]}" 2>&1)" || status=$?
if ((status != 0)) || [[ -n "$out" ]]; then
	printf '%s\n' "$out" >&2
	dob_die "systemd-analyze verify: exit status $status, $(wc -l <<<"$out") line(s) of output"
fi
dob_log "ok: ${#units[@]} units verified (no warnings)"
