# tssm-bench pipeline: train a grid of runs, summarise them, draw the figures.
#
#   snakemake --cores 2                                   # config/config.yaml (digits, CPU)
#   snakemake --configfile config/fashion.yaml            # Fashion-MNIST
#   snakemake --workflow-profile profiles/slurm --configfile config/paper.yaml   # GPU cluster
#   snakemake --report results/default/report.html        # after a run
#   tssm plan config/paper.yaml                           # the grid and what it costs (docs/pipeline.md)
#
# Layout of one configuration's outputs (<name> = the config's `name`):
#   results/<name>/runs/{dataset}/{model}/{method}/n{splits}/seed{seed}/run.json, metrics.csv,
#       point.yaml (what the job passed to tssm train), done.json (once the run finished)
#   results/<name>/runs/.../seed{seed}/{variant}/...   one setting of an experiment's `grid:`
#   results/<name>/summary.csv, summary.md (+ summary.html for the report), figures/*.png|pdf
#   logs/<name>/...               one log per job
#   results/mlflow.db             MLflow index (experiment = the config's `experiment`)

import os

from snakemake.utils import min_version

min_version("8.0")

# The default config, unless --configfile names another one (which then replaces it
# entirely instead of being merged over it).
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tuning.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


localrules:
    all,
    select_settings,
    prepare_data,
    mlflow_experiment,
    mlflow_pipeline_run,
    summary,
    figures,


rule all:
    input:
        # 1. every training run of the grid, finished: results/<name>/runs/.../done.json
        runs=ALL_RUNS,
        # 2. one row per run, and mean ± std over seeds
        summary=f"{RESULTS}/summary.csv",
        table=f"{RESULTS}/summary.md",
        table_html=f"{RESULTS}/summary.html",  # summary.md rendered for the report
        # 3. figures: Figure 1 and 2 analogues, accuracy vs n, time to target, speedup (+ sweep)
        figures=FIGURE_FILES,
        # 4. with `tuning:`: what each method's trials selected (tuned.yaml, tuning.md)
        tuning=[TUNED_FILE, f"{RESULTS}/tuning.md"] if TRIAL_RUNS else [],
        # 5. the MLflow run `<name> (pipeline)` holding the summary and the figures
        mlflow=f"{RESULTS}/mlflow_pipeline_run.json",
