"""Tests of dlrepro.sampling: cache vs no cache, greedy limits, sampling distribution, eos, corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from torch.nn import functional as F

from dlrepro.models.transformer import Transformer, TransformerConfig
from dlrepro.sampling import SamplingConfig, batch_seed, generate, next_token, sample_documents

ARCHS = ["gpt2", "llama"]
V = 13


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the test machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(arch: str, block_size: int = 32, init_std: float = 0.3) -> Transformer:
    # a large init_std gives peaked, far-from-uniform next-token distributions
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=2, d_model=16,
                                         arch=arch, init_std=init_std)).eval()


def prompts(batch: int = 6, length: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def gen(model, cfg, seed=123, eos_id=None, p=None):
    return generate(model, prompts() if p is None else p, cfg, torch.Generator().manual_seed(seed), eos_id=eos_id)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("rule", [dict(temperature=0.0), dict(temperature=1.0), dict(temperature=0.8, top_k=5),
                                  dict(temperature=1.2, top_p=0.9)])
def test_cached_and_uncached_sampling_give_the_same_tokens(arch, rule):
    model = tiny(arch)
    cached = gen(model, SamplingConfig(max_new_tokens=20, use_cache=True, **rule), eos_id=2)
    recomputed = gen(model, SamplingConfig(max_new_tokens=20, use_cache=False, **rule), eos_id=2)
    assert cached.shape == (6, 23)
    assert torch.equal(cached, recomputed)
    if rule["temperature"] > 0:  # a different seed gives a different sample
        assert not torch.equal(cached, gen(model, SamplingConfig(max_new_tokens=20, **rule), seed=124, eos_id=2))


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_is_the_argmax_of_the_full_forward(arch):
    model = tiny(arch)
    out = gen(model, SamplingConfig(temperature=0.0, max_new_tokens=8))
    logits, _ = model(out[:, :-1])
    assert torch.equal(out[:, 3:], logits[:, 2:].argmax(-1))


@pytest.mark.parametrize("arch", ARCHS)
def test_low_temperature_and_top_k_1_are_greedy(arch):
    model = tiny(arch)
    greedy = gen(model, SamplingConfig(temperature=0.0, max_new_tokens=12))
    assert torch.equal(gen(model, SamplingConfig(temperature=1e-4, max_new_tokens=12)), greedy)
    assert torch.equal(gen(model, SamplingConfig(temperature=1.5, top_k=1, max_new_tokens=12)), greedy)
    assert not torch.equal(gen(model, SamplingConfig(temperature=1.5, max_new_tokens=12)), greedy)


def empirical_and_expected(cfg: SamplingConfig, n: int = 10000):
    """Counts of n one-token samples after a fixed prompt, and softmax(logits / T)."""
    model = tiny("llama")
    prompt = torch.tensor([[4, 7, 1]])
    with torch.no_grad():
        logits = model(prompt)[0][0, -1]
    out = gen(model, cfg, seed=7, p=prompt.repeat(n, 1))
    counts = np.bincount(out[:, -1].numpy(), minlength=V)
    return counts, F.softmax(logits.double() / cfg.temperature, dim=-1).numpy()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sampled_tokens_follow_softmax_of_logits_over_temperature(temperature):
    counts, probs = empirical_and_expected(SamplingConfig(temperature=temperature, max_new_tokens=1))
    assert probs.max() > 1.5 / V  # the distribution is far from uniform, so the test has power
    assert chisquare(counts, counts.sum() * probs).pvalue > 1e-3
    # a wrong temperature is rejected by the same test
    wrong = F.softmax(torch.log(torch.from_numpy(probs)) * 1.3, dim=-1).numpy()
    assert chisquare(counts, counts.sum() * wrong).pvalue < 1e-6


def test_top_k_and_top_p_sample_from_the_renormalised_head():
    cfg = SamplingConfig(temperature=1.0, top_k=4, max_new_tokens=1)
    counts, probs = empirical_and_expected(cfg)
    head = np.argsort(-probs)[:4]
    assert set(np.flatnonzero(counts)) == set(head)
    assert chisquare(counts[head], counts.sum() * probs[head] / probs[head].sum()).pvalue > 1e-3

    order = np.argsort(-probs)
    top_p = float(probs[order[:3]].sum()) - 1e-3  # needs exactly the 3 most probable tokens
    counts, _ = empirical_and_expected(SamplingConfig(temperature=1.0, top_p=top_p, max_new_tokens=1))
    assert set(np.flatnonzero(counts)) == set(order[:3])


def test_next_token_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    for top_p, allowed in [(0.5, {0}), (0.51, {0, 1}), (0.8, {0, 1}), (0.81, {0, 1, 2}), (1.0, {0, 1, 2, 3})]:
        cfg = SamplingConfig(temperature=1.0, top_p=top_p)
        drawn = {int(next_token(logits, cfg, generator)) for _ in range(300)}
        assert drawn == allowed, top_p


@pytest.mark.parametrize("use_cache", [True, False])
def test_rows_keep_emitting_eos_after_eos(use_cache):
    model = tiny("gpt2", init_std=0.02)  # near-uniform: eos (1/13 per step) comes soon
    out = gen(model, SamplingConfig(max_new_tokens=29, use_cache=use_cache), eos_id=0)[:, 3:]
    finished = 0
    for row in out:
        hits = torch.nonzero(row == 0).flatten()
        if hits.numel():
            finished += 1
            assert torch.all(row[hits[0]:] == 0)
    assert finished >= 3


def test_generation_stops_early_when_all_rows_have_finished():
    model = tiny("gpt2")
    with torch.no_grad():  # constant final hidden state e_0 whose logit is 10 for token 5, 0 for the rest
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()[0] = 1.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[5, 0] = 10.0
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    out = gen(model, SamplingConfig(temperature=0.1, max_new_tokens=29), eos_id=5)
    assert torch.all(out[:, 3:] == 5)
    assert len(calls) < 29


def test_context_longer_than_block_size():
    model = tiny("llama", block_size=10)
    with pytest.raises(ValueError, match="block_size"):
        gen(model, SamplingConfig(max_new_tokens=8, use_cache=True))
    long = gen(model, SamplingConfig(temperature=0.0, max_new_tokens=12, use_cache=False))
    short = gen(model, SamplingConfig(temperature=0.0, max_new_tokens=7, use_cache=True))
    assert long.shape == (6, 15)
    assert torch.equal(long[:, :10], short)  # sliding window starts only once the block is full


def test_generate_restores_training_mode():
    model = tiny("gpt2").train()
    gen(model, SamplingConfig(max_new_tokens=2))
    assert model.training


def test_sample_documents_corpus_properties():
    model = tiny("gpt2", init_std=0.05)
    cfg = SamplingConfig(max_new_tokens=12, batch_size=4)
    seen = []
    docs = sample_documents(model, 10, cfg, bos_id=0, eos_id=0, seed=3, progress=lambda d, t: seen.append((d, t)))
    assert len(docs) == 10
    assert seen == [(4, 10), (8, 10), (10, 10)]
    assert all(d.dtype == np.int64 and d.size <= 12 and not np.any(d == 0) for d in docs)
    assert any(d.size < 12 for d in docs) and any(d.size == 12 for d in docs)
    again = sample_documents(model, 10, cfg, bos_id=0, eos_id=0, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(docs, again))
    fewer = sample_documents(model, 6, cfg, bos_id=0, eos_id=0, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(fewer, docs))  # more documents extend the corpus
    other = sample_documents(model, 10, cfg, bos_id=0, eos_id=0, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(docs, other))
    # the documents are what generate() made from the separator, cut at the first eos
    generator = torch.Generator().manual_seed(batch_seed(3, 0))
    first_batch = generate(model, torch.zeros(4, 1, dtype=torch.long), cfg, generator, eos_id=0)[:, 1:]
    for doc, row in zip(docs[:4], first_batch):
        assert np.array_equal(doc, row[: doc.size].numpy())
        assert doc.size == 12 or row[doc.size] == 0


def test_bad_arguments_raise_value_error():
    for bad in [dict(temperature=-1.0), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5), dict(max_new_tokens=0),
                dict(batch_size=0)]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            SamplingConfig(**bad)
    model = tiny("gpt2")
    with pytest.raises(ValueError, match="eos_id"):
        sample_documents(model, 3, SamplingConfig(max_new_tokens=4), bos_id=0, eos_id=V, seed=0)
    with pytest.raises(ValueError, match="n_documents"):
        sample_documents(model, 0, SamplingConfig(max_new_tokens=4), bos_id=0, eos_id=0, seed=0)
