"""Markdown tables of a summary: mean ± std over seeds per grid cell, and their cells."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..layout import resources_text
from ..roles import role_of
from .records import STATUSES
from .rows import has_budgets, has_variants, is_variant


def fmt(values: pd.Series, digits: int = 3) -> str:
    """'0.912 ± 0.004' over the finite values (one value: '0.912'; none: 'n/a')."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if not len(v):
        return "n/a"
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def resources_cell(g: pd.DataFrame) -> str:
    """How the runs of ``g`` used their cores ('2 ranks × 1 thread'; several joined by ' / ')."""
    pairs = g[["workers", "threads"]].drop_duplicates() if {"workers", "threads"} <= set(g) else pd.DataFrame()
    return " / ".join(resources_text(w, t) for w, t in pairs.itertuples(index=False)) or "?"


def runs_cell(g: pd.DataFrame) -> str:
    """'k/m finished', then each other status with its count and seeds, in bold."""
    counts = g["status"].value_counts()
    parts = [f"{counts.get('finished', 0)}/{len(g)} finished"]
    for st in [*STATUSES[1:], *sorted(set(counts.index) - set(STATUSES))]:
        if counts.get(st, 0):
            seeds = ",".join(str(s) for s in g.loc[g["status"] == st, "seed"].tolist())
            parts.append(f"**{counts[st]} {st}** (seed {seeds})")
    return "; ".join(parts)


def reached_cell(ok: pd.DataFrame, column: str) -> str:
    """Seconds to a target over the runs that reached it ('12.3 ± 0.4'), with 'k/m' when only
    some did and 'not reached' when none did (never an average over the ones that missed)."""
    if column not in ok or not len(ok):
        return "n/a"
    hit = pd.to_numeric(ok[column], errors="coerce").dropna()
    if not len(hit):
        return "not reached"
    return fmt(hit, 1) + ("" if len(hit) == len(ok) else f" ({len(hit)}/{len(ok)})")


def is_layerwise(g: pd.DataFrame) -> bool:
    """Whether every run of ``g`` is of a layerwise method (its role, else run.json's flag)."""
    if "role" in g and g["role"].notna().all():
        return bool(g["role"].map(lambda r: role_of(r).layerwise).all())
    return "layerwise" in g and bool(g["layerwise"].astype(str).eq("True").all())


TEXT_COLUMNS = ("dataset", "model", "method", "preset", "variant", "runs", "ranks × threads",
                "settings (tuned: selected)")


def table_head(head: Sequence[str]) -> list[str]:
    """Header and separator of a markdown table: text columns left, numbers right."""
    align = ["---" if h in TEXT_COLUMNS else "---:" for h in head]
    return ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]


def excluded_lines(summary: pd.DataFrame) -> list[str]:
    """A line per run not in the averages: where it is, its status and why."""
    notes = []
    for _, r in summary[summary["status"] != "finished"].iterrows():
        variant = f"/{r['variant']}" if is_variant(r.get("variant")) else ""
        cores = f"/cores{int(r['cores'])}" if pd.notna(r.get("cores")) else ""
        notes.append(f"- {r['dataset']}/{r['model']}/{r['method']}/n{r['splits']}/seed{r['seed']}{cores}{variant}: "
                     f"**{r['status']}** — {r['reason'] or 'no reason recorded'}")
    return notes


def markdown_table(summary: pd.DataFrame) -> str:
    """Mean ± std over seeds per dataset/model/method/n (and variant, if any), as a markdown table.

    Numbers are over *finished* runs only; the ``runs`` column counts every run and
    names the ones that diverged or did not finish, so they are never silently averaged.
    """
    budgets = has_budgets(summary)
    presets = "preset" in summary and bool(summary["preset"].notna().any())
    keys = ["dataset", "model", "method", "splits", *(["preset"] if presets else []),
            *(["cores"] if budgets else []), *(["variant"] if has_variants(summary) else [])]
    val = "final_val_acc" in summary and pd.to_numeric(summary["final_val_acc"], errors="coerce").notna().any()
    head = ["dataset", "model", "method", "n", *keys[4:], *(["ranks × threads"] if budgets else []), "runs",
            "final train acc", *(["final val acc"] if val else []), "final test acc", "final train loss", "s/epoch",
            "move_1"]
    target = pd.to_numeric(summary.get("target_train_acc", pd.Series(dtype=float)), errors="coerce").dropna()
    if len(target):  # training-clock seconds until the accuracy first reached the target
        head[-1:-1] = [f"s to {target.iloc[0]:g} train acc", f"s to {target.iloc[0]:g} test acc"]
    lines = table_head(head)
    if not len(summary):
        lines.append("| (no runs) |" + " |" * (len(head) - 1))
        return "\n".join(lines) + "\n"
    df = summary.copy()
    if budgets:
        df["cores"] = pd.to_numeric(df["cores"], errors="coerce").map(lambda v: None if pd.isna(v) else str(int(v)))
    for k in keys:
        df[k] = df[k].astype(object).where(df[k].notna(), "—" if k in ("variant", "cores", "preset") else "?")
    for key, g in df.groupby(keys, sort=True, dropna=False):
        ok = g[g["status"] == "finished"]
        shown = list(map(str, key))
        if is_layerwise(g):
            shown[3] = "layerwise"  # the method splits at every layer: n does not apply
        cells = [*shown, *([resources_cell(ok if len(ok) else g)] if budgets else []), runs_cell(g),
                 fmt(ok["final_train_acc"]), *([fmt(ok["final_val_acc"])] if val else []),
                 fmt(ok["final_test_acc"]), fmt(ok["final_train_loss"], 4),
                 fmt(ok["sec_per_epoch"], 3),
                 *([reached_cell(ok, "time_to_target_s"), reached_cell(ok, "time_to_test_target_s")] if len(target) else []),
                 fmt(ok["move_1"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = excluded_lines(summary)
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\nRuns not in the averages:\n\n" + "\n".join(notes) + "\n"
    return text
