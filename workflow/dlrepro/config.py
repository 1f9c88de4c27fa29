"""Validation of the merged workflow configuration against ``workflow/schemas/``.

``validate_config`` returns a new dict with every default filled in from the schema and
raises :class:`ConfigError` on the first problem, in one line naming the key path, the bad
value and what would be valid:

    config key 'collapse.generations': -1 is less than the minimum of 0

It runs in the Snakefile before any job is scheduled, in ``python -m dlrepro check-config``
(the pre-flight check of ``make run``, which also catches the errors Snakemake raises
before the Snakefile runs: see :func:`check_snakemake_args`), and in tests without
Snakemake. What it checks, in order:

1. every number is finite (no NaN or infinity anywhere, free-form blocks included);
2. the schema: known keys, types, ranges, and names: a schema node ``registry: <kind>``
   takes a name from one of the code's registries (:data:`REGISTRIES`: mixing policies,
   inits, parametrizations, architectures, activations, data sets, noise schedules, width
   models and arms). This is the only place names are checked, so a new stage's config
   gets the check by naming the registry in the schema;
3. rules across keys that the models' constructors also enforce (head dimensions, atom
   ranges, context lengths, ...), and that the folders the config names exist.

Nothing here imports torch (the Snakefile imports it while it parses): registries that
live in torch modules are read from their source (module-level name tuples and
``@register("name")`` decorators); ``tests/test_config.py`` checks that this reading agrees
with the imported registries.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
import importlib.util
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators

from dlrepro.errors import ConfigError, UserError  # noqa: F401 (ConfigError: raised here; imported from here by callers)

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
SCHEMA_PATH = SCHEMA_DIR / "config.schema.yaml"
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "config.yaml"  # the Snakefile's `configfile:`
MIRROR_ENV = "DLREPRO_DATA_MIRROR"  # as dlrepro.data.download (not imported: it logs)


# --------------------------------------------------------------------------- registries


@dataclass(frozen=True)
class Registry:
    """Where the names of one kind live: ``module.attr`` (a tuple of names, or a dict whose
    keys are the names), plus the names given to ``@decorator("name")`` in that module.
    ``static``: read from the source without importing the module (torch modules)."""

    what: str
    module: str
    attr: str
    decorator: str | None = None
    static: bool = True
    kind: str | None = None  # data sets: only those of this Dataset.kind


REGISTRIES: dict[str, Registry] = {
    "policy": Registry("mixing policy", "dlrepro.policies", "POLICIES", decorator="register"),
    "init": Registry("init", "dlrepro.init.inits", "INITS", decorator="register_init"),
    "parametrization": Registry("parametrization", "dlrepro.parametrization.table", "PARAMETRIZATIONS"),
    "arch": Registry("architecture", "dlrepro.models", "ARCHS"),
    "activation": Registry("activation", "dlrepro.models", "ACTIVATION_NAMES"),
    "schedule": Registry("noise schedule", "dlrepro.conformers.diffusion", "SCHEDULES"),
    "width_model": Registry("width-stage model", "dlrepro.width.params", "MODELS"),
    "width_arm": Registry("data arm", "dlrepro.width.params", "ARMS"),
    "dataset": Registry("data set", "dlrepro.data.registry", "DATASETS", static=False),
    "text_dataset": Registry("text data set", "dlrepro.data.registry", "DATASETS", static=False, kind="text"),
    "image_dataset": Registry("image data set", "dlrepro.data.registry", "DATASETS", static=False, kind="images"),
}


def _source_names(module: str, attr: str, decorator: str | None) -> list[str]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"no module {module}")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    names: list[str] = []
    for node in tree.body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id == attr and value is not None:
            if isinstance(value, ast.Dict):
                names += [k.value for k in value.keys if isinstance(k, ast.Constant)]
            else:
                names += list(ast.literal_eval(value))
    if decorator:
        for node in ast.walk(tree):
            for dec in getattr(node, "decorator_list", []):
                if (isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == decorator
                        and dec.args and isinstance(dec.args[0], ast.Constant)):
                    names.append(dec.args[0].value)
    return names


@functools.lru_cache(maxsize=None)
def known_names(kind: str) -> tuple[str, ...]:
    """The registered names of ``kind`` (a key of :data:`REGISTRIES`), in registry order."""
    reg = REGISTRIES[kind]
    if reg.static:
        names = _source_names(reg.module, reg.attr, reg.decorator)
    else:
        table = getattr(importlib.import_module(reg.module), reg.attr)
        names = [n for n in table if reg.kind is None or table[n].kind == reg.kind]
    if not names:  # a registry moved or renamed: a bug of ours, not the user's input
        raise RuntimeError(f"registry {kind!r}: no names found at {reg.module}.{reg.attr}")
    return tuple(dict.fromkeys(names))


def check_name(kind: str, value: Any, where: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a registered name of ``kind``
    (for command-line flags and other places outside the config schema)."""
    names = known_names(kind)
    if value not in names:
        raise ConfigError(f"{where}: unknown {REGISTRIES[kind].what} {value!r}; known: {', '.join(names)}")


