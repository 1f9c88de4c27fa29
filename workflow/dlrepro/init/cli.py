"""``python -m dlrepro init <subcommand>``: the init-variants stage.

Subcommands (tables are tidy CSV; columns in the modules' docstrings):

* ``fluctuations --params JSON --out CSV``   kernel fluctuations per layer (+ theory)
* ``ntk --params JSON --out CSV``            NTK mean and normalised variance vs depth
* ``train --params JSON --data-dir DIR --out CSV``  full-batch GD curves and NTK change
* ``slopes --fluctuations CSV [--ntk CSV] --out CSV [--fit-from F]``
  fitted slopes vs depth beside the theory's
* ``plot --kind {fluctuations,ntk,training} --csv CSV --out FIGPATH``
  figure (PNG + PDF) from one table
"""

from __future__ import annotations

import argparse
import sys


def params_from_json(cls, text: str):
    """Build the params dataclass ``cls`` from a JSON object; unknown keys are an error."""
    from dlrepro.cliutil import parse_params

    return parse_params(text, cls)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dlrepro init", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("fluctuations", "kernel fluctuations per layer over many initialisations"),
        ("ntk", "empirical NTK mean and normalised variance versus depth"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--params", required=True, help="JSON object of the stage's config")
        p.add_argument("--out", required=True, help="output CSV")
    p = sub.add_parser("train", help="full-batch gradient descent for both inits")
    p.add_argument("--params", required=True, help="JSON object of the stage's config")
    p.add_argument("--data-dir", required=True, help="folder with {train,test}_{images,labels}.npy")
    p.add_argument("--out", required=True, help="output CSV")
    p = sub.add_parser("slopes", help="fitted slopes versus depth beside the theory's")
    p.add_argument("--fluctuations", required=True, help="fluctuations.csv")
    p.add_argument("--ntk", help="ntk.csv (optional)")
    p.add_argument("--fit-from", type=float, default=0.5, help="fit depths >= this fraction of the largest")
    p.add_argument("--out", required=True, help="output CSV")
    p = sub.add_parser("plot", help="figure from a table")
    p.add_argument("--kind", required=True, choices=["fluctuations", "ntk", "training"])
    p.add_argument("--csv", required=True, help="the table to plot")
    p.add_argument("--out", required=True, help="figure path (PNG and PDF are written)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from dlrepro.io import write_csv

    if args.command == "fluctuations":
        from dlrepro.init.fluctuations import FluctuationParams, run_fluctuations

        write_csv(args.out, run_fluctuations(params_from_json(FluctuationParams, args.params)))
    elif args.command == "ntk":
        from dlrepro.init.ntk import NTKParams, run_ntk

        write_csv(args.out, run_ntk(params_from_json(NTKParams, args.params)))
    elif args.command == "train":
        from dlrepro.init.training import TrainParams, run_training

        write_csv(args.out, run_training(params_from_json(TrainParams, args.params), args.data_dir))
    elif args.command == "slopes":
        import pandas as pd

        from dlrepro.init.fluctuations import fit_slopes

        ntk = pd.read_csv(args.ntk) if args.ntk else None
        write_csv(args.out, fit_slopes(pd.read_csv(args.fluctuations), ntk, args.fit_from))
    elif args.command == "plot":
        import pandas as pd

        from dlrepro.init.plots import PLOTTERS

        PLOTTERS[args.kind](pd.read_csv(args.csv), args.out)
    return 0
