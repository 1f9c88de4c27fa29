"""The guarantees of the README's "Guarantees" section, each proved here.

Incremental reruns are checked with dry runs against one finished smoke run; resume and
determinism run real jobs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SMOKE, SNAKEMAKE, copy_workdir, dry_run_jobs, result_files, smoke_with, snakemake

pytestmark = pytest.mark.slow
# (These tests run one after another on one pytest-xdist worker, --dist loadfile: a module
# edited by test_editing_a_package_module_reruns_the_rules_that_use_it would make another's
# dry run in the shared smoke run see jobs to rerun.)


def test_finished_run_has_nothing_to_do(smoke_run):
    assert dry_run_jobs(smoke_run) == {}


def test_config_resaved_unchanged_reruns_nothing(smoke_run, tmp_path):
    # the same values written by hand in another file, other key order
    import yaml

    preset = yaml.safe_load((ROOT / "workflow" / "presets" / "smoke.yaml").read_text())
    resaved = dict(reversed(list(preset.items())))
    assert dry_run_jobs(smoke_run, *smoke_with(tmp_path, resaved)) == {}


def test_unrelated_file_touched_reruns_nothing(smoke_run):
    (ROOT / "README.md").touch()
    (ROOT / "tests" / "conftest.py").touch()
    assert dry_run_jobs(smoke_run) == {}


def test_figure_style_reruns_only_figures(smoke_run, tmp_path):
    jobs = dry_run_jobs(smoke_run, *smoke_with(tmp_path, {"figures": {"dpi": 100}}))
    assert jobs, "a style change must rerun the figures"
    assert all(r.endswith(("_figure", "_drawing", "_grid")) or r.startswith("report") for r in jobs), jobs


def test_more_generations_rerun_only_new_generations_and_aggregations(smoke_run, tmp_path):
    jobs = dry_run_jobs(smoke_run, *smoke_with(tmp_path, {"collapse": {"generations": 3}}))
    policies = 2  # smoke: replace, accumulate
    assert jobs.get("collapse_train") == policies and jobs.get("collapse_mix") == policies
    assert jobs.get("collapse_sample") == policies  # synthetic corpus 3 of each chain
    assert jobs.get("collapse_evaluate") == policies
    assert "collapse_train_gen0" not in jobs and "collapse_sample_gen1" not in jobs
    assert {r for r in jobs if not r.startswith("collapse")} <= {"report_summary", "report_claims",
                                                                 "curves_table", "curves_figure"}


def test_new_policy_reruns_only_that_policy(smoke_run, tmp_path):
    new = {"collapse": {"policies": ["replace", "accumulate", "accumulate-subsample"]}}
    jobs = dry_run_jobs(smoke_run, *smoke_with(tmp_path, new))
    generations = 2
    assert jobs.get("collapse_train") == generations
    assert "collapse_train_gen0" not in jobs and "collapse_sample_gen1" not in jobs
    assert {r for r in jobs if not r.startswith("collapse")} <= {"report_summary", "report_claims",
                                                                 "curves_table", "curves_figure"}


def test_one_width_added_reruns_that_widths_jobs_fits_and_figures(smoke_run, tmp_path):
    override = {"width": {"mlp": {"widths": [16, 32, 64, 128]}}}  # the smoke preset's, plus 128
    proc = snakemake("-n", *smoke_with(tmp_path, override), workdir=smoke_run)
    jobs = dry_run_jobs(smoke_run, *smoke_with(tmp_path, override))
    # one training job per parametrization, for the new width only
    # the job lines are the rules' messages (width_run: "width · <model> · <arm> · <param> · width <w>: ...")
    trained = re.findall(r"width · mlp · online · (\w+) · width (\d+): train", proc.stdout)
    assert sorted(trained) == [("mup", "128"), ("sp", "128")], trained
    assert jobs.pop("width_run") == 2
    # then the width aggregations (the coordinate check spans all widths), the width-sweep
    # scaling fit and the figures and summary that read them
    assert set(jobs) <= {"width_coord_check", "width_merge", "width_agreement", "width_ensembles",
                         "width_figure", "width_coord_check_figure", "scaling_fits", "scaling_figure",
                         "report_summary", "report_claims"}, jobs
    assert {"width_merge", "width_figure", "scaling_fits"} <= set(jobs)


def test_generation0_hyperparameter_reruns_all_of_collapse_and_nothing_else(smoke_run, tmp_path):
    jobs = dry_run_jobs(smoke_run, *smoke_with(tmp_path, {"collapse": {"optim": {"lr": 0.002}}}))
    assert jobs.get("collapse_train_gen0") == 1
    assert jobs.get("collapse_train") == 4  # 2 policies x 2 generations
    # the scaling stage's data-size sweep trains the same model with the same settings
    others = {r for r in jobs if not r.startswith("collapse")}
    assert others <= {"report_summary", "report_claims", "curves_table", "curves_figure", "scaling_data_train", "scaling_data_table", "scaling_fits",
                      "scaling_figure"}, others
    assert not any(r.startswith(("vae", "conformers", "linreg", "init", "prepare", "download")) for r in jobs)


def test_editing_a_package_module_reruns_the_rules_that_use_it(smoke_run):
    # Snakemake records checksums of small inputs and ignores a newer mtime when the
    # content is unchanged, so this edits the module's content (a comment), as a user would.
    module = ROOT / "workflow" / "dlrepro" / "linreg.py"
    original, stat = module.read_bytes(), module.stat()
    try:
        module.write_bytes(original + b"\n# edited by a test\n")
        os.utime(module, (time.time() + 5, time.time() + 5))
        jobs = dry_run_jobs(smoke_run)
        # touching without changing the content reruns nothing
        module.write_bytes(original)
        os.utime(module, (time.time() + 5, time.time() + 5))
        touched = dry_run_jobs(smoke_run)
    finally:
        module.write_bytes(original)
        os.utime(module, (stat.st_atime, stat.st_mtime))
    assert set(jobs) - {"report_summary", "report_claims"} == {"linreg_simulate", "linreg_check", "linreg_figure"}
    assert not touched, touched


def _train_target(work: Path) -> str:
    return "results/collapse/gpt2-tiny/seed0/gen0/model.pt"


def test_killed_training_resumes_and_matches_uninterrupted(smoke_run, mirror, tmp_path):
    """SIGKILL a training job mid-run; --rerun-incomplete resumes it from its checkpoint
    and ends with exactly the weights and metrics of an uninterrupted run. (Both runs
    start from copies of the smoke run, whose prepared data they reuse: only the training
    job runs.)"""
    env = {**os.environ, "DLREPRO_DATA_MIRROR": str(mirror)}
    # more steps than the smoke preset, so there is time to kill it after a checkpoint
    cfg = smoke_with(tmp_path, {"collapse": {"optim": {"epochs": 3.0}}, "stages": ["collapse"]})
    full, killed = (copy_workdir(smoke_run, tmp_path / name) for name in ("full", "killed"))
    assert dry_run_jobs(full, _train_target(full), *cfg) == {"collapse_train_gen0": 1}
    snakemake(_train_target(full), *cfg, workdir=full, env={"DLREPRO_DATA_MIRROR": str(mirror)})

    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(killed), _train_target(killed), *cfg]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ckpt = killed / "results/.checkpoints/collapse/gpt2-tiny/seed0/gen0/last.ckpt"
    deadline = time.time() + 600
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), "the training job never wrote a checkpoint"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / _train_target(killed)).exists()  # no declared output left behind

    # a killed snakemake leaves its lock behind; unlock, then rerun the incomplete job
    snakemake("--unlock", *cfg, workdir=killed)
    snakemake(_train_target(killed), "--rerun-incomplete", *cfg, workdir=killed,
              env={"DLREPRO_DATA_MIRROR": str(mirror)})
    log = (killed / "results/logs/collapse/gpt2-tiny/seed0/gen0_train.log").read_text()
    assert "resumed at step" in log
    import torch

    a = torch.load(full / _train_target(full), weights_only=False)
    b = torch.load(killed / _train_target(killed), weights_only=False)
    sa, sb = a["state_dict"], b["state_dict"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not ckpt.parent.exists()  # checkpoints are removed once the outputs exist


def test_two_runs_from_scratch_give_byte_identical_results(mirror, tmp_path, request):
    """Determinism: a second run of the smoke preset from scratch reproduces every file of
    the first (tables, arrays, JSON, model weights and figures) byte for byte. (The first,
    ``smoke_run``, is asked for after the second: under pytest-xdist the two may run at once.)"""
    second = tmp_path / "second"
    second.mkdir()
    snakemake(*SMOKE, workdir=second, env={"DLREPRO_DATA_MIRROR": str(mirror)}, timeout=1800)
    smoke_run = request.getfixturevalue("smoke_run")
    files = result_files(smoke_run)
    assert result_files(second) == files
    assert any(f.endswith(".csv") for f in files) and any(f.endswith(".pt") for f in files)
    differ = [f for f in sorted(files)
              if (smoke_run / "results" / f).read_bytes() != (second / "results" / f).read_bytes()]
    assert not differ, f"files that differ between two runs of the same config: {differ}"


def test_two_device_ddp_training_job_matches_the_one_device_job(smoke_run, mirror, tmp_path):
    """``compute.devices: 2`` on CPU: the generation-0 LM trains with DDP (gloo, two
    processes started by Lightning inside the one job); only rank 0 writes the outputs, and
    the model equals the one-device model of the smoke run (same global batch, no dropout)
    up to float rounding."""
    import json

    target = "results/collapse/gpt2-tiny/seed0/gen0/train_metrics.json"
    work = copy_workdir(smoke_run, tmp_path / "work")
    args = smoke_with(tmp_path, {"compute": {"devices": 2}})
    assert dry_run_jobs(work, target, *args) == {"collapse_train_gen0": 1}
    snakemake(target, *args, workdir=work, env={"DLREPRO_DATA_MIRROR": str(mirror)})
    log = (work / "results/logs/collapse/gpt2-tiny/seed0/gen0_train.log").read_text()
    assert "as rank 0 of 2 (DDP, gloo backend)" in log and "as rank 1 of 2 (DDP, gloo backend)" in log, log[-3000:]
    ddp = json.loads((work / target).read_text())
    one = json.loads((smoke_run / target).read_text())
    assert ddp["settings"]["devices"] == 2 and one["settings"]["devices"] == 1
    assert ddp["steps"] == one["steps"]
    assert abs(ddp["val_loss"] - one["val_loss"]) <= 1e-4 * one["val_loss"], (ddp["val_loss"], one["val_loss"])
