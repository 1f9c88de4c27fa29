"""Model collapse in linear regression: replace vs accumulate, simulated and in closed form.

The analytically tractable setting of Gerstgrasser et al. 2024, "Is Model Collapse
Inevitable?" (arXiv:2404.01413, Sec. 3 and App.), which extends Dohmatob et al. 2024,
"Model Collapse Demystified: The Case of Regression" (arXiv:2402.07712), to accumulating
data.

Framework
---------
Covariates are isotropic Gaussian, ``x ~ N(0, I_d)``; the ground truth is ``w*`` and the
label noise is ``N(0, sigma^2)``. Iteration ``n = 0, 1, ..., N`` draws a *fresh* design
``X_n`` (``T x d``, i.i.d. rows) and fresh noise ``E_n ~ N(0, sigma^2 I_T)``, and labels

    y_0 = X_0 w* + E_0                      (real data)
    y_n = X_n w_{n-1} + E_n,   n >= 1        (labels from the previous fitted model)

where ``w_{n-1}`` is the model fitted by the *same* policy at iteration ``n-1``. Then

* ``replace``:    ``w_n`` = OLS on ``(X_n, y_n)`` only (``T`` samples);
* ``accumulate``: ``w_n`` = OLS on the concatenation of ``(X_0, y_0) .. (X_n, y_n)``
  (``(n + 1) T`` samples: real data plus every synthetic set so far).

Conventions
-----------
* **Iteration index**: ``iteration = 0`` is the model fitted on real data; ``iterations``
  (config) is the number of synthetic iterations, so a run has ``iterations + 1`` rows
  per policy and grid point.
* **Test error** is the population *excess* risk
  ``E_x[(x^T w_n - x^T w*)^2] = ||w_n - w*||^2`` (as ``Sigma = I``), computed exactly
  from the fitted weights: no finite test set, and *without* the irreducible noise
  ``sigma^2`` (the risk on a fresh noisy label is this plus ``sigma^2``). This is the
  ``E_test`` of both papers.
* The expectation is over everything: designs, noise (and ``w*``, on which the error
  does not depend).

Closed forms (exact for every finite ``n``; need ``T > d + 1``)
-------------------------------------------------------------
Write ``G_k = X_k^T X_k ~ Wishart_d(I, T)`` and ``h_k = X_k^T E_k``. For both policies the
error ``e_n = w_n - w*`` obeys a telescoping recursion:

* replace: ``e_n = e_{n-1} + G_n^{-1} h_n``;
* accumulate: with ``A_n = G_0 + .. + G_n`` the normal equations give
  ``A_n e_n = A_{n-1} e_{n-1} + G_n e_{n-1} + h_n``, i.e. ``e_n = e_{n-1} + A_n^{-1} h_n``.

The noise vectors ``E_k`` are independent, zero-mean and independent of all designs,
so cross terms vanish and ``E||e_n||^2 = sigma^2 sum_k E tr(M_k^{-1} G_k M_k^{-1})``.
With the inverse-Wishart mean ``E[W^{-1}] = I / (m - d - 1)`` for ``W ~ Wishart_d(I, m)``:

* replace (``M_k = G_k``): ``E tr(G^{-1}) = d / (T - d - 1)``, so exactly

      E[test error_n] = (n + 1) sigma^2 d / (T - d - 1)         -- grows without bound.

* accumulate (``M_k = A_k ~ Wishart_d(I, (k+1) T)``): the ``G_0 .. G_k`` are exchangeable
  given ``A_k``, so ``E tr(A_k^{-2} G_k) = E tr(A_k^{-1}) / (k + 1)
  = d / ((k + 1)((k + 1) T - d - 1))``, and exactly

      E[test error_n] = sigma^2 d  sum_{j=1}^{n+1} 1 / (j (j T - d - 1))
                      = sigma^2 d/(d+1) [psi(n+2-a) - psi(1-a) - psi(n+2) + psi(1)],

  with ``a = (d + 1) / T`` and ``psi`` the digamma function (partial fractions
  ``1/(j(jT-c)) = (1/c)(1/(j-a) - 1/j)``). Its ``n -> inf`` limit is
  ``sigma^2 d/(d+1) [psi(1) - psi(1-a)]``.

  Since ``j T - d - 1 >= j (T - d - 1)``, this is below Gerstgrasser et al.'s bound

      sigma^2 d / (T - d - 1)  sum_{j=1}^{n+1} 1/j^2  <  sigma^2 d / (T - d - 1) * pi^2/6,

  which is an *upper bound* only (tight when ``T >> d``), not the expectation.

Both derivations use only that the designs are independent Gaussian with ``E_n``
independent of them; for the accumulate formula the designs must also share one
covariance (exchangeability). The variance of the simulated errors is finite only for
``T > d + 3`` (second moment of the inverse Wishart), so standard errors are
meaningful only there; ``T <= d + 1`` is rejected (infinite expected error).

Simulation
----------
Both policies run on the same draws (common random numbers), vectorised over
repetitions with numpy. OLS is solved through its normal equations: the fit of
iteration ``n`` needs only ``G_n`` and ``X_n^T y_n = G_n w_{n-1} + h_n``, and accumulate
keeps running sums of both (exactly OLS on the concatenated data). Two samplers draw
``(G_n, h_n)``:

* ``direct``: explicit ``X_n`` and ``E_n`` (``O(T d)`` normals per repetition and iteration);
* ``wishart`` (default): the same joint law drawn directly, ``G = L L^T ~ Wishart_d(I, T)``
  by the Bartlett decomposition and ``h | G ~ N(0, sigma^2 G)`` as ``sigma L z``, which costs
  ``O(d^2)`` and makes the paper's grid run in seconds independently of ``T``.

Randomness: each (d, T, sigma, block of repetitions) has its own generator seeded from
``(seed, d, T, bits of sigma, block)``, so a grid point's numbers do not depend on the
rest of the grid; the block size is a function of (d, T, sampler) only. Draw order per
block: ``w* ~ N(0, I_d / d)`` for every repetition, then per iteration the sampler's
draws.

Table ``summary.csv`` (one row per policy, grid point and iteration)
-------------------------------------------------------------------
``policy``                 replace | accumulate
``iteration``              0 = fitted on real data; n = n-th synthetic iteration
``d``, ``T``, ``sigma``    dimension, samples per iteration, label-noise std
``n_repeats``              independent repetitions
``n_train``                training-set size of that fit (T or (iteration + 1) T)
``test_error_mean``        mean over repetitions of ``||w_n - w*||^2``
``test_error_sem``         its standard error (std with ddof=1 / sqrt(n_repeats))
``test_error_theory``      exact expectation (formulas above)
``test_error_bound``       Gerstgrasser et al.'s finite-n closed form: exact for
                           replace (equals ``test_error_theory``), an upper bound for
                           accumulate (``sum 1/j^2`` form)
``test_error_limit``       ``n -> inf`` limit of the exact expectation (inf for replace)
``test_error_bound_limit`` ``n -> inf`` limit of the bound: ``pi^2/6 sigma^2 d/(T-d-1)``
                           for accumulate, inf for replace
``z_score``                ``(test_error_mean - test_error_theory) / test_error_sem``
``doubling_*``             the boundedness statistic of the last ``N`` iterations, the same
                           on every row of a policy and grid point: ``_ratio``, ``_ci_lo``,
                           ``_ci_hi`` (Fieller, 95%) and ``_theory`` (exact); see
                           :func:`dlrepro.linreg_claims.doubling_ratio`

Command line (``python -m dlrepro linreg ...``)
-----------------------------------------------
``simulate --params JSON --out summary.csv``   run the grid (keys: :class:`LinregParams`)
``plot --csv summary.csv --out STEM``          figure ``STEM.png`` and ``STEM.pdf``
``check --csv summary.csv [--out check.json] [--max-z Z]``
                                               max ``|z_score|`` and the theory checks as
                                               JSON; exit status 1 if above ``Z``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.special
from threadpoolctl import threadpool_limits

from dlrepro.errors import InputFileError, ParamsError
from dlrepro.io import write_csv, write_json
from dlrepro.log import get_logger

POLICIES = ("replace", "accumulate")
SAMPLERS = ("wishart", "direct")

COLUMNS = [
    "policy",
    "iteration",
    "d",
    "T",
    "sigma",
    "n_repeats",
    "n_train",
    "test_error_mean",
    "test_error_sem",
    "test_error_theory",
    "test_error_bound",
    "test_error_limit",
    "test_error_bound_limit",
    "z_score",
    "doubling_ratio",
    "doubling_ci_lo",
    "doubling_ci_hi",
    "doubling_theory",
]

# Memory for one block of repetitions (the largest per-block arrays together).
_BLOCK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------- params


@dataclass(frozen=True)
class LinregParams:
    """The ``linreg`` config subtree. The grid is the product ``d x T x sigma``."""

    d: tuple[int, ...] = (10, 50)
    T: tuple[int, ...] = (100, 500)
    sigma: tuple[float, ...] = (0.1, 1.0)
    iterations: int = 20
    n_repeats: int = 1000
    seed: int = 0
    policies: tuple[str, ...] = POLICIES
    sampler: str = "wishart"

    def __post_init__(self) -> None:
        for name in ("d", "T", "sigma", "policies"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise ParamsError(f"linreg: {name} must be a list, got {value!r}")
            if len(value) == 0:
                raise ParamsError(f"linreg: {name} must not be empty")
            if len(set(value)) != len(value):
                raise ParamsError(f"linreg: {name} has duplicates: {list(value)}")
            object.__setattr__(self, name, tuple(value))
        for d in self.d:
            _check_int("d", d, minimum=1)
        for T in self.T:
            _check_int("T", T, minimum=1)
        for s in self.sigma:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
                raise ParamsError(f"linreg: sigma must be finite and > 0, got {s!r}")
        _check_int("iterations", self.iterations, minimum=0)
        _check_int("n_repeats", self.n_repeats, minimum=2)
        _check_int("seed", self.seed, minimum=0)
        for p in self.policies:
            if p not in POLICIES:
                raise ParamsError(
                    f"linreg: unknown policy {p!r}; this closed-form stage knows {list(POLICIES)}"
                )
        if self.sampler not in SAMPLERS:
            raise ParamsError(f"linreg: unknown sampler {self.sampler!r}; known: {list(SAMPLERS)}")
        for d in self.d:
            for T in self.T:
                _check_dims(d, T)

    @classmethod
    def from_dict(cls, raw: dict) -> "LinregParams":
        if not isinstance(raw, dict):
            raise ParamsError(f"linreg: --params must be a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ParamsError(f"linreg: unknown key {unknown[0]!r} in params; known: {sorted(known)}")
        return cls(**raw)

    @classmethod
    def from_json(cls, text: str) -> "LinregParams":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ParamsError(f"linreg: --params is not valid JSON: {err}") from err
        return cls.from_dict(raw)


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParamsError(f"linreg: {name} must be an integer >= {minimum}, got {value!r}")


def _check_dims(d: int, T: int) -> None:
    if T <= d + 1:
        raise ParamsError(
            f"linreg: need T > d + 1 for a finite expected test error, got d={d}, T={T}"
        )


# --------------------------------------------------------------------------- theory


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ParamsError(f"linreg: unknown policy {policy!r}; known: {list(POLICIES)}")


def expected_error(policy: str, iteration, d: int, T: int, sigma: float) -> np.ndarray:
    """Exact ``E||w_n - w*||^2`` after ``iteration`` synthetic iterations (module docstring)."""
    _check_policy(policy)
    _check_dims(d, T)
    n = np.asarray(iteration, dtype=np.float64)
    if policy == "replace":
        return (n + 1.0) * sigma**2 * d / (T - d - 1)
    a = (d + 1) / T
    psi = scipy.special.digamma
    return sigma**2 * d / (d + 1) * (psi(n + 2.0 - a) - psi(1.0 - a) - psi(n + 2.0) + psi(1.0))


def error_bound(policy: str, iteration, d: int, T: int, sigma: float) -> np.ndarray:
    """Gerstgrasser et al.'s closed form: ``sigma^2 d/(T-d-1)`` times ``n+1`` (replace,
    exact) or ``sum_{j=1}^{n+1} 1/j^2`` (accumulate, an upper bound on the expectation)."""
    _check_policy(policy)
    _check_dims(d, T)
    n = np.asarray(iteration, dtype=np.float64)
    scale = sigma**2 * d / (T - d - 1)
    if policy == "replace":
        return (n + 1.0) * scale
    # sum_{j=1}^{N} 1/j^2 = zeta(2) - zeta(2, N + 1)   (Hurwitz zeta)
    return scale * (scipy.special.zeta(2.0) - scipy.special.zeta(2.0, n + 2.0))


def expected_error_limit(policy: str, d: int, T: int, sigma: float) -> float:
    """``lim_{n -> inf}`` of :func:`expected_error` (inf for replace)."""
    _check_policy(policy)
    _check_dims(d, T)
    if policy == "replace":
        return math.inf
    a = (d + 1) / T
    psi = scipy.special.digamma
    return float(sigma**2 * d / (d + 1) * (psi(1.0) - psi(1.0 - a)))


def error_bound_limit(policy: str, d: int, T: int, sigma: float) -> float:
    """``lim_{n -> inf}`` of :func:`error_bound`: ``pi^2/6 sigma^2 d/(T-d-1)`` for accumulate."""
    _check_policy(policy)
    _check_dims(d, T)
    if policy == "replace":
        return math.inf
    return math.pi**2 / 6 * sigma**2 * d / (T - d - 1)


# --------------------------------------------------------------------------- simulation


def block_sizes(n_repeats: int, d: int, T: int, sampler: str) -> list[int]:
    """Split ``n_repeats`` into blocks whose arrays fit ``_BLOCK_BYTES``.

    Depends on (d, T, sampler) only, never on the machine, so results are reproducible.
    """
    per_repeat = 8 * (6 * d * d + (2 * T * d if sampler == "direct" else 0))
    size = max(1, min(n_repeats, _BLOCK_BYTES // per_repeat))
    full, rest = divmod(n_repeats, size)
    return [size] * full + ([rest] if rest else [])


def block_rng(seed: int, d: int, T: int, sigma: float, block: int) -> np.random.Generator:
    """The generator of one block of repetitions of one grid point."""
    sigma_bits = int(np.float64(sigma).view(np.uint64))
    return np.random.default_rng(np.random.SeedSequence([seed, d, T, sigma_bits, block]))


def draw_data(rng: np.random.Generator, size: int, d: int, T: int, sigma: float):
    """One iteration's fresh data for ``size`` repetitions: ``X (size, T, d)``, ``E (size, T)``."""
    X = rng.standard_normal((size, T, d))
    E = sigma * rng.standard_normal((size, T))
    return X, E


