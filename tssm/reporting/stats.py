"""Paired statistics: each compared method minus the control at the same n, seed by seed."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .methods import Methods
from .rows import is_variant, setting_text, sweep_fields
from .sweeps import matching_runs
from .tables import table_head

#: The final metrics a paired table compares, and how its headers name them.
PAIRED_METRICS = {"final_test_acc": "test", "final_val_acc": "validation", "final_train_acc": "train"}


def mean_ci(d: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, half-width of the Student-t interval at ``level``, sd) of ``d``; the half-width
    is NaN with fewer than 2 values."""
    from scipy import stats

    v = np.asarray(d, dtype=float)
    if not len(v):
        return math.nan, math.nan, math.nan
    if len(v) < 2:
        return float(v.mean()), math.nan, math.nan
    sd = float(v.std(ddof=1))
    return float(v.mean()), float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * sd / math.sqrt(len(v))), sd


def comparable(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with numeric n, and variant/preset/cores as text ('' for none), so that each
    preset and resource budget is compared with its own control."""
    s = summary.copy()
    s["splits"] = pd.to_numeric(s["splits"], errors="coerce")
    s["variant"] = s["variant"].where(s["variant"].map(is_variant), "") if "variant" in s else ""
    for k in ("preset", "cores"):
        s[k] = s[k].map(lambda v: "" if v is None or v != v else setting_text(v)) if k in s else ""
    return s


def paired_differences(subject: pd.DataFrame, control: pd.DataFrame, metrics: Sequence[str]) -> dict:
    """Per metric: mean difference ``subject - control`` over the seeds both have, the half-width
    of its 95% interval and the number of pairs, in points (100 x); and ``pairs``."""
    ctrl = control.drop_duplicates("seed").set_index("seed")
    pairs = subject[subject["seed"].isin(ctrl.index)].drop_duplicates("seed")
    row = {"pairs": len(pairs)}
    for m in metrics:
        d = 100 * (pd.to_numeric(pairs[m], errors="coerce").to_numpy()
                   - pd.to_numeric(ctrl.loc[pairs["seed"], m], errors="coerce").to_numpy())
        d = d[~np.isnan(d)]
        mean, half, _ = mean_ci(d)
        row[f"d_{m}"], row[f"ci_{m}"], row[f"n_{m}"] = mean, half, len(d)
    return row


def paired_table(summary: pd.DataFrame, control: str | None = None,
                 metrics: Sequence[str] = tuple(PAIRED_METRICS)) -> pd.DataFrame:
    """Each compared method's (role ``split``/``pipeline``) difference to ``control`` (default: the
    ``control`` role's method) at the same n, paired by seed (same initial weights and data
    order): per dataset/model/method/n/preset/variant, the number of pairs and, per metric, the
    mean difference and the half-width of its 95% interval, in points (100 x)."""
    methods = Methods(summary)
    control = control or methods.control()
    fields = sweep_fields(summary)
    s = comparable(summary)
    ok = s[s["status"] == "finished"]
    compared = ok["method"].map(lambda m: methods.role(m).paired)
    subjects = ok[(ok["method"] != control) & (ok["splits"] > 1) & compared.astype(bool)]
    rows = []
    group = ["dataset", "model", "method", "splits", "preset", "cores", "variant"]
    if control is None:
        return pd.DataFrame(columns=[*group, "pairs"])
    for key, g in subjects.groupby(group, sort=True):
        ctrl = matching_runs(ok, g.iloc[0], control, g.iloc[0]["splits"],
                             [*fields, *(k for k in ("preset", "cores") if k in ok)])[0]
        rows.append({**dict(zip(group, key)), **paired_differences(g, ctrl, metrics)})
    return pd.DataFrame(rows, columns=None if rows else [*group, "pairs"])


def interval_text(mean: float, half: float, bold: bool = False) -> str:
    """A paired difference as printed: '+2.00 [-0.48, +4.48] (contains 0)', '+5.00 (one pair)',
    'n/a'; ``bold``: an interval that excludes 0 in bold."""
    if mean != mean:
        return "n/a"
    if half != half:
        return f"{mean:+.2f} (one pair)"
    text = f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"
    if mean - half <= 0 <= mean + half:
        return text + " (contains 0)"
    return f"**{text}**" if bold else text


def paired_markdown(summary: pd.DataFrame, control: str | None = None) -> str:
    """:func:`paired_table` as a markdown section ('' when no compared method has a control)."""
    control = control or Methods(summary).control()
    t = paired_table(summary, control)
    if not len(t) or not (t["pairs"] > 0).any():
        return ""
    shown = [m for m in PAIRED_METRICS if t[f"n_{m}"].gt(0).any()]
    budgets = bool((t["cores"] != "").any())
    head = ["dataset", "model", "method", "n", "preset", *(["cores"] if budgets else []), "variant", "pairs",
            *(f"Δ {PAIRED_METRICS[m]} (pts), 95% CI" for m in shown)]
    lines = table_head(head)
    for r in t.to_dict("records"):
        lines.append("| " + " | ".join([str(r["dataset"]), str(r["model"]), str(r["method"]), str(int(r["splits"])),
                                         r["preset"] or "—", *([r["cores"] or "—"] if budgets else []),
                                         r["variant"] or "—", str(r["pairs"]),
                                         *(interval_text(r[f"d_{m}"], r[f"ci_{m}"]) for m in shown)]) + " |")
    return (f"## Paired difference to `{control}`\n\nEach split method minus `{control}` at the same n, run by run "
            f"over the seeds both finished (same initial weights and data order): mean difference in points "
            f"(100 × accuracy) and its 95% Student-t interval; *contains 0* means these seeds do not show a "
            f"difference.\n\n" + "\n".join(lines) + "\n")
