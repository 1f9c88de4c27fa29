"""The workflow itself, through Snakemake: dry runs, lint, the data stage end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import PRESETS, ROOT, snakemake

PROFILE_CPU = str(ROOT / "profiles" / "cpu")


def preset_args(preset: str) -> list[str]:
    return [] if preset == "default" else ["--configfile", str(PRESETS / f"{preset}.yaml")]


@pytest.mark.parametrize("preset", ["default", "smoke", "paper"])
def test_dry_run_every_preset_with_cpu_profile(preset, tmp_path):
    proc = snakemake("-n", "--profile", PROFILE_CPU, *preset_args(preset), workdir=tmp_path)
    assert "This was a dry-run" in proc.stdout
    assert "rule all" in proc.stdout or "all" in proc.stdout
    assert not (tmp_path / "results").exists()


def test_lint_passes(tmp_path):
    proc = snakemake("--lint", workdir=tmp_path)
    assert "Congratulations" in proc.stdout + proc.stderr


def test_bad_config_fails_before_any_job_and_names_the_key(tmp_path):
    proc = snakemake("--profile", PROFILE_CPU, "--config", "seed=-3", workdir=tmp_path, check=False)
    assert proc.returncode != 0
    assert "config key 'seed': -3 is less than the minimum of 0" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_slurm_profile_without_account_is_a_clear_error(tmp_path):
    env = {"DLREPRO_SLURM_ACCOUNT": "", "DLREPRO_SLURM_PARTITION": ""}
    proc = snakemake("--profile", str(ROOT / "profiles" / "slurm"), workdir=tmp_path,
                     env=env, check=False, timeout=300)
    assert proc.returncode != 0
    assert "DLREPRO_SLURM_ACCOUNT and DLREPRO_SLURM_PARTITION" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()  # stopped before any job


@pytest.mark.slow
def test_data_stage_end_to_end_on_smoke_preset(smoke_run, tmp_path):
    """The data stage's outputs in the shared run of the smoke preset, and a run of the
    data stage alone (``stages=[data]``) finds nothing left to do there."""
    args = ["--profile", PROFILE_CPU, *preset_args("smoke"), "--config", "stages=[data]"]
    data = smoke_run / "results" / "data"
    man = json.loads((data / "tinyshakespeare" / "manifest.json").read_text())
    assert man["vocab_size"] == 512 and man["splits"]["train"]["n_documents"] > 1000
    train = np.load(data / "tinyshakespeare" / "train.npy", mmap_mode="r")
    assert train.size == man["splits"]["train"]["n_tokens"]
    images = np.load(data / "mnist" / "train_images.npy", mmap_mode="r")
    assert images.shape == (1000, 1, 28, 28)
    # every rule wrote its log; no temporary files were left behind
    logs = sorted(p.relative_to(smoke_run / "results" / "logs").as_posix()
                  for p in (smoke_run / "results" / "logs").rglob("*.log"))
    assert "data/prepare_text/tinyshakespeare.log" in logs and "data/prepare_images/mnist.log" in logs
    assert not [p for p in (smoke_run / "results").rglob("*") if p.name.endswith((".tmp", ".part"))]
    # nothing left to do; changing only the mirror reruns nothing
    again = snakemake("-n", *args, workdir=smoke_run, env={"DLREPRO_DATA_MIRROR": str(tmp_path)})
    assert "Nothing to be done" in again.stdout + again.stderr
