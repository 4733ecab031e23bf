#!/usr/bin/env python3
"""Checks the Terragrunt live layout (terraform/live) against the modules (terraform/modules).

Terragrunt cannot be built on our machines, so this stands in for `terragrunt validate-inputs` and more. For every
terraform/live/**/terragrunt.hcl it reads the unit, the files it includes (root.hcl) and the env.hcl/region.hcl
it reads through `read_terragrunt_config(find_in_parent_folders(...))`, resolves `terraform.source` to a module
folder, reads that module's variables, outputs and versions, and reports one line per problem:

- an input that is not a variable of the module;
- a required variable (no default) that no input gives (inputs of included files count);
- a dependency (or `dependencies.paths`) whose config_path is not a unit, a `dependency.x.outputs.y` whose
  dependency is not declared or whose module has no output y, mock_outputs naming outputs the module lacks;
- a `local.*` reference that env.hcl/region.hcl do not define, a `*_path` input that does not exist;
- a version not pinned: a provider in a module's required_providers without an exact version, a module
  without required_version, a helm_release whose chart version is not an exact version (literal, or the
  variable it names: given by the unit, or its default), a `*_version` input that is not exact, a `*digest`
  input that is not sha256:<64 hex> or a `*digest` variable without such a validation, and root.hcl's
  `providers_by_unit` disagreeing with the providers the module requires.

Only simple values are evaluated: literals, lists and objects of them, `local.env.X`/`local.region.X`
references and string templates of those, get_terragrunt_dir(), find_in_parent_folders("f") and
read_terragrunt_config(find_in_parent_folders("f")).locals. A `dependency.x.outputs.y` counts as given; any other
function call is taken as given but not checked.

    check_inputs.py [--root DIR]      # DIR: the terraform folder (default: this file's folder)
    check_inputs.py --self-test       # breaks copies on purpose and checks each break is reported

Exit codes: 0 all fine (a summary is printed), 1 problems (one line each), 2 usage or a missing dependency.
Needs python-hcl2 (pinned 8.1.4 in scripts/install-pytools.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

try:
    import hcl2
except ImportError:  # pragma: no cover - depends on the environment
    print("check_inputs: python-hcl2 is not installed (pip install python-hcl2==8.1.4)", file=sys.stderr)
    sys.exit(2)

SEMVER = re.compile(r"^=?\s*v?[0-9]+\.[0-9]+\.[0-9]+$")
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
DIGEST_RULE = "sha256:[a-f0-9]{64}"


class Unknown:
    """A value the checker does not evaluate (a function call): taken as given, never compared."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"<{self.text}>"


@dataclass(frozen=True)
class DepRef:
    """`dependency.NAME.outputs.KEY`: given at apply time by another unit."""

    dep: str
    output: str


class EvalError(Exception):
    """An expression refers to something that does not exist (reported as a problem)."""


# ---- python-hcl2 (8.x) output -------------------------------------------------------------------------------
# Literals keep their quotes ("\"x\""), expressions come wrapped as "${...}", block labels are quoted keys.


def unquote_label(label: str) -> str:
    return label[1:-1] if len(label) >= 2 and label[0] == '"' and label[-1] == '"' else label


def blocks(doc: dict, kind: str) -> list[dict]:
    """The bodies of `kind` blocks without labels."""
    return [b for b in doc.get(kind, []) if isinstance(b, dict)]


def labelled(doc: dict, kind: str) -> dict[str, dict]:
    """`kind "label" { ... }` blocks as label -> body."""
    found: dict[str, dict] = {}
    for entry in doc.get(kind, []):
        for label, body in entry.items():
            if not label.startswith("__"):
                found[unquote_label(label)] = body
    return found


def attrs(body: dict) -> dict:
    """A body's attributes and nested blocks, without python-hcl2's markers (__is_block__, __comments__)."""
    return {k: v for k, v in body.items() if not (k.startswith("__") and k.endswith("__"))}


def split_template(text: str) -> list[tuple[str, str]]:
    """Splits a template's inside into ("lit", text) and ("expr", text) parts."""
    parts: list[tuple[str, str]] = []
    i, start = 0, 0
    while i < len(text):
        if text.startswith("$${", i):
            i += 3
            continue
        if text.startswith("${", i):
            if i > start:
                parts.append(("lit", text[start:i]))
            depth, j, in_str = 1, i + 2, False
            while j < len(text) and depth:
                ch = text[j]
                if in_str:
                    if ch == "\\":
                        j += 1
                    elif ch == '"':
                        in_str = False
                elif ch == '"':
                    in_str = True
                elif ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                j += 1
            parts.append(("expr", text[i + 2 : j - 1].strip()))
            i = start = j
            continue
        i += 1
    if start < len(text):
        parts.append(("lit", text[start:]))
    return parts


