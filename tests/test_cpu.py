"""dlrepro.cpu: a job's thread count and denormal flushing."""

import torch

from benchmarks.denormals import flushing
from dlrepro.cpu import configure


def test_configure_sets_threads_and_flushes_denormals():
    threads = torch.get_num_threads()
    torch.set_flush_denormal(False)
    try:
        assert not flushing()  # 1e-40 is a float32 subnormal: kept without the flag
        configure(1)
        assert torch.get_num_threads() == 1 and flushing()
        configure(None)  # no thread count: unchanged
        assert torch.get_num_threads() == 1
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def test_every_torch_job_entry_point_configures_the_cpu():
    """The commands that train, sample or evaluate set their threads through dlrepro.cpu, so
    that a job started by the warm-start server and one started alone compute alike."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "workflow" / "dlrepro"
    direct = [str(p.relative_to(root)) for p in root.rglob("*.py")
              if "torch.set_num_threads(" in p.read_text() and p.parts[-2] != "plan"]
    # the init stage restores the caller's thread count after its single-threaded blocks
    assert sorted(direct) == ["cpu.py", "init/inits.py"], direct
