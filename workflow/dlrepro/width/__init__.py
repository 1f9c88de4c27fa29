"""The width-variants stage: width sweeps under SP / NTK / muP, the coordinate check,
learning-rate transfer and consistency across widths.

- :mod:`dlrepro.width.runs`: the two tasks (an MLP on MNIST, the transformer LM on a
  token corpus), their online and offline data arms, and one cell of the sweep (all
  seeds x learning rates of one model, parametrization, width and arm) trained with the
  shared Lightning harness.
- :mod:`dlrepro.width.analysis`: merging cells, the learning-rate optimum, agreement
  with the widest network, output variance over seeds, ensembles.
- :mod:`dlrepro.width.plots`: one figure per analysis, drawn from the tables only.
- :mod:`dlrepro.width.cli`: ``python -m dlrepro width ...``.
"""
