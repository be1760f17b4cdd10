"""Summaries of recorded runs: one row per run, and a mean +- std table per grid cell.

Everything here reads the files a run leaves behind (``run.json`` and ``metrics.csv``
under ``.../{dataset}/{model}/{method}/n{splits}/seed{seed}/``, or
``.../seed{seed}/{variant}/`` for one setting of a sweep) and never reruns training. It is
forgiving by design: a run that diverged, a run that is still going (no ``run.json`` yet),
a ``run.json`` that cannot be parsed and a ``metrics.csv`` that lacks some columns all
become rows with a ``status`` and NaN where a number is missing, so one bad run never
hides the others.

Command line::

    python -m tssm.summary results/default            # writes results/default/summary.{csv,md}
    python -m tssm.summary RUN_DIR_OR_RUN_JSON ... --csv out.csv --md out.md
    tssm summary results/default                      # the same
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .layout import AXES, axes_from_path, resources_text

__all__ = [
    "AXES",
    "Run",
    "SUMMARY_COLUMNS",
    "find_runs",
    "has_budgets",
    "has_variants",
    "resources_cell",
    "setting_text",
    "load_curves",
    "load_run",
    "load_runs",
    "markdown_table",
    "read_metrics",
    "summarize",
    "sweep_fields",
    "sweep_markdown",
    "sweep_table",
    "time_to_target",
    "verdict_markdown",
    "write_summary",
]


#: MLflow tags (and run.json ``config.tags``) of a variant: its name, and each swept field.
VARIANT_TAG = "variant"
VARIANT_FIELD_TAG = "variant."
#: ... and of a run of an equal-resources budget (an experiment's ``cores:``): the cores.
CORES_TAG = "cores"

#: Columns of ``summary.csv`` (one row per run), in this order; when runs have variants, one
#: column per swept field (``rho``, ``init`` ...) follows ``variant`` (see :func:`sweep_fields`).
SUMMARY_COLUMNS = (
    *AXES,
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
    "reason",
    "config_hash",
    "git_commit",
    "mlflow_run_id",
    "run_dir",
)

#: Statuses a run can have in a summary: the CLI's three plus what the reader infers.
STATUSES = ("finished", "diverged", "interrupted", "incomplete", "unreadable")


@dataclass
class Run:
    """What one run directory holds: its axes, its status, its record and its curve."""

    path: Path
    axes: dict[str, Any]
    status: str
    info: dict[str, Any] = field(default_factory=dict)
    metrics: pd.DataFrame | None = None
    problem: str | None = None  # why the run is incomplete/unreadable

    @property
    def config(self) -> dict[str, Any]:
        """The run's RunConfig as recorded in run.json ({} without one)."""
        cfg = self.info.get("config")
        return cfg if isinstance(cfg, dict) else {}

    @property
    def sweep(self) -> dict[str, Any]:
        """The fields this run's variant sweeps, with their values ({} for a run without a variant)."""
        tags = self.config.get("tags")
        if not isinstance(tags, dict):
            return {}
        n = len(VARIANT_FIELD_TAG)
        return {k[n:]: self.config.get(k[n:], v) for k, v in tags.items() if k.startswith(VARIANT_FIELD_TAG)}

    @property
    def epochs_trained(self) -> int:
        """Training epochs in the curve (an initial ``epoch 0`` evaluation row does not count)."""
        m = self.metrics
        if m is not None and "epoch" in m and len(m):
            e = pd.to_numeric(m["epoch"], errors="coerce")
            if e.notna().any():
                return int(max(e.max(), 0))
        done = self.info.get("epochs_done")
        return int(done) if isinstance(done, (int, float)) and not isinstance(done, bool) else 0


