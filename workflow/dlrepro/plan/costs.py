"""Per-model cost formulas of the plan: parameters, FLOPs and peak memory.

Conventions (the ones ``torch.utils.flop_counter`` uses, so that the plan can be checked
against it): a multiply-add is 2 FLOPs; only matrix products and convolutions count
(norms, activations, softmax and the optimiser step are left out); a backward pass costs
twice the forward; attention is counted over the full ``T x T`` score matrix (PaLM's
``12 L d T`` per token for training, Chowdhery et al. 2022, App. B), as the math and
flash kernels are counted by the counter, whether or not a causal kernel skips half.

Memory is what a training or sampling process holds at its peak, in bytes:

- training state, fp32 throughout (mixed precision keeps fp32 master weights): weights 4,
  gradients 4, AdamW's two moments 8 bytes a parameter, AdamW's temporaries while it
  updates the largest tensor (two of its size: the for-loop implementation PyTorch uses on
  CPU), plus the bf16 copies of the matmul weights that autocast makes (2 bytes each)
  under ``bf16-mixed``;
- activations saved for the backward pass at the configured micro-batch and context,
  per token and layer (the constants below, counted from the modules' saved tensors and
  checked against measured peak memory on CPU by ``tests/test_paper_shapes.py``), with
  fused (flash) attention, which keeps no ``T x T`` matrix;
- the logits, which dominate at a 32k vocabulary: float32 ``[B, T, V]`` logits, their
  log-softmax and, in the backward pass, two gradients of that size;
- when sampling, the KV cache ``[n_layer, 2, B, n_head, max_len, head_dim]`` and one step's
  ``[B, V]`` logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# --------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class Accelerator:
    """A device the plan estimates time for: dense peak FLOP/s in the precision the preset
    trains in, memory (GB) and memory bandwidth (GB/s)."""

    name: str
    peak_tflops: float
    memory_gb: float
    bandwidth_gbs: float
    per_thread: bool = False  # CPU: peak and bandwidth are per thread (times the job's threads)

    def peak(self, threads: int = 1) -> float:
        return self.peak_tflops * 1e12 * (threads if self.per_thread else 1)

    def bandwidth(self, threads: int = 1) -> float:
        return self.bandwidth_gbs * 1e9 * (threads if self.per_thread else 1)


# Dense (no sparsity) bf16 tensor-core peaks and HBM figures from the vendors' data sheets.
# cpu: fp32 per thread, measured on this project's machine (2 vCPUs, Intel Xeon): the best
# torch.mm of benchmarks/mfu.py reached 315 GFLOP/s on 2 threads (README, Performance);
# bandwidth an assumed 10 GB/s a thread. `python -m dlrepro plan --measure-cpu` measures here.
ACCELERATORS: dict[str, Accelerator] = {
    "h100-sxm": Accelerator("h100-sxm", 989.0, 80.0, 3350.0),
    "h100-pcie": Accelerator("h100-pcie", 756.0, 80.0, 2000.0),
    "h200": Accelerator("h200", 989.0, 141.0, 4800.0),
    "a100-80gb": Accelerator("a100-80gb", 312.0, 80.0, 2039.0),
    "a100-40gb": Accelerator("a100-40gb", 312.0, 40.0, 1555.0),
    "l40s": Accelerator("l40s", 362.0, 48.0, 864.0),
    "cpu": Accelerator("cpu", 0.1575, 0.0, 10.0, per_thread=True),
}

MB = 1e6


def adam_state(n_params: int, largest_tensor: int) -> float:
    """Bytes of fp32 weights, gradients, AdamW's moments and its temporaries."""
    return 16.0 * n_params + 8.0 * largest_tensor


# [B, N, N, hidden] float32 tensors per EGNN layer alive at a training step's peak
PAIR_TENSORS = 14

# --------------------------------------------------------------------------- transformer

