"""`python -m dlrepro plan`: the cost plan of a configuration (dlrepro.plan).

- it runs in seconds on the paper preset without the data, without importing torch, and
  prints the table and the totals;
- its job counts are Snakemake's (``snakemake -n`` of the same config, per rule);
- ``--strict`` exits 1 naming the job and both numbers when an estimate exceeds a
  deliberately small request (runtime, mem_mb), 0 when nothing does;
- its training FLOPs for the default preset's LM agree with ``torch.utils.flop_counter``
  within 10%, and its peak-memory estimate of that training job with the measured peak RSS
  of a real ``collapse train`` job within 25%.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "workflow" / "presets" / "paper.yaml"
SMOKE = ROOT / "workflow" / "presets" / "smoke.yaml"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "workflow"), str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("DLREPRO_WARM_SOCKET", None)
    return env


def run_plan(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dlrepro", "plan", *map(str, args)], capture_output=True,
                          text=True, env=_env(), cwd=cwd or ROOT, timeout=120)


def test_paper_plan_runs_in_seconds_without_data_or_torch(tmp_path):
    proc = run_plan("--configfile", PAPER, "--results", tmp_path / "none", "--out", tmp_path / "plan.csv")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    n_jobs = re.search(r"plan of ([\d,]+) jobs on h100-sxm", out)
    assert n_jobs and int(n_jobs.group(1).replace(",", "")) > 1500, out
    assert re.search(r"collapse_train\[llama-126m\]\s+81\s", out), out
    total = re.search(r"total: ([\d,]+) jobs, ([\d.e+]+) FLOPs, ([\d,.]+) GPU-hours .* ([\d.]+) TB written", out)
    assert total, out
    assert float(total.group(3).replace(",", "")) > 10 and float(total.group(4)) > 0
    assert "documented figures" in out  # no manifests: the per-data-set figures were used
    import pandas as pd

    df = pd.read_csv(tmp_path / "plan.csv")
    assert int(df.n_jobs.sum()) == int(n_jobs.group(1).replace(",", ""))  # (snakemake's count: below)
    # the table's own totals are the CSV's
    assert df.device_hours[df.gpu_request > 0].sum() == pytest.approx(float(total.group(3).replace(",", "")), rel=1e-2)
    # torch is never imported by the plan
    probe = subprocess.run([sys.executable, "-c",
                            "import sys; from dlrepro.plan.cli import main; "
                            f"main(['--configfile', {str(PAPER)!r}, '--results', {str(tmp_path)!r}]); "
                            "print('TORCH', 'torch' in sys.modules)"],
                           capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert "TORCH False" in probe.stdout, probe.stderr[-2000:]


def test_strict_names_the_job_and_both_numbers(tmp_path):
    ok = run_plan("--configfile", PAPER, "--results", tmp_path, "--config",
                  "compute={light_resources: {mem_mb: 16000}}", "--strict")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr
    small = run_plan("--configfile", PAPER, "--results", tmp_path, "--strict",
                     "--config", "compute={train_resources: {runtime: 30}}",
                     "--config", "compute={light_resources: {mem_mb: 16000}}")
    assert small.returncode == 1, small.stdout[-2000:]
    m = re.search(r"--strict: (\d+) job\(s\) exceed their request, e\.g\. (\S+): estimated ([\d,]+) min > "
                  r"runtime request 30 min", small.stderr)
    assert m, small.stderr
    assert m.group(2).startswith(("collapse_", "conformers_", "width_", "scaling_"))
    assert int(m.group(3).replace(",", "")) > 30
    assert "llama-126m" in m.group(2)  # the worst overrun is named first
    assert "collapse_sample_gen1[model=llama-126m,seed=0]: estimated" in small.stdout
    mem = run_plan("--configfile", PAPER, "--results", tmp_path, "--strict",
                   "--config", "compute={train_resources: {mem_mb: 1000}}",
                   "--config", "compute={light_resources: {mem_mb: 16000}}")
    assert mem.returncode == 1
    assert re.search(r"estimated [\d,]+ MB > mem_mb request 1,000 MB", mem.stderr), mem.stderr
    bad = run_plan("--configfile", PAPER, "--config", "compute={plan: {mfu: 3}}")
    assert bad.returncode == 2 and "compute.plan.mfu" in bad.stderr and "Traceback" not in bad.stderr


def test_job_counts_are_snakemakes(tmp_path):
    """Per rule, the plan's jobs are those of ``snakemake -n`` (smoke and paper presets)."""
    from dlrepro.plan.cli import load_config
    from dlrepro.plan.stages import plan_jobs

    for preset in (SMOKE, PAPER):
        # in an empty working directory: every job is to be run
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n", "--quiet",
                               "rules", "--configfile", str(preset), "--directory", str(tmp_path)],
                              capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
        counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", proc.stdout, re.M)}
        assert counts.get("total"), proc.stdout[-3000:] + proc.stderr[-3000:]
        _, jobs = plan_jobs(load_config([str(preset)], []), tmp_path / "no-data")
        ours: dict[str, int] = {}
        for j in jobs:
            ours[j.rule] = ours.get(j.rule, 0) + 1
        heavy = {r for r in counts if r != "total" and not r.endswith(("_figure", "_summary", "_drawing", "_grid"))}
        for rule in sorted(heavy):
            assert ours.get(rule) == counts[rule], (preset.name, rule, ours.get(rule), counts[rule])
        assert abs(len(jobs) - counts["total"]) <= 0.02 * counts["total"], (len(jobs), counts["total"])


