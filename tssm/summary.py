"""Summaries of recorded runs: one row per run, and a mean +- std table per grid cell.

Everything here reads the files a run leaves behind (``run.json`` and ``metrics.csv``
under ``.../{dataset}/{model}/{method}/n{splits}/seed{seed}/``) and never reruns
training. It is forgiving by design: a run that diverged, a run that is still going (no
``run.json`` yet), a ``run.json`` that cannot be parsed and a ``metrics.csv`` that lacks
some columns all become rows with a ``status`` and NaN where a number is missing, so one
bad run never hides the others.

Command line::

    python -m tssm.summary results/default            # writes results/default/summary.{csv,md}
    python -m tssm.summary RUN_DIR_OR_RUN_JSON ... --csv out.csv --md out.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "AXES",
    "Run",
    "SUMMARY_COLUMNS",
    "find_runs",
    "load_curves",
    "load_run",
    "load_runs",
    "markdown_table",
    "summarize",
    "time_to_target",
    "write_summary",
]

#: The grid axes of a run, in the order of the results tree.
AXES = ("dataset", "model", "method", "splits", "seed")

#: Columns of ``summary.csv`` (one row per run), in this order.
SUMMARY_COLUMNS = (
    *AXES,
    "status",
    "workers",
    "device",
    "epochs",
    "epochs_done",
    "final_train_acc",
    "final_test_acc",
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

_PATH_RE = re.compile(r"(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?P<method>[^/]+)/n(?P<splits>\d+)/seed(?P<seed>\d+)/?$")

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
                if f.name in ("run.json", "metrics.csv") and f.is_file():
                    found[f.parent.resolve()] = None
        elif p.name in ("run.json", "metrics.csv") and p.parent.is_dir():
            found[p.parent.resolve()] = None  # a listed run whose file is gone: still a row
    return sorted(found)


def _axes_from_path(path: Path) -> dict[str, Any]:
    m = _PATH_RE.search(path.as_posix())
    if not m:
        return {}
    d: dict[str, Any] = m.groupdict()
    d["splits"], d["seed"] = int(d["splits"]), int(d["seed"])
    return d


def _read_metrics(path: Path) -> tuple[pd.DataFrame | None, str | None]:
    f = path / "metrics.csv"
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
    axes = _axes_from_path(path)
    metrics, metrics_problem = _read_metrics(path)
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
    for k in AXES:
        if k in cfg and cfg[k] is not None:
            axes[k] = cfg[k]
        axes.setdefault(k, None)
    for k in ("splits", "seed"):
        try:
            axes[k] = int(axes[k]) if axes[k] is not None else None
        except (TypeError, ValueError):
            axes[k] = None
    if metrics is None and status == "finished":
        problem = metrics_problem
    return Run(path=path, axes=axes, status=status, info=info, metrics=metrics, problem=problem)


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


def summary_row(run: Run, target: float = 0.9) -> dict[str, Any]:
    cfg = run.info.get("config") if isinstance(run.info.get("config"), dict) else {}
    epochs = run.epochs_trained
    train_time = _last(run, "train_time_s")
    if math.isnan(train_time) and run.metrics is not None and "epoch_time_s" in run.metrics:
        train_time = float(run.metrics["epoch_time_s"].dropna().sum()) if run.metrics["epoch_time_s"].notna().any() else math.nan
    t_hit, e_hit = time_to_target(run.metrics, target)
    reason = run.info.get("reason") or run.problem
    env = run.info.get("environment") if isinstance(run.info.get("environment"), dict) else {}
    row = {
        **{k: run.axes.get(k) for k in AXES},
        "status": run.status,
        "workers": env.get("world_size"),
        "device": env.get("device") or cfg.get("device"),
        "epochs": cfg.get("epochs"),
        "epochs_done": epochs,
        "final_train_acc": _last(run, "train_acc"),
        "final_test_acc": _last(run, "test_acc"),
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
    """One row per run (columns :data:`SUMMARY_COLUMNS`), sorted by the grid axes."""
    runs = [r if isinstance(r, Run) else load_run(r) for r in runs]
    df = pd.DataFrame([summary_row(r, target) for r in runs], columns=list(SUMMARY_COLUMNS))
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


def markdown_table(summary: pd.DataFrame) -> str:
    """Mean ± std over seeds per dataset/model/method/n, as a markdown table.

    Numbers are over *finished* runs only; the ``runs`` column counts every run and
    names the ones that diverged or did not finish, so they are never silently averaged.
    """
    header = ("| dataset | model | method | n | runs | final train acc | final test acc | "
              "final train loss | s/epoch | move_1 |")
    sep = "|---|---|---|---:|---|---:|---:|---:|---:|---:|"
    lines = [header, sep]
    if not len(summary):
        lines.append("| (no runs) | | | | | | | | | |")
        return "\n".join(lines) + "\n"
    keys = ["dataset", "model", "method", "splits"]
    df = summary.copy()
    for k in keys:
        df[k] = df[k].astype(object).where(df[k].notna(), "?")
    for (dataset, model, method, n), g in df.groupby(keys, sort=True, dropna=False):
        ok = g[g["status"] == "finished"]
        counts = g["status"].value_counts()
        parts = [f"{len(ok)}/{len(g)} finished"]
        for st in STATUSES[1:]:
            if counts.get(st, 0):
                seeds = ",".join(str(s) for s in g.loc[g["status"] == st, "seed"].tolist())
                parts.append(f"**{counts[st]} {st}** (seed {seeds})")
        cells = [str(dataset), str(model), str(method), str(n), "; ".join(parts),
                 _fmt(ok["final_train_acc"]), _fmt(ok["final_test_acc"]), _fmt(ok["final_train_loss"], 4),
                 _fmt(ok["sec_per_epoch"], 3), _fmt(ok["move_1"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    bad = summary[summary["status"] != "finished"]
    for _, r in bad.iterrows():
        notes.append(f"- {r['dataset']}/{r['model']}/{r['method']}/n{r['splits']}/seed{r['seed']}: "
                     f"**{r['status']}** — {r['reason'] or 'no reason recorded'}")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\nRuns not in the averages:\n\n" + "\n".join(notes) + "\n"
    return text


def write_summary(paths: Iterable[str | Path], csv_path: str | Path | None, md_path: str | Path | None,
                  target: float = 0.9, title: str | None = None) -> pd.DataFrame:
    """Summarize the runs under ``paths`` into ``csv_path`` and ``md_path`` (either may be None)."""
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
        body = (f"{head}{len(df)} runs ({line}). Mean ± std over seeds of finished runs; "
                f"n = number of subnetworks (1 = end-to-end).\n\n" + markdown_table(df))
        Path(md_path).write_text(body)
    return df


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tssm.summary",
                                description="Summarize recorded runs (run.json + metrics.csv) into summary.csv "
                                            "(one row per run) and summary.md (mean ± std over seeds).")
    p.add_argument("paths", nargs="+", help="run directories, run.json files, or folders above them "
                                           "(e.g. results/default)")
    p.add_argument("--csv", help="where to write summary.csv (default: <dir>/summary.csv when one folder is given)")
    p.add_argument("--md", help="where to write summary.md (default: next to the csv)")
    p.add_argument("--target-acc", type=float, default=0.9, help="training accuracy for time-to-target (default 0.9)")
    p.add_argument("--title", help="heading of summary.md")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    df = write_summary(args.paths, csv_path, md_path, args.target_acc, args.title)
    if csv_path is None:
        print(markdown_table(df), end="")
    else:
        counts = df["status"].value_counts().to_dict() if len(df) else {}
        print(f"{len(df)} runs {counts} -> {csv_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
