# Helpers and config validation shared by every stage. Included first by the Snakefile.

import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

ROOT = Path(workflow.basedir)
PKG_DIR = ROOT / "workflow"
sys.path.insert(0, str(PKG_DIR))  # the package is importable without installation

from dlrepro.config import ConfigError, check_config_paths, coerce_overrides, validate_config
from dlrepro.data import needed as _needed, registry as _registry
from dlrepro.smk import WarmStart, cancel_pending_timers, missing_slurm_env, module_sources, prepare_environment

# Errors in --configfile files and --config entries themselves are raised by Snakemake
# before this runs (`python -m dlrepro check-config`, run by `make run`, names them); from
# here on, every problem is one line naming the key path and the value.
try:
    _validated = validate_config(coerce_overrides(config, workflow.config_settings.config))
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None
config.clear()
config.update(_validated)
prepare_environment(PKG_DIR, config)
_warm = WarmStart()  # started in onstart, on local runs
_RUN_START = []  # when execution started (onstart): results/logs/run_time.json



onstart:
    import time as _time

    _RUN_START.append(_time.time())
    # folders the config names (data mirror, GEOM): checked before any job, but not in a
    # dry run, which shows the plan of a config whose folders are not there yet
    try:
        check_config_paths(config)
    except ConfigError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None
    # the executor is known only once execution starts (not while the Snakefile is parsed)
    if workflow.executor_plugin.name == "slurm" and missing_slurm_env():
        raise WorkflowError(
            "profiles/slurm needs the environment variables "
            + " and ".join(missing_slurm_env())
            + " (the SLURM account and partition jobs are submitted to), e.g.\n"
            "  export DLREPRO_SLURM_ACCOUNT=myaccount DLREPRO_SLURM_PARTITION=gpu"
        )
    _why_cold = WarmStart.wanted(
        config["compute"]["warm_start"],
        workflow.executor_plugin.name,
        workflow.dryrun,
        bool(workflow.deployment_settings.deployment_method),
        config["compute"]["accelerator"],
    )
    if _why_cold is None:
        _warm.start(f"{LOGS}/warm_start.log")
    else:
        logger.info(f"warm start off: {_why_cold}")


onsuccess:
    _warm.stop()
    cancel_pending_timers()  # the scheduler's re-run timers (profiles/cpu: max-jobs-per-timespan)
    # what made results/ (dlrepro.report.provenance), and a last line saying where it is
    from dlrepro.report import provenance as _prov

    _prov.record(RESULTS, config, workflow.config_settings.configfiles, workflow.config_settings.config, ROOT)
    if _RUN_START:
        import time as _time

        _prov.record_timing(RESULTS, _RUN_START[0], _time.time(), ".snakemake/metadata")
    if stage_on("report") and Path(RESULTS, "summary.md").exists():
        import atexit

        _args = _prov.read(RESULTS).get("args", "")
        atexit.register(print, _prov.done_line(RESULTS, _args), flush=True)


onerror:
    _warm.stop()
    cancel_pending_timers()


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


def run_seed(run):
    """The seed of a run folder (``.../seed<s>/...``)."""
    return re.search(r"seed(\d+)", run).group(1)


def run_tag(run):
    """``--policy P --generation G`` of a run folder ``gen0`` or ``<policy>/gen<g>``."""
    if run == "gen0":
        return "--policy real --generation 0"
    policy, gen = Path(run).parts[0], re.search(r"gen(\d+)$", run).group(1)
    return f"--policy {policy} --generation {gen}"


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
        "logger": c["logger"],
        "logger_dir": f"{RESULTS}/trackers",
    }


# ---- data stage helpers ------------------------------------------------------------
TEXT_SETS = [n for n, d in _registry.DATASETS.items() if d.kind == "text"]
IMAGE_SETS = [n for n, d in _registry.DATASETS.items() if d.kind == "images"]


def raw_files(dataset):
    return [f"{RAW}/{dataset}/{f.name}" for f in _registry.files_for(dataset, _needed.raw_subset(config, dataset))]


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


# data sets the enabled stages read, data.prepare with the data stage (dlrepro.data.needed)
DATA_NEEDED = _needed.datasets_needed(config)


#: set by `make run` / `make smoke`, whose check-config has already printed the warnings
CONFIG_CHECKED_ENV = "DLREPRO_CONFIG_CHECKED"


def check_offline_data():
    """Before any job: each file a preparation still needs that the mirror lacks is named on
    a line of its own (its URL, where to put it offline), unless check-config has just said
    so ($DLREPRO_CONFIG_CHECKED=1); with data.allow_network false, in one line that ends the
    run (dlrepro.data.needed.check_data, as check-config)."""
    try:
        lines = _needed.check_data(config, results=RESULTS)
        if os.environ.get(CONFIG_CHECKED_ENV) != "1":
            for line in lines:
                print(line, file=sys.stderr)
    except ConfigError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None


# ---- linreg stage helpers --------------------------------------------------
LINREG = f"{RESULTS}/linreg"


