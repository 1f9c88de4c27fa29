"""Decoder-only transformer in two styles, GPT-2 and Llama, with a preallocated KV cache.

One readable file in the spirit of nanoGPT's ``model.py``:

- ``arch="gpt2"`` (Radford et al. 2019): learned position embeddings, pre-LayerNorm
  blocks, GELU MLP with hidden width ``4 * d_model``, optional biases.
- ``arch="llama"`` (Touvron et al. 2023): rotary position embeddings (RoPE, Su et al.
  2021, "rotate-half" form with base 10000), pre-RMSNorm blocks, SwiGLU MLP
  (Shazeer 2020) with hidden width ``8/3 * d_model`` rounded up to a multiple of 32, no
  biases anywhere (``bias`` is ignored).

Module names follow nanoGPT so that code which walks the model (the parametrization
module, optimiser parameter groups) needs to know only one layout::

    transformer.wte            token embedding (nn.Embedding)
    transformer.wpe            learned positions (nn.Embedding; gpt2 only)
    transformer.h[i].ln_1      LayerNorm (gpt2) / RMSNorm (llama)
    transformer.h[i].attn      CausalSelfAttention: c_attn (fused q,k,v), c_proj; attribute attn_scale
    transformer.h[i].ln_2
    transformer.h[i].mlp       gpt2: c_fc, c_proj; llama: c_fc (up), c_gate (gate), c_proj (down)
    transformer.ln_f
    lm_head                    nn.Linear without bias, tied to wte when tie_embeddings=True

Hooks for parametrizations (muP/NTK/SP, see ``dlrepro.parametrization``): every attention
module has a float attribute ``attn_scale`` (``None`` = the standard ``1/sqrt(head_dim)``)
that is passed as ``scale=`` to ``F.scaled_dot_product_attention``, and the model has a
float attribute ``output_mult`` that multiplies the logits.

Initialisation as in GPT-2: every Linear/Embedding weight ~ N(0, init_std^2), biases zero,
norm gains one, and the residual output projections (``*.c_proj.weight``) use
``init_std / sqrt(2 * n_layer)``.

KV cache: ``model.new_kv_cache(B, max_len)`` preallocates keys and values of all layers as
one tensor ``[n_layer, 2, B, n_head, max_len, head_dim]``. ``model(idx, kv_cache=cache)``
takes only the new tokens, places them at positions ``cache.length ...``, writes their keys
and values into the cache in place and advances ``cache.length``. Several new tokens may be
fed at once (prompt prefill, or chunks); the causal mask is then built relative to the
cached prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from dlrepro.models import ARCHS  # defined without torch, for config validation


@dataclass
class TransformerConfig:
    vocab_size: int
    block_size: int  # maximum context length
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    arch: str = "gpt2"  # "gpt2" or "llama" (see the module docstring)
    dropout: float = 0.0
    bias: bool = True  # gpt2 only; llama has no biases
    tie_embeddings: bool = True
    attn_scale: float | None = None  # None -> 1/sqrt(head_dim); muP uses 1/head_dim
    output_mult: float = 1.0  # logits multiplier (muP readout)
    init_std: float = 0.02
    rope_base: float = 10000.0  # llama only

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive int, got {value!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"TransformerConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.d_model % self.n_head:
            raise ValueError(
                f"TransformerConfig.d_model={self.d_model} is not divisible by n_head={self.n_head}"
            )
        if self.arch == "llama" and self.head_dim % 2:
            raise ValueError(
                f"TransformerConfig: rotary embeddings need an even head_dim, got {self.head_dim} "
                f"(d_model={self.d_model}, n_head={self.n_head})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.attn_scale is not None and not self.attn_scale > 0:
            raise ValueError(f"TransformerConfig.attn_scale must be > 0 or None, got {self.attn_scale!r}")
        if not self.init_std > 0:
            raise ValueError(f"TransformerConfig.init_std must be > 0, got {self.init_std!r}")
        if not self.rope_base > 0:
            raise ValueError(f"TransformerConfig.rope_base must be > 0, got {self.rope_base!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the MLP: 4d (gpt2) or 8d/3 rounded up to a multiple of 32 (llama)."""
        if self.arch == "gpt2":
            return 4 * self.d_model
        return 32 * math.ceil(8 * self.d_model / (3 * 32))

    @property
    def use_bias(self) -> bool:
        return self.bias and self.arch == "gpt2"


