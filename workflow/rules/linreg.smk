# Linear regression fit on its own outputs: replace vs accumulate, simulated and checked
# against the exact closed forms (dlrepro.linreg). Runs in seconds.

rule linreg_simulate:
    """Simulate the (d, T, sigma) grid for both policies; tidy summary with theory columns."""
    message:
        "linreg · simulate"
    input:
        code=code("linreg"),
    output:
        f"{LINREG}/summary.csv",
    log:
        f"{LOGS}/linreg/simulate.log",
    params:
        p=as_json({**config["linreg"], "seed": config["seed"]}),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro linreg simulate --params {params.p:q} --out {output:q} 2> {log:q}"


rule linreg_check:
    """Largest |simulation - theory| in standard errors, and the bound checks."""
    message:
        "linreg · check against the closed forms"
    input:
        csv=rules.linreg_simulate.output,
        code=code("linreg"),
    output:
        f"{LINREG}/check.json",
    log:
        f"{LOGS}/linreg/check.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro linreg check --csv {input.csv:q} --out {output:q} > {log:q} 2>&1"


rule linreg_figure:
    """Test error vs iteration: simulation (error bars) and closed form (lines)."""
    message:
        "linreg · figure"
    input:
        csv=rules.linreg_simulate.output,
        code=code("linreg"),
    output:
        png=report(
            f"{FIGURES}/linreg_test_error.png",
            caption="../report/linreg.rst",
            category="Model collapse",
            subcategory="Linear regression",
        ),
        pdf=f"{FIGURES}/linreg_test_error.pdf",
    log:
        f"{LOGS}/linreg/figure.log",
    params:
        style=FIGURE_STYLE,
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro linreg plot --csv {input.csv:q} "
        "--out $(dirname {output.png:q})/linreg_test_error 2> {log:q}"


if stage_on("linreg"):
    TARGETS.extend([f"{LINREG}/summary.csv", f"{LINREG}/check.json", f"{FIGURES}/linreg_test_error.png"])
