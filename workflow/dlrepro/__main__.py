"""Command-line entry point: ``python -m dlrepro <command> [args]``.

Each command lives in its own module (:data:`dlrepro.commands.COMMANDS`), imported only when
it is run, so that a command which needs no torch starts in a fraction of a second. Where
``$DLREPRO_WARM_SOCKET`` names a running warm-start server (``dlrepro.warm``, started by
the Snakefile on local runs), the command runs in a child of that server, which has
imported torch and Lightning already; without one it runs here.

A user's mistake (:class:`dlrepro.errors.UserError`) ends in one line and exit status 1;
any other exception is a bug and keeps its traceback (``DLREPRO_TRACEBACK=1`` shows the
traceback of a user error too).
"""

from __future__ import annotations

import sys

from dlrepro.commands import COMMANDS, overview, run  # noqa: F401 (run: the in-process entry)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(overview())
        return 0
    if argv[0] in COMMANDS and argv[0] != "serve":
        from dlrepro.warm import run_via_server

        status = run_via_server(argv)
        if status is not None:
            return status
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
