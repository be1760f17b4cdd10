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


def select(rows: list[dict[str, Any]], metric: str = SELECT_ON) -> list[dict[str, Any]]:
    """Per dataset/model/method/n, the finished trial with the best ``metric`` (ties: the
    earlier trial), with its settings: one dict per group, in the order groups first appear.

    ``rows`` are summary rows (dicts) of the trials, each with ``variant`` (the trial's folder)
    and ``settings`` (what the trial set)."""
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
                         "settings": dict(r["settings"])}
    missing = [k for k in counts if k not in best]
    if missing:
        raise ConfigError("tuning: no trial finished for " + ", ".join("/".join(map(str, k)) for k in missing)
                          + "; look at their run.json (status, reason)")
    return [{**best[k], "trials": counts[k]} for k in counts]


def write_selection(selected: list[dict[str, Any]], path: str | Path) -> None:
    import yaml

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump({"selected_on": SELECT_ON, "selection": selected}, sort_keys=False))


def trial_rows(run_files: list[str]) -> list[dict[str, Any]]:
    """Summary rows of the trial runs, each with the settings its trial drew (its variant's)."""
    from .reporting.records import load_run
    from .reporting.rows import summary_row

    rows = []
    for f in run_files:
        run = load_run(Path(f).parent)
        row = summary_row(run)
        row["settings"] = {k: run.config.get(k) for k in run.sweep}
        rows.append(row)
    return rows


def selection_markdown(rows: list[dict[str, Any]], selected: list[dict[str, Any]]) -> str:
    """Every trial, best first within each dataset/model/method/n; the selected one in bold."""
    chosen = {(s["dataset"], s["model"], s["method"], int(s["splits"])): s["trial"] for s in selected}
    lines = [f"# Tuning: every trial, selected on {SELECT_ON} (the validation split)\n",
             "| dataset | model | method | n | settings | status | val acc | train acc | epochs |",
             "|---|---|---|---:|---|---|---:|---:|---:|"]
    key = lambda r: (r["dataset"], r["model"], r["method"], int(r["splits"]))  # noqa: E731
    for r in sorted(rows, key=lambda r: (*key(r), -_nan_low(r.get(SELECT_ON)))):
        text = ", ".join(f"{k}={v}" for k, v in sorted(r["settings"].items()))
        if chosen.get(key(r)) == r["variant"]:
            text = f"**{text}** (selected)"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['method']} | {int(r['splits'])} | {text} | {r['status']} | "
                     f"{_num(r.get(SELECT_ON)):.4f} | {_num(r.get('final_train_acc')):.4f} | {r.get('epochs_done')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m tssm.tuning RUN.json... --out tuned.yaml --md tuning.md``: select and write."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tssm.tuning", description=main.__doc__)
    ap.add_argument("runs", nargs="+", help="run.json of every trial")
    ap.add_argument("--out", required=True, help="the selection (what preset 'tuned' reads)")
    ap.add_argument("--md", help="a table of every trial")
    a = ap.parse_args(argv)
    rows = trial_rows(a.runs)
    selected = select(rows)
    write_selection(selected, a.out)
    if a.md:
        Path(a.md).write_text(selection_markdown(rows, selected))
    for s in selected:
        print(f"{s['dataset']}/{s['model']}/{s['method']}/n{s['splits']}: {s['settings']} "
              f"({SELECT_ON} {s['score']:.4f}, best of {s['trials']})")
    return 0


def _nan_low(x: Any) -> float:
    v = _num(x)
    return -1.0 if math.isnan(v) else v


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


if __name__ == "__main__":
    raise SystemExit(main())
