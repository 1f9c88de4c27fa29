"""``python -m dlrepro vae <subcommand>``: model collapse of a convolutional VAE on MNIST.

The loop, per policy and seed (generation 0 and its samples are shared by all policies)::

    train-classifier (once)        real train split -> classifier.pt (the judge of samples)
    train  --generation 0          real train split -> gen0/model.pt
    sample --model gen0/model.pt   -> gen0/samples/{images.npy,manifest.json}  (pool synthetic_1)
    mix    --generation g          real + synthetic_1..g -> mix.json + mix.indices.npy
    train  --generation g          mix.json -> gen<g>/model.pt (from scratch, same settings;
                                   "accumulate" trains the same number of epochs on its
                                   growing pool, so its compute grows with the pool)
    sample, evaluate (every generation), summarize, plot, grid

Synthetic images are the decoder's Bernoulli means at z ~ N(0, I) (``mode="mean"``, the
default): "sampling a VAE" in the image literature means decoding prior draws, and the
means are grey-level images in [0, 1] like real MNIST, while binary pixel draws would
add salt-and-pepper noise no real image has. The stochastic part the paper relies on,
the draw of z from the prior, is kept; ``mode="bernoulli"`` gives full ancestral
sampling for comparison.

Seeds: generation ``g`` of seed ``s`` initialises and orders its batches from
``derive_seed(s, g, 0)``; its samples come from ``derive_seed(s, g, 1)``. Policies share
these seeds (common random numbers), so they differ only by their data.

``summary.csv`` columns (one row per policy, generation, seed; generation 0 is shared and
is repeated under every policy):

    policy, generation, seed, n_train, n_real, n_synthetic,
    test_neg_elbo, test_rec_nll, test_kl,            (nats per real test image)
    sample_class_entropy, sample_coverage_entropy,   (nats)
    sample_classes_covered, sample_kid, sample_pixel_std, n_samples, n_test

(see :mod:`dlrepro.vae.metrics` for the definitions).
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from dlrepro.cpu import configure as configure_cpu
from dlrepro.errors import InputFileError, ParamsError, UserError
from dlrepro.io import read_json, save_npy, sha256_file, write_csv, write_json
from dlrepro.log import get_logger
from dlrepro.policies import POLICIES
from dlrepro.vae.data import (
    SYNTHETIC_IMAGES,
    TEST_IMAGES,
    TEST_LABELS,
    ImageMix,
    LabelledImages,
    build_mix,
    open_images,
    write_mix,
)

SUMMARY_COLUMNS = [
    "policy",
    "generation",
    "seed",
    "n_train",
    "n_real",
    "n_synthetic",
    "test_neg_elbo",
    "test_rec_nll",
    "test_kl",
    "sample_class_entropy",
    "sample_coverage_entropy",
    "sample_classes_covered",
    "sample_kid",
    "sample_pixel_std",
    "n_samples",
    "n_test",
]

_TRAIN, _SAMPLE = 0, 1  # purposes mixed into derived seeds


def derive_seed(seed: int, generation: int, purpose: int) -> int:
    """A 32-bit seed from ``(seed, generation, purpose)`` via numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(seed), int(generation), int(purpose)]).generate_state(1)[0])


# --------------------------------------------------------------------------- parameters


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value > 0:
            raise ParamsError(f"{type(obj).__name__}.{name} must be > 0, got {value!r}")


