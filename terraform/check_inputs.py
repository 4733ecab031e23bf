#!/usr/bin/env python3
"""Checks the Terragrunt live layout (terraform/live) against the modules (terraform/modules).

Terragrunt cannot be built on our machines, so this stands in for `terragrunt validate-inputs` and more. For every
unit (a terraform/live/**/terragrunt.hcl outside live/_envcommon) it builds the unit's configuration as Terragrunt
would: it follows the unit's `include` blocks (root.hcl, and live/_envcommon/<unit>.hcl, which holds what a unit
kind shares across envs and regions), evaluates every file in the unit's context (get_terragrunt_dir() is the
unit's folder, find_in_parent_folders() searches above it, so an included file reads the unit's env.hcl and
region.hcl), and merges them: included files in order, then the unit's own file over them (inputs key by key,
dependency blocks by name, the last terraform.source; `merge_strategy = "deep"` merges maps and lists too,
`no_merge` merges nothing). It then resolves `terraform.source` to a module folder, reads that module's
variables, outputs and versions, and reports one line per problem (naming the file that set the value when it is
not the unit's own):

- an input that is not a variable of the module;
- a required variable (no default) that no input gives (inputs of included files count);
- a dependency (or `dependencies.paths`) whose config_path is not a unit, a `dependency.x.outputs.y` whose
  dependency is not declared or whose module has no output y, mock_outputs naming outputs the module lacks;
- a `local.*` or `include.*.locals.*` reference that does not exist (also what env.hcl/region.hcl lack), a
  `*_path` input that does not exist;
- an include whose path is not a file, an included file with an include of its own (Terragrunt includes one
  level only), a terragrunt.hcl under live/_envcommon (run --all would take it for a unit), a live/_envcommon
  file that no unit includes;
- a version not pinned: a provider in a module's required_providers without an exact version, a module
  without required_version, a helm_release whose chart version is not an exact version (literal, or the
  variable it names: given by the unit, or its default), a `*_version` input that is not exact, a `*digest`
  input that is not sha256:<64 hex> or a `*digest` variable without such a validation, and root.hcl's
  `providers_by_unit` disagreeing with the providers the module requires.

Only simple values are evaluated: literals, lists and objects of them, `local.X`, `include.LABEL.locals.X`
(with expose = true) and string templates of those, get_terragrunt_dir(), get_parent_terragrunt_dir(),
find_in_parent_folders("f"[, fallback]), dirname(), basename() and read_terragrunt_config(path).locals. A
`dependency.x.outputs.y` counts as given; any other function call is taken as given but not checked.

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
    """`kind "label" { ... }` blocks as label -> body, in the file's order."""
    found: dict[str, dict] = {}
    for entry in doc.get(kind, []):
        for label, body in entry.items():
            if not label.startswith("__"):
                found[unquote_label(label)] = body
    return found


def attrs(body: dict) -> dict:
    """A body's attributes and nested blocks, without python-hcl2's markers (__is_block__, __comments__)."""
    return {k: v for k, v in body.items() if not (k.startswith("__") and k.endswith("__"))}


# ---- expression text ----------------------------------------------------------------------------------------
# Strings may hold templates that hold strings again (`"${dirname(find_in_parent_folders("root.hcl"))}/x"`):
# these scanners skip a whole string or bracketed group, whatever it nests.

_CLOSE = {"(": ")", "[": "]", "{": "}"}


def skip_string(text: str, i: int) -> int:
    """text[i] is '"': the index just after the string's closing quote (len(text) + 1 if it has none)."""
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
        elif text[j] == '"':
            return j + 1
        elif text.startswith("$${", j):
            j += 3
        elif text.startswith("${", j):
            j = skip_group(text, j + 1)
        else:
            j += 1
    return len(text) + 1


def skip_group(text: str, i: int) -> int:
    """text[i] opens a ( [ or {: the index just after its match (len(text) + 1 if it has none)."""
    stack = [_CLOSE[text[i]]]
    j = i + 1
    while j < len(text) and stack:
        ch = text[j]
        if ch == '"':
            j = skip_string(text, j)
            continue
        if ch in _CLOSE:
            stack.append(_CLOSE[ch])
        elif ch == stack[-1]:
            stack.pop()
        j += 1
    return j if not stack else len(text) + 1


