"""Batched autoregressive sampling from ``dlrepro.models.transformer.Transformer``.

``generate`` samples a batch of continuations, with the model's preallocated KV cache (one
forward of the newest token per step) or, for reference and benchmarking, by recomputing
the whole context every step (``use_cache=False``). Both paths draw the same random numbers
from the caller's ``torch.Generator`` (one ``torch.multinomial`` call on a [B, V] tensor per
step), so for the same generator state they return the same tokens, up to ties that
floating-point rounding of the logits could break differently.

Per-step token choice, in this order (as Hugging Face ``generate``):

1. ``temperature == 0``: greedy, ``argmax`` of the logits (no random numbers drawn);
2. logits divided by ``temperature``;
3. ``top_k``: logits below the k-th largest set to -inf (``torch.topk``; ties with the k-th
   value are kept);
4. ``top_p`` (nucleus, Holtzman et al. 2020): the smallest set of most probable tokens whose
   probability sums to at least ``top_p`` is kept (sorted cumulative probabilities);
5. one draw from the softmax with ``torch.multinomial``.

End of sequence: once a row has emitted ``eos_id`` every later position of that row holds
``eos_id`` (the row keeps emitting ``eos_id``; there is no separate pad token). Whether all
rows have finished is checked every ``EOS_CHECK_EVERY`` steps, not every step, so that a GPU
is not synchronised with the host after each token; stopping early changes no output token.

Context length: with the cache, ``P + max_new_tokens`` must fit in the model's
``block_size`` (``ValueError`` otherwise; there is no cache eviction). Without the cache a
longer context is cropped to its last ``block_size`` tokens (a sliding window, as nanoGPT).

``sample_documents`` builds the synthetic corpus of the model-collapse stage: documents that
start after the document separator ``bos_id`` and end before the first ``eos_id`` (or after
``max_new_tokens`` tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from dlrepro.log import get_logger

# How often (in generated tokens) generate() checks whether every row has emitted eos.
EOS_CHECK_EVERY = 16


@dataclass
class SamplingConfig:
    temperature: float = 1.0  # 0 -> greedy (argmax)
    top_k: int | None = None
    top_p: float | None = None  # nucleus
    max_new_tokens: int = 256
    batch_size: int = 64  # documents per generate() call in sample_documents
    use_cache: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise ValueError(f"SamplingConfig.temperature must be a finite number >= 0, got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"SamplingConfig.top_k must be None or an int >= 1, got {self.top_k!r}")
        if self.top_p is not None and not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"SamplingConfig.top_p must be None or in (0, 1], got {self.top_p!r}")
        for name in ("max_new_tokens", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SamplingConfig.{name} must be an int >= 1, got {value!r}")


def next_token(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Choose one token per row of ``logits`` [B, V] by ``cfg``'s rule (module docstring)."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / cfg.temperature
    if cfg.top_k is not None and cfg.top_k < logits.size(-1):
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = F.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_logits = sorted_logits.masked_fill(mass_before >= cfg.top_p, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, sorted_logits)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model, prompts: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator,
             eos_id: int | None = None) -> torch.Tensor:
    """Continue each row of ``prompts`` [B, P] by ``cfg.max_new_tokens`` tokens; returns
    [B, P + max_new_tokens] (prompt included). See the module docstring for the rules.

    The model is put in eval mode for the call (no dropout) and restored afterwards.
    """
    if prompts.dim() != 2 or prompts.size(1) < 1:
        raise ValueError(f"prompts must be a [B, P] tensor with P >= 1, got shape {tuple(prompts.shape)}")
    B, P = prompts.shape
    total = P + cfg.max_new_tokens
    block_size = model.config.block_size
    if cfg.use_cache and total > block_size:
        raise ValueError(
            f"prompt length {P} + max_new_tokens {cfg.max_new_tokens} = {total} exceeds the model's "
            f"block_size={block_size}; the KV cache has no eviction (lower max_new_tokens or use_cache=False)"
        )

    out = torch.empty(B, total, dtype=torch.long, device=prompts.device)
    out[:, :P] = prompts
    if eos_id is not None:
        out[:, P:] = eos_id  # what rows that finish early hold; also the result of stopping early
        done = torch.zeros(B, dtype=torch.bool, device=prompts.device)
        eos = torch.tensor(eos_id, dtype=torch.long, device=prompts.device)

    was_training = model.training
    model.eval()
    try:
        if cfg.use_cache:
            cache = model.new_kv_cache(B, total, device=prompts.device)
            logits, _ = model(prompts, kv_cache=cache)
        else:
            logits, _ = model(prompts[:, -block_size:])
        for t in range(cfg.max_new_tokens):
            pos = P + t
            token = next_token(logits[:, -1], cfg, generator)
            if eos_id is not None:
                token = torch.where(done, eos, token)
                done |= token == eos
            out[:, pos] = token
            if t == cfg.max_new_tokens - 1:
                break
            if eos_id is not None and (t + 1) % EOS_CHECK_EVERY == 0 and bool(done.all()):
                break
            if cfg.use_cache:
                logits, _ = model(out[:, pos:pos + 1], kv_cache=cache)
            else:
                logits, _ = model(out[:, max(0, pos + 1 - block_size):pos + 1])
    finally:
        model.train(was_training)
    return out


def batch_seed(seed: int, batch_index: int) -> int:
    """Seed of batch ``batch_index`` of ``sample_documents``: independent streams via NumPy's SeedSequence."""
    return int(np.random.SeedSequence([seed, batch_index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def sample_documents(model, n_documents: int, cfg: SamplingConfig, bos_id: int, eos_id: int, seed: int,
                     device="cpu", progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Sample ``n_documents`` documents (int64 token arrays, separators removed).

    Each document is generated from the single prompt token ``bos_id`` (the document
    separator; GPT-2's ``<|endoftext|>`` serves as both bos and eos) and ends before its
    first ``eos_id`` or after ``cfg.max_new_tokens`` tokens; documents may be empty.

    Documents are made in batches of ``cfg.batch_size``; batch ``b`` draws from a generator
    seeded with ``batch_seed(seed, b)``, and every batch (the last one too) is sampled at the
    full batch size, the surplus discarded. So the corpus is a function of ``(seed,
    batch_size, model, cfg)``, and the first ``n`` documents do not depend on ``n_documents``
    (sampling more extends the corpus). ``model`` must already be on ``device``.
    ``progress(done, total)`` is called after every batch.
    """
    if n_documents < 1:
        raise ValueError(f"n_documents must be >= 1, got {n_documents}")
    vocab_size = model.config.vocab_size
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        if not 0 <= value < vocab_size:
            raise ValueError(f"{name}={value} is outside the model's vocabulary [0, {vocab_size})")
    device = torch.device(device)
    model_device = next(model.parameters()).device
    if model_device.type != device.type:
        raise ValueError(f"model is on {model_device} but device={device}; move the model first")

    log = get_logger("sampling", seed=seed)
    n_batches = math.ceil(n_documents / cfg.batch_size)
    log.info("sampling %d documents in %d batches of %d (max %d tokens, T=%g, top_k=%s, top_p=%s, cache=%s)",
             n_documents, n_batches, cfg.batch_size, cfg.max_new_tokens, cfg.temperature, cfg.top_k,
             cfg.top_p, cfg.use_cache)
    prompts = torch.full((cfg.batch_size, 1), bos_id, dtype=torch.long, device=device)
    docs: list[np.ndarray] = []
    for b in range(n_batches):
        generator = torch.Generator(device=device)
        generator.manual_seed(batch_seed(seed, b))
        tokens = generate(model, prompts, cfg, generator, eos_id=eos_id)[:, 1:].cpu().numpy()
        for row in tokens[: n_documents - len(docs)]:
            ends = np.flatnonzero(row == eos_id)
            docs.append(row[: ends[0] if ends.size else row.size].astype(np.int64))
        if progress is not None:
            progress(len(docs), n_documents)
        if (b + 1) % max(1, n_batches // 10) == 0 or b + 1 == n_batches:
            log.info("batch %d/%d: %d/%d documents", b + 1, n_batches, len(docs), n_documents)
    return docs
