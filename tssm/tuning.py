"""The tuning protocol: the same number of trials for every method, chosen from a declared
search space, selected on the validation split (never the test set).

A search space maps settings to candidate values; a key named after a method holds that
method's own space, which replaces the shared one for the keys it names (dlADMM's rho is not
gsADMM's). Each method draws its trials from the candidates of the settings it reads (a
seeded sample without replacement from their product), so the budget is a count of runs,
the same for every method; a method with fewer candidate points than trials is refused
while planning. :func:`select` then keeps, per dataset/model/method/n, the trial with the best
final validation accuracy; ``preset: tuned`` reads that selection back (``tuned_file``).

Torch-free: the pipeline plans with it.
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: What trials are compared on: the last epoch's validation accuracy.
SELECT_ON = "final_val_acc"


def method_space(space: dict[str, Any], method: str, readable: set[str]) -> dict[str, list]:
    """The candidates of ``method``: the shared keys it reads, overridden by its own section."""
    from .config import method_names

    methods = set(method_names())
    shared = {k: v for k, v in space.items() if k not in methods}
    own = space.get(method) or {}
    merged = {**shared, **own}
    unknown = sorted(k for k in own if k not in readable)
    if unknown:
        raise ConfigError(f"tuning.space.{method} names {', '.join(unknown)}, which {method} does not read")
    return {k: list(v) for k, v in merged.items() if k in readable}


def plan_trials(space: dict[str, Any], method: str, readable: set[str], trials: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` distinct settings of ``method`` from its space (the same draw every time)."""
    candidates = method_space(space, method, readable)
    if not candidates:
        raise ConfigError(f"tuning: the search space has no setting that {method} reads; add one (e.g. lr) so it "
                          f"gets its {trials} trials like every other method")
    keys = sorted(candidates)
    points = [dict(zip(keys, values)) for values in itertools.product(*(candidates[k] for k in keys))]
    if len(points) < trials:
        raise ConfigError(f"tuning: {method} has {len(points)} candidate settings ({', '.join(keys)}) but every "
                          f"method gets {trials} trials; add values to its space or lower tuning.trials")
    return random.Random(f"{seed}/{method}").sample(points, trials)


def select(rows: list[dict[str, Any]], settings: dict[str, list[str]], metric: str = SELECT_ON) -> list[dict[str, Any]]:
    """Per dataset/model/method/n, the finished trial with the best ``metric`` (ties: the
    earlier trial), with its settings: one dict per group, in the order groups first appear.

    ``rows`` are summary rows (dicts) of the trials, each with a ``variant`` naming the trial;
    ``settings`` maps a variant to the names of the settings that trial set."""
    best: dict[tuple, dict[str, Any]] = {}
    counts: dict[tuple, int] = {}
    for r in rows:
        key = (r["dataset"], r["model"], r["method"], int(r["splits"]))
        counts[key] = counts.get(key, 0) + 1
        value = _num(r.get(metric))
        if r.get("status") != "finished" or math.isnan(value):
            continue
        if key not in best or value > best[key]["score"]:
            best[key] = {"dataset": key[0], "model": key[1], "method": key[2], "splits": key[3],
                         "trial": r["variant"], "score": value,
                         "settings": {k: r[k] for k in settings[r["variant"]]}}
    missing = [k for k in counts if k not in best]
    if missing:
        raise ConfigError("tuning: no trial finished for " + ", ".join("/".join(map(str, k)) for k in missing)
                          + "; look at their run.json (status, reason)")
    return [{**best[k], "trials": counts[k]} for k in counts]


def write_selection(selected: list[dict[str, Any]], path: str | Path) -> None:
    import yaml

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump({"selected_on": SELECT_ON, "selection": selected}, sort_keys=False))


def tuned_values(path: str | Path, dataset: str, model: str, method: str, splits: int) -> dict[str, Any]:
    """The settings the tuning selected for one grid point (``preset: tuned``)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"preset 'tuned' reads the tuning's selection from {p}, which does not exist; run the "
                          f"pipeline's tuning first (a config with a `tuning:` section) or set tuned_file")
    for s in (yaml.safe_load(p.read_text()) or {}).get("selection", []):
        if (s["dataset"], s["model"], s["method"], int(s["splits"])) == (dataset, model, method, int(splits)):
            return dict(s["settings"])
    raise ConfigError(f"{p} holds no tuned settings for {dataset}/{model}/{method}/n{splits}; tune that point "
                      f"first or choose another preset")


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan
