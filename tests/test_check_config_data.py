"""The data sets a configuration needs (``dlrepro.data.needed``), and ``check-config``
naming a file the mirror lacks before anything runs, in the line the Snakefile gives."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from dlrepro.config import main as check_config, merged_config, snakemake_config_parser, validate_config
from dlrepro.data.needed import check_data, datasets_needed
from tests.conftest import PRESETS, ROOT, SNAKEMAKE

SMOKE = ["--configfile", str(PRESETS / "smoke.yaml")]
PAPER = ["--configfile", str(PRESETS / "paper.yaml")]


def config_of(*argv: str) -> dict:
    """The validated config of a command line's ``--configfile`` and ``--config``."""
    args = snakemake_config_parser().parse_args(argv)
    return validate_config(merged_config(args.configfile, args.config))


@pytest.mark.parametrize("args, expected", [
    ([], {"mnist", "moses", "tinyshakespeare"}),
    (SMOKE, {"mnist", "moses", "tinyshakespeare"}),
    (PAPER, {"cifar10", "mnist", "tinystories"}),
], ids=["default", "smoke", "paper"])
def test_the_presets_need_what_they_needed(args, expected):
    """The sets the rule files built before the rule moved to dlrepro.data.needed."""
    assert datasets_needed(config_of(*args)) == expected


@pytest.mark.parametrize("entry, expected", [
    ("stages=[linreg]", set()),  # data.prepare is the data stage's: not needed without it
    ("stages=[data]", {"mnist", "tinyshakespeare"}),
    ("stages=[vae]", {"mnist"}),
    ("stages=[scaling]", {"tinyshakespeare"}),
    ("stages=[conformers]", {"moses"}),
    ("stages=[init]", {"mnist"}),
    ("stages=[width]", {"mnist"}),  # the MLP and the CNN (MNIST by default)
    ("width={cnn: {dataset: cifar10}}", {"cifar10", "mnist", "moses", "tinyshakespeare"}),
    ("collapse={dataset: tinystories}", {"mnist", "moses", "tinyshakespeare", "tinystories"}),
])
def test_each_stage_needs_its_data_sets_only(entry, expected):
    assert datasets_needed(config_of("--config", entry)) == expected


def test_geom_conformers_need_no_moses():
    cfg = config_of(*PAPER)
    assert cfg["conformers"]["source"] == "geom" and "conformers" in cfg["stages"]
    assert "moses" not in datasets_needed(cfg)


def test_plan_downloads_what_the_workflow_needs(tmp_path):
    """plan's data jobs cover the same data sets: the width CNN's CIFAR-10 included."""
    from dlrepro.plan.stages import plan_jobs

    cfg = config_of("--config", "stages=[width]", "width={cnn: {dataset: cifar10}}")
    _, jobs = plan_jobs(cfg, tmp_path)
    downloads = {j.wildcards.split("dataset=")[1].split(",")[0] for j in jobs if j.rule == "download"}
    assert downloads == datasets_needed(cfg) == {"cifar10", "mnist"}


# --------------------------------------------------------------------------- check-config


def run_check(argv, capsys) -> tuple[int, list[str]]:
    status = check_config(list(argv))
    return status, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_a_file_the_mirror_lacks_offline_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    status, lines = run_check([*SMOKE, "--config", "data={allow_network: false, mirror: empty}"], capsys)
    assert status == 1
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith("invalid configuration: data set mnist needs t10k-images-idx3-ubyte.gz")
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz" in line
    assert f"put it at {tmp_path / 'empty' / 'mnist' / 't10k-images-idx3-ubyte.gz'}" in line


def test_no_mirror_offline_says_where_a_mirror_goes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DLREPRO_DATA_MIRROR", raising=False)
    status, lines = run_check(["--config", "data={allow_network: false}", "stages=[collapse]"], capsys)
    assert status == 1 and len(lines) == 1, lines
    assert "tinyshakespeare needs input.txt, no mirror is set" in lines[0]
    assert "<mirror>/tinyshakespeare/input.txt" in lines[0] and "DLREPRO_DATA_MIRROR" in lines[0]


