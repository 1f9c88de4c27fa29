"""Glue the Snakefile calls before any rule runs (kept here so it is testable and so the
Snakefile stays declarative)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from dlrepro.data.download import MIRROR_ENV, resolve_mirror

SLURM_ENV = ("DLREPRO_SLURM_ACCOUNT", "DLREPRO_SLURM_PARTITION")


def prepare_environment(package_dir: str | os.PathLike, config: dict) -> None:
    """Make the package importable by every job and pass the data mirror on.

    * ``PYTHONPATH`` gains the package folder, so jobs import it without installation
      (e.g. under ``--sdm conda``);
    * ``PATH`` starts with the folder of the Python running Snakemake, so ``python -m
      dlrepro`` in a job is this environment's Python unless a conda env is activated;
    * ``DLREPRO_DATA_MIRROR`` is set from ``data.mirror`` when that is given. The mirror is
      passed through the environment, not as a rule parameter: it only changes where
      checksum-verified, identical bytes come from, so changing it must not rerun anything;
    * ``DLREPRO_CHECKPOINT_MINUTES`` from ``compute.checkpoint_minutes``, for the same reason.
    """
    package_dir = str(Path(package_dir).resolve())
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_dir not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([package_dir, *paths])
    exe_dir = os.path.dirname(sys.executable)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != exe_dir:
        os.environ["PATH"] = os.pathsep.join([exe_dir, os.environ.get("PATH", "")])
    mirror = resolve_mirror(config["data"].get("mirror"))
    if mirror is not None:
        os.environ[MIRROR_ENV] = str(mirror)
    # the wall-time checkpoint interval reaches training jobs through the environment too: it
    # changes no result, so it must not rerun anything (dlrepro.training.checkpoint_minutes)
    os.environ["DLREPRO_CHECKPOINT_MINUTES"] = str(config["compute"]["checkpoint_minutes"])


def missing_slurm_env() -> list[str]:
    """The variables profiles/slurm needs that are unset."""
    return [v for v in SLURM_ENV if not os.environ.get(v)]


PACKAGE_ROOT = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def _module_file(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for cand in (PACKAGE_ROOT / rel / "__init__.py", (PACKAGE_ROOT / rel).with_suffix(".py")):
        if cand.is_file():
            return cand
    return None


@functools.lru_cache(maxsize=None)
def _imports(path: Path, module: str) -> frozenset[str]:
    """Names of ``dlrepro`` modules imported anywhere in ``path`` (lazy imports included)."""
    import ast

    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "dlrepro")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "dlrepro":
                continue
            found.add(target)
            # ``from dlrepro.x import y`` may import the submodule dlrepro.x.y
            found.update(f"{target}.{a.name}" for a in node.names if _module_file(f"{target}.{a.name}"))
    return frozenset(found)


def module_sources(*modules: str) -> list[str]:
    """Every source file of the package that ``modules`` import, transitively.

    Rules list these as inputs, so that editing a module of the package reruns exactly the
    rules whose command imports it (through Snakemake's mtime trigger).
    """
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        todo.extend(_imports(path, name))
    return sorted(str(p) for p in seen.values())


class WarmStart:
    """The warm-start server of one local Snakemake run (:mod:`dlrepro.warm`).

    :meth:`start` launches ``python -m dlrepro serve`` in the background and points jobs at
    it through ``$DLREPRO_WARM_SOCKET``; it does not wait for the server's imports: jobs
    that start before the server listens run by themselves. :meth:`stop` ends it. The
    server also stops by itself when the Snakemake process that started it is gone.
    """

    def __init__(self) -> None:
        self.proc = None
        self.socket_path: str | None = None

    @staticmethod
    def wanted(enabled: bool, executor: str, dryrun: bool, isolated_envs: bool,
               accelerator: str = "cpu") -> str | None:
        """Why warm start is off for this run, or None when it is on."""
        if not enabled:
            return "compute.warm_start is false"
        if accelerator != "cpu":
            # a process forked after CUDA was initialised cannot use it; the server would
            # have to stay clear of CUDA through every import, which is not checked here
            return f"compute.accelerator is {accelerator!r} (warm start is for CPU runs)"
        if executor != "local":
            return f"the {executor} executor runs jobs elsewhere"
        if dryrun:
            return "dry run"
        if isolated_envs:
            return "jobs run in conda/apptainer environments of their own"
        return None

    def start(self, log_path: str | os.PathLike) -> None:
        import subprocess
        import tempfile

        from dlrepro.warm import ENV_VAR

        folder = tempfile.mkdtemp(prefix="dlrepro-warm-")  # short: socket paths have ~100 chars
        self.socket_path = os.path.join(folder, "socket")
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dlrepro", "serve", "--socket", self.socket_path,
                 "--parent", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        os.environ[ENV_VAR] = self.socket_path

    def stop(self) -> None:
        import shutil
        import subprocess

        from dlrepro.warm import ENV_VAR

        os.environ.pop(ENV_VAR, None)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.socket_path:
            shutil.rmtree(os.path.dirname(self.socket_path), ignore_errors=True)
        self.proc = None


def cancel_pending_timers() -> int:
    """Cancel the timers still waiting to wake Snakemake's scheduler; how many there were.

    Snakemake (9.27) schedules a re-run of its scheduler one timespan of the job-rate limit
    (``max-jobs-per-timespan``) after every scheduling round that leaves ready jobs waiting,
    on a non-daemon ``threading.Timer``. The interpreter waits for such threads before it
    exits, so with the profiles' long timespan (``profiles/cpu``) a finished run would sit
    idle until its last timer fired. Called from ``onsuccess`` and ``onerror``, when the
    scheduler has stopped and a timer can only wake nobody."""
    import threading

    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]
    for t in timers:
        t.cancel()
    return len(timers)
