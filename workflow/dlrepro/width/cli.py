"""``python -m dlrepro width <subcommand>``: the width-variants stage.

Subcommands (every output is written atomically):

``run --params JSON --model {mlp,lm,cnn} --parametrization {sp,ntk,mup} --width W --arm {online,offline} --data-dir DIR --out-dir CELL --ckpt-dir DIR``
    Train one cell: all seeds x learning rates of one (model, parametrization, width,
    arm). ``--params`` is the model's ``train`` block (:class:`~dlrepro.width.params.MLPParams`
    or :class:`~dlrepro.width.params.LMParams` or :class:`~dlrepro.width.params.CNNParams`;
    unknown keys are an error). ``DIR`` is MNIST's folder (``mlp``), a text corpus folder
    (``lm``) or an image folder, MNIST or CIFAR-10 (``cnn``). Writes ``CELL/curves.csv``,
    ``CELL/lr_sweep.csv``, ``CELL/probe_logits.npy``, ``CELL/probe_labels.npy`` and
    ``CELL/meta.json`` (see :mod:`dlrepro.width.runs`). A killed job rerun with the same
    ``--ckpt-dir`` skips finished runs and resumes the interrupted one; the directory is
    removed once the outputs are written.
``coord-check --params JSON [--mnist-dir DIR] [--text-dir DIR] [--cnn-dir DIR] --out coord_check.csv``
    The coordinate check of every model in ``coord_check.models``; ``--params`` is the
    whole ``width`` block (:class:`~dlrepro.width.coord_check.StageParams`). Columns ``model,
    parametrization, width, seed, step, layer, rms, delta_rms``.
``merge --cells CELL... --out-dir DIR [--metric train_loss|test_loss]``
    ``DIR/curves.csv`` and ``DIR/lr_sweep.csv`` (the cells' tables concatenated) and
    ``DIR/lr_optimum.csv`` (the optimal learning rate per width, by ``--metric``).
``agreement --cells CELL... --out agreement.csv [--slopes-out variance_slopes.csv]``
    Agreement with the widest width and output variance over seeds, per eval step; the
    log-log slope of the variance vs width.
``ensembles --cells CELL... --out ensembles.csv``
    Probe loss and accuracy of ensembles of k = 1 .. n_seeds networks per width.
``plot --kind {curves,lr_sweep,coord_check,agreement,ensembles} --csv TABLE --out FIG [--model M] [--metric M]``
    One figure (PNG and PDF) from one table; ``--model`` picks the model of the
    coordinate-check figure, ``--metric`` the loss of the lr-sweep figure.

Column lists of every table: :mod:`dlrepro.width.runs`, :mod:`dlrepro.width.coord_check` and
:mod:`dlrepro.width.analysis`.

Bad input (``--params``, a width, a data folder, a cell or table file) raises
:class:`dlrepro.errors.UserError` where it is detected (``python -m dlrepro`` prints it in
one line); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from dlrepro.errors import InputFileError
from dlrepro.io import write_csv
from dlrepro.log import get_logger
from dlrepro.parametrization import PARAMETRIZATIONS
from dlrepro.width.params import ARMS, MODELS


def _json(text: str, where: str = "--params"):
    from dlrepro.cliutil import load_json

    return load_json(text, where)


def cmd_run(args) -> int:
    from dlrepro.width.params import train_params
    from dlrepro.width.runs import run_cell

    params = train_params(args.model, _json(args.params))
    run_cell(args.model, params, args.parametrization, args.width, args.arm,
             args.data_dir, args.out_dir, args.ckpt_dir)
    return 0


def cmd_coord_check(args) -> int:
    from dlrepro.width.coord_check import StageParams, run_coord_check

    stage = StageParams.from_dict(_json(args.params))
    get_logger("width", step="coord-check").info("models %s", stage.coord_check.models)
    table = run_coord_check(stage, {"mlp": args.mnist_dir, "lm": args.text_dir, "cnn": args.cnn_dir})
    write_csv(args.out, table)
    return 0


def cmd_merge(args) -> int:
    from dlrepro.width.analysis import lr_optimum, merge_tables

    out = Path(args.out_dir)
    write_csv(out / "curves.csv", merge_tables(args.cells, "curves.csv"))
    sweep = merge_tables(args.cells, "lr_sweep.csv")
    write_csv(out / "lr_sweep.csv", sweep)
    optimum = lr_optimum(sweep, args.metric)
    write_csv(out / "lr_optimum.csv", optimum)
    log = get_logger("width", step="merge")
    for r in optimum.itertuples(index=False):
        log.info("%s %s %s width %d: optimal lr 2^%.2f = %.3g (shift %+.2f)", r.model, r.arm,
                 r.parametrization, r.width, r.log2_lr_opt, 2.0 ** r.log2_lr_opt, r.log2_shift)
    return 0


def cmd_agreement(args) -> int:
    from dlrepro.width.analysis import agreement, variance_slopes

    table = agreement(args.cells)
    write_csv(args.out, table)
    slopes = variance_slopes(table, args.cells)
    if args.slopes_out:
        write_csv(args.slopes_out, slopes)
    log = get_logger("width", step="agreement")
    last = slopes[slopes["step"] == slopes.groupby(["model", "arm", "parametrization"])["step"].transform("max")]
    for r in last.itertuples(index=False):
        log.info("%s %s %s: output variance ~ width^%.2f at step %d", r.model, r.arm, r.parametrization,
                 r.slope, r.step)
    return 0


def cmd_ensembles(args) -> int:
    from dlrepro.width.analysis import ensembles

    write_csv(args.out, ensembles(args.cells))
    return 0


def read_table(path: str, kind: str, model: str | None = None) -> pd.DataFrame:
    """The ``--csv`` table of a figure of ``kind``: a user's file, checked here (a missing
    file, no rows, a missing column, no rows of ``model``: :class:`InputFileError`)."""
    from dlrepro.width.analysis import AGREEMENT_COLUMNS, ENSEMBLE_COLUMNS
    from dlrepro.width.coord_check import COORD_COLUMNS
    from dlrepro.width.runs import CURVE_COLUMNS, LR_SWEEP_COLUMNS

    columns = {"curves": CURVE_COLUMNS, "lr_sweep": LR_SWEEP_COLUMNS, "coord_check": COORD_COLUMNS,
               "agreement": AGREEMENT_COLUMNS, "ensembles": ENSEMBLE_COLUMNS}[kind]
    if not Path(path).is_file():
        raise InputFileError(f"--csv {path}: no such file")
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputFileError(f"--csv {path}: not a CSV table ({exc})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputFileError(f"--csv {path}: the {kind} table lacks columns {missing}")
    if table.empty:
        raise InputFileError(f"--csv {path}: the {kind} table is empty")
    if model is not None and model not in set(table["model"]):
        raise InputFileError(f"--csv {path}: no rows of model {model!r}; the table has "
                             f"{sorted(table['model'].unique())}")
    return table


def cmd_plot(args) -> int:
    from dlrepro.width import plots

    table = read_table(args.csv, args.kind, args.model if args.kind == "coord_check" else None)
    if args.kind == "coord_check":
        plots.plot_coord_check(table, args.out, model=args.model)
    elif args.kind == "lr_sweep":
        plots.plot_lr_sweep(table, args.out, metric=args.metric)
    else:
        plots.PLOTS[args.kind](table, args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dlrepro width", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train one (model, parametrization, width, arm) cell")
    p.add_argument("--params", required=True, help="JSON: the model's train block")
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--parametrization", required=True, choices=PARAMETRIZATIONS)
    p.add_argument("--width", required=True, type=int)
    p.add_argument("--arm", required=True, choices=ARMS)
    p.add_argument("--data-dir", required=True, help="MNIST folder (mlp), text corpus folder (lm), image folder (cnn)")
    p.add_argument("--out-dir", required=True, help="the cell's output folder")
    p.add_argument("--ckpt-dir", required=True, help="checkpoints (outside the declared outputs)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("coord-check", help="coordinate-check table")
    p.add_argument("--params", required=True, help="JSON: the whole width block")
    p.add_argument("--mnist-dir", default=None)
    p.add_argument("--text-dir", default=None)
    p.add_argument("--cnn-dir", default=None, help="the CNN's image folder (MNIST or CIFAR-10)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_coord_check)

    p = sub.add_parser("merge", help="curves.csv, lr_sweep.csv and lr_optimum.csv from the cells")
    p.add_argument("--cells", required=True, nargs="+")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--metric", default="train_loss", choices=["train_loss", "test_loss"])
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("agreement", help="agreement with the widest width, output variance")
    p.add_argument("--cells", required=True, nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--slopes-out", default=None)
    p.set_defaults(func=cmd_agreement)

    p = sub.add_parser("ensembles", help="loss of k-network ensembles per width")
    p.add_argument("--cells", required=True, nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_ensembles)

    p = sub.add_parser("plot", help="one figure from one table")
    p.add_argument("--kind", required=True, choices=["curves", "lr_sweep", "coord_check", "agreement", "ensembles"])
    p.add_argument("--csv", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="mlp", choices=MODELS, help="coord_check: the model to show")
    p.add_argument("--metric", default="train_loss", choices=["train_loss", "test_loss"],
                   help="lr_sweep: the loss to show")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