def draw_sufficient_statistics(
    rng: np.random.Generator, size: int, d: int, T: int, sigma: float, sampler: str
):
    """``G = X^T X`` with shape ``(size, d, d)`` and ``h = X^T E`` with shape ``(size, d)``."""
    if sampler == "direct":
        X, E = draw_data(rng, size, d, T, sigma)
        Xt = X.transpose(0, 2, 1)
        return Xt @ X, (Xt @ E[..., None])[..., 0]
    if sampler == "wishart":
        # Bartlett decomposition of Wishart_d(I, T): G = L L^T with L lower triangular,
        # L_ii^2 ~ chi^2_{T - i} (i = 0 .. d-1) and L_ij ~ N(0, 1) below the diagonal.
        # (scipy.stats.wishart draws the same way but loops over samples in Python and
        # does not return L, which h needs.)
        L = np.zeros((size, d, d))
        below = np.tril_indices(d, k=-1)
        L[:, below[0], below[1]] = rng.standard_normal((size, below[0].size))
        diag = np.arange(d)
        L[:, diag, diag] = np.sqrt(rng.chisquare(T - diag, size=(size, d)))
        z = rng.standard_normal((size, d, 1))
        return L @ L.transpose(0, 2, 1), sigma * (L @ z)[..., 0]
    raise ParamsError(f"linreg: unknown sampler {sampler!r}; known: {list(SAMPLERS)}")


