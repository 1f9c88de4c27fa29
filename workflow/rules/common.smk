# Helpers and config validation shared by every stage. Included first by the Snakefile.

import json
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

ROOT = Path(workflow.basedir)
PKG_DIR = ROOT / "workflow"
sys.path.insert(0, str(PKG_DIR))  # the package is importable without installation

from dlrepro.config import ConfigError, validate_config
from dlrepro.data import registry as _registry
from dlrepro.smk import missing_slurm_env, module_sources, prepare_environment

try:
    _validated = validate_config(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None
config.clear()
config.update(_validated)
prepare_environment(PKG_DIR, config)



onstart:
    # the executor is known only once execution starts (not while the Snakefile is parsed)
    if workflow.executor_plugin.name == "slurm" and missing_slurm_env():
        raise WorkflowError(
            "profiles/slurm needs the environment variables "
            + " and ".join(missing_slurm_env())
            + " (the SLURM account and partition jobs are submitted to), e.g.\n"
            "  export DLREPRO_SLURM_ACCOUNT=myaccount DLREPRO_SLURM_PARTITION=gpu"
        )


RESULTS = "results"
LOGS = f"{RESULTS}/logs"
CKPT = f"{RESULTS}/.checkpoints"  # resumable training state, outside every rule's outputs
DATA = f"{RESULTS}/data"
RAW = f"{DATA}/raw"
FIGURES = f"{RESULTS}/figures"
ENV = "../../envs/dlrepro.yaml"  # conda env of every rule (relative to workflow/rules)

# every stage appends the files `snakemake` (rule all) builds for it
TARGETS = []


def all_targets():
    return TARGETS


def code(*modules):
    """The package source files a command imports: listed as a rule's inputs, so editing a
    module reruns exactly the rules whose command uses it (mtime trigger)."""
    return module_sources(*[f"dlrepro.{m}" for m in modules])


def stage_on(name):
    return name in config["stages"]


def as_json(obj):
    """A param value: canonical JSON, so an unchanged config never reruns a rule."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


FIGURE_STYLE = as_json(config["figures"])


def _res(kind):
    r = config["compute"][kind]
    out = {"mem_mb": r["mem_mb"], "runtime": r["runtime"]}
    if r["gpu"]:
        out.update(gpu=r["gpu"], cpus_per_gpu=r["cpus_per_gpu"])
    return out


TRAIN_RESOURCES = _res("train_resources")
TRAIN_THREADS = config["compute"]["train_resources"]["threads"]
LIGHT_RESOURCES = _res("light_resources")


def compute_params():
    """The compute block passed to training commands (dlrepro.training.TrainSettings)."""
    c = config["compute"]
    return {
        "accelerator": c["accelerator"],
        "devices": c["devices"],
        "precision": c["precision"],
        "compile": c["compile"],
        "num_threads": c["num_threads"] or TRAIN_THREADS,
    }


# ---- data stage helpers ------------------------------------------------------------
TEXT_SETS = [n for n, d in _registry.DATASETS.items() if d.kind == "text"]
IMAGE_SETS = [n for n, d in _registry.DATASETS.items() if d.kind == "images"]


def raw_files(dataset):
    subset = "all"
    if dataset == "mnist" and config["data"]["images"]["mnist_source"] == "test-file":
        subset = "test-only"
    return [f"{RAW}/{dataset}/{f.name}" for f in _registry.files_for(dataset, subset)]


def text_outputs(dataset):
    return {
        "manifest": f"{DATA}/{dataset}/manifest.json",
        "tokenizer": f"{DATA}/{dataset}/tokenizer.json",
        **{s: f"{DATA}/{dataset}/{s}.npy" for s in ("train", "val", "test")},
    }


def image_outputs(dataset):
    return {
        "manifest": f"{DATA}/{dataset}/manifest.json",
        **{
            f"{s}_{a}": f"{DATA}/{dataset}/{s}_{a}.npy"
            for s in ("train", "test")
            for a in ("images", "labels")
        },
    }


def image_params(dataset):
    images = config["data"]["images"]
    return as_json(
        {
            "source": images["mnist_source"] if dataset == "mnist" else "official",
            "test_fraction": images["test_fraction"],
            "max_train": images["max_train"],
            "seed": config["seed"],
        }
    )


def prepared(dataset):
    """The manifest of a prepared data set (the file other stages depend on)."""
    return f"{DATA}/{dataset}/manifest.json"


# data sets to prepare: config data.prepare plus what each enabled stage adds
DATA_NEEDED = set(config["data"]["prepare"])
