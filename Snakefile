# dlrepro: one-command reproduction of model collapse (replace vs accumulate), width and
# init variants, and scaling-law fits. See README.md.
#
#   snakemake --profile profiles/cpu                                   # default preset
#   snakemake --profile profiles/cpu --configfile workflow/presets/smoke.yaml
#   snakemake --profile profiles/slurm --configfile workflow/presets/paper.yaml

import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/linreg.smk"
include: "workflow/rules/collapse.smk"
include: "workflow/rules/vae.smk"
include: "workflow/rules/conformers.smk"
include: "workflow/rules/width.smk"
include: "workflow/rules/init.smk"
include: "workflow/rules/scaling.smk"
include: "workflow/rules/curves.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/plan.smk"


check_offline_data()  # files a needed data set lacks, named before any job

# the data stage prepares what the enabled stages need, plus data.prepare
if stage_on("data"):
    TARGETS.extend(prepared(ds) for ds in sorted(DATA_NEEDED) if ds != "moses")


# Bookkeeping rules that take seconds and little memory at any scale: a cluster executor
# runs them on the submitting node instead of queueing a job for each (the downloads are
# local rules too: compute nodes may have no internet). Data preparation, simulations,
# fits, training, sampling and evaluation are submitted.
localrules:
    all,
    linreg_check, linreg_figure,
    collapse_real_spec, collapse_mix, collapse_summary, collapse_figure,
    vae_mix, vae_summary, vae_figure, vae_grid,
    conformers_mix, conformers_summary, conformers_figure, conformers_drawing,
    width_merge, width_agreement, width_ensembles, width_figure, width_coord_check_figure,
    init_analyse, init_compare, init_figure,
    scaling_data_spec, scaling_data_table, scaling_figure,
    curves_table, curves_figure,
    report_claims, report_summary,


rule all:
    message:
        "all: every target is built"
    input:
        all_targets(),
    default_target: True