def split_top(text: str, sep: str = ",") -> list[str]:
    """Splits at `sep` outside strings and brackets (a call's arguments)."""
    parts, start, j = [], 0, 0
    while j < len(text):
        ch = text[j]
        if ch == '"':
            j = skip_string(text, j)
            continue
        if ch in _CLOSE:
            j = skip_group(text, j)
            continue
        if ch == sep:
            parts.append(text[start:j])
            start = j + 1
        j += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


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
            end = min(skip_group(text, i + 1), len(text))
            parts.append(("expr", text[i + 2 : end - 1].strip()))
            i = start = end
            continue
        i += 1
    if start < len(text):
        parts.append(("lit", text[start:]))
    return parts


def is_whole_expr(text: str) -> bool:
    parts = split_template(text)
    return len(parts) == 1 and parts[0][0] == "expr" and text.startswith("${") and text.endswith("}")


# ---- evaluation ---------------------------------------------------------------------------------------------


def find_in_parent_folders(unit_dir: Path, name: str) -> Path | None:
    """Terragrunt's search: the folders above the unit's, nearest first (a relative name may hold folders)."""
    for folder in unit_dir.parents:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


_parsed: dict[Path, dict] = {}
_scopes: dict[tuple, "Scope"] = {}


def parse(path: Path) -> dict:
    path = Path(os.path.normpath(path))
    if path not in _parsed:
        with open(path, encoding="utf-8") as f:
            _parsed[path] = hcl2.load(f)
    return _parsed[path]


@dataclass
class Scope:
    """Where an expression is evaluated: the unit's folder (Terragrunt evaluates included files in the unit's
    context), the file it is written in with that file's locals, and the unit's includes (label -> (file,
    exposed)) for `include.LABEL.locals.X` in the unit's own file."""

    unit_dir: Path
    file: Path
    local_exprs: dict = field(default_factory=dict)
    includes: dict = field(default_factory=dict)
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
        try:
            value = evaluate(self.local_exprs[name], self)
        finally:
            self.resolving.discard(name)
        self.cache[name] = value
        return value

    def all_locals(self) -> dict:
        return {name: self.local(name) for name in self.local_exprs}


def file_scope(unit_dir: Path, file: Path, includes: dict | None = None) -> Scope:
    """The scope of `file` as the unit in `unit_dir` sees it (cached: locals are evaluated once per unit)."""
    file = Path(os.path.normpath(file))
    key = (unit_dir, file, tuple(sorted((includes or {}).items())))
    if key not in _scopes:
        local_exprs: dict = {}
        for body in blocks(parse(file), "locals"):
            local_exprs.update(attrs(body))
        _scopes[key] = Scope(unit_dir=unit_dir, file=file, local_exprs=local_exprs, includes=dict(includes or {}))
    return _scopes[key]


