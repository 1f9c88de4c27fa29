# Model collapse for language models (Gerstgrasser et al. 2024): generation 0 trains on the
# real corpus; generation g >= 1 trains from scratch on a mix (policy) of the real data and
# corpora sampled from earlier generations; every generation is evaluated on the real test
# split. Generation 0 and the first synthetic corpus are shared by all policies.
#
# results/collapse/<model>/seed<seed>/
#   gen0/{data.json, model.pt, train_metrics.json, eval.json}       shared
#   synthetic1/{tokens.npy, manifest.json}                            shared (from gen 0)
#   <policy>/gen<g>/{data.json, data.indices.npy, model.pt, train_metrics.json, eval.json}
#   <policy>/synthetic<g>/{tokens.npy, manifest.json}                 g >= 2 (from gen g-1)

wildcard_constraints:
    model="[^/]+",
    policy="[^/]+",
    seed=r"\d+",
    gen=r"\d+",


rule collapse_real_spec:
    """Generation 0's data: every document of the real training split."""
    message:
        "collapse · {wildcards.model} · seed {wildcards.seed} · generation 0: the real training data"
    priority: 2  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        manifest=f"{COL_DATA}/manifest.json",
        code=code("collapse.cli"),
    output:
        spec=f"{COL}/{{model}}/seed{{seed}}/gen0/data.json",
        indices=f"{COL}/{{model}}/seed{{seed}}/gen0/data.indices.npy",
    log:
        f"{LOGS}/collapse/{{model}}/seed{{seed}}/gen0_data.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro collapse real-spec --real {input.manifest:q} --seed {wildcards.seed} "
        "--out {output.spec:q} 2> {log:q}"


rule collapse_mix:
    """Generation g's data: the policy applied to the real data and synthetic corpora 1..g."""
    message:
        "collapse · {wildcards.model} · seed {wildcards.seed} · {wildcards.policy} · generation {wildcards.gen}: mix the data"
    priority: 2  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        manifest=f"{COL_DATA}/manifest.json",
        synthetic=lambda wc: [f"{d}/manifest.json" for d in col_synthetic_dirs(wc)],
        code=code("collapse.cli"),
    output:
        spec=f"{COL}/{{model}}/seed{{seed}}/{{policy}}/gen{{gen}}/data.json",
        indices=f"{COL}/{{model}}/seed{{seed}}/{{policy}}/gen{{gen}}/data.indices.npy",
    log:
        f"{LOGS}/collapse/{{model}}/seed{{seed}}/{{policy}}/gen{{gen}}_mix.log",
    params:
        dirs=lambda wc: " ".join(shlex.quote(d) for d in col_synthetic_dirs(wc)),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro collapse mix --policy {wildcards.policy} --generation {wildcards.gen} "
        "--seed {wildcards.seed} --real {input.manifest:q} --synthetic {params.dirs} "
        "--out {output.spec:q} 2> {log:q}"


COLLAPSE_TRAIN_SHELL = (
    "python -m dlrepro collapse train --params {params.p:q} --data {input.spec:q} "
    "--val-tokens {input.val:q} --ckpt-dir {params.ckpt:q} --out-model {output.model:q} "
    "--out-metrics {output.metrics:q} 2> {log:q}"
)


rule collapse_train_gen0:
    """Pretrain generation 0 on the real training split (Lightning; resumable)."""
    message:
        "collapse · {wildcards.model} · seed {wildcards.seed} · generation 0: train on real data"
    priority: 2  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        spec=rules.collapse_real_spec.output.spec,
        val=f"{COL_DATA}/val.npy",
        code=code("collapse.cli"),
    output:
        model=f"{COL}/{{model}}/seed{{seed}}/gen0/model.pt",
        metrics=f"{COL}/{{model}}/seed{{seed}}/gen0/train_metrics.json",
    log:
        f"{LOGS}/collapse/{{model}}/seed{{seed}}/gen0_train.log",
    params:
        p=lambda wc: col_params(wc.model, "model", "optim", "compute", "eval"),
        ckpt=lambda wc: f"{CKPT}/collapse/{wc.model}/seed{wc.seed}/gen0",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        COLLAPSE_TRAIN_SHELL


rule collapse_train:
    """Retrain generation g from scratch on its mix, same hyper-parameters as generation 0."""
    message:
        "collapse · {wildcards.model} · seed {wildcards.seed} · {wildcards.policy} · generation {wildcards.gen}: train"
    priority: 2  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        spec=rules.collapse_mix.output.spec,
        val=f"{COL_DATA}/val.npy",
        code=code("collapse.cli"),
    output:
        model=f"{COL}/{{model}}/seed{{seed}}/{{policy}}/gen{{gen}}/model.pt",
        metrics=f"{COL}/{{model}}/seed{{seed}}/{{policy}}/gen{{gen}}/train_metrics.json",
    log:
        f"{LOGS}/collapse/{{model}}/seed{{seed}}/{{policy}}/gen{{gen}}_train.log",
    params:
        p=lambda wc: col_params(wc.model, "model", "optim", "compute", "eval"),
        ckpt=lambda wc: f"{CKPT}/collapse/{wc.model}/seed{wc.seed}/{wc.policy}/gen{wc.gen}",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        COLLAPSE_TRAIN_SHELL


