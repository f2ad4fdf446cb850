"""Static checks of the Terraform and Packer code, for CI machines without terraform/packer.

Run by scripts/ci/check-terraform.sh with the python-hcl2 virtualenv:

    python terraform_static.py REPO_ROOT RENDER_DIR
    python terraform_static.py --write-docs [REPO_ROOT]   # refresh terraform/README.md tables

(the python of .venv-ci/hcl2, which check-terraform.sh creates).

1. Every `*.tf` and `*.pkr.hcl` file of the repository parses (python-hcl2), and so do the
   example settings in terraform/ (`*.example`).
2. Per Terraform module directory (what `terraform validate` would catch first):
   every variable has a type and a description, every output a description; every
   `var.X`, `local.X` and `module.X.Y` refers to something declared; every call of a local
   module passes only variables the module declares and all it requires, and maps every
   provider alias the module declares in `configuration_aliases`; where no default aws
   provider exists (the root, modules with aliases) every resource, data source and module
   call names its provider; every `templatefile()` passes exactly the variables its
   template uses.
3. The inputs/outputs tables of terraform/README.md match the code (--write-docs
   rewrites them).
4. The db_host user data template is rendered for each role into RENDER_DIR (for
   `bash -n` and shellcheck by the caller), and the env file it writes is checked
   (TLS parameters, sslmode=verify-full, the admin listener, DOB_BACKUP_KEEP=0).
5. Secure by default (each rule has a self-test below that feeds it a violation and
   fails when the violation goes unnoticed, and a compliant case it must accept):
   a. no pg_hba template or script (terraform templates, scripts/*.sh,
      scripts/**/*.sh, packer/) writes `trust` for a TCP rule (host, hostssl, hostnossl,
      ...: a literal line, an auth-method variable set to trust, initdb --auth=trust);
      `local ... peer` is fine;
   b. the NLB's public listener (var.port, 443) is TLS with a certificate and an
      ssl_policy, and any TCP listener exists only with enable_plain_listener;
   c. no Allow statement of a host-role policy (modules/host_role) grants an action
      that can destroy a backup: s3:DeleteObject(Version), s3:PutObjectRetention,
      s3:PutObjectLegalHold, s3:BypassGovernanceRetention, or a wildcard covering one
      (s3:Delete*, s3:*, *). One exception: s3:DeleteObject on pgBackRest's repository
      prefix only (its expire), where Object Lock turns a delete into a marker over
      versions that stay locked; never on the logical backups' prefix;
   d. every backup bucket (each kms_bucket that modules/backup_bucket creates) has
      object_lock_enabled = true and a default retention (mode and days), and the
      replication does not replicate delete markers;
   e. every alarm of issue 12's list exists in the root module
      (aws_cloudwatch_metric_alarm.<address> of ALARMS: backup age, drill failed and
      age, WAL archive age, replication lag in bytes and seconds, Route53 health checks,
      EC2 status checks) with its namespace and metric, the heartbeat ones treat missing
      data as breaching, and its alarm_actions and ok_actions are exactly the alarm topic
      (a modules/alarm_topic call) of the alarm's own provider/region; that topic is
      encrypted with a customer-managed KMS key and subscribes var.email_endpoints; the
      metrics in namespace "dob" are ones scripts/publish-metrics.sh publishes.

Exit 0 when everything holds, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from pathlib import Path

import hcl2

SKIP_DIRS = {".git", "target", "vendor", ".local", "node_modules", ".terraform"}
# Fixture directories hold deliberately bad code for the custom checkov check: parse only.
FIXTURES = Path("terraform/checkov/tests")
KEYWORDS = {"if", "else", "endif", "for", "in", "endfor", "true", "false", "null"}

problems: list[str] = []


def problem(where: object, message: str) -> None:
    problems.append(f"{where}: {message}")


def unquote(label: str) -> str:
    return label[1:-1] if len(label) >= 2 and label[0] == label[-1] == '"' else label


def find_files(root: Path, suffix: str) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".venv")]
        found += [Path(dirpath, f) for f in filenames if f.endswith(suffix)]
    return sorted(found)


def strip_comments(text: str) -> str:
    """Drop # and // comments (not inside strings: good enough for reference scanning)."""
    out = []
    for line in text.splitlines():
        in_string = False
        cut = len(line)
        i = 0
        while i < len(line):
            c = line[i]
            if c == '"' and (i == 0 or line[i - 1] != "\\"):
                in_string = not in_string
            elif not in_string and (c == "#" or line.startswith("//", i)):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)


def blocks(parsed: dict, kind: str) -> dict[str, dict]:
    """{label: body} for one-label blocks (variable, output, module)."""
    result = {}
    for item in parsed.get(kind, []):
        for label, body in item.items():
            result[unquote(label)] = body
    return result


class Module:
    def __init__(self, directory: Path, files: dict[Path, dict]):
        self.directory = directory
        self.files = files
        self.variables: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.locals: set[str] = set()
        self.calls: dict[str, dict] = {}
        self.aliases: set[str] = set()
        self.text = ""
        for path, parsed in files.items():
            self.variables.update(blocks(parsed, "variable"))
            self.outputs.update(blocks(parsed, "output"))
            self.calls.update(blocks(parsed, "module"))
            for item in parsed.get("locals", []):
                self.locals.update(k for k in item if not k.startswith("__"))
            for tf in parsed.get("terraform", []):
                for req in tf.get("required_providers", []):
                    for _, spec in req.items():
                        if isinstance(spec, dict):
                            for alias in spec.get("configuration_aliases", []):
                                self.aliases.add(str(alias).strip("${}"))
            self.text += strip_comments(path.read_text()) + "\n"


