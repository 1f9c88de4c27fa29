"""The commands of ``python -m dlrepro``: the table, the overview ``--help`` prints, and
running one command in this process.

Kept apart from :mod:`dlrepro.__main__` so that the warm-start server
(:mod:`dlrepro.warm`), which runs commands in its children, and the entry point, which
hands commands to that server, both import it and neither imports the other.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from dlrepro.errors import report_user_errors

PROG = "python -m dlrepro"


@dataclass(frozen=True)
class Command:
    module: str  # has ``main(argv: list[str]) -> int``
    summary: str  # one line for the overview
    internal: bool = False  # run by the workflow's rules (or the Snakefile), not typed by a user


COMMANDS: dict[str, Command] = {
    # what a user runs
    "plan": Command("dlrepro.plan.cli", "what a configuration costs (jobs, GPU-hours, memory) before it is run"),
    "check-config": Command("dlrepro.config", "check a snakemake command line's configuration; one line if invalid"),
    "scaling": Command("dlrepro.scaling.cli", "fit scaling laws with bootstrap CIs to a CSV, and plot them"),
    "report": Command("dlrepro.report.cli", "results/summary.md, results/claims.csv and the README's results"),
    # what the workflow's rules run
    "data": Command("dlrepro.data.cli", "download and prepare the data sets", internal=True),
    "linreg": Command("dlrepro.linreg", "linear-regression model collapse: simulate, check, plot", internal=True),
    "init": Command("dlrepro.init.cli", "the init-variants stage", internal=True),
    "collapse": Command("dlrepro.collapse.cli", "the language-model model-collapse stage", internal=True),
    "width": Command("dlrepro.width.cli", "the width-variants stage (SP, NTK, muP)", internal=True),
    "vae": Command("dlrepro.vae.cli", "model collapse of a VAE on MNIST", internal=True),
    "conformers": Command("dlrepro.conformers.cli", "model collapse of a conformer diffusion model", internal=True),
    "curves": Command("dlrepro.curves", "training curves of every job as one table, and their figure",
                      internal=True),
    "serve": Command("dlrepro.warm", "the warm-start server of a local run (started by the Snakefile)",
                     internal=True),
}


def overview() -> str:
    """What ``python -m dlrepro --help`` prints: one line per command, a user's first."""
    width = max(map(len, COMMANDS)) + 2
    lines = [f"usage: {PROG} <command> [args]", "",
             f"'{PROG} <command> --help' shows a command's usage and options.", "", "commands:"]
    lines += [f"  {name:<{width}}{c.summary}" for name, c in COMMANDS.items() if not c.internal]
    lines += ["", "internal commands (run by the workflow's rules; for developing and debugging a stage):"]
    lines += [f"  {name:<{width}}{c.summary}" for name, c in COMMANDS.items() if c.internal]
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    """Run the command ``argv`` in this process. A :class:`dlrepro.errors.UserError` ends in
    one line on stderr and status 1; any other exception keeps its traceback."""
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dlrepro: unknown command {name!r}; known: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    main = importlib.import_module(COMMANDS[name].module).main
    return report_user_errors(f"{PROG} {name}", main, rest)

