#!/usr/bin/env bash
# publish-metrics.sh: publishes the figures dob's CloudWatch alarms watch
# (terraform/alarms.tf) with `aws cloudwatch put-metric-data`, namespace "dob" (the only
# one the hosts' role may write). Installed as /usr/local/lib/dob/publish-metrics.sh; run
# every minute by dob-metrics.timer (dob-metrics.service: as postgres, with group dob to
# read the textfiles), and when dob-backup.service and dob-restore-drill.service end
# (--jobs-only, as dob), so a finished run is seen at once.
#
#   publish-metrics.sh [--jobs-only] [--dry-run]
#
#   --jobs-only  only the backup and drill figures, from the textfiles (no PostgreSQL,
#                no pgBackRest, no instance metadata)
#   --dry-run    print the metric data (JSON) instead of sending it
#
# What is published (metric [dimension]: figure, source):
#   BackupAgeSeconds [Backup=logical]    now - dob_backup_last_success_timestamp_seconds
#                                        (dob_backup.prom, written by dob-backup)
#   BackupAgeSeconds [Backup=physical]   now - the newest pgBackRest backup's stop time
#                                        (`pgbackrest info --output=json`; the primary
#                                        only, when $DOB_PGBACKREST_CONFIG exists)
#   DrillAgeSeconds [Drill=restore]      now - dob_restore_drill_last_success_timestamp_seconds
#   DrillFailed [Drill=restore]          1 - dob_restore_drill_success
#                                        (dob_restore_drill.prom: the DR host's drill)
#   DrillAgeSeconds [Drill=pitr]         now - dob_restore_pitr_drill_last_success_timestamp_seconds
#   DrillFailed [Drill=pitr]             1 - dob_restore_pitr_drill_success, the primary only
#                                        (dob_pitr_drill.prom: the leader's PITR drill)
#   WalArchiveAgeSeconds                 the primary: seconds the oldest completed WAL
#                                        segment has waited for archive_command (the
#                                        oldest .ready of pg_ls_archive_statusdir(); 0 when
#                                        none waits, so an idle database is fine); nothing
#                                        while archive_mode is off
#   WalLastArchivedAgeSeconds            the primary: now - pg_stat_archiver.last_archived_time
#                                        (the archive's RPO, for graphs; no alarm)
#   ReplicationLagSeconds [InstanceId]   0 on the primary; on a standby 0 while streaming
#                                        and caught up, else now - pg_last_xact_replay_timestamp()
#   ReplicationLagBytes [InstanceId]     0 on the primary; on a streaming standby the
#                                        upstream's WAL end (pg_stat_wal_receiver.
#                                        latest_end_lsn) - pg_last_wal_replay_lsn()
# Ages come from the textfiles' last-success times, so they are published every minute
# whether or not a job ran: a job that never runs still alarms. A figure that cannot be
# known (no textfile, no success yet, PostgreSQL down) is not published: the alarms treat
# that silence as breaching. Both Patroni members publish their own textfiles' ages; the
# alarms take the Minimum, the newest run of either.
#
# PostgreSQL is asked over the local socket (PGHOST, default /var/run/postgresql; peer
# authentication as the calling user, postgres). The instance ID comes from the instance
# metadata (IMDSv2) unless DOB_INSTANCE_ID is set. Environment (/etc/dob/dob.env):
# AWS_REGION (required), DOB_PGBACKREST_CONFIG (default /etc/pgbackrest/pgbackrest.conf),
# DOB_PGBACKREST_STANZA (dob), DOB_TEXTFILE_DIR (/var/lib/node_exporter/textfile_collector).
#
# Nothing secret is read or logged. Exit status: 0 when everything it could know was
# published, 1 when CloudWatch or PostgreSQL could not be reached (logged; what could be
# published was), 2 on bad usage. The units' post-steps run it with a `-` prefix: a
# backup never fails because CloudWatch is unreachable.
set -euo pipefail

NAMESPACE=dob
TEXTFILE_DIR="${DOB_TEXTFILE_DIR:-/var/lib/node_exporter/textfile_collector}"
PGBACKREST_CONFIG="${DOB_PGBACKREST_CONFIG:-/etc/pgbackrest/pgbackrest.conf}"
PGBACKREST_STANZA="${DOB_PGBACKREST_STANZA:-dob}"