# --------------------------------------------------------------------------- reading
def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories under ``paths``.

    Each path may be a run directory, a ``run.json``/``metrics.csv`` file, or any folder
    above run directories (searched recursively for ``run.json`` and ``metrics.csv``).
    The result is sorted and free of duplicates.
    """
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_file():
            found[p.parent.resolve()] = None
        elif (p / "run.json").exists() or (p / "metrics.csv").exists():
            found[p.resolve()] = None
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                hidden = any(part.startswith(".") for part in f.relative_to(p).parts)  # e.g. .replaced/
                if f.name in ("run.json", "metrics.csv") and f.is_file() and not hidden:
                    found[f.parent.resolve()] = None
        elif p.name in ("run.json", "metrics.csv") and p.parent.is_dir():
            found[p.parent.resolve()] = None  # a listed run whose file is gone: still a row
    return sorted(found)


def read_metrics(path: str | Path) -> tuple[pd.DataFrame | None, str | None]:
    """A run folder's metrics.csv, numeric and sorted by epoch, or (None, why not)."""
    f = Path(path) / "metrics.csv"
    if not f.exists():
        return None, "no metrics.csv"
    try:
        df = pd.read_csv(f)
    except Exception as e:  # empty or truncated file
        return None, f"metrics.csv unreadable: {type(e).__name__}: {e}"
    for c in df.columns:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    if "epoch" in df:
        df = df.sort_values("epoch", kind="stable").reset_index(drop=True)
    return df, None


def load_run(path: str | Path) -> Run:
    """Read one run directory (or its ``run.json``); never raises for a bad run."""
    path = Path(path)
    if path.name in ("run.json", "metrics.csv"):
        path = path.parent
    axes = axes_from_path(path)
    metrics, metrics_problem = read_metrics(path)
    info: dict[str, Any] = {}
    problem = None
    rj = path / "run.json"
    if rj.exists():
        try:
            info = json.loads(rj.read_text())
            if not isinstance(info, dict):
                raise ValueError(f"expected a JSON object, got {type(info).__name__}")
            status = str(info.get("status") or "unreadable")
        except Exception as e:
            info, status, problem = {}, "unreadable", f"run.json unreadable: {e}"
    else:
        status, problem = "incomplete", "no run.json (still running, killed, or not started)"
    cfg = info.get("config") if isinstance(info.get("config"), dict) else {}
    tags = cfg.get("tags") if isinstance(cfg.get("tags"), dict) else {}
    for k in AXES:
        if k in cfg and cfg[k] is not None:
            axes[k] = cfg[k]
        axes.setdefault(k, None)
    axes["variant"] = tags.get(VARIANT_TAG) or axes["variant"] or None
    axes["cores"] = tags.get(CORES_TAG) or axes["cores"] or None
    for k in ("splits", "seed", "cores"):
        try:
            axes[k] = int(axes[k]) if axes[k] is not None else None
        except (TypeError, ValueError):
            axes[k] = None
    if metrics is None and status == "finished":
        problem = metrics_problem
    elif status == "finished" and not _metrics_agree(info, metrics):
        status, problem = "incomplete", "metrics.csv does not match run.json (a later run rewrote it?)"
    return Run(path=path, axes=axes, status=status, info=info, metrics=metrics, problem=problem)


def _metrics_agree(info: dict[str, Any], metrics: pd.DataFrame) -> bool:
    """Whether metrics.csv ends where run.json says the run ended (same last epoch and loss)."""
    final = info.get("final") if isinstance(info.get("final"), dict) else {}
    if not final or "epoch" not in metrics or not len(metrics):
        return True
    last = metrics.iloc[-1]
    same_epoch = _num(final.get("epoch")) == _num(last.get("epoch"))
    a, b = _num(final.get("train_loss")), _num(last.get("train_loss"))
    return same_epoch and (a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(a)))


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    return [load_run(p) for p in find_runs(paths)]


# --------------------------------------------------------------------------- numbers
def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


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
    reason = run.info.get("reason") or run.problem
    env = run.info.get("environment") if isinstance(run.info.get("environment"), dict) else {}
    row = {
        **{k: run.axes.get(k) for k in AXES},
        **{f: cfg.get(f) for f in fields},
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
        "reason": reason,
        "config_hash": run.info.get("config_hash"),
        "git_commit": run.info.get("git_commit"),
        "mlflow_run_id": run.info.get("mlflow_run_id"),
        "run_dir": str(run.path),
    }
    return row


