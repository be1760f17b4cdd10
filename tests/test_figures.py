"""Summary and figures from synthetic run directories (no training).

The synthetic tree mimics what ``tssm train`` writes: ``run.json`` + ``metrics.csv`` under
``{dataset}/{model}/{method}/n{splits}/seed{seed}/``, including a run that diverged (NaN
loss, status "diverged"), a run whose metrics lack most columns, a run still going (no
run.json) and a run.json that is not JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tssm import paper
from tssm.paper import FIGURE1_FINAL_TRAIN_ACC as PAPER_FINAL_TRAIN_ACC
from tssm.reporting import (acc_vs_splits, figdata, figure1, figure2, figures, records, rows, speedup, style,
                            sweep_figure, sweeps, time_to_target)
from tssm.reporting import summary as summary_cli
from tssm.reporting.figures import FIGURES, make_figures
from tssm.reporting.methods import Methods
from tssm.reporting.records import load_runs
from tssm.reporting.rows import summarize
from tssm.reporting.summary import write_summary
from tssm.reporting import tables
from tssm.reporting.tables import markdown_table

EPOCHS = 6


def _curve(final: float, epochs: int = EPOCHS, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(1, epochs + 1)
    return np.clip(final * (1 - np.exp(-t / 2.0)) + rng.normal(0, 0.005, epochs), 0, 1)


def write_run(root: Path, dataset: str, model: str, method: str, n: int, seed: int, *, final: float = 0.9,
              status: str = "finished", sec: float = 0.5, columns: list[str] | None = None,
              epoch0: bool = True, world_size: int = 1, variant: dict | None = None, cores: int | None = None,
              threads: int = 1, record: dict | None = None, config: dict | None = None) -> Path:
    """One synthetic run directory; ``columns`` restricts metrics.csv to those columns;
    ``variant`` ({field: value}) makes it one setting of a sweep, in its variant folder and
    tagged as the pipeline tags it; ``cores`` makes it a run of an equal-resources budget (its
    folder cores<C>/ and tag), with ``world_size`` ranks x ``threads`` threads. ``record`` and
    ``config``: further keys of run.json and of its config (e.g. role, label, preset)."""
    d = root / "runs" / dataset / model / method / f"n{n}" / f"seed{seed}"
    tags = {}
    if cores:
        d = d / f"cores{cores}"
        tags["cores"] = str(cores)
    if variant:
        name = "-".join(f"{k}_{v}" for k, v in sorted(variant.items()))
        d = d / name
        tags.update({"variant": name, **{f"variant.{k}": str(v) for k, v in variant.items()}})
    d.mkdir(parents=True, exist_ok=True)
    acc = _curve(final, seed=seed + n)
    rows = []
    if epoch0:
        rows.append({"epoch": 0, "train_loss": 2.3, "train_acc": 0.1, "test_loss": 2.3, "test_acc": 0.1,
                     "move_1": 0.0, "train_time_s": 0.0, "epoch_time_s": 0.0})
    for e in range(1, EPOCHS + 1):
        rows.append({"epoch": e, "train_loss": float(-np.log(max(acc[e - 1], 1e-3))), "train_acc": float(acc[e - 1]),
                     "test_loss": 0.5, "test_acc": float(acc[e - 1]) - 0.03, "move_1": 0.01 * e,
                     "train_time_s": sec * e, "epoch_time_s": sec})
    if status == "diverged":
        rows = rows[:4]
        rows[-1]["train_loss"] = float("nan")
    df = pd.DataFrame(rows)
    if columns is not None:
        df = df[columns]
        rows = df.to_dict("records")
    df.to_csv(d / "metrics.csv", index=False)
    cfg = {"dataset": dataset, "model": model, "method": method, "splits": n, "seed": seed, "epochs": EPOCHS,
           "device": "cpu", "rho": 1.0, "init": "kaiming", **(variant or {}), **(config or {}), "tags": tags}
    info = {"status": status, "reason": "run diverged at epoch 3: train_loss is nan" if status == "diverged" else None,
            "config": cfg, "config_hash": "abc", "git_commit": "deadbeef",
            "environment": {"world_size": world_size, "threads_per_rank": threads, "device": "cpu"},
            "epochs_done": len(rows), "final": rows[-1], "wall_time_s": 3.0, "mlflow_run_id": None, **(record or {})}
    (d / "run.json").write_text(json.dumps(info))
    return d


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "results" / "synthetic"
    finals = {"sgd": 0.97, "adam": 0.99, "gsadmm": 0.95, "gsam": 0.94, "frozen": 0.6}
    for ds in ("mnist", "digits"):
        for seed in (0, 1):
            for m in ("sgd", "adam"):
                write_run(root, ds, "mlp", m, 1, seed, final=finals[m], sec=0.4)
            for m in ("gsadmm", "gsam", "frozen"):
                for n in (1, 2, 3):
                    write_run(root, ds, "mlp", m, n, seed, final=finals[m] - 0.05 * (n - 1), sec=0.3 + 0.1 * n)
    # problem runs
    write_run(root, "mnist", "mlp", "gsadmm", 3, 2, status="diverged")
    write_run(root, "mnist", "mlp", "gsam", 2, 2, columns=["epoch", "train_loss"])  # no accuracy, no clock
    running = write_run(root, "digits", "mlp", "gsadmm", 2, 2)
    (running / "run.json").unlink()  # still running: metrics but no run.json
    broken = write_run(root, "digits", "mlp", "gsam", 3, 2)
    (broken / "run.json").write_text("{not json")
    return root


def test_summary_rows_statuses_and_numbers(tree: Path):
    df = summarize(load_runs([tree]))
    assert len(df) == 2 * 2 * (2 + 3 * 3) + 4  # one row per run directory
    assert list(df.columns) == list(rows.SUMMARY_COLUMNS)
    status = df.set_index(["dataset", "method", "splits", "seed"])["status"]
    assert status[("mnist", "gsadmm", 3, 2)] == "diverged"
    assert status[("digits", "gsadmm", 2, 2)] == "incomplete"
    assert status[("digits", "gsam", 3, 2)] == "unreadable"
    assert status[("mnist", "gsam", 2, 2)] == "finished"
    ok = df[(df["dataset"] == "mnist") & (df["method"] == "adam") & (df["seed"] == 0)].iloc[0]
    # the epoch-0 evaluation row does not count as a training epoch
    assert ok["epochs_done"] == EPOCHS
    assert ok["sec_per_epoch"] == pytest.approx(0.4)
    assert ok["move_1"] == pytest.approx(0.01 * EPOCHS)
    assert 0.9 < ok["final_train_acc"] <= 1.0
    assert ok["time_to_target_s"] == pytest.approx(0.4 * ok["epoch_to_target"])
    missing = df[(df["dataset"] == "mnist") & (df["method"] == "gsam") & (df["splits"] == 2) & (df["seed"] == 2)]
    assert math.isnan(missing["final_train_acc"].iloc[0]) and math.isnan(missing["sec_per_epoch"].iloc[0])
    diverged = df[df["status"] == "diverged"].iloc[0]
    assert "diverged" in diverged["reason"]


def test_axes_come_from_the_path_when_run_json_is_missing(tree: Path):
    df = summarize(load_runs([tree]))
    row = df[df["status"] == "incomplete"].iloc[0]
    assert (row["dataset"], row["model"], row["method"], row["splits"], row["seed"]) == ("digits", "mlp", "gsadmm", 2, 2)


def test_markdown_table_means_over_finished_seeds_and_names_diverged(tree: Path):
    df = summarize(load_runs([tree]))
    md = markdown_table(df)
    lines = [l for l in md.splitlines() if l.startswith("| mnist | mlp | gsadmm | 3 |")]
    assert len(lines) == 1 and "2/3 finished" in lines[0] and "1 diverged" in lines[0] and "±" in lines[0]
    assert "Runs not in the averages" in md and "diverged at epoch 3" in md
    # one table row per dataset/model/method/n
    assert sum(l.startswith("| mnist |") for l in md.splitlines()) == 2 + 3 * 3


def test_time_to_a_target_in_training_and_test_accuracy(tree: Path):
    """The table gives seconds to the target in training and in test accuracy (test lags by
    0.03 here, so it gets there no earlier); a method that never gets there says so, and one
    where only some seeds did says how many, instead of averaging over the ones that did."""
    df = summarize(load_runs([tree]), target=0.8)
    adam = df[(df["dataset"] == "mnist") & (df["method"] == "adam")]
    assert (adam["epoch_to_test_target"] >= adam["epoch_to_target"]).all()
    assert adam["time_to_test_target_s"].tolist() == pytest.approx((0.4 * adam["epoch_to_test_target"]).tolist())
    md = markdown_table(df)
    head = md.splitlines()[0]
    assert "| s to 0.8 train acc | s to 0.8 test acc |" in head
    frozen = next(l for l in md.splitlines() if l.startswith("| mnist | mlp | frozen | 2 |"))
    assert frozen.count("not reached") == 2
    cells = dict(zip(head.split("|"), next(l for l in md.splitlines() if l.startswith("| mnist | mlp | adam |")).split("|")))
    assert cells[" s to 0.8 test acc "].strip() == tables.fmt(adam["time_to_test_target_s"], 1)
    partial = df[(df["dataset"] == "mnist") & (df["method"] == "adam")].copy()
    partial.loc[partial.index[0], "time_to_test_target_s"] = float("nan")
    assert tables.reached_cell(partial, "time_to_test_target_s").endswith("(1/2)")


def test_write_summary_cli(tree: Path, capsys):
    assert summary_cli.main([str(tree)]) == 0
    assert (tree / "summary.csv").exists() and (tree / "summary.md").exists()
    assert len(pd.read_csv(tree / "summary.csv")) == 48
    assert summary_cli.main([str(tree / "nope")]) == 2


def test_all_figures_are_written_without_crashing(tree: Path):
    runs = load_runs([tree])
    written = make_figures(runs, tree / "figures", target=0.8)
    names = {p.name for p in written}
    assert names == {f"{stem}.{ext}" for stem in FIGURES for ext in ("png", "pdf")}
    for p in written:
        assert p.stat().st_size > 1000


def test_figures_cli_reads_summary(tree: Path):
    write_summary([tree], tree / "summary.csv", tree / "summary.md")
    assert figures.main([str(tree), "--formats", "png"]) == 0
    assert sorted(p.name for p in (tree / "figures").iterdir()) == sorted(f"{s}.png" for s in FIGURES)


def test_diverged_and_incomplete_runs_stay_out_of_the_curves(tree: Path):
    runs = load_runs([tree])
    curves = figdata.curves_of(runs)
    assert not ((curves["method"] == "gsadmm") & (curves["splits"] == 3) & (curves["seed"] == 2)).any()
    assert not ((curves["dataset"] == "digits") & (curves["method"] == "gsadmm") & (curves["seed"] == 2)).any()
    note = style.excluded_note(summarize(runs))
    assert "gsadmm n=3 seed 2: diverged" in note and "incomplete" in note


def test_only_diverged_or_empty_inputs_give_placeholder_figures(tmp_path: Path):
    root = tmp_path / "r"
    write_run(root, "mnist", "mlp", "gsadmm", 2, 0, status="diverged")
    written = make_figures(load_runs([root]), tmp_path / "figs", formats=("png",))
    assert len(written) == len(FIGURES)
    empty = make_figures([], tmp_path / "empty", formats=("png",))
    assert len(empty) == len(FIGURES)


def test_summary_without_optional_columns(tree: Path, tmp_path: Path):
    """An old or hand-made summary.csv with only the axes and status still draws."""
    df = figdata.coerce_summary(summarize(load_runs([tree]))[["dataset", "model", "method", "splits", "seed", "status"]])
    written = acc_vs_splits.acc_vs_splits(df, tmp_path / "a", formats=("png",))
    written += speedup.speedup(df, path_stem=tmp_path / "s", formats=("png",))
    written += time_to_target.time_to_target_figure(df, path_stem=tmp_path / "t", formats=("png",))
    assert len(written) == 3


def test_paper_table_is_the_papers():
    assert PAPER_FINAL_TRAIN_ACC["mnist"] == {"sgd": 1.000, "adam": 0.999, "dladmm": 0.774, "gsadmm": 0.994}
    assert PAPER_FINAL_TRAIN_ACC["cifar100"]["adam"] == 0.972
    assert set(PAPER_FINAL_TRAIN_ACC) == {"mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100"}
    assert paper.FIGURE2_SEC_PER_EPOCH[("gsadmm", 4)] == 22.0


def test_figure1_keeps_the_papers_model_per_dataset():
    s = pd.DataFrame({"dataset": ["cifar10", "cifar10", "digits"], "model": ["cnn", "resnet", "mlp"]})
    assert figure1.figure1_combos(s) == [("cifar10", "cnn"), ("digits", "mlp")]
    s = pd.DataFrame({"dataset": ["cifar10"], "model": ["resnet"]})
    assert figure1.figure1_combos(s) == [("cifar10", "resnet")]


def test_summary_run_dirs_are_relative_so_a_moved_tree_still_draws(tree: Path, tmp_path: Path):
    import shutil

    write_summary([tree], tree / "summary.csv", None)
    moved = tmp_path / "elsewhere"
    shutil.move(str(tree), moved)
    listed = pd.read_csv(moved / "summary.csv")
    assert not any(Path(p).is_absolute() for p in listed["run_dir"])
    run = records.load_run(moved / listed["run_dir"].iloc[0])
    assert run.status == "finished" and run.metrics is not None
    assert figures.main([str(moved), "--formats", "png"]) == 0


# --------------------------------------------------------------------------- sweeps (variants)
SWEEP_FINALS = {"kaiming": 0.85, "demo": 0.75}  # the controls' finals depend on init


@pytest.fixture()
def sweep_tree(tmp_path: Path) -> Path:
    """gsadmm/gsam at n = 2, 5 over rho x init; frozen (n = 2, 5) and adam (n = 1) per init."""
    root = tmp_path / "results" / "sweep"
    for init, base in SWEEP_FINALS.items():
        for n in (2, 5):
            write_run(root, "fashion_mnist", "mlp", "frozen", n, 0, final=base - 0.2, variant={"init": init})
            for m in ("gsadmm", "gsam"):
                for rho in (1, 10):
                    write_run(root, "fashion_mnist", "mlp", m, n, 0, final=base + 0.01 * rho / n,
                              variant={"init": init, "rho": rho})
        write_run(root, "fashion_mnist", "mlp", "adam", 1, 0, final=base + 0.1, variant={"init": init})
    write_run(root, "fashion_mnist", "mlp", "gsam", 5, 0, status="diverged", variant={"init": "demo", "rho": 100})
    running = write_run(root, "fashion_mnist", "mlp", "gsadmm", 2, 0, variant={"init": "demo", "rho": 100})
    (running / "run.json").unlink()
    return root


def test_sweep_summary_has_a_variant_and_a_column_per_swept_field(sweep_tree: Path):
    df = summarize(load_runs([sweep_tree]))
    assert len(df) == 2 * (2 + 2 * 2 * 2 + 1) + 2
    cols = list(df.columns)
    assert cols[cols.index("variant") + 1:cols.index("variant") + 3] == ["init", "rho"]
    assert rows.has_variants(df) and rows.sweep_fields(df) == ["init", "rho"]
    row = df[(df["method"] == "gsadmm") & (df["splits"] == 5) & (df["variant"] == "init_demo-rho_10")].iloc[0]
    assert (row["init"], row["rho"], row["status"]) == ("demo", 10, "finished")
    assert row["run_dir"].endswith("gsadmm/n5/seed0/init_demo-rho_10")
    # no run.json yet: the variant still comes from the path
    running = df[df["status"] == "incomplete"].iloc[0]
    assert (running["method"], running["splits"], running["variant"]) == ("gsadmm", 2, "init_demo-rho_100")
    # the controls carry their own variant (init) and their config's value of every swept field
    frozen = df[(df["method"] == "frozen") & (df["variant"] == "init_kaiming")]
    assert len(frozen) == 2 and set(frozen["rho"]) == {1.0}


def test_summary_without_variants_keeps_its_columns(tree: Path):
    df = summarize(load_runs([tree]))
    assert not rows.has_variants(df) and rows.sweep_fields(df) == []
    assert df["variant"].isna().all()
    assert "| variant |" not in markdown_table(df) and sweeps.sweep_markdown(df) == ""


def test_sweep_table_compares_with_frozen_at_the_same_n_and_init(sweep_tree: Path):
    df = summarize(load_runs([sweep_tree]))
    t = sweeps.sweep_table(df)
    assert set(t["method"]) == {"gsadmm", "gsam"}  # the controls are columns, not rows
    assert len(t) == 2 * 2 * 4 + 2
    r = t[(t["method"] == "gsam") & (t["splits"] == 5) & (t["variant"] == "init_demo-rho_10")].iloc[0]
    frozen = df[(df["method"] == "frozen") & (df["splits"] == 5) & (df["init"] == "demo")]["final_test_acc"].iloc[0]
    adam = df[(df["method"] == "adam") & (df["init"] == "demo")]["final_test_acc"].iloc[0]
    assert r["control_test_acc"] == pytest.approx(frozen) and r["ref_test_acc"] == pytest.approx(adam)
    assert r["d_control_pts"] == pytest.approx(100 * (r["test_acc"] - frozen))
    assert r["controls"] == "init=demo"
    # best test accuracy first within each method and n; a variant with no finished run last
    g = t[(t["method"] == "gsam") & (t["splits"] == 5)]
    assert list(g["test_acc"].dropna()) == sorted(g["test_acc"].dropna(), reverse=True)
    assert g.iloc[-1]["variant"] == "init_demo-rho_100" and "1 diverged" in g.iloc[-1]["runs_text"]


def test_sweep_markdown_in_summary_md(sweep_tree: Path):
    write_summary([sweep_tree], sweep_tree / "summary.csv", sweep_tree / "summary.md")
    md = (sweep_tree / "summary.md").read_text()
    assert "| dataset | model | method | n | variant | runs |" in md
    assert "| fashion_mnist | mlp | gsadmm | 5 | init_demo-rho_10 | 1/1 finished |" in md
    assert "## Sweep: final accuracy per variant" in md and "each with the same init" in md
    line = next(l for l in md.split("## Sweep")[1].splitlines() if "| gsadmm | 5 | init_demo-rho_10 |" in l)
    assert "+" in line.split("|")[10]  # Δ test vs frozen in points, signed
    assert "fashion_mnist/mlp/gsam/n5/seed0/init_demo-rho_100: **diverged**" in md
    # the CSV keeps the swept columns and the variant for the figures to read back
    listed = pd.read_csv(sweep_tree / "summary.csv")
    assert {"variant", "init", "rho"} <= set(listed.columns)


def test_sweep_figure_only_with_variants(sweep_tree: Path, tree: Path):
    write_summary([sweep_tree], sweep_tree / "summary.csv", None)
    assert figures.main([str(sweep_tree), "--formats", "png"]) == 0
    names = sorted(p.name for p in (sweep_tree / "figures").iterdir())
    assert names == sorted(f"{s}.png" for s in (*FIGURES, style.SWEEP_FIGURE))
    assert (sweep_tree / "figures" / "sweep.png").stat().st_size > 10_000
    written = make_figures(load_runs([tree]), tree / "figures", formats=("png",))
    assert style.SWEEP_FIGURE not in {p.stem for p in written}
    # a summary with variants but nothing finished still draws (placeholders, notes)
    df = summarize(load_runs([sweep_tree]))
    assert len(sweep_figure.sweep(df[df["status"] != "finished"], path_stem=tree / "s", formats=("png",))) == 1


@pytest.mark.parametrize("command", ["summary", "figures"])
def test_tssm_summary_and_figures_subcommands(command: str):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "tssm", command, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: tssm {command}")


# --------------------------------------------------------------------------- reading once; who is visible
def test_figures_read_summary_csv_once_and_never_resummarise(tree: Path, monkeypatch):
    """With a summary.csv the figures read it and the curves it lists; nothing is summarised again."""
    write_summary([tree], tree / "summary.csv", None)

    def boom(*a, **k):
        raise AssertionError("figures re-read or re-summarised the runs")

    monkeypatch.setattr(figdata, "summarize", boom)
    monkeypatch.setattr(figdata, "load_runs", boom)
    data = figdata.read_results(tree / "summary.csv")
    assert len(data.summary) == 48
    # one curve per finished run (the diverged, incomplete and unreadable ones have none), epochs >= 1
    finished = data.summary[data.summary["status"] == "finished"]
    assert data.curves["run_dir"].nunique() == len(finished) == 48 - 3
    assert data.curves["epoch"].min() == 1
    assert figures.main([str(tree), "--formats", "png"]) == 0


def test_a_different_target_recomputes_time_to_target_from_the_curves(tree: Path):
    write_summary([tree], tree / "summary.csv", None, target=0.9)
    data = figdata.read_results(tree / "summary.csv", target=0.5)
    fresh = figdata.coerce_summary(summarize(load_runs([tree]), 0.5))
    key = ["dataset", "method", "splits", "seed"]
    a = data.summary[data.summary["status"] == "finished"].sort_values(key)
    b = fresh[fresh["status"] == "finished"].sort_values(key)
    assert np.allclose(a["time_to_target_s"], b["time_to_target_s"], equal_nan=True)
    assert (data.summary["target_train_acc"] == 0.5).all()


@pytest.fixture()
def twin_tree(tmp_path: Path) -> Path:
    """gsADMM, gsAM and frozen with the very same curve (same final, seed and n), plus Adam, on
    MNIST (a paper dataset) and digits (not one)."""
    root = tmp_path / "results" / "twins"
    for ds in ("mnist", "digits"):
        for seed in (0, 1):
            write_run(root, ds, "mlp", "adam", 1, seed, final=0.99)
            for m in ("gsadmm", "gsam", "frozen"):
                write_run(root, ds, "mlp", m, 2, seed, final=0.9)
    return root


def _curve_lines(ax) -> dict:
    return {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_figure1_has_one_panel_per_dataset_in_a_row(twin_tree: Path):
    data = figdata.from_runs(load_runs([twin_tree]))
    fig, _ = figure1.draw_figure1(data.summary, data.curves)
    top = [ax for ax in fig.axes if ax.get_ylabel() == "training accuracy"]
    assert len(top) == 2  # MNIST, digits
    assert [ax.get_title().split(" (")[0] for ax in top] == ["MNIST", "digits"]
    assert len({round(ax.get_position().y0, 3) for ax in top}) == 1  # one row
    assert len(fig.axes) == 4  # and a row of differences to the control below
    plt_close(fig)


def test_coinciding_curves_are_drawn_distinguishably_and_all_in_the_legend(twin_tree: Path):
    data = figdata.from_runs(load_runs([twin_tree]))
    fig, _ = figure1.draw_figure1(data.summary, data.curves)
    ax = fig.axes[0]
    lines = _curve_lines(ax)
    assert {"gsadmm", "gsam", "frozen", "adam"} <= set(lines)
    a, b, c = lines["gsadmm"], lines["gsam"], lines["frozen"]
    assert np.allclose(a.get_ydata(), c.get_ydata()) and np.allclose(a.get_ydata(), b.get_ydata())

    def look(line):
        return (line.get_linestyle(), line.get_linewidth(), line.get_marker())

    assert len({look(a), look(b), look(c)}) == 3
    # the control underneath, the thinner split methods on top
    assert c.get_zorder() < b.get_zorder() < a.get_zorder() and c.get_linewidth() > a.get_linewidth()
    # markers of coinciding methods sit at different epochs
    assert a.get_markevery() != b.get_markevery()
    texts = _legend_texts(fig)
    for name in ("gsADMM (n=2)", "gsAM (n=2)", "frozen (control) (n=2)", "Adam (n=1)"):
        assert name in texts
    # the difference row: both split methods at exactly 0 against the control's zero line
    diff = _curve_lines(fig.axes[1] if fig.axes[1].get_ylabel().startswith("minus") else fig.axes[2])
    assert {"gsadmm", "gsam", "frozen"} <= set(diff)
    assert np.allclose(diff["gsadmm"].get_ydata(), 0) and np.allclose(diff["gsam"].get_ydata(), 0)
    plt_close(fig)


def test_paper_stars_for_a_paper_dataset_only(twin_tree: Path):
    data = figdata.from_runs(load_runs([twin_tree]))
    fig, _ = figure1.draw_figure1(data.summary, data.curves)
    top = [ax for ax in fig.axes if ax.get_ylabel() == "training accuracy"]

    def stars(ax):
        return {c.get_gid().split(":", 1)[1]: float(c.get_offsets()[0][1]) for c in ax.collections
                if str(c.get_gid()).startswith("paper:")}

    # stars of the methods drawn: gsADMM (n = 2) and Adam on MNIST, none on digits
    assert stars(top[0]) == {"adam": paper.FIGURE1_FINAL_TRAIN_ACC["mnist"]["adam"],
                             "gsadmm": paper.FIGURE1_FINAL_TRAIN_ACC["mnist"]["gsadmm"]}
    assert stars(top[1]) == {}
    assert "paper's final value (colour = method)" in _legend_texts(fig)
    plt_close(fig)


def test_a_dladmm_run_gets_its_colour_label_and_star(twin_tree: Path):
    for seed in (0, 1):
        write_run(twin_tree, "mnist", "mlp", "dladmm", 1, seed, final=0.77)
    data = figdata.from_runs(load_runs([twin_tree]))
    fig, _ = figure1.draw_figure1(data.summary, data.curves)
    ax = fig.axes[0]
    line = _curve_lines(ax)["dladmm"]
    assert line.get_color() == Methods(data.summary).color("dladmm") and line.get_label() == "dlADMM"
    star = [c for c in ax.collections if c.get_gid() == "paper:dladmm"]
    assert len(star) == 1 and float(star[0].get_offsets()[0][1]) == paper.FIGURE1_FINAL_TRAIN_ACC["mnist"]["dladmm"]
    assert "dlADMM (layerwise)" in _legend_texts(fig)
    plt_close(fig)


def test_figure1_of_one_preset_draws_only_its_runs(tmp_path: Path, capsys):
    """A config that runs the paper's settings beside tuned ones: `figure1_preset: paper` draws
    the paper runs alone (else each line would average both presets); an unknown preset is one line."""
    root = tmp_path / "results" / "presets"
    for seed in (0, 1):
        for m, tuned, paper_final in (("adam", 0.99, 0.80), ("gsadmm", 0.90, 0.70), ("frozen", 0.85, 0.75)):
            n = 1 if m == "adam" else 2
            write_run(root, "mnist", "mlp", m, n, seed, final=tuned, config={"preset": "tuned"})
            write_run(root, "mnist", "mlp", m, n, seed, final=paper_final, variant={"preset": "paper"})
    write_summary([root], root / "summary.csv", None)
    data = figdata.read_results(root / "summary.csv")
    last = {}
    for preset in (None, "paper", "tuned"):
        fig, _ = figure1.draw_figure1(data.summary, data.curves, preset=preset)
        last[preset] = {m: float(line.get_ydata()[-1]) for m, line in _curve_lines(fig.axes[0]).items()}
        assert ("preset paper;" in fig._suptitle.get_text()) == (preset == "paper")
        plt_close(fig)
    reached = 1 - math.exp(-EPOCHS / 2)  # the synthetic curves' last epoch, as a share of their final
    for m, tuned, paper_final in (("adam", 0.99, 0.80), ("gsadmm", 0.90, 0.70)):
        assert abs(last["paper"][m] - paper_final * reached) < 0.01 and abs(last["tuned"][m] - tuned * reached) < 0.01
        assert abs(last[None][m] - (tuned + paper_final) / 2 * reached) < 0.01  # pooled: what the option avoids
    # the other figures: `preset` (here tuned), their note saying so
    tuned, _ = figdata.runs_of_preset(data.summary, data.curves, "tuned")
    assert set(tuned["preset"]) == {"tuned"} and style.note(tuned).startswith("Runs of preset tuned.")
    assert "Variants pooled" in style.note(data.summary)  # tuned and paper runs in one line
    paper_runs, _ = figdata.runs_of_preset(data.summary, data.curves, "paper")
    assert style.note(paper_runs) == "Runs of preset paper."  # one variant a line: nothing pooled
    assert style.note(data.summary, apart=("preset",)) == ""  # the budget figure draws presets apart
    assert figures.main([str(root), "--preset", "tuned", "--figure1-preset", "paper", "--formats", "png"]) == 0
    for flag in ("--figure1-preset", "--preset"):
        assert figures.main([str(root), flag, "papr", "--formats", "png"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].endswith(f"{flag} papr: no run has preset 'papr'; the runs have paper, tuned")


def test_summary_sets_the_runs_beside_the_papers_figure1_values(twin_tree: Path):
    """summary.md's "Against the paper's Figure 1": the paper's final training accuracy beside the
    runs' of the methods it reports, at its split level and for its model only (not digits)."""
    from tssm.reporting.paper_table import paper_markdown

    df = summarize(load_runs([twin_tree]))
    md = paper_markdown(df)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in md.splitlines() if line.startswith("| ")}
    assert set(rows) == {"method", "Adam", "gsADMM"} and "digits" not in md  # frozen, gsAM: no paper value
    ours = df[(df["dataset"] == "mnist") & (df["method"] == "gsadmm")]["final_train_acc"]
    gsadmm = rows["gsADMM"]
    assert gsadmm[1] == "2" and gsadmm[6] == f"{PAPER_FINAL_TRAIN_ACC['mnist']['gsadmm']:.3f}"
    assert gsadmm[7] == f"{ours.mean():.3f} ± {ours.std(ddof=1):.3f}"
    assert gsadmm[8].rstrip(" |") == f"{100 * (ours.mean() - PAPER_FINAL_TRAIN_ACC['mnist']['gsadmm']):+.1f}"
    assert "## Against the paper's Figure 1" in summary_cli.summary_markdown(df)
    assert paper_markdown(df[df["dataset"] == "digits"]) == ""


