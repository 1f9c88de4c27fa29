"""README.md and docs/: every relative link and anchor resolves, every generated block is
closed and known to ``make docs``, and every command block they show runs.

Command blocks: a fenced ``bash`` block runs line by line unless the comment just before it
says ``<!-- not run by the tests: <why> -->`` (blocks that run the whole workflow, submit
to SLURM or start servers). Its ``python -m dlrepro`` lines run here (in a scratch folder
that links to the repository's files, so that their outputs land there); its ``make`` and
``snakemake`` lines are dry-run by ``tests/test_bad_input.py`` (with the pre-flight
check), which reads the same pages (:func:`doc_pages`); ``export`` lines set the
environment of the lines after them; any other line fails the test until its block is
marked. A ``python`` block is executed. The ``console`` blocks that ``make docs`` writes
(``$ command`` and its output) are run again and must still succeed (slow: the scaling
fits resample a thousand times).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dlrepro.report import docs as D

ROOT = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"<!--\s*not run by the tests:\s*\S.*?-->")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def doc_pages() -> list[Path]:
    return D.pages(ROOT)


def _prose(text: str) -> str:
    """``text`` without fenced blocks and inline code (links there are examples)."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, inline code marks and punctuation other
    than ``-`` and ``_`` dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text.replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^(#{1,6})\s+(.*?)\s*$", FENCE.sub("", page.read_text(encoding="utf-8")), re.M):
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def test_the_pages_exist_and_the_readme_is_short():
    pages = doc_pages()
    names = {_rel(p) for p in pages}
    assert {"README.md", "docs/install.md", "docs/configuration.md", "docs/planning.md"} <= names, names
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", doc_pages(), ids=_rel)
def test_every_relative_link_and_anchor_resolves(page):
    text = _prose(page.read_text(encoding="utf-8"))
    bad = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file {dest}")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor} in {_rel(dest)}")
    assert not bad, f"{_rel(page)}: " + "; ".join(bad)


STAGE_SECTIONS = ["Method", "Outputs", "Claims", "Scale"]


def test_every_stage_has_a_page():
    from dlrepro.report.claims import STAGES

    assert {p.stem for p in (ROOT / "docs" / "stages").glob("*.md")} == set(STAGES)


@pytest.mark.parametrize("page", sorted((ROOT / "docs" / "stages").glob("*.md")), ids=_rel)
def test_stage_pages_share_their_sections(page):
    """Every stage page has the sections Method, Outputs, Claims and Scale, in that order,
    before any other of its own; its claims table and its plan are in their sections."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    sections = re.findall(r"^## (.*?)\s*$", text, re.M)
    assert sections[:4] == STAGE_SECTIONS, f"{_rel(page)}: sections {sections}"
    body = dict(zip(sections, re.split(r"^## .*$", text, flags=re.M)[1:]))
    assert f"<!-- begin:stage-claims {page.stem} -->" in body["Claims"]
    assert "plan --brief" in body["Scale"] and "workflow/presets/paper.yaml" in body["Scale"]


@pytest.mark.parametrize("page", doc_pages(), ids=_rel)
def test_generated_blocks_are_closed_and_known(page):
    text = page.read_text(encoding="utf-8")
    opened = re.findall(r"<!-- begin:([\w-]+)", _prose(text))
    closed = [m.group("name") for m in D.BLOCK.finditer(text)]
    assert sorted(opened) == sorted(closed), f"{_rel(page)}: a block without its end marker"
    unknown = sorted(set(closed) - set(D.GENERATORS))
    assert not unknown, f"{_rel(page)}: unknown generated blocks {unknown}"


def command_blocks(kind: str = "bash") -> list[tuple[str, str]]:
    """(page, block text) of every fenced block of that language not marked as not run."""
    out = []
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group(1) != kind:
                continue
            before = text[:m.start()].rstrip().splitlines()[-1:] or [""]
            if SKIP.search(before[0]):
                continue
            out.append((_rel(page), m.group(2)))
    return out


def _lines(block: str) -> list[str]:
    """Logical command lines: continuations joined, comments and blank lines dropped."""
    out, buf = [], ""
    for raw in block.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        line = (buf + line).strip()
        buf = ""
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _strip_comment(line: str) -> tuple[str, str]:
    """(command, comment) of a shell line: the comment starts at a ``#`` outside quotes
    that follows a space."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line, ""


