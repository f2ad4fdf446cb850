#!/usr/bin/env bash
# The hostile-client suite (tests/api/hostile.rs) against a release build of dob-api.
#
#   bench/hostile.sh          (or: make bench-hostile)
#
# Each case starts the release binary with its open-files limit at 512 (soft and hard),
# attacks it as issue 9 describes, and fails unless the process stays up, /healthz answers
# in under 2 s during and after, and nothing is lost or reordered. Prints what each case
# measured (slowest /healthz, RSS before and at peak) and the test summary.
#
# Environment: DOB_SKIP_BUILD=1 (use the existing target/release/dob-api).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
DOB_LOG_TAG=hostile

"$DOB_ROOT/scripts/install-deps.sh"
if [[ "${DOB_SKIP_BUILD:-0}" == 1 ]]; then
	API_BIN="${CARGO_TARGET_DIR:-$DOB_ROOT/target}/release/dob-api"
else
	API_BIN="$(dob_build_api)"
fi
[[ -x "$API_BIN" ]] || dob_die "$API_BIN not found"
dob_log "attacking $API_BIN"
# One case at a time: each measures its own process's memory and latency undisturbed.
cd "$DOB_ROOT"
LOG="$(mktemp "${TMPDIR:-/tmp}/dob-hostile.XXXXXX")"
status=0
DOB_API_BIN="$API_BIN" timeout 900 cargo test --locked --test api -- hostile:: \
	--test-threads 1 --nocapture >"$LOG" 2>&1 || status=$?
grep -E '^test |slowest|MB of header|outage|test result' "$LOG" || true
if ((status != 0)); then
	dob_log "failed (exit $status); the whole output is in $LOG"
	exit "$status"
fi
rm -f "$LOG"