def test_figure2_accuracy_has_a_panel_per_split_level_with_every_method_visible(tree: Path):
    data = figdata.from_runs(load_runs([tree]))
    fig, _ = figure2.draw_figure2(data.summary, data.curves, splits=(2, 3))
    panels = [ax for ax in fig.axes if ax.get_title().startswith("(b)")]
    assert [ax.get_title() for ax in panels] == [f"(b) training accuracy, n = {n}\nsplit methods: 1 rank × 1 thread"
                                                 for n in (2, 3)]
    for ax in panels:
        lines = _curve_lines(ax)
        assert {"sgd", "adam", "gsadmm", "gsam", "frozen"} <= set(lines)
        assert len({(l.get_linestyle(), l.get_marker()) for l in lines.values()}) == len(lines)
    texts = _legend_texts(fig)
    assert "gsADMM (1 rank × 1 thread)" in texts and "frozen (control) (1 rank × 1 thread)" in texts
    assert "Adam (n=1, 1 rank × 1 thread)" in texts
    bars = [ax for ax in fig.axes if ax.get_title().startswith("(a)")][0]
    # one legend for the whole figure (issue 23: it appeared twice), the bars' colours in it
    assert bars.get_legend() is None and len(fig.legends) == 1
    assert texts.count("gsADMM (1 rank × 1 thread)") == 1
    assert "1 rank × 1 thread per run (cpu)" in bars.get_title()
    plt_close(fig)


