"""The language-model model-collapse stage (arXiv:2404.01413, Sec. 2.1): replace vs accumulate.

- :mod:`dlrepro.collapse.corpus`: token files, documents, synthetic corpora, data specs (mixes).
- :mod:`dlrepro.collapse.params`: the stage's parameters (``--params``: model, optim, sampling, eval).
- :mod:`dlrepro.collapse.lm`: training windows, evaluation, saved models.
- :mod:`dlrepro.collapse.module`: the Lightning module.
- :mod:`dlrepro.collapse.cli`: ``python -m dlrepro collapse ...`` (real-spec, mix, train, sample,
  evaluate, summarize, plot).
- :mod:`dlrepro.collapse.plots`: the test-loss-vs-generation figure, from ``summary.csv``.
"""
