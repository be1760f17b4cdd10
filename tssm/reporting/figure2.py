"""Figure 2 analogue: (a) seconds per epoch by method and n (bars, ranks × threads written in
each bar), (b) training accuracy per epoch, a panel per n in ``figure2_splits``, and (c) under
each, every compared method minus the control, so methods whose curves coincide are told apart.
One legend for the whole figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .. import paper
from .curves import acc_ylim, difference_panel, draw_curves, legend_handle, paper_stars, star_handle
from .figdata import at_split_level, runs_on_budget
from .methods import Methods
from .style import (SMALL, combos, cores_of, empty, execution_note, finish, legend_columns, note, panel_title,
                    resources_label, top)
from .tables import resources_cell


def pick_combo(summary: pd.DataFrame, dataset: str | None, model: str | None) -> tuple[str, str] | None:
    """The dataset/model of Figure 2: the one asked for, the paper's, else the one with most n."""
    found = combos(summary)
    if dataset or model:
        match = [c for c in found if (dataset is None or c[0] == dataset) and (model is None or c[1] == model)]
        return match[0] if match else None
    if paper.FIGURE2_SETUP in found:
        return paper.FIGURE2_SETUP
    if not found:
        return None
    levels = {c: summary[(summary["dataset"] == c[0]) & (summary["model"] == c[1])]["splits"].nunique() for c in found}
    return max(found, key=lambda c: (levels[c], -found.index(c)))


def figure2_levels(curves: pd.DataFrame, splits: Sequence[int], looks: Methods) -> list[int]:
    """The split levels of panel (b): those asked for that have curves, else all there are."""
    split_rows = ~curves["method"].map(looks.whole_network).astype(bool) & (curves["splits"] > 1)
    have = sorted(curves.loc[split_rows, "splits"].dropna().astype(int).unique())
    asked = [n for n in splits if n in have]
    return asked or have


def _bars(ax, ok: pd.DataFrame, looks: Methods, paper_setup: bool) -> None:
    """Panel (a): a bar per method and n (mean ± sd over seeds), ranks × threads written inside
    each bar near its foot, clear of the error bar."""
    ok = ok.copy()
    ok["n"] = ok["splits"].astype(int)
    methods = looks.order(ok["method"])
    order = sorted(ok["n"].unique())
    sns.barplot(data=ok, x="n", y="sec_per_epoch", hue="method", hue_order=methods, order=order,
                palette={m: looks.color(m) for m in methods}, errorbar="sd", ax=ax, capsize=0.1,
                err_kws={"linewidth": 1}, legend=False)
    if paper_setup:
        for (m, n), v in paper.FIGURE2_SEC_PER_EPOCH.items():
            if n in order:
                ax.scatter([order.index(n)], [v], marker="_", s=300, color="black", zorder=6)
    y = 0.02 * ax.get_ylim()[1]
    for method, bars in zip(methods, ax.containers):
        for bar in bars:
            if not bar.get_height() == bar.get_height() or not bar.get_height():
                continue
            n = order[min(len(order) - 1, max(0, round(bar.get_x() + bar.get_width() / 2)))]
            ax.text(bar.get_x() + bar.get_width() / 2, y, cores_of(ok[(ok["method"] == method) & (ok["n"] == n)]),
                    rotation=90, ha="center", va="bottom", fontsize=SMALL, color="black", zorder=7,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.75, "linewidth": 0},
                    gid=f"resources:{method}")
    ax.set_xlabel("n (subnetworks; whole-network methods at n=1) — in each bar: ranks × threads of its runs")
    ax.set_ylabel("seconds per epoch (training clock)")
    ax.grid(axis="y", alpha=0.3)


