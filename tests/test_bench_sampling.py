"""The sampling benchmark at tiny sizes: ours and Hugging Face generate compute the same thing.

Timing ratios are not asserted (machines are noisy); what is asserted is that the baselines
are faithful: same weights (logits agree), same greedy tokens, same sampled tokens for the
same seed, exactly the requested number of new tokens or the forced document lengths, the
cache memory formula, and the check rows the runner prints.
"""

import dataclasses
import json

import pytest
import torch

from benchmarks import use_bench_packages  # noqa: E402

use_bench_packages()  # where `make test` / `make bench` install transformers (.venv/bench)
pytest.importorskip("transformers")

from benchmarks import sampling as bench  # noqa: E402


SETUP = dataclasses.replace(bench.QUICK, threads=torch.get_num_threads() + 1)  # not the caller's


@pytest.fixture(scope="module")
def result():
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    out = bench.benchmark(SETUP)
    # the caller's thread count and global RNG are left as they were
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), rng)
    return out


def test_quick_run_is_json(result):
    json.dumps(result)
    assert result["benchmark"] == bench.NAME == "sampling"
    assert result["setup"] == dataclasses.asdict(SETUP)


def test_ours_and_hf_generate_the_same_tokens(result):
    (case,) = result["cases"]
    assert case["max_logit_diff"] < 1e-4  # our weights, copied into GPT2LMHeadModel
    # token for token: greedy on the same weights, and sampling from the same seed (the same
    # multinomial draws over the same probabilities: HF applies no top-k or other processing)
    assert case["greedy"]["tokens_equal"] == 1.0
    assert case["sampled"]["tokens_equal"] == 1.0
    assert case["sampled"]["temperature"] == bench.QUICK.temperature > 0
    assert case["greedy"]["temperature"] == 0
    for mode in ("greedy", "sampled"):
        m = case[mode]
        assert len(m["ours_runs"]) == len(m["hf_runs"]) == bench.QUICK.repeats
        assert m["ours_tokens_per_s"] > 0 and m["hf_tokens_per_s"] > 0
        assert m["ratio"] == pytest.approx(m["ours_tokens_per_s"] / m["hf_tokens_per_s"])
    no_cache = result["no_cache"]
    assert no_cache["cache_tokens_per_s"] > 0 and no_cache["no_cache_tokens_per_s"] > 0
    assert no_cache["tokens_equal"] == 1.0  # both paths draw the same random numbers


def test_checks_have_the_issue_targets(result):
    checks = {c["metric"]: c for c in result["checks"]}
    name, new = bench.QUICK.cases[0].name, bench.QUICK.no_cache.new_tokens
    assert checks[f"{name}: greedy tokens/s ours/HF"]["target"] == 1.0
    assert checks[f"{name}: T=1 tokens/s ours/HF"]["target"] == 1.0
    assert checks[f"KV cache vs no cache, {new} new tokens"]["target"] is None  # only from 256 tokens
    assert bench.Setup().no_cache.new_tokens == 256 and bench.no_cache_target(256) == 3.0
    assert checks[f"{name}: greedy tokens/s ours/HF"]["value"] == result["cases"][0]["greedy"]["ratio"]
    corpus = bench.QUICK.corpus[0].name
    assert checks[f"{corpus} corpus: useful tokens/s continuous/static"]["target"] == 1.5
    assert checks[f"{corpus} corpus: useful tokens/s continuous/HF"]["target"] is None
    assert checks[f"{corpus} corpus: useful tokens/s continuous/static"]["value"] == result["corpus"][0]["ratio_static"]
    assert checks["KV cache, tiny at the paper's sampling batch and context"]["unit"] == "GiB"
    assert len(checks) == 6
    assert [m.name for m in bench.Setup().memory_models] == ["gpt2-9m", "llama-12m", "llama-42m", "llama-126m"]


def test_corpus_sides_do_the_same_work(result):
    """Continuous, static and HF sample documents of the forced lengths; static and HF draw the
    same tokens (same batches, same seed), and so do greedy continuous and HF."""
    (c,) = result["corpus"]
    assert c["static_hf_tokens_equal"] and c["greedy_hf_tokens_equal"]
    assert 0 < c["mean_length"] <= c["max_new_tokens"] == c["case"]["block_size"] - 1
    assert c["useful_tokens"] == round(c["mean_length"] * c["case"]["n_documents"])
    for side in ("continuous", "static", "hf"):
        assert c[f"{side}_tokens_per_s"] > 0 and len(c[f"{side}_runs"]) == bench.QUICK.repeats
    assert c["ratio_static"] == pytest.approx(c["continuous_tokens_per_s"] / c["static_tokens_per_s"])
    assert 0 < c["static_row_step_efficiency"] <= 1
    assert result["lengths_source"]  # where the document lengths came from


def test_forced_lengths_give_exact_document_lengths():
    model = bench.our_model(bench.QUICK.corpus[0].as_case(), 64, seed=1)
    lengths = torch.tensor([0, 3, 23, 7, 1, 12, 30, 5, 9])  # 23 = max_new_tokens; 30 is capped
    capped = lengths.clamp(max=23)
    for side in (bench._continuous_corpus, bench._static_corpus):
        for t in (0.0, 1.0):
            docs = side(model, capped, 4, t, 0)
            assert [d.size for d in docs] == capped.tolist()
            assert all(not (d == bench.EOS).any() for d in docs)


def test_cache_memory_formula_matches_the_allocation(result):
    (m,) = result["memory"]
    assert m["measured"] and m["cache_bytes"] == m["formula_bytes"] and m["cache_dtype"] == "torch.bfloat16"
    pm = bench.QUICK.memory_models[0]
    assert m["formula_bytes"] == 2 * pm.n_layer * bench.QUICK.memory_batch * bench.QUICK.memory_max_new_tokens \
        * pm.d_model * 2


def test_hf_model_has_our_shape_and_weights():
    case = bench.QUICK.cases[0]
    ours, hf = bench.make_models(case, 64, seed=3)
    c = hf.config
    assert (c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head) == (64, case.block_size, case.d_model,
                                                                            case.n_layer, case.n_head)
    assert c.activation_function == "gelu_new" and c.tie_word_embeddings
    w = ours.transformer.h[0].attn.c_attn.weight
    assert torch.equal(hf.transformer.h[0].attn.c_attn.weight, w.t())  # Conv1D stores the transpose
    x = torch.randint(0, 64, (2, case.block_size))
    with torch.no_grad():
        assert torch.allclose(ours(x)[0], hf(x).logits, atol=1e-5)
