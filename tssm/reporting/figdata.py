"""What the figures draw from, read once: the coerced summary and the finished runs' curves.

``summary.csv`` (one row per run, :func:`coerce_summary`) and the per-epoch curves of the
finished runs it lists (:func:`read_results`; :func:`from_runs` does the same from loaded
runs). Each figure takes the coerced summary (and the curves, where it draws them) and picks
its runs with :func:`runs_on_budget` and :func:`at_split_level`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..layout import AXES
from . import inputs
from .methods import Methods, fill_roles
from .records import Run, load_runs, read_metrics
from .rows import SUMMARY_COLUMNS, setting_text, summarize, time_to_target

#: Per-epoch metrics the figures read from each finished run's metrics.csv.
CURVE_COLUMNS = ("train_acc", "test_acc", "val_acc", "train_time_s")
#: Columns a summary.csv must have for the figures to read it.
REQUIRED = ("dataset", "model", "method", "splits", "seed", "status", "run_dir")


def coerce_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Give a (possibly older or hand-made) summary every expected column, with numeric types,
    and each method's role and label (from the registry where the csv has none)."""
    s = summary.copy()
    for c in SUMMARY_COLUMNS:
        if c not in s:
            s[c] = np.nan if c not in ("status",) else "finished"
    for c in ("splits", "seed", "cores", "workers", "threads"):
        s[c] = pd.to_numeric(s[c], errors="coerce")
    for c in ("final_train_acc", "final_test_acc", "final_train_loss", "sec_per_epoch", "time_to_target_s",
              "target_train_acc", "move_1"):
        s[c] = pd.to_numeric(s[c], errors="coerce")
    s["status"] = s["status"].fillna("unreadable").astype(str)
    return fill_roles(s)


def _empty_curves() -> pd.DataFrame:
    return pd.DataFrame(columns=["epoch", *CURVE_COLUMNS, *AXES, "run_dir"])


def _curve_rows(metrics: pd.DataFrame | None, axes: dict[str, Any], run_dir: str) -> pd.DataFrame | None:
    """The drawn part of one run's metrics: epochs >= 1 (all rows if it has none), the
    :data:`CURVE_COLUMNS` it has, and its axes."""
    if metrics is None or "epoch" not in metrics or not len(metrics):
        return None
    m = metrics[metrics["epoch"] >= 1] if (metrics["epoch"] >= 1).any() else metrics
    m = m[["epoch", *(c for c in CURVE_COLUMNS if c in m)]].copy()
    for c in CURVE_COLUMNS:
        if c not in m:
            m[c] = np.nan
    for k in AXES:
        v = axes.get(k)
        m[k] = None if (isinstance(v, float) and math.isnan(v)) else v
    m["run_dir"] = run_dir
    return m


