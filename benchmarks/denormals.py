"""Slow float paths: training steps of the conformer model with and without each remedy.

Two remedies keep numbers below float32's normal range (about 1e-38) off the CPU's slow
paths, and this measures what each buys on the workload where they were found: training
steps of the conformer stage's EGNN (the default preset's size: hidden 64, 4 layers) with the
diffusion loss on a batch of padded random molecules, one thread.

* ``flush``: ``dlrepro.cpu.configure`` flushes denormal floats to zero in every job (the
  CPU's FTZ/DAZ flags);
* ``clamp``: the EGNN's radial basis clamps its Gaussians' exponent at
  ``RBF_MIN_EXPONENT`` (-80), where ``exp`` would otherwise underflow, a slow path of
  PyTorch's CPU ``exp`` whether or not denormals are flushed.

Three sides start from the same weights and see the same batches, in interleaved rounds in
one process: as every job runs (both remedies), without the flush, without the clamp.
Reported: steps/s as run over steps/s without each, and the difference of the final loss
(each remedy changes only numbers below float32's normal range, so the losses agree to
rounding).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass

from benchmarks import check

NAME = "denormals"


@dataclass
class Setup:
    batch_size: int = 32  # conformers.train.batch_size of the default preset
    atoms: int = 30  # padded atoms per molecule (the default's molecules: <= 14 heavy atoms with hydrogens)
    hidden: int = 64
    layers: int = 4
    steps: int = 10  # training steps per round and side
    rounds: int = 3
    seed: int = 0


QUICK = Setup(batch_size=4, atoms=8, hidden=16, layers=2, steps=2, rounds=1)


def _batch(setup: Setup, step: int):
    import torch

    from dlrepro.conformers.dataset import ATOM_FEATURES, EDGE_FEATURES

    g = torch.Generator().manual_seed(setup.seed * 100_003 + step)
    b, n = setup.batch_size, setup.atoms
    sizes = torch.randint(n // 2, n + 1, (b,), generator=g)
    mask = (torch.arange(n)[None, :] < sizes[:, None]).float()
    x = torch.randn(b, n, 3, generator=g) * 1.5 * mask[..., None]
    atoms = torch.rand(b, n, ATOM_FEATURES, generator=g) * mask[..., None]
    pairs = torch.rand(b, n, n, EDGE_FEATURES, generator=g) * (mask[:, :, None] * mask[:, None, :])[..., None]
    return x, atoms, pairs, mask, torch.rand(b, generator=g)


# the sides: (flush denormals, clamp the radial basis's exponent)
SIDES = {"as_run": (True, True), "no_flush": (False, True), "no_clamp": (True, False)}


def _steps(net, opt, setup: Setup, first: int, side: str, clamp_at: float) -> tuple[float, float]:
    """``setup.steps`` denoising steps from batch ``first`` on, on ``side`` (the radial basis
    clamped at ``clamp_at`` where the side clamps); (seconds, last loss)."""
    import torch

    from dlrepro.conformers import egnn

    flush, clamp = SIDES[side]
    torch.set_flush_denormal(flush)
    egnn.RBF_MIN_EXPONENT = clamp_at if clamp else float("-inf")  # clamp(min=-inf) clamps nothing
    t0 = time.perf_counter()
    for i in range(first, first + setup.steps):
        x, atoms, pairs, mask, t = _batch(setup, i)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(i)) * mask[..., None]
        a = torch.cos(t * 1.5707963)[:, None, None]
        pred = net(a * x + (1 - a * a).sqrt() * noise, t, atoms, pairs, mask)
        loss = ((pred - noise) ** 2 * mask[..., None]).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0, float(loss.detach())


def flushing() -> bool:
    """Whether this thread flushes denormals now (a subnormal product comes out as 0)."""
    import torch

    return (torch.tensor([1e-30]) * 1e-10).item() == 0.0


def benchmark(setup: Setup) -> dict:
    import torch

    from dlrepro.conformers import egnn

    threads, was_flushing, clamp_at = torch.get_num_threads(), flushing(), egnn.RBF_MIN_EXPONENT
    torch.set_num_threads(1)
    try:
        torch.manual_seed(setup.seed)
        first = egnn.EGNN(egnn.EGNNConfig(hidden=setup.hidden, layers=setup.layers))
        nets = {side: copy.deepcopy(first) for side in SIDES}
        opts = {k: torch.optim.AdamW(v.parameters(), lr=1e-3) for k, v in nets.items()}
        rates, losses = {side: [] for side in SIDES}, {}
        for r in range(setup.rounds):
            for side in SIDES:
                seconds, losses[side] = _steps(nets[side], opts[side], setup, r * setup.steps, side, clamp_at)
                rates[side].append(setup.steps / seconds)
    finally:
        egnn.RBF_MIN_EXPONENT = clamp_at
        torch.set_flush_denormal(was_flushing)
        torch.set_num_threads(threads)
    rate = {side: statistics.median(v) for side, v in rates.items()}
    checks = []
    for side, what in (("no_flush", "flushed/not"), ("no_clamp", "radial basis clamped/not")):
        diff = abs(losses["as_run"] - losses[side])
        checks.append(check(f"conformer EGNN training steps/s, {what}", rate["as_run"] / rate[side], "x",
                            target=1.0, note=f"{rate['as_run']:.2f} vs {rate[side]:.2f} steps/s; final losses "
                                             f"differ by {diff:.1e}"))
    return {"benchmark": NAME, "setup": asdict(setup), "steps_per_s": rate, "final_loss": losses,
            "checks": checks}
