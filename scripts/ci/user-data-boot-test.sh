#!/usr/bin/env bash
# Runs the rendered first-boot user data of a dob host for real, against a real block
# device, without touching the machine: a private mount namespace with overlays on /etc
# and /var/lib, a tmpfs on /mnt, a loop device standing for the EBS data volume, and a
# `systemctl` that records what it is asked. Called by check-terraform.sh:
#
#   scripts/ci/user-data-boot-test.sh RENDERED_USER_DATA
#
# Three boots, each checked:
#   first     a blank volume: formatted (label dob-pgdata), the AMI's /var/lib/postgresql
#             copied onto it, mounted there through /etc/fstab, RequiresMountsFor= drop-ins
#             for PostgreSQL's unit (postgresql@15-main, or patroni on the Patroni roles)
#             and dob-role-setup, /etc/dob/dob.env exactly as in the
#             script, the role's units enabled with --now
#   rerun     the same instance again: nothing reformatted, fstab not duplicated
#   replaced  a new instance (fresh /etc and /var/lib) on the same volume: the data is kept,
#             the AMI's files are not copied over it
#
# Needs root (loop devices, mounts), util-linux and e2fsprogs. Exit 0 when every check
# holds, 1 otherwise.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
DOB_LOG_TAG=user-data-boot-test

[[ $# -eq 1 && -r "$1" ]] || dob_die "usage: $0 RENDERED_USER_DATA"
dob_is_root || dob_die "needs root (loop devices and mounts in a private namespace)"
for tool in unshare losetup mkfs.ext4 blkid findmnt mountpoint; do
	command -v "$tool" >/dev/null 2>&1 || dob_die "$tool is missing (util-linux, e2fsprogs)"
done

work="$(mktemp -d)"
loop=""
cleanup() {
	[[ -z "$loop" ]] || losetup -d "$loop" 2>/dev/null || true
	rm -rf -- "$work"
}
trap cleanup EXIT

truncate -s 64M "$work/volume.img"
loop="$(losetup --find --show "$work/volume.img")"
# The script tries the Nitro name first, then the Xen one: the loop device stands in for it.
grep -q '/dev/xvdf' "$1" || dob_die "$1 does not name /dev/xvdf (rendered from the template?)"
sed "s|/dev/xvdf|$loop|" "$1" >"$work/user-data.sh"
sed -n "/<<'DOB_ENV'$/,/^DOB_ENV$/p" "$1" | sed '1d;$d' >"$work/expected.env"
units="$(sed -n 's/^systemctl enable --now //p' "$1")"
[[ -n "$units" ]] || dob_die "$1 enables no units"

mkdir -p "$work/bin"
cat >"$work/bin/systemctl" <<'STUB'
#!/bin/sh
printf '%s\n' "$*" >>"$DOB_TEST_WORK/systemctl.log"
STUB
chmod +x "$work/bin/systemctl"

# inside.sh BOOT: runs in the namespace; /etc and /var/lib are overlays whose upper layers
# (the instance's own disk) live in $DOB_TEST_WORK/instance.
cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
boot="$1" w="$DOB_TEST_WORK" i="$DOB_TEST_WORK/instance"
fail() { printf 'FAIL (%s): %s\n' "$boot" "$*"; exit 1; }
for d in etc var-lib; do mkdir -p "$i/$d-upper" "$i/$d-work"; done
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$i/etc-upper,workdir=$i/etc-work" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$i/var-lib-upper,workdir=$i/var-lib-work" /var/lib
mount -t tmpfs tmpfs /mnt
if [[ ! -e "$i/ami-laid" ]]; then
	# What the AMI ships under /var/lib/postgresql: a freshly initialised cluster.
	rm -rf /var/lib/postgresql
	mkdir -p /var/lib/postgresql/15/main
	echo 15 >/var/lib/postgresql/15/main/PG_VERSION
	chown -R postgres:postgres /var/lib/postgresql
	touch "$i/ami-laid"
fi
: >"$w/systemctl.log"

bash "$w/user-data.sh" >"$w/user-data.log" 2>&1 || { cat "$w/user-data.log"; fail "user data exited non-zero"; }

mountpoint -q /var/lib/postgresql || fail "/var/lib/postgresql is not a mount point"
[[ "$(findmnt -n -o SOURCE /var/lib/postgresql)" == "$DOB_TEST_LOOP" ]] || fail "/var/lib/postgresql is not the data volume"
[[ "$(blkid -p -o value -s LABEL "$DOB_TEST_LOOP")" == dob-pgdata ]] || fail "the volume is not labelled dob-pgdata"
[[ "$(grep -c 'LABEL=dob-pgdata /var/lib/postgresql ext4' /etc/fstab)" == 1 ]] || fail "/etc/fstab must hold exactly one dob-pgdata line"
[[ "$(stat -c %U /var/lib/postgresql)" == postgres ]] || fail "/var/lib/postgresql is not owned by postgres"
# PostgreSQL's unit: Patroni on the Patroni roles, the Debian cluster unit on the others.
pg_unit=postgresql@15-main.service
[[ " $DOB_TEST_UNITS " != *" patroni.service "* ]] || pg_unit=patroni.service
for unit in "$pg_unit" dob-role-setup.service; do
	grep -qx 'RequiresMountsFor=/var/lib/postgresql' "/etc/systemd/system/$unit.d/dob-data-volume.conf" ||
		fail "$unit has no RequiresMountsFor= drop-in"
done
cmp -s /etc/dob/dob.env "$w/expected.env" || { diff /etc/dob/dob.env "$w/expected.env" || true; fail "/etc/dob/dob.env differs from the script's"; }
[[ ! -e /etc/dob/dob.env.new ]] || fail "a temporary env file was left behind"
grep -qx "enable --now $DOB_TEST_UNITS" "$w/systemctl.log" || { cat "$w/systemctl.log"; fail "the units were not enabled with --now"; }

case "$boot" in
first)
	[[ -f /var/lib/postgresql/15/main/PG_VERSION ]] || fail "the AMI's cluster was not carried onto the volume"
	echo "written at first boot" >/var/lib/postgresql/dob-test-marker
	;;
rerun | replaced)
	[[ "$(cat /var/lib/postgresql/dob-test-marker 2>/dev/null)" == "written at first boot" ]] ||
		fail "the data written at first boot is gone (volume reformatted?)"
	;;
esac
if [[ "$boot" == replaced ]]; then
	grep -q 'formatting' "$w/user-data.log" && fail "an existing file system was formatted"
fi
echo "ok ($boot): $(findmnt -n -o SOURCE,TARGET,FSTYPE /var/lib/postgresql); $(wc -l </etc/dob/dob.env) env lines; units: $DOB_TEST_UNITS"
INSIDE

boot() {
	unshare --mount --propagation private \
		env PATH="$work/bin:$PATH" DOB_TEST_WORK="$work" DOB_TEST_LOOP="$loop" DOB_TEST_UNITS="$units" \
		bash "$work/inside.sh" "$1"
}

boot first
boot rerun
rm -rf -- "$work/instance"
boot replaced