COLLAPSE_SAMPLE_SHELL = (
    "python -m dlrepro collapse sample --params {params.p:q} --model {input.model:q} "
    "--real-manifest {input.manifest:q} --seed {wildcards.seed} "
    "--out-dir $(dirname {output.manifest:q}) 2> {log:q}"
)


rule collapse_sample_gen1:
    """The first synthetic corpus, sampled from generation 0 (shared by all policies)."""
    message:
        "collapse · {wildcards.model} · seed {wildcards.seed} · generation 1: sample from generation 0"
    priority: 2  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        model=f"{COL}/{{model}}/seed{{seed}}/gen0/model.pt",
        manifest=f"{COL_DATA}/manifest.json",
        code=code("collapse.cli"),
    output:
        tokens=f"{COL}/{{model}}/seed{{seed}}/synthetic1/tokens.npy",
        manifest=f"{COL}/{{model}}/seed{{seed}}/synthetic1/manifest.json",
    log:
        f"{LOGS}/collapse/{{model}}/seed{{seed}}/synthetic1.log",
    params:
        p=lambda wc: col_params(wc.model, "sampling", "compute"),
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        COLLAPSE_SAMPLE_SHELL


rule collapse_sample:
    """Synthetic corpus g (g >= 2), sampled from this policy's generation g - 1."""
    message:
        "collapse · {wildcards.model} · seed {wildcards.seed} · {wildcards.policy} · generation {wildcards.gen}: sample from the previous generation"
    priority: 2  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        model=lambda wc: col_model(wc.model, wc.seed, wc.policy, int(wc.gen) - 1),
        manifest=f"{COL_DATA}/manifest.json",
        code=code("collapse.cli"),
    output:
        tokens=f"{COL}/{{model}}/seed{{seed}}/{{policy}}/synthetic{{gen}}/tokens.npy",
        manifest=f"{COL}/{{model}}/seed{{seed}}/{{policy}}/synthetic{{gen}}/manifest.json",
    log:
        f"{LOGS}/collapse/{{model}}/seed{{seed}}/{{policy}}/synthetic{{gen}}.log",
    params:
        p=lambda wc: col_params(wc.model, "sampling", "compute"),
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        COLLAPSE_SAMPLE_SHELL


rule collapse_evaluate:
    """Cross-entropy of one model on the real test split (nats/token and nats/char)."""
    message:
        "collapse · {wildcards.path}: evaluate on the real test split"
    input:
        model=f"{RESULTS}/{{path}}/model.pt",
        tokens=f"{COL_DATA}/test.npy",
        manifest=f"{COL_DATA}/manifest.json",
        code=code("collapse.cli"),
    output:
        f"{RESULTS}/{{path}}/eval.json",
    log:
        f"{LOGS}/{{path}}/eval.log",
    wildcard_constraints:
        path="(collapse|scaling/data)/.+",
    params:
        p=as_json({"eval": CC["eval"], "compute": compute_params()}),
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro collapse evaluate --model {input.model:q} --tokens {input.tokens:q} "
        "--manifest {input.manifest:q} --params {params.p:q} --out {output:q} 2> {log:q}"


rule collapse_summary:
    """One row per (dataset, model, policy, generation, seed): results/collapse/summary.csv."""
    message:
        "collapse · summary table"
    input:
        evals=[m.replace("model.pt", "eval.json") for m in col_all_models()],
        specs=[m.replace("model.pt", "data.json") for m in col_all_models()],
        code=code("collapse.cli"),
    output:
        f"{COL}/summary.csv",
    log:
        f"{LOGS}/collapse/summary.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro collapse summarize --evals {input.evals:q} --mixes {input.specs:q} "
        "--out {output:q} 2> {log:q}"


rule collapse_figure:
    """Test loss vs generation, one line per policy, seeds as a band, one panel per model."""
    message:
        "collapse · figure"
    input:
        csv=rules.collapse_summary.output,
        code=code("collapse.cli"),
    output:
        png=report(
            f"{FIGURES}/collapse_test_loss.png",
            caption="../report/collapse.rst",
            category="Model collapse",
            subcategory="Language models",
        ),
        pdf=f"{FIGURES}/collapse_test_loss.pdf",
    log:
        f"{LOGS}/collapse/figure.log",
    params:
        style=FIGURE_STYLE,
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro collapse plot --csv {input.csv:q} "
        "--out $(dirname {output.png:q})/collapse_test_loss 2> {log:q}"


if stage_on("collapse"):
    TARGETS.extend([f"{COL}/summary.csv", f"{FIGURES}/collapse_test_loss.png"])
