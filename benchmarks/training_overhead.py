"""Training overhead: the workflow's Lightning training path vs a hand-written PyTorch loop.

Both sides train the same decoder LM (:class:`dlrepro.models.transformer.Transformer`, same
initial weights) on the same batches (:class:`dlrepro.training.StepBatches` over a
memory-mapped token file read through :class:`dlrepro.collapse.lm.TokenStream`) with the
same optimizer (AdamW, decay on matrices only), learning-rate schedule (warmup + cosine),
gradient clipping (1.0), dtype (fp32 on CPU) and allocator settings
(:func:`dlrepro.training.configure_allocator`, which ``fit`` applies; set here before
either side runs):

* ``lightning``: :func:`dlrepro.training.fit` with :class:`dlrepro.collapse.module.LanguageModel`,
  exactly what a ``collapse_train`` job runs (checkpoints, NaN guard, per-step reseeding,
  progress log included);
* ``plain``: ``for step: zero_grad; loss = model(x, y); backward; clip; step; sched.step``.

Sizes: the default preset's language model (gpt2, d_model 64) and a wider one (d_model
256), both 2 layers, context 128, batch 16. Reported per size: tokens/s of each side over
the steps after ``warmup`` (median over ``repeats`` interleaved runs), their ratio (target
>= 0.95), Lightning's fixed start-up cost inside ``fit`` (from the call to its first
step), and the final losses of both sides, which must agree (the same computation), so
that the baseline is known to be faithful.

    .venv/bin/python -m benchmarks training_overhead [--quick]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks import check

NAME = "training_overhead"


@dataclass
class Setup:
    d_models: tuple[int, ...] = (64, 256)
    n_layer: int = 2
    n_head: int = 4
    block_size: int = 128
    vocab_size: int = 2048
    batch_size: int = 16
    steps: int = 48
    warmup: int = 8  # steps excluded from the rate
    repeats: int = 7  # short interleaved runs: this machine's speed drifts by tens of % over seconds
    threads: int = 2
    checkpoint_every: int = 50  # the workflow's default
    accelerator: str = "cpu"
    precision: str = "32-true"
    compile: bool = False

    @property
    def d_model(self) -> int:  # the size a single run uses (see _one)
        return self.d_models[0]


QUICK = Setup(d_models=(64,), n_layer=2, block_size=32, vocab_size=512, steps=12, warmup=4, repeats=1)


def token_stream(setup: Setup, folder: Path):
    """A random token file with enough windows for the run, read as the workflow reads it."""
    from dlrepro.collapse.corpus import TokenFile
    from dlrepro.collapse.lm import TokenStream

    n_tokens = setup.block_size * setup.batch_size * (setup.steps + 4) + 1
    tokens = np.random.default_rng(0).integers(0, setup.vocab_size, n_tokens, dtype=np.uint16)
    path = folder / "tokens.npy"
    np.save(path, tokens)
    return TokenStream.of_file(TokenFile(path), setup.block_size)


def make_model(setup: Setup):
    from dlrepro.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=setup.vocab_size, block_size=setup.block_size,
                                         d_model=setup.d_model, n_layer=setup.n_layer,
                                         n_head=setup.n_head))


def _optim():
    from dlrepro.collapse.params import OptimConfig

    return OptimConfig(lr=1e-3, warmup_steps=5, batch_size=16)


def timed_tokens(setup: Setup) -> int:
    return (setup.steps - setup.warmup) * setup.batch_size * setup.block_size


def run_plain(setup: Setup, stream) -> dict:
    from dlrepro.training import StepBatches, warmup_cosine

    torch.set_num_threads(setup.threads)
    model = make_model(setup)
    o = _optim()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=o.lr, betas=o.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, setup.steps, o.warmup_steps, o.min_lr_ratio))
    batches = StepBatches(stream.n_windows, setup.batch_size, setup.steps, 0, stream.collate)
    model.train()
    t_start = None
    for step, (x, y) in enumerate(batches):
        if step == setup.warmup:
            t_start = time.perf_counter()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    elapsed = time.perf_counter() - t_start
    return {"tokens_per_s": timed_tokens(setup) / elapsed, "final_loss": float(loss.detach())}


def run_lightning(setup: Setup, stream, ckpt_dir: Path) -> dict:
    """One ``collapse_train``-style run through :func:`dlrepro.training.fit`, clocked by a callback."""
    from lightning.pytorch.callbacks import Callback

    from dlrepro.collapse.module import LanguageModel
    from dlrepro.training import StepBatches, TrainSettings, fit

    class Clock(Callback):
        def __init__(self):
            self.first = self.start = self.end = None
            self.loss = None

        def on_train_batch_start(self, trainer, *args):
            if self.first is None:
                self.first = time.perf_counter()
            if trainer.global_step == setup.warmup:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, *args):
            self.loss = outputs["loss"].detach()
            if trainer.global_step == setup.steps:
                self.loss = float(self.loss)  # synchronises a GPU
                self.end = time.perf_counter()

    torch.manual_seed(0)
    module = LanguageModel(make_model(setup).config, _optim(), setup.steps)
    module.model.load_state_dict(make_model(setup).state_dict())  # the plain loop's initial weights
    settings = TrainSettings(seed=0, max_steps=setup.steps, accelerator=setup.accelerator,
                             precision=setup.precision, compile=setup.compile,
                             num_threads=setup.threads, checkpoint_every_n_steps=setup.checkpoint_every,
                             log_every_n_steps=max(setup.steps, 1))
    batches = StepBatches(stream.n_windows, setup.batch_size, setup.steps, 0, stream.collate)
    clock = Clock()
    t0 = time.perf_counter()
    fit(module, batches, settings, ckpt_dir, stage="benchmark", callbacks=[clock])
    return {"tokens_per_s": timed_tokens(setup) / (clock.end - clock.start),
            "startup_s": clock.first - t0, "final_loss": float(clock.loss),
            "n_params": module.model.num_params(non_embedding=True)}


def _one(setup: Setup, tmp: Path) -> dict:
    stream = token_stream(setup, tmp)
    plain, light = [], []
    for r in range(setup.repeats):  # interleaved, so that machine noise hits both sides
        plain.append(run_plain(setup, stream))
        light.append(run_lightning(setup, stream, tmp / f"ckpt-d{setup.d_model}-{r}"))
    ratios = [lt["tokens_per_s"] / p["tokens_per_s"] for p, lt in zip(plain, light)]
    return {
        "d_model": setup.d_model,
        "plain_tokens_per_s": statistics.median(p["tokens_per_s"] for p in plain),
        "lightning_tokens_per_s": statistics.median(lt["tokens_per_s"] for lt in light),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "lightning_startup_s": statistics.median(lt["startup_s"] for lt in light),
        "final_loss": {"plain": plain[-1]["final_loss"], "lightning": light[-1]["final_loss"]},
    }


def benchmark(setup: Setup) -> dict:
    import lightning  # noqa: F401  (imported once, outside every timed region)

    from dlrepro.training import configure_allocator

    configure_allocator()  # what fit() does; set before either side runs, so both have it

    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        for d in setup.d_models:
            folder = Path(tmp) / f"d{d}"
            folder.mkdir()
            sizes.append(_one(replace(setup, d_models=(d,)), folder))
    checks = []
    for s in sizes:
        checks.append(check(f"d{s['d_model']} training tokens/s, Lightning/plain loop", s["ratio"], "x",
                            target=0.95, note=f"{s['lightning_tokens_per_s']:,.0f} vs "
                                              f"{s['plain_tokens_per_s']:,.0f} tokens/s"))
    checks.append(check("Lightning start-up inside fit()", max(s["lightning_startup_s"] for s in sizes), "s",
                        note="from the fit() call to the first step"))
    return {"benchmark": NAME, "setup": asdict(setup), "sizes": sizes, "checks": checks}