_TRAVERSAL = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*|\[\"[^\"]*\"\]|\[[0-9]+\])*$")
_ATTRS = re.compile(r"^(\.[A-Za-z_][A-Za-z0-9_-]*|\[\"[^\"]*\"\]|\[[0-9]+\])*$")
_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\(")


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


def as_path(value, scope: Scope) -> Path:
    """A path argument: relative ones are taken from the unit's folder, as Terragrunt does."""
    path = Path(value)
    return Path(os.path.normpath(path if path.is_absolute() else scope.unit_dir / path))


def call(name: str, args: list[str], scope: Scope, text: str):
    """The functions this checker evaluates; any other call is Unknown (taken as given)."""

    def string_arg(index: int) -> str | None:
        value = evaluate_expr(args[index], scope)
        return value if isinstance(value, str) else None

    if name == "get_terragrunt_dir" and not args:
        return str(scope.unit_dir)
    if name == "get_parent_terragrunt_dir" and not args:
        return str(scope.file.parent)
    if name == "find_in_parent_folders" and len(args) <= 2:
        wanted = string_arg(0) if args else "terragrunt.hcl"
        if wanted is None:
            return Unknown(text)
        found = find_in_parent_folders(scope.unit_dir, wanted)
        if found is not None:
            return str(found)
        if len(args) == 2:
            return evaluate_expr(args[1], scope)
        raise EvalError(f'find_in_parent_folders("{wanted}") finds no {wanted} above {scope.unit_dir}')
    if name in ("dirname", "basename") and len(args) == 1:
        value = string_arg(0)
        if value is None:
            return Unknown(text)
        return os.path.dirname(value) if name == "dirname" else os.path.basename(value)
    if name == "read_terragrunt_config" and len(args) == 1:
        value = string_arg(0)
        if value is None:
            return Unknown(text)
        other = as_path(value, scope)
        if not other.is_file():
            raise EvalError(f"read_terragrunt_config: {other} is not a file")
        return {"locals": file_scope(scope.unit_dir, other).all_locals(), "inputs": Unknown(f"{other.name} inputs")}
    return Unknown(text)


def include_locals(label: str, scope: Scope) -> dict:
    if label not in scope.includes:
        raise EvalError(f"include.{label}: no include block {label} in {scope.file.name}")
    path, exposed = scope.includes[label]
    if not exposed:
        raise EvalError(f"include.{label} is not exposed (expose = true)")
    return file_scope(scope.unit_dir, Path(path)).all_locals()


def evaluate_expr(text: str, scope: Scope):
    text = text.strip()
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text):
        return float(text) if "." in text else int(text)
    if text.startswith('"') and skip_string(text, 0) == len(text):
        return evaluate_template(text[1:-1], scope)
    if text.startswith("(") and skip_group(text, 0) == len(text):
        return evaluate_expr(text[1:-1], scope)
    match = _CALL.match(text)
    if match:
        end = skip_group(text, match.end() - 1)
        rest = text[end:] if end <= len(text) else None
        if rest is not None and _ATTRS.match(rest.strip()):
            value = call(match.group(1), split_top(text[match.end() : end - 1]), scope, text)
            return get_path(value, traversal_parts(rest), text)
        return Unknown(text)
    if _TRAVERSAL.match(text):
        parts = traversal_parts(text)
        if parts[0] == "local" and len(parts) >= 2:
            return get_path(scope.local(parts[1]), parts[2:], f"local.{'.'.join(parts[1:])}")
        if parts[0] == "include" and len(parts) >= 3:
            if parts[2] != "locals":
                return Unknown(text)
            return get_path(include_locals(parts[1], scope), parts[3:], text)
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


def deep_merge(parent, child):
    """Terragrunt's deep merge: maps recursively, lists concatenated, anything else the child's."""
    if isinstance(parent, dict) and isinstance(child, dict):
        out = dict(parent)
        for key, value in child.items():
            out[key] = deep_merge(parent[key], value) if key in parent else value
        return out
    if isinstance(parent, list) and isinstance(child, list):
        return parent + child
    return child


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

COMMON = "_envcommon"


@dataclass
class Dependency:
    """A dependency block after the merge: its config_path (expression and scope) and mock_outputs keys."""

    config_path: tuple | None
    mock_keys: set | None
    origin: Path


@dataclass
class UnitConfig:
    """A unit's configuration as Terragrunt merges it: included files in order, the unit's own file over them.
    Each value remembers the file that set it (`origin`), for the report."""

    unit_dir: Path
    file: Path
    included: list = field(default_factory=list)  # included files (merged or not)
    source: tuple | None = None  # (expression, scope)
    inputs: dict = field(default_factory=dict)  # key -> (value, origin)
    dependencies: dict = field(default_factory=dict)  # name -> Dependency
    dependency_paths: list = field(default_factory=list)  # (expression, scope)
    problems: list = field(default_factory=list)  # (origin, text)


def file_part(doc: dict, scope: Scope, problems: list) -> dict:
    """One file's share of a unit's configuration, evaluated in the unit's context."""
    part: dict = {"source": None, "inputs": {}, "dependencies": {}, "paths": []}
    for body in blocks(doc, "terraform"):
        if "source" in body:
            part["source"] = (body["source"], scope)
    inputs = doc.get("inputs", {})
    if not isinstance(inputs, dict):
        part["inputs"] = None  # an expression (merge(...) etc.): not evaluated
        inputs = {}
    for key, value in attrs(inputs).items():
        try:
            part["inputs"][key] = evaluate(value, scope)
        except EvalError as e:
            problems.append((scope.file, f"input {key}: {e}"))
            part["inputs"][key] = Unknown("error")
    for name, body in labelled(doc, "dependency").items():
        mock = body.get("mock_outputs")
        keys = set(attrs(mock)) if isinstance(mock, dict) else (None if mock is None else {"*"})
        config_path = (body["config_path"], scope) if "config_path" in body else None
        part["dependencies"][name] = Dependency(config_path, keys, scope.file)
    for body in blocks(doc, "dependencies"):
        part["paths"].append((body.get("paths", []), scope))
    return part


