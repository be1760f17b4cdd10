"""Figures of a results tree: the paper's Figures 1 and 2, and what the paper did not measure.

Every figure is drawn from the recorded files, never by rerunning training, and written as
PNG and PDF. The files are read once: ``summary.csv`` (one row per run, coerced by
:func:`coerce_summary`) and the per-epoch curves of the finished runs it lists
(:func:`read_results`; :func:`from_runs` does the same from loaded runs). Each figure
function takes that coerced summary (and the curves, where it draws them):

``figure1_train_acc``  Figure 1 analogue: a row of panels, one per dataset (and model),
                       training accuracy per epoch, a line per method (split methods at
                       ``figure1_splits``, backprop at n = 1), seeds as a band (± 1 sd);
                       stars mark the paper's final values of the methods drawn
                       (:data:`tssm.paper.FIGURE1_FINAL_TRAIN_ACC`). A second row draws
                       each split method's difference to the ``frozen`` control, so curves
                       that coincide on the first row are told apart.
``figure2_speed``      Figure 2 analogue: (a) seconds per epoch by method and n (bars),
                       (b) training accuracy per epoch, one panel per n in ``figure2_splits``.
``acc_vs_splits``      final train and test accuracy versus split level n per method,
                       with sgd/adam as reference lines and the ``frozen`` control beside
                       gsADMM/gsAM: the key figure of this project.
``time_to_target``     training-clock seconds until the training accuracy first reaches a
                       target (default 0.9), versus n.
``speedup``            seconds per epoch of adam at n = 1 divided by each run's, versus n.
``sweep``              only when runs have variants (a config with a ``grid:``): final test
                       (and train) accuracy per variant, one panel per method and n, sorted,
                       against ``frozen`` at the same n and adam at n = 1 with the same value
                       of every setting those controls vary (e.g. init).

The other figures pool the variants of a method and n (their spread is the ± 1 sd) and say so.

Resources. A config may run the same points twice: plainly (one process, or ``workers``
ranks) and on an equal-resources budget (an experiment's ``cores: C``, run folders
``.../cores<C>/``: split methods as one rank per subnetwork, SGD/Adam as one process with C
threads). :func:`runs_on_budget` gives the speed figures (Figure 2, time to target, speedup)
the largest budget's runs and the accuracy figures (Figure 1, accuracy vs n) the plain ones,
per dataset/model, each falling back to every run when there are none of them. Every speed
figure writes in its title, legend or bar labels how each curve's runs used their cores
(ranks × threads, from run.json).

Curves that coincide stay visible: every method has one colour, line style, width and marker
(:data:`METHOD_STYLES`), the ``frozen`` control is drawn first as a wide translucent line,
the split methods on top of it, thinner, with markers at staggered epochs.

Runs that did not finish (diverged, interrupted, still running, unreadable) are left out
of every curve and average, and each figure names them in a note. Missing metric columns
give an empty panel with a note instead of an error.

Command line::

    python -m tssm.figures results/default                   # reads results/default/summary.csv
    python -m tssm.figures --summary S.csv --out-dir FIGDIR --target-acc 0.95
    tssm figures results/default --formats png               # the same, from the tssm CLI
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import layout, paper
from .summary import (AXES, SUMMARY_COLUMNS, SWEEP_CONTROL, Run, has_variants, load_runs, read_metrics,
                      resources_cell, setting_text, summarize, sweep_fields, sweep_table, time_to_target)

os.environ.setdefault("MPLBACKEND", "Agg")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

__all__ = [
    "FIGURES",
    "FigureData",
    "METHOD_COLORS",
    "METHOD_LABELS",
    "METHOD_STYLES",
    "acc_vs_splits",
    "coerce_summary",
    "curves_of",
    "draw_figure1",
    "draw_figure2",
    "draw_speedup",
    "draw_time_to_target",
    "figure1",
    "figure2",
    "from_runs",
    "make_figures",
    "read_results",
    "runs_on_budget",
    "speedup",
    "sweep",
    "time_to_target_figure",
]

# --------------------------------------------------------------------------- style
METHOD_ORDER = ["sgd", "adam", "dladmm", "gsadmm", "gsam", "frozen"]
SPLIT_METHODS = ("gsadmm", "gsam", "frozen")
BACKPROP_METHODS = ("sgd", "adam")
#: Methods drawn at n = 1 whatever the split level of a figure (end-to-end training).
WHOLE_NETWORK_METHODS = (*BACKPROP_METHODS, "dladmm")
METHOD_COLORS = {
    "sgd": "#2ca02c", "adam": "#d62728", "gsadmm": "#1f77b4", "gsam": "#ff7f0e", "frozen": "#7f7f7f",
    "dladmm": "#9467bd",
}
#: The one name of each method in every figure, legend and caption.
METHOD_LABELS = {"sgd": "SGD", "adam": "Adam", "gsadmm": "gsADMM", "gsam": "gsAM", "frozen": "frozen (control)",
                 "dladmm": "dlADMM"}
#: How each method's accuracy curve is drawn. The control is drawn first (lowest zorder) and
#: widest, translucent: a split method that coincides with it runs through its middle. The
#: split methods differ in line style, width and marker (hollow squares for gsAM, dots for
#: gsADMM), and their markers sit at different epochs (see :func:`_markevery`).
METHOD_STYLES: dict[str, dict[str, Any]] = {
    "frozen": {"linestyle": "-", "linewidth": 5.0, "alpha": 0.4, "marker": None, "zorder": 2},
    "sgd": {"linestyle": "-.", "linewidth": 1.5, "marker": "^", "zorder": 3},
    "adam": {"linestyle": (0, (1, 1.2)), "linewidth": 1.9, "marker": "v", "zorder": 3},
    "dladmm": {"linestyle": (0, (6, 1.5, 1, 1.5)), "linewidth": 1.5, "marker": "D", "zorder": 3},
    "gsam": {"linestyle": "--", "linewidth": 1.9, "marker": "s", "markersize": 7, "markerfacecolor": "white",
             "zorder": 4},
    "gsadmm": {"linestyle": "-", "linewidth": 1.1, "marker": "o", "markersize": 4.5, "zorder": 5},
}
_DEFAULT_STYLE = {"linestyle": "-", "linewidth": 1.4, "marker": "P", "zorder": 3}
DATASET_ORDER = ["mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "digits"]
DATASET_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "kmnist": "KMNIST", "cifar10": "CIFAR-10",
                  "cifar100": "CIFAR-100", "digits": "digits (8x8)"}

#: File stems this module writes (one PNG and one PDF each), from the catalogue in tssm.layout ...
FIGURES = tuple(layout.figure_stems(has_variants=False))
#: ... and this one too when any run has a variant.
SWEEP_FIGURE = "sweep"

#: Per-epoch metrics the figures read from each finished run's metrics.csv.
CURVE_COLUMNS = ("train_acc", "train_time_s")


def _color(method: str) -> str:
    return METHOD_COLORS.get(method, "#17becf")


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, str(method))


def _style(method: str) -> dict[str, Any]:
    return dict(METHOD_STYLES.get(method, _DEFAULT_STYLE))


def _methods_in(values: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    return [m for m in METHOD_ORDER if m in present] + sorted(m for m in present if m not in METHOD_ORDER)


def _combos(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, model) pairs present, paper datasets first."""
    if not len(df) or "dataset" not in df or "model" not in df:
        return []
    pairs = {(str(d), str(m)) for d, m in df[["dataset", "model"]].dropna().itertuples(index=False)}
    rank = {d: i for i, d in enumerate(DATASET_ORDER)}
    return sorted(pairs, key=lambda p: (rank.get(p[0], len(rank)), p[0], p[1]))


