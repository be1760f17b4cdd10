# Configuration: validation, the job grid, paths and the command lines of the rules.
#
# The grid is computed here once, from the validated config; every rule and `rule all`
# read it. What a method is and which settings it reads come from the tssm package of this
# checkout (tssm.config, tssm.solvers); the run layout and block counts from tssm.layout.

import hashlib
import itertools
import json
import os
import re
import shlex
import sys
import tempfile
from difflib import get_close_matches

import jsonschema
import yaml

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(workflow.basedir))  # this checkout's tssm package
from tssm import layout
from tssm.config import PIPELINE_FIELDS, method_class, pipeline_schema, reads, setting_owners
from tssm.errors import ConfigError
from tssm.tuning import plan_trials


def _schema_file():
    """config/schema.yaml with the methods and the `run:` settings filled in from the package."""
    with open(os.path.join(str(workflow.basedir), "config", "schema.yaml")) as f:
        schema = pipeline_schema(yaml.safe_load(f))
    text = json.dumps(schema, indent=1, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"tssm-schema-{digest}.json")
    with open(path, "w") as f:
        f.write(text)
    return path, schema


SCHEMA_FILE, SCHEMA = _schema_file()
validate(config, schema=SCHEMA_FILE)


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
            raise WorkflowError(
                f"the profile's {where} is still the placeholder {raw}: put your cluster's {key} in "
                f"profiles/slurm/config.yaml (or in the profile you passed)"
            )


_check_profile_placeholders()


NAME = config["name"]
RESULTS = f"{config['results']}/{NAME}"  # everything of this config: runs, summary, figures, report
LOGS = f"logs/{NAME}"
FIGDIR = f"{RESULTS}/figures"
EXPERIMENT = config.get("experiment") or f"tssm-{NAME}"
TRACKING_URI = config["tracking_uri"]
DATA_ROOT = config["data_root"]
REPO = str(workflow.basedir)  # the checkout holding the Snakefile (and the tssm package)
FIGS = config["figures"]
# {variant} is empty for a run without a `grid:` (the plain layout), and a slash followed by
# the variant name for one setting of a sweep: results/<name>/runs/.../seed{seed}/<variant name>/
RUN_DIR = f"{RESULTS}/{layout.RUN_DIR}"
# what the tuning selected (experiments with `tuning:`), read by their final runs (preset: tuned)
TUNED_FILE = f"{RESULTS}/tuned.yaml"
ENV_FILE = "../../envs/tssm.yaml"
SCRIPTS = f"{REPO}/workflow/scripts"  # prepare_data.py, mlflow_experiment.py (via $TSSM_SCRIPTS), summary_html.py


def _uses_conda():
    try:
        methods = workflow.deployment_settings.deployment_method
    except AttributeError:
        return False
    return any(str(getattr(m, "name", m)).upper() == "CONDA" for m in methods)


# The interpreter rules call: explicit config > the conda env's `python` > the one running
# Snakemake (so `.venv/bin/snakemake` works without activating the venv).
#
# Where it lives must not be provenance: moving the venv (or the checkout) must not re-run
# every job, while a changed setting must (params stay a rerun trigger). Snakemake records
# every params value of a job and re-runs it when one changes (rerun trigger `params`), so the
# interpreter's folder is not a param: the rules call it by its bare name (`python3 -m tssm`,
# params.python / params.launcher) and the shell prefix below puts its folder first on PATH.
# `shell.prefix` is Snakemake's documented hook for environment set-up common to all shell
# commands; it is neither a param nor part of a rule's code (the `code` trigger compares the
# rule's own shell command), so a moved venv re-runs nothing. (Snakemake also leaves params
# computed from input/output out of the trigger, but that is undocumented behaviour, reported
# as a bug in snakemake#3895: not relied on here.)
PYTHON = config.get("python") or ("python" if _uses_conda() else sys.executable)
PYTHON_DIR, PYTHON_NAME = os.path.split(PYTHON)


def _shell_prefix():
    """`set -euo pipefail` (Snakemake's default prefix under bash, which setting one replaces),
    then: the interpreter's folder first on PATH (only for a path; a bare name like the conda
    env's `python` is looked up as is), the tssm package of this checkout on PYTHONPATH (it runs
    where it is not pip-installed, e.g. in the conda env), matplotlib without a display, and
    TSSM_SCRIPTS, this checkout's workflow/scripts.

    prepare_data and mlflow_experiment run their script from $TSSM_SCRIPTS rather than taking it
    as an input or a param: their markers are ancient() inputs of every train job, and when such
    a job re-runs (a touched script, a moved checkout), Snakemake 9 also skips the missing-output
    check of the train jobs behind it, so new grid points added in the same call would not run
    (checked with a new seed: 0 train jobs instead of 2). As before, only a missing marker
    re-runs them."""
    env = [
        f"PYTHONPATH={shlex.quote(REPO)}${{PYTHONPATH:+:$PYTHONPATH}}",
        "MPLBACKEND=Agg",
        f"TSSM_SCRIPTS={shlex.quote(SCRIPTS)}",
    ]
    if PYTHON_DIR:
        env.insert(0, f"PATH={shlex.quote(PYTHON_DIR)}:$PATH")
    prefix = f"set -euo pipefail; export {' '.join(env)}; "
    return prefix.replace("{", "{{").replace("}", "}}")  # shell.prefix() formats its argument


