r"""Width sweep of the depth slope of the normalised fluctuation (``init width-sweep``).

For Gaussian weights the leading-order (1/n) theory gives ``F_l = n Var(G_hat)/G^2``
growing with slope 2/3 per layer at large depth (:mod:`.fluctuations`); at finite width
the measured slope exceeds it by an ``O(l/n)`` correction, so at fixed layers the slope
should approach the theory's as the width grows, roughly as ``s(n) = s_inf + c/n``.
Each width is simulated with the direct sampler (``W @ h`` drawn without forming ``W``,
exact for one input; :func:`dlrepro.init.inits.project`), which makes many draws at
width 256 cheap; widths are independent simulations. Each width's slope has a normal
interval with the jackknife standard error over its draws
(:func:`dlrepro.claims.jackknife_interval`; the bootstrap's is too narrow for a variance of
skewed draws, :mod:`dlrepro.coverage`); the extrapolation ``s_inf`` and the narrow-minus-
wide difference are linear in the widths' slopes, so their standard errors combine the
widths' in quadrature.

Table ``width_sweep.csv``: ``init, kind, width, n_inits, depth, layer_min, layer_max,
fitted_slope, ci_lo, ci_hi, theory_slope, asymptotic_theory_slope, excess, excess_ci_lo,
excess_ci_hi``. ``kind`` is ``measured`` (one row per width; ``excess`` is the fitted slope
minus ``theory_slope``, the leading-order theory's slope over the same layers),
``extrapolated`` (``width`` 0: ``s_inf`` of ``s(n) = s_inf + c/n``) or
``narrow_minus_wide`` (``width`` 0: the slope at the narrowest width minus that at the
widest, i.e. how much the excess shrinks; theory columns NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dlrepro.errors import ParamsError
from dlrepro.init.curves import deep_window, jackknife_curves, line_slopes, normalized_variance_curve
from dlrepro.init.fluctuations import asymptotic_slope, check_positive_ints, simulate_kernels, \
    theory_fluctuations
from dlrepro.init.inits import get_init, single_threaded_on_cpu
from dlrepro.log import get_logger

SWEEP_COLUMNS = [
    "init", "kind", "width", "n_inits", "depth", "layer_min", "layer_max", "fitted_slope", "ci_lo", "ci_hi",
    "theory_slope", "asymptotic_theory_slope", "excess", "excess_ci_lo", "excess_ci_hi",
]


@dataclass
class WidthSweepParams:
    """Config of ``init width-sweep`` (``config['init']['width_sweep']``)."""

    inits: list[str] = field(default_factory=lambda: ["gaussian"])
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    depth: int = 32
    n_inits: int = 8000
    fit_from: float = 0.5
    n_resamples: int = 1000
    input_kernel: float = 1.0
    c_w: float = 1.0
    c_b: float = 0.0
    seed: int = 0
    chunk_size: int = 1000
    dtype: str = "float64"
    device: str = "cpu"

    def __post_init__(self):
        for name in self.inits:
            if get_init(name).project is None:
                raise ParamsError(f"init {name!r} has no direct projector, which the width sweep needs")
        check_positive_ints("widths", self.widths)
        if any(w < 2 for w in self.widths) or len(set(self.widths)) < 2:
            raise ParamsError(f"widths must be at least two distinct integers >= 2, got {self.widths!r}")
        check_positive_ints("depth", [self.depth])
        check_positive_ints("chunk_size", [self.chunk_size])
        check_positive_ints("n_resamples", [self.n_resamples])
        if self.depth < 3:
            raise ParamsError(f"depth must be at least 3 to fit a slope, got {self.depth}")
        if not (isinstance(self.n_inits, int) and self.n_inits >= 4):
            raise ParamsError(f"n_inits must be an integer >= 4, got {self.n_inits!r}")
        if not 0 <= self.fit_from < 1:
            raise ParamsError(f"fit_from must be in [0, 1), got {self.fit_from!r}")
        if self.dtype not in ("float32", "float64"):
            raise ParamsError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")


def extrapolate(widths: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """``s_inf`` of the least-squares fit ``s(n) = s_inf + c/n`` (per row of ``slopes``)."""
    x = 1.0 / np.asarray(widths, dtype=float)
    c = line_slopes(x, slopes)
    return slopes.mean(axis=-1) - c * x.mean()


def run_width_sweep(params: WidthSweepParams) -> pd.DataFrame:
    """Simulate every (init, width); slopes with intervals and the extrapolation."""
    rows = []
    layers = np.arange(1, params.depth + 1)
    window = deep_window(layers, params.fit_from)
    lo_l, hi_l = int(layers[window].min()), int(layers[window].max())
    for init in params.inits:
        from dlrepro.claims import jackknife_interval
        from scipy.stats import norm

        z = float(norm.ppf(0.975))
        point, ses, theory_slopes = [], [], []
        for width in params.widths:
            log = get_logger("init.width_sweep", init=init, width=width, seed=params.seed)
            log.info("depth %d, %d draws (direct sampler)", params.depth, params.n_inits)
            with single_threaded_on_cpu(params.device):
                g_hat, _ = simulate_kernels(
                    init, width, params.depth, params.n_inits, width, params.input_kernel, params.c_w,
                    params.c_b, params.seed + width, params.chunk_size, params.dtype, params.device, "direct",
                )  # fmt: skip
            curve = normalized_variance_curve(g_hat, width)
            slope = float(line_slopes(layers[window].astype(float), curve[window]))
            jack = line_slopes(layers[window].astype(float), jackknife_curves(g_hat, width)[:, window])
            lo, hi = (float(b) for b in jackknife_interval(slope, jack))
            _, theory = theory_fluctuations(init, width, params.depth, width, params.input_kernel, params.c_w,
                                            params.c_b)
            theory_slope = float(line_slopes(layers[window].astype(float), theory[window]))
            point.append(slope)
            ses.append((hi - lo) / (2 * z))
            theory_slopes.append(theory_slope)
            rows.append((init, "measured", width, params.n_inits, params.depth, lo_l, hi_l, slope, lo, hi,
                         theory_slope, asymptotic_slope(init), slope - theory_slope, lo - theory_slope,
                         hi - theory_slope))
        widths = np.array(params.widths, dtype=float)
        s_inf = float(extrapolate(widths, np.array(point)))
        coef = extrapolate(widths, np.eye(len(widths)))  # s_inf is linear in the slopes
        se = float(np.sqrt(np.sum(coef**2 * np.array(ses) ** 2)))
        lo, hi = s_inf - z * se, s_inf + z * se
        # the leading-order theory is width independent for a square first layer
        theory_slope = float(np.mean(theory_slopes))
        rows.append((init, "extrapolated", 0, params.n_inits, params.depth, lo_l, hi_l, s_inf, lo, hi,
                     theory_slope, asymptotic_slope(init), s_inf - theory_slope, lo - theory_slope,
                     hi - theory_slope))
        narrow, wide = int(np.argmin(widths)), int(np.argmax(widths))
        drop = point[narrow] - point[wide]
        se = math.hypot(ses[narrow], ses[wide])
        lo, hi = drop - z * se, drop + z * se
        rows.append((init, "narrow_minus_wide", 0, params.n_inits, params.depth, lo_l, hi_l, drop, lo, hi,
                     math.nan, math.nan, drop, lo, hi))
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)