def _panel_title(dataset: str, model: str) -> str:
    return f"{DATASET_LABELS.get(dataset, dataset)} ({model})"


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.35", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _excluded_note(summary: pd.DataFrame, limit: int = 6) -> str:
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


def _note(summary: pd.DataFrame) -> str:
    """The note under a figure: that it pools variants (if any) and which runs it leaves out."""
    pooled = ""
    if has_variants(summary):
        most = int(summary.groupby(["dataset", "model", "method", "splits"])["variant"].nunique().max())
        pooled = (f"Variants pooled: each method and n averages over its variants (up to {most}); "
                  f"the {SWEEP_FIGURE} figure shows them one by one.")
    return "\n".join(x for x in (pooled, _excluded_note(summary)) if x)


def _top(fig, title: str, handles: Sequence[Any] = (), labels: Sequence[str] = (), ncol: int = 5) -> None:
    """Lay the panels out, then put the legend and the title above them (no overlap, no gap)."""
    fig.tight_layout()
    top = 1.0
    if handles:
        leg = fig.legend(list(handles), list(labels), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                         ncol=min(len(handles), ncol), fontsize=8, frameon=False)
        fig.canvas.draw()
        top = leg.get_window_extent().transformed(fig.transFigure.inverted()).y1
    fig.suptitle(title, fontsize=11, y=top + 0.005, va="bottom")


