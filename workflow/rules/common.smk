# Paths and input functions of the rules. The grid itself (validation, variants, tuning,
# `cores:` budgets, resources) is tssm.grid, from this checkout's package: `tssm plan CONFIG`
# prints the same grid.

import hashlib
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

sys.path.insert(0, str(workflow.basedir))  # this checkout's tssm package
from tssm import grid, layout
from tssm.errors import ConfigError
from tssm.gpu_slots import visible_gpus

try:
    GRID = grid.load(config)  # validated (defaults filled in), every point checked as `tssm train` would
except ConfigError as e:
    raise WorkflowError(str(e)) from None


def _check_profile_placeholders():
    """Stop at once when a resource still holds a profile placeholder such as `<ACCOUNT>`
    (profiles/slurm ships them), instead of letting sbatch reject every job later."""
    rs = workflow.resource_settings
    found = [(None, k, v) for k, v in (rs.default_resources or {}).items()]
    found += [(rule_name, k, v) for rule_name, res in (rs.overwrite_resources or {}).items() for k, v in res.items()]
    for rule_name, key, value in found:
        raw = str(getattr(value, "raw", value))
        if re.fullmatch(r"<[A-Z_]+>", raw):
            where = f"set-resources: {rule_name}: {key}" if rule_name else f"default-resources: {key}"
            raise WorkflowError(f"the profile's {where} is still the placeholder {raw}: put your cluster's {key} "
                                f"in profiles/slurm/config.yaml (or in the profile you passed)")


_check_profile_placeholders()


# What the grid asks for, in one line; a config that asks for CUDA on a machine without a GPU
# is noted here (a dry run, or a cluster profile's login node) and stops before any job when
# the jobs would run here (onstart, local executor).
GPU_SHORTFALL = GRID.gpu_shortfall(len(visible_gpus()))
if workflow.is_main_process:
    print(grid.cost_text(GRID), file=sys.stderr)
    if GPU_SHORTFALL:
        print(f"warning: {GPU_SHORTFALL}", file=sys.stderr)


onstart:
    if GPU_SHORTFALL and workflow.local_exec:
        raise WorkflowError(GPU_SHORTFALL)


NAME = config["name"]
RESULTS = f"{config['results']}/{NAME}"  # everything of this config: runs, summary, figures, report
LOGS = f"logs/{NAME}"
FIGDIR = f"{RESULTS}/figures"
EXPERIMENT = config.get("experiment") or f"tssm-{NAME}"
TRACKING_URI = config["tracking_uri"]
DATA_ROOT = config["data_root"]
REPO = str(workflow.basedir)  # the checkout holding the Snakefile (and the tssm package)
FIGS = config["figures"]
RUN_DIR = f"{RESULTS}/{layout.RUN_DIR}"  # {cores}, {variant}: "" or a slash and the folder
TUNED_FILE = GRID.tuned_file  # what the tuning selected, read by its final runs (preset: tuned)
ENV_FILE = "../../envs/tssm.yaml"
SCRIPTS = f"{REPO}/workflow/scripts"
ALL_RUNS = [f"{p.folder(RESULTS)}/done.json" for p in GRID.runs()]  # written once a run finished (train.smk)
TRIAL_RUNS = [f"{p.folder(RESULTS)}/done.json" for p in GRID.trials()]
# the sweep figure only for a config with variants, the budget figure for one with budget epochs
FIGURE_STEMS = layout.figure_stems(GRID.has_variants, bool(FIGS["budget_epochs"]))
FIGURE_FILES = [f"{FIGDIR}/{stem}.{ext}" for stem in FIGURE_STEMS for ext in ("png", "pdf")]


def _uses_conda():
    methods = getattr(getattr(workflow, "deployment_settings", None), "deployment_method", None) or ()
    return any(str(getattr(m, "name", m)).upper() == "CONDA" for m in methods)


# The interpreter: explicit config > the conda env's `python` > the one running Snakemake. Rules
# call it by its bare name and the shell prefix puts its folder first on PATH, so neither a
# moved venv nor a moved checkout changes a param (params are a rerun trigger). TSSM_SCRIPTS
# names workflow/scripts for the same reason (and see docs/pipeline.md on ancient() markers).
PYTHON = config.get("python") or ("python" if _uses_conda() else sys.executable)
PYTHON_DIR, PYTHON_NAME = os.path.split(PYTHON)
# TSSM_CONFIG_FILES: the config YAML(s) the MLflow study run holds -- an environment variable, not
# a param, so running an edited config under another file name does not re-make the study run.
_ENV = [f"PYTHONPATH={shlex.quote(REPO)}${{PYTHONPATH:+:$PYTHONPATH}}", "MPLBACKEND=Agg",
        f"TSSM_SCRIPTS={shlex.quote(SCRIPTS)}", *([f"PATH={shlex.quote(PYTHON_DIR)}:$PATH"] if PYTHON_DIR else []),
        f"TSSM_CONFIG_FILES={shlex.quote(' '.join(shlex.quote(os.path.relpath(f)) for f in workflow.configfiles))}"]
shell.prefix(f"set -euo pipefail; export {' '.join(_ENV)}; ".replace("{", "{{").replace("}", "}}"))


def code_digest(*paths):
    """A digest of code files of this checkout (relative paths; a folder: its *.py): a param,
    so changed code re-runs the rule while a moved checkout does not."""
    h = hashlib.sha256()
    for rel in paths:
        p = Path(REPO, rel)
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.exists() else []:
            h.update(f.relative_to(REPO).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def grid_point(wc):
    cores = int(re.sub(r"\D", "", wc.cores)) if wc.cores else None  # empty, or a cores<C> folder
    try:
        return GRID.point(wc.dataset, wc.model, wc.method, wc.splits, wc.seed, cores, wc.variant.lstrip("/"))
    except ConfigError as e:
        raise WorkflowError(str(e)) from None


def point_yaml(wc):
    """The point's `point.yaml` (`tssm train --config point.yaml`): a param of the train rule,
    so a changed setting re-runs the point."""
    return grid_point(wc).point_yaml(config_name=NAME, data_root=DATA_ROOT, tracking_uri=TRACKING_URI,
                                     experiment=EXPERIMENT)


def tuned_input(wc):
    """The selection a final run of a tuned experiment reads (nothing for other runs)."""
    return [TUNED_FILE] if grid_point(wc).settings.get("preset") == "tuned" else []


def launcher(wc):
    """`python3 -m tssm`, or torchrun with one rank per worker (the interpreter by name)."""
    return grid.launch_command(PYTHON_NAME, grid_point(wc).workers)


def job_threads(wc):
    return grid_point(wc).threads


def job_resource(name):
    return lambda wc: getattr(grid_point(wc), name)


def data_marker(dataset):
    return f"{DATA_ROOT}/.prepared/{dataset}.json"


def figure_report(stem):
    """One figure's PNG, marked for the Snakemake report with its caption, category and label
    from the tssm.layout catalogue (the PDF next to it is for papers, not the report)."""
    caption, category, label = layout.FIGURES[stem]
    return report(f"{FIGDIR}/{stem}.png", caption=f"../report/{caption}.rst", category=category,
                  labels={"figure": label})


def parent_dir(wc, output):
    """The folder of a rule's first output (a param derived from the output, so that no path
    prefix is hard-coded in params)."""
    return os.path.dirname(output[0])