def merge_part(config: UnitConfig, part: dict, origin: Path, deep: bool) -> None:
    """Terragrunt's merge of one file into what came before it (`part` wins)."""
    if part["source"] is not None:
        config.source = part["source"]
    if part["inputs"] is None:
        config.inputs["*"] = (Unknown("inputs expression"), origin)
    else:
        for key, value in part["inputs"].items():
            if deep and key in config.inputs:
                value = deep_merge(config.inputs[key][0], value)
            config.inputs[key] = (value, origin)
    for name, dep in part["dependencies"].items():
        old = config.dependencies.get(name)
        if deep and old is not None:
            keys = None
            if old.mock_keys is not None or dep.mock_keys is not None:
                keys = (old.mock_keys or set()) | (dep.mock_keys or set())
            dep = Dependency(dep.config_path or old.config_path, keys, dep.origin)
        config.dependencies[name] = dep
    config.dependency_paths.extend(part["paths"])


class Checker:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.live = self.root / "live"
        self.problems: list[str] = []
        self.modules_used: set[Path] = set()
        self.configs: dict[Path, UnitConfig] = {}
        self.included_commons: set[Path] = set()

    def rel(self, path: Path) -> str:
        try:
            return str(Path(os.path.normpath(path.resolve())).relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def problem(self, where: Path, text: str) -> None:
        line = f"{self.rel(where)}: {text}"
        if line not in self.problems:
            self.problems.append(line)

    def units(self) -> list[Path]:
        """Every folder with a terragrunt.hcl, but live/_envcommon (shared files, not units)."""
        return sorted(
            p.parent
            for p in self.live.rglob("terragrunt.hcl")
            if ".terragrunt-cache" not in p.parts and COMMON not in p.relative_to(self.live).parts
        )

    def from_where(self, config: UnitConfig, origin: Path) -> str:
        """' (set in FILE)' when a value comes from a file other than the unit's own."""
        return "" if origin == config.file else f" (set in {self.rel(origin)})"

    # -- the merged configuration ----------------------------------------------------------------------------

    def load(self, unit_dir: Path) -> UnitConfig:
        unit_dir = Path(os.path.normpath(unit_dir))
        if unit_dir in self.configs:
            return self.configs[unit_dir]
        file = unit_dir / "terragrunt.hcl"
        config = UnitConfig(unit_dir=unit_dir, file=file)
        self.configs[unit_dir] = config
        doc = parse(file)

        # The includes, evaluated in the unit's own file (which has no include references to itself yet).
        bare = file_scope(unit_dir, file)
        includes: dict[str, tuple[Path, bool]] = {}
        strategies: dict[str, str] = {}
        for label, body in labelled(doc, "include").items():
            try:
                path = evaluate(body.get("path"), bare)
                exposed = evaluate(body.get("expose", "${false}"), bare)
                strategy = evaluate(body.get("merge_strategy", '"shallow"'), bare)
            except EvalError as e:
                config.problems.append((file, f'include "{label}": {e}'))
                continue
            if not isinstance(path, str) or not as_path(path, bare).is_file():
                config.problems.append((file, f'include "{label}": {path!r} is not a file'))
                continue
            if strategy not in ("shallow", "deep", "no_merge"):
                config.problems.append((file, f'include "{label}": merge_strategy {strategy!r} is not shallow, deep or no_merge'))
                strategy = "shallow"
            included = as_path(path, bare)
            if labelled(parse(included), "include") or blocks(parse(included), "include"):
                config.problems.append(
                    (file, f'include "{label}": {self.rel(included)} has an include block of its own '
                     "(Terragrunt includes one level only)")
                )
            includes[label] = (included, exposed is True)
            strategies[label] = strategy
            config.included.append(included)
            if included.is_relative_to(self.live / COMMON):
                self.included_commons.add(included)
        deep = "deep" in strategies.values()
        for label, (included, _) in includes.items():
            if strategies[label] == "no_merge":
                continue
            scope = file_scope(unit_dir, included)
            merge_part(config, file_part(parse(included), scope, config.problems), included, strategies[label] == "deep")
        scope = file_scope(unit_dir, file, includes)
        merge_part(config, file_part(doc, scope, config.problems), file, deep)
        return config

    def unit_module(self, unit_dir: Path, report: bool) -> Path | None:
        """The module folder of a unit's merged terraform.source (problems reported when `report`)."""
        config = self.load(unit_dir)

        def bad(text: str) -> None:
            if report:
                self.problem(unit_dir, text)

        if config.source is None:
            bad("terraform { source = ... } is missing (in the unit and in the files it includes)")
            return None
        expr, scope = config.source
        where = self.from_where(config, scope.file)
        try:
            source = evaluate(expr, scope)
        except EvalError as e:
            bad(f"terraform.source{where}: {e}")
            return None
        if not isinstance(source, str):
            bad(f"terraform.source{where} is not evaluated here ({source!r})")
            return None
        if "::" in source or source.startswith(("git@", "http://", "https://")):
            if "ref=" not in source:
                bad(f"terraform.source {source}{where} is remote and not pinned with ?ref=")
            return None
        path = as_path(source.replace("//", "/"), scope)
        if not (path / "variables.tf").is_file():
            bad(f"terraform.source {self.rel(path)}{where} is not a module folder with variables.tf")
            return None
        return path

    # -- the checks ------------------------------------------------------------------------------------------

    def check_unit(self, unit_dir: Path) -> None:
        config = self.load(unit_dir)
        for origin, text in config.problems:
            self.problem(unit_dir, text + self.from_where(config, origin))
        module_path = self.unit_module(unit_dir, report=True)
        values = {key: value for key, (value, _) in config.inputs.items() if key != "*"}

        # Dependencies (their config_path is taken from the unit's folder, wherever the block is written).
        deps: dict[str, Path] = {}
        for name, dep in config.dependencies.items():
            where = self.from_where(config, dep.origin)
            if dep.config_path is None:
                self.problem(unit_dir, f'dependency "{name}"{where}: no config_path')
                continue
            try:
                config_path = evaluate(*dep.config_path)
            except EvalError as e:
                self.problem(unit_dir, f'dependency "{name}"{where}: {e}')
                continue
            if not isinstance(config_path, str):
                self.problem(unit_dir, f'dependency "{name}"{where}: config_path is not evaluated here')
                continue
            dep_dir = as_path(config_path, dep.config_path[1])
            if not (dep_dir / "terragrunt.hcl").is_file():
                self.problem(
                    unit_dir,
                    f'dependency "{name}"{where}: config_path resolves to {self.rel(dep_dir)}, which holds no terragrunt.hcl',
                )
                continue
            deps[name] = dep_dir
            dep_module = self.unit_module(dep_dir, report=False)
            if dep_module is None:
                continue
            if dep.mock_keys is None:
                self.problem(unit_dir, f'dependency "{name}"{where}: no mock_outputs (plan before the first apply needs them)')
                continue
            for key in sorted(dep.mock_keys - {"*"}):
                if key not in load_module(dep_module).outputs:
                    self.problem(unit_dir, f'dependency "{name}"{where}: mock_outputs.{key} is not an output of {self.rel(dep_module)}')
        for expr, scope in config.dependency_paths:
            try:
                paths = evaluate(expr, scope)
            except EvalError as e:
                self.problem(unit_dir, f"dependencies.paths{self.from_where(config, scope.file)}: {e}")
                continue
            for p in paths if isinstance(paths, list) else []:
                if isinstance(p, str) and not (as_path(p, scope) / "terragrunt.hcl").is_file():
                    self.problem(unit_dir, f"dependencies.paths{self.from_where(config, scope.file)}: {p} does not exist")
        for key, (value, origin) in config.inputs.items():
            for ref in dep_refs(value):
                where = self.from_where(config, origin)
                if ref.dep not in config.dependencies:
                    self.problem(unit_dir, f"input {key}{where}: dependency.{ref.dep} is not declared")
                    continue
                if ref.dep not in deps:
                    continue  # its config_path is reported above
                dep_module = self.unit_module(deps[ref.dep], report=False)
                if dep_module and ref.output not in load_module(dep_module).outputs:
                    self.problem(
                        unit_dir,
                        f"input {key}{where}: dependency.{ref.dep}.outputs.{ref.output} is not an output of {self.rel(dep_module)}",
                    )

        if module_path is None:
            return
        module = load_module(module_path)
        self.modules_used.add(module.path)
        mod = self.rel(module.path)
        opaque = "*" in config.inputs  # an inputs expression: what it gives is not known

        for key, (_, origin) in config.inputs.items():
            if key != "*" and key not in module.variables:
                self.problem(unit_dir, f'input "{key}" is not a variable of {mod}{self.from_where(config, origin)}')
        for name, var in module.variables.items():
            if "default" not in var and name not in values and not opaque:
                self.problem(unit_dir, f"required variable {name} of {mod} is not given by the inputs")

        # Pins in the unit's values.
        for key, value in values.items():
            where = self.from_where(config, config.inputs[key][1])
            if key.endswith("digest"):
                if not (isinstance(value, str) and DIGEST.match(value)):
                    self.problem(unit_dir, f"input {key} = {value!r} is not a pinned digest sha256:<64 hex>{where}")
            if key.endswith("_version"):
                if not (isinstance(value, str) and SEMVER.match(value)):
                    self.problem(unit_dir, f"input {key} = {value!r} is not an exact version{where}")
            if key.endswith("_path") and isinstance(value, str) and not Path(value).exists():
                self.problem(unit_dir, f"input {key} = {value} does not exist{where}")
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
        for included in config.included:
            inc_scope = file_scope(unit_dir, included)
            if "providers_by_unit" not in inc_scope.local_exprs:
                continue
            try:
                by_unit = inc_scope.local("providers_by_unit")
                configurable = inc_scope.local("provider_blocks") if "provider_blocks" in inc_scope.local_exprs else {}
            except EvalError as e:
                self.problem(included, str(e))
                continue
            listed = by_unit.get(unit_dir.name) if isinstance(by_unit, dict) else None
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

    def check_commons(self) -> list[Path]:
        """live/_envcommon holds shared files only: each included by some unit, and no terragrunt.hcl."""
        common = self.live / COMMON
        if not common.is_dir():
            return []
        for stray in sorted(common.rglob("terragrunt.hcl")):
            self.problem(stray, f"a terragrunt.hcl under {COMMON}: run --all would take it for a unit (name it <unit>.hcl)")
        files = sorted(p for p in common.rglob("*.hcl") if p.name != "terragrunt.hcl")
        for path in files:
            if Path(os.path.normpath(path)) not in self.included_commons:
                self.problem(path, "included by no unit")
        return files

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
        commons = self.check_commons()
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
            f"({len(commons)} {COMMON} files) against {len(modules)} modules "
            "(inputs, required variables, dependencies, pins)"
        )
        return 0