def check_module(module: Module, modules: dict[Path, Module]) -> None:
    d = module.directory
    for name, body in module.variables.items():
        if "type" not in body:
            problem(d, f'variable "{name}" has no type')
        if not unquote(str(body.get("description", ""))).strip():
            problem(d, f'variable "{name}" has no description')
    for name, body in module.outputs.items():
        if not unquote(str(body.get("description", ""))).strip():
            problem(d, f'output "{name}" has no description')

    for name in sorted(set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)", module.text))):
        if name not in module.variables:
            problem(d, f"var.{name} is not declared")
    for name in sorted(set(re.findall(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)", module.text))):
        if name not in module.locals:
            problem(d, f"local.{name} is not declared")

    for call, output in sorted(set(re.findall(r"\bmodule\.([A-Za-z_][A-Za-z0-9_-]*)(?:\[[^\]]*\])?\.([A-Za-z_][A-Za-z0-9_-]*)", module.text))):
        body = module.calls.get(call)
        if body is None:
            problem(d, f"module.{call} is not declared")
            continue
        child = modules.get((d / unquote(str(body["source"]))).resolve())
        if child is not None and output not in child.outputs:
            problem(d, f"module.{call}.{output}: module {call} has no output {output}")

    meta = {"source", "providers", "depends_on", "count", "for_each", "version", "__is_block__"}
    for call, body in module.calls.items():
        source = unquote(str(body.get("source", "")))
        if not source.startswith("."):
            continue
        child = modules.get((d / source).resolve())
        if child is None:
            problem(d, f'module "{call}": source {source} is not a Terraform module directory')
            continue
        given = {k for k in body if not k.startswith("__")} - meta
        for arg in sorted(given - set(child.variables)):
            problem(d, f'module "{call}": {source} has no variable "{arg}"')
        for name, var in sorted(child.variables.items()):
            if "default" not in var and name not in given:
                problem(d, f'module "{call}": required variable "{name}" of {source} is not set')
        providers = body.get("providers", {})
        passed = {str(k).strip("${}") for k in providers} if isinstance(providers, dict) else set()
        for alias in sorted(child.aliases - passed):
            problem(d, f'module "{call}": provider {alias} required by {source} is not passed')

    for alias in sorted(set(re.findall(r"provider\s*=\s*(aws\.[A-Za-z_][A-Za-z0-9_]*)", module.text))):
        declared_here = re.search(r'provider\s+"aws"\s*{[^}]*alias\s*=\s*"' + alias.split(".")[1] + '"', module.text)
        if alias not in module.aliases and not declared_here:
            problem(d, f"provider {alias} is used but neither declared nor in configuration_aliases")

    check_explicit_providers(module)
    check_templatefiles(module)


def check_explicit_providers(module: Module) -> None:
    """Where there is no default (unaliased) aws provider, nothing may rely on one.

    That is the root (it configures only aliased providers) and every module that declares
    configuration_aliases (its caller passes only the aliases). A resource, data source or
    module call without an explicit provider would fall back to an empty default `aws`
    provider with no region, which `terraform plan` rejects.
    """
    provider_blocks = [b for parsed in module.files.values() for item in parsed.get("provider", []) for b in item.values()]
    only_aliased = bool(provider_blocks) and all("alias" in b for b in provider_blocks)
    if not (module.aliases or only_aliased):
        return
    for path, parsed in module.files.items():
        for kind in ("resource", "data"):
            for item in parsed.get(kind, []):
                for rtype, named in item.items():
                    for name, body in named.items():
                        if unquote(rtype).startswith("aws_") and "provider" not in body:
                            problem(path, f'{kind} {unquote(rtype)}.{unquote(name)} has no provider = aws.<alias> (there is no default aws provider here)')
        for call, body in blocks(parsed, "module").items():
            if "providers" not in body:
                problem(path, f'module "{call}" has no providers = {{...}} (there is no default aws provider here)')


def matching_brace(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced braces")


def template_identifiers(template: str) -> set[str]:
    used = set()
    for expr in re.findall(r"(?<!\$)[$%]\{~?(.*?)~?\}", template, flags=re.S):
        expr = re.sub(r'"[^"]*"', "", expr)
        for ident in re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()", expr):
            if ident not in KEYWORDS:
                used.add(ident)
    return used


def check_templatefiles(module: Module) -> None:
    for match in re.finditer(r'templatefile\(\s*"\$\{path\.module\}/([^"]+)"\s*,\s*\{', module.text):
        template_path = module.directory / match.group(1)
        if not template_path.is_file():
            problem(module.directory, f"templatefile: {template_path} does not exist")
            continue
        brace = match.end() - 1
        mapping = module.text[brace : matching_brace(module.text, brace) + 1]
        passed = set(re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", mapping, flags=re.M))
        used = template_identifiers(template_path.read_text())
        for name in sorted(used - passed):
            problem(template_path, f"uses ${{{name}}} but templatefile() does not pass it")
        for name in sorted(passed - used):
            problem(template_path, f"templatefile() passes {name} but the template never uses it")


# --- terraform/README.md inputs/outputs tables ------------------------------------------------

DOCS = Path("terraform/README.md")
DOC_MARK = re.compile(r"<!-- BEGIN_TF_DOCS (\S+) -->\n.*?<!-- END_TF_DOCS \1 -->", flags=re.S)


def hcl_value(value: object) -> str:
    """A parsed HCL value written back as HCL (enough for defaults and types)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value[2:-1] if value.startswith("${") and value.endswith("}") else value
    if isinstance(value, list):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{unquote(str(k))} = {hcl_value(v)}" for k, v in value.items() if not str(k).startswith("__")]
        return "{" + ", ".join(items) + "}"
    return str(value)


def cell(text: str) -> str:
    return text.replace('\\"', '"').replace("|", "\\|").replace("\n", " ")


def module_docs(module: Module) -> str:
    lines = ["| input | type | default | description |", "| --- | --- | --- | --- |"]
    for name, body in module.variables.items():
        default = f"`{cell(hcl_value(body['default']))}`" if "default" in body else "**required**"
        lines.append(f"| `{name}` | `{cell(hcl_value(body.get('type')))}` | {default} | {cell(unquote(str(body.get('description', ''))))} |")
    lines += ["", "| output | description |", "| --- | --- |"]
    for name, body in module.outputs.items():
        lines.append(f"| `{name}` | {cell(unquote(str(body.get('description', ''))))} |")
    return "\n".join(lines)


def check_docs(root: Path, modules: dict[Path, Module], write: bool) -> None:
    """The tables between BEGIN_TF_DOCS/END_TF_DOCS markers match variables.tf/outputs.tf."""
    if not DOCS.is_file():
        problem(DOCS, "missing")
        return
    text = DOCS.read_text()

    def table(m: re.Match) -> str:
        module = modules.get((root / m.group(1)).resolve())
        if module is None:
            problem(DOCS, f"BEGIN_TF_DOCS {m.group(1)}: not a Terraform module directory")
            return m.group(0)
        return f"<!-- BEGIN_TF_DOCS {m.group(1)} -->\n{module_docs(module)}\n<!-- END_TF_DOCS {m.group(1)} -->"

    fresh = DOC_MARK.sub(table, text)
    documented = {(root / m.group(1)).resolve() for m in DOC_MARK.finditer(text)}
    for d in sorted(modules):
        if d not in documented:
            problem(DOCS, f"no BEGIN_TF_DOCS table for {d.relative_to(root)}")
    if fresh != text:
        if write:
            DOCS.write_text(fresh)
            print(f"rewrote the inputs/outputs tables of {DOCS}")
        else:
            problem(DOCS, "inputs/outputs tables are stale: run python scripts/ci/terraform_static.py --write-docs")


# --- secure by default ---------------------------------------------------------------------------

# a. trust for TCP in pg_hba. Files where it is allowed, and why.
TRUST_EXEMPT = {
    "scripts/lib.sh": "pg_init: throwaway clusters of the tests and the local stack, loopback only, "
    "no Unix socket; never installed on a host (packer/ does not ship it)",
}
TCP_HBA_TYPES = r"(?:host|hostssl|hostnossl|hostgssenc|hostnogssenc)"
TRUST_PATTERNS = [
    # A literal pg_hba line: TYPE DATABASE USER ADDRESS [MASK] trust
    (re.compile(r"(?<![\w-])" + TCP_HBA_TYPES + r"\s+\S+\s+\S+\s+\S+(?:\s+\S+)?\s+trust\b"), "a TCP pg_hba line with method trust"),
    # An auth-method variable set to trust (then printed into a host line).
    (re.compile(r"\b\w*(?:method|auth)\w*=[\"']?trust\b", re.I), "an authentication method variable set to trust"),
    # initdb writes host lines with the --auth / --auth-host method.
    (re.compile(r"--auth(?:-host)?[= ][\"']?trust\b"), "initdb --auth/--auth-host=trust (TCP rules with trust)"),
]


def trust_findings(text: str) -> list[str]:
    """Lines of a template or script that write trust for a TCP pg_hba rule."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for pattern, what in TRUST_PATTERNS:
            if pattern.search(line):
                found.append(f"line {n}: {what}: {line.strip()}")
                break
    return found


def pg_hba_files(root: Path) -> list[Path]:
    files = [p for p in find_files(root / "terraform", ".tftpl") + find_files(root / "terraform", ".sh")]
    files += find_files(root / "scripts", ".sh")
    if (root / "packer").is_dir():
        files += [p for p in sorted((root / "packer").rglob("*")) if p.is_file()]
    return sorted(set(files))


def check_no_trust(root: Path) -> None:
    for path in pg_hba_files(root):
        rel = path.relative_to(root).as_posix()
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        findings = trust_findings(text)
        if findings and rel in TRUST_EXEMPT:
            print(f"pg_hba trust: {rel} exempt ({TRUST_EXEMPT[rel]})")
            continue
        for f in findings:
            problem(rel, f"writes trust for TCP in pg_hba ({f}); use scram-sha-256 or cert over hostssl")


def resources_of(parsed: dict, rtype: str) -> dict[str, dict]:
    out = {}
    for item in parsed.get("resource", []):
        for t, named in item.items():
            if unquote(t) == rtype:
                for name, body in named.items():
                    out[unquote(name)] = body
    return out


def variable_default(parsed: dict, name: str) -> object:
    return blocks(parsed, "variable").get(name, {}).get("default")


# b. the public listener is TLS; TCP only behind enable_plain_listener.
def nlb_findings(main: dict, variables: dict) -> list[str]:
    found = []
    listeners = resources_of(main, "aws_lb_listener")
    public = {n: b for n, b in listeners.items() if str(b.get("port")) in ("${var.port}", "443")}
    if str(variable_default(variables, "port")) != "443":
        found.append('variable "port" (the public listener) must default to 443')
    if not public:
        found.append("no listener on the public port (var.port / 443)")
    for name, body in public.items():
        if unquote(str(body.get("protocol"))) != "TLS":
            found.append(f"aws_lb_listener.{name} on the public port is {unquote(str(body.get('protocol')))}, not TLS")
        for attr in ("certificate_arn", "ssl_policy"):
            if not str(body.get(attr, "")).strip('"'):
                found.append(f"aws_lb_listener.{name} on the public port has no {attr}")
    for name, body in listeners.items():
        if unquote(str(body.get("protocol"))) in ("TCP", "TCP_UDP", "UDP", "HTTP") and "var.enable_plain_listener" not in str(body.get("count", "")):
            found.append(f"aws_lb_listener.{name} is plain {unquote(str(body.get('protocol')))} without count gated on var.enable_plain_listener")
    return found


def check_nlb(root: Path, parsed: dict[Path, dict]) -> None:
    d = Path("terraform/modules/nlb")
    main, variables = parsed.get(d / "main.tf"), parsed.get(d / "variables.tf")
    if main is None or variables is None:
        problem(d, "main.tf or variables.tf missing or unparsable")
        return
    for f in nlb_findings(main, variables):
        problem(d / "main.tf", f)


# c. no host-role Allow of an action that destroys a backup.
BACKUP_DESTROYING = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention",
                     "s3:PutObjectLegalHold", "s3:BypassGovernanceRetention"]


def policy_statements(parsed: dict) -> list[dict]:
    """Every statement of every aws_iam_policy_document, dynamic ones included."""
    out = []
    for item in parsed.get("data", []):
        for t, named in item.items():
            if unquote(t) != "aws_iam_policy_document":
                continue
            for body in named.values():
                out += body.get("statement", [])
                for dyn in body.get("dynamic", []):
                    for label, d in dyn.items():
                        if unquote(label) == "statement":
                            for content in d.get("content", []):
                                out.append(content)
    return out


def granted_actions(statement: dict, local_values: dict) -> set[str]:
    text = str(statement.get("actions", ""))
    for name in re.findall(r"\blocal\.([A-Za-z_][A-Za-z0-9_]*)", text):
        text += " " + str(local_values.get(name, ""))
    return set(re.findall(r"[\"'\s\[]((?:s3:[A-Za-z*]+)|\*)[\"'\]\\]", " " + text + " "))


# The one place a host may add a delete marker: pgBackRest's repository (its expire
# applies the repository's retention). Under Object Lock that hides a version without
# destroying it; every other destroying action stays refused there too. The DR region
# has its own repository (own_pgbackrest_prefix), written after a takeover.
PGBACKREST_REPOSITORY = re.compile(
    r"^\$\{var\.backup_bucket_arn\}/\$\{local\.(?:own_)?pgbackrest_prefix\}/\*$")


def statement_resources(statement: dict) -> list[str]:
    raw = statement.get("resources", [])
    items = raw if isinstance(raw, list) else [raw]
    flat = []
    for item in items:
        flat += item if isinstance(item, list) else [item]
    return [unquote(str(r)) for r in flat]


def only_pgbackrest_repository(statement: dict) -> bool:
    resources = statement_resources(statement)
    return bool(resources) and all(PGBACKREST_REPOSITORY.match(r) for r in resources)


def host_role_findings(parsed: dict) -> list[str]:
    local_values: dict = {}
    for item in parsed.get("locals", []):
        local_values.update({k: v for k, v in item.items() if not k.startswith("__")})
    found = []
    for st in policy_statements(parsed):
        if unquote(str(st.get("effect", '"Allow"'))) == "Deny":
            continue
        for action in sorted(granted_actions(st, local_values)):
            hits = [a for a in BACKUP_DESTROYING if fnmatch.fnmatchcase(a.lower(), action.lower())]
            if hits == ["s3:DeleteObject"] and action == "s3:DeleteObject" and only_pgbackrest_repository(st):
                continue
            if hits:
                sid = unquote(str(st.get("sid", "?")))
                found.append(f"statement {sid} allows {action} ({', '.join(hits)}): hosts must never destroy a backup")
    return found


def host_role_authority_findings(parsed: dict) -> list[str]:
    """Which region writes is a person's decision: no host may write the promotion
    epoch (an explicit Deny, whatever a backup grant covers) or call EC2 (isolating a
    region is the takeover operator's)."""
    local_values: dict = {}
    for item in parsed.get("locals", []):
        local_values.update({k: v for k, v in item.items() if not k.startswith("__")})
    found = []
    denied_epoch = False
    for st in policy_statements(parsed):
        sid = unquote(str(st.get("sid", "?")))
        actions = granted_actions(st, local_values)
        if unquote(str(st.get("effect", '"Allow"'))) == "Deny":
            if sid == "NeverWriteThePromotionEpoch" and "s3:PutObject" in actions:
                denied_epoch = True
            continue
        text = " " + str(st.get("actions", "")) + " "
        for action in sorted(set(re.findall(r"[\"'\s\[](ec2:[A-Za-z*]+)[\"'\]\\]", text))):
            found.append(f"statement {sid} allows {action}: hosts must not call EC2 (isolating a region is the takeover operator's)")
    if not denied_epoch:
        found.append("no Deny of s3:PutObject on the promotion epoch (sid NeverWriteThePromotionEpoch): every host must be denied it")
    return found


def check_host_role(parsed: dict[Path, dict]) -> None:
    d = Path("terraform/modules/host_role")
    files = {p: v for p, v in parsed.items() if p.parent == d}
    if not files:
        problem(d, "no host role module")
    for path, doc in files.items():
        for f in host_role_findings(doc):
            problem(path, f)
    for path, doc in files.items():
        if "aws_iam_policy_document" in str(doc):
            for f in host_role_authority_findings(doc):
                problem(path, f)


# d. Object Lock with a default retention on every backup bucket.
def object_lock_findings(bucket_module: dict) -> list[str]:
    found = []
    buckets = resources_of(bucket_module, "aws_s3_bucket")
    locks = resources_of(bucket_module, "aws_s3_bucket_object_lock_configuration")
    if not buckets:
        found.append("no aws_s3_bucket")
    for name, body in buckets.items():
        if str(body.get("object_lock_enabled")) not in ("True", "true"):
            found.append(f"aws_s3_bucket.{name} has no object_lock_enabled = true")
        lock = [b for b in locks.values() if f"aws_s3_bucket.{name}." in str(b.get("bucket"))]
        if not lock:
            found.append(f"aws_s3_bucket.{name} has no aws_s3_bucket_object_lock_configuration")
        for b in lock:
            retention = [r for rule in b.get("rule", []) for r in rule.get("default_retention", [])]
            if not retention or not all("mode" in r and ("days" in r or "years" in r) for r in retention):
                found.append(f"the object lock configuration of aws_s3_bucket.{name} has no default retention (mode and days)")
    return found


def replication_findings(backup_module: dict) -> list[str]:
    found = []
    for name, body in resources_of(backup_module, "aws_s3_bucket_replication_configuration").items():
        for rule in body.get("rule", []):
            for dm in rule.get("delete_marker_replication", []):
                if unquote(str(dm.get("status"))) != "Disabled":
                    found.append(f"aws_s3_bucket_replication_configuration.{name} replicates delete markers")
    return found


def check_backup_buckets(parsed: dict[Path, dict]) -> None:
    d = Path("terraform/modules/backup_bucket")
    main = parsed.get(d / "main.tf")
    if main is None:
        problem(d, "main.tf missing or unparsable")
        return
    calls = {n: b for n, b in blocks(main, "module").items()}
    bucket_dirs = {(d / unquote(str(b.get("source")))).resolve() for b in calls.values()}
    if len(calls) < 2:
        problem(d, "expected a source and a replica bucket module")
    for bd in sorted(bucket_dirs):
        rel = Path(os.path.relpath(bd, Path.cwd()))
        bucket_main = parsed.get(rel / "main.tf")
        if bucket_main is None:
            problem(rel, "bucket module main.tf missing or unparsable")
            continue
        for f in object_lock_findings(bucket_main):
            problem(rel / "main.tf", f)
    for f in replication_findings(main):
        problem(d / "main.tf", f)


# e. the alarms that wake someone (terraform/alarms.tf), each notifying its region's topic.
# address: (namespace, metric_name, missing data must be breaching, why it exists)
ALARMS: dict[str, tuple[str, str, bool, str]] = {
    "backup_age": ("dob", "BackupAgeSeconds", True, "newest logical/physical backup older than 26 h"),
    "restore_drill_age": ("dob", "DrillAgeSeconds", True, "restore drill older than 26 h"),
    "restore_drill_failed": ("dob", "DrillFailed", False, "restore drill failed"),
    "pitr_drill_age": ("dob", "DrillAgeSeconds", True, "PITR drill older than 26 h"),
    "pitr_drill_failed": ("dob", "DrillFailed", False, "PITR drill failed"),
    "wal_archive_age": ("dob", "WalArchiveAgeSeconds", True, "WAL archive older than 5 min"),
    "dr_wal_archive_age": ("dob", "WalArchiveAgeSeconds", False, "after a takeover, DR's WAL archive older than 5 min"),
    "dr_physical_backup_age": ("dob", "BackupAgeSeconds", False, "after a takeover, DR's newest physical backup older than 26 h"),
    "primary_replication_lag_seconds": ("dob", "ReplicationLagSeconds", True, "replication lag, seconds"),
    "primary_replication_lag_bytes": ("dob", "ReplicationLagBytes", False, "replication lag, bytes"),
    "dr_replication_lag_seconds": ("dob", "ReplicationLagSeconds", True, "DR replication lag, seconds"),
    "dr_replication_lag_bytes": ("dob", "ReplicationLagBytes", False, "DR replication lag, bytes"),
    "route53_health_check": ("AWS/Route53", "HealthCheckStatus", False, "a Route53 health check failing"),
    "primary_instance_status": ("AWS/EC2", "StatusCheckFailed", False, "an instance status check failing"),
    "dr_instance_status": ("AWS/EC2", "StatusCheckFailed", False, "the DR instance status check failing"),
}
ALARM_TOPIC_SOURCE = "./modules/alarm_topic"
PUBLISHER = Path("scripts/publish-metrics.sh")


def hcl_ref(value: object) -> str:
    """An HCL expression as python-hcl2 gives it, without ${...} and quotes."""
    s = str(value).strip()
    if s.startswith("${") and s.endswith("}"):
        s = s[2:-1]
    return unquote(s)


def alarm_findings(root: list[dict], topic_module: dict, publisher: str,
                   required: dict[str, tuple[str, str, bool, str]]) -> list[str]:
    found = []
    local_values: dict = {}
    alarms: dict[str, dict] = {}
    topic_calls: dict[str, str] = {}  # module name -> provider alias it is given
    for parsed in root:
        for item in parsed.get("locals", []):
            local_values.update({k: v for k, v in item.items() if not k.startswith("__")})
        alarms.update(resources_of(parsed, "aws_cloudwatch_metric_alarm"))
        for call, body in blocks(parsed, "module").items():
            if unquote(str(body.get("source", ""))) == ALARM_TOPIC_SOURCE:
                providers = body.get("providers", {})
                topic_calls[call] = hcl_ref(providers.get("aws", "")) if isinstance(providers, dict) else ""
                if hcl_ref(body.get("email_endpoints", "")) != "var.alarm_email_endpoints":
                    found.append(f'module "{call}" does not subscribe var.alarm_email_endpoints')

    def topic_of(expr: object) -> str | None:
        """The alarm_topic module call an action expression names (through a local map)."""
        ref = hcl_ref(expr)
        m = re.fullmatch(r"local\.([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\"([^\"]+)\"\])?", ref)
        if m:
            value = local_values.get(m.group(1))
            key = m.group(2) or m.group(3)
            if isinstance(value, dict) and key is not None:
                value = value.get(key)
            ref = hcl_ref(value) if value is not None else ""
        m = re.fullmatch(r"module\.([A-Za-z_][A-Za-z0-9_]*)\.topic_arn", ref)
        return m.group(1) if m and m.group(1) in topic_calls else None

    for address, (namespace, metric, breaching, why) in required.items():
        body = alarms.get(address)
        where = f"aws_cloudwatch_metric_alarm.{address} ({why})"
        if body is None:
            found.append(f"{where} is missing")
            continue
        ns = hcl_ref(body.get("namespace", ""))
        if ns.startswith("local."):
            ns = hcl_ref(local_values.get(ns[len("local."):], ""))
        if ns != namespace or hcl_ref(body.get("metric_name", "")) != metric:
            found.append(f"{where} watches {ns}/{hcl_ref(body.get('metric_name', ''))}, expected {namespace}/{metric}")
        if breaching and hcl_ref(body.get("treat_missing_data", "")) != "breaching":
            found.append(f"{where}: a heartbeat; silence must alarm (treat_missing_data = \"breaching\")")
        provider = hcl_ref(body.get("provider", ""))
        for attr in ("alarm_actions", "ok_actions"):
            actions = body.get(attr)
            if not isinstance(actions, list) or not actions:
                found.append(f"{where} has no {attr}")
                continue
            for action in actions:
                call = topic_of(action)
                if call is None:
                    found.append(f"{where}: {attr} {hcl_ref(action)} is not an alarm topic ({ALARM_TOPIC_SOURCE})")
                elif topic_calls[call] != provider:
                    found.append(f"{where} ({provider}): {attr} names module.{call}, a topic of {topic_calls[call] or 'no provider'}")
        if namespace == "dob" and not re.search(r"\b" + re.escape(metric) + r"\b", publisher):
            found.append(f"{where}: {PUBLISHER} never publishes {metric}")

    topics = resources_of(topic_module, "aws_sns_topic")
    if not topics:
        found.append(f"{ALARM_TOPIC_SOURCE}: no aws_sns_topic")
    for name, body in topics.items():
        key = hcl_ref(body.get("kms_master_key_id", ""))
        if not key or key.startswith("alias/aws/"):
            found.append(f"{ALARM_TOPIC_SOURCE}: aws_sns_topic.{name} is not encrypted with a customer-managed key")
    subscriptions = resources_of(topic_module, "aws_sns_topic_subscription")
    if not any("var.email_endpoints" in str(b.get("for_each", "")) and hcl_ref(b.get("protocol", "")) == "email"
               for b in subscriptions.values()):
        found.append(f"{ALARM_TOPIC_SOURCE}: no email subscription for each of var.email_endpoints")
    return found


def check_alarms(root: Path, parsed: dict[Path, dict]) -> None:
    root_files = [v for p, v in parsed.items() if p.parent == Path("terraform") and p.suffix == ".tf"]
    topic_module = parsed.get(Path("terraform/modules/alarm_topic/main.tf"))
    if topic_module is None:
        problem("terraform/modules/alarm_topic", "main.tf missing or unparsable")
        return
    publisher = (root / PUBLISHER).read_text() if (root / PUBLISHER).is_file() else ""
    for f in alarm_findings(root_files, topic_module, publisher, ALARMS):
        problem("terraform/alarms.tf", f)


def self_test() -> None:
    """Each rule must catch its violation and accept its compliant form."""

    def parse(text: str) -> dict:
        import io
        return hcl2.load(io.StringIO(text))

    def expect(rule: str, findings: list[str], bad: bool) -> None:
        if bad and not findings:
            problem("self-test", f"rule {rule} missed a violation")
        if not bad and findings:
            problem("self-test", f"rule {rule} flagged a compliant case: {findings}")

    expect("a", trust_findings("printf 'hostssl all all %s trust\\n'\n"), True)
    expect("a", trust_findings("host    replication  all   10.0.0.0/8   trust\n"), True)
    expect("a", trust_findings('local method=trust\nprintf "host dob dob %s %s" "$c" "$method"\n'), True)
    expect("a", trust_findings("initdb -D x --auth=trust\n"), True)
    expect("a", trust_findings("local   all  postgres  peer\nhostssl all all 10.0.0.0/8 scram-sha-256\n"
                               "# host all all 0.0.0.0/0 trust is never written\n"), False)

    good_vars = parse('variable "port" {\n  type = number\n  default = 443\n}\n')
    tls = ('resource "aws_lb_listener" "tls" {\n  port = var.port\n  protocol = "TLS"\n'
           '  certificate_arn = var.acm_certificate_arn\n  ssl_policy = var.ssl_policy\n}\n')
    gated = 'resource "aws_lb_listener" "plain" {\n  count = var.enable_plain_listener ? 1 : 0\n  port = 8080\n  protocol = "TCP"\n}\n'
    expect("b", nlb_findings(parse(tls + gated), good_vars), False)
    expect("b", nlb_findings(parse(tls.replace('"TLS"', '"TCP"')), good_vars), True)
    expect("b", nlb_findings(parse(tls.replace("  ssl_policy = var.ssl_policy\n", "")), good_vars), True)
    expect("b", nlb_findings(parse(tls + gated.replace("var.enable_plain_listener ? 1 : 0", "1")), good_vars), True)
    expect("b", nlb_findings(parse(tls), parse('variable "port" {\n  type = number\n  default = 8080\n}\n')), True)

    policy = ('locals {\n  w = ["s3:PutObject", %s]\n}\n'
              'data "aws_iam_policy_document" "this" {\n'
              '  statement {\n    sid = "Backups"\n    actions = local.w\n    resources = ["b/*"]\n  }\n'
              '  statement {\n    sid = "No"\n    effect = "Deny"\n    actions = ["s3:DeleteObject"]\n    resources = ["b/*"]\n  }\n}\n')
    expect("c", host_role_findings(parse(policy % '"s3:AbortMultipartUpload"')), False)
    expect("c", host_role_findings(parse(policy % '"s3:DeleteObject"')), True)
    expect("c", host_role_findings(parse(policy % '"s3:Delete*"')), True)
    expect("c", host_role_findings(parse(policy % '"s3:*"')), True)
    dyn = ('data "aws_iam_policy_document" "this" {\n  dynamic "statement" {\n    for_each = [1]\n'
           '    content {\n      actions = var.x ? ["s3:GetObject", "s3:DeleteObjectVersion"] : []\n'
           '      resources = ["b/*"]\n    }\n  }\n}\n')
    expect("c", host_role_findings(parse(dyn)), True)
    repo = ('data "aws_iam_policy_document" "this" {\n  statement {\n    sid = "Repo"\n'
            '    actions = ["s3:PutObject", %s]\n    resources = [%s]\n  }\n}\n')
    in_repo = '"${var.backup_bucket_arn}/${local.pgbackrest_prefix}/*"'
    expect("c", host_role_findings(parse(repo % ('"s3:DeleteObject"', in_repo))), False)
    expect("c", host_role_findings(parse(repo % ('"s3:DeleteObject"', in_repo + ', "${var.backup_bucket_arn}/*"'))), True)
    expect("c", host_role_findings(parse(repo % ('"s3:DeleteObject"', '"${var.backup_bucket_arn}/${local.prefix}/*"'))), True)
    expect("c", host_role_findings(parse(repo % ('"s3:DeleteObjectVersion"', in_repo))), True)
    expect("c", host_role_findings(parse(repo % ('"s3:Delete*"', in_repo))), True)
    own_repo = '"${var.backup_bucket_arn}/${local.own_pgbackrest_prefix}/*"'
    expect("c", host_role_findings(parse(repo % ('"s3:DeleteObject"', own_repo))), False)
    expect("c", host_role_findings(parse(repo % ('"s3:DeleteObjectVersion"', own_repo))), True)
    epoch_deny = ('  dynamic "statement" {\n    for_each = length(var.e) > 0 ? [1] : []\n    content {\n'
                  '      sid = "NeverWriteThePromotionEpoch"\n      effect = "Deny"\n'
                  '      actions = ["s3:PutObject"]\n      resources = var.e\n    }\n  }\n')
    authority = ('data "aws_iam_policy_document" "this" {\n  statement {\n    sid = "Fence"\n'
                 '    actions = [%s]\n    resources = ["*"]\n  }\n%s}\n')
    expect("c", host_role_authority_findings(parse(authority % ('"s3:GetObject"', epoch_deny))), False)
    expect("c", host_role_authority_findings(parse(authority % ('"s3:GetObject"', ""))), True)
    expect("c", host_role_authority_findings(parse(authority % ('"ec2:StopInstances"', epoch_deny))), True)
    expect("c", host_role_authority_findings(parse(authority % ('"ec2messages:GetMessages"', epoch_deny))), False)

    bucket = ('resource "aws_s3_bucket" "this" {\n  bucket = "b"\n%s}\n'
              'resource "aws_s3_bucket_object_lock_configuration" "this" {\n  bucket = aws_s3_bucket.this.id\n'
              '  rule {\n    default_retention {\n      mode = "GOVERNANCE"\n      days = 35\n    }\n  }\n}\n')
    expect("d", object_lock_findings(parse(bucket % "  object_lock_enabled = true\n")), False)
    expect("d", object_lock_findings(parse(bucket % "")), True)
    expect("d", object_lock_findings(parse('resource "aws_s3_bucket" "this" {\n  object_lock_enabled = true\n}\n')), True)
    repl = ('resource "aws_s3_bucket_replication_configuration" "this" {\n  rule {\n'
            '    delete_marker_replication {\n      status = "%s"\n    }\n  }\n}\n')
    expect("d", replication_findings(parse(repl % "Disabled")), False)
    expect("d", replication_findings(parse(repl % "Enabled")), True)

    required = {"age": ("dob", "AgeSeconds", True, "age"), "status": ("AWS/EC2", "StatusCheckFailed", False, "status")}
    topics = ('locals {\n  ns = "dob"\n  topics = { a = module.topic_a.topic_arn }\n}\n'
              'module "topic_a" {\n  source = "./modules/alarm_topic"\n  providers = { aws = aws.a }\n'
              '  email_endpoints = var.alarm_email_endpoints\n}\n'
              'module "topic_b" {\n  source = "./modules/alarm_topic"\n  providers = { aws = aws.b }\n'
              '  email_endpoints = var.alarm_email_endpoints\n}\n')
    age = ('resource "aws_cloudwatch_metric_alarm" "age" {\n  provider = aws.a\n  namespace = local.ns\n'
           '  metric_name = "AgeSeconds"\n  treat_missing_data = "breaching"\n'
           '  alarm_actions = [local.topics.a]\n  ok_actions = [module.topic_a.topic_arn]\n}\n')
    status = ('resource "aws_cloudwatch_metric_alarm" "status" {\n  provider = aws.b\n  namespace = "AWS/EC2"\n'
              '  metric_name = "StatusCheckFailed"\n  alarm_actions = [module.topic_b.topic_arn]\n'
              '  ok_actions = [module.topic_b.topic_arn]\n}\n')
    topic_mod = parse('resource "aws_sns_topic" "this" {\n  kms_master_key_id = module.key.key_arn\n}\n'
                      'resource "aws_sns_topic_subscription" "email" {\n  for_each = toset(var.email_endpoints)\n'
                      '  protocol = "email"\n}\n')
    pub = "put AgeSeconds"

    def alarms(text: str, topic: dict = topic_mod, publisher: str = pub) -> list[str]:
        return alarm_findings([parse(topics + text)], topic, publisher, required)

    expect("e", alarms(age + status), False)
    expect("e", alarms(age), True)  # an alarm missing
    expect("e", alarms(age.replace("  ok_actions = [module.topic_a.topic_arn]\n", "") + status), True)
    expect("e", alarms(age.replace("[local.topics.a]", '["arn:aws:sns:eu-west-1:1:other"]') + status), True)
    expect("e", alarms(age.replace("[local.topics.a]", "[module.topic_b.topic_arn]") + status), True)  # wrong region
    expect("e", alarms(age.replace('"breaching"', '"notBreaching"') + status), True)
    expect("e", alarms(age.replace('"AgeSeconds"', '"Other"') + status), True)
    expect("e", alarms(age + status, publisher="put nothing"), True)
    expect("e", alarms(age + status, topic=parse('resource "aws_sns_topic" "this" {\n  name = "t"\n}\n')), True)


# --- rendering the user data ------------------------------------------------------------------

def render(template: str, values: dict[str, object]) -> str:
    """The subset of Terraform's template language the user data uses; anything else fails."""

    def directive(m: re.Match) -> str:
        raise ValueError(f"unsupported template directive: {m.group(0)}")

    def conditional(m: re.Match) -> str:
        name, body = m.group(1), m.group(2)
        return body if values[name] != "" else ""

    # %{ if NAME != "" ~}BODY%{ endif ~}  (the ~ strips the newline after the directive)
    out = re.sub(r'%\{ if ([a-z_]+) != "" ~\}\n(.*?)%\{ endif ~\}\n', conditional, template, flags=re.S)
    out = re.sub(r"%\{[^}]*\}", directive, out)

    def interpolate(m: re.Match) -> str:
        expr = m.group(1).strip()
        call = re.fullmatch(r'join\("([^"]*)",\s*([a-z_][a-z0-9_]*)\)', expr)
        if call:
            return call.group(1).join(values[call.group(2)])  # type: ignore[arg-type]
        if re.fullmatch(r"[a-z_][a-z0-9_]*", expr):
            return str(values[expr])
        raise ValueError(f"unsupported interpolation: ${{{expr}}}")

    out = re.sub(r"(?<!\$)\$\{([^}]*)\}", interpolate, out)
    return out.replace("$${", "${").replace("%%{", "%{")


def render_user_data(root: Path, render_dir: Path) -> int:
    template_path = root / "terraform/modules/db_host/templates/user-data.sh.tftpl"
    template = template_path.read_text()
    common = {
        "region": "eu-west-1",
        "volume_id": "vol-0123456789abcdef0",
        "volume_id_compact": "vol0123456789abcdef0",
        "xen_device_name": "/dev/xvdf",
        "listen": "0.0.0.0:8080",
        "admin_port": 8090,
        "tls_ca_parameter": "/dob/tls/ca.pem",
        "tls_cert_parameter": "/dob/tls/hosts/primary/cert.pem",
        "tls_key_parameter": "/dob/tls/hosts/primary/key.pem",
        "timezone": "UTC",
        "drain_seconds": 25,
        "s3_prefix": "dob/",
        "replication_password_file": "/etc/dob/replication-password",
        "replication_password_parameter": "/dob/replication-password",
        "s3_kms_key_id": "arn:aws:kms:eu-west-1:123456789012:key/0000",
        "data_units": ["postgresql@15-main.service", "dob-role-setup.service"],
        "host_address": "",
        "etcd_initial_cluster": "",
        "etcd_name": "",
        "standby_of": "",
        "secrets_parameter_prefix": "",
        "patroni_url": "",
        "fence_buckets": "",
        "fence_home_region": "",
        "dr_receipt_slot": "",
        "peer_hosts": "",
        "peer_region": "",
        "peer_fence_group": "",
        "peer_ec2_endpoint": "",
    }
    etcd = "a=http://10.10.0.10:2380,b=http://10.10.1.10:2380,witness=http://10.10.2.10:2380"
    fence = dict(fence_buckets="b@eu-west-1,b-eu-central-1@eu-central-1", fence_home_region="eu-west-1")
    patroni_units = ["dob-role-setup.service", "etcd.service", "patroni.service", "dob-api.socket"]
    patroni_data_units = ["patroni.service", "dob-role-setup.service"]
    url = "postgresql://dob@10.10.0.10:5432,10.10.1.10:5432/dob?target_session_attrs=read-write&sslmode=verify-full"
    roles = {
        "patroni": dict(database_url=url, s3_bucket="b", s3_region="eu-west-1", primary_host="",
                        replica_cidrs="10.10.1.10/32,10.20.0.10/32", host_address="10.10.0.10",
                        etcd_initial_cluster=etcd, etcd_name="a", secrets_parameter_prefix="/dob/patroni/",
                        patroni_url="http://10.10.0.10:8008", data_units=patroni_data_units,
                        units=patroni_units + ["dob-backup.timer", "dob-metrics.timer"],
                        dr_receipt_slot="dob_dr", peer_hosts="10.20.0.10", **fence),
        "witness": dict(database_url=url, s3_bucket="b", s3_region="eu-west-1", primary_host="",
                        replica_cidrs="", host_address="10.10.2.10", etcd_initial_cluster=etcd,
                        etcd_name="witness", units=["dob-role-setup.service", "etcd.service"]),
        "dr-standby": dict(database_url="postgresql://dob@127.0.0.1:5432/dob?sslmode=verify-full", s3_bucket="b-eu-central-1",
                           s3_region="eu-central-1", primary_host="", replica_cidrs="10.10.0.10/32,10.10.1.10/32",
                           host_address="10.20.0.10", etcd_initial_cluster="dr=http://10.20.0.10:2380",
                           etcd_name="dr", standby_of="10.10.0.10,10.10.1.10", peer_hosts="10.10.0.10,10.10.1.10",
                           peer_region="eu-west-1", peer_fence_group="dob-eu-west-1-db",
                           peer_ec2_endpoint="https://vpce-0-x.ec2.eu-west-1.vpce.amazonaws.com",
                           secrets_parameter_prefix="/dob/patroni/", patroni_url="http://10.20.0.10:8008",
                           data_units=patroni_data_units, units=patroni_units + ["dob-restore-drill.timer", "dob-metrics.timer"],
                           **fence),
        "primary": dict(database_url=url, s3_bucket="b", s3_region="eu-west-1", primary_host="",
                        replica_cidrs="10.10.1.10/32,10.20.0.10/32",
                        units=["dob-role-setup.service", "postgresql@15-main.service", "dob-api.socket", "dob-backup.timer", "dob-metrics.timer"]),
        "replica": dict(database_url=url, s3_bucket="b", s3_region="eu-west-1", primary_host="10.10.0.10",
                        replica_cidrs="10.10.0.10/32,10.20.0.10/32",
                        units=["dob-role-setup.service", "postgresql@15-main.service", "dob-api.socket", "dob-backup.timer", "dob-metrics.timer"]),
        "dr-replica": dict(database_url="postgresql://dob@127.0.0.1:5432/dob?sslmode=verify-full", s3_bucket="b-eu-central-1",
                           s3_region="eu-central-1", primary_host="10.10.1.10",
                           replica_cidrs="10.10.0.10/32,10.10.1.10/32",
                           units=["dob-role-setup.service", "postgresql@15-main.service", "dob-api.socket", "dob-restore-drill.timer", "dob-metrics.timer"]),
    }
    required = ["DOB_ROLE", "DOB_DATABASE_URL", "DOB_LISTEN", "DOB_S3_BUCKET", "DOB_S3_PREFIX", "DOB_S3_REGION",
                "DOB_S3_SSE", "DOB_S3_KMS_KEY_ID", "DOB_BACKUP_KEEP", "DOB_TIMEZONE",
                "DOB_REPLICATION_PASSWORD_FILE", "DOB_ADMIN_LISTEN", "DOB_DATABASE_CA_FILE",
                "DOB_TLS_CA_PARAMETER", "DOB_TLS_CERT_PARAMETER", "DOB_TLS_KEY_PARAMETER",
                "DOB_REPLICATION_SSLMODE"]
    # What the secure defaults require of every role (the host-side contract of role-setup.sh).
    fixed = {"DOB_BACKUP_KEEP": "0", "DOB_DATABASE_CA_FILE": "/etc/dob/tls/ca.pem",
             "DOB_REPLICATION_SSLMODE": "verify-full", "DOB_ADMIN_LISTEN": "0.0.0.0:8090"}
    # What role-setup.sh needs for each role.
    required_by_role = {
        "patroni": ["DOB_HOST_ADDRESS", "DOB_ETCD_INITIAL_CLUSTER", "DOB_ETCD_NAME", "DOB_SECRETS_PARAMETER_PREFIX",
                    "DOB_DATABASE_PASSWORD_FILE", "DOB_PATRONI_URL", "DOB_REPLICA_CIDRS"],
        "witness": ["DOB_HOST_ADDRESS", "DOB_ETCD_INITIAL_CLUSTER", "DOB_ETCD_NAME"],
        "dr-standby": ["DOB_HOST_ADDRESS", "DOB_ETCD_INITIAL_CLUSTER", "DOB_STANDBY_OF",
                       "DOB_SECRETS_PARAMETER_PREFIX", "DOB_DATABASE_PASSWORD_FILE", "DOB_REPLICA_CIDRS"],
        "primary": ["DOB_REPLICA_CIDRS"],
        "replica": ["DOB_REPLICA_CIDRS"],
        "dr-replica": ["DOB_REPLICA_CIDRS"],
    }
    count = 0
    for role, values in roles.items():
        try:
            script = render(template, {**common, **values, "role": role})
        except (ValueError, KeyError) as e:
            problem(template_path, f"cannot render for role {role}: {e}")
            continue
        env = re.search(r"<<'DOB_ENV'\n(.*?)\nDOB_ENV\n", script, flags=re.S)
        if not env:
            problem(template_path, "no DOB_ENV here-document (the env file) found")
            continue
        lines = [l for l in env.group(1).splitlines() if l and not l.startswith("#")]
        keys = [l.split("=", 1)[0] for l in lines]
        for line in lines:
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S+", line):
                problem(template_path, f"role {role}: env line is not KEY=VALUE without spaces: {line!r}")
        for key in required + required_by_role[role]:
            if key not in keys:
                problem(template_path, f"role {role}: the env file lacks {key}")
        env_values = dict(l.split("=", 1) for l in lines if "=" in l)
        for key, want in fixed.items():
            if key in env_values and env_values[key] != want:
                problem(template_path, f"role {role}: {key}={env_values[key]}, expected {want}")
        if not re.search(r"[?&]sslmode=verify-full(&|$)", env_values.get("DOB_DATABASE_URL", "")):
            problem(template_path, f"role {role}: DOB_DATABASE_URL does not ask for sslmode=verify-full")
        if len(keys) != len(set(keys)):
            problem(template_path, f"role {role}: duplicate keys in the env file")
        if ("DOB_PRIMARY_HOST" in keys) != (role in ("replica", "dr-replica")):
            problem(template_path, f"role {role}: DOB_PRIMARY_HOST must be set on replicas only")
        if f"systemctl enable --now {' '.join(values['units'])}" not in script:  # type: ignore[arg-type]
            problem(template_path, f"role {role}: the units are not enabled")
        (render_dir / f"user-data-{role}.sh").write_text(script)
        count += 1
    return count


def main() -> int:
    args = sys.argv[1:]
    write_docs = "--write-docs" in args
    args = [a for a in args if a != "--write-docs"]
    root = Path(args[0] if args else ".").resolve()
    render_dir = Path(args[1]) if len(args) > 1 else Path(os.environ.get("TMPDIR", "/tmp"), "dob-user-data")
    os.chdir(root)
    tf_files = find_files(Path("."), ".tf")
    pkr_files = find_files(Path("."), ".pkr.hcl")
    # Example settings a user copies (terraform.tfvars.example, backend.hcl.example).
    examples = find_files(Path("terraform"), ".example")
    parsed: dict[Path, dict] = {}
    for path in tf_files + pkr_files + examples:
        try:
            with path.open() as f:
                parsed[path] = hcl2.load(f)
        except Exception as e:  # noqa: BLE001 - any parse failure is the finding
            problem(path, f"does not parse: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    print(f"parsed {len(tf_files)} .tf, {len(pkr_files)} .pkr.hcl and {len(examples)} example settings files")

    by_dir: dict[Path, dict[Path, dict]] = {}
    for path in tf_files:
        if path in parsed and not path.is_relative_to(FIXTURES):
            by_dir.setdefault(path.parent.resolve(), {})[path] = parsed[path]
    modules = {d: Module(d, files) for d, files in by_dir.items()}
    for module in modules.values():
        check_module(module, modules)
    print(f"checked {len(modules)} Terraform module directories")
    check_docs(root, modules, write_docs)

    self_test()
    check_no_trust(root)
    check_nlb(root, parsed)
    check_host_role(parsed)
    check_backup_buckets(parsed)
    check_alarms(root, parsed)
    print("checked the secure defaults: pg_hba trust, the TLS listener, host-role S3 rights and authority (no epoch, no EC2), Object Lock, "
          f"the {len(ALARMS)} alarms and their topics (rules self-tested)")

    render_dir.mkdir(parents=True, exist_ok=True)
    if (root / "terraform/modules/db_host/templates/user-data.sh.tftpl").is_file():
        print(f"rendered the user data for {render_user_data(root, render_dir)} roles into {render_dir}")

    for p in problems:
        print(f"  PROBLEM {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
