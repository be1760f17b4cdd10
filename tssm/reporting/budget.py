"""How the verdict moves with the budget: each method at chosen epochs, and each compared
method's paired difference to the control against epochs (issue 22).

Runs evaluate every ``eval_every`` epochs with constant learning rates, so the state at
epoch 30 of a 100-epoch run is the state a 30-epoch run ends in: one run gives the verdict
at every evaluated epoch. Generic over the recorded columns: an epoch is counted for a run
where its metrics.csv holds a finite value at that epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..layout import AXES
from .curves import control_differences
from .figdata import runs_on_budget
from .methods import Methods
from .rows import setting_text
from .stats import comparable, interval_text, mean_ci, paired_table
from .style import empty, finish, note, panel_title, top
from .tables import fmt, runs_cell, table_head

#: Accuracy columns a budget view reads at each epoch: {curve column: summary column}.
AT_EPOCH = {"train_acc": "final_train_acc", "test_acc": "final_test_acc", "val_acc": "final_val_acc"}


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return setting_text(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _key(df: pd.DataFrame) -> pd.Series:
    """A run's grid point as one string, alike in the summary and the curves (None = NaN = '')."""
    return pd.Series(["/".join(_cell(v) for v in row) for row in df[list(AXES)].itertuples(index=False)],
                     index=df.index, dtype=object)


