"""The pipeline's grid: a pipeline config (config/*.yaml) expanded into training runs.

A config is validated against ``config/schema.yaml`` (filled in from the package's
declarations, defaults set), then each experiment expands into points: datasets x methods x
split levels x seeds, times the variants of its ``grid:``, or its tuning trials and final
runs; ``cores:`` budgets decide ranks and threads (:func:`equal_resources`). Every point is
then checked by the code ``tssm train`` runs on its ``point.yaml`` (:func:`check_point`), so
a plan that trains nothing it would refuse is refused while planning, with the same words.

The Snakefile reads a :class:`Grid` (``workflow/rules/common.smk``), ``tssm plan CONFIG``
prints one, and the tests build them in-process.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import yaml

from . import layout
from .config import PIPELINE_FIELDS, RunConfig, method_class, pipeline_schema, reads, setting_owners
from .errors import ConfigError
from .tuning import plan_trials

#: The pipeline config schema this checkout ships (methods and `run:` settings filled in from
#: the package by :func:`tssm.config.pipeline_schema`).
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"

#: Snakemake's job resources where an experiment sets none (mem_mb in MB, runtime in minutes).
DEFAULT_MEM_MB = 4000
DEFAULT_RUNTIME = 60


# ------------------------------------------------------------------------------ the config
@functools.lru_cache(maxsize=4)
def schema(path: str | Path = SCHEMA_FILE) -> dict[str, Any]:
    """The pipeline config schema (read once; not to be modified)."""
    try:
        base = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read the pipeline schema {path}: {e.strerror}; run from a checkout") from None
    return pipeline_schema(base)


def _where(path) -> str:
    """A JSON path as the config writes it: experiments[0].run"""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def _defaults_validator(schema_: dict[str, Any]):
    """A Draft 2020-12 validator that also fills in each property's ``default`` (as
    Snakemake's ``validate(set_default=True)`` does)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties(validator, props, instance, sch):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub and key not in instance:
                    instance[key] = json.loads(json.dumps(sub["default"]))
        yield from check_properties(validator, props, instance, sch)

    return jsonschema.validators.extend(base, {"properties": properties})(schema_)


def _error_text(error, schema_: dict[str, Any]) -> str:
    """One line for a schema error: where, what, and the closest known name for a typo."""
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        parts = []
        for key in extra:
            if key in PIPELINE_FIELDS and where.endswith("run"):
                parts.append(f"'{key}' was unexpected: `{key}` is set by the pipeline, not in `run:`; use the "
                             f"experiment's datasets/model/methods/splits/seeds/epochs or the top-level "
                             f"data_root/tracking_uri/experiment")
                continue
            close = get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})" if known else ""
            parts.append(f"'{key}' was unexpected{hint}")
        return f"{where}: unknown key: " + "; ".join(parts)
    if error.validator == "enum" and isinstance(error.instance, str):
        close = get_close_matches(error.instance, [str(v) for v in error.validator_value], n=1)
        if close:
            return f"{where}: {error.message} (did you mean '{close[0]}'?)"
    return f"{where}: {error.message}"


