"""The cost plan of a configuration: ``python -m dlrepro plan`` (README "Planning a
paper-scale run").

For every job the workflow would run, an estimate of its work (tokens, images, molecules),
FLOPs, time on a named accelerator at a stated utilisation, peak memory (host and device)
and disk written, checked against the job's ``runtime`` / ``mem_mb`` request. Pure Python
arithmetic on the validated config (no torch, no Snakemake), so it runs in a second:

- :mod:`dlrepro.plan.costs`   per-model formulas (parameters, FLOPs, memory);
- :mod:`dlrepro.plan.figures` data sizes: prepared manifests, else documented figures;
- :mod:`dlrepro.plan.jobs`    a :class:`~dlrepro.plan.jobs.Job`, the shared assumptions, the LM jobs;
- :mod:`dlrepro.plan.stages`  the jobs of each stage (one ``Job`` each, as the rule files make them);
- :mod:`dlrepro.plan.probe`   measures a model's step on this CPU (FLOPs, peak memory; imports torch);
- :mod:`dlrepro.plan.cli`     config merging, the table, totals, ``--strict``, ``--out``.
"""
