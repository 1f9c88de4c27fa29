"""Every default has one home. Where a config block is passed to a stage's command as its
``--params`` and the command's parameter class has defaults of its own, the two homes
must agree: the schema's default is what the workflow runs, the class's is what a direct
call (a test, a user at the command line, the planner's probe) gets. There is no list of
tolerated differences: a new one fails. Compared is what a direct call gets, the instance
the class builds without arguments (so a default its ``__post_init__`` resolves, like the
VAE's ``epochs``, counts as resolved), field by field into nested parameter classes (the
schema's ``{}`` for an object is its properties' defaults). The planner keeps no copies
(see tests/test_plan.py::test_the_plan_follows_the_width_stages_own_defaults)."""

from __future__ import annotations

import dataclasses
import importlib

from dlrepro.config import _resolve, load_schema

# config block -> parameter class that takes it as --params (module:Class), key renames,
# and optionally how the instance a direct call gets is built (default: Class())
PAIRS = [
    ("collapse.optim", "dlrepro.collapse.params:OptimConfig", {}),
    ("collapse.sampling", "dlrepro.collapse.params:SamplingParams", {}),
    ("collapse.eval", "dlrepro.collapse.params:EvalParams", {}),
    ("collapse.models[]", "dlrepro.collapse.params:ModelParams", {}),
    ("width.coord_check", "dlrepro.width.coord_check:CoordCheckSection", {}),
    ("data.text", "dlrepro.data.text:TextSettings", {}),
    # mnist_source is the source of MNIST's settings (CIFAR-10 has only "official")
    ("data.images", "dlrepro.data.images:ImageSettings", {"mnist_source": "source"},
     lambda cls: cls().for_dataset("mnist")),
    ("init.fluctuations", "dlrepro.init.fluctuations:FluctuationParams", {}),
    ("init.ntk", "dlrepro.init.ntk:NTKParams", {}),
    ("init.width_sweep", "dlrepro.init.sweep:WidthSweepParams", {}),
    ("init.training", "dlrepro.init.training:TrainParams", {}),
    ("init.analysis", "dlrepro.init.cli:AnalysisParams", {}),
    ("linreg", "dlrepro.linreg:LinregParams", {}),
    ("vae.train", "dlrepro.vae.cli:TrainParams", {}),
    ("vae.classifier", "dlrepro.vae.cli:ClassifierParams", {}),
    ("vae.sample", "dlrepro.vae.cli:SampleParams", {}),
    ("vae.eval", "dlrepro.vae.cli:EvalParams", {}),
    ("conformers.prepare", "dlrepro.conformers.dataset:PrepareParams", {}),
    ("conformers.geom", "dlrepro.conformers.dataset:GeomParams", {}),
    ("conformers.train", "dlrepro.conformers.module:TrainParams", {}),
    ("conformers.sample", "dlrepro.conformers.cli:SampleParams", {}),
    ("conformers.eval", "dlrepro.conformers.metrics:EvalParams", {}),
    ("scaling.fit", "dlrepro.scaling.sweeps:ScalingParams", {}),
]


def schema_node(schema: dict, path: str) -> dict:
    node = schema
    for part in path.split("."):
        node = _resolve(node, schema)["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            node = _resolve(node, schema)["items"]
    return _resolve(node, schema)


def direct_call_values(cls, make=None, instance=None) -> dict:
    """Field name -> the value a call without that key gets (tuples as lists); a field
    without a default is left out."""
    if instance is None:
        try:
            instance = make(cls) if make else cls()
        except TypeError:  # a required field: the declared defaults, unresolved
            instance = None
    out = {}
    for f in dataclasses.fields(cls):
        if instance is not None:
            value = getattr(instance, f.name)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def compare(schema: dict, node: dict, values: dict, renames: dict, where: str, name: str,
            found: set) -> int:
    compared = 0
    for key, sub in node.get("properties", {}).items():
        sub = _resolve(sub, schema)
        field = renames.get(key, key)
        if field not in values or "default" not in sub:
            continue
        value = values[field]
        if dataclasses.is_dataclass(value) and "properties" in sub:
            # an object whose default ({} here) the validator fills from its properties'
            # defaults; a key the object's default sets overrides its property's
            given = sub["default"]
            nested = {k: _resolve(v, schema) for k, v in sub["properties"].items()}
            nested = {k: {**v, "default": given[k]} if k in given else v for k, v in nested.items()}
            compared += compare(schema, {"properties": nested}, direct_call_values(type(value), instance=value), {},
                                f"{where}.{key}", f"{name}.{field}", found)
            continue
        compared += 1
        if value != sub["default"]:
            found.add((f"{where}.{key}", f"{name}.{field}"))
    return compared


def differences() -> tuple[set, int]:
    schema = load_schema()
    found, compared = set(), 0
    for path, target, renames, *make in PAIRS:
        module, name = target.split(":")
        cls = getattr(importlib.import_module(module), name)
        values = direct_call_values(cls, *make)
        compared += compare(schema, schema_node(schema, path), values, renames, path.removesuffix("[]"), name,
                            found)
    return found, compared


def test_the_schema_and_the_parameter_classes_agree_on_defaults():
    found, compared = differences()
    assert compared > 150  # every pair was read
    assert not found, f"defaults that differ between the schema and the code (one home: align them): {sorted(found)}"


def test_a_changed_default_is_found(monkeypatch):
    """The check itself: a class default moved away from the schema's is reported."""
    from dlrepro.collapse import params

    @dataclasses.dataclass
    class Drifted(params.OptimConfig):
        lr: float = 2 * params.OptimConfig.lr

    monkeypatch.setattr(params, "OptimConfig", Drifted)
    found, _ = differences()
    assert ("collapse.optim.lr", "OptimConfig.lr") in found


def test_resolved_nested_and_renamed_defaults_are_compared(monkeypatch):
    """A default that __post_init__ resolves, one inside a nested parameter class, and a
    renamed key's: each drift is reported."""
    from dlrepro.conformers import module
    from dlrepro.conformers.egnn import EGNNConfig
    from dlrepro.data import images
    from dlrepro.vae import cli as vae_cli

    @dataclasses.dataclass
    class Drifted(module.TrainParams):
        model: EGNNConfig = dataclasses.field(default_factory=lambda: EGNNConfig(hidden=7))

    monkeypatch.setattr(vae_cli.TrainParams, "default_epochs", 5.0)
    monkeypatch.setattr(module, "TrainParams", Drifted)
    monkeypatch.setitem(images.DEFAULT_SOURCE, "mnist", "official")
    found, _ = differences()
    assert found == {
        ("vae.train.epochs", "TrainParams.epochs"),
        ("conformers.train.model.hidden", "TrainParams.model.hidden"),
        ("data.images.mnist_source", "ImageSettings.source"),
    }
