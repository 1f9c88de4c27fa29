"""Sampling: useful tokens/s of the corpus sampler (continuous batching) vs the static batcher
and Hugging Face ``generate``; the fixed-length sampler vs HF; KV cache vs none; cache memory.

**Corpus sampling: continuous vs static vs HF** (``corpus``). What a ``collapse sample`` job
does: ``n_documents`` documents from the one-token prompt ``bos`` (the document separator,
id 0 as the data stage's ``<|endoftext|>``), each ending at ``eos`` (= ``bos``) or after
``block_size - 1`` tokens. The models have random weights, whose documents would not end
where real ones do, so every side gets the same logits processor that forces the length of
document ``d`` to ``L_d``: ``eos`` is forbidden before step ``L_d`` and the only choice at
``L_d`` (``L_d >= max_new_tokens``: the document stops by length). The ``L_d`` are drawn
(seeded, with replacement) from the document lengths of the real training split: the data
stage's own preparation (:func:`dlrepro.data.text.prepare_text`, the workflow's vocabulary
512) of tinyshakespeare from the data mirror; without a mirror a seeded geometric
distribution stands in, and ``lengths_source`` says so. Three sides, at the same batch size:

* ``continuous``: :func:`dlrepro.sampling.sample_documents` (continuous batching: a slot
  starts the next document as soon as one ends);
* ``static``: the sampler before continuous batching, kept here as the baseline: batches of
  ``batch_size`` documents, each one :func:`dlrepro.sampling.generate` call with ``eos_id``
  (every row runs until all rows of its batch have ended), cut at the first ``eos``;
* ``hf``: ``GPT2LMHeadModel.generate`` (our weights, as below) with ``eos_token_id`` =
  ``pad_token_id`` = ``eos``, the same batches and the same length-forcing processor (a
  ``LogitsProcessor``); it stops a batch when all its rows have emitted ``eos``.

useful tokens/s = tokens of the kept documents (``sum(min(L_d, max_new_tokens))``, the
separators not counted) / wall time of the whole corpus; the median of ``repeats``
interleaved runs (order rotating) after a short warm-up; at ``temperature`` 1 (the
workflow's setting). Checks: continuous/static (target >= 1.5, the issue's) and
continuous/HF, HF/static for context. Every side's documents must have exactly the forced
lengths (checked); the static batcher and HF draw the same multinomials (same seed, same
batches), so their documents are compared token for token (``static_hf_tokens_equal``); and
a greedy run of one batch of documents, continuous vs HF, must give the same tokens
(``greedy_hf_tokens_equal``).

**KV-cache memory** (``memory``): the continuous batcher's cache at the paper preset's
sampling batch (512) and context (``max_new_tokens`` 511) for each paper model, by the
formula (:func:`dlrepro.decode.kv_cache_bytes`, bf16 as on CUDA); and, for the models whose
cache is at most ``memory_measure_max_gib``, measured: the peak resident memory (CPU: RSS
high-water mark, reset before) or peak CUDA allocation above the model's, over the cache's
allocation and ``memory_steps`` decode steps under bf16 autocast.

**Fixed-length generation, ours vs Hugging Face** (``cases``). ``ours`` is :func:`dlrepro.sampling.generate` (the sampler of the
model-collapse stage's ``collapse sample`` jobs, with its preallocated KV cache) on
:class:`dlrepro.models.transformer.Transformer` (``arch="gpt2"``). The baseline is
``transformers``' ``GPT2LMHeadModel.generate`` with ``use_cache=True`` (its default
``DynamicCache``) on a ``GPT2Config`` of the same shape (vocabulary, ``n_positions`` =
block size, ``n_embd``, ``n_layer``, ``n_head``, MLP width 4d, GELU with the tanh
approximation (``gelu_new``), LayerNorm eps 1e-5, tied embeddings, no dropout, SDPA
attention), built with random weights (nothing is downloaded) into which *our* random
weights are copied (HF GPT-2's ``Conv1D`` layers store the transposes of our ``nn.Linear``
weights). Before timing, the two models' logits on the prompts must agree to 1e-4, so both
sides compute the same function. Both sides get the same prompts (random tokens, one row per
sequence), batch size and number of new tokens, in two modes:

* greedy: ours ``temperature=0``; HF ``do_sample=False``;
* sampling at ``temperature`` (1.0, the workflow's setting), no top-k / top-p: ours
  ``SamplingConfig(temperature=T)``; HF ``do_sample=True, temperature=T, top_k=0,
  top_p=1.0`` (set explicitly: HF's defaults would otherwise add a top-k of 50). HF then
  applies no logits processor at T = 1 and draws with ``torch.multinomial`` from the
  global generator, as ours does from its ``torch.Generator``; seeded alike, the two
  sides draw the same tokens.

HF is stopped by length only: the GPT-2 config has no bos/eos/pad token, so it generates
exactly ``new_tokens`` tokens per row (checked), and ours is called without ``eos_id``.
Both outputs are compared token for token (``*_tokens_equal``: the fraction of generated
tokens that agree; 1.0 means identical, which is what one expects up to float rounding of
near-tied logits).

tokens/s = batch size x new tokens / wall time of the whole call (prompt prefill included,
as a sampling job pays it), the median of ``repeats`` runs of each side, interleaved
(ours and HF alternate, the order flipping every repeat) after one short warm-up call of
each, so that machine noise hits both; the ratio is ours/HF (target >= 1.0). Sizes:
``workflow``, the model-collapse stage's default model (``config.yaml``: GPT-2 style,
d_model 64, 2 layers, 4 heads, block 128, vocabulary 512) sampled as ``collapse sample``
does (batch 256, one prompt token, 127 new tokens; the prompt token is random rather than
the document separator, and there is no end-of-document stop, so every row runs the full
length), and ``larger`` (d_model 256, 4 layers,
block 320, batch 32, 64 prompt tokens + 256 new tokens).

**KV cache vs no cache.** The same sampler with ``SamplingConfig(use_cache=False)``
(recomputes the whole context every step) against the cached path, on the workflow's model
with a block just long enough for 256 new tokens after a 1-token prompt, batch 16 on both
sides (the uncached path is quadratic in the length: batch 256 would take minutes),
sampling at ``temperature``; target >= 3x at 256 new tokens (none below 256, as in
``QUICK``). The two paths draw the same random numbers, so their outputs are compared too.

Threads: ``torch.set_num_threads(threads)`` for the whole run (restored afterwards);
default 1, what the workflow's sampling jobs run with (``compute.train_resources.threads``).
(With 2 threads on a 2-core machine that other jobs share, both sides run several times
slower, each small op waiting for a descheduled OpenMP thread; the ratios stay above 1.)
Runs on CPU, fp32. Needs ``transformers`` (the ``bench`` extra, which ``make bench`` installs to ``.venv/bench``); ``torch``'s global RNG is
restored afterwards.

    .venv/bin/python -m benchmarks sampling [--quick]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from benchmarks import check, data_mirror, use_bench_packages
from benchmarks.kv_memory import PAPER_MODELS, PaperModel, run_memory

NAME = "sampling"
use_bench_packages()  # transformers, from the prefix `make bench` installs it to


@dataclass(frozen=True)
class Case:
    """One model shape and sampling shape (the prompt plus new tokens must fit in ``block_size``)."""

    name: str
    d_model: int
    n_layer: int
    n_head: int
    block_size: int
    batch_size: int
    prompt_len: int
    new_tokens: int

    @property
    def label(self) -> str:
        return (f"d{self.d_model} L{self.n_layer}, batch {self.batch_size}, "
                f"{self.prompt_len}+{self.new_tokens} tokens")


@dataclass(frozen=True)
class CorpusCase:
    """A corpus-sampling shape: the workflow's prompt (``bos``) and ``block_size - 1`` new tokens at most."""

    name: str
    d_model: int
    n_layer: int
    n_head: int
    block_size: int
    batch_size: int
    n_documents: int

    @property
    def label(self) -> str:
        return f"d{self.d_model} L{self.n_layer}, batch {self.batch_size}, {self.n_documents} documents"

    def as_case(self) -> Case:
        return Case(self.name, self.d_model, self.n_layer, self.n_head, self.block_size, self.batch_size,
                    prompt_len=1, new_tokens=self.block_size - 1)