# Activation bytes saved per token and layer, in units of d_model elements (fp32 on CPU;
# under bf16-mixed most of them are bf16, see ``act_bytes``). gpt2: ln_1 in/out, qkv,
# attention out + its softmax statistics, c_proj in, residual, ln_2 in/out, c_fc out and
# GELU out (4d each). llama: the same attention part plus the rotated q, k, and SwiGLU's
# gate, silu(gate), up and product (8/3 d each).
ACT_PER_LAYER = {"gpt2": 20.0, "llama": 24.0}
# float32 [B, T, V] tensors alive at the peak of a training step: logits, log-softmax, and
# their gradients in the backward pass.
LOGIT_COPIES_TRAIN = 4.0


@dataclass(frozen=True)
class TransformerShape:
    """The shape of :class:`dlrepro.models.transformer.Transformer` (same parameter count)."""

    vocab_size: int
    block_size: int
    n_layer: int
    d_model: int
    n_head: int
    arch: str = "gpt2"
    bias: bool = True
    tie_embeddings: bool = True

    @property
    def mlp_hidden(self) -> int:
        if self.arch == "gpt2":
            return 4 * self.d_model
        return 32 * math.ceil(8 * self.d_model / (3 * 32))

    @property
    def use_bias(self) -> bool:
        return self.bias and self.arch == "gpt2"

    def layer_matmul_params(self) -> int:
        d, h = self.d_model, self.mlp_hidden
        mlp = 2 * d * h if self.arch == "gpt2" else 3 * d * h
        return 4 * d * d + mlp

    def matmul_params(self) -> int:
        """Weights of every matrix product per token: the blocks and the readout."""
        return self.n_layer * self.layer_matmul_params() + self.d_model * self.vocab_size

    def n_params(self) -> int:
        """All parameters, tied weights once (``sum(p.numel() for p in model.parameters())``)."""
        d, h, L = self.d_model, self.mlp_hidden, self.n_layer
        norm = 2 * d if self.use_bias else d
        per_layer = self.layer_matmul_params() + 2 * norm
        if self.use_bias:
            per_layer += 3 * d + d + h + d
        n = L * per_layer + norm + self.vocab_size * d
        if self.arch == "gpt2":
            n += self.block_size * d
        if not self.tie_embeddings:
            n += self.vocab_size * d
        return n

    def n_params_non_embedding(self) -> int:
        n = self.n_params() - self.vocab_size * self.d_model
        if self.arch == "gpt2":
            n -= self.block_size * self.d_model
        if not self.tie_embeddings:
            n -= self.vocab_size * self.d_model
        return n

    # FLOPs
    def forward_flops_per_token(self, context: int) -> float:
        """2 N_matmul + the attention scores and values over ``context`` keys (4 L d T)."""
        return 2.0 * self.matmul_params() + 4.0 * self.n_layer * self.d_model * context

    def train_flops_per_token(self, context: int | None = None) -> float:
        """6 N_matmul + 12 L d T (PaLM)."""
        return 3.0 * self.forward_flops_per_token(context or self.block_size)

    def sample_flops_per_position(self, max_len: int) -> float:
        """One cached decoding step of one sequence, averaged over a sequence of ``max_len``
        positions: 2 N_matmul + 4 L d (mean cache length)."""
        return self.forward_flops_per_token((max_len + 1) / 2.0)

    # memory
    def train_memory(self, batch: int, context: int, mixed: bool) -> dict[str, float]:
        """Peak bytes of one training step: state, activations, logits (module docstring)."""
        P, tokens = self.n_params(), batch * context
        state = adam_state(P, self.vocab_size * self.d_model) + (2.0 * self.matmul_params() if mixed else 0.0)
        act_bytes = 2.0 if mixed else 4.0
        acts = tokens * self.n_layer * ACT_PER_LAYER[self.arch] * self.d_model * act_bytes
        acts += tokens * self.d_model * 4.0 * 3  # embeddings, final norm in/out
        logits = tokens * self.vocab_size * (LOGIT_COPIES_TRAIN * 4.0 + (2.0 if mixed else 0.0))
        return {"state": state, "activations": acts, "logits": logits}

    def kv_cache_bytes(self, batch: int, max_len: int, bytes_per: float) -> float:
        return self.n_layer * 2.0 * batch * max_len * self.d_model * bytes_per

    def sample_memory(self, batch: int, max_len: int, mixed: bool) -> dict[str, float]:
        bytes_per = 2.0 if mixed else 4.0
        weights = 4.0 * self.n_params() + (2.0 * self.matmul_params() if mixed else 0.0)
        cache = self.kv_cache_bytes(batch, max_len, bytes_per)
        # prefill/step activations are [B, 1, d]; the logits [B, V] float32, its softmax, probabilities
        logits = 3.0 * batch * self.vocab_size * 4.0
        return {"state": weights, "kv_cache": cache, "logits": logits}

    def eval_memory(self, batch: int, context: int) -> dict[str, float]:
        logits = 2.0 * batch * context * self.vocab_size * 4.0
        acts = 4.0 * batch * context * self.mlp_hidden * 4.0
        return {"state": 4.0 * self.n_params(), "activations": acts, "logits": logits}


