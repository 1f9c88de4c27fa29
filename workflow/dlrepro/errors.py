"""The errors a user's input causes, and how the entry points report them.

Bad input (a config key, a ``--params`` JSON, a command-line option, a file the user
named or a mirror file) raises :class:`UserError` or one of its subclasses where it is
detected. The entry points (``python -m dlrepro``, the ``scaling`` scripts, the Snakefile's
configuration check) print those as one line and exit non-zero. Every other exception
is a bug or an environment failure: it keeps its traceback (and a non-zero exit), so a
``KeyError`` from a programming error never reads like a user's mistake.

``UserError`` subclasses ``ValueError``, so callers that caught ``ValueError`` from a
validation still do.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence


class UserError(ValueError):
    """Bad input from the user; the message is one line naming the key, option or file."""


class ConfigError(UserError):
    """A configuration key, file or command-line override (``--config``/``--configfile``)."""


class ParamsError(UserError):
    """A command's ``--params`` JSON or one of its values."""


class InputFileError(UserError):
    """A file or folder the user gave (or the workflow's earlier step left) cannot be used."""


def one_line(exc: BaseException) -> str:
    """The exception's message on one line."""
    return " ".join(str(exc).split())


def report_user_errors(prog: str, main: Callable[[list[str]], int | None], argv: Sequence[str],
                       status: int = 1) -> int:
    """Run ``main(argv)``; a :class:`UserError` is printed as ``PROG: error: MESSAGE`` on
    stderr and returns ``status``. Anything else propagates with its traceback.
    ``DLREPRO_TRACEBACK=1`` re-raises user errors too (to see where one was detected)."""
    try:
        return int(main(list(argv)) or 0)
    except UserError as exc:
        if os.environ.get("DLREPRO_TRACEBACK"):
            raise
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return status
