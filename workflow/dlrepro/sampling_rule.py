"""The token-choice rule and the per-document random streams that both samplers use.

:func:`dlrepro.sampling.generate` (static batches) and the continuous batcher of
:mod:`dlrepro.decode` (behind :func:`dlrepro.sampling.sample_documents`) choose tokens by
the same rule (:class:`SamplingConfig`; the steps are listed in :mod:`dlrepro.sampling`)
and draw the corpus's random numbers from :func:`document_uniforms`. They live here, below
both, so that neither sampler imports the other for them; :mod:`dlrepro.sampling`
re-exports every public name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from dlrepro.errors import ParamsError

# How often (in generated tokens) the samplers look at the host: generate() checks whether
# every row has emitted eos; sample_documents() collects the finished documents.
EOS_CHECK_EVERY = 16


@dataclass
class SamplingConfig:
    temperature: float = 1.0  # 0 -> greedy (argmax)
    top_k: int | None = None
    top_p: float | None = None  # nucleus
    max_new_tokens: int = 256
    batch_size: int = 64  # rows of generate(); slots of sample_documents' continuous batch
    use_cache: bool = True  # generate() only; sample_documents always uses its cache
    compile: bool = False  # sample_documents: torch.compile the decode step (static shapes)

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise ParamsError(f"SamplingConfig.temperature must be a finite number >= 0, got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ParamsError(f"SamplingConfig.top_k must be None or an int >= 1, got {self.top_k!r}")
        if self.top_p is not None and not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ParamsError(f"SamplingConfig.top_p must be None or in (0, 1], got {self.top_p!r}")
        for name in ("max_new_tokens", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParamsError(f"SamplingConfig.{name} must be an int >= 1, got {value!r}")


def token_probs(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Steps 2-4 of the rule (:mod:`dlrepro.sampling`): the probabilities [B, V] one draws from."""
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
    return F.softmax(logits, dim=-1)


def next_token(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Choose one token per row of ``logits`` [B, V] by ``cfg``'s rule, drawing with ``torch.multinomial``."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    return torch.multinomial(token_probs(logits, cfg), num_samples=1, generator=generator).squeeze(-1)


def inverse_cdf_token(logits: torch.Tensor, cfg: SamplingConfig, u: torch.Tensor) -> torch.Tensor:
    """Choose one token per row of ``logits`` [B, V] by ``cfg``'s rule, drawing at the uniforms
    ``u`` [B] in (0, 1): the first token whose cumulative probability exceeds ``u`` times the
    total (tokens of probability 0 are never chosen)."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    cdf = torch.cumsum(token_probs(logits, cfg), dim=-1)
    target = u.to(cdf.dtype)[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=logits.size(-1) - 1)


# --------------------------------------------------------------------------- random streams

_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2^32`` for int64 tensors holding 32-bit values, without int64 overflow
    (``c`` split into 16-bit halves)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """Wellons' ``lowbias32`` hash: a bijection of 32-bit values with strong avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def stream_key(seed: int) -> tuple[int, int, int]:
    """Three 32-bit words keying the document streams of ``seed`` (NumPy ``SeedSequence``)."""
    words = np.random.SeedSequence([int(seed), 0x5A3B1E]).generate_state(3, dtype=np.uint32)
    return tuple(int(w) for w in words)


def document_uniforms(key: tuple[int, int, int], doc: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Uniforms in (0, 1) (float32, 24 random bits) of documents ``doc`` at steps ``step``
    (int64 tensors of one shape; ``0 <= doc < 2^32``, ``0 <= step < 2^32``) under ``key``."""
    h = _mix32((doc & _M32) ^ key[0])
    h = _mix32(h ^ (step & _M32) ^ key[1])
    h = _mix32(h ^ key[2])
    return ((h >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))
