"""Scaling-law fitter: the batched bootstrap against the per-resample L-BFGS-B loop it replaced.

Two workloads, the sizes of issue #24:

* **per-group** -- ``groups`` one-variable laws ``L = E + A x^-alpha`` of ``min_points`` to
  ``max_points`` points each (x log-spaced over 1e5..1e9; each group its own law: alpha
  uniform in [0.2, 1], E in [1.5, 3], reducible loss at the smallest x 0.3-2 x E, log-normal
  noise with sigma 0.005-0.03; deterministic, seed 0), ``n_resamples`` resamples each;
* **joint** -- ``E + A/N^alpha + B/D^beta`` (the replication's estimates E 1.82, A 482,
  alpha 0.35, B 2085, beta 0.37) on a 16 x 15 grid of (N, D) = 240 points, noise sigma
  0.02, ``n_resamples`` resamples.

Both are fitted with the default options (every grid start on the full data, one grid
start per resample besides the warm start), ``solver="batched"`` (what the workflow and
the CLI run) and ``solver="lbfgs"`` (the loop of before), in this process, with CPU time
(``time.process_time``, BLAS single-threaded as the fitter sets it). The loop at 1,000
resamples takes minutes (293 + 34 CPU-s on the issue's machine), so it is timed at
``baseline_resamples`` and at 0 resamples and extrapolated linearly in the resamples (its
cost is the point fit and leave-one-out plus a constant cost per resample); the batched
side is timed at the full ``n_resamples``. Both sides fit the same resamples at
``baseline_resamples`` (the draws are the same generator's), and there they are compared:

* ``max_rel_diff_estimates``: the largest relative difference of the full-data estimates;
* ``same_optimum_fraction``: the fraction of resamples on which both reach the same
  optimum (objective within 1e-9 relative and estimates within 1e-4); the rest is split by
  which solver reached the lower objective (``resamples_lower_batched`` / ``_loop``, and
  by how much at most: ``max_gap_lower_*``, in the objective's units, the Huber loss of
  the log residuals divided by delta, a sum over the resample's points). The
  objective of a resample (Huber loss of log residuals with delta 1e-3) is not convex and
  has nearby local optima on resamples of few distinct points; both solvers are local, so
  from the same starts each sometimes ends in a lower one than the other;
* ``ci_diff_vs_mc_error``: the largest difference of an interval end between the solvers,
  in units of that end's Monte Carlo error (the half-width of the distribution-free 68%
  interval of the quantile from the loop's order statistics): below 1, the solver changes
  an interval end by less than drawing another set of resamples would;
* ``max_rel_diff_vs_loop``: the largest relative difference of estimates and interval ends
  (the quick sizes' test pins it; at the full sizes, unidentified laws dominate it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from benchmarks import check

NAME = "scaling_fit"


@dataclass
class Setup:
    groups: int = 19
    min_points: int = 7
    max_points: int = 11
    n_resamples: int = 1000
    joint_n: int = 16
    joint_d: int = 15
    baseline_resamples: int = 100
    n_starts: int | None = None  # grid starts on the full data (None: all, the default)


QUICK = Setup(groups=2, n_resamples=20, joint_n=4, joint_d=4, baseline_resamples=8, n_starts=12)


def group_data(setup: Setup, seed: int = 0):
    """The per-group workload: a list of (x, y)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(setup.groups):
        n = int(rng.integers(setup.min_points, setup.max_points + 1))
        alpha, E, r, sigma = rng.uniform(0.2, 1.0), rng.uniform(1.5, 3.0), rng.uniform(0.3, 2.0), rng.uniform(0.005, 0.03)
        x = np.geomspace(1e5, 1e9, n)
        A = r * E * x[0] ** alpha
        out.append((x, (E + A * x**-alpha) * np.exp(rng.normal(0.0, sigma, n))))
    return out


def joint_data(setup: Setup, seed: int = 0):
    """The joint workload: (X (n, 2), y)."""
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.geomspace(1e7, 1e10, setup.joint_n), np.geomspace(1e9, 1e12, setup.joint_d))
    X = np.column_stack([N.ravel(), D.ravel()])
    y = 1.82 + 482.0 * X[:, 0] ** -0.35 + 2085.0 * X[:, 1] ** -0.37
    return X, y * np.exp(rng.normal(0.0, 0.02, len(y)))


def _fit_all(work, options, kind):
    from dlrepro.scaling.fit import fit_law

    t0 = time.process_time()
    if kind == "groups":
        fits = [fit_law(x, y, options=options) for x, y in work]
    else:
        fits = [fit_law(work[0], work[1], x_names=["N", "D"], options=options)]
    return time.process_time() - t0, fits


def _max_rel_diff(a, b, estimates_only: bool = False) -> float:
    worst = 0.0
    for fa, fb in zip(a, b):
        for name, value in fa.params.items():
            values = [(value, fb.params[name])] + ([] if estimates_only else list(zip(fa.ci[name], fb.ci[name])))
            for u, v in values:
                worst = max(worst, abs(u - v) / max(abs(v), 1e-300))
    return worst


def _resample_objectives(fit) -> np.ndarray:
    """The objective of each bootstrap estimate on its own resample (R,)."""
    from dlrepro.scaling.bootstrap import _units, draw_resamples
    from dlrepro.scaling.problem import objective_batch

    pb = fit.problem
    X = np.asarray(fit.data["X"])  # the points fitted
    unit, labels, _ = _units(len(X), None)
    counts, _ = draw_resamples(X, labels, fit.bootstrap["n_resamples"], fit.bootstrap["seed"], unit, pb.n_free)
    return objective_batch(fit.theta_draws, pb.lX, pb.ly, counts[:, labels].astype(float), pb.delta, pb.loss)


