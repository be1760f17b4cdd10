"""The verdict by budget as a figure: each compared method minus the control against epochs
(test and train accuracy, mean and 95% interval over seeds), a row per dataset/model/n/preset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .curves import control_differences
from .figdata import runs_on_budget, with_preset
from .methods import Methods
from .stats import mean_ci
from .style import empty, finish, note, panel_title, top


def draw_budget(summary: pd.DataFrame, curves: pd.DataFrame):
    """The budget figure and its note: a row per dataset/model/n/preset of compared methods,
    test (left) and train (right) accuracy minus the control against epochs, mean and 95% interval."""
    looks = Methods(summary)
    control = looks.control()
    ok = runs_on_budget(summary[summary["status"] == "finished"], timed=False)
    curves = runs_on_budget(curves, timed=False)
    c = with_preset(ok, curves)
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
    return fig, note(summary, apart=("preset",))


def budget_figure(summary: pd.DataFrame, curves: pd.DataFrame, path_stem: Path | None = None,
                  formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """The paired difference to the control against epochs (see :func:`draw_budget`)."""
    fig, text = draw_budget(summary, curves)
    return finish(fig, text, path_stem, formats)
