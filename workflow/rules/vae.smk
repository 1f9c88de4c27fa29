# Model collapse beyond text: a convolutional VAE on MNIST (dlrepro.vae). Generation 0 and
# its samples are shared by all policies; every model's samples are both the next
# generation's synthetic pool and what its sample quality is measured on.
#
# results/vae/classifier.pt                                 the judge (trained once, real data)
# results/vae/seed<s>/gen0/{model.pt, train_metrics.json, samples/, eval.json}
# results/vae/seed<s>/<policy>/gen<g>/{mix.json, mix.indices.npy, model.pt, train_metrics.json, samples/, eval.json}

rule vae_classifier:
    """The sample-quality judge: a small CNN trained once on the real training images."""
    message:
        "vae · train the classifier (the judge)"
    input:
        manifest=f"{VAE_DATA}/manifest.json",
        code=code("vae.cli"),
    output:
        model=f"{VAE}/classifier.pt",
        metrics=f"{VAE}/classifier_metrics.json",
    log:
        f"{LOGS}/vae/classifier.log",
    params:
        p=vae_params("classifier"),
        ckpt=f"{CKPT}/vae/classifier",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro vae train-classifier --params {params.p:q} "
        "--data-dir $(dirname {input.manifest:q}) --ckpt-dir {params.ckpt:q} "
        "--out-model {output.model:q} --out-metrics {output.metrics:q} 2> {log:q}"


rule vae_train_gen0:
    """Generation 0 on the real training images (shared by all policies)."""
    message:
        "vae · seed {wildcards.seed} · generation 0: train on real images"
    priority: 1  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        manifest=f"{VAE_DATA}/manifest.json",
        code=code("vae.cli"),
    output:
        model=f"{VAE}/seed{{seed}}/gen0/model.pt",
        metrics=f"{VAE}/seed{{seed}}/gen0/train_metrics.json",
    log:
        f"{LOGS}/vae/seed{{seed}}/gen0_train.log",
    params:
        p=vae_params("train"),
        ckpt=lambda wc: f"{CKPT}/vae/seed{wc.seed}/gen0",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro vae train --params {params.p:q} --data-spec real "
        "--data-dir $(dirname {input.manifest:q}) --generation 0 --seed {wildcards.seed} "
        "--ckpt-dir {params.ckpt:q} --out-model {output.model:q} --out-metrics {output.metrics:q} "
        "2> {log:q}"


rule vae_mix:
    """Generation g's training images: the policy over real + the samples of generations 0..g-1."""
    message:
        "vae · seed {wildcards.seed} · {wildcards.policy} · generation {wildcards.gen}: mix the data"
    priority: 1  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        manifest=f"{VAE_DATA}/manifest.json",
        pools=lambda wc: [f"{d}/manifest.json" for d in vae_pools(wc)],
        code=code("vae.cli"),
    output:
        spec=f"{VAE}/seed{{seed}}/{{policy}}/gen{{gen}}/mix.json",
        indices=f"{VAE}/seed{{seed}}/{{policy}}/gen{{gen}}/mix.indices.npy",
    log:
        f"{LOGS}/vae/seed{{seed}}/{{policy}}/gen{{gen}}_mix.log",
    params:
        dirs=lambda wc: " ".join(shlex.quote(d) for d in vae_pools(wc)),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro vae mix --policy {wildcards.policy} --generation {wildcards.gen} "
        "--seed {wildcards.seed} --real $(dirname {input.manifest:q}) --synthetic {params.dirs} "
        "--out {output.spec:q} 2> {log:q}"


rule vae_train:
    """Generation g retrained from scratch on its mix (same settings, same epochs)."""
    message:
        "vae · seed {wildcards.seed} · {wildcards.policy} · generation {wildcards.gen}: train"
    priority: 1  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        spec=rules.vae_mix.output.spec,
        code=code("vae.cli"),
    output:
        model=f"{VAE}/seed{{seed}}/{{policy}}/gen{{gen}}/model.pt",
        metrics=f"{VAE}/seed{{seed}}/{{policy}}/gen{{gen}}/train_metrics.json",
    log:
        f"{LOGS}/vae/seed{{seed}}/{{policy}}/gen{{gen}}_train.log",
    params:
        p=vae_params("train"),
        ckpt=lambda wc: f"{CKPT}/vae/seed{wc.seed}/{wc.policy}/gen{wc.gen}",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro vae train --params {params.p:q} --data-spec {input.spec:q} "
        "--generation {wildcards.gen} --policy {wildcards.policy} --seed {wildcards.seed} "
        "--ckpt-dir {params.ckpt:q} --out-model {output.model:q} --out-metrics {output.metrics:q} "
        "2> {log:q}"


