"""Speed and memory benchmarks of the workflow, each against a baseline run in the same command.

Run them all (prints one table, writes JSON)::

    .venv/bin/python -m benchmarks [NAME ...] [--quick] [--out benchmarks/out/results.json]

Every module here is one benchmark with the same small interface, so the runner
(``benchmarks/__main__.py``) needs to know nothing else of it:

``NAME``
    the benchmark's name on the command line;
``Setup``
    a dataclass of its sizes (the defaults are what the README's table reports);
``QUICK``
    a ``Setup`` small enough for a unit test (seconds);
``benchmark(setup) -> dict``
    runs it and returns a JSON-able dict with at least ``"benchmark"`` (its name),
    ``"setup"`` and ``"checks"``: a list of :func:`check` rows, one per reported ratio or
    measurement, each with its target where the issue sets one.

Ratios, not absolute times: both sides of a comparison run in the same process (or the same
command), interleaved where that is cheap, so that machine noise hits both.
"""

from __future__ import annotations

import os
import platform
from typing import Any


def check(metric: str, value: float, unit: str = "", *, target: float | None = None,
          higher_is_better: bool = True, note: str = "") -> dict[str, Any]:
    """One row of the results table. ``ok`` is None where no target is set."""
    ok = None
    if target is not None:
        ok = bool(value >= target) if higher_is_better else bool(value <= target)
    return {"metric": metric, "value": float(value), "unit": unit, "target": target,
            "higher_is_better": higher_is_better, "ok": ok, "note": note}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version()}


def use_bench_packages() -> bool:
    """Put the benchmark-only packages on ``sys.path``: the prefix ``make bench`` installs
    them to (``.venv/bench``, see the Makefile for why it is not the venv itself).
    Returns whether that prefix exists; packages installed in the environment itself are
    importable either way."""
    import site
    import sys
    from pathlib import Path

    prefix = Path(__file__).resolve().parents[1] / ".venv" / "bench"
    lib = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    if lib.is_dir():
        site.addsitedir(str(lib))
        return True
    return False


def data_mirror():
    """The offline data mirror, as ``.ci/run`` finds it: ``$DLREPRO_DATA_MIRROR``, else
    ``../shared/data`` beside the checkout; None when neither exists."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = os.environ.get("DLREPRO_DATA_MIRROR")
    for candidate in ([Path(env)] if env else []) + [root.parent / "shared" / "data"]:
        if candidate.is_dir():
            return candidate.resolve()
    return None
