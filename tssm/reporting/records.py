"""Reading what a run left behind (``run.json``, ``metrics.csv``), checked before it is trusted.

A run folder is ``.../{dataset}/{model}/{method}/n{splits}/seed{seed}[/cores{C}][/{variant}]``
(:mod:`tssm.layout`). Reading is forgiving by design: a run that diverged, a run still going
(no ``run.json`` yet), a ``run.json`` that cannot be parsed, a grid folder holding only its
``point.yaml`` and a damaged ``metrics.csv`` all become runs with a ``status`` and a
``problem``, so one bad run never hides the others, and none of them is averaged.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..layout import AXES, axes_from_path

#: MLflow tags (and run.json ``config.tags``) of a variant: its name, and each swept field.
VARIANT_TAG = "variant"
VARIANT_FIELD_TAG = "variant."
#: ... and of a run of an equal-resources budget (an experiment's ``cores:``): the cores.
CORES_TAG = "cores"

#: Statuses a run can have in a summary: the CLI's three plus what the reader infers
#: (``incomplete``: no run.json or a record that disagrees with it; ``damaged``: run.json says
#: finished but metrics.csv is missing, empty, cut or of the wrong shape; ``unreadable``).
STATUSES = ("finished", "diverged", "interrupted", "incomplete", "damaged", "unreadable")

#: Files whose presence makes a folder a run folder (``point.yaml``: a grid point the pipeline
#: started, whose run never wrote anything: reported as incomplete, not left out).
RUN_FILES = ("run.json", "metrics.csv", "point.yaml")


@dataclass
class Run:
    """What one run directory holds: its axes, its status, its record and its curve."""

    path: Path
    axes: dict[str, Any]
    status: str
    info: dict[str, Any] = field(default_factory=dict)
    metrics: pd.DataFrame | None = None
    problem: str | None = None  # why the run is incomplete/damaged/unreadable

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


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories under ``paths``.

    Each path may be a run directory, one of its files, or any folder above run directories
    (searched recursively for :data:`RUN_FILES`, hidden folders such as ``.replaced/`` skipped).
    The result is sorted and free of duplicates.
    """
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_file():
            found[p.parent.resolve()] = None
        elif any((p / f).exists() for f in RUN_FILES):
            found[p.resolve()] = None
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                hidden = any(part.startswith(".") for part in f.relative_to(p).parts)
                if f.name in RUN_FILES and f.is_file() and not hidden:
                    found[f.parent.resolve()] = None
        elif p.name in RUN_FILES and p.parent.is_dir():
            found[p.parent.resolve()] = None  # a listed run whose file is gone: still a row
    return sorted(found)


def metrics_problem(text: str) -> str | None:
    """Why a metrics.csv's text cannot be trusted (None if it can): empty, no ``epoch`` column,
    a row with another number of fields than the header, a last row without its line end."""
    if not text.strip():
        return "metrics.csv is empty"
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    if "epoch" not in header:
        return f"metrics.csv has no epoch column (columns: {', '.join(header)[:80]})"
    if len(rows) < 2:
        return "metrics.csv has a header but no rows"
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            return f"metrics.csv line {i} has {len(r)} fields, the header {len(header)} (cut or mixed record)"
    if not text.endswith("\n"):
        return "metrics.csv's last row is cut (no line end)"
    return None


def read_metrics(path: str | Path) -> tuple[pd.DataFrame | None, str | None]:
    """A run folder's metrics.csv, numeric and sorted by epoch, or (None, why not)."""
    f = Path(path) / "metrics.csv"
    if not f.exists():
        return None, "no metrics.csv"
    try:
        text = f.read_text()
        problem = metrics_problem(text)
        if problem:
            return None, problem
        df = pd.read_csv(io.StringIO(text))
    except Exception as e:  # unreadable bytes, a parser error
        return None, f"metrics.csv unreadable: {type(e).__name__}: {e}"
    for c in df.columns:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    if df["epoch"].isna().any():
        return None, "metrics.csv has a row without an epoch number"
    return df.sort_values("epoch", kind="stable").reset_index(drop=True), None


def _read_info(path: Path) -> tuple[dict[str, Any], str, str | None]:
    """(run.json's object, status, problem) of a run folder."""
    rj = path / "run.json"
    if not rj.exists():
        if (path / "point.yaml").exists() and not (path / "metrics.csv").exists():
            return {}, "incomplete", "only point.yaml: the pipeline started this point but the run wrote nothing"
        return {}, "incomplete", "no run.json (still running, killed, or not started)"
    try:
        info = json.loads(rj.read_text())
        if not isinstance(info, dict):
            raise ValueError(f"expected a JSON object, got {type(info).__name__}")
        return info, str(info.get("status") or "unreadable"), None
    except Exception as e:
        return {}, "unreadable", f"run.json unreadable: {e}"


def load_run(path: str | Path) -> Run:
    """Read one run directory (or one of its files); never raises for a bad run."""
    path = Path(path)
    if path.name in RUN_FILES:
        path = path.parent
    axes = axes_from_path(path)
    metrics, bad_metrics = read_metrics(path)
    info, status, problem = _read_info(path)
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
    if status == "finished" and metrics is None:
        status, problem = "damaged", bad_metrics
    elif status == "finished" and not _metrics_agree(info, metrics):
        status, problem = "incomplete", "metrics.csv does not match run.json (a later run rewrote it?)"
    elif problem is None and bad_metrics and status != "finished" and (path / "metrics.csv").exists():
        problem = bad_metrics
    return Run(path=path, axes=axes, status=status, info=info, metrics=metrics, problem=problem)


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


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