def _concat_curves(frames: list[pd.DataFrame | None]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return _empty_curves()
    out = pd.concat(frames, ignore_index=True)
    out["splits"] = pd.to_numeric(out["splits"], errors="coerce")
    return out


def curves_of(runs: Sequence[Run]) -> pd.DataFrame:
    """Long table (epoch, :data:`CURVE_COLUMNS`, axes, run_dir) of the *finished* runs, epochs >= 1."""
    return _concat_curves([_curve_rows(r.metrics, r.axes, str(r.path)) for r in runs if r.status == "finished"])


@dataclass
class FigureData:
    """What the figures draw from, read once: the coerced summary (one row per run) and the
    finished runs' curves (:func:`curves_of`)."""

    summary: pd.DataFrame
    curves: pd.DataFrame


def from_runs(runs: Sequence[Run], target: float = 0.9, summary: pd.DataFrame | None = None) -> FigureData:
    """FigureData of loaded runs (summarised here unless ``summary`` is given)."""
    summary = summarize(runs, target) if summary is None else summary
    return FigureData(coerce_summary(summary), curves_of(runs))


def read_results(summary_csv: str | Path, target: float | None = None,
                 extra_paths: Sequence[str | Path] = ()) -> FigureData:
    """Read ``summary.csv`` (refused in one line if missing, empty, cut or not a summary) and the
    metrics.csv of each finished run it lists (``run_dir``, relative to the csv's folder unless
    absolute), once.

    ``target``: when it differs from the summary's ``target_train_acc``, the time to target
    is recomputed from each finished run's curve. ``extra_paths``: further runs (folders or
    run directories) not listed in the csv, summarised here."""
    summary_csv = Path(summary_csv)
    s = coerce_summary(inputs.read_summary_csv(summary_csv, REQUIRED))
    base = summary_csv.parent
    retarget = target is not None and not (s["target_train_acc"] == target).all()
    frames, listed = [], set()
    for i, row in s.iterrows():
        path = Path(row["run_dir"])
        path = path if path.is_absolute() else base / path
        listed.add(path.resolve())
        if row["status"] != "finished":
            continue
        metrics, _ = read_metrics(path)
        if retarget:
            s.loc[i, ["time_to_target_s", "epoch_to_target"]] = time_to_target(metrics, target)
        frames.append(_curve_rows(metrics, row.to_dict(), str(path)))
    if retarget:
        s["target_train_acc"] = target
    extra = [r for r in load_runs(extra_paths) if r.path.resolve() not in listed] if extra_paths else []
    if extra:
        s = coerce_summary(pd.concat([s, summarize(extra, 0.9 if target is None else target)], ignore_index=True))
        frames += [_curve_rows(r.metrics, r.axes, str(r.path)) for r in extra if r.status == "finished"]
    return FigureData(s, _concat_curves(frames))


def at_split_level(df: pd.DataFrame, splits: int, methods: Methods) -> pd.DataFrame:
    """Rows of whole-network methods (baselines, layerwise) at n = 1 and of the others at n = ``splits``."""
    if not len(df):
        return df
    whole = df["method"].map(methods.whole_network).astype(bool)
    return df[(whole & (df["splits"] == 1)) | (~whole & (df["splits"] == splits))]


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return setting_text(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def key(df: pd.DataFrame) -> pd.Series:
    """A run's grid point as one string, alike in the summary and the curves (None = NaN = '')."""
    return pd.Series(["/".join(_cell(v) for v in row) for row in df[list(AXES)].itertuples(index=False)],
                     index=df.index, dtype=object)


def with_preset(summary: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """``curves`` with each run's preset (from ``summary``; "nan" for a run without one), which
    the curves do not record."""
    if not len(curves) or not len(summary):
        return curves.assign(preset="nan")
    preset = summary.set_index(key(summary))["preset"].astype(str)
    preset = preset[~preset.index.duplicated()]
    return curves.assign(preset=key(curves).map(preset).fillna("nan"))


def runs_of_preset(summary: pd.DataFrame, curves: pd.DataFrame, preset: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs (summary rows and their curves) of ``preset``; all of them for None."""
    if preset is None:
        return summary, curves
    summary = summary[summary["preset"].astype(str) == preset]
    curves = with_preset(summary, curves)
    return summary, curves[curves["preset"] == preset].drop(columns="preset")


def runs_on_budget(df: pd.DataFrame, timed: bool) -> pd.DataFrame:
    """The rows (runs or curve rows) a figure draws, chosen per dataset/model.

    ``timed`` (the speed figures): the runs of the largest equal-resources budget (``cores``),
    so that every method compared had the same cores. Otherwise (the accuracy figures): the
    runs without a budget, which a budget's runs would only repeat (a distributed run gives the
    serial run's numbers). A dataset/model without such runs keeps all of its rows."""
    if not len(df) or "cores" not in df:
        return df
    cores = pd.to_numeric(df["cores"], errors="coerce")
    key = [df["dataset"].astype(str), df["model"].astype(str)]
    if timed:
        top = cores.groupby(key).transform("max")
        keep = top.isna() | (cores == top)
    else:
        has_plain = cores.isna().groupby(key).transform("any")
        keep = ~has_plain | cores.isna()
    return df[keep]
