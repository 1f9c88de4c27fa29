"""The benchmarks runner and the training, MFU and workflow-scale benchmarks at tiny sizes.

Timing ratios are not asserted (machines are noisy); what is asserted is that each
benchmark measures what it says: the baseline does the same computation, FLOP counts are
right, job counts are read from Snakemake.
"""

import json

import pytest

from benchmarks import check
from benchmarks import denormals, mfu, training_overhead, workflow_scale
from benchmarks.__main__ import NAMES, main, table


def test_check_rows_compare_with_their_target():
    assert check("a", 1.0, target=0.95)["ok"] is True
    assert check("a", 0.9, target=0.95)["ok"] is False
    assert check("t", 16.0, "s", target=15.0, higher_is_better=False)["ok"] is False
    assert check("t", 3.0)["ok"] is None


def test_training_overhead_baseline_is_the_same_computation():
    result = training_overhead.benchmark(training_overhead.QUICK)
    (size,) = result["sizes"]
    # same weights, batches, optimizer, schedule and clipping on both sides
    assert size["final_loss"]["plain"] == pytest.approx(size["final_loss"]["lightning"], rel=1e-5)
    assert size["plain_tokens_per_s"] > 0 and size["lightning_tokens_per_s"] > 0
    assert size["lightning_startup_s"] >= 0
    ratio = result["checks"][0]
    assert ratio["target"] == 0.95 and ratio["value"] == pytest.approx(size["ratio"])


def test_denormals_baseline_is_the_same_computation():
    from dlrepro.conformers import egnn

    before, clamp_at = denormals.flushing(), egnn.RBF_MIN_EXPONENT
    result = denormals.benchmark(denormals.QUICK)
    assert denormals.flushing() == before  # the thread's flag is restored
    assert egnn.RBF_MIN_EXPONENT == clamp_at  # and the model's clamp
    # same weights, batches and noise on every side: each remedy changes only subnormal numbers
    rate, loss = result["steps_per_s"], result["final_loss"]
    assert set(rate) == set(loss) == {"as_run", "no_flush", "no_clamp"}
    for side in ("no_flush", "no_clamp"):
        assert loss[side] == pytest.approx(loss["as_run"], rel=1e-5)
    assert all(r > 0 for r in rate.values())
    flush, clamp = result["checks"]
    assert flush["value"] == pytest.approx(rate["as_run"] / rate["no_flush"])
    assert clamp["value"] == pytest.approx(rate["as_run"] / rate["no_clamp"])


def test_flops_per_token_counts_matmuls_and_attention():
    # GPT-2 small: ~85M non-embedding + 38.6M readout parameters, context 1024
    n = 85_000_000 + 50304 * 768
    assert mfu.flops_per_token(n, 12, 768, 1024) == 6 * n + 12 * 12 * 768 * 1024
    # a 1-layer model with context 1 is all 6N
    assert mfu.flops_per_token(1000, 1, 8, 1) == 6000 + 96


def test_mfu_quick_run_reports_a_ratio_of_measured_rates():
    result = mfu.benchmark(mfu.QUICK)
    assert result["device"] == "cpu" and result["peak_matmul_flops"] > 0
    assert result["mfu"] == pytest.approx(result["achieved_flops"] / result["peak_matmul_flops"])
    assert result["achieved_flops"] == pytest.approx(result["tokens_per_s"] * result["flops_per_token"])
    assert 0 < result["mfu"] < 5  # a ratio of two measured rates, not a constant
    assert result["checks"][0]["target"] is None  # d_model 64 is below the d_model >= 256


def test_job_count_is_read_from_the_stats_table():
    out = "Job stats:\njob      count\n-----  -------\nall          1\ntrain      12\ntotal       13\n"
    assert workflow_scale.count_jobs(out) == 13
    with pytest.raises(RuntimeError, match="no job count"):
        workflow_scale.count_jobs("Nothing to be done")


def test_machine_speed_is_a_positive_rate_and_restores_the_thread_count():
    import torch

    threads = torch.get_num_threads()
    small = workflow_scale.machine_speed(n=64, repeats=5)
    assert 0 < small < 1e4  # GFLOP/s of one core: neither zero nor absurd
    assert torch.get_num_threads() == threads


@pytest.mark.slow
def test_runner_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["workflow_scale", "--quick", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    (result,) = payload["results"]
    (dry,) = result["dry_runs"]
    assert dry["preset"] == "smoke" and dry["jobs"] > 20 and dry["wall_s"] > 0
    speed = result["checks"][0]
    assert speed["unit"] == "GFLOP/s" and speed["value"] > 0
    assert payload["machine"]["cores"] >= 1
    printed = capsys.readouterr().out
    assert "snakemake -n, smoke preset" in printed and f"wrote {out}" in printed


def test_runner_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit):
        main(["nope"])
    assert "unknown benchmark" in capsys.readouterr().err


def test_table_marks_missed_targets():
    rows = table([{"benchmark": "b", "checks": [check("fast", 0.5, "x", target=1.0), check("n", 3)]}])
    assert "FAIL" in rows and ">= 1" in rows
    assert "FAIL" not in table([{"benchmark": "b", "checks": [check("fast", 0.5, "x", target=1.0)]}],
                               verdicts=False)
    assert set(NAMES) == {"training_overhead", "sampling", "mfu", "data_path", "workflow_scale", "scaling_fit",
                          "denormals"}
