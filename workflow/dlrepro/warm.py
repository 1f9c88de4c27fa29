"""Warm start: one process imports torch, Lightning and the package once and forks every job.

A job of this workflow is a short ``python -m dlrepro <command>`` process, and most of a
small job's time is importing torch and Lightning (seconds each time). With warm start,
a local run (``snakemake`` with the local executor; never on a cluster, where jobs run on
other machines under the scheduler's limits) starts one server before the first job::

    python -m dlrepro serve --socket PATH     # started and stopped by the Snakefile

and every ``python -m dlrepro <command>`` whose environment names that socket in
``DLREPRO_WARM_SOCKET`` hands its command to it instead of running it: the client sends
its arguments, working directory, environment and its standard input, output and error
(the file descriptors themselves, so the job's log redirections hold), the server forks
a child that is already past the imports, and the client exits with the child's exit
status. Nothing else changes: each job is still its own Snakemake job with its own
inputs, outputs, log and rerun triggers; the child is a fresh process image of the server,
so no state passes from one job to the next.

Failure modes, each handled:

* **no server** (the socket is missing or refuses): the client runs the command itself;
* **the client is killed** (Snakemake cancels the job, or a test kills it): the server sees
  the connection close and kills the child at once with SIGKILL, as if the job's own
  process had been killed (training resumes from its checkpoint on the rerun);
* **the server dies**: clients see the connection close without an exit status and fail
  (status 1) with a message; Snakemake's retry runs them again without the server.

The server is single-threaded (``selectors`` over the listening socket and the clients'
connections, children reaped without blocking), so ``fork`` copies no lock held by another
thread; it preloads only modules and never runs a parallel (OpenMP) region, so the
children's thread pools start fresh.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
from pathlib import Path

ENV_VAR = "DLREPRO_WARM_SOCKET"
# imported by the server before it forks anything: what a job would otherwise import itself
PRELOAD = (
    "numpy", "scipy.optimize", "pandas", "torch", "lightning", "lightning.pytorch",
    "matplotlib", "seaborn", "tokenizers",
    "dlrepro.training", "dlrepro.models.transformer", "dlrepro.models.mlp",
    "dlrepro.collapse.cli", "dlrepro.collapse.lm", "dlrepro.sampling",
    "dlrepro.parametrization", "dlrepro.width.cli", "dlrepro.init.cli", "dlrepro.vae.cli",
    "dlrepro.scaling.cli", "dlrepro.report.cli", "dlrepro.linreg",
)
_HEADER = struct.Struct("!I")  # length of the JSON request that follows
_STATUS = struct.Struct("!i")  # the child's exit status, sent back to the client


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


# --------------------------------------------------------------------------- client


def run_via_server(argv: list[str], socket_path: str | None = None) -> int | None:
    """Run ``python -m dlrepro argv`` in the warm server; its exit status, or ``None`` when
    no server answers at ``socket_path`` (default: ``$DLREPRO_WARM_SOCKET``)."""
    path = socket_path or os.environ.get(ENV_VAR)
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None  # no server: the caller runs the command itself
    request = json.dumps({"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    message = _HEADER.pack(len(request)) + request
    with conn:
        sent = socket.send_fds(conn, [message], [0, 1, 2])
        conn.sendall(message[sent:])  # a stream socket may take a long message in parts
        try:
            (status,) = _STATUS.unpack(_recv_exact(conn, _STATUS.size))
        except ConnectionError:
            print(f"dlrepro: the warm-start server at {path} went away while running the command",
                  file=sys.stderr)
            return 1
    return status


# --------------------------------------------------------------------------- server


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import ``modules``; returns those that could not be imported (the jobs that need
    them import them themselves)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def _child(request: dict, fds: list[int], sockets: list[socket.socket], server: int) -> None:
    """In the forked child: become the job's process and run its command; never returns."""
    status = 1
    try:
        _die_with_parent()
        if os.getppid() != server:  # the server died before the line above took effect
            os._exit(1)
        for s in sockets:
            s.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import random

        random.seed()  # a fresh process would seed from the OS; every job seeds its own streams
        from dlrepro import commands

        sys.argv = [str(Path(commands.__file__).with_name("__main__.py")), *request["argv"]]
        try:
            status = int(commands.run(list(request["argv"])) or 0)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int) and exc.code is not None:
                print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001  (report and exit like an uncaught exception would)
        import traceback

        traceback.print_exc()
        status = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


