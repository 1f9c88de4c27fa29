# Model collapse on molecule conformations: an E(3)-equivariant diffusion model (EGNN) on
# heavy-atom coordinates, conditioned on the molecular graph, retrained for several
# generations on its own conformers (replace / accumulate / ...). Mixing items are
# conformers. Geometries of the default presets are RDKit force-field conformers (ETKDGv3 +
# MMFF94) of MOSES molecules, not GEOM's CREST ensembles; `paper` reads GEOM-Drugs.
#
# results/data/conformers/{manifest.json, train/, test/}               real sets
# results/conformers/seed<seed>/gen0/{model.pt, train_metrics.json, eval.json}
# results/conformers/seed<seed>/synthetic1/                             from gen 0 (shared)
# results/conformers/seed<seed>/<policy>/gen<g>/{mix.json, model.pt, train_metrics.json, eval.json}
# results/conformers/seed<seed>/<policy>/synthetic<g>/                  g >= 2
# results/conformers/seed<seed>/rdkit-etkdg/eval.json                   the RDKit ETKDGv3 row

rule conformers_prepare:
    """Real conformer sets: ETKDGv3 + MMFF94 conformers of MOSES molecules, split by molecule."""
    message:
        "conformers · prepare molecules and reference conformers"
    priority: 4  # data first: every generation chain waits on it (profiles: greedy)
    input:
        smiles=f"{RAW}/moses/test.csv",
        code=code("conformers.cli"),
    output:
        manifest=f"{CONF_DATA}/manifest.json",
        train=f"{CONF_DATA}/train/manifest.json",
        test=f"{CONF_DATA}/test/manifest.json",
    log:
        f"{LOGS}/data/conformers_prepare.log",
    params:
        p=as_json({**CF["prepare"], "seed": config["seed"]}),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro conformers prepare --params {params.p:q} --smiles-csv {input.smiles:q} "
        "--out-dir $(dirname {output.manifest:q}) 2> {log:q}"


rule conformers_load_geom:
    """Real conformer sets from GEOM-Drugs (the `paper` preset; conformers.geom.rdkit_folder)."""
    message:
        "conformers · load GEOM"
    input:
        code=code("conformers.cli"),
    output:
        manifest=f"{CONF_DATA}-geom/manifest.json",
        train=f"{CONF_DATA}-geom/train/manifest.json",
        test=f"{CONF_DATA}-geom/test/manifest.json",
    log:
        f"{LOGS}/data/conformers_load_geom.log",
    params:
        p=as_json({k: v for k, v in CF["geom"].items() if k != "rdkit_folder"} | {"seed": config["seed"]}),
        src=CF["geom"]["rdkit_folder"] or "",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro conformers load-geom --params {params.p:q} --src {params.src:q} "
        "--out-dir $(dirname {output.manifest:q}) 2> {log:q}"


CF_REAL = CONF_DATA if CF["source"] == "moses" else f"{CONF_DATA}-geom"


rule conformers_train_gen0:
    """Generation 0: the diffusion model trained on real conformers (Lightning; resumable)."""
    message:
        "conformers · seed {wildcards.seed} · generation 0: train on real conformers"
    priority: 3  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        train=f"{CF_REAL}/train/manifest.json",
        code=code("conformers.cli"),
    output:
        model=f"{CONF}/seed{{seed}}/gen0/model.pt",
        metrics=f"{CONF}/seed{{seed}}/gen0/train_metrics.json",
    log:
        f"{LOGS}/conformers/seed{{seed}}/gen0_train.log",
    params:
        p=cf_params("train"),
        ckpt=lambda wc: f"{CKPT}/conformers/seed{wc.seed}/gen0",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro conformers train --params {params.p:q} --data-spec $(dirname {input.train:q}) "
        "--ckpt-dir {params.ckpt:q} --out-model {output.model:q} --out-metrics {output.metrics:q} "
        "--seed {wildcards.seed} --policy real --generation 0 2> {log:q}"


