"""A job of the plan and its estimate: :class:`Job`, the shared assumptions
(:class:`Context`), and the estimates of the language-model jobs (training, sampling,
evaluation) that several stages run. :mod:`dlrepro.plan.stages` lists the jobs of each stage.

Time of a job = start-up (``STARTUP_S``, plus ``COMPILE_S`` when ``compute.compile``) +
``max(FLOPs / (peak x mfu), bytes moved / (bandwidth x mfu))``; the bytes moved count the
weights read once per decoding step and the KV cache read per step when sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from dlrepro.plan.costs import ACCELERATORS, Accelerator, TransformerShape

STARTUP_S = 15.0  # start-up of a job: torch + Lightning imports (5.1 CPU-s measured), data, CUDA init
COMPILE_S = 90.0  # torch.compile of a model (assumed, GPU)
CUDA_CONTEXT_MB = 2000.0  # host memory of the CUDA context and its libraries
TOKENIZE_BYTES_PER_S = 3.35e6  # encode_documents, measured (README, Performance: data_path)
RMSD_PER_S = 2000.0  # RDKit GetBestRMS alignments per second per thread (assumed, drug-size molecules)

LIGHT_RULES = {
    "download", "collapse_real_spec", "collapse_mix", "collapse_summary", "collapse_figure",
    "vae_mix", "vae_summary", "vae_figure", "vae_grid", "conformers_mix", "conformers_summary",
    "conformers_figure", "conformers_drawing", "conformers_baseline", "width_merge", "width_agreement", "width_ensembles",
    "width_figure", "init_compare", "init_analyse", "init_figure", "scaling_data_spec", "scaling_data_table",
    "scaling_figure", "scaling_fits", "report_summary", "report_claims", "linreg_check", "linreg_figure", "all",
    "curves_table", "curves_figure",
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


def wildcard_text(**kw) -> str:
    """A job's wildcards as Snakemake prints them: ``k=v,k=v``."""
    return ",".join(f"{k}={v}" for k, v in kw.items())


def transformer_shape(model: dict, vocab: int) -> TransformerShape:
    return TransformerShape(vocab, model["block_size"], model["n_layer"], model["d_model"], model["n_head"],
                            model["arch"], model["bias"], model["tie_embeddings"])


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
    """Sample ``n_docs`` documents with the continuously batched sampler (dlrepro.decode):
    ``batch_size`` slots, a slot starting the next document as soon as its document ends, so
    the decode steps are the corpus's positions (its tokens plus one prompt token a
    document) over the slots. Every step reads the weights and the whole preallocated KV
    cache (``max_new_tokens`` positions a slot: each row attends through its own mask)."""
    max_new = sampling.get("max_new_tokens") or shape.block_size - 1
    B = sampling["batch_size"]
    job.unit, job.work = "tokens", float(n_docs * min(doc_tokens, max_new))
    positions = job.work + n_docs
    steps = math.ceil(positions / B)
    job.flops = positions * shape.forward_flops_per_token(max_new + 1)  # every step attends over the whole cache
    wbytes = 2.0 if ctx.mixed else 4.0
    moved = steps * (shape.matmul_params() * wbytes + shape.kv_cache_bytes(B, max_new + 1, wbytes))
    job.seconds = ctx.seconds(job.flops, moved, train=False)
    parts = shape.sample_memory(B, max_new + 1, ctx.mixed)
    docs_host = job.work * 8.0 * 2 + n_docs * 112.0  # int64 documents kept, then concatenated
    job.host_mb, job.device_mb = ctx.memory(parts, host_extra=docs_host)
    job.disk_bytes = job.work * token_bytes + n_docs * token_bytes
    job.notes.append(f"{steps:,} decode steps of {B} slots (KV cache "
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