@dataclass
class Setup:
    vocab_size: int = 512  # config.yaml's data.text.vocab_size
    cases: tuple[Case, ...] = (
        Case("workflow", d_model=64, n_layer=2, n_head=4, block_size=128, batch_size=256,
             prompt_len=1, new_tokens=127),
        Case("larger", d_model=256, n_layer=4, n_head=4, block_size=320, batch_size=32,
             prompt_len=64, new_tokens=256),
    )
    no_cache: Case = Case("no cache", d_model=64, n_layer=2, n_head=4, block_size=257, batch_size=16,
                          prompt_len=1, new_tokens=256)
    corpus: tuple[CorpusCase, ...] = (
        # 8 documents per slot (the default preset samples 24); the tail, where the last
        # documents finish in a thinning batch, is then a sampling job's share of it
        CorpusCase("workflow", d_model=64, n_layer=2, n_head=4, block_size=128, batch_size=256,
                   n_documents=2048),
        CorpusCase("d256", d_model=256, n_layer=4, n_head=4, block_size=128, batch_size=64, n_documents=512),
    )
    memory_models: tuple[PaperModel, ...] = PAPER_MODELS
    memory_batch: int = 512  # workflow/presets/paper.yaml collapse.sampling.batch_size
    memory_max_new_tokens: int = 511  # the paper models' block_size 512 - 1
    memory_measure_max_gib: float = 1.5  # measure (not only compute) caches up to this size
    memory_steps: int = 2
    temperature: float = 1.0  # the sampling mode (besides greedy)
    repeats: int = 3
    warmup_tokens: int = 8  # new tokens of each side's warm-up call
    threads: int = 1
    seed: int = 0


