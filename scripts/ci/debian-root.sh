# shellcheck shell=bash
# shellcheck disable=SC2154 # `root` is set by the script that sources this file
# debian-root.sh: a throwaway Debian 12 (bookworm) root file system for the CI checks
# that need a machine nothing was installed on: check-ami.sh (the AMI provisioning) and
# check-quickstart.sh (the README's quick start). Sourced after scripts/lib.sh, as root.
#
# The root is debootstrap'd (minbase plus what the Debian 12 cloud AMI has and the checks
# rely on) from the mirror this machine's apt uses and cached as a tarball under
# $DOB_CI_CACHE (default /var/cache/dob-ci), keyed by release, mirror and package list;
# downloaded packages and apt lists are cached beside it and shared by the checks.
#
# The caller sets `root` (the directory to fill); mounts are recorded in `mounted` and
# undone by `unmount_all`, which the caller's EXIT trap must run.
#
# Environment: DOB_CI_CACHE (cache directory), DOB_CI_MIRROR (a Debian mirror URL instead
# of the one apt uses).

DEBIAN_ROOT_RELEASE=bookworm
# What the Debian 12 cloud AMI has and provision.sh relies on (systemctl, curl, certificates).
DEBIAN_ROOT_PACKAGES=systemd,ca-certificates,curl,procps
CACHE="${DOB_CI_CACHE:-/var/cache/dob-ci}"

mounted=()

# debian_root_tools: install what building and entering the root needs, if missing.
debian_root_tools() {
	local need_pkgs=()
	command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
	command -v zstd >/dev/null || need_pkgs+=(zstd)
	command -v curl >/dev/null || need_pkgs+=(curl)
	command -v systemd-nspawn >/dev/null || need_pkgs+=(systemd-container)
	if ((${#need_pkgs[@]})); then
		dob_log "installing ${need_pkgs[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
			"${need_pkgs[@]}" </dev/null >/dev/null
	fi
}

# mirror_for SUITE: the repository URI apt on this machine uses for Debian SUITE.
mirror_for() {
	# shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
	apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(ORIGIN)' 2>/dev/null |
		awk -v suite="$1" '$2 == suite && $3 == "Debian" { print $1; exit }'
}

# debian_root_unpack LOGDIR: fill $root from the cached tarball (debootstrap on a cold
# cache, log in LOGDIR), point its apt at this machine's mirror and resolver, forbid
# service starts (policy-rc.d, as Packer's chroot builders do) and mount proc, sys, dev
# and the shared apt caches.
debian_root_unpack() {
	local logdir="$1" mirror security_mirror key tarball
	mirror="${DOB_CI_MIRROR:-$(mirror_for "$DEBIAN_ROOT_RELEASE")}"
	mirror="${mirror:-http://deb.debian.org/debian/}"
	security_mirror="$(mirror_for "$DEBIAN_ROOT_RELEASE-security")"
	security_mirror="${security_mirror:-http://deb.debian.org/debian-security/}"

	key="$(printf '%s\n' "$DEBIAN_ROOT_RELEASE" "$mirror" "$DEBIAN_ROOT_PACKAGES" "minbase" |
		sha256sum | cut -c1-16)"
	tarball="$CACHE/rootfs-$DEBIAN_ROOT_RELEASE-$key.tar.zst"
	mkdir -p "$CACHE/apt-archives/partial" "$CACHE/apt-lists/partial" "$root"
	if [[ -f "$tarball" ]]; then
		dob_log "root filesystem from cache: $tarball"
		tar -C "$root" -I zstd -xpf "$tarball"
	else
		dob_log "debootstrap $DEBIAN_ROOT_RELEASE from $mirror (cold cache: about a minute)"
		debootstrap --variant=minbase --include="$DEBIAN_ROOT_PACKAGES" \
			--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
			"$DEBIAN_ROOT_RELEASE" "$root" "$mirror" >"$logdir/debootstrap.log" 2>&1 ||
			{
				tail -n 30 "$logdir/debootstrap.log" >&2
				dob_die "debootstrap failed"
			}
		rm -rf "$root/var/cache/apt/archives/"*.deb
		tar -C "$root" -I 'zstd -T0 -3' -cpf "$tarball.tmp" .
		mv "$tarball.tmp" "$tarball"
		# Older root filesystems (another package list or mirror) are dead weight.
		find "$CACHE" -maxdepth 1 -name 'rootfs-*.tar.zst' ! -path "$tarball" -delete
		dob_log "cached $tarball ($(du -h "$tarball" | cut -f1))"
	fi

	cat >"$root/etc/apt/sources.list" <<-EOF
		deb $mirror $DEBIAN_ROOT_RELEASE main
		deb $mirror $DEBIAN_ROOT_RELEASE-updates main
		deb $security_mirror $DEBIAN_ROOT_RELEASE-security main
	EOF
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 0755 "$root/usr/sbin/policy-rc.d"
	mount_chroot
	# Downloaded packages and apt lists survive between runs.
	bind_mount "$CACHE/apt-archives" /var/cache/apt/archives
	bind_mount "$CACHE/apt-lists" /var/lib/apt/lists
}

# bind_mount SOURCE TARGET-IN-ROOT
bind_mount() {
	mkdir -p "$root$2"
	mount --rbind "$1" "$root$2"
	mounted+=("$root$2")
}

# mount_chroot: proc, sys and dev in $root.
mount_chroot() {
	mount -t proc proc "$root/proc" && mounted+=("$root/proc")
	mount -t sysfs sysfs "$root/sys" && mounted+=("$root/sys")
	bind_mount /dev /dev
}

# unmount_all: undo every mount, last first.
unmount_all() {
	local i
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount -R "${mounted[i]}" 2>/dev/null || umount -R -l "${mounted[i]}"
	done
	mounted=()
}
