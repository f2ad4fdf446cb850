#!/usr/bin/env bash
# check-quickstart: the README's quick start on a machine nothing was installed on.
#
#   scripts/ci/check-quickstart.sh
#
# CI's own machine already has PostgreSQL and the rest, so `make test` there cannot show
# a missing install step. This check runs `make run` where nothing is installed:
#
# 1. A fresh Debian 12 root file system (scripts/ci/debian-root.sh, shared with
#    check-ami.sh), plus what "a machine with Rust" has: make and a C linker
#    (build-essential; rustup needs one), git, and this machine's Rust toolchain
#    bind-mounted at the same paths. This machine's network settings come along (resolver,
#    extra CA certificates, pip configuration and PIP_*/proxy variables); nothing else:
#    no PostgreSQL, no Python venv module, no moto.
# 2. The working tree copied to /root/dob (tracked and untracked files, not ignored ones).
#    /root is mode 700, so the postgres user cannot reach the clone: the case a root user
#    on a fresh machine meets. The build directory is this machine's (bind-mounted), so
#    only the dob crate itself is compiled again; installing is what is under test.
# 3. `make run` in the chroot (its own process group; free loopback ports through the
#    documented DOB_* variables). Then, from outside: a PUT and GET through the API; the
#    `export` lines and dob-backup / dob-restore --list / --drill commands exactly as
#    `make run` printed them; `scripts/local-stack.sh failover` with a PUT answered 204
#    afterwards by the same dob-api; Ctrl-C (SIGINT to the group) stops every process of
#    the stack; `make clean-local` removes the state and the .local link.
# `make test` runs the same `scripts/install-deps.sh` first, so it is covered by step 3.
#
# Environment: DOB_CI_CACHE, DOB_CI_MIRROR (see debian-root.sh), DOB_CI_KEEP_ROOT=1 (leave
# the root file system for inspection), CARGO_HOME, RUSTUP_HOME, CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
DOB_LOG_TAG=check-quickstart

dob_is_root || dob_die "needs root (debootstrap, chroot, mount)"
started=$SECONDS

# shellcheck source=scripts/ci/debian-root.sh
. scripts/ci/debian-root.sh
debian_root_tools

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
[[ -x "$cargo_home/bin/cargo" && -d "$rustup_home" ]] ||
	dob_die "needs a rustup toolchain in $cargo_home and $rustup_home (set CARGO_HOME/RUSTUP_HOME)"
target_dir="$(abs_path "${CARGO_TARGET_DIR:-target}")"
mkdir -p "$target_dir"

work="$(mktemp -d /var/tmp/dob-check-quickstart.XXXXXX)"
root="$work/root"
stack_pid=""

# chroot_pids: every process whose root directory is the chroot.
chroot_pids() {
	local proc
	for proc in /proc/[0-9]*; do
		[[ "$(readlink "$proc/root" 2>/dev/null)" == "$root" ]] && printf '%s\n' "${proc#/proc/}"
	done
	return 0
}

