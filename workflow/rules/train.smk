# Before the fan-out: the data (downloaded once per dataset) and the MLflow experiment
# (created once, so parallel jobs never race to create it). Then one job per grid point.


rule prepare_data:
    """Load (and if needed download) one dataset into data_root, once, before training fans out."""
    output:
        marker=f"{DATA_ROOT}/.prepared/{{dataset}}.json",
    params:
        python=PYTHON_NAME,
        # data_root, from the marker's path: <data_root>/.prepared/<dataset>.json
        root=lambda wc, output: os.path.dirname(os.path.dirname(output.marker)),
    log:
        f"{LOGS}/prepare_data/{{dataset}}.log",
    conda:
        ENV_FILE
    shell:
        "{params.python} \"$TSSM_SCRIPTS/prepare_data.py\" --dataset {wildcards.dataset}"
        " --root {params.root:q} --marker {output.marker:q} > {log:q} 2>&1"


# The config file(s) the study run records, read when the MLflow steps run. Not a param: a
# param that changes (an edited or moved config) re-runs mlflow_experiment, and that step
# re-running holds back the new points' jobs in the same call; mlflow_pipeline_run updates the
# study for an edited config instead.


rule mlflow_experiment:
    """Create (or find) this config's MLflow experiment and its study run (the parent of every
    training run: the config's settings as params, its YAML as config.yaml) before any run logs
    to it. An edited config gets a new study run at the end (mlflow_pipeline_run)."""
    output:
        marker=f"{RESULTS}/mlflow_experiment.json",
        parent=f"{RESULTS}/mlflow_parent_run_id",
    params:
        python=PYTHON_NAME,
        experiment=EXPERIMENT,
        tracking_uri=TRACKING_URI,
        config_name=NAME,
    log:
        f"{LOGS}/mlflow_experiment.log",
    conda:
        ENV_FILE
    shell:
        "{params.python} \"$TSSM_SCRIPTS/mlflow_experiment.py\" --name {params.experiment:q}"
        " --tracking-uri {params.tracking_uri:q} --tag pipeline_config={params.config_name:q}"
        " --config-files $TSSM_CONFIG_FILES --parent-out {output.parent:q} --out {output.marker:q} > {log:q} 2>&1"


rule train:
    """One grid point (one variant of it, for an experiment with a `grid:`): `tssm train`
    into the run directory, then done.json, the job's only output, once run.json says the run
    finished or diverged (workflow/scripts/point_done.py).

    Snakemake tracks the marker, never the record: a killed or interrupted run leaves no
    marker (the next call runs the point again and tssm resumes it from its checkpoint), a
    finished orphan is marked done without training it twice, and a point whose settings
    changed is trained with --overwrite, which moves the old record to .replaced/. Exit
    status 3 (diverged) is a result: the record says so and the summary reports it. A job that
    asks for GPUs runs on its own (tssm.gpu_slots sets CUDA_VISIBLE_DEVICES; SLURM does it there)."""
    input:
        # order the jobs; a re-created marker re-runs the train jobs, whose status check (point_done.py)
        # then marks finished points done without training them (no ancient(): see docs/pipeline.md)
        experiment=rules.mlflow_experiment.output.marker,
        # the study run, each training run's parent; ancient(): the pipeline's last step rewrites
        # this file when an edited config gets a new study run, which must not re-run training
        parent=ancient(rules.mlflow_experiment.output.parent),
        data=lambda wc: data_marker(wc.dataset),
        tuned=tuned_input,  # a tuned experiment's final runs start after the selection
    output:
        done=f"{RUN_DIR}/done.json",
    params:
        # the point's settings, as point.yaml: a changed setting re-runs it (params trigger)
        point=point_yaml,
        launcher=launcher,
        out=lambda wc, output: os.path.dirname(output.done),
        python=PYTHON_NAME,
    log:
        f"{LOGS}/train/{{dataset}}/{{model}}/{{method}}/n{{splits}}/seed{{seed}}{{cores}}{{variant}}.log",
    threads: job_threads
    resources:
        gpu=job_resource("gpus"),
        mem_mb=job_resource("mem_mb"),
        runtime=job_resource("runtime"),
    conda:
        ENV_FILE
    wildcard_constraints:
        splits=r"\d+",
        seed=r"\d+",
        cores=r"(/cores\d+)?",  # empty, or the folder of an experiment's `cores:` budget
        variant=r"(/[^/]+)?",  # empty, or a slash and the variant name (an experiment with a `grid:`)
    shell:
        "mkdir -p {params.out:q} && printf '%s' {params.point:q} > {params.out:q}/point.yaml &&"
        " if ! {params.python} \"$TSSM_SCRIPTS/point_done.py\" --check {params.out:q}; then"
        " TSSM_MLFLOW_PARENT_RUN_ID=$(cat {input.parent:q})"
        " {params.python} -m tssm.gpu_slots {resources.gpu} -- {params.launcher} train --config {params.out:q}/point.yaml"
        " --out {params.out:q} --overwrite --no-progress"
        " > {log:q} 2>&1 || [ $? -eq 3 ]; fi &&"
        " {params.python} \"$TSSM_SCRIPTS/point_done.py\" {params.out:q} {output.done:q} >> {log:q} 2>&1"
