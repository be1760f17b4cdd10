"""The verdict: every method under each named preset, and each compared method's paired
difference to the control (the section ``summary.md`` opens with)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .methods import Methods
from .rows import has_budgets
from .stats import interval_text, paired_table
from .tables import fmt, is_layerwise, runs_cell, table_head

#: The named presets a verdict compares, in the order its tables show them.
VERDICT_PRESETS = ("paper", "demo", "tuned")


def verdict_markdown(summary: pd.DataFrame, control: str | None = None) -> str:
    """The verdict ('' without runs of a named preset): per dataset and model, every method and
    n under each of :data:`VERDICT_PRESETS`, with the settings ``tuned`` selected, mean ± sd over
    seeds of the final train / validation / test accuracy, and the paired difference to the
    control at the same n and preset (points, 95% interval; *contains 0* when the seeds show no
    difference). Rows go by role (baselines, layerwise, the control, the compared methods),
    then registry order. Trials and runs without a preset are not in it."""
    if "preset" not in summary:
        return ""
    methods = Methods(summary)
    control = control or methods.control() or "control"
    s = summary[summary["preset"].isin(VERDICT_PRESETS)].copy()
    if has_budgets(s):
        s = s[pd.to_numeric(s["cores"], errors="coerce").isna()]
    if not len(s):
        return ""
    paired = paired_table(summary, control)
    key = ["dataset", "model", "method", "splits", "preset"]
    if len(paired):
        paired = paired[paired["preset"].isin(VERDICT_PRESETS) & (paired["cores"] == "")].set_index(key)
    order = {m: i for i, m in enumerate(methods.order(s["method"]))}
    s["splits"] = pd.to_numeric(s["splits"], errors="coerce")
    s["_m"], s["_p"] = s["method"].map(order), s["preset"].map(VERDICT_PRESETS.index)

    def delta(r: Any, metric: str) -> str:
        return interval_text(r[f"d_{metric}"], r[f"ci_{metric}"], bold=True)

    val = pd.to_numeric(s["final_val_acc"], errors="coerce").notna().any()
    head = ["method", "n", "preset", "settings (tuned: selected)", "runs", "train acc", *(["val acc"] if val else []),
            "test acc", f"Δ test vs {control} (pts, 95% CI)", f"Δ train vs {control} (pts, 95% CI)"]
    parts = []
    for (dataset, model), d in s.groupby(["dataset", "model"], sort=True):
        lines, glance = table_head(head), {}
        for (_, n, _, method, preset), g in d.groupby(["_m", "splits", "_p", "method", "preset"], sort=True):
            ok = g[g["status"] == "finished"]
            settings = ok["preset_values"].dropna().unique() if preset == "tuned" else []
            comp = paired.loc[(dataset, model, method, n, preset)] if len(paired) and \
                (dataset, model, method, n, preset) in paired.index else None
            if isinstance(comp, pd.DataFrame):
                comp = comp.iloc[0]
            shown_n = "layerwise" if is_layerwise(g) else str(int(n))
            test, d_test = fmt(ok["final_test_acc"]), delta(comp, "final_test_acc") if comp is not None else None
            glance.setdefault((method, shown_n), {})[preset] = test + (f"; Δ {d_test}" if d_test else "")
            lines.append("| " + " | ".join([
                method, shown_n, preset, "; ".join(settings) or "—", runs_cell(g),
                fmt(ok["final_train_acc"]), *([fmt(ok["final_val_acc"])] if val else []), test,
                d_test or "—", delta(comp, "final_train_acc") if comp is not None else "—"]) + " |")
        short = ["| method | n | " + " | ".join(f"`{p}`: test acc; Δ vs {control}" for p in VERDICT_PRESETS) + " |",
                 "|---|---:|" + "---:|" * len(VERDICT_PRESETS)]
        short += [f"| {m} | {n} | " + " | ".join(cells.get(p, "—") for p in VERDICT_PRESETS) + " |"
                  for (m, n), cells in glance.items()]
        parts.append(f"### {dataset} / {model}\n\nAt a glance (final test accuracy, mean ± sd; Δ in points, 95% CI):"
                     f"\n\n" + "\n".join(short) + "\n\nIn full:\n\n" + "\n".join(lines) + "\n")
    return (f"## Verdict: each method under the `paper`, `demo` and `tuned` presets\n\n"
            f"Mean ± sd over seeds (finished runs); Δ: each split method minus `{control}` at the same n and "
            f"preset, paired by seed (same initial weights and data order), in points (100 × accuracy), with its "
            f"95% Student-t interval, in bold when the interval excludes 0. `tuned`: the settings selected on "
            f"validation accuracy (every trial: `tuning.md`); `paper` / `demo`: the presets' values (README, "
            f"Presets; each run's `run.json` records them).\n\n" + "\n".join(parts))