shell.prefix(_shell_prefix())


def _check_run_keys(run, where):
    """Reject unknown or pipeline-owned keys in a `run:` mapping, naming the fix."""
    known = setting_owners()
    for key in run:
        if key in PIPELINE_FIELDS:
            raise WorkflowError(
                f"{where}: `{key}` is set by the pipeline, not in `run:` — use the experiment's "
                f"datasets/model/methods/splits/seeds/epochs, or the top-level data_root/tracking_uri/experiment."
            )
        if key not in known:
            close = get_close_matches(key, sorted(known), n=1)
            raise WorkflowError(f"{where}: unknown run setting `{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))


RUN_VALIDATOR = jsonschema.Draft202012Validator({"$defs": SCHEMA["$defs"], "$ref": "#/$defs/run"})


def _check_run_values(settings, where):
    """Check one setting of a `grid:` as the schema checks `run:` (types, ranges, choices)."""
    for error in RUN_VALIDATOR.iter_errors(settings):
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
    """A grid key as its run folder below runs/ (dataset/model/method/n/seed[/cores][/variant]), for messages."""
    return layout.run_dir("", *key).split("/runs/", 1)[1]


def _expand_grid(cfg):
    """{(dataset, model, method, splits, seed, cores, variant): job} over every experiment of the
    config (cores None for an experiment without `cores:`, variant "" without a `grid:`)."""
    _check_run_keys(cfg["run"], "config `run`")
    grid = {}
    for i, exp in enumerate(cfg["experiments"]):
        label = exp.get("name") or f"exp{i}"
        where = f"experiment `{label}`"
        _check_run_keys(exp["run"], f"{where} `run`")
        _check_cores(exp, where)
        if exp.get("tuning"):
            _expand_tuning(grid, exp, label, {**cfg["run"], **exp["run"]}, where)
            continue
        for variant, sweep in _variants(exp, where):
            _expand_variant(grid, exp, label, variant, sweep, {**cfg["run"], **exp["run"], **sweep})
    return grid


#: grid keys of tuning trials: they feed the selection, not the summary and figures
TRIALS = set()


def _expand_tuning(grid, exp, label, run, where):
    """An experiment with `tuning:`: per dataset/method/n, `trials` runs of `tuning.epochs` on
    seed `tuning.seed` (each one setting drawn from `tuning.space`, the same count for every
    method; variant folders named by their settings), then the experiment's seeds at full
    length with `preset: tuned`, which reads the selection (TUNED_FILE) when it starts."""
    t = exp["tuning"]
    if exp.get("grid"):
        raise WorkflowError(f"{where}: `grid` and `tuning` both set; the tuning draws the settings itself")
    if not run.get("val_fraction"):
        raise WorkflowError(f"{where}: `tuning` selects on the validation split: set `val_fraction` in `run:` "
                            f"(e.g. 0.2)")
    for method in exp["methods"]:
        free = reads(method) - set(run)
        try:
            points = plan_trials(t["space"], method, free, t["trials"], t["seed"])
        except ConfigError as e:
            raise WorkflowError(f"{where}: {e}") from None
        trial_exp = {**exp, "methods": [method], "seeds": [t["seed"]], "epochs": t["epochs"]}
        for point in points:
            before = set(grid)
            _expand_variant(grid, trial_exp, label, variant_name(point), point, {**run, **point})
            TRIALS.update(set(grid) - before)
    final = {**run, "preset": "tuned", "tuned_file": TUNED_FILE}
    _expand_variant(grid, exp, label, "", {}, final)


def _check_cores(exp, where):
    """`cores:` decides ranks and threads itself (tssm.layout.equal_resources): refuse an
    experiment that also sets them, naming the fix."""
    if exp.get("cores") is None:
        return
    if "workers" in exp:
        raise WorkflowError(f"{where}: `cores` and `workers` both set; `cores: C` already runs one rank per "
                            f"subnetwork (at most C), drop `workers`")
    for part in ("run", "grid"):
        if "threads" in (exp.get(part) or {}):
            raise WorkflowError(f"{where}: `threads` in `{part}` with `cores`; `cores: C` gives each run C cores "
                                f"(ranks x threads), drop `threads`")


def _resources(exp, method, n, run):
    """(ranks, threads per rank) of one run: from the experiment's `cores:` budget (equal
    resources for every method), else `workers` ranks of the `run:` threads."""
    if exp.get("cores"):
        return layout.equal_resources(exp["cores"], n, method_class(method).end_to_end)
    return max(1, min(exp.get("workers", 1), n)), run.get("threads") or 1


def _expand_variant(grid, exp, label, variant, sweep, run):
    """Add the points of one experiment under one setting of its `grid:` to ``grid``.

    Each run gets only the settings its method reads: a gsAM run drops `rho`, so the variants
    that differ only in `rho` are one gsAM job (named without it), and a change to `rho`
    re-runs no Adam job."""
    where = f"experiment `{label}`"
    for dataset in exp["datasets"]:
        for method in exp["methods"]:
            own = reads(method)
            method_sweep = {k: v for k, v in sweep.items() if k in own}
            method_variant = variant_name(method_sweep) if method_sweep else ""
            levels = [1] if method_class(method).end_to_end else exp["splits"]
            for n in levels:
                problem = layout.check_point(dataset, exp["model"], n, run)
                if problem:  # what `tssm train` would refuse, refused while planning
                    raise WorkflowError(f"{where}, {dataset}/{method}: {problem}")
                workers, threads = _resources(exp, method, n, run)
                for seed in exp["seeds"]:
                    key = (dataset, exp["model"], method, n, seed, exp.get("cores"), method_variant)
                    job = {
                        "experiment": label,
                        "variant": method_sweep,
                        "settings": {
                            "dataset": dataset, "model": exp["model"], "method": method, "splits": n,
                            "seed": seed, "epochs": exp["epochs"], **{k: v for k, v in run.items() if k in own},
                        },
                        "workers": workers,
                        "gpus": exp["gpus"] * workers,
                        "rank_threads": threads,
                        "cores": exp.get("cores"),
                        "mem_mb": exp.get("mem_mb"),
                        "runtime": exp.get("runtime"),
                    }
                    same = ("settings", "workers", "rank_threads")
                    if key in grid and any(grid[key][k] != job[k] for k in same):
                        raise WorkflowError(
                            f"grid point {_point(key)} is defined twice with different settings "
                            f"(experiments `{grid[key]['experiment']}` and `{label}`); make them agree or "
                            f"drop it from one of them"
                        )
                    grid.setdefault(key, job)


GRID = _expand_grid(config)


def _run_files(keys):
    return [f"{layout.run_dir(RESULTS, *key)}/run.json" for key in sorted(keys, key=lambda k: tuple(map(str, k)))]


ALL_RUNS = _run_files(set(GRID) - TRIALS)
TRIAL_RUNS = _run_files(TRIALS)
DATASETS = sorted({key[0] for key in GRID})
HAS_VARIANTS = any(key[6] for key in set(GRID) - TRIALS)
FIGURE_STEMS = layout.figure_stems(HAS_VARIANTS)  # the sweep figure only for a config with variants
FIGURE_FILES = [f"{FIGDIR}/{stem}.{ext}" for stem in FIGURE_STEMS for ext in ("png", "pdf")]


def tuned_input(wc):
    """The selection a final run of a tuned experiment reads (nothing for other runs)."""
    return [TUNED_FILE] if grid_job(wc)["settings"].get("preset") == "tuned" else []


def grid_job(wc):
    cores = int(re.sub(r"\D", "", wc.cores)) if wc.cores else None  # empty, or a cores<C> folder
    key = (wc.dataset, wc.model, wc.method, int(wc.splits), int(wc.seed), cores, wc.variant.lstrip("/"))
    try:
        return GRID[key]
    except KeyError:
        raise WorkflowError(f"{_point(key)} is not a point of the grid of config `{NAME}`") from None


def point_yaml(wc):
    """Everything `tssm train` needs for one grid point but --out, as the YAML of the point's
    `point.yaml` (`tssm train --config point.yaml`): the point's settings (the keys its method
    reads), where data and MLflow live, and its MLflow tags. A param of the train rule, so a
    changed setting re-runs the point."""
    job = grid_job(wc)
    tags = {"pipeline_config": NAME, "grid": job["experiment"], "workers": str(job["workers"])}
    if job["cores"]:  # an equal-resources budget (its run folder .../cores<C>/)
        tags["cores"] = str(job["cores"])
    if job["variant"]:  # one setting of a sweep: its name, and each swept field (variant.rho = 10)
        tags["variant"] = wc.variant.lstrip("/")
        tags.update({f"variant.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in job["variant"].items()})
    point = {**job["settings"], "threads": job["rank_threads"], "data_root": DATA_ROOT, "download": False,
             "tracking_uri": TRACKING_URI, "experiment": EXPERIMENT, "tags": tags}
    return yaml.safe_dump(point, sort_keys=True)


def launcher(wc):
    """`python3 -m tssm`, or torchrun with one rank per worker when the point has workers > 1
    (the interpreter by name: its folder is on PATH through the shell prefix)."""
    return layout.launch_command(PYTHON_NAME, grid_job(wc)["workers"])


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



def figure_report(stem):
    """One figure's PNG, marked for the Snakemake report with its caption, category and label
    from the tssm.layout catalogue (the PDF next to it is for papers, not the report)."""
    caption, category, label = layout.FIGURES[stem]
    return report(
        f"{FIGDIR}/{stem}.png",
        caption=f"../report/{caption}.rst",
        category=category,
        labels={"figure": label},
    )


def parent_dir(wc, output):
    """The folder of a rule's first output (a param derived from the output, so that no path
    prefix is hard-coded in params)."""
    return os.path.dirname(output[0])