# --------------------------------------------------------------------------- MLP (width stage)


@dataclass(frozen=True)
class MLPShape:
    """:class:`dlrepro.models.mlp.MLP` without biases: in -> width (x depth-1) -> out."""

    in_dim: int
    width: int
    out_dim: int
    depth: int

    def n_params(self) -> int:
        w = self.width
        return self.in_dim * w + (self.depth - 1) * w * w + w * self.out_dim

    def train_flops_per_item(self) -> float:
        return 6.0 * self.n_params()

    def train_memory(self, batch: int) -> dict[str, float]:
        acts = batch * (self.in_dim + 2 * self.depth * self.width + 3 * self.out_dim) * 4.0
        biggest = max(self.in_dim * self.width, self.width * self.width if self.depth > 1 else 0)
        return {"state": adam_state(self.n_params(), biggest), "activations": acts}


@dataclass(frozen=True)
class WidthCNNShape:
    """:class:`dlrepro.models.cnn.CNN` without biases: ``depth`` k x k convolutions of
    ``width`` channels on ``in_channels`` x ``size`` x ``size`` images, a 2 x 2 average
    pool between convolutions, global average pool, linear readout."""

    in_channels: int
    size: int
    width: int
    out_dim: int
    depth: int
    kernel: int = 3

    def _layers(self) -> list[tuple[int, int, int]]:
        """(spatial positions, input channels, output channels) of each convolution."""
        out, side = [], self.size
        for i in range(self.depth):
            out.append((side * side, self.in_channels if i == 0 else self.width, self.width))
            if i < self.depth - 1 and side >= 2:
                side //= 2
        return out

    def n_params(self) -> int:
        k2 = self.kernel ** 2
        return sum(c_in * c_out * k2 for _, c_in, c_out in self._layers()) + self.width * self.out_dim

    def train_flops_per_item(self) -> float:
        k2 = self.kernel ** 2
        forward = sum(2.0 * hw * c_in * c_out * k2 for hw, c_in, c_out in self._layers())
        return 3.0 * (forward + 2.0 * self.width * self.out_dim)

    def train_memory(self, batch: int) -> dict[str, float]:
        acts = batch * (self.in_channels * self.size ** 2 + sum(3.0 * hw * c for hw, _, c in self._layers())) * 4.0
        biggest = max(c_in * c_out * self.kernel ** 2 for _, c_in, c_out in self._layers())
        return {"state": adam_state(self.n_params(), biggest), "activations": acts}


# --------------------------------------------------------------------------- VAE and its judge