def summarize(runs: Sequence[Run | str | Path], target: float = 0.9) -> pd.DataFrame:
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


# --------------------------------------------------------------------------- markdown
def _fmt(values: pd.Series, digits: int = 3) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if not len(v):
        return "n/a"
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _is_variant(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def has_budgets(summary: pd.DataFrame) -> bool:
    """Whether any run of ``summary`` ran on an equal-resources budget (an experiment's ``cores:``)."""
    return "cores" in summary and bool(pd.to_numeric(summary["cores"], errors="coerce").notna().any())


def resources_cell(g: pd.DataFrame) -> str:
    """How the runs of ``g`` used their cores ('2 ranks × 1 thread'; several joined by ' / ')."""
    pairs = g[["workers", "threads"]].drop_duplicates() if {"workers", "threads"} <= set(g) else pd.DataFrame()
    return " / ".join(resources_text(w, t) for w, t in pairs.itertuples(index=False)) or "?"


def has_variants(summary: pd.DataFrame) -> bool:
    """Whether any run of ``summary`` is a variant (one setting of a sweep)."""
    return "variant" in summary and bool(summary["variant"].map(_is_variant).any())


def sweep_fields(summary: pd.DataFrame) -> list[str]:
    """The swept settings among ``summary``'s columns (those :func:`summarize` adds)."""
    return [c for c in summary.columns if c not in SUMMARY_COLUMNS]


def _runs_cell(g: pd.DataFrame) -> str:
    """'k/m finished', then each other status with its count and seeds, in bold."""
    counts = g["status"].value_counts()
    parts = [f"{counts.get('finished', 0)}/{len(g)} finished"]
    for st in STATUSES[1:]:
        if counts.get(st, 0):
            seeds = ",".join(str(s) for s in g.loc[g["status"] == st, "seed"].tolist())
            parts.append(f"**{counts[st]} {st}** (seed {seeds})")
    return "; ".join(parts)


_TEXT_COLUMNS = ("dataset", "model", "method", "preset", "variant", "runs", "ranks × threads",
                 "settings (tuned: selected)")


def _table(head: Sequence[str]) -> list[str]:
    """Header and separator of a markdown table: text columns left, numbers right."""
    align = ["---" if h in _TEXT_COLUMNS else "---:" for h in head]
    return ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]


