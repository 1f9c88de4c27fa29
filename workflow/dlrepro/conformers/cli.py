"""``python -m dlrepro conformers <subcommand>``: model collapse of a conformer diffusion model.

Subcommands (every output written atomically; ``--params`` is a JSON object whose keys are
the fields of the subcommand's params dataclass; unknown keys are an error)::

    prepare    --params PrepareParams --smiles-csv CSV --out-dir DIR
               -> DIR/{train,test}/ conformer sets + DIR/manifest.json
    load-geom  --params GeomParams --src RDKIT_FOLDER --out-dir DIR     (same output)
    train      --params TrainParams --data-spec MIX.json|SET_DIR --ckpt-dir DIR
               --out-model MODEL.pt --out-metrics METRICS.json [--seed S]
    sample     --params SampleParams --model MODEL.pt --real-dir DIR --seed S --out-dir SET_DIR
               [--policy P --generation G]
               -> a synthetic set: for every training molecule as many conformers as it has
                  real ones (same graphs, same size as the real training set)
    mix        --policy P --generation G --seed S --real DIR --synthetic SET_DIR... --out MIX.json
    evaluate   --params EvalParams --model MODEL.pt --real-dir DIR --out EVAL.json
               [--policy P --generation G --seed S]
    baseline   --params EvalParams --real-dir DIR --out EVAL.json [--seed S]
               -> the RDKit ETKDGv3 row (policy rdkit-etkdg, method rdkit-etkdgv3), scored
                  by the same code on the same test molecules (dlrepro.conformers.baseline)
    summarize  --evals EVAL.json... --out summary.csv
    plot       --csv summary.csv --out FIG [--metrics test_loss,cov_r,mat_r]
    draw       --samples SET_DIR... --out FIG [--molecules N]

``DIR`` of ``--real-dir``/``--real`` is the output of ``prepare`` (its ``train``/``test``
subsets are used). Mixing items are **conformers**: pool sizes are conformer counts, and
the synthetic pool of generation g has exactly the real training set's molecules and
conformer counts. Generation 0 trains on ``--data-spec DIR/train`` and is evaluated with
``--policy real`` (it is the shared start of every policy's curve).

``summary.csv`` columns (one row per evaluated model, plus the RDKit baseline):
policy, generation, seed, n_train_conformers, test_loss, cov_r, mat_r, then method
(``egnn-diffusion`` | ``rdkit-etkdgv3``), cov_p, mat_p, bond_valid, bond_in_range,
mol_intact (``dlrepro.conformers.metrics``). The baseline row has policy ``rdkit-etkdg``,
generation 0, n_train_conformers 0 and an empty test_loss.

``EVAL.json`` keys: the summary columns plus test_loss_by_level ({noise level: loss}),
cov_r_median, mat_r_median, rmsd_threshold, n_eval_molecules, n_test_conformers and
per_molecule (mol_id, smiles, n_refs, n_generated, cov_r, mat_r, cov_p, mat_p, n_bonds,
n_bonds_valid, n_bonds_in_range, n_intact). A synthetic set's manifest.json holds the
same validity fractions of its conformers under ``validity``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import typing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dlrepro.conformers import require_positive_int
from dlrepro.conformers.dataset import ConformerSet, GeomParams, PrepareParams
from dlrepro.conformers.metrics import (
    ACCELERATORS,
    EvalParams,
    bond_ranges,
    device_for,
    evaluate,
    generated_counts,
    score,
    validity,
    validity_fractions,
)
from dlrepro.errors import InputFileError, ParamsError
from dlrepro.io import read_json, save_torch, sha256_file, write_csv, write_json
from dlrepro.log import get_logger

SUMMARY_COLUMNS = ["policy", "generation", "seed", "n_train_conformers", "test_loss", "cov_r", "mat_r",
                   "method", "cov_p", "mat_p", "bond_valid", "bond_in_range", "mol_intact"]
MODEL_METHOD, BASELINE_METHOD, BASELINE_POLICY = "egnn-diffusion", "rdkit-etkdgv3", "rdkit-etkdg"


# ----------------------------------------------------------------------------- params


@dataclass
class SampleParams:
    """``conformers.sample``."""

    batch_size: int = 64
    accelerator: str = "auto"
    num_threads: int | None = None  # torch CPU threads (1 is fastest for small molecules)

    def __post_init__(self) -> None:
        require_positive_int(self, "batch_size")
        if self.accelerator not in ACCELERATORS:
            raise ParamsError(f"SampleParams.accelerator must be one of {ACCELERATORS}, got {self.accelerator!r}")


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from ``data``; nested dataclass fields from nested dicts.

    Unknown keys raise ``ValueError`` naming the key (with its path) and the known ones.
    """
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ParamsError(f"{where} must be a JSON object, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ParamsError(f"unknown key {where}.{unknown[0]} (known: {known})")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        kwargs[name] = from_dict(hint, value, f"{where}.{name}") if dataclasses.is_dataclass(hint) else value
    return cls(**kwargs)


def parse_params(cls, text: str):
    from dlrepro.cliutil import load_json

    return from_dict(cls, load_json(text))


# ----------------------------------------------------------------------------- helpers


def real_split(path: str | Path, split: str) -> ConformerSet:
    """``split`` ('train' | 'test') of a ``prepare`` output dir, or ``path`` itself if it is a set."""
    path = Path(path)
    return ConformerSet(path / split if (path / split / "manifest.json").is_file() else path)


def run_tag(args) -> dict:
    """The log context of a run: policy, generation and seed where given."""
    pairs = (("policy", getattr(args, "policy", None)), ("gen", getattr(args, "generation", None)),
             ("seed", getattr(args, "seed", None)))
    return {k: v for k, v in pairs if v is not None}


def load_model(path: str | Path, device: str = "cpu", num_threads: int | None = None):
    """``(net, diffusion, payload)`` from a ``train`` output."""
    import torch

    from dlrepro.cpu import configure

    configure(num_threads)
    from dlrepro.conformers.diffusion import Diffusion, DiffusionConfig
    from dlrepro.conformers.egnn import EGNN, EGNNConfig

    from dlrepro.training import configure_allocator

    configure_allocator()  # sampling allocates per step as training does (~30% system time without)
    payload = torch.load(path, map_location="cpu", weights_only=False)
    net = EGNN(EGNNConfig(**payload["model"]))
    net.load_state_dict(payload["state_dict"])
    return net.to(device).eval(), Diffusion(DiffusionConfig(**payload["diffusion"])), payload


# ----------------------------------------------------------------------------- commands


def cmd_prepare(args) -> int:
    from dlrepro.conformers.dataset import prepare_real

    prepare_real(parse_params(PrepareParams, args.params), args.smiles_csv, args.out_dir)
    return 0


def cmd_load_geom(args) -> int:
    from dlrepro.conformers.dataset import load_geom

    load_geom(parse_params(GeomParams, args.params), args.src, args.out_dir)
    return 0


def cmd_train(args) -> int:
    import torch

    from dlrepro.conformers.dataset import ConformerPool, read_mix
    from dlrepro.conformers.module import ConformerDiffusion, TrainParams
    from dlrepro.training import StepBatches, TrainSettings, fit, steps_for

    params = parse_params(TrainParams, args.params)
    spec = Path(args.data_spec)
    pool = read_mix(spec) if spec.is_file() else ConformerPool.whole(ConformerSet(spec))
    budget = {"epochs": params.epochs} if params.max_steps is None else {"max_steps": params.max_steps}
    settings = TrainSettings.from_dict(params.compute, seed=args.seed, **budget)
    total = steps_for(settings, len(pool), params.batch_size)
    torch.manual_seed(args.seed)  # the initial weights (the harness seeds every step)
    module = ConformerDiffusion(params.model, params.diffusion, params.lr, params.weight_decay,
                                params.warmup_steps, total)
    batches = StepBatches(len(pool), params.batch_size, total, args.seed, pool.collate)
    tag = run_tag(args)
    get_logger("conformers.train", **tag).info(
        "%d conformers from %s, %d steps", len(pool), spec, total)
    history = fit(module, batches, settings, args.ckpt_dir, stage="conformers.train", tag=tag)
    payload = {
        "model": asdict(params.model),
        "diffusion": asdict(params.diffusion),
        "state_dict": module.net.state_dict(),
        "n_train_conformers": len(pool),
        "data_spec": str(spec),
        "seed": args.seed,
    }
    save_torch(args.out_model, payload)
    losses = [r["train_loss"] for r in history.rows if "train_loss" in r]
    write_json(args.out_metrics, {
        "n_train_conformers": len(pool),
        "sources": {s: int(np.sum(pool.which == i)) for i, s in enumerate(pool.sources)},
        "steps": total,
        "final_train_loss": losses[-1] if losses else None,
        "history": history.rows,
        "params": asdict(params),
    })
    shutil.rmtree(args.ckpt_dir, ignore_errors=True)
    return 0


def cmd_sample(args) -> int:
    from dlrepro.conformers.dataset import Molecule, write_set
    from dlrepro.conformers.diffusion import generate

    params = parse_params(SampleParams, args.params)
    log = get_logger("conformers.sample", **run_tag(args))
    real = real_split(args.real_dir, "train")
    device = device_for(params.accelerator)
    net, diffusion, _ = load_model(args.model, device, params.num_threads)
    counts = real.molecules["n_conformers"].to_numpy()
    graphs = [real.graph(m) for m in range(real.n_molecules) for _ in range(counts[m])]
    log.info("sampling %d conformers of %d molecules (%d steps)", len(graphs), real.n_molecules,
             diffusion.steps)
    coords = generate(net, diffusion, graphs, args.seed, params.batch_size, device, log)
    templates = real.templates()
    starts = np.concatenate([[0], np.cumsum(counts)])
    molecules = [Molecule(real.molecules.smiles[m], templates[m], np.stack(coords[starts[m]:starts[m + 1]]))
                 for m in range(real.n_molecules)]
    label = "real" if args.generation is None else f"{args.policy or ''} gen {args.generation}".strip()
    ranges = bond_ranges(real)
    valid = validity_fractions([
        validity(real.molecule_atoms(m), real.molecule_bonds(m), molecules[m].coords, ranges,
                 EvalParams.bond_tolerance, EvalParams.max_bond_length) for m in range(real.n_molecules)])
    log.info("bonds valid %.3f, in 1-2 A %.3f; molecules intact %.3f", valid["bond_valid"],
             valid["bond_in_range"], valid["mol_intact"])
    write_set(args.out_dir, molecules, {
        "source": {"model": str(args.model), "model_sha256": sha256_file(args.model),
                   "real_dir": str(real.path)},
        "method": f"reverse diffusion, {diffusion.steps} steps",
        "policy": args.policy, "generation": args.generation, "seed": args.seed,
        "label": label, "params": asdict(params),
        "validity": {**valid, "bond_tolerance": EvalParams.bond_tolerance,
                     "max_bond_length": EvalParams.max_bond_length},
    })
    log.info("wrote %s", args.out_dir)
    return 0


def cmd_mix(args) -> int:
    from dlrepro import policies

    real = real_split(args.real, "train")
    if len(args.synthetic) != args.generation:
        raise InputFileError(f"generation {args.generation} needs {args.generation} synthetic sets "
                         f"(synthetic_1..synthetic_{args.generation}), got {len(args.synthetic)}")
    dirs = {"real": real.path} | {policies.pool_name(k + 1): Path(d) for k, d in enumerate(args.synthetic)}
    sets = {name: ConformerSet(d) for name, d in dirs.items()}
    for name, s in sets.items():
        if name != "real" and s.n_molecules != real.n_molecules:
            raise InputFileError(f"{name} ({s.path}) has {s.n_molecules} molecules, the real set {real.n_molecules}")
    shares = policies.mix(args.policy, {n: s.n_conformers for n, s in sets.items()}, args.generation, args.seed)
    spec = {
        "policy": args.policy, "generation": args.generation, "seed": args.seed,
        **policies.manifest(shares),
        "shares": [{"source": s.source, "dir": str(dirs[s.source]), "count": s.size,
                    "indices": s.indices.tolist()} for s in shares],
    }
    write_json(args.out, spec)
    get_logger("conformers.mix", **run_tag(args)).info(
        "%d conformers: %s", spec["total"], {s.source: s.size for s in shares})
    return 0


def cmd_evaluate(args) -> int:
    params = parse_params(EvalParams, args.params)
    log = get_logger("conformers.evaluate", **run_tag(args))
    net, diffusion, payload = load_model(args.model, device_for(params.accelerator), params.num_threads)
    ranges = bond_ranges(real_split(args.real_dir, "train"))
    result = evaluate(params, net, diffusion, real_split(args.real_dir, "test"), ranges, log)
    write_json(args.out, {"policy": args.policy, "generation": args.generation, "seed": args.seed,
                          "n_train_conformers": payload["n_train_conformers"], "method": MODEL_METHOD,
                          **result, "params": asdict(params)})
    return 0


def cmd_baseline(args) -> int:
    from dlrepro.conformers.baseline import baseline_generated

    params = parse_params(EvalParams, args.params)
    log = get_logger("conformers.baseline", seed=args.seed)
    test = real_split(args.real_dir, "test")
    generated, failed = baseline_generated(test, generated_counts(test, params), args.seed, log)
    result = score(params, test, generated, bond_ranges(real_split(args.real_dir, "train")), log)
    write_json(args.out, {"policy": BASELINE_POLICY, "generation": 0, "seed": args.seed,
                          "n_train_conformers": 0, "test_loss": None, "method": BASELINE_METHOD,
                          **result, "n_embed_failed": failed, "params": asdict(params)})
    return 0


def cmd_summarize(args) -> int:
    import pandas as pd

    rows = []
    for path in args.evals:
        ev = read_json(path)
        missing = [c for c in SUMMARY_COLUMNS if c not in ev or (ev[c] is None and c != "test_loss")]
        if missing:
            raise InputFileError(f"{path} lacks {missing}; evaluate with --policy/--generation/--seed")
        rows.append({c: ev[c] for c in SUMMARY_COLUMNS})
    df = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).sort_values(["policy", "generation", "seed"])
    write_csv(args.out, df)
    return 0