def _solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.solve(A, b[..., None])[..., 0]


def _matvec(A: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (A @ x[..., None])[..., 0]


def simulate_errors(
    d: int,
    T: int,
    sigma: float,
    iterations: int,
    n_repeats: int,
    seed: int,
    sampler: str = "wishart",
) -> dict[str, np.ndarray]:
    """Test errors ``||w_n - w*||^2`` of every repetition: ``{policy: (n_repeats, iterations + 1)}``."""
    LinregParams(d=[d], T=[T], sigma=[sigma], iterations=iterations, n_repeats=n_repeats,
                 seed=seed, sampler=sampler)  # validates
    log = get_logger("linreg", d=d, T=T, sigma=sigma, seed=seed)
    errors = {p: np.empty((n_repeats, iterations + 1)) for p in POLICIES}
    # Batches of small matrices run fastest on one BLAS thread (several threads spin and were
    # ~6x slower here); one thread also makes the numbers independent of the core count.
    with threadpool_limits(limits=1, user_api="blas"):
        _simulate_blocks(errors, d, T, sigma, iterations, n_repeats, seed, sampler, log)
    return errors


def _simulate_blocks(errors, d, T, sigma, iterations, n_repeats, seed, sampler, log) -> None:
    """Fill ``errors`` block by block (see :func:`simulate_errors`)."""
    blocks = block_sizes(n_repeats, d, T, sampler)
    start = 0
    for b, size in enumerate(blocks):
        rng = block_rng(seed, d, T, sigma, b)
        w_star = rng.standard_normal((size, d)) / math.sqrt(d)
        w_rep = w_acc = w_star  # the "model" that labels the real data is the truth
        gram_acc = np.zeros((size, d, d))
        xty_acc = np.zeros((size, d))
        rows = slice(start, start + size)
        for n in range(iterations + 1):
            G, h = draw_sufficient_statistics(rng, size, d, T, sigma, sampler)
            # labels y_n = X_n w_{n-1} + E_n, hence X_n^T y_n = G_n w_{n-1} + h_n
            w_rep = _solve(G, _matvec(G, w_rep) + h)
            gram_acc += G
            xty_acc += _matvec(G, w_acc) + h
            w_acc = _solve(gram_acc, xty_acc)
            errors["replace"][rows, n] = np.sum((w_rep - w_star) ** 2, axis=1)
            errors["accumulate"][rows, n] = np.sum((w_acc - w_star) ** 2, axis=1)
        start += size
        if len(blocks) > 1:
            log.info("block %d/%d done (%d repetitions)", b + 1, len(blocks), start)


def summarize(errors: dict[str, np.ndarray], d: int, T: int, sigma: float,
              policies=POLICIES) -> pd.DataFrame:
    """The ``summary.csv`` rows of one grid point from :func:`simulate_errors`' output."""
    from dlrepro.linreg_claims import doubling_ratio

    frames = []
    for policy in policies:
        err = errors[policy]
        ratio, lo, hi, exact = doubling_ratio(err, lambda it: expected_error(policy, it, d, T, sigma))
        n_repeats, n_iter = err.shape
        it = np.arange(n_iter)
        mean = err.mean(axis=0)
        sem = err.std(axis=0, ddof=1) / math.sqrt(n_repeats)
        theory = expected_error(policy, it, d, T, sigma)
        frames.append(pd.DataFrame({
            "policy": policy,
            "iteration": it,
            "d": d,
            "T": T,
            "sigma": float(sigma),
            "n_repeats": n_repeats,
            "n_train": T * (it + 1) if policy == "accumulate" else np.full(n_iter, T),
            "test_error_mean": mean,
            "test_error_sem": sem,
            "test_error_theory": theory,
            "test_error_bound": error_bound(policy, it, d, T, sigma),
            "test_error_limit": expected_error_limit(policy, d, T, sigma),
            "test_error_bound_limit": error_bound_limit(policy, d, T, sigma),
            "z_score": (mean - theory) / sem,
            "doubling_ratio": ratio, "doubling_ci_lo": lo, "doubling_ci_hi": hi, "doubling_theory": exact,
        }))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def simulate(params: LinregParams) -> pd.DataFrame:
    """Run the whole (d, T, sigma) grid; rows ordered by grid (as configured), policy, iteration."""
    log = get_logger("linreg", seed=params.seed)
    grid = [(d, T, s) for d in params.d for T in params.T for s in params.sigma]
    log.info("simulating %d grid points x %d iterations x %d repetitions (%s sampler)",
             len(grid), params.iterations + 1, params.n_repeats, params.sampler)
    frames = []
    for i, (d, T, sigma) in enumerate(grid, 1):
        if T <= d + 3:
            log.warning("d=%d T=%d: T <= d + 3, the test error has infinite variance; "
                        "standard errors are unreliable", d, T)
        t0 = time.perf_counter()
        errors = simulate_errors(d, T, sigma, params.iterations, params.n_repeats,
                                 params.seed, params.sampler)
        frame = summarize(errors, d, T, sigma, params.policies)
        frames.append(frame)
        log.info("[%d/%d] d=%d T=%d sigma=%g: %.2fs, max |z| = %.2f", i, len(grid), d, T,
                 sigma, time.perf_counter() - t0, np.abs(frame["z_score"]).max())
    return pd.concat(frames, ignore_index=True)


def check(frame: pd.DataFrame) -> dict:
    """How well simulation matches theory, and the theory's own claims, as a JSON-ready dict.

    ``max_abs_z``: the largest ``|mean - exact theory| / sem`` over all rows (and per
    policy), with the row where it occurs; ``accumulate_theory_below_bound``: exact
    expectation <= the Gerstgrasser bound on every accumulate row;
    ``accumulate_max_mean_over_bound_limit``: the largest simulated accumulate mean
    divided by ``pi^2/6 sigma^2 d/(T-d-1)`` (below 1 when accumulation avoids collapse);
    ``replace_min_last_over_first``: the smallest ratio of replace's mean at its last
    iteration to that at iteration 0 (about ``iterations + 1``).
    """
    _require_columns(frame)
    z = np.abs(frame["z_score"].to_numpy())
    worst = frame.iloc[int(np.argmax(z))]
    out: dict = {
        "n_rows": int(len(frame)),
        "max_abs_z": float(z.max()),
        "worst_row": {k: _py(worst[k]) for k in ("policy", "iteration", "d", "T", "sigma")},
        "max_abs_z_by_policy": {
            p: float(np.abs(g["z_score"]).max()) for p, g in frame.groupby("policy", sort=True)
        },
    }
    acc = frame[frame["policy"] == "accumulate"]
    if len(acc):
        out["accumulate_theory_below_bound"] = bool(
            (acc["test_error_theory"] <= acc["test_error_bound"] * (1 + 1e-12)).all())
        out["accumulate_max_mean_over_bound_limit"] = float(
            (acc["test_error_mean"] / acc["test_error_bound_limit"]).max())
    rep = frame[frame["policy"] == "replace"]
    if len(rep) and rep["iteration"].max() > 0:
        ratios = [g.sort_values("iteration")["test_error_mean"].iloc[-1]
                  / g.sort_values("iteration")["test_error_mean"].iloc[0]
                  for _, g in rep.groupby(["d", "T", "sigma"])]
        out["replace_min_last_over_first"] = float(min(ratios))
    return out


def _py(value):
    return value.item() if hasattr(value, "item") else value


def _require_columns(frame: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputFileError(f"linreg: table lacks columns {missing}")


# --------------------------------------------------------------------------- figure

_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


def plot(frame: pd.DataFrame, out) -> list[Path]:
    """Test error vs iteration, one panel per (d, T): simulation (mean, 95% CI) as points,
    exact theory as lines, accumulate's pi^2/6 bound dotted; one marker per sigma."""
    from dlrepro import style

    _require_columns(frame)
    if frame.empty:
        raise InputFileError("linreg: cannot plot an empty table")
    panels = list(frame[["d", "T"]].drop_duplicates().itertuples(index=False, name=None))
    sigmas = sorted(frame["sigma"].unique())
    policies = [p for p in POLICIES if p in set(frame["policy"])]
    fig, axes = style.subplots(len(panels))
    for ax, (d, T) in zip(axes, panels):
        panel = frame[(frame["d"] == d) & (frame["T"] == T)]
        for (policy, sigma), g in panel.groupby(["policy", "sigma"], sort=False):
            g = g.sort_values("iteration")
            c = style.color(policy)
            marker = _MARKERS[sigmas.index(sigma) % len(_MARKERS)]
            ax.errorbar(g["iteration"], g["test_error_mean"], yerr=1.96 * g["test_error_sem"],
                        fmt=marker, color=c, ms=3.5, capsize=2, lw=0.8, mfc="none")
            ax.plot(g["iteration"], g["test_error_theory"], "-", color=c, lw=1.2)
            if policy == "accumulate":
                ax.axhline(g["test_error_bound_limit"].iloc[0], color=c, ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_title(f"d = {d}, T = {T}")
        ax.set_xlabel("model-fitting iteration")
    axes[0].set_ylabel(r"test error $\|\hat w_n - w^*\|^2$")
    _legend(axes[-1], policies, sigmas, style)
    fig.suptitle("Linear regression: replace vs accumulate", y=1.02)
    return style.save_figure(fig, out)


def _legend(ax, policies, sigmas, style) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=style.color(p), lw=1.2, label=p) for p in policies]
    handles += [Line2D([], [], color="0.3", marker=_MARKERS[i % len(_MARKERS)], ls="none",
                       mfc="none", label=f"sim. $\\sigma$={s:g} (95% CI)")
                for i, s in enumerate(sigmas)]
    handles += [Line2D([], [], color="0.3", lw=1.2, label="exact theory")]
    if "accumulate" in policies:
        handles += [Line2D([], [], color="0.3", ls=":", lw=1, label=r"$\pi^2/6$ bound")]
    ax.legend(handles=handles, fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))


