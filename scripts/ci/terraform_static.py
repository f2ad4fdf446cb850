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
   `bash -n` and shellcheck by the caller), and the env file it writes is checked.

Exit 0 when everything holds, 1 with one line per problem otherwise.
"""

from __future__ import annotations

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
        "timezone": "UTC",
        "drain_seconds": 25,
        "s3_prefix": "dob/",
        "backup_keep": 14,
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
    }
    etcd = "a=http://10.10.0.10:2380,b=http://10.10.1.10:2380,witness=http://10.10.2.10:2380"
    fence = dict(fence_buckets="b@eu-west-1,b-eu-central-1@eu-central-1", fence_home_region="eu-west-1")
    patroni_units = ["dob-role-setup.service", "etcd.service", "patroni.service", "dob-api.socket"]
    patroni_data_units = ["patroni.service", "dob-role-setup.service"]
    url = "postgresql://dob@10.10.0.10:5432,10.10.1.10:5432/dob?target_session_attrs=read-write"
    roles = {
        "patroni": dict(database_url=url, s3_bucket="b", s3_region="eu-west-1", primary_host="",
                        replica_cidrs="10.10.1.10/32,10.20.0.10/32", host_address="10.10.0.10",
                        etcd_initial_cluster=etcd, etcd_name="a", secrets_parameter_prefix="/dob/patroni/",
                        patroni_url="http://10.10.0.10:8008", data_units=patroni_data_units,
                        units=patroni_units + ["dob-backup.timer"], **fence),
        "witness": dict(database_url=url, s3_bucket="b", s3_region="eu-west-1", primary_host="",
                        replica_cidrs="", host_address="10.10.2.10", etcd_initial_cluster=etcd,
                        etcd_name="witness", units=["dob-role-setup.service", "etcd.service"]),
        "dr-standby": dict(database_url="postgresql://dob@127.0.0.1:5432/dob", s3_bucket="b-eu-central-1",
                           s3_region="eu-central-1", primary_host="", replica_cidrs="10.10.0.10/32,10.10.1.10/32",
                           host_address="10.20.0.10", etcd_initial_cluster="dr=http://10.20.0.10:2380",
                           etcd_name="dr", standby_of="10.10.0.10,10.10.1.10",
                           secrets_parameter_prefix="/dob/patroni/", patroni_url="http://10.20.0.10:8008",
                           data_units=patroni_data_units, units=patroni_units + ["dob-restore-drill.timer"],
                           **fence),
        "primary": dict(database_url=url, s3_bucket="b", s3_region="eu-west-1", primary_host="",
                        replica_cidrs="10.10.1.10/32,10.20.0.10/32",
                        units=["dob-role-setup.service", "postgresql@15-main.service", "dob-api.socket", "dob-backup.timer"]),
        "replica": dict(database_url=url, s3_bucket="b", s3_region="eu-west-1", primary_host="10.10.0.10",
                        replica_cidrs="10.10.0.10/32,10.20.0.10/32",
                        units=["dob-role-setup.service", "postgresql@15-main.service", "dob-api.socket", "dob-backup.timer"]),
        "dr-replica": dict(database_url="postgresql://dob@127.0.0.1:5432/dob", s3_bucket="b-eu-central-1",
                           s3_region="eu-central-1", primary_host="10.10.1.10",
                           replica_cidrs="10.10.0.10/32,10.10.1.10/32",
                           units=["dob-role-setup.service", "postgresql@15-main.service", "dob-api.socket", "dob-restore-drill.timer"]),
    }
    required = ["DOB_ROLE", "DOB_DATABASE_URL", "DOB_LISTEN", "DOB_S3_BUCKET", "DOB_S3_PREFIX", "DOB_S3_REGION",
                "DOB_S3_SSE", "DOB_S3_KMS_KEY_ID", "DOB_BACKUP_KEEP", "DOB_TIMEZONE",
                "DOB_REPLICATION_PASSWORD_FILE"]
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

    render_dir.mkdir(parents=True, exist_ok=True)
    if (root / "terraform/modules/db_host/templates/user-data.sh.tftpl").is_file():
        print(f"rendered the user data for {render_user_data(root, render_dir)} roles into {render_dir}")

    for p in problems:
        print(f"  PROBLEM {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