# --------------------------------------------------------------------------- schema


_YAML = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 10x faster on the schema


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The schema (parsed once per process; do not modify the returned dict)."""
    return _load_schema(Path(path).resolve(), Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_schema(path: Path, mtime_ns: int) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_YAML)


def _registry_keyword(validator, kind, instance, schema):
    if not isinstance(instance, str):
        return
    names = known_names(kind)
    if instance not in names:
        yield ValidationError(
            f"unknown {REGISTRIES[kind].what} {instance!r}; known: {', '.join(names)}"
        )


def _with_defaults(cls):
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults, "registry": _registry_keyword})


_Validator = _with_defaults(Draft202012Validator)


def _key(path) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    out = ""
    for p in parts:
        out += p if p.startswith("[") or not out else "." + p
    return out or "<top level>"


def _message(error) -> str:
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = "" if key == "<top level>" else key + "."
        return (
            f"config key '{where}{extra[0]}' is not a known key"
            f" (allowed here: {', '.join(allowed)})"
        )
    if error.validator == "propertyNames":
        # the message of a property name's own error names the name; the path is the parent's
        sub = min(error.context, key=lambda e: str(e.message)) if error.context else error
        return f"config key '{key}': key {sub.message}"
    if error.validator == "type" and key == "<top level>":
        return f"the configuration must be a mapping of keys, got {type(error.instance).__name__}"
    return f"config key '{key}': {error.message}"


def _check_finite(obj: Any, path: list) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ConfigError(f"config key '{_key(path)}': {obj} is not a finite number")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, [*path, k])
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(v, [*path, i])


# --------------------------------------------------------------------------- --config values


def _resolve(node: dict, schema: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        node = functools.reduce(lambda d, k: d[k], ref.lstrip("#/").split("/"), schema)
    return node if isinstance(node, dict) else {}


def _scalar(text: str, types: set[str]) -> Any:
    """``text`` read as the first of the schema's non-string types it parses as."""
    for t in ("integer", "number", "boolean", "null"):
        if t not in types and not (t == "integer" and "number" in types):
            continue
        try:
            if t == "integer":
                return int(text)
            if t == "number":
                return float(text)
        except ValueError:
            continue
        if t == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if t == "null" and text in ("null", "None", "~", ""):
            return None
    if types & {"array", "object"} or not types:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        return value
    return text


