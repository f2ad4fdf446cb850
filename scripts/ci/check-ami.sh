#!/usr/bin/env bash
# check-ami: runs the AMI provisioning script (packer/provision.sh) for real inside a
# Debian 12 root filesystem made with debootstrap, then smoke-tests the result.
#
#   scripts/ci/check-ami.sh
#
# 1. A Debian 12 (bookworm) root filesystem: debootstrap from the mirror this machine's
#    apt uses, cached as a tarball under $DOB_CI_CACHE (default /var/cache/dob-ci),
#    keyed by release, mirror and package list. A fresh machine rebuilds it (about a minute).
# 2. Release binaries (cargo build --release --locked), staged exactly as the Packer
#    template uploads them (packer/dob.pkr.hcl: bin/, lib/, systemd/, patroni/,
#    provision.sh).
# 3. chroot with a policy-rc.d that forbids starting services, proc/sys/dev mounted
#    (always unmounted by a trap): provision.sh --source, as Packer runs it.
# 4. Checks the installed layout, runs `systemd-analyze verify --root` on the installed
#    units. Test TLS made here with openssl (a CA, a certificate for 127.0.0.1 and
#    localhost signed by it, and an unrelated "other" CA) and an app password are put
#    where an operator would write them (/etc/dob/tls, /etc/dob/ci-app-password): no SSM
#    in CI. The role setup refuses to run without the app password or without TLS, then
#    runs as a primary with PostgreSQL started (as postgres, cluster 15/main, on a free
#    loopback port); /usr/local/bin/dob-api runs as the dob user with /etc/dob/dob.env
#    (sslmode=verify-full, the CA, the password file), and a real PUT and GET are sent
#    from outside the chroot (it shares the network namespace).
# 5. Boots the same root file system under its own systemd (systemd-nspawn, private
#    network), with the units enabled as user data enables them, and checks what only
#    systemd shows: dob-role-setup runs (first boot) inside its sandbox; the secure
#    defaults hold: over TCP role dob is refused without a password and in plaintext, and
#    is let in with TLS verified against the CA; dob-api is ready with its connections
#    TLS (pg_stat_ssl) under sslmode=verify-full, and a second dob-api given the other CA
#    refuses the server (/readyz 503, a certificate error in its log); dob-api runs as
#    dob inside its sandbox (the hardening in force) and answers; `systemctl restart dob-api` under a stream of requests has no request
#    refused, timed out, dropped or failed (socket activation plus dob-api's graceful
#    shutdown); dob-backup's ExecCondition lets the run through on a primary
#    and skips it cleanly (no failure) once the server is in recovery; the restore-drill
#    unit brings up the scratch cluster 15/drill on port 5433.
# 6. A replica for real, in the chroot again: a throwaway primary on this machine (same
#    PostgreSQL major, loopback, TLS with the test certificate, plaintext rejected,
#    replication by password); role-setup.sh as DOB_ROLE=replica refuses a data
#    directory that holds a database, then turns the image's fresh cluster into a
#    streaming replica with make-replica.sh over sslmode=verify-full (data copied, a new
#    row streamed, the walsender's connection TLS); on it pg-is-primary.sh exits 1
#    (dob-backup skips) and role-setup.sh's next boot is a no-op.
# 7. The Patroni roles' first boot in the chroot: a member's etcd and Patroni
#    configuration (this host's TLS files, failsafe mode on), accepted by patroni
#    --validate-config, and a failsafe value that is not true or false refused with
#    nothing written; the witness.
#
# Environment: DOB_CI_CACHE (cache directory), DOB_CI_MIRROR (a Debian mirror URL instead
# of the one apt uses), DOB_CI_KEEP_ROOT=1 (leave the root filesystem for inspection),
# CARGO_TARGET_DIR (where the release binaries are built).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
DOB_LOG_TAG=check-ami

dob_is_root || dob_die "needs root (debootstrap, chroot, mount)"
started=$SECONDS

# shellcheck source=scripts/ci/debian-root.sh
. scripts/ci/debian-root.sh
debian_root_tools

work="$(mktemp -d /var/tmp/dob-check-ami.XXXXXX)"
root="$work/root"
mkdir -p "$root"

