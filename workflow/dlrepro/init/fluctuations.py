r"""Pre-activation fluctuations at initialisation, measured and predicted, per layer.

Setting. A critical tanh network (``C_W = 1, C_b = 0``) of equal hidden widths ``n``
receives one fixed input ``x`` of dimension ``n_0`` with first-layer kernel
``K_1 = C_b + C_W |x|^2 / n_0`` (``input_kernel``; the paper's convention of an O(1)
input kernel, here 1). Both weight ensembles are rotation invariant, so only ``|x|``
matters and ``x`` is the constant vector of that norm. For every layer ``l`` and every
one of ``n_inits`` independent initialisations we record the layer-averaged kernel
``G_hat^(l) = (1/n) sum_i (z_i^(l))^2`` and ``(1/n) sum_i (z_i^(l))^4``; over the draws
we report the mean kernel ``G = E[G_hat]``, the normalised fluctuation
``F = n Var(G_hat) / E[G_hat]^2`` and the normalised connected four-point vertex
``V / G^2`` where ``E[z_i^2 z_j^2] - E[z_i^2] E[z_j^2] = V / n`` for ``i != j``.

Exact for any ``n``:  ``n^2 Var(G_hat) = n (E[z^4] - G^2) + n (n-1) V / n``, so
``V = (n^2 Var(G_hat) - n (E[z^4] - G^2)) / (n - 1)``, and ``F = 2 + V/G^2 + O(1/n)``.

Theory (leading order in 1/n; derivation). Write ``G_sigma = (C_W/n) |tanh(z^(l))|^2``.
Given the previous layers, ``z^(l)`` points in a uniformly random direction (the
Gaussian and the Haar ensembles are both rotation invariant), so ``G_hat^(l)`` is a
Markov chain:

* Gaussian weights: ``z^(l+1) | z^(l) ~ N(0, C_b + G_sigma)`` i.i.d., hence
  ``G_hat^(l+1) = (C_b + G_sigma) chi^2_n / n`` and ``n Var`` gains ``2 K^2``.
* Orthogonal weights (square, scaled): ``|W tanh(z)|^2 = C_W |tanh(z)|^2`` exactly, so
  a layer adds no noise of its own (only bias noise, and a random-projection term when
  the layer is narrower than its input; see ``fresh_noise`` in :mod:`.inits`).

The sphere average ``G_sigma`` of a vector of norm ``sqrt(n G_hat)`` has mean
``C_W <tanh^2>_K`` (Gaussian expectation at variance ``K``) and, linearising in the
fluctuation of ``G_hat``,

    n Var(G_sigma) = chi^2 n Var(G_hat) + C_W^2 [Var(s) - Cov(s, z^2)^2 / (2 K^2)],

with ``s = tanh(z)^2``, ``chi = C_W d<s>_K/dK = C_W Cov(s, z^2) / (2 K^2)`` (the parallel
susceptibility) and the bracket the part of the fluctuation of ``s`` that is not
explained by the fluctuation of ``z^2`` (fixed norm on the sphere). Then

    K_{l+1} = C_b + C_W <s>_{K_l},
    n Var(G_hat^(l+1)) = n Var(G_sigma^(l)) + fresh_noise(init, K_{l+1}),

started from ``n Var(G_hat^(1)) = fresh_noise(init, K_1)`` (first layer, fixed input),
and ``F_l = n Var(G_hat^(l)) / K_l^2``. For Gaussian weights this is exactly
RYH's four-point recursion ``V' = C_W^2 Var(s) + chi^2 V`` (eq. 4.90, single input) with
``F = 2 + V/K^2``: the ``2 chi^2 K^2`` from the first term cancels against the sphere
constraint. :func:`theory_fluctuations` iterates these recursions with Gauss-Hermite
quadrature.

Depth dependence for tanh (``K* = 0`` universality class, RYH sec. 5.3.3):
``tanh^2 z = z^2 - 2 z^4/3 + ...`` gives ``<s>_K = K - 2K^2 + O(K^3)``, so
``K_l ~ 1/(2l)``, ``chi = 1 - 4K``, ``chi K / K_{l+1} = 1 - 2K = 1 - 1/l``, and the sphere
term vanishes through order ``K^3``: ``Var(s) = 2K^2 - 16K^3``, ``Cov(s, z^2) = 2K^2 - 8K^3``
so ``Var(s) - Cov^2/(2K^2) = O(K^4)``. Hence

* Gaussian:   ``F_{l+1} = (1 - 2/l) F_l + 2 + O(1/l^2)``  =>  ``F_l = (2/3) l + O(log l)``;
  equivalently ``V/K^2 = (2/3) l`` (RYH sec. 5.3.3), the *asymptotic slope 2/3 per layer*.
* Orthogonal: ``F_{l+1} = (1 - 2/l) F_l + O(1/l^2)``  =>  ``F_l -> 0`` (like ``log l / l^2``):
  no growth with depth; ``V/K^2 -> -2``, depth independent (Day, Kahn & Roberts 2023).

The measured slope is fitted by :func:`dlrepro.init.curves.fit_slopes` (intervals from
resampling draws); the theory curve's own slope over the
same layers (which includes the ``O(log l)`` corrections at finite depth) is reported
beside it, with the asymptotic value. Finite-width corrections are ``O(l/n)`` relative.

Table ``fluctuations.csv``, one row per (init, width, layer):
``init, width, input_dim, layer, n_inits, kernel_mean, normalized_variance,
normalized_variance_se, four_point_vertex, theory_kernel, theory_normalized_variance``
(``four_point_vertex`` is ``V/G^2``; ``normalized_variance_se`` is the sampling error of
``F`` from the fourth moment of ``G_hat``; theory columns are NaN where no theory is
registered for the init). ``fluctuation_draws.csv``, one row per (init, width, draw, layer):
``init, width, draw, layer, kernel`` (that draw's ``G_hat``), the data the intervals of
:mod:`.curves` resample.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dlrepro.errors import ParamsError
from dlrepro.init.inits import get_init, single_threaded_on_cpu
from dlrepro.log import get_logger

FLUCTUATION_COLUMNS = [
    "init",
    "width",
    "input_dim",
    "layer",
    "n_inits",
    "kernel_mean",
    "normalized_variance",
    "normalized_variance_se",
    "four_point_vertex",
    "theory_kernel",
    "theory_normalized_variance",
]

SAMPLERS = ("matrix", "direct")


@dataclass
class FluctuationParams:
    """Config of ``init fluctuations`` (``config['init']['fluctuations']``)."""

    inits: list[str] = field(default_factory=lambda: ["gaussian", "orthogonal"])
    widths: list[int] = field(default_factory=lambda: [64])
    depth: int = 32
    n_inits: int = 1000
    input_dim: int | None = None  # None: equal to the width (a square first layer)
    input_kernel: float = 1.0
    c_w: float = 1.0
    c_b: float = 0.0
    seed: int = 0
    chunk_size: int = 500
    dtype: str = "float64"
    device: str = "cpu"

    def __post_init__(self):
        for name in self.inits:
            get_init(name)
        check_positive_ints("widths", self.widths)
        check_positive_ints("depth", [self.depth])
        check_positive_ints("chunk_size", [self.chunk_size])
        if self.input_dim is not None:
            check_positive_ints("input_dim", [self.input_dim])
        if not (isinstance(self.n_inits, int) and self.n_inits >= 4):
            raise ParamsError(f"n_inits must be an integer >= 4, got {self.n_inits!r}")
        if not self.c_w > 0:
            raise ParamsError(f"c_w must be positive, got {self.c_w!r}")
        if not self.c_b >= 0:
            raise ParamsError(f"c_b must be non-negative, got {self.c_b!r}")
        if not self.input_kernel > self.c_b:
            raise ParamsError(f"input_kernel must exceed c_b={self.c_b}, got {self.input_kernel!r}")
        if self.dtype not in ("float32", "float64"):
            raise ParamsError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")


def check_positive_ints(name: str, values) -> None:
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ParamsError(f"{name} must be positive integers, got {values!r}")


# --- Simulation ---------------------------------------------------------------------------


def simulate_kernels(
    init: str,
    width: int,
    depth: int,
    n_inits: int,
    input_dim: int,
    input_kernel: float = 1.0,
    c_w: float = 1.0,
    c_b: float = 0.0,
    seed: int = 0,
    chunk_size: int = 500,
    dtype: str = "float64",
    device: str = "cpu",
    sampler: str = "matrix",
) -> tuple[np.ndarray, np.ndarray]:
    """Per draw and layer, ``G_hat = mean_i z_i^2`` and ``mean_i z_i^4``.

    Returns two arrays of shape ``(n_inits, depth)``. Draws are processed ``chunk_size``
    at a time. ``sampler="matrix"`` draws every weight matrix (each layer one batched
    matrix product; only one layer's weights are held in memory); ``"direct"`` draws
    ``W @ h`` directly (:func:`dlrepro.init.inits.project`), exact in distribution for a
    single input and O(n) per layer, which makes wide sweeps cheap. The result depends
    on ``seed``, ``chunk_size`` and ``sampler`` (how the random stream is consumed) only.
    """
    import torch

    from dlrepro.init.inits import project, sample_weights

    if sampler not in SAMPLERS:
        raise ParamsError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator(device).manual_seed(seed)
    log = get_logger("init.fluctuations", init=init, width=width, seed=seed)
    value = math.sqrt((input_kernel - c_b) / c_w)
    g_hat = np.empty((n_inits, depth))
    z4 = np.empty((n_inits, depth))
    for start in range(0, n_inits, chunk_size):
        size = min(chunk_size, n_inits - start)
        h = torch.full((size, input_dim), value, dtype=torch_dtype, device=device)
        for layer in range(depth):
            if sampler == "matrix":
                w = sample_weights(init, size, width, h.shape[1], c_w, generator, torch_dtype, device)
                z = torch.bmm(w, h.unsqueeze(-1)).squeeze(-1)
                b = torch.randn((size, width), generator=generator, dtype=torch_dtype, device=device)
                z = z + math.sqrt(c_b) * b
            else:
                z = project(init, h, width, c_w, generator)
                if c_b > 0:  # (the matrix path always draws biases, so its stream is unchanged)
                    z = z + math.sqrt(c_b) * torch.randn((size, width), generator=generator, dtype=torch_dtype,
                                                         device=device)
            z2 = z.square()
            g_hat[start : start + size, layer] = z2.mean(dim=1).cpu().numpy()
            z4[start : start + size, layer] = z2.square().mean(dim=1).cpu().numpy()
            h = torch.tanh(z)
        log.info("draws %d/%d done", start + size, n_inits)
    return g_hat, z4


def normalized_variance(samples: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, ``width * Var / mean^2`` and its standard error, per column of ``samples``.

    The standard error uses ``Var(sample variance) ~ (mu_4 - sigma^4) / N``; the error
    of the mean is subleading. Columns with zero variance get a zero error.
    """
    n_samples = samples.shape[0]
    mean = samples.mean(axis=0)
    var = samples.var(axis=0, ddof=1)
    m4 = ((samples - mean) ** 4).mean(axis=0)
    normalized = width * var / mean**2
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(var > 0, np.sqrt(np.maximum(m4 / var**2 - 1.0, 0.0) / n_samples), 0.0)
    return mean, normalized, normalized * rel


def summarize_kernels(g_hat: np.ndarray, z4: np.ndarray, width: int) -> pd.DataFrame:
    """Per-layer statistics over draws (rows of ``g_hat``) of the empirical kernel.

    Columns: ``layer`` (1-based), ``n_inits``, ``kernel_mean``, ``normalized_variance``,
    ``normalized_variance_se``, ``four_point_vertex`` (see the module docstring).
    """
    if width < 2:
        raise ParamsError(f"width must be at least 2 for the four-point vertex, got {width}")
    mean, normalized, se = normalized_variance(g_hat, width)
    var = g_hat.var(axis=0, ddof=1)
    vertex = (width**2 * var - width * (z4.mean(axis=0) - mean**2)) / (width - 1)
    return pd.DataFrame(
        {
            "layer": np.arange(1, g_hat.shape[1] + 1),
            "n_inits": g_hat.shape[0],
            "kernel_mean": mean,
            "normalized_variance": normalized,
            "normalized_variance_se": se,
            "four_point_vertex": vertex / mean**2,
        }
    )


# --- Theory -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _hermite_rule(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the standard normal distribution."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    return nodes, weights / math.sqrt(2 * math.pi)


def gaussian_moments(kernel: float, n_nodes: int = 121) -> tuple[float, float, float]:
    """``<s>, <s^2>, <s z^2>`` for ``s = tanh(z)^2``, ``z ~ N(0, kernel)`` (Gauss-Hermite)."""
    nodes, weights = _hermite_rule(n_nodes)
    z = math.sqrt(kernel) * nodes
    s = np.tanh(z) ** 2
    return float(weights @ s), float(weights @ s**2), float(weights @ (s * z**2))


def theory_fluctuations(
    init: str,
    width: int,
    depth: int,
    input_dim: int,
    input_kernel: float = 1.0,
    c_w: float = 1.0,
    c_b: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Leading-order (in 1/width) kernel ``K_l`` and normalised fluctuation ``F_l``.

    Iterates the recursions derived in the module docstring for ``l = 1..depth``.
    ``F`` is all NaN for an init registered without ``fresh_noise``.
    """
    fresh = get_init(init).fresh_noise
    kernels = np.empty(depth)
    nvar = np.empty(depth)
    k = input_kernel
    n_var_g = 0.0 if fresh is None else fresh(k, c_b, width, input_dim)
    for layer in range(depth):
        kernels[layer], nvar[layer] = k, n_var_g
        s1, s2, sz2 = gaussian_moments(k)
        cov = sz2 - k * s1  # Cov(s, z^2)
        chi = c_w * cov / (2 * k**2)
        sphere = c_w**2 * (s2 - s1**2 - cov**2 / (2 * k**2))
        k_next = c_b + c_w * s1
        if fresh is not None:
            n_var_g = chi**2 * n_var_g + sphere + fresh(k_next, c_b, width, width)
        k = k_next
    normalized = nvar / kernels**2 if fresh is not None else np.full(depth, np.nan)
    return kernels, normalized


# --- Stage --------------------------------------------------------------------------------


def run_fluctuations(params: FluctuationParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate and predict every (init, width) of ``params``.

    Returns the tidy summary table (``fluctuations.csv``) and the per-draw table
    (``fluctuation_draws.csv``: ``init, width, draw, layer, kernel``, ``kernel`` being
    ``G_hat`` of that draw and layer) from which intervals are resampled (:mod:`.curves`).
    """
    frames, draws = [], []
    for width in params.widths:
        input_dim = params.input_dim or width
        for init in params.inits:
            log = get_logger("init.fluctuations", init=init, width=width, seed=params.seed)
            log.info("depth %d, %d draws, input_dim %d", params.depth, params.n_inits, input_dim)
            with single_threaded_on_cpu(params.device):
                g_hat, z4 = simulate_kernels(
                    init, width, params.depth, params.n_inits, input_dim, params.input_kernel,
                    params.c_w, params.c_b, params.seed, params.chunk_size, params.dtype, params.device,
                )  # fmt: skip
            frame = summarize_kernels(g_hat, z4, width)
            theory_k, theory_f = theory_fluctuations(
                init, width, params.depth, input_dim, params.input_kernel, params.c_w, params.c_b
            )
            frame.insert(0, "init", init)
            frame.insert(1, "width", width)
            frame.insert(2, "input_dim", input_dim)
            frame["theory_kernel"] = theory_k
            frame["theory_normalized_variance"] = theory_f
            frames.append(frame)
            draws.append(draws_frame(init, width, g_hat, "layer", "kernel"))
    return pd.concat(frames, ignore_index=True)[FLUCTUATION_COLUMNS], pd.concat(draws, ignore_index=True)


def draws_frame(init: str, width: int, samples: np.ndarray, depth_column: str, value_column: str,
                depths=None) -> pd.DataFrame:
    """A (draws x depths) array as a long table ``init, width, draw, <depth>, <value>``."""
    n_draws, n_depths = samples.shape
    depths = np.arange(1, n_depths + 1) if depths is None else np.asarray(depths)
    return pd.DataFrame({
        "init": init,
        "width": width,
        "draw": np.repeat(np.arange(n_draws), n_depths),
        depth_column: np.tile(depths, n_draws),
        value_column: samples.reshape(-1),
    })


def asymptotic_slope(init: str) -> float:
    """The init's large-depth theory slope (NaN for an init no longer registered)."""
    try:
        return get_init(init).asymptotic_slope
    except ValueError:  # an init no longer registered: the table still gets its fit
        return math.nan
