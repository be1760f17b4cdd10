"""What every figure shares: the panels' layout, titles, legends, notes and files.

Looks of methods come from :class:`tssm.reporting.methods.Methods` (declared on each Solver
class); this module lays out panels and writes the files. Runs that did not finish are left
out of every curve and average, and each figure names them in a note under it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .methods import Methods
from .rows import has_variants, presets_of
from .tables import resources_cell

os.environ.setdefault("MPLBACKEND", "Agg")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DATASET_ORDER = ["mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "digits"]
DATASET_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "kmnist": "KMNIST", "cifar10": "CIFAR-10",
                  "cifar100": "CIFAR-100", "digits": "digits (8x8)"}
#: The figure that shows the variants one by one (the others pool them).
SWEEP_FIGURE = "sweep"
#: Font sizes: tick and legend text, notes, panel titles (readable at 100% zoom of a 130 dpi PNG).
SMALL, NOTE, TITLE = 8, 7.5, 10


def combos(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, model) pairs present, paper datasets first."""
    if not len(df) or "dataset" not in df or "model" not in df:
        return []
    pairs = {(str(d), str(m)) for d, m in df[["dataset", "model"]].dropna().itertuples(index=False)}
    rank = {d: i for i, d in enumerate(DATASET_ORDER)}
    return sorted(pairs, key=lambda p: (rank.get(p[0], len(rank)), p[0], p[1]))


def panel_title(dataset: str, model: str) -> str:
    return f"{DATASET_LABELS.get(dataset, dataset)} ({model})"


def empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.35", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def excluded_note(summary: pd.DataFrame, limit: int = 6) -> str:
    """A one-paragraph note naming the runs left out because they did not finish."""
    if not len(summary):
        return ""
    bad = summary[summary["status"] != "finished"]
    if not len(bad):
        return ""
    items = []
    for r in bad.itertuples():
        variant = getattr(r, "variant", None)
        variant = f" {variant}" if isinstance(variant, str) and variant else ""
        items.append(f"{r.dataset}/{r.model} {r.method} n={r.splits} seed {r.seed}{variant}: {r.status}")
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"Excluded (not finished): {'; '.join(items[:limit])}{more}"


def note(summary: pd.DataFrame, apart: Sequence[str] = ()) -> str:
    """The note under a figure: the preset its runs share (if one), that it pools variants (if
    any line averages several; ``apart``: further columns the figure draws apart, e.g. preset)
    and which runs it leaves out."""
    presets = presets_of(summary)
    preset = f"Runs of preset {presets[0]}." if len(presets) == 1 else ""
    pooled = ""
    line = ["dataset", "model", "method", "splits", *apart]
    most = int(summary.fillna({c: "" for c in apart}).groupby(line)["variant"].nunique(dropna=False).max()) \
        if has_variants(summary) else 1
    if most > 1:  # some line averages runs of different variants
        pooled = (f"Variants pooled: each method and n averages over its variants (up to {most}); "
                  f"the {SWEEP_FIGURE} figure shows them one by one.")
    return "\n".join(x for x in (preset, pooled, excluded_note(summary)) if x)


def join_notes(*notes: str | None) -> str:
    return "\n".join(n for n in notes if n)


def top(fig, title: str, handles: Sequence[Any] = (), labels: Sequence[str] = (), ncol: int = 5) -> None:
    """Lay the panels out, then put the legend (once, for the whole figure) and the title above
    them (no overlap, no gap)."""
    fig.tight_layout()
    y = 1.0
    if handles:
        leg = fig.legend(list(handles), list(labels), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                         ncol=min(len(handles), ncol), fontsize=SMALL, frameon=False)
        fig.canvas.draw()
        y = leg.get_window_extent().transformed(fig.transFigure.inverted()).y1
    fig.suptitle(title, fontsize=11, y=y + 0.005, va="bottom")


