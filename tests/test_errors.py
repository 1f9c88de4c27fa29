"""The error rule (docs/developing.md, "Layers, imports and errors"): a user's mistake
(:class:`dlrepro.errors.UserError`) ends in one line and a non-zero exit; any other
exception (a programming error, however deep) keeps its traceback and a non-zero exit.
``tests/test_bad_input.py`` holds the table of user mistakes; this file holds the other
half of the rule."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dlrepro import errors
from dlrepro.commands import run
from tests.conftest import ROOT


def boom_deep_inside(*args, **kwargs):
    """A programming error three calls down, as a bug would raise it."""
    def lookup(table):
        return table["no such key"]

    def middle():
        return lookup({})

    return middle()


def test_a_key_error_from_a_bug_is_not_reported_as_bad_input(monkeypatch, capsys):
    import dlrepro.config as dconfig

    monkeypatch.setattr(dconfig, "validate_config", boom_deep_inside)
    with pytest.raises(KeyError, match="no such key"):
        run(["check-config", "--config", "seed=1"])
    assert "error" not in capsys.readouterr().err  # nothing printed as if the user erred


@pytest.mark.parametrize("exc", [ValueError("a bug's ValueError"), FileNotFoundError(2, "gone", "x.npy"),
                                 KeyError("k")], ids=["value", "file", "key"])
def test_non_user_errors_propagate_from_every_command(exc, monkeypatch):
    """Only UserError is caught, by every command (width's included)."""
    import dlrepro.linreg

    def fail(argv):
        raise exc

    monkeypatch.setattr(dlrepro.linreg, "main", fail)
    with pytest.raises(type(exc)):
        run(["linreg", "simulate"])


def test_a_user_error_is_one_line_and_status_1(monkeypatch, capsys):
    import dlrepro.linreg

    def fail(argv):
        raise errors.ParamsError("--params.d: 'x' is not an integer;\n  give one")

    monkeypatch.setattr(dlrepro.linreg, "main", fail)
    assert run(["linreg", "simulate"]) == 1
    err = capsys.readouterr().err
    assert err == "python -m dlrepro linreg: error: --params.d: 'x' is not an integer; give one\n"
    monkeypatch.setenv("DLREPRO_TRACEBACK", "1")  # where it was detected, on request
    with pytest.raises(errors.ParamsError):
        run(["linreg", "simulate"])


def test_user_errors_are_value_errors_and_named_by_kind():
    """Callers that caught ValueError from a validation still do; the subclasses say what
    was wrong (config, --params, a file); the data errors are user errors too."""
    from dlrepro.config import ConfigError
    from dlrepro.data.download import DownloadError
    from dlrepro.data.registry import UnknownName, get
    from dlrepro.data.text import DataError
    from dlrepro.scaling.sweeps import InputError
    from dlrepro.training import NonFiniteLossError

    assert ConfigError is errors.ConfigError
    for cls in (errors.ConfigError, errors.ParamsError, errors.InputFileError, DownloadError, DataError,
                UnknownName, InputError, NonFiniteLossError):
        assert issubclass(cls, errors.UserError) and issubclass(cls, ValueError), cls
    with pytest.raises(UnknownName) as info:  # still a KeyError for old callers, message unquoted
        get("imagenet")
    assert isinstance(info.value, KeyError) and str(info.value).startswith("unknown data set 'imagenet'")


def test_a_bug_shows_its_traceback_through_python_m_dlrepro(tmp_path):
    """The real entry point, in a child process: a KeyError raised deep inside a command
    prints its traceback (with the frame that raised it) and exits non-zero."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import dlrepro.config
        from tests.test_errors import boom_deep_inside
        dlrepro.config.validate_config = boom_deep_inside
        from dlrepro.__main__ import main
        sys.exit(main(["check-config", "--config", "seed=1"]))
    """)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "workflow")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "in lookup" in proc.stderr and "KeyError: 'no such key'" in proc.stderr


WIDTH_RUN = ["width", "run", "--params", "{}", "--model", "mlp", "--parametrization", "sp", "--width", "8",
             "--arm", "online", "--data-dir", "nowhere", "--out-dir", "cell", "--ckpt-dir", "ckpt"]


def value_error_deep_inside(*args, **kwargs):
    """A programming error's ValueError two calls down (as a bad int() or unpacking raises)."""
    def parse():
        return int("not a number")

    return parse()


def test_a_value_error_from_a_bug_in_the_width_command_is_not_bad_input(monkeypatch, capsys, tmp_path):
    """The width command reports only its UserErrors in one line (its bad data folder here);
    a ValueError from a bug inside its params checks propagates, printed as nothing else."""
    import dlrepro.width.params as wparams

    monkeypatch.chdir(tmp_path)
    assert run(WIDTH_RUN) == 1  # the data folder is bad input, found by the MNIST task
    assert capsys.readouterr().err.strip().endswith("MNIST folder nowhere lacks train_images.npy")
    monkeypatch.setattr(wparams, "is_int", value_error_deep_inside)
    with pytest.raises(ValueError, match="invalid literal for int"):
        run(WIDTH_RUN)
    assert "error" not in capsys.readouterr().err


def test_a_width_bug_shows_its_traceback_through_python_m_dlrepro(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import dlrepro.width.params
        from tests.test_errors import WIDTH_RUN, value_error_deep_inside
        dlrepro.width.params.is_int = value_error_deep_inside
        from dlrepro.__main__ import main
        sys.exit(main(WIDTH_RUN))
    """)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "workflow")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr and "in parse" in proc.stderr
    assert "ValueError: invalid literal for int()" in proc.stderr and "error:" not in proc.stderr


def test_the_scaling_scripts_report_only_user_errors(monkeypatch, capsys):
    """pyproject's `scaling` and `scaling-fit` scripts: a UserError is one line (status 2,
    as documented there), a bug keeps its traceback."""
    from dlrepro.scaling import cli

    def user(args):
        raise errors.ParamsError("bad --spec")

    monkeypatch.setattr(cli, "_run", user)
    assert cli.main(["plot", "--fits", "f", "--predictions", "p", "--out", "o"]) == 2
    assert capsys.readouterr().err == "scaling plot: error: bad --spec\n"
    monkeypatch.setattr(cli, "_run", boom_deep_inside)
    with pytest.raises(KeyError):
        cli.main(["plot", "--fits", "f", "--predictions", "p", "--out", "o"])