def plt_close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


# --------------------------------------------------------------------------- equal resources (cores)
SERIAL_SEC, PARALLEL_SEC = {"adam": 0.4, "gsadmm": 0.6}, {"adam": 0.25, "gsadmm": 0.15}


@pytest.fixture()
def budget_tree(tmp_path: Path) -> Path:
    """What the default config leaves: serial runs (1 rank x 1 thread) at n = 1, 2, 3, and the
    same points on a budget of 2 cores (cores2/: split methods 2 ranks x 1 thread, adam 1 x 2),
    with other clocks (and, unlike real runs, another gsadmm accuracy), so that a figure shows
    which runs it read."""
    root = tmp_path / "results" / "budget"
    for seed in (0, 1):
        write_run(root, "digits", "mlp", "adam", 1, seed, final=0.99, sec=SERIAL_SEC["adam"])
        write_run(root, "digits", "mlp", "adam", 1, seed, final=0.99, sec=PARALLEL_SEC["adam"], cores=2, threads=2)
        for n in (2, 3):
            write_run(root, "digits", "mlp", "gsadmm", n, seed, final=0.95, sec=SERIAL_SEC["gsadmm"])
            write_run(root, "digits", "mlp", "frozen", n, seed, final=0.7, sec=SERIAL_SEC["gsadmm"])
        for m in ("gsadmm", "frozen"):
            write_run(root, "digits", "mlp", m, 2, seed, final=0.85 if m == "gsadmm" else 0.7, sec=PARALLEL_SEC["gsadmm"],
                      cores=2, world_size=2)
    return root


