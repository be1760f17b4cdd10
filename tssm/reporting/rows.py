"""One row per run (``summary.csv``): the numbers a run's record gives, and the per-epoch curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..layout import AXES
from ..roles import ROLES
from .records import Run, _num, load_run

#: Columns of ``summary.csv`` (one row per run), in this order; when runs have variants, one
#: column per swept field (``rho``, ``init`` ...) follows ``variant`` (see :func:`sweep_fields`).
#: ``role`` and ``label``: what the method is to tables and figures (:mod:`tssm.roles`).
SUMMARY_COLUMNS = (
    *AXES,
    "role",
    "label",
    "status",
    "workers",
    "threads",
    "layerwise",
    "preset",
    "preset_values",
    "device",
    "epochs",
    "epochs_done",
    "final_train_acc",
    "final_test_acc",
    "final_val_acc",
    "final_train_loss",
    "final_test_loss",
    "sec_per_epoch",
    "train_time_s",
    "wall_time_s",
    "move_1",
    "target_train_acc",
    "time_to_target_s",
    "epoch_to_target",
    "time_to_test_target_s",
    "epoch_to_test_target",
    "reason",
    "config_hash",
    "git_commit",
    "mlflow_run_id",
    "run_dir",
)


def _last(run: Run, col: str) -> float:
    """The last finite value of ``col`` among the training epochs, else run.json's final."""
    m = run.metrics
    if m is not None and col in m:
        s = m[col]
        if "epoch" in m:
            s = s[m["epoch"] >= 1] if (m["epoch"] >= 1).any() else s
        s = s.dropna()
        if len(s):
            return float(s.iloc[-1])
    final = run.info.get("final")
    if isinstance(final, dict) and col in final:
        return _num(final[col])
    return math.nan


def time_to_target(metrics: pd.DataFrame | None, target: float, col: str = "train_acc") -> tuple[float, float]:
    """(training-clock seconds, epoch) of the first epoch whose ``col`` >= ``target``.

    NaN for both when the curve never reaches the target or lacks the columns.
    """
    if metrics is None or col not in metrics or "train_time_s" not in metrics or not len(metrics):
        return math.nan, math.nan
    hit = metrics[metrics[col] >= target]
    if not len(hit):
        return math.nan, math.nan
    row = hit.iloc[0]
    return _num(row["train_time_s"]), _num(row.get("epoch", math.nan))


