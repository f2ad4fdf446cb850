#!/usr/bin/env bash
# check-packer: the Packer template, as far as it can be checked without Packer (which
# cannot be installed here): every packer/*.pkr.hcl parses (python-hcl2, in its own
# virtualenv .venv-ci/hcl2), and the template keeps its promises:
#   - Debian 12 source AMI by filter (owner 136693071363, name debian-12-amd64-*, newest)
#   - built in eu-west-1 and copied to eu-central-1, encrypted, IMDSv2 required
#   - every variable typed and described
#   - every file it uploads exists in the repository, the helper scripts it uploads are
#     exactly those provision.sh requires, and it runs provision.sh --source
#
#   scripts/ci/check-packer.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
DOB_LOG_TAG=check-packer

HCL2_SPEC="python-hcl2==8.1.4"
venv=.venv-ci/hcl2
if [[ "$(cat "$venv/.spec" 2>/dev/null)" != "$HCL2_SPEC" ]]; then
	dob_log "creating $venv ($HCL2_SPEC)"
	rm -rf "$venv"
	python3 -m venv "$venv" || dob_die "python3 -m venv failed (apt-get install python3-venv)"
	"$venv/bin/pip" install --quiet --disable-pip-version-check "$HCL2_SPEC"
	printf '%s\n' "$HCL2_SPEC" >"$venv/.spec"
fi

mapfile -t helpers < <(packer/provision.sh --list-helpers)
"$venv/bin/python" - "${helpers[@]}" <<'PY'
import glob
import os
import sys

import hcl2

helpers = set(sys.argv[1:])
problems = []


def unq(value):
    """python-hcl2 keeps the quotes of string literals."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def blocks(doc, kind):
    return [b for b in doc.get(kind, [])]


docs = {}
for path in sorted(glob.glob("packer/*.pkr.hcl")):
    try:
        with open(path) as f:
            docs[path] = hcl2.load(f)
    except Exception as e:  # any parse error fails the check, with its message
        problems.append(f"{path}: does not parse: {e}")
if not docs:
    problems.append("no packer/*.pkr.hcl files")

variables = {}
sources = []
builds = []
for path, doc in docs.items():
    for block in blocks(doc, "variable"):
        for name, body in block.items():
            name = unq(name)
            variables[name] = body
            for key in ("type", "description"):
                if key not in body:
                    problems.append(f"{path}: variable {name} has no {key}")
    for block in blocks(doc, "source"):
        for kind, named in block.items():
            for name, body in named.items():
                sources.append((unq(kind), unq(name), body))
    builds.extend(blocks(doc, "build"))


def resolve(value):
    """A literal, or the default of the variable it names (${var.x})."""
    if isinstance(value, str) and value.startswith("${var.") and value.endswith("}"):
        name = value[len("${var."):-1]
        if name not in variables:
            problems.append(f"unknown variable {name}")
            return None
        return resolve(variables[name].get("default"))
    if isinstance(value, list):
        return [resolve(v) for v in value]
    return unq(value)


ebs = [body for kind, _, body in sources if kind == "amazon-ebs"]
if len(ebs) != 1:
    problems.append(f"want exactly one amazon-ebs source, found {len(ebs)}")
else:
    src = ebs[0]
    if resolve(src.get("region")) != "eu-west-1":
        problems.append("the build region is not eu-west-1")
    if "eu-central-1" not in (resolve(src.get("ami_regions")) or []):
        problems.append("ami_regions does not copy the image to eu-central-1")
    if src.get("encrypt_boot") is not True:
        problems.append("encrypt_boot is not true")
    filt = (src.get("source_ami_filter") or [{}])[0]
    if [unq(o) for o in filt.get("owners", [])] != ["136693071363"]:
        problems.append("source_ami_filter owners is not Debian's account 136693071363")
    if unq(filt.get("filters", {}).get("name")) != "debian-12-amd64-*":
        problems.append("source_ami_filter name is not debian-12-amd64-*")
    if filt.get("most_recent") is not True:
        problems.append("source_ami_filter does not take the most recent image")
    meta = (src.get("metadata_options") or [{}])[0]
    if unq(meta.get("http_tokens")) != "required":
        problems.append("metadata_options.http_tokens is not required (IMDSv2)")

uploaded_helpers = set()
runs_provision = False
for build in builds:
    for prov in build.get("provisioner", []):
        for kind, body in prov.items():
            kind = unq(kind)
            if kind == "file":
                paths = [body["source"]] if "source" in body else body.get("sources", [])
                for raw in paths:
                    path = resolve(raw) if raw.startswith("${var.") else unq(raw)
                    if "${var.bin_dir}" in raw:
                        continue  # staged at build time: provision.sh --stage-binaries
                    if not os.path.exists(path):
                        problems.append(f"file provisioner uploads {path}, which does not exist")
                    if unq(body.get("destination", "")).endswith("/lib/"):
                        uploaded_helpers.add(os.path.basename(path))
            elif kind == "shell":
                if any("provision.sh --source" in unq(line) for line in body.get("inline", [])):
                    runs_provision = True
if uploaded_helpers != helpers:
    problems.append(
        f"helpers uploaded {sorted(uploaded_helpers)} != provision.sh --list-helpers {sorted(helpers)}"
    )
if not runs_provision:
    problems.append("no shell provisioner runs provision.sh --source")

for p in problems:
    print(f"check-packer: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"check-packer: ok: {len(docs)} files parse, template checked", file=sys.stderr)
PY
