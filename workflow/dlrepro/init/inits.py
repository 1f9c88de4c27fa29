"""Weight initialisations by name, and the critical tanh MLP they initialise.

An initialisation is registered once, under a name, with :func:`register_init`; every
part of the init-variants stage (fluctuations, NTK, training) looks it up by that name,
so a new scheme only needs one decorated sampling function here.

Conventions (Roberts, Yaida & Hanin, "The Principles of Deep Learning Theory", ch. 2-5):
a layer maps ``z_out = W @ act(z_in) + b`` with ``E[W_ij^2] = C_W / n_in`` and
``b_i ~ N(0, C_b)``.  A tanh network is critical at ``C_W = 1, C_b = 0``.

* ``gaussian``: i.i.d. ``W_ij ~ N(0, C_W / n_in)``.
* ``orthogonal``: a Haar-random (semi-)orthogonal matrix, scaled so that
  ``E[W_ij^2] = C_W / n_in`` as well. For a square layer this means
  ``W^T W = C_W * I``: the layer preserves the norm of its input exactly. For a
  rectangular layer the columns (``n_out >= n_in``) or rows (``n_out < n_in``) are
  orthonormal up to the scale ``sqrt(C_W * max(n_out, n_in) / n_in)``.

Each scheme also carries the one number the fluctuation theory needs from it (see
:mod:`dlrepro.init.fluctuations`): ``fresh_noise``, the variance ``n * Var`` that one
layer adds to the layer-averaged kernel ``G_hat = mean_i z_i^2`` at fixed input to the
layer.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from dlrepro.errors import ParamsError

# (n_draws, n_out, n_in, c_w, generator, dtype, device) -> tensor (n_draws, n_out, n_in)
Sampler = Callable[..., torch.Tensor]
# (kernel_out, c_b, n_out, n_in) -> n_out * Var(G_hat_out | previous layer) at leading order
FreshNoise = Callable[[float, float, int, int], float]
# (h (n_draws, n_in), n_out, c_w, generator) -> W @ h for a fresh draw of W, shape (n_draws, n_out)
Projector = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class InitScheme:
    """A named weight distribution.

    ``sample`` draws a batch of weight matrices; ``fresh_noise`` (optional) is the
    leading-order variance, times width, that one layer with these weights adds to the
    empirical kernel ``G_hat`` of its outputs given its inputs; ``asymptotic_slope`` is
    the predicted large-depth slope of ``n Var(G_hat) / G^2`` versus depth for a
    critical tanh network (NaN where no theory is known); ``project`` (optional) draws
    ``W @ h`` for fixed inputs ``h`` and a fresh ``W`` directly, exactly in distribution,
    without forming ``W`` (O(n) instead of O(n^2) work per layer; used for single-input
    simulations at large width, :func:`project`).
    """

    name: str
    sample: Sampler
    fresh_noise: FreshNoise | None = None
    asymptotic_slope: float = math.nan
    project: Projector | None = None


INITS: dict[str, InitScheme] = {}


def register_init(name: str, fresh_noise: FreshNoise | None = None, asymptotic_slope: float = math.nan,
                  project: Projector | None = None):
    """Decorator: register ``sampler`` under ``name`` (names must be unique)."""

    def decorator(sampler: Sampler) -> Sampler:
        if name in INITS:
            raise ValueError(f"init {name!r} is already registered")
        INITS[name] = InitScheme(name, sampler, fresh_noise, asymptotic_slope, project)
        return sampler

    return decorator


def get_init(name: str) -> InitScheme:
    """The registered scheme called ``name``; a ValueError lists the known names."""
    if name not in INITS:
        raise ParamsError(f"unknown init {name!r}; registered: {', '.join(sorted(INITS))}")
    return INITS[name]


def sample_weights(
    name: str,
    n_draws: int,
    n_out: int,
    n_in: int,
    c_w: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``n_draws`` independent ``n_out x n_in`` weight matrices from init ``name``."""
    for key, value in (("n_draws", n_draws), ("n_out", n_out), ("n_in", n_in)):
        if int(value) != value or value < 1:
            raise ParamsError(f"{key} must be a positive integer, got {value!r}")
    if not c_w > 0:
        raise ParamsError(f"c_w must be positive, got {c_w!r}")
    return get_init(name).sample(n_draws, n_out, n_in, c_w, generator, dtype, device)