class KVCache:
    """Preallocated keys and values of every layer: ``data[layer, 0 (k) | 1 (v), B, n_head, pos, head_dim]``.

    ``length`` is the number of positions already filled; the model writes new keys and
    values at ``length ...`` and advances it after the last layer.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, max_len: int, head_dim: int,
                 device=None, dtype=None):
        self.data = torch.zeros(n_layer, 2, batch_size, n_head, max_len, head_dim, device=device, dtype=dtype)
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.data.size(2)

    @property
    def max_len(self) -> int:
        return self.data.size(4)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v`` ([B, n_head, T, head_dim]) at positions ``length .. length+T`` of
        ``layer``; return views of all keys and values up to and including them."""
        end = self.length + k.size(2)
        self.data[layer, 0, :, :, self.length:end] = k
        self.data[layer, 1, :, :, self.length:end] = v
        return self.data[layer, 0, :, :, :end], self.data[layer, 1, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def reset(self) -> None:
        self.length = 0


def rope_tables(head_dim: int, n_pos: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles ``pos * base^(-2i/head_dim)``, each [n_pos, head_dim]
    (the head_dim/2 frequencies repeated twice, for the rotate-half form)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(n_pos, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate query/key vectors ``x`` [B, n_head, T, head_dim] by their positions' angles
    (``cos``, ``sin``: [T, head_dim]); pairs (i, i + head_dim/2) rotate together."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).type_as(x)


def make_norm(config: TransformerConfig) -> nn.Module:
    if config.arch == "gpt2":
        return nn.LayerNorm(config.d_model, bias=config.use_bias)
    return nn.RMSNorm(config.d_model, eps=1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.use_bias)
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.use_bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout
        self.attn_scale = config.attn_scale  # None -> 1/sqrt(head_dim) inside SDPA

    def forward(self, x, rope, attn_mask, is_causal, kv_cache, layer):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # [B, nh, T, hd]
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        if rope is not None:
            q = apply_rotary(q, *rope)
            k = apply_rotary(k, *rope)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)  # no-op unless the cache dtype differs
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0, scale=self.attn_scale,
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """GPT-2 MLP: Linear(d, 4d) -> GELU (tanh approximation, as GPT-2) -> Linear(4d, d)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.mlp_hidden, bias=config.use_bias)
        self.c_proj = nn.Linear(config.mlp_hidden, config.d_model, bias=config.use_bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class SwiGLU(nn.Module):
    """Llama MLP: c_proj(silu(c_gate(x)) * c_fc(x)), no biases."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.mlp_hidden, bias=False)
        self.c_gate = nn.Linear(config.d_model, config.mlp_hidden, bias=False)
        self.c_proj = nn.Linear(config.mlp_hidden, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.silu(self.c_gate(x)) * self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config) if config.arch == "gpt2" else SwiGLU(config)

    def forward(self, x, rope, attn_mask, is_causal, kv_cache, layer):
        x = x + self.attn(self.ln_1(x), rope, attn_mask, is_causal, kv_cache, layer)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    readout_modules = ("lm_head",)  # the modules output_mult multiplies (for the parametrization)

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        modules = dict(
            wte=nn.Embedding(config.vocab_size, config.d_model),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config),
        )
        if config.arch == "gpt2":
            modules["wpe"] = nn.Embedding(config.block_size, config.d_model)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.transformer.wte.weight = self.lm_head.weight
        self.output_mult = config.output_mult
        if config.arch == "llama":
            cos, sin = rope_tables(config.head_dim, config.block_size, config.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

        self.apply(self._init_weights)
        residual_std = config.init_std / math.sqrt(2 * config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=residual_std)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)

    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters, tied weights counted once.

        ``non_embedding=True`` gives Kaplan et al. (2020)'s N: without the token embedding,
        the position embedding and the readout matrix (``lm_head``, whether tied or not).
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def new_kv_cache(self, batch_size: int, max_len: int, device=None, dtype=None) -> KVCache:
        """A zeroed cache for ``batch_size`` sequences of up to ``max_len`` (<= block_size) positions.

        ``device`` defaults to the model's; ``dtype`` to the autocast dtype when autocast is
        enabled for that device at call time, otherwise the model's parameter dtype.
        """
        if not 1 <= max_len <= self.config.block_size:
            raise ValueError(f"max_len must be in [1, block_size={self.config.block_size}], got {max_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        weight = self.transformer.wte.weight
        device = torch.device(device) if device is not None else weight.device
        if dtype is None:
            dtype = (torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type)
                     else weight.dtype)
        c = self.config
        return KVCache(c.n_layer, batch_size, c.n_head, max_len, c.head_dim, device=device, dtype=dtype)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                kv_cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [B, T, V] (float32) and, if ``targets`` is given, the mean cross-entropy
        (nats/token, positions with target -100 ignored).

        With ``kv_cache``, ``idx`` holds only the new tokens, at positions
        ``kv_cache.length .. kv_cache.length + T - 1``; the cache is updated in place.
        """
        B, T = idx.size()
        start = 0 if kv_cache is None else kv_cache.length
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of {start + T} positions exceeds block_size={self.config.block_size}"
            )
        if kv_cache is not None and (kv_cache.batch_size != B or start + T > kv_cache.max_len):
            raise ValueError(
                f"KV cache (batch {kv_cache.batch_size}, {kv_cache.length}/{kv_cache.max_len} positions "
                f"used) cannot take a batch of {B} x {T} new tokens"
            )

        x = self.transformer.wte(idx)
        rope = None
        if self.config.arch == "gpt2":
            x = x + self.transformer.wpe(torch.arange(start, start + T, device=idx.device))
        else:
            rope = (self.rope_cos[start:start + T], self.rope_sin[start:start + T])
        x = self.transformer.drop(x)

        # Causal masking. Without cache (or an empty one) queries and keys are the same
        # positions and SDPA's is_causal applies. With a non-empty cache, one new token may
        # see everything; several new tokens (query i at absolute position start + i) see
        # keys 0 .. start + i, which is_causal (aligned top-left) would get wrong.
        attn_mask, is_causal = None, True
        if start > 0:
            is_causal = False
            if T > 1:
                key_pos = torch.arange(start + T, device=idx.device)
                query_pos = torch.arange(start, start + T, device=idx.device)
                attn_mask = key_pos[None, :] <= query_pos[:, None]
        for layer, block in enumerate(self.transformer.h):
            x = block(x, rope, attn_mask, is_causal, kv_cache, layer)
        if kv_cache is not None:
            kv_cache.advance(T)

        x = self.transformer.ln_f(x)
        logits = self.lm_head(x).float() * self.output_mult
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss
