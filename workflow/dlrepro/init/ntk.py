r"""The empirical neural tangent kernel (NTK) with ``torch.func``.

For a network ``f(theta, x)`` with outputs ``f_i`` the NTK is

    Theta_ij(x, x') = sum_mu lambda_mu  df_i(x)/dtheta_mu  df_j(x')/dtheta_mu,

with the learning-rate tensor of Roberts-Yaida-Hanin: ``lambda = lambda_W / n_in`` for a
weight of a layer with fan-in ``n_in`` and ``lambda_b`` for a bias
(:meth:`TanhMLP.lr_scales`). Gradient descent with per-parameter learning rates
``lr * lambda`` moves the outputs by ``-lr * Theta @ dLoss/df``, so this is the kernel
that governs training (:mod:`.training` uses exactly these learning rates).
Per-example Jacobians come from ``torch.func.jacrev`` vectorised with ``vmap``
(the recipe of the torch.func "neural tangent kernels" tutorial).

Depth study (``init ntk``): for one fixed input ``x`` (as in :mod:`.fluctuations`), the
NTK of the layer-``d`` pre-activations ``z^(d)`` (width ``n``) with respect to all
parameters of layers ``1..d``; per draw the layer average
``Theta_hat = (1/n) sum_i Theta_ii(x, x)``, over draws its mean and normalised variance
``n Var(Theta_hat) / E[Theta_hat]^2`` (to leading order RYH's NTK variance ``A/Theta^2``,
which grows linearly with depth for Gaussian weights and saturates for orthogonal
ones). Draws are vectorised with ``vmap`` over stacked parameters.

At depth 1 the kernel is deterministic: ``Theta_ii = lambda_b + lambda_W |x|^2 / n_0``.

Table ``ntk.csv``, one row per (init, width, depth):
``init, width, depth, n_inits, ntk_mean, ntk_normalized_variance,
ntk_normalized_variance_se``; ``ntk_draws.csv``, one row per (init, width, draw, depth):
``init, width, draw, depth, ntk`` (that draw's ``Theta_hat``), resampled by :mod:`.curves`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dlrepro.errors import ParamsError
from dlrepro.init.fluctuations import check_positive_ints, draws_frame, normalized_variance
from dlrepro.init.inits import get_init, single_threaded_on_cpu
from dlrepro.log import get_logger

NTK_COLUMNS = [
    "init",
    "width",
    "depth",
    "n_inits",
    "ntk_mean",
    "ntk_normalized_variance",
    "ntk_normalized_variance_se",
]


@dataclass
class NTKParams:
    """Config of ``init ntk`` (``config['init']['ntk']``)."""

    inits: list[str] = field(default_factory=lambda: ["gaussian", "orthogonal"])
    widths: list[int] = field(default_factory=lambda: [32])
    depths: list[int] = field(default_factory=lambda: [1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64])
    n_inits: int = 400
    input_dim: int | None = None  # None: equal to the width
    input_kernel: float = 1.0
    c_w: float = 1.0
    c_b: float = 0.0
    lambda_w: float = 1.0
    lambda_b: float = 1.0
    seed: int = 0
    chunk_size: int = 50
    dtype: str = "float64"
    device: str = "cpu"

    def __post_init__(self):
        for name in self.inits:
            get_init(name)
        check_positive_ints("widths", self.widths)
        check_positive_ints("depths", self.depths)
        check_positive_ints("chunk_size", [self.chunk_size])
        if self.input_dim is not None:
            check_positive_ints("input_dim", [self.input_dim])
        if sorted(set(self.depths)) != list(self.depths):
            raise ParamsError(f"depths must be strictly increasing, got {self.depths!r}")
        if not (isinstance(self.n_inits, int) and self.n_inits >= 4):
            raise ParamsError(f"n_inits must be an integer >= 4, got {self.n_inits!r}")
        for key in ("c_w", "input_kernel"):
            if not getattr(self, key) > 0:
                raise ParamsError(f"{key} must be positive, got {getattr(self, key)!r}")
        for key in ("c_b", "lambda_w", "lambda_b"):
            if not getattr(self, key) >= 0:
                raise ParamsError(f"{key} must be non-negative, got {getattr(self, key)!r}")
        if not self.input_kernel > self.c_b:
            raise ParamsError(f"input_kernel must exceed c_b={self.c_b}, got {self.input_kernel!r}")
        if self.dtype not in ("float32", "float64"):
            raise ParamsError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")


def empirical_ntk(model, params: dict, x1, x2=None, lr_scales: dict[str, float] | None = None, **forward_kwargs):
    """The NTK between two batches of inputs, shape ``(N1, N2, n_out, n_out)``.

    ``params`` maps parameter names of ``model`` to tensors (a subset is allowed: the
    Jacobian is taken with respect to those only, the others stay fixed);
    ``lr_scales`` weights each parameter's contribution (default 1); ``forward_kwargs``
    are passed to ``model.forward``.
    """
    import torch
    from torch.func import functional_call, jacrev, vmap

    def single(p, x):
        return functional_call(model, p, (x.unsqueeze(0),), forward_kwargs).squeeze(0)

    jac1 = vmap(jacrev(single), (None, 0))(params, x1)
    jac2 = jac1 if x2 is None else vmap(jacrev(single), (None, 0))(params, x2)
    total = None
    for name in params:
        scale = 1.0 if lr_scales is None else lr_scales[name]
        term = scale * torch.einsum("aip,bjp->abij", jac1[name].flatten(2), jac2[name].flatten(2))
        total = term if total is None else total + term
    return total


def relative_ntk_change(theta_0, theta_t) -> float:
    """Frobenius distance ``||Theta_t - Theta_0|| / ||Theta_0||`` (feature learning)."""
    import torch

    return float(torch.linalg.vector_norm(theta_t - theta_0) / torch.linalg.vector_norm(theta_0))


def ntk_layer_average(model, params: dict, x, lr_scales: dict[str, float], n_layers: int):
    """``(1/n) sum_i Theta_ii(x, x)`` of layer ``n_layers``'s pre-activations ``z^(d)``,
    for one input ``x`` (shape ``(n_0,)``), with respect to the parameters of layers
    ``1..d``. Written for ``vmap`` over stacked ``params``.

    A weight's gradient is an outer product, ``dz_i/dW^(l)_jk = dz_i/dz^(l)_j a^(l-1)_k``
    (``a^(0) = x``, ``a^(l) = tanh(z^(l))``), and a bias's is ``dz_i/dz^(l)_j``, so

        sum_i Theta_ii = sum_l ||dz^(d)/dz^(l)||_F^2 (lambda_b + lambda_W/n_(l-1) |a^(l-1)|^2).

    The Jacobians with respect to the pre-activations (``jacrev`` with respect to zero
    shifts) are ``n`` times smaller than those with respect to the weights, which makes
    thousands of draws affordable; :func:`empirical_ntk` gives the same numbers (tested).
    """
    import torch
    from torch.func import functional_call, jacrev

    width = model.layers[n_layers - 1].out_features
    ref = params["layers.0.weight"]
    zero_shifts = [ref.new_zeros(model.layers[i].out_features) for i in range(n_layers)]

    def forward(shifts):
        zs = functional_call(model, params, (x,), {"n_layers": n_layers, "shifts": shifts, "all_layers": True})
        inputs = [x] + [torch.tanh(z) for z in zs[:-1]]
        return zs[-1], torch.stack([a.square().sum() for a in inputs])

    jacobians, input_norms = jacrev(forward, has_aux=True)(zero_shifts)
    total = 0.0
    for i, jac in enumerate(jacobians):
        factor = lr_scales[f"layers.{i}.bias"] + lr_scales[f"layers.{i}.weight"] * input_norms[i]
        total = total + jac.square().sum() * factor
    return total / width


def simulate_ntk(
    init: str,
    width: int,
    depths: list[int],
    n_inits: int,
    input_dim: int,
    input_kernel: float = 1.0,
    c_w: float = 1.0,
    c_b: float = 0.0,
    lambda_w: float = 1.0,
    lambda_b: float = 1.0,
    seed: int = 0,
    chunk_size: int = 50,
    dtype: str = "float64",
    device: str = "cpu",
) -> np.ndarray:
    """``Theta_hat`` per draw (rows) and depth (columns), shape ``(n_inits, len(depths))``.

    Each draw is one network of depth ``max(depths)``; the NTK at depth ``d`` is that of
    its first ``d`` layers, so all depths of a row share their first layers.
    """
    import torch
    from torch.func import vmap

    from dlrepro.init.inits import TanhMLP, stacked_parameters

    torch_dtype = getattr(torch, dtype)
    log = get_logger("init.ntk", init=init, width=width, seed=seed)
    generator = torch.Generator(device).manual_seed(seed)
    model = TanhMLP(input_dim, width, max(depths)).to(device=device, dtype=torch_dtype)
    scales = model.lr_scales(lambda_w, lambda_b)
    x = torch.full((input_dim,), math.sqrt((input_kernel - c_b) / c_w), dtype=torch_dtype, device=device)
    out = np.empty((n_inits, len(depths)))
    for start in range(0, n_inits, chunk_size):
        size = min(chunk_size, n_inits - start)
        stacked = stacked_parameters(model, init, size, c_w, c_b, generator)
        for column, depth in enumerate(depths):
            names = [f"layers.{i}.{kind}" for i in range(depth) for kind in ("weight", "bias")]
            params = {name: stacked[name] for name in names}
            values = vmap(lambda p: ntk_layer_average(model, p, x, scales, depth))(params)
            out[start : start + size, column] = values.detach().cpu().numpy()
        log.info("draws %d/%d done (depths up to %d)", start + size, n_inits, max(depths))
    return out


def run_ntk(params: NTKParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate every (init, width) of ``params``: the tidy ``ntk.csv`` table and the
    per-draw table ``ntk_draws.csv`` (``init, width, draw, depth, ntk``)."""
    frames, draws = [], []
    for width in params.widths:
        input_dim = params.input_dim or width
        for init in params.inits:
            get_logger("init.ntk", init=init, width=width, seed=params.seed).info(
                "depths %s, %d draws", params.depths, params.n_inits
            )
            with single_threaded_on_cpu(params.device):
                theta = simulate_ntk(
                    init, width, params.depths, params.n_inits, input_dim, params.input_kernel, params.c_w,
                    params.c_b, params.lambda_w, params.lambda_b, params.seed, params.chunk_size,
                    params.dtype, params.device,
                )  # fmt: skip
            mean, normalized, se = normalized_variance(theta, width)
            draws.append(draws_frame(init, width, theta, "depth", "ntk", params.depths))
            frames.append(
                pd.DataFrame(
                    {
                        "init": init,
                        "width": width,
                        "depth": params.depths,
                        "n_inits": params.n_inits,
                        "ntk_mean": mean,
                        "ntk_normalized_variance": normalized,
                        "ntk_normalized_variance_se": se,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)[NTK_COLUMNS], pd.concat(draws, ignore_index=True)