def test_budget_runs_have_their_axis_and_resources_in_the_summary(budget_tree: Path):
    df = summarize(load_runs([budget_tree]))
    par = df[df["cores"] == 2]
    assert len(par) == 2 * 3 and len(df) == 2 * 2 + 2 * 2 * 2 + 2 * 2
    assert set(zip(par["method"], par["workers"], par["threads"])) == {("adam", 1, 2), ("gsadmm", 2, 1),
                                                                        ("frozen", 2, 1)}
    assert par["run_dir"].str.endswith("/cores2").all() and df.loc[df["cores"].isna(), "workers"].eq(1).all()
    md = markdown_table(df)
    assert "| digits | mlp | gsadmm | 2 | 2 | 2 ranks × 1 thread | 2/2 finished |" in md
    assert "| digits | mlp | adam | 1 | 2 | 1 rank × 2 threads |" in md and "| digits | mlp | adam | 1 | — | 1 rank × 1 thread |" in md


def test_figure2_draws_the_equal_resources_runs_and_says_so(budget_tree: Path):
    data = figdata.from_runs(load_runs([budget_tree]))
    fig, _ = figure2.draw_figure2(data.summary, data.curves, splits=(2, 3))
    ax = [a for a in fig.axes if a.get_title().startswith("(a)")][0]
    heights = sorted(round(b.get_height(), 6) for b in ax.patches if b.get_height() == b.get_height() and b.get_height())
    assert heights == sorted([PARALLEL_SEC["adam"], PARALLEL_SEC["gsadmm"], PARALLEL_SEC["gsadmm"]])  # no serial bar
    assert "equal resources: 2 cores per run (cpu)" in ax.get_title()
    on_bars = sorted(t.get_text() for t in ax.texts if t.get_text())
    assert on_bars == ["1×2", "2×1", "2×1"]
    texts = _legend_texts(fig)
    assert "Adam (n=1, 1 rank × 2 threads)" in texts and "gsADMM (2 ranks × 1 thread)" in texts
    panels = [a for a in fig.axes if a.get_title().startswith("(b)")]
    assert [a.get_title() for a in panels] == ["(b) training accuracy, n = 2\nsplit methods: 2 ranks × 1 thread"]
    assert "equal resources: 2 cores per run" in fig._suptitle.get_text()
    # each curve is the mean over the budget's runs only (2 seeds, not 4)
    assert set(data.curves.loc[figdata.runs_on_budget(data.curves, True).index, "cores"]) == {2}
    plt_close(fig)


