"""The width-variants stage: width sweeps under SP / NTK / muP, the coordinate check,
learning-rate transfer and consistency across widths.

- :mod:`dlrepro.width.params`: the ``train`` block of each model (its params, their
  validation) and the stage's model and arm names.
- :mod:`dlrepro.width.tasks`: the three tasks (an MLP on MNIST, a CNN on an image folder,
  the transformer LM on a token corpus), their online and offline data arms, and the
  parametrized model of a width.
- :mod:`dlrepro.width.runs`: one cell of the sweep (all seeds x learning rates of one
  model, parametrization, width and arm) trained with the shared Lightning harness.
- :mod:`dlrepro.width.coord_check`: the whole ``width`` config block and the coordinate
  check.
- :mod:`dlrepro.width.analysis`: merging cells, the learning-rate optimum, agreement
  with the widest network, output variance over seeds, ensembles.
- :mod:`dlrepro.width.plots`: one figure per analysis, drawn from the tables only.
- :mod:`dlrepro.width.cli`: ``python -m dlrepro width ...``.
"""
