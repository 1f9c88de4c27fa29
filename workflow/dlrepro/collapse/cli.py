"""``python -m dlrepro collapse <subcommand>``: the language-model model-collapse loop.

One chain (data set, model, seed) runs::

    real-spec  (gen 0 data)  -> train -> model_0 -> sample -> synthetic_1     (shared by all policies)
    mix (policy, gen g)      -> train -> model_g -> sample -> synthetic_{g+1} (per policy)
    evaluate model_g on the real test split;  summarize all;  plot

Subcommands (every output is written atomically):

``real-spec --real MANIFEST --seed N --out SPEC [--stats-max-documents K]``
    The data spec of generation 0: every document of the real training split.
``mix --policy NAME --generation G --seed N --real MANIFEST --synthetic DIR_1 .. DIR_G --out SPEC [--stats-max-documents K]``
    Apply a mixing policy (:mod:`dlrepro.policies`) to the pools ``real, synthetic_1 ..
    synthetic_G`` (documents are the items). Writes the spec JSON and its sidecar
    ``<SPEC stem>.indices.npy``; see :mod:`dlrepro.collapse.corpus`.
``train --params JSON --data SPEC --val-tokens VAL.npy --ckpt-dir DIR --out-model MODEL.pt --out-metrics METRICS.json``
    Train a fresh model on the spec's stream (same hyper-parameters every generation;
    ``optim.epochs`` passes, so accumulate's compute grows with its data, as in the
    paper). Resumes from ``DIR/last.ckpt``; removes ``DIR`` after the outputs are written.
    The training seed (initialisation and batch order) is the spec's chain seed.
``sample --params JSON --model MODEL.pt --real-manifest MANIFEST --seed N --out-dir DIR``
    Sample a synthetic corpus with **as many documents as the real training split**; the
    random stream is seeded from ``(N, generation)``, so a chain may pass its seed each time.
    Documents, not tokens, because the paper's unit is the data set: each iteration
    samples "a new dataset of the same size" as TinyStories, whose items are stories
    (arXiv:2404.01413, Sec. 2.1), and the mixing policies count documents; the token count
    then follows the model's own document lengths, which is part of what collapses (the
    corpus manifest records both). Writes ``DIR/tokens.npy`` and ``DIR/manifest.json``.
    Continuous batching, one random stream per document (:mod:`dlrepro.sampling`); with
    ``compute.devices > 1`` one process per device samples a contiguous share of the
    documents and the shares are merged into the same corpus.
``evaluate --model MODEL.pt --tokens TEST.npy --manifest MANIFEST --out EVAL.json [--split S] [--params JSON]``
    Cross-entropy on the real held-out split, nats/token and nats/char (protocol in
    :mod:`dlrepro.collapse.lm`).
``summarize --evals EVAL.json.. --mixes SPEC.json.. --out summary.csv``
    The tidy table below; every eval is joined to the spec its model was trained on by
    the spec's sha256 (recorded in the model at training time).
``plot --csv summary.csv --out FIG``
    Test loss vs generation (:mod:`dlrepro.collapse.plots`).

``summary.csv`` columns, one row per (dataset, model, policy, generation, seed):
``dataset, model, arch, n_params, n_params_non_embedding, policy, generation, seed,
train_documents, train_tokens, real_tokens, synthetic_tokens, tokens_seen, test_loss,
test_nats_per_char, unigram_entropy, distinct_2, distinct_3, mean_length,
repetition_rate``. Token counts are stream tokens (documents plus their end-of-text);
``tokens_seen`` = steps x batch x block_size; ``test_loss`` is nats/token; the diversity
statistics (:func:`dlrepro.textstats.diversity_stats`) are those of the training data.
Generation 0 (policy ``real`` in its spec) is one model per (dataset, model, seed); its
row is repeated under every policy of the table so that each policy's line starts there.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dlrepro import policies
from dlrepro.collapse import corpus
from dlrepro.collapse.params import LMParams
from dlrepro.errors import InputFileError, ParamsError, UserError
from dlrepro.io import read_json, sha256_file, write_csv, write_json
from dlrepro.log import get_logger

SUMMARY_COLUMNS = [
    "dataset", "model", "arch", "n_params", "n_params_non_embedding", "policy", "generation",
    "seed", "train_documents", "train_tokens", "real_tokens", "synthetic_tokens", "tokens_seen",
    "test_loss", "test_nats_per_char", "unigram_entropy", "distinct_2", "distinct_3",
    "mean_length", "repetition_rate",
]
DIVERSITY_COLUMNS = ["unigram_entropy", "distinct_2", "distinct_3", "mean_length", "repetition_rate"]


# --------------------------------------------------------------------------- commands


def cmd_real_spec(args) -> int:
    log = get_logger("collapse", step="real-spec", seed=args.seed)
    real = corpus.real_pool(args.real)
    indices = np.arange(real.n_documents, dtype=np.int64)
    if args.fraction is not None:
        # a data-size sweep: a seeded uniform subset of the training documents
        if not 0 < args.fraction <= 1:
            raise UserError(f"--fraction must be in (0, 1], got {args.fraction}")
        n = max(1, int(round(args.fraction * real.n_documents)))
        rng = np.random.default_rng([args.seed, 0xF4AC])
        indices = np.sort(rng.choice(real.n_documents, size=n, replace=False)).astype(np.int64)
        log.info("subset: %d of %d documents (fraction %g)", n, real.n_documents, args.fraction)
    shares = [policies.Share("real", indices)]
    _write_spec(args, [real], shares, policy="real", generation=0, model=None, log=log)
    return 0


def cmd_mix(args) -> int:
    log = get_logger("collapse", step="mix", policy=args.policy, gen=args.generation, seed=args.seed)
    if args.policy not in policies.POLICIES:
        raise UserError(f"--policy {args.policy!r} is not a known policy; known: {sorted(policies.POLICIES)}")
    if args.generation < 1:
        raise UserError(f"--generation must be >= 1 for mix (generation 0 is `real-spec`), got {args.generation}")
    if len(args.synthetic) != args.generation:
        raise UserError(
            f"generation {args.generation} mixes synthetic_1 .. synthetic_{args.generation}: "
            f"give {args.generation} --synthetic directories, got {len(args.synthetic)}"
        )
    real = corpus.real_pool(args.real)
    pools = [real]
    names = set()
    for k, directory in enumerate(args.synthetic, start=1):
        pool = corpus.synthetic_pool(directory)
        if pool.name != policies.pool_name(k):
            raise UserError(f"--synthetic #{k} ({directory}) is pool {pool.name}, expected {policies.pool_name(k)}")
        src = pool.meta["source_model"]
        expected_policy = "real" if k == 1 else args.policy
        if src.get("policy") != expected_policy or src.get("seed") != args.seed:
            raise UserError(
                f"{directory} was sampled from a model of policy {src.get('policy')!r}, seed "
                f"{src.get('seed')}; policy {args.policy} seed {args.seed} needs policy "
                f"{expected_policy!r}, seed {args.seed} for synthetic_{k}"
            )
        names.add(src.get("name"))
        pools.append(pool)
    if len(names) > 1:
        raise UserError(f"the synthetic corpora come from different models: {sorted(names)}")
    sizes = {p.name: p.n_documents for p in pools}
    log.info("pools (documents): %s", ", ".join(f"{k}={v:,}" for k, v in sizes.items()))
    shares = policies.mix(args.policy, sizes, args.generation, args.seed)
    _write_spec(args, pools, shares, policy=args.policy, generation=args.generation,
                model=names.pop(), log=log)
    return 0


def _write_spec(args, pools, shares, *, policy, generation, model, log) -> None:
    from dlrepro.textstats import diversity_stats

    spec, indices, stats_docs = corpus.build_spec(
        pools, shares, policy=policy, generation=generation, seed=args.seed,
        stats_max_documents=args.stats_max_documents,
    )
    spec["model"] = model
    spec["diversity"] = diversity_stats(stats_docs)
    corpus.write_spec(args.out, spec, indices)
    t = spec["totals"]
    log.info(
        "%s: %d documents, %d tokens (real %d, synthetic %d) -> %s",
        " + ".join(f"{s['source']}[{s['documents']}]" for s in spec["shares"]),
        t["documents"], t["train_tokens"], t["real_tokens"], t["synthetic_tokens"], args.out,
    )


def cmd_train(args) -> int:
    import torch

    from dlrepro.collapse.lm import TokenStream, evaluate_tokens, resolve_device, save_model
    from dlrepro.collapse.module import LanguageModel
    from dlrepro.models.transformer import TransformerConfig
    from dlrepro.training import StepBatches, TrainSettings, fit, settings_dict, steps_for

    params = LMParams.from_json(args.params)
    spec = corpus.read_spec(args.data)
    seed, gen, policy = int(spec["seed"]), int(spec["generation"]), spec["policy"]
    tag = {"model": params.name, "policy": policy, "gen": gen, "seed": seed}
    log = get_logger("collapse", step="train", **tag)

    config = TransformerConfig(vocab_size=int(spec["vocab_size"]), **asdict(params.model))
    files, runs = corpus.spec_runs(args.data, spec)
    stream = TokenStream(files, runs, config.block_size)
    val_stream = TokenStream.of_file(corpus.TokenFile(args.val_tokens), config.block_size)
    settings = TrainSettings.from_dict(params.compute, seed=seed, epochs=params.optim.epochs)
    batch_size = params.optim.batch_size
    total = steps_for(settings, stream.n_windows, batch_size)
    log.info(
        "%s %d layers x %d, block %d: %d windows (%d tokens) x %g epochs = %d steps of %d",
        config.arch, config.n_layer, config.d_model, config.block_size, stream.n_windows,
        stream.n_tokens, params.optim.epochs, total, batch_size,
    )
    torch.manual_seed(seed)  # initialisation (the harness seeds the steps)
    module = LanguageModel(config, params.optim, total)
    batches = StepBatches(stream.n_windows, batch_size, total, seed, stream.collate)
    val_batches = None
    if settings.val_every_n_steps:
        n_val = min(params.eval.val_max_windows, val_stream.n_windows)
        windows = np.unique(np.linspace(0, val_stream.n_windows - 1, n_val).round().astype(np.int64))
        batches_list = [val_stream.collate(windows[i:i + batch_size]) for i in range(0, len(windows), batch_size)]
        val_batches = torch.utils.data.DataLoader(batches_list, batch_size=None)  # one loader, ready batches
    history = fit(module, batches, settings, args.ckpt_dir, stage="collapse", tag=tag, val_batches=val_batches)

    model = module.model.to(resolve_device(params.eval.device))
    val = evaluate_tokens(model, val_stream, batch_size=params.eval.batch_size,
                          device=next(model.parameters()).device, max_windows=params.eval.val_max_windows)
    log.info("validation loss %.4f nats/token (%d tokens)", val["loss"], val["n_predicted"])
    t = spec["totals"]
    meta = {
        "name": params.name,
        "arch": config.arch,
        "dataset": spec["dataset"],
        "policy": policy,
        "generation": gen,
        "seed": seed,
        "data_spec": str(args.data),
        "data_sha256": sha256_file(args.data),
        "n_params": model.num_params(non_embedding=False),
        "n_params_non_embedding": model.num_params(non_embedding=True),
        "steps": total,
        "tokens_seen": total * batch_size * config.block_size,
        "train_tokens": t["train_tokens"],
    }
    save_model(args.out_model, model, meta)
    train_rows = [r for r in history.rows if "train_loss" in r]
    write_json(args.out_metrics, {
        **meta,
        "windows": stream.n_windows,
        "epochs": params.optim.epochs,
        "batch_size": batch_size,
        "final_train_loss": train_rows[-1]["train_loss"] if train_rows else None,
        "val_loss": val["loss"],
        "val_predicted_tokens": val["n_predicted"],
        "history": history.rows,
        "settings": settings_dict(settings),
        "params": json.loads(args.params),
    })
    shutil.rmtree(args.ckpt_dir, ignore_errors=True)
    log.info("wrote %s and %s", args.out_model, args.out_metrics)
    return 0


def cmd_sample(args) -> int:
    import contextlib
    import functools

    import torch

    from dlrepro.collapse.lm import load_model, model_provenance, resolve_device
    from dlrepro.sampling import SamplingConfig, sample_documents, sample_documents_on_devices
    from dlrepro.textstats import diversity_stats

    params = LMParams.from_json(args.params)
    _set_threads(params)
    sp = params.sampling
    device = resolve_device(sp.device)
    devices = _sampling_devices(device, params.compute.get("devices", 1))
    real = corpus.real_pool(args.real_manifest)
    model, meta = load_model(args.model, device)
    if model.config.vocab_size != real.vocab_size:
        raise InputFileError(
            f"{args.model} has vocab_size {model.config.vocab_size}, {args.real_manifest} has {real.vocab_size}"
        )
    generation = int(meta["generation"]) + 1
    # an independent stream per (seed, pool), so a chain may pass the same --seed every generation
    stream_seed = int(np.random.SeedSequence([args.seed, generation]).generate_state(1, dtype=np.uint64)[0] >> 1)
    log = get_logger("collapse", step="sample", model=meta["name"], policy=meta["policy"],
                     gen=generation, seed=args.seed)
    cfg = SamplingConfig(
        temperature=sp.temperature, top_k=sp.top_k, top_p=sp.top_p,
        max_new_tokens=sp.max_new_tokens or model.config.block_size - 1,
        batch_size=sp.batch_size, use_cache=True,
        # compute.compile: the decode step too, on CUDA (Inductor's CPU compile takes minutes)
        compile=bool(params.compute.get("compile")) and device.startswith("cuda"),
    )
    log.info("sampling %d documents (as many as the real training split) on %s", real.n_documents,
             ", ".join(devices))
    bf16 = device.startswith("cuda")
    if len(devices) > 1:  # one process per device, each on its share of the documents
        del model
        docs = sample_documents_on_devices(
            functools.partial(_sampling_model, str(args.model)), real.n_documents, cfg, bos_id=real.eot_id,
            eos_id=real.eot_id, seed=stream_seed, devices=devices,
            threads=params.compute.get("num_threads"), bf16=bf16)
    else:
        with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            docs = sample_documents(model, real.n_documents, cfg, bos_id=real.eot_id, eos_id=real.eot_id,
                                    seed=stream_seed, device=device)
    pick = corpus.sample_for_stats(len(docs), sp.stats_max_documents, args.seed)
    stats = diversity_stats([docs[i] for i in pick])
    manifest = corpus.write_synthetic_corpus(args.out_dir, docs, real=real, generation=generation, manifest={
        "seed": args.seed,
        "sampling_seed": stream_seed,  # SeedSequence([seed, generation]), passed to sample_documents
        "sampling": asdict(cfg),
        "sampling_streams": "per document: dlrepro.sampling.document_uniforms(stream_key(sampling_seed), doc, step)",
        "device": device,
        "devices": len(devices),
        "source_model": model_provenance(args.model, meta),
        "documents_at_max_length": int(sum(len(d) == cfg.max_new_tokens for d in docs)),
        "diversity": stats,
        "stats_documents": int(pick.size),
    })
    log.info("wrote %d documents, %d tokens; diversity %s", manifest["n_documents"], manifest["n_tokens"],
             " ".join(f"{k}={v:.4g}" for k, v in stats.items() if k in DIVERSITY_COLUMNS))
    return 0


def _sampling_devices(device: str, n: int) -> list[str]:
    """``compute.devices`` sampling processes: ``cuda:0 .. cuda:n-1``, or ``n`` CPU processes."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ParamsError(f"params.compute.devices must be an int >= 1, got {n!r}")
    if device == "cpu" or n == 1:
        return [device] * n
    import torch

    if torch.cuda.device_count() < n:
        raise ParamsError(f"compute.devices={n} but only {torch.cuda.device_count()} CUDA devices are visible")
    return [f"cuda:{i}" for i in range(n)]


