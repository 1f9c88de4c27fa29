# The cost plan of this configuration (dlrepro.plan; README "Planning a paper-scale run"):
# `snakemake results/plan.csv` (or `snakemake plan`) writes the table that
# `python -m dlrepro plan` prints. Not part of `all`; it reads only the config and, where
# the data are prepared, their manifests.


rule plan:
    """results/plan.csv: per stage and job kind, jobs, work, FLOPs, time, memory, disk."""
    message:
        "plan · cost table"
    input:
        code=code("plan.cli"),
    output:
        f"{RESULTS}/plan.csv",
    log:
        f"{LOGS}/plan.log",
    params:
        config=as_json(config),
    resources:
        **LIGHT_RESOURCES,
    localrule: True
    conda:
        ENV
    shell:
        "python -m dlrepro plan --config-json {params.config:q} --results $(dirname {output:q}) "
        "--out {output:q} > {log:q} 2>&1"
