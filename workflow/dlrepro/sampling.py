"""Autoregressive sampling from ``dlrepro.models.transformer.Transformer``.

Two samplers share one token-choice rule:

* :func:`generate` continues a batch of prompts ``[B, P]`` *statically*: every row runs until
  all rows have emitted ``eos_id`` or ``max_new_tokens`` is reached, with the model's
  preallocated KV cache (one forward of the newest token per step) or, for reference, by
  recomputing the whole context every step (``use_cache=False``). Its random numbers come
  from the caller's ``torch.Generator`` (one ``torch.multinomial`` call on a [B, V] tensor
  per step; both paths draw the same numbers, and so does Hugging Face ``generate`` seeded
  alike). Used by the tests and benchmarks as the reference and the static baseline.
* :func:`sample_documents` builds the synthetic corpus of the model-collapse stage with
  **continuous (in-flight) batching** (:mod:`dlrepro.decode`): ``batch_size`` slots each hold
  one document; the moment a document ends its slot starts the next one, so no row-step is
  spent on a finished document. Each document's random numbers are its own stream, a
  function of ``(seed, document index, step)`` (:func:`document_uniforms`), so the corpus does
  not depend on the batch size, on which slot a document ran in, or on how the documents
  are split over devices (:func:`sample_documents_on_devices`).

Per-step token choice, in this order (as Hugging Face ``generate``):

1. ``temperature == 0``: greedy, ``argmax`` of the logits (no random numbers drawn);
2. logits divided by ``temperature``;
3. ``top_k``: logits below the k-th largest set to -inf (``torch.topk``; ties with the k-th
   value are kept);
4. ``top_p`` (nucleus, Holtzman et al. 2020): the smallest set of most probable tokens whose
   probability sums to at least ``top_p`` is kept (sorted cumulative probabilities);
5. one draw from the softmax: ``torch.multinomial`` in :func:`generate`; in
   :func:`sample_documents` the inverse CDF at the document's uniform ``u`` (the first token
   whose cumulative probability exceeds ``u`` times the total): the same distribution.

End of sequence in :func:`generate`: once a row has emitted ``eos_id`` every later position
of that row holds ``eos_id``. Whether all rows have finished is checked every
``EOS_CHECK_EVERY`` steps, not every step, so that a GPU is not synchronised with the host
after each token; stopping early changes no output token.

Context length: with the cache, ``P + max_new_tokens`` must fit in the model's
``block_size`` (``ValueError`` otherwise; there is no cache eviction). Without the cache a
longer context is cropped to its last ``block_size`` tokens (a sliding window, as nanoGPT).

**Random streams of the corpus.** Document ``d`` (0-based, over the whole corpus) draws its
``s``-th token from ``u = document_uniforms(key, d, s)``: a counter-based generator (three
rounds of the ``lowbias32`` integer hash of Wellons, keyed by 64 bits derived from the seed
with NumPy's ``SeedSequence``), 24 random bits per uniform, in (0, 1), computed on the
device with integer tensor ops (no state, no host round trip). For a fixed step the map
from document index to hash is a bijection, and so is the map from step to hash for a fixed
document: no two documents share a stream.

**Identical at any batch size, on one device or several** holds exactly where the model's
kernels compute a row independently of the other rows of the batch. On CPU (PyTorch 2.13,
measured) ``nn.Linear`` is row-invariant for batches of 4 rows or more; the decode step's
attention always spans the whole cache (masked per row), so a row's arithmetic does not
depend on which other documents share its batch. The tests sample at two batch sizes and on
two processes and compare bytes. On a GPU, cuBLAS may pick another kernel for another batch
size, so corpora at *different* batch sizes can differ where float rounding moves a
uniform across a token boundary (about one token in 10^6-10^7); the same batch size on
several devices of one kind gives the same corpus.

**KV-cache memory** of :func:`sample_documents` (one preallocated tensor, keys and values of
all layers; ``dlrepro.decode.kv_cache_bytes``)::

    bytes = 2 * n_layer * batch_size * max_new_tokens * d_model * bytes_per_element

(``bytes_per_element`` 4 in fp32, 2 under bf16 autocast on CUDA), allocated once per
sampling job; the decode step's other buffers are one token per slot (activations
``[batch_size, d_model]``, logits ``[batch_size, vocab_size]`` in fp32). The paper preset
(batch 512, ``max_new_tokens`` 511, bf16): 10.5 GiB for llama-126m (14 layers x 768),
4.0 GiB for llama-42m, 1.25 GiB for llama-12m, 1.12 GiB for gpt2-9m; the default preset
(batch 256, 127 tokens, 2 layers x 64, fp32): 31.8 MiB.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from dlrepro.errors import ParamsError
from dlrepro.log import get_logger
from dlrepro.sampling_rule import (EOS_CHECK_EVERY, SamplingConfig, document_uniforms, inverse_cdf_token,  # noqa: F401
                                   next_token, stream_key, token_probs)


# --------------------------------------------------------------------------- static batches


@torch.no_grad()
def generate(model, prompts: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator,
             eos_id: int | None = None,
             logits_processor: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> torch.Tensor:
    """Continue each row of ``prompts`` [B, P] by ``cfg.max_new_tokens`` tokens; returns
    [B, P + max_new_tokens] (prompt included). See the module docstring for the rules.

    ``logits_processor(logits [B, V], t)``, if given, rewrites the logits of new token ``t``
    (0-based) before the token is chosen (as Hugging Face's logits processors). The model is
    put in eval mode for the call (no dropout) and restored afterwards.
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
            step_logits = logits[:, -1]
            if logits_processor is not None:
                step_logits = logits_processor(step_logits, t)
            token = next_token(step_logits, cfg, generator)
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


# --------------------------------------------------------------------------- corpora


def _check_corpus_args(model, n_documents: int, cfg: SamplingConfig, bos_id: int, eos_id: int,
                       first_document: int = 0) -> None:
    if not isinstance(n_documents, int) or n_documents < 1:
        raise ValueError(f"n_documents must be an int >= 1, got {n_documents!r}")
    if not isinstance(first_document, int) or first_document < 0 or first_document + n_documents > 2 ** 32:
        raise ValueError(f"first_document must be an int >= 0 with first_document + n_documents <= 2^32, "
                         f"got {first_document!r}")
    vocab_size, block_size = model.config.vocab_size, model.config.block_size
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        if not 0 <= value < vocab_size:
            raise ValueError(f"{name}={value} is outside the model's vocabulary [0, {vocab_size})")
    if 1 + cfg.max_new_tokens > block_size:
        raise ParamsError(
            f"1 prompt token + max_new_tokens {cfg.max_new_tokens} exceeds the model's block_size={block_size}; "
            "the KV cache has no eviction (lower max_new_tokens)"
        )


def sample_documents(model, n_documents: int, cfg: SamplingConfig, bos_id: int, eos_id: int, seed: int,
                     device="cpu", progress: Callable[[int, int], None] | None = None, *,
                     first_document: int = 0,
                     logits_processor: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                     | None = None,
                     host_syncs: list | None = None) -> list[np.ndarray]:
    """Sample documents ``first_document .. first_document + n_documents - 1`` of the corpus of
    ``seed`` (int64 token arrays, separators removed), with continuous batching.

    Each document is generated from the single prompt token ``bos_id`` (the document
    separator; GPT-2's ``<|endoftext|>`` serves as both bos and eos) and ends before its
    first ``eos_id`` or after ``cfg.max_new_tokens`` tokens; documents may be empty.
    Document ``d`` draws its tokens from its own stream (:func:`document_uniforms` under
    ``stream_key(seed)``), so the corpus is a function of ``(seed, model, cfg)`` without the
    batch size (module docstring: exactly so on CPU), and the first ``n`` documents do not
    depend on ``n_documents`` (sampling more extends the corpus).

    ``model`` must already be on ``device``; under ``torch.autocast`` the cache takes the
    autocast dtype. ``progress(done, total)`` is called whenever finished documents are
    collected (every ``EOS_CHECK_EVERY`` steps). ``logits_processor(logits [B, V], doc [B],
    step [B])`` may rewrite each step's logits (doc: document index, step: 0-based index of
    the token being chosen; rows with ``doc`` outside the range are idle). ``host_syncs``, if
    a list, receives one entry per host synchronisation of the decode loop (for tests).
    """
    from dlrepro.decode import ContinuousBatcher

    _check_corpus_args(model, n_documents, cfg, bos_id, eos_id, first_document)
    device = torch.device(device)
    model_device = next(model.parameters()).device
    if model_device.type != device.type:
        raise ValueError(f"model is on {model_device} but device={device}; move the model first")

    log = get_logger("sampling", seed=seed)
    log.info("sampling documents %d..%d continuously in %d slots (max %d tokens, T=%g, top_k=%s, top_p=%s, "
             "compile=%s)", first_document, first_document + n_documents - 1, cfg.batch_size, cfg.max_new_tokens,
             cfg.temperature, cfg.top_k, cfg.top_p, cfg.compile)
    batcher = ContinuousBatcher(model, cfg, bos_id=bos_id, eos_id=eos_id, key=stream_key(seed), device=device,
                                logits_processor=logits_processor)
    next_report = [max(1, n_documents // 10)]

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        if done >= next_report[0] or done == total:
            log.info("%d/%d documents (%d decode steps)", done, total, batcher.steps)
            next_report[0] = done + max(1, n_documents // 10)

    docs = batcher.run(first_document, n_documents, progress=report, host_syncs=host_syncs)
    log.info("%d documents, %d tokens in %d decode steps of %d slots (%.1f%% of row-steps on documents)",
             len(docs), sum(d.size for d in docs), batcher.steps, cfg.batch_size, 100 * batcher.occupancy)
    return docs


def document_shares(n_documents: int, n_shares: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each of ``n_shares`` contiguous, near-equal shares of the documents."""
    if n_shares < 1:
        raise ValueError(f"the number of devices must be >= 1, got {n_shares}")
    bounds = [n_documents * i // n_shares for i in range(n_shares + 1)]
    return [(a, b - a) for a, b in zip(bounds, bounds[1:]) if b > a]


def _share_worker(load_model: Callable, device: str, first: int, count: int, cfg: SamplingConfig, bos_id: int,
                  eos_id: int, seed: int, threads: int | None, bf16: bool) -> tuple[np.ndarray, np.ndarray]:
    """One device's share (run in its own process): the documents, concatenated, and their lengths."""
    import contextlib

    from dlrepro.cpu import configure

    configure(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    model = load_model(device)
    autocast = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
    with autocast:
        docs = sample_documents(model, count, cfg, bos_id, eos_id, seed, device=device, first_document=first)
    lengths = np.array([d.size for d in docs], dtype=np.int64)
    return (np.concatenate(docs) if docs else np.zeros(0, np.int64)), lengths


def sample_documents_on_devices(load_model: Callable[[str], torch.nn.Module], n_documents: int,
                                cfg: SamplingConfig, bos_id: int, eos_id: int, seed: int, devices: list[str], *,
                                threads: int | None = None, bf16: bool = False) -> list[np.ndarray]:
    """:func:`sample_documents` of the whole corpus, its documents split over ``devices``
    (e.g. ``["cuda:0", "cuda:1"]``, or ``["cpu", "cpu"]`` for two CPU processes).

    One device runs in this process. Several run one process each (``spawn``), on contiguous
    shares of the documents (:func:`document_shares`); since every document has its own
    random stream the merged corpus is the one-device corpus. ``load_model(device)`` must be
    picklable (a module-level function or a ``functools.partial`` of one) and return the
    model on ``device``; ``threads`` sets each process's CPU threads, ``bf16`` runs it under
    bf16 autocast.
    """
    if not devices:
        raise ValueError("devices must name at least one device")
    shares = document_shares(n_documents, len(devices))
    args = (cfg, bos_id, eos_id, seed, threads, bf16)
    if len(shares) == 1:
        return _split(*_share_worker(load_model, devices[0], *shares[0], *args))
    import concurrent.futures
    import multiprocessing

    log = get_logger("sampling", seed=seed)
    log.info("splitting %d documents over %d devices: %s", n_documents, len(shares),
             ", ".join(f"{dev}: {first}..{first + count - 1}" for dev, (first, count) in zip(devices, shares)))
    with concurrent.futures.ProcessPoolExecutor(len(shares), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_share_worker, load_model, dev, first, count, *args)
                   for dev, (first, count) in zip(devices, shares)]
        parts = [f.result() for f in futures]
    return [doc for tokens, lengths in parts for doc in _split(tokens, lengths)]


def _split(tokens: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return [part.astype(np.int64, copy=False) for part in np.split(tokens, np.cumsum(lengths)[:-1])]
