#!/usr/bin/env bash
# ami-boot-test.sh: runs INSIDE the image booted by scripts/ci/check-ami.sh (systemd-nspawn),
# as a oneshot unit after dob-role-setup and dob-api.socket. It prints KEY=VALUE results to
# /root/ci-boot-test.out for check-ami to judge, then the journal of the dob units, and
# powers the machine off. It judges nothing itself: every value is asserted by check-ami.
#
# Reads /etc/dob/dob.env (as check-ami wrote it: sslmode=verify-full, the CA, the password
# file), /etc/dob/app-password (the app role's password: sent to psql in PGPASSWORD, never
# printed) and /usr/local/share/dob-ci/other-ca.pem (a CA that signed nothing of ours).
# Results, besides the hardening and restart ones:
#   role_setup_*        dob-role-setup.service's result, marker and sandbox
#   tcp_no_password_*   psql as dob over TCP with TLS and no password: exit status, error
#   tcp_plaintext_*     psql as dob in plaintext with the password: exit status, error
#   tcp_verified        the control: with the password over verify-full: ssl and version
#   api_db_sslmode, api_readyz, api_db_tls
#                       dob-api's sslmode, /readyz, and its backends in pg_stat_ssl
#                       (count, all TLS, version)
#   wrong_ca_*          a second dob-api (127.0.0.1:8081) trusting only the other CA:
#                       /readyz, a PUT, its exit, the first certificate error of its log
# Not part of the image.
set -uo pipefail

exec >/root/ci-boot-test.out 2>&1
api=http://127.0.0.1:8080

for _ in $(seq 1 120); do
	curl -fsS -o /dev/null "$api/readyz" && break
	sleep 0.5
done
echo "put=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
	-d '{"dateOfBirth":"1990-07-14"}' "$api/hello/Boot")"
echo "get=$(curl -s "$api/hello/Boot")"

# --- dob-role-setup, sandboxed -------------------------------------------------------------

echo "role_setup_result=$(systemctl show -P Result dob-role-setup.service)"
echo "role_setup_marker=$(test -f /var/lib/dob/role-setup.done && echo yes || echo no)"
echo "role_setup_protect_system=$(systemctl show -P ProtectSystem dob-role-setup.service)"
# Its process is gone (oneshot): NoNewPrivileges as systemd applied it.
echo "role_setup_nonewprivs=$([[ "$(systemctl show -P NoNewPrivileges dob-role-setup.service)" == yes ]] && echo 1 || echo 0)"
echo "role_setup_exposure=$(systemd-analyze security dob-role-setup.service 2>/dev/null |
	awk '/Overall exposure level/ {print $(NF-2), $(NF-1)}')"

# --- the secure defaults -------------------------------------------------------------------

# psql_dob CONNINFO [PASSWORD]: psql as role dob (its session's ssl and TLS version),
# or the error's first line; its exit status. No password file, no service file: only
# what is given here reaches the server, and the password only in the environment.
psql_dob() (
	unset PGPASSWORD
	[[ -z "${2:-}" ]] || export PGPASSWORD="$2"
	# Files that do not exist: libpq skips them silently (/dev/null draws a warning).
	export PGPASSFILE=/nonexistent/pgpass PGSERVICEFILE=/nonexistent/pg_service.conf
	psql -X -w -At "$1 connect_timeout=10" \
		-c "SELECT ssl || ' ' || version FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>&1 |
		grep -v '^$' | head -n 1
	return "${PIPESTATUS[0]}"
)
password="$(head -n 1 /etc/dob/app-password)"
base="host=127.0.0.1 port=5432 dbname=dob user=dob"
# (a) TLS, but no password.
status=0
out="$(psql_dob "$base sslmode=require")" || status=$?
echo "tcp_no_password_status=$status"
echo "tcp_no_password_error=$out"
# (b) the right password, in plaintext.
status=0
out="$(psql_dob "$base sslmode=disable" "$password")" || status=$?
echo "tcp_plaintext_status=$status"
echo "tcp_plaintext_error=$out"
# The control: the right password over TLS verified against the CA.
out="$(psql_dob "$base sslmode=verify-full sslrootcert=/etc/dob/tls/ca.pem" "$password")"
echo "tcp_verified=$out"
unset password

# (c) dob-api as its unit runs it: sslmode=verify-full, ready, its backends on TLS.
pid="$(systemctl show -P MainPID dob-api.service)"
echo "api_db_sslmode=$(tr '\0' '\n' <"/proc/$pid/environ" |
	sed -n 's/^DOB_DATABASE_URL=.*[?&]sslmode=\([a-z-]*\).*/\1/p')"
echo "api_readyz=$(curl -s -o /dev/null -w '%{http_code}' "$api/readyz")"
echo "api_db_tls=$(runuser -u postgres -- psql -X -At -d postgres -c \
	"SELECT count(*) || ' ' || coalesce(bool_and(s.ssl), false) || ' ' || coalesce(min(s.version), '-')
	 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
	 WHERE a.usename = 'dob' AND a.application_name = 'dob-api'" 2>&1)"

