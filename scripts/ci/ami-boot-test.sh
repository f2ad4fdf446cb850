#!/usr/bin/env bash
# ami-boot-test.sh: runs INSIDE the image booted by scripts/ci/check-ami.sh (systemd-nspawn),
# as a oneshot unit after dob-role-setup and dob-api.socket. It prints KEY=VALUE results to
# /root/ci-boot-test.out for check-ami to judge, then the journal of the dob units, and
# powers the machine off.
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
echo "--- journal"
journalctl --no-pager -u dob-role-setup.service -u dob-api.service -u dob-backup.service \
	-u dob-restore-drill.service -u postgresql@15-drill.service |
	grep -v ' GET /hello/'
echo "finished=yes"
systemctl poweroff --no-block
