# The headline numbers of every enabled stage in one page, results/summary.md, each with
# the config that produced it. (Snakemake's HTML report of all figures is made after a run
# with `snakemake --report results/report.html`; see README.)


rule report_summary:
    """results/summary.md: each stage's headline numbers beside its config."""
    input:
        **summary_inputs(),
        code=code("report.cli"),
    output:
        report(f"{RESULTS}/summary.md", caption="../report/summary.rst", category="Summary"),
    log:
        f"{LOGS}/report/summary.log",
    params:
        tables=" ".join(f"--{k} {shlex.quote(v)}" for k, v in summary_inputs().items()),
        config=as_json({k: v for k, v in config.items() if k in summary_inputs() or k == "seed"}),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro report summary {params.tables} --config {params.config:q} "
        "--out {output:q} 2> {log:q}"


if stage_on("report"):
    TARGETS.append(f"{RESULTS}/summary.md")