# (d) a second dob-api, its environment the unit's but for the CA (another CA's) and the
# address; env's later assignments win. setpriv executes it in place, so $! is dob-api.
mapfile -t env_lines < <(grep -Ev '^[[:space:]]*(#|$)' /etc/dob/dob.env)
wrong_log=/root/ci-wrong-ca.log
setpriv --reuid=dob --regid=dob --init-groups -- /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin \
	"${env_lines[@]}" DOB_DATABASE_CA_FILE=/usr/local/share/dob-ci/other-ca.pem \
	DOB_LISTEN=127.0.0.1:8081 DOB_ADMIN_LISTEN= DOB_DRAIN_SECONDS=0 \
	/usr/local/bin/dob-api >"$wrong_log" 2>&1 &
wrong_pid=$!
# Until its log names the refusal (it retries the database) or it exits: 30 s at most.
for _ in $(seq 1 60); do
	grep -qi 'certificate' "$wrong_log" && break
	kill -0 "$wrong_pid" 2>/dev/null || break
	sleep 0.5
done
echo "wrong_ca_readyz=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://127.0.0.1:8081/readyz)"
echo "wrong_ca_put=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT \
	-H 'Content-Type: application/json' -d '{"dateOfBirth":"1990-07-14"}' http://127.0.0.1:8081/hello/Mallory)"
if kill -0 "$wrong_pid" 2>/dev/null; then
	echo "wrong_ca_exit=running"
	kill -TERM "$wrong_pid"
	wait "$wrong_pid"
else
	wait "$wrong_pid"
	echo "wrong_ca_exit=exited $?"
fi
echo "wrong_ca_error=$(grep -i -m 1 'certificate' "$wrong_log")"

pid="$(systemctl show -P MainPID dob-api.service)"
echo "api_user=$(systemctl show -P User dob-api.service)"
echo "api_proc_user=$(ps -o user= -p "$pid")"
echo "api_nonewprivs=$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$pid/status")"
echo "api_capbnd=$(awk '/^CapBnd:/ {print $2}' "/proc/$pid/status")"
echo "api_seccomp=$(awk '/^Seccomp:/ {print $2}' "/proc/$pid/status")"

# Requests before, during and after a restart. curl exit 22 is an HTTP error status; 7
# (refused) and 28 (timeout) would mean the socket was not there to queue the connection;
# 52 (empty reply) and 56 (reset) mean a process accepted it and closed it unanswered.
(
	ok=0 http_errors=0 refused=0 dropped=0 details=""
	for i in $(seq 1 300); do
		code=0
		status="$(curl -s -o /dev/null -w '%{http_code}' -f --max-time 10 "$api/hello/Boot")" || code=$?
		case "$code" in
		0) ok=$((ok + 1)) ;;
		22) http_errors=$((http_errors + 1)) details+=" #$i:HTTP-$status" ;;
		7 | 28) refused=$((refused + 1)) details+=" #$i:curl-exit-$code" ;;
		*) dropped=$((dropped + 1)) details+=" #$i:curl-exit-$code" ;;
		esac
	done
	echo "restart_ok=$ok"
	echo "restart_http_errors=$http_errors"
	echo "restart_refused=$refused"
	echo "restart_dropped=$dropped"
	echo "restart_failures=${details# }"
) &
sleep 0.3
systemctl restart dob-api.service
wait
new_pid="$(systemctl show -P MainPID dob-api.service)"
echo "api_restarted=$([[ "$new_pid" != "$pid" && "$new_pid" != 0 ]] && echo yes || echo no)"
echo "api_active=$(systemctl is-active dob-api.service)"

# dob-backup on the primary: the condition passes (the run itself may fail here: no S3).
systemctl start dob-backup.service
echo "backup_on_primary_condition=$(systemctl show -P ConditionResult dob-backup.service)"
# The same host as a replica: a standby without an upstream stays in recovery.
install -o postgres -g postgres -m 0600 /dev/null /var/lib/postgresql/15/main/standby.signal
systemctl restart postgresql@15-main.service
for _ in $(seq 1 120); do
	pg_isready -q --cluster 15/main && break
	sleep 0.5
done
systemctl reset-failed dob-backup.service
systemctl start dob-backup.service
echo "backup_on_replica_condition=$(systemctl show -P ConditionResult dob-backup.service)"
# Skipped by the condition: inactive, not failed.
echo "backup_on_replica_state=$(systemctl show -P ActiveState dob-backup.service)"

# The drill unit pulls in the scratch cluster 15/drill (the drill itself needs S3 here).
systemctl start dob-restore-drill.service
echo "drill_cluster=$(systemctl is-active postgresql@15-drill.service)"
echo "drill_socket=$(test -S /var/run/postgresql/.s.PGSQL.5433 && echo yes || echo no)"

echo "api_exposure=$(systemd-analyze security dob-api.service 2>/dev/null |
	awk '/Overall exposure level/ {print $(NF-2), $(NF-1)}')"
echo "--- the second dob-api (other CA)"
cat "$wrong_log"
echo "--- journal"
journalctl --no-pager -u dob-role-setup.service -u dob-api.service -u dob-backup.service \
	-u dob-restore-drill.service -u postgresql@15-drill.service |
	grep -v ' GET /hello/'
echo "finished=yes"
systemctl poweroff --no-block
