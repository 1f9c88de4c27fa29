"""Config validation: schema rejections name the key and value; defaults come from the schema."""

from __future__ import annotations

import copy

import pytest
import yaml

from dlrepro.config import ConfigError, validate_config
from tests.conftest import PRESETS, ROOT


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def deep_update(base: dict, over: dict) -> dict:
    """Update ``base`` by ``over`` the way Snakemake merges configs (dicts recursively)."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base


def merged(preset: str) -> dict:
    """config.yaml updated by a preset, the way Snakemake merges --configfile."""
    return deep_update(default_config(), yaml.safe_load((PRESETS / f"{preset}.yaml").read_text()))


@pytest.mark.parametrize("preset", ["default", "smoke", "paper"])
def test_every_preset_is_valid(preset):
    cfg = default_config() if preset == "default" else merged(preset)
    out = validate_config(cfg)
    assert out["data"]["text"]["vocab_size"] >= 257


def test_defaults_are_filled_from_the_schema():
    out = validate_config({})
    assert out["seed"] == 0
    assert out["data"]["text"]["token_dtype"] == "uint16"
    assert out["compute"]["train_resources"]["gpu"] == 0
    assert out["compute"]["light_resources"]["mem_mb"] == 2000


def test_validation_does_not_mutate_its_input():
    cfg = {"data": {"text": {}}}
    validate_config(cfg)
    assert cfg == {"data": {"text": {}}}


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"seed": -1}, r"'seed': -1 is less than the minimum of 0"),
        ({"seed": "zero"}, r"'seed': 'zero' is not of type 'integer'"),
        ({"colapse": {}}, r"config key 'colapse' is not a known key"),
        ({"data": {"text": {"vocab": 10}}}, r"config key 'data.text.vocab' is not a known key"),
        ({"data": {"text": {"vocab_size": 100}}}, r"'data.text.vocab_size': 100 is less than the minimum of 257"),
        ({"data": {"text": {"vocab_size": 70000}}}, r"'data.text.vocab_size': 70000 token ids do not fit in data.text.token_dtype uint16"),
        ({"data": {"text": {"token_dtype": "int8"}}}, r"'data.text.token_dtype': 'int8' is not one of"),
        ({"data": {"text": {"val_fraction": 0.6, "test_fraction": 0.5}}}, r"val_fraction.*test_fraction.*must be < 1"),
        ({"data": {"images": {"mnist_source": "train"}}}, r"'data.images.mnist_source': 'train' is not one of"),
        ({"compute": {"train_resources": {"mem_mb": 10}}}, r"'compute.train_resources.mem_mb': 10 is less than the minimum of 100"),
        ({"compute": {"accelerator": "tpu"}}, r"'compute.accelerator': 'tpu' is not one of"),
        ({"stages": ["data", "colapse"]}, r"'stages\[1\]': 'colapse' is not one of"),
        ({"collapse": {"sampling": {"max_new_tokens": 4096}}},
         r"'collapse.sampling.max_new_tokens': 4096 new tokens .* do not fit the context length"),
        ({"collapse": {"policies": ["replace", "keep-best"]}}, r"'collapse.policies\[1\]': unknown mixing policy 'keep-best'"),
        ({"collapse": {"models": [{"name": "m", "d_model": 100, "n_head": 3}]}}, r"'collapse.models.m.d_model': 100 is not divisible by n_head 3"),
        ({"linreg": {"d": [50], "T": [40]}}, r"'linreg.T': T=40 with d=50 has no finite expected test error"),
        ({"conformers": {"source": "geom"}}, r"'conformers.geom.rdkit_folder': null"),
        ({"compute": {"accelerator": "gpu", "devices": 4, "train_resources": {"gpu": 1}}},
         r"'compute.devices': 4 GPUs per training job, but compute.train_resources.gpu requests 1"),
    ],
)
def test_rejections_name_the_key_and_value(patch, message):
    cfg = deep_update(copy.deepcopy(default_config()), patch)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_uint32_tokens_allow_a_large_vocab():
    out = validate_config({"data": {"text": {"vocab_size": 100_000, "token_dtype": "uint32"}}})
    assert out["data"]["text"]["vocab_size"] == 100_000


def test_a_preset_replaces_the_model_list_whole():
    smoke = validate_config(merged("smoke"))
    assert [m["name"] for m in smoke["collapse"]["models"]] == ["gpt2-tiny"]
    paper = validate_config(merged("paper"))
    assert [m["name"] for m in paper["collapse"]["models"]][0] == "gpt2-9m"
    assert "gpt2-d64" not in [m["name"] for m in paper["collapse"]["models"]]


# ---- registries: one place knows every name the config can use ---------------------------


def _runtime_names(kind: str) -> list[str]:
    """The names of a registry as the code sees them once imported (torch and all)."""
    import importlib

    from dlrepro.config import REGISTRIES

    reg = REGISTRIES[kind]
    module = importlib.import_module(reg.module)
    if reg.module == "dlrepro.init.inits":
        importlib.import_module("dlrepro.init.fluctuations")  # every init module registered
    table = getattr(module, reg.attr)
    return [n for n in table if reg.kind is None or table[n].kind == reg.kind]


@pytest.mark.parametrize("kind", sorted(__import__("dlrepro.config", fromlist=["REGISTRIES"]).REGISTRIES))
def test_registry_names_read_without_torch_agree_with_the_imported_registry(kind):
    from dlrepro.config import known_names

    assert sorted(known_names(kind)) == sorted(_runtime_names(kind)), kind


def test_config_validation_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, yaml; from dlrepro.config import validate_config; "
        "validate_config(yaml.safe_load(open('config.yaml'))); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# schema keys whose values are names from a registry: each must say which (`registry:`), so
# that the one check in dlrepro.config applies; an `enum` copy of a registry is not allowed
NAME_KEYS = {"policies", "inits", "parametrizations", "arch", "dataset", "prepare", "schedule",
             "activation", "width_model", "models"}


def _walk(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


def test_every_name_key_of_the_schema_names_its_registry():
    from dlrepro.config import REGISTRIES, known_names, load_schema

    registries = {kind: set(known_names(kind)) for kind in REGISTRIES}
    for path, node in _walk(load_schema()):
        where = "/".join(map(str, path))
        if "registry" in node:
            assert node["registry"] in REGISTRIES, where
            continue  # an enum beside it only narrows the registry (linreg: two policies)
        if "enum" in node:
            for kind, names in registries.items():
                assert not set(node["enum"]) <= names, f"schema {where}: enum copies registry {kind!r}"
        key = next((p for p in reversed(path) if isinstance(p, str) and p not in ("properties", "items")), None)
        if key in NAME_KEYS and node.get("type") == "string":
            assert False, f"schema {where}: a name key without 'registry:'"


def test_a_name_registered_in_code_is_accepted_without_editing_the_schema(monkeypatch):
    from dlrepro import config

    orig = config.known_names
    monkeypatch.setattr(config, "known_names",
                        lambda kind: (*orig(kind), "keep-best") if kind == "policy" else orig(kind))
    out = validate_config({"vae": {"policies": ["replace", "keep-best"]}})
    assert out["vae"]["policies"] == ["replace", "keep-best"]