log() { printf 'publish-metrics: %s\n' "$*" >&2; }

jobs_only=0 dry_run=0
while (($#)); do
	case "$1" in
	--jobs-only) jobs_only=1 ;;
	--dry-run) dry_run=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*)
		log "unknown argument: $1 (try --help)"
		exit 2
		;;
	esac
	shift
done

now="$(date +%s)"
status=0
data=()

# datum NAME UNIT VALUE [DIMENSION_NAME DIMENSION_VALUE]: one metric datum. Values are
# numbers and dimensions fixed words or instance IDs, checked here, so the JSON needs no
# escaping.
datum() {
	local name="$1" unit="$2" value="$3" dims=""
	if [[ ! "$value" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then
		log "not publishing $name: not a number: '$value'"
		return 0
	fi
	if (($# == 5)); then
		[[ "$4$5" =~ ^[A-Za-z0-9=_.-]+$ ]] || {
			log "not publishing $name: bad dimension $4=$5"
			return 0
		}
		dims=",\"Dimensions\":[{\"Name\":\"$4\",\"Value\":\"$5\"}]"
	fi
	data+=("{\"MetricName\":\"$name\",\"Unit\":\"$unit\",\"Value\":$value$dims}")
}

# gauge FILE NAME: the value of gauge NAME in textfile FILE, or nothing.
gauge() {
	[[ -r "$1" ]] || return 0
	awk -v name="$2" '$1 == name { print $2; exit }' "$1"
}

# age_of SECONDS_SINCE_EPOCH: whole seconds from then to now (never negative).
age_of() {
	awk -v now="$now" -v ts="$1" 'BEGIN { a = now - ts; if (a < 0) a = 0; printf "%d\n", a }'
}

# job_figures FILE JOB DIMENSION_NAME DIMENSION_VALUE AGE_METRIC FAILED_METRIC: the age
# of the last success and whether the last run failed, from one job's textfile; a metric
# given as - is not published.
job_figures() {
	local file="$TEXTFILE_DIR/$1" job="$2" dim="$3" value="$4" age_metric="$5" failed_metric="$6"
	if [[ ! -e "$file" ]]; then
		return 0
	fi
	if [[ ! -r "$file" ]]; then
		log "cannot read $file (not in group dob?)"
		status=1
		return 0
	fi
	local last success
	if [[ "$age_metric" != - ]]; then
		last="$(gauge "$file" "${job}_last_success_timestamp_seconds")"
		[[ -z "$last" ]] || datum "$age_metric" Seconds "$(age_of "$last")" "$dim" "$value"
	fi
	if [[ "$failed_metric" != - ]]; then
		success="$(gauge "$file" "${job}_success")"
		case "$success" in
		1) datum "$failed_metric" Count 0 "$dim" "$value" ;;
		0) datum "$failed_metric" Count 1 "$dim" "$value" ;;
		esac
	fi
}

# --- the jobs' textfiles -----------------------------------------------------------------

job_figures dob_backup.prom dob_backup Backup logical BackupAgeSeconds -
job_figures dob_restore_drill.prom dob_restore_drill Drill restore DrillAgeSeconds DrillFailed
# The PITR drill's failure is the primary's to report (it runs on the leader only; an
# old failure in a former leader's textfile is not news): below.
job_figures dob_pitr_drill.prom dob_restore_pitr_drill Drill pitr DrillAgeSeconds -

# --- PostgreSQL, pgBackRest --------------------------------------------------------------

instance_id() {
	if [[ -n "${DOB_INSTANCE_ID:-}" ]]; then
		printf '%s\n' "$DOB_INSTANCE_ID"
		return 0
	fi
	local token
	token="$(curl -sS -f -m 3 -X PUT http://169.254.169.254/latest/api/token \
		-H 'X-aws-ec2-metadata-token-ttl-seconds: 60')" || return 1
	curl -sS -f -m 3 -H "X-aws-ec2-metadata-token: $token" \
		http://169.254.169.254/latest/meta-data/instance-id
}

# One row, fields separated by |, empty for NULL: in recovery (t/f), lag seconds, lag
# bytes, WAL archive wait, newest archived WAL age.
PG_QUERY="
SELECT pg_is_in_recovery(),
  CASE WHEN NOT pg_is_in_recovery() THEN 0
       WHEN w.status = 'streaming' AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
       ELSE round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::bigint END,
  CASE WHEN NOT pg_is_in_recovery() THEN 0
       WHEN w.status = 'streaming' THEN greatest(pg_wal_lsn_diff(w.latest_end_lsn, pg_last_wal_replay_lsn()), 0)::bigint END,
  CASE WHEN pg_is_in_recovery() OR current_setting('archive_mode') = 'off' THEN NULL
       ELSE coalesce((SELECT greatest(round(extract(epoch FROM now() - min(s.modification))), 0)::bigint
                      FROM pg_ls_archive_statusdir() s WHERE s.name LIKE '%.ready'), 0) END,
  CASE WHEN pg_is_in_recovery() THEN NULL
       ELSE round(extract(epoch FROM now() - a.last_archived_time))::bigint END
FROM pg_stat_archiver a LEFT JOIN pg_stat_wal_receiver w ON true"

# newest_physical_backup: the stop time (Unix seconds) of the newest backup in the
# pgBackRest repository, or nothing.
newest_physical_backup() {
	pgbackrest --config="$PGBACKREST_CONFIG" --stanza="$PGBACKREST_STANZA" \
		--log-level-console=error --log-level-file=off --output=json info |
		python3 -c '
import json, sys
stops = [b["timestamp"]["stop"] for s in json.load(sys.stdin) for b in s.get("backup", [])]
if stops:
    print(max(stops))
'
}

if ((!jobs_only)); then
	if row="$(PGCONNECT_TIMEOUT=5 psql -X -q -A -t -F '|' -h "${PGHOST:-/var/run/postgresql}" \
		-d postgres -v ON_ERROR_STOP=1 -c "$PG_QUERY" 2>&1)"; then
		IFS='|' read -r in_recovery lag_seconds lag_bytes archive_wait archived_age <<<"$row"
		if id="$(instance_id)" && [[ "$id" =~ ^i-[0-9a-f]+$ ]]; then
			[[ -z "$lag_seconds" ]] || datum ReplicationLagSeconds Seconds "$lag_seconds" InstanceId "$id"
			[[ -z "$lag_bytes" ]] || datum ReplicationLagBytes Bytes "$lag_bytes" InstanceId "$id"
		else
			log "no instance ID from the instance metadata: replication lag not published"
			status=1
		fi
		if [[ "$in_recovery" == f ]]; then
			[[ -z "$archive_wait" ]] || datum WalArchiveAgeSeconds Seconds "$archive_wait"
			[[ -z "$archived_age" ]] || datum WalLastArchivedAgeSeconds Seconds "$archived_age"
			job_figures dob_pitr_drill.prom dob_restore_pitr_drill Drill pitr - DrillFailed
			if [[ -r "$PGBACKREST_CONFIG" ]] && command -v pgbackrest >/dev/null; then
				if stop="$(newest_physical_backup)"; then
					[[ -z "$stop" ]] || datum BackupAgeSeconds Seconds "$(age_of "$stop")" Backup physical
				else
					log "pgbackrest info failed: physical backup age not published"
					status=1
				fi
			fi
		fi
	else
		log "cannot ask the local PostgreSQL: ${row%%$'\n'*}"
		status=1
	fi
fi

# --- publish -----------------------------------------------------------------------------

if ((${#data[@]} == 0)); then
	log "nothing to publish"
	exit "$status"
fi
json="[$(
	IFS=,
	printf '%s' "${data[*]}"
)]"
if ((dry_run)); then
	printf '%s\n' "$json"
	exit "$status"
fi
if [[ -z "${AWS_REGION:-}" ]]; then
	log "AWS_REGION is not set (/etc/dob/dob.env): nothing published"
	exit 1
fi
# HOME: the AWS CLI wants one; the units give it a private /tmp.
if out="$(HOME="${TMPDIR:-/tmp}" AWS_MAX_ATTEMPTS=2 aws cloudwatch put-metric-data \
	--region "$AWS_REGION" --namespace "$NAMESPACE" --metric-data "$json" \
	--cli-connect-timeout 5 --cli-read-timeout 15 2>&1)"; then
	log "published ${#data[@]} figures to CloudWatch ($AWS_REGION, namespace $NAMESPACE)"
else
	log "CloudWatch put-metric-data failed (${#data[@]} figures lost): ${out%%$'\n'*}"
	status=1
fi
exit "$status"
