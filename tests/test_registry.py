"""One home for each method: the registry drives the config, the CLI and the pipeline.

The toy method test adds a method the way a contributor would (one new file in
``tssm/solvers/`` and one line in ``REGISTRY``) to a copy of the repository, and checks that
``tssm train``, its ``--help`` and the pipeline's planning pick it up with no other edit.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from tssm.cli import build_parser
from tssm.config import RunConfig, pipeline_schema, reads
from tssm.errors import ConfigError
from tssm.solvers import REGISTRY, SOLVERS

REPO = Path(__file__).resolve().parent.parent

TOY = '''"""A toy method: the frozen control with a setting of its own."""

from dataclasses import dataclass

from ..config import option
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