# ---- self-test ----------------------------------------------------------------------------------------------

APPEND = re.compile(r"\Z")

# (file under the terraform folder, text to find (None: a new file), replacement, what the report must say, how
# many distinct places must say it: None for at least one). A break in a live/_envcommon file must be reported
# for each of the four units (2 envs x 2 regions) that include it; one in a unit's file for that unit only.
BREAKS = [
    ("live/staging/eu-west/dagctl/terragrunt.hcl", APPEND, '\ninputs = {\n  bogus_input = "x"\n}\n',
     'input "bogus_input" is not a variable', 1),
    ("live/_envcommon/dagctl.hcl", "inputs = {\n", 'inputs = {\n  bogus_common = "x"\n',
     'input "bogus_common" is not a variable of terraform/modules/dagctl (set in terraform/live/_envcommon/dagctl.hcl)', 4),
    ("live/root.hcl", "inputs = {}", "inputs = { bogus_everywhere = 1 }",
     'input "bogus_everywhere" is not a variable', 28),
    ("live/_envcommon/dagctl.hcl", re.compile(r"^\s*image_digest\s*=.*\n", re.M), "",
     "required variable image_digest", 4),
    ("live/_envcommon/secrets.hcl", '/../postgres"', '/../postgrez"',
     "postgrez, which holds no terragrunt.hcl", 4),
    ("live/production/us-east/secrets/terragrunt.hcl", APPEND,
     '\ndependency "postgres" {\n  config_path  = "../postgrez"\n  mock_outputs = {}\n}\n',
     "postgrez, which holds no terragrunt.hcl", 1),
    ("live/_envcommon/secrets.hcl", "outputs.database_url_secret_key", "outputs.database_url_key",
     "dependency.postgres.outputs.database_url_key is not an output", 4),
    ("live/_envcommon/dagctl.hcl", '{ helm_values = {', '{ helm_valuez = {',
     'mock_outputs.helm_valuez is not an output', 4),
    ("modules/dagctl/versions.tf", 'version = "3.1.2"', 'version = ">= 3.1.2"', "provider helm is not pinned", None),
    ("live/production/env.hcl", re.compile(r'image_digest\s*=\s*"[^"]*"'), 'image_digest = "latest"',
     "input image_digest = 'latest' is not a pinned digest", 2),
    ("live/staging/env.hcl", re.compile(r'chaos_mesh_chart_version\s*=\s*"[^"]*"'), 'chaos_mesh_chart_version = "~> 2.8"',
     "input chart_version = '~> 2.8' is not an exact version", 2),
    ("live/production/eu-west/chaos-mesh/terragrunt.hcl", APPEND, '\ninputs = {\n  chart_version = "latest"\n}\n',
     "input chart_version = 'latest' is not an exact version", 1),
    ("modules/cnpg-operator/variables.tf", 'default     = "0.29.0"', 'default     = ">= 0.29.0"',
     "variable chart_version: default '>= 0.29.0' is not an exact version", None),
    ("live/_envcommon/postgres.hcl", "local.region.storage_class", "local.region.storage_klass",
     "no attribute storage_klass", 4),
    ("live/staging/us-east/oidc/terragrunt.hcl", '_envcommon/oidc.hcl"', '_envcommon/oidcs.hcl"',
     "_envcommon/oidcs.hcl' is not a file", 1),
    ("live/_envcommon/oidc.hcl", "locals {", 'include "root" {\n  path = find_in_parent_folders("root.hcl")\n}\n\nlocals {',
     "has an include block of its own", 4),
    ("live/_envcommon/terragrunt.hcl", None, 'terraform {\n  source = "../modules//oidc"\n}\n',
     "a terragrunt.hcl under _envcommon", 1),
    ("live/_envcommon/unused.hcl", None, "inputs = {}\n", "included by no unit", 1),
]


