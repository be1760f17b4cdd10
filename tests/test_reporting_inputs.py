"""Reporting on bad input: `tssm summary` / `tssm figures` fail early with one line and exit 2,
and damaged records are reported, never averaged (issues 23 and 24). Synthetic runs, no training."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from test_figures import write_run

from tssm.reporting import figures, summary
from tssm.reporting.records import load_run, load_runs
from tssm.reporting.rows import summarize


def _call(main, argv, capsys) -> tuple[int, list[str]]:
    """(exit status, stderr lines) of a reporting command's main."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def _fails_in_one_line(main, argv, capsys, *words: str) -> str:
    code, err = _call(main, argv, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), err
    assert all(w in err[0] for w in words), err[0]
    return err[0]


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    """adam at n = 1, gsadmm and frozen at n = 2, two seeds."""
    root = tmp_path / "results" / "small"
    for seed in (0, 1):
        write_run(root, "digits", "mlp", "adam", 1, seed, final=0.95)
        for m in ("gsadmm", "frozen"):
            write_run(root, "digits", "mlp", m, 2, seed, final=0.9 if m == "gsadmm" else 0.7)
    return root


# --------------------------------------------------------------------------- tssm summary
def test_summary_refuses_a_missing_or_empty_folder(tmp_path, capsys):
    _fails_in_one_line(summary.main, [str(tmp_path / "nonexistent")], capsys, "no such file or folder")
    (tmp_path / "empty").mkdir()
    _fails_in_one_line(summary.main, [str(tmp_path / "empty")], capsys, "no runs under")
    assert not (tmp_path / "empty" / "summary.csv").exists()


@pytest.mark.parametrize("target", ["1.5", "0", "-0.2", "nan", "three"])
def test_summary_and_figures_refuse_a_target_outside_0_1(small, capsys, target):
    _fails_in_one_line(summary.main, [str(small), "--target-acc", target], capsys, "--target-acc")
    _fails_in_one_line(figures.main, [str(small), "--target-acc", target], capsys, "--target-acc")