def _default_lm_job(tmp_path):
    from dlrepro.plan.cli import load_config
    from dlrepro.plan.jobs import transformer_shape
    from dlrepro.plan.stages import plan_jobs

    cfg = load_config([], [])
    ctx, jobs = plan_jobs(cfg, tmp_path)
    job = next(j for j in jobs if j.rule == "collapse_train_gen0")
    m = cfg["collapse"]["models"][0]
    return cfg, ctx, job, transformer_shape(m, cfg["data"]["text"]["vocab_size"])


def test_default_lm_training_flops_match_flop_counter(tmp_path):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from dlrepro.models.transformer import Transformer, TransformerConfig

    cfg, ctx, job, shape = _default_lm_job(tmp_path)
    m = cfg["collapse"]["models"][0]
    B, T = cfg["collapse"]["optim"]["batch_size"], m["block_size"]
    model = Transformer(TransformerConfig(vocab_size=shape.vocab_size, **{k: v for k, v in m.items() if k != "name"}))
    x = torch.randint(0, shape.vocab_size, (B, T))
    counter = FlopCounterMode(display=False)
    # the math kernel: its matrix products are counted (the fused CPU kernel is not)
    with counter, sdpa_kernel(SDPBackend.MATH):
        _, loss = model(x, x)
        loss.backward()
    measured = counter.get_total_flops() / (B * T)
    planned = job.flops / job.work  # the job's FLOPs per trained token (validation included)
    assert planned == pytest.approx(measured, rel=0.10), (planned, measured)
    assert shape.train_flops_per_token() == pytest.approx(measured, rel=0.01)
    assert shape.n_params() == sum(p.numel() for p in model.parameters())