def serve(socket_path: str | os.PathLike, *, parent: int | None = None, log=print) -> None:
    """Accept commands on ``socket_path`` until SIGTERM/SIGINT or until process ``parent``
    is gone; see the module docstring."""
    path = Path(socket_path)
    missing = preload()
    if missing:
        log(f"warm start: not preloaded (imported by the jobs that need them): {missing}")
    if path.exists():
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    jobs: dict[int, socket.socket] = {}  # child pid -> its client's connection
    by_conn: dict[socket.socket, int] = {}
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"warm start: serving on {path} (pid {os.getpid()})")
    try:
        while not stopping:
            for key, _ in sel.select(timeout=0.05):
                sock = key.fileobj
                if sock is listener:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        continue
                    pid = _start(conn, [listener, *by_conn], log)
                    if pid is not None:
                        jobs[pid], by_conn[conn] = conn, pid
                        sel.register(conn, selectors.EVENT_READ)
                else:  # a client's connection is readable only when it closed: the client died
                    pid = by_conn.pop(sock)
                    sel.unregister(sock)
                    sock.close()
                    jobs[pid] = None
                    _kill(pid)
                    log(f"warm start: job {pid} killed: its client is gone")
            while jobs:  # reap finished children and report their status
                try:
                    pid, wstatus, usage = os.wait4(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                conn = jobs.pop(pid, None)
                if conn is not None:
                    by_conn.pop(conn, None)
                    sel.unregister(conn)
                    # the job's CPU time (its threads and reaped children): what a job costs
                    cpu = usage.ru_utime + usage.ru_stime
                    log(f"warm start: job {pid} exited with status {os.waitstatus_to_exitcode(wstatus)}"
                        f" after {cpu:.2f} CPU-s")
                    try:
                        conn.sendall(_STATUS.pack(os.waitstatus_to_exitcode(wstatus)))
                    except OSError:
                        pass
                    conn.close()
            if parent is not None and not _alive(parent):
                log(f"warm start: process {parent} that started the server is gone, stopping")
                break
    finally:
        for pid in list(jobs):
            _kill(pid)
        listener.close()
        if path.exists():
            path.unlink()
        log("warm start: stopped")


def _start(conn: socket.socket, others: list[socket.socket], log) -> int | None:
    """Read one request from ``conn`` and fork its child; the child's pid (None on a bad request)."""
    fds: list[int] = []
    try:
        conn.setblocking(True)
        conn.settimeout(10)
        msg, fds, _, _ = socket.recv_fds(conn, _HEADER.size + 65536, 3)
        (n,) = _HEADER.unpack(msg[:_HEADER.size])
        body = msg[_HEADER.size:]
        if len(body) < n:
            body += _recv_exact(conn, n - len(body))
        request = json.loads(body)
        if len(fds) != 3:
            raise ValueError(f"expected 3 file descriptors, got {len(fds)}")
    except (OSError, ValueError, ConnectionError) as exc:
        log(f"warm start: bad request ({exc})")
        for fd in fds:
            os.close(fd)
        conn.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(request, fds, [conn, *others], server)
    for fd in fds:
        os.close(fd)
    conn.settimeout(None)
    outs = [a for a in request["argv"] if a.startswith("--out")]
    where = request["argv"][request["argv"].index(outs[0]) + 1] if outs and outs[0] != request["argv"][-1] else ""
    log(f"warm start: job {pid}: python -m dlrepro {' '.join(request['argv'][:2])} {where}".rstrip())
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent() -> None:
    """Linux: the kernel sends this process SIGKILL when the server dies, so that no job
    outlives it (its client has then already failed, and a retry would race it)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m dlrepro serve", description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True, help="Unix socket path to listen on")
    ap.add_argument("--parent", type=int, default=None, help="stop when this process is gone")
    args = ap.parse_args(argv)
    serve(args.socket, parent=args.parent, log=lambda m: print(m, file=sys.stderr, flush=True))
    return 0