def is_whole_expr(text: str) -> bool:
    parts = split_template(text)
    return len(parts) == 1 and parts[0][0] == "expr" and text.startswith("${") and text.endswith("}")


# ---- evaluation ---------------------------------------------------------------------------------------------


def find_in_parent_folders(start: Path, name: str) -> Path:
    for folder in [start.parent, *start.parent.parents]:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise EvalError(f'find_in_parent_folders("{name}") finds no {name} above {start}')


_parsed: dict[Path, dict] = {}


def parse(path: Path) -> dict:
    if path not in _parsed:
        with open(path, encoding="utf-8") as f:
            _parsed[path] = hcl2.load(f)
    return _parsed[path]


@dataclass
class Scope:
    """Where an expression is evaluated: the unit's folder and the locals of the file it is written in."""

    unit_dir: Path
    file: Path
    local_exprs: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    resolving: set = field(default_factory=set)

    def local(self, name: str):
        if name in self.cache:
            return self.cache[name]
        if name not in self.local_exprs:
            raise EvalError(f"local.{name} is not defined in {self.file.name}")
        if name in self.resolving:
            raise EvalError(f"local.{name} refers to itself")
        self.resolving.add(name)
        value = evaluate(self.local_exprs[name], self)
        self.resolving.discard(name)
        self.cache[name] = value
        return value


def file_scope(unit_dir: Path, file: Path) -> Scope:
    doc = parse(file)
    local_exprs: dict = {}
    for body in blocks(doc, "locals"):
        local_exprs.update(attrs(body))
    return Scope(unit_dir=unit_dir, file=file, local_exprs=local_exprs)


_READ_CONFIG = re.compile(r'^read_terragrunt_config\(\s*find_in_parent_folders\(\s*"([^"]+)"\s*\)\s*\)\.locals$')
_FIND = re.compile(r'^find_in_parent_folders\(\s*"([^"]+)"\s*\)$')
_TRAVERSAL = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*|\[\"[^\"]*\"\]|\[[0-9]+\])*$")


def traversal_parts(text: str) -> list[str]:
    return [p.strip('"') for p in re.findall(r'[A-Za-z_][A-Za-z0-9_-]*|\["[^"]*"\]|\[[0-9]+\]', text)]


def get_path(value, parts: list[str], what: str):
    for part in parts:
        if isinstance(value, (Unknown, DepRef)):
            return value
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.strip("[]").isdigit():
            value = value[int(part.strip("[]"))]
        else:
            raise EvalError(f"{what}: no attribute {part}")
    return value


def evaluate_expr(text: str, scope: Scope):
    text = text.strip()
    if text in ("null",):
        return None
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text):
        return float(text) if "." in text else int(text)
    if text.startswith('"') and text.endswith('"') and '"' not in text[1:-1].replace('\\"', ""):
        return evaluate_template(text[1:-1], scope)
    if text == "get_terragrunt_dir()":
        return str(scope.unit_dir)
    if text == "get_parent_terragrunt_dir()":
        return str(scope.file.parent)
    match = _FIND.match(text)
    if match:
        return str(find_in_parent_folders(scope.unit_dir / "terragrunt.hcl", match.group(1)))
    match = _READ_CONFIG.match(text)
    if match:
        other = find_in_parent_folders(scope.unit_dir / "terragrunt.hcl", match.group(1))
        inner = file_scope(scope.unit_dir, other)
        return {name: inner.local(name) for name in inner.local_exprs}
    if _TRAVERSAL.match(text):
        parts = traversal_parts(text)
        if parts[0] == "local" and len(parts) >= 2:
            return get_path(scope.local(parts[1]), parts[2:], f"local.{'.'.join(parts[1:])}")
        if parts[0] == "dependency" and len(parts) >= 4 and parts[2] == "outputs":
            return DepRef(parts[1], parts[3])
        if parts[0] == "dependency":
            raise EvalError(f"{text}: a dependency's value is dependency.NAME.outputs.KEY")
    return Unknown(text)


