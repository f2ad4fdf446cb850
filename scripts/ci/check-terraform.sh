#!/usr/bin/env bash
# CI check of the infrastructure code, for machines where terraform and packer cannot be
# installed: everything that can be checked for real is.
#
#   scripts/ci/check-terraform.sh
#
#   1. hcl       every *.tf and *.pkr.hcl file parses (python-hcl2), and the Terraform
#                modules are consistent: typed and described variables, described outputs,
#                references, module arguments, provider aliases, templatefile() variables,
#                and terraform/README.md's inputs/outputs tables are current; and the
#                secure defaults, each rule self-tested: no pg_hba `trust` for TCP in any
#                template or script, the NLB's public listener TLS (TCP only behind
#                enable_plain_listener), no host-role grant that destroys a backup,
#                Object Lock with a default retention on every backup bucket, every
#                alarm of terraform/alarms.tf present and notifying its region's SNS
#                topic (scripts/ci/terraform_static.py)
#   2. userdata  the host user data, rendered for each role, passes bash -n and shellcheck
#   3. boot      ... and runs for real, three boots per role, against a loop device in a
#                private mount namespace (scripts/ci/user-data-boot-test.sh; needs root,
#                skipped with a notice otherwise)
#   4. skips     every `#checkov:skip=` in terraform/ carries a written reason
#   5. checkov   `checkov -d terraform --framework terraform` with the custom checks of
#                terraform/checkov: zero failed checks
#   6. custom    the custom check CKV_DOB_1 (5432 open to the world) fails every resource of
#                terraform/checkov/tests/bad and passes every one of .../good
#
# python-hcl2 and checkov pin clashing dependencies, so each gets its own virtualenv
# (.venv-ci/hcl2, shared with check-packer.sh, and .venv-ci/checkov), created once and
# reused while the pinned version matches. Nothing is sent anywhere: checkov runs with --skip-download.
#
# Environment: DOB_HCL2_SPEC, DOB_CHECKOV_SPEC (pip requirements; defaults pinned below).
# Exit status: 0 when every step passed, 1 when one failed (the summary says which).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
DOB_LOG_TAG=check-terraform

HCL2_SPEC="${DOB_HCL2_SPEC:-python-hcl2==8.1.4}"
CHECKOV_SPEC="${DOB_CHECKOV_SPEC:-checkov==3.3.30}"
HCL2_VENV="$DOB_ROOT/.venv-ci/hcl2"
CHECKOV_VENV="$DOB_ROOT/.venv-ci/checkov"
CUSTOM_CHECK=CKV_DOB_1

case "${1:-}" in
-h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit 0
	;;
"") ;;
*) dob_die "unknown argument: $1 (try --help)" ;;
esac

cd "$DOB_ROOT"
work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT

# --- setup -------------------------------------------------------------------------------

ensure_python_venv_support() {
	if command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
		return 0
	fi
	dob_log "installing python3-venv"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y update >/dev/null
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
		python3 python3-venv >/dev/null
}

# ensure_venv DIR SPEC PROBE...: a virtualenv in DIR with SPEC installed, where PROBE runs;
# rebuilt only when SPEC changed or the venv is broken.
ensure_venv() {
	local dir="$1" spec="$2"
	shift 2
	if [[ -f "$dir/.spec" && "$(cat "$dir/.spec")" == "$spec" ]] &&
		"$dir/bin/python" -c 'import sys' >/dev/null 2>&1 && "$@" >/dev/null 2>&1; then
		return 0
	fi
	ensure_python_venv_support
	dob_log "creating $dir with $spec"
	rm -rf -- "$dir"
	python3 -m venv "$dir"
	"$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$spec" </dev/null
	"$@" >/dev/null || dob_die "$dir: '$*' fails after installing $spec"
	printf '%s\n' "$spec" >"$dir/.spec"
}

command -v shellcheck >/dev/null 2>&1 || "$DOB_ROOT/scripts/install-deps.sh" lint
ensure_venv "$HCL2_VENV" "$HCL2_SPEC" "$HCL2_VENV/bin/python" -c 'import hcl2'
ensure_venv "$CHECKOV_VENV" "$CHECKOV_SPEC" "$CHECKOV_VENV/bin/checkov" --version

# --- steps -------------------------------------------------------------------------------

results=()
failed=0

# step NAME CMD...: run one check, time it, remember the outcome.
step() {
	local name="$1" start status=0
	shift
	printf '\n== %s\n' "$name"
	start="$(date +%s)"
	"$@" || status=$?
	local took=$(($(date +%s) - start))
	if ((status == 0)); then
		results+=("$(printf '%-9s ok      %4ss' "$name" "$took")")
	else
		results+=("$(printf '%-9s FAILED  %4ss' "$name" "$took")")
		failed=1
	fi
}

check_hcl() {
	"$HCL2_VENV/bin/python" scripts/ci/terraform_static.py "$DOB_ROOT" "$work/user-data"
}

