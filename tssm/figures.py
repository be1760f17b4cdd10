"""Figures of a results tree: the paper's Figures 1 and 2, and what the paper did not measure.

Every figure is drawn from the recorded files (``summary.csv`` and each run's
``metrics.csv``), never by rerunning training, and written as PNG and PDF:

``figure1_train_acc``  Figure 1 analogue: training accuracy per epoch, one panel per
                       dataset (and model), a line per method (split methods at
                       ``figure1_splits``, backprop at n = 1), seeds as a band (± 1 sd);
                       stars mark the paper's final values (:data:`PAPER_FINAL_TRAIN_ACC`).
``figure2_speed``      Figure 2 analogue: (a) seconds per epoch by method and n (bars),
                       (b) training accuracy per epoch for n = 2, 3, 4 (those present).
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .summary import (AXES, SUMMARY_COLUMNS, SWEEP_CONTROL, Run, has_variants, load_run, load_runs, setting_text,
                      summarize, sweep_fields, sweep_table)

os.environ.setdefault("MPLBACKEND", "Agg")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

__all__ = [
    "FIGURES",
    "METHOD_COLORS",
    "PAPER_FIG2_FINAL_TRAIN_ACC",
    "PAPER_FIG2_SEC_PER_EPOCH",
    "PAPER_FINAL_TRAIN_ACC",
    "acc_vs_splits",
    "figure1",
    "figure2",
    "make_figures",
    "speedup",
    "sweep",
    "time_to_target_figure",
]

# --------------------------------------------------------------------------- the paper's numbers
#: Final training accuracy read off the paper's Figure 1 (last plotted point, ± 0.01):
#: MLP on the MNIST family after 100 epochs, CNN on CIFAR after 200; TSSM = gsADMM, n = 2.
PAPER_FINAL_TRAIN_ACC: dict[str, dict[str, float]] = {
    "mnist": {"sgd": 1.000, "adam": 0.999, "dladmm": 0.774, "gsadmm": 0.994},
    "fashion_mnist": {"sgd": 0.987, "adam": 0.981, "dladmm": 0.733, "gsadmm": 0.968},
    "kmnist": {"sgd": 1.000, "adam": 0.998, "dladmm": 0.709, "gsadmm": 0.991},
    "cifar10": {"sgd": 0.989, "adam": 0.989, "dladmm": 0.644, "gsadmm": 1.000},
    "cifar100": {"sgd": 0.838, "adam": 0.972, "dladmm": 0.175, "gsadmm": 0.997},
}
#: The split level of the paper's Figure 1 and the models/epochs it used.
PAPER_FIGURE1_SPLITS = 2
PAPER_FIGURE1_SETUP = {"mnist": ("mlp", 100), "fashion_mnist": ("mlp", 100), "kmnist": ("mlp", 100),
                       "cifar10": ("cnn", 200), "cifar100": ("cnn", 200)}
#: Figure 2(b) of the paper: seconds per epoch, ResNet-like network on CIFAR-10, keyed (method, n).
PAPER_FIG2_SEC_PER_EPOCH: dict[tuple[str, int], float] = {
    ("sgd", 1): 37.9, ("adam", 1): 49.9, ("gsadmm", 2): 25.8, ("gsadmm", 3): 24.0, ("gsadmm", 4): 22.0,
}
#: Figure 2(a) of the paper: final training accuracy after 500 epochs, keyed (method, n).
PAPER_FIG2_FINAL_TRAIN_ACC: dict[tuple[str, int], float] = {
    ("sgd", 1): 1.00, ("adam", 1): 0.85, ("gsadmm", 2): 0.96, ("gsadmm", 3): 0.97, ("gsadmm", 4): 0.99,
}
PAPER_FIG2_SETUP = ("cifar10", "resnet")

# --------------------------------------------------------------------------- style
METHOD_ORDER = ["sgd", "adam", "gsadmm", "gsam", "frozen"]
SPLIT_METHODS = ("gsadmm", "gsam", "frozen")
BACKPROP_METHODS = ("sgd", "adam")
METHOD_COLORS = {
    "sgd": "#2ca02c", "adam": "#d62728", "gsadmm": "#1f77b4", "gsam": "#ff7f0e", "frozen": "#7f7f7f",
    "dladmm": "#9467bd",
}
METHOD_LABELS = {"sgd": "SGD", "adam": "Adam", "gsadmm": "gsADMM", "gsam": "gsAM", "frozen": "frozen (control)",
                 "dladmm": "dlADMM"}
DATASET_ORDER = ["mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "digits"]
DATASET_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "kmnist": "KMNIST", "cifar10": "CIFAR-10",
                  "cifar100": "CIFAR-100", "digits": "digits (8x8)"}

#: File stems this module writes (one PNG and one PDF each).
FIGURES = ("figure1_train_acc", "figure2_speed", "acc_vs_splits", "time_to_target", "speedup")
#: ... and this one too when any run has a variant.
SWEEP_FIGURE = "sweep"


def _color(method: str) -> str:
    return METHOD_COLORS.get(method, "#17becf")


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, str(method))


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


def _coerce_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Give a (possibly older or hand-made) summary every expected column, with numeric types."""
    s = summary.copy()
    for c in SUMMARY_COLUMNS:
        if c not in s:
            s[c] = np.nan if c not in ("status",) else "finished"
    for c in ("splits", "seed"):
        s[c] = pd.to_numeric(s[c], errors="coerce")
    for c in ("final_train_acc", "final_test_acc", "final_train_loss", "sec_per_epoch", "time_to_target_s", "move_1"):
        s[c] = pd.to_numeric(s[c], errors="coerce")
    s["status"] = s["status"].fillna("unreadable").astype(str)
    return s


