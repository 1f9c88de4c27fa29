"""Measure one model of a configuration on this machine's CPU: build it, train a few steps
at a given micro-batch with the stage's own module and optimiser, sample from it, and
report the step's FLOPs (``torch.utils.flop_counter``) and the peak resident memory the
model added to the process (VmHWM minus VmRSS before the model was built).

    python -m dlrepro.plan.probe '{"kind": "lm", "model": {...}, "vocab_size": 32000, "batch": 1, "context": 64}'

prints one JSON object. Run it in a fresh process per model (the peak is per process).
``tests/test_paper_shapes.py`` compares these numbers with :mod:`dlrepro.plan.costs`.
Kinds: ``lm`` (collapse / scaling LM: :class:`dlrepro.collapse.module.LanguageModel`),
``width_lm`` (the width stage's untied, bias-free transformer), ``mlp`` (width MLP),
``vae`` (:class:`dlrepro.vae.module.VAEModule`), ``egnn``
(:class:`dlrepro.conformers.module.ConformerDiffusion`).
"""

from __future__ import annotations

import json
import sys
import time


def _status(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return float(line.split()[1]) * 1024 / 1e6  # kB -> MB
    return float("nan")


def rss_mb() -> float:
    return _status("VmRSS")


def hwm_mb() -> float:
    return _status("VmHWM")


def _build(spec: dict):
    """(module or model, batch, optimizer, loss function of the batch, sampler or None)."""
    import torch

    kind = spec["kind"]
    B = int(spec.get("batch", 1))
    g = torch.Generator().manual_seed(0)
    if kind in ("lm", "width_lm"):
        from dlrepro.models.transformer import Transformer, TransformerConfig

        m, V, T = spec["model"], int(spec["vocab_size"]), int(spec.get("context") or spec["model"]["block_size"])
        known = {"arch", "n_layer", "n_head", "d_model", "block_size", "bias", "tie_embeddings", "dropout"}
        cfg = TransformerConfig(vocab_size=V, **{k: v for k, v in m.items() if k in known})
        x = torch.randint(0, V, (B, T), generator=g)
        y = torch.randint(0, V, (B, T), generator=g)
        if kind == "lm":
            from dlrepro.collapse.params import OptimConfig
            from dlrepro.collapse.module import LanguageModel

            module = LanguageModel(cfg, OptimConfig(), total_steps=10)
            opt = module.configure_optimizers()["optimizer"]
            model = module.model
        else:
            model = module = Transformer(cfg)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def loss_fn():
            return model(x, y)[1]

        def sample(n_tokens: int):
            from dlrepro.sampling import SamplingConfig, generate

            prompts = torch.zeros(B, 1, dtype=torch.long)
            return generate(model, prompts, SamplingConfig(max_new_tokens=n_tokens, batch_size=B),
                            torch.Generator().manual_seed(1))

        return module, opt, loss_fn, sample
    if kind == "mlp":
        from dlrepro.models.mlp import MLP

        model = MLP(int(spec["in_dim"]), int(spec["width"]), 10, int(spec.get("depth", 2)), bias=False)
        x = torch.randn(B, int(spec["in_dim"]), generator=g)
        y = torch.randint(0, 10, (B,), generator=g)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def predict(n: int):  # a classifier's "sample": its predicted classes for n inputs
            return model(x[:n]).argmax(dim=-1)

        return model, opt, lambda: torch.nn.functional.cross_entropy(model(x), y), predict
    if kind == "vae":
        from dlrepro.vae.model import VAEConfig
        from dlrepro.vae.module import VAEModule

        module = VAEModule(VAEConfig(**spec["model"]), lr=1e-3, weight_decay=0.0, warmup_steps=0,
                           min_lr_ratio=0.1, total_steps=10)
        x = torch.rand(B, 1, 28, 28, generator=g)
        opt = module.configure_optimizers()["optimizer"]

        def sample(n: int):
            return module.model.sample(n, torch.Generator().manual_seed(1))

        return module, opt, lambda: module.training_step(x, 0), sample
    if kind == "egnn":
        from dlrepro.conformers.dataset import ATOM_FEATURES, EDGE_FEATURES, Batch
        from dlrepro.conformers.diffusion import DiffusionConfig
        from dlrepro.conformers.egnn import EGNNConfig
        from dlrepro.conformers.module import ConformerDiffusion

        N = int(spec["n_atoms"])
        module = ConformerDiffusion(EGNNConfig(**spec["model"]), DiffusionConfig(steps=int(spec.get("diffusion_steps", 1000))),
                                    lr=1e-3, total_steps=10)
        atoms = torch.zeros(B, N, ATOM_FEATURES)
        atoms[..., 0] = 1.0
        pairs = torch.zeros(B, N, N, EDGE_FEATURES)
        pairs[..., 1] = 1.0
        batch = Batch(atoms, pairs, torch.randn(B, N, 3, generator=g), torch.ones(B, N))
        opt = module.configure_optimizers()["optimizer"]

        def sample(n_steps: int):
            return module.net(batch.coords, torch.full((B,), 0.5), batch.atoms, batch.pairs, batch.mask)

        return module, opt, lambda: module.training_step(batch, 0), sample
    raise ValueError(f"probe: unknown kind {kind!r}")


def measure(spec: dict) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from torch.nn.attention import SDPBackend, sdpa_kernel

    import dlrepro.collapse.module  # noqa: F401  (every import before the baseline)
    import dlrepro.conformers.module  # noqa: F401
    import dlrepro.sampling  # noqa: F401
    import dlrepro.vae.module  # noqa: F401

    torch.set_num_threads(int(spec.get("threads", 1)))
    torch.manual_seed(0)
    # warm up autograd and the allocator on a tiny problem, so the baseline holds them
    w = torch.randn(8, 8, requires_grad=True)
    (w @ w).sum().backward()
    base = rss_mb()
    module, opt, loss_fn, sample = _build(spec)
    t0 = time.perf_counter()
    # the counted step runs attention through the math kernel, whose matrix products the
    # counter sees (it does not count the fused CPU kernel); the other steps use the default
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        loss = loss_fn()
        loss.backward()
    flops = counter.get_total_flops()
    opt.step()
    opt.zero_grad(set_to_none=True)
    losses = [float(loss)]
    for _ in range(int(spec.get("steps", 2)) - 1):
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
    train_s = time.perf_counter() - t0
    train_peak = hwm_mb() - base
    sampled = None
    if sample is not None and spec.get("sample", 4):
        with torch.no_grad():
            out = sample(int(spec.get("sample", 4)))
        sampled = list(out.shape)
    n_params = sum(p.numel() for p in (module.parameters()))
    return {"flops_step": float(flops), "train_peak_mb": train_peak, "peak_mb": hwm_mb() - base,
            "base_rss_mb": base, "losses": losses, "train_seconds": train_s, "sampled_shape": sampled,
            "n_params": int(n_params)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(json.dumps(measure(json.loads(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
