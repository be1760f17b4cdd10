"""One home for each method: the registry drives the config, the CLI, the pipeline and reporting.

The toy method test adds a method the way a contributor would (one new file in
``tssm/solvers/`` and one line in ``REGISTRY``) to a copy of the repository, and checks that
``tssm train``, its ``--help``, the pipeline's planning and ``tssm summary`` pick it up with no
other edit. The reporting test registers a toy method in-process and checks that it reaches
summary.md and every figure that should show it, in its place (by role) and its own style.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tssm.cli import build_parser
from tssm.config import RunConfig, pipeline_schema, reads
from tssm.errors import ConfigError
from tssm.solvers import REGISTRY, SOLVERS

REPO = Path(__file__).resolve().parent.parent

TOY = '''"""A toy method: the frozen control with a setting of its own."""

from dataclasses import dataclass

from ..settings import option
from .backprop import Backprop
from .base import WStepSettings


@dataclass
class ToySettings(WStepSettings):
    shrink: float = option(0.5, positive=True, help="a toy setting only this method reads")


class Toy(Backprop):
    name = "toy"
    Settings = ToySettings
    end_to_end = False

    def trains(self, stage):
        return stage.last
'''


def test_schema_cli_and_config_follow_the_registry():
    schema = pipeline_schema(yaml.safe_load((REPO / "config" / "schema.yaml").read_text()))
    assert schema["$defs"]["method"]["enum"] == list(REGISTRY) == list(SOLVERS)
    assert "enum" not in yaml.safe_load((REPO / "config" / "schema.yaml").read_text())["$defs"]["method"]
    run_props = schema["$defs"]["run"]["properties"]
    for method, solver in SOLVERS.items():
        for f in fields(solver.Settings):
            assert f.name in run_props, f"{method}.{f.name} missing from the pipeline schema"
        assert RunConfig.from_dict({"method": method}).settings.__class__ is solver.Settings
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest for a in train._actions}
    assert {"rho", "tau2", "optimizer", "alpha"} <= flags
    assert "gsadmm, gsam, sgd, adam, frozen" in train.format_help().replace("\n", " ").replace("  ", " ")


def test_settings_are_scoped_to_their_method():
    adam = RunConfig.from_dict({"method": "adam", "dataset": "digits"})
    assert adam.splits == 1  # an end-to-end method's default split level
    assert "rho" not in adam.to_dict() and "rho" not in reads("adam") and "rho" not in reads("gsam")
    with pytest.raises(ConfigError, match="'rho' is a setting of gsadmm, dladmm, not of method 'adam'"):
        RunConfig.from_dict({"method": "adam", "rho": 10})
    base = RunConfig.from_dict({"method": "gsadmm"})
    assert base.replace(rho=10).config_hash() != base.config_hash()
    gsam = RunConfig.from_dict({"method": "gsam"})
    assert gsam.config_hash() == RunConfig.from_dict({"method": "gsam", "tau2": 100.0}).config_hash()
    assert base.replace(method="adam").to_dict()["splits"] == 1


def _snakemake_plan(repo: Path, workdir: Path, config: dict) -> str:
    cfg = workdir / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(repo / "Snakefile"),
                        "--configfile", str(cfg), "--cores", "1"], cwd=workdir, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(repo)}, timeout=300)
    return r.stdout + r.stderr


@pytest.mark.slow  # a copy of the repository and its pipeline
def test_toy_method_is_one_file_and_one_registry_line(tmp_path):
    repo = tmp_path / "repo"
    for part in ("tssm", "workflow", "config", "envs"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "Snakefile", repo / "Snakefile")
    # the contribution: one file, one line
    (repo / "tssm" / "solvers" / "toy.py").write_text(TOY)
    init = repo / "tssm" / "solvers" / "__init__.py"
    text = init.read_text()
    new = re.sub(r'(REGISTRY: dict\[str, str\] = \{\n)', r'\1    "toy": "toy:Toy",\n', text)
    assert new.count("\n") == text.count("\n") + 1
    init.write_text(new)
    env = {**os.environ, "PYTHONPATH": str(repo)}

    def tssm(*args, cwd=repo):
        return subprocess.run([sys.executable, "-m", "tssm", *args], cwd=cwd, capture_output=True, text=True,
                              env=env, timeout=300)

    help_text = tssm("train", "--method", "toy", "--help").stdout
    assert "settings of toy" in help_text and "--shrink" in help_text
    out = tmp_path / "run"
    r = tssm("train", "--method", "toy", "--shrink", "0.25", "--dataset", "digits", "--width", "16", "--depth", "3",
             "--epochs", "1", "--mlflow", "false", "--checkpoint", "false", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["config"]["shrink"] == 0.25 and info["config"]["splits"] == 2
    # what reporting needs comes with the record: a method that declares no role is a split method
    assert (info["role"], info["label"]) == ("split", "toy")
    r = tssm("summary", str(out), "--csv", str(tmp_path / "s.csv"))
    assert r.returncode == 0, r.stderr
    row = pd.read_csv(tmp_path / "s.csv").iloc[0]
    assert (row["method"], row["role"], row["label"], row["status"]) == ("toy", "split", "toy", "finished")
    assert "| digits | mlp | toy | 2 |" in (tmp_path / "s.md").read_text()

    work = tmp_path / "work"
    work.mkdir()
    config = {"name": "toy", "results": str(tmp_path / "results"), "tracking_uri": f"sqlite:///{tmp_path}/m.db",
              "run": {"width": 16, "depth": 3, "shrink": 0.25, "rho": 3},
              "experiments": [{"datasets": ["digits"], "model": "mlp", "methods": ["toy", "adam"], "splits": [2, 3],
                               "seeds": [0], "epochs": 1}]}
    plan = _snakemake_plan(repo, work, config)
    assert re.search(r"train\s+3\b", plan), plan  # toy at n = 2, 3 and adam at n = 1
    assert "runs/digits/mlp/toy/n3/seed0" in plan
    # the same config without the contribution is refused, by the schema, naming the method
    plan = _snakemake_plan(REPO, work, config)
    assert "toy" in plan and "Job stats" not in plan


# --------------------------------------------------------------------------- reporting
def _toy_class():
    from tssm.solvers.backprop import Backprop

    class Toy(Backprop):  # declares a label and a style; its role follows from its traits (split)
        name = "toy"
        label = "Toy"
        style = {"color": "#e377c2", "linestyle": "--", "marker": "X", "linewidth": 1.6, "zorder": 4}
        end_to_end = False

    return Toy


@pytest.fixture()
def toy_reporting(tmp_path, monkeypatch):
    """A registered toy method (and an unregistered end-to-end one, ``mystery``) in the runs of a
    small grid beside adam, gsadmm and frozen, each run.json carrying role and label as
    ``tssm train`` writes them."""
    from test_figures import write_run

    from tssm.reporting import methods

    toy = _toy_class()
    monkeypatch.setitem(SOLVERS, "toy", toy)
    methods.registry.cache_clear()
    root = tmp_path / "results" / "toy"
    finals = {"gsadmm": 0.9, "frozen": 0.7, "toy": 0.8}
    for seed in (0, 1, 2):
        for m, n in (("adam", 1), ("mystery", 1)):
            rec = SOLVERS[m].record_fields() if m in SOLVERS else {"role": "baseline", "label": "Mystery"}
            write_run(root, "digits", "mlp", m, n, seed, final=0.97, record=rec, config={"preset": "paper"})
        for m, final in finals.items():
            for n in (2, 3):
                write_run(root, "digits", "mlp", m, n, seed, final=final + 0.01 * seed, sec=0.2 + 0.1 * n,
                          record=SOLVERS[m].record_fields(), config={"preset": "paper"})
    yield root, toy
    methods.registry.cache_clear()


def test_a_new_method_reaches_summary_md_in_its_place(toy_reporting):
    from tssm.reporting.summary import write_summary

    root, _ = toy_reporting
    df = write_summary([root], root / "summary.csv", root / "summary.md")
    roles = df.groupby("method")["role"].first().to_dict()
    assert roles == {"adam": "baseline", "mystery": "baseline", "gsadmm": "split", "frozen": "control", "toy": "split"}
    md = (root / "summary.md").read_text()
    verdict = md.split("## Every run group")[0]
    order = [ln.split("|")[1].strip() for ln in verdict.split("In full:")[1].splitlines() if ln.startswith("| ")][1:]
    # baselines first (registry order, then unregistered), then the control, then the split methods
    assert order == ["adam", "mystery", "frozen", "frozen", "gsadmm", "gsadmm", "toy", "toy"]
    toy_row = next(ln for ln in verdict.splitlines() if ln.startswith("| toy | 2 | paper |"))
    assert "[" in toy_row.split("|")[-3]  # its paired difference to the control, with an interval
    paired = md.split("## Paired difference to `frozen`")[1]
    assert "| digits | mlp | toy | 2 |" in paired and "| digits | mlp | toy | 3 |" in paired
    assert "| digits | mlp | toy | 3 | paper | 3/3 finished |" in md.split("## Every run group")[1]


def _gids(ax) -> set:
    return {ln.get_gid() for ln in ax.get_lines() if ln.get_gid()}


def _legend(fig) -> list[str]:
    return [t.get_text() for leg in [*fig.legends, *(a.get_legend() for a in fig.axes if a.get_legend())]
            for t in leg.get_texts()]


def test_a_new_method_appears_in_every_figure_in_its_own_style(toy_reporting):
    import matplotlib.pyplot as plt

    from tssm.reporting import acc_vs_splits, figdata, figure1, figure2, speedup, time_to_target
    from tssm.reporting.methods import Methods
    from tssm.reporting.records import load_runs

    root, toy = toy_reporting
    data = figdata.from_runs(load_runs([root]), target=0.5)
    looks = Methods(data.summary)
    colours = {m: looks.color(m) for m in ("adam", "mystery", "gsadmm", "frozen", "toy")}
    assert colours["toy"] == toy.style["color"] and len(set(colours.values())) == 5
    assert looks.style("mystery")["marker"] not in {looks.style(m)["marker"] for m in ("adam", "gsadmm", "toy")}

    fig, _ = figure1.draw_figure1(data.summary, data.curves, splits=3)
    top, diff = fig.axes[0], fig.axes[1]
    line = {ln.get_gid(): ln for ln in top.get_lines()}["toy"]
    assert (line.get_color(), line.get_marker(), line.get_linestyle()) == ("#e377c2", "X", "--")
    assert {"toy", "gsadmm", "frozen", "adam", "mystery"} <= _gids(top) and "toy" in _gids(diff)
    assert "mystery" not in _gids(diff)  # a baseline is not compared with the control
    assert {"Toy (n=3)", "Mystery (n=1)", "frozen (control) (n=3)"} <= set(_legend(fig))
    plt.close(fig)

    fig, _ = figure2.draw_figure2(data.summary, data.curves, splits=(2, 3))
    panels = [ax for ax in fig.axes if ax.get_title().startswith(("(b)", "(c)"))]
    assert len(panels) == 4 and all("toy" in _gids(ax) for ax in panels)
    assert "Toy (1 rank × 1 thread)" in _legend(fig) and "Mystery (n=1, 1 rank × 1 thread)" in _legend(fig)
    plt.close(fig)

    fig, _ = acc_vs_splits.draw_acc_vs_splits(data.summary)
    ax = fig.axes[0]
    assert {"toy", "mystery"} <= _gids(ax)
    toy_x = {ln.get_gid(): list(ln.get_xdata()) for ln in ax.get_lines() if ln.get_gid()}
    assert len(toy_x["toy"]) == 2 and len(toy_x["mystery"]) == 1  # a line over n = 2, 3; a baseline at n = 1
    assert "Toy" in _legend(fig) and "Mystery (n=1; dotted = mean, band = ± 1 sd)" in _legend(fig)
    plt.close(fig)

    for draw in (lambda s: time_to_target.draw_time_to_target(s, 0.5), speedup.draw_speedup):
        fig, _ = draw(data.summary)
        assert {"toy", "gsadmm", "frozen", "adam", "mystery"} <= _gids(fig.axes[0])
        assert any(t.startswith("Toy (") for t in _legend(fig))
        plt.close(fig)


def test_every_registered_method_declares_a_known_role_and_a_distinct_style():
    from tssm.roles import ROLES

    looks = {m: (c.reporting_role(), c.label or c.name, (c.style or {}).get("color")) for m, c in SOLVERS.items()}
    assert all(role in ROLES for role, _, _ in looks.values())
    declared = [colour for _, _, colour in looks.values() if colour]
    assert len(declared) == len(set(declared))
    assert len({label for _, label, _ in looks.values()}) == len(looks)