def _sampling_model(path: str, device: str):
    """The model of ``path`` on ``device`` (what each sampling process loads)."""
    from dlrepro.collapse.lm import load_model

    return load_model(path, device)[0]


def _set_threads(params: LMParams) -> None:
    """Use ``compute.num_threads`` CPU threads outside training too (the harness sets them there)."""
    from dlrepro.cpu import configure

    configure(params.compute.get("num_threads"))


def cmd_evaluate(args) -> int:
    from dlrepro.collapse.lm import TokenStream, evaluate_tokens, load_model, model_provenance, resolve_device

    params = LMParams.from_json(args.params)
    _set_threads(params)
    manifest = read_json(args.manifest)
    split = args.split or Path(args.tokens).stem
    if split not in manifest.get("splits", {}):
        raise InputFileError(f"--split {split!r} is not a split of {args.manifest}: {sorted(manifest.get('splits', {}))}")
    info = manifest["splits"][split]
    digest = sha256_file(args.tokens)
    if digest != info["sha256"]:
        raise InputFileError(f"{args.tokens}: sha256 {digest} differs from the {split} split's {info['sha256']}")
    device = resolve_device(params.eval.device)
    model, meta = load_model(args.model, device)
    log = get_logger("collapse", step="evaluate", model=meta["name"], policy=meta["policy"],
                     gen=meta["generation"], seed=meta["seed"])
    stream = TokenStream.of_file(corpus.TokenFile(args.tokens), model.config.block_size)
    log.info("%s split: %d tokens in windows of %d", split, stream.n_tokens, stream.block_size)
    result = evaluate_tokens(model, stream, batch_size=params.eval.batch_size, device=device,
                             progress_every=50, log=log)
    out = {
        "model": model_provenance(args.model, meta),
        "split": split,
        "tokens": str(args.tokens),
        "tokens_sha256": digest,
        "n_tokens": stream.n_tokens,
        "n_predicted": result["n_predicted"],
        "n_chars": int(info["n_chars"]),
        "loss_sum_nats": result["loss_sum"],
        "test_loss": result["loss"],
        "test_nats_per_char": result["loss_sum"] / int(info["n_chars"]),
        "block_size": stream.block_size,
        "protocol": "non-overlapping windows of block_size targets (context restarts at each window); "
                    "every token after the first predicted once; nats/char = summed nats / n_chars",
    }
    write_json(args.out, out)
    log.info("test loss %.4f nats/token, %.4f nats/char", out["test_loss"], out["test_nats_per_char"])
    return 0


