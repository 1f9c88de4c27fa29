"""Validation of the merged workflow configuration against ``workflow/schemas/``.

``validate_config`` returns a new dict with every default filled in from the schema and
raises :class:`ConfigError` on the first problem, naming the key path and the bad value:

    config key 'collapse.generations': -1 is less than the minimum of 0

It runs in the Snakefile before any job is scheduled, and in tests without Snakemake.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
SCHEMA_PATH = SCHEMA_DIR / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _with_defaults(cls):
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


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
    msg = error.message
    return f"config key '{key}': {msg}"


def validate_config(config: dict[str, Any], schema: dict | None = None) -> dict[str, Any]:
    """Check ``config`` against the schema; return a copy with defaults filled in."""
    schema = schema or load_schema()
    instance = copy.deepcopy(dict(config))
    # defaults are filled while validating; validate twice so that filled-in defaults are
    # themselves checked (and nested defaults of filled-in objects are filled)
    for _ in range(2):
        errors = sorted(_Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            raise ConfigError(_message(errors[0]))
    _cross_checks(instance)
    return instance


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
        from dlrepro.policies import POLICIES

        for i, name in enumerate(col["policies"]):
            if name not in POLICIES:
                raise ConfigError(
                    f"config key 'collapse.policies[{i}]': unknown policy {name!r}; "
                    f"known: {sorted(POLICIES)}"
                )
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
            new = col["sampling"]["max_new_tokens"]
            if new is not None and new >= m["block_size"]:
                raise ConfigError(
                    f"config key 'collapse.sampling.max_new_tokens': {new} new tokens after the "
                    f"start token do not fit the context length of model {name!r} "
                    f"(block_size {m['block_size']})"
                )
    conf = cfg.get("conformers")
    if conf and conf["source"] == "geom" and not conf["geom"]["rdkit_folder"]:
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
    if width and (width.get("mlp") or width.get("lm")):
        from dlrepro.width.runs import StageParams

        try:
            StageParams.from_dict(width, where="width")
        except ValueError as exc:
            raise ConfigError(f"config key {exc}") from None
