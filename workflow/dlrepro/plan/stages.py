"""The jobs of each stage of a configuration, with their estimates.

:func:`plan_jobs` walks the stages the way their rule files do (``workflow/rules/*.smk``:
the same wildcards, so the same jobs; ``tests/test_plan.py`` compares the counts with
``snakemake -n``) and returns one :class:`~dlrepro.plan.jobs.Job` per job. Training,
sampling and evaluation jobs get FLOPs, time, memory and disk estimates from
:mod:`dlrepro.plan.costs`; the light bookkeeping jobs (mixing, tables, figures) are
counted, with their estimates left blank.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from dlrepro.data.needed import datasets_needed
from dlrepro.plan.costs import (Accelerator, ConvVAEShape, EGNNShape, MLPShape, SmallCNNShape, TransformerShape,
                                WidthCNNShape)
from dlrepro.plan.figures import TEXT_FIGURES, image_data, image_raw_bytes, molecule_data, text_data
from dlrepro.plan.jobs import (
    RMSD_PER_S,
    STARTUP_S,
    TOKENIZE_BYTES_PER_S,
    Context,
    Job,
    wildcard_text,
    lm_eval_job,
    lm_sample_job,
    lm_train_job,
    transformer_shape,
)


# --------------------------------------------------------------------------- stages


def data_jobs(ctx: Context) -> Iterator[Job]:
    cfg = ctx.cfg
    stages = set(cfg["stages"])
    needed = datasets_needed(cfg) - {"moses"}  # what the stages read (the Snakefile's DATA_NEEDED)
    conf_moses = "conformers" in stages and cfg["conformers"]["source"] == "moses"
    files = {"tinyshakespeare": 1, "tinystories": 2, "cifar10": 1, "moses": 1,
             "mnist": 2 if cfg["data"]["images"]["mnist_source"] == "test-file" else 4}
    text_cfg, img_cfg = cfg["data"]["text"], cfg["data"]["images"]
    for ds in sorted(needed | ({"moses"} if conf_moses else set())):
        for i in range(files[ds]):
            j = ctx.job("data", "download", wildcard_text(dataset=ds, file=i + 1))
            if ds in TEXT_FIGURES:
                j.disk_bytes = TEXT_FIGURES[ds]["raw_bytes"] / files[ds]
            elif ds in ("mnist", "cifar10"):
                j.disk_bytes = image_raw_bytes(ds, img_cfg) / files[ds]
            yield j
        if ds in TEXT_FIGURES:
            td = text_data(ds, text_cfg, cfg["seed"], ctx.results)
            j = ctx.job("data", "prepare_text", wildcard_text(dataset=ds), unit="tokens",
                        work=td.train_tokens + td.val_tokens + td.test_tokens)
            j.seconds = STARTUP_S + 2.0 * td.chars / TOKENIZE_BYTES_PER_S  # BPE training + encoding
            tb = 2 if text_cfg["token_dtype"] == "uint16" else 4
            j.disk_bytes = j.work * tb + 2e6
            j.host_mb = ctx.host_overhead_mb + 3.0 * td.chars / 1e6 + 8.0 * td.train_tokens / 1e6 / 4
            j.notes.append(td.source)
            yield j
        elif ds in ("mnist", "cifar10"):
            im = image_data(ds, img_cfg, ctx.results)
            j = ctx.job("data", "prepare_images", wildcard_text(dataset=ds), unit="images", work=im.n_train + im.n_test)
            j.disk_bytes = (im.n_train + im.n_test) * (im.pixels * 4 + 8)
            j.host_mb = ctx.host_overhead_mb + 2.0 * j.disk_bytes / 1e6
            j.seconds = STARTUP_S + j.disk_bytes / 200e6
            yield j


# linreg_simulate, measured (default preset, /usr/bin/time-free log timings of one 2-core run):
# one (d, T, sigma) cell of 1,000 repeats x 21 iterations took 0.09 s at d = 10 and 1.7 s at
# d = 50, whatever T (the normal equations' solves dominate): per repeat and iteration
# LINREG_A + LINREG_B d^3 seconds
LINREG_A, LINREG_B = 3.7e-6, 6.2e-10


def linreg_jobs(ctx: Context) -> Iterator[Job]:
    lr = ctx.cfg["linreg"]
    n_cells = len(lr["T"]) * len(lr["sigma"])
    fits = lr["n_repeats"] * (lr["iterations"] + 1) * n_cells
    j = ctx.job("linreg", "linreg_simulate", unit="fits", work=2.0 * fits * len(lr["d"]))
    j.flops = sum(fits * 2 * 2.0 * d ** 3 for d in lr["d"])
    j.seconds = STARTUP_S + sum(fits * (LINREG_A + LINREG_B * d ** 3) for d in lr["d"])
    yield j
    yield ctx.job("linreg", "linreg_check")
    yield ctx.job("linreg", "linreg_figure")


def collapse_jobs(ctx: Context) -> Iterator[Job]:
    cfg, cc = ctx.cfg, ctx.cfg["collapse"]
    td = text_data(cc["dataset"], cfg["data"]["text"], cfg["seed"], ctx.results)
    vocab = cfg["data"]["text"]["vocab_size"]
    token_bytes = 2 if cfg["data"]["text"]["token_dtype"] == "uint16" else 4
    G = cc["generations"]
    for m in cc["models"]:
        shape = transformer_shape(m, vocab)
        max_new = cc["sampling"].get("max_new_tokens") or shape.block_size - 1
        syn_doc = min(td.tokens_per_document, max_new + 1)  # with its end-of-text
        R, S = td.train_tokens, td.train_documents * syn_doc  # real and one synthetic corpus, tokens
        name = m["name"]
        for seed in cc["seeds"]:
            yield ctx.job("collapse", "collapse_real_spec", wildcard_text(model=name, seed=seed))
            j = ctx.job("collapse", "collapse_train_gen0", wildcard_text(model=name, seed=seed), kind=f"collapse_train_gen0[{name}]")
            yield lm_train_job(ctx, j, shape, R, cc["optim"], cc["eval"], td.val_tokens)
            yield lm_eval_job(ctx, ctx.job("collapse", "collapse_evaluate", wildcard_text(model=name, seed=seed, gen=0),
                                           kind=f"collapse_evaluate[{name}]"), shape, td.test_tokens, cc["eval"]["batch_size"])
            if G >= 1:
                j = ctx.job("collapse", "collapse_sample_gen1", wildcard_text(model=name, seed=seed),
                            kind=f"collapse_sample[{name}]")
                yield lm_sample_job(ctx, j, shape, td.train_documents, td.tokens_per_document, cc["sampling"], token_bytes)
            for policy in cc["policies"]:
                for g in range(1, G + 1):
                    wc = wildcard_text(model=name, seed=seed, policy=policy, gen=g)
                    yield ctx.job("collapse", "collapse_mix", wc)
                    if policy == "replace":
                        tokens = S
                    elif policy == "accumulate":
                        tokens = R + g * S
                    else:  # accumulate-subsample: the pool subsampled to the real size
                        tokens = td.train_documents * (R + g * S) / (td.train_documents * (g + 1))
                    j = ctx.job("collapse", "collapse_train", wc, kind=f"collapse_train[{name}]")
                    yield lm_train_job(ctx, j, shape, tokens, cc["optim"], cc["eval"], td.val_tokens)
                    yield lm_eval_job(ctx, ctx.job("collapse", "collapse_evaluate", wc, kind=f"collapse_evaluate[{name}]"),
                                      shape, td.test_tokens, cc["eval"]["batch_size"])
                    if g >= 2:
                        j = ctx.job("collapse", "collapse_sample", wc, kind=f"collapse_sample[{name}]")
                        yield lm_sample_job(ctx, j, shape, td.train_documents, td.tokens_per_document,
                                            cc["sampling"], token_bytes)
    yield ctx.job("collapse", "collapse_summary")
    yield ctx.job("collapse", "collapse_figure")
    yield from curves_jobs(ctx, "collapse")


def curves_jobs(ctx: Context, stage: str) -> Iterator[Job]:
    """The stage's training-curves table and figure (workflow/rules/curves.smk)."""
    for rule in ("curves_table", "curves_figure"):
        yield ctx.job(stage, rule, wildcard_text(stage=stage))