# --------------------------------------------------------------------------- CLI


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlrepro linreg", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("simulate", help="simulate the grid and write summary.csv")
    p.add_argument("--params", required=True, help="JSON object with LinregParams keys")
    p.add_argument("--out", required=True, help="summary CSV path")
    p = sub.add_parser("plot", help="render the figure from summary.csv")
    p.add_argument("--csv", required=True)
    p.add_argument("--out", required=True, help="figure path without suffix (.png and .pdf)")
    p = sub.add_parser("check", help="max |sim - theory| / sem and the bound checks, as JSON")
    p.add_argument("--csv", required=True)
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--max-z", type=float, help="exit with status 1 if max |z| exceeds this")
    args = parser.parse_args(argv)
    log = get_logger("linreg")

    if args.cmd == "simulate":
        params = LinregParams.from_json(args.params)
        log.info("params %s", json.dumps(asdict(params), sort_keys=True))
        write_csv(args.out, simulate(params))
        log.info("wrote %s", args.out)
        return 0
    frame = pd.read_csv(args.csv)
    if args.cmd == "plot":
        for path in plot(frame, args.out):
            log.info("wrote %s", path)
        return 0
    report = check(frame)
    print(json.dumps(report, indent=2, sort_keys=True))
    if args.out:
        write_json(args.out, report)
    if args.max_z is not None and report["max_abs_z"] > args.max_z:
        log.error("max |z| = %.2f exceeds %.2f", report["max_abs_z"], args.max_z)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