def draw_figure2(summary: pd.DataFrame, curves: pd.DataFrame, splits: Sequence[int] = paper.FIGURE2_SPLITS,
                 dataset: str | None = None, model: str | None = None):
    """Figure 2 as a matplotlib figure, and its note (see :func:`figure2`)."""
    looks = Methods(summary, curves["method"] if len(curves) else ())
    summary, curves = runs_on_budget(summary, timed=True), runs_on_budget(curves, timed=True)
    combo = pick_combo(summary, dataset, model)
    if combo is None:
        fig, (ax_t, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2))
        empty(ax_t, "no runs")
        empty(ax_a, "no runs")
        return fig, None
    ds, md = combo
    s = summary[(summary["dataset"] == ds) & (summary["model"] == md)]
    c = curves[(curves["dataset"] == ds) & (curves["model"] == md) & curves["train_acc"].notna()] if len(curves) \
        else curves
    levels = figure2_levels(c, splits, looks) if len(c) else []
    control = looks.control(c["method"]) if len(c) else None
    k, rows = max(1, len(levels)), 3 if control and levels else 2
    fig = plt.figure(figsize=(max(10.0, 4.0 * k), 4.0 + 3.4 * (rows - 1)))
    grid = fig.add_gridspec(rows, k, height_ratios=[1.1, 1, 0.75][:rows])
    ax_t = fig.add_subplot(grid[0, :])
    ok = s[(s["status"] == "finished") & s["sec_per_epoch"].notna()].copy()
    ax_t.set_title(f"(a) time per epoch — {panel_title(ds, md)}; {execution_note(ok)}", fontsize=10)
    if len(ok):
        _bars(ax_t, ok, looks, combo == paper.FIGURE2_SETUP)
    else:
        empty(ax_t, "no finished run with a training clock")
    if not levels:
        ax = fig.add_subplot(grid[1, 0])
        empty(ax, f"no finished run with train_acc at n in {list(splits)}")
        ax.set_title("(b) training accuracy", fontsize=10)
        fig.tight_layout()
        return fig, note(s)
    first = first_d = None
    for i, n in enumerate(levels):
        ax = fig.add_subplot(grid[1, i], sharey=first)
        first = first or ax
        d = at_split_level(c, n, looks)
        methods = looks.order(d["method"])
        draw_curves(ax, d, methods, looks)
        drawn = []
        if combo == paper.FIGURE2_SETUP:
            values = {m: v for (m, nn), v in paper.FIGURE2_FINAL_TRAIN_ACC.items()
                      if m in methods and nn == (1 if looks.whole_network(m) else n)}
            last, lo = float(d["epoch"].max()), float(d["epoch"].min())
            drawn = paper_stars(ax, values, last, max(last - lo, 1.0), looks)
        split_rows = ok[(ok["splits"] == n) & ~ok["method"].map(looks.whole_network).astype(bool)] if len(ok) else ok
        where = f"\nsplit methods: {resources_cell(split_rows)}" if len(split_rows) else ""
        ax.set_title(f"(b) training accuracy, n = {n}{where}", fontsize=10)
        ax.set_ylabel("training accuracy" if i == 0 else "")
        if i == 0:
            acc_ylim(ax, c, drawn)
        ax.grid(alpha=0.3)
        if rows == 2:
            ax.set_xlabel("epoch")
            continue
        axd = fig.add_subplot(grid[2, i], sharex=ax, sharey=first_d)
        first_d = first_d or axd
        if (d["method"] == control).any():
            difference_panel(axd, d, control, methods, looks)
        else:
            empty(axd, f"no {looks.label(control)} at n={n}")
        axd.set_title(f"(c) minus {looks.label(control)}, n = {n}", fontsize=10)
        axd.set_xlabel("epoch")
        axd.set_ylabel("points of accuracy" if i == 0 else "")
        axd.grid(alpha=0.3)
    methods = looks.order(c["method"])
    hs = [legend_handle(m, looks) for m in methods]
    labels = [resources_label(ok, m, looks, "layerwise" if looks.role(m).layerwise else
                              "n=1" if looks.whole_network(m) else "") for m in methods]
    if combo == paper.FIGURE2_SETUP:
        hs += [star_handle(), plt.Line2D([], [], marker="_", markersize=14, linestyle="none", color="black")]
        labels += [hs[-2].get_label(), "paper Fig. 2(b) s/epoch"]
    top(fig, f"Figure 2 analogue: speed and accuracy by number of subnetworks\n{execution_note(ok)}; "
             f"legend: method (ranks × threads)", hs, labels, ncol=legend_columns(fig, hs, 3.2))
    return fig, note(s)


def figure2(summary: pd.DataFrame, curves: pd.DataFrame, splits: Sequence[int] = paper.FIGURE2_SPLITS,
            dataset: str | None = None, model: str | None = None,
            path_stem: Path | None = None, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """(a) seconds per epoch by method and n; (b) training accuracy per epoch, a panel per n in
    ``splits`` (those present; all there are if none), whole-network methods at n = 1 in each;
    (c) each compared method minus the control."""
    fig, text = draw_figure2(summary, curves, splits, dataset, model)
    return finish(fig, text, path_stem, formats)