def self_test(root: Path) -> int:
    repo = root.resolve().parent
    failures = 0
    with tempfile.TemporaryDirectory(prefix="check-inputs-") as tmp:
        for number, (rel, find, replace, expect, places) in enumerate([(None, None, None, None, None), *BREAKS]):
            copy = Path(tmp) / f"case{number}"
            shutil.copytree(root, copy / "terraform", ignore=shutil.ignore_patterns(".terragrunt-cache", ".terraform"))
            chart = repo / "deploy" / "helm" / "dagctl"
            if chart.is_dir():
                shutil.copytree(chart, copy / "deploy" / "helm" / "dagctl")
            if rel is not None:
                target = copy / "terraform" / rel
                if find is None:
                    if target.exists():
                        print(f"self-test: case {number}: {rel} exists already")
                        failures += 1
                        continue
                    target.write_text(replace, encoding="utf-8")
                else:
                    text = target.read_text(encoding="utf-8")
                    changed = find.sub(replace, text, count=1) if isinstance(find, re.Pattern) else text.replace(find, replace, 1)
                    if changed == text:
                        print(f"self-test: case {number}: could not apply the break to {rel}")
                        failures += 1
                        continue
                    target.write_text(changed, encoding="utf-8")
            _parsed.clear()
            _scopes.clear()
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
                where = {p.split(": ", 1)[0] for p in checker.problems if expect in p}
                ok = code == 1 and bool(where) and (places is None or len(where) == places)
                what = f"{rel}: reports '{expect}'" + (f" for {places} place(s)" if places else "")
                if where and not ok:
                    what += f" (reported for {len(where)})"
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
