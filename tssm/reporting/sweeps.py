"""Sweeps (a config's ``grid:``): final accuracy per variant against the control and a baseline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .methods import Methods
from .rows import has_variants, is_variant, setting_text, sweep_fields
from .tables import runs_cell, table_head


def matching_runs(ok: pd.DataFrame, row: pd.Series, method: str, splits: Any,
                  fields: Sequence[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Finished runs of ``method`` at n = ``splits`` on ``row``'s dataset/model, narrowed to
    ``row``'s value of each of ``fields`` those runs vary themselves (a preset against the
    control of that preset, the same init ...), and those {field: value}."""
    c = ok[(ok["dataset"] == row["dataset"]) & (ok["model"] == row["model"]) & (ok["method"] == method)
           & (ok["splits"] == splits)]
    matched = {}
    for f in fields:
        if c[f].astype(str).nunique() > 1:
            matched[f] = row[f]
            c = c[c[f].astype(str) == str(row[f])]
    return c, matched


def _reference(ok: pd.DataFrame, row: pd.Series, method: str | None, splits: int,
               fields: Sequence[str]) -> tuple[float, dict[str, Any]]:
    """Mean final test accuracy of ``method`` at n = ``splits`` on ``row``'s dataset/model, over
    its finished runs with ``row``'s value of each field those runs vary (e.g. the same init),
    and those {field: value}."""
    if method is None:
        return math.nan, {}
    c, matched = matching_runs(ok, row, method, splits, [*fields, *(["preset"] if "preset" in ok else [])])
    acc = pd.to_numeric(c["final_test_acc"], errors="coerce").dropna()
    return (float(acc.mean()) if len(acc) else math.nan), matched


def sweep_table(summary: pd.DataFrame, reference: str = "adam", control: str | None = None) -> pd.DataFrame:
    """Final accuracy per dataset/model/method/n/variant against the controls.

    One row per variant of every method but the controls (the ``control`` role's method, and
    ``reference``; all methods if only they ran): runs, finished runs, mean and sd over
    finished seeds of the final train/test accuracy, the final test accuracy of the control at
    the same n and of ``reference`` at n = 1 (each with the same value of every setting it
    varies itself, named in ``controls``), and the differences to them in points (100 x
    accuracy). Swept settings are columns too. Sorted by final test accuracy (best first)
    within each method and n.
    """
    control = control or Methods(summary).control()
    fields = sweep_fields(summary)
    s = summary.copy()
    s["splits"] = pd.to_numeric(s["splits"], errors="coerce")
    s["variant"] = s["variant"].where(s["variant"].map(is_variant), "")
    ok = s[s["status"] == "finished"]
    subjects = s[~s["method"].isin([control, reference])]
    subjects = subjects if len(subjects) else s
    rows = []
    for (dataset, model, method, n, variant), g in subjects.groupby(
            ["dataset", "model", "method", "splits", "variant"], sort=True, dropna=False):
        fin = g[g["status"] == "finished"]
        train = pd.to_numeric(fin["final_train_acc"], errors="coerce")
        test = pd.to_numeric(fin["final_test_acc"], errors="coerce")
        first = g.iloc[0]
        ctrl, m1 = _reference(ok, first, control, n, fields)
        ref, m2 = _reference(ok, first, reference, 1, fields)
        rows.append({
            "dataset": dataset, "model": model, "method": method, "splits": n, "variant": variant,
            **{f: first[f] for f in fields},
            "runs": len(g), "finished": len(fin), "runs_text": runs_cell(g),
            "train_acc": train.mean(), "train_sd": train.std(ddof=1), "test_acc": test.mean(), "test_sd": test.std(ddof=1),
            "control_test_acc": ctrl, "ref_test_acc": ref,
            "d_control_pts": 100 * (test.mean() - ctrl), "d_ref_pts": 100 * (test.mean() - ref),
            "controls": ", ".join(f"{k}={setting_text(v)}" for k, v in {**m1, **m2}.items()),
        })
    out = pd.DataFrame(rows)
    if len(out):
        out = out.sort_values(["dataset", "model", "method", "splits", "test_acc"],
                              ascending=[True, True, True, True, False], na_position="last").reset_index(drop=True)
    return out


def sweep_markdown(summary: pd.DataFrame, reference: str = "adam") -> str:
    """:func:`sweep_table` as a markdown section ('' when no run has a variant)."""
    if not has_variants(summary):
        return ""
    control = Methods(summary).control() or "control"
    t = sweep_table(summary, reference)

    def acc(mean: float, sd: float) -> str:
        return "n/a" if mean != mean else f"{mean:.3f}" + (f" ± {sd:.3f}" if sd == sd else "")

    def pts(d: float) -> str:
        return "n/a" if d != d else f"{d:+.1f}"

    ref = reference
    head = ["dataset", "model", "method", "n", "variant", "runs", "final train acc", "final test acc",
            f"{control} test acc", f"Δ test vs {control} (pts)", f"{ref} test acc", f"Δ test vs {ref} (pts)"]
    lines = table_head(head)
    for r in t.itertuples(index=False):
        lines.append("| " + " | ".join([
            str(r.dataset), str(r.model), str(r.method), str(int(r.splits)), r.variant or "—", r.runs_text,
            acc(r.train_acc, r.train_sd), acc(r.test_acc, r.test_sd), acc(r.control_test_acc, math.nan),
            pts(r.d_control_pts), acc(r.ref_test_acc, math.nan), pts(r.d_ref_pts)]) + " |")
    matched = sorted({kv.split("=")[0] for c in t.get("controls", []) for kv in c.split(", ") if kv})
    same = f", each with the same {', '.join(matched)}" if matched else ""
    return (f"## Sweep: final accuracy per variant\n\nFinal train/test accuracy per variant (mean ± std over "
            f"finished seeds), best test accuracy first within each method and n, against `{control}` at the "
            f"same n and {ref} at n = 1{same}; Δ = difference in test accuracy, in points (100 × accuracy).\n\n"
            + "\n".join(lines) + "\n")
