"""The profiles' job-rate limit and the timers it leaves behind (``dlrepro.smk.cancel_pending_timers``).

Snakemake re-runs its scheduler one timespan of ``max-jobs-per-timespan`` after every round
that leaves ready jobs waiting, and each re-run schedules the next: a chain per finished
job. The profiles use a long timespan, so the chains wake rarely; the Snakefile cancels the
timers still waiting when the run ends, or the interpreter would wait for them.
"""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from dlrepro.smk import cancel_pending_timers

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def test_waiting_timers_are_cancelled_and_counted():
    fired = []
    timers = [threading.Timer(600, fired.append, args=(i,)) for i in range(3)]
    for t in timers:
        t.start()
    assert cancel_pending_timers() >= 3
    for t in timers:
        t.join(timeout=5)
        assert not t.is_alive()
    assert fired == []
    assert cancel_pending_timers() == 0


@pytest.mark.parametrize("profile", ["cpu", "local"])
def test_the_profiles_rate_limit_never_binds_and_wakes_rarely(profile):
    from snakemake.settings.types import MaxJobsPerTimespan

    raw = yaml.safe_load((ROOT / "profiles" / profile / "config.yaml").read_text())["max-jobs-per-timespan"]
    limit = MaxJobsPerTimespan.parse_choice(raw)
    assert limit.max_jobs >= 10_000  # more than any preset starts in one timespan
    assert limit.timespan >= 300  # a chain of re-runs wakes at most a few times a run


def test_a_run_with_a_long_timespan_ends_when_its_jobs_do(tmp_path):
    # without the cancel in onsuccess, this run would end only when its last 10-minute timer fired
    (tmp_path / "Snakefile").write_text(f'''
import sys
sys.path.insert(0, {str(ROOT / "workflow")!r})
from dlrepro.smk import cancel_pending_timers

onsuccess:
    print("cancelled", cancel_pending_timers(), file=sys.stderr)

rule all:
    input: expand("out/{{i}}.txt", i=range(6))

rule job:
    output: "out/{{i}}.txt"
    shell: "echo {{wildcards.i}} > {{output}}"
''')
    start = time.monotonic()
    proc = subprocess.run([SNAKEMAKE, "-c1", "--scheduler", "greedy", "--max-jobs-per-timespan", "100000/10m",
                           "-d", str(tmp_path), "-s", str(tmp_path / "Snakefile")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "out").iterdir())) == 6
    cancelled = int(proc.stderr.split("cancelled ")[1].split()[0])
    assert cancelled >= 1  # the chains were there ...
    assert time.monotonic() - start < 100  # ... and the run did not wait for them
