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
early, one start at a time). :meth:`Problem.newton_batch` solves a batch of problems that
share the data but differ in start and row weights (bootstrap resamples, leave-one-out
subsets, grid starts) together: every iteration is a few array operations over the whole
batch, with the exact gradient and Hessian of the objective, Levenberg-Marquardt damping with
an eigenvalue floor (the Hessian is indefinite away from an optimum; ``DAMPING_FACTORS``
around each problem's damping are tried at once, on objective values only), projection onto
the bounds and a step accepted only where it lowers the objective. The terms of the LSE are
computed by :class:`Levels` (exponentials once per distinct input value, one log per point).
It stops each problem on the same projected-gradient and relative-reduction tests as
L-BFGS-B (``gtol``, ``ftol``), or where the objective has moved by less than
``PLATEAU_RTOL`` (relative) in ``PLATEAU_WINDOW`` iterations (a flat valley along a
parameter that is not identified); a problem still running after a few windows is also
solved from the bound its gradient pushes towards (E = 0, an exponent at its upper bound),
which ends the valleys that L-BFGS-B crawls along for thousands of iterations; a problem it
does not finish within its iteration budget is handed to L-BFGS-B from where it stopped.
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
# dampings tried together in each Newton iteration, relative to the problem's current one
DAMPING_FACTORS = (1e-2, 1.0, 1e2)
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
    return _weighted_loss(log_model(thetas, lX)[0], ly, w, delta, loss)


def _weighted_loss(lse, ly, w, delta, loss) -> np.ndarray:
    """The objective at ``lse`` (..., n) with row weights ``w``, summed over the last axis."""
    if loss == "huber_log":
        return (w * huber(delta, lse - ly)).sum(axis=-1) / delta
    return (w * _squares(lse, ly)).sum(axis=-1)


def _squares(lse, ly) -> np.ndarray:
    """Per-row least-squares objective ``(L_hat - L)^2 / (2 SQUARES_SCALE)`` (units of y_ref)."""
    r = np.exp(lse) - np.exp(ly)
    return r * r / (2 * SQUARES_SCALE)


@dataclass(frozen=True)
class Levels:
    """The distinct values of each normalised log input, so that the power-law terms are
    exponentiated once per distinct value (a sweep repeats each model size across data
    sizes and seeds) instead of once per point.

    ``values[j]`` (m_j,) are the distinct values of ``lX[:, j]``, ``index[j]`` (n,) maps
    each point to its value; ``lXt`` is ``lX`` transposed (k, n); ``lX_min`` (k,) the
    smallest value of each input (where every term with a non-negative exponent peaks).
    """

    values: tuple
    index: tuple
    lXt: np.ndarray
    lX_min: np.ndarray

    @classmethod
    def of(cls, lX: np.ndarray) -> "Levels":
        pairs = [np.unique(lX[:, j], return_inverse=True) for j in range(lX.shape[1])]
        return cls(tuple(v for v, _ in pairs), tuple(i.ravel() for _, i in pairs), np.ascontiguousarray(lX.T),
                   lX.min(axis=0))  # fmt: skip

    def terms(self, theta: np.ndarray, weights: bool = True):
        """``lse`` (S, n) and the softmax weights ``s0`` (S, n), ``sj`` (S, k, n) of a batch
        ``theta`` (S, p): ``LSE(e, a_j - alpha_j lX_j)`` as ``c + log(sum_t exp(t - c))``,
        ``c`` the largest term of each problem over all points (so that no exponential
        overflows), the power-law exponentials taken on the distinct values of each input.
        Without ``weights``, only ``lse``."""
        k = len(self.values)
        e = theta[:, 0]
        c = np.maximum(e, (theta[:, 1::2] - theta[:, 2::2] * self.lX_min).max(axis=1))[:, None]  # (S, 1)
        u0 = np.exp(e[:, None] - c)  # (S, 1)
        uj = [np.exp(theta[:, 1 + 2 * j, None] - c - theta[:, 2 + 2 * j, None] * self.values[j])[:, self.index[j]]
              for j in range(k)]  # fmt: skip
        total = u0 + uj[0] if k == 1 else u0 + uj[0] + uj[1]
        lse = c + np.log(total)
        if not weights:
            return lse
        inv = 1.0 / total
        return lse, u0 * inv, np.stack(uj, axis=1) * inv[:, None, :]


def _derivatives(theta, levels: Levels, ly, W, delta, loss="huber_log"):
    """Objective (S,), gradient (S, p) and Hessian (S, p, p) of a batch.

    ``theta`` (S, p), row weights ``W`` (S, n). With ``s_t`` the softmax weights of the
    terms of the LSE and ``d_t`` the derivative of term ``t`` in theta, the gradient of
    ``lse`` is ``J = sum_t s_t d_t`` and its Hessian ``sum_t s_t d_t d_t^T - J J^T``, so
    ``H = sum_i w_i/delta [(rho''(r_i) - rho'(r_i)) J_i J_i^T + rho'(r_i) sum_t s_t d_t d_t^T]``
    (``rho'``, ``rho''``: derivatives of the loss in ``lse``; for least squares ``w (L_hat - L)
    L_hat / S`` and ``w L_hat (2 L_hat - L) / S``, ``S = SQUARES_SCALE``). ``J`` is kept as
    (S, p, n), and the second-derivative term reuses the gradient's sums: ``sum_i rho'_i
    s_t,i d_t,i`` is the gradient itself except for ``d^2 / d alpha_j^2``.
    """
    S, p = theta.shape
    k = levels.lXt.shape[0]
    lse, s0, sj = levels.terms(theta)
    Jt = np.empty((S, p, lse.shape[1]))  # J transposed: (S, p, n)
    Jt[:, 0] = s0
    Jt[:, 1::2] = sj
    np.multiply(sj, -levels.lXt, out=Jt[:, 2::2])
    if loss == "huber_log":
        r = lse - ly
        d1 = np.clip(r, -delta, delta)
        f = (W * huber(delta, r)).sum(axis=1) / delta
        c2 = W * d1 / delta  # rho'
        c1 = W * ((np.abs(r) < delta) - d1) / delta  # rho'' - rho'
    else:
        y_hat = np.exp(lse)
        res = y_hat - np.exp(ly)
        f = (W * res * res).sum(axis=1) / (2 * SQUARES_SCALE)
        c2 = W * res * y_hat / SQUARES_SCALE  # rho'
        c1 = W * y_hat * y_hat / SQUARES_SCALE  # rho'' - rho'
    g = np.matmul(Jt, c2[:, :, None])[:, :, 0]
    H = np.matmul(Jt * c1[:, None, :], np.swapaxes(Jt, 1, 2))
    # sum_t s_t d_t d_t^T: e only in its own term; (a_j, alpha_j) in term j, whose
    # derivative is (1, -lX_j): the sums are g's entries, and sum rho' s_j lX_j^2
    H[:, 0, 0] += g[:, 0]
    for j in range(k):
        a, al = 1 + 2 * j, 2 + 2 * j
        H[:, a, a] += g[:, a]
        H[:, a, al] += g[:, al]
        H[:, al, a] += g[:, al]
        H[:, al, al] -= (c2 * Jt[:, al] * levels.lXt[j]).sum(axis=1)
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
        self.levels = Levels.of(self.lX)
        self._lo_hi = None

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
        """Lower and upper bounds of the free vector, as arrays (computed once)."""
        if self._lo_hi is None:
            self._lo_hi = tuple(np.array(self.bounds, dtype=float).T)
        return self._lo_hi

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
        return bool(success or self._stationary_batch(x[None], jac[None], np.array([fun]))[0])

    def _stationary_batch(self, theta, g, f) -> np.ndarray:
        """:meth:`stationary` (without L-BFGS-B's own verdict) of a batch."""
        lo, hi = self.lo_hi
        projected = np.abs(projected_gradient(theta, g, lo, hi)).max(axis=1)
        return projected <= 1e-5 * np.maximum(1.0, np.abs(f))

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
        f, g, H = _derivatives(self.expand(phi), self.levels, self.ly, W, self.delta, self.loss)
        if self.tied:
            g, H = self._chain(g, H)
        return f, g, H

    def _candidate_objective(self, phi: np.ndarray, W: np.ndarray) -> np.ndarray:
        """Objective values (S, L) of ``L`` candidate free vectors per problem (S, L, p),
        problem ``s`` with row weights ``W[s]``."""
        S, L, p = phi.shape
        lse = self.levels.terms(self.expand(phi.reshape(S * L, p)), weights=False)
        return _weighted_loss(lse.reshape(S, L, -1), self.ly, W[:, None, :], self.delta, self.loss)

    def _bound_starts(self, theta, g, which: np.ndarray):
        """Starts at the bounds the gradient pushes towards, for the problems ``which``:
        ``E`` at its lower bound (``E`` = 0 in effect) where the gradient pushes it down, and
        (untied laws) an exponent at its upper bound where the gradient pushes it up, its
        ``a`` lowered so that the term keeps its value at the smallest x (where it weighs
        most). Returns (rows (m,), starts (m, p))."""
        lo, hi = self.lo_hi
        rows, starts = [], []
        push = which & (g[:, 0] > 0) & (theta[:, 0] > lo[0])
        if push.any():
            start = theta[push].copy()
            start[:, 0] = lo[0]
            rows.append(np.flatnonzero(push))
            starts.append(start)
        for j in range(0 if self.tied else self.k):
            a, al = 1 + 2 * j, 2 + 2 * j
            push = which & (g[:, al] < 0) & (theta[:, al] < hi[al])
            if push.any():
                start = theta[push].copy()
                start[:, a] += (hi[al] - start[:, al]) * self.levels.lX_min[j]
                start[:, al] = hi[al]
                rows.append(np.flatnonzero(push))
                starts.append(np.clip(start, lo, hi))
        if not rows:
            return np.empty(0, dtype=int), np.empty((0, theta.shape[1]))
        return np.concatenate(rows), np.vstack(starts)

    def _try_bounds(self, theta, f, g, H, W, which: np.ndarray) -> np.ndarray:
        """Solve the problems ``which`` from the bounds their gradient pushes towards
        (:meth:`_bound_starts`); move those whose optimum there is lower (in place).
        Returns the mask of problems moved."""
        moved = np.zeros(len(theta), dtype=bool)
        rows, starts = self._bound_starts(theta, g, which)
        if len(rows) == 0:
            return moved
        sub = self.newton_batch(starts, W[rows], max_iter=PLATEAU_WINDOW, finish=False)
        for r, x, fun in zip(rows, sub.x, sub.fun):  # a few problems: the best start of each
            if fun < f[r]:
                theta[r], f[r] = x, fun
                moved[r] = True
        if moved.any():
            _, g[moved], H[moved] = self._batch_derivatives(theta[moved], W[moved])
        return moved

    def newton_batch(self, starts: np.ndarray, W: np.ndarray, max_iter: int = NEWTON_MAX_ITER,
                     finish: bool = True) -> BatchResult:  # fmt: skip
        """Minimise the objective with row weights ``W[s]`` from ``starts[s]``, all s at once.

        ``starts`` (S, n_free); ``W`` (S, n) or (n,) (the same weights for every start).
        Each iteration tries the damped Newton steps of ``len(DAMPING_FACTORS)`` dampings
        around the problem's own (objective values only), moves to the best of them where it
        lowers the objective (and only then evaluates the gradient and Hessian there), and
        adapts the damping: below the winning one after a success, far above the largest
        tried after a failure.

        A problem still running after ``2 PLATEAU_WINDOW`` iterations whose gradient pushes
        ``E`` down is most often crawling along the valley where the irreducible loss
        vanishes (a resample whose losses hardly fall: ``E`` shrinks while ``A`` and the
        exponent take over, and the objective falls by ever smaller amounts for thousands of
        iterations, in L-BFGS-B as here), or an exponent up towards its bound. After 2, 4, 8...
        windows (and before a plateau stops it), it is also solved from those bounds
        (:meth:`_bound_starts`); where that optimum is lower, the problem moves there and
        goes on. A problem not finished within
        ``max_iter`` iterations is finished by L-BFGS-B (unless ``finish`` is false).
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
        factors = np.asarray(DAMPING_FACTORS)
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
                if finish:  # after windows 2, 4, 8... every problem still running, else the flat ones
                    window = iterations // PLATEAU_WINDOW
                    crawling = window > 1 and window & (window - 1) == 0
                    flat &= ~self._try_bounds(theta, f, g, H, W, ~done if crawling else flat)
                plateau |= flat
                done |= flat
                f_window = f.copy()
            idx = np.flatnonzero(~done)
            th, gg = theta[idx], g[idx]
            small = np.abs(projected_gradient(th, gg, lo, hi)).max(axis=1) <= gtol
            if small.any():
                done[idx[small]] = True
                idx, th, gg = idx[~small], th[~small], gg[~small]
            if len(idx) == 0:
                break
            HH, ff = H[idx], f[idx]
            # variables held at a bound: the gradient pushes them outwards
            fixed = ((th <= lo) & (gg > 0)) | ((th >= hi) & (gg < 0))
            free = ~fixed
            Hr = HH * free[:, :, None] * free[:, None, :] + eye * fixed[:, :, None]
            evals, V = np.linalg.eigh(Hr)
            scale = np.maximum(np.abs(evals).max(axis=1), 1e-300)
            Vg = np.einsum("sqp,sq->sp", V, gg * free)
            lams = lam[idx, None] * factors  # (s, L)
            d = np.maximum(np.abs(evals), 1e-12 * scale[:, None])[:, None, :] + (lams * scale[:, None])[:, :, None]
            steps = -np.einsum("spq,slq->slp", V, Vg[:, None, :] / d) * free[:, None, :]
            cand = np.clip(th[:, None, :] + steps, lo, hi)  # (s, L, p)
            fc = self._candidate_objective(cand, W[idx])
            best = np.argmin(fc, axis=1)  # the first of equal values: the least damped
            rows = np.arange(len(idx))
            fn, new = fc[rows, best], cand[rows, best]
            better = fn < ff
            acc = idx[better]
            if len(acc):
                theta[acc], f[acc] = new[better], fn[better]
                _, g[acc], H[acc] = self._batch_derivatives(new[better], W[acc])
            lam[acc] = np.maximum(lams[rows, best][better] / 10.0, 1e-12)
            lam[idx[~better]] = lams[~better, -1] * 10.0
            # L-BFGS-B's ftol test: the relative reduction of an accepted step is negligible
            negligible = better & ((ff - fn) <= ftol * np.maximum(np.maximum(np.abs(ff), np.abs(fn)), 1.0))
            # no step lowers the objective any more: it is at machine precision
            moved = np.abs(cand[:, -1] - th).max(axis=1)
            stalled = ~better & ((lam[idx] > 1e12) | (moved <= 1e-15 * (1 + np.abs(th).max(axis=1))))
            done[idx[negligible | stalled]] = True
            finished[idx[negligible | stalled]] = True  # L-BFGS-B reports these as converged too
        converged = plateau | finished | self._stationary_batch(theta, g, f)
        # what Newton did not finish, L-BFGS-B does (from where Newton stopped)
        todo = np.flatnonzero(~converged) if finish else np.empty(0, dtype=int)
        for s in todo:
            res, _ = self.minimize(theta[s][None], W[s])
            if res.fun <= f[s]:
                theta[s], f[s] = res.x, res.fun
            converged[s] = res.converged
        return BatchResult(theta, f, converged, len(todo), iterations)
