# Scaling-law fits (dlrepro.scaling): L(x) = E + A x^-alpha with seed-clustered bootstrap
# CIs, for loss vs training tokens (a data-size sweep: one collapse model trained for one
# epoch on growing seeded subsets of the real training split) and, when the width stage
# runs, loss vs parameter count per parametrization.
#
# results/scaling/data/<model>/frac<f>/seed<s>/{data.json, model.pt, eval.json}
# results/scaling/{data_sweep.csv, fits.csv, fits.json, predictions.csv, seed_fits.csv}

rule scaling_data_spec:
    """A seeded subset (fraction f) of the real training documents."""
    message:
        "scaling · {wildcards.model} · fraction {wildcards.frac} · seed {wildcards.seed}: data"
    input:
        manifest=f"{COL_DATA}/manifest.json",
        code=code("collapse.cli"),
    output:
        spec=f"{SCALING}/data/{{model}}/frac{{frac}}/seed{{seed}}/data.json",
        indices=f"{SCALING}/data/{{model}}/frac{{frac}}/seed{{seed}}/data.indices.npy",
    log:
        f"{LOGS}/scaling/data/{{model}}/frac{{frac}}/seed{{seed}}/spec.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro collapse real-spec --real {input.manifest:q} --seed {wildcards.seed} "
        "--fraction {wildcards.frac} --out {output.spec:q} 2> {log:q}"


rule scaling_data_train:
    """One epoch over the subset, with generation 0's model and optimiser settings (but one
    epoch whatever collapse.optim.epochs says: the sweep's x axis is the subset's tokens)."""
    message:
        "scaling · {wildcards.model} · fraction {wildcards.frac} · seed {wildcards.seed}: train"
    input:
        spec=rules.scaling_data_spec.output.spec,
        val=f"{COL_DATA}/val.npy",
        code=code("collapse.cli"),
    output:
        model=f"{SCALING}/data/{{model}}/frac{{frac}}/seed{{seed}}/model.pt",
        metrics=f"{SCALING}/data/{{model}}/frac{{frac}}/seed{{seed}}/train_metrics.json",
    log:
        f"{LOGS}/scaling/data/{{model}}/frac{{frac}}/seed{{seed}}/train.log",
    params:
        p=lambda wc: col_params(wc.model, "model", "optim", "compute", "eval", optim={**CC["optim"], "epochs": 1.0}),
        ckpt=lambda wc: f"{CKPT}/scaling/data/{wc.model}/frac{wc.frac}/seed{wc.seed}",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        COLLAPSE_TRAIN_SHELL


rule scaling_data_table:
    """results/scaling/data_sweep.csv: test loss vs training tokens, per seed."""
    message:
        "scaling · data-sweep table"
    input:
        evals=[f"{r}/eval.json" for r in sc_runs()],
        specs=[f"{r}/data.json" for r in sc_runs()],
        code=code("collapse.cli"),
    output:
        f"{SCALING}/data_sweep.csv",
    log:
        f"{LOGS}/scaling/data_sweep.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro collapse summarize --evals {input.evals:q} --mixes {input.specs:q} "
        "--out {output:q} 2> {log:q}"


rule scaling_fits:
    """Fits with bootstrap CIs, regimes and warnings; predictions with CI bands."""
    message:
        "scaling · fits with bootstrap intervals"
    input:
        data=rules.scaling_data_table.output,
        width=[f"{RESULTS}/width/curves.csv"] if stage_on("width") else [],
        code=code("scaling.cli"),
    output:
        csv=f"{SCALING}/fits.csv",
        json=f"{SCALING}/fits.json",
        predictions=f"{SCALING}/predictions.csv",
        seed_fits=f"{SCALING}/seed_fits.csv",
    log:
        f"{LOGS}/scaling/fits.log",
    params:
        spec=as_json(sc_spec()),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro scaling fit-sweeps --spec {params.spec:q} --out-csv {output.csv:q} "
        "--out-json {output.json:q} --out-predictions {output.predictions:q} "
        "--out-seed-fits {output.seed_fits:q} 2> {log:q}"


rule scaling_figure:
    """Log-log data, fitted law and CI band per sweep, the law in the legend."""
    message:
        "scaling · figure"
    input:
        json=rules.scaling_fits.output.json,
        predictions=rules.scaling_fits.output.predictions,
        code=code("scaling.cli"),
    output:
        png=report(
            f"{FIGURES}/scaling_laws.png",
            caption="../report/scaling.rst",
            category="Scaling laws",
        ),
        pdf=f"{FIGURES}/scaling_laws.pdf",
    log:
        f"{LOGS}/scaling/figure.log",
    params:
        style=FIGURE_STYLE,
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro scaling plot --fits {input.json:q} "
        "--predictions {input.predictions:q} --out $(dirname {output.png:q})/scaling_laws 2> {log:q}"


if stage_on("scaling"):
    TARGETS.extend([f"{SCALING}/fits.csv", f"{FIGURES}/scaling_laws.png"])