rule conformers_mix:
    """Generation g's training conformers: the policy applied to real + synthetic 1..g."""
    message:
        "conformers · seed {wildcards.seed} · {wildcards.policy} · generation {wildcards.gen}: mix the data"
    priority: 3  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        real=f"{CF_REAL}/manifest.json",
        synthetic=lambda wc: [f"{d}/manifest.json" for d in cf_synthetic_dirs(wc)],
        code=code("conformers.cli"),
    output:
        f"{CONF}/seed{{seed}}/{{policy}}/gen{{gen}}/mix.json",
    log:
        f"{LOGS}/conformers/seed{{seed}}/{{policy}}/gen{{gen}}_mix.log",
    params:
        dirs=lambda wc: " ".join(shlex.quote(d) for d in cf_synthetic_dirs(wc)),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro conformers mix --policy {wildcards.policy} --generation {wildcards.gen} "
        "--seed {wildcards.seed} --real $(dirname {input.real:q}) --synthetic {params.dirs} "
        "--out {output:q} 2> {log:q}"


rule conformers_train:
    """Generation g retrained from scratch on its mix (same hyper-parameters, same epochs)."""
    message:
        "conformers · seed {wildcards.seed} · {wildcards.policy} · generation {wildcards.gen}: train"
    priority: 3  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        mix=rules.conformers_mix.output,
        code=code("conformers.cli"),
    output:
        model=f"{CONF}/seed{{seed}}/{{policy}}/gen{{gen}}/model.pt",
        metrics=f"{CONF}/seed{{seed}}/{{policy}}/gen{{gen}}/train_metrics.json",
    log:
        f"{LOGS}/conformers/seed{{seed}}/{{policy}}/gen{{gen}}_train.log",
    params:
        p=cf_params("train"),
        ckpt=lambda wc: f"{CKPT}/conformers/seed{wc.seed}/{wc.policy}/gen{wc.gen}",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro conformers train --params {params.p:q} --data-spec {input.mix:q} "
        "--ckpt-dir {params.ckpt:q} --out-model {output.model:q} --out-metrics {output.metrics:q} "
        "--seed {wildcards.seed} --policy {wildcards.policy} --generation {wildcards.gen} 2> {log:q}"


CONFORMERS_SAMPLE_SHELL = (
    "python -m dlrepro conformers sample --params {params.p:q} --model {input.model:q} "
    "--real-dir $(dirname {input.real:q}) --seed {wildcards.seed} "
    "--out-dir $(dirname {output:q}) {params.tag} 2> {log:q}"
)


rule conformers_sample_gen1:
    """Synthetic set 1: for every training molecule as many conformers as it has real ones."""
    message:
        "conformers · seed {wildcards.seed} · generation 1: sample from generation 0"
    priority: 3  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        model=f"{CONF}/seed{{seed}}/gen0/model.pt",
        real=f"{CF_REAL}/manifest.json",
        code=code("conformers.cli"),
    output:
        f"{CONF}/seed{{seed}}/synthetic1/manifest.json",
    log:
        f"{LOGS}/conformers/seed{{seed}}/synthetic1.log",
    params:
        p=cf_params("sample"),
        tag="--generation 1",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        CONFORMERS_SAMPLE_SHELL


rule conformers_sample:
    """Synthetic set g (g >= 2), sampled from this policy's generation g - 1."""
    message:
        "conformers · seed {wildcards.seed} · {wildcards.policy} · generation {wildcards.gen}: sample from the previous generation"
    priority: 3  # a generation chain: the critical path starts first (profiles: greedy)
    input:
        model=lambda wc: cf_model(wc.seed, wc.policy, int(wc.gen) - 1),
        real=f"{CF_REAL}/manifest.json",
        code=code("conformers.cli"),
    output:
        f"{CONF}/seed{{seed}}/{{policy}}/synthetic{{gen}}/manifest.json",
    log:
        f"{LOGS}/conformers/seed{{seed}}/{{policy}}/synthetic{{gen}}.log",
    params:
        p=cf_params("sample"),
        tag=lambda wc: f"--policy {wc.policy} --generation {wc.gen}",
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        CONFORMERS_SAMPLE_SHELL


