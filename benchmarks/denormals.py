"""Denormal flushing: training steps of the conformer model with and without it.

``dlrepro.cpu.configure`` flushes denormal floats to zero in every job (the CPU's FTZ/DAZ
flags). This measures what that buys on the workload where it was found: training steps of
the conformer stage's EGNN (the default preset's size: hidden 64, 4 layers) with the
diffusion loss on a batch of padded random molecules, one thread. Both sides start from the
same weights and see the same batches, in interleaved rounds (flags off, on, off, on, ...)
in one process; reported: steps/s with over steps/s without, and the largest difference of
the final loss between the two sides (the flush changes only numbers below float32's normal
range, so the losses agree to rounding).
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


def _steps(net, opt, setup: Setup, first: int, flush: bool) -> tuple[float, float]:
    """``setup.steps`` denoising steps from batch ``first`` on; (seconds, last loss)."""
    import torch

    torch.set_flush_denormal(flush)
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
    return time.perf_counter() - t0, float(loss)


def flushing() -> bool:
    """Whether this thread flushes denormals now (a subnormal product comes out as 0)."""
    import torch

    return (torch.tensor([1e-30]) * 1e-10).item() == 0.0


def benchmark(setup: Setup) -> dict:
    import torch

    from dlrepro.conformers.egnn import EGNN, EGNNConfig

    threads, was_flushing = torch.get_num_threads(), flushing()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(setup.seed)
        nets = {False: EGNN(EGNNConfig(hidden=setup.hidden, layers=setup.layers))}
        nets[True] = copy.deepcopy(nets[False])
        opts = {k: torch.optim.AdamW(v.parameters(), lr=1e-3) for k, v in nets.items()}
        rates, losses = {False: [], True: []}, {}
        for r in range(setup.rounds):
            for flush in (False, True):
                seconds, losses[flush] = _steps(nets[flush], opts[flush], setup, r * setup.steps, flush)
                rates[flush].append(setup.steps / seconds)
    finally:
        torch.set_flush_denormal(was_flushing)
        torch.set_num_threads(threads)
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    diff = abs(losses[True] - losses[False])
    return {"benchmark": NAME, "setup": asdict(setup), "steps_per_s": {"flush": on, "no_flush": off},
            "final_loss": {"flush": losses[True], "no_flush": losses[False]},
            "checks": [check("conformer EGNN training steps/s, flushed/not", on / off, "x", target=1.0,
                             note=f"{on:.2f} vs {off:.2f} steps/s; final losses differ by {diff:.1e}")]}
