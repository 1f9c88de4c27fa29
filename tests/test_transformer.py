"""Tests of dlrepro.models.transformer: KV cache, causality, loss, parameter count, RoPE, training."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from dlrepro.models.transformer import Transformer, TransformerConfig, apply_rotary, rope_tables

ARCHS = ["gpt2", "llama"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the test machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(arch: str, seed: int = 0, **overrides) -> Transformer:
    kwargs = dict(vocab_size=37, block_size=24, n_layer=2, n_head=2, d_model=16, arch=arch, init_std=0.2)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    return Transformer(TransformerConfig(**kwargs)).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_kv_cache_one_token_at_a_time_matches_full_forward(arch):
    model = tiny(arch)
    idx = torch.randint(0, 37, (3, 20), generator=torch.Generator().manual_seed(1))
    full, _ = model(idx)
    cache = model.new_kv_cache(3, 20)
    steps = [model(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(20)]
    assert cache.length == 20
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_kv_cache_chunked_prefill_masks_relative_to_the_cached_prefix(arch):
    model = tiny(arch)
    idx = torch.randint(0, 37, (2, 17), generator=torch.Generator().manual_seed(2))
    full, _ = model(idx)
    cache = model.new_kv_cache(2, 24)
    chunks = [(0, 5), (5, 6), (6, 11), (11, 17)]  # several tokens at once after a non-empty cache
    out = torch.cat([model(idx[:, a:b], kv_cache=cache)[0] for a, b in chunks], dim=1)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_changing_a_future_token_leaves_past_logits_unchanged(arch):
    model = tiny(arch)
    idx = torch.randint(0, 37, (2, 12), generator=torch.Generator().manual_seed(3))
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 37
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=0, rtol=0)
    assert (a[:, 7:] - b[:, 7:]).abs().amax(dim=-1).min() > 1e-4  # every later position sees it


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_is_cross_entropy_and_ignores_minus_100(arch):
    model = tiny(arch)
    gen = torch.Generator().manual_seed(4)
    idx = torch.randint(0, 37, (3, 10), generator=gen)
    targets = torch.randint(0, 37, (3, 10), generator=gen)
    targets[0, :4] = -100
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 10, 37) and logits.dtype == torch.float32
    kept = targets != -100
    expected = F.cross_entropy(logits[kept], targets[kept])
    torch.testing.assert_close(loss, expected)
    assert model(idx)[1] is None


def hand_count(arch: str, V: int, block: int, d: int, L: int, hidden: int, tied: bool) -> tuple[int, int]:
    """(all, non-embedding) parameter counts written out layer by layer."""
    if arch == "gpt2":  # LayerNorm with bias, Linear layers with bias
        block_params = (2 * d) + (d * 3 * d + 3 * d) + (d * d + d) + (2 * d) + (d * hidden + hidden) + (hidden * d + d)
        final_norm, embeddings = 2 * d, V * d + block * d
    else:  # RMSNorm gains, no biases, SwiGLU with three matrices
        block_params = d + 3 * d * d + d * d + d + 3 * d * hidden
        final_norm, embeddings = d, V * d
    readout = 0 if tied else V * d
    total = embeddings + L * block_params + final_norm + readout
    return total, L * block_params + final_norm


@pytest.mark.parametrize("arch,hidden", [("gpt2", 32), ("llama", 32)])
@pytest.mark.parametrize("tied", [True, False])
def test_num_params_matches_hand_count(arch, hidden, tied):
    model = tiny(arch, vocab_size=11, block_size=8, n_layer=3, n_head=2, d_model=8, tie_embeddings=tied)
    assert model.config.mlp_hidden == hidden  # gpt2: 4*8; llama: 8/3*8 = 21.3 -> 32
    total, non_embedding = hand_count(arch, V=11, block=8, d=8, L=3, hidden=hidden, tied=tied)
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == non_embedding


def test_llama_hidden_width_rounds_8_thirds_up_to_multiple_of_32():
    assert TransformerConfig(vocab_size=5, block_size=4, d_model=48, n_head=4, arch="llama").mlp_hidden == 128
    assert TransformerConfig(vocab_size=5, block_size=4, d_model=128, arch="llama").mlp_hidden == 352
    assert TransformerConfig(vocab_size=5, block_size=4, d_model=128, arch="gpt2").mlp_hidden == 512


def test_tied_embeddings_share_one_tensor_and_llama_has_no_bias():
    gpt = tiny("gpt2")
    assert gpt.transformer.wte.weight is gpt.lm_head.weight
    llama = tiny("llama", tie_embeddings=False)
    assert llama.transformer.wte.weight is not llama.lm_head.weight
    assert not any(name.endswith("bias") for name, _ in llama.named_parameters())
    assert "wpe" not in llama.transformer and "wpe" in gpt.transformer


def test_residual_projections_use_scaled_init():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=64, block_size=8, n_layer=4, n_head=4, d_model=96, init_std=0.02))
    block = model.transformer.h[0]
    residual = torch.cat([block.attn.c_proj.weight.flatten(), block.mlp.c_proj.weight.flatten()])
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.attn.c_attn.bias.abs().max() == 0 and block.ln_1.weight.eq(1).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_output_mult_and_attn_scale_hooks(arch):
    model = tiny(arch)
    idx = torch.randint(0, 37, (2, 9), generator=torch.Generator().manual_seed(5))
    base, _ = model(idx)
    model.output_mult = 0.5
    torch.testing.assert_close(model(idx)[0], 0.5 * base)
    model.output_mult = 1.0
    head_dim = model.config.head_dim
    for block in model.transformer.h:
        block.attn.attn_scale = 1 / math.sqrt(head_dim)  # explicit standard scale == None
    torch.testing.assert_close(model(idx)[0], base, atol=1e-6, rtol=0)
    for block in model.transformer.h:
        block.attn.attn_scale = 1 / head_dim  # muP scale changes the function
    assert (model(idx)[0] - base).abs().max() > 1e-4


def test_rope_depends_only_on_relative_position():
    head_dim = 8
    cos, sin = rope_tables(head_dim, 32)
    gen = torch.Generator().manual_seed(6)
    q, k = torch.randn(1, 1, 1, head_dim, generator=gen), torch.randn(1, 1, 1, head_dim, generator=gen)

    def score(m: int, n: int) -> float:
        qm = apply_rotary(q, cos[m:m + 1], sin[m:m + 1])
        kn = apply_rotary(k, cos[n:n + 1], sin[n:n + 1])
        return float((qm * kn).sum())

    assert score(5, 2) == pytest.approx(score(20, 17), abs=1e-5)
    assert score(9, 9) == pytest.approx(float((q * k).sum()), abs=1e-5)  # offset 0 -> plain dot product
    assert abs(score(5, 2) - score(5, 4)) > 1e-3  # but the offset matters
    rotated = apply_rotary(q, cos[13:14], sin[13:14])
    torch.testing.assert_close(rotated.norm(), q.norm())  # a rotation


def test_llama_cache_positions_come_from_cache_length():
    """A token fed after 9 cached tokens is rotated by angle 9 (not 0) and attends to the
    cached keys: its logits equal those of the full forward at position 9."""
    model = tiny("llama")
    idx = torch.randint(0, 37, (1, 10), generator=torch.Generator().manual_seed(7))
    cache = model.new_kv_cache(1, 10)
    model(idx[:, :9], kv_cache=cache)
    assert cache.length == 9
    last, _ = model(idx[:, 9:], kv_cache=cache)
    torch.testing.assert_close(last[:, 0], model(idx)[0][:, 9], atol=1e-5, rtol=0)
    # fed alone (position 0, no prefix) the same token gives different logits
    alone, _ = model(idx[:, 9:])
    assert (alone[:, 0] - last[:, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_both_archs_learn_a_repeated_sequence_beyond_bigrams(arch):
    """Loss falls from log(V) to below half the bigram floor: the model uses its context."""
    seq = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3]
    pairs = list(zip(seq[:-1], seq[1:]))
    bigram_floor = -sum(math.log(pairs.count(p) / seq[:-1].count(p[0])) for p in pairs) / len(pairs)
    model = tiny(arch, init_std=0.02).train()
    idx, targets = torch.tensor([seq[:-1]] * 4), torch.tensor([seq[1:]] * 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(64):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(37), rel=0.05)  # uniform at init
    assert losses[-1] < 0.5 * bigram_floor


def test_bf16_autocast_forward_and_cache():
    model = tiny("llama")
    idx = torch.randint(0, 37, (2, 8), generator=torch.Generator().manual_seed(8))
    full32, _ = model(idx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full, _ = model(idx)
        cache = model.new_kv_cache(2, 8)
        assert cache.data.dtype == torch.bfloat16
        stepped = torch.cat([model(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(8)], dim=1)
    assert full.dtype == torch.float32
    torch.testing.assert_close(full, full32, atol=0.1, rtol=0.05)
    torch.testing.assert_close(stepped, full, atol=0.1, rtol=0.05)


def test_bad_configs_and_overflows_raise_value_error():
    with pytest.raises(ValueError, match="arch"):
        TransformerConfig(vocab_size=5, block_size=4, arch="bert")
    with pytest.raises(ValueError, match="n_head"):
        TransformerConfig(vocab_size=5, block_size=4, d_model=30, n_head=4)
    with pytest.raises(ValueError, match="head_dim"):
        TransformerConfig(vocab_size=5, block_size=4, d_model=12, n_head=4, arch="llama")
    with pytest.raises(ValueError, match="vocab_size"):
        TransformerConfig(vocab_size=0, block_size=4)
    model = tiny("gpt2")
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        model.new_kv_cache(1, 25)
    cache = model.new_kv_cache(1, 4)
    model(torch.zeros(1, 3, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="KV cache"):
        model(torch.zeros(1, 2, dtype=torch.long), kv_cache=cache)