PY = re.compile(r"^(?:\.venv/bin/)?python -m dlrepro\b")
DRY = re.compile(r"^(?:make (?:run|smoke|report)\b|(?:\.venv/bin/)?snakemake\b)")


def runnable() -> tuple[list[tuple[str, str, dict]], list[str]]:
    """(page, command, env) of every ``python -m dlrepro`` line of an unmarked bash block,
    and the lines the tests cannot run."""
    out, unknown = [], []
    for page, block in command_blocks("bash"):
        env: dict[str, str] = {}
        for line in _lines(block):
            cmd, _ = _strip_comment(line)
            if cmd.startswith("export "):
                for kv in shlex.split(cmd)[1:]:
                    k, _, v = kv.partition("=")
                    env[k] = v
            elif PY.match(cmd):
                out.append((page, line, dict(env)))
            elif DRY.match(cmd):
                pass  # dry-run by tests/test_bad_input.py
            else:
                unknown.append(f"{page}: {line!r}")
    return out, unknown


def test_every_bash_line_is_run_or_its_block_marked():
    _, unknown = runnable()
    assert not unknown, ("lines the tests cannot run; mark their block with "
                         "<!-- not run by the tests: why -->: " + "; ".join(unknown))


def _run(line: str, env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    cmd, comment = _strip_comment(line)
    argv = shlex.split(cmd)
    argv[0:1] = [sys.executable] if argv[0].endswith("python") else argv[0:1]
    work = D.scratch_checkout(ROOT, tmp_path / "checkout")
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), **env}
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, env=full_env, timeout=600)
    expected = 1 if "exit 1" in comment else 0
    assert proc.returncode in (0, expected) and "Traceback" not in proc.stderr, \
        f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


@pytest.mark.parametrize("page, line, env", runnable()[0], ids=lambda v: v if isinstance(v, str) else "")
def test_every_python_command_line_runs(page, line, env, tmp_path):
    _run(line, env, tmp_path)


@pytest.mark.parametrize("page, block", command_blocks("python"), ids=lambda v: v[:40])
def test_every_python_block_runs(page, block, capsys):
    namespace: dict = {"__name__": "__docs__"}
    exec(compile(block, page, "exec"), namespace)


def generated_commands() -> list[tuple[str, str]]:
    out = []
    for page in doc_pages():
        for m in D.BLOCK.finditer(page.read_text(encoding="utf-8")):
            if m.group("name") == "command":
                out.append((_rel(page), m.group("arg").strip()))
            elif m.group("name") == "command-grep":
                out.append((_rel(page), m.group("arg").strip().split(" ", 1)[1]))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("page, command", generated_commands(), ids=lambda v: v[:60])
def test_every_generated_command_still_runs(page, command, tmp_path):
    """What ``make docs`` ran to write the page's output still runs (exit 0, or 1 for a
    plan's ``--strict``), so the page can be regenerated."""
    _run(command + ("  # exit 1" if "--strict" in command else ""), {}, tmp_path)


def test_generators_fill_blocks_from_a_results_folder(tmp_path):
    """``fill`` rewrites only what is between the markers, from a results folder; a block
    whose source is absent stays as it was."""
    from dlrepro import claims as C

    res = tmp_path / "results"
    (res / "logs").mkdir(parents=True)
    (res / "run.yaml").write_text("preset: smoke\nargs: --configfile workflow/presets/smoke.yaml\nconfig: {}\n")
    (res / "logs" / "run_time.json").write_text('{"jobs": 129, "seconds": 150.0}\n')
    row = C.Claim(claim="x.a", stage="x", statement="s", source="p", statistic="t", value=1.0, ci_lo=0.5,
                  ci_hi=1.5, verdict="reproduced", expected="> 0", unit="seeds", n_units=3,
                  scale="preset smoke; tiny")
    C.write(res / "claims.csv", [row])
    page = tmp_path / "page.md"
    page.write_text("before\n<!-- begin:claims-count -->\nstale 12\n<!-- end:claims-count -->\n"
                    "<!-- begin:run-time smoke -->\nkept\n<!-- end:run-time -->\n"
                    "<!-- begin:stage-claims x -->\n<!-- end:stage-claims -->\nafter\n")
    src = D.Sources(res, None, tmp_path / "figures")
    text = D.fill(page.read_text(), page, src, log=lambda *_: None)
    assert text.startswith("before\n") and text.endswith("after\n")
    assert "**1 claims** measured by the `smoke` preset's run: 1 reproduced." in text and "stale" not in text
    assert "<!-- begin:run-time smoke -->\nkept\n" in text  # no smoke results given
    assert "| `x.a` | s | reproduced | preset smoke; tiny |" in text
    src = D.Sources(res, res, tmp_path / "figures")
    assert "129 jobs in 2.5 minutes of wall time" in D.fill(text, page, src)