# ---- collapse stage helpers ------------------------------------------------
COL = f"{RESULTS}/collapse"
CC = config["collapse"]
COL_DATA = f"{DATA}/{CC['dataset']}"
COL_MODELS = {m["name"]: {k: v for k, v in m.items() if k != "name"} for m in CC["models"]}


def col_run(model, seed):
    return f"{COL}/{model}/seed{seed}"


def col_params(model, *sections, **override):
    """The --params of a collapse command: only the sections it reads, so that e.g. a
    sampling change never retrains a model; ``override`` replaces whole sections."""
    full = {
        "name": model,
        "model": COL_MODELS[model],
        "optim": CC["optim"],
        "compute": compute_params(),
        "sampling": CC["sampling"],
        "eval": CC["eval"],
        **override,
    }
    return as_json({k: full[k] for k in ("name", *sections)})


def col_model(model, seed, policy, gen):
    gen = int(gen)
    run = col_run(model, seed)
    return f"{run}/gen0/model.pt" if gen == 0 else f"{run}/{policy}/gen{gen}/model.pt"


def col_synthetic(model, seed, policy, gen):
    """The corpus sampled from the model of generation gen - 1 on this policy's chain."""
    gen = int(gen)
    run = col_run(model, seed)
    return f"{run}/synthetic1" if gen == 1 else f"{run}/{policy}/synthetic{gen}"


def col_synthetic_dirs(wc):
    return [col_synthetic(wc.model, wc.seed, wc.policy, g) for g in range(1, int(wc.gen) + 1)]


def col_all_models():
    out = []
    for model in COL_MODELS:
        for seed in CC["seeds"]:
            out.append(col_model(model, seed, None, 0))
            for policy in CC["policies"]:
                out += [col_model(model, seed, policy, g) for g in range(1, CC["generations"] + 1)]
    return out


# ---- vae stage helpers -----------------------------------------------------
VC = config["vae"]
VAE = f"{RESULTS}/vae"
VAE_DATA = f"{DATA}/mnist"
def vae_params(section):
    c = compute_params()
    if section in ("train", "classifier"):
        return as_json({**VC[section], "compute": c})
    return as_json({**VC[section], "num_threads": c["num_threads"]})


def vae_run(seed, policy, gen):
    gen = int(gen)
    return f"{VAE}/seed{seed}/gen0" if gen == 0 else f"{VAE}/seed{seed}/{policy}/gen{gen}"


def vae_pools(wc):
    """Sample dirs of this chain's generations 0..g-1: the synthetic pools 1..g."""
    return [f"{vae_run(wc.seed, wc.policy, k)}/samples" for k in range(int(wc.gen))]


def vae_runs():
    out = []
    for seed in VC["seeds"]:
        out.append(vae_run(seed, None, 0))
        for policy in VC["policies"]:
            out += [vae_run(seed, policy, g) for g in range(1, VC["generations"] + 1)]
    return out


def vae_grid_sets():
    seed = VC["seeds"][0]
    return [f"{vae_run(seed, None, 0)}/samples"] + [
        f"{vae_run(seed, p, g)}/samples" for p in VC["policies"] for g in range(1, VC["generations"] + 1)
    ]


# ---- conformers stage helpers ----------------------------------------------
CF = config["conformers"]
CONF = f"{RESULTS}/conformers"
CONF_DATA = f"{DATA}/conformers"
def cf_params(*sections):
    c = config["compute"]
    full = {
        "train": {**CF["train"], "compute": compute_params()},
        "sample": {**CF["sample"], "accelerator": c["accelerator"], "num_threads": compute_params()["num_threads"]},
        "eval": {**CF["eval"], "accelerator": c["accelerator"], "num_threads": compute_params()["num_threads"]},
    }
    (section,) = sections
    return as_json(full[section])


def cf_model(seed, policy, gen):
    gen = int(gen)
    return f"{CONF}/seed{seed}/gen0/model.pt" if gen == 0 else f"{CONF}/seed{seed}/{policy}/gen{gen}/model.pt"


def cf_synthetic(seed, policy, gen):
    gen = int(gen)
    return f"{CONF}/seed{seed}/synthetic1" if gen == 1 else f"{CONF}/seed{seed}/{policy}/synthetic{gen}"


def cf_synthetic_dirs(wc):
    return [cf_synthetic(wc.seed, wc.policy, g) for g in range(1, int(wc.gen) + 1)]


def cf_evals():
    out = []
    for seed in CF["seeds"]:
        out.append(f"{CONF}/seed{seed}/gen0/eval.json")
        for policy in CF["policies"]:
            out += [f"{CONF}/seed{seed}/{policy}/gen{g}/eval.json" for g in range(1, CF["generations"] + 1)]
    return out


def cf_sample_sets():
    """Synthetic sets 1..G of the first seed, per policy: samples of generations 0..G-1."""
    seed = CF["seeds"][0]
    return [
        cf_synthetic(seed, policy, g)
        for policy in CF["policies"]
        for g in range(1, CF["generations"] + 1)
    ]


