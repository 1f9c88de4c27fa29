"""profiles/slurm, run for real against a single-node SLURM cluster on this machine.

The session fixture starts the cluster with ``tests/slurm_cluster.sh start`` (munge,
MariaDB, slurmdbd, slurmctld, slurmd; packages installed when missing) and stops it
afterwards if it started it. The tests are skipped, with the harness's reason, only where
the packages cannot be installed (no apt-get, no root, no network).

The profile is used unchanged; test-only settings are on the command line:
``--slurm-init-seconds-before-status-checks 2`` (the first status check after 2 s instead
of 40, so that short jobs are seen finished quickly) and ``--cores`` set to the test
node's CPU count (the profile's per-batch limit for job groups is sized for real nodes).

What is checked:

* the smoke preset (its data, collapse and width stages: ``SLURM_STAGES``) runs under
  ``--profile profiles/slurm`` (account and partition from the environment); every job
  that is not a local rule is submitted with sbatch and ``sacct`` shows it COMPLETED; the
  results are byte-identical to those of the local run of the preset;
* a training job killed by SLURM at its time limit is resubmitted (the profile's
  ``retries``) and resumes from its last checkpoint;
* a training job's GPU request (``compute.train_resources.gpu`` / ``cpus_per_gpu``)
  reaches SLURM: ``sacct`` shows ``gres/gpu=1`` requested and ``cpus_per_gpu`` CPUs
  allocated (the test node offers one stand-in GPU);
* (in the first test) the job groups of profiles/slurm batch the width sweep's small
  trainings into fewer sbatch jobs, with the same results.
"""

from __future__ import annotations

import collections
import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import (PRESETS, ROOT, SNAKEMAKE, copy_workdir, dry_run_jobs, result_files, snakemake,
                            write_override)

# (make test runs a file's tests on one pytest-xdist worker, --dist loadfile: the cluster is
# a session fixture, started once and stopped by the worker that started it)
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

HARNESS = ROOT / "tests" / "slurm_cluster.sh"
TRAIN_GEN0 = "collapse_train_gen0"  # the training rule the focused tests run
PROFILE = ROOT / "profiles" / "slurm"
SMOKE_PRESET = str(PRESETS / "smoke.yaml")
# test-only speed-up: first status check after 2 s (the executor's default is 40 s)
FAST = ["--slurm-init-seconds-before-status-checks", "2"]
SKIP_EXIT = 3  # the harness's exit code for "packages missing and not installable"
# "Job 7 has been submitted with SLURM jobid 12 (log: .../slurm_logs/rule_<rule>/...)"
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/(?:rule|group)_([\w-]+)/")


# ---- the cluster ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    """Environment under which clients and Snakemake reach the test cluster."""
    if shutil.which("bash") is None:
        pytest.skip("the SLURM harness needs bash")
    proc = subprocess.run([str(HARNESS), "start"], capture_output=True, text=True, timeout=1200)
    if proc.returncode == SKIP_EXIT:
        pytest.skip("no local SLURM cluster: " + proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, f"tests/slurm_cluster.sh start failed:\n{proc.stdout}\n{proc.stderr}"
    started_here = "already running" not in proc.stderr
    exports = subprocess.run([str(HARNESS), "env"], capture_output=True, text=True, check=True)
    env = dict(re.findall(r"(\w+)=(\S+)", exports.stdout))
    yield env
    if started_here:
        subprocess.run([str(HARNESS), "stop"], capture_output=True, text=True, timeout=300)


def slurm_cmd(*args: str, env: dict[str, str]) -> str:
    """Run a SLURM client command against the test cluster; its stdout."""
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60,
                          env={**os.environ, **env}).stdout


def sacct(job_ids, env) -> list[dict[str, str]]:
    """One record per job allocation (no steps), with the rule name from the job comment."""
    assert job_ids, "no SLURM job ids to look up"
    fields = ["JobID", "State", "Comment", "ReqTRES", "AllocTRES"]
    out = slurm_cmd("sacct", "-X", "-n", "-P", "-j", ",".join(map(str, job_ids)),
                    "-o", ",".join(fields), env=env)
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]
    for r in rows:
        # the executor's comment: rule_<name> or rule_<name>_wildcards_<values>
        r["rule"] = re.sub(r"^rule_|_wildcards_.*$", "", r["Comment"])
    return rows