def summary_table(evals: list[dict], specs: dict[str, dict]):
    """The tidy summary (see the module docstring) from eval JSONs and specs keyed by sha256."""
    import pandas as pd

    rows = []
    for ev in evals:
        m = ev["model"]
        spec = specs.get(m["data_sha256"])
        if spec is None:
            raise InputFileError(
                f"no --mixes file matches the data spec model {m['path']} was trained on "
                f"({m['data_spec']}, sha256 {m['data_sha256']})"
            )
        row = {
            "dataset": m["dataset"], "model": m["name"], "arch": m["arch"], "n_params": m["n_params"],
            "n_params_non_embedding": m["n_params_non_embedding"], "policy": spec["policy"],
            "generation": spec["generation"], "seed": spec["seed"],
            "train_documents": spec["totals"]["documents"],
            "train_tokens": spec["totals"]["train_tokens"], "real_tokens": spec["totals"]["real_tokens"],
            "synthetic_tokens": spec["totals"]["synthetic_tokens"], "tokens_seen": m["tokens_seen"],
            "test_loss": ev["test_loss"], "test_nats_per_char": ev["test_nats_per_char"],
        }
        row.update({k: spec["diversity"][k] for k in DIVERSITY_COLUMNS})
        rows.append(row)
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    # train_documents tells apart the runs of a data-size sweep (subsets of the real split)
    key = ["dataset", "model", "policy", "generation", "seed", "train_documents"]
    dup = table[table.duplicated(key, keep=False)]
    if len(dup):
        raise InputFileError(f"several evals for the same {key}: {dup[key].to_dict('records')[:3]}")
    # generation 0 is shared: repeat it under every policy of its (dataset, model, seed)
    base = table[table["generation"] == 0]
    later = table[table["generation"] > 0]
    pieces = [later]
    for _, row in base.iterrows():
        same = later[(later["dataset"] == row["dataset"]) & (later["model"] == row["model"])]
        names = sorted(same["policy"].unique()) or [row["policy"]]
        pieces.append(pd.DataFrame([{**row.to_dict(), "policy": p} for p in names], columns=SUMMARY_COLUMNS))
    table = pd.concat([p for p in pieces if len(p)], ignore_index=True)
    return table.sort_values(key, kind="stable").reset_index(drop=True)