@dataclass(frozen=True)
class ConvVAEShape:
    """:class:`dlrepro.vae.model.ConvVAE` on 1 x 28 x 28 images."""

    latent_dim: int
    channels: int
    hidden: int

    def _macs(self) -> tuple[float, float]:
        c, h, k = self.channels, self.hidden, self.latent_dim
        enc = 196 * c * 16 + 49 * 2 * c * c * 16 + 98 * c * h + h * 2 * k
        dec = k * h + h * 98 * c + 49 * 2 * c * c * 16 + 196 * c * 16
        return float(enc), float(dec)

    def n_params(self) -> int:
        c, h, k = self.channels, self.hidden, self.latent_dim
        enc = (16 * c + c) + (16 * c * 2 * c + 2 * c) + (98 * c * h + h) + (h * 2 * k + 2 * k)
        dec = (k * h + h) + (h * 98 * c + 98 * c) + (2 * c * c * 16 + c) + (c * 16 + 1)
        return enc + dec

    def forward_flops_per_image(self) -> float:
        enc, dec = self._macs()
        return 2.0 * (enc + dec)

    def decode_flops_per_image(self) -> float:
        return 2.0 * self._macs()[1]

    def train_flops_per_image(self) -> float:
        return 3.0 * self.forward_flops_per_image()

    def train_memory(self, batch: int) -> dict[str, float]:
        c = self.channels
        # floats per image at the peak: the four conv / transposed-conv maps (294 c) with
        # their ReLU outputs and gradients (x 4), the unfolded (im2col) inputs of the 4 x 4
        # convolutions of 2c channels on 7 x 7 in the forward and backward passes
        # (3 x 16 c x 49), the hidden layers, and the pixel logits with the loss's copies
        per_image = 4 * 294 * c + 3 * 16 * c * 49 + 4 * self.hidden + 6 * 784
        biggest = 98 * self.channels * self.hidden
        return {"state": adam_state(self.n_params(), biggest), "activations": batch * per_image * 4.0}


@dataclass(frozen=True)
class SmallCNNShape:
    """:class:`dlrepro.vae.model.SmallCNN` (the sample-quality judge)."""

    channels: int = 16
    feature_dim: int = 128
    n_classes: int = 10

    def forward_flops_per_image(self) -> float:
        c, f = self.channels, self.feature_dim
        return 2.0 * (784 * c * 9 + 196 * 2 * c * c * 9 + 98 * c * f + f * self.n_classes)


# --------------------------------------------------------------------------- EGNN


@dataclass(frozen=True)
class EGNNShape:
    """:class:`dlrepro.conformers.egnn.EGNN` on dense batches of ``n_atoms`` (padded) atoms.

    The pair cost dominates: every layer maps each of the ``N^2`` atom pairs through
    ``phi_e``'s second linear layer and ``phi_x``'s two (``2 H^2 + H`` multiply-adds) plus
    the distance-basis and pair-feature projections (``(25 + E) H``)."""

    hidden: int
    layers: int
    atom_features: int = 19  # dlrepro.conformers.dataset.ATOM_FEATURES (+1 for time below)
    edge_features: int = 9  # EDGE_FEATURES
    rbf: int = 25  # RBF_CENTRES + 1

    def pair_macs(self) -> float:
        H = self.hidden
        return 2.0 * H * H + H + (self.rbf + self.edge_features) * H

    def node_macs(self) -> float:
        H = self.hidden
        return 2.0 * H * H + 2.0 * H * H + H * H  # src, dst; node_mlp (2H -> H -> H)

    def forward_flops_per_molecule(self, n_atoms: float) -> float:
        per_layer = n_atoms * n_atoms * self.pair_macs() + n_atoms * self.node_macs()
        embed = n_atoms * (self.atom_features + 1) * self.hidden
        return 2.0 * (self.layers * per_layer + embed)

    def train_flops_per_molecule(self, n_atoms: float) -> float:
        return 3.0 * self.forward_flops_per_molecule(n_atoms)

    def n_params(self) -> int:
        H = self.hidden
        layer = (H * H + H) + H * H + self.rbf * H + self.edge_features * H + (H * H + H) \
            + (H * H + H) + H + (2 * H * H + H) + (H * H + H) + 2 * H
        return self.layers * layer + (self.atom_features + 1) * H + H

    def train_memory(self, batch: int, n_atoms: float) -> dict[str, float]:
        # per layer the [B, N, N, H] pair tensors kept for backward (the four projections and
        # their sums, SiLU in/out, the edge MLP, the masked messages, the coordinate MLP's
        # hidden layer) and the backward pass's gradients of them: 14 measured
        pair = batch * n_atoms * n_atoms * self.hidden * 4.0 * PAIR_TENSORS * self.layers
        return {"state": adam_state(self.n_params(), 2 * self.hidden * self.hidden), "activations": pair}


def mb(x: float) -> float:
    return x / MB