def test_speedup_and_time_to_target_read_the_equal_resources_runs(budget_tree: Path):
    data = figdata.from_runs(load_runs([budget_tree]), target=0.5)
    fig, _ = speedup.draw_speedup(data.summary)
    ax = fig.axes[0]
    lines = {l.get_gid(): l for l in ax.get_lines() if l.get_gid()}
    assert list(lines["gsadmm"].get_ydata()) == pytest.approx([PARALLEL_SEC["adam"] / PARALLEL_SEC["gsadmm"]])
    assert "gsADMM (2 ranks × 1 thread)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "equal resources: 2 cores per run" in ax.get_title() and "0.25 s/epoch" in ax.get_title()
    plt_close(fig)
    fig, _ = time_to_target.draw_time_to_target(data.summary, 0.5)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Adam (1 rank × 2 threads)" in texts and "frozen (control) (2 ranks × 1 thread)" in texts
    hit = data.summary[(data.summary["cores"] == 2) & (data.summary["method"] == "adam")]["time_to_target_s"].mean()
    lines = {l.get_gid(): l for l in ax.get_lines() if l.get_gid()}
    assert list(lines["adam"].get_ydata()) == pytest.approx([hit])
    assert "equal resources: 2 cores per run" in fig._suptitle.get_text()
    plt_close(fig)


def test_accuracy_figures_keep_the_plain_runs(budget_tree: Path):
    data = figdata.from_runs(load_runs([budget_tree]))
    plain = figdata.runs_on_budget(data.summary, timed=False)
    assert plain["cores"].isna().all() and len(plain) == 2 * 5
    fig, _ = figure1.draw_figure1(data.summary, data.curves, splits=2)
    last = _curve_lines(fig.axes[0])["gsadmm"].get_ydata()[-1]
    serial = data.curves[(data.curves["method"] == "gsadmm") & (data.curves["splits"] == 2)
                         & data.curves["cores"].isna() & (data.curves["epoch"] == EPOCHS)]["train_acc"]
    assert len(serial) == 2 and last == pytest.approx(serial.mean())
    plt_close(fig)
    # a config with only budget runs draws them everywhere
    only = data.summary[data.summary["cores"] == 2]
    assert len(figdata.runs_on_budget(only, timed=False)) == len(only)