api_pid=""
primary_dir=""
cleanup() {
	local status=$?
	set +e
	if [[ -n "$api_pid" ]]; then
		kill -TERM "$api_pid" 2>/dev/null
		wait "$api_pid" 2>/dev/null
	fi
	if [[ -x "$root/usr/bin/pg_ctlcluster" && -f "$root/var/lib/postgresql/15/main/postmaster.pid" ]]; then
		chroot "$root" pg_ctlcluster 15 main stop -m fast >/dev/null 2>&1
	fi
	unmount_all
	if [[ -n "$primary_dir" ]]; then
		DOB_PG_BIN=/usr/lib/postgresql/15/bin pg_stop "$primary_dir/data" >/dev/null 2>&1
		rm -rf "$primary_dir"
	fi
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
dob_log "root filesystem ready after $((SECONDS - started)) s"

# --- release binaries, staged as Packer uploads them ---------------------------------------

target_dir="${CARGO_TARGET_DIR:-target}"
dob_log "cargo build --release --locked"
cargo build --release --locked --quiet
stage="$root/tmp/dob-provision"
mkdir -p "$stage/lib" "$stage/systemd"
mapfile -t bins < <(packer/provision.sh --list-binaries Cargo.toml)
packer/provision.sh --stage-binaries Cargo.toml "$target_dir/release" "$stage/bin"
cp Cargo.toml packer/provision.sh packer/dob.env.example "$stage/"
cp -r systemd/* "$stage/systemd/"
cp -r packer/patroni "$stage/"
for helper in $(packer/provision.sh --list-helpers); do
	[[ -f "scripts/$helper" ]] || dob_die "scripts/$helper is missing: the image needs it"
	cp "scripts/$helper" "$stage/lib/"
done

# --- provision, as Packer does --------------------------------------------------------------

dob_log "provision.sh --source /tmp/dob-provision (inside the chroot)"
# Patroni comes from PyPI over HTTPS. This machine may reach it through a TLS-inspecting
# proxy whose CA only its own trust store holds, so pip in the chroot trusts that store
# (a Packer build in AWS reaches PyPI directly and needs nothing of the kind).
cp "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$stage/build-host-ca.pem"
chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root PIP_CERT=/tmp/dob-provision/build-host-ca.pem \
	/tmp/dob-provision/provision.sh --source /tmp/dob-provision --keep-apt-cache \
	>"$work/provision.log" 2>&1 || {
	tail -n 40 "$work/provision.log" >&2
	dob_die "provision.sh failed"
}
dob_log "provisioned after $((SECONDS - started)) s"

# --- the installed layout ---------------------------------------------------------------------

fail() { dob_die "installed layout: $*"; }
for bin in "${bins[@]}"; do
	[[ "$(stat -c %a "$root/usr/local/bin/$bin")" == 755 ]] || fail "/usr/local/bin/$bin is not mode 0755"
done
for unit in systemd/* systemd/*.d/*.conf; do
	[[ -f "$unit" ]] || continue
	installed="/etc/systemd/system/${unit#systemd/}"
	cmp -s "$unit" "$root$installed" || fail "$installed differs from $unit"
done
# The consensus layer: the pinned versions, held; nothing enabled or left running.
pinned() { sed -n "s/^$1=//p" packer/provision.sh; }
held="$(chroot "$root" apt-mark showhold)"
for package in etcd-server:ETCD_VERSION etcd-client:ETCD_VERSION; do
	name="${package%%:*}" want="$(pinned "${package#*:}")"
	# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
	got="$(chroot "$root" dpkg-query -W -f '${Version}' "$name" 2>/dev/null)" || fail "$name not installed"
	[[ "$got" == "$want" ]] || fail "$name is $got, not the pinned $want"
	grep -qx "$name" <<<"$held" || fail "$name is not held"
done
# Patroni: the release packer/patroni/requirements.txt pins, the one the drill runs.
want="$(sed -n 's/^patroni==\([0-9.]*\).*/\1/p' packer/patroni/requirements.txt)"
got="$(chroot "$root" /opt/patroni/bin/patroni --version 2>/dev/null | awk '{ print $2 }')" ||
	fail "/opt/patroni/bin/patroni does not run"
[[ "$got" == "$want" ]] || fail "Patroni in /opt/patroni is ${got:-missing}, not the pinned $want"
for tool in patroni patronictl; do
	[[ "$(readlink "$root/usr/local/bin/$tool")" == "/opt/patroni/bin/$tool" ]] ||
		fail "/usr/local/bin/$tool does not point into /opt/patroni"
done
chroot "$root" /opt/patroni/bin/python -c 'import psycopg2' || fail "Patroni cannot import psycopg2"
for unit in etcd.service patroni.service; do
	[[ ! -e "$root/etc/systemd/system/multi-user.target.wants/$unit" ]] ||
		fail "$unit is enabled in the image: user data enables it for its roles"
done
[[ ! -e "$root/var/lib/etcd/default" ]] || fail "etcd's package-made member is left in /var/lib/etcd/default"
grep -qx softdog "$root/etc/modules-load.d/dob-softdog.conf" || fail "softdog is not loaded at boot"
grep -q 'OWNER="postgres".*TAG+="systemd"' "$root/etc/udev/rules.d/60-dob-watchdog.rules" ||
	fail "/dev/watchdog is not given to postgres as a device unit"
for helper in $(packer/provision.sh --list-helpers); do
	[[ -x "$root/usr/local/lib/dob/$helper" ]] || fail "/usr/local/lib/dob/$helper missing"
done
[[ -f "$root/etc/dob/dob.env.example" ]] || fail "/etc/dob/dob.env.example missing"
[[ ! -e "$root/etc/dob/dob.env" ]] || fail "/etc/dob/dob.env must come from user data, not the image"
chroot "$root" id dob >/dev/null || fail "no dob user"
[[ -x "$root/usr/lib/postgresql/15/bin/postgres" ]] || fail "PostgreSQL 15 not installed"
[[ -f "$root/etc/postgresql/15/drill/postgresql.conf" ]] || fail "no 15/drill cluster"
grep -Eq '^port *= *5433' "$root/etc/postgresql/15/drill/postgresql.conf" || fail "15/drill is not on 5433"
# User data enables the dob units once it has written /etc/dob/dob.env; the image only
# enables PostgreSQL.
if enabled="$(find "$root/etc/systemd/system" -path '*.wants/dob-*' -print -quit)" && [[ -n "$enabled" ]]; then
	fail "${enabled#"$root"} is enabled in the image: user data enables dob units"
fi
[[ -e "$root/etc/systemd/system/multi-user.target.wants/postgresql.service" ]] || fail "postgresql.service not enabled"

dob_log "systemd-analyze verify --root on the installed units"
installed_units=()
for unit in systemd/*; do
	# A drop-in directory is verified through its unit, as the package installed it.
	installed_units+=("/etc/systemd/system/$(basename "${unit%.d}")")
done
verify_out="$(cd / && systemd-analyze verify --root="$root" --man=no "${installed_units[@]}" 2>&1)" ||
	{
		printf '%s\n' "$verify_out" >&2
		fail "systemd-analyze verify failed"
	}
[[ -z "$verify_out" ]] || {
	printf '%s\n' "$verify_out" >&2
	fail "systemd-analyze verify printed warnings"
}

# --- test TLS and the app password, where an operator would put them ------------------------

# Terraform's CA signs each host's certificate (its private address and DNS name) and user
# data names SSM parameters; here the same shapes are made with openssl and written as
# the operator-written files role-setup.sh also accepts. The "other" CA signed nothing
# of ours: a client that trusts only it must refuse the server.
tls="$work/tls"
mkdir -p "$tls"
# make_ca NAME CN: a self-signed CA certificate NAME.pem (ECDSA P-256, as Terraform's).
make_ca() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-keyout "$tls/$1.key" -out "$tls/$1.pem" -subj "/CN=$2" \
		-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' \
		2>/dev/null
}
make_ca ca 'dob check-ami test CA'
make_ca other-ca 'dob check-ami other CA'
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/server.key" \
	-out "$tls/server.csr" -subj '/CN=127.0.0.1' 2>/dev/null
printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=critical,CA:FALSE' \
	'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth,clientAuth' >"$tls/server.ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
	-days 2 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
openssl verify -CAfile "$tls/ca.pem" "$tls/server.pem" >/dev/null ||
	dob_die "the test server certificate does not verify against the test CA"
if openssl verify -CAfile "$tls/other-ca.pem" "$tls/server.pem" >/dev/null 2>&1; then
	dob_die "the test server certificate verifies against the other CA"
fi
# The app password: random, never printed; an operator's file that role-setup.sh copies
# to /etc/dob/app-password (0640 root:dob) for DOB_DATABASE_PASSWORD_FILE.
openssl rand -hex 24 >"$tls/app-password"
install -m 0600 "$tls/app-password" "$root/etc/dob/ci-app-password"
install -d -m 0755 "$root/usr/local/share/dob-ci"
install -m 0644 "$tls/other-ca.pem" "$root/usr/local/share/dob-ci/other-ca.pem"

# secure_env PORT: dob.env's database lines for a host whose PostgreSQL listens on
# 127.0.0.1:PORT: TLS verified against the CA (the certificate names 127.0.0.1) and the
# password from a file, as Terraform's user data writes them (no DOB_ALLOW_INSECURE_DB).
secure_env() {
	printf '%s\n' "DOB_DATABASE_URL=postgresql://dob@127.0.0.1:$1/dob?sslmode=verify-full" \
		DOB_DATABASE_CA_FILE=/etc/dob/tls/ca.pem DOB_APP_PASSWORD_FILE=/etc/dob/ci-app-password \
		DOB_DATABASE_PASSWORD_FILE=/etc/dob/app-password
}

# --- smoke test: PostgreSQL and dob-api from the installed paths --------------------------

pg_port_free="$(free_port 5432)"
api_port="$(free_port "$pg_port_free")"
# Only the port and address differ from a host: this machine may already use 5432.
cat >"$root/etc/postgresql/15/main/conf.d/zz-ci-smoke.conf" <<EOF
port = $pg_port_free
listen_addresses = '127.0.0.1'
EOF
dob_log "starting PostgreSQL 15/main on 127.0.0.1:$pg_port_free (as postgres, inside the chroot)"
chroot "$root" pg_ctlcluster 15 main start

# The first-boot role setup of a primary with no replicas yet: app role and database.
{
	echo '# Written by check-ami the way user data writes it on a host.'
	echo DOB_ROLE=primary
	# Role dob over TCP: TLS verified against the CA and a password (role-setup's pg_hba
	# block rejects plaintext and asks scram-sha-256).
	secure_env "$pg_port_free"
	echo "DOB_LISTEN=127.0.0.1:$api_port"
	echo DOB_DRAIN_SECONDS=0
	echo RUST_LOG=info
} >"$root/etc/dob/dob.env"
chmod 0640 "$root/etc/dob/dob.env"
chroot "$root" chgrp dob /etc/dob/dob.env

# No TLS, no start; no password for role dob, no start (both before anything is changed).
if out="$(chroot "$root" /usr/local/lib/dob/role-setup.sh 2>&1)"; then
	dob_die "role-setup.sh set a host up without TLS files"
fi
grep -q 'no TLS for PostgreSQL' <<<"$out" || dob_die "role-setup.sh without TLS failed, but said: $out"
install -d -m 0755 "$root/etc/dob/tls"
install -m 0644 "$tls/ca.pem" "$root/etc/dob/tls/ca.pem"
install -m 0644 "$tls/server.pem" "$root/etc/dob/tls/server.pem"
install -m 0600 "$tls/server.key" "$root/etc/dob/tls/server.key"
sed -i '/^DOB_APP_PASSWORD_FILE=/d' "$root/etc/dob/dob.env"
if out="$(chroot "$root" /usr/local/lib/dob/role-setup.sh 2>&1)"; then
	dob_die "role-setup.sh set a host up without a password for role dob"
fi
grep -q 'no password for role dob' <<<"$out" || dob_die "role-setup.sh without a password failed, but said: $out"
echo DOB_APP_PASSWORD_FILE=/etc/dob/ci-app-password >>"$root/etc/dob/dob.env"
[[ ! -e "$root/var/lib/dob/role-setup.done" ]] || dob_die "a refused role-setup.sh left its marker"
dob_log "role-setup.sh refuses to run without TLS files and without the app password"

dob_log "role-setup.sh as a primary"
chroot "$root" /usr/local/lib/dob/role-setup.sh >"$work/role-setup.log" 2>&1 || {
	cat "$work/role-setup.log" >&2
	dob_die "role-setup.sh failed"
}
[[ -f "$root/var/lib/dob/role-setup.done" ]] || dob_die "role-setup.sh left no marker"
grep -q '^# BEGIN dob ' "$root/etc/postgresql/15/main/pg_hba.conf" ||
	dob_die "role-setup.sh wrote no pg_hba.conf block"
second_run="$(chroot "$root" /usr/local/lib/dob/role-setup.sh 2>&1)" ||
	dob_die "role-setup.sh failed on its second run: $second_run"
grep -q 'first-boot work already done' <<<"$second_run" ||
	dob_die "role-setup.sh did not recognise its marker on the second run: $second_run"
[[ "$(grep -c '^# BEGIN dob ' "$root/etc/postgresql/15/main/pg_hba.conf")" == 1 ]] ||
	dob_die "role-setup.sh duplicated its pg_hba.conf block"
# The secrets and TLS files as the units and PostgreSQL need them.
for want in "/etc/dob/app-password 640 root dob" "/etc/dob/tls/server.key 640 root postgres" \
	"/etc/dob/tls/server.pem 644 root root" "/etc/dob/tls/ca.pem 644 root root"; do
	got="$(chroot "$root" stat -c '%n %a %U %G' "${want%% *}")"
	[[ "$got" == "$want" ]] || dob_die "role-setup.sh left $got, want $want"
done
cmp -s "$tls/app-password" "$root/etc/dob/app-password" ||
	dob_die "/etc/dob/app-password is not the operator's DOB_APP_PASSWORD_FILE"
grep -qx "ssl_cert_file = '/etc/dob/tls/server.pem'" "$root/etc/postgresql/15/main/conf.d/dob-tls.conf" ||
	dob_die "conf.d/dob-tls.conf does not name this host's certificate"
chroot "$root" runuser -u dob -- /usr/local/lib/dob/pg-is-primary.sh ||
	dob_die "pg-is-primary.sh (dob-backup's ExecCondition) says the primary is not one"

dob_log "starting /usr/local/bin/dob-api as dob with /etc/dob/dob.env on 127.0.0.1:$api_port"
# EnvironmentFile semantics: KEY=VALUE lines, comments and blank lines ignored.
mapfile -t env_lines < <(grep -Ev '^[[:space:]]*(#|$)' "$root/etc/dob/dob.env")
# setpriv executes dob-api in place (runuser would stay as its parent), so the signal
# below reaches dob-api itself, as systemd's KillSignal= does.
chroot "$root" setpriv --reuid=dob --regid=dob --init-groups -- /usr/bin/env -i \
	PATH=/usr/local/bin:/usr/bin:/bin "${env_lines[@]}" /usr/local/bin/dob-api 2>"$work/dob-api.log" &
api_pid=$!
wait_http_ok "http://127.0.0.1:$api_port/readyz" 30 "$api_pid" ||
	{
		cat "$work/dob-api.log" >&2
		dob_die "dob-api did not become ready"
	}

put_status="$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
	-H 'Content-Type: application/json' -d '{"dateOfBirth":"1990-07-14"}' \
	"http://127.0.0.1:$api_port/hello/Smoke")"
[[ "$put_status" == 204 ]] || dob_die "PUT /hello/Smoke answered $put_status, want 204"
get_body="$(curl -sf "http://127.0.0.1:$api_port/hello/Smoke")" || dob_die "GET /hello/Smoke failed"
[[ "$get_body" == *'"message":"Hello, Smoke! '* ]] || dob_die "GET /hello/Smoke answered: $get_body"
rows="$(chroot "$root" runuser -u postgres -- psql --cluster 15/main -d dob -Atc \
	"SELECT count(*) FROM users WHERE username = 'Smoke'" 2>/dev/null || echo "?")"
dob_log "PUT 204, GET: $get_body (rows in PostgreSQL: $rows)"
# role-setup.sh turned ssl on with the host's certificate; dob-api verifies it
# (sslmode=verify-full with the CA), so every connection of its must be TLS.
api_tls="$(chroot "$root" runuser -u postgres -- psql --cluster 15/main -d postgres -Atc \
	"SELECT count(*) || ' ' || coalesce(bool_and(s.ssl), false) FROM pg_stat_ssl s
	 JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'dob-api'" 2>&1)" ||
	dob_die "reading pg_stat_ssl failed: $api_tls"
[[ "$api_tls" =~ ^[1-9][0-9]*\ true$ ]] ||
	dob_die "dob-api's connections are not all encrypted (connections, all TLS: $api_tls)"
dob_log "dob-api's database connections use TLS ($api_tls)"

kill -TERM "$api_pid"
wait "$api_pid" || dob_die "dob-api did not exit 0 on SIGTERM"
api_pid=""
chroot "$root" pg_ctlcluster 15 main stop -m fast
dob_log "chroot smoke test passed after $((SECONDS - started)) s"

# --- the same root under its own systemd -----------------------------------------------------

# Back to the image's settings (port 5432: the network is private), the units user data
# enables, and a test unit that reports and powers the machine off.
rm -f "$root/etc/postgresql/15/main/conf.d/zz-ci-smoke.conf" "$root/usr/sbin/policy-rc.d"
unmount_all
{
	echo DOB_ROLE=primary
	secure_env 5432
	printf '%s\n' DOB_DRAIN_SECONDS=2 RUST_LOG=info
} >"$root/etc/dob/dob.env"
# A first boot again, so dob-role-setup's first-boot path runs inside its sandbox.
rm -f "$root/var/lib/dob/role-setup.done"
install -m 0755 scripts/ci/ami-boot-test.sh "$root/usr/local/sbin/dob-ci-boot-test"
printf '%s\n' '[Unit]' 'Description=check-ami boot test' \
	'After=dob-role-setup.service dob-api.socket postgresql@15-main.service' \
	'[Service]' 'Type=oneshot' 'ExecStart=/usr/local/sbin/dob-ci-boot-test' \
	'FailureAction=poweroff' \
	'[Install]' 'WantedBy=multi-user.target' >"$root/etc/systemd/system/dob-ci-boot-test.service"
# What Terraform's user data enables on a primary, plus the test unit.
systemctl --root="$root" --quiet enable dob-role-setup.service postgresql@15-main.service \
	dob-api.socket dob-backup.timer dob-ci-boot-test.service
dob_log "booting the image under systemd (systemd-nspawn, private network)"
timeout 180 systemd-nspawn --quiet --keep-unit --register=no --private-network \
	--directory="$root" --boot >"$work/nspawn.log" 2>&1 </dev/null || true
results="$root/root/ci-boot-test.out"
[[ -f "$results" ]] || {
	tail -n 40 "$work/nspawn.log" >&2
	dob_die "the booted image ran no test (its console is above)"
}
result() { sed -n "s/^$1=//p" "$results" | head -n 1; }
boot_fail() {
	cat "$results" >&2
	dob_die "booted image: $*"
}
[[ "$(result finished)" == yes ]] || boot_fail "the boot test did not finish"
[[ "$(result role_setup_result)" == success && "$(result role_setup_marker)" == yes ]] ||
	boot_fail "dob-role-setup.service did not set the host up in its sandbox ($(result role_setup_result))"
[[ "$(result role_setup_nonewprivs)" == 1 && "$(result role_setup_protect_system)" == strict ]] ||
	boot_fail "dob-role-setup.service's sandbox is not in force"
dob_log "booted image: dob-role-setup ran its first boot sandboxed" \
	"(systemd-analyze security: $(result role_setup_exposure))"

# The secure defaults, each a check that fails when they do not hold.
# (a) TCP as role dob without a password is refused: the server asks for one (scram).
[[ "$(result tcp_no_password_status)" != 0 && "$(result tcp_no_password_error)" == *'no password supplied'* ]] ||
	boot_fail "(a) psql as dob over TCP without a password was not refused for want of one"
dob_log "must-show (a) ok: psql as dob to 127.0.0.1 over TLS (sslmode=require), no password:" \
	"refused, exit $(result tcp_no_password_status): $(result tcp_no_password_error)"
# (b) plaintext TCP is refused even with the right password.
[[ "$(result tcp_plaintext_status)" != 0 && "$(result tcp_plaintext_error)" == *'rejects connection'*'no encryption'* ]] ||
	boot_fail "(b) a plaintext connection (sslmode=disable) with the password was not rejected by pg_hba"
dob_log "must-show (b) ok: psql as dob to 127.0.0.1 in plaintext (sslmode=disable) with the password:" \
	"refused, exit $(result tcp_plaintext_status): $(result tcp_plaintext_error)"
# The control: the same password over verified TLS is let in, so (a) and (b) were refused
# for what they lacked, not because nothing could connect.
[[ "$(result tcp_verified)" =~ ^true\ TLSv1\.[23]$ ]] ||
	boot_fail "psql as dob with the password over sslmode=verify-full did not connect over TLS: $(result tcp_verified)"
dob_log "control: psql as dob with the password, sslmode=verify-full against the CA: connected ($(result tcp_verified))"
# (c) dob-api with sslmode=verify-full: ready, and every connection of its TLS.
[[ "$(result api_db_sslmode)" == verify-full ]] || boot_fail "(c) dob-api's URL is not sslmode=verify-full"
[[ "$(result api_readyz)" == 200 ]] || boot_fail "(c) dob-api's /readyz answered $(result api_readyz)"
[[ "$(result api_db_tls)" =~ ^[1-9][0-9]*\ true\ TLSv1\.[23]$ ]] ||
	boot_fail "(c) dob-api's connections are not all TLS (connections, all TLS, version: $(result api_db_tls))"
dob_log "must-show (c) ok: dob-api with sslmode=verify-full: /readyz $(result api_readyz);" \
	"pg_stat_ssl of its backends (user dob, application dob-api): $(result api_db_tls)"
# (d) dob-api trusting another CA refuses the server.
[[ "$(result wrong_ca_readyz)" == 503 || "$(result wrong_ca_exit)" =~ ^exited\ [1-9] ]] ||
	boot_fail "(d) dob-api with the other CA: /readyz $(result wrong_ca_readyz), $(result wrong_ca_exit)"
[[ "$(result wrong_ca_put)" != 204 ]] || boot_fail "(d) dob-api with the other CA accepted a write"
[[ "$(result wrong_ca_error)" =~ [Cc]ertificate && "$(result wrong_ca_error)" =~ UnknownIssuer|[Uu]nknown\ issuer|verif ]] ||
	boot_fail "(d) dob-api with the other CA logged no certificate verification error: $(result wrong_ca_error)"
dob_log "must-show (d) ok: dob-api with DOB_DATABASE_CA_FILE of another CA: /readyz $(result wrong_ca_readyz)," \
	"PUT $(result wrong_ca_put), $(result wrong_ca_exit); its log: $(result wrong_ca_error)"
[[ "$(result put)" == 204 ]] || boot_fail "PUT answered $(result put)"
[[ "$(result get)" == *'Hello, Boot!'* ]] || boot_fail "GET answered $(result get)"
[[ "$(result api_user)" == dob && "$(result api_proc_user)" == dob ]] || boot_fail "dob-api does not run as dob"
[[ "$(result api_nonewprivs)" == 1 ]] || boot_fail "NoNewPrivileges is not in force"
[[ "$(result api_capbnd)" == 0000000000000000 ]] || boot_fail "the capability bounding set is not empty"
[[ "$(result api_seccomp)" == 2 ]] || boot_fail "no system call filter"
[[ "$(result api_restarted)" == yes && "$(result api_active)" == active ]] || boot_fail "the restart failed"
[[ "$(result restart_refused)" == 0 ]] ||
	boot_fail "$(result restart_refused) connections refused or timed out during a restart: $(result restart_failures)"
[[ "$(result restart_dropped)" == 0 && "$(result restart_http_errors)" == 0 ]] ||
	boot_fail "dob-api across a restart: $(result restart_dropped) connection(s) closed unanswered," \
		"$(result restart_http_errors) HTTP error(s): $(result restart_failures)"
[[ "$(result backup_on_primary_condition)" == yes ]] || boot_fail "dob-backup was skipped on a primary"
[[ "$(result backup_on_replica_condition)" == no && "$(result backup_on_replica_state)" == inactive ]] ||
	boot_fail "dob-backup was not skipped cleanly on a replica"
[[ "$(result drill_cluster)" == active && "$(result drill_socket)" == yes ]] ||
	boot_fail "dob-restore-drill.service did not bring up the cluster 15/drill on 5433"
dob_log "booted image: dob-api sandboxed as dob (systemd-analyze security: $(result api_exposure));" \
	"restart under load: $(result restart_ok)/300 ok, none refused;" \
	"dob-backup runs on the primary, is skipped on a replica; the drill starts 15/drill"

# --- a replica, for real: role-setup.sh copies a primary with make-replica.sh ---------------

# The primary: a throwaway cluster on this machine (same major version, loopback), which
# the chroot reaches over 127.0.0.1 (shared network namespace). It serves the test
# certificate (it names 127.0.0.1), rejects plaintext, and lets replication in only by
# the role's password (the replication lines of pg_init's loopback set-up are dropped).
mount_chroot
primary_dir="$(mktemp -d /var/tmp/dob-check-ami-primary.XXXXXX)"
chmod 0755 "$primary_dir"
primary_port="$(free_port 5432)"
replica_port="$(free_port 5432 "$primary_port")"
install -m 0644 "$tls/server.pem" "$primary_dir/server.pem"
install -m 0600 -o "$DOB_PG_OS_USER" "$tls/server.key" "$primary_dir/server.key"
DOB_PG_BIN=/usr/lib/postgresql/15/bin pg_init "$primary_dir/data" "$primary_port" \
	wal_level=replica max_wal_senders=5 max_replication_slots=5 ssl=on \
	"ssl_cert_file='$primary_dir/server.pem'" "ssl_key_file='$primary_dir/server.key'" >/dev/null
{
	printf '%s\n' 'hostnossl all all 127.0.0.1/32 reject' 'hostnossl replication all 127.0.0.1/32 reject'
	grep -Ev '^host[[:space:]]+replication' "$primary_dir/data/pg_hba.conf"
} >"$primary_dir/pg_hba.conf"
install -m 0600 -o "$DOB_PG_OS_USER" "$primary_dir/pg_hba.conf" "$primary_dir/data/pg_hba.conf"
DOB_PG_BIN=/usr/lib/postgresql/15/bin pg_start "$primary_dir/data" "$primary_dir/pg.log"
DOB_PG_BIN=/usr/lib/postgresql/15/bin pg_psql "$primary_port" <<'SQL'
CREATE ROLE dob LOGIN;
CREATE DATABASE dob OWNER dob;
\c dob
CREATE TABLE ci_marker (note text);
INSERT INTO ci_marker VALUES ('written on the primary');
SQL

# The replication role, as on a real primary (scripts/primary-allow-replica.sh): ssl is
# on, so only its hostssl line.
printf 'ci-replication-password\n' >"$primary_dir/replication-password"
scripts/primary-allow-replica.sh --replica-cidr 127.0.0.1/32 --user replicator \
	--password-file "$primary_dir/replication-password" --host 127.0.0.1 \
	--port "$primary_port" >/dev/null

printf '%s\n' "port = $replica_port" "listen_addresses = '127.0.0.1'" \
	>"$root/etc/postgresql/15/main/conf.d/zz-ci-smoke.conf"
install -m 0600 "$primary_dir/replication-password" "$root/etc/dob/replication-password"
{
	printf '%s\n' DOB_ROLE=replica DOB_PRIMARY_HOST=127.0.0.1 "DOB_PRIMARY_PORT=$primary_port" \
		DOB_REPLICATION_SSLMODE=verify-full DOB_REPLICATION_SLOT=ci_replica DOB_ROLE_SETUP_WAIT=20
	secure_env "$replica_port"
} >"$root/etc/dob/dob.env"
rm -f "$root/var/lib/dob/role-setup.done" "$root/var/lib/postgresql/15/main/standby.signal"

# 1. The data directory still holds the smoke test's database dob: never wiped.
chroot "$root" pg_ctlcluster 15 main start
if out="$(chroot "$root" /usr/local/lib/dob/role-setup.sh 2>&1)"; then
	dob_die "role-setup.sh as a replica replaced a data directory that holds a database"
fi
grep -q 'holds databases of its own' <<<"$out" || dob_die "role-setup.sh refused, but said: $out"

# 2. The image's freshly initialised cluster (as at first boot): replaced by a copy.
chroot "$root" pg_ctlcluster 15 main stop -m fast
find "$root/var/lib/postgresql/15/main" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
chroot "$root" runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb \
	-D /var/lib/postgresql/15/main --auth-local=peer --auth-host=scram-sha-256 \
	--encoding=UTF8 --locale=C.UTF-8 >/dev/null
chroot "$root" pg_ctlcluster 15 main start
dob_log "role-setup.sh as a replica of 127.0.0.1:$primary_port"
chroot "$root" /usr/local/lib/dob/role-setup.sh >"$work/role-setup-replica.log" 2>&1 || {
	cat "$work/role-setup-replica.log" >&2
	dob_die "role-setup.sh as a replica failed"
}
replica_psql() { chroot "$root" runuser -u postgres -- /usr/bin/psql --cluster 15/main -X -At "$@"; }
[[ "$(replica_psql -d postgres -c 'SELECT pg_is_in_recovery()')" == t ]] ||
	dob_die "after role-setup.sh the local server is not a replica"
[[ "$(replica_psql -d dob -c 'SELECT note FROM ci_marker')" == 'written on the primary' ]] ||
	dob_die "the replica does not have the primary's data"
DOB_PG_BIN=/usr/lib/postgresql/15/bin pg_psql "$primary_port" -c \
	"INSERT INTO ci_marker VALUES ('streamed')" -d dob
for _ in $(seq 1 50); do
	[[ "$(replica_psql -d dob -c "SELECT count(*) FROM ci_marker WHERE note = 'streamed'")" == 1 ]] && break
	sleep 0.2
done
[[ "$(replica_psql -d dob -c "SELECT count(*) FROM ci_marker WHERE note = 'streamed'")" == 1 ]] ||
	dob_die "a row written on the primary did not reach the replica"
# The walreceiver verifies the primary as the copy did: verify-full against the CA, and
# the primary sees the stream over TLS. (Only counted: primary_conninfo holds the password.)
[[ "$(grep -c "sslmode=verify-full sslrootcert=''/etc/dob/tls/ca.pem''" \
	"$root/var/lib/postgresql/15/main/postgresql.auto.conf")" == 1 ]] ||
	dob_die "the replica's primary_conninfo does not verify the primary (sslmode=verify-full, sslrootcert)"
stream_tls="$(DOB_PG_BIN=/usr/lib/postgresql/15/bin pg_psql "$primary_port" -Atc \
	"SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.application_name = 'ci_replica'")"
[[ "$stream_tls" == t ]] || dob_die "the replica's stream is not TLS on the primary (ssl: ${stream_tls:-no walsender})"
status=0
chroot "$root" runuser -u dob -- /usr/local/lib/dob/pg-is-primary.sh 2>/dev/null || status=$?
((status == 1)) || dob_die "pg-is-primary.sh on a replica exited $status, want 1 (skip)"
chroot "$root" /usr/local/lib/dob/role-setup.sh >/dev/null 2>&1 ||
	dob_die "role-setup.sh failed on the replica's next boot"
chroot "$root" pg_ctlcluster 15 main stop -m fast
DOB_PG_BIN=/usr/lib/postgresql/15/bin pg_stop "$primary_dir/data"
dob_log "replica: the fresh cluster became a streaming replica (data copied, then streamed," \
	"sslmode=verify-full, the stream TLS); a data directory with a database was refused;" \
	"the backup condition skips"

# --- 7. the Patroni roles' first boot, in the chroot -------------------------------------------

# A database host of a Patroni cluster: role-setup.sh retires the image's fresh cluster
# (Patroni initialises or copies the data directory itself), writes etcd's and Patroni's
# configuration, and Patroni's own validator accepts it (apart from the network: the
# addresses are not this machine's and no etcd runs here).
chroot "$root" runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl status \
	-D /var/lib/postgresql/15/main >/dev/null 2>&1 && chroot "$root" pg_ctlcluster 15 main stop -m fast
find "$root/var/lib/postgresql/15/main" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
chroot "$root" runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb \
	-D /var/lib/postgresql/15/main --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
install -d -m 0750 "$root/etc/dob/secrets"
for secret in superuser replication rewind app restapi; do
	printf 'ci-%s-password\n' "$secret" >"$root/etc/dob/secrets/$secret"
done
cluster="a=http://10.99.0.10:2380,b=http://10.99.1.10:2380,witness=http://10.99.2.10:2380"
# TLS: the operator-written files of the sections above (on a host, DOB_TLS_*_PARAMETER).
printf '%s\n' DOB_ROLE=patroni DOB_HOST_ADDRESS=10.99.0.10 DOB_ETCD_NAME=a \
	"DOB_ETCD_INITIAL_CLUSTER=$cluster" DOB_REPLICA_CIDRS=10.99.0.10/32,10.99.1.10/32 \
	"DOB_DATABASE_URL=postgresql://dob@10.99.0.10:5432,10.99.1.10:5432/dob?target_session_attrs=read-write&sslmode=verify-full" \
	DOB_DATABASE_CA_FILE=/etc/dob/tls/ca.pem DOB_DATABASE_PASSWORD_FILE=/etc/dob/app-password \
	DOB_REPLICATION_SSLMODE=verify-full DOB_S3_BUCKET=ci-dob-backups DOB_S3_REGION=eu-west-1 \
	DOB_S3_KMS_KEY_ID=alias/ci-backups >"$root/etc/dob/dob.env"
rm -f "$root/var/lib/dob/role-setup.done"
dob_log "role-setup.sh as a Patroni member"
chroot "$root" /usr/local/lib/dob/role-setup.sh >"$work/role-setup-patroni.log" 2>&1 || {
	cat "$work/role-setup-patroni.log" >&2
	dob_die "role-setup.sh as a Patroni member failed"
}
[[ "$(cat "$root/etc/postgresql/15/main/start.conf")" == disabled ]] ||
	dob_die "the image's cluster 15/main is still started by the Debian wrapper"
[[ -z "$(ls -A "$root/var/lib/postgresql/15/main")" ]] ||
	dob_die "the image's fresh cluster was not emptied for Patroni"
[[ "$(chroot "$root" stat -c '%a %U' -L /etc/patroni/config.yml)" == "600 postgres" ]] ||
	dob_die "/etc/patroni/config.yml is not 0600 postgres"
grep -qx "ETCD_INITIAL_CLUSTER=\"$cluster\"" "$root/etc/default/etcd" ||
	dob_die "/etc/default/etcd does not name the three members"
grep -q "hosts: \['10.99.0.10:2379','10.99.1.10:2379','10.99.2.10:2379'\]" "$root/etc/patroni/config.yml" ||
	dob_die "Patroni's configuration does not list the three etcd members"
# pgBackRest: the repository in the region's bucket, the instance profile's credentials,
# WAL archived by the members and fetched back by restore_command.
pgbr="$root/etc/pgbackrest/pgbackrest.conf"
[[ "$(chroot "$root" stat -c '%a %U:%G' /etc/pgbackrest/pgbackrest.conf)" == "640 root:postgres" ]] ||
	dob_die "/etc/pgbackrest/pgbackrest.conf is not 0640 root:postgres"
for setting in repo1-s3-bucket=ci-dob-backups repo1-s3-region=eu-west-1 repo1-s3-key-type=auto \
	repo1-s3-kms-key-id=alias/ci-backups archive-async=y pg1-path=/var/lib/postgresql/15/main; do
	grep -qx "$setting" "$pgbr" || dob_die "pgbackrest.conf lacks $setting"
done
! grep -q 'repo1-s3-key=' "$pgbr" || dob_die "pgbackrest.conf holds an S3 key"
chroot "$root" runuser -u postgres -- pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=dob \
	help archive-push >/dev/null || dob_die "pgBackRest does not accept the configuration role-setup wrote"
for setting in "archive_command: 'pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=dob archive-push %p'" \
	"restore_command: 'pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=dob archive-get %f \"%p\"'"; do
	grep -qF "$setting" "$root/etc/patroni/config.yml" || dob_die "Patroni's configuration lacks $setting"
done
for setting in "ssl_cert_file: '/etc/dob/tls/server.pem'" "ssl_key_file: '/etc/dob/tls/server.key'"; do
	grep -qF "$setting" "$root/etc/patroni/config.yml" || dob_die "Patroni's configuration lacks $setting"
done
# Patroni's own connections verify the servers once patroni-config.sh knows the CA.
if grep -q DOB_PG_CA_FILE scripts/patroni-config.sh; then
	for setting in "ssl_ca_file: '?/etc/dob/tls/ca.pem'?$" "sslmode: '?verify-full'?$" "sslrootcert: '?/etc/dob/tls/ca.pem'?$"; do
		grep -Eq "$setting" "$root/etc/patroni/config.yml" || dob_die "Patroni's configuration lacks $setting"
	done
fi
cmp -s "$root/etc/dob/secrets/app" "$root/etc/dob/app-password" ||
	dob_die "the Patroni member's app password was not copied to /etc/dob/app-password"
validation="$(chroot "$root" runuser -u postgres -- patroni --validate-config /etc/patroni/config.yml 2>&1)" || true
complaints="$(grep -Ev 'is not reachable|is already in use' <<<"$validation" || true)"
[[ -z "$complaints" ]] || {
	printf '%s\n' "$validation" >&2
	dob_die "patroni --validate-config rejects the configuration role-setup.sh wrote"
}
# Failsafe mode: on in a new cluster; a value that is neither true nor false is refused
# before anything is written.
grep -q '^    failsafe_mode: true$' "$root/etc/patroni/config.yml" ||
	dob_die "Patroni's configuration does not turn failsafe mode on"
rm -rf "$root/tmp/dob-failsafe-check"
mkdir -p "$root/tmp/dob-failsafe-check"
if chroot "$root" env DOB_PATRONI_FAILSAFE=maybe DOB_HOST_ADDRESS=10.99.0.10 \
	DOB_ETCD_HOSTS=10.99.0.10:2379 DOB_PEER_CIDRS=10.99.0.0/16 \
	/usr/local/lib/dob/patroni-config.sh --out /tmp/dob-failsafe-check >"$work/failsafe.log" 2>&1; then
	dob_die "patroni-config.sh accepted DOB_PATRONI_FAILSAFE=maybe"
fi
grep -q 'DOB_PATRONI_FAILSAFE=maybe is not true or false' "$work/failsafe.log" ||
	dob_die "patroni-config.sh refused DOB_PATRONI_FAILSAFE=maybe without saying why: $(cat "$work/failsafe.log")"
[[ -z "$(ls -A "$root/tmp/dob-failsafe-check")" ]] ||
	dob_die "patroni-config.sh wrote files for a refused DOB_PATRONI_FAILSAFE"
rm -rf "$root/tmp/dob-failsafe-check"

# The witness: etcd only.
printf '%s\n' DOB_ROLE=witness DOB_HOST_ADDRESS=10.99.2.10 DOB_ETCD_NAME=witness \
	"DOB_ETCD_INITIAL_CLUSTER=$cluster" >"$root/etc/dob/dob.env"
rm -f "$root/var/lib/dob/role-setup.done"
chroot "$root" /usr/local/lib/dob/role-setup.sh >"$work/role-setup-witness.log" 2>&1 || {
	cat "$work/role-setup-witness.log" >&2
	dob_die "role-setup.sh as the witness failed"
}
grep -qx 'ETCD_LISTEN_PEER_URLS="http://10.99.2.10:2380"' "$root/etc/default/etcd" ||
	dob_die "the witness's etcd does not listen on its own address"
# A member named in no cluster list is refused.
printf '%s\n' DOB_ROLE=witness DOB_HOST_ADDRESS=10.99.9.9 "DOB_ETCD_INITIAL_CLUSTER=$cluster" \
	>"$root/etc/dob/dob.env"
if chroot "$root" /usr/local/lib/dob/role-setup.sh >/dev/null 2>&1; then
	dob_die "role-setup.sh accepted a witness that is not in DOB_ETCD_INITIAL_CLUSTER"
fi
dob_log "Patroni roles: the member's etcd and Patroni configuration (this host's TLS files)" \
	"written and accepted by patroni --validate-config, the image's cluster retired;" \
	"the witness runs etcd only"

dob_log "ok: image provisioned and tested in $((SECONDS - started)) s"
