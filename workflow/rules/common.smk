# Configuration: validation, the job grid, paths and the command lines of the rules.
#
# The grid is computed here once, from the validated config; every rule and `rule all`
# read it. Nothing in this file touches torch, so `snakemake -n` stays fast.

import functools
import itertools
import json
import os
import re
import shlex
import sys
from difflib import get_close_matches

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(workflow.basedir))  # this checkout's tssm package (torch-free modules only)
from tssm import layout
from tssm.layout import num_blocks

validate(config, schema="../../config/schema.yaml")


def _check_profile_placeholders():
    """Stop at once when a resource still holds a profile placeholder such as `<ACCOUNT>`
    (profiles/slurm ships them), instead of letting sbatch reject every job later."""
    rs = workflow.resource_settings
    found = [(None, k, v) for k, v in (rs.default_resources or {}).items()]
    found += [(rule, k, v) for rule, res in (rs.overwrite_resources or {}).items() for k, v in res.items()]
    for rule, key, value in found:
        raw = str(getattr(value, "raw", value))
        if re.fullmatch(r"<[A-Z_]+>", raw):
            where = f"set-resources: {rule}: {key}" if rule else f"default-resources: {key}"
            raise WorkflowError(
                f"the profile's {where} is still the placeholder {raw}: put your cluster's {key} in "
                f"profiles/slurm/config.yaml (or in the profile you passed)"
            )


_check_profile_placeholders()

BACKPROP = ("sgd", "adam")
# RunConfig fields the pipeline sets from the grid (and that `run:` may therefore not set).
PIPELINE_FIELDS = ("dataset", "model", "method", "splits", "seed", "epochs", "out", "data_root", "download",
                   "tracking_uri", "experiment", "tags")

NAME = config["name"]
RESULTS = f"{config['results']}/{NAME}"  # everything of this config: runs, summary, figures, report
LOGS = f"logs/{NAME}"
FIGDIR = f"{RESULTS}/figures"
EXPERIMENT = config.get("experiment") or f"tssm-{NAME}"
TRACKING_URI = config["tracking_uri"]
DATA_ROOT = config["data_root"]
REPO = str(workflow.basedir)  # the checkout holding the Snakefile (and the tssm package)
FIGS = config["figures"]
# {variant} is "" for a run without a `grid:` (the plain layout) and "/<variant name>" for one
# setting of a sweep: results/<name>/runs/.../seed{seed}/<variant name>/
RUN_DIR = f"{RESULTS}/{layout.RUN_DIR}"
ENV_FILE = "../../envs/tssm.yaml"


def _uses_conda():
    try:
        methods = workflow.deployment_settings.deployment_method
    except AttributeError:
        return False
    return any(str(getattr(m, "name", m)).upper() == "CONDA" for m in methods)


# The interpreter rules call: explicit config > the conda env's `python` > the one running
# Snakemake (so `.venv/bin/snakemake` works without activating the venv). Kept out of
# `params` so that moving the venv does not re-run every job.
PYTHON = config.get("python") or ("python" if _uses_conda() else sys.executable)
# Run the tssm package of this checkout even where it is not pip-installed (conda envs).
PY_ENV = f"export PYTHONPATH={shlex.quote(REPO)}${{PYTHONPATH:+:$PYTHONPATH}} MPLBACKEND=Agg;"


def _check_run_keys(run, where):
    """Reject unknown or pipeline-owned keys in a `run:` mapping, naming the fix."""
    try:  # the single source of truth, when tssm is importable (it needs no torch for this)
        from dataclasses import fields

        from tssm.config import RunConfig

        known = {f.name for f in fields(RunConfig)}
    except Exception:
        known = None
    for key in run:
        if key in PIPELINE_FIELDS:
            raise WorkflowError(
                f"{where}: `{key}` is set by the pipeline, not in `run:` — use the experiment's "
                f"datasets/model/methods/splits/seeds/epochs, or the top-level data_root/tracking_uri/experiment."
            )
        if known is not None and key not in known:
            close = get_close_matches(key, sorted(known), n=1)
            raise WorkflowError(f"{where}: unknown run setting `{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))


@functools.cache
def _run_validator():
    """A validator of one `run:` mapping (config/schema.yaml's $defs/run)."""
    import jsonschema
    import yaml

    with open(os.path.join(REPO, "config", "schema.yaml")) as f:
        defs = yaml.safe_load(f)["$defs"]
    return jsonschema.Draft202012Validator({"$defs": defs, "$ref": "#/$defs/run"})


def _check_run_values(settings, where):
    """Check one setting of a `grid:` as the schema checks `run:` (types, ranges, choices)."""
    for error in _run_validator().iter_errors(settings):
        raise WorkflowError(f"{where}: {error.message}")


def _name_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (list, tuple)):
        return "_".join(map(_name_value, value))
    return "none" if value is None else str(value)


