"""Figure 1 analogue: training accuracy per epoch, a panel per dataset (and model) in a row.

A line per method (split-level methods at ``splits``, whole-network ones at n = 1), seeds as
a band (± 1 sd); stars mark the paper's final values of the methods drawn
(:data:`tssm.paper.FIGURE1_FINAL_TRAIN_ACC`). A second row draws each compared method's
difference to the control, so curves that coincide on the first row are told apart. With a
``preset`` (e.g. ``paper``, the paper's Figure 1 settings) it draws only that preset's runs, so
that a config running several presets does not average them into one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from .. import paper
from .curves import acc_ylim, difference_panel, draw_curves, paper_stars, star_handle
from .figdata import at_split_level, runs_of_preset, runs_on_budget
from .methods import Methods
from .style import combos, empty, finish, join_notes, legend_columns, note, panel_title, top


def figure1_combos(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """Panels of Figure 1: for a paper dataset run with the paper's Figure-1 model, only that
    model (CIFAR-10 also has the ResNet of Figure 2); any other dataset/model as it comes."""
    found = combos(summary)
    keep = []
    for ds, md in found:
        paper_model = paper.FIGURE1_SETUP.get(ds, (None, None))[0]
        if paper_model and md != paper_model and (ds, paper_model) in found:
            continue
        keep.append((ds, md))
    return keep


def _paper_values(dataset: str, model: str, methods: Sequence[str]) -> dict[str, float]:
    """The paper's Figure 1 values for the methods drawn (none unless the paper used this model)."""
    table = paper.figure1_values(dataset, model)
    return {m: table[m] for m in methods if m in table}


def level_label(m: str, splits: int, looks: Methods) -> str:
    """'gsADMM (n=2)', 'Adam (n=1)', 'dlADMM (layerwise)'."""
    role = looks.role(m)
    return looks.label(m) + (" (layerwise)" if role.layerwise else " (n=1)" if role.whole_network else f" (n={splits})")


def _stars_text(ax, dataset: str, model: str, values: dict[str, float]) -> None:
    if values:
        text = f"stars: paper, after {paper.FIGURE1_SETUP[dataset][1]} epochs"
    else:
        pm = paper.FIGURE1_SETUP.get(dataset, (None,))[0]
        text = "no paper values (" + (f"the paper used {pm} here" if pm else "not in the paper") + ")"
    ax.text(0.98, 0.03, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.4")


def draw_figure1(summary: pd.DataFrame, curves: pd.DataFrame, splits: int = paper.FIGURE1_SPLITS,
                 preset: str | None = None):
    """Figure 1 as a matplotlib figure, and the note to put under it (see :func:`figure1`)."""
    looks = Methods(summary, curves["method"] if len(curves) else ())
    summary, curves = runs_of_preset(summary, curves, preset)
    summary, curves = runs_on_budget(summary, timed=False), runs_on_budget(curves, timed=False)
    curves = at_split_level(curves, splits, looks)
    panels = figure1_combos(summary) or [("?", "?")]
    control = looks.control(curves["method"]) if len(curves) else None
    nrow = 2 if control else 1
    fig, axes = plt.subplots(nrow, len(panels), figsize=(max(5.5, 4.2 * len(panels)), 3.4 + 2.3 * (nrow - 1) + 0.6),
                             squeeze=False, sharex="col", gridspec_kw={"height_ratios": [3, 2][:nrow]})
    handles: dict[str, Any] = {}
    stars = False
    for j, (dataset, model) in enumerate(panels):
        ax = axes[0, j]
        d = curves[(curves["dataset"] == dataset) & (curves["model"] == model)] if len(curves) else curves
        d = d[d["train_acc"].notna()] if len(d) else d
        ax.set_title(panel_title(dataset, model), fontsize=10)
        if not len(d):
            empty(ax, f"no finished run with train_acc\nat n={splits} (or n=1 for whole-network methods)")
            if nrow == 2:
                empty(axes[1, j], "")
            continue
        methods = looks.order(d["method"])
        for m, line in draw_curves(ax, d, methods, looks).items():
            handles.setdefault(m, line)
        last, first = float(d["epoch"].max()), float(d["epoch"].min())
        values = _paper_values(dataset, model, methods)
        drawn = paper_stars(ax, values, last, max(last - first, 1.0), looks)
        stars = stars or bool(values)
        _stars_text(ax, dataset, model, values)
        nseeds = int(d.groupby("method")["seed"].nunique().max())
        ax.set_title(f"{panel_title(dataset, model)} — seeds: {nseeds}", fontsize=10)
        ax.set_ylabel("training accuracy")
        acc_ylim(ax, d, drawn)
        ax.grid(alpha=0.3)
        if nrow == 1:
            ax.set_xlabel("epoch")
            continue
        axd = axes[1, j]
        if not (d["method"] == control).any():
            empty(axd, f"no {looks.label(control)} at n={splits}")
            continue
        for m, line in difference_panel(axd, d, control, methods, looks).items():
            handles.setdefault(m, line)
        axd.set_xlabel("epoch")
        axd.set_ylabel(f"minus {looks.label(control)}\n(points of accuracy)", fontsize=8)
        axd.grid(alpha=0.3)
    order = looks.order(handles)
    hs = [handles[m] for m in order]
    labels = [level_label(m, splits, looks) for m in order]
    if stars:
        hs.append(star_handle())
        labels.append(hs[-1].get_label())
    sub = f"\nlower row: each split method minus {looks.label(control)}, seed by seed" if nrow == 2 else ""
    which = f"preset {preset}; " if preset else ""
    top(fig, f"Figure 1 analogue: training accuracy per epoch\n({which}split methods at n={splits}; "
             f"band = ± 1 sd over seeds){sub}", hs, labels, ncol=legend_columns(fig, hs))
    at_level = len(curves) and (~curves["method"].map(looks.whole_network).astype(bool)).any()
    missing = "" if at_level else f"No split-level method has finished runs at n={splits}."
    return fig, join_notes(missing, note(summary))


def figure1(summary: pd.DataFrame, curves: pd.DataFrame, splits: int = paper.FIGURE1_SPLITS,
            path_stem: Path | None = None, formats: Sequence[str] = ("png", "pdf"), preset: str | None = None) -> list[Path]:
    """Training accuracy per epoch, a panel per dataset in a row, a line per method, seeds as a
    ± 1 sd band, the paper's final values as stars; below, each compared method minus the control
    (only the runs of ``preset`` when given)."""
    fig, text = draw_figure1(summary, curves, splits, preset)
    return finish(fig, text, path_stem, formats)