def setting_text(value: Any) -> str:
    """A setting's value as written in labels: 10.0 -> 10, 0.001 -> 0.001, 'demo' -> demo."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _settings_text(values: Any) -> str | None:
    """{'lr': 0.001, 'rho': 1.0} -> 'lr=0.001, rho=1' (None when there are none)."""
    if not isinstance(values, dict) or not values:
        return None
    return ", ".join(f"{k}={setting_text(v)}" for k, v in sorted(values.items()))


def summary_row(run: Run, target: float = 0.9, fields: Sequence[str] = ()) -> dict[str, Any]:
    """One row of summary.csv; ``fields`` are the swept settings to add (the run's values)."""
    cfg = run.config
    epochs = run.epochs_trained
    train_time = _last(run, "train_time_s")
    if math.isnan(train_time) and run.metrics is not None and "epoch_time_s" in run.metrics:
        train_time = float(run.metrics["epoch_time_s"].dropna().sum()) if run.metrics["epoch_time_s"].notna().any() else math.nan
    t_hit, e_hit = time_to_target(run.metrics, target)
    t_test, e_test = time_to_target(run.metrics, target, "test_acc")
    reason = run.info.get("reason") or run.problem
    env = run.info.get("environment") if isinstance(run.info.get("environment"), dict) else {}
    role, label = run.info.get("role"), run.info.get("label")
    return {
        **{k: run.axes.get(k) for k in AXES},
        **{f: cfg.get(f) for f in fields},
        "role": role if role in ROLES else None,  # None: filled from the registry (methods.fill_roles)
        "label": label if isinstance(label, str) and label else None,
        "status": run.status,
        "workers": env.get("world_size"),
        "threads": env.get("threads_per_rank"),
        "layerwise": bool(run.info.get("layerwise", False)),
        "preset": cfg.get("preset"),
        "preset_values": _settings_text(run.info.get("preset_values")),
        "device": env.get("device") or cfg.get("device"),
        "epochs": cfg.get("epochs"),
        "epochs_done": epochs,
        "final_train_acc": _last(run, "train_acc"),
        "final_test_acc": _last(run, "test_acc"),
        "final_val_acc": _last(run, "val_acc"),
        "final_train_loss": _last(run, "train_loss"),
        "final_test_loss": _last(run, "test_loss"),
        "sec_per_epoch": train_time / epochs if epochs > 0 and not math.isnan(train_time) else math.nan,
        "train_time_s": train_time,
        "wall_time_s": _num(run.info.get("wall_time_s")),
        "move_1": _last(run, "move_1"),
        "target_train_acc": target,
        "time_to_target_s": t_hit,
        "epoch_to_target": e_hit,
        "time_to_test_target_s": t_test,  # the same target in test accuracy (evaluated epochs only)
        "epoch_to_test_target": e_test,
        "reason": reason,
        "config_hash": run.info.get("config_hash"),
        "git_commit": run.info.get("git_commit"),
        "mlflow_run_id": run.info.get("mlflow_run_id"),
        "run_dir": str(run.path),
    }


def summarize(runs: Sequence[Run | str], target: float = 0.9) -> pd.DataFrame:
    """One row per run, sorted by the grid axes: the columns :data:`SUMMARY_COLUMNS` and, after
    ``variant``, every field a variant of these runs sweeps (each run's value, swept or not)."""
    runs = [r if isinstance(r, Run) else load_run(r) for r in runs]
    fields = sorted({f for r in runs for f in r.sweep} - set(SUMMARY_COLUMNS))
    columns = [*AXES, *fields, *SUMMARY_COLUMNS[len(AXES):]]
    df = pd.DataFrame([summary_row(r, target, fields) for r in runs], columns=columns)
    if len(df):
        df = df.sort_values(list(AXES), kind="stable", na_position="last").reset_index(drop=True)
    return df


def load_curves(runs: Sequence[Run], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-epoch metrics of every run in one long table, with the axes and status as columns.

    ``columns`` picks metrics (missing ones become NaN); None keeps all.
    """
    frames = []
    for r in runs:
        if r.metrics is None or not len(r.metrics):
            continue
        m = r.metrics.copy()
        if columns is not None:
            for c in columns:
                if c not in m:
                    m[c] = np.nan
            m = m[[c for c in dict.fromkeys(["epoch", *columns]) if c in m]]
        for k in AXES:
            m[k] = r.axes.get(k)
        m["status"] = r.status
        m["run_dir"] = str(r.path)
        frames.append(m)
    if not frames:
        return pd.DataFrame(columns=["epoch", *(columns or []), *AXES, "status", "run_dir"])
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- what a summary holds
def is_variant(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def has_budgets(summary: pd.DataFrame) -> bool:
    """Whether any run of ``summary`` ran on an equal-resources budget (an experiment's ``cores:``)."""
    return "cores" in summary and bool(pd.to_numeric(summary["cores"], errors="coerce").notna().any())


def presets_of(summary: pd.DataFrame) -> list[str]:
    """The named presets the runs of ``summary`` have (none for a summary without the column)."""
    if "preset" not in summary:
        return []
    return sorted(set(summary["preset"].dropna().astype(str)) - {"", "nan", "None"})


def has_variants(summary: pd.DataFrame) -> bool:
    """Whether any run of ``summary`` is a variant (one setting of a sweep)."""
    return "variant" in summary and bool(summary["variant"].map(is_variant).any())


def sweep_fields(summary: pd.DataFrame) -> list[str]:
    """The swept settings among ``summary``'s columns (those :func:`summarize` adds)."""
    return [c for c in summary.columns if c not in SUMMARY_COLUMNS]