def markdown_table(summary: pd.DataFrame) -> str:
    """Mean ± std over seeds per dataset/model/method/n (and variant, if any), as a markdown table.

    Numbers are over *finished* runs only; the ``runs`` column counts every run and
    names the ones that diverged or did not finish, so they are never silently averaged.
    """
    budgets = has_budgets(summary)
    presets = "preset" in summary and bool(summary["preset"].notna().any())
    keys = ["dataset", "model", "method", "splits", *(["preset"] if presets else []),
            *(["cores"] if budgets else []), *(["variant"] if has_variants(summary) else [])]
    val = "final_val_acc" in summary and pd.to_numeric(summary["final_val_acc"], errors="coerce").notna().any()
    head = ["dataset", "model", "method", "n", *keys[4:], *(["ranks × threads"] if budgets else []), "runs",
            "final train acc", *(["final val acc"] if val else []), "final test acc", "final train loss", "s/epoch",
            "move_1"]
    lines = _table(head)
    if not len(summary):
        lines.append("| (no runs) |" + " |" * (len(head) - 1))
        return "\n".join(lines) + "\n"
    df = summary.copy()
    if budgets:
        df["cores"] = pd.to_numeric(df["cores"], errors="coerce").map(lambda v: None if pd.isna(v) else str(int(v)))
    for k in keys:
        df[k] = df[k].astype(object).where(df[k].notna(), "—" if k in ("variant", "cores", "preset") else "?")
    for key, g in df.groupby(keys, sort=True, dropna=False):
        ok = g[g["status"] == "finished"]
        shown = list(map(str, key))
        if "layerwise" in g and g["layerwise"].astype(str).eq("True").all():
            shown[3] = "layerwise"  # the method splits at every layer: n does not apply
        cells = [*shown, *([resources_cell(ok if len(ok) else g)] if budgets else []), _runs_cell(g),
                 _fmt(ok["final_train_acc"]), *([_fmt(ok["final_val_acc"])] if val else []),
                 _fmt(ok["final_test_acc"]), _fmt(ok["final_train_loss"], 4),
                 _fmt(ok["sec_per_epoch"], 3), _fmt(ok["move_1"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    bad = summary[summary["status"] != "finished"]
    for _, r in bad.iterrows():
        variant = f"/{r['variant']}" if _is_variant(r.get("variant")) else ""
        cores = f"/cores{int(r['cores'])}" if pd.notna(r.get("cores")) else ""
        notes.append(f"- {r['dataset']}/{r['model']}/{r['method']}/n{r['splits']}/seed{r['seed']}{cores}{variant}: "
                     f"**{r['status']}** — {r['reason'] or 'no reason recorded'}")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\nRuns not in the averages:\n\n" + "\n".join(notes) + "\n"
    return text


# --------------------------------------------------------------------------- sweeps
#: The split control a sweep is compared with at the same n (backprop, ``reference``, at n = 1).
SWEEP_CONTROL = "frozen"


def matching_runs(ok: pd.DataFrame, row: pd.Series, method: str, splits: Any,
                  fields: Sequence[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Finished runs of ``method`` at n = ``splits`` on ``row``'s dataset/model, narrowed to
    ``row``'s value of each of ``fields`` those runs vary themselves (a preset against the
    control of that preset, the same init ...), and those {field: value}."""
    c = ok[(ok["dataset"] == row["dataset"]) & (ok["model"] == row["model"]) & (ok["method"] == method)
           & (ok["splits"] == splits)]
    matched = {}
    for f in fields:
        if c[f].astype(str).nunique() > 1:
            matched[f] = row[f]
            c = c[c[f].astype(str) == str(row[f])]
    return c, matched


def _reference(ok: pd.DataFrame, row: pd.Series, method: str, splits: int,
               fields: Sequence[str]) -> tuple[float, dict[str, Any]]:
    """Mean final test accuracy of ``method`` at n = ``splits`` on ``row``'s dataset/model, over
    its finished runs with ``row``'s value of each field those runs vary (e.g. the same init),
    and those {field: value}."""
    c, matched = matching_runs(ok, row, method, splits, [*fields, *(["preset"] if "preset" in ok else [])])
    acc = pd.to_numeric(c["final_test_acc"], errors="coerce").dropna()
    return (float(acc.mean()) if len(acc) else math.nan), matched


def setting_text(value: Any) -> str:
    """A setting's value as written in labels: 10.0 -> 10, 0.001 -> 0.001, 'demo' -> demo."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def sweep_table(summary: pd.DataFrame, reference: str = "adam") -> pd.DataFrame:
    """Final accuracy per dataset/model/method/n/variant against the controls.

    One row per variant of every method but the controls (``frozen`` and ``reference``; all
    methods if only they ran): runs, finished runs, mean and sd over finished seeds of the final
    train/test accuracy, the final test accuracy of ``frozen`` at the same n and of
    ``reference`` at n = 1 (each with the same value of every setting it varies itself, named in
    ``controls``), and the differences to them in points (100 x accuracy). Swept settings are
    columns too. Sorted by final test accuracy (best first) within each method and n.
    """
    fields = sweep_fields(summary)
    s = summary.copy()
    s["splits"] = pd.to_numeric(s["splits"], errors="coerce")
    s["variant"] = s["variant"].where(s["variant"].map(_is_variant), "")
    ok = s[s["status"] == "finished"]
    subjects = s[~s["method"].isin([SWEEP_CONTROL, reference])]
    subjects = subjects if len(subjects) else s
    rows = []
    for (dataset, model, method, n, variant), g in subjects.groupby(
            ["dataset", "model", "method", "splits", "variant"], sort=True, dropna=False):
        fin = g[g["status"] == "finished"]
        train = pd.to_numeric(fin["final_train_acc"], errors="coerce")
        test = pd.to_numeric(fin["final_test_acc"], errors="coerce")
        first = g.iloc[0]
        frozen, m1 = _reference(ok, first, SWEEP_CONTROL, n, fields)
        ref, m2 = _reference(ok, first, reference, 1, fields)
        rows.append({
            "dataset": dataset, "model": model, "method": method, "splits": n, "variant": variant,
            **{f: first[f] for f in fields},
            "runs": len(g), "finished": len(fin), "runs_text": _runs_cell(g),
            "train_acc": train.mean(), "train_sd": train.std(ddof=1), "test_acc": test.mean(), "test_sd": test.std(ddof=1),
            "frozen_test_acc": frozen, "ref_test_acc": ref,
            "d_frozen_pts": 100 * (test.mean() - frozen), "d_ref_pts": 100 * (test.mean() - ref),
            "controls": ", ".join(f"{k}={setting_text(v)}" for k, v in {**m1, **m2}.items()),
        })
    out = pd.DataFrame(rows)
    if len(out):
        out = out.sort_values(["dataset", "model", "method", "splits", "test_acc"],
                              ascending=[True, True, True, True, False], na_position="last").reset_index(drop=True)
    return out


def sweep_markdown(summary: pd.DataFrame, reference: str = "adam") -> str:
    """:func:`sweep_table` as a markdown section ('' when no run has a variant)."""
    if not has_variants(summary):
        return ""
    t = sweep_table(summary, reference)

    def acc(mean: float, sd: float) -> str:
        return "n/a" if mean != mean else f"{mean:.3f}" + (f" ± {sd:.3f}" if sd == sd else "")

    def pts(d: float) -> str:
        return "n/a" if d != d else f"{d:+.1f}"

    ref = reference
    head = ["dataset", "model", "method", "n", "variant", "runs", "final train acc", "final test acc",
            f"{SWEEP_CONTROL} test acc", f"Δ test vs {SWEEP_CONTROL} (pts)", f"{ref} test acc", f"Δ test vs {ref} (pts)"]
    lines = _table(head)
    for r in t.itertuples(index=False):
        lines.append("| " + " | ".join([
            str(r.dataset), str(r.model), str(r.method), str(int(r.splits)), r.variant or "—", r.runs_text,
            acc(r.train_acc, r.train_sd), acc(r.test_acc, r.test_sd), acc(r.frozen_test_acc, math.nan),
            pts(r.d_frozen_pts), acc(r.ref_test_acc, math.nan), pts(r.d_ref_pts)]) + " |")
    matched = sorted({kv.split("=")[0] for c in t.get("controls", []) for kv in c.split(", ") if kv})
    same = f", each with the same {', '.join(matched)}" if matched else ""
    return (f"## Sweep: final accuracy per variant\n\nFinal train/test accuracy per variant (mean ± std over "
            f"finished seeds), best test accuracy first within each method and n, against `{SWEEP_CONTROL}` at the "
            f"same n and {ref} at n = 1{same}; Δ = difference in test accuracy, in points (100 × accuracy).\n\n"
            + "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- paired control
def _control_runs(ok: pd.DataFrame, row: pd.Series, control: str, fields: Sequence[str]) -> pd.DataFrame:
    """Finished runs of ``control`` on ``row``'s dataset/model/n, preset and resource budget."""
    return matching_runs(ok, row, control, row["splits"], [*fields, *(k for k in ("preset", "cores") if k in ok)])[0]


def mean_ci(d: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, half-width of the Student-t interval at ``level``, sd) of ``d``; the half-width
    is NaN with fewer than 2 values."""
    from scipy import stats

    v = np.asarray(d, dtype=float)
    if not len(v):
        return math.nan, math.nan, math.nan
    if len(v) < 2:
        return float(v.mean()), math.nan, math.nan
    sd = float(v.std(ddof=1))
    return float(v.mean()), float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * sd / math.sqrt(len(v))), sd


def paired_table(summary: pd.DataFrame, control: str = SWEEP_CONTROL,
                 metrics: Sequence[str] = ("final_test_acc", "final_val_acc", "final_train_acc")) -> pd.DataFrame:
    """Each split method's difference to ``control`` at the same n, paired by seed (same initial
    weights and data order): per dataset/model/method/n/preset/variant, the number of pairs and, per
    metric, the mean difference and the half-width of its 95% interval, in points (100 x)."""
    fields = sweep_fields(summary)
    s = summary.copy()
    s["splits"] = pd.to_numeric(s["splits"], errors="coerce")
    s["variant"] = s["variant"].where(s["variant"].map(_is_variant), "") if "variant" in s else ""
    for k in ("preset", "cores"):  # each preset and each resource budget against its own control
        s[k] = s[k].map(lambda v: "" if v is None or v != v else setting_text(v)) if k in s else ""
    ok = s[s["status"] == "finished"]
    subjects = ok[(ok["method"] != control) & (ok["splits"] > 1) & ~ok["layerwise"].astype(str).eq("True")]
    rows = []
    group = ["dataset", "model", "method", "splits", "preset", "cores", "variant"]
    for key, g in subjects.groupby(group, sort=True):
        ctrl = _control_runs(ok, g.iloc[0], control, fields).drop_duplicates("seed").set_index("seed")
        pairs = g[g["seed"].isin(ctrl.index)].drop_duplicates("seed")
        row = dict(zip(group, key), pairs=len(pairs))
        for m in metrics:
            d = 100 * (pd.to_numeric(pairs[m], errors="coerce").to_numpy()
                       - pd.to_numeric(ctrl.loc[pairs["seed"], m], errors="coerce").to_numpy())
            d = d[~np.isnan(d)]
            mean, half, _ = mean_ci(d)
            row[f"d_{m}"], row[f"ci_{m}"], row[f"n_{m}"] = mean, half, len(d)
        rows.append(row)
    return pd.DataFrame(rows)


def interval_text(mean: float, half: float, bold: bool = False) -> str:
    """A paired difference as printed: '+2.00 [-0.48, +4.48] (contains 0)', '+5.00 (one pair)',
    'n/a'; ``bold``: an interval that excludes 0 in bold."""
    if mean != mean:
        return "n/a"
    if half != half:
        return f"{mean:+.2f} (one pair)"
    text = f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"
    if mean - half <= 0 <= mean + half:
        return text + " (contains 0)"
    return f"**{text}**" if bold else text


def paired_markdown(summary: pd.DataFrame, control: str = SWEEP_CONTROL) -> str:
    """:func:`paired_table` as a markdown section ('' when no split method has a control)."""
    t = paired_table(summary, control)
    if not len(t) or not (t["pairs"] > 0).any():
        return ""
    shown = [m for m in ("final_test_acc", "final_val_acc", "final_train_acc") if t[f"n_{m}"].gt(0).any()]

    names = {"final_test_acc": "test", "final_val_acc": "validation", "final_train_acc": "train"}
    budgets = bool((t["cores"] != "").any())
    head = ["dataset", "model", "method", "n", "preset", *(["cores"] if budgets else []), "variant", "pairs",
            *(f"Δ {names[m]} (pts), 95% CI" for m in shown)]
    lines = _table(head)
    for r in t.to_dict("records"):
        lines.append("| " + " | ".join([str(r["dataset"]), str(r["model"]), str(r["method"]), str(int(r["splits"])),
                                         r["preset"] or "—", *([r["cores"] or "—"] if budgets else []),
                                         r["variant"] or "—", str(r["pairs"]),
                                         *(interval_text(r[f"d_{m}"], r[f"ci_{m}"]) for m in shown)]) + " |")
    return (f"## Paired difference to `{control}`\n\nEach split method minus `{control}` at the same n, run by run "
            f"over the seeds both finished (same initial weights and data order): mean difference in points "
            f"(100 × accuracy) and its 95% Student-t interval; *contains 0* means these seeds do not show a "
            f"difference.\n\n" + "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- the verdict
#: The named presets a verdict compares, in the order its tables show them.
VERDICT_PRESETS = ("paper", "demo", "tuned")


def verdict_markdown(summary: pd.DataFrame, control: str = SWEEP_CONTROL) -> str:
    """The verdict ('' without runs of a named preset): per dataset and model, every method and
    n under each of :data:`VERDICT_PRESETS`, with the settings ``tuned`` selected, mean ± sd over
    seeds of the final train / validation / test accuracy, and the paired difference to
    ``control`` at the same n and preset (points, 95% interval; *contains 0* when the seeds show
    no difference). Trials and runs without a preset are not in it."""
    if "preset" not in summary:
        return ""
    s = summary[summary["preset"].isin(VERDICT_PRESETS)].copy()
    if has_budgets(s):
        s = s[pd.to_numeric(s["cores"], errors="coerce").isna()]
    if not len(s):
        return ""
    paired = paired_table(summary, control)
    key = ["dataset", "model", "method", "splits", "preset"]
    if len(paired):
        paired = paired[paired["preset"].isin(VERDICT_PRESETS) & (paired["cores"] == "")].set_index(key)
    from .config import method_names

    # the baselines, then the control, then the methods compared with it (unregistered last)
    first = [m for m in ("sgd", "adam", "dladmm", control) if m in method_names()]
    order = {m: i for i, m in enumerate([*first, *(m for m in method_names() if m not in first)])}
    s["splits"] = pd.to_numeric(s["splits"], errors="coerce")
    s["_m"], s["_p"] = s["method"].map(lambda m: order.get(m, len(order))), s["preset"].map(VERDICT_PRESETS.index)

    def delta(r: Any, metric: str) -> str:
        return interval_text(r[f"d_{metric}"], r[f"ci_{metric}"], bold=True)

    val = pd.to_numeric(s["final_val_acc"], errors="coerce").notna().any()
    head = ["method", "n", "preset", "settings (tuned: selected)", "runs", "train acc", *(["val acc"] if val else []),
            "test acc", f"Δ test vs {control} (pts, 95% CI)", f"Δ train vs {control} (pts, 95% CI)"]
    parts = []
    for (dataset, model), d in s.groupby(["dataset", "model"], sort=True):
        lines, glance = _table(head), {}
        for (_, n, _, method, preset), g in d.groupby(["_m", "splits", "_p", "method", "preset"], sort=True):
            ok = g[g["status"] == "finished"]
            layerwise = g["layerwise"].astype(str).eq("True").all()
            settings = ok["preset_values"].dropna().unique() if preset == "tuned" else []
            comp = paired.loc[(dataset, model, method, n, preset)] if len(paired) and \
                (dataset, model, method, n, preset) in paired.index else None
            if isinstance(comp, pd.DataFrame):
                comp = comp.iloc[0]
            shown_n = "layerwise" if layerwise else str(int(n))
            test, d_test = _fmt(ok["final_test_acc"]), delta(comp, "final_test_acc") if comp is not None else None
            glance.setdefault((method, shown_n), {})[preset] = test + (f"; Δ {d_test}" if d_test else "")
            lines.append("| " + " | ".join([
                method, shown_n, preset, "; ".join(settings) or "—", _runs_cell(g),
                _fmt(ok["final_train_acc"]), *([_fmt(ok["final_val_acc"])] if val else []), test,
                d_test or "—", delta(comp, "final_train_acc") if comp is not None else "—"]) + " |")
        short = ["| method | n | " + " | ".join(f"`{p}`: test acc; Δ vs {control}" for p in VERDICT_PRESETS) + " |",
                 "|---|---:|" + "---:|" * len(VERDICT_PRESETS)]
        short += [f"| {m} | {n} | " + " | ".join(cells.get(p, "—") for p in VERDICT_PRESETS) + " |"
                  for (m, n), cells in glance.items()]
        parts.append(f"### {dataset} / {model}\n\nAt a glance (final test accuracy, mean ± sd; Δ in points, 95% CI):"
                     f"\n\n" + "\n".join(short) + "\n\nIn full:\n\n" + "\n".join(lines) + "\n")
    return (f"## Verdict: each method under the `paper`, `demo` and `tuned` presets\n\n"
            f"Mean ± sd over seeds (finished runs); Δ: each split method minus `{control}` at the same n and "
            f"preset, paired by seed (same initial weights and data order), in points (100 × accuracy), with its "
            f"95% Student-t interval, in bold when the interval excludes 0. `tuned`: the settings selected on "
            f"validation accuracy (every trial: `tuning.md`); `paper` / `demo`: the presets' values (README, "
            f"Presets; each run's `run.json` records them).\n\n" + "\n".join(parts))


def write_summary(paths: Iterable[str | Path], csv_path: str | Path | None, md_path: str | Path | None,
                  target: float = 0.9, title: str | None = None, reference: str = "adam") -> pd.DataFrame:
    """Summarize the runs under ``paths`` into ``csv_path`` and ``md_path`` (either may be None).

    With variants, summary.md ends with :func:`sweep_markdown` (``reference``: backprop method)."""
    runs = load_runs(paths)
    df = summarize(runs, target)
    if csv_path is not None:
        base = Path(csv_path).parent
        base.mkdir(parents=True, exist_ok=True)
        out = df.copy()
        # run directories relative to the csv, so a moved results folder still finds its runs
        out["run_dir"] = [Path(os.path.relpath(p, base.resolve())).as_posix() for p in out["run_dir"]]
        out.to_csv(csv_path, index=False)
    if md_path is not None:
        Path(md_path).parent.mkdir(parents=True, exist_ok=True)
        head = f"# {title}\n\n" if title else ""
        counts = df["status"].value_counts().to_dict() if len(df) else {}
        line = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no runs"
        sweep = sweep_markdown(df, reference)
        paired = paired_markdown(df) if len(df) else ""
        verdict = verdict_markdown(df) if len(df) else ""
        body = (f"{head}{len(df)} runs ({line}). Mean ± std over seeds of finished runs; "
                f"n = number of subnetworks (1 = end-to-end).\n\n" + (f"{verdict}\n## Every run group\n\n" if verdict else "")
                + markdown_table(df)
                + (f"\n{paired}" if paired else "") + (f"\n{sweep}" if sweep else ""))
        Path(md_path).write_text(body)
    return df


# --------------------------------------------------------------------------- CLI
def build_parser(prog: str = "python -m tssm.summary") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog,
                                description="Summarize recorded runs (run.json + metrics.csv) into summary.csv "
                                            "(one row per run) and summary.md (mean ± std over seeds).")
    p.add_argument("paths", nargs="+", help="run directories, run.json files, or folders above them "
                                           "(e.g. results/default)")
    p.add_argument("--csv", help="where to write summary.csv (default: <dir>/summary.csv when one folder is given)")
    p.add_argument("--md", help="where to write summary.md (default: next to the csv)")
    p.add_argument("--target-acc", type=float, default=0.9, help="training accuracy for time-to-target (default 0.9)")
    p.add_argument("--title", help="heading of summary.md")
    p.add_argument("--reference", default="adam", help="backprop method (at n=1) a sweep is compared with, "
                                                       "besides frozen (default adam)")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m tssm.summary") -> int:
    args = build_parser(prog).parse_args(argv)
    csv_path, md_path = args.csv, args.md
    if csv_path is None and md_path is None:
        if len(args.paths) == 1 and Path(args.paths[0]).is_dir():
            base = Path(args.paths[0])
            csv_path, md_path = base / "summary.csv", base / "summary.md"
    elif md_path is None:
        md_path = Path(csv_path).with_suffix(".md")
    missing = [p for p in args.paths if not Path(p).exists() and Path(p).name not in ("run.json", "metrics.csv")]
    if missing:
        print(f"error: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    df = write_summary(args.paths, csv_path, md_path, args.target_acc, args.title, args.reference)
    if csv_path is None:
        print(markdown_table(df), end="")
    else:
        counts = df["status"].value_counts().to_dict() if len(df) else {}
        print(f"{len(df)} runs {counts} -> {csv_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
