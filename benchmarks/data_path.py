"""Data path: peak memory of a training job on a 2 GB token file, and tokenisation MB/s.

**Peak RSS of a training job.** The benchmark writes a 1-D ``uint16`` token file of
``n_tokens`` tokens (default 2**30 tokens = 2.1 GB, written in chunks with a streamed sha256,
never held in memory; random ids with the end-of-text id 0 as document separator) plus the
data stage's ``manifest.json`` beside it, and runs the model-collapse stage's own jobs on it,
each in a fresh ``python`` process (``parallel`` at a time: peak RSS is per process, so
this changes no number): ``collapse real-spec`` (the data spec of generation 0),
then ``collapse train`` (:class:`~dlrepro.collapse.lm.TokenStream` over the spec,
:class:`~dlrepro.training.StepBatches`, :class:`~dlrepro.collapse.module.LanguageModel` in
:func:`~dlrepro.training.fit`, validation and model saving: exactly what the Snakemake rule
runs) for ``steps`` steps of the default config's model (GPT-2 style, d_model 64, 2 layers,
block 128, batch 16). ``optim.epochs`` is set to the fraction of an epoch that gives
``steps`` steps, so the batches are drawn from the epoch's permutation of *all* windows of
the file: they are spread over the whole file (reported: ``windows.span``, the fraction of
the file between the first and last window read, and how many of 16 equal parts of the
file were read).

A process's peak RSS is its ``VmHWM`` (``/proc/self/status``, read by a small wrapper in
the job's process when the job returns; ``ru_maxrss`` where there is no ``/proc``): the peak
since ``exec``, so nothing of the benchmark's own process is counted (``ru_maxrss`` of a
waited-for child would be: Linux carries the pre-``exec`` size of the forked parent into
it). The baseline, in the same command, is the same job on a tiny token file
(``baseline_tokens``). Most of a job's peak is not data: importing torch and Lightning alone
takes about 500 MB, and the training step's transient tensors add a peak that varies by tens
of MB from run to run. So the data path is also measured alone, deterministically: a fresh
process builds the job's data path from its spec (``spec_runs``, ``TokenStream``,
``StepBatches`` with ``collate``: reads and batches, no model) and serves ``data_batches``
batches of random windows, reporting the growth of its peak RSS over its peak before the
first read; once for the tiny file and once for the big one (the difference is reported:
the first batches cost a few MB of one-off allocations whatever the file). The one part of
the data path that grows with the file is :class:`~dlrepro.training.StepBatches`' epoch permutation of the
window indices (4 bytes a window, uint32, shuffled in place: 34 MB for 2**30 tokens at
block 128, 1/64 of a uint16 file); ``data_path_growth_beyond_permutation_mb`` is the rest.

"Memory-mapped": the workflow reads token files with ``os.pread`` of the byte ranges a batch
needs (:class:`~dlrepro.collapse.corpus.TokenFile`), which has the memory behaviour the
issue asks of a memory map (the file is never loaded; only the windows being read pass
through the process) without a map's cost: the pages a map touches are counted in the
process's RSS (file-backed, but resident; a cluster's RSS limit counts them) and stay
there, so random windows over a ``np.memmap`` bring the process towards the size of the
file. Measured: the data-path-only run on the big file once more with ``TokenFile.read``
replaced by slices of ``np.load(path, mmap_mode="r")`` (same batches, checked by a
checksum), reported as its growth over the tiny file's os.pread run.

**Tokenisation.** The data stage's :func:`dlrepro.data.text.encode_documents` (Hugging Face
``tokenizers``' ``encode_batch``: Rust, multi-threaded over the documents) against a loop of
``tok.encode`` one document at a time, building the same array; the two outputs must be
identical (checked). Text: the offline data mirror (``$DLREPRO_DATA_MIRROR``, else
``../shared/data``): TinyStories' ``valid`` file if it is there, else tinyshakespeare, cut
into documents with the registry's separator; without a mirror a deterministic generated
text. The documents are cycled to ``text_mb`` MB (10**6 bytes of UTF-8); the tokenizer is
:func:`~dlrepro.data.text.train_tokenizer` (byte-level BPE, vocab 2048) trained on the first
``tokenizer_train_mb`` MB. MB/s = UTF-8 bytes of the documents / seconds, the median of
``repeats`` interleaved runs of each side after a warm-up, in a fresh process (so that no
state of the caller, e.g. ``TOKENIZERS_PARALLELISM`` set by an earlier fork, changes the
thread count; the process inherits the caller's environment). Both sides do the same CPU
work; the batch API spreads it over the cores, so its gain needs idle cores:
``tokenisation.batch_cpu_per_wall`` (CPU seconds per second of the batch side) says how many
it got. On a machine busy with other work it is below 1 and the two sides run at the same
speed.

Memory is in MB (10**6 bytes); timings on a shared machine are noisy, memory is not.

    .venv/bin/python -m benchmarks data_path [--quick]
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks import check, data_mirror

NAME = "data_path"
# bytes per window of StepBatches' epoch permutation (uint32 below 2**32 windows)
PERMUTATION_BYTES = 4
ROOT = Path(__file__).resolve().parents[1]
EOT_ID = 0  # train_tokenizer puts <|endoftext|> at id 0
MB = 1e6


@dataclass
class Setup:
    n_tokens: int = 1 << 30  # the big token file (uint16: 2 bytes a token)
    baseline_tokens: int = 1 << 20  # the tiny file of the baseline job
    val_tokens: int = 1 << 16
    vocab_size: int = 2048
    d_model: int = 64  # the default config's model (gpt2-d64)
    n_layer: int = 2
    n_head: int = 4
    block_size: int = 128
    batch_size: int = 16
    steps: int = 40
    threads: int = 1  # torch threads of a training job: the default config's compute.train_resources.threads
    data_batches: int = 1 << 14  # batches served by the data-path-only runs (pread / np.memmap)
    text_mb: float = 8.0  # text tokenised per side and repeat
    tokenizer_train_mb: float = 1.0
    tokenizer_vocab: int = 2048
    repeats: int = 3
    seed: int = 0
    parallel: int = 2  # jobs of the memory part run side by side (peak RSS is per process, threads 1 each)
    workdir: str | None = None  # where the token files go (default: the system's temp folder)


QUICK = Setup(n_tokens=1 << 22, baseline_tokens=1 << 16, val_tokens=1 << 13, vocab_size=512, d_model=32,
              block_size=32, batch_size=8, steps=4, data_batches=512, text_mb=0.3,
              tokenizer_train_mb=0.2, tokenizer_vocab=512, repeats=1)


# --------------------------------------------------------------------------- token files


def write_token_file(path: Path, n_tokens: int, vocab_size: int, seed: int,
                     chunk: int = 1 << 24) -> dict:
    """A ``.npy`` of ``n_tokens`` random uint16 ids ending with end-of-text, written in chunks.

    Returns ``{"n_tokens", "n_documents", "sha256", "bytes"}`` (sha256 streamed while writing).
    """
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint16)),
                                                  "fortran_order": False, "shape": (int(n_tokens),)})
    digest = hashlib.sha256(header.getvalue())
    rng = np.random.default_rng([seed, 0xDA7A])
    n_docs = 0
    with open(path, "wb") as fh:
        fh.write(header.getvalue())
        for start in range(0, n_tokens, chunk):
            block = rng.integers(0, vocab_size, size=min(chunk, n_tokens - start), dtype=np.uint16)
            if start + block.size == n_tokens:
                block[-1] = EOT_ID  # every document is followed by end-of-text
            n_docs += int(np.count_nonzero(block == EOT_ID))
            digest.update(block)  # the buffer itself, no copy
            fh.write(block)
    return {"n_tokens": int(n_tokens), "n_documents": n_docs, "sha256": digest.hexdigest(),
            "bytes": path.stat().st_size}


def _dataset(folder: Path, n_tokens: int, setup: Setup, seed: int) -> dict:
    """``folder/train.npy`` and the data stage's ``manifest.json`` describing it."""
    folder.mkdir(parents=True, exist_ok=True)
    info = write_token_file(folder / "train.npy", n_tokens, setup.vocab_size, seed)
    manifest = {"dataset": "benchmark-random", "kind": "text", "vocab_size": setup.vocab_size,
                "eot_id": EOT_ID, "token_dtype": "uint16",
                "splits": {"train": {k: info[k] for k in ("n_documents", "n_tokens", "sha256")}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return info


# --------------------------------------------------------------------------- child processes

# Runs in a fresh interpreter: the job (a dlrepro command, or the training job's data path
# alone), then writes its peak RSS since exec (VmHWM) into a JSON file.
_CHILD = r"""
import json, resource, sys, time

def rss_mb(key):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6 if key == "VmHWM" else None

out, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
result = {"mode": mode}
t0 = time.perf_counter()
if mode == "dlrepro":
    from dlrepro.__main__ import run  # in this process (never handed to a warm-start server)
    result["rc"] = int(run(args) or 0)
else:  # batches <pread|memmap> SPEC N_BATCHES BATCH BLOCK SEED: the job's data path, no model
    from dlrepro.collapse import corpus
    from dlrepro.collapse.lm import TokenStream
    from dlrepro.training import StepBatches
    method, spec_path = args[0], args[1]
    n_batches, batch, block, seed = (int(a) for a in args[2:6])
    if method == "memmap":  # the same reader over np.memmap instead of os.pread
        import numpy as np
        def read(self, start, count):
            if self.__dict__.get("_mm") is None:
                self._mm = np.load(self.path, mmap_mode="r")
            return np.array(self._mm[start:start + count])
        corpus.TokenFile.read = read
    spec = corpus.read_spec(spec_path, verify=False)
    result["peak_before_mb"] = rss_mb("VmHWM")
    files, runs = corpus.spec_runs(spec_path, spec)
    stream = TokenStream(files, runs, block)
    checksum = 0
    for x, y in StepBatches(stream.n_windows, batch, n_batches, seed, stream.collate):
        checksum += int(x[:, 0].sum())
    result["checksum"] = checksum
    result["rss_file_mb"] = rss_mb("RssFile")
    result["rc"] = 0
result["wall_s"] = time.perf_counter() - t0
result["peak_rss_mb"] = rss_mb("VmHWM")
with open(out, "w") as fh:
    json.dump(result, fh)
"""


def _env() -> dict:
    env = dict(os.environ)
    paths = [str(ROOT), str(ROOT / "workflow")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_child(mode: str, args: list[str], out: Path, timeout: float = 1800) -> dict:
    """Run ``_CHILD`` in a fresh process; its result with ``peak_rss_mb``."""
    cmd = [sys.executable, "-c", _CHILD, str(out), mode, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"data_path child {mode} {args[:2]} failed ({proc.returncode}):\n"
                           f"{proc.stderr[-4000:]}")
    result = json.loads(out.read_text())
    if result.get("rc"):
        raise RuntimeError(f"data_path child {mode} {args[:2]} returned {result['rc']}:\n{proc.stderr[-4000:]}")
    return result


def _params(setup: Setup, n_windows: int) -> str:
    steps_per_epoch = n_windows // setup.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{n_windows} windows are fewer than one batch of {setup.batch_size}")
    return json.dumps({
        "name": "bench",
        "model": {"arch": "gpt2", "n_layer": setup.n_layer, "n_head": setup.n_head,
                  "d_model": setup.d_model, "block_size": setup.block_size},
        # ceil(epochs * steps_per_epoch) == steps: the stage's own way to set the budget
        "optim": {"lr": 0.003, "warmup_steps": min(20, setup.steps // 4), "batch_size": setup.batch_size,
                  "epochs": (setup.steps - 0.5) / steps_per_epoch},
        "compute": {"accelerator": "cpu", "devices": 1, "num_threads": setup.threads,
                    "log_every_n_steps": setup.steps, "checkpoint_every_n_steps": 50},
        "eval": {"device": "cpu", "batch_size": 32, "val_max_windows": 64},
    })


def _spec_args(setup: Setup, folder: Path) -> list:
    return ["collapse", "real-spec", "--real", folder / "manifest.json", "--seed", setup.seed,
            "--out", folder / "spec.json", "--stats-max-documents", 64]


def _train_args(setup: Setup, folder: Path, n_tokens: int, val: Path) -> list:
    n_windows = (n_tokens - 1) // setup.block_size
    return ["collapse", "train", "--params", _params(setup, n_windows), "--data", folder / "spec.json",
            "--val-tokens", val, "--ckpt-dir", folder / "ckpt", "--out-model", folder / "model.pt",
            "--out-metrics", folder / "metrics.json"]


def _train_result(setup: Setup, folder: Path, n_tokens: int, prep: dict, train: dict) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"n_tokens": n_tokens, "n_windows": (n_tokens - 1) // setup.block_size, "steps": metrics["steps"],
            "final_train_loss": metrics["final_train_loss"], "val_loss": metrics["val_loss"],
            "peak_rss_mb": train["peak_rss_mb"], "wall_s": train["wall_s"],
            "real_spec_peak_rss_mb": prep["peak_rss_mb"], "real_spec_wall_s": prep["wall_s"]}


def run_children(jobs: dict[str, tuple[str, list, Path]], parallel: int) -> dict[str, dict]:
    """:func:`run_child` for each ``name: (mode, args, out)``, ``parallel`` at a time.

    Peak RSS is per process, so running jobs side by side changes none of the numbers.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {name: pool.submit(run_child, *job) for name, job in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def window_spread(setup: Setup, n_windows: int, steps: int) -> dict:
    """Where in the file the job's batches are: its ``StepBatches`` indices, recomputed."""
    from dlrepro.training import StepBatches

    batches = StepBatches(n_windows, setup.batch_size, steps, setup.seed, collate=lambda idx: idx)
    windows = np.concatenate([batches.indices(s) for s in range(steps)])
    parts = np.unique(windows * 16 // n_windows)
    return {"read": int(windows.size), "span": float((windows.max() - windows.min()) / max(1, n_windows - 1)),
            "parts_of_16": int(parts.size)}


# --------------------------------------------------------------------------- tokenisation


def _generated_text(n_bytes: int, seed: int = 0) -> str:
    """Deterministic English-like text: Zipf-distributed pseudo-words, sentences, paragraphs."""
    rng = np.random.default_rng([seed, 0x7E47])
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    freq = 1.0 / np.arange(1, 27)
    words = ["".join(rng.choice(letters, size=rng.integers(1, 9), p=freq / freq.sum())) for _ in range(5000)]
    p = 1.0 / np.arange(1, len(words) + 1)
    out, size = [], 0
    while size < n_bytes:  # a batch of paragraphs per round: one draw of word indices
        idx = iter(rng.choice(len(words), size=200_000, p=p / p.sum()).tolist())
        for _ in range(2000):
            sentences = []
            for _ in range(int(rng.integers(1, 6))):
                ws = [words[next(idx)] for _ in range(int(rng.integers(4, 16)))]
                sentences.append(" ".join(ws).capitalize() + ".!?."[int(rng.integers(0, 4))])
            para = " ".join(sentences)
            out.append(para)
            size += len(para) + 2
            if size >= n_bytes:
                break
    return "\n\n".join(out)


def load_documents(n_bytes: int) -> tuple[list[str], str]:
    """Documents of real text (the mirror) or generated text, and where they came from."""
    from dlrepro.data.registry import DATASETS
    from dlrepro.data.text import split_documents

    m = data_mirror()
    for name, file in (("tinystories", "TinyStoriesV2-GPT4-valid.txt"), ("tinyshakespeare", "input.txt")):
        path = m / name / file if m else None
        if path is not None and path.is_file():
            with open(path, encoding="utf-8") as fh:
                text = fh.read(int(n_bytes) + 1_000_000)  # enough; TinyStories' file is large
            docs = split_documents(text, DATASETS[name].doc_separator)
            if docs:
                return docs, f"{name}/{file}"
    return split_documents(_generated_text(int(n_bytes)), "\n\n"), "generated"


def _take(docs: list[str], n_bytes: float, cycle: bool) -> list[str]:
    out, size, i = [], 0, 0
    while size < n_bytes and (cycle or i < len(docs)):
        doc = docs[i % len(docs)]
        out.append(doc)
        size += len(doc.encode("utf-8"))
        i += 1
    return out


def encode_one_at_a_time(tok, docs: list[str], dtype, eot_id: int) -> np.ndarray:
    """:func:`dlrepro.data.text.encode_documents` with ``tok.encode`` per document (the baseline)."""
    eot = np.asarray([eot_id], dtype=dtype)
    pieces = []
    for doc in docs:
        pieces.append(np.asarray(tok.encode(doc, add_special_tokens=False).ids, dtype=dtype))
        pieces.append(eot)
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)


def tokenisation(setup: Setup) -> dict:
    """Batch vs one-at-a-time encoding MB/s in this process (see the module docstring)."""
    from dlrepro.data.text import EOT, encode_documents, train_tokenizer

    source, origin = load_documents(max(setup.text_mb, setup.tokenizer_train_mb) * MB)
    tok = train_tokenizer(_take(source, setup.tokenizer_train_mb * MB, cycle=False), setup.tokenizer_vocab)
    eot_id = tok.token_to_id(EOT)
    docs = _take(source, setup.text_mb * MB, cycle=True)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    dtype = np.uint16 if tok.get_vocab_size() <= 65536 else np.uint32
    warm = docs[: max(1, len(docs) // 20)]
    encode_documents(tok, warm, dtype, eot_id)  # thread pool, caches
    encode_one_at_a_time(tok, warm, dtype, eot_id)
    batch_s, single_s, batch_cpu, single_cpu, identical = [], [], [], [], True

    def cpu() -> float:
        t = os.times()
        return t.user + t.system

    for _ in range(setup.repeats):  # interleaved, so that machine noise hits both sides
        t0, c0 = time.perf_counter(), cpu()
        batch = encode_documents(tok, docs, dtype, eot_id)
        t1, c1 = time.perf_counter(), cpu()
        single = encode_one_at_a_time(tok, docs, dtype, eot_id)
        t2, c2 = time.perf_counter(), cpu()
        batch_s.append(t1 - t0)
        single_s.append(t2 - t1)
        batch_cpu.append((c1 - c0) / (t1 - t0))
        single_cpu.append((c2 - c1) / (t2 - t1))
        identical = identical and bool(np.array_equal(batch, single))
    batch_mbs = n_bytes / MB / statistics.median(batch_s)
    single_mbs = n_bytes / MB / statistics.median(single_s)
    return {"text": origin, "documents": len(docs), "bytes": n_bytes, "tokens": int(batch.size),
            "vocab_size": tok.get_vocab_size(), "identical_ids": identical,
            "batch_mb_per_s": batch_mbs, "single_mb_per_s": single_mbs, "speedup": batch_mbs / single_mbs,
            "batch_s": batch_s, "single_s": single_s,
            # CPU seconds per second of each side: how many cores it kept busy
            "batch_cpu_per_wall": statistics.median(batch_cpu), "single_cpu_per_wall": statistics.median(single_cpu),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "RAYON_NUM_THREADS": os.environ.get("RAYON_NUM_THREADS"),
            "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM")}


def _tokenisation_child() -> None:
    """``python -c``: run :func:`tokenisation` on the Setup JSON in argv[1]; print its JSON."""
    print(json.dumps(tokenisation(Setup(**json.loads(sys.argv[1])))))


def tokenisation_in_fresh_process(setup: Setup) -> dict:
    code = "import benchmarks.data_path as m; m._tokenisation_child()"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(asdict(setup))], capture_output=True,
                          text=True, env=_env(), cwd=ROOT, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"data_path tokenisation failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the benchmark


def benchmark(setup: Setup) -> dict:
    big_bytes = 2 * setup.n_tokens
    with tempfile.TemporaryDirectory(prefix="dlrepro-data-path-", dir=setup.workdir) as tmp:
        tmp = Path(tmp)
        free = shutil.disk_usage(tmp).free
        if free < 1.2 * big_bytes + 200e6:
            raise RuntimeError(f"{tmp}: {free / 1e9:.1f} GB free, the token file needs {big_bytes / 1e9:.1f} GB; "
                               "set Setup.workdir to a folder with room")
        t0 = time.perf_counter()
        big_info = _dataset(tmp / "big", setup.n_tokens, setup, setup.seed)
        write_s = time.perf_counter() - t0
        _dataset(tmp / "tiny", setup.baseline_tokens, setup, setup.seed + 1)
        val = tmp / "val.npy"
        write_token_file(val, setup.val_tokens, setup.vocab_size, setup.seed + 2)

        sizes = {"tiny": setup.baseline_tokens, "big": setup.n_tokens}
        specs = run_children({name: ("dlrepro", _spec_args(setup, tmp / name), tmp / f"spec-{name}.json")
                              for name in sizes}, setup.parallel)
        # the training jobs, and the same data path alone (through os.pread and np.memmap)
        jobs = {f"train_{name}": ("dlrepro", _train_args(setup, tmp / name, n, val), tmp / f"train-{name}.json")
                for name, n in reversed(sizes.items())}
        for name, method in (("big", "pread"), ("big", "memmap"), ("tiny", "pread")):
            jobs[f"{name}_{method}"] = ("batches", [method, tmp / name / "spec.json", setup.data_batches,
                                                    setup.batch_size, setup.block_size, setup.seed],
                                        tmp / f"batches-{name}-{method}.json")
        done = run_children(jobs, setup.parallel)
        baseline, big = (_train_result(setup, tmp / name, sizes[name], specs[name], done[f"train_{name}"])
                         for name in ("tiny", "big"))
        spread = window_spread(setup, big["n_windows"], big["steps"])
        data = {k: {**r, "growth_mb": r["peak_rss_mb"] - r["peak_before_mb"]}
                for k, r in done.items() if not k.startswith("train_")}
        if data["big_pread"]["checksum"] != data["big_memmap"]["checksum"]:
            raise AssertionError("os.pread and np.memmap served different batches")
    tok = tokenisation_in_fresh_process(setup)
    if not tok["identical_ids"]:
        raise AssertionError("encode_batch and one-at-a-time encode gave different token ids")

    permutation_mb = big["n_windows"] * PERMUTATION_BYTES / MB
    growth = big["peak_rss_mb"] - baseline["peak_rss_mb"]
    data_growth = data["big_pread"]["growth_mb"] - data["tiny_pread"]["growth_mb"]
    memmap_growth = data["big_memmap"]["growth_mb"] - data["tiny_pread"]["growth_mb"]
    windows = setup.data_batches * setup.batch_size
    size = f"{big_info['bytes'] / 1e9:.1f} GB" if big_info["bytes"] >= 1e9 else f"{big_info['bytes'] / MB:.1f} MB"
    checks = [
        check(f"peak RSS, training job, {size} token file", big["peak_rss_mb"], "MB", target=1000,
              higher_is_better=False,
              note=f"collapse train (fresh process, VmHWM), {big['steps']} steps of {setup.batch_size} x "
                   f"{setup.block_size} tokens, windows from {spread['parts_of_16']}/16 of the file"),
        check("peak RSS, same job, tiny token file (baseline)", baseline["peak_rss_mb"], "MB",
              note=f"{setup.baseline_tokens:,} tokens"),
        check(f"peak RSS growth, {size} vs tiny file", growth, "MB",
              note=f"{permutation_mb:.0f} MB expected (StepBatches' epoch permutation, 4 B a window); the "
                   "training step's transient peaks vary by tens of MB between runs"),
        check(f"data path only, {windows:,} windows: RSS growth vs tiny file", data_growth, "MB",
              note=f"os.pread (the workflow); {permutation_mb:.0f} MB expected (the epoch permutation)"),
        check("same, np.memmap reader instead of os.pread", memmap_growth, "MB",
              note="the same batches; the pages touched stay resident"),
        check("tokenise, encode_documents (batch API)", tok["batch_mb_per_s"], "MB/s",
              note=f"{tok['text']}, {tok['bytes'] / MB:.0f} MB; {tok['batch_cpu_per_wall']:.1f} of "
                   f"{tok['cpus']} CPUs busy"),
        check("tokenise, tok.encode one document at a time", tok["single_mb_per_s"], "MB/s",
              note="same tokenizer, same ids (checked)"),
        check("tokenise speed-up, batch / one at a time", tok["speedup"], "x"),
    ]
    return {
        "benchmark": NAME,
        "setup": asdict(setup),
        "token_file": {**big_info, "write_s": write_s},
        "baseline": baseline,
        "big": big,
        "rss_growth_mb": growth,
        "permutation_mb": permutation_mb,
        "rss_growth_beyond_permutation_mb": growth - permutation_mb,
        "windows": spread,
        "data_path_only": data,
        "data_path_growth_mb": data_growth,
        "data_path_growth_beyond_permutation_mb": data_growth - permutation_mb,
        "memmap_growth_mb": memmap_growth,
        "tokenisation": tok,
        "checks": checks,
    }

