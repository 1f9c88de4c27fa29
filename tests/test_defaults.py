"""Every default has one home. Where a config block is passed to a stage's command as its
``--params`` and the command's parameter class has defaults of its own, the two homes
must agree: the schema's default is what the workflow runs, the class's is what a direct
call (a test, a user at the command line, the planner's probe) gets. Known differences are
listed below with what each would take to remove; the test fails on a new difference and
on a listed one that has gone (remove it from the list). The planner keeps no copies (see
tests/test_plan.py::test_the_plan_follows_the_width_stages_own_defaults)."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from dlrepro.config import _resolve, load_schema

# config block -> parameter class that takes it as --params (module:Class), key renames
PAIRS = [
    ("collapse.optim", "dlrepro.collapse.params:OptimConfig", {}),
    ("collapse.sampling", "dlrepro.collapse.params:SamplingParams", {}),
    ("collapse.eval", "dlrepro.collapse.params:EvalParams", {}),
    ("collapse.models[]", "dlrepro.collapse.params:ModelParams", {}),
    ("width.coord_check", "dlrepro.width.coord_check:CoordCheckSection", {}),
    ("data.text", "dlrepro.data.text:TextSettings", {}),
    ("data.images", "dlrepro.data.images:ImageSettings", {"mnist_source": "source"}),
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

# (config key, class field): the schema and the class disagree. To remove one, give the
# class the schema's value (checking the tests that call the class without the key), or,
# where the class's value means something else, say so here.
KNOWN_DIFFERENCES = {
    ("init.ntk.depths", "NTKParams.depths"),
    ("init.width_sweep.chunk_size", "WidthSweepParams.chunk_size"),  # speed only
    ("vae.train.epochs", "TrainParams.epochs"),  # None: the class's default_epochs, unless max_steps
    ("vae.classifier.epochs", "ClassifierParams.epochs"),  # idem
    ("data.images.mnist_source", "ImageSettings.source"),  # the rule passes the config's source
    ("conformers.prepare.n_train_molecules", "PrepareParams.n_train_molecules"),
    ("conformers.prepare.n_test_molecules", "PrepareParams.n_test_molecules"),
    ("conformers.prepare.conformers_per_molecule", "PrepareParams.conformers_per_molecule"),
    ("conformers.train.model", "TrainParams.model"),  # {} in the schema: the class's EGNNConfig
    ("conformers.train.diffusion", "TrainParams.diffusion"),  # {} in the schema: its DiffusionConfig
    ("conformers.train.epochs", "TrainParams.epochs"),
    ("conformers.train.lr", "TrainParams.lr"),
}


def schema_node(schema: dict, path: str) -> dict:
    node = schema
    for part in path.split("."):
        node = _resolve(node, schema)["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            node = _resolve(node, schema)["items"]
    return _resolve(node, schema)


def class_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return dataclasses.MISSING
    return list(value) if isinstance(value, tuple) else value


def differences() -> tuple[set, int]:
    schema = load_schema()
    found, compared = set(), 0
    for path, target, renames in PAIRS:
        module, name = target.split(":")
        cls = getattr(importlib.import_module(module), name)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, sub in schema_node(schema, path).get("properties", {}).items():
            field = fields.get(renames.get(key, key))
            if field is None or "default" not in sub:
                continue
            default = class_default(field)
            if default is dataclasses.MISSING:
                continue
            compared += 1
            if default != sub["default"]:
                found.add((f"{path.removesuffix('[]')}.{key}", f"{name}.{field.name}"))
    return found, compared


def test_the_schema_and_the_parameter_classes_agree_on_defaults():
    found, compared = differences()
    assert compared > 150  # every pair was read
    new = sorted(found - KNOWN_DIFFERENCES)
    assert not new, f"defaults that differ between the schema and the code (one home: align them): {new}"
    gone = sorted(KNOWN_DIFFERENCES - found)
    assert not gone, f"no longer different, remove from KNOWN_DIFFERENCES: {gone}"


def test_a_changed_default_is_found(monkeypatch):
    """The check itself: a class default moved away from the schema's is reported."""
    from dlrepro.collapse import params

    @dataclasses.dataclass
    class Drifted(params.OptimConfig):
        lr: float = 2 * params.OptimConfig.lr

    monkeypatch.setattr(params, "OptimConfig", Drifted)
    found, _ = differences()
    assert ("collapse.optim.lr", "OptimConfig.lr") in found
