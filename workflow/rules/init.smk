# Init variants (Day, Kahn & Roberts 2023; Roberts, Yaida & Hanin): Gaussian vs orthogonal
# weights in deep tanh networks at criticality. Fluctuations and the NTK at initialisation
# are vectorised over thousands of draws; full-batch gradient descent on images.

if stage_on("init"):
    DATA_NEEDED.add(IC["dataset"])


rule init_fluctuations:
    """Per-layer mean kernel and normalised fluctuation over many initialisations."""
    input:
        code=code("init.cli"),
    output:
        f"{INIT}/fluctuations.csv",
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
        "python -m dlrepro init fluctuations --params {params.p:q} --out {output:q} 2> {log:q}"


rule init_ntk:
    """Empirical NTK (torch.func) mean and normalised variance vs depth."""
    input:
        code=code("init.cli"),
    output:
        f"{INIT}/ntk.csv",
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
        "python -m dlrepro init ntk --params {params.p:q} --out {output:q} 2> {log:q}"


rule init_train:
    """Full-batch gradient descent (MSE) for both inits at several depth/width ratios."""
    input:
        manifest=f"{INIT_DATA}/manifest.json",
        code=code("init.cli"),
    output:
        f"{INIT}/training.csv",
    log:
        f"{LOGS}/init/training.log",
    params:
        p=init_params("training"),
    threads: 1
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro init train --params {params.p:q} --data-dir $(dirname {input.manifest:q}) "
        "--out {output:q} 2> {log:q}"


rule init_slopes:
    """Fitted depth slopes of the fluctuations beside the theory's (2/3 for Gaussian tanh)."""
    input:
        fluct=rules.init_fluctuations.output,
        ntk=rules.init_ntk.output,
        code=code("init.cli"),
    output:
        f"{INIT}/slopes.csv",
    log:
        f"{LOGS}/init/slopes.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro init slopes --fluctuations {input.fluct:q} --ntk {input.ntk:q} "
        "--out {output:q} 2> {log:q}"


rule init_figure:
    """One figure per analysis: fluctuations, ntk, training."""
    input:
        csv=f"{INIT}/{{kind}}.csv",
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
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro init plot --kind {wildcards.kind} "
        "--csv {input.csv:q} --out $(dirname {output.png:q})/init_{wildcards.kind} 2> {log:q}"


if stage_on("init"):
    TARGETS.append(f"{INIT}/slopes.csv")
    TARGETS.extend(f"{FIGURES}/init_{k}.png" for k in ("fluctuations", "ntk", "training"))
