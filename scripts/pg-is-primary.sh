#!/usr/bin/env bash
# pg-is-primary.sh: is the LOCAL PostgreSQL cluster the primary? dob-backup.service's
# ExecCondition=, installed as /usr/local/lib/dob/pg-is-primary.sh.
#
#   pg-is-primary.sh [--cluster 15/main]
#
# Where Patroni manages the cluster (DOB_PATRONI_URL set, e.g. http://10.0.1.10:8008, in
# /etc/dob/dob.env), Patroni is asked instead (GET /primary): it alone knows whether this
# node holds the leader key and runs PostgreSQL as the primary (/leader would also answer
# 200 on a standby cluster's leader, the DR host before a takeover). A server cut off from the DCS is still writable for a few
# seconds before it demotes itself, and a backup of it would be a backup of a
# history that is about to be discarded.
#
# Asks the cluster over its local socket (Debian's psql wrapper, /usr/bin/psql --cluster,
# whatever PATH says: the units put PostgreSQL's own bin directory first; peer
# authentication as the calling user, database postgres). Exit status, as ExecCondition= reads it:
#   0    the local server is the primary: run the job
#   1    the local server is in recovery (a replica): skip the job cleanly
#   255  the local server cannot be asked (down, refused): the job fails, loudly
set -euo pipefail

cluster=15/main
while (($#)); do
	case "$1" in
	--cluster)
		[[ $# -ge 2 ]] || {
			echo "pg-is-primary: --cluster needs VERSION/NAME" >&2
			exit 255
		}
		cluster="$2"
		shift 2
		;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*)
		echo "pg-is-primary: unknown argument: $1" >&2
		exit 255
		;;
	esac
done

if [[ -n "${DOB_PATRONI_URL:-}" ]]; then
	if ! status="$(curl -sS -o /dev/null -m 5 -w '%{http_code}' "${DOB_PATRONI_URL%/}/primary" 2>&1)"; then
		echo "pg-is-primary: cannot ask Patroni at $DOB_PATRONI_URL: $status" >&2
		exit 255
	fi
	case "$status" in
	200)
		echo "pg-is-primary: Patroni says this node is the primary" >&2
		exit 0
		;;
	503)
		echo "pg-is-primary: Patroni says this node is not the primary: skipping" >&2
		exit 1
		;;
	*)
		echo "pg-is-primary: unexpected answer from Patroni at $DOB_PATRONI_URL: HTTP $status" >&2
		exit 255
		;;
	esac
fi

if ! answer="$(/usr/bin/psql --cluster "$cluster" -X -w -A -t -d postgres \
	-c 'SELECT pg_is_in_recovery()' 2>&1)"; then
	echo "pg-is-primary: cannot ask PostgreSQL $cluster: $answer" >&2
	exit 255
fi
case "$answer" in
f)
	echo "pg-is-primary: PostgreSQL $cluster is the primary" >&2
	exit 0
	;;
t)
	echo "pg-is-primary: PostgreSQL $cluster is in recovery (a replica): skipping" >&2
	exit 1
	;;
*)
	echo "pg-is-primary: unexpected answer from PostgreSQL $cluster: $answer" >&2
	exit 255
	;;
esac