def scaling_jobs(ctx: Context) -> Iterator[Job]:
    cfg, cc, sc = ctx.cfg, ctx.cfg["collapse"], ctx.cfg["scaling"]
    td = text_data(cc["dataset"], cfg["data"]["text"], cfg["seed"], ctx.results)
    name = sc["data_sweep"]["model"] or cc["models"][0]["name"]
    m = next(m for m in cc["models"] if m["name"] == name)
    shape = transformer_shape(m, cfg["data"]["text"]["vocab_size"])
    for f in sc["data_sweep"]["fractions"]:
        for seed in sc["data_sweep"]["seeds"]:
            wc = wildcard_text(model=name, frac=f, seed=seed)
            yield ctx.job("scaling", "scaling_data_spec", wc)
            j = ctx.job("scaling", "scaling_data_train", wc, kind=f"scaling_data_train[{name}]")
            yield lm_train_job(ctx, j, shape, td.train_tokens * f, cc["optim"], cc["eval"], td.val_tokens)
            yield lm_eval_job(ctx, ctx.job("scaling", "collapse_evaluate", wc, kind=f"collapse_evaluate[{name}]"),
                              shape, td.test_tokens, cc["eval"]["batch_size"])
    yield ctx.job("scaling", "scaling_data_table")
    yield ctx.job("scaling", "scaling_fits")
    yield ctx.job("scaling", "scaling_figure")


