"""The sweep figure (only when runs have variants, a config with a ``grid:``): final test (and
train) accuracy per variant, one panel per method and n, sorted, against the control at the
same n and a baseline at n = 1 with the same value of every setting those controls vary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .methods import Methods
from .rows import setting_text, sweep_fields
from .style import empty, excluded_note, finish, panel_title, top
from .sweeps import sweep_table


def _sweep_panel(ax, t: pd.DataFrame, fields: Sequence[str], looks: Methods, control: str | None,
                 reference: str) -> list[float]:
    """One method and n of a sweep: a row per variant, grouped by the controls' settings (e.g.
    init), best test accuracy first in each group; the controls as segments over their group.
    Returns the accuracies drawn (for the x range)."""
    varying = [f for f in fields if t[f].nunique() > 1]
    color = looks.color(str(t["method"].iloc[0]))
    y, ticks, labels, drawn = 0.0, [], [], []
    for controls, g in t.groupby("controls", sort=True):
        fixed = {kv.split("=")[0] for kv in controls.split(", ") if kv}
        first = y
        for _, r in g.iterrows():
            ticks.append(y)
            labels.append(", ".join(f"{f}={setting_text(r[f])}" for f in varying if f not in fixed)
                          or r["variant"] or "(no variant)")
            if r["test_acc"] == r["test_acc"]:
                ax.errorbar([r["test_acc"]], [y], xerr=[0.0 if r["test_sd"] != r["test_sd"] else r["test_sd"]],
                            fmt="o", ms=5, capsize=2, color=color, zorder=4)
                ax.scatter([r["train_acc"]], [y], s=26, facecolors="none", edgecolors=color, zorder=4)
                drawn += [r["test_acc"], r["train_acc"]]
            else:  # no finished run of this variant: say why
                ax.text(0.01, y, "× " + r["runs_text"].replace("**", ""), transform=ax.get_yaxis_transform(),
                        va="center", fontsize=7, color="#8b0000")
            y += 1
        for col, method, style in (("control_test_acc", control, "--"), ("ref_test_acc", reference, ":")):
            x = g[col].iloc[0]
            if x == x and method:
                ax.vlines(x, first - 0.45, y - 0.55, colors=looks.color(method), linestyles=style, linewidth=1.6,
                          zorder=3)
                drawn.append(x)
        if controls:
            ax.text(0.99, first - 0.6, f"controls at {controls}", transform=ax.get_yaxis_transform(), ha="right",
                    va="bottom", fontsize=7, color="0.35")
        y += 1  # a gap (and room for the header) between groups
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_ylim(y - 1.4, -1.2)  # first row on top
    ax.grid(axis="x", alpha=0.3)
    ax.grid(axis="y", alpha=0.0)
    return drawn


def sweep(summary: pd.DataFrame, reference: str = "adam", path_stem: Path | None = None,
          formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Final test (and train) accuracy per variant: a panel per dataset/model/method/n, a row per
    variant (sorted), against the control at the same n and ``reference`` at n = 1 (see
    :func:`tssm.reporting.sweeps.sweep_table` for which control runs each variant is compared with)."""
    looks = Methods(summary, [reference])
    control = looks.control()
    table = sweep_table(summary, reference) if len(summary) else pd.DataFrame()
    panels = list(table.groupby(["dataset", "model", "method", "splits"], sort=False)) if len(table) else []
    if not panels:
        fig, ax = plt.subplots(figsize=(6, 3))
        empty(ax, "no runs with variants")
        return finish(fig, excluded_note(summary), path_stem, formats)
    ncol = min(len(panels), max(1, min(3, table["splits"].nunique())))
    nrow = math.ceil(len(panels) / ncol)
    rows = [len(g) + 2 * g["controls"].nunique() for _, g in panels]
    heights = [max(rows[i * ncol:(i + 1) * ncol]) * 0.22 + 0.9 for i in range(nrow)]
    fig = plt.figure(figsize=(6.4 * ncol, sum(heights) + 0.4))
    grid = fig.add_gridspec(nrow, ncol, height_ratios=heights)
    fields = sweep_fields(summary)
    for i, ((ds, md, method, n), t) in enumerate(panels):
        ax = fig.add_subplot(grid[i // ncol, i % ncol])
        drawn = [v for v in _sweep_panel(ax, t, fields, looks, control, reference) if v == v]
        if drawn:
            ax.set_xlim(max(0.0, min(drawn) - 0.02), min(1.0, max(drawn) + 0.02) + 0.005)
        ax.set_title(f"{panel_title(ds, md)} — {looks.label(method)}, n={int(n)}", fontsize=10)
        ax.set_xlabel("final accuracy")
    handles = [
        plt.Line2D([], [], marker="o", linestyle="none", color="0.2", label="test accuracy (mean ± 1 sd over seeds)"),
        plt.Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", color="0.2", label="train accuracy"),
        *([plt.Line2D([], [], linestyle="--", color=looks.color(control), label=f"{looks.label(control)}, same n")]
          if control else []),
        plt.Line2D([], [], linestyle=":", color=looks.color(reference), label=f"{looks.label(reference)}, n=1"),
    ]
    top(fig, "Sweep: final test accuracy per variant (best first), against the controls with the same settings",
        handles, [h.get_label() for h in handles], ncol=4)
    return finish(fig, excluded_note(summary), path_stem, formats)