def _legend_columns(fig, handles: Sequence[Any], inches_per_entry: float = 2.3) -> int:
    """As many legend columns as fit the figure's width (at least 1)."""
    return max(1, min(len(handles), int(fig.get_figwidth() // inches_per_entry)))


def _finish(fig, note: str | None, path_stem: Path | None, formats: Sequence[str]) -> list[Path]:
    if note:
        fig.text(0.01, -0.01, note, fontsize=7, color="#8b0000", ha="left", va="top", wrap=True)
    written = []
    if path_stem is not None:
        path_stem.parent.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            p = path_stem.with_suffix(f".{fmt}")
            fig.savefig(p, dpi=130, bbox_inches="tight")
            written.append(p)
    plt.close(fig)
    return written


# --------------------------------------------------------------------------- data
def coerce_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Give a (possibly older or hand-made) summary every expected column, with numeric types.

    Done once when the results are read (:func:`read_results`, :func:`from_runs`); every figure
    function takes the coerced frame."""
    s = summary.copy()
    for c in SUMMARY_COLUMNS:
        if c not in s:
            s[c] = np.nan if c not in ("status",) else "finished"
    for c in ("splits", "seed", "cores", "workers", "threads"):
        s[c] = pd.to_numeric(s[c], errors="coerce")
    for c in ("final_train_acc", "final_test_acc", "final_train_loss", "sec_per_epoch", "time_to_target_s",
              "target_train_acc", "move_1"):
        s[c] = pd.to_numeric(s[c], errors="coerce")
    s["status"] = s["status"].fillna("unreadable").astype(str)
    return s


def _empty_curves() -> pd.DataFrame:
    return pd.DataFrame(columns=["epoch", *CURVE_COLUMNS, *AXES, "run_dir"])


def _curve_rows(metrics: pd.DataFrame | None, axes: dict[str, Any], run_dir: str) -> pd.DataFrame | None:
    """The drawn part of one run's metrics: epochs >= 1 (all rows if it has none), the
    :data:`CURVE_COLUMNS` it has, and its axes."""
    if metrics is None or "epoch" not in metrics or not len(metrics):
        return None
    m = metrics[metrics["epoch"] >= 1] if (metrics["epoch"] >= 1).any() else metrics
    m = m[["epoch", *(c for c in CURVE_COLUMNS if c in m)]].copy()
    for c in CURVE_COLUMNS:
        if c not in m:
            m[c] = np.nan
    for k in AXES:
        v = axes.get(k)
        m[k] = None if (isinstance(v, float) and math.isnan(v)) else v
    m["run_dir"] = run_dir
    return m


def _concat_curves(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return _empty_curves()
    out = pd.concat(frames, ignore_index=True)
    out["splits"] = pd.to_numeric(out["splits"], errors="coerce")
    return out


def curves_of(runs: Sequence[Run]) -> pd.DataFrame:
    """Long table (epoch, :data:`CURVE_COLUMNS`, axes, run_dir) of the *finished* runs, epochs >= 1."""
    return _concat_curves([_curve_rows(r.metrics, r.axes, str(r.path)) for r in runs if r.status == "finished"])


@dataclass
class FigureData:
    """What the figures draw from, read once: the coerced summary (one row per run) and the
    finished runs' curves (:func:`curves_of`)."""

    summary: pd.DataFrame
    curves: pd.DataFrame


def from_runs(runs: Sequence[Run], target: float = 0.9, summary: pd.DataFrame | None = None) -> FigureData:
    """FigureData of loaded runs (summarised here unless ``summary`` is given)."""
    summary = summarize(runs, target) if summary is None else summary
    return FigureData(coerce_summary(summary), curves_of(runs))


def read_results(summary_csv: str | Path, target: float | None = None,
                 extra_paths: Sequence[str | Path] = ()) -> FigureData:
    """Read ``summary.csv`` and the metrics.csv of each finished run it lists (``run_dir``,
    relative to the csv's folder unless absolute), once.

    ``target``: when it differs from the summary's ``target_train_acc``, the time to target
    is recomputed from each finished run's curve. ``extra_paths``: further runs (folders or
    run directories) not listed in the csv, summarised here."""
    summary_csv = Path(summary_csv)
    s = coerce_summary(pd.read_csv(summary_csv))
    base = summary_csv.parent
    retarget = target is not None and not (s["target_train_acc"] == target).all()
    frames, listed = [], set()
    for i, row in s.iterrows():
        if not isinstance(row["run_dir"], str):
            continue
        path = Path(row["run_dir"])
        path = path if path.is_absolute() else base / path
        listed.add(path.resolve())
        if row["status"] != "finished":
            continue
        metrics, _ = read_metrics(path)
        if retarget:
            s.loc[i, ["time_to_target_s", "epoch_to_target"]] = time_to_target(metrics, target)
        frames.append(_curve_rows(metrics, row.to_dict(), str(path)))
    if retarget:
        s["target_train_acc"] = target
    extra = [r for r in load_runs(extra_paths) if r.path.resolve() not in listed] if extra_paths else []
    if extra:
        s = coerce_summary(pd.concat([s, summarize(extra, 0.9 if target is None else target)], ignore_index=True))
        frames += [_curve_rows(r.metrics, r.axes, str(r.path)) for r in extra if r.status == "finished"]
    return FigureData(s, _concat_curves(frames))


def _at_split_level(df: pd.DataFrame, splits: int) -> pd.DataFrame:
    """Whole-network rows (backprop, dlADMM) at n = 1 and split-method rows at n = ``splits``."""
    if not len(df):
        return df
    whole = df["method"].isin(WHOLE_NETWORK_METHODS) & (df["splits"] == 1)
    sp = ~df["method"].isin(WHOLE_NETWORK_METHODS) & (df["splits"] == splits)
    return df[whole | sp]


def runs_on_budget(df: pd.DataFrame, timed: bool) -> pd.DataFrame:
    """The rows (runs or curve rows) a figure draws, chosen per dataset/model.

    ``timed`` (the speed figures): the runs of the largest equal-resources budget (``cores``),
    so that every method compared had the same cores. Otherwise (the accuracy figures): the
    runs without a budget, which a budget's runs would only repeat (a distributed run gives the
    serial run's numbers). A dataset/model without such runs keeps all of its rows."""
    if not len(df) or "cores" not in df:
        return df
    cores = pd.to_numeric(df["cores"], errors="coerce")
    key = [df["dataset"].astype(str), df["model"].astype(str)]
    if timed:
        top = cores.groupby(key).transform("max")
        keep = top.isna() | (cores == top)
    else:
        has_plain = cores.isna().groupby(key).transform("any")
        keep = ~has_plain | cores.isna()
    return df[keep]


def _resources_label(ok: pd.DataFrame, method: str, extra: str = "") -> str:
    """A method's legend entry with how its runs in ``ok`` used their cores: 'Adam (n=1, 1 rank × 2 threads)'."""
    rows = ok[ok["method"] == method] if len(ok) else ok
    inside = ", ".join(x for x in (extra, resources_cell(rows) if len(rows) else "") if x)
    return f"{_label(method)} ({inside})" if inside else _label(method)


def _cores_of(rows: pd.DataFrame) -> str:
    """'2×1': ranks × threads of the runs of one bar (several joined by '/')."""
    pairs = rows[["workers", "threads"]].drop_duplicates() if len(rows) else rows
    return "/".join(f"{int(w)}×{int(t)}" if w == w and t == t else "?" for w, t in
                    pairs.itertuples(index=False)) if len(rows) else ""


# --------------------------------------------------------------------------- accuracy curves
def _mean_sd(d: pd.DataFrame, col: str = "train_acc") -> pd.DataFrame:
    """Mean and sd (0 with one value) over seeds (and pooled variants) of ``col`` per epoch."""
    g = d.groupby("epoch")[col].agg(["mean", "std", "count"]).reset_index()
    g["std"] = g["std"].fillna(0.0)
    return g


def _markevery(index: int, count: int, points: int) -> tuple[int, int] | None:
    """Markers of the ``index``-th of ``count`` marked curves with ``points`` points: every
    ``step``-th point, each curve starting ``step / count`` later, so that curves lying on top
    of each other show their markers side by side."""
    if points <= 0:
        return None
    count = max(count, 1)
    step = max(count, round(points / 6))
    if step > points:  # too few points to stagger: mark every point
        return (0, 1)
    return ((index * step) // count, step)


def _draw_curves(ax, d: pd.DataFrame, methods: Sequence[str], col: str = "train_acc") -> dict[str, Any]:
    """One line per method (mean over seeds, band ± 1 sd), in :data:`METHOD_STYLES`, the
    control underneath; returns {method: line}."""
    stats = {m: _mean_sd(d[d["method"] == m], col) for m in methods}
    # markers are staggered among the split methods (the curves that may coincide)
    marked = [m for m in methods if _style(m).get("marker") and m not in WHOLE_NETWORK_METHODS]
    lines = {}
    for m in sorted(methods, key=lambda m: _style(m)["zorder"]):
        a = stats[m].dropna(subset=["mean"])
        if not len(a):
            continue
        style = _style(m)
        z = style.pop("zorder")
        alpha = style.pop("alpha", 1.0)
        if style.get("marker"):
            style["markevery"] = _markevery(marked.index(m) if m in marked else 0, len(marked), len(a))
            style.setdefault("markersize", 5)
            style["markeredgewidth"] = 1.1
        if (a["std"] > 0).any():
            ax.fill_between(a["epoch"], a["mean"] - a["std"], a["mean"] + a["std"], color=_color(m),
                            alpha=0.15, linewidth=0, zorder=1)
        (line,) = ax.plot(a["epoch"], a["mean"], color=_color(m), alpha=alpha, zorder=z, label=_label(m), gid=m,
                          **style)
        lines[m] = line
    return lines


def _paper_stars(ax, values: dict[str, float], x: float, span: float) -> list[float]:
    """The paper's values as stars at the last epoch, side by side; returns the values drawn."""
    drawn = []
    for k, (m, v) in enumerate(values.items()):
        ax.scatter([x + k * 0.025 * span], [v], marker="*", s=150, color=_color(m), edgecolor="black",
                   linewidth=0.6, zorder=7, clip_on=False, gid=f"paper:{m}")
        drawn.append(v)
    return drawn


def _star_handle() -> Line2D:
    return Line2D([], [], marker="*", markersize=11, linestyle="none", markerfacecolor="white",
                  markeredgecolor="black", label="paper's final value (colour = method)")


def _acc_ylim(ax, d: pd.DataFrame, extra: Sequence[float] = (), col: str = "train_acc") -> None:
    lo = float(d[col].min()) if len(d) else 0.5
    lo = min([lo, *extra])
    ax.set_ylim(max(0.0, min(0.5, lo - 0.05)), 1.01)


def _difference_panel(ax, d: pd.DataFrame, methods: Sequence[str], col: str = "train_acc") -> dict[str, Any]:
    """Each split method minus the frozen control (same n, same seed, same epoch), in points;
    mean ± 1 sd over seeds. Returns {method: line}; the control is the zero line."""
    key = ["seed", "epoch"]
    ctrl = d[d["method"] == "frozen"].groupby(key)[col].mean().rename("control")
    lines: dict[str, Any] = {}
    z = _style("frozen")
    ax.axhline(0.0, color=_color("frozen"), linewidth=z["linewidth"], alpha=z.get("alpha", 1.0), zorder=z["zorder"],
               gid="frozen")
    others = [m for m in methods if m != "frozen" and m not in WHOLE_NETWORK_METHODS]
    diffs = {}
    for m in others:
        own = d[d["method"] == m].groupby(key)[col].mean().rename("own")
        j = pd.concat([own, ctrl], axis=1, join="inner").dropna().reset_index()
        if len(j):
            j["diff"] = 100 * (j["own"] - j["control"])
            j["method"] = m
            diffs[m] = j
    if diffs:
        lines = _draw_curves(ax, pd.concat(diffs.values(), ignore_index=True), list(diffs), col="diff")
        lim = max(0.05, *(float(abs(j["diff"]).max()) for j in diffs.values()))
        ax.set_ylim(-1.25 * lim, 1.25 * lim)
    return lines


# --------------------------------------------------------------------------- Figure 1
def _figure1_combos(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """Panels of Figure 1: for a paper dataset run with the paper's Figure-1 model, only that
    model (CIFAR-10 also has the ResNet of Figure 2); any other dataset/model as it comes."""
    combos = _combos(summary)
    keep = []
    for ds, md in combos:
        paper_model = paper.FIGURE1_SETUP.get(ds, (None, None))[0]
        if paper_model and md != paper_model and (ds, paper_model) in combos:
            continue
        keep.append((ds, md))
    return keep


def _figure1_paper(dataset: str, model: str, methods: Sequence[str]) -> dict[str, float]:
    """The paper's Figure 1 values for the methods drawn (none unless the paper used this model)."""
    if paper.FIGURE1_SETUP.get(dataset, (None,))[0] != model:
        return {}
    table = paper.FIGURE1_FINAL_TRAIN_ACC.get(dataset, {})
    return {m: table[m] for m in methods if m in table}


def draw_figure1(summary: pd.DataFrame, curves: pd.DataFrame, splits: int = paper.FIGURE1_SPLITS):
    """Figure 1 as a matplotlib figure, and the note to put under it (see :func:`figure1`)."""
    summary, curves = runs_on_budget(summary, timed=False), runs_on_budget(curves, timed=False)
    curves = _at_split_level(curves, splits)
    combos = _figure1_combos(summary) or [("?", "?")]
    with_control = len(curves) and (curves["method"] == "frozen").any()
    nrow = 2 if with_control else 1
    ncol = len(combos)
    fig, axes = plt.subplots(nrow, ncol, figsize=(max(5.5, 4.2 * ncol), 3.4 + 2.3 * (nrow - 1) + 0.6),
                             squeeze=False, sharex="col", gridspec_kw={"height_ratios": [3, 2][:nrow]})
    handles: dict[str, Any] = {}
    stars = False
    for j, (dataset, model) in enumerate(combos):
        ax = axes[0, j]
        d = curves[(curves["dataset"] == dataset) & (curves["model"] == model)] if len(curves) else curves
        d = d[d["train_acc"].notna()] if len(d) else d
        ax.set_title(_panel_title(dataset, model), fontsize=10)
        if not len(d):
            _empty(ax, f"no finished run with train_acc\nfor split methods at n={splits} or backprop at n=1")
            if nrow == 2:
                _empty(axes[1, j], "")
            continue
        methods = _methods_in(d["method"].tolist())
        for m, line in _draw_curves(ax, d, methods).items():
            handles.setdefault(m, line)
        last, first = float(d["epoch"].max()), float(d["epoch"].min())
        values = _figure1_paper(dataset, model, methods)
        drawn = _paper_stars(ax, values, last, max(last - first, 1.0))
        if values:
            stars = True
            pe = paper.FIGURE1_SETUP[dataset][1]
            ax.text(0.98, 0.03, f"stars: paper, after {pe} epochs", transform=ax.transAxes, ha="right",
                    va="bottom", fontsize=7, color="0.4")
        else:
            pm = paper.FIGURE1_SETUP.get(dataset, (None,))[0]
            why = f"the paper used {pm} here" if pm else "not in the paper"
            ax.text(0.98, 0.03, f"no paper values ({why})", transform=ax.transAxes, ha="right",
                    va="bottom", fontsize=7, color="0.4")
        nseeds = int(d.groupby("method")["seed"].nunique().max())
        ax.set_title(f"{_panel_title(dataset, model)} — seeds: {nseeds}", fontsize=10)
        ax.set_ylabel("training accuracy")
        _acc_ylim(ax, d, drawn)
        ax.grid(alpha=0.3)
        if nrow == 1:
            ax.set_xlabel("epoch")
            continue
        axd = axes[1, j]
        if not (d["method"] == "frozen").any():
            _empty(axd, f"no frozen control at n={splits}")
            continue
        for m, line in _difference_panel(axd, d, methods).items():
            handles.setdefault(m, line)
        axd.set_xlabel("epoch")
        axd.set_ylabel(f"minus {_label('frozen')}\n(points of accuracy)", fontsize=8)
        axd.grid(alpha=0.3)
    order = _methods_in(list(handles))
    hs = [handles[m] for m in order]
    labels = [_label(m) + (" (layerwise)" if m == "dladmm" else " (n=1)" if m in WHOLE_NETWORK_METHODS
                           else f" (n={splits})") for m in order]
    if stars:
        hs.append(_star_handle())
        labels.append(hs[-1].get_label())
    sub = ("\nlower row: each split method minus the frozen control, seed by seed" if nrow == 2 else "")
    _top(fig, f"Figure 1 analogue: training accuracy per epoch\n(split methods at n={splits}; "
              f"band = ± 1 sd over seeds){sub}", hs, labels, ncol=_legend_columns(fig, hs))
    return fig, _note(summary)


def figure1(summary: pd.DataFrame, curves: pd.DataFrame, splits: int = paper.FIGURE1_SPLITS,
            path_stem: Path | None = None, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Training accuracy per epoch, a panel per dataset in a row, a line per method, seeds as a
    ± 1 sd band, the paper's final values as stars; below, each split method minus frozen."""
    fig, note = draw_figure1(summary, curves, splits)
    return _finish(fig, note, path_stem, formats)


# --------------------------------------------------------------------------- Figure 2
def _execution_note(ok: pd.DataFrame) -> str:
    """The resources of the timed runs: an equal-resources budget ('equal resources: 2 cores per
    run'), else how every run executed ('1 rank × 1 thread per run'), and where."""
    devices = sorted({str(d).split(":")[0] for d in ok.get("device", pd.Series(dtype=object)).dropna()})
    where = "/".join(devices) if devices else "?"
    cores = pd.to_numeric(ok.get("cores", pd.Series(dtype=float)), errors="coerce").dropna()
    if len(cores):
        return f"equal resources: {int(cores.max())} cores per run ({where})"
    return f"{resources_cell(ok)} per run ({where})"


def _pick_combo(summary: pd.DataFrame, dataset: str | None, model: str | None) -> tuple[str, str] | None:
    combos = _combos(summary)
    if dataset or model:
        match = [c for c in combos if (dataset is None or c[0] == dataset) and (model is None or c[1] == model)]
        return match[0] if match else None
    if paper.FIGURE2_SETUP in combos:
        return paper.FIGURE2_SETUP
    if not combos:
        return None
    # the combination with the most split levels (ties: the first in paper order)
    levels = {c: summary[(summary["dataset"] == c[0]) & (summary["model"] == c[1])]["splits"].nunique() for c in combos}
    return max(combos, key=lambda c: (levels[c], -combos.index(c)))


def _figure2_levels(curves: pd.DataFrame, splits: Sequence[int]) -> list[int]:
    """The split levels of panel (b): those asked for that have curves, else all there are."""
    split_rows = ~curves["method"].isin(WHOLE_NETWORK_METHODS) & (curves["splits"] > 1)
    have = sorted(curves.loc[split_rows, "splits"].dropna().astype(int).unique())
    asked = [n for n in splits if n in have]
    return asked or have


def draw_figure2(summary: pd.DataFrame, curves: pd.DataFrame, splits: Sequence[int] = paper.FIGURE2_SPLITS,
                 dataset: str | None = None, model: str | None = None):
    """Figure 2 as a matplotlib figure, and its note (see :func:`figure2`)."""
    summary, curves = runs_on_budget(summary, timed=True), runs_on_budget(curves, timed=True)
    combo = _pick_combo(summary, dataset, model)
    if combo is None:
        fig, (ax_t, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2))
        _empty(ax_t, "no runs")
        _empty(ax_a, "no runs")
        return fig, None
    ds, md = combo
    s = summary[(summary["dataset"] == ds) & (summary["model"] == md)]
    c = curves[(curves["dataset"] == ds) & (curves["model"] == md) & curves["train_acc"].notna()] if len(curves) \
        else curves
    levels = _figure2_levels(c, splits) if len(c) else []
    k = max(1, len(levels))
    fig = plt.figure(figsize=(max(10.0, 4.0 * k), 7.8))
    grid = fig.add_gridspec(2, k, height_ratios=[1, 1])
    ax_t = fig.add_subplot(grid[0, :])
    ok = s[(s["status"] == "finished") & s["sec_per_epoch"].notna()].copy()
    # (a) bars
    ax_t.set_title(f"(a) time per epoch — {_panel_title(ds, md)}; {_execution_note(ok)}", fontsize=10)
    if len(ok):
        ok["n"] = ok["splits"].astype(int)
        methods = _methods_in(ok["method"].tolist())
        order = sorted(ok["n"].unique())
        sns.barplot(data=ok, x="n", y="sec_per_epoch", hue="method", hue_order=methods, order=order,
                    palette={m: _color(m) for m in methods}, errorbar="sd", ax=ax_t, capsize=0.1, err_kws={"linewidth": 1})
        if combo == paper.FIGURE2_SETUP:
            for (m, n), v in paper.FIGURE2_SEC_PER_EPOCH.items():
                if n in order:
                    ax_t.scatter([order.index(n)], [v], marker="_", s=300, color="black", zorder=6)
            ax_t.scatter([], [], marker="_", s=200, color="black", label="paper Fig. 2(b)")
        _bar_resources(ax_t, ok, methods, order)
        hs, labs = ax_t.get_legend_handles_labels()
        ax_t.legend(hs, [_resources_label(ok, x) if x in methods else x for x in labs], fontsize=7,
                    title="method (ranks × threads)", title_fontsize=7)
        ax_t.set_xlabel("n (subnetworks; SGD/Adam at n=1) — on each bar: ranks × threads of its runs")
        ax_t.set_ylabel("seconds per epoch (training clock)")
        ax_t.grid(axis="y", alpha=0.3)
    else:
        _empty(ax_t, "no finished run with a training clock")
    # (b) one panel per split level, the whole-network methods (n = 1) in each
    if not levels:
        ax = fig.add_subplot(grid[1, 0])
        _empty(ax, f"no finished run with train_acc at n in {list(splits)}")
        ax.set_title("(b) training accuracy", fontsize=10)
        fig.tight_layout()
        return fig, _note(s)
    first = None
    for i, n in enumerate(levels):
        ax = fig.add_subplot(grid[1, i], sharey=first)
        first = first or ax
        d = _at_split_level(c, n)
        methods = _methods_in(d["method"].tolist())
        _draw_curves(ax, d, methods)
        drawn = []
        if combo == paper.FIGURE2_SETUP:
            values = {m: v for (m, nn), v in paper.FIGURE2_FINAL_TRAIN_ACC.items()
                      if m in methods and nn == (1 if m in WHOLE_NETWORK_METHODS else n)}
            last, lo = float(d["epoch"].max()), float(d["epoch"].min())
            drawn = _paper_stars(ax, values, last, max(last - lo, 1.0))
        split_rows = ok[(ok["n"] == n) & ~ok["method"].isin(WHOLE_NETWORK_METHODS)] if len(ok) else ok
        where = f"\nsplit methods: {resources_cell(split_rows)}" if len(split_rows) else ""
        ax.set_title(f"(b) training accuracy, n = {n}{where}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training accuracy" if i == 0 else "")
        if i == 0:
            _acc_ylim(ax, c, drawn)
        ax.grid(alpha=0.3)
    methods = _methods_in(c["method"].tolist())
    hs = [Line2D([], [], color=_color(m), **{k: v for k, v in _style(m).items() if k != "zorder"}) for m in methods]
    labels = [_resources_label(ok, m, "n=1" if m in WHOLE_NETWORK_METHODS else "") for m in methods]
    if combo == paper.FIGURE2_SETUP:
        hs.append(_star_handle())
        labels.append(hs[-1].get_label())
    _top(fig, f"Figure 2 analogue: speed and accuracy by number of subnetworks\n{_execution_note(ok)}", hs, labels,
         ncol=_legend_columns(fig, hs, 3.2))
    return fig, _note(s)


def _bar_resources(ax, ok: pd.DataFrame, methods: Sequence[str], order: Sequence[int]) -> None:
    """Write ranks × threads on each bar of panel (a) (seaborn draws one container per method,
    in ``methods`` order; a bar's centre lies near its n's position)."""
    for method, bars in zip(methods, ax.containers):
        labels = []
        for bar in bars:
            n = order[min(len(order) - 1, max(0, round(bar.get_x() + bar.get_width() / 2)))]
            labels.append(_cores_of(ok[(ok["method"] == method) & (ok["n"] == n)]))
        ax.bar_label(bars, labels=labels, fontsize=6, padding=2, color="0.25", gid=f"resources:{method}")


def figure2(summary: pd.DataFrame, curves: pd.DataFrame, splits: Sequence[int] = paper.FIGURE2_SPLITS,
            dataset: str | None = None, model: str | None = None,
            path_stem: Path | None = None, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """(a) seconds per epoch by method and n; (b) training accuracy per epoch, a panel per n in
    ``splits`` (those present; all there are if none), SGD/Adam at n = 1 in each."""
    fig, note = draw_figure2(summary, curves, splits, dataset, model)
    return _finish(fig, note, path_stem, formats)


# --------------------------------------------------------------------------- beyond the paper
def _agg(df: pd.DataFrame, col: str) -> pd.DataFrame:
    g = df.groupby(["method", "splits"])[col]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def _rows_of_combos(summary: pd.DataFrame, ncols: int, width: float = 4.8, height: float = 3.5):
    combos = _combos(summary) or [("?", "?")]
    fig, axes = plt.subplots(len(combos), ncols, figsize=(width * ncols, height * len(combos) + 0.6), squeeze=False)
    return fig, axes, combos


def _split_ticks(ax, levels: Sequence[int]) -> None:
    levels = sorted(set(int(n) for n in levels if n == n))
    if levels:
        ax.set_xticks(levels)
        ax.set_xlim(min(levels) - 0.6, max(levels) + 0.6)


def acc_vs_splits(summary: pd.DataFrame, path_stem: Path | None = None,
                  formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Final train (left) and test (right) accuracy versus n, mean ± sd over seeds."""
    summary = runs_on_budget(summary, timed=False)
    fig, axes, combos = _rows_of_combos(summary, 2)
    ok_all = summary[summary["status"] == "finished"]
    legend: dict[str, Any] = {}
    for row, (ds, md) in zip(axes, combos):
        ok = ok_all[(ok_all["dataset"] == ds) & (ok_all["model"] == md)]
        for ax, col, what in ((row[0], "final_train_acc", "final training accuracy"),
                              (row[1], "final_test_acc", "final test accuracy")):
            d = ok[ok[col].notna()]
            ax.set_title(f"{_panel_title(ds, md)} — {what}", fontsize=10)
            if not len(d):
                _empty(ax, f"no finished run with {col.replace('final_', '')}")
                continue
            a = _agg(d, col)
            methods = _methods_in(a["method"].tolist())
            split_methods = [m for m in methods if m not in BACKPROP_METHODS]
            width = 0.12
            for i, m in enumerate(split_methods):
                r = a[a["method"] == m].sort_values("splits")
                dx = (i - (len(split_methods) - 1) / 2) * width
                h = ax.errorbar(r["splits"] + dx, r["mean"], yerr=r["std"], marker="o", ms=5, capsize=3,
                                color=_color(m), linestyle="-" if m != "frozen" else "--", linewidth=1.5)
                legend.setdefault(m, h)
            for j, m in enumerate(m for m in methods if m in BACKPROP_METHODS):
                r = a[a["method"] == m]
                mean, sd = float(r["mean"].mean()), float(r["std"].mean())
                ax.axhline(mean, color=_color(m), linestyle=":", linewidth=1.3)
                ax.axhspan(mean - sd, mean + sd, color=_color(m), alpha=0.12, linewidth=0)
                h = ax.errorbar([1 - 0.25 - 0.1 * j], [mean], yerr=[sd], marker="s", ms=5, capsize=3,
                                color=_color(m), linestyle="none")
                legend.setdefault(m, h)
            _split_ticks(ax, d["splits"].tolist())
            ax.set_xlabel("n (number of subnetworks)")
            ax.set_ylabel(what)
            lo = float((a["mean"] - a["std"]).min())
            ax.set_ylim(max(0.0, min(lo - 0.03, 0.9)), 1.005)
            ax.grid(alpha=0.3)
    labels = [(_label(m) + (" (n=1; dotted = mean, band = ± 1 sd)" if m in BACKPROP_METHODS else ""))
              for m in legend]
    _top(fig, "Final accuracy versus split level n (mean ± 1 sd over seeds)", list(legend.values()), labels)
    return _finish(fig, _note(summary), path_stem, formats)


def time_to_target_figure(summary: pd.DataFrame, target: float = 0.9, path_stem: Path | None = None,
                          formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Training-clock seconds to reach ``target`` training accuracy, versus n.

    ``summary`` must hold ``time_to_target_s`` computed for the same target (``summarize``
    with ``target``); runs that never reach it are counted in the 'k/m reached' labels.
    """
    fig, note = draw_time_to_target(summary, target)
    return _finish(fig, note, path_stem, formats)


def draw_time_to_target(summary: pd.DataFrame, target: float = 0.9):
    """The time-to-target figure and its note (see :func:`time_to_target_figure`), from the
    runs of the equal-resources budget where there is one (:func:`runs_on_budget`)."""
    summary = runs_on_budget(summary, timed=True)
    fig, axes, combos = _rows_of_combos(summary, 1, width=6.5)
    ok_all = summary[summary["status"] == "finished"]
    never: list[str] = []
    for (ax,), (ds, md) in zip(axes, combos):
        ok = ok_all[(ok_all["dataset"] == ds) & (ok_all["model"] == md)]
        ax.set_title(f"{_panel_title(ds, md)} — time to training accuracy ≥ {target:g}", fontsize=10)
        if not len(ok):
            _empty(ax, "no finished runs")
            continue
        methods = _methods_in(ok["method"].tolist())
        width = 0.12
        plotted = False
        missed = []  # (x, method) where no seed reached the target
        for i, m in enumerate(methods):
            dm = ok[ok["method"] == m]
            dx = (i - (len(methods) - 1) / 2) * width
            xs, ys, es = [], [], []
            for n, g in dm.groupby("splits"):
                hit = g["time_to_target_s"].dropna()
                if len(hit) < len(g):
                    never.append(f"{ds} {m} n={int(n)}: {len(hit)}/{len(g)}")
                if not len(hit):
                    missed.append((n + dx, m))
                    continue
                xs.append(n + dx)
                ys.append(hit.mean())
                es.append(hit.std(ddof=1) if len(hit) > 1 else 0.0)
                if len(hit) < len(g):
                    ax.annotate(f"{len(hit)}/{len(g)}", (n + dx, hit.mean()), textcoords="offset points",
                                xytext=(4, 4), fontsize=7, color=_color(m))
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o" if m not in BACKPROP_METHODS else "s", capsize=3,
                            color=_color(m), label=_resources_label(dm, m), linestyle="-" if len(xs) > 1 else "none",
                            gid=m)
                plotted = True
        if not plotted:
            _empty(ax, f"no run reached training accuracy {target:g}")
            continue
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + 0.12 * (hi - lo))
        for x, m in missed:  # an x on the top edge: no seed of this method reached the target at this n
            ax.scatter([x], [hi + 0.08 * (hi - lo)], marker="x", color=_color(m), s=30, zorder=5)
        if missed:
            ax.scatter([], [], marker="x", color="0.3", s=30, label="never reached (top edge)")
        _split_ticks(ax, ok["splits"].tolist())
        ax.set_xlabel("n (number of subnetworks)")
        ax.set_ylabel("seconds (training clock)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    note = _note(summary)
    if never:
        extra = "Runs reaching the target / runs: " + "; ".join(never[:12]) + (" ..." if len(never) > 12 else "")
        note = (note + "\n" if note else "") + extra
    _top(fig, f"Time to reach training accuracy {target:g} (mean ± 1 sd over the seeds that reach it)\n"
              f"{_execution_note(ok_all)}; legend: ranks × threads")
    return fig, note


def speedup(summary: pd.DataFrame, reference: str = "adam", path_stem: Path | None = None,
            formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Seconds per epoch of ``reference`` at n = 1 divided by each run's, versus n."""
    fig, note = draw_speedup(summary, reference)
    return _finish(fig, note, path_stem, formats)


def draw_speedup(summary: pd.DataFrame, reference: str = "adam"):
    """The speedup figure and its note (see :func:`speedup`), from the runs of the
    equal-resources budget where there is one (:func:`runs_on_budget`): the reference had the
    same cores as every run it is compared with."""
    summary = runs_on_budget(summary, timed=True)
    fig, axes, combos = _rows_of_combos(summary, 1, width=6.5)
    ok_all = summary[(summary["status"] == "finished") & summary["sec_per_epoch"].notna()
                     & (summary["sec_per_epoch"] > 0)]
    for (ax,), (ds, md) in zip(axes, combos):
        ok = ok_all[(ok_all["dataset"] == ds) & (ok_all["model"] == md)]
        ax.set_title(f"{_panel_title(ds, md)} — speedup per epoch", fontsize=10)
        ref_name = None
        for cand in [reference, *(m for m in BACKPROP_METHODS if m != reference)]:
            r = ok[(ok["method"] == cand) & (ok["splits"] == 1)]
            if len(r):
                ref_name, ref = cand, float(r["sec_per_epoch"].mean())
                break
        if ref_name is None:
            _empty(ax, f"no finished {reference} (or sgd) run at n=1 to compare with")
            continue
        d = ok.copy()
        d["speedup"] = ref / d["sec_per_epoch"]
        methods = _methods_in(d["method"].tolist())
        width = 0.12
        for i, m in enumerate(methods):
            a = _agg(d[d["method"] == m], "speedup").sort_values("splits")
            dx = (i - (len(methods) - 1) / 2) * width
            ax.errorbar(a["splits"] + dx, a["mean"], yerr=a["std"], marker="o" if m not in BACKPROP_METHODS else "s",
                        capsize=3, color=_color(m), label=_resources_label(d, m), gid=m,
                        linestyle="-" if len(a) > 1 else "none")
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        _split_ticks(ax, d["splits"].tolist())
        ax.set_xlabel("n (number of subnetworks)")
        ax.set_ylabel(f"{_label(ref_name)} n=1 s/epoch ÷ run's s/epoch")
        # under the title, where the legend cannot cover it
        ax.set_title(f"{_panel_title(ds, md)} — speedup per epoch\nreference: {_label(ref_name)} n=1, "
                     f"{ref:.3g} s/epoch; {_execution_note(d)}", fontsize=10)
        ax.text(0.01, 0.01, "legend: ranks × threads of each method's runs", transform=ax.transAxes, fontsize=7,
                color="0.4", va="bottom")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _top(fig, "Speedup per epoch versus n (> 1: faster than the reference)")
    return fig, _note(summary)


# --------------------------------------------------------------------------- sweeps
def _sweep_panel(ax, t: pd.DataFrame, fields: Sequence[str], reference: str) -> list[float]:
    """One method and n of a sweep: a row per variant, grouped by the controls' settings (e.g.
    init), best test accuracy first in each group; the controls as segments over their group.
    Returns the accuracies drawn (for the x range)."""
    varying = [f for f in fields if t[f].nunique() > 1]
    color = _color(str(t["method"].iloc[0]))
    y, ticks, labels, drawn = 0.0, [], [], []
    for controls, g in t.groupby("controls", sort=True):
        fixed = {kv.split("=")[0] for kv in controls.split(", ") if kv}
        top = y
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
        for col, method, style in (("frozen_test_acc", SWEEP_CONTROL, "--"), ("ref_test_acc", reference, ":")):
            x = g[col].iloc[0]
            if x == x:
                ax.vlines(x, top - 0.45, y - 0.55, colors=_color(method), linestyles=style, linewidth=1.6, zorder=3)
                drawn.append(x)
        if controls:
            ax.text(0.99, top - 0.6, f"controls at {controls}", transform=ax.get_yaxis_transform(), ha="right",
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
    variant (sorted), against ``frozen`` at the same n and ``reference`` at n = 1 (see
    :func:`tssm.summary.sweep_table` for which control runs each variant is compared with)."""
    table = sweep_table(summary, reference) if len(summary) else pd.DataFrame()
    panels = list(table.groupby(["dataset", "model", "method", "splits"], sort=False)) if len(table) else []
    if not panels:
        fig, ax = plt.subplots(figsize=(6, 3))
        _empty(ax, "no runs with variants")
        return _finish(fig, _excluded_note(summary), path_stem, formats)
    ncol = min(len(panels), max(1, min(3, table["splits"].nunique())))
    nrow = math.ceil(len(panels) / ncol)
    rows = [len(g) + 2 * g["controls"].nunique() for _, g in panels]
    heights = [max(rows[i * ncol:(i + 1) * ncol]) * 0.22 + 0.9 for i in range(nrow)]
    fig = plt.figure(figsize=(6.4 * ncol, sum(heights) + 0.4))
    grid = fig.add_gridspec(nrow, ncol, height_ratios=heights)
    fields = sweep_fields(summary)
    for i, ((ds, md, method, n), t) in enumerate(panels):
        ax = fig.add_subplot(grid[i // ncol, i % ncol])
        drawn = [v for v in _sweep_panel(ax, t, fields, reference) if v == v]
        if drawn:
            ax.set_xlim(max(0.0, min(drawn) - 0.02), min(1.0, max(drawn) + 0.02) + 0.005)
        ax.set_title(f"{_panel_title(ds, md)} — {_label(method)}, n={int(n)}", fontsize=10)
        ax.set_xlabel("final accuracy")
    handles = [
        plt.Line2D([], [], marker="o", linestyle="none", color="0.2", label="test accuracy (mean ± 1 sd over seeds)"),
        plt.Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", color="0.2", label="train accuracy"),
        plt.Line2D([], [], linestyle="--", color=_color(SWEEP_CONTROL), label=f"{_label(SWEEP_CONTROL)}, same n"),
        plt.Line2D([], [], linestyle=":", color=_color(reference), label=f"{_label(reference)}, n=1"),
    ]
    _top(fig, "Sweep: final test accuracy per variant (best first), against the controls with the same settings",
         handles, [h.get_label() for h in handles], ncol=4)
    return _finish(fig, _excluded_note(summary), path_stem, formats)


# --------------------------------------------------------------------------- all of them
def make_figures(results: FigureData | Sequence[Run], out_dir: str | Path, *, summary: pd.DataFrame | None = None,
                 figure1_splits: int = paper.FIGURE1_SPLITS, figure2_splits: Sequence[int] = paper.FIGURE2_SPLITS,
                 figure2_dataset: str | None = None, figure2_model: str | None = None,
                 target: float = 0.9, reference: str = "adam",
                 formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write every figure of :data:`FIGURES` under ``out_dir`` (and :data:`SWEEP_FIGURE` when runs
    have variants); returns the files written.

    ``results``: what :func:`read_results` or :func:`from_runs` returns, or loaded runs (then
    summarised here, once, unless ``summary`` is given)."""
    data = results if isinstance(results, FigureData) else from_runs(results, target, summary)
    s, out = data.summary, Path(out_dir)
    sns.set_theme(style="whitegrid", context="paper")
    written = []
    written += figure1(s, data.curves, figure1_splits, out / "figure1_train_acc", formats)
    written += figure2(s, data.curves, figure2_splits, figure2_dataset, figure2_model, out / "figure2_speed", formats)
    written += acc_vs_splits(s, out / "acc_vs_splits", formats)
    written += time_to_target_figure(s, target, out / "time_to_target", formats)
    written += speedup(s, reference, out / "speedup", formats)
    if has_variants(s):
        written += sweep(s, reference, out / SWEEP_FIGURE, formats)
    return written


def build_parser(prog: str = "python -m tssm.figures") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog,
                                description="Draw the benchmark's figures from recorded runs (never retrains).")
    p.add_argument("paths", nargs="*", help="results folder(s) or run directories; a folder holding summary.csv "
                                           "uses that summary's list of runs")
    p.add_argument("--summary", help="summary.csv whose run_dir column lists the runs to draw")
    p.add_argument("--out-dir", help="where the figures go (default: <results>/figures)")
    p.add_argument("--figure1-splits", type=int, default=paper.FIGURE1_SPLITS,
                   help="split level n of the split methods in Figure 1 (default 2, the paper's)")
    p.add_argument("--figure2-splits", type=int, nargs="+", default=list(paper.FIGURE2_SPLITS),
                   help="n levels of Figure 2(b)")
    p.add_argument("--figure2-dataset", help="dataset of Figure 2 (default: cifar10/resnet if present, else the "
                                             "dataset/model with most split levels)")
    p.add_argument("--figure2-model", help="model of Figure 2")
    p.add_argument("--target-acc", type=float, default=0.9, help="training accuracy of the time-to-target figure")
    p.add_argument("--reference", default="adam", help="method at n=1 the speedup is relative to (default adam)")
    p.add_argument("--formats", nargs="+", default=["png", "pdf"], help="file formats (default png pdf)")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m tssm.figures") -> int:
    args = build_parser(prog).parse_args(argv)
    summary_path = Path(args.summary) if args.summary else None
    if summary_path is None and len(args.paths) == 1 and (Path(args.paths[0]) / "summary.csv").exists():
        summary_path = Path(args.paths[0]) / "summary.csv"
    if summary_path is not None:
        if not summary_path.exists():
            print(f"error: {summary_path} does not exist (run python -m tssm.summary first)", file=sys.stderr)
            return 2
        # the listed runs, and with --summary any further run folders given
        data = read_results(summary_path, args.target_acc, args.paths if args.summary else ())
        base = summary_path.parent
    elif args.paths:
        data = from_runs(load_runs(args.paths), args.target_acc)
        base = Path(args.paths[0]) if Path(args.paths[0]).is_dir() else Path(".")
    else:
        print("error: give a results folder, run directories or --summary", file=sys.stderr)
        return 2
    out = Path(args.out_dir) if args.out_dir else base / "figures"
    written = make_figures(data, out, figure1_splits=args.figure1_splits,
                           figure2_splits=args.figure2_splits, figure2_dataset=args.figure2_dataset,
                           figure2_model=args.figure2_model, target=args.target_acc, reference=args.reference,
                           formats=args.formats)
    print(f"{len(data.summary)} runs -> {len(written)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
