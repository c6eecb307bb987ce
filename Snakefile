# bnstudy: can BatchNorm alone serve as the nonlinearity of a neural network?
# Run from the repository root: `snakemake --cores all` (README). The logic lives in
# src/bnstudy/; the rules under workflow/rules/ only call `bnstudy ...`.

from snakemake.utils import min_version, validate

import sys

from bnstudy import grid, summary

min_version("9.0")


report: "paper/report/workflow.rst"


# The embedded default, used when no --configfile is given. (Loading it always would merge a
# given config into it key by key, so the default's experiments would leak into smoke.yaml.)
if not workflow.overwrite_configfiles:

    configfile: "workflow/config/default.yaml"


validate(config, "workflow/schemas/config.schema.yaml")
grid.check(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/paper.smk"


rule all:
    default_target: True
    input:
        rules.collect.output,
        grid.PAPER,


# The last thing a run prints: the answer and where the PDF is, or which job failed and its log.
onsuccess:
    print(summary.success())


onerror:
    print(summary.failure(log), file=sys.stderr)
