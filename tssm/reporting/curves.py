"""Per-epoch curves shared by Figures 1 and 2 and the budget figure: a line per method (mean
over seeds, ± 1 sd band), each in its method's declared style, and the difference to the control.

Curves that coincide stay visible: every method has its own colour, line style, width and
marker; the control (declared widest and translucent, lowest zorder) is drawn first, the
compared methods on top of it, thinner, with markers at staggered epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from matplotlib.lines import Line2D

from .methods import Methods


def mean_sd(d: pd.DataFrame, col: str = "train_acc") -> pd.DataFrame:
    """Mean and sd (0 with one value) over seeds (and pooled variants) of ``col`` per epoch."""
    g = d.groupby("epoch")[col].agg(["mean", "std", "count"]).reset_index()
    g["std"] = g["std"].fillna(0.0)
    return g


def markevery(index: int, count: int, points: int) -> tuple[int, int] | None:
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


def draw_curves(ax, d: pd.DataFrame, methods: Sequence[str], looks: Methods, col: str = "train_acc") -> dict[str, Any]:
    """One line per method (mean over seeds, band ± 1 sd) in its style, the control underneath;
    returns {method: line}."""
    stats = {m: mean_sd(d[d["method"] == m], col) for m in methods}
    # markers are staggered among the methods drawn at a split level (the curves that may coincide)
    marked = [m for m in methods if looks.style(m).get("marker") and not looks.whole_network(m)]
    lines = {}
    for m in sorted(methods, key=lambda m: looks.style(m)["zorder"]):
        a = stats[m].dropna(subset=["mean"])
        if not len(a):
            continue
        style = looks.style(m)
        color, z, alpha = style.pop("color", None), style.pop("zorder"), style.pop("alpha", 1.0)
        if style.get("marker"):
            style["markevery"] = markevery(marked.index(m) if m in marked else 0, len(marked), len(a))
            style.setdefault("markersize", 5)
            style["markeredgewidth"] = 1.1
        if (a["std"] > 0).any():
            ax.fill_between(a["epoch"], a["mean"] - a["std"], a["mean"] + a["std"], color=color,
                            alpha=0.15, linewidth=0, zorder=1)
        (line,) = ax.plot(a["epoch"], a["mean"], color=color, alpha=alpha, zorder=z, label=looks.label(m), gid=m,
                          **style)
        lines[m] = line
    return lines


def legend_handle(m: str, looks: Methods) -> Line2D:
    """A legend entry drawn like method ``m``'s curves."""
    style = looks.style(m)
    style.pop("zorder")
    return Line2D([], [], **style)


def paper_stars(ax, values: dict[str, float], x: float, span: float, looks: Methods) -> list[float]:
    """The paper's values as stars at the last epoch, side by side; returns the values drawn."""
    drawn = []
    for k, (m, v) in enumerate(values.items()):
        ax.scatter([x + k * 0.025 * span], [v], marker="*", s=150, color=looks.color(m), edgecolor="black",
                   linewidth=0.6, zorder=7, clip_on=False, gid=f"paper:{m}")
        drawn.append(v)
    return drawn


def star_handle() -> Line2D:
    return Line2D([], [], marker="*", markersize=11, linestyle="none", markerfacecolor="white",
                  markeredgecolor="black", label="paper's final value (colour = method)")


def acc_ylim(ax, d: pd.DataFrame, extra: Sequence[float] = (), col: str = "train_acc") -> None:
    lo = float(d[col].min()) if len(d) else 0.5
    lo = min([lo, *extra])
    ax.set_ylim(max(0.0, min(0.5, lo - 0.05)), 1.01)


def control_differences(d: pd.DataFrame, control: str, methods: Sequence[str], looks: Methods,
                        col: str = "train_acc") -> dict[str, pd.DataFrame]:
    """Per compared method in ``methods``: 100 x (its ``col`` - the control's) per seed and epoch
    (same n, same seed, same epoch), as frames with ``seed, epoch, diff, method``."""
    key = ["seed", "epoch"]
    ctrl = d[d["method"] == control].groupby(key)[col].mean().rename("control")
    out = {}
    for m in methods:
        if m == control or not looks.role(m).paired:
            continue
        own = d[d["method"] == m].groupby(key)[col].mean().rename("own")
        j = pd.concat([own, ctrl], axis=1, join="inner").dropna().reset_index()
        if len(j):
            j["diff"] = 100 * (j["own"] - j["control"])
            j["method"] = m
            out[m] = j
    return out


def difference_panel(ax, d: pd.DataFrame, control: str, methods: Sequence[str], looks: Methods,
                     col: str = "train_acc") -> dict[str, Any]:
    """Each compared method minus ``control`` (same n, seed and epoch), in points; mean ± 1 sd
    over seeds. Returns {method: line}; the control is the zero line."""
    z = looks.style(control)
    ax.axhline(0.0, color=z.get("color"), linewidth=z["linewidth"], alpha=z.get("alpha", 1.0), zorder=z["zorder"],
               gid=control)
    diffs = control_differences(d, control, methods, looks, col)
    lines: dict[str, Any] = {}
    if diffs:
        lines = draw_curves(ax, pd.concat(diffs.values(), ignore_index=True), list(diffs), looks, col="diff")
        lim = max(0.05, *(float(abs(j["diff"]).max()) for j in diffs.values()))
        ax.set_ylim(-1.25 * lim, 1.25 * lim)
    return lines