def variant_name(settings):
    """The directory name of one setting of a sweep, stable under reordering the `grid:` keys.

    Keys in alphabetical order joined by "-"; a number follows its key directly (rho10), other
    values after "_" (init_demo, tau2_100): init_demo-rho10-scaling_sample-tau2_100."""
    parts = []
    for key in sorted(settings):
        value = settings[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        parts.append(f"{key}{'' if number and not key[-1].isdigit() else '_'}{_name_value(value)}")
    return re.sub(r"[^A-Za-z0-9._+-]", ".", "-".join(parts))


def _variants(exp, where):
    """[(variant name, settings)]: the cartesian product of the experiment's `grid:` lists, or
    [("", {})] (one plain run per point) without one."""
    grid = exp.get("grid") or {}
    if not grid:
        return [("", {})]
    _check_run_keys(grid, f"{where} `grid`")
    both = sorted(set(grid) & set(exp["run"]))
    if both:
        raise WorkflowError(f"{where}: {', '.join(both)} set in both `run` and `grid`; keep one")
    keys = sorted(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        settings = dict(zip(keys, values))
        _check_run_values(settings, f"{where} `grid`")
        out.append((variant_name(settings), settings))
    return out


def _point(key):
    """A grid key as dataset/model/method/n/seed[/variant], for messages."""
    return "/".join(str(k) for k in key if k != "")


def _expand_grid(cfg):
    """{(dataset, model, method, splits, seed, variant): job} over every experiment of the config
    (variant "" for an experiment without a `grid:`)."""
    _check_run_keys(cfg["run"], "config `run`")
    grid = {}
    for i, exp in enumerate(cfg["experiments"]):
        label = exp.get("name") or f"exp{i}"
        where = f"experiment `{label}`"
        _check_run_keys(exp["run"], f"{where} `run`")
        for variant, sweep in _variants(exp, where):
            _expand_variant(grid, exp, label, variant, sweep, {**cfg["run"], **exp["run"], **sweep})
    return grid


def _expand_variant(grid, exp, label, variant, sweep, run):
    """Add the points of one experiment under one setting of its `grid:` to ``grid``."""
    where = f"experiment `{label}`"
    blocks = num_blocks(exp["model"], run)
    for dataset in exp["datasets"]:
        for method in exp["methods"]:
            levels = [1] if method in BACKPROP else exp["splits"]
            for n in levels:
                if blocks is not None and n > blocks:
                    raise WorkflowError(
                        f"{where}: split level n={n} exceeds the {blocks} blocks of model `{exp['model']}`; "
                        f"use splits between 1 and {blocks}"
                    )
                for seed in exp["seeds"]:
                    key = (dataset, exp["model"], method, n, seed, variant)
                    workers = max(1, min(exp["workers"], n))
                    job = {
                        "experiment": label,
                        "variant": sweep,
                        "settings": {
                            "dataset": dataset, "model": exp["model"], "method": method, "splits": n,
                            "seed": seed, "epochs": exp["epochs"], **run,
                        },
                        "workers": workers,
                        "gpus": exp["gpus"] * workers,
                        "rank_threads": run.get("threads") or 1,
                        "mem_mb": exp.get("mem_mb"),
                        "runtime": exp.get("runtime"),
                    }
                    if key in grid and grid[key]["settings"] != job["settings"]:
                        raise WorkflowError(
                            f"grid point {_point(key)} is defined twice with different settings "
                            f"(experiments `{grid[key]['experiment']}` and `{label}`); make them agree or "
                            f"drop it from one of them"
                        )
                    grid.setdefault(key, job)


GRID = _expand_grid(config)


ALL_RUNS = [f"{layout.run_dir(RESULTS, *key)}/run.json" for key in sorted(GRID, key=lambda k: tuple(map(str, k)))]
DATASETS = sorted({key[0] for key in GRID})
HAS_VARIANTS = any(key[5] for key in GRID)
FIGURE_STEMS = ["figure1_train_acc", "figure2_speed", "acc_vs_splits", "time_to_target", "speedup"]
FIGURE_STEMS += ["sweep"] if HAS_VARIANTS else []  # final accuracy per variant, only for a sweep
FIGURE_FILES = [f"{FIGDIR}/{stem}.{ext}" for stem in FIGURE_STEMS for ext in ("png", "pdf")]


def grid_job(wc):
    key = (wc.dataset, wc.model, wc.method, int(wc.splits), int(wc.seed), wc.variant.lstrip("/"))
    try:
        return GRID[key]
    except KeyError:
        raise WorkflowError(f"{_point(key)} is not a point of the grid of config `{NAME}`") from None


def _flag(key, value):
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return [flag, "true" if value else "false"]
    if isinstance(value, (list, tuple)):
        return [flag, *map(str, value)]
    return [flag, str(value)]


def train_flags(wc):
    """The `tssm train` flags of one grid point: its whole RunConfig except out/threads.

    A param of the train rule, so Snakemake re-runs a point whose settings change."""
    job = grid_job(wc)
    args = []
    for key, value in sorted(job["settings"].items()):
        if value is None or key == "threads":
            continue
        args += _flag(key, value)
    args += ["--data-root", DATA_ROOT, "--download", "false", "--tracking-uri", TRACKING_URI,
             "--experiment", EXPERIMENT]
    return " ".join(shlex.quote(a) for a in args)


def run_tags(wc):
    """Extra MLflow tags of a run, as the YAML mapping `tssm train --config` reads.

    (A file rather than `--tags KEY=VALUE`, which the CLI parses as a plain string.)"""
    job = grid_job(wc)
    tags = {"pipeline_config": NAME, "grid": job["experiment"], "workers": str(job["workers"])}
    if job["variant"]:  # one setting of a sweep: its name, and each swept field (variant.rho = 10)
        tags["variant"] = wc.variant.lstrip("/")
        tags.update({f"variant.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in job["variant"].items()})
    return json.dumps({"tags": tags}, sort_keys=True)


def launcher(wc):
    """`python -m tssm`, or torchrun with one rank per worker when the point has workers > 1."""
    return layout.launch_command(PYTHON, grid_job(wc)["workers"])


def job_threads(wc):
    job = grid_job(wc)
    return job["workers"] * job["rank_threads"]


def job_resource(name, default=None):
    def get(wc):
        value = grid_job(wc).get(name)
        return default if value is None else value
    return get


def data_marker(dataset):
    return f"{DATA_ROOT}/.prepared/{dataset}.json"
