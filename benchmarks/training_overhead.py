"""Training overhead: the workflow's Lightning training path vs a hand-written PyTorch loop.

Both sides train the same decoder LM (:class:`dlrepro.models.transformer.Transformer`, same
initial weights) on the same batches (:class:`dlrepro.training.StepBatches` over a
memory-mapped token file read through :class:`dlrepro.collapse.lm.TokenStream`) with the
same optimizer (AdamW, decay on matrices only), learning-rate schedule (warmup + cosine),
gradient clipping (1.0) and dtype (fp32 on CPU):

* ``lightning``: :func:`dlrepro.training.fit` with :class:`dlrepro.collapse.module.LanguageModel`,
  exactly what a ``collapse_train`` job runs (checkpoints, NaN guard, per-step reseeding,
  progress log included);
* ``plain``: ``for step: zero_grad; loss = model(x, y); backward; clip; step; sched.step``.

Reported: tokens/s of each over the steps after ``warmup`` (median over ``repeats``
interleaved runs), their ratio (target >= 0.95), Lightning's fixed start-up cost (from the
``fit`` call to its first step), and the final losses of both sides, which must agree
(the same computation), so that the baseline is known to be faithful.

    .venv/bin/python benchmarks/training_overhead.py [--quick] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Setup:
    d_model: int = 256
    n_layer: int = 2
    n_head: int = 4
    block_size: int = 64
    vocab_size: int = 2048
    batch_size: int = 8
    steps: int = 40
    warmup: int = 8  # steps excluded from the rate
    repeats: int = 3
    threads: int = 2
    checkpoint_every: int = 50  # the harness's default


QUICK = Setup(d_model=64, n_layer=2, block_size=32, vocab_size=512, steps=12, warmup=4, repeats=1)


def _data(setup: Setup, folder: Path):
    from dlrepro.collapse.corpus import TokenFile
    from dlrepro.collapse.lm import TokenStream

    n_tokens = setup.block_size * setup.batch_size * (setup.steps + 4) + 1
    tokens = np.random.default_rng(0).integers(0, setup.vocab_size, n_tokens, dtype=np.uint16)
    path = folder / "tokens.npy"
    np.save(path, tokens)
    return TokenStream.of_file(TokenFile(path), setup.block_size)


def _model(setup: Setup):
    from dlrepro.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=setup.vocab_size, block_size=setup.block_size,
                                         d_model=setup.d_model, n_layer=setup.n_layer,
                                         n_head=setup.n_head))


def _optim():
    from dlrepro.collapse.cli import OptimConfig

    return OptimConfig(lr=1e-3, warmup_steps=5, batch_size=16)


def run_plain(setup: Setup, stream) -> dict:
    from dlrepro.training import StepBatches, warmup_cosine

    torch.set_num_threads(setup.threads)
    model = _model(setup)
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
    return {"tokens_per_s": _tokens(setup) / elapsed, "final_loss": float(loss.detach())}


def run_lightning(setup: Setup, stream, ckpt_dir: Path) -> dict:
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
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, *args):
            self.end = time.perf_counter()
            self.loss = float(outputs["loss"].detach())

    torch.manual_seed(0)
    module = LanguageModel(_model(setup).config, _optim(), setup.steps)
    module.model.load_state_dict(_model(setup).state_dict())  # the plain loop's initial weights
    settings = TrainSettings(seed=0, max_steps=setup.steps, accelerator="cpu", num_threads=setup.threads,
                             checkpoint_every_n_steps=setup.checkpoint_every,
                             log_every_n_steps=max(setup.steps, 1))
    batches = StepBatches(stream.n_windows, setup.batch_size, setup.steps, 0, stream.collate)
    clock = Clock()
    t0 = time.perf_counter()
    fit(module, batches, settings, ckpt_dir, stage="benchmark", callbacks=[clock])
    return {"tokens_per_s": _tokens(setup) / (clock.end - clock.start),
            "startup_s": clock.first - t0, "final_loss": clock.loss}


def _tokens(setup: Setup) -> int:
    return (setup.steps - setup.warmup) * setup.batch_size * setup.block_size


def benchmark(setup: Setup) -> dict:
    import lightning  # noqa: F401  (imported once, outside every timed region)

    with tempfile.TemporaryDirectory() as tmp:
        stream = _data(setup, Path(tmp))
        plain, light = [], []
        for r in range(setup.repeats):  # interleaved, so that machine noise hits both sides
            plain.append(run_plain(setup, stream))
            light.append(run_lightning(setup, stream, Path(tmp) / f"ckpt{r}"))
    ratios = [lt["tokens_per_s"] / p["tokens_per_s"] for p, lt in zip(plain, light)]
    return {
        "benchmark": "training_overhead",
        "setup": asdict(setup),
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "threads": setup.threads},
        "plain_tokens_per_s": statistics.median(p["tokens_per_s"] for p in plain),
        "lightning_tokens_per_s": statistics.median(lt["tokens_per_s"] for lt in light),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "target": 0.95,
        "lightning_startup_s": statistics.median(lt["startup_s"] for lt in light),
        "final_loss": {"plain": plain[-1]["final_loss"], "lightning": light[-1]["final_loss"]},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for tests")
    ap.add_argument("--out", type=Path, help="write the result as JSON")
    args = ap.parse_args(argv)
    result = benchmark(QUICK if args.quick else Setup())
    print(f"{'side':<10} {'tokens/s':>12}")
    print(f"{'plain':<10} {result['plain_tokens_per_s']:>12,.0f}")
    print(f"{'lightning':<10} {result['lightning_tokens_per_s']:>12,.0f}")
    verdict = "pass" if result["ratio"] >= result["target"] else "FAIL"
    print(f"ratio lightning/plain {result['ratio']:.3f} (target >= {result['target']}: {verdict}); "
          f"Lightning start-up {result['lightning_startup_s']:.2f} s; final loss plain "
          f"{result['final_loss']['plain']:.4f} / lightning {result['final_loss']['lightning']:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