def validate_config(config: dict[str, Any], schema_: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check ``config`` against the schema and fill in its defaults (in place); the first
    problem as one line (ConfigError), an unknown key with the closest known name."""
    import jsonschema

    schema_ = schema_ or schema()
    validator = _defaults_validator(schema_)
    errors = list(validator.iter_errors(config))
    if errors:
        # an unknown name first (an unknown method makes its settings unknown keys), then an
        # unknown key (a typo), then jsonschema's best guess
        named = [e for e in errors if e.validator == "enum"] + [e for e in errors if e.validator == "additionalProperties"]
        first = named[0] if named else jsonschema.exceptions.best_match(errors)
        raise ConfigError(f"Error validating config file at {_error_text(first, schema_)}")
    return config


# ------------------------------------------------------------------------------ points
@dataclass
class Point:
    """One training run of the grid: its place, its settings and what its job needs."""

    key: tuple  # (dataset, model, method, splits, seed, cores, variant): see tssm.layout.AXES
    experiment: str
    settings: dict[str, Any]  # the flat keys of `tssm train` (those its method reads)
    workers: int  # ranks (torchrun when > 1)
    rank_threads: int
    gpus: int  # of the whole job
    cores: int | None = None
    mem_mb: int = DEFAULT_MEM_MB
    runtime: int = DEFAULT_RUNTIME
    sweep: dict[str, Any] = field(default_factory=dict)  # the variant's settings
    trial: bool = False  # a tuning trial: it feeds the selection, not the summary

    @property
    def threads(self) -> int:
        return self.workers * self.rank_threads

    def folder(self, results: str) -> str:
        return layout.run_dir(results, *self.key)

    def name(self) -> str:
        """The point's folder below runs/, for messages."""
        return self.folder("").split("/runs/", 1)[1]

    def point_yaml(self, *, config_name: str, data_root: str, tracking_uri: str, experiment: str) -> str:
        """Everything ``tssm train`` needs but --out (``tssm train --config point.yaml``): the
        point's settings, where data and MLflow live, and its MLflow tags."""
        tags = {"pipeline_config": config_name, "grid": self.experiment, "workers": str(self.workers)}
        if self.cores:  # an equal-resources budget (its run folder .../cores<C>/)
            tags["cores"] = str(self.cores)
        if self.sweep:  # one setting of a sweep: its name, and each swept field (variant.rho = 10)
            tags["variant"] = self.key[6]
            tags.update({f"variant.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in self.sweep.items()})
        point = {**self.settings, "threads": self.rank_threads, "data_root": data_root, "download": False,
                 "tracking_uri": tracking_uri, "experiment": experiment, "tags": tags}
        return yaml.safe_dump(point, sort_keys=True)


def check_point(settings: dict[str, Any]) -> RunConfig:
    """What ``tssm train --config point.yaml`` refuses before it trains, refused now with its
    words: the config (:meth:`RunConfig.from_dict`), the split level and cuts against the
    model's blocks, the rows against the dataset's. A ``tuned`` point is checked without the
    selection it reads when it starts."""
    from .data import check_rows
    from .models import num_blocks
    from .split import check_cuts, check_splits

    values = {k: v for k, v in settings.items() if k not in ("preset", "tuned_file")} \
        if settings.get("preset") == "tuned" else settings
    cfg = RunConfig.from_dict(values, source="the point")
    blocks = num_blocks(cfg.model, depth=cfg.depth, residual_blocks=cfg.residual_blocks)
    check_splits(cfg.splits, blocks)
    if cfg.cuts:
        check_cuts(cfg.cuts, cfg.splits, blocks)
    check_rows(cfg.dataset, cfg.n_train, cfg.n_test)
    return cfg


def equal_resources(cores: int, splits: int, end_to_end: bool) -> tuple[int, int]:
    """(ranks, threads per rank) of a run given ``cores`` cores: a method that splits the network
    runs one rank per subnetwork (at most one per core, contiguous groups beyond that) and shares
    the cores among them; an end-to-end method (sgd, adam) runs one process with every core as a
    thread. So every run of a comparison uses the same cores, however it uses them."""
    ranks = 1 if end_to_end else max(1, min(splits, cores))
    return ranks, max(1, cores // ranks)


def launch_command(python: str, workers: int, module: str = "tssm") -> str:
    """``python -m tssm``, or torchrun with one rank per worker (on this machine) when
    ``workers`` > 1: how the pipeline and the benchmarks start a run."""
    py = shlex.quote(python)
    if workers > 1:
        return f"{py} -m torch.distributed.run --standalone --nproc-per-node {workers} -m {module}"
    return f"{py} -m {module}"


def _name_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (list, tuple)):
        return "_".join(map(_name_value, value))
    return "none" if value is None else str(value)


def variant_name(settings: dict[str, Any]) -> str:
    """The folder name of one setting of a sweep, stable under reordering the `grid:` keys.

    Keys in alphabetical order joined by "-"; a number follows its key directly (rho10), other
    values after "_" (init_demo, tau2_100): init_demo-rho10-scaling_sample-tau2_100."""
    parts = []
    for key in sorted(settings):
        value = settings[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        parts.append(f"{key}{'' if number and not key[-1].isdigit() else '_'}{_name_value(value)}")
    return re.sub(r"[^A-Za-z0-9._+-]", ".", "-".join(parts))


# ------------------------------------------------------------------------------ the grid
def _check_figure_preset(key: str, preset: str, have: list[str]) -> None:
    """Refuse a figures preset (``key``) that no run of the config has (the figures would be empty)."""
    if preset not in have:
        runs = f"its runs have {', '.join(have)}" if have else "no run of it sets a preset"
        raise ConfigError(f"config `figures.{key}: {preset}` names no preset of this config ({runs}); "
                          f"run that preset in an experiment's `grid: {{preset: [{preset}]}}` or drop the key")


class Grid:
    """Every point of a validated pipeline config, keyed by ``layout.AXES``."""

    def __init__(self, config: dict[str, Any], tuned_file: str):
        self.config = config
        self.tuned_file = tuned_file  # what the final runs of a tuned experiment read
        self.points: dict[tuple, Point] = {}
        _check_run_keys(config["run"], "config `run`")
        names = [exp.get("name") or f"exp{i}" for i, exp in enumerate(config["experiments"])]
        only = config.get("only")
        unknown = sorted(set(only or ()) - set(names))
        if unknown:
            raise ConfigError(f"config `only` names no experiment {unknown[0]!r}: this config's experiments are "
                              f"{', '.join(names)}")
        for name, exp in zip(names, config["experiments"]):
            if only is None or name in only:
                self._add_experiment(exp, name)
        figures = {k: v for k, v in (config.get("figures") or {}).items() if k in ("preset", "figure1_preset") and v}
        if figures:  # checked on the whole config: `only` may leave that preset's runs out
            have = (self if only is None else Grid({**config, "only": None}, tuned_file)).presets
            for k, preset in figures.items():
                _check_figure_preset(k, preset, have)

    # ---------------------------------------------------------------- reading it
    def runs(self) -> list[Point]:
        """The points the summary and figures read (no tuning trials), in folder order."""
        return [p for p in self._sorted() if not p.trial]

    def trials(self) -> list[Point]:
        return [p for p in self._sorted() if p.trial]

    def _sorted(self) -> list[Point]:
        return [self.points[k] for k in sorted(self.points, key=lambda k: tuple(map(str, k)))]

    @property
    def presets(self) -> list[str]:
        """The presets the runs (not the trials) name."""
        return sorted({str(p.settings["preset"]) for p in self.runs() if p.settings.get("preset")})

    @property
    def datasets(self) -> list[str]:
        return sorted({k[0] for k in self.points})

    @property
    def has_variants(self) -> bool:
        return any(p.key[6] for p in self.runs())

    def point(self, dataset: str, model: str, method: str, splits: int, seed: int, cores: int | None,
              variant: str) -> Point:
        key = (dataset, model, method, int(splits), int(seed), cores, variant)
        try:
            return self.points[key]
        except KeyError:
            raise ConfigError(f"{layout.run_dir('', *key).split('/runs/', 1)[1]} is not a point of the grid of "
                              f"config `{self.config['name']}`") from None

    def cost(self) -> dict[str, Any]:
        """What the plan asks for: jobs, GPUs per job (count of jobs each), the sum of the
        runtime limits (minutes) and of GPU-minutes."""
        points = list(self.points.values())
        gpus: dict[int, int] = {}
        for p in points:
            gpus[p.gpus] = gpus.get(p.gpus, 0) + 1
        return {"jobs": len(points), "trials": sum(p.trial for p in points), "gpus_per_job": dict(sorted(gpus.items())),
                "runtime_min": sum(p.runtime for p in points), "gpu_min": sum(p.runtime * p.gpus for p in points),
                "cuda": sorted({p.settings.get("device", "cpu") for p in points if
                                str(p.settings.get("device", "")).startswith("cuda")})}

    def gpu_shortfall(self, have: int) -> str | None:
        """Why this grid cannot run on a machine with ``have`` GPUs (None if it can)."""
        need = max((p.gpus for p in self.points.values()), default=0)
        if have >= need and (have or not self.cost()["cuda"]):
            return None
        return (f"config `{self.config['name']}` asks for device cuda and up to {max(need, 1)} GPU(s) per job, but "
                f"this machine shows {have}; run it on a cluster (--workflow-profile profiles/slurm) or set "
                f"`device: cpu` and `gpus: 0`")

    # ---------------------------------------------------------------- building it
    def _add_experiment(self, exp: dict[str, Any], label: str) -> None:
        where = f"experiment `{label}`"
        _check_run_keys(exp["run"], f"{where} `run`")
        _check_cores(exp, where)
        run = {**self.config["run"], **exp["run"]}
        if exp.get("tuning"):
            self._add_tuning(exp, label, run, where)
            return
        for variant, sweep in _variants(exp, where):
            self._add_variant(exp, label, sweep, {**run, **sweep})

    def _add_tuning(self, exp: dict[str, Any], label: str, run: dict[str, Any], where: str) -> None:
        """Per dataset/method/n, `trials` runs of `tuning.epochs` on seed `tuning.seed` (each one
        setting drawn from `tuning.space`, the same count for every method; variant folders
        named by their settings), then the experiment's seeds at full length with
        `preset: tuned`, which reads the selection (``tuned_file``) when it starts."""
        t = exp["tuning"]
        if exp.get("grid"):
            raise ConfigError(f"{where}: `grid` and `tuning` both set; the tuning draws the settings itself")
        if not run.get("val_fraction"):
            raise ConfigError(f"{where}: `tuning` selects on the validation split: set `val_fraction` in `run:` "
                              f"(e.g. 0.2)")
        for method in exp["methods"]:
            try:
                points = plan_trials(t["space"], method, reads(method) - set(run), t["trials"], t["seed"])
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            trial_exp = {**exp, "methods": [method], "seeds": [t["seed"]], "epochs": t["epochs"]}
            for point in points:
                self._add_variant(trial_exp, label, point, {**run, **point}, trial=True)
        self._add_variant(exp, label, {}, {**run, "preset": "tuned", "tuned_file": self.tuned_file})

    def _add_variant(self, exp: dict[str, Any], label: str, sweep: dict[str, Any], run: dict[str, Any],
                     trial: bool = False) -> None:
        """The points of one experiment under one setting of its `grid:`. Each run gets only the
        settings its method reads: a gsAM run drops `rho`, so the variants that differ only in
        `rho` are one gsAM job (named without it), and a change to `rho` re-runs no Adam job."""
        where = f"experiment `{label}`"
        for dataset, method in itertools.product(exp["datasets"], exp["methods"]):
            own = reads(method)
            method_sweep = {k: v for k, v in sweep.items() if k in own}
            end_to_end = method_class(method).end_to_end
            for n in [1] if end_to_end else exp["splits"]:
                if exp.get("cores"):
                    workers, threads = equal_resources(exp["cores"], n, end_to_end)
                else:
                    workers, threads = max(1, min(exp.get("workers", 1), n)), run.get("threads") or 1
                for seed in exp["seeds"]:
                    settings = {"dataset": dataset, "model": exp["model"], "method": method, "splits": n,
                                "seed": seed, "epochs": exp["epochs"], **{k: v for k, v in run.items() if k in own}}
                    key = (dataset, exp["model"], method, n, seed, exp.get("cores"),
                           variant_name(method_sweep) if method_sweep else "")
                    point = Point(key, label, settings, workers, threads, exp["gpus"] * workers, exp.get("cores"),
                                  exp.get("mem_mb") or DEFAULT_MEM_MB, exp.get("runtime") or DEFAULT_RUNTIME,
                                  method_sweep, trial)
                    self._add(point, where)

    def _add(self, point: Point, where: str) -> None:
        old = self.points.get(point.key)
        if old is None:
            try:
                check_point({**point.settings, "threads": point.rank_threads})
            except ConfigError as e:
                raise ConfigError(f"{where}, {point.name()}: {e}") from None
            self.points[point.key] = point
        elif (old.settings, old.workers, old.rank_threads) != (point.settings, point.workers, point.rank_threads):
            raise ConfigError(f"grid point {point.name()} is defined twice with different settings (experiments "
                              f"`{old.experiment}` and `{point.experiment}`); make them agree or drop it from "
                              f"one of them")


def _check_run_keys(run: dict[str, Any], where: str) -> None:
    """Reject unknown or pipeline-owned keys in a `run:` (or `grid:`) mapping, naming the fix."""
    known = setting_owners()
    for key in run:
        if key in PIPELINE_FIELDS:
            raise ConfigError(f"{where}: `{key}` is set by the pipeline, not in `run:` — use the experiment's "
                              f"datasets/model/methods/splits/seeds/epochs, or the top-level "
                              f"data_root/tracking_uri/experiment.")
        if key not in known:
            close = get_close_matches(key, sorted(known), n=1)
            raise ConfigError(f"{where}: unknown run setting `{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))


def _check_cores(exp: dict[str, Any], where: str) -> None:
    """`cores:` decides ranks and threads itself (:func:`equal_resources`): refuse an
    experiment that also sets them, naming the fix."""
    if exp.get("cores") is None:
        return
    if "workers" in exp:
        raise ConfigError(f"{where}: `cores` and `workers` both set; `cores: C` already runs one rank per "
                          f"subnetwork (at most C), drop `workers`")
    for part in ("run", "grid"):
        if "threads" in (exp.get(part) or {}):
            raise ConfigError(f"{where}: `threads` in `{part}` with `cores`; `cores: C` gives each run C cores "
                              f"(ranks x threads), drop `threads`")


def _variants(exp: dict[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    """[(variant name, settings)]: the cartesian product of the experiment's `grid:` lists, or
    [("", {})] (one plain run per point) without one. Each value is checked as `run:`'s are."""
    grid = exp.get("grid") or {}
    if not grid:
        return [("", {})]
    _check_run_keys(grid, f"{where} `grid`")
    both = sorted(set(grid) & set(exp["run"]))
    if both:
        raise ConfigError(f"{where}: {', '.join(both)} set in both `run` and `grid`; keep one")
    import jsonschema

    sch = schema()
    check = jsonschema.Draft202012Validator({"$defs": sch["$defs"], "$ref": "#/$defs/run"})
    keys = sorted(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        settings = dict(zip(keys, values))
        for error in check.iter_errors(settings):
            raise ConfigError(f"{where} `grid`: {error.message}")
        out.append((variant_name(settings), settings))
    return out


def load(config: dict[str, Any], *, tuned_file: str | None = None) -> Grid:
    """The grid of a pipeline config (a mapping as read from YAML; validated and given its
    defaults in place)."""
    validate_config(config)
    results = f"{config['results']}/{config['name']}"
    return Grid(config, tuned_file or f"{results}/tuned.yaml")


# ------------------------------------------------------------------------------ tssm plan
def plan_text(grid: Grid) -> str:
    """The grid as a table (one line per point) and what it costs."""
    rows = [("point", "experiment", "ranks x threads", "gpus", "runtime")]
    for p in grid.trials() + grid.runs():
        rows.append((p.name() + (" (trial)" if p.trial else ""), p.experiment, f"{p.workers} x {p.rank_threads}",
                     str(p.gpus), f"{p.runtime} min"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines + ["", cost_text(grid)]) + "\n"


def cost_text(grid: Grid) -> str:
    """One line: jobs, GPUs per job, the sum of runtime limits (and of GPU-hours)."""
    c = grid.cost()
    gpus = ", ".join(f"{n} job{'s' if n != 1 else ''} x {g} GPU{'s' if g != 1 else ''}"
                     for g, n in c["gpus_per_job"].items())
    trials = f" ({c['trials']} tuning trials)" if c["trials"] else ""
    return (f"plan of `{grid.config['name']}`: {c['jobs']} training jobs{trials}; {gpus}; runtime limits add up to "
            f"{c['runtime_min'] / 60:.1f} h ({c['gpu_min'] / 60:.1f} GPU-hours)")


def main(argv: list[str] | None = None, prog: str = "tssm plan") -> int:
    """``tssm plan CONFIG``: the training runs a pipeline config expands into, and their cost."""
    ap = argparse.ArgumentParser(prog=prog, description="The training runs a pipeline config expands into (one "
                                 "line each) and what they cost, without running anything.")
    ap.add_argument("config", help="a pipeline config (config/*.yaml)")
    ap.add_argument("--summary", action="store_true", help="only the cost line")
    a = ap.parse_args(argv)
    try:
        path = Path(a.config)
        if not path.is_file():
            raise ConfigError(f"pipeline config {path} does not exist or is not a file")
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"pipeline config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(config, dict):
            raise ConfigError(f"pipeline config {path} must hold a mapping, got {type(config).__name__}")
        grid = load(config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(cost_text(grid) + "\n" if a.summary else plan_text(grid))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
