"""The verdict by budget (issue 22): each method at chosen epochs and the paired difference to
the control against epochs, from synthetic runs evaluated every 10 epochs (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tssm.reporting import budget, budget_figure, figdata, figures, summary
from tssm.reporting.records import load_runs

EPOCHS, EVERY = 30, 10
#: gsADMM minus frozen in test accuracy, points, per seed: +1/+2/+3 at epoch 10, -1/-2/-3 after
DIFF = {10: [1, 2, 3], 20: [0, 0, 0], 30: [-1, -2, -3]}


def _run(root: Path, method: str, n: int, seed: int, shift: dict[int, float]) -> None:
    d = root / "runs" / "fashion_mnist" / "mlp" / method / f"n{n}" / f"seed{seed}"
    d.mkdir(parents=True)
    rows = []
    for e in range(1, EPOCHS + 1):
        evaluated = e % EVERY == 0
        base = 0.5 + 0.01 * e + 0.05 * seed
        acc = base + shift.get(e, 0.0) / 100 if evaluated else math.nan
        rows.append({"epoch": e, "train_loss": 1.0 / e, "train_acc": acc if math.isnan(acc) else acc + 0.02,
                     "test_acc": acc, "train_time_s": 0.1 * e, "epoch_time_s": 0.1})
    pd.DataFrame(rows).to_csv(d / "metrics.csv", index=False)
    info = {"status": "finished", "config": {"dataset": "fashion_mnist", "model": "mlp", "method": method,
                                             "splits": n, "seed": seed, "epochs": EPOCHS, "preset": "tuned"},
            "environment": {"world_size": 1, "threads_per_rank": 1}, "final": rows[-1]}
    (d / "run.json").write_text(json.dumps(info))


@pytest.fixture()
def budget_runs(tmp_path: Path) -> Path:
    root = tmp_path / "results" / "full"
    for seed in range(3):
        _run(root, "adam", 1, seed, {})
        _run(root, "frozen", 2, seed, {})
        _run(root, "gsadmm", 2, seed, {e: DIFF[e][seed] for e in DIFF})
    return root


def test_budget_table_pairs_by_seed_at_each_epoch(budget_runs):
    runs = load_runs([budget_runs])
    data = figdata.from_runs(runs)
    t = budget.budget_table(data.summary, data.curves, [10, 30])
    g = t[t["method"] == "gsadmm"].set_index("epoch")
    assert g.loc[10, "d_test"] == "+2.00 [-0.48, +4.48] (contains 0)"  # t_{.975,2} * 1 / sqrt(3) = 2.48
    assert g.loc[30, "d_test"] == "-2.00 [-4.48, +0.48] (contains 0)"
    assert g.loc[10, "runs"] == 3 and t[t["method"] == "adam"]["d_test"].eq("—").all()
    adam = t[(t["method"] == "adam") & (t["epoch"] == 10)].iloc[0]
    assert adam["test_acc"] == f"{0.6 + 0.05:.3f} ± {0.05:.3f}"  # 0.60, 0.65, 0.70 at epoch 10


def test_summary_md_has_the_budget_section(budget_runs, capsys):
    assert summary.main([str(budget_runs), "--epochs", "10", "30", "100"]) == 0
    md = (budget_runs / "summary.md").read_text()
    section = md.split("## Budget: the verdict at epochs 10, 30, 100")[1]
    lines = [ln for ln in section.splitlines() if ln.startswith("| 10 |") or ln.startswith("| 30 |")]
    assert [ln.split("|")[4].strip() for ln in lines] == ["adam", "frozen", "gsadmm"] * 2  # role order
    assert "No run has an evaluation at epoch 100." in section
    assert summary.main([str(budget_runs)]) == 0 and "## Budget" not in (budget_runs / "summary.md").read_text()


def test_budget_figure_draws_the_paired_difference_against_epochs(budget_runs, tmp_path):
    import matplotlib.pyplot as plt

    data = figdata.from_runs(load_runs([budget_runs]))
    fig, _ = budget_figure.draw_budget(data.summary, data.curves)
    test_ax, train_ax = fig.axes[:2]
    line = {ln.get_gid(): ln for ln in test_ax.get_lines()}["gsadmm"]
    assert list(line.get_xdata()) == [10, 20, 30]
    assert np.allclose(line.get_ydata(), [np.mean(DIFF[e]) for e in (10, 20, 30)])
    assert "gsadmm" in {ln.get_gid() for ln in train_ax.get_lines()}
    assert "adam" not in {ln.get_gid() for ln in test_ax.get_lines()}  # a baseline has no control
    assert "gsADMM" in [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    plt.close(fig)
    written = figures.make_figures(data, tmp_path / "f", formats=("png",), budget=True)
    assert "budget.png" in {p.name for p in written}
