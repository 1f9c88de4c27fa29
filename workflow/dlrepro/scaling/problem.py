"""The law, its Huber objective and the two solvers: scipy's L-BFGS-B one start at a time,
and a batched projected Newton method that solves many (start, row weights) problems at once.

A law ``L = E + sum_j A_j x_j^-alpha_j`` is fitted in normalised log units: ``lX = log(X /
x_ref)``, ``ly = log(y / y_ref)`` (``x_ref``, ``y_ref`` the geometric means), with the
log-sum-exp parametrisation ``theta = (e, a_1, alpha_1[, a_2, alpha_2])``,
``log L_hat / y_ref = LSE(e, a_1 - alpha_1 lX_1, ...)``. The objective (``loss``) is the
(row-weighted) Huber loss of the log residuals divided by ``delta`` (``"huber_log"``, the
default), or the sum of squares of the residuals ``L_hat - L`` in units of ``y_ref``,
divided by ``2 SQUARES_SCALE`` (``"least_squares"``: the objective of
``scipy.optimize.curve_fit``, used e.g. by Gadre et al. 2024).

With ``tied`` (two variables only), the two exponents are one parameter: the solvers work on
the free vector ``phi = (e, a_1, alpha, a_2)``, expanded to ``theta = phi[TIED_INDEX] = (e,
a_1, alpha, a_2, alpha)``; gradients and Hessians are mapped back by the chain rule.

:meth:`Problem.minimize` is the reference solver (L-BFGS-B with tolerances that do not stop
early, one start at a time). :func:`newton_batch` solves a batch of problems that share the
data but differ in start and row weights (bootstrap resamples, leave-one-out subsets, grid
starts) together: every iteration is a few array operations over the whole batch, with the
exact gradient and Hessian of the Huber objective, Levenberg-Marquardt damping with an
eigenvalue floor (the Hessian is indefinite away from an optimum), projection onto the
bounds and a step accepted only where it lowers the objective. It stops each problem on the
same projected-gradient and relative-reduction tests as L-BFGS-B (``gtol``, ``ftol``), or
where the objective has moved by less than ``PLATEAU_RTOL`` (relative) in ``PLATEAU_WINDOW``
iterations (a flat valley along a parameter that is not identified, where L-BFGS-B crawls
for thousands of iterations to no better optimum); a problem it does not finish within its
iteration budget is handed to L-BFGS-B from where it stopped.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber

# L-BFGS-B settings that do not stop early (Besiroglu et al. 2024).
LBFGS_OPTIONS = {"ftol": 1e-15, "gtol": 1e-10, "maxiter": 10_000, "maxfun": 100_000}

# Default bounds of the normalised log parameters: E/y_ref in [1e-11, 150],
# A_j (x_ref)^-alpha_j / y_ref in [1e-11, 2e4].
E_BOUNDS = (-25.0, 5.0)
A_BOUNDS = (-25.0, 10.0)

# Default starting grid in normalised units (y divided by its geometric mean, x by its
# geometric mean, so that E/y_ref < 1 and A (x/x_ref)^-alpha / y_ref ~ 1 at x = x_ref).
GRID_E = (-3.0, -1.5, -0.7, -0.3, -0.1)
GRID_A = (-4.0, -2.0, -1.0, -0.3, 0.3)
GRID_ALPHA = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
# the two-variable grid is coarser per axis (it has five axes)
GRID2_E = (-2.0, -0.7, -0.3, -0.1)
GRID2_A = (-3.0, -1.0, 0.0)
GRID2_ALPHA = (0.1, 0.3, 0.7, 1.5)

LOSSES = ("huber_log", "least_squares")
# least squares: f = sum_i w_i (L_hat_i - L_i)^2 / (2 SQUARES_SCALE), L in units of y_ref; the
# scale puts it on the order of the Huber objective (r^2 / (2 delta) for small residuals)
SQUARES_SCALE = 1e-3
# tied exponents: theta = phi[TIED_INDEX], phi = (e, a_1, alpha, a_2)
TIED_INDEX = np.array([0, 1, 2, 3, 2])

NEWTON_MAX_ITER = 2000
PLATEAU_WINDOW = 50
PLATEAU_RTOL = 1e-8


def log_model(theta: np.ndarray, lX: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log L_hat / y_ref`` at normalised log inputs ``lX`` (n, k).

    ``theta`` is one parameter vector (p,) or a batch (S, p); returns ``(lse, T)`` with
    ``T[..., i, j] = a_j - alpha_j lX[i, j]`` and ``lse = LSE(e, T[..., :, 0], ...)``.
    """
    e = theta[..., 0, None]
    T = theta[..., None, 1::2] - theta[..., None, 2::2] * lX
    lse = np.logaddexp(e, T[..., 0])
    for j in range(1, lX.shape[1]):
        lse = np.logaddexp(lse, T[..., j])
    return lse, T


