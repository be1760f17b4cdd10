# Aggregation: one row per run (summary.csv) and mean ± std over seeds (summary.md),
# read from the runs' files; training is never re-run here.


rule summary:
    """summary.csv (one row per grid point) and summary.md (mean ± std over seeds; with variants,
    a table of each variant against frozen and the reference method), and summary.html, the
    same Markdown rendered for the report (which shows HTML inline but Markdown only as a
    download)."""
    input:
        runs=ALL_RUNS,
    output:
        csv=report(
            f"{RESULTS}/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "one row per run"},
        ),
        md=report(
            f"{RESULTS}/summary.md",
            caption="../report/summary_md.rst",
            category="Summary",
            labels={"table": "mean ± std over seeds (Markdown)"},
        ),
        html=report(
            f"{RESULTS}/summary.html",
            caption="../report/summary_md.rst",
            category="Summary",
            labels={"table": "mean ± std over seeds"},
        ),
    params:
        python=PYTHON_NAME,
        # changed code re-aggregates (cheap; training is not re-run); a moved checkout does not
        code=code_digest("tssm/reporting", "workflow/scripts/summary_html.py"),
        target=FIGS["target_train_acc"],
        reference=FIGS["reference"],
        epochs=" ".join(["--epochs", *map(str, FIGS["budget_epochs"])]) if FIGS["budget_epochs"] else "",
        title=f"tssm-bench: {NAME} (MLflow experiment {EXPERIMENT})",
    log:
        f"{LOGS}/summary.log",
    conda:
        ENV_FILE
    shell:
        "{params.python} -m tssm.reporting.summary {input.runs:q} --csv {output.csv:q} --md {output.md:q}"
        " --target-acc {params.target} --reference {params.reference} {params.epochs} --title {params.title:q} > {log:q} 2>&1"
        " && {params.python} \"$TSSM_SCRIPTS/summary_html.py\" {output.md:q} {output.html:q} >> {log:q} 2>&1"