check_user_data() {
	local script n=0
	for script in "$work"/user-data/*.sh; do
		[[ -e "$script" ]] || break
		bash -n "$script" || return 1
		shellcheck "$script" || return 1
		n=$((n + 1))
	done
	((n > 0)) || {
		echo "no rendered user data (the hcl step failed?)"
		return 1
	}
	echo "$n rendered user data scripts: bash -n and shellcheck clean"
}

check_boot() {
	local script
	if ! dob_is_root; then
		echo "SKIPPED: needs root (loop device, mounts); CI runs it"
		skipped_boot=1
		return 0
	fi
	for script in "$work"/user-data/*.sh; do
		[[ -e "$script" ]] || return 1
		echo "-- $(basename "$script" .sh)"
		scripts/ci/user-data-boot-test.sh "$script" || return 1
	done
}

check_skip_reasons() {
	local bad
	# A reason is at least a few words after the check ID.
	bad="$(grep -rn --include='*.tf' 'checkov:skip' terraform |
		grep -Ev 'checkov:skip=CKV2?_[A-Z0-9_]+:[^[:space:]].{19,}' || true)"
	if [[ -n "$bad" ]]; then
		echo "checkov skips without a written reason (#checkov:skip=CKV_ID:reason):"
		echo "$bad"
		return 1
	fi
	echo "$(grep -rc --include='*.tf' 'checkov:skip' terraform | awk -F: '{s += $2} END {print s + 0}') skip comments, each with a reason"
}

# checkov_json DIR OUT [ARGS...]: run checkov on DIR, JSON report in OUT. checkov exits
# 1 when a check fails; the report, not the status, is what we judge.
checkov_json() {
	local dir="$1" out="$2"
	shift 2
	"$CHECKOV_VENV/bin/checkov" --directory "$dir" --framework terraform --skip-download \
		--external-checks-dir terraform/checkov --output json "$@" >"$out" 2>"$out.stderr" || true
	if ! "$CHECKOV_VENV/bin/python" -c 'import json, sys; json.load(open(sys.argv[1]))' "$out" 2>/dev/null; then
		echo "checkov produced no JSON report for $dir:"
		tail -n 20 "$out.stderr"
		return 1
	fi
}

# report.py OUT: summary, failures and skips of a checkov JSON report.
cat >"$work/report.py" <<'PY'
import json, sys

report = json.load(open(sys.argv[1]))
reports = report if isinstance(report, list) else [report]
results = {"passed_checks": [], "failed_checks": [], "skipped_checks": []}
parsing_errors = 0
for r in reports:
    if r.get("check_type") not in (None, "terraform"):
        continue
    for key in results:
        results[key] += r.get("results", {}).get(key, [])
    parsing_errors += r.get("summary", {}).get("parsing_errors", 0)
passed, failed, skipped = (results[k] for k in ("passed_checks", "failed_checks", "skipped_checks"))
custom = [c for c in passed + failed if c["check_id"] == sys.argv[2]]
print(f"passed {len(passed)}, failed {len(failed)}, skipped {len(skipped)}, parsing errors {parsing_errors}; "
      f"{sys.argv[2]} evaluated on {len(custom)} resources")
for c in failed:
    print(f"  FAILED  {c['check_id']}  {c['resource']}  {c['file_path']}:{c['file_line_range'][0]}  {c['check_name']}")
for c in skipped:
    reason = c.get("check_result", {}).get("suppress_comment", "")
    print(f"  skipped {c['check_id']}  {c['resource']}: {reason}")
ok = not failed and not parsing_errors and (custom or sys.argv[3] == "any")
sys.exit(0 if ok else 1)
PY

check_checkov() {
	checkov_json terraform "$work/checkov.json" --skip-path 'checkov/tests' || return 1
	"$CHECKOV_VENV/bin/python" "$work/report.py" "$work/checkov.json" "$CUSTOM_CHECK" custom-must-run
}

# fixture_resources DIR: "type.name" of every resource in the fixture's .tf files.
fixture_resources() {
	sed -nE 's/^resource "([^"]+)" "([^"]+)".*/\1.\2/p' "$1"/*.tf | sort
}

# report_resources JSON FIELD: "type.name" of the resources in FIELD (failed_checks or
# passed_checks) for the custom check.
report_resources() {
	"$CHECKOV_VENV/bin/python" - "$1" "$2" "$CUSTOM_CHECK" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
reports = report if isinstance(report, list) else [report]
print("\n".join(sorted(c["resource"] for r in reports for c in r["results"][sys.argv[2]] if c["check_id"] == sys.argv[3])))
PY
}

check_custom() {
	local fixtures=terraform/checkov/tests bad good failed passed status=0
	# One checkov run over both fixture directories (their resource names differ).
	checkov_json "$fixtures" "$work/fixtures.json" --check "$CUSTOM_CHECK" || return 1
	bad="$(fixture_resources "$fixtures/bad")"
	good="$(fixture_resources "$fixtures/good")"
	failed="$(report_resources "$work/fixtures.json" failed_checks)"
	passed="$(report_resources "$work/fixtures.json" passed_checks)"
	if [[ -z "$bad" || -z "$good" ]]; then
		echo "fixtures missing: $fixtures/bad and $fixtures/good must each declare resources"
		return 1
	fi
	if [[ "$failed" != "$bad" ]]; then
		echo "bad fixture: every resource must FAIL $CUSTOM_CHECK (< expected, > failed):"
		diff <(echo "$bad") <(echo "$failed") || true
		status=1
	else
		echo "bad fixture: all $(wc -l <<<"$bad") resources failed $CUSTOM_CHECK"
	fi
	if [[ "$passed" != "$good" ]]; then
		echo "good fixture: every resource must PASS $CUSTOM_CHECK (< expected, > passed):"
		diff <(echo "$good") <(echo "$passed") || true
		status=1
	else
		echo "good fixture: all $(wc -l <<<"$good") resources passed $CUSTOM_CHECK"
	fi
	return "$status"
}

total_start="$(date +%s)"
step hcl check_hcl
step userdata check_user_data
skipped_boot=0
step boot check_boot
step skips check_skip_reasons
step checkov check_checkov
step custom check_custom

printf '\n== summary (%ss)\n' "$(($(date +%s) - total_start))"
printf '%s\n' "${results[@]}"
((skipped_boot == 0)) || echo "(boot skipped: not root)"
if ((failed)); then
	dob_log "FAILED"
	exit 1
fi
dob_log "all Terraform checks passed"