cleanup() {
	local status=$? pid
	set +e
	if [[ -n "$stack_pid" ]]; then
		kill -INT -- "-$stack_pid" 2>/dev/null
		wait "$stack_pid" 2>/dev/null
	fi
	# Whatever a failed run left behind (the stack's clean-up is what step 3 checks).
	for pid in $(chroot_pids); do
		kill -KILL "$pid" 2>/dev/null
	done
	unmount_all
	if [[ "${DOB_CI_KEEP_ROOT:-0}" == 1 ]]; then
		dob_log "root filesystem kept in $root"
	else
		rm -rf --one-file-system "$work"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

debian_root_unpack "$work"

# --- "a fresh machine with Rust" -------------------------------------------------------------

dob_log "apt-get install build-essential git (what rustup and a clone need)"
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
	'apt-get -q update && apt-get -q -y install --no-install-recommends build-essential git' \
	</dev/null >"$work/apt.log" 2>&1 || {
	tail -n 30 "$work/apt.log" >&2
	dob_die "apt-get install build-essential git failed"
}
for tool in postgres psql pg_ctl moto_server; do
	if chroot "$root" sh -c "command -v $tool || ls /usr/lib/postgresql/*/bin/$tool" >/dev/null 2>&1; then
		dob_die "the fresh root already has $tool: it would not test the install"
	fi
done

# This machine's network settings: extra CA certificates (a TLS-inspecting proxy's, say)
# and pip's configuration.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
	cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
	chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
[[ ! -f /etc/pip.conf ]] || cp /etc/pip.conf "$root/etc/pip.conf"
passed_env=()
while IFS= read -r var; do
	passed_env+=("$var=${!var}")
done < <(compgen -e | grep -E '^(PIP_[A-Z_]+|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)$' || true)

bind_mount "$cargo_home" "$cargo_home"
bind_mount "$rustup_home" "$rustup_home"

dob_log "the working tree into /root/dob"
mkdir -p "$root/root/dob"
git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' file; do [[ -e "$file" ]] && printf '%s\0' "$file"; done |
	tar --null -T - -cf - | tar -C "$root/root/dob" -xf -
bind_mount "$target_dir" /root/dob/target

primary_port="$(free_port)"
replica_port="$(free_port "$primary_port")"
s3_port="$(free_port "$primary_port" "$replica_port")"
api_port="$(free_port "$primary_port" "$replica_port" "$s3_port")"
api="http://127.0.0.1:$api_port"

# The environment of a root login shell in the chroot, with the toolchain and the
# stack's ports.
root_env=(HOME=/root TERM=dumb LANG=C.UTF-8
	PATH="$cargo_home/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	CARGO_HOME="$cargo_home" RUSTUP_HOME="$rustup_home" "${passed_env[@]}"
	DOB_PRIMARY_PORT="$primary_port" DOB_REPLICA_PORT="$replica_port"
	DOB_LOCAL_S3_PORT="$s3_port" DOB_LISTEN="127.0.0.1:$api_port")

# in_root COMMAND: COMMAND (a shell string) in /root/dob in the chroot.
in_root() {
	chroot "$root" /usr/bin/env -i "${root_env[@]}" bash -c "cd /root/dob && $1"
}

# --- make run ----------------------------------------------------------------------------------

dob_log "make run (installs PostgreSQL and moto, builds, starts the stack)"
run_log="$work/make-run.log"
# Its own session and process group, as in a terminal: Ctrl-C below signals the group.
# (A background job of this script is no group leader, so setsid execs in place and $!
# is the group's id.)
setsid chroot "$root" /usr/bin/env -i "${root_env[@]}" bash -c 'cd /root/dob && exec make run' \
	</dev/null >"$run_log" 2>&1 &
stack_pid=$!
# Ready means dob-api answers and make run has printed its instructions (the last of
# them, the restore line, comes after dob-api is up).
deadline=$((SECONDS + 900))
until curl -fsS --max-time 2 "$api/readyz" >/dev/null 2>&1 &&
	grep -q 'release/dob-restore latest' "$run_log"; do
	if ! kill -0 "$stack_pid" 2>/dev/null; then
		tail -n 40 "$run_log" >&2
		dob_die "make run exited before dob-api was ready"
	fi
	if ((SECONDS >= deadline)); then
		tail -n 40 "$run_log" >&2
		dob_die "dob-api not ready 900 s after make run"
	fi
	sleep 1
done
dob_log "stack ready after $((SECONDS - started)) s"
chroot "$root" test -x /usr/lib/postgresql/15/bin/postgres ||
	dob_die "make run did not install the PostgreSQL server"
[[ -L "$root/root/dob/.local" ]] ||
	dob_die "the local state is not linked from .local although postgres cannot reach /root/dob"

fail() {
	tail -n 40 "$run_log" >&2
	dob_die "$*"
}
status_of() { # status_of CURL-ARGS...: the HTTP status code
	curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"
}
put_dob() { # put_dob USER DATE
	status_of -X PUT "$api/hello/$1" -H 'Content-Type: application/json' \
		-d "{\"dateOfBirth\": \"$2\"}"
}

[[ "$(put_dob alice 1990-04-01)" == 204 ]] || fail "PUT /hello/alice did not answer 204"
greeting="$(curl -fsS --max-time 5 "$api/hello/alice")" || fail "GET /hello/alice failed"
[[ "$greeting" == '{"message":"Hello, alice! '* ]] || fail "GET /hello/alice: $greeting"

# The backup commands exactly as make run printed them.
mapfile -t exports < <(sed -n 's/^ *\(export .*\)$/\1/p' "$run_log")
mapfile -t tool_lines < <(grep -E '^ +/root/dob/target/release/dob-(backup|restore)( |$)' "$run_log" |
	sed 's/ *#.*$//; s/^ *//')
((${#exports[@]} >= 2)) || fail "make run printed no export lines for the backup tools"
((${#tool_lines[@]} >= 4)) || fail "make run printed no dob-backup/dob-restore commands"
backup_script="$(printf '%s\n' 'set -e' "${exports[@]}" "${tool_lines[0]}" "${tool_lines[1]}" \
	"${tool_lines[2]}")"
dob_log "as printed: ${tool_lines[*]:0:3}"
in_root "$backup_script" >"$work/backup.log" 2>&1 || {
	cat "$work/backup.log" >&2
	fail "dob-backup / dob-restore --list / --drill, as make run printed them, failed"
}
grep -Eq '^[0-9]{8}T[^ ]+ .* complete$' "$work/backup.log" ||
	fail "dob-restore --list shows no complete backup"
grep -q "drill of backup .* passed" "$work/backup.log" || fail "the restore drill did not pass"

dob_log "scripts/local-stack.sh failover"
in_root 'scripts/local-stack.sh failover' >"$work/failover.log" 2>&1 || {
	cat "$work/failover.log" >&2
	fail "scripts/local-stack.sh failover failed"
}
deadline=$((SECONDS + 30))
until [[ "$(put_dob bob 1991-05-02)" == 204 ]]; do
	((SECONDS < deadline)) || fail "no PUT answered 204 within 30 s of the failover"
	sleep 0.2
done
greeting="$(curl -fsS --max-time 5 "$api/hello/alice")" || fail "GET /hello/alice failed after the failover"
[[ "$greeting" == '{"message":"Hello, alice! '* ]] || fail "GET /hello/alice after the failover: $greeting"

dob_log "Ctrl-C"
kill -INT -- "-$stack_pid"
deadline=$((SECONDS + 60))
while kill -0 "$stack_pid" 2>/dev/null; do
	((SECONDS < deadline)) || fail "make run still running 60 s after Ctrl-C"
	sleep 0.2
done
wait "$stack_pid" || true
stack_pid=""
left="$(chroot_pids)"
if [[ -n "$left" ]]; then
	# shellcheck disable=SC2086 # one pid per word
	ps -o pid,user,args -p $left >&2 || true
	fail "processes of the stack still run after Ctrl-C"
fi

in_root 'make clean-local' >"$work/clean.log" 2>&1 || {
	cat "$work/clean.log" >&2
	dob_die "make clean-local failed"
}
[[ ! -e "$root/root/dob/.local" ]] || dob_die "make clean-local left .local"
if compgen -G "$root/var/tmp/dob-local-*" >/dev/null; then
	dob_die "make clean-local left $(echo "$root"/var/tmp/dob-local-*)"
fi

dob_log "passed after $((SECONDS - started)) s: make run installed PostgreSQL and moto on a" \
	"fresh Debian 12, served PUT/GET, backed up, drilled, failed over and stopped cleanly"
