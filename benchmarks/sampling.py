"""Sampling: tokens/s of the workflow's batched KV-cached sampler vs Hugging Face ``generate``.

**Ours vs Hugging Face.** ``ours`` is :func:`dlrepro.sampling.generate` (the sampler of the
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

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from benchmarks import check, use_bench_packages

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

    threads = torch.get_num_threads()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # HF's notes on generation flags
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(setup.threads)
            cases = [run_case(case, setup) for case in setup.cases]
            no_cache = run_no_cache(setup)
    finally:
        torch.set_num_threads(threads)
        transformers.logging.set_verbosity(verbosity)

    checks = []
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
            "cases": cases, "no_cache": no_cache, "checks": checks}