rule vae_sample:
    """As many images as the real training set, decoded from prior draws of one model."""
    message:
        "vae · {wildcards.run}: sample"
    priority: 1  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        model=f"{RESULTS}/{{run}}/model.pt",
        manifest=f"{VAE_DATA}/manifest.json",
        code=code("vae.cli"),
    output:
        images=f"{RESULTS}/{{run}}/samples/images.npy",
        manifest=f"{RESULTS}/{{run}}/samples/manifest.json",
    log:
        f"{LOGS}/{{run}}/sample.log",
    wildcard_constraints:
        run=r"vae/seed\d+(/[^/]+)?/gen\d+",
    params:
        p=vae_params("sample"),
        seed=lambda wc: run_seed(wc.run),
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro vae sample --model {input.model:q} --like $(dirname {input.manifest:q}) "
        "--seed {params.seed} --params {params.p:q} --out-dir $(dirname {output.manifest:q}) "
        "2> {log:q}"


rule vae_evaluate:
    """Test negative ELBO (fixed noise) and sample quality judged by the classifier."""
    message:
        "vae · {wildcards.run}: evaluate"
    input:
        model=f"{RESULTS}/{{run}}/model.pt",
        samples=f"{RESULTS}/{{run}}/samples/manifest.json",
        classifier=rules.vae_classifier.output.model,
        manifest=f"{VAE_DATA}/manifest.json",
        code=code("vae.cli"),
    output:
        f"{RESULTS}/{{run}}/eval.json",
    log:
        f"{LOGS}/{{run}}/eval.log",
    wildcard_constraints:
        run=r"vae/seed\d+(/[^/]+)?/gen\d+",
    params:
        p=vae_params("eval"),
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro vae evaluate --model {input.model:q} --classifier {input.classifier:q} "
        "--data-dir $(dirname {input.manifest:q}) --samples $(dirname {input.samples:q}) "
        "--params {params.p:q} --out {output:q} 2> {log:q}"


rule vae_summary:
    """results/vae/summary.csv: one row per (policy, generation, seed)."""
    message:
        "vae · summary table"
    input:
        evals=[f"{r}/eval.json" for r in vae_runs()],
        code=code("vae.cli"),
    output:
        f"{VAE}/summary.csv",
    log:
        f"{LOGS}/vae/summary.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro vae summarize --evals {input.evals:q} --out {output:q} 2> {log:q}"


rule vae_figure:
    """Test negative ELBO, KID and class coverage vs generation, one line per policy."""
    message:
        "vae · figure"
    input:
        csv=rules.vae_summary.output,
        code=code("vae.cli"),
    output:
        png=report(
            f"{FIGURES}/vae_metrics.png",
            caption="../report/vae.rst",
            category="Model collapse",
            subcategory="VAE on images",
        ),
        pdf=f"{FIGURES}/vae_metrics.pdf",
    log:
        f"{LOGS}/vae/figure.log",
    params:
        style=FIGURE_STYLE,
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro vae plot --csv {input.csv:q} "
        "--out $(dirname {output.png:q})/vae_metrics 2> {log:q}"


rule vae_grid:
    """A grid of samples: one row per policy, one column per generation."""
    message:
        "vae · sample grid"
    input:
        sets=[f"{d}/manifest.json" for d in vae_grid_sets()],
        code=code("vae.cli"),
    output:
        png=report(
            f"{FIGURES}/vae_samples.png",
            caption="../report/vae_samples.rst",
            category="Model collapse",
            subcategory="VAE on images",
        ),
        pdf=f"{FIGURES}/vae_samples.pdf",
    log:
        f"{LOGS}/vae/grid.log",
    params:
        style=FIGURE_STYLE,
        dirs=" ".join(shlex.quote(d) for d in vae_grid_sets()),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro vae grid --samples {params.dirs} "
        "--out $(dirname {output.png:q})/vae_samples 2> {log:q}"


if stage_on("vae"):
    TARGETS.extend([f"{VAE}/summary.csv", f"{FIGURES}/vae_metrics.png", f"{FIGURES}/vae_samples.png"])