# --------------------------------------------------------------------------- data
def _curves(runs: Sequence[Run], col: str) -> pd.DataFrame:
    """Long table epoch/value/axes of the *finished* runs that have ``col``, epochs >= 1."""
    frames = []
    for r in runs:
        if r.status != "finished" or r.metrics is None or col not in r.metrics or "epoch" not in r.metrics:
            continue
        m = r.metrics[["epoch", col]].dropna()
        m = m[m["epoch"] >= 1] if (m["epoch"] >= 1).any() else m
        if not len(m):
            continue
        m = m.rename(columns={col: "value"}).copy()
        for k in AXES:
            m[k] = r.axes.get(k)
        frames.append(m)
    if not frames:
        return pd.DataFrame(columns=["epoch", "value", *AXES])
    out = pd.concat(frames, ignore_index=True)
    out["splits"] = pd.to_numeric(out["splits"], errors="coerce")
    return out


def _at_split_level(df: pd.DataFrame, splits: int) -> pd.DataFrame:
    """Backprop rows at n = 1 and split-method rows at n = ``splits``."""
    if not len(df):
        return df
    bp = df["method"].isin(BACKPROP_METHODS) & (df["splits"] == 1)
    sp = ~df["method"].isin(BACKPROP_METHODS) & (df["splits"] == splits)
    return df[bp | sp]