def test_training_job_peak_memory_matches_measured_rss(tmp_path):
    """A real `collapse train` job of the default preset's LM (on a generated token file of
    the default corpus's size): measured peak RSS vs the plan's estimate for that job."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.data_path import Setup, _dataset, _spec_args, _train_args, run_child

    cfg, ctx, job, shape = _default_lm_job(tmp_path)
    m = cfg["collapse"]["models"][0]
    setup = Setup(vocab_size=shape.vocab_size, d_model=m["d_model"], n_layer=m["n_layer"], n_head=m["n_head"],
                  block_size=m["block_size"], batch_size=cfg["collapse"]["optim"]["batch_size"], steps=10,
                  threads=1)
    n_tokens = int(job.work) or 1 << 19  # the default corpus's training tokens
    folder = tmp_path / "data"
    _dataset(folder, n_tokens, setup, seed=0)
    _dataset(tmp_path / "val", 1 << 13, setup, seed=1)
    run_child("dlrepro", _spec_args(setup, folder), tmp_path / "spec.json")
    train = run_child("dlrepro", _train_args(setup, folder, n_tokens, tmp_path / "val" / "train.npy"),
                      tmp_path / "train.json")
    assert job.host_mb == pytest.approx(train["peak_rss_mb"], rel=0.25), (job.host_mb, train["peak_rss_mb"])


def test_prepared_manifests_replace_the_documented_figures(tmp_path):
    """The plan reads a prepared corpus's manifest when its settings are the config's, and
    falls back to the documented figures when they are not (another vocabulary)."""
    import json

    from dlrepro.plan.cli import load_config
    from dlrepro.plan.stages import plan_jobs

    cfg = load_config([], [])
    text = cfg["data"]["text"]
    folder = tmp_path / "data" / cfg["collapse"]["dataset"]
    folder.mkdir(parents=True)
    settings = {k: text[k] for k in ("vocab_size", "val_fraction", "test_fraction", "max_documents", "token_dtype")}
    splits = {"train": {"n_documents": 10_000, "n_tokens": 2_000_001, "n_chars": 4_000_000},
              "val": {"n_documents": 500, "n_tokens": 100_000, "n_chars": 200_000},
              "test": {"n_documents": 1000, "n_tokens": 200_000, "n_chars": 400_000}}
    manifest = {"settings": {**settings, "seed": cfg["seed"]}, "splits": splits}
    (folder / "manifest.json").write_text(json.dumps(manifest))

    def gen0(c):
        _, jobs = plan_jobs(c, tmp_path)
        return next(j for j in jobs if j.rule == "collapse_train_gen0")

    job = gen0(cfg)
    B, T = cfg["collapse"]["optim"]["batch_size"], cfg["collapse"]["models"][0]["block_size"]
    epochs = cfg["collapse"]["optim"]["epochs"]
    steps = math.ceil(epochs * (2_000_000 // T // B))  # `epochs` passes over the manifest's windows
    assert job.work == steps * B * T
    other = load_config([], ["data={text: {vocab_size: 1024}}"])
    assert gen0(other).work != job.work  # the manifest is for vocab 512: figures instead


def test_plan_takes_snakemakes_config_form(tmp_path):
    """One --config form everywhere (#32): plan builds from Snakemake's form the config that
    check-config (and so the Snakefile) builds, merging nested keys; a dotted key is refused
    by both with the same one-line hint."""
    from dlrepro.config import ConfigError, check_snakemake_args
    from dlrepro.plan.cli import load_config

    args = ["--configfile", str(SMOKE), "--config", "collapse={generations: 2, optim: {lr: 0.002}}", "seed=3",
            "--config", "compute={train_resources: {runtime: 45}}"]
    ours = load_config([str(SMOKE)], args[3:5] + args[6:])
    assert ours == check_snakemake_args(["-n", *args])
    assert ours["collapse"]["generations"] == 2 and ours["collapse"]["optim"]["lr"] == 0.002 and ours["seed"] == 3
    assert ours["collapse"]["models"] == load_config([str(SMOKE)], [])["collapse"]["models"]  # merged, not replaced
    assert ours["compute"]["train_resources"]["runtime"] == 45
    with pytest.raises(ConfigError) as dotted:
        load_config([], ["collapse.generations=2"])
    with pytest.raises(ConfigError) as same:
        check_snakemake_args(["-n", "--config", "collapse.generations=2"])
    assert str(dotted.value) == str(same.value) and "--config 'collapse={generations: 2}'" in str(same.value)
    proc = run_plan("--configfile", SMOKE, "--results", tmp_path, "--brief",
                    "--config", "collapse={generations: 2}", "scaling={data_sweep: {fractions: [0.25, 0.5, 1.0]}}")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_the_plan_follows_the_width_stages_own_defaults(monkeypatch, tmp_path):
    """Every default has one home: the planner reads the width stage's parameter objects
    (dlrepro.width.params), so a default changed there changes the plan, with no copy to
    update."""
    from dataclasses import dataclass

    from dlrepro.plan.cli import load_config
    from dlrepro.plan.stages import plan_jobs
    from dlrepro.width import params

    cfg = load_config([], [])
    assert cfg["width"]["mlp"] and "steps" not in cfg["width"]["mlp"]["train"]  # the default applies

    def mlp_cells():
        _, jobs = plan_jobs(cfg, tmp_path)
        cells = [j for j in jobs if j.kind == "width_run[mlp]"]
        assert cells
        return sum(j.work for j in cells), cells[0].notes

    work, notes = mlp_cells()
    assert any(f"x {params.MLPParams.steps:,} steps" in n for n in notes), notes

    @dataclass
    class LongerMLP(params.MLPParams):
        steps: int = 2 * params.MLPParams.steps

    monkeypatch.setitem(params.PARAMS_CLASSES, "mlp", LongerMLP)
    longer, notes = mlp_cells()
    assert longer == 2 * work
    assert any(f"x {2 * params.MLPParams.steps:,} steps" in n for n in notes), notes