def legend_columns(fig, handles: Sequence[Any], inches_per_entry: float = 2.3) -> int:
    """As many legend columns as fit the figure's width (at least 1)."""
    return max(1, min(len(handles), int(fig.get_figwidth() // inches_per_entry)))


def finish(fig, text: str | None, path_stem: Path | None, formats: Sequence[str]) -> list[Path]:
    """Put the note under the figure, write it in each format, close it; the files written."""
    if text:
        fig.text(0.01, -0.01, text, fontsize=NOTE, color="#8b0000", ha="left", va="top", wrap=True)
    written = []
    if path_stem is not None:
        path_stem.parent.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            p = path_stem.with_suffix(f".{fmt}")
            fig.savefig(p, dpi=130, bbox_inches="tight")
            written.append(p)
    plt.close(fig)
    return written


def resources_label(ok: pd.DataFrame, method: str, methods: Methods, extra: str = "") -> str:
    """A method's legend entry with how its runs in ``ok`` used their cores: 'Adam (n=1, 1 rank × 2 threads)'."""
    rows = ok[ok["method"] == method] if len(ok) else ok
    inside = ", ".join(x for x in (extra, resources_cell(rows) if len(rows) else "") if x)
    return f"{methods.label(method)} ({inside})" if inside else methods.label(method)


def cores_of(rows: pd.DataFrame) -> str:
    """'2×1': ranks × threads of the runs of one bar (several joined by '/')."""
    pairs = rows[["workers", "threads"]].drop_duplicates() if len(rows) else rows
    return "/".join(f"{int(w)}×{int(t)}" if w == w and t == t else "?" for w, t in
                    pairs.itertuples(index=False)) if len(rows) else ""


def execution_note(ok: pd.DataFrame) -> str:
    """The resources of the timed runs: an equal-resources budget ('equal resources: 2 cores per
    run'), else how every run executed ('1 rank × 1 thread per run'), and where."""
    devices = sorted({str(d).split(":")[0] for d in ok.get("device", pd.Series(dtype=object)).dropna()})
    where = "/".join(devices) if devices else "?"
    cores = pd.to_numeric(ok.get("cores", pd.Series(dtype=float)), errors="coerce").dropna()
    if len(cores):
        return f"equal resources: {int(cores.max())} cores per run ({where})"
    return f"{resources_cell(ok)} per run ({where})"


def rows_of_combos(summary: pd.DataFrame, ncols: int, width: float = 4.8, height: float = 3.5):
    """A figure with a row of ``ncols`` panels per dataset/model."""
    found = combos(summary) or [("?", "?")]
    fig, axes = plt.subplots(len(found), ncols, figsize=(width * ncols, height * len(found) + 0.6), squeeze=False)
    return fig, axes, found


def agg(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """Mean, sd (0 with one value) and count of ``col`` per method and n."""
    g = df.groupby(["method", "splits"])[col]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def offsets(count: int, width: float = 0.12) -> list[float]:
    """Horizontal offsets that set ``count`` methods side by side around each n."""
    return [(i - (count - 1) / 2) * width for i in range(count)]


def split_ticks(ax, levels: Sequence[Any], extra: dict[float, str] | None = None) -> None:
    """One tick per split level present (and ``extra`` {position: label}), with room for the
    side-by-side markers on either side."""
    levels = sorted(set(int(n) for n in levels if n == n))
    ticks = {float(n): str(n) for n in levels}
    ticks.update(extra or {})
    if ticks:
        pos = sorted(ticks)
        ax.set_xticks(pos)
        ax.set_xticklabels([ticks[p] for p in pos])
        ax.set_xlim(min(pos) - 0.6, max(pos) + 0.6)


def budget_panels(summary: pd.DataFrame, width: float = 7.0, height: float = 3.8):
    """A speed figure's panels: a row per dataset/model, a panel per resources (each
    equal-resources budget, largest first, then the plain runs), so that a panel compares only
    runs that had the same cores and the figure still shows every n the runs have. Returns the
    figure and [(ax, dataset, model, runs of the panel)]."""
    found = combos(summary) or [("?", "?")]
    cells = []
    for ds, md in found:
        d = summary[(summary["dataset"] == ds) & (summary["model"] == md)] if len(summary) else summary
        cores = pd.to_numeric(d["cores"], errors="coerce") if "cores" in d else pd.Series(float("nan"), d.index)
        budgets = sorted(cores.dropna().unique(), reverse=True)
        groups = [d[cores == c] for c in budgets] + ([d[cores.isna()]] if cores.isna().any() or not budgets else [])
        cells.append((ds, md, groups))
    ncol = max(len(g) for _, _, g in cells)
    fig, axes = plt.subplots(len(cells), ncol, figsize=(width * ncol, height * len(cells) + 0.6), squeeze=False)
    panels = []
    for row, (ds, md, groups) in zip(axes, cells):
        panels += [(ax, ds, md, g) for ax, g in zip(row, groups)]
        for ax in row[len(groups):]:
            fig.delaxes(ax)
    return fig, panels
