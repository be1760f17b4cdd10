# The tuning protocol (experiments with `tuning:`): the trials' run folders are ordinary grid
# points (train.smk); this rule selects each point's settings on the validation split, and the
# final runs (`preset: tuned`) read the selection when they start.


rule select_settings:
    """tuned.yaml (per dataset/model/method/n: the trial with the best final validation
    accuracy, and its settings) and tuning.md (every trial, the selected one in bold)."""
    input:
        runs=TRIAL_RUNS,
    output:
        selection=TUNED_FILE,
        table=report(f"{RESULTS}/tuning.md", caption="../report/tuning.rst", category="Summary",
                     labels={"table": "tuning: every trial"}),
    params:
        python=PYTHON_NAME,
        code=code_digest("tssm/tuning.py"),  # changed selection code re-selects
    log:
        f"{LOGS}/select_settings.log",
    conda:
        ENV_FILE
    shell:
        "{params.python} -m tssm.tuning {input.runs:q} --out {output.selection:q} --md {output.table:q} > {log:q} 2>&1"
