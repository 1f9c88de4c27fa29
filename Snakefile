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
include: "workflow/rules/report.smk"


# the data stage prepares what the enabled stages need, plus data.prepare
if stage_on("data"):
    TARGETS.extend(prepared(ds) for ds in sorted(DATA_NEEDED) if ds != "moses")


rule all:
    input:
        all_targets(),
    default_target: True
