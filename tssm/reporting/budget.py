"""How the verdict moves with the budget: each method at chosen epochs (the figure of the
difference to the control against epochs: :mod:`tssm.reporting.budget_figure`; issue 22).

Runs evaluate every ``eval_every`` epochs with constant learning rates, so the state at
epoch 30 of a 100-epoch run is the state a 30-epoch run ends in: one run gives the verdict
at every evaluated epoch. Generic over the recorded columns: an epoch is counted for a run
where its metrics.csv holds a finite value at that epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..layout import AXES
from .figdata import key, runs_on_budget
from .methods import Methods
from .rows import setting_text
from .stats import comparable, interval_text, paired_table
from .tables import fmt, table_head

#: Accuracy columns a budget view reads at each epoch: {curve column: summary column}.
AT_EPOCH = {"train_acc": "final_train_acc", "test_acc": "final_test_acc", "val_acc": "final_val_acc"}


def at_epoch(summary: pd.DataFrame, curves: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """The finished runs of ``summary`` with their accuracies at ``epoch`` in the ``final_*``
    columns (NaN where the run has no evaluation there)."""
    s = summary[summary["status"] == "finished"].copy()
    c = curves[curves["epoch"] == epoch].copy()
    c.index = key(c)
    c = c[~c.index.duplicated()]
    k = key(s)
    for col, final in AT_EPOCH.items():
        s[final] = k.map(c[col]) if col in c and len(c) else float("nan")
    return s


def budget_table(summary: pd.DataFrame, curves: pd.DataFrame, epochs: Sequence[int]) -> pd.DataFrame:
    """Per epoch and dataset/model/method/n/preset/variant: runs with a value there, mean and sd
    of train and test accuracy, and the paired difference to the control (points, 95% CI)."""
    rows = []
    group = ["dataset", "model", "method", "splits", "preset", "cores", "variant"]
    summary = runs_on_budget(summary, timed=False)  # a budget's runs repeat the plain runs' numbers
    for e in epochs:
        s = comparable(at_epoch(summary, curves, e))
        paired = paired_table(s)
        paired = paired.set_index(group) if len(paired) else paired
        for key, g in s.groupby(group, sort=True):
            test, train = g["final_test_acc"].dropna(), g["final_train_acc"].dropna()
            if not len(test) and not len(train):
                continue
            p = paired.loc[key] if len(paired) and key in paired.index else None
            rows.append({"epoch": e, **dict(zip(group, key)), "runs": int(max(len(test), len(train))),
                         "train_acc": fmt(train), "test_acc": fmt(test),
                         "d_test": interval_text(p["d_final_test_acc"], p["ci_final_test_acc"], True) if p is not None
                         else "—",
                         "d_train": interval_text(p["d_final_train_acc"], p["ci_final_train_acc"], True) if p is not None
                         else "—"})
    return pd.DataFrame(rows)


def budget_markdown(summary: pd.DataFrame, curves: pd.DataFrame, epochs: Sequence[int]) -> str:
    """:func:`budget_table` as a markdown section, methods in role order (a line for each epoch
    no run evaluated)."""
    if not epochs:
        return ""
    looks = Methods(summary)
    control = looks.control() or "control"
    t = budget_table(summary, curves, epochs)
    missing = [e for e in epochs if not len(t) or e not in set(t["epoch"])]
    head = ["epoch", "dataset", "model", "method", "n", "preset", "variant", "runs", "train acc", "test acc",
            f"Δ test vs {control} (pts, 95% CI)", f"Δ train vs {control} (pts, 95% CI)"]
    lines = table_head(head)
    if len(t):
        rank = {m: i for i, m in enumerate(looks.order(t["method"]))}
        t = t.assign(_m=t["method"].map(rank)).sort_values(["epoch", "dataset", "model", "_m", "splits", "preset"])
        for r in t.to_dict("records"):
            lines.append("| " + " | ".join([str(r["epoch"]), r["dataset"], r["model"], r["method"],
                                             str(int(r["splits"])), r["preset"] or "—", r["variant"] or "—",
                                             str(r["runs"]), r["train_acc"], r["test_acc"], r["d_test"],
                                             r["d_train"]]) + " |")
    gone = f"\n\nNo run has an evaluation at epoch {', '.join(map(str, missing))}." if missing else ""
    return (f"## Budget: the verdict at epochs {', '.join(map(str, epochs))}\n\nAccuracy at each epoch (mean ± sd "
            f"over the finished runs evaluated there); Δ: each compared method minus `{control}` at the same n, "
            f"preset and epoch, paired by seed, in points, 95% Student-t interval (bold: excludes 0).\n\n"
            + "\n".join(lines) + gone + "\n")