def node_size(env: dict[str, str]) -> list[str]:
    """``--cores``: the test node's CPU count, to which a job group (batch) must fit, in
    place of the profile's per-batch limit sized for real nodes."""
    return ["--cores", slurm_cmd("sinfo", "-h", "-o", "%c", env=env).split()[0]]


def run_slurm(*args: str, workdir: Path, env: dict, mirror: Path, check: bool = True):
    return snakemake("--profile", str(PROFILE), *FAST, *node_size(env), *args, workdir=workdir,
                     check=check, env={**env, "DLREPRO_DATA_MIRROR": str(mirror)}, timeout=1800)


def submitted_ids(output: str, rule: str | None = None) -> list[str]:
    """SLURM job ids of the jobs Snakemake submitted (of one rule, if given), in order."""
    return [jid for jid, name in SUBMITTED.findall(output) if rule in (None, name)]


def executed_jobs(workdir: Path) -> collections.Counter:
    """Jobs per rule that ran in ``workdir``, from Snakemake's metadata (a record per output
    file naming its rule and log; every rule has a log, so (rule, log) is one job)."""
    jobs = set()
    for f in (workdir / ".snakemake" / "metadata").iterdir():
        meta = json.loads(f.read_text())
        jobs.add((meta["rule"], tuple(meta.get("log") or [f.name])))
    return collections.Counter(rule for rule, _ in jobs)


def local_rules() -> set[str]:
    """The rules run on the submitting host: the Snakefile's ``localrules`` and the rules
    marked ``localrule: True``."""
    text = (ROOT / "Snakefile").read_text()
    block = text.split("localrules:", 1)[1].split("\n\n", 1)[0]
    names = {n.strip() for n in block.replace("\n", ",").split(",") if n.strip()}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.S | re.M):
            if re.search(r"^    localrule: True", body, re.M):
                names.add(rule)
    return names


def profile_settings() -> dict:
    """profiles/slurm/config.yaml."""
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def smallest_gen0_model(smoke_run: Path) -> Path:
    """The quickest training job of the smoke preset: its smallest generation-0 LM."""
    models = sorted((smoke_run / "results" / "collapse").glob("*/seed*/gen0/model.pt"))
    if not models:
        pytest.skip("the smoke preset trains no collapse generation-0 model")
    return min(models, key=lambda p: p.stat().st_size).relative_to(smoke_run)


# ---- tests -----------------------------------------------------------------------------
# The stages the SLURM run covers: every kind of job (downloads and bookkeeping on the
# submit host; data preparation, training, sampling, mixing and evaluation chained over
# generations and policies; the width sweep's grouped batches), in 3-4 minutes on a 2-core
# machine (the whole smoke preset took 6). tests/test_reliability.py compares two complete
# local runs.
SLURM_STAGES = ["data", "collapse", "width"]