def _mc_error(draws: np.ndarray, q: float) -> float:
    """Monte Carlo error of the q-quantile of ``draws``: half the width of the
    distribution-free 68% interval of the quantile, between order statistics R q -+ sqrt(R q (1-q))."""
    x = np.sort(draws)
    R = len(x)
    m = math.sqrt(R * q * (1 - q))
    lo, hi = int(max(math.floor(R * q - m), 0)), int(min(math.ceil(R * q + m), R - 1))
    return (x[hi] - x[lo]) / 2


def _compare(batched, loop) -> dict:
    """Per-resample optima and interval ends of the two solvers (same resamples)."""
    same = lower_b = lower_l = 0
    worst_ci = gap_b = gap_l = 0.0  # gap: the largest objective difference each way
    for fb, fl in zip(batched, loop):
        ob, ol = _resample_objectives(fb), _resample_objectives(fl)
        scale = np.maximum(np.abs(ol), 1.0)
        close = np.abs(fb.theta_draws - fl.theta_draws).max(axis=1) <= 1e-4
        equal = np.abs(ob - ol) <= 1e-9 * scale
        same += int((equal & close).sum())
        lower_b += int((ob < ol - 1e-9 * scale).sum())
        lower_l += int((ol < ob - 1e-9 * scale).sum())
        gap_b, gap_l = max(gap_b, float((ol - ob).max(initial=0.0))), max(gap_l, float((ob - ol).max(initial=0.0)))
        draws = fl.draws
        q = [(1 - fl.ci_level) / 2, (1 + fl.ci_level) / 2]
        for i, name in enumerate(fl.params):
            for end, level in enumerate(q):
                v = fl.ci[name][end]
                err = max(_mc_error(draws[:, i], level), 1e-6 * abs(v), 1e-300)  # floor: ties among few resamples
                worst_ci = max(worst_ci, abs(fb.ci[name][end] - v) / err)
    n = sum(len(f.theta_draws) for f in loop)
    return {"same_optimum_fraction": same / max(n, 1), "resamples_lower_batched": lower_b,
            "resamples_lower_loop": lower_l, "max_gap_lower_batched": gap_b, "max_gap_lower_loop": gap_l,
            "ci_diff_vs_mc_error": worst_ci}


def benchmark(setup: Setup) -> dict:
    import logging

    from dlrepro.scaling.fit import FitOptions

    logging.getLogger("dlrepro.scaling").setLevel(logging.WARNING)  # no per-fit progress lines
    checks, detail = [], {}
    targets = {"groups": 30.0, "joint": 10.0}  # CPU-s at the sizes
    full = setup.n_resamples == 1000 and setup.groups == 19 and setup.n_starts is None
    for kind, work in (("groups", group_data(setup)), ("joint", joint_data(setup))):
        base = FitOptions(n_resamples=setup.baseline_resamples, n_starts=setup.n_starts)
        t_new, fits_new = _fit_all(work, dataclasses.replace(base, n_resamples=setup.n_resamples), kind)
        t_new_b, fits_new_b = _fit_all(work, base, kind)
        t_old_b, fits_old_b = _fit_all(work, dataclasses.replace(base, solver="lbfgs"), kind)
        t_old_0, _ = _fit_all(work, dataclasses.replace(base, n_resamples=0, solver="lbfgs"), kind)
        per_resample = max(t_old_b - t_old_0, 0.0) / setup.baseline_resamples
        t_old = t_old_0 + per_resample * setup.n_resamples
        diff = _max_rel_diff(fits_new_b, fits_old_b)
        diff_estimates = _max_rel_diff(fits_new_b, fits_old_b, estimates_only=True)
        compared = _compare(fits_new_b, fits_old_b)
        detail[kind] = {**compared, "max_rel_diff_estimates": diff_estimates, "batched_cpu_s": t_new, "loop_cpu_s_extrapolated": t_old, "loop_cpu_s_no_resamples": t_old_0,
                        "loop_cpu_s_per_resample": per_resample, "batched_cpu_s_at_baseline": t_new_b,
                        "loop_cpu_s_at_baseline": t_old_b, "max_rel_diff_vs_loop": diff,
                        "n_fits": len(fits_new)}  # fmt: skip
        label = f"{setup.groups} groups" if kind == "groups" else f"joint {len(work[1])} points"
        checks.append(check(f"{kind}.batched_cpu_s ({label}, {setup.n_resamples} resamples)", t_new, "CPU-s",
                            target=targets[kind] if full else None, higher_is_better=False))  # fmt: skip
        checks.append(check(f"{kind}.loop_cpu_s (extrapolated from {setup.baseline_resamples})", t_old, "CPU-s"))
        checks.append(check(f"{kind}.speedup", t_old / max(t_new, 1e-9), "x"))
        checks.append(check(f"{kind}.max_rel_diff_estimates (full-data fits)", diff_estimates, "",
                            target=1e-6, higher_is_better=False))  # fmt: skip
        checks.append(check(f"{kind}.same_optimum_fraction (others lower in batched: "
                            f"{compared['resamples_lower_batched']}, in loop: {compared['resamples_lower_loop']})",
                            compared["same_optimum_fraction"], "", target=0.98))  # fmt: skip
        checks.append(check(f"{kind}.ci_diff_vs_mc_error (interval ends, in Monte Carlo errors)",
                            compared["ci_diff_vs_mc_error"], "", target=1.0, higher_is_better=False))  # fmt: skip
        checks.append(check(f"{kind}.max_rel_diff_vs_loop (estimates and CI ends)", diff, ""))
    return {"benchmark": NAME, "setup": dataclasses.asdict(setup), "checks": checks, "detail": detail}