def coerce_overrides(config: dict, overrides: Any, schema: dict | None = None) -> dict:
    """Re-read the strings of Snakemake's ``--config`` values with the schema's types.

    Snakemake parses a top-level ``--config key=value`` as int, float, bool or text, but
    the values inside a nested one (``--config 'collapse={generations: 3}'``) stay text
    (YAML's base loader). Where the schema (or a free-form block) wants a number, boolean
    or null there, the text is read as one, so the nested form works like a config file.
    Returns a copy of ``config`` (the merged configuration, overrides already applied).
    """
    schema = schema or load_schema()
    out = copy.deepcopy(dict(config))

    def walk(over, cur, node):
        node = _resolve(node, schema)
        if isinstance(over, dict) and isinstance(cur, dict):
            props = node.get("properties", {})
            extra = node.get("additionalProperties")
            for k, v in over.items():
                if k not in cur:
                    continue
                sub = props.get(k, extra if isinstance(extra, dict) else {})
                new = walk(v, cur[k], sub)
                cur[k] = new
            return cur
        if isinstance(over, (list, tuple)) and isinstance(cur, list) and len(over) == len(cur):
            items = node.get("items", {})
            return [walk(o, c, items) for o, c in zip(over, cur)]
        if isinstance(over, str) and isinstance(cur, str) and over == cur:
            types = node.get("type", [])
            types = {types} if isinstance(types, str) else set(types)
            if "string" in types or "enum" in node or "registry" in node:
                return cur
            return _scalar(cur, types)
        return cur

    for k, v in dict(overrides or {}).items():
        if k in out and not isinstance(v, (int, float, bool)) and v is not None:
            out[k] = walk(v, out[k], schema.get("properties", {}).get(k, {}))
    return out


# --------------------------------------------------------------------------- validation


def validate_config(
    config: dict[str, Any],
    schema: dict | None = None,
    *,
    check_paths: bool = False,
    base_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Check ``config`` against the schema; return a copy with defaults filled in.

    ``check_paths``: also check that the folders the config names exist (relative paths
    from ``base_dir``, default the working directory): the data mirror
    (``data.mirror`` or ``$DLREPRO_DATA_MIRROR``) and, when the conformers stage reads GEOM,
    ``conformers.geom.rdkit_folder``.
    """
    schema = schema or load_schema()
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a mapping of keys, got {type(config).__name__}")
    instance = copy.deepcopy(dict(config))
    _check_finite(instance, [])
    # defaults are filled while validating; validate twice so that filled-in defaults are
    # themselves checked (and nested defaults of filled-in objects are filled)
    for _ in range(2):
        errors = sorted(_Validator(schema).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            raise ConfigError(_message(errors[0]))
    _cross_checks(instance)
    if check_paths:
        check_config_paths(instance, base_dir)
    return instance


def check_config_paths(cfg: dict[str, Any], base_dir: str | os.PathLike | None = None) -> None:
    """The folders a validated config names exist (relative paths from ``base_dir``, default
    the working directory). The Snakefile runs this when execution starts (not in a dry run,
    which shows the plan of a config whose folders are not there yet)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    data = cfg.get("data", {})
    mirror, where = data.get("mirror"), "config key 'data.mirror'"
    if mirror in (None, ""):
        mirror, where = os.environ.get(MIRROR_ENV) or None, f"environment variable {MIRROR_ENV}"
    if mirror:
        path = base / Path(mirror).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"{where}: {mirror!r} is not a folder ({path.resolve()} does not exist); give a "
                "folder laid out as <data set>/<upstream file name> (README: Data), or unset it"
            )
    conf = cfg.get("conformers")
    if conf and "conformers" in cfg.get("stages", []) and conf["source"] == "geom":
        folder = conf["geom"]["rdkit_folder"]
        path = base / Path(folder).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"config key 'conformers.geom.rdkit_folder': {folder!r} is not a folder "
                f"({path.resolve()} does not exist); give the extracted GEOM rdkit_folder (README)"
            )
        summary = path / f"summary_{conf['geom']['partition']}.json"
        if not summary.is_file():
            raise ConfigError(
                f"config key 'conformers.geom.rdkit_folder': {folder!r} has no {summary.name} "
                "(conformers.geom.partition); give the extracted GEOM rdkit_folder (README)"
            )


