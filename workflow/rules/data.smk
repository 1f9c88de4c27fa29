# The data stage: verified downloads (or a local mirror), then preparation of text corpora
# and image sets into compact arrays with manifests. File formats: README "results/data".


rule download:
    """Obtain one upstream file from the mirror or the network, verified by checksum."""
    message:
        "data · download {wildcards.dataset}/{wildcards.filename}"
    priority: 4  # data first: every generation chain waits on it (profiles: greedy)
    output:
        f"{RAW}/{{dataset}}/{{filename}}",
    log:
        f"{LOGS}/data/download/{{dataset}}/{{filename}}.log",
    wildcard_constraints:
        dataset="|".join(_registry.DATASETS),
    params:
        network="" if config["data"]["allow_network"] else "--no-network",
        retries=config["data"]["retries"],
        timeout=config["data"]["timeout_s"],
    resources:
        **LIGHT_RESOURCES,
    localrule: True
    conda:
        ENV
    shell:
        "python -m dlrepro data download --dataset {wildcards.dataset} "
        "--file {wildcards.filename:q} --out {output:q} {params.network} "
        "--retries {params.retries} --timeout {params.timeout} 2> {log:q}"


rule prepare_text:
    """Split documents, train the byte-level BPE on train, write token arrays + manifest."""
    message:
        "data · prepare the text corpus {wildcards.dataset}"
    priority: 4  # data first: every generation chain waits on it (profiles: greedy)
    input:
        raw=lambda wc: raw_files(wc.dataset),
        code=code("data.cli"),
    output:
        **text_outputs("{dataset}"),
    log:
        f"{LOGS}/data/prepare_text/{{dataset}}.log",
    wildcard_constraints:
        dataset="|".join(TEXT_SETS),
    params:
        p=as_json({**config["data"]["text"], "seed": config["seed"]}),
        raw=lambda wc: f"{RAW}/{wc.dataset}",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro data prepare-text --dataset {wildcards.dataset} "
        "--raw-dir {params.raw:q} --params {params.p:q} "
        "--out-dir $(dirname {output.manifest:q}) 2> {log:q}"


rule prepare_images:
    """Decode IDX / CIFAR binaries into float32 [0, 1] arrays with fixed splits + manifest."""
    message:
        "data · prepare the image set {wildcards.dataset}"
    priority: 4  # data first: every generation chain waits on it (profiles: greedy)
    input:
        raw=lambda wc: raw_files(wc.dataset),
        code=code("data.cli"),
    output:
        **image_outputs("{dataset}"),
    log:
        f"{LOGS}/data/prepare_images/{{dataset}}.log",
    wildcard_constraints:
        dataset="|".join(IMAGE_SETS),
    params:
        p=lambda wc: image_params(wc.dataset),
        raw=lambda wc: f"{RAW}/{wc.dataset}",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dlrepro data prepare-images --dataset {wildcards.dataset} "
        "--raw-dir {params.raw:q} --params {params.p:q} "
        "--out-dir $(dirname {output.manifest:q}) 2> {log:q}"