rule conformers_evaluate:
    """Denoising test loss at fixed noise levels and seeds; COV-R / MAT-R on held-out molecules."""
    message:
        "conformers · seed {wildcards.seed} · {wildcards.run}: evaluate (COV / MAT, validity)"
    input:
        model=f"{CONF}/seed{{seed}}/{{run}}/model.pt",
        real=f"{CF_REAL}/manifest.json",
        code=code("conformers.cli"),
    output:
        f"{CONF}/seed{{seed}}/{{run}}/eval.json",
    log:
        f"{LOGS}/conformers/seed{{seed}}/{{run}}/eval.log",
    wildcard_constraints:
        run=r"gen0|[^/]+/gen\d+",
    params:
        p=cf_params("eval"),
        tag=lambda wc: run_tag(wc.run),
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro conformers evaluate --params {params.p:q} --model {input.model:q} "
        "--real-dir $(dirname {input.real:q}) --out {output:q} {params.tag} "
        "--seed {wildcards.seed} 2> {log:q}"


rule conformers_baseline:
    """The RDKit row: ETKDGv3 conformers (no MMFF) of the same test molecules, same metrics."""
    message:
        "conformers · seed {wildcards.seed}: RDKit ETKDGv3 baseline"
    input:
        real=f"{CF_REAL}/manifest.json",
        code=code("conformers.cli"),
    output:
        f"{CONF}/seed{{seed}}/rdkit-etkdg/eval.json",
    log:
        f"{LOGS}/conformers/seed{{seed}}/rdkit-etkdg/eval.log",
    params:
        p=cf_params("eval"),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro conformers baseline --params {params.p:q} --real-dir $(dirname {input.real:q}) "
        "--out {output:q} --seed {wildcards.seed} 2> {log:q}"


rule conformers_summary:
    """results/conformers/summary.csv: one row per (policy, generation, seed), plus RDKit's."""
    message:
        "conformers · summary table"
    input:
        evals=cf_evals() + [f"{CONF}/seed{s}/rdkit-etkdg/eval.json" for s in CF["seeds"]],
        code=code("conformers.cli"),
    output:
        f"{CONF}/summary.csv",
    log:
        f"{LOGS}/conformers/summary.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro conformers summarize --evals {input.evals:q} --out {output:q} 2> {log:q}"


rule conformers_figure:
    """Test loss, COV-R, MAT-R, MAT-P and bond validity vs generation, one line per policy."""
    message:
        "conformers · figure"
    input:
        csv=rules.conformers_summary.output,
        code=code("conformers.cli"),
    output:
        png=report(
            f"{FIGURES}/conformers_metrics.png",
            caption="../report/conformers.rst",
            category="Model collapse",
            subcategory="Molecule conformations",
        ),
        pdf=f"{FIGURES}/conformers_metrics.pdf",
    log:
        f"{LOGS}/conformers/figure.log",
    params:
        style=FIGURE_STYLE,
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro conformers plot --csv {input.csv:q} "
        "--out $(dirname {output.png:q})/conformers_metrics --metrics test_loss,cov_r,mat_r,mat_p,bond_valid "
        "2> {log:q}"


rule conformers_drawing:
    """A few generated conformers per generation and policy, aligned to the real one beside them."""
    message:
        "conformers · drawing of sampled molecules"
    input:
        real=f"{CF_REAL}/train/manifest.json",
        sets=[f"{d}/manifest.json" for d in cf_sample_sets()],
        code=code("conformers.cli"),
    output:
        png=report(
            f"{FIGURES}/conformers_samples.png",
            caption="../report/conformers_samples.rst",
            category="Model collapse",
            subcategory="Molecule conformations",
        ),
        pdf=f"{FIGURES}/conformers_samples.pdf",
    log:
        f"{LOGS}/conformers/drawing.log",
    params:
        style=FIGURE_STYLE,
        dirs=" ".join(shlex.quote(d) for d in cf_sample_sets()),
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "DLREPRO_FIGURE_STYLE={params.style:q} python -m dlrepro conformers draw "
        "--samples $(dirname {input.real:q}) {params.dirs} --out $(dirname {output.png:q})/conformers_samples "
        "2> {log:q}"


if stage_on("conformers"):
    TARGETS.extend(
        [f"{CONF}/summary.csv", f"{FIGURES}/conformers_metrics.png", f"{FIGURES}/conformers_samples.png"]
    )
