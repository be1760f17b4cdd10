"""Final train and test accuracy versus split level n per method (the key figure of this project).

Split-level methods (the control dashed among them) are lines over n; baselines are a marker
at n = 1 with a dotted line at their mean and a ± 1 sd band across; layerwise methods, for which
n does not apply, sit at their own labelled place after the last n.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .figdata import runs_on_budget
from .levels import level_axis
from .methods import Methods
from .style import agg, empty, finish, note, panel_title, rows_of_combos, top


def _marker_style(m: str, looks: Methods) -> dict[str, Any]:
    s = looks.style(m)
    return {"color": s.get("color"), "marker": s.get("marker") or "o", "ms": 5.5, "capsize": 3,
            "mfc": s.get("markerfacecolor", s.get("color")), "linewidth": 1.5, "zorder": s["zorder"] + 2}


def _panel(ax, d: pd.DataFrame, col: str, looks: Methods, legend: dict[str, Any]) -> None:
    a = agg(d, col)
    methods = looks.order(a["method"])
    axis = level_axis(d, looks, methods)
    for m in methods:
        r = a[a["method"] == m].sort_values("splits")
        role, style = looks.role(m), _marker_style(m, looks)
        if role.whole_network and not role.layerwise:  # a baseline: its level across the panel
            mean, sd = float(r["mean"].mean()), float(r["std"].mean())
            ax.axhline(mean, color=style["color"], linestyle=":", linewidth=1.3)
            ax.axhspan(mean - sd, mean + sd, color=style["color"], alpha=0.12, linewidth=0)
            r = r.iloc[:1]
        ls = looks.style(m).get("linestyle", "-") if len(r) > 1 and not role.whole_network else "none"
        h = ax.errorbar(axis.positions(m, r["splits"]), r["mean"], yerr=r["std"], linestyle=ls, gid=m, **style)
        legend.setdefault(m, h)
    axis.apply(ax)
    hi = float((a["mean"] + a["std"]).max())
    lo = float((a["mean"] - a["std"]).min())
    ax.set_ylim(max(0.0, min(lo - 0.03, 0.9)), max(1.005, hi + 0.01))


def draw_acc_vs_splits(summary: pd.DataFrame):
    """The figure and its note (see :func:`acc_vs_splits`)."""
    looks = Methods(summary)
    summary = runs_on_budget(summary, timed=False)
    fig, axes, found = rows_of_combos(summary, 2)
    ok_all = summary[summary["status"] == "finished"]
    legend: dict[str, Any] = {}
    for row, (ds, md) in zip(axes, found):
        ok = ok_all[(ok_all["dataset"] == ds) & (ok_all["model"] == md)]
        for ax, col, what in ((row[0], "final_train_acc", "final training accuracy"),
                              (row[1], "final_test_acc", "final test accuracy")):
            d = ok[ok[col].notna()]
            ax.set_title(f"{panel_title(ds, md)} — {what}", fontsize=10)
            if not len(d):
                empty(ax, f"no finished run with {col.replace('final_', '')}")
                continue
            _panel(ax, d, col, looks, legend)
            ax.set_xlabel("n (number of subnetworks)")
            ax.set_ylabel(what)
            ax.grid(alpha=0.3)
    order = looks.order(legend)

    def text(m: str) -> str:
        role = looks.role(m)
        return looks.label(m) + (" (n does not apply)" if role.layerwise else
                                 " (n=1; dotted = mean, band = ± 1 sd)" if role.whole_network else "")
    top(fig, "Final accuracy versus split level n (mean ± 1 sd over seeds)", [legend[m] for m in order],
        [text(m) for m in order], ncol=4)
    return fig, note(summary)


def acc_vs_splits(summary: pd.DataFrame, path_stem: Path | None = None,
                  formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Final train (left) and test (right) accuracy versus n, mean ± sd over seeds."""
    fig, text = draw_acc_vs_splits(summary)
    return finish(fig, text, path_stem, formats)
