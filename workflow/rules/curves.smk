# Training curves as data (dlrepro.curves): every training job keeps its logged step
# history in its train_metrics.json; one table per stage collects them, and one figure per
# stage draws them (a panel per policy, a line per generation).

# stage -> (train_metrics.json of every training job, key columns, y-axis label,
#           --ylabel-for options: a model whose loss is another quantity)
CURVES = {}
if stage_on("collapse"):
    CURVES["collapse"] = (
        [m.replace("model.pt", "train_metrics.json") for m in col_all_models()],
        "model=name,policy,generation,seed",
        "training loss (nats/token)",
        "",
    )
if stage_on("vae"):
    CURVES["vae"] = (
        [f"{r}/train_metrics.json" for r in vae_runs()] + [f"{VAE}/classifier_metrics.json"],
        "model=job,policy,generation,seed",
        "training loss (negative ELBO, nats/image)",
        "--ylabel-for 'classifier=cross-entropy (nats/image)'",
    )
if stage_on("conformers"):
    CURVES["conformers"] = (
        [e.replace("eval.json", "train_metrics.json") for e in cf_evals()],
        "policy,generation,seed",
        "training loss (denoising MSE)",
        "",
    )


rule curves_table:
    """results/<stage>/curves.csv: the step history of every training job of the stage."""
    message:
        "curves · {wildcards.stage}: table"
    input:
        metrics=lambda wc: CURVES[wc.stage][0],
        code=code("curves"),
    output:
        f"{RESULTS}/{{stage}}/curves.csv",
    log:
        f"{LOGS}/{{stage}}/curves.log",
    wildcard_constraints:
        stage="|".join(CURVES) or "none",
    params:
        key_columns=lambda wc: CURVES[wc.stage][1],
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro curves table --metrics {input.metrics:q} --keys {params.key_columns:q} "
        "--out {output:q} 2> {log:q}"


rule curves_figure:
    """Training loss vs step of every generation: a panel per policy, a line per generation."""
    message:
        "curves · {wildcards.stage}: figure"
    input:
        csv=rules.curves_table.output,
        code=code("curves"),
    output:
        png=report(
            f"{FIGURES}/{{stage}}_curves.png",
            caption="../report/curves.rst",
            category="Training curves",
            subcategory="{stage}",
        ),
        pdf=f"{FIGURES}/{{stage}}_curves.pdf",
    log:
        f"{LOGS}/{{stage}}/curves_figure.log",
    wildcard_constraints:
        stage="|".join(CURVES) or "none",
    params:
        style=FIGURE_STYLE,
        ylabel=lambda wc: CURVES[wc.stage][2],
        ylabel_for=lambda wc: CURVES[wc.stage][3],
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro curves plot --csv {input.csv:q} "
        "--ylabel {params.ylabel:q} {params.ylabel_for} --out $(dirname {output.png:q})/{wildcards.stage}_curves 2> {log:q}"


TARGETS.extend(f"{FIGURES}/{stage}_curves.png" for stage in CURVES)