def evaluate_template(inner: str, scope: Scope):
    parts = split_template(inner)
    if len(parts) == 1 and parts[0][0] == "expr":
        return evaluate_expr(parts[0][1], scope)
    out: list[str] = []
    unknown = False
    for kind, text in parts:
        if kind == "lit":
            out.append(text.replace('\\"', '"').replace("$${", "${"))
            continue
        value = evaluate_expr(text, scope)
        if isinstance(value, (Unknown, DepRef)) or isinstance(value, (dict, list)):
            unknown = True
        else:
            out.append("" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
    return Unknown(inner) if unknown else "".join(out)


def evaluate(value, scope: Scope):
    if isinstance(value, dict):
        return {unquote_label(k): evaluate(v, scope) for k, v in attrs(value).items()}
    if isinstance(value, list):
        return [evaluate(v, scope) for v in value]
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            return evaluate_template(value[1:-1], scope)
        if is_whole_expr(value):
            return evaluate_expr(value[2:-1], scope)
        if value.startswith("<<"):
            return Unknown("heredoc")
        return Unknown(value)
    return value


def dep_refs(value) -> list[DepRef]:
    if isinstance(value, DepRef):
        return [value]
    if isinstance(value, dict):
        return [r for v in value.values() for r in dep_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in dep_refs(v)]
    return []


# ---- modules ------------------------------------------------------------------------------------------------


@dataclass
class Module:
    path: Path
    variables: dict[str, dict]
    outputs: set[str]
    providers: dict[str, dict]
    required_version: object
    helm_releases: dict[str, dict]


_modules: dict[Path, Module] = {}


def load_module(path: Path) -> Module:
    path = path.resolve()
    if path in _modules:
        return _modules[path]
    variables: dict[str, dict] = {}
    outputs: set[str] = set()
    providers: dict[str, dict] = {}
    required_version = None
    helm_releases: dict[str, dict] = {}
    for tf in sorted(path.glob("*.tf")):
        doc = parse(tf)
        variables.update({k: attrs(v) for k, v in labelled(doc, "variable").items()})
        outputs.update(labelled(doc, "output"))
        for body in blocks(doc, "terraform"):
            if "required_version" in body:
                required_version = body["required_version"]
            for req in body.get("required_providers", []):
                providers.update({unquote_label(k): v for k, v in attrs(req).items()})
        for entry in doc.get("resource", []):
            for rtype, named in entry.items():
                if rtype == '"helm_release"':
                    helm_releases.update({unquote_label(k): attrs(v) for k, v in attrs(named).items()})
    module = Module(path, variables, outputs, providers, required_version, helm_releases)
    _modules[path] = module
    return module


def literal(value):
    """A module file's literal (string without its quotes), or None for an expression."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"' and "${" not in value:
            return value[1:-1]
        return None
    return value


# ---- units --------------------------------------------------------------------------------------------------


class Checker:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.live = self.root / "live"
        self.problems: list[str] = []
        self.modules_used: set[Path] = set()
        self.module_checked: set[Path] = set()

    def rel(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def problem(self, where: Path, text: str) -> None:
        self.problems.append(f"{self.rel(where)}: {text}")

    def units(self) -> list[Path]:
        return sorted(p.parent for p in self.live.rglob("terragrunt.hcl") if ".terragrunt-cache" not in p.parts)

    def unit_module(self, unit_dir: Path) -> Path | None:
        doc = parse(unit_dir / "terragrunt.hcl")
        scope = file_scope(unit_dir, unit_dir / "terragrunt.hcl")
        sources = [b["source"] for b in blocks(doc, "terraform") if "source" in b]
        if not sources:
            self.problem(unit_dir, "terraform { source = ... } is missing")
            return None
        try:
            source = evaluate(sources[0], scope)
        except EvalError as e:
            self.problem(unit_dir, f"terraform.source: {e}")
            return None
        if not isinstance(source, str):
            self.problem(unit_dir, f"terraform.source is not evaluated here ({source!r})")
            return None
        if "::" in source or source.startswith(("git@", "http://", "https://")):
            if "ref=" not in source:
                self.problem(unit_dir, f"terraform.source {source} is remote and not pinned with ?ref=")
            return None
        path = Path(source.replace("//", "/"))
        path = path if path.is_absolute() else unit_dir / path
        path = Path(os.path.normpath(path))
        if not (path / "variables.tf").is_file():
            self.problem(unit_dir, f"terraform.source {self.rel(path)} is not a module folder with variables.tf")
            return None
        return path

    def check_unit(self, unit_dir: Path) -> None:
        file = unit_dir / "terragrunt.hcl"
        doc = parse(file)
        scope = file_scope(unit_dir, file)
        module_path = self.unit_module(unit_dir)

        # Inputs: those of included files first, the unit's own over them (Terragrunt's shallow merge).
        inputs: dict = {}
        included_roots: list[Path] = []
        for name, body in labelled(doc, "include").items():
            try:
                path = evaluate(body.get("path"), scope)
            except EvalError as e:
                self.problem(unit_dir, f'include "{name}": {e}')
                continue
            if not isinstance(path, str) or not Path(path).is_file():
                self.problem(unit_dir, f'include "{name}": {path!r} is not a file')
                continue
            included = Path(path)
            included_roots.append(included)
            inc_scope = file_scope(unit_dir, included)
            for key, value in attrs(parse(included).get("inputs", {})).items():
                inputs[key] = (value, inc_scope)
        for key, value in attrs(doc.get("inputs", {})).items():
            inputs[key] = (value, scope)

        values: dict = {}
        for key, (value, where) in inputs.items():
            try:
                values[key] = evaluate(value, where)
            except EvalError as e:
                self.problem(unit_dir, f"input {key}: {e}")
                values[key] = Unknown("error")

        # Dependencies.
        deps: dict[str, Path] = {}
        for name, body in labelled(doc, "dependency").items():
            try:
                config_path = evaluate(body.get("config_path"), scope)
            except EvalError as e:
                self.problem(unit_dir, f'dependency "{name}": {e}')
                continue
            if not isinstance(config_path, str):
                self.problem(unit_dir, f'dependency "{name}": config_path is not evaluated here')
                continue
            dep_dir = Path(os.path.normpath(unit_dir / config_path))
            if not (dep_dir / "terragrunt.hcl").is_file():
                self.problem(unit_dir, f'dependency "{name}": config_path {config_path} does not exist (no terragrunt.hcl in {self.rel(dep_dir)})')
                continue
            deps[name] = dep_dir
            dep_module = self.unit_module(dep_dir)
            if dep_module is None:
                continue
            mock = body.get("mock_outputs")
            if mock is None:
                self.problem(unit_dir, f'dependency "{name}": no mock_outputs (plan before the first apply needs them)')
            elif isinstance(mock, dict):
                for key in attrs(mock):
                    if key not in load_module(dep_module).outputs:
                        self.problem(unit_dir, f'dependency "{name}": mock_outputs.{key} is not an output of {self.rel(dep_module)}')
        for body in blocks(doc, "dependencies"):
            paths = evaluate(body.get("paths", []), scope)
            for p in paths if isinstance(paths, list) else []:
                if isinstance(p, str) and not (Path(os.path.normpath(unit_dir / p)) / "terragrunt.hcl").is_file():
                    self.problem(unit_dir, f"dependencies.paths: {p} does not exist")
        for key, value in values.items():
            for ref in dep_refs(value):
                if ref.dep not in deps:
                    if ref.dep not in labelled(doc, "dependency"):
                        self.problem(unit_dir, f"input {key}: dependency.{ref.dep} is not declared")
                    continue
                dep_module = self.unit_module(deps[ref.dep])
                if dep_module and ref.output not in load_module(dep_module).outputs:
                    self.problem(unit_dir, f"input {key}: dependency.{ref.dep}.outputs.{ref.output} is not an output of {self.rel(dep_module)}")

        if module_path is None:
            return
        module = load_module(module_path)
        self.modules_used.add(module.path)
        mod = self.rel(module.path)

        for key in values:
            if key not in module.variables:
                self.problem(unit_dir, f'input "{key}" is not a variable of {mod}')
        for name, var in module.variables.items():
            if "default" not in var and name not in values:
                self.problem(unit_dir, f"required variable {name} of {mod} is not given by the inputs")

        # Pins in the unit's values.
        for key, value in values.items():
            if key.endswith("digest"):
                if not (isinstance(value, str) and DIGEST.match(value)):
                    self.problem(unit_dir, f"input {key} = {value!r} is not a pinned digest sha256:<64 hex>")
            if key.endswith("_version"):
                if not (isinstance(value, str) and SEMVER.match(value)):
                    self.problem(unit_dir, f"input {key} = {value!r} is not an exact version")
            if key.endswith("_path") and isinstance(value, str) and not Path(value).exists():
                self.problem(unit_dir, f"input {key} = {value} does not exist")
        for name, release in module.helm_releases.items():
            version = release.get("version")
            text = version[2:-1].strip() if isinstance(version, str) and is_whole_expr(version) else None
            if version is None:
                self.problem(unit_dir, f'helm_release "{name}" in {mod} has no version')
            elif text and text.startswith("var."):
                var = text[4:]
                effective = values.get(var, literal(module.variables.get(var, {}).get("default")))
                if not (isinstance(effective, str) and SEMVER.match(effective)):
                    self.problem(unit_dir, f'helm_release "{name}" in {mod}: chart version var.{var} = {effective!r} is not an exact version')
            elif not (isinstance(literal(version), str) and SEMVER.match(literal(version))):
                self.problem(unit_dir, f'helm_release "{name}" in {mod}: chart version {version!r} is not an exact version')

        # root.hcl's providers_by_unit against the module's required_providers.
        for included in included_roots:
            inc_scope = file_scope(unit_dir, included)
            if "providers_by_unit" not in inc_scope.local_exprs:
                continue
            try:
                by_unit = inc_scope.local("providers_by_unit")
            except EvalError as e:
                self.problem(included, str(e))
                continue
            listed = by_unit.get(unit_dir.name) if isinstance(by_unit, dict) else None
            configurable = inc_scope.local("provider_blocks") if "provider_blocks" in inc_scope.local_exprs else {}
            required = set(module.providers)
            if listed is None:
                self.problem(unit_dir, f"{included.name} providers_by_unit has no entry {unit_dir.name}")
                continue
            # A generated block for a provider the module does not pin would pull in an unpinned provider;
            # a provider the module requires and root.hcl can configure must get its block.
            for name in sorted(set(listed) - required):
                self.problem(unit_dir, f"{included.name} generates a {name} provider block but {mod} does not pin {name}")
            for name in sorted((required & set(configurable)) - set(listed)):
                self.problem(unit_dir, f"{mod} requires {name} but {included.name} generates no {name} provider block for {unit_dir.name}")

    def check_module(self, path: Path) -> None:
        module = load_module(path)
        mod = self.rel(path)
        if module.required_version is None:
            self.problem(path, "no required_version in a terraform block")
        for name, req in module.providers.items():
            version = literal(req.get("version")) if isinstance(req, dict) else None
            if not (isinstance(version, str) and SEMVER.match(version)):
                self.problem(path, f"provider {name} is not pinned to an exact version ({version!r})")
        for name, var in module.variables.items():
            if "description" not in var or "type" not in var:
                self.problem(path, f"variable {name} lacks a description or a type")
            default = literal(var.get("default"))
            if name.endswith("_version") and default is not None and not (isinstance(default, str) and SEMVER.match(default)):
                self.problem(path, f"variable {name}: default {default!r} is not an exact version")
            if name.endswith("digest"):
                rules = json.dumps(var.get("validation", []))
                if DIGEST_RULE not in rules.replace("\\\\", "\\"):
                    self.problem(path, f"variable {name} has no validation requiring sha256:<64 hex>")
        for tf in ("versions.tf", "variables.tf", "main.tf", "outputs.tf"):
            if not (path / tf).is_file():
                self.problem(path, f"{tf} is missing ({mod})")

    def run(self) -> int:
        units = self.units()
        if not units:
            self.problems.append(f"{self.rel(self.live)}: no terragrunt.hcl found")
        for unit in units:
            try:
                self.check_unit(unit)
            except EvalError as e:
                self.problem(unit, str(e))
        modules = sorted({p for p in (self.root / "modules").glob("*") if p.is_dir()} | self.modules_used)
        for module in modules:
            self.check_module(module)
        for line in self.problems:
            print(line)
        if self.problems:
            print(f"check_inputs: {len(self.problems)} problem(s)", file=sys.stderr)
            return 1
        envs = {u.relative_to(self.live).parts[0] for u in units}
        regions = {u.relative_to(self.live).parts[:2] for u in units}
        print(
            f"check_inputs: OK: {len(units)} units in {len(envs)} environments and {len(regions)} regions "
            f"against {len(modules)} modules (inputs, required variables, dependencies, pins)"
        )
        return 0


# ---- self-test ----------------------------------------------------------------------------------------------

# (file under the terraform folder, text to find, replacement, what the report must say)
BREAKS = [
    ("live/staging/eu-west/dagctl/terragrunt.hcl", "inputs = {\n", 'inputs = {\n  bogus_input = "x"\n',
     'input "bogus_input" is not a variable'),
    ("live/root.hcl", "inputs = {}", "inputs = { bogus_everywhere = 1 }",
     'input "bogus_everywhere" is not a variable'),
    ("live/staging/eu-west/dagctl/terragrunt.hcl", re.compile(r"^\s*image_digest\s*=.*\n", re.M), "",
     "required variable image_digest"),
    ("live/production/us-east/secrets/terragrunt.hcl", 'config_path = "../postgres"', 'config_path = "../postgrez"',
     "config_path ../postgrez does not exist"),
    ("live/staging/us-east/secrets/terragrunt.hcl", "outputs.database_url_secret_key", "outputs.database_url_key",
     "dependency.postgres.outputs.database_url_key is not an output"),
    ("modules/dagctl/versions.tf", 'version = "3.1.2"', 'version = ">= 3.1.2"', "provider helm is not pinned"),
    ("live/production/env.hcl", re.compile(r'image_digest\s*=\s*"[^"]*"'), 'image_digest = "latest"',
     "input image_digest = 'latest' is not a pinned digest"),
    ("live/staging/env.hcl", re.compile(r'chaos_mesh_chart_version\s*=\s*"[^"]*"'), 'chaos_mesh_chart_version = "~> 2.8"',
     "input chart_version = '~> 2.8' is not an exact version"),
    ("modules/cnpg-operator/variables.tf", 'default     = "0.29.0"', 'default     = ">= 0.29.0"',
     "variable chart_version: default '>= 0.29.0' is not an exact version"),
    ("live/staging/eu-west/postgres/terragrunt.hcl", "local.region.storage_class", "local.region.storage_klass",
     "no attribute storage_klass"),
]


def self_test(root: Path) -> int:
    repo = root.resolve().parent
    failures = 0
    with tempfile.TemporaryDirectory(prefix="check-inputs-") as tmp:
        for number, (rel, find, replace, expect) in enumerate([(None, None, None, None), *BREAKS]):
            copy = Path(tmp) / f"case{number}"
            shutil.copytree(root, copy / "terraform", ignore=shutil.ignore_patterns(".terragrunt-cache", ".terraform"))
            chart = repo / "deploy" / "helm" / "dagctl"
            if chart.is_dir():
                shutil.copytree(chart, copy / "deploy" / "helm" / "dagctl")
            if rel is not None:
                target = copy / "terraform" / rel
                text = target.read_text(encoding="utf-8")
                changed = find.sub(replace, text, count=1) if isinstance(find, re.Pattern) else text.replace(find, replace, 1)
                if changed == text:
                    print(f"self-test: case {number}: could not apply the break to {rel}")
                    failures += 1
                    continue
                target.write_text(changed, encoding="utf-8")
            _parsed.clear()
            _modules.clear()
            checker = Checker(copy / "terraform")
            with open(os.devnull, "w") as devnull:
                stdout, stderr = sys.stdout, sys.stderr
                sys.stdout = sys.stderr = devnull
                try:
                    code = checker.run()
                finally:
                    sys.stdout, sys.stderr = stdout, stderr
            if rel is None:
                ok = code == 0
                what = "the unbroken copy passes"
            else:
                ok = code == 1 and any(expect in p for p in checker.problems)
                what = f"{rel}: reports '{expect}'"
            print(f"self-test: {'ok  ' if ok else 'FAIL'} {what}")
            if not ok:
                failures += 1
                for line in checker.problems:
                    print(f"    got: {line}")
    total = 1 + len(BREAKS)
    print(f"self-test: {total - failures} passed, {failures} failed")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent, help="the terraform folder")
    parser.add_argument("--self-test", action="store_true", help="break copies on purpose and check each is reported")
    args = parser.parse_args()
    if not (args.root / "live").is_dir():
        print(f"check_inputs: {args.root} has no live/ folder", file=sys.stderr)
        return 2
    if args.self_test:
        return self_test(args.root)
    return Checker(args.root).run()


if __name__ == "__main__":
    sys.exit(main())
