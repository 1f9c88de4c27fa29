# Width variants (Yang & Hu; Vyas et al.): SP / NTK / muP (dlrepro.parametrization) across
# widths. One job trains all seeds x learning rates of one cell (model, arm,
# parametrization, width), so adding a width reruns only that width's cells and the
# aggregations.
#
# models: mlp (MNIST), cnn (MNIST or CIFAR-10, channels = width), lm (the collapse corpus)
# results/width/cells/<model>/<arm>/<parametrization>/w<width>/{curves.csv, lr_sweep.csv, probe_logits.npy,
#   probe_logits_data.npy, probe_labels.npy, meta.json}
# results/width/{curves.csv, lr_sweep.csv, lr_optimum.csv, coord_check.csv, agreement.csv, variance_slopes.csv, ensembles.csv}

WIDTH_COORD_MODELS = WC["coord_check"]["models"]
CELL_FILES = ["curves.csv", "lr_sweep.csv", "probe_logits.npy", "probe_logits_data.npy", "probe_labels.npy",
              "meta.json"]


rule width_run:
    """All seeds x learning rates of one (model, arm, parametrization, width) cell."""
    message:
        "width · {wildcards.model} · {wildcards.arm} · {wildcards.param} · width {wildcards.width}: train every seed x learning rate"
    input:
        manifest=lambda wc: f"{WIDTH_DATA[wc.model]}/manifest.json",
        code=code("width.cli"),
    output:
        **{f.split(".")[0]: f"{WIDTH}/cells/{{model}}/{{arm}}/{{param}}/w{{width}}/{f}" for f in CELL_FILES},
    log:
        f"{LOGS}/width/{{model}}/{{arm}}/{{param}}/w{{width}}.log",
    wildcard_constraints:
        model="mlp|lm|cnn",
        arm="online|offline",
        param="sp|ntk|mup",
        width=r"\d+",
    params:
        p=lambda wc: width_train_params(wc.model),
        ckpt=lambda wc: f"{CKPT}/width/{wc.model}/{wc.arm}/{wc.param}/w{wc.width}",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro width run --params {params.p:q} --model {wildcards.model} "
        "--parametrization {wildcards.param} --width {wildcards.width} --arm {wildcards.arm} "
        "--data-dir $(dirname {input.manifest:q}) --out-dir $(dirname {output.meta:q}) "
        "--ckpt-dir {params.ckpt:q} 2> {log:q}"


rule width_coord_check:
    """Activation scale of every layer after a few steps, vs width, per parametrization."""
    message:
        "width · coordinate check"
    input:
        data=[f"{WIDTH_DATA[m]}/manifest.json" for m in WIDTH_MODELS if WC.get(m)],
        code=code("width.cli"),
    output:
        f"{WIDTH}/coord_check.csv",
    log:
        f"{LOGS}/width/coord_check.log",
    params:
        p=as_json(WC),
        dirs=" ".join(
            f"--{ {'mlp': 'mnist', 'lm': 'text', 'cnn': 'cnn'}[m] }-dir {shlex.quote(WIDTH_DATA[m])}"
            for m in WIDTH_MODELS
            if WC.get(m)
        ),
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro width coord-check --params {params.p:q} {params.dirs} --out {output:q} "
        "2> {log:q}"


rule width_merge:
    """curves.csv, lr_sweep.csv and the optimal learning rate per width (lr_optimum.csv)."""
    message:
        "width · merge cells"
    input:
        cells=[f"{c}/meta.json" for c in width_cells()],
        code=code("width.cli"),
    output:
        curves=f"{WIDTH}/curves.csv",
        lr_sweep=f"{WIDTH}/lr_sweep.csv",
        lr_optimum=f"{WIDTH}/lr_optimum.csv",
    log:
        f"{LOGS}/width/merge.log",
    params:
        cells=" ".join(shlex.quote(c) for c in width_cells()),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro width merge --cells {params.cells} --out-dir $(dirname {output.curves:q}) "
        "2> {log:q}"


rule width_agreement:
    """Per-example agreement with the widest network; output variance over seeds vs width."""
    message:
        "width · agreement across widths"
    input:
        cells=[f"{c}/meta.json" for c in width_cells()],
        code=code("width.cli"),
    output:
        agreement=f"{WIDTH}/agreement.csv",
        slopes=f"{WIDTH}/variance_slopes.csv",
    log:
        f"{LOGS}/width/agreement.log",
    params:
        cells=" ".join(shlex.quote(c) for c in width_cells()),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro width agreement --cells {params.cells} --out {output.agreement:q} "
        "--slopes-out {output.slopes:q} 2> {log:q}"


rule width_ensembles:
    """Loss of k-network ensembles per width (the bias of narrower width)."""
    message:
        "width · ensembles"
    input:
        cells=[f"{c}/meta.json" for c in width_cells()],
        code=code("width.cli"),
    output:
        f"{WIDTH}/ensembles.csv",
    log:
        f"{LOGS}/width/ensembles.log",
    params:
        cells=" ".join(shlex.quote(c) for c in width_cells()),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro width ensembles --cells {params.cells} --out {output:q} 2> {log:q}"


rule width_figure:
    """One figure per analysis, from its table."""
    message:
        "width · figure {wildcards.kind}"
    input:
        csv=f"{WIDTH}/{{kind}}.csv",
        code=code("width.cli"),
    output:
        png=report(
            f"{FIGURES}/width_{{kind}}.png",
            caption="../report/width.rst",
            category="Width variants",
        ),
        pdf=f"{FIGURES}/width_{{kind}}.pdf",
    log:
        f"{LOGS}/width/figure_{{kind}}.log",
    wildcard_constraints:
        kind="curves|lr_sweep|coord_check|agreement|ensembles",
    params:
        style=FIGURE_STYLE,
        model=WIDTH_COORD_MODELS[0],  # coord_check: the first model of coord_check.models
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro width plot --kind {wildcards.kind} "
        "--model {params.model} --csv {input.csv:q} --out $(dirname {output.png:q})/width_{wildcards.kind} "
        "2> {log:q}"


rule width_coord_check_figure:
    """The coordinate check of each further model (width_coord_check.png shows the first)."""
    message:
        "width · coordinate-check figure {wildcards.model}"
    input:
        csv=f"{WIDTH}/coord_check.csv",
        code=code("width.cli"),
    output:
        png=report(
            f"{FIGURES}/width_coord_check_{{model}}.png",
            caption="../report/width.rst",
            category="Width variants",
        ),
        pdf=f"{FIGURES}/width_coord_check_{{model}}.pdf",
    log:
        f"{LOGS}/width/figure_coord_check_{{model}}.log",
    wildcard_constraints:
        model="mlp|lm|cnn",
    params:
        style=FIGURE_STYLE,
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro width plot --kind coord_check "
        "--model {wildcards.model} --csv {input.csv:q} "
        "--out $(dirname {output.png:q})/width_coord_check_{wildcards.model} 2> {log:q}"


if stage_on("width"):
    TARGETS.extend(
        f"{FIGURES}/width_{k}.png" for k in ("curves", "lr_sweep", "coord_check", "agreement", "ensembles")
    )
    TARGETS.extend(f"{FIGURES}/width_coord_check_{m}.png" for m in WIDTH_COORD_MODELS[1:])
    TARGETS.append(f"{WIDTH}/lr_optimum.csv")
