"""The x axis of the figures against n: one evenly spaced position per split level present
(n = 1, 2, 3, 5, 10 side by side, each labelled), layerwise methods at a labelled place of their
own after them, and the methods of each n side by side around its tick."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from .methods import Methods

#: Tick label of the place of methods whose split level does not apply.
LAYERWISE = "layerwise"


class LevelAxis:
    """Where each (method, n) is drawn: ``levels`` are the split levels of non-layerwise runs."""

    def __init__(self, levels: Iterable[Any], looks: Methods, methods: Sequence[str], width: float = 0.12):
        self.levels = sorted({int(n) for n in levels if n == n})
        self.looks = looks
        self.methods = list(methods)
        self.layerwise = [m for m in self.methods if looks.role(m).layerwise]
        self.width = width

    def position(self, method: str, n: Any) -> float:
        """The x of ``method`` at n, offset from its tick by its place among ``methods``."""
        i = self.methods.index(method) if method in self.methods else 0
        dx = (i - (len(self.methods) - 1) / 2) * self.width
        if method in self.layerwise:
            return len(self.levels) + 0.3 + dx
        return (self.levels.index(int(n)) if int(n) in self.levels else 0) + dx

    def positions(self, method: str, ns: Iterable[Any]) -> list[float]:
        return [self.position(method, n) for n in ns]

    def apply(self, ax) -> None:
        """Ticks labelled by n (and 'layerwise'), limits with room for every marker."""
        ticks = {float(i): str(n) for i, n in enumerate(self.levels)}
        if self.layerwise:
            ticks[len(self.levels) + 0.3] = LAYERWISE
        if not ticks:
            return
        pos = sorted(ticks)
        ax.set_xticks(pos)
        ax.set_xticklabels([ticks[p] for p in pos])
        half = (len(self.methods) - 1) / 2 * self.width + 0.35
        ax.set_xlim(min(pos) - half, max(pos) + half)
        if self.layerwise and self.levels:
            ax.axvline(len(self.levels) - 0.35, color="0.6", linewidth=0.8, linestyle=(0, (2, 2)))


def level_axis(d: pd.DataFrame, looks: Methods, methods: Sequence[str]) -> LevelAxis:
    """The axis of the runs ``d`` (layerwise runs add no split level)."""
    split = d[~d["method"].map(lambda m: looks.role(m).layerwise).astype(bool)]
    return LevelAxis(split["splits"], looks, methods)