def objective(theta, lX, ly, w, delta, loss="huber_log"):
    """Weighted Huber loss of log residuals (divided by delta), or weighted least squares of
    residuals in units of y_ref (``loss="least_squares"``), and its gradient."""
    lse, T = log_model(theta, lX)
    if loss == "huber_log":
        r = lse - ly
        f = (w * huber(delta, r)).sum() / delta
        g = w * np.clip(r, -delta, delta) / delta  # d f / d lse
    else:
        y_hat = np.exp(lse)
        r = y_hat - np.exp(ly)
        f = (w * r * r).sum() / (2 * SQUARES_SCALE)
        g = w * r * y_hat / SQUARES_SCALE  # d f / d lse
    gP = g[:, None] * np.exp(T - lse[:, None])  # softmax weight of each power-law term
    grad = np.empty_like(theta)
    grad[0] = (g * np.exp(theta[0] - lse)).sum()
    grad[1::2] = gP.sum(axis=0)
    grad[2::2] = -(gP * lX).sum(axis=0)
    return f, grad


def objective_batch(thetas, lX, ly, w, delta, loss="huber_log") -> np.ndarray:
    """Objective values (without gradient) of a batch of parameter vectors (S, p)."""
    lse, _ = log_model(thetas, lX)
    if loss == "huber_log":
        return (w * huber(delta, lse - ly)).sum(axis=-1) / delta
    return (w * _squares(lse, ly)).sum(axis=-1)


def _squares(lse, ly) -> np.ndarray:
    """Per-row least-squares objective ``(L_hat - L)^2 / (2 SQUARES_SCALE)`` (units of y_ref)."""
    r = np.exp(lse) - np.exp(ly)
    return r * r / (2 * SQUARES_SCALE)


def _derivatives(theta, lX, ly, W, delta, loss="huber_log"):
    """Objective (S,), gradient (S, p) and Hessian (S, p, p) of a batch.

    ``theta`` (S, p), row weights ``W`` (S, n). With ``s_t`` the softmax weights of the
    terms of the LSE and ``d_t`` the derivative of term ``t`` in theta, the gradient of
    ``lse`` is ``J = sum_t s_t d_t`` and its Hessian ``sum_t s_t d_t d_t^T - J J^T``, so
    ``H = sum_i w_i/delta [(rho''(r_i) - rho'(r_i)) J_i J_i^T + rho'(r_i) sum_t s_t d_t d_t^T]``
    (``rho'``, ``rho''``: derivatives of the loss in ``lse``; for least squares ``w (L_hat - L)
    L_hat / S`` and ``w L_hat (2 L_hat - L) / S``, ``S = SQUARES_SCALE``).
    """
    S, p = theta.shape
    k = lX.shape[1]
    lse, T = log_model(theta, lX)  # (S, n), (S, n, k)
    r = lse - ly
    s0 = np.exp(theta[:, 0, None] - lse)  # (S, n)
    sj = np.exp(T - lse[..., None])  # (S, n, k)
    J = np.empty(r.shape + (p,))
    J[..., 0] = s0
    J[..., 1::2] = sj
    J[..., 2::2] = -sj * lX
    if loss == "huber_log":
        d1 = np.clip(r, -delta, delta)
        d2 = (np.abs(r) < delta).astype(float)
        f = (W * huber(delta, r)).sum(axis=1) / delta
        g = np.einsum("sn,snp->sp", W * d1, J) / delta
        c1 = W * (d2 - d1) / delta
        c2 = W * d1 / delta
    else:
        y_hat = np.exp(lse)
        res = y_hat - np.exp(ly)
        f = (W * res * res).sum(axis=1) / (2 * SQUARES_SCALE)
        c2 = W * res * y_hat / SQUARES_SCALE  # rho'
        c1 = W * y_hat * y_hat / SQUARES_SCALE  # rho'' - rho'
        g = np.einsum("sn,snp->sp", c2, J)
    H = np.matmul(np.swapaxes(J * c1[..., None], 1, 2), J)
    H[:, 0, 0] += (c2 * s0).sum(axis=1)
    cs = c2[..., None] * sj  # (S, n, k)
    a, al = np.arange(1, p, 2), np.arange(2, p, 2)
    sum_s = cs.sum(axis=1)
    sum_sl = (cs * lX).sum(axis=1)
    sum_sll = (cs * lX * lX).sum(axis=1)
    for j in range(k):
        H[:, a[j], a[j]] += sum_s[:, j]
        H[:, a[j], al[j]] -= sum_sl[:, j]
        H[:, al[j], a[j]] -= sum_sl[:, j]
        H[:, al[j], al[j]] += sum_sll[:, j]
    return f, g, H


