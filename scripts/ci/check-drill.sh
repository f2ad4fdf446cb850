#!/usr/bin/env bash
# check-drill: the whole-system drill (make drill) as a CI check. Fails unless every
# scenario in target/drill/report.json is ok (the drill itself exits non-zero then).
#
#   scripts/ci/check-drill.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
DOB_LOG_TAG=check-drill

dob_is_root || dob_die "needs root (network namespaces)"
# The report's pure figures first: a wrong formula must not need a whole drill to show.
(cd scripts/drill && python3 -m unittest --quiet test_report test_timeline) || dob_die "the drill report's unit tests failed"
scripts/drill/drill.sh
report="${CARGO_TARGET_DIR:-$PWD/target}/drill/report.json"
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); sys.exit(0 if r["ok"] and r["scenarios"] else 1)' "$report" ||
	dob_die "the drill report says not ok: $report"
dob_log "every scenario ok"