# --------------------------------------------------------------------------- Figure 1
def _figure1_combos(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """Panels of Figure 1: for a paper dataset run with the paper's Figure-1 model, only that
    model (CIFAR-10 also has the ResNet of Figure 2); any other dataset/model as it comes."""
    combos = _combos(summary)
    keep = []
    for ds, md in combos:
        paper_model = PAPER_FIGURE1_SETUP.get(ds, (None, None))[0]
        if paper_model and md != paper_model and (ds, paper_model) in combos:
            continue
        keep.append((ds, md))
    return keep


def figure1(runs: Sequence[Run], summary: pd.DataFrame, splits: int = PAPER_FIGURE1_SPLITS,
            path_stem: Path | None = None, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Training accuracy per epoch per dataset, a line per method, seeds as a ± 1 sd band."""
    summary = _coerce_summary(summary)
    curves = _at_split_level(_curves(runs, "train_acc"), splits)
    combos = _figure1_combos(summary) or [("?", "?")]
    ncol = min(len(combos), 3)
    nrow = math.ceil(len(combos) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.6 * nrow + 0.5), squeeze=False)
    for ax in axes.flat[len(combos):]:
        ax.set_visible(False)
    handles: dict[str, Any] = {}
    for ax, (dataset, model) in zip(axes.flat, combos):
        d = curves[(curves["dataset"] == dataset) & (curves["model"] == model)] if len(curves) else curves
        if not len(d):
            _empty(ax, f"no finished run with train_acc\nfor split methods at n={splits} or backprop at n=1")
            ax.set_title(_panel_title(dataset, model), fontsize=10)
            continue
        methods = _methods_in(d["method"].tolist())
        sns.lineplot(data=d, x="epoch", y="value", hue="method", hue_order=methods,
                     palette={m: _color(m) for m in methods}, errorbar="sd", ax=ax, linewidth=1.4)
        leg = ax.get_legend()
        if leg is not None:
            leg.remove()
        for line, m in zip(ax.get_lines(), methods):
            handles.setdefault(m, line)
        last_epoch = d["epoch"].max()
        paper = PAPER_FINAL_TRAIN_ACC.get(dataset) if PAPER_FIGURE1_SETUP.get(dataset, (None,))[0] == model else None
        if paper:
            for m, v in paper.items():
                h = ax.scatter([last_epoch], [v], marker="*", s=140, color=_color(m), edgecolor="black",
                               linewidth=0.6, zorder=5, clip_on=False)
                handles.setdefault(f"paper:{m}", h)
            pe = PAPER_FIGURE1_SETUP[dataset][1]
            ax.text(0.98, 0.03, f"stars: paper, after {pe} epochs", transform=ax.transAxes, ha="right",
                    va="bottom", fontsize=7, color="0.4")
        else:
            pm = PAPER_FIGURE1_SETUP.get(dataset, (None,))[0]
            why = f"the paper used {pm} here" if pm else "not in the paper"
            ax.text(0.98, 0.03, f"no paper values ({why})", transform=ax.transAxes, ha="right",
                    va="bottom", fontsize=7, color="0.4")
        nseeds = d.groupby("method")["seed"].nunique()
        ax.set_title(f"{_panel_title(dataset, model)} — seeds: {int(nseeds.max())}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training accuracy")
        ax.set_ylim(max(0.0, min(0.5, float(d["value"].min()) - 0.05)), 1.01)
        ax.grid(alpha=0.3)
    labels, hs = [], []
    for key, h in handles.items():
        if key.startswith("paper:"):
            m = key.split(":", 1)[1]
            lab = f"paper final: {_label(m)}" + (f" (n={PAPER_FIGURE1_SPLITS})" if m == "gsadmm" else "")
        else:
            lab = _label(key) + (f" (n={splits})" if key not in BACKPROP_METHODS else " (n=1)")
        labels.append(lab)
        hs.append(h)
    _top(fig, f"Figure 1 analogue: training accuracy per epoch (split methods at n={splits}; "
              f"band = ± 1 sd over seeds)", hs, labels, ncol=4)
    return _finish(fig, _note(summary), path_stem, formats)


# --------------------------------------------------------------------------- Figure 2
def _execution_note(ok: pd.DataFrame) -> str:
    """How the timed runs executed: serial (1 worker) or one rank per subnetwork, and where."""
    workers = pd.to_numeric(ok.get("workers", pd.Series(dtype=float)), errors="coerce").dropna()
    devices = sorted({str(d).split(":")[0] for d in ok.get("device", pd.Series(dtype=object)).dropna()})
    where = "/".join(devices) if devices else "?"
    if not len(workers) or workers.max() <= 1:
        return f"serial: 1 worker per run ({where})"
    return f"workers per run: {int(workers.min())}-{int(workers.max())} ({where})"


def _pick_combo(summary: pd.DataFrame, dataset: str | None, model: str | None) -> tuple[str, str] | None:
    combos = _combos(summary)
    if dataset or model:
        match = [c for c in combos if (dataset is None or c[0] == dataset) and (model is None or c[1] == model)]
        return match[0] if match else None
    if PAPER_FIG2_SETUP in combos:
        return PAPER_FIG2_SETUP
    if not combos:
        return None
    # the combination with the most split levels (ties: the first in paper order)
    levels = {c: summary[(summary["dataset"] == c[0]) & (summary["model"] == c[1])]["splits"].nunique() for c in combos}
    return max(combos, key=lambda c: (levels[c], -combos.index(c)))


def figure2(runs: Sequence[Run], summary: pd.DataFrame, splits: Sequence[int] = (2, 3, 4),
            dataset: str | None = None, model: str | None = None,
            path_stem: Path | None = None, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """(a) seconds per epoch by method and n; (b) training accuracy per epoch at n in ``splits``."""
    summary = _coerce_summary(summary)
    combo = _pick_combo(summary, dataset, model)
    fig, (ax_t, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2))
    if combo is None:
        _empty(ax_t, "no runs")
        _empty(ax_a, "no runs")
        return _finish(fig, None, path_stem, formats)
    ds, md = combo
    s = summary[(summary["dataset"] == ds) & (summary["model"] == md)]
    ok = s[(s["status"] == "finished") & s["sec_per_epoch"].notna()].copy()
    # (a) bars
    if len(ok):
        ok["n"] = ok["splits"].astype(int)
        methods = _methods_in(ok["method"].tolist())
        order = sorted(ok["n"].unique())
        sns.barplot(data=ok, x="n", y="sec_per_epoch", hue="method", hue_order=methods, order=order,
                    palette={m: _color(m) for m in methods}, errorbar="sd", ax=ax_t, capsize=0.1, err_kws={"linewidth": 1})
        if combo == PAPER_FIG2_SETUP:
            for (m, n), v in PAPER_FIG2_SEC_PER_EPOCH.items():
                if n in order:
                    ax_t.scatter([order.index(n)], [v], marker="_", s=300, color="black", zorder=6)
            ax_t.scatter([], [], marker="_", s=200, color="black", label="paper Fig. 2(b)")
        ax_t.legend(fontsize=7, title="method", title_fontsize=7)
        ax_t.set_xlabel(f"n (subnetworks; sgd/adam at n=1) — {_execution_note(ok)}")
        ax_t.set_ylabel("seconds per epoch (training clock)")
        ax_t.set_title(f"(a) time per epoch — {_panel_title(ds, md)}", fontsize=10)
        ax_t.grid(axis="y", alpha=0.3)
    else:
        _empty(ax_t, "no finished run with a training clock")
        ax_t.set_title(f"(a) time per epoch — {_panel_title(ds, md)}", fontsize=10)
    # (b) curves
    curves = _curves(runs, "train_acc")
    if len(curves):
        curves = curves[(curves["dataset"] == ds) & (curves["model"] == md)]
        split_rows = ~curves["method"].isin(BACKPROP_METHODS) & (curves["splits"] > 1)
        if not (split_rows & curves["splits"].isin(list(splits))).any():
            splits = sorted(curves.loc[split_rows, "splits"].astype(int).unique())  # none asked for: all there are
        keep = (curves["method"].isin(BACKPROP_METHODS) & (curves["splits"] == 1)) | (
            ~curves["method"].isin(BACKPROP_METHODS) & curves["splits"].isin(list(splits)))
        curves = curves[keep].copy()
    if len(curves):
        curves["n"] = curves["splits"].astype(int).astype(str)
        methods = _methods_in(curves["method"].tolist())
        n_order = [str(n) for n in sorted(curves["splits"].astype(int).unique())]
        sns.lineplot(data=curves, x="epoch", y="value", hue="method", hue_order=methods, style="n",
                     style_order=n_order, palette={m: _color(m) for m in methods}, errorbar="sd", ax=ax_a,
                     linewidth=1.2)
        if combo == PAPER_FIG2_SETUP:
            last = curves["epoch"].max()
            for (m, n), v in PAPER_FIG2_FINAL_TRAIN_ACC.items():
                ax_a.scatter([last], [v], marker="*", s=110, color=_color(m), edgecolor="black", zorder=6, clip_on=False)
        ax_a.legend(fontsize=7, ncol=2)
        ax_a.set_ylim(max(0.0, min(0.5, float(curves["value"].min()) - 0.05)), 1.01)
        present = sorted(set(int(n) for n in n_order) & set(splits))
        ax_a.set_title(f"(b) training accuracy, n = {', '.join(map(str, present)) or '—'} (backprop n=1)", fontsize=10)
    else:
        _empty(ax_a, f"no finished run with train_acc at n in {list(splits)}")
        ax_a.set_title("(b) training accuracy", fontsize=10)
    ax_a.set_xlabel("epoch")
    ax_a.set_ylabel("training accuracy")
    ax_a.grid(alpha=0.3)
    _top(fig, "Figure 2 analogue: speed and accuracy by number of subnetworks")
    return _finish(fig, _note(s), path_stem, formats)


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
    summary = _coerce_summary(summary)
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
    summary = _coerce_summary(summary)
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
                            color=_color(m), label=_label(m), linestyle="-" if len(xs) > 1 else "none")
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
    _top(fig, f"Time to reach training accuracy {target:g} (mean ± 1 sd over the seeds that reach it)")
    return _finish(fig, note, path_stem, formats)


def speedup(summary: pd.DataFrame, reference: str = "adam", path_stem: Path | None = None,
            formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Seconds per epoch of ``reference`` at n = 1 divided by each run's, versus n."""
    summary = _coerce_summary(summary)
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
                        capsize=3, color=_color(m), label=_label(m), linestyle="-" if len(a) > 1 else "none")
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        _split_ticks(ax, d["splits"].tolist())
        ax.set_xlabel("n (number of subnetworks)")
        ax.set_ylabel(f"{ref_name} n=1 s/epoch ÷ run's s/epoch")
        ax.text(0.01, 0.97, f"reference: {_label(ref_name)} n=1, {ref:.3g} s/epoch; {_execution_note(d)}",
                transform=ax.transAxes, fontsize=7, va="top", color="0.3")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _top(fig, "Speedup per epoch versus n (> 1: faster than the reference)")
    return _finish(fig, _note(summary), path_stem, formats)


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
    summary = _coerce_summary(summary)
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
def make_figures(runs: Sequence[Run], out_dir: str | Path, *, summary: pd.DataFrame | None = None,
                 figure1_splits: int = PAPER_FIGURE1_SPLITS, figure2_splits: Sequence[int] = (2, 3, 4),
                 figure2_dataset: str | None = None, figure2_model: str | None = None,
                 target: float = 0.9, reference: str = "adam",
                 formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write every figure of :data:`FIGURES` under ``out_dir`` (and :data:`SWEEP_FIGURE` when runs
    have variants); returns the files written."""
    out = Path(out_dir)
    sns.set_theme(style="whitegrid", context="paper")
    if summary is None:
        summary = summarize(runs, target)
    written = []
    written += figure1(runs, summary, figure1_splits, out / "figure1_train_acc", formats)
    written += figure2(runs, summary, figure2_splits, figure2_dataset, figure2_model, out / "figure2_speed", formats)
    written += acc_vs_splits(summary, out / "acc_vs_splits", formats)
    written += time_to_target_figure(summary, target, out / "time_to_target", formats)
    written += speedup(summary, reference, out / "speedup", formats)
    if has_variants(summary):
        written += sweep(summary, reference, out / SWEEP_FIGURE, formats)
    return written


def build_parser(prog: str = "python -m tssm.figures") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog,
                                description="Draw the benchmark's figures from recorded runs (never retrains).")
    p.add_argument("paths", nargs="*", help="results folder(s) or run directories; a folder holding summary.csv "
                                           "uses that summary's list of runs")
    p.add_argument("--summary", help="summary.csv whose run_dir column lists the runs to draw")
    p.add_argument("--out-dir", help="where the figures go (default: <results>/figures)")
    p.add_argument("--figure1-splits", type=int, default=PAPER_FIGURE1_SPLITS,
                   help="split level n of the split methods in Figure 1 (default 2, the paper's)")
    p.add_argument("--figure2-splits", type=int, nargs="+", default=[2, 3, 4], help="n levels of Figure 2(b)")
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
        listed = pd.read_csv(summary_path)
        run_dirs = listed["run_dir"].dropna().tolist() if "run_dir" in listed else []
        # run_dir is relative to the summary's folder (absolute paths are kept as they are)
        runs = [load_run(summary_path.parent / p) for p in run_dirs] + (load_runs(args.paths) if args.paths and args.summary else [])
        base = summary_path.parent
    elif args.paths:
        runs = load_runs(args.paths)
        base = Path(args.paths[0]) if Path(args.paths[0]).is_dir() else Path(".")
    else:
        print("error: give a results folder, run directories or --summary", file=sys.stderr)
        return 2
    # one Run per directory, even if it was both listed and found
    runs = list({str(r.path): r for r in runs}.values())
    summary = summarize(runs, args.target_acc)
    out = Path(args.out_dir) if args.out_dir else base / "figures"
    written = make_figures(runs, out, summary=summary, figure1_splits=args.figure1_splits,
                           figure2_splits=args.figure2_splits, figure2_dataset=args.figure2_dataset,
                           figure2_model=args.figure2_model, target=args.target_acc, reference=args.reference,
                           formats=args.formats)
    print(f"{len(runs)} runs -> {len(written)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
