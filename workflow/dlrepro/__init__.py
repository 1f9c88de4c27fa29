"""dlrepro: the science behind the workflow.

Every stage of the Snakemake workflow calls a small command of this package
(``python -m dlrepro <command> ...``); all logic is importable and unit-tested
without Snakemake.
"""

__version__ = "0.1.0"
