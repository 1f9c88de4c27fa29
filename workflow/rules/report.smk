# The study's conclusions in one place: results/claims.csv (every seed-paper claim with an
# interval and a verdict, from the enabled stages' tables) and results/summary.md (the
# claims, then the headline numbers of every enabled stage, each with the config that
# produced it). Snakemake's HTML report of all figures, with the claims table first, is made
# after a run with `snakemake --report results/report.html`; see README.


rule report_claims:
    """results/claims.csv: every claim of the enabled stages, with its interval and verdict."""
    message:
        "report · claims"
    input:
        tables=lambda wc: [t for ts in claims_inputs().values() for t in ts],
        code=claims_code(),
    output:
        csv=f"{RESULTS}/claims.csv",
        html=report(f"{RESULTS}/claims.html", caption="../report/claims.rst", category="Claims"),
    log:
        f"{LOGS}/report/claims.log",
    params:
        stages=" ".join(claims_inputs()),
        results=lambda wc, output: str(Path(output.csv).parent),
        config=as_json({k: v for k, v in config.items() if k in claims_inputs() or k in ("seed", "preset")}),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro report claims --stages {params.stages} --results {params.results:q} "
        "--config {params.config:q} --out {output.csv:q} --html {output.html:q} 2> {log:q}"


rule report_summary:
    """results/summary.md: the claims, then each stage's headline numbers beside its config."""
    message:
        "report · summary"
    input:
        **summary_inputs(),
        claims=f"{RESULTS}/claims.csv",
        code=code("report.cli"),
    output:
        report(f"{RESULTS}/summary.md", caption="../report/summary.rst", category="Summary"),
    log:
        f"{LOGS}/report/summary.log",
    params:
        tables=" ".join(f"--{k} {shlex.quote(v)}" for k, v in summary_inputs().items()),
        config=as_json({k: v for k, v in config.items() if k in summary_inputs() or k in ("seed", "preset")}),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro report summary {params.tables} --claims {input.claims:q} "
        "--config {params.config:q} --out {output:q} 2> {log:q}"


if stage_on("report"):
    TARGETS.extend([f"{RESULTS}/claims.csv", f"{RESULTS}/summary.md"])
