"""Speedup per epoch: seconds per epoch of a baseline at n = 1 divided by each run's, versus n."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .levels import level_axis
from .methods import Methods
from .style import agg, budget_panels, empty, execution_note, finish, note, panel_title, resources_label, top


def draw_speedup(summary: pd.DataFrame, reference: str = "adam"):
    """The speedup figure and its note (see :func:`speedup`): a panel per dataset/model and
    resources (:func:`tssm.reporting.style.budget_panels`), so the reference had the same cores
    as every run it is compared with. Without a finished ``reference`` at n = 1, the first
    baseline that has one."""
    looks = Methods(summary)
    fig, panels = budget_panels(summary)
    for ax, ds, md, runs in panels:
        ok = runs[(runs["status"] == "finished") & runs["sec_per_epoch"].notna() & (runs["sec_per_epoch"] > 0)]
        ax.set_title(f"{panel_title(ds, md)} — speedup per epoch", fontsize=10)
        ref_name = None
        for cand in [reference, *(m for m in looks.baselines(ok["method"]) if m != reference)]:
            r = ok[(ok["method"] == cand) & (ok["splits"] == 1)]
            if len(r):
                ref_name, ref = cand, float(r["sec_per_epoch"].mean())
                break
        if ref_name is None:
            empty(ax, f"no finished {reference} (or other baseline) run at n=1 to compare with")
            continue
        d = ok.copy()
        d["speedup"] = ref / d["sec_per_epoch"]
        methods = looks.order(d["method"])
        axis = level_axis(d, looks, methods)
        for m in methods:
            a = agg(d[d["method"] == m], "speedup").sort_values("splits")
            ax.errorbar(axis.positions(m, a["splits"]), a["mean"], yerr=a["std"],
                        marker=looks.style(m).get("marker") or "o", capsize=3, color=looks.color(m),
                        label=resources_label(d, m, looks), gid=m, linestyle="-" if len(a) > 1 else "none")
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        axis.apply(ax)
        ax.set_xlabel("n (number of subnetworks)")
        ax.set_ylabel(f"{looks.label(ref_name)} n=1 s/epoch ÷ run's s/epoch")
        # under the title, where the legend cannot cover it
        ax.set_title(f"{panel_title(ds, md)} — speedup per epoch\nreference: {looks.label(ref_name)} n=1, "
                     f"{ref:.3g} s/epoch; {execution_note(d)}", fontsize=10)
        ax.text(0.01, 0.01, "legend: ranks × threads of each method's runs", transform=ax.transAxes, fontsize=7,
                color="0.4", va="bottom")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    top(fig, "Speedup per epoch versus n (> 1: faster than the reference)")
    return fig, note(summary)


def speedup(summary: pd.DataFrame, reference: str = "adam", path_stem: Path | None = None,
            formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Seconds per epoch of ``reference`` at n = 1 divided by each run's, versus n."""
    fig, text = draw_speedup(summary, reference)
    return finish(fig, text, path_stem, formats)