def vae_jobs(ctx: Context) -> Iterator[Job]:
    cfg, vc = ctx.cfg, ctx.cfg["vae"]
    im = image_data("mnist", cfg["data"]["images"], ctx.results)
    tr = vc["train"]
    shape = ConvVAEShape(tr["latent_dim"], tr["channels"], tr["hidden"])
    judge = SmallCNNShape()
    G = vc["generations"]

    def train(job: Job, n_items: int) -> Job:
        B = tr["batch_size"]
        steps = tr.get("max_steps") or max(1, math.ceil(tr["epochs"] * (n_items // B)))
        job.unit, job.work = "images", float(steps * B)
        job.flops = job.work * shape.train_flops_per_image()
        job.seconds = ctx.seconds(job.flops)
        # the training images are loaded whole (float32)
        job.host_mb, job.device_mb = ctx.memory(shape.train_memory(B), host_extra=n_items * 784 * 4.0)
        job.disk_bytes = 4.0 * shape.n_params()
        return job

    def sample(job: Job) -> Job:
        job.unit, job.work = "images", float(im.n_train)
        job.flops = im.n_train * shape.decode_flops_per_image()
        job.seconds = ctx.seconds(job.flops, train=False)
        job.host_mb, job.device_mb = ctx.memory({"w": 4.0 * shape.n_params()}, host_extra=2 * im.n_train * 784 * 4.0)
        job.disk_bytes = im.n_train * 784 * 4.0
        return job

    def evaluate(job: Job) -> Job:
        ev = vc["eval"]
        job.unit, job.work = "images", float(im.n_test + im.n_train)
        job.flops = im.n_test * shape.forward_flops_per_image() + im.n_train * judge.forward_flops_per_image() \
            + ev["kid_subsets"] * 3 * ev["kid_subset_size"] ** 2 * 2.0 * judge.feature_dim
        job.seconds = ctx.seconds(job.flops, train=False)
        job.host_mb, job.device_mb = ctx.memory({"w": 4.0 * shape.n_params()}, host_extra=2 * im.n_train * 784 * 4.0)
        job.disk_bytes = 1e3
        return job

    cl = ctx.job("vae", "vae_classifier", unit="images")
    steps = max(1, math.ceil(vc["classifier"]["epochs"] * (im.n_train // 64)))
    cl.work = float(steps * 64)
    cl.flops = cl.work * 3 * judge.forward_flops_per_image()
    cl.seconds = ctx.seconds(cl.flops)
    cl.host_mb, cl.device_mb = ctx.memory({"a": 64 * 784 * 16 * 4 * 4.0}, host_extra=im.n_train * 784 * 4.0)
    cl.disk_bytes = 1e6
    yield cl
    for seed in vc["seeds"]:
        yield train(ctx.job("vae", "vae_train_gen0", wildcard_text(seed=seed)), im.n_train)
        yield sample(ctx.job("vae", "vae_sample", wildcard_text(seed=seed, gen=0)))
        yield evaluate(ctx.job("vae", "vae_evaluate", wildcard_text(seed=seed, gen=0)))
        for policy in vc["policies"]:
            for g in range(1, G + 1):
                wc = wildcard_text(seed=seed, policy=policy, gen=g)
                yield ctx.job("vae", "vae_mix", wc)
                n = {"replace": im.n_train, "accumulate": (g + 1) * im.n_train}.get(policy, im.n_train)
                yield train(ctx.job("vae", "vae_train", wc), n)
                yield sample(ctx.job("vae", "vae_sample", wc))
                yield evaluate(ctx.job("vae", "vae_evaluate", wc))
    for rule in ("vae_summary", "vae_figure", "vae_grid"):
        yield ctx.job("vae", rule)
    yield from curves_jobs(ctx, "vae")


def conformers_jobs(ctx: Context) -> Iterator[Job]:
    cf = ctx.cfg["conformers"]
    md = molecule_data(cf, ctx.results)
    tr = cf["train"]
    shape = EGNNShape(tr["model"]["hidden"], tr["model"]["layers"])
    N, steps_T = md.padded_atoms, tr["diffusion"]["steps"]
    G = cf["generations"]
    ev = cf["eval"]

    def train(job: Job, n_items: int) -> Job:
        B = tr["batch_size"]
        steps = tr.get("max_steps") or max(1, math.ceil(tr["epochs"] * (n_items // B)))
        job.unit, job.work = "conformers", float(steps * B)
        job.flops = job.work * shape.train_flops_per_molecule(N)
        job.seconds = ctx.seconds(job.flops)
        # each conformer set of the mix caches its molecules' graphs: float32 [n, n, 9] pair
        # features (E[n^2] taken as 1.15 mean^2)
        sets = n_items / max(1, md.n_train_conformers)
        graphs = sets * md.n_train_molecules * 1.15 * md.mean_atoms ** 2 * 9 * 4.0
        job.host_mb, job.device_mb = ctx.memory(shape.train_memory(B, N), host_extra=graphs)
        job.disk_bytes = 4.0 * shape.n_params()
        job.notes.append(f"{steps:,} steps of {B} conformers padded to {N:.0f} atoms ({md.source})")
        return job

    def sample(job: Job) -> Job:
        n = md.n_train_conformers
        job.unit, job.work = "conformers", float(n)
        job.flops = n * steps_T * shape.forward_flops_per_molecule(N)
        job.seconds = ctx.seconds(job.flops, train=False)
        B = cf["sample"]["batch_size"]
        job.host_mb, job.device_mb = ctx.memory({"a": B * N * N * shape.hidden * 4.0 * 4}, host_extra=n * N * 3 * 8.0)
        job.disk_bytes = n * N * 3 * 4.0 * 2
        job.notes.append(f"{n:,} conformers x {steps_T} denoising steps")
        return job

    def evaluate(job: Job) -> Job:
        n_mol = md.n_test_molecules if ev.get("max_molecules") is None else min(ev["max_molecules"], md.n_test_molecules)
        refs = md.n_test_conformers * n_mol / max(1, md.n_test_molecules)
        gens = ev["samples_per_reference"] * refs
        job.unit, job.work = "conformers", float(gens)
        job.flops = gens * steps_T * shape.forward_flops_per_molecule(N) \
            + md.n_test_conformers * len(ev["noise_levels"]) * shape.forward_flops_per_molecule(N)
        per_mol = refs / max(1, n_mol)
        alignments = n_mol * per_mol * per_mol * ev["samples_per_reference"]
        job.seconds = ctx.seconds(job.flops, train=False) + alignments / (RMSD_PER_S * ctx.threads)
        B = ev["batch_size"]
        job.host_mb, job.device_mb = ctx.memory({"a": B * N * N * shape.hidden * 4.0 * 4})
        job.disk_bytes = 1e3
        job.notes.append(f"{alignments:,.0f} RMSD alignments at {RMSD_PER_S:,.0f}/s a thread")
        return job

    if cf["source"] == "geom":
        yield ctx.job("conformers", "conformers_load_geom", unit="conformers",
                      work=md.n_train_conformers + md.n_test_conformers)
    else:
        yield ctx.job("conformers", "conformers_prepare", unit="conformers",
                      work=md.n_train_conformers + md.n_test_conformers)
    for seed in cf["seeds"]:
        yield train(ctx.job("conformers", "conformers_train_gen0", wildcard_text(seed=seed)), md.n_train_conformers)
        yield evaluate(ctx.job("conformers", "conformers_evaluate", wildcard_text(seed=seed, gen=0)))
        if G >= 1:
            yield sample(ctx.job("conformers", "conformers_sample_gen1", wildcard_text(seed=seed), kind="conformers_sample"))
        for policy in cf["policies"]:
            for g in range(1, G + 1):
                wc = wildcard_text(seed=seed, policy=policy, gen=g)
                yield ctx.job("conformers", "conformers_mix", wc)
                n = md.n_train_conformers * ((g + 1) if policy == "accumulate" else 1)
                yield train(ctx.job("conformers", "conformers_train", wc), n)
                yield evaluate(ctx.job("conformers", "conformers_evaluate", wc))
                if g >= 2:
                    yield sample(ctx.job("conformers", "conformers_sample", wc))
    for seed in cf["seeds"]:  # the RDKit ETKDGv3 row: embedding and the same metrics, on the CPU
        j = evaluate(ctx.job("conformers", "conformers_baseline", wildcard_text(seed=seed)))
        j.flops, j.seconds, j.notes = 0.0, j.seconds, j.notes[-1:]
        yield j
    for rule in ("conformers_summary", "conformers_figure", "conformers_drawing"):
        yield ctx.job("conformers", rule)
    yield from curves_jobs(ctx, "conformers")


def _width_runs(p: dict) -> int:
    """Training runs of one width cell: each seed at the base lr, and the lr sweep's seeds
    at every grid point (one run where they coincide), as dlrepro.width.runs trains them."""
    keys = {(s, 0.0) for s in p["seeds"]} | {(s, float(k)) for s in p["lr_sweep_seeds"] for k in p["lr_log2_grid"]}
    return len(keys)


def width_train_params(cfg: dict, model: str) -> dict:
    """The training params of a width model as the stage runs it: the config's ``train``
    block over the stage's own defaults (:func:`dlrepro.width.params.train_params`, the one
    home of those defaults; the planner keeps no copy)."""
    from dlrepro.width.params import train_params

    return asdict(train_params(model, cfg["width"][model]["train"], f"width.{model}.train"))


def width_shapes(ctx: Context, model: str, width: int):
    """The model of a width cell and its settings (dlrepro.width.params defaults filled in)."""
    sec = ctx.cfg["width"][model]
    p = width_train_params(ctx.cfg, model)
    if model == "mlp":
        in_dim = (28 // p["pool"]) ** 2
        return MLPShape(in_dim, width, 10, p["depth"]), p
    if model == "cnn":
        cifar = sec.get("dataset") == "cifar10"
        side = (32 if cifar else 28) // p["pool"]
        return WidthCNNShape(3 if cifar else 1, side, width, 10, p["depth"], p["kernel_size"]), p
    shape = TransformerShape(ctx.cfg["data"]["text"]["vocab_size"], p["block_size"], p["n_layer"], width,
                             max(1, width // p["head_dim"]), p["arch"], bias=False, tie_embeddings=False)
    return shape, p


def width_jobs(ctx: Context) -> Iterator[Job]:
    wc_cfg = ctx.cfg["width"]
    for model in ("mlp", "cnn", "lm"):
        sec = wc_cfg.get(model)
        if not sec:
            continue
        for arm, names in sec["arms"].items():
            for param in (wc_cfg["parametrizations"] if names is None else names):
                for w in sec["widths"]:
                    shape, p = width_shapes(ctx, model, w)
                    runs = _width_runs(p)
                    j = ctx.job("width", "width_run", wildcard_text(model=model, arm=arm, param=param, width=w),
                                kind=f"width_run[{model}]")
                    B, steps = p["batch_size"], p["steps"]
                    evals = p["eval_points"] * (p["n_test"] + p["n_train_eval"])
                    if model in ("mlp", "cnn"):
                        j.unit, j.work = "images", float(runs * steps * B)
                        j.flops = runs * (steps * B * shape.train_flops_per_item() + evals * 2.0 * shape.n_params())
                        parts = shape.train_memory(B)
                        extra = 70_000 * 784 * 4.0 * 2
                    else:
                        T = shape.block_size
                        j.unit, j.work = "tokens", float(runs * steps * B * T)
                        j.flops = runs * (steps * B * T * shape.train_flops_per_token()
                                          + evals * T * shape.forward_flops_per_token(T))
                        parts = shape.train_memory(B, T, ctx.mixed)
                        extra = 0.0
                    j.seconds = ctx.seconds(j.flops) + runs * STARTUP_S / 3
                    j.host_mb, j.device_mb = ctx.memory(parts, host_extra=extra)
                    j.disk_bytes = 1e5 * runs
                    j.notes.append(f"{runs} runs x {steps:,} steps of {B}")
                    yield j
    cc = wc_cfg["coord_check"]  # validated: the schema's defaults filled in
    models = [m for m in cc["models"] if wc_cfg.get(m)]
    if models:
        j = ctx.job("width", "width_coord_check")
        flops = 0.0
        for model in models:
            for w in wc_cfg[model]["widths"]:
                shape, p = width_shapes(ctx, model, w)
                n = len(wc_cfg["parametrizations"]) * len(cc["seeds"]) * cc["steps"] * cc["batch_size"]
                flops += n * (shape.block_size * shape.train_flops_per_token() if model == "lm" else
                              shape.train_flops_per_item())
        j.flops, j.seconds = flops, ctx.seconds(flops)
        yield j
    for rule in ("width_merge", "width_agreement", "width_ensembles"):
        yield ctx.job("width", rule)
    for kind in ("curves", "lr_sweep", "coord_check", "agreement", "ensembles"):
        yield ctx.job("width", "width_figure", wildcard_text(kind=kind))
    for model in models[1:]:  # the first model's coordinate check is width_coord_check.png
        yield ctx.job("width", "width_coord_check_figure", wildcard_text(model=model))


def init_jobs(ctx: Context) -> Iterator[Job]:
    ic = ctx.cfg["init"]
    in_dim = 3072 if ic["dataset"] == "cifar10" else 784
    fl, ntk, trn = ic["fluctuations"], ic["ntk"], ic["training"]
    j = ctx.job("init", "init_fluctuations", unit="networks")
    j.work = 2.0 * fl["n_inits"] * len(fl["widths"])
    j.flops = sum(2 * fl["n_inits"] * fl["depth"] * 2.0 * w * w * 4 for w in fl["widths"])  # 2 inits, 4 inputs
    j.seconds = ctx.seconds(j.flops, train=False)
    yield j
    j = ctx.job("init", "init_ntk", unit="networks")
    j.work = 2.0 * ntk["n_inits"] * len(ntk["widths"]) * len(ntk["depths"])
    j.flops = sum(2 * ntk["n_inits"] * 6.0 * (d * w * w) * 4 for w in ntk["widths"] for d in ntk["depths"])
    j.seconds = ctx.seconds(j.flops, train=False)
    yield j
    sw = ic["width_sweep"]
    j = ctx.job("init", "init_width_sweep", unit="networks")
    j.work = float(sw["n_inits"] * len(sw["widths"]))
    j.flops = sum(sw["n_inits"] * sw["depth"] * 8.0 * w for w in sw["widths"])  # direct sampler: O(n) a layer
    j.seconds = ctx.seconds(j.flops, train=False)
    yield j
    w = trn["width"]
    # one job per (init, depth ratio): the learning-rate grid on the first seed, then the other seeds
    runs = len(trn["lrs"]) + len(trn["seeds"]) - 1
    for r in trn["depth_ratios"]:
        depth = max(1, round(r * w))
        P = in_dim * w + depth * w * w + w * 10
        for init in trn["inits"]:
            j = ctx.job("init", "init_train", wildcard_text(init=init, ratio=f"{r:g}"), unit="examples")
            j.work = float(runs * trn["steps"] * trn["n_train"])
            j.flops = runs * trn["steps"] * 6.0 * trn["n_train"] * P
            j.seconds = ctx.seconds(j.flops)
            j.host_mb, j.device_mb = ctx.memory({"x": (trn["n_train"] + trn["n_val"] + trn["n_test"]) * in_dim * 4.0})
            yield j
    for rule in ("init_compare", "init_analyse"):
        yield ctx.job("init", rule)
    for kind in ("fluctuations", "ntk", "training"):
        yield ctx.job("init", "init_figure", wildcard_text(kind=kind))


STAGES = {
    "data": data_jobs, "linreg": linreg_jobs, "collapse": collapse_jobs, "vae": vae_jobs,
    "conformers": conformers_jobs, "width": width_jobs, "init": init_jobs, "scaling": scaling_jobs,
}


def plan_jobs(cfg: dict, results: str | Path = "results", device: Accelerator | None = None) -> tuple[Context, list[Job]]:
    """Every job of the validated config ``cfg``, with its estimate."""
    ctx = Context.from_config(cfg, Path(results), device)
    jobs: list[Job] = list(data_jobs(ctx))
    for stage, make in STAGES.items():
        if stage != "data" and stage in cfg["stages"]:
            jobs.extend(make(ctx))
    if "report" in cfg["stages"]:
        jobs.append(ctx.job("report", "report_claims"))
        jobs.append(ctx.job("report", "report_summary"))
    jobs.append(ctx.job("report", "all"))
    return ctx, jobs
