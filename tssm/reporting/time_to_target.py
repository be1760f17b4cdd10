"""Training-clock seconds until the training accuracy first reaches a target, versus n.

Every n the runs have gets a tick; a method and n where no seed reached the target gets an ×
on the panel's top edge, and the note under the figure lists, per method, the n where no seed
reached it and those where only some did.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D

from .levels import level_axis
from .methods import Methods
from .style import (budget_panels, empty, execution_note, finish, join_notes, note, panel_title, resources_label,
                    top)


def _ns(ns: list[int]) -> str:
    return ", ".join(str(n) for n in ns)


def draw_time_to_target(summary: pd.DataFrame, target: float = 0.9):
    """The time-to-target figure and its note (see :func:`time_to_target_figure`): a panel per
    dataset/model and resources (:func:`tssm.reporting.style.budget_panels`)."""
    looks = Methods(summary)
    fig, panels = budget_panels(summary)
    never: list[str] = []
    some: list[str] = []
    resources: list[str] = []
    for ax, ds, md, runs in panels:
        ok = runs[runs["status"] == "finished"]
        where = execution_note(ok if len(ok) else runs)
        resources.append(where)
        ax.set_title(f"{panel_title(ds, md)} — time to training accuracy ≥ {target:g}\n{where}", fontsize=10)
        ds = f"{ds} ({where.split(' (')[0]})"  # how the notes name the panel
        if not len(ok):
            empty(ax, "no finished runs")
            continue
        methods = looks.order(ok["method"])
        axis = level_axis(ok, looks, methods)
        plotted, missed, handles = False, [], []
        for m in methods:
            dm = ok[ok["method"] == m]
            xs, ys, es, no, part = [], [], [], [], []
            for n, g in dm.groupby("splits"):
                hit = g["time_to_target_s"].dropna()
                x = axis.position(m, n)
                if not len(hit):
                    no.append(int(n))
                    missed.append((x, m))
                    continue
                if len(hit) < len(g):
                    part.append(f"{int(n)} ({len(hit)}/{len(g)} seeds)")
                    ax.annotate(f"{len(hit)}/{len(g)}", (x, hit.mean()), textcoords="offset points", xytext=(4, 4),
                                fontsize=7, color=looks.color(m))
                xs.append(x)
                ys.append(hit.mean())
                es.append(hit.std(ddof=1) if len(hit) > 1 else 0.0)
            where = "" if looks.role(m).whole_network else " at n = "
            if no:
                never.append(f"{ds} {looks.label(m)}" + (f"{where}{_ns(no)}" if where else ""))
            if part:
                some.append(f"{ds} {looks.label(m)}{where or ' '}{', '.join(part)}")
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker=looks.style(m).get("marker") or "o", capsize=3,
                            color=looks.color(m), label=resources_label(dm, m, looks),
                            linestyle="-" if len(xs) > 1 else "none", gid=m)
                plotted = True
            elif no:
                handles.append(Line2D([], [], marker="x", linestyle="none", color=looks.color(m),
                                      label=f"{looks.label(m)}: never reached"))
        if not plotted:
            empty(ax, f"no run reached training accuracy {target:g}")
            continue
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + 0.12 * (hi - lo))
        for x, m in missed:  # an x on the top edge: no seed of this method reached the target at this n
            ax.scatter([x], [hi + 0.08 * (hi - lo)], marker="x", color=looks.color(m), s=30, zorder=5)
        if missed:
            ax.scatter([], [], marker="x", color="0.3", s=30, label="× on top: no seed reached it there")
        axis.apply(ax)
        ax.set_xlabel("n (number of subnetworks)")
        ax.set_ylabel("seconds (training clock)")
        ax.grid(alpha=0.3)
        hs, labels = ax.get_legend_handles_labels()
        # beside the panel, never over a marker (the points sit anywhere in the plot area)
        ax.legend([*hs, *handles], [*labels, *(h.get_label() for h in handles)], fontsize=7,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    text = join_notes(note(summary),
                      f"Never reached training accuracy {target:g}: " + "; ".join(never) if never else "",
                      "Reached by some seeds only: " + "; ".join(some) if some else "")
    top(fig, f"Time to reach training accuracy {target:g} (mean ± 1 sd over the seeds that reach it)\n"
             f"{' | '.join(dict.fromkeys(resources))}; legend: ranks × threads")
    return fig, text


def time_to_target_figure(summary: pd.DataFrame, target: float = 0.9, path_stem: Path | None = None,
                          formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Training-clock seconds to reach ``target`` training accuracy, versus n.

    ``summary`` must hold ``time_to_target_s`` computed for the same target (``summarize``
    with ``target``); runs that never reach it are named in the note.
    """
    fig, text = draw_time_to_target(summary, target)
    return finish(fig, text, path_stem, formats)