@pytest.mark.parametrize("preset", [[], SMOKE], ids=["default", "smoke"])
def test_the_real_mirror_passes_offline(preset, mirror, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLREPRO_DATA_MIRROR", str(mirror))
    assert run_check([*preset, "--config", "data={allow_network: false}"], capsys) == (0, [])


def test_a_disabled_stage_needs_no_data(mirror, tmp_path, monkeypatch, capsys):
    """A mirror with the text corpus alone serves the text stages; the VAE needs MNIST."""
    partial = tmp_path / "partial"
    shutil.copytree(mirror / "tinyshakespeare", partial / "tinyshakespeare")
    monkeypatch.chdir(tmp_path)
    offline = "data={allow_network: false, mirror: partial}"
    assert run_check(["--config", offline, "stages=[linreg, collapse, scaling, report]"], capsys) == (0, [])
    status, lines = run_check(["--config", offline, "stages=[linreg, collapse, vae]"], capsys)
    assert status == 1 and len(lines) == 1 and "data set mnist needs t10k-images-idx3-ubyte.gz" in lines[0]


def test_prepared_or_downloaded_data_is_not_asked_for(tmp_path, monkeypatch, capsys):
    """What results/ already holds (a prepared set, or the raw files) needs no mirror."""
    (tmp_path / "empty").mkdir()
    work = tmp_path / "run"
    (work / "results" / "data" / "mnist").mkdir(parents=True)
    (work / "results" / "data" / "mnist" / "manifest.json").write_text("{}")
    raw = work / "results" / "data" / "raw" / "tinyshakespeare"
    raw.mkdir(parents=True)
    (raw / "input.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    args = ["-d", "run", "--config", "data={allow_network: false, mirror: ../empty}", "stages=[collapse, vae]"]
    assert run_check(args, capsys) == (0, [])  # the mirror is read from -d, as Snakemake does
    status, lines = run_check([*args[:-1], "stages=[collapse, vae, conformers]"], capsys)
    assert status == 1 and len(lines) == 1 and "data set moses needs test.csv" in lines[0]
    (work / "results" / "data" / "conformers").mkdir()
    (work / "results" / "data" / "conformers" / "manifest.json").write_text("{}")
    assert run_check([*args[:-1], "stages=[collapse, vae, conformers]"], capsys) == (0, [])


def test_online_each_missing_file_is_a_warning(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    status, lines = run_check([*SMOKE, "--config", "data={mirror: empty}"], capsys)
    assert status == 0
    names = ["mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz", "moses/test.csv",
             "tinyshakespeare/input.txt"]
    assert len(lines) == len(names), lines
    for line, name in zip(lines, names):
        assert line.startswith(f"data: {name} will be downloaded from https://")
        assert f"offline, put it at {tmp_path / 'empty' / name} " in line


def test_an_lfs_checksum_pointer_is_needed_offline(mirror, tmp_path, monkeypatch, capsys):
    """TinyStories' checksums are Git LFS pointers: offline, the mirror must hold them too."""
    folder = tmp_path / "m" / "tinystories"
    folder.mkdir(parents=True)
    for split in ("train", "valid"):
        (folder / f"TinyStoriesV2-GPT4-{split}.txt").write_text("a story\n")
    cfg = config_of("--config", "stages=[data]")
    cfg["data"].update(prepare=["tinystories"], allow_network=False, mirror=str(tmp_path / "m"))
    from dlrepro.config import ConfigError

    with pytest.raises(ConfigError, match="TinyStoriesV2-GPT4-train.txt's checksum is published as the Git LFS"):
        check_data(cfg, tmp_path)
    for split in ("train", "valid"):
        (folder / f"TinyStoriesV2-GPT4-{split}.txt.lfs-pointer").write_text("oid sha256:00\n")
    assert check_data(cfg, tmp_path) == []


@pytest.mark.slow
def test_check_config_says_what_the_workflow_says(tmp_path):
    """The same line from ``python -m dlrepro check-config`` as from the Snakefile's dry run."""
    (tmp_path / "empty").mkdir()
    args = [*SMOKE, "--config", "data={allow_network: false, mirror: empty}"]
    check = subprocess.run([sys.executable, "-m", "dlrepro", "check-config", *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    snake = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "1", "-n",
                            *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert check.returncode == 1 and snake.returncode == 1
    ours = check.stderr.strip()
    assert "\n" not in ours and ours.startswith("invalid configuration: data set mnist needs"), ours
    assert ours in (snake.stdout + snake.stderr).splitlines(), snake.stderr[-3000:]


@pytest.mark.slow
def test_make_run_names_each_missing_file_once(tmp_path):
    """Online, the Snakefile names each missing file, except under `make run`, whose
    check-config has just named it ($DLREPRO_CONFIG_CHECKED=1)."""
    import os

    (tmp_path / "empty").mkdir()
    args = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "1", "-n", *SMOKE,
            "--config", "data={mirror: empty}"]

    def warnings(**env) -> list[str]:
        out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**{k: v for k, v in os.environ.items() if k != "DLREPRO_CONFIG_CHECKED"}, **env})
        assert out.returncode == 0, out.stderr[-3000:]
        return [line for line in (out.stdout + out.stderr).splitlines() if " will be downloaded from " in line]

    assert len(warnings()) == 4
    assert warnings(DLREPRO_CONFIG_CHECKED="1") == []
    make = (ROOT / "Makefile").read_text()
    assert "CHECKED = DLREPRO_CONFIG_CHECKED=1" in make and make.count("\t$(CHECKED) $(VENV)/bin/snakemake") == 2