# ---- width stage helpers ---------------------------------------------------
WC = config["width"]
WIDTH = f"{RESULTS}/width"
WIDTH_TEXT = config["collapse"]["dataset"]
WIDTH_CNN_DATA = _needed.width_cnn_dataset(config)
WIDTH_DATA = {"mlp": f"{DATA}/mnist", "lm": f"{DATA}/{WIDTH_TEXT}", "cnn": f"{DATA}/{WIDTH_CNN_DATA}"}
WIDTH_MODELS = ("mlp", "lm", "cnn")
def width_cells():
    cells = []
    for model in WIDTH_MODELS:
        section = WC.get(model)
        if not section:
            continue
        for arm, names in section["arms"].items():
            for param in WC["parametrizations"] if names is None else names:
                for w in section["widths"]:
                    cells.append(f"{WIDTH}/cells/{model}/{arm}/{param}/w{w}")
    return cells


def width_train_params(model):
    c = compute_params()
    return as_json({**WC[model]["train"], "compute": {k: c[k] for k in ("num_threads", "logger", "logger_dir")}})


# ---- init stage helpers ----------------------------------------------------
IC = config["init"]
INIT = f"{RESULTS}/init"
INIT_DATA = f"{DATA}/{IC['dataset']}"
def init_params(section):
    device = "cuda" if config["compute"]["accelerator"] == "gpu" else "cpu"
    c = compute_params()
    extra = {"seed": config["seed"]} if section != "training" else {k: c[k] for k in ("logger", "logger_dir")}
    return as_json({**IC[section], **extra, "device": device})


# ---- scaling stage helpers -------------------------------------------------
SC = config["scaling"]
SCALING = f"{RESULTS}/scaling"
SC_MODEL = SC["data_sweep"]["model"] or CC["models"][0]["name"]


def sc_runs():
    return [
        f"{SCALING}/data/{SC_MODEL}/frac{f}/seed{s}"
        for f in SC["data_sweep"]["fractions"]
        for s in SC["data_sweep"]["seeds"]
    ]


def sc_spec():
    fit = {k: v for k, v in SC["fit"].items()}
    sweeps = [
        {"name": "data", "csv": f"{SCALING}/data_sweep.csv", "x": "train_tokens", "y": "test_loss",
         "seed_column": "seed"}
    ]
    if stage_on("width"):
        sweeps.append(
            {"name": "width", "csv": f"{RESULTS}/width/curves.csv", "x": "n_params", "y": "test_loss",
             "group": "parametrization", "seed_column": "seed", "prepare": "width_sweep",
             "filter": {"model": SC["width_model"], "arm": "online"}}
        )
    return {**fit, "sweeps": sweeps}


# ---- report stage helpers --------------------------------------------------
from dlrepro.report.claims import STAGES as CLAIM_STAGES, module_name as claims_module


def claims_inputs():
    """The result tables each stage's claims module reads (dlrepro.<stage>.claims)."""
    tables = {
        "linreg": [f"{RESULTS}/linreg/summary.csv"],
        "collapse": [f"{RESULTS}/collapse/summary.csv"],
        "vae": [f"{RESULTS}/vae/summary.csv"],
        "conformers": [f"{RESULTS}/conformers/summary.csv"],
        "width": [f"{WIDTH}/lr_optimum.csv", f"{WIDTH}/lr_sweep.csv", f"{WIDTH}/coord_check.csv",
                  f"{WIDTH}/variance_slopes.csv"]
        + [f"{c}/{f}" for c in width_cells() if "/online/mup/" in c
           for f in ("meta.json", "probe_logits.npy", "probe_labels.npy")],
        "init": [f"{INIT}/{t}.csv" for t in ("shapes", "width_sweep", "training_comparison")],
        "scaling": [f"{SCALING}/fits.csv", f"{SCALING}/seed_fits.csv"],
    }
    return {s: tables[s] for s in CLAIM_STAGES if stage_on(s)}


def claims_code():
    """The package files of the report command and of every registered claims module."""
    return code("report.cli", *[claims_module(s).removeprefix("dlrepro.") for s in CLAIM_STAGES])


def summary_inputs():
    tables = {
        "linreg": f"{RESULTS}/linreg/check.json",
        "collapse": f"{RESULTS}/collapse/summary.csv",
        "vae": f"{RESULTS}/vae/summary.csv",
        "conformers": f"{RESULTS}/conformers/summary.csv",
        "width": f"{RESULTS}/width/lr_optimum.csv",
        "init": f"{RESULTS}/init/slopes.csv",
        "scaling": f"{RESULTS}/scaling/fits.csv",
    }
    return {k: v for k, v in tables.items() if stage_on(k)}


# ---- init stage helpers ------------------------------------------------------
def init_ratio_label(ratio):
    return f"{ratio:g}"


def init_figure_args(wildcards):
    """The init figure command's table arguments (INIT_FIGURE_INPUTS, in init.smk)."""
    return " ".join(f"--{k} {v}" for k, v in INIT_FIGURE_INPUTS[wildcards.kind].items())