def projected_gradient(theta, g, lo, hi) -> np.ndarray:
    """``P(theta - g) - theta``: zero at a stationary point of the bounded problem."""
    return np.clip(theta - g, lo, hi) - theta


@dataclass
class BatchResult:
    """Solutions of a batch: ``x`` (S, p), ``fun`` (S,), ``converged`` (S,), ``n_lbfgs``
    (problems finished by L-BFGS-B) and ``iterations`` (Newton iterations run)."""

    x: np.ndarray
    fun: np.ndarray
    converged: np.ndarray
    n_lbfgs: int
    iterations: int


@dataclass
class Problem:
    """Data of one fit in normalised log units: ``lX = log(X / x_ref)``, ``ly = log(y / y_ref)``.

    ``exponent_bounds`` bound every exponent; ``grid_axes`` are the starting grid's values
    of (e, a, alpha) in normalised units (None: the defaults above); ``loss`` is one of
    ``LOSSES``; ``tied``: one exponent for both variables. The solver methods (``minimize``,
    ``newton_batch``, ``screen``, ``grid``, ``bounds``) work on the free vector ``phi``
    (``theta`` itself unless tied); :meth:`expand` maps it to ``theta``.
    """

    lX: np.ndarray
    ly: np.ndarray
    x_ref: np.ndarray
    y_ref: float
    delta: float
    exponent_bounds: tuple[float, float]
    grid_axes: tuple | None = None
    loss: str = "huber_log"
    tied: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss: {self.loss!r} is not one of {list(LOSSES)}")
        if self.tied and self.k != 2:
            raise ValueError("tied exponents need a two-variable law (N and D)")

    @classmethod
    def from_data(cls, X: np.ndarray, y: np.ndarray, options) -> "Problem":
        """``options`` has ``huber_delta``, ``exponent_min``, ``exponent_max``, ``grid`` (and
        optionally ``loss`` and ``tied_exponents``)."""
        logX, logy = np.log(X), np.log(y)
        x_ref = np.exp(logX.mean(axis=0))
        y_ref = float(np.exp(logy.mean()))
        return cls(logX - np.log(x_ref), logy - math.log(y_ref), x_ref, y_ref, options.huber_delta,
                   (options.exponent_min, options.exponent_max), getattr(options, "grid", None),
                   getattr(options, "loss", "huber_log"), bool(getattr(options, "tied_exponents", False)))  # fmt: skip

    @property
    def k(self) -> int:
        return self.lX.shape[1]

    @property
    def exponent_max(self) -> float:
        return self.exponent_bounds[1]

    @property
    def n_free(self) -> int:
        """Free parameters: ``1 + 2k``, one fewer with tied exponents."""
        return 1 + 2 * self.k - int(self.tied)

    @property
    def theta_bounds(self) -> list[tuple[float, float]]:
        """Bounds of the full vector ``theta``."""
        return [E_BOUNDS] + [A_BOUNDS, tuple(self.exponent_bounds)] * self.k

    @property
    def bounds(self) -> list[tuple[float, float]]:
        """Bounds of the free vector ``phi`` (those of ``theta`` unless tied)."""
        full = self.theta_bounds
        return full[: self.n_free] if self.tied else full

    def expand(self, phi: np.ndarray) -> np.ndarray:
        """Free vector(s) ``phi`` (..., n_free) -> ``theta`` (..., 1 + 2k); the identity unless tied."""
        return np.asarray(phi)[..., TIED_INDEX] if self.tied else phi

    def reduce(self, theta: np.ndarray) -> np.ndarray:
        """``theta`` -> its free vector (the first exponent stands for both when tied)."""
        return np.asarray(theta)[..., : self.n_free] if self.tied else theta

    def _chain(self, g: np.ndarray, H: np.ndarray | None = None):
        """Gradient (..., p) [and Hessian (..., p, p)] in theta -> in phi (tied only)."""
        P = np.eye(self.n_free)[TIED_INDEX]  # d theta / d phi (p, n_free)
        g = g @ P
        return g if H is None else (g, np.swapaxes(P, 0, 1) @ H @ P)

    def _objective(self, phi, lX, ly, w):
        """The objective and its gradient at a free vector (for L-BFGS-B)."""
        f, g = objective(self.expand(phi), lX, ly, w, self.delta, self.loss)
        return f, self._chain(g) if self.tied else g

    @property
    def lo_hi(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.array(self.bounds, dtype=float).T
        return lo, hi

    def grid(self) -> np.ndarray:
        """The starting grid (S, n_free), exponents clipped to their bounds."""
        if self.grid_axes is not None:
            axes_e, axes_a, axes_alpha = self.grid_axes
        elif self.k == 1:
            axes_e, axes_a, axes_alpha = GRID_E, GRID_A, GRID_ALPHA
        else:
            axes_e, axes_a, axes_alpha = GRID2_E, GRID2_A, GRID2_ALPHA
        lo, hi = self.exponent_bounds
        alphas = sorted({min(max(a, lo), hi) for a in axes_alpha})
        axes = [axes_e] + [axes_a, alphas] * self.k
        if self.tied:  # phi = (e, a_1, alpha, a_2)
            axes = axes[: self.n_free]
        return np.array(list(itertools.product(*axes)), dtype=float)

    def to_raw(self, theta: np.ndarray) -> np.ndarray:
        """Normalised log parameters -> raw (E, A, alpha[, B, beta]); works on batches."""
        theta = np.asarray(theta, dtype=float)
        raw = np.empty_like(theta)
        raw[..., 0] = self.y_ref * np.exp(theta[..., 0])
        raw[..., 2::2] = theta[..., 2::2]
        raw[..., 1::2] = self.y_ref * np.exp(theta[..., 1::2] + theta[..., 2::2] * np.log(self.x_ref))
        return raw

    # ------------------------------------------------------------------ reference solver

    def minimize(self, starts: np.ndarray, w: np.ndarray, mask: np.ndarray | None = None):
        """Best L-BFGS-B optimum over ``starts`` of the objective with row weights ``w``.

        Rows with zero weight (or outside ``mask``) are dropped before optimising.
        Returns ``(OptimizeResult, index of the winning start)``.
        """
        keep = w > 0 if mask is None else (w > 0) & mask
        lX, ly, wk = self.lX[keep], self.ly[keep], w[keep]
        best, best_i = None, -1
        if self.tied:
            fun, args = self._objective, (lX, ly, wk)
        else:
            fun, args = objective, (lX, ly, wk, self.delta, self.loss)
        for i, start in enumerate(starts):
            res = minimize(fun, start, args=args, jac=True, method="L-BFGS-B", bounds=self.bounds,
                           options=LBFGS_OPTIONS)  # fmt: skip
            if best is None or res.fun < best.fun:
                best, best_i = res, i
        best.converged = self.stationary(best.x, best.jac, best.fun, best.success)
        return best, best_i

    def stationary(self, x, jac, fun, success: bool = False) -> bool:
        """Converged: L-BFGS-B says so, or it stopped (line search at machine precision)
        where the projected gradient vanishes relative to the objective."""
        lo, hi = self.lo_hi
        projected = projected_gradient(x, jac, lo, hi)
        return bool(success or np.abs(projected).max() <= 1e-5 * max(1.0, abs(fun)))

    def screen(self, w: np.ndarray, n: int | None) -> np.ndarray:
        """The ``n`` grid points with the lowest initial objective (all if ``n`` is None)."""
        grid = self.grid()
        if n is None or n >= len(grid):
            return grid
        values = objective_batch(self.expand(grid), self.lX, self.ly, w, self.delta, self.loss)
        return grid[np.argsort(values, kind="stable")[:n]]

    def screen_batch(self, W: np.ndarray, n: int) -> np.ndarray:
        """:meth:`screen` for every row of weights ``W`` (R, n_rows) at once: (R, n, p)."""
        grid = self.grid()
        if n >= len(grid):
            return np.broadcast_to(grid, (len(W),) + grid.shape)
        lse, _ = log_model(self.expand(grid), self.lX)
        if self.loss == "huber_log":
            values = W @ huber(self.delta, lse - self.ly).T / self.delta  # (R, G)
        else:
            values = W @ _squares(lse, self.ly).T
        order = np.argsort(values, axis=1, kind="stable")[:, :n]
        return grid[order]

    # ------------------------------------------------------------------ batched solver

    def _batch_derivatives(self, phi: np.ndarray, W: np.ndarray):
        """Objective, gradient and Hessian of a batch of free vectors (see :func:`_derivatives`)."""
        f, g, H = _derivatives(self.expand(phi), self.lX, self.ly, W, self.delta, self.loss)
        if self.tied:
            g, H = self._chain(g, H)
        return f, g, H

    def newton_batch(self, starts: np.ndarray, W: np.ndarray, max_iter: int = NEWTON_MAX_ITER) -> BatchResult:
        """Minimise the objective with row weights ``W[s]`` from ``starts[s]``, all s at once.

        ``starts`` (S, n_free); ``W`` (S, n) or (n,) (the same weights for every start).
        """
        lo, hi = self.lo_hi
        theta = np.clip(np.array(starts, dtype=float), lo, hi)
        S, p = theta.shape
        W = np.broadcast_to(np.asarray(W, dtype=float), (S, len(self.ly)))
        f, g, H = self._batch_derivatives(theta, W)
        lam = np.full(S, 1e-6)
        done = np.zeros(S, dtype=bool)
        gtol, ftol = LBFGS_OPTIONS["gtol"], LBFGS_OPTIONS["ftol"]
        eye = np.eye(p)
        plateau = np.zeros(S, dtype=bool)
        finished = np.zeros(S, dtype=bool)
        f_window = f.copy()  # the objective PLATEAU_WINDOW iterations ago
        iterations = 0
        for iterations in range(1, max_iter + 1):
            if iterations % PLATEAU_WINDOW == 0:
                # a flat valley (a parameter that is not identified): the objective has not
                # moved by PLATEAU_RTOL in a window; L-BFGS-B would crawl along it for
                # thousands of iterations to no better optimum
                flat = ~done & ((f_window - f) <= PLATEAU_RTOL * np.maximum(np.abs(f), 1.0))
                plateau |= flat
                done |= flat
                f_window = f.copy()
            pg = np.abs(projected_gradient(theta, g, lo, hi)).max(axis=1)
            done |= pg <= gtol
            idx = np.flatnonzero(~done)
            if len(idx) == 0:
                break
            th, gg, HH, ff, ll = theta[idx], g[idx], H[idx], f[idx], lam[idx]
            # variables held at a bound: the gradient pushes them outwards
            fixed = ((th <= lo) & (gg > 0)) | ((th >= hi) & (gg < 0))
            free = ~fixed
            Hr = HH * free[:, :, None] * free[:, None, :] + eye * fixed[:, :, None]
            gr = gg * free
            evals, V = np.linalg.eigh(Hr)
            scale = np.maximum(np.abs(evals).max(axis=1), 1e-300)
            d = np.maximum(np.abs(evals), 1e-12 * scale[:, None]) + (ll * scale)[:, None]
            step = -np.einsum("spq,sq->sp", V, np.einsum("sqp,sq->sp", V, gr) / d)
            step *= free
            new = np.clip(th + step, lo, hi)
            fn, gn, Hn = self._batch_derivatives(new, W[idx])
            better = fn < ff
            acc = idx[better]
            theta[acc], f[acc], g[acc], H[acc] = new[better], fn[better], gn[better], Hn[better]
            lam[acc] = np.maximum(ll[better] / 10.0, 1e-12)
            rej = idx[~better]
            lam[rej] = ll[~better] * 10.0
            # L-BFGS-B's ftol test: the relative reduction of an accepted step is negligible
            negligible = better & ((ff - fn) <= ftol * np.maximum(np.maximum(np.abs(ff), np.abs(fn)), 1.0))
            # no step lowers the objective any more: it is at machine precision
            moved = np.abs(new - th).max(axis=1)
            stalled = ~better & ((lam[idx] > 1e12) | (moved <= 1e-15 * (1 + np.abs(th).max(axis=1))))
            done[idx[negligible | stalled]] = True
            finished[idx[negligible | stalled]] = True  # L-BFGS-B reports these as converged too
        converged = plateau | finished | np.array([self.stationary(theta[s], g[s], f[s]) for s in range(S)])
        # what Newton did not finish, L-BFGS-B does (from where Newton stopped)
        todo = np.flatnonzero(~converged)
        for s in todo:
            res, _ = self.minimize(theta[s][None], W[s])
            if res.fun <= f[s]:
                theta[s], f[s] = res.x, res.fun
            converged[s] = res.converged
        return BatchResult(theta, f, converged, len(todo), iterations)