@pytest.mark.parametrize("claim, key", [
    ("collapse.replace_rises", ("collapse", "seeds")),
    ("collapse.gpt2-d64.accumulate_bounded", ("collapse", "seeds")),
    ("vae.accumulate_bounded", ("vae", "seeds")),
    ("conformers.mat_r.accumulate_bounded", ("conformers", "seeds")),
    ("init.orthogonal_trains_faster_r2", ("init", "training", "seeds")),
    ("scaling.data", ("scaling", "data_sweep", "seeds")),
    ("scaling.width.mup", ("width", "mlp", "train", "seeds")),
    ("width.cnn.sp_lr_drift", ("width", "cnn", "train", "lr_sweep_seeds")),
    ("width.mlp.coord_check_mup_flat", ("width", "coord_check", "seeds")),
    ("width.cnn.narrow_ensembles_worse", ("width", "cnn", "train", "seeds")),
    ("init.gaussian_ntk_grows", None),  # initialisations: set by the stage's sizes, not a seed list
    ("linreg.replace_rises", None),
])
def test_each_claims_unit_has_its_config_key(claim, key):
    from dlrepro.config import validate_config
    from dlrepro.plan.cli import load_config

    assert D.unit_key(claim) == key
    if key is not None:  # the key is one the config accepts, and a list of seeds after the change
        cfg = validate_config(D.with_units(load_config([], []), key, 9))
        node = cfg
        for part in key:
            node = node[part]
        assert node == list(range(9))


def test_open_claims_say_the_units_and_plans_cost_that_would_resolve_them(tmp_path):
    from dlrepro import claims as C
    from dlrepro.plan.cli import load_config

    res = tmp_path / "results"
    (res / "logs").mkdir(parents=True)
    (res / "run.yaml").write_text(yaml.safe_dump({"preset": "default", "args": "", "config": load_config([], [])}))
    (res / "logs" / "run_time.json").write_text('{"jobs": 479, "seconds": 1800.0}\n')

    def claim(name, value, lo, hi, expected, verdict=C.NOT_RESOLVED):
        return C.Claim(claim=name, stage=name.split(".")[0], statement="s", source="p", statistic="t", value=value,
                       ci_lo=lo, ci_hi=hi, verdict=verdict, expected=expected, unit="seeds", n_units=5,
                       scale="preset default")

    C.write(res / "claims.csv", [claim("conformers.mat_r.accumulate_bounded", 0.413, 0.333, 0.553, "< 0.5"),
                                 claim("width.cnn.coord_check_mup_flat", -0.197, -0.316, -0.077, "in [-0.2, 0.2]"),
                                 claim("vae.replace_rises", 47.0, 41.0, 53.0, "> 0", C.REPRODUCED)])
    text = D.open_claims("", tmp_path / "claims.md", D.Sources(res, None, tmp_path / "figures"))
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in text.splitlines() if line.startswith("| `")}
    assert set(rows) == {"conformers.mat_r.accumulate_bounded", "width.cnn.coord_check_mup_flat"}
    units, cost = rows["conformers.mat_r.accumulate_bounded"][4:6]
    assert units == "about 13 seeds if the estimate held (now 5)"  # 5 * (0.14 / 0.087)^2 = 12.9
    m = re.fullmatch(r"`conformers\.seeds`: 0\.\.12: (\d+) jobs \(\+(\d+)\), ([\d.]+)x the CPU-job hours, "
                     r"about (\d+) minutes where this run took 30", cost)
    assert m, cost
    assert int(m[2]) > 0 and float(m[3]) > 1.0 and int(m[4]) == round(30 * float(m[3]))
    assert "boundary" in rows["width.cnn.coord_check_mup_flat"][4] and rows["width.cnn.coord_check_mup_flat"][5] == ""
