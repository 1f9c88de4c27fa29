"""CPU settings of a job's process: its thread count and denormal flushing.

Denormal (subnormal) floats, below about 1e-38 in float32, take a slow path through the
CPU's floating-point unit, tens of times slower than normal numbers. Training makes them
all the time (``exp`` of large negative numbers in the conformer model's radial basis,
gradients that decay towards zero), and measured on this project's conformer model they
halved its training speed (254 vs 497 conformers/s on one thread, the same loss to four
digits). Flushing them to zero (the CPU's FTZ/DAZ flags) changes no result that is not
already below float32's normal range; GPU kernels flush them by default.

The flags belong to a thread: :func:`configure` sets them on the calling thread, which
does the work of a job with one thread (the CPU profiles' default); with more threads,
the intra-op pool's workers keep their own settings. The warm-start server
(:mod:`dlrepro.warm`) sets them before it forks, so every job it starts has them.
"""

from __future__ import annotations


def configure(num_threads: int | None = None) -> None:
    """Use ``num_threads`` intra-op threads (unchanged when None or 0) and flush
    denormals to zero on this thread."""
    import torch

    if num_threads:
        torch.set_num_threads(int(num_threads))
    torch.set_flush_denormal(True)
