"""Scaling-law fits (Hoffmann et al. approach 3, as corrected by Besiroglu et al.).

:mod:`dlrepro.scaling.fit` fits ``L = E + A x^-alpha`` (and the two-variable
``E + A/N^alpha + B/D^beta``) with bootstrap CIs, SEs and diagnostics, on the solvers of
:mod:`dlrepro.scaling.problem` (L-BFGS-B, and a batched projected Newton method) and the
refits of :mod:`dlrepro.scaling.bootstrap`; :mod:`dlrepro.scaling.tables` derives the
prediction and width-sweep tables; :mod:`dlrepro.scaling.sweeps` reads, selects and groups
input tables; :mod:`dlrepro.scaling.cli` is the command (``scaling`` / ``python -m dlrepro
scaling ...`` and the standalone ``scaling-fit``); :mod:`dlrepro.scaling.plots` draws the
figures from the output tables.
"""

from dlrepro.scaling.fit import FitOptions, FitResult, classify_regime, fit_law, prediction_frame, width_sweep_points

__all__ = ["FitOptions", "FitResult", "classify_regime", "fit_law", "prediction_frame", "width_sweep_points"]
