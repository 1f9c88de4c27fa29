"""The jobs of a configuration and the estimate of each.

:func:`plan_jobs` walks the stages the way their rule files do (``workflow/rules/*.smk``:
the same wildcards, so the same jobs; ``tests/test_plan.py`` compares the counts with
``snakemake -n``) and returns one :class:`Job` per job. Training, sampling and evaluation
jobs get FLOPs, time, memory and disk estimates from :mod:`dlrepro.plan.costs`; the light
bookkeeping jobs (mixing, tables, figures) are counted, with disk and memory left blank.

Time of a job = start-up (``STARTUP_S``, plus ``COMPILE_S`` when ``compute.compile``) +
``max(FLOPs / (peak x mfu), bytes moved / (bandwidth x mfu))``; the bytes moved count the
weights read once per decoding step and the KV cache read per step when sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from dlrepro.plan.costs import (
    ACCELERATORS,
    Accelerator,
    ConvVAEShape,
    EGNNShape,
    MLPShape,
    SmallCNNShape,
    TransformerShape,
)
from dlrepro.plan.figures import (
    TEXT_FIGURES,
    image_data,
    image_raw_bytes,
    molecule_data,
    text_data,
)

STARTUP_S = 15.0  # start-up of a job: torch + Lightning imports (5.1 CPU-s measured), data, CUDA init
COMPILE_S = 90.0  # torch.compile of a model (assumed, GPU)
CUDA_CONTEXT_MB = 2000.0  # host memory of the CUDA context and its libraries
TOKENIZE_BYTES_PER_S = 3.35e6  # encode_documents, measured (README, Performance: data_path)
RMSD_PER_S = 2000.0  # RDKit GetBestRMS alignments per second per thread (assumed, drug-size molecules)

LIGHT_RULES = {
    "download", "collapse_real_spec", "collapse_mix", "collapse_summary", "collapse_figure",
    "vae_mix", "vae_summary", "vae_figure", "vae_grid", "conformers_mix", "conformers_summary",
    "conformers_figure", "conformers_drawing", "width_merge", "width_agreement", "width_ensembles",
    "width_figure", "init_slopes", "init_figure", "scaling_data_spec", "scaling_data_table",
    "scaling_figure", "scaling_fits", "report_summary", "linreg_check", "linreg_figure", "all",
    "linreg_simulate", "prepare_text", "prepare_images", "conformers_prepare", "conformers_load_geom",
}  # the rules with compute.light_resources (every other rule requests compute.train_resources)


@dataclass
class Job:
    """One job and its estimate (``None``: not estimated)."""

    stage: str
    rule: str
    kind: str  # the table's row: the rule, with the model where a rule trains several
    wildcards: str
    request: dict  # the job's resources: mem_mb, runtime (minutes), gpu
    unit: str = ""
    work: float = 0.0  # tokens / images / molecules / conformers processed
    flops: float | None = None
    seconds: float | None = None
    host_mb: float | None = None  # peak resident memory of the process
    device_mb: float | None = None  # peak accelerator memory (None on CPU)
    disk_bytes: float = 0.0  # outputs written
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.rule}[{self.wildcards}]" if self.wildcards else self.rule

    def overrun(self, device_memory_mb: float | None) -> float:
        """The largest ratio of an estimate to its request (or the device's memory)."""
        ratios = [0.0]
        if self.seconds is not None and self.request.get("runtime"):
            ratios.append(self.seconds / 60.0 / self.request["runtime"])
        if self.host_mb is not None and self.request.get("mem_mb"):
            ratios.append(self.host_mb / self.request["mem_mb"])
        if self.device_mb is not None and device_memory_mb:
            ratios.append(self.device_mb / device_memory_mb)
        return max(ratios)

    def over_request(self, device_memory_mb: float | None) -> list[str]:
        """What the estimate exceeds: ``runtime``, ``mem_mb`` and the device's memory."""
        out = []
        runtime = self.request.get("runtime")
        if self.seconds is not None and runtime and self.seconds / 60.0 > runtime:
            out.append(f"estimated {self.seconds / 60:,.0f} min > runtime request {runtime:,} min")
        mem = self.request.get("mem_mb")
        if self.host_mb is not None and mem and self.host_mb > mem:
            out.append(f"estimated {self.host_mb:,.0f} MB > mem_mb request {mem:,} MB")
        if self.device_mb is not None and device_memory_mb and self.device_mb > device_memory_mb:
            out.append(f"estimated {self.device_mb:,.0f} MB device memory > the device's {device_memory_mb:,.0f} MB")
        return out


@dataclass
class Context:
    """The config and the assumptions every estimate shares."""

    cfg: dict
    results: Path
    device: Accelerator
    mfu: float
    threads: int
    on_gpu: bool
    mixed: bool
    compile: bool
    host_overhead_mb: float
    train_req: dict
    light_req: dict

    @classmethod
    def from_config(cls, cfg: dict, results: Path, device: Accelerator | None = None) -> "Context":
        comp = cfg["compute"]
        plan = comp["plan"]
        on_gpu = comp["accelerator"] == "gpu"
        if device is None:
            name = plan["accelerator"]
            if name == "auto":
                name = "h100-sxm" if on_gpu else "cpu"
            device = ACCELERATORS[name]
        if plan.get("peak_tflops") or plan.get("memory_gb"):
            device = Accelerator(device.name, plan.get("peak_tflops") or device.peak_tflops,
                                 plan.get("memory_gb") or device.memory_gb, device.bandwidth_gbs,
                                 device.per_thread)
        precision = comp["precision"]
        mixed = precision in ("bf16-mixed", "16-mixed", "bf16-true") or (precision == "auto" and on_gpu)
        threads = int(comp.get("num_threads") or comp["train_resources"]["threads"] or 1)

        def req(kind):
            r = comp[kind]
            return {"mem_mb": r["mem_mb"], "runtime": r["runtime"], "gpu": r.get("gpu", 0)}

        return cls(cfg, Path(results), device, float(plan["mfu"]), threads, on_gpu, mixed,
                   bool(comp["compile"]), float(plan["host_overhead_mb"]), req("train_resources"),
                   req("light_resources"))

    # the time and memory of a compute job
    def seconds(self, flops: float, bytes_moved: float = 0.0, train: bool = True) -> float:
        t = flops / (self.device.peak(self.threads) * self.mfu)
        t = max(t, bytes_moved / (self.device.bandwidth(self.threads) * self.mfu))
        return STARTUP_S + (COMPILE_S if self.compile and train else 0.0) + t

    def memory(self, parts: dict[str, float], host_extra: float = 0.0) -> tuple[float, float | None]:
        """(host MB, device MB) of a job whose model and activations take ``parts`` bytes."""
        model = sum(parts.values()) / 1e6
        if self.on_gpu:
            return self.host_overhead_mb + CUDA_CONTEXT_MB + host_extra / 1e6, model
        return self.host_overhead_mb + model + host_extra / 1e6, None

    def device_memory_mb(self) -> float | None:
        return self.device.memory_gb * 1e3 if self.on_gpu and self.device.memory_gb else None

    def job(self, stage, rule, wildcards="", kind=None, light=None, **kw) -> Job:
        light = rule in LIGHT_RULES if light is None else light
        return Job(stage, rule, kind or rule, wildcards, dict(self.light_req if light else self.train_req), **kw)


# --------------------------------------------------------------------------- helpers


def _wc(**kw) -> str:
    return ",".join(f"{k}={v}" for k, v in kw.items())


def transformer_shape(model: dict, vocab: int) -> TransformerShape:
    return TransformerShape(vocab, model["block_size"], model["n_layer"], model["d_model"], model["n_head"],
                            model.get("arch", "gpt2"), model.get("bias", True), model.get("tie_embeddings", True))


def lm_train_job(ctx: Context, job: Job, shape: TransformerShape, tokens: float, optim: dict,
                 eval_cfg: dict, val_tokens: float) -> Job:
    """A collapse / scaling training job over a stream of ``tokens`` tokens."""
    T, B = shape.block_size, optim["batch_size"]
    windows = max(0.0, (tokens - 1) // T)
    steps = max(1, math.ceil(optim["epochs"] * (windows // B)))
    trained = steps * B * T
    val = min(eval_cfg["val_max_windows"], max(1, val_tokens // T)) * T
    job.unit, job.work = "tokens", float(trained)
    job.flops = trained * shape.train_flops_per_token() + val * shape.forward_flops_per_token(T)
    job.seconds = ctx.seconds(job.flops)
    parts = shape.train_memory(B // max(1, ctx.cfg["compute"]["devices"]), T, ctx.mixed)
    perm = 4.0 * windows  # the epoch's permutation of window indices (uint32)
    job.host_mb, job.device_mb = ctx.memory(parts, host_extra=perm + (12.0 * shape.n_params() if ctx.on_gpu else 0))
    job.disk_bytes = 4.0 * shape.n_params()  # model.pt (fp32); checkpoints are removed at the end
    job.notes.append(f"{steps:,} steps of {B} x {T} tokens")
    return job


def lm_sample_job(ctx: Context, job: Job, shape: TransformerShape, n_docs: int, doc_tokens: float,
                  sampling: dict, token_bytes: int) -> Job:
    """Sample ``n_docs`` documents with the KV-cached sampler. Every batch is counted at its
    full length (``max_new_tokens`` steps: one long document keeps a batch going)."""
    max_new = sampling.get("max_new_tokens") or shape.block_size - 1
    B = sampling["batch_size"]
    n_batches = math.ceil(n_docs / B)
    positions = n_batches * B * (max_new + 1)
    job.unit, job.work = "tokens", float(n_docs * min(doc_tokens, max_new))
    job.flops = positions * shape.sample_flops_per_position(max_new + 1)
    wbytes = 2.0 if ctx.mixed else 4.0
    moved = n_batches * (max_new + 1) * (
        shape.matmul_params() * wbytes + shape.kv_cache_bytes(B, max_new + 1, wbytes) / 2.0)
    job.seconds = ctx.seconds(job.flops, moved, train=False)
    parts = shape.sample_memory(B, max_new + 1, ctx.mixed)
    docs_host = job.work * 8.0 * 2 + n_docs * 112.0  # int64 documents kept, then concatenated
    job.host_mb, job.device_mb = ctx.memory(parts, host_extra=docs_host)
    job.disk_bytes = job.work * token_bytes + n_docs * token_bytes
    job.notes.append(f"{n_batches:,} batches of {B} x {max_new + 1} positions (KV cache "
                     f"{shape.kv_cache_bytes(B, max_new + 1, wbytes) / 1e9:.2f} GB)")
    return job


def lm_eval_job(ctx: Context, job: Job, shape: TransformerShape, tokens: float, batch: int) -> Job:
    job.unit, job.work = "tokens", float(tokens)
    T = shape.block_size
    job.flops = tokens * shape.forward_flops_per_token(T)
    job.seconds = ctx.seconds(job.flops, train=False)
    job.host_mb, job.device_mb = ctx.memory(shape.eval_memory(batch, T))
    job.disk_bytes = 1e3
    return job


# --------------------------------------------------------------------------- stages


def data_jobs(ctx: Context) -> Iterator[Job]:
    cfg = ctx.cfg
    stages = set(cfg["stages"])
    needed = set()  # what the stages read (workflow/rules/*.smk: DATA_NEEDED)
    if stages & {"collapse", "scaling"}:
        needed.add(cfg["collapse"]["dataset"])
    if "vae" in stages:
        needed.add("mnist")
    if "width" in stages:
        if cfg["width"].get("mlp"):
            needed.add("mnist")
        if cfg["width"].get("lm"):
            needed.add(cfg["collapse"]["dataset"])
    if "init" in stages:
        needed.add(cfg["init"]["dataset"])
    if "data" in stages:
        needed |= set(cfg["data"]["prepare"])
    needed.discard("moses")
    conf_moses = "conformers" in stages and cfg["conformers"]["source"] == "moses"
    files = {"tinyshakespeare": 1, "tinystories": 2, "cifar10": 1, "moses": 1,
             "mnist": 2 if cfg["data"]["images"]["mnist_source"] == "test-file" else 4}
    text_cfg, img_cfg = cfg["data"]["text"], cfg["data"]["images"]
    for ds in sorted(needed | ({"moses"} if conf_moses else set())):
        for i in range(files[ds]):
            j = ctx.job("data", "download", _wc(dataset=ds, file=i + 1))
            if ds in TEXT_FIGURES:
                j.disk_bytes = TEXT_FIGURES[ds]["raw_bytes"] / files[ds]
            elif ds in ("mnist", "cifar10"):
                j.disk_bytes = image_raw_bytes(ds, img_cfg) / files[ds]
            yield j
        if ds in TEXT_FIGURES:
            td = text_data(ds, text_cfg, cfg["seed"], ctx.results)
            j = ctx.job("data", "prepare_text", _wc(dataset=ds), unit="tokens",
                        work=td.train_tokens + td.val_tokens + td.test_tokens)
            j.seconds = STARTUP_S + 2.0 * td.chars / TOKENIZE_BYTES_PER_S  # BPE training + encoding
            tb = 2 if text_cfg["token_dtype"] == "uint16" else 4
            j.disk_bytes = j.work * tb + 2e6
            j.host_mb = ctx.host_overhead_mb + 3.0 * td.chars / 1e6 + 8.0 * td.train_tokens / 1e6 / 4
            j.notes.append(td.source)
            yield j
        elif ds in ("mnist", "cifar10"):
            im = image_data(ds, img_cfg, ctx.results)
            j = ctx.job("data", "prepare_images", _wc(dataset=ds), unit="images", work=im.n_train + im.n_test)
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
            yield ctx.job("collapse", "collapse_real_spec", _wc(model=name, seed=seed))
            j = ctx.job("collapse", "collapse_train_gen0", _wc(model=name, seed=seed), kind=f"collapse_train_gen0[{name}]")
            yield lm_train_job(ctx, j, shape, R, cc["optim"], cc["eval"], td.val_tokens)
            yield lm_eval_job(ctx, ctx.job("collapse", "collapse_evaluate", _wc(model=name, seed=seed, gen=0),
                                           kind=f"collapse_evaluate[{name}]"), shape, td.test_tokens, cc["eval"]["batch_size"])
            if G >= 1:
                j = ctx.job("collapse", "collapse_sample_gen1", _wc(model=name, seed=seed),
                            kind=f"collapse_sample[{name}]")
                yield lm_sample_job(ctx, j, shape, td.train_documents, td.tokens_per_document, cc["sampling"], token_bytes)
            for policy in cc["policies"]:
                for g in range(1, G + 1):
                    wc = _wc(model=name, seed=seed, policy=policy, gen=g)
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


def scaling_jobs(ctx: Context) -> Iterator[Job]:
    cfg, cc, sc = ctx.cfg, ctx.cfg["collapse"], ctx.cfg["scaling"]
    td = text_data(cc["dataset"], cfg["data"]["text"], cfg["seed"], ctx.results)
    name = sc["data_sweep"]["model"] or cc["models"][0]["name"]
    m = next(m for m in cc["models"] if m["name"] == name)
    shape = transformer_shape(m, cfg["data"]["text"]["vocab_size"])
    for f in sc["data_sweep"]["fractions"]:
        for seed in sc["data_sweep"]["seeds"]:
            wc = _wc(model=name, frac=f, seed=seed)
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
        steps = max(1, math.ceil(tr["epochs"] * (n_items // B)))
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
        yield train(ctx.job("vae", "vae_train_gen0", _wc(seed=seed)), im.n_train)
        yield sample(ctx.job("vae", "vae_sample", _wc(seed=seed, gen=0)))
        yield evaluate(ctx.job("vae", "vae_evaluate", _wc(seed=seed, gen=0)))
        for policy in vc["policies"]:
            for g in range(1, G + 1):
                wc = _wc(seed=seed, policy=policy, gen=g)
                yield ctx.job("vae", "vae_mix", wc)
                n = {"replace": im.n_train, "accumulate": (g + 1) * im.n_train}.get(policy, im.n_train)
                yield train(ctx.job("vae", "vae_train", wc), n)
                yield sample(ctx.job("vae", "vae_sample", wc))
                yield evaluate(ctx.job("vae", "vae_evaluate", wc))
    for rule in ("vae_summary", "vae_figure", "vae_grid"):
        yield ctx.job("vae", rule)


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
        steps = max(1, math.ceil(tr["epochs"] * (n_items // B)))
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
        yield train(ctx.job("conformers", "conformers_train_gen0", _wc(seed=seed)), md.n_train_conformers)
        yield evaluate(ctx.job("conformers", "conformers_evaluate", _wc(seed=seed, gen=0)))
        if G >= 1:
            yield sample(ctx.job("conformers", "conformers_sample_gen1", _wc(seed=seed), kind="conformers_sample"))
        for policy in cf["policies"]:
            for g in range(1, G + 1):
                wc = _wc(seed=seed, policy=policy, gen=g)
                yield ctx.job("conformers", "conformers_mix", wc)
                n = md.n_train_conformers * ((g + 1) if policy == "accumulate" else 1)
                yield train(ctx.job("conformers", "conformers_train", wc), n)
                yield evaluate(ctx.job("conformers", "conformers_evaluate", wc))
                if g >= 2:
                    yield sample(ctx.job("conformers", "conformers_sample", wc))
    for rule in ("conformers_summary", "conformers_figure", "conformers_drawing"):
        yield ctx.job("conformers", rule)


def _width_runs(train: dict, defaults: dict) -> int:
    p = {**defaults, **train}
    keys = {(s, 0.0) for s in p["seeds"]} | {(s, float(k)) for s in p["lr_sweep_seeds"] for k in p["lr_log2_grid"]}
    return len(keys)


MLP_DEFAULTS = {"seeds": [0, 1, 2], "lr_sweep_seeds": [0], "lr_log2_grid": [-3, -2, -1, 0, 1, 2], "batch_size": 64,
                "steps": 150, "depth": 2, "pool": 2, "n_test": 1000, "n_train_eval": 500, "eval_points": 8}
LM_DEFAULTS = {"seeds": [0, 1], "lr_sweep_seeds": [0], "lr_log2_grid": [-2, -1, 0, 1], "batch_size": 8, "steps": 80,
               "n_layer": 2, "head_dim": 16, "block_size": 64, "arch": "gpt2", "n_test": 32, "n_train_eval": 32,
               "eval_points": 6}


def width_shapes(ctx: Context, model: str, width: int):
    """The model of a width cell and its settings (dlrepro.width.runs defaults filled in)."""
    sec = ctx.cfg["width"][model]
    if model == "mlp":
        p = {**MLP_DEFAULTS, **sec["train"]}
        in_dim = (28 // p["pool"]) ** 2
        return MLPShape(in_dim, width, 10, p["depth"]), p
    p = {**LM_DEFAULTS, **sec["train"]}
    shape = TransformerShape(ctx.cfg["data"]["text"]["vocab_size"], p["block_size"], p["n_layer"], width,
                             max(1, width // p["head_dim"]), p["arch"], bias=False, tie_embeddings=False)
    return shape, p


def width_jobs(ctx: Context) -> Iterator[Job]:
    wc_cfg = ctx.cfg["width"]
    for model in ("mlp", "lm"):
        sec = wc_cfg.get(model)
        if not sec:
            continue
        for arm, names in sec["arms"].items():
            for param in (wc_cfg["parametrizations"] if names is None else names):
                for w in sec["widths"]:
                    shape, p = width_shapes(ctx, model, w)
                    runs = _width_runs(sec["train"], MLP_DEFAULTS if model == "mlp" else LM_DEFAULTS)
                    j = ctx.job("width", "width_run", _wc(model=model, arm=arm, param=param, width=w),
                                kind=f"width_run[{model}]")
                    B, steps = p["batch_size"], p["steps"]
                    evals = p["eval_points"] * (p["n_test"] + p["n_train_eval"])
                    if model == "mlp":
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
    cc = wc_cfg.get("coord_check") or {}
    models = [m for m in cc.get("models", ["mlp", "lm"]) if wc_cfg.get(m)]
    if models:
        j = ctx.job("width", "width_coord_check")
        flops = 0.0
        for model in models:
            for w in wc_cfg[model]["widths"]:
                shape, p = width_shapes(ctx, model, w)
                n = len(wc_cfg["parametrizations"]) * len(cc.get("seeds", [0])) * cc.get("steps", 5) * cc.get("batch_size", 32)
                flops += n * (shape.train_flops_per_item() if model == "mlp" else
                              shape.block_size * shape.train_flops_per_token())
        j.flops, j.seconds = flops, ctx.seconds(flops)
        yield j
    for rule in ("width_merge", "width_agreement", "width_ensembles"):
        yield ctx.job("width", rule)
    for kind in ("curves", "lr_sweep", "coord_check", "agreement", "ensembles"):
        yield ctx.job("width", "width_figure", _wc(kind=kind))


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
    j = ctx.job("init", "init_train", unit="examples")
    w = trn["width"]
    ratios = trn.get("depth_ratios", [0.25, 1.0, 2.0])
    seeds = trn.get("seeds", [0])
    flops = 0.0
    for r in ratios:
        depth = max(1, round(r * w))
        P = in_dim * w + depth * w * w + w * 10
        flops += 2 * len(seeds) * trn["steps"] * 6.0 * trn["n_train"] * P
    j.work = 2.0 * len(seeds) * len(ratios) * trn["steps"] * trn["n_train"]
    j.flops = flops
    j.seconds = ctx.seconds(flops)
    j.host_mb, j.device_mb = ctx.memory({"x": (trn["n_train"] + trn["n_test"]) * in_dim * 4.0 * 2})
    yield j
    yield ctx.job("init", "init_slopes")
    for kind in ("fluctuations", "ntk", "training"):
        yield ctx.job("init", "init_figure", _wc(kind=kind))


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
        jobs.append(ctx.job("report", "report_summary"))
    jobs.append(ctx.job("report", "all"))
    return ctx, jobs
