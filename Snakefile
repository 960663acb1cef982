# JANUS workflow: captures -> flows -> models -> scores -> metrics -> tables and figures.
#
#   snakemake --cores all results/cross_matrix.md           # embedded default (synthetic)
#   snakemake --cores all --configfile config/paper.yaml --replace-workflow-config
#   snakemake --profile profiles/slurm --configfile config/paper.yaml --replace-workflow-config
#   snakemake --report results/report.html                  # after a run


from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# common.smk types --config overrides and validates the config against
# workflow/schemas/config.schema.yaml before anything reads it.


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        TABLES,
        FIGURES,