def test_summary_refuses_an_output_it_cannot_write(small, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _fails_in_one_line(summary.main, [str(small), "--csv", str(tmp_path / "file" / "s.csv")], capsys, "is a file")
    if sys.platform.startswith("linux"):  # /sys is read-only, even for root
        _fails_in_one_line(summary.main, [str(small), "--csv", "/sys/tssm-test/s.csv"], capsys, "cannot write")


def _damage(root: Path) -> dict[str, str]:
    """One finished run per kind of damage; {run folder's method/n/seed: what was done}."""
    done = {}
    for seed, how in enumerate(("cut", "columns", "empty", "missing", "header")):
        d = write_run(root, "digits", "mlp", "gsam", 2, seed, final=0.8)
        f = d / "metrics.csv"
        text = f.read_text()
        if how == "cut":  # the last row cut mid-number, as a killed writer leaves it
            f.write_text(text[: text.rstrip("\n").rfind(",") + 3])
        elif how == "columns":
            f.write_text("a,b,c\n1,2,3\n")
        elif how == "empty":
            f.write_text("")
        elif how == "missing":
            f.unlink()
        else:
            f.write_text(text.splitlines()[0] + "\n")
        done[f"seed{seed}"] = how
    only_point = root / "runs" / "digits" / "mlp" / "gsam" / "n2" / "seed9"
    only_point.mkdir(parents=True)
    (only_point / "point.yaml").write_text("method: gsam\n")
    return done


def test_damaged_records_are_reported_and_never_averaged(small, capsys):
    done = _damage(small)
    df = summarize(load_runs([small]))
    gsam = df[df["method"] == "gsam"].set_index("seed")
    assert set(gsam.loc[list(range(5)), "status"]) == {"damaged"}
    reasons = dict(zip(gsam.index, gsam["reason"]))
    assert "cut" in reasons[0] and "no epoch column" in reasons[1] and "empty" in reasons[2]
    assert "no metrics.csv" in reasons[3] and "no rows" in reasons[4]
    assert gsam.loc[9, "status"] == "incomplete" and "only point.yaml" in gsam.loc[9, "reason"]
    assert len(done) == 5
    code, err = _call(summary.main, [str(small)], capsys)
    assert code == 0 and sum(line.startswith("warning:") and "not averaged" in line for line in err) == 6
    md = (small / "summary.md").read_text()
    row = next(ln for ln in md.splitlines() if ln.startswith("| digits | mlp | gsam | 2 |"))
    assert "0/6 finished" in row and "**5 damaged**" in row and "**1 incomplete**" in row and "n/a" in row
    assert "gsam/n2/seed0: **damaged** — metrics.csv's last row is cut" in md


def test_a_cut_last_row_does_not_report_an_earlier_epoch_as_final(tmp_path):
    d = write_run(tmp_path / "r", "digits", "mlp", "adam", 1, 0)
    text = (d / "metrics.csv").read_text()
    (d / "metrics.csv").write_text(text[: text.rstrip("\n").rfind("\n") + 1] + "6,0.1")  # whole last row cut
    run = load_run(d)
    assert run.status == "damaged" and run.metrics is None


# --------------------------------------------------------------------------- tssm figures
def test_figures_refuse_a_missing_or_empty_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails_in_one_line(figures.main, ["results/nonexistent"], capsys, "no such file or folder")
    (tmp_path / "empty").mkdir()
    _fails_in_one_line(figures.main, [str(tmp_path / "empty")], capsys, "no runs under")
    assert not (tmp_path / "figures").exists() and not (tmp_path / "empty" / "figures").exists()


@pytest.mark.parametrize("formats", [["pngg"], [""], ["png", "bogus"], []])
def test_figures_refuse_an_unknown_or_empty_format(small, capsys, formats):
    line = _fails_in_one_line(figures.main, [str(small), "--formats", *formats], capsys)
    assert ("unknown figure format" in line and "png" in line) or "--formats" in line
    assert not (small / "figures").exists()


def test_figures_refuse_a_split_level_no_run_has(small, capsys):
    _fails_in_one_line(figures.main, [str(small), "--figure1-splits", "4"], capsys, "n = 4", "the runs have n = 2")
    code, _ = _call(figures.main, [str(small), "--figure1-splits", "2", "--formats", "png"], capsys)
    assert code == 0 and (small / "figures" / "figure1_train_acc.png").exists()
    # a level whose runs all failed still draws (they are named in the note); baselines alone too
    write_run(small, "digits", "mlp", "gsadmm", 3, 0, status="diverged")
    figures.check_split_level(summarize(load_runs([small])), 3)
    only = small.parent / "baselines"
    write_run(only, "digits", "mlp", "adam", 1, 0)
    figures.check_split_level(summarize(load_runs([only])), 4)


def test_figures_refuse_a_damaged_summary_csv(small, tmp_path, capsys):
    summary.write_summary([small], small / "summary.csv", None)
    good = (small / "summary.csv").read_text()
    cases = {"empty": "", "cut": good[: len(good) - 40], "columns": "a,b\n1,2\n",
             "header only": good.splitlines()[0] + "\n"}
    for name, text in cases.items():
        bad = tmp_path / f"{name}.csv"
        bad.write_text(text)
        _fails_in_one_line(figures.main, ["--summary", str(bad), "--out-dir", str(tmp_path / "f")], capsys,
                           str(bad))
    _fails_in_one_line(figures.main, ["--summary", str(tmp_path / "none.csv")], capsys, "does not exist")
    assert not (tmp_path / "f").exists()


def test_figures_refuse_an_out_dir_that_is_a_file(small, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _fails_in_one_line(figures.main, [str(small), "--out-dir", str(tmp_path / "file")], capsys, "is a file")


def test_figures_warn_about_damaged_runs_and_draw_the_rest(small, capsys):
    _damage(small)
    summary.write_summary([small], small / "summary.csv", None)
    code, err = _call(figures.main, [str(small), "--formats", "png"], capsys)
    assert code == 0 and sum(line.startswith("warning:") for line in err) == 6
    listed = pd.read_csv(small / "summary.csv")
    assert (listed["status"] == "damaged").sum() == 5


def test_the_tssm_cli_exits_2_with_one_line(tmp_path):
    import subprocess

    r = subprocess.run([sys.executable, "-m", "tssm", "figures", str(tmp_path / "nope")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and not r.stdout