def at_epoch(summary: pd.DataFrame, curves: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """The finished runs of ``summary`` with their accuracies at ``epoch`` in the ``final_*``
    columns (NaN where the run has no evaluation there)."""
    s = summary[summary["status"] == "finished"].copy()
    c = curves[curves["epoch"] == epoch].copy()
    c.index = _key(c)
    c = c[~c.index.duplicated()]
    k = _key(s)
    for col, final in AT_EPOCH.items():
        s[final] = k.map(c[col]) if col in c and len(c) else float("nan")
    return s


def budget_table(summary: pd.DataFrame, curves: pd.DataFrame, epochs: Sequence[int]) -> pd.DataFrame:
    """Per epoch and dataset/model/method/n/preset/variant: runs with a value there, mean and sd
    of train and test accuracy, and the paired difference to the control (points, 95% CI)."""
    rows = []
    group = ["dataset", "model", "method", "splits", "preset", "cores", "variant"]
    summary = runs_on_budget(summary, timed=False)  # a budget's runs repeat the plain runs' numbers
    for e in epochs:
        s = comparable(at_epoch(summary, curves, e))
        paired = paired_table(s)
        paired = paired.set_index(group) if len(paired) else paired
        for key, g in s.groupby(group, sort=True):
            test, train = g["final_test_acc"].dropna(), g["final_train_acc"].dropna()
            if not len(test) and not len(train):
                continue
            p = paired.loc[key] if len(paired) and key in paired.index else None
            rows.append({"epoch": e, **dict(zip(group, key)), "runs": int(max(len(test), len(train))),
                         "train_acc": fmt(train), "test_acc": fmt(test),
                         "d_test": interval_text(p["d_final_test_acc"], p["ci_final_test_acc"], True) if p is not None
                         else "—",
                         "d_train": interval_text(p["d_final_train_acc"], p["ci_final_train_acc"], True) if p is not None
                         else "—"})
    return pd.DataFrame(rows)


def budget_markdown(summary: pd.DataFrame, curves: pd.DataFrame, epochs: Sequence[int]) -> str:
    """:func:`budget_table` as a markdown section, methods in role order (a line for each epoch
    no run evaluated)."""
    if not epochs:
        return ""
    looks = Methods(summary)
    control = looks.control() or "control"
    t = budget_table(summary, curves, epochs)
    missing = [e for e in epochs if not len(t) or e not in set(t["epoch"])]
    head = ["epoch", "dataset", "model", "method", "n", "preset", "variant", "runs", "train acc", "test acc",
            f"Δ test vs {control} (pts, 95% CI)", f"Δ train vs {control} (pts, 95% CI)"]
    lines = table_head(head)
    if len(t):
        rank = {m: i for i, m in enumerate(looks.order(t["method"]))}
        t = t.assign(_m=t["method"].map(rank)).sort_values(["epoch", "dataset", "model", "_m", "splits", "preset"])
        for r in t.to_dict("records"):
            lines.append("| " + " | ".join([str(r["epoch"]), r["dataset"], r["model"], r["method"],
                                             str(int(r["splits"])), r["preset"] or "—", r["variant"] or "—",
                                             str(r["runs"]), r["train_acc"], r["test_acc"], r["d_test"],
                                             r["d_train"]]) + " |")
    gone = f"\n\nNo run has an evaluation at epoch {', '.join(map(str, missing))}." if missing else ""
    return (f"## Budget: the verdict at epochs {', '.join(map(str, epochs))}\n\nAccuracy at each epoch (mean ± sd "
            f"over the finished runs evaluated there); Δ: each compared method minus `{control}` at the same n, "
            f"preset and epoch, paired by seed, in points, 95% Student-t interval (bold: excludes 0).\n\n"
            + "\n".join(lines) + gone + "\n")


def _with_preset(summary: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    preset = summary.set_index(_key(summary))["preset"].astype(str)
    preset = preset[~preset.index.duplicated()]
    return curves.assign(preset=_key(curves).map(preset).fillna("nan"))


def draw_budget(summary: pd.DataFrame, curves: pd.DataFrame):
    """The budget figure and its note: a row per dataset/model/n/preset of compared methods,
    test (left) and train (right) accuracy minus the control against epochs, mean and 95% interval."""
    looks = Methods(summary)
    control = looks.control()
    ok = runs_on_budget(summary[summary["status"] == "finished"], timed=False)
    curves = runs_on_budget(curves, timed=False)
    c = _with_preset(ok, curves) if len(curves) and len(ok) else curves.assign(preset=None)
    compared = c[c["method"].map(lambda m: looks.role(m).paired).astype(bool)] if len(c) else c
    rows = sorted({(d, m, int(n), p) for d, m, n, p in compared[["dataset", "model", "splits", "preset"]]
                   .dropna().itertuples(index=False) if n > 1}) if control else []
    fig, axes = plt.subplots(max(1, len(rows)), 2, figsize=(11, 3.4 * max(1, len(rows)) + 0.6), squeeze=False)
    handles: dict[str, object] = {}
    if not rows:
        for ax in axes[0]:
            empty(ax, "no compared method with a control at the same n")
    for (ds, md, n, preset), axrow in zip(rows, axes):
        d = c[(c["dataset"] == ds) & (c["model"] == md) & (c["splits"] == n) & (c["preset"] == preset)]
        for ax, col, what in ((axrow[0], "test_acc", "test"), (axrow[1], "train_acc", "train")):
            ax.axhline(0.0, color=looks.color(control), linewidth=2.5, alpha=0.5, gid=control)
            diffs = control_differences(d[d[col].notna()], control, looks.order(d["method"]), looks, col)
            for m, j in diffs.items():
                g = j.groupby("epoch")["diff"].apply(lambda v: mean_ci(v.to_numpy())).apply(pd.Series)
                g.columns = ["mean", "half", "sd"]
                style = looks.style(m)
                line = ax.plot(g.index, g["mean"], color=style.get("color"), marker=style.get("marker") or "o",
                               linestyle=style.get("linestyle", "-"), linewidth=1.5, markersize=4, gid=m)[0]
                ax.fill_between(g.index, g["mean"] - g["half"].fillna(0), g["mean"] + g["half"].fillna(0),
                                color=style.get("color"), alpha=0.15, linewidth=0)
                handles.setdefault(m, line)
            where = f", preset {preset}" if preset not in ("nan", "None") else ""
            ax.set_title(f"{panel_title(ds, md)}, n = {n}{where} — {what} accuracy", fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"minus {looks.label(control)} (points)")
            ax.grid(alpha=0.3)
    order = looks.order(handles)
    top(fig, f"The verdict by budget: each method minus {looks.label(control) if control else 'the control'}, "
             f"paired by seed (mean, band = 95% interval)", [handles[m] for m in order],
        [looks.label(m) for m in order])
    return fig, note(summary)


def budget_figure(summary: pd.DataFrame, curves: pd.DataFrame, path_stem: Path | None = None,
                  formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """The paired difference to the control against epochs (see :func:`draw_budget`)."""
    fig, text = draw_budget(summary, curves)
    return finish(fig, text, path_stem, formats)
