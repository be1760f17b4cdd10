"""The suite's runs beside the paper's Figure 1 values: for each dataset and model the paper drew
(:data:`tssm.paper.FIGURE1_SETUP`), each method it reports (:data:`tssm.paper.FIGURE1_FINAL_TRAIN_ACC`)
at the paper's split level, per preset: the paper's final training accuracy and the suite's.

A section of ``summary.md``: the paper's claim is read off its figure, so the reader sees at
once which preset comes near it and which does not, and after how many epochs the runs stopped.
"""

from __future__ import annotations

import pandas as pd

from .. import paper
from .figdata import at_split_level, runs_on_budget
from .methods import Methods
from .tables import fmt, is_layerwise, runs_cell, table_head


def paper_markdown(summary: pd.DataFrame, splits: int = paper.FIGURE1_SPLITS) -> str:
    """'## Against the paper's Figure 1' ('' when no run is of a method and setup the paper
    reports): per dataset/model, a row per method, n and preset (or variant) with the paper's
    final training accuracy, the runs' final training accuracy (mean ± sd over finished seeds),
    their difference in points and the epochs the runs trained."""
    if not len(summary):
        return ""
    looks = Methods(summary)
    s = runs_on_budget(summary, timed=False)
    s = at_split_level(s.assign(splits=pd.to_numeric(s["splits"], errors="coerce")), splits, looks)
    head = ["method", "n", "preset", "variant", "runs", "epochs", "paper train acc", "suite train acc",
            "suite − paper (pts)"]
    parts = []
    for (dataset, model), d in s.groupby(["dataset", "model"], sort=True):
        values = paper.figure1_values(dataset, model)
        d = d[d["method"].isin(values)]
        if not len(d):
            continue
        lines = table_head(head)
        order = {m: i for i, m in enumerate(looks.order(d["method"]))}
        d = d.assign(_m=d["method"].map(order), preset=d["preset"].fillna("").astype(str),
                     variant=d["variant"].fillna("").astype(str))
        for (_, method, n, preset, variant), g in d.groupby(["_m", "method", "splits", "preset", "variant"], sort=True):
            ok = g[g["status"] == "finished"]
            acc = pd.to_numeric(ok["final_train_acc"], errors="coerce").dropna()
            epochs = sorted({int(e) for e in pd.to_numeric(ok["epochs_done"], errors="coerce").dropna()})
            diff = f"{100 * (acc.mean() - values[method]):+.1f}" if len(acc) else "n/a"
            lines.append("| " + " | ".join([
                looks.label(method), "layerwise" if is_layerwise(g) else str(int(n)), preset or "—",
                variant or "—", runs_cell(g), ", ".join(map(str, epochs)) or "—", f"{values[method]:.3f}",
                fmt(acc), diff]) + " |")
        parts.append(f"**{dataset} / {model}** (the paper: {paper.FIGURE1_SETUP[dataset][1]} epochs, split methods at n = {splits})\n\n"
                     + "\n".join(lines) + "\n")
    if not parts:
        return ""
    return ("## Against the paper's Figure 1\n\nFinal training accuracy, the paper's (read off its Figure 1) "
            "beside the suite's runs of the same method, model and split level, by preset; the runs' epochs "
            "are given because the paper's are.\n\n" + "\n".join(parts))
