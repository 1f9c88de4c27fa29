"""Warm start (``dlrepro.warm``): a command run through the server behaves as if run directly.

The workflow tests (tests/test_workflow.py, tests/test_reliability.py) run every job of the
smoke preset through the server, including a SIGKILLed training job that resumes; these
tests pin the pieces: same output, exit status, working directory and environment; a killed
client takes its job with it; no server means the command runs in its own process.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlrepro.smk import WarmStart
from dlrepro.warm import ENV_VAR, run_via_server

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    return {**env, "PYTHONPATH": str(ROOT / "workflow"), **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm")
    sock = folder / "s"
    log = open(folder / "server.log", "w", buffering=1)
    proc = subprocess.Popen([sys.executable, "-m", "dlrepro", "serve", "--socket", str(sock),
                             "--parent", str(os.getpid())], env=_env(), stdout=log, stderr=log)
    deadline = time.time() + 300
    while not sock.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert sock.exists(), (folder / "server.log").read_text()
    yield proc, sock
    proc.terminate()
    proc.wait(timeout=60)
    log.close()
    assert not sock.exists()  # the server removes its socket when it stops


def _run(args, cwd, sock=None, **kw):
    env = _env(**({ENV_VAR: str(sock)} if sock else {}))
    return subprocess.run([sys.executable, "-m", "dlrepro", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, **kw)


def _table(folder: Path) -> None:
    x = np.array([1, 2, 4, 8, 16, 32, 64], dtype=float)
    y = 0.5 + 3.0 * x ** -0.7
    lines = ["x,loss"] + [f"{a},{b}" for a, b in zip(x, y)]
    (folder / "t.csv").write_text("\n".join(lines) + "\n")


def test_a_command_through_the_server_equals_the_direct_run(server, tmp_path):
    _, sock = server
    args = ["scaling", "fit", "--csv", "t.csv", "--y", "loss", "--x", "x", "--out", "fit.json",
            "--n-resamples", "20"]  # relative paths: the job's working directory must hold
    outputs = {}
    for name, s in (("direct", None), ("warm", sock)):
        work = tmp_path / name
        work.mkdir()
        _table(work)
        proc = _run(args, work, s)
        assert proc.returncode == 0, proc.stderr
        assert "wrote 1 fit(s)" in proc.stderr  # the job's stderr reaches the caller
        outputs[name] = (work / "fit.json").read_bytes()
    assert outputs["warm"] == outputs["direct"]
    assert "python -m dlrepro scaling fit" in (sock.parent / "server.log").read_text()  # it ran there


def test_exit_status_and_usage_errors_come_back(server, tmp_path):
    _, sock = server
    proc = _run(["scaling", "fit", "--no-such-option"], tmp_path, sock)
    assert proc.returncode == 2 and "error: the following arguments are required" in proc.stderr
    ok = _run(["width", "--help"], tmp_path, sock)
    assert ok.returncode == 0 and ok.stdout == _run(["width", "--help"], tmp_path).stdout


def test_the_job_sees_the_clients_environment(server, mirror, tmp_path):
    _, sock = server
    # the data mirror reaches the download command only through the environment
    out = tmp_path / "input.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "dlrepro", "data", "download", "--dataset", "tinyshakespeare",
         "--file", "input.txt", "--out", str(out), "--no-network"],
        cwd=tmp_path, env=_env(**{ENV_VAR: str(sock), "DLREPRO_DATA_MIRROR": str(mirror)}),
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (mirror / "tinyshakespeare" / "input.txt").read_bytes()


def test_killing_the_client_kills_its_job(server, tmp_path):
    proc_server, sock = server
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)  # reading it blocks until a writer comes: a job that runs until killed
    client = subprocess.Popen([sys.executable, "-m", "dlrepro", "scaling", "fit", "--csv", str(fifo),
                               "--y", "loss", "--x", "x", "--out", str(tmp_path / "f.json")],
                              env=_env(**{ENV_VAR: str(sock)}), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    def children():
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc_server.pid)],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    try:
        deadline = time.time() + 60
        while not children() and time.time() < deadline:
            time.sleep(0.1)
        (job,) = children()
    finally:
        client.send_signal(signal.SIGKILL)  # also when the job never reached the server
        client.wait()
    deadline = time.time() + 30
    while job in children() and time.time() < deadline:
        time.sleep(0.1)
    assert job not in children()
    assert not (tmp_path / "f.json").exists()


def test_without_a_server_the_command_runs_itself(tmp_path):
    assert run_via_server(["width", "--help"], str(tmp_path / "no-socket")) is None
    proc = _run(["width", "--help"], tmp_path, tmp_path / "no-socket")
    assert proc.returncode == 0 and "width" in proc.stdout


def test_warm_start_is_off_where_jobs_run_elsewhere():
    assert WarmStart.wanted(True, "local", False, False) is None
    assert "slurm" in WarmStart.wanted(True, "slurm", False, False)
    assert "warm_start" in WarmStart.wanted(False, "local", False, False)
    assert "conda" in WarmStart.wanted(True, "local", False, True)
    assert WarmStart.wanted(True, "local", True, False) == "dry run"
    assert "gpu" in WarmStart.wanted(True, "local", False, False, "gpu")


def test_the_server_stops_when_its_parent_is_gone(tmp_path):
    sock = tmp_path / "s"
    # a parent that exits at once: the server notices and stops without being told
    parent = subprocess.Popen([sys.executable, "-c", "pass"])
    parent.wait()
    proc = subprocess.run([sys.executable, "-m", "dlrepro", "serve", "--socket", str(sock),
                           "--parent", str(parent.pid)], env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "is gone, stopping" in proc.stderr
    assert not sock.exists()


def test_a_bad_request_is_refused_and_the_server_keeps_serving(server, tmp_path):
    import socket

    _, sock = server
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(sock))
        conn.sendall(b"\x00\x00\x00\x05{}")  # no file descriptors, truncated JSON
        assert conn.recv(4) == b""  # refused: closed without a status
    assert "bad request" in (sock.parent / "server.log").read_text()
    ok = _run(["width", "--help"], tmp_path, sock)
    assert ok.returncode == 0 and "width" in ok.stdout
