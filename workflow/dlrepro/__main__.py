"""Command-line entry point: ``python -m dlrepro <command> [args]``.

Each command lives in its own module, imported only when it is run, so that a
command which needs no torch starts in a fraction of a second. Where
``$DLREPRO_WARM_SOCKET`` names a running warm-start server (``dlrepro.warm``, started by
the Snakefile on local runs), the command runs in a child of that server, which has
imported torch and Lightning already; without one it runs here.
"""

from __future__ import annotations

import importlib
import sys

# command name -> module with a ``main(argv: list[str]) -> int``
COMMANDS: dict[str, str] = {
    "data": "dlrepro.data.cli",
    "linreg": "dlrepro.linreg",
    "init": "dlrepro.init.cli",
    "scaling": "dlrepro.scaling.cli",
    "collapse": "dlrepro.collapse.cli",
    "width": "dlrepro.width.cli",
    "vae": "dlrepro.vae.cli",
    "conformers": "dlrepro.conformers.cli",
    "report": "dlrepro.report.cli",
    "curves": "dlrepro.curves",
    "plan": "dlrepro.plan.cli",
    "serve": "dlrepro.warm",
    "check-config": "dlrepro.config",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: python -m dlrepro <command> [args]\n\ncommands:")
        for name in COMMANDS:
            print(f"  {name}")
        return 0
    if argv[0] in COMMANDS and argv[0] != "serve":
        from dlrepro.warm import run_via_server

        status = run_via_server(argv)
        if status is not None:
            return status
    return run(argv)


# What the commands raise for bad input (parameters, files, names): reported in one line,
# without a traceback (set DLREPRO_TRACEBACK=1 to see it).
INPUT_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                PermissionError)


def run(argv: list[str]) -> int:
    """Run the command ``argv`` in this process."""
    import os

    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dlrepro: unknown command {name!r}; known: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name])
    try:
        return int(module.main(rest) or 0)
    except INPUT_ERRORS as exc:
        if os.environ.get("DLREPRO_TRACEBACK"):
            raise
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"python -m dlrepro {name}: error: {' '.join(text.split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
