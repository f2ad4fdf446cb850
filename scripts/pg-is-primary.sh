#!/usr/bin/env bash
# pg-is-primary.sh: is the LOCAL PostgreSQL cluster the primary? dob-backup.service's
# ExecCondition=, installed as /usr/local/lib/dob/pg-is-primary.sh.
#
#   pg-is-primary.sh [--cluster 15/main]
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