def cmd_summarize(args) -> int:
    log = get_logger("collapse", step="summarize")
    specs = {}
    for path in args.mixes:
        specs[sha256_file(path)] = corpus.read_spec(path, verify=False)
    table = summary_table([read_json(p) for p in args.evals], specs)
    write_csv(args.out, table)
    log.info("wrote %d rows to %s", len(table), args.out)
    return 0


def cmd_plot(args) -> int:
    import pandas as pd

    from dlrepro.collapse.plots import plot_test_loss

    table = pd.read_csv(args.csv)
    written = plot_test_loss(table, args.out)
    get_logger("collapse", step="plot").info("wrote %s", ", ".join(map(str, written)))
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dlrepro collapse", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def stats_arg(p):
        p.add_argument("--stats-max-documents", type=int, default=None,
                       help="diversity statistics on a seeded sample of this many documents (default: all)")

    p = sub.add_parser("real-spec", help="data spec of generation 0 (the real training split)")
    p.add_argument("--fraction", type=float, default=None,
                   help="train on a seeded uniform subset of this fraction of the documents")
    p.add_argument("--real", required=True, help="the data stage's manifest.json")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    stats_arg(p)
    p.set_defaults(func=cmd_real_spec)

    p = sub.add_parser("mix", help="apply a mixing policy for generation G >= 1")
    p.add_argument("--policy", required=True)
    p.add_argument("--generation", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--real", required=True, help="the data stage's manifest.json")
    p.add_argument("--synthetic", nargs="+", required=True, help="synthetic corpus dirs 1..G in order")
    p.add_argument("--out", required=True)
    stats_arg(p)
    p.set_defaults(func=cmd_mix)

    p = sub.add_parser("train", help="train a fresh model on a data spec")
    p.add_argument("--params", required=True)
    p.add_argument("--data", required=True, help="data spec from real-spec or mix")
    p.add_argument("--val-tokens", required=True)
    p.add_argument("--ckpt-dir", required=True)
    p.add_argument("--out-model", required=True)
    p.add_argument("--out-metrics", required=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample a synthetic corpus from a model")
    p.add_argument("--params", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--real-manifest", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="test loss on a real held-out split")
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default=None, help="split name in the manifest (default: the tokens file's stem)")
    p.add_argument("--params", default="{}", help="JSON; only its eval section is used")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("summarize", help="tidy summary.csv")
    p.add_argument("--evals", nargs="+", required=True)
    p.add_argument("--mixes", nargs="+", required=True, help="every data spec (real-spec and mix outputs)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_summarize)

    p = sub.add_parser("plot", help="test loss vs generation figure")
    p.add_argument("--csv", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
