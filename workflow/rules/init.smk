# Init variants (Day, Kahn & Roberts 2023; Roberts, Yaida & Hanin): Gaussian vs orthogonal
# weights in deep tanh networks at criticality. Fluctuations and the NTK at initialisation
# are vectorised over thousands of draws; full-batch gradient descent on images.

INIT_TRAIN_JOBS = [
    f"{INIT}/training/{init}_r{init_ratio_label(r)}.csv"
    for r in IC["training"]["depth_ratios"]
    for init in IC["training"]["inits"]
]


rule init_fluctuations:
    """Per-layer mean kernel and normalised fluctuation over many initialisations (+ per-draw kernels)."""
    message:
        "init · fluctuations vs depth"
    input:
        code=code("init.cli"),
    output:
        table=f"{INIT}/fluctuations.csv",
        draws=f"{INIT}/fluctuation_draws.csv",
    log:
        f"{LOGS}/init/fluctuations.log",
    params:
        p=init_params("fluctuations"),
    threads: 1
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro init fluctuations --params {params.p:q} --out {output.table:q} "
        "--draws {output.draws:q} 2> {log:q}"


rule init_ntk:
    """Empirical NTK (torch.func) mean and normalised variance vs depth (+ per-draw NTK)."""
    message:
        "init · empirical NTK vs depth"
    input:
        code=code("init.cli"),
    output:
        table=f"{INIT}/ntk.csv",
        draws=f"{INIT}/ntk_draws.csv",
    log:
        f"{LOGS}/init/ntk.log",
    params:
        p=init_params("ntk"),
    threads: 1
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro init ntk --params {params.p:q} --out {output.table:q} --draws {output.draws:q} 2> {log:q}"


rule init_width_sweep:
    """Gaussian depth slope of the normalised fluctuation at several widths (direct sampler)."""
    message:
        "init · Gaussian slope vs width"
    input:
        code=code("init.cli"),
    output:
        f"{INIT}/width_sweep.csv",
    log:
        f"{LOGS}/init/width_sweep.log",
    params:
        p=init_params("width_sweep"),
    threads: 1
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro init width-sweep --params {params.p:q} --out {output:q} 2> {log:q}"


rule init_train:
    """Full-batch gradient descent (MSE) for one init and depth/width ratio: lr grid, then seeds."""
    message:
        "init · full-batch GD · {wildcards.init} · depth/width {wildcards.ratio}"
    input:
        manifest=f"{INIT_DATA}/manifest.json",
        code=code("init.cli"),
    output:
        f"{INIT}/training/{{init}}_r{{ratio}}.csv",
    log:
        f"{LOGS}/init/training_{{init}}_r{{ratio}}.log",
    wildcard_constraints:
        ratio=r"[0-9.e+-]+",
    params:
        p=init_params("training"),
    threads: 1
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro init train --params {params.p:q} --data-dir $(dirname {input.manifest:q}) "
        "--init {wildcards.init:q} --depth-ratio {wildcards.ratio} --out {output:q} 2> {log:q}"


rule init_compare:
    """Merge the training runs; orthogonal-minus-Gaussian differences with intervals over seeds."""
    message:
        "init · compare inits over seeds"
    input:
        runs=INIT_TRAIN_JOBS,
        code=code("init.cli"),
    output:
        training=f"{INIT}/training.csv",
        comparison=f"{INIT}/training_comparison.csv",
    log:
        f"{LOGS}/init/compare.log",
    params:
        p=init_params("training"),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro init compare --training {input.runs:q} --params {params.p:q} "
        "--out-training {output.training:q} --out {output.comparison:q} 2> {log:q}"


rule init_analyse:
    """Depth slopes and curve shapes (peak, decay, saturation) with intervals over draws."""
    message:
        "init · slopes and curve shapes"
    input:
        fluct=rules.init_fluctuations.output.table,
        fluct_draws=rules.init_fluctuations.output.draws,
        ntk_draws=rules.init_ntk.output.draws,
        code=code("init.cli"),
    output:
        slopes=f"{INIT}/slopes.csv",
        shapes=f"{INIT}/shapes.csv",
    log:
        f"{LOGS}/init/analyse.log",
    params:
        p=as_json({**IC["analysis"], "seed": config["seed"]}),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro init analyse --fluctuations {input.fluct:q} --fluctuation-draws {input.fluct_draws:q} "
        "--ntk-draws {input.ntk_draws:q} --params {params.p:q} --slopes {output.slopes:q} "
        "--shapes {output.shapes:q} 2> {log:q}"


INIT_FIGURE_INPUTS = {
    "fluctuations": {"csv": f"{INIT}/fluctuations.csv", "shapes": f"{INIT}/shapes.csv",
                     "width-sweep": f"{INIT}/width_sweep.csv"},
    "ntk": {"csv": f"{INIT}/ntk.csv", "shapes": f"{INIT}/shapes.csv"},
    "training": {"csv": f"{INIT}/training.csv", "comparison": f"{INIT}/training_comparison.csv"},
}


rule init_figure:
    """One figure per analysis: fluctuations (+ width sweep), ntk, training."""
    message:
        "init · figure {wildcards.kind}"
    input:
        tables=lambda wc: list(INIT_FIGURE_INPUTS[wc.kind].values()),
        code=code("init.cli"),
    output:
        png=report(
            f"{FIGURES}/init_{{kind}}.png",
            caption="../report/init.rst",
            category="Init variants",
        ),
        pdf=f"{FIGURES}/init_{{kind}}.pdf",
    log:
        f"{LOGS}/init/figure_{{kind}}.log",
    wildcard_constraints:
        kind="fluctuations|ntk|training",
    params:
        style=FIGURE_STYLE,
        args=init_figure_args,
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro init plot --kind {wildcards.kind} "
        "{params.args} --out $(dirname {output.png:q})/init_{wildcards.kind} 2> {log:q}"


if stage_on("init"):
    TARGETS.extend(f"{INIT}/{t}.csv" for t in ("slopes", "shapes", "width_sweep", "training_comparison"))
    TARGETS.extend(f"{FIGURES}/init_{k}.png" for k in ("fluctuations", "ntk", "training"))
