"""KV-cache memory of the continuous batcher at the paper preset's models (part of the
``sampling`` benchmark, :mod:`benchmarks.sampling`): by the formula
(:func:`dlrepro.decode.kv_cache_bytes`) and, where small enough, measured (CPU: RSS
high-water mark, reset before; CUDA: peak allocation) over the cache's allocation and a few
decode steps under bf16 autocast."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class PaperModel:
    name: str
    arch: str
    n_layer: int
    n_head: int
    d_model: int
    block_size: int
    vocab_size: int = 32000


# workflow/presets/paper.yaml collapse.models (data.text.vocab_size 32000)
PAPER_MODELS = (
    PaperModel("gpt2-9m", "gpt2", n_layer=6, n_head=6, d_model=192, block_size=512),
    PaperModel("llama-12m", "llama", n_layer=5, n_head=4, d_model=256, block_size=512),
    PaperModel("llama-42m", "llama", n_layer=8, n_head=8, d_model=512, block_size=512),
    PaperModel("llama-126m", "llama", n_layer=14, n_head=12, d_model=768, block_size=512),
)


def _rss_peak_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure_cache_memory(pm: PaperModel, batch: int, max_new: int, steps: int) -> dict:
    """Peak memory above the model's over the cache's allocation and ``steps`` decode steps (bf16 autocast)."""
    import psutil

    from dlrepro.decode import ContinuousBatcher
    from dlrepro.models.transformer import Transformer, TransformerConfig
    from dlrepro.sampling import SamplingConfig, stream_key

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=pm.vocab_size, block_size=pm.block_size, n_layer=pm.n_layer,
                                          n_head=pm.n_head, d_model=pm.d_model, arch=pm.arch)).to(device).eval()
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=max_new, batch_size=batch)
    batcher = ContinuousBatcher(model, cfg, bos_id=0, eos_id=0, key=stream_key(0), device=device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        if not _reset_rss_peak():
            return {"measured": False}
        base = psutil.Process().memory_info().rss
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16):
        cache = batcher.new_cache()
        cache.fill_(0)  # touch every page
        slots = torch.arange(batch, device=device)
        tok, pos, doc = torch.zeros_like(slots), torch.zeros_like(slots), slots
        next_doc, end = torch.tensor(batch, device=device), torch.tensor(batch, device=device)
        key_pos = torch.arange(max_new, device=device)
        for _ in range(steps):
            tok, pos, doc, next_doc, _log = batcher.step(tok, pos, doc, next_doc, end, cache, key_pos)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _rss_peak_bytes() - base
    return {"measured": True, "where": "cuda max_memory_allocated" if cuda else "CPU RSS high-water mark",
            "cache_dtype": str(cache.dtype), "cache_bytes": cache.numel() * cache.element_size(),
            "peak_bytes": int(peak)}


def run_memory(setup) -> list[dict]:
    """One row per ``setup.memory_models`` (the sampling benchmark's ``Setup``): the formula's
    bytes at ``memory_batch`` x ``memory_max_new_tokens`` in bf16, measured where the cache is
    at most ``memory_measure_max_gib`` (always on CUDA)."""
    from dlrepro.decode import kv_cache_bytes

    rows = []
    for pm in setup.memory_models:
        formula = kv_cache_bytes(pm.n_layer, pm.d_model, setup.memory_batch, setup.memory_max_new_tokens, 2)
        row = {"model": asdict(pm), "batch_size": setup.memory_batch, "max_new_tokens": setup.memory_max_new_tokens,
               "formula_bytes": formula, "measured": False}
        if formula <= setup.memory_measure_max_gib * 2 ** 30 or torch.cuda.is_available():
            row.update(measure_cache_memory(pm, setup.memory_batch, setup.memory_max_new_tokens, setup.memory_steps))
        rows.append(row)
    return rows