def cmd_plot(args) -> int:
    import pandas as pd

    from dlrepro.conformers.plots import plot_summary

    plot_summary(pd.read_csv(args.csv), args.out, [m for m in args.metrics.split(",") if m])
    return 0


def cmd_draw(args) -> int:
    from dlrepro.conformers.plots import draw_conformers

    draw_conformers([ConformerSet(d) for d in args.samples], args.out, args.molecules)
    return 0


# ----------------------------------------------------------------------------- argparse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dlrepro conformers", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("prepare", cmd_prepare, "RDKit conformers of SMILES, split by molecule")
    sp.add_argument("--params", default="{}")
    sp.add_argument("--smiles-csv", required=True)
    sp.add_argument("--out-dir", required=True)

    sp = add("load-geom", cmd_load_geom, "GEOM-Drugs (raw rdkit_folder release) in the same format")
    sp.add_argument("--params", default="{}")
    sp.add_argument("--src", required=True)
    sp.add_argument("--out-dir", required=True)

    sp = add("train", cmd_train, "train one generation from scratch")
    sp.add_argument("--params", default="{}")
    sp.add_argument("--data-spec", required=True, help="mix JSON or a conformer-set directory")
    sp.add_argument("--ckpt-dir", required=True)
    sp.add_argument("--out-model", required=True)
    sp.add_argument("--out-metrics", required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--policy")
    sp.add_argument("--generation", type=int)

    sp = add("sample", cmd_sample, "the synthetic set: real training graphs, sampled coordinates")
    sp.add_argument("--params", default="{}")
    sp.add_argument("--model", required=True)
    sp.add_argument("--real-dir", required=True)
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--out-dir", required=True)
    sp.add_argument("--policy")
    sp.add_argument("--generation", type=int)

    sp = add("mix", cmd_mix, "mix real and synthetic conformers by a dlrepro.policies policy")
    sp.add_argument("--policy", required=True)
    sp.add_argument("--generation", type=int, required=True)
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--real", required=True)
    sp.add_argument("--synthetic", nargs="*", default=[])
    sp.add_argument("--out", required=True)

    sp = add("evaluate", cmd_evaluate, "fixed-noise test loss and COV-R/MAT-R on held-out molecules")
    sp.add_argument("--params", default="{}")
    sp.add_argument("--model", required=True)
    sp.add_argument("--real-dir", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--policy")
    sp.add_argument("--generation", type=int)
    sp.add_argument("--seed", type=int)

    sp = add("baseline", cmd_baseline, "the RDKit ETKDGv3 row: same test molecules, same metrics")
    sp.add_argument("--params", default="{}")
    sp.add_argument("--real-dir", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--seed", type=int, default=0)

    sp = add("summarize", cmd_summarize, "summary.csv from evaluation JSONs")
    sp.add_argument("--evals", nargs="+", required=True)
    sp.add_argument("--out", required=True)

    sp = add("plot", cmd_plot, "metrics vs generation per policy, from summary.csv")
    sp.add_argument("--csv", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--metrics", default="test_loss,cov_r,mat_r")

    sp = add("draw", cmd_draw, "2-D projections of a few conformers of each set")
    sp.add_argument("--samples", nargs="+", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--molecules", type=int, default=4)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args) or 0)
