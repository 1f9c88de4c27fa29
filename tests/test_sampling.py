"""Tests of dlrepro.sampling and dlrepro.decode: cache vs no cache, greedy limits, sampling
distribution, eos; the continuous batcher's corpus (per-document streams, batch-size and
device independence, no host synchronisation per token)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from torch.nn import functional as F

from dlrepro.decode import decode_logits, kv_cache_bytes
from dlrepro.models.transformer import Transformer, TransformerConfig
from dlrepro.sampling import (SamplingConfig, document_shares, document_uniforms, generate, inverse_cdf_token,
                              next_token, sample_documents, sample_documents_on_devices, stream_key)

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


RULES = [dict(temperature=0.0), dict(temperature=1.0), dict(temperature=0.8, top_k=5),
         dict(temperature=1.2, top_p=0.9)]


def same_corpus(a, b) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("arch", ARCHS)
def test_decode_step_logits_match_the_full_forward(arch):
    """Rows at different positions of one cache, over stale entries of an earlier document."""
    model = tiny(arch)
    B, T = 3, 10
    seq = prompts(B, T, seed=5)
    with torch.no_grad():
        full = model(seq)[0]
    cache = torch.randn(2, 2, B, 2, T, 8)  # stale keys and values everywhere: must be masked
    key_pos = torch.arange(T)
    offsets = torch.tensor([0, 3, 6])  # row b starts its sequence at step offsets[b]
    got = torch.zeros(B, T, V)
    for step in range(T + 6):
        pos = (step - offsets).clamp(0, T - 1)
        logits = decode_logits(model, seq[torch.arange(B), pos], pos, cache, key_pos)
        live = (step >= offsets) & (step - offsets < T)
        got[live, pos[live]] = logits[live]
    assert torch.allclose(got, full, atol=1e-5, rtol=0)


def test_sample_documents_corpus_properties():
    model = tiny("gpt2", init_std=0.05)
    cfg = SamplingConfig(max_new_tokens=12, batch_size=4)
    seen = []
    docs = sample_documents(model, 10, cfg, bos_id=0, eos_id=0, seed=3, progress=lambda d, t: seen.append((d, t)))
    assert len(docs) == 10 and seen[-1] == (10, 10) and all(t == 10 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert all(d.dtype == np.int64 and d.size <= 12 and not np.any(d == 0) for d in docs)
    assert any(d.size < 12 for d in docs) and any(d.size == 12 for d in docs)
    assert same_corpus(docs, sample_documents(model, 10, cfg, bos_id=0, eos_id=0, seed=3))  # deterministic
    fewer = sample_documents(model, 6, cfg, bos_id=0, eos_id=0, seed=3)
    assert same_corpus(fewer, docs[:6])  # more documents extend the corpus
    other = sample_documents(model, 10, cfg, bos_id=0, eos_id=0, seed=4)
    assert not same_corpus(docs, other)
    assert len({d.tobytes() for d in docs}) > 5  # documents differ from each other


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("rule", RULES[1:])
def test_corpus_does_not_depend_on_batch_size_or_split(arch, rule):
    model = tiny(arch, init_std=0.1)
    kw = dict(bos_id=0, eos_id=1, seed=11)
    docs = sample_documents(model, 24, SamplingConfig(max_new_tokens=20, batch_size=4, **rule), **kw)
    lengths = [d.size for d in docs]
    assert min(lengths) < 10 and max(lengths) == 20  # lengths vary: slots restart at different steps
    assert same_corpus(docs, sample_documents(model, 24, SamplingConfig(max_new_tokens=20, batch_size=9, **rule),
                                              **kw))
    cfg = SamplingConfig(max_new_tokens=20, batch_size=5, **rule)
    halves = (sample_documents(model, 11, cfg, **kw)
              + sample_documents(model, 13, cfg, first_document=11, **kw))
    assert same_corpus(docs, halves)


def reference_documents(model, n, cfg, bos_id, eos_id, seed):
    """One document at a time, full forward of the whole context each step, same uniforms."""
    key, docs = stream_key(seed), []
    for d in range(n):
        seq = torch.tensor([[bos_id]])
        for s in range(cfg.max_new_tokens):
            with torch.no_grad():
                logits = model(seq)[0][:, -1]
            u = document_uniforms(key, torch.tensor([d]), torch.tensor([s]))
            token = inverse_cdf_token(logits, cfg, u)
            if int(token) == eos_id:
                break
            seq = torch.cat([seq, token[:, None]], dim=1)
        docs.append(seq[0, 1:].numpy())
    return docs


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("rule", RULES)
def test_continuous_batch_equals_one_document_at_a_time(arch, rule):
    model = tiny(arch, init_std=0.1)
    cfg = SamplingConfig(max_new_tokens=15, batch_size=4, **rule)
    docs = sample_documents(model, 9, cfg, bos_id=0, eos_id=1, seed=2)
    assert same_corpus(docs, reference_documents(model, 9, cfg, bos_id=0, eos_id=1, seed=2))


def test_greedy_documents_are_generate_cut_at_eos():
    model = tiny("llama", init_std=0.1)
    cfg = SamplingConfig(temperature=0.0, max_new_tokens=15, batch_size=4)
    docs = sample_documents(model, 5, cfg, bos_id=0, eos_id=1, seed=0)
    rows = generate(model, torch.zeros(1, 1, dtype=torch.long), cfg, torch.Generator(), eos_id=1)[0, 1:].numpy()
    ends = np.flatnonzero(rows == 1)
    first = rows[: ends[0] if ends.size else rows.size]
    assert all(np.array_equal(d, first) for d in docs)  # greedy from one prompt: one document, 5 times


def test_document_uniforms_are_uniform_and_independent():
    from scipy.stats import kstest

    key = stream_key(7)
    doc, step = torch.meshgrid(torch.arange(2000), torch.arange(100), indexing="ij")
    u = document_uniforms(key, doc, step)
    assert u.dtype == torch.float32 and float(u.min()) > 0 and float(u.max()) < 1
    assert kstest(u.flatten().numpy(), "uniform").pvalue > 1e-3
    x = u.double() - 0.5
    for a, b in ((x[:, 1:], x[:, :-1]), (x[1:], x[:-1])):  # consecutive steps, neighbouring documents
        assert abs(float((a * b).mean() / (x * x).mean())) < 0.01
    assert len(np.unique(u[:, 0].numpy())) > 1990  # documents do not share streams
    assert not torch.equal(u, document_uniforms(stream_key(8), doc, step))
    assert torch.equal(u, document_uniforms(key, doc, step))


def test_inverse_cdf_draw_follows_the_rule():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    u = document_uniforms(stream_key(0), torch.arange(4000), torch.zeros(4000, dtype=torch.long))
    counts = np.bincount(inverse_cdf_token(logits, SamplingConfig(temperature=1.0), u).numpy(), minlength=4)
    assert chisquare(counts, 4000 * np.array([0.5, 0.3, 0.15, 0.05])).pvalue > 1e-3
    for top_p, allowed in [(0.5, {0}), (0.51, {0, 1}), (0.81, {0, 1, 2}), (1.0, {0, 1, 2, 3})]:
        drawn = set(inverse_cdf_token(logits, SamplingConfig(temperature=1.0, top_p=top_p), u).tolist())
        assert drawn == allowed, top_p
    assert set(inverse_cdf_token(logits, SamplingConfig(temperature=1.0, top_k=2), u).tolist()) == {0, 1}
    # temperature: T = 2 flattens the distribution to softmax(log p / 2)
    flat = F.softmax(torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)) / 2, dim=-1).numpy()
    counts = np.bincount(inverse_cdf_token(logits, SamplingConfig(temperature=2.0), u).numpy(), minlength=4)
    assert chisquare(counts, 4000 * flat).pvalue > 1e-3


def test_first_tokens_of_the_corpus_follow_the_softmax():
    model = tiny("llama")
    with torch.no_grad():
        probs = F.softmax(model(torch.tensor([[4]]))[0][0, -1].double(), dim=-1).numpy()
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=1, batch_size=500)
    docs = sample_documents(model, 5000, cfg, bos_id=4, eos_id=V - 1, seed=1)
    first = np.array([d[0] if d.size else V - 1 for d in docs])
    counts = np.bincount(first, minlength=V)
    assert probs.max() > 1.5 / V and chisquare(counts, 5000 * probs).pvalue > 1e-3


SYNC_OPS = {"_local_scalar_dense", "item", "nonzero", "masked_select", "unique", "_unique2", "equal", "is_nonzero"}


def test_decode_loop_does_not_synchronise_per_token():
    """The only device -> host traffic is one copy of the log every EOS_CHECK_EVERY steps:
    no op of the loop reads a value on the host (.item(), bool(), nonzero, ...)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from dlrepro.sampling import EOS_CHECK_EVERY

    class CountSyncs(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in SYNC_OPS:
                self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    model = tiny("gpt2", init_std=0.05)
    for rule in (RULES[0], RULES[3]):  # greedy; top-p (sort, cumsum, scatter)
        syncs = []
        with CountSyncs() as mode:
            docs = sample_documents(model, 12, SamplingConfig(max_new_tokens=30, batch_size=4, **rule),
                                    bos_id=0, eos_id=0, seed=1, host_syncs=syncs)
        assert mode.ops == [], rule
        assert len(docs) == 12 and syncs == [EOS_CHECK_EVERY * (i + 1) for i in range(len(syncs))]
        assert sum(d.size + 1 for d in docs) / 4 < len(syncs) * EOS_CHECK_EVERY  # it ran many tokens per sync


def test_decode_step_compiles_as_one_graph(monkeypatch):
    """fullgraph=True fails on any graph break (a host read, data-dependent control flow);
    aot_eager traces it in seconds (inductor on CPU takes minutes, for the same corpus)."""
    import dlrepro.decode as decode

    compile_ = torch.compile
    monkeypatch.setattr(decode.torch, "compile", lambda fn, **kw: compile_(fn, backend="aot_eager", **kw))
    torch._dynamo.reset()
    model = tiny("gpt2", init_std=0.05)
    cfg = SamplingConfig(temperature=0.9, top_k=6, max_new_tokens=12, batch_size=4)
    compiled = sample_documents(model, 10, SamplingConfig(**{**cfg.__dict__, "compile": True}), 0, 0, seed=3)
    assert same_corpus(compiled, sample_documents(model, 10, cfg, 0, 0, seed=3))


def test_two_processes_write_the_one_process_corpus(tmp_path):
    """compute.devices = 2 on CPU: two spawned processes, each on its share of the documents."""
    import functools

    from dlrepro.collapse.cli import _sampling_model
    from dlrepro.collapse.lm import save_model

    model = tiny("gpt2", init_std=0.05)
    save_model(tmp_path / "m.pt", model, {"name": "tiny"})
    cfg = SamplingConfig(max_new_tokens=12, batch_size=4)
    one = sample_documents(model, 15, cfg, bos_id=0, eos_id=0, seed=9)
    two = sample_documents_on_devices(functools.partial(_sampling_model, str(tmp_path / "m.pt")), 15, cfg,
                                      bos_id=0, eos_id=0, seed=9, devices=["cpu", "cpu"], threads=1)
    assert same_corpus(one, two)
    assert document_shares(15, 2) == [(0, 7), (7, 8)] and document_shares(1, 3) == [(0, 1)]


def test_kv_cache_memory_formula():
    model = tiny("llama")
    from dlrepro.decode import ContinuousBatcher

    cfg = SamplingConfig(max_new_tokens=20, batch_size=6)
    cache = ContinuousBatcher(model, cfg, bos_id=0, eos_id=0, key=stream_key(0), device="cpu").new_cache()
    assert cache.numel() * cache.element_size() == kv_cache_bytes(2, 16, 6, 20, 4) == 2 * 2 * 6 * 20 * 16 * 4


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
    with pytest.raises(ValueError, match="first_document"):
        sample_documents(model, 3, SamplingConfig(max_new_tokens=4), bos_id=0, eos_id=0, seed=0, first_document=-1)
    with pytest.raises(ValueError, match="block_size"):
        sample_documents(model, 3, SamplingConfig(max_new_tokens=32), bos_id=0, eos_id=0, seed=0)
