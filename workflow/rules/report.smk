# Figures (PNG for the Snakemake report, PDF for papers), drawn from summary.csv and the
# runs' metrics.csv. `snakemake --report results/<name>/report.html` collects the PNGs
# with the captions in workflow/report/.


rule figures:
    """Figure 1 and 2 analogues, accuracy vs n, time to target, speedup (PNG + PDF); the
    sweep figure when the config has variants."""
    input:
        summary=f"{RESULTS}/summary.csv",
    output:
        [figure_report(stem) for stem in FIGURE_STEMS],
        [f"{FIGDIR}/{stem}.pdf" for stem in FIGURE_STEMS],
    params:
        python=PYTHON_NAME,
        code=code_digest("tssm/paper.py", "tssm/reporting"),  # changed code redraws
        outdir=parent_dir,  # FIGDIR, from the first figure's path
        fig1=FIGS["figure1_splits"],
        # (not when `only:` leaves that preset's runs out: the figures then draw the runs there are)
        presets=" ".join(f"--{k.replace('_', '-')} {FIGS[k]}" for k in ("preset", "figure1_preset")
                         if FIGS[k] and FIGS[k] in GRID.presets),
        fig2=" ".join(map(str, FIGS["figure2_splits"])),
        fig2_select=" ".join(
            ([f"--figure2-dataset {FIGS['figure2_dataset']}"] if FIGS["figure2_dataset"] else [])
            + ([f"--figure2-model {FIGS['figure2_model']}"] if FIGS["figure2_model"] else [])
        ),
        target=FIGS["target_train_acc"],
        reference=FIGS["reference"],
        budget="--budget" if FIGS["budget_epochs"] else "",
    log:
        f"{LOGS}/figures.log",
    conda:
        ENV_FILE
    shell:
        "{params.python} -m tssm.reporting.figures --summary {input.summary:q} --out-dir {params.outdir:q}"
        " --figure1-splits {params.fig1} {params.presets} --figure2-splits {params.fig2} {params.fig2_select}"
        " --target-acc {params.target} --reference {params.reference} {params.budget} > {log:q} 2>&1"


rule mlflow_pipeline_run:
    """The config's study run (made by mlflow_experiment) gets summary.csv, summary.md,
    summary.html, tuning.md (with `tuning:`) and every figure as artifacts, and is closed."""
    input:
        experiment=rules.mlflow_experiment.output.marker,
        summary=f"{RESULTS}/summary.csv",
        table=f"{RESULTS}/summary.md",
        files=[f"{RESULTS}/summary.html"] + ([f"{RESULTS}/tuning.md"] if TRIAL_RUNS else []),
        figures=FIGURE_FILES,
    output:
        marker=f"{RESULTS}/mlflow_pipeline_run.json",
    params:
        code=code_digest("workflow/scripts/mlflow_pipeline_run.py"),  # changed code re-runs it; a moved checkout does not
        python=PYTHON_NAME,
        tracking_uri=TRACKING_URI,
        config_name=NAME,
    log:
        f"{LOGS}/mlflow_pipeline_run.log",
    conda:
        ENV_FILE
    shell:
        "{params.python} \"$TSSM_SCRIPTS/mlflow_pipeline_run.py\" --experiment-marker {input.experiment:q}"
        " --tracking-uri {params.tracking_uri:q} --config-name {params.config_name:q}"
        " --summary-csv {input.summary:q} --summary-md {input.table:q} --files {input.files:q}"
        " --figures {input.figures:q} --config-files $TSSM_CONFIG_FILES --out {output.marker:q} > {log:q} 2>&1"
