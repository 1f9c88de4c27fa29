"""Bad input, given as a new user would: config keys, config files, command-line forms,
mirror files. Each must stop with a non-zero exit status and one line naming the key path
(or the file) and the bad value, with no traceback, and leave ``results/`` as it was.

Most cases call the checks in-process (``dlrepro.config`` for the configuration, the
pre-flight check of snakemake command lines, ``python -m dlrepro`` commands through
``dlrepro.__main__.run``); a representative set runs through real ``snakemake`` (dry runs,
and real runs for the checks made when execution starts), concurrently, in one fixture.
"""

from __future__ import annotations

import copy
import gzip
import shutil
import subprocess
import sys
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from dlrepro import config as dconfig
from dlrepro.config import ConfigError, check_snakemake_args, validate_config
from tests.conftest import PRESETS, ROOT, SNAKEMAKE

NAN, INF = float("nan"), float("inf")


def smoke_config() -> dict:
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    return dconfig._merge(base, yaml.safe_load((PRESETS / "smoke.yaml").read_text()))


def snapshot(results: Path) -> dict:
    """Every file under ``results`` with its size and content."""
    return {p.relative_to(results).as_posix(): p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory whose results/ already holds a file (which must stay as it is)."""
    (tmp_path / "results" / "data").mkdir(parents=True)
    (tmp_path / "results" / "data" / "kept.txt").write_text("from an earlier run\n")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path / "results")
    yield tmp_path
    assert snapshot(tmp_path / "results") == before, "results/ changed"


def assert_one_line(message: str, *expected: str) -> None:
    text = message.strip()
    assert "Traceback" not in text
    assert "\n" not in text, f"more than one line: {text!r}"
    for e in expected:
        assert e in text, f"{e!r} not in {text!r}"


# --------------------------------------------------------------------------- config keys

# (id, change merged over the smoke preset, what the message must name)
CONFIG_CASES = [
    # names: every registry, in every stage (one check in dlrepro.config)
    ("vae-policy", {"vae": {"policies": ["replace", "keep-best"]}}, ["'vae.policies[1]'", "'keep-best'", "accumulate"]),
    ("conformers-policy", {"conformers": {"policies": ["keep-best"]}}, ["'conformers.policies[0]'", "'keep-best'", "replace"]),
    ("collapse-policy", {"collapse": {"policies": ["replace", "keepbest"]}}, ["'collapse.policies[1]'", "'keepbest'"]),
    ("linreg-policy", {"linreg": {"policies": ["accumulate-subsample"]}}, ["'linreg.policies[0]'", "'accumulate-subsample'", "replace"]),
    ("fluct-init", {"init": {"fluctuations": {"inits": ["gaussian", "xavier"]}}}, ["'init.fluctuations.inits[1]'", "'xavier'", "orthogonal"]),
    ("ntk-init", {"init": {"ntk": {"inits": ["he"]}}}, ["'init.ntk.inits[0]'", "'he'", "gaussian"]),
    ("training-init", {"init": {"training": {"inits": ["orthogonal", "lecun"]}}}, ["'init.training.inits[1]'", "'lecun'"]),
    ("width-param", {"width": {"parametrizations": ["sp", "mu-p"]}}, ["'width.parametrizations[1]'", "'mu-p'", "mup"]),
    ("width-arm-param", {"width": {"mlp": {"arms": {"online": ["spp"]}}}}, ["'width.mlp.arms.online[0]'", "'spp'", "ntk"]),
    ("width-arm", {"width": {"mlp": {"arms": {"onlin": None}}}}, ["'width.mlp.arms'", "'onlin'", "offline"]),
    ("width-lr-key", {"width": {"mlp": {"train": {"lr": {"spp": 0.1}}}}}, ["'width.mlp.train.lr'", "'spp'", "mup"]),
    ("width-lr-missing", {"width": {"mlp": {"train": {"lr": {"sp": 0.1}}}}}, ["'width.mlp.train.lr'", "'mup'", "width.mlp.arms.online"]),
    ("coord-model-off", {"width": {"coord_check": {"models": ["lm"]}}}, ["'width.coord_check.models'", "'lm'"]),
    ("width-activation", {"width": {"mlp": {"train": {"activation": "swish"}}}}, ["'width.mlp.train.activation'", "'swish'", "relu"]),
    ("arch", {"collapse": {"models": [{"name": "m", "arch": "mamba"}]}}, ["'collapse.models[0].arch'", "'mamba'", "llama"]),
    ("schedule", {"conformers": {"train": {"diffusion": {"schedule": "sigmoid"}}}}, ["'conformers.train.diffusion.schedule'", "'sigmoid'", "cosine"]),
    ("prepare-dataset", {"data": {"prepare": ["mnist", "imagenet"]}}, ["'data.prepare[1]'", "'imagenet'", "cifar10"]),
    ("text-dataset", {"collapse": {"dataset": "mnist"}}, ["'collapse.dataset'", "'mnist'", "tinystories"]),
    ("image-dataset", {"init": {"dataset": "tinyshakespeare"}}, ["'init.dataset'", "'tinyshakespeare'", "cifar10"]),
    ("width-model", {"scaling": {"width_model": "transformer"}}, ["'scaling.width_model'", "'transformer'", "mlp"]),
    ("coord-model", {"width": {"coord_check": {"models": ["cnn9"]}}}, ["'width.coord_check.models[0]'", "'cnn9'"]),
    ("stage", {"stages": ["data", "colapse"]}, ["'stages[1]'", "'colapse'"]),
    # non-finite numbers, wherever a number is read
    ("lr-nan", {"collapse": {"optim": {"lr": NAN}}}, ["'collapse.optim.lr'", "nan", "finite"]),
    ("lr-inf", {"collapse": {"optim": {"lr": INF}}}, ["'collapse.optim.lr'", "inf", "finite"]),
    ("vae-lr-neginf", {"vae": {"train": {"lr": -INF}}}, ["'vae.train.lr'", "-inf"]),
    ("conformers-lr-nan", {"conformers": {"train": {"lr": NAN}}}, ["'conformers.train.lr'", "nan"]),
    ("init-lr-inf", {"init": {"training": {"lr": INF}}}, ["'init.training.lr'", "inf"]),
    ("width-lr-inf", {"width": {"mlp": {"train": {"lr": {"sp": INF}}}}}, ["'width.mlp.train.lr.sp'", "inf"]),
    ("width-wd-nan", {"width": {"mlp": {"train": {"weight_decay": NAN}}}}, ["'width.mlp.train.weight_decay'", "nan"]),
    ("sigma-nan", {"linreg": {"sigma": [1.0, NAN]}}, ["'linreg.sigma[1]'", "nan"]),
    ("ci-nan", {"scaling": {"fit": {"ci_level": NAN}}}, ["'scaling.fit.ci_level'", "nan"]),
    ("temperature-inf", {"collapse": {"sampling": {"temperature": INF}}}, ["'collapse.sampling.temperature'", "inf"]),
    ("timeout-inf", {"data": {"timeout_s": INF}}, ["'data.timeout_s'", "inf"]),
    ("noise-level-nan", {"conformers": {"eval": {"noise_levels": [NAN]}}}, ["'conformers.eval.noise_levels[0]'", "nan"]),
    # rules across keys (the constructors keep theirs)
    ("llama-odd-head", {"collapse": {"models": [{"name": "m", "arch": "llama", "d_model": 36, "n_head": 4}]}},
     ["'collapse.models.m.d_model'", "36", "head dimension 9", "even"]),
    ("heads-divide", {"collapse": {"models": [{"name": "m", "d_model": 100, "n_head": 3}]}}, ["'collapse.models.m.d_model'", "100", "n_head 3"]),
    ("heavy-atoms", {"conformers": {"prepare": {"min_heavy_atoms": 20, "max_heavy_atoms": 10}}},
     ["'conformers.prepare.min_heavy_atoms'", "20", "max_heavy_atoms 10"]),
    ("geom-heavy-atoms", {"conformers": {"geom": {"min_heavy_atoms": 50, "max_heavy_atoms": 9}}},
     ["'conformers.geom.min_heavy_atoms'", "50", "9"]),
    ("lm-width-head-dim", {"width": {"lm": {"widths": [32, 40]}}}, ["'width.lm.widths[1]'", "40", "head_dim 16"]),
    ("n-probe", {"width": {"mlp": {"train": {"n_probe": 500, "n_test": 100}}}}, ["'width.mlp.train.n_probe'", "500", "n_test=100"]),
    ("max-new-tokens", {"collapse": {"sampling": {"max_new_tokens": 4096}}}, ["'collapse.sampling.max_new_tokens'", "4096", "block_size 32"]),
    ("linreg-T", {"linreg": {"d": [50], "T": [40]}}, ["'linreg.T'", "T=40", "d=50"]),
    ("fractions", {"data": {"text": {"val_fraction": 0.6, "test_fraction": 0.5}}}, ["'data.text.val_fraction'", "0.6", "0.5"]),
    ("vocab-dtype", {"data": {"text": {"vocab_size": 70000}}}, ["'data.text.vocab_size'", "70000", "uint16"]),
    ("devices", {"compute": {"accelerator": "gpu", "devices": 4, "train_resources": {"gpu": 1}}}, ["'compute.devices'", "4", "gpu requests 1"]),
    ("sweep-model", {"scaling": {"data_sweep": {"model": "gpt2-huge"}}}, ["'scaling.data_sweep.model'", "'gpt2-huge'", "gpt2-tiny"]),
    ("duplicate-models", {"collapse": {"models": [{"name": "a"}, {"name": "a"}]}}, ["'collapse.models'", "['a', 'a']"]),
    ("geom-null", {"conformers": {"source": "geom"}}, ["'conformers.geom.rdkit_folder'", "null", "geom"]),
    # keys, types, ranges
    ("seed-negative", {"seed": -1}, ["'seed'", "-1", "minimum of 0"]),
    ("seed-text", {"seed": "zero"}, ["'seed'", "'zero'", "integer"]),
    ("seed-bool", {"seed": True}, ["'seed'", "True", "integer"]),
    ("typo-key", {"collapse": {"generatons": 3}}, ["'collapse.generatons'", "not a known key", "generations"]),
    ("top-typo", {"colapse": {}}, ["'colapse'", "not a known key", "collapse"]),
    ("generations-zero", {"collapse": {"generations": 0}}, ["'collapse.generations'", "0", "minimum of 1"]),
    ("batch-zero", {"vae": {"train": {"batch_size": 0}}}, ["'vae.train.batch_size'", "0"]),
    ("dpi", {"figures": {"dpi": 10000}}, ["'figures.dpi'", "10000", "maximum of 600"]),
    ("accelerator", {"compute": {"accelerator": "tpu"}}, ["'compute.accelerator'", "'tpu'", "gpu"]),
    ("dropout", {"collapse": {"models": [{"name": "m", "dropout": 0.95}]}}, ["'collapse.models[0].dropout'", "0.95"]),
    ("width-train-typo", {"width": {"mlp": {"train": {"stepz": 3}}}}, ["'width.mlp.train.stepz'", "not a known key", "steps"]),
    ("width-steps", {"width": {"mlp": {"train": {"steps": 0}}}}, ["'width.mlp.train.steps'", "0", "positive int"]),
    ("width-no-widths", {"width": {"lm": {"train": {}}}}, ["'width.lm'", "'widths' is a required property"]),
    ("betas-short", {"collapse": {"optim": {"betas": [0.9]}}}, ["'collapse.optim.betas'", "[0.9]", "too short"]),
    ("mnist-source", {"data": {"images": {"mnist_source": "train"}}}, ["'data.images.mnist_source'", "'train'", "official"]),
]


@pytest.mark.parametrize("change, expected", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_key(change, expected, workdir):
    cfg = dconfig._merge(smoke_config(), copy.deepcopy(change))
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, check_paths=True)
    assert_one_line(str(err.value), *expected)


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="must be a mapping of keys, got list"):
        validate_config(["data"])


# --------------------------------------------------------------------------- folders


def test_missing_mirror_folder(workdir):
    cfg = dconfig._merge(smoke_config(), {"data": {"mirror": "no/such/mirror"}})
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, check_paths=True)
    assert_one_line(str(err.value), "'data.mirror'", "'no/such/mirror'", "not a folder")


def test_missing_mirror_folder_from_the_environment(workdir, monkeypatch):
    monkeypatch.setenv("DLREPRO_DATA_MIRROR", str(workdir / "gone"))
    with pytest.raises(ConfigError) as err:
        validate_config(smoke_config(), check_paths=True)
    assert_one_line(str(err.value), "DLREPRO_DATA_MIRROR", str(workdir / "gone"), "not a folder")


def test_missing_geom_folder(workdir):
    cfg = dconfig._merge(smoke_config(), {"stages": ["conformers"],
                                          "conformers": {"source": "geom", "geom": {"rdkit_folder": "geom/rdkit_folder"}}})
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, check_paths=True)
    assert_one_line(str(err.value), "'conformers.geom.rdkit_folder'", "'geom/rdkit_folder'", "not a folder")
    (workdir / "geom" / "rdkit_folder").mkdir(parents=True)  # there, but not GEOM
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, check_paths=True)
    assert_one_line(str(err.value), "'conformers.geom.rdkit_folder'", "summary_drugs.json")
    (workdir / "geom" / "rdkit_folder" / "summary_drugs.json").write_text("{}")
    validate_config(cfg, check_paths=True)
    # with the conformers stage off, the folder is not read and not checked
    validate_config({**cfg, "stages": ["data"], "conformers": {**cfg["conformers"], "geom": {"rdkit_folder": "x"}}},
                    check_paths=True)


# --------------------------------------------------------------------------- command lines


@dataclass
class ArgCase:
    id: str
    argv: list[str]
    expected: list[str]
    files: dict[str, str] = field(default_factory=dict)  # name -> content, made in the workdir


ARG_CASES = [
    ArgCase("dotted-key", ["--config", "data.mirror=../shared/data"],
            ["'data.mirror=../shared/data'", "top-level", "--config 'data={mirror: ../shared/data}'"]),
    ArgCase("dotted-typo", ["--config", "collapse.generatons=3"], ["'collapse.generatons=3'", "collapse={generatons: 3}"]),
    ArgCase("no-equals", ["--config", "seed"], ["--config 'seed'", "KEY=VALUE"]),
    ArgCase("empty-key", ["--config", "=3"], ["--config '=3'", "KEY=VALUE"]),
    ArgCase("nested-typo", ["--config", "collapse={generatons: 3}"], ["'collapse.generatons'", "not a known key"]),
    ArgCase("nested-text", ["--config", "collapse={generations: many}"], ["'collapse.generations'", "'many'", "integer"]),
    ArgCase("nested-nan", ["--config", "collapse={optim: {lr: nan}}"], ["'collapse.optim.lr'", "nan", "finite"]),
    ArgCase("top-nan", ["--config", "seed=nan"], ["'seed'", "nan"]),
    ArgCase("top-inf-list", ["--config", "linreg={sigma: [1.0, inf]}"], ["'linreg.sigma[1]'", "inf"]),
    ArgCase("yaml-invalid", ["--configfile", "bad.yaml"], ["'bad.yaml'", "line 3", "not valid YAML"],
            {"bad.yaml": "collapse:\n  generations: 3\n   seeds: [0]\n"}),
    ArgCase("yaml-list", ["--configfile", "list.yaml"], ["'list.yaml'", "top level is a list"],
            {"list.yaml": "- collapse\n- vae\n"}),
    ArgCase("yaml-scalar", ["--configfile", "scalar.yaml"], ["'scalar.yaml'", "top level is a str"],
            {"scalar.yaml": "just text\n"}),
    ArgCase("yaml-empty", ["--configfile", "empty.yaml"], ["'empty.yaml'", "is empty"], {"empty.yaml": ""}),
    ArgCase("configfile-missing", ["--configfile", "nowhere.yaml"], ["'nowhere.yaml'", "no such file"]),
    ArgCase("configfile-bad-key", ["--configfile", "typo.yaml"], ["'vae.policies[0]'", "'keep-best'"],
            {"typo.yaml": "vae: {policies: [keep-best]}\n"}),
    ArgCase("second-configfile", ["--configfile", str(PRESETS / "smoke.yaml"), "gone.yaml"], ["'gone.yaml'", "no such file"]),
    ArgCase("mirror-missing", ["--config", "data={mirror: ../nowhere}"], ["'data.mirror'", "'../nowhere'", "not a folder"]),
]


@pytest.mark.parametrize("case", ARG_CASES, ids=[c.id for c in ARG_CASES])
def test_bad_command_line(case, workdir, capsys):
    for name, text in case.files.items():
        (workdir / name).write_text(text)
    status = dconfig.main(["--profile", "profiles/cpu", *case.argv])
    out = capsys.readouterr()
    assert status == 1 and out.out == ""
    assert out.err.startswith("invalid configuration: ")
    assert_one_line(out.err, *case.expected)


def test_the_command_line_forms_that_work(workdir):
    """The nested --config form and a dry run skip nothing a real run checks but folders."""
    cfg = check_snakemake_args(["--configfile", str(PRESETS / "smoke.yaml"), "--config",
                                "collapse={generations: 3, optim: {lr: 0.01}}", "seed=4", "stages=[data,linreg]"])
    assert cfg["collapse"]["generations"] == 3 and cfg["collapse"]["optim"]["lr"] == 0.01
    assert cfg["collapse"]["optim"]["batch_size"] == 16  # the preset's value, kept by the merge
    assert cfg["seed"] == 4 and cfg["stages"] == ["data", "linreg"]
    args = ["--config", "data={mirror: nowhere}"]
    with pytest.raises(ConfigError, match="not a folder"):
        check_snakemake_args(args)
    assert check_snakemake_args(["-n", *args])["data"]["mirror"] == "nowhere"


# --------------------------------------------------------------------------- python -m dlrepro


def run_command(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``python -m dlrepro ARGV`` in-process: its status and its error line (stderr
    without the progress log's timestamped lines, which a workflow job sends to its log)."""
    import re

    import logging

    from dlrepro.__main__ import run

    root = logging.getLogger("dlrepro")
    for handler in list(root.handlers):  # bound to an earlier test's captured stderr
        root.removeHandler(handler)
    status = run(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not re.match(r"\d\d:\d\d:\d\d \[", ln)]
    return status, "\n".join(lines)


CLI_CASES = [
    ("unknown-command", ["colapse"], ["'colapse'", "collapse"]),
    ("unknown-file", ["data", "download", "--dataset", "mnist", "--file", "nope.gz", "--out", "results/data/raw/x"],
     ["'nope.gz'", "'mnist'", "t10k-images-idx3-ubyte.gz"]),
    ("params-json", ["data", "prepare-text", "--dataset", "tinyshakespeare", "--raw-dir", "raw", "--params", "{bad",
                     "--out-dir", "results/data/x"], ["--params", "not valid JSON"]),
    ("params-nan", ["data", "prepare-text", "--dataset", "tinyshakespeare", "--raw-dir", "raw", "--params",
                    '{"val_fraction": NaN}', "--out-dir", "results/data/x"], ["--params.val_fraction", "nan", "finite"]),
    ("params-key", ["data", "prepare-images", "--dataset", "mnist", "--raw-dir", "raw", "--params",
                    '{"max_trains": 3}', "--out-dir", "results/data/x"], ["--params", "'max_trains'", "max_train"]),
    ("check-config", ["check-config", "--config", "seed=-2"], ["'seed'", "-2"]),
    ("init-name", ["init", "fluctuations", "--params", '{"inits": ["xavier"]}', "--out", "results/init/f.csv",
                  "--draws", "results/init/d.csv"],
     ["'xavier'", "gaussian"]),
    ("init-inf", ["init", "fluctuations", "--params", '{"c_w": Infinity}', "--out", "results/init/f.csv",
                  "--draws", "results/init/d.csv"],
     ["--params.c_w", "inf"]),
    ("width-key", ["width", "run", "--params", '{"stpes": 3}', "--model", "mlp", "--parametrization", "sp",
                   "--width", "8", "--arm", "online", "--data-dir", "d", "--out-dir", "results/w", "--ckpt-dir", "c"],
     ["--params", "'stpes'", "steps"]),
    ("linreg-T", ["linreg", "simulate", "--params", '{"d": [5], "T": [3]}', "--out", "results/linreg/s.csv"],
     ["T > d + 1", "d=5, T=3"]),
    ("vae-key", ["vae", "train", "--params", '{"latent": 3}', "--data-spec", "real", "--generation", "0", "--seed", "0",
                 "--ckpt-dir", "c", "--out-model", "results/m.pt", "--out-metrics", "results/m.json"],
     ["--params", "'latent'", "latent_dim"]),
    ("conformers-dir", ["conformers", "mix", "--policy", "replace", "--generation", "1", "--seed", "0",
                        "--real", "nowhere", "--out", "results/mix.json"], ["nowhere", "not a conformer set"]),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_package_command(argv, expected, workdir, capsys):
    status, err = run_command(argv, capsys)
    assert status != 0
    assert_one_line(err, *expected)


# --------------------------------------------------------------------------- mirror files


def _t10k(mirror: Path) -> bytes:
    return (mirror / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()


def _flip(b: bytes) -> bytes:
    out = bytearray(b)
    out[len(out) // 2] ^= 0xFF
    return bytes(out)


MIRROR_CASES = [
    ("flipped-byte", _flip),
    ("truncated", lambda b: b[: len(b) // 2]),
    ("empty", lambda b: b""),
    ("other-file", lambda b: gzip.compress(b"not mnist")),
]


@pytest.mark.parametrize("damage", [c[1] for c in MIRROR_CASES], ids=[c[0] for c in MIRROR_CASES])
def test_bad_mirror_file(damage, mirror, workdir, capsys):
    bad = workdir / "mirror" / "mnist"
    bad.mkdir(parents=True)
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(damage(_t10k(mirror)))
    out = "results/data/raw/mnist/t10k-labels-idx1-ubyte.gz"
    status, err = run_command(["data", "download", "--dataset", "mnist", "--file", "t10k-labels-idx1-ubyte.gz",
                               "--out", out, "--mirror", str(workdir / "mirror"), "--no-network"], capsys)
    assert status == 1
    assert_one_line(err, "checksum mismatch", str(bad / "t10k-labels-idx1-ubyte.gz"), "!= expected f7ae60f9",
                    "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz")


def test_file_the_mirror_lacks_offline(workdir, capsys):
    (workdir / "mirror").mkdir()
    status, err = run_command(["data", "download", "--dataset", "tinyshakespeare", "--file", "input.txt",
                               "--out", "results/data/raw/tinyshakespeare/input.txt",
                               "--mirror", str(workdir / "mirror"), "--no-network"], capsys)
    assert status == 1
    assert_one_line(err, "raw.githubusercontent.com", str(workdir / "mirror" / "tinyshakespeare" / "input.txt"))


def test_file_the_mirror_lacks_with_the_network_down(workdir, capsys, monkeypatch):
    """The paper preset's TinyStories without a network: its checksum is an LFS pointer."""
    def down(request, timeout):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr("urllib.request.urlopen", down)
    monkeypatch.setattr("time.sleep", lambda s: None)
    (workdir / "mirror").mkdir()
    name = "TinyStoriesV2-GPT4-valid.txt"
    status, err = run_command(["data", "download", "--dataset", "tinystories", "--file", name,
                               "--out", f"results/data/raw/tinystories/{name}",
                               "--mirror", str(workdir / "mirror"), "--retries", "1"], capsys)
    assert status == 1
    assert_one_line(err, f"https://huggingface.co/datasets/roneneldan/TinyStories/resolve/", name,
                    str(workdir / "mirror" / "tinystories" / name), "name resolution")


def test_lfs_pointer_in_the_mirror_verifies_offline(workdir):
    """Offline, a file whose checksum upstream publishes as a Git LFS pointer is verified
    against the pointer kept beside it in the mirror (and rejected if it does not match)."""
    import hashlib

    from dlrepro.data.download import DownloadError, fetch_file

    name, payload = "TinyStoriesV2-GPT4-valid.txt", b"Once upon a time.<|endoftext|>"
    folder = workdir / "mirror" / "tinystories"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(payload)
    with pytest.raises(DownloadError, match=r"LFS pointer at https://huggingface.co/.*put it at .*\.lfs-pointer"):
        fetch_file("tinystories", name, workdir / "x" / name, mirror=workdir / "mirror", allow_network=False)
    sha = hashlib.sha256(payload).hexdigest()
    (folder / f"{name}.lfs-pointer").write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize 30\n")
    got = fetch_file("tinystories", name, workdir / "x" / name, mirror=workdir / "mirror", allow_network=False)
    assert got.sha256 == sha and (workdir / "x" / name).read_bytes() == payload
    (folder / name).write_bytes(payload + b"!")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_file("tinystories", name, workdir / "y" / name, mirror=workdir / "mirror", allow_network=False)


# --------------------------------------------------------------------------- real snakemake


@dataclass
class SnakeCase:
    id: str
    args: list[str]
    expected: list[str]
    dry: bool = True
    files: dict[str, str] = field(default_factory=dict)


SMOKE = ["--configfile", str(PRESETS / "smoke.yaml")]
SNAKE_CASES = [
    SnakeCase("seed", ["--config", "seed=-3"], ["'seed'", "-3"]),
    SnakeCase("vae-policy", ["--config", "vae={policies: [replace, keep-best]}"], ["'vae.policies[1]'", "'keep-best'"]),
    SnakeCase("lr-nan", ["--config", "collapse={optim: {lr: nan}}"], ["'collapse.optim.lr'", "nan"]),
    SnakeCase("typo", ["--config", "collapse={generatons: 3}"], ["'collapse.generatons'", "not a known key"]),
    SnakeCase("init", ["--configfile", "over.yaml"], ["'init.fluctuations.inits[1]'", "'xavier'"],
              files={"over.yaml": "init: {fluctuations: {inits: [gaussian, xavier]}}\n"}),
    SnakeCase("width-arm", ["--configfile", "over.yaml"], ["'width.mlp.arms.online[0]'", "'spp'"],
              files={"over.yaml": "width: {mlp: {arms: {online: [spp]}}}\n"}),
    SnakeCase("llama", ["--configfile", "over.yaml"], ["'collapse.models.l.d_model'", "even"],
              files={"over.yaml": "collapse: {models: [{name: l, arch: llama, d_model: 36, n_head: 4}]}\n"}),
    SnakeCase("atoms", ["--config", "conformers={prepare: {min_heavy_atoms: 20, max_heavy_atoms: 10}}"],
              ["'conformers.prepare.min_heavy_atoms'", "20"]),
    SnakeCase("lm-width", ["--config", "width={lm: {widths: [32, 40]}}"], ["'width.lm.widths[1]'", "40"]),
    SnakeCase("offline-missing", ["--config", "data={allow_network: false, mirror: empty-mirror}"],
              ["mnist", "t10k-images-idx3-ubyte.gz", "https://ossci-datasets.s3.amazonaws.com/mnist/", "empty-mirror/mnist/"],
              files={"empty-mirror/README": "no data here\n"}),
    # checked when execution starts (a dry run shows the plan): real runs, stopped before any job
    SnakeCase("mirror-folder", ["--config", "data={mirror: no/such/folder}", "stages=[data]"],
              ["'data.mirror'", "'no/such/folder'"], dry=False),
    SnakeCase("geom-folder", ["--config", "conformers={source: geom, geom: {rdkit_folder: no/geom}}", "stages=[conformers]"],
              ["'conformers.geom.rdkit_folder'", "'no/geom'"], dry=False),
]


def _run_snake(case: SnakeCase, work: Path) -> subprocess.CompletedProcess:
    for name, text in case.files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(work), "--profile", str(ROOT / "profiles" / "cpu"),
           *SMOKE, *case.args, *(["-n"] if case.dry else [])]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def snake_results(tmp_path_factory):
    """Every SNAKE_CASES run, three at a time: (process, results/ before, results/ after)."""
    def one(case):
        work = tmp_path_factory.mktemp(case.id)
        (work / "results").mkdir()
        (work / "results" / "kept.txt").write_text("from an earlier run\n")
        before = snapshot(work / "results")
        proc = _run_snake(case, work)
        return proc, before, snapshot(work / "results")

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip([c.id for c in SNAKE_CASES], pool.map(one, SNAKE_CASES)))


@pytest.mark.parametrize("case", SNAKE_CASES, ids=[c.id for c in SNAKE_CASES])
def test_bad_input_through_snakemake(case, snake_results):
    proc, before, after = snake_results[case.id]
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-3000:]
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("invalid configuration: ")]
    assert len(lines) == 1, text[-3000:]
    assert_one_line(lines[0], *case.expected)
    assert after == before
    assert "Finished job" not in text  # no job ran (a real run's plan is printed first)


# --------------------------------------------------------------------------- README forms


def readme_override_commands() -> list[tuple[str, list[str]]]:
    """Every config-override command README.md and docs/ show: ``("make <target>", ARGS)`` for
    ``make run|smoke|report ARGS="..."``, ``("snakemake", args)`` for a snakemake line with
    ``--config``."""
    import re
    import shlex

    from dlrepro.report.docs import pages

    text = "\n".join(p.read_text() for p in pages(ROOT))
    forms = []
    for m in re.finditer(r'make (run|smoke|report) ARGS="((?:[^"\\]|\\.)*)"', text):
        forms.append((f"make {m.group(1)}", shlex.split(m.group(2))))
    for m in re.finditer(r"^(?:\.venv/bin/)?snakemake (.*?)(?:\s+#.*)?$", text, re.M):
        args = shlex.split(m.group(1).rstrip("\\"))
        if any(a.startswith("--config") for a in args) and "profiles/slurm" not in args:
            forms.append(("snakemake", args))
    return forms


def test_the_readme_shows_override_forms():
    forms = readme_override_commands()
    assert any(kind == "make run" and "--config" in args for kind, args in forms), forms
    assert any(kind == "snakemake" and "--config" in args for kind, args in forms), forms


def _make_commands(target: str, args: list[str]) -> list[str]:
    """The commands ``make <target> ARGS=...`` runs (``make -n``), without the set-up ones."""
    import shlex

    out = subprocess.run(["make", "-n", "-s", target, "ARGS=" + shlex.join(args)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [ln for ln in out.splitlines() if "check-config" in ln or "bin/snakemake" in ln]


@pytest.mark.slow
@pytest.mark.parametrize("kind, args", readme_override_commands(), ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_every_readme_override_form_works(kind, args, mirror, tmp_path, request):
    """Run from the repository root as the README says, with ``-n`` and results under a
    scratch folder: for a make form, the commands of the Makefile's recipe (its pre-flight
    check included), else the snakemake line and the pre-flight check of its arguments."""
    import shlex

    work = tmp_path / "work"
    work.mkdir()
    args = [a.replace("../shared/data", str(mirror)) for a in args]  # ../shared/data from the root
    if kind.startswith("make ") and shutil.which("make") and (ROOT / ".venv" / "bin" / "python").exists():
        commands = _make_commands(kind.split()[1], args)
        assert len(commands) == 2 and "check-config" in commands[0], commands
    else:
        commands = [shlex.join([sys.executable, "-m", "dlrepro", "check-config", *args]),
                    shlex.join([SNAKEMAKE, "--profile", "profiles/cpu", *args])]
    check = subprocess.run(commands[0], shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, (commands[0], check.stderr)
    if kind == "make report":  # a report needs a finished run: the shared smoke run's copy, for real
        from tests.conftest import copy_workdir

        done = copy_workdir(request.getfixturevalue("smoke_run"), tmp_path / "done")
        html = done / "results" / "report.html"
        cmd = commands[1].replace("--report results/report.html", f"--report {shlex.quote(str(html))}")
        proc = subprocess.run(f"{cmd} -d {shlex.quote(str(done))}", shell=True, cwd=ROOT, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0 and html.stat().st_size > 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return
    proc = subprocess.run(f"{commands[1]} -n -d {shlex.quote(str(work))}", shell=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "This was a dry-run" in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]  # --logger rich writes to stderr
    assert not (work / "results").exists()
