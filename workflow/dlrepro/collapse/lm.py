"""The language model of the model-collapse stage: batches of token windows, the Lightning
module, held-out evaluation, and the saved-model format.

Training windows. The training stream of a data spec is the concatenation of its runs
(:func:`dlrepro.collapse.corpus.spec_runs`: the selected documents of each share in order,
every document followed by its end-of-text, so documents are separated as in the real data
and a window may cross from one document, or one source, into the next). With context
``T = block_size`` the stream of ``L`` tokens holds ``(L - 1) // T`` windows; window ``w``
is the ``T + 1`` tokens at stream positions ``[w T, w T + T]`` (input = the first ``T``,
target = the last ``T``), so consecutive windows share one token and every stream token
after the first is a target exactly once per epoch. A window index is mapped to ``(file,
offset)`` pieces by a binary search over the runs' stream offsets; only those tokens are
read from disk (:class:`~dlrepro.collapse.corpus.TokenFile`), so memory does not grow with
the corpus. The last ``(L - 1) mod T`` targets of the stream are not used in training.

Evaluation protocol (:func:`evaluate_tokens`): the held-out array is cut into the same
non-overlapping windows of ``T`` targets, plus one shorter window for the remaining
targets, so every token after the first is predicted exactly once, with the context
restarting at each window boundary (between 0 and ``T - 1`` tokens of context, ``(T -
1) / 2`` on average). The loss is the sum of the cross-entropies (nats) over all predicted
tokens divided by their number; nats/char divides the same sum by the split's characters.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, fields

import numpy as np
import torch

from dlrepro.collapse.corpus import TokenFile
from dlrepro.errors import ParamsError
from dlrepro.io import save_torch, sha256_file
from dlrepro.models.transformer import Transformer, TransformerConfig


class TokenStream:
    """Windows of ``block_size + 1`` tokens over a stream made of runs of token files."""

    def __init__(self, files: list[TokenFile], runs: np.ndarray, block_size: int) -> None:
        runs = np.asarray(runs, dtype=np.int64).reshape(-1, 3)
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.files, self.runs, self.block_size = files, runs, int(block_size)
        self.offsets = np.concatenate([[0], np.cumsum(runs[:, 2])]).astype(np.int64)
        self.n_tokens = int(self.offsets[-1])
        self.n_windows = max(0, (self.n_tokens - 1) // self.block_size)

    @classmethod
    def of_file(cls, tf: TokenFile, block_size: int) -> "TokenStream":
        return cls([tf], np.array([[0, 0, len(tf)]]), block_size)

    def read(self, start: int, count: int) -> np.ndarray:
        """Stream tokens ``[start, start + count)`` (int64)."""
        if start < 0 or start + count > self.n_tokens:
            raise IndexError(f"stream range [{start}, {start + count}) outside [0, {self.n_tokens})")
        out = np.empty(count, dtype=np.int64)
        r = int(np.searchsorted(self.offsets, start, side="right")) - 1
        done = 0
        while done < count:
            file_idx, file_start, length = self.runs[r]
            local = start + done - self.offsets[r]
            take = int(min(count - done, length - local))
            out[done:done + take] = self.files[file_idx].read(int(file_start + local), take)
            done += take
            r += 1
        return out

    def window(self, w: int) -> np.ndarray:
        return self.read(int(w) * self.block_size, self.block_size + 1)

    def collate(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets ``[B, T]`` of the windows ``indices``."""
        if len(indices) and (np.min(indices) < 0 or np.max(indices) >= self.n_windows):
            raise IndexError(f"window indices outside [0, {self.n_windows})")
        batch = torch.from_numpy(np.stack([self.window(w) for w in indices]))
        return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_tokens(
    model: Transformer,
    stream: TokenStream,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    max_windows: int | None = None,
    progress_every: int = 0,
    log=None,
) -> dict:
    """Mean cross-entropy (nats/token) over ``stream`` by the module docstring's protocol.

    With ``max_windows`` only that many full windows, evenly spaced over the stream, are
    used (a cheap validation estimate); otherwise every target token is scored once.
    Returns ``{"loss_sum", "n_predicted", "loss"}``.
    """
    T = stream.block_size
    windows = np.arange(stream.n_windows)
    tail = stream.n_tokens - 1 - stream.n_windows * T  # targets after the last full window
    if max_windows is not None and max_windows < stream.n_windows:
        windows = np.unique(np.linspace(0, stream.n_windows - 1, max_windows).round().astype(np.int64))
        tail = 0
    was_training = model.training
    model.eval()
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    total, count = 0.0, 0

    def score(x: torch.Tensor, y: torch.Tensor) -> None:
        nonlocal total, count
        logits, _ = model(x.to(device))
        total += float(loss_fn(logits.reshape(-1, logits.size(-1)), y.to(device).reshape(-1)))
        count += y.numel()

    try:
        n_batches = math.ceil(len(windows) / batch_size)
        for b in range(n_batches):
            score(*stream.collate(windows[b * batch_size:(b + 1) * batch_size]))
            if log is not None and progress_every and (b + 1) % progress_every == 0:
                log.info("evaluated %d/%d batches", b + 1, n_batches)
        if tail > 0:
            last = torch.from_numpy(stream.read(stream.n_windows * T, tail + 1))[None]
            score(last[:, :-1], last[:, 1:])
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(f"nothing to evaluate: the stream has {stream.n_tokens} tokens")
    return {"loss_sum": total, "n_predicted": count, "loss": total / count}


# --------------------------------------------------------------------------- saved models


def save_model(path: str | os.PathLike, model: Transformer, meta: dict) -> None:
    """``torch.save`` of ``{"model_config", "state_dict", "meta"}``, atomically.

    ``meta`` records what the model was trained on (data spec path and sha256, its policy,
    generation, seed and data set), the model's name and parameter counts.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"model_config": asdict(model.config), "state_dict": state, "meta": meta}
    save_torch(path, payload)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Transformer, dict]:
    """The model saved by :func:`save_model` (in eval mode on ``device``) and its meta."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    known = {f.name for f in fields(TransformerConfig)}
    model = Transformer(TransformerConfig(**{k: v for k, v in payload["model_config"].items() if k in known}))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), dict(payload["meta"])


def model_provenance(path: str | os.PathLike, meta: dict) -> dict:
    """Where a model file is and what it is: path, sha256 and the meta it was saved with."""
    return {"path": str(path), "sha256": sha256_file(path), **meta}


def resolve_device(device: str) -> str:
    """``"auto"`` -> cuda if available; a request for cuda without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParamsError(f"device {device!r} requested but no CUDA device is visible")
    if device != "cpu" and not device.startswith("cuda"):
        raise ParamsError(f"device must be 'cpu', 'cuda[:N]' or 'auto', got {device!r}")
    return device


__all__ = [
    "TokenStream",
    "LanguageModel",
    "evaluate_tokens",
    "save_model",
    "load_model",
    "model_provenance",
    "resolve_device",
]