def test_smoke_preset_under_slurm_equals_local_run(slurm_env, mirror, tmp_path, request):
    """(The local run of the whole preset, ``smoke_run``, is asked for only after the SLURM
    run, which it does not need: under pytest-xdist another worker builds it meanwhile.)"""
    work = tmp_path / "slurm"
    stages = write_override(tmp_path, {"stages": SLURM_STAGES})
    args = ["--configfile", SMOKE_PRESET, stages]
    expected = dry_run_jobs(work, *args, env={"DLREPRO_DATA_MIRROR": str(mirror)})
    assert {"collapse_train", "collapse_sample", "width_run"} <= set(expected), expected
    proc = run_slurm(*args, workdir=work, env=slurm_env, mirror=mirror)
    out = proc.stdout + proc.stderr

    # which jobs ran (Snakemake's metadata: one record per output, its rule and log) and
    # which of them were submitted (sacct); the rest ran on the submit host. The output's
    # job lines are the rules' messages, which do not say whether a job was local.
    executed = executed_jobs(work)
    assert executed == collections.Counter(expected), (dict(executed), expected)
    ids = submitted_ids(out)
    records = sacct(ids, slurm_env)
    assert sorted(r["JobID"] for r in records) == sorted(ids)
    not_completed = [(r["rule"], r["JobID"], r["State"]) for r in records if r["State"] != "COMPLETED"]
    assert not not_completed, f"SLURM jobs not COMPLETED: {not_completed}"
    # jobs of grouped rules went in batches (one sbatch job per group-components of them:
    # comment rule_<group>_<rules>), every other job in a job of its own
    settings = profile_settings()
    batched = {rule: n for rule, n in expected.items() if rule in settings["groups"]}
    is_batch = re.compile("^rule_({})_".format("|".join(map(re.escape, settings["group-components"]))))
    batches = collections.Counter(is_batch.match(r["Comment"]).group(1)
                                  for r in records if is_batch.match(r["Comment"]))
    for group, size in settings["group-components"].items():
        members = sum(n for rule, n in batched.items() if settings["groups"][rule] == group)
        assert batches[group] == -(-members // size), (group, members, size, dict(batches))
    on_slurm = collections.Counter(r["rule"] for r in records if not is_batch.match(r["Comment"]))
    local = executed - on_slurm - collections.Counter(batched)
    assert not set(on_slurm) & local_rules(), f"local rules submitted: {set(on_slurm) & local_rules()}"
    assert set(local) <= local_rules(), f"submittable rules run on the submit host: {set(local) - local_rules()}"
    assert on_slurm + local == collections.Counter(expected) - collections.Counter(batched), (
        f"jobs per rule: sbatch {dict(on_slurm)} + local {dict(local)} + batched {batched}"
        f" != dry run {expected}")
    assert not any("train" in rule for rule in local), f"training ran on the submit host: {local}"

    # the same results as the local run of the whole preset: byte for byte
    smoke_run = request.getfixturevalue("smoke_run")
    files = result_files(work)
    assert files <= result_files(smoke_run), sorted(files - result_files(smoke_run))
    assert {f.split("/")[0] for f in files} == {"data", "collapse", "width", "figures", "run.yaml"}
    # run.yaml records how each run was called (this one with fewer stages): the same preset, not the same bytes
    import yaml

    ran = [yaml.safe_load((w / "results" / "run.yaml").read_text()) for w in (work, smoke_run)]
    assert ran[0]["preset"] == ran[1]["preset"] == "smoke", ran
    differ = [f for f in sorted(files - {"run.yaml"})
              if not filecmp.cmp(work / "results" / f, smoke_run / "results" / f, shallow=False)]
    assert not differ, f"results that differ from the local run: {differ}"


# The smoke preset's smallest LM trained for this many epochs: a few checkpoints' worth.
RESUME_EPOCHS = 4


def training_processes(work: Path) -> list[int]:
    """PIDs of the ``dlrepro collapse train`` processes running in ``work`` (the job's)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"dlrepro" in cmdline and b"collapse" in cmdline and b"train" in cmdline \
                and Path(cwd) == work:
            pids.append(int(proc.name))
    return pids


def test_training_job_killed_at_its_time_limit_is_retried_and_resumes(slurm_env, smoke_run,
                                                                      mirror, tmp_path):
    """SLURM kills the running training job for exceeding its time limit (its end time
    set to now: state TIMEOUT); the profile's retries resubmit it, and the new job resumes
    from the last checkpoint instead of starting over.

    (A job cancelled by a user, ``scancel``, ends as "CANCELLED by <uid>", which
    snakemake-executor-plugin-slurm 2.8 does not recognise as failed: Snakemake would wait
    for it forever. Time limits, node failures and preemption are handled.)"""
    target = smallest_gen0_model(smoke_run)
    work = copy_workdir(smoke_run, tmp_path / "work")
    longer = write_override(tmp_path, {"collapse": {"optim": {"epochs": RESUME_EPOCHS}}})
    args = [str(target), "--configfile", SMOKE_PRESET, longer]
    env = {**os.environ, **slurm_env, "DLREPRO_DATA_MIRROR": str(mirror)}
    todo = dry_run_jobs(work, *args, env=env)
    assert todo.get(TRAIN_GEN0) == 1 and sum(todo.values()) <= 2, todo  # one training job

    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(work), "--profile", str(PROFILE),
           *FAST, *node_size(slurm_env), *args]
    log_path = tmp_path / "snakemake.out"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            deadline = time.monotonic() + 600
            ckpt = None
            while ckpt is None and proc.poll() is None and time.monotonic() < deadline:
                ckpt = next((work / "results" / ".checkpoints").rglob("last.ckpt"), None)
                time.sleep(0.2)
            assert ckpt is not None, f"no checkpoint appeared:\n{log_path.read_text()[-4000:]}"
            first = submitted_ids(log_path.read_text(), TRAIN_GEN0)
            assert len(first) == 1, log_path.read_text()[-4000:]
            # Freeze the training (SIGSTOP) so that SLURM's time-limit check, which runs every
            # 30 s, always finds it mid-run, however fast this machine trains; SLURM's
            # SIGKILL ends a stopped process like a running one.
            pids = training_processes(work)
            assert pids, "the training process was not found"
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            slurm_cmd("scontrol", "update", f"JobId={first[0]}", "EndTime=now", env=slurm_env)
            rc = proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = log_path.read_text()
    assert rc == 0, out[-6000:]

    ids = submitted_ids(out, TRAIN_GEN0)
    assert len(ids) == 2 and ids[0] == first[0], f"expected one resubmission: {ids}\n{out[-4000:]}"
    states = {r["JobID"]: r["State"] for r in sacct(ids, slurm_env)}
    assert states == {ids[0]: "TIMEOUT", ids[1]: "COMPLETED"}, (
        f"{states}: expected the first job killed at its time limit, the second completed")
    # the second attempt resumed from the checkpoint and trained only the remaining steps
    _, stage, model, seed, gen, _ = target.parts  # results/collapse/<model>/seed<s>/gen0/model.pt
    train_log = (work / "results" / "logs" / stage / model / seed / f"{gen}_train.log").read_text()
    resumed = re.search(r"resumed at step (\d+)/(\d+)", train_log)
    assert resumed and int(resumed.group(1)) > 0, train_log[-3000:]
    metrics = json.loads((work / target.parent / "train_metrics.json").read_text())
    assert metrics["steps"] == int(resumed.group(2)) and metrics["epochs"] == RESUME_EPOCHS
    assert not list((work / "results" / ".checkpoints").rglob("last.ckpt"))  # cleaned up


def test_gpu_request_reaches_slurm(slurm_env, smoke_run, mirror, tmp_path):
    target = smallest_gen0_model(smoke_run)
    work = copy_workdir(smoke_run, tmp_path / "work")
    for name in ("model.pt", "train_metrics.json"):
        (work / target.parent / name).unlink()
    cpus_per_gpu = 2
    # two devices: DDP inside the one SLURM job (gloo on the CPU; the stand-in GPU has no CUDA)
    gpu = write_override(tmp_path, {"compute": {
        "devices": 2, "train_resources": {"gpu": 1, "cpus_per_gpu": cpus_per_gpu}}})
    proc = run_slurm(str(target), "--configfile", SMOKE_PRESET, gpu, workdir=work,
                     env=slurm_env, mirror=mirror)
    (record,) = sacct(submitted_ids(proc.stdout + proc.stderr, TRAIN_GEN0), slurm_env)
    assert record["rule"] == TRAIN_GEN0 and record["State"] == "COMPLETED", record
    assert "gres/gpu=1" in record["ReqTRES"].split(","), record
    alloc = record["AllocTRES"].split(",")
    assert "gres/gpu=1" in alloc and f"cpu={cpus_per_gpu}" in alloc, record
    metrics = json.loads((work / target.parent / "train_metrics.json").read_text())
    local = json.loads((smoke_run / target.parent / "train_metrics.json").read_text())
    assert metrics["settings"]["devices"] == 2
    assert abs(metrics["val_loss"] - local["val_loss"]) <= 1e-4 * local["val_loss"], (metrics, local)


def test_profile_groups_name_rules_of_the_workflow(tmp_path):
    """A group assignment for a rule that does not exist is silently ignored by Snakemake:
    catch a renamed rule. (No cluster needed.)"""
    grouped = set(profile_settings()["groups"])
    listed = snakemake("--list-rules", workdir=tmp_path).stdout
    rules = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert grouped <= rules, f"profiles/slurm groups rules that do not exist: {sorted(grouped - rules)}"
