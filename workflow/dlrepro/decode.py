"""Continuous (in-flight) batching for :func:`dlrepro.sampling.sample_documents`.

``batch_size`` slots decode one token each per step. Slot ``b`` holds one document: its
input token ``tok[b]`` sits at position ``pos[b]`` (0 = the ``bos`` prompt) and its keys and
values at positions ``0 .. pos[b]`` of the slot's row of one preallocated cache
``[n_layer, 2, batch_size, n_head, max_new_tokens, head_dim]``. A step writes each row's new
key and value at that row's own position (``scatter_``) and attends over the whole cache
with a per-row mask ``key position <= pos[b]``, so stale entries of the slot's previous
document are never seen. When a slot's document ends (``eos`` chosen, or
``max_new_tokens`` tokens) the slot restarts at position 0 with the next unassigned
document, in the same step; the batch stays full until the documents run out.

The decode step (:meth:`ContinuousBatcher.step`) is a function of fixed-shape tensors with
no data-dependent Python control flow and no host transfer, so it can be compiled
(``torch.compile(fullgraph=True)``, see ``SamplingConfig.compile``) and a GPU runs it
without waiting for the host. The host looks at the device only every ``EOS_CHECK_EVERY``
steps: one copy of the log of chosen tokens, from which it assembles the finished
documents (:class:`DocumentAssembler`).

The step reuses the model's own modules (embeddings, norms, ``c_attn``/``c_proj``, the MLP,
``lm_head``, ``attn_scale``, ``output_mult``, the rotary tables) and only wires the
attention per row; ``tests/test_sampling.py`` checks its logits against
``Transformer.forward``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from dlrepro.models.transformer import apply_rotary
from dlrepro.sampling_rule import EOS_CHECK_EVERY, SamplingConfig, document_uniforms, inverse_cdf_token


def kv_cache_bytes(n_layer: int, d_model: int, batch_size: int, max_new_tokens: int,
                   bytes_per_element: int = 4) -> int:
    """Size of the continuous batcher's KV cache: ``2 * n_layer * batch_size * max_new_tokens
    * d_model * bytes_per_element`` (keys and values of every layer, slot and position)."""
    return 2 * n_layer * batch_size * max_new_tokens * d_model * bytes_per_element


@torch.no_grad()
def decode_logits(model, tok: torch.Tensor, pos: torch.Tensor, cache: torch.Tensor,
                  key_pos: torch.Tensor) -> torch.Tensor:
    """Logits [B, V] (float32) of one new token per row: ``tok`` [B] at positions ``pos`` [B].

    Writes the rows' keys and values into ``cache`` [n_layer, 2, B, n_head, T, head_dim] at
    their positions; row ``b`` attends to cache positions ``0 .. pos[b]`` (``key_pos`` is
    ``arange(T)``)."""
    B = tok.size(0)
    c = model.config
    nh, hd = c.n_head, c.head_dim
    x = model.transformer.wte(tok[:, None])  # [B, 1, C]
    rope = None
    if c.arch == "gpt2":
        x = x + model.transformer.wpe(pos[:, None])
    else:
        rope = (model.rope_cos[pos][:, None, None, :], model.rope_sin[pos][:, None, None, :])
    x = model.transformer.drop(x)
    mask = (key_pos[None, :] <= pos[:, None])[:, None, None, :]  # [B, 1, 1, T]
    index = pos[:, None, None, None].expand(B, nh, 1, hd)
    for layer, block in enumerate(model.transformer.h):
        attn = block.attn
        q, k, v = attn.c_attn(block.ln_1(x)).split(c.d_model, dim=2)
        q = q.view(B, 1, nh, hd).transpose(1, 2)  # [B, nh, 1, hd]
        k = k.view(B, 1, nh, hd).transpose(1, 2)
        v = v.view(B, 1, nh, hd).transpose(1, 2)
        if rope is not None:
            q = apply_rotary(q, *rope)
            k = apply_rotary(k, *rope)
        keys, values = cache[layer, 0], cache[layer, 1]
        keys.scatter_(2, index, k.to(keys.dtype))
        values.scatter_(2, index, v.to(values.dtype))
        y = F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=mask,
                                           scale=attn.attn_scale)
        x = x + attn.resid_dropout(attn.c_proj(y.transpose(1, 2).reshape(B, 1, c.d_model)))
        x = x + block.mlp(block.ln_2(x))
    x = model.transformer.ln_f(x)
    return model.lm_head(x[:, 0]).float() * model.output_mult


class ContinuousBatcher:
    """The slots, their cache and the decode loop (module docstring)."""

    def __init__(self, model, cfg: SamplingConfig, *, bos_id: int, eos_id: int, key: tuple[int, int, int],
                 device, logits_processor: Callable | None = None):
        self.model, self.cfg = model, cfg
        self.bos_id, self.eos_id, self.key = bos_id, eos_id, key
        self.device = torch.device(device)
        self.logits_processor = logits_processor
        self.steps = 0
        self.occupancy = 0.0
        self._step = torch.compile(self.step, fullgraph=True) if cfg.compile else self.step

    def new_cache(self) -> torch.Tensor:
        c, B, T = self.model.config, self.cfg.batch_size, self.cfg.max_new_tokens
        weight = self.model.transformer.wte.weight
        dtype = (torch.get_autocast_dtype(self.device.type) if torch.is_autocast_enabled(self.device.type)
                 else weight.dtype)
        return torch.zeros(c.n_layer, 2, B, c.n_head, T, c.head_dim, device=self.device, dtype=dtype)

    def step(self, tok, pos, doc, next_doc, end, cache, key_pos):
        """One decode step of every slot: returns the next ``(tok, pos, doc, next_doc)`` and the
        step's log ``[3, B]`` (document, step within it, chosen token) of the rows before the
        update. Rows with ``doc >= end`` are idle."""
        cfg = self.cfg
        logits = decode_logits(self.model, tok, pos, cache, key_pos)
        if self.logits_processor is not None:
            logits = self.logits_processor(logits, doc, pos)
        u = document_uniforms(self.key, doc, pos) if cfg.temperature > 0 else None
        new = inverse_cdf_token(logits, cfg, u)
        finished = (new == self.eos_id) | (pos + 1 >= cfg.max_new_tokens)
        log = torch.stack([doc, pos, new])
        # finished slots take the next documents in slot order
        rank = torch.cumsum(finished.long(), dim=0) - 1
        doc = torch.where(finished, next_doc + rank, doc)
        next_doc = next_doc + finished.long().sum()
        tok = torch.where(finished, torch.full_like(new, self.bos_id), new)
        pos = torch.where(finished, torch.zeros_like(pos), pos + 1)
        return tok, pos, doc, next_doc, log

    @torch.no_grad()
    def run(self, first: int, count: int, progress: Callable[[int, int], None] | None = None,
            host_syncs: list | None = None) -> list[np.ndarray]:
        """Documents ``first .. first + count - 1`` (int64 arrays without separators)."""
        B, K = self.cfg.batch_size, EOS_CHECK_EVERY
        dev = self.device
        was_training = self.model.training
        self.model.eval()
        try:
            cache = self.new_cache()
            key_pos = torch.arange(self.cfg.max_new_tokens, device=dev)
            slots = torch.arange(B, device=dev)
            tok = torch.full((B,), self.bos_id, dtype=torch.long, device=dev)
            pos = torch.zeros(B, dtype=torch.long, device=dev)
            doc = first + slots
            next_doc = torch.tensor(first + B, dtype=torch.long, device=dev)
            end = torch.tensor(first + count, dtype=torch.long, device=dev)
            logs = torch.empty(K, 3, B, dtype=torch.long, device=dev)
            assembler = DocumentAssembler(first, count, self.eos_id, self.cfg.max_new_tokens)
            active_row_steps = 0
            while not assembler.complete:
                for k in range(K):
                    tok, pos, doc, next_doc, logs[k] = self._step(tok, pos, doc, next_doc, end, cache, key_pos)
                if host_syncs is not None:
                    host_syncs.append(self.steps + K)
                host = logs.cpu().numpy()  # the one host synchronisation per K steps
                self.steps += K
                active_row_steps += assembler.add(host)
                if progress is not None:
                    progress(assembler.n_done, count)
            self.occupancy = active_row_steps / (self.steps * B)
            return assembler.documents()
        finally:
            self.model.train(was_training)


class DocumentAssembler:
    """Documents from the decode log: entries (document, step, token) arrive in step order, so
    a document's entries come in the order of its steps; a document is complete at its entry
    with token ``eos`` (which is dropped) or at step ``max_new_tokens - 1``."""

    def __init__(self, first: int, count: int, eos_id: int, max_new_tokens: int):
        self.first, self.count, self.eos_id, self.max_new_tokens = first, count, eos_id, max_new_tokens
        self._docs: list[np.ndarray | None] = [None] * count
        self.n_done = 0
        self._pending = np.zeros((3, 0), dtype=np.int64)  # entries of unfinished documents

    @property
    def complete(self) -> bool:
        return self.n_done == self.count

    def add(self, logs: np.ndarray) -> int:
        """Take a block of the log ``[K, 3, B]``; returns how many of its entries were active."""
        entries = logs.transpose(1, 0, 2).reshape(3, -1)  # step-major order
        local = entries[0] - self.first
        entries = entries[:, (local >= 0) & (local < self.count)]
        n_active = entries.shape[1]
        entries = np.concatenate([self._pending, entries], axis=1)
        if not entries.shape[1]:
            self._pending = entries
            return n_active
        entries = entries[:, np.argsort(entries[0], kind="stable")]  # by document, then step
        doc_ids, steps, tokens = entries
        final = (tokens == self.eos_id) | (steps + 1 >= self.max_new_tokens)
        starts = np.flatnonzero(np.r_[True, doc_ids[1:] != doc_ids[:-1]])
        ends = np.r_[starts[1:], doc_ids.size]
        done = np.maximum.reduceat(final, starts)
        for a, b in zip(starts[done], ends[done]):
            toks = tokens[a:b]
            self._docs[int(doc_ids[a]) - self.first] = toks[toks != self.eos_id]
        self.n_done += int(done.sum())
        self._pending = entries[:, np.repeat(~done, ends - starts)]
        return n_active

    def documents(self) -> list[np.ndarray]:
        if not self.complete:
            raise RuntimeError(f"{self.count - self.n_done} documents are unfinished")
        return list(self._docs)