@dataclass
class _OptimParams:
    """AdamW with linear warmup and cosine decay; the budget is ``epochs`` or ``max_steps``
    (``default_epochs`` when neither is given: the schema's ``epochs`` default of the block,
    which tests/test_defaults.py holds the two to)."""

    default_epochs: ClassVar[float]

    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    epochs: float | None = None
    max_steps: int | None = None
    compute: dict = field(default_factory=dict)  # passed to TrainSettings.from_dict

    def __post_init__(self) -> None:
        if self.epochs is not None and self.max_steps is not None:
            raise ParamsError(
                f"set exactly one of epochs and max_steps, got epochs={self.epochs!r}, "
                f"max_steps={self.max_steps!r}"
            )
        if self.epochs is None and self.max_steps is None:
            self.epochs = self.default_epochs
        _positive(self, "batch_size", "lr", "epochs", "max_steps")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ParamsError(
                f"warmup_steps and weight_decay must be >= 0, got {self.warmup_steps}, {self.weight_decay}"
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ParamsError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")

    def optim_kwargs(self) -> dict[str, Any]:
        """The optimiser settings a Lightning module of :mod:`dlrepro.vae.module` takes."""
        return {
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "warmup_steps": self.warmup_steps,
            "min_lr_ratio": self.min_lr_ratio,
        }


@dataclass
class TrainParams(_OptimParams):
    """``vae train``: the VAE's size and optimisation (the same for every generation).

    Defaults: the schema's (``vae.train``), which the default preset keeps (generation 0
    at 143 nats/image after 2 epochs over 8,000 real images, config.yaml's note).
    """

    default_epochs: ClassVar[float] = 2.0

    latent_dim: int = 16
    channels: int = 16
    hidden: int = 128
    batch_size: int = 32
    lr: float = 3e-3


@dataclass
class ClassifierParams(_OptimParams):
    """``vae train-classifier``: the judge CNN, trained once on the real train split."""

    default_epochs: ClassVar[float] = 3.0

    channels: int = 16
    feature_dim: int = 128
    seed: int = 0
    batch_size: int = 128
    lr: float = 3e-3


@dataclass
class SampleParams:
    mode: str = "mean"  # "mean" (decoder means) | "bernoulli" (binary pixel draws)
    batch_size: int = 1000
    num_threads: int | None = None

    def __post_init__(self) -> None:
        from dlrepro.vae.model import SAMPLE_MODES

        if self.mode not in SAMPLE_MODES:
            raise ParamsError(f"sample mode must be one of {SAMPLE_MODES}, got {self.mode!r}")
        _positive(self, "batch_size", "num_threads")


@dataclass
class EvalParams:
    noise_seed: int = 0  # the reparametrisation noise of the test negative ELBO
    batch_size: int = 500
    kid_subsets: int = 20
    kid_subset_size: int = 1000
    kid_seed: int = 0
    min_class_mass: float = 0.05
    num_threads: int | None = None

    def __post_init__(self) -> None:
        _positive(self, "batch_size", "kid_subsets", "kid_subset_size", "num_threads")
        if not 0.0 < self.min_class_mass < 1.0:
            raise ParamsError(f"min_class_mass must lie in (0, 1), got {self.min_class_mass}")


def parse_params(cls: type, text: str | None) -> Any:
    """Build the dataclass ``cls`` from a JSON object, rejecting unknown keys by name."""
    from dlrepro.cliutil import parse_params as _parse

    return _parse(text or None, cls)


# --------------------------------------------------------------------------- commands


def _settings(params: _OptimParams, seed: int):
    """The harness settings: the ``compute`` block plus this run's seed and budget."""
    from dlrepro.training import TrainSettings

    return TrainSettings.from_dict(params.compute, seed=seed, epochs=params.epochs, max_steps=params.max_steps)


def _fit_and_save(
    module,
    data,
    settings,
    params: _OptimParams,
    args: argparse.Namespace,
    stage: str,
    tag: dict[str, Any],
    meta: dict[str, Any],
    extra_metrics: Callable[[Any], dict[str, Any]] | None = None,
) -> None:
    """Shared tail of the training commands: fit (resuming from ``--ckpt-dir``), write the
    model (with ``meta``) and the metrics JSON (with ``extra_metrics(model)``), then remove
    the checkpoints."""
    from dlrepro.training import StepBatches, fit, settings_dict
    from dlrepro.vae.model import save_model

    batches = StepBatches(len(data), params.batch_size, module.total_steps, settings.seed, data.collate)
    history = fit(module, batches, settings, args.ckpt_dir, stage=stage, tag=tag)
    losses = [r["train_loss"] for r in history.rows if "train_loss" in r]
    meta = {**meta, "steps": module.total_steps, "train_seed": settings.seed}
    metrics = {
        **meta,
        "final_train_loss": losses[-1] if losses else None,
        "history": history.rows,
        "params": asdict(params),
        "settings": settings_dict(settings),
    }
    if extra_metrics is not None:
        metrics.update(extra_metrics(module.model))
    save_model(args.out_model, module.model, meta)
    write_json(args.out_metrics, metrics)
    shutil.rmtree(args.ckpt_dir, ignore_errors=True)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from dlrepro.training import steps_for
    from dlrepro.vae.model import VAEConfig
    from dlrepro.vae.module import VAEModule

    params = parse_params(TrainParams, args.params)
    if args.generation < 0:
        raise UserError(f"--generation must be >= 0, got {args.generation}")
    if args.data_spec == "real":
        if args.data_dir is None:
            raise UserError("--data-spec real needs --data-dir (the real data directory)")
        data = ImageMix.real(args.data_dir)
    else:
        spec = read_json(args.data_spec)
        if (spec["generation"], spec["policy"]) != (args.generation, args.policy):
            raise UserError(
                f"{args.data_spec} mixes generation {spec['generation']} by {spec['policy']!r}, "
                f"but --generation {args.generation} --policy {args.policy!r} was given"
            )
        data = ImageMix.from_mix(args.data_spec)
    settings = _settings(params, derive_seed(args.seed, args.generation, _TRAIN))
    log = get_logger("vae-train", generation=args.generation, policy=args.policy, seed=args.seed)
    log.info("training on %s", data.composition())
    total = steps_for(settings, len(data), params.batch_size)
    torch.manual_seed(settings.seed)  # the initial weights
    module = VAEModule(
        VAEConfig(latent_dim=params.latent_dim, channels=params.channels, hidden=params.hidden),
        total_steps=total,
        **params.optim_kwargs(),
    )
    meta = {
        "job": "vae",
        "generation": args.generation,
        "policy": args.policy,
        "seed": args.seed,
        "data_spec": args.data_spec,
        **data.composition(),
    }
    tag = {"generation": args.generation, "policy": args.policy, "seed": args.seed}
    _fit_and_save(module, data, settings, params, args, "vae-train", tag, meta)
    log.info("wrote %s", args.out_model)
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    import torch

    from dlrepro.io import load_npy
    from dlrepro.training import steps_for
    from dlrepro.vae.metrics import classify
    from dlrepro.vae.model import ClassifierConfig
    from dlrepro.vae.module import ClassifierModule

    params = parse_params(ClassifierParams, args.params)
    data_dir = Path(args.data_dir)
    data = LabelledImages(data_dir)
    settings = _settings(params, params.seed)
    total = steps_for(settings, len(data), params.batch_size)
    torch.manual_seed(params.seed)
    module = ClassifierModule(
        ClassifierConfig(channels=params.channels, feature_dim=params.feature_dim),
        total_steps=total,
        **params.optim_kwargs(),
    )
    test_images = open_images(data_dir / TEST_IMAGES)
    test_labels = np.asarray(load_npy(data_dir / TEST_LABELS))
    log = get_logger("vae-classifier", seed=params.seed)

    def test_accuracy(model) -> dict[str, Any]:
        probs, _ = classify(model, test_images)
        accuracy = float((probs.argmax(axis=1) == test_labels).mean())
        log.info("test accuracy %.4f on %d real test images", accuracy, len(test_images))
        return {"test_accuracy": accuracy, "n_test": len(test_images)}

    tag = {"seed": params.seed}
    # the judge trains once, on real data: generation 0 of the curves table, its own panel
    meta = {"job": "classifier", "generation": 0, "policy": None, "seed": params.seed, "n_train": len(data)}
    _fit_and_save(module, data, settings, params, args, "vae-classifier", tag, meta, test_accuracy)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from dlrepro.vae.model import load_model

    params = parse_params(SampleParams, args.params)
    if args.like is not None:
        args.n = int(read_json(Path(args.like) / "manifest.json")["splits"]["train"]["n_images"])
    if args.n < 1:
        raise UserError(f"--n must be >= 1, got {args.n}")
    configure_cpu(params.num_threads)
    model, meta = load_model(args.model, "conv_vae")
    log = get_logger("vae-sample", generation=meta["generation"], policy=meta["policy"], seed=args.seed)
    sample_seed = derive_seed(args.seed, meta["generation"], _SAMPLE)
    generator = torch.Generator().manual_seed(sample_seed)
    chunks = []
    for start in range(0, args.n, params.batch_size):
        chunks.append(model.sample(min(params.batch_size, args.n - start), generator, params.mode).cpu().numpy())
        log.info("sampled %d/%d images", start + len(chunks[-1]), args.n)
    images = np.concatenate(chunks).astype(np.float32)
    out_dir = Path(args.out_dir)
    save_npy(out_dir / SYNTHETIC_IMAGES, images)
    write_json(
        out_dir / "manifest.json",
        {
            "count": int(len(images)),
            "image_shape": list(images.shape[1:]),
            "mode": params.mode,
            "seed": args.seed,
            "sample_seed": sample_seed,
            "source_model": str(args.model),
            "source_sha256": sha256_file(args.model),
            "generation": meta["generation"],
            "policy": meta["policy"],
            "model_seed": meta["seed"],
            "mean_intensity": float(images.mean(dtype=np.float64)),
            "images_sha256": sha256_file(out_dir / SYNTHETIC_IMAGES),
        },
    )
    return 0


def cmd_mix(args: argparse.Namespace) -> int:
    if args.policy not in POLICIES:
        raise UserError(f"unknown policy {args.policy!r}; known: {sorted(POLICIES)}")
    if args.generation < 1:
        raise UserError(f"--generation must be >= 1 (generation 0 trains on real data), got {args.generation}")
    spec, indices = build_mix(args.policy, args.generation, args.seed, args.real, args.synthetic or [])
    log = get_logger("vae-mix", generation=args.generation, policy=args.policy, seed=args.seed)
    log.info("%d images: %s", spec["total"], ", ".join(f"{s['source']}={s['count']}" for s in spec["shares"]))
    write_mix(args.out, spec, indices)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from dlrepro.vae import metrics
    from dlrepro.vae.model import load_model

    params = parse_params(EvalParams, args.params)
    configure_cpu(params.num_threads)
    vae, meta = load_model(args.model, "conv_vae")
    classifier, _ = load_model(args.classifier, "classifier")
    samples_dir = Path(args.samples)
    manifest = read_json(samples_dir / "manifest.json")
    if manifest["source_sha256"] != sha256_file(args.model):
        raise UserError(
            f"--samples {samples_dir} were drawn from {manifest['source_model']}, not from --model {args.model}"
        )
    log = get_logger("vae-evaluate", generation=meta["generation"], policy=meta["policy"], seed=meta["seed"])
    test = open_images(Path(args.data_dir) / TEST_IMAGES)
    samples = open_images(samples_dir / SYNTHETIC_IMAGES)
    elbo = metrics.neg_elbo(vae, test, params.noise_seed, params.batch_size)
    log.info("test -ELBO %.2f nats/image (rec %.2f, KL %.2f)", elbo["neg_elbo"], elbo["rec_nll"], elbo["kl"])
    sample_probs, sample_feats = metrics.classify(classifier, samples, params.batch_size)
    _, test_feats = metrics.classify(classifier, test, params.batch_size)
    cover = metrics.coverage(sample_probs, params.min_class_mass)
    result = {
        "policy": meta["policy"],
        "generation": meta["generation"],
        "seed": meta["seed"],
        "n_train": meta["n_train"],
        "n_real": meta["n_real"],
        "n_synthetic": meta["n_synthetic"],
        "test_neg_elbo": elbo["neg_elbo"],
        "test_rec_nll": elbo["rec_nll"],
        "test_kl": elbo["kl"],
        "sample_class_entropy": metrics.class_entropy(sample_probs),
        "sample_coverage_entropy": cover["coverage_entropy"],
        "sample_classes_covered": cover["classes_covered"],
        "sample_kid": metrics.kid(
            sample_feats, test_feats, params.kid_subsets, params.kid_subset_size, params.kid_seed
        ),
        "sample_pixel_std": metrics.pixel_std(samples),
        "n_samples": int(len(samples)),
        "n_test": int(len(test)),
        "model": str(args.model),
        "samples": str(samples_dir),
        "params": asdict(params),
    }
    log.info(
        "samples: KID %.4f, classes covered %d, class entropy %.3f",
        result["sample_kid"],
        result["sample_classes_covered"],
        result["sample_class_entropy"],
    )
    write_json(args.out, result)
    return 0


def expand_shared_generation0(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Repeat records of the shared generation 0 (``policy`` None) under every policy.

    Generation 0 trains on real data only and is computed once; repeating it lets every
    policy's curve start at generation 0. Without any policy in ``records`` it is kept
    under the policy name ``"none"``.
    """
    policies = sorted({r["policy"] for r in records if r["policy"] is not None})
    out = []
    for r in records:
        if r["policy"] is not None:
            out.append(r)
        elif r["generation"] != 0:
            raise InputFileError(f"a generation {r['generation']} result has no policy: {r}")
        else:
            out.extend({**r, "policy": p} for p in (policies or ["none"]))
    return out


def cmd_summarize(args: argparse.Namespace) -> int:
    import pandas as pd

    records = expand_shared_generation0([read_json(p) for p in args.evals])
    frame = pd.DataFrame([{c: r[c] for c in SUMMARY_COLUMNS} for r in records], columns=SUMMARY_COLUMNS)
    duplicated = frame.duplicated(["policy", "generation", "seed"])
    if duplicated.any():
        raise InputFileError(f"duplicate (policy, generation, seed) rows:\n{frame[duplicated]}")
    frame = frame.sort_values(["policy", "seed", "generation"], kind="stable").reset_index(drop=True)
    write_csv(args.out, frame)
    get_logger("vae-summarize").info("%d rows -> %s", len(frame), args.out)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    import pandas as pd

    from dlrepro.vae.plots import plot_summary

    plot_summary(pd.read_csv(args.csv), args.out)
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    from dlrepro.vae.plots import plot_grid

    if args.per_cell < 1:
        raise UserError(f"--per-cell must be >= 1, got {args.per_cell}")
    records = []
    for d in args.samples:
        manifest = read_json(Path(d) / "manifest.json")
        records.append({"policy": manifest["policy"], "generation": manifest["generation"], "dir": Path(d)})
    cells = [
        (r["policy"], r["generation"], np.asarray(open_images(r["dir"] / SYNTHETIC_IMAGES)[: args.per_cell]))
        for r in expand_shared_generation0(records)
    ]
    plot_grid(cells, args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dlrepro vae", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("train-classifier", help="train the judge CNN on the real train split")
    s.add_argument("--params", default="{}", help="ClassifierParams as JSON")
    s.add_argument("--data-dir", required=True, help="real data directory (train_/test_ images, labels)")
    s.add_argument("--ckpt-dir", required=True)
    s.add_argument("--out-model", required=True)
    s.add_argument("--out-metrics", required=True)
    s.set_defaults(func=cmd_train_classifier)

    s = sub.add_parser("train", help="train one generation's VAE from scratch")
    s.add_argument("--params", default="{}", help="TrainParams as JSON")
    s.add_argument("--data-spec", required=True, help="a mix.json, or 'real' (with --data-dir)")
    s.add_argument("--data-dir", help="real data directory, for --data-spec real")
    s.add_argument("--generation", type=int, required=True)
    s.add_argument("--policy", default=None, help="mixing policy (omit for the shared generation 0)")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--ckpt-dir", required=True)
    s.add_argument("--out-model", required=True)
    s.add_argument("--out-metrics", required=True)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="sample a synthetic image pool from a VAE")
    s.add_argument("--model", required=True)
    n = s.add_mutually_exclusive_group(required=True)
    n.add_argument("--n", type=int, help="number of images")
    n.add_argument("--like", help="a real data directory: as many images as its training split")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--params", default="{}", help="SampleParams as JSON")
    s.add_argument("--out-dir", required=True, help="writes images.npy and manifest.json")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("mix", help="choose the training images of generation g by a policy")
    s.add_argument("--policy", required=True)
    s.add_argument("--generation", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--real", required=True, help="real data directory")
    s.add_argument("--synthetic", nargs="*", default=[], help="sample dirs of generations 0..g-1, in order")
    s.add_argument("--out", required=True, help="mix.json (sidecar mix.indices.npy next to it)")
    s.set_defaults(func=cmd_mix)

    s = sub.add_parser("evaluate", help="test -ELBO and sample quality of one generation")
    s.add_argument("--model", required=True)
    s.add_argument("--classifier", required=True)
    s.add_argument("--data-dir", required=True)
    s.add_argument("--samples", required=True, help="a sample dir drawn from --model")
    s.add_argument("--params", default="{}", help="EvalParams as JSON")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("summarize", help="collect eval JSONs into summary.csv")
    s.add_argument("--evals", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_summarize)

    s = sub.add_parser("plot", help="test loss and sample quality vs generation, from summary.csv")
    s.add_argument("--csv", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser("grid", help="a grid of samples per generation and policy")
    s.add_argument("--samples", nargs="+", required=True)
    s.add_argument("--per-cell", type=int, default=16, help="images per cell (a square mosaic)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_grid)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