def _cross_checks(cfg: dict[str, Any]) -> None:
    comp = cfg.get("compute")
    if comp and comp["accelerator"] == "gpu":
        gpus = comp["train_resources"].get("gpu", 0)
        if comp["devices"] > gpus:
            raise ConfigError(
                f"config key 'compute.devices': {comp['devices']} GPUs per training job, but "
                f"compute.train_resources.gpu requests {gpus}; request at least as many GPUs as devices"
            )
    text = cfg.get("data", {}).get("text", {})
    if text:
        cap = {"uint16": 2**16, "uint32": 2**32}[text["token_dtype"]]
        if text["vocab_size"] > cap:
            raise ConfigError(
                f"config key 'data.text.vocab_size': {text['vocab_size']} token ids do not fit in "
                f"data.text.token_dtype {text['token_dtype']} (at most {cap})"
            )
        if text["val_fraction"] + text["test_fraction"] >= 1:
            raise ConfigError(
                "config keys 'data.text.val_fraction' + 'data.text.test_fraction' must be < 1 "
                f"(got {text['val_fraction']} + {text['test_fraction']})"
            )
    col = cfg.get("collapse")
    if col:
        names = [m["name"] for m in col["models"]]
        if len(set(names)) != len(names):
            raise ConfigError(f"config key 'collapse.models': model names must be unique, got {names}")
        for m in col["models"]:
            name = m["name"]
            if m["d_model"] % m["n_head"]:
                raise ConfigError(
                    f"config key 'collapse.models.{name}.d_model': {m['d_model']} is not "
                    f"divisible by n_head {m['n_head']}"
                )
            head_dim = m["d_model"] // m["n_head"]
            if m["arch"] == "llama" and head_dim % 2:
                raise ConfigError(
                    f"config key 'collapse.models.{name}.d_model': {m['d_model']} / n_head "
                    f"{m['n_head']} = head dimension {head_dim}, odd; llama's rotary embeddings "
                    "need an even head dimension"
                )
            new = col["sampling"]["max_new_tokens"]
            if new is not None and new >= m["block_size"]:
                raise ConfigError(
                    f"config key 'collapse.sampling.max_new_tokens': {new} new tokens after the "
                    f"start token do not fit the context length of model {name!r} "
                    f"(block_size {m['block_size']})"
                )
    conf = cfg.get("conformers")
    if conf:
        for block in ("prepare", "geom"):
            lo, hi = conf[block]["min_heavy_atoms"], conf[block]["max_heavy_atoms"]
            if lo > hi:
                raise ConfigError(
                    f"config key 'conformers.{block}.min_heavy_atoms': {lo} is more than "
                    f"conformers.{block}.max_heavy_atoms {hi}; the range must be non-empty"
                )
        if conf["source"] == "geom" and not conf["geom"]["rdkit_folder"]:
            raise ConfigError(
                "config key 'conformers.geom.rdkit_folder': null, but conformers.source is 'geom'; "
                "set it to the extracted GEOM rdkit_folder (see README)"
            )
    lin = cfg.get("linreg")
    if lin:
        for d in lin["d"]:
            for T in lin["T"]:
                if T <= d + 1:
                    raise ConfigError(
                        f"config key 'linreg.T': T={T} with d={d} has no finite expected test "
                        f"error (ordinary least squares needs T > d + 1)"
                    )
    sc = cfg.get("scaling")
    sweep_model = sc["data_sweep"]["model"] if sc else None
    if sweep_model is not None and col and sweep_model not in [m["name"] for m in col["models"]]:
        raise ConfigError(
            f"config key 'scaling.data_sweep.model': {sc['data_sweep']['model']!r} is not a model "
            f"of collapse.models ({[m['name'] for m in col['models']]})"
        )
    width = cfg.get("width")
    if width and any(width.get(m) for m in known_names("width_model")):
        _width_checks(width)


_WIDTH_INVALID = re.compile(r"^invalid (\S+?)(?: key| entry)? \((.*)\): (.*)$", re.S)