def project(name: str, h: torch.Tensor, n_out: int, c_w: float = 1.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """``W @ h`` for a fresh draw of ``W`` (``n_out x n_in``) from init ``name`` per row of
    ``h`` (shape ``(n_draws, n_in)``), sampled directly; a ValueError if the init has no
    direct projector. Exact in distribution: both ensembles are rotation invariant, so
    only ``|h|`` matters (see the projectors below); tested against :func:`sample_weights`.
    """
    scheme = get_init(name)
    if scheme.project is None:
        raise ParamsError(f"init {name!r} has no direct projector; use sampler 'matrix'")
    return scheme.project(h, n_out, c_w, generator)


# --- Gaussian ---------------------------------------------------------------------------


def _gaussian_fresh_noise(kernel: float, c_b: float, n_out: int, n_in: int) -> float:
    # Given its inputs, z_i are i.i.d. N(0, G); mean of n squares: n Var = 2 G^2.
    return 2.0 * kernel**2


def _gaussian_project(h, n_out, c_w, generator=None):
    # Given h, the rows of W are i.i.d. N(0, C_W/n_in I): W h ~ N(0, C_W |h|^2/n_in I).
    scale = (c_w * h.square().sum(dim=1, keepdim=True) / h.shape[1]).sqrt()
    return scale * torch.randn((h.shape[0], n_out), generator=generator, dtype=h.dtype, device=h.device)


@register_init("gaussian", fresh_noise=_gaussian_fresh_noise, asymptotic_slope=2.0 / 3.0,
               project=_gaussian_project)
def gaussian(n_draws, n_out, n_in, c_w, generator=None, dtype=torch.float64, device="cpu"):
    w = torch.randn((n_draws, n_out, n_in), generator=generator, dtype=dtype, device=device)
    return w * math.sqrt(c_w / n_in)


# --- Orthogonal (Haar) ------------------------------------------------------------------


def haar_semi_orthogonal(n_draws, rows, cols, generator=None, dtype=torch.float64, device="cpu"):
    """``n_draws`` Haar-random ``rows x cols`` matrices (``rows >= cols``) with
    orthonormal columns: QR of a Gaussian matrix with the signs of ``diag(R)`` moved
    into ``Q`` (Mezzadri 2007, "How to generate random matrices from the classical
    compact groups"), which makes the distribution exactly Haar."""
    if rows < cols:
        raise ValueError(f"need rows >= cols, got rows={rows}, cols={cols}")
    a = torch.randn((n_draws, rows, cols), generator=generator, dtype=dtype, device=device)
    q, r = torch.linalg.qr(a, mode="reduced")
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return q * signs.unsqueeze(-2)


@contextlib.contextmanager
def single_threaded_on_cpu(device: str | torch.device):
    """Run the enclosed torch work on one CPU thread (no-op for other devices).

    The init stage's tensors are small (batches of 32-128 wide matrices), so a second
    thread gains little, while on a busy machine (Snakemake running jobs side by side)
    OpenMP threads thrash: measured here with other jobs running, 500 QRs of 64x64 took
    0.7 s on one thread and 10-40 s on two, and a full-batch GD step of a 784-32x8-10
    network 26 ms on one thread and 600 ms on two. Entered once per simulated network
    set or training run, because switching the thread count is itself slow.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    from dlrepro.cpu import configure

    threads = torch.get_num_threads()
    configure(1)  # and denormals flushed (dlrepro.cpu)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _orthogonal_fresh_noise(kernel: float, c_b: float, n_out: int, n_in: int) -> float:
    # The weights preserve |act(z_in)|^2 exactly, except that a layer narrower than its
    # input keeps a random n_out-dimensional projection, whose squared norm is
    # Beta(n_out/2, (n_in-n_out)/2) distributed: n Var/mean^2 = 2 (n_in - n_out)/(n_in + 2).
    # Bias noise b ~ N(0, C_b) adds n Var = 4 C_b (G - C_b) + 2 C_b^2 = 2 G^2 - 2 (G - C_b)^2.
    signal = kernel - c_b
    projection = 2.0 * max(0, n_in - n_out) / (n_in + 2)
    return signal**2 * projection + 2.0 * (kernel**2 - signal**2)


def _orthogonal_project(h, n_out, c_w, generator=None):
    # W = s Q (n_out >= n_in, Q with orthonormal columns) or s Q^T (n_out < n_in), s =
    # sqrt(C_W max(n_out, n_in)/n_in), Q Haar: W h = s |h| times the first n_out
    # coordinates of a uniformly random unit vector in R^max(n_out, n_in).
    n_in = h.shape[1]
    big = max(n_out, n_in)
    g = torch.randn((h.shape[0], big), generator=generator, dtype=h.dtype, device=h.device)
    u = g / torch.linalg.vector_norm(g, dim=1, keepdim=True)
    scale = math.sqrt(c_w * big / n_in) * torch.linalg.vector_norm(h, dim=1, keepdim=True)
    return scale * u[:, :n_out]


@register_init("orthogonal", fresh_noise=_orthogonal_fresh_noise, asymptotic_slope=0.0,
               project=_orthogonal_project)
def orthogonal(n_draws, n_out, n_in, c_w, generator=None, dtype=torch.float64, device="cpu"):
    q = haar_semi_orthogonal(n_draws, max(n_out, n_in), min(n_out, n_in), generator, dtype, device)
    if n_out < n_in:
        q = q.transpose(-2, -1)
    return q * math.sqrt(c_w * max(n_out, n_in) / n_in)


# --- The network ------------------------------------------------------------------------


class TanhMLP(nn.Module):
    """Fully connected tanh network ``n_in -> width x depth -> n_out``.

    ``depth`` counts the hidden (tanh) layers; the last ``nn.Linear`` is a linear readout
    with ``n_out`` outputs. With ``n_out=None`` there is no readout and the output is the
    last hidden layer's pre-activation ``z^(depth)`` (width ``width``), which is how the
    initialisation studies look at a network of a given depth.
    """

    def __init__(self, n_in: int, width: int, depth: int, n_out: int | None = None):
        super().__init__()
        for key, value in (("n_in", n_in), ("width", width), ("depth", depth)):
            if int(value) != value or value < 1:
                raise ParamsError(f"{key} must be a positive integer, got {value!r}")
        if n_out is not None and (int(n_out) != n_out or n_out < 1):
            raise ParamsError(f"n_out must be a positive integer or None, got {n_out!r}")
        sizes = [n_in] + [width] * depth + ([n_out] if n_out is not None else [])
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(
        self,
        x: torch.Tensor,
        n_layers: int | None = None,
        shifts: list[torch.Tensor] | None = None,
        all_layers: bool = False,
    ):
        """The pre-activation ``z^(n_layers)`` (default: of the last layer).

        ``shifts`` (one tensor per layer up to ``n_layers``) are added to the
        pre-activations; zeros leave the output unchanged, and differentiating with
        respect to them gives the Jacobians with respect to the pre-activations
        (used by :mod:`.ntk`). With ``all_layers`` the list ``[z^(1), ..., z^(n_layers)]``
        is returned.
        """
        n_layers = len(self.layers) if n_layers is None else n_layers
        if not 1 <= n_layers <= len(self.layers):
            raise ValueError(f"n_layers must be in [1, {len(self.layers)}], got {n_layers}")
        if shifts is not None and len(shifts) != n_layers:
            raise ValueError(f"need one shift per layer ({n_layers}), got {len(shifts)}")
        zs = []
        h = x
        for i, layer in enumerate(self.layers[:n_layers]):
            z = layer(h) if shifts is None else layer(h) + shifts[i]
            zs.append(z)
            h = torch.tanh(z)
        return zs if all_layers else zs[-1]

    @torch.no_grad()
    def initialize(self, init: str, c_w: float = 1.0, c_b: float = 0.0, generator=None) -> "TanhMLP":
        """Draw all weights from ``init`` and biases from ``N(0, c_b)``, in place."""
        for name, tensor in stacked_parameters(self, init, 1, c_w, c_b, generator).items():
            self.get_parameter(name).copy_(tensor[0])
        return self

    def lr_scales(self, lambda_w: float = 1.0, lambda_b: float = 1.0) -> dict[str, float]:
        """Per-parameter learning-rate factors ``lambda_W / n_in`` (weights) and
        ``lambda_b`` (biases): the learning-rate tensor of Roberts-Yaida-Hanin (ch. 7-8),
        under which the NTK and gradient-descent updates stay O(1) at any width."""
        scales = {}
        for i, layer in enumerate(self.layers):
            scales[f"layers.{i}.weight"] = lambda_w / layer.in_features
            scales[f"layers.{i}.bias"] = lambda_b
        return scales


def stacked_parameters(
    model: TanhMLP,
    init: str,
    n_draws: int,
    c_w: float = 1.0,
    c_b: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """``n_draws`` independent initialisations of ``model``'s parameters, stacked along
    a new leading axis (for ``torch.func.vmap`` over ``functional_call``)."""
    if c_b < 0:
        raise ParamsError(f"c_b must be non-negative, got {c_b!r}")
    ref = next(model.parameters())
    out = {}
    for i, layer in enumerate(model.layers):
        out[f"layers.{i}.weight"] = sample_weights(
            init, n_draws, layer.out_features, layer.in_features, c_w, generator, ref.dtype, ref.device
        )
        bias = torch.randn((n_draws, layer.out_features), generator=generator, dtype=ref.dtype, device=ref.device)
        out[f"layers.{i}.bias"] = bias * math.sqrt(c_b)
    return out