QUICK = Setup(
    cases=(Case("tiny", d_model=32, n_layer=2, n_head=4, block_size=24, batch_size=4, prompt_len=4,
                new_tokens=16),),
    no_cache=Case("no cache", d_model=32, n_layer=2, n_head=4, block_size=24, batch_size=4, prompt_len=4,
                  new_tokens=16),
    corpus=(CorpusCase("tiny", d_model=32, n_layer=2, n_head=4, block_size=24, batch_size=8, n_documents=40),),
    memory_models=(PaperModel("tiny", "llama", n_layer=2, n_head=4, d_model=32, block_size=64, vocab_size=512),),
    memory_batch=8, memory_max_new_tokens=63, memory_measure_max_gib=0.01,
    repeats=1, warmup_tokens=2,
)


def our_model(case: Case, vocab_size: int, seed: int):
    """The workflow's GPT-2-style Transformer of ``case``'s shape, seeded random init."""
    from dlrepro.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(seed)
    return Transformer(TransformerConfig(vocab_size=vocab_size, block_size=case.block_size,
                                         d_model=case.d_model, n_layer=case.n_layer, n_head=case.n_head,
                                         arch="gpt2"))


def make_models(case: Case, vocab_size: int, seed: int):
    """Our Transformer (seeded random init) and HF's GPT2LMHeadModel of the same shape with our weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    ours = our_model(case, vocab_size, seed)
    hf_config = GPT2Config(
        vocab_size=vocab_size, n_positions=case.block_size, n_embd=case.d_model, n_layer=case.n_layer,
        n_head=case.n_head, n_inner=None, activation_function="gelu_new", layer_norm_epsilon=1e-5,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, attn_implementation="sdpa",
    )
    hf = GPT2LMHeadModel(hf_config)
    state = {}
    for key, value in ours.state_dict().items():
        if key.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            value = value.t().contiguous()  # nn.Linear [out, in] -> Conv1D [in, out]
        state[key] = value
    hf.load_state_dict(state, strict=True)
    if hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr():
        raise RuntimeError("HF GPT-2's lm_head is not tied to wte")
    return ours.eval(), hf.eval()


def _hf_generation_config(new_tokens: int, temperature: float):
    from transformers import GenerationConfig

    sample = temperature > 0
    return GenerationConfig(
        max_new_tokens=new_tokens, do_sample=sample, temperature=temperature if sample else None,
        top_k=0, top_p=1.0, use_cache=True, num_beams=1,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _ours(model, prompts, new_tokens: int, temperature: float, seed: int, use_cache: bool = True):
    from dlrepro.sampling import SamplingConfig, generate

    cfg = SamplingConfig(temperature=temperature, max_new_tokens=new_tokens, use_cache=use_cache,
                         batch_size=prompts.size(0))
    return lambda: generate(model, prompts, cfg, torch.Generator().manual_seed(seed))


def _hf(model, prompts, new_tokens: int, temperature: float, seed: int):
    gen_config = _hf_generation_config(new_tokens, temperature)
    mask = torch.ones_like(prompts)

    def run():
        torch.manual_seed(seed)  # HF samples from the global generator
        with torch.no_grad():
            out = model.generate(prompts, attention_mask=mask, generation_config=gen_config)
        if out.shape != (prompts.size(0), prompts.size(1) + new_tokens):
            raise RuntimeError(f"HF generate returned shape {tuple(out.shape)}, expected "
                               f"{(prompts.size(0), prompts.size(1) + new_tokens)} (stopped early?)")
        return out
    return run


def _interleaved(sides: dict, repeats: int, n_tokens: int) -> tuple[dict, dict]:
    """Run each side ``repeats`` times, alternating (order flipped every repeat); tokens/s per run
    and the last output of each side."""
    rates = {name: [] for name in sides}
    outputs = {}
    names = list(sides)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            seconds, outputs[name] = _timed(sides[name])
            rates[name].append(n_tokens / seconds)
    return rates, outputs


def _equal_fraction(a: torch.Tensor, b: torch.Tensor, prompt_len: int) -> float:
    return float((a[:, prompt_len:] == b[:, prompt_len:]).float().mean())


def run_case(case: Case, setup: Setup) -> dict:
    """Ours vs HF on one case, greedy and at ``setup.temperature``."""
    if case.prompt_len + case.new_tokens > case.block_size:
        raise ValueError(f"{case}: prompt + new tokens exceed block_size")
    ours, hf = make_models(case, setup.vocab_size, setup.seed)
    prompts = torch.randint(0, setup.vocab_size, (case.batch_size, case.prompt_len),
                            generator=torch.Generator().manual_seed(setup.seed + 1))
    with torch.no_grad():
        logit_diff = float((ours(prompts)[0] - hf(prompts).logits).abs().max())
    if not logit_diff < 1e-4:
        raise RuntimeError(f"{case.name}: our logits and HF's differ by {logit_diff:.3g}; not the same model")

    n_tokens = case.batch_size * case.new_tokens
    result = {"case": asdict(case), "max_logit_diff": logit_diff}
    for mode, temperature in (("greedy", 0.0), ("sampled", setup.temperature)):
        seed = setup.seed + 2
        # warm-up: one short call of each (allocator, lazy initialisation, HF's first-call set-up)
        _ours(ours, prompts, setup.warmup_tokens, temperature, seed)()
        _hf(hf, prompts, setup.warmup_tokens, temperature, seed)()
        rates, out = _interleaved({"ours": _ours(ours, prompts, case.new_tokens, temperature, seed),
                                   "hf": _hf(hf, prompts, case.new_tokens, temperature, seed)},
                                  setup.repeats, n_tokens)
        ours_rate, hf_rate = statistics.median(rates["ours"]), statistics.median(rates["hf"])
        result[mode] = {
            "temperature": temperature,
            "ours_tokens_per_s": ours_rate, "hf_tokens_per_s": hf_rate,
            "ratio": ours_rate / hf_rate,
            "ours_runs": rates["ours"], "hf_runs": rates["hf"],
            "tokens_equal": _equal_fraction(out["ours"], out["hf"], case.prompt_len),
        }
    return result


def run_no_cache(setup: Setup) -> dict:
    """The same sampler with and without its KV cache, at ``setup.temperature``."""
    case = setup.no_cache
    model = our_model(case, setup.vocab_size, setup.seed)
    prompts = torch.randint(0, setup.vocab_size, (case.batch_size, case.prompt_len),
                            generator=torch.Generator().manual_seed(setup.seed + 1))
    seed, t = setup.seed + 2, setup.temperature
    for use_cache in (True, False):
        _ours(model, prompts, setup.warmup_tokens, t, seed, use_cache)()
    rates, out = _interleaved({"cache": _ours(model, prompts, case.new_tokens, t, seed, True),
                               "no_cache": _ours(model, prompts, case.new_tokens, t, seed, False)},
                              setup.repeats, case.batch_size * case.new_tokens)
    cache_rate, no_cache_rate = statistics.median(rates["cache"]), statistics.median(rates["no_cache"])
    return {"case": asdict(case), "temperature": t,
            "cache_tokens_per_s": cache_rate, "no_cache_tokens_per_s": no_cache_rate,
            "ratio": cache_rate / no_cache_rate,
            "cache_runs": rates["cache"], "no_cache_runs": rates["no_cache"],
            "tokens_equal": _equal_fraction(out["cache"], out["no_cache"], case.prompt_len)}


# --------------------------------------------------------------------------- corpus sampling

EOS = 0  # the data stage's <|endoftext|> id: the prompt and the end of every document


def real_lengths(vocab_size: int) -> tuple[np.ndarray, str]:
    """Token lengths of the documents of the real training split (tinyshakespeare, prepared as
    the data stage does) and where they came from; a seeded geometric stand-in without a mirror."""
    mirror = data_mirror()
    source = mirror / "tinyshakespeare" / "input.txt" if mirror is not None else None
    if source is None or not source.is_file():
        rng = np.random.default_rng(0)
        return rng.geometric(1 / 60, size=5000).astype(np.int64), "generated (geometric, mean 60): no data mirror"
    from dlrepro.data.text import TextSettings, prepare_text

    with tempfile.TemporaryDirectory() as tmp:
        manifest = prepare_text("tinyshakespeare", {"input.txt": source}, TextSettings(vocab_size=vocab_size),
                                tmp, separator="\n\n")
        train = np.load(os.path.join(tmp, "train.npy")).astype(np.int64)
    ends = np.flatnonzero(train == manifest["eot_id"])
    lengths = np.diff(np.r_[-1, ends]) - 1
    return lengths, f"tinyshakespeare train split ({lengths.size} documents, vocab {vocab_size})"


def force_lengths(logits: torch.Tensor, target: torch.Tensor, step) -> torch.Tensor:
    """Rows end exactly at ``target`` tokens: eos forbidden before step ``target``, the only
    choice at it (``step``: an int, or a tensor per row)."""
    at_end = (step == target)[:, None]
    logits = logits.clone()
    logits[:, EOS] = float("-inf")
    logits = torch.where(at_end, torch.full_like(logits, float("-inf")), logits)
    logits[:, EOS] = torch.where(at_end[:, 0], 0.0, logits[:, EOS])
    return logits


def _static_corpus(model, lengths: torch.Tensor, batch_size: int, temperature: float, seed: int):
    """The sampler before continuous batching: batches of generate() with eos, cut at the first eos."""
    from dlrepro.sampling import SamplingConfig, generate

    cfg = SamplingConfig(temperature=temperature, max_new_tokens=model.config.block_size - 1,
                         batch_size=batch_size)
    prompts = torch.full((batch_size, 1), EOS, dtype=torch.long)
    docs = []
    for b, start in enumerate(range(0, lengths.numel(), batch_size)):
        target = torch.zeros(batch_size, dtype=torch.long)
        part = lengths[start:start + batch_size]
        target[:part.numel()] = part
        generator = torch.Generator().manual_seed(seed + b)
        rows = generate(model, prompts, cfg, generator, eos_id=EOS,
                        logits_processor=lambda logits, t, target=target: force_lengths(logits, target, t))
        docs.extend(_cut(rows[:part.numel(), 1:]))
    return docs


def _cut(rows: torch.Tensor) -> list[np.ndarray]:
    out = []
    for row in rows.numpy():
        ends = np.flatnonzero(row == EOS)
        out.append(row[: ends[0] if ends.size else row.size].astype(np.int64))
    return out


def _continuous_corpus(model, lengths: torch.Tensor, batch_size: int, temperature: float, seed: int):
    from dlrepro.sampling import SamplingConfig, sample_documents

    n = lengths.numel()
    cfg = SamplingConfig(temperature=temperature, max_new_tokens=model.config.block_size - 1,
                         batch_size=batch_size)

    def processor(logits, doc, step):
        return force_lengths(logits, lengths[doc.clamp(max=n - 1)], step)
    return sample_documents(model, n, cfg, bos_id=EOS, eos_id=EOS, seed=seed, logits_processor=processor)


def _hf_corpus(model, lengths: torch.Tensor, batch_size: int, temperature: float, seed: int):
    from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

    sample = temperature > 0
    gen_config = GenerationConfig(
        max_new_tokens=model.config.n_positions - 1, do_sample=sample, temperature=temperature if sample else None,
        top_k=0, top_p=1.0, use_cache=True, num_beams=1, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS)

    class ForceLengths(LogitsProcessor):
        def __init__(self, target):
            self.target = target

        def __call__(self, input_ids, scores):
            return force_lengths(scores, self.target, input_ids.shape[1] - 1)

    prompts = torch.full((batch_size, 1), EOS, dtype=torch.long)
    mask = torch.ones_like(prompts)
    docs = []
    for b, start in enumerate(range(0, lengths.numel(), batch_size)):
        target = torch.zeros(batch_size, dtype=torch.long)
        part = lengths[start:start + batch_size]
        target[:part.numel()] = part
        torch.manual_seed(seed + b)  # HF samples from the global generator
        with torch.no_grad():
            rows = model.generate(prompts, attention_mask=mask, generation_config=gen_config,
                                  logits_processor=LogitsProcessorList([ForceLengths(target)]))
        docs.extend(_cut(rows[:part.numel(), 1:]))
    return docs


def _same_docs(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def run_corpus(case: CorpusCase, setup: Setup, all_lengths: np.ndarray) -> dict:
    """Continuous vs static vs HF on one corpus shape (module docstring)."""
    ours, hf = make_models(case.as_case(), setup.vocab_size, setup.seed)
    max_new = case.block_size - 1
    rng = np.random.default_rng([setup.seed, 0x1E2])
    lengths = torch.from_numpy(np.minimum(rng.choice(all_lengths, size=case.n_documents), max_new))
    useful = int(lengths.sum())
    t, seed = setup.temperature, setup.seed + 3
    sides = {"continuous": _continuous_corpus, "static": _static_corpus, "hf": _hf_corpus}
    model_of = {"continuous": ours, "static": ours, "hf": hf}
    warm = lengths[:case.batch_size].clamp(max=setup.warmup_tokens)
    for name, fn in sides.items():  # warm-up: one short batch each
        fn(model_of[name], warm, case.batch_size, t, seed)
    rates = {name: [] for name in sides}
    docs = {}
    names = list(sides)
    for r in range(setup.repeats):
        for name in names[r % 3:] + names[:r % 3]:
            seconds, docs[name] = _timed(lambda: sides[name](model_of[name], lengths, case.batch_size, t, seed))
            rates[name].append(useful / seconds)
    expected = lengths.tolist()
    for name, got in docs.items():
        if [d.size for d in got] != expected:
            raise RuntimeError(f"{case.name}: {name} documents do not have the forced lengths")
    one_batch = lengths[:case.batch_size]
    greedy = {name: sides[name](model_of[name], one_batch, case.batch_size, 0.0, seed)
              for name in ("continuous", "hf")}
    med = {name: statistics.median(v) for name, v in rates.items()}
    # the static batcher's row-steps: each batch runs until its longest document has ended
    static_steps = sum(min(int(lengths[i:i + case.batch_size].max()) + 1, max_new)
                       for i in range(0, case.n_documents, case.batch_size))
    return {
        "case": asdict(case), "temperature": t, "useful_tokens": useful, "max_new_tokens": max_new,
        "mean_length": useful / case.n_documents, "at_max_length": int((lengths == max_new).sum()),
        "static_row_step_efficiency": useful / (static_steps * case.batch_size),
        **{f"{name}_tokens_per_s": med[name] for name in sides},
        **{f"{name}_runs": rates[name] for name in sides},
        "ratio_static": med["continuous"] / med["static"], "ratio_hf": med["continuous"] / med["hf"],
        "hf_over_static": med["hf"] / med["static"],
        "static_hf_tokens_equal": _same_docs(docs["static"], docs["hf"]),
        "greedy_hf_tokens_equal": _same_docs(greedy["continuous"], greedy["hf"]),
        "greedy_documents": len(one_batch),
    }


def no_cache_target(new_tokens: int) -> float | None:
    """The issue's target for the cache's speed-up (>= 3x), set at 256 new tokens or more (the
    gain grows with the length; a few tokens, as in ``QUICK``, have no target)."""
    return 3.0 if new_tokens >= 256 else None


def _agree(fraction: float) -> str:
    return "outputs identical" if fraction == 1.0 else f"{100 * fraction:.1f}% of tokens equal"


def benchmark(setup: Setup) -> dict:
    try:
        import transformers
    except ImportError as e:
        raise ImportError("the sampling benchmark compares with Hugging Face transformers: "
                          "pip install 'transformers>=5' (the bench extra)") from e

    import logging

    from dlrepro.log import get_logger

    threads = torch.get_num_threads()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # HF's notes on generation flags
    get_logger("benchmarks")  # installs the workflow's log handler, whose level we lower:
    ours_log = logging.getLogger("dlrepro")  # the sampler's and data stage's progress lines
    ours_level = ours_log.level
    ours_log.setLevel(logging.WARNING)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(setup.threads)
            all_lengths, lengths_source = real_lengths(setup.vocab_size)
            corpus = [run_corpus(case, setup, all_lengths) for case in setup.corpus]
            cases = [run_case(case, setup) for case in setup.cases]
            no_cache = run_no_cache(setup)
            memory = run_memory(setup)
    finally:
        torch.set_num_threads(threads)
        transformers.logging.set_verbosity(verbosity)
        ours_log.setLevel(ours_level)

    checks = []
    for c in corpus:
        label = f"{CorpusCase(**c['case']).label}, T={c['temperature']:g}"
        lengths_note = f"mean length {c['mean_length']:.1f} of max {c['max_new_tokens']}"
        checks.append(check(
            f"{c['case']['name']} corpus: useful tokens/s continuous/static", c["ratio_static"], "x",
            target=1.5, note=(f"{c['continuous_tokens_per_s']:,.0f} vs {c['static_tokens_per_s']:,.0f}; {label}; "
                              f"{lengths_note}; static batches spend "
                              f"{100 * c['static_row_step_efficiency']:.0f}% of row-steps on documents")))
        checks.append(check(
            f"{c['case']['name']} corpus: useful tokens/s continuous/HF", c["ratio_hf"], "x",
            note=(f"{c['continuous_tokens_per_s']:,.0f} vs {c['hf_tokens_per_s']:,.0f}; HF/static "
                  f"{c['hf_over_static']:.2f}x; static and HF documents "
                  f"{'identical' if c['static_hf_tokens_equal'] else 'DIFFER'}; greedy continuous vs HF "
                  f"{'identical' if c['greedy_hf_tokens_equal'] else 'DIFFER'} ({c['greedy_documents']} documents)")))
    for m in memory:
        pm = PaperModel(**m["model"])
        note = f"batch {m['batch_size']} x {m['max_new_tokens']} positions, bf16: formula"
        if m["measured"]:
            note += (f"; measured peak {m['peak_bytes'] / 2 ** 30:.3f} GiB above the model "
                     f"({m['where']}, {setup.memory_steps} decode steps)")
        checks.append(check(f"KV cache, {pm.name} at the paper's sampling batch and context",
                            m["formula_bytes"] / 2 ** 30, "GiB", note=note))
    for c in cases:
        label = Case(**c["case"]).label
        for mode, metric in (("greedy", "greedy"), ("sampled", f"T={c['sampled']['temperature']:g}")):
            m = c[mode]
            checks.append(check(
                f"{c['case']['name']}: {metric} tokens/s ours/HF", m["ratio"], "x", target=1.0,
                note=(f"{m['ours_tokens_per_s']:,.0f} vs {m['hf_tokens_per_s']:,.0f} tokens/s; {label}; "
                      f"{_agree(m['tokens_equal'])}")))
    new = no_cache["case"]["new_tokens"]
    checks.append(check(
        f"KV cache vs no cache, {new} new tokens", no_cache["ratio"], "x", target=no_cache_target(new),
        note=(f"{no_cache['cache_tokens_per_s']:,.0f} vs {no_cache['no_cache_tokens_per_s']:,.0f} tokens/s; "
              f"{Case(**no_cache['case']).label}, T={no_cache['temperature']:g}; "
              f"{_agree(no_cache['tokens_equal'])}")))
    return {"benchmark": NAME, "setup": asdict(setup), "threads": setup.threads,
            "transformers": transformers.__version__, "torch": torch.__version__,
            "lengths_source": lengths_source, "corpus": corpus, "memory": memory,
            "cases": cases, "no_cache": no_cache, "checks": checks}