def _width_checks(width: dict[str, Any]) -> None:
    """The width stage's own validation (``dlrepro.width.params`` and
    ``dlrepro.width.coord_check``), its messages given the config's key paths."""
    from dlrepro.width.coord_check import StageParams
    from dlrepro.width.params import train_params

    for model in known_names("width_model"):
        section = width.get(model)
        if not section:
            continue
        try:
            params = train_params(model, section["train"], f"width.{model}.train")
        except UserError as exc:
            raise ConfigError(_width_message(exc)) from None
        for arm, names in (section["arms"] or {}).items():
            for p in names or width["parametrizations"]:
                if p in known_names("parametrization") and p not in params.lr:
                    raise ConfigError(
                        f"config key 'width.{model}.train.lr': {params.lr} has no learning rate for "
                        f"parametrization {p!r} (trained in width.{model}.arms.{arm}); give one"
                    )
        head_dim = getattr(params, "head_dim", None)
        for i, w in enumerate(section["widths"]):
            if head_dim and w % head_dim:
                raise ConfigError(
                    f"config key 'width.{model}.widths[{i}]': {w} is not a multiple of "
                    f"width.{model}.train.head_dim {head_dim} (the number of heads grows with the width)"
                )
    try:
        StageParams.from_dict(width, where="width")
    except UserError as exc:
        raise ConfigError(_width_message(exc)) from None


def _width_message(exc: Exception) -> str:
    text = str(exc)
    m = _WIDTH_INVALID.match(text)
    if m:
        key, valid, value = m.groups()
        return f"config key '{key}': {value} is not valid (expected {valid})"
    m = re.match(r"^unknown key (\S+?)\.'([^']+)'(.*)$", text)
    if m:
        return f"config key '{m.group(1)}.{m.group(2)}' is not a known key{m.group(3)}"
    return f"config: {text}"


# --------------------------------------------------------------------------- pre-flight


_IDENTIFIER = re.compile(r"[a-zA-Z_][\w-]*\w$")


def parse_config_args(entries: Iterable[str]) -> dict[str, Any]:
    """Snakemake's ``--config KEY=VALUE ...`` (``snakemake.cli.parse_config``: int, float,
    bool, YAML base loader, text), with one-line errors that say what would work."""
    out: dict[str, Any] = {}
    for entry in entries:
        key, sep, val = entry.partition("=")
        if not sep or not key:
            raise ConfigError(f"--config {entry!r}: an override is KEY=VALUE, e.g. --config seed=1")
        if not _IDENTIFIER.match(key):
            hint = ""
            if "." in key:
                parts = key.split(".")
                nested = val
                for p in reversed(parts[1:]):
                    nested = "{" + f"{p}: {nested}" + "}"
                hint = (f"; Snakemake's --config takes top-level keys only: write "
                        f"--config '{parts[0]}={nested}' or put the nested key in a --configfile")
            raise ConfigError(
                f"--config {entry!r}: {key!r} is not a top-level key name (letters, digits, _ "
                f"and -){hint}"
            )
        if val == "":
            out[key] = None
            continue
        value: Any = None
        for parse in (int, float, _snake_bool, _base_yaml, str):
            try:
                value = parse(val)
            except Exception:  # noqa: BLE001 (Snakemake tries the parsers in turn the same way)
                continue
            if not callable(value):
                break
        _merge(out, {key: value})
    return out


def _snake_bool(text: str) -> bool:
    if text in ("True", "False"):
        return text == "True"
    raise ValueError(text)


def _base_yaml(text: str) -> Any:
    return yaml.load(text, Loader=yaml.BaseLoader)


def _merge(base: dict, over: dict) -> dict:
    """Snakemake's ``update_config``: dicts merged recursively, everything else replaced."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def load_config_file(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """A ``--configfile``: JSON or YAML whose top level is a mapping; one-line errors
    naming the file (and the line of a YAML error)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {str(path)!r}: no such file ({p.resolve()})")
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{what} {str(path)!r}{where}: not valid YAML ({problem})") from None
    if data is None:
        raise ConfigError(f"{what} {str(path)!r} is empty; it must map config keys to values")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{what} {str(path)!r}: the top level is a {type(data).__name__}, not a mapping of "
            "config keys (e.g. 'collapse: {generations: 3}')"
        )
    return data


