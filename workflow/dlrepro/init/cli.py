"""``python -m dlrepro init <subcommand>``: the init-variants stage.

Subcommands (tables are tidy CSV; columns in the modules' docstrings and the README):

* ``fluctuations --params JSON --out CSV --draws CSV``   kernel fluctuations per layer
  (+ theory) and the per-draw kernels
* ``ntk --params JSON --out CSV --draws CSV``     NTK mean and normalised variance vs depth,
  and the per-draw NTK
* ``width-sweep --params JSON --out CSV``         Gaussian depth slope versus width
* ``analyse --fluctuations CSV --fluctuation-draws CSV [--ntk-draws CSV] --params JSON
  --slopes CSV --shapes CSV``   depth slopes and curve shapes with intervals over draws
* ``train --params JSON --data-dir DIR --out CSV [--init NAME --depth-ratio R]``
  full-batch GD over a learning-rate grid and seeds
* ``compare --training CSV [CSV ...] --params JSON --out-training CSV --out CSV``
  merge training tables; orthogonal-minus-Gaussian differences over seeds
* ``plot --kind {fluctuations,ntk,training} --csv CSV [--shapes CSV] [--width-sweep CSV]
  [--comparison CSV] --out FIGPATH``   figure (PNG + PDF) from the tables
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dlrepro.errors import ParamsError


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
        p.add_argument("--out", required=True, help="output CSV (summary per depth)")
        p.add_argument("--draws", required=True, help="output CSV (one row per draw and depth)")
    p = sub.add_parser("width-sweep", help="Gaussian depth slope versus width")
    p.add_argument("--params", required=True, help="JSON object of the stage's config")
    p.add_argument("--out", required=True, help="output CSV")
    p = sub.add_parser("analyse", help="depth slopes and curve shapes with intervals over draws")
    p.add_argument("--fluctuations", required=True, help="fluctuations.csv (for the theory slope)")
    p.add_argument("--fluctuation-draws", required=True, help="fluctuation_draws.csv")
    p.add_argument("--ntk-draws", help="ntk_draws.csv (optional)")
    p.add_argument("--params", default="{}", help='JSON {"fit_from", "n_resamples", "seed"}')
    p.add_argument("--slopes", required=True, help="output slopes.csv")
    p.add_argument("--shapes", required=True, help="output shapes.csv")
    p = sub.add_parser("train", help="full-batch gradient descent over a learning-rate grid and seeds")
    p.add_argument("--params", required=True, help="JSON object of the stage's config")
    p.add_argument("--data-dir", required=True, help="folder with {train,test}_{images,labels}.npy")
    p.add_argument("--init", help="only this init (default: all in the config)")
    p.add_argument("--depth-ratio", type=float, help="only this depth ratio (default: all in the config)")
    p.add_argument("--out", required=True, help="output CSV")
    p = sub.add_parser("compare", help="merge training tables and compare the inits over seeds")
    p.add_argument("--training", nargs="+", required=True, help="training tables to merge")
    p.add_argument("--params", required=True, help="JSON object of the training config")
    p.add_argument("--out-training", required=True, help="merged training.csv")
    p.add_argument("--out", required=True, help="training_comparison.csv")
    p = sub.add_parser("plot", help="figure from the tables")
    p.add_argument("--kind", required=True, choices=["fluctuations", "ntk", "training"])
    p.add_argument("--csv", required=True, help="the main table to plot")
    p.add_argument("--shapes", help="shapes.csv (marks peaks; fluctuations and ntk)")
    p.add_argument("--width-sweep", help="width_sweep.csv (fluctuations: slope-vs-width panel)")
    p.add_argument("--comparison", help="training_comparison.csv (training: summary panel)")
    p.add_argument("--out", required=True, help="figure path (PNG and PDF are written)")
    return parser


@dataclasses.dataclass
class AnalysisParams:
    """Config of ``init analyse`` (``config['init']['analysis']`` plus the seed)."""

    fit_from: float = 0.5
    n_resamples: int = 1000
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.fit_from < 1:
            raise ParamsError(f"fit_from must be in [0, 1), got {self.fit_from!r}")
        if not (isinstance(self.n_resamples, int) and self.n_resamples >= 10):
            raise ParamsError(f"n_resamples must be an integer >= 10, got {self.n_resamples!r}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from dlrepro.io import write_csv

    if args.command == "fluctuations":
        from dlrepro.init.fluctuations import FluctuationParams, run_fluctuations

        table, draws = run_fluctuations(params_from_json(FluctuationParams, args.params))
        write_csv(args.draws, draws)
        write_csv(args.out, table)
    elif args.command == "ntk":
        from dlrepro.init.ntk import NTKParams, run_ntk

        table, draws = run_ntk(params_from_json(NTKParams, args.params))
        write_csv(args.draws, draws)
        write_csv(args.out, table)
    elif args.command == "width-sweep":
        from dlrepro.init.sweep import WidthSweepParams, run_width_sweep

        write_csv(args.out, run_width_sweep(params_from_json(WidthSweepParams, args.params)))
    elif args.command == "analyse":
        import pandas as pd

        from dlrepro.init.curves import curve_shapes, draw_groups, fit_slopes
        from dlrepro.init.fluctuations import asymptotic_slope

        params = params_from_json(AnalysisParams, args.params)
        fluct_draws = pd.read_csv(args.fluctuation_draws)
        ntk_draws = pd.read_csv(args.ntk_draws) if args.ntk_draws else None
        theory = pd.read_csv(args.fluctuations)
        slopes = fit_slopes(draw_groups(fluct_draws, ntk_draws), theory, params.fit_from, params.n_resamples,
                            params.seed, asymptotic_slope)
        shapes = curve_shapes(draw_groups(fluct_draws, ntk_draws), params.fit_from, params.n_resamples, params.seed)
        write_csv(args.slopes, slopes)
        write_csv(args.shapes, shapes)
    elif args.command == "train":
        from dlrepro.init.training import TrainParams, run_training

        params = params_from_json(TrainParams, args.params)
        inits = [args.init] if args.init else None
        ratios = [args.depth_ratio] if args.depth_ratio is not None else None
        write_csv(args.out, run_training(params, args.data_dir, inits, ratios))
    elif args.command == "compare":
        import pandas as pd

        from dlrepro.init.training import TRAINING_COLUMNS, TrainParams, compare_inits

        params = params_from_json(TrainParams, args.params)
        table = pd.concat([pd.read_csv(path) for path in args.training], ignore_index=True)[TRAINING_COLUMNS]
        table = table.sort_values(["depth_ratio", "init", "seed", "lr", "step"], kind="stable")
        table = table.reset_index(drop=True)
        write_csv(args.out_training, table)
        write_csv(args.out, compare_inits(table, params.n_resamples, params.seeds[0], reference=params.inits[0]))
    elif args.command == "plot":
        import pandas as pd

        from dlrepro.init.plots import PLOTTERS

        extra = {key: pd.read_csv(path) for key, path in (("shapes", args.shapes), ("width_sweep", args.width_sweep),
                                                          ("comparison", args.comparison)) if path}
        PLOTTERS[args.kind](pd.read_csv(args.csv), args.out, **extra)
    return 0