CONFIG_FORM_HELP = (
    "Snakemake's --config form, the one form every entry point takes (make run/smoke/report "
    "ARGS=..., python -m dlrepro plan, check-config, snakemake): top-level keys, a nested value "
    "as a YAML flow mapping, e.g. --config seed=1 'collapse={generations: 3, optim: {lr: 0.002}}'; "
    "nested keys merge into the configuration, lists replace. Dotted keys (collapse.generations=3) "
    "are refused with the nested spelling, because Snakemake refuses them"
)


def snakemake_config_parser(prog: str | None = None, add_help: bool = False):
    """The configuration options of a ``snakemake`` command line, as Snakemake reads them."""
    import argparse

    ap = argparse.ArgumentParser(
        prog=prog, add_help=add_help, allow_abbrev=False,
        usage=f"{prog} [--configfile FILE ...] [--config KEY=VALUE ...] [-n] [-d DIR] "
              "[other snakemake arguments]" if prog else None,
        description="Check the configuration a snakemake command line would run with (config.yaml, "
                    "each --configfile merged over it, then --config), the way the Snakefile checks it, "
                    "and the errors Snakemake raises before the Snakefile runs (a missing or malformed "
                    "--configfile, a malformed --config), and that every file the needed data sets "
                    "lack is in the mirror (offline: an error; else one line per file to download). "
                    "Exit 0 if it is valid, else print one line "
                    "and exit 1. Other snakemake arguments are ignored. Used by make run/smoke/report.",
    )
    ap.add_argument("--configfile", "--configfiles", nargs="+", action="extend", default=[], metavar="FILE",
                    help="YAML or JSON merged over config.yaml, in order (e.g. workflow/presets/smoke.yaml)")
    ap.add_argument("--config", "-C", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                    help=CONFIG_FORM_HELP)
    ap.add_argument("--directory", "-d", default=None, metavar="DIR",
                    help="the working directory relative paths (data.mirror, ...) are read from")
    ap.add_argument("--replace-workflow-config", action="store_true", help="start from {} instead of config.yaml")
    ap.add_argument("--dry-run", "--dryrun", "-n", action="store_true",
                    help="a dry run: folders the config names are not checked (as the Snakefile)")
    return ap


def merged_config(configfiles: Iterable[str | os.PathLike], config_entries: Iterable[str], *,
                  replace_workflow_config: bool = False, default_config: Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """The configuration Snakemake builds from ``--configfile`` and ``--config`` (before
    validation): ``config.yaml`` (unless replaced), each file merged over it, then the
    ``--config`` entries (:data:`CONFIG_FORM_HELP`), their values read with the schema's types."""
    overrides = parse_config_args(config_entries)
    merged: dict[str, Any] = {} if replace_workflow_config else load_config_file(default_config)
    for f in configfiles:
        _merge(merged, load_config_file(f))
    _merge(merged, overrides)
    return coerce_overrides(merged, overrides)


def check_snakemake_args(argv: list[str], default_config: Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """Validate the configuration a ``snakemake`` command line would use, the way the
    Snakefile will (and the configuration errors Snakemake raises before the Snakefile
    runs: unreadable ``--configfile``, malformed ``--config``). Returns the validated
    config; raises :class:`ConfigError`."""
    args, _ = snakemake_config_parser().parse_known_args(argv)
    merged = merged_config(args.configfile, args.config, replace_workflow_config=args.replace_workflow_config,
                           default_config=default_config)
    return validate_config(merged, check_paths=not args.dry_run, base_dir=args.directory)


def main(argv: list[str] | None = None) -> int:
    """``python -m dlrepro check-config [snakemake arguments]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        snakemake_config_parser(prog="python -m dlrepro check-config", add_help=True).print_help()
        return 0
    from dlrepro.data.needed import check_data

    try:
        cfg = check_snakemake_args(argv)
        # the files the needed data sets lack, named as the Snakefile names them (no network)
        for line in check_data(cfg, base_dir=snakemake_config_parser().parse_known_args(argv)[0].directory):
            print(line, file=sys.stderr)
    except ConfigError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
